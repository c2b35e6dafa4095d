//! Black-box scenarios: the real extension binary between a strict fake Lambda
//! Runtime API and a strict fake Kinesis. Each test states what a user of the
//! extension would notice: events delivered exactly once and byte for byte, a clean
//! exit before the SHUTDOWN deadline, the function never blocked or broken.

use std::time::Duration;

use kte_test_support as support;

use support::fake_kinesis::AwsError;
use support::fake_runtime::EventKind;
use support::{AfterStall, Lambda, LambdaOptions};

const T: Duration = Duration::from_secs(10);

/// Lambda-like settings with a short Telemetry API buffering timeout, so the fake
/// platform pushes telemetry within 25 ms instead of 1 s.
fn opts() -> LambdaOptions {
    LambdaOptions::default()
        .binary(support::extension_under_test!())
        .env("KINESIS_TELEMETRY_BUFFERING_TIMEOUT_MS", "25")
}

/// Nothing is sent before SHUTDOWN: no invocation is held, and no threshold is reached.
fn nothing_due_before_shutdown(o: LambdaOptions) -> LambdaOptions {
    o.env("KINESIS_TELEMETRY_FLUSH_STRATEGY", "background")
        .env("KINESIS_TELEMETRY_FLUSH_MAX_EVENTS", "10000000")
        .env("KINESIS_TELEMETRY_FLUSH_MAX_BYTES", "1073741824")
        .env("KINESIS_TELEMETRY_FRESHNESS_MS", "3600000")
}

fn assert_clean_exit(l: &Lambda, out: &support::ShutdownOutcome) {
    assert!(out.exited_ok_before_deadline(), "{out:?}\n{}", l.log_text());
    assert!(
        l.summary_line().is_some(),
        "no summary line\n{}",
        l.log_text()
    );
}

#[test]
fn every_event_is_delivered_once_byte_for_byte() {
    let mut l = Lambda::start(opts());
    let register = l.runtime.calls_to("/register");
    assert_eq!((register.len(), register[0].status), (1, 200));
    let sub = l.runtime.subscription().expect("subscribed during init");
    assert_eq!(sub.schema_version, "2022-12-13");
    assert_eq!(sub.types, ["platform", "function", "extension"]);
    assert_eq!(sub.buffering.timeout, Duration::from_millis(25));

    let init = l.events.init_start();
    l.push(&init);
    l.invoke(5);
    let odd = l.events.oddly_formatted();
    l.push_raw(&odd);
    let unknown = l.events.unknown_type();
    l.push(&unknown);
    let ext = l.events.extension_text();
    l.push(&ext);
    let out = l.shutdown();

    assert_clean_exit(&l, &out);
    l.assert_each_event_delivered_once();
    assert_eq!(
        l.summary_count("delivered"),
        Some(l.pushed().len() as u64),
        "{:?}",
        l.summary_line()
    );
    assert!(
        l.runtime.errors().is_empty(),
        "no /init/error or /exit/error"
    );
    // Nothing was due during the invocations: the extension went straight back.
    for (kind, back) in l.runtime.time_to_next_after_each_event() {
        if kind == EventKind::Invoke {
            let back = back.expect("came back after INVOKE");
            assert!(
                back < Duration::from_millis(500),
                "held an invocation for {back:?}"
            );
        }
    }
}

#[test]
fn a_backlog_at_shutdown_is_delivered_before_the_deadline() {
    // One event per record, so the backlog needs several requests of 500 records.
    let mut l = Lambda::start(
        nothing_due_before_shutdown(opts()).env("KINESIS_TELEMETRY_RECORD_FORMAT", "event"),
    );
    let ids = l.invoke(2);
    for _ in 0..3000 {
        let e = l.events.function_sized(&ids[1], 700);
        l.push(&e);
    }
    assert!(
        l.runtime.wait_telemetry_idle(T),
        "the listener took every POST"
    );
    assert_eq!(
        l.kinesis.stats().requests,
        0,
        "nothing was due before SHUTDOWN"
    );

    let out = l.shutdown();
    assert_clean_exit(&l, &out);
    l.assert_each_event_delivered_once();
    let stats = l.kinesis.stats();
    assert!(
        stats.answered_200 >= 6,
        "3000 records need at least 6 PutRecords: {stats:?}"
    );
}

