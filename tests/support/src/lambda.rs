//! The extension process under test, between its fakes: [`Lambda`] starts the real
//! binary with a Lambda-like environment and nothing else (`env_clear`): runtime API,
//! region, fake credentials with a session token, stream, endpoint, telemetry port 0 on
//! 127.0.0.1. Its stdout and stderr lines are captured into a shared log. Dropping a
//! [`Lambda`] kills the process if it is still running.
//!
//! Nothing here assumes a test runner except [`Lambda::start`] and the `assert_*`
//! helpers, which panic with the captured log on failure (use [`Lambda::try_start`] to
//! get an error): the sandbox binary uses the same harness.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{Receiver, RecvTimeoutError};
use serde_json::Value;

use crate::events::EventFactory;
use crate::fake_credentials::{CredentialsConfig, FakeCredentials};
use crate::fake_kinesis::{self, FakeKinesis, KinesisConfig};
use crate::fake_runtime::{FakeRuntime, RuntimeConfig};
use crate::telemetry_records::{self, Enriched};
use crate::{clock, extension_binary, pipes};

/// The added-time budget the harness gives the extension unless a test unsets it (see
/// [`Lambda::try_start`]).
pub const HARNESS_MAX_ADDED_MS: &str = "1000";

/// How to start a [`Lambda`].
#[derive(Clone, Debug)]
pub struct LambdaOptions {
    /// The fake Kinesis to start; its first credentials are the extension's.
    pub kinesis: KinesisConfig,
    /// A fake Kinesis already running (shared by several environments) instead of a new
    /// one from `kinesis` (which still gives the extension its region, stream and
    /// credentials).
    pub shared_kinesis: Option<FakeKinesis>,
    pub runtime: RuntimeConfig,
    /// Variables set after the defaults (override them).
    pub env: Vec<(String, String)>,
    /// Default variables to leave out.
    pub unset: Vec<String>,
    pub binary: Option<PathBuf>,
    /// Wait in `start` until the extension's first `/event/next` (end of its init).
    pub wait_for_init: bool,
    /// Bound on that wait (Lambda caps init at 10 s).
    pub init_timeout: Duration,
    /// How long each invocation's function runs: between its log lines and its
    /// `platform.runtimeDone` (0: the runtime is done at once).
    pub run_time: Duration,
    /// SnapStart's credentials: no access-key variables, a container credentials endpoint
    /// ([`FakeCredentials`], wired to the fake Kinesis) named by
    /// `AWS_CONTAINER_CREDENTIALS_FULL_URI`, its token in `AWS_CONTAINER_AUTHORIZATION_TOKEN`.
    pub container_credentials: Option<CredentialsConfig>,
}

impl Default for LambdaOptions {
    fn default() -> Self {
        LambdaOptions {
            kinesis: KinesisConfig::default(),
            shared_kinesis: None,
            runtime: RuntimeConfig::default(),
            env: Vec::new(),
            unset: Vec::new(),
            binary: None,
            wait_for_init: true,
            init_timeout: Duration::from_secs(10),
            run_time: Duration::ZERO,
            container_credentials: None,
        }
    }
}

impl LambdaOptions {
    /// Runs this binary (see [`crate::extension_under_test!`]).
    pub fn binary(mut self, path: impl Into<PathBuf>) -> Self {
        self.binary = Some(path.into());
        self
    }

    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    pub fn unset(mut self, key: &str) -> Self {
        self.unset.push(key.to_owned());
        self
    }

    /// Each invocation's function runs this long before its `platform.runtimeDone`.
    pub fn run_for(mut self, run_time: Duration) -> Self {
        self.run_time = run_time;
        self
    }

    /// Credentials from a container credentials endpoint only (see
    /// [`Self::container_credentials`]).
    pub fn container_credentials(mut self, config: CredentialsConfig) -> Self {
        self.container_credentials = Some(config);
        self
    }
}

/// What happened at SHUTDOWN. Tests judge it with [`Self::exited_ok_before_deadline`];
/// `deadline_ms` and `took` are for the `{:?}` of a failed assertion.
#[derive(Clone, Debug)]
pub struct ShutdownOutcome {
    /// Exit status, `None` if the process had not exited by the deadline plus a grace second.
    pub status: Option<ExitStatus>,
    /// The SHUTDOWN event's `deadlineMs`.
    pub deadline_ms: u64,
    /// Milliseconds between the process closing its output and the deadline (negative: late).
    pub margin_ms: Option<i64>,
    /// Time from SHUTDOWN delivery to exit.
    pub took: Option<Duration>,
}

