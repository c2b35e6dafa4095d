//! Health's transitions, the backoff, and the diagnosis of troubles.

use super::*;

fn policy(max_attempts: u32) -> RetryPolicy {
    RetryPolicy {
        max_attempts,
        backoff_base: Duration::from_millis(100),
        backoff_max: Duration::from_secs(1),
    }
}

#[test]
fn struggling_starts_after_the_attempts_and_ends_with_one_success() {
    let mut h = Health::default();
    let mut rng = Rng::seeded(1);
    let t0 = Instant::now();
    let ms = Duration::from_millis;
    // (observation, expected change, struggling after)
    let script = [
        (Observation::Retry, None, false),
        (Observation::Retry, None, false),
        (Observation::Retry, Some(Change::StartedStruggling), true),
        (Observation::Retry, None, true),
        (Observation::Fatal, None, true),
        (Observation::Ok, Some(Change::Recovered), false),
        (Observation::Ok, None, false),
    ];
    for (i, (what, change, after)) in script.into_iter().enumerate() {
        let got = h.observe(t0, ms(5), what, &policy(3), &mut rng);
        assert_eq!(got, change, "step {i}");
        assert_eq!(h.struggling(), after, "step {i}");
    }
    assert_eq!(h.backoff_until(t0), None, "a success clears the backoff");
}

#[test]
fn a_failure_sets_a_bounded_backoff() {
    let mut h = Health::default();
    let mut rng = Rng::seeded(2);
    let t0 = Instant::now();
    for _ in 0..10 {
        h.observe(
            t0,
            Duration::ZERO,
            Observation::Retry,
            &policy(100),
            &mut rng,
        );
        let until = h.backoff_until.unwrap();
        assert!(until <= t0 + Duration::from_secs(1));
    }
}

#[test]
fn while_struggling_the_probe_waits_only_the_base_backoff() {
    let mut h = Health::default();
    let mut rng = Rng::seeded(4);
    let t0 = Instant::now();
    let ms = Duration::from_millis;
    for _ in 0..8 {
        h.observe(t0, ms(5), Observation::Retry, &policy(3), &mut rng);
    }
    assert!(h.struggling());
    let probe = h.probe_from(t0).expect("spaced after the last attempt");
    assert!(probe <= t0 + ms(100), "at most the base backoff");
    assert!(
        h.backoff_until(t0).unwrap() >= probe,
        "the retries' backoff may have grown further"
    );
    assert_eq!(h.probe_from(t0 + ms(100)), None, "spacing over");
    h.observe(t0, ms(5), Observation::Ok, &policy(3), &mut rng);
    assert_eq!(h.probe_from(t0), None, "a success clears the spacing");
}

#[test]
fn connects_are_bounded_by_the_connects_seen() {
    let ms = Duration::from_millis;
    let t0 = Instant::now();
    let mut h = Health::default();
    assert_eq!(h.connect_timeout(t0, ms(1_000)), ms(1_000), "none seen");
    // (connect seen, timeout after it)
    for (took, want) in [(1, 25), (20, 80), (2, 80), (400, 1_000)] {
        h.connected(t0, ms(took));
        assert_eq!(
            h.connect_timeout(t0, ms(1_000)),
            ms(want),
            "after {took} ms"
        );
    }
    assert_eq!(
        h.connect_timeout(t0 + LATENCY_MEMORY, ms(1_000)),
        ms(1_000),
        "old connects expire"
    );
}

#[test]
fn only_a_healthy_and_fast_kinesis_may_hold_an_invocation() {
    let ms = Duration::from_millis;
    let t0 = Instant::now();
    let mut rng = Rng::seeded(5);
    let mut h = Health::default();
    assert!(h.fit_to_hold(t0, ms(60)), "nothing seen yet");
    h.observe(t0, ms(20), Observation::Ok, &policy(4), &mut rng);
    assert!(h.fit_to_hold(t0, ms(60)));
    h.observe(t0, ms(5), Observation::Retry, &policy(4), &mut rng);
    assert!(h.failing() && !h.fit_to_hold(t0, ms(60)), "failing");
    h.observe(t0, ms(20), Observation::Ok, &policy(4), &mut rng);
    assert!(h.fit_to_hold(t0, ms(60)), "recovered");
    h.observe(t0, ms(1_500), Observation::Ok, &policy(4), &mut rng);
    assert!(!h.fit_to_hold(t0, ms(60)), "slower than the budget");
}

