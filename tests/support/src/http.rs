//! HTTP/1.1 for the fakes. The server half is hand-written over std sockets because the
//! fakes need full control of the wire: keep-alive, closing a connection without
//! answering, stalling before an answer. The client half is ureq.
//!
//! Server threading model: one accept thread per [`Server`], one thread per accepted
//! connection running a keep-alive loop (read request, call the handler, write the
//! answer). The handler runs on the connection thread, so a handler that stalls only
//! stalls its own connection. Idle connections poll the stop flag every
//! [`IDLE_POLL`] so that dropping the server ends them; a request that has started
//! arriving must complete within [`REQUEST_READ_TIMEOUT`].
//!
//! Connect faults ([`ServerControl`]): the accept thread can be held and the listen queue
//! filled, so that new connects hang (see [`crate::tcp`]); idle keep-alive connections can be
//! closed, so that a client's next request needs a new connect.
//!
//! Client: [`Client`] (one keep-alive connection) and [`request_once`] (a fresh one),
//! thin wrappers over a ureq agent that send exactly the headers given and report
//! failures as `io::Error`s.
//!
//! Nothing here panics on bad input from the peer: errors are returned or answered.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::tcp;

/// How often an idle keep-alive connection checks whether its server was stopped.
pub const IDLE_POLL: Duration = Duration::from_millis(50);
/// Time allowed for the rest of a request once its first byte has arrived.
pub const REQUEST_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest request head (request line + headers) accepted.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;

/// Header list preserving order and case as received.
pub type Headers = Vec<(String, String)>;

/// First value of a header, by case-insensitive name.
pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// A request as received by a [`Server`].
#[derive(Clone, Debug)]
pub struct Request {
    pub method: String,
    /// Path without the query string, e.g. `/2020-01-01/extension/register`.
    pub path: String,
    /// Query string without `?`, empty when absent.
    pub query: String,
    pub version: String,
    pub headers: Headers,
    pub body: Vec<u8>,
    /// Zero-based index of this request on its connection (1+ means a reused connection).
    pub index_on_connection: u64,
    /// Zero-based index of the connection among those this server accepted.
    pub connection_index: u64,
    /// The connection it came on (`None` for a request built by hand).
    pub connection: Option<Connection>,
}

/// The connection a request came on, for a handler that holds its answer and wants to know
/// whether the client is still there.
#[derive(Clone, Debug)]
pub struct Connection {
    pub peer: SocketAddr,
    stream: Arc<TcpStream>,
}

impl Connection {
    /// Waits up to `wait` for the client to close the connection (or reset it); returns
    /// whether it did. When the client sends more bytes instead (left for the server to
    /// read), a hang-up cannot be seen behind them: this just waits out `wait`.
    pub fn wait_for_hang_up(&self, wait: Duration) -> bool {
        let until = Instant::now() + wait;
        let mut byte = [0u8; 1];
        loop {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            // The connection loop sets its own read timeout before each read, so changing
            // it here (the same socket) is harmless: nothing else reads meanwhile.
            let _ = self
                .stream
                .set_read_timeout(Some(left.max(Duration::from_millis(1))));
            match self.stream.peek(&mut byte) {
                Ok(0) => return true,
                Ok(_) => {
                    thread::sleep(left);
                    return false;
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return true,
            }
        }
    }
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }

    /// Whether the client asked to close the connection after this exchange.
    pub fn wants_close(&self) -> bool {
        let conn = self.header("connection").unwrap_or("").to_ascii_lowercase();
        conn.contains("close") || (self.version == "HTTP/1.0" && !conn.contains("keep-alive"))
    }
}

/// An answer to write back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub headers: Headers,
    pub body: Vec<u8>,
}

