//! Failures of a PutRecords call and what to do about each: [`ErrorClass`] from the
//! contract's retry lists, a reason code for counters, and a one-line fix hint.
//!
//! Invariants: every [`RequestError`] has exactly one class; unknown AWS codes fall
//! back on the HTTP status (5xx and 408 retryable, 429 throttled, other codes
//! fatal); no message holds a credential (see [`sanitize_message`]).

use super::StreamTarget;
use serde::Deserialize;
use std::fmt;

/// AWS error messages are cut to this many characters in errors and logs.
pub const MAX_MESSAGE_CHARS: usize = 300;

/// What the caller should do about a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Transient: resend after a backoff.
    Retryable,
    /// The stream (or KMS) is over its rate: resend after a backoff, and count it.
    Throttled,
    /// Resending cannot succeed until someone changes something: drop and explain.
    Fatal,
}

/// Where a timeout fired. Before `Send` the request never reached Kinesis; from
/// `Send` on it may have been applied, so a resend can duplicate records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeoutPhase {
    Connect,
    Send,
    Receive,
    /// The overall per-request timeout, whatever the phase.
    Overall,
}

/// Failure of one PutRecords call, as a whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestError {
    /// No connection: DNS failure, refused, unreachable.
    Connect(String),
    /// The TLS handshake failed: the endpoint answered but is not trusted (unknown CA,
    /// bad certificate) or speaks no common protocol. Connect-class: retryable, and
    /// counted as `Connect`.
    Tls(String),
    Timeout(TimeoutPhase),
    /// The connection broke mid-exchange, or the HTTP framing was invalid.
    Io(String),
    /// A non-2xx answer. `code` is the AWS error code (`__type` without any
    /// `namespace#` prefix, else the `x-amzn-ErrorType` header), empty if none.
    Http {
        status: u16,
        code: String,
        message: String,
    },
    /// A 2xx whose body is not a PutRecords response of the request's length.
    MalformedResponse(String),
    /// The request could not be built or signed; it was never sent.
    Local(String),
    /// Cut while in flight: the invocation's added-time budget ended (see
    /// `kinesis::Interrupt`). Its records may have landed: they are resent.
    Abandoned,
    /// The credentials to sign with could not be fetched from the container credentials
    /// endpoint (which, and why: never the token or a key). Nothing was sent to Kinesis; the
    /// records are resent once credentials come.
    Credentials(String),
}

/// Codes the contract lists as throttling (plus generic AWS throttling codes).
const THROTTLING_CODES: &[&str] = &[
    "ProvisionedThroughputExceededException",
    "LimitExceededException",
    "ThrottlingException",
    "KMSThrottlingException",
    "Throttling",
    "ThrottledException",
    "RequestThrottledException",
    "TooManyRequestsException",
    "RequestLimitExceeded",
];

/// Transient server-side codes. `ResourceInUseException` means the stream is
/// being created or updated: it passes.
const RETRYABLE_CODES: &[&str] = &[
    "InternalFailure",
    "InternalFailureException",
    "InternalError",
    "InternalServerError",
    "ServiceUnavailable",
    "ServiceUnavailableException",
    "RequestTimeout",
    "RequestTimeoutException",
    "ResourceInUseException",
    // The signature's date is too old: the request sat in a frozen sandbox between
    // signing and sending. A resend is signed afresh.
    "RequestExpired",
    "RequestTimeTooSkewed",
];

/// Codes the contract lists as not retryable, plus their AWS-wide siblings.
const FATAL_CODES: &[&str] = &[
    "ResourceNotFoundException",
    "AccessDeniedException",
    "AccessDenied",
    "ValidationException",
    "InvalidArgumentException",
    "SerializationException",
    "UnknownOperationException",
    "KMSDisabledException",
    "KMSInvalidStateException",
    "KMSAccessDeniedException",
    "KMSNotFoundException",
    "KMSOptInRequired",
    "UnrecognizedClientException",
    "InvalidClientTokenId",
    "IncompleteSignature",
    "IncompleteSignatureException",
    "InvalidSignatureException",
    "SignatureDoesNotMatch",
    "MissingAuthenticationToken",
    "MissingAuthenticationTokenException",
    "ExpiredTokenException",
    "ExpiredToken",
];

