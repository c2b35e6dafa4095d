//! The flusher thread: the only thread that talks to Kinesis, and the channel protocol that
//! paces it ([`spawn`] → [`FlusherHandle`]).
//!
//! The lifecycle loop opens a window ([`Control`]) and waits for its acknowledgement
//! ([`Ack`]) before calling `/event/next`; in between, the flusher repeats one decision
//! (`window::next_step`): send a request, wait (for telemetry, a backoff, a deadline) or
//! close. Nothing is in flight when it acknowledges, and no request outlives the window's end
//! (see `window` for why). Between windows it sends nothing; on Lambda Managed Instances one
//! continuous window stays open until SHUTDOWN.
//!
//! On INVOKE it decides whether to hold the invocation (`pacing`): a held window stays open
//! until the invocation's `platform.runtimeDone` is delivered and sends continuously
//! meanwhile; a window that is not held sends what is due and closes.
//!
//! One request is built and settled by `send` (packing, records, the PutRecords call, what
//! to resend or drop). A fatal answer drops exactly the batch it refused, counted under the
//! AWS code and logged once per cause; an INVOKE window then closes (no hot loop), SHUTDOWN
//! goes on with the next batch.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{select, Receiver, Sender};
use log::{info, warn};

use crate::buffer::Buffer;
use crate::config::{Http, Pacing, RecordSettings};
use crate::health::{Health, RetryPolicy};
use crate::kinesis::{PutRecordsResponse, Record, RequestError};
use crate::metrics::Metrics;
use crate::pacing::{self, History, Hold};
use crate::rng::Rng;
use crate::stats::{DropReason, Stats};
use crate::window::{self, Close, Kind, Step, View, Window};

/// How long past a window's end the lifecycle still waits for its acknowledgement (a
/// request's timeout firing, the last bookkeeping).
pub const ACK_SLACK: Duration = Duration::from_millis(25);
/// With no invocation to wait for at SHUTDOWN, the platform's last batch is taken to be in
/// once no telemetry has arrived for this many buffering timeouts (at least `MIN_QUIET`).
const QUIET_TIMEOUTS: u32 = 4;
const MIN_QUIET: Duration = Duration::from_millis(200);

/// Where records go. The real one is [`KinesisSink`]; tests script one.
pub trait Sink: Send + 'static {
    fn put(
        &mut self,
        records: &[Record<'_>],
        timeout: Duration,
    ) -> Result<PutRecordsResponse, RequestError>;

    /// What the user should fix for a fatal error (names the stream and region).
    fn fix_hint(&self, err: &RequestError) -> String;

    /// Forgets pooled connections (a SnapStart restore: they died with the snapshot).
    fn drop_connections(&mut self) {}
}

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

/// Flusher settings, taken from [`crate::config::Config`].
#[derive(Debug, Clone)]
pub struct Settings {
    pub pacing: Pacing,
    pub records: RecordSettings,
    pub http: Http,
    pub shutdown_grace: Duration,
    /// The subscription's buffering timeout (how long the platform may sit on telemetry).
    pub buffering_timeout: Duration,
}

/// The flusher as the lifecycle loop sees it: every exchange of the channel protocol.
pub struct FlusherHandle {
    control: Sender<Control>,
    acks: Receiver<Ack>,
    window: u64,
    late_logged: bool,
}

