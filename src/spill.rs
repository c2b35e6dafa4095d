//! Overflow store: a bounded, append-only, crash-tolerant FIFO of opaque records on disk.
//!
//! When the in-memory buffer is full (Kinesis down during heavy traffic), the flusher
//! appends the overflow here instead of dropping it, and takes it back, oldest first, once
//! Kinesis accepts again. Records are opaque bytes: the caller serialises each event. There
//! is one caller, under a mutex: nothing here is thread-aware.
//!
//! # On disk
//!
//! A directory ([`DEFAULT_DIR`]) of segment files `spill-<20-digit sequence>.seg`. The
//! sequence only grows and a new process starts after the highest name it finds, so names
//! sort in write order and an old segment is never overwritten (files are created with
//! `create_new`). A segment is a header, `KTESPILL` and the format version 1 as a u32 LE,
//! then frames: payload length (u32 LE), the first 8 bytes of SHA-256(length ++ payload),
//! the payload.
//!
//! # Invariants
//!
//! - Bounded: every file the store owns (headers included, and files it failed to delete)
//!   adds up to at most `max_bytes`, which [`Spill::bytes`] reports. The first record that
//!   would cross the line is refused, and with it the rest of that append.
//! - `/tmp` is shared with the function: each append first reads the free space
//!   ([`statvfs`]) and counts down every byte it writes; a write that would leave less than
//!   [`reserve`] free (a tenth of the filesystem, at least 32 MiB) is refused.
//! - Space comes back: a segment is deleted as soon as it has been taken entirely, and
//!   segments are [`segment_bytes`] long (a quarter of the cap, 64 KiB..4 MiB), so a partly
//!   taken one holds back little. An empty store has no files.
//! - No file content can make it panic, loop or allocate more than [`MAX_RECORD_BYTES`] at
//!   once: reads stay within the file, and every step of a scan or a take moves forward.
//!
//! # Corrupt data
//!
//! A frame whose length runs past the end of its file (a torn write) or whose checksum does
//! not match (a corrupt byte) ends the readable part of its segment: the next frame
//! boundary cannot be found reliably, so the rest of that segment is skipped and counted. A
//! file with a segment's name but not our header (an empty file left by a crash right after
//! creation, another version) is deleted and counted; other names are not ours and are left
//! alone.
//!
//! # Durability and delivery
//!
//! Writes go to the page cache, with no fsync: what the store survives is a crash of the
//! extension process, across which Lambda keeps `/tmp`; a host crash loses the environment
//! anyway. The read position is not persisted, so after a crash a partly taken segment is
//! sent again from its start: delivery is at least once, as with any Kinesis retry.
//! Persisting it at each take would lose the records in flight to Kinesis at the crash;
//! persisting it on acknowledgement would need a second call from the flusher, for a gain
//! of at most one segment of duplicates after a rare crash. Records handed out by
//! [`Spill::take`] are the caller's from then on: once their segment is deleted, a crash
//! before they reach Kinesis loses them, as it loses the in-memory buffer.

use std::collections::VecDeque;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

mod frame;
mod space;

use frame::{encode, parse_segment_name, read_frame, scan, segment_name, HEADER, HEADER_BYTES};
pub use frame::{FRAME_OVERHEAD, MAX_RECORD_BYTES};
pub use space::{statvfs, writable_room, Probe};

/// The setting that turns spilling on (0 = off), named in every error as the way out.
pub const SETTING: &str = "KINESIS_TELEMETRY_SPILL_MAX_BYTES";
/// Where the extension keeps its segments: Lambda keeps `/tmp` across an extension crash.
pub const DEFAULT_DIR: &str = "/tmp/kinesis-telemetry-spill";

