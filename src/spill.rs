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
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// The setting that turns spilling on (0 = off), named in every error as the way out.
pub const SETTING: &str = "KINESIS_TELEMETRY_SPILL_MAX_BYTES";
/// Where the extension keeps its segments: Lambda keeps `/tmp` across an extension crash.
pub const DEFAULT_DIR: &str = "/tmp/kinesis-telemetry-spill";

/// Every segment starts so: magic, then format version 1 (u32 LE). Anything else is not
/// parsed.
const HEADER: [u8; 12] = *b"KTESPILL\x01\0\0\0";
pub const HEADER_BYTES: u64 = HEADER.len() as u64;
/// Length (4 bytes) and truncated checksum (8 bytes) before each payload.
pub const FRAME_OVERHEAD: u64 = 12;
/// Largest record stored. A Kinesis record is at most 10 MiB; a length field above this is
/// corruption, so no read allocates more.
pub const MAX_RECORD_BYTES: usize = 16 * 1024 * 1024;
/// Segment size bounds (see [`segment_bytes`]).
pub const MIN_SEGMENT_BYTES: u64 = 64 * 1024;
pub const MAX_SEGMENT_BYTES: u64 = 4 * 1024 * 1024;
/// Free space left to the function: at least this much...
pub const RESERVE_MIN_BYTES: u64 = 32 * 1024 * 1024;
/// ...or one part in this many of the filesystem, whichever is larger.
pub const RESERVE_DIVISOR: u64 = 10;

/// Size and free space of a filesystem, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FsSpace {
    pub total: u64,
    /// Free to unprivileged users (`f_bavail`): what the function could still write.
    pub available: u64,
}

/// Reads a filesystem's free space: [`statvfs`] in production, a script in tests.
pub type Probe = Box<dyn FnMut(&Path) -> io::Result<FsSpace> + Send>;

/// What the store leaves free for the function: a tenth of the filesystem, at least
/// 32 MiB (Lambda's `/tmp` is 512 MiB to 10 GiB: 51 MiB to 1 GiB stay free).
pub fn reserve(total: u64) -> u64 {
    (total / RESERVE_DIVISOR).max(RESERVE_MIN_BYTES)
}

/// Bytes the store may still write on a filesystem in this state.
pub fn writable_room(space: FsSpace) -> u64 {
    space.available.saturating_sub(reserve(space.total))
}

/// Target segment size for a cap: a quarter of it, within 64 KiB..4 MiB. A segment is
/// given back only once taken entirely, so this bounds what a partly taken one holds.
pub fn segment_bytes(max_bytes: u64) -> u64 {
    (max_bytes / 4).clamp(MIN_SEGMENT_BYTES, MAX_SEGMENT_BYTES)
}

fn segment_name(seq: u64) -> String {
    format!("spill-{seq:020}.seg")
}

/// The sequence number in a segment's file name; `None` for any other name.
fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("spill-")?.strip_suffix(".seg")?;
    let exact = digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit());
    exact.then(|| digits.parse().ok()).flatten()
}

/// The size and free space of the filesystem holding `path`, from `statvfs(3)`.
#[allow(unsafe_code)]
#[allow(clippy::useless_conversion)] // the field types are narrower than u64 on some targets
pub fn statvfs(path: &Path) -> io::Result<FsSpace> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))?;
    let mut buf = std::mem::MaybeUninit::<libc::statvfs>::zeroed();
    // SAFETY: `c_path` is NUL-terminated and outlives the call; `buf` is writable memory of
    // the size and alignment of `struct statvfs`. The struct holds only integers, for which
    // all-zero bytes are valid, so it is initialised whatever the call writes into it.
    let buf = unsafe {
        if libc::statvfs(c_path.as_ptr(), buf.as_mut_ptr()) != 0 {
            return Err(io::Error::last_os_error());
        }
        buf.assume_init()
    };
    let block = u64::from(if buf.f_frsize != 0 {
        buf.f_frsize
    } else {
        buf.f_bsize
    });
    Ok(FsSpace {
        total: u64::from(buf.f_blocks).saturating_mul(block),
        available: u64::from(buf.f_bavail).saturating_mul(block),
    })
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

