//! Black-box scenarios for what the 2025–26 platform adds: SnapStart (one snapshot resumed
//! as many environments, so ids drawn at init must be drawn again after the restore),
//! tenant isolation mode (every event of a tenant's invocation names the tenant) and the
//! event types the fakes learnt (restore events, `platform.extension`,
//! `platform.telemetrySubscription`), which must pass through byte for byte and filter by
//! type like any other.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use serde_json::Value;

use kte_test_support as support;

use support::events::RESTORE_TYPES;
use support::telemetry_records::{event_id, Enriched};
use support::{Lambda, LambdaOptions};

const T: Duration = Duration::from_secs(10);

fn opts() -> LambdaOptions {
    LambdaOptions::default()
        .binary(support::extension_under_test!())
        .env("KINESIS_TELEMETRY_BUFFERING_TIMEOUT_MS", "25")
}

fn snap_start() -> LambdaOptions {
    let mut o = opts();
    o.runtime.snap_start = true;
    o
}

fn assert_clean_exit(l: &Lambda, out: &support::ShutdownOutcome) {
    assert!(out.exited_ok_before_deadline(), "{out:?}\n{}", l.log_text());
}

fn source<'a>(l: &Lambda, e: &'a Enriched) -> &'a Value {
    e.source
        .as_ref()
        .unwrap_or_else(|| panic!("not enriched: {}\n{}", e.original, l.log_text()))
}

fn environment(l: &Lambda, e: &Enriched) -> String {
    source(l, e)["environment"]
        .as_str()
        .expect("an environment id")
        .to_owned()
}

/// The init a SnapStart version gets when it is published: its events, pushed and delivered
/// before the snapshot. Returns their texts as delivered.
fn init(l: &mut Lambda) -> Vec<String> {
    let start = l.events.init_start_snap_start();
    let line = l.events.function_text("init");
    let ext = l.events.platform_extension("other-extension");
    let sub = l
        .events
        .telemetry_subscription("other-extension", &["platform", "function"]);
    let texts: Vec<String> = [start, line, ext, sub].iter().map(|e| l.push(e)).collect();
    assert!(l.runtime.wait_telemetry_idle(T), "init telemetry delivered");
    texts.iter().map(|t| l.as_delivered(t)).collect()
}

#[test]
fn after_a_snap_start_restore_events_carry_an_environment_id_no_earlier_event_carries() {
    let mut l = Lambda::start(snap_start());
    let before = init(&mut l);
    l.invoke(4);
    let out = l.shutdown();
    assert_clean_exit(&l, &out);
    l.assert_each_event_delivered_once();
    assert_eq!(
        l.summary_count("delivered"),
        Some(l.expected().len() as u64),
        "{:?}",
        l.summary_line()
    );

    let delivered = l.delivered();
    let (init_events, after): (Vec<_>, Vec<_>) = delivered
        .iter()
        .map(|(_, e)| e)
        .partition(|e| before.contains(&e.original));
    assert_eq!(init_events.len(), before.len());
    let old: BTreeSet<String> = init_events.iter().map(|e| environment(&l, e)).collect();
    let new: BTreeSet<String> = after.iter().map(|e| environment(&l, e)).collect();
    assert_eq!(old.len(), 1, "init events keep the snapshot's id: {old:?}");
    assert_eq!(new.len(), 1, "one id after the restore: {new:?}");
    assert!(old.is_disjoint(&new), "{old:?} {new:?}");
    // The restore and everything after it, numbered from 0 under the new id.
    let mut seqs: Vec<u64> = after
        .iter()
        .map(|e| source(&l, e)["seq"].as_u64().unwrap())
        .collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (0..after.len() as u64).collect::<Vec<_>>());
    for t in RESTORE_TYPES {
        assert!(
            after.iter().any(|e| e.original.contains(t)),
            "{t} delivered after the restore"
        );
    }
    assert_eq!(
        l.log_lines_with("restored from a SnapStart snapshot").len(),
        1,
        "{}",
        l.log_text()
    );
}

