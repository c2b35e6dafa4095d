//! A telemetry POST body through the receiver: the first byte picks the settings (enrichment, filter, NDJSON, a tiny buffer, small records, keys), the rest is the body.
//! The oracle: `kinesis_telemetry_extension::fuzzing::telemetry_post`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    kinesis_telemetry_extension::fuzzing::telemetry_post(data);
});
