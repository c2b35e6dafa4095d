//! Where the signing credentials come from: the function's environment
//! (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`), or the container
//! credentials endpoint (`AWS_CONTAINER_CREDENTIALS_FULL_URI`, with the header token of
//! `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE` or `AWS_CONTAINER_AUTHORIZATION_TOKEN`), which is
//! what Lambda gives a SnapStart function (and its extensions) instead of the keys.
//!
//! The endpoint is asked lazily, right before a PutRecords that needs credentials (none yet, or
//! the last ones expire within [`REFRESH_BEFORE`]), on the client's own cuttable agent and within
//! that request's deadline: so a fetch is only ever made inside a flusher window, never during
//! init (a SnapStart snapshot is taken after init, and credentials fetched then would be shared
//! by every restored environment), and never in flight across a freeze. A SnapStart restore
//! forgets what was fetched (`KinesisClient::drop_connections`).
//!
//! The URI is checked as the AWS SDKs check it: `https` to any host; `http` only to a loopback
//! host (127.0.0.0/8, `::1`, `localhost`) or the ECS / EKS link-local addresses (169.254.170.2,
//! 169.254.170.23, `fd00:ec2::23`). Unlike the SDKs, a host name other than `localhost` is not
//! resolved to be checked: it is refused.
//!
//! Invariant: no error or `Debug` output of this module holds the token, a secret key or a
//! session token; errors name the endpoint by its host only.

use std::fmt;
use std::io::Read;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Deserialize;

use super::sign::Signer;
use super::SIGNING_SERVICE;

/// Fetched credentials are replaced when they expire within this long. botocore refreshes
/// earlier (it tries from 15 minutes before, and insists from 10); with Lambda's credentials
/// living hours, 5 minutes is margin enough for a PutRecords (at most `REQUEST_TIMEOUT_MS`)
/// signed just before to land while they are valid. Once due they are not used again: a
/// failed fetch fails the request (its records stay and are resent), as inside botocore's
/// mandatory window.
pub const REFRESH_BEFORE: Duration = Duration::from_secs(5 * 60);

/// Largest credentials answer read (a real one is about 1.5 KiB).
const MAX_ANSWER_BYTES: u64 = 64 * 1024;
/// Largest token file read (a real token is a few hundred bytes to a few KiB).
const MAX_TOKEN_BYTES: u64 = 16 * 1024;

/// The variable naming the endpoint (named in every line about it).
pub const FULL_URI_VAR: &str = "AWS_CONTAINER_CREDENTIALS_FULL_URI";
/// The variable holding the header token.
pub const TOKEN_VAR: &str = "AWS_CONTAINER_AUTHORIZATION_TOKEN";
/// The variable naming a file that holds the header token (read at each fetch: it may rotate).
pub const TOKEN_FILE_VAR: &str = "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE";

/// AWS credentials: a key pair and, for temporary ones, a session token. `Debug` never shows
/// the secrets.
#[derive(Clone, PartialEq)]
pub struct Credentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"** redacted **")
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "** redacted **"),
            )
            .finish()
    }
}

/// Where the client's credentials come from.
#[derive(Debug, Clone, PartialEq)]
pub enum CredentialSource {
    /// The keys in the function's environment (they win, as in the SDKs' chain).
    Environment(Credentials),
    /// The container credentials endpoint (SnapStart).
    Container(ContainerEndpoint),
}

/// The container credentials endpoint and how to authorize with it.
#[derive(Clone, PartialEq)]
pub struct ContainerEndpoint {
    /// A URI [`check_container_uri`] accepted.
    pub uri: String,
    pub token: AuthToken,
}

/// The `Authorization` header's value for the endpoint.
#[derive(Clone, PartialEq)]
pub enum AuthToken {
    /// Neither token variable is set: no header.
    None,
    /// `AWS_CONTAINER_AUTHORIZATION_TOKEN`.
    Value(String),
    /// `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE`: read at each fetch.
    File(PathBuf),
}

impl fmt::Debug for ContainerEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let token = match &self.token {
            AuthToken::None => "none".to_owned(),
            AuthToken::Value(_) => "** redacted **".to_owned(),
            AuthToken::File(p) => format!("file {}", p.display()),
        };
        f.debug_struct("ContainerEndpoint")
            .field("uri", &self.uri)
            .field("token", &token)
            .finish()
    }
}

