//! Tests of the fakes themselves: they must reject what AWS rejects, with AWS's
//! shapes, and their fault scripts must do what they say. A fake that accepts
//! anything would make every black-box test meaningless.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use base64::Engine as _;
use kte_test_support as support;
use serde_json::{json, Value};

use support::fake_kinesis::{
    self, send_put_records, AfterStall, AwsError, FakeKinesis, KinesisConfig,
};
use support::fake_runtime::{FakeRuntime, RuntimeConfig, SubscribeMode};
use support::http::{self, Action, Client, Handler, Request, Response, Server};
use support::sigv4::Credentials;
use support::{clock, EventFactory};

const T: Duration = Duration::from_secs(10);

fn b64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

fn put_body(stream: &str, records: &[(&[u8], &str)]) -> Vec<u8> {
    let recs: Vec<Value> = records
        .iter()
        .map(|(d, k)| json!({"Data": b64(d), "PartitionKey": k}))
        .collect();
    json!({"StreamName": stream, "Records": recs})
        .to_string()
        .into_bytes()
}

fn creds() -> Credentials {
    fake_kinesis::test_credentials()
}

fn kinesis() -> FakeKinesis {
    FakeKinesis::start(KinesisConfig::default()).unwrap()
}

fn send(k: &FakeKinesis, body: &[u8]) -> (u16, Value) {
    let r = send_put_records(k.addr(), &creds(), "us-east-1", body, |_| {}).unwrap();
    (r.status, r.json().unwrap_or(Value::Null))
}

fn error_type(v: &Value) -> &str {
    v["__type"].as_str().unwrap_or("")
}

// ---------- fake Kinesis: happy path ----------

#[test]
fn kinesis_stores_accepted_records_with_their_decoded_bytes() {
    let k = kinesis();
    let (status, v) = send(
        &k,
        &put_body(
            "telemetry-stream",
            &[(b"{\"a\":1}", "k1"), (&[0, 255, 10], "k2")],
        ),
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["FailedRecordCount"], 0);
    assert_eq!(v["EncryptionType"], "NONE");
    let recs = v["Records"].as_array().unwrap();
    assert_eq!(recs.len(), 2);
    for r in recs {
        assert_eq!(r["SequenceNumber"].as_str().unwrap().len(), 56);
        assert!(r["ShardId"].as_str().unwrap().starts_with("shardId-"));
    }
    let stored = k.records();
    assert_eq!(stored[0].data, b"{\"a\":1}");
    assert_eq!(stored[1].data, [0, 255, 10]);
    assert_eq!(
        (
            stored[1].partition_key.as_str(),
            stored[1].order,
            stored[1].request_index
        ),
        ("k2", 1, 0)
    );
    assert_eq!(k.stats().records_accepted, 2);
}

#[test]
fn kinesis_accepts_a_stream_arn_and_keeps_connections_alive() {
    let k = kinesis();
    let arn = k.stream_arn("telemetry-stream");
    let body = json!({"StreamARN": arn, "Records": [{"Data": b64(b"x"), "PartitionKey": "p"}]})
        .to_string();
    let client = Client::new(k.addr(), T);
    for _ in 0..3 {
        let mut headers = vec![
            ("Host".to_owned(), k.addr().to_string()),
            (
                "Content-Type".to_owned(),
                fake_kinesis::CONTENT_TYPE.to_owned(),
            ),
            (
                "X-Amz-Target".to_owned(),
                fake_kinesis::PUT_RECORDS_TARGET.to_owned(),
            ),
        ];
        let parts = support::sigv4::HttpParts {
            method: "POST",
            path: "/",
            query: "",
            headers: &headers,
            body: body.as_bytes(),
        };
        let added =
            support::sigv4::sign(parts, &creds(), "us-east-1", "kinesis", SystemTime::now());
        headers.extend(added);
        let r = client
            .request("POST", "/", &headers, body.as_bytes())
            .unwrap();
        assert_eq!(r.status, 200, "{}", r.body_text());
    }
    assert_eq!(
        k.connections_accepted(),
        1,
        "three requests should share one keep-alive connection"
    );
    assert_eq!(k.records().len(), 3);
}

