//! The spill file's on-disk format, version 2, and the walk that finds its intact frames
//! however the bytes around them were damaged.
//!
//! A segment is [`HEADER`] (`KTESPILL`, then the version as a u32 LE), then frames:
//!
//! ```text
//!  offset  bytes  field
//!       0      4  mark      F5 6B 74 65 ("\xF5kte"): where a frame may start
//!       4      4  index     the frame's number in its segment: 0, 1, 2... (u32 LE)
//!       8      4  len       payload bytes (u32 LE), at most MAX_RECORD_BYTES
//!      12      4  head sum  SHA-256(index ++ len), first 4 bytes
//!      16      8  body sum  SHA-256(index ++ len ++ payload), first 8 bytes
//!      24    len  payload
//! ```
//!
//! Why each field: the mark lets a reader find the next frame after damage without hashing
//! at every byte (0xF5 never occurs in UTF-8 text, so a JSON payload cannot imitate it; a
//! binary payload only costs a hash). The head sum makes the length trustworthy on its own,
//! so a frame whose payload is damaged is skipped whole and counted as one record. The
//! index says how many records a damaged stretch held: the next intact frame's index minus
//! the one expected. The body sum covers index and length too, so a frame is only accepted
//! as the very bytes written at that place in the sequence.
//!
//! Invariants of [`next_frame`]: it never reads outside `pos..end`, never holds more than
//! one payload plus a [`SCAN_CHUNK`] window, moves forward on every step, and accepts a
//! frame only when mark, head sum and body sum all hold and its index is at least the one
//! asked for: what it yields was written, in order, at most once.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use sha2::{Digest, Sha256};

/// Every segment starts so: magic, then the format version (u32 LE). A file that does not
/// is still searched for frames (a damaged header loses nothing by itself).
pub const HEADER: [u8; 12] = *b"KTESPILL\x02\0\0\0";
pub const HEADER_BYTES: u64 = HEADER.len() as u64;
/// The four bytes that open every frame.
pub const MARK: [u8; 4] = *b"\xF5kte";
/// Mark, index, length and both sums before each payload.
pub const FRAME_OVERHEAD: u64 = 24;
const HEAD: usize = FRAME_OVERHEAD as usize;
/// Largest record stored. A Kinesis record is at most 10 MiB; a length field above this is
/// corruption, so no read allocates more.
pub const MAX_RECORD_BYTES: usize = 16 * 1024 * 1024;
/// How much is read at once while walking a segment (and kept between two takes).
pub const SCAN_CHUNK: usize = 64 * 1024;

pub fn segment_name(seq: u64) -> String {
    format!("spill-{seq:020}.seg")
}

/// The sequence number in a segment's file name; `None` for any other name.
pub fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("spill-")?.strip_suffix(".seg")?;
    let exact = digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit());
    exact.then(|| digits.parse().ok()).flatten()
}

fn head_sum(index: u32, len: u32) -> [u8; 4] {
    let mut hash = Sha256::new();
    hash.update(index.to_le_bytes());
    hash.update(len.to_le_bytes());
    let mut sum = [0; 4];
    sum.copy_from_slice(&hash.finalize()[..4]);
    sum
}

fn body_sum(index: u32, payload: &[u8]) -> [u8; 8] {
    let mut hash = Sha256::new();
    hash.update(index.to_le_bytes());
    hash.update((payload.len() as u32).to_le_bytes());
    hash.update(payload);
    let mut sum = [0; 8];
    sum.copy_from_slice(&hash.finalize()[..8]);
    sum
}

/// Appends frame number `index` holding `payload` (at most [`MAX_RECORD_BYTES`]: the
/// caller refuses larger ones).
pub fn encode(out: &mut Vec<u8>, index: u32, payload: &[u8]) {
    let len = payload.len() as u32;
    out.extend_from_slice(&MARK);
    out.extend_from_slice(&index.to_le_bytes());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&head_sum(index, len));
    out.extend_from_slice(&body_sum(index, payload));
    out.extend_from_slice(payload);
}

/// The index and length of a frame head whose mark and head sum hold.
fn parse_head(head: &[u8]) -> Option<(u32, u32)> {
    let word = |at: usize| u32::from_le_bytes([head[at], head[at + 1], head[at + 2], head[at + 3]]);
    let (index, len) = (word(4), word(8));
    (head[..4] == MARK && head[12..16] == head_sum(index, len)).then_some((index, len))
}

/// Bytes readable at an offset: a segment file, or a slice in tests and fuzzing.
pub trait FrameSource {
    fn read_exact_at(&self, buf: &mut [u8], pos: u64) -> io::Result<()>;
}

impl FrameSource for File {
    fn read_exact_at(&self, buf: &mut [u8], pos: u64) -> io::Result<()> {
        FileExt::read_exact_at(self, buf, pos)
    }
}

