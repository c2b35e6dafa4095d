//! A strict in-process fake of the container credentials endpoint on `127.0.0.1:0`: what
//! Lambda gives a SnapStart function (and its extensions) instead of the access-key
//! variables, `AWS_CONTAINER_CREDENTIALS_FULL_URI` plus the header token
//! `AWS_CONTAINER_AUTHORIZATION_TOKEN` (or a file holding it,
//! `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE`).
//!
//! It answers `GET <path>` carrying exactly the expected `Authorization` token with
//! `{"AccessKeyId","SecretAccessKey","Token","Expiration"}` (Expiration ISO 8601 UTC, whole
//! seconds, as the SDKs receive it); a request without the header is answered 401, one with
//! another token 403, another path 404, another method 405, each with a JSON
//! `{"code","message"}` and no credentials.
//!
//! Credentials rotate as a real provider's do: the set served lives [`CredentialsConfig::lifetime`],
//! and a request made when it has less than [`CredentialsConfig::rotate_within`] left gets a new
//! one (so does [`FakeCredentials::rotate`]). Every set issued is handed to the fake Kinesis
//! given at start ([`super::fake_kinesis::KinesisHandle::accept_issued`]), which then accepts
//! signatures made with it until its expiration, and answers `ExpiredTokenException` after.
//!
//! Faults: the expected token can change ([`FakeCredentials::set_token`]: the one the extension
//! holds is then refused), every request can be answered with a status
//! ([`FakeCredentials::fail_with`]), and connects can hang ([`FakeCredentials::hang_connects`]).

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::json;

use crate::clock;
use crate::fake_kinesis::KinesisHandle;
use crate::http::{Action, Handler, Request, Response, Server};
use crate::sigv4::Credentials;
use crate::tcp::{self, InFlight};

/// How the fake endpoint behaves.
#[derive(Clone, Debug)]
pub struct CredentialsConfig {
    /// The `Authorization` value it requires.
    pub token: String,
    /// The path it serves.
    pub path: String,
    /// How long each set of credentials is valid.
    pub lifetime: Duration,
    /// A request made when the current set has less than this left gets a new set.
    pub rotate_within: Duration,
}

impl Default for CredentialsConfig {
    fn default() -> Self {
        CredentialsConfig {
            token: "FakeContainerAuthorizationToken/0001+abcdefghijklmnop".to_owned(),
            path: "/2021-04-23/credentials".to_owned(),
            lifetime: Duration::from_secs(6 * 3600),
            rotate_within: Duration::from_secs(15 * 60),
        }
    }
}

/// One set of credentials the fake handed out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Issued {
    pub credentials: Credentials,
    /// Whole seconds, as written in `Expiration`.
    pub expiration: SystemTime,
}

/// One request the fake received.
#[derive(Clone, Debug)]
pub struct FetchLog {
    pub received_at: Instant,
    pub status: u16,
    /// The access key id handed out (200 only).
    pub access_key: Option<String>,
}

struct State {
    token: String,
    fail_with: Option<u16>,
    issued: Vec<Issued>,
    fetches: Vec<FetchLog>,
}

struct Shared {
    config: CredentialsConfig,
    kinesis: Option<KinesisHandle>,
    state: Mutex<State>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The set to serve at `now`: the current one, or a new one when it is close to expiring.
    fn current(&self, st: &mut State, now: SystemTime) -> Issued {
        match st.issued.last() {
            Some(i) if i.expiration > now + self.config.rotate_within => i.clone(),
            _ => self.issue(st, now),
        }
    }

    fn issue(&self, st: &mut State, now: SystemTime) -> Issued {
        let n = st.issued.len() + 1;
        let whole = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        let expiration = UNIX_EPOCH + Duration::from_secs(whole) + self.config.lifetime;
        let issued = Issued {
            credentials: Credentials::new(
                &format!("ASIAFAKECONTAINER{n:03}"),
                &format!("container/secret+key/{n:03}/for/the/fake/endpoint"),
                Some(&format!(
                    "FakeContainerSessionToken//{n:03}/IQoJb3JpZ2luX2Vj"
                )),
            ),
            expiration,
        };
        if let Some(k) = &self.kinesis {
            k.accept_issued(issued.credentials.clone(), expiration);
        }
        st.issued.push(issued.clone());
        issued
    }
}

