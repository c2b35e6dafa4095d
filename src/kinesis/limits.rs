//! The Kinesis PutRecords limits, as named constants citing the API, and the per-request
//! [`Limits`] the extension packs to (settable, clamped to the API maxima).
//!
//! Sizes follow the service's own accounting (PutRecords API reference): a record counts
//! its data blob bytes (before base64) plus its partition key's UTF-8 bytes, and a request
//! counts the sum over its records. The base64 and JSON overhead of the HTTP body is not
//! counted by Kinesis and is not counted here.

/// PutRecords: "Each PutRecords request can support up to 500 records."
pub const MAX_RECORDS_PER_REQUEST: usize = 500;
/// PutRecords: whole request limit, "up to 5 MiB" in the classic documentation.
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 5 * 1024 * 1024;
/// PutRecords: the current API model allows requests up to 10 MiB.
pub const HARD_MAX_REQUEST_BYTES: usize = 10 * 1024 * 1024;
/// PutRecords: "Each record in the request can be as large as 1 MiB" (data + key).
pub const DEFAULT_MAX_RECORD_BYTES: usize = 1024 * 1024;
/// A stream's `MaxRecordSizeInKiB` can raise the record limit to 10 MiB.
pub const HARD_MAX_RECORD_BYTES: usize = 10 * 1024 * 1024;
/// PutRecordsRequestEntry.PartitionKey: minimum length 1 (Unicode characters).
pub const MIN_PARTITION_KEY_CHARS: usize = 1;
/// PutRecordsRequestEntry.PartitionKey: maximum length 256 (Unicode characters).
pub const MAX_PARTITION_KEY_CHARS: usize = 256;

/// Per-request limits, as Kinesis counts them (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Records per PutRecords call: default and maximum 500.
    pub max_records: usize,
    /// Sum of record sizes per call: default 5 MiB, at most 10 MiB.
    pub max_request_bytes: usize,
    /// One record's data + partition key bytes: default 1 MiB, at most 10 MiB.
    pub max_record_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_records: MAX_RECORDS_PER_REQUEST,
            max_request_bytes: DEFAULT_MAX_REQUEST_BYTES,
            max_record_bytes: DEFAULT_MAX_RECORD_BYTES,
        }
    }
}

impl Limits {
    /// Clamps every field to `1..=` its API maximum, so a zero or out-of-range setting can
    /// neither stall the buffer nor exceed the API.
    pub fn clamped(self) -> Self {
        Self {
            max_records: self.max_records.clamp(1, MAX_RECORDS_PER_REQUEST),
            max_request_bytes: self.max_request_bytes.clamp(1, HARD_MAX_REQUEST_BYTES),
            max_record_bytes: self.max_record_bytes.clamp(1, HARD_MAX_RECORD_BYTES),
        }
    }

    /// The largest one record may be (data + key): a record must also fit a request.
    pub fn record_max(&self) -> usize {
        let l = self.clamped();
        l.max_record_bytes.min(l.max_request_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: usize = 1024 * 1024;

    #[test]
    fn defaults_are_the_documented_limits_and_out_of_range_values_clamp() {
        let l = Limits::default();
        assert_eq!(
            (l.max_records, l.max_request_bytes, l.max_record_bytes),
            (500, 5 * MIB, MIB)
        );
        let huge = Limits {
            max_records: 9999,
            max_request_bytes: 99 * MIB,
            max_record_bytes: 0,
        };
        assert_eq!(
            huge.clamped(),
            Limits {
                max_records: 500,
                max_request_bytes: 10 * MIB,
                max_record_bytes: 1
            }
        );
    }

    #[test]
    fn a_record_never_exceeds_a_request() {
        let l = Limits {
            max_records: 500,
            max_request_bytes: 1000,
            max_record_bytes: MIB,
        };
        assert_eq!(l.record_max(), 1000);
        assert_eq!(Limits::default().record_max(), MIB);
    }
}
