use super::*;
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};
use std::time::{Duration, UNIX_EPOCH};

// The AWS SigV4 test suite's fixed inputs
// (docs.aws.amazon.com/general/latest/gr/signature-v4-test-suite.html).
const AKID: &str = "AKIDEXAMPLE";
const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
const SUITE_TOKEN: &str = "AQoDYXdzEPT//////////wEXAMPLEtc764bNrC9SAPBSM22wDOk4x4HIZ8j4FZTwdQWLWsKWHGBuFqwAeMicRXmxfpSPfIeoIYRqTflfKD8YUuwthAx7mSEI/qkPpKPi/kMcGdQrmGdeehM4IC1NtBmUpp2wUE8phUZampKsburEDy0KPkyQDYwT7WZ0wq5VSXDvp75YU9HFvlRd8Tx6q6fE8YQcHNVXAkiY9q6d+xo0rKwT38xVqr7ZD0u0iPPkUL64lIZbqBAz+scqKmlzm8FDrypNC9Yjc8fPOLn9FX9KSYvKTr4rvx3iSIlTJabIQwj2ICCR/oLxBA==";

/// 20150830T123600Z
fn suite_time() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_440_938_160)
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn suite_sign(
    method: &str,
    token: Option<&str>,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Vec<(String, String)> {
    Signer::new(AKID, SECRET, token, "us-east-1", "service")
        .sign(
            method,
            "https://example.amazonaws.com/",
            headers,
            body,
            suite_time(),
        )
        .unwrap()
}

#[test]
fn get_vanilla_matches_the_test_suite() {
    let h = suite_sign("GET", None, &[], b"");
    assert_eq!(
        header(&h, "authorization").unwrap(),
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
             SignedHeaders=host;x-amz-date, \
             Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
    );
    assert_eq!(header(&h, "x-amz-date"), Some("20150830T123600Z"));
    assert_eq!(header(&h, "x-amz-security-token"), None);
}

#[test]
fn post_vanilla_matches_the_test_suite() {
    let h = suite_sign("POST", None, &[], b"");
    assert!(header(&h, "authorization").unwrap().ends_with(
        "SignedHeaders=host;x-amz-date, \
             Signature=5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b"
    ));
}

#[test]
fn post_with_body_and_content_type_matches_the_test_suite() {
    // post-x-www-form-urlencoded: a signed content-type and a hashed body.
    let h = suite_sign(
        "POST",
        None,
        &[("content-type", "application/x-www-form-urlencoded")],
        b"Param1=value1",
    );
    assert!(header(&h, "authorization").unwrap().ends_with(
        "SignedHeaders=content-type;host;x-amz-date, \
             Signature=ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a"
    ));
}

#[test]
fn session_token_is_signed_and_returned() {
    // post-sts-token/post-sts-header-before.
    let h = suite_sign("POST", Some(SUITE_TOKEN), &[], b"");
    assert!(header(&h, "authorization").unwrap().ends_with(
        "SignedHeaders=host;x-amz-date;x-amz-security-token, \
             Signature=85d96828115b5dc0cfc3bd16ad9e210dd772bbebba041836c64533a82be05ead"
    ));
    assert_eq!(header(&h, "x-amz-security-token"), Some(SUITE_TOKEN));
}

/// A Kinesis-shaped request checked against an independent SigV4
/// implementation written from the AWS documentation with hmac/sha2.
#[test]
fn kinesis_put_records_matches_a_reference_implementation() {
    let body = br#"{"StreamName":"s","Records":[{"Data":"e30=","PartitionKey":"k"}]}"#;
    let url = "http://127.0.0.1:4567/prefix/";
    let time = UNIX_EPOCH + Duration::from_secs(1_700_000_000); // 20231114T221320Z
    let signer = Signer::new(
        "AKIDTEST",
        "secret/+=",
        Some("tok=="),
        "eu-west-1",
        "kinesis",
    );
    let headers = [
        ("content-type", "application/x-amz-json-1.1"),
        ("x-amz-target", "Kinesis_20131202.PutRecords"),
    ];
    let h = signer.sign("POST", url, &headers, body, time).unwrap();

    let date = "20231114T221320Z";
    let canonical = format!(
            "POST\n/prefix/\n\ncontent-type:application/x-amz-json-1.1\nhost:127.0.0.1:4567\n\
             x-amz-date:{date}\nx-amz-security-token:tok==\nx-amz-target:Kinesis_20131202.PutRecords\n\n\
             content-type;host;x-amz-date;x-amz-security-token;x-amz-target\n{}",
            hex::encode(Sha256::digest(body))
        );
    let scope = "20231114/eu-west-1/kinesis/aws4_request";
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{date}\n{scope}\n{}",
        hex::encode(Sha256::digest(canonical.as_bytes()))
    );
    let hmac = |key: &[u8], msg: &str| {
        let mut m = Hmac::<Sha256>::new_from_slice(key).unwrap();
        m.update(msg.as_bytes());
        m.finalize().into_bytes().to_vec()
    };
    let mut key = hmac(b"AWS4secret/+=", "20231114");
    for part in ["eu-west-1", "kinesis", "aws4_request"] {
        key = hmac(&key, part);
    }
    let expected = format!(
        "AWS4-HMAC-SHA256 Credential=AKIDTEST/{scope}, \
             SignedHeaders=content-type;host;x-amz-date;x-amz-security-token;x-amz-target, \
             Signature={}",
        hex::encode(hmac(&key, &to_sign))
    );
    assert_eq!(header(&h, "authorization").unwrap(), expected);
    assert_eq!(header(&h, "x-amz-date"), Some(date));
}

#[test]
fn debug_never_shows_the_secret_or_token() {
    let s = Signer::new(
        "AKIDEXAMPLE",
        "TOPSECRETVALUE",
        Some("SESSIONTOKENVALUE"),
        "us-east-1",
        "kinesis",
    );
    let dbg = format!("{s:?}");
    assert!(
        dbg.contains("AKIDEXAMPLE") && dbg.contains("us-east-1"),
        "{dbg}"
    );
    assert!(
        !dbg.contains("TOPSECRETVALUE") && !dbg.contains("SESSIONTOKENVALUE"),
        "{dbg}"
    );
}

#[test]
fn malformed_url_is_an_error_not_a_panic() {
    let s = Signer::new(AKID, SECRET, None, "us-east-1", "kinesis");
    let err = s
        .sign("POST", "http://exa mple/", &[], b"", suite_time())
        .unwrap_err();
    assert!(err.to_string().contains("cannot sign"));
}
