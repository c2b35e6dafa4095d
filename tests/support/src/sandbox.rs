//! The local sandbox: a simulated Lambda execution environment around the real extension
//! binary, built on the strict fakes ([`FakeRuntime`](crate::FakeRuntime) for the
//! Extensions and Telemetry APIs, [`FakeKinesis`](crate::FakeKinesis) for PutRecords) and
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
//! Used by the `sandbox` binary (the README's `./build.sh local`, and the benchmarks)
//! and by `tests/sandbox.rs`. Linux only (signals, `/proc`).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;
use serde_json::{json, Value};

use crate::rng::fresh_uuid;
use crate::{clock, EventFactory, Lambda, LambdaOptions, RuntimeConfig};

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

/// Emitted, delivered, lost and duplicated events of one type.
#[derive(Clone, Debug, Default, Serialize)]
pub struct TypeCount {
    pub emitted: u64,
    pub delivered: u64,
    pub lost: u64,
    pub duplicated: u64,
}

/// Nearest-rank percentiles of a set of durations, in milliseconds.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Percentiles {
    pub count: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Percentiles {
    pub fn of(samples: &[Duration]) -> Percentiles {
        let mut v: Vec<Duration> = samples.to_vec();
        v.sort();
        let at = |p: f64| -> f64 {
            if v.is_empty() {
                return 0.0;
            }
            let rank = ((p / 100.0) * v.len() as f64).ceil().max(1.0) as usize;
            ms(v[rank.min(v.len()) - 1])
        };
        Percentiles {
            count: v.len(),
            p50_ms: at(50.0),
            p99_ms: at(99.0),
            max_ms: at(100.0),
        }
    }
}

/// Process start to the extension's first calls.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Startup {
    pub register_ms: f64,
    pub subscribed_ms: Option<f64>,
    pub first_next_ms: f64,
}

/// What the mock Kinesis saw.
#[derive(Clone, Debug, Default, Serialize)]
pub struct KinesisReport {
    pub requests: u64,
    pub records_accepted: u64,
    pub data_bytes_accepted: u64,
    pub records_throttled: u64,
    pub requests_rejected: u64,
    pub connections_dropped: u64,
}

/// How SHUTDOWN went.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ShutdownReport {
    /// `deadlineMs` minus the moment SHUTDOWN was delivered.
    pub deadline_after_ms: u64,
    pub exit_code: Option<i32>,
    /// Exited (any code) before `deadlineMs`.
    pub before_deadline: bool,
    /// Time left until the deadline at exit (negative: late).
    pub margin_ms: Option<f64>,
    /// SHUTDOWN delivery to exit.
    pub took_ms: Option<f64>,
    /// The sandbox had to kill it at the deadline.
    pub killed: bool,
}

/// The result of one [`run`].
#[derive(Clone, Debug, Default, Serialize)]
pub struct Report {
    pub binary: String,
    pub invocations: usize,
    pub freeze: bool,
    pub freezes: u64,
    pub wall_ms: f64,
    /// Whether delivery was checked record by record (false with a real endpoint).
    pub verified: bool,
    pub by_type: BTreeMap<String, TypeCount>,
    pub emitted: u64,
    pub delivered: u64,
    pub lost: u64,
    /// Lost events that were emitted during the Kinesis outage window.
    pub lost_during_outage: u64,
    pub duplicated: u64,
    /// Records in Kinesis that match no emitted event byte for byte.
    pub unexpected_records: u64,
    pub telemetry_posts: u64,
    pub telemetry_posts_failed: u64,
    pub kinesis: KinesisReport,
    pub startup: Startup,
    /// `platform.runtimeDone` to the extension's `/event/next` (billed extension time).
    pub runtime_done_to_next: Percentiles,
    /// INVOKE delivery to the extension's `/event/next`.
    pub invoke_to_next: Percentiles,
    /// Invocations whose `/event/next` came after the INVOKE's deadline.
    pub invocations_past_deadline: u64,
    pub peak_rss_kb: Option<u64>,
    pub cpu_ms: Option<f64>,
    pub shutdown: ShutdownReport,
    /// The extension's own summary line and its `dropped=` count.
    pub extension_summary: Option<String>,
    pub extension_dropped: Option<u64>,
    /// Why this run failed (empty: it passed).
    pub failures: Vec<String>,
}

