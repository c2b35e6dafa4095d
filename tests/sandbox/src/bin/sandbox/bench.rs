//! `sandbox --bench`: numbers, not timed tests. Each measurement is a sandbox session
//! (or a series of them) against the mock endpoints, and becomes rows of one Markdown table.
//! A row with a target says whether the figure met it (`yes` or `**MISS**`), and the misses
//! are listed after the table; the run still succeeds (this machine is shared and noisy).
//! `./build.sh bench` measures the shipped static musl binary; `sandbox --bench` alone, the
//! binary beside it or `--binary`. `--only NAME[,NAME]` runs a subset ([`SECTIONS`]; `--only
//! list` names them). The whole set takes about three minutes, and four more for the fault
//! table (`faults`, its own table after the main one).

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Duration;

use serde::Serialize;
use serde_json::{json, Value};

use kte_sandbox as sandbox;
use kte_sandbox::{Faults, Pace, Percentiles, Report, SandboxConfig, Workload};

mod faults;
mod fleet;
mod rows;

/// Process starts for the cold-start figures.
const COLD_STARTS: usize = 20;

/// Every section, in the order they run: (name, what it measures).
pub const SECTIONS: &[(&str, &str)] = &[
    (
        "cold-start",
        "process start to register, subscribed, first /event/next",
    ),
    (
        "overhead",
        "INVOKE to /event/next with nothing due and with a flush due",
    ),
    (
        "default",
        "peak RSS and CPU per invocation, 200 frozen invocations of 5 lines",
    ),
    ("throughput", "sustained events/s and overload"),
    ("heavy", "600 function lines of 10 KB per invocation"),
    ("sparse", "one invocation every 2 s"),
    ("busy", "10 invocations/s, 20 ms handler"),
    ("end", "the busy workload with the end strategy"),
    (
        "deadline",
        "a handler that runs until its deadline, end strategy",
    ),
    ("cost", "what records cost, and 5 % of records throttled"),
    (
        "managed",
        "Lambda Managed Instances: 4 workers at 50/s; 8 workers at 100/s throttled",
    ),
    ("idle", "idle CPU on Managed Instances over 10 s"),
    (
        "outage",
        "20 s Kinesis outage past the memory cap, spill on and off",
    ),
    ("metrics", "EMF lines for 1,000 invocations"),
    (
        "faults",
        "time added per invocation under each Kinesis fault, sparse and busy (its own table)",
    ),
    (
        "fleet",
        "4 environments into one shard with its limits, over and under capacity (its own table)",
    ),
];

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

/// One sandbox session of the benchmarks.
struct Session<'a> {
    workload: Workload,
    env: Vec<(&'a str, String)>,
    faults: Faults,
    expect_loss: bool,
    /// Warn when the session fails its usual checks.
    judge: bool,
}

impl<'a> Session<'a> {
    fn of(workload: Workload) -> Self {
        Session {
            workload,
            env: Vec::new(),
            faults: Faults::default(),
            expect_loss: false,
            judge: true,
        }
    }

    fn env(mut self, k: &'a str, v: &str) -> Self {
        self.env.push((k, v.to_owned()));
        self
    }

    fn faults(mut self, f: Faults) -> Self {
        self.faults = f;
        self
    }

