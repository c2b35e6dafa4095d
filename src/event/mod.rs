//! Telemetry events as they travel through the extension.
//!
//! An event is kept exactly as the Telemetry API sent it: the raw JSON text of one element
//! of the POSTed array, byte for byte, so no field is ever dropped, unknown types pass through
//! untouched and `record` keeps whatever shape it had (a Text log line, a JSON log object, a
//! platform record). The only change ever made is additive and at the end: the enrichment
//! object (see `enrich`), or the truncation of an event too big for a Kinesis record.
//!
//! [`for_each_element`] walks a POST body element by element, and [`item_of`] reads what the
//! extension looks at in one ([`Item`], borrowing from the body): the `type`, the record's
//! own `requestId` and `tenantId`, the counts of a `platform.logsDropped`, and whether it has a `source` of
//! its own. Neither builds anything per element, so a body of half a million tiny elements
//! costs no more memory than one of ten; and neither fails on a valid JSON value of any
//! shape (duplicate members, a `type` that is not a string): what cannot be read is absent.

use std::borrow::Cow;
use std::fmt;
use std::time::Instant;

use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

pub mod key;

pub use key::Key;

/// One telemetry event in the buffer.
#[derive(Debug, Clone)]
pub struct Event {
    /// The JSON text to send: as received, plus the enrichment object when it is on.
    pub raw: Box<str>,
    /// When the receiver got it (the freshness budget counts from here).
    pub received: Instant,
    pub key: Key,
    /// Admission order, assigned by the buffer: pacing asks whether everything up to a
    /// ticket has been delivered.
    pub ticket: u64,
    /// Requests that carried it so far.
    pub attempts: u8,
    /// Its last request's outcome is unknown (timed out after sending): a resend may
    /// duplicate it in the stream.
    pub unconfirmed: bool,
}

impl Event {
    pub fn new(raw: Box<str>, received: Instant, key: Key) -> Event {
        Event {
            raw,
            received,
            key,
            ticket: 0,
            attempts: 0,
            unconfirmed: false,
        }
    }

    /// Bytes this event holds in memory, as counted against the buffer cap.
    pub fn cost(&self) -> usize {
        self.raw.len() + EVENT_OVERHEAD_BYTES
    }
}

/// Estimated bookkeeping bytes per buffered event on top of its JSON text.
pub const EVENT_OVERHEAD_BYTES: usize = 64;

/// The telemetry event that marks a SnapStart restore in the stream (see `snapstart`).
pub const RESTORE_START: &str = "platform.restoreStart";

/// What the extension reacts to in an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// `platform.start`: the invocation with this request id begins.
    Start,
    /// `platform.runtimeDone`: the runtime finished this invocation.
    RuntimeDone,
    /// `platform.report`: the invocation is fully reported.
    Report,
    /// `platform.logsDropped`: Lambda dropped telemetry because the listener fell behind.
    LogsDropped { records: u64, bytes: u64 },
    /// `platform.restoreStart`: this environment was resumed from a SnapStart snapshot.
    RestoreStart,
    /// A `function` or `extension` log line.
    Log,
    /// Any other type, known or not.
    Other,
}

/// One element of a telemetry POST, borrowed from the body.
#[derive(Debug)]
pub struct Item<'a> {
    /// The element's JSON text exactly as sent.
    pub raw: &'a str,
    /// Its `type` (empty when absent or not a string).
    pub event_type: Cow<'a, str>,
    pub kind: Kind,
    /// Its `record` (for level filtering).
    pub record: Option<&'a RawValue>,
    /// The record's own `requestId` (platform events, JSON log lines).
    pub request_id: Option<Cow<'a, str>>,
    /// The record's own `tenantId` (tenant isolation mode: `platform.start`,
    /// `platform.report`, JSON log lines).
    pub tenant_id: Option<Cow<'a, str>>,
    /// Whether the event is a JSON object without a `source` field of its own (only those
    /// can be enriched).
    pub enrichable: bool,
}

/// What is inside a telemetry POST body.
#[derive(Debug, PartialEq, Eq)]
pub enum ParseError {
    Empty,
    NotArray,
    Malformed(String),
}

