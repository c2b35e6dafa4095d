use super::*;
use crate::event::Key;
use crate::intake::enrich::FunctionInfo;
use crate::intake::filter::{LogLevel, TypeSelection};
use crate::store::buffer::BufferCap;
use serde_json::Value;
use std::time::{Duration, Instant};

fn origin() -> Origin {
    Origin::new(
        &FunctionInfo {
            name: "orders".into(),
            version: "3".into(),
            region: "eu-west-1".into(),
            account: Some("123456789012".into()),
            memory_mb: Some(256),
        },
        "e0e0e0e0e0e0e0e0".into(),
    )
}

fn settings() -> ReceiverSettings {
    ReceiverSettings {
        filter: Filter::default(),
        origin: Some(origin()),
        partition_key: PartitionKeyMode::RequestId,
        fixed_key: None,
        environment: Arc::new(Environment::with_id(false, "e0e0e0e0e0e0e0e0")),
        concurrent: false,
        max_event_bytes: 4_000,
        one_line: true,
        buffering: Buffering {
            max_items: 10_000,
            max_bytes: 262_144,
            timeout_ms: 25,
        },
    }
}

fn receiver(s: ReceiverSettings) -> (TelemetryReceiver, Arc<Buffer>, Arc<Stats>) {
    let (b, _) = Buffer::new(
        BufferCap {
            max_events: 1_000,
            max_bytes: 1 << 20,
        },
        None,
    );
    let b = Arc::new(b);
    let stats = Arc::new(Stats::default());
    (
        TelemetryReceiver::new(s, b.clone(), stats.clone()),
        b,
        stats,
    )
}

fn buffered(b: &Buffer) -> Vec<Event> {
    let (lease, ()) = b.take(|q| (q.len(), ()));
    let events = lease.events().to_vec();
    drop(lease);
    events
}

fn get(c: &AtomicU64) -> u64 {
    c.load(Relaxed)
}

const START: &str =
    r#"{"time":"t1","type":"platform.start","record":{"requestId":"req-1","version":"3"}}"#;
const TEXT: &str =
    r#"{"time":"t2","type":"function","record":"2024-01-01T00:00:00.000Z\treq-1\tINFO\thello\n"}"#;
const JSON_LINE: &str = r#"{"time":"t3","type":"function","record":{"level":"DEBUG","requestId":"req-1","message":"m"}}"#;
const DONE: &str = r#"{"time":"t4","type":"platform.runtimeDone","record":{"requestId":"req-1","status":"success"}}"#;
const AFTER: &str = r#"{"time":"t5","type":"extension","record":"late line"}"#;

fn body(events: &[&str]) -> Vec<u8> {
    format!("[{}]", events.join(",")).into_bytes()
}