impl Report {
    /// Fills `failures`. `expect_loss`: loss is allowed if the extension counted it exactly.
    pub fn judge(&mut self, expect_loss: bool) {
        let mut f = Vec::new();
        if self.verified {
            if self.lost > 0 && !expect_loss {
                f.push(format!("{} events lost", self.lost));
            }
            if self.lost > 0 && self.extension_dropped != Some(self.lost) {
                f.push(format!(
                    "{} events lost but the extension reported dropped={:?}",
                    self.lost, self.extension_dropped
                ));
            }
            if self.duplicated > 0 {
                f.push(format!(
                    "{} events delivered more than once",
                    self.duplicated
                ));
            }
            if self.unexpected_records > 0 {
                f.push(format!(
                    "{} Kinesis records match no emitted event byte for byte",
                    self.unexpected_records
                ));
            }
        }
        if self.telemetry_posts_failed > 0 {
            f.push(format!(
                "{} telemetry POSTs to the extension failed",
                self.telemetry_posts_failed
            ));
        }
        if self.invocations_past_deadline > 0 {
            f.push(format!(
                "{} invocations held past their deadline",
                self.invocations_past_deadline
            ));
        }
        if self.shutdown.killed {
            f.push("killed at the SHUTDOWN deadline".to_owned());
        } else if !self.shutdown.before_deadline {
            f.push("did not exit before the SHUTDOWN deadline".to_owned());
        }
        if self.shutdown.exit_code.is_some_and(|c| c != 0) {
            f.push(format!("exit code {:?}", self.shutdown.exit_code));
        }
        self.failures = f;
    }

    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

// ---------------------------------------------------------------- process control (Linux)

/// Stops (`SIGSTOP`) or resumes (`SIGCONT`) the whole process, all threads.
pub fn signal(pid: u32, sig: i32) -> bool {
    // SAFETY: kill(2) with a pid we spawned and still own (not reaped yet).
    unsafe { libc::kill(pid as libc::pid_t, sig) == 0 }
}

/// Whether the child has exited, without reaping it (so `/proc/<pid>/stat` still holds
/// its final CPU times).
fn exited_unreaped(pid: u32) -> bool {
    // SAFETY: zeroed siginfo_t is a valid out-parameter for waitid.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    let r = unsafe {
        libc::waitid(
            libc::P_PID,
            pid as libc::id_t,
            &mut info,
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
        )
    };
    r == 0 && unsafe { info.si_pid() } != 0
}

/// `VmHWM` (peak resident set) of a live process, in kB.
pub fn peak_rss_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// User + system CPU time of a process (also of an unreaped zombie).
pub fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 and 15 (utime, stime); `rest` starts at field 3.
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Some(Duration::from_micros(ticks * 1_000_000 / hz))
}

/// Pins thread `tid` (0: the calling thread) to one core.
pub fn pin_thread(tid: i32, core: usize) -> bool {
    // SAFETY: a zeroed cpu_set_t is the empty set; CPU_SET stays within its bounds for
    // core < CPU_SETSIZE.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(core, &mut set);
        libc::sched_setaffinity(tid, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0
    }
}

/// Pins every current thread of this process to one core (new threads inherit it).
pub fn pin_own_threads(core: usize) {
    if let Ok(dir) = std::fs::read_dir("/proc/self/task") {
        for e in dir.flatten() {
            if let Some(tid) = e.file_name().to_str().and_then(|s| s.parse().ok()) {
                pin_thread(tid, core);
            }
        }
    }
}

/// Cores available to this process.
pub fn cores() -> usize {
    thread::available_parallelism().map_or(1, |n| n.get())
}

/// The simulated function is busy (or the sandbox is frozen) for `d`.
fn pass(d: Duration) {
    if !d.is_zero() {
        thread::sleep(d);
    }
}

// ---------------------------------------------------------------- telemetry

