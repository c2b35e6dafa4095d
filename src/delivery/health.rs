//! How Kinesis is doing, as the flusher has seen it: consecutive failures, the backoff before
//! the next attempt, whether it is "struggling" (then each invocation makes a single probe
//! request), and how long requests take (so a request that cannot finish in what is left of
//! a window is not started).
//!
//! [`Health::observe`] is a pure state transition over an observation; it returns the
//! [`Change`] worth one log line, so each episode is logged once. The backoff draw is the
//! only randomness and comes from the caller's generator.
//!
//! Health steers pacing: while the last attempt failed ([`Health::failing`]) or Kinesis
//! answers slower than the added-time budget, no invocation is held, and a request is made
//! only in time the function runs anyway. Connects are bounded by the connects seen
//! ([`Health::connect_timeout`]), not by a fixed second, and [`diagnose`] names what kind of
//! trouble a failure is (unreachable, hanging, slow) for the one log line of its episode.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::delivery::outcome::{Outcome, Settlement};
use crate::delivery::timeline::MIN_REQUEST_TIME;
use crate::kinesis::{RequestError, TimeoutPhase};
use crate::rng::Rng;

/// Latency samples older than this no longer count: after a slow spell the next window may
/// try again.
pub const LATENCY_MEMORY: Duration = Duration::from_secs(60);
/// How many recent latencies the estimate looks at.
const LATENCY_SAMPLES: usize = 5;
/// Requests up to this size say how fast Kinesis answers; larger ones take longer by their
/// size (transfer, signing, base64) and teach the throughput instead.
pub const SMALL_REQUEST_BYTES: usize = 256 << 10;
/// Large-request throughput samples remembered.
const THROUGHPUT_SAMPLES: usize = 5;
/// A connect may take this many times the slowest recent one ...
const CONNECT_FACTOR: u32 = 4;
/// ... and never less than this (a loaded host's scheduler jitter; an in-region connect
/// takes a millisecond or two).
pub const MIN_CONNECT_TIMEOUT: Duration = Duration::from_millis(25);

/// The latency a request teaches (pure): how long it took, or, when it timed out, a quarter
/// more, since all a timeout says is "longer than this": a window no longer than the one it
/// was cut short by does not start the same doomed request again.
pub fn latency_seen(took: Duration, timed_out: bool) -> Duration {
    if timed_out {
        took + took / 4
    } else {
        took
    }
}

/// What one request's answer says about Kinesis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Observation {
    /// Every record delivered.
    Ok,
    /// Some records were accepted, or every one refused was throttled: Kinesis is up, the
    /// stream is busy. Not a failure (pacing goes on, at the stream's send rate); the rest
    /// waits a base backoff.
    Partial,
    /// Nothing was accepted: every record must be resent (throttled, 5xx, connection
    /// error, timeout).
    Retry,
    /// Kinesis refused the request for good (the records are dropped).
    Fatal,
    /// A large request cut at the added-time budget: it says the request was long, not that
    /// Kinesis fails (a small one cut is a [`Observation::Retry`]: Kinesis hangs).
    Cut,
}

/// What a request's answer says about Kinesis (pure): its `outcome`, how its events
/// `settled`; `cut`: its window ended it ([`ended_by_window`]), `took` after it started;
/// `small`: at most [`SMALL_REQUEST_BYTES`].
pub fn observation(
    outcome: &Outcome,
    settled: &Settlement,
    cut: bool,
    small: bool,
    took: Duration,
    budget: Duration,
) -> Observation {
    if settled.resent == 0 {
        Observation::Ok
    } else if cut && (!small || took < budget / 2) {
        // A large request its window ended was long, not refused; one cut right after it
        // started says nothing of Kinesis either.
        Observation::Cut
    } else if settled.records_ok > 0 || outcome.throttled == outcome.resend.len() {
        // Some accepted, or all refused for throughput: Kinesis answers, the stream is busy.
        // Throttling is not an outage: the send rate (`congestion`) paces it.
        Observation::Partial
    } else {
        Observation::Retry
    }
}

/// A change worth one log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Attempts used up: Kinesis is not accepting records.
    StartedStruggling,
    /// Kinesis accepts records again.
    Recovered,
}

/// Retry settings the health needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub backoff_base: Duration,
    pub backoff_max: Duration,
}

#[derive(Debug, Clone, Default)]
pub struct Health {
    /// Consecutive attempts that left records to resend.
    failures: u32,
    struggling: bool,
    /// No attempt before this.
    backoff_until: Option<Instant>,
    /// The base backoff after the last failed attempt, however far the backoff has grown:
    /// what an invocation's probe (while struggling) and SHUTDOWN's last sends wait.
    probe_from: Option<Instant>,
    /// (when observed, how long a small request took), newest last.
    latencies: VecDeque<(Instant, Duration)>,
    /// (when observed, bytes per second of a large request), newest last.
    throughputs: VecDeque<(Instant, f64)>,
    /// (when observed, how long a TCP connect took), newest last.
    connects: VecDeque<(Instant, Duration)>,
}

