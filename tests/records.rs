//! What a consumer finds in the stream: the record formats, the enrichment object, partition
//! keys and the user's filter, each checked on the real binary's records.

use std::collections::HashMap;

use kte_test_support as support;
use serde_json::Value;

use support::{Lambda, LambdaOptions};

fn opts() -> LambdaOptions {
    LambdaOptions::default()
        .binary(support::extension_under_test!())
        .env("KINESIS_TELEMETRY_BUFFERING_TIMEOUT_MS", "25")
}

/// Init, `invocations` invocations, an extension's line, SHUTDOWN; returns the request ids.
fn run(o: LambdaOptions, invocations: usize) -> (Lambda, Vec<String>) {
    let mut l = Lambda::start(o);
    let init = l.events.init_start();
    l.push(&init);
    let ids = l.invoke(invocations);
    let ext = l.events.extension_text();
    l.push(&ext);
    let out = l.shutdown();
    assert!(out.exited_ok_before_deadline(), "{out:?}\n{}", l.log_text());
    (l, ids)
}

#[test]
fn every_event_says_where_it_came_from_with_an_exact_event_id() {
    let (l, ids) = run(opts().env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "512"), 3);
    l.assert_each_event_delivered_once();
    let delivered = l.delivered();
    let sources: Vec<&Value> = delivered
        .iter()
        .map(|(_, e)| e.source.as_ref().expect("enriched"))
        .collect();
    let env = sources[0]["environment"].as_str().unwrap().to_string();
    assert_eq!(env.len(), 16, "{env}");
    assert!(env.bytes().all(|b| b.is_ascii_hexdigit()));
    let mut seqs = Vec::new();
    for s in &sources {
        assert_eq!(s["function"], "fake-function");
        assert_eq!(s["version"], "$LATEST");
        assert_eq!(s["region"], "us-east-1");
        assert_eq!(
            s["account"], "123456789012",
            "asked for with the accountId feature"
        );
        assert!(["x86_64", "arm64"].contains(&s["arch"].as_str().unwrap()));
        assert_eq!(s["memoryMb"], 512);
        assert_eq!(s["environment"], env.as_str());
        let seq = s["seq"].as_u64().unwrap();
        assert_eq!(s["eventId"], format!("{env}-{seq}"));
        seqs.push(seq);
    }
    seqs.sort_unstable();
    let n = seqs.len() as u64;
    assert_eq!(seqs, (0..n).collect::<Vec<_>>(), "every event, no gap");
    // A Text-format line names the invocation it was written in; JSON lines have their own.
    let first_invoke = ids[0].clone();
    let text_line = delivered
        .iter()
        .find(|(_, e)| {
            e.original.contains("\"type\":\"function\"")
                && e.original.contains(&first_invoke)
                && !e.original.contains("\"level\"")
        })
        .expect("the first invocation's Text line");
    assert_eq!(
        text_line.1.source.as_ref().unwrap()["requestId"],
        first_invoke.as_str()
    );
}

#[test]
fn without_enrichment_one_event_per_record_is_lambda_s_exact_bytes() {
    let mut l = Lambda::start(
        opts()
            .env("KINESIS_TELEMETRY_ENRICH", "false")
            .env("KINESIS_TELEMETRY_RECORD_FORMAT", "event"),
    );
    l.invoke(2);
    let odd = l.events.oddly_formatted();
    l.push_raw(&odd);
    let out = l.shutdown();
    assert!(out.exited_ok_before_deadline());
    let mut stored: Vec<String> = l
        .kinesis
        .records()
        .iter()
        .map(|r| String::from_utf8(r.data.clone()).unwrap())
        .collect();
    stored.sort();
    let mut pushed = l.pushed().to_vec();
    pushed.sort();
    assert_eq!(stored, pushed, "each record is one event, byte for byte");
}

#[test]
fn packed_records_cost_far_fewer_records_and_payload_units_than_events() {
    let mut l = Lambda::start(opts());
    l.invoke(20);
    let out = l.shutdown();
    assert!(out.exited_ok_before_deadline());
    l.assert_each_event_delivered_once();
    let records = l.kinesis.records();
    let events = l.pushed().len();
    assert!(
        records.len() * 5 <= events,
        "{} records for {events} events",
        records.len()
    );
    for r in &records {
        assert!(
            r.data.len() + r.partition_key.len() <= 25_000,
            "the record target"
        );
        assert!(r.data.ends_with(b"\n"), "NDJSON");
    }
}

#[test]
fn kpl_records_carry_one_partition_key_each() {
    let (l, _) = run(opts().env("KINESIS_TELEMETRY_RECORD_FORMAT", "kpl"), 4);
    l.assert_each_event_delivered_once();
    for r in l.kinesis.records() {
        assert!(support::kpl::has_magic(&r.data));
        for (key, _) in support::kpl::deaggregate_keyed(&r.data).unwrap() {
            assert_eq!(key, r.partition_key);
        }
    }
}