// ---------- fake Kinesis: strictness ----------

#[test]
fn kinesis_rejects_501_records_with_a_validation_exception() {
    let k = kinesis();
    let recs: Vec<(&[u8], &str)> = (0..501).map(|_| (&b"x"[..], "k")).collect();
    let (status, v) = send(&k, &put_body("telemetry-stream", &recs));
    assert_eq!((status, error_type(&v)), (400, "ValidationException"));
    let msg = v["message"].as_str().unwrap();
    assert!(msg.starts_with("1 validation error detected: "), "{msg}");
    assert!(msg.contains("at 'records' failed to satisfy constraint: Member must have length less than or equal to 500"), "{msg}");
    let (status, _) = send(&k, &put_body("telemetry-stream", &[]));
    assert_eq!(status, 400, "zero records is invalid too");
    assert!(k.records().is_empty());
    assert_eq!(k.stats().rejections.get("ValidationException"), Some(&2));
}

#[test]
fn kinesis_rejects_oversize_records_and_requests() {
    let k = kinesis();
    let big = vec![b'a'; 1024 * 1024 + 1];
    let (status, v) = send(
        &k,
        &put_body("telemetry-stream", &[(b"ok", "k"), (&big, "k")]),
    );
    assert_eq!(
        (status, error_type(&v)),
        (400, "ValidationException"),
        "{v}"
    );
    let msg = v["message"].as_str().unwrap();
    assert!(msg.contains("at 'records.2.member.data' failed to satisfy constraint: Member must have length less than or equal to 1048576"), "{msg}");

    // Data exactly 1 MiB plus a key: over the record limit, which counts both.
    let exact = vec![b'a'; 1024 * 1024];
    let (status, v) = send(&k, &put_body("telemetry-stream", &[(&exact, "key")]));
    assert_eq!(
        (status, error_type(&v)),
        (400, "InvalidArgumentException"),
        "{v}"
    );

    // Six records of ~1 MiB each: each fits, the request (> 5 MiB) does not.
    let near = vec![b'b'; 1024 * 1024 - 10];
    let recs: Vec<(&[u8], &str)> = (0..6).map(|_| (&near[..], "k")).collect();
    let (status, v) = send(&k, &put_body("telemetry-stream", &recs));
    assert_eq!(
        (status, error_type(&v)),
        (400, "InvalidArgumentException"),
        "{v}"
    );
    assert_eq!(v["message"], "Records size exceeds 5 MB limit");
    assert!(k.records().is_empty());
}

#[test]
fn kinesis_rejects_bad_partition_keys_and_bad_base64() {
    let k = kinesis();
    let long_key = "k".repeat(257);
    let (status, v) = send(
        &k,
        &put_body("telemetry-stream", &[(b"x", &long_key), (b"y", "")]),
    );
    assert_eq!((status, error_type(&v)), (400, "ValidationException"));
    let msg = v["message"].as_str().unwrap();
    assert!(msg.starts_with("2 validation errors detected: "), "{msg}");
    assert!(msg.contains("'records.1.member.partitionKey' failed to satisfy constraint: Member must have length less than or equal to 256"));
    assert!(msg.contains("'records.2.member.partitionKey' failed to satisfy constraint: Member must have length greater than or equal to 1"));
    // 256 multi-byte characters are fine: the limit counts characters.
    let (status, _) = send(
        &k,
        &put_body("telemetry-stream", &[(b"x", &"é".repeat(256))]),
    );
    assert_eq!(status, 200);

    let body = json!({"StreamName": "telemetry-stream", "Records": [{"Data": "foobar", "PartitionKey": "k"}]}).to_string();
    let (status, v) = send(&k, body.as_bytes());
    assert_eq!((status, error_type(&v)), (400, "SerializationException"));
    assert_eq!(
        v["Message"],
        "'foobar' can not be converted to a Blob: Base64 encoded length is expected a multiple of 4 bytes but found: 6"
    );
}

