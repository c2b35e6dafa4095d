//! Sustained-load measurement for `sandbox --bench`: the extension on one core, the
//! sandbox (producer, telemetry pusher, mock Kinesis) on the other.
//!
//! Rates are in events, not records: the extension packs many events into each record
//! (NDJSON by default), so the stored records are counted through as they arrive.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;

use kte_test_support::fake_kinesis::{KinesisHandle, StoredRecord};
use kte_test_support::process::{cores, cpu_time, peak_rss_kb, pin_own_threads, pin_thread};
use kte_test_support::rng::fresh_uuid;
use kte_test_support::{clock, kpl, Lambda, LambdaOptions, RuntimeConfig};

/// Events in one stored record: KPL sub-records, NDJSON lines, or one event.
fn events_in(data: &[u8]) -> u64 {
    if kpl::has_magic(data) {
        return kpl::deaggregate(data).map_or(0, |e| e.len() as u64);
    }
    if data.ends_with(b"\n") {
        return data.iter().filter(|&&b| b == b'\n').count() as u64;
    }
    1
}

/// Events in the records stored so far, counted incrementally.
#[derive(Default)]
struct Delivered {
    records: usize,
    events: u64,
}

impl Delivered {
    fn update(&mut self, records: &[StoredRecord]) -> u64 {
        for r in &records[self.records.min(records.len())..] {
            self.events += events_in(&r.data);
        }
        self.records = records.len();
        self.events
    }

    /// Events delivered now.
    fn now(&mut self, kinesis: &KinesisHandle) -> u64 {
        kinesis.wait_until(Duration::ZERO, |_, recs| {
            self.update(recs);
            true
        });
        self.events
    }
}

/// Sustained-load measurement.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Throughput {
    pub seconds: f64,
    pub event_bytes: usize,
    pub produced: u64,
    /// Events in the records the mock Kinesis accepted, per second, after a warm-up second.
    pub delivered_per_s: f64,
    pub delivered_mb_per_s: f64,
    pub delivered: u64,
    pub invocations: u64,
    pub extension_dropped: Option<u64>,
    pub peak_rss_kb: Option<u64>,
    /// Extension CPU time divided by wall time (1.0 = one core busy).
    pub cpu_cores_used: Option<f64>,
    pub pinned: bool,
    pub max_ahead: Option<u64>,
}

/// Pushes ~`event_bytes` events as fast as the extension's listener accepts them, in
/// Lambda-sized batches, while invocations run back to back (the extension only sends
/// inside invocations), for `seconds`. The extension is pinned to one core and the
/// sandbox to another when there are two.
///
/// `max_ahead`: when set, the producer never gets more than this many events ahead of what
/// Kinesis has accepted (a closed loop: the sustained rate without loss); when `None` it
/// pushes as fast as the listener answers (overload: shows the buffer cap holding).
pub fn throughput(
    seconds: f64,
    event_bytes: usize,
    max_ahead: Option<u64>,
    env: &[(String, String)],
) -> Result<Throughput, String> {
    let pinned = cores() >= 2;
    if pinned {
        pin_thread(0, 0);
    }
    let mut opts = LambdaOptions {
        runtime: RuntimeConfig {
            function_name: "sandbox-function".to_owned(),
            telemetry_post_timeout: Duration::from_secs(10),
            ..RuntimeConfig::default()
        },
        ..LambdaOptions::default()
    };
    for (k, v) in env {
        opts = opts.env(k, v);
    }
    let mut lambda = Lambda::try_start(opts)?;
    if pinned {
        pin_own_threads(1);
    }
    let pid = lambda.pid();
    let rt = lambda.runtime.handle();
    let stop = Arc::new(AtomicBool::new(false));
    let produced = Arc::new(AtomicU64::new(0));
    let producer = {
        let (rt, stop, produced) = (rt.clone(), stop.clone(), produced.clone());
        let kinesis = lambda.kinesis.handle();
        thread::spawn(move || {
            let run = fresh_uuid();
            let pad = "x".repeat(event_bytes);
            let time = clock::iso8601_ms(SystemTime::now());
            let make = |n: u64| {
                let head = format!(
                    r#"{{"time":"{time}","type":"function","record":"sbx-{}-{n} "#,
                    &run[..8]
                );
                let fill = event_bytes.saturating_sub(head.len() + 4);
                format!("{head}{}\\n\"}}", &pad[..fill])
            };
            let per_post = (262_144 / event_bytes.max(1)).max(1) as u64;
            let mut n = 0u64;
            let mut delivered = Delivered::default();
            while !stop.load(Ordering::Relaxed) {
                if let Some(ahead) = max_ahead {
                    let waited = kinesis.wait_until(Duration::from_millis(100), |_, recs| {
                        delivered.update(recs) + ahead >= n + per_post * 4
                    });
                    if !waited {
                        continue;
                    }
                }
                for _ in 0..per_post * 4 {
                    rt.push_raw_event(make(n));
                    n += 1;
                }
                produced.store(n, Ordering::Relaxed);
                rt.flush_telemetry(Duration::from_secs(10));
            }
        })
    };
    let total = Duration::from_secs_f64(seconds + 1.0);
    let started = Instant::now();
    let mut warm: Option<(Instant, u64)> = None;
    let mut delivered = Delivered::default();
    let kinesis = lambda.kinesis.handle();
    let mut invocations = 0u64;
    let mut peak = None::<u64>;
    while started.elapsed() < total {
        if warm.is_none() && started.elapsed() >= Duration::from_secs(1) {
            warm = Some((Instant::now(), delivered.now(&kinesis)));
        }
        let before = rt.next_call_count();
        rt.invoke();
        if !rt.wait_for_next_calls(before + 1, Duration::from_secs(10)) {
            stop.store(true, Ordering::Relaxed);
            return Err(format!(
                "the extension did not come back to /event/next\n{}",
                lambda.log_text()
            ));
        }
        invocations += 1;
        if invocations.is_multiple_of(64) {
            if let Some(kb) = peak_rss_kb(pid) {
                peak = Some(peak.unwrap_or(0).max(kb));
            }
        }
    }
    let end = (Instant::now(), delivered.now(&kinesis));
    let cpu = cpu_time(pid);
    let wall = lambda.spawned_at.elapsed();
    stop.store(true, Ordering::Relaxed);
    let _ = producer.join();
    if let Some(kb) = peak_rss_kb(pid) {
        peak = Some(peak.unwrap_or(0).max(kb));
    }
    lambda.shutdown();
    let (t0, d0) = warm.unwrap_or((started, 0));
    let secs = end.0.duration_since(t0).as_secs_f64();
    let per_s = (end.1 - d0) as f64 / secs;
    Ok(Throughput {
        seconds: secs,
        event_bytes,
        produced: produced.load(Ordering::Relaxed),
        delivered_per_s: per_s.round(),
        delivered_mb_per_s: (per_s * event_bytes as f64 / 1e6 * 100.0).round() / 100.0,
        delivered: end.1,
        invocations,
        extension_dropped: lambda.summary_count("dropped"),
        peak_rss_kb: peak,
        cpu_cores_used: cpu.map(|c| (c.as_secs_f64() / wall.as_secs_f64() * 100.0).round() / 100.0),
        pinned,
        max_ahead,
    })
}
