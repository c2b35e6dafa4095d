//! The benchmark sections: each runs its sandbox sessions and adds its rows (and its JSON)
//! to the table. [`super::SECTIONS`] lists them in order.

use std::time::Duration;

use serde_json::json;

use kte_sandbox::{Faults, Outage, Pace, Report, SandboxConfig, Workload};

use super::{
    busy, dropped, managed, mb, ms_of, p, quick, share, summary, Out, Session, COLD_STARTS,
};

/// Under overload memory stays bounded: the 8 MiB buffer cap, one full 5 MiB request's base64
/// body (6.7 MB) being sent, and the process itself.
const OVERLOAD_RSS_TARGET: &str = "bounded by the buffer cap: peak RSS ≤ 24 MB";
const OVERLOAD_RSS_KB: u64 = 24 * 1024;

pub(super) fn cold_start(base: &SandboxConfig, out: &mut Out) -> Result<(), String> {
    let (mut reg, mut sub, mut next) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..COLD_STARTS {
        // No grace at SHUTDOWN: these sessions measure the start only (the init
        // telemetry that arrives after SHUTDOWN is not waited for).
        let mut s = Session::of(quick()).env("KINESIS_TELEMETRY_SHUTDOWN_GRACE_MS", "0");
        s.judge = false;
        let r = s.run(base, &format!("cold start {}/{COLD_STARTS}", i + 1))?;
        reg.push(r.startup.register_ms);
        sub.push(r.startup.subscribed_ms.unwrap_or(f64::NAN));
        next.push(r.startup.first_next_ms);
    }
    let first = ms_of(&next);
    out.check(
        &format!("Cold start: process start → first `/event/next` ({COLD_STARTS} starts)"),
        format!("median {:.2} ms, p99 {:.2} ms", first.p50_ms, first.p99_ms),
        "median ≤ 3 ms",
        first.p50_ms <= 3.0,
    );
    out.row(
        "… to register / to subscribed (median)",
        format!(
            "{:.2} ms / {:.2} ms",
            ms_of(&reg).p50_ms,
            ms_of(&sub).p50_ms
        ),
        "",
    );
    out.json.insert(
        "cold_start_ms".into(),
        json!({ "register": ms_of(&reg), "subscribed": ms_of(&sub), "first_next": first }),
    );
    Ok(())
}

pub(super) fn overhead(base: &SandboxConfig, out: &mut Out) -> Result<(), String> {
    let nothing = Session::of(Workload {
        invocations: 1000,
        ..quick()
    })
    .env("KINESIS_TELEMETRY_FLUSH_MAX_EVENTS", "10000000")
    .env("KINESIS_TELEMETRY_FLUSH_MAX_BYTES", "1073741824")
    .env("KINESIS_TELEMETRY_FLUSH_STRATEGY", "background")
    .env("KINESIS_TELEMETRY_FRESHNESS_MS", "3600000")
    .run(base, "per-invoke overhead, nothing due: 1000 invocations")?;
    let due = Session::of(Workload {
        invocations: 300,
        lines_per_invoke: 3,
        deliver_before_invoke: true,
        ..quick()
    })
    .env("KINESIS_TELEMETRY_FRESHNESS_MS", "0")
    .env("KINESIS_TELEMETRY_FLUSH_STRATEGY", "background")
    .run(base, "per-invoke overhead, flush due: 300 invocations")?;
    out.check(
        "Per-invoke overhead, nothing due (INVOKE → `/event/next`, 1000 invokes, ms)",
        p(&nothing.invoke_to_next),
        "p99 ≤ 0.5 ms",
        nothing.invoke_to_next.p99_ms <= 0.5,
    );
    out.row(
        "Per-invoke overhead, flush due (one PutRecords to the mock, 300 invokes, ms)",
        p(&due.invoke_to_next),
        "",
    );
    out.json.insert(
        "overhead".into(),
        json!({ "nothing_due_invoke_to_next": nothing.invoke_to_next,
                "flush_due_invoke_to_next": due.invoke_to_next }),
    );
    Ok(())
}

