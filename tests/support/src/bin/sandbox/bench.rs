//! `sandbox --bench`: numbers, not timed tests. Each measurement is a sandbox session
//! (or a series of them) against the mock endpoints, with the release binary.

use std::process::ExitCode;
use std::time::Duration;

use serde::Serialize;
use serde_json::json;

use kte_test_support::sandbox::{self, Pace, Percentiles, SandboxConfig, Workload};

/// Process starts for the cold-start figures.
const COLD_STARTS: usize = 20;

#[derive(Serialize)]
struct Machine {
    cpu: String,
    cores: usize,
    kernel: String,
    memory_gb: f64,
}

fn machine() -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
        .unwrap_or_else(|| "?".into());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_owned();
    let mem_kb: f64 = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0.0);
    Machine {
        cpu,
        cores: kte_test_support::process::cores(),
        kernel,
        memory_gb: (mem_kb / 1024.0 / 1024.0 * 10.0).round() / 10.0,
    }
}

/// One sandbox session; `judge`: warn when it fails its usual checks.
fn session(
    base: &SandboxConfig,
    w: Workload,
    env: &[(&str, &str)],
    judge: bool,
) -> Result<sandbox::Report, String> {
    let mut cfg = base.clone();
    cfg.workload = w;
    cfg.progress_every = 0;
    cfg.env
        .extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let mut r = sandbox::run(&cfg)?;
    r.judge(false);
    if judge && !r.passed() {
        eprintln!("[bench] warning: session failed: {}", r.failures.join("; "));
    }
    Ok(r)
}

fn quick() -> Workload {
    Workload {
        invocations: 0,
        pace: Pace::Gap(Duration::ZERO),
        init_duration: Duration::ZERO,
        runtime_duration: Duration::ZERO,
        lines_per_invoke: 1,
        freeze: false,
        ..Workload::default()
    }
}

fn ms_of(v: &[f64]) -> Percentiles {
    let d: Vec<Duration> = v.iter().map(|m| Duration::from_secs_f64(m / 1e3)).collect();
    Percentiles::of(&d)
}

