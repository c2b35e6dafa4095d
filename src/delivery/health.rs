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

use crate::delivery::retry;
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
}

impl Trouble {
    /// Same kind of trouble (one log line per kind and episode).
    pub fn same_kind(&self, other: &Trouble) -> bool {
        std::mem::discriminant(self) == std::mem::discriminant(other)
    }
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
        // Cut at the budget: hanging only if the request itself took a good part of it (the
        // flusher may have been late for other reasons, and then the cut says nothing).
        Err(RequestError::Abandoned) if took >= budget / 2 => Some(Trouble::Hanging),
        Err(RequestError::Abandoned) => None,
        Ok(_) if took > budget => Some(Trouble::Slow(took)),
        _ => None,
    }
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
                let wait = retry::backoff(0, policy.backoff_base, policy.backoff_max, rng);
                self.backoff_until = Some(now + wait);
                // SHUTDOWN's drain spaces its resends by this too (a busy stream is not
                // hammered in the last window).
                self.probe_from = Some(now + wait);
                let was = std::mem::replace(&mut self.struggling, false);
                was.then_some(Change::Recovered)
            }
            Observation::Retry => {
                self.failures = self.failures.saturating_add(1);
                let wait = retry::backoff(
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
mod tests {
    use super::*;

    fn policy(max_attempts: u32) -> RetryPolicy {
        RetryPolicy {
            max_attempts,
            backoff_base: Duration::from_millis(100),
            backoff_max: Duration::from_secs(1),
        }
    }

    #[test]
    fn struggling_starts_after_the_attempts_and_ends_with_one_success() {
        let mut h = Health::default();
        let mut rng = Rng::seeded(1);
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        // (observation, expected change, struggling after)
        let script = [
            (Observation::Retry, None, false),
            (Observation::Retry, None, false),
            (Observation::Retry, Some(Change::StartedStruggling), true),
            (Observation::Retry, None, true),
            (Observation::Fatal, None, true),
            (Observation::Ok, Some(Change::Recovered), false),
            (Observation::Ok, None, false),
        ];
        for (i, (what, change, after)) in script.into_iter().enumerate() {
            let got = h.observe(t0, ms(5), what, &policy(3), &mut rng);
            assert_eq!(got, change, "step {i}");
            assert_eq!(h.struggling(), after, "step {i}");
        }
        assert_eq!(h.backoff_until(t0), None, "a success clears the backoff");
    }

    #[test]
    fn a_failure_sets_a_bounded_backoff() {
        let mut h = Health::default();
        let mut rng = Rng::seeded(2);
        let t0 = Instant::now();
        for _ in 0..10 {
            h.observe(
                t0,
                Duration::ZERO,
                Observation::Retry,
                &policy(100),
                &mut rng,
            );
            let until = h.backoff_until.unwrap();
            assert!(until <= t0 + Duration::from_secs(1));
        }
    }

    #[test]
    fn while_struggling_the_probe_waits_only_the_base_backoff() {
        let mut h = Health::default();
        let mut rng = Rng::seeded(4);
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        for _ in 0..8 {
            h.observe(t0, ms(5), Observation::Retry, &policy(3), &mut rng);
        }
        assert!(h.struggling());
        let probe = h.probe_from(t0).expect("spaced after the last attempt");
        assert!(probe <= t0 + ms(100), "at most the base backoff");
        assert!(
            h.backoff_until(t0).unwrap() >= probe,
            "the retries' backoff may have grown further"
        );
        assert_eq!(h.probe_from(t0 + ms(100)), None, "spacing over");
        h.observe(t0, ms(5), Observation::Ok, &policy(3), &mut rng);
        assert_eq!(h.probe_from(t0), None, "a success clears the spacing");
    }

    #[test]
    fn connects_are_bounded_by_the_connects_seen() {
        let ms = Duration::from_millis;
        let t0 = Instant::now();
        let mut h = Health::default();
        assert_eq!(h.connect_timeout(t0, ms(1_000)), ms(1_000), "none seen");
        // (connect seen, timeout after it)
        for (took, want) in [(1, 25), (20, 80), (2, 80), (400, 1_000)] {
            h.connected(t0, ms(took));
            assert_eq!(
                h.connect_timeout(t0, ms(1_000)),
                ms(want),
                "after {took} ms"
            );
        }
        assert_eq!(
            h.connect_timeout(t0 + LATENCY_MEMORY, ms(1_000)),
            ms(1_000),
            "old connects expire"
        );
    }

    #[test]
    fn only_a_healthy_and_fast_kinesis_may_hold_an_invocation() {
        let ms = Duration::from_millis;
        let t0 = Instant::now();
        let mut rng = Rng::seeded(5);
        let mut h = Health::default();
        assert!(h.fit_to_hold(t0, ms(60)), "nothing seen yet");
        h.observe(t0, ms(20), Observation::Ok, &policy(4), &mut rng);
        assert!(h.fit_to_hold(t0, ms(60)));
        h.observe(t0, ms(5), Observation::Retry, &policy(4), &mut rng);
        assert!(h.failing() && !h.fit_to_hold(t0, ms(60)), "failing");
        h.observe(t0, ms(20), Observation::Ok, &policy(4), &mut rng);
        assert!(h.fit_to_hold(t0, ms(60)), "recovered");
        h.observe(t0, ms(1_500), Observation::Ok, &policy(4), &mut rng);
        assert!(!h.fit_to_hold(t0, ms(60)), "slower than the budget");
    }

    #[test]
    fn large_requests_teach_throughput_not_slowness() {
        let ms = Duration::from_millis;
        let t0 = Instant::now();
        let mut rng = Rng::seeded(6);
        let mut h = Health::default();
        assert_eq!(h.bytes_within(t0, ms(50)), None, "nothing known: no cap");
        // A 5 MB request in 100 ms: 50 MB/s, and not a slow Kinesis.
        h.observe_sized(
            t0,
            ms(100),
            5_000_000,
            Observation::Ok,
            &policy(4),
            &mut rng,
        );
        h.observe_sized(t0, ms(8), 10_000, Observation::Ok, &policy(4), &mut rng);
        assert!(h.fit_to_hold(t0, ms(60)));
        assert_eq!(h.throughput(t0), Some(50_000_000.0));
        // 50 ms left, 10 ms latency: 40 ms / 2 at 50 MB/s.
        assert_eq!(h.bytes_within(t0, ms(50)), Some(1_000_000));
        assert_eq!(
            h.bytes_within(t0, ms(5)),
            Some(SMALL_REQUEST_BYTES),
            "at least a small one"
        );
        // A large request cut at the budget changes nothing.
        h.observe_sized(
            t0,
            ms(60),
            5_000_000,
            Observation::Cut,
            &policy(4),
            &mut rng,
        );
        assert!(!h.failing() && h.fit_to_hold(t0, ms(60)));
        assert_eq!(h.throughput(t0), Some(50_000_000.0));
    }

    #[test]
    fn troubles_are_named_by_what_failed() {
        let ms = Duration::from_millis;
        let budget = ms(60);
        let err = |e: RequestError| -> Result<(), RequestError> { Err(e) };
        let unreachable = |r: &Result<(), RequestError>| match diagnose(r, ms(5), budget) {
            Some(Trouble::Unreachable(why)) => why,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            unreachable(&err(RequestError::Timeout(TimeoutPhase::Connect))),
            "connect timed out"
        );
        assert!(unreachable(&err(RequestError::Connect(
            "Connection refused (os error 111)".into()
        )))
        .starts_with("connection refused"));
        assert!(
            unreachable(&err(RequestError::Connect("host not found".into())))
                .starts_with("name not resolved")
        );
        assert_eq!(
            diagnose(
                &err(RequestError::Timeout(TimeoutPhase::Receive)),
                ms(5),
                budget
            ),
            Some(Trouble::Hanging)
        );
        assert_eq!(
            diagnose(&err(RequestError::Abandoned), ms(55), budget),
            Some(Trouble::Hanging),
            "cut after most of the budget"
        );
        assert_eq!(
            diagnose(&err(RequestError::Abandoned), ms(3), budget),
            None,
            "cut right after it started: it says nothing of Kinesis"
        );
        assert_eq!(diagnose(&Ok::<(), RequestError>(()), ms(40), budget), None);
        assert_eq!(
            diagnose(&Ok::<(), RequestError>(()), ms(1_500), budget),
            Some(Trouble::Slow(ms(1_500)))
        );
        let throttled = RequestError::Http {
            status: 400,
            code: "ProvisionedThroughputExceededException".into(),
            message: String::new(),
        };
        assert_eq!(
            diagnose(&err(throttled), ms(5), budget),
            None,
            "Kinesis answers"
        );
    }

    #[test]
    fn a_timeout_teaches_more_than_it_lasted() {
        let ms = Duration::from_millis;
        assert_eq!(latency_seen(ms(40), false), ms(40));
        assert_eq!(latency_seen(ms(800), true), ms(1_000));
        assert_eq!(latency_seen(Duration::ZERO, true), Duration::ZERO);
    }

    #[test]
    fn the_latency_estimate_is_the_slowest_recent_request_and_forgets() {
        let mut h = Health::default();
        let mut rng = Rng::seeded(3);
        let t0 = Instant::now();
        assert_eq!(h.expected_latency(t0), None);
        assert_eq!(h.time_needed(t0), MIN_REQUEST_TIME);
        let ms = Duration::from_millis;
        for took in [20, 1_500, 30] {
            h.observe(t0, ms(took), Observation::Ok, &policy(4), &mut rng);
        }
        assert_eq!(h.expected_latency(t0), Some(ms(1_500)));
        for _ in 0..LATENCY_SAMPLES {
            h.observe(t0, ms(40), Observation::Ok, &policy(4), &mut rng);
        }
        assert_eq!(h.expected_latency(t0), Some(ms(40)), "only the recent ones");
        let later = t0 + LATENCY_MEMORY;
        assert_eq!(h.expected_latency(later), None, "old samples expire");
    }
}
