//! Checking off: every record the mock Kinesis stored is decoded as a consumer would
//! ([`telemetry_records::events_of`]: one event, NDJSON lines or a KPL aggregate, and the
//! enrichment object split off), and each event's original text is looked up in the
//! ledger, byte for byte. From that, per emitted event: lost, delivered, how many copies,
//! and when its first copy arrived (the answer of the request that stored it). From those:
//! emission-to-stream latencies, the share of function lines in the stream when their
//! invocation (and the next) ended, the order per partition key, and what the records cost.
//!
//! With enrichment on, every event must carry a `source` naming the function, and one
//! `eventId` must never name two different events (a resend repeats its event's id).
//!
//! An event the extension's filter leaves out (the settings it reported using, see
//! `settings`) is `filtered` when it is missing, never lost; in Kinesis it is a failure.
//! A failed telemetry POST is looked up too: how many of its events are in Kinesis anyway.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Instant;

use super::report::{ms, Cost, FailedPost, Order, Percentiles, Report, TypeCount};
use super::session::Run;
use super::FUNCTION_NAME;
use kte_test_support::telemetry_records::{self, Enriched};

/// Provisioned streams bill a PUT payload unit per 25 KB of a record (taken as KiB).
pub const PUT_PAYLOAD_UNIT_BYTES: u64 = 25 * 1024;
/// On-demand streams round each record up to the next KB (taken as KiB).
pub const BILLING_ROUND_BYTES: u64 = 1024;

/// Fills the checked-off parts of `report`; `outage`: when Kinesis was down.
pub(super) fn check_off(run: &Run<'_>, outage: Option<(Instant, Instant)>, report: &mut Report) {
    let ledger = run.emitter.lock();
    let mut by_type: BTreeMap<String, TypeCount> = BTreeMap::new();
    for e in &ledger.events {
        let c = by_type.entry(e.kind.clone()).or_default();
        c.emitted += 1;
        c.platform_dropped += u64::from(e.platform_dropped);
    }
    report.emitted = ledger.events.len() as u64;
    if run.cfg.endpoint.is_some() {
        report.by_type = by_type;
        report.failed_posts = failed_posts(run, &ledger, &vec![0; ledger.events.len()]);
        return;
    }
    report.verified = true;
    let requests = run.lambda.kinesis.requests();
    let mut records = run.lambda.kinesis.records();
    if let Some(key) = &run.access_key {
        // A fleet's stream: this environment's records only.
        records.retain(|r| requests[r.request_index].access_key.as_ref() == Some(key));
    }
    let answered: Vec<Option<Instant>> = requests.iter().map(|r| r.answered_at).collect();

    let n = ledger.events.len();
    let mut copies = vec![0u64; n];
    let mut arrival: Vec<Option<Instant>> = vec![None; n];
    let mut ids: HashMap<String, usize> = HashMap::new();
    let mut newest_seq: HashMap<&str, u64> = HashMap::new();
    let mut order = Order::default();
    let mut cost = Cost::default();
    for r in &records {
        let payload = (r.data.len() + r.partition_key.len()) as u64;
        cost.records += 1;
        cost.payload_bytes += payload;
        cost.put_payload_units += payload.div_ceil(PUT_PAYLOAD_UNIT_BYTES);
        cost.billed_kib += payload.div_ceil(BILLING_ROUND_BYTES);
        let events = match telemetry_records::events_of([(r.partition_key.as_str(), &r.data[..])]) {
            Ok(events) => events,
            Err(_) => {
                report.undecodable_records += 1;
                continue;
            }
        };
        for (_, e) in events {
            let Some(&i) = ledger.index.get(&e.original) else {
                report.unexpected_events += 1;
                continue;
            };
            if report.settings.as_ref().is_some_and(|s| s.enrich) {
                check_enrichment(&e, i, &mut ids, report);
            }
            copies[i] += 1;
            if copies[i] > 1 {
                continue;
            }
            arrival[i] = answered.get(r.request_index).copied().flatten();
            let ev = &ledger.events[i];
            // The platform's own reports are written down after the run: no emission order.
            if ev.kind == "platform.logsDropped" {
                continue;
            }
            match newest_seq.entry(r.partition_key.as_str()) {
                Entry::Occupied(o) if ev.seq < *o.get() => order.inversions += 1,
                Entry::Occupied(mut o) => *o.get_mut() = ev.seq,
                Entry::Vacant(v) => {
                    v.insert(ev.seq);
                }
            }
        }
    }
    order.partition_keys = records
        .iter()
        .map(|r| r.partition_key.as_str())
        .collect::<HashSet<_>>()
        .len() as u64;

    let mut all = Vec::new();
    let mut function = Vec::new();
    let settings = report.settings.clone();
    let kept =
        |e: &super::ledger::Emitted| settings.as_ref().is_none_or(|s| s.keeps(&e.kind, e.level));
    let subscribed = run
        .lambda
        .runtime
        .subscription()
        .map(|s| s.types)
        .unwrap_or_default();
    let mut left_out = vec![false; n];
    for (i, e) in ledger.events.iter().enumerate() {
        let c = by_type.entry(e.kind.clone()).or_default();
        if e.platform_dropped {
            continue;
        }
        if !kept(e) {
            left_out[i] = true;
            if copies[i] > 0 {
                report.filtered_but_delivered += 1;
            } else {
                c.filtered += 1;
                report.filtered += 1;
                let category = if e.kind.starts_with("platform.") {
                    "platform"
                } else {
                    e.kind.as_str()
                };
                report.filtered_received += u64::from(subscribed.iter().any(|t| t == category));
            }
            continue;
        }
        let during = outage.is_some_and(|(s, end)| e.at >= s && e.at <= end);
        let after = outage.is_some_and(|(_, end)| e.at > end);
        report.emitted_after_outage += u64::from(after);
        match copies[i] {
            0 => {
                c.lost += 1;
                report.lost += 1;
                report.lost_during_outage += u64::from(during);
                report.lost_after_outage += u64::from(after);
            }
            k => {
                c.delivered += 1;
                report.delivered += 1;
                c.duplicated += k - 1;
                report.duplicated += k - 1;
                if let Some(a) = arrival[i] {
                    let took = a.saturating_duration_since(e.at);
                    all.push(took);
                    if e.is_function() {
                        function.push(took);
                    }
                }
            }
        }
    }
    report.by_type = by_type;
    report.emit_to_stream = Percentiles::of(&all);
    report.emit_to_stream_function = Percentiles::of(&function);
    (
        report.function_in_stream_at_end,
        report.function_in_stream_at_next_end,
    ) = shares(run, &ledger.events, &arrival, &left_out);
    let delivered = report.delivered.max(1) as f64;
    cost.records_per_event = round3(cost.records as f64 / delivered);
    cost.put_units_per_1000_events = round3(cost.put_payload_units as f64 * 1000.0 / delivered);
    cost.billed_over_payload = if cost.payload_bytes == 0 {
        0.0
    } else {
        round3((cost.billed_kib * BILLING_ROUND_BYTES) as f64 / cost.payload_bytes as f64)
    };
    report.cost = cost;
    report.order = order;
    report.failed_posts = failed_posts(run, &ledger, &copies);
}