#[test]
fn the_first_invoke_of_a_snap_start_environment_is_enough_to_notice_the_restore() {
    let mut l = Lambda::start(snap_start());
    let before = init(&mut l);
    // The platform holds the Restore phase's telemetry: only the INVOKE says "restored".
    assert!(l.runtime.pause_telemetry(T));
    let delivered = l.runtime.delivered().len();
    l.runtime.invoke();
    assert!(l.runtime.wait_delivered(delivered + 1, T));
    assert!(
        l.wait_log("the first event after a SnapStart init", T),
        "{}",
        l.log_text()
    );
    l.runtime.resume_telemetry();
    l.invoke(2);
    let out = l.shutdown();
    assert_clean_exit(&l, &out);
    let events = l.delivered();
    let (init_events, after): (Vec<_>, Vec<_>) = events
        .iter()
        .map(|(_, e)| e)
        .partition(|e| before.contains(&e.original));
    let old: BTreeSet<String> = init_events.iter().map(|e| environment(&l, e)).collect();
    let new: BTreeSet<String> = after.iter().map(|e| environment(&l, e)).collect();
    assert_eq!((old.len(), new.len()), (1, 1), "{old:?} {new:?}");
    assert!(old.is_disjoint(&new));
    assert_eq!(
        l.log_lines_with("restored from a SnapStart snapshot").len(),
        1
    );
}

#[test]
fn new_event_types_pass_through_unchanged_and_filter_by_type() {
    let o = snap_start().env(
        "KINESIS_TELEMETRY_TYPES",
        "platform.restoreReport,platform.extension,function",
    );
    let mut l = Lambda::start(o);
    init(&mut l);
    l.invoke(2);
    let out = l.shutdown();
    assert_clean_exit(&l, &out);

    let kept = |text: &str| {
        let v: Value = serde_json::from_str(text).unwrap();
        matches!(
            v["type"].as_str(),
            Some("platform.restoreReport" | "platform.extension" | "function")
        )
    };
    let expected: Vec<String> = l.expected().into_iter().filter(|t| kept(t)).collect();
    let got = l.events_delivered();
    let diff = support::multiset_diff(&expected, &got);
    assert!(diff.is_empty(), "{}\n{}", diff.join("\n"), l.log_text());
    let filtered = (l.expected().len() - expected.len()) as u64;
    assert_eq!(
        l.summary_count("filtered"),
        Some(filtered),
        "{:?}",
        l.summary_line()
    );
    // Filtered out, the restoreStart still told the extension it was restored.
    let ids: BTreeSet<String> = l
        .delivered()
        .iter()
        .map(|(_, e)| environment(&l, e))
        .collect();
    assert_eq!(
        ids.len(),
        2,
        "the init line's id and the restored one: {ids:?}"
    );
}

/// The request id a `function` line belongs to: its record's own (JSON), or the second
/// tab-separated field of a Text line.
fn request_id_of(original: &str) -> Option<String> {
    let v: Value = serde_json::from_str(original).ok()?;
    match &v["record"] {
        Value::String(line) => line.split('\t').nth(1).map(str::to_owned),
        r => r["requestId"].as_str().map(str::to_owned),
    }
}

#[test]
fn four_tenants_every_function_line_names_its_tenant_and_is_keyed_by_it() {
    let mut l = Lambda::start(opts().env("KINESIS_TELEMETRY_PARTITION_KEY", "tenant"));
    let init = l.events.init_start();
    l.push(&init);
    let tenants = ["blue", "green", "red", "yellow"];
    for _round in 0..3 {
        for t in tenants {
            l.events.tenant = Some(t.to_owned());
            l.invoke(1);
        }
    }
    let out = l.shutdown();
    assert_clean_exit(&l, &out);
    l.assert_each_event_delivered_once();

    let delivered = l.delivered();
    let mut lines_per_tenant: HashMap<String, usize> = HashMap::new();
    let mut ids = BTreeSet::new();
    for (key, e) in &delivered {
        let s = source(&l, e);
        assert!(ids.insert(event_id(s).unwrap().to_owned()));
        let v: Value = serde_json::from_str(&e.original).unwrap();
        let kind = v["type"].as_str().unwrap_or_default();
        let want = match kind {
            "function" | "platform.start" | "platform.runtimeDone" | "platform.report" => {
                let id = request_id_of(&e.original)
                    .or_else(|| v["record"]["requestId"].as_str().map(str::to_owned))
                    .expect("a request id");
                Some(
                    l.events
                        .tenant_of(&id)
                        .expect("a tenant's invocation")
                        .to_owned(),
                )
            }
            _ => None,
        };
        assert_eq!(
            s["tenantId"].as_str(),
            want.as_deref(),
            "{}\n{}",
            e.original,
            l.log_text()
        );
        match &want {
            Some(t) => assert_eq!(key, t, "keyed by its tenant: {}", e.original),
            None => assert_eq!(key.as_str(), s["environment"].as_str().unwrap()),
        }
        if kind == "function" {
            *lines_per_tenant.entry(want.unwrap()).or_default() += 1;
        }
    }
    // Two lines (Text, JSON) per invocation, three invocations per tenant: 100 % named.
    for t in tenants {
        assert_eq!(lines_per_tenant.get(t), Some(&6), "{lines_per_tenant:?}");
    }
}
