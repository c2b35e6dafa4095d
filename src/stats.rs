//! Counters shared by the listener, the receiver, the flusher and the lifecycle loop, the
//! one-line summary logged at shutdown, and the snapshot the metrics are made from. The
//! listener's own counters ([`ListenerStats`]) are defined here too, so that `stats` knows
//! no type of the modules that count into it.
//!
//! Invariant: every event received ends in exactly one of delivered, filtered, dropped (with
//! a reason) or still held by the buffer; the summary shows all four so a loss is never
//! silent. How much is held is the buffer's to say (`Buffer::held`), not a counter here.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Why events were dropped. Fatal Kinesis errors carry the AWS error code.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum DropReason {
    /// The memory cap was reached (spill off): newly arriving events are refused.
    BufferFull,
    /// The memory cap was reached and the spill file was full or unwritable.
    SpillFull,
    /// Spilled events that could not be read back (corrupt or truncated file).
    SpillCorrupt,
    /// A single event could never fit a Kinesis record, even truncated.
    Oversize,
    /// Past the largest batch the platform sends in one POST (`BUFFERING_MAX_ITEMS` at most):
    /// refused unread, so no POST can make the extension build more than that many events.
    PostLimit,
    /// Kinesis refused the request for a reason retrying cannot fix.
    Fatal(String),
    /// Still held when the SHUTDOWN deadline came.
    ShutdownDeadline,
}

impl DropReason {
    pub fn label(&self) -> String {
        match self {
            DropReason::BufferFull => "buffer_full".into(),
            DropReason::SpillFull => "spill_full".into(),
            DropReason::SpillCorrupt => "spill_corrupt".into(),
            DropReason::Oversize => "oversize".into(),
            DropReason::PostLimit => "post_limit".into(),
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
}

/// Kinesis request latencies kept for the metrics between two lines.
const MAX_LATENCY_SAMPLES: usize = 4096;

#[derive(Default, Debug)]
pub struct Stats {
    // Intake.
    pub received: AtomicU64,
    /// Events an earlier process left in the spill file, adopted at start.
    pub recovered: AtomicU64,
    /// JSON bytes received (pacing: how much the last invocation brought).
    pub received_bytes: AtomicU64,
    pub filtered: AtomicU64,
    pub truncated: AtomicU64,
    pub spilled: AtomicU64,
    pub posts: AtomicU64,
    pub bad_bodies: [AtomicU64; 3],
    /// `platform.logsDropped`: what Lambda says it dropped because the listener fell behind.
    pub lambda_dropped_events: AtomicU64,
    pub lambda_dropped_bytes: AtomicU64,
    // Delivery.
    pub delivered: AtomicU64,
    pub records_sent: AtomicU64,
    pub bytes_sent: AtomicU64,
    pub requests: AtomicU64,
    pub failed_requests: AtomicU64,
    /// Requests cut in flight at an invocation's added-time budget (their events resent).
    pub abandoned_requests: AtomicU64,
    /// The stream's current send-rate limit in bytes per second (0: none): a gauge.
    pub send_rate_limit: AtomicU64,
    /// Requests that resent events an earlier request failed to deliver.
    pub retry_requests: AtomicU64,
    /// Events sent again after a failed attempt (throttled, 5xx, connection error...).
    pub resent_events: AtomicU64,
    /// Of those, events whose earlier attempt may have landed (it timed out): possible
    /// duplicates in the stream.
    pub resent_unconfirmed: AtomicU64,
    /// Kinesis records refused for throughput.
    pub throttled: AtomicU64,
    /// Dropped at the SHUTDOWN deadline although their last request may have landed.
    pub shutdown_in_doubt: AtomicU64,
    /// Kinesis is failing (set by the flusher, read by the buffer-full message).
    pub struggling: AtomicBool,
    /// The telemetry listener's own counters (accept errors, stalled connections...).
    pub listener: Arc<ListenerStats>,
    dropped: Mutex<BTreeMap<DropReason, u64>>,
    latencies_us: Mutex<Vec<u32>>,
}

/// A copy of every counter at one moment (metrics are differences of two).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub received: u64,
    pub filtered: u64,
    pub delivered: u64,
    pub dropped: BTreeMap<DropReason, u64>,
    pub resent_events: u64,
    pub throttled: u64,
    pub requests: u64,
    pub failed_requests: u64,
    pub lambda_dropped_events: u64,
    pub lambda_dropped_bytes: u64,
    pub spilled: u64,
    /// What the telemetry listener refused or cut.
    pub listener: Refusals,
    /// The stream's send-rate limit when taken, bytes per second (0: none): a gauge.
    pub send_rate_limit: u64,
}

impl Snapshot {
    /// `self - earlier`, counter by counter.
    pub fn since(&self, earlier: &Snapshot) -> Snapshot {
        let d = |a: u64, b: u64| a.saturating_sub(b);
        let dropped = self
            .dropped
            .iter()
            .map(|(r, n)| (r.clone(), d(*n, *earlier.dropped.get(r).unwrap_or(&0))))
            .filter(|(_, n)| *n > 0)
            .collect();
        Snapshot {
            received: d(self.received, earlier.received),
            filtered: d(self.filtered, earlier.filtered),
            delivered: d(self.delivered, earlier.delivered),
            dropped,
            resent_events: d(self.resent_events, earlier.resent_events),
            throttled: d(self.throttled, earlier.throttled),
            requests: d(self.requests, earlier.requests),
            failed_requests: d(self.failed_requests, earlier.failed_requests),
            lambda_dropped_events: d(self.lambda_dropped_events, earlier.lambda_dropped_events),
            lambda_dropped_bytes: d(self.lambda_dropped_bytes, earlier.lambda_dropped_bytes),
            spilled: d(self.spilled, earlier.spilled),
            listener: self.listener.since(&earlier.listener),
            send_rate_limit: self.send_rate_limit,
        }
    }