#[test]
fn malformed_and_oversized_telemetry_is_answered_and_delivery_continues() {
    let mut l = Lambda::start(opts());
    for body in [
        &b"{not json"[..],
        b"{\"type\":\"function\",\"record\":\"x\"}",
        b"",
        b"[{\"a\":1}",
        b"[]",
    ] {
        let r = l.runtime.post_raw(body).expect("answered");
        assert_eq!(r.status, 200, "body {:?}", String::from_utf8_lossy(body));
    }
    let huge = vec![b' '; 2 * 1024 * 1024];
    assert_eq!(l.runtime.post_raw(&huge).expect("answered").status, 413);

    l.invoke(3);
    let out = l.shutdown();
    assert_clean_exit(&l, &out);
    l.assert_each_event_delivered_once();
    assert!(
        l.summary_count("unusable_posts").unwrap_or(0) >= 3,
        "{:?}",
        l.summary_line()
    );
}

#[test]
fn a_missing_stream_is_logged_and_the_function_keeps_running() {
    let mut l = Lambda::start(opts().unset("KINESIS_TELEMETRY_STREAM"));
    assert!(
        l.wait_log("KINESIS_TELEMETRY_STREAM", T),
        "names the variable\n{}",
        l.log_text()
    );
    l.invoke(3);
    let out = l.shutdown();
    assert!(
        out.status.is_some_and(|s| s.success()),
        "{out:?}\n{}",
        l.log_text()
    );
    assert!(out.margin_ms.is_some_and(|m| m > 0), "{out:?}");
    assert_eq!(l.kinesis.stats().requests, 0);
    assert!(
        l.runtime.errors().is_empty(),
        "must not break the function with /init/error"
    );
}

#[test]
fn an_invalid_port_setting_is_logged_and_the_function_keeps_running() {
    let mut l = Lambda::start(opts().env("KINESIS_TELEMETRY_PORT", "not-a-port"));
    assert!(
        l.wait_log("KINESIS_TELEMETRY_PORT", T),
        "names the variable\n{}",
        l.log_text()
    );
    l.invoke(2);
    let out = l.shutdown();
    assert!(
        out.status.is_some_and(|s| s.success()),
        "{out:?}\n{}",
        l.log_text()
    );
    assert!(l.runtime.errors().is_empty());
}

#[test]
fn fail_on_error_turns_a_missing_stream_into_an_init_error() {
    let mut o = opts()
        .unset("KINESIS_TELEMETRY_STREAM")
        .env("KINESIS_TELEMETRY_FAIL_ON_ERROR", "true");
    o.wait_for_init = false;
    let mut l = Lambda::start(o);
    assert!(
        l.runtime.wait_errors(1, T),
        "expected /init/error\n{}",
        l.log_text()
    );
    let err = &l.runtime.errors()[0];
    assert_eq!(
        (err.kind.as_str(), err.error_type.as_deref()),
        ("init", Some("Extension.ConfigInvalid"))
    );
    assert!(
        l.wait_exit(T).is_some(),
        "exits after reporting\n{}",
        l.log_text()
    );
}

#[test]
fn throttled_records_are_resent_and_none_lost() {
    let mut l = Lambda::start(opts().env("KINESIS_TELEMETRY_MAX_ATTEMPTS", "30"));
    l.kinesis.throttle_next_records(15);
    l.kinesis.throttle_fraction(0.3, 7);
    l.invoke(10);
    let out = l.shutdown();
    assert_clean_exit(&l, &out);
    l.assert_each_event_delivered_once();
    let stats = l.kinesis.stats();
    assert!(stats.records_throttled >= 15, "{stats:?}");
    assert!(
        l.summary_count("throttled").unwrap_or(0) >= 15,
        "{:?}",
        l.summary_line()
    );
}

#[test]
fn server_errors_and_dropped_connections_are_retried() {
    let mut l = Lambda::start(opts().env("KINESIS_TELEMETRY_MAX_ATTEMPTS", "10"));
    // First request: connection closed unanswered; then 500, 503; then success.
    l.kinesis.drop_next_connections(1);
    l.kinesis.fail_next_requests(1, 500);
    l.invoke(3);
    let out = {
        let k = l.kinesis.handle();
        let waiter = std::thread::spawn(move || {
            // Script the 503 once the 500 has been answered.
            k.wait_until(T, |s, _| s.rejections.contains_key("InternalFailure"));
            k.fail_next_requests(1, 503);
        });
        let out = l.shutdown();
        let _ = waiter.join();
        out
    };
    assert_clean_exit(&l, &out);
    l.assert_each_event_delivered_once();
    let stats = l.kinesis.stats();
    assert_eq!(stats.dropped_connections, 1, "{stats:?}");
    assert_eq!(
        stats.rejections.get("InternalFailure"),
        Some(&1),
        "{stats:?}"
    );
}

