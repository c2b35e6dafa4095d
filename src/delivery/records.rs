//! From events to Kinesis records: record sizes and the three record formats (partition
//! keys: `event::key`). This module is the one home of both concepts; nothing else computes
//! a record's size. How consumers read each format: `docs/consumers.md`.
//!
//! Formats (`KINESIS_TELEMETRY_RECORD_FORMAT`):
//! - `event`: one event per record, the data being the event's JSON text.
//! - `ndjson`: events packed into records, each event followed by `\n` (newline-delimited
//!   JSON), never split across records, up to the record target.
//! - `kpl`: KPL aggregated records (see `kpl`), one event per user record.
//!
//! [`pack`] is the one packing decision: it takes events from the front of the buffer, in
//! order, groups them by partition key (a packed record never mixes keys; with random keys
//! every event can share a record, whose key is drawn when it is built), and stops *before*
//! the first event that would break a limit: the record target, the record limit, 500
//! records or the request's bytes. A fixed key (request id, function, environment) gets at
//! most one record per request: Kinesis may accept a later record of a request and throttle
//! an earlier one, and a key's events must reach its shard in order. That event stays at the front for the next request. An
//! event too big for a record on its own is reported (`oversize_front`) instead of returning
//! an empty pack forever. [`build`] then writes exactly the records planned, of exactly the
//! planned sizes.

use std::collections::HashMap;

use crate::event::key::{random_key, PartitionKeyMode, MAX_KEY_BYTES};
use crate::event::{Event, Key};
use crate::kinesis::kpl;
use crate::kinesis::limits::Limits;
use crate::kinesis::{Data, Record};
use crate::rng::Rng;

/// The largest event `format` can always put in a record of its own with any key: events
/// above it are truncated at intake (`added`: room kept for the enrichment object).
pub fn max_event_bytes(limits: &Limits, format: RecordFormat, added: usize) -> usize {
    let record_max = limits.record_max();
    // What the format adds around one event grows with the event (varint lengths): at the
    // largest size it is the most it can be.
    let framing = added_len(format, record_max).saturating_sub(record_max);
    record_max.saturating_sub(MAX_KEY_BYTES + base_len(format, MAX_KEY_BYTES) + framing + added)
}

/// Data bytes of an empty record of `format` with a key of `key_len` bytes (the KPL header
/// and checksum; nothing for the other formats).
pub fn base_len(format: RecordFormat, key_len: usize) -> usize {
    match format {
        RecordFormat::Event | RecordFormat::Ndjson => 0,
        RecordFormat::Kpl => kpl::base_len(key_len),
    }
}

/// Data bytes one event of `len` bytes adds to a record of `format`.
pub fn added_len(format: RecordFormat, len: usize) -> usize {
    match format {
        RecordFormat::Event => len,
        RecordFormat::Ndjson => len + 1,
        RecordFormat::Kpl => kpl::user_record_len(len),
    }
}

/// One record of a [`Pack`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned {
    pub key: Key,
    /// Indices of its events in the taken prefix, in buffer order.
    pub events: Vec<usize>,
    /// Its size as Kinesis counts it: data + key bytes.
    pub bytes: usize,
}

/// Why [`pack`] stopped taking events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PackStop {
    /// Every event offered fits.
    Exhausted,
    /// The request holds `max_records` records.
    MaxRecords,
    /// The next event would push the request over `max_request_bytes`.
    MaxRequestBytes,
    /// The next event is larger than a record may be on its own.
    Oversize,
    /// The next event's fixed key already has a full record in this request.
    KeyFull,
}

/// The next request: how many events from the front, in which records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pack {
    pub take: usize,
    pub records: Vec<Planned>,
    pub stop: PackStop,
}

impl Pack {
    /// The front event alone breaks a limit: the caller must drop it, otherwise nothing
    /// behind it can ever be sent.
    pub fn oversize_front(&self) -> bool {
        self.take == 0 && self.stop == PackStop::Oversize
    }
}