/// Segment size bounds (see [`segment_bytes`]).
pub const MIN_SEGMENT_BYTES: u64 = 64 * 1024;
pub const MAX_SEGMENT_BYTES: u64 = 4 * 1024 * 1024;
/// Target segment size for a cap: a quarter of it, within 64 KiB..4 MiB. A segment is
/// given back only once taken entirely, so this bounds what a partly taken one holds.
pub fn segment_bytes(max_bytes: u64) -> u64 {
    (max_bytes / 4).clamp(MIN_SEGMENT_BYTES, MAX_SEGMENT_BYTES)
}

/// A failure of the spill directory or of one of its files.
#[derive(Debug)]
pub enum SpillError {
    /// The path exists and is not a directory.
    NotADirectory { path: PathBuf },
    /// A file operation failed: `op` is "create the directory", "list", "create", "write",
    /// "read", "remove" or "check free space of".
    Io {
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },
}

fn io_error(op: &'static str, path: &Path, source: io::Error) -> SpillError {
    let path = path.to_path_buf();
    SpillError::Io { op, path, source }
}

impl fmt::Display for SpillError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let off = format!("or set {SETTING}=0 to turn spilling off");
        match self {
            Self::NotADirectory { path } => write!(
                f,
                "spill directory {} exists and is not a directory: remove it, {off}",
                path.display()
            ),
            Self::Io { op, path, source } => write!(
                f,
                "spill: cannot {op} {}: {source}; check the space and permissions there, {off}",
                path.display()
            ),
        }
    }
}

impl std::error::Error for SpillError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io { source, .. } => Some(source),
            Self::NotADirectory { .. } => None,
        }
    }
}

/// What [`Spill::open`] found from an earlier process.
#[derive(Debug, Default)]
pub struct Recovered {
    /// Records adopted, to be taken before anything appended now.
    pub records: u64,
    /// Size of the adopted segment files.
    pub bytes: u64,
    /// Segment files adopted.
    pub segments: u64,
    /// One per torn or corrupt record found: it and the rest of its segment were skipped
    /// (how many records that was cannot be known).
    pub corrupt_records_skipped: u64,
    /// Files named like segments without our header (empty, torn, foreign): deleted.
    pub bad_segments: u64,
    /// Other entries in the directory: not ours, left alone.
    pub foreign_files: u64,
    /// Errors that did not stop the store from opening (a file that could not be read or
    /// deleted), to be logged.
    pub problems: Vec<SpillError>,
}

/// What [`Spill::append`] did.
#[derive(Debug, Default)]
pub struct Appended {
    /// How many records, from the front, were stored. The caller drops and counts the rest.
    pub appended: usize,
    /// Why it stopped before the end; `None` when every record was stored.
    pub stopped: Option<Refused>,
}

/// Why [`Spill::append`] did not store a record, nor the ones after it.
#[derive(Debug)]
pub enum Refused {
    /// It would take the store past its `max_bytes`.
    Full,
    /// It would leave less than [`reserve`] free on the filesystem; `room` was left.
    LowSpace { room: u64 },
    /// It is larger than [`MAX_RECORD_BYTES`].
    TooLarge { bytes: usize },
    /// Reading the free space or writing failed.
    Error(SpillError),
}

/// What [`Spill::take`] returned.
#[derive(Debug, Default)]
pub struct Taken {
    /// Oldest first.
    pub records: Vec<Vec<u8>>,
    /// The first error met (a segment that could not be read or deleted); the records
    /// above are valid all the same.
    pub error: Option<SpillError>,
}

/// One segment file: `records` valid frames in `pos..end`; `disk` is the file's size, which
/// runs past `end` when the tail is torn or corrupt.
struct Segment {
    path: PathBuf,
    disk: u64,
    end: u64,
    pos: u64,
    records: u64,
}

/// The store: see the module docs.
pub struct Spill {
    dir: PathBuf,
    max_bytes: u64,
    segment_bytes: u64,
    probe: Probe,
    /// Oldest first; the back one is being written when `writer` is set.
    segments: VecDeque<Segment>,
    writer: Option<File>,
    /// Open on the front segment once a take has read from it.
    reader: Option<File>,
    /// Files that could not be deleted, with their sizes: still counted, retried.
    stale: Vec<(PathBuf, u64)>,
    next_seq: u64,
    used: u64,
    records: u64,
    corrupt_skipped: u64,
}

