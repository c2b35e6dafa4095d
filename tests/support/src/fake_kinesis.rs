//! A strict in-process fake of Kinesis Data Streams `PutRecords` on `127.0.0.1:0`.
//!
//! It checks every request the way the real endpoint does, in the same order:
//! transport faults (drop, hold unanswered, stall, latency) → scripted server failures (outage, 5xx)
//! → routing (`POST /`, `Content-Type: application/x-amz-json-1.1`,
//! `X-Amz-Target: Kinesis_20131202.PutRecords`) → SigV4 ([`super::sigv4`], known
//! credentials, session token when configured, 5-minute clock skew) → a scripted
//! fatal error (e.g. `AccessDeniedException`) → body shape and limits (1..=500
//! records, partition key 1..=256 chars, `Data` valid base64, record and request
//! size) → stream existence → per-record outcome (stored, or a scripted
//! `ProvisionedThroughputExceededException` / `InternalFailure`).
//!
//! Error bodies follow AWS's JSON protocol: `{"__type": "<Code>", "message": ".."}`
//! with the status AWS uses (shapes in [`super::kinesis_api`], signature errors in
//! [`super::sigv4`]).
//!
//! Accepted records are stored with their decoded bytes, so tests can compare them
//! byte for byte with what was sent. Every request is logged with its outcome.
//!
//! Here: configuration, what was received, and the fault script; how each request is
//! answered is in `handler`.
//!
//! Faults are scripted through [`KinesisHandle`], a cheap clonable handle usable from
//! any thread while requests are in flight; [`KinesisFault`] names the whole-endpoint
//! faults (connects that hang, no answer, latency, all 5xx, all throttled, all dropped)
//! that [`KinesisHandle::apply`] sets and [`KinesisHandle::heal`] takes back.
//! [`KinesisHandle::in_flight`] tells what a client has in flight to it right now.

mod handler;
mod presets;
mod shards;

use std::collections::{BTreeMap, HashSet};
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use super::http::{self, Server, ServerControl};
pub use super::kinesis_api::{AwsError, KinesisLimits, CONTENT_TYPE, PUT_RECORDS_TARGET};
use super::rng::Rng;
use super::sigv4::{self, Credentials, HttpParts, Verifier};
use super::tcp::{self, InFlight};
use handler::KinesisHandler;
pub use presets::KinesisFault;
pub use shards::{ShardLimits, ShardMeter, ShardUse, TokenBucket};

/// Upper bound of a scripted stall, so a forgotten fault cannot hang a test run.
pub const MAX_STALL: Duration = Duration::from_secs(30);

/// What the fake account looks like.
#[derive(Clone, Debug)]
pub struct KinesisConfig {
    pub region: String,
    pub account_id: String,
    /// Credentials the endpoint recognises; a session token, when set, is required.
    pub credentials: Vec<Credentials>,
    /// Names of the streams that exist.
    pub streams: Vec<String>,
    /// Shards per stream; records are spread over them by hash key.
    pub shard_count: u32,
    /// Each shard's write limits, enforced per record when set (off by default: a test of
    /// something else should not be throttled by its own speed).
    pub shard_limits: Option<ShardLimits>,
    pub limits: KinesisLimits,
    /// Clock skew allowed on `X-Amz-Date`; `None` disables the check.
    pub max_clock_skew: Option<Duration>,
}

/// Credentials used by [`KinesisConfig::default`] (and the harness).
pub fn test_credentials() -> Credentials {
    Credentials::new(
        "AKIDFAKEKINESIS00001",
        "fake/secret+key/for/the/fake/kinesis/00",
        Some("FakeSessionToken//AQoDYXdzEJr"),
    )
}

impl Default for KinesisConfig {
    fn default() -> Self {
        KinesisConfig {
            region: "us-east-1".to_owned(),
            account_id: "123456789012".to_owned(),
            credentials: vec![test_credentials()],
            streams: vec!["telemetry-stream".to_owned()],
            shard_count: 4,
            shard_limits: None,
            limits: KinesisLimits::default(),
            max_clock_skew: Some(sigv4::MAX_CLOCK_SKEW),
        }
    }
}

/// What happens after a scripted stall.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AfterStall {
    /// Process and answer normally (records are stored even if the client gave up).
    Answer,
    /// Close the connection without processing.
    Drop,
}

