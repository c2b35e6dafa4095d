//! The state of one sandbox session ([`Run`]) and its steps: init, the invocations of
//! default Lambda (INVOKE, telemetry, `/event/next`, freeze and thaw), what follows them
//! (a burst, idle time) and SHUTDOWN against its deadline. [`super::run`] strings them
//! together; Managed Instances invocations are in `managed`, and `collect` turns the
//! session into its report.

use std::thread;
use std::time::{Duration, Instant, SystemTime};

use super::echo::Tail;
use super::faults::FaultSwitch;
use super::ledger::{Emitter, Telemetry};
use super::report::{ms, ShutdownReport, Startup};
use super::{pass, Pace, SandboxConfig, INIT_LIMIT};
use kte_test_support::events::MANAGED_INSTANCES_INIT_TYPE;
use kte_test_support::process::{cpu_time_live, exit_cpu, exited_unreaped, peak_rss_kb, signal};
use kte_test_support::rng::fresh_uuid;
use kte_test_support::tcp::InFlight;
use kte_test_support::{clock, Lambda};

/// One invocation as the sandbox ran it.
#[derive(Clone, Debug)]
pub(super) struct Invocation {
    pub(super) index: usize,
    /// INVOKE delivered (default Lambda), or `platform.start` emitted (Managed Instances).
    pub(super) started: Instant,
    /// When it ended: the extension's `/event/next` after it (the sandbox may freeze then),
    /// or its `platform.report` emitted (Managed Instances).
    pub(super) ended: Instant,
    /// `platform.runtimeDone` emitted (default Lambda).
    pub(super) runtime_done: Option<Instant>,
    /// The deadline the INVOKE carried (default Lambda).
    pub(super) deadline: Option<Instant>,
    /// What the extension had in flight to the mock Kinesis when it called `/event/next`
    /// (default Lambda with the mock; `None` when it could not be read).
    pub(super) in_flight: Option<InFlight>,
}

impl Invocation {
    /// Time the extension added after the runtime finished.
    pub(super) fn added(&self) -> Option<Duration> {
        self.runtime_done
            .map(|d| self.ended.saturating_duration_since(d))
    }
}

pub(super) struct Run<'a> {
    pub(super) cfg: &'a SandboxConfig,
    pub(super) lambda: Lambda,
    pub(super) tel: Telemetry,
    pub(super) emitter: Emitter,
    pub(super) faults: FaultSwitch,
    pub(super) tail: Tail,
    pub(super) invocations: Vec<Invocation>,
    pub(super) frozen: bool,
    pub(super) freezes: u64,
    pub(super) peak_rss_kb: Option<u64>,
    pub(super) idle_cpu: Option<Duration>,
    /// When SHUTDOWN was delivered.
    pub(super) shutdown_at: Option<Instant>,
    /// In a fleet: the access key this environment signs with; its requests and records
    /// are told apart from the other environments' by it.
    pub(super) access_key: Option<String>,
}

impl<'a> Run<'a> {
    pub(super) fn new(cfg: &'a SandboxConfig, lambda: Lambda) -> Self {
        let ndjson = cfg.asks_for_ndjson();
        let emitter = Emitter::new(lambda.runtime.handle(), ndjson);
        let kinesis = cfg.endpoint.is_none().then(|| lambda.kinesis.handle());
        Run {
            cfg,
            tel: Telemetry::default(),
            emitter,
            faults: FaultSwitch::new(kinesis, cfg.faults.clone()),
            tail: Tail::new(cfg.echo),
            invocations: Vec::new(),
            lambda,
            frozen: false,
            freezes: 0,
            peak_rss_kb: None,
            idle_cpu: None,
            shutdown_at: None,
            access_key: None,
        }
    }

    pub(super) fn sample(&mut self) {
        if let Some(kb) = peak_rss_kb(self.lambda.pid()) {
            self.peak_rss_kb = Some(self.peak_rss_kb.unwrap_or(0).max(kb));
        }
        self.tail.poll(&self.lambda);
    }

    /// CPU time of the running extension, to the nanosecond (its live threads).
    pub(super) fn cpu_now(&self) -> Option<Duration> {
        cpu_time_live(self.lambda.pid())
    }

