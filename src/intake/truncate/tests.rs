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
    let event = serde_json::json!({"time": "t", "type": "function", "record": line}).to_string();
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
    let event = serde_json::json!({"time": "t", "type": "x", "record": {"m": nasty}}).to_string();
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
    let event = serde_json::json!({"time": "t", "type": "function", "record": text}).to_string();
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
