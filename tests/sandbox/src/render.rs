//! The sandbox report for people: what ran, the settings the extension reported using, the
//! per-type table, one line per aspect, what the verdict rests on, then `RESULT: PASS` (with
//! how much was lost and whose, if anything was) or what failed. Plain words and numbers: no
//! debug formatting, counts with their plurals.

use std::time::Duration;

use super::report::count;
use super::{Outage, Pace, Percentiles, Report, RunSettings, SandboxConfig};

fn pct(p: &Percentiles) -> String {
    format!(
        "p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        p.p50_ms, p.p99_ms, p.max_ms
    )
}

fn share(s: Option<f64>) -> String {
    s.map_or("n/a".to_owned(), |s| format!("{:.1} %", s * 100.0))
}

fn millis(d: Duration) -> String {
    format!("{} ms", d.as_millis())
}

fn percent(f: f64) -> String {
    format!("{} %", (f * 1000.0).round() / 10.0)
}

/// One line saying what a session will run (the sandbox prints it first).
pub fn describe(cfg: &SandboxConfig) -> String {
    let w = &cfg.workload;
    let mode = if w.managed_instances {
        format!(
            "Lambda Managed Instances, {}, no freeze",
            count(w.concurrency as u64, "worker")
        )
    } else {
        format!("Lambda, freeze {}", if w.freezes() { "on" } else { "off" })
    };
    let pace = match w.pace {
        Pace::Gap(g) => format!("{} apart", millis(g)),
        Pace::Rate(r) => format!("{r} per second"),
    };
    let f = &cfg.faults;
    let mut faults = Vec::new();
    if f.throttle > 0.0 {
        faults.push(format!("{} of records throttled", percent(f.throttle)));
    }
    if f.throttle_first_records > 0 {
        faults.push(format!(
            "the first {} throttled",
            count(f.throttle_first_records, "record")
        ));
    }
    if f.fail_500 > 0.0 {
        faults.push(format!("{} of requests answered 500", percent(f.fail_500)));
    }
    if f.fail_first_requests > 0 {
        faults.push(format!(
            "the first {} answered 500",
            count(f.fail_first_requests, "request")
        ));
    }
    if !f.latency.is_zero() {
        faults.push(format!("{} latency", millis(f.latency)));
    }
    if f.drop_connections > 0.0 {
        faults.push(format!(
            "{} of connections dropped",
            percent(f.drop_connections)
        ));
    }
    if let Some(k) = f.kinesis {
        faults.push(format!("Kinesis {} ({k})", k.describe()));
    }
    match f.outage {
        Some(Outage::Timed { start, length }) => faults.push(format!(
            "outage of {} from {} after the first invocation",
            millis(length),
            millis(start)
        )),
        Some(Outage::Invocations { start, end }) => faults.push(format!(
            "outage from invocation {start} until invocation {end} begins"
        )),
        None => {}
    }
    if let Some(n) = cfg.shards {
        faults.push(format!(
            "{}, Kinesis's per-shard limits enforced",
            count(u64::from(n), "shard")
        ));
    }
    let target = match &cfg.endpoint {
        Some(e) => format!("endpoint {e} (not checked off)"),
        None if faults.is_empty() => "mock Kinesis, no faults".to_owned(),
        None => format!("mock Kinesis with {}", faults.join(", ")),
    };
    // What was asked for; the report shows what the extension used.
    let asked = if cfg.env.is_empty() {
        "extension with default settings".to_owned()
    } else {
        let vars: Vec<String> = cfg.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        format!("extension asked for {}", vars.join(", "))
    };
    let fleet = if cfg.environments > 1 {
        format!("{} × ", count(cfg.environments as u64, "environment"))
    } else {
        String::new()
    };
    format!(
        "[sandbox] {fleet}{} ({mode}), {pace}, {} {} of {} B each, handler {}; {asked}; {target}",
        count(w.invocations as u64, "invocation"),
        w.lines_per_invoke,
        if w.lines_per_invoke == 1 {
            format!("{} function line", w.log_format.name())
        } else {
            format!("{} function lines", w.log_format.name())
        },
        w.line_bytes,
        millis(w.runtime_duration),
    )
}

