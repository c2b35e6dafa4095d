//! Truncation of an oversize event: the first two bytes are the limit, the rest the event.
//! The oracle: `kinesis_telemetry_extension::fuzzing::truncation`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    kinesis_telemetry_extension::fuzzing::truncation(data);
});
