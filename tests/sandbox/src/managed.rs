//! Invocations on Lambda Managed Instances: N runtime workers run them concurrently, nothing
//! freezes, and the extension (registered for SHUTDOWN only) sees no INVOKE at all, only
//! the interleaved telemetry of every worker.
//!
//! Invocation `i` starts `i / rate` seconds after the first (on a free worker; late when all
//! are busy), or, with a gap, each worker pauses that long between its own invocations. Each
//! emits `platform.start`, the function lines (a JSON line carries its `requestId`; a Text
//! line is a plain printed line, with no request id in it), runs for the handler's duration
//! and emits the slim `platform.report`; there is no `platform.runtimeDone`. The invocation
//! ends when its report is emitted.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::RecvTimeoutError;

use super::faults::FaultSwitch;
use super::ledger::{Emitter, Telemetry};
use super::session::{Invocation, Run};
use super::{pass, Pace, Workload};
use kte_test_support::rng::fresh_uuid;

/// How often the main thread looks at the extension's log while the workers run.
const POLL: Duration = Duration::from_millis(50);

/// Runs every invocation on `concurrency` workers; returns when all are done.
pub(super) fn invocations(run: &mut Run<'_>, started: Instant) -> Result<(), String> {
    let w = run.cfg.workload.clone();
    let workers = w.concurrency.max(1);
    let next = Arc::new(AtomicUsize::new(0));
    let completed = Arc::new(AtomicUsize::new(0));
    let first = Instant::now();
    let (tx, rx) = crossbeam_channel::unbounded::<Vec<Invocation>>();
    for n in 0..workers {
        let worker = Worker {
            emitter: run.emitter.clone(),
            faults: run.faults.clone(),
            workload: w.clone(),
            next: next.clone(),
            completed: completed.clone(),
            first,
        };
        let tx = tx.clone();
        thread::Builder::new()
            .name(format!("runtime-worker-{n}"))
            .spawn(move || {
                let _ = tx.send(worker.run());
            })
            .map_err(|e| format!("cannot start a runtime worker: {e}"))?;
    }
    drop(tx);
    let mut finished = 0;
    let mut shown = 0;
    while finished < workers {
        match rx.recv_timeout(POLL) {
            Ok(done) => {
                run.invocations.extend(done);
                finished += 1;
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => {
                return Err(run.fail("a Managed Instances runtime worker failed"));
            }
        }
        run.sample();
        let every = run.cfg.progress_every;
        let now = completed.load(Ordering::Relaxed);
        if every > 0 && now / every > shown {
            shown = now / every;
            run.progress(shown * every, started);
        }
    }
    Ok(())
}

/// One runtime worker.
struct Worker {
    emitter: Emitter,
    faults: FaultSwitch,
    workload: Workload,
    next: Arc<AtomicUsize>,
    completed: Arc<AtomicUsize>,
    first: Instant,
}

impl Worker {
    fn run(self) -> Vec<Invocation> {
        let w = &self.workload;
        let mut tel = Telemetry::default();
        let mut done = Vec::new();
        loop {
            let i = self.next.fetch_add(1, Ordering::Relaxed);
            if i >= w.invocations {
                return done;
            }
            match w.pace {
                Pace::Rate(r) if r > 0.0 => pass(
                    (self.first + Duration::from_secs_f64(i as f64 / r))
                        .saturating_duration_since(Instant::now()),
                ),
                Pace::Rate(_) => {}
                Pace::Gap(g) if !done.is_empty() => pass(g),
                Pace::Gap(_) => {}
            }
            self.faults.invocation_starts(i);
            done.push(self.invoke(&mut tel, i));
            self.completed.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn invoke(&self, tel: &mut Telemetry, i: usize) -> Invocation {
        let w = &self.workload;
        let id = fresh_uuid();
        let started = Instant::now();
        let start = tel.factory.platform_start(&id);
        self.emitter.emit_value(&start, Some(i));
        for _ in 0..w.lines_per_invoke {
            let t = tel.function(&id, false, w.log_format, w.line_bytes);
            self.emitter.emit_line(t, Some(i));
        }
        pass(w.runtime_duration);
        let report = tel.factory.report_managed(&id, w.runtime_duration);
        self.emitter.emit_value(&report, Some(i));
        Invocation {
            index: i,
            started,
            ended: Instant::now(),
            runtime_done: None,
            deadline: None,
            in_flight: None,
        }
    }
}
