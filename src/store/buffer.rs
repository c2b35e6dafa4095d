//! The buffer: every event received and not yet delivered, and the one owner of its
//! accounting.
//!
//! The receiver's connection threads [`Buffer::admit`] events; the flusher takes them from
//! the front in a [`Lease`] and [`Buffer::finish`]es it, releasing what was delivered or
//! dropped for good and putting what must be resent back at the front, in order. Every
//! change to the queue and to its counts happens inside this type, under one lock, so the
//! totals cannot drift: events in the queue, leased to the flusher or spilled to disk are
//! counted until they leave through `finish` (or `abandon` at the end).
//!
//! Memory bound and overflow policy: the events in memory (queued plus leased) never exceed
//! the cap (`BUFFER_MAX_EVENTS`, `BUFFER_MAX_BYTES`, JSON bytes plus
//! [`crate::event::EVENT_OVERHEAD_BYTES`] each). An event that would exceed it is **dropped
//! on arrival** ("drop newest"), or, with the spill on, appended to the spill file, and once
//! anything is spilled every later arrival goes to the file too, so order is kept; the file
//! is read back into memory as the flusher drains it. What the file cannot hold is dropped
//! (newest first) and counted as `spill_full`.
//!
//! Pacing marks: each event gets a ticket in admission order. When a `platform.runtimeDone`
//! arrives, the ticket of the last event admitted with it is noted, so the flusher can ask
//! whether everything up to an invocation's end is delivered ([`Buffer::unsettled_through`]),
//! with the moment it arrived; the lifecycle loop hears of each runtimeDone at once
//! ([`Buffer::dones`]) to bound the time an invocation waits for the flusher after it.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender};

use crate::event::Event;
use crate::store::spill::Spilled;

/// The memory cap on everything received but not yet delivered.
#[derive(Debug, Clone, PartialEq)]
pub struct BufferCap {
    pub max_events: usize,
    pub max_bytes: usize,
}

/// How many recent `runtimeDone` marks are kept (one per invocation; concurrency never
/// applies to them: Managed Instances have no runtimeDone).
const DONE_MARKS: usize = 16;

/// A `platform.runtimeDone` as the lifecycle loop hears of it: request id, arrival.
pub type Done = (Box<str>, Instant);

/// What an admitted event tells pacing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mark {
    /// `platform.runtimeDone` of this request id.
    Done(Box<str>),
    /// `platform.report` of this request id.
    Report(Box<str>),
}

/// One element of a telemetry POST as the receiver hands it over: the event to keep (`None`
/// when it was filtered out) and what it marks.
#[derive(Debug)]
pub struct Entry {
    pub event: Option<Event>,
    pub mark: Option<Mark>,
}

/// What [`Buffer::admit`] did with a batch.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Admitted {
    pub kept: u64,
    pub spilled: u64,
    /// Dropped at the memory cap (spill off).
    pub refused: u64,
    /// Dropped because the spill file was full (or could not be written).
    pub spill_refused: u64,
    /// The first refusal of an episode of fullness (log it once).
    pub became_full: bool,
}

/// How full the buffer is.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Level {
    /// Events queued in memory (not leased).
    pub queued: usize,
    /// Events in memory, queued and leased (what the cap counts).
    pub in_memory: usize,
    /// Bytes (cost) in memory, queued and leased.
    pub bytes: usize,
    /// When the oldest queued event was received.
    pub oldest: Option<Instant>,
    /// Events waiting in the spill file.
    pub spilled: u64,
    /// The most bytes held in memory so far.
    pub high_water: usize,
}

/// Events taken from the front for one request. Dropping a lease without
/// [`Buffer::finish`] puts every event back at the front: nothing is lost by an early return.
#[must_use]
pub struct Lease<'a> {
    buffer: &'a Buffer,
    events: Vec<Event>,
}

