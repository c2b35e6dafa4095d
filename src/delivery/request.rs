//! The request step: one PutRecords, as a function over explicit state ([`Link`]), in named
//! steps: what the window allows ([`Bounds`]), take the next request's events from the buffer
//! (`records::pack`), build the records (`records::build`), send them with a timeout bounded
//! by the window's end ([`put`]), read the answer (`outcome`), settle every event (delivered,
//! resent, or dropped with a reason) and tell Kinesis' health what happened ([`tell_health`]).
//!
//! Invariant: every event taken leaves through `Buffer::finish` exactly once per request;
//! a resent event goes back to the front in order and remembers that it was resent (and
//! whether the request it was in may have landed after all).

use std::collections::HashSet;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use log::{debug, info, warn};

use crate::delivery::congestion::{self, Congestion};
use crate::delivery::health::{self, Change, Health, Observation, RetryPolicy, Trouble};
use crate::delivery::outcome::{self, Outcome, Settlement};
use crate::delivery::records::RecordSettings;
use crate::delivery::records::{self, Built, Pack};
use crate::delivery::sink::Sink;
use crate::delivery::timeline;
use crate::delivery::window::{View, Window, WindowKind};
use crate::event::Event;
use crate::kinesis::limits::Limits;
use crate::kinesis::Http;
use crate::kinesis::{PutRecordsResponse, Record, RecordOutcome, RequestError};
use crate::rng::Rng;
use crate::stats::{DropReason, Stats};
use crate::store::buffer::{Buffer, Fate, Lease};

/// Everything a request reads and changes, borrowed from the flusher for its duration.
pub struct Link<'a, S: Sink> {
    pub sink: &'a mut S,
    pub buffer: &'a Buffer,
    pub stats: &'a Stats,
    /// What is known of Kinesis: latency, failures, backoff.
    pub health: &'a mut Health,
    /// The stream's send rate, once Kinesis throttled.
    pub congestion: &'a mut Congestion,
    pub rng: &'a mut Rng,
    pub said: &'a mut Said,
    pub records: &'a RecordSettings,
    pub http: &'a Http,
    /// The added-time budget.
    pub max_added: Duration,
}

/// What has been logged, so that each cause and episode gets one line.
#[derive(Debug, Default)]
pub struct Said {
    /// Fatal causes (AWS codes) logged.
    causes: HashSet<String>,
    /// The kinds of trouble logged in the current episode (cleared when Kinesis recovers).
    troubles: Vec<Trouble>,
    /// The stream-at-its-limit line was logged for this episode.
    at_limit: bool,
}

impl Said {
    /// No trouble has been logged in the current episode.
    pub fn no_trouble(&self) -> bool {
        self.troubles.is_empty()
    }
}

/// What one request came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sent {
    /// Nothing was waiting.
    Nothing,
    /// The front event could never fit a record: dropped, counted as oversize.
    Oversize,
    /// Every record delivered.
    Delivered,
    /// Some or all records are to be resent.
    Partly,
    /// Kinesis refused the request for good: its events are dropped under this code.
    Fatal(String),
    /// Ended by its window (cut at the added-time budget, or timed out at the window's end):
    /// its events are resent.
    Cut,
}

impl Sent {
    pub fn is_fatal(&self) -> bool {
        matches!(self, Sent::Fatal(_))
    }
}

/// What the window allows a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    /// Nothing of it may be in flight after this.
    pub until: Instant,
    /// Kinesis is failing and this request is there to learn whether it accepts records
    /// again: one record, not the whole buffer once per invocation.
    pub probe: bool,
    /// What it may carry to finish in time (after an invocation's runtimeDone, what the rest
    /// of the budget moves).
    pub max_bytes: Option<usize>,
}