#[test]
fn kinesis_rejects_unknown_streams_like_aws() {
    let k = kinesis();
    let (status, v) = send(&k, &put_body("nope", &[(b"x", "k")]));
    assert_eq!((status, error_type(&v)), (400, "ResourceNotFoundException"));
    assert_eq!(
        v["message"],
        "Stream nope under account 123456789012 not found."
    );
    let arn = "arn:aws:kinesis:eu-west-1:123456789012:stream/telemetry-stream";
    let body = json!({"StreamARN": arn, "Records": [{"Data": b64(b"x"), "PartitionKey": "p"}]})
        .to_string();
    let (status, v) = send(&k, body.as_bytes());
    assert_eq!(
        (status, error_type(&v)),
        (400, "ResourceNotFoundException"),
        "an ARN in another region names another stream"
    );
}

#[test]
fn kinesis_rejects_wrong_target_content_type_and_method() {
    let k = kinesis();
    let body = put_body("telemetry-stream", &[(b"x", "k")]);
    for (name, value) in [
        ("X-Amz-Target", "Kinesis_20131202.PutRecord"),
        ("Content-Type", "application/json"),
    ] {
        // Tampered before signing, so the signature itself is valid.
        let r = send_put_records_with(&k, &body, name, value);
        assert_eq!(r.status, 400, "{name}: {}", r.body_text());
        assert_eq!(
            error_type(&r.json().unwrap()),
            "UnknownOperationException",
            "{name}"
        );
    }
    let r = http::request_once(k.addr(), "GET", "/", &[], b"", T).unwrap();
    assert_eq!(r.status, 400);
    assert!(k.records().is_empty());
}

/// Signs a request whose header `name` was replaced by `value` before signing.
fn send_put_records_with(
    k: &FakeKinesis,
    body: &[u8],
    name: &str,
    value: &str,
) -> http::ClientResponse {
    let mut headers = vec![
        ("Host".to_owned(), k.addr().to_string()),
        (
            "Content-Type".to_owned(),
            fake_kinesis::CONTENT_TYPE.to_owned(),
        ),
        (
            "X-Amz-Target".to_owned(),
            fake_kinesis::PUT_RECORDS_TARGET.to_owned(),
        ),
    ];
    for h in headers.iter_mut().filter(|(n, _)| n == name) {
        h.1 = value.to_owned();
    }
    let parts = support::sigv4::HttpParts {
        method: "POST",
        path: "/",
        query: "",
        headers: &headers,
        body,
    };
    headers.extend(support::sigv4::sign(
        parts,
        &creds(),
        "us-east-1",
        "kinesis",
        SystemTime::now(),
    ));
    http::request_once(k.addr(), "POST", "/", &headers, body, T).unwrap()
}