/// The settings line: what the extension reported using (its start-up line), and what it
/// refused.
fn settings(r: &Report) -> String {
    let registered = if r.registered_events.is_empty() {
        "nothing".to_owned()
    } else {
        r.registered_events.join(" and ")
    };
    let Some(s) = &r.settings else {
        return format!(
            "extension settings: not reported (the extension never said it subscribed; see its log); registered for {registered}"
        );
    };
    let sending = match &s.strategy {
        Some(strategy) => format!("{strategy} pacing"),
        None => "sending continuously (Managed Instances: no pacing strategy)".to_owned(),
    };
    let filter = s
        .filter()
        .map_or(String::new(), |f| format!(", filter: {f}"));
    let refused = if s.not_used.is_empty() {
        String::new()
    } else {
        format!("; not used: {}", s.not_used.join(", "))
    };
    format!(
        "extension settings (from its log): {sending}, freshness budget {} ms, {} records, partition key {}, enrichment {}{filter}; registered for {registered}{refused}",
        s.freshness_ms,
        s.record_format,
        s.partition_key,
        if s.enrich { "on" } else { "off" },
    )
}

/// What the freshness figures are measured against.
fn freshness(s: Option<&RunSettings>) -> String {
    match s {
        None => String::new(),
        Some(s) => match s.strategy.as_deref() {
            Some("end") => format!(
                " (end pacing: each invocation held until its lines are in; freshness budget {} ms)",
                s.freshness_ms
            ),
            Some(p) => format!(
                " ({p} pacing: lines are due within the freshness budget of {} ms, not by their invocation's end; --strategy end holds each invocation until they are in)",
                s.freshness_ms
            ),
            None => format!(" (freshness budget {} ms)", s.freshness_ms),
        },
    }
}

/// The report for people.
pub fn render(r: &Report) -> String {
    let mut o = String::new();
    let mut line = |s: String| {
        o.push_str(&s);
        o.push('\n');
    };
    let mode = match r.concurrency {
        Some(n) if r.managed_instances => format!(
            "Lambda Managed Instances, {}, no freeze",
            count(n as u64, "worker")
        ),
        _ if r.freeze => format!("Lambda, freeze on ({})", count(r.freezes, "freeze")),
        _ => "Lambda, freeze off".to_owned(),
    };
    line(format!(
        "== sandbox report: {} on {mode}, {:.1} s ==",
        count(r.invocations as u64, "invocation"),
        r.wall_ms / 1000.0
    ));
    line(settings(r));
    table(r, &mut line);
    checks(r, &mut line);
    timing(r, &mut line);
    extension(r, &mut line);
    line(format!("verdict based on {}", r.verdict_basis));
    match (r.failures.is_empty(), r.loss.is_empty()) {
        (true, true) => line("RESULT: PASS".into()),
        (true, false) => line(format!("RESULT: PASS with loss: {}", r.loss.join("; "))),
        (false, _) => line(format!("RESULT: FAIL: {}", r.failures.join("; "))),
    }
    o
}

fn table(r: &Report, line: &mut impl FnMut(String)) {
    let platform = r.platform_dropped > 0;
    let filtered = r.filtered > 0;
    if !r.verified {
        line(format!("{:<26} {:>9}", "event type", "emitted"));
        for (t, c) in &r.by_type {
            line(format!("{t:<26} {:>9}", c.emitted));
        }
        line(format!("{:<26} {:>9}", "total", r.emitted));
        line("(real endpoint: events are not checked off; see what the extension counted)".into());
        return;
    }
    // Columns shown only when they hold something: filtered, and dropped by Lambda.
    let extra = |f: String, p: String| {
        let mut s = String::new();
        if filtered {
            s.push_str(&format!(" {f:>9}"));
        }
        if platform {
            s.push_str(&format!(" {p:>16}"));
        }
        s
    };
    line(format!(
        "{:<26} {:>9} {:>10} {:>6} {:>11}{}",
        "event type",
        "emitted",
        "delivered",
        "lost",
        "duplicated",
        extra("filtered".into(), "Lambda dropped".into())
    ));
    for (t, c) in &r.by_type {
        line(format!(
            "{t:<26} {:>9} {:>10} {:>6} {:>11}{}",
            c.emitted,
            c.delivered,
            c.lost,
            c.duplicated,
            extra(c.filtered.to_string(), c.platform_dropped.to_string())
        ));
    }
    line(format!(
        "{:<26} {:>9} {:>10} {:>6} {:>11}{}",
        "total",
        r.emitted,
        r.delivered,
        r.lost,
        r.duplicated,
        extra(r.filtered.to_string(), r.platform_dropped.to_string())
    ));
}

