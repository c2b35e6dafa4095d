//! The spill file's on-disk format: a segment header, then frames of length (u32 LE),
//! truncated checksum (8 bytes of SHA-256 over length and payload) and payload; segment file
//! names; and the scan that finds where a segment's valid frames end.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use sha2::{Digest, Sha256};

/// Every segment starts so: magic, then format version 1 (u32 LE). Anything else is not
/// parsed.
pub const HEADER: [u8; 12] = *b"KTESPILL\x01\0\0\0";
pub const HEADER_BYTES: u64 = HEADER.len() as u64;
/// Length (4 bytes) and truncated checksum (8 bytes) before each payload.
pub const FRAME_OVERHEAD: u64 = 12;
/// Largest record stored. A Kinesis record is at most 10 MiB; a length field above this is
/// corruption, so no read allocates more.
pub const MAX_RECORD_BYTES: usize = 16 * 1024 * 1024;

pub fn segment_name(seq: u64) -> String {
    format!("spill-{seq:020}.seg")
}

/// The sequence number in a segment's file name; `None` for any other name.
pub fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("spill-")?.strip_suffix(".seg")?;
    let exact = digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit());
    exact.then(|| digits.parse().ok()).flatten()
}

/// The first bytes of SHA-256 over length and payload: a corrupt length is caught as
/// surely as a corrupt payload.
pub fn checksum(payload: &[u8]) -> [u8; 8] {
    let mut hash = Sha256::new();
    hash.update((payload.len() as u32).to_le_bytes());
    hash.update(payload);
    let mut sum = [0; 8];
    sum.copy_from_slice(&hash.finalize()[..8]);
    sum
}

pub fn encode(out: &mut Vec<u8>, payload: &[u8]) {
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&checksum(payload));
    out.extend_from_slice(payload);
}

/// The record in the frame at `pos` of a file whose frames end at `end`; `None` when the
/// frame is torn (runs past `end`) or corrupt. Never reads outside `pos..end`.
pub fn read_frame(file: &File, pos: u64, end: u64) -> io::Result<Option<Vec<u8>>> {
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
pub struct Scan {
    /// Where the valid frames end.
    pub end: u64,
    pub records: u64,
    /// A torn or corrupt frame, or a failed read, ended the valid part.
    pub bad: bool,
    pub error: Option<io::Error>,
}

/// Validates a segment file of `disk` bytes; `None` when it does not start with our header.
pub fn scan(file: &File, disk: u64) -> Option<Scan> {
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
