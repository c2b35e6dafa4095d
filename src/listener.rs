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
//!   only its own thread, and only for that long.
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
use std::io::{self, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use log::{debug, info, warn};

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

/// Headers parsed per request; more is answered 431.
const MAX_HEADERS: usize = 64;
/// Stack of a connection thread. The handler splits JSON with serde_json, which walks nested
/// values it keeps raw or ignores with a heap stack of its own (`ignore_value`), so the depth
/// used does not grow with the input; the `deep_json_fits_the_connection_stack` test runs the
/// extension's own parser on a deeply nested batch in a debug build within this size. The
/// reservation is address space: pages are only committed as they are touched.
const CONNECTION_STACK_BYTES: usize = 256 << 10;
/// Stack of the accept thread, which only accepts, logs and spawns.
const ACCEPT_STACK_BYTES: usize = 128 << 10;
/// First pause after an accept error that is not about one connection; it doubles up to
/// [`ACCEPT_PAUSE_MAX`], so a descriptor shortage costs at most a few wakeups a second.
const ACCEPT_PAUSE_FIRST: Duration = Duration::from_millis(5);
const ACCEPT_PAUSE_MAX: Duration = Duration::from_millis(200);
/// Socket reads for the head go through a buffer this size.
const READ_CHUNK: usize = 8 << 10;
/// A body is read straight into its buffer, growing it by at most this much per read so the
/// memory used follows the bytes received, not the `Content-Length` claimed.
const BODY_READ_STEP: usize = 64 << 10;
/// After a refusal, how long the rest of the request is read and discarded before closing:
/// closing with unread data makes the kernel send a reset that can destroy our answer
/// before the peer reads it.
const LINGER: Duration = Duration::from_secs(1);

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
    /// [`DEFAULT_REQUEST_TIMEOUT`].
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

/// Why a connection ends.
#[derive(Debug)]
enum End {
    /// The peer closed between requests, or the answer said `Connection: close`.
    Done,
    /// The peer closed or reset the connection mid-request.
    Aborted,
    /// The request did not arrive within the request timeout.
    Stalled,
    /// Answer this status, then close.
    Refuse(u16),
}

/// How the body of a request is framed.
#[derive(Debug, PartialEq)]
enum Framing {
    Empty,
    Length(u64),
    Chunked,
}

/// What the listener needs from a request head.
#[derive(Debug)]
struct Head {
    post: bool,
    framing: Framing,
    close: bool,
    expect_continue: bool,
}

/// The socket and the time budget of the request being read.
struct Wire {
    stream: TcpStream,
    /// When the current request must be complete; `None` while idle between requests.
    deadline: Option<Instant>,
}

impl Wire {
    /// Reads at least one byte. End of stream or a reset ends the connection.
    fn read(&mut self, into: &mut [u8]) -> Result<usize, End> {
        loop {
            let timeout = match self.deadline {
                None => None,
                Some(d) => match d.checked_duration_since(Instant::now()) {
                    Some(left) if !left.is_zero() => Some(left),
                    _ => return Err(End::Stalled),
                },
            };
            if self.stream.set_read_timeout(timeout).is_err() {
                return Err(End::Aborted);
            }
            let closed = if self.deadline.is_some() {
                End::Aborted
            } else {
                End::Done
            };
            match self.stream.read(into) {
                Ok(0) => return Err(closed),
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Err(End::Stalled)
                }
                Err(e) => {
                    debug!("telemetry listener: reading a connection failed: {e}");
                    return Err(closed);
                }
            }
        }
    }
}

/// One connection, owned by its thread.
struct Connection<'a> {
    wire: Wire,
    /// Bytes read and not yet used: the rest of this request's head, the start of its body,
    /// or the next pipelined request.
    inbuf: Vec<u8>,
    body: Vec<u8>,
    shared: &'a Shared,
}

