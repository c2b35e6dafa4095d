//! Against a real third-party Kinesis: moto's server with IAM auth on (see
//! `support/src/moto.rs`). The extension binary runs with the strict fake Runtime API and
//! `KINESIS_TELEMETRY_ENDPOINT` pointing at moto; what it delivered is read back with
//! GetShardIterator(TRIM_HORIZON) + GetRecords, signed by boto3.
//!
//! Needs the Python venv with moto (`bash .ci/python-tools.sh`, which `./build.sh test`
//! runs first, or `MOTO_PYTHON`): without it these tests fail and say so.

use std::time::{Duration, SystemTime};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use kte_test_support as support;

use support::moto::{Moto, MotoOptions};
use support::sigv4::{self, Credentials, HttpParts};
use support::{multiset_diff, telemetry_records, Lambda, LambdaOptions, ShutdownOutcome};

const WRONG_SECRET: &str = "wrongSecretKeyForTheMotoIamUser000000000";

/// Harness defaults, but talking to moto as its IAM user (long-term key, no session token).
fn lambda_for(moto: &Moto, secret: &str) -> LambdaOptions {
    LambdaOptions::default()
        .binary(support::extension_under_test!())
        .env("KINESIS_TELEMETRY_ENDPOINT", &moto.endpoint())
        .env("KINESIS_TELEMETRY_STREAM", &moto.stream)
        .env("AWS_REGION", &moto.region)
        .env("AWS_DEFAULT_REGION", &moto.region)
        .env("AWS_ACCESS_KEY_ID", &moto.key.access_key_id)
        .env("AWS_SECRET_ACCESS_KEY", secret)
        .unset("AWS_SESSION_TOKEN")
        // moto is a Python server whose first answers take longer than the 60 ms added-time
        // budget: these tests check the records, not the budget (no cut, no duplicates).
        .env("KINESIS_TELEMETRY_MAX_ADDED_MS", "3000")
}

fn assert_clean_exit(lambda: &Lambda, out: &ShutdownOutcome) {
    assert!(
        out.exited_ok_before_deadline(),
        "extension did not exit 0 before deadlineMs: {out:?}\n{}",
        lambda.log_text()
    );
}

/// The extension's shutdown summary line.
fn summary_line(lambda: &Lambda) -> String {
    lambda
        .log()
        .into_iter()
        .find(|l| l.contains("shutdown (") && l.contains("events received="))
        .unwrap_or_else(|| panic!("no shutdown summary line\n{}", lambda.log_text()))
}

/// One round trip through moto in a record format: every event Lambda sent comes back
/// from GetRecords, decoded as a consumer would, byte for byte (NDJSON turns the line breaks
/// between JSON tokens into spaces), each naming the function with its own eventId.
/// Returns the records read back (partition key, data).
fn round_trip(format: &str) -> (Lambda, Vec<(String, Vec<u8>)>) {
    let moto = Moto::start(MotoOptions::default());
    let mut lambda = Lambda::start(
        lambda_for(&moto, &moto.key.secret_access_key)
            .env("KINESIS_TELEMETRY_RECORD_FORMAT", format),
    );
    lambda.invoke(3);
    // Bytes a re-serializing forwarder would change (spacing, escapes, number spelling).
    let odd = lambda.events.oddly_formatted();
    lambda.push_raw(&odd);
    let out = lambda.shutdown();
    assert_clean_exit(&lambda, &out);

    let records: Vec<(String, Vec<u8>)> = moto
        .read_records()
        .into_iter()
        .map(|r| (r.partition_key, r.data))
        .collect();
    let events =
        telemetry_records::events_of(records.iter().map(|(k, d)| (k.as_str(), d.as_slice())))
            .unwrap_or_else(|e| panic!("{format}: {e}"));
    let delivered: Vec<String> = events.iter().map(|(_, e)| e.original.clone()).collect();
    let diff = multiset_diff(&lambda.expected(), &delivered);
    assert!(
        diff.is_empty(),
        "{format}: moto's stream differs from what Lambda sent:\n{}\n{}",
        diff.join("\n"),
        lambda.log_text()
    );
    let mut ids = std::collections::HashSet::new();
    for (key, e) in &events {
        assert!(!key.is_empty());
        let source = e.source.as_ref().expect("enriched");
        assert_eq!(source["function"], "fake-function", "{source}");
        assert!(ids.insert(telemetry_records::event_id(source).unwrap().to_string()));
    }
    assert!(lambda.pushed().len() >= 15, "{}", lambda.pushed().len());
    assert!(
        lambda.kinesis.record_data().is_empty(),
        "records went to the fake Kinesis, not to moto"
    );
    let n = lambda.pushed().len() as u64;
    assert_eq!(
        lambda.summary_count("received"),
        Some(n),
        "{}",
        summary_line(&lambda)
    );
    assert_eq!(
        lambda.summary_count("delivered"),
        Some(n),
        "{}",
        summary_line(&lambda)
    );
    assert_eq!(lambda.summary_count("dropped"), Some(0));
    assert_eq!(moto.requests_answered(403), 0, "{}", moto.log_text());
    (lambda, records)
}