impl ShutdownOutcome {
    /// Exit code 0, before `deadlineMs`.
    pub fn exited_ok_before_deadline(&self) -> bool {
        self.status.is_some_and(|s| s.success()) && self.margin_ms.is_some_and(|m| m > 0)
    }
}

/// One running extension process with its fakes.
pub struct Lambda {
    pub runtime: FakeRuntime,
    pub kinesis: FakeKinesis,
    /// The container credentials endpoint, when the options asked for one.
    pub credentials: Option<FakeCredentials>,
    pub events: EventFactory,
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
    pipes_closed: Receiver<SystemTime>,
    pipes_open: usize,
    output_closed_at: Option<SystemTime>,
    exit: Option<ExitStatus>,
    pushed: Vec<String>,
    pending_report: Option<String>,
    /// SnapStart: the restore was noted in the factory (the next report says so).
    restore_noted: bool,
    /// Whether the extension adds its enrichment object (`KINESIS_TELEMETRY_ENRICH`).
    enriched: bool,
    /// NDJSON records (`KINESIS_TELEMETRY_RECORD_FORMAT`, the default): an event's line
    /// breaks, insignificant whitespace, arrive as spaces.
    ndjson: bool,
    function_name: String,
    /// How long each invocation's function runs (see [`LambdaOptions::run_time`]).
    run_time: Duration,
    /// Just before the process was spawned (the start of a cold start).
    pub spawned_at: Instant,
}

impl Lambda {
    /// Starts fakes and binary; panics (with the log) if init does not complete.
    pub fn start(opts: LambdaOptions) -> Lambda {
        match Lambda::try_start(opts) {
            Ok(l) => l,
            Err(e) => panic!("{e}"),
        }
    }

