//! The listener's counters: what it served, refused and cut. Totals saturate rather than
//! wrap; the first of each kind of refusal is logged as a warning, the rest at debug level.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use log::{debug, warn};

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

/// Adds one to a total, stopping at `u64::MAX` rather than wrapping; returns the new value.
pub(super) fn bump(counter: &AtomicU64) -> u64 {
    match counter.fetch_update(Relaxed, Relaxed, |n| n.checked_add(1)) {
        Ok(n) => n + 1,
        Err(max) => max,
    }
}

/// Counts an event; logs the first one as a warning, the others at debug level.
pub(super) fn count_once(counter: &AtomicU64, what: fmt::Arguments<'_>) {
    let n = bump(counter);
    if n == 1 {
        warn!("telemetry listener: {what}; further ones are counted in the summary");
    } else {
        debug!("telemetry listener: {what} ({n} so far)");
    }
}
