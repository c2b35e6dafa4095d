//! The fake Runtime API over the wire (Extensions and Telemetry APIs): registration and
//! subscriptions as strict as Lambda's, events with real deadlines, telemetry pushed only
//! after a subscription and batched by its buffering, Lambda Managed Instances and SnapStart
//! modes, and a subscriber that falls behind losing telemetry the way Lambda says it does.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use kte_test_support as support;
use serde_json::{json, Value};

use support::fake_runtime::{FakeRuntime, RuntimeConfig, SubscribeMode};
use support::http::{self, Action, Handler, Request, Response, Server};
use support::{clock, EventFactory};

const T: Duration = Duration::from_secs(10);

// ---------- fake Runtime API ----------

fn ext_call(
    rt: &FakeRuntime,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, Value, http::ClientResponse) {
    let h: Vec<(String, String)> = headers
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    let r = http::request_once(rt.addr(), method, path, &h, body.as_bytes(), T).unwrap();
    (r.status, r.json().unwrap_or(Value::Null), r)
}

const REGISTER: &str = "/2020-01-01/extension/register";
const NEXT: &str = "/2020-01-01/extension/event/next";
const SUBSCRIBE: &str = "/2022-07-01/telemetry";

fn register(rt: &FakeRuntime) -> String {
    let (status, v, r) = ext_call(
        rt,
        "POST",
        REGISTER,
        &[("Lambda-Extension-Name", "kinesis-telemetry-extension")],
        r#"{"events":["INVOKE","SHUTDOWN"]}"#,
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["functionName"], "fake-function");
    assert!(
        v.get("accountId").is_none(),
        "accountId only when asked for"
    );
    r.header("Lambda-Extension-Identifier").unwrap().to_owned()
}

fn subscription(buffering: Value, port: u16) -> String {
    subscription_to(buffering, &format!("http://sandbox.localdomain:{port}"))
}

fn subscription_to(buffering: Value, uri: &str) -> String {
    json!({"schemaVersion": "2022-12-13",
           "destination": {"protocol": "HTTP", "URI": uri},
           "types": ["platform", "function", "extension"], "buffering": buffering})
    .to_string()
}

