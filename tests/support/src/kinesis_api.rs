//! The PutRecords request model as the Kinesis endpoint enforces it: API limits,
//! the validation of a request body, and AWS's error shapes.
//!
//! Pure functions, no I/O: [`parse_put_records`] turns a body into records or the
//! whole-request error AWS would answer with. Checks, in AWS's order: JSON shape
//! (`SerializationException`), model constraints collected into one
//! `ValidationException` ("N validation errors detected: ..."), then the size
//! limits on data + key and on the request (`InvalidArgumentException`).
//!
//! Messages copy AWS's wording where it is documented or widely quoted (validation
//! errors, `ResourceNotFoundException`, `SerializationException` for bad base64,
//! which AWS spells with `Message`); the data + key and request-size checks have no
//! widely quoted wording and use a descriptive message.

use base64::Engine as _;
use md5::{Digest, Md5};
use serde_json::{json, Value};

/// `X-Amz-Target` of PutRecords (Kinesis API version 2013-12-02).
pub const PUT_RECORDS_TARGET: &str = "Kinesis_20131202.PutRecords";
/// Content type of the AWS JSON 1.1 protocol.
pub const CONTENT_TYPE: &str = "application/x-amz-json-1.1";
/// Largest hash key: 2^128 - 1 (PutRecordsRequestEntry.ExplicitHashKey).
pub const MAX_HASH_KEY: &str = "340282366920938463463374607431768211455";

/// Limits enforced on each request; defaults are the classic AWS limits.
#[derive(Clone, Debug)]
pub struct KinesisLimits {
    /// PutRecords: 1..=500 records per request.
    pub max_records_per_request: usize,
    /// PutRecordsRequestEntry.PartitionKey: 1..=256 Unicode characters.
    pub max_partition_key_chars: usize,
    /// A record (data + partition key) up to 1 MiB by default.
    pub max_record_bytes: usize,
    /// A request (sum of data + partition keys) up to 5 MiB classically.
    pub max_request_bytes: usize,
}

impl Default for KinesisLimits {
    fn default() -> Self {
        KinesisLimits {
            max_records_per_request: 500,
            max_partition_key_chars: 256,
            max_record_bytes: 1024 * 1024,
            max_request_bytes: 5 * 1024 * 1024,
        }
    }
}

/// A whole-request error as AWS sends it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AwsError {
    pub status: u16,
    pub code: String,
    pub message: String,
}

impl AwsError {
    pub fn new(status: u16, code: &str, message: impl Into<String>) -> Self {
        AwsError {
            status,
            code: code.to_owned(),
            message: message.into(),
        }
    }

    /// 400 AccessDeniedException, as for a role without `kinesis:PutRecords`.
    pub fn access_denied(account: &str, stream: &str) -> Self {
        AwsError::new(
            400,
            "AccessDeniedException",
            format!(
                "User: arn:aws:sts::{account}:assumed-role/fn-role/fn is not authorized to perform: \
                 kinesis:PutRecords on resource: arn:aws:kinesis:us-east-1:{account}:stream/{stream} \
                 because no identity-based policy allows the kinesis:PutRecords action"
            ),
        )
    }

    /// The error a server-side failure with this status answers with.
    pub fn server(status: u16) -> Self {
        match status {
            503 => AwsError::new(503, "ServiceUnavailableException", "Service Unavailable"),
            s => AwsError::new(s, "InternalFailure", "Internal service failure."),
        }
    }

    /// The JSON body AWS sends with this error.
    pub fn body(&self) -> Value {
        // AWS spells the key `Message` for SerializationException and `message` otherwise.
        let key = if self.code == "SerializationException" {
            "Message"
        } else {
            "message"
        };
        json!({ "__type": self.code, key: self.message })
    }
}

pub struct ParsedRecord {
    pub data: Vec<u8>,
    pub partition_key: String,
    pub explicit_hash_key: Option<String>,
}

pub struct ParsedRequest {
    pub stream: String,
    pub records: Vec<ParsedRecord>,
}

fn serialization(message: impl Into<String>) -> AwsError {
    AwsError::new(400, "SerializationException", message)
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        format!("{}...", s.chars().take(max).collect::<String>())
    }
}

/// Where a request lands: the endpoint's region and account, and its limits.
#[derive(Clone, Copy, Debug)]
pub struct Account<'a> {
    pub region: &'a str,
    pub account_id: &'a str,
    pub limits: &'a KinesisLimits,
}

