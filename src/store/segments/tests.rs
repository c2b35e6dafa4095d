use super::space::FsSpace;
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
        let dir = std::env::temp_dir().join(format!("kte-spill-{}-{n}-{tag}", std::process::id()));
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

    /// The size of the segment files (regular files with a segment's name).
    fn segments_total(&self) -> u64 {
        let sizes = self.segment_files().into_iter();
        sizes
            .map(|n| fs::metadata(self.0.join(n)).map_or(0, |m| m.len()))
            .sum()
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
    let per_segment = ((segment_bytes(cap) - HEADER_BYTES) / (FRAME_OVERHEAD + 10_000)) as usize;
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
    // 400 bytes of room: a header and three 124-byte frames; the fourth would cross.
    let done = append_all(&mut spill, &input);
    assert_eq!(done.appended, 3);
    assert!(
        matches!(done.stopped, Some(Refused::LowSpace { room }) if room < FRAME_OVERHEAD + 100),
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
            rec.lost,
            rec.damaged,
            rec.bad_segments,
            rec.not_ours,
            rec.foreign_files
        ),
        (0, 0, 0, 0, 0)
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
    // (bytes cut off the end, records recovered, records counted lost)
    let cases = [
        (0, 10, 0),
        (1, 9, 1),
        (5, 9, 1),
        (FRAME - 1, 9, 1), // only the last frame's first byte is left
        (FRAME, 9, 0),     // a clean cut between frames is not corruption
        (FRAME + 3, 8, 1),
        (10 * FRAME, 0, 0), // just the header left: empty, deleted
    ];
    for (cut, want, lost) in cases {
        let dir = TempDir::new("torn");
        let bytes = ten_record_segment(&dir);
        fs::write(dir.file(0), &bytes[..bytes.len() - cut]).unwrap();
        let (mut spill, rec) = open(&dir, 1024 * 1024);
        assert_eq!(
            (rec.records, rec.lost, rec.damaged),
            (want, lost, lost),
            "cut {cut}"
        );
        let out = take_all(&mut spill);
        let expected: Vec<Vec<u8>> = (0..want as u8).map(|i| fill(20, i)).collect();
        assert_eq!(out, expected, "cut {cut}");
        assert_eq!(spill.lost(), lost);
        assert_eq!(dir.disk_total(), 0, "cut {cut}: taken and deleted");
    }
}

#[test]
fn a_flipped_byte_loses_its_frame_only_and_counts_it() {
    let frame = |n: usize| HEAD + n * FRAME;
    // (offset of the flipped byte, record lost, damaged places)
    let cases = [
        (frame(4) + 24 + 10, Some(4), 1), // in record 4's payload: its head says skip it whole
        (frame(4) + 16, Some(4), 1),      // in its body sum: the same
        (frame(4), Some(4), 1),           // in its mark: found again at record 5's
        (frame(4) + 4, Some(4), 1),       // in its index: the head sum fails
        (frame(4) + 9, Some(4), 1),       // in its length: the same
        (frame(4) + 13, Some(4), 1),      // in its head sum
        (frame(0) + 2, Some(0), 1),       // the first record
        (frame(9) + 30, Some(9), 1),      // the last record: nothing after it to count from
        (frame(9) + 5, Some(9), 1),       // the last record's head: a damaged tail
        (2, None, 1),                     // in the magic: every frame is still found
        (9, None, 1),                     // in the version
    ];
    for (offset, lost, damaged) in cases {
        let dir = TempDir::new("flip");
        let mut bytes = ten_record_segment(&dir);
        bytes[offset] ^= 0x40;
        fs::write(dir.file(0), &bytes).unwrap();
        let (mut spill, rec) = open(&dir, 1024 * 1024);
        let survivors: Vec<Vec<u8>> = (0..10u8)
            .filter(|i| Some(usize::from(*i)) != lost)
            .map(|i| fill(20, i))
            .collect();
        let want = (
            survivors.len() as u64,
            u64::from(lost.is_some()),
            damaged,
            0,
        );
        let got = (rec.records, rec.lost, rec.damaged, rec.bad_segments);
        assert_eq!(got, want, "offset {offset}");
        assert_eq!(take_all(&mut spill), survivors, "offset {offset}");
        assert_eq!(spill.lost(), u64::from(lost.is_some()), "offset {offset}");
        assert!(dir.segment_files().is_empty(), "offset {offset}");
    }
}