fn checks(r: &Report, line: &mut impl FnMut(String)) {
    if r.lost_during_outage > 0 || r.lost_after_outage > 0 {
        line(format!(
            "lost while Kinesis was down: {}; after it was back: {} of the {} emitted then",
            count(r.lost_during_outage, "event"),
            r.lost_after_outage,
            r.emitted_after_outage
        ));
    }
    if r.duplicated > 0 {
        let allowed = r.extension.as_ref().map_or(0, |c| c.unconfirmed);
        line(format!(
            "duplicates: {} (delivery is at least once: allowed up to the {allowed} events the extension resent unconfirmed)",
            count(r.duplicated, "extra copy"),
        ));
    }
    if r.platform_dropped > 0 {
        line(format!(
            "Lambda dropped {} before they reached the extension (platform.logsDropped); not lost by the extension",
            count(r.platform_dropped, "event")
        ));
    }
    if r.filtered > 0 {
        let filter = r.settings.as_ref().and_then(RunSettings::filter);
        line(format!(
            "filtered: {} left out by the extension's filter ({}), as asked; not lost",
            count(r.filtered, "event"),
            filter.as_deref().unwrap_or("none")
        ));
    }
    for (n, noun, what) in [
        (r.unexpected_events, "event", "matching no emitted event"),
        (r.undecodable_records, "record", "not decodable"),
        (
            r.unenriched_events,
            "event",
            "without the source naming the function",
        ),
        (
            r.event_id_collisions,
            "eventId",
            "shared by different events",
        ),
    ] {
        if n > 0 {
            line(format!("found: {} {what}", count(n, noun)));
        }
    }
    if !r.verified {
        return;
    }
    let k = &r.kinesis;
    line(format!(
        "kinesis: {}, {} ({} bytes of data), {} throttled, {} rejected, {} dropped",
        count(k.requests, "request"),
        count(k.records_accepted, "record"),
        k.data_bytes_accepted,
        count(k.records_throttled, "record"),
        count(k.requests_rejected, "request"),
        count(k.connections_dropped, "connection")
    ));
    for s in &k.shards {
        line(format!(
            "{} (1 MiB/s, 1,000 records/s): took {} ({} bytes), throttled {}",
            s.shard_id,
            count(s.accepted_records, "record"),
            s.accepted_bytes,
            count(s.throttled_records, "record")
        ));
    }
    if k.requests_held > 0 {
        line(format!(
            "kinesis held {} unanswered; the extension closed {} of them",
            count(k.requests_held, "request"),
            k.requests_abandoned
        ));
    }
    let c = &r.cost;
    line(format!(
        "cost: {:.3} records per event; {:.2} PUT payload units per 1,000 events (25 KiB units); on demand billed {:.3}× the payload (1 KiB rounding); payload {} bytes",
        c.records_per_event, c.put_units_per_1000_events, c.billed_over_payload, c.payload_bytes
    ));
    line(format!(
        "order: {} over {} ({})",
        count(r.order.inversions, "inversion"),
        count(r.order.partition_keys, "partition key"),
        if r.settings.as_ref().is_some_and(|s| s.fixed_partition_key) {
            "order per key promised"
        } else {
            "random keys: order not promised"
        }
    ));
}