/// Validates a PutRecords body against the API model and the limits.
pub fn parse_put_records(body: &[u8], account: &Account<'_>) -> Result<ParsedRequest, AwsError> {
    let limits = account.limits;
    let v: Value =
        serde_json::from_slice(body).map_err(|e| serialization(format!("Invalid JSON: {e}")))?;
    let obj = v
        .as_object()
        .ok_or_else(|| serialization("Start of structure or map expected"))?;
    let mut errors = Vec::new();

    let stream = match (obj.get("StreamName"), obj.get("StreamARN")) {
        (None | Some(Value::Null), None | Some(Value::Null)) => {
            return Err(AwsError::new(
                400,
                "ValidationException",
                "Either StreamName or StreamARN should be provided.",
            ))
        }
        (name, arn) => {
            let name = match name {
                Some(Value::String(s)) => Some(s.clone()),
                None | Some(Value::Null) => None,
                Some(_) => return Err(serialization("StreamName must be a string")),
            };
            let arn_name = match arn {
                Some(Value::String(s)) => Some(stream_name_from_arn(s, account)?),
                None | Some(Value::Null) => None,
                Some(_) => return Err(serialization("StreamARN must be a string")),
            };
            if let (Some(n), Some(a)) = (&name, &arn_name) {
                if n != a {
                    return Err(AwsError::new(
                        400,
                        "InvalidArgumentException",
                        "StreamARN and StreamName must refer to the same stream.",
                    ));
                }
            }
            let s = name.or(arn_name).unwrap_or_default();
            if s.is_empty()
                || s.len() > 128
                || !s
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
            {
                errors.push(format!(
                    "Value '{s}' at 'streamName' failed to satisfy constraint: Member must satisfy regular expression \
                     pattern: [a-zA-Z0-9_.-]+ and have length between 1 and 128"
                ));
            }
            s
        }
    };

    let records = match obj.get("Records") {
        None | Some(Value::Null) => {
            errors.push(
                "Value null at 'records' failed to satisfy constraint: Member must not be null"
                    .to_owned(),
            );
            Vec::new()
        }
        Some(Value::Array(a)) => a.clone(),
        Some(_) => return Err(serialization("Records must be a list")),
    };
    if obj.get("Records").is_some_and(Value::is_array) {
        if records.is_empty() {
            errors.push(
                "Value '[]' at 'records' failed to satisfy constraint: Member must have length greater than or equal to 1"
                    .to_owned(),
            );
        } else if records.len() > limits.max_records_per_request {
            errors.push(format!(
                "Value '[PutRecordsRequestEntry x {}]' at 'records' failed to satisfy constraint: Member must have \
                 length less than or equal to {}",
                records.len(),
                limits.max_records_per_request
            ));
        }
    }

    let mut parsed = Vec::with_capacity(records.len());
    for (i, rec) in records.iter().enumerate() {
        let n = i + 1;
        let rec = rec
            .as_object()
            .ok_or_else(|| serialization("Record must be a structure"))?;
        let data = match rec.get("Data") {
            None | Some(Value::Null) => {
                errors.push(format!("Value null at 'records.{n}.member.data' failed to satisfy constraint: Member must not be null"));
                None
            }
            Some(Value::String(s)) => Some(decode_blob(s)?),
            Some(_) => return Err(serialization("Data must be a base64-encoded string")),
        };
        if let Some(d) = &data {
            if d.len() > limits.max_record_bytes {
                errors.push(format!(
                    "Value 'java.nio.HeapByteBuffer[pos=0 lim={len} cap={len}]' at 'records.{n}.member.data' failed to \
                     satisfy constraint: Member must have length less than or equal to {}",
                    limits.max_record_bytes,
                    len = d.len()
                ));
            }
        }
        let key = match rec.get("PartitionKey") {
            None | Some(Value::Null) => {
                errors.push(format!(
                    "Value null at 'records.{n}.member.partitionKey' failed to satisfy constraint: Member must not be null"
                ));
                None
            }
            Some(Value::String(s)) => {
                let chars = s.chars().count();
                if chars == 0 {
                    errors.push(format!(
                        "Value '' at 'records.{n}.member.partitionKey' failed to satisfy constraint: Member must have \
                         length greater than or equal to 1"
                    ));
                } else if chars > limits.max_partition_key_chars {
                    errors.push(format!(
                        "Value '{}' at 'records.{n}.member.partitionKey' failed to satisfy constraint: Member must have \
                         length less than or equal to {}",
                        truncate(s, 64),
                        limits.max_partition_key_chars
                    ));
                }
                Some(s.clone())
            }
            Some(_) => return Err(serialization("PartitionKey must be a string")),
        };
        let ehk = match rec.get("ExplicitHashKey") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => {
                let valid_pattern = s == "0"
                    || (!s.is_empty()
                        && s.len() <= 39
                        && !s.starts_with('0')
                        && s.bytes().all(|b| b.is_ascii_digit()));
                if !valid_pattern {
                    errors.push(format!(
                        "Value '{}' at 'records.{n}.member.explicitHashKey' failed to satisfy constraint: Member must \
                         satisfy regular expression pattern: 0|([1-9]\\d{{0,38}})",
                        truncate(s, 64)
                    ));
                }
                Some(s.clone())
            }
            Some(_) => return Err(serialization("ExplicitHashKey must be a string")),
        };
        if let (Some(data), Some(partition_key)) = (data, key) {
            parsed.push(ParsedRecord {
                data,
                partition_key,
                explicit_hash_key: ehk,
            });
        }
    }

    if !errors.is_empty() {
        let n = errors.len();
        let plural = if n == 1 { "error" } else { "errors" };
        return Err(AwsError::new(
            400,
            "ValidationException",
            format!("{n} validation {plural} detected: {}", errors.join("; ")),
        ));
    }

    let mut total = 0usize;
    for (i, r) in parsed.iter().enumerate() {
        if let Some(k) = &r.explicit_hash_key {
            if k.len() == 39 && k.as_str() > MAX_HASH_KEY {
                return Err(AwsError::new(
                    400,
                    "InvalidArgumentException",
                    format!("Invalid ExplicitHashKey. ExplicitHashKey must be in the range: [0, 2^128-1]. Specified value was {k}"),
                ));
            }
        }
        let size = r.data.len() + r.partition_key.len();
        if size > limits.max_record_bytes {
            return Err(AwsError::new(
                400,
                "InvalidArgumentException",
                format!(
                    "Record {} has a size of {size} bytes (data + partition key), over the {} byte limit",
                    i + 1,
                    limits.max_record_bytes
                ),
            ));
        }
        total += size;
    }
    if total > limits.max_request_bytes {
        return Err(AwsError::new(
            400,
            "InvalidArgumentException",
            format!(
                "Records size exceeds {} MB limit",
                limits.max_request_bytes / (1024 * 1024)
            ),
        ));
    }
    Ok(ParsedRequest {
        stream,
        records: parsed,
    })
}