#[test]
fn packed_ndjson_records_round_trip_through_moto() {
    let (lambda, records) = round_trip("ndjson");
    assert!(
        records.len() < lambda.pushed().len() / 2,
        "packed: {} records for {} events",
        records.len(),
        lambda.pushed().len()
    );
}

#[test]
fn one_event_per_record_round_trips_through_moto_byte_identical() {
    let (lambda, records) = round_trip("event");
    assert_eq!(records.len(), lambda.pushed().len());
}

/// KPL records from moto, de-aggregated by AWS's own module (aws-kinesis-agg) as well as by
/// the test support's decoder: every event back, byte for byte, one key per record.
#[test]
fn kpl_records_round_trip_through_moto_and_aws_deaggregation() {
    let (lambda, records) = round_trip("kpl");
    assert!(records.iter().all(|(_, d)| support::kpl::has_magic(d)));
    let user_records = support::kpl::deaggregate_with_python(&records)
        .unwrap_or_else(|e| panic!("aws-kinesis-agg: {e}"));
    let mut by_aws: Vec<String> = user_records
        .iter()
        .map(|(_, data)| {
            let text = String::from_utf8(data.clone()).unwrap();
            telemetry_records::split_enrichment(&text).unwrap().original
        })
        .collect();
    by_aws.sort();
    let mut expected = lambda.expected();
    expected.sort();
    assert_eq!(by_aws, expected, "aws-kinesis-agg gives back every event");
    // KCL drops sub-records whose key hashes elsewhere: one key per aggregated record.
    for (key, data) in &records {
        for (inner, _) in support::kpl::deaggregate_keyed(data).unwrap() {
            assert_eq!(&inner, key);
        }
    }
}

