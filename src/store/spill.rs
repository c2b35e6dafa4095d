//! Events in the spill file: the buffer's view of [`crate::store::segments::Spill`], which stores
//! opaque byte records. This module turns an event into a record and back (its JSON text,
//! when it was received, its partition key) and keeps the events' buffer tickets in order.
//!
//! Record layout, version 1: `01` | received, epoch ms (u64 LE) | key kind (`0` random,
//! `1` fixed) | key length (u16 LE) | key | the event's JSON text. A record that does not
//! decode is skipped and counted (the store already skips what fails its checksum).
//!
//! Events a previous process left in the file come first: they take the tickets below
//! [`Spilled::reserved_tickets`], in file order. Those it left in damaged parts of the file
//! are counted as found ([`Spilled::found_at_open`], the summary's `recovered`) and lost
//! ([`Spilled::lost`], dropped as `spill_corrupt`), so every event still ends in exactly one
//! of the summary's columns.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use log::{info, warn};

use crate::event::{Event, Key};
use crate::store::segments::{Recovered, Refused, Spill, SpillError};

const VERSION: u8 = 1;

/// The optional spill to `/tmp` when the memory cap is reached.
#[derive(Debug, Clone, PartialEq)]
pub struct SpillSettings {
    /// 0 = off.
    pub max_bytes: u64,
    pub dir: PathBuf,
}

pub struct Spilled {
    store: Spill,
    /// Tickets of the spilled events, as runs of consecutive tickets (start, count).
    runs: VecDeque<(u64, u64)>,
    reserved: u64,
    /// Records that did not decode.
    undecodable: u64,
    /// Events an earlier process left in damaged parts of the file.
    lost_at_open: u64,
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
        0 if key.is_empty() => Key::Random,
        1 => Key::Fixed(Arc::from(std::str::from_utf8(key).ok()?)),
        _ => return None,
    };
    let raw = std::str::from_utf8(raw).ok()?;
    Some(Event::new(raw.into(), instant_of(received), key))
}

/// Fuzzing (see `fuzzing`): any bytes either decode to an event or do not, without
/// a panic; an event decoded encodes back to the same text and key.
pub fn fuzz_record(data: &[u8]) {
    if let Some(e) = decode(data) {
        let again = encode(&e);
        assert_eq!(again[9..], data[9..], "all but the time, which is rebased");
    }
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
            log_recovered(&s.dir, &recovered);
            Some(spilled)
        }
        Err(e) => {
            warn!("spill to disk is off: {e}");
            None
        }
    }
}

/// One line per kind of thing found in the directory at start.
fn log_recovered(dir: &Path, r: &Recovered) {
    for p in &r.problems {
        warn!("spill file: {p}");
    }
    if let Some(mode) = r.tightened_from {
        warn!(
            "spill directory {} was mode {mode:04o}: set to 0700 (spilled telemetry is for this extension only)",
            dir.display()
        );
    }
    if r.not_ours > 0 {
        warn!(
            "spill directory {}: {} entries named like spill files are not this extension's (another owner, writable by others, a link, not a file): skipped, never sent or deleted; remove them",
            dir.display(),
            r.not_ours
        );
    }
    if r.records > 0 {
        info!(
            "spill file: {} events ({} bytes) left by an earlier process are sent first",
            r.records, r.bytes
        );
    }
    if r.lost + r.damaged + r.bad_segments > 0 {
        warn!(
            "spill file: {} events in {} damaged places, and {} unreadable files, left by an earlier process were skipped (the events are lost, counted as spill_corrupt); the intact events around them are kept",
            r.lost, r.damaged, r.bad_segments
        );
    }
}

impl Spilled {
    /// Opens the spill directory; what an earlier process left is sent first.
    pub fn open(dir: &Path, max_bytes: u64) -> Result<(Spilled, Recovered), SpillError> {
        let (store, recovered) = Spill::open(dir, max_bytes)?;
        let reserved = store.records();
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
                lost_at_open: recovered.lost,
                failing: false,
            },
            recovered,
        ))
    }

    /// Tickets taken by events an earlier process left behind.
    pub fn reserved_tickets(&self) -> u64 {
        self.reserved
    }

    /// Events an earlier process left behind: those to be sent, and those lost in damaged
    /// parts of the file (counted in [`Spilled::lost`]).
    pub fn found_at_open(&self) -> u64 {
        self.reserved + self.lost_at_open
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

    /// Spilled events lost since open, those an earlier process left included: in a
    /// damaged part of the file, or undecodable.
    pub fn lost(&self) -> u64 {
        self.store.lost() + self.undecodable
    }

    /// Logs what the store met along the way without stopping (a file given up on).
    fn log_notices(&mut self) {
        for notice in self.store.notices() {
            warn!("{notice}");
        }
    }

    /// Appends events in order; returns how many were stored. The rest (from the first one
    /// refused) is the caller's to drop and count; why is logged once per episode.
    pub fn append(&mut self, events: &[Event]) -> usize {
        let records: Vec<Vec<u8>> = events.iter().map(encode).collect();
        let slices: Vec<&[u8]> = records.iter().map(Vec::as_slice).collect();
        let a = self.store.append(&slices);
        self.log_notices();
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
        self.log_notices();
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

    /// Ten events spilled by a process that then crashed, with one byte of the file
    /// flipped (in event 5's JSON) before the next process starts.
    #[test]
    fn events_lost_in_a_damaged_file_left_behind_are_found_and_counted_as_lost() {
        let dir = std::env::temp_dir().join(format!("kte-spilled-damaged-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let events: Vec<Event> = (0..10)
            .map(|i| {
                let mut e =
                    Event::new(format!("{{\"n\":{i}}}").into(), Instant::now(), Key::Random);
                e.ticket = i;
                e
            })
            .collect();
        let (mut first, _) = Spilled::open(&dir, 1 << 20).unwrap();
        assert_eq!(first.append(&events), 10);
        drop(first);
        let seg = std::fs::read_dir(&dir)
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        let mut bytes = std::fs::read(&seg).unwrap();
        let at = bytes.windows(5).position(|w| w == b"\"n\":5").unwrap();
        bytes[at + 1] ^= 1;
        std::fs::write(&seg, &bytes).unwrap();

        let (mut second, recovered) = Spilled::open(&dir, 1 << 20).unwrap();
        assert_eq!((recovered.records, recovered.lost), (9, 1));
        // Every event left behind ends in one column: sent (9) or lost (1).
        assert_eq!(second.found_at_open(), 10);
        assert_eq!(second.reserved_tickets(), 9);
        assert_eq!(second.lost(), 1, "counted before anything is taken");
        let back: Vec<String> = second
            .take(100, usize::MAX)
            .iter()
            .map(|e| e.raw.to_string())
            .collect();
        let want: Vec<String> = (0..10)
            .filter(|i| *i != 5)
            .map(|i| format!("{{\"n\":{i}}}"))
            .collect();
        assert_eq!(back, want, "the events after the damaged one are kept");
        assert_eq!(second.lost(), 1, "and not counted twice");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_random_key_record_carrying_key_bytes_does_not_decode() {
        let e = Event::new("{}".into(), Instant::now(), Key::Random);
        let mut bad = encode(&e);
        bad[10] = 1; // key length 1, the key being the first byte of the JSON text
        assert!(decode(&bad).is_none());
        fuzz_record(&bad);
        fuzz_record(&encode(&e));
    }
}
