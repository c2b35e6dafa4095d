//! A spill segment file as found in /tmp at start, adopted and read back.
//! The oracle: `kinesis_telemetry_extension::fuzzing::spill_segment`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    kinesis_telemetry_extension::fuzzing::spill_segment(data);
});
