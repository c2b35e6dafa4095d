use super::*;

#[test]
fn error_bodies_give_code_and_message() {
    let e = error_from_response(
            400,
            None,
            br#"{"__type":"com.amazonaws.kinesis.v20131202#ResourceNotFoundException","message":"Stream s not found."}"#,
        );
    assert_eq!(
        e,
        RequestError::Http {
            status: 400,
            code: "ResourceNotFoundException".into(),
            message: "Stream s not found.".into()
        }
    );
    let e = error_from_response(
        403,
        Some("AccessDeniedException:http://internal.amazon.com/coral/"),
        b"{\"Message\":\"no\"}",
    );
    assert_eq!(e.reason(), "AccessDeniedException");
    assert!(matches!(&e, RequestError::Http { message, .. } if message == "no"));
    let e = error_from_response(502, None, b"<html>\n<h1>502 Bad Gateway</h1>\n</html>");
    assert!(
        matches!(&e, RequestError::Http { code, message, .. } if code.is_empty() && message.contains("502 Bad Gateway") && !message.contains('\n'))
    );
    assert_eq!(e.reason(), "HTTP 502");
}

#[test]
fn classification_follows_the_contract_lists() {
    use ErrorClass::*;
    let table: &[(&str, u16, ErrorClass)] = &[
        ("ProvisionedThroughputExceededException", 400, Throttled),
        ("LimitExceededException", 400, Throttled),
        ("ThrottlingException", 400, Throttled),
        ("KMSThrottlingException", 400, Throttled),
        ("InternalFailure", 500, Retryable),
        ("RequestTimeout", 408, Retryable),
        ("", 500, Retryable),
        ("", 502, Retryable),
        ("", 503, Retryable),
        ("", 504, Retryable),
        ("", 429, Throttled),
        ("ResourceNotFoundException", 400, Fatal),
        ("AccessDeniedException", 400, Fatal),
        ("ValidationException", 400, Fatal),
        ("InvalidArgumentException", 400, Fatal),
        ("KMSDisabledException", 400, Fatal),
        ("KMSInvalidStateException", 400, Fatal),
        ("KMSAccessDeniedException", 400, Fatal),
        ("KMSNotFoundException", 400, Fatal),
        ("KMSOptInRequired", 400, Fatal),
        ("UnrecognizedClientException", 400, Fatal),
        ("IncompleteSignature", 403, Fatal),
        ("ExpiredTokenException", 400, Fatal),
        // A fatal code stays fatal even on a 5xx status.
        ("ResourceNotFoundException", 500, Fatal),
        ("SomeNewException", 400, Fatal),
        ("SomeNewException", 503, Retryable),
    ];
    for &(code, status, class) in table {
        assert_eq!(classify(code, status, ""), class, "{code} {status}");
    }
    assert_eq!(classify_record_code("InternalFailure"), Retryable);
    assert_eq!(
        classify_record_code("ProvisionedThroughputExceededException"),
        Throttled
    );
    assert_eq!(
        classify_record_code("AccessDeniedException"),
        Retryable,
        "per-record codes are never fatal"
    );
    for e in [
        RequestError::Connect("refused".into()),
        RequestError::Tls("invalid peer certificate: UnknownIssuer".into()),
        RequestError::Timeout(TimeoutPhase::Send),
        RequestError::Io("reset".into()),
        RequestError::MalformedResponse("x".into()),
    ] {
        assert_eq!(e.class(), Retryable, "{e:?}");
    }
}

fn hint(status: u16, code: &str, message: &str) -> String {
    let target = StreamTarget::Name("telemetry".into());
    RequestError::Http {
        status,
        code: code.into(),
        message: message.into(),
    }
    .fix_hint(&target, "eu-west-1")
}

