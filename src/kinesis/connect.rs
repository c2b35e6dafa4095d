//! Connections to Kinesis that another thread can cut: the TCP connector under ureq's TLS,
//! and the [`Interrupt`] the lifecycle loop fires when an invocation's added-time budget
//! ends with a request still in flight.
//!
//! Why: the function's time belongs to the function. A request that is still waiting for an
//! unreachable, hanging or slow Kinesis when the budget ends must not hold the invocation,
//! and must not be in flight when Lambda freezes the sandbox either. So the lifecycle loop
//! closes it: [`Interrupt::fire`] shuts the client's agent down, which shuts down every
//! socket it holds (idle or in use: a blocked read or write returns at once) and, through
//! [`AbortableTcp`], a TCP connect still in progress, which ureq's own connector cannot
//! interrupt. The next request builds a fresh agent ([`Interrupt::generation`] tells the
//! client it must).
//!
//! A connect runs on a short-lived thread so that it can be abandoned: the caller stops
//! waiting for it at once and the thread closes whatever it gets (no request was written on
//! it; the shut-down agent refuses to register it). The thread is spawned only for a new
//! connection, which keep-alive makes rare; ureq's resolver does the same for DNS.
//!
//! Each finished connect's duration is kept ([`ConnectTimes`]), so that the flusher can bound
//! the next connects by what it has seen instead of a fixed second.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, select, Sender};
use ureq::unversioned::transport::{
    ConnectionDetails, Connector, Either, ShutdownHandle, TcpConnector, Transport,
};

/// Stack of the thread that makes one TCP connect.
const CONNECT_STACK_BYTES: usize = 64 << 10;

/// The durations of recent TCP connects, newest last (shared with the connector).
#[derive(Debug, Default)]
pub struct ConnectTimes {
    /// Connects finished since the flusher last looked, in microseconds.
    fresh: Mutex<Vec<u64>>,
}

impl ConnectTimes {
    fn push(&self, took: Duration) {
        let mut v = self.fresh.lock().unwrap_or_else(|e| e.into_inner());
        if v.len() < 16 {
            v.push(took.as_micros() as u64);
        }
    }

    /// The connects finished since the last call.
    pub fn take(&self) -> Vec<Duration> {
        let mut v = self.fresh.lock().unwrap_or_else(|e| e.into_inner());
        v.drain(..).map(Duration::from_micros).collect()
    }
}

/// Cuts the client's requests in flight from another thread (see the module docs).
#[derive(Clone)]
pub struct Interrupt {
    agent: Arc<Mutex<ureq::Agent>>,
    generation: Arc<AtomicU64>,
}

impl fmt::Debug for Interrupt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Interrupt")
            .field("generation", &self.generation())
            .finish()
    }
}