impl FlusherHandle {
    /// An INVOKE: returns once the flusher has closed the invocation's window (at the latest
    /// `ACK_SLACK` after the deadline's margin: nothing is in flight after that).
    pub fn invoke(&mut self, request_id: &str, deadline: Instant) {
        self.window += 1;
        let sent = self.control.try_send(Control::Invoke {
            window: self.window,
            request_id: request_id.to_string(),
            deadline,
        });
        if sent.is_ok() {
            let end = window::invoke_window_end(Instant::now(), deadline, Duration::MAX, true);
            self.wait_ack(end + ACK_SLACK);
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

/// Everything the flusher thread needs.
pub struct Parts<S: Sink> {
    pub sink: S,
    pub settings: Settings,
    pub stats: Arc<Stats>,
    pub buffer: Arc<Buffer>,
    pub woken: Receiver<()>,
    pub metrics: Metrics,
}

/// Starts the flusher thread.
pub fn spawn<S: Sink>(parts: Parts<S>) -> std::io::Result<FlusherHandle> {
    let (control, control_rx) = crossbeam_channel::bounded(4);
    let (ack_tx, acks) = crossbeam_channel::bounded(4);
    let flusher = Flusher::new(parts);
    std::thread::Builder::new()
        .name("flusher".into())
        .stack_size(1024 * 1024)
        .spawn(move || flusher.run(control_rx, ack_tx))?;
    Ok(FlusherHandle {
        control,
        acks,
        window: 0,
        late_logged: false,
    })
}

/// An open window and what the flusher learned in it.
struct Open {
    w: Window,
    /// Ticket of the held invocation's runtimeDone, once it arrived, and when.
    done: Option<(u64, Instant)>,
}

pub(crate) struct Flusher<S: Sink> {
    pub(crate) sink: S,
    pub(crate) settings: Settings,
    pub(crate) stats: Arc<Stats>,
    pub(crate) buffer: Arc<Buffer>,
    woken: Receiver<()>,
    pub(crate) rng: Rng,
    pub(crate) health: Health,
    history: History,
    /// The last held invocation's request id (to see whether its runtimeDone came late).
    last_held: Option<Box<str>>,
    received_bytes_at_invoke: u64,
    last_hold: Option<Hold>,
    open: Option<Open>,
    pub(crate) logged_causes: HashSet<String>,
    slow_logged: bool,
    no_done_logged: bool,
    /// Spilled events lost so far (already counted).
    pub(crate) spill_lost: u64,
    metrics: Metrics,
}

impl<S: Sink> Flusher<S> {
    pub(crate) fn new(p: Parts<S>) -> Self {
        Flusher {
            sink: p.sink,
            settings: p.settings,
            stats: p.stats,
            buffer: p.buffer,
            woken: p.woken,
            rng: Rng::new(),
            health: Health::default(),
            history: History::default(),
            last_held: None,
            received_bytes_at_invoke: 0,
            last_hold: None,
            open: None,
            logged_causes: HashSet::new(),
            slow_logged: false,
            no_done_logged: false,
            spill_lost: 0,
            metrics: p.metrics,
        }
    }

    pub(crate) fn retry_policy(&self) -> RetryPolicy {
        RetryPolicy {
            max_attempts: self.settings.http.max_attempts,
            backoff_base: self.settings.http.backoff_base,
            backoff_max: self.settings.http.backoff_max,
        }
    }

    /// Runs until SHUTDOWN has been handled or the lifecycle loop is gone.
    fn run(mut self, control_rx: Receiver<Control>, ack_tx: Sender<Ack>) {
        loop {
            self.buffer.listen(self.open.is_some());
            let step = self
                .open
                .as_ref()
                .map(|o| window::next_step(&o.w, &self.view(o)));
            let wait_until = match step {
                None => None,
                Some(Step::Send) => {
                    self.send_in_window();
                    continue;
                }
                Some(Step::Close(reason)) => {
                    let done = self.close(reason, &ack_tx);
                    if done {
                        return;
                    }
                    continue;
                }
                Some(Step::Wait(t)) => Some(t),
            };
            // Idle between windows, or waiting inside one: for an order, for telemetry, or
            // for the time to come.
            let timeout = wait_until.map_or(Duration::from_secs(3600), |t| {
                t.saturating_duration_since(Instant::now())
            });
            let timeout = match self.metrics.next_due() {
                Some(t)
                    if matches!(
                        self.open.as_ref().map(|o| &o.w.kind),
                        Some(Kind::Continuous)
                    ) =>
                {
                    timeout.min(t.saturating_duration_since(Instant::now()))
                }
                _ => timeout,
            };
            select! {
                recv(control_rx) -> msg => match msg {
                    Ok(c) => self.open_window(c, &ack_tx),
                    Err(_) => return,
                },
                recv(self.woken) -> _ => {},
                default(timeout) => {},
            }
            if matches!(
                self.open.as_ref().map(|o| &o.w.kind),
                Some(Kind::Continuous)
            ) {
                self.maybe_emit_metrics();
            }
        }
    }

    /// After a SnapStart restore every copy of the snapshot held the same generator state
    /// and connections: draw a new seed from the OS, and forget the pool.
    pub(crate) fn restored(&mut self) {
        self.rng = Rng::new();
        self.sink.drop_connections();
    }

    fn open_window(&mut self, c: Control, ack_tx: &Sender<Ack>) {
        if let Control::Restored = c {
            return self.restored();
        }
        let now = Instant::now();
        if let Some(old) = self.open.take() {
            // A new order while a window is open: the lifecycle stopped waiting for it.
            let _ = ack_tx.try_send(Ack(old.w.id));
        }
        let (id, kind, until) = match c {
            Control::Invoke {
                window,
                request_id,
                deadline,
            } => {
                self.history.invoked(now);
                if let Some(id) = self.last_held.take() {
                    if self.buffer.done_ticket(&id).is_some() {
                        // It came, late: the platform does send runtimeDone.
                        self.history.missed_runtime_done = 0;
                    }
                }
                let received = self
                    .stats
                    .received_bytes
                    .load(std::sync::atomic::Ordering::Relaxed);
                self.history.last_invocation_bytes =
                    (received - self.received_bytes_at_invoke.min(received)) as usize;
                self.received_bytes_at_invoke = received;
                let hold = pacing::decide(
                    &self.settings.pacing,
                    &self.history,
                    &self.buffer.level(),
                    self.buffer.cap(),
                );
                self.note_hold(hold);
                let until = window::invoke_window_end(
                    now,
                    deadline,
                    self.settings.pacing.invoke_budget,
                    hold.hold,
                );
                let hold = hold.hold.then(|| request_id.into_boxed_str());
                self.last_held.clone_from(&hold);
                (window, Kind::Invoke { hold }, until)
            }
            Control::Shutdown {
                window,
                until,
                last_request,
            } => {
                let grace = (now + self.settings.shutdown_grace)
                    .min(until.checked_sub(SHUTDOWN_FLUSH_RESERVE).unwrap_or(now));
                let quiet = (self.settings.buffering_timeout * QUIET_TIMEOUTS).max(MIN_QUIET);
                let kind = Kind::Shutdown {
                    grace_end: grace,
                    last_request: last_request.map(String::into_boxed_str),
                    quiet,
                };
                (window, kind, until)
            }
            Control::Continuous => {
                info!("Lambda Managed Instances: sending continuously (no freeze, concurrent invocations)");
                (
                    0,
                    Kind::Continuous,
                    now + Duration::from_secs(100 * 365 * 86_400),
                )
            }
            Control::Restored => return,
        };
        self.open = Some(Open {
            w: Window {
                id,
                kind,
                opened: now,
                until,
                requests: 0,
                refused: false,
            },
            done: None,
        });
    }

    /// Logs once when the adaptive decision switches, and why.
    fn note_hold(&mut self, hold: Hold) {
        let was = self.last_hold.replace(hold);
        let flipped = was.is_none_or(|h| h.hold != hold.hold);
        let adaptive = self.settings.pacing.strategy == crate::config::Strategy::Adaptive;
        let runtime_done_missing = [Some(hold), was]
            .iter()
            .flatten()
            .any(|h| h.reason == pacing::Reason::NoRuntimeDone);
        if flipped && (adaptive || runtime_done_missing) {
            let what = if hold.hold {
                "holding each invocation until its telemetry is delivered"
            } else {
                "sending in the background while functions run"
            };
            info!("pacing: {what} ({})", hold.reason.describe());
        }
    }

    /// What the window decision needs to know now.
    fn view(&self, o: &Open) -> View {
        let now = Instant::now();
        let level = self.buffer.level();
        let p = &self.settings.pacing;
        let continuous = matches!(o.w.kind, Kind::Continuous);
        let gap = if continuous {
            Some(Duration::ZERO)
        } else {
            self.history.expected_gap()
        };
        let (done_seen, done_pending) = match (&o.w.kind, o.done) {
            (_, Some((ticket, _))) => (true, self.buffer.unsettled_through(ticket)),
            (Kind::Invoke { hold: Some(id) }, None) => match self.buffer.done_ticket(id) {
                Some(ticket) => (true, self.buffer.unsettled_through(ticket)),
                None => (false, false),
            },
            _ => (false, false),
        };
        let report_seen = match &o.w.kind {
            Kind::Shutdown {
                last_request: Some(id),
                ..
            } => self.buffer.report_seen(id),
            _ => false,
        };
        View {
            now,
            has_data: level.queued > 0 || level.spilled > 0,
            full: level.queued >= p.flush_events || level.bytes >= p.flush_bytes,
            due: pacing::is_due(&level, now, gap, p),
            done_seen,
            done_pending,
            report_seen,
            last_arrival: self.buffer.last_admission(),
            due_at: level.oldest.map(|t| t + p.freshness),
            backoff_until: self.health.backoff_until(now),
            struggling: self.health.struggling(),
            probe_from: self.health.probe_from(now),
            time_needed: self.health.time_needed(now),
        }
    }

    /// One request inside the open window, then what it teaches the window.
    fn send_in_window(&mut self) {
        let Some(o) = self.open.as_mut() else {
            return;
        };
        // A held invocation pays at most the budget after its runtimeDone arrived.
        if let Kind::Invoke { hold: Some(id) } = &o.w.kind {
            if o.done.is_none() {
                if let Some(t) = self.buffer.done_ticket(id) {
                    let now = Instant::now();
                    o.done = Some((t, now));
                    o.w.until = o.w.until.min(now + self.settings.pacing.invoke_budget);
                }
            }
        }
        o.w.requests += 1;
        let until = o.w.until;
        // While Kinesis is failing, a request is a probe (see `send_one`), except at SHUTDOWN:
        // the last window sends everything it can.
        let probe = self.health.struggling() && !matches!(o.w.kind, Kind::Shutdown { .. });
        let fatal = self.send_one(until, probe).is_fatal();
        self.count_spill_losses();
        if let Some(o) = self.open.as_mut() {
            o.w.refused |= fatal;
        }
    }

    /// Closes the open window: counts what SHUTDOWN leaves, logs what is worth a line,
    /// acknowledges. Returns true when the flusher is done (SHUTDOWN).
    fn close(&mut self, reason: Close, ack_tx: &Sender<Ack>) -> bool {
        let Some(o) = self.open.take() else {
            return false;
        };
        match reason {
            Close::NoRuntimeDone => self.history.missed_runtime_done += 1,
            Close::Delivered => self.history.missed_runtime_done = 0,
            _ => {}
        }
        match reason {
            Close::NoRuntimeDone if !self.no_done_logged => {
                self.no_done_logged = true;
                warn!("an invocation's platform.runtimeDone did not arrive before its window ended (crash or timeout?); calling /event/next, its telemetry follows with the next invocation");
            }
            Close::TooSlow if !self.slow_logged => {
                self.slow_logged = true;
                let took = self
                    .health
                    .expected_latency(Instant::now())
                    .unwrap_or_default();
                warn!(
                    "Kinesis answers in about {} ms, more than this invocation's window allows: telemetry waits for a longer window or SHUTDOWN instead of stretching invocations",
                    took.as_millis()
                );
            }
            _ => {}
        }
        let shutdown = matches!(o.w.kind, Kind::Shutdown { .. });
        if shutdown {
            self.count_left_at_shutdown();
            self.emit_metrics();
        } else {
            self.maybe_emit_metrics();
        }
        let _ = ack_tx.send(Ack(o.w.id));
        shutdown
    }

    fn count_left_at_shutdown(&mut self) {
        let left = self.buffer.abandon();
        if left > 0 {
            warn!(
                "SHUTDOWN deadline reached with {left} events undelivered; they are lost (counted as shutdown_deadline)"
            );
            self.stats.add_dropped(DropReason::ShutdownDeadline, left);
        }
    }

    fn maybe_emit_metrics(&mut self) {
        let snap = self.stats.snapshot();
        if self.metrics.is_due(Instant::now(), &snap) {
            self.emit_metrics();
        }
    }

    fn emit_metrics(&mut self) {
        let snap = self.stats.snapshot();
        let high = self.buffer.level().high_water;
        self.metrics
            .emit(Instant::now(), snap, self.stats.take_latencies(), high);
    }
}

/// At SHUTDOWN, the wait for the platform's last batch ends at least this long before the
/// drain's deadline, leaving time to send what that batch brought.
pub const SHUTDOWN_FLUSH_RESERVE: Duration = Duration::from_millis(300);

/// The real [`Sink`]: PutRecords to one stream.
pub struct KinesisSink {
    client: crate::kinesis::KinesisClient,
    target: crate::kinesis::StreamTarget,
}

impl KinesisSink {
    pub fn new(
        client: crate::kinesis::KinesisClient,
        target: crate::kinesis::StreamTarget,
    ) -> Self {
        KinesisSink { client, target }
    }
}

impl Sink for KinesisSink {
    fn put(
        &mut self,
        records: &[Record<'_>],
        timeout: Duration,
    ) -> Result<PutRecordsResponse, RequestError> {
        self.client.put_records(&self.target, records, timeout)
    }

    fn fix_hint(&self, err: &RequestError) -> String {
        err.fix_hint(&self.target, self.client.region())
    }

    fn drop_connections(&mut self) {
        self.client.drop_connections();
    }
}

#[cfg(test)]
mod tests;