impl Response {
    pub fn new(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Self {
        Response {
            status,
            headers: vec![("Content-Type".to_owned(), content_type.to_owned())],
            body: body.into(),
        }
    }

    pub fn json(status: u16, value: &serde_json::Value) -> Self {
        Response::new(status, "application/json", value.to_string())
    }

    pub fn empty(status: u16) -> Self {
        Response {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }
}

/// What a handler wants done with a request.
#[derive(Debug)]
pub enum Action {
    /// Write this answer (then keep the connection unless either side asked to close).
    Respond(Response),
    /// Close the connection without writing a byte (a lost answer, from the client's view).
    Drop,
}

/// Request handler shared by all connection threads of a server.
pub trait Handler: Send + Sync + 'static {
    fn handle(&self, request: Request) -> Action;
}

/// A listening server on `127.0.0.1:0`. Dropping it stops accepting and ends idle connections.
pub struct Server {
    control: Arc<ServerControl>,
    accept: Option<JoinHandle<()>>,
}

/// What can be done to a running [`Server`]'s connections from any thread: hang new
/// connects, take them again, close idle ones. Shared by the server and whoever scripts
/// its faults ([`Server::control`]).
pub struct ServerControl {
    addr: SocketAddr,
    /// A second handle on the listening socket, to change its backlog.
    listener: TcpListener,
    stop: AtomicBool,
    connections: AtomicU64,
    /// Idle connections accepted under an older epoch close.
    epoch: AtomicU64,
    gate: Mutex<Gate>,
    /// Signals the accept thread that the gate opened, and the other way round that it
    /// parked at the gate.
    opened: Condvar,
    parked: Condvar,
}

#[derive(Default)]
struct Gate {
    /// The accept thread waits before serving what it accepted.
    held: bool,
    /// It is waiting (so nothing leaves the listen queue).
    waiting: bool,
    /// Connections that fill the listen queue while connects hang.
    fillers: Vec<TcpStream>,
}

impl ServerControl {
    fn gate(&self) -> MutexGuard<'_, Gate> {
        self.gate.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// From now on new TCP connects hang: the accept thread is held, the listen queue is
    /// cut to one place and filled, and idle keep-alive connections are closed (so a
    /// client's next request dials). Requests already being answered finish. A connection
    /// that arrives while this is being set up may get in and wait unanswered until
    /// [`Self::accept_connects`].
    pub fn hang_connects(&self) -> io::Result<()> {
        let mut g = self.gate();
        if g.held {
            return Ok(());
        }
        g.held = true;
        drop(g);
        self.close_idle_connections();
        tcp::set_backlog(&self.listener, 0)?;
        // The accept thread takes one more connection before it parks at the gate; until it
        // has, the queue drains and filling it proves nothing.
        let first = TcpStream::connect_timeout(&self.addr, Duration::from_secs(5))?;
        let mut g = self.gate();
        g.fillers.push(first);
        let until = Instant::now() + Duration::from_secs(5);
        while !g.waiting {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::Error::other("the accept thread did not park"));
            }
            g = self
                .parked
                .wait_timeout(g, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        drop(g);
        let fillers = tcp::fill_backlog(self.addr)?;
        self.gate().fillers.extend(fillers);
        Ok(())
    }

    /// Whether connects are being made to hang.
    pub fn connects_hang(&self) -> bool {
        self.gate().held
    }

    /// Takes connects again: the listen queue gets its usual size, the fillers close and
    /// the accept thread serves what waited in the queue.
    pub fn accept_connects(&self) {
        let _ = tcp::set_backlog(&self.listener, tcp::DEFAULT_BACKLOG);
        let mut g = self.gate();
        g.held = false;
        g.fillers.clear();
        drop(g);
        self.opened.notify_all();
    }

    /// Closes every keep-alive connection that is idle now (within [`IDLE_POLL`]).
    pub fn close_idle_connections(&self) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
    }

