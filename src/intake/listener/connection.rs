//! One telemetry connection: reads HTTP/1.1 requests with `httparse`, hands each complete
//! POST body to the handler and writes the answer. It runs on its own thread over a socket
//! ([`SlotSocket`]), or over bytes in memory for the property tests and the fuzz target
//! (the sibling `memory` module): both are a [`Wire`].
//!
//! Invariants:
//! - The read timeout is off while waiting for a request's first byte and, from then on, is
//!   the time left until the request's deadline, reset before every read: a peer cannot
//!   stretch a request past [`ListenerLimits::request_timeout`] by dripping bytes.
//! - The connection tells its slot when it starts waiting for a request and when one starts
//!   arriving, so that only a connection with no request in progress can be evicted.
//! - A request to any path but the subscribed one is refused (404) before its body is read.
//! - `inbuf` holds at most [`MAX_HEAD_BYTES`] plus one read; a body goes straight into
//!   `body`, which never exceeds [`ListenerLimits::max_body`].
//! - Every refusal is answered with `Connection: close`, then the rest of the request is
//!   read and dropped for up to [`LINGER`] before closing, so that the peer sees the answer.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::debug;

use super::slots::Slots;
#[cfg(doc)]
use super::ListenerLimits;
use super::{bump, count_once, Shared, KEEP_BODY_CAPACITY, MAX_HEAD_BYTES};

/// Headers parsed per request; more is answered 431.
pub(super) const MAX_HEADERS: usize = 64;
/// SlotSocket reads for the head go through a buffer this size.
const READ_CHUNK: usize = 8 << 10;
/// A body is read straight into its buffer, growing it by at most this much per read so the
/// memory used follows the bytes received, not the `Content-Length` claimed.
const BODY_READ_STEP: usize = 64 << 10;
/// After a refusal, how long the rest of the request is read and discarded before closing:
/// closing with unread data makes the kernel send a reset that can destroy our answer
/// before the peer reads it.
const LINGER: Duration = Duration::from_secs(1);

/// What a connection reads from and writes to.
pub(super) trait Wire {
    /// Reads at least one byte, waiting until `deadline` at most (`None`: as long as it
    /// takes; past it: `TimedOut`). `Ok(0)`: the peer closed.
    fn read(&mut self, into: &mut [u8], deadline: Option<Instant>) -> io::Result<usize>;
    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()>;
    /// Ends our side of the connection: nothing more will be written.
    fn close_write(&mut self);
    /// The connection waits for a request's first byte from now on: it may be evicted.
    fn idle(&mut self) {}
    /// A request's first bytes arrived: it may no longer be evicted. `false`: it was
    /// evicted before, and its socket is closed.
    fn busy(&mut self) -> bool {
        true
    }
    /// A request came to the subscribed path: the connection is the platform's.
    fn trusted(&mut self) {}
}

/// A connection's socket, shared with its slot so that an eviction can close it.
pub(super) struct SlotSocket<'a> {
    stream: Arc<TcpStream>,
    slots: &'a Slots,
    id: u64,
}

impl<'a> SlotSocket<'a> {
    /// `write_timeout`: the longest one answer may take to write, so that a peer that does
    /// not read cannot hold the thread.
    pub(super) fn new(
        stream: Arc<TcpStream>,
        slots: &'a Slots,
        id: u64,
        write_timeout: Duration,
    ) -> SlotSocket<'a> {
        // Answers are one small write each: send them at once.
        let _ = stream.set_nodelay(true);
        let _ = stream.set_write_timeout(Some(write_timeout));
        SlotSocket { stream, slots, id }
    }
}

impl Wire for SlotSocket<'_> {
    fn read(&mut self, into: &mut [u8], deadline: Option<Instant>) -> io::Result<usize> {
        let timeout = match deadline {
            None => None,
            Some(d) => match d.checked_duration_since(Instant::now()) {
                Some(left) if !left.is_zero() => Some(left),
                _ => return Err(io::ErrorKind::TimedOut.into()),
            },
        };
        self.stream.set_read_timeout(timeout)?;
        (&*self.stream).read(into)
    }

    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        (&*self.stream).write_all(bytes)
    }

    fn close_write(&mut self) {
        let _ = self.stream.shutdown(Shutdown::Write);
    }

    fn idle(&mut self) {
        self.slots.idle(self.id);
    }

    fn busy(&mut self) -> bool {
        self.slots.busy(self.id)
    }

    fn trusted(&mut self) {
        self.slots.trust(self.id);
    }
}