/// Walks a POST body (a JSON array) and hands `each` every element's raw JSON text, in
/// order, as it is parsed: nothing is collected, so memory does not grow with the number of
/// elements, and the caller decides per element what to build. On malformed JSON the
/// elements before the fault have been handed over already.
pub fn for_each_element<'a>(
    body: &'a [u8],
    each: impl FnMut(&'a RawValue),
) -> Result<(), ParseError> {
    match body.iter().find(|b| !b.is_ascii_whitespace()) {
        None => return Err(ParseError::Empty),
        Some(b'[') => {}
        Some(_) => {
            return Err(match serde_json::from_slice::<&RawValue>(body) {
                Ok(_) => ParseError::NotArray,
                Err(e) => ParseError::Malformed(e.to_string()),
            })
        }
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    serde::Deserializer::deserialize_seq(&mut de, Elements(each))
        .and_then(|()| de.end())
        .map_err(|e| ParseError::Malformed(e.to_string()))
}

/// Splits a POST body into items (tests; the receiver streams with [`for_each_element`]).
#[cfg(test)]
pub fn parse_batch(body: &[u8]) -> Result<Vec<Item<'_>>, ParseError> {
    let mut items = Vec::new();
    for_each_element(body, |raw| items.push(item_of(raw)))?;
    Ok(items)
}

struct Elements<F>(F);

impl<'de, F: FnMut(&'de RawValue)> Visitor<'de> for Elements<F> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON array of events")
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<(), A::Error> {
        while let Some(raw) = seq.next_element::<&'de RawValue>()? {
            (self.0)(raw);
        }
        Ok(())
    }
}

/// What the extension reads of one element: its `type`, its `record`'s `requestId` and a
/// `platform.logsDropped`'s counts, and whether it has a `source` of its own. Never fails on
/// a valid JSON value: members of any type, unknown, duplicated (the last one counts, as in
/// every JSON reader downstream) or with escaped names are all understood.
pub fn item_of(raw: &RawValue) -> Item<'_> {
    let text = raw.get();
    let [event_type, record, source] = members(text, ["type", "record", "source"]);
    let event_type = event_type.and_then(string_of).unwrap_or_default();
    let [request_id, tenant_id, dropped_records, dropped_bytes] = match record {
        Some(r) => members(
            r.get(),
            ["requestId", "tenantId", "droppedRecords", "droppedBytes"],
        ),
        None => [None; 4],
    };
    let kind = match event_type.as_ref() {
        "platform.start" => Kind::Start,
        "platform.runtimeDone" => Kind::RuntimeDone,
        "platform.report" => Kind::Report,
        "platform.logsDropped" => Kind::LogsDropped {
            records: dropped_records.and_then(count_of).unwrap_or(0),
            bytes: dropped_bytes.and_then(count_of).unwrap_or(0),
        },
        RESTORE_START => Kind::RestoreStart,
        "function" | "extension" => Kind::Log,
        _ => Kind::Other,
    };
    Item {
        raw: text,
        event_type,
        kind,
        record,
        request_id: request_id.and_then(string_of),
        tenant_id: tenant_id.and_then(string_of),
        enrichable: text.starts_with('{') && source.is_none(),
    }
}

/// The raw value of each named member of the JSON object `text` (the last one when a name
/// repeats), all `None` when `text` is not an object. Names are compared decoded, so
/// `"sour\u0063e"` is `source`. Other members are skipped without being built.
pub fn members<'a, const N: usize>(text: &'a str, names: [&str; N]) -> [Option<&'a RawValue>; N] {
    if !text.starts_with('{') {
        return [None; N];
    }
    let mut de = serde_json::Deserializer::from_str(text);
    let found = Members {
        names: &names,
        found: [None; N],
    };
    serde::Deserializer::deserialize_map(&mut de, found).unwrap_or([None; N])
}

struct Members<'n, 'a, const N: usize> {
    names: &'n [&'n str; N],
    found: [Option<&'a RawValue>; N],
}

