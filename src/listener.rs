//! The telemetry listener: a minimal HTTP/1.1 server on `std::net` and `httparse` that takes
//! the Telemetry API's POSTs and hands each complete body to a [`Handler`].
//!
//! Threading: one accept thread, started by [`Listener::spawn`], runs for the life of the
//! process and spawns one thread per connection, at most [`Limits::max_connections`] at once.
//! Each connection thread owns its socket and buffers and calls the handler itself, so the
//! handler runs on several threads at once when Lambda opens several connections (it
//! normally keeps one alive). A connection over the cap, or whose thread cannot be spawned,
//! is closed at once: nothing is ever queued in user space.
//!
//! Invariants:
//! - The accept loop never ends. Errors that belong to one pending connection
//!   (`ECONNABORTED`, `EPROTO`, network errors the kernel passes on) are counted and the loop
//!   accepts again at once. Every other error (`EMFILE`, `ENFILE`, `ENOBUFS`, `ENOMEM`, and
//!   anything unexpected) is counted, logged once per episode, and retried after a pause
//!   doubling from 5 ms to 200 ms: pending connections wait in the kernel's queue meanwhile
//!   and are served as soon as a descriptor frees up.
//! - Between requests a connection waits with no timeout: the sandbox may be frozen for hours
//!   and Lambda reuses its keep-alive connection after the thaw. From the first byte of a
//!   request, the head and the whole body must arrive within [`Limits::request_timeout`],
//!   or the connection is closed and counted as `stalled`. A stalled peer therefore holds
//!   only its own thread, and only for that long. (A request cut by a freeze may be closed
//!   as stalled at the thaw, like any stalled request.)
//! - Nothing the peer sends can panic the listener; memory per connection is bounded by
//!   [`MAX_HEAD_BYTES`] plus [`Limits::max_body`], and an idle connection keeps at most
//!   [`KEEP_BODY_CAPACITY`] of body buffer.
//!
//! Answers: the handler's status for a POST; 400 for malformed HTTP, 405 for other methods,
//! 413 for a body over [`Limits::max_body`] (from `Content-Length` before reading it, or as
//! soon as chunks pass it), 417 for an `Expect` other than `100-continue`, 431 for a head
//! over [`MAX_HEAD_BYTES`], 501 for a transfer coding other than `chunked`. Every refusal
//! closes the connection. HTTP/1.0 requests are answered and the connection closed; any
//! path is accepted (the subscription URI has none).

use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use log::{debug, info, warn};

use connection::Connection;

mod connection;

/// Default [`Limits::max_body`]: the largest POST the Telemetry API sends at the maximum
/// buffering `maxBytes` (1 MiB), "up to about `2 * maxBytes` plus metadata", with a
/// megabyte to spare.
pub const DEFAULT_MAX_BODY: usize = 3 << 20;
/// Default [`Limits::max_connections`]: Lambda keeps one connection alive; a few more cover a
/// reconnect while an old connection is still being torn down.
pub const DEFAULT_MAX_CONNECTIONS: usize = 16;
/// Default [`Limits::request_timeout`]: a 2 MiB body over loopback takes milliseconds, so
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
pub struct Limits {
    /// Largest body accepted, in bytes; a larger one is answered 413. Default
    /// [`DEFAULT_MAX_BODY`].
    pub max_body: usize,
    /// Connections served at once; the next one is closed at once. Default
    /// [`DEFAULT_MAX_CONNECTIONS`]; 0 counts as 1.
    pub max_connections: usize,
    /// Time from a request's first byte to the end of its body. Default
    /// [`DEFAULT_REQUEST_TIMEOUT`]; clamped to 1 ms ..= 1 day.
    pub request_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_body: DEFAULT_MAX_BODY,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
        }
    }
}

