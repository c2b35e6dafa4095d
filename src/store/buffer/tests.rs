use super::*;
use crate::event::{Key, EVENT_OVERHEAD_BYTES};

fn cap(max_events: usize, max_bytes: usize) -> BufferCap {
    BufferCap {
        max_events,
        max_bytes,
    }
}

fn ev(tag: &str) -> Event {
    Event::new(
        format!(r#"{{"type":"function","record":"{tag}"}}"#).into(),
        Instant::now(),
        Key::Random,
    )
}

fn entries(tags: &[&str]) -> Vec<Entry> {
    tags.iter()
        .map(|t| Entry {
            event: Some(ev(t)),
            mark: None,
        })
        .collect()
}

fn texts(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .map(|e| {
            let v: serde_json::Value = serde_json::from_str(&e.raw).unwrap();
            v["record"].as_str().unwrap().to_string()
        })
        .collect()
}

fn take_all(b: &Buffer) -> Lease<'_> {
    b.take(|q| (q.len(), ())).0
}

#[test]
fn admitted_events_come_out_in_order_and_leave_through_finish() {
    let (b, woken) = Buffer::new(cap(100, 1 << 20), None);
    b.admit(entries(&["x"]));
    assert!(woken.try_recv().is_err(), "no wake between windows");
    b.listen(true);
    let a = b.admit(entries(&["a", "b", "c"]));
    assert_eq!(a.kept, 3);
    assert!(woken.try_recv().is_ok(), "the flusher is woken");
    let lease = take_all(&b);
    assert_eq!(b.finish(lease, |_| Fate::Gone), 4);
    b.admit(entries(&["a", "b", "c"]));
    let lease = take_all(&b);
    assert_eq!(texts(lease.events()), ["a", "b", "c"]);
    assert_eq!(b.level().queued, 0);
    assert!(b.level().bytes > 0, "leased events still count");
    assert_eq!(b.finish(lease, |_| Fate::Gone), 3);
    assert_eq!(b.level().bytes, 0);
    assert_eq!(b.held(), 0);
}

#[test]
fn resent_events_go_back_to_the_front_in_order() {
    let (b, _) = Buffer::new(cap(100, 1 << 20), None);
    b.admit(entries(&["a", "b", "c", "d"]));
    let lease = take_all(&b);
    b.admit(entries(&["e"]));
    let gone = b.finish(
        lease,
        |i| if i % 2 == 1 { Fate::Resend } else { Fate::Gone },
    );
    assert_eq!(gone, 2);
    let lease = take_all(&b);
    assert_eq!(texts(lease.events()), ["b", "d", "e"]);
    b.finish(lease, |_| Fate::Gone);
    assert_eq!(
        b.level(),
        Level {
            high_water: b.level().high_water,
            ..Level::default()
        }
    );
}

#[test]
fn a_dropped_lease_loses_nothing() {
    let (b, _) = Buffer::new(cap(100, 1 << 20), None);
    b.admit(entries(&["a", "b"]));
    {
        let (lease, ()) = b.take(|_| (1, ()));
        assert_eq!(lease.len(), 1);
    }
    let lease = take_all(&b);
    assert_eq!(texts(lease.events()), ["a", "b"]);
    b.finish(lease, |_| Fate::Gone);
    assert_eq!((b.held(), b.level().bytes), (0, 0));
}

#[test]
fn the_cap_drops_the_newest_and_counts_leased_events_too() {
    let one = ev("a").cost();
    assert_eq!(one, ev("a").raw.len() + EVENT_OVERHEAD_BYTES);
    let (b, _) = Buffer::new(cap(100, 3 * one), None);
    let a = b.admit(entries(&["a", "b", "c", "d", "e"]));
    assert_eq!((a.kept, a.refused, a.became_full), (3, 2, true));
    // Leased events still take room.
    let lease = take_all(&b);
    let a = b.admit(entries(&["f"]));
    assert_eq!(
        (a.kept, a.refused, a.became_full),
        (0, 1, false),
        "same episode"
    );
    b.finish(lease, |_| Fate::Gone);
    let a = b.admit(entries(&["g"]));
    assert_eq!((a.kept, a.refused), (1, 0));
    let a = b.admit(entries(&["h", "i", "j"]));
    assert!(a.became_full, "a new episode after recovery");
    // By count as well.
    let (b, _) = Buffer::new(cap(2, 1 << 20), None);
    let a = b.admit(entries(&["a", "b", "c"]));
    assert_eq!((a.kept, a.refused), (2, 1));
}