/// Classifies an AWS error code, falling back on the HTTP status for unknown codes.
pub fn classify(code: &str, status: u16, message: &str) -> ErrorClass {
    if is_signature_expired(code, message) {
        return ErrorClass::Retryable;
    }
    if FATAL_CODES.contains(&code) {
        ErrorClass::Fatal
    } else if THROTTLING_CODES.contains(&code) {
        ErrorClass::Throttled
    } else if RETRYABLE_CODES.contains(&code) {
        ErrorClass::Retryable
    } else {
        match status {
            429 => ErrorClass::Throttled,
            408 | 500..=599 => ErrorClass::Retryable,
            _ => ErrorClass::Fatal,
        }
    }
}

/// Classifies the `ErrorCode` of one failed record of a 200 answer. Per-record
/// failures are never fatal: the API documents only throttling and
/// `InternalFailure` there, and an unknown code is resent rather than dropped.
pub fn classify_record_code(code: &str) -> ErrorClass {
    if THROTTLING_CODES.contains(&code) {
        ErrorClass::Throttled
    } else {
        ErrorClass::Retryable
    }
}

/// "Signature expired: 20240101T000000Z is now earlier than ..." comes as a 400/403
/// `InvalidSignatureException`; re-signing fixes it.
fn is_signature_expired(code: &str, message: &str) -> bool {
    matches!(code, "InvalidSignatureException" | "SignatureDoesNotMatch")
        && message.contains("Signature expired")
}

impl RequestError {
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::Connect(_)
            | Self::Tls(_)
            | Self::Timeout(_)
            | Self::Io(_)
            | Self::MalformedResponse(_)
            | Self::Abandoned
            | Self::Credentials(_) => ErrorClass::Retryable,
            Self::Http {
                status,
                code,
                message,
            } => classify(code, *status, message),
            Self::Local(_) => ErrorClass::Fatal,
        }
    }

    /// A short reason code for counters and summary lines: the AWS code, else a
    /// name for the failure (`HTTP 502`, `Timeout(Receive)`, `Connect`, ...).
    pub fn reason(&self) -> String {
        match self {
            Self::Connect(_) | Self::Tls(_) => "Connect".to_owned(),
            Self::Timeout(phase) => format!("Timeout({phase:?})"),
            Self::Io(_) => "Io".to_owned(),
            Self::Http { status, code, .. } if code.is_empty() => format!("HTTP {status}"),
            Self::Http { code, .. } => code.clone(),
            Self::MalformedResponse(_) => "MalformedResponse".to_owned(),
            Self::Local(_) => "Local".to_owned(),
            Self::Abandoned => "Abandoned".to_owned(),
            Self::Credentials(_) => "Credentials".to_owned(),
        }
    }

    /// One actionable line for the person reading the function's logs: what is
    /// wrong and which setting or permission to check.
    pub fn fix_hint(&self, target: &StreamTarget, region: &str) -> String {
        let stream = target.stream_name();
        match self {
            Self::Tls(detail) => format!(
                "TLS handshake with the Kinesis endpoint failed (TLS: {detail}): for a private \
                 endpoint or a TLS-inspecting proxy, point KINESIS_TELEMETRY_CA_FILE at its CA bundle"
            ),
            Self::Connect(detail) => format!(
                "cannot reach Kinesis ({detail}): check the function's network path to the \
                 endpoint (a VPC function needs a NAT gateway or a Kinesis VPC endpoint)"
            ),
            Self::Timeout(TimeoutPhase::Connect) => "connecting to Kinesis timed out: check the \
                 function's network path (VPC without NAT gateway or Kinesis VPC endpoint?)"
                .to_owned(),
            Self::Timeout(phase) => format!(
                "Kinesis did not answer in time ({phase:?}); records are resent and may arrive twice"
            ),
            Self::Io(detail) => format!("connection to Kinesis broke ({detail}); records are resent"),
            Self::MalformedResponse(detail) => format!(
                "unexpected answer from the Kinesis endpoint ({detail}): check that the \
                 endpoint setting points at Kinesis"
            ),
            Self::Local(detail) => format!("cannot build the Kinesis request: {detail}"),
            Self::Abandoned => "the request was still in flight when the invocation's added-time \
                 budget ended (KINESIS_TELEMETRY_MAX_ADDED_MS): its records are resent"
                .to_owned(),
            Self::Credentials(detail) => format!(
                "cannot fetch the function's credentials from {detail}: check \
                 AWS_CONTAINER_AUTHORIZATION_TOKEN / AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE; \
                 records are resent once it answers"
            ),
            Self::Http { status, code, message } => {
                http_hint(*status, code, message, target, stream, region)
            }
        }
    }
}

