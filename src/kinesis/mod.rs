//! Kinesis Data Streams `PutRecords`: stream target, request body and response
//! here; error classes in [`error`]; the HTTP client in [`client`]. Everything is
//! re-exported at this level (`crate::kinesis::KinesisClient`, ...).
//!
//! Wire format (AWS JSON 1.1, botocore `kinesis/2013-12-02/service-2.json`):
//! `POST /` with `Content-Type: application/x-amz-json-1.1` and
//! `X-Amz-Target: Kinesis_20131202.PutRecords`, SigV4 for service `kinesis`.
//! A 200 answer lists one entry per request record, in request order, each with a
//! `SequenceNumber` or an `ErrorCode`; a whole-request failure is a 4xx/5xx with
//! `{"__type":"<Code>","message":".."}`.
//!
//! Invariants:
//! * [`KinesisClient::put_records`] never panics on what the network returns: a
//!   2xx body that is not a PutRecords response *of the request's length* is
//!   [`RequestError::MalformedResponse`];
//! * every [`RequestError`] maps to one [`ErrorClass`], from the retry lists of the
//!   contract; unknown codes fall back on the HTTP status (5xx and 408 retryable,
//!   429 throttled, other 4xx fatal);
//! * no error text holds a credential: AWS messages are cut before any echoed
//!   canonical request, and the client scrubs its own secret and token from them.

mod client;
mod connect;
mod error;
pub mod kpl;
pub mod limits;
pub mod sign;

pub use client::{probe_connect, ClientSettings, Credentials, Http, KinesisClient};
pub use connect::Interrupt;
pub use error::{
    classify_record_code, error_from_response, sanitize_message, ErrorClass, RequestError,
    TimeoutPhase,
};

use base64::Engine as _;
use serde::Deserialize;
use std::fmt;

/// `X-Amz-Target` of PutRecords (API version 2013-12-02).
pub const PUT_RECORDS_TARGET: &str = "Kinesis_20131202.PutRecords";
/// Content type of the AWS JSON 1.1 protocol.
pub const CONTENT_TYPE: &str = "application/x-amz-json-1.1";
/// SigV4 service name (signing name) of Kinesis Data Streams.
pub const SIGNING_SERVICE: &str = "kinesis";
/// StreamName: 1..=128 characters of `[a-zA-Z0-9_.-]`.
pub const MAX_STREAM_NAME_CHARS: usize = 128;

// ---------------------------------------------------------------------------
// Stream target and endpoint

/// Which stream to write to: by name (in the client's region) or by ARN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamTarget {
    Name(String),
    Arn(String),
}

impl StreamTarget {
    /// `arn:...` is an ARN, anything else a stream name; both are validated against
    /// the API's patterns so a typo fails at start rather than at every flush.
    pub fn parse(s: &str) -> Result<Self, String> {
        if s.starts_with("arn:") {
            parse_arn(s)?;
            Ok(Self::Arn(s.to_owned()))
        } else {
            validate_stream_name(s)?;
            Ok(Self::Name(s.to_owned()))
        }
    }

    /// The region named in an ARN target (`None` for a plain name).
    pub fn region(&self) -> Option<&str> {
        match self {
            Self::Name(_) => None,
            Self::Arn(arn) => parse_arn(arn).ok().map(|a| a.region),
        }
    }

    /// The stream's name (for an ARN, the part after `stream/`).
    pub fn stream_name(&self) -> &str {
        match self {
            Self::Name(n) => n,
            Self::Arn(arn) => parse_arn(arn).map(|a| a.name).unwrap_or(arn),
        }
    }
}

impl fmt::Display for StreamTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Name(n) => f.write_str(n),
            Self::Arn(a) => f.write_str(a),
        }
    }
}

struct Arn<'a> {
    region: &'a str,
    name: &'a str,
}