#[test]
fn a_buffer_hovering_at_its_cap_is_one_episode_of_fullness() {
    let one = ev("a").cost();
    let (b, _) = Buffer::new(cap(100, 4 * one), None);
    let a = b.admit(entries(&["a", "b", "c", "d", "e"]));
    assert_eq!((a.kept, a.refused, a.became_full), (4, 1, true));
    // A request takes one event: room for one POST, which fits; the next is refused again.
    let (lease, ()) = b.take(|_| (1, ()));
    b.finish(lease, |_| Fate::Gone);
    assert_eq!(b.admit(entries(&["f"])).kept, 1);
    let a = b.admit(entries(&["g"]));
    assert_eq!(
        (a.refused, a.became_full),
        (1, false),
        "the same episode: no new line"
    );
    // Drained below half the cap: the episode is over, the next refusal starts another.
    let lease = take_all(&b);
    b.finish(lease, |_| Fate::Gone);
    assert_eq!(b.admit(entries(&["h"])).kept, 1);
    let a = b.admit(entries(&["i", "j", "k", "l"]));
    assert_eq!((a.kept, a.refused, a.became_full), (3, 1, true));
}

#[test]
fn fullness_ends_at_half_the_cap_in_events_and_bytes() {
    let c = cap(100, 1_000);
    // (was full, refused now, events held, bytes held, still full)
    let cases = [
        (false, false, 100, 1_000, false),
        (false, true, 10, 100, true),
        (true, true, 0, 0, true),
        (true, false, 51, 100, true),
        (true, false, 10, 501, true),
        (true, false, 50, 500, false),
        (true, false, 0, 0, false),
    ];
    for (was_full, refused, events, bytes, want) in cases {
        assert_eq!(
            still_full(was_full, refused, events, bytes, &c),
            want,
            "was_full={was_full} refused={refused} events={events} bytes={bytes}"
        );
    }
}

#[test]
fn done_marks_say_whether_an_invocation_is_delivered() {
    let (b, _) = Buffer::new(cap(100, 1 << 20), None);
    b.admit(entries(&["start", "log"]));
    assert_eq!(b.done_ticket("r-1"), None);
    b.admit(vec![
        Entry {
            event: Some(ev("done")),
            mark: Some(Mark::Done("r-1".into())),
        },
        Entry {
            event: Some(ev("late extension line")),
            mark: None,
        },
    ]);
    let t = b.done_ticket("r-1").expect("noted");
    assert_eq!(t, 2, "the runtimeDone event itself is the third admitted");
    assert!(b.unsettled_through(t));
    let (lease, ()) = b.take(|_| (3, ()));
    b.finish(lease, |_| Fate::Gone);
    assert!(!b.unsettled_through(t), "the later line does not count");
    // A filtered runtimeDone marks what came before it.
    b.admit(vec![Entry {
        event: None,
        mark: Some(Mark::Done("r-2".into())),
    }]);
    assert_eq!(b.done_ticket("r-2"), Some(3));
    b.admit(vec![Entry {
        event: None,
        mark: Some(Mark::Report("r-2".into())),
    }]);
    assert!(b.report_seen("r-2") && !b.report_seen("r-1"));
}

#[test]
fn abandon_counts_everything_left() {
    let (b, _) = Buffer::new(cap(100, 1 << 20), None);
    b.admit(entries(&["a", "b", "c"]));
    let (lease, ()) = b.take(|_| (1, ()));
    std::mem::forget(lease); // a request that never came back
    assert_eq!(b.abandon(), 3);
    assert_eq!((b.held(), b.level().bytes), (0, 0));
}

#[test]
fn the_high_water_mark_remembers_the_peak() {
    let (b, _) = Buffer::new(cap(100, 1 << 20), None);
    b.admit(entries(&["a", "b", "c"]));
    let peak = b.level().bytes;
    let lease = take_all(&b);
    b.finish(lease, |_| Fate::Gone);
    assert_eq!(b.level().high_water, peak);
    assert_eq!(b.level().bytes, 0);
}
