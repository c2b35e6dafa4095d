//! Lambda Managed Instances, black box: the fake Runtime API refuses INVOKE registration,
//! requires schema 2025-01-29 and never freezes; several invocations run at once. The
//! extension must not break init, must send on its own clock, and must never attribute a line
//! to "the latest platform.start".

use std::time::{Duration, Instant};

use kte_test_support as support;
use serde_json::Value;

use support::{Lambda, LambdaOptions};

const T: Duration = Duration::from_secs(10);

fn managed(env_says_so: bool) -> LambdaOptions {
    let mut o = LambdaOptions::default()
        .binary(support::extension_under_test!())
        .env("KINESIS_TELEMETRY_BUFFERING_TIMEOUT_MS", "25");
    o.runtime.managed_instances = true;
    if env_says_so {
        o = o
            .env("AWS_LAMBDA_INITIALIZATION_TYPE", "lambda-managed-instances")
            .env("AWS_LAMBDA_MAX_CONCURRENCY", "4");
    }
    o
}

/// The status of each `/register` call, in order, and the events of the accepted one.
fn registrations(l: &Lambda) -> (Vec<u16>, Vec<String>) {
    let statuses = l
        .runtime
        .calls_to("/register")
        .iter()
        .map(|c| c.status)
        .collect();
    (statuses, l.runtime.registered_events())
}

/// Four invocations interleaved, as concurrent workers would emit them: platform.start,
/// JSON lines (with their request id), a Text line (without), the slim report.
fn interleaved(l: &mut Lambda, ids: &[String]) {
    for id in ids {
        let start = l.events.platform_start(id);
        l.push(&start);
    }
    for id in ids {
        let json = l.events.function_json(id);
        l.push(&json);
        let text = l.events.function_text(id);
        l.push(&text);
    }
    for id in ids.iter().rev() {
        let report = l.events.report_managed(id, Duration::from_millis(20));
        l.push(&report);
    }
}

fn wait_delivered(l: &Lambda, n: usize) -> bool {
    let deadline = Instant::now() + T;
    while Instant::now() < deadline {
        if l.events_delivered().len() >= n {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

#[test]
fn on_managed_instances_it_registers_for_shutdown_only_and_sends_on_its_own_clock() {
    let mut l = Lambda::start(managed(true).env("KINESIS_TELEMETRY_PARTITION_KEY", "request_id"));
    assert_eq!(registrations(&l), (vec![200], vec!["SHUTDOWN".to_string()]));
    assert!(l.runtime.errors().is_empty(), "init is not failed");
    let sub = l.runtime.subscription().expect("subscribed");
    assert_eq!(sub.schema_version, "2025-01-29");
    let init = l.events.init_start_managed();
    l.push(&init);
    let ids: Vec<String> = (0..4)
        .map(|i| format!("req-{i}-{}", std::process::id()))
        .collect();
    interleaved(&mut l, &ids);
    // No INVOKE reaches the extension: it sends by itself, within the freshness budget.
    assert!(
        wait_delivered(&l, l.pushed().len()),
        "delivered without any INVOKE\n{}",
        l.log_text()
    );
    let out = l.shutdown();
    assert!(out.exited_ok_before_deadline(), "{out:?}\n{}", l.log_text());
    l.assert_each_event_delivered_once();
    for (key, e) in l.delivered() {
        let v: Value = serde_json::from_str(&e.original).unwrap();
        let own = v["record"]["requestId"].as_str();
        let source = e.source.unwrap();
        assert!(
            source.get("requestId").is_none(),
            "never the latest platform.start under concurrency: {}",
            e.original
        );
        match own {
            Some(id) => assert_eq!(key, id, "the event's own request id: {}", e.original),
            None => assert_eq!(
                key.len(),
                16,
                "a Text line gets the default key: {}",
                e.original
            ),
        }
    }
}

#[test]
fn a_refused_invoke_registration_falls_back_to_shutdown_only_instead_of_failing_init() {
    let mut l = Lambda::start(managed(false));
    // The first registration (INVOKE and SHUTDOWN) is refused, the second (SHUTDOWN) taken.
    assert_eq!(
        registrations(&l),
        (vec![400, 200], vec!["SHUTDOWN".to_string()])
    );
    assert!(l.runtime.errors().is_empty());
    let lines = l.log_lines_with("registering for INVOKE was refused").len();
    assert_eq!(lines, 1, "said in one line\n{}", l.log_text());
    assert_eq!(
        l.runtime.subscription().unwrap().schema_version,
        "2025-01-29"
    );
    let ids: Vec<String> = (0..3)
        .map(|i| format!("fb-{i}-{}", std::process::id()))
        .collect();
    interleaved(&mut l, &ids);
    assert!(wait_delivered(&l, l.pushed().len()), "{}", l.log_text());
    let out = l.shutdown();
    assert!(out.exited_ok_before_deadline(), "{out:?}\n{}", l.log_text());
    l.assert_each_event_delivered_once();
}

#[test]
fn managed_instances_survive_throttling_and_drain_at_shutdown() {
    let mut l = Lambda::start(managed(true).env("KINESIS_TELEMETRY_MAX_ATTEMPTS", "50"));
    // Packed records are few, so a fraction alone might throttle none: the first two always are.
    l.kinesis.throttle_next_records(2);
    l.kinesis.throttle_fraction(0.2, 5);
    for round in 0..5 {
        let ids: Vec<String> = (0..4)
            .map(|i| format!("thr-{round}-{i}-{}", std::process::id()))
            .collect();
        interleaved(&mut l, &ids);
        assert!(l.runtime.flush_telemetry(T));
    }
    let out = l.shutdown();
    assert!(out.exited_ok_before_deadline(), "{out:?}\n{}", l.log_text());
    l.assert_each_event_delivered_once();
    assert!(l.kinesis.stats().records_throttled >= 2);
}