#[test]
fn events_are_enriched_keyed_and_kept_byte_for_byte() {
    let (r, b, stats) = receiver(settings());
    assert_eq!(r.post(&body(&[START, TEXT, JSON_LINE, DONE, AFTER])), 200);
    let events = buffered(&b);
    assert_eq!(events.len(), 5);
    for (e, original) in events.iter().zip([START, TEXT, JSON_LINE, DONE, AFTER]) {
        assert!(
            e.raw.starts_with(&original[..original.len() - 1]),
            "original bytes kept: {}",
            e.raw
        );
        let v: Value = serde_json::from_str(&e.raw).unwrap();
        assert_eq!(v["source"]["function"], "orders");
        assert_eq!(v["source"]["environment"], "e0e0e0e0e0e0e0e0");
    }
    let seqs: Vec<u64> = events
        .iter()
        .map(|e| {
            serde_json::from_str::<Value>(&e.raw).unwrap()["source"]["seq"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(seqs, [0, 1, 2, 3, 4]);
    let source =
        |i: usize| serde_json::from_str::<Value>(&events[i].raw).unwrap()["source"].clone();
    assert_eq!(
        source(1)["requestId"],
        "req-1",
        "a Text line gets the running invocation"
    );
    assert!(
        source(2).get("requestId").is_none(),
        "a JSON line has its own"
    );
    assert!(
        source(4).get("requestId").is_none(),
        "after runtimeDone nothing is running"
    );
    let keys: Vec<Key> = events.iter().map(|e| e.key.clone()).collect();
    let req = Key::Fixed(Arc::from("req-1"));
    assert_eq!(
        keys,
        [req.clone(), req.clone(), req.clone(), req, Key::Random]
    );
    assert_eq!(get(&stats.received), 5);
    assert!(b.done_ticket("req-1").is_some(), "runtimeDone marked");
}

#[test]
fn ndjson_events_stay_on_one_line_and_other_formats_keep_every_byte() {
    let pretty = "{ \"type\" : \"function\",\r\n  \"record\" : \"a\\nb\" }";
    let (r, b, _) = receiver(settings());
    r.post(&body(&[pretty]));
    let e = &buffered(&b)[0];
    assert!(!e.raw.contains('\n') && !e.raw.contains('\r'), "{}", e.raw);
    assert!(e
        .raw
        .starts_with("{ \"type\" : \"function\",    \"record\" : \"a\\nb\" "));
    let (r, b, _) = receiver(ReceiverSettings {
        one_line: false,
        origin: None,
        ..settings()
    });
    r.post(&body(&[pretty]));
    assert_eq!(&*buffered(&b)[0].raw, pretty);
}

#[test]
fn concurrent_invocations_never_borrow_the_latest_start() {
    let (r, b, _) = receiver(ReceiverSettings {
        concurrent: true,
        ..settings()
    });
    r.post(&body(&[START, TEXT]));
    let events = buffered(&b);
    let v: Value = serde_json::from_str(&events[1].raw).unwrap();
    assert!(v["source"].get("requestId").is_none());
    assert_eq!(events[1].key, Key::Random, "Text lines get the default key");
    assert_eq!(events[0].key, Key::Fixed(Arc::from("req-1")), "own id");
}

#[test]
fn filtered_events_are_counted_not_lost_and_still_mark_pacing() {
    let (r, b, stats) = receiver(ReceiverSettings {
        filter: Filter {
            types: TypeSelection::parse("function").unwrap(),
            min_level: Some(LogLevel::Info),
        },
        ..settings()
    });
    r.post(&body(&[START, TEXT, JSON_LINE, DONE, AFTER]));
    let events = buffered(&b);
    assert_eq!(events.len(), 1, "only the INFO function line");
    assert!(events[0].raw.contains("hello"));
    assert_eq!(get(&stats.received), 5);
    assert_eq!(get(&stats.filtered), 4);
    assert!(
        b.done_ticket("req-1").is_some(),
        "a filtered runtimeDone still marks"
    );
    assert!(stats.dropped().is_empty());
}

#[test]
fn enrichment_off_keeps_events_exactly() {
    let (r, b, _) = receiver(ReceiverSettings {
        origin: None,
        partition_key: PartitionKeyMode::Random,
        ..settings()
    });
    r.post(&body(&[START, TEXT]));
    let events = buffered(&b);
    assert_eq!(&*events[0].raw, START);
    assert_eq!(&*events[1].raw, TEXT);
    assert_eq!(events[0].key, Key::Random);
}

#[test]
fn an_oversize_event_is_truncated_counted_and_still_enriched() {
    let (r, b, stats) = receiver(settings());
    let big = format!(
        r#"{{"time":"t","type":"function","record":"{}"}}"#,
        "x".repeat(10_000)
    );
    r.post(&body(&[&big]));
    let events = buffered(&b);
    let v: Value = serde_json::from_str(&events[0].raw).unwrap();
    assert_eq!(v["truncated"]["originalBytes"], big.len());
    assert_eq!(v["source"]["function"], "orders");
    assert_eq!(get(&stats.truncated), 1);
}

#[test]
fn lambda_s_dropped_telemetry_is_counted() {
    let (r, _, stats) = receiver(settings());
    let dropped = r#"{"time":"t","type":"platform.logsDropped","record":{"reason":"Consumer seems to have fallen behind","droppedRecords":42,"droppedBytes":4200}}"#;
    r.post(&body(&[dropped]));
    r.post(&body(&[dropped]));
    assert_eq!(get(&stats.lambda_dropped_events), 84);
    assert_eq!(get(&stats.lambda_dropped_bytes), 8400);
}

#[test]
fn unusable_bodies_are_answered_200_and_counted() {
    let (r, b, stats) = receiver(settings());
    for bad in [&b"{not json"[..], b"", b"{\"type\":\"x\"}", b"[{]"] {
        assert_eq!(r.post(bad), 200);
    }
    assert_eq!(b.held(), 0);
    let unusable: u64 = stats.bad_bodies.iter().map(get).sum();
    assert_eq!(unusable, 4);
}

#[test]
fn a_full_buffer_refuses_the_newest_and_counts_them() {
    let (b, _) = Buffer::new(
        BufferCap {
            max_events: 1_000,
            max_bytes: 1 << 20,
        },
        None,
    );
    let b = Arc::new(b);
    let stats = Arc::new(Stats::default());
    let r = TelemetryReceiver::new(
        ReceiverSettings {
            origin: None,
            ..settings()
        },
        b.clone(),
        stats.clone(),
    );
    let many: Vec<String> = (0..1_500)
        .map(|i| format!(r#"{{"type":"function","record":"{i}"}}"#))
        .collect();
    let refs: Vec<&str> = many.iter().map(String::as_str).collect();
    r.post(&body(&refs));
    assert_eq!(b.held(), 1_000);
    assert_eq!(stats.dropped().get(&DropReason::BufferFull), Some(&500));
}

fn receiver_with_cap(
    s: ReceiverSettings,
    max_events: usize,
) -> (TelemetryReceiver, Arc<Buffer>, Arc<Stats>) {
    let (b, _) = Buffer::new(
        BufferCap {
            max_events,
            max_bytes: 64 << 20,
        },
        None,
    );
    let b = Arc::new(b);
    let stats = Arc::new(Stats::default());
    (
        TelemetryReceiver::new(s, b.clone(), stats.clone()),
        b,
        stats,
    )
}

fn lines(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!(r#"{{"type":"function","record":"line {i}"}}"#))
        .collect()
}

fn body_of(events: &[String]) -> Vec<u8> {
    format!("[{}]", events.join(",")).into_bytes()
}

#[test]
fn a_post_over_the_platform_s_largest_batch_is_cut_there_and_counted() {
    let (r, b, stats) = receiver_with_cap(settings(), 100_000);
    assert_eq!(r.post(&body_of(&lines(10_500))), 200);
    assert_eq!(b.held(), 10_000, "the platform's largest batch is taken");
    assert_eq!(get(&stats.received), 10_500);
    assert_eq!(stats.dropped().get(&DropReason::PostLimit), Some(&500));
    let events = buffered(&b);
    assert!(
        events[9_999].raw.contains("line 9999"),
        "the first ones, in order"
    );
    // A batch of exactly the limit loses nothing.
    let (r, b, stats) = receiver_with_cap(settings(), 100_000);
    r.post(&body_of(&lines(10_000)));
    assert_eq!(b.held(), 10_000);
    assert!(stats.dropped().is_empty());
}

#[test]
fn once_the_buffer_refuses_the_rest_of_the_post_is_neither_built_nor_truncated() {
    let (r, b, stats) = receiver_with_cap(settings(), 3);
    let mut events = lines(PART_EVENTS + 40);
    let big = format!(r#"{{"type":"function","record":"{}"}}"#, "x".repeat(10_000));
    events.push(big);
    let done = r#"{"type":"platform.runtimeDone","record":{"requestId":"req-9"}}"#;
    events.push(done.to_string());
    r.post(&body_of(&events));
    assert_eq!(b.held(), 3);
    assert_eq!(
        get(&stats.truncated),
        0,
        "the oversize event came after the refusal: never built"
    );
    let n = events.len() as u64;
    assert_eq!(
        stats.dropped().get(&DropReason::BufferFull),
        Some(&(n - 3)),
        "each refused, built or not, counted once"
    );
    assert_eq!(get(&stats.received), n);
    assert!(
        b.done_ticket("req-9").is_some(),
        "pacing marks still noted for refused events"
    );
}

#[test]
fn a_body_that_turns_malformed_is_ignored_but_for_the_parts_handed_over_before() {
    let dropped = r#"{"type":"platform.logsDropped","record":{"droppedRecords":5}}"#;
    let (r, b, stats) = receiver(settings());
    let body = format!("[{TEXT},{dropped},{AFTER}");
    assert_eq!(r.post(body.as_bytes()), 200);
    assert_eq!(b.held(), 0, "a body of one part is ignored whole");
    assert_eq!(get(&stats.received), 0);
    assert_eq!(get(&stats.lambda_dropped_events), 0, "its logsDropped too");
    let unusable: u64 = stats.bad_bodies.iter().map(get).sum();
    assert_eq!(unusable, 1);

    let (r, b, stats) = receiver_with_cap(settings(), 100_000);
    let events = lines(PART_EVENTS + 10);
    let body = format!("[{},{{]", events.join(","));
    r.post(body.as_bytes());
    assert_eq!(
        b.held(),
        PART_EVENTS as u64,
        "the part before the fault stays"
    );
    assert_eq!(
        get(&stats.received),
        PART_EVENTS as u64,
        "and is all that counts"
    );
}

#[test]
fn an_event_never_gets_a_second_source() {
    let sources = |raw: &str| crate::fuzzing::source_keys(raw).unwrap();
    // Heads that used to fail to parse (so the event's own `source` went unseen).
    let own = [
        r#"{"type":"function","type":"extension","source":{"a":1},"record":"r"}"#,
        r#"{"type":5,"source":"mine","record":"r"}"#,
        r#"{"type":"function","sour\u0063e":1,"record":"r"}"#,
        r#"{"type":["function"],"record":{"requestId":7},"source":null}"#,
    ];
    let (r, b, _) = receiver(settings());
    r.post(&body(&own));
    let events = buffered(&b);
    assert_eq!(events.len(), own.len());
    for (e, original) in events.iter().zip(own) {
        assert_eq!(&*e.raw, original, "left as Lambda sent it");
        assert_eq!(sources(&e.raw), 1, "{}", e.raw);
    }
    // Truncated events: a big `source` of their own is cut and ours takes its place; a
    // small one is kept; a non-object becomes an object and gets ours.
    let pad = "x".repeat(5_000);
    let big_source = format!(r#"{{"type":"function","source":"{pad}","record":"{pad}"}}"#);
    let small_source = format!(r#"{{"type":"function","source":"s","record":"{pad}"}}"#);
    let not_object = format!(r#""{pad}""#);
    let (r, b, stats) = receiver(settings());
    r.post(&body(&[&big_source, &small_source, &not_object]));
    let events = buffered(&b);
    assert_eq!(get(&stats.truncated), 3);
    for e in &events {
        assert_eq!(sources(&e.raw), 1, "{}", e.raw);
        let v: Value = serde_json::from_str(&e.raw).unwrap();
        assert!(v["truncated"]["originalBytes"].is_u64(), "{}", e.raw);
    }
    let source =
        |i: usize| serde_json::from_str::<Value>(&events[i].raw).unwrap()["source"].clone();
    assert_eq!(source(0)["function"], "orders");
    assert_eq!(source(1), "s");
    assert_eq!(source(2)["function"], "orders");
}

#[test]
fn lambda_s_dropped_counts_saturate_instead_of_wrapping() {
    let (r, _, stats) = receiver(settings());
    let huge = r#"{"type":"platform.logsDropped","record":{"droppedRecords":18446744073709551615,"droppedBytes":1e30}}"#;
    r.post(&body(&[huge, huge]));
    assert_eq!(get(&stats.lambda_dropped_events), u64::MAX);
    assert_eq!(get(&stats.lambda_dropped_bytes), u64::MAX);
}

#[test]
fn the_buffer_full_line_comes_at_most_once_a_minute() {
    let t0 = Instant::now();
    let s = Duration::from_secs;
    // (last line, now, a new episode's line is due)
    let cases = [
        (None, t0, true),
        (Some(t0), t0, false),
        (Some(t0), t0 + s(59), false),
        (Some(t0), t0 + FULL_LINE_EVERY, true),
        (Some(t0), t0 + s(3_600), true),
        // A clock that went back (it cannot, Instant is monotonic) would not log twice.
        (Some(t0 + s(10)), t0, false),
    ];
    for (last, now, want) in cases {
        assert_eq!(full_line_due(last, now), want, "{last:?} {now:?}");
    }
}

#[test]
fn the_logs_dropped_advice_names_what_makes_batches_bigger() {
    // (buffering, must contain, must not contain)
    let cases: &[(Buffering, &[&str], &[&str])] = &[
        (
            Buffering {
                max_items: 10_000,
                max_bytes: 262_144,
                timeout_ms: 25,
            },
            &[
                "raise KINESIS_TELEMETRY_BUFFERING_MAX_BYTES (now 262144, at most 1048576)",
                "raise KINESIS_TELEMETRY_BUFFERING_TIMEOUT_MS (now 25 ms)",
                "or lower the function's log volume",
            ],
            &["BUFFERING_MAX_ITEMS", "lower KINESIS"],
        ),
        (
            Buffering {
                max_items: 1_000,
                max_bytes: 1_048_576,
                timeout_ms: 30_000,
            },
            &[
                "raise KINESIS_TELEMETRY_BUFFERING_MAX_ITEMS (now 1000, at most 10000)",
                "or lower the function's log volume",
            ],
            &["BUFFERING_MAX_BYTES", "BUFFERING_TIMEOUT_MS"],
        ),
        (
            Buffering {
                max_items: 10_000,
                max_bytes: 1_048_576,
                timeout_ms: 30_000,
            },
            &["lower the function's log volume"],
            &["raise", ", or"],
        ),
    ];
    for (b, wanted, unwanted) in cases {
        let advice = logs_dropped_advice(b);
        for w in *wanted {
            assert!(advice.contains(w), "{advice:?} lacks {w:?}");
        }
        for u in *unwanted {
            assert!(!advice.contains(u), "{advice:?} has {u:?}");
        }
    }
}

fn source_of(e: &Event) -> Value {
    let v: Value = serde_json::from_str(&e.raw).unwrap();
    v["source"].clone()
}

fn fixed(k: &Key) -> Option<&str> {
    match k {
        Key::Fixed(k) => Some(k),
        Key::Random => None,
    }
}

const INIT_REPORT: &str = r#"{"time":"t0","type":"platform.initReport","record":{"initializationType":"snap-start","phase":"init","status":"success","metrics":{"durationMs":12.5}}}"#;
const RESTORE_START: &str = r#"{"time":"t1","type":"platform.restoreStart","record":{"functionName":"orders","functionVersion":"3"}}"#;
const RESTORE_DONE: &str =
    r#"{"time":"t2","type":"platform.restoreRuntimeDone","record":{"status":"success"}}"#;

#[test]
fn a_restore_start_gives_it_and_what_follows_a_new_environment_id() {
    let env = Arc::new(Environment::with_id(true, "e0e0e0e0e0e0e0e0"));
    let (r, b, _) = receiver(ReceiverSettings {
        environment: env.clone(),
        partition_key: PartitionKeyMode::Environment,
        ..settings()
    });
    r.post(&body(&[INIT_REPORT, TEXT]));
    r.post(&body(&[AFTER, RESTORE_START, RESTORE_DONE, START, TEXT]));
    let events = buffered(&b);
    let sources: Vec<Value> = events.iter().map(source_of).collect();
    let new = env.id();
    assert_ne!(&*new, "e0e0e0e0e0e0e0e0");
    // Before the restore in the stream: the snapshot's id, seq going on.
    for (i, s) in sources[..3].iter().enumerate() {
        assert_eq!(s["environment"], "e0e0e0e0e0e0e0e0", "{i}");
        assert_eq!(s["seq"], i as u64);
        assert_eq!(fixed(&events[i].key), Some("e0e0e0e0e0e0e0e0"));
    }
    // From restoreStart on: the new id, seq from 0, the new key.
    for (i, s) in sources[3..].iter().enumerate() {
        assert_eq!(s["environment"], &*new);
        assert_eq!(s["seq"], i as u64);
        assert_eq!(s["eventId"], format!("{new}-{i}"));
        assert_eq!(fixed(&events[3 + i].key), Some(&*new));
    }
    // A second restoreStart (a replay) changes nothing: a process image is restored once.
    r.post(&body(&[RESTORE_START]));
    let last = buffered(&b).pop().unwrap();
    assert!(last.raw.contains("platform.restoreStart"));
    assert_eq!(source_of(&last)["environment"], &*new);
}

#[test]
fn a_restore_seen_by_the_lifecycle_applies_from_the_next_post() {
    let env = Arc::new(Environment::with_id(true, "e0e0e0e0e0e0e0e0"));
    let (r, b, _) = receiver(ReceiverSettings {
        environment: env.clone(),
        ..settings()
    });
    r.post(&body(&[INIT_REPORT]));
    assert!(
        env.event_arrived(),
        "the first INVOKE of a snap-start environment"
    );
    r.post(&body(&[START, TEXT, DONE]));
    let sources: Vec<Value> = buffered(&b).iter().map(source_of).collect();
    assert_eq!(sources[0]["environment"], "e0e0e0e0e0e0e0e0");
    let ids: Vec<&Value> = sources[1..].iter().map(|s| &s["environment"]).collect();
    assert!(ids.iter().all(|id| *id == &*env.id()), "{ids:?}");
    assert_eq!(sources[1]["seq"], 0);
}

const T_START: &str = r#"{"time":"t1","type":"platform.start","record":{"requestId":"req-1","version":"3","tenantId":"blue"}}"#;
const T_JSON_LINE: &str = r#"{"time":"t3","type":"function","record":{"level":"INFO","requestId":"req-1","tenantId":"blue","message":"m"}}"#;
const T_REPORT: &str = r#"{"time":"t6","type":"platform.report","record":{"requestId":"req-1","status":"success","tenantId":"blue","metrics":{"durationMs":1.0}}}"#;
const T2_START: &str =
    r#"{"time":"t7","type":"platform.start","record":{"requestId":"req-2","tenantId":"green"}}"#;
const T2_TEXT: &str =
    r#"{"time":"t8","type":"function","record":"2024-01-01T00:00:00.000Z\treq-2\tINFO\tbye\n"}"#;

#[test]
fn every_event_of_a_tenant_s_invocation_names_the_tenant() {
    let (r, b, _) = receiver(ReceiverSettings {
        partition_key: PartitionKeyMode::Tenant,
        ..settings()
    });
    // Text and JSON lines, runtimeDone without a tenant of its own, an extension line after
    // the invocation, then a second tenant's invocation.
    r.post(&body(&[T_START, TEXT, JSON_LINE, T_JSON_LINE, DONE, AFTER]));
    r.post(&body(&[T_REPORT, T2_START, T2_TEXT]));
    let events = buffered(&b);
    let want = [
        Some("blue"),
        Some("blue"),
        Some("blue"),
        Some("blue"),
        Some("blue"),
        None,
        Some("blue"),
        Some("green"),
        Some("green"),
    ];
    for (i, (e, want)) in events.iter().zip(want).enumerate() {
        let s = source_of(e);
        assert_eq!(s["tenantId"].as_str(), want, "event {i}: {}", e.raw);
        let key = want.unwrap_or("e0e0e0e0e0e0e0e0");
        assert_eq!(fixed(&e.key), Some(key), "event {i}");
    }
}

#[test]
fn on_managed_instances_only_lines_with_a_request_id_get_a_tenant() {
    let (r, b, _) = receiver(ReceiverSettings {
        concurrent: true,
        ..settings()
    });
    r.post(&body(&[T_START, T2_START, TEXT, JSON_LINE, T2_TEXT]));
    let tenants: Vec<Option<String>> = buffered(&b)
        .iter()
        .map(|e| source_of(e)["tenantId"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(
        tenants,
        [
            Some("blue".into()),
            Some("green".into()),
            None,
            Some("blue".into()),
            None
        ]
    );
}

#[test]
fn without_tenants_nothing_is_added() {
    let (r, b, _) = receiver(ReceiverSettings {
        partition_key: PartitionKeyMode::Tenant,
        ..settings()
    });
    r.post(&body(&[START, TEXT, JSON_LINE, DONE]));
    for e in buffered(&b) {
        assert!(source_of(&e).get("tenantId").is_none(), "{}", e.raw);
        assert_eq!(
            fixed(&e.key),
            Some("e0e0e0e0e0e0e0e0"),
            "the environment key"
        );
    }
}

mod properties {
    //! Hostile bodies through the receiver: the oracle is `fuzzing::check_post` (shared with
    //! the `telemetry_post` fuzz target).
    use crate::fuzzing::strategies::{batch, json_ish};
    use crate::fuzzing::{check_post, Variant};
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3_000))]

        #[test]
        fn arbitrary_event_arrays(variant in any::<u8>(), body in batch()) {
            check_post(Variant::from_byte(variant), body.as_bytes());
        }

        #[test]
        fn json_ish_bytes(variant in any::<u8>(), body in json_ish()) {
            check_post(Variant::from_byte(variant), &body);
        }

        #[test]
        fn arbitrary_bytes(variant in any::<u8>(), body in prop::collection::vec(any::<u8>(), 0..256)) {
            check_post(Variant::from_byte(variant), &body);
        }
    }
}
