//! SnapStart's credentials, black box: Lambda gives a SnapStart function (and its extensions)
//! no access-key variables, only the container credentials endpoint
//! (`AWS_CONTAINER_CREDENTIALS_FULL_URI` and its header token). The extension must fetch its
//! credentials there, only once the function is invoked (never during init: the snapshot is
//! taken after it), sign with them, replace them before they expire, and ride out an endpoint
//! that refuses it or cannot be reached without costing the function time, saying so in one
//! line that names the endpoint and never the token or a key.
//!
//! The fake endpoint (`support::fake_credentials`) hands each set it issues to the fake
//! Kinesis, which accepts a signature only with a set still valid (no other keys are
//! configured), so "delivered" means "signed with the fetched keys".

use std::time::Duration;

use kte_test_support as support;

use support::fake_credentials::CredentialsConfig;
use support::fake_runtime::EventKind;
use support::{Lambda, LambdaOptions};

const T: Duration = Duration::from_secs(10);

/// Far below the endpoint's own faults (a connect that hangs forever), far above the budget
/// (60 ms after runtimeDone, which comes 25 ms after the function's lines).
const RELEASED_WITHIN: Duration = Duration::from_millis(800);

/// A SnapStart-shaped environment: container credentials only, a Kinesis that knows no other
/// keys.
fn snap_start(config: CredentialsConfig) -> LambdaOptions {
    let mut o = LambdaOptions::default()
        .binary(support::extension_under_test!())
        .env("KINESIS_TELEMETRY_BUFFERING_TIMEOUT_MS", "25")
        .container_credentials(config);
    o.runtime.snap_start = true;
    o.kinesis.credentials = Vec::new();
    o
}

/// The extension's own added-time budget (the harness otherwise widens it).
fn own_budget(o: LambdaOptions) -> LambdaOptions {
    o.unset("KINESIS_TELEMETRY_MAX_ADDED_MS")
}

fn endpoint(l: &Lambda) -> &support::fake_credentials::FakeCredentials {
    l.credentials.as_ref().expect("a credentials endpoint")
}

/// Every request Kinesis answered, with the key it was signed with: all issued, all 200.
fn assert_signed_with_fetched_keys(l: &Lambda) -> Vec<String> {
    let issued: Vec<String> = endpoint(l)
        .issued()
        .iter()
        .map(|i| i.credentials.access_key_id.clone())
        .collect();
    let requests = l.kinesis.requests();
    assert!(!requests.is_empty());
    let mut used = Vec::new();
    for r in &requests {
        let key = r.access_key.clone().unwrap_or_default();
        assert!(
            issued.contains(&key),
            "{r:?} not signed with an issued key {issued:?}"
        );
        assert!(
            matches!(
                r.outcome,
                support::fake_kinesis::Outcome::Answered200 { .. }
            ),
            "{r:?}\n{}",
            l.log_text()
        );
        if !used.contains(&key) {
            used.push(key);
        }
    }
    used
}

fn assert_clean_exit(l: &Lambda, out: &support::ShutdownOutcome) {
    assert!(out.exited_ok_before_deadline(), "{out:?}\n{}", l.log_text());
}

/// Nothing of any secret in the log: the endpoint's token, the keys it issued.
fn assert_no_secret_in_the_log(l: &Lambda, token: &str) {
    let log = l.log_text();
    let mut secrets = vec![token.to_owned()];
    for i in endpoint(l).issued() {
        secrets.push(i.credentials.secret_access_key.clone());
        secrets.extend(i.credentials.session_token.clone());
    }
    for s in &secrets {
        assert!(
            !log.contains(&s[..12]),
            "a piece of a secret in the log: {}",
            &s[..4]
        );
    }
}

/// INVOKE → the extension's next `/event/next`, for each invocation.
fn released_after(l: &Lambda) -> Vec<Duration> {
    l.runtime
        .time_to_next_after_each_event()
        .into_iter()
        .filter(|(kind, _)| *kind == EventKind::Invoke)
        .map(|(_, back)| back.expect("the extension came back"))
        .collect()
}

#[test]
fn a_snap_start_function_with_only_container_credentials_delivers_every_event() {
    let mut l = Lambda::start(snap_start(CredentialsConfig::default()));
    // Init: telemetry arrives, nothing may be fetched (the snapshot is taken after init).
    let start = l.events.init_start_snap_start();
    l.push(&start);
    assert!(l.runtime.wait_telemetry_idle(T));
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        endpoint(&l).fetches().is_empty(),
        "fetched during init: {:?}",
        endpoint(&l).fetches()
    );
    l.invoke(4);
    let out = l.shutdown();
    assert_clean_exit(&l, &out);
    l.assert_each_event_delivered_once();
    assert_eq!(
        l.summary_count("dropped"),
        Some(0),
        "{:?}",
        l.summary_line()
    );
    let used = assert_signed_with_fetched_keys(&l);
    assert_eq!(used.len(), 1, "{used:?}");
    // Fetched once and kept: not once per request.
    let fetches = endpoint(&l).fetches();
    assert_eq!(fetches.len(), 1, "{fetches:?}");
    assert!(l.kinesis.requests().len() > 1);
    assert!(
        l.log_lines_with("credentials missing").is_empty(),
        "{}",
        l.log_text()
    );
    let token = endpoint(&l).token();
    assert_no_secret_in_the_log(&l, &token);
}

