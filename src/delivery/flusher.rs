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
//! The added-time budget (`KINESIS_TELEMETRY_MAX_ADDED_MS`): once an invocation's
//! runtimeDone has arrived, its window ends within the budget whatever Kinesis does. The
//! flusher closes it itself by then (`timeline::after_done_end`); should a request still be in
//! flight, the lifecycle loop stops waiting at the budget, cuts the request
//! ([`crate::kinesis::Interrupt`]: its connection is closed, nothing is in flight across the
//! freeze) and calls `/event/next`; the cut request's records are resent. While Kinesis is
//! failing, slow or unreachable no invocation is held, and a request is made only in the
//! time the function is expected to run anyway (`window::next_step`).
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

use crate::config::{Http, Pacing, RecordSettings};
use crate::delivery::congestion::Congestion;
use crate::delivery::health::{Health, RetryPolicy, Trouble};
use crate::delivery::pacing::{self, History, Hold};
use crate::delivery::timeline::{self, ACK_SLACK};
use crate::delivery::window::{self, Close, Kind, Step, View, Window};
use crate::kinesis::{Interrupt, PutRecordsResponse, Record, RequestError};
use crate::metrics::Metrics;
use crate::rng::Rng;
use crate::stats::{DropReason, Stats};
use crate::store::buffer::{Buffer, Done};

/// With no invocation to wait for at SHUTDOWN, the platform's last batch is taken to be in
/// once no telemetry has arrived for this many buffering timeouts (at least `MIN_QUIET`).
const QUIET_TIMEOUTS: u32 = 4;
const MIN_QUIET: Duration = Duration::from_millis(200);

/// Where records go. The real one is [`KinesisSink`]; tests script one.
pub trait Sink: Send + 'static {
    /// One PutRecords: at most `timeout` in all, `connect_timeout` of it for a new connection.
    fn put(
        &mut self,
        records: &[Record<'_>],
        timeout: Duration,
        connect_timeout: Duration,
    ) -> Result<PutRecordsResponse, RequestError>;

    /// What the user should fix for a fatal error (names the stream and region).
    fn fix_hint(&self, err: &RequestError) -> String;

    /// Where requests go, as log lines name it.
    fn endpoint(&self) -> String;

    /// How long the connects made since the last call took.
    fn connect_times(&mut self) -> Vec<Duration> {
        Vec::new()
    }

    /// Cuts the request in flight from another thread (the added-time budget).
    fn interrupt(&self) -> Option<Interrupt> {
        None
    }

    /// A connect to the endpoint, run on its own thread at start: can Kinesis be reached,
    /// and how long does a connect take?
    fn connect_probe(&self) -> Option<ConnectProbe> {
        None
    }

    /// Forgets pooled connections (a SnapStart restore: they died with the snapshot).
    fn drop_connections(&mut self) {}
}

/// See [`Sink::connect_probe`].
pub type ConnectProbe = Box<dyn FnOnce() -> Result<Duration, RequestError> + Send>;

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
    /// Each runtimeDone as it arrives.
    dones: Receiver<Done>,
    /// The added-time budget.
    max_added: Duration,
    interrupt: Option<Interrupt>,
    /// The start-up connect probe is still waiting: cut before an invocation's `/event/next`.
    probe_pending: Arc<std::sync::atomic::AtomicBool>,
    window: u64,
    late_logged: bool,
}

