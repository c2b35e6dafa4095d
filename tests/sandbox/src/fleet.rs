//! A fleet: N execution environments of one function, each its own extension process,
//! Runtime API, telemetry and freeze/thaw, all writing to one mock Kinesis stream (as a
//! function scaled out to N concurrent environments does). With `--shards` the stream
//! enforces Kinesis's per-shard limits, so the fleet competes for the same write capacity.
//!
//! Each environment signs with its own access key, which tells its requests and records
//! apart in the shared mock: every environment's events are checked off against its own
//! ledger, and its request bytes, PutRecords calls and throttled records counted. The
//! environments start their invocations together (after every init) at the same rate,
//! spread evenly over one interval so that they do not all invoke in the same instant.
//!
//! Over the load (the first invocation's start to the last one's end, across the fleet):
//! each shard's busy share is the data + partition key bytes it accepted from requests
//! received then, over what it could take (`bytes_per_second` × the load's length). The
//! offered load is estimated as the events emitted times the bytes an event took in the
//! records that were stored (its enrichment and its share of the record's key included).

use std::collections::BTreeMap;
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::faults::FaultSwitch;
use super::report::{count, Report};
use super::{pass, session, Echo, Pace, SandboxConfig};
use kte_test_support::fake_kinesis::{test_credentials, FakeKinesis, KinesisConfig, ShardLimits};
use kte_test_support::sigv4::Credentials;

/// The access key environment `i` signs with (20 characters, like AWS's).
pub fn environment_access_key(i: usize) -> String {
    format!("AKIDFLEETENV{i:08}")
}

fn environment_credentials(i: usize) -> Credentials {
    let base = test_credentials();
    Credentials::new(
        &environment_access_key(i),
        &base.secret_access_key,
        base.session_token.as_deref(),
    )
}

/// Where every environment waits after its init until all are ready (one that failed
/// counts as arrived, so the others do not wait for it forever).
struct StartLine {
    environments: usize,
    arrived: Mutex<usize>,
    all_there: Condvar,
}

impl StartLine {
    fn arrive(&self) {
        *self.arrived.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        self.all_there.notify_all();
    }

    fn wait(&self) {
        let mut n = self.arrived.lock().unwrap_or_else(|e| e.into_inner());
        while *n < self.environments {
            n = self.all_there.wait(n).unwrap_or_else(|e| e.into_inner());
        }
    }
}

/// One environment's place in the fleet.
pub(super) struct Seat {
    pub(super) kinesis: FakeKinesis,
    pub(super) credentials: Credentials,
    start_line: Arc<StartLine>,
    /// After the start line: this environment's share of the invocation interval.
    offset: Duration,
    arrived: Mutex<bool>,
}

impl Seat {
    /// At the start line after init: waits for every environment, then its offset.
    pub(super) fn line_up(&self) {
        self.arrive();
        self.start_line.wait();
        pass(self.offset);
    }

    fn arrive(&self) {
        let mut arrived = self.arrived.lock().unwrap_or_else(|e| e.into_inner());
        if !*arrived {
            *arrived = true;
            self.start_line.arrive();
        }
    }
}

impl Drop for Seat {
    fn drop(&mut self) {
        self.arrive();
    }
}

/// One environment's line of the fleet table (or the fleet's total).
#[derive(Clone, Debug, Default, Serialize)]
pub struct FleetLine {
    pub environment: String,
    pub emitted: u64,
    pub lost: u64,
    pub duplicated: u64,
    /// Time added per invocation (`platform.runtimeDone` → `/event/next`).
    pub added_mean_ms: f64,
    pub added_max_ms: f64,
    /// PutRecords request bodies sent (signed, base64-encoded JSON) ...
    pub request_bytes: u64,
    /// ... and the data + partition key bytes the stream stored from them.
    pub accepted_bytes: u64,
    pub sent_over_accepted: Option<f64>,
    pub put_records_calls: u64,
    pub throttled_records: u64,
    /// Invocations with a Kinesis request or connect open at `/event/next`.
    pub in_flight_invocations: u64,
    /// Exit code 0 before the SHUTDOWN deadline (every environment's, for the total).
    pub clean_exit: bool,
}

/// One shard over the fleet's load.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ShardLoad {
    pub shard_id: String,
    /// Data + partition key bytes and records accepted from requests received during the load.
    pub accepted_bytes: u64,
    pub accepted_records: u64,
    /// Accepted bytes over what the shard could take during the load.
    pub busy: f64,
    /// Records it throttled over the whole run.
    pub throttled_records: u64,
}

