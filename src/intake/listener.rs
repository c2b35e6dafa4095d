//! The telemetry listener: a minimal HTTP/1.1 server on `std::net` and `httparse` that takes
//! the Telemetry API's POSTs and hands each complete body to a [`Handler`].
//!
//! Who may post: the extension subscribes with a destination URI whose path is a secret
//! ([`secret_path`]: 128 bits of fresh OS entropy drawn at start), and the listener answers
//! 404 to a request for any other path, before reading its body, and counts it. Only the
//! Telemetry API learns the path, so the function's own code (or a request-forgery bug in it
//! aimed at localhost) cannot write records into the stream. The socket is bound to the
//! address [`TELEMETRY_HOST`] resolves to, as AWS's examples do, and to all addresses only
//! where that name does not resolve ([`Listener::bind_for_platform`]).
//!
//! Threading: one accept thread, started by [`Listener::spawn`], runs for the life of the
//! process and spawns one thread per connection, at most [`ListenerLimits::max_connections`] at once.
//! Each connection thread owns its buffers and calls the handler itself, so the handler runs
//! on several threads at once when Lambda opens several connections (it normally keeps one
//! alive). When every slot is taken, a newcomer takes the slot of a connection with no
//! request in progress, which is closed (the policy is in `slots`); only when every
//! connection is in the middle of a request, or no thread can be spawned, is the newcomer
//! closed at once. Nothing is ever queued in user space.
//!
//! Invariants:
//! - The accept loop never ends. Errors that belong to one pending connection
//!   (`ECONNABORTED`, `EPROTO`, network errors the kernel passes on) are counted and the loop
//!   accepts again at once. Every other error (`EMFILE`, `ENFILE`, `ENOBUFS`, `ENOMEM`, and
//!   anything unexpected) is counted, logged once per episode, and retried after a pause
//!   doubling from 5 ms to 200 ms: pending connections wait in the kernel's queue meanwhile
//!   and are served as soon as a descriptor frees up.
//! - Between requests a connection waits with no timeout: the sandbox may be frozen for hours
//!   and Lambda reuses its keep-alive connection after the thaw. An idle connection is closed
//!   only to make room for a newcomer. From the first byte of a request, the head and the
//!   whole body must arrive within [`ListenerLimits::request_timeout`], or the connection is closed
//!   and counted as `stalled`; a connection in the middle of a request is never evicted. A
//!   stalled peer therefore holds only its own thread, and only for that long. (A request cut
//!   by a freeze may be closed as stalled at the thaw, like any stalled request.)
//! - Nothing the peer sends can panic the listener; memory per connection is bounded by
//!   [`MAX_HEAD_BYTES`] plus [`ListenerLimits::max_body`], and an idle connection keeps at most
//!   [`KEEP_BODY_CAPACITY`] of body buffer.
//! - Every refusal is counted in [`ListenerStats`], which the shutdown summary and the
//!   metrics report ([`ListenerStats::refusals`]); counters saturate, never wrap.
//!
//! Answers: the handler's status for a POST; 404 for any path but the subscribed one, 400 for
//! malformed HTTP, 405 for other methods, 413 for a body over [`ListenerLimits::max_body`] (from
//! `Content-Length` before reading it, or as soon as chunks pass it), 417 for an `Expect`
//! other than `100-continue`, 431 for a head over [`MAX_HEAD_BYTES`], 501 for a transfer
//! coding other than `chunked`. Every refusal closes the connection. HTTP/1.0 requests are
//! answered and the connection closed.

use std::io;
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use log::{debug, info, warn};

use connection::{Connection, SlotSocket};
use counters::{bump, count_once};
use slots::{Admission, Slots};

mod address;
mod connection;
mod counters;
mod memory;
mod slots;

pub use crate::stats::ListenerStats;
use address::{platform_address, ALL_ADDRESSES, RESOLVE_TIMEOUT};
pub use address::{secret_path, BindError, PATH_SECRET_BYTES, TELEMETRY_HOST};
pub(crate) use memory::serve_bytes;