/// An accepted record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredRecord {
    pub stream: String,
    /// The decoded `Data` bytes.
    pub data: Vec<u8>,
    pub partition_key: String,
    pub explicit_hash_key: Option<String>,
    pub shard_id: String,
    pub sequence_number: String,
    /// Zero-based position among all accepted records, in arrival order.
    pub order: u64,
    /// Index of the request (in [`KinesisHandle::requests`]) that carried it.
    pub request_index: usize,
    /// Position of the record within its request.
    pub index_in_request: usize,
}

/// How a request ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Still being handled (stalled, or waiting for the lock).
    Pending,
    /// 200; `failed` of `records` were rejected per record.
    Answered200 { records: usize, failed: usize },
    /// Whole-request error.
    Rejected { status: u16, code: String },
    /// The connection was closed without an answer.
    Dropped,
    /// The client closed the connection while the answer was held back (no answer, no
    /// records stored).
    Abandoned,
}

/// One received HTTP request. Tests assert on a few fields; the rest (size, which
/// connection) is there for the `{:?}` of a failed assertion.
#[derive(Clone, Debug)]
pub struct RequestLog {
    pub index: usize,
    pub received_at: Instant,
    pub answered_at: Option<Instant>,
    pub body_bytes: usize,
    pub connection_index: u64,
    pub index_on_connection: u64,
    /// The client's address (its port tells its connection apart in `/proc/net/tcp`).
    pub peer: Option<SocketAddr>,
    /// The access key id the request was signed with (as claimed: tells the environments
    /// of a fleet apart; whether the signature holds is the outcome's business).
    pub access_key: Option<String>,
    pub stalled: bool,
    /// Held unanswered ([`KinesisFault::NoAnswer`]).
    pub held: bool,
    pub outcome: Outcome,
    /// Of a 200: records throttled, and data + partition key bytes stored.
    pub records_throttled: usize,
    pub bytes_accepted: u64,
}

/// The access key id in a SigV4 `Authorization` header (`… Credential=AKID/date/…`).
pub fn access_key_of(authorization: &str) -> Option<String> {
    let rest = authorization.split("Credential=").nth(1)?;
    let key = rest.split('/').next()?.trim();
    (!key.is_empty()).then(|| key.to_owned())
}

/// Counters over the fake's lifetime.
#[derive(Clone, Debug, Default)]
pub struct KinesisStats {
    /// HTTP requests received, whatever their fate.
    pub requests: u64,
    /// Body bytes received.
    pub request_bytes: u64,
    /// Requests answered 200.
    pub answered_200: u64,
    /// Requests answered with a whole-request error, and by `__type`.
    pub rejected: u64,
    pub rejections: BTreeMap<String, u64>,
    pub dropped_connections: u64,
    pub stalled_requests: u64,
    /// Requests held unanswered ([`KinesisFault::NoAnswer`]), and those the client gave
    /// up on by closing the connection.
    pub held_requests: u64,
    pub abandoned_requests: u64,
    /// Records in 200 answers, and their fates.
    pub records_received: u64,
    pub records_accepted: u64,
    pub records_throttled: u64,
    pub records_internal_failure: u64,
    /// Decoded data bytes of accepted records.
    pub data_bytes_accepted: u64,
}

#[derive(Debug, Default)]
struct Faults {
    drop_next: u64,
    drop_fraction: f64,
    stall_next: u64,
    stall_for: Duration,
    after_stall: Option<AfterStall>,
    latency: Duration,
    fail_next: u64,
    fail_next_status: u16,
    fail_fraction: f64,
    fail_fraction_status: u16,
    outage: Option<(Instant, u16)>,
    fatal: Option<AwsError>,
    throttle_next_records: u64,
    throttle_fraction: f64,
    internal_next_records: u64,
    /// Hold every request unanswered until the client hangs up or this is cleared.
    never_answer: bool,
}

struct State {
    faults: Faults,
    /// Per (stream, shard): its limits' meter (when limits are enforced).
    shards: BTreeMap<(String, u32), ShardMeter>,
    rng: Rng,
    records: Vec<StoredRecord>,
    requests: Vec<RequestLog>,
    stats: KinesisStats,
    next_sequence: u64,
}

