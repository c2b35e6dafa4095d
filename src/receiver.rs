//! The receiver: what happens to a telemetry POST's body, called by the listener's
//! connection threads (see `listener` for the HTTP side).
//!
//! For each event, in order: note what pacing needs (`platform.start`, `runtimeDone`,
//! `report`), what Lambda says it dropped (`platform.logsDropped`), a SnapStart restore
//! (`platform.restoreStart`: this event and the ones after it carry the new environment id,
//! see `snapstart`) and an invocation's tenant (see `tenant`); apply the user's filter
//! (counted as `filtered`); truncate an event too big for a record; for NDJSON records, turn
//! the line breaks between its JSON tokens into spaces (the only bytes ever changed, and only
//! in that format); add the enrichment object; choose its partition key; then hand the batch
//! to the buffer, which applies the memory cap. It never waits on the flusher or on Kinesis, so Lambda always
//! gets its answer at once (a slow listener makes Lambda drop telemetry).
//!
//! Answers: 200 for every POST, including empty, non-array and malformed bodies: a non-2xx
//! makes the platform resend the same batch again and again, so content we cannot use is
//! counted and logged (once per kind) instead of refused.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use log::{debug, warn};

use crate::buffer::{Buffer, Entry, Mark};
use crate::config::{PartitionKeyMode, PREFIX};
use crate::enrich::Origin;
use crate::event::{self, Event, Item, Key, Kind, ParseError};
use crate::filter::Filter;
use crate::listener::Handler;
use crate::records;
use crate::snapstart::{Environment, Signal};
use crate::stats::{BadBody, DropReason, Stats};
use crate::tenant::Tenants;
use crate::truncate::truncate_event;

/// What the receiver needs to know, fixed at start.
pub struct Settings {
    pub filter: Filter,
    /// `None`: enrichment off. Its environment id is replaced by `environment`'s.
    pub origin: Option<Origin>,
    pub partition_key: PartitionKeyMode,
    /// The key in `function` mode.
    pub fixed_key: Option<Arc<str>>,
    /// The environment's id (for `origin` and the `environment` key), new after a restore.
    pub environment: Arc<Environment>,
    /// Lambda Managed Instances: invocations run concurrently, so no line is attributed to
    /// "the running invocation".
    pub concurrent: bool,
    /// Events larger than this are truncated (room for the key, framing and enrichment
    /// already subtracted).
    pub max_event_bytes: usize,
    /// NDJSON records: an event's line breaks (whitespace between JSON tokens: a string
    /// cannot hold a raw one) become spaces so that each event stays one line.
    pub one_line: bool,
}

pub struct Receiver {
    settings: Settings,
    buffer: Arc<Buffer>,
    stats: Arc<Stats>,
    /// The invocation between its `platform.start` and its `runtimeDone` (not concurrent).
    running: Mutex<Option<Arc<str>>>,
    /// Enrichment sequence number: every event accepted by the receiver, before the cap,
    /// under the current environment id.
    seq: AtomicU64,
    lambda_dropping: AtomicBool,
    attribution: Mutex<Attribution>,
}

/// What the receiver adds to an event about where it came from beyond its own fields.
struct Attribution {
    /// The [`Environment::generation`] `origin` and `environment_key` were made for.
    generation: u64,
    origin: Option<Origin>,
    /// The environment id as a partition key (`environment` mode, `tenant` mode's fallback).
    environment_key: Option<Arc<str>>,
    tenants: Tenants,
}

/// An event's attribution: its request id when it carries none, and its tenant.
struct Owner<'a> {
    inferred: Option<&'a str>,
    tenant: Option<Arc<str>>,
}

impl Handler for Receiver {
    fn post(&self, body: &[u8]) -> u16 {
        Stats::add(&self.stats.posts, 1);
        match event::parse_batch(body) {
            Ok(items) => self.admit(items),
            Err(ParseError::Empty) => self.bad_body(BadBody::Empty, "an empty body"),
            Err(ParseError::NotArray) => {
                self.bad_body(BadBody::NotArray, "JSON that is not an array of events")
            }
            Err(ParseError::Malformed(why)) => {
                self.bad_body(BadBody::Malformed, &format!("malformed JSON ({why})"))
            }
        }
        200
    }
}

