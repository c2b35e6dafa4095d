//! The send rate against scripted answers: decrease on throttling, increase while accepted.

use super::*;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[test]
fn a_few_records_throttled_with_little_written_start_no_limit() {
    let t0 = Instant::now();
    let mut c = Congestion::default();
    let a = Answer {
        accepted_bytes: 5_000,
        throttled: 3,
    };
    assert!(!c.answered(t0, a, 0.5));
    assert_eq!(
        c.rate(),
        None,
        "5 KB accepted says nothing of the stream's rate"
    );
    assert!(!c.at_limit());
    let none_through = Answer {
        accepted_bytes: 0,
        throttled: 4,
    };
    c.answered(t0, none_through, 0.5);
    assert!(c.at_limit(), "every record refused: the stream is full");
    c.answered(t0, a, 0.5);
    assert!(!c.at_limit(), "some got through again");
}

#[test]
fn no_limit_until_a_record_is_throttled() {
    let t0 = Instant::now();
    let mut c = Congestion::default();
    assert_eq!(c.allowance(t0), None);
    assert_eq!(c.wait(t0, 5 << 20), None);
    c.sent(t0, 5 << 20);
    let ok = Answer {
        accepted_bytes: 5 << 20,
        throttled: 0,
    };
    assert!(!c.answered(t0, ok, 0.5));
    assert_eq!(c.rate(), None);
}

#[test]
fn throttling_sets_the_rate_from_what_was_accepted_and_spaces_requests() {
    let t0 = Instant::now();
    let mut c = Congestion::default();
    // 600 KB accepted in the last second, then a request half throttled.
    c.answered(
        t0,
        Answer {
            accepted_bytes: 400_000,
            throttled: 0,
        },
        0.5,
    );
    let started = c.answered(
        t0 + ms(500),
        Answer {
            accepted_bytes: 200_000,
            throttled: 8,
        },
        0.5, // no spread
    );
    assert!(started, "the first throttle starts an episode");
    let rate = c.rate().unwrap();
    assert!((rate - 420_000.0).abs() < 1.0, "0.7 × 600 KB/s: {rate}");
    // The bucket starts empty: the next request waits for its bytes.
    let now = t0 + ms(500);
    assert_eq!(c.allowance(now), Some(0));
    let at = c.wait(now, 42_000).unwrap();
    assert_eq!(at - now, ms(100), "42 KB at 420 KB/s");
    assert_eq!(
        c.wait(now, 2_000_000).unwrap() - now,
        ms(1_000),
        "at most the bucket's worth: a second's"
    );
    // Later the bucket holds a second's worth, no more.
    assert_eq!(c.allowance(now + ms(1_000)), Some(420_000));
    assert_eq!(c.allowance(now + ms(5_000)), Some(420_000));
    c.sent(now + ms(5_000), 420_000);
    assert_eq!(c.allowance(now + ms(5_000)), Some(0));
    // A slow rate still lets a full record through.
    let mut slow = Congestion::default();
    let earnest = Answer {
        accepted_bytes: MIN_MEASURED_BYTES,
        throttled: 0,
    };
    let nothing = Answer {
        accepted_bytes: 0,
        throttled: 1,
    };
    slow.answered(now, earnest, 0.5);
    slow.answered(now + ms(500), nothing, 0.0);
    slow.answered(now + ms(1_600), nothing, 0.0);
    assert_eq!(
        slow.allowance(now + ms(10_000)),
        Some(MIN_BYTES_PER_SEC as usize)
    );
}

#[test]
fn the_rate_goes_down_by_a_fraction_and_up_by_a_little() {
    let t0 = Instant::now();
    let mut c = Congestion::default();
    let throttled = Answer {
        accepted_bytes: 1_000_000,
        throttled: 1,
    };
    c.answered(t0, throttled, 0.5);
    let first = c.rate().unwrap();
    // (answer, rate after it relative to the one before: lower bound, upper bound)
    let ok = Answer {
        accepted_bytes: 10_000,
        throttled: 0,
    };
    let mut before = first;
    for i in 1..=10 {
        // An answer every 100 ms: a tenth of a second's rise each.
        c.answered(t0 + ms(100 * i), ok, 0.5);
        let now = c.rate().unwrap();
        let most = before + (before * INCREASE).max(MIN_INCREASE) / 10.0;
        assert!(now > before && now <= most + 1.0, "{before} -> {now}");
        before = now;
    }
    assert!(
        before <= first * 1.2 + 2.0 * MIN_INCREASE,
        "a second of answers raises it by about a tenth, however many: {first} -> {before}"
    );
    // Many answers in no time raise it by nothing.
    for _ in 0..1_000 {
        c.answered(t0 + ms(1_000), ok, 0.5);
    }
    assert_eq!(c.rate(), Some(before));
    // Throttled again: down to 0.7 × min(rate, accepted over the last second).
    c.answered(t0 + ms(1_100), throttled, 0.5);
    assert!(c.rate().unwrap() <= before * DECREASE + 1.0);
}

#[test]
fn the_spread_keeps_environments_apart_and_within_bounds() {
    let t0 = Instant::now();
    let a = Answer {
        accepted_bytes: 1_000_000,
        throttled: 3,
    };
    let rate = |jitter: f64| {
        let mut c = Congestion::default();
        c.answered(t0, a, jitter);
        c.rate().unwrap()
    };
    assert!((rate(0.0) - 630_000.0).abs() < 1.0);
    assert!((rate(0.999_999) - 770_000.0).abs() < 1.0);
    assert!(rate(0.25) < rate(0.75));
}

#[test]
fn nothing_accepted_still_leaves_a_trickle_and_a_long_calm_lifts_the_limit() {
    let t0 = Instant::now();
    let mut c = Congestion::default();
    // Writing in earnest (a second's worth accepted), then nothing accepted at all.
    c.answered(
        t0,
        Answer {
            accepted_bytes: MIN_MEASURED_BYTES,
            throttled: 0,
        },
        0.5,
    );
    c.answered(
        t0 + ms(900),
        Answer {
            accepted_bytes: 0,
            throttled: 500,
        },
        0.5,
    );
    assert!(c.rate().is_some_and(|r| r <= MIN_MEASURED_BYTES as f64));
    let ok = Answer {
        accepted_bytes: 1,
        throttled: 0,
    };
    let mut tenths = 0;
    while c.rate().is_some() {
        tenths += 1;
        c.answered(t0 + ms(900 + 100 * tenths), ok, 0.5);
        assert!(tenths < 1_000, "the limit is lifted in the end");
    }
    assert_eq!(tenths, 50, "after {QUIET:?} with nothing throttled");
}