    /// The runtime and the extension are in `/event/next`: hold telemetry, stop the process.
    pub(super) fn freeze(&mut self) -> Result<(), String> {
        if !self.cfg.workload.freezes() || self.frozen {
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

    fn initialization_type(&self) -> &'static str {
        if self.cfg.workload.managed_instances {
            MANAGED_INSTANCES_INIT_TYPE
        } else {
            "on-demand"
        }
    }

    pub(super) fn init(&mut self) -> Result<Startup, String> {
        let w = &self.cfg.workload;
        let kind = self.initialization_type();
        let start = if w.managed_instances {
            self.tel.factory.init_start_managed()
        } else {
            self.tel.factory.init_start()
        };
        self.emitter.emit_value(&start, None);
        pass(w.init_duration);
        let done = self.tel.init_runtime_done(kind, w.init_duration);
        self.emitter.emit_value(&done, None);
        self.wait_for_init()?;
        let took = self.lambda.spawned_at.elapsed().max(w.init_duration);
        let report = self.tel.init_report(kind, took);
        self.emitter.emit_value(&report, None);
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

    /// Waits for the extension's first `/event/next`, or for it to exit: an extension that
    /// reports `/init/error` and exits is an init failure, said as such once it has exited
    /// (not after the 10 s limit).
    fn wait_for_init(&mut self) -> Result<(), String> {
        let started = self.lambda.spawned_at;
        let limit = started + INIT_LIMIT;
        let rt = self.lambda.runtime.handle();
        let step = Duration::from_millis(5);
        loop {
            if rt.wait_for_next_calls(1, step) {
                self.tail.poll(&self.lambda);
                return Ok(());
            }
            if exited_unreaped(self.lambda.pid()) {
                break;
            }
            if Instant::now() >= limit {
                self.tail.poll(&self.lambda);
                return Err(self.fail(&format!(
                    "init: the extension did not call /event/next within {} s (Lambda's init limit)",
                    INIT_LIMIT.as_secs()
                )));
            }
        }
        let exited_after = started.elapsed();
        let status = self.lambda.wait_exit(Duration::from_secs(1));
        self.tail.poll(&self.lambda);
        let code = status
            .and_then(|s| s.code())
            .map_or("by a signal".to_owned(), |c| format!("with code {c}"));
        let exited = format!(
            "exited {code} {:.0} ms after it started",
            exited_after.as_secs_f64() * 1000.0
        );
        let what = match rt.errors().into_iter().find(|e| e.kind == "init") {
            Some(e) => format!(
                "init failed: the extension reported {} through /init/error ({}) and {exited}; on Lambda the function's init fails and it cannot run",
                e.error_type.as_deref().unwrap_or("no error type"),
                e.message.as_deref().unwrap_or("no message"),
            ),
            None => format!(
                "init failed: the extension {exited} before calling /event/next, without reporting /init/error; on Lambda the environment's init fails"
            ),
        };
        Err(self.fail(&what))
    }

    /// Default Lambda: the invocations one after another, frozen in between.
    pub(super) fn invocations(&mut self, started: Instant) -> Result<(), String> {
        let w = self.cfg.workload.clone();
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
            self.thaw();
            self.faults.invocation_starts(i);
            let inv = self.invoke(i)?;
            self.invocations.push(inv);
            self.sample();
            self.freeze()?;
            if self.cfg.progress_every > 0 && (i + 1).is_multiple_of(self.cfg.progress_every) {
                self.progress(i + 1, started);
            }
        }
        Ok(())
    }

    /// One invocation of default Lambda.
    fn invoke(&mut self, i: usize) -> Result<Invocation, String> {
        let w = self.cfg.workload.clone();
        let rt = self.lambda.runtime.handle();
        if w.deliver_before_invoke {
            rt.flush_telemetry(Duration::from_secs(10));
        }
        let before = rt.next_call_count();
        let delivered = rt.delivered().len();
        let id = fresh_uuid();
        rt.invoke_with(&id, w.function_timeout);
        if !rt.wait_delivered(delivered + 1, Duration::from_secs(10)) {
            return Err(self.fail(&format!("INVOKE {i} was not picked up")));
        }
        let invoked = rt
            .next_call(before - 1)
            .and_then(|c| c.answered_at)
            .unwrap_or_else(Instant::now);
        let start = self.tel.factory.platform_start(&id);
        self.emitter.emit_value(&start, Some(i));
        for _ in 0..w.lines_per_invoke {
            let t = self.tel.function(&id, true, w.log_format, w.line_bytes);
            self.emitter.emit_line(t, Some(i));
        }
        // At the deadline Lambda stops the runtime: the invocation times out.
        let timed_out = w.runtime_duration >= w.function_timeout;
        pass(w.runtime_duration.min(w.function_timeout));
        let done = self.tel.runtime_done(&id, w.runtime_duration, timed_out);
        self.emitter.emit_value(&done, Some(i));
        let done_at = Instant::now();
        let bound = w.function_timeout + Duration::from_secs(2);
        if !rt.wait_for_next_calls(before + 1, bound) {
            return Err(self.fail(&format!(
                "the extension did not come back to /event/next within {} ms of INVOKE {i}",
                bound.as_millis()
            )));
        }
        let next = rt.next_call(before).expect("waited for it").received_at;
        // Right away, before anything else: Lambda freezes the environment once every
        // extension has called /event/next, so whatever is open now stays open across it.
        let in_flight = self.in_flight();
        // Lambda emits platform.report once every extension has called /event/next.
        let report = self.tel.factory.report(&id, w.runtime_duration);
        self.emitter.emit_value(&report, Some(i));
        Ok(Invocation {
            index: i,
            started: invoked,
            ended: next,
            runtime_done: Some(done_at),
            deadline: Some(invoked + w.function_timeout),
            in_flight,
        })
    }

    /// What the extension has in flight to the mock Kinesis now (`None` with a real endpoint).
    fn in_flight(&self) -> Option<InFlight> {
        if self.cfg.endpoint.is_some() {
            return None;
        }
        self.lambda.kinesis.in_flight_of_process(self.lambda.pid())
    }

    pub(super) fn progress(&self, i: usize, started: Instant) {
        let k = self.lambda.kinesis.stats();
        let emitted = self.emitter.lock().events.len();
        eprintln!(
            "[sandbox] {i:>5}/{} invocations | {emitted:>6} events emitted | {:>6} records in Kinesis | {} freezes | RSS {} | {:.1} s",
            self.cfg.workload.invocations,
            k.records_accepted,
            self.freezes,
            self.peak_rss_kb.map_or("?".to_owned(), |kb| format!("{:.1} MB", kb as f64 / 1024.0)),
            started.elapsed().as_secs_f64()
        );
    }

    /// After the last invocation: the burst before SHUTDOWN, then the idle time.
    pub(super) fn after_invocations(&mut self) -> Result<(), String> {
        let w = self.cfg.workload.clone();
        if w.burst_before_shutdown > 0 {
            self.thaw();
            let id = fresh_uuid();
            let names = !w.managed_instances;
            for _ in 0..w.burst_before_shutdown {
                let t = self.tel.function(&id, names, w.log_format, w.line_bytes);
                self.emitter.emit_line(t, None);
            }
        }
        if !w.idle_before_shutdown.is_zero() {
            let before = self.cpu_now();
            pass(w.idle_before_shutdown);
            self.idle_cpu = before.zip(self.cpu_now()).map(|(a, b)| b.saturating_sub(a));
            self.sample();
        }
        Ok(())
    }

    /// SHUTDOWN, the platform's last batch, and the deadline. Returns the extension's CPU
    /// time, read from the kernel once it exited (or was killed).
    pub(super) fn shutdown(&mut self) -> Result<(ShutdownReport, Option<Duration>), String> {
        self.thaw();
        self.sample();
        let rt = self.lambda.runtime.handle();
        let before = rt.next_call_count();
        let delivered = rt.delivered().len();
        rt.shutdown("spindown");
        if !rt.wait_delivered(delivered + 1, Duration::from_secs(5)) {
            return Err(self.fail("SHUTDOWN was not picked up"));
        }
        let call = rt.next_call(before - 1).expect("delivered");
        let delivered_at = call.answered_at.unwrap_or_else(Instant::now);
        self.shutdown_at = Some(delivered_at);
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
                if let Some(cpu) = exit_cpu(pid) {
                    return (Some(Instant::now()), Some(cpu), peak, false);
                }
                if Instant::now() >= deadline {
                    signal(pid, libc::SIGKILL);
                    let killed_by = Instant::now() + Duration::from_secs(2);
                    let cpu = loop {
                        match exit_cpu(pid) {
                            None if Instant::now() < killed_by => pass(Duration::from_millis(1)),
                            other => break other,
                        }
                    };
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
        self.tail.poll(&self.lambda);
        Ok((
            ShutdownReport {
                deadline_after_ms: (deadline.saturating_duration_since(delivered_at).as_millis())
                    as u64,
                exit_code: status.and_then(|s| s.code()),
                before_deadline: exited_at.is_some_and(|t| t < deadline),
                margin_ms: exited_at.map(|t| super::collect::signed_ms(deadline, t)),
                took_ms: exited_at.map(|t| ms(t.saturating_duration_since(delivered_at))),
                killed,
            },
            cpu,
        ))
    }
}
