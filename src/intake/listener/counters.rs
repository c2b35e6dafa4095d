//! Counting what the listener served, refused and cut (into its `ListenerStats`, defined
//! with the other counters in `stats`). Totals saturate rather than wrap; the first of each
//! kind of refusal is logged as a warning, the rest at debug level.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use log::{debug, warn};

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
