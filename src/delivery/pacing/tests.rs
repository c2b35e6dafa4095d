//! The hold and due decisions, with the history they need.

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