    /// Whether the server was stopped.
    pub fn is_stopped(&self) -> bool {
        self.stopped()
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// Waits while the gate is held; false when the server stopped meanwhile.
    fn wait_for_gate(&self) -> bool {
        let mut g = self.gate();
        while g.held && !self.stopped() {
            g.waiting = true;
            self.parked.notify_all();
            g = self.opened.wait(g).unwrap_or_else(|e| e.into_inner());
        }
        g.waiting = false;
        !self.stopped()
    }
}

impl Server {
    /// Binds `127.0.0.1:0` and starts serving `handler`.
    pub fn start(handler: Arc<dyn Handler>) -> io::Result<Server> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let control = Arc::new(ServerControl {
            addr,
            listener: listener.try_clone()?,
            stop: AtomicBool::new(false),
            connections: AtomicU64::new(0),
            epoch: AtomicU64::new(0),
            gate: Mutex::new(Gate::default()),
            opened: Condvar::new(),
            parked: Condvar::new(),
        });
        let accept = {
            let control = control.clone();
            thread::Builder::new()
                .name(format!("fake-accept-{}", addr.port()))
                .spawn(move || {
                    for stream in listener.incoming() {
                        if control.stopped() {
                            break;
                        }
                        let Ok(stream) = stream else { continue };
                        if !control.wait_for_gate() {
                            break;
                        }
                        let index = control.connections.fetch_add(1, Ordering::SeqCst);
                        let (handler, control) = (handler.clone(), control.clone());
                        let _ = thread::Builder::new()
                            .name(format!("fake-conn-{}-{index}", addr.port()))
                            .spawn(move || {
                                serve_connection(stream, index, handler.as_ref(), &control)
                            });
                    }
                })?
        };
        Ok(Server {
            control,
            accept: Some(accept),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.control.addr
    }

    /// The handle that hangs connects or closes idle connections, from any thread.
    pub fn control(&self) -> Arc<ServerControl> {
        self.control.clone()
    }

    /// Number of TCP connections accepted so far (keep-alive reuse keeps it low).
    pub fn connections_accepted(&self) -> u64 {
        self.control.connections.load(Ordering::SeqCst)
    }

    /// Stops accepting; idle connections close within [`IDLE_POLL`].
    pub fn stop(&mut self) {
        let c = &self.control;
        if c.stop.swap(true, Ordering::SeqCst) {
            return;
        }
        // A held accept thread wakes on the gate; one blocked in accept() on a connection.
        c.accept_connects();
        let _ = TcpStream::connect_timeout(&c.addr, Duration::from_secs(1));
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Serves one accepted connection until either side ends it, then shuts the socket down
/// (a handler may still hold a [`Connection`], which must not keep the client waiting).
fn serve_connection(
    stream: TcpStream,
    connection_index: u64,
    handler: &dyn Handler,
    control: &ServerControl,
) {
    let _ = stream.set_nodelay(true);
    let epoch = control.epoch.load(Ordering::SeqCst);
    let peer = stream.peer_addr().ok();
    let (Ok(mut writer), Ok(shared)) = (stream.try_clone(), stream.try_clone()) else {
        return;
    };
    let connection = peer.map(|peer| Connection {
        peer,
        stream: Arc::new(shared),
    });
    let mut reader = BufReader::new(stream);
    let ids = (connection_index, epoch);
    keep_alive(&mut reader, &mut writer, ids, connection, handler, control);
    let _ = writer.shutdown(Shutdown::Both);
}

/// The keep-alive loop: read a request, call the handler, write the answer.
fn keep_alive(
    reader: &mut BufReader<TcpStream>,
    writer: &mut TcpStream,
    (connection_index, epoch): (u64, u64),
    connection: Option<Connection>,
    handler: &dyn Handler,
    control: &ServerControl,
) {
    let mut index_on_connection = 0;
    loop {
        // Wait for the first byte of the next request, watching the stop flag and the
        // epoch (idle connections of an older one close).
        let _ = reader.get_ref().set_read_timeout(Some(IDLE_POLL));
        loop {
            if control.stopped() || control.epoch.load(Ordering::SeqCst) != epoch {
                return;
            }
            match reader.fill_buf() {
                Ok([]) => return,
                Ok(_) => break,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    continue
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return,
            }
        }
        let _ = reader
            .get_ref()
            .set_read_timeout(Some(REQUEST_READ_TIMEOUT));
        let request = match read_request(reader) {
            Ok((method, target, version, headers, body)) => {
                let (path, query) = match target.split_once('?') {
                    Some((p, q)) => (p.to_owned(), q.to_owned()),
                    None => (target, String::new()),
                };
                Request {
                    method,
                    path,
                    query,
                    version,
                    headers,
                    body,
                    index_on_connection,
                    connection_index,
                    connection: connection.clone(),
                }
            }
            Err(e) => {
                let _ = write_response(
                    writer,
                    &Response::new(400, "text/plain", e.to_string()),
                    true,
                );
                return;
            }
        };
        index_on_connection += 1;
        let close = request.wants_close();
        match handler.handle(request) {
            Action::Respond(resp) => {
                if write_response(writer, &resp, close).is_err() || close {
                    return;
                }
            }
            Action::Drop => return,
        }
    }
}

type Parsed = (String, String, String, Headers, Vec<u8>);

fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

fn read_head_line(reader: &mut impl BufRead, budget: &mut usize) -> io::Result<String> {
    let mut line = Vec::new();
    let n = reader
        .by_ref()
        .take(*budget as u64 + 1)
        .read_until(b'\n', &mut line)?;
    if n == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "connection closed",
        ));
    }
    if n > *budget {
        return Err(invalid("head too large"));
    }
    *budget -= n;
    while matches!(line.last(), Some(b'\n' | b'\r')) {
        line.pop();
    }
    String::from_utf8(line).map_err(|_| invalid("head is not UTF-8"))
}

fn read_headers(reader: &mut impl BufRead, budget: &mut usize) -> io::Result<Headers> {
    let mut headers = Vec::new();
    loop {
        let line = read_head_line(reader, budget)?;
        if line.is_empty() {
            return Ok(headers);
        }
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| invalid(format!("bad header line {line:?}")))?;
        headers.push((name.trim().to_owned(), value.trim().to_owned()));
    }
}