/// Default [`ListenerLimits::max_body`]: the largest POST the Telemetry API sends at the maximum
/// buffering `maxBytes` (1 MiB), "up to about `2 * maxBytes` plus metadata", with a
/// megabyte to spare.
pub const DEFAULT_MAX_BODY: usize = 3 << 20;
/// Default [`ListenerLimits::max_connections`]: Lambda keeps one connection alive; a few more cover a
/// reconnect while an old connection is still being torn down.
pub const DEFAULT_MAX_CONNECTIONS: usize = 16;
/// Default [`ListenerLimits::request_timeout`]: a 2 MiB body over loopback takes milliseconds, so
/// five seconds only ever cuts a peer that has stopped sending.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest request head (request line and headers), and largest chunk-size line or trailer
/// section. Lambda's heads are a few hundred bytes.
pub const MAX_HEAD_BYTES: usize = 64 << 10;
/// Body buffer capacity a connection keeps between requests. Lambda's default batch
/// (`maxBytes` 256 KiB, so bodies up to ~512 KiB) fits it; after a bigger body the buffer is
/// freed rather than pinned by an idle connection.
pub const KEEP_BODY_CAPACITY: usize = 1 << 20;

/// Stack of a connection thread. The handler splits JSON with serde_json, which walks nested
/// values it keeps raw or ignores with a heap stack of its own (`ignore_value`), so the depth
/// used does not grow with the input: `deep_json_fits_the_connection_stack` runs the
/// extension's parser on a 200,000-deep batch in a debug build, and passes even with 16 KiB.
/// 256 KiB leaves the handler's own code (logging, channel hand-off) ample room; it is
/// address space, committed only as pages are touched.
const CONNECTION_STACK_BYTES: usize = 256 << 10;
/// Stack of the accept thread, which only accepts, logs and spawns.
const ACCEPT_STACK_BYTES: usize = 128 << 10;
/// First pause after an accept error that is not about one connection; it doubles up to
/// [`ACCEPT_PAUSE_MAX`], so a descriptor shortage costs at most a few wakeups a second.
const ACCEPT_PAUSE_FIRST: Duration = Duration::from_millis(5);
const ACCEPT_PAUSE_MAX: Duration = Duration::from_millis(200);

/// Linux errno values of the accept errors that concern only the connection being accepted
/// (accept(2): "treat them like EAGAIN by retrying"). The binary only runs on Linux; on another
/// OS a mismatch merely moves an error to the backoff path.
const EPROTO: i32 = 71;
const ENONET: i32 = 64;
const ENOPROTOOPT: i32 = 92;
const EOPNOTSUPP: i32 = 95;
const EHOSTDOWN: i32 = 112;

/// The listener's limits. Each field's default is the constant of the same name.
#[derive(Debug, Clone)]
pub struct ListenerLimits {
    /// Largest body accepted, in bytes; a larger one is answered 413. Default
    /// [`DEFAULT_MAX_BODY`].
    pub max_body: usize,
    /// Connections served at once; the next one takes the slot of an idle connection, or is
    /// closed at once if none is idle. Default [`DEFAULT_MAX_CONNECTIONS`]; 0 counts as 1.
    pub max_connections: usize,
    /// Time from a request's first byte to the end of its body. Default
    /// [`DEFAULT_REQUEST_TIMEOUT`]; clamped to 1 ms ..= 1 day.
    pub request_timeout: Duration,
}

impl Default for ListenerLimits {
    fn default() -> ListenerLimits {
        ListenerLimits {
            max_body: DEFAULT_MAX_BODY,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
        }
    }
}

/// What the listener calls with each complete POST body; returns the status to answer.
///
/// Called from the connection threads, so possibly from several at once. It should answer
/// fast: Lambda waits for the answer before sending more.
pub trait Handler: Send + Sync + 'static {
    fn post(&self, body: &[u8]) -> u16;
}

impl<F: Fn(&[u8]) -> u16 + Send + Sync + 'static> Handler for F {
    fn post(&self, body: &[u8]) -> u16 {
        self(body)
    }
}

