use super::*;

fn at(secs: u64, nanos: u32) -> SystemTime {
    UNIX_EPOCH + Duration::new(secs, nanos)
}

#[test]
fn expirations_parse_to_the_instant_they_name() {
    for (text, want) in [
        ("1970-01-01T00:00:00Z", at(0, 0)),
        ("2026-12-05T10:00:00Z", at(1_796_464_800, 0)),
        ("2000-02-29T23:59:59Z", at(951_868_799, 0)),
        ("2024-12-31T23:59:59Z", at(1_735_689_599, 0)),
        ("2015-08-30T12:36:00.5Z", at(1_440_938_160, 500_000_000)),
        ("2015-08-30T12:36:00.123Z", at(1_440_938_160, 123_000_000)),
        (
            "2015-08-30T12:36:00.123456789Z",
            at(1_440_938_160, 123_456_789),
        ),
    ] {
        assert_eq!(parse_expiration(text), Ok(want), "{text}");
    }
}

#[test]
fn anything_else_is_refused_with_what_was_expected() {
    for text in [
        "",
        "2026-12-05",
        "2026-12-05T10:00:00",
        "2026-12-05T10:00:00+00:00",
        "2026-12-05 10:00:00Z",
        "2026-12-05T10:00Z",
        "2026-13-05T10:00:00Z",
        "2026-00-05T10:00:00Z",
        "2026-02-29T10:00:00Z",
        "2026-04-31T10:00:00Z",
        "2026-12-00T10:00:00Z",
        "2026-12-05T24:00:00Z",
        "2026-12-05T10:60:00Z",
        "2026-12-05T10:00:60Z",
        "2026-12-05T10:00:00.Z",
        "2026-12-05T10:00:00.1234567890Z",
        "2026-12-05T10:00:00.12aZ",
        "1969-12-31T23:59:59Z",
        "+026-12-05T10:00:00Z",
        "2026-1a-05T10:00:00Z",
        "２026-12-05T10:00:00Z",
        "2026-12-05T10:00:00zZ",
    ] {
        let err = parse_expiration(text).expect_err(text);
        assert!(err.contains("YYYY-MM-DDTHH:MM:SSZ"), "{text}: {err}");
    }
}

#[test]
fn a_refresh_is_due_within_five_minutes_of_the_expiration() {
    let now = at(1_000_000, 0);
    let min = |m: u64| Duration::from_secs(60 * m);
    for (expiration, due) in [
        (now + min(60), false),
        (now + min(5) + Duration::from_secs(1), false),
        (now + min(5), true),
        (now + min(1), true),
        (now, true),
        (now - min(1), true),
    ] {
        assert_eq!(refresh_due(expiration, now), due, "{expiration:?}");
    }
}

#[test]
fn the_uri_is_checked_as_the_sdks_check_it() {
    for ok in [
        "http://127.0.0.1:9001/2021-04-23/credentials",
        "http://127.1.2.3/creds",
        "http://localhost:8080/creds",
        "http://LOCALHOST/creds",
        "http://[::1]:9001/creds",
        "http://169.254.170.2/v2/credentials/abc",
        "http://169.254.170.23/v1/credentials",
        "http://[fd00:ec2::23]/v1/credentials",
        "https://creds.example.com/get",
        "https://10.1.2.3/get",
    ] {
        assert_eq!(check_container_uri(ok).as_deref(), Ok(ok), "{ok}");
    }
    for (bad, why) in [
        ("http://10.0.0.1/creds", "loopback"),
        ("http://169.254.169.254/latest", "loopback"),
        ("http://creds.example.com/get", "loopback"),
        ("http://localhost.example.com/get", "loopback"),
        ("http://[fd00:ec2::24]/get", "loopback"),
        ("ftp://127.0.0.1/creds", "http://"),
        ("127.0.0.1:9001/creds", ""),
        ("http://u:p@127.0.0.1/creds", "credentials in the URI"),
        ("", ""),
    ] {
        let err = check_container_uri(bad).expect_err(bad);
        assert!(err.contains(why), "{bad}: {err}");
    }
}

const ANSWER: &str = r#"{"AccessKeyId":"ASIAFETCHED","SecretAccessKey":"fetched-secret","Token":"fetched-token","Expiration":"2026-12-05T10:00:00Z"}"#;

