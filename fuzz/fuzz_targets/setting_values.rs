//! Setting values: each line's first byte picks a setting, the rest is its value.
//! The oracle: `kinesis_telemetry_extension::fuzzing::setting_values`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    kinesis_telemetry_extension::fuzzing::setting_values(data);
});