#[test]
fn large_requests_teach_throughput_not_slowness() {
    let ms = Duration::from_millis;
    let t0 = Instant::now();
    let mut rng = Rng::seeded(6);
    let mut h = Health::default();
    assert_eq!(h.bytes_within(t0, ms(50)), None, "nothing known: no cap");
    // A 5 MB request in 100 ms: 50 MB/s, and not a slow Kinesis.
    h.observe_sized(
        t0,
        ms(100),
        5_000_000,
        Observation::Ok,
        &policy(4),
        &mut rng,
    );
    h.observe_sized(t0, ms(8), 10_000, Observation::Ok, &policy(4), &mut rng);
    assert!(h.fit_to_hold(t0, ms(60)));
    assert_eq!(h.throughput(t0), Some(50_000_000.0));
    // 50 ms left, 10 ms latency: 40 ms / 2 at 50 MB/s.
    assert_eq!(h.bytes_within(t0, ms(50)), Some(1_000_000));
    assert_eq!(
        h.bytes_within(t0, ms(5)),
        Some(SMALL_REQUEST_BYTES),
        "at least a small one"
    );
    // A large request cut at the budget changes nothing.
    h.observe_sized(
        t0,
        ms(60),
        5_000_000,
        Observation::Cut,
        &policy(4),
        &mut rng,
    );
    assert!(!h.failing() && h.fit_to_hold(t0, ms(60)));
    assert_eq!(h.throughput(t0), Some(50_000_000.0));
}

#[test]
fn a_request_its_window_ended_is_told_apart_from_one_kinesis_failed() {
    let ms = Duration::from_millis;
    let configured = ms(2_000);
    let err = |e: RequestError| -> Result<(), RequestError> { Err(e) };
    let timeout = |phase| err(RequestError::Timeout(phase));
    // (result, the timeout it was given, ended by its window?)
    let cases: [(Result<(), RequestError>, Duration, bool); 8] = [
        (err(RequestError::Abandoned), ms(60), true),
        (err(RequestError::Abandoned), configured, true),
        // Timed out while its timeout was the window's rest: the window ended it.
        (timeout(TimeoutPhase::Overall), ms(40), true),
        (timeout(TimeoutPhase::Receive), ms(1_999), true),
        // Its whole configured timeout: Kinesis did not answer.
        (timeout(TimeoutPhase::Overall), configured, false),
        // A connect that timed out is bounded by the connects seen: Kinesis is unreachable.
        (timeout(TimeoutPhase::Connect), ms(40), false),
        (err(RequestError::Connect("refused".into())), ms(40), false),
        (Ok(()), ms(40), false),
    ];
    for (result, given, want) in cases {
        assert_eq!(
            ended_by_window(&result, given, configured),
            want,
            "{result:?} with {given:?} of {configured:?}"
        );
    }
    // What such a request shows: hanging only when it had most of the budget.
    assert_eq!(window_trouble(ms(55), ms(60)), Some(Trouble::Hanging));
    assert_eq!(window_trouble(ms(30), ms(60)), Some(Trouble::Hanging));
    assert_eq!(window_trouble(ms(29), ms(60)), None);
    assert_eq!(window_trouble(ms(900), ms(60)), Some(Trouble::Hanging));
}

#[test]
fn troubles_are_named_by_what_failed() {
    let ms = Duration::from_millis;
    let budget = ms(60);
    let err = |e: RequestError| -> Result<(), RequestError> { Err(e) };
    let unreachable = |r: &Result<(), RequestError>| match diagnose(r, ms(5), budget) {
        Some(Trouble::Unreachable(why)) => why,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        unreachable(&err(RequestError::Timeout(TimeoutPhase::Connect))),
        "connect timed out"
    );
    assert!(unreachable(&err(RequestError::Connect(
        "Connection refused (os error 111)".into()
    )))
    .starts_with("connection refused"));
    assert!(
        unreachable(&err(RequestError::Connect("host not found".into())))
            .starts_with("name not resolved")
    );
    assert_eq!(
        diagnose(
            &err(RequestError::Timeout(TimeoutPhase::Receive)),
            ms(5),
            budget
        ),
        Some(Trouble::Hanging)
    );
    assert_eq!(
        diagnose(&err(RequestError::Abandoned), ms(55), budget),
        Some(Trouble::Hanging),
        "cut after most of the budget"
    );
    assert_eq!(
        diagnose(&err(RequestError::Abandoned), ms(3), budget),
        None,
        "cut right after it started: it says nothing of Kinesis"
    );
    assert_eq!(diagnose(&Ok::<(), RequestError>(()), ms(40), budget), None);
    assert_eq!(
        diagnose(&Ok::<(), RequestError>(()), ms(1_500), budget),
        Some(Trouble::Slow(ms(1_500)))
    );
    let throttled = RequestError::Http {
        status: 400,
        code: "ProvisionedThroughputExceededException".into(),
        message: String::new(),
    };
    assert_eq!(
        diagnose(&err(throttled), ms(5), budget),
        None,
        "Kinesis answers"
    );
}

#[test]
fn a_timeout_teaches_more_than_it_lasted() {
    let ms = Duration::from_millis;
    assert_eq!(latency_seen(ms(40), false), ms(40));
    assert_eq!(latency_seen(ms(800), true), ms(1_000));
    assert_eq!(latency_seen(Duration::ZERO, true), Duration::ZERO);
}