impl<'a> Connection<'a> {
    fn new(stream: TcpStream, shared: &'a Shared) -> Connection<'a> {
        // Answers are one small write each: send them at once, and never wait long on a peer
        // that does not read.
        let _ = stream.set_nodelay(true);
        let _ = stream.set_write_timeout(Some(shared.limits.request_timeout));
        Connection {
            wire: Wire {
                stream,
                deadline: None,
            },
            inbuf: Vec::new(),
            body: Vec::new(),
            shared,
        }
    }

    /// Serves requests until the peer closes or one of them ends the connection.
    fn serve(mut self) {
        let end = loop {
            let close = match self.next_request() {
                Ok(close) => close,
                Err(end) => break end,
            };
            self.shared.stats.requests.fetch_add(1, Relaxed);
            let status = self.shared.handler.post(&self.body);
            if self.respond(status, close).is_err() || close {
                break End::Done;
            }
            self.body.clear();
            if self.body.capacity() > KEEP_BODY_CAPACITY {
                self.body = Vec::new();
            }
            self.inbuf.shrink_to(READ_CHUNK);
        };
        let stats = &self.shared.stats;
        match end {
            End::Done => {}
            End::Aborted => {
                stats.aborted.fetch_add(1, Relaxed);
                debug!("telemetry listener: the peer closed a connection mid-request");
            }
            End::Stalled => count_once(
                &stats.stalled,
                format_args!(
                    "a telemetry request did not arrive within {:?}: closed its connection (other connections are unaffected)",
                    self.shared.limits.request_timeout
                ),
            ),
            End::Refuse(status) => {
                let counter = match status {
                    405 => &stats.method_not_allowed,
                    413 => &stats.too_large,
                    _ => &stats.bad_requests,
                };
                count_once(
                    counter,
                    format_args!("a request was answered {status} {}", reason(status)),
                );
                if self.respond(status, true).is_ok() {
                    self.linger();
                }
            }
        }
    }

    /// Reads the next request's body into `self.body`; returns whether to close after the
    /// answer.
    fn next_request(&mut self) -> Result<bool, End> {
        self.body.clear();
        self.wire.deadline = None;
        if self.inbuf.is_empty() {
            self.fill()?;
        }
        self.wire.deadline = Some(Instant::now() + self.shared.limits.request_timeout);
        let head = self.read_head()?;
        if !head.post {
            return Err(End::Refuse(405));
        }
        let max_body = self.shared.limits.max_body;
        if let Framing::Length(n) = head.framing {
            if n > max_body as u64 {
                return Err(End::Refuse(413));
            }
        }
        if head.expect_continue && head.framing != Framing::Empty {
            self.write(b"HTTP/1.1 100 Continue\r\n\r\n")?;
        }
        match head.framing {
            Framing::Empty => {}
            // At most `max_body`, checked above.
            Framing::Length(n) => self.read_body(n as usize)?,
            Framing::Chunked => self.read_chunked(max_body)?,
        }
        Ok(head.close)
    }

    /// Reads more bytes into `inbuf`.
    fn fill(&mut self) -> Result<(), End> {
        let mut chunk = [0u8; READ_CHUNK];
        let n = self.wire.read(&mut chunk)?;
        self.inbuf
            .extend_from_slice(chunk.get(..n).unwrap_or_default());
        Ok(())
    }

    fn read_head(&mut self) -> Result<Head, End> {
        loop {
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut request = httparse::Request::new(&mut headers);
            match request.parse(&self.inbuf) {
                Ok(httparse::Status::Complete(len)) if len <= MAX_HEAD_BYTES => {
                    let head = parse_head(&request)?;
                    self.inbuf.drain(..len);
                    return Ok(head);
                }
                Ok(httparse::Status::Complete(_)) | Err(httparse::Error::TooManyHeaders) => {
                    return Err(End::Refuse(431))
                }
                Ok(httparse::Status::Partial) if self.inbuf.len() >= MAX_HEAD_BYTES => {
                    return Err(End::Refuse(431))
                }
                Ok(httparse::Status::Partial) => {}
                Err(_) => return Err(End::Refuse(400)),
            }
            self.fill()?;
        }
    }

    /// Appends `n` body bytes to `self.body`: those already buffered, then the rest read
    /// straight from the socket.
    fn read_body(&mut self, n: usize) -> Result<(), End> {
        self.body.reserve(n);
        let buffered = n.min(self.inbuf.len());
        self.body.extend(self.inbuf.drain(..buffered));
        let mut left = n - buffered;
        while left > 0 {
            let start = self.body.len();
            self.body.resize(start + left.min(BODY_READ_STEP), 0);
            let got = self.wire.read(&mut self.body[start..])?;
            self.body.truncate(start + got);
            left -= got;
        }
        Ok(())
    }

    /// Reassembles a chunked body, refusing it as soon as it passes `max_body`.
    fn read_chunked(&mut self, max_body: usize) -> Result<(), End> {
        loop {
            let size = loop {
                match httparse::parse_chunk_size(&self.inbuf) {
                    // httparse takes an empty size line for 0: it is malformed.
                    Ok(httparse::Status::Complete((len, size)))
                        if self.inbuf.first().is_some_and(u8::is_ascii_hexdigit) =>
                    {
                        self.inbuf.drain(..len);
                        break size;
                    }
                    Ok(httparse::Status::Partial) if self.inbuf.len() < MAX_HEAD_BYTES => {
                        self.fill()?
                    }
                    _ => return Err(End::Refuse(400)),
                }
            };
            if size == 0 {
                break;
            }
            let room = (max_body - self.body.len()) as u64;
            if size > room {
                return Err(End::Refuse(413));
            }
            self.read_body(size as usize)?;
            while self.inbuf.len() < 2 {
                self.fill()?;
            }
            if !self.inbuf.starts_with(b"\r\n") {
                return Err(End::Refuse(400));
            }
            self.inbuf.drain(..2);
        }
        // Trailer fields, if any, up to the empty line; they are ignored.
        loop {
            let mut trailers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            match httparse::parse_headers(&self.inbuf, &mut trailers) {
                Ok(httparse::Status::Complete((len, _))) => {
                    self.inbuf.drain(..len);
                    return Ok(());
                }
                Ok(httparse::Status::Partial) if self.inbuf.len() < MAX_HEAD_BYTES => {
                    self.fill()?
                }
                _ => return Err(End::Refuse(400)),
            }
        }
    }

    fn respond(&mut self, status: u16, close: bool) -> Result<(), End> {
        // Our own handler picks the status; still never write a malformed status line.
        let status = if (100..=999).contains(&status) {
            status
        } else {
            500
        };
        let allow = if status == 405 { "Allow: POST\r\n" } else { "" };
        let connection = if close { "Connection: close\r\n" } else { "" };
        let answer = format!(
            "HTTP/1.1 {status} {}\r\nContent-Length: 0\r\n{allow}{connection}\r\n",
            reason(status)
        );
        self.write(answer.as_bytes())
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), End> {
        self.wire.stream.write_all(bytes).map_err(|e| {
            debug!("telemetry listener: writing an answer failed: {e}");
            End::Aborted
        })
    }

    /// Closes our side, then reads and discards what the peer still sends, for a moment, so
    /// that it gets to read the refusal.
    fn linger(&mut self) {
        let _ = self.wire.stream.shutdown(Shutdown::Write);
        self.wire.deadline = Some(Instant::now() + LINGER);
        let mut chunk = [0u8; READ_CHUNK];
        while self.wire.read(&mut chunk).is_ok() {}
    }
}

/// Takes what the listener needs from a parsed head, refusing what it cannot serve.
fn parse_head(request: &httparse::Request<'_, '_>) -> Result<Head, End> {
    let mut length: Option<u64> = None;
    let mut chunked = false;
    let mut close = request.version != Some(1);
    let mut expect_continue = false;
    for header in request.headers.iter() {
        let value = std::str::from_utf8(header.value).unwrap_or("\u{0}").trim();
        let name = header.name;
        if name.eq_ignore_ascii_case("content-length") {
            // `u64::from_str` would take a leading '+'; the grammar is digits only.
            let n = Some(value)
                .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|v| v.parse::<u64>().ok())
                .ok_or(End::Refuse(400))?;
            if length.is_some_and(|l| l != n) {
                return Err(End::Refuse(400));
            }
            length = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            if !value.eq_ignore_ascii_case("chunked") {
                return Err(End::Refuse(501));
            }
            if chunked {
                return Err(End::Refuse(400));
            }
            chunked = true;
        } else if name.eq_ignore_ascii_case("connection") {
            close |= value
                .split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("close"));
        } else if name.eq_ignore_ascii_case("expect") {
            if !value.eq_ignore_ascii_case("100-continue") {
                return Err(End::Refuse(417));
            }
            expect_continue = true;
        }
    }
    let framing = match (length, chunked) {
        // Both framings at once is how requests are smuggled: refuse it.
        (Some(_), true) => return Err(End::Refuse(400)),
        (Some(n), false) => Framing::Length(n),
        (None, true) => Framing::Chunked,
        (None, false) => Framing::Empty,
    };
    Ok(Head {
        post: request.method == Some("POST"),
        framing,
        close,
        expect_continue,
    })
}

fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        202 => "Accepted",
        204 => "No Content",
        400 => "Bad Request",
        405 => "Method Not Allowed",
        413 => "Content Too Large",
        417 => "Expectation Failed",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        _ => "",
    }
}

#[cfg(test)]
mod tests;