#[test]
fn kinesis_verifies_signatures_credentials_and_session_tokens() {
    let k = kinesis();
    let body = put_body("telemetry-stream", &[(b"x", "k")]);
    let c = creds();
    let check = |r: http::ClientResponse, code: &str| {
        let v = r.json().unwrap_or(Value::Null);
        assert_eq!((r.status, error_type(&v)), (400, code), "{}", r.body_text());
        v
    };

    // Tampered body after signing.
    let mut tampered = body.clone();
    *tampered.last_mut().unwrap() = b' ';
    let headers = signed_headers(&k, &c, "us-east-1", &body);
    let v = check(
        http::request_once(k.addr(), "POST", "/", &headers, &tampered, T).unwrap(),
        "InvalidSignatureException",
    );
    let msg = v["message"].as_str().unwrap();
    assert!(
        msg.starts_with(
            "The request signature we calculated does not match the signature you provided."
        ),
        "{msg}"
    );
    assert!(
        msg.contains("The Canonical String for this request should have been\n'POST\n/\n"),
        "{msg}"
    );

    // A signed header changed after signing.
    let r = send_put_records(k.addr(), &c, "us-east-1", &body, |h| {
        h.iter_mut().find(|(n, _)| n == "X-Amz-Date").unwrap().1 =
            clock::amz_date(SystemTime::now() - Duration::from_secs(1));
    })
    .unwrap();
    check(r, "InvalidSignatureException");

    // Wrong secret, wrong region in scope, unknown key, missing/wrong token, no auth at all.
    let wrong_secret = Credentials {
        secret_access_key: "nope".to_owned(),
        ..c.clone()
    };
    check(
        send_put_records(k.addr(), &wrong_secret, "us-east-1", &body, |_| {}).unwrap(),
        "InvalidSignatureException",
    );
    check(
        send_put_records(k.addr(), &c, "us-west-2", &body, |_| {}).unwrap(),
        "InvalidSignatureException",
    );
    let unknown = Credentials {
        access_key_id: "AKIDUNKNOWN".to_owned(),
        ..c.clone()
    };
    let v = check(
        send_put_records(k.addr(), &unknown, "us-east-1", &body, |_| {}).unwrap(),
        "UnrecognizedClientException",
    );
    assert_eq!(
        v["message"],
        "The security token included in the request is invalid."
    );
    let no_token = Credentials {
        session_token: None,
        ..c.clone()
    };
    check(
        send_put_records(k.addr(), &no_token, "us-east-1", &body, |_| {}).unwrap(),
        "UnrecognizedClientException",
    );
    let bad_token = Credentials {
        session_token: Some("other".to_owned()),
        ..c.clone()
    };
    check(
        send_put_records(k.addr(), &bad_token, "us-east-1", &body, |_| {}).unwrap(),
        "UnrecognizedClientException",
    );
    let r = send_put_records(k.addr(), &c, "us-east-1", &body, |h| {
        h.retain(|(n, _)| n != "Authorization")
    })
    .unwrap();
    check(r, "MissingAuthenticationTokenException");
    // A date older than five minutes.
    let old = SystemTime::now() - Duration::from_secs(600);
    let headers = signed_headers_at(&k, &c, "us-east-1", &body, old);
    let v = check(
        http::request_once(k.addr(), "POST", "/", &headers, &body, T).unwrap(),
        "InvalidSignatureException",
    );
    assert!(v["message"]
        .as_str()
        .unwrap()
        .starts_with("Signature expired: "));

    assert!(k.records().is_empty());
    assert_eq!(k.stats().answered_200, 0);
}

fn signed_headers(
    k: &FakeKinesis,
    c: &Credentials,
    region: &str,
    body: &[u8],
) -> Vec<(String, String)> {
    signed_headers_at(k, c, region, body, SystemTime::now())
}

fn signed_headers_at(
    k: &FakeKinesis,
    c: &Credentials,
    region: &str,
    body: &[u8],
    at: SystemTime,
) -> Vec<(String, String)> {
    let mut headers = vec![
        ("Host".to_owned(), k.addr().to_string()),
        (
            "Content-Type".to_owned(),
            fake_kinesis::CONTENT_TYPE.to_owned(),
        ),
        (
            "X-Amz-Target".to_owned(),
            fake_kinesis::PUT_RECORDS_TARGET.to_owned(),
        ),
    ];
    let parts = support::sigv4::HttpParts {
        method: "POST",
        path: "/",
        query: "",
        headers: &headers,
        body,
    };
    headers.extend(support::sigv4::sign(parts, c, region, "kinesis", at));
    headers
}

// ---------- fake Kinesis: scripted faults ----------

