//! The outcome of real response shapes, and how a request's events settle.

use super::*;
use crate::kinesis::{error_from_response, parse_put_records_response, TimeoutPhase};

/// A 200 body parsed as the client would.
fn ok_body(body: &str, sent: usize) -> Result<PutRecordsResponse, RequestError> {
    parse_put_records_response(body.as_bytes(), sent)
}

fn http(status: u16, body: &str) -> Result<PutRecordsResponse, RequestError> {
    Err(error_from_response(status, None, body.as_bytes()))
}

struct Case {
    name: &'static str,
    result: Result<PutRecordsResponse, RequestError>,
    sent: usize,
    delivered: usize,
    resend: Vec<usize>,
    throttled: usize,
    fatal: Option<&'static str>,
}

fn cases() -> Vec<Case> {
    let all_ok = r#"{"FailedRecordCount":0,"EncryptionType":"KMS","Records":[
        {"SequenceNumber":"4959","ShardId":"shardId-000000000000"},
        {"SequenceNumber":"4960","ShardId":"shardId-000000000001"},
        {"SequenceNumber":"4961","ShardId":"shardId-000000000000"}]}"#;
    let partial = r#"{"FailedRecordCount":2,"Records":[
        {"SequenceNumber":"4959","ShardId":"shardId-000000000000"},
        {"ErrorCode":"ProvisionedThroughputExceededException","ErrorMessage":"Rate exceeded for shard shardId-000000000001 in stream s under account 111122223333."},
        {"SequenceNumber":"4961","ShardId":"shardId-000000000000"},
        {"ErrorCode":"InternalFailure","ErrorMessage":"Internal service failure."}]}"#;
    let all_failed = r#"{"FailedRecordCount":3,"Records":[
        {"ErrorCode":"ProvisionedThroughputExceededException","ErrorMessage":"Rate exceeded"},
        {"ErrorCode":"KMSThrottlingException","ErrorMessage":"KMS rate exceeded"},
        {"ErrorCode":"SomethingNewException","ErrorMessage":"?"}]}"#;
    vec![
        Case {
            name: "200, FailedRecordCount 0",
            result: ok_body(all_ok, 3),
            sent: 3,
            delivered: 3,
            resend: vec![],
            throttled: 0,
            fatal: None,
        },
        Case {
            name: "200, partial failure",
            result: ok_body(partial, 4),
            sent: 4,
            delivered: 2,
            resend: vec![1, 3],
            throttled: 1,
            fatal: None,
        },
        Case {
            name: "200, all failed, unknown per-record code resent",
            result: ok_body(all_failed, 3),
            sent: 3,
            delivered: 0,
            resend: vec![0, 1, 2],
            throttled: 2,
            fatal: None,
        },
        Case {
            name: "200, Records shorter than the request",
            result: ok_body(
                r#"{"FailedRecordCount":0,"Records":[{"SequenceNumber":"1","ShardId":"s"}]}"#,
                2,
            ),
            sent: 2,
            delivered: 0,
            resend: vec![0, 1],
            throttled: 0,
            fatal: None,
        },
        Case {
            name: "200, garbage body",
            result: ok_body("<html>hello</html>", 2),
            sent: 2,
            delivered: 0,
            resend: vec![0, 1],
            throttled: 0,
            fatal: None,
        },
        Case {
            name: "400 ResourceNotFoundException",
            result: http(
                400,
                r#"{"__type":"ResourceNotFoundException","message":"Stream s under account 111122223333 not found."}"#,
            ),
            sent: 5,
            delivered: 0,
            resend: vec![],
            throttled: 0,
            fatal: Some("ResourceNotFoundException"),
        },
        Case {
            name: "400 ValidationException",
            result: http(
                400,
                r#"{"__type":"ValidationException","message":"1 validation error detected"}"#,
            ),
            sent: 2,
            delivered: 0,
            resend: vec![],
            throttled: 0,
            fatal: Some("ValidationException"),
        },
        Case {
            name: "400 InvalidArgumentException with namespace prefix",
            result: http(
                400,
                r#"{"__type":"com.amazonaws.kinesis.v20131202#InvalidArgumentException","message":"bad"}"#,
            ),
            sent: 1,
            delivered: 0,
            resend: vec![],
            throttled: 0,
            fatal: Some("InvalidArgumentException"),
        },
        Case {
            name: "400 ProvisionedThroughputExceededException (whole request)",
            result: http(
                400,
                r#"{"__type":"ProvisionedThroughputExceededException","message":"Rate exceeded"}"#,
            ),
            sent: 3,
            delivered: 0,
            resend: vec![0, 1, 2],
            throttled: 3,
            fatal: None,
        },
        Case {
            name: "400 LimitExceededException",
            result: http(
                400,
                r#"{"__type":"LimitExceededException","message":"Rate exceeded"}"#,
            ),
            sent: 2,
            delivered: 0,
            resend: vec![0, 1],
            throttled: 2,
            fatal: None,
        },
        Case {
            name: "400 ThrottlingException",
            result: http(
                400,
                r#"{"__type":"ThrottlingException","message":"Rate exceeded"}"#,
            ),
            sent: 1,
            delivered: 0,
            resend: vec![0],
            throttled: 1,
            fatal: None,
        },
        Case {
            name: "403 AccessDeniedException",
            result: http(
                403,
                r#"{"__type":"AccessDeniedException","message":"User: arn:aws:sts::111122223333:assumed-role/r/f is not authorized to perform: kinesis:PutRecords"}"#,
            ),
            sent: 2,
            delivered: 0,
            resend: vec![],
            throttled: 0,
            fatal: Some("AccessDeniedException"),
        },
        Case {
            name: "400 UnrecognizedClientException",
            result: http(
                400,
                r#"{"__type":"UnrecognizedClientException","message":"The security token included in the request is invalid."}"#,
            ),
            sent: 1,
            delivered: 0,
            resend: vec![],
            throttled: 0,
            fatal: Some("UnrecognizedClientException"),
        },
        Case {
            name: "403 IncompleteSignature",
            result: http(
                403,
                r#"{"__type":"IncompleteSignatureException","message":"Authorization header requires 'Credential' parameter."}"#,
            ),
            sent: 1,
            delivered: 0,
            resend: vec![],
            throttled: 0,
            fatal: Some("IncompleteSignatureException"),
        },
        Case {
            name: "403 InvalidSignatureException (wrong secret)",
            result: http(
                403,
                r#"{"__type":"InvalidSignatureException","message":"The request signature we calculated does not match the signature you provided."}"#,
            ),
            sent: 1,
            delivered: 0,
            resend: vec![],
            throttled: 0,
            fatal: Some("InvalidSignatureException"),
        },
        Case {
            name: "400 InvalidSignatureException, signature expired (freeze)",
            result: http(
                400,
                r#"{"__type":"InvalidSignatureException","message":"Signature expired: 20240101T000000Z is now earlier than 20240101T000500Z (20240101T001000Z - 5 min.)"}"#,
            ),
            sent: 2,
            delivered: 0,
            resend: vec![0, 1],
            throttled: 0,
            fatal: None,
        },
        Case {
            name: "400 ExpiredTokenException",
            result: http(
                400,
                r#"{"__type":"ExpiredTokenException","message":"The security token included in the request is expired"}"#,
            ),
            sent: 1,
            delivered: 0,
            resend: vec![],
            throttled: 0,
            fatal: Some("ExpiredTokenException"),
        },
        Case {
            name: "400 KMSAccessDeniedException",
            result: http(
                400,
                r#"{"__type":"KMSAccessDeniedException","message":"denied"}"#,
            ),
            sent: 1,
            delivered: 0,
            resend: vec![],
            throttled: 0,
            fatal: Some("KMSAccessDeniedException"),
        },
        Case {
            name: "400 KMSDisabledException",
            result: http(
                400,
                r#"{"__type":"KMSDisabledException","message":"disabled"}"#,
            ),
            sent: 1,
            delivered: 0,
            resend: vec![],
            throttled: 0,
            fatal: Some("KMSDisabledException"),
        },
        Case {
            name: "400 KMSInvalidStateException / NotFound / OptInRequired",
            result: http(400, r#"{"__type":"KMSInvalidStateException"}"#),
            sent: 1,
            delivered: 0,
            resend: vec![],
            throttled: 0,
            fatal: Some("KMSInvalidStateException"),
        },
        Case {
            name: "400 KMSThrottlingException (whole request)",
            result: http(
                400,
                r#"{"__type":"KMSThrottlingException","message":"slow down"}"#,
            ),
            sent: 2,
            delivered: 0,
            resend: vec![0, 1],
            throttled: 2,
            fatal: None,
        },
        Case {
            name: "500 InternalFailure",
            result: http(500, r#"{"__type":"InternalFailure","message":""}"#),
            sent: 2,
            delivered: 0,
            resend: vec![0, 1],
            throttled: 0,
            fatal: None,
        },
        Case {
            name: "503 ServiceUnavailable",
            result: http(503, r#"{"__type":"ServiceUnavailable"}"#),
            sent: 1,
            delivered: 0,
            resend: vec![0],
            throttled: 0,
            fatal: None,
        },
        Case {
            name: "502 from a load balancer, HTML body",
            result: http(502, "<html><body>502 Bad Gateway</body></html>"),
            sent: 2,
            delivered: 0,
            resend: vec![0, 1],
            throttled: 0,
            fatal: None,
        },
        Case {
            name: "429 without a code",
            result: http(429, ""),
            sent: 1,
            delivered: 0,
            resend: vec![0],
            throttled: 1,
            fatal: None,
        },
        Case {
            name: "413 from a proxy: unknown 4xx is fatal",
            result: http(413, "Request Entity Too Large"),
            sent: 3,
            delivered: 0,
            resend: vec![],
            throttled: 0,
            fatal: Some("HTTP 413"),
        },
        Case {
            name: "timeout while receiving",
            result: Err(RequestError::Timeout(TimeoutPhase::Receive)),
            sent: 2,
            delivered: 0,
            resend: vec![0, 1],
            throttled: 0,
            fatal: None,
        },
        Case {
            name: "connect timeout",
            result: Err(RequestError::Timeout(TimeoutPhase::Connect)),
            sent: 1,
            delivered: 0,
            resend: vec![0],
            throttled: 0,
            fatal: None,
        },
        Case {
            name: "connection refused",
            result: Err(RequestError::Connect(
                "Connection refused (os error 111)".into(),
            )),
            sent: 2,
            delivered: 0,
            resend: vec![0, 1],
            throttled: 0,
            fatal: None,
        },
        Case {
            name: "connection reset mid-exchange",
            result: Err(RequestError::Io("Connection reset by peer".into())),
            sent: 1,
            delivered: 0,
            resend: vec![0],
            throttled: 0,
            fatal: None,
        },
        Case {
            name: "request could not be signed",
            result: Err(RequestError::Local("bad uri".into())),
            sent: 4,
            delivered: 0,
            resend: vec![],
            throttled: 0,
            fatal: Some("Local"),
        },
    ]
}

/// Records given up on (all of them when `fatal` is set, else none).
fn dropped(p: &Outcome, sent: usize) -> usize {
    if p.fatal.is_some() {
        sent
    } else {
        0
    }
}

#[test]
fn outcomes_of_real_response_shapes() {
    for c in cases() {
        let p = Outcome::of(&c.result, c.sent);
        assert_eq!(p.delivered, c.delivered, "{}: delivered", c.name);
        assert_eq!(p.resend, c.resend, "{}: resend", c.name);
        assert_eq!(p.throttled, c.throttled, "{}: throttled", c.name);
        assert_eq!(p.fatal.as_deref(), c.fatal, "{}: fatal", c.name);
        assert_eq!(
            p.delivered + p.resend.len() + dropped(&p, c.sent),
            c.sent,
            "{}: every record accounted for once",
            c.name
        );
        let answer_lost = matches!(
            c.result,
            Err(RequestError::Timeout(TimeoutPhase::Receive)
                | RequestError::Io(_)
                | RequestError::MalformedResponse(_))
        );
        assert_eq!(p.unconfirmed, answer_lost, "{}", c.name);
    }
}

#[test]
fn kms_variants_are_all_fatal() {
    for code in [
        "KMSNotFoundException",
        "KMSOptInRequired",
        "KMSInvalidStateException",
    ] {
        let body = format!(r#"{{"__type":"{code}","message":"m"}}"#);
        let p = Outcome::of(&http(400, &body), 3);
        assert_eq!(p.fatal.as_deref(), Some(code));
        assert_eq!(dropped(&p, 3), 3);
    }
}

/// An outcome with these records to resend (and nothing else set).
fn resending(resend: &[usize], unconfirmed: bool) -> Outcome {
    Outcome {
        delivered: 0,
        resend: resend.to_vec(),
        throttled: 0,
        fatal: None,
        unconfirmed,
    }
}

#[test]
fn every_taken_event_settles_once() {
    use Fate::{Gone, Resend};
    let refused = Outcome {
        fatal: Some("AccessDeniedException".into()),
        ..resending(&[], false)
    };
    // Three records over five events: [0], [1, 2, 3] (packed), [4]; 100, 300, 50 bytes.
    let records: [(&[usize], usize); 3] = [(&[0], 100), (&[1, 2, 3], 300), (&[4], 50)];
    // (name, outcome, fates, records_ok, bytes_ok)
    let cases = [
        (
            "all delivered",
            resending(&[], false),
            vec![Gone; 5],
            3,
            450,
        ),
        (
            "a packed record resent: all its events go back",
            resending(&[1], false),
            vec![Gone, Resend, Resend, Resend, Gone],
            2,
            150,
        ),
        (
            "first and last resent",
            resending(&[0, 2], false),
            vec![Resend, Gone, Gone, Gone, Resend],
            1,
            300,
        ),
        (
            "all resent, the answer lost",
            resending(&[0, 1, 2], true),
            vec![Resend; 5],
            0,
            0,
        ),
        (
            "refused for good: every event dropped",
            refused.clone(),
            vec![Gone; 5],
            0,
            0,
        ),
    ];
    for (name, outcome, fates, records_ok, bytes_ok) in cases {
        let s = settle(&outcome, records, 5);
        assert_eq!(s.fates, fates, "{name}");
        assert_eq!(
            s.resent,
            fates.iter().filter(|f| **f == Resend).count() as u64,
            "{name}: resent"
        );
        assert_eq!((s.records_ok, s.bytes_ok), (records_ok, bytes_ok), "{name}");
        assert_eq!(s.unconfirmed, outcome.unconfirmed, "{name}: unconfirmed");
        assert_eq!(s.dropped, outcome.fatal, "{name}: dropped");
    }
}

#[test]
fn settling_a_real_response_resends_exactly_the_failed_records_events() {
    let partial = r#"{"FailedRecordCount":1,"Records":[
        {"SequenceNumber":"1","ShardId":"shardId-000000000000"},
        {"ErrorCode":"ProvisionedThroughputExceededException","ErrorMessage":"Rate exceeded"}]}"#;
    let outcome = Outcome::of(&ok_body(partial, 2), 2);
    let records: [(&[usize], usize); 2] = [(&[0, 1], 40), (&[2], 20)];
    let s = settle(&outcome, records, 3);
    assert_eq!(s.fates, vec![Fate::Gone, Fate::Gone, Fate::Resend]);
    assert_eq!((s.resent, s.records_ok, s.bytes_ok), (1, 1, 40));
    assert!(!s.unconfirmed && s.dropped.is_none());
}