impl FrameSource for &[u8] {
    fn read_exact_at(&self, buf: &mut [u8], pos: u64) -> io::Result<()> {
        let at = usize::try_from(pos).ok();
        let range = at.and_then(|at| Some(at..at.checked_add(buf.len())?));
        match range.and_then(|r| self.get(r)) {
            Some(bytes) => {
                buf.copy_from_slice(bytes);
                Ok(())
            }
            None => Err(io::ErrorKind::UnexpectedEof.into()),
        }
    }
}

/// A [`FrameSource`] read through a window of [`SCAN_CHUNK`] bytes: a walk reads each byte about
/// once, and consecutive takes from a segment share one read.
pub struct FrameReader<S> {
    src: S,
    buf: Vec<u8>,
    start: u64,
}

impl<S: FrameSource> FrameReader<S> {
    pub fn new(src: S) -> Self {
        FrameReader {
            src,
            buf: Vec::new(),
            start: 0,
        }
    }

    /// The `len` bytes at `pos`; the caller keeps `pos + len` within the segment's `end`.
    fn bytes(&mut self, pos: u64, len: usize, end: u64) -> io::Result<&[u8]> {
        let cached = pos >= self.start && pos + len as u64 <= self.start + self.buf.len() as u64;
        if !cached {
            let want = end.saturating_sub(pos).min(SCAN_CHUNK.max(len) as u64) as usize;
            self.buf.clear();
            self.buf.resize(want.max(len), 0);
            if let Err(e) = self.src.read_exact_at(&mut self.buf, pos) {
                self.buf.clear();
                return Err(e);
            }
            self.start = pos;
        }
        let at = (pos - self.start) as usize;
        Ok(&self.buf[at..at + len])
    }

    /// A payload: through the window when it fits, else read on its own (not kept).
    fn payload(&mut self, pos: u64, len: usize, end: u64) -> io::Result<Vec<u8>> {
        if len <= SCAN_CHUNK {
            return self.bytes(pos, len, end).map(<[u8]>::to_vec);
        }
        let mut payload = vec![0; len];
        self.src.read_exact_at(&mut payload, pos)?;
        Ok(payload)
    }

    /// Where the next mark at or after `from` starts, if one does before `end`.
    fn find_mark(&mut self, mut from: u64, end: u64) -> io::Result<Option<u64>> {
        while end.saturating_sub(from) >= MARK.len() as u64 {
            let n = end.saturating_sub(from).min(SCAN_CHUNK as u64) as usize;
            let window = self.bytes(from, n, end)?;
            if let Some(i) = window.windows(MARK.len()).position(|w| w == MARK) {
                return Ok(Some(from + i as u64));
            }
            // The last three bytes may open a mark that the next window completes.
            from += (n - (MARK.len() - 1)) as u64;
        }
        Ok(None)
    }
}

/// An intact frame.
#[derive(Debug, PartialEq, Eq)]
pub struct Frame {
    pub index: u32,
    /// Where the frame starts and where it ends (the next one may start there).
    pub at: u64,
    pub end: u64,
    pub payload: Vec<u8>,
}

/// What lies ahead of a position in a segment.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Next {
    /// The next intact frame; `None`: there is none before the end.
    pub frame: Option<Frame>,
    /// Damaged bytes were passed over to get there.
    pub skipped: bool,
    /// The highest index among the frames passed over whose head was intact (their payload
    /// was damaged or cut off): they held records, lost.
    pub damaged_index: Option<u32>,
}

/// The next intact frame in `pos..end` whose index is at least `min_index`, and what was
/// passed over to reach it (see the module docs).
pub fn next_frame<S: FrameSource>(
    r: &mut FrameReader<S>,
    mut pos: u64,
    end: u64,
    mut min_index: u64,
) -> io::Result<Next> {
    let mut next = Next::default();
    while end.saturating_sub(pos) >= FRAME_OVERHEAD {
        let head = r.bytes(pos, HEAD, end)?;
        if let Some((index, len)) = parse_head(head).filter(|(i, _)| u64::from(*i) >= min_index) {
            let frame_end = pos + FRAME_OVERHEAD + u64::from(len);
            let mut sum = [0; 8];
            sum.copy_from_slice(&head[16..HEAD]);
            if len as usize <= MAX_RECORD_BYTES && frame_end <= end {
                let payload = r.payload(pos + FRAME_OVERHEAD, len as usize, end)?;
                if body_sum(index, &payload) == sum {
                    next.frame = Some(Frame {
                        index,
                        at: pos,
                        end: frame_end,
                        payload,
                    });
                    return Ok(next);
                }
                // The head is intact, so its length is: the frame is skipped whole.
                next.skipped = true;
                next.damaged_index = next.damaged_index.max(Some(index));
                pos = frame_end;
                min_index = u64::from(index) + 1;
                continue;
            }
            // It runs past the end: torn by a crash mid-write (or its length is damaged
            // in a way the head sum missed): search on from the next byte.
            next.damaged_index = next.damaged_index.max(Some(index));
        }
        next.skipped = true;
        pos = r.find_mark(pos + 1, end)?.unwrap_or(end);
    }
    next.skipped |= pos < end;
    Ok(next)
}

