//! The local sandbox: a simulated Lambda execution environment around the real extension
//! binary, built on the strict fakes ([`FakeRuntime`](kte_test_support::fake_runtime::FakeRuntime) for the
//! Extensions and Telemetry APIs, [`FakeKinesis`](kte_test_support::fake_kinesis::FakeKinesis) for PutRecords) and
//! the harness that starts the process ([`Lambda`]).
//!
//! What one [`run`] does, the way Lambda does it:
//! - **Init**: starts the binary with a Lambda-like environment, emits
//!   `platform.initStart`, simulates the runtime's init, emits `platform.initRuntimeDone`,
//!   waits for the extension's first `/event/next`, then emits `platform.initReport`.
//! - **Invocations** (default Lambda): INVOKE (real `deadlineMs`), `platform.start`, K
//!   `function` records (Text or JSON log format, settable size), the simulated function's
//!   duration, `platform.runtimeDone`; then waits for the extension's `/event/next` and only
//!   then emits `platform.report`. Telemetry goes through the fake platform's pusher, which
//!   batches by the subscription's buffering settings in real time.
//! - **Freeze**: once the runtime and the extension have called `/event/next` and nothing
//!   runs, telemetry delivery is held (no POST in flight) and the process is stopped
//!   (`SIGSTOP`); it is resumed (`SIGCONT`) just before the next INVOKE or SHUTDOWN, and
//!   overdue telemetry goes out then, as after a real thaw.
//! - **Lambda Managed Instances** ([`Workload::managed_instances`]): the fake runtime refuses
//!   INVOKE registrations, nothing freezes, and N workers run invocations concurrently
//!   (`platform.start`, the function lines, the handler's duration, a slim `platform.report`;
//!   no `platform.runtimeDone`, no INVOKE reaches the extension). See `managed`.
//! - **Shutdown**: SHUTDOWN carries `deadlineMs` = now + (phase − runtime's share); the
//!   platform's last batch is POSTed right after it (as in the harness); the process is
//!   killed if it has not exited by the deadline, and that is a failure.
//!
//! Accounting: every emitted event's exact text is its marker (unique by construction:
//! fresh request and trace ids, numbered log lines), so each event in Kinesis (records
//! decoded as a consumer would, enrichment split off) is checked off byte for byte against
//! the ledger: lost, duplicated and unexpected events are counted per type, with how long
//! each took from emission to the stream, the stream order per partition key, and what the
//! records cost. See `account`.
//!
//! Here: the settings and [`run`], which strings the steps together; the ledger of emitted
//! events in `ledger`; the steps and the session's state in `session` (and `managed` for
//! Managed Instances workers); the fault switches in `faults`; what was in flight to Kinesis
//! at each `/event/next` in `in_flight`; fleets of environments sharing one stream in
//! `fleet`; gathering the measurements in `collect` and the checking off in `account`; the
//! extension's own counts in `counters`; the settings it reported using (never those asked
//! for) in `settings`; the [`Report`] and its pass/fail rules in `report`; the text form in
//! `render`; the extension's log lines in `echo`; signals and CPU readings in the harness's
//! [`process`](kte_test_support::process).
//!
//! Used by the `sandbox` binary (`src/bin/sandbox`: the README's `./build.sh local`, and the
//! benchmarks) and by the root package's `tests/sandbox.rs`. Linux only (signals, `/proc`).
#![forbid(unsafe_code)]

mod account;
mod collect;
mod counters;
mod echo;
mod faults;
mod fleet;
mod in_flight;
mod ledger;
mod managed;
mod render;
mod report;
mod session;
mod settings;

use std::path::PathBuf;
use std::thread;
use std::time::{Duration, Instant};

use serde::Serialize;

pub use counters::ExtensionCounters;
pub use echo::Echo;
pub use faults::{Faults, Outage};
pub use fleet::{render_fleet, run_fleet, FleetLine, FleetReport, ShardLoad};
pub use in_flight::InFlightReport;
pub use render::{describe, render};
pub use report::{
    Cost, FailedPost, KinesisReport, Order, Percentiles, Report, ShutdownReport, Startup, TypeCount,
};
pub use settings::RunSettings;

use fleet::Seat;
use kte_test_support::events::MANAGED_INSTANCES_INIT_TYPE;
use kte_test_support::fake_kinesis::{KinesisConfig, ShardLimits};
use kte_test_support::process::{pin_own_threads, pin_thread};
use kte_test_support::{Lambda, LambdaOptions, RuntimeConfig};
use session::Run;