    /// Like [`Lambda::start`] but returns an error with the captured log.
    pub fn try_start(opts: LambdaOptions) -> Result<Lambda, String> {
        let kinesis = match &opts.shared_kinesis {
            Some(k) => k.clone(),
            None => FakeKinesis::start(opts.kinesis.clone())
                .map_err(|e| format!("fake kinesis: {e}"))?,
        };
        let runtime =
            FakeRuntime::start(opts.runtime.clone()).map_err(|e| format!("fake runtime: {e}"))?;
        let creds = opts
            .kinesis
            .credentials
            .first()
            .cloned()
            .unwrap_or_else(fake_kinesis::test_credentials);
        let mut env: BTreeMap<String, String> = BTreeMap::new();
        let mut set = |k: &str, v: &str| {
            env.insert(k.to_owned(), v.to_owned());
        };
        set("AWS_LAMBDA_RUNTIME_API", &runtime.runtime_api());
        set("AWS_REGION", &opts.kinesis.region);
        set("AWS_DEFAULT_REGION", &opts.kinesis.region);
        set("AWS_ACCESS_KEY_ID", &creds.access_key_id);
        set("AWS_SECRET_ACCESS_KEY", &creds.secret_access_key);
        if let Some(t) = &creds.session_token {
            set("AWS_SESSION_TOKEN", t);
        }
        let credentials = match &opts.container_credentials {
            Some(config) => Some(
                FakeCredentials::start(config.clone(), Some(kinesis.handle()))
                    .map_err(|e| format!("fake credentials endpoint: {e}"))?,
            ),
            None => None,
        };
        if let Some(endpoint) = &credentials {
            for k in [
                "AWS_ACCESS_KEY_ID",
                "AWS_SECRET_ACCESS_KEY",
                "AWS_SESSION_TOKEN",
            ] {
                env.remove(k);
            }
            env.insert("AWS_CONTAINER_CREDENTIALS_FULL_URI".into(), endpoint.uri());
            env.insert("AWS_CONTAINER_AUTHORIZATION_TOKEN".into(), endpoint.token());
        }
        let mut set = |k: &str, v: &str| {
            env.insert(k.to_owned(), v.to_owned());
        };
        set("AWS_LAMBDA_FUNCTION_NAME", &opts.runtime.function_name);
        set(
            "AWS_LAMBDA_FUNCTION_VERSION",
            &opts.runtime.function_version,
        );
        set("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128");
        set(
            "AWS_LAMBDA_INITIALIZATION_TYPE",
            if opts.runtime.snap_start {
                crate::events::SNAP_START_INIT_TYPE
            } else {
                "on-demand"
            },
        );
        set(
            "KINESIS_TELEMETRY_STREAM",
            opts.kinesis
                .streams
                .first()
                .map(String::as_str)
                .unwrap_or("telemetry-stream"),
        );
        set("KINESIS_TELEMETRY_ENDPOINT", &kinesis.endpoint());
        set("KINESIS_TELEMETRY_PORT", "0");
        set("KINESIS_TELEMETRY_BIND_ADDRESS", "127.0.0.1");
        // Black-box tests check delivery, in order and exactly once; on a shared machine a
        // debug build's request can outlast the 60 ms added-time budget, and a request cut
        // there is resent (at least once). The budget itself is tested with its default
        // (`tests/added_time.rs` unsets this) and in the sandbox.
        set("KINESIS_TELEMETRY_MAX_ADDED_MS", HARNESS_MAX_ADDED_MS);
        let level = std::env::var("HARNESS_LOG_LEVEL").unwrap_or_else(|_| "info".to_owned());
        set("KINESIS_TELEMETRY_LOG_LEVEL", &level);
        if let Ok(bt) = std::env::var("RUST_BACKTRACE") {
            set("RUST_BACKTRACE", &bt);
        }
        for k in &opts.unset {
            env.remove(k);
        }
        for (k, v) in &opts.env {
            env.insert(k.clone(), v.clone());
        }

        let binary = opts.binary.clone().unwrap_or_else(extension_binary);
        let spawned_at = Instant::now();
        // `KINESIS_TELEMETRY_EXTENSION_WRAPPER=qemu-aarch64-static` runs a foreign-architecture
        // build (CI's arm64 proof); the guest still sees the binary's own path as argv[0].
        let mut command = match std::env::var_os("KINESIS_TELEMETRY_EXTENSION_WRAPPER") {
            Some(wrapper) if !wrapper.is_empty() => {
                let mut c = Command::new(wrapper);
                c.arg(&binary);
                c
            }
            _ => Command::new(&binary),
        };
        let mut child = command
            .env_clear()
            .envs(&env)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;

        let log = Arc::new(Mutex::new(Vec::new()));
        let echo = std::env::var_os("HARNESS_ECHO_LOG").is_some();
        let captured = log.clone();
        let pipes_closed = pipes::drain_lines(&mut child, move |line| {
            if echo {
                eprintln!("[ext] {line}");
            }
            captured
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(line);
        });

        let mut lambda = Lambda {
            events: EventFactory::new(&opts.runtime.function_name),
            runtime,
            kinesis,
            credentials,
            child,
            log,
            pipes_closed,
            pipes_open: 2,
            output_closed_at: None,
            exit: None,
            pushed: Vec::new(),
            pending_report: None,
            restore_noted: false,
            enriched: env
                .get("KINESIS_TELEMETRY_ENRICH")
                .is_none_or(|v| !matches!(v.as_str(), "false" | "0" | "no" | "off")),
            ndjson: env
                .get("KINESIS_TELEMETRY_RECORD_FORMAT")
                .is_none_or(|v| v.eq_ignore_ascii_case("ndjson")),
            function_name: opts.runtime.function_name.clone(),
            run_time: opts.run_time,
            spawned_at,
        };
        if opts.wait_for_init && !lambda.runtime.wait_for_next_calls(1, opts.init_timeout) {
            return Err(format!(
                "the extension did not call /event/next within {:?} (exit: {:?})\n{}",
                opts.init_timeout,
                lambda.try_exit_status(),
                lambda.log_text()
            ));
        }
        Ok(lambda)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Every captured line of the extension's stderr and stdout so far.
    pub fn log(&self) -> Vec<String> {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The extension's log lines that contain `needle`.
    pub fn log_lines_with(&self, needle: &str) -> Vec<String> {
        self.log()
            .into_iter()
            .filter(|x| x.contains(needle))
            .collect()
    }

    pub fn log_text(&self) -> String {
        format!(
            "--- extension log ---\n{}\n--- end of log ---",
            self.log().join("\n")
        )
    }

    /// Waits until a log line contains `needle`.
    pub fn wait_log(&self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let (_tx, never) = crossbeam_channel::bounded::<()>(0);
        loop {
            if self.log().iter().any(|l| l.contains(needle)) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            // The log has no change notification; poll it every 10 ms.
            let _ = never.recv_timeout(Duration::from_millis(10));
        }
    }

    /// Queues a telemetry event and remembers its exact text as pushed.
    pub fn push(&mut self, event: &Value) -> String {
        let text = self.runtime.push_event(event);
        self.pushed.push(text.clone());
        text
    }

    /// Queues an event given as raw JSON text.
    pub fn push_raw(&mut self, text: &str) {
        self.runtime.push_raw_event(text.to_owned());
        self.pushed.push(text.to_owned());
    }

    /// Every event text pushed through the telemetry pipeline so far.
    pub fn pushed(&self) -> &[String] {
        &self.pushed
    }

    /// What each pushed event (and, with SnapStart, each event of the Restore phase) must
    /// look like in the stream once its enrichment is removed: its exact bytes, but for the
    /// line breaks between its JSON tokens, which arrive as spaces in NDJSON records (one
    /// event per line).
    pub fn expected(&self) -> Vec<String> {
        self.pushed
            .iter()
            .chain(&self.runtime.restore_events())
            .map(|p| self.as_delivered(p))
            .collect()
    }

    /// `text` as it arrives in this run's record format.
    pub fn as_delivered(&self, text: &str) -> String {
        if self.ndjson {
            text.replace(['\n', '\r'], " ")
        } else {
            text.to_string()
        }
    }

    /// Runs `n` invocations the way Lambda does: INVOKE, then platform.start, one Text
    /// and one JSON function log line, platform.runtimeDone, and the previous
    /// invocation's platform.report; then waits for the extension's next
    /// `/event/next` and for the telemetry to be POSTed. Returns the request ids.
    pub fn invoke(&mut self, n: usize) -> Vec<String> {
        let mut ids = Vec::with_capacity(n);
        for _ in 0..n {
            let delivered = self.runtime.delivered().len();
            let nexts = self.runtime.next_calls().len();
            let id = self.runtime.invoke();
            assert!(
                self.runtime
                    .wait_delivered(delivered + 1, Duration::from_secs(5)),
                "INVOKE was not picked up by the extension\n{}",
                self.log_text()
            );
            if self.runtime.restored_at().is_some() && !self.restore_noted {
                self.events.note_restore(Duration::from_millis(15));
                self.restore_noted = true;
            }
            let start = self.events.platform_start(&id);
            self.push(&start);
            let text = self.events.function_text(&id);
            self.push(&text);
            let json = self.events.function_json(&id);
            self.push(&json);
            std::thread::sleep(self.run_time);
            let done = self.events.runtime_done(&id, Duration::from_millis(12));
            self.push(&done);
            if let Some(prev) = self.pending_report.replace(id.clone()) {
                let report = self.events.report(&prev, Duration::from_millis(12));
                self.push(&report);
            }
            assert!(
                self.runtime
                    .wait_for_next_calls(nexts + 1, Duration::from_secs(5)),
                "the extension did not come back to /event/next after INVOKE {id}\n{}",
                self.log_text()
            );
            // The function "runs" until its telemetry has reached the extension, so
            // invocation N's events arrive during N, as on Lambda. Without a
            // subscription the platform holds them: nothing to wait for.
            if self.runtime.subscription().is_some() {
                self.runtime.wait_telemetry_idle(Duration::from_secs(5));
            }
            ids.push(id);
        }
        ids
    }

    /// Shuts down the way Lambda does: SHUTDOWN (`spindown`) is delivered, then the
    /// platform's last telemetry batch (the last invocation's platform.report and
    /// whatever was still buffered) is POSTed right away; then waits for the process
    /// to exit (until the deadline + 1 s).
    pub fn shutdown(&mut self) -> ShutdownOutcome {
        if let Some(prev) = self.pending_report.take() {
            let report = self.events.report(&prev, Duration::from_millis(12));
            self.push(&report);
        }
        self.shutdown_with("spindown", true)
    }

    /// Sends SHUTDOWN with `reason`; when `flush_after`, the pusher sends its buffer
    /// at once after delivery (otherwise on its own timer). Waits for the exit.
    pub fn shutdown_with(&mut self, reason: &str, flush_after: bool) -> ShutdownOutcome {
        let delivered = self.runtime.delivered().len();
        self.runtime.shutdown(reason);
        let budget = self.runtime.config().shutdown_budget;
        if !self
            .runtime
            .wait_delivered(delivered + 1, Duration::from_secs(5))
        {
            return ShutdownOutcome {
                status: self.try_exit_status(),
                deadline_ms: 0,
                margin_ms: None,
                took: None,
            };
        }
        if flush_after {
            self.runtime.flush_telemetry(budget);
        }
        let ev = self.runtime.delivered().pop().expect("delivered above");
        let status = self.wait_exit(budget + Duration::from_secs(1));
        let margin_ms = self
            .output_closed_at
            .map(|t| ev.deadline_ms as i64 - clock::epoch_ms(t) as i64);
        let delivered_at = clock::from_epoch_ms(ev.deadline_ms) - budget;
        let took = self
            .output_closed_at
            .map(|t| t.duration_since(delivered_at).unwrap_or_default());
        ShutdownOutcome {
            status,
            deadline_ms: ev.deadline_ms,
            margin_ms,
            took,
        }
    }

    /// The extension's shutdown summary line (`shutdown (<reason>): events received=...`).
    pub fn summary_line(&self) -> Option<String> {
        self.log()
            .into_iter()
            .rev()
            .find(|l| l.contains("shutdown (") && l.contains("received="))
    }

    /// A `key=value` count from the summary line, e.g. `summary_count("delivered")`.
    pub fn summary_count(&self, key: &str) -> Option<u64> {
        let line = self.summary_line()?;
        let needle = format!("{key}=");
        line.split(|c: char| c.is_whitespace() || c == '(' || c == ',' || c == ')')
            .find_map(|tok| tok.strip_prefix(&needle))
            .and_then(|v| v.parse().ok())
    }

    fn try_exit_status(&mut self) -> Option<ExitStatus> {
        if self.exit.is_none() {
            self.exit = self.child.try_wait().ok().flatten();
        }
        self.exit
    }

    /// Waits for the process to exit: first for it to close its output, then for
    /// the status. `None` if it is still running after `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        if self.exit.is_some() {
            return self.exit;
        }
        let deadline = Instant::now() + timeout;
        while self.pipes_open > 0 {
            match self
                .pipes_closed
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            {
                Ok(at) => {
                    self.pipes_open -= 1;
                    self.output_closed_at = Some(at);
                }
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => {
                    return self.try_exit_status()
                }
            }
        }
        // Output closed: the process is exiting; collect its status.
        let (_tx, never) = crossbeam_channel::bounded::<()>(0);
        loop {
            if let Some(s) = self.try_exit_status() {
                return Some(s);
            }
            if Instant::now() >= deadline {
                return None;
            }
            let _ = never.recv_timeout(Duration::from_millis(5));
        }
    }