impl Spill {
    /// Opens (creating) `dir` with a cap of `max_bytes`, and adopts the segments a previous
    /// process left there, to be taken first.
    pub fn open(dir: &Path, max_bytes: u64) -> Result<(Spill, Recovered), SpillError> {
        Self::open_with(dir, max_bytes, Box::new(statvfs))
    }

    /// [`Spill::open`] with the free-space probe given.
    pub fn open_with(
        dir: &Path,
        max_bytes: u64,
        probe: Probe,
    ) -> Result<(Spill, Recovered), SpillError> {
        let path = dir.to_path_buf();
        if let Err(source) = fs::create_dir_all(dir) {
            // It only fails on an existing path when that is not a directory.
            return Err(if dir.exists() {
                SpillError::NotADirectory { path }
            } else {
                io_error("create the directory", dir, source)
            });
        }
        let list_error = |source| io_error("list", dir, source);
        let mut rec = Recovered::default();
        let mut found = Vec::new();
        for entry in fs::read_dir(dir).map_err(list_error)? {
            let entry = entry.map_err(list_error)?;
            let is_file = entry.file_type().is_ok_and(|t| t.is_file());
            match entry.file_name().to_str().and_then(parse_segment_name) {
                Some(seq) if is_file => found.push((seq, entry.path())),
                _ => rec.foreign_files += 1,
            }
        }
        found.sort_unstable_by_key(|(seq, _)| *seq);
        let mut spill = Spill {
            dir: path,
            max_bytes,
            segment_bytes: segment_bytes(max_bytes),
            probe,
            segments: VecDeque::new(),
            writer: None,
            reader: None,
            stale: Vec::new(),
            next_seq: found.last().map_or(0, |(seq, _)| seq.saturating_add(1)),
            used: 0,
            records: 0,
            corrupt_skipped: 0,
        };
        for (_, path) in found {
            spill.adopt(path, &mut rec);
        }
        spill.corrupt_skipped = rec.corrupt_records_skipped;
        Ok((spill, rec))
    }

    /// Scans an old segment: keeps it if it holds records, deletes it otherwise.
    fn adopt(&mut self, path: PathBuf, rec: &mut Recovered) {
        let disk = fs::metadata(&path).map_or(0, |m| m.len());
        self.used += disk;
        let scanned = File::open(&path).map(|file| scan(&file, disk));
        match scanned {
            Ok(Some(scan)) => {
                rec.corrupt_records_skipped += u64::from(scan.bad);
                if let Some(source) = scan.error {
                    rec.problems.push(io_error("read", &path, source));
                }
                if scan.records > 0 {
                    rec.records += scan.records;
                    rec.bytes += disk;
                    rec.segments += 1;
                    self.records += scan.records;
                    let (end, records) = (scan.end, scan.records);
                    self.segments.push_back(Segment {
                        path,
                        disk,
                        end,
                        pos: HEADER_BYTES,
                        records,
                    });
                    return;
                }
            }
            Ok(None) => rec.bad_segments += 1,
            Err(source) => {
                rec.bad_segments += 1;
                rec.problems.push(io_error("read", &path, source));
            }
        }
        if let Some(e) = self.delete(path, disk) {
            rec.problems.push(e);
        }
    }