/// Lambda's whole SHUTDOWN phase with external extensions.
pub const SHUTDOWN_PHASE: Duration = Duration::from_millis(2_000);
/// The runtime's share of the SHUTDOWN phase.
pub const RUNTIME_SHARE: Duration = Duration::from_millis(300);
/// Lambda caps the init phase at 10 s (default Lambda; Managed Instances allow more, but
/// the extension has no reason to take longer).
pub const INIT_LIMIT: Duration = Duration::from_secs(10);
/// The name the fake function has; every enriched event must name it.
pub const FUNCTION_NAME: &str = "sandbox-function";
/// The extension's invocation windows end this long before the deadline (`INVOKE_DEADLINE_MARGIN` in its `delivery/timeline.rs`).
pub const DEADLINE_MARGIN: Duration = Duration::from_millis(100);

/// How `function` records are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// A string per line (the Text log format).
    Text,
    /// An object per line (the JSON log format).
    Json,
}

impl LogFormat {
    pub fn name(self) -> &'static str {
        match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        }
    }
}

/// When the next invocation starts.
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
    /// Each invocation's duration (platform.start to platform.runtimeDone, or to the report
    /// on Managed Instances). At or beyond `function_timeout` the invocation times out.
    pub runtime_duration: Duration,
    /// `function` records per invocation.
    pub lines_per_invoke: usize,
    pub log_format: LogFormat,
    /// Size of each `function` event's JSON text.
    pub line_bytes: usize,
    /// Freeze between invocations (default Lambda only).
    pub freeze: bool,
    /// INVOKE `deadlineMs` = delivery + this.
    pub function_timeout: Duration,
    /// `function` records emitted after the last invocation, right before SHUTDOWN.
    pub burst_before_shutdown: usize,
    /// Time with no telemetry between the last invocation and SHUTDOWN (its CPU is
    /// reported as idle CPU). Frozen on default Lambda.
    pub idle_before_shutdown: Duration,
    /// The platform sends its buffered telemetry before each INVOKE (bench: makes a flush due).
    pub deliver_before_invoke: bool,
    /// Lambda Managed Instances: concurrent invocations, SHUTDOWN-only registration.
    pub managed_instances: bool,
    /// Runtime workers on Managed Instances (`AWS_LAMBDA_MAX_CONCURRENCY`).
    pub concurrency: usize,
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
            idle_before_shutdown: Duration::ZERO,
            deliver_before_invoke: false,
            managed_instances: false,
            concurrency: 4,
        }
    }
}

impl Workload {
    /// Whether the extension is frozen between invocations in this run.
    pub fn freezes(&self) -> bool {
        self.freeze && !self.managed_instances
    }
}

/// Everything a [`run`] needs.
#[derive(Clone, Debug)]
pub struct SandboxConfig {
    pub workload: Workload,
    pub faults: Faults,
    /// Send to this endpoint instead of the mock (e.g. a local moto server); delivery is
    /// then not verified record by record, and the verdict rests on the extension's counts.
    pub endpoint: Option<String>,
    /// Stream name (the mock knows `telemetry-stream`).
    pub stream: Option<String>,
    /// Extra variables for the extension (after the defaults; a later one wins).
    pub env: Vec<(String, String)>,
    pub shutdown_phase: Duration,
    pub runtime_share: Duration,
    /// Events the platform holds for a subscriber that falls behind before dropping them
    /// (`platform.logsDropped`); `None`: unbounded.
    pub telemetry_queue_limit: Option<usize>,
    pub binary: Option<PathBuf>,
    /// Print a progress line to stderr every this many invocations (0: never).
    pub progress_every: usize,
    /// Which of the extension's log lines to print while it runs.
    pub echo: Echo,
    /// (extension's core, sandbox's core): pin both (benchmarks).
    pub pin: Option<(usize, usize)>,
    /// Shards of the mock's stream, with Kinesis's per-shard write limits enforced
    /// (`None`: 4 shards without limits).
    pub shards: Option<u32>,
    /// Execution environments of the function, each its own extension process, Runtime
    /// API and freeze, writing to one mock Kinesis ([`run_fleet`]; 1: a plain [`run`]).
    pub environments: usize,
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
            telemetry_queue_limit: None,
            binary: None,
            progress_every: 0,
            echo: Echo::Nothing,
            pin: None,
            shards: None,
            environments: 1,
        }
    }
}