/// Decodes `Data` like the service: standard alphabet, padded, length a multiple of 4.
pub fn decode_blob(s: &str) -> Result<Vec<u8>, AwsError> {
    if !s.len().is_multiple_of(4) {
        return Err(serialization(format!(
            "'{}' can not be converted to a Blob: Base64 encoded length is expected a multiple of 4 bytes but found: {}",
            truncate(s, 64),
            s.len()
        )));
    }
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .map_err(|e| {
            serialization(format!(
                "'{}' can not be converted to a Blob: Invalid Base64 encoding ({e})",
                truncate(s, 64)
            ))
        })
}

fn stream_name_from_arn(arn: &str, account: &Account<'_>) -> Result<String, AwsError> {
    // arn:aws[-cn|-us-gov]:kinesis:<region>:<12 digits>:stream/<name>
    let bad = || {
        AwsError::new(
            400,
            "ValidationException",
            format!(
                "1 validation error detected: Value '{arn}' at 'streamARN' failed to satisfy constraint: Member must \
                 satisfy regular expression pattern: arn:aws.*:kinesis:.*:\\d{{12}}:stream/\\S+"
            ),
        )
    };
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    if parts.len() != 6
        || parts[0] != "arn"
        || !parts[1].starts_with("aws")
        || parts[2] != "kinesis"
    {
        return Err(bad());
    }
    if parts[4].len() != 12 || !parts[4].bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let name = parts[5]
        .strip_prefix("stream/")
        .filter(|n| !n.is_empty() && !n.contains(char::is_whitespace))
        .ok_or_else(bad)?;
    if parts[3] != account.region || parts[4] != account.account_id {
        return Err(AwsError::new(
            400,
            "ResourceNotFoundException",
            format!("Stream {name} under account {} not found.", parts[4]),
        ));
    }
    Ok(name.to_owned())
}

/// A partition key's hash key, as Kinesis computes it: the MD5 digest of its UTF-8 bytes
/// read as a 128-bit big-endian unsigned integer.
pub fn hash_key(partition_key: &str) -> u128 {
    u128::from_be_bytes(Md5::digest(partition_key.as_bytes()).into())
}

