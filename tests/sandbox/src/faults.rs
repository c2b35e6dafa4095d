//! The mock Kinesis' fault switches for a session, and the outage that follows the
//! workload.
//!
//! Faults that a test asserts "actually hit" must not depend on timing: how many requests
//! and records the extension sends depends on how events happen to be batched, so a
//! fraction of them may be none at all. The scripted counts ([`Faults::fail_first_requests`],
//! [`Faults::throttle_first_records`]) always hit: the extension must resend until what was
//! refused is delivered. An outage can likewise end by a condition instead of a clock:
//! [`Outage::Invocations`] lasts from one invocation's start to another's, however long the
//! machine takes to run them.

use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use super::pass;
use kte_test_support::fake_kinesis::{KinesisFault, KinesisHandle};

/// Longer than any session: an outage ended by a condition is scripted as this long, then
/// cut short.
const UNTIL_ENDED: Duration = Duration::from_secs(24 * 3600);
/// Status of every request during an outage.
const OUTAGE_STATUS: u16 = 503;

/// When Kinesis is down (every request answered 503).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outage {
    /// From `start` after the first invocation began, for `length` (wall clock: for
    /// benchmarks, not for tests).
    Timed { start: Duration, length: Duration },
    /// From the start of invocation `start` (0-based) until invocation `end` begins (or
    /// through SHUTDOWN when there is no such invocation).
    Invocations { start: usize, end: usize },
}

/// Fault switches of the mock Kinesis.
#[derive(Clone, Debug, Default)]
pub struct Faults {
    /// Fraction of records answered ProvisionedThroughputExceededException.
    pub throttle: f64,
    /// The first this many records are throttled, whatever the fraction says.
    pub throttle_first_records: u64,
    /// Fraction of requests answered 500 InternalFailure.
    pub fail_500: f64,
    /// The first this many requests are answered 500.
    pub fail_first_requests: u64,
    /// Added before every answer.
    pub latency: Duration,
    /// Fraction of requests whose connection is closed without an answer.
    pub drop_connections: f64,
    pub outage: Option<Outage>,
    /// A whole-endpoint fault from the start ([`KinesisFault`]: connects hang, no answer,
    /// latency, all 5xx, all throttled, all dropped).
    pub kinesis: Option<KinesisFault>,
    /// Seed of the fault dice.
    pub seed: u64,
}

impl Faults {
    /// Whether any switch is on.
    pub fn any(&self) -> bool {
        self.throttle > 0.0
            || self.throttle_first_records > 0
            || self.fail_500 > 0.0
            || self.fail_first_requests > 0
            || !self.latency.is_zero()
            || self.drop_connections > 0.0
            || self.outage.is_some()
            || self.kinesis.is_some()
    }
}

#[derive(Default)]
struct Window {
    began: Option<Instant>,
    ended: Option<Instant>,
}

/// Applies [`Faults`] to one mock and runs its outage. Clonable: Managed Instances workers
/// report the invocations they start.
#[derive(Clone)]
pub(super) struct FaultSwitch {
    kinesis: Option<KinesisHandle>,
    faults: Faults,
    window: Arc<Mutex<Window>>,
}

impl FaultSwitch {
    /// `kinesis`: `None` with a real endpoint (no faults to script).
    pub(super) fn new(kinesis: Option<KinesisHandle>, faults: Faults) -> Self {
        FaultSwitch {
            kinesis,
            faults,
            window: Arc::default(),
        }
    }

    /// Scripts the switches that hold from the start. `Err` when a connect fault could not
    /// be set up.
    pub(super) fn arm(&self) -> Result<(), String> {
        let (Some(k), f) = (&self.kinesis, &self.faults) else {
            return Ok(());
        };
        if f.throttle > 0.0 {
            k.throttle_fraction(f.throttle, f.seed ^ 1);
        }
        if f.throttle_first_records > 0 {
            k.throttle_next_records(f.throttle_first_records);
        }
        if f.fail_500 > 0.0 {
            k.fail_fraction_of_requests(f.fail_500, 500, f.seed ^ 2);
        }
        if f.fail_first_requests > 0 {
            k.fail_next_requests(f.fail_first_requests, 500);
        }
        if f.drop_connections > 0.0 {
            k.drop_fraction_of_requests(f.drop_connections, f.seed ^ 3);
        }
        if !f.latency.is_zero() {
            k.set_latency(f.latency);
        }
        if let Some(fault) = f.kinesis {
            k.apply(fault)
                .map_err(|e| format!("the mock Kinesis could not be made to {fault}: {e}"))?;
        }
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Window> {
        self.window.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Invocation `i` is about to start (before its INVOKE is delivered).
    pub(super) fn invocation_starts(&self, i: usize) {
        let Some(k) = &self.kinesis else { return };
        match self.faults.outage {
            Some(Outage::Timed { start, length }) if i == 0 => {
                let (k, window) = (k.clone(), self.window.clone());
                thread::spawn(move || {
                    pass(start);
                    k.outage_for(length, OUTAGE_STATUS);
                    let now = Instant::now();
                    let mut w = window.lock().unwrap_or_else(|e| e.into_inner());
                    (w.began, w.ended) = (Some(now), Some(now + length));
                });
            }
            Some(Outage::Invocations { start, end }) if start < end => {
                let mut w = self.lock();
                if i >= start && w.began.is_none() {
                    k.outage_for(UNTIL_ENDED, OUTAGE_STATUS);
                    w.began = Some(Instant::now());
                }
                if i >= end && w.began.is_some() && w.ended.is_none() {
                    // Ends the outage: the next request finds it over.
                    k.outage_for(Duration::ZERO, OUTAGE_STATUS);
                    w.ended = Some(Instant::now());
                }
            }
            _ => {}
        }
    }

    /// When Kinesis was down: (began, ended), `ended` = `until` if it was still down then.
    pub(super) fn outage_window(&self, until: Instant) -> Option<(Instant, Instant)> {
        let w = self.lock();
        w.began.map(|b| (b, w.ended.unwrap_or(until)))
    }
}