/// `arn:aws*:kinesis:<region>:<12 digits>:stream/<name>`.
fn parse_arn(arn: &str) -> Result<Arn<'_>, String> {
    let bad = |why: &str| {
        format!("{arn:?} is not a Kinesis stream ARN ({why}); expected arn:aws:kinesis:<region>:<account id>:stream/<name>")
    };
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let [_, partition, service, region, account, resource] = parts[..] else {
        return Err(bad("too few ':'-separated parts"));
    };
    if !partition.starts_with("aws") {
        return Err(bad("partition must start with aws"));
    }
    if service != "kinesis" {
        return Err(bad("service must be kinesis"));
    }
    if region.is_empty()
        || !region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(bad("bad region"));
    }
    if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad("account id must be 12 digits"));
    }
    let name = resource
        .strip_prefix("stream/")
        .ok_or_else(|| bad("resource must be stream/<name>"))?;
    validate_stream_name(name).map_err(|e| bad(&e))?;
    Ok(Arn { region, name })
}

fn validate_stream_name(name: &str) -> Result<(), String> {
    let valid_chars = name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if name.is_empty() || name.len() > MAX_STREAM_NAME_CHARS || !valid_chars {
        return Err(format!(
            "stream name {name:?} is invalid: 1 to {MAX_STREAM_NAME_CHARS} characters of a-z A-Z 0-9 _ . -"
        ));
    }
    Ok(())
}

/// The public Kinesis endpoint of a region (China regions use `.amazonaws.com.cn`).
/// Other partitions (ISO) need an explicit endpoint setting.
pub fn endpoint_for_region(region: &str) -> String {
    let suffix = if region.starts_with("cn-") {
        "amazonaws.com.cn"
    } else {
        "amazonaws.com"
    };
    format!("https://kinesis.{region}.{suffix}")
}

// ---------------------------------------------------------------------------
// Request body

/// A record's data, sent byte for byte (base64 on the wire).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Data<'a> {
    /// These bytes.
    Bytes(&'a [u8]),
    /// Each line followed by `\n` (an NDJSON record), encoded straight from the events'
    /// own text: a packed record is never copied before it goes into the request.
    Lines(Vec<&'a [u8]>),
}

impl Data<'_> {
    /// Bytes of data (before base64).
    pub fn size(&self) -> usize {
        match self {
            Data::Bytes(b) => b.len(),
            Data::Lines(lines) => lines.iter().map(|l| l.len() + 1).sum(),
        }
    }

    /// The data as one buffer (tests; the request body never needs it).
    #[cfg(test)]
    pub fn to_vec(&self) -> Vec<u8> {
        match self {
            Data::Bytes(b) => b.to_vec(),
            Data::Lines(lines) => {
                let mut out = Vec::with_capacity(self.size());
                for l in lines {
                    out.extend_from_slice(l);
                    out.push(b'\n');
                }
                out
            }
        }
    }

    /// Appends the standard padded base64 of the data to `out`.
    fn encode_into(&self, out: &mut Vec<u8>) {
        use base64::engine::general_purpose::STANDARD;
        match self {
            Data::Bytes(b) => {
                let start = out.len();
                out.resize(start + base64_len(b.len()), 0);
                STANDARD
                    .encode_slice(b, &mut out[start..])
                    .expect("the output was sized with base64_len");
            }
            Data::Lines(lines) => {
                use std::io::Write as _;
                // Writing into a Vec cannot fail.
                let mut w = base64::write::EncoderWriter::new(out, &STANDARD);
                for l in lines {
                    w.write_all(l).expect("writing to a Vec");
                    w.write_all(b"\n").expect("writing to a Vec");
                }
                w.finish().expect("writing to a Vec");
            }
        }
    }
}

/// One record to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record<'a> {
    pub data: Data<'a>,
    pub partition_key: &'a str,
}

impl<'a> Record<'a> {
    /// A record whose data is `data`.
    #[cfg(test)]
    pub fn new(data: &'a [u8], partition_key: &'a str) -> Record<'a> {
        Record {
            data: Data::Bytes(data),
            partition_key,
        }
    }
}

