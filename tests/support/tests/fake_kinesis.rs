//! The fake Kinesis over the wire: it must reject what AWS rejects, with AWS's shapes
//! (`__type`, message, status), verify SigV4 as AWS does, and its fault scripts
//! (throttling, failures, dropped and stalled requests) must do what they say. A fake that
//! accepted anything would make every black-box test of the extension meaningless.

use std::time::{Duration, Instant, SystemTime};

use base64::Engine as _;
use kte_test_support as support;
use serde_json::{json, Value};

use support::clock;
use support::fake_kinesis::{
    self, send_put_records, AfterStall, AwsError, FakeKinesis, KinesisConfig,
};
use support::http::{self, Client};
use support::sigv4::Credentials;

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