/// Plans the next request from `events` (data length and key of each, front first; consumed
/// only up to the first one that does not fit). `target` is the size packed records are
/// filled to; `limits` are used clamped.
pub fn pack<'a, I>(events: I, format: RecordFormat, target: usize, limits: &Limits) -> Pack
where
    I: IntoIterator<Item = (usize, &'a Key)>,
{
    let limits = limits.clamped();
    let record_max = limits.record_max();
    let mut p = Packer {
        format,
        target: target.clamp(1, record_max),
        record_max,
        limits,
        records: Vec::new(),
        open: HashMap::new(),
        full: std::collections::HashSet::new(),
        total: 0,
    };
    let mut take = 0usize;
    let mut stop = PackStop::Exhausted;
    for (len, key) in events {
        if let Err(s) = p.add(take, len, key) {
            stop = s;
            break;
        }
        take += 1;
    }
    if stop == PackStop::Exhausted && p.records.len() >= p.limits.max_records {
        stop = PackStop::MaxRecords;
    }
    Pack {
        take,
        records: p.records,
        stop,
    }
}

/// The request [`pack`] is filling.
struct Packer<'a> {
    format: RecordFormat,
    target: usize,
    record_max: usize,
    limits: Limits,
    records: Vec<Planned>,
    /// The record still being filled, per key (`None`: random keys).
    open: HashMap<Option<&'a str>, usize>,
    /// Fixed keys whose one record of this request is full.
    full: std::collections::HashSet<&'a str>,
    /// Bytes of the request so far.
    total: usize,
}

impl<'a> Packer<'a> {
    /// Adds event `i` (`len` bytes, keyed `key`) to the request, or says why it does not fit.
    fn add(&mut self, i: usize, len: usize, key: &'a Key) -> Result<(), PackStop> {
        let class = match key {
            Key::Random => None,
            Key::Fixed(k) => Some(&**k),
        };
        let (added, alone) = self.sizes(len, key.len())?;
        if self.join_open(i, class, added)? {
            return Ok(());
        }
        self.new_record(i, class, key, alone)
    }

    /// What an event of `len` bytes adds to a record, and the size of a record of its own;
    /// `Oversize` when it could never fit one.
    fn sizes(&self, len: usize, key_len: usize) -> Result<(usize, usize), PackStop> {
        if len > self.record_max {
            return Err(PackStop::Oversize);
        }
        let added = added_len(self.format, len);
        let alone = base_len(self.format, key_len)
            .saturating_add(added)
            .saturating_add(key_len);
        if alone > self.record_max {
            return Err(PackStop::Oversize);
        }
        Ok((added, alone))
    }

    /// Into the open record of its key, when it stays within the target (true: joined). A
    /// record the event would grow past the target is closed (a fixed key's is then full).
    fn join_open(
        &mut self,
        i: usize,
        class: Option<&'a str>,
        added: usize,
    ) -> Result<bool, PackStop> {
        let Some(&index) = self.open.get(&class) else {
            return Ok(false);
        };
        let grown = self.records[index].bytes + added;
        if grown <= self.target {
            if self.total + added > self.limits.max_request_bytes {
                return Err(PackStop::MaxRequestBytes);
            }
            self.records[index].bytes = grown;
            self.records[index].events.push(i);
            self.total += added;
            return Ok(true);
        }
        self.open.remove(&class);
        if let Some(k) = class {
            self.full.insert(k);
        }
        Ok(false)
    }