/// Events the sandbox emitted, keyed by exact text.
#[derive(Default)]
struct Ledger {
    emitted: HashMap<String, (String, Instant)>,
}

/// Makes the events of one run; platform shapes come from [`EventFactory`].
pub struct Telemetry {
    pub factory: EventFactory,
}

impl Default for Telemetry {
    fn default() -> Self {
        Telemetry {
            factory: EventFactory::new("sandbox-function"),
        }
    }
}

impl Telemetry {
    /// A `function` event of about `bytes` bytes of JSON text, in the given log format.
    pub fn function(&mut self, request_id: &str, format: LogFormat, bytes: usize) -> String {
        let m = self.factory.marker();
        let now = clock::iso8601_ms(SystemTime::now());
        let build = |pad: &str| -> String {
            match format {
                LogFormat::Text => json!({"time": now, "type": "function",
                    "record": format!("{now}\t{request_id}\tINFO\t{m} {pad}\n")}),
                LogFormat::Json => json!({"time": now, "type": "function",
                    "record": {"timestamp": now, "level": "INFO", "requestId": request_id,
                               "message": format!("{m} {pad}")}}),
            }
            .to_string()
        };
        let short = build("");
        build(&"x".repeat(bytes.saturating_sub(short.len())))
    }

    pub fn init_runtime_done(&mut self, took: Duration) -> String {
        json!({"time": clock::iso8601_ms(SystemTime::now()), "type": "platform.initRuntimeDone",
               "record": {"initializationType": "on-demand", "phase": "init", "status": "success",
                          "spans": [{"name": "runtimeInit", "start": clock::iso8601_ms(SystemTime::now() - took),
                                     "durationMs": ms(took)}],
                          "marker": self.factory.marker()}})
        .to_string()
    }

    pub fn init_report(&mut self, took: Duration) -> String {
        json!({"time": clock::iso8601_ms(SystemTime::now()), "type": "platform.initReport",
               "record": {"initializationType": "on-demand", "phase": "init", "status": "success",
                          "metrics": {"durationMs": ms(took)}, "marker": self.factory.marker()}})
        .to_string()
    }
}

// ---------------------------------------------------------------- the run

struct Run<'a> {
    cfg: &'a SandboxConfig,
    lambda: Lambda,
    tel: Telemetry,
    ledger: Ledger,
    frozen: bool,
    freezes: u64,
    peak_rss_kb: Option<u64>,
    outage: Arc<Mutex<Option<(Instant, Instant)>>>,
}

