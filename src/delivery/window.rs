//! Flush windows: the spans in which the flusher may talk to Kinesis, and the one decision
//! taken inside them, again and again: send a request now, wait for something, or close.
//!
//! Freeze safety is the invariant this serves. Lambda freezes the whole sandbox as soon as
//! the runtime and the extension have called `/event/next`, so a request in flight then
//! would resume minutes later on a dead connection. The flusher therefore sends only inside
//! a window the lifecycle loop opened (INVOKE, SHUTDOWN) and closes it, acknowledging, before
//! the lifecycle calls `/event/next`; every request's timeout is bounded by the window's end,
//! and no request is started that the observed latency says cannot finish before it (the
//! margins and window ends: `timeline`).
//! On Lambda Managed Instances nothing freezes: one [`WindowKind::Continuous`] window stays open
//! until SHUTDOWN and the flusher sends on its own clock.
//!
//! [`next_step`] is pure: a [`Window`] and a [`View`] of the buffer and of Kinesis' health
//! in, a [`Step`] out.

use std::time::{Duration, Instant};

use crate::delivery::timeline::{can_finish, latest_start, MIN_REQUEST_TIME};

/// What a window is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WindowKind {
    /// An invocation. `hold`: stay open until this request id's runtimeDone is delivered.
    Invoke { hold: Option<Box<str>> },
    /// SHUTDOWN: wait (up to `grace_end`) for the platform's last batch, deliver everything.
    /// `last_request`: the last INVOKE's request id, whose `platform.report` ends the wait.
    Shutdown {
        grace_end: Instant,
        last_request: Option<Box<str>>,
        /// No telemetry for this long after SHUTDOWN (and since the last POST) also ends the
        /// wait when there is no report to wait for.
        quiet: Duration,
    },
    /// Lambda Managed Instances: never frozen, open until SHUTDOWN.
    Continuous,
}

/// An open window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    pub id: u64,
    pub kind: WindowKind,
    pub opened: Instant,
    /// Nothing may be in flight after this.
    pub until: Instant,
    /// Requests made in this window.
    pub requests: u32,
    /// Kinesis refused a request for good in this window.
    pub refused: bool,
}

/// What the flusher sees when it decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct View {
    pub now: Instant,
    /// Anything waiting to be sent (queued or spilled).
    pub has_data: bool,
    /// A full request's worth is waiting (the flush thresholds).
    pub full: bool,
    /// Due by the pacing rules (age, count, bytes) in a window that is not held.
    pub due: bool,
    /// The held invocation's runtimeDone has arrived.
    pub done_seen: bool,
    /// Events up to the held invocation's runtimeDone are still waiting.
    pub done_pending: bool,
    /// The last invocation's `platform.report` has arrived (SHUTDOWN).
    pub report_seen: bool,
    /// When telemetry last arrived.
    pub last_arrival: Option<Instant>,
    /// When the oldest waiting event becomes due by age (continuous sending).
    pub due_at: Option<Instant>,
    /// No attempt before this (backoff after a failure).
    pub backoff_until: Option<Instant>,
    /// Kinesis is failing: one probe per invocation window.
    pub struggling: bool,
    /// The base backoff after the last failed attempt, however far the retries' backoff has
    /// grown: an invocation's probe while struggling, and SHUTDOWN's sends, wait only this.
    pub probe_from: Option<Instant>,
    /// The least time left for a request to be worth starting (observed latency).
    pub time_needed: Duration,
    /// The last request failed (or Kinesis could not be reached): Kinesis is failing, slow or
    /// unreachable, and an invocation sends only while its function runs anyway.
    pub failing: bool,
    /// How much longer the function is expected to run (from the invocations seen so far);
    /// `None` when not known.
    pub run_left: Option<Duration>,
    /// Kinesis is failing and this invocation may spend up to the added-time budget on a
    /// one-record probe (`pacing::recovery_probe_due`).
    pub recovery_probe: bool,
}

/// Why a window closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Close {
    /// Nothing is due (not held).
    NothingDue,
    /// The held invocation's telemetry, up to its runtimeDone, is delivered.
    Delivered,
    /// The window's end came (budget or deadline − margin).
    End,
    /// A held invocation's window ended before its runtimeDone arrived.
    NoRuntimeDone,
    /// Kinesis is struggling and this window has made its probe.
    Struggling,
    /// Kinesis answers slower than what is left of the window: the data waits.
    TooSlow,
    /// SHUTDOWN: everything is delivered and the platform's last batch is in.
    Drained,
    /// Kinesis refused a request for good: the invocation is not held for more refusals.
    Refused,
    /// Kinesis is failing, slow or unreachable and the function is not expected to run long
    /// enough for a request: the data waits (the function's time is its own).
    NoTime,
}

/// The decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Send,
    /// Wait until then, or until telemetry arrives.
    Wait(Instant),
    Close(Close),
}

/// Sends if it may and a request can finish; otherwise why not. After the invocation's
/// runtimeDone nothing waits (a backoff, the stream's send rate): that time is the
/// function's.
fn try_send(w: &Window, v: &View, otherwise: Close) -> Step {
    if let Some(t) = v.backoff_until {
        if v.done_seen && matches!(w.kind, WindowKind::Invoke { .. }) {
            return Step::Close(Close::End);
        }
        return if can_finish(t, w.until, v.time_needed) {
            Step::Wait(t)
        } else {
            Step::Close(otherwise)
        };
    }
    if !can_finish(v.now, w.until, v.time_needed) {
        return Step::Close(otherwise);
    }
    Step::Send
}

