//! The HTTP client that sends one signed PutRecords request.
//!
//! One `ureq::Agent` (keep-alive pool, rustls with the bundled Mozilla roots or a
//! CA file) serves the whole process. Pooled connections idle longer than
//! [`POOL_MAX_IDLE_AGE`] are not reused, so that after a sandbox freeze a connection
//! the server has long closed is not picked. Non-2xx answers are read and turned
//! into [`RequestError::Http`]; a 2xx body that is not a PutRecords response of the
//! request's length is [`RequestError::MalformedResponse`]: nothing the network
//! returns can panic.

use super::connect::{self, ConnectTimes, Interrupt};
use super::credentials::{self, FetchError, Keys, FULL_URI_VAR};
use super::{
    error_from_response, parse_put_records_response, put_records_body, PutRecordsResponse, Record,
    RequestError, StreamTarget, TimeoutPhase, CONTENT_TYPE, PUT_RECORDS_TARGET,
};
use crate::kinesis::sign::Signer;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// Largest response body read. 500 result entries take about 100 KiB.
pub const MAX_RESPONSE_BYTES: u64 = 1024 * 1024;
/// Pooled connections idle longer than this are not reused (see module docs).
pub const POOL_MAX_IDLE_AGE: Duration = Duration::from_secs(15);

const USER_AGENT: &str = concat!("kinesis-telemetry-extension/", env!("CARGO_PKG_VERSION"));

/// Transport and retry settings for Kinesis: the client's timeouts and trust, and how often
/// and how far apart the flusher retries.
#[derive(Debug, Clone, PartialEq)]
pub struct Http {
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    pub ca_file: Option<PathBuf>,
    pub max_attempts: u32,
    pub backoff_base: Duration,
    pub backoff_max: Duration,
}

/// Everything the client needs. `Debug` never shows a secret or a token (see
/// [`super::Credentials`], [`super::ContainerEndpoint`]).
#[derive(Clone, Debug)]
pub struct ClientSettings {
    /// `http://` or `https://` base URL, path prefix allowed
    /// (e.g. [`super::endpoint_for_region`] or `http://127.0.0.1:4567`).
    pub endpoint: String,
    /// Signing region.
    pub region: String,
    pub credentials: super::CredentialSource,
    /// Limit on DNS + TCP connect + TLS handshake.
    pub connect_timeout: Duration,
    /// PEM bundle of CA certificates to trust for an `https` endpoint. When set it
    /// *replaces* the bundled Mozilla roots (like `AWS_CA_BUNDLE` in the AWS CLI):
    /// it is meant for a private endpoint or a TLS-inspecting proxy.
    pub ca_file: Option<PathBuf>,
}

/// Why the client could not be built: a setting to fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SetupError {
    Endpoint {
        endpoint: String,
        reason: String,
    },
    CaFile {
        path: PathBuf,
        reason: String,
    },
    /// An empty region or credential.
    Missing(&'static str),
}

impl fmt::Display for SetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Endpoint { endpoint, reason } => {
                write!(f, "Kinesis endpoint {endpoint:?} is invalid: {reason}")
            }
            Self::CaFile { path, reason } => {
                write!(f, "CA file {} is unusable: {reason}", path.display())
            }
            Self::Missing(what) => write!(f, "{what} is empty"),
        }
    }
}

impl std::error::Error for SetupError {}

/// A Kinesis client for PutRecords: one keep-alive agent (rebuilt after an [`Interrupt`]),
/// and the keys it signs with (fetched from the container credentials endpoint on that same
/// agent, when that is where they come from: see [`credentials`]).
pub struct KinesisClient {
    config: ureq::config::Config,
    interrupt: Interrupt,
    /// The interrupt generation the current agent was built for.
    generation: std::sync::atomic::AtomicU64,
    connects: Arc<ConnectTimes>,
    url: String,
    keys: Keys,
}

impl fmt::Debug for KinesisClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KinesisClient")
            .field("url", &self.url)
            .field("keys", &self.keys)
            .finish_non_exhaustive()
    }
}

