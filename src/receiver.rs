//! The telemetry listener: the HTTP endpoint the Telemetry API POSTs event batches to.
//!
//! Threading: `tiny_http` accepts connections on its own threads and hands complete requests
//! to the one receiver thread that runs [`Receiver::run`]. That thread reads the body, splits
//! it into events, applies the buffer cap and hands the events to the flusher with a
//! non-blocking `try_send`; it never waits on the flusher or on Kinesis, so Lambda always
//! gets its answer at once (a slow listener makes Lambda drop telemetry).
//!
//! Answers:
//! - 200 for every POST we could read, including empty, non-array and malformed bodies. A
//!   non-2xx answer makes the platform resend the same batch again and again, so content we
//!   cannot use is counted and logged (once per kind) instead of refused.
//! - 413 for a body over the cap (`2 * maxBytes` plus a megabyte): Lambda never sends one,
//!   and reading it would break the memory bound.
//! - 405 for any method other than POST.
//!
//! Buffer cap (memory bound): everything accepted and not yet delivered is counted in
//! [`Stats::buffered_events`] / [`Stats::buffered_bytes`]. When an event would take either
//! over its cap, that newly arriving event is dropped (policy "drop newest": what is already
//! buffered is kept and delivered in order), counted as `buffer_full`, and logged once per
//! episode of fullness.

use std::io::Read;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::{Sender, TrySendError};
use log::{debug, warn};

use crate::batch;
use crate::config::BufferCap;
use crate::event::{self, Event, ParseError};
use crate::stats::{BadBody, DropReason, Stats};

/// Longest partition key the flusher generates, in bytes; events are truncated so that
/// data plus this key always fit one Kinesis record.
pub const MAX_KEY_BYTES: usize = 64;

pub struct Receiver {
    server: tiny_http::Server,
    tx: Sender<Vec<Event>>,
    stats: Arc<Stats>,
    cap: BufferCap,
    max_body: usize,
    /// Largest event data kept whole; bigger events are truncated (see `batch`).
    max_event_bytes: usize,
    full: bool,
}

impl Receiver {
    /// Binds the listener. Port 0 picks a free port; [`Receiver::port`] tells which.
    pub fn bind(
        addr: std::net::IpAddr,
        port: u16,
        tx: Sender<Vec<Event>>,
        stats: Arc<Stats>,
        cap: BufferCap,
        max_body: usize,
        max_event_bytes: usize,
    ) -> Result<Receiver, String> {
        let server = tiny_http::Server::http((addr, port))
            .map_err(|e| format!("cannot listen for telemetry on {addr}:{port}: {e}"))?;
        Ok(Receiver {
            server,
            tx,
            stats,
            cap,
            max_body,
            max_event_bytes: max_event_bytes.saturating_sub(MAX_KEY_BYTES),
            full: false,
        })
    }

    pub fn port(&self) -> u16 {
        self.server
            .server_addr()
            .to_ip()
            .map(|a| a.port())
            .unwrap_or(0)
    }

    /// Serves telemetry POSTs until the process exits.
    pub fn run(mut self) {
        let mut body = Vec::new();
        loop {
            let request = match self.server.recv() {
                Ok(r) => r,
                Err(e) => {
                    warn!("telemetry listener: accept failed: {e}");
                    continue;
                }
            };
            let status = self.handle(request, &mut body);
            debug!("telemetry POST answered {status}");
        }
    }