/// What a fleet run measured. Serialisable: `sandbox --json` prints it as is.
#[derive(Clone, Debug, Default, Serialize)]
pub struct FleetReport {
    pub environments: usize,
    pub invocations_per_environment: usize,
    pub shards: u32,
    /// Enforced per-shard limits (`None`: unlimited).
    pub shard_limits: Option<ShardLimits>,
    /// The first invocation's start to the last one's end, across the fleet.
    pub load_seconds: f64,
    /// Estimated bytes per second the fleet offered the stream, and that over the stream's
    /// write capacity.
    pub offered_bytes_per_second: f64,
    pub offered_over_capacity: Option<f64>,
    pub per_environment: Vec<FleetLine>,
    pub total: FleetLine,
    pub shard_load: Vec<ShardLoad>,
    /// Each environment's own report.
    pub reports: Vec<Report>,
    pub failures: Vec<String>,
}

impl FleetReport {
    /// Judges each environment's report ([`Report::judge`]); the fleet fails when one does.
    pub fn judge(&mut self, expect_loss: bool) {
        self.failures.clear();
        for (i, r) in self.reports.iter_mut().enumerate() {
            r.judge(expect_loss);
            for f in &r.failures {
                self.failures.push(format!("env {i}: {f}"));
            }
        }
    }

    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

/// Runs `cfg.environments` environments of the function into one mock Kinesis; returns
/// what happened (not yet judged: see [`FleetReport::judge`]).
pub fn run_fleet(cfg: &SandboxConfig) -> Result<FleetReport, String> {
    let n = cfg.environments.max(1);
    if cfg.endpoint.is_some() {
        return Err("a fleet writes to the mock Kinesis: drop --endpoint".to_owned());
    }
    if cfg.faults.outage.is_some() || cfg.workload.managed_instances {
        return Err(
            "a fleet runs default Lambda environments without a scripted outage".to_owned(),
        );
    }
    let kinesis = FakeKinesis::start(KinesisConfig {
        credentials: (0..n).map(environment_credentials).collect(),
        ..cfg.kinesis_config()
    })
    .map_err(|e| format!("fake kinesis: {e}"))?;
    FaultSwitch::new(Some(kinesis.handle()), cfg.faults.clone()).arm()?;
    let start_line = Arc::new(StartLine {
        environments: n,
        arrived: Mutex::new(0),
        all_there: Condvar::new(),
    });
    let interval = match cfg.workload.pace {
        Pace::Rate(r) if r > 0.0 => Duration::from_secs_f64(1.0 / r),
        Pace::Rate(_) => Duration::ZERO,
        Pace::Gap(g) => g,
    };
    let results: Vec<_> = thread::scope(|scope| {
        let handles: Vec<_> = (0..n)
            .map(|i| {
                let seat = Seat {
                    kinesis: kinesis.clone(),
                    credentials: environment_credentials(i),
                    start_line: start_line.clone(),
                    offset: interval.mul_f64(i as f64 / n as f64),
                    arrived: Mutex::new(false),
                };
                let mut env_cfg = cfg.clone();
                env_cfg.pin = None;
                if i > 0 {
                    env_cfg.progress_every = 0;
                    env_cfg.echo = Echo::Nothing;
                }
                thread::Builder::new()
                    .name(format!("environment-{i}"))
                    .spawn_scoped(scope, move || session(&env_cfg, Some(&seat)))
                    .expect("spawn an environment")
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err("the environment's thread panicked".to_owned()))
            })
            .collect()
    });
    let mut reports = Vec::new();
    let mut spans = Vec::new();
    for (i, r) in results.into_iter().enumerate() {
        let (report, span) = r.map_err(|e| format!("environment {i}: {e}"))?;
        reports.push(report);
        spans.extend(span);
    }
    let first = spans.iter().map(|s| s.0).min();
    let last = spans.iter().map(|s| s.1).max();
    Ok(measure(cfg, &kinesis, reports, first.zip(last)))
}