impl KinesisClient {
    pub fn new(s: ClientSettings) -> Result<Self, SetupError> {
        if s.region.trim().is_empty() {
            return Err(SetupError::Missing("AWS_REGION"));
        }
        let keys = Keys::new(&s.credentials, &s.region).map_err(SetupError::Missing)?;
        let url = request_url(&s.endpoint)?;

        let mut tls = ureq::tls::TlsConfig::builder();
        if let Some(path) = &s.ca_file {
            tls = tls.root_certs(load_ca_file(path)?);
        }
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(s.connect_timeout))
            .max_idle_age(POOL_MAX_IDLE_AGE)
            // A redirect means a wrong endpoint: hand the 3xx back to be reported.
            .max_redirects(0)
            .max_redirects_will_error(false)
            .user_agent(USER_AGENT)
            .tls_config(tls.build())
            .build();
        let connects = Arc::new(ConnectTimes::default());
        let agent = build_agent(&config, &connects);
        Ok(Self {
            config,
            interrupt: Interrupt::new(agent),
            generation: Default::default(),
            connects,
            url,
            keys,
        })
    }

    /// The signing region (named in fix hints).
    pub fn region(&self) -> &str {
        self.keys.region()
    }

    /// The URL requests go to (named in log lines).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Cuts this client's requests from another thread (see [`Interrupt`]).
    pub fn interrupt(&self) -> Interrupt {
        self.interrupt.clone()
    }

    /// How long the TCP connects made since the last call took.
    pub fn connect_times(&self) -> Vec<Duration> {
        self.connects.take()
    }

    /// Forgets every pooled connection (a SnapStart restore: the pool holds connections
    /// opened before the snapshot, which the server closed long ago, and which every restored
    /// copy would share): the agent is shut down and the next request builds a fresh one.
    /// Credentials fetched before the snapshot are forgotten too: the next request fetches.
    pub fn drop_connections(&self) {
        self.keys.forget();
        self.interrupt.fire();
    }

    /// Sends one PutRecords request and waits at most `timeout` for the whole
    /// exchange, of which at most `connect_timeout` for a new connection. `records` must
    /// respect the API limits (see `records::pack`); an empty slice is answered locally with
    /// an empty response. A request cut by the [`Interrupt`] is [`RequestError::Abandoned`].
    ///
    /// Credentials that must be fetched first (none yet, or due: see [`credentials`]) are
    /// fetched within the same `timeout`; a failed fetch is [`RequestError::Credentials`].
    pub fn put_records(
        &self,
        target: &StreamTarget,
        records: &[Record],
        timeout: Duration,
        connect_timeout: Duration,
    ) -> Result<PutRecordsResponse, RequestError> {
        if records.is_empty() {
            return Ok(PutRecordsResponse {
                records: Vec::new(),
            });
        }
        let generation = self.interrupt.generation();
        let deadline = Instant::now() + timeout;
        let result = self.signer(timeout, connect_timeout).and_then(|signer| {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(RequestError::Timeout(TimeoutPhase::Overall));
            }
            self.exchange(&signer, target, records, left, connect_timeout)
        });
        if self.interrupt.generation() == generation {
            return result;
        }
        // Cut: before a connection was made nothing was sent (a connect that did not finish,
        // or a credentials fetch); after, the request may have landed.
        result.map_err(|e| match e {
            RequestError::Timeout(TimeoutPhase::Connect)
            | RequestError::Connect(_)
            | RequestError::Credentials(_) => e,
            _ => RequestError::Abandoned,
        })
    }

    /// The signer for a request now: the keys at hand, or credentials fetched from the
    /// container endpoint within `timeout`.
    fn signer(&self, timeout: Duration, connect_timeout: Duration) -> Result<Signer, RequestError> {
        if let Some(signer) = self.keys.ready(SystemTime::now()) {
            return Ok(signer);
        }
        let Some(endpoint) = self.keys.endpoint() else {
            return Err(RequestError::Local("no credentials".to_owned()));
        };
        let agent = self.interrupt.agent(&self.generation, || {
            build_agent(&self.config, &self.connects)
        });
        // A connect to the credentials endpoint says nothing of how fast Kinesis connects.
        let seen = self.connects.take();
        let fetched = credentials::fetch(&agent, endpoint, timeout, connect_timeout);
        self.connects.restore(seen);
        match fetched {
            Ok((creds, expiration)) => Ok(self.keys.store(&creds, expiration)),
            Err(e) => {
                let why = match e {
                    FetchError::Refused(why) => why,
                    FetchError::Transport(e) => describe_fetch_failure(map_ureq_error(e)),
                };
                let host = endpoint.host();
                Err(self.scrub(RequestError::Credentials(format!(
                    "{FULL_URI_VAR} (host {host}): {why}"
                ))))
            }
        }
    }

    fn exchange(
        &self,
        signer: &Signer,
        target: &StreamTarget,
        records: &[Record],
        timeout: Duration,
        connect_timeout: Duration,
    ) -> Result<PutRecordsResponse, RequestError> {
        let body = put_records_body(target, records);
        let signed_headers = [
            ("content-type", CONTENT_TYPE),
            ("x-amz-target", PUT_RECORDS_TARGET),
        ];
        let auth = signer
            .sign("POST", &self.url, &signed_headers, &body, SystemTime::now())
            .map_err(|e| RequestError::Local(e.to_string()))?;

        let agent = self.interrupt.agent(&self.generation, || {
            build_agent(&self.config, &self.connects)
        });
        let mut request = agent
            .post(&self.url)
            .config()
            .timeout_global(Some(timeout))
            .timeout_connect(Some(connect_timeout.min(timeout)))
            .build();
        for (name, value) in signed_headers {
            request = request.header(name, value);
        }
        for (name, value) in &auth {
            request = request.header(name.as_str(), value.as_str());
        }
        let mut response = request
            .send(&body[..])
            .map_err(|e| self.scrub(map_ureq_error(e)))?;

        let status = response.status().as_u16();
        let error_type = response
            .headers()
            .get("x-amzn-errortype")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let read = response
            .body_mut()
            .with_config()
            .limit(MAX_RESPONSE_BYTES)
            .read_to_vec();
        let result = if (200..300).contains(&status) {
            read.map_err(map_ureq_error)
                .and_then(|b| parse_put_records_response(&b, records.len()))
        } else {
            // The status alone classifies the failure if the body cannot be read.
            let body = read.unwrap_or_default();
            Err(error_from_response(status, error_type.as_deref(), &body))
        };
        result.map_err(|e| self.scrub(e))
    }

    /// Belt and braces on top of [`super::sanitize_message`]: blank out our own secrets.
    fn scrub(&self, e: RequestError) -> RequestError {
        let secrets = self.keys.secrets();
        let clean = |s: String| {
            secrets
                .iter()
                .filter(|x| x.len() >= 4)
                .fold(s, |s, x| s.replace(x.as_str(), "<redacted>"))
        };
        match e {
            RequestError::Connect(d) => RequestError::Connect(clean(d)),
            RequestError::Tls(d) => RequestError::Tls(clean(d)),
            RequestError::Io(d) => RequestError::Io(clean(d)),
            RequestError::Http {
                status,
                code,
                message,
            } => RequestError::Http {
                status,
                code: clean(code),
                message: clean(message),
            },
            RequestError::MalformedResponse(d) => RequestError::MalformedResponse(clean(d)),
            RequestError::Local(d) => RequestError::Local(clean(d)),
            RequestError::Credentials(d) => RequestError::Credentials(clean(d)),
            RequestError::Timeout(p) => RequestError::Timeout(p),
            RequestError::Abandoned => RequestError::Abandoned,
        }
    }
}

