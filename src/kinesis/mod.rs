//! Kinesis Data Streams `PutRecords`: stream target, request body and response
//! here; error classes in [`error`]; the HTTP client and its settings ([`Http`]) in
//! [`client`]; where its credentials come from ([`CredentialSource`]: the environment or the
//! container credentials endpoint) in [`credentials`]. Everything is
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
pub mod credentials;
mod error;
pub mod kpl;
pub mod limits;
pub mod sign;

pub use client::{probe_connect, ClientSettings, Http, KinesisClient};
pub use connect::Interrupt;
pub use credentials::{AuthToken, ContainerEndpoint, CredentialSource, Credentials};
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
mod tests;
