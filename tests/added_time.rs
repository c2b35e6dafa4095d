//! The function's time belongs to the function, black box: whatever Kinesis does
//! (unreachable, hanging, slow, failing, throttling, dropping connections), each invocation
//! is released within the added-time budget, long before the fault's own delay; nothing is
//! in flight to Kinesis when the extension calls `/event/next`; and once Kinesis is back,
//! SHUTDOWN delivers everything, at least once (a cut request may have landed: its resend
//! is counted as unconfirmed).
//!
//! Bounds are generous (the machine is shared); the benchmark's fault table gives the real
//! figures.

use std::collections::HashMap;
use std::time::Duration;

use kte_test_support as support;

use support::fake_kinesis::KinesisFault;
use support::fake_runtime::EventKind;
use support::{telemetry_records, Lambda, LambdaOptions};

/// Far below every fault's own delay (1.5 s, or never), far above the budget (60 ms after
/// runtimeDone, which comes 25 ms after the function's lines).
const RELEASED_WITHIN: Duration = Duration::from_millis(800);

/// The extension's own defaults, the added-time budget included (the harness otherwise
/// widens it for tests about delivery).
fn opts() -> LambdaOptions {
    LambdaOptions::default()
        .binary(support::extension_under_test!())
        .env("KINESIS_TELEMETRY_BUFFERING_TIMEOUT_MS", "25")
        .unset("KINESIS_TELEMETRY_MAX_ADDED_MS")
}

/// INVOKE → the extension's next `/event/next`, for each invocation.
fn released_after(l: &Lambda) -> Vec<Duration> {
    l.runtime
        .time_to_next_after_each_event()
        .into_iter()
        .filter(|(kind, _)| *kind == EventKind::Invoke)
        .map(|(_, back)| back.expect("the extension came back"))
        .collect()
}

/// Every pushed event is in the stream at least once; copies only of events whose request
/// was cut or timed out (counted as unconfirmed resends).
fn assert_delivered_at_least_once(l: &Lambda) {
    let expected = l.expected();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (_, e) in l.delivered() {
        let id = e
            .source
            .as_ref()
            .and_then(telemetry_records::event_id)
            .expect("an eventId")
            .to_string();
        *seen.entry(format!("{id} {}", e.original)).or_default() += 1;
    }
    let distinct: Vec<String> = seen
        .keys()
        .map(|k| k.split_once(' ').unwrap().1.to_string())
        .collect();
    let diff = support::multiset_diff(&expected, &distinct);
    assert!(diff.is_empty(), "{}\n{}", diff.join("\n"), l.log_text());
    let copies: usize = seen.values().map(|n| n - 1).sum();
    let unconfirmed = l.summary_count("unconfirmed").unwrap_or(0) as usize;
    assert!(
        copies <= unconfirmed,
        "{copies} copies but {unconfirmed} unconfirmed resends\n{}",
        l.log_text()
    );
}

/// Started, with the start-up connect probe over (it runs off the invocation path; a fault
/// applied while it connects would leave its connect pending for its own timeout).
fn started() -> Lambda {
    let l = Lambda::start(opts());
    let until = std::time::Instant::now() + Duration::from_secs(5);
    while l.kinesis.connections_accepted() == 0 && std::time::Instant::now() < until {
        std::thread::sleep(Duration::from_millis(5));
    }
    l
}

fn under(fault: KinesisFault) {
    let mut l = started();
    l.kinesis.apply(fault).expect("the fault is in place");
    let mut in_flight = Vec::new();
    for _ in 0..6 {
        l.invoke(1);
        in_flight.push(l.kinesis.in_flight().expect("/proc/net/tcp is readable"));
    }
    let released = released_after(&l);
    assert!(
        released.iter().all(|d| *d < RELEASED_WITHIN),
        "{fault}: invocations released after {released:?}\n{}",
        l.log_text()
    );
    assert!(
        in_flight.iter().all(|f| !f.any()),
        "{fault}: in flight to Kinesis at /event/next: {in_flight:?}\n{}",
        l.log_text()
    );
    l.kinesis.heal();
    l.invoke(2);
    let out = l.shutdown();
    assert!(
        out.exited_ok_before_deadline(),
        "{fault}: {out:?}\n{}",
        l.log_text()
    );
    assert_eq!(
        l.summary_count("dropped"),
        Some(0),
        "{:?}",
        l.summary_line()
    );
    assert_delivered_at_least_once(&l);
}

#[test]
fn unreachable_kinesis_connects_hang() {
    under(KinesisFault::HangConnect);
}

#[test]
fn kinesis_accepts_connections_and_never_answers() {
    under(KinesisFault::NoAnswer);
}

#[test]
fn kinesis_answers_in_one_and_a_half_seconds() {
    under(KinesisFault::Slow(Duration::from_millis(1_500)));
}

#[test]
fn kinesis_fails_every_request() {
    under(KinesisFault::Fail5xx);
}

#[test]
fn kinesis_throttles_every_record() {
    under(KinesisFault::Throttle);
}

#[test]
fn kinesis_drops_every_connection() {
    under(KinesisFault::Drop);
}

/// A request still in flight when the budget ends (it started while the function ran, with a
/// timeout bounded only by the deadline) is cut, counted, and its records resent, not lost.
#[test]
fn a_request_cut_at_the_budget_is_counted_and_resent() {
    let mut l = Lambda::start(
        opts()
            .env("KINESIS_TELEMETRY_FRESHNESS_MS", "0")
            .run_for(Duration::from_millis(200)),
    );
    l.kinesis.apply(KinesisFault::NoAnswer).unwrap();
    l.invoke(1); // held (the first invocations are); its request goes out while it runs
    let released = released_after(&l);
    assert!(
        released[0] < Duration::from_millis(200) + RELEASED_WITHIN,
        "{released:?}"
    );
    l.kinesis.heal();
    let out = l.shutdown();
    assert!(out.exited_ok_before_deadline(), "{out:?}\n{}", l.log_text());
    assert!(
        l.summary_count("abandoned").unwrap_or(0) >= 1,
        "{:?}",
        l.summary_line()
    );
    assert!(l.summary_count("resent_events").unwrap_or(0) >= 1);
    assert_delivered_at_least_once(&l);
}