impl Bounds {
    /// The bounds of a request started at `now` in window `w`, decided on view `v` (health is
    /// only read).
    pub fn in_window(
        w: &Window,
        v: &View,
        health: &Health,
        max_added: Duration,
        now: Instant,
    ) -> Bounds {
        // While Kinesis is failing an invocation's request ends when its function is expected
        // to (the window's decision made sure that leaves time for one), or, a recovery probe,
        // within the added-time budget.
        let (mut until, mut probe) = (w.until, false);
        if let WindowKind::Invoke { .. } = &w.kind {
            if v.failing {
                match v.run_left {
                    Some(left) if left >= v.time_needed => until = until.min(now + left),
                    _ => {
                        until = timeline::probe_end(now, until, max_added);
                        probe = true;
                    }
                }
            }
        }
        // While Kinesis is failing, a request is a probe, except at SHUTDOWN: the last window
        // sends everything it can.
        probe |= health.struggling() && !matches!(w.kind, WindowKind::Shutdown { .. });
        // After the invocation's runtimeDone a request carries what the rest of the budget
        // can move, so that it is not cut.
        let max_bytes = match (&w.kind, v.done_seen) {
            (WindowKind::Invoke { .. }, true) => {
                health.bytes_within(now, until.saturating_duration_since(now))
            }
            _ => None,
        };
        Bounds {
            until,
            probe,
            max_bytes,
        }
    }
}

/// The retry settings health works with.
fn retry_policy(http: &Http) -> RetryPolicy {
    RetryPolicy {
        max_attempts: http.max_attempts,
        backoff_base: http.backoff_base,
        backoff_max: http.backoff_max,
    }
}

/// Sends the next request's worth from the front of the buffer (see the module docs).
pub fn send<S: Sink>(mut l: Link<'_, S>, bounds: Bounds) -> Sent {
    // 1. Pack: the next request's events, in buffer order.
    let limits = limits(l.records, bounds, l.congestion.allowance(Instant::now()));
    let (mut lease, pack) = take(l.buffer, l.records, &limits);
    if lease.is_empty() {
        return Sent::Nothing;
    }
    if pack.oversize_front() {
        // Cannot happen after the receiver's truncation unless limits changed; never loop.
        l.buffer.finish(lease, |_| Fate::Gone);
        l.stats.add_dropped(DropReason::Oversize, 1);
        return Sent::Oversize;
    }
    // 2. Records.
    let built = records::build(&pack, lease.events(), l.records.format, l.rng);
    let again = attempted(lease.events_mut());
    // 3. The request.
    let call = put(&mut l, &built, lease.events(), bounds.until);
    count_request(l.stats, &call, again);
    // 4. The outcome.
    let outcome = Outcome::of(&call.result, built.len());
    if call.result.is_err() {
        Stats::add(&l.stats.failed_requests, 1);
    }
    let policy = retry_policy(l.http);
    if let Some(code) = outcome.fatal.clone() {
        return refused(&mut l, lease, &call, code, &policy);
    }
    // 5. Settle: the events of every resent record go back, the rest are delivered.
    let settled = outcome::settle(
        &outcome,
        built.iter().map(|b| (&b.events[..], record_bytes(b))),
        lease.len(),
    );
    finish(&l, lease, &outcome, &settled);
    pace_to_the_stream(
        &mut l,
        &call.result,
        &settled,
        outcome.throttled,
        built.len(),
    );
    // 6. Health.
    tell_health(&mut l, &call, &outcome, &settled, &policy);
    if call.cut {
        Sent::Cut
    } else if settled.resent == 0 {
        Sent::Delivered
    } else {
        Sent::Partly
    }
}

/// The request's limits: the configured ones, one record for a probe, and no more bytes than
/// the window moves or the stream's send rate allows now (the window waited for at least a
/// record's worth).
fn limits(r: &RecordSettings, bounds: Bounds, allowance: Option<usize>) -> Limits {
    let mut limits = r.limits;
    if bounds.probe {
        limits.max_records = 1;
    }
    let allowance = allowance.map(|a| a.max(r.target_bytes));
    for cap in [bounds.max_bytes, allowance].into_iter().flatten() {
        limits.max_request_bytes = limits.max_request_bytes.min(cap);
    }
    limits
}

/// Leases the events `records::pack` takes from the front (the front one alone when it can
/// never fit a record: the caller drops it).
fn take<'b>(buffer: &'b Buffer, r: &RecordSettings, limits: &Limits) -> (Lease<'b>, Pack) {
    buffer.take(|front| {
        let p = records::pack(
            front.iter().map(|e| (e.raw.len(), &e.key)),
            r.format,
            r.target_bytes,
            limits,
        );
        (if p.oversize_front() { 1 } else { p.take }, p)
    })
}