/// Why a connection ends.
#[derive(Debug)]
enum End {
    /// The peer closed between requests, or the answer said `Connection: close`.
    Done,
    /// Closed while idle to make room for a newcomer (counted by the accept thread).
    Evicted,
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

/// One connection, owned by its thread.
pub(super) struct Connection<'a, W: Wire> {
    wire: W,
    /// When the current request must be complete; `None` while idle between requests.
    deadline: Option<Instant>,
    /// Bytes read and not yet used: the rest of this request's head, the start of its body,
    /// or the next pipelined request.
    inbuf: Vec<u8>,
    body: Vec<u8>,
    /// [`ListenerLimits::request_timeout`], clamped to 1 ms ..= 1 day.
    request_timeout: Duration,
    shared: &'a Shared,
}

/// [`ListenerLimits::request_timeout`] made safe: bounded both ways so that no setting can panic
/// `Instant + Duration` or make every request stall at once.
pub(super) fn request_timeout(shared: &Shared) -> Duration {
    shared
        .limits
        .request_timeout
        .clamp(Duration::from_millis(1), Duration::from_secs(86_400))
}

impl<'a, W: Wire> Connection<'a, W> {
    pub(super) fn new(wire: W, shared: &'a Shared) -> Connection<'a, W> {
        Connection {
            wire,
            deadline: None,
            inbuf: Vec::new(),
            body: Vec::new(),
            request_timeout: request_timeout(shared),
            shared,
        }
    }

    /// Serves requests until the peer closes or one of them ends the connection.
    pub(super) fn serve(mut self) {
        let end = loop {
            let close = match self.next_request() {
                Ok(close) => close,
                Err(end) => break end,
            };
            bump(&self.shared.stats.requests);
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
            End::Evicted => {
                debug!("telemetry listener: a request started on a connection just evicted")
            }
            End::Aborted => {
                bump(&stats.aborted);
                debug!("telemetry listener: the peer closed a connection mid-request");
            }
            End::Stalled => count_once(
                &stats.stalled,
                format_args!(
                    "a telemetry request was not complete {:?} after its first byte: closed its connection (other connections are unaffected)",
                    self.request_timeout
                ),
            ),
            End::Refuse(404) => count_once(
                &stats.not_found,
                format_args!(
                    "a request to a path other than the subscribed one was answered 404 (only the Telemetry API knows the path: something else in the sandbox is posting to the listener)"
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
            }
        }
        if let End::Refuse(status) = end {
            if self.respond(status, true).is_ok() {
                self.linger();
            }
        }
    }

    /// Reads the next request's body into `self.body`; returns whether to close after the
    /// answer.
    fn next_request(&mut self) -> Result<bool, End> {
        self.body.clear();
        self.deadline = None;
        if self.inbuf.is_empty() {
            self.wire.idle();
            self.fill()?;
        }
        if !self.wire.busy() {
            return Err(End::Evicted);
        }
        self.deadline = Some(Instant::now() + self.request_timeout);
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

    /// Reads at least one byte. End of stream or a reset ends the connection.
    fn read(&mut self, into: &mut [u8]) -> Result<usize, End> {
        Self::read_into(&mut self.wire, self.deadline, into)
    }

    /// [`Connection::read`], borrowing only the wire (a body is read into `self.body`).
    fn read_into(wire: &mut W, deadline: Option<Instant>, into: &mut [u8]) -> Result<usize, End> {
        let closed = if deadline.is_some() {
            End::Aborted
        } else {
            End::Done
        };
        loop {
            match wire.read(into, deadline) {
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

    /// Reads more bytes into `inbuf`.
    fn fill(&mut self) -> Result<(), End> {
        let mut chunk = [0u8; READ_CHUNK];
        let n = self.read(&mut chunk)?;
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
                    // Before anything else: a peer that does not know the path learns
                    // nothing more about what the listener accepts.
                    let path = request.path.unwrap_or_default().as_bytes();
                    if !same_secret(path, self.shared.path.as_bytes()) {
                        return Err(End::Refuse(404));
                    }
                    self.wire.trusted();
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
            let got = Self::read_into(&mut self.wire, self.deadline, &mut self.body[start..])?;
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
            let room = max_body.saturating_sub(self.body.len()) as u64;
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
        self.wire.write_all(bytes).map_err(|e| {
            debug!("telemetry listener: writing an answer failed: {e}");
            End::Aborted
        })
    }

    /// Closes our side, then reads and discards what the peer still sends, for a moment, so
    /// that it gets to read the refusal.
    fn linger(&mut self) {
        self.wire.close_write();
        self.deadline = Some(Instant::now() + LINGER);
        let mut chunk = [0u8; READ_CHUNK];
        while self.read(&mut chunk).is_ok() {}
    }
}

/// Whether `given` is `secret`, in a time that does not depend on where they differ (the
/// path is the listener's only credential; its length is no secret).
fn same_secret(given: &[u8], secret: &[u8]) -> bool {
    given.len() == secret.len()
        && given
            .iter()
            .zip(secret)
            .fold(0, |acc, (a, b)| acc | (a ^ b))
            == 0
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
        404 => "Not Found",
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