#[test]
fn fix_hints_name_the_cause_and_the_setting() {
    assert!(hint(400, "ResourceNotFoundException", "")
        .contains("stream telemetry not found in region eu-west-1"));
    assert!(
        hint(400, "AccessDeniedException", "").contains("lacks kinesis:PutRecords on telemetry")
    );
    assert!(hint(400, "InvalidSignatureException", "does not match")
        .contains("check AWS_SECRET_ACCESS_KEY / clock"));
    assert!(hint(400, "ExpiredTokenException", "").contains("session token expired"));
    assert!(hint(400, "KMSAccessDeniedException", "").contains("kms:GenerateDataKey"));
    assert!(hint(400, "KMSDisabledException", "").contains("disabled"));
    assert!(hint(400, "KMSNotFoundException", "").contains("does not exist"));
    assert!(hint(400, "UnrecognizedClientException", "").contains("AWS_ACCESS_KEY_ID"));
    assert!(hint(400, "ProvisionedThroughputExceededException", "").contains("throttled"));
    assert!(hint(404, "", "").contains("endpoint"));
    assert!(hint(
        400,
        "ValidationException",
        "Records must have length 1..500"
    )
    .contains("length 1..500"));

    let arn = StreamTarget::Arn("arn:aws:kinesis:ap-south-1:111122223333:stream/t2".into());
    let h = RequestError::Http {
        status: 400,
        code: "ResourceNotFoundException".into(),
        message: String::new(),
    }
    .fix_hint(&arn, "eu-west-1");
    assert!(
        h.contains("stream t2 not found in region ap-south-1"),
        "{h}"
    );
    assert!(RequestError::Timeout(TimeoutPhase::Connect)
        .fix_hint(&arn, "x")
        .contains("NAT"));
}

#[test]
fn a_tls_failure_is_a_connect_error_pointing_at_the_ca_file() {
    let target = StreamTarget::Name("telemetry".into());
    let e = RequestError::Tls("invalid peer certificate: UnknownIssuer".into());
    assert_eq!(e.class(), ErrorClass::Retryable);
    assert_eq!(e.reason(), "Connect");
    assert_eq!(
        e.to_string(),
        "cannot connect to Kinesis: TLS: invalid peer certificate: UnknownIssuer"
    );
    let h = e.fix_hint(&target, "us-east-1");
    assert!(
        h.starts_with("TLS handshake with the Kinesis endpoint failed"),
        "{h}"
    );
    assert!(h.contains("KINESIS_TELEMETRY_CA_FILE"), "{h}");
    // A plain connect failure gets the network-path hint, not the CA one.
    let h = RequestError::Connect("connection failed".into()).fix_hint(&target, "us-east-1");
    assert!(
        !h.contains("KINESIS_TELEMETRY_CA_FILE") && h.contains("NAT"),
        "{h}"
    );
}

#[test]
fn aws_messages_lose_the_echoed_canonical_request() {
    let msg = "The request signature we calculated does not match the signature you provided. \
                   Check your AWS Secret Access Key and signing method.\n\nThe Canonical String for this request should have been\n'POST\n/\n\nx-amz-security-token:SESSIONTOKEN\n'";
    let clean = sanitize_message(msg);
    assert!(clean.starts_with("The request signature we calculated"));
    assert!(!clean.contains("SESSIONTOKEN") && !clean.contains('\n'));
    assert!(sanitize_message(&"x".repeat(5000)).len() == MAX_MESSAGE_CHARS);
}

#[test]
fn xml_error_bodies_give_their_code_and_message() {
    // moto (and other AWS-compatible endpoints) answer a bad signature in XML.
    let body = br#"<?xml version="1.0" encoding="UTF-8"?>
    <ErrorResponse><Error><Code>SignatureDoesNotMatch</Code><Message>The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method.</Message></Error><RequestId>x</RequestId></ErrorResponse>"#;
    let e = error_from_response(403, None, body);
    match &e {
        RequestError::Http {
            status,
            code,
            message,
        } => {
            assert_eq!((*status, code.as_str()), (403, "SignatureDoesNotMatch"));
            assert!(message.starts_with("The request signature we calculated"));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(e.class(), ErrorClass::Fatal);
    let target = StreamTarget::parse("s").unwrap();
    assert!(e
        .fix_hint(&target, "us-east-1")
        .contains("AWS_SECRET_ACCESS_KEY"));
}