/// Reads a body framed by `Content-Length` or `Transfer-Encoding: chunked` (none:
/// no body).
fn read_body(reader: &mut impl BufRead, headers: &[(String, String)]) -> io::Result<Vec<u8>> {
    let chunked = header(headers, "transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    if chunked {
        let mut body = Vec::new();
        loop {
            let mut budget = MAX_HEAD_BYTES;
            let size_line = read_head_line(reader, &mut budget)?;
            let size_hex = size_line.split(';').next().unwrap_or("").trim();
            let size =
                usize::from_str_radix(size_hex, 16).map_err(|_| invalid("bad chunk size"))?;
            if size == 0 {
                // Trailers, then the empty line.
                let _ = read_headers(reader, &mut budget)?;
                return Ok(body);
            }
            let start = body.len();
            body.resize(start + size, 0);
            reader.read_exact(&mut body[start..])?;
            let mut crlf = [0u8; 2];
            reader.read_exact(&mut crlf)?;
        }
    }
    if let Some(len) = header(headers, "content-length") {
        let len: usize = len
            .trim()
            .parse()
            .map_err(|_| invalid("bad Content-Length"))?;
        let mut body = vec![0u8; len];
        reader.read_exact(&mut body)?;
        return Ok(body);
    }
    Ok(Vec::new())
}

fn read_request(reader: &mut impl BufRead) -> io::Result<Parsed> {
    let mut budget = MAX_HEAD_BYTES;
    let line = read_head_line(reader, &mut budget)?;
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(invalid(format!("bad request line {line:?}")));
    };
    if !version.starts_with("HTTP/1.") {
        return Err(invalid(format!("unsupported version {version}")));
    }
    let headers = read_headers(reader, &mut budget)?;
    let body = read_body(reader, &headers)?;
    Ok((
        method.to_owned(),
        target.to_owned(),
        version.to_owned(),
        headers,
        body,
    ))
}

/// Standard reason phrase (only cosmetic on the wire).
pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        202 => "Accepted",
        204 => "No Content",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        413 => "Payload Too Large",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}

/// Writes `resp` with a `Content-Length` and a `Connection` header.
pub fn write_response(w: &mut impl Write, resp: &Response, close: bool) -> io::Result<()> {
    let mut head = format!("HTTP/1.1 {} {}\r\n", resp.status, reason(resp.status));
    for (n, v) in &resp.headers {
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    head.push_str(&format!(
        "Content-Length: {}\r\nConnection: {}\r\n\r\n",
        resp.body.len(),
        if close { "close" } else { "keep-alive" }
    ));
    let mut buf = head.into_bytes();
    buf.extend_from_slice(&resp.body);
    w.write_all(&buf)?;
    w.flush()
}

// ---------------------------------------------------------------- client

/// A response as read by [`Client`] or [`request_once`].
#[derive(Clone, Debug)]
pub struct ClientResponse {
    pub status: u16,
    pub headers: Headers,
    pub body: Vec<u8>,
}

impl ClientResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }

    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body).ok()
    }
}

/// How long an idle keep-alive connection is reused: as long as the server keeps it
/// (ureq checks that it is still open before reusing it).
const KEEP_IDLE: Duration = Duration::from_secs(3600);

/// A keep-alive HTTP/1.1 client for one server address: a ureq agent that keeps one
/// connection. Sends exactly the headers given (no `User-Agent` or `Accept` of its
/// own) plus `Content-Length`; `headers` may set `Host` to another name than the
/// address dialled (the platform's `sandbox.localdomain`).
pub struct Client {
    agent: ureq::Agent,
    addr: SocketAddr,
}

impl Client {
    /// `timeout` bounds each whole exchange, connecting included.
    pub fn new(addr: SocketAddr, timeout: Duration) -> Self {
        Client {
            agent: agent(timeout, 1),
            addr,
        }
    }