    /// Every event Kinesis holds, in arrival order: its records decoded (any of the three
    /// formats) and each event split from its enrichment object, with its record's
    /// partition key. Panics, with the log, when a record does not decode.
    pub fn delivered(&self) -> Vec<(String, Enriched)> {
        let records = self.kinesis.records();
        telemetry_records::events_of(
            records
                .iter()
                .map(|r| (r.partition_key.as_str(), r.data.as_slice())),
        )
        .unwrap_or_else(|e| panic!("{e}\n{}", self.log_text()))
    }

    /// The text of every event Kinesis holds, as Lambda sent it (enrichment removed).
    pub fn events_delivered(&self) -> Vec<String> {
        self.delivered()
            .into_iter()
            .map(|(_, e)| e.original)
            .collect()
    }

    /// Panics unless Kinesis holds every pushed event exactly once, byte for byte as
    /// Lambda sent it, and nothing else; and, when enrichment is on (the default), unless
    /// every event names this function and carries an event id no other event has.
    pub fn assert_each_event_delivered_once(&self) {
        let delivered = self.delivered();
        let texts: Vec<String> = delivered.iter().map(|(_, e)| e.original.clone()).collect();
        let diff = multiset_diff(&self.expected(), &texts);
        assert!(
            diff.is_empty(),
            "delivery differs from what was pushed:\n{}\n{}",
            diff.join("\n"),
            self.log_text()
        );
        if !self.enriched {
            return;
        }
        let mut ids = std::collections::HashSet::new();
        for (_, e) in &delivered {
            let source = e
                .source
                .as_ref()
                .unwrap_or_else(|| panic!("an event without its source: {}", e.original));
            assert_eq!(
                source["function"], self.function_name,
                "{source}\n{}",
                e.original
            );
            let id = telemetry_records::event_id(source).expect("an eventId");
            assert!(ids.insert(id.to_string()), "eventId {id} twice");
        }
    }
}

impl Drop for Lambda {
    fn drop(&mut self) {
        if self.try_exit_status().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Differences between two multisets of texts: `missing: ...` for texts in
/// `expected` not (or not often enough) in `actual`, `extra: ...` for the reverse.
pub fn multiset_diff(expected: &[String], actual: &[String]) -> Vec<String> {
    let mut counts: BTreeMap<&str, i64> = BTreeMap::new();
    for e in expected {
        *counts.entry(e).or_default() += 1;
    }
    for a in actual {
        *counts.entry(a).or_default() -= 1;
    }
    let short = |s: &str| s.chars().take(160).collect::<String>();
    counts
        .into_iter()
        .filter(|(_, c)| *c != 0)
        .map(|(s, c)| {
            if c > 0 {
                format!("missing x{c}: {}", short(s))
            } else {
                format!("extra x{}: {}", -c, short(s))
            }
        })
        .collect()
}