    fn handle(&mut self, mut request: tiny_http::Request, body: &mut Vec<u8>) -> u16 {
        if *request.method() != tiny_http::Method::Post {
            return respond(request, 405);
        }
        if request.body_length().is_some_and(|n| n > self.max_body) {
            self.too_large();
            return respond(request, 413);
        }
        body.clear();
        let limit = self.max_body as u64 + 1;
        if let Err(e) = request.as_reader().take(limit).read_to_end(body) {
            // The connection broke mid-body: the platform will retry this batch.
            warn!("telemetry listener: reading a POST body failed: {e}");
            return respond(request, 400);
        }
        if body.len() > self.max_body {
            self.too_large();
            return respond(request, 413);
        }
        self.stats.posts.fetch_add(1, Relaxed);
        match event::parse_batch(body, Instant::now()) {
            Ok(events) => self.admit(events),
            Err(ParseError::Empty) => self.bad_body(BadBody::Empty, "empty body"),
            Err(ParseError::NotArray) => {
                self.bad_body(BadBody::NotArray, "JSON that is not an array of events")
            }
            Err(ParseError::Malformed(why)) => {
                self.bad_body(BadBody::Malformed, &format!("malformed JSON ({why})"))
            }
        }
        if body.capacity() > 4 * self.max_body.min(1 << 20) {
            *body = Vec::new();
        }
        respond(request, 200)
    }

    fn too_large(&self) {
        let n = self.stats.count_bad_body(BadBody::TooLarge);
        if n == 1 {
            warn!(
                "telemetry POST over {} bytes refused with 413 (Lambda never sends one this big); further ones are counted in the shutdown summary",
                self.max_body
            );
        }
    }

    fn bad_body(&self, kind: BadBody, what: &str) {
        let n = self.stats.count_bad_body(kind);
        if n == 1 {
            warn!("telemetry POST with {what} ignored (answered 200 so Lambda does not resend it); further ones are counted in the shutdown summary");
        } else {
            debug!("telemetry POST with {what} ignored ({n} so far)");
        }
    }

    /// Applies truncation and the buffer cap, then hands the events to the flusher.
    fn admit(&mut self, mut events: Vec<Event>) {
        let received = events.len() as u64;
        self.stats.received.fetch_add(received, Relaxed);
        let mut kept = Vec::with_capacity(events.len());
        let mut refused = 0u64;
        for mut e in events.drain(..) {
            if e.raw.len() > self.max_event_bytes {
                let original = e.raw.len();
                e.raw = batch::truncate_event(&e.raw, self.max_event_bytes).into();
                if self.stats.truncated.fetch_add(1, Relaxed) == 0 {
                    warn!(
                        "an event of {original} bytes is larger than a Kinesis record allows ({} bytes with its key): delivered with its record cut and marked \"truncated\"; further ones are counted in the shutdown summary",
                        self.max_event_bytes
                    );
                }
            }
            let cost = e.cost() as u64;
            let events_now = self.stats.buffered_events.load(Relaxed);
            let bytes_now = self.stats.buffered_bytes.load(Relaxed);
            if events_now + 1 > self.cap.max_events as u64
                || bytes_now + cost > self.cap.max_bytes as u64
            {
                refused += 1;
                continue;
            }
            self.stats.buffered_events.fetch_add(1, Relaxed);
            self.stats.buffered_bytes.fetch_add(cost, Relaxed);
            kept.push(e);
        }
        if refused > 0 {
            self.stats.add_dropped(DropReason::BufferFull, refused);
            if !self.full {
                warn!(
                    "buffer full ({} events, {} bytes buffered; caps {} / {}): dropping newly arriving telemetry until Kinesis catches up",
                    self.stats.buffered_events.load(Relaxed),
                    self.stats.buffered_bytes.load(Relaxed),
                    self.cap.max_events,
                    self.cap.max_bytes
                );
            }
            self.full = true;
        } else if !kept.is_empty() {
            self.full = false;
        }
        if kept.is_empty() {
            return;
        }
        if let Err(e) = self.tx.try_send(kept) {
            let (TrySendError::Full(lost) | TrySendError::Disconnected(lost)) = e;
            let bytes: u64 = lost.iter().map(|e| e.cost() as u64).sum();
            self.stats.release(lost.len() as u64, bytes);
            self.stats
                .add_dropped(DropReason::BufferFull, lost.len() as u64);
            if !self.full {
                warn!(
                    "flusher queue full: dropping newly arriving telemetry ({} events so far)",
                    lost.len()
                );
            }
            self.full = true;
        }
    }
}

fn respond(request: tiny_http::Request, status: u16) -> u16 {
    let _ = request.respond(tiny_http::Response::empty(status));
    status
}