    /// A new record: never a second one for a fixed key (order per key).
    fn new_record(
        &mut self,
        i: usize,
        class: Option<&'a str>,
        key: &Key,
        alone: usize,
    ) -> Result<(), PackStop> {
        if class.is_some_and(|k| self.full.contains(k)) {
            return Err(PackStop::KeyFull);
        }
        if self.records.len() >= self.limits.max_records {
            return Err(PackStop::MaxRecords);
        }
        if self.total + alone > self.limits.max_request_bytes {
            return Err(PackStop::MaxRequestBytes);
        }
        match (self.format, class) {
            (RecordFormat::Event, Some(k)) => {
                self.full.insert(k);
            }
            (RecordFormat::Event, None) => {}
            _ => {
                self.open.insert(class, self.records.len());
            }
        }
        self.records.push(Planned {
            key: key.clone(),
            events: vec![i],
            bytes: alone,
        });
        self.total += alone;
        Ok(())
    }
}

/// One record ready to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Built {
    pub partition_key: String,
    /// Bytes of data (without the key).
    pub data_len: usize,
    /// Where the data is: `event` and `ndjson` records are not copied; [`Built::wire`]
    /// points at their events' text, which goes straight into the request.
    data: Source,
    /// Indices of its events in the taken prefix.
    pub events: Vec<usize>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Source {
    /// The one event's text.
    Event,
    /// The events' text, each followed by `\n`.
    Lines,
    /// A KPL aggregated record.
    Aggregated(Vec<u8>),
}

impl Built {
    /// The record as the request carries it; `events` is the taken prefix it was built from.
    pub fn wire<'a>(&'a self, events: &'a [Event]) -> Record<'a> {
        let raw = |i: &usize| events.get(*i).map_or(&[][..], |e| e.raw.as_bytes());
        let data = match &self.data {
            Source::Aggregated(kpl) => Data::Bytes(kpl),
            Source::Event => Data::Bytes(self.events.first().map_or(&[][..], raw)),
            Source::Lines => Data::Lines(self.events.iter().map(raw).collect()),
        };
        Record {
            data,
            partition_key: &self.partition_key,
        }
    }
}

/// Builds the records `pack` planned from `events` (the taken prefix): keys drawn (a random
/// key per record), KPL records aggregated; `event` and `ndjson` data stays in the events.
pub fn build(pack: &Pack, events: &[Event], format: RecordFormat, rng: &mut Rng) -> Vec<Built> {
    pack.records
        .iter()
        .map(|p| {
            let partition_key = match &p.key {
                Key::Random => random_key(rng),
                Key::Fixed(k) => k.to_string(),
            };
            let raws = p
                .events
                .iter()
                .filter_map(|&i| events.get(i))
                .map(|e| e.raw.as_bytes());
            let (data_len, data) = match format {
                RecordFormat::Event => (raws.map(<[u8]>::len).sum(), Source::Event),
                RecordFormat::Ndjson => (raws.map(|r| r.len() + 1).sum(), Source::Lines),
                RecordFormat::Kpl => {
                    let kpl = kpl::aggregate(&partition_key, raws);
                    (kpl.len(), Source::Aggregated(kpl))
                }
            };
            debug_assert_eq!(data_len + partition_key.len(), p.bytes);
            Built {
                partition_key,
                data_len,
                data,
                events: p.events.clone(),
            }
        })
        .collect()
}

/// How events become Kinesis records (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordFormat {
    /// Events packed into records, one JSON event per line.
    Ndjson,
    /// One event per record.
    Event,
    /// KPL aggregated records, one event per user record.
    Kpl,
}

impl RecordFormat {
    /// The name `KINESIS_TELEMETRY_RECORD_FORMAT` uses.
    pub const fn name(&self) -> &'static str {
        match self {
            RecordFormat::Ndjson => "ndjson",
            RecordFormat::Event => "event",
            RecordFormat::Kpl => "kpl",
        }
    }
}

/// Record format, size target, partition keys and request limits.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordSettings {
    pub format: RecordFormat,
    /// Packed records are filled up to this (data + key), never past `limits.max_record_bytes`.
    pub target_bytes: usize,
    pub partition_key: PartitionKeyMode,
    pub limits: Limits,
}

#[cfg(test)]
mod tests;