pub(super) fn default_workload(base: &SandboxConfig, out: &mut Out) -> Result<(), String> {
    let r = Session::of(Workload::default())
        .run(base, "default workload: 200 frozen invocations of 5 lines")?;
    out.check(
        "Peak RSS, 200 invocations (default workload, freeze on)",
        mb(r.peak_rss_kb),
        "≤ 5 MB",
        r.peak_rss_kb.is_some_and(|kb| kb <= 5 * 1024),
    );
    out.row(
        "CPU per invocation, 200 frozen invocations of 5 lines (first INVOKE → last `/event/next`)",
        format!(
            "{:.3} ms ({:.1} ms in all, exit included)",
            r.cpu_per_invocation_ms.unwrap_or(f64::NAN),
            r.cpu_ms.unwrap_or(f64::NAN)
        ),
        "",
    );
    out.json.insert("default_workload".into(), summary(&r));
    Ok(())
}

pub(super) fn throughput(seconds: f64, out: &mut Out) -> Result<(), String> {
    eprintln!("[bench] sustained throughput: {seconds} s of 200-byte events, closed loop");
    let tp = crate::throughput::throughput(seconds, 200, Some(20_000), &[])?;
    eprintln!("[bench] overload: {seconds} s of 200-byte events as fast as the listener answers");
    let over = crate::throughput::throughput(seconds, 200, None, &[])?;
    out.check(
        &format!(
            "Sustained throughput, ~200-byte events, extension on one core{}",
            if tp.pinned { " (pinned)" } else { "" }
        ),
        format!(
            "{:.0} events/s ({:.1} MB/s), {:.2} cores used, dropped {}, peak RSS {}",
            tp.delivered_per_s,
            tp.delivered_mb_per_s,
            tp.cpu_cores_used.unwrap_or(f64::NAN),
            tp.extension_dropped.map_or("?".into(), |d| d.to_string()),
            mb(tp.peak_rss_kb)
        ),
        "≥ 100,000 events/s",
        tp.delivered_per_s >= 100_000.0,
    );
    out.check(
        &format!(
            "Overload (listener answered as fast as it could for {:.0} s)",
            over.seconds
        ),
        format!(
            "accepted {:.0} events/s, delivered {:.0} events/s, dropped {} at the buffer cap; peak RSS {} (cap 8 MiB of events)",
            over.produced as f64 / (over.seconds + 1.0),
            over.delivered_per_s,
            over.extension_dropped.map_or("?".into(), |d| d.to_string()),
            mb(over.peak_rss_kb)
        ),
        OVERLOAD_RSS_TARGET,
        over.peak_rss_kb.is_some_and(|kb| kb <= OVERLOAD_RSS_KB),
    );
    out.json.insert("throughput".into(), json!(tp));
    out.json.insert("overload".into(), json!(over));
    Ok(())
}

pub(super) fn heavy(base: &SandboxConfig, out: &mut Out) -> Result<(), String> {
    let r = Session::of(Workload {
        invocations: 10,
        lines_per_invoke: 600,
        line_bytes: 10_000,
        ..Workload::default()
    })
    .run(base, "heavy: 10 invocations of 600 function lines of 10 KB")?;
    out.check(
        "Heavy: 600 × 10 KB function lines per invocation, 10 invocations: lost",
        format!(
            "{} of {} (extension dropped {}), emit → stream p99 {:.0} ms",
            r.lost,
            r.emitted,
            dropped(&r),
            r.emit_to_stream.p99_ms
        ),
        "0",
        r.lost == 0,
    );
    out.json.insert("heavy".into(), summary(&r));
    Ok(())
}

pub(super) fn sparse(base: &SandboxConfig, out: &mut Out) -> Result<(), String> {
    let r = Session::of(Workload {
        invocations: 10,
        pace: Pace::Rate(0.5),
        ..Workload::default()
    })
    .run(base, "sparse: one invocation every 2 s, 10 invocations")?;
    out.check(
        "Sparse: one invocation every 2 s, 5 lines, 10 invocations: function lines in the stream before their invocation ends; emit → stream p99, function lines / all events (`platform.report` comes after `/event/next`: it travels with the next invocation)",
        format!(
            "{}; p99 {:.0} ms / {:.0} ms",
            share(r.function_in_stream_at_end),
            r.emit_to_stream_function.p99_ms,
            r.emit_to_stream.p99_ms
        ),
        "≥ 99 %; function lines p99 ≤ 300 ms",
        r.function_in_stream_at_end.is_some_and(|s| s >= 0.99)
            && r.emit_to_stream_function.p99_ms <= 300.0,
    );
    out.json.insert("sparse".into(), summary(&r));
    Ok(())
}

