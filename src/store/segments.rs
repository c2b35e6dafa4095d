//! Overflow store: a bounded, append-only, crash-tolerant FIFO of opaque records on disk,
//! in a directory it trusts nothing in.
//!
//! When the in-memory buffer is full (Kinesis down during heavy traffic), the flusher
//! appends the overflow here instead of dropping it, and takes it back, oldest first, once
//! Kinesis accepts again. Records are opaque bytes: the caller serialises each event. There
//! is one caller, under a mutex: nothing here is thread-aware.
//!
//! # On disk
//!
//! A directory ([`DEFAULT_DIR`]) of segment files `spill-<20-digit sequence>.seg`. Names
//! sort in write order: a new segment takes the first free name after every file of ours
//! still there (from 0 when there is none), and a process adopts what it finds in name
//! order before writing anything. A name taken by something that is not ours is stepped
//! over. When no name sorts after our newest file (it is named with the largest number),
//! nothing more is spilled until that file has been taken, rather than break the order. The
//! segment and frame format is in [`frame`].
//!
//! # Trust
//!
//! The directory and everything in it may have been planted by someone else: `/tmp` is
//! shared with the function's code and, in principle, with other users (see [`owner`]).
//!
//! - The directory is created 0700; an existing one must be a real directory (a symbolic
//!   link is refused: it could lead anywhere) owned by the effective user, and is set to
//!   0700. Otherwise spilling is off, with one line naming the path.
//! - An entry is ours only if its inode says so: a regular file owned by the effective
//!   user, not writable by group or others, with one link. Anything else with a segment's
//!   name is skipped and counted, never read, sent or deleted.
//! - Segments are created 0600 with `O_EXCL|O_NOFOLLOW` and opened with `O_NOFOLLOW`,
//!   and checked again on the open file.
//! - Inside a file of ours, only frames whose checksums hold are sent (see [`frame`]).
//!
//! What this cannot stop: a process running as the same user (the function itself) can do
//! anything the extension can: write valid segments that will be sent, delete or edit
//! ours, fill `/tmp`. File permissions do not separate a process from its own user; the
//! spill only keeps such a process from crashing, stalling or misleading the extension
//! (every loss is counted). Root can do anything. The checks of the directory are made once,
//! at open, on the path's last component: a directory above it that others can write and
//! that lacks the sticky bit (unlike `/tmp`) would let them swap it afterwards.
//!
//! # Invariants
//!
//! - Bounded: every file of ours the store holds (headers included, and files it failed to
//!   delete, for [`REMOVE_TRIES`] attempts) adds up to at most `max_bytes`, which
//!   [`Spill::bytes`] reports. The first record that would cross the line is refused, and
//!   with it the rest of that append.
//! - `/tmp` is shared with the function: each append first reads the free space
//!   ([`statvfs`]) and counts down every byte it writes; a write that would leave less than
//!   [`reserve`] free (a tenth of the filesystem, at least 32 MiB) is refused.
//! - Space comes back: a segment is deleted as soon as it has been taken entirely, and
//!   segments are [`segment_bytes`] long (a quarter of the cap, 64 KiB..4 MiB), so a partly
//!   taken one holds back little. An empty store has no files. A file that cannot be
//!   deleted is retried, then given up with a notice: it stops counting against the cap.
//! - No file content can make it panic, loop or allocate more than [`MAX_RECORD_BYTES`] at
//!   once: reads stay within the file, and every step of a scan or a take moves forward.
//! - Sequence numbers never wrap: checked arithmetic, and no name is ever reused while a
//!   file of ours that sorts after it is still there.
//!
//! # Corrupt data
//!
//! A damaged frame loses that frame only: its intact neighbours, after it too, are kept.
//! What was lost is counted in records, from the frames' numbers ([`Spill::lost`],
//! [`Recovered::lost`]): the caller reports it as dropped. A file of ours with a segment's
//! name but nothing of ours inside (empty after a crash right after creation, another
//! format) is deleted and counted as a file.
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
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

mod frame;
mod owner;
mod space;

use frame::{
    encode, next_frame, parse_segment_name, segment_name, FrameReader, HEADER, HEADER_BYTES,
};
pub use frame::{fuzz as fuzz_segment, FRAME_OVERHEAD, MAX_RECORD_BYTES};
use owner::{DirRefused, Trust};
pub use space::{statvfs, writable_room, Probe};

