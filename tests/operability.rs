//! Signals for operators and the optional spill to /tmp, black box: the EMF metrics line,
//! Lambda's own `platform.logsDropped`, and events that survive a Kinesis outage (and a
//! crash of the extension) in the spill file.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use kte_test_support as support;
use serde_json::Value;

use support::{Lambda, LambdaOptions};

const T: Duration = Duration::from_secs(10);

fn opts() -> LambdaOptions {
    LambdaOptions::default()
        .binary(support::extension_under_test!())
        .env("KINESIS_TELEMETRY_BUFFERING_TIMEOUT_MS", "25")
}

/// The EMF lines the extension printed on stdout.
fn emf_lines(l: &Lambda) -> Vec<Value> {
    l.log()
        .iter()
        .filter(|x| x.starts_with("{\"_aws\""))
        .map(|x| serde_json::from_str(x).expect("an EMF line is one JSON object"))
        .collect()
}

#[test]
fn a_metrics_line_at_shutdown_is_valid_emf_with_the_run_s_numbers() {
    let mut l = Lambda::start(opts());
    l.kinesis.throttle_next_records(3);
    l.invoke(5);
    let out = l.shutdown();
    assert!(out.exited_ok_before_deadline());
    l.assert_each_event_delivered_once();
    let lines = emf_lines(&l);
    assert_eq!(lines.len(), 1, "one line at SHUTDOWN, none per invocation");
    let m = &lines[0];
    let directive = &m["_aws"]["CloudWatchMetrics"][0];
    assert_eq!(directive["Namespace"], "KinesisTelemetryExtension");
    assert_eq!(
        directive["Dimensions"],
        serde_json::json!([["FunctionName"]])
    );
    assert_eq!(m["FunctionName"], "fake-function");
    assert!(m["_aws"]["Timestamp"].as_u64().unwrap() > 1_600_000_000_000);
    let units: HashMap<String, String> = directive["Metrics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| {
            let name = x["Name"].as_str().unwrap().to_string();
            assert!(m[&name].is_number(), "{name} has a value");
            (name, x["Unit"].as_str().unwrap().to_string())
        })
        .collect();
    assert_eq!(units["EventsReceived"], "Count");
    assert_eq!(units["BufferHighWaterBytes"], "Bytes");
    assert_eq!(units["KinesisLatencyP99"], "Milliseconds");
    let count = |k: &str| l.summary_count(k).unwrap();
    assert_eq!(m["EventsReceived"], count("received"));
    assert_eq!(m["EventsDelivered"], count("delivered"));
    assert_eq!(m["EventsDropped"], 0);
    assert_eq!(m["RecordsThrottled"], 3);
    assert_eq!(m["KinesisRequests"], count("requests"));
    assert!(m["BufferHighWaterBytes"].as_u64().unwrap() > 0);
}

#[test]
fn metrics_can_be_switched_off_and_named() {
    let mut l = Lambda::start(opts().env("KINESIS_TELEMETRY_METRICS", "false"));
    l.invoke(2);
    l.shutdown();
    assert!(emf_lines(&l).is_empty());
    let mut l = Lambda::start(
        opts()
            .env("KINESIS_TELEMETRY_METRICS_NAMESPACE", "Team/Telemetry")
            .env(
                "KINESIS_TELEMETRY_METRICS_DIMENSIONS",
                "FunctionName,FunctionVersion",
            ),
    );
    l.invoke(2);
    l.shutdown();
    let m = &emf_lines(&l)[0];
    assert_eq!(
        m["_aws"]["CloudWatchMetrics"][0]["Namespace"],
        "Team/Telemetry"
    );
    assert_eq!(m["FunctionVersion"], "$LATEST");
}

