//! The fleet rows (issue 20): four environments of one function writing to a one-shard
//! stream with Kinesis's per-shard limits enforced, 10 invocations/s each, over and under
//! the shard's capacity. Each row is one fleet of 200 invocations per environment (20 s of
//! load); the two take about a minute.
//!
//! The load, with what an event takes in the stored NDJSON records measured in the sandbox
//! (a function line: its text plus about 247 bytes of enrichment, newline and its share of
//! the partition key; `platform.start`, `platform.runtimeDone` and `platform.report`: about
//! 2,100 bytes together), against the shard's 1 MiB/s = 1,048,576 bytes/s:
//! - over: 21 lines of 1,500 bytes: 21 × 1,747 + 2,100 = 38,787 bytes per invocation × 40
//!   invocations/s = 1,551,480 bytes/s ≈ 1.48 × the shard;
//! - under: 22 lines of 600 bytes: 22 × 847 + 2,100 = 20,734 bytes × 40 = 829,360 bytes/s
//!   ≈ 0.79 × the shard.
//!
//! The fleet report prints the offered load it estimates from the run itself beside it.

use serde_json::json;

use kte_sandbox as sandbox;
use kte_sandbox::{FleetReport, Pace, SandboxConfig, Workload};

use super::Out;

const ENVIRONMENTS: usize = 4;
const INVOCATIONS: usize = 200;
const RATE: f64 = 10.0;

fn fleet(base: &SandboxConfig, lines: usize, line_bytes: usize) -> Result<FleetReport, String> {
    let mut cfg = base.clone();
    cfg.workload = Workload {
        invocations: INVOCATIONS,
        pace: Pace::Rate(RATE),
        lines_per_invoke: lines,
        line_bytes,
        ..Workload::default()
    };
    cfg.faults.kinesis = None;
    cfg.shards = Some(1);
    cfg.environments = ENVIRONMENTS;
    cfg.progress_every = 0;
    cfg.pin = None;
    eprintln!(
        "[bench] fleet: {ENVIRONMENTS} environments × {INVOCATIONS} invocations at {RATE}/s, {lines} lines of {line_bytes} B, one shard"
    );
    let mut r = sandbox::run_fleet(&cfg)?;
    // Over capacity the loss is expected (and counted): what the row measures is the rest.
    r.judge(true);
    if !r.passed() {
        eprintln!("[bench] warning: fleet: {}", r.failures.join("; "));
    }
    Ok(r)
}

fn row(what: &str, r: &FleetReport, target: &str) -> String {
    let t = &r.total;
    let busy = r
        .shard_load
        .iter()
        .map(|s| format!("{:.0} %", s.busy * 100.0))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "| {what} | {:.2} × | {} of {} | mean {:.1} ms, max {:.1} ms | {} ({:.1} MB to land {:.1} MB) | {} | {} | {busy} | {} | {target} |\n",
        r.offered_over_capacity.unwrap_or(f64::NAN),
        t.lost,
        t.emitted,
        t.added_mean_ms,
        t.added_max_ms,
        t.sent_over_accepted.map_or("n/a".to_owned(), |x| format!("{x:.1} ×")),
        t.request_bytes as f64 / 1e6,
        t.accepted_bytes as f64 / 1e6,
        t.put_records_calls,
        t.throttled_records,
        if t.clean_exit { "every one" } else { "NO" },
    )
}

pub(super) fn fleet_rows(base: &SandboxConfig, out: &mut Out) -> Result<(), String> {
    let over = fleet(base, 21, 1500)?;
    let under = fleet(base, 22, 600)?;
    let mut table = format!(
        "Fleet: {ENVIRONMENTS} environments of one function into a one-shard stream (1 MiB/s, 1,000 records/s enforced per record), {RATE} invocations/s each, {INVOCATIONS} invocations per environment; offered load estimated from the run.\n\n\
         | load | offered ÷ shard | lost | time added per invocation | request bytes sent ÷ bytes the shard accepted | PutRecords calls | throttled records | shard busy | clean exit before the deadline | target |\n\
         |---|---|---|---|---|---|---|---|---|---|\n"
    );
    table.push_str(&row(
        "over capacity: 21 × 1.5 KB lines",
        &over,
        "sent ≤ 3 × accepted; busy ≥ 90 %; added mean ≤ 5 ms, max ≤ 100 ms; clean exits",
    ));
    table.push_str(&row(
        "under capacity: 22 × 600 B lines",
        &under,
        "0 lost; added mean ≤ 2 ms",
    ));
    out.tables.push(table);
    let strip = |r: &FleetReport| {
        json!({
            "offered_over_capacity": r.offered_over_capacity,
            "offered_bytes_per_second": r.offered_bytes_per_second,
            "load_seconds": r.load_seconds,
            "per_environment": r.per_environment, "total": r.total, "shard_load": r.shard_load,
            "failures": r.failures,
        })
    };
    out.json.insert(
        "fleet".into(),
        json!({ "over_capacity": strip(&over), "under_capacity": strip(&under) }),
    );
    Ok(())
}
