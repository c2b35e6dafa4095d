//! SnapStart: the restore, noticed once, and the execution environment's id (its one owner).
//!
//! With SnapStart (Java, Python, .NET), Lambda initializes the function when a version is
//! published, snapshots the whole environment — this process included, parked in
//! `/event/next` — and resumes many environments from that one snapshot. Whatever was drawn
//! before the snapshot is then shared by all of them: the environment id (and so every
//! `eventId`, `<environment>-<seq>` with `seq` counting alike in each copy), the flusher's
//! generator (random partition keys, backoff jitter: retries in lockstep) and the pooled
//! connections (dead after a restore). AWS's guidance ("Handling uniqueness with Lambda
//! SnapStart") is to draw such things after the restore. So, once per process image, at the
//! restore: a fresh environment id from the OS's entropy with `seq` from 0 (the receiver), a
//! reseeded generator and an empty connection pool (the flusher, told by the lifecycle loop).
//! Events received before the restore keep the snapshot's id: they happened once, and the
//! copies other restored environments deliver of them de-duplicate.
//!
//! The restore is noticed by the earlier of two documented signals:
//! - `platform.restoreStart` in the telemetry stream (the receiver, in event order): events
//!   before it in the stream keep the old id, it and everything after it get the new one.
//! - The first answer to `/event/next` when `AWS_LAMBDA_INITIALIZATION_TYPE=snap-start` (the
//!   lifecycle loop): Lambda snapshots once every extension has called `/event/next` after
//!   init, and a SnapStart environment serves nothing before it is restored, so any answer
//!   comes after a restore. This one also covers a subscription without platform events and
//!   a `restoreStart` that Lambda dropped (`platform.logsDropped`).
//!
//! The earlier one wins because the two ways of being wrong are not alike: an event the
//! platform emitted before the snapshot but delivers only after the first INVOKE gets the new
//! id, so its copies from different environments no longer de-duplicate (a duplicate, which
//! at-least-once delivery allows anyway); waiting for a `restoreStart` that never comes would
//! give distinct events of different environments the same `eventId`, and a consumer that
//! de-duplicates on it would silently drop them.
//!
//! Not relied on: a jump between the monotonic and the wall clock. What a restored microVM's
//! clocks do is not documented, a threshold would have to tell a restore from an ordinary
//! long freeze or a clock step, and watching for it needs a clock read on a hot path or a
//! timer thread; the two signals above cost one comparison each.
//!
//! Invariant: a process image is restored at most once (a restored environment is never
//! snapshotted again), so the id changes at most once and [`Environment::restored`] is
//! idempotent, whichever thread sees its signal first.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use log::info;

use crate::rng::Rng;

/// `AWS_LAMBDA_INITIALIZATION_TYPE` of a SnapStart environment.
pub const SNAP_START_INIT_TYPE: &str = "snap-start";

/// What told this process it was restored from a snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// `platform.restoreStart` reached the receiver.
    RestoreStart,
    /// `/event/next` answered in a `snap-start` environment.
    EventAfterInit,
}

/// The execution environment's id, and whether this process has been restored.
#[derive(Debug)]
pub struct Environment {
    snap_start: bool,
    /// 0 as started; 1 once restored.
    generation: AtomicU64,
    /// The generation the flusher was last told about (see [`Environment::event_arrived`]).
    told: AtomicU64,
    id: Mutex<Arc<str>>,
}

/// A fresh environment id: 16 hex digits from the OS's entropy (see [`Rng::new`]).
pub fn fresh_id() -> Arc<str> {
    Arc::from(format!("{:016x}", Rng::new().next_u64()))
}

impl Environment {
    /// `snap_start`: `AWS_LAMBDA_INITIALIZATION_TYPE` says `snap-start`.
    pub fn new(snap_start: bool) -> Environment {
        Environment {
            snap_start,
            generation: AtomicU64::new(0),
            told: AtomicU64::new(0),
            id: Mutex::new(fresh_id()),
        }
    }

    /// An environment with a known id (tests, fuzzing).
    pub fn with_id(snap_start: bool, id: &str) -> Environment {
        let env = Environment::new(snap_start);
        *env.id.lock().unwrap() = Arc::from(id);
        env
    }

    /// The current id (a new one after the restore).
    pub fn id(&self) -> Arc<str> {
        self.id.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Changes when the id does: 0 as started, 1 once restored.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The restore, noticed through `signal`: draws a fresh id the first time (and logs it);
    /// `false` when it was already noticed.
    pub fn restored(&self, signal: Signal) -> bool {
        let mut id = self.id.lock().unwrap_or_else(|e| e.into_inner());
        if self.generation.load(Ordering::Acquire) != 0 {
            return false;
        }
        let old = std::mem::replace(&mut *id, fresh_id());
        self.generation.store(1, Ordering::Release);
        let why = match signal {
            Signal::RestoreStart => "platform.restoreStart",
            Signal::EventAfterInit => "the first event after a SnapStart init",
        };
        info!(
            "restored from a SnapStart snapshot ({why}): environment {old} is now {}; events from here on carry the new id, the generator is reseeded and pooled connections are dropped",
            *id
        );
        true
    }

    /// The lifecycle loop got an event from `/event/next`: notes the restore if this is a
    /// SnapStart environment, and says whether the flusher must be told of a restore it has
    /// not heard of yet (reseed, drop connections) before it opens the event's window.
    pub fn event_arrived(&self) -> bool {
        if self.snap_start {
            self.restored(Signal::EventAfterInit);
        }
        let g = self.generation();
        self.told.swap(g, Ordering::AcqRel) != g
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_id_changes_once_whichever_signal_comes_first() {
        for (first, second) in [
            (Signal::RestoreStart, Signal::EventAfterInit),
            (Signal::EventAfterInit, Signal::RestoreStart),
        ] {
            let env = Environment::new(true);
            let before = env.id();
            assert_eq!(env.generation(), 0);
            assert!(env.restored(first));
            let after = env.id();
            assert_ne!(before, after);
            assert_eq!(env.generation(), 1);
            assert!(!env.restored(second), "a process image is restored once");
            assert_eq!(env.id(), after);
        }
    }

    #[test]
    fn the_flusher_is_told_once_per_restore() {
        // (snap-start environment, restoreStart seen before the event, told on each event)
        let table = [
            (false, false, [false, false]),
            (true, false, [true, false]),
            (true, true, [true, false]),
            // Restore events without the variable (not what Lambda does): still told.
            (false, true, [true, false]),
        ];
        for (snap_start, restore_event, told) in table {
            let env = Environment::new(snap_start);
            if restore_event {
                env.restored(Signal::RestoreStart);
            }
            let got = [env.event_arrived(), env.event_arrived()];
            assert_eq!(
                got, told,
                "snap_start={snap_start} restore_event={restore_event}"
            );
        }
    }

    #[test]
    fn restored_copies_of_one_snapshot_draw_different_ids() {
        // A "snapshot": one environment's state, copied before either copy is restored. The
        // ids drawn at the restore come from the OS, not from the copied state.
        let ids: std::collections::HashSet<Arc<str>> = (0..64)
            .map(|_| {
                let env = Environment::new(true);
                env.restored(Signal::EventAfterInit);
                env.id()
            })
            .collect();
        assert_eq!(ids.len(), 64);
        assert!(ids
            .iter()
            .all(|id| id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit())));
    }
}