/// What kind of trouble a failed or slow request shows (for the log line of its episode).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trouble {
    /// No connection: the reason (connect timed out, connection refused, name not resolved).
    Unreachable(String),
    /// Connected, but no answer came in the time allowed (or the request was cut).
    Hanging,
    /// Answered, slower than the added-time budget allows (how long it took).
    Slow(Duration),
    /// The credentials to sign with could not be fetched (which endpoint, and why).
    Credentials(String),
}

impl Trouble {
    /// Same kind of trouble (one log line per kind and episode).
    pub fn same_kind(&self, other: &Trouble) -> bool {
        std::mem::discriminant(self) == std::mem::discriminant(other)
    }
}

/// Whether a request ended because its window did, not because of anything Kinesis did
/// (pure): cut in flight at the added-time budget (`Abandoned`), or timed out after it
/// connected when its `timeout` was what was left of its window, shorter than
/// `KINESIS_TELEMETRY_REQUEST_TIMEOUT_MS` (`request_timeout`). Such a request shows only that
/// Kinesis needed more than the window left: see [`observation`] and [`window_trouble`].
pub fn ended_by_window<T>(
    result: &Result<T, RequestError>,
    timeout: Duration,
    request_timeout: Duration,
) -> bool {
    match result {
        Err(RequestError::Abandoned) => true,
        Err(RequestError::Timeout(TimeoutPhase::Connect)) => false,
        Err(RequestError::Timeout(_)) => timeout < request_timeout,
        _ => false,
    }
}

/// The trouble a request its window ended shows (pure): hanging only if it had a good part
/// of the budget (the flusher may have started it late for other reasons, and then its end
/// says nothing of Kinesis).
pub fn window_trouble(took: Duration, budget: Duration) -> Option<Trouble> {
    (took >= budget / 2).then_some(Trouble::Hanging)
}

/// What kind of trouble a request's outcome shows (pure); `None` when it shows none of these
/// (delivered in time, or refused or throttled by a Kinesis that answers).
pub fn diagnose<T>(
    result: &Result<T, RequestError>,
    took: Duration,
    budget: Duration,
) -> Option<Trouble> {
    match result {
        Err(RequestError::Timeout(TimeoutPhase::Connect)) => {
            Some(Trouble::Unreachable("connect timed out".into()))
        }
        Err(RequestError::Connect(detail)) => {
            let d = detail.to_ascii_lowercase();
            let why = if d.contains("refused") {
                "connection refused"
            } else if d.contains("not found") || d.contains("resolve") || d.contains("lookup") {
                "name not resolved"
            } else {
                "no route to the endpoint"
            };
            Some(Trouble::Unreachable(format!("{why}: {detail}")))
        }
        Err(RequestError::Timeout(_)) => Some(Trouble::Hanging),
        Err(RequestError::Credentials(why)) => Some(Trouble::Credentials(why.clone())),
        Err(RequestError::Abandoned) => window_trouble(took, budget),
        Ok(_) if took > budget => Some(Trouble::Slow(took)),
        _ => None,
    }
}

/// Delay before retry number `attempt` (0 for the first retry): exponential
/// backoff with full jitter, uniform in `0..=min(cap, base * 2^attempt)`.
/// Saturates instead of overflowing for any `attempt`, `base` and `cap`.
pub fn backoff(attempt: u32, base: Duration, cap: Duration, rng: &mut Rng) -> Duration {
    let growth = 1u128.checked_shl(attempt).unwrap_or(u128::MAX);
    let ceiling = base
        .as_nanos()
        .saturating_mul(growth)
        .min(cap.as_nanos())
        .min(u128::from(u64::MAX)) as u64;
    Duration::from_nanos(rng.below(ceiling.saturating_add(1)).min(ceiling))
}

impl Health {
    pub fn struggling(&self) -> bool {
        self.struggling
    }

    /// The last attempt failed (records to resend, or no connection).
    pub fn failing(&self) -> bool {
        self.failures > 0
    }

    /// Whether an invocation may be held: the last attempt did not fail and requests are
    /// expected to finish within the added-time budget.
    pub fn fit_to_hold(&self, now: Instant, budget: Duration) -> bool {
        !self.unhealthy(now, budget)
    }

    /// Failing, or answering slower than the added-time budget: an invocation's time is not
    /// spent on Kinesis.
    pub fn unhealthy(&self, now: Instant, budget: Duration) -> bool {
        self.failing() || self.time_needed(now) > budget
    }

    /// Notes how long a TCP connect took.
    pub fn connected(&mut self, now: Instant, took: Duration) {
        if self.connects.len() >= LATENCY_SAMPLES {
            self.connects.pop_front();
        }
        self.connects.push_back((now, took));
    }