impl FlusherHandle {
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
        if self
            .probe_pending
            .load(std::sync::atomic::Ordering::Relaxed)
        {
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
    let probe_pending = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut flusher = Flusher::new(parts);
    if let Some(probe) = flusher.sink.connect_probe() {
        // Off the path to the first /event/next (a connect still waiting at the freeze after
        // init sends nothing; the first invocation's /event/next cuts it).
        probe_pending.store(true, std::sync::atomic::Ordering::Relaxed);
        let pending = probe_pending.clone();
        std::thread::Builder::new()
            .name("connect-probe".into())
            .stack_size(64 << 10)
            .spawn(move || {
                let started = Instant::now();
                let result = probe();
                pending.store(false, std::sync::atomic::Ordering::Relaxed);
                let _ = probe_tx.send((result, started.elapsed()));
            })?;
        flusher.probe_pending = true;
    }
    std::thread::Builder::new()
        .name("flusher".into())
        .stack_size(1024 * 1024)
        .spawn(move || flusher.run(control_rx, ack_tx, probe_rx))?;
    Ok(FlusherHandle {
        control,
        acks,
        dones,
        max_added,
        interrupt,
        probe_pending,
        window: 0,
        late_logged: false,
    })
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

pub(crate) struct Flusher<S: Sink> {
    pub(crate) sink: S,
    pub(crate) settings: Settings,
    pub(crate) stats: Arc<Stats>,
    pub(crate) buffer: Arc<Buffer>,
    woken: Receiver<()>,
    pub(crate) rng: Rng,
    pub(crate) health: Health,
    /// The stream's send rate, once Kinesis throttled.
    pub(crate) congestion: Congestion,
    /// The stream-at-its-limit line was logged for this episode.
    pub(crate) limit_logged: bool,
    history: History,
    /// The last held invocation's request id (to see whether its runtimeDone came late).
    last_held: Option<Box<str>>,
    /// The last invocation's request id and INVOKE (to learn how long it ran).
    last_invoke: Option<(Box<str>, Instant)>,
    /// The last request: when, and how many invocations had been seen then.
    pub(crate) last_attempt: Option<(Instant, usize)>,
    /// The start-up connect probe has not answered yet: no invocation is held until it has
    /// (an unreachable Kinesis must not cost the first invocations their budget).
    probe_pending: bool,
    received_bytes_at_invoke: u64,
    last_hold: Option<Hold>,
    open: Option<Open>,
    pub(crate) logged_causes: HashSet<String>,
    /// The kinds of trouble logged in the current episode (cleared when Kinesis recovers).
    pub(crate) trouble_logged: Vec<Trouble>,
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
            congestion: Congestion::default(),
            limit_logged: false,
            history: History::default(),
            last_held: None,
            last_invoke: None,
            last_attempt: None,
            probe_pending: false,
            received_bytes_at_invoke: 0,
            last_hold: None,
            open: None,
            logged_causes: HashSet::new(),
            trouble_logged: Vec::new(),
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
                        Some(Kind::Continuous)
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
                            self.probed(result, took);
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
                        self.probed(result, took);
                    }
                },
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

    /// What the connect probe at start taught: how long a connect takes, or that Kinesis
    /// cannot be reached (then no invocation is held, and the log says why, once).
    fn probed(&mut self, result: Result<Duration, RequestError>, took: Duration) {
        let now = Instant::now();
        match result {
            Ok(connect) => self.health.connected(now, connect),
            Err(e) => {
                let policy = self.retry_policy();
                self.health.observe(
                    now,
                    took,
                    crate::delivery::health::Observation::Retry,
                    &policy,
                    &mut self.rng,
                );
                let budget = self.settings.pacing.max_added;
                let err: Result<(), RequestError> = Err(e);
                self.log_trouble(crate::delivery::health::diagnose(&err, took, budget));
            }
        }
    }