impl<'de, const N: usize> Visitor<'de> for Members<'_, 'de, N> {
    type Value = [Option<&'de RawValue>; N];

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<Self::Value, A::Error> {
        while let Some(at) = map.next_key_seed(Name(self.names))? {
            match at {
                Some(i) => self.found[i] = Some(map.next_value()?),
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(self.found)
    }
}

/// A member name: its index among the names looked for, if it is one (no allocation, even
/// for an escaped name: serde_json decodes it into its scratch buffer).
struct Name<'n, const N: usize>(&'n [&'n str; N]);

impl<'de, const N: usize> DeserializeSeed<'de> for Name<'_, N> {
    type Value = Option<usize>;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de, const N: usize> Visitor<'de> for Name<'_, N> {
    type Value = Option<usize>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a member name")
    }

    fn visit_str<E: serde::de::Error>(self, name: &str) -> Result<Self::Value, E> {
        Ok(self.0.iter().position(|n| *n == name))
    }
}

/// A JSON string's value (borrowed when it has no escapes), `None` for any other value.
pub fn string_of(raw: &RawValue) -> Option<Cow<'_, str>> {
    let text = raw.get();
    let inner = text.strip_prefix('"')?.strip_suffix('"')?;
    if !inner.contains('\\') {
        return Some(Cow::Borrowed(inner));
    }
    serde_json::from_str::<String>(text).ok().map(Cow::Owned)
}

/// A count the platform sent: a non-negative JSON number, saturated to `u64` (a fraction is
/// cut, `1e30` is `u64::MAX`); `None` for anything else.
fn count_of(raw: &RawValue) -> Option<u64> {
    let text = raw.get();
    text.parse::<u64>().ok().or_else(|| {
        text.parse::<f64>()
            .ok()
            .filter(|n| *n >= 0.0)
            .map(|n| n as u64)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: &str) -> Result<Vec<Item<'_>>, ParseError> {
        parse_batch(body.as_bytes())
    }

    #[test]
    fn events_are_kept_byte_for_byte_with_unknown_fields_and_types() {
        let e1 = r#"{"time":"2022-10-12T00:00:00.000Z","type":"platform.start","record":{"requestId":"r-1","version":"$LATEST"},"extra":[1,2]}"#;
        let e2 = r#"{"time":"2022-10-12T00:00:00.001Z","type":"function","record":"START of a Text log\n"}"#;
        let e3 = r#"{"time":"2022-10-12T00:00:00.002Z","type":"function","record":{"timestamp":"x","level":"INFO","requestId":"r-1","message":"hi"}}"#;
        let e4 = r#"{"time":"t","type":"platform.futureThing","record":{"a":  1}}"#;
        let e5 = r#"{"time":"t","type":"platform.report","record":{"requestId":"r-1","status":"success","metrics":{"durationMs":1.5}}}"#;
        let e6 = r#"{"time":"t","type":"platform.logsDropped","record":{"reason":"Consumer seems to have fallen behind","droppedRecords":123,"droppedBytes":12345}}"#;
        let body = format!("[{e1}, {e2},\n{e3},{e4},{e5},{e6}]");
        let items = parse(&body).unwrap();
        let raws: Vec<&str> = items.iter().map(|e| e.raw).collect();
        assert_eq!(raws, [e1, e2, e3, e4, e5, e6]);
        let kinds: Vec<&Kind> = items.iter().map(|i| &i.kind).collect();
        assert_eq!(
            kinds,
            [
                &Kind::Start,
                &Kind::Log,
                &Kind::Log,
                &Kind::Other,
                &Kind::Report,
                &Kind::LogsDropped {
                    records: 123,
                    bytes: 12345
                }
            ]
        );
        let ids: Vec<Option<&str>> = items.iter().map(|i| i.request_id.as_deref()).collect();
        assert_eq!(
            ids,
            [Some("r-1"), None, Some("r-1"), None, Some("r-1"), None]
        );
        assert_eq!(items[3].event_type, "platform.futureThing");
        assert!(items.iter().all(|i| i.enrichable));
    }

    #[test]
    fn non_object_elements_are_carried_through() {
        let items = parse(r#"[1, "x", null, {"type": 5}, {"type":"x","source":{}}]"#).unwrap();
        assert_eq!(items.len(), 5);
        assert!(items.iter().all(|e| e.kind == Kind::Other));
        assert!(!items[0].enrichable && items[3].enrichable);
        assert!(!items[4].enrichable, "has a source of its own");
    }

    #[test]
    fn heads_of_any_shape_are_read_without_failing() {
        // (element, type, requestId, enrichable)
        let cases: &[(&str, &str, Option<&str>, bool)] = &[
            // Duplicates: the last one counts, as in JSON readers downstream.
            (
                r#"{"type":"x","type":"function","record":{"requestId":"a","requestId":"b"}}"#,
                "function",
                Some("b"),
                true,
            ),
            (r#"{"type":5,"source":1}"#, "", None, false),
            (r#"{"type":null,"record":{"requestId":7}}"#, "", None, true),
            (
                r#"{"t\u0079pe":"platform.start","sour\u0063e":{}}"#,
                "platform.start",
                None,
                false,
            ),
            (
                r#"{"type":"func\u0074ion","record":{"requestId":"r\"1"}}"#,
                "function",
                Some("r\"1"),
                true,
            ),
            (
                r#"{"record":"text","type":"extension"}"#,
                "extension",
                None,
                true,
            ),
            (r#"{}"#, "", None, true),
            (r#"["type","source"]"#, "", None, false),
        ];
        for (element, event_type, request_id, enrichable) in cases {
            let body = format!("[{element}]");
            let items = parse(&body).unwrap();
            let i = &items[0];
            assert_eq!(i.raw, *element);
            assert_eq!(i.event_type, *event_type, "{element}");
            assert_eq!(i.request_id.as_deref(), *request_id, "{element}");
            assert_eq!(i.enrichable, *enrichable, "{element}");
        }
    }

    #[test]
    fn logs_dropped_counts_saturate_and_ignore_what_is_not_a_count() {
        let counts = |record: &str| {
            let body = format!(r#"[{{"type":"platform.logsDropped","record":{record}}}]"#);
            match parse(&body).unwrap()[0].kind {
                Kind::LogsDropped { records, bytes } => (records, bytes),
                ref k => panic!("{k:?}"),
            }
        };
        assert_eq!(counts(r#"{"droppedRecords":3,"droppedBytes":40}"#), (3, 40));
        assert_eq!(
            counts(r#"{"droppedRecords":18446744073709551616,"droppedBytes":1e300}"#),
            (u64::MAX, u64::MAX)
        );
        assert_eq!(
            counts(r#"{"droppedRecords":2.9,"droppedBytes":-5}"#),
            (2, 0)
        );
        assert_eq!(
            counts(r#"{"droppedRecords":"7","droppedBytes":null}"#),
            (0, 0)
        );
        assert_eq!(counts(r#""no counts""#), (0, 0));
    }

    #[test]
    fn bad_bodies_are_classified() {
        assert_eq!(parse("").unwrap_err(), ParseError::Empty);
        assert_eq!(parse(" \n ").unwrap_err(), ParseError::Empty);
        assert_eq!(parse(r#"{"type":"x"}"#).unwrap_err(), ParseError::NotArray);
        assert!(matches!(parse("[{]"), Err(ParseError::Malformed(_))));
        assert!(matches!(parse("nope"), Err(ParseError::Malformed(_))));
        assert!(parse("[]").unwrap().is_empty());
    }

    #[test]
    fn the_2025_26_types_and_fields_are_read_and_kept() {
        // Shapes from the Telemetry API schema reference and the tenant isolation guide.
        let restore = r#"{"time":"t","type":"platform.restoreStart","record":{"functionName":"f","functionVersion":"3","instanceId":"i","instanceMaxMemory":256,"runtimeVersion":"java:21.v1","runtimeVersionArn":"arn"}}"#;
        let restore_done = r#"{"time":"t","type":"platform.restoreRuntimeDone","record":{"status":"success","spans":[{"name":"s","start":"t","durationMs":80.0}]}}"#;
        let restore_report = r#"{"time":"t","type":"platform.restoreReport","record":{"status":"success","metrics":{"durationMs":15.19}}}"#;
        let start = r#"{"time":"t","type":"platform.start","record":{"requestId":"r-1","functionArn":"arn:aws:lambda:us-east-1:1:function:f","version":"$LATEST","tenantId":"BlueTenant"}}"#;
        let line = r#"{"time":"t","type":"function","record":{"timestamp":"t","level":"INFO","requestId":"r-1","tenantId":"BlueTenant","message":"m"}}"#;
        let ext = r#"{"time":"t","type":"platform.extension","record":{"events":["INVOKE","SHUTDOWN"],"name":"x","state":"Ready"}}"#;
        let body = format!("[{restore},{restore_done},{restore_report},{start},{line},{ext}]");
        let items = parse(&body).unwrap();
        let raws: Vec<&str> = items.iter().map(|i| i.raw).collect();
        assert_eq!(
            raws,
            [restore, restore_done, restore_report, start, line, ext]
        );
        let kinds: Vec<&Kind> = items.iter().map(|i| &i.kind).collect();
        assert_eq!(
            kinds,
            [
                &Kind::RestoreStart,
                &Kind::Other,
                &Kind::Other,
                &Kind::Start,
                &Kind::Log,
                &Kind::Other
            ]
        );
        let tenants: Vec<Option<&str>> = items.iter().map(|i| i.tenant_id.as_deref()).collect();
        assert_eq!(
            tenants,
            [
                None,
                None,
                None,
                Some("BlueTenant"),
                Some("BlueTenant"),
                None
            ]
        );
    }
}
