//! The freeze-safety timeline: every margin between a window's opening and the moment Lambda
//! freezes (INVOKE) or ends (SHUTDOWN) the sandbox, in one file.
//!
//! The invariant: nothing is in flight when the lifecycle loop calls `/event/next` (Lambda may
//! freeze the sandbox at once; a request in flight would resume minutes later on a dead
//! connection), nor when the process exits. The flusher sends only inside a window, every
//! request's timeout ends before the window does ([`request_timeout`]), the flusher closes
//! the window itself, and the lifecycle loop stops waiting for it [`ACK_SLACK`] later.
//!
//! ```text
//! INVOKE (deadline: the invocation's deadlineMs)
//!
//!   INVOKE                        window end          cut         /event/next     deadline
//!    |===== requests ==================|-- ACK_SLACK --|-- ACK_SLACK --|..............|
//!                                      |<--- CLOSE_SLACK + INVOKE_DEADLINE_MARGIN --->|
//!    window end: invoke_window_end
//!
//! after the invocation's runtimeDone (budget: KINESIS_TELEMETRY_MAX_ADDED_MS)
//!
//!   runtimeDone                   window end            cut         /event/next
//!    |===== requests ==================|-- CLOSE_SLACK --|-- ACK_SLACK --|
//!    |<-------------------- budget --------------------->|
//!    window end: after_done_end (never later than invoke_window_end); a recovery probe
//!    while Kinesis fails ends by probe_end, within the budget too
//!
//! a request starts no later than latest_start(window end, time it needs), and its timeout
//! (request_timeout) ends by the window end even when the timer overruns it by an eighth
//!
//! SHUTDOWN (deadline: SHUTDOWN's deadlineMs)
//!
//!  SHUTDOWN       grace end     drain end                  exit            deadline
//!    |= wait for the =|= send what =|-- ACK_SLACK, summary --|-- EXIT_MARGIN --|
//!    |  last batch    |  it brought |
//!                     |<--RESERVE-->|<-------- SHUTDOWN_DRAIN_MARGIN --------->|
//!    RESERVE: SHUTDOWN_FLUSH_RESERVE
//!    grace end: grace_end; a request starts while MIN_REQUEST_TIME is left
//! ```
//!
//! The `const` assertions below check the orderings this needs; the functions are pure.

use std::time::{Duration, Instant};

/// The extension calls `/event/next` at least this long before an invocation's deadline.
pub const INVOKE_DEADLINE_MARGIN: Duration = Duration::from_millis(100);
/// Invocation windows end this much earlier still: closing the window, the acknowledgement
/// and the lifecycle's `/event/next` take well under a millisecond, so the margin holds. After
/// an invocation's runtimeDone the flusher closes this long before the lifecycle would cut.
pub const CLOSE_SLACK: Duration = Duration::from_millis(5);
/// How long past a window's end the lifecycle still waits for its acknowledgement (a
/// request's timeout firing, the last bookkeeping).
pub const ACK_SLACK: Duration = Duration::from_millis(25);
/// At SHUTDOWN, the wait for the platform's last batch ends at least this long before the
/// drain's deadline, leaving time to send what that batch brought.
pub const SHUTDOWN_FLUSH_RESERVE: Duration = Duration::from_millis(300);
/// Do not start a Kinesis request with less time than this left, whatever the estimate.
pub const MIN_REQUEST_TIME: Duration = Duration::from_millis(10);
/// The process exits at least this long before SHUTDOWN's `deadlineMs` (docs/design.md's promise).
pub const EXIT_MARGIN: Duration = Duration::from_millis(100);
/// The shutdown drain ends this long before `deadlineMs`: the exit margin, the flusher's
/// acknowledgement slack, and a little for the summary line and the exit itself.
pub const SHUTDOWN_DRAIN_MARGIN: Duration = Duration::from_millis(100 + 25 + 25);
/// A blocking wait can overrun its timeout by up to 1/this of it (see [`request_timeout`]).
const TIMER_OVERRUN_DIVISOR: u32 = 8;

