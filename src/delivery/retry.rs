//! What to do after a PutRecords call: which records are delivered, which to
//! resend, which to drop, and how long to wait before trying again.
//!
//! [`plan`] is pure: it turns the call's result into a [`Plan`] over the request's
//! record indices (`0..sent`). Invariants:
//! * `delivered + resend.len() + dropped == sent` (dropped: all of them when `fatal`);
//! * `resend` is ascending, so resent records keep their relative order;
//! * a whole-request fatal error drops every record of the request with one reason,
//!   a whole-request transient error resends all of them, and a 200 with failed
//!   entries resends exactly those (per-record codes are never fatal, see
//!   [`classify_record_code`]).
//!
//! Resending after a timeout or a lost answer can duplicate records: delivery is at
//! least once.

use crate::kinesis::{
    classify_record_code, ErrorClass, PutRecordsResponse, RecordOutcome, RequestError,
};
use crate::rng::Rng;
use std::time::Duration;

/// The decision for one PutRecords call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Records Kinesis accepted.
    pub delivered: usize,
    /// Request indices to send again, ascending.
    pub resend: Vec<usize>,
    /// How many of `resend` were refused for throughput (per record, or the whole
    /// request): the stream is short of capacity.
    pub throttled: usize,
    /// Set when the whole request failed for good: all its records are dropped, for this
    /// reason (an AWS error code or a failure name).
    pub fatal: Option<String>,
    /// The outcome is unknown (the request timed out after it was sent): the records to
    /// resend may already be in the stream.
    pub unconfirmed: bool,
}

/// Whether a failed request may still have been applied: it reached Kinesis and the answer
/// was lost (a timeout after sending, a connection broken mid-exchange, a garbled 2xx).
fn may_have_landed(error: &RequestError) -> bool {
    use crate::kinesis::TimeoutPhase;
    matches!(
        error,
        RequestError::Timeout(TimeoutPhase::Send | TimeoutPhase::Receive | TimeoutPhase::Overall)
            | RequestError::Io(_)
            | RequestError::Abandoned
            | RequestError::MalformedResponse(_)
    )
}

/// Plans what follows a PutRecords call that carried `sent` records.
pub fn plan(result: &Result<PutRecordsResponse, RequestError>, sent: usize) -> Plan {
    let all = || (0..sent).collect::<Vec<usize>>();
    match result {
        // The client already rejects a mismatched length; if one gets here anyway,
        // nothing is known about any record, so all are resent.
        Ok(response) if response.records.len() != sent => Plan {
            delivered: 0,
            resend: all(),
            throttled: 0,
            fatal: None,
            unconfirmed: false,
        },
        Ok(response) => {
            let mut plan = Plan {
                delivered: 0,
                resend: Vec::new(),
                throttled: 0,
                fatal: None,
                unconfirmed: false,
            };
            for (i, outcome) in response.records.iter().enumerate() {
                match outcome {
                    RecordOutcome::Ok => plan.delivered += 1,
                    RecordOutcome::Failed { code, .. } => {
                        plan.resend.push(i);
                        if classify_record_code(code) == ErrorClass::Throttled {
                            plan.throttled += 1;
                        }
                    }
                }
            }
            plan
        }
        Err(error) => match error.class() {
            ErrorClass::Fatal => Plan {
                delivered: 0,
                resend: Vec::new(),
                throttled: 0,
                fatal: Some(error.reason()),
                unconfirmed: false,
            },
            ErrorClass::Throttled => Plan {
                delivered: 0,
                resend: all(),
                throttled: sent,
                fatal: None,
                unconfirmed: false,
            },
            ErrorClass::Retryable => Plan {
                delivered: 0,
                resend: all(),
                throttled: 0,
                fatal: None,
                unconfirmed: may_have_landed(error),
            },
        },
    }
}

/// Delay before retry number `attempt` (0 for the first retry): exponential
/// backoff with full jitter, uniform in `0..=min(cap, base * 2^attempt)`.
/// Saturates instead of overflowing for any `attempt`, `base` and `cap`.
pub fn backoff(attempt: u32, base: Duration, cap: Duration, rng: &mut Rng) -> Duration {
    let growth = 1u128.checked_shl(attempt).unwrap_or(u128::MAX);
    let ceiling = base
        .as_nanos()
        .saturating_mul(growth)
        .min(cap.as_nanos())
        .min(u128::from(u64::MAX)) as u64;
    Duration::from_nanos(rng.below(ceiling.saturating_add(1)).min(ceiling))
}

#[cfg(test)]
mod tests {
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
    fn dropped(p: &Plan, sent: usize) -> usize {
        if p.fatal.is_some() {
            sent
        } else {
            0
        }
    }

    #[test]
    fn plans_for_real_response_shapes() {
        for c in cases() {
            let p = plan(&c.result, c.sent);
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
            let p = plan(&http(400, &body), 3);
            assert_eq!(p.fatal.as_deref(), Some(code));
            assert_eq!(dropped(&p, 3), 3);
        }
    }

    #[test]
    fn backoff_grows_exponentially_within_full_jitter_bounds() {
        let mut rng = Rng::seeded(11);
        let base = Duration::from_millis(100);
        let cap = Duration::from_secs(5);
        for attempt in 0..8 {
            let ceiling = (base * 2u32.pow(attempt)).min(cap);
            let draws: Vec<Duration> = (0..300)
                .map(|_| backoff(attempt, base, cap, &mut rng))
                .collect();
            assert!(draws.iter().all(|d| *d <= ceiling), "attempt {attempt}");
            let max = *draws.iter().max().unwrap();
            assert!(
                max > ceiling * 3 / 4,
                "attempt {attempt}: uses the whole range, max {max:?}"
            );
            let min = *draws.iter().min().unwrap();
            assert!(
                min < ceiling / 4,
                "attempt {attempt}: full jitter reaches low values, min {min:?}"
            );
        }
    }

    #[test]
    fn backoff_never_overflows() {
        let mut rng = Rng::seeded(5);
        let cap = Duration::from_secs(20);
        for attempt in [31, 32, 63, 64, 127, 128, 1000, u32::MAX] {
            assert!(backoff(attempt, Duration::from_millis(100), cap, &mut rng) <= cap);
        }
        let huge = Duration::MAX;
        assert!(backoff(u32::MAX, huge, huge, &mut rng) <= huge);
        assert_eq!(backoff(3, Duration::ZERO, cap, &mut rng), Duration::ZERO);
        assert_eq!(
            backoff(3, Duration::from_millis(100), Duration::ZERO, &mut rng),
            Duration::ZERO
        );
    }
}
