//! Entry points for the fuzz targets (`fuzz/`) and the property tests: each runs one of the
//! extension's parsers over arbitrary bytes and panics only when one of its invariants
//! breaks. Not an API: nothing but `fuzz/` and tests may call these.

/// The telemetry listener's HTTP/1.1 handling of one connection whose peer sends `pieces`
/// (each read returns at most one piece) and then closes: returns the POST bodies it would
/// hand on. Requests must go to `/`; default limits. It must never panic nor hang, whatever
/// the bytes.
pub fn listener_stream(pieces: &[&[u8]]) -> Vec<Vec<u8>> {
    crate::listener::serve_bytes(pieces, "/", crate::listener::Limits::default()).bodies
}

/// The spill file: `data` as a segment (recovery yields only frames really there, in order)
/// and as records (they come back whole), then as one spilled event's record.
pub fn spill(data: &[u8]) {
    crate::spill::fuzz_segment(data);
    crate::spilled::fuzz_record(data);
}