/// Opens one connection to the endpoint at `url` and closes it, to learn before the first
/// invocation whether Kinesis can be reached and how long a connect takes (TCP only: no
/// request is sent). Blocks up to `timeout`, or until `interrupt` fires.
pub fn probe_connect(
    url: &str,
    timeout: Duration,
    interrupt: &Interrupt,
) -> Result<Duration, RequestError> {
    let uri: ureq::http::Uri = url
        .parse()
        .map_err(|e: ureq::http::uri::InvalidUri| RequestError::Local(e.to_string()))?;
    let https = uri.scheme_str() == Some("https");
    let host = uri.host().unwrap_or_default().trim_matches(['[', ']']);
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    let started = Instant::now();
    let addrs: Vec<std::net::SocketAddr> = std::net::ToSocketAddrs::to_socket_addrs(&(host, port))
        .map_err(|_| RequestError::Connect("host not found".to_owned()))?
        .collect();
    let mut last = RequestError::Connect("host not found".to_owned());
    for addr in addrs {
        let left = timeout.saturating_sub(started.elapsed());
        if left.is_zero() {
            return Err(RequestError::Timeout(TimeoutPhase::Connect));
        }
        match interrupt.connect_once(addr, left) {
            Ok(()) => return Ok(started.elapsed()),
            Err(e) => last = map_ureq_error(e),
        }
    }
    Err(last)
}

/// An agent over [`connect::chain`]: every connection it makes can be cut by the
/// [`Interrupt`], a connect in progress included.
fn build_agent(config: &ureq::config::Config, connects: &Arc<ConnectTimes>) -> ureq::Agent {
    ureq::Agent::with_parts(
        config.clone(),
        connect::chain(connects.clone()),
        ureq::unversioned::resolver::DefaultResolver::default(),
    )
}

