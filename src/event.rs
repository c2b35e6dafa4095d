//! Telemetry events as they travel through the extension.
//!
//! An event is kept exactly as the Telemetry API sent it: the raw JSON text of one element
//! of the POSTed array, byte for byte, so no field is ever dropped, unknown types pass through
//! untouched and `record` keeps whatever shape it had (a Text log line, a JSON log object, a
//! platform record). The only change ever made is additive and at the end: the enrichment
//! object (see `enrich`), or the truncation of an event too big for a Kinesis record.
//!
//! [`parse_batch`] splits a POST body into [`Item`]s that borrow from it and carry what the
//! extension looks at: the `type`, the record's own `requestId` and `tenantId`, and the counts
//! of a `platform.logsDropped`.

use std::sync::Arc;
use std::time::Instant;

use serde::Deserialize;
use serde_json::value::RawValue;

/// How an event's partition key is chosen (decided once, when it is admitted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Key {
    /// A random key, drawn per record when it is sent.
    Random,
    /// This key (a request id, the function name or the environment id), valid for Kinesis.
    Fixed(Arc<str>),
}

impl Key {
    /// Bytes the key takes in a record (a random key's length is fixed).
    pub fn len(&self) -> usize {
        match self {
            Key::Random => crate::records::RANDOM_KEY_CHARS,
            Key::Fixed(k) => k.len(),
        }
    }
}

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
    pub event_type: std::borrow::Cow<'a, str>,
    pub kind: Kind,
    /// Its `record` (for level filtering).
    pub record: Option<&'a RawValue>,
    /// The record's own `requestId` (platform events, JSON log lines).
    pub request_id: Option<std::borrow::Cow<'a, str>>,
    /// The record's own `tenantId` (tenant isolation mode: `platform.start`,
    /// `platform.report`, JSON log lines).
    pub tenant_id: Option<std::borrow::Cow<'a, str>>,
    /// Whether the event is a JSON object without a `source` field of its own (only those
    /// can be enriched).
    pub enrichable: bool,
}

#[derive(Deserialize)]
struct Head<'a> {
    #[serde(rename = "type", borrow, default)]
    kind: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    record: Option<&'a RawValue>,
    #[serde(borrow, default)]
    source: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct RecordHead<'a> {
    #[serde(rename = "requestId", borrow, default)]
    request_id: Option<std::borrow::Cow<'a, str>>,
    #[serde(rename = "tenantId", borrow, default)]
    tenant_id: Option<std::borrow::Cow<'a, str>>,
    #[serde(rename = "droppedRecords", default)]
    dropped_records: Option<u64>,
    #[serde(rename = "droppedBytes", default)]
    dropped_bytes: Option<u64>,
}

/// What is inside a telemetry POST body.
#[derive(Debug, PartialEq, Eq)]
pub enum ParseError {
    Empty,
    NotArray,
    Malformed(String),
}

/// Splits a POST body (a JSON array) into items, each keeping its raw JSON text.
pub fn parse_batch(body: &[u8]) -> Result<Vec<Item<'_>>, ParseError> {
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    match first {
        None => return Err(ParseError::Empty),
        Some(b'[') => {}
        Some(_) => {
            return Err(match serde_json::from_slice::<&RawValue>(body) {
                Ok(_) => ParseError::NotArray,
                Err(e) => ParseError::Malformed(e.to_string()),
            })
        }
    }
    let items: Vec<&RawValue> =
        serde_json::from_slice(body).map_err(|e| ParseError::Malformed(e.to_string()))?;
    Ok(items.into_iter().map(item_of).collect())
}

fn item_of(raw: &RawValue) -> Item<'_> {
    let text = raw.get();
    let is_object = text.starts_with('{');
    let head = if is_object {
        serde_json::from_str::<Head>(text).ok()
    } else {
        None
    };
    let (event_type, record, has_source) = match head {
        Some(h) => (h.kind.unwrap_or_default(), h.record, h.source.is_some()),
        None => (Default::default(), None, false),
    };
    let record_head = record
        .filter(|r| r.get().starts_with('{'))
        .and_then(|r| serde_json::from_str::<RecordHead>(r.get()).ok());
    let kind = match event_type.as_ref() {
        "platform.start" => Kind::Start,
        "platform.runtimeDone" => Kind::RuntimeDone,
        "platform.report" => Kind::Report,
        "platform.logsDropped" => Kind::LogsDropped {
            records: record_head
                .as_ref()
                .and_then(|r| r.dropped_records)
                .unwrap_or(0),
            bytes: record_head
                .as_ref()
                .and_then(|r| r.dropped_bytes)
                .unwrap_or(0),
        },
        crate::snapstart::RESTORE_START => Kind::RestoreStart,
        "function" | "extension" => Kind::Log,
        _ => Kind::Other,
    };
    let (request_id, tenant_id) = record_head.map_or((None, None), |r| (r.request_id, r.tenant_id));
    Item {
        raw: text,
        event_type,
        kind,
        record,
        request_id,
        tenant_id,
        enrichable: is_object && !has_source,
    }
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

    #[test]
    fn non_object_elements_are_carried_through() {
        let items = parse(r#"[1, "x", null, {"type": 5}, {"type":"x","source":{}}]"#).unwrap();
        assert_eq!(items.len(), 5);
        assert!(items.iter().all(|e| e.kind == Kind::Other));
        assert!(!items[0].enrichable && items[3].enrichable);
        assert!(!items[4].enrichable, "has a source of its own");
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
}
