//! The local sandbox: a simulated Lambda execution environment around the real extension
//! binary, built on the strict fakes ([`FakeRuntime`](crate::fake_runtime::FakeRuntime) for the
//! Extensions and Telemetry APIs, [`FakeKinesis`](crate::fake_kinesis::FakeKinesis) for PutRecords) and
//! the harness that starts the process ([`Lambda`]).
//!
//! What one [`run`] does, the way Lambda does it:
//! - **Init**: starts the binary with a Lambda-like environment, emits
//!   `platform.initStart`, simulates the runtime's init, emits `platform.initRuntimeDone`,
//!   waits for the extension's first `/event/next`, then emits `platform.initReport`.
//! - **Invocations**: INVOKE (real `deadlineMs`), `platform.start`, K `function` records
//!   (Text or JSON log format, settable size), the simulated function's duration,
//!   `platform.runtimeDone`; then waits for the extension's `/event/next` and only then
//!   emits `platform.report`. Telemetry goes through the fake platform's pusher, which
//!   batches by the subscription's buffering settings in real time.
//! - **Freeze**: once the runtime and the extension have called `/event/next` and nothing
//!   runs, telemetry delivery is held (no POST in flight) and the process is stopped
//!   (`SIGSTOP`); it is resumed (`SIGCONT`) just before the next INVOKE or SHUTDOWN, and
//!   overdue telemetry goes out then, as after a real thaw.
//! - **Shutdown**: SHUTDOWN carries `deadlineMs` = now + (phase − runtime's share); the
//!   platform's last batch is POSTed right after it (as in the harness); the process is
//!   killed if it has not exited by the deadline, and that is a failure.
//!
//! Accounting: every emitted event's exact text is its marker (unique by construction:
//! fresh request and trace ids, numbered log lines), so each Kinesis record is checked
//! off byte for byte: lost, duplicated and unexpected records are counted per type.
//!
//! Here: the settings and [`run`], which strings the steps together; the steps and the
//! session's state in `session`; the [`Report`] and its pass/fail rules in `report`; the
//! text form in `render`; signals and `/proc` readings in [`crate::process`].
//!
//! Used by the `sandbox` binary (the README's `./build.sh local`, and the benchmarks)
//! and by `tests/sandbox.rs`. Linux only (signals, `/proc`).

mod render;
mod report;
mod session;

use std::path::PathBuf;
use std::thread;
use std::time::{Duration, Instant};

use serde::Serialize;

pub use render::render;
pub use report::{KinesisReport, Percentiles, Report, ShutdownReport, Startup, TypeCount};

use crate::process::{pin_own_threads, pin_thread};
use crate::rng::fresh_uuid;
use crate::{Lambda, LambdaOptions, RuntimeConfig};
use report::ms;
use session::Run;

/// Lambda's whole SHUTDOWN phase with external extensions.
pub const SHUTDOWN_PHASE: Duration = Duration::from_millis(2_000);
/// The runtime's share of the SHUTDOWN phase.
pub const RUNTIME_SHARE: Duration = Duration::from_millis(300);
/// Lambda caps the init phase at 10 s.
pub const INIT_LIMIT: Duration = Duration::from_secs(10);

/// How `function` records are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// A string per line (the Text log format).
    Text,
    /// An object per line (the JSON log format).
    Json,
}

/// When the next INVOKE comes.
#[derive(Clone, Copy, Debug)]
pub enum Pace {
    /// This long after the extension's `/event/next` (the sandbox is frozen meanwhile).
    Gap(Duration),
    /// Invocation `i` starts `i / rate` seconds after the first (at once when behind).
    Rate(f64),
}