    /// Appends `records` in order, stopping at the first that the cap, the free space or an
    /// I/O error does not allow (see [`Appended`]).
    pub fn append(&mut self, records: &[&[u8]]) -> Appended {
        self.retry_stale();
        let mut done = Appended::default();
        let mut room = match self.room() {
            Ok(room) => room,
            Err(e) => {
                done.stopped = Some(Refused::Error(e));
                return done;
            }
        };
        let mut buf = Vec::new();
        let mut pending = 0;
        for record in records {
            let frame = FRAME_OVERHEAD + record.len() as u64;
            let writing = self.writer.as_ref().and(self.segments.back());
            let size = writing.map(|seg| seg.disk + buf.len() as u64);
            // A new segment holds at least one record, however large.
            let rotate = size.is_none_or(|s| s > HEADER_BYTES && s + frame > self.segment_bytes);
            let need = frame + if rotate { HEADER_BYTES } else { 0 };
            let used = self.used + buf.len() as u64;
            if let Some(refused) = refusal(record.len(), need, used, self.max_bytes, room) {
                done.stopped = Some(refused);
                break;
            }
            if rotate {
                let flushed = self.flush(&mut buf, std::mem::take(&mut pending));
                let started = flushed
                    .map(|n| done.appended += n)
                    .and_then(|()| self.start_segment());
                if let Err(e) = started {
                    done.stopped = Some(Refused::Error(e));
                    break;
                }
            }
            room -= need;
            encode(&mut buf, record);
            pending += 1;
        }
        match self.flush(&mut buf, pending) {
            Ok(n) => done.appended += n,
            Err(e) => done.stopped = Some(Refused::Error(e)),
        }
        done
    }

    /// Takes records from the front, oldest first: at most `max_records`, and no more than
    /// `max_bytes` of payload unless the first record alone is larger (a store that is not
    /// empty always gives at least one). Unreadable data is skipped and counted.
    pub fn take(&mut self, max_records: usize, max_bytes: usize) -> Taken {
        self.retry_stale();
        let mut taken = Taken::default();
        let mut bytes = 0;
        while taken.records.len() < max_records.max(1) {
            let Some(seg) = self.segments.front_mut() else {
                break;
            };
            if seg.pos >= seg.end {
                let Some(seg) = self.segments.pop_front() else {
                    break;
                };
                self.reader = None;
                if self.segments.is_empty() {
                    self.writer = None; // it was the one being written: start afresh
                }
                if let Some(e) = self.delete(seg.path, seg.disk) {
                    taken.error.get_or_insert(e);
                }
                continue;
            }
            let opened = match self.reader.take() {
                Some(file) => Ok(file),
                None => File::open(&seg.path),
            };
            let read = opened.and_then(|file| {
                let frame = read_frame(&file, seg.pos, seg.end);
                self.reader = Some(file);
                frame
            });
            match read {
                Ok(Some(record))
                    if taken.records.is_empty() || bytes + record.len() <= max_bytes =>
                {
                    seg.pos += FRAME_OVERHEAD + record.len() as u64;
                    seg.records = seg.records.saturating_sub(1);
                    self.records = self.records.saturating_sub(1);
                    bytes += record.len();
                    taken.records.push(record);
                }
                Ok(Some(_)) => break, // over budget: it stays first, read again next time
                Ok(None) => self.skip_rest_of_front(),
                Err(source) => {
                    taken
                        .error
                        .get_or_insert(io_error("read", &seg.path, source));
                    self.skip_rest_of_front();
                }
            }
        }
        taken
    }

    /// No record left to take.
    pub fn is_empty(&self) -> bool {
        self.records == 0
    }

    /// Size of every file the store holds, headers and files not yet deleted included:
    /// what counts against `max_bytes`.
    pub fn bytes(&self) -> u64 {
        self.used
    }

    /// Records left to take.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// Records skipped as corrupt or torn since open, recovery included (see
    /// [`Recovered::corrupt_records_skipped`]; after open, the records known lost).
    pub fn corrupt_skipped(&self) -> u64 {
        self.corrupt_skipped
    }

    /// Bytes that may be written now without eating into the function's reserve.
    fn room(&mut self) -> Result<u64, SpillError> {
        (self.probe)(&self.dir)
            .map(writable_room)
            .map_err(|source| io_error("check free space of", &self.dir, source))
    }