impl Run<'_> {
    fn emit(&mut self, text: String) {
        let kind = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v["type"].as_str().map(str::to_owned))
            .unwrap_or_else(|| "?".to_owned());
        self.lambda.runtime.push_raw_event(text.clone());
        let prev = self.ledger.emitted.insert(text, (kind, Instant::now()));
        debug_assert!(prev.is_none(), "emitted events must be unique");
    }

    fn emit_value(&mut self, v: Value) {
        self.emit(v.to_string());
    }

    fn sample(&mut self) {
        if let Some(kb) = peak_rss_kb(self.lambda.pid()) {
            self.peak_rss_kb = Some(self.peak_rss_kb.unwrap_or(0).max(kb));
        }
    }

    /// The runtime and the extension are in `/event/next`: hold telemetry, stop the process.
    fn freeze(&mut self) -> Result<(), String> {
        if !self.cfg.workload.freeze || self.frozen {
            return Ok(());
        }
        if !self.lambda.runtime.pause_telemetry(Duration::from_secs(10)) {
            return Err("the telemetry pusher did not pause".to_owned());
        }
        if !signal(self.lambda.pid(), libc::SIGSTOP) {
            return Err("SIGSTOP failed (did the extension exit?)".to_owned());
        }
        self.frozen = true;
        self.freezes += 1;
        Ok(())
    }

    fn thaw(&mut self) {
        if self.frozen {
            signal(self.lambda.pid(), libc::SIGCONT);
            self.lambda.runtime.resume_telemetry();
            self.frozen = false;
        }
    }

    fn fail(&self, what: &str) -> String {
        format!("{what}\n{}", self.lambda.log_text())
    }

    fn init(&mut self) -> Result<Startup, String> {
        let w = &self.cfg.workload;
        let v = self.tel.factory.init_start();
        self.emit_value(v);
        pass(w.init_duration);
        let t = self.tel.init_runtime_done(w.init_duration);
        self.emit(t);
        if !self.lambda.runtime.wait_for_next_calls(1, INIT_LIMIT) {
            return Err(self.fail("init: the extension did not call /event/next within 10 s"));
        }
        let t = self
            .tel
            .init_report(self.lambda.spawned_at.elapsed().max(w.init_duration));
        self.emit(t);
        let t0 = self.lambda.spawned_at;
        let rt = &self.lambda.runtime;
        let at = |suffix: &str| rt.calls_to(suffix).first().map(|c| c.received_at - t0);
        let first_next = rt
            .next_call(0)
            .map(|c| c.received_at - t0)
            .unwrap_or_default();
        Ok(Startup {
            register_ms: at("/register").map(ms).unwrap_or_default(),
            subscribed_ms: at("/telemetry").map(ms),
            first_next_ms: ms(first_next),
        })
    }

    fn start_outage(&self) {
        let Some((start, len)) = self.cfg.faults.outage else {
            return;
        };
        let (k, window) = (self.lambda.kinesis.handle(), self.outage.clone());
        thread::spawn(move || {
            pass(start);
            k.outage_for(len, 503);
            let now = Instant::now();
            *window.lock().unwrap() = Some((now, now + len));
        });
    }

    /// One invocation; returns (runtimeDone → /next, INVOKE → /next, past deadline).
    fn invoke(&mut self, i: usize) -> Result<(Duration, Duration, bool), String> {
        let w = self.cfg.workload.clone();
        let rt = self.lambda.runtime.handle();
        if w.deliver_before_invoke {
            rt.flush_telemetry(Duration::from_secs(10));
        }
        let before = rt.next_call_count();
        let id = fresh_uuid();
        rt.invoke_with(&id, w.function_timeout);
        if !rt.wait_delivered(i + 1, Duration::from_secs(10)) {
            return Err(self.fail(&format!("INVOKE {i} was not picked up")));
        }
        let invoked = rt
            .next_call(before - 1)
            .and_then(|c| c.answered_at)
            .unwrap_or_else(Instant::now);
        let v = self.tel.factory.platform_start(&id);
        self.emit_value(v);
        for _ in 0..w.lines_per_invoke {
            let t = self.tel.function(&id, w.log_format, w.line_bytes);
            self.emit(t);
        }
        pass(w.runtime_duration);
        let v = self.tel.factory.runtime_done(&id, w.runtime_duration);
        self.emit_value(v);
        let done = Instant::now();
        let bound = w.function_timeout + Duration::from_secs(2);
        if !rt.wait_for_next_calls(before + 1, bound) {
            return Err(self.fail(&format!(
                "the extension did not come back to /event/next within {bound:?} of INVOKE {i}"
            )));
        }
        let next = rt.next_call(before).expect("waited for it").received_at;
        // Lambda emits platform.report once every extension has called /event/next.
        let v = self.tel.factory.report(&id, w.runtime_duration);
        self.emit_value(v);
        Ok((
            next.saturating_duration_since(done),
            next.saturating_duration_since(invoked),
            next > invoked + w.function_timeout,
        ))
    }

    fn progress(&self, i: usize, started: Instant) {
        let k = self.lambda.kinesis.stats();
        eprintln!(
            "[sandbox] {i:>5}/{} invocations | {:>6} events emitted | {:>6} records in Kinesis | {} freezes | RSS {} | {:.1} s",
            self.cfg.workload.invocations,
            self.ledger.emitted.len(),
            k.records_accepted,
            self.freezes,
            self.peak_rss_kb.map_or("?".to_owned(), |kb| format!("{:.1} MB", kb as f64 / 1024.0)),
            started.elapsed().as_secs_f64()
        );
    }

    /// SHUTDOWN, the platform's last batch, and the deadline.
    fn shutdown(&mut self) -> Result<(ShutdownReport, Option<Duration>), String> {
        self.thaw();
        self.sample();
        let rt = self.lambda.runtime.handle();
        let n = self.cfg.workload.invocations;
        let before = rt.next_call_count();
        rt.shutdown("spindown");
        if !rt.wait_delivered(n + 1, Duration::from_secs(5)) {
            return Err(self.fail("SHUTDOWN was not picked up"));
        }
        let call = rt.next_call(before - 1).expect("delivered");
        let delivered_at = call.answered_at.unwrap_or_else(Instant::now);
        let deadline_ms = call
            .event
            .as_ref()
            .and_then(|e| e["deadlineMs"].as_u64())
            .unwrap_or(0);
        let now_ms = clock::epoch_ms(SystemTime::now());
        let deadline = Instant::now() + Duration::from_millis(deadline_ms.saturating_sub(now_ms));

        // Watch the process until it exits or the deadline passes, sampling its memory.
        let pid = self.lambda.pid();
        let watcher = thread::spawn(move || {
            let mut peak = None::<u64>;
            loop {
                if let Some(kb) = peak_rss_kb(pid) {
                    peak = Some(peak.unwrap_or(0).max(kb));
                }
                if exited_unreaped(pid) {
                    return (Some(Instant::now()), cpu_time(pid), peak, false);
                }
                if Instant::now() >= deadline {
                    let cpu = cpu_time(pid);
                    signal(pid, libc::SIGKILL);
                    return (None, cpu, peak, true);
                }
                pass(Duration::from_millis(1));
            }
        });
        // The platform's last batch (incl. the last platform.report) goes out right away.
        rt.flush_telemetry(self.cfg.shutdown_phase);
        let (exited_at, cpu, peak, killed) = watcher.join().expect("watcher");
        if let Some(kb) = peak {
            self.peak_rss_kb = Some(self.peak_rss_kb.unwrap_or(0).max(kb));
        }
        let status = self.lambda.wait_exit(Duration::from_secs(5));
        Ok((
            ShutdownReport {
                deadline_after_ms: (deadline.saturating_duration_since(delivered_at).as_millis())
                    as u64,
                exit_code: status.and_then(|s| s.code()),
                before_deadline: exited_at.is_some_and(|t| t < deadline),
                margin_ms: exited_at.map(|t| {
                    if t <= deadline {
                        ms(deadline - t)
                    } else {
                        -ms(t - deadline)
                    }
                }),
                took_ms: exited_at.map(|t| ms(t.saturating_duration_since(delivered_at))),
                killed,
            },
            cpu,
        ))
    }

    /// Checks every Kinesis record off against the ledger.
    fn account(&self, report: &mut Report) {
        let mut by_type: BTreeMap<String, TypeCount> = BTreeMap::new();
        for (kind, _) in self.ledger.emitted.values() {
            by_type.entry(kind.clone()).or_default().emitted += 1;
        }
        report.emitted = self.ledger.emitted.len() as u64;
        if self.cfg.endpoint.is_some() {
            report.by_type = by_type;
            return;
        }
        report.verified = true;
        let mut seen: HashMap<&str, u64> = HashMap::new();
        for data in self.lambda.kinesis.record_data() {
            let text = String::from_utf8_lossy(&data);
            match self.ledger.emitted.get_key_value(text.as_ref()) {
                Some((k, _)) => *seen.entry(k.as_str()).or_default() += 1,
                None => report.unexpected_records += 1,
            }
        }
        let outage = *self.outage.lock().unwrap();
        for (text, (kind, at)) in &self.ledger.emitted {
            let c = by_type.entry(kind.clone()).or_default();
            match seen.get(text.as_str()).copied().unwrap_or(0) {
                0 => {
                    c.lost += 1;
                    report.lost += 1;
                    if outage.is_some_and(|(s, e)| *at >= s && *at <= e) {
                        report.lost_during_outage += 1;
                    }
                }
                n => {
                    c.delivered += 1;
                    report.delivered += 1;
                    c.duplicated += n - 1;
                    report.duplicated += n - 1;
                }
            }
        }
        report.by_type = by_type;
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
    let mut run = Run {
        cfg,
        lambda,
        tel: Telemetry::default(),
        ledger: Ledger::default(),
        frozen: false,
        freezes: 0,
        peak_rss_kb: None,
        outage: Arc::new(Mutex::new(None)),
    };
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

/// The report for people.
pub fn render(r: &Report) -> String {
    let mut o = String::new();
    let mut line = |s: String| {
        o.push_str(&s);
        o.push('\n');
    };
    line(format!(
        "== sandbox report: {} invocations, freeze {} ({} freezes), {:.1} s ==",
        r.invocations,
        if r.freeze { "on" } else { "off" },
        r.freezes,
        r.wall_ms / 1000.0
    ));
    line(format!(
        "{:<26} {:>9} {:>10} {:>6} {:>11}",
        "event type", "emitted", "delivered", "lost", "duplicated"
    ));
    for (t, c) in &r.by_type {
        line(format!(
            "{t:<26} {:>9} {:>10} {:>6} {:>11}",
            c.emitted, c.delivered, c.lost, c.duplicated
        ));
    }
    line(format!(
        "{:<26} {:>9} {:>10} {:>6} {:>11}",
        "total", r.emitted, r.delivered, r.lost, r.duplicated
    ));
    if !r.verified {
        line("(real endpoint: records not checked off; see the extension's summary)".into());
    }
    if r.lost_during_outage > 0 {
        line(format!(
            "lost while Kinesis was down: {}",
            r.lost_during_outage
        ));
    }
    if r.unexpected_records > 0 {
        line(format!("unexpected records: {}", r.unexpected_records));
    }
    let k = &r.kinesis;
    line(format!(
        "kinesis: {} requests, {} records ({} bytes), {} records throttled, {} requests rejected, {} connections dropped",
        k.requests, k.records_accepted, k.data_bytes_accepted, k.records_throttled, k.requests_rejected, k.connections_dropped
    ));
    line(format!(
        "telemetry: {} POSTs to the extension, {} failed",
        r.telemetry_posts, r.telemetry_posts_failed
    ));
    let s = &r.startup;
    line(format!(
        "startup: register {:.2} ms, subscribed {}, first /event/next {:.2} ms (from process start)",
        s.register_ms,
        s.subscribed_ms
            .map_or("never".to_owned(), |m| format!("{m:.2} ms")),
        s.first_next_ms
    ));
    let p = &r.runtime_done_to_next;
    line(format!(
        "runtimeDone -> extension /event/next: p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms ({} invocations, {} past deadline)",
        p.p50_ms, p.p99_ms, p.max_ms, p.count, r.invocations_past_deadline
    ));
    line(format!(
        "extension: peak RSS {}, CPU {}",
        r.peak_rss_kb
            .map_or("?".to_owned(), |kb| format!("{:.2} MB", kb as f64 / 1024.0)),
        r.cpu_ms.map_or("?".to_owned(), |c| format!("{c:.0} ms"))
    ));
    let sh = &r.shutdown;
    line(format!(
        "shutdown: deadline {} ms after SHUTDOWN; exited {} (code {:?}) after {} -> {}",
        sh.deadline_after_ms,
        if sh.killed {
            "NO, killed at the deadline".to_owned()
        } else if sh.before_deadline {
            format!(
                "{:.0} ms before the deadline",
                sh.margin_ms.unwrap_or_default()
            )
        } else {
            "after the deadline".to_owned()
        },
        sh.exit_code,
        sh.took_ms.map_or("?".to_owned(), |t| format!("{t:.0} ms")),
        if sh.before_deadline && !sh.killed {
            "ok"
        } else {
            "FAILED"
        }
    ));
    if let Some(sum) = &r.extension_summary {
        line(format!(
            "extension says: {}",
            sum.split("): ").nth(1).unwrap_or(sum)
        ));
    }
    if r.failures.is_empty() {
        line("RESULT: PASS".into());
    } else {
        line(format!("RESULT: FAIL — {}", r.failures.join("; ")));
    }
    o
}