#[test]
fn runtime_register_is_strict() {
    let rt = FakeRuntime::start(RuntimeConfig::default()).unwrap();
    let (status, v, _) = ext_call(
        &rt,
        "POST",
        REGISTER,
        &[("Lambda-Extension-Name", "other")],
        r#"{"events":["INVOKE"]}"#,
    );
    assert_eq!(status, 403, "{v}");
    let (status, _, _) = ext_call(&rt, "POST", REGISTER, &[], r#"{"events":["INVOKE"]}"#);
    assert_eq!(status, 403);
    let (status, v, _) = ext_call(
        &rt,
        "POST",
        REGISTER,
        &[("Lambda-Extension-Name", "kinesis-telemetry-extension")],
        r#"{"events":["START"]}"#,
    );
    assert_eq!(
        (status, v["errorType"].as_str()),
        (400, Some("ValidationError"))
    );
    let (status, _, _) = ext_call(&rt, "GET", NEXT, &[], "");
    assert_eq!(status, 403, "/event/next before register");
    let id = register(&rt);
    assert_eq!(id.len(), 36);
    let (status, _, _) = ext_call(
        &rt,
        "POST",
        REGISTER,
        &[("Lambda-Extension-Name", "kinesis-telemetry-extension")],
        r#"{"events":["INVOKE"]}"#,
    );
    assert_eq!(status, 403, "second register");
    let (status, _, _) = ext_call(
        &rt,
        "GET",
        NEXT,
        &[("Lambda-Extension-Identifier", "wrong")],
        "",
    );
    assert_eq!(status, 403);
    assert_eq!(rt.calls_to("/register").len(), 5);
}

#[test]
fn runtime_rejects_bad_subscriptions_with_validation_errors() {
    let rt = FakeRuntime::start(RuntimeConfig::default()).unwrap();
    let id = register(&rt);
    let hdr = [
        ("Lambda-Extension-Identifier", id.as_str()),
        ("Content-Type", "application/json"),
    ];
    for (body, what) in [
        (
            subscription(json!({"maxItems": 100}), 4243),
            "maxItems below 1000",
        ),
        (
            subscription(json!({"maxBytes": 2_000_000}), 4243),
            "maxBytes above 1 MiB",
        ),
        (
            subscription(json!({"timeoutMs": 10}), 4243),
            "timeoutMs below 25",
        ),
        (subscription(json!({}), 9001), "reserved port"),
        (
            subscription(json!({}), 4243).replace("\"HTTP\"", "\"TCP\""),
            "protocol",
        ),
        (
            subscription(json!({}), 4243).replace("2022-12-13", "2021-01-01"),
            "schemaVersion",
        ),
        (
            subscription(json!({}), 4243).replace("\"extension\"", "\"logs\""),
            "types",
        ),
        (
            subscription(json!({}), 4243).replace("sandbox.localdomain", "localhost"),
            "host",
        ),
        (
            subscription_to(json!({}), "http://sandbox.localdomain:4243/a b"),
            "path with a space",
        ),
        (
            subscription_to(json!({}), "http://sandbox.localdomain:4243/a?b=1"),
            "query",
        ),
        ("{not json".to_owned(), "JSON"),
    ] {
        let (status, v, _) = ext_call(&rt, "PUT", SUBSCRIBE, &hdr, &body);
        assert_eq!(status, 400, "{what}: {v}");
        assert_eq!(v["errorType"], "ValidationError", "{what}");
        assert!(
            v["errorMessage"].as_str().is_some_and(|m| !m.is_empty()),
            "{what}"
        );
    }
    assert!(rt.subscription().is_none());
    let (status, _, _) = ext_call(&rt, "PUT", SUBSCRIBE, &[], &subscription(json!({}), 4243));
    assert_eq!(status, 403, "subscription without identifier");

    rt.set_subscribe_mode(SubscribeMode::NotSupported);
    assert_eq!(
        ext_call(&rt, "PUT", SUBSCRIBE, &hdr, &subscription(json!({}), 4243)).0,
        202
    );
    rt.set_subscribe_mode(SubscribeMode::ServerError);
    assert_eq!(
        ext_call(&rt, "PUT", SUBSCRIBE, &hdr, &subscription(json!({}), 4243)).0,
        500
    );
    rt.set_subscribe_mode(SubscribeMode::Validate);
    let body = subscription(
        json!({"maxItems": 1000, "maxBytes": 262144, "timeoutMs": 25}),
        4243,
    );
    assert_eq!(ext_call(&rt, "PUT", SUBSCRIBE, &hdr, &body).0, 200);
    assert_eq!(
        rt.subscription().unwrap().buffering.timeout,
        Duration::from_millis(25)
    );
}

#[test]
fn runtime_serves_events_with_real_deadlines_and_records_timing() {
    let rt = FakeRuntime::start(RuntimeConfig {
        function_timeout: Duration::from_secs(3),
        ..Default::default()
    })
    .unwrap();
    let id = register(&rt);
    let hdr = [("Lambda-Extension-Identifier", id.as_str())];
    let request_id = rt.invoke();
    let (status, v, r) = ext_call(&rt, "GET", NEXT, &hdr, "");
    assert_eq!(status, 200);
    assert!(r.header("Lambda-Extension-Event-Identifier").is_some());
    assert_eq!(v["eventType"], "INVOKE");
    assert_eq!(v["requestId"], request_id.as_str());
    assert_eq!(
        v["invokedFunctionArn"],
        "arn:aws:lambda:us-east-1:123456789012:function:fake-function"
    );
    assert_eq!(v["tracing"]["type"], "X-Amzn-Trace-Id");
    let left = v["deadlineMs"].as_u64().unwrap() as i64 - clock::epoch_ms(SystemTime::now()) as i64;
    assert!(
        (2_500..=3_000).contains(&left),
        "deadline is delivery + timeout, {left} ms left"
    );

    // A long poll blocks until the script provides the next event.
    let h = vec![("Lambda-Extension-Identifier".to_owned(), id.clone())];
    let addr = rt.addr();
    let waiter =
        std::thread::spawn(move || http::request_once(addr, "GET", NEXT, &h, b"", T).unwrap());
    assert!(rt.wait_for_next_calls(2, T));
    assert!(
        !rt.wait_delivered(2, Duration::from_millis(200)),
        "nothing scripted yet"
    );
    rt.shutdown("spindown");
    let r = waiter.join().unwrap();
    let v = r.json().unwrap();
    assert_eq!(
        (v["eventType"].as_str(), v["shutdownReason"].as_str()),
        (Some("SHUTDOWN"), Some("spindown"))
    );
    let left = v["deadlineMs"].as_u64().unwrap() as i64 - clock::epoch_ms(SystemTime::now()) as i64;
    assert!((1_500..=2_000).contains(&left), "{left}");
    let timing = rt.time_to_next_after_each_event();
    assert!(timing[0].1.is_some(), "came back after INVOKE");
    assert!(timing[1].1.is_none(), "not after SHUTDOWN");

    let (status, _, _) = ext_call(
        &rt,
        "POST",
        "/2020-01-01/extension/exit/error",
        &[
            ("Lambda-Extension-Identifier", &id),
            ("Lambda-Extension-Function-Error-Type", "Extension.Crash"),
        ],
        "{}",
    );
    assert_eq!(status, 202);
    assert_eq!(
        rt.errors()[0].error_type.as_deref(),
        Some("Extension.Crash")
    );
}

/// A subscriber that records every POST: when, its body, and `<Host> <path>`.
struct Recorder(Mutex<Vec<(Instant, Vec<u8>, String)>>);
impl Handler for Recorder {
    fn handle(&self, r: Request) -> Action {
        let target = format!("{} {}", r.header("host").unwrap_or("-"), r.path);
        self.0
            .lock()
            .unwrap()
            .push((Instant::now(), r.body, target));
        Action::Respond(Response::empty(200))
    }
}

#[test]
fn runtime_pushes_telemetry_only_after_subscription_respecting_buffering() {
    let rt = FakeRuntime::start(RuntimeConfig::default()).unwrap();
    let recorder = Arc::new(Recorder(Mutex::new(Vec::new())));
    let sink = Server::start(recorder.clone()).unwrap();
    let id = register(&rt);
    let mut f = EventFactory::default();
    let early = rt.push_event(&f.init_start());
    assert!(
        !rt.wait_telemetry_idle(Duration::from_millis(150)),
        "held until subscribed"
    );
    assert!(recorder.0.lock().unwrap().is_empty());

    let hdr = [("Lambda-Extension-Identifier", id.as_str())];
    let port = sink.addr().port();
    let body = subscription_to(
        json!({"maxItems": 1000, "maxBytes": 262144, "timeoutMs": 100}),
        &format!("http://sandbox.localdomain:{port}/telemetry/s3cr3t"),
    );
    assert_eq!(ext_call(&rt, "PUT", SUBSCRIBE, &hdr, &body).0, 200);
    let subscribed_at = Instant::now();
    let odd = f.oddly_formatted();
    rt.push_raw_event(odd.clone());
    assert!(rt.wait_telemetry_idle(T));
    {
        let posts = recorder.0.lock().unwrap();
        assert_eq!(posts.len(), 1, "both events in one batch after timeoutMs");
        assert!(
            posts[0].0 - subscribed_at >= Duration::from_millis(90),
            "waited for timeoutMs"
        );
        assert_eq!(
            posts[0].1,
            format!("[{early},{odd}]").into_bytes(),
            "verbatim bytes"
        );
    }

    // maxItems reached: 2500 small events go out as 1000 + 1000 right away, then 500.
    let rid = "r";
    for _ in 0..2500 {
        rt.push_event(&f.function_text(rid));
    }
    assert!(rt.wait_telemetry_idle(T));
    let posts = rt.telemetry_posts();
    let sizes: Vec<usize> = posts.iter().skip(1).map(|p| p.items).collect();
    assert_eq!(sizes, [1000, 1000, 500]);
    assert!(posts.iter().all(|p| p.status == Some(200)));

    let r = rt.post_raw(b"{not json").unwrap();
    assert_eq!(r.status, 200, "the recorder answers anything");
    // Every POST, post_raw's too, goes to the subscribed URI, path included.
    let targets: Vec<String> = recorder
        .0
        .lock()
        .unwrap()
        .iter()
        .map(|p| p.2.clone())
        .collect();
    assert_eq!(targets.len(), 5);
    let expected = format!("sandbox.localdomain:{port} /telemetry/s3cr3t");
    assert!(targets.iter().all(|t| *t == expected), "{targets:?}");
    assert_eq!(
        sink.connections_accepted(),
        2,
        "pusher kept one connection alive; post_raw used its own"
    );
}

// ---------- fake Runtime API: Lambda Managed Instances ----------

fn managed_runtime() -> FakeRuntime {
    FakeRuntime::start(RuntimeConfig {
        managed_instances: true,
        ..Default::default()
    })
    .unwrap()
}

fn register_for(rt: &FakeRuntime, events: &str) -> (u16, Value, http::ClientResponse) {
    ext_call(
        rt,
        "POST",
        REGISTER,
        &[("Lambda-Extension-Name", "kinesis-telemetry-extension")],
        events,
    )
}

#[test]
fn runtime_on_managed_instances_refuses_invoke_and_old_schemas() {
    let rt = managed_runtime();
    let (status, v, _) = register_for(&rt, r#"{"events":["INVOKE","SHUTDOWN"]}"#);
    assert_eq!(status, 400, "{v}");
    assert_eq!(v["errorType"], "Extension.InvalidEventType");
    assert!(v["errorMessage"]
        .as_str()
        .is_some_and(|m| m.contains("INVOKE")));
    assert!(
        rt.registered_events().is_empty(),
        "a refused registration leaves no trace"
    );
    let (status, v, _) = register_for(&rt, r#"{"events":["INVOKE"]}"#);
    assert_eq!(
        (status, v["errorType"].as_str()),
        (400, Some("Extension.InvalidEventType"))
    );

    let (status, v, r) = register_for(&rt, r#"{"events":["SHUTDOWN"]}"#);
    assert_eq!(
        status, 200,
        "SHUTDOWN only is accepted after a refusal: {v}"
    );
    assert_eq!(rt.registered_events(), ["SHUTDOWN"]);
    let id = r.header("Lambda-Extension-Identifier").unwrap().to_owned();
    let hdr = [
        ("Lambda-Extension-Identifier", id.as_str()),
        ("Content-Type", "application/json"),
    ];
    for old in ["2022-07-01", "2022-12-13"] {
        let body = subscription(json!({}), 4243).replace("2022-12-13", old);
        let (status, v, _) = ext_call(&rt, "PUT", SUBSCRIBE, &hdr, &body);
        assert_eq!(
            (status, v["errorType"].as_str()),
            (400, Some("ValidationError")),
            "{old}"
        );
        assert!(
            v["errorMessage"].as_str().unwrap().contains("2025-01-29"),
            "{v}"
        );
    }
    assert!(rt.subscription().is_none());
    let body = subscription(json!({}), 4243).replace("2022-12-13", "2025-01-29");
    assert_eq!(ext_call(&rt, "PUT", SUBSCRIBE, &hdr, &body).0, 200);

    // No INVOKE reaches an extension registered for SHUTDOWN only.
    rt.invoke();
    rt.shutdown("spindown");
    let (status, v, _) = ext_call(
        &rt,
        "GET",
        NEXT,
        &[("Lambda-Extension-Identifier", &id)],
        "",
    );
    assert_eq!((status, v["eventType"].as_str()), (200, Some("SHUTDOWN")));
}

#[test]
fn runtime_default_accepts_the_managed_instances_schema_and_factory_has_its_shapes() {
    let rt = FakeRuntime::start(RuntimeConfig::default()).unwrap();
    let id = register(&rt);
    let hdr = [("Lambda-Extension-Identifier", id.as_str())];
    let body = subscription(json!({}), 4243).replace("2022-12-13", "2025-01-29");
    assert_eq!(
        ext_call(&rt, "PUT", SUBSCRIBE, &hdr, &body).0,
        200,
        "backward compatible"
    );

    let mut f = EventFactory::default();
    let init = f.init_start_managed();
    assert_eq!(
        init["record"]["initializationType"],
        "lambda-managed-instances"
    );
    let report = f.report_managed("r-1", Duration::from_millis(20));
    assert_eq!(report["type"], "platform.report");
    let metrics = report["record"]["metrics"].as_object().unwrap();
    assert_eq!(metrics.keys().collect::<Vec<_>>(), ["durationMs"]);
    let spans: Vec<&str> = report["record"]["spans"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(spans, ["responseLatency", "responseDuration"]);
}

// ---------- fake Runtime API: a subscriber that falls behind ----------

#[test]
fn runtime_drops_telemetry_over_its_queue_limit_and_says_so_first() {
    let rt = FakeRuntime::start(RuntimeConfig {
        telemetry_queue_limit: Some(5),
        ..Default::default()
    })
    .unwrap();
    let recorder = Arc::new(Recorder(Mutex::new(Vec::new())));
    let sink = Server::start(recorder.clone()).unwrap();
    let id = register(&rt);
    let mut f = EventFactory::default();
    // Before the subscription the platform holds events: the sixth on waits in vain.
    let texts: Vec<String> = (0..8).map(|_| f.function_text("r").to_string()).collect();
    let kept: Vec<bool> = texts.iter().map(|t| rt.push_raw_event(t.clone())).collect();
    assert_eq!(kept, [true, true, true, true, true, false, false, false]);
    let lost_bytes: u64 = texts[5..].iter().map(|t| t.len() as u64).sum();
    assert_eq!(rt.telemetry_dropped(), (3, lost_bytes));
    assert!(
        rt.logs_dropped_events().is_empty(),
        "reported with the next POST"
    );

    let hdr = [("Lambda-Extension-Identifier", id.as_str())];
    let body = subscription(json!({"timeoutMs": 25}), sink.addr().port());
    assert_eq!(ext_call(&rt, "PUT", SUBSCRIBE, &hdr, &body).0, 200);
    assert!(rt.wait_telemetry_idle(T));
    let reports = rt.logs_dropped_events();
    assert_eq!(reports.len(), 1);
    let report: Value = serde_json::from_str(&reports[0]).unwrap();
    assert_eq!(report["type"], "platform.logsDropped");
    assert_eq!(report["record"]["droppedRecords"], 3);
    assert_eq!(report["record"]["droppedBytes"], lost_bytes);
    assert_eq!(
        report["record"]["reason"],
        "Consumer seems to have fallen behind as it has not acknowledged receipt of logs."
    );
    {
        let posts = recorder.0.lock().unwrap();
        assert_eq!(posts.len(), 1);
        let expected = format!("[{},{}]", reports[0], texts[..5].join(","));
        assert_eq!(
            String::from_utf8_lossy(&posts[0].1),
            expected,
            "the report leads"
        );
    }

    // Held while paused (a frozen sandbox) counts as waiting too; without drops, no report.
    assert!(rt.pause_telemetry(T));
    let held: Vec<bool> = (0..6)
        .map(|_| rt.push_raw_event(f.function_text("r").to_string()))
        .collect();
    assert_eq!(held, [true, true, true, true, true, false]);
    rt.resume_telemetry();
    assert!(rt.wait_telemetry_idle(T));
    assert_eq!(rt.telemetry_dropped().0, 4);
    assert_eq!(rt.logs_dropped_events().len(), 2);
    assert!(rt.push_raw_event(f.function_text("r").to_string()));
    assert!(rt.wait_telemetry_idle(T));
    assert_eq!(
        rt.logs_dropped_events().len(),
        2,
        "nothing new dropped, nothing reported"
    );
    let posts = recorder.0.lock().unwrap();
    assert_eq!(posts.len(), 3);
    assert!(String::from_utf8_lossy(&posts[1].1)
        .starts_with(&format!("[{}", rt.logs_dropped_events()[1])));
}

#[test]
fn runtime_in_snap_start_mode_restores_once_before_the_first_event() {
    let rt = FakeRuntime::start(RuntimeConfig {
        snap_start: true,
        ..Default::default()
    })
    .unwrap();
    let id = register(&rt);
    let hdr = [("Lambda-Extension-Identifier", id.as_str())];
    assert!(
        rt.restored_at().is_none(),
        "the snapshot is not restored yet"
    );
    rt.invoke();
    rt.invoke();
    for _ in 0..2 {
        let (status, v, _) = ext_call(&rt, "GET", NEXT, &hdr, "");
        assert_eq!((status, v["eventType"].as_str()), (200, Some("INVOKE")));
    }
    let restored = rt.restored_at().expect("restored at the first event");
    assert!(restored <= rt.delivered()[0].delivered_at);
    let events: Vec<Value> = rt
        .restore_events()
        .iter()
        .map(|t| serde_json::from_str(t).unwrap())
        .collect();
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(
        types,
        [
            "platform.restoreStart",
            "function",
            "platform.restoreRuntimeDone",
            "platform.restoreReport"
        ],
        "once, in Lambda's order"
    );
    assert_eq!(events[0]["record"]["functionName"], "fake-function");
    assert_eq!(events[0]["record"]["functionVersion"], "$LATEST");
    assert_eq!(events[2]["record"]["status"], "success");
    assert!(events[3]["record"]["metrics"]["durationMs"].is_f64());
}
