//! The listener's request handling over bytes in memory instead of a socket: one connection
//! whose peer sends `pieces` (each read returns at most one piece, so the pieces are where
//! the stream is split) and then closes. For the property tests and the fuzz target: the
//! same parser, framing and refusals as on a socket, with no timing in the way.

use std::io;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::connection::{Connection, Wire};
use super::{ListenerLimits, ListenerStats, Shared};

/// What one connection did with the bytes it was sent.
#[derive(Debug, Default)]
pub(crate) struct Served {
    /// The POST bodies handed to the handler, in order.
    pub bodies: Vec<Vec<u8>>,
    /// The status of every answer written, `100 Continue` included, in order.
    #[cfg_attr(not(test), allow(dead_code))] // the fuzz target needs only the bodies
    pub answers: Vec<u16>,
}

/// Serves one connection that sends `pieces` then closes; requests must go to `path`.
pub(crate) fn serve_bytes(pieces: &[&[u8]], path: &str, limits: ListenerLimits) -> Served {
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let sink = bodies.clone();
    let handler = move |body: &[u8]| {
        sink.lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(body.to_vec());
        200
    };
    let shared = Shared::new(
        path.to_string(),
        limits,
        Arc::new(ListenerStats::default()),
        Arc::new(handler),
    );
    let mut wire = Memory {
        pieces,
        offset: 0,
        answers: Vec::new(),
    };
    Connection::new(&mut wire, &shared).serve();
    let bodies = std::mem::take(&mut *bodies.lock().unwrap_or_else(|e| e.into_inner()));
    Served {
        bodies,
        answers: wire.answers,
    }
}

/// A peer that sends `pieces` one per read, then closes; it reads every answer.
struct Memory<'a> {
    pieces: &'a [&'a [u8]],
    /// How much of the first piece was read already.
    offset: usize,
    answers: Vec<u16>,
}

impl Wire for &mut Memory<'_> {
    fn read(&mut self, into: &mut [u8], _deadline: Option<Instant>) -> io::Result<usize> {
        // Empty pieces carry nothing: a real read never returns 0 bytes but at the end.
        while let Some((piece, rest)) = self.pieces.split_first() {
            let left = piece.get(self.offset..).unwrap_or_default();
            if left.is_empty() {
                self.pieces = rest;
                self.offset = 0;
                continue;
            }
            let n = left.len().min(into.len());
            into[..n].copy_from_slice(&left[..n]);
            self.offset += n;
            return Ok(n);
        }
        Ok(0)
    }

    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        // Every answer is one write starting `HTTP/1.1 NNN `.
        let status = bytes
            .get(9..12)
            .and_then(|s| std::str::from_utf8(s).ok())
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        self.answers.push(status);
        Ok(())
    }

    fn close_write(&mut self) {}
}