#[test]
fn the_latency_estimate_is_the_slowest_recent_request_and_forgets() {
    let mut h = Health::default();
    let mut rng = Rng::seeded(3);
    let t0 = Instant::now();
    assert_eq!(h.expected_latency(t0), None);
    assert_eq!(h.time_needed(t0), MIN_REQUEST_TIME);
    let ms = Duration::from_millis;
    for took in [20, 1_500, 30] {
        h.observe(t0, ms(took), Observation::Ok, &policy(4), &mut rng);
    }
    assert_eq!(h.expected_latency(t0), Some(ms(1_500)));
    for _ in 0..LATENCY_SAMPLES {
        h.observe(t0, ms(40), Observation::Ok, &policy(4), &mut rng);
    }
    assert_eq!(h.expected_latency(t0), Some(ms(40)), "only the recent ones");
    let later = t0 + LATENCY_MEMORY;
    assert_eq!(h.expected_latency(later), None, "old samples expire");
}

#[test]
fn backoff_grows_exponentially_within_full_jitter_bounds() {
    let mut rng = Rng::seeded(11);
    let base = Duration::from_millis(100);
    let cap = Duration::from_secs(5);
    for attempt in 0..8 {
        let ceiling = (base * 2u32.pow(attempt)).min(cap);
        let draws: Vec<Duration> = (0..300)
            .map(|_| backoff(attempt, base, cap, &mut rng))
            .collect();
        assert!(draws.iter().all(|d| *d <= ceiling), "attempt {attempt}");
        let max = *draws.iter().max().unwrap();
        assert!(
            max > ceiling * 3 / 4,
            "attempt {attempt}: uses the whole range, max {max:?}"
        );
        let min = *draws.iter().min().unwrap();
        assert!(
            min < ceiling / 4,
            "attempt {attempt}: full jitter reaches low values, min {min:?}"
        );
    }
}

#[test]
fn backoff_never_overflows() {
    let mut rng = Rng::seeded(5);
    let cap = Duration::from_secs(20);
    for attempt in [31, 32, 63, 64, 127, 128, 1000, u32::MAX] {
        assert!(backoff(attempt, Duration::from_millis(100), cap, &mut rng) <= cap);
    }
    let huge = Duration::MAX;
    assert!(backoff(u32::MAX, huge, huge, &mut rng) <= huge);
    assert_eq!(backoff(3, Duration::ZERO, cap, &mut rng), Duration::ZERO);
    assert_eq!(
        backoff(3, Duration::from_millis(100), Duration::ZERO, &mut rng),
        Duration::ZERO
    );
}

#[test]
fn an_answer_is_observed_by_what_kinesis_did_with_it() {
    use crate::delivery::outcome::{Outcome, Settlement};
    use crate::store::buffer::Fate;
    let ms = Duration::from_millis;
    let budget = ms(60);
    // (resend, throttled, resent events, records accepted)
    let answer = |resend: &[usize], throttled: usize, resent: u64, records_ok: u64| {
        let outcome = Outcome {
            delivered: records_ok as usize,
            resend: resend.to_vec(),
            throttled,
            fatal: None,
            unconfirmed: false,
        };
        let settled = Settlement {
            fates: vec![Fate::Gone; 4],
            resent,
            records_ok,
            bytes_ok: records_ok * 100,
            unconfirmed: false,
            dropped: None,
        };
        (outcome, settled)
    };
    // (name, answer, cut, small, took, observation)
    let cases = [
        (
            "all delivered",
            answer(&[], 0, 0, 4),
            false,
            true,
            ms(5),
            Observation::Ok,
        ),
        (
            "some accepted",
            answer(&[1], 0, 1, 3),
            false,
            true,
            ms(5),
            Observation::Partial,
        ),
        (
            "all throttled: the stream is busy, Kinesis answers",
            answer(&[0, 1], 2, 2, 0),
            false,
            true,
            ms(5),
            Observation::Partial,
        ),
        (
            "all refused, not for throughput",
            answer(&[0, 1], 1, 2, 0),
            false,
            true,
            ms(5),
            Observation::Retry,
        ),
        (
            "a large request cut at the budget was long",
            answer(&[0, 1], 0, 2, 0),
            true,
            false,
            ms(59),
            Observation::Cut,
        ),
        (
            "a small request cut right after it started",
            answer(&[0, 1], 0, 2, 0),
            true,
            true,
            ms(10),
            Observation::Cut,
        ),
        (
            "a small request cut after most of the budget: Kinesis hangs",
            answer(&[0, 1], 0, 2, 0),
            true,
            true,
            ms(40),
            Observation::Retry,
        ),
    ];
    for (name, (outcome, settled), cut, small, took, want) in cases {
        assert_eq!(
            observation(&outcome, &settled, cut, small, took, budget),
            want,
            "{name}"
        );
    }
}
