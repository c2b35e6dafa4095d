//! Packing telemetry events into PutRecords requests within the Kinesis limits.
//!
//! Sizes follow the service's own accounting (PutRecords API reference): a record
//! counts its data blob bytes (before base64) plus its partition key's UTF-8 bytes,
//! and a request counts the sum over its records. The base64 and JSON overhead of
//! the HTTP body is not counted by Kinesis and is not counted here.
//!
//! [`fit`] is the one decision about what goes into the next request: it takes
//! records from the front of the buffer, in order, and stops *before* the first
//! one that would break a limit, which stays at the front for the next request.
//! A record that is too big on its own can never be sent; `fit` reports it
//! (`oversize_front`) instead of returning an empty batch forever, and the caller
//! shrinks it with [`truncate_event`] or drops it.
//!
//! # Truncation policy ([`truncate_event`])
//!
//! An event larger than a record may be is replaced by a smaller, valid JSON
//! object that keeps the envelope, so consumers can still route and count it:
//!
//! * the original top-level `time` and `type` (raw, if each is at most
//!   [`SMALL_FIELD_MAX_BYTES`]) and other top-level fields of at most
//!   [`SMALL_FIELD_MAX_BYTES`] each, up to [`SMALL_FIELDS_BUDGET_BYTES`] in all;
//! * `record`: if the original `record` fits whole in what is left, it is kept
//!   as is (the size came from other fields). Otherwise it becomes a JSON string:
//!   for a string record (the Text log format) a prefix of the string itself;
//!   for any other value a prefix of its JSON text. Prefixes end on a character
//!   boundary and are sized *after* JSON escaping, so `\u0000`-heavy or quote-heavy
//!   content cannot overflow the limit;
//! * `"truncated":{"originalBytes":N}`, N being the original event's byte length.
//!
//! Input that is not a JSON object (or not JSON at all) becomes
//! `{"record":"<prefix of the input text>","truncated":{...}}`. With a limit too
//! small for the envelope, the kept fields go first, then the record; below the
//! size of the marker alone the result is `{}` (or `0`, or the empty string when the
//! limit is below 2 bytes). The work is one parse and one bounded pass over the
//! input: no search, no retry loop.

use crate::rng::Rng;
use serde_json::value::RawValue;
use std::collections::BTreeMap;

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
/// Length of the keys made by [`random_partition_key`] (hex digits of 64 random bits).
pub const RANDOM_PARTITION_KEY_CHARS: usize = 16;

/// Top-level fields larger than this are dropped by [`truncate_event`].
pub const SMALL_FIELD_MAX_BYTES: usize = 256;
/// Room [`truncate_event`] gives to top-level fields other than `time` and `type`.
pub const SMALL_FIELDS_BUDGET_BYTES: usize = 1024;

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
    /// Clamps every field to `1..=` its API maximum.
    pub fn clamped(self) -> Self {
        Self {
            max_records: self.max_records.clamp(1, MAX_RECORDS_PER_REQUEST),
            max_request_bytes: self.max_request_bytes.clamp(1, HARD_MAX_REQUEST_BYTES),
            max_record_bytes: self.max_record_bytes.clamp(1, HARD_MAX_RECORD_BYTES),
        }
    }
}

/// What goes into the next request: see [`fit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fit {
    /// How many records from the front go into the next request (0 when the buffer
    /// is empty or when `oversize_front`).
    pub take: usize,
    /// Their Kinesis-counted size (data + key bytes).
    pub bytes: usize,
    /// Why packing stopped.
    pub stop: Stop,
}

/// Why [`fit`] stopped taking records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// Every record offered fits.
    Exhausted,
    /// The request holds `max_records` records.
    MaxRecords,
    /// The next record would push the request over `max_request_bytes`.
    MaxRequestBytes,
    /// The next record is larger than a record or a request may be on its own.
    /// When `take == 0` it is the front record: it can never be sent as it is.
    Oversize,
}

impl Fit {
    /// The front record alone breaks a limit: the caller must truncate or drop it,
    /// otherwise nothing behind it can ever be sent.
    pub fn oversize_front(&self) -> bool {
        self.take == 0 && self.stop == Stop::Oversize
    }

    /// Packing stopped at a limit: a full request is ready.
    #[cfg(test)]
    pub fn is_full(&self) -> bool {
        matches!(self.stop, Stop::MaxRecords | Stop::MaxRequestBytes)
    }
}