struct CredentialsHandler(Arc<Shared>);

fn refusal(status: u16, code: &str, message: &str) -> Response {
    Response::json(status, &json!({ "code": code, "message": message }))
}

impl Handler for CredentialsHandler {
    fn handle(&self, req: Request) -> Action {
        let now = SystemTime::now();
        let mut st = self.0.lock();
        let (resp, key) = if req.path != self.0.config.path {
            (refusal(404, "NotFound", "no such path"), None)
        } else if req.method != "GET" {
            (refusal(405, "MethodNotAllowed", "GET only"), None)
        } else if let Some(status) = st.fail_with {
            (refusal(status, "ServiceError", "scripted failure"), None)
        } else {
            match req.header("authorization") {
                None => (refusal(401, "Unauthorized", "no authorization token"), None),
                Some(t) if t != st.token => (
                    refusal(403, "AccessDenied", "invalid authorization token"),
                    None,
                ),
                Some(_) => {
                    let i = self.0.current(&mut st, now);
                    let c = &i.credentials;
                    let body = json!({
                        "AccessKeyId": c.access_key_id,
                        "SecretAccessKey": c.secret_access_key,
                        "Token": c.session_token,
                        "Expiration": iso8601(i.expiration),
                    });
                    (Response::json(200, &body), Some(c.access_key_id.clone()))
                }
            }
        };
        st.fetches.push(FetchLog {
            received_at: Instant::now(),
            status: resp.status,
            access_key: key,
        });
        Action::Respond(resp)
    }
}

/// `2026-12-05T10:00:00Z` (whole seconds, as the endpoint writes `Expiration`).
pub fn iso8601(t: SystemTime) -> String {
    let (y, mo, d, h, mi, s, _) = clock::civil(t);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
}

/// The running fake; it stops when dropped.
pub struct FakeCredentials {
    server: Server,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for FakeCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FakeCredentials({})", self.uri())
    }
}

impl FakeCredentials {
    /// Starts the fake; every set it issues is also accepted by `kinesis`.
    pub fn start(config: CredentialsConfig, kinesis: Option<KinesisHandle>) -> io::Result<Self> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                token: config.token.clone(),
                fail_with: None,
                issued: Vec::new(),
                fetches: Vec::new(),
            }),
            config,
            kinesis,
        });
        let server = Server::start(Arc::new(CredentialsHandler(shared.clone())))?;
        Ok(FakeCredentials { server, shared })
    }

    /// The value for `AWS_CONTAINER_CREDENTIALS_FULL_URI`.
    pub fn uri(&self) -> String {
        format!("http://{}{}", self.server.addr(), self.shared.config.path)
    }

    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// The token it requires now.
    pub fn token(&self) -> String {
        self.shared.lock().token.clone()
    }

    /// Requires another token from now on (a rotated or revoked one).
    pub fn set_token(&self, token: &str) {
        self.shared.lock().token = token.to_owned();
    }

    /// Answers every request with `status` (`None`: serve again).
    pub fn fail_with(&self, status: Option<u16>) {
        self.shared.lock().fail_with = status;
    }

    /// Issues a new set now (the next request gets it).
    pub fn rotate(&self) -> Issued {
        let mut st = self.shared.lock();
        self.shared.issue(&mut st, SystemTime::now())
    }

    /// Every set issued, oldest first.
    pub fn issued(&self) -> Vec<Issued> {
        self.shared.lock().issued.clone()
    }

    /// Every request received, oldest first.
    pub fn fetches(&self) -> Vec<FetchLog> {
        self.shared.lock().fetches.clone()
    }

    /// From now on TCP connects hang (an endpoint nothing answers); idle connections close.
    pub fn hang_connects(&self) -> io::Result<()> {
        self.server.control().hang_connects()
    }

    /// Connects are taken again.
    pub fn accept_connects(&self) {
        self.server.control().accept_connects();
    }

    /// What clients have in flight to the fake right now (it answers at once, so: connects
    /// pending and request bytes not read). `None` when `/proc/net/tcp` cannot be read.
    pub fn in_flight(&self) -> Option<InFlight> {
        let socks = tcp::sockets().ok()?;
        Some(InFlight::observe(&socks, self.addr(), &[], None))
    }
}