/// What the simulated function does.
#[derive(Clone, Debug)]
pub struct Workload {
    pub invocations: usize,
    pub pace: Pace,
    /// The runtime's init (between initStart and initRuntimeDone).
    pub init_duration: Duration,
    /// Each invocation's duration (between platform.start and platform.runtimeDone).
    pub runtime_duration: Duration,
    /// `function` records per invocation.
    pub lines_per_invoke: usize,
    pub log_format: LogFormat,
    /// Size of each `function` event's JSON text.
    pub line_bytes: usize,
    pub freeze: bool,
    /// INVOKE `deadlineMs` = delivery + this.
    pub function_timeout: Duration,
    /// `function` records emitted after the last invocation, right before SHUTDOWN.
    pub burst_before_shutdown: usize,
    /// The platform sends its buffered telemetry before each INVOKE (bench: makes a flush due).
    pub deliver_before_invoke: bool,
}

impl Default for Workload {
    fn default() -> Self {
        Workload {
            invocations: 200,
            pace: Pace::Gap(Duration::from_millis(20)),
            init_duration: Duration::from_millis(30),
            runtime_duration: Duration::from_millis(5),
            lines_per_invoke: 5,
            log_format: LogFormat::Text,
            line_bytes: 200,
            freeze: true,
            function_timeout: Duration::from_secs(3),
            burst_before_shutdown: 0,
            deliver_before_invoke: false,
        }
    }
}

/// Fault switches of the mock Kinesis.
#[derive(Clone, Debug, Default)]
pub struct Faults {
    /// Fraction of records answered ProvisionedThroughputExceededException.
    pub throttle: f64,
    /// Fraction of requests answered 500 InternalFailure.
    pub fail_500: f64,
    /// Added before every answer.
    pub latency: Duration,
    /// Fraction of requests whose connection is closed without an answer.
    pub drop_connections: f64,
    /// (start after the first INVOKE, length): every request fails with 503 meanwhile.
    pub outage: Option<(Duration, Duration)>,
    pub seed: u64,
}

/// Everything a [`run`] needs.
#[derive(Clone, Debug)]
pub struct SandboxConfig {
    pub workload: Workload,
    pub faults: Faults,
    /// Send to this endpoint instead of the mock (e.g. a local moto server); delivery is
    /// then not verified record by record.
    pub endpoint: Option<String>,
    /// Stream name (the mock knows `telemetry-stream`).
    pub stream: Option<String>,
    /// Extra variables for the extension (after the defaults).
    pub env: Vec<(String, String)>,
    pub shutdown_phase: Duration,
    pub runtime_share: Duration,
    pub binary: Option<PathBuf>,
    /// Print a progress line to stderr every this many invocations (0: never).
    pub progress_every: usize,
    /// (extension's core, sandbox's core): pin both (benchmarks).
    pub pin: Option<(usize, usize)>,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        SandboxConfig {
            workload: Workload::default(),
            faults: Faults::default(),
            endpoint: None,
            stream: None,
            env: Vec::new(),
            shutdown_phase: SHUTDOWN_PHASE,
            runtime_share: RUNTIME_SHARE,
            binary: None,
            progress_every: 0,
            pin: None,
        }
    }
}

