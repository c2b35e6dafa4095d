//! The receiver: what happens to a telemetry POST's body, called by the listener's
//! connection threads (see `listener` for the HTTP side).
//!
//! For each element of the body, in order, as it is parsed: note what pacing needs
//! (`platform.start`, `runtimeDone`, `report`), what Lambda says it dropped
//! (`platform.logsDropped`), a SnapStart restore (`platform.restoreStart`: this event and the
//! ones after it carry the new environment id, see `snapstart`) and an invocation's tenant
//! (see `tenant`); apply the user's filter (counted as `filtered`); truncate an
//! event too big for a record; for NDJSON records, turn the line breaks between its JSON
//! tokens into spaces (the only bytes ever changed, and only in that format); add the
//! enrichment object; choose its partition key (`event::key`); then hand it to the buffer, which applies the
//! memory cap, in parts of at most [`PART_EVENTS`] events. It never waits on the flusher or
//! on Kinesis, so Lambda always gets its answer at once (a slow listener makes Lambda drop
//! telemetry).
//!
//! Memory per POST is bounded whatever the body holds (policy):
//! - at most [`MAX_EVENTS_PER_POST`] elements are read, the platform's largest batch; the
//!   rest are refused unread, counted as `post_limit` and logged once per episode;
//! - once the buffer has refused an event of a POST, the rest of that POST is not built or
//!   enriched: each is counted as the buffer refused it (`buffer_full` or `spill_full`),
//!   marks for pacing still noted;
//! - the body is parsed element by element ([`event::for_each_element`]), so the events
//!   built and not yet in the buffer are one part, whatever the number of elements. POSTs are
//!   taken one at a time (they share the running invocation), so that holds for all of them.
//!
//! Answers: 200 for every POST, including empty, non-array and malformed bodies: a non-2xx
//! makes the platform resend the same batch again and again, so content we cannot use is
//! counted and logged (once per kind) instead of refused. Such a body is ignored whole when
//! it fits one part (every POST Lambda sends at the default buffering); a bigger one that
//! turns malformed part way keeps the parts handed over before the fault, counted as usual,
//! and ignores the rest (validating every body first would cost a second parse of each).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use log::{debug, warn};
use serde_json::value::RawValue;

use crate::event::key::{fixed_key, KeySources, PartitionKeyMode};
use crate::event::{self, Event, Item, Kind, ParseError};
use crate::intake::enrich::Origin;
use crate::intake::filter::Filter;
use crate::intake::listener::Handler;
use crate::intake::snapstart::{Environment, Signal};
use crate::intake::tenant::Tenants;
use crate::intake::truncate::truncate_event;
use crate::stats::{BadBody, DropReason, Stats};
use crate::store::buffer::{Buffer, Entry, Mark};

/// The most elements read from one POST: the platform's largest batch
/// (`BUFFERING_MAX_ITEMS` at its maximum). Lambda never sends more.
pub const MAX_EVENTS_PER_POST: u64 = Buffering::MAX.max_items;
/// Events built before they are handed to the buffer (which then says whether it took them).
pub const PART_EVENTS: usize = 256;
/// ... or this many bytes of them, whichever comes first.
pub const PART_BYTES: usize = 256 << 10;

/// What the receiver needs to know, fixed at start.
pub struct ReceiverSettings {
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
    /// The subscription's buffering, named in the advice when Lambda drops telemetry.
    pub buffering: Buffering,
}

/// The Telemetry API buffering the extension subscribed with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Buffering {
    pub max_items: u64,
    pub max_bytes: u64,
    pub timeout_ms: u64,
}

impl Buffering {
    /// The Telemetry API's largest buffering (Lambda developer guide, "Telemetry API",
    /// buffering): the `KINESIS_TELEMETRY_BUFFERING_*` ranges end here.
    pub const MAX: Buffering = Buffering {
        max_items: 10_000,
        max_bytes: 1_048_576,
        timeout_ms: 30_000,
    };
}

