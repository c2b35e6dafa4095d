//! The sandbox report for people: the per-type table, then one line per phase, then
//! `RESULT: PASS` or what failed.

use super::Report;

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