/// Validates the endpoint and returns the URL to POST to: the endpoint with a
/// trailing `/` (so `http://h:1/prefix` posts to `http://h:1/prefix/`).
pub(super) fn request_url(endpoint: &str) -> Result<String, SetupError> {
    let bad = |reason: &str| SetupError::Endpoint {
        endpoint: endpoint.to_owned(),
        reason: reason.to_owned(),
    };
    let uri: ureq::http::Uri = endpoint
        .parse()
        .map_err(|e: ureq::http::uri::InvalidUri| bad(&e.to_string()))?;
    match uri.scheme_str() {
        Some("http") | Some("https") => {}
        _ => return Err(bad("must start with http:// or https://")),
    }
    let authority = uri.authority().ok_or_else(|| bad("no host"))?;
    if authority.host().is_empty() {
        return Err(bad("no host"));
    }
    if authority.as_str().contains('@') {
        return Err(bad("credentials in the URL are not supported"));
    }
    if uri.query().is_some() {
        return Err(bad("a query string is not allowed"));
    }
    let path = uri.path().trim_end_matches('/');
    Ok(format!(
        "{}://{}{}/",
        uri.scheme_str().unwrap_or("https"),
        authority,
        path
    ))
}

fn load_ca_file(path: &PathBuf) -> Result<ureq::tls::RootCerts, SetupError> {
    let bad = |reason: String| SetupError::CaFile {
        path: path.clone(),
        reason,
    };
    let pem = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
    let mut certs = Vec::new();
    for item in ureq::tls::parse_pem(&pem) {
        match item {
            Ok(ureq::tls::PemItem::Certificate(c)) => certs.push(c),
            Ok(_) => {}
            Err(e) => return Err(bad(format!("invalid PEM: {e}"))),
        }
    }
    if certs.is_empty() {
        return Err(bad("no CERTIFICATE block found".to_owned()));
    }
    Ok(ureq::tls::RootCerts::new_with_certs(&certs))
}

/// A transport failure in the words of a credentials fetch.
fn describe_fetch_failure(e: RequestError) -> String {
    match e {
        RequestError::Timeout(TimeoutPhase::Connect) => "connecting timed out".to_owned(),
        RequestError::Timeout(_) => "it timed out before answering".to_owned(),
        RequestError::Connect(d) => format!("cannot connect ({d})"),
        RequestError::Tls(d) => format!("TLS failed ({d})"),
        RequestError::Io(d) => format!("the connection broke ({d})"),
        other => other.to_string(),
    }
}

fn map_ureq_error(e: ureq::Error) -> RequestError {
    use std::io::ErrorKind;
    use ureq::Timeout as T;
    match e {
        ureq::Error::Timeout(t) => RequestError::Timeout(match t {
            T::Resolve | T::Connect => TimeoutPhase::Connect,
            T::SendRequest | T::SendBody | T::PerWrite => TimeoutPhase::Send,
            T::RecvResponse | T::RecvBody | T::PerRead => TimeoutPhase::Receive,
            _ => TimeoutPhase::Overall,
        }),
        ureq::Error::HostNotFound => RequestError::Connect("host not found".to_owned()),
        ureq::Error::ConnectionFailed => RequestError::Connect("connection failed".to_owned()),
        ureq::Error::Io(io) if io.get_ref().is_some_and(is_tls_error) => {
            RequestError::Tls(io.to_string())
        }
        ureq::Error::Io(io) => match io.kind() {
            ErrorKind::ConnectionRefused
            | ErrorKind::AddrNotAvailable
            | ErrorKind::HostUnreachable
            | ErrorKind::NetworkUnreachable
            | ErrorKind::NetworkDown => RequestError::Connect(io.to_string()),
            ErrorKind::TimedOut | ErrorKind::WouldBlock => {
                RequestError::Timeout(TimeoutPhase::Overall)
            }
            _ => RequestError::Io(io.to_string()),
        },
        ureq::Error::Tls(d) => RequestError::Tls(d.to_owned()),
        ureq::Error::Rustls(d) => RequestError::Tls(d.to_string()),
        ureq::Error::Protocol(d) => RequestError::Io(format!("HTTP protocol error: {d}")),
        ureq::Error::BodyExceedsLimit(n) => {
            RequestError::MalformedResponse(format!("response body over {n} bytes"))
        }
        ureq::Error::BadUri(d) => RequestError::Local(d),
        ureq::Error::Http(d) => RequestError::Local(d.to_string()),
        other => RequestError::Io(other.to_string()),
    }
}

/// ureq hands a failed TLS handshake over as an `io::Error` wrapping a
/// `rustls::Error`. rustls is not a direct dependency, so the type is named through
/// the constructor of `ureq::Error::Rustls`, which takes exactly that type.
fn is_tls_error(inner: &(dyn std::error::Error + Send + Sync + 'static)) -> bool {
    fn downcast<'a, T: std::error::Error + 'static>(
        _variant: fn(T) -> ureq::Error,
        e: &'a (dyn std::error::Error + Send + Sync + 'static),
    ) -> Option<&'a T> {
        e.downcast_ref::<T>()
    }
    downcast(ureq::Error::Rustls, inner).is_some()
}

#[cfg(test)]
mod tests;