fn measure(
    cfg: &SandboxConfig,
    kinesis: &FakeKinesis,
    reports: Vec<Report>,
    load: Option<(Instant, Instant)>,
) -> FleetReport {
    let k = kinesis.config();
    let requests = kinesis.requests();
    let records = kinesis.records();
    let span = load.map_or(Duration::ZERO, |(a, b)| b.saturating_duration_since(a));
    let in_load = |i: usize| {
        load.is_some_and(|(a, b)| {
            let t = requests[i].received_at;
            t >= a && t <= b
        })
    };

    let mut per_environment = Vec::new();
    for (i, r) in reports.iter().enumerate() {
        let key = environment_access_key(i);
        let mine: Vec<_> = requests
            .iter()
            .filter(|q| q.access_key.as_deref() == Some(key.as_str()))
            .collect();
        let request_bytes = mine.iter().map(|q| q.body_bytes as u64).sum();
        let accepted_bytes = mine.iter().map(|q| q.bytes_accepted).sum();
        let p = &r.runtime_done_to_next;
        per_environment.push(FleetLine {
            environment: format!("env {i}"),
            emitted: r.emitted,
            lost: r.lost,
            duplicated: r.duplicated,
            added_mean_ms: p.mean_ms,
            added_max_ms: p.max_ms,
            request_bytes,
            accepted_bytes,
            sent_over_accepted: ratio(request_bytes, accepted_bytes),
            put_records_calls: mine.len() as u64,
            throttled_records: mine.iter().map(|q| q.records_throttled as u64).sum(),
            in_flight_invocations: r.in_flight_at_next.invocations,
            clean_exit: clean_exit(r),
        });
    }
    let total = total_of(&reports, &per_environment);

    let stream = cfg.stream_name();
    let throttled: BTreeMap<String, u64> = kinesis
        .shard_use(&stream)
        .into_iter()
        .map(|u| (u.shard_id, u.throttled_records))
        .collect();
    let mut by_shard: BTreeMap<String, ShardLoad> = (0..k.shard_count)
        .map(|s| {
            let id = format!("shardId-{s:012}");
            let load = ShardLoad {
                shard_id: id.clone(),
                throttled_records: throttled.get(&id).copied().unwrap_or(0),
                ..ShardLoad::default()
            };
            (id, load)
        })
        .collect();
    for r in records.iter().filter(|r| in_load(r.request_index)) {
        if let Some(s) = by_shard.get_mut(&r.shard_id) {
            s.accepted_bytes += (r.data.len() + r.partition_key.len()) as u64;
            s.accepted_records += 1;
        }
    }
    let limits = k.shard_limits;
    let per_second = limits.unwrap_or_default().bytes_per_second;
    for s in by_shard.values_mut() {
        s.busy = busy(s.accepted_bytes, per_second, span);
    }

    // Bytes an event took in the stored records (every stored copy counted).
    let copies: u64 = reports.iter().map(|r| r.delivered + r.duplicated).sum();
    let stored: u64 = records
        .iter()
        .map(|r| (r.data.len() + r.partition_key.len()) as u64)
        .sum();
    let per_event = if copies > 0 {
        stored as f64 / copies as f64
    } else {
        0.0
    };
    let offered = if span.is_zero() {
        0.0
    } else {
        total.emitted as f64 * per_event / span.as_secs_f64()
    };
    let capacity = per_second * f64::from(k.shard_count);
    FleetReport {
        environments: reports.len(),
        invocations_per_environment: cfg.workload.invocations,
        shards: k.shard_count,
        shard_limits: limits,
        load_seconds: round3(span.as_secs_f64()),
        offered_bytes_per_second: offered.round(),
        offered_over_capacity: limits.map(|_| round3(offered / capacity)),
        per_environment,
        total,
        shard_load: by_shard.into_values().collect(),
        reports,
        failures: Vec::new(),
    }
}

fn total_of(reports: &[Report], lines: &[FleetLine]) -> FleetLine {
    let sum = |f: fn(&FleetLine) -> u64| lines.iter().map(f).sum::<u64>();
    let added: Vec<(f64, usize)> = reports
        .iter()
        .map(|r| (r.runtime_done_to_next.mean_ms, r.runtime_done_to_next.count))
        .collect();
    let n: usize = added.iter().map(|a| a.1).sum();
    let (request_bytes, accepted_bytes) = (sum(|l| l.request_bytes), sum(|l| l.accepted_bytes));
    FleetLine {
        environment: "total".to_owned(),
        emitted: sum(|l| l.emitted),
        lost: sum(|l| l.lost),
        duplicated: sum(|l| l.duplicated),
        added_mean_ms: if n > 0 {
            round3(added.iter().map(|(m, c)| m * *c as f64).sum::<f64>() / n as f64)
        } else {
            0.0
        },
        added_max_ms: lines.iter().map(|l| l.added_max_ms).fold(0.0, f64::max),
        request_bytes,
        accepted_bytes,
        sent_over_accepted: ratio(request_bytes, accepted_bytes),
        put_records_calls: sum(|l| l.put_records_calls),
        throttled_records: sum(|l| l.throttled_records),
        in_flight_invocations: sum(|l| l.in_flight_invocations),
        clean_exit: lines.iter().all(|l| l.clean_exit),
    }
}

fn clean_exit(r: &Report) -> bool {
    let s = &r.shutdown;
    s.before_deadline && !s.killed && s.exit_code == Some(0)
}

