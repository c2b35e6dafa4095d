//! Truncation of an event larger than a Kinesis record may be, keeping a valid envelope.
//!
//! # Policy ([`truncate_event`])
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

use serde_json::value::RawValue;
use std::collections::BTreeMap;

/// Top-level fields larger than this are dropped by [`truncate_event`].
pub const SMALL_FIELD_MAX_BYTES: usize = 256;
/// Room [`truncate_event`] gives to top-level fields other than `time` and `type`.
pub const SMALL_FIELDS_BUDGET_BYTES: usize = 1024;

/// Shrinks an event to at most `max_data_bytes` bytes of valid JSON that keeps its
/// envelope: see "Policy" in the module docs.
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
    let name = json_string(name);
    let cost = name.len() + 1 + raw.len() + 1;
    if raw.len() > SMALL_FIELD_MAX_BYTES || cost > *budget {
        return;
    }
    *budget -= cost;
    out.push_str(&name);
    out.push(':');
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
    out.push_str(&json_string(&s[..end]));
}

/// Bytes `c` takes inside a JSON string as serde_json writes it (RFC 8259 §7: the short
/// escapes, `\u00XX` for other control characters, everything else as is).
fn escaped_char_len(c: char) -> usize {
    match c {
        '"' | '\\' | '\n' | '\r' | '\t' | '\u{8}' | '\u{c}' => 2,
        c if (c as u32) < 0x20 => 6,
        c => c.len_utf8(),
    }
}

/// A JSON string literal, quotes included.
fn json_string(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    const MIB: usize = 1024 * 1024;

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
    fn the_sizing_function_agrees_with_serde_json() {
        let s: String = (0u32..0x80)
            .filter_map(char::from_u32)
            .chain("é日🦀".chars())
            .collect();
        for c in s.chars() {
            let one = c.to_string();
            assert_eq!(json_string(&one).len() - 2, escaped_char_len(c), "{c:?}");
        }
    }

    mod properties {
        //! The oracle is `fuzzing::check_truncation` (shared with the `truncation` fuzz target):
        //! within the limit, valid JSON, the size recorded, the record a prefix of the original.
        use crate::fuzzing::check_truncation;
        use crate::fuzzing::strategies::event;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(3_000))]

            #[test]
            fn events(e in event(), limit in 0usize..1_200) {
                check_truncation(&e, limit);
            }

            #[test]
            fn any_text(e in any::<String>(), limit in 0usize..400) {
                check_truncation(&e, limit);
            }
        }
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
