//! The registry of settings: every `KINESIS_TELEMETRY_*` variable the extension reads, with
//! its documented default, and the ranges of the integer ones. Parsing (`config`), the
//! warning for unknown variables and the docs check all read them from here.

use super::reader::{Int, Known};
use crate::intake::receiver::Buffering;
use crate::kinesis::limits as batch;

/// The prefix every extension setting shares.
pub const PREFIX: &str = "KINESIS_TELEMETRY_";

/// Telemetry API buffering limits (Lambda developer guide, "Telemetry API", buffering; the
/// maxima are the receiver's [`Buffering::MAX`]).
pub const BUFFERING_MAX_ITEMS: Int = Int::new(
    "BUFFERING_MAX_ITEMS",
    10_000,
    1_000,
    Buffering::MAX.max_items,
);
pub const BUFFERING_MAX_BYTES: Int = Int::new(
    "BUFFERING_MAX_BYTES",
    262_144,
    262_144,
    Buffering::MAX.max_bytes,
);
/// 25 ms is the Telemetry API's minimum: a strategy that may wait for an invocation's
/// `platform.runtimeDone` gets it that much sooner (it is what the invocation pays).
pub const BUFFERING_TIMEOUT_MS: Int =
    Int::new("BUFFERING_TIMEOUT_MS", 25, 25, Buffering::MAX.timeout_ms);
/// With `FLUSH_STRATEGY=background` nothing waits for `runtimeDone`: fewer, larger POSTs,
/// and the platform's last batch still reaches the extension early at SHUTDOWN.
pub const BACKGROUND_BUFFERING_TIMEOUT_MS: u64 = 100;

pub const PORT: Int = Int::new("PORT", 4243, 0, 65_535);
/// Port 9001 is reserved by the Lambda Runtime API.
pub const RESERVED_PORT: u16 = 9001;

pub const FLUSH_MAX_EVENTS: Int = Int::new("FLUSH_MAX_EVENTS", 500, 1, 10_000_000);
pub const FLUSH_MAX_BYTES: Int = Int::new("FLUSH_MAX_BYTES", 1 << 20, 1, 1 << 30);
/// One second keeps the busy-function promise (p99 ≤ 1.5 s from emit to stream) with room
/// for Lambda's buffering and one PutRecords, and is half the Node.js sample's median.
pub const FRESHNESS_MS: Int = Int::new("FRESHNESS_MS", 1_000, 0, 3_600_000);
/// The most an invocation waits for the extension after its `platform.runtimeDone` reaches
/// it. Lambda's 25 ms buffering comes before that, so the worst an invocation sees is about
/// 90 ms, under what a user can tell from noise; it still leaves a healthy in-region
/// PutRecords (typically 10–30 ms) twice its usual time to finish a held flush. A request
/// still in flight then is cut and resent.
pub const MAX_ADDED_MS: Int = Int::new("MAX_ADDED_MS", 60, 10, 900_000);
pub const BUFFER_MAX_EVENTS: Int = Int::new("BUFFER_MAX_EVENTS", 100_000, 1_000, 10_000_000);
pub const BUFFER_MAX_BYTES: Int = Int::new("BUFFER_MAX_BYTES", 8 << 20, 1 << 20, 1 << 30);
pub const MAX_RECORDS_PER_REQUEST: Int = Int::new(
    "MAX_RECORDS_PER_REQUEST",
    batch::MAX_RECORDS_PER_REQUEST as u64,
    1,
    batch::MAX_RECORDS_PER_REQUEST as u64,
)
.clamped();
pub const MAX_REQUEST_BYTES: Int = Int::new(
    "MAX_REQUEST_BYTES",
    batch::DEFAULT_MAX_REQUEST_BYTES as u64,
    1024,
    batch::HARD_MAX_REQUEST_BYTES as u64,
)
.clamped();
pub const MAX_RECORD_BYTES: Int = Int::new(
    "MAX_RECORD_BYTES",
    batch::DEFAULT_MAX_RECORD_BYTES as u64,
    1024,
    batch::HARD_MAX_RECORD_BYTES as u64,
)
.clamped();
/// Packed records are filled up to this many bytes (data + key). Provisioned streams bill a
/// PUT payload unit per 25 KB of a record and on-demand streams round each record up to
/// 1 KB: a record just under 25 KB costs one unit and wastes under 4 % to rounding. Per
/// shard, 1,000 records/s of 25 KB is far above the 1 MiB/s byte limit, so the shard's byte
/// capacity is what binds, not its record count.
pub const RECORD_TARGET_BYTES: Int = Int::new(
    "RECORD_TARGET_BYTES",
    25_000,
    1024,
    batch::HARD_MAX_RECORD_BYTES as u64,
);
pub const CONNECT_TIMEOUT_MS: Int = Int::new("CONNECT_TIMEOUT_MS", 1_000, 10, 60_000);
pub const REQUEST_TIMEOUT_MS: Int = Int::new("REQUEST_TIMEOUT_MS", 2_000, 10, 300_000);
pub const MAX_ATTEMPTS: Int = Int::new("MAX_ATTEMPTS", 4, 1, 100);
pub const BACKOFF_BASE_MS: Int = Int::new("BACKOFF_BASE_MS", 25, 1, 60_000);
pub const BACKOFF_MAX_MS: Int = Int::new("BACKOFF_MAX_MS", 1_000, 1, 300_000);
pub const SHUTDOWN_GRACE_MS: Int = Int::new("SHUTDOWN_GRACE_MS", 1_000, 0, 1_500);
/// One line a minute: CloudWatch's standard resolution, and a tiny share of the log group.
pub const METRICS_INTERVAL_MS: Int = Int::new("METRICS_INTERVAL_MS", 60_000, 10_000, 3_600_000);
/// 0 = off. Otherwise at least 1 MiB (a few segments), at most 10 GiB (Lambda's /tmp).
pub const SPILL_MAX_BYTES: Int = Int::new("SPILL_MAX_BYTES", 0, 0, 10 << 30);
pub const SPILL_MIN_BYTES: u64 = 1 << 20;