fn timing(r: &Report, line: &mut impl FnMut(String)) {
    line(format!(
        "telemetry: {} to the extension, {} failed",
        count(r.telemetry_posts, "POST"),
        r.telemetry_posts_failed
    ));
    for p in &r.failed_posts {
        let verdict = if p.unanswered_at_exit() {
            " -> not a failure: the extension exited before answering, after its events were in Kinesis"
        } else {
            ""
        };
        line(format!("  failed telemetry POST {}{verdict}", p.describe()));
    }
    let s = &r.startup;
    line(format!(
        "startup: register {:.2} ms, subscribed {}, first /event/next {:.2} ms (from process start)",
        s.register_ms,
        s.subscribed_ms
            .map_or("never".to_owned(), |m| format!("{m:.2} ms")),
        s.first_next_ms
    ));
    if r.verified {
        let budget = r.settings.as_ref().map_or(String::new(), |s| {
            format!(" (freshness budget {} ms)", s.freshness_ms)
        });
        line(format!(
            "emit -> in Kinesis: all events {}; function lines {}{budget}",
            pct(&r.emit_to_stream),
            pct(&r.emit_to_stream_function)
        ));
        line(format!(
            "function lines in Kinesis when their invocation ended: {}; when the next one ended: {}{}",
            share(r.function_in_stream_at_end),
            share(r.function_in_stream_at_next_end),
            freshness(r.settings.as_ref())
        ));
    }
    let p = &r.runtime_done_to_next;
    if p.count > 0 {
        line(format!(
            "time added per invocation (runtimeDone -> /event/next): mean {:.2} ms, {} ({})",
            p.mean_ms,
            pct(p),
            count(p.count as u64, "invocation"),
        ));
        if let Some(l) = r.in_flight_at_next.describe() {
            line(l);
        }
        line(format!(
            "deadlines: {} past the deadline, {} within 100 ms of it; least time left {}",
            r.invocations_past_deadline,
            r.invocations_past_deadline_margin,
            r.least_deadline_margin_ms
                .map_or("n/a".to_owned(), |m| format!("{m:.1} ms"))
        ));
    }
}

fn extension(r: &Report, line: &mut impl FnMut(String)) {
    let cpu = match (r.cpu_ms, r.cpu_per_invocation_ms) {
        (Some(c), Some(per)) if r.invocations > 0 => {
            format!("CPU {c:.1} ms ({per:.3} ms per invocation)")
        }
        (Some(c), _) => format!("CPU {c:.1} ms"),
        (None, _) => "CPU unknown".to_owned(),
    };
    let idle = r
        .idle_cpu_ms
        .map_or(String::new(), |c| format!(", {c:.1} ms while idle"));
    line(format!(
        "extension: peak RSS {}, {cpu}{idle}; {}; {}",
        r.peak_rss_kb.map_or("unknown".to_owned(), |kb| format!(
            "{:.2} MB",
            kb as f64 / 1024.0
        )),
        count(r.emf_lines, "EMF metric line"),
        count(r.extension_problems, "WARN/ERROR line")
    ));
    let sh = &r.shutdown;
    let exit = if sh.killed {
        "was killed at the deadline".to_owned()
    } else {
        let code = sh
            .exit_code
            .map_or("by a signal".to_owned(), |c| format!("with code {c}"));
        let when = match sh.margin_ms {
            Some(m) if sh.before_deadline => format!("{m:.0} ms before the deadline"),
            Some(m) => format!("{:.0} ms after the deadline", -m),
            None => "at an unknown time".to_owned(),
        };
        let took = sh
            .took_ms
            .map_or(String::new(), |t| format!(" after {t:.0} ms"));
        format!("exited {code}{took}, {when}")
    };
    line(format!(
        "shutdown: deadline {} ms after SHUTDOWN; {exit} -> {}",
        sh.deadline_after_ms,
        if sh.before_deadline && !sh.killed {
            "ok"
        } else {
            "FAILED"
        }
    ));
    match &r.extension {
        None => line("the extension printed no shutdown summary".into()),
        Some(c) => {
            let reasons = if c.dropped_by_reason.is_empty() {
                String::new()
            } else {
                format!(" ({})", c.reasons())
            };
            let doubt = if c.in_doubt > 0 {
                format!(", {} of them in doubt", c.in_doubt)
            } else {
                String::new()
            };
            let recovered = if c.recovered > 0 {
                format!(", recovered {}", c.recovered)
            } else {
                String::new()
            };
            line(format!(
                "extension counted: received {}{recovered}, delivered {}, filtered {}, dropped {}{reasons}{doubt}, still buffered {}; {} throttled, {} spilled; Lambda dropped {}",
                c.received,
                c.delivered,
                c.filtered,
                c.dropped,
                c.still_buffered,
                count(c.throttled, "record"),
                count(c.spilled, "event"),
                count(c.lambda_dropped, "event"),
            ));
            if c.resent_events == 0 && c.retry_requests == 0 {
                line("extension retries: none".into());
            } else {
                line(format!(
                    "extension retries: {} in {} (counted per attempt: an event sent three times counts twice), {} of them unconfirmed (their earlier attempt may have landed)",
                    count(c.resent_events, "event resend"),
                    count(c.retry_requests, "retry request"),
                    c.unconfirmed,
                ));
            }
        }
    }
}