#[test]
fn a_stalled_request_is_abandoned_after_the_request_timeout() {
    let mut l = Lambda::start(opts().env("KINESIS_TELEMETRY_REQUEST_TIMEOUT_MS", "300"));
    l.kinesis
        .stall_next_requests(1, Duration::from_secs(3), AfterStall::Drop);
    l.invoke(3);
    let out = l.shutdown();
    assert_clean_exit(&l, &out);
    l.assert_each_event_delivered_once();
    let reqs = l.kinesis.requests();
    assert!(reqs.len() >= 2 && reqs[0].stalled, "{reqs:?}");
    let gap = reqs[1].received_at - reqs[0].received_at;
    assert!(
        gap < Duration::from_millis(1_200),
        "retried {gap:?} after the stall began"
    );
}

#[test]
fn a_stall_during_an_invocation_does_not_hold_the_function() {
    let mut l = Lambda::start(
        opts()
            .env("KINESIS_TELEMETRY_FRESHNESS_MS", "0")
            .env("KINESIS_TELEMETRY_MAX_ADDED_MS", "400"),
    );
    l.invoke(1);
    assert!(l.runtime.wait_telemetry_idle(T));
    l.kinesis
        .stall_next_requests(5, Duration::from_secs(3), AfterStall::Drop);
    l.invoke(1); // due: flushes into the stall
    let held = l.runtime.time_to_next_after_each_event()[1]
        .1
        .expect("came back");
    assert!(
        held < Duration::from_millis(900),
        "held the invocation for {held:?}\n{}",
        l.log_text()
    );
    l.kinesis.clear_faults();
    let out = l.shutdown();
    assert_clean_exit(&l, &out);
    l.assert_each_event_delivered_once();
}

#[test]
fn a_fatal_error_is_counted_without_a_hot_loop() {
    let mut l = Lambda::start(opts().env("KINESIS_TELEMETRY_FRESHNESS_MS", "0"));
    l.kinesis.set_fatal(Some(AwsError::access_denied(
        "123456789012",
        "telemetry-stream",
    )));
    l.invoke(5);
    let out = l.shutdown();
    assert_clean_exit(&l, &out);
    let stats = l.kinesis.stats();
    assert!(
        (1..=12).contains(&stats.requests),
        "one attempt per window at most, got {}",
        stats.requests
    );
    assert!(l.kinesis.records().is_empty());
    assert!(
        l.summary_count("AccessDeniedException").unwrap_or(0) > 0,
        "{:?}",
        l.summary_line()
    );
    let mentions = l
        .log()
        .iter()
        .filter(|line| line.contains("AccessDenied"))
        .count();
    assert!(
        mentions <= 3,
        "logged once per cause, not per attempt ({mentions} lines)\n{}",
        l.log_text()
    );
}

#[test]
fn a_stream_arn_is_accepted_and_every_request_is_signed_with_the_session_token() {
    let arn = "arn:aws:kinesis:us-east-1:123456789012:stream/telemetry-stream";
    let mut l = Lambda::start(opts().env("KINESIS_TELEMETRY_STREAM", arn));
    l.invoke(3);
    let out = l.shutdown();
    assert_clean_exit(&l, &out);
    // The fake verifies SigV4 and requires the session token: any slip is a 400.
    l.assert_each_event_delivered_once();
    assert_eq!(l.kinesis.stats().rejected, 0);
}

#[test]
fn a_wrong_secret_key_is_reported_and_never_retried_in_a_loop() {
    let mut l = Lambda::start(
        opts()
            .env("AWS_SECRET_ACCESS_KEY", "not-the-right-secret")
            .env("KINESIS_TELEMETRY_FRESHNESS_MS", "0"),
    );
    l.invoke(4);
    let out = l.shutdown();
    assert_clean_exit(&l, &out);
    let stats = l.kinesis.stats();
    assert!(
        stats
            .rejections
            .get("InvalidSignatureException")
            .is_some_and(|n| (1..=10).contains(n)),
        "{stats:?}"
    );
    assert!(
        l.summary_count("InvalidSignatureException").unwrap_or(0) > 0,
        "{:?}",
        l.summary_line()
    );
}