pub fn main(base: &SandboxConfig, seconds: f64, as_json: bool) -> ExitCode {
    match run(base, seconds) {
        Ok((table, v)) => {
            if as_json {
                eprint!("{table}");
                println!("{}", serde_json::to_string_pretty(&v).expect("json"));
            } else {
                print!("{table}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("[bench] failed: {e}");
            ExitCode::from(1)
        }
    }
}

/// Returns the Markdown table and the JSON of every figure.
fn run(base: &SandboxConfig, seconds: f64) -> Result<(String, serde_json::Value), String> {
    let m = machine();
    eprintln!(
        "[bench] machine: {} ({} cores, {} GB), Linux {}",
        m.cpu, m.cores, m.memory_gb, m.kernel
    );
    let bin = base
        .binary
        .clone()
        .unwrap_or_else(kte_test_support::extension_binary);
    let size = std::fs::metadata(&bin).map(|m| m.len()).unwrap_or(0);

    eprintln!("[bench] cold start: {COLD_STARTS} process starts");
    let (mut reg, mut sub, mut next) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..COLD_STARTS {
        // No grace at SHUTDOWN: these sessions measure the start only (the init
        // telemetry that arrives after SHUTDOWN is not waited for).
        let r = session(
            base,
            quick(),
            &[("KINESIS_TELEMETRY_SHUTDOWN_GRACE_MS", "0")],
            false,
        )?;
        reg.push(r.startup.register_ms);
        sub.push(r.startup.subscribed_ms.unwrap_or(f64::NAN));
        next.push(r.startup.first_next_ms);
    }
    let cold = json!({
        "register": ms_of(&reg), "subscribed": ms_of(&sub), "first_next": ms_of(&next)
    });

    eprintln!("[bench] per-invoke overhead, nothing due: 1000 invocations");
    let nothing = session(
        base,
        Workload {
            invocations: 1000,
            ..quick()
        },
        &[
            ("KINESIS_TELEMETRY_FLUSH_MAX_EVENTS", "10000000"),
            ("KINESIS_TELEMETRY_FLUSH_MAX_BYTES", "1073741824"),
            ("KINESIS_TELEMETRY_FLUSH_MAX_AGE_MS", "3600000"),
        ],
        true,
    )?;

    eprintln!("[bench] per-invoke overhead, flush due: 300 invocations");
    let due = session(
        base,
        Workload {
            invocations: 300,
            lines_per_invoke: 3,
            deliver_before_invoke: true,
            ..quick()
        },
        &[("KINESIS_TELEMETRY_FLUSH_MAX_AGE_MS", "0")],
        true,
    )?;

    eprintln!("[bench] default workload: 200 invocations with freeze");
    let default = session(base, Workload::default(), &[], true)?;

    eprintln!("[bench] sustained throughput: {seconds} s of 200-byte events, closed loop");
    let tp = crate::throughput::throughput(seconds, 200, Some(20_000), &[])?;
    eprintln!("[bench] overload: {seconds} s of 200-byte events as fast as the listener answers");
    let over = crate::throughput::throughput(seconds, 200, None, &[])?;

    let p = |x: &Percentiles| {
        format!(
            "p50 {:.3} / p99 {:.3} / max {:.3}",
            x.p50_ms, x.p99_ms, x.max_ms
        )
    };
    let mb = |kb: Option<u64>| kb.map_or("?".into(), |k| format!("{:.2} MB", k as f64 / 1024.0));
    let first = ms_of(&next);
    let mut out = String::new();
    let mut row = |s: String| {
        out.push_str(&s);
        out.push('\n');
    };
    row("| Measure | Result | Target |".into());
    row("|---|---|---|".into());
    row(format!(
        "| Cold start: process start → first `/event/next` ({COLD_STARTS} starts) | median {:.2} ms, p99 {:.2} ms | ≤ 3 ms |",
        first.p50_ms, first.p99_ms
    ));
    row(format!(
        "| … to register / to subscribed (median) | {:.2} ms / {:.2} ms | |",
        ms_of(&reg).p50_ms,
        ms_of(&sub).p50_ms
    ));
    row(format!(
        "| Per-invoke overhead, nothing due (INVOKE → `/event/next`, 1000 invokes, ms) | {} | p99 ≤ 0.5 ms |",
        p(&nothing.invoke_to_next)
    ));
    row(format!(
        "| Per-invoke overhead, flush due (one PutRecords to the mock, 300 invokes, ms) | {} | |",
        p(&due.invoke_to_next)
    ));
    row(format!(
        "| Sustained throughput, ~200-byte events, extension on one core{} | {:.0} events/s ({:.1} MB/s), {:.2} cores used, dropped {}, peak RSS {} | ≥ 100,000 events/s |",
        if tp.pinned { " (pinned)" } else { "" },
        tp.delivered_per_s,
        tp.delivered_mb_per_s,
        tp.cpu_cores_used.unwrap_or(f64::NAN),
        tp.extension_dropped.map_or("?".into(), |d| d.to_string()),
        mb(tp.peak_rss_kb)
    ));
    row(format!(
        "| Overload (listener answered as fast as it could for {:.0} s) | accepted {:.0} events/s, delivered {:.0} events/s, dropped {} at the buffer cap; peak RSS {} (cap 8 MiB of events) | bounded by the buffer cap |",
        over.seconds,
        over.produced as f64 / (over.seconds + 1.0),
        over.delivered_per_s,
        over.extension_dropped.map_or("?".into(), |d| d.to_string()),
        mb(over.peak_rss_kb)
    ));
    row(format!(
        "| Peak RSS, 200 invocations (default workload, freeze on) | {} | ≤ 5 MB |",
        mb(default.peak_rss_kb)
    ));
    row(format!(
        "| Binary size (release, stripped) | {:.0} KiB | |",
        size as f64 / 1024.0
    ));
    row(format!(
        "\nMachine: {} ({} cores, {} GB RAM), Linux {}",
        m.cpu, m.cores, m.memory_gb, m.kernel
    ));
    Ok((
        out,
        json!({
            "machine": m,
            "binary_bytes": size,
            "cold_start_ms": cold,
            "nothing_due_invoke_to_next": nothing.invoke_to_next,
            "flush_due_invoke_to_next": due.invoke_to_next,
            "default_workload": { "peak_rss_kb": default.peak_rss_kb, "cpu_ms": default.cpu_ms,
                                  "runtime_done_to_next": default.runtime_done_to_next, "passed": default.passed() },
            "throughput": tp,
            "overload": over,
        }),
    ))
}