impl ContainerEndpoint {
    /// The endpoint's host (and port), as lines about it name it.
    pub fn host(&self) -> String {
        self.uri
            .parse::<ureq::http::Uri>()
            .ok()
            .and_then(|u| u.authority().map(|a| a.as_str().to_owned()))
            .unwrap_or_else(|| "?".to_owned())
    }

    /// The token to send now (a file is read again each time: it may have rotated).
    fn token(&self) -> Result<Option<String>, String> {
        let token = match &self.token {
            AuthToken::None => return Ok(None),
            AuthToken::Value(v) => v.clone(),
            AuthToken::File(path) => {
                let mut text = String::new();
                std::fs::File::open(path)
                    .and_then(|f| f.take(MAX_TOKEN_BYTES).read_to_string(&mut text))
                    .map_err(|e| {
                        format!("cannot read {TOKEN_FILE_VAR} ({}): {e}", path.display())
                    })?;
                // A file written by `echo` ends with a line break, which a header cannot hold.
                text.trim_end().to_owned()
            }
        };
        if token.is_empty() || token.chars().any(|c| c.is_control()) {
            return Err(
                "the authorization token is empty or holds a line break or control character"
                    .to_owned(),
            );
        }
        Ok(Some(token))
    }
}

/// `uri` when the SDKs would accept it as `AWS_CONTAINER_CREDENTIALS_FULL_URI` (see the module
/// docs), else why not.
pub fn check_container_uri(uri: &str) -> Result<String, String> {
    let parsed: ureq::http::Uri = uri.parse().map_err(|_| "not a URI".to_owned())?;
    let host = parsed
        .host()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| "no host".to_owned())?;
    if parsed.authority().is_some_and(|a| a.as_str().contains('@')) {
        return Err("credentials in the URI are not supported".to_owned());
    }
    match parsed.scheme_str() {
        Some("https") => Ok(uri.to_owned()),
        Some("http") if allowed_http_host(host) => Ok(uri.to_owned()),
        Some("http") => Err(format!(
            "plain http is allowed only to a loopback host (127.0.0.0/8, ::1, localhost) or \
             169.254.170.2, 169.254.170.23, fd00:ec2::23, not {host}"
        )),
        _ => Err("must start with http:// or https://".to_owned()),
    }
}

/// A host plain http may go to: loopback, or the ECS / EKS credentials addresses.
fn allowed_http_host(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    match host.parse::<IpAddr>() {
        Ok(ip) if ip.is_loopback() => true,
        Ok(ip) => ["169.254.170.2", "169.254.170.23", "fd00:ec2::23"]
            .iter()
            .any(|a| a.parse::<IpAddr>().ok() == Some(ip)),
        Err(_) => false,
    }
}

/// Whether credentials expiring at `expiration` must be replaced before signing at `now`.
pub fn refresh_due(expiration: SystemTime, now: SystemTime) -> bool {
    expiration <= now + REFRESH_BEFORE
}

/// `YYYY-MM-DDTHH:MM:SS(.fff)?Z` (ISO 8601, UTC, as the endpoint writes `Expiration`) as a
/// time; anything else is an error saying what was expected.
pub fn parse_expiration(s: &str) -> Result<SystemTime, String> {
    let bad = || format!("Expiration {:?} is not YYYY-MM-DDTHH:MM:SSZ", clip(s));
    let b = s.as_bytes();
    if !s.is_ascii()
        || b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
    {
        return Err(bad());
    }
    if b[16] != b':' || b[b.len() - 1] != b'Z' {
        return Err(bad());
    }
    let num = |from: usize, to: usize| -> Result<u64, String> {
        let part = &s[from..to];
        match part.bytes().all(|c| c.is_ascii_digit()) {
            true => part.parse::<u64>().map_err(|_| bad()),
            false => Err(bad()),
        }
    };
    let (year, month, day) = (num(0, 4)?, num(5, 7)?, num(8, 10)?);
    let (hour, minute, second) = (num(11, 13)?, num(14, 16)?, num(17, 19)?);
    let nanos = match &s[19..s.len() - 1] {
        "" => 0,
        frac if frac.len() >= 2 && frac.len() <= 10 && frac.starts_with('.') => {
            let digits = &frac[1..];
            let n = num(20, 20 + digits.len())?;
            n * 10u64.pow(9 - digits.len() as u32)
        }
        _ => return Err(bad()),
    };
    if year < 1970 || !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return Err(bad());
    }
    if hour > 23 || minute > 59 || second > 59 {
        return Err(bad());
    }
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3_600 + minute * 60 + second;
    Ok(UNIX_EPOCH + Duration::new(secs, nanos as u32))
}

