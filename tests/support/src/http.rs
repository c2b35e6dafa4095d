//! Minimal HTTP/1.1 over std sockets, for fakes that need full control of the wire:
//! keep-alive, closing a connection without answering, stalling before an answer.
//!
//! Server threading model: one accept thread per [`Server`], one thread per accepted
//! connection running a keep-alive loop (read request, call the handler, write the
//! answer). The handler runs on the connection thread, so a handler that stalls only
//! stalls its own connection. Idle connections poll the stop flag every
//! [`IDLE_POLL`] so that dropping the server ends them; a request that has started
//! arriving must complete within [`REQUEST_READ_TIMEOUT`].
//!
//! Client: [`Client`] keeps one connection open and reconnects once when a reused
//! connection turns out to be closed by the peer.
//!
//! Nothing here panics on bad input from the peer: errors are returned or answered.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

/// How often an idle keep-alive connection checks whether its server was stopped.
pub const IDLE_POLL: Duration = Duration::from_millis(50);
/// Time allowed for the rest of a request once its first byte has arrived.
pub const REQUEST_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest request or response head (request line + headers) accepted.
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
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    connections: Arc<AtomicU64>,
    accept: Option<JoinHandle<()>>,
}

impl Server {
    /// Binds `127.0.0.1:0` and starts serving `handler`.
    pub fn start(handler: Arc<dyn Handler>) -> io::Result<Server> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let connections = Arc::new(AtomicU64::new(0));
        let accept = {
            let (stop, connections) = (stop.clone(), connections.clone());
            thread::Builder::new()
                .name(format!("fake-accept-{}", addr.port()))
                .spawn(move || {
                    for stream in listener.incoming() {
                        if stop.load(Ordering::SeqCst) {
                            break;
                        }
                        let Ok(stream) = stream else { continue };
                        let index = connections.fetch_add(1, Ordering::SeqCst);
                        let (handler, stop) = (handler.clone(), stop.clone());
                        let _ = thread::Builder::new()
                            .name(format!("fake-conn-{}-{index}", addr.port()))
                            .spawn(move || {
                                serve_connection(stream, index, handler.as_ref(), &stop)
                            });
                    }
                })?
        };
        Ok(Server {
            addr,
            stop,
            connections,
            accept: Some(accept),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Number of TCP connections accepted so far (keep-alive reuse keeps it low).
    pub fn connections_accepted(&self) -> u64 {
        self.connections.load(Ordering::SeqCst)
    }

    /// Stops accepting; idle connections close within [`IDLE_POLL`].
    pub fn stop(&mut self) {
        if self.stop.swap(true, Ordering::SeqCst) {
            return;
        }
        // The accept thread is blocked in accept(): one connection wakes it up.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
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

fn serve_connection(
    stream: TcpStream,
    connection_index: u64,
    handler: &dyn Handler,
    stop: &AtomicBool,
) {
    let _ = stream.set_nodelay(true);
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    let mut index_on_connection = 0;
    loop {
        // Wait for the first byte of the next request, watching the stop flag.
        let _ = reader.get_ref().set_read_timeout(Some(IDLE_POLL));
        loop {
            if stop.load(Ordering::SeqCst) {
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
        let request = match read_request(&mut reader) {
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
                }
            }
            Err(e) => {
                let _ = write_response(
                    &mut writer,
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
                if write_response(&mut writer, &resp, close).is_err() || close {
                    let _ = writer.shutdown(Shutdown::Both);
                    return;
                }
            }
            Action::Drop => {
                let _ = writer.shutdown(Shutdown::Both);
                return;
            }
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

/// Reads a body framed by `Content-Length` or `Transfer-Encoding: chunked`;
/// `until_close` reads to EOF when neither is present (responses only).
fn read_body(
    reader: &mut impl BufRead,
    headers: &[(String, String)],
    until_close: bool,
) -> io::Result<Vec<u8>> {
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
    let mut body = Vec::new();
    if until_close {
        reader.read_to_end(&mut body)?;
    }
    Ok(body)
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
    let body = read_body(reader, &headers, false)?;
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

/// A response as read by [`Client`].
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

/// A keep-alive HTTP/1.1 client for one server address.
pub struct Client {
    addr: SocketAddr,
    timeout: Duration,
    conn: Option<BufReader<TcpStream>>,
    connections_opened: u64,
}

impl Client {
    /// `timeout` bounds connecting, writing and reading each response.
    pub fn new(addr: SocketAddr, timeout: Duration) -> Self {
        Client {
            addr,
            timeout,
            conn: None,
            connections_opened: 0,
        }
    }

    pub fn connections_opened(&self) -> u64 {
        self.connections_opened
    }

    fn connect(&mut self) -> io::Result<()> {
        let s = TcpStream::connect_timeout(&self.addr, self.timeout)?;
        s.set_read_timeout(Some(self.timeout))?;
        s.set_write_timeout(Some(self.timeout))?;
        let _ = s.set_nodelay(true);
        self.connections_opened += 1;
        self.conn = Some(BufReader::new(s));
        Ok(())
    }

    /// Sends one request with a `Content-Length` body and reads the answer. `headers`
    /// must include `Host`. A reused connection that the server had closed is
    /// replaced once; the request is then sent on the fresh connection.
    pub fn request(
        &mut self,
        method: &str,
        target: &str,
        headers: &[(String, String)],
        body: &[u8],
    ) -> io::Result<ClientResponse> {
        let reused = self.conn.is_some();
        match self.try_request(method, target, headers, body) {
            Ok(r) => Ok(r),
            Err(e) if reused && is_stale_connection(&e) => {
                self.conn = None;
                self.try_request(method, target, headers, body)
            }
            Err(e) => {
                self.conn = None;
                Err(e)
            }
        }
    }

    fn try_request(
        &mut self,
        method: &str,
        target: &str,
        headers: &[(String, String)],
        body: &[u8],
    ) -> io::Result<ClientResponse> {
        if self.conn.is_none() {
            self.connect()?;
        }
        let conn = self.conn.as_mut().expect("connected above");
        let mut head = format!("{method} {target} HTTP/1.1\r\n");
        for (n, v) in headers {
            head.push_str(&format!("{n}: {v}\r\n"));
        }
        head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
        let mut buf = head.into_bytes();
        buf.extend_from_slice(body);
        // A server may answer (e.g. 413) and close before reading a large body: then
        // the write fails, but its answer is still there to read.
        let written = conn
            .get_mut()
            .write_all(&buf)
            .and_then(|_| conn.get_mut().flush());
        if let Err(e) = written {
            return match read_response(conn, method) {
                Ok((resp, _)) => {
                    self.conn = None;
                    Ok(resp)
                }
                Err(_) => Err(e),
            };
        }
        let (resp, keep) = read_response(conn, method)?;
        if !keep {
            self.conn = None;
        }
        Ok(resp)
    }
}

/// Reads one response; the flag says whether the connection can be reused.
fn read_response(
    conn: &mut BufReader<TcpStream>,
    method: &str,
) -> io::Result<(ClientResponse, bool)> {
    let mut budget = MAX_HEAD_BYTES;
    let status_line = read_head_line(conn, &mut budget)?;
    let mut parts = status_line.splitn(3, ' ');
    let _version = parts.next();
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| invalid(format!("bad status line {status_line:?}")))?;
    let resp_headers = read_headers(conn, &mut budget)?;
    let no_body =
        method == "HEAD" || status == 204 || status == 304 || (100..200).contains(&status);
    let close =
        header(&resp_headers, "connection").is_some_and(|v| v.eq_ignore_ascii_case("close"));
    let body = if no_body {
        Vec::new()
    } else {
        read_body(conn, &resp_headers, true)?
    };
    let framed = header(&resp_headers, "content-length").is_some()
        || header(&resp_headers, "transfer-encoding").is_some();
    let keep = !close && (framed || no_body);
    Ok((
        ClientResponse {
            status,
            headers: resp_headers,
            body,
        },
        keep,
    ))
}

fn is_stale_connection(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
    )
}

/// One-shot request on a fresh connection (`Connection: close`).
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
    Client::new(addr, timeout).request(method, target, &all, body)
}