const fn ms(d: Duration) -> u128 {
    d.as_millis()
}
// INVOKE: the lifecycle may wait ACK_SLACK past the window's end, cut, and wait ACK_SLACK
// again: its `/event/next` still comes before the deadline.
const _: () = assert!(2 * ms(ACK_SLACK) < ms(INVOKE_DEADLINE_MARGIN) + ms(CLOSE_SLACK));
// After runtimeDone the flusher closes its window before the lifecycle cuts at the budget.
const _: () = assert!(ms(CLOSE_SLACK) > 0 && ms(CLOSE_SLACK) < ms(ACK_SLACK));
// SHUTDOWN: the drain's acknowledgement and the exit both fit before the deadline.
const _: () = assert!(ms(SHUTDOWN_DRAIN_MARGIN) > ms(EXIT_MARGIN) + ms(ACK_SLACK));
// The reserve after the wait for the last batch leaves time for requests.
const _: () = assert!(ms(SHUTDOWN_FLUSH_RESERVE) > ms(MIN_REQUEST_TIME));
// `latest_start` divides by the divisor less one.
const _: () = assert!(TIMER_OVERRUN_DIVISOR > 1);

/// End of an INVOKE window: the deadline minus the margins. What the window may add after
/// the invocation's runtimeDone is bounded separately ([`after_done_end`]).
pub fn invoke_window_end(now: Instant, deadline: Instant) -> Instant {
    deadline
        .checked_sub(INVOKE_DEADLINE_MARGIN + CLOSE_SLACK)
        .unwrap_or(now)
        .max(now)
}

/// Where a window ends once its invocation's runtimeDone arrived at `done_at`: the
/// added-time budget after it, less the close slack, so that the flusher closes the window
/// itself before the lifecycle loop would cut its request (`FlusherHandle::invoke`).
pub fn after_done_end(until: Instant, done_at: Instant, max_added: Duration) -> Instant {
    until.min(done_at + max_added.saturating_sub(CLOSE_SLACK))
}

/// Where a recovery probe started at `now` ends (Kinesis failing, the function's run too
/// short or unknown): within the added-time budget, less the close slack.
pub fn probe_end(now: Instant, until: Instant, max_added: Duration) -> Instant {
    until.min(now + max_added.saturating_sub(CLOSE_SLACK))
}

/// Where SHUTDOWN's wait for the platform's last batch ends: the configured grace after
/// `now`, but [`SHUTDOWN_FLUSH_RESERVE`] before the drain ends at `until` (or now).
pub fn grace_end(now: Instant, grace: Duration, until: Instant) -> Instant {
    (now + grace).min(until.checked_sub(SHUTDOWN_FLUSH_RESERVE).unwrap_or(now))
}

/// The timeout of a request started at `now` in a window ending at `until`: the configured
/// one, or what is left of the window, less what a blocking socket wait may overrun it by.
/// Linux's timer wheel rounds a long timeout up to its level's granularity, up to an eighth
/// of it (a 900 ms wait was seen to end 46 ms late), and the lifecycle stops waiting for the
/// window to close [`ACK_SLACK`] after its end: the request must be over by then, never in
/// flight when Lambda freezes the sandbox.
pub fn request_timeout(configured: Duration, now: Instant, until: Instant) -> Duration {
    let left = until.saturating_duration_since(now);
    configured.min(left - left / TIMER_OVERRUN_DIVISOR)
}

/// A request started at `at` would get at least `needed` before the window's end.
pub fn can_finish(at: Instant, until: Instant, needed: Duration) -> bool {
    request_timeout(Duration::MAX, at, until) >= needed
}

/// The last moment a request that needs `needed` can start (the inverse of [`can_finish`]).
pub fn latest_start(until: Instant, needed: Duration) -> Option<Instant> {
    until.checked_sub(needed + needed / (TIMER_OVERRUN_DIVISOR - 1))
}

#[cfg(test)]
mod tests {
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
}