/// The first bytes of SHA-256 over length and payload: a corrupt length is caught as
/// surely as a corrupt payload.
fn checksum(payload: &[u8]) -> [u8; 8] {
    let mut hash = Sha256::new();
    hash.update((payload.len() as u32).to_le_bytes());
    hash.update(payload);
    let mut sum = [0; 8];
    sum.copy_from_slice(&hash.finalize()[..8]);
    sum
}

fn encode(out: &mut Vec<u8>, payload: &[u8]) {
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&checksum(payload));
    out.extend_from_slice(payload);
}

/// The record in the frame at `pos` of a file whose frames end at `end`; `None` when the
/// frame is torn (runs past `end`) or corrupt. Never reads outside `pos..end`.
fn read_frame(file: &File, pos: u64, end: u64) -> io::Result<Option<Vec<u8>>> {
    let left = end.saturating_sub(pos);
    if left < FRAME_OVERHEAD {
        return Ok(None);
    }
    let mut head = [0; FRAME_OVERHEAD as usize];
    file.read_exact_at(&mut head, pos)?;
    let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
    if len > MAX_RECORD_BYTES || len as u64 > left - FRAME_OVERHEAD {
        return Ok(None);
    }
    let mut payload = vec![0; len];
    file.read_exact_at(&mut payload, pos + FRAME_OVERHEAD)?;
    Ok((checksum(&payload) == head[4..]).then_some(payload))
}

/// What recovery found in one segment file.
struct Scan {
    /// Where the valid frames end.
    end: u64,
    records: u64,
    /// A torn or corrupt frame, or a failed read, ended the valid part.
    bad: bool,
    error: Option<io::Error>,
}

