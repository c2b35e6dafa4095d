//! The lifecycle loop: long-polls `/event/next` and opens the flusher's windows, so that
//! nothing is in flight when the sandbox freezes.
//!
//! On INVOKE it hands the invocation to the flusher and calls `/event/next` again only once
//! the flusher has closed the window (see `flusher` and `window`). On Lambda Managed
//! Instances it registered for SHUTDOWN only: it tells the flusher to send on its own clock
//! and waits in `/event/next` until SHUTDOWN.
//!
//! On SHUTDOWN it plans the final drain from the event's `deadlineMs` (never a fixed sleep):
//! the drain ends [`SHUTDOWN_DRAIN_MARGIN`] before it, whatever is still held then is
//! counted as dropped, the summary line is logged, and the process exits at least
//! [`EXIT_MARGIN`] before the deadline (the margins: `delivery::timeline`).
//!
//! [`EXIT_MARGIN`]: crate::delivery::timeline::EXIT_MARGIN

pub mod logging;
pub mod runtime_api;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use log::{error, info, warn};

use crate::delivery::control::FlusherHandle;
use crate::delivery::timeline::SHUTDOWN_DRAIN_MARGIN;
use crate::intake::snapstart::Environment;
use crate::stats::{DropReason, Stats};
use crate::store::buffer::Buffer;
use runtime_api::{ApiError, NextEvent, Registration, RuntimeApi};

/// Consecutive `/event/next` failures before the extension gives up.
const MAX_NEXT_FAILURES: u32 = 3;

/// Converts an epoch-milliseconds deadline into an `Instant`.
pub fn instant_from_epoch_ms(deadline_ms: u64) -> Instant {
    let now = Instant::now();
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    now + Duration::from_millis(deadline_ms.saturating_sub(now_ms))
}

/// Registers: for INVOKE and SHUTDOWN, or SHUTDOWN only on Lambda Managed Instances. When
/// INVOKE is refused as an invalid event type where nothing said this was Managed Instances
/// (a future environment, an emulator), registers again for SHUTDOWN only instead of
/// exiting and taking the function's init down. Returns the registration and whether it is
/// for SHUTDOWN only.
pub fn register(
    api: &RuntimeApi,
    name: &str,
    managed_instances: bool,
) -> Result<(Registration, bool), ApiError> {
    if managed_instances {
        return api.register(name, &["SHUTDOWN"]).map(|r| (r, true));
    }
    match api.register(name, &["INVOKE", "SHUTDOWN"]) {
        Ok(r) => Ok((r, false)),
        Err(e) if e.is_invalid_event_type() => {
            warn!("registering for INVOKE was refused ({e}) although AWS_LAMBDA_INITIALIZATION_TYPE does not say lambda-managed-instances: registered for SHUTDOWN only, sending continuously");
            api.register(name, &["SHUTDOWN"]).map(|r| (r, true))
        }
        Err(e) => Err(e),
    }
}

/// The delivery pipeline, when there is one.
pub struct Pipeline {
    pub flusher: FlusherHandle,
    pub buffer: Arc<Buffer>,
    /// Told of every event, to notice a SnapStart restore (see `snapstart`).
    pub environment: Arc<Environment>,
}

impl Pipeline {
    /// An event came from `/event/next`: after a SnapStart restore, the flusher reseeds and
    /// drops its connections before it opens the event's window.
    fn event_arrived(&mut self) {
        if self.environment.event_arrived() {
            self.flusher.restored();
        }
    }
}

pub struct Lifecycle<'a> {
    api: &'a RuntimeApi,
    id: &'a str,
    pipeline: Option<Pipeline>,
    stats: Arc<Stats>,
    /// Registered for SHUTDOWN only (Lambda Managed Instances).
    shutdown_only: bool,
    last_request: Option<String>,
}

impl<'a> Lifecycle<'a> {
    pub fn new(
        api: &'a RuntimeApi,
        id: &'a str,
        pipeline: Option<Pipeline>,
        stats: Arc<Stats>,
        shutdown_only: bool,
    ) -> Self {
        Lifecycle {
            api,
            id,
            pipeline,
            stats,
            shutdown_only,
            last_request: None,
        }
    }

    /// Runs until SHUTDOWN; returns the process exit code.
    pub fn run(mut self) -> i32 {
        if self.shutdown_only {
            if let Some(p) = self.pipeline.as_mut() {
                p.flusher.continuous();
            }
        }
        let mut failures = 0;
        loop {
            match self.api.next_event(self.id) {
                Ok(NextEvent::Invoke {
                    request_id,
                    deadline_ms,
                }) => {
                    failures = 0;
                    if let Some(p) = self.pipeline.as_mut() {
                        p.event_arrived();
                        if !self.shutdown_only {
                            p.flusher
                                .invoke(&request_id, instant_from_epoch_ms(deadline_ms));
                        }
                    }
                    self.last_request = Some(request_id);
                }
                Ok(NextEvent::Shutdown {
                    reason,
                    deadline_ms,
                }) => {
                    if let Some(p) = self.pipeline.as_mut() {
                        p.event_arrived();
                    }
                    self.shutdown(instant_from_epoch_ms(deadline_ms));
                    info!("shutdown ({reason}): {}", self.summary());
                    return 0;
                }
                Err(e) => {
                    failures += 1;
                    error!("event/next failed ({failures}/{MAX_NEXT_FAILURES}): {e}");
                    if failures >= MAX_NEXT_FAILURES {
                        info!("giving up: {}", self.summary());
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

    fn summary(&self) -> String {
        let held = self.pipeline.as_ref().map_or(0, |p| p.buffer.held());
        self.stats.summary(held)
    }

    fn shutdown(&mut self, deadline: Instant) {
        let Some(p) = self.pipeline.as_mut() else {
            return;
        };
        let until = deadline
            .checked_sub(SHUTDOWN_DRAIN_MARGIN)
            .unwrap_or_else(Instant::now);
        if !p.flusher.shutdown(until, self.last_request.clone()) {
            // The flusher did not close in time (a request outliving its timeout): what it
            // still holds is lost with the environment; count it before the summary.
            let left = p.buffer.abandon();
            if left > 0 {
                warn!("SHUTDOWN deadline reached with {left} events undelivered; they are lost (counted as shutdown_deadline)");
                self.stats.add_dropped(DropReason::ShutdownDeadline, left);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
