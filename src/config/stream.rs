//! Where to deliver: the stream, its region and endpoint, and the function's credentials;
//! read together because delivery cannot work without any of them.

use super::reader::Reader;
use super::{Problem, PREFIX};
use crate::kinesis::credentials::{check_container_uri, FULL_URI_VAR, TOKEN_FILE_VAR, TOKEN_VAR};
use crate::kinesis::{AuthToken, ContainerEndpoint, CredentialSource, Credentials, StreamTarget};

/// Where and how to deliver. Present only when delivery can work.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamAccess {
    pub stream: StreamTarget,
    pub region: String,
    pub endpoint: String,
    pub credentials: CredentialSource,
}

/// Stream, region, endpoint and credentials; `None` (with a problem) when delivery can't work.
pub fn read_stream_access(r: &mut Reader<'_>) -> Option<StreamAccess> {
    let stream = read_stream(r);
    // A stream ARN names its region; it wins over AWS_REGION so cross-region streams work.
    let region = stream
        .as_ref()
        .and_then(|s| s.region().map(str::to_string))
        .or_else(|| r.raw("AWS_REGION"))
        .or_else(|| r.raw("AWS_DEFAULT_REGION"));
    if region.is_none() {
        r.problems.push(Problem::disabling(
            "AWS_REGION is not set (and the stream is not an ARN): the Kinesis region is unknown; telemetry is not delivered".to_string(),
        ));
    }
    let endpoint = read_endpoint(r, region.as_deref());
    let credentials = read_credentials(r);
    Some(StreamAccess {
        stream: stream?,
        region: region?,
        endpoint: endpoint?,
        credentials: credentials?,
    })
}

/// `KINESIS_TELEMETRY_STREAM`, else `KINESIS_STREAM_NAME`: a stream name or ARN.
fn read_stream(r: &mut Reader<'_>) -> Option<StreamTarget> {
    match r
        .setting("STREAM")
        .1
        .map(|v| (format!("{PREFIX}STREAM"), v))
        .or_else(|| {
            r.raw("KINESIS_STREAM_NAME")
                .map(|v| ("KINESIS_STREAM_NAME".to_string(), v))
        }) {
        None => {
            r.problems.push(Problem::disabling(format!(
                "no stream set: set {PREFIX}STREAM to the Kinesis stream's name or ARN; telemetry is not delivered"
            )));
            None
        }
        Some((var, v)) => match StreamTarget::parse(&v) {
            Ok(s) => Some(s),
            Err(why) => {
                r.problems.push(Problem::disabling(format!(
                    "{var}={v:?} is invalid: {why}; telemetry is not delivered"
                )));
                None
            }
        },
    }
}

/// The first endpoint variable set, else the region's public endpoint.
fn read_endpoint(r: &Reader<'_>, region: Option<&str>) -> Option<String> {
    let endpoint = ["ENDPOINT"]
        .iter()
        .map(|n| format!("{PREFIX}{n}"))
        .chain(["AWS_ENDPOINT_URL_KINESIS".into(), "AWS_ENDPOINT_URL".into()])
        .find_map(|var| r.raw(&var));
    // Checked (scheme, host, no query) where it is used: KinesisClient::new.
    match (endpoint, region) {
        (Some(v), _) => Some(v.trim_end_matches('/').to_string()),
        (None, Some(region)) => Some(crate::kinesis::endpoint_for_region(region)),
        (None, None) => None,
    }
}

/// The function's credentials: `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and
/// `AWS_SESSION_TOKEN` when the keys are set (they win, as in the SDKs' chain), else the
/// container credentials endpoint (`AWS_CONTAINER_CREDENTIALS_FULL_URI`: what Lambda gives a
/// SnapStart function); a problem naming what to set.
fn read_credentials(r: &mut Reader<'_>) -> Option<CredentialSource> {
    let key = r.raw("AWS_ACCESS_KEY_ID");
    let secret = r.raw("AWS_SECRET_ACCESS_KEY");
    if let (Some(access_key_id), Some(secret_access_key)) = (&key, &secret) {
        return Some(CredentialSource::Environment(Credentials {
            access_key_id: access_key_id.clone(),
            secret_access_key: secret_access_key.clone(),
            session_token: r.raw("AWS_SESSION_TOKEN"),
        }));
    }
    if let Some(uri) = r.raw(FULL_URI_VAR) {
        return read_container_endpoint(r, &uri).map(CredentialSource::Container);
    }
    let mut missing = Vec::new();
    if key.is_none() {
        missing.push("AWS_ACCESS_KEY_ID");
    }
    if secret.is_none() {
        missing.push("AWS_SECRET_ACCESS_KEY");
    }
    r.problems.push(Problem::disabling(format!(
        "credentials missing: {} not set, nor {FULL_URI_VAR} (with {TOKEN_VAR} or \
         {TOKEN_FILE_VAR}); telemetry is not delivered",
        missing.join(" and ")
    )));
    None
}

/// The container credentials endpoint: its URI checked as the SDKs check it, and the token
/// (the file wins over the value, as in the SDKs).
fn read_container_endpoint(r: &mut Reader<'_>, uri: &str) -> Option<ContainerEndpoint> {
    match check_container_uri(uri) {
        Ok(uri) => {
            let token = match (r.raw(TOKEN_FILE_VAR), r.raw(TOKEN_VAR)) {
                (Some(file), _) => AuthToken::File(file.into()),
                (None, Some(value)) => AuthToken::Value(value),
                (None, None) => AuthToken::None,
            };
            Some(ContainerEndpoint { uri, token })
        }
        Err(why) => {
            r.problems.push(Problem::disabling(format!(
                "{FULL_URI_VAR}={uri:?} is invalid: {why}; telemetry is not delivered"
            )));
            None
        }
    }
}