    /// Sends one request and reads the whole answer, whatever its status. Errors keep
    /// their `io::ErrorKind` (`UnexpectedEof` for a connection closed unanswered,
    /// `TimedOut` for the timeout) so tests can tell them apart.
    pub fn request(
        &self,
        method: &str,
        target: &str,
        headers: &[(String, String)],
        body: &[u8],
    ) -> io::Result<ClientResponse> {
        let mut request = ureq::http::Request::builder()
            .method(method)
            .uri(format!("http://{}{target}", self.addr));
        for (name, value) in headers {
            request = request.header(name, value);
        }
        let result = if body.is_empty() && matches!(method, "GET" | "HEAD") {
            // ureq refuses a body, even an empty one, on methods that take none.
            self.agent.run(request.body(()).map_err(io::Error::other)?)
        } else {
            self.agent
                .run(request.body(body).map_err(io::Error::other)?)
        };
        let mut response = result.map_err(into_io)?;
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(n, v)| {
                let v = String::from_utf8_lossy(v.as_bytes()).into_owned();
                (n.as_str().to_owned(), v)
            })
            .collect();
        let body = response.body_mut().read_to_vec().map_err(into_io)?;
        Ok(ClientResponse {
            status,
            headers,
            body,
        })
    }
}

fn agent(timeout: Duration, idle_connections: usize) -> ureq::Agent {
    use ureq::config::AutoHeaderValue;
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(timeout))
        .max_redirects(0)
        .max_redirects_will_error(false)
        .max_idle_connections(idle_connections)
        .max_idle_connections_per_host(idle_connections)
        .max_idle_age(KEEP_IDLE)
        .user_agent(AutoHeaderValue::None)
        .accept(AutoHeaderValue::None)
        .accept_encoding(AutoHeaderValue::None)
        .build()
        .into()
}

fn into_io(e: ureq::Error) -> io::Error {
    match e {
        ureq::Error::Io(e) => e,
        ureq::Error::Timeout(t) => io::Error::new(io::ErrorKind::TimedOut, t.to_string()),
        other => io::Error::other(other),
    }
}

/// One request on a fresh connection, closed after it (`Connection: close`). Adds
/// `Host: <addr>` unless `headers` has one.
pub fn request_once(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(String, String)],
    body: &[u8],
    timeout: Duration,
) -> io::Result<ClientResponse> {
    let mut all = headers.to_vec();
    if header(&all, "host").is_none() {
        all.push(("Host".to_owned(), addr.to_string()));
    }
    all.push(("Connection".to_owned(), "close".to_owned()));
    let client = Client {
        agent: agent(timeout, 0),
        addr,
    };
    client.request(method, target, &all, body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// Answers `ok` to everything and keeps each request.
    struct Recorder(Mutex<Vec<Request>>);

    impl Handler for Recorder {
        fn handle(&self, request: Request) -> Action {
            self.0.lock().unwrap().push(request);
            Action::Respond(Response::new(200, "text/plain", "ok"))
        }
    }

    #[test]
    fn the_client_sends_exactly_the_headers_given_and_keeps_its_connection() {
        let recorder = Arc::new(Recorder(Mutex::new(Vec::new())));
        let server = Server::start(recorder.clone()).unwrap();
        let t = Duration::from_secs(5);
        let client = Client::new(server.addr(), t);
        let headers = vec![
            ("Host".to_owned(), "sandbox.localdomain:1234".to_owned()),
            ("Content-Type".to_owned(), "application/json".to_owned()),
        ];
        for _ in 0..2 {
            let r = client.request("POST", "/p?q=1", &headers, b"[1]").unwrap();
            assert_eq!((r.status, r.body_text().as_str()), (200, "ok"));
        }
        let r = request_once(server.addr(), "GET", "/x", &[], b"", t).unwrap();
        assert_eq!(r.status, 200);

        let seen = recorder.0.lock().unwrap();
        let mut names: Vec<String> = seen[0]
            .headers
            .iter()
            .map(|(n, _)| n.to_ascii_lowercase())
            .collect();
        names.sort();
        assert_eq!(names, ["content-length", "content-type", "host"]);
        assert_eq!(seen[0].header("host"), Some("sandbox.localdomain:1234"));
        assert_eq!(
            (seen[0].path.as_str(), seen[0].query.as_str()),
            ("/p", "q=1")
        );
        assert_eq!(seen[0].body, b"[1]");
        assert_eq!(
            (seen[1].connection_index, seen[1].index_on_connection),
            (0, 1),
            "the second request reuses the connection"
        );
        let addr = server.addr().to_string();
        assert_eq!(seen[2].connection_index, 1, "request_once dials afresh");
        assert_eq!(seen[2].header("host"), Some(addr.as_str()));
        assert_eq!(seen[2].header("connection"), Some("close"));
        assert_eq!(server.connections_accepted(), 2);
    }
}