#[test]
fn extension_with_a_wrong_secret_reports_it_drops_and_keeps_serving() {
    let moto = Moto::start(MotoOptions::default());
    // The server itself refuses that secret (signed by botocore, not by us) and takes
    // the right one: whatever the extension does below is its answer to a real 403.
    let refused = moto.put_with_boto3(&moto.key.access_key_id, WRONG_SECRET, "pk", b"probe");
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert!(
        refused.body.contains("SignatureDoesNotMatch"),
        "{}",
        refused.body
    );

    let refused_before = moto.requests_answered(403);

    let mut lambda = Lambda::start(lambda_for(&moto, WRONG_SECRET));
    // `invoke` asserts that the extension comes back to /event/next after each INVOKE.
    lambda.invoke(2);
    let out = lambda.shutdown();
    assert_clean_exit(&lambda, &out);

    assert!(
        moto.requests_answered(403) > refused_before,
        "the extension's PutRecords never reached moto as refused requests:\n{}\n{}",
        moto.log_text(),
        lambda.log_text()
    );
    let log = lambda.log();
    let complaint = log
        .iter()
        .find(|l| l.contains("SignatureDoesNotMatch"))
        .unwrap_or_else(|| {
            panic!(
                "no log line names the signature error\n{}",
                lambda.log_text()
            )
        });
    assert!(
        complaint.to_ascii_lowercase().contains("secret access key")
            || complaint.contains("AWS_SECRET_ACCESS_KEY"),
        "the signature complaint does not point at the secret: {complaint}"
    );
    assert!(
        !log.iter().any(|l| l.contains(WRONG_SECRET)),
        "the secret was logged\n{}",
        lambda.log_text()
    );
    let n = lambda.pushed().len() as u64;
    let summary = summary_line(&lambda);
    assert_eq!(lambda.summary_count("received"), Some(n), "{summary}");
    assert_eq!(lambda.summary_count("delivered"), Some(0), "{summary}");
    assert_eq!(
        lambda.summary_count("dropped"),
        Some(n),
        "drops not counted in: {summary}"
    );

    let ok = moto.put_with_boto3(
        &moto.key.access_key_id,
        &moto.key.secret_access_key,
        "pk",
        b"control",
    );
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(moto.read_data(), vec![b"control".to_vec()]);
}

/// The fakes' own SigV4 signer (which the fake Kinesis verifies with) agrees with
/// moto's botocore-based check, and moto tells a wrong secret apart.
#[test]
fn moto_accepts_the_fakes_sigv4_and_refuses_a_wrong_secret() {
    let moto = Moto::start(MotoOptions::default());
    let data = "{\"type\":\"function\",\"record\":\"caf\u{e9} \u{1F680} \\u00e9\"}\n";
    let good = Credentials::new(&moto.key.access_key_id, &moto.key.secret_access_key, None);
    let accepted = signed_put_records(&moto, &good, "pk-1", data.as_bytes());
    assert_eq!(accepted.0, 200, "{}", accepted.1);
    let answer: serde_json::Value = serde_json::from_str(&accepted.1).expect("JSON answer");
    assert_eq!(answer["FailedRecordCount"], 0, "{answer}");

    let bad = Credentials::new(&moto.key.access_key_id, WRONG_SECRET, None);
    let refused = signed_put_records(&moto, &bad, "pk-2", b"never stored");
    assert_eq!(refused.0, 403, "{}", refused.1);
    assert!(refused.1.contains("SignatureDoesNotMatch"), "{}", refused.1);

    let records = moto.read_records();
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0].data, data.as_bytes());
    assert_eq!(records[0].partition_key, "pk-1");
}

/// One PutRecords signed with `support::sigv4`; returns status and body.
fn signed_put_records(moto: &Moto, creds: &Credentials, key: &str, data: &[u8]) -> (u16, String) {
    let body = serde_json::json!({
        "StreamName": moto.stream,
        "Records": [{ "Data": STANDARD.encode(data), "PartitionKey": key }],
    })
    .to_string();
    let headers = vec![
        ("Host".to_owned(), format!("127.0.0.1:{}", moto.port())),
        (
            "Content-Type".to_owned(),
            "application/x-amz-json-1.1".to_owned(),
        ),
        (
            "X-Amz-Target".to_owned(),
            "Kinesis_20131202.PutRecords".to_owned(),
        ),
    ];
    let parts = HttpParts {
        method: "POST",
        path: "/",
        query: "",
        headers: &headers,
        body: body.as_bytes(),
    };
    let added = sigv4::sign(parts, creds, &moto.region, "kinesis", SystemTime::now());
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into();
    let mut req = agent.post(format!("{}/", moto.endpoint()));
    // ureq writes Host itself, from the URL: the same value as signed.
    for (name, value) in headers.iter().chain(added.iter()) {
        if !name.eq_ignore_ascii_case("host") {
            req = req.header(name, value);
        }
    }
    let mut resp = req.send(body.as_bytes()).expect("moto answers");
    let status = resp.status().as_u16();
    (status, resp.body_mut().read_to_string().unwrap_or_default())
}
