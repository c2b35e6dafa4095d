//! Counters shared by the receiver, the flusher and the lifecycle loop, and the
//! one-line summary logged at shutdown.
//!
//! Invariants:
//! - `buffered_events` / `buffered_bytes` cover everything accepted by the receiver and not
//!   yet delivered or dropped, wherever it is (channel or flusher buffer). The receiver adds
//!   before it hands events over; the flusher subtracts when an event leaves for good. The
//!   memory cap is enforced against these two numbers.
//! - Every received event ends in exactly one of: delivered, dropped (with a reason), or still
//!   buffered; the summary shows all three so a loss is never silent.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;

/// Estimated bookkeeping bytes per buffered event on top of its JSON text.
pub const EVENT_OVERHEAD_BYTES: usize = 64;

/// Why events were dropped. Fatal Kinesis errors carry the AWS error code.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum DropReason {
    /// The buffer cap was reached: newly arriving events are refused.
    BufferFull,
    /// A single event could never fit a Kinesis record, even truncated.
    Oversize,
    /// Kinesis refused the request for a reason retrying cannot fix.
    Fatal(String),
    /// Still buffered when the SHUTDOWN deadline came.
    ShutdownDeadline,
}

impl DropReason {
    pub fn label(&self) -> String {
        match self {
            DropReason::BufferFull => "buffer_full".into(),
            DropReason::Oversize => "oversize".into(),
            DropReason::Fatal(code) => code.clone(),
            DropReason::ShutdownDeadline => "shutdown_deadline".into(),
        }
    }
}

/// Why a telemetry POST body could not be used (it was still answered 200).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadBody {
    Empty,
    NotArray,
    Malformed,
    TooLarge,
}

#[derive(Default, Debug)]
pub struct Stats {
    pub received: AtomicU64,
    pub delivered: AtomicU64,
    pub retried: AtomicU64,
    pub throttled: AtomicU64,
    pub truncated: AtomicU64,
    pub requests: AtomicU64,
    pub failed_requests: AtomicU64,
    pub bytes_sent: AtomicU64,
    pub posts: AtomicU64,
    pub bad_bodies: [AtomicU64; 4],
    pub buffered_events: AtomicU64,
    pub buffered_bytes: AtomicU64,
    dropped: Mutex<BTreeMap<DropReason, u64>>,
}

impl Stats {
    pub fn add_dropped(&self, reason: DropReason, n: u64) {
        if n == 0 {
            return;
        }
        let mut map = self.dropped.lock().unwrap_or_else(|e| e.into_inner());
        *map.entry(reason).or_default() += n;
    }

    pub fn dropped(&self) -> BTreeMap<DropReason, u64> {
        self.dropped
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn count_bad_body(&self, kind: BadBody) -> u64 {
        self.bad_bodies[kind as usize].fetch_add(1, Relaxed) + 1
    }

    /// Accounts events leaving the buffer for good (delivered or dropped).
    pub fn release(&self, events: u64, bytes: u64) {
        self.buffered_events.fetch_sub(events, Relaxed);
        self.buffered_bytes.fetch_sub(bytes, Relaxed);
    }

    /// The shutdown summary: one line with every counter a user needs to trust the numbers.
    pub fn summary(&self) -> String {
        let get = |c: &AtomicU64| c.load(Relaxed);
        let dropped = self.dropped();
        let total: u64 = dropped.values().sum();
        let reasons = if dropped.is_empty() {
            String::new()
        } else {
            let parts: Vec<String> = dropped
                .iter()
                .map(|(r, n)| format!("{}={n}", r.label()))
                .collect();
            format!(" ({})", parts.join(", "))
        };
        let bad: u64 = self.bad_bodies.iter().map(get).sum();
        format!(
            "events received={} delivered={} dropped={}{} retried={} throttled={} truncated={} \
             still_buffered={} | kinesis requests={} failed_requests={} bytes_sent={} | \
             telemetry posts={} unusable_posts={}",
            get(&self.received),
            get(&self.delivered),
            total,
            reasons,
            get(&self.retried),
            get(&self.throttled),
            get(&self.truncated),
            get(&self.buffered_events),
            get(&self.requests),
            get(&self.failed_requests),
            get(&self.bytes_sent),
            get(&self.posts),
            bad,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_lists_every_drop_reason() {
        let s = Stats::default();
        s.received.store(10, Relaxed);
        s.delivered.store(7, Relaxed);
        s.add_dropped(DropReason::BufferFull, 2);
        s.add_dropped(DropReason::Fatal("AccessDeniedException".into()), 1);
        let line = s.summary();
        assert!(line.contains("received=10 delivered=7 dropped=3"), "{line}");
        assert!(line.contains("buffer_full=2"), "{line}");
        assert!(line.contains("AccessDeniedException=1"), "{line}");
    }
}
