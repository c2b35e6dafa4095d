//! Telemetry events as they travel through the extension.
//!
//! An event is kept exactly as the Telemetry API sent it: the raw JSON text of one element
//! of the POSTed array, byte for byte, so no field is ever dropped, unknown types pass through
//! untouched and `record` keeps whatever shape it had (a Text log line, a JSON log object, a
//! platform record). Only what the extension itself needs is looked at: the `type`, and the
//! `requestId` of `platform.start` / `platform.report` records.

use std::time::Instant;

use serde::Deserialize;
use serde_json::value::RawValue;

/// One telemetry event.
#[derive(Debug, Clone)]
pub struct Event {
    /// The event's JSON text exactly as received.
    pub raw: Box<str>,
    /// When the receiver got it (the flusher's max-age rule counts from here).
    pub received: Instant,
    /// What the extension cares about in it.
    pub marker: Marker,
    /// Partition key chosen for it (request-id mode only; `None` means a random key).
    pub key: Option<std::sync::Arc<str>>,
}

/// The few event types the extension reacts to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Marker {
    /// `platform.start`: the invocation with this request id begins.
    Start(Box<str>),
    /// `platform.report`: the invocation with this request id is fully reported.
    Report(Box<str>),
    Other,
}

impl Event {
    /// Bytes this event holds in memory, as counted against the buffer cap.
    pub fn cost(&self) -> usize {
        self.raw.len() + crate::stats::EVENT_OVERHEAD_BYTES
    }
}

#[derive(Deserialize)]
struct Head<'a> {
    #[serde(rename = "type", borrow, default)]
    kind: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    record: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct RecordHead<'a> {
    #[serde(rename = "requestId", borrow, default)]
    request_id: Option<std::borrow::Cow<'a, str>>,
}

/// What is inside a telemetry POST body.
#[derive(Debug, PartialEq, Eq)]
pub enum ParseError {
    Empty,
    NotArray,
    Malformed(String),
}

/// Splits a POST body (a JSON array) into events, each kept as its raw JSON text.
pub fn parse_batch(body: &[u8], received: Instant) -> Result<Vec<Event>, ParseError> {
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
    Ok(items
        .into_iter()
        .map(|raw| Event {
            marker: marker_of(raw),
            raw: raw.get().into(),
            received,
            key: None,
        })
        .collect())
}

fn marker_of(raw: &RawValue) -> Marker {
    let Ok(head) = serde_json::from_str::<Head>(raw.get()) else {
        return Marker::Other;
    };
    let request_id = || {
        head.record
            .and_then(|r| serde_json::from_str::<RecordHead>(r.get()).ok())
            .and_then(|r| r.request_id)
            .map(|id| Box::<str>::from(id.as_ref()))
    };
    match head.kind.as_deref() {
        Some("platform.start") => request_id().map_or(Marker::Other, Marker::Start),
        Some("platform.report") => request_id().map_or(Marker::Other, Marker::Report),
        _ => Marker::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: &str) -> Result<Vec<Event>, ParseError> {
        parse_batch(body.as_bytes(), Instant::now())
    }

    #[test]
    fn events_are_kept_byte_for_byte_with_unknown_fields_and_types() {
        let e1 = r#"{"time":"2022-10-12T00:00:00.000Z","type":"platform.start","record":{"requestId":"r-1","version":"$LATEST"},"extra":[1,2]}"#;
        let e2 = r#"{"time":"2022-10-12T00:00:00.001Z","type":"function","record":"START of a Text log\n"}"#;
        let e3 = r#"{"time":"2022-10-12T00:00:00.002Z","type":"function","record":{"timestamp":"x","level":"INFO","requestId":"r-1","message":"hi"}}"#;
        let e4 = r#"{"time":"t","type":"platform.futureThing","record":{"a":  1}}"#;
        let e5 = r#"{"time":"t","type":"platform.report","record":{"requestId":"r-1","status":"success","metrics":{"durationMs":1.5}}}"#;
        let body = format!("[{e1}, {e2},\n{e3},{e4},{e5}]");
        let events = parse(&body).unwrap();
        let raws: Vec<&str> = events.iter().map(|e| &*e.raw).collect();
        assert_eq!(raws, [e1, e2, e3, e4, e5]);
        assert_eq!(events[0].marker, Marker::Start("r-1".into()));
        assert_eq!(events[1].marker, Marker::Other);
        assert_eq!(events[2].marker, Marker::Other);
        assert_eq!(events[4].marker, Marker::Report("r-1".into()));
    }

    #[test]
    fn non_object_elements_are_carried_through() {
        let events = parse(r#"[1, "x", null, {"type": 5}]"#).unwrap();
        assert_eq!(events.len(), 4);
        assert!(events.iter().all(|e| e.marker == Marker::Other));
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
