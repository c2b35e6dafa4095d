//! What one sandbox session measured ([`Report`]) and whether it passed
//! ([`Report::judge`]). Serialisable: `sandbox --json` prints it as is.
//!
//! The verdict rests on the checked-off records when the mock Kinesis held them; with a
//! real endpoint it rests on the extension's own counts (its summary line), and says so.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use super::counters::ExtensionCounters;
use super::in_flight::InFlightReport;
use super::FUNCTION_NAME;
use crate::fake_kinesis::ShardUse;

/// Emitted, delivered, lost and duplicated events of one type.
#[derive(Clone, Debug, Default, Serialize)]
pub struct TypeCount {
    pub emitted: u64,
    pub delivered: u64,
    pub lost: u64,
    pub duplicated: u64,
    /// Dropped by the platform (its queue limit) before the extension saw them.
    pub platform_dropped: u64,
}

/// Nearest-rank percentiles and the mean of a set of durations, in milliseconds.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Percentiles {
    pub count: usize,
    pub mean_ms: f64,
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
        let mean = if v.is_empty() {
            0.0
        } else {
            ms(v.iter().sum::<Duration>() / v.len() as u32)
        };
        Percentiles {
            count: v.len(),
            mean_ms: mean,
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
    /// Requests held unanswered (`no-answer`), and those the extension gave up on by
    /// closing the connection.
    pub requests_held: u64,
    pub requests_abandoned: u64,
    /// Per shard, when the mock enforced Kinesis's per-shard limits (`--shards`).
    pub shards: Vec<ShardUse>,
}

/// What the stored records cost. A record's payload is its data plus its partition key.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Cost {
    /// Records stored (a resent record counts again).
    pub records: u64,
    pub records_per_event: f64,
    pub payload_bytes: u64,
    /// Provisioned streams: each record is ceil(payload / 25 KiB) PUT payload units
    /// (25 KB taken as 25 × 1,024 = 25,600 bytes).
    pub put_payload_units: u64,
    pub put_units_per_1000_events: f64,
    /// On-demand streams: each record rounded up to the next KiB (1,024 bytes) ...
    pub billed_kib: u64,
    /// ... over the payload in KiB (1.0: no rounding waste).
    pub billed_over_payload: f64,
}

/// Whether each partition key's events reached the stream in emission order.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Order {
    pub partition_keys: u64,
    /// Events that reached the stream after a later-emitted event of the same key (stream
    /// order: the record's place, then the event's place in it; first arrivals only).
    pub inversions: u64,
}

/// The extension settings this run used, as the extension reads them.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RunSettings {
    pub strategy: String,
    pub record_format: String,
    pub partition_key: String,
    /// `request_id`, `function` or `environment`: order per key is promised.
    pub fixed_partition_key: bool,
    pub enrich: bool,
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
    pub settings: RunSettings,
    pub managed_instances: bool,
    /// Runtime workers (Managed Instances).
    pub concurrency: Option<usize>,
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
    /// Lost events that were emitted while Kinesis was down.
    pub lost_during_outage: u64,
    /// Events emitted after the outage ended, and how many of them were lost.
    pub emitted_after_outage: u64,
    pub lost_after_outage: u64,
    /// Extra copies of delivered events (at least once: allowed up to the extension's
    /// `unconfirmed` count).
    pub duplicated: u64,
    /// Events the platform dropped (queue limit) before the extension saw them; not lost by
    /// the extension, and not counted in `lost`.
    pub platform_dropped: u64,
    /// Events in Kinesis that match no emitted event byte for byte.
    pub unexpected_events: u64,
    /// Records that are not an event, NDJSON lines or a KPL aggregate.
    pub undecodable_records: u64,
    /// With enrichment on: events without a `source` naming the function ...
    pub unenriched_events: u64,
    /// ... and event ids shared by different events.
    pub event_id_collisions: u64,
    pub telemetry_posts: u64,
    pub telemetry_posts_failed: u64,
    pub kinesis: KinesisReport,
    pub startup: Startup,
    /// The events the extension registered for.
    pub registered_events: Vec<String>,
    /// Time added per invocation: `platform.runtimeDone` to the extension's `/event/next`.
    pub runtime_done_to_next: Percentiles,
    /// INVOKE delivery to the extension's `/event/next`.
    pub invoke_to_next: Percentiles,
    /// What was in flight to Kinesis at each `/event/next` (open across the freeze).
    pub in_flight_at_next: InFlightReport,
    /// Invocations whose `/event/next` came after the INVOKE's deadline ...
    pub invocations_past_deadline: u64,
    /// ... or within the extension's 100 ms margin before it.
    pub invocations_past_deadline_margin: u64,
    /// The least time left before an INVOKE's deadline when the extension came back
    /// (negative: late).
    pub least_deadline_margin_ms: Option<f64>,
    /// Emission to the answer of the Kinesis request that stored the event (first copy).
    pub emit_to_stream: Percentiles,
    pub emit_to_stream_function: Percentiles,
    /// Share of function log lines in Kinesis when their own invocation ended (default
    /// Lambda: the extension's `/event/next` after it; Managed Instances: its report) ...
    pub function_in_stream_at_end: Option<f64>,
    /// ... and when the next invocation ended.
    pub function_in_stream_at_next_end: Option<f64>,
    pub cost: Cost,
    pub order: Order,
    /// The extension's own counts (its summary line).
    pub extension: Option<ExtensionCounters>,
    pub extension_summary: Option<String>,
    /// The extension's WARN and ERROR lines.
    pub extension_problems: u64,
    /// EMF metric lines the extension printed (`{"_aws":…}` on stdout).
    pub emf_lines: u64,
    pub peak_rss_kb: Option<u64>,
    /// The extension's CPU time (all threads, to the microsecond, read at its exit).
    pub cpu_ms: Option<f64>,
    /// CPU time from the first invocation's start to the last one's end, per invocation.
    pub cpu_per_invocation_ms: Option<f64>,
    /// CPU time during the idle time before SHUTDOWN.
    pub idle_cpu_ms: Option<f64>,
    pub shutdown: ShutdownReport,
    /// What the verdict rests on.
    pub verdict_basis: String,
    /// Why this run failed (empty: it passed).
    pub failures: Vec<String>,
}

