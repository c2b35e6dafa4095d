//! How Kinesis is doing, as the flusher has seen it: consecutive failures, the backoff before
//! the next attempt, whether it is "struggling" (then each invocation makes a single probe
//! request), and how long requests take (so a request that cannot finish in what is left of
//! a window is not started).
//!
//! [`Health::observe`] is a pure state transition over an observation; it returns the
//! [`Change`] worth one log line, so each episode is logged once. The backoff draw is the
//! only randomness and comes from the caller's generator.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::retry;
use crate::rng::Rng;

/// Do not start a Kinesis request with less time than this left, whatever the estimate.
pub const MIN_REQUEST_TIME: Duration = Duration::from_millis(10);
/// Latency samples older than this no longer count: after a slow spell the next window may
/// try again.
pub const LATENCY_MEMORY: Duration = Duration::from_secs(60);
/// How many recent latencies the estimate looks at.
const LATENCY_SAMPLES: usize = 5;

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
    /// Some or all records must be resent (throttled, 5xx, connection error, timeout).
    Retry,
    /// Kinesis refused the request for good (the records are dropped).
    Fatal,
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
    /// (when observed, how long the request took), newest last.
    latencies: VecDeque<(Instant, Duration)>,
}

impl Health {
    pub fn struggling(&self) -> bool {
        self.struggling
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

    /// The least time a window must have left for a request to be started.
    pub fn time_needed(&self, now: Instant) -> Duration {
        self.expected_latency(now)
            .unwrap_or(MIN_REQUEST_TIME)
            .max(MIN_REQUEST_TIME)
    }

    /// Takes one request's outcome into account (pure apart from the backoff draw).
    pub fn observe(
        &mut self,
        now: Instant,
        took: Duration,
        what: Observation,
        policy: &RetryPolicy,
        rng: &mut Rng,
    ) -> Option<Change> {
        if self.latencies.len() >= LATENCY_SAMPLES {
            self.latencies.pop_front();
        }
        self.latencies.push_back((now, took));
        match what {
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