/// Validates a segment file of `disk` bytes; `None` when it does not start with our header.
fn scan(file: &File, disk: u64) -> Option<Scan> {
    let mut header = [0; HEADER.len()];
    file.read_exact_at(&mut header, 0)
        .ok()
        .filter(|()| header == HEADER)?;
    let mut scan = Scan {
        end: HEADER_BYTES,
        records: 0,
        bad: false,
        error: None,
    };
    // Each round moves `end` forward by at least a frame head, or stops.
    while scan.end < disk {
        match read_frame(file, scan.end, disk) {
            Ok(Some(record)) => {
                scan.end += FRAME_OVERHEAD + record.len() as u64;
                scan.records += 1;
                continue;
            }
            Ok(None) => {}
            Err(e) => scan.error = Some(e),
        }
        scan.bad = true;
        break;
    }
    Some(scan)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Arc, Mutex};

    /// A fresh directory under the system temp dir, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(tag: &str) -> Self {
            static COUNTER: AtomicU64 = AtomicU64::new(0);
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let dir =
                std::env::temp_dir().join(format!("kte-spill-{}-{n}-{tag}", std::process::id()));
            let _ = fs::remove_dir_all(&dir);
            Self(dir)
        }

        fn file(&self, seq: u64) -> PathBuf {
            self.0.join(segment_name(seq))
        }

        /// The real size of everything in the directory.
        fn disk_total(&self) -> u64 {
            fs::read_dir(&self.0)
                .map(|entries| {
                    entries
                        .flatten()
                        .map(|e| e.metadata().map_or(0, |m| m.len()))
                        .sum()
                })
                .unwrap_or(0)
        }

        fn segment_files(&self) -> Vec<String> {
            let mut names: Vec<String> = fs::read_dir(&self.0)
                .map(|entries| {
                    entries
                        .flatten()
                        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
                        .filter_map(|e| e.file_name().into_string().ok())
                        .filter(|n| parse_segment_name(n).is_some())
                        .collect()
                })
                .unwrap_or_default();
            names.sort();
            names
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    const GIB: u64 = 1024 * 1024 * 1024;

    fn plenty() -> Probe {
        Box::new(|_: &Path| {
            Ok(FsSpace {
                total: 100 * GIB,
                available: 50 * GIB,
            })
        })
    }

    fn open(dir: &TempDir, max_bytes: u64) -> (Spill, Recovered) {
        match Spill::open_with(&dir.0, max_bytes, plenty()) {
            Ok(opened) => opened,
            Err(e) => panic!("open {}: {e}", dir.0.display()),
        }
    }

    /// `n` distinct records whose sizes vary from 0 to a few KB, some binary.
    fn records(n: usize, seed: u64) -> Vec<Vec<u8>> {
        let mut rng = Rng::seeded(seed);
        (0..n)
            .map(|i| {
                let mut r = format!("{{\"event\":{i}}}").into_bytes();
                let extra = rng.below(3000) as usize;
                r.extend((0..extra).map(|_| rng.next_u64() as u8));
                if i % 17 == 0 {
                    r.clear(); // empty records are records too
                }
                r
            })
            .collect()
    }

    fn append_all(spill: &mut Spill, records: &[Vec<u8>]) -> Appended {
        let refs: Vec<&[u8]> = records.iter().map(Vec::as_slice).collect();
        spill.append(&refs)
    }

    fn take_all(spill: &mut Spill) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        for _ in 0..100_000 {
            let taken = spill.take(7, 64 * 1024);
            assert!(taken.error.is_none(), "{:?}", taken.error);
            if taken.records.is_empty() {
                return out;
            }
            out.extend(taken.records);
        }
        panic!("take never ran dry");
    }

    /// A record of exactly `len` bytes of `byte`.
    fn fill(len: usize, byte: u8) -> Vec<u8> {
        vec![byte; len]
    }

    #[test]
    fn records_come_back_in_order_across_segments_byte_for_byte() {
        let dir = TempDir::new("fifo");
        let (mut spill, rec) = open(&dir, 1024 * 1024);
        assert_eq!(rec.records, 0);
        let input = records(600, 1);
        for chunk in input.chunks(50) {
            let done = append_all(&mut spill, chunk);
            assert_eq!(done.appended, chunk.len(), "{:?}", done.stopped);
        }
        assert!(dir.segment_files().len() >= 3, "{:?}", dir.segment_files());
        assert_eq!(spill.records(), 600);
        assert_eq!(spill.bytes(), dir.disk_total());
        assert_eq!(take_all(&mut spill), input);
        assert!(spill.is_empty());
        assert_eq!(
            (spill.bytes(), dir.disk_total()),
            (0, 0),
            "an empty store keeps no files"
        );
    }

    #[test]
    fn appends_and_takes_interleave_in_order() {
        let dir = TempDir::new("interleave");
        let (mut spill, _) = open(&dir, 1024 * 1024);
        let input = records(40, 2);
        let mut out = Vec::new();
        for pair in input.chunks(4) {
            assert_eq!(append_all(&mut spill, pair).appended, pair.len());
            out.extend(spill.take(3, usize::MAX).records);
        }
        out.extend(take_all(&mut spill));
        assert_eq!(out, input);
    }

    #[test]
    fn take_respects_max_records_and_about_max_bytes() {
        // (max_records, max_bytes, records taken) from ten 100-byte records.
        let cases = [
            (3, 10_000, 3),
            (10, 250, 2),
            (10, 200, 2),
            (10, 50, 1), // one record larger than max_bytes still comes out
            (0, 0, 1),   // zero limits cannot stall the store
            (500, usize::MAX, 10),
        ];
        for (max_records, max_bytes, want) in cases {
            let dir = TempDir::new("limits");
            let (mut spill, _) = open(&dir, 1024 * 1024);
            let input: Vec<Vec<u8>> = (0..10).map(|i| fill(100, i)).collect();
            append_all(&mut spill, &input);
            let taken = spill.take(max_records, max_bytes);
            assert_eq!(taken.records, input[..want], "{max_records} {max_bytes}");
            assert_eq!(spill.records(), 10 - want as u64);
            assert_eq!(take_all(&mut spill), input[want..]);
        }
    }

    #[test]
    fn appends_stop_exactly_at_the_cap_and_taking_gives_the_space_back() {
        // (cap, record size): small caps, a cap of several segments, odd sizes.
        let cases = [
            (1_000, 100),
            (100_000, 1_000),
            (300_000, 777),
            (70_000, 30_000),
        ];
        for (cap, size) in cases {
            let dir = TempDir::new("cap");
            let (mut spill, _) = open(&dir, cap);
            let mut stored = 0;
            for round in 0..10_000u32 {
                let record = fill(size, round as u8);
                let done = spill.append(&[&record]);
                assert!(
                    dir.disk_total() <= cap,
                    "cap {cap}: {} on disk",
                    dir.disk_total()
                );
                if done.appended == 0 {
                    assert!(
                        matches!(done.stopped, Some(Refused::Full)),
                        "{:?}",
                        done.stopped
                    );
                    break;
                }
                stored += 1;
            }
            let frame = FRAME_OVERHEAD + size as u64;
            let left = cap - dir.disk_total();
            assert!(
                left < frame + HEADER_BYTES,
                "cap {cap}: {left} bytes unused"
            );
            assert_eq!(spill.bytes(), dir.disk_total());
            assert_eq!(take_all(&mut spill).len(), stored);
            assert_eq!(dir.disk_total(), 0, "cap {cap}: segments deleted");
            let again: Vec<Vec<u8>> = (0..stored).map(|i| fill(size, i as u8)).collect();
            assert_eq!(append_all(&mut spill, &again).appended, stored, "cap {cap}");
        }
    }

    #[test]
    fn a_cap_that_fits_three_records_exactly_takes_three() {
        let dir = TempDir::new("exact");
        let (mut spill, _) = open(&dir, HEADER_BYTES + 3 * (FRAME_OVERHEAD + 100));
        let input: Vec<Vec<u8>> = (0..4).map(|i| fill(100, i)).collect();
        let done = append_all(&mut spill, &input);
        assert_eq!(done.appended, 3);
        assert!(matches!(done.stopped, Some(Refused::Full)));
        assert_eq!(dir.disk_total(), spill.max_bytes);
        // Not even an empty record fits now, nor a record that never could.
        assert_eq!(spill.append(&[b""]).appended, 0);
        assert_eq!(take_all(&mut spill), input[..3]);
    }

    #[test]
    fn fully_taken_segments_are_deleted_while_the_rest_stays() {
        let dir = TempDir::new("reclaim");
        let cap = 1024 * 1024; // 256 KiB segments
        let (mut spill, _) = open(&dir, cap);
        let input: Vec<Vec<u8>> = (0..100).map(|i| fill(10_000, i)).collect();
        append_all(&mut spill, &input);
        let before = dir.segment_files();
        assert_eq!(before.len(), 4, "{before:?}");
        let per_segment =
            ((segment_bytes(cap) - HEADER_BYTES) / (FRAME_OVERHEAD + 10_000)) as usize;
        let taken = spill.take(per_segment + 1, usize::MAX);
        assert_eq!(taken.records, input[..per_segment + 1]);
        assert_eq!(
            dir.segment_files(),
            before[1..],
            "the first segment is gone"
        );
        assert_eq!(spill.bytes(), dir.disk_total());
    }

    #[test]
    fn a_record_larger_than_the_limit_is_refused_with_its_size() {
        let dir = TempDir::new("large");
        let (mut spill, _) = open(&dir, 64 * 1024 * 1024);
        let big = fill(MAX_RECORD_BYTES + 1, 1);
        let done = spill.append(&[b"ok", &big, b"after"]);
        assert_eq!(done.appended, 1);
        assert!(matches!(done.stopped, Some(Refused::TooLarge { bytes }) if bytes == big.len()));
        assert_eq!(take_all(&mut spill), [b"ok".to_vec()]);
    }

    /// A probe reporting `available` bytes free on a 1,000 MiB filesystem (reserve 100 MiB),
    /// or an error when it is `None`.
    fn scripted(available: Arc<Mutex<Option<u64>>>) -> Probe {
        Box::new(
            move |_: &Path| match *available.lock().unwrap_or_else(|e| e.into_inner()) {
                Some(available) => Ok(FsSpace {
                    total: 1000 * 1024 * 1024,
                    available,
                }),
                None => Err(io::Error::other("scripted failure")),
            },
        )
    }

    #[test]
    fn low_free_space_refuses_the_write_that_would_eat_the_reserve() {
        let dir = TempDir::new("lowspace");
        let reserve = 100 * 1024 * 1024;
        let available = Arc::new(Mutex::new(Some(reserve + 400)));
        let (mut spill, _) =
            Spill::open_with(&dir.0, 1024 * 1024, scripted(available.clone())).unwrap();
        let input: Vec<Vec<u8>> = (0..10).map(|i| fill(100, i)).collect();
        // 400 bytes of room: a header and three 112-byte frames; the fourth would cross.
        let done = append_all(&mut spill, &input);
        assert_eq!(done.appended, 3);
        assert!(
            matches!(done.stopped, Some(Refused::LowSpace { room }) if room < 112),
            "{:?}",
            done.stopped
        );

        *available.lock().unwrap() = Some(reserve - 1);
        let done = append_all(&mut spill, &input);
        assert_eq!(done.appended, 0);
        assert!(matches!(done.stopped, Some(Refused::LowSpace { room: 0 })));

        *available.lock().unwrap() = None;
        let done = append_all(&mut spill, &input);
        assert_eq!(done.appended, 0);
        let Some(Refused::Error(e)) = done.stopped else {
            panic!("{:?}", done.stopped)
        };
        assert!(e.to_string().contains("check free space of"), "{e}");

        assert_eq!(take_all(&mut spill), input[..3]);
        assert_eq!(dir.disk_total(), 0);
        // No room at all: nothing is created.
        *available.lock().unwrap() = Some(0);
        assert_eq!(append_all(&mut spill, &input).appended, 0);
        assert!(dir.segment_files().is_empty());
    }

    #[test]
    fn reserve_is_a_tenth_of_the_filesystem_at_least_32_mib() {
        const MIB: u64 = 1024 * 1024;
        // (total, available, writable room)
        let cases = [
            (512 * MIB, 512 * MIB, 512 * MIB - 512 * MIB / 10),
            (10 * 1024 * MIB, 2 * 1024 * MIB, 2 * 1024 * MIB - 1024 * MIB),
            (100 * MIB, 100 * MIB, 68 * MIB), // the 32 MiB floor
            (512 * MIB, 40 * MIB, 0),         // below the reserve already
            (0, 0, 0),
        ];
        for (total, available, room) in cases {
            assert_eq!(
                writable_room(FsSpace { total, available }),
                room,
                "{total} {available}"
            );
        }
    }

    #[test]
    fn segment_size_is_a_quarter_of_the_cap_within_bounds() {
        let cases = [
            (0, MIN_SEGMENT_BYTES),
            (100_000, MIN_SEGMENT_BYTES),
            (1024 * 1024, 256 * 1024),
            (16 * 1024 * 1024, MAX_SEGMENT_BYTES),
            (u64::MAX, MAX_SEGMENT_BYTES),
        ];
        for (cap, want) in cases {
            assert_eq!(segment_bytes(cap), want, "{cap}");
        }
    }

    #[test]
    fn only_exact_segment_names_are_ours() {
        let cases = [
            ("spill-00000000000000000000.seg", Some(0)),
            ("spill-00000000000000000042.seg", Some(42)),
            ("spill-18446744073709551615.seg", Some(u64::MAX)),
            ("spill-99999999999999999999.seg", None), // overflows u64
            ("spill-0000000000000000042.seg", None),  // 19 digits
            ("spill-+0000000000000000042.seg", None),
            ("spill-00000000000000000042.seg.tmp", None),
            ("notes.txt", None),
            ("", None),
        ];
        for (name, want) in cases {
            assert_eq!(parse_segment_name(name), want, "{name}");
        }
        assert_eq!(parse_segment_name(&segment_name(7)), Some(7));
    }

    #[test]
    fn a_new_process_adopts_old_segments_first_and_never_overwrites_them() {
        let dir = TempDir::new("reopen");
        let input = records(300, 3);
        let (mut first, _) = open(&dir, 1024 * 1024);
        append_all(&mut first, &input[..200]);
        let files = dir.segment_files();
        drop(first);

        let (mut second, rec) = open(&dir, 1024 * 1024);
        assert_eq!(rec.records, 200);
        assert_eq!(rec.segments, files.len() as u64);
        assert_eq!(rec.bytes, dir.disk_total());
        assert_eq!(
            (
                rec.corrupt_records_skipped,
                rec.bad_segments,
                rec.foreign_files
            ),
            (0, 0, 0)
        );
        append_all(&mut second, &input[200..]);
        let now = dir.segment_files();
        assert_eq!(now[..files.len()], files, "old segments untouched");
        assert!(now.len() > files.len());
        assert_eq!(take_all(&mut second), input);
    }

    #[test]
    fn after_a_crash_mid_segment_its_taken_records_are_sent_again() {
        let dir = TempDir::new("atleastonce");
        let input: Vec<Vec<u8>> = (0..10).map(|i| fill(50, i)).collect();
        let (mut first, _) = open(&dir, 1024 * 1024);
        append_all(&mut first, &input);
        assert_eq!(first.take(4, usize::MAX).records, input[..4]);
        drop(first); // the crash: the read position is not kept
        let (mut second, rec) = open(&dir, 1024 * 1024);
        assert_eq!(rec.records, 10);
        assert_eq!(take_all(&mut second), input);
    }

    /// Ten 20-byte records in one segment file (seq 0); returns its bytes.
    fn ten_record_segment(dir: &TempDir) -> Vec<u8> {
        let (mut spill, _) = open(dir, 1024 * 1024);
        let input: Vec<Vec<u8>> = (0..10).map(|i| fill(20, i)).collect();
        append_all(&mut spill, &input);
        drop(spill);
        fs::read(dir.file(0)).unwrap()
    }

    const FRAME: usize = FRAME_OVERHEAD as usize + 20;
    const HEAD: usize = HEADER_BYTES as usize;

    #[test]
    fn a_torn_tail_keeps_the_records_before_it() {
        // (bytes cut off the end, records recovered, corrupt counted)
        let cases = [
            (0, 10, 0),
            (1, 9, 1),
            (5, 9, 1),
            (FRAME - 1, 9, 1), // only the last frame's first byte is left
            (FRAME, 9, 0),     // a clean cut between frames is not corruption
            (FRAME + 3, 8, 1),
            (10 * FRAME, 0, 0), // just the header left: empty, deleted
        ];
        for (cut, want, corrupt) in cases {
            let dir = TempDir::new("torn");
            let bytes = ten_record_segment(&dir);
            fs::write(dir.file(0), &bytes[..bytes.len() - cut]).unwrap();
            let (mut spill, rec) = open(&dir, 1024 * 1024);
            assert_eq!(
                (rec.records, rec.corrupt_records_skipped),
                (want, corrupt),
                "cut {cut}"
            );
            let out = take_all(&mut spill);
            let expected: Vec<Vec<u8>> = (0..want as u8).map(|i| fill(20, i)).collect();
            assert_eq!(out, expected, "cut {cut}");
            assert_eq!(spill.corrupt_skipped(), corrupt);
            assert_eq!(dir.disk_total(), 0, "cut {cut}: taken and deleted");
        }
    }

    #[test]
    fn a_flipped_byte_skips_the_rest_of_its_segment_and_is_counted() {
        // (offset of the flipped byte, records recovered, corrupt, bad segments)
        let cases = [
            (HEAD + 4 * FRAME + 15, 4, 1, 0), // in record 4's payload
            (HEAD + 4 * FRAME, 4, 1, 0),      // in record 4's length
            (HEAD + 4 * FRAME + 6, 4, 1, 0),  // in record 4's checksum
            (HEAD, 0, 1, 0),                  // in the first record: nothing left, deleted
            (2, 0, 0, 1),                     // in the magic: not a segment
            (9, 0, 0, 1),                     // in the version
        ];
        for (offset, want, corrupt, bad) in cases {
            let dir = TempDir::new("flip");
            let mut bytes = ten_record_segment(&dir);
            bytes[offset] ^= 0x40;
            fs::write(dir.file(0), &bytes).unwrap();
            let (mut spill, rec) = open(&dir, 1024 * 1024);
            let got = (rec.records, rec.corrupt_records_skipped, rec.bad_segments);
            assert_eq!(got, (want, corrupt, bad), "offset {offset}");
            let expected: Vec<Vec<u8>> = (0..want as u8).map(|i| fill(20, i)).collect();
            assert_eq!(take_all(&mut spill), expected, "offset {offset}");
            assert!(dir.segment_files().is_empty(), "offset {offset}");
        }
    }

    #[test]
    fn junk_in_the_directory_is_counted_and_never_parsed() {
        let dir = TempDir::new("junk");
        let bytes = ten_record_segment(&dir);
        fs::write(dir.file(5), &bytes).unwrap(); // a second good segment
        fs::write(dir.file(2), b"not a segment at all, just text").unwrap();
        fs::write(dir.file(3), b"").unwrap(); // a crash right after creating it
        fs::write(dir.0.join("notes.txt"), b"hello").unwrap();
        fs::create_dir(dir.0.join(segment_name(4))).unwrap();

        let (mut spill, rec) = open(&dir, 1024 * 1024);
        assert_eq!((rec.records, rec.segments), (20, 2));
        assert_eq!((rec.bad_segments, rec.foreign_files), (2, 2));
        assert!(rec.problems.is_empty(), "{:?}", rec.problems);
        assert!(
            !dir.file(2).exists() && !dir.file(3).exists(),
            "bad segments deleted"
        );
        assert!(dir.0.join("notes.txt").exists(), "foreign files left alone");
        assert_eq!(take_all(&mut spill).len(), 20);
        // A new segment comes after the highest name seen.
        spill.append(&[b"new"]);
        assert_eq!(dir.segment_files(), [segment_name(6)]);
    }

    #[test]
    fn random_corruption_never_panics_loops_or_invents_records() {
        let dir = TempDir::new("fuzz");
        let good = ten_record_segment(&dir);
        let originals: Vec<Vec<u8>> = (0..10).map(|i| fill(20, i)).collect();
        let mut rng = Rng::seeded(42);
        let (mut whole, mut partial) = (0, 0);
        for round in 0..300 {
            let mut bytes = good.clone();
            for _ in 0..=rng.below(4) {
                let at = rng.below(bytes.len() as u64 + 1) as usize;
                match rng.below(5) {
                    0 if at < bytes.len() => bytes[at] ^= 1 << rng.below(8),
                    1 => bytes.truncate(at),
                    2 => bytes.extend((0..rng.below(64)).map(|_| rng.next_u64() as u8)),
                    3 if at + 4 <= bytes.len() => {
                        // a plausible or huge length field
                        let len = [rng.below(40) as u32, u32::MAX, 1 << 30][rng.below(3) as usize];
                        bytes[at..at + 4].copy_from_slice(&len.to_le_bytes());
                    }
                    _ => bytes.insert(at.min(bytes.len()), rng.next_u64() as u8),
                }
            }
            fs::write(dir.file(0), &bytes).unwrap();
            let (mut spill, rec) = open(&dir, 1024 * 1024);
            assert!(rec.records <= 10, "round {round}");
            let out = take_all(&mut spill);
            assert_eq!(out.len() as u64, rec.records, "round {round}");
            assert_eq!(
                out,
                originals[..out.len()],
                "round {round}: a prefix, in order"
            );
            assert!(
                spill.is_empty() && dir.segment_files().is_empty(),
                "round {round}"
            );
            match out.len() {
                10 => whole += 1,
                _ => partial += 1,
            }
        }
        assert!(
            whole > 10 && partial > 100,
            "{whole} intact, {partial} damaged"
        );
    }

    #[test]
    fn corruption_found_while_taking_counts_the_records_lost() {
        let dir = TempDir::new("latecorrupt");
        let (mut spill, _) = open(&dir, 1024 * 1024);
        let input: Vec<Vec<u8>> = (0..10).map(|i| fill(20, i)).collect();
        append_all(&mut spill, &input);
        let mut bytes = fs::read(dir.file(0)).unwrap();
        bytes[HEAD + 4 * FRAME + 15] ^= 1;
        fs::write(dir.file(0), &bytes).unwrap();
        assert_eq!(take_all(&mut spill), input[..4]);
        assert_eq!(spill.corrupt_skipped(), 6, "records 4..10 are lost");
        assert!(spill.is_empty());
        assert_eq!(dir.disk_total(), 0);
    }

    #[test]
    fn the_first_limit_a_record_breaks_is_reported() {
        // (record bytes, bytes needed, used, cap, room above the reserve)
        let too_large = MAX_RECORD_BYTES + 1;
        let cases = [
            ((100, 112, 0, 1000, 1000), "None"),
            ((100, 112, 888, 1000, 112), "None"), // both limits met exactly
            ((100, 112, 889, 1000, 1000), "Some(Full)"),
            ((100, 112, 0, 1000, 111), "Some(LowSpace { room: 111 })"),
            ((100, 112, 889, 1000, 0), "Some(Full)"), // the cap is checked first
            (
                (too_large, 1 << 30, 0, 1 << 40, 1 << 40),
                "Some(TooLarge { bytes: 16777217 })",
            ),
            ((0, 12, u64::MAX - 5, u64::MAX, 100), "Some(Full)"), // no overflow
        ];
        for ((len, need, used, cap, room), want) in cases {
            let got = format!("{:?}", refusal(len, need, used, cap, room));
            assert_eq!(got, want, "{len} {need} {used} {cap} {room}");
        }
    }

    #[test]
    fn a_segment_that_cannot_be_deleted_is_reported_counted_and_retried() {
        let dir = TempDir::new("undeletable");
        let cap = 1024 * 1024;
        let (mut spill, _) = open(&dir, cap);
        let input: Vec<Vec<u8>> = (0..40).map(|i| fill(10_000, i)).collect();
        append_all(&mut spill, &input);
        assert_eq!(spill.take(1, usize::MAX).records, input[..1]); // the reader holds it open
                                                                   // A directory in the file's place: reading goes on, deleting fails.
        fs::remove_file(dir.file(0)).unwrap();
        fs::create_dir(dir.file(0)).unwrap();
        fs::write(dir.file(0).join("x"), b"x").unwrap();
        let before = spill.bytes();
        let per_segment =
            ((segment_bytes(cap) - HEADER_BYTES) / (FRAME_OVERHEAD + 10_000)) as usize;
        let taken = spill.take(per_segment, usize::MAX);
        assert_eq!(taken.records, input[1..per_segment + 1]);
        let Some(e) = taken.error else {
            panic!("no error reported")
        };
        let message = e.to_string();
        assert!(
            message.contains("cannot remove") && message.contains(&segment_name(0)),
            "{message}"
        );
        assert_eq!(spill.bytes(), before, "still counted against the cap");

        fs::remove_dir_all(dir.file(0)).unwrap();
        let taken = spill.take(1, usize::MAX);
        assert!(taken.error.is_none());
        assert!(spill.bytes() < before, "given back once it is gone");
        assert_eq!(spill.bytes(), dir.disk_total());
    }

    #[test]
    fn opening_a_path_that_is_not_a_directory_names_it_and_the_setting() {
        let dir = TempDir::new("notdir");
        fs::create_dir_all(&dir.0).unwrap();
        let file = dir.0.join("file");
        fs::write(&file, b"x").unwrap();
        for (path, want) in [
            (file.clone(), "is not a directory"),
            (file.join("sub"), "cannot create"),
        ] {
            let Err(e) = Spill::open_with(&path, 1024, plenty()) else {
                panic!("opened {}", path.display())
            };
            let message = e.to_string();
            assert!(message.contains(want), "{message}");
            assert!(message.contains(&path.display().to_string()), "{message}");
            assert!(message.contains(SETTING), "{message}");
        }
    }

    #[test]
    fn statvfs_reads_plausible_numbers_for_tmp() {
        let space = statvfs(&std::env::temp_dir()).unwrap();
        assert!(space.total > 0);
        assert!(space.available <= space.total);
        let missing = statvfs(Path::new("/nonexistent/kte-spill"));
        assert_eq!(
            missing.map_err(|e| e.kind()).err(),
            Some(io::ErrorKind::NotFound)
        );
    }
}