/// Decides how many records from the front of the buffer go into the next
/// request. `sizes` yields `(data bytes, partition key bytes)` per record, front
/// first; it is consumed only up to the first record that does not fit.
/// Limits are used [`Limits::clamped`], so a zero or out-of-range setting can
/// neither stall the buffer nor exceed the API.
pub fn fit<I: IntoIterator<Item = (usize, usize)>>(sizes: I, limits: &Limits) -> Fit {
    let limits = limits.clamped();
    let record_max = limits.max_record_bytes.min(limits.max_request_bytes);
    let mut take = 0;
    let mut bytes = 0usize;
    for (data, key) in sizes {
        let size = data.saturating_add(key);
        let stop = if take >= limits.max_records {
            Some(Stop::MaxRecords)
        } else if size > record_max {
            Some(Stop::Oversize)
        } else if bytes + size > limits.max_request_bytes {
            Some(Stop::MaxRequestBytes)
        } else {
            None
        };
        if let Some(stop) = stop {
            return Fit { take, bytes, stop };
        }
        take += 1;
        bytes += size;
    }
    Fit {
        take,
        bytes,
        stop: if take >= limits.max_records {
            Stop::MaxRecords
        } else {
            Stop::Exhausted
        },
    }
}

/// A fresh key of [`RANDOM_PARTITION_KEY_CHARS`] lowercase hex digits, which
/// spreads records evenly over the stream's shards.
pub fn random_partition_key(rng: &mut Rng) -> String {
    format!("{:016x}", rng.next_u64())
}

/// Checks the PartitionKey length rule: 1..=256 Unicode characters (not bytes).
pub fn validate_partition_key(key: &str) -> Result<(), String> {
    let chars = key.chars().count();
    if (MIN_PARTITION_KEY_CHARS..=MAX_PARTITION_KEY_CHARS).contains(&chars) {
        Ok(())
    } else {
        Err(format!(
            "partition key has {chars} characters; Kinesis requires \
             {MIN_PARTITION_KEY_CHARS} to {MAX_PARTITION_KEY_CHARS} Unicode characters"
        ))
    }
}

/// Shrinks an event to at most `max_data_bytes` bytes of valid JSON that keeps its
/// envelope: see "Truncation policy" in the module docs.
pub fn truncate_event(raw_event_json: &str, max_data_bytes: usize) -> String {
    let marker = format!(
        ",\"truncated\":{{\"originalBytes\":{}}}}}",
        raw_event_json.len()
    );
    let parsed: Option<BTreeMap<String, &RawValue>> = serde_json::from_str(raw_event_json).ok();

    const RECORD_KEY: &str = "\"record\":";
    let mut out = String::with_capacity(max_data_bytes.min(raw_event_json.len() + 64));
    out.push('{');
    let (record, record_is_whole_input) = match &parsed {
        Some(fields) => {
            let mut unlimited = usize::MAX;
            let mut others_budget = SMALL_FIELDS_BUDGET_BYTES;
            for name in ["time", "type"] {
                if let Some(v) = fields.get(name) {
                    push_small_field(&mut out, name, v, &mut unlimited);
                }
            }
            for (name, v) in fields {
                if !matches!(name.as_str(), "time" | "type" | "record" | "truncated") {
                    push_small_field(&mut out, name, v, &mut others_budget);
                }
            }
            (fields.get("record").map(|v| v.get()), false)
        }
        None => (Some(raw_event_json), true),
    };

    // `out` holds `{` and the kept fields, each followed by `,`. Still to come:
    // `"record":` + value (2 bytes at least), then `marker`.
    let tail = RECORD_KEY.len() + 2 + marker.len();
    if out.len() + tail > max_data_bytes {
        out.truncate(1); // no room for the envelope fields: keep record and marker
    }
    if out.len() + tail > max_data_bytes {
        return degrade(raw_event_json.len(), max_data_bytes);
    }
    let room = max_data_bytes - (out.len() + RECORD_KEY.len() + marker.len());
    out.push_str(RECORD_KEY);
    match record {
        Some(raw) if !record_is_whole_input && raw.len() <= room => out.push_str(raw),
        Some(raw) => {
            let decoded: Option<String> = if !record_is_whole_input && raw.starts_with('"') {
                serde_json::from_str(raw).ok()
            } else {
                None
            };
            push_escaped_prefix(&mut out, decoded.as_deref().unwrap_or(raw), room - 2);
        }
        None => out.push_str("\"\""),
    }
    out.push_str(&marker);
    debug_assert!(out.len() <= max_data_bytes);
    out
}

