//! The flusher thread: the only thread that talks to Kinesis. It owns all delivery state
//! (the buffer's far end, what it knows of Kinesis, the invocations' history) and runs the
//! chain the module docs of `delivery` map: it opens a window on each [`Control`], looks
//! (`view`), asks the window for the next step (`window::next_step`), and sends a request
//! (`request::send`), waits (for telemetry, a backoff, a deadline) or closes and
//! acknowledges. Nothing is in flight when it acknowledges, and no request outlives the
//! window's end (`timeline`). Between windows it sends nothing; on Lambda Managed Instances
//! one continuous window stays open until SHUTDOWN.
//!
//! On INVOKE it decides whether to hold the invocation (`pacing`): a held window stays open
//! until the invocation's `platform.runtimeDone` is delivered and sends continuously
//! meanwhile; a window that is not held sends what is due and closes.
//!
//! The added-time budget (`KINESIS_TELEMETRY_MAX_ADDED_MS`): once an invocation's
//! runtimeDone has arrived, its window ends within the budget whatever Kinesis does. The
//! flusher closes it itself by then (`timeline::after_done_end`); should a request still be
//! in flight, the lifecycle loop cuts it (`control`). While Kinesis is failing, slow or
//! unreachable no invocation is held, and a request is made only in the time the function is
//! expected to run anyway (`window::next_step`).
//!
//! A fatal answer drops exactly the batch it refused, counted under the AWS code and logged
//! once per cause (`request`); an INVOKE window then closes (no hot loop), SHUTDOWN goes on
//! with the next batch.

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{select, Receiver, Sender};
use log::{info, warn};

use crate::delivery::congestion::Congestion;
use crate::delivery::control::{Ack, Control, FlusherHandle};
use crate::delivery::health::Health;
use crate::delivery::pacing::{self, History, Hold, Pacing};
use crate::delivery::records::RecordSettings;
use crate::delivery::request::{self, Bounds, Link, Said, Sent};
use crate::delivery::sink::Sink;
use crate::delivery::timeline;
use crate::delivery::window::{self, Close, Step, View, Window, WindowKind};
use crate::kinesis::{Http, RequestError};
use crate::metrics::Metrics;
use crate::rng::Rng;
use crate::stats::{DropReason, Stats};
use crate::store::buffer::Buffer;

/// With no invocation to wait for at SHUTDOWN, the platform's last batch is taken to be in
/// once no telemetry has arrived for this many buffering timeouts (at least `MIN_QUIET`).
const QUIET_TIMEOUTS: u32 = 4;
const MIN_QUIET: Duration = Duration::from_millis(200);