/// Runs one sandbox session: init, the workload, SHUTDOWN; returns what happened.
/// `Err` when the session could not be carried out (the extension never came back, …),
/// with the extension's log.
pub fn run(cfg: &SandboxConfig) -> Result<Report, String> {
    let w = &cfg.workload;
    let runtime = RuntimeConfig {
        function_name: "sandbox-function".to_owned(),
        function_timeout: w.function_timeout,
        shutdown_budget: cfg.shutdown_phase.saturating_sub(cfg.runtime_share),
        telemetry_post_timeout: Duration::from_secs(10),
        ..RuntimeConfig::default()
    };
    let mut opts = LambdaOptions {
        runtime,
        binary: cfg.binary.clone(),
        wait_for_init: false,
        ..LambdaOptions::default()
    };
    if let Some(e) = &cfg.endpoint {
        opts = opts.env("KINESIS_TELEMETRY_ENDPOINT", e);
        for k in [
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_SESSION_TOKEN",
            "AWS_REGION",
        ] {
            if let Ok(v) = std::env::var(k) {
                opts = opts.env(k, &v);
            }
        }
    }
    if let Some(s) = &cfg.stream {
        opts = opts.env("KINESIS_TELEMETRY_STREAM", s);
    }
    for (k, v) in &cfg.env {
        opts = opts.env(k, v);
    }
    if let Some((ext_core, _)) = cfg.pin {
        pin_thread(0, ext_core);
    }
    let lambda = Lambda::try_start(opts)?;
    if let Some((_, own_core)) = cfg.pin {
        pin_own_threads(own_core);
    }
    let k = lambda.kinesis.handle();
    let f = &cfg.faults;
    if f.throttle > 0.0 {
        k.throttle_fraction(f.throttle, f.seed ^ 1);
    }
    if f.fail_500 > 0.0 {
        k.fail_fraction_of_requests(f.fail_500, 500, f.seed ^ 2);
    }
    if f.drop_connections > 0.0 {
        k.drop_fraction_of_requests(f.drop_connections, f.seed ^ 3);
    }
    if !f.latency.is_zero() {
        k.set_latency(f.latency);
    }
    let mut run = Run::new(cfg, lambda);
    let started = Instant::now();
    let startup = run.init()?;
    run.sample();
    run.freeze()?;

    let (mut done_to_next, mut invoke_to_next) = (Vec::new(), Vec::new());
    let mut past_deadline = 0;
    let first = Instant::now();
    for i in 0..w.invocations {
        match w.pace {
            Pace::Gap(g) => pass(g),
            Pace::Rate(r) if r > 0.0 => pass(
                (first + Duration::from_secs_f64(i as f64 / r))
                    .saturating_duration_since(Instant::now()),
            ),
            Pace::Rate(_) => {}
        }
        run.thaw();
        if i == 0 {
            run.start_outage();
        }
        let (a, b, late) = run.invoke(i)?;
        done_to_next.push(a);
        invoke_to_next.push(b);
        past_deadline += u64::from(late);
        run.sample();
        run.freeze()?;
        if cfg.progress_every > 0 && (i + 1).is_multiple_of(cfg.progress_every) {
            run.progress(i + 1, started);
        }
    }
    if w.burst_before_shutdown > 0 {
        let id = fresh_uuid();
        for _ in 0..w.burst_before_shutdown {
            let t = run.tel.function(&id, w.log_format, w.line_bytes);
            run.emit(t);
        }
    }
    let (shutdown, cpu) = run.shutdown()?;
    let mut report = Report {
        binary: crate::extension_binary().display().to_string(),
        invocations: w.invocations,
        freeze: w.freeze,
        freezes: run.freezes,
        wall_ms: ms(started.elapsed()),
        startup,
        runtime_done_to_next: Percentiles::of(&done_to_next),
        invoke_to_next: Percentiles::of(&invoke_to_next),
        invocations_past_deadline: past_deadline,
        peak_rss_kb: run.peak_rss_kb,
        cpu_ms: cpu.map(ms),
        shutdown,
        extension_summary: run.lambda.summary_line(),
        extension_dropped: run.lambda.summary_count("dropped"),
        ..Report::default()
    };
    if let Some(b) = &cfg.binary {
        report.binary = b.display().to_string();
    }
    let posts = run.lambda.runtime.telemetry_posts();
    report.telemetry_posts = posts.len() as u64;
    report.telemetry_posts_failed = posts.iter().filter(|p| p.status != Some(200)).count() as u64;
    let s = run.lambda.kinesis.stats();
    report.kinesis = KinesisReport {
        requests: s.requests,
        records_accepted: s.records_accepted,
        data_bytes_accepted: s.data_bytes_accepted,
        records_throttled: s.records_throttled,
        requests_rejected: s.rejected,
        connections_dropped: s.dropped_connections,
    };
    run.account(&mut report);
    Ok(report)
}

/// The simulated function is busy (or the sandbox is frozen) for `d`.
pub(super) fn pass(d: Duration) {
    if !d.is_zero() {
        thread::sleep(d);
    }
}