/// Lambda reports what it dropped because the listener fell behind: counted, in the
/// summary and the metrics, logged once per episode with what to change.
#[test]
fn lambda_s_dropped_telemetry_is_counted_and_explained() {
    let mut l = Lambda::start(opts());
    let ids = l.invoke(1);
    for n in [120, 30] {
        let dropped = serde_json::json!({
            "time": "2026-01-01T00:00:00.000Z",
            "type": "platform.logsDropped",
            "record": {"reason": "Consumer seems to have fallen behind as it has not acknowledged receipt of logs.",
                       "droppedRecords": n, "droppedBytes": n * 100}
        });
        l.push(&dropped);
    }
    let line = l.events.function_text(&ids[0]);
    l.push(&line);
    l.invoke(1);
    let out = l.shutdown();
    assert!(out.exited_ok_before_deadline());
    l.assert_each_event_delivered_once();
    assert_eq!(
        l.summary_count("lambda_dropped"),
        Some(150),
        "{:?}",
        l.summary_line()
    );
    let warnings: Vec<String> = l.log_lines_with("platform.logsDropped");
    assert_eq!(warnings.len(), 1, "{}", l.log_text());
    assert!(
        warnings[0].contains("KINESIS_TELEMETRY_BUFFERING"),
        "{}",
        warnings[0]
    );
    assert_eq!(emf_lines(&l)[0]["LambdaDroppedEvents"], 150);
}

