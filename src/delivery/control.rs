//! The control step: the channel protocol between the lifecycle loop and the flusher, seen
//! from the lifecycle's side ([`FlusherHandle`]).
//!
//! The lifecycle loop opens a window ([`Control`]) and waits for its acknowledgement
//! ([`Ack`]) before calling `/event/next`. On INVOKE it waits at most until the added-time
//! budget after the invocation's runtimeDone (or the deadline's margin) and then cuts the
//! request still in flight ([`crate::kinesis::Interrupt`]: its connection is closed, nothing is
//! in flight across the freeze); the cut request's records are resent. The margins:
//! `timeline`.

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{select, Receiver, Sender};
use log::warn;

use crate::delivery::timeline::{self, ACK_SLACK};
use crate::kinesis::Interrupt;
use crate::store::buffer::Done;

/// Orders from the lifecycle loop.
#[derive(Debug, Clone)]
pub enum Control {
    /// An invocation started; `deadline` is its `deadlineMs`.
    Invoke {
        window: u64,
        request_id: String,
        deadline: Instant,
    },
    /// The environment is shutting down: deliver everything before `until`.
    Shutdown {
        window: u64,
        until: Instant,
        last_request: Option<String>,
    },
    /// Lambda Managed Instances: send on the flusher's own clock until SHUTDOWN.
    Continuous,
    /// This process was resumed from a SnapStart snapshot shared with other environments:
    /// reseed the generator and drop pooled connections (not a window: no acknowledgement).
    Restored,
}

/// "Window `n` is closed; nothing is in flight."
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ack(pub u64);

/// The flusher as the lifecycle loop sees it: every exchange of the channel protocol.
pub struct FlusherHandle {
    control: Sender<Control>,
    acks: Receiver<Ack>,
    /// Each runtimeDone as it arrives.
    dones: Receiver<Done>,
    /// The added-time budget.
    max_added: Duration,
    interrupt: Option<Interrupt>,
    /// The start-up connect probe is still waiting: cut before an invocation's `/event/next`.
    probe_pending: Arc<AtomicBool>,
    window: u64,
    late_logged: bool,
}

impl FlusherHandle {
    /// The lifecycle's side of a flusher thread: orders go to `control`, acknowledgements
    /// come from `acks`, runtimeDones from `dones`; `probe_pending` is set while the start-up
    /// connect probe waits.
    pub(crate) fn new(
        control: Sender<Control>,
        acks: Receiver<Ack>,
        dones: Receiver<Done>,
        max_added: Duration,
        interrupt: Option<Interrupt>,
        probe_pending: Arc<AtomicBool>,
    ) -> Self {
        FlusherHandle {
            control,
            acks,
            dones,
            max_added,
            interrupt,
            probe_pending,
            window: 0,
            late_logged: false,
        }
    }

    /// An INVOKE: returns once the flusher has closed the invocation's window, or at the
    /// added-time budget after the invocation's runtimeDone arrived, cutting a request still
    /// in flight then (see the module docs); at the latest `ACK_SLACK` after the deadline's
    /// margin.
    pub fn invoke(&mut self, request_id: &str, deadline: Instant) {
        self.window += 1;
        let sent = self.control.try_send(Control::Invoke {
            window: self.window,
            request_id: request_id.to_string(),
            deadline,
        });
        if sent.is_err() {
            return;
        }
        let hard_end = timeline::invoke_window_end(Instant::now(), deadline) + ACK_SLACK;
        let mut budget_end: Option<Instant> = None;
        loop {
            let by = budget_end.map_or(hard_end, |b| b.min(hard_end));
            select! {
                recv(self.acks) -> ack => match ack {
                    Ok(Ack(w)) if w == self.window => return self.cut_a_pending_probe(),
                    Ok(_) => {}
                    Err(_) => return,
                },
                recv(self.dones) -> done => {
                    if let Ok((id, at)) = done {
                        if *id == *request_id && budget_end.is_none() {
                            budget_end = Some(at + self.max_added);
                        }
                    }
                },
                default(by.saturating_duration_since(Instant::now())) => break,
            }
        }
        // The budget (or the deadline's margin) is over with the window still open: cut
        // what is in flight and give the flusher a moment to settle and close.
        log::debug!(
            "window {}: {} over with the window open: cutting what is in flight",
            self.window,
            if budget_end.is_some() {
                "the added-time budget"
            } else {
                "the deadline's margin"
            }
        );
        if let Some(cut) = &self.interrupt {
            cut.fire();
        }
        self.wait_ack(Instant::now() + ACK_SLACK);
    }

    /// A start-up connect probe still waiting (Kinesis unreachable) is not left pending
    /// across the freeze that follows `/event/next`: it is cut, and counts as a connect
    /// that did not finish.
    fn cut_a_pending_probe(&self) {
        if self.probe_pending.load(Relaxed) {
            if let Some(cut) = &self.interrupt {
                cut.fire();
            }
        }
    }

    /// Managed Instances: the flusher sends on its own clock from now on.
    pub fn continuous(&mut self) {
        let _ = self.control.try_send(Control::Continuous);
    }

    /// A SnapStart restore, told before the first window after it (the channel keeps order).
    pub fn restored(&mut self) {
        let _ = self.control.try_send(Control::Restored);
    }

    /// SHUTDOWN: returns once everything is delivered or counted, by `until` + slack.
    pub fn shutdown(&mut self, until: Instant, last_request: Option<String>) -> bool {
        self.window += 1;
        let sent = self.control.send_timeout(
            Control::Shutdown {
                window: self.window,
                until,
                last_request,
            },
            until.saturating_duration_since(Instant::now()),
        );
        sent.is_ok() && self.wait_ack(until + ACK_SLACK)
    }

    /// Waits for the acknowledgement of the current window, skipping stale ones.
    fn wait_ack(&mut self, by: Instant) -> bool {
        loop {
            match self.acks.recv_deadline(by) {
                Ok(Ack(w)) if w == self.window => return true,
                Ok(_) => continue,
                Err(_) => {
                    if !self.late_logged {
                        warn!("internal: the flusher did not close its window in time; continuing (its requests are bounded by the window's end)");
                        self.late_logged = true;
                    }
                    return false;
                }
            }
        }
    }
}