#[test]
fn kinesis_throttles_chosen_records_per_record() {
    let k = kinesis();
    k.throttle_next_records(2);
    let (status, v) = send(
        &k,
        &put_body("telemetry-stream", &[(b"a", "k"), (b"b", "k"), (b"c", "k")]),
    );
    assert_eq!(status, 200);
    assert_eq!(v["FailedRecordCount"], 2);
    assert_eq!(
        v["Records"][0]["ErrorCode"],
        "ProvisionedThroughputExceededException"
    );
    assert!(v["Records"][0]["ErrorMessage"]
        .as_str()
        .unwrap()
        .starts_with("Rate exceeded for shard shardId-"));
    assert_eq!(
        v["Records"][1]["ErrorCode"],
        "ProvisionedThroughputExceededException"
    );
    assert!(v["Records"][2]["SequenceNumber"].is_string());
    assert_eq!(k.record_data(), [b"c".to_vec()]);

    k.fail_next_records_internal(1);
    let (_, v) = send(
        &k,
        &put_body("telemetry-stream", &[(b"d", "k"), (b"e", "k")]),
    );
    assert_eq!(v["Records"][0]["ErrorCode"], "InternalFailure");
    assert_eq!(v["FailedRecordCount"], 1);

    k.throttle_fraction(0.5, 42);
    let recs: Vec<(&[u8], &str)> = (0..400).map(|_| (&b"z"[..], "k")).collect();
    let (_, v) = send(&k, &put_body("telemetry-stream", &recs));
    let failed = v["FailedRecordCount"].as_u64().unwrap();
    assert!(
        (140..260).contains(&failed),
        "about half throttled, got {failed}"
    );
}

