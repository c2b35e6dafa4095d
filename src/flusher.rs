//! The flusher thread: owns the buffer of received events and is the only thread that talks
//! to Kinesis.
//!
//! Freeze safety is the invariant everything here serves: Lambda freezes the whole sandbox
//! as soon as the runtime and the extension have called `/event/next`, so a request in flight
//! at that moment would resume minutes later on a dead connection. Therefore the flusher
//! sends only inside a *window* that the lifecycle loop opens ([`Control::Invoke`] or
//! [`Control::Shutdown`]) and acknowledges ([`Ack`]) when the window's work is done; the
//! lifecycle loop calls `/event/next` only after that acknowledgement (or once the window's
//! end has passed, which every request's timeout is bounded by). Between windows the flusher
//! only takes events into its buffer.
//!
//! In an INVOKE window the flusher sends what is buffered when the window opens, if a flush is
//! due ([`is_due`]): enough events, enough bytes, or an event old enough. Nothing due means
//! an immediate acknowledgement, so the invocation pays only for two channel hops.
//!
//! Retries resend only what failed, with exponential backoff and full jitter, bounded by the
//! attempt budget and by the window's end. Records still unsent then go back to the front of
//! the buffer, in order, for the next window. Only a fatal error (one retrying cannot fix)
//! drops records, counted under its AWS error code and logged once per cause.

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{never, select, Receiver, RecvTimeoutError, Sender};
use log::{debug, info, warn};

use crate::batch::{self, Limits};
use crate::config::{FlushPolicy, Http, PartitionKeyMode};
use crate::event::{Event, Marker};
use crate::kinesis::{PutRecordsResponse, Record, RequestError};
use crate::retry;
use crate::rng::Rng;
use crate::stats::{DropReason, Stats};

/// Do not start a Kinesis request with less time than this left in the window.
pub const MIN_REQUEST_TIME: Duration = Duration::from_millis(10);

/// Where records go. The real one is [`crate::kinesis::KinesisClient`]; tests script one.
pub trait Sink {
    fn put(
        &mut self,
        records: &[Record<'_>],
        timeout: Duration,
    ) -> Result<PutRecordsResponse, RequestError>;

    /// What the user should fix for a fatal error (names the stream and region).
    fn fix_hint(&self, err: &RequestError) -> String;
}

/// Orders from the lifecycle loop.
#[derive(Debug, Clone)]
pub enum Control {
    /// An invocation started: flush what is due, then acknowledge `window`. Nothing may be in
    /// flight after `until`.
    Invoke { window: u64, until: Instant },
    /// The environment is shutting down: wait up to the grace for the platform's last batch,
    /// flush everything, acknowledge, and stop. `last_request` is the last INVOKE's request id,
    /// whose `platform.report` ends the grace early.
    Shutdown {
        window: u64,
        until: Instant,
        last_request: Option<String>,
    },
}

/// "Window `n` is done; nothing is in flight."
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ack(pub u64);

/// Flusher settings, taken from [`crate::config::Config`].
#[derive(Debug, Clone)]
pub struct Settings {
    pub policy: FlushPolicy,
    pub limits: Limits,
    pub http: Http,
    pub partition_key: PartitionKeyMode,
    pub shutdown_grace: Duration,
}

/// Whether buffered telemetry is due to be sent (pure: the whole flush policy).
pub fn is_due(events: usize, bytes: usize, oldest_age: Option<Duration>, p: &FlushPolicy) -> bool {
    events > 0
        && (events >= p.max_events
            || bytes >= p.max_bytes
            || oldest_age.is_some_and(|age| age >= p.max_age))
}

enum Step {
    /// This many records are settled (delivered, or dropped as oversize).
    Settled(usize),
    /// Kinesis is struggling (attempts or window used up): the rest waits for the next window.
    Stop,
    /// Kinesis refused for a reason retrying cannot fix.
    Fatal(String),
}

pub struct Flusher<S: Sink> {
    sink: S,
    settings: Settings,
    stats: Arc<Stats>,
    events_rx: Receiver<Vec<Event>>,
    events_open: bool,
    buffer: VecDeque<Event>,
    /// JSON bytes in `buffer` (for the flush-by-bytes rule).
    buffer_bytes: usize,
    rng: Rng,
    /// Request id of the latest `platform.start` seen (partition key in request-id mode).
    current_request: Option<Arc<str>>,
    /// Request id of the latest `platform.report` seen.
    last_report: Option<Box<str>>,
    logged_causes: HashSet<String>,
    struggling: bool,
}

impl<S: Sink> Flusher<S> {
    pub fn new(
        sink: S,
        settings: Settings,
        stats: Arc<Stats>,
        events_rx: Receiver<Vec<Event>>,
    ) -> Self {
        Flusher {
            sink,
            settings,
            stats,
            events_rx,
            events_open: true,
            buffer: VecDeque::new(),
            buffer_bytes: 0,
            rng: Rng::new(),
            current_request: None,
            last_report: None,
            logged_causes: HashSet::new(),
            struggling: false,
        }
    }

