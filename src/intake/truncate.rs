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
mod tests;