/// The JSON body of a PutRecords request, written in one pass into a buffer sized
/// up front. Each `Data` blob is standard padded base64 (RFC 4648 §4), as the JSON
/// protocol carries blobs, encoded straight into the body: no string per record, and
/// NDJSON records straight from their events' text.
pub fn put_records_body(target: &StreamTarget, records: &[Record]) -> Vec<u8> {
    let (field, value) = match target {
        StreamTarget::Name(n) => ("{\"StreamName\":", n),
        StreamTarget::Arn(a) => ("{\"StreamARN\":", a),
    };
    let capacity = 64
        + value.len()
        + records
            .iter()
            .map(|r| base64_len(r.data.size()) + r.partition_key.len() + 40)
            .sum::<usize>();
    let mut out = Vec::with_capacity(capacity);
    out.extend_from_slice(field.as_bytes());
    write_json_str(&mut out, value);
    out.extend_from_slice(b",\"Records\":[");
    for (i, r) in records.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"Data\":\"");
        r.data.encode_into(&mut out);
        out.extend_from_slice(b"\",\"PartitionKey\":");
        write_json_str(&mut out, r.partition_key);
        out.push(b'}');
    }
    out.extend_from_slice(b"]}");
    out
}

/// Length of the padded base64 text of `n` bytes: `4 * ceil(n / 3)`.
fn base64_len(n: usize) -> usize {
    base64::encoded_len(n, true).expect("a record is far smaller than usize::MAX / 4 * 3")
}

fn write_json_str(out: &mut Vec<u8>, s: &str) {
    serde_json::to_writer(out, s).expect("writing a str to a Vec cannot fail");
}

// ---------------------------------------------------------------------------
// Response

/// A parsed 2xx PutRecords answer; `records[i]` is the outcome of request record `i`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutRecordsResponse {
    pub records: Vec<RecordOutcome>,
}

/// The outcome of one record of a PutRecords request (its sequence number and shard are not
/// needed: the extension only tells delivered from failed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordOutcome {
    Ok,
    /// `ProvisionedThroughputExceededException` or `InternalFailure` per the API;
    /// an entry with neither a sequence number nor a code is reported with an
    /// empty code.
    Failed {
        code: String,
        message: String,
    },
}

#[derive(Deserialize)]
struct WireResponse {
    #[serde(rename = "Records")]
    records: Vec<WireEntry>,
}

#[derive(Deserialize)]
struct WireEntry {
    #[serde(rename = "SequenceNumber", default)]
    sequence_number: Option<String>,
    #[serde(rename = "ErrorCode", default)]
    error_code: Option<String>,
    #[serde(rename = "ErrorMessage", default)]
    error_message: Option<String>,
}