    /// Runs until SHUTDOWN has been handled or the lifecycle loop is gone.
    pub fn run(mut self, control_rx: Receiver<Control>, ack_tx: Sender<Ack>) {
        loop {
            let events = if self.events_open {
                self.events_rx.clone()
            } else {
                never()
            };
            select! {
                recv(events) -> msg => match msg {
                    Ok(batch) => self.append(batch),
                    Err(_) => self.events_open = false,
                },
                recv(control_rx) -> msg => match msg {
                    Ok(Control::Invoke { window, until }) => {
                        self.invoke_window(until);
                        let _ = ack_tx.send(Ack(window));
                    }
                    Ok(Control::Shutdown { window, until, last_request }) => {
                        self.shutdown(until, last_request.as_deref());
                        let _ = ack_tx.send(Ack(window));
                        return;
                    }
                    Err(_) => return,
                },
            }
        }
    }

    fn append(&mut self, batch: Vec<Event>) {
        for mut e in batch {
            match &e.marker {
                Marker::Start(id) => self.current_request = Some(Arc::from(&**id)),
                Marker::Report(id) => self.last_report = Some(id.clone()),
                Marker::Other => {}
            }
            if self.settings.partition_key == PartitionKeyMode::RequestId {
                e.key = self.current_request.clone();
            }
            self.buffer_bytes += e.raw.len();
            self.buffer.push_back(e);
        }
    }

    /// Takes everything already waiting in the channel, without blocking.
    fn drain_events(&mut self) {
        while let Ok(batch) = self.events_rx.try_recv() {
            self.append(batch);
        }
    }

    /// Takes arriving events until `until` (used for backoff and the shutdown grace).
    fn absorb_until(&mut self, until: Instant) {
        loop {
            match self.events_rx.recv_deadline(until) {
                Ok(batch) => self.append(batch),
                Err(RecvTimeoutError::Timeout) => return,
                Err(RecvTimeoutError::Disconnected) => {
                    std::thread::sleep(until.saturating_duration_since(Instant::now()));
                    return;
                }
            }
        }
    }

    fn due(&self, now: Instant) -> bool {
        let age = self
            .buffer
            .front()
            .map(|e| now.saturating_duration_since(e.received));
        is_due(
            self.buffer.len(),
            self.buffer_bytes,
            age,
            &self.settings.policy,
        )
    }

    /// An INVOKE window: if a flush is due, send what is buffered now (records that arrive
    /// meanwhile may top up the last request but are not waited for).
    fn invoke_window(&mut self, until: Instant) {
        self.drain_events();
        if !self.due(Instant::now()) {
            return;
        }
        let target = self.buffer.len();
        let mut settled = 0;
        while settled < target && !self.buffer.is_empty() {
            match self.send_batch(until) {
                Step::Settled(n) => settled += n,
                Step::Stop | Step::Fatal(_) => break,
            }
            self.drain_events();
        }
    }