impl Lease<'_> {
    pub fn events(&self) -> &[Event] {
        &self.events
    }

    pub fn events_mut(&mut self) -> &mut [Event] {
        &mut self.events
    }

    pub fn len(&self) -> usize {
        self.events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if !self.events.is_empty() {
            let events = std::mem::take(&mut self.events);
            self.buffer.lock().put_back(events);
        }
    }
}

/// What becomes of one leased event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// Delivered, or dropped for good: released.
    Gone,
    /// Sent again: back to the front, in order.
    Resend,
}

struct Inner {
    queue: VecDeque<Event>,
    /// Cost of `queue`.
    queued_bytes: usize,
    leased_events: usize,
    leased_bytes: usize,
    next_ticket: u64,
    high_water: usize,
    spill: Option<Spilled>,
    /// (request id, ticket of the last event admitted with its runtimeDone, its arrival).
    done: VecDeque<(Box<str>, u64, Instant)>,
    last_report: Option<Box<str>>,
    last_admission: Option<Instant>,
    full: bool,
}

impl Inner {
    fn memory_events(&self) -> usize {
        self.queue.len() + self.leased_events
    }

    fn memory_bytes(&self) -> usize {
        self.queued_bytes + self.leased_bytes
    }

    fn fits(&self, cap: &BufferCap, cost: usize) -> bool {
        self.memory_events() < cap.max_events && self.memory_bytes() + cost <= cap.max_bytes
    }

    fn push_back(&mut self, e: Event) {
        self.queued_bytes += e.cost();
        self.queue.push_back(e);
        self.high_water = self.high_water.max(self.memory_bytes());
    }

    fn put_back(&mut self, events: Vec<Event>) {
        for e in events.into_iter().rev() {
            let cost = e.cost();
            self.leased_events = self.leased_events.saturating_sub(1);
            self.leased_bytes = self.leased_bytes.saturating_sub(cost);
            self.queued_bytes += cost;
            self.queue.push_front(e);
        }
    }

    /// Moves spilled events back into memory while it is at most half full.
    fn refill(&mut self, cap: &BufferCap) {
        let Some(spill) = self.spill.as_mut() else {
            return;
        };
        let half_bytes = cap.max_bytes / 2;
        let half_events = cap.max_events / 2;
        while !spill.is_empty()
            && self.queued_bytes + self.leased_bytes < half_bytes
            && self.queue.len() + self.leased_events < half_events
        {
            let room = half_bytes - (self.queued_bytes + self.leased_bytes);
            let events = spill.take(half_events - self.queue.len() - self.leased_events, room);
            if events.is_empty() {
                break;
            }
            for e in events {
                self.queued_bytes += e.cost();
                self.queue.push_back(e);
            }
        }
        self.high_water = self.high_water.max(self.memory_bytes());
    }
}

/// The shared buffer (see the module docs).
pub struct Buffer {
    inner: Mutex<Inner>,
    cap: BufferCap,
    wake: Sender<()>,
    /// Each runtimeDone as it arrives (request id, when), for the lifecycle loop.
    done_tx: Sender<Done>,
    done_rx: Receiver<Done>,
    /// The flusher waits inside a window and wants to hear of arrivals (between windows it
    /// does not: waking it for every POST would only cost the invocation CPU).
    listening: AtomicBool,
}

/// Whether an episode of fullness goes on after an admission (pure). It starts at a refusal
/// and ends only once what memory holds is down to half the cap, in events and in bytes: a
/// buffer hovering at its cap (telemetry steadily outpacing delivery) is one episode, and one
/// log line, not one per POST that happened to fit after a request made room.
pub fn still_full(
    was_full: bool,
    refused: bool,
    memory_events: usize,
    memory_bytes: usize,
    cap: &BufferCap,
) -> bool {
    refused
        || (was_full && (memory_events * 2 > cap.max_events || memory_bytes * 2 > cap.max_bytes))
}