    /// Creates the next segment, with its header, as the one being written.
    fn start_segment(&mut self) -> Result<(), SpillError> {
        let path = self.dir.join(segment_name(self.next_seq));
        let created = OpenOptions::new().write(true).create_new(true).open(&path);
        let mut file = created.map_err(|source| io_error("create", &path, source))?;
        self.next_seq += 1;
        self.used += HEADER_BYTES;
        if let Err(source) = file.write_all(&HEADER) {
            // The write error is reported; a file that cannot be deleted either stays
            // counted and is retried.
            let _ = self.delete(path.clone(), HEADER_BYTES);
            return Err(io_error("write", &path, source));
        }
        let (disk, end, pos) = (HEADER_BYTES, HEADER_BYTES, HEADER_BYTES);
        self.segments.push_back(Segment {
            path,
            disk,
            end,
            pos,
            records: 0,
        });
        self.writer = Some(file);
        Ok(())
    }

    /// Writes the `count` frames in `buf` to the segment being written, in one write.
    /// A failed write is cut off the file and ends that segment.
    fn flush(&mut self, buf: &mut Vec<u8>, count: usize) -> Result<usize, SpillError> {
        let len = buf.len() as u64;
        let (Some(file), Some(seg)) = (self.writer.as_mut(), self.segments.back_mut()) else {
            return Ok(0); // frames are only encoded once a segment is being written
        };
        if len == 0 {
            return Ok(0);
        }
        let written = file.write_all(buf);
        buf.clear();
        if let Err(source) = written {
            // The file's real size after the cut (or an upper bound) keeps the cap true.
            let cut = file.set_len(seg.disk).and_then(|()| file.metadata());
            let real = cut.map_or(seg.disk + len, |m| m.len());
            self.used = self.used.saturating_sub(seg.disk) + real;
            seg.disk = real;
            let err = io_error("write", &seg.path, source);
            self.writer = None;
            return Err(err);
        }
        seg.disk += len;
        seg.end += len;
        seg.records += count as u64;
        self.used += len;
        self.records += count as u64;
        Ok(count)
    }

    /// The front segment cannot be read further: the records it had left are lost.
    fn skip_rest_of_front(&mut self) {
        if let Some(seg) = self.segments.front_mut() {
            self.records = self.records.saturating_sub(seg.records);
            self.corrupt_skipped += seg.records.max(1);
            seg.records = 0;
            seg.pos = seg.end;
        }
        self.reader = None;
    }

    /// Deletes a file of `disk` bytes; one that cannot be deleted stays counted, retried.
    fn delete(&mut self, path: PathBuf, disk: u64) -> Option<SpillError> {
        match remove(&path) {
            Ok(()) => {
                self.used = self.used.saturating_sub(disk);
                None
            }
            Err(source) => {
                let err = io_error("remove", &path, source);
                self.stale.push((path, disk));
                Some(err)
            }
        }
    }

    /// Retries deleting what could not be deleted before; already reported, so quietly.
    fn retry_stale(&mut self) {
        let used = &mut self.used;
        self.stale.retain(|(path, disk)| {
            let gone = remove(path).is_ok();
            if gone {
                *used = used.saturating_sub(*disk);
            }
            !gone
        });
    }
}

/// Whether a record of `len` bytes, taking `need` bytes on disk, may be stored by a store
/// already holding `used` of its `max_bytes`, with `room` left above the reserve.
fn refusal(len: usize, need: u64, used: u64, max_bytes: u64, room: u64) -> Option<Refused> {
    if len > MAX_RECORD_BYTES {
        Some(Refused::TooLarge { bytes: len })
    } else if used.checked_add(need).is_none_or(|total| total > max_bytes) {
        Some(Refused::Full)
    } else if need > room {
        Some(Refused::LowSpace { room })
    } else {
        None
    }
}

/// Removes a file; one already gone counts as removed.
fn remove(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests;