/// Flusher settings, assembled from the environment by `config`.
#[derive(Debug, Clone)]
pub struct Settings {
    pub pacing: Pacing,
    pub records: RecordSettings,
    pub http: Http,
    pub shutdown_grace: Duration,
    /// The subscription's buffering timeout (how long the platform may sit on telemetry).
    pub buffering_timeout: Duration,
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

/// Starts the flusher thread, and the connect probe that tells it, before the first
/// invocation, whether Kinesis can be reached.
pub fn spawn<S: Sink>(parts: Parts<S>) -> std::io::Result<FlusherHandle> {
    let (control, control_rx) = crossbeam_channel::bounded(4);
    let (ack_tx, acks) = crossbeam_channel::bounded(4);
    let dones = parts.buffer.dones();
    let interrupt = parts.sink.interrupt();
    let max_added = parts.settings.pacing.max_added;
    let (probe_tx, probe_rx) = crossbeam_channel::bounded(1);
    let probe_pending = Arc::new(AtomicBool::new(false));
    let mut flusher = Flusher::new(parts);
    if let Some(probe) = flusher.sink.connect_probe() {
        // Off the path to the first /event/next (a connect still waiting at the freeze after
        // init sends nothing; the first invocation's /event/next cuts it).
        probe_pending.store(true, Relaxed);
        let pending = probe_pending.clone();
        std::thread::Builder::new()
            .name("connect-probe".into())
            .stack_size(64 << 10)
            .spawn(move || {
                let started = Instant::now();
                let result = probe();
                pending.store(false, Relaxed);
                let _ = probe_tx.send((result, started.elapsed()));
            })?;
        flusher.probe_pending = true;
    }
    std::thread::Builder::new()
        .name("flusher".into())
        .stack_size(1024 * 1024)
        .spawn(move || flusher.run(control_rx, ack_tx, probe_rx))?;
    Ok(FlusherHandle::new(
        control,
        acks,
        dones,
        max_added,
        interrupt,
        probe_pending,
    ))
}

/// The outcome of the connect probe and how long it took.
type Probed = (Result<Duration, RequestError>, Duration);

/// An open window and what the flusher learned in it.
struct Open {
    w: Window,
    /// The invocation's request id (INVOKE windows).
    request_id: Option<Box<str>>,
    /// Ticket of the invocation's runtimeDone, once it arrived, and when it arrived.
    done: Option<(u64, Instant)>,
}

/// The flusher's state: its fields are its own (a request borrows what it needs as a
/// [`Link`]).
struct Flusher<S: Sink> {
    sink: S,
    settings: Settings,
    stats: Arc<Stats>,
    buffer: Arc<Buffer>,
    woken: Receiver<()>,
    rng: Rng,
    health: Health,
    /// The stream's send rate, once Kinesis throttled.
    congestion: Congestion,
    /// What was logged of Kinesis' episodes and refusals.
    said: Said,
    history: History,
    /// The last held invocation's request id (to see whether its runtimeDone came late).
    last_held: Option<Box<str>>,
    /// The last invocation's request id and INVOKE (to learn how long it ran).
    last_invoke: Option<(Box<str>, Instant)>,
    /// The last request: when, and how many invocations had been seen then.
    last_attempt: Option<(Instant, usize)>,
    /// The start-up connect probe has not answered yet: no invocation is held until it has
    /// (an unreachable Kinesis must not cost the first invocations their budget).
    probe_pending: bool,
    received_bytes_at_invoke: u64,
    last_hold: Option<Hold>,
    open: Option<Open>,
    slow_logged: bool,
    no_done_logged: bool,
    /// Spilled events lost so far (already counted).
    spill_lost: u64,
    metrics: Metrics,
}

impl<S: Sink> Flusher<S> {
    fn new(p: Parts<S>) -> Self {
        Flusher {
            sink: p.sink,
            settings: p.settings,
            stats: p.stats,
            buffer: p.buffer,
            woken: p.woken,
            rng: Rng::new(),
            health: Health::default(),
            congestion: Congestion::default(),
            said: Said::default(),
            history: History::default(),
            last_held: None,
            last_invoke: None,
            last_attempt: None,
            probe_pending: false,
            received_bytes_at_invoke: 0,
            last_hold: None,
            open: None,
            slow_logged: false,
            no_done_logged: false,
            spill_lost: 0,
            metrics: p.metrics,
        }
    }

    /// What a request reads and changes, borrowed for its duration.
    fn link(&mut self) -> Link<'_, S> {
        Link {
            sink: &mut self.sink,
            buffer: &self.buffer,
            stats: &self.stats,
            health: &mut self.health,
            congestion: &mut self.congestion,
            rng: &mut self.rng,
            said: &mut self.said,
            records: &self.settings.records,
            http: &self.settings.http,
            max_added: self.settings.pacing.max_added,
        }
    }