fn http_hint(
    status: u16,
    code: &str,
    message: &str,
    target: &StreamTarget,
    stream: &str,
    region: &str,
) -> String {
    let region = target.region().unwrap_or(region);
    match code {
        "ResourceNotFoundException" => format!(
            "stream {stream} not found in region {region}: check KINESIS_TELEMETRY_STREAM and AWS_REGION \
             (a stream ARN must name the stream's own region and account)"
        ),
        "AccessDeniedException" | "AccessDenied" => format!(
            "the function's execution role lacks kinesis:PutRecords on {target}: add it to the role's policy"
        ),
        "KMSAccessDeniedException" => format!(
            "the function's execution role may not use the KMS key of stream {stream}: \
             allow kms:GenerateDataKey on that key"
        ),
        "KMSDisabledException" => format!(
            "the KMS key of stream {stream} is disabled: enable it or change the stream's encryption"
        ),
        "KMSInvalidStateException" => format!(
            "the KMS key of stream {stream} is not usable (pending deletion or import?): \
             restore it or change the stream's encryption"
        ),
        "KMSNotFoundException" => format!(
            "the KMS key of stream {stream} does not exist: change the stream's encryption key"
        ),
        "KMSOptInRequired" => "the AWS account is not subscribed to AWS KMS, which the stream's \
             encryption needs"
            .to_owned(),
        "UnrecognizedClientException" | "InvalidClientTokenId" => format!(
            "credentials not recognised: check that AWS_ACCESS_KEY_ID and AWS_SESSION_TOKEN are the \
             function's own and valid in region {region}"
        ),
        "IncompleteSignature" | "IncompleteSignatureException" | "MissingAuthenticationToken"
        | "MissingAuthenticationTokenException" => {
            "request signature incomplete: check that AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are set"
                .to_owned()
        }
        "InvalidSignatureException" | "SignatureDoesNotMatch" if is_signature_expired(code, message) => {
            "signature expired before Kinesis received the request (sandbox frozen in between?); \
             the request is signed again and resent"
                .to_owned()
        }
        "InvalidSignatureException" | "SignatureDoesNotMatch" => {
            "signature rejected: check AWS_SECRET_ACCESS_KEY / clock".to_owned()
        }
        "ExpiredTokenException" | "ExpiredToken" => {
            "session token expired: the function's credentials (AWS_SESSION_TOKEN) are no longer valid"
                .to_owned()
        }
        "ValidationException" | "InvalidArgumentException" | "SerializationException" => {
            format!("Kinesis rejected the request as invalid ({code}: {message})")
        }
        _ => match classify(code, status, message) {
            ErrorClass::Throttled => format!(
                "stream {stream} is throttled ({code}): add shards or use on-demand capacity; \
                 records are resent after a backoff"
            ),
            ErrorClass::Retryable => format!(
                "Kinesis answered HTTP {status} {code}: a transient error, records are resent"
            ),
            ErrorClass::Fatal if matches!(status, 300..=399 | 404 | 405) => format!(
                "the endpoint answered HTTP {status}: check that the endpoint setting is a Kinesis \
                 endpoint (https://kinesis.<region>.amazonaws.com)"
            ),
            ErrorClass::Fatal => format!("Kinesis answered HTTP {status} {code}: {message}"),
        },
    }
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Connect(d) => write!(f, "cannot connect to Kinesis: {d}"),
            Self::Tls(d) => write!(f, "cannot connect to Kinesis: TLS: {d}"),
            Self::Timeout(p) => write!(f, "Kinesis request timed out ({p:?})"),
            Self::Io(d) => write!(f, "I/O error talking to Kinesis: {d}"),
            Self::Http {
                status,
                code,
                message,
            } => {
                write!(f, "Kinesis answered HTTP {status} {code}: {message}")
            }
            Self::MalformedResponse(d) => write!(f, "malformed Kinesis response: {d}"),
            Self::Local(d) => write!(f, "cannot build the Kinesis request: {d}"),
            Self::Abandoned => write!(f, "Kinesis request abandoned at the added-time budget"),
            Self::Credentials(d) => write!(f, "cannot fetch credentials from {d}"),
        }
    }
}

