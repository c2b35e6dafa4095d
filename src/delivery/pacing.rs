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
mod tests {
    use super::*;

    fn pacing(strategy: Strategy) -> Pacing {
        Pacing {
            strategy,
            freshness: Duration::from_secs(1),
            flush_events: 500,
            flush_bytes: 1 << 20,
            max_added: Duration::from_millis(60),
        }
    }

    fn cap() -> BufferCap {
        BufferCap {
            max_events: 100_000,
            max_bytes: 8 << 20,
        }
    }

    fn history(gaps_ms: &[u64], last_bytes: usize) -> History {
        let mut h = History::default();
        let mut t = Instant::now();
        h.invoked(t);
        for g in gaps_ms {
            t += Duration::from_millis(*g);
            h.invoked(t);
        }
        h.last_invocation_bytes = last_bytes;
        h
    }

    fn level(queued: usize, bytes: usize) -> Level {
        Level {
            queued,
            bytes,
            ..Level::default()
        }
    }

    #[test]
    fn adaptive_holds_when_not_holding_would_break_the_promise() {
        use Reason::*;
        // (strategy, gaps between INVOKEs in ms, bytes buffered, last invocation's bytes, hold, reason)
        type Case = (Strategy, &'static [u64], usize, usize, bool, Reason);
        let cases: &[Case] = &[
            (Strategy::End, &[10, 10, 10], 0, 0, true, Configured),
            (Strategy::Background, &[5_000], 0, 0, false, Configured),
            (Strategy::Background, &[10], 7 << 20, 0, false, Configured),
            (Strategy::Adaptive, &[], 0, 0, true, WarmingUp),
            (Strategy::Adaptive, &[100], 0, 0, true, WarmingUp),
            (Strategy::Adaptive, &[100, 100], 0, 0, false, Busy),
            (
                Strategy::Adaptive,
                &[2_000, 2_000, 2_000],
                0,
                0,
                true,
                Sparse,
            ),
            (Strategy::Adaptive, &[100, 100, 100, 100], 0, 0, false, Busy),
            // one long pause among many short ones: the median says busy
            (
                Strategy::Adaptive,
                &[100, 100, 60_000, 100, 100],
                0,
                0,
                false,
                Busy,
            ),
            (
                Strategy::Adaptive,
                &[1_000, 1_000, 1_000],
                0,
                0,
                true,
                Sparse,
            ),
            (Strategy::Adaptive, &[999, 999, 999], 0, 0, false, Busy),
            (
                Strategy::Adaptive,
                &[100, 100, 100],
                5 << 20,
                0,
                true,
                Pressure,
            ),
            (
                Strategy::Adaptive,
                &[100, 100, 100],
                0,
                3 << 20,
                true,
                Pressure,
            ),
            (
                Strategy::Adaptive,
                &[100, 100, 100],
                4 << 20,
                2 << 20,
                false,
                Busy,
            ),
            (Strategy::Adaptive, &[], 6 << 20, 0, true, Pressure),
        ];
        for (i, (strategy, gaps, bytes, last, want_hold, want_reason)) in cases.iter().enumerate() {
            let d = decide(
                &pacing(*strategy),
                &history(gaps, *last),
                &level(1, *bytes),
                &cap(),
                true,
                false,
            );
            assert_eq!(
                (d.hold, d.reason),
                (*want_hold, *want_reason),
                "case {i}: {strategy:?} {gaps:?} {bytes} {last}"
            );
        }
    }

    #[test]
    fn no_strategy_holds_when_runtime_done_stops_arriving() {
        for strategy in [Strategy::End, Strategy::Adaptive] {
            let mut h = history(&[2_000, 2_000, 2_000], 0);
            h.missed_runtime_done = MISSED_RUNTIME_DONE_LIMIT - 1;
            assert!(decide(&pacing(strategy), &h, &level(1, 0), &cap(), true, false).hold);
            h.missed_runtime_done = MISSED_RUNTIME_DONE_LIMIT;
            let d = decide(&pacing(strategy), &h, &level(1, 0), &cap(), true, false);
            assert_eq!(
                (d.hold, d.reason),
                (false, Reason::NoRuntimeDone),
                "{strategy:?}"
            );
        }
    }

    #[test]
    fn many_queued_events_are_pressure_too() {
        let d = decide(
            &pacing(Strategy::Adaptive),
            &history(&[10, 10, 10], 0),
            &level(60_000, 1_000),
            &cap(),
            true,
            false,
        );
        assert_eq!((d.hold, d.reason), (true, Reason::Pressure));
    }

    #[test]
    fn no_strategy_holds_while_kinesis_is_failing_or_slow_even_under_pressure() {
        for strategy in [Strategy::End, Strategy::Adaptive] {
            for (gaps, bytes) in [
                (&[][..], 0),
                (&[2_000, 2_000, 2_000][..], 0),
                (&[10, 10][..], 6 << 20),
            ] {
                let d = decide(
                    &pacing(strategy),
                    &history(gaps, 0),
                    &level(1, bytes),
                    &cap(),
                    false,
                    true,
                );
                assert_eq!(
                    (d.hold, d.reason),
                    (false, Reason::Unhealthy),
                    "{strategy:?} {gaps:?}"
                );
            }
        }
    }

    #[test]
    fn no_strategy_holds_while_the_stream_is_at_its_write_limit() {
        for strategy in [Strategy::End, Strategy::Adaptive] {
            let h = history(&[2_000, 2_000, 2_000], 6 << 20);
            let d = decide(
                &pacing(strategy),
                &h,
                &level(1, 6 << 20),
                &cap(),
                true,
                true,
            );
            assert_eq!(
                (d.hold, d.reason),
                (false, Reason::StreamAtLimit),
                "{strategy:?}"
            );
        }
    }

    #[test]
    fn a_recovery_probe_is_rare_enough_to_cost_little() {
        let s = Duration::from_secs;
        // (failing, invocations since the last request, time since it, due)
        let cases = [
            (true, 20, s(5), true),
            (true, 19, s(60), false),
            (true, 500, s(4), false),
            (false, 500, s(60), false),
        ];
        for (failing, n, since, due) in cases {
            assert_eq!(
                recovery_probe_due(failing, n, since),
                due,
                "{failing} {n} {since:?}"
            );
        }
    }

    #[test]
    fn the_expected_run_is_the_shortest_recent_one_less_the_buffering() {
        let ms = Duration::from_millis;
        let mut h = History::default();
        assert_eq!(h.expected_run(ms(25)), None);
        for run in [300, 120, 500] {
            h.ran(ms(run));
        }
        assert_eq!(h.expected_run(ms(25)), Some(ms(95)));
        for _ in 0..HISTORY {
            h.ran(ms(400));
        }
        assert_eq!(
            h.expected_run(ms(25)),
            Some(ms(375)),
            "only the recent ones"
        );
        assert_eq!(h.expected_run(ms(500)), Some(Duration::ZERO));
    }

    #[test]
    fn due_by_count_bytes_or_by_the_age_the_next_window_would_see() {
        let p = pacing(Strategy::Background);
        let now = Instant::now();
        let aged = |ms: u64| Level {
            queued: 1,
            bytes: 100,
            oldest: Some(now - Duration::from_millis(ms)),
            ..Level::default()
        };
        let gap = Some(Duration::from_millis(100));
        // (level, gap, due)
        let cases: &[(Level, Option<Duration>, bool)] = &[
            (Level::default(), gap, false),
            (level(500, 100), gap, true),
            (level(1, 1 << 20), gap, true),
            (aged(0), gap, false),
            (aged(899), gap, false),
            (aged(900), gap, true),
            (aged(499), None, false),
            (aged(500), None, true),
            (
                Level {
                    spilled: 3,
                    ..Level::default()
                },
                gap,
                true,
            ),
        ];
        for (i, (l, g, due)) in cases.iter().enumerate() {
            assert_eq!(is_due(l, now, *g, &p), *due, "case {i}: {l:?}");
        }
    }

    #[test]
    fn the_expected_gap_is_the_median_of_recent_gaps() {
        assert_eq!(History::default().expected_gap(), None);
        let h = history(&[100, 300, 200], 0);
        assert_eq!(h.expected_gap(), Some(Duration::from_millis(200)));
        let mut h = history(&[], 0);
        let mut t = Instant::now();
        for _ in 0..50 {
            t += Duration::from_millis(10);
            h.invoked(t);
        }
        assert_eq!(h.seen(), 51);
        assert_eq!(h.expected_gap(), Some(Duration::from_millis(10)));
    }
}
