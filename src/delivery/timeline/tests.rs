//! The window ends, the request timeout and the latest start, as tables.

use super::*;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[test]
fn invoke_windows_end_before_the_deadline_and_the_budget_after_runtime_done() {
    let now = Instant::now();
    let far = now + Duration::from_secs(900);
    assert_eq!(
        invoke_window_end(now, far),
        far - INVOKE_DEADLINE_MARGIN - CLOSE_SLACK,
        "an invocation's window runs at most until the deadline margin"
    );
    let past = now + ms(50);
    assert_eq!(invoke_window_end(now, past), now);
    // (window end, runtimeDone arrived, budget) -> end
    let until = now + ms(10_000);
    let cases = [
        (until, now + ms(200), ms(60), now + ms(255)),
        (now + ms(230), now + ms(200), ms(60), now + ms(230)), // the deadline comes first
        (until, now + ms(200), ms(3), now + ms(200)),          // budget under the close slack
    ];
    for (until, done_at, budget, want) in cases {
        assert_eq!(after_done_end(until, done_at, budget), want, "{budget:?}");
    }
}

#[test]
fn a_recovery_probe_ends_within_the_budget_and_the_window() {
    let now = Instant::now();
    // (window end, budget) -> probe end
    let cases = [
        (ms(3_000), ms(60), ms(55)),
        (ms(30), ms(60), ms(30)), // the window ends first
        (ms(3_000), ms(3), ms(0)),
    ];
    for (until, budget, want) in cases {
        assert_eq!(
            probe_end(now, now + until, budget),
            now + want,
            "{until:?} {budget:?}"
        );
    }
}

#[test]
fn the_shutdown_wait_leaves_the_reserve_before_the_drain_ends() {
    let now = Instant::now();
    // (grace, drain end) -> grace end
    let cases = [
        (ms(500), ms(2_000), ms(500)), // the grace is short
        (ms(500), ms(600), ms(300)),   // the reserve comes first
        (ms(0), ms(2_000), ms(0)),     // no grace
        (ms(5_000), ms(10_000), ms(5_000)),
    ];
    for (grace, until, want) in cases {
        assert_eq!(
            grace_end(now, grace, now + until),
            now + want,
            "{grace:?} {until:?}"
        );
    }
    assert!(
        grace_end(now, ms(500), now + ms(200)) <= now,
        "no room for the reserve: the wait is over at once"
    );
}

#[test]
fn a_request_timeout_leaves_room_for_the_timer_to_overrun_before_the_window_ends() {
    let now = Instant::now();
    // (configured, window left, timeout)
    let cases = [
        (2_000, 10_000, 2_000), // the window is far: the configured timeout
        (2_000, 2_000, 1_750),  // the window bounds it, less an eighth
        (2_000, 900, 787),      // 900 - 112.5: a 900 ms wait was seen to end 46 ms late
        (2_000, 8, 7),
        (2_000, 0, 0), // the window is over
    ];
    for (configured, left, want) in cases {
        let got = request_timeout(ms(configured), now, now + ms(left));
        assert_eq!(
            got.as_millis(),
            want,
            "configured {configured} ms, {left} ms left"
        );
    }
    // Past the end: nothing left, never a panic.
    assert_eq!(request_timeout(ms(2_000), now + ms(5), now), Duration::ZERO);
}

#[test]
fn the_latest_start_is_the_last_moment_a_request_can_finish() {
    let now = Instant::now();
    let until = now + ms(1_000);
    for needed in [ms(10), ms(70), ms(700)] {
        let latest = latest_start(until, needed).unwrap();
        assert!(
            can_finish(latest, until, needed),
            "{needed:?}: at the latest start"
        );
        assert!(
            !can_finish(latest + ms(1), until, needed),
            "{needed:?}: a moment later"
        );
    }
}
