//! The lifecycle loop: long-polls `/event/next` and paces the flusher so that nothing is in
//! flight when the sandbox freezes.
//!
//! On INVOKE it opens a flush window and waits for the flusher's acknowledgement before
//! calling `/event/next` again. The window ends at the earlier of the flush budget
//! (`KINESIS_TELEMETRY_FLUSH_TIMEOUT_MS`) and the invocation's deadline minus a margin; the
//! flusher bounds every request by that end, so the wait is bounded too. When nothing is due
//! the acknowledgement comes back at once.
//!
//! On SHUTDOWN it plans the final drain from the event's `deadlineMs` (never a fixed sleep),
//! waits for the flusher, logs the summary line and returns so the process exits 0 before
//! the deadline.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{Receiver, Sender};
use log::{error, info, warn};

use crate::flusher::{Ack, Control};
use crate::runtime_api::{NextEvent, RuntimeApi};
use crate::stats::Stats;

/// Invocation windows end this long before the invocation's deadline.
pub const INVOKE_DEADLINE_MARGIN: Duration = Duration::from_millis(100);
/// The shutdown drain ends this long before SHUTDOWN's `deadlineMs`, leaving time to exit.
pub const SHUTDOWN_DEADLINE_MARGIN: Duration = Duration::from_millis(100);
/// How long past a window's end the loop still waits for the flusher's acknowledgement
/// (a request's timeout firing, the last bookkeeping).
pub const ACK_SLACK: Duration = Duration::from_millis(25);
/// Consecutive `/event/next` failures before the extension gives up.
const MAX_NEXT_FAILURES: u32 = 3;

/// The flusher as the lifecycle loop sees it.
pub struct FlusherHandle {
    pub control: Sender<Control>,
    pub acks: Receiver<Ack>,
    pub invoke_budget: Duration,
}

/// Converts an epoch-milliseconds deadline into an `Instant`.
pub fn instant_from_epoch_ms(deadline_ms: u64) -> Instant {
    let now = Instant::now();
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    now + Duration::from_millis(deadline_ms.saturating_sub(now_ms))
}

/// End of an INVOKE flush window (pure).
pub fn invoke_window_end(now: Instant, deadline: Instant, budget: Duration) -> Instant {
    let by_deadline = deadline
        .checked_sub(INVOKE_DEADLINE_MARGIN)
        .unwrap_or(now)
        .max(now);
    (now + budget).min(by_deadline)
}

pub struct Lifecycle<'a> {
    api: &'a RuntimeApi,
    id: &'a str,
    flusher: Option<FlusherHandle>,
    stats: Arc<Stats>,
    window: u64,
    last_request: Option<String>,
    late_acks_logged: bool,
}

impl<'a> Lifecycle<'a> {
    pub fn new(
        api: &'a RuntimeApi,
        id: &'a str,
        flusher: Option<FlusherHandle>,
        stats: Arc<Stats>,
    ) -> Self {
        Lifecycle {
            api,
            id,
            flusher,
            stats,
            window: 0,
            last_request: None,
            late_acks_logged: false,
        }
    }

    /// Runs until SHUTDOWN; returns the process exit code.
    pub fn run(mut self) -> i32 {
        let mut failures = 0;
        loop {
            match self.api.next_event(self.id) {
                Ok(NextEvent::Invoke {
                    request_id,
                    deadline_ms,
                }) => {
                    failures = 0;
                    self.invoke(instant_from_epoch_ms(deadline_ms));
                    self.last_request = Some(request_id);
                }
                Ok(NextEvent::Shutdown {
                    reason,
                    deadline_ms,
                }) => {
                    self.shutdown(instant_from_epoch_ms(deadline_ms));
                    info!("shutdown ({reason}): {}", self.stats.summary());
                    return 0;
                }
                Err(e) => {
                    failures += 1;
                    error!("event/next failed ({failures}/{MAX_NEXT_FAILURES}): {e}");
                    if failures >= MAX_NEXT_FAILURES {
                        info!("giving up: {}", self.stats.summary());
                        let _ = self
                            .api
                            .exit_error(self.id, "RuntimeApiFailed", &e.to_string());
                        return 1;
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        }
    }

    fn invoke(&mut self, deadline: Instant) {
        let Some(f) = &self.flusher else {
            return;
        };
        let now = Instant::now();
        let until = invoke_window_end(now, deadline, f.invoke_budget);
        self.window += 1;
        if f.control
            .try_send(Control::Invoke {
                window: self.window,
                until,
            })
            .is_err()
        {
            return;
        }
        self.wait_ack(until + ACK_SLACK);
    }

    fn shutdown(&mut self, deadline: Instant) {
        let Some(f) = &self.flusher else {
            return;
        };
        let until = deadline
            .checked_sub(SHUTDOWN_DEADLINE_MARGIN)
            .unwrap_or_else(Instant::now);
        self.window += 1;
        let sent = f.control.send_timeout(
            Control::Shutdown {
                window: self.window,
                until,
                last_request: self.last_request.clone(),
            },
            until.saturating_duration_since(Instant::now()),
        );
        if sent.is_ok() {
            self.wait_ack(until + ACK_SLACK);
        }
    }

    /// Waits for the acknowledgement of the current window, skipping stale ones.
    fn wait_ack(&mut self, by: Instant) {
        let Some(f) = &self.flusher else {
            return;
        };
        loop {
            match f.acks.recv_deadline(by) {
                Ok(Ack(w)) if w == self.window => return,
                Ok(_) => continue,
                Err(_) => {
                    if !self.late_acks_logged {
                        warn!("the flusher did not finish within its window; calling /event/next anyway (it never starts a request past the window's end)");
                        self.late_acks_logged = true;
                    }
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_ends_at_budget_or_before_deadline() {
        let now = Instant::now();
        let far = now + Duration::from_secs(900);
        assert_eq!(
            invoke_window_end(now, far, Duration::from_secs(3)),
            now + Duration::from_secs(3)
        );
        let near = now + Duration::from_millis(500);
        assert_eq!(
            invoke_window_end(now, near, Duration::from_secs(3)),
            near - INVOKE_DEADLINE_MARGIN
        );
        let past = now + Duration::from_millis(50);
        assert_eq!(invoke_window_end(now, past, Duration::from_secs(3)), now);
    }

    #[test]
    fn epoch_deadlines_convert() {
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        let d = instant_from_epoch_ms(now_ms + 2_000);
        let left = d.saturating_duration_since(Instant::now());
        assert!(left > Duration::from_millis(1_900) && left <= Duration::from_millis(2_000));
        assert!(instant_from_epoch_ms(0) <= Instant::now());
    }
}