/// Events sent again (and of them, in doubt) in this request.
#[derive(Debug, Clone, Copy)]
struct Again {
    resent: u64,
    unconfirmed: u64,
}

/// Notes an attempt on each event about to be sent; returns how many were sent before.
fn attempted(events: &mut [Event]) -> Again {
    let resent = events.iter().filter(|e| e.attempts > 0).count() as u64;
    let unconfirmed = events.iter().filter(|e| e.unconfirmed).count() as u64;
    for e in events {
        e.attempts = e.attempts.saturating_add(1);
        e.unconfirmed = false;
    }
    Again {
        resent,
        unconfirmed,
    }
}

/// A record's size as Kinesis counts it: data + key.
fn record_bytes(b: &Built) -> usize {
    b.data_len + b.partition_key.len()
}

/// One PutRecords call: what it came to, and what it took.
struct Call {
    result: Result<PutRecordsResponse, RequestError>,
    took: Duration,
    /// Bytes sent (records' data + keys).
    bytes: usize,
    /// Ended by its window: cut in flight at the added-time budget, or timed out at the
    /// window's end (`health::ended_by_window`).
    cut: bool,
}

/// The PutRecords call, bounded by the window; a new connection by the connects seen.
fn put<S: Sink>(l: &mut Link<'_, S>, built: &[Built], events: &[Event], until: Instant) -> Call {
    let started = Instant::now();
    let bytes: usize = built.iter().map(record_bytes).sum();
    l.congestion.sent(started, bytes);
    let timeout = timeline::request_timeout(l.http.request_timeout, started, until);
    let connect_timeout = l.health.connect_timeout(started, l.http.connect_timeout);
    let result = {
        let wire: Vec<Record> = built.iter().map(|b| b.wire(events)).collect();
        l.sink.put(&wire, timeout, connect_timeout)
    };
    let took = started.elapsed();
    for connect in l.sink.connect_times() {
        l.health.connected(Instant::now(), connect);
    }
    let cut = health::ended_by_window(&result, timeout, l.http.request_timeout);
    Call {
        result,
        took,
        bytes,
        cut,
    }
}

/// Counts the request, its latency and what it sent again.
fn count_request(stats: &Stats, call: &Call, again: Again) {
    Stats::add(&stats.requests, 1);
    if matches!(call.result, Err(RequestError::Abandoned)) {
        Stats::add(&stats.abandoned_requests, 1);
    }
    stats.add_latency(call.took);
    if again.resent > 0 {
        Stats::add(&stats.retry_requests, 1);
        Stats::add(&stats.resent_events, again.resent);
        Stats::add(&stats.resent_unconfirmed, again.unconfirmed);
    }
}

/// Kinesis refused the request for good: its events are dropped under `code`, the cause
/// logged once.
fn refused<S: Sink>(
    l: &mut Link<'_, S>,
    lease: Lease<'_>,
    call: &Call,
    code: String,
    policy: &RetryPolicy,
) -> Sent {
    if let Err(err) = &call.result {
        if l.said.causes.insert(code.clone()) {
            let what = err.to_string();
            warn!(
                "Kinesis refused PutRecords: {}; {}. Dropping the {} events of this request; no retry",
                what.trim_end_matches('.'),
                l.sink.fix_hint(err),
                lease.len()
            );
        } else {
            debug!("Kinesis refused PutRecords again ({code})");
        }
    }
    let n = l.buffer.finish(lease, |_| Fate::Gone) as u64;
    l.stats.add_dropped(DropReason::Fatal(code.clone()), n);
    l.health
        .observe(Instant::now(), call.took, Observation::Fatal, policy, l.rng);
    Sent::Fatal(code)
}

/// Gives every event its fate and counts what was delivered.
fn finish<S: Sink>(l: &Link<'_, S>, mut lease: Lease<'_>, outcome: &Outcome, settled: &Settlement) {
    if settled.unconfirmed {
        for (e, f) in lease.events_mut().iter_mut().zip(&settled.fates) {
            e.unconfirmed = *f == Fate::Resend;
        }
    }
    let delivered = l.buffer.finish(lease, |i| settled.fates[i]) as u64;
    let stats = l.stats;
    Stats::add(&stats.delivered, delivered);
    Stats::add(&stats.records_sent, settled.records_ok);
    Stats::add(&stats.bytes_sent, settled.bytes_ok);
    Stats::add(&stats.throttled, outcome.throttled as u64);
}

