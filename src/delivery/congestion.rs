//! Throttle-aware pacing for the stream: the rate this environment sends at, in the spirit of
//! TCP's congestion control and the KPL's per-shard rate limiter.
//!
//! Many environments of one function write to the same shards, each unaware of the others.
//! Without a limit, an environment whose records come back throttled resends whole requests
//! into shards that are already full (the throttled bytes are paid for in CPU, signed, base64
//! encoded and, in a VPC, in NAT-gateway traffic). So:
//!
//! - Not limited until Kinesis throttles a record while this environment has been writing
//!   in earnest: at least [`MIN_MEASURED_BYTES`] accepted over the last second. A few records
//!   throttled with little accepted say nothing of a rate (they wait a base backoff, as any
//!   resend).
//! - Throttled: the send rate drops to a fraction ([`DECREASE`]) of what Kinesis accepted
//!   from this environment over the last second (at least [`MIN_BYTES_PER_SEC`]), with a
//!   random spread of ±[`JITTER`] so that environments do not move in lockstep.
//! - While answers come back with nothing throttled the rate rises gently, by [`INCREASE`] of
//!   it a second (at least [`MIN_INCREASE`] a second, in proportion to the time since the last
//!   raise: how often requests go does not change how fast it climbs); past what nothing ever
//!   limited ([`UNLIMITED_ABOVE`]), or after [`QUIET`] with nothing throttled, the limit is
//!   lifted.
//! - A token bucket of a second's worth (at least [`MIN_BURST_BYTES`]) spaces and sizes
//!   requests: while the rate is limited, the next request waits until the bucket holds
//!   what is queued (at most a second's worth) and carries at most the tokens there are
//!   (never less than one record). Throttled records are resent no sooner than the rate
//!   allows, and requests go about once a second, few and full, so few invocations of a busy
//!   function have a request in flight when they return (each costs one request's latency).
//!
//! Pure: the caller passes the time and the random draw; nothing here does I/O.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Throttled: the new rate is this share of what Kinesis accepted over the last second.
pub const DECREASE: f64 = 0.7;
/// Every fully accepted answer raises the rate by this share ...
pub const INCREASE: f64 = 0.1;
/// ... and at least this many bytes a second, each second.
pub const MIN_INCREASE: f64 = 32.0 * 1024.0;
/// Never below this (a sixteenth of a shard): a small request waits a fraction of a second,
/// a full record under half a second, however little got through.
pub const MIN_BYTES_PER_SEC: f64 = 64.0 * 1024.0;
/// Throttling starts a limit only with at least this much accepted over the last second.
pub const MIN_MEASURED_BYTES: usize = 128 << 10;
/// This long without a throttled record lifts the limit.
pub const QUIET: Duration = Duration::from_secs(5);
/// A rate above this (10 shards' worth) is no limit at all.
pub const UNLIMITED_ABOVE: f64 = 10.0 * 1024.0 * 1024.0;
/// Random spread of a new rate (±).
pub const JITTER: f64 = 0.1;
/// The accepted rate is measured over this long.
const ACCEPTED_WINDOW: Duration = Duration::from_secs(1);
/// The bucket holds this much of the rate's worth ...
pub const BURST: Duration = Duration::from_secs(1);
/// ... and at least this many bytes (a full packed record fits).
pub const MIN_BURST_BYTES: f64 = 32.0 * 1024.0;

/// The most tokens the bucket holds at `rate` (pure).
fn burst(rate: f64) -> f64 {
    (rate * BURST.as_secs_f64()).max(MIN_BURST_BYTES)
}

/// The stream's send rate and its token bucket.
#[derive(Debug, Clone, Default)]
pub struct Congestion {
    /// Bytes per second this environment may send; `None`: no limit.
    rate: Option<f64>,
    /// Bytes that may be sent now (at most a [`BURST`]'s worth).
    tokens: f64,
    refilled: Option<Instant>,
    /// (when, bytes accepted), over the last [`ACCEPTED_WINDOW`].
    accepted: VecDeque<(Instant, usize)>,
    /// When the rate was last set or raised.
    raised: Option<Instant>,
    /// When a record was last throttled.
    throttled_at: Option<Instant>,
    /// The last answer refused every record for throughput.
    refusing: bool,
}