pub struct TelemetryReceiver {
    settings: ReceiverSettings,
    buffer: Arc<Buffer>,
    stats: Arc<Stats>,
    /// The invocation between its `platform.start` and its `runtimeDone` (not concurrent).
    /// Held for a whole POST: POSTs are taken one at a time.
    running: Mutex<Option<Arc<str>>>,
    /// Enrichment sequence number: every event accepted by the receiver, before the cap.
    seq: AtomicU64,
    lambda_dropping: AtomicBool,
    /// An episode of POSTs over [`MAX_EVENTS_PER_POST`] is under way (logged once).
    over_limit: AtomicBool,
    /// When the buffer-full line was last logged (see [`full_line_due`]).
    full_logged: Mutex<Option<Instant>>,
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

impl Handler for TelemetryReceiver {
    fn post(&self, body: &[u8]) -> u16 {
        Stats::add(&self.stats.posts, 1);
        let mut intake = Intake::new(self);
        let parsed = event::for_each_element(body, |raw| intake.element(raw));
        intake.finish(parsed.is_ok());
        match parsed {
            Ok(()) => {}
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

impl TelemetryReceiver {
    pub fn new(
        settings: ReceiverSettings,
        buffer: Arc<Buffer>,
        stats: Arc<Stats>,
    ) -> TelemetryReceiver {
        let id = settings.environment.id();
        let attribution = Attribution {
            generation: settings.environment.generation(),
            origin: settings.origin.as_ref().map(|o| o.restored(&id)),
            environment_key: fixed_key(&id),
            tenants: Tenants::default(),
        };
        TelemetryReceiver {
            settings,
            buffer,
            stats,
            running: Mutex::new(None),
            seq: AtomicU64::new(0),
            lambda_dropping: AtomicBool::new(false),
            over_limit: AtomicBool::new(false),
            full_logged: Mutex::new(None),
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
        a.environment_key = fixed_key(&id);
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

    /// What an element marks for pacing; notes the running invocation.
    fn mark_of(&self, item: &Item<'_>, running: &mut Option<Arc<str>>) -> Option<Mark> {
        match (&item.kind, item.request_id.as_deref()) {
            (Kind::Start, Some(id)) if !self.settings.concurrent => {
                *running = fixed_key(id);
                None
            }
            (Kind::RuntimeDone, Some(id)) => {
                if running.as_deref() == Some(id) {
                    *running = None;
                }
                Some(Mark::Done(id.into()))
            }
            (Kind::Report, Some(id)) => Some(Mark::Report(id.into())),
            (Kind::LogsDropped { .. }, _) => None,
            _ => None,
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
        let mut enrichable = item.enrichable;
        if raw.len() > s.max_event_bytes {
            let original = raw.len();
            raw = truncate_event(&raw, s.max_event_bytes).into();
            // What truncation kept decides: an object without a `source` (a non-object
            // becomes one; a big `source` of its own is cut) takes ours, exactly one.
            enrichable = raw.starts_with('{') && event::members(&raw, ["source"])[0].is_none();
            if self.stats.truncated.fetch_add(1, Relaxed) == 0 {
                warn!(
                    "an event of {original} bytes is larger than a Kinesis record allows ({} bytes with its key): delivered with its record cut and marked \"truncated\"; further ones are counted in the shutdown summary. Raise KINESIS_TELEMETRY_MAX_RECORD_BYTES if the stream allows bigger records",
                    s.max_event_bytes
                );
            }
        }
        if s.one_line && raw.bytes().any(|b| b == b'\n' || b == b'\r') {
            raw = raw.replace(['\n', '\r'], " ").into();
        }
        let seq = self.seq.fetch_add(1, Relaxed);
        let enriched = match &a.origin {
            Some(origin) if enrichable => origin.splice(&raw, seq, inferred, tenant),
            _ => None,
        };
        let raw: Box<str> = match enriched {
            Some(e) => e.into(),
            None => raw.into(),
        };
        let key = s.partition_key.key_of(&KeySources {
            request_id: own_id,
            inferred,
            function: s.fixed_key.as_ref(),
            environment: a.environment_key.as_ref(),
            tenant: owner.tenant.as_ref(),
        });
        Event::new(raw, now, key)
    }

    fn lambda_dropped(&self, records: u64, bytes: u64) {
        Stats::add(&self.stats.lambda_dropped_events, records);
        Stats::add(&self.stats.lambda_dropped_bytes, bytes);
        if !self.lambda_dropping.swap(true, Relaxed) {
            warn!(
                "Lambda dropped {records} telemetry events ({bytes} bytes) because this extension's listener fell behind (platform.logsDropped); if it recurs, {}",
                logs_dropped_advice(&self.settings.buffering)
            );
        }
    }

    /// One line per episode of POSTs over the platform's largest batch.
    fn log_over_limit(&self, elements: u64) {
        if !self.over_limit.swap(true, Relaxed) {
            warn!(
                "a telemetry POST held {elements} events, but Lambda sends at most {MAX_EVENTS_PER_POST} events in one batch: the first {MAX_EVENTS_PER_POST} were taken and the other {} refused unread (counted as post_limit); such a POST does not come from the Telemetry API. Further ones are counted in the shutdown summary",
                elements - MAX_EVENTS_PER_POST
            );
        }
    }

    /// One line per episode of fullness, saying why and what to change; at most one every
    /// [`FULL_LINE_EVERY`] (the counts are in the summary and the metrics).
    fn log_full(&self) {
        let now = Instant::now();
        {
            let mut last = self.full_logged.lock().unwrap_or_else(|e| e.into_inner());
            if !full_line_due(*last, now) {
                return;
            }
            *last = Some(now);
        }
        let level = self.buffer.level();
        let cap = self.buffer.cap();
        let which = if level.in_memory >= cap.max_events {
            format!("KINESIS_TELEMETRY_BUFFER_MAX_EVENTS ({})", cap.max_events)
        } else {
            format!("KINESIS_TELEMETRY_BUFFER_MAX_BYTES ({})", cap.max_bytes)
        };
        if self.stats.struggling.load(Relaxed) {
            warn!(
                "buffer full ({} events, {} bytes held): Kinesis is not accepting records, so newly arriving telemetry is dropped until it does (counted as buffer_full); raise {which} or set KINESIS_TELEMETRY_SPILL_MAX_BYTES to ride out longer outages",
                level.in_memory, level.bytes
            );
        } else {
            warn!(
                "buffer full ({} events, {} bytes held) with Kinesis healthy: telemetry arrives faster than it can be sent between invocations, so newly arriving telemetry is dropped (counted as buffer_full); raise {which}, or use KINESIS_TELEMETRY_FLUSH_STRATEGY=end so each invocation's telemetry is sent while it runs",
                level.in_memory, level.bytes
            );
        }
    }
}

/// The buffer-full line is logged at most this often: a buffer that a request drains below
/// half its cap and the next POSTs fill again starts an episode per request.
pub const FULL_LINE_EVERY: Duration = Duration::from_secs(60);

/// Whether a new episode of fullness gets its line (pure): the first one, and then one at
/// most every [`FULL_LINE_EVERY`].
pub fn full_line_due(last: Option<Instant>, now: Instant) -> bool {
    last.is_none_or(|at| now.saturating_duration_since(at) >= FULL_LINE_EVERY)
}

/// What to change when Lambda drops telemetry (pure): what makes each POST carry more (the
/// settings not yet at their maximum, with the values in use), and what always helps.
/// Lowering `BUFFERING_MAX_ITEMS` or `BUFFERING_MAX_BYTES` would make batches smaller.
pub fn logs_dropped_advice(b: &Buffering) -> String {
    let mut steps = Vec::new();
    if b.max_bytes < Buffering::MAX.max_bytes {
        steps.push(format!(
            "raise KINESIS_TELEMETRY_BUFFERING_MAX_BYTES (now {}, at most {}) so each POST carries more",
            b.max_bytes, Buffering::MAX.max_bytes
        ));
    }
    if b.max_items < Buffering::MAX.max_items {
        steps.push(format!(
            "raise KINESIS_TELEMETRY_BUFFERING_MAX_ITEMS (now {}, at most {})",
            b.max_items,
            Buffering::MAX.max_items
        ));
    }
    if b.timeout_ms < Buffering::MAX.timeout_ms {
        steps.push(format!(
            "raise KINESIS_TELEMETRY_BUFFERING_TIMEOUT_MS (now {} ms) so Lambda sends fewer, larger batches (an invocation's telemetry then arrives up to that much later)",
            b.timeout_ms
        ));
    }
    steps.push("lower the function's log volume".to_string());
    let last = steps.pop().unwrap_or_default();
    if steps.is_empty() {
        last
    } else {
        format!("{}, or {last}", steps.join(", "))
    }
}

/// One POST on its way into the buffer (see "Memory per POST" in the module docs).
struct Intake<'r> {
    receiver: &'r TelemetryReceiver,
    now: Instant,
    running: MutexGuard<'r, Option<Arc<str>>>,
    attribution: MutexGuard<'r, Attribution>,
    filter_noop: bool,
    /// Entries built and not yet handed to the buffer.
    part: Vec<Entry>,
    part_bytes: usize,
    /// Elements seen, including those past the limit.
    elements: u64,
    /// What the part being built brought (counted when it is handed over).
    seen: Seen,
    lambda_dropped: bool,
    /// The buffer's first refusal of an episode of fullness came in this POST (log it).
    became_full: bool,
    /// Set once the buffer refused an event of this POST: why later ones are refused unbuilt.
    refusing: Option<DropReason>,
}

/// What the elements of one part brought, counted when the part is handed over (and not at
/// all when the body turns out malformed before that).
#[derive(Default)]
struct Seen {
    elements: u64,
    bytes: u64,
    filtered: u64,
    /// Refused without being built (see `Intake::refusing`).
    unbuilt: u64,
    /// `platform.logsDropped`: what Lambda says it dropped.
    lambda_records: u64,
    lambda_bytes: u64,
}

impl<'r> Intake<'r> {
    fn new(receiver: &'r TelemetryReceiver) -> Intake<'r> {
        let mut attribution = receiver
            .attribution
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        receiver.refresh(&mut attribution);
        Intake {
            receiver,
            now: Instant::now(),
            running: receiver.running.lock().unwrap_or_else(|e| e.into_inner()),
            attribution,
            filter_noop: receiver.settings.filter.is_noop(),
            part: Vec::new(),
            part_bytes: 0,
            elements: 0,
            seen: Seen::default(),
            lambda_dropped: false,
            became_full: false,
            refusing: None,
        }
    }

    fn element(&mut self, raw: &RawValue) {
        self.elements += 1;
        self.seen.elements += 1;
        if self.elements > MAX_EVENTS_PER_POST {
            return;
        }
        let r = self.receiver;
        let item = event::item_of(raw);
        self.seen.bytes += item.raw.len() as u64;
        let own_id = item.request_id.as_deref();
        let own_tenant = item.tenant_id.as_deref();
        if let (Some(id), Some(tenant)) = (own_id, own_tenant) {
            self.attribution.tenants.learn(id, tenant);
        }
        if item.kind == Kind::RestoreStart && r.settings.environment.restored(Signal::RestoreStart)
        {
            r.refresh(&mut self.attribution);
        }
        if let Kind::LogsDropped { records, bytes } = item.kind {
            self.lambda_dropped = true;
            let s = &mut self.seen;
            s.lambda_records = s.lambda_records.saturating_add(records);
            s.lambda_bytes = s.lambda_bytes.saturating_add(bytes);
        }
        let mark = r.mark_of(&item, &mut self.running);
        if !self.filter_noop && !r.settings.filter.keeps(&item.event_type, item.record) {
            self.seen.filtered += 1;
            if mark.is_some() {
                self.part.push(Entry { event: None, mark });
            }
            return;
        }
        let event = if self.refusing.is_some() {
            // The buffer cannot take it: counted as refused, and its seq is skipped (a gap
            // in `seq` is how a consumer sees a loss).
            r.seq.fetch_add(1, Relaxed);
            self.seen.unbuilt += 1;
            None
        } else {
            // A log line without an id of its own belongs to the invocation running now.
            let inferred = match (&item.kind, own_id) {
                (Kind::Log, None) => self.running.clone(),
                _ => None,
            };
            let owner = Owner {
                inferred: inferred.as_deref(),
                tenant: self
                    .attribution
                    .tenants
                    .of(own_tenant, own_id, inferred.as_deref()),
            };
            let e = r.event_of(&item, own_id, &owner, &self.attribution, self.now);
            self.part_bytes += e.cost();
            Some(e)
        };
        if event.is_some() || mark.is_some() {
            self.part.push(Entry { event, mark });
        }
        if self.part.len() >= PART_EVENTS || self.part_bytes >= PART_BYTES {
            self.hand_over();
        }
    }

    /// Hands the part built so far to the buffer, having counted what it brought as
    /// received (first, so no reader of the counters sees an event delivered before it was
    /// received).
    fn hand_over(&mut self) {
        let r = self.receiver;
        let stats = &r.stats;
        let seen = std::mem::take(&mut self.seen);
        Stats::add(&stats.received, seen.elements);
        Stats::add(&stats.received_bytes, seen.bytes);
        Stats::add(&stats.filtered, seen.filtered);
        if let Some(reason) = self.refusing.clone() {
            stats.add_dropped(reason, seen.unbuilt);
        }
        if seen.lambda_records > 0 || seen.lambda_bytes > 0 {
            r.lambda_dropped(seen.lambda_records, seen.lambda_bytes);
        }
        let a = r.buffer.admit(std::mem::take(&mut self.part));
        self.part_bytes = 0;
        Stats::add(&stats.spilled, a.spilled);
        stats.add_dropped(DropReason::BufferFull, a.refused);
        stats.add_dropped(DropReason::SpillFull, a.spill_refused);
        if a.spill_refused > 0 {
            self.refusing = Some(DropReason::SpillFull);
        } else if a.refused > 0 {
            self.refusing = Some(DropReason::BufferFull);
        }
        self.became_full |= a.became_full;
    }

    /// The last part to the buffer (also for a POST with no event: it tells the flusher
    /// that telemetry arrived), then the once-per-episode lines. A malformed body's last part
    /// is dropped uncounted (see the module docs).
    fn finish(mut self, parsed: bool) {
        if parsed {
            self.hand_over();
        }
        let r = self.receiver;
        drop(self.running);
        drop(self.attribution);
        if parsed && !self.lambda_dropped {
            r.lambda_dropping.store(false, Relaxed);
        }
        let over = self.elements.saturating_sub(MAX_EVENTS_PER_POST);
        if parsed {
            r.stats.add_dropped(DropReason::PostLimit, over);
        }
        if self.became_full {
            r.log_full();
        }
        if parsed && over > 0 {
            r.log_over_limit(self.elements);
        } else if parsed {
            r.over_limit.store(false, Relaxed);
        }
    }
}

#[cfg(test)]
mod tests;
