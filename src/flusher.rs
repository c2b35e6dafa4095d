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

/// At SHUTDOWN, the grace for the platform's last batch ends at least this long before
/// the drain's deadline, leaving time to send what that batch brought.
pub const SHUTDOWN_FLUSH_RESERVE: Duration = Duration::from_millis(300);

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
                Marker::Start(id) => {
                    // Kept only as a valid key (1..=256 chars, at most MAX_KEY_BYTES), so
                    // the size `fit` counts is the size sent.
                    let key = truncate_key(id);
                    self.current_request = batch::validate_partition_key(&key)
                        .is_ok()
                        .then(|| Arc::from(key));
                }
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
            // While Kinesis is failing, one probe request per invocation: an outage must not
            // add a full retry sequence to every invocation.
            let attempts = if self.struggling {
                1
            } else {
                self.settings.http.max_attempts
            };
            match self.send_batch(until, attempts) {
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
        // Keep time after the grace for what the last batch brings.
        let grace_end = (started + self.settings.shutdown_grace)
            .min(until.checked_sub(SHUTDOWN_FLUSH_RESERVE).unwrap_or(started));
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
            } else {
                match self.send_batch(until, self.settings.http.max_attempts) {
                    Step::Settled(_) => {}
                    Step::Stop => self.pause_after_stop(until),
                    Step::Fatal(code) => self.drop_all(DropReason::Fatal(code)),
                }
            }
        }
        loop {
            self.drain_events();
            if self.buffer.is_empty() || Instant::now() + MIN_REQUEST_TIME >= until {
                break;
            }
            match self.send_batch(until, self.settings.http.max_attempts) {
                Step::Settled(_) => {}
                Step::Stop => self.pause_after_stop(until),
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

    /// At SHUTDOWN, after a batch used up its attempts: back off before the next round.
    fn pause_after_stop(&mut self, until: Instant) {
        let http = &self.settings.http;
        let pause = retry::backoff(1, http.backoff_base, http.backoff_max, &mut self.rng);
        self.absorb_until((Instant::now() + pause).min(until));
    }

    fn drop_all(&mut self, reason: DropReason) {
        let n = self.buffer.len() as u64;
        let cost: u64 = self.buffer.iter().map(|e| e.cost() as u64).sum();
        self.buffer.clear();
        self.buffer_bytes = 0;
        self.stats.release(n, cost);
        self.stats.add_dropped(reason, n);
    }

    fn key_len(e: &Event) -> usize {
        e.key
            .as_ref()
            .map_or(batch::RANDOM_PARTITION_KEY_CHARS, |k| k.len())
    }

    fn key_for(&mut self, e: &Event) -> String {
        match &e.key {
            Some(k) => k.to_string(),
            None => batch::random_partition_key(&mut self.rng),
        }
    }

    /// Sends one request's worth from the front of the buffer, retrying what fails.
    fn send_batch(&mut self, until: Instant, max_attempts: u32) -> Step {
        let fit = batch::fit(
            self.buffer.iter().map(|e| (e.raw.len(), Self::key_len(e))),
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
            if attempt >= max_attempts || Instant::now() + wait + MIN_REQUEST_TIME > until {
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

    use crate::kinesis::RecordOutcome;
    use crossbeam_channel::bounded;
    use std::sync::Mutex;

    /// One scripted answer: given the records of a call, what Kinesis says.
    type Answer = Box<dyn FnMut(&[Record<'_>]) -> Result<PutRecordsResponse, RequestError> + Send>;

    #[derive(Default)]
    struct Log {
        /// Data of every record of every call, as sent.
        calls: Vec<Vec<String>>,
        starts: Vec<Instant>,
        timeouts: Vec<Duration>,
    }

    struct Scripted {
        answers: VecDeque<Answer>,
        log: Arc<Mutex<Log>>,
    }

    impl Sink for Scripted {
        fn put(
            &mut self,
            records: &[Record<'_>],
            timeout: Duration,
        ) -> Result<PutRecordsResponse, RequestError> {
            {
                let mut log = self.log.lock().unwrap();
                log.starts.push(Instant::now());
                log.timeouts.push(timeout);
                log.calls.push(
                    records
                        .iter()
                        .map(|r| String::from_utf8(r.data.to_vec()).unwrap())
                        .collect(),
                );
            }
            match self.answers.pop_front() {
                Some(mut answer) => answer(records),
                None => ok(records),
            }
        }

        fn fix_hint(&self, _err: &RequestError) -> String {
            "fix it".into()
        }
    }

    fn ok(records: &[Record<'_>]) -> Result<PutRecordsResponse, RequestError> {
        Ok(PutRecordsResponse {
            failed_record_count: 0,
            records: records
                .iter()
                .map(|_| RecordOutcome::Ok {
                    sequence_number: "1".into(),
                    shard_id: "shardId-000000000000".into(),
                })
                .collect(),
        })
    }

    /// Throttles the records at `failed` indices, accepts the rest.
    fn throttle(failed: &'static [usize]) -> Answer {
        Box::new(move |records| {
            Ok(PutRecordsResponse {
                failed_record_count: failed.len() as u64,
                records: (0..records.len())
                    .map(|i| {
                        if failed.contains(&i) {
                            RecordOutcome::Failed {
                                code: "ProvisionedThroughputExceededException".into(),
                                message: "Rate exceeded for shard".into(),
                            }
                        } else {
                            RecordOutcome::Ok {
                                sequence_number: "1".into(),
                                shard_id: "shardId-000000000000".into(),
                            }
                        }
                    })
                    .collect(),
            })
        })
    }

    fn http_error(status: u16, code: &'static str) -> Answer {
        Box::new(move |_| {
            Err(RequestError::Http {
                status,
                code: code.into(),
                message: "scripted".into(),
            })
        })
    }

    fn settings(max_age_ms: u64) -> Settings {
        Settings {
            policy: FlushPolicy {
                max_age: Duration::from_millis(max_age_ms),
                ..policy()
            },
            limits: Limits::default(),
            http: Http {
                connect_timeout: Duration::from_secs(1),
                request_timeout: Duration::from_secs(2),
                ca_file: None,
                max_attempts: 4,
                backoff_base: Duration::from_millis(1),
                backoff_max: Duration::from_millis(5),
            },
            partition_key: PartitionKeyMode::Random,
            shutdown_grace: Duration::from_millis(500),
        }
    }

    struct Rig {
        flusher: Flusher<Scripted>,
        log: Arc<Mutex<Log>>,
        stats: Arc<Stats>,
        tx: Sender<Vec<Event>>,
    }

    fn rig(max_age_ms: u64, answers: Vec<Answer>) -> Rig {
        let log = Arc::new(Mutex::new(Log::default()));
        let stats = Arc::new(Stats::default());
        let (tx, rx) = bounded(16);
        let sink = Scripted {
            answers: answers.into(),
            log: log.clone(),
        };
        Rig {
            flusher: Flusher::new(sink, settings(max_age_ms), stats.clone(), rx),
            log,
            stats,
            tx,
        }
    }

    /// `n` function events `"<tag>-<i>"`, accounted as the receiver would.
    fn events(stats: &Stats, tag: &str, n: usize) -> Vec<Event> {
        let body: Vec<String> = (0..n)
            .map(|i| format!(r#"{{"time":"t","type":"function","record":"{tag}-{i}"}}"#))
            .collect();
        let events =
            crate::event::parse_batch(format!("[{}]", body.join(",")).as_bytes(), Instant::now())
                .unwrap();
        account(stats, &events);
        events
    }

    fn account(stats: &Stats, events: &[Event]) {
        stats.received.fetch_add(events.len() as u64, Relaxed);
        stats
            .buffered_events
            .fetch_add(events.len() as u64, Relaxed);
        let cost: u64 = events.iter().map(|e| e.cost() as u64).sum();
        stats.buffered_bytes.fetch_add(cost, Relaxed);
    }

    fn record_of(data: &str) -> String {
        let v: serde_json::Value = serde_json::from_str(data).unwrap();
        v["record"].as_str().unwrap().to_string()
    }

    fn in_the_future(ms: u64) -> Instant {
        Instant::now() + Duration::from_millis(ms)
    }

    #[test]
    fn nothing_due_means_no_request_and_nothing_lost() {
        let mut r = rig(5_000, vec![]);
        let batch = events(&r.stats, "a", 3);
        r.flusher.append(batch);
        r.flusher.invoke_window(in_the_future(1_000));
        assert!(r.log.lock().unwrap().calls.is_empty());
        assert_eq!(r.flusher.buffer.len(), 3);
        assert_eq!(r.stats.buffered_events.load(Relaxed), 3);
    }

    #[test]
    fn a_due_flush_sends_everything_in_order_in_full_requests() {
        let mut r = rig(0, vec![]);
        r.tx.send(events(&r.stats, "e", 1_200)).unwrap();
        r.flusher.invoke_window(in_the_future(1_000));
        let log = r.log.lock().unwrap();
        let sizes: Vec<usize> = log.calls.iter().map(Vec::len).collect();
        assert_eq!(sizes, [500, 500, 200]);
        let sent: Vec<String> = log.calls.concat().iter().map(|d| record_of(d)).collect();
        let expected: Vec<String> = (0..1_200).map(|i| format!("e-{i}")).collect();
        assert_eq!(sent, expected);
        assert_eq!(r.stats.delivered.load(Relaxed), 1_200);
        assert_eq!(r.stats.buffered_events.load(Relaxed), 0);
        assert_eq!(r.stats.buffered_bytes.load(Relaxed), 0);
    }

    #[test]
    fn throttled_records_alone_are_resent() {
        let mut r = rig(0, vec![throttle(&[1, 3])]);
        let batch = events(&r.stats, "t", 5);
        r.flusher.append(batch);
        r.flusher.invoke_window(in_the_future(1_000));
        let log = r.log.lock().unwrap();
        assert_eq!(log.calls.len(), 2);
        let resent: Vec<String> = log.calls[1].iter().map(|d| record_of(d)).collect();
        assert_eq!(resent, ["t-1", "t-3"]);
        assert_eq!(r.stats.delivered.load(Relaxed), 5);
        assert_eq!(r.stats.retried.load(Relaxed), 2);
        assert_eq!(r.stats.throttled.load(Relaxed), 2);
    }

    #[test]
    fn no_request_starts_after_the_window_and_the_rest_stays_in_order() {
        let slow: Answer = Box::new(|records| {
            std::thread::sleep(Duration::from_millis(60));
            ok(records)
        });
        let mut r = rig(0, vec![slow]);
        r.flusher.settings.limits = Limits {
            max_records: 10,
            ..Limits::default()
        };
        let batch = events(&r.stats, "w", 50);
        r.flusher.append(batch);
        let until = in_the_future(50);
        r.flusher.invoke_window(until);
        let log = r.log.lock().unwrap();
        assert_eq!(log.calls.len(), 1, "only the first request fits the window");
        assert!(log.timeouts[0] <= Duration::from_millis(50));
        assert!(log.starts.iter().all(|s| *s + MIN_REQUEST_TIME <= until));
        let left: Vec<String> = r.flusher.buffer.iter().map(|e| record_of(&e.raw)).collect();
        let expected: Vec<String> = (10..50).map(|i| format!("w-{i}")).collect();
        assert_eq!(left, expected);
        assert_eq!(r.stats.delivered.load(Relaxed), 10);
        assert_eq!(r.stats.buffered_events.load(Relaxed), 40);
    }

    #[test]
    fn exhausted_attempts_keep_records_buffered_in_order() {
        let mut r = rig(
            0,
            (0..4)
                .map(|_| http_error(503, "ServiceUnavailable"))
                .collect(),
        );
        let batch = events(&r.stats, "x", 3);
        r.flusher.append(batch);
        r.flusher.invoke_window(in_the_future(1_000));
        assert_eq!(
            r.log.lock().unwrap().calls.len(),
            4,
            "max_attempts requests"
        );
        let left: Vec<String> = r.flusher.buffer.iter().map(|e| record_of(&e.raw)).collect();
        assert_eq!(left, ["x-0", "x-1", "x-2"]);
        assert_eq!(r.stats.dropped(), Default::default());
        // The next window delivers them.
        r.flusher.invoke_window(in_the_future(1_000));
        assert_eq!(r.stats.delivered.load(Relaxed), 3);
    }

    #[test]
    fn during_an_outage_each_invocation_makes_one_probe_only() {
        let mut r = rig(
            0,
            (0..5)
                .map(|_| http_error(503, "ServiceUnavailable"))
                .collect(),
        );
        r.flusher.append(events(&r.stats, "p", 3));
        r.flusher.invoke_window(in_the_future(1_000));
        assert_eq!(r.log.lock().unwrap().calls.len(), 4);
        r.flusher.invoke_window(in_the_future(1_000));
        assert_eq!(
            r.log.lock().unwrap().calls.len(),
            5,
            "one probe, no retries"
        );
        assert_eq!(r.flusher.buffer.len(), 3);
        r.flusher.invoke_window(in_the_future(1_000));
        assert_eq!(r.stats.delivered.load(Relaxed), 3, "recovered");
        assert!(!r.flusher.struggling);
    }

    #[test]
    fn a_fatal_error_drops_one_batch_counted_and_stops_the_window() {
        let mut r = rig(0, vec![http_error(400, "ResourceNotFoundException")]);
        r.flusher.append(events(&r.stats, "f", 700));
        r.flusher.invoke_window(in_the_future(1_000));
        assert_eq!(
            r.log.lock().unwrap().calls.len(),
            1,
            "no retry, no hot loop"
        );
        let dropped = r.stats.dropped();
        assert_eq!(
            dropped.get(&DropReason::Fatal("ResourceNotFoundException".into())),
            Some(&500)
        );
        assert_eq!(r.flusher.buffer.len(), 200);
        assert_eq!(r.stats.buffered_events.load(Relaxed), 200);
    }

    #[test]
    fn shutdown_ends_the_grace_at_the_final_report_and_drains_everything() {
        let mut r = rig(60_000, vec![]);
        r.flusher.append(events(&r.stats, "s", 10));
        let tx = r.tx.clone();
        let stats = r.stats.clone();
        let late = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            let body = br#"[{"time":"t","type":"function","record":"last"},{"time":"t","type":"platform.report","record":{"requestId":"r-9"}}]"#;
            let batch = crate::event::parse_batch(body, Instant::now()).unwrap();
            account(&stats, &batch);
            tx.send(batch).unwrap();
        });
        let started = Instant::now();
        r.flusher.shutdown(in_the_future(1_500), Some("r-9"));
        late.join().unwrap();
        let took = started.elapsed();
        assert!(
            took < Duration::from_millis(400),
            "grace ended at the report: {took:?}"
        );
        assert_eq!(r.stats.delivered.load(Relaxed), 12);
        assert_eq!(r.stats.buffered_events.load(Relaxed), 0);
    }

    #[test]
    fn shutdown_counts_what_the_deadline_leaves_behind() {
        let mut r = rig(
            0,
            (0..100)
                .map(|_| http_error(500, "InternalFailure"))
                .collect(),
        );
        r.flusher.append(events(&r.stats, "d", 4));
        r.flusher.shutdown(in_the_future(80), None);
        assert_eq!(
            r.stats.dropped().get(&DropReason::ShutdownDeadline),
            Some(&4)
        );
        assert_eq!(r.stats.buffered_events.load(Relaxed), 0);
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