/// Every telemetry POST that did not get a 200, with its reason and how many of its events
/// reached Kinesis anyway (looked up by their text in the ledger).
fn failed_posts(run: &Run<'_>, ledger: &super::ledger::Ledger, copies: &[u64]) -> Vec<FailedPost> {
    run.lambda
        .runtime
        .telemetry_posts()
        .into_iter()
        .enumerate()
        .filter(|(_, p)| p.status != Some(200))
        .map(|(i, p)| {
            let ours: Vec<usize> = p
                .failed_texts
                .iter()
                .filter_map(|t| ledger.index.get(&run.emitter.as_delivered(t)).copied())
                .collect();
            FailedPost {
                number: i + 1,
                after_shutdown_ms: run
                    .shutdown_at
                    .filter(|s| p.sent_at >= *s)
                    .map(|s| ms(p.sent_at - s)),
                items: p.items,
                status: p.status,
                error: p.error,
                events: ours.len() as u64,
                events_delivered: ours.iter().filter(|&&k| copies[k] > 0).count() as u64,
            }
        })
        .collect()
}

fn check_enrichment(e: &Enriched, i: usize, ids: &mut HashMap<String, usize>, report: &mut Report) {
    let Some(source) = &e.source else {
        report.unenriched_events += 1;
        return;
    };
    if source["function"] != FUNCTION_NAME {
        report.unenriched_events += 1;
    }
    let Some(id) = telemetry_records::event_id(source) else {
        report.unenriched_events += 1;
        return;
    };
    match ids.entry(id.to_owned()) {
        Entry::Occupied(o) if *o.get() != i => report.event_id_collisions += 1,
        Entry::Occupied(_) => {}
        Entry::Vacant(v) => {
            v.insert(i);
        }
    }
}

/// The share of function lines in the stream by their invocation's end, and by the next
/// invocation's end (over invocations that have a next one); lines the filter leaves out
/// do not count.
fn shares(
    run: &Run<'_>,
    events: &[super::ledger::Emitted],
    arrival: &[Option<Instant>],
    left_out: &[bool],
) -> (Option<f64>, Option<f64>) {
    let ends: HashMap<usize, Instant> =
        run.invocations.iter().map(|i| (i.index, i.ended)).collect();
    let (mut own, mut own_total, mut next, mut next_total) = (0u64, 0u64, 0u64, 0u64);
    for ((e, a), out) in events.iter().zip(arrival).zip(left_out) {
        let Some(inv) = e
            .invocation
            .filter(|_| e.is_function() && !e.platform_dropped && !out)
        else {
            continue;
        };
        let by = |end: Option<&Instant>| a.zip(end.copied()).is_some_and(|(a, end)| a <= end);
        if let Some(end) = ends.get(&inv) {
            own_total += 1;
            own += u64::from(by(Some(end)));
        }
        if let Some(end) = ends.get(&(inv + 1)) {
            next_total += 1;
            next += u64::from(by(Some(end)));
        }
    }
    let share = |k: u64, n: u64| (n > 0).then(|| round3(k as f64 / n as f64));
    (share(own, own_total), share(next, next_total))
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}
