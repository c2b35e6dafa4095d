//! Bytes a peer sends on one telemetry connection, through the listener's request parsing.
//! The oracle: `kinesis_telemetry_extension::fuzzing::listener_requests`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    kinesis_telemetry_extension::fuzzing::listener_requests(data);
});
