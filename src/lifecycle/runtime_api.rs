//! Client for the Lambda Runtime API endpoints an extension uses: the Extensions API
//! (`register`, `event/next`, `init/error`, `exit/error`) and the Telemetry API subscription.
//!
//! Plain HTTP to `AWS_LAMBDA_RUNTIME_API`. That variable is `host:port` in Lambda; local
//! emulators sometimes hand it over with an `http://` scheme and a path prefix, which is
//! accepted too. `event/next` is a long poll and has no timeout: the sandbox may be frozen
//! for hours inside it. Every other call has a short timeout so a broken Runtime API is
//! reported instead of hanging init.

use std::time::Duration;

use serde::Deserialize;

use crate::intake::receiver::Buffering;

/// Telemetry API subscription settings, validated against the documented ranges.
#[derive(Debug, Clone, PartialEq)]
pub struct Subscription {
    pub schema_version: String,
    /// Categories subscribed: always `platform` (pacing, `logsDropped`), plus what the user
    /// selected; unwanted events are filtered at the extension.
    pub types: Vec<&'static str>,
    /// What Lambda batches into each POST (the receiver reads it too).
    pub buffering: Buffering,
}

/// Extensions API version path.
const EXTENSION_PATH: &str = "/2020-01-01/extension";
/// Telemetry API version path.
const TELEMETRY_PATH: &str = "/2022-07-01/telemetry";
/// ureq's buffers for Runtime API calls (heads and bodies are well under this).
const RUNTIME_API_BUFFER: usize = 16 * 1024;
/// Timeout for every call except the `event/next` long poll.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// A failed Runtime API call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiError {
    /// The call never got an HTTP answer.
    Transport(String),
    /// An HTTP error status, with Lambda's `errorType` / `errorMessage` when it sent them.
    Status {
        status: u16,
        error_type: String,
        message: String,
    },
    /// A 2xx answer we could not use.
    BadResponse(String),
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ApiError::Transport(e) => write!(f, "no answer from the Runtime API: {e}"),
            ApiError::Status {
                status,
                error_type,
                message,
            } => write!(f, "HTTP {status} {error_type}: {message}"),
            ApiError::BadResponse(e) => write!(f, "unusable answer: {e}"),
        }
    }
}

/// What `event/next` returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NextEvent {
    Invoke {
        request_id: String,
        deadline_ms: u64,
    },
    Shutdown {
        reason: String,
        deadline_ms: u64,
    },
}

/// What `register` returned: the identifier, and who the function is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    pub id: String,
    pub function_name: Option<String>,
    pub function_version: Option<String>,
    /// Sent because the request asks for the `accountId` feature.
    pub account_id: Option<String>,
}

/// The `errorType` Lambda answers a registration with when an event type may not be
/// registered for here (INVOKE on Lambda Managed Instances).
pub const INVALID_EVENT_TYPE: &str = "Extension.InvalidEventType";

impl ApiError {
    /// Lambda refused to register for an event type this environment does not offer.
    pub fn is_invalid_event_type(&self) -> bool {
        matches!(self, ApiError::Status { error_type, .. } if error_type == INVALID_EVENT_TYPE)
    }
}

#[derive(Deserialize, Default)]
struct RawRegistration {
    #[serde(rename = "functionName", default)]
    function_name: Option<String>,
    #[serde(rename = "functionVersion", default)]
    function_version: Option<String>,
    #[serde(rename = "accountId", default)]
    account_id: Option<String>,
}

/// How the Telemetry API answered the subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subscribed {
    Yes,
    /// HTTP 202: this environment has no Telemetry API (local emulators).
    NotSupported,
}

pub struct RuntimeApi {
    base: String,
    agent: ureq::Agent,
}

/// Turns `AWS_LAMBDA_RUNTIME_API` into a base URL without a trailing slash.
pub fn base_url(runtime_api: &str) -> Result<String, String> {
    let v = runtime_api.trim();
    if v.is_empty() {
        return Err("AWS_LAMBDA_RUNTIME_API is not set".into());
    }
    if v.starts_with("https://") {
        return Err(format!(
            "AWS_LAMBDA_RUNTIME_API={v:?}: the Runtime API is plain HTTP, not https"
        ));
    }
    let rest = v.strip_prefix("http://").unwrap_or(v).trim_end_matches('/');
    if rest.is_empty() || rest.starts_with('/') {
        return Err(format!("AWS_LAMBDA_RUNTIME_API={v:?} has no host"));
    }
    Ok(format!("http://{rest}"))
}

/// The register request body for these event types.
pub fn register_body(events: &[&str]) -> String {
    serde_json::json!({ "events": events }).to_string()
}

/// The subscription request body (Telemetry API, schema 2022-12-13 shape); `destination`
/// is the listener's URI, secret path included.
pub fn subscription_body(sub: &Subscription, destination: &str) -> String {
    serde_json::json!({
        "schemaVersion": sub.schema_version,
        "destination": {
            "protocol": "HTTP",
            "URI": destination,
        },
        "types": sub.types,
        "buffering": {
            "maxItems": sub.buffering.max_items,
            "maxBytes": sub.buffering.max_bytes,
            "timeoutMs": sub.buffering.timeout_ms,
        },
    })
    .to_string()
}