    /// Runs until SHUTDOWN has been handled or the lifecycle loop is gone.
    fn run(mut self, control_rx: Receiver<Control>, ack_tx: Sender<Ack>, probe: Receiver<Probed>) {
        let mut probe = Some(probe);
        loop {
            self.buffer.listen(self.open.is_some());
            self.note_done();
            let decided = self.open.as_ref().map(|o| {
                let view = self.view(o);
                (window::next_step(&o.w, &view), view)
            });
            let wait_until = match decided {
                None => None,
                Some((Step::Send, view)) => {
                    self.send_in_window(&view);
                    continue;
                }
                Some((Step::Close(reason), _)) => {
                    let done = self.close(reason, &ack_tx);
                    if done {
                        return;
                    }
                    continue;
                }
                Some((Step::Wait(t), _)) => Some(t),
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
                        Some(WindowKind::Continuous)
                    ) =>
                {
                    timeout.min(t.saturating_duration_since(Instant::now()))
                }
                _ => timeout,
            };
            let never = crossbeam_channel::never();
            select! {
                recv(control_rx) -> msg => match msg {
                    Ok(c) => {
                        // The probe's answer first, if it is in: the hold decision needs it.
                        if let Some(Ok((result, took))) = probe.as_ref().map(Receiver::try_recv) {
                            probe = None;
                            self.probe_pending = false;
                            request::probed(self.link(), result, took);
                        }
                        self.open_window(c, &ack_tx)
                    }
                    Err(_) => return,
                },
                recv(self.woken) -> _ => {},
                recv(probe.as_ref().unwrap_or(&never)) -> r => {
                    probe = None;
                    self.probe_pending = false;
                    if let Ok((result, took)) = r {
                        request::probed(self.link(), result, took);
                    }
                },
                default(timeout) => {},
            }
            if matches!(
                self.open.as_ref().map(|o| &o.w.kind),
                Some(WindowKind::Continuous)
            ) {
                self.maybe_emit_metrics();
            }
        }
    }

    /// Once the open invocation's runtimeDone has arrived, the window ends within the
    /// added-time budget.
    fn note_done(&mut self) {
        let Some(o) = self.open.as_mut() else {
            return;
        };
        if o.done.is_some() {
            return;
        }
        let Some(id) = o.request_id.as_deref() else {
            return;
        };
        let (Some(ticket), Some(at)) = (self.buffer.done_ticket(id), self.buffer.done_at(id))
        else {
            return;
        };
        o.done = Some((ticket, at));
        o.w.until = timeline::after_done_end(o.w.until, at, self.settings.pacing.max_added);
    }

    /// After a SnapStart restore every copy of the snapshot held the same generator state
    /// and connections: draw a new seed from the OS, and forget the pool.
    fn restored(&mut self) {
        self.rng = Rng::new();
        self.sink.drop_connections();
    }

    /// Opens the window a [`Control`] orders (after a restore, reseeds instead); a window
    /// still open is acknowledged first (the lifecycle stopped waiting for it).
    fn open_window(&mut self, c: Control, ack_tx: &Sender<Ack>) {
        if let Control::Restored = c {
            return self.restored();
        }
        let now = Instant::now();
        if let Some(old) = self.open.take() {
            let _ = ack_tx.try_send(Ack(old.w.id));
        }
        let (id, kind, until, request_id) = match c {
            Control::Invoke {
                window,
                request_id,
                deadline,
            } => {
                let (kind, until, id) = self.invoke_window(now, request_id, deadline);
                (window, kind, until, Some(id))
            }
            Control::Shutdown {
                window,
                until,
                last_request,
            } => (
                window,
                self.shutdown_window(now, until, last_request),
                until,
                None,
            ),
            Control::Continuous => {
                info!("Lambda Managed Instances: sending continuously (no freeze, concurrent invocations)");
                let forever = now + Duration::from_secs(100 * 365 * 86_400);
                (0, WindowKind::Continuous, forever, None)
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
            request_id,
            done: None,
        });
    }

    /// An INVOKE's window: what the last invocation taught, whether to hold this one, and
    /// where its window ends.
    fn invoke_window(
        &mut self,
        now: Instant,
        request_id: String,
        deadline: Instant,
    ) -> (WindowKind, Instant, Box<str>) {
        self.learn_from_the_last_invocation(now);
        // Not before the start-up connect probe has answered: an unreachable Kinesis
        // must not cost the first invocations their budget.
        let fit =
            !self.probe_pending && self.health.fit_to_hold(now, self.settings.pacing.max_added);
        let hold = pacing::decide(
            &self.settings.pacing,
            &self.history,
            &self.buffer.level(),
            self.buffer.cap(),
            fit,
            self.congestion.at_limit(),
        );
        self.note_hold(hold);
        let until = timeline::invoke_window_end(now, deadline);
        let id = request_id.into_boxed_str();
        self.last_invoke = Some((id.clone(), now));
        let hold = hold.hold.then(|| id.clone());
        self.last_held.clone_from(&hold);
        (WindowKind::Invoke { hold }, until, id)
    }

    /// Notes an INVOKE at `now` in the history, with what the invocation before it showed:
    /// how long it ran, whether its runtimeDone came late, how much telemetry it brought.
    fn learn_from_the_last_invocation(&mut self, now: Instant) {
        self.history.invoked(now);
        // How long the last invocation ran, whether or not its window was still open
        // when its runtimeDone came.
        if let Some((id, opened)) = self.last_invoke.take() {
            if let Some(at) = self.buffer.done_at(&id).filter(|at| *at >= opened) {
                self.history.ran(at - opened);
            }
        }
        if let Some(id) = self.last_held.take() {
            if self.buffer.done_ticket(&id).is_some() {
                // It came, late: the platform does send runtimeDone.
                self.history.missed_runtime_done = 0;
            }
        }
        let received = self.stats.received_bytes.load(Relaxed);
        self.history.last_invocation_bytes =
            (received - self.received_bytes_at_invoke.min(received)) as usize;
        self.received_bytes_at_invoke = received;
    }

    /// SHUTDOWN's window: wait for the platform's last batch (up to the grace, or a quiet
    /// period when there is no invocation's report to wait for), deliver everything.
    fn shutdown_window(
        &self,
        now: Instant,
        until: Instant,
        last_request: Option<String>,
    ) -> WindowKind {
        let grace = timeline::grace_end(now, self.settings.shutdown_grace, until);
        let quiet = (self.settings.buffering_timeout * QUIET_TIMEOUTS).max(MIN_QUIET);
        WindowKind::Shutdown {
            grace_end: grace,
            last_request: last_request.map(String::into_boxed_str),
            quiet,
        }
    }

    /// Logs once when the adaptive decision switches, and why.
    fn note_hold(&mut self, hold: Hold) {
        let was = self.last_hold.replace(hold);
        let flipped = was.is_none_or(|h| h.hold != hold.hold);
        let adaptive = self.settings.pacing.strategy == pacing::Strategy::Adaptive;
        let runtime_done_missing = [Some(hold), was].iter().flatten().any(|h| {
            matches!(
                h.reason,
                pacing::Reason::NoRuntimeDone
                    | pacing::Reason::Unhealthy
                    | pacing::Reason::StreamAtLimit
            )
        });
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
        let continuous = matches!(o.w.kind, WindowKind::Continuous);
        let gap = if continuous {
            Some(Duration::ZERO)
        } else {
            self.history.expected_gap()
        };
        let (done_seen, done_pending) = match o.done {
            Some((ticket, _)) => (true, self.buffer.unsettled_through(ticket)),
            None => (false, false),
        };
        // While the stream's send rate is limited, the next request waits until it may carry
        // what it can hold of what is queued (up to a second's worth): few, full requests.
        // A fixed key gets one record per request (see `records`).
        let r = &self.settings.records;
        let next_request = match r.partition_key {
            crate::event::key::PartitionKeyMode::Random => level.bytes,
            _ => level.bytes.min(r.target_bytes),
        };
        let rate_wait = self.congestion.wait(now, next_request);
        let run_left = match o.w.kind {
            WindowKind::Invoke { .. } => self
                .history
                .expected_run(self.settings.buffering_timeout)
                .map(|run| run.saturating_sub(now.saturating_duration_since(o.w.opened))),
            _ => None,
        };
        let report_seen = match &o.w.kind {
            WindowKind::Shutdown {
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
            backoff_until: self.health.backoff_until(now).max(rate_wait),
            struggling: self.health.struggling(),
            // SHUTDOWN's drain is the last chance: it does not wait for the send rate (its
            // resends are spaced by the base backoff).
            probe_from: self.health.probe_from(now),
            time_needed: self.health.time_needed(now),
            failing: self.health.unhealthy(now, self.settings.pacing.max_added),
            run_left,
            recovery_probe: self.recovery_probe_due(now),
        }
    }

    fn recovery_probe_due(&self, now: Instant) -> bool {
        let (since, invocations) =
            self.last_attempt
                .map_or((Duration::MAX, usize::MAX), |(at, seen)| {
                    (
                        now.saturating_duration_since(at),
                        self.history.seen().saturating_sub(seen),
                    )
                });
        pacing::recovery_probe_due(self.health.failing(), invocations, since)
    }

    /// One request inside the open window, then what it teaches the window.
    /// `v`: the view the window decided on (what it says of Kinesis and the function's run).
    fn send_in_window(&mut self, v: &View) {
        let Some(o) = self.open.as_mut() else {
            return;
        };
        let now = Instant::now();
        o.w.requests += 1;
        self.last_attempt = Some((now, self.history.seen()));
        let max_added = self.settings.pacing.max_added;
        let bounds = Bounds::in_window(&o.w, v, &self.health, max_added, now);
        let sent = request::send(self.link(), bounds);
        self.count_spill_losses();
        if let Some(o) = self.open.as_mut() {
            // A fatal refusal, or a request its window ended: the invocation gets no more.
            o.w.refused |= sent.is_fatal() || sent == Sent::Cut;
        }
    }

    /// Counts spilled events lost to a damaged spill file since the last look.
    fn count_spill_losses(&mut self) {
        let lost = self.buffer.spill_lost();
        if lost > self.spill_lost {
            self.stats
                .add_dropped(DropReason::SpillCorrupt, lost - self.spill_lost);
            self.spill_lost = lost;
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
            Close::TooSlow
                if !self.slow_logged
                    && self.said.no_trouble()
                    && self.health.time_needed(Instant::now()) > self.settings.pacing.max_added =>
            {
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
        let shutdown = matches!(o.w.kind, WindowKind::Shutdown { .. });
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

#[cfg(test)]
mod tests;
