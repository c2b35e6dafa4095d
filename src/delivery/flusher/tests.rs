//! The flusher thread against a scripted Kinesis: windows, holds, retries, shutdown.

use super::*;
use crate::delivery::pacing::Strategy;
use crate::delivery::records::RecordFormat;
use crate::event::{self, Event, Key, Kind as EventKind};
use crate::kinesis::limits::Limits;
use crate::kinesis::{Interrupt, PutRecordsResponse, Record, RecordOutcome};
use crate::metrics::{DimensionValues, MetricsSettings};
use crate::store::buffer::{BufferCap, Entry, Mark};
use std::collections::VecDeque;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Mutex;

type Answer = Box<dyn FnMut(&[Record<'_>]) -> Result<PutRecordsResponse, RequestError> + Send>;

#[derive(Default)]
struct Log {
    /// Record data of every call, as sent.
    calls: Vec<Vec<Vec<u8>>>,
    /// `drop_connections` calls.
    pools_dropped: usize,
    starts: Vec<Instant>,
    timeouts: Vec<Duration>,
}

struct Scripted {
    answers: VecDeque<Answer>,
    log: Arc<Mutex<Log>>,
    interrupt: Interrupt,
}

impl Sink for Scripted {
    fn put(
        &mut self,
        records: &[Record<'_>],
        timeout: Duration,
        _connect_timeout: Duration,
    ) -> Result<PutRecordsResponse, RequestError> {
        {
            let mut log = self.log.lock().unwrap();
            log.starts.push(Instant::now());
            log.timeouts.push(timeout);
            log.calls
                .push(records.iter().map(|r| r.data.to_vec()).collect());
        }
        match self.answers.pop_front() {
            Some(mut answer) => answer(records),
            None => ok(records),
        }
    }

    fn fix_hint(&self, _err: &RequestError) -> String {
        "fix it".into()
    }

    fn endpoint(&self) -> String {
        "http://scripted".into()
    }

    fn interrupt(&self) -> Option<Interrupt> {
        Some(self.interrupt.clone())
    }

    fn drop_connections(&mut self) {
        self.log.lock().unwrap().pools_dropped += 1;
    }
}

fn ok(records: &[Record<'_>]) -> Result<PutRecordsResponse, RequestError> {
    Ok(PutRecordsResponse {
        records: records.iter().map(|_| RecordOutcome::Ok).collect(),
    })
}

/// Throttles the records at `failed` indices, accepts the rest.
fn throttle(failed: &'static [usize]) -> Answer {
    Box::new(move |records| {
        Ok(PutRecordsResponse {
            records: (0..records.len())
                .map(|i| {
                    if failed.contains(&i) {
                        RecordOutcome::Failed {
                            code: "ProvisionedThroughputExceededException".into(),
                            message: "Rate exceeded for shard".into(),
                        }
                    } else {
                        RecordOutcome::Ok
                    }
                })
                .collect(),
        })
    })
}

fn http_error(status: u16, code: &'static str) -> Answer {
    Box::new(move |_| {
        Err(RequestError::Http {
            status,
            code: code.into(),
            message: "scripted".into(),
        })
    })
}

/// Answers after `ms`, unless the lifecycle loop cuts the request first.
fn hang(ms: u64, interrupt: Interrupt) -> Answer {
    Box::new(move |records| {
        let seen = interrupt.generation();
        let until = Instant::now() + Duration::from_millis(ms);
        while Instant::now() < until {
            if interrupt.generation() != seen {
                return Err(RequestError::Abandoned);
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        ok(records)
    })
}

fn slow(ms: u64) -> Answer {
    Box::new(move |records| {
        std::thread::sleep(Duration::from_millis(ms));
        ok(records)
    })
}

fn settings(strategy: Strategy, freshness_ms: u64, format: RecordFormat) -> Settings {
    Settings {
        pacing: Pacing {
            strategy,
            freshness: Duration::from_millis(freshness_ms),
            flush_events: 500,
            flush_bytes: 1 << 20,
            max_added: Duration::from_secs(3),
        },
        records: RecordSettings {
            format,
            target_bytes: 25_000,
            partition_key: crate::event::key::PartitionKeyMode::Random,
            limits: Limits::default(),
        },
        http: Http {
            connect_timeout: Duration::from_secs(1),
            request_timeout: Duration::from_secs(2),
            ca_file: None,
            max_attempts: 4,
            backoff_base: Duration::from_millis(1),
            backoff_max: Duration::from_millis(5),
        },
        shutdown_grace: Duration::from_millis(500),
        buffering_timeout: Duration::from_millis(25),
    }
}

struct Rig {
    interrupt: Interrupt,
    handle: FlusherHandle,
    buffer: Arc<Buffer>,
    stats: Arc<Stats>,
    log: Arc<Mutex<Log>>,
}

fn rig(s: Settings, answers: Vec<Answer>) -> Rig {
    rig_with(s, |_| answers)
}

/// A rig whose answers may cut short at the interrupt.
fn rig_with(s: Settings, answers: impl FnOnce(&Interrupt) -> Vec<Answer>) -> Rig {
    let interrupt = Interrupt::new(ureq::Agent::new_with_defaults());
    let answers = answers(&interrupt);
    let log = Arc::new(Mutex::new(Log::default()));
    let (parts, buffer, stats) = parts(s, answers, &log, &interrupt);
    let handle = spawn(parts).unwrap();
    Rig {
        interrupt,
        handle,
        buffer,
        stats,
        log,
    }
}

fn parts(
    s: Settings,
    answers: Vec<Answer>,
    log: &Arc<Mutex<Log>>,
    interrupt: &Interrupt,
) -> (Parts<Scripted>, Arc<Buffer>, Arc<Stats>) {
    let stats = Arc::new(Stats::default());
    let cap = BufferCap {
        max_events: 100_000,
        max_bytes: 8 << 20,
    };
    let (buffer, woken) = Buffer::new(cap, None);
    let buffer = Arc::new(buffer);
    let metrics = Metrics::new(
        MetricsSettings {
            enabled: false,
            namespace: "n".into(),
            dimensions: Vec::new(),
            interval: Duration::from_secs(60),
        },
        DimensionValues::default(),
    );
    let parts = Parts {
        sink: Scripted {
            answers: answers.into(),
            log: log.clone(),
            interrupt: interrupt.clone(),
        },
        settings: s,
        stats: stats.clone(),
        buffer: buffer.clone(),
        woken,
        metrics,
    };
    (parts, buffer, stats)
}

/// Admits event texts as the receiver would (marks for runtimeDone and report).
fn admit(buffer: &Buffer, texts: &[String]) {
    let body = format!("[{}]", texts.join(","));
    let items = event::parse_batch(body.as_bytes()).unwrap();
    let entries = items
        .iter()
        .map(|i| Entry {
            event: Some(Event::new(i.raw.into(), Instant::now(), Key::Random)),
            mark: match (&i.kind, i.request_id.as_deref()) {
                (EventKind::RuntimeDone, Some(id)) => Some(Mark::Done(id.into())),
                (EventKind::Report, Some(id)) => Some(Mark::Report(id.into())),
                _ => None,
            },
        })
        .collect();
    buffer.admit(entries);
}

fn lines(tag: &str, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!(r#"{{"time":"t","type":"function","record":"{tag}-{i}"}}"#))
        .collect()
}

fn done(id: &str) -> String {
    format!(
        r#"{{"time":"t","type":"platform.runtimeDone","record":{{"requestId":"{id}","status":"success"}}}}"#
    )
}

fn report(id: &str) -> String {
    format!(r#"{{"time":"t","type":"platform.report","record":{{"requestId":"{id}"}}}}"#)
}

/// The `record` of every event delivered, in the order sent (NDJSON records split).
fn sent(log: &Log) -> Vec<String> {
    log.calls
        .iter()
        .flatten()
        .flat_map(|data| {
            String::from_utf8(data.clone())
                .unwrap()
                .split_terminator('\n')
                .map(|l| {
                    let v: serde_json::Value = serde_json::from_str(l).unwrap();
                    v["record"]
                        .as_str()
                        .map_or(v["type"].to_string(), str::to_string)
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

/// An invocation with nothing to send whose runtimeDone arrives `ms` after its INVOKE: the
/// flusher learns how long functions run.
fn ran(r: &mut Rig, id: &str, ms: u64) {
    let invoked = Instant::now();
    r.handle.invoke(id, in_ms(3_000));
    std::thread::sleep(Duration::from_millis(ms).saturating_sub(invoked.elapsed()));
    admit(&r.buffer, &[done(id)]);
}

fn in_ms(ms: u64) -> Instant {
    Instant::now() + Duration::from_millis(ms)
}

fn delivered(r: &Rig) -> u64 {
    r.stats.delivered.load(std::sync::atomic::Ordering::Relaxed)
}

#[test]
fn nothing_due_means_no_request_and_nothing_lost() {
    let mut r = rig(
        settings(Strategy::Background, 5_000, RecordFormat::Event),
        vec![],
    );
    admit(&r.buffer, &lines("a", 3));
    let started = Instant::now();
    r.handle.invoke("r-1", in_ms(3_000));
    assert!(started.elapsed() < Duration::from_millis(500));
    assert!(r.log.lock().unwrap().calls.is_empty());
    assert_eq!(r.buffer.held(), 3);
}

#[test]
fn a_due_flush_sends_everything_in_order_in_full_requests() {
    let mut r = rig(
        settings(Strategy::Background, 0, RecordFormat::Event),
        vec![],
    );
    admit(&r.buffer, &lines("e", 1_200));
    r.handle.invoke("r-1", in_ms(3_000));
    let log = r.log.lock().unwrap();
    let sizes: Vec<usize> = log.calls.iter().map(Vec::len).collect();
    assert_eq!(sizes, [500, 500, 200]);
    let expected: Vec<String> = (0..1_200).map(|i| format!("e-{i}")).collect();
    assert_eq!(sent(&log), expected);
    assert_eq!(delivered(&r), 1_200);
    assert_eq!(r.buffer.held(), 0);
}

#[test]
fn packed_ndjson_puts_many_events_in_one_record() {
    let mut r = rig(
        settings(Strategy::Background, 0, RecordFormat::Ndjson),
        vec![],
    );
    admit(&r.buffer, &lines("n", 100));
    r.handle.invoke("r-1", in_ms(3_000));
    let log = r.log.lock().unwrap();
    assert_eq!(log.calls.len(), 1);
    assert_eq!(log.calls[0].len(), 1, "100 small events, one record");
    let expected: Vec<String> = (0..100).map(|i| format!("n-{i}")).collect();
    assert_eq!(sent(&log), expected);
}

#[test]
fn throttled_records_alone_are_resent() {
    let mut r = rig(
        settings(Strategy::Background, 0, RecordFormat::Event),
        vec![throttle(&[1, 3])],
    );
    admit(&r.buffer, &lines("t", 5));
    r.handle.invoke("r-1", in_ms(3_000));
    // The throttled ones wait for the stream's send rate: past this function's run (not
    // known yet), so for the next window, here SHUTDOWN.
    assert!(r.handle.shutdown(in_ms(1_500), None));
    let log = r.log.lock().unwrap();
    assert_eq!(log.calls.len(), 2);
    let resent: Vec<String> = sent(&Log {
        calls: vec![log.calls[1].clone()],
        ..Log::default()
    });
    assert_eq!(resent, ["t-1", "t-3"]);
    assert_eq!(delivered(&r), 5);
    let get = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(get(&r.stats.resent_events), 2);
    assert_eq!(get(&r.stats.retry_requests), 1);
    assert_eq!(get(&r.stats.throttled), 2);
}

#[test]
fn a_held_invocation_sends_while_it_runs_and_returns_once_its_runtime_done_is_delivered() {
    let mut r = rig(settings(Strategy::End, 1_000, RecordFormat::Ndjson), vec![]);
    let buffer = r.buffer.clone();
    let feeder = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(30));
        admit(&buffer, &lines("during", 5));
        std::thread::sleep(Duration::from_millis(30));
        let mut last = lines("end", 2);
        last.push(done("r-7"));
        admit(&buffer, &last);
    });
    let started = Instant::now();
    r.handle.invoke("r-7", in_ms(3_000));
    let took = started.elapsed();
    feeder.join().unwrap();
    assert!(
        took >= Duration::from_millis(55),
        "held until runtimeDone: {took:?}"
    );
    assert!(took < Duration::from_millis(1_500), "{took:?}");
    let log = r.log.lock().unwrap();
    let got = sent(&log);
    assert_eq!(got.len(), 8, "{got:?}");
    assert_eq!(
        r.buffer.held(),
        0,
        "everything up to runtimeDone is in the stream"
    );
}

#[test]
fn a_held_invocation_without_runtime_done_ends_before_its_deadline() {
    let mut r = rig(
        settings(Strategy::End, 60_000, RecordFormat::Ndjson),
        vec![],
    );
    admit(&r.buffer, &lines("x", 2));
    let started = Instant::now();
    r.handle.invoke("r-8", in_ms(400));
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_millis(400),
        "ends at the deadline minus the margin: {took:?}"
    );
    assert_eq!(r.buffer.held(), 2, "kept for the next window");
}

#[test]
fn no_request_starts_that_the_window_cannot_hold() {
    let mut r = rig(
        settings(Strategy::Background, 0, RecordFormat::Event),
        vec![slow(300)],
    );
    admit(&r.buffer, &lines("w", 3));
    r.handle.invoke("r-1", in_ms(3_000)); // learns that Kinesis takes 300 ms
    assert_eq!(delivered(&r), 3);
    admit(&r.buffer, &lines("w2", 3));
    let started = Instant::now();
    r.handle.invoke("r-2", in_ms(300)); // window ends 200 ms from now
    assert!(started.elapsed() < Duration::from_millis(150));
    assert_eq!(r.log.lock().unwrap().calls.len(), 1, "no doomed request");
    assert_eq!(r.buffer.held(), 3);
    let log = r.log.lock().unwrap();
    assert!(log.timeouts[0] <= Duration::from_secs(2));
}

#[test]
fn during_an_outage_each_invocation_makes_one_probe_only() {
    let mut r = rig(
        settings(Strategy::Background, 0, RecordFormat::Event),
        (0..5)
            .map(|_| http_error(503, "ServiceUnavailable"))
            .collect(),
    );
    ran(&mut r, "r-0", 300); // its runtimeDone is the first event of four
    admit(&r.buffer, &lines("p", 3));
    r.handle.invoke("r-1", in_ms(3_000));
    assert_eq!(r.log.lock().unwrap().calls.len(), 4, "max_attempts");
    r.handle.invoke("r-2", in_ms(3_000));
    {
        let log = r.log.lock().unwrap();
        assert_eq!(log.calls.len(), 5, "one probe, no retries");
        assert_eq!(log.calls[3].len(), 4, "retries carry everything");
        assert_eq!(log.calls[4].len(), 1, "a probe carries one record");
    }
    assert_eq!(r.buffer.held(), 4);
    assert_eq!(r.stats.dropped(), Default::default());
    r.handle.invoke("r-3", in_ms(3_000));
    assert_eq!(delivered(&r), 4, "recovered");
    let log = r.log.lock().unwrap();
    let after: Vec<usize> = log.calls[5..].iter().map(Vec::len).collect();
    assert_eq!(after, [1, 3], "the probe, then full requests again");
}

#[test]
fn a_request_in_flight_at_the_budget_is_cut_and_its_records_resent() {
    let mut s = settings(Strategy::End, 0, RecordFormat::Event);
    s.pacing.max_added = Duration::from_millis(60);
    let mut r = rig_with(s, |cut| vec![hang(5_000, cut.clone())]);
    admit(&r.buffer, &lines("h", 3));
    let buffer = r.buffer.clone();
    let later = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        admit(&buffer, &[done("r-1")]);
    });
    let started = Instant::now();
    r.handle.invoke("r-1", in_ms(10_000));
    let took = started.elapsed();
    later.join().unwrap();
    assert!(
        took < Duration::from_millis(1_500),
        "released {took:?} after INVOKE (runtimeDone at 100 ms, budget 60 ms), not at the answer (5 s)"
    );
    assert_eq!(r.interrupt.generation(), 1, "the request was cut");
    assert_eq!(r.stats.abandoned_requests.load(Relaxed), 1);
    assert_eq!(
        r.buffer.held(),
        4,
        "the cut request's events (and runtimeDone) wait"
    );
    assert!(r.handle.shutdown(in_ms(1_500), None));
    assert_eq!(delivered(&r), 4, "sent again at SHUTDOWN");
    assert_eq!(
        r.stats.resent_unconfirmed.load(Relaxed),
        3,
        "they may have landed"
    );
}

#[test]
fn a_large_request_its_window_ended_is_not_a_failing_kinesis() {
    // A request of over 256 KiB times out at its window's end (its timeout was the window's
    // rest, shorter than the configured 2 s): it was long, and says nothing of Kinesis, so the
    // next invocation sends as usual instead of waiting for a run length or a recovery probe.
    let mut r = rig(
        settings(Strategy::Background, 0, RecordFormat::Event),
        vec![Box::new(|_| {
            std::thread::sleep(Duration::from_millis(30));
            Err(RequestError::Timeout(crate::kinesis::TimeoutPhase::Overall))
        })],
    );
    let pad = "p".repeat(1_000);
    let big: Vec<String> = (0..300)
        .map(|i| format!(r#"{{"time":"t","type":"function","record":"{pad}-{i}"}}"#))
        .collect();
    admit(&r.buffer, &big);
    r.handle.invoke("r-1", in_ms(400));
    {
        let log = r.log.lock().unwrap();
        assert!(
            log.timeouts[0] < Duration::from_secs(2),
            "bounded by the window"
        );
        let sent: usize = log.calls[0].iter().map(Vec::len).sum();
        assert!(sent > 256 * 1024, "a large request: {sent} bytes");
    }
    admit(&r.buffer, &lines("after", 3));
    r.handle.invoke("r-2", in_ms(3_000));
    assert_eq!(
        delivered(&r),
        303,
        "the next invocation sends: Kinesis was not judged failing"
    );
    assert_eq!(
        r.stats.abandoned_requests.load(Relaxed),
        0,
        "not cut at the budget"
    );
    assert!(r.handle.shutdown(in_ms(1_500), None));
}

#[test]
fn while_kinesis_fails_an_invocation_of_unknown_length_sends_nothing() {
    let mut r = rig(
        settings(Strategy::Background, 0, RecordFormat::Event),
        vec![http_error(503, "ServiceUnavailable")],
    );
    admit(&r.buffer, &lines("u", 3));
    r.handle.invoke("r-1", in_ms(3_000));
    assert_eq!(r.log.lock().unwrap().calls.len(), 1, "tried once, failed");
    for id in ["r-2", "r-3"] {
        let started = Instant::now();
        r.handle.invoke(id, in_ms(3_000));
        assert!(started.elapsed() < Duration::from_millis(500), "not held");
    }
    assert_eq!(
        r.log.lock().unwrap().calls.len(),
        1,
        "no run length known: no request in the functions' time"
    );
    assert!(r.handle.shutdown(in_ms(1_500), None));
    assert_eq!(delivered(&r), 3, "SHUTDOWN delivers");
}

#[test]
fn at_shutdown_a_struggling_flusher_drains_in_full_requests() {
    let mut r = rig(
        settings(Strategy::Background, 0, RecordFormat::Event),
        (0..4)
            .map(|_| http_error(503, "ServiceUnavailable"))
            .collect(),
    );
    ran(&mut r, "r-0", 300);
    admit(&r.buffer, &lines("q", 3));
    r.handle.invoke("r-1", in_ms(3_000));
    assert_eq!(r.log.lock().unwrap().calls.len(), 4, "struggling now");
    assert!(r.handle.shutdown(in_ms(1_500), None));
    assert_eq!(delivered(&r), 4, "three lines and r-0's runtimeDone");
    let log = r.log.lock().unwrap();
    assert_eq!(
        log.calls[4].len(),
        4,
        "the last window sends everything it can"
    );
}

#[test]
fn a_fatal_error_drops_exactly_the_refused_batch_and_ends_the_window() {
    let mut r = rig(
        settings(Strategy::Background, 0, RecordFormat::Event),
        vec![http_error(400, "ResourceNotFoundException")],
    );
    admit(&r.buffer, &lines("f", 700));
    r.handle.invoke("r-1", in_ms(3_000));
    assert_eq!(
        r.log.lock().unwrap().calls.len(),
        1,
        "no retry, no hot loop"
    );
    let dropped = r.stats.dropped();
    assert_eq!(
        dropped.get(&DropReason::Fatal("ResourceNotFoundException".into())),
        Some(&500)
    );
    assert_eq!(r.buffer.held(), 200);
    // SHUTDOWN is the last window: the same rule, the drain goes on with the next batch.
    assert!(r.handle.shutdown(in_ms(1_500), None));
    assert_eq!(delivered(&r), 200);
}

#[test]
fn shutdown_ends_the_grace_at_the_final_report_and_drains_everything() {
    let mut r = rig(
        settings(Strategy::Background, 60_000, RecordFormat::Ndjson),
        vec![],
    );
    admit(&r.buffer, &lines("s", 10));
    let buffer = r.buffer.clone();
    let late = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        let mut last = lines("last", 1);
        last.push(report("r-9"));
        admit(&buffer, &last);
    });
    let started = Instant::now();
    assert!(r.handle.shutdown(in_ms(1_500), Some("r-9".into())));
    late.join().unwrap();
    let took = started.elapsed();
    assert!(
        took < Duration::from_millis(450),
        "grace ended at the report: {took:?}"
    );
    assert_eq!(delivered(&r), 12);
    assert_eq!(r.buffer.held(), 0);
}

#[test]
fn shutdown_counts_what_the_deadline_leaves_behind() {
    let mut r = rig(
        settings(Strategy::Background, 0, RecordFormat::Event),
        (0..1_000)
            .map(|_| http_error(500, "InternalFailure"))
            .collect(),
    );
    admit(&r.buffer, &lines("d", 4));
    assert!(r.handle.shutdown(in_ms(80), None));
    assert_eq!(
        r.stats.dropped().get(&DropReason::ShutdownDeadline),
        Some(&4)
    );
    assert_eq!(r.buffer.held(), 0);
}

#[test]
fn managed_instances_send_on_the_flusher_s_own_clock() {
    let mut r = rig(
        settings(Strategy::Adaptive, 100, RecordFormat::Ndjson),
        vec![],
    );
    r.handle.continuous();
    admit(&r.buffer, &lines("mi", 5));
    let deadline = Instant::now() + Duration::from_secs(5);
    while delivered(&r) < 5 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(delivered(&r), 5, "sent without any INVOKE");
    assert!(r.handle.shutdown(in_ms(1_500), None));
}

#[test]
fn after_a_restore_the_generator_is_reseeded_and_the_pool_dropped() {
    // Two environments resumed from one snapshot: the same generator state in each.
    let log = Arc::new(Mutex::new(Log::default()));
    let s = || settings(Strategy::Adaptive, 100, RecordFormat::Event);
    let cut = Interrupt::new(ureq::Agent::new_with_defaults());
    let mut a = Flusher::new(parts(s(), vec![], &log, &cut).0);
    let mut b = Flusher::new(parts(s(), vec![], &log, &cut).0);
    a.rng = Rng::seeded(7);
    b.rng = a.rng.clone();
    let (mut a2, mut b2) = (a.rng.clone(), b.rng.clone());
    assert_eq!(a2.next_u64(), b2.next_u64(), "in lockstep as snapshotted");
    a.restored();
    b.restored();
    let draws = |f: &mut Flusher<Scripted>| (0..4).map(|_| f.rng.next_u64()).collect::<Vec<_>>();
    assert_ne!(draws(&mut a), draws(&mut b), "reseeded from the OS");
    assert_eq!(log.lock().unwrap().pools_dropped, 2);
}

#[test]
fn the_restore_reaches_the_flusher_before_the_window_after_it() {
    let mut r = rig(
        settings(Strategy::Adaptive, 100, RecordFormat::Event),
        vec![],
    );
    r.handle.restored();
    admit(&r.buffer, &lines("after-restore", 3));
    r.handle.shutdown(in_ms(1_500), None);
    let log = r.log.lock().unwrap();
    assert_eq!(log.pools_dropped, 1);
    assert_eq!(
        sent(&log).len(),
        3,
        "a restore is not a window: nothing lost"
    );
}