pub const DEFAULT_METRICS_NAMESPACE: &str = "KinesisTelemetryExtension";
pub const DEFAULT_SPILL_DIR: &str = crate::store::segments::DEFAULT_DIR;

/// Schema versions the Telemetry API accepts.
pub const SCHEMA_VERSIONS: [&str; 3] = ["2022-07-01", "2022-12-13", "2025-01-29"];
pub const DEFAULT_SCHEMA_VERSION: &str = "2022-12-13";
/// Lambda Managed Instances require this schema (it is accepted on default Lambda too).
pub const MANAGED_INSTANCES_SCHEMA_VERSION: &str = "2025-01-29";
/// `AWS_LAMBDA_INITIALIZATION_TYPE` on Lambda Managed Instances.
pub const MANAGED_INSTANCES_INIT_TYPE: &str = "lambda-managed-instances";

/// Every variable the extension reads, with its documented default (the settings table, docs/settings.md).
pub const KNOWN: &[Known] = &[
    Known::text("STREAM", "— (required)"),
    Known::text("ENDPOINT", "https://kinesis.<region>.amazonaws.com"),
    Known::text("CA_FILE", "none"),
    Known::int(&PORT),
    Known::text(
        "BIND_ADDRESS",
        "the address of `sandbox.localdomain`, else `0.0.0.0`",
    ),
    Known::text("TYPES", "platform,function,extension"),
    Known::text("MIN_LEVEL", "none"),
    Known::text("SCHEMA_VERSION", DEFAULT_SCHEMA_VERSION),
    Known::int(&BUFFERING_MAX_ITEMS),
    Known::int(&BUFFERING_MAX_BYTES),
    Known::int(&BUFFERING_TIMEOUT_MS),
    Known::text("FLUSH_STRATEGY", "adaptive"),
    Known::int(&FRESHNESS_MS),
    Known::int(&FLUSH_MAX_EVENTS),
    Known::int(&FLUSH_MAX_BYTES),
    Known::text("FLUSH_MAX_AGE_MS", "—"),
    Known::int(&MAX_ADDED_MS),
    Known::text("FLUSH_TIMEOUT_MS", "—"),
    Known::int(&BUFFER_MAX_EVENTS),
    Known::int(&BUFFER_MAX_BYTES),
    Known::int(&SPILL_MAX_BYTES),
    Known::text("SPILL_DIR", DEFAULT_SPILL_DIR),
    Known::text("RECORD_FORMAT", "ndjson"),
    Known::int(&RECORD_TARGET_BYTES),
    Known::text("ENRICH", "true"),
    Known::text("PARTITION_KEY", "random"),
    Known::int(&MAX_RECORDS_PER_REQUEST),
    Known::int(&MAX_REQUEST_BYTES),
    Known::int(&MAX_RECORD_BYTES),
    Known::int(&CONNECT_TIMEOUT_MS),
    Known::int(&REQUEST_TIMEOUT_MS),
    Known::int(&MAX_ATTEMPTS),
    Known::int(&BACKOFF_BASE_MS),
    Known::int(&BACKOFF_MAX_MS),
    Known::int(&SHUTDOWN_GRACE_MS),
    Known::text("METRICS", "true"),
    Known::text("METRICS_NAMESPACE", DEFAULT_METRICS_NAMESPACE),
    Known::text("METRICS_DIMENSIONS", "FunctionName"),
    Known::int(&METRICS_INTERVAL_MS),
    Known::text("FAIL_ON_ERROR", "false"),
    Known::text("LOG_LEVEL", "info"),
];

/// Every known variable's full name and documented default (for the docs check).
#[cfg(test)]
pub fn documented() -> Vec<(String, String)> {
    KNOWN
        .iter()
        .map(|k| (format!("{PREFIX}{}", k.name), k.default_text()))
        .collect()
}