fn ratio(a: u64, b: u64) -> Option<f64> {
    (b > 0).then(|| round3(a as f64 / b as f64))
}

/// `bytes` over what `per_second` takes in `span` (0 for an empty span).
pub fn busy(bytes: u64, per_second: f64, span: Duration) -> f64 {
    let capacity = per_second * span.as_secs_f64();
    if capacity > 0.0 {
        round3(bytes as f64 / capacity)
    } else {
        0.0
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn mib(bytes: f64) -> String {
    format!("{:.2} MiB", bytes / 1024.0 / 1024.0)
}

/// The fleet report for people: what ran, the stream's load, a line per environment and
/// the total, then each environment's failures.
pub fn render_fleet(f: &FleetReport) -> String {
    let mut o = String::new();
    let mut line = |s: String| {
        o.push_str(&s);
        o.push('\n');
    };
    let limits = match f.shard_limits {
        Some(l) => format!(
            "limits per shard {}/s and {} records/s",
            mib(l.bytes_per_second),
            l.records_per_second
        ),
        None => "no limits enforced".to_owned(),
    };
    line(format!(
        "== sandbox fleet: {} × {} into one stream of {}, {limits}; load {:.1} s ==",
        count(f.environments as u64, "environment"),
        count(f.invocations_per_environment as u64, "invocation"),
        count(u64::from(f.shards), "shard"),
        f.load_seconds
    ));
    let over = f.offered_over_capacity.map_or(String::new(), |x| {
        format!(" = {x:.2}× the stream's write capacity")
    });
    line(format!(
        "offered ≈ {}/s{over} (events emitted × the bytes an event took in the stored records)",
        mib(f.offered_bytes_per_second)
    ));
    for s in &f.shard_load {
        line(format!(
            "{}: {:.1} % busy over the load ({} in {}), {} throttled over the run",
            s.shard_id,
            s.busy * 100.0,
            mib(s.accepted_bytes as f64),
            count(s.accepted_records, "record"),
            count(s.throttled_records, "record")
        ));
    }
    line(format!(
        "{:<11} {:>8} {:>7} {:>11} {:>10} {:>14} {:>14} {:>10} {:>10} {:>10} {:>9} {:>5}",
        "environment",
        "emitted",
        "lost",
        "added mean",
        "added max",
        "request bytes",
        "accepted bytes",
        "sent/acc.",
        "PutRecords",
        "throttled",
        "in flight",
        "exit"
    ));
    for l in f.per_environment.iter().chain([&f.total]) {
        line(format!(
            "{:<11} {:>8} {:>7} {:>8.1} ms {:>7.1} ms {:>14} {:>14} {:>10} {:>10} {:>10} {:>9} {:>5}",
            l.environment,
            l.emitted,
            l.lost,
            l.added_mean_ms,
            l.added_max_ms,
            l.request_bytes,
            l.accepted_bytes,
            l.sent_over_accepted
                .map_or("n/a".to_owned(), |x| format!("{x:.1}×")),
            l.put_records_calls,
            l.throttled_records,
            l.in_flight_invocations,
            if l.clean_exit { "clean" } else { "NO" }
        ));
    }
    if f.failures.is_empty() {
        line("RESULT: PASS (every environment)".into());
    } else {
        line(format!("RESULT: FAIL: {}", f.failures.join("; ")));
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Percentiles;

    #[test]
    fn fleet_access_keys_are_aws_length_and_distinct() {
        assert_eq!(environment_access_key(3), "AKIDFLEETENV00000003");
        assert_eq!(environment_access_key(3).len(), 20);
        assert_ne!(environment_access_key(0), environment_access_key(1));
    }

    #[test]
    fn totals_weigh_each_environments_mean_by_its_invocations() {
        let report = |mean: f64, n: usize| Report {
            runtime_done_to_next: Percentiles {
                count: n,
                mean_ms: mean,
                ..Percentiles::default()
            },
            ..Report::default()
        };
        let line = |req: u64, acc: u64, max: f64, clean: bool| FleetLine {
            request_bytes: req,
            accepted_bytes: acc,
            added_max_ms: max,
            clean_exit: clean,
            ..FleetLine::default()
        };
        let t = total_of(
            &[report(1.0, 30), report(5.0, 10)],
            &[line(300, 100, 4.0, true), line(900, 100, 9.0, false)],
        );
        assert_eq!(t.added_mean_ms, 2.0);
        assert_eq!(t.added_max_ms, 9.0);
        assert_eq!(t.sent_over_accepted, Some(6.0));
        assert!(!t.clean_exit);
        assert_eq!(
            busy(512 * 1024, 1024.0 * 1024.0, Duration::from_secs(2)),
            0.25
        );
    }
}