/// The shards named in throttled records' messages ("Rate exceeded for shard shardId-…").
fn throttled_shards(result: &Result<PutRecordsResponse, RequestError>) -> Vec<String> {
    let mut shards: Vec<String> = Vec::new();
    if let Ok(r) = result {
        for outcome in &r.records {
            if let RecordOutcome::Failed { message, .. } = outcome {
                if let Some(at) = message.find("shardId-") {
                    let id: String = message[at..]
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                        .collect();
                    if !shards.contains(&id) && shards.len() < 8 {
                        shards.push(id);
                    }
                }
            }
        }
    }
    shards
}

/// The stream's send rate learns from the answer (see `congestion`); the first throttle of
/// an episode is logged with what to do.
fn pace_to_the_stream<S: Sink>(
    l: &mut Link<'_, S>,
    result: &Result<PutRecordsResponse, RequestError>,
    settled: &Settlement,
    throttled: usize,
    records: usize,
) {
    let jitter = l.rng.next_u64() as f64 / (u64::MAX as f64 + 1.0);
    let answer = congestion::Answer {
        accepted_bytes: settled.bytes_ok as usize,
        throttled,
    };
    l.congestion.answered(Instant::now(), answer, jitter);
    let rate = l.congestion.rate();
    l.stats
        .send_rate_limit
        .store(rate.map_or(0, |r| r as u64), Relaxed);
    match rate {
        Some(rate) if !l.said.at_limit => {
            l.said.at_limit = true;
            let shards = throttled_shards(result);
            let shards = if shards.is_empty() {
                String::new()
            } else {
                format!(" (shards {})", shards.join(", "))
            };
            warn!(
                "the stream is at its write limit: {throttled} of {records} records throttled{shards}; \
                 this environment now sends at about {} KB/s and raises it while records are accepted \
                 (the rest waits in the buffer). Add shards or use on-demand capacity; a fixed partition key (KINESIS_TELEMETRY_PARTITION_KEY) \
                 puts all its records on one shard (`function`: the whole function's, `environment`: one \
                 environment's, `tenant`: one tenant's), `random` spreads them",
                (rate / 1000.0).round()
            );
        }
        None if l.said.at_limit => {
            l.said.at_limit = false;
            info!("the stream takes records as fast as they come again: no send-rate limit");
        }
        _ => {}
    }
}

/// What the answer teaches health, and the one line per episode worth logging.
fn tell_health<S: Sink>(
    l: &mut Link<'_, S>,
    call: &Call,
    outcome: &Outcome,
    settled: &Settlement,
    policy: &RetryPolicy,
) {
    let (took, cut, result) = (call.took, call.cut, &call.result);
    let small = call.bytes <= health::SMALL_REQUEST_BYTES;
    let what = health::observation(outcome, settled, cut, small, took, l.max_added);
    match what {
        Observation::Partial => debug!(
            "PutRecords: {} events to resend ({} throttled)",
            settled.resent, outcome.throttled
        ),
        Observation::Retry => debug!(
            "PutRecords: {} events to resend ({result:?})",
            settled.resent
        ),
        _ => {}
    }
    let timed_out = matches!(
        result,
        Err(RequestError::Timeout(_) | RequestError::Abandoned)
    );
    let seen = health::latency_seen(took, timed_out);
    // Only a small request's time says how Kinesis answers.
    let trouble = match (small, cut) {
        (true, true) => health::window_trouble(took, l.max_added),
        (true, false) => health::diagnose(result, took, l.max_added),
        (false, true) => None,
        (false, false) => health::diagnose(result, Duration::ZERO, l.max_added),
    };
    let change = l
        .health
        .observe_sized(Instant::now(), seen, call.bytes, what, policy, l.rng);
    l.stats.struggling.store(l.health.struggling(), Relaxed);
    // One line per episode: its kind of trouble when it starts, and its end.
    let recovered = if matches!(what, Observation::Ok | Observation::Partial) && trouble.is_none() {
        let ended = std::mem::take(&mut l.said.troubles);
        (!ended.is_empty()).then(|| recovery_line(&ended))
    } else {
        log_trouble(l, trouble);
        None
    };
    log_change(l, change, recovered, result);
}

