//! When telemetry goes out, black box: held invocations, deadlines, and a Kinesis slower
//! than the windows allow. Assertions are about what happened (which events were in the
//! stream when the extension came back, whether a deadline was passed, how many records
//! were written), with generous bounds where time is involved.

use std::time::{Duration, Instant};

use kte_test_support as support;

use support::{Lambda, LambdaOptions};

const T: Duration = Duration::from_secs(10);

/// The extension's own pacing defaults, the added-time budget included (the harness
/// otherwise widens it for tests about delivery).
fn opts() -> LambdaOptions {
    LambdaOptions::default()
        .binary(support::extension_under_test!())
        .env("KINESIS_TELEMETRY_BUFFERING_TIMEOUT_MS", "25")
        .unset("KINESIS_TELEMETRY_MAX_ADDED_MS")
}

/// When the fake Kinesis stored the record holding `text` (as Lambda sent it).
fn stored_at(l: &Lambda, text: &str) -> Option<Instant> {
    let requests = l.kinesis.requests();
    let records = l.kinesis.records();
    let delivered = l.delivered();
    // `delivered` follows the stored records' order, event by event.
    let mut i = 0;
    for r in &records {
        let n = support::telemetry_records::decode(&r.data).unwrap().1.len();
        for (_, e) in &delivered[i..i + n] {
            if e.original == l.as_delivered(text) {
                return requests[r.request_index].answered_at;
            }
        }
        i += n;
    }
    None
}

/// `end`: every invocation's telemetry, up to its runtimeDone, is in the stream before the
/// extension calls `/event/next` (when Lambda would freeze the sandbox).
#[test]
fn end_delivers_each_invocation_before_it_returns() {
    let mut l = Lambda::start(opts().env("KINESIS_TELEMETRY_FLUSH_STRATEGY", "end"));
    for _ in 0..5 {
        let before = l.pushed().len();
        let nexts = l.runtime.next_call_count();
        l.invoke(1);
        let back = l.runtime.next_call(nexts).expect("came back").received_at;
        for text in &l.pushed()[before..] {
            if text.contains("platform.report") {
                continue; // the previous invocation's: Lambda sends it after /event/next
            }
            let at = stored_at(&l, text).unwrap_or_else(|| panic!("never stored: {text}"));
            assert!(at <= back, "stored after /event/next: {text}");
        }
    }
    let out = l.shutdown();
    assert!(out.exited_ok_before_deadline());
    l.assert_each_event_delivered_once();
}

/// A function that runs until its deadline never sends runtimeDone in time: the held window
/// must still end before the deadline, minus the margin, and say so once.
#[test]
fn a_held_invocation_never_passes_its_deadline() {
    let mut l = Lambda::start(opts().env("KINESIS_TELEMETRY_FLUSH_STRATEGY", "end"));
    for i in 0..2 {
        let nexts = l.runtime.next_call_count();
        let delivered = l.runtime.delivered().len();
        let id = format!("deadline-{i}");
        l.runtime.invoke_with(&id, Duration::from_millis(600));
        assert!(l.runtime.wait_delivered(delivered + 1, T));
        let start = l.events.platform_start(&id);
        l.push(&start);
        let line = l.events.function_text(&id);
        l.push(&line);
        assert!(l.runtime.wait_for_next_calls(nexts + 1, T));
        let invoke = l.runtime.delivered()[delivered].clone();
        let back = l.runtime.next_call(nexts).unwrap().received_at;
        // deadlineMs is the delivery time plus the timeout given.
        let deadline = invoke.delivered_at + Duration::from_millis(600);
        assert!(
            back + Duration::from_millis(50) <= deadline,
            "held to {:?} before the deadline (margin 100 ms)",
            deadline.saturating_duration_since(back)
        );
        assert!(
            back >= invoke.delivered_at + Duration::from_millis(300),
            "it did hold, waiting for runtimeDone"
        );
        // The runtime finally reports, late (timeout).
        let done = l.events.runtime_done(&id, Duration::from_millis(600));
        l.push(&done);
    }
    let warnings = l.log_lines_with("runtimeDone did not arrive").len();
    assert_eq!(warnings, 1, "said once\n{}", l.log_text());
    let out = l.shutdown();
    assert!(out.exited_ok_before_deadline());
    l.assert_each_event_delivered_once();
}

/// Kinesis slower than any invocation window (1.5 s answers, 1 s timeout): requests that
/// cannot finish are not started, so invocations are not stretched and records are not
/// written again and again; the data waits for SHUTDOWN, whose window can hold a request.
#[test]
fn a_slow_kinesis_neither_stretches_invocations_nor_multiplies_records() {
    let mut o = opts()
        .env("KINESIS_TELEMETRY_FRESHNESS_MS", "0")
        .env("KINESIS_TELEMETRY_REQUEST_TIMEOUT_MS", "5000");
    o.runtime.function_timeout = Duration::from_secs(1);
    let mut l = Lambda::start(o);
    l.kinesis.set_latency(Duration::from_millis(1_500));
    l.invoke(8);
    let held: Vec<Duration> = l
        .runtime
        .time_to_next_after_each_event()
        .into_iter()
        .filter_map(|(_, back)| back)
        .collect();
    let long = held
        .iter()
        .filter(|d| **d > Duration::from_millis(500))
        .count();
    assert!(
        long <= 2,
        "only the first window(s), before the latency is known, pay: {held:?}"
    );
    let out = l.shutdown();
    assert!(out.exited_ok_before_deadline(), "{out:?}\n{}", l.log_text());
    let events = l.pushed().len();
    let stored = l.events_delivered().len();
    assert!(
        stored <= events * 2,
        "{stored} events stored for {events} sent: resends are bounded"
    );
    assert!(
        l.log().iter().any(|x| x.contains("Kinesis answers in about")
            || x.contains("did not answer in time")),
        "says why once\n{}",
        l.log_text()
    );
    // Every event is in the stream or counted as dropped (none silently lost).
    let delivered = l.summary_count("delivered").unwrap();
    let dropped = l.summary_count("dropped").unwrap();
    assert_eq!(
        delivered + dropped,
        l.summary_count("received").unwrap(),
        "{:?}",
        l.summary_line()
    );
}