/// With one key for everything (`environment`, `function`), that key's events reach the
/// stream in the order Lambda sent them, even when Kinesis throttles some records.
#[test]
fn a_fixed_partition_key_keeps_its_events_in_order_through_throttling() {
    for mode in ["environment", "function"] {
        let mut l = Lambda::start(
            opts()
                .env("KINESIS_TELEMETRY_PARTITION_KEY", mode)
                .env("KINESIS_TELEMETRY_MAX_ATTEMPTS", "50")
                .env("KINESIS_TELEMETRY_FLUSH_STRATEGY", "end"),
        );
        l.kinesis.throttle_fraction(0.3, 11);
        // ~60 KB per invocation: several records' worth for the one key.
        for _ in 0..6 {
            let ids = l.invoke(1);
            for _ in 0..150 {
                let line = l.events.function_sized(&ids[0], 400);
                l.push(&line);
            }
        }
        let out = l.shutdown();
        assert!(out.exited_ok_before_deadline(), "{mode}");
        l.assert_each_event_delivered_once();
        let delivered = l.delivered();
        let keys: std::collections::HashSet<&str> =
            delivered.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys.len(), 1, "{mode}: one key: {keys:?}");
        let key = *keys.iter().next().unwrap();
        match mode {
            "function" => assert_eq!(key, "fake-function"),
            _ => assert_eq!(delivered[0].1.source.as_ref().unwrap()["environment"], key),
        }
        let position: HashMap<String, usize> = l
            .expected()
            .into_iter()
            .enumerate()
            .map(|(i, t)| (t, i))
            .collect();
        let order: Vec<usize> = delivered
            .iter()
            .map(|(_, e)| position[&e.original])
            .collect();
        let mut sorted = order.clone();
        sorted.sort_unstable();
        assert_eq!(order, sorted, "{mode}: in the order Lambda sent them");
        assert!(
            l.kinesis.stats().records_throttled > 0,
            "{mode}: throttling hit"
        );
    }
}

#[test]
fn the_filter_keeps_chosen_types_and_levels_and_counts_the_rest() {
    let mut l = Lambda::start(
        opts()
            .env("KINESIS_TELEMETRY_TYPES", "platform.report,function")
            .env("KINESIS_TELEMETRY_MIN_LEVEL", "info"),
    );
    let sub = l.runtime.subscription().unwrap();
    assert!(
        sub.types.contains(&"platform".to_string()),
        "platform is still subscribed (pacing needs runtimeDone): {:?}",
        sub.types
    );
    let ids = l.invoke(3);
    let debug = l.events.function_json(&ids[2]);
    let mut debug = debug;
    debug["record"]["level"] = "DEBUG".into();
    l.push(&debug);
    let ext = l.events.extension_text();
    l.push(&ext);
    let out = l.shutdown();
    assert!(out.exited_ok_before_deadline());
    let delivered = l.events_delivered();
    let types: Vec<String> = delivered
        .iter()
        .map(|t| {
            serde_json::from_str::<Value>(t).unwrap()["type"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert!(
        types
            .iter()
            .all(|t| t == "function" || t == "platform.report"),
        "{types:?}"
    );
    assert_eq!(types.iter().filter(|t| *t == "platform.report").count(), 3);
    assert_eq!(types.iter().filter(|t| *t == "function").count(), 6);
    assert!(
        !delivered.iter().any(|t| t.contains("DEBUG")),
        "below the level"
    );
    let received = l.summary_count("received").unwrap();
    let filtered = l.summary_count("filtered").unwrap();
    // The extension category is not subscribed at all: Lambda never sends that line.
    assert_eq!(received, l.pushed().len() as u64 - 1);
    assert_eq!(
        filtered,
        received - delivered.len() as u64,
        "{:?}",
        l.summary_line()
    );
    assert_eq!(l.summary_count("dropped"), Some(0), "filtered is not lost");
}

#[test]
fn a_mistyped_setting_is_named_with_the_closest_one() {
    let mut l = Lambda::start(opts().env("KINESIS_TELEMETRY_TYPEZ", "function"));
    l.invoke(1);
    let out = l.shutdown();
    assert!(out.exited_ok_before_deadline());
    let lines: Vec<String> = l.log_lines_with("KINESIS_TELEMETRY_TYPEZ");
    assert_eq!(lines.len(), 1, "{}", l.log_text());
    assert!(
        lines[0].contains("WARN") && lines[0].contains("did you mean KINESIS_TELEMETRY_TYPES?"),
        "{}",
        lines[0]
    );
    l.assert_each_event_delivered_once();
}
