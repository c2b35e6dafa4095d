//! When to send: whether an invocation is *held* (its window stays open until its
//! `platform.runtimeDone` is in the stream) and when buffered telemetry is *due* in a window
//! that is not held. Pure decisions with the history they need; the flusher acts on them.
//!
//! Strategies (`KINESIS_TELEMETRY_FLUSH_STRATEGY`):
//! - `end`: hold every invocation.
//! - `background`: never hold; send what is due while the function runs.
//! - `adaptive` (default): hold when not holding would break the freshness budget or lose
//!   data, otherwise background. Holding is what keeps the promise when invocations are
//!   sparser than the budget (the next window would come too late), when the buffer is
//!   under pressure (the last invocation brought a large share of the cap, or it is past
//!   its high-water mark), and for the first invocations, before there is history to judge.
//!
//! Whatever the strategy, an invocation is not held while Kinesis is failing, slow or
//! unreachable (`kinesis_fit` false: see `health`): holding would only spend the function's
//! time on a Kinesis that cannot take the data.
//!
//! What this promises users, and what it costs them: `docs/design.md` ("Pacing").
//!
//! Why holding is cheap: the runtime is still running the function when the window opens,
//! so sending then costs the invocation nothing; only the time from `runtimeDone` to
//! `/event/next` is added (the subscription's 25 ms buffering plus one PutRecords).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::store::buffer::{BufferCap, Level};

/// Invocations held while there is no history to judge the gap between invocations.
pub const WARM_UP_INVOCATIONS: usize = 3;
/// Inter-arrival times remembered.
const HISTORY: usize = 8;
/// While Kinesis is failing and functions are too short to probe in their own time, one
/// invocation in this many (and at most one every [`RECOVERY_PROBE_SPACING`]) spends up to
/// the added-time budget on a one-record probe, so that recovery is noticed while the
/// environment lives, not only at SHUTDOWN: at most 60 ms / 20 = 3 ms per invocation.
pub const RECOVERY_PROBE_EVERY: usize = 20;
pub const RECOVERY_PROBE_SPACING: Duration = Duration::from_secs(5);
/// Holds that ended without the invocation's runtimeDone, in a row, before holding stops
/// (the platform is not sending it: holding would only stretch invocations to their end).
pub const MISSED_RUNTIME_DONE_LIMIT: u32 = 2;
/// Hold when the buffer holds more than this share of its cap ...
pub const HIGH_WATER: f64 = 0.5;
/// ... or the last invocation brought more than this share of it.
pub const INVOCATION_SHARE: f64 = 0.25;

/// What recent invocations looked like.
#[derive(Debug, Clone, Default)]
pub struct History {
    invokes: VecDeque<Instant>,
    seen: usize,
    /// Bytes admitted during the last invocation (between two INVOKEs).
    pub last_invocation_bytes: usize,
    /// Held windows in a row that ended without their runtimeDone.
    pub missed_runtime_done: u32,
    /// How long recent invocations ran (INVOKE → their runtimeDone's arrival), newest last.
    runs: VecDeque<Duration>,
}

impl History {
    /// Notes an INVOKE.
    pub fn invoked(&mut self, at: Instant) {
        if self.invokes.len() > HISTORY {
            self.invokes.pop_front();
        }
        self.invokes.push_back(at);
        self.seen += 1;
    }

    /// Notes how long an invocation ran (INVOKE → its runtimeDone's arrival).
    pub fn ran(&mut self, took: Duration) {
        if self.runs.len() >= HISTORY {
            self.runs.pop_front();
        }
        self.runs.push_back(took);
    }

    /// How long an invocation can be counted on to run: the shortest recent run, less the
    /// subscription's buffering (runtimeDone arrives that much after the runtime finished).
    pub fn expected_run(&self, buffering: Duration) -> Option<Duration> {
        self.runs.iter().min().map(|d| d.saturating_sub(buffering))
    }

    /// Invocations seen so far.
    pub fn seen(&self) -> usize {
        self.seen
    }

    /// The expected time until the next INVOKE: the median of the recent gaps.
    pub fn expected_gap(&self) -> Option<Duration> {
        let mut gaps: Vec<Duration> = self
            .invokes
            .iter()
            .zip(self.invokes.iter().skip(1))
            .map(|(a, b)| b.saturating_duration_since(*a))
            .collect();
        if gaps.is_empty() {
            return None;
        }
        gaps.sort_unstable();
        Some(gaps[gaps.len() / 2])
    }
}

/// Why an invocation is held or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// `FLUSH_STRATEGY=end` / `background`.
    Configured,
    /// Too few invocations to judge yet.
    WarmingUp,
    /// Invocations come less often than the freshness budget: the next window is too late.
    Sparse,
    /// The buffer is filling: send while the function runs instead of piling up.
    Pressure,
    /// Invocations come often enough for the next window to keep the promise.
    Busy,
    /// `platform.runtimeDone` did not arrive for the last held invocations.
    NoRuntimeDone,
    /// Kinesis is failing, slow or unreachable: the function's time is not spent on it.
    Unhealthy,
    /// The stream is at its write limit: holding adds time without adding throughput.
    StreamAtLimit,
}