    fn run(self, base: &SandboxConfig, what: &str) -> Result<Report, String> {
        eprintln!("[bench] {what}");
        let mut cfg = base.clone();
        cfg.workload = self.workload;
        cfg.faults = Faults {
            seed: base.faults.seed,
            ..self.faults
        };
        cfg.progress_every = 0;
        cfg.env
            .extend(self.env.into_iter().map(|(k, v)| (k.to_owned(), v)));
        let mut r = sandbox::run(&cfg)?;
        r.judge(self.expect_loss);
        if self.judge && !r.passed() {
            eprintln!("[bench] warning: {what}: {}", r.failures.join("; "));
        }
        Ok(r)
    }
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

/// 10 invocations/s, 5 lines, 20 ms handler, 100 invocations.
fn busy() -> Workload {
    Workload {
        invocations: 100,
        pace: Pace::Rate(10.0),
        runtime_duration: Duration::from_millis(20),
        ..Workload::default()
    }
}

fn managed(concurrency: usize, rate: f64, invocations: usize) -> Workload {
    Workload {
        invocations,
        pace: Pace::Rate(rate),
        managed_instances: true,
        concurrency,
        freeze: false,
        ..Workload::default()
    }
}

fn ms_of(v: &[f64]) -> Percentiles {
    let d: Vec<Duration> = v.iter().map(|m| Duration::from_secs_f64(m / 1e3)).collect();
    Percentiles::of(&d)
}

fn p(x: &Percentiles) -> String {
    format!(
        "p50 {:.3} / p99 {:.3} / max {:.3}",
        x.p50_ms, x.p99_ms, x.max_ms
    )
}

fn mb(kb: Option<u64>) -> String {
    kb.map_or("?".into(), |k| format!("{:.2} MB", k as f64 / 1024.0))
}

fn share(s: Option<f64>) -> String {
    s.map_or("n/a".into(), |s| format!("{:.1} %", s * 100.0))
}

fn dropped(r: &Report) -> String {
    match &r.extension {
        None => "?".into(),
        Some(c) if c.dropped == 0 => "0".into(),
        Some(c) => format!("{} ({})", c.dropped, c.reasons()),
    }
}

fn summary(r: &Report) -> Value {
    json!({
        "passed": r.passed(), "failures": r.failures, "emitted": r.emitted, "lost": r.lost,
        "duplicated": r.duplicated, "emit_to_stream": r.emit_to_stream,
        "emit_to_stream_function": r.emit_to_stream_function,
        "function_in_stream_at_end": r.function_in_stream_at_end,
        "function_in_stream_at_next_end": r.function_in_stream_at_next_end,
        "runtime_done_to_next": r.runtime_done_to_next, "cost": r.cost, "order": r.order,
        "extension": r.extension, "cpu_ms": r.cpu_ms, "cpu_per_invocation_ms": r.cpu_per_invocation_ms,
        "idle_cpu_ms": r.idle_cpu_ms, "peak_rss_kb": r.peak_rss_kb, "emf_lines": r.emf_lines,
        "shutdown": r.shutdown, "invocations_past_deadline_margin": r.invocations_past_deadline_margin,
        "least_deadline_margin_ms": r.least_deadline_margin_ms,
    })
}

pub fn main(
    base: &SandboxConfig,
    seconds: f64,
    only: Option<&[String]>,
    as_json: bool,
) -> ExitCode {
    if let Some(names) = only {
        if names.iter().any(|n| n == "list") {
            for (n, what) in SECTIONS {
                println!("{n:<12} {what}");
            }
            return ExitCode::SUCCESS;
        }
        if let Some(bad) = names.iter().find(|n| !SECTIONS.iter().any(|(s, _)| s == n)) {
            eprintln!("[bench] unknown section {bad:?} (--only list names them)");
            return ExitCode::from(2);
        }
    }
    match run(base, seconds, only) {
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

/// The table's rows and the JSON of every figure, filled section by section; sections
/// with a table of their own add it to `tables` (printed after the main one).
#[derive(Default)]
struct Out {
    rows: Vec<String>,
    tables: Vec<String>,
    json: BTreeMap<String, Value>,
    /// The measures that missed their target.
    misses: Vec<String>,
}

impl Out {
    /// A row with no target to meet.
    fn row(&mut self, measure: &str, result: String, target: &str) {
        self.rows
            .push(format!("| {measure} | {result} | {target} | |"));
    }

    /// A row whose figure `met` its target, or not (flagged, and listed after the table).
    fn check(&mut self, measure: &str, result: String, target: &str, met: bool) {
        if !met {
            self.misses
                .push(format!("{measure}: {result} (target {target})"));
        }
        let flag = if met { "yes" } else { "**MISS**" };
        self.rows
            .push(format!("| {measure} | {result} | {target} | {flag} |"));
    }
}

/// Returns the Markdown table and the JSON of every figure.
fn run(
    base: &SandboxConfig,
    seconds: f64,
    only: Option<&[String]>,
) -> Result<(String, Value), String> {
    let m = machine();
    eprintln!(
        "[bench] machine: {} ({} cores, {} GB), Linux {}",
        m.cpu, m.cores, m.memory_gb, m.kernel
    );
    let wanted = |name: &str| only.is_none_or(|o| o.iter().any(|n| n == name));
    let mut out = Out::default();
    let mut busy_report: Option<Report> = None;
    for (name, _) in SECTIONS {
        if !wanted(name) {
            continue;
        }
        match *name {
            "cold-start" => rows::cold_start(base, &mut out)?,
            "overhead" => rows::overhead(base, &mut out)?,
            "default" => rows::default_workload(base, &mut out)?,
            "throughput" => rows::throughput(seconds, &mut out)?,
            "heavy" => rows::heavy(base, &mut out)?,
            "sparse" => rows::sparse(base, &mut out)?,
            "busy" => busy_report = Some(rows::busy_section(base, &mut out)?),
            "end" => rows::end_strategy(base, &mut out)?,
            "deadline" => rows::deadline(base, &mut out)?,
            "cost" => rows::cost(base, busy_report.take(), &mut out)?,
            "managed" => rows::managed_instances(base, &mut out)?,
            "idle" => rows::idle(base, &mut out)?,
            "outage" => rows::outage(base, &mut out)?,
            "metrics" => rows::metrics(base, &mut out)?,
            "faults" => faults::faults(base, &mut out)?,
            "fleet" => fleet::fleet_rows(base, &mut out)?,
            _ => unreachable!("every section is listed"),
        }
    }
    let bin = base
        .binary
        .clone()
        .unwrap_or_else(kte_test_support::extension_binary);
    let size = std::fs::metadata(&bin).map(|m| m.len()).unwrap_or(0);
    out.check(
        "Binary size (release, stripped)",
        format!("{:.2} MiB", size as f64 / 1_048_576.0),
        "< 2.5 MiB",
        size < 5 * 1024 * 1024 / 2,
    );
    let mut table = String::from("| Measure | Result | Target | Met |\n|---|---|---|---|\n");
    for r in &out.rows {
        table.push_str(r);
        table.push('\n');
    }
    for t in &out.tables {
        table.push('\n');
        table.push_str(t);
    }
    table.push_str(&format!(
        "\nBinary: {}\nMachine: {} ({} cores, {} GB RAM), Linux {}\n",
        bin.display(),
        m.cpu,
        m.cores,
        m.memory_gb,
        m.kernel
    ));
    if out.misses.is_empty() {
        table.push_str("Every figure met its target.\n");
    } else {
        table.push_str(&format!("Missed {}:\n", out.misses.len()));
        for miss in &out.misses {
            table.push_str(&format!("- {miss}\n"));
        }
    }
    let mut v = json!({ "machine": m, "binary": bin, "binary_bytes": size, "misses": out.misses });
    for (k, x) in out.json {
        v[k] = x;
    }
    Ok((table, v))
}