/// Records lost between the frame expected next (`expected`, found at `from`) and what
/// `next` found: the index gap, or at the end the highest damaged head seen, or one for a
/// damaged tail with no head left. Bounded by what the passed-over bytes could have held,
/// so an index that only looks intact cannot claim billions.
pub fn lost(expected: u64, from: u64, end: u64, next: &Next) -> u64 {
    let (gap, upto) = match (&next.frame, next.damaged_index) {
        (Some(f), _) => (u64::from(f.index).saturating_sub(expected), f.at),
        (None, Some(d)) => ((u64::from(d) + 1).saturating_sub(expected), end),
        (None, None) => (u64::from(next.skipped), end),
    };
    gap.min(upto.saturating_sub(from) / FRAME_OVERHEAD + 1)
}

/// What a walk over one segment found.
#[derive(Debug, Default)]
pub struct Scan {
    /// The file starts with [`HEADER`].
    pub header_ok: bool,
    pub records: u64,
    /// Records known lost in damaged parts (see [`lost`]).
    pub lost: u64,
    /// Damaged places: a bad header, each stretch of damage between frames, a damaged tail.
    pub damaged: u64,
    /// A read failed: the rest of the file was not looked at.
    pub error: Option<io::Error>,
}

impl Scan {
    /// Nothing in the file looks like our data (no header, no frame, no frame head): a
    /// file that is not a segment, rather than a damaged one.
    pub fn is_foreign(&self) -> bool {
        !self.header_ok && self.records == 0 && self.lost == 0
    }
}

/// Walks a whole segment of `disk` bytes, handing each intact frame to `each`.
pub fn scan<S: FrameSource>(
    r: &mut FrameReader<S>,
    disk: u64,
    mut each: impl FnMut(Frame),
) -> Scan {
    let mut scan = Scan::default();
    let mut header = [0; HEADER.len()];
    scan.header_ok =
        disk >= HEADER_BYTES && r.src.read_exact_at(&mut header, 0).is_ok() && header == HEADER;
    if !scan.header_ok && disk > 0 {
        scan.damaged += 1;
    }
    let (mut pos, mut expected) = (HEADER_BYTES, 0);
    loop {
        let next = match next_frame(r, pos, disk, expected) {
            Ok(next) => next,
            Err(e) => {
                scan.damaged += 1;
                scan.error = Some(e);
                return scan;
            }
        };
        let lost = lost(expected, pos, disk, &next);
        // Without a header or an intact frame, a bare tail is not evidence of a record.
        let evidence = next.frame.is_some() || next.damaged_index.is_some();
        let lost = if scan.header_ok || scan.records > 0 || evidence {
            lost
        } else {
            0
        };
        scan.lost += lost;
        scan.damaged += u64::from(next.skipped);
        let Some(frame) = next.frame else {
            return scan;
        };
        scan.records += 1;
        pos = frame.end;
        expected = u64::from(frame.index) + 1;
        each(frame);
    }
}

/// Recovery over a segment held in memory: the records found, oldest first, and the scan.
pub fn recover(bytes: &[u8]) -> (Vec<Frame>, Scan) {
    let mut frames = Vec::new();
    let scan = scan(&mut FrameReader::new(bytes), bytes.len() as u64, |f| {
        frames.push(f)
    });
    (frames, scan)
}

/// A whole segment holding `records` in order.
pub fn segment(records: &[&[u8]]) -> Vec<u8> {
    let mut out = HEADER.to_vec();
    for (index, r) in records.iter().enumerate() {
        encode(&mut out, index as u32, r);
    }
    out
}

/// The fuzzing entry point (see `fuzzing`): `data` read as a segment may yield only
/// frames that are really there, in increasing index order, and never panics; `data` cut
/// into records comes back whole through a segment.
pub fn fuzz(data: &[u8]) {
    let (frames, scan) = recover(data);
    let mut last = None;
    for f in &frames {
        let mut again = Vec::new();
        encode(&mut again, f.index, &f.payload);
        assert_eq!(data.get(f.at as usize..f.end as usize), Some(&again[..]));
        assert!(last < Some(f.index), "indices only grow");
        last = Some(f.index);
    }
    assert_eq!(scan.records, frames.len() as u64);

    // The first byte of each record gives its length (mod 64).
    let mut records = Vec::new();
    let mut rest = data;
    while let Some((&n, tail)) = rest.split_first() {
        let (record, tail) = tail.split_at((n as usize % 64).min(tail.len()));
        records.push(record);
        rest = tail;
    }
    let (frames, scan) = recover(&segment(&records));
    let back: Vec<&[u8]> = frames.iter().map(|f| f.payload.as_slice()).collect();
    assert_eq!(back, records);
    assert_eq!((scan.lost, scan.damaged), (0, 0));
}
