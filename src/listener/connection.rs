//! One telemetry connection, served on its own thread: reads HTTP/1.1 requests with
//! `httparse`, hands each complete POST body to the handler and writes the answer.
//!
//! Invariants:
//! - The read timeout is off while waiting for a request's first byte and, from then on, is
//!   the time left until the request's deadline, reset before every read: a peer cannot
//!   stretch a request past [`Limits::request_timeout`] by dripping bytes.
//! - `inbuf` holds at most [`MAX_HEAD_BYTES`] plus one read; a body goes straight into
//!   `body`, which never exceeds [`Limits::max_body`].
//! - Every refusal is answered with `Connection: close`, then the rest of the request is
//!   read and dropped for up to [`LINGER`] before closing, so that the peer sees the answer.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use log::debug;

#[cfg(doc)]
use super::Limits;
use super::{count_once, Shared, KEEP_BODY_CAPACITY, MAX_HEAD_BYTES};

/// Headers parsed per request; more is answered 431.
pub(super) const MAX_HEADERS: usize = 64;
/// Socket reads for the head go through a buffer this size.
const READ_CHUNK: usize = 8 << 10;
/// A body is read straight into its buffer, growing it by at most this much per read so the
/// memory used follows the bytes received, not the `Content-Length` claimed.
const BODY_READ_STEP: usize = 64 << 10;
/// After a refusal, how long the rest of the request is read and discarded before closing:
/// closing with unread data makes the kernel send a reset that can destroy our answer
/// before the peer reads it.
const LINGER: Duration = Duration::from_secs(1);

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
pub(super) struct Connection<'a> {
    wire: Wire,
    /// Bytes read and not yet used: the rest of this request's head, the start of its body,
    /// or the next pipelined request.
    inbuf: Vec<u8>,
    body: Vec<u8>,
    /// [`Limits::request_timeout`], clamped to 1 ms ..= 1 day.
    request_timeout: Duration,
    shared: &'a Shared,
}

impl<'a> Connection<'a> {
    pub(super) fn new(stream: TcpStream, shared: &'a Shared) -> Connection<'a> {
        // Answers are one small write each: send them at once, and never wait long on a peer
        // that does not read.
        let _ = stream.set_nodelay(true);
        // Bounded both ways so that no setting can panic `Instant + Duration` or make every
        // request stall at once.
        let request_timeout = shared
            .limits
            .request_timeout
            .clamp(Duration::from_millis(1), Duration::from_secs(86_400));
        let _ = stream.set_write_timeout(Some(request_timeout));
        Connection {
            wire: Wire {
                stream,
                deadline: None,
            },
            inbuf: Vec::new(),
            body: Vec::new(),
            request_timeout,
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
                    "a telemetry request was not complete {:?} after its first byte: closed its connection (other connections are unaffected)",
                    self.request_timeout
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
        self.wire.deadline = Some(Instant::now() + self.request_timeout);
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
