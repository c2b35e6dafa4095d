//! Property tests of the segment format and its recovery, over in-memory segments: what
//! recovery yields was written, in order, once; what it counts lost is exact for one
//! damaged byte and never more than was there; nothing panics, whatever the bytes.

use proptest::prelude::*;

use super::frame::{self, recover, segment, Frame, FRAME_OVERHEAD, HEADER_BYTES};

/// Up to 30 records of up to 200 bytes; each starts with its own number, so no two are
/// equal and a record out of place cannot pass for another.
fn records() -> impl Strategy<Value = Vec<Vec<u8>>> {
    prop::collection::vec(prop::collection::vec(any::<u8>(), 0..200), 0..30).prop_map(|rs| {
        rs.into_iter()
            .enumerate()
            .map(|(i, mut r)| {
                r.splice(0..0, (i as u16).to_le_bytes());
                r
            })
            .collect()
    })
}

fn build(records: &[Vec<u8>]) -> Vec<u8> {
    let refs: Vec<&[u8]> = records.iter().map(Vec::as_slice).collect();
    segment(&refs)
}

/// Each frame yielded is written record number `index`, byte for byte, and the numbers
/// only grow: a subsequence of what was written, in order, each at most once.
fn assert_written(frames: &[Frame], written: &[Vec<u8>]) -> Result<(), TestCaseError> {
    let mut last = None;
    for f in frames {
        let i = f.index as usize;
        prop_assert!(i < written.len(), "index {i} was never written");
        prop_assert_eq!(&f.payload, &written[i]);
        prop_assert!(
            last < Some(i),
            "out of order or repeated: {i} after {last:?}"
        );
        last = Some(i);
    }
    Ok(())
}

/// Where each written frame starts in a segment built from `records`.
fn starts(records: &[Vec<u8>]) -> Vec<usize> {
    let mut at = HEADER_BYTES as usize;
    records
        .iter()
        .map(|r| {
            let start = at;
            at += FRAME_OVERHEAD as usize + r.len();
            start
        })
        .collect()
}

/// A change made to a segment's bytes.
#[derive(Debug, Clone)]
enum Damage {
    Flip { at: usize, bit: u8 },
    Truncate { at: usize },
    Insert { at: usize, bytes: Vec<u8> },
    Overwrite { at: usize, bytes: Vec<u8> },
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        (any::<usize>(), 0..8u8).prop_map(|(at, bit)| Damage::Flip { at, bit }),
        any::<usize>().prop_map(|at| Damage::Truncate { at }),
        (any::<usize>(), prop::collection::vec(any::<u8>(), 1..40))
            .prop_map(|(at, bytes)| Damage::Insert { at, bytes }),
        (any::<usize>(), prop::collection::vec(any::<u8>(), 1..60))
            .prop_map(|(at, bytes)| Damage::Overwrite { at, bytes }),
    ]
}

fn apply(bytes: &mut Vec<u8>, d: &Damage) {
    let pick = |at: usize, len: usize| if len == 0 { 0 } else { at % len };
    match d {
        Damage::Flip { at, bit } if !bytes.is_empty() => {
            let at = pick(*at, bytes.len());
            bytes[at] ^= 1 << bit;
        }
        Damage::Truncate { at } => bytes.truncate(pick(*at, bytes.len() + 1)),
        Damage::Insert { at, bytes: new } => {
            let at = pick(*at, bytes.len() + 1);
            bytes.splice(at..at, new.iter().copied());
        }
        Damage::Overwrite { at, bytes: new } if !bytes.is_empty() => {
            let at = pick(*at, bytes.len());
            let end = (at + new.len()).min(bytes.len());
            bytes[at..end].copy_from_slice(&new[..end - at]);
        }
        _ => {}
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn frames_round_trip(records in records()) {
        let (frames, scan) = recover(&build(&records));
        let back: Vec<Vec<u8>> = frames.into_iter().map(|f| f.payload).collect();
        prop_assert_eq!(back, records);
        prop_assert!(scan.header_ok);
        prop_assert_eq!((scan.lost, scan.damaged), (0, 0));
    }

    #[test]
    fn one_flipped_bit_loses_at_most_its_frame_and_counts_exactly(
        records in records(),
        at in any::<usize>(),
        bit in 0..8u8,
    ) {
        let mut bytes = build(&records);
        let at = at % bytes.len();
        bytes[at] ^= 1 << bit;
        let (frames, scan) = recover(&bytes);
        assert_written(&frames, &records)?;
        let hit = starts(&records).iter().rposition(|s| *s <= at);
        match hit {
            // A frame's byte: that record, and only it, is lost and counted.
            Some(i) => {
                prop_assert_eq!(frames.len(), records.len() - 1);
                prop_assert!(frames.iter().all(|f| f.index as usize != i));
                prop_assert_eq!(scan.lost, 1);
            }
            // The segment header: nothing is lost.
            None => {
                prop_assert_eq!(frames.len(), records.len());
                prop_assert_eq!(scan.lost, 0);
            }
        }
        prop_assert_eq!(scan.damaged, 1);
    }

    #[test]
    fn a_cut_keeps_every_whole_frame_and_counts_the_torn_one(
        records in records(),
        at in any::<usize>(),
    ) {
        let bytes = build(&records);
        let cut = at % (bytes.len() + 1);
        let (frames, scan) = recover(&bytes[..cut]);
        assert_written(&frames, &records)?;
        let starts = starts(&records);
        let whole = starts.iter().zip(&records)
            .filter(|(s, r)| *s + FRAME_OVERHEAD as usize + r.len() <= cut)
            .count();
        let begun = starts.iter().filter(|s| **s < cut).count();
        prop_assert_eq!(frames.len(), whole, "a prefix, whole");
        prop_assert_eq!(scan.lost as usize, begun - whole, "the torn frame, if any");
    }

    #[test]
    fn any_damage_yields_only_what_was_written_and_counts_no_more_than_was_there(
        records in records(),
        damages in prop::collection::vec(damage(), 1..6),
    ) {
        let mut bytes = build(&records);
        for d in &damages {
            apply(&mut bytes, d);
        }
        let (frames, scan) = recover(&bytes);
        assert_written(&frames, &records)?;
        prop_assert_eq!(scan.records as usize, frames.len());
        // Inserted bytes can pass for a torn frame at the end: at most one per damage.
        prop_assert!(frames.len() + scan.lost as usize <= records.len() + damages.len());
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_yield_only_frames_really_there(
        data in prop::collection::vec(any::<u8>(), 0..2000),
        with_header in any::<bool>(),
    ) {
        let mut bytes = if with_header { frame::HEADER.to_vec() } else { Vec::new() };
        bytes.extend(&data);
        frame::fuzz(&bytes);
        crate::fuzzing::spill(&data);
    }
}