fn spill_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("kte-spill-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// Everything is held back (nothing due, no hold) and the memory cap is 1 MiB.
fn spilling(o: LambdaOptions, dir: &std::path::Path) -> LambdaOptions {
    o.env("KINESIS_TELEMETRY_SPILL_MAX_BYTES", "16777216")
        .env("KINESIS_TELEMETRY_SPILL_DIR", dir.to_str().unwrap())
        .env("KINESIS_TELEMETRY_BUFFER_MAX_BYTES", "1048576")
        .env("KINESIS_TELEMETRY_PARTITION_KEY", "environment")
        .env("KINESIS_TELEMETRY_MAX_ATTEMPTS", "1000")
        // Functions that run long enough to send once Kinesis is back (a failing Kinesis
        // gets only the functions' own time).
        .run_for(std::time::Duration::from_millis(100))
}

/// Kinesis down (every request 503) while one invocation logs 3,000 lines of 1 KB: three
/// times the 1 MiB memory cap, all of it pushed to the extension.
fn three_mb_during_an_outage(l: &mut Lambda) {
    l.kinesis.fail_next_requests(1_000_000, 503);
    let ids = l.invoke(1);
    for _ in 0..3_000 {
        let e = l.events.function_sized(&ids[0], 1_000);
        l.push(&e);
    }
    assert!(l.runtime.wait_telemetry_idle(T));
}

/// A Kinesis outage under heavy logging: what the memory cap cannot hold goes to the spill
/// file and is sent, in order, once Kinesis accepts again. Nothing is lost.
#[test]
fn an_outage_longer_than_memory_loses_nothing_with_the_spill_on() {
    let dir = spill_dir("outage");
    let mut l = Lambda::start(spilling(opts(), &dir));
    three_mb_during_an_outage(&mut l);
    l.invoke(2);
    l.kinesis.clear_faults();
    l.invoke(3);
    let out = l.shutdown();
    assert!(out.exited_ok_before_deadline(), "{out:?}\n{}", l.log_text());
    l.assert_each_event_delivered_once();
    let spilled = l.summary_count("spilled").unwrap();
    assert!(
        spilled > 1_000,
        "the file took what memory could not: {spilled}"
    );
    assert_eq!(
        l.summary_count("dropped"),
        Some(0),
        "{:?}",
        l.summary_line()
    );
    // One key (environment): the stream holds the events in the order Lambda sent them.
    let position: HashMap<String, usize> = l
        .expected()
        .into_iter()
        .enumerate()
        .map(|(i, t)| (t, i))
        .collect();
    let order: Vec<usize> = l.events_delivered().iter().map(|t| position[t]).collect();
    let mut sorted = order.clone();
    sorted.sort_unstable();
    assert_eq!(order, sorted, "in order after recovery");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The same outage with the spill off: the loss is counted exactly, as `buffer_full`.
#[test]
fn with_the_spill_off_the_same_outage_loses_a_counted_amount() {
    let mut l = Lambda::start(
        opts()
            .env("KINESIS_TELEMETRY_BUFFER_MAX_BYTES", "1048576")
            .env("KINESIS_TELEMETRY_MAX_ATTEMPTS", "1000"),
    );
    three_mb_during_an_outage(&mut l);
    l.kinesis.clear_faults();
    l.invoke(2);
    let out = l.shutdown();
    assert!(out.exited_ok_before_deadline());
    let expected = l.expected();
    let delivered = l.events_delivered();
    let lost = expected.iter().filter(|e| !delivered.contains(e)).count() as u64;
    assert!(lost > 1_000);
    assert_eq!(
        l.summary_count("buffer_full"),
        Some(lost),
        "{:?}",
        l.summary_line()
    );
}

/// The environment's /tmp outlives a crash of the extension: the next process finds the
/// spill file and sends what it holds first, as Lambda sent it, in order.
#[test]
fn a_spill_left_by_a_crashed_process_is_sent_first_by_the_next() {
    let dir = spill_dir("crash");
    let mut first = Lambda::start(spilling(opts(), &dir));
    three_mb_during_an_outage(&mut first);
    let sent_before_crash = first.expected();
    drop(first); // SIGKILL: what was in memory is gone, the file stays.
    assert!(
        std::fs::read_dir(&dir).unwrap().count() > 0,
        "segments left in {}",
        dir.display()
    );

    let mut second = Lambda::start(spilling(opts(), &dir));
    assert!(
        second.wait_log("left by an earlier process are sent first", T),
        "{}",
        second.log_text()
    );
    second.invoke(2);
    let out = second.shutdown();
    assert!(
        out.exited_ok_before_deadline(),
        "{out:?}\n{}",
        second.log_text()
    );
    let own = second.expected();
    let recovered: Vec<String> = second
        .events_delivered()
        .into_iter()
        .filter(|t| !own.contains(t))
        .collect();
    let n = recovered.len();
    assert!(n > 1_000, "{n} events came back from the file");
    assert_eq!(
        second.summary_count("recovered"),
        Some(n as u64),
        "{:?}",
        second.summary_line()
    );
    // They are the newest of the first process's events (the ones memory could not hold),
    // in the order Lambda sent them.
    assert_eq!(
        recovered,
        sent_before_crash[sent_before_crash.len() - n..].to_vec()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// One flipped byte in a spill file left by a crashed process loses one event, counted as
/// dropped (`spill_corrupt`) beside `recovered`; every event after it is still sent, in order.
#[test]
fn a_flipped_byte_in_a_spill_left_behind_loses_one_counted_event() {
    let dir = spill_dir("flipped");
    let mut first = Lambda::start(spilling(opts(), &dir));
    three_mb_during_an_outage(&mut first);
    let sent_before_crash = first.expected();
    drop(first); // SIGKILL
    let mut segments: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    segments.sort();
    let mut bytes = std::fs::read(&segments[0]).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x10;
    std::fs::write(&segments[0], &bytes).unwrap();

    let mut second = Lambda::start(spilling(opts(), &dir));
    assert!(
        second.wait_log("1 events in 1 damaged places", T),
        "one line about the damage\n{}",
        second.log_text()
    );
    second.invoke(2);
    let out = second.shutdown();
    assert!(out.exited_ok_before_deadline(), "{out:?}");
    let own = second.expected();
    let recovered: Vec<String> = second
        .events_delivered()
        .into_iter()
        .filter(|t| !own.contains(t))
        .collect();
    let found = second.summary_count("recovered").unwrap();
    assert_eq!(
        recovered.len() as u64,
        found - 1,
        "{:?}",
        second.summary_line()
    );
    assert_eq!(second.summary_count("spill_corrupt"), Some(1));
    assert_eq!(second.summary_count("dropped"), Some(1));
    // The newest `found` events of the first process, less one, in order.
    let left = &sent_before_crash[sent_before_crash.len() - found as usize..];
    let mut missing = left.iter().filter(|e| !recovered.contains(e));
    assert!(missing.next().is_some() && missing.next().is_none());
    let kept: Vec<&String> = left.iter().filter(|e| recovered.contains(e)).collect();
    assert_eq!(kept, recovered.iter().collect::<Vec<_>>(), "in order");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A damaged file left in the spill directory is skipped with a count, never a crash.
#[test]
fn a_damaged_spill_file_is_skipped_not_fatal() {
    let dir = spill_dir("damaged");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("spill-00000000000000000001.seg"),
        b"KTESPILL\x01\x00\x00\x00\xff\xff\xff\x00garbage",
    )
    .unwrap();
    std::fs::write(
        dir.join("spill-00000000000000000002.seg"),
        b"not even a header",
    )
    .unwrap();
    let mut l = Lambda::start(spilling(opts(), &dir));
    assert!(
        l.wait_log("were skipped", T),
        "one line about the damage\n{}",
        l.log_text()
    );
    l.invoke(3);
    let out = l.shutdown();
    assert!(out.exited_ok_before_deadline());
    l.assert_each_event_delivered_once();
    let _ = std::fs::remove_dir_all(&dir);
}
