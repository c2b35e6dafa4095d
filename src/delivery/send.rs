//! One PutRecords request, in named steps: take the next request's events from the buffer
//! (`records::plan`), build the records (`records::build`), send them with a timeout bounded
//! by the window's end, plan what follows (`retry::plan`), settle every event (delivered,
//! resent, or dropped with a reason) and tell Kinesis' health what happened.
//!
//! Invariant: every event taken leaves through `Buffer::finish` exactly once per request;
//! a resent event goes back to the front in order and remembers that it was resent (and
//! whether the request it was in may have landed after all).

use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use log::{debug, info, warn};

use crate::delivery::flusher::{Flusher, Sink};
use crate::delivery::health::{self, Change, Observation};
use crate::delivery::outcome::{self, Outcome};
use crate::delivery::records;
use crate::delivery::timeline;
use crate::kinesis::{Record, RequestError};
use crate::stats::{DropReason, Stats};
use crate::store::buffer::Fate;

/// The shards named in throttled records' messages ("Rate exceeded for shard shardId-…").
fn throttled_shards(
    result: &Result<crate::kinesis::PutRecordsResponse, RequestError>,
) -> Vec<String> {
    let mut shards: Vec<String> = Vec::new();
    if let Ok(r) = result {
        for outcome in &r.records {
            if let crate::kinesis::RecordOutcome::Failed { message, .. } = outcome {
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
    /// Cut in flight at the added-time budget: its events are resent.
    Cut,
}

impl Sent {
    pub fn is_fatal(&self) -> bool {
        matches!(self, Sent::Fatal(_))
    }
}

impl<S: Sink> Flusher<S> {
    /// The stream's send rate learns from the answer (see `congestion`); the first throttle
    /// of an episode is logged with what to do.
    fn pace_to_the_stream(
        &mut self,
        result: &Result<crate::kinesis::PutRecordsResponse, RequestError>,
        accepted_bytes: usize,
        throttled: usize,
        records: usize,
    ) {
        let jitter = self.rng.next_u64() as f64 / (u64::MAX as f64 + 1.0);
        let answer = crate::delivery::congestion::Answer {
            accepted_bytes,
            throttled,
        };
        self.congestion.answered(Instant::now(), answer, jitter);
        let rate = self.congestion.rate();
        self.stats.send_rate_limit.store(
            rate.map_or(0, |r| r as u64),
            std::sync::atomic::Ordering::Relaxed,
        );
        match rate {
            Some(rate) if !self.limit_logged => {
                self.limit_logged = true;
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
            None if self.limit_logged => {
                self.limit_logged = false;
                info!("the stream takes records as fast as they come again: no send-rate limit");
            }
            _ => {}
        }
    }

    /// Counts spilled events lost to a damaged spill file since the last look.
    pub(crate) fn count_spill_losses(&mut self) {
        let lost = self.buffer.spill_lost();
        if lost > self.spill_lost {
            self.stats
                .add_dropped(DropReason::SpillCorrupt, lost - self.spill_lost);
            self.spill_lost = lost;
        }
    }

    /// Sends the next request's worth from the front of the buffer (see the module docs).
    /// `probe`: Kinesis is failing and this request is there to learn whether it accepts
    /// records again: one record, not the whole buffer once per invocation.
    /// `max_bytes`: what the request may carry to finish in time (after an invocation's
    /// runtimeDone, what the rest of the budget moves).
    pub(crate) fn send_one(
        &mut self,
        until: Instant,
        probe: bool,
        max_bytes: Option<usize>,
    ) -> Sent {
        let r = &self.settings.records;
        let (format, target, mut limits) = (r.format, r.target_bytes, r.limits);
        if probe {
            limits.max_records = 1;
        }
        // What the stream's send rate allows now (the window waited for at least a
        // record's worth), and what the rest of the budget moves.
        let allowance = self
            .congestion
            .allowance(Instant::now())
            .map(|a| a.max(target));
        for cap in [max_bytes, allowance].into_iter().flatten() {
            limits.max_request_bytes = limits.max_request_bytes.min(cap);
        }
        // 1. Pack: the next request's events, in buffer order.
        let (mut lease, pack) = self.buffer.take(|front| {
            let p = records::plan(
                front.iter().map(|e| (e.raw.len(), &e.key)),
                format,
                target,
                &limits,
            );
            (if p.oversize_front() { 1 } else { p.take }, p)
        });
        if lease.is_empty() {
            return Sent::Nothing;
        }
        if pack.oversize_front() {
            // Cannot happen after the receiver's truncation unless limits changed; never loop.
            self.buffer.finish(lease, |_| Fate::Gone);
            self.stats.add_dropped(DropReason::Oversize, 1);
            return Sent::Oversize;
        }
        // 2. Records.
        let built = records::build(&pack, lease.events(), format, &mut self.rng);
        let resent = lease.events().iter().filter(|e| e.attempts > 0).count() as u64;
        let unconfirmed = lease.events().iter().filter(|e| e.unconfirmed).count() as u64;
        for e in lease.events_mut() {
            e.attempts = e.attempts.saturating_add(1);
            e.unconfirmed = false;
        }
        // 3. The request, bounded by the window; a new connection by the connects seen.
        let started = Instant::now();
        let sent_bytes: usize = built
            .iter()
            .map(|b| b.data_len + b.partition_key.len())
            .sum();
        self.congestion.sent(started, sent_bytes);
        let timeout = timeline::request_timeout(self.settings.http.request_timeout, started, until);
        let connect_timeout = self
            .health
            .connect_timeout(started, self.settings.http.connect_timeout);
        let result = {
            let wire: Vec<Record> = built.iter().map(|b| b.wire(lease.events())).collect();
            self.sink.put(&wire, timeout, connect_timeout)
        };
        let took = started.elapsed();
        for connect in self.sink.connect_times() {
            self.health.connected(Instant::now(), connect);
        }
        let stats = &self.stats;
        Stats::add(&stats.requests, 1);
        let cut = matches!(result, Err(RequestError::Abandoned));
        if cut {
            Stats::add(&stats.abandoned_requests, 1);
        }
        let bytes: usize = built
            .iter()
            .map(|b| b.data_len + b.partition_key.len())
            .sum();
        let small = bytes <= health::SMALL_REQUEST_BYTES;
        stats.add_latency(took);
        if resent > 0 {
            Stats::add(&stats.retry_requests, 1);
            Stats::add(&stats.resent_events, resent);
            Stats::add(&stats.resent_unconfirmed, unconfirmed);
        }
        // 4. What follows.
        let plan = Outcome::of(&result, built.len());
        if result.is_err() {
            Stats::add(&stats.failed_requests, 1);
        }
        let policy = self.retry_policy();
        if let Some(code) = plan.fatal.clone() {
            if let Err(err) = &result {
                if self.logged_causes.insert(code.clone()) {
                    let what = err.to_string();
                    warn!(
                        "Kinesis refused PutRecords: {}; {}. Dropping the {} events of this request; no retry",
                        what.trim_end_matches('.'),
                        self.sink.fix_hint(err),
                        lease.len()
                    );
                } else {
                    debug!("Kinesis refused PutRecords again ({code})");
                }
            }
            let n = self.buffer.finish(lease, |_| Fate::Gone) as u64;
            self.stats.add_dropped(DropReason::Fatal(code.clone()), n);
            self.health.observe(
                Instant::now(),
                took,
                Observation::Fatal,
                &policy,
                &mut self.rng,
            );
            return Sent::Fatal(code);
        }
        // 5. Settle: the events of every resent record go back, the rest are delivered.
        let settled = outcome::settle(
            &plan,
            built
                .iter()
                .map(|b| (&b.events[..], b.data_len + b.partition_key.len())),
            lease.len(),
        );
        if settled.unconfirmed {
            for (e, f) in lease.events_mut().iter_mut().zip(&settled.fates) {
                e.unconfirmed = *f == Fate::Resend;
            }
        }
        let (records_ok, bytes_ok, resend_events) =
            (settled.records_ok, settled.bytes_ok, settled.resent);
        let fates = settled.fates;
        let delivered = self.buffer.finish(lease, |i| fates[i]) as u64;
        Stats::add(&stats.delivered, delivered);
        Stats::add(&stats.records_sent, records_ok);
        Stats::add(&stats.bytes_sent, bytes_ok);
        Stats::add(&stats.throttled, plan.throttled as u64);
        self.pace_to_the_stream(&result, bytes_ok as usize, plan.throttled, built.len());
        // 6. Health.
        let what = if resend_events == 0 {
            Observation::Ok
        } else if cut && (!small || took < self.settings.pacing.max_added / 2) {
            // A large request cut at the budget was long, not refused; one cut right after
            // it started says nothing of Kinesis either.
            Observation::Cut
        } else if records_ok > 0 || plan.throttled == plan.resend.len() {
            // Some accepted, or all refused for throughput: Kinesis answers, the stream is
            // busy. Throttling is not an outage: the send rate (`congestion`) paces it.
            debug!(
                "PutRecords: {resend_events} events to resend ({} throttled)",
                plan.throttled
            );
            Observation::Partial
        } else {
            debug!("PutRecords: {resend_events} events to resend ({result:?})");
            Observation::Retry
        };
        let timed_out = matches!(
            result,
            Err(RequestError::Timeout(_) | RequestError::Abandoned)
        );
        let seen = health::latency_seen(took, timed_out);
        // Only a small request's time says how Kinesis answers.
        let budget = self.settings.pacing.max_added;
        let trouble = match (small, cut) {
            (true, _) => health::diagnose(&result, took, budget),
            (false, true) => None,
            (false, false) => health::diagnose(&result, Duration::ZERO, budget),
        };
        let change =
            self.health
                .observe_sized(Instant::now(), seen, bytes, what, &policy, &mut self.rng);
        self.stats
            .struggling
            .store(self.health.struggling(), Relaxed);
        // One line per episode: its kind of trouble when it starts, and its end.
        let recovered =
            if matches!(what, Observation::Ok | Observation::Partial) && trouble.is_none() {
                !std::mem::take(&mut self.trouble_logged).is_empty()
            } else {
                self.log_trouble(trouble);
                false
            };
        match change {
            Some(Change::StartedStruggling) if !self.trouble_logged.is_empty() => {}
            Some(Change::StartedStruggling) => {
                let cause = match &result {
                    Err(e) => e.to_string(),
                    Ok(_) => "records throttled".into(),
                };
                warn!(
                    "Kinesis is not accepting records ({cause}); {} events stay buffered: one-record probes go out while functions run (and one invocation in 20 spends up to the added-time budget on one), and SHUTDOWN drains",
                    self.buffer.held()
                );
            }
            Some(Change::Recovered) => info!("Kinesis accepts records again; delivery resumed"),
            None if recovered => info!("Kinesis accepts records again; delivery resumed"),
            None => {}
        }
        if cut {
            Sent::Cut
        } else if resend_events == 0 {
            Sent::Delivered
        } else {
            Sent::Partly
        }
    }
}
