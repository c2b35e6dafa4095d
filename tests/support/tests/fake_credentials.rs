//! The fake container credentials endpoint over the wire: it must refuse what the real one
//! refuses (no token, a wrong token, another path or method), serve credentials in the
//! shape the SDKs read, rotate them, and hand them to the fake Kinesis, which must accept a
//! signature made with them until they expire and refuse it after. A fake that served anyone
//! or a Kinesis that accepted any key would make the extension's SnapStart tests meaningless.

use std::time::{Duration, SystemTime};

use kte_test_support as support;
use serde_json::{json, Value};

use support::fake_credentials::{iso8601, CredentialsConfig, FakeCredentials};
use support::fake_kinesis::{send_put_records, FakeKinesis, KinesisConfig};
use support::http::{self, ClientResponse};
use support::sigv4::Credentials;

const T: Duration = Duration::from_secs(10);

fn get(fake: &FakeCredentials, path: &str, token: Option<&str>) -> ClientResponse {
    let headers: Vec<(String, String)> = token
        .map(|t| vec![("Authorization".to_owned(), t.to_owned())])
        .unwrap_or_default();
    http::request_once(fake.addr(), "GET", path, &headers, b"", T).expect("the fake answers")
}

fn fetch(fake: &FakeCredentials) -> (Credentials, String) {
    let token = fake.token();
    let r = get(fake, &path(fake), Some(&token));
    assert_eq!(r.status, 200, "{}", r.body_text());
    let v = r.json().expect("a JSON answer");
    let s = |k: &str| {
        v[k].as_str()
            .unwrap_or_else(|| panic!("{k} in {v}"))
            .to_owned()
    };
    let c = Credentials::new(&s("AccessKeyId"), &s("SecretAccessKey"), Some(&s("Token")));
    (c, s("Expiration"))
}

fn path(fake: &FakeCredentials) -> String {
    let uri = fake.uri();
    uri[uri.find("/2").expect("a path")..].to_owned()
}

fn fake(config: CredentialsConfig, kinesis: Option<&FakeKinesis>) -> FakeCredentials {
    FakeCredentials::start(config, kinesis.map(|k| k.handle())).unwrap()
}

#[test]
fn only_the_exact_token_gets_credentials() {
    let f = fake(CredentialsConfig::default(), None);
    let p = path(&f);
    let right = f.token();
    for (path, method, token, status) in [
        (p.as_str(), "GET", None, 401),
        (p.as_str(), "GET", Some("wrong-token"), 403),
        (p.as_str(), "GET", Some(&right[1..]), 403),
        ("/other", "GET", Some(right.as_str()), 404),
    ] {
        let headers: Vec<(String, String)> = token
            .map(|t| vec![("Authorization".to_owned(), t.to_owned())])
            .unwrap_or_default();
        let r = http::request_once(f.addr(), method, path, &headers, b"", T).unwrap();
        assert_eq!(r.status, status, "{path} {token:?}: {}", r.body_text());
        let body = r.json().expect("a JSON error");
        assert!(
            body["code"].is_string() && body.get("AccessKeyId").is_none(),
            "{body}"
        );
    }
    let r = http::request_once(f.addr(), "POST", &p, &[], b"", T).unwrap();
    assert_eq!(r.status, 405);
    assert!(f.issued().is_empty(), "nothing issued to a refused request");
    let (c, expiration) = fetch(&f);
    assert!(c.access_key_id.starts_with("ASIA"), "{c:?}");
    let issued = f.issued();
    assert_eq!(issued.len(), 1);
    assert_eq!(issued[0].credentials, c);
    assert_eq!(expiration, iso8601(issued[0].expiration));
    let statuses: Vec<u16> = f.fetches().iter().map(|x| x.status).collect();
    assert_eq!(statuses, [401, 403, 403, 404, 405, 200]);
}