fn is_leap(year: u64) -> bool {
    year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400))
}

fn days_in_month(year: u64, month: u64) -> u64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 to a date of 1970 or later.
fn days_from_civil(year: u64, month: u64, day: u64) -> u64 {
    let before_year: u64 = (1970..year)
        .map(|y| if is_leap(y) { 366 } else { 365 })
        .sum();
    let before_month: u64 = (1..month).map(|m| days_in_month(year, m)).sum();
    before_year + before_month + day - 1
}

/// At most 40 characters of what the endpoint sent, for an error line (never a secret field).
fn clip(s: &str) -> String {
    s.chars().take(40).collect()
}

/// The endpoint's answer.
#[derive(Deserialize)]
struct CredentialsAnswer {
    #[serde(rename = "AccessKeyId")]
    access_key_id: Option<String>,
    #[serde(rename = "SecretAccessKey")]
    secret_access_key: Option<String>,
    #[serde(rename = "Token")]
    token: Option<String>,
    #[serde(rename = "Expiration")]
    expiration: Option<String>,
}

/// Credentials and their expiration from the endpoint's 200 answer. Errors never quote the
/// body (it holds the secrets).
pub fn parse_answer(body: &[u8]) -> Result<(Credentials, SystemTime), String> {
    let a: CredentialsAnswer = serde_json::from_slice(body)
        .map_err(|_| "the answer is not a JSON credentials object".to_owned())?;
    let (Some(key), Some(secret), Some(expiration)) =
        (a.access_key_id, a.secret_access_key, a.expiration)
    else {
        return Err("the answer lacks AccessKeyId, SecretAccessKey or Expiration".to_owned());
    };
    if key.trim().is_empty() || secret.trim().is_empty() {
        return Err("the answer's AccessKeyId or SecretAccessKey is empty".to_owned());
    }
    let expiration = parse_expiration(&expiration)?;
    let credentials = Credentials {
        access_key_id: key,
        secret_access_key: secret,
        session_token: a.token.filter(|t| !t.is_empty()),
    };
    Ok((credentials, expiration))
}

/// Why a fetch failed. Never holds a secret.
#[derive(Debug)]
pub enum FetchError {
    /// No answer: the client words it (it maps transport errors).
    Transport(ureq::Error),
    /// What went wrong, in words for the log line (after the endpoint's host).
    Refused(String),
}

/// Asks the endpoint for credentials with `agent` (the client's: the `Interrupt` cuts it),
/// within `timeout` in all and `connect_timeout` for a new connection.
pub fn fetch(
    agent: &ureq::Agent,
    endpoint: &ContainerEndpoint,
    timeout: Duration,
    connect_timeout: Duration,
) -> Result<(Credentials, SystemTime), FetchError> {
    let token = endpoint.token().map_err(FetchError::Refused)?;
    let mut request = agent
        .get(&endpoint.uri)
        .config()
        .timeout_global(Some(timeout))
        .timeout_connect(Some(connect_timeout.min(timeout)))
        .build()
        .header("accept", "application/json");
    if let Some(token) = &token {
        request = request.header("authorization", token.as_str());
    }
    let mut response = request.call().map_err(FetchError::Transport)?;
    let status = response.status().as_u16();
    if status != 200 {
        return Err(FetchError::Refused(format!("it answered HTTP {status}")));
    }
    let body = response
        .body_mut()
        .with_config()
        .limit(MAX_ANSWER_BYTES)
        .read_to_vec()
        .map_err(FetchError::Transport)?;
    parse_answer(&body).map_err(FetchError::Refused)
}