impl Interrupt {
    pub(crate) fn new(agent: ureq::Agent) -> Self {
        Interrupt {
            agent: Arc::new(Mutex::new(agent)),
            generation: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Closes every connection of the client now, in use or idle: a request in flight fails
    /// at once. The client builds a new agent for its next request.
    pub fn fire(&self) {
        let agent = self.agent.lock().unwrap_or_else(|e| e.into_inner()).clone();
        self.generation.fetch_add(1, Relaxed);
        agent.shutdown();
    }

    /// How many times [`fire`](Self::fire) was called: a request that saw it change was cut.
    pub fn generation(&self) -> u64 {
        self.generation.load(Relaxed)
    }

    /// The agent to send with, rebuilt by `build` when it was shut down since `seen`.
    pub(super) fn agent(
        &self,
        seen: &AtomicU64,
        build: impl FnOnce() -> ureq::Agent,
    ) -> ureq::Agent {
        let mut agent = self.agent.lock().unwrap_or_else(|e| e.into_inner());
        let now = self.generation();
        if now != seen.load(Relaxed) {
            *agent = build();
            seen.store(now, Relaxed);
        }
        agent.clone()
    }
}

/// The TCP step of the client's connector chain: ureq's own TCP connector, run on a thread
/// the caller can stop waiting for (the agent's shutdown reaches the socket it makes through
/// the handle it registers; only the connect itself needed this), noting how long each
/// connect took.
#[derive(Debug)]
pub struct AbortableTcp {
    pub times: Arc<ConnectTimes>,
}

/// A connect in progress as the agent's shutdown sees it: firing stops the wait.
struct Pending(Sender<()>);

impl ShutdownHandle for Pending {
    fn shutdown(&self) {
        let _ = self.0.try_send(());
    }
}

type Connected = Result<Option<Box<dyn Transport>>, ureq::Error>;

impl<In: Transport> Connector<In> for AbortableTcp {
    type Out = Either<In, Box<dyn Transport>>;

    fn connect(
        &self,
        details: &ConnectionDetails,
        chained: Option<In>,
    ) -> Result<Option<Self::Out>, ureq::Error> {
        if chained.is_some() {
            // A proxy connection made earlier in the chain.
            return Ok(chained.map(Either::A));
        }
        let started = Instant::now();
        let (abort_tx, abort) = bounded(1);
        let pending = Arc::new(Pending(abort_tx));
        (details.register_shutdown)(Arc::downgrade(&pending) as Weak<dyn ShutdownHandle>)?;
        let (tx, rx) = bounded::<Connected>(1);
        let (uri, config, addrs) = (
            details.uri.clone(),
            details.config.clone(),
            details.addrs.clone(),
        );
        let (now, timeout, current_time, run_connector, register_shutdown) = (
            details.now,
            details.timeout,
            details.current_time.clone(),
            details.run_connector.clone(),
            details.register_shutdown.clone(),
        );
        let request_level = details.request_level;
        std::thread::Builder::new()
            .name("connect".into())
            .stack_size(CONNECT_STACK_BYTES)
            .spawn(move || {
                let resolver = ureq::unversioned::resolver::DefaultResolver::default();
                let details = ConnectionDetails {
                    uri: &uri,
                    addrs,
                    config: &config,
                    request_level,
                    resolver: &resolver,
                    now,
                    timeout,
                    current_time,
                    run_connector,
                    register_shutdown,
                };
                // After an abandon nobody receives this: the transport is dropped, closed.
                let r = Connector::<()>::connect(&TcpConnector::default(), &details, None);
                let _ = tx.send(r.map(|t| t.map(Transport::boxed)));
            })
            .map_err(ureq::Error::Io)?;
        let wait = timeout
            .not_zero()
            .map_or(Duration::from_secs(3600), |t| *t + Duration::from_millis(5));
        let connected = select! {
            recv(rx) -> r => r.unwrap_or(Err(ureq::Error::ConnectionFailed)),
            // Cut before a connection was made: to the caller, a connect that timed out
            // (nothing was sent; it says nothing of Kinesis but that it was not reached).
            recv(abort) -> _ => Err(ureq::Error::Timeout(ureq::Timeout::Connect)),
            default(wait) => Err(ureq::Error::Timeout(ureq::Timeout::Connect)),
        };
        drop(pending);
        // Whichever timeout ran out (the connect's own, or the request's), it ran out while
        // connecting: Kinesis was not reached.
        let transport = connected.map_err(|e| match e {
            ureq::Error::Timeout(_) => ureq::Error::Timeout(ureq::Timeout::Connect),
            e => e,
        })?;
        self.times.push(started.elapsed());
        Ok(transport.map(Either::B))
    }
}

/// The connector chain: an HTTP CONNECT proxy when one is configured, [`AbortableTcp`], then
/// rustls for `https`.
pub fn chain(times: Arc<ConnectTimes>) -> impl Connector<(), Out = impl Transport> {
    use ureq::unversioned::transport::{ConnectProxyConnector, RustlsConnector};
    ().chain(ConnectProxyConnector::default())
        .chain(AbortableTcp { times })
        .chain(RustlsConnector::default())
}