    /// SHUTDOWN: flush while waiting (up to the grace) for the platform's last batch, then
    /// flush everything that is left, all before `until`.
    fn shutdown(&mut self, until: Instant, last_request: Option<&str>) {
        let started = Instant::now();
        let grace_end = (started + self.settings.shutdown_grace).min(until);
        loop {
            self.drain_events();
            let final_seen = last_request.is_some() && self.last_report.as_deref() == last_request;
            if final_seen || Instant::now() >= grace_end {
                break;
            }
            if self.buffer.is_empty() {
                // Wake on each batch to re-check whether it held the final report.
                if let Ok(batch) = self.events_rx.recv_deadline(grace_end) {
                    self.append(batch);
                }
            } else if let Step::Fatal(code) = self.send_batch(until) {
                self.drop_all(DropReason::Fatal(code));
            }
        }
        loop {
            self.drain_events();
            if self.buffer.is_empty() || Instant::now() + MIN_REQUEST_TIME >= until {
                break;
            }
            match self.send_batch(until) {
                Step::Settled(_) => {}
                Step::Stop => {
                    let pause = retry::backoff(
                        1,
                        self.settings.http.backoff_base,
                        self.settings.http.backoff_max,
                        &mut self.rng,
                    );
                    self.absorb_until((Instant::now() + pause).min(until));
                }
                Step::Fatal(code) => self.drop_all(DropReason::Fatal(code)),
            }
        }
        self.drain_events();
        if !self.buffer.is_empty() {
            warn!(
                "SHUTDOWN deadline reached with {} events undelivered; they are lost",
                self.buffer.len()
            );
            self.drop_all(DropReason::ShutdownDeadline);
        }
        debug!("shutdown flush took {} ms", started.elapsed().as_millis());
    }

    fn drop_all(&mut self, reason: DropReason) {
        let n = self.buffer.len() as u64;
        let cost: u64 = self.buffer.iter().map(|e| e.cost() as u64).sum();
        self.buffer.clear();
        self.buffer_bytes = 0;
        self.stats.release(n, cost);
        self.stats.add_dropped(reason, n);
    }

    fn key_len(&self, e: &Event) -> usize {
        e.key
            .as_ref()
            .map_or(batch::RANDOM_PARTITION_KEY_CHARS, |k| {
                k.len().min(crate::receiver::MAX_KEY_BYTES)
            })
    }

    fn key_for(&mut self, e: &Event) -> String {
        match &e.key {
            Some(k) if batch::validate_partition_key(&truncate_key(k)).is_ok() => truncate_key(k),
            _ => batch::random_partition_key(&mut self.rng),
        }
    }

    /// Sends one request's worth from the front of the buffer, retrying what fails.
    fn send_batch(&mut self, until: Instant) -> Step {
        let fit = batch::fit(
            self.buffer.iter().map(|e| (e.raw.len(), self.key_len(e))),
            &self.settings.limits,
        );
        if fit.oversize_front() {
            // Cannot happen after the receiver's truncation unless limits changed; never loop.
            if let Some(e) = self.buffer.pop_front() {
                self.buffer_bytes -= e.raw.len();
                self.stats.release(1, e.cost() as u64);
                self.stats.add_dropped(DropReason::Oversize, 1);
            }
            return Step::Settled(1);
        }
        let mut batch: Vec<(Event, String)> = Vec::with_capacity(fit.take);
        for _ in 0..fit.take {
            let Some(e) = self.buffer.pop_front() else {
                break;
            };
            self.buffer_bytes -= e.raw.len();
            let key = self.key_for(&e);
            batch.push((e, key));
        }
        let http = self.settings.http.clone();
        let mut attempt = 0u32;
        let mut settled = 0usize;
        loop {
            let now = Instant::now();
            if now + MIN_REQUEST_TIME > until {
                self.push_front(batch);
                return Step::Stop;
            }
            let timeout = http.request_timeout.min(until - now);
            let result = {
                let records: Vec<Record> = batch
                    .iter()
                    .map(|(e, k)| Record {
                        data: e.raw.as_bytes(),
                        partition_key: k,
                    })
                    .collect();
                self.sink.put(&records, timeout)
            };
            self.stats.requests.fetch_add(1, Relaxed);
            let plan = retry::plan(&result, batch.len());
            if let Err(err) = &result {
                self.stats.failed_requests.fetch_add(1, Relaxed);
                if let Some(code) = plan.fatal.clone() {
                    if self.logged_causes.insert(code.clone()) {
                        warn!(
                            "Kinesis refused PutRecords: {err}; {}. Dropping the batch; no retry",
                            self.sink.fix_hint(err)
                        );
                    } else {
                        debug!("Kinesis refused PutRecords again ({code})");
                    }
                    let n = batch.len() as u64;
                    let cost: u64 = batch.iter().map(|(e, _)| e.cost() as u64).sum();
                    self.stats.release(n, cost);
                    self.stats.add_dropped(DropReason::Fatal(code.clone()), n);
                    return Step::Fatal(code);
                }
                debug!("PutRecords attempt {} failed: {err}", attempt + 1);
            }
            self.stats
                .throttled
                .fetch_add(plan.throttled as u64, Relaxed);
            let mut resend = plan.resend.iter().copied().peekable();
            let mut keep = Vec::with_capacity(plan.resend.len());
            let (mut delivered, mut delivered_cost, mut delivered_bytes) = (0u64, 0u64, 0u64);
            for (i, item) in batch.into_iter().enumerate() {
                if resend.peek() == Some(&i) {
                    resend.next();
                    keep.push(item);
                } else {
                    delivered += 1;
                    delivered_cost += item.0.cost() as u64;
                    delivered_bytes += (item.0.raw.len() + item.1.len()) as u64;
                }
            }
            self.stats.delivered.fetch_add(delivered, Relaxed);
            self.stats.bytes_sent.fetch_add(delivered_bytes, Relaxed);
            self.stats.release(delivered, delivered_cost);
            settled += delivered as usize;
            if keep.is_empty() {
                if self.struggling {
                    info!("Kinesis accepts records again; delivery resumed");
                    self.struggling = false;
                }
                return Step::Settled(settled);
            }
            self.stats.retried.fetch_add(keep.len() as u64, Relaxed);
            attempt += 1;
            let wait = retry::backoff(attempt, http.backoff_base, http.backoff_max, &mut self.rng);
            if attempt >= http.max_attempts || Instant::now() + wait + MIN_REQUEST_TIME > until {
                if !self.struggling {
                    let cause = match &result {
                        Err(e) => e.to_string(),
                        Ok(_) => "records throttled".into(),
                    };
                    warn!(
                        "Kinesis is not accepting records ({cause}); {} events stay buffered for the next invocation",
                        keep.len() + self.buffer.len()
                    );
                    self.struggling = true;
                }
                self.push_front(keep);
                return Step::Stop;
            }
            self.absorb_until(Instant::now() + wait);
            batch = keep;
        }
    }