/// What one answer was, for the rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Answer {
    /// Bytes of the records Kinesis accepted.
    pub accepted_bytes: usize,
    /// Records it throttled.
    pub throttled: usize,
}

impl Congestion {
    /// The current limit in bytes per second; `None` when not limited.
    pub fn rate(&self) -> Option<f64> {
        self.rate
    }

    /// The stream is at its write limit: the rate is limited, or the last answer throttled
    /// every record (nothing got through to measure a rate by).
    pub fn at_limit(&self) -> bool {
        self.rate.is_some() || self.refusing
    }

    /// The tokens at `now` (the bucket refills at the rate, up to a [`BURST`]'s worth).
    fn tokens_at(&self, now: Instant) -> f64 {
        match self.rate {
            Some(rate) => {
                let since = self
                    .refilled
                    .map_or(Duration::ZERO, |t| now.saturating_duration_since(t));
                (self.tokens + rate * since.as_secs_f64()).min(burst(rate))
            }
            None => 0.0,
        }
    }

    fn refill(&mut self, now: Instant) {
        self.tokens = self.tokens_at(now);
        self.refilled = Some(now);
    }

    /// The most bytes the next request may carry now (`None`: no limit). The caller sends
    /// it only once [`Congestion::wait`] allows, so it is never less than a record's worth.
    pub fn allowance(&self, now: Instant) -> Option<usize> {
        self.rate.map(|_| self.tokens_at(now).max(0.0) as usize)
    }

    /// When a request of `bytes` may go (`None`: now).
    pub fn wait(&self, now: Instant, bytes: usize) -> Option<Instant> {
        let rate = self.rate?;
        // A request larger than the bucket goes once the bucket is full.
        let need = (bytes as f64).min(burst(rate)) - self.tokens_at(now);
        (need > 0.0).then(|| now + Duration::from_secs_f64(need / rate))
    }

    /// A request of `bytes` was sent.
    pub fn sent(&mut self, now: Instant, bytes: usize) {
        self.refill(now);
        if self.rate.is_some() {
            self.tokens -= bytes as f64;
        }
    }

    /// Takes an answer into account. `jitter` is a draw in `[0, 1)`. Returns true when this
    /// answer started limiting the rate (worth a log line).
    pub fn answered(&mut self, now: Instant, a: Answer, jitter: f64) -> bool {
        self.accepted.push_back((now, a.accepted_bytes));
        while self
            .accepted
            .front()
            .is_some_and(|(t, _)| now.saturating_duration_since(*t) > ACCEPTED_WINDOW)
        {
            self.accepted.pop_front();
        }
        let accepted: usize = self.accepted.iter().map(|(_, b)| *b).sum();
        if a.throttled > 0 {
            self.throttled_at = Some(now);
        }
        self.refusing = a.throttled > 0 && a.accepted_bytes == 0;
        if a.throttled > 0 && self.rate.is_none() && accepted < MIN_MEASURED_BYTES {
            return false;
        }
        let started = self.rate.is_none() && a.throttled > 0;
        if a.throttled > 0 {
            let measured = accepted as f64 / ACCEPTED_WINDOW.as_secs_f64();
            let from = match self.rate {
                Some(r) => r.min(measured.max(MIN_BYTES_PER_SEC)),
                None => measured,
            };
            let spread = 1.0 + JITTER * (2.0 * jitter - 1.0);
            let rate = (from * DECREASE * spread).max(MIN_BYTES_PER_SEC);
            self.refill(now);
            self.rate = Some(rate);
            self.tokens = self.tokens.min(0.0);
            self.raised = Some(now);
        } else if let Some(r) = self.rate {
            let since = self
                .raised
                .map_or(Duration::ZERO, |t| now.saturating_duration_since(t))
                .as_secs_f64();
            self.refill(now);
            let raised = r + (r * INCREASE).max(MIN_INCREASE) * since;
            let quiet = self
                .throttled_at
                .is_some_and(|t| now.saturating_duration_since(t) >= QUIET);
            self.rate = (raised <= UNLIMITED_ABOVE && !quiet).then_some(raised);
            self.raised = Some(now);
        }
        started
    }
}

#[cfg(test)]
mod tests;