    pub fn dropped_total(&self) -> u64 {
        self.dropped.values().fold(0, |a, n| a.saturating_add(*n))
    }
}

impl Stats {
    /// Adds to a counter, saturating: some counts come from the platform (`droppedRecords`
    /// of `platform.logsDropped`) and must stick at `u64::MAX` rather than wrap to small.
    pub fn add(counter: &AtomicU64, n: u64) {
        if n > 0 {
            let _ = counter.fetch_update(Relaxed, Relaxed, |c| Some(c.saturating_add(n)));
        }
    }

    pub fn add_dropped(&self, reason: DropReason, n: u64) {
        if n == 0 {
            return;
        }
        let mut map = self.dropped.lock().unwrap_or_else(|e| e.into_inner());
        let count = map.entry(reason).or_default();
        *count = count.saturating_add(n);
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

    /// Records how long one Kinesis request took.
    pub fn add_latency(&self, took: Duration) {
        let mut v = self.latencies_us.lock().unwrap_or_else(|e| e.into_inner());
        if v.len() < MAX_LATENCY_SAMPLES {
            v.push(u32::try_from(took.as_micros()).unwrap_or(u32::MAX));
        }
    }

    /// The latencies recorded since the last call, sorted.
    pub fn take_latencies(&self) -> Vec<Duration> {
        let mut v =
            std::mem::take(&mut *self.latencies_us.lock().unwrap_or_else(|e| e.into_inner()));
        v.sort_unstable();
        v.into_iter()
            .map(|us| Duration::from_micros(u64::from(us)))
            .collect()
    }

    pub fn snapshot(&self) -> Snapshot {
        let get = |c: &AtomicU64| c.load(Relaxed);
        Snapshot {
            received: get(&self.received),
            filtered: get(&self.filtered),
            delivered: get(&self.delivered),
            dropped: self.dropped(),
            resent_events: get(&self.resent_events),
            throttled: get(&self.throttled),
            requests: get(&self.requests),
            failed_requests: get(&self.failed_requests),
            lambda_dropped_events: get(&self.lambda_dropped_events),
            lambda_dropped_bytes: get(&self.lambda_dropped_bytes),
            spilled: get(&self.spilled),
            listener: self.listener.refusals(),
            send_rate_limit: get(&self.send_rate_limit),
        }
    }

    /// The shutdown summary: one line with every counter a user needs to trust the numbers.
    /// `held`: events the buffer still holds.
    pub fn summary(&self, held: u64) -> String {
        let get = |c: &AtomicU64| c.load(Relaxed);
        let dropped = self.dropped();
        let total = dropped.values().fold(0u64, |a, n| a.saturating_add(*n));
        let reasons = if dropped.is_empty() {
            String::new()
        } else {
            let parts: Vec<String> = dropped
                .iter()
                .map(|(r, n)| format!("{}={n}", r.label()))
                .collect();
            format!(" ({})", parts.join(", "))
        };
        let doubt = get(&self.shutdown_in_doubt);
        let doubt = if doubt > 0 {
            format!(" in_doubt={doubt}")
        } else {
            String::new()
        };
        let bad = self
            .bad_bodies
            .iter()
            .map(get)
            .fold(0u64, |a, n| a.saturating_add(n));
        let l = &self.listener;
        let refused = l.refusals();
        format!(
            "events received={}{} delivered={} filtered={} dropped={total}{reasons}{doubt} \
             still_buffered={held} | resent_events={} (unconfirmed={}) in retry_requests={}, \
             throttled={} records, truncated={}, spilled={} | kinesis requests={} \
             failed_requests={} abandoned={} records={} bytes_sent={} | telemetry posts={} unusable_posts={} \
             lambda_dropped={} ({} bytes) | listener connections={} accept_errors={} \
             refused_connections={} evicted_connections={} stalled_connections={} \
             aborted_requests={} malformed_requests={} wrong_path={} wrong_method={} \
             too_large={}",
            get(&self.received),
            match get(&self.recovered) {
                0 => String::new(),
                n => format!(" recovered={n}"),
            },
            get(&self.delivered),
            get(&self.filtered),
            get(&self.resent_events),
            get(&self.resent_unconfirmed),
            get(&self.retry_requests),
            get(&self.throttled),
            get(&self.truncated),
            get(&self.spilled),
            get(&self.requests),
            get(&self.failed_requests),
            get(&self.abandoned_requests),
            get(&self.records_sent),
            get(&self.bytes_sent),
            get(&self.posts),
            bad,
            get(&self.lambda_dropped_events),
            get(&self.lambda_dropped_bytes),
            get(&l.connections),
            get(&l.accept_errors),
            refused.refused_connections,
            refused.evicted,
            refused.stalled,
            refused.aborted,
            refused.bad_requests,
            refused.not_found,
            refused.method_not_allowed,
            refused.too_large,
        )
    }
}

/// Counters the listener keeps, for the summary line and metrics. All are totals since
/// start except `open_connections`; totals saturate at `u64::MAX` ([`bump`]).
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
    /// Connections closed at once: every slot busy mid-request, or no thread could be
    /// spawned.
    pub refused_connections: AtomicU64,
    /// Idle connections closed to make room for a newcomer.
    pub evicted: AtomicU64,
    /// Requests answered 400, 417, 431 or 501.
    pub bad_requests: AtomicU64,
    /// Requests to a path other than the subscribed one, answered 404.
    pub not_found: AtomicU64,
    /// Requests answered 413.
    pub too_large: AtomicU64,
    /// Requests answered 405.
    pub method_not_allowed: AtomicU64,
}

/// What the listener refused or cut, at one moment: the summary line and the metrics report
/// it (the metrics as differences of two).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Refusals {
    pub refused_connections: u64,
    pub evicted: u64,
    pub bad_requests: u64,
    pub not_found: u64,
    pub method_not_allowed: u64,
    pub too_large: u64,
    pub aborted: u64,
    pub stalled: u64,
}

