//! Generators for the property tests (stable, in the normal suite): JSON text as Lambda might
//! send it and as it should never send it, written by hand so that duplicate members,
//! escaped names, line breaks between tokens and numbers serde_json refuses all occur.

use proptest::prelude::*;
use proptest::sample::select;

/// Whitespace between JSON tokens (line breaks included: NDJSON records turn them into spaces).
pub fn ws() -> impl Strategy<Value = &'static str> {
    prop_oneof![6 => Just(""), 2 => Just(" "), 1 => Just("\n"), 1 => Just("\r\n\t ")]
}

/// Short text with the characters that need escaping, line breaks, tabs and non-ASCII
/// (built from a list: regex strategies are slow in a debug build).
fn text(max: usize) -> impl Strategy<Value = String> {
    let chars = vec![
        'a', 'b', 'z', 'A', '0', ' ', '\t', '\n', '\r', '"', '\\', '/', '{', '}', '[', ':', ',',
        '\u{0}', '\u{1f}', '\u{7f}', 'é', '日', '🦀', '\u{2028}', '\u{feff}',
    ];
    prop::collection::vec(select(chars), 0..max).prop_map(String::from_iter)
}

fn quoted(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_default()
}

/// A JSON string literal, quotes and escapes included.
pub fn string() -> BoxedStrategy<String> {
    prop_oneof![
        3 => select(vec![
            "function",
            "extension",
            "platform.start",
            "platform.runtimeDone",
            "platform.report",
            "platform.logsDropped",
            "platform.somethingNew",
            "INFO",
            "debug",
            "req-1",
            "source",
            "",
        ])
        .prop_map(quoted),
        3 => text(12).prop_map(|s| quoted(&s)),
        1 => select(vec![r#""func\u0074ion""#, r#""\ud83e\udd80""#, r#""a\"b\\c\n""#])
            .prop_map(str::to_string),
        1 => select(vec!["INFO", "[WARN]", "debug", "FATAL", "nope", ""])
            .prop_map(|lvl| quoted(&format!("2024-01-01T00:00:00Z\treq-1\t{lvl}\tm\n"))),
        1 => (200usize..700, select(vec!["x", "\\u0000", "é", "\\\""]))
            .prop_map(|(n, unit)| format!("\"{}\"", unit.repeat(n / unit.len().max(1)))),
    ]
    .boxed()
}

/// A JSON number, including ones past `u64` and `f64` precision.
pub fn number() -> BoxedStrategy<String> {
    prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        any::<u64>().prop_map(|n| n.to_string()),
        select(vec!["18446744073709551616", "1e30", "-0", "0.5", "2.9e3"]).prop_map(str::to_string),
    ]
    .boxed()
}

/// A member name: the ones the extension reads (also escaped), and others.
pub fn name() -> BoxedStrategy<String> {
    prop_oneof![
        4 => select(vec![
            r#""type""#,
            r#""record""#,
            r#""source""#,
            r#""time""#,
            r#""requestId""#,
            r#""level""#,
            r#""droppedRecords""#,
            r#""droppedBytes""#,
            r#""truncated""#,
            r#""message""#,
        ])
        .prop_map(str::to_string),
        1 => select(vec![r#""sour\u0063e""#, r#""t\u0079pe""#, r#""record ""#]).prop_map(str::to_string),
        1 => select(vec!["a", "ab", "zz", "recordx"]).prop_map(|s| format!("\"{s}\"")),
    ]
    .boxed()
}

/// Any JSON value, nested a few levels.
pub fn value() -> BoxedStrategy<String> {
    let leaf = prop_oneof![
        Just("null".to_string()),
        Just("true".to_string()),
        number(),
        string(),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec((ws(), inner.clone(), ws()), 0..4).prop_map(|items| {
                let items: Vec<String> = items
                    .into_iter()
                    .map(|(a, v, b)| format!("{a}{v}{b}"))
                    .collect();
                format!("[{}]", items.join(","))
            }),
            prop::collection::vec((ws(), name(), ws(), inner, ws()), 0..5).prop_map(|m| object(&m)),
        ]
    })
    .boxed()
}

fn object(members: &[(&str, String, &str, String, &str)]) -> String {
    let m: Vec<String> = members
        .iter()
        .map(|(a, k, b, v, c)| format!("{a}{k}{b}:{v}{c}"))
        .collect();
    format!("{{{}}}", m.join(","))
}

/// One telemetry event: mostly an object with the members Lambda sends (and odd ones),
/// sometimes any value.
pub fn event() -> BoxedStrategy<String> {
    let member = prop_oneof![
        3 => (Just(r#""type""#.to_string()), string()),
        2 => (Just(r#""record""#.to_string()), value()),
        2 => (Just(r#""record""#.to_string()), record()),
        1 => (Just(r#""type""#.to_string()), value()),
        2 => (name(), value()),
    ];
    prop_oneof![
        8 => prop::collection::vec((ws(), member, ws()), 0..6).prop_map(|m| {
            let members: Vec<String> = m
                .into_iter()
                .map(|(a, (k, v), b)| format!("{a}{k}:{b}{v}"))
                .collect();
            format!("{{{}}}", members.join(","))
        }),
        1 => value(),
    ]
    .boxed()
}

/// A `record` as Lambda writes them: a Text log line, a JSON log object, a platform record.
fn record() -> BoxedStrategy<String> {
    prop_oneof![
        string(),
        (string(), string(), number()).prop_map(|(id, level, n)| format!(
            r#"{{"requestId":{id},"level":{level},"droppedRecords":{n},"droppedBytes":{n}}}"#
        )),
    ]
    .boxed()
}

/// A POST body: an array of events.
pub fn batch() -> BoxedStrategy<String> {
    prop::collection::vec((ws(), event(), ws()), 0..8)
        .prop_map(|events| {
            let e: Vec<String> = events
                .into_iter()
                .map(|(a, e, b)| format!("{a}{e}{b}"))
                .collect();
            format!("[{}]", e.join(","))
        })
        .boxed()
}

/// Fragments of JSON-ish text, glued at random: mostly malformed, sometimes not.
pub fn json_ish() -> BoxedStrategy<Vec<u8>> {
    prop::collection::vec(
        select(vec![
            "[",
            "]",
            "{",
            "}",
            ",",
            ":",
            " ",
            "\n",
            "\"type\"",
            "\"source\"",
            "\"record\"",
            "\"function\"",
            "\"platform.logsDropped\"",
            "\"droppedRecords\"",
            "1e400",
            "-1",
            "18446744073709551616",
            "null",
            "\"\\u0073ource\"",
            "\"\\ud800\"",
            "\"",
            "\\",
            "{}",
            "[]",
            "\u{feff}",
            "\u{0}",
        ]),
        0..48,
    )
    .prop_map(|parts| parts.concat().into_bytes())
    .boxed()
}