    /// The connect timeout: a few times the slowest recent connect, at least
    /// [`MIN_CONNECT_TIMEOUT`], at most `configured`; `configured` with none seen.
    pub fn connect_timeout(&self, now: Instant, configured: Duration) -> Duration {
        self.connects
            .iter()
            .filter(|(at, _)| now.saturating_duration_since(*at) < LATENCY_MEMORY)
            .map(|(_, d)| *d)
            .max()
            .map_or(configured, |d| {
                (d * CONNECT_FACTOR)
                    .max(MIN_CONNECT_TIMEOUT)
                    .min(configured)
            })
    }

    pub fn backoff_until(&self, now: Instant) -> Option<Instant> {
        self.backoff_until.filter(|t| *t > now)
    }

    /// No probe (or last send at SHUTDOWN) before this; `None`: now.
    pub fn probe_from(&self, now: Instant) -> Option<Instant> {
        self.probe_from.filter(|t| *t > now)
    }

    /// How long the next request should be expected to take: the slowest of the recent
    /// ones (a timeout as [`latency_seen`] has it). `None` with no recent sample.
    pub fn expected_latency(&self, now: Instant) -> Option<Duration> {
        self.latencies
            .iter()
            .filter(|(at, _)| now.saturating_duration_since(*at) < LATENCY_MEMORY)
            .map(|(_, d)| *d)
            .max()
    }

    /// Bytes per second a large request can be counted on to move: the slowest recent one;
    /// `None` with no recent sample.
    pub fn throughput(&self, now: Instant) -> Option<f64> {
        self.throughputs
            .iter()
            .filter(|(at, _)| now.saturating_duration_since(*at) < LATENCY_MEMORY)
            .map(|(_, r)| *r)
            .reduce(f64::min)
    }

    /// The most bytes a request should carry to finish within `left` (pure): all of them
    /// with nothing known or time to spare; otherwise what half of `left` moves at the
    /// observed throughput, at least a small request's worth.
    pub fn bytes_within(&self, now: Instant, left: Duration) -> Option<usize> {
        let rate = self.throughput(now)?;
        let after_latency = left.saturating_sub(self.time_needed(now));
        Some(((after_latency.as_secs_f64() / 2.0 * rate) as usize).max(SMALL_REQUEST_BYTES))
    }

    /// The least time a window must have left for a request to be started.
    pub fn time_needed(&self, now: Instant) -> Duration {
        self.expected_latency(now)
            .unwrap_or(MIN_REQUEST_TIME)
            .max(MIN_REQUEST_TIME)
    }

    /// Takes one small request's outcome into account (pure apart from the backoff draw).
    pub fn observe(
        &mut self,
        now: Instant,
        took: Duration,
        what: Observation,
        policy: &RetryPolicy,
        rng: &mut Rng,
    ) -> Option<Change> {
        self.observe_sized(now, took, 0, what, policy, rng)
    }

    /// Takes one request of `bytes` into account: a small one teaches the latency, a large
    /// one the throughput (see [`SMALL_REQUEST_BYTES`]).
    pub fn observe_sized(
        &mut self,
        now: Instant,
        took: Duration,
        bytes: usize,
        what: Observation,
        policy: &RetryPolicy,
        rng: &mut Rng,
    ) -> Option<Change> {
        if bytes <= SMALL_REQUEST_BYTES {
            if self.latencies.len() >= LATENCY_SAMPLES {
                self.latencies.pop_front();
            }
            self.latencies.push_back((now, took));
        } else if what != Observation::Retry && what != Observation::Cut {
            if self.throughputs.len() >= THROUGHPUT_SAMPLES {
                self.throughputs.pop_front();
            }
            let secs = took.as_secs_f64().max(1e-3);
            self.throughputs.push_back((now, bytes as f64 / secs));
        }
        match what {
            Observation::Cut => None,
            Observation::Ok => {
                self.failures = 0;
                self.backoff_until = None;
                self.probe_from = None;
                let was = std::mem::replace(&mut self.struggling, false);
                was.then_some(Change::Recovered)
            }
            Observation::Fatal => {
                self.backoff_until = None;
                self.probe_from = None;
                None
            }
            Observation::Partial => {
                self.failures = 0;
                let wait = backoff(0, policy.backoff_base, policy.backoff_max, rng);
                self.backoff_until = Some(now + wait);
                // SHUTDOWN's drain spaces its resends by this too (a busy stream is not
                // hammered in the last window).
                self.probe_from = Some(now + wait);
                let was = std::mem::replace(&mut self.struggling, false);
                was.then_some(Change::Recovered)
            }
            Observation::Retry => {
                self.failures = self.failures.saturating_add(1);
                let wait = backoff(
                    self.failures - 1,
                    policy.backoff_base,
                    policy.backoff_max,
                    rng,
                );
                self.backoff_until = Some(now + wait);
                self.probe_from = Some(now + policy.backoff_base.min(wait));
                if self.failures >= policy.max_attempts && !self.struggling {
                    self.struggling = true;
                    return Some(Change::StartedStruggling);
                }
                None
            }
        }
    }
}

#[cfg(test)]
mod tests;