/// The first hash key of shard `i` of `shards` in a stream created with that many shards:
/// the 2^128 hash keys split evenly, shard `i` starting at floor(i × 2^128 / shards) (for 2
/// shards: 0 and 2^127 = 170141183460469231731687303715884105728).
pub fn shard_start(i: u32, shards: u32) -> u128 {
    let n = u128::from(shards.max(1));
    let i = u128::from(i);
    if i == 0 || n == 1 {
        return 0;
    }
    // 2^128 = q·n + r with q = floor(2^128 / n): i·2^128/n = i·q + i·r/n, no overflow.
    let q = u128::MAX / n + u128::from(u128::MAX % n == n - 1);
    let r = (u128::MAX % n + 1) % n;
    i * q + i * r / n
}

/// Shard owning a record: its explicit hash key when given, else its partition key's
/// [`hash_key`], in the even split of [`shard_start`].
pub fn shard_for(partition_key: &str, explicit_hash_key: Option<&str>, shard_count: u32) -> u32 {
    let hash = match explicit_hash_key.and_then(|k| k.parse::<u128>().ok()) {
        Some(h) => h,
        None => hash_key(partition_key),
    };
    let n = shard_count.max(1);
    // The last shard whose range starts at or below the hash (n is small: a linear scan).
    (1..n)
        .take_while(|&i| shard_start(i, n) <= hash)
        .last()
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Known answers: RFC 1321's MD5 test suite ("a", "abc", "message digest") read as
    /// big-endian integers, and the split of a 2-shard stream at 2^127.
    #[test]
    fn partition_keys_hash_with_md5_to_the_shard_kinesis_would_pick() {
        assert_eq!(hash_key("a"), 0x0cc175b9c0f1b6a831c399e269772661);
        assert_eq!(hash_key("abc"), 0x900150983cd24fb0d6963f7d28e17f72);
        assert_eq!(
            hash_key("message digest"),
            0xf96b697d7cb7938d525a2f31aaf161d0
        );
        assert_eq!(shard_start(1, 2), 170141183460469231731687303715884105728);
        let cases = [
            ("a", 2, 0),              // 0x0cc1… < 2^127
            ("abc", 2, 1),            // 0x9001… ≥ 2^127
            ("message digest", 2, 1), // 0xf96b…
            ("a", 1, 0),
            ("message digest", 16, 15), // top nibble f
            ("abc", 16, 9),             // top nibble 9
            ("a", 16, 0),
        ];
        for (key, shards, shard) in cases {
            assert_eq!(shard_for(key, None, shards), shard, "{key:?} of {shards}");
        }
    }

    #[test]
    fn shard_ranges_start_where_create_stream_puts_them() {
        // Three shards: 2^128 / 3 = 113427455640312821154458202477256070485.33…
        assert_eq!(shard_start(0, 3), 0);
        assert_eq!(shard_start(1, 3), 113427455640312821154458202477256070485);
        assert_eq!(shard_start(2, 3), 226854911280625642308916404954512140970);
        assert_eq!(shard_start(1, 4), 1 << 126);
        assert_eq!(shard_start(3, 4), 3 << 126);
        assert_eq!(shard_start(1, 1 << 20), 1 << 108);
        let last = u128::MAX.to_string();
        assert_eq!(shard_for("x", Some(&last), 3), 2);
        let at = shard_start(2, 3).to_string();
        let before = (shard_start(2, 3) - 1).to_string();
        assert_eq!(shard_for("x", Some(&at), 3), 2);
        assert_eq!(shard_for("x", Some(&before), 3), 1);
    }

    #[test]
    fn shards_cover_the_hash_space() {
        assert_eq!(shard_for("x", Some("0"), 4), 0);
        assert_eq!(shard_for("x", Some(MAX_HASH_KEY), 4), 3);
        let mut seen = [false; 4];
        for i in 0..200 {
            seen[shard_for(&format!("key-{i}"), None, 4) as usize] = true;
        }
        assert!(seen.iter().all(|s| *s));
    }

    #[test]
    fn base64_must_be_padded_standard() {
        assert_eq!(decode_blob("aGk=").unwrap(), b"hi");
        let e = decode_blob("foobar").unwrap_err();
        assert!(
            e.message.contains("multiple of 4 bytes but found: 6"),
            "{}",
            e.message
        );
        assert!(decode_blob("aG!=").is_err());
    }
}