/// Appends `"name":<raw>,` when the raw value is small and the budget allows.
fn push_small_field(out: &mut String, name: &str, value: &RawValue, budget: &mut usize) {
    let raw = value.get();
    let cost = escaped_len(name) + 2 + 1 + raw.len() + 1;
    if raw.len() > SMALL_FIELD_MAX_BYTES || cost > *budget {
        return;
    }
    *budget -= cost;
    out.push('"');
    push_escaped(out, name);
    out.push_str("\":");
    out.push_str(raw);
    out.push(',');
}

/// The fallback when not even the envelope fits in `max` bytes.
fn degrade(original_bytes: usize, max: usize) -> String {
    let marker_only = format!("{{\"truncated\":{{\"originalBytes\":{original_bytes}}}}}");
    if marker_only.len() <= max {
        marker_only
    } else if max >= 2 {
        "{}".to_string()
    } else if max == 1 {
        "0".to_string()
    } else {
        String::new()
    }
}

/// Appends `"<escaped prefix of s>"` whose escaped content is at most `room` bytes.
fn push_escaped_prefix(out: &mut String, s: &str, room: usize) {
    let mut used = 0;
    let mut end = 0;
    for (i, c) in s.char_indices() {
        let n = escaped_char_len(c);
        if used + n > room {
            break;
        }
        used += n;
        end = i + c.len_utf8();
    }
    out.push('"');
    push_escaped(out, &s[..end]);
    out.push('"');
}

/// Bytes `c` takes inside a JSON string as written by [`push_escaped`].
fn escaped_char_len(c: char) -> usize {
    match c {
        '"' | '\\' | '\n' | '\r' | '\t' | '\u{8}' | '\u{c}' => 2,
        c if (c as u32) < 0x20 => 6,
        c => c.len_utf8(),
    }
}

fn escaped_len(s: &str) -> usize {
    s.chars().map(escaped_char_len).sum()
}