#[test]
fn kinesis_fails_drops_and_stalls_requests_on_demand() {
    let k = kinesis();
    let body = put_body("telemetry-stream", &[(b"x", "k")]);
    k.fail_next_requests(1, 500);
    let (status, v) = send(&k, &body);
    assert_eq!((status, error_type(&v)), (500, "InternalFailure"));
    k.fail_next_requests(1, 503);
    assert_eq!(send(&k, &body).0, 503);
    assert_eq!(
        send(&k, &body).0,
        200,
        "faults apply to the next N requests only"
    );

    k.drop_next_connections(1);
    let err = send_put_records(k.addr(), &creds(), "us-east-1", &body, |_| {}).unwrap_err();
    assert!(
        matches!(
            err.kind(),
            std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset
        ),
        "{err:?}"
    );

    // A stall longer than the client's timeout: the client gives up, then the
    // request completes on the server (records stored: a retry would duplicate).
    k.stall_next_requests(1, Duration::from_millis(600), AfterStall::Answer);
    let start = Instant::now();
    let mut headers = signed_headers(&k, &creds(), "us-east-1", &body);
    headers.push(("Connection".to_owned(), "close".to_owned()));
    let err = Client::new(k.addr(), Duration::from_millis(200))
        .request("POST", "/", &headers, &body)
        .unwrap_err();
    assert!(
        matches!(
            err.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
        "{err:?}"
    );
    assert!(start.elapsed() < Duration::from_millis(500));
    assert!(k.wait_until(T, |s, _| s.records_accepted == 2));
    let stats = k.stats();
    assert_eq!(
        (
            stats.dropped_connections,
            stats.stalled_requests,
            stats.requests
        ),
        (1, 1, 5)
    );

    k.set_fatal(Some(AwsError::access_denied(
        "123456789012",
        "telemetry-stream",
    )));
    let (status, v) = send(&k, &body);
    assert_eq!((status, error_type(&v)), (400, "AccessDeniedException"));
    k.set_fatal(None);

    k.outage_for(Duration::from_millis(300), 503);
    assert_eq!(send(&k, &body).0, 503);
    assert!(!k.wait_until(Duration::from_millis(350), |_, _| false));
    assert_eq!(send(&k, &body).0, 200, "the outage ends on time");

    k.set_latency(Duration::from_millis(150));
    let start = Instant::now();
    assert_eq!(send(&k, &body).0, 200);
    assert!(start.elapsed() >= Duration::from_millis(150));
}

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

/// The KPL peer (AWS's `aws-kinesis-agg` through `kpl_deaggregate.py`) agrees with the
/// Rust decoder on AWS's own vector and on a hand-built record with two keys, passes a
/// plain record through, and fails loudly where the module itself would silently hand
/// a corrupt aggregated record on as a plain one. Without the venv it fails and says
/// how to create it (as the moto tests do).
#[test]
fn kpl_python_peer_matches_the_rust_decoder_and_fails_loudly_on_corruption() {
    use support::kpl::{self, deaggregate_keyed, deaggregate_with_python};
    let (key, _, aws) = kpl::aws_vector();
    // Record 0 with key index 1 and an explicit hash key, record 1 with key index 0.
    let two_keys = kpl::wrap(
        &[
            &[
                0x0A, 0x02, b'k', b'0', 0x0A, 0x02, b'k', b'1', 0x12, 0x01, b'9',
            ][..],
            &[0x1A, 0x08, 0x08, 0x01, 0x10, 0x00, 0x1A, 0x02, b'h', b'i'],
            &[0x1A, 0x04, 0x08, 0x00, 0x1A, 0x00],
        ]
        .concat(),
    );
    let plain = br#"{"plain":"record"}"#.to_vec();
    let records = vec![
        (key.to_owned(), aws.clone()),
        ("plain-key".to_owned(), plain.clone()),
        ("outer".to_owned(), two_keys.clone()),
    ];
    let mut expected = deaggregate_keyed(&aws).unwrap();
    expected.push(("plain-key".to_owned(), plain));
    expected.extend(deaggregate_keyed(&two_keys).unwrap());
    assert_eq!(expected.len(), 6);
    assert_eq!(deaggregate_with_python(&records).unwrap(), expected);

    let mut bad_md5 = aws.clone();
    bad_md5[20] ^= 0x01;
    let no_data = kpl::wrap(&[0x0A, 0x01, b'k', 0x1A, 0x02, 0x08, 0x00]);
    let bad_index = kpl::wrap(&[0x0A, 0x01, b'k', 0x1A, 0x04, 0x08, 0x07, 0x1A, 0x00]);
    for (name, data, needle) in [
        ("bad MD5", bad_md5, "MD5 mismatch"),
        ("Record without data", no_data, "required fields missing"),
        (
            "key index outside the table",
            bad_index,
            "index out of range",
        ),
    ] {
        let err = deaggregate_with_python(&[("k".to_owned(), data)]).expect_err(name);
        assert!(err.contains(needle), "{name}: {err}");
    }
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

#[test]
fn factory_has_the_tenant_and_snap_start_shapes() {
    let mut f = EventFactory::default();
    assert_eq!(
        f.init_start_snap_start()["record"]["initializationType"],
        "snap-start"
    );
    let plain = f.platform_start("r-0");
    assert!(plain["record"].get("tenantId").is_none());
    f.tenant = Some("BlueTenant".into());
    let start = f.platform_start("r-1");
    assert_eq!(start["record"]["tenantId"], "BlueTenant");
    assert!(start["record"]["functionArn"]
        .as_str()
        .unwrap()
        .ends_with(":function:fake-function"));
    f.tenant = Some("GreenTenant".into());
    // The report and JSON lines name their own invocation's tenant, whatever comes next.
    assert_eq!(
        f.report("r-1", Duration::from_millis(3))["record"]["tenantId"],
        "BlueTenant"
    );
    assert_eq!(f.function_json("r-1")["record"]["tenantId"], "BlueTenant");
    assert!(f.function_text("r-1")["record"].is_string());
    assert!(f.runtime_done("r-1", Duration::from_millis(3))["record"]
        .get("tenantId")
        .is_none());
    let spans: Vec<Value> = f.runtime_done("r-1", Duration::from_millis(3))["record"]["spans"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].clone())
        .collect();
    assert_eq!(
        spans,
        ["responseLatency", "responseDuration", "runtimeOverhead"]
    );
    f.note_restore(Duration::from_millis(15));
    let first = f.report("r-0", Duration::from_millis(3));
    assert_eq!(first["record"]["metrics"]["restoreDurationMs"], 15.0);
    assert!(first["record"].get("tenantId").is_none());
    let second = f.report("r-0", Duration::from_millis(3));
    assert!(second["record"]["metrics"]
        .get("restoreDurationMs")
        .is_none());
}
