//! The state of one sandbox session ([`Run`]) and its steps: init, one invocation,
//! freeze and thaw, SHUTDOWN against its deadline, and checking every Kinesis record off
//! against the ledger of emitted events. [`super::run`] strings them together.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use serde_json::{json, Value};

use super::report::ms;
use super::{
    pass, LogFormat, Report, SandboxConfig, ShutdownReport, Startup, TypeCount, INIT_LIMIT,
};
use crate::process::{cpu_time, exited_unreaped, peak_rss_kb, signal};
use crate::rng::fresh_uuid;
use crate::{clock, EventFactory, Lambda};

/// Events the sandbox emitted, keyed by exact text.
#[derive(Default)]
pub(super) struct Ledger {
    emitted: HashMap<String, (String, Instant)>,
}

/// Makes the events of one run; platform shapes come from [`EventFactory`].
pub(super) struct Telemetry {
    pub(super) factory: EventFactory,
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
    pub(super) fn function(&mut self, request_id: &str, format: LogFormat, bytes: usize) -> String {
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

    pub(super) fn init_runtime_done(&mut self, took: Duration) -> String {
        json!({"time": clock::iso8601_ms(SystemTime::now()), "type": "platform.initRuntimeDone",
               "record": {"initializationType": "on-demand", "phase": "init", "status": "success",
                          "spans": [{"name": "runtimeInit", "start": clock::iso8601_ms(SystemTime::now() - took),
                                     "durationMs": ms(took)}],
                          "marker": self.factory.marker()}})
        .to_string()
    }

    pub(super) fn init_report(&mut self, took: Duration) -> String {
        json!({"time": clock::iso8601_ms(SystemTime::now()), "type": "platform.initReport",
               "record": {"initializationType": "on-demand", "phase": "init", "status": "success",
                          "metrics": {"durationMs": ms(took)}, "marker": self.factory.marker()}})
        .to_string()
    }
}

pub(super) struct Run<'a> {
    pub(super) cfg: &'a SandboxConfig,
    pub(super) lambda: Lambda,
    pub(super) tel: Telemetry,
    pub(super) ledger: Ledger,
    pub(super) frozen: bool,
    pub(super) freezes: u64,
    pub(super) peak_rss_kb: Option<u64>,
    pub(super) outage: Arc<Mutex<Option<(Instant, Instant)>>>,
}

impl<'a> Run<'a> {
    pub(super) fn new(cfg: &'a SandboxConfig, lambda: Lambda) -> Self {
        Run {
            cfg,
            lambda,
            tel: Telemetry::default(),
            ledger: Ledger::default(),
            frozen: false,
            freezes: 0,
            peak_rss_kb: None,
            outage: Arc::new(Mutex::new(None)),
        }
    }

    pub(super) fn emit(&mut self, text: String) {
        let kind = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v["type"].as_str().map(str::to_owned))
            .unwrap_or_else(|| "?".to_owned());
        self.lambda.runtime.push_raw_event(text.clone());
        let prev = self.ledger.emitted.insert(text, (kind, Instant::now()));
        debug_assert!(prev.is_none(), "emitted events must be unique");
    }

    pub(super) fn emit_value(&mut self, v: Value) {
        self.emit(v.to_string());
    }

    pub(super) fn sample(&mut self) {
        if let Some(kb) = peak_rss_kb(self.lambda.pid()) {
            self.peak_rss_kb = Some(self.peak_rss_kb.unwrap_or(0).max(kb));
        }
    }

    /// The runtime and the extension are in `/event/next`: hold telemetry, stop the process.
    pub(super) fn freeze(&mut self) -> Result<(), String> {
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

    pub(super) fn thaw(&mut self) {
        if self.frozen {
            signal(self.lambda.pid(), libc::SIGCONT);
            self.lambda.runtime.resume_telemetry();
            self.frozen = false;
        }
    }

    pub(super) fn fail(&self, what: &str) -> String {
        format!("{what}\n{}", self.lambda.log_text())
    }

    pub(super) fn init(&mut self) -> Result<Startup, String> {
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

    pub(super) fn start_outage(&self) {
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
    pub(super) fn invoke(&mut self, i: usize) -> Result<(Duration, Duration, bool), String> {
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

    pub(super) fn progress(&self, i: usize, started: Instant) {
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
    pub(super) fn shutdown(&mut self) -> Result<(ShutdownReport, Option<Duration>), String> {
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
    pub(super) fn account(&self, report: &mut Report) {
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