#[test]
fn an_answer_gives_credentials_and_their_expiration() {
    let (c, expiration) = parse_answer(ANSWER.as_bytes()).unwrap();
    assert_eq!(c.access_key_id, "ASIAFETCHED");
    assert_eq!(c.secret_access_key, "fetched-secret");
    assert_eq!(c.session_token.as_deref(), Some("fetched-token"));
    assert_eq!(expiration, at(1_796_464_800, 0));
}

#[test]
fn a_bad_answer_is_refused_without_quoting_it() {
    for body in [
        "not json",
        r#"{"AccessKeyId":"ASIAFETCHED","Token":"fetched-token","Expiration":"2026-12-05T10:00:00Z"}"#,
        r#"{"AccessKeyId":"ASIAFETCHED","SecretAccessKey":"fetched-secret","Token":"fetched-token"}"#,
        r#"{"AccessKeyId":"","SecretAccessKey":"fetched-secret","Expiration":"2026-12-05T10:00:00Z"}"#,
        r#"{"AccessKeyId":"ASIAFETCHED","SecretAccessKey":"fetched-secret","Token":"fetched-token","Expiration":"tomorrow"}"#,
        r#"{"code":"ErrorCode","message":"fetched-secret fetched-token"}"#,
    ] {
        let err = parse_answer(body.as_bytes()).expect_err(body);
        assert!(
            !err.contains("fetched-secret") && !err.contains("fetched-token"),
            "{err}"
        );
    }
}

fn endpoint(token: AuthToken) -> ContainerEndpoint {
    ContainerEndpoint {
        uri: "http://127.0.0.1:9001/2021-04-23/credentials".into(),
        token,
    }
}

#[test]
fn the_token_file_is_read_at_each_fetch_and_its_line_break_dropped() {
    let path = std::env::temp_dir().join(format!("kte-token-{}", std::process::id()));
    std::fs::write(&path, "first-token\n").unwrap();
    let e = endpoint(AuthToken::File(path.clone()));
    assert_eq!(e.token(), Ok(Some("first-token".to_owned())));
    std::fs::write(&path, "rotated-token").unwrap();
    assert_eq!(e.token(), Ok(Some("rotated-token".to_owned())));
    std::fs::write(&path, "two\nlines").unwrap();
    let err = e.token().unwrap_err();
    assert!(!err.contains("two"), "{err}");
    std::fs::remove_file(&path).unwrap();
    let err = e.token().unwrap_err();
    assert!(
        err.contains(TOKEN_FILE_VAR) && err.contains(&*path.to_string_lossy()),
        "{err}"
    );
    assert_eq!(endpoint(AuthToken::None).token(), Ok(None));
}

#[test]
fn debug_output_never_shows_a_token_or_secret() {
    let e = endpoint(AuthToken::Value("the-header-token".into()));
    let keys = Keys::new(&CredentialSource::Container(e.clone()), "us-east-1").unwrap();
    let (c, expiration) = parse_answer(ANSWER.as_bytes()).unwrap();
    keys.store(&c, expiration);
    let dbg = format!(
        "{e:?} {keys:?} {c:?} {:?}",
        CredentialSource::Container(e.clone())
    );
    for secret in ["the-header-token", "fetched-secret", "fetched-token"] {
        assert!(!dbg.contains(secret), "{dbg}");
    }
    assert_eq!(e.host(), "127.0.0.1:9001");
}

#[test]
fn fetched_keys_serve_until_due_and_a_restore_forgets_them() {
    let keys = Keys::new(
        &CredentialSource::Container(endpoint(AuthToken::None)),
        "eu-west-1",
    )
    .unwrap();
    let now = SystemTime::now();
    assert!(keys.ready(now).is_none(), "nothing fetched yet");
    let (c, _) = parse_answer(ANSWER.as_bytes()).unwrap();
    keys.store(&c, now + Duration::from_secs(3600));
    assert!(keys.ready(now).is_some());
    assert!(
        keys.ready(now + Duration::from_secs(3600 - 300)).is_none(),
        "due"
    );
    assert!(keys.secrets().contains(&"fetched-secret".to_owned()));
    keys.forget();
    assert!(keys.ready(now).is_none(), "forgotten at the restore");

    let fixed = CredentialSource::Environment(c);
    let keys = Keys::new(&fixed, "eu-west-1").unwrap();
    keys.forget();
    assert!(keys.ready(now).is_some(), "the environment's keys stay");
    assert!(keys.endpoint().is_none());
}