#[test]
fn telemetry_not_supported_leaves_the_function_running() {
    let mut o = opts();
    o.runtime.subscribe_mode = support::SubscribeMode::NotSupported;
    let mut l = Lambda::start(o);
    l.invoke(3);
    let out = l.shutdown();
    assert!(
        out.status.is_some_and(|s| s.success()),
        "{out:?}\n{}",
        l.log_text()
    );
    assert!(out.margin_ms.is_some_and(|m| m > 0), "{out:?}");
    assert!(l.runtime.errors().is_empty());
    assert_eq!(l.kinesis.stats().requests, 0);
}

#[test]
fn a_full_buffer_drops_the_newest_events_counts_them_and_keeps_the_rest() {
    let mut l = Lambda::start(
        nothing_due_before_shutdown(opts()).env("KINESIS_TELEMETRY_BUFFER_MAX_EVENTS", "1000"),
    );
    let ids = l.invoke(1);
    for _ in 0..1500 {
        let e = l.events.function_text(&ids[0]);
        l.push(&e);
    }
    assert!(
        l.runtime.wait_telemetry_idle(T),
        "the listener took every POST"
    );
    assert!(
        l.wait_log("buffer full", T),
        "one log line when the buffer fills\n{}",
        l.log_text()
    );
    let out = l.shutdown();
    assert_clean_exit(&l, &out);

    // Policy "drop newest": the first 1000 events pushed are delivered, in full, and
    // the 500 that arrived while the buffer was full are counted, not silently lost.
    let pushed = l.pushed().to_vec();
    let mut delivered = l.events_delivered();
    delivered.sort();
    let mut kept: Vec<String> = pushed[..1000].iter().map(|p| l.as_delivered(p)).collect();
    kept.sort();
    assert_eq!(delivered, kept, "exactly the oldest 1000 are delivered");
    // 500 of ours plus the platform events (report, ...) the fake platform sent after.
    let received = l.summary_count("received").expect("summary");
    let refused = received - 1000;
    assert!(refused >= 500);
    assert_eq!(
        l.summary_count("buffer_full"),
        Some(refused),
        "{:?}",
        l.summary_line()
    );
    assert_eq!(l.summary_count("delivered"), Some(1000));
    let warnings = l
        .log()
        .iter()
        .filter(|line| line.contains("buffer full"))
        .count();
    assert_eq!(warnings, 1, "logged once per episode\n{}", l.log_text());
}

/// Drives every path that logs (throttling, server errors, a refused request, a bad body) at
/// trace level; `between` runs before the refusal (a credentials endpoint's faults).
fn every_logging_path(o: LambdaOptions, between: impl FnOnce(&mut Lambda)) -> Lambda {
    let mut l = Lambda::start(
        o.env("KINESIS_TELEMETRY_LOG_LEVEL", "trace")
            .env("KINESIS_TELEMETRY_FRESHNESS_MS", "0")
            // Long enough to send while Kinesis fails (then only the functions' own time is used).
            .run_for(Duration::from_millis(150)),
    );
    l.kinesis.throttle_next_records(3);
    l.kinesis.fail_next_requests(2, 500);
    l.invoke(2);
    let answer = l.runtime.post_raw(b"{not json").expect("listener answers");
    assert_eq!(answer.status, 200);
    between(&mut l);
    l.kinesis.set_fatal(Some(AwsError::access_denied(
        "123456789012",
        "telemetry-stream",
    )));
    l.invoke(2);
    l.kinesis.set_fatal(None);
    let out = l.shutdown();
    assert_clean_exit(&l, &out);
    let log = l.log_text();
    assert!(
        log.contains("AccessDenied"),
        "the refusal was logged\n{log}"
    );
    l
}

/// Neither a secret nor a recognisable piece of one is in the log.
fn assert_not_in_the_log(l: &Lambda, secrets: &[String]) {
    let log = l.log_text();
    for s in secrets {
        assert!(
            !log.contains(s.as_str()),
            "a secret in the log: {}…",
            &s[..4]
        );
        assert!(
            !log.contains(&s[..12]),
            "a piece of a secret in the log: {}…",
            &s[..4]
        );
    }
}