impl SandboxConfig {
    /// The value the extension sees for `name`: the last one set (the sandbox's own
    /// defaults first, then [`SandboxConfig::env`]).
    pub fn setting(&self, name: &str) -> Option<&str> {
        self.env
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Whether the extension is asked for NDJSON records (the default). Only used to key
    /// the ledger before the extension has said what it uses (events the sandbox makes hold
    /// no raw line breaks, so the keys are the same either way); the report shows the
    /// settings the extension reported using ([`RunSettings`]).
    fn asks_for_ndjson(&self) -> bool {
        self.setting("KINESIS_TELEMETRY_RECORD_FORMAT")
            .is_none_or(|v| v.trim().eq_ignore_ascii_case("ndjson"))
    }

    /// The mock Kinesis this configuration asks for.
    pub fn kinesis_config(&self) -> KinesisConfig {
        let mut k = KinesisConfig::default();
        if let Some(n) = self.shards {
            k.shard_count = n.max(1);
            k.shard_limits = Some(ShardLimits::default());
        }
        k
    }

    /// The stream the extension writes to.
    pub fn stream_name(&self) -> String {
        self.stream
            .clone()
            .unwrap_or_else(|| KinesisConfig::default().streams[0].clone())
    }

    /// Variables the sandbox sets for the mode (before [`SandboxConfig::env`], which may
    /// override them: e.g. `AWS_LAMBDA_INITIALIZATION_TYPE=on-demand` on Managed Instances
    /// tests the extension's fallback).
    fn mode_env(&self) -> Vec<(String, String)> {
        let w = &self.workload;
        if !w.managed_instances {
            return Vec::new();
        }
        vec![
            (
                "AWS_LAMBDA_INITIALIZATION_TYPE".to_owned(),
                MANAGED_INSTANCES_INIT_TYPE.to_owned(),
            ),
            (
                "AWS_LAMBDA_MAX_CONCURRENCY".to_owned(),
                w.concurrency.to_string(),
            ),
        ]
    }
}

fn start(cfg: &SandboxConfig, seat: Option<&Seat>) -> Result<Lambda, String> {
    let w = &cfg.workload;
    let runtime = RuntimeConfig {
        function_name: FUNCTION_NAME.to_owned(),
        function_timeout: w.function_timeout,
        shutdown_budget: cfg.shutdown_phase.saturating_sub(cfg.runtime_share),
        telemetry_post_timeout: Duration::from_secs(10),
        managed_instances: w.managed_instances,
        telemetry_queue_limit: cfg.telemetry_queue_limit,
        ..RuntimeConfig::default()
    };
    let mut opts = LambdaOptions {
        runtime,
        kinesis: cfg.kinesis_config(),
        binary: cfg.binary.clone(),
        wait_for_init: false,
        // The extension's own added-time budget, not the test harness's wider one: the
        // sandbox measures what users get.
        unset: vec!["KINESIS_TELEMETRY_MAX_ADDED_MS".to_owned()],
        ..LambdaOptions::default()
    };
    if let Some(seat) = seat {
        opts.kinesis.credentials = vec![seat.credentials.clone()];
        opts.shared_kinesis = Some(seat.kinesis.clone());
    }
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
    for (k, v) in cfg.mode_env().iter().chain(&cfg.env) {
        opts = opts.env(k, v);
    }
    if let Some((ext_core, _)) = cfg.pin {
        pin_thread(0, ext_core);
    }
    let lambda = Lambda::try_start(opts)?;
    if let Some((_, own_core)) = cfg.pin {
        pin_own_threads(own_core);
    }
    Ok(lambda)
}

/// Runs one sandbox session: init, the workload, SHUTDOWN; returns what happened (not yet
/// judged: see [`Report::judge`]). `Err` when the session could not be carried out (the
/// extension never came back, …), with the extension's log.
pub fn run(cfg: &SandboxConfig) -> Result<Report, String> {
    session(cfg, None).map(|(report, _)| report)
}

/// One session, alone or in a fleet (`seat`: the shared Kinesis, this environment's
/// credentials, the start line every environment waits at after its init). Returns the
/// report and when the invocations ran (the first one's start, the last one's end).
fn session(
    cfg: &SandboxConfig,
    seat: Option<&Seat>,
) -> Result<(Report, Option<(Instant, Instant)>), String> {
    let lambda = start(cfg, seat)?;
    let started = Instant::now();
    let mut run = Run::new(cfg, lambda);
    match seat {
        // The fleet scripts its shared Kinesis once.
        Some(seat) => run.access_key = Some(seat.credentials.access_key_id.clone()),
        None => run.faults.arm()?,
    }
    let startup = run.init();
    if let Some(seat) = seat {
        seat.line_up();
    }
    let startup = startup?;
    run.sample();
    run.freeze()?;
    let cpu_before = run.cpu_now();
    if cfg.workload.managed_instances {
        managed::invocations(&mut run, started)?;
    } else {
        run.invocations(started)?;
    }
    let cpu_after = run.cpu_now();
    run.after_invocations()?;
    let (shutdown, cpu) = run.shutdown()?;
    let mut report = run.report(started, startup, shutdown);
    report.cpu_ms = cpu.map(report::ms);
    if let (Some(a), Some(b)) = (cpu_before, cpu_after) {
        let n = cfg.workload.invocations.max(1) as u32;
        report.cpu_per_invocation_ms = Some(report::ms(b.saturating_sub(a) / n));
    }
    let first = run.invocations.iter().map(|i| i.started).min();
    let last = run.invocations.iter().map(|i| i.ended).max();
    Ok((report, first.zip(last)))
}

/// The simulated function is busy (or the sandbox is frozen) for `d`.
pub(crate) fn pass(d: Duration) {
    if !d.is_zero() {
        thread::sleep(d);
    }
}
