//! Events in the spill file: the buffer's view of [`crate::spill::Spill`], which stores
//! opaque byte records. This module turns an event into a record and back (its JSON text,
//! when it was received, its partition key) and keeps the events' buffer tickets in order.
//!
//! Record layout, version 1: `01` | received, epoch ms (u64 LE) | key kind (`0` random,
//! `1` fixed) | key length (u16 LE) | key | the event's JSON text. A record that does not
//! decode is skipped and counted (the store already skips what fails its checksum).
//!
//! Events a previous process left in the file come first: they take the tickets below
//! [`Spilled::reserved_tickets`], in file order.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use log::{info, warn};

use crate::config::SpillSettings;
use crate::event::{Event, Key};
use crate::spill::{Recovered, Refused, Spill, SpillError};

const VERSION: u8 = 1;

pub struct Spilled {
    store: Spill,
    /// Tickets of the spilled events, as runs of consecutive tickets (start, count).
    runs: VecDeque<(u64, u64)>,
    reserved: u64,
    /// Records that did not decode.
    undecodable: u64,
    /// The store's corrupt count at open (incidents an earlier process left, not events).
    corrupt_at_open: u64,
    failing: bool,
}

fn epoch_ms(at: Instant) -> u64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64;
    now.saturating_sub(at.elapsed().as_millis() as u64)
}

fn instant_of(epoch: u64) -> Instant {
    let now_ms = epoch_ms(Instant::now());
    let age = Duration::from_millis(now_ms.saturating_sub(epoch));
    Instant::now().checked_sub(age).unwrap_or_else(Instant::now)
}

fn encode(e: &Event) -> Vec<u8> {
    let key: &[u8] = match &e.key {
        Key::Random => b"",
        Key::Fixed(k) => k.as_bytes(),
    };
    let mut out = Vec::with_capacity(12 + key.len() + e.raw.len());
    out.push(VERSION);
    out.extend_from_slice(&epoch_ms(e.received).to_le_bytes());
    out.push(u8::from(matches!(e.key, Key::Fixed(_))));
    out.extend_from_slice(&(key.len() as u16).to_le_bytes());
    out.extend_from_slice(key);
    out.extend_from_slice(e.raw.as_bytes());
    out
}

fn decode(record: &[u8]) -> Option<Event> {
    let (&version, rest) = record.split_first()?;
    if version != VERSION || rest.len() < 11 {
        return None;
    }
    let (received, rest) = rest.split_at(8);
    let received = u64::from_le_bytes(received.try_into().ok()?);
    let (&kind, rest) = rest.split_first()?;
    let (len, rest) = rest.split_at(2);
    let len = usize::from(u16::from_le_bytes(len.try_into().ok()?));
    if rest.len() < len {
        return None;
    }
    let (key, raw) = rest.split_at(len);
    let key = match kind {
        0 => Key::Random,
        1 => Key::Fixed(Arc::from(std::str::from_utf8(key).ok()?)),
        _ => return None,
    };
    let raw = std::str::from_utf8(raw).ok()?;
    Some(Event::new(raw.into(), instant_of(received), key))
}

/// Opens the spill file when `KINESIS_TELEMETRY_SPILL_MAX_BYTES` turns it on; logs what an
/// earlier process left and any problem. `None` (spill off, with one line) when it cannot
/// be used: events over the memory cap are then dropped as without it.
pub fn open_logged(s: &SpillSettings) -> Option<Spilled> {
    if s.max_bytes == 0 {
        return None;
    }
    match Spilled::open(&s.dir, s.max_bytes) {
        Ok((spilled, recovered)) => {
            for p in &recovered.problems {
                warn!("spill file: {p}");
            }
            if recovered.records > 0 {
                info!(
                    "spill file: {} events ({} bytes) left by an earlier process are sent first",
                    recovered.records, recovered.bytes
                );
            }
            if recovered.corrupt_records_skipped + recovered.bad_segments > 0 {
                warn!(
                    "spill file: {} damaged records and {} unreadable files left by an earlier process were skipped (their events are lost)",
                    recovered.corrupt_records_skipped, recovered.bad_segments
                );
            }
            Some(spilled)
        }
        Err(e) => {
            warn!("spill to disk is off: {e}");
            None
        }
    }
}

impl Spilled {
    /// Opens the spill directory; what an earlier process left is sent first.
    pub fn open(dir: &Path, max_bytes: u64) -> Result<(Spilled, Recovered), SpillError> {
        let (store, recovered) = Spill::open(dir, max_bytes)?;
        let reserved = store.records();
        let store_corrupt = store.corrupt_skipped();
        let mut runs = VecDeque::new();
        if reserved > 0 {
            runs.push_back((0, reserved));
        }
        Ok((
            Spilled {
                store,
                runs,
                reserved,
                undecodable: 0,
                corrupt_at_open: store_corrupt,
                failing: false,
            },
            recovered,
        ))
    }