/// `n event(s)`, `n extra cop(y|ies)`, … with the right plural (of the last word).
pub fn count(n: u64, what: &str) -> String {
    if n == 1 {
        return format!("1 {what}");
    }
    let consonant_y =
        what.ends_with('y') && !what[..what.len() - 1].ends_with(['a', 'e', 'i', 'o', 'u']);
    if consonant_y {
        format!("{n} {}ies", &what[..what.len() - 1])
    } else {
        format!("{n} {what}s")
    }
}

impl Report {
    /// Fills `failures` and `verdict_basis`. `expect_loss`: loss is no failure when the
    /// extension counted it: lost within `[dropped − in_doubt, dropped]`.
    pub fn judge(&mut self, expect_loss: bool) {
        let mut f = Vec::new();
        if self.verified {
            self.verdict_basis = "every event checked off in the mock Kinesis".to_owned();
            self.judge_records(expect_loss, &mut f);
        } else {
            self.verdict_basis =
                "the extension's own counts (records are not checked off with a real endpoint)"
                    .to_owned();
            self.judge_counts(expect_loss, &mut f);
        }
        if self.telemetry_posts_failed > 0 {
            f.push(format!(
                "{} to the extension failed",
                count(self.telemetry_posts_failed, "telemetry POST")
            ));
        }
        if self.invocations_past_deadline > 0 {
            f.push(format!(
                "{} held past the deadline",
                count(self.invocations_past_deadline, "invocation")
            ));
        }
        if self.shutdown.killed {
            f.push("killed at the SHUTDOWN deadline".to_owned());
        } else if !self.shutdown.before_deadline {
            f.push("did not exit before the SHUTDOWN deadline".to_owned());
        }
        match self.shutdown.exit_code {
            Some(0) | None => {}
            Some(c) => f.push(format!("exit code {c}")),
        }
        self.failures = f;
    }

    fn judge_records(&self, expect_loss: bool, f: &mut Vec<String>) {
        let c = self.extension.as_ref();
        let counted = c.is_some_and(|c| {
            self.lost <= c.dropped && self.lost >= c.dropped.saturating_sub(c.in_doubt)
        });
        let their = |c: Option<&ExtensionCounters>| match c {
            None => "the extension printed no summary".to_owned(),
            Some(c) if c.in_doubt > 0 => format!(
                "the extension counted dropped={} with in_doubt={}",
                c.dropped, c.in_doubt
            ),
            Some(c) => format!("the extension counted dropped={}", c.dropped),
        };
        if self.lost > 0 && !expect_loss {
            f.push(format!("{} lost ({})", count(self.lost, "event"), their(c)));
        } else if !counted {
            f.push(format!(
                "{} lost, but {}: its count is wrong",
                count(self.lost, "event"),
                their(c)
            ));
        }
        let allowed = c.map_or(0, |c| c.unconfirmed);
        if self.duplicated > allowed {
            f.push(format!(
                "{} delivered more than once, beyond the {} the extension resent unconfirmed",
                count(self.duplicated, "event"),
                allowed
            ));
        }
        if self.unexpected_events > 0 {
            f.push(format!(
                "{} in Kinesis match no emitted event byte for byte",
                count(self.unexpected_events, "event")
            ));
        }
        if self.undecodable_records > 0 {
            f.push(format!(
                "{} do not decode as an event, NDJSON or KPL",
                count(self.undecodable_records, "record")
            ));
        }
        if self.unenriched_events > 0 {
            f.push(format!(
                "{} without a source naming {FUNCTION_NAME}",
                count(self.unenriched_events, "event")
            ));
        }
        if self.event_id_collisions > 0 {
            f.push(format!(
                "{} shared by different events",
                count(self.event_id_collisions, "eventId")
            ));
        }
        if self.settings.fixed_partition_key && self.order.inversions > 0 {
            f.push(format!(
                "{} reached the stream out of emission order for partition key {}",
                count(self.order.inversions, "event"),
                self.settings.partition_key
            ));
        }
    }

