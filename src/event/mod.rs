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
//!
//! An event's partition key ([`Key`]) and everything else about partition keys live in
//! [`key`].

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
mod tests;