/// A bound listening socket, not yet accepting.
pub struct Listener {
    socket: TcpListener,
    path: String,
    limits: ListenerLimits,
    stats: Arc<ListenerStats>,
}

/// What every connection thread shares.
struct Shared {
    limits: ListenerLimits,
    stats: Arc<ListenerStats>,
    handler: Arc<dyn Handler>,
    /// The only path served (`/` and the secret).
    path: String,
    slots: Slots,
}

impl Shared {
    fn new(
        path: String,
        limits: ListenerLimits,
        stats: Arc<ListenerStats>,
        handler: Arc<dyn Handler>,
    ) -> Shared {
        Shared {
            slots: Slots::new(limits.max_connections, stats.clone()),
            limits,
            stats,
            handler,
            path,
        }
    }
}

impl Listener {
    /// Binds `addr:port`, to serve requests for `path` only; port 0 picks a free port, which
    /// [`Listener::port`] tells.
    pub fn bind(
        addr: IpAddr,
        port: u16,
        path: String,
        limits: ListenerLimits,
        stats: Arc<ListenerStats>,
    ) -> Result<Listener, BindError> {
        let addr = SocketAddr::new(addr, port);
        let socket = TcpListener::bind(addr).map_err(|source| BindError { addr, source })?;
        Ok(Listener {
            socket,
            path,
            limits,
            stats,
        })
    }

    /// Binds where the platform dials: `explicit` (`KINESIS_TELEMETRY_BIND_ADDRESS`) if
    /// set, else the address [`TELEMETRY_HOST`] resolves to, else (it does not resolve, or
    /// that address is not this machine's) all addresses.
    pub fn bind_for_platform(
        explicit: Option<IpAddr>,
        port: u16,
        path: String,
        limits: ListenerLimits,
        stats: Arc<ListenerStats>,
    ) -> Result<Listener, BindError> {
        if let Some(addr) = explicit {
            return Listener::bind(addr, port, path, limits, stats);
        }
        match platform_address(RESOLVE_TIMEOUT) {
            Some(addr) => {
                match Listener::bind(addr, port, path.clone(), limits.clone(), stats.clone()) {
                    Err(e) if e.source.kind() == io::ErrorKind::AddrNotAvailable => {
                        warn!("{TELEMETRY_HOST} is {addr}, which is not this machine's: listening for telemetry on all addresses")
                    }
                    bound => return bound,
                }
            }
            None => info!(
                "{TELEMETRY_HOST} does not resolve here: listening for telemetry on all addresses (KINESIS_TELEMETRY_BIND_ADDRESS chooses one)"
            ),
        }
        Listener::bind(ALL_ADDRESSES, port, path, limits, stats)
    }

    pub fn port(&self) -> u16 {
        self.socket.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    /// The destination URI to subscribe with: the platform's name for this host, the port
    /// and the secret path.
    pub fn destination(&self) -> String {
        format!("http://{TELEMETRY_HOST}:{}{}", self.port(), self.path)
    }

    /// Starts the accept thread, which serves connections for the life of the process.
    /// Fails only if that thread cannot be spawned.
    pub fn spawn(self, handler: Arc<dyn Handler>) -> io::Result<()> {
        let shared = Arc::new(Shared::new(self.path, self.limits, self.stats, handler));
        let socket = self.socket;
        thread::Builder::new()
            .name("telemetry-accept".into())
            .stack_size(ACCEPT_STACK_BYTES)
            .spawn(move || {
                accept_loop(socket.incoming(), &shared.stats, thread::sleep, |stream| {
                    open_connection(stream, &shared)
                })
            })
            .map(drop)
    }
}

/// Accepts until `incoming` ends (a real socket's never does), handing each connection to
/// `serve` and pausing with `pause` after errors that are not about one connection.
fn accept_loop<C>(
    incoming: impl IntoIterator<Item = io::Result<C>>,
    stats: &ListenerStats,
    mut pause: impl FnMut(Duration),
    mut serve: impl FnMut(C),
) {
    let mut backoff = Backoff::default();
    for accepted in incoming {
        match accepted {
            Ok(conn) => {
                backoff.succeeded();
                serve(conn);
            }
            Err(e) => {
                bump(&stats.accept_errors);
                if let Some(wait) = backoff.failed(&e) {
                    // No event announces that a descriptor has freed up: waiting is the
                    // only way not to spin.
                    pause(wait);
                }
            }
        }
    }
}

/// Errors of accept(2) that concern only the connection being accepted.
fn is_transient(e: &io::Error) -> bool {
    use io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionAborted
            | ConnectionReset
            | Interrupted
            | NetworkDown
            | NetworkUnreachable
            | HostUnreachable
    ) || matches!(
        e.raw_os_error(),
        Some(EPROTO | ENONET | ENOPROTOOPT | EOPNOTSUPP | EHOSTDOWN)
    )
}