#[test]
fn a_damaged_stretch_counts_the_records_it_held_from_the_frame_numbers() {
    // (first and last byte overwritten, records counted lost): the gap between the numbers
    // of the intact frames on either side, wherever the damage starts and ends.
    let cases = [
        (HEAD + FRAME + 3, HEAD + 4 * FRAME + 7, 4), // records 1..=4
        (HEAD + 2 * FRAME, HEAD + 3 * FRAME - 1, 1), // exactly record 2
        (HEAD + 2 * FRAME, HEAD + 3 * FRAME, 2),     // and the first byte of record 3
        (0, HEAD + 3 * FRAME + 1, 4),                // the header and records 0..=3
        // Records 5..=9, to the end: no intact frame after it to count from, only record
        // 5's intact head: the count is a floor.
        (HEAD + 5 * FRAME + 30, HEAD + 10 * FRAME - 1, 1),
    ];
    for (from, to, lost) in cases {
        let dir = TempDir::new("stretch");
        let mut bytes = ten_record_segment(&dir);
        bytes[from..=to].fill(0xA5);
        fs::write(dir.file(0), &bytes).unwrap();
        let (mut spill, rec) = open(&dir, 1024 * 1024);
        let first = (from.saturating_sub(HEAD)) / FRAME;
        let last = (to - HEAD) / FRAME;
        let survivors: Vec<Vec<u8>> = (0..10u8)
            .filter(|i| !(first..=last).contains(&usize::from(*i)))
            .map(|i| fill(20, i))
            .collect();
        assert_eq!(take_all(&mut spill), survivors, "{from}..={to}");
        assert_eq!((rec.lost, spill.lost()), (lost, lost), "{from}..={to}");
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
    assert_eq!(
        (rec.bad_segments, rec.not_ours, rec.foreign_files),
        (2, 1, 1)
    );
    assert_eq!(
        (rec.lost, rec.damaged),
        (0, 0),
        "not ours: no event counted"
    );
    assert!(rec.problems.is_empty(), "{:?}", rec.problems);
    assert!(
        !dir.file(2).exists() && !dir.file(3).exists(),
        "bad segments deleted"
    );
    assert!(dir.0.join("notes.txt").exists(), "foreign files left alone");
    assert!(dir.file(4).is_dir(), "entries not ours left alone");
    // A new segment comes after the newest of ours.
    spill.append(&[b"new"]);
    assert_eq!(
        dir.segment_files(),
        [segment_name(0), segment_name(5), segment_name(6)]
    );
    assert_eq!(take_all(&mut spill).len(), 21);
    // Nothing of ours left: names start again from the first free one.
    spill.append(&[b"newer"]);
    assert_eq!(dir.segment_files(), [segment_name(0)]);
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
        let mut left = originals.iter();
        for r in &out {
            assert!(
                left.any(|o| o == r),
                "round {round}: {r:?} was not written, or not in this order"
            );
        }
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
    let survivors: Vec<Vec<u8>> = (0..10).filter(|i| *i != 4).map(|i| fill(20, i)).collect();
    assert_eq!(take_all(&mut spill), survivors);
    assert_eq!(spill.lost(), 1, "record 4 is lost, and only it");
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
fn a_segment_that_cannot_be_deleted_is_retried_then_stops_counting_against_the_cap() {
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
    let per_segment = ((segment_bytes(cap) - HEADER_BYTES) / (FRAME_OVERHEAD + 10_000)) as usize;
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
    assert!(spill.notices().is_empty());

    // Retried at each call; after REMOVE_TRIES attempts in all it is given up, once.
    for _ in 2..REMOVE_TRIES {
        assert!(spill.append(&[]).stopped.is_none());
        assert_eq!(spill.bytes(), before, "retried, still counted");
    }
    assert!(spill.append(&[]).stopped.is_none());
    let notices = spill.notices();
    assert_eq!(notices.len(), 1, "{notices:?}");
    let message = notices[0].to_string();
    for part in ["cannot remove", &segment_name(0), "gave up", SETTING] {
        assert!(message.contains(part), "{part}: {message}");
    }
    assert!(spill.bytes() < before, "given back");
    assert_eq!(
        spill.bytes(),
        dir.segments_total(),
        "only the files still ours count"
    );
    spill.append(&[]);
    assert!(spill.notices().is_empty(), "said once");

    // A later file that can be deleted is, as usual; new names stay above the one given up.
    fs::remove_dir_all(dir.file(0)).unwrap();
    assert_eq!(take_all(&mut spill), input[per_segment + 1..]);
    assert_eq!((spill.bytes(), dir.disk_total()), (0, 0));
    spill.append(&[b"x"]);
    assert_eq!(dir.segment_files(), [segment_name(1)]);
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

// ---- Planted entries (issue 16): names, links, owners, modes. ----

use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};

fn mode_of(path: &Path) -> u32 {
    fs::symlink_metadata(path).unwrap().mode() & 0o7777
}

/// Ten 20-byte records of `base..base + 10`, as a segment file's bytes.
fn segment_of(base: u8) -> Vec<u8> {
    let records: Vec<Vec<u8>> = (base..base + 10).map(|i| fill(20, i)).collect();
    let refs: Vec<&[u8]> = records.iter().map(Vec::as_slice).collect();
    frame::segment(&refs)
}

fn filled(range: std::ops::Range<u8>, len: usize) -> Vec<Vec<u8>> {
    range.map(|i| fill(len, i)).collect()
}

#[test]
fn a_planted_largest_name_neither_wraps_the_counter_nor_reorders_a_restart() {
    let dir = TempDir::new("maxname");
    fs::create_dir_all(&dir.0).unwrap();
    fs::write(dir.file(5), segment_of(0)).unwrap();
    fs::write(dir.file(u64::MAX), b"").unwrap(); // empty: ours, but nothing inside
    let (mut spill, rec) = open(&dir, 1024 * 1024);
    assert_eq!((rec.records, rec.bad_segments), (10, 1));
    assert!(!dir.file(u64::MAX).exists(), "deleted: it held nothing");
    let newer = filled(100..103, 30);
    assert_eq!(append_all(&mut spill, &newer).appended, 3);
    assert_eq!(dir.segment_files(), [segment_name(5), segment_name(6)]);
    drop(spill); // a crash: the next process finds both, in name order

    let (mut again, rec) = open(&dir, 1024 * 1024);
    assert_eq!(rec.records, 13);
    let mut want = filled(0..10, 20);
    want.extend(newer);
    assert_eq!(take_all(&mut again), want, "in write order after a restart");
}

#[test]
fn a_segment_of_ours_with_the_largest_name_pauses_spilling_until_it_is_sent() {
    let dir = TempDir::new("maxvalid");
    fs::create_dir_all(&dir.0).unwrap();
    fs::write(dir.file(u64::MAX), segment_of(0)).unwrap();
    let (mut spill, rec) = open(&dir, 1024 * 1024);
    assert_eq!(rec.records, 10);
    // No name sorts after it: a new segment would be read before it after a restart.
    let done = append_all(&mut spill, &filled(50..52, 30));
    assert_eq!(done.appended, 0);
    let Some(Refused::Error(e)) = done.stopped else {
        panic!("{:?}", done.stopped)
    };
    let message = e.to_string();
    assert!(
        message.contains("no segment name sorts after")
            && message.contains(&segment_name(u64::MAX)),
        "{message}"
    );
    assert_eq!(
        dir.segment_files(),
        [segment_name(u64::MAX)],
        "nothing created"
    );
    // Once it has been sent, spilling resumes from the first name.
    assert_eq!(take_all(&mut spill), filled(0..10, 20));
    assert_eq!(append_all(&mut spill, &filled(50..52, 30)).appended, 2);
    assert_eq!(dir.segment_files(), [segment_name(0)]);
}

#[test]
fn a_name_taken_by_a_directory_a_link_or_a_stranger_is_stepped_over() {
    for kind in [
        "dir",
        "dangling symlink",
        "symlink to a file",
        "fifo",
        "foreign file",
    ] {
        let dir = TempDir::new("taken");
        fs::create_dir_all(&dir.0).unwrap();
        let elsewhere = dir.0.join("elsewhere");
        fs::write(&elsewhere, b"not a segment").unwrap();
        let plant = |seq: u64| {
            let path = dir.file(seq);
            match kind {
                "dir" => fs::create_dir(&path).unwrap(),
                "dangling symlink" => symlink("/nonexistent/kte", &path).unwrap(),
                "symlink to a file" => symlink(&elsewhere, &path).unwrap(),
                "fifo" => {
                    let status = std::process::Command::new("mkfifo").arg(&path).status();
                    assert!(status.unwrap().success(), "mkfifo");
                }
                _ => {
                    fs::write(&path, b"someone else's").unwrap();
                    fs::set_permissions(&path, fs::Permissions::from_mode(0o666)).unwrap();
                }
            }
        };
        plant(0); // the first name, before open
        let cap = 4 * MIN_SEGMENT_BYTES; // segments of MIN_SEGMENT_BYTES
        let (mut spill, rec) = open(&dir, cap);
        assert_eq!(rec.not_ours, 1, "{kind}");
        // The next name, while the store runs: the first segment fills up, and its
        // successor's name is taken when it is needed.
        let per_segment = (MIN_SEGMENT_BYTES - HEADER_BYTES) / (FRAME_OVERHEAD + 1000);
        let input = filled(0..(per_segment as u8 + 3), 1000);
        assert_eq!(append_all(&mut spill, &input[..1]).appended, 1, "{kind}");
        plant(2);
        let done = append_all(&mut spill, &input[1..]);
        assert_eq!(done.appended, input.len() - 1, "{kind}: {:?}", done.stopped);
        let planted_files = 2 * usize::from(kind == "foreign file");
        assert_eq!(dir.segment_files().len(), 2 + planted_files, "{kind}");
        assert!(dir.file(1).is_file() && dir.file(3).is_file(), "{kind}");
        drop(spill);

        // After a restart: ours in order, the planted ones skipped and left alone.
        let (mut again, rec) = open(&dir, cap);
        assert_eq!(rec.not_ours, 2, "{kind}");
        assert_eq!(take_all(&mut again), input, "{kind}");
        assert!(
            fs::symlink_metadata(dir.file(0)).is_ok(),
            "{kind}: left alone"
        );
        assert!(
            fs::symlink_metadata(dir.file(2)).is_ok(),
            "{kind}: left alone"
        );
        assert_eq!(fs::read(&elsewhere).unwrap(), b"not a segment", "{kind}");
    }
}

#[test]
fn names_taken_in_a_row_stop_the_append_with_a_count_not_a_loop() {
    let dir = TempDir::new("manytaken");
    fs::create_dir_all(&dir.0).unwrap();
    let (mut spill, _) = open(&dir, 1024 * 1024);
    for seq in 0..NAME_TRIES + 5 {
        fs::create_dir(dir.file(seq)).unwrap(); // planted after open
    }
    let done = append_all(&mut spill, &[fill(10, 1)]);
    let Some(Refused::Error(e)) = done.stopped else {
        panic!("{:?}", done.stopped)
    };
    assert!(
        e.to_string()
            .contains(&format!("{NAME_TRIES} segment names from")),
        "{e}"
    );
    // The next attempt goes on from where that one stopped.
    assert_eq!(append_all(&mut spill, &[fill(10, 1)]).appended, 1);
    assert_eq!(dir.segment_files(), [segment_name(NAME_TRIES + 5)]);
}

#[test]
fn a_symlinked_directory_is_refused_and_nothing_behind_it_is_touched() {
    let dir = TempDir::new("dirlink");
    let target = TempDir::new("dirlink-target");
    fs::create_dir_all(&dir.0).unwrap();
    fs::create_dir_all(&target.0).unwrap();
    fs::write(target.file(3), b"someone else's file").unwrap();
    fs::write(target.file(4), segment_of(0)).unwrap();
    let link = dir.0.join("spill");
    symlink(&target.0, &link).unwrap();
    let target_mode = mode_of(&target.0);
    let Err(e) = Spill::open_with(&link, 1024 * 1024, plenty()) else {
        panic!("a symlinked directory was opened")
    };
    let message = e.to_string();
    for part in [
        "is a symbolic link",
        &link.display().to_string(),
        DIR_SETTING,
        SETTING,
    ] {
        assert!(message.contains(part), "{part}: {message}");
    }
    assert!(
        target.file(3).exists() && target.file(4).exists(),
        "untouched"
    );
    assert_eq!(mode_of(&target.0), target_mode, "not even its mode");
}

#[test]
fn the_directory_is_0700_and_segments_0600() {
    let dir = TempDir::new("modes");
    let nested = dir.0.join("a/b");
    let (mut spill, rec) = Spill::open_with(&nested, 1024 * 1024, plenty()).unwrap();
    assert_eq!(rec.tightened_from, None);
    append_all(&mut spill, &[fill(10, 1)]);
    assert_eq!(mode_of(&nested), 0o700);
    assert_eq!(mode_of(&nested.join(segment_name(0))), 0o600);
    drop(spill);

    // An existing directory of ours, too open: set to 0700, and said.
    for loose in [0o755, 0o777, 0o1777, 0o500] {
        fs::set_permissions(&nested, fs::Permissions::from_mode(loose)).unwrap();
        let (_, rec) = Spill::open_with(&nested, 1024 * 1024, plenty()).unwrap();
        assert_eq!(rec.tightened_from, Some(loose));
        assert_eq!(mode_of(&nested), 0o700, "{loose:o}");
    }
}

#[test]
fn a_directory_of_another_user_is_refused() {
    // Root gives a directory away; anyone else finds one of root's.
    let dir = TempDir::new("otheruser");
    let (path, owner) = if owner::euid() == 0 {
        fs::create_dir_all(&dir.0).unwrap();
        fs::write(dir.file(1), segment_of(0)).unwrap();
        std::os::unix::fs::chown(&dir.0, Some(65534), Some(65534)).unwrap();
        (dir.0.clone(), 65534)
    } else {
        (PathBuf::from("/"), 0)
    };
    let mode = mode_of(&path);
    let Err(e) = Spill::open_with(&path, 1024 * 1024, plenty()) else {
        panic!("opened a directory of uid {owner}")
    };
    let message = e.to_string();
    assert!(
        message.contains(&format!("belongs to uid {owner}")),
        "{message}"
    );
    assert_eq!(mode_of(&path), mode, "not tightened");
    if owner != 0 {
        assert!(dir.file(1).exists(), "left alone");
    }
}

#[test]
fn entries_not_ours_are_skipped_counted_and_never_sent_or_deleted() {
    let dir = TempDir::new("notours");
    fs::create_dir_all(&dir.0).unwrap();
    fs::write(dir.file(1), segment_of(0)).unwrap(); // ours: sent
                                                    // Group- or other-writable: anyone may have written it.
    fs::write(dir.file(2), segment_of(20)).unwrap();
    fs::set_permissions(dir.file(2), fs::Permissions::from_mode(0o664)).unwrap();
    // A second name: another directory may hold it.
    let outside = TempDir::new("notours-outside");
    fs::create_dir_all(&outside.0).unwrap();
    fs::write(outside.0.join("seg"), segment_of(40)).unwrap();
    fs::hard_link(outside.0.join("seg"), dir.file(3)).unwrap();
    // A link to a segment of ours elsewhere.
    symlink(outside.0.join("seg"), dir.file(4)).unwrap();
    // Another user's, valid and garbage (only root can plant those).
    let root = owner::euid() == 0;
    if root {
        for (seq, bytes) in [(5, segment_of(60)), (6, b"garbage".to_vec())] {
            fs::write(dir.file(seq), bytes).unwrap();
            std::os::unix::fs::chown(dir.file(seq), Some(65534), Some(65534)).unwrap();
        }
    }
    let (mut spill, rec) = open(&dir, 1024 * 1024);
    assert_eq!(rec.not_ours, if root { 5 } else { 3 });
    assert_eq!((rec.records, rec.segments, rec.bad_segments), (10, 1, 0));
    assert_eq!(take_all(&mut spill), filled(0..10, 20), "only ours is sent");
    for seq in 2..if root { 7 } else { 5 } {
        assert!(
            fs::symlink_metadata(dir.file(seq)).is_ok(),
            "{seq} left alone"
        );
    }
    assert_eq!(
        spill.bytes(),
        0,
        "what is not ours does not count against the cap"
    );
}

#[test]
fn trust_is_decided_from_the_inode() {
    const ME: u32 = 1051;
    // (regular file, owner, mode, links, decision)
    let cases = [
        (true, ME, 0o600, 1, Trust::Ours),
        (true, ME, 0o644, 1, Trust::Ours), // readable by others: still ours (the dir is 0700)
        (true, ME, 0o400, 1, Trust::Ours),
        (false, ME, 0o600, 1, Trust::NotAFile),
        (true, 0, 0o600, 1, Trust::Owner(0)),
        (true, 65534, 0o600, 1, Trust::Owner(65534)),
        (true, ME, 0o620, 1, Trust::Writable(0o620)),
        (true, ME, 0o602, 1, Trust::Writable(0o602)),
        (true, ME, 0o100666, 1, Trust::Writable(0o666)),
        (true, ME, 0o600, 2, Trust::Linked(2)),
        (true, ME, 0o600, 0, Trust::Linked(0)),
        (false, 65534, 0o777, 3, Trust::NotAFile), // the first reason wins
    ];
    for (is_file, uid, mode, nlink, want) in cases {
        assert_eq!(
            Trust::judge(is_file, uid, mode, nlink, ME),
            want,
            "{is_file} {uid} {mode:o} {nlink}"
        );
    }
}

#[test]
fn a_segment_swapped_for_a_link_after_open_is_not_followed() {
    let dir = TempDir::new("swap");
    let (mut spill, _) = open(&dir, 1024 * 1024);
    append_all(&mut spill, &filled(0..10, 20));
    let outside = dir.0.join("outside");
    fs::write(&outside, segment_of(100)).unwrap();
    fs::remove_file(dir.file(0)).unwrap();
    symlink(&outside, dir.file(0)).unwrap();
    let taken = spill.take(100, usize::MAX);
    assert!(taken.records.is_empty(), "nothing read through the link");
    let Some(e) = taken.error else {
        panic!("no error")
    };
    assert!(e.to_string().contains("cannot read"), "{e}");
    assert_eq!(spill.lost(), 10, "its records are counted lost");
    assert!(spill.is_empty());
    assert_eq!(fs::read(&outside).unwrap(), segment_of(100), "untouched");
}
