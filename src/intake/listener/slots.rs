//! The connection slots: who holds one, and whether a request is in progress on it. When
//! every slot is taken, a newcomer gets the slot of an idle connection, which is closed.
//!
//! Why: connections that never send a byte (the function's own code, a leak, or anything else
//! in the sandbox) could otherwise hold every slot for good, and the platform's reconnects
//! would be the ones refused. Idle connections are never closed by a timer: the platform's
//! own keep-alive connection sits idle across a freeze for hours, and nothing can tell a
//! frozen peer from a silent one. They give way only when a newcomer needs the room.
//!
//! Policy ([`victim`]): never a connection in the middle of a request; first the connections
//! that have never carried a request to the subscribed path (only the Telemetry API knows
//! it, so a connection that has is the platform's), oldest idle first; then, only if every
//! idle connection is the platform's, the one idle longest.
//!
//! Invariants:
//! - One lock guards every slot's phase: a connection marks itself busy under it when a
//!   request's first bytes arrive, and the accept thread picks and closes a victim under it,
//!   so a connection is never closed once it has seen its request start. (Bytes the kernel
//!   holds but the connection thread has not read yet do not count: that window is the time
//!   it takes a woken thread to take the lock.)
//! - A slot is freed when its connection ends or is evicted, whichever comes first; the
//!   socket is shared with the registry, so an evicted connection's thread ends at once
//!   (its read returns end of stream) and the socket closes when both let go.

use std::net::{Shutdown, TcpStream};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::ListenerStats;

/// Where a connection stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    /// Waiting for a request's first byte since then (a new connection: since its accept).
    Idle(Instant),
    /// A request has started arriving, is being handled, or is being refused.
    Busy,
}

/// A slot's state as the eviction policy sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Holder {
    pub phase: Phase,
    /// Has carried a request to the subscribed path: the platform's connection.
    pub trusted: bool,
}

/// The slot to free for a newcomer, if any (the policy in the module docs; pure).
pub(super) fn victim(holders: &[Holder]) -> Option<usize> {
    holders
        .iter()
        .enumerate()
        .filter_map(|(i, h)| match h.phase {
            Phase::Idle(since) => Some((h.trusted, since, i)),
            Phase::Busy => None,
        })
        .min()
        .map(|(_, _, i)| i)
}

/// What the accept thread did with a newcomer.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Admission {
    /// It holds slot `id`; `evicted`: how long the connection closed to make room for it
    /// had been idle.
    Admitted { id: u64, evicted: Option<Duration> },
    /// Every slot is held by a connection in the middle of a request.
    Full,
}

struct Slot {
    id: u64,
    holder: Holder,
    stream: Arc<TcpStream>,
}

#[derive(Default)]
struct Held {
    next_id: u64,
    slots: Vec<Slot>,
}

/// The registry of slots, shared by the accept thread and every connection thread.
pub(super) struct Slots {
    cap: usize,
    held: Mutex<Held>,
    /// `open_connections` is kept equal to the number of slots held.
    stats: Arc<ListenerStats>,
}

impl Slots {
    /// `cap` slots; 0 counts as 1.
    pub(super) fn new(cap: usize, stats: Arc<ListenerStats>) -> Slots {
        Slots {
            cap: cap.max(1),
            held: Mutex::new(Held::default()),
            stats,
        }
    }

    pub(super) fn cap(&self) -> usize {
        self.cap
    }

    fn lock(&self) -> MutexGuard<'_, Held> {
        // A panic elsewhere cannot leave the list inconsistent: every change is one call.
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Gives `stream` a slot, closing an idle connection to make room if every slot is
    /// taken.
    pub(super) fn admit(&self, stream: Arc<TcpStream>, now: Instant) -> Admission {
        let mut held = self.lock();
        let mut evicted = None;
        if held.slots.len() >= self.cap {
            let holders: Vec<Holder> = held.slots.iter().map(|s| s.holder).collect();
            let Some(i) = victim(&holders) else {
                return Admission::Full;
            };
            let gone = held.slots.swap_remove(i);
            // Its thread's blocking read returns end of stream and the thread ends; the
            // peer sees the connection closed, as after any idle close.
            let _ = gone.stream.shutdown(Shutdown::Both);
            if let Phase::Idle(since) = gone.holder.phase {
                evicted = Some(now.saturating_duration_since(since));
            }
        }
        let id = held.next_id;
        held.next_id += 1;
        held.slots.push(Slot {
            id,
            holder: Holder {
                phase: Phase::Idle(now),
                trusted: false,
            },
            stream,
        });
        self.publish(&held);
        Admission::Admitted { id, evicted }
    }

    /// Slot `id` waits for a request's first byte from now on.
    pub(super) fn idle(&self, id: u64) {
        self.set(id, |h| h.phase = Phase::Idle(Instant::now()));
    }

    /// A request's first bytes arrived on slot `id`; `false` if the connection was evicted
    /// before (its socket is closed: the request cannot be answered).
    pub(super) fn busy(&self, id: u64) -> bool {
        self.set(id, |h| h.phase = Phase::Busy)
    }

    /// Slot `id` carried a request to the subscribed path.
    pub(super) fn trust(&self, id: u64) {
        self.set(id, |h| h.trusted = true);
    }

    /// The connection of slot `id` ended (or never started): its slot is free.
    pub(super) fn leave(&self, id: u64) {
        let mut held = self.lock();
        held.slots.retain(|s| s.id != id);
        self.publish(&held);
    }

    fn set(&self, id: u64, change: impl FnOnce(&mut Holder)) -> bool {
        let mut held = self.lock();
        match held.slots.iter_mut().find(|s| s.id == id) {
            Some(slot) => {
                change(&mut slot.holder);
                true
            }
            None => false,
        }
    }

    fn publish(&self, held: &Held) {
        self.stats
            .open_connections
            .store(held.slots.len() as u64, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_victim_is_idle_untrusted_first_then_oldest() {
        let t0 = Instant::now();
        let at = |s: u64| Phase::Idle(t0 + Duration::from_secs(s));
        let h = |phase, trusted| Holder { phase, trusted };
        let busy = Phase::Busy;
        let cases: [(&str, Vec<Holder>, Option<usize>); 7] = [
            ("no slots", vec![], None),
            ("all busy", vec![h(busy, false), h(busy, true)], None),
            (
                "the oldest idle",
                vec![h(at(3), false), h(at(1), false), h(at(2), false)],
                Some(1),
            ),
            (
                "never a busy one, however old",
                vec![h(busy, false), h(at(9), false)],
                Some(1),
            ),
            (
                "an untrusted one before the platform's, even if newer",
                vec![h(at(1), true), h(at(5), false)],
                Some(1),
            ),
            (
                "the platform's oldest idle when nothing else is idle",
                vec![h(at(4), true), h(busy, false), h(at(2), true)],
                Some(2),
            ),
            (
                "ties go to the first",
                vec![h(at(1), false), h(at(1), false)],
                Some(0),
            ),
        ];
        for (name, holders, expected) in cases {
            assert_eq!(victim(&holders), expected, "{name}");
        }
    }
}