impl Buffer {
    /// A buffer with this cap, and the channel that wakes the flusher when something arrives.
    /// `spill` is the optional spill file (its leftovers from an earlier process go first).
    pub fn new(cap: BufferCap, spill: Option<Spilled>) -> (Buffer, Receiver<()>) {
        let (wake, woken) = crossbeam_channel::bounded(1);
        let (done_tx, done_rx) = crossbeam_channel::bounded(DONE_MARKS);
        let first_ticket = spill.as_ref().map_or(0, Spilled::reserved_tickets);
        let buffer = Buffer {
            inner: Mutex::new(Inner {
                queue: VecDeque::new(),
                queued_bytes: 0,
                leased_events: 0,
                leased_bytes: 0,
                next_ticket: first_ticket,
                high_water: 0,
                spill,
                done: VecDeque::new(),
                last_report: None,
                last_admission: None,
                full: false,
            }),
            cap,
            wake,
            done_tx,
            done_rx,
            listening: AtomicBool::new(false),
        };
        (buffer, woken)
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Admits a POST's entries in order: each event is queued, spilled or refused (see the
    /// module docs), each mark noted; then the flusher is woken.
    pub fn admit(&self, entries: Vec<Entry>) -> Admitted {
        let mut out = Admitted::default();
        let now = Instant::now();
        let mut inner = self.lock();
        let was_full = inner.full;
        let mut to_spill: Vec<Event> = Vec::new();
        for entry in entries {
            if let Some(mut e) = entry.event {
                let cost = e.cost();
                let spilling =
                    !to_spill.is_empty() || inner.spill.as_ref().is_some_and(|s| !s.is_empty());
                if !spilling && inner.fits(&self.cap, cost) {
                    e.ticket = inner.next_ticket;
                    inner.next_ticket += 1;
                    inner.push_back(e);
                    out.kept += 1;
                } else if inner.spill.is_some() {
                    e.ticket = inner.next_ticket;
                    inner.next_ticket += 1;
                    to_spill.push(e);
                } else {
                    out.refused += 1;
                }
            }
            match entry.mark {
                Some(Mark::Done(id)) => {
                    let last = inner.next_ticket.saturating_sub(1);
                    if inner.done.len() >= DONE_MARKS {
                        inner.done.pop_front();
                    }
                    let _ = self.done_tx.try_send((id.clone(), now));
                    inner.done.push_back((id, last, now));
                }
                Some(Mark::Report(id)) => inner.last_report = Some(id),
                None => {}
            }
        }
        if let Some(spill) = inner.spill.as_mut() {
            if !to_spill.is_empty() {
                let stored = spill.append(&to_spill);
                out.spilled = stored as u64;
                out.spill_refused = (to_spill.len() - stored) as u64;
            }
        }
        inner.last_admission = Some(now);
        let refused = out.refused + out.spill_refused > 0;
        out.became_full = refused && !was_full;
        let (events, bytes) = (inner.memory_events(), inner.memory_bytes());
        inner.full = still_full(was_full, refused, events, bytes, &self.cap);
        drop(inner);
        if self.listening.load(Relaxed) {
            let _ = self.wake.try_send(());
        }
        out
    }

    /// Whether arrivals wake the flusher. Set before looking at the buffer, so that nothing
    /// can arrive unseen between the look and the wait.
    pub fn listen(&self, on: bool) {
        self.listening.store(on, Relaxed);
    }

    /// Takes events from the front: `pick` sees the queue and returns how many to take (and
    /// anything else it decided). Spilled events are read back first when memory allows.
    pub fn take<T>(&self, pick: impl FnOnce(&VecDeque<Event>) -> (usize, T)) -> (Lease<'_>, T) {
        let mut inner = self.lock();
        inner.refill(&self.cap);
        let (n, decided) = pick(&inner.queue);
        let n = n.min(inner.queue.len());
        let events: Vec<Event> = inner.queue.drain(..n).collect();
        let cost: usize = events.iter().map(Event::cost).sum();
        inner.queued_bytes = inner.queued_bytes.saturating_sub(cost);
        inner.leased_events += events.len();
        inner.leased_bytes += cost;
        drop(inner);
        (
            Lease {
                buffer: self,
                events,
            },
            decided,
        )
    }

    /// Settles a lease: `fate(i)` says what becomes of its `i`-th event. Returns how many were
    /// released (`Gone`).
    pub fn finish(&self, mut lease: Lease<'_>, fate: impl Fn(usize) -> Fate) -> usize {
        let events = std::mem::take(&mut lease.events);
        let mut back = Vec::new();
        let mut gone = 0;
        let mut inner = self.lock();
        for (i, e) in events.into_iter().enumerate() {
            match fate(i) {
                Fate::Resend => back.push(e),
                Fate::Gone => {
                    inner.leased_events = inner.leased_events.saturating_sub(1);
                    inner.leased_bytes = inner.leased_bytes.saturating_sub(e.cost());
                    gone += 1;
                }
            }
        }
        inner.put_back(back);
        gone
    }

    /// Drops everything still held (at the SHUTDOWN deadline); returns how many events.
    pub fn abandon(&self) -> u64 {
        let mut inner = self.lock();
        let mut n = inner.queue.len() as u64 + inner.leased_events as u64;
        inner.queue.clear();
        inner.queued_bytes = 0;
        inner.leased_events = 0;
        inner.leased_bytes = 0;
        if let Some(s) = inner.spill.as_mut() {
            // Left on disk: a later process in this environment sends them first.
            n += s.len();
        }
        n
    }

    /// Events still held, in memory and in the spill file.
    pub fn held(&self) -> u64 {
        let inner = self.lock();
        (inner.memory_events() as u64) + inner.spill.as_ref().map_or(0, Spilled::len)
    }

    pub fn level(&self) -> Level {
        let inner = self.lock();
        Level {
            queued: inner.queue.len(),
            in_memory: inner.memory_events(),
            bytes: inner.memory_bytes(),
            oldest: inner.queue.front().map(|e| e.received),
            spilled: inner.spill.as_ref().map_or(0, Spilled::len),
            high_water: inner.high_water,
        }
    }

    /// Spilled events lost to a damaged file since start (counted as `spill_corrupt`).
    pub fn spill_lost(&self) -> u64 {
        self.lock().spill.as_ref().map_or(0, Spilled::lost)
    }

    /// The memory cap.
    pub fn cap(&self) -> &BufferCap {
        &self.cap
    }

    /// The ticket of the last event admitted with `request_id`'s runtimeDone, once it came.
    pub fn done_ticket(&self, request_id: &str) -> Option<u64> {
        self.lock()
            .done
            .iter()
            .rev()
            .find(|(id, _, _)| &**id == request_id)
            .map(|(_, t, _)| *t)
    }

    /// When `request_id`'s runtimeDone arrived, once it came.
    pub fn done_at(&self, request_id: &str) -> Option<Instant> {
        self.lock()
            .done
            .iter()
            .rev()
            .find(|(id, _, _)| &**id == request_id)
            .map(|(_, _, at)| *at)
    }

    /// Every runtimeDone as it arrives (a bounded channel: marks nobody reads are dropped).
    pub fn dones(&self) -> Receiver<Done> {
        self.done_rx.clone()
    }

    /// Whether an event with a ticket up to `ticket` is still waiting (queued or spilled).
    /// Asked by the flusher between requests, when it holds no lease.
    pub fn unsettled_through(&self, ticket: u64) -> bool {
        let inner = self.lock();
        let queued = inner.queue.front().is_some_and(|e| e.ticket <= ticket);
        let spilled = inner
            .spill
            .as_ref()
            .and_then(Spilled::first_ticket)
            .is_some_and(|t| t <= ticket);
        queued || spilled
    }

    /// Whether `platform.report` of `request_id` has arrived.
    pub fn report_seen(&self, request_id: &str) -> bool {
        self.lock().last_report.as_deref() == Some(request_id)
    }

    /// When telemetry last arrived.
    pub fn last_admission(&self) -> Option<Instant> {
        self.lock().last_admission
    }
}

#[cfg(test)]
mod tests;