impl ListenerStats {
    pub fn refusals(&self) -> Refusals {
        let get = |c: &AtomicU64| c.load(Relaxed);
        Refusals {
            refused_connections: get(&self.refused_connections),
            evicted: get(&self.evicted),
            bad_requests: get(&self.bad_requests),
            not_found: get(&self.not_found),
            method_not_allowed: get(&self.method_not_allowed),
            too_large: get(&self.too_large),
            aborted: get(&self.aborted),
            stalled: get(&self.stalled),
        }
    }
}

impl Refusals {
    /// `self - earlier`, counter by counter.
    pub fn since(&self, earlier: &Refusals) -> Refusals {
        let d = |a: u64, b: u64| a.saturating_sub(b);
        Refusals {
            refused_connections: d(self.refused_connections, earlier.refused_connections),
            evicted: d(self.evicted, earlier.evicted),
            bad_requests: d(self.bad_requests, earlier.bad_requests),
            not_found: d(self.not_found, earlier.not_found),
            method_not_allowed: d(self.method_not_allowed, earlier.method_not_allowed),
            too_large: d(self.too_large, earlier.too_large),
            aborted: d(self.aborted, earlier.aborted),
            stalled: d(self.stalled, earlier.stalled),
        }
    }

    /// Requests the listener answered itself with an error: 400, 404, 405, 413 and the rest.
    pub fn refused_requests(&self) -> u64 {
        [
            self.bad_requests,
            self.not_found,
            self.method_not_allowed,
            self.too_large,
        ]
        .iter()
        .fold(0, |a, n| a.saturating_add(*n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_lists_every_drop_reason_and_what_is_held() {
        let s = Stats::default();
        s.received.store(12, Relaxed);
        s.delivered.store(7, Relaxed);
        s.filtered.store(2, Relaxed);
        s.add_dropped(DropReason::BufferFull, 2);
        s.add_dropped(DropReason::Fatal("AccessDeniedException".into()), 1);
        let line = s.summary(0);
        assert!(
            line.contains("received=12 delivered=7 filtered=2 dropped=3"),
            "{line}"
        );
        assert!(line.contains("buffer_full=2"), "{line}");
        assert!(line.contains("AccessDeniedException=1"), "{line}");
        assert!(line.contains("still_buffered=0"), "{line}");
        assert!(!line.contains("in_doubt"), "{line}");
        s.shutdown_in_doubt.store(4, Relaxed);
        assert!(s.summary(0).contains("in_doubt=4"));
    }

    /// The listener's warnings say its refusals are "counted in the summary": each is.
    #[test]
    fn summary_carries_every_listener_refusal() {
        let s = Stats::default();
        let l = &s.listener;
        let counters = [
            (&l.connections, "connections"),
            (&l.accept_errors, "accept_errors"),
            (&l.refused_connections, "refused_connections"),
            (&l.evicted, "evicted_connections"),
            (&l.stalled, "stalled_connections"),
            (&l.aborted, "aborted_requests"),
            (&l.bad_requests, "malformed_requests"),
            (&l.not_found, "wrong_path"),
            (&l.method_not_allowed, "wrong_method"),
            (&l.too_large, "too_large"),
        ];
        for (i, (counter, _)) in counters.iter().enumerate() {
            counter.store(101 + i as u64, Relaxed);
        }
        let line = s.summary(0);
        let tokens: Vec<&str> = line
            .split(|c: char| c.is_whitespace() || "(),".contains(c))
            .collect();
        for (i, (_, name)) in counters.iter().enumerate() {
            let token = format!("{name}={}", 101 + i);
            assert!(tokens.contains(&token.as_str()), "{token} in {line}");
        }
    }

    #[test]
    fn snapshots_subtract_counter_by_counter() {
        let s = Stats::default();
        s.received.store(5, Relaxed);
        s.add_dropped(DropReason::BufferFull, 1);
        let a = s.snapshot();
        s.received.store(9, Relaxed);
        s.add_dropped(DropReason::BufferFull, 2);
        s.add_dropped(DropReason::Oversize, 1);
        let d = s.snapshot().since(&a);
        assert_eq!(d.received, 4);
        assert_eq!(d.dropped.get(&DropReason::BufferFull), Some(&2));
        assert_eq!(d.dropped.get(&DropReason::Oversize), Some(&1));
        assert_eq!(d.dropped_total(), 3);
    }

    #[test]
    fn counters_saturate_instead_of_wrapping() {
        let s = Stats::default();
        Stats::add(&s.lambda_dropped_events, u64::MAX - 1);
        Stats::add(&s.lambda_dropped_events, 5);
        assert_eq!(s.lambda_dropped_events.load(Relaxed), u64::MAX);
        s.add_dropped(DropReason::PostLimit, u64::MAX);
        s.add_dropped(DropReason::PostLimit, 1);
        s.add_dropped(DropReason::BufferFull, 1);
        assert_eq!(s.snapshot().dropped_total(), u64::MAX);
        assert!(s.summary(0).contains(&format!("dropped={}", u64::MAX)));
    }

    #[test]
    fn latencies_are_taken_sorted_and_bounded() {
        let s = Stats::default();
        for ms in [30, 10, 20] {
            s.add_latency(Duration::from_millis(ms));
        }
        let v = s.take_latencies();
        assert_eq!(v, [10, 20, 30].map(Duration::from_millis));
        assert!(s.take_latencies().is_empty());
        for _ in 0..(MAX_LATENCY_SAMPLES + 10) {
            s.add_latency(Duration::from_millis(1));
        }
        assert_eq!(s.take_latencies().len(), MAX_LATENCY_SAMPLES);
    }
}