struct Shared {
    config: KinesisConfig,
    verifier: Verifier,
    /// Credentials handed out by a credentials endpoint (`fake_credentials`), with their
    /// expiration: accepted until then, `ExpiredTokenException` after.
    issued: Mutex<Vec<(Credentials, SystemTime)>>,
    state: Mutex<State>,
    changed: Condvar,
    /// The server's connection controls (set once it has started).
    server: OnceLock<Arc<ServerControl>>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock only happens on a bug in this file; keep serving.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The verifier for a request signed with `access_key` at `now`: the configured
    /// credentials and the issued ones still valid; `Err` when `access_key` is of an issued
    /// set that has expired.
    fn verifier_at(&self, access_key: Option<&str>, now: SystemTime) -> Result<Verifier, AwsError> {
        let issued = self.issued.lock().unwrap_or_else(|e| e.into_inner());
        let mut verifier = self.verifier.clone();
        for (c, expiration) in issued.iter() {
            if now < *expiration {
                verifier.credentials.push(c.clone());
            } else if access_key == Some(c.access_key_id.as_str()) {
                return Err(AwsError::new(
                    400,
                    "ExpiredTokenException",
                    "The security token included in the request is expired",
                ));
            }
        }
        Ok(verifier)
    }

    /// Whether the server was stopped (held requests let go).
    fn stopped(&self) -> bool {
        self.server.get().is_some_and(|c| c.is_stopped())
    }
}

/// Clonable, thread-safe handle to script faults and read what the fake received.
#[derive(Clone)]
pub struct KinesisHandle(Arc<Shared>);

/// The running fake. Dereferences to its [`KinesisHandle`]. A clone is the same fake (one
/// stream written by many environments); it stops when the last clone is dropped.
#[derive(Clone)]
pub struct FakeKinesis {
    server: Arc<Server>,
    handle: KinesisHandle,
}

impl std::fmt::Debug for FakeKinesis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FakeKinesis({})", self.endpoint())
    }
}

impl std::ops::Deref for FakeKinesis {
    type Target = KinesisHandle;
    fn deref(&self) -> &KinesisHandle {
        &self.handle
    }
}