    /// Tickets taken by events an earlier process left behind.
    pub fn reserved_tickets(&self) -> u64 {
        self.reserved
    }

    pub fn is_empty(&self) -> bool {
        self.store.is_empty()
    }

    /// Events in the file.
    pub fn len(&self) -> u64 {
        self.store.records()
    }

    /// The ticket of the oldest spilled event.
    pub fn first_ticket(&self) -> Option<u64> {
        if self.store.is_empty() {
            return None;
        }
        self.runs.front().map(|(start, _)| *start)
    }

    /// Spilled events lost since open: in a damaged part of the file, or undecodable.
    pub fn lost(&self) -> u64 {
        self.store
            .corrupt_skipped()
            .saturating_sub(self.corrupt_at_open)
            + self.undecodable
    }

    /// Appends events in order; returns how many were stored. The rest (from the first one
    /// refused) is the caller's to drop and count; why is logged once per episode.
    pub fn append(&mut self, events: &[Event]) -> usize {
        let records: Vec<Vec<u8>> = events.iter().map(encode).collect();
        let slices: Vec<&[u8]> = records.iter().map(Vec::as_slice).collect();
        let a = self.store.append(&slices);
        for e in events.iter().take(a.appended) {
            match self.runs.back_mut() {
                Some((start, count)) if *start + *count == e.ticket => *count += 1,
                _ => self.runs.push_back((e.ticket, 1)),
            }
        }
        match a.stopped {
            None => self.failing = false,
            Some(why) if !self.failing => {
                self.failing = true;
                match why {
                    Refused::Full => warn!(
                        "spill file full ({} bytes): events over the memory cap are dropped (counted as spill_full) until Kinesis catches up; raise KINESIS_TELEMETRY_SPILL_MAX_BYTES to hold more",
                        self.store.bytes()
                    ),
                    Refused::LowSpace { room } => warn!(
                        "spill stopped: /tmp has only {room} bytes free above the reserve kept for the function; events over the memory cap are dropped (counted as spill_full)"
                    ),
                    Refused::TooLarge { bytes } => {
                        warn!("an event of {bytes} bytes is too large for the spill file; dropped (counted as spill_full)")
                    }
                    Refused::Error(e) => warn!(
                        "spill file unusable: {e}; events over the memory cap are dropped (counted as spill_full) while it lasts"
                    ),
                }
            }
            Some(_) => {}
        }
        a.appended
    }

    /// Takes up to `max_events` events and about `max_bytes`, oldest first, with their tickets.
    pub fn take(&mut self, max_events: usize, max_bytes: usize) -> Vec<Event> {
        let taken = self.store.take(max_events.max(1), max_bytes.max(1));
        if let Some(e) = taken.error {
            warn!("spill file: {e}");
        }
        let mut out = Vec::with_capacity(taken.records.len());
        for r in taken.records {
            let ticket = self.next_ticket();
            match decode(&r) {
                Some(mut e) => {
                    e.ticket = ticket;
                    out.push(e);
                }
                None => self.undecodable += 1,
            }
        }
        if self.store.is_empty() {
            self.runs.clear();
        }
        out
    }

    fn next_ticket(&mut self) -> u64 {
        match self.runs.front_mut() {
            Some((start, count)) => {
                let t = *start;
                *start += 1;
                *count -= 1;
                if *count == 0 {
                    self.runs.pop_front();
                }
                t
            }
            None => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip_with_their_key_and_age() {
        let at = Instant::now() - Duration::from_millis(1_500);
        for key in [Key::Random, Key::Fixed(Arc::from("req-é-1"))] {
            let e = Event::new(
                r#"{"type":"function","record":"x"}"#.into(),
                at,
                key.clone(),
            );
            let back = decode(&encode(&e)).unwrap();
            assert_eq!(back.raw, e.raw);
            assert_eq!(back.key, key);
            let age = back.received.elapsed();
            assert!(
                age >= Duration::from_millis(1_400) && age < Duration::from_secs(60),
                "{age:?}"
            );
        }
    }

    #[test]
    fn damaged_records_do_not_decode() {
        let e = Event::new("{}".into(), Instant::now(), Key::Fixed(Arc::from("k")));
        let good = encode(&e);
        assert!(decode(&good).is_some());
        for bad in [&good[..5], &good[..12], b"", &[9u8; 20][..]] {
            assert!(decode(bad).is_none());
        }
        let mut wrong_kind = good.clone();
        wrong_kind[9] = 7;
        assert!(decode(&wrong_kind).is_none());
    }
}