/// The setting that turns spilling on (0 = off), named in every error as the way out.
pub const SETTING: &str = "KINESIS_TELEMETRY_SPILL_MAX_BYTES";
/// The setting naming the directory.
pub const DIR_SETTING: &str = "KINESIS_TELEMETRY_SPILL_DIR";
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

/// Names tried, one after another, when creating a segment whose name is taken.
const NAME_TRIES: u64 = 64;
/// Attempts at deleting a file before it stops counting against the cap.
pub const REMOVE_TRIES: u32 = 8;

/// A failure of the spill directory or of one of its files.
#[derive(Debug)]
pub enum SpillError {
    /// The path exists and is not a directory.
    NotADirectory { path: PathBuf },
    /// The path is a symbolic link: refused, it could lead anywhere.
    Symlink { path: PathBuf },
    /// The directory belongs to another user: refused.
    NotOurs {
        path: PathBuf,
        owner: u32,
        euid: u32,
    },
    /// A file operation failed: `op` is "create the directory", "open the directory",
    /// "restrict the permissions of", "list", "create", "write", "read", "remove" or
    /// "check free space of".
    Io {
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    /// No segment name sorts after `newest`, which must be taken before new segments can
    /// keep write order across a restart.
    NoNameLeft { newest: PathBuf },
    /// `tries` names in a row, from `first`, were taken by entries that are not ours.
    NamesTaken { first: PathBuf, tries: u64 },
    /// A file could not be deleted after [`REMOVE_TRIES`] attempts: it no longer counts
    /// against the cap (the free-space check still sees it).
    GaveUp {
        path: PathBuf,
        bytes: u64,
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
                "spill directory {} exists and is not a directory: remove it, point {DIR_SETTING} elsewhere, {off}",
                path.display()
            ),
            Self::Symlink { path } => write!(
                f,
                "spill directory {} is a symbolic link: refused (it could lead anywhere); use a real directory in {DIR_SETTING}, {off}",
                path.display()
            ),
            Self::NotOurs { path, owner, euid } => write!(
                f,
                "spill directory {} belongs to uid {owner}, not to this extension (uid {euid}): refused; remove it, point {DIR_SETTING} elsewhere, {off}",
                path.display()
            ),
            Self::Io { op, path, source } => write!(
                f,
                "spill: cannot {op} {}: {source}; check the space and permissions there, {off}",
                path.display()
            ),
            Self::NoNameLeft { newest } => write!(
                f,
                "spill: no segment name sorts after {} (the largest sequence number): nothing more is spilled until it has been sent; remove it to spill again at once, {off}",
                newest.display()
            ),
            Self::NamesTaken { first, tries } => write!(
                f,
                "spill: {tries} segment names from {} on are taken by entries that are not this extension's; remove them, {off}",
                first.display()
            ),
            Self::GaveUp {
                path,
                bytes,
                source,
            } => write!(
                f,
                "spill: cannot remove {} ({source}) after {REMOVE_TRIES} attempts: gave up; its {bytes} bytes no longer count against {SETTING} (the free-space reserve still does); delete it by hand",
                path.display()
            ),
        }
    }
}

impl std::error::Error for SpillError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io { source, .. } | Self::GaveUp { source, .. } => Some(source),
            _ => None,
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
    /// Records lost in damaged parts of those files, counted from the frames' numbers
    /// (the intact frames after a damaged one are kept).
    pub lost: u64,
    /// Damaged places found: a bad header, a stretch of damage between frames, a torn tail.
    pub damaged: u64,
    /// Files of ours named like segments with nothing of ours inside (empty, another
    /// format): deleted.
    pub bad_segments: u64,
    /// Entries named like segments that are not ours (see [`owner`]): skipped, never read,
    /// sent or deleted.
    pub not_ours: u64,
    /// Other entries in the directory: not ours, left alone.
    pub foreign_files: u64,
    /// The directory's mode, when it was not 0700 and was set so.
    pub tightened_from: Option<u32>,
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
    /// Reading the free space, naming or writing a segment failed.
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