#[derive(Deserialize)]
struct RawNext {
    #[serde(rename = "eventType")]
    event_type: String,
    #[serde(rename = "deadlineMs", default)]
    deadline_ms: u64,
    #[serde(rename = "requestId", default)]
    request_id: String,
    #[serde(rename = "shutdownReason", default)]
    shutdown_reason: String,
}

/// Parses an `event/next` body.
pub fn parse_next(body: &str) -> Result<NextEvent, ApiError> {
    let raw: RawNext = serde_json::from_str(body)
        .map_err(|e| ApiError::BadResponse(format!("event/next body: {e}")))?;
    if raw.event_type.eq_ignore_ascii_case("INVOKE") {
        Ok(NextEvent::Invoke {
            request_id: raw.request_id,
            deadline_ms: raw.deadline_ms,
        })
    } else if raw.event_type.eq_ignore_ascii_case("SHUTDOWN") {
        Ok(NextEvent::Shutdown {
            reason: raw.shutdown_reason.to_ascii_lowercase(),
            deadline_ms: raw.deadline_ms,
        })
    } else {
        Err(ApiError::BadResponse(format!(
            "unknown eventType {:?}",
            raw.event_type
        )))
    }
}

#[derive(Deserialize, Default)]
struct LambdaError {
    #[serde(rename = "errorType", default)]
    error_type: String,
    #[serde(rename = "errorMessage", default)]
    error_message: String,
}

type Response = ureq::http::Response<ureq::Body>;