#[test]
fn the_expiration_is_iso_8601_utc_in_whole_seconds_a_lifetime_away() {
    let f = fake(CredentialsConfig::default(), None);
    let before = SystemTime::now();
    let (_, expiration) = fetch(&f);
    let after = SystemTime::now();
    assert_eq!(
        expiration.len(),
        "2026-12-05T10:00:00Z".len(),
        "{expiration}"
    );
    assert!(expiration.ends_with('Z') && expiration.as_bytes()[10] == b'T');
    let e = f.issued()[0].expiration;
    let lifetime = CredentialsConfig::default().lifetime;
    assert!(e + Duration::from_secs(1) > before + lifetime && e <= after + lifetime);
    assert_eq!(
        iso8601(SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_464_800)),
        "2026-12-05T10:00:00Z"
    );
}

#[test]
fn credentials_rotate_near_their_expiration_and_on_demand() {
    let f = fake(
        CredentialsConfig {
            lifetime: Duration::from_secs(60),
            rotate_within: Duration::from_secs(30),
            ..CredentialsConfig::default()
        },
        None,
    );
    let (a, _) = fetch(&f);
    let (b, _) = fetch(&f);
    assert_eq!(a, b, "the same set while it has long to live");
    let rotated = f.rotate();
    let (c, _) = fetch(&f);
    assert_eq!(c, rotated.credentials);
    assert_ne!(c.access_key_id, a.access_key_id);
    assert_ne!(c.secret_access_key, a.secret_access_key);

    let short = fake(
        CredentialsConfig {
            lifetime: Duration::from_secs(60),
            rotate_within: Duration::from_secs(61),
            ..CredentialsConfig::default()
        },
        None,
    );
    let (x, _) = fetch(&short);
    let (y, _) = fetch(&short);
    assert_ne!(x, y, "a set with less than rotate_within left is replaced");
}

#[test]
fn scripted_faults_refuse_until_healed() {
    let f = fake(CredentialsConfig::default(), None);
    let old = f.token();
    f.set_token("rotated-token");
    assert_eq!(get(&f, &path(&f), Some(&old)).status, 403);
    assert_eq!(get(&f, &path(&f), Some("rotated-token")).status, 200);
    f.fail_with(Some(500));
    assert_eq!(get(&f, &path(&f), Some("rotated-token")).status, 500);
    f.fail_with(None);
    assert_eq!(get(&f, &path(&f), Some("rotated-token")).status, 200);
}

#[test]
fn the_fake_kinesis_accepts_issued_credentials_until_they_expire() {
    let k = FakeKinesis::start(KinesisConfig {
        credentials: Vec::new(),
        ..KinesisConfig::default()
    })
    .unwrap();
    let body = json!({"StreamName": "telemetry-stream", "Records": [{"Data": "aGk=", "PartitionKey": "k"}]})
        .to_string()
        .into_bytes();
    let put = |c: &Credentials| -> (u16, Value) {
        let r = send_put_records(k.addr(), c, "us-east-1", &body, |_| {}).unwrap();
        (r.status, r.json().unwrap_or(Value::Null))
    };
    let f = fake(
        CredentialsConfig {
            lifetime: Duration::from_secs(2),
            rotate_within: Duration::ZERO,
            ..CredentialsConfig::default()
        },
        Some(&k),
    );
    let stranger = Credentials::new("ASIANOTISSUED0000001", "some/secret", Some("tok"));
    let (status, answer) = put(&stranger);
    assert_eq!(
        (status, answer["__type"].as_str()),
        (400, Some("UnrecognizedClientException"))
    );
    let (c, _) = fetch(&f);
    assert_eq!(put(&c).0, 200, "signed with what the endpoint handed out");
    let wrong_secret = Credentials::new(
        &c.access_key_id,
        "not/the/secret",
        c.session_token.as_deref(),
    );
    assert_eq!(put(&wrong_secret).1["__type"], "InvalidSignatureException");
    let expiration = f.issued()[0].expiration;
    while SystemTime::now() <= expiration {
        std::thread::sleep(Duration::from_millis(50));
    }
    let (status, answer) = put(&c);
    assert_eq!(
        (status, answer["__type"].as_str()),
        (400, Some("ExpiredTokenException")),
        "{answer}"
    );
    let (fresh, _) = fetch(&f);
    assert_ne!(fresh, c);
    assert_eq!(put(&fresh).0, 200);
}
