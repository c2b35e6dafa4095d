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
const _: () = assert!(ms(CLOSE_SLACK) > 0);
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
mod tests;