impl Reason {
    pub fn describe(&self) -> &'static str {
        match self {
            Reason::Configured => "as the strategy says",
            Reason::WarmingUp => "the first invocations, before there is a history to judge",
            Reason::Sparse => "invocations come less often than the freshness budget",
            Reason::Pressure => "the buffer is filling up",
            Reason::Busy => "invocations come often enough for the next one to send in time",
            Reason::NoRuntimeDone => {
                "platform.runtimeDone did not arrive for the last held invocations; holding resumes once it does"
            }
            Reason::Unhealthy => {
                "Kinesis is failing, slow or unreachable: sending only while functions run, and at SHUTDOWN"
            }
            Reason::StreamAtLimit => {
                "the stream is at its write limit: sending while functions run, at the rate it accepts"
            }
        }
    }
}

/// The decision for one invocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hold {
    pub hold: bool,
    pub reason: Reason,
}

/// Whether to hold this invocation (pure; `history` already includes its INVOKE).
/// `kinesis_fit`: the last request did not fail and requests finish within the added-time
/// budget (`Health::fit_to_hold`); `stream_limited`: records were throttled and the stream's
/// send rate is limited (`congestion`): holding would only wait for the shard.
pub fn decide(
    pacing: &Pacing,
    history: &History,
    level: &Level,
    cap: &BufferCap,
    kinesis_fit: bool,
    stream_limited: bool,
) -> Hold {
    let hold = |reason| Hold { hold: true, reason };
    let background = |reason| Hold {
        hold: false,
        reason,
    };
    if pacing.strategy == Strategy::Background {
        return background(Reason::Configured);
    }
    if !kinesis_fit {
        return background(Reason::Unhealthy);
    }
    if stream_limited {
        return background(Reason::StreamAtLimit);
    }
    if history.missed_runtime_done >= MISSED_RUNTIME_DONE_LIMIT {
        return background(Reason::NoRuntimeDone);
    }
    if pacing.strategy == Strategy::End {
        return hold(Reason::Configured);
    }
    let share = |bytes: usize| bytes as f64 / cap.max_bytes.max(1) as f64;
    let events_share = level.queued as f64 / cap.max_events.max(1) as f64;
    if share(level.bytes) > HIGH_WATER
        || events_share > HIGH_WATER
        || share(history.last_invocation_bytes) > INVOCATION_SHARE
    {
        return hold(Reason::Pressure);
    }
    if history.seen() < WARM_UP_INVOCATIONS {
        return hold(Reason::WarmingUp);
    }
    match history.expected_gap() {
        Some(gap) if gap < pacing.freshness => background(Reason::Busy),
        _ => hold(Reason::Sparse),
    }
}

/// Whether this invocation may spend up to the added-time budget on a recovery probe (pure):
/// Kinesis is failing, and since the last request there were at least
/// [`RECOVERY_PROBE_EVERY`] invocations and [`RECOVERY_PROBE_SPACING`].
pub fn recovery_probe_due(failing: bool, invocations_since: usize, since: Duration) -> bool {
    failing && invocations_since >= RECOVERY_PROBE_EVERY && since >= RECOVERY_PROBE_SPACING
}

/// Whether buffered telemetry is due in a window that is not held (pure): enough events or
/// bytes for a full request, or the oldest would be past the freshness budget by the next
/// window (`gap`: the expected time until it; half the budget when unknown).
pub fn is_due(level: &Level, now: Instant, gap: Option<Duration>, pacing: &Pacing) -> bool {
    if level.queued == 0 && level.spilled == 0 {
        return false;
    }
    if level.queued >= pacing.flush_events || level.bytes >= pacing.flush_bytes {
        return true;
    }
    if level.spilled > 0 {
        return true;
    }
    let age = level
        .oldest
        .map_or(Duration::ZERO, |t| now.saturating_duration_since(t));
    let ahead = gap.unwrap_or(pacing.freshness / 2);
    age + ahead >= pacing.freshness
}

/// When to send during an invocation (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// Hold an invocation only when not holding would break the freshness promise or lose data.
    Adaptive,
    /// Hold every invocation until its `platform.runtimeDone` is in the stream.
    End,
    /// Never hold: send what is due while the function runs.
    Background,
}

impl Strategy {
    /// The name `KINESIS_TELEMETRY_FLUSH_STRATEGY` uses.
    pub const fn name(&self) -> &'static str {
        match self {
            Strategy::Adaptive => "adaptive",
            Strategy::End => "end",
            Strategy::Background => "background",
        }
    }
}

/// Pacing settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Pacing {
    pub strategy: Strategy,
    /// The freshness budget: emit → in the stream, that `adaptive` keeps.
    pub freshness: Duration,
    /// A send is due once this many events are buffered ...
    pub flush_events: usize,
    /// ... or this many bytes.
    pub flush_bytes: usize,
    /// The added-time budget: the most an invocation waits for the extension after its
    /// runtimeDone reached it, whatever Kinesis is doing.
    pub max_added: Duration,
}

#[cfg(test)]
mod tests;