#[test]
fn credentials_never_reach_the_log_even_at_trace_level() {
    let creds = support::fake_kinesis::test_credentials();
    let token = creds
        .session_token
        .clone()
        .expect("the harness uses a session token");
    let l = every_logging_path(opts(), |_| {});
    assert_not_in_the_log(&l, &[creds.secret_access_key, token]);
}

#[test]
fn container_credentials_never_reach_the_log_either() {
    // Credentials that live a minute are fetched before every request (they expire within
    // the 5-minute refresh window), so the endpoint's faults below are met.
    let mut o = opts().container_credentials(support::fake_credentials::CredentialsConfig {
        lifetime: Duration::from_secs(60),
        rotate_within: Duration::from_secs(30),
        ..Default::default()
    });
    o.kinesis.credentials = Vec::new();
    let l = every_logging_path(o, |l| {
        let token = l.credentials.as_ref().expect("an endpoint").token();
        // A refused token, then a failing endpoint, then new credentials.
        fn endpoint(l: &Lambda) -> &support::fake_credentials::FakeCredentials {
            l.credentials.as_ref().expect("an endpoint")
        }
        endpoint(l).set_token("another-token-than-the-extensions");
        l.invoke(3);
        endpoint(l).set_token(&token);
        endpoint(l).fail_with(Some(500));
        l.invoke(3);
        endpoint(l).fail_with(None);
        endpoint(l).rotate();
    });
    let endpoint = l.credentials.as_ref().expect("an endpoint");
    let mut secrets = vec![endpoint.token()];
    for i in endpoint.issued() {
        secrets.push(i.credentials.secret_access_key.clone());
        secrets.extend(i.credentials.session_token.clone());
    }
    assert!(endpoint.issued().len() >= 2, "{:?}", endpoint.issued());
    let statuses: Vec<u16> = endpoint.fetches().iter().map(|f| f.status).collect();
    assert!(
        statuses.contains(&403) && statuses.contains(&500) && statuses.contains(&200),
        "every fault was met: {statuses:?}"
    );
    assert!(l.log_text().contains("credentials cannot be fetched"));
    assert_not_in_the_log(&l, &secrets);
}