/// Counters the listener keeps, for the summary line and metrics. All are totals since
/// start except `open_connections`.
#[derive(Debug, Default)]
pub struct ListenerStats {
    /// Connections accepted (including those then refused).
    pub connections: AtomicU64,
    /// Connections being served now (a gauge).
    pub open_connections: AtomicU64,
    /// POST bodies handed to the handler.
    pub requests: AtomicU64,
    /// Failed accept calls, of every kind.
    pub accept_errors: AtomicU64,
    /// Connections closed because a request did not arrive within the request timeout.
    pub stalled: AtomicU64,
    /// Connections the peer closed or reset in the middle of a request.
    pub aborted: AtomicU64,
    /// Connections closed at once: over the cap, or no thread could be spawned.
    pub refused_connections: AtomicU64,
    /// Requests answered 400, 417, 431 or 501.
    pub bad_requests: AtomicU64,
    /// Requests answered 413.
    pub too_large: AtomicU64,
    /// Requests answered 405.
    pub method_not_allowed: AtomicU64,
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

/// The listening socket could not be set up.
#[derive(Debug)]
pub struct BindError {
    pub addr: SocketAddr,
    pub source: io::Error,
}

impl fmt::Display for BindError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cannot listen for telemetry on {}: {}",
            self.addr, self.source
        )
    }
}

impl std::error::Error for BindError {}

/// A bound listening socket, not yet accepting.
pub struct Listener {
    socket: TcpListener,
    limits: Limits,
    stats: Arc<ListenerStats>,
}

/// What every connection thread shares.
struct Shared {
    limits: Limits,
    stats: Arc<ListenerStats>,
    handler: Arc<dyn Handler>,
}

impl Listener {
    /// Binds `addr:port`; port 0 picks a free port, which [`Listener::port`] tells.
    pub fn bind(
        addr: IpAddr,
        port: u16,
        limits: Limits,
        stats: Arc<ListenerStats>,
    ) -> Result<Listener, BindError> {
        let addr = SocketAddr::new(addr, port);
        let socket = TcpListener::bind(addr).map_err(|source| BindError { addr, source })?;
        Ok(Listener {
            socket,
            limits,
            stats,
        })
    }

    pub fn port(&self) -> u16 {
        self.socket.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    /// Starts the accept thread, which serves connections for the life of the process.
    /// Fails only if that thread cannot be spawned.
    pub fn spawn(self, handler: Arc<dyn Handler>) -> io::Result<()> {
        let shared = Arc::new(Shared {
            limits: self.limits,
            stats: self.stats,
            handler,
        });
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
                stats.accept_errors.fetch_add(1, Relaxed);
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

/// Frees a connection's place under the cap when its thread ends, or when the thread never
/// started: a failed spawn drops the closure, and this and the socket with it.
struct Slot(Arc<ListenerStats>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.open_connections.fetch_sub(1, Relaxed);
    }
}

/// Runs on the accept thread, which alone adds to `open_connections`, so the cap holds.
fn open_connection(stream: TcpStream, shared: &Arc<Shared>) {
    let stats = &shared.stats;
    stats.connections.fetch_add(1, Relaxed);
    let cap = shared.limits.max_connections.max(1) as u64;
    if stats.open_connections.load(Relaxed) >= cap {
        count_once(
            &stats.refused_connections,
            format_args!("more than {cap} telemetry connections at once: closed the newest (Lambda normally keeps one)"),
        );
        return;
    }
    stats.open_connections.fetch_add(1, Relaxed);
    let slot = Slot(stats.clone());
    let conn_shared = shared.clone();
    let spawned = thread::Builder::new()
        .name("telemetry-conn".into())
        .stack_size(CONNECTION_STACK_BYTES)
        .spawn(move || {
            let _slot = slot;
            Connection::new(stream, &conn_shared).serve();
        });
    if let Err(e) = spawned {
        count_once(
            &stats.refused_connections,
            format_args!("cannot start a thread for a telemetry connection ({e}): closed it"),
        );
    }
}

/// Counts an event; logs the first one as a warning, the others at debug level.
fn count_once(counter: &AtomicU64, what: fmt::Arguments<'_>) {
    let n = counter.fetch_add(1, Relaxed) + 1;
    if n == 1 {
        warn!("telemetry listener: {what}; further ones are counted in the summary");
    } else {
        debug!("telemetry listener: {what} ({n} so far)");
    }
}

#[cfg(test)]
mod tests;