    /// Returns unsent records to the front of the buffer, in their original order.
    fn push_front(&mut self, batch: Vec<(Event, String)>) {
        for (e, _) in batch.into_iter().rev() {
            self.buffer_bytes += e.raw.len();
            self.buffer.push_front(e);
        }
    }
}

fn truncate_key(k: &str) -> String {
    let mut end = k.len().min(crate::receiver::MAX_KEY_BYTES);
    while !k.is_char_boundary(end) {
        end -= 1;
    }
    k[..end].to_string()
}

/// The real [`Sink`]: PutRecords to one stream.
pub struct KinesisSink {
    client: crate::kinesis::KinesisClient,
    target: crate::kinesis::StreamTarget,
}

impl KinesisSink {
    pub fn new(
        client: crate::kinesis::KinesisClient,
        target: crate::kinesis::StreamTarget,
    ) -> Self {
        KinesisSink { client, target }
    }
}

impl Sink for KinesisSink {
    fn put(
        &mut self,
        records: &[Record<'_>],
        timeout: Duration,
    ) -> Result<PutRecordsResponse, RequestError> {
        self.client.put_records(&self.target, records, timeout)
    }

    fn fix_hint(&self, err: &RequestError) -> String {
        err.fix_hint(&self.target, self.client.region())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> FlushPolicy {
        FlushPolicy {
            max_events: 500,
            max_bytes: 1 << 20,
            max_age: Duration::from_secs(5),
            invoke_budget: Duration::from_secs(3),
        }
    }

    #[test]
    fn nothing_buffered_is_never_due() {
        let mut p = policy();
        p.max_age = Duration::ZERO;
        assert!(!is_due(0, 0, None, &p));
    }

    #[test]
    fn due_by_count_bytes_or_age() {
        let p = policy();
        let young = Some(Duration::from_millis(10));
        assert!(!is_due(499, 1000, young, &p));
        assert!(is_due(500, 1000, young, &p));
        assert!(is_due(1, 1 << 20, young, &p));
        assert!(!is_due(1, 100, Some(Duration::from_millis(4_999)), &p));
        assert!(is_due(1, 100, Some(Duration::from_secs(5)), &p));
    }
}