impl Receiver {
    pub fn new(settings: Settings, buffer: Arc<Buffer>, stats: Arc<Stats>) -> Receiver {
        let id = settings.environment.id();
        let attribution = Attribution {
            generation: settings.environment.generation(),
            origin: settings.origin.as_ref().map(|o| o.restored(&id)),
            environment_key: records::fixed_key(&id),
            tenants: Tenants::default(),
        };
        Receiver {
            settings,
            buffer,
            stats,
            running: Mutex::new(None),
            seq: AtomicU64::new(0),
            lambda_dropping: AtomicBool::new(false),
            attribution: Mutex::new(attribution),
        }
    }

    /// After a SnapStart restore: the new environment id, `seq` from 0.
    fn refresh(&self, a: &mut Attribution) {
        let generation = self.settings.environment.generation();
        if a.generation == generation {
            return;
        }
        let id = self.settings.environment.id();
        a.generation = generation;
        a.origin = a.origin.as_ref().map(|o| o.restored(&id));
        a.environment_key = records::fixed_key(&id);
        self.seq.store(0, Relaxed);
    }

    fn bad_body(&self, kind: BadBody, what: &str) {
        let n = self.stats.count_bad_body(kind);
        if n == 1 {
            warn!("telemetry POST with {what} ignored (answered 200 so Lambda does not resend it); further ones are counted in the shutdown summary");
        } else {
            debug!("telemetry POST with {what} ignored ({n} so far)");
        }
    }

    fn admit(&self, items: Vec<Item<'_>>) {
        let now = Instant::now();
        let received = items.len() as u64;
        let (mut filtered, mut bytes, mut lambda_dropped) = (0u64, 0u64, false);
        let mut entries = Vec::with_capacity(items.len());
        let filter_noop = self.settings.filter.is_noop();
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        let mut attribution = self.attribution.lock().unwrap_or_else(|e| e.into_inner());
        self.refresh(&mut attribution);
        for item in items {
            bytes += item.raw.len() as u64;
            let own_id = item.request_id.as_deref();
            let own_tenant = item.tenant_id.as_deref();
            if let (Some(id), Some(tenant)) = (own_id, own_tenant) {
                attribution.tenants.learn(id, tenant);
            }
            if item.kind == Kind::RestoreStart
                && self.settings.environment.restored(Signal::RestoreStart)
            {
                self.refresh(&mut attribution);
            }
            let mark = match (&item.kind, own_id) {
                (Kind::Start, Some(id)) if !self.settings.concurrent => {
                    *running = records::fixed_key(id);
                    None
                }
                (Kind::RuntimeDone, Some(id)) => {
                    if running.as_deref() == Some(id) {
                        *running = None;
                    }
                    Some(Mark::Done(id.into()))
                }
                (Kind::Report, Some(id)) => Some(Mark::Report(id.into())),
                (Kind::LogsDropped { records, bytes }, _) => {
                    self.lambda_dropped(*records, *bytes);
                    lambda_dropped = true;
                    None
                }
                _ => None,
            };
            if !filter_noop && !self.settings.filter.keeps(&item.event_type, item.record) {
                filtered += 1;
                entries.push(Entry { event: None, mark });
                continue;
            }
            // A log line without an id of its own belongs to the invocation running now.
            let inferred = match (&item.kind, own_id) {
                (Kind::Log, None) => running.clone(),
                _ => None,
            };
            let owner = Owner {
                inferred: inferred.as_deref(),
                tenant: attribution
                    .tenants
                    .of(own_tenant, own_id, inferred.as_deref()),
            };
            let event = self.event_of(&item, own_id, &owner, &attribution, now);
            entries.push(Entry {
                event: Some(event),
                mark,
            });
        }
        drop(attribution);
        drop(running);
        if !lambda_dropped {
            self.lambda_dropping.store(false, Relaxed);
        }
        Stats::add(&self.stats.received, received);
        Stats::add(&self.stats.received_bytes, bytes);
        Stats::add(&self.stats.filtered, filtered);
        let a = self.buffer.admit(entries);
        Stats::add(&self.stats.spilled, a.spilled);
        self.stats.add_dropped(DropReason::BufferFull, a.refused);
        self.stats
            .add_dropped(DropReason::SpillFull, a.spill_refused);
        if a.became_full {
            self.log_full();
        }
    }