/// One segment file of ours: `records` still to take, in frames from `pos` (the first
/// with an index of at least `next_index`) to `end`; `disk` is the file's size.
struct Segment {
    path: PathBuf,
    seq: u64,
    disk: u64,
    end: u64,
    pos: u64,
    next_index: u64,
    records: u64,
    /// Frames written, for the segment being written: the next frame's index.
    written: u32,
}

/// A file that could not be deleted: still counted until it is, or until [`REMOVE_TRIES`].
struct Stale {
    path: PathBuf,
    seq: u64,
    disk: u64,
    tries: u32,
}

/// The store: see the module docs.
pub struct Spill {
    dir: PathBuf,
    max_bytes: u64,
    segment_bytes: u64,
    probe: Probe,
    euid: u32,
    /// Oldest first; the back one is being written when `writer` is set.
    segments: VecDeque<Segment>,
    writer: Option<File>,
    /// Open on the front segment once a take has read from it.
    reader: Option<FrameReader<File>>,
    stale: Vec<Stale>,
    /// The highest sequence number given up on (see [`Stale`]): new names stay above it.
    gave_up_seq: Option<u64>,
    /// Where the next segment's name is looked for; `None`: none sorts after the newest.
    next_seq: Option<u64>,
    used: u64,
    records: u64,
    lost: u64,
    /// Errors met on the way that the caller should log (see [`Spill::notices`]).
    notices: Vec<SpillError>,
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
        let euid = owner::euid();
        let path = dir.to_path_buf();
        let tightened_from = owner::open_dir(dir, euid).map_err(|refused| match refused {
            DirRefused::Symlink => SpillError::Symlink { path: path.clone() },
            DirRefused::NotADirectory => SpillError::NotADirectory { path: path.clone() },
            DirRefused::Owner(owner) => SpillError::NotOurs {
                path: path.clone(),
                owner,
                euid,
            },
            DirRefused::Io(op, source) => io_error(op, dir, source),
        })?;
        let mut rec = Recovered {
            tightened_from,
            ..Recovered::default()
        };
        let found = list(dir, euid, &mut rec)?;
        let mut spill = Spill {
            dir: path,
            max_bytes,
            segment_bytes: segment_bytes(max_bytes),
            probe,
            euid,
            segments: VecDeque::new(),
            writer: None,
            reader: None,
            stale: Vec::new(),
            gave_up_seq: None,
            next_seq: Some(0),
            used: 0,
            records: 0,
            lost: 0,
            notices: Vec::new(),
        };
        for (seq, path) in found {
            spill.adopt(seq, path, &mut rec);
        }
        spill.lost = rec.lost;
        spill.next_seq = spill.first_free_seq();
        Ok((spill, rec))
    }

    /// Scans an old segment of ours: keeps it if it holds records, deletes it otherwise.
    fn adopt(&mut self, seq: u64, path: PathBuf, rec: &mut Recovered) {
        let file = match owner::open_ours(&path, self.euid) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                rec.not_ours += 1; // swapped since the listing
                return;
            }
            Err(source) => {
                rec.problems.push(io_error("read", &path, source));
                return;
            }
        };
        let disk = file.metadata().map_or(0, |m| m.len());
        self.used += disk;
        let mut scan = frame::scan(&mut FrameReader::new(file), disk, drop);
        if let Some(source) = scan.error.take() {
            rec.problems.push(io_error("read", &path, source));
        }
        if scan.is_foreign() {
            rec.bad_segments += 1;
        } else {
            rec.lost += scan.lost;
            rec.damaged += scan.damaged;
        }
        if scan.records == 0 {
            if let Some(e) = self.delete(path, seq, disk) {
                rec.problems.push(e);
            }
            return;
        }
        rec.records += scan.records;
        rec.bytes += disk;
        rec.segments += 1;
        self.records += scan.records;
        self.segments.push_back(Segment {
            path,
            seq,
            disk,
            end: disk,
            pos: HEADER_BYTES,
            next_index: 0,
            records: scan.records,
            written: 0,
        });
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
        let mut pending: u32 = 0;
        for record in records {
            let frame = FRAME_OVERHEAD + record.len() as u64;
            let writing = self.writer.as_ref().and(self.segments.back());
            let size = writing.map(|seg| (seg.disk + buf.len() as u64, seg.written + pending));
            // A new segment holds at least one record, however large.
            let rotate = size.is_none_or(|(s, frames)| {
                (s > HEADER_BYTES && s + frame > self.segment_bytes) || frames == u32::MAX
            });
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
            let index = self.segments.back().map_or(0, |seg| seg.written) + pending;
            encode(&mut buf, index, record);
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
            if seg.records == 0 {
                let Some(seg) = self.segments.pop_front() else {
                    break;
                };
                self.reader = None;
                if self.segments.is_empty() {
                    self.writer = None; // it was the one being written: start afresh
                }
                if let Some(e) = self.delete(seg.path, seg.seq, seg.disk) {
                    taken.error.get_or_insert(e);
                }
                continue;
            }
            let reader = match self.reader.take() {
                Some(reader) => Ok(reader),
                None => owner::open_ours(&seg.path, self.euid).map(FrameReader::new),
            };
            let next = reader.and_then(|mut reader| {
                let next = next_frame(&mut reader, seg.pos, seg.end, seg.next_index);
                self.reader = Some(reader);
                next
            });
            match next.map(|n| n.frame) {
                Ok(Some(frame))
                    if taken.records.is_empty() || bytes + frame.payload.len() <= max_bytes =>
                {
                    seg.pos = frame.end;
                    seg.next_index = u64::from(frame.index) + 1;
                    seg.records -= 1;
                    self.records = self.records.saturating_sub(1);
                    bytes += frame.payload.len();
                    taken.records.push(frame.payload);
                }
                Ok(Some(_)) => break, // over budget: it stays first, read again next time
                Ok(None) => self.lose_rest_of_front(),
                Err(source) => {
                    taken
                        .error
                        .get_or_insert(io_error("read", &seg.path, source));
                    self.lose_rest_of_front();
                }
            }
        }
        if self.segments.is_empty() && self.stale.is_empty() {
            // Nothing of ours is left to order new names against.
            self.next_seq = self.first_free_seq();
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

    /// Records lost since open to damaged files, recovery included (see
    /// [`Recovered::lost`]).
    pub fn lost(&self) -> u64 {
        self.lost
    }

    /// Errors met along the way that stopped nothing, for the caller to log once each.
    pub fn notices(&mut self) -> Vec<SpillError> {
        std::mem::take(&mut self.notices)
    }

    /// Bytes that may be written now without eating into the function's reserve.
    fn room(&mut self) -> Result<u64, SpillError> {
        (self.probe)(&self.dir)
            .map(writable_room)
            .map_err(|source| io_error("check free space of", &self.dir, source))
    }

    /// The first name to try for a new segment: after every file of ours still on disk
    /// (and any given up on), so that names keep write order across a restart; `None`
    /// when no name sorts after them.
    fn first_free_seq(&self) -> Option<u64> {
        let newest = self.segments.iter().map(|s| s.seq);
        let stale = self.stale.iter().map(|s| s.seq);
        let top = newest.chain(stale).chain(self.gave_up_seq).max();
        top.map_or(Some(0), |top| top.checked_add(1))
    }

    /// The path of our newest file, for [`SpillError::NoNameLeft`].
    fn newest_path(&self) -> PathBuf {
        self.dir.join(segment_name(u64::MAX))
    }

    /// Creates the next segment, with its header, as the one being written. A name taken
    /// by anything (an entry not ours, planted meanwhile) is stepped over.
    fn start_segment(&mut self) -> Result<(), SpillError> {
        let Some(first) = self.next_seq else {
            let newest = self.newest_path();
            return Err(SpillError::NoNameLeft { newest });
        };
        let mut seq = first;
        let (path, mut file) = loop {
            let path = self.dir.join(segment_name(seq));
            match owner::create(&path) {
                Ok(file) => break (path, file),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(source) => return Err(io_error("create", &path, source)),
            }
            self.next_seq = seq.checked_add(1);
            match self.next_seq {
                Some(next) if next - first < NAME_TRIES => seq = next,
                Some(_) => {
                    let first = self.dir.join(segment_name(first));
                    return Err(SpillError::NamesTaken {
                        first,
                        tries: NAME_TRIES,
                    });
                }
                None => {
                    let newest = self.newest_path();
                    return Err(SpillError::NoNameLeft { newest });
                }
            }
        };
        self.next_seq = seq.checked_add(1);
        self.used += HEADER_BYTES;
        if let Err(source) = file.write_all(&HEADER) {
            // The write error is reported; a file that cannot be deleted either stays
            // counted and is retried.
            let _ = self.delete(path.clone(), seq, HEADER_BYTES);
            return Err(io_error("write", &path, source));
        }
        self.segments.push_back(Segment {
            path,
            seq,
            disk: HEADER_BYTES,
            end: HEADER_BYTES,
            pos: HEADER_BYTES,
            next_index: 0,
            records: 0,
            written: 0,
        });
        self.writer = Some(file);
        Ok(())
    }

    /// Writes the `count` frames in `buf` to the segment being written, in one write.
    /// A failed write is cut off the file and ends that segment.
    fn flush(&mut self, buf: &mut Vec<u8>, count: u32) -> Result<usize, SpillError> {
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
        seg.records += u64::from(count);
        seg.written += count;
        self.used += len;
        self.records += u64::from(count);
        Ok(count as usize)
    }

    /// The front segment has no intact frame left: the records it still held are lost.
    fn lose_rest_of_front(&mut self) {
        if let Some(seg) = self.segments.front_mut() {
            self.records = self.records.saturating_sub(seg.records);
            self.lost += seg.records;
            seg.records = 0;
        }
        self.reader = None;
    }

    /// Deletes a file of ours of `disk` bytes; one that cannot be deleted stays counted
    /// and is retried (see [`Spill::retry_stale`]).
    fn delete(&mut self, path: PathBuf, seq: u64, disk: u64) -> Option<SpillError> {
        match remove(&path) {
            Ok(()) => {
                self.used = self.used.saturating_sub(disk);
                None
            }
            Err(source) => {
                let err = io_error("remove", &path, source);
                let tries = 1;
                self.stale.push(Stale {
                    path,
                    seq,
                    disk,
                    tries,
                });
                Some(err)
            }
        }
    }

    /// Retries deleting what could not be deleted before (already reported). After
    /// [`REMOVE_TRIES`] attempts a file is given up, with a notice: it stops counting
    /// against the cap, which it would otherwise eat for good; the free-space check still
    /// sees its bytes, so the function's reserve stays safe.
    fn retry_stale(&mut self) {
        for mut stale in std::mem::take(&mut self.stale) {
            match remove(&stale.path) {
                Ok(()) => self.used = self.used.saturating_sub(stale.disk),
                Err(_) if stale.tries + 1 < REMOVE_TRIES => {
                    stale.tries += 1;
                    self.stale.push(stale);
                }
                Err(source) => {
                    self.used = self.used.saturating_sub(stale.disk);
                    self.gave_up_seq = self.gave_up_seq.max(Some(stale.seq));
                    self.notices.push(SpillError::GaveUp {
                        path: stale.path,
                        bytes: stale.disk,
                        source,
                    });
                }
            }
        }
    }
}

/// The entries of `dir` named like segments that are ours, oldest first; counts the rest
/// into `rec`.
fn list(dir: &Path, euid: u32, rec: &mut Recovered) -> Result<Vec<(u64, PathBuf)>, SpillError> {
    let list_error = |source| io_error("list", dir, source);
    let mut found = Vec::new();
    for entry in fs::read_dir(dir).map_err(list_error)? {
        let entry = entry.map_err(list_error)?;
        let Some(seq) = entry.file_name().to_str().and_then(parse_segment_name) else {
            rec.foreign_files += 1;
            continue;
        };
        // `DirEntry::metadata` does not follow a symbolic link.
        match entry.metadata().map(|m| Trust::of(&m, euid)) {
            Ok(Trust::Ours) => found.push((seq, entry.path())),
            Ok(_) => rec.not_ours += 1,
            Err(source) => rec.problems.push(io_error("read", &entry.path(), source)),
        }
    }
    found.sort_unstable_by_key(|(seq, _)| *seq);
    Ok(found)
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

/// Removes a file (`unlink`: a link itself, never what it points to); one already gone
/// counts as removed.
fn remove(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;