/// The accept loop's memory of a run of failing accepts.
#[derive(Debug, Default)]
struct Backoff {
    episode: Option<Episode>,
}

#[derive(Debug)]
struct Episode {
    since: Instant,
    errors: u64,
    next_pause: Duration,
}

impl Backoff {
    /// How long to wait after this error before accepting again; `None`: at once.
    fn failed(&mut self, e: &io::Error) -> Option<Duration> {
        if is_transient(e) {
            debug!("telemetry listener: a connection failed while being accepted ({e}); accepting the next");
            return None;
        }
        let episode = self.episode.get_or_insert_with(|| {
            warn!(
                "telemetry listener: accepting a connection failed: {e}; retrying with a pause of up to {ACCEPT_PAUSE_MAX:?} until it works (pending connections wait in the kernel's queue, so nothing is lost yet)"
            );
            Episode {
                since: Instant::now(),
                errors: 0,
                next_pause: ACCEPT_PAUSE_FIRST,
            }
        });
        episode.errors += 1;
        let wait = episode.next_pause;
        episode.next_pause = (wait * 2).min(ACCEPT_PAUSE_MAX);
        Some(wait)
    }

    fn succeeded(&mut self) {
        if let Some(episode) = self.episode.take() {
            info!(
                "telemetry listener: accepting connections again after {} failed attempts over {:.1?}",
                episode.errors,
                episode.since.elapsed()
            );
        }
    }
}

/// Frees a connection's slot when its thread ends, or when the thread never started: a
/// failed spawn drops the closure, and this and the socket with it.
struct Leave(Arc<Shared>, u64);

impl Drop for Leave {
    fn drop(&mut self) {
        self.0.slots.leave(self.1);
    }
}

/// Runs on the accept thread, which alone admits connections, so the cap holds.
fn open_connection(stream: TcpStream, shared: &Arc<Shared>) {
    let stats = &shared.stats;
    bump(&stats.connections);
    let stream = Arc::new(stream);
    let id = match shared.slots.admit(stream.clone(), Instant::now()) {
        Admission::Admitted { id, evicted } => {
            if let Some(idle) = evicted {
                count_once(
                    &stats.evicted,
                    format_args!(
                        "all {} telemetry connection slots were taken: closed the connection idle longest ({idle:.1?}) to make room for a new one (Lambda normally keeps one)",
                        shared.slots.cap()
                    ),
                );
            }
            id
        }
        Admission::Full => {
            count_once(
                &stats.refused_connections,
                format_args!(
                    "all {} telemetry connection slots hold a request in progress: closed the newest connection (Lambda normally keeps one)",
                    shared.slots.cap()
                ),
            );
            return;
        }
    };
    let leave = Leave(shared.clone(), id);
    let spawned = thread::Builder::new()
        .name("telemetry-conn".into())
        .stack_size(CONNECTION_STACK_BYTES)
        .spawn(move || {
            let shared = &*leave.0;
            let timeout = connection::request_timeout(shared);
            let socket = SlotSocket::new(stream, &shared.slots, id, timeout);
            Connection::new(socket, shared).serve();
        });
    if let Err(e) = spawned {
        count_once(
            &stats.refused_connections,
            format_args!("cannot start a thread for a telemetry connection ({e}): closed it"),
        );
    }
}

#[cfg(test)]
mod props;
#[cfg(test)]
mod tests;