    /// The event to buffer: truncated if too big, enriched, with its partition key.
    fn event_of(
        &self,
        item: &Item<'_>,
        own_id: Option<&str>,
        owner: &Owner<'_>,
        a: &Attribution,
        now: Instant,
    ) -> Event {
        let inferred = owner.inferred;
        let tenant = owner.tenant.as_deref();
        let s = &self.settings;
        let mut raw: std::borrow::Cow<str> = item.raw.into();
        if raw.len() > s.max_event_bytes {
            let original = raw.len();
            raw = truncate_event(&raw, s.max_event_bytes).into();
            if self.stats.truncated.fetch_add(1, Relaxed) == 0 {
                warn!(
                    "an event of {original} bytes is larger than a Kinesis record allows ({} bytes with its key): delivered with its record cut and marked \"truncated\"; further ones are counted in the shutdown summary. Raise {PREFIX}MAX_RECORD_BYTES if the stream allows bigger records",
                    s.max_event_bytes
                );
            }
        }
        if s.one_line && raw.bytes().any(|b| b == b'\n' || b == b'\r') {
            raw = raw.replace(['\n', '\r'], " ").into();
        }
        let seq = self.seq.fetch_add(1, Relaxed);
        let enriched = match &a.origin {
            Some(origin) if item.enrichable => origin.splice(&raw, seq, inferred, tenant),
            _ => None,
        };
        let raw: Box<str> = match enriched {
            Some(e) => e.into(),
            None => raw.into(),
        };
        let key = match s.partition_key {
            PartitionKeyMode::Random => None,
            PartitionKeyMode::RequestId => own_id
                .and_then(records::fixed_key)
                .or_else(|| inferred.map(Arc::from)),
            PartitionKeyMode::Function => s.fixed_key.clone(),
            PartitionKeyMode::Environment => a.environment_key.clone(),
            // A tenant id is 1..=256 bytes (`tenant`), so already a valid key.
            PartitionKeyMode::Tenant => owner.tenant.clone().or_else(|| a.environment_key.clone()),
        };
        Event::new(raw, now, key.map_or(Key::Random, Key::Fixed))
    }

    fn lambda_dropped(&self, records: u64, bytes: u64) {
        Stats::add(&self.stats.lambda_dropped_events, records);
        Stats::add(&self.stats.lambda_dropped_bytes, bytes);
        if !self.lambda_dropping.swap(true, Relaxed) {
            warn!(
                "Lambda dropped {records} telemetry events ({bytes} bytes) because this extension's listener fell behind (platform.logsDropped); if it recurs, lower {PREFIX}BUFFERING_MAX_ITEMS / {PREFIX}BUFFERING_MAX_BYTES or raise {PREFIX}BUFFERING_TIMEOUT_MS so Lambda sends fewer, larger batches"
            );
        }
    }

    /// One line per episode of fullness, saying why and what to change.
    fn log_full(&self) {
        let level = self.buffer.level();
        let cap = self.buffer.cap();
        let which = if level.in_memory >= cap.max_events {
            format!("{PREFIX}BUFFER_MAX_EVENTS ({})", cap.max_events)
        } else {
            format!("{PREFIX}BUFFER_MAX_BYTES ({})", cap.max_bytes)
        };
        if self.stats.struggling.load(Relaxed) {
            warn!(
                "buffer full ({} events, {} bytes held): Kinesis is not accepting records, so newly arriving telemetry is dropped until it does (counted as buffer_full); raise {which} or set {PREFIX}SPILL_MAX_BYTES to ride out longer outages",
                level.in_memory, level.bytes
            );
        } else {
            warn!(
                "buffer full ({} events, {} bytes held) with Kinesis healthy: telemetry arrives faster than it can be sent between invocations, so newly arriving telemetry is dropped (counted as buffer_full); raise {which}, or use {PREFIX}FLUSH_STRATEGY=end so each invocation's telemetry is sent while it runs",
                level.in_memory, level.bytes
            );
        }
    }
}

#[cfg(test)]
mod tests;