    fn judge_counts(&self, expect_loss: bool, f: &mut Vec<String>) {
        let Some(c) = &self.extension else {
            f.push("the extension printed no shutdown summary: delivery is unknown".to_owned());
            return;
        };
        if c.dropped > 0 && !expect_loss {
            f.push(format!(
                "the extension dropped {} ({})",
                count(c.dropped, "event"),
                c.reasons()
            ));
        }
        if c.still_buffered > 0 {
            f.push(format!(
                "the extension still held {} at exit",
                count(c.still_buffered, "event")
            ));
        }
        let sent = self.emitted.saturating_sub(self.platform_dropped);
        if c.received < sent {
            f.push(format!(
                "the extension received {} of the {sent} events the platform sent",
                c.received
            ));
        }
    }

    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

/// Milliseconds, rounded to the microsecond.
pub(super) fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counted(dropped: u64, in_doubt: u64) -> Option<ExtensionCounters> {
        Some(ExtensionCounters {
            received: 10,
            dropped,
            in_doubt,
            ..ExtensionCounters::default()
        })
    }

    fn verified(lost: u64, extension: Option<ExtensionCounters>) -> Report {
        Report {
            verified: true,
            lost,
            extension,
            shutdown: ShutdownReport {
                before_deadline: true,
                exit_code: Some(0),
                ..ShutdownReport::default()
            },
            ..Report::default()
        }
    }

    #[test]
    fn counts_take_their_plural() {
        assert_eq!(count(1, "event"), "1 event");
        assert_eq!(count(0, "event"), "0 events");
        assert_eq!(count(2, "extra copy"), "2 extra copies");
        assert_eq!(count(3, "partition key"), "3 partition keys");
    }

    #[test]
    fn loss_is_one_failure_with_its_plural_and_what_the_extension_counted() {
        let mut r = verified(1, counted(1, 0));
        r.judge(false);
        assert_eq!(
            r.failures,
            ["1 event lost (the extension counted dropped=1)"]
        );
        let mut r = verified(43, counted(0, 0));
        r.judge(false);
        assert_eq!(
            r.failures,
            ["43 events lost (the extension counted dropped=0)"]
        );
    }

    #[test]
    fn expected_loss_must_lie_within_what_the_extension_counted() {
        for (lost, dropped, in_doubt, ok) in [
            (5, 5, 0, true),
            (3, 5, 2, true),
            (2, 5, 2, false),
            (6, 5, 2, false),
            (0, 0, 0, true),
        ] {
            let mut r = verified(lost, counted(dropped, in_doubt));
            r.judge(true);
            assert_eq!(
                r.passed(),
                ok,
                "{lost} {dropped} {in_doubt}: {:?}",
                r.failures
            );
        }
        let mut r = verified(0, counted(4, 0));
        r.judge(false);
        assert!(
            r.failures[0].contains("its count is wrong"),
            "{:?}",
            r.failures
        );
    }

    #[test]
    fn duplicates_fail_only_beyond_the_unconfirmed_resends() {
        let mut c = counted(0, 0).unwrap();
        c.unconfirmed = 3;
        let mut r = verified(0, Some(c));
        r.duplicated = 3;
        r.judge(false);
        assert!(r.passed(), "{:?}", r.failures);
        r.duplicated = 4;
        r.judge(false);
        assert_eq!(
            r.failures,
            ["4 events delivered more than once, beyond the 3 the extension resent unconfirmed"]
        );
    }

    #[test]
    fn unverified_runs_are_judged_on_the_extensions_counts() {
        let mut r = verified(0, counted(3, 0));
        r.verified = false;
        r.emitted = 10;
        r.extension
            .as_mut()
            .unwrap()
            .dropped_by_reason
            .insert("buffer_full".into(), 3);
        r.judge(false);
        assert_eq!(
            r.failures,
            ["the extension dropped 3 events (buffer_full=3)"]
        );
        assert!(r.verdict_basis.contains("own counts"));
        r.judge(true);
        assert!(r.passed());
        r.extension = None;
        r.judge(true);
        assert!(r.failures[0].contains("no shutdown summary"));
    }

    #[test]
    fn order_inversions_fail_only_with_a_fixed_key() {
        let mut r = verified(0, counted(0, 0));
        r.order.inversions = 2;
        r.judge(false);
        assert!(r.passed());
        r.settings.fixed_partition_key = true;
        r.settings.partition_key = "environment".into();
        r.judge(false);
        assert_eq!(
            r.failures,
            ["2 events reached the stream out of emission order for partition key environment"]
        );
    }

    #[test]
    fn the_text_report_has_no_debug_formatting() {
        let mut r = verified(1, counted(1, 0));
        r.shutdown.exit_code = None;
        r.shutdown.killed = true;
        r.cpu_ms = None;
        r.judge(false);
        let text = super::super::render(&r);
        for bad in ["Some(", "None", "ns,", "0ns", "{ ", "[\""] {
            assert!(!text.contains(bad), "{bad:?} in\n{text}");
        }
        assert!(text.contains("RESULT: FAIL: 1 event lost"), "{text}");
    }
}