pub(super) fn busy_section(base: &SandboxConfig, out: &mut Out) -> Result<Report, String> {
    let r = Session::of(busy()).run(
        base,
        "busy: 10 invocations/s, 20 ms handler, 100 invocations",
    )?;
    out.check(
        "Busy: 10 invocations/s, 5 lines, 20 ms handler, 100 invocations: emit → stream p99; time added per invocation (mean)",
        format!(
            "p99 {:.0} ms; added {:.2} ms",
            r.emit_to_stream.p99_ms, r.runtime_done_to_next.mean_ms
        ),
        "p99 ≤ 1.5 s",
        r.emit_to_stream.p99_ms <= 1500.0,
    );
    out.json.insert("busy".into(), summary(&r));
    Ok(r)
}

pub(super) fn end_strategy(base: &SandboxConfig, out: &mut Out) -> Result<(), String> {
    let r = Session::of(busy())
        .env("KINESIS_TELEMETRY_FLUSH_STRATEGY", "end")
        .run(base, "end strategy: the busy workload")?;
    out.check(
        "`end` strategy, busy workload: function lines in the stream before their invocation ends; time added (p50)",
        format!(
            "{}; added p50 {:.1} ms",
            share(r.function_in_stream_at_end),
            r.runtime_done_to_next.p50_ms
        ),
        "100 %",
        r.function_in_stream_at_end == Some(1.0),
    );
    out.json.insert("end".into(), summary(&r));
    Ok(())
}

pub(super) fn deadline(base: &SandboxConfig, out: &mut Out) -> Result<(), String> {
    let timeout = Duration::from_millis(1_000);
    let r = Session::of(Workload {
        invocations: 5,
        function_timeout: timeout,
        runtime_duration: timeout,
        ..Workload::default()
    })
    .env("KINESIS_TELEMETRY_FLUSH_STRATEGY", "end")
    .run(
        base,
        "a handler that runs until its 1 s deadline, end strategy",
    )?;
    out.check(
        "`end`, handler runs until its deadline (1 s timeout, 5 invocations): invocations held past deadline − 100 ms; least time left",
        format!(
            "{}; {:.1} ms",
            r.invocations_past_deadline_margin,
            r.least_deadline_margin_ms.unwrap_or(f64::NAN)
        ),
        "0",
        r.invocations_past_deadline_margin == 0,
    );
    out.json.insert("deadline".into(), summary(&r));
    Ok(())
}

pub(super) fn cost(
    base: &SandboxConfig,
    busy_report: Option<Report>,
    out: &mut Out,
) -> Result<(), String> {
    let r = match busy_report {
        Some(r) => r,
        None => Session::of(busy()).run(base, "cost: 10 invocations/s, defaults")?,
    };
    let c = &r.cost;
    let named = r.verified && r.unenriched_events == 0 && r.event_id_collisions == 0;
    out.check(
        "Cost, 10 invocations/s × 5 lines, defaults: PUT payload units per 1,000 events; on-demand billed KiB ÷ payload KiB; records per event; every event names its function",
        format!(
            "{:.2}; {:.3}; {:.3}; {}",
            c.put_units_per_1000_events,
            c.billed_over_payload,
            c.records_per_event,
            if named { "yes" } else { "NO" }
        ),
        "≤ 50; ≤ 1.1; ≤ 0.1; yes",
        c.put_units_per_1000_events <= 50.0
            && c.billed_over_payload <= 1.1
            && c.records_per_event <= 0.1
            && named,
    );
    let throttled = Session::of(busy())
        .faults(Faults {
            throttle: 0.05,
            ..Faults::default()
        })
        .run(base, "cost workload with 5 % of records throttled")?;
    out.check(
        "… with 5 % of records throttled: lost",
        format!("{} of {}", throttled.lost, throttled.emitted),
        "0",
        throttled.lost == 0,
    );
    out.json.insert(
        "cost".into(),
        json!({ "defaults": summary(&r), "throttled": summary(&throttled) }),
    );
    Ok(())
}

pub(super) fn managed_instances(base: &SandboxConfig, out: &mut Out) -> Result<(), String> {
    let r = Session::of(managed(4, 50.0, 300)).run(
        base,
        "Managed Instances: 4 workers, 50 invocations/s, 300 invocations",
    )?;
    out.check(
        "Managed Instances, 4 workers, 50 invocations/s, 300 invocations of 5 lines: lost; emit → stream p99; exit margin",
        format!(
            "{} of {}; p99 {:.0} ms; exited {:.0} ms before the deadline",
            r.lost,
            r.emitted,
            r.emit_to_stream.p99_ms,
            r.shutdown.margin_ms.unwrap_or(f64::NAN)
        ),
        "0 lost",
        r.lost == 0,
    );
    let t = Session::of(managed(8, 100.0, 500))
        .faults(Faults {
            throttle: 0.10,
            ..Faults::default()
        })
        .run(
            base,
            "Managed Instances: 8 workers, 100 invocations/s, 10 % throttled",
        )?;
    out.check(
        "Managed Instances, 8 workers, 100 invocations/s, 500 invocations, 10 % of records throttled: lost",
        format!("{} of {}", t.lost, t.emitted),
        "0",
        t.lost == 0,
    );
    out.json.insert(
        "managed_instances".into(),
        json!({ "four_workers": summary(&r), "eight_workers_throttled": summary(&t) }),
    );
    Ok(())
}