#[test]
fn credentials_about_to_expire_are_replaced_and_delivery_goes_on() {
    // Each set lives 5 min 2 s: the extension must replace it once it expires within 5
    // minutes (1 to 2 s after the fetch); the endpoint hands out a new one from 5 min 1 s on.
    let config = CredentialsConfig {
        lifetime: Duration::from_secs(5 * 60 + 2),
        rotate_within: Duration::from_secs(5 * 60 + 1),
        ..CredentialsConfig::default()
    };
    let mut l = Lambda::start(snap_start(config).env("KINESIS_TELEMETRY_FRESHNESS_MS", "0"));
    for _ in 0..16 {
        l.invoke(1);
        std::thread::sleep(Duration::from_millis(250));
    }
    let out = l.shutdown();
    assert_clean_exit(&l, &out);
    l.assert_each_event_delivered_once();
    assert_eq!(
        l.summary_count("dropped"),
        Some(0),
        "{:?}",
        l.summary_line()
    );
    let used = assert_signed_with_fetched_keys(&l);
    assert!(
        used.len() >= 2,
        "the credentials were not replaced before they expired: {used:?}\n{:?}\n{}",
        endpoint(&l).fetches(),
        l.log_text()
    );
    let token = endpoint(&l).token();
    assert_no_secret_in_the_log(&l, &token);
}

/// Runs six invocations with the endpoint failing as `break_it` made it, checks that each is
/// released at the function's own speed with nothing in flight to the endpoint at
/// `/event/next`, that the log says so once, naming the endpoint's host and `reason`; then
/// heals it and checks that everything is delivered.
fn rides_out(l: &mut Lambda, reason: &str, heal: impl FnOnce(&Lambda)) {
    let mut in_flight = Vec::new();
    for _ in 0..6 {
        l.invoke(1);
        in_flight.push(endpoint(l).in_flight().expect("/proc/net/tcp is readable"));
    }
    let released = released_after(l);
    assert!(
        released.iter().all(|d| *d < RELEASED_WITHIN),
        "invocations released after {released:?}\n{}",
        l.log_text()
    );
    assert!(
        in_flight.iter().all(|f| !f.any()),
        "in flight to the credentials endpoint at /event/next: {in_flight:?}\n{}",
        l.log_text()
    );
    let lines = l.log_lines_with("credentials cannot be fetched");
    assert_eq!(lines.len(), 1, "one line per episode\n{}", l.log_text());
    let host = endpoint(l).addr().to_string();
    assert!(
        lines[0].contains("AWS_CONTAINER_CREDENTIALS_FULL_URI")
            && lines[0].contains(&host)
            && lines[0].contains(reason),
        "{}",
        lines[0]
    );
    assert!(l.kinesis.records().is_empty(), "nothing could be signed");
    heal(l);
    l.invoke(2);
    let out = l.shutdown();
    assert_clean_exit(l, &out);
    l.assert_each_event_delivered_once();
    assert_eq!(
        l.summary_count("dropped"),
        Some(0),
        "{:?}",
        l.summary_line()
    );
    assert_signed_with_fetched_keys(l);
}

#[test]
fn a_wrong_token_costs_the_function_nothing_and_delivery_resumes_once_it_is_right() {
    let path = std::env::temp_dir().join(format!("kte-creds-token-{}", std::process::id()));
    std::fs::write(&path, "not-the-token\n").unwrap();
    let mut l = Lambda::start(
        own_budget(snap_start(CredentialsConfig::default()))
            .unset("AWS_CONTAINER_AUTHORIZATION_TOKEN")
            .env(
                "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
                path.to_str().unwrap(),
            ),
    );
    let good = endpoint(&l).token();
    rides_out(&mut l, "HTTP 403", |_| {
        // The file is read at each fetch: a rotated token is picked up.
        std::fs::write(&path, format!("{good}\n")).unwrap();
    });
    assert!(endpoint(&l).fetches().iter().any(|f| f.status == 403));
    assert_no_secret_in_the_log(&l, &good);
    assert!(!l.log_text().contains("not-the-token"));
    let _ = std::fs::remove_file(&path);
}

#[test]
fn an_unreachable_endpoint_costs_the_function_nothing_and_delivery_resumes_once_it_answers() {
    let mut l = Lambda::start(own_budget(snap_start(CredentialsConfig::default())));
    endpoint(&l).hang_connects().expect("connects hang");
    rides_out(&mut l, "timed out", |l| endpoint(l).accept_connects());
    let token = endpoint(&l).token();
    assert_no_secret_in_the_log(&l, &token);
}