    /// Logs a kind of trouble once per episode (see `health::diagnose`).
    pub(crate) fn log_trouble(&mut self, trouble: Option<Trouble>) {
        let Some(t) = trouble else {
            return;
        };
        if self.trouble_logged.iter().any(|was| was.same_kind(&t)) {
            return;
        }
        let endpoint = self.sink.endpoint();
        let held = self.buffer.held();
        match &t {
            Trouble::Unreachable(why) => warn!(
                "Kinesis at {endpoint} cannot be reached ({why}): check the function's VPC route to it \
                 (a NAT gateway or a Kinesis interface VPC endpoint), its security groups, and \
                 KINESIS_TELEMETRY_ENDPOINT. {held} events stay buffered; they are sent while \
                 functions run and at SHUTDOWN, never in the functions' time"
            ),
            Trouble::Hanging => warn!(
                "Kinesis at {endpoint} accepted the connection but did not answer in time: \
                 requests are cut at the added-time budget (KINESIS_TELEMETRY_MAX_ADDED_MS) and \
                 resent; {held} events stay buffered and are sent while functions run and at SHUTDOWN"
            ),
            Trouble::Slow(took) => warn!(
                "Kinesis at {endpoint} answers in about {} ms, more than the added-time budget \
                 (KINESIS_TELEMETRY_MAX_ADDED_MS = {} ms): invocations are not held; telemetry is \
                 sent while functions run and at SHUTDOWN",
                took.as_millis(),
                self.settings.pacing.max_added.as_millis()
            ),
        }
        self.trouble_logged.push(t);
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
        let (id, kind, until, request_id) = match c {
            Control::Invoke {
                window,
                request_id,
                deadline,
            } => {
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
                let received = self
                    .stats
                    .received_bytes
                    .load(std::sync::atomic::Ordering::Relaxed);
                self.history.last_invocation_bytes =
                    (received - self.received_bytes_at_invoke.min(received)) as usize;
                self.received_bytes_at_invoke = received;
                // Not before the start-up connect probe has answered: an unreachable Kinesis
                // must not cost the first invocations their budget.
                let fit = !self.probe_pending
                    && self.health.fit_to_hold(now, self.settings.pacing.max_added);
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
                (window, Kind::Invoke { hold }, until, Some(id))
            }
            Control::Shutdown {
                window,
                until,
                last_request,
            } => {
                let grace = timeline::grace_end(now, self.settings.shutdown_grace, until);
                let quiet = (self.settings.buffering_timeout * QUIET_TIMEOUTS).max(MIN_QUIET);
                let kind = Kind::Shutdown {
                    grace_end: grace,
                    last_request: last_request.map(String::into_boxed_str),
                    quiet,
                };
                (window, kind, until, None)
            }
            Control::Continuous => {
                info!("Lambda Managed Instances: sending continuously (no freeze, concurrent invocations)");
                (
                    0,
                    Kind::Continuous,
                    now + Duration::from_secs(100 * 365 * 86_400),
                    None,
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
            request_id,
            done: None,
        });
    }

    /// Logs once when the adaptive decision switches, and why.
    fn note_hold(&mut self, hold: Hold) {
        let was = self.last_hold.replace(hold);
        let flipped = was.is_none_or(|h| h.hold != hold.hold);
        let adaptive = self.settings.pacing.strategy == crate::config::Strategy::Adaptive;
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
        let continuous = matches!(o.w.kind, Kind::Continuous);
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
            crate::config::PartitionKeyMode::Random => level.bytes,
            _ => level.bytes.min(r.target_bytes),
        };
        let rate_wait = self.congestion.wait(now, next_request);
        let run_left = match o.w.kind {
            Kind::Invoke { .. } => self
                .history
                .expected_run(self.settings.buffering_timeout)
                .map(|run| run.saturating_sub(now.saturating_duration_since(o.w.opened))),
            _ => None,
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
        // While Kinesis is failing an invocation's request ends when its function is expected
        // to (the window's decision made sure that leaves time for one), or, a recovery probe,
        // within the added-time budget.
        let (mut until, mut probe) = (o.w.until, false);
        if let Kind::Invoke { .. } = &o.w.kind {
            if v.failing {
                match v.run_left {
                    Some(left) if left >= v.time_needed => until = until.min(now + left),
                    _ => {
                        until = timeline::probe_end(now, until, self.settings.pacing.max_added);
                        probe = true;
                    }
                }
            }
        }
        // While Kinesis is failing, a request is a probe (see `send_one`), except at SHUTDOWN:
        // the last window sends everything it can.
        probe |= self.health.struggling() && !matches!(o.w.kind, Kind::Shutdown { .. });
        // After the invocation's runtimeDone a request carries what the rest of the budget
        // can move, so that it is not cut.
        let max_bytes = match (&o.w.kind, o.done) {
            (Kind::Invoke { .. }, Some(_)) => self
                .health
                .bytes_within(now, until.saturating_duration_since(now)),
            _ => None,
        };
        let sent = self.send_one(until, probe, max_bytes);
        self.count_spill_losses();
        if let Some(o) = self.open.as_mut() {
            // A fatal refusal, or a request cut at the budget: the invocation gets no more.
            o.w.refused |= sent.is_fatal() || sent == crate::delivery::send::Sent::Cut;
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
                    && self.trouble_logged.is_empty()
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

/// The start-up connect probe waits at most this long (or the connect timeout, if shorter): a
/// TCP connect that takes longer, even across regions, means Kinesis cannot be reached.
pub const START_PROBE_TIMEOUT: Duration = Duration::from_millis(500);

/// The real [`Sink`]: PutRecords to one stream.
pub struct KinesisSink {
    client: crate::kinesis::KinesisClient,
    target: crate::kinesis::StreamTarget,
    /// The configured connect timeout (the start-up probe's).
    connect_timeout: Duration,
}

impl KinesisSink {
    pub fn new(
        client: crate::kinesis::KinesisClient,
        target: crate::kinesis::StreamTarget,
        connect_timeout: Duration,
    ) -> Self {
        KinesisSink {
            client,
            target,
            connect_timeout,
        }
    }
}

impl Sink for KinesisSink {
    fn put(
        &mut self,
        records: &[Record<'_>],
        timeout: Duration,
        connect_timeout: Duration,
    ) -> Result<PutRecordsResponse, RequestError> {
        self.client
            .put_records(&self.target, records, timeout, connect_timeout)
    }

    fn fix_hint(&self, err: &RequestError) -> String {
        err.fix_hint(&self.target, self.client.region())
    }

    fn endpoint(&self) -> String {
        self.client.url().trim_end_matches('/').to_owned()
    }

    fn connect_times(&mut self) -> Vec<Duration> {
        self.client.connect_times()
    }

    fn interrupt(&self) -> Option<Interrupt> {
        Some(self.client.interrupt())
    }

    fn connect_probe(&self) -> Option<ConnectProbe> {
        let url = self.client.url().to_owned();
        let timeout = self.connect_timeout.min(START_PROBE_TIMEOUT);
        let interrupt = self.client.interrupt();
        Some(Box::new(move || {
            crate::kinesis::probe_connect(&url, timeout, &interrupt)
        }))
    }

    fn drop_connections(&mut self) {
        self.client.drop_connections();
    }
}

#[cfg(test)]
mod tests;