pub(super) fn idle(base: &SandboxConfig, out: &mut Out) -> Result<(), String> {
    let r = Session::of(Workload {
        idle_before_shutdown: Duration::from_secs(10),
        ..managed(4, 1.0, 0)
    })
    .run(base, "idle: Managed Instances, 10 s without telemetry")?;
    out.row(
        "Idle extension CPU over 10 s with no telemetry (Managed Instances: never frozen)",
        format!("{:.2} ms", r.idle_cpu_ms.unwrap_or(f64::NAN)),
        "",
    );
    out.json.insert("idle".into(), summary(&r));
    Ok(())
}

pub(super) fn outage(base: &SandboxConfig, out: &mut Out) -> Result<(), String> {
    let spill_dir = std::env::temp_dir().join(format!("kte-bench-spill-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&spill_dir);
    let dir = spill_dir.display().to_string();
    let workload = Workload {
        invocations: 250,
        pace: Pace::Rate(10.0),
        lines_per_invoke: 50,
        ..Workload::default()
    };
    let faults = Faults {
        outage: Some(Outage::Timed {
            start: Duration::ZERO,
            length: Duration::from_secs(20),
        }),
        ..Faults::default()
    };
    let mut results = Vec::new();
    for spill in [true, false] {
        let mut s = Session::of(workload.clone())
            .faults(faults.clone())
            .env("KINESIS_TELEMETRY_BUFFER_MAX_BYTES", "1048576")
            .env("KINESIS_TELEMETRY_PARTITION_KEY", "environment");
        if spill {
            s = s
                .env("KINESIS_TELEMETRY_SPILL_MAX_BYTES", "67108864")
                .env("KINESIS_TELEMETRY_SPILL_DIR", &dir);
        }
        s.expect_loss = true;
        let what = format!(
            "outage: 20 s, 10 invocations/s × 50 lines, 1 MiB memory cap, spill {}",
            if spill { "on" } else { "off" }
        );
        let r = s.run(base, &what)?;
        // Judged with --expect-loss: passing means the loss lies within what the extension
        // counted (and nothing else failed).
        let met = if spill {
            r.lost == 0 && r.order.inversions == 0 && r.passed()
        } else {
            r.passed()
        };
        out.check(
            &format!(
                "Outage 20 s, 10 invocations/s × 50 lines, 1 MiB buffer, spill {}: lost; counted drops; order inversions (key `environment`)",
                if spill { "on (64 MiB)" } else { "off" }
            ),
            format!("{} of {}; {}; {}", r.lost, r.emitted, dropped(&r), r.order.inversions),
            if spill { "0 lost, 0 inversions" } else { "loss counted exactly" },
            met,
        );
        results.push(summary(&r));
    }
    let _ = std::fs::remove_dir_all(&spill_dir);
    out.json.insert(
        "outage".into(),
        json!({ "spill_on": results[0], "spill_off": results[1] }),
    );
    Ok(())
}

pub(super) fn metrics(base: &SandboxConfig, out: &mut Out) -> Result<(), String> {
    let r = Session::of(Workload {
        invocations: 1000,
        pace: Pace::Rate(100.0),
        ..Workload::default()
    })
    .env("KINESIS_TELEMETRY_METRICS_INTERVAL_MS", "10000")
    .run(
        base,
        "metrics: 1,000 invocations at 100/s, 10 s metrics interval",
    )?;
    let most = (r.wall_ms / 10_000.0).floor() as u64 + 1;
    out.check(
        "EMF metric lines, 1,000 invocations at 100/s (`METRICS_INTERVAL_MS=10000`)",
        format!("{} over {:.1} s", r.emf_lines, r.wall_ms / 1000.0),
        "one per interval + one at SHUTDOWN",
        (1..=most).contains(&r.emf_lines),
    );
    out.json.insert("metrics".into(), summary(&r));
    Ok(())
}