#[test]
fn a_renamed_extension_registers_under_its_own_file_name() {
    let dir = std::env::temp_dir().join(format!("kte-rename-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let renamed = dir.join("my-telemetry");
    std::fs::copy(support::extension_under_test!(), &renamed).unwrap();
    let mut o = opts();
    o.binary = Some(renamed);
    o.runtime.extension_name = "my-telemetry".into();
    let mut l = Lambda::start(o);
    l.invoke(2);
    let out = l.shutdown();
    assert_clean_exit(&l, &out);
    l.assert_each_event_delivered_once();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_failed_registration_exits_non_zero_with_a_clear_line() {
    let mut o = opts();
    // Lambda answers 403 when the name does not match the executable's file name.
    o.runtime.extension_name = "some-other-extension".into();
    o.wait_for_init = false;
    let mut l = Lambda::start(o);
    let status = l.wait_exit(T).expect("exits by itself");
    assert!(!status.success(), "{status:?}");
    assert!(
        l.log()
            .iter()
            .any(|line| line.contains("registering as \"kinesis-telemetry-extension\" failed")),
        "{}",
        l.log_text()
    );
}

#[test]
fn a_failed_subscription_is_logged_and_the_function_keeps_running() {
    let mut o = opts();
    o.runtime.subscribe_mode = support::SubscribeMode::ServerError;
    o.wait_for_init = false;
    let mut l = Lambda::start(o);
    l.invoke(3);
    let out = l.shutdown();
    assert!(
        out.status.is_some_and(|s| s.success()),
        "{out:?}\n{}",
        l.log_text()
    );
    assert!(l.runtime.errors().is_empty(), "no /init/error unless asked");
    let lines: Vec<String> = l
        .log()
        .into_iter()
        .filter(|line| line.contains("telemetry subscription failed"))
        .collect();
    assert_eq!(lines.len(), 1, "one clear line\n{}", l.log_text());
    assert!(lines[0].contains("HTTP 500"), "{lines:?}");
}

#[test]
fn fail_on_error_turns_a_failed_subscription_into_an_init_error() {
    let mut o = opts().env("KINESIS_TELEMETRY_FAIL_ON_ERROR", "true");
    o.runtime.subscribe_mode = support::SubscribeMode::ServerError;
    o.wait_for_init = false;
    let mut l = Lambda::start(o);
    assert!(l.runtime.wait_errors(1, T), "{}", l.log_text());
    let err = &l.runtime.errors()[0];
    assert_eq!(
        (err.kind.as_str(), err.error_type.as_deref()),
        ("init", Some("Extension.SubscribeFailed"))
    );
    let status = l.wait_exit(T).expect("exits after reporting");
    assert!(!status.success());
}

#[test]
fn request_id_partition_keys_keep_an_invocation_on_one_key() {
    let mut l = Lambda::start(opts().env("KINESIS_TELEMETRY_PARTITION_KEY", "request_id"));
    let ids = l.invoke(4);
    let out = l.shutdown();
    assert_clean_exit(&l, &out);
    l.assert_each_event_delivered_once();
    let mut checked = 0;
    for (key, e) in l.delivered() {
        let event: serde_json::Value = serde_json::from_str(&e.original).unwrap();
        let request_id = match (event["type"].as_str(), &event["record"]) {
            (Some("platform.start" | "platform.runtimeDone"), rec) => rec["requestId"].as_str(),
            (Some("function"), serde_json::Value::String(line)) => line.split('\t').nth(1),
            (Some("function"), rec) => rec["requestId"].as_str(),
            _ => None,
        };
        if let Some(id) = request_id {
            assert_eq!(key, id, "{event}");
            checked += 1;
        }
    }
    assert_eq!(
        checked,
        ids.len() * 4,
        "start, two function records, runtimeDone each"
    );
}

#[test]
fn an_unknown_log_level_warns_and_keeps_logging_at_info() {
    let mut l = Lambda::start(opts().env("KINESIS_TELEMETRY_LOG_LEVEL", "verbose"));
    l.invoke(1);
    let out = l.shutdown();
    assert_clean_exit(&l, &out);
    assert!(
        l.log()
            .iter()
            .any(|line| line.contains("KINESIS_TELEMETRY_LOG_LEVEL=\"verbose\" is invalid")),
        "{}",
        l.log_text()
    );
}

#[test]
fn an_event_bigger_than_a_record_is_delivered_truncated_and_counted() {
    let mut l = Lambda::start(opts().env("KINESIS_TELEMETRY_MAX_RECORD_BYTES", "4096"));
    let ids = l.invoke(1);
    let big = l.events.function_sized(&ids[0], 10_000);
    let big_text = l.push(&big);
    let after = l.events.function_text(&ids[0]);
    l.push(&after);
    l.invoke(1);
    let out = l.shutdown();
    assert_clean_exit(&l, &out);

    let records = l.kinesis.records();
    assert!(records
        .iter()
        .all(|r| r.data.len() + r.partition_key.len() <= 4096));
    let original: serde_json::Value = serde_json::from_str(&big_text).unwrap();
    let truncated: Vec<serde_json::Value> = l
        .delivered()
        .into_iter()
        .map(|(_, e)| {
            assert!(e.source.is_some(), "a truncated event is enriched too");
            serde_json::from_str::<serde_json::Value>(&e.original).unwrap()
        })
        .filter(|v| v.get("truncated").is_some())
        .collect();
    assert_eq!(truncated.len(), 1, "exactly the big event is truncated");
    let t = &truncated[0];
    assert_eq!(t["type"], original["type"]);
    assert_eq!(t["time"], original["time"]);
    assert_eq!(t["truncated"]["originalBytes"], big_text.len());
    let kept = t["record"]
        .as_str()
        .expect("record kept as a string prefix");
    assert!(!kept.is_empty() && kept.len() < 4096);
    assert_eq!(
        l.summary_count("truncated"),
        Some(1),
        "{:?}",
        l.summary_line()
    );
    // Everything else arrived whole, including the event right behind the big one.
    let delivered = l.events_delivered();
    let whole: Vec<String> = l
        .pushed()
        .iter()
        .filter(|p| **p != big_text)
        .map(|p| l.as_delivered(p))
        .collect();
    for p in whole {
        assert!(delivered.contains(&p), "missing {p}");
    }
    assert_eq!(l.summary_count("dropped"), Some(0));
}