impl FakeKinesis {
    /// Starts the fake on `127.0.0.1:0`.
    pub fn start(config: KinesisConfig) -> io::Result<FakeKinesis> {
        let mut verifier = Verifier::new(&config.region, "kinesis", config.credentials.clone());
        verifier.max_skew = config.max_clock_skew;
        let shared = Arc::new(Shared {
            config,
            verifier,
            issued: Mutex::new(Vec::new()),
            state: Mutex::new(State {
                faults: Faults::default(),
                shards: BTreeMap::new(),
                rng: Rng::new(0x004b_494e_4553_4953),
                records: Vec::new(),
                requests: Vec::new(),
                stats: KinesisStats::default(),
                next_sequence: 0,
            }),
            changed: Condvar::new(),
            server: OnceLock::new(),
        });
        let server = Server::start(Arc::new(KinesisHandler(shared.clone())))?;
        let _ = shared.server.set(server.control());
        Ok(FakeKinesis {
            server: Arc::new(server),
            handle: KinesisHandle(shared),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// `http://127.0.0.1:<port>`, the value for `KINESIS_TELEMETRY_ENDPOINT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.server.addr())
    }

    /// TCP connections accepted so far (a keep-alive client keeps this low).
    pub fn connections_accepted(&self) -> u64 {
        self.server.connections_accepted()
    }

    pub fn handle(&self) -> KinesisHandle {
        self.handle.clone()
    }
}

impl KinesisHandle {
    /// ARN of a stream in the fake account, e.g. for `KINESIS_TELEMETRY_STREAM`.
    pub fn stream_arn(&self, name: &str) -> String {
        let c = &self.0.config;
        format!(
            "arn:aws:kinesis:{}:{}:stream/{name}",
            c.region, c.account_id
        )
    }

    fn faults(&self, f: impl FnOnce(&mut Faults)) {
        f(&mut self.0.lock().faults);
    }

    /// Removes every scripted fault (connects that hang too: see [`Self::heal`]).
    pub fn clear_faults(&self) {
        self.faults(|f| *f = Faults::default());
        self.accept_connects();
    }

    /// Sets a whole-endpoint fault (on top of any other). `Err` only for
    /// [`KinesisFault::HangConnect`] when the listen queue could not be filled.
    pub fn apply(&self, fault: KinesisFault) -> io::Result<()> {
        match fault {
            KinesisFault::HangConnect => return self.hang_connects(),
            KinesisFault::NoAnswer => self.faults(|f| f.never_answer = true),
            KinesisFault::Slow(d) => self.set_latency(d),
            KinesisFault::Fail5xx => self.fail_fraction_of_requests(1.0, 500, 0),
            KinesisFault::Throttle => self.throttle_fraction(1.0, 0),
            KinesisFault::Drop => self.drop_fraction_of_requests(1.0, 0),
        }
        Ok(())
    }

    /// Kinesis is healthy again: every fault cleared, connects taken, held requests let go
    /// (closed unanswered: nothing they carried is stored).
    pub fn heal(&self) {
        self.clear_faults();
        self.0.changed.notify_all();
    }

    /// From now on TCP connects to the fake hang (see [`ServerControl::hang_connects`]):
    /// an endpoint nothing routes to. Idle keep-alive connections are closed.
    pub fn hang_connects(&self) -> io::Result<()> {
        match self.0.server.get() {
            Some(c) => c.hang_connects(),
            None => Err(io::Error::other("the fake Kinesis has not started")),
        }
    }

    /// Connects are taken again (what waited in the listen queue is served).
    pub fn accept_connects(&self) {
        if let Some(c) = self.0.server.get() {
            c.accept_connects();
        }
    }

    /// Accepts signatures made with `credentials` (a credentials endpoint handed them out)
    /// until `expiration`; after it, `ExpiredTokenException`.
    pub fn accept_issued(&self, credentials: Credentials, expiration: SystemTime) {
        self.0
            .issued
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((credentials, expiration));
    }

    /// What clients have in flight to the fake at this moment, from the kernel's sockets:
    /// requests received and not answered on connections the client has not closed,
    /// connects pending, request bytes not read yet. `None` when `/proc/net/tcp` cannot be
    /// read.
    pub fn in_flight(&self) -> Option<InFlight> {
        self.in_flight_of(None)
    }

    /// [`Self::in_flight`] of one client process (its sockets only: one environment of a
    /// fleet). `None` also when its `/proc/<pid>/fd` cannot be read.
    pub fn in_flight_of_process(&self, pid: u32) -> Option<InFlight> {
        let owner = tcp::socket_inodes(pid).ok()?;
        self.in_flight_of(Some(&owner))
    }

    fn in_flight_of(&self, owner: Option<&HashSet<u64>>) -> Option<InFlight> {
        let addr = self.0.server.get()?.addr();
        let pending: Vec<SocketAddr> = self
            .0
            .lock()
            .requests
            .iter()
            .filter(|r| r.outcome == Outcome::Pending)
            .filter_map(|r| r.peer)
            .collect();
        let socks = tcp::sockets().ok()?;
        Some(InFlight::observe(&socks, addr, &pending, owner))
    }

    /// Answers the next `n` records (across requests) with ProvisionedThroughputExceededException.
    pub fn throttle_next_records(&self, n: u64) {
        self.faults(|f| f.throttle_next_records = n);
    }

    /// Throttles each record with probability `fraction`, from a seeded RNG (reproducible).
    pub fn throttle_fraction(&self, fraction: f64, seed: u64) {
        let mut st = self.0.lock();
        st.faults.throttle_fraction = fraction.clamp(0.0, 1.0);
        st.rng = Rng::new(seed);
    }

    /// Answers the next `n` records with a per-record InternalFailure.
    pub fn fail_next_records_internal(&self, n: u64) {
        self.faults(|f| f.internal_next_records = n);
    }

    /// Answers the next `n` requests with `status` (500 InternalFailure, 503 ServiceUnavailable…).
    pub fn fail_next_requests(&self, n: u64, status: u16) {
        self.faults(|f| {
            f.fail_next = n;
            f.fail_next_status = status;
        });
    }

    /// Answers each request with `status` with probability `fraction` (seeded RNG).
    pub fn fail_fraction_of_requests(&self, fraction: f64, status: u16, seed: u64) {
        let mut st = self.0.lock();
        st.faults.fail_fraction = fraction.clamp(0.0, 1.0);
        st.faults.fail_fraction_status = status;
        st.rng = Rng::new(seed);
    }

    /// Closes the connection of the next `n` requests without answering (nothing stored).
    pub fn drop_next_connections(&self, n: u64) {
        self.faults(|f| f.drop_next = n);
    }

    /// Closes the connection of each request with probability `fraction` (seeded RNG).
    pub fn drop_fraction_of_requests(&self, fraction: f64, seed: u64) {
        let mut st = self.0.lock();
        st.faults.drop_fraction = fraction.clamp(0.0, 1.0);
        st.rng = Rng::new(seed);
    }

    /// Holds each of the next `n` requests for `duration` (at most [`MAX_STALL`]) before `then`.
    pub fn stall_next_requests(&self, n: u64, duration: Duration, then: AfterStall) {
        self.faults(|f| {
            f.stall_next = n;
            f.stall_for = duration.min(MAX_STALL);
            f.after_stall = Some(then);
        });
    }

    /// Adds `latency` before every answer.
    pub fn set_latency(&self, latency: Duration) {
        self.faults(|f| f.latency = latency.min(MAX_STALL));
    }

    /// Answers every authenticated request with `error` (e.g. [`AwsError::access_denied`]) until cleared.
    pub fn set_fatal(&self, error: Option<AwsError>) {
        self.faults(|f| f.fatal = error);
    }

    /// Fails every request with `status` for `duration` from now.
    pub fn outage_for(&self, duration: Duration, status: u16) {
        self.faults(|f| f.outage = Some((Instant::now() + duration, status)));
    }

    /// What each shard of `stream` took and refused under its limits (empty when limits
    /// are not enforced), by shard.
    pub fn shard_use(&self, stream: &str) -> Vec<ShardUse> {
        let st = self.0.lock();
        st.shards
            .iter()
            .filter(|((s, _), _)| s == stream)
            .map(|((_, shard), m)| ShardUse {
                shard_id: format!("shardId-{shard:012}"),
                accepted_records: m.accepted_records,
                accepted_bytes: m.accepted_bytes,
                throttled_records: m.throttled_records,
            })
            .collect()
    }

    /// The fake's configuration.
    pub fn config(&self) -> &KinesisConfig {
        &self.0.config
    }

    /// Every accepted record, in arrival order.
    pub fn records(&self) -> Vec<StoredRecord> {
        self.0.lock().records.clone()
    }

    /// The decoded data of every accepted record, in arrival order.
    pub fn record_data(&self) -> Vec<Vec<u8>> {
        self.0
            .lock()
            .records
            .iter()
            .map(|r| r.data.clone())
            .collect()
    }

    /// Every request received, in arrival order.
    pub fn requests(&self) -> Vec<RequestLog> {
        self.0.lock().requests.clone()
    }

    pub fn stats(&self) -> KinesisStats {
        self.0.lock().stats.clone()
    }

    /// [`Self::stats`] of the requests signed with `access_key` (one environment of a fleet),
    /// counted from the request log; `None`: every request.
    pub fn stats_of(&self, access_key: Option<&str>) -> KinesisStats {
        let Some(key) = access_key else {
            return self.stats();
        };
        let st = self.0.lock();
        let mut s = KinesisStats::default();
        let mine = |i: usize| st.requests[i].access_key.as_deref() == Some(key);
        for r in st.requests.iter().filter(|r| mine(r.index)) {
            s.requests += 1;
            s.request_bytes += r.body_bytes as u64;
            s.stalled_requests += u64::from(r.stalled);
            s.held_requests += u64::from(r.held);
            s.records_throttled += r.records_throttled as u64;
            match &r.outcome {
                Outcome::Answered200 { records, .. } => {
                    s.answered_200 += 1;
                    s.records_received += *records as u64;
                }
                Outcome::Rejected { code, .. } => {
                    s.rejected += 1;
                    *s.rejections.entry(code.clone()).or_default() += 1;
                }
                Outcome::Dropped => s.dropped_connections += 1,
                Outcome::Abandoned => s.abandoned_requests += 1,
                Outcome::Pending => {}
            }
        }
        for rec in st.records.iter().filter(|r| mine(r.request_index)) {
            s.records_accepted += 1;
            s.data_bytes_accepted += rec.data.len() as u64;
        }
        s
    }

    /// Waits until `pred` holds on the stats, or `timeout` passes; returns whether it held.
    pub fn wait_until(
        &self,
        timeout: Duration,
        mut pred: impl FnMut(&KinesisStats, &[StoredRecord]) -> bool,
    ) -> bool {
        let deadline = Instant::now() + timeout;
        let mut st = self.0.lock();
        loop {
            if pred(&st.stats, &st.records) {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            st = self
                .0
                .changed
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

/// Sends a correctly signed PutRecords request, for tests of the fake itself.
/// `tweak` may edit the headers after signing (to tamper with them).
pub fn send_put_records(
    addr: SocketAddr,
    creds: &Credentials,
    region: &str,
    body: &[u8],
    tweak: impl FnOnce(&mut Vec<(String, String)>),
) -> io::Result<http::ClientResponse> {
    let mut headers = vec![
        ("Host".to_owned(), addr.to_string()),
        ("Content-Type".to_owned(), CONTENT_TYPE.to_owned()),
        ("X-Amz-Target".to_owned(), PUT_RECORDS_TARGET.to_owned()),
    ];
    let parts = HttpParts {
        method: "POST",
        path: "/",
        query: "",
        headers: &headers,
        body,
    };
    let added = sigv4::sign(parts, creds, region, "kinesis", SystemTime::now());
    headers.extend(added);
    tweak(&mut headers);
    http::request_once(addr, "POST", "/", &headers, body, Duration::from_secs(10))
}