/// Slow Kinesis at SHUTDOWN: whatever the deadline leaves is counted, with its reason, and
/// the process still exits at least 100 ms before the deadline.
#[test]
fn a_slow_kinesis_at_shutdown_loses_nothing_uncounted_and_exits_in_time() {
    // Small requests: the drain needs more 1-second requests than SHUTDOWN's window holds.
    let mut o = opts()
        .env("KINESIS_TELEMETRY_FLUSH_STRATEGY", "background")
        .env("KINESIS_TELEMETRY_RECORD_FORMAT", "event")
        .env("KINESIS_TELEMETRY_MAX_RECORDS_PER_REQUEST", "20");
    o.runtime.function_timeout = Duration::from_secs(1);
    let mut l = Lambda::start(o);
    l.kinesis.set_latency(Duration::from_millis(1_000));
    l.invoke(30);
    let out = l.shutdown();
    assert!(out.exited_ok_before_deadline(), "{out:?}\n{}", l.log_text());
    assert!(
        out.margin_ms.is_some_and(|m| m >= 100),
        "exits at least 100 ms before the deadline: {out:?}"
    );
    let received = l.summary_count("received").unwrap();
    let delivered = l.summary_count("delivered").unwrap();
    let dropped = l.summary_count("dropped").unwrap();
    assert_eq!(l.summary_count("still_buffered"), Some(0));
    assert_eq!(delivered + dropped, received, "{:?}", l.summary_line());
    let stored = l.events_delivered().len() as u64;
    let in_doubt = l.summary_count("in_doubt").unwrap_or(0);
    assert!(
        stored >= delivered && stored <= delivered + in_doubt.max(dropped),
        "the stream holds what was counted delivered ({stored} vs {delivered}): {:?}",
        l.summary_line()
    );
    assert!(
        dropped > 0,
        "the deadline left some: {:?}",
        l.summary_line()
    );
    assert_eq!(l.summary_count("shutdown_deadline"), Some(dropped));
    assert!(
        l.log()
            .iter()
            .any(|x| x.contains("SHUTDOWN deadline reached")),
        "{}",
        l.log_text()
    );
}

/// Every request failing (503) through 15 invocations, 40 ms apart, with a backoff cap of
/// 60 s: at least 8 failures in a row for the backoff to grow on (25 ms × 2^7 = 3.2 s, past
/// SHUTDOWN's window), nothing in the stream; then Kinesis takes records again. (Throttling
/// alone is not a failure: the send rate paces it, see `tests/records.rs`.)
fn failing_until_the_backoff_has_grown() -> Lambda {
    let mut l = Lambda::start(
        opts()
            .env("KINESIS_TELEMETRY_FLUSH_STRATEGY", "background")
            .env("KINESIS_TELEMETRY_FRESHNESS_MS", "0")
            .env("KINESIS_TELEMETRY_MAX_ATTEMPTS", "2")
            .env("KINESIS_TELEMETRY_BACKOFF_MAX_MS", "60000")
            // Functions that run long enough for a probe while Kinesis fails.
            .run_for(Duration::from_millis(100)),
    );
    l.kinesis.fail_next_requests(1_000_000, 503);
    for _ in 0..15 {
        l.invoke(1);
        std::thread::sleep(Duration::from_millis(40));
    }
    let failed = l.kinesis.stats().rejected;
    assert!(
        failed >= 8,
        "the backoff had {failed} failures to grow on\n{}",
        l.log_text()
    );
    assert!(l.kinesis.records().is_empty());
    l.kinesis.clear_faults();
    l
}

/// Failures long enough for the retries' backoff to grow past SHUTDOWN's window (a 60 s
/// cap): the drain does not wait the backoff out, and does not give up on it; it retries at
/// the base spacing, so once Kinesis takes records again everything is in the stream before
/// the deadline.
#[test]
fn a_backoff_grown_by_failures_does_not_cost_the_shutdown_drain() {
    let mut l = failing_until_the_backoff_has_grown();
    let out = l.shutdown();
    assert!(out.exited_ok_before_deadline(), "{out:?}\n{}", l.log_text());
    assert_eq!(
        l.summary_count("dropped"),
        Some(0),
        "{:?}",
        l.summary_line()
    );
    l.assert_each_event_delivered_once();
}

/// While Kinesis is failing each invocation makes one probe, however far the retries'
/// backoff has grown: when Kinesis takes records again, the next invocations deliver what
/// waited instead of sitting out a backoff of up to a minute while the buffer fills.
#[test]
fn after_a_long_outage_the_next_invocation_probes_and_delivers() {
    let mut l = failing_until_the_backoff_has_grown();
    for _ in 0..3 {
        l.invoke(1);
        std::thread::sleep(Duration::from_millis(40));
    }
    assert!(
        l.log()
            .iter()
            .any(|x| x.contains("Kinesis accepts records again")),
        "recovered within three invocations\n{}",
        l.log_text()
    );
    assert!(!l.kinesis.records().is_empty());
    let out = l.shutdown();
    assert!(out.exited_ok_before_deadline());
    l.assert_each_event_delivered_once();
}