impl std::error::Error for RequestError {}

#[derive(Deserialize)]
struct WireError {
    #[serde(rename = "__type", default)]
    error_type: Option<String>,
    #[serde(default)]
    message: Option<String>,
    #[serde(rename = "Message", default)]
    message_upper: Option<String>,
}

/// Builds the error for a non-2xx answer from its status, its `x-amzn-ErrorType`
/// header and its body. Never fails: a body that is not AWS JSON (a proxy's HTML
/// page) gives an empty code and an excerpt as message.
pub fn error_from_response(
    status: u16,
    error_type_header: Option<&str>,
    body: &[u8],
) -> RequestError {
    let (code, message) = match serde_json::from_slice::<WireError>(body) {
        Ok(w) => (
            w.error_type
                .or_else(|| error_type_header.map(str::to_owned))
                .unwrap_or_default(),
            w.message.or(w.message_upper).unwrap_or_default(),
        ),
        // Some AWS-compatible endpoints (and AWS's own edge in front of some errors)
        // answer with a query-protocol XML error instead of JSON.
        Err(_) => match (xml_element(body, "Code"), xml_element(body, "Message")) {
            (Some(code), message) => (code, message.unwrap_or_else(|| body_excerpt(body))),
            (None, _) => (
                error_type_header.unwrap_or("").to_owned(),
                body_excerpt(body),
            ),
        },
    };
    RequestError::Http {
        status,
        code: normalize_code(&code).to_owned(),
        message: sanitize_message(&message),
    }
}

/// The text of the first `<name>...</name>` element of an XML error body.
fn xml_element(body: &[u8], name: &str) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    let open = format!("<{name}>");
    let start = text.find(&open)? + open.len();
    let end = start + text[start..].find(&format!("</{name}>"))?;
    let value = text[start..end].trim();
    (!value.is_empty()).then(|| value.to_string())
}

/// `com.amazonaws.kinesis.v20131202#ResourceNotFoundException` and
/// `ResourceNotFoundException:http://internal.amazon.com/...` both give
/// `ResourceNotFoundException`.
fn normalize_code(code: &str) -> &str {
    let code = code.rsplit('#').next().unwrap_or(code);
    code.split(':').next().unwrap_or(code).trim()
}

/// Cuts an AWS message to one short line. A signature mismatch message echoes the
/// canonical request, which holds the session token: everything from there on is
/// dropped.
pub fn sanitize_message(message: &str) -> String {
    let cut = ["The Canonical String", "The String-to-Sign", "\n\n"]
        .iter()
        .filter_map(|m| message.find(m))
        .min()
        .unwrap_or(message.len());
    let one_line: String = message[..cut]
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_MESSAGE_CHARS)
        .collect();
    one_line.trim().to_owned()
}

pub(super) fn body_excerpt(body: &[u8]) -> String {
    let head = &body[..body.len().min(MAX_MESSAGE_CHARS * 4)];
    sanitize_message(&String::from_utf8_lossy(head))
}

#[cfg(test)]
mod tests;