/// SHUTDOWN's send: no later window will take what is left, so it waits only the base
/// backoff after a failure, never past the last moment the observed latency says a request
/// can still finish; and a request is started as long as [`MIN_REQUEST_TIME`] is left: its
/// timeout is bounded by the window's end, and records it may have delivered are counted in
/// doubt, not dropped.
fn send_before_the_end(w: &Window, v: &View) -> Step {
    if let Some(t) = v.probe_from {
        let latest = latest_start(w.until, v.time_needed).unwrap_or(v.now);
        let at = t.min(latest);
        if at > v.now {
            return Step::Wait(at);
        }
    }
    if v.now + MIN_REQUEST_TIME <= w.until {
        Step::Send
    } else {
        Step::Close(Close::End)
    }
}

/// The next step in an open window (pure).
pub fn next_step(w: &Window, v: &View) -> Step {
    let probed = v.struggling && w.requests >= 1;
    if w.refused && matches!(w.kind, WindowKind::Invoke { .. }) {
        return Step::Close(Close::Refused);
    }
    // While Kinesis is failing each invocation makes one probe: the backoff, grown for the
    // retries, gives way to the probe spacing, so recovery is seen within an invocation or two.
    let probing = View {
        backoff_until: v.probe_from,
        ..*v
    };
    let v = if v.struggling && w.requests == 0 && matches!(w.kind, WindowKind::Invoke { .. }) {
        &probing
    } else {
        v
    };
    match &w.kind {
        WindowKind::Invoke { hold: None } => background_step(w, v, probed),
        WindowKind::Invoke { hold: Some(_) } => held_step(w, v, probed),
        WindowKind::Shutdown {
            grace_end,
            last_request,
            quiet,
        } => shutdown_step(w, v, *grace_end, last_request.is_some(), *quiet),
        WindowKind::Continuous => continuous_step(v),
    }
}

/// An invocation that is not held: send what is due, close when nothing is. `probed`: Kinesis
/// is struggling and this window made its probe.
fn background_step(w: &Window, v: &View, probed: bool) -> Step {
    if !v.has_data || !v.due {
        Step::Close(Close::NothingDue)
    } else if probed {
        Step::Close(Close::Struggling)
    } else if v.failing {
        // Only in time the function runs anyway: never after its runtimeDone, and
        // only a request the function's expected run leaves time for.
        match v.run_left {
            Some(left) if !v.done_seen && left >= v.time_needed => try_send(w, v, Close::NoTime),
            _ if v.recovery_probe && w.requests == 0 => Step::Send,
            _ => Step::Close(Close::NoTime),
        }
    } else {
        // A window that is not held waits (a backoff, the stream's send rate) only
        // while the function is expected to run: its runtimeDone reaches the
        // extension a buffering timeout after the function returned, too late to
        // close then without adding that much.
        if let Some(t) = v.backoff_until {
            if v.run_left.is_none_or(|left| v.now + left < t) {
                return Step::Close(Close::End);
            }
        }
        try_send(
            w,
            v,
            if v.backoff_until.is_some() {
                Close::End
            } else {
                Close::TooSlow
            },
        )
    }
}

/// A held invocation: send while the function runs, close once its telemetry up to its
/// runtimeDone is delivered.
fn held_step(w: &Window, v: &View, probed: bool) -> Step {
    if v.done_seen && !v.done_pending {
        return Step::Close(Close::Delivered);
    }
    if v.now >= w.until {
        return Step::Close(if v.done_seen {
            Close::End
        } else {
            Close::NoRuntimeDone
        });
    }
    if probed || (v.failing && v.done_seen) {
        // After runtimeDone a failing Kinesis gets no more of the invocation's time.
        return Step::Close(Close::Struggling);
    }
    let sendable = (v.done_seen && v.done_pending) || v.full || (v.has_data && v.due);
    if !sendable {
        return Step::Wait(w.until);
    }
    match try_send(w, v, Close::TooSlow) {
        // Too slow to send now: nothing can keep the promise; do not stretch the
        // invocation any further.
        Step::Close(c) if !v.done_seen && v.backoff_until.is_none() => Step::Close(c),
        Step::Close(_) if v.backoff_until.is_some() => Step::Close(Close::End),
        other => other,
    }
}

/// SHUTDOWN: send everything; with nothing left, wait for the platform's last batch (its
/// report, when `reported` there is one to wait for, or a `quiet` period) up to `grace_end`.
fn shutdown_step(
    w: &Window,
    v: &View,
    grace_end: Instant,
    reported: bool,
    quiet: Duration,
) -> Step {
    if v.has_data {
        return send_before_the_end(w, v);
    }
    let quiet_since = v.last_arrival.map_or(w.opened, |t| t.max(w.opened));
    let quiet_over = !reported && v.now >= quiet_since + quiet;
    if v.report_seen || quiet_over || v.now >= grace_end || v.now >= w.until {
        Step::Close(Close::Drained)
    } else if !reported {
        Step::Wait((quiet_since + quiet).min(grace_end))
    } else {
        Step::Wait(grace_end)
    }
}

/// Lambda Managed Instances: send what is full or due, on the flusher's own clock.
fn continuous_step(v: &View) -> Step {
    if v.has_data && (v.full || v.due) {
        match v.backoff_until {
            Some(t) => Step::Wait(t),
            None => Step::Send,
        }
    } else {
        // Far enough to mean "until telemetry arrives"; the flusher is woken by it.
        Step::Wait(v.due_at.unwrap_or(v.now + Duration::from_secs(3600)))
    }
}

#[cfg(test)]
mod tests;