/// What the client signs with: fixed keys, or the endpoint's, fetched when due and kept until
/// then (or until a SnapStart restore).
pub struct Keys {
    region: String,
    source: KeySource,
}

enum KeySource {
    Fixed(Signer, Vec<String>),
    Fetched {
        endpoint: ContainerEndpoint,
        current: Mutex<Option<FetchedKeys>>,
    },
}

/// The last credentials fetched: their signer, when they expire, their secrets (to scrub).
struct FetchedKeys {
    signer: Signer,
    expiration: SystemTime,
    secrets: Vec<String>,
}

impl Keys {
    /// Keys for `region`; the variable that is empty, if one is.
    pub fn new(source: &CredentialSource, region: &str) -> Result<Keys, &'static str> {
        let source = match source {
            CredentialSource::Environment(c) => {
                for (value, what) in [
                    (&c.access_key_id, "AWS_ACCESS_KEY_ID"),
                    (&c.secret_access_key, "AWS_SECRET_ACCESS_KEY"),
                ] {
                    if value.trim().is_empty() {
                        return Err(what);
                    }
                }
                KeySource::Fixed(signer(c, region), secrets_of(c, None))
            }
            CredentialSource::Container(endpoint) => KeySource::Fetched {
                endpoint: endpoint.clone(),
                current: Mutex::new(None),
            },
        };
        Ok(Keys {
            region: region.to_owned(),
            source,
        })
    }

    pub fn region(&self) -> &str {
        &self.region
    }

    /// A signer for a request at `now`, unless credentials must be fetched first.
    pub fn ready(&self, now: SystemTime) -> Option<Signer> {
        match &self.source {
            KeySource::Fixed(signer, _) => Some(signer.clone()),
            KeySource::Fetched { current, .. } => lock(current)
                .as_ref()
                .filter(|k| !refresh_due(k.expiration, now))
                .map(|k| k.signer.clone()),
        }
    }

    /// The endpoint to fetch from (`None`: fixed keys).
    pub fn endpoint(&self) -> Option<&ContainerEndpoint> {
        match &self.source {
            KeySource::Fixed(..) => None,
            KeySource::Fetched { endpoint, .. } => Some(endpoint),
        }
    }

    /// Keeps freshly fetched credentials; their signer.
    pub fn store(&self, credentials: &Credentials, expiration: SystemTime) -> Signer {
        let signer = signer(credentials, &self.region);
        if let KeySource::Fetched { current, endpoint } = &self.source {
            *lock(current) = Some(FetchedKeys {
                signer: signer.clone(),
                expiration,
                secrets: secrets_of(credentials, Some(endpoint)),
            });
        }
        signer
    }

    /// Forgets fetched credentials (a SnapStart restore: they were fetched before the
    /// snapshot, and every restored copy would share them). Fixed keys stay.
    pub fn forget(&self) {
        if let KeySource::Fetched { current, .. } = &self.source {
            *lock(current) = None;
        }
    }

    /// Strings that must never leave in an error message.
    pub fn secrets(&self) -> Vec<String> {
        match &self.source {
            KeySource::Fixed(_, secrets) => secrets.clone(),
            KeySource::Fetched { current, endpoint } => {
                let mut s = lock(current)
                    .as_ref()
                    .map(|k| k.secrets.clone())
                    .unwrap_or_default();
                s.extend(endpoint.token().ok().flatten());
                s
            }
        }
    }
}

impl fmt::Debug for Keys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.source {
            KeySource::Fixed(signer, _) => f.debug_tuple("Keys").field(signer).finish(),
            KeySource::Fetched { endpoint, .. } => f.debug_tuple("Keys").field(endpoint).finish(),
        }
    }
}

fn signer(c: &Credentials, region: &str) -> Signer {
    Signer::new(
        &c.access_key_id,
        &c.secret_access_key,
        c.session_token.as_deref(),
        region,
        SIGNING_SERVICE,
    )
}

fn secrets_of(c: &Credentials, endpoint: Option<&ContainerEndpoint>) -> Vec<String> {
    let mut s = vec![c.secret_access_key.clone()];
    s.extend(c.session_token.clone());
    if let Some(AuthToken::Value(t)) = endpoint.map(|e| &e.token) {
        s.push(t.clone());
    }
    s
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests;
