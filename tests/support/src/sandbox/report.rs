//! What one sandbox session measured ([`Report`]) and whether it passed
//! ([`Report::judge`]). Serialisable: `sandbox --json` prints it as is.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

/// Emitted, delivered, lost and duplicated events of one type.
#[derive(Clone, Debug, Default, Serialize)]
pub struct TypeCount {
    pub emitted: u64,
    pub delivered: u64,
    pub lost: u64,
    pub duplicated: u64,
}

/// Nearest-rank percentiles of a set of durations, in milliseconds.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Percentiles {
    pub count: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Percentiles {
    pub fn of(samples: &[Duration]) -> Percentiles {
        let mut v: Vec<Duration> = samples.to_vec();
        v.sort();
        let at = |p: f64| -> f64 {
            if v.is_empty() {
                return 0.0;
            }
            let rank = ((p / 100.0) * v.len() as f64).ceil().max(1.0) as usize;
            ms(v[rank.min(v.len()) - 1])
        };
        Percentiles {
            count: v.len(),
            p50_ms: at(50.0),
            p99_ms: at(99.0),
            max_ms: at(100.0),
        }
    }
}

/// Process start to the extension's first calls.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Startup {
    pub register_ms: f64,
    pub subscribed_ms: Option<f64>,
    pub first_next_ms: f64,
}

/// What the mock Kinesis saw.
#[derive(Clone, Debug, Default, Serialize)]
pub struct KinesisReport {
    pub requests: u64,
    pub records_accepted: u64,
    pub data_bytes_accepted: u64,
    pub records_throttled: u64,
    pub requests_rejected: u64,
    pub connections_dropped: u64,
}

/// How SHUTDOWN went.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ShutdownReport {
    /// `deadlineMs` minus the moment SHUTDOWN was delivered.
    pub deadline_after_ms: u64,
    pub exit_code: Option<i32>,
    /// Exited (any code) before `deadlineMs`.
    pub before_deadline: bool,
    /// Time left until the deadline at exit (negative: late).
    pub margin_ms: Option<f64>,
    /// SHUTDOWN delivery to exit.
    pub took_ms: Option<f64>,
    /// The sandbox had to kill it at the deadline.
    pub killed: bool,
}

/// The result of one [`run`](super::run).
#[derive(Clone, Debug, Default, Serialize)]
pub struct Report {
    pub binary: String,
    pub invocations: usize,
    pub freeze: bool,
    pub freezes: u64,
    pub wall_ms: f64,
    /// Whether delivery was checked record by record (false with a real endpoint).
    pub verified: bool,
    pub by_type: BTreeMap<String, TypeCount>,
    pub emitted: u64,
    pub delivered: u64,
    pub lost: u64,
    /// Lost events that were emitted during the Kinesis outage window.
    pub lost_during_outage: u64,
    pub duplicated: u64,
    /// Records in Kinesis that match no emitted event byte for byte.
    pub unexpected_records: u64,
    pub telemetry_posts: u64,
    pub telemetry_posts_failed: u64,
    pub kinesis: KinesisReport,
    pub startup: Startup,
    /// `platform.runtimeDone` to the extension's `/event/next` (billed extension time).
    pub runtime_done_to_next: Percentiles,
    /// INVOKE delivery to the extension's `/event/next`.
    pub invoke_to_next: Percentiles,
    /// Invocations whose `/event/next` came after the INVOKE's deadline.
    pub invocations_past_deadline: u64,
    pub peak_rss_kb: Option<u64>,
    pub cpu_ms: Option<f64>,
    pub shutdown: ShutdownReport,
    /// The extension's own summary line and its `dropped=` count.
    pub extension_summary: Option<String>,
    pub extension_dropped: Option<u64>,
    /// Why this run failed (empty: it passed).
    pub failures: Vec<String>,
}

impl Report {
    /// Fills `failures`. `expect_loss`: loss is allowed if the extension counted it exactly.
    pub fn judge(&mut self, expect_loss: bool) {
        let mut f = Vec::new();
        if self.verified {
            if self.lost > 0 && !expect_loss {
                f.push(format!("{} events lost", self.lost));
            }
            if self.lost > 0 && self.extension_dropped != Some(self.lost) {
                f.push(format!(
                    "{} events lost but the extension reported dropped={:?}",
                    self.lost, self.extension_dropped
                ));
            }
            if self.duplicated > 0 {
                f.push(format!(
                    "{} events delivered more than once",
                    self.duplicated
                ));
            }
            if self.unexpected_records > 0 {
                f.push(format!(
                    "{} Kinesis records match no emitted event byte for byte",
                    self.unexpected_records
                ));
            }
        }
        if self.telemetry_posts_failed > 0 {
            f.push(format!(
                "{} telemetry POSTs to the extension failed",
                self.telemetry_posts_failed
            ));
        }
        if self.invocations_past_deadline > 0 {
            f.push(format!(
                "{} invocations held past their deadline",
                self.invocations_past_deadline
            ));
        }
        if self.shutdown.killed {
            f.push("killed at the SHUTDOWN deadline".to_owned());
        } else if !self.shutdown.before_deadline {
            f.push("did not exit before the SHUTDOWN deadline".to_owned());
        }
        if self.shutdown.exit_code.is_some_and(|c| c != 0) {
            f.push(format!("exit code {:?}", self.shutdown.exit_code));
        }
        self.failures = f;
    }

    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

/// Milliseconds, rounded to the microsecond.
pub(super) fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}