/// Parses a 2xx body; `sent` is the number of records in the request. Unknown
/// fields are ignored.
pub fn parse_put_records_response(
    body: &[u8],
    sent: usize,
) -> Result<PutRecordsResponse, RequestError> {
    let wire: WireResponse = serde_json::from_slice(body).map_err(|e| {
        RequestError::MalformedResponse(format!(
            "not a PutRecords response ({e}): {}",
            error::body_excerpt(body)
        ))
    })?;
    if wire.records.len() != sent {
        return Err(RequestError::MalformedResponse(format!(
            "response lists {} records for {sent} sent",
            wire.records.len()
        )));
    }
    let records: Vec<RecordOutcome> = wire
        .records
        .into_iter()
        .map(|e| match (e.error_code, e.sequence_number) {
            (Some(code), _) if !code.is_empty() => RecordOutcome::Failed {
                code,
                message: sanitize_message(e.error_message.as_deref().unwrap_or("")),
            },
            (_, Some(_)) => RecordOutcome::Ok,
            _ => RecordOutcome::Failed {
                code: String::new(),
                message: "entry has neither SequenceNumber nor ErrorCode".to_owned(),
            },
        })
        .collect();
    Ok(PutRecordsResponse { records })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn stream_targets_parse_and_validate() {
        assert_eq!(
            StreamTarget::parse("my-stream_1.x"),
            Ok(StreamTarget::Name("my-stream_1.x".into()))
        );
        for bad in ["", "has space", "slash/name", "é", &"a".repeat(129)] {
            assert!(StreamTarget::parse(bad).is_err(), "{bad:?}");
        }
        assert!(StreamTarget::parse(&"a".repeat(128)).is_ok());

        let arn = "arn:aws:kinesis:eu-west-1:111122223333:stream/telemetry";
        let t = StreamTarget::parse(arn).unwrap();
        assert_eq!(t, StreamTarget::Arn(arn.into()));
        assert_eq!(t.region(), Some("eu-west-1"));
        assert_eq!(t.stream_name(), "telemetry");
        assert_eq!(t.to_string(), arn);

        let cn =
            StreamTarget::parse("arn:aws-cn:kinesis:cn-north-1:111122223333:stream/s").unwrap();
        assert_eq!(cn.region(), Some("cn-north-1"));
        assert_eq!(StreamTarget::Name("s".into()).region(), None);

        for bad in [
            "arn:aws:kinesis:eu-west-1:111122223333:telemetry",
            "arn:aws:firehose:eu-west-1:111122223333:stream/x",
            "arn:aws:kinesis:eu-west-1:1111:stream/x",
            "arn:aws:kinesis::111122223333:stream/x",
            "arn:aws:kinesis:eu-west-1:111122223333:stream/",
            "arn:aws:kinesis",
        ] {
            let err = StreamTarget::parse(bad).unwrap_err();
            assert!(err.contains("ARN"), "{bad}: {err}");
        }
    }

    #[test]
    fn endpoints_per_partition() {
        assert_eq!(
            endpoint_for_region("us-east-1"),
            "https://kinesis.us-east-1.amazonaws.com"
        );
        assert_eq!(
            endpoint_for_region("cn-northwest-1"),
            "https://kinesis.cn-northwest-1.amazonaws.com.cn"
        );
        assert_eq!(
            endpoint_for_region("us-gov-west-1"),
            "https://kinesis.us-gov-west-1.amazonaws.com"
        );
    }

    fn decode_b64(s: &str) -> Vec<u8> {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD
            .decode(s)
            .expect("standard padded base64")
    }

    #[test]
    fn body_is_the_documented_json_and_data_round_trips_byte_for_byte() {
        let events: [&[u8]; 3] = [
            br#"{"time":"2024-01-01T00:00:00Z","type":"platform.start","record":{"requestId":"r"}}"#,
            b"",
            "{\"record\":\"caf\u{e9} \\u0000\"}".as_bytes(),
        ];
        let keys = ["k1", "quote\"back\\slash", "日本"];
        let records: Vec<Record> = events
            .iter()
            .zip(keys)
            .map(|(d, k)| Record::new(d, k))
            .collect();
        let body = put_records_body(&StreamTarget::Name("s\"x".into()), &records);
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["StreamName"], "s\"x");
        assert!(v.get("StreamARN").is_none());
        let recs = v["Records"].as_array().unwrap();
        assert_eq!(recs.len(), 3);
        for (i, r) in recs.iter().enumerate() {
            assert_eq!(decode_b64(r["Data"].as_str().unwrap()), events[i]);
            assert_eq!(r["PartitionKey"], keys[i]);
            assert_eq!(
                r.as_object().unwrap().len(),
                2,
                "only Data and PartitionKey"
            );
        }

        let arn = "arn:aws:kinesis:us-east-1:111122223333:stream/s";
        let body = put_records_body(&StreamTarget::Arn(arn.into()), &records[..1]);
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["StreamARN"], arn);
        assert!(v.get("StreamName").is_none());
    }

    #[test]
    fn body_buffer_is_sized_up_front() {
        let data = vec![7u8; 100_000];
        let records: Vec<Record> = (0..50)
            .map(|_| Record::new(&data, "0123456789abcdef"))
            .collect();
        let body = put_records_body(&StreamTarget::Name("s".into()), &records);
        assert!(body.capacity() >= body.len() && body.capacity() - body.len() < 4096);
    }

    #[test]
    fn data_is_standard_padded_base64() {
        // RFC 4648 §10 test vectors, then the two characters where base64 alphabets differ.
        let vectors: [(&[u8], &str); 9] = [
            (b"", ""),
            (b"f", "Zg=="),
            (b"fo", "Zm8="),
            (b"foo", "Zm9v"),
            (b"foob", "Zm9vYg=="),
            (b"fooba", "Zm9vYmE="),
            (b"foobar", "Zm9vYmFy"),
            (&[0xfb, 0xff, 0xbf], "+/+/"),
            (&[0xff], "/w=="),
        ];
        let records: Vec<Record> = vectors
            .iter()
            .map(|(data, _)| Record::new(data, "k"))
            .collect();
        let body = put_records_body(&StreamTarget::Name("s".into()), &records);
        let v: Value = serde_json::from_slice(&body).unwrap();
        let recs = v["Records"].as_array().unwrap();
        assert_eq!(recs.len(), vectors.len());
        for (r, (plain, expected)) in recs.iter().zip(vectors) {
            assert_eq!(r["Data"], expected, "input {plain:?}");
        }
    }

    #[test]
    fn data_of_every_length_round_trips() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7 + i / 3) as u8).collect();
        for n in [0, 1, 2, 3, 4, 5, 3071, 3072, 3073, 6145, 10_000] {
            let records = [Record::new(&data[..n], "k")];
            let body = put_records_body(&StreamTarget::Name("s".into()), &records);
            let v: Value = serde_json::from_slice(&body).unwrap();
            let text = v["Records"][0]["Data"].as_str().unwrap();
            assert_eq!(text.len(), n.div_ceil(3) * 4, "n = {n}");
            assert_eq!(decode_b64(text), &data[..n], "n = {n}");
        }
    }

    #[test]
    fn lines_are_encoded_as_their_concatenation_whatever_the_lengths() {
        let text: Vec<u8> = (0..5_000u32).map(|i| b'a' + (i % 26) as u8).collect();
        // Line lengths around base64's 3-byte groups and its encoder's internal buffer.
        for lens in [
            vec![0],
            vec![1, 1, 1],
            vec![2, 0, 5, 767, 768, 769],
            vec![1023, 1024, 1025],
        ] {
            let mut at = 0;
            let lines: Vec<&[u8]> = lens
                .iter()
                .map(|&n| {
                    let l = &text[at..at + n];
                    at += n;
                    l
                })
                .collect();
            let data = Data::Lines(lines);
            let expected = data.to_vec();
            assert_eq!(data.size(), expected.len());
            let records = [Record {
                data,
                partition_key: "k",
            }];
            let body = put_records_body(&StreamTarget::Name("s".into()), &records);
            let v: Value = serde_json::from_slice(&body).unwrap();
            let text = v["Records"][0]["Data"].as_str().unwrap();
            assert_eq!(decode_b64(text), expected, "{lens:?}");
            assert_eq!(text.len(), base64_len(expected.len()), "{lens:?}");
        }
    }

    #[test]
    fn response_parsing_accepts_unknown_fields_and_reports_each_record() {
        let body = br#"{"FailedRecordCount":1,"EncryptionType":"NONE","NewField":[1],"Records":[
            {"SequenceNumber":"49543463076548007577105092703039560359975228518395019266","ShardId":"shardId-000000000000","Extra":true},
            {"ErrorCode":"ProvisionedThroughputExceededException","ErrorMessage":"Rate exceeded for shard"}]}"#;
        let r = parse_put_records_response(body, 2).unwrap();
        assert_eq!(
            r.records,
            vec![
                RecordOutcome::Ok,
                RecordOutcome::Failed {
                    code: "ProvisionedThroughputExceededException".into(),
                    message: "Rate exceeded for shard".into()
                },
            ]
        );
    }

    #[test]
    fn response_of_the_wrong_length_or_shape_is_malformed_not_a_panic() {
        let two = br#"{"FailedRecordCount":0,"Records":[{"SequenceNumber":"1","ShardId":"a"},{"SequenceNumber":"2","ShardId":"a"}]}"#;
        for sent in [0, 1, 3, 500] {
            assert!(matches!(
                parse_put_records_response(two, sent),
                Err(RequestError::MalformedResponse(_))
            ));
        }
        for garbage in [
            &b""[..],
            b"null",
            b"{}",
            b"{\"Records\":{}}",
            b"\xff\xfe",
            b"<html>",
        ] {
            let e = parse_put_records_response(garbage, 1).unwrap_err();
            assert!(matches!(e, RequestError::MalformedResponse(_)), "{e:?}");
            assert_eq!(e.class(), ErrorClass::Retryable);
        }
        // An entry with neither field counts as failed (and is resent), not as delivered.
        let r = parse_put_records_response(br#"{"Records":[{}]}"#, 1).unwrap();
        assert!(matches!(&r.records[0], RecordOutcome::Failed { code, .. } if code.is_empty()));
    }
}