impl RuntimeApi {
    pub fn new(runtime_api: &str) -> Result<RuntimeApi, String> {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(None)
            .max_idle_connections(4)
            // The Runtime API's messages are a few hundred bytes: ureq's 128 KiB default
            // buffers cost a fill per call on the per-invocation path.
            .input_buffer_size(RUNTIME_API_BUFFER)
            .output_buffer_size(RUNTIME_API_BUFFER)
            .build()
            .new_agent();
        Ok(RuntimeApi {
            base: base_url(runtime_api)?,
            agent,
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Registers for `events` (INVOKE and SHUTDOWN, or SHUTDOWN only on Lambda Managed
    /// Instances), asking for the account id; returns the identifier and the function.
    pub fn register(&self, name: &str, events: &[&str]) -> Result<Registration, ApiError> {
        let resp = self
            .agent
            .post(self.url(&format!("{EXTENSION_PATH}/register")))
            .config()
            .timeout_global(Some(CALL_TIMEOUT))
            .build()
            .header("Lambda-Extension-Name", name)
            .header("Lambda-Extension-Accept-Feature", "accountId")
            .header("Content-Type", "application/json")
            .send(register_body(events));
        let mut resp = ok_response(resp)?;
        let id = resp
            .headers()
            .get("Lambda-Extension-Identifier")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| {
                ApiError::BadResponse("register: no Lambda-Extension-Identifier header".into())
            })?;
        let body = resp.body_mut().read_to_vec().unwrap_or_default();
        let raw: RawRegistration = serde_json::from_slice(&body).unwrap_or_default();
        Ok(Registration {
            id,
            function_name: raw.function_name.filter(|v| !v.is_empty()),
            function_version: raw.function_version.filter(|v| !v.is_empty()),
            account_id: raw.account_id.filter(|v| !v.is_empty()),
        })
    }

    /// Long-polls for the next event. No timeout: the sandbox may freeze inside this call.
    pub fn next_event(&self, id: &str) -> Result<NextEvent, ApiError> {
        let resp = self
            .agent
            .get(self.url(&format!("{EXTENSION_PATH}/event/next")))
            .header("Lambda-Extension-Identifier", id)
            .call();
        let mut resp = ok_response(resp)?;
        let body = resp
            .body_mut()
            .read_to_string()
            .map_err(|e| ApiError::Transport(e.to_string()))?;
        parse_next(&body)
    }

    /// Subscribes the listener at `destination` (its URI) to the Telemetry API.
    pub fn subscribe(
        &self,
        id: &str,
        sub: &Subscription,
        destination: &str,
    ) -> Result<Subscribed, ApiError> {
        let resp = self
            .agent
            .put(self.url(TELEMETRY_PATH))
            .config()
            .timeout_global(Some(CALL_TIMEOUT))
            .build()
            .header("Lambda-Extension-Identifier", id)
            .header("Content-Type", "application/json")
            .send(subscription_body(sub, destination));
        let mut resp = ok_response(resp)?;
        let _ = resp.body_mut().read_to_vec();
        Ok(if resp.status().as_u16() == 202 {
            Subscribed::NotSupported
        } else {
            Subscribed::Yes
        })
    }

    /// Reports an init failure (`/init/error`): Lambda fails the function's init. Only for
    /// settings the user made fatal with `KINESIS_TELEMETRY_FAIL_ON_ERROR`.
    pub fn init_error(&self, id: &str, reason: &str, message: &str) -> Result<(), ApiError> {
        self.report_error("init/error", id, reason, message)
    }

    /// Reports a failure before exiting (`/exit/error`).
    pub fn exit_error(&self, id: &str, reason: &str, message: &str) -> Result<(), ApiError> {
        self.report_error("exit/error", id, reason, message)
    }

    fn report_error(
        &self,
        what: &str,
        id: &str,
        reason: &str,
        message: &str,
    ) -> Result<(), ApiError> {
        let error_type = format!("Extension.{reason}");
        let body = serde_json::json!({
            "errorMessage": message,
            "errorType": error_type,
            "stackTrace": [],
        })
        .to_string();
        let resp = self
            .agent
            .post(self.url(&format!("{EXTENSION_PATH}/{what}")))
            .config()
            .timeout_global(Some(CALL_TIMEOUT))
            .build()
            .header("Lambda-Extension-Identifier", id)
            .header("Lambda-Extension-Function-Error-Type", &error_type)
            .header("Content-Type", "application/json")
            .send(body);
        let mut resp = ok_response(resp)?;
        let _ = resp.body_mut().read_to_vec();
        Ok(())
    }
}

/// Passes 2xx answers through; turns everything else into an [`ApiError`] carrying Lambda's
/// `errorType` / `errorMessage`.
fn ok_response(resp: Result<Response, ureq::Error>) -> Result<Response, ApiError> {
    let mut resp = resp.map_err(|e| ApiError::Transport(e.to_string()))?;
    let status = resp.status().as_u16();
    if (200..300).contains(&status) {
        return Ok(resp);
    }
    let body = resp.body_mut().read_to_string().unwrap_or_default();
    let err: LambdaError = serde_json::from_str(&body).unwrap_or_default();
    Err(ApiError::Status {
        status,
        error_type: if err.error_type.is_empty() {
            "Unknown".into()
        } else {
            err.error_type
        },
        message: if err.error_message.is_empty() {
            body.chars().take(200).collect()
        } else {
            err.error_message
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtime_api_forms() {
        assert_eq!(base_url("127.0.0.1:9001").unwrap(), "http://127.0.0.1:9001");
        assert_eq!(
            base_url("http://localhost:8080/prefix/").unwrap(),
            "http://localhost:8080/prefix"
        );
        assert!(base_url("").is_err());
        assert!(base_url("https://x:1").is_err());
        assert!(base_url("http://").is_err());
    }

    #[test]
    fn next_event_shapes_from_lambda() {
        let invoke = r#"{"eventType":"INVOKE","deadlineMs":1676051991311,"requestId":"3da1f2dc-3222-475e-9205-e2e6c6318895","invokedFunctionArn":"arn:aws:lambda:us-east-1:123456789012:function:f","tracing":{"type":"X-Amzn-Trace-Id","value":"Root=1-5f35ae12-0c0fec141ab77a00bc047aa2;Parent=2be948a625588e32;Sampled=1"}}"#;
        assert_eq!(
            parse_next(invoke).unwrap(),
            NextEvent::Invoke {
                request_id: "3da1f2dc-3222-475e-9205-e2e6c6318895".into(),
                deadline_ms: 1676051991311
            }
        );
        let shutdown =
            r#"{"eventType":"SHUTDOWN","shutdownReason":"SPINDOWN","deadlineMs":1676051993311}"#;
        assert_eq!(
            parse_next(shutdown).unwrap(),
            NextEvent::Shutdown {
                reason: "spindown".into(),
                deadline_ms: 1676051993311
            }
        );
        assert!(parse_next(r#"{"eventType":"RESTORE"}"#).is_err());
        assert!(parse_next("garbage").is_err());
    }

    #[test]
    fn register_bodies_and_refusals() {
        assert_eq!(
            register_body(&["INVOKE", "SHUTDOWN"]),
            r#"{"events":["INVOKE","SHUTDOWN"]}"#
        );
        assert_eq!(register_body(&["SHUTDOWN"]), r#"{"events":["SHUTDOWN"]}"#);
        let refused = ApiError::Status {
            status: 400,
            error_type: "Extension.InvalidEventType".into(),
            message: "INVOKE is not supported".into(),
        };
        assert!(refused.is_invalid_event_type());
        let other = ApiError::Status {
            status: 403,
            error_type: "Extension.InvalidExtensionName".into(),
            message: "".into(),
        };
        assert!(!other.is_invalid_event_type());
    }

    #[test]
    fn subscription_body_matches_the_documented_shape() {
        let sub = Subscription {
            schema_version: "2022-12-13".into(),
            types: vec!["platform", "function"],
            buffering: Buffering {
                max_items: 1000,
                max_bytes: 262144,
                timeout_ms: 100,
            },
        };
        let v: serde_json::Value = serde_json::from_str(&subscription_body(
            &sub,
            "http://sandbox.localdomain:4243/0123456789abcdef0123456789abcdef",
        ))
        .unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "schemaVersion": "2022-12-13",
                "destination": {
                    "protocol": "HTTP",
                    "URI": "http://sandbox.localdomain:4243/0123456789abcdef0123456789abcdef"
                },
                "types": ["platform", "function"],
                "buffering": {"maxItems": 1000, "maxBytes": 262144, "timeoutMs": 100}
            })
        );
    }
}