/// JSON string escaping (RFC 8259 §7): quote, backslash and control characters.
fn push_escaped(out: &mut String, s: &str) {
    let mut start = 0;
    for (i, c) in s.char_indices() {
        let esc: Option<&str> = match c {
            '"' => Some("\\\""),
            '\\' => Some("\\\\"),
            '\n' => Some("\\n"),
            '\r' => Some("\\r"),
            '\t' => Some("\\t"),
            '\u{8}' => Some("\\b"),
            '\u{c}' => Some("\\f"),
            c if (c as u32) < 0x20 => None,
            _ => continue,
        };
        out.push_str(&s[start..i]);
        match esc {
            Some(e) => out.push_str(e),
            None => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                let b = c as u32 as usize;
                out.push_str("\\u00");
                out.push(HEX[b >> 4] as char);
                out.push(HEX[b & 15] as char);
            }
        }
        start = i + c.len_utf8();
    }
    out.push_str(&s[start..]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    const MIB: usize = 1024 * 1024;

    fn limits() -> Limits {
        Limits::default()
    }

    #[test]
    fn defaults_are_the_documented_limits() {
        let l = limits();
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
    fn takes_500_records_and_pushes_the_501st_back() {
        let f = fit(std::iter::repeat_n((100, 16), 500), &limits());
        assert_eq!(
            (f.take, f.bytes, f.stop),
            (500, 500 * 116, Stop::MaxRecords)
        );
        let f = fit(std::iter::repeat_n((100, 16), 501), &limits());
        assert_eq!((f.take, f.stop), (500, Stop::MaxRecords));
        assert!(f.is_full());
        let f = fit(std::iter::repeat_n((100, 16), 499), &limits());
        assert_eq!((f.take, f.stop), (499, Stop::Exhausted));
        assert!(!f.is_full());
    }

    #[test]
    fn request_of_exactly_5_mib_fits_and_one_more_byte_does_not() {
        // 5 records of exactly 1 MiB each (data + key) = 5 MiB.
        let exact = vec![(MIB - 16, 16); 5];
        let f = fit(exact.clone(), &limits());
        assert_eq!((f.take, f.bytes, f.stop), (5, 5 * MIB, Stop::Exhausted));

        let mut over = exact;
        over.push((0, 1));
        let f = fit(over, &limits());
        assert_eq!(
            (f.take, f.bytes, f.stop),
            (5, 5 * MIB, Stop::MaxRequestBytes)
        );
    }

    #[test]
    fn record_of_exactly_1_mib_with_its_key_fits_and_one_byte_more_is_oversize() {
        let f = fit([(MIB - 256, 256)], &limits());
        assert_eq!((f.take, f.bytes, f.stop), (1, MIB, Stop::Exhausted));

        let f = fit([(MIB - 255, 256)], &limits());
        assert_eq!((f.take, f.stop), (0, Stop::Oversize));
        assert!(f.oversize_front());
    }

    #[test]
    fn oversize_record_behind_others_ends_the_batch_before_it() {
        let f = fit([(10, 1), (20, 1), (2 * MIB, 1), (5, 1)], &limits());
        assert_eq!((f.take, f.bytes, f.stop), (2, 32, Stop::Oversize));
        assert!(!f.oversize_front(), "the records in front still go out");
        // Next round, the oversize record is at the front and is reported.
        assert!(fit([(2 * MIB, 1), (5, 1)], &limits()).oversize_front());
    }

    #[test]
    fn a_record_bigger_than_a_whole_request_is_oversize_too() {
        let l = Limits {
            max_records: 500,
            max_request_bytes: 1000,
            max_record_bytes: MIB,
        };
        assert!(fit([(1000, 1)], &l).oversize_front());
        assert_eq!(fit([(999, 1)], &l).take, 1);
    }

    #[test]
    fn multi_byte_partition_key_counts_bytes_for_size_and_chars_for_validity() {
        let key = "é".repeat(256); // 256 chars, 512 bytes
        assert!(validate_partition_key(&key).is_ok());
        assert!(validate_partition_key(&"é".repeat(257)).is_err());
        assert!(validate_partition_key(&"a".repeat(256)).is_ok());
        assert!(validate_partition_key("").is_err());
        assert!(validate_partition_key("🦀").is_ok());

        let f = fit([(MIB - key.len(), key.len())], &limits());
        assert_eq!((f.take, f.bytes), (1, MIB));
        let f = fit([(MIB - 256, key.len())], &limits());
        assert!(
            f.oversize_front(),
            "512 key bytes, not 256 chars, count toward the record"
        );
    }

    #[test]
    fn empty_buffer_takes_nothing_and_is_not_oversize() {
        let f = fit(std::iter::empty(), &limits());
        assert_eq!((f.take, f.bytes, f.stop), (0, 0, Stop::Exhausted));
        assert!(!f.oversize_front());
    }

    #[test]
    fn fit_stops_consuming_the_iterator_at_the_first_misfit() {
        let mut consumed = 0;
        let sizes = (0..10_000).map(|_| {
            consumed += 1;
            (1, 1)
        });
        assert_eq!(fit(sizes, &limits()).take, 500);
        assert_eq!(consumed, 501);
    }

    #[test]
    fn zero_limits_are_clamped_so_the_buffer_cannot_stall() {
        let zero = Limits {
            max_records: 0,
            max_request_bytes: 0,
            max_record_bytes: 0,
        };
        assert_eq!(fit([(0, 1), (0, 1)], &zero).take, 1);
        let over = Limits {
            max_records: 10_000,
            ..Limits::default()
        };
        assert_eq!(fit(std::iter::repeat_n((1, 1), 600), &over).take, 500);
    }

    #[test]
    fn huge_sizes_saturate_instead_of_overflowing() {
        let f = fit([(usize::MAX, usize::MAX)], &limits());
        assert!(f.oversize_front());
    }

    #[test]
    fn random_partition_keys_are_16_hex_digits_and_valid() {
        let mut rng = Rng::seeded(3);
        let a = random_partition_key(&mut rng);
        let b = random_partition_key(&mut rng);
        assert_eq!(a.len(), RANDOM_PARTITION_KEY_CHARS);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
        assert!(validate_partition_key(&a).is_ok());
    }

    // ---- truncate_event ----

    fn check(out: &str, max: usize) -> Value {
        assert!(out.len() <= max, "{} bytes > limit {max}", out.len());
        serde_json::from_str(out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
    }

    #[test]
    fn big_object_record_keeps_envelope_and_becomes_a_prefix_of_its_json_text() {
        let record = serde_json::json!({"requestId": "r-1", "message": "x".repeat(5000)});
        let event =
            format!(r#"{{"time":"2024-01-01T00:00:00.000Z","type":"function","record":{record}}}"#);
        let out = truncate_event(&event, 1000);
        let v = check(&out, 1000);
        assert_eq!(v["time"], "2024-01-01T00:00:00.000Z");
        assert_eq!(v["type"], "function");
        assert_eq!(v["truncated"]["originalBytes"], event.len());
        let kept = v["record"].as_str().unwrap();
        assert!(record.to_string().starts_with(kept));
        assert!(kept.len() > 800, "uses the room it has: {}", kept.len());
    }

    #[test]
    fn string_record_keeps_a_prefix_of_the_string_itself() {
        let line = format!("START {}", "ab\"c".repeat(1000));
        let event =
            serde_json::json!({"time": "t", "type": "function", "record": line}).to_string();
        let v = check(&truncate_event(&event, 500), 500);
        let kept = v["record"].as_str().unwrap();
        assert!(
            kept.starts_with("START ab\"cab\""),
            "not double-escaped: {kept}"
        );
        assert!(line.starts_with(kept));
    }

    #[test]
    fn heavy_escaping_never_exceeds_the_limit() {
        let nasty = "\u{0}\"\\\u{1f}\n".repeat(2000);
        let event =
            serde_json::json!({"time": "t", "type": "x", "record": {"m": nasty}}).to_string();
        for max in [
            60, 61, 62, 63, 64, 65, 100, 101, 102, 103, 104, 105, 106, 1000,
        ] {
            let out = truncate_event(&event, max);
            check(&out, max);
        }
        let string_event = serde_json::json!({"type": "function", "record": nasty}).to_string();
        for max in 50..120 {
            let v = check(&truncate_event(&string_event, max), max);
            if let Some(kept) = v["record"].as_str() {
                assert!(nasty.starts_with(kept));
            }
        }
    }

    #[test]
    fn multibyte_text_is_cut_on_a_character_boundary() {
        let text = "日本語🦀é".repeat(500);
        let event =
            serde_json::json!({"time": "t", "type": "function", "record": text}).to_string();
        for max in 80..120 {
            let v = check(&truncate_event(&event, max), max);
            let kept = v["record"].as_str().unwrap();
            assert!(text.starts_with(kept));
        }
    }

    #[test]
    fn non_object_and_non_json_inputs_become_a_record_string() {
        for input in [
            "[1,2,3,4,5,6,7,8,9]",
            "\"just a string\"",
            "not json at all {",
            "12345",
        ] {
            let big = input.repeat(100);
            let v = check(&truncate_event(&big, 200), 200);
            let kept = v["record"].as_str().unwrap();
            assert!(big.starts_with(kept), "{kept}");
            assert_eq!(v["truncated"]["originalBytes"], big.len());
        }
    }

    #[test]
    fn object_without_record_gets_an_empty_record_string() {
        let event = format!(r#"{{"time":"t","type":"x","big":"{}"}}"#, "y".repeat(2000));
        let v = check(&truncate_event(&event, 300), 300);
        assert_eq!(v["record"], "");
        assert_eq!(v["type"], "x");
        assert!(v.get("big").is_none(), "large fields are dropped");
    }

    #[test]
    fn small_record_is_kept_whole_when_other_fields_made_the_event_big() {
        let event = format!(
            r#"{{"time":"t","type":"x","record":{{"a":1}},"extra":"{}","small":true}}"#,
            "z".repeat(5000)
        );
        let v = check(&truncate_event(&event, 400), 400);
        assert_eq!(v["record"], serde_json::json!({"a": 1}));
        assert_eq!(v["small"], true);
        assert!(v.get("extra").is_none());
    }

    #[test]
    fn a_tiny_limit_degrades_but_stays_valid() {
        let event = format!(
            r#"{{"time":"t","type":"x","record":"{}"}}"#,
            "q".repeat(3000)
        );
        let v = check(&truncate_event(&event, 40), 40);
        assert_eq!(v["truncated"]["originalBytes"], event.len());
        assert_eq!(truncate_event(&event, 10), "{}");
        assert_eq!(truncate_event(&event, 1), "0");
        assert_eq!(truncate_event(&event, 0), "");
    }

    #[test]
    fn original_marker_field_is_replaced_not_duplicated() {
        let event = format!(
            r#"{{"type":"x","truncated":"fake","record":"{}"}}"#,
            "q".repeat(3000)
        );
        let out = truncate_event(&event, 300);
        check(&out, 300);
        assert_eq!(out.matches("\"truncated\"").count(), 1);
    }

    #[test]
    fn my_escaper_agrees_with_serde_json() {
        let s: String = (0u32..0x80)
            .filter_map(char::from_u32)
            .chain("é日🦀".chars())
            .collect();
        let mut out = String::new();
        push_escaped(&mut out, &s);
        assert_eq!(out.len(), escaped_len(&s));
        let back: String = serde_json::from_str(&format!("\"{out}\"")).unwrap();
        assert_eq!(back, s);
    }

    #[test]
    fn truncating_a_12_mib_escaped_event_is_fast() {
        let event =
            serde_json::json!({"time": "t", "type": "function", "record": "\u{1}".repeat(2 * MIB)})
                .to_string();
        let start = std::time::Instant::now();
        let out = truncate_event(&event, MIB - 16);
        check(&out, MIB - 16);
        assert!(start.elapsed() < std::time::Duration::from_secs(5));
    }
}