/// The line that ends Kinesis' struggling, or an episode of trouble.
const RECOVERED: &str = "Kinesis accepts records again; delivery resumed";

/// The line that ends an episode of these troubles (pure): credentials that could not be
/// fetched were no fault of Kinesis, so their end says what came back.
pub fn recovery_line(ended: &[Trouble]) -> &'static str {
    if ended.iter().all(|t| matches!(t, Trouble::Credentials(_))) {
        "the function's credentials can be fetched again; delivery resumed"
    } else {
        RECOVERED
    }
}

/// The line for a change of health: Kinesis stopped or started accepting records; `recovered`:
/// the line ending an episode of trouble, when one ended.
fn log_change<S: Sink>(
    l: &Link<'_, S>,
    change: Option<Change>,
    recovered: Option<&'static str>,
    result: &Result<PutRecordsResponse, RequestError>,
) {
    match change {
        Some(Change::StartedStruggling) if !l.said.troubles.is_empty() => {}
        Some(Change::StartedStruggling) => {
            let cause = match result {
                Err(e) => e.to_string(),
                Ok(_) => "records throttled".into(),
            };
            warn!(
                "Kinesis is not accepting records ({cause}); {} events stay buffered: one-record probes go out while functions run (and one invocation in 20 spends up to the added-time budget on one), and SHUTDOWN drains",
                l.buffer.held()
            );
        }
        Some(Change::Recovered) => info!("{}", recovered.unwrap_or(RECOVERED)),
        None => {
            if let Some(line) = recovered {
                info!("{line}");
            }
        }
    }
}

/// What the connect probe at start taught: how long a connect takes, or that Kinesis
/// cannot be reached (then no invocation is held, and the log says why, once).
pub fn probed<S: Sink>(mut l: Link<'_, S>, result: Result<Duration, RequestError>, took: Duration) {
    let now = Instant::now();
    match result {
        Ok(connect) => l.health.connected(now, connect),
        Err(e) => {
            let policy = retry_policy(l.http);
            l.health
                .observe(now, took, Observation::Retry, &policy, l.rng);
            let err: Result<(), RequestError> = Err(e);
            let trouble = health::diagnose(&err, took, l.max_added);
            log_trouble(&mut l, trouble);
        }
    }
}

/// Logs a kind of trouble once per episode (see `health::diagnose`).
fn log_trouble<S: Sink>(l: &mut Link<'_, S>, trouble: Option<Trouble>) {
    let Some(t) = trouble else {
        return;
    };
    if l.said.troubles.iter().any(|was| was.same_kind(&t)) {
        return;
    }
    let endpoint = l.sink.endpoint();
    let held = l.buffer.held();
    match &t {
        Trouble::Unreachable(why) => warn!(
            "Kinesis at {endpoint} cannot be reached ({why}): check the function's VPC route to it \
             (a NAT gateway or a Kinesis interface VPC endpoint), its security groups, and \
             KINESIS_TELEMETRY_ENDPOINT. {held} events stay buffered; they are sent while \
             functions run and at SHUTDOWN, never in the functions' time"
        ),
        Trouble::Hanging => warn!(
            "Kinesis at {endpoint} accepted the connection but did not answer in time: \
             requests are cut at the added-time budget (KINESIS_TELEMETRY_MAX_ADDED_MS) and \
             resent; {held} events stay buffered and are sent while functions run and at SHUTDOWN"
        ),
        Trouble::Slow(took) => warn!(
            "Kinesis at {endpoint} answers in about {} ms, more than the added-time budget \
             (KINESIS_TELEMETRY_MAX_ADDED_MS = {} ms): invocations are not held; telemetry is \
             sent while functions run and at SHUTDOWN",
            took.as_millis(),
            l.max_added.as_millis()
        ),
        Trouble::Credentials(why) => warn!(
            "the function's credentials cannot be fetched from {why}: check \
             AWS_CONTAINER_AUTHORIZATION_TOKEN / AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE and that \
             the endpoint answers. {held} events stay buffered; they are sent once credentials \
             come, while functions run and at SHUTDOWN, never in the functions' time"
        ),
    }
    l.said.troubles.push(t);
}

#[cfg(test)]
mod tests;
