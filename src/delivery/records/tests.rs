use super::*;
use crate::event::key::RANDOM_KEY_CHARS;
use std::sync::Arc;
use std::time::Instant;

const MIB: usize = 1024 * 1024;

impl Pack {
    /// Bytes of the whole request (data + keys), as Kinesis counts them.
    fn bytes(&self) -> usize {
        self.records.iter().map(|r| r.bytes).sum()
    }
}

fn fixed(k: &str) -> Key {
    Key::Fixed(Arc::from(k))
}

fn sizes(lens: &[usize], key: &Key) -> Vec<(usize, Key)> {
    lens.iter().map(|l| (*l, key.clone())).collect()
}

fn run(events: &[(usize, Key)], format: RecordFormat, target: usize, limits: &Limits) -> Pack {
    pack(events.iter().map(|(l, k)| (*l, k)), format, target, limits)
}

fn event_of(len: usize, key: &Key, tag: usize) -> Event {
    let head = format!(r#"{{"type":"function","record":"{tag}-"#);
    let pad = len.saturating_sub(head.len() + 2);
    let raw = format!("{head}{}\"}}", "x".repeat(pad));
    assert_eq!(raw.len(), len.max(head.len() + 2));
    Event::new(raw.into(), Instant::now(), key.clone())
}

#[test]
fn ndjson_fills_records_up_to_the_target_and_not_one_byte_more() {
    // Each event adds len + 1 (newline): 4 events of 99 are 400 bytes of data, plus the
    // 16 bytes of a random key.
    let exact = sizes(&[99, 99, 99, 99], &Key::Random);
    let p = run(&exact, RecordFormat::Ndjson, 416, &Limits::default());
    assert_eq!(p.take, 4);
    assert_eq!(p.records.len(), 1);
    assert_eq!(p.records[0].bytes, 416);
    // One byte over the target: the 4th event opens a second record.
    let p = run(&exact, RecordFormat::Ndjson, 415, &Limits::default());
    assert_eq!(p.records.len(), 2);
    assert_eq!(p.records[0].events, [0, 1, 2]);
    assert_eq!(p.records[1].events, [3]);
    assert_eq!(p.stop, PackStop::Exhausted);
}

#[test]
fn an_event_bigger_than_the_target_gets_a_record_of_its_own() {
    let key = Key::Random;
    let events = sizes(&[10, 50_000, 10, 10], &key);
    let p = run(&events, RecordFormat::Ndjson, 25_000, &Limits::default());
    let groups: Vec<Vec<usize>> = p.records.iter().map(|r| r.events.clone()).collect();
    assert_eq!(groups, [vec![0], vec![1], vec![2, 3]]);
}

#[test]
fn a_record_of_exactly_the_record_limit_fits_and_one_byte_more_is_oversize() {
    let key = fixed(&"k".repeat(256));
    for format in [RecordFormat::Event, RecordFormat::Ndjson, RecordFormat::Kpl] {
        let size = |n: usize| base_len(format, 256) + added_len(format, n) + 256;
        // The largest event whose record is at most 1 MiB (framing grows with varints).
        let exact = (0..MIB).rev().find(|n| size(*n) <= MIB).unwrap();
        let p = run(&sizes(&[exact], &key), format, MIB, &Limits::default());
        assert_eq!((p.take, p.bytes()), (1, size(exact)), "{format:?}");
        assert!(MIB - size(exact) <= 1, "{format:?}: exactly at the limit");
        let p = run(
            &sizes(&[exact + 1, 5], &key),
            format,
            MIB,
            &Limits::default(),
        );
        assert!(p.oversize_front(), "{format:?}: {p:?}");
    }
}

#[test]
fn an_oversize_event_behind_others_ends_the_request_before_it() {
    let key = Key::Random;
    let events = sizes(&[10, 20, 2 * MIB, 5], &key);
    let p = run(&events, RecordFormat::Event, MIB, &Limits::default());
    assert_eq!((p.take, p.stop), (2, PackStop::Oversize));
    assert!(!p.oversize_front(), "the events in front still go out");
}

#[test]
fn five_hundred_records_and_the_501st_waits() {
    let key = Key::Random;
    let events = sizes(&vec![100; 501], &key);
    let p = run(&events, RecordFormat::Event, 25_000, &Limits::default());
    assert_eq!(
        (p.take, p.records.len(), p.stop),
        (500, 500, PackStop::MaxRecords)
    );
    let events = sizes(&vec![100; 500], &key);
    let p = run(&events, RecordFormat::Event, 25_000, &Limits::default());
    assert_eq!((p.take, p.stop), (500, PackStop::MaxRecords));
    let events = sizes(&vec![100; 499], &key);
    let p = run(&events, RecordFormat::Event, 25_000, &Limits::default());
    assert_eq!((p.take, p.stop), (499, PackStop::Exhausted));
    // Packed, 501 small events are far from 500 records.
    let events = sizes(&vec![100; 501], &key);
    let p = run(&events, RecordFormat::Ndjson, 25_000, &Limits::default());
    assert_eq!(p.take, 501);
    assert!(p.records.len() <= 3, "{}", p.records.len());
}

#[test]
fn a_request_of_exactly_5_mib_fits_and_one_more_byte_does_not() {
    // Five records of exactly 1 MiB each (data + 16-byte random key).
    let key = Key::Random;
    let exact = sizes(&[MIB - 16; 5], &key);
    let p = run(&exact, RecordFormat::Event, MIB, &Limits::default());
    assert_eq!(
        (p.take, p.bytes(), p.stop),
        (5, 5 * MIB, PackStop::Exhausted)
    );
    let mut over = exact.clone();
    over.push((1, key.clone()));
    let p = run(&over, RecordFormat::Event, MIB, &Limits::default());
    assert_eq!(
        (p.take, p.bytes(), p.stop),
        (5, 5 * MIB, PackStop::MaxRequestBytes)
    );
    // Packed: growing an open record past the request's bytes stops there too.
    let l = Limits {
        max_request_bytes: 1_000,
        ..Limits::default()
    };
    let events = sizes(&[474, 474, 10], &Key::Random);
    let p = run(&events, RecordFormat::Ndjson, 25_000, &l);
    assert_eq!((p.take, p.bytes(), p.stop), (3, 977, PackStop::Exhausted));
    let events = sizes(&[474, 474, 33, 0], &Key::Random);
    let p = run(&events, RecordFormat::Ndjson, 25_000, &l);
    assert_eq!(
        (p.take, p.bytes(), p.stop),
        (3, 1000, PackStop::MaxRequestBytes)
    );
}

#[test]
fn a_fixed_key_gets_one_record_per_request_so_a_partial_failure_cannot_reorder_it() {
    let (a, b) = (fixed("req-a"), fixed("req-b"));
    // a's record fills at the third event; the next a event waits for the next request.
    let events = vec![
        (400, a.clone()),
        (400, b.clone()),
        (400, a.clone()),
        (400, a.clone()),
        (400, b.clone()),
    ];
    let p = run(&events, RecordFormat::Ndjson, 900, &Limits::default());
    assert_eq!((p.take, p.stop), (3, PackStop::KeyFull));
    // One event per record: one event per fixed key per request.
    let p = run(&events, RecordFormat::Event, 900, &Limits::default());
    assert_eq!((p.take, p.stop), (2, PackStop::KeyFull));
    // Random keys promise no order: records of them fill one after another.
    let random = sizes(&[400; 5], &Key::Random);
    let p = run(&random, RecordFormat::Ndjson, 900, &Limits::default());
    assert_eq!((p.take, p.records.len()), (5, 3));
}

#[test]
fn a_packed_record_never_mixes_keys_and_keeps_order_per_key() {
    let (a, b) = (fixed("req-a"), fixed("req-b"));
    let events = vec![
        (10, a.clone()),
        (10, b.clone()),
        (10, a.clone()),
        (10, Key::Random),
        (10, b.clone()),
        (10, Key::Random),
    ];
    let p = run(&events, RecordFormat::Ndjson, 25_000, &Limits::default());
    let groups: Vec<(Key, Vec<usize>)> = p
        .records
        .iter()
        .map(|r| (r.key.clone(), r.events.clone()))
        .collect();
    assert_eq!(
        groups,
        [(a, vec![0, 2]), (b, vec![1, 4]), (Key::Random, vec![3, 5])]
    );
}

#[test]
fn built_records_have_exactly_the_planned_sizes_in_every_format() {
    let mut rng = Rng::seeded(4);
    let keys = [Key::Random, fixed("3f1e-request"), fixed("é-unicode-key")];
    let mut events = Vec::new();
    for i in 0..300 {
        events.push(event_of(40 + (i * 37) % 700, &keys[i % 3], i));
    }
    for format in [RecordFormat::Event, RecordFormat::Ndjson, RecordFormat::Kpl] {
        let p = pack(
            events.iter().map(|e| (e.raw.len(), &e.key)),
            format,
            5_000,
            &Limits::default(),
        );
        let built = build(&p, &events[..p.take], format, &mut rng);
        assert_eq!(built.len(), p.records.len());
        for (b, planned) in built.iter().zip(&p.records) {
            assert_eq!(
                b.wire(&events[..p.take]).data.size() + b.partition_key.len(),
                planned.bytes,
                "{format:?}"
            );
            assert!(planned.bytes <= 5_000 || planned.events.len() == 1);
            if let Key::Fixed(k) = &planned.key {
                assert_eq!(&*b.partition_key, &**k);
            } else {
                assert_eq!(b.partition_key.len(), RANDOM_KEY_CHARS);
            }
        }
        let mut seen: Vec<usize> = built.iter().flat_map(|b| b.events.clone()).collect();
        seen.sort_unstable();
        assert_eq!(seen, (0..p.take).collect::<Vec<_>>(), "every event once");
    }
}

#[test]
fn ndjson_records_are_the_events_one_per_line() {
    let key = Key::Random;
    let events: Vec<Event> = (0..3).map(|i| event_of(30, &key, i)).collect();
    let p = pack(
        events.iter().map(|e| (e.raw.len(), &e.key)),
        RecordFormat::Ndjson,
        25_000,
        &Limits::default(),
    );
    let built = build(&p, &events, RecordFormat::Ndjson, &mut Rng::seeded(1));
    assert_eq!(built.len(), 1);
    let text = String::from_utf8(built[0].wire(&events).data.to_vec()).unwrap();
    let lines: Vec<&str> = text.split_terminator('\n').collect();
    let raws: Vec<&str> = events.iter().map(|e| &*e.raw).collect();
    assert_eq!(lines, raws);
    assert!(text.ends_with('\n'));
}

#[test]
fn the_largest_event_fits_every_format_with_the_longest_key() {
    let key = fixed(&"k".repeat(MAX_KEY_BYTES));
    for l in [
        Limits::default(),
        Limits {
            max_record_bytes: 4096,
            ..Limits::default()
        },
    ] {
        for format in [RecordFormat::Event, RecordFormat::Ndjson, RecordFormat::Kpl] {
            let max = max_event_bytes(&l, format, 300);
            let events = sizes(&[max + 300], &key);
            let p = run(&events, format, 25_000, &l);
            assert_eq!(p.take, 1, "{format:?} {l:?}");
            assert!(
                l.record_max() - p.records[0].bytes < 64,
                "{format:?}: not much room wasted"
            );
        }
    }
}

#[test]
fn zero_limits_are_clamped_so_the_buffer_cannot_stall() {
    let zero = Limits {
        max_records: 0,
        max_request_bytes: 0,
        max_record_bytes: 0,
    };
    let events = sizes(&[0, 0], &fixed("k"));
    let p = run(&events, RecordFormat::Event, 0, &zero);
    assert_eq!(p.take, 1);
    let huge = sizes(&[usize::MAX], &Key::Random);
    assert!(run(&huge, RecordFormat::Kpl, 25_000, &Limits::default()).oversize_front());
}

#[test]
fn pack_stops_consuming_the_events_at_the_first_misfit() {
    let key = Key::Random;
    let mut consumed = 0;
    let events = (0..10_000).map(|_| {
        consumed += 1;
        (1, &key)
    });
    assert_eq!(
        pack(events, RecordFormat::Event, 25_000, &Limits::default()).take,
        500
    );
    assert_eq!(consumed, 501);
}
