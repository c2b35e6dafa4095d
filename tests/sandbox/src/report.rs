//! What one sandbox session measured ([`Report`]) and whether it passed
//! ([`Report::judge`]). Serialisable: `sandbox --json` prints it as is.
//!
//! The verdict rests on the checked-off records when the mock Kinesis held them; with a
//! real endpoint it rests on the extension's own counts (its summary line), and says so.
//! Events the extension's filter leaves out are `filtered`, never lost. A run that passes
//! with loss says how much and whose ([`Report::loss`]): lost by the extension (expected with
//! `--expect-loss`, and counted), or dropped by Lambda before the listener saw them.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use super::counters::ExtensionCounters;
use super::in_flight::InFlightReport;
use super::settings::RunSettings;
use super::FUNCTION_NAME;
use kte_test_support::fake_kinesis::ShardUse;

/// Emitted, delivered, lost and duplicated events of one type.
#[derive(Clone, Debug, Default, Serialize)]
pub struct TypeCount {
    pub emitted: u64,
    pub delivered: u64,
    pub lost: u64,
    pub duplicated: u64,
    /// Dropped by the platform (its queue limit) before the extension saw them.
    pub platform_dropped: u64,
    /// Left out by the extension's filter (not delivered, as asked; not lost).
    pub filtered: u64,
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

/// A telemetry POST from the platform to the extension that did not get a 200.
#[derive(Clone, Debug, Default, Serialize)]
pub struct FailedPost {
    /// Its place among the run's POSTs (1-based).
    pub number: usize,
    /// Milliseconds after SHUTDOWN was delivered when it was sent (`None`: before it).
    pub after_shutdown_ms: Option<f64>,
    pub items: usize,
    /// The status the extension answered, or `None` when the connection failed.
    pub status: Option<u16>,
    /// Why it failed, as the platform's HTTP client said.
    pub error: Option<String>,
    /// Of its events that the sandbox emitted, how many are in Kinesis anyway.
    pub events: u64,
    pub events_delivered: u64,
}

impl FailedPost {
    /// A connection that failed at SHUTDOWN although every event of the POST was delivered:
    /// the extension read the batch and exited before its answer went out. Lambda does not
    /// resend at that point either, so nothing is lost and the function is not affected.
    pub fn unanswered_at_exit(&self) -> bool {
        self.status.is_none()
            && self.after_shutdown_ms.is_some()
            && self.events_delivered == self.events
    }

    /// `#12 (40 items, sent 3 ms after SHUTDOWN): connection reset by peer`
    pub fn describe(&self) -> String {
        let when = self.after_shutdown_ms.map_or(String::new(), |m| {
            format!(", sent {m:.0} ms after SHUTDOWN")
        });
        let why = match (self.status, &self.error) {
            (Some(code), _) => format!("answered {code}"),
            (None, Some(e)) => e.clone(),
            (None, None) => "no answer".to_owned(),
        };
        format!(
            "#{} ({}{when}): {why}; {} of its {} in Kinesis",
            self.number,
            count(self.items as u64, "item"),
            self.events_delivered,
            count(self.events, "event")
        )
    }
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
    /// The settings the extension used, read back from its log (`None`: it never said).
    pub settings: Option<RunSettings>,
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
    /// The platform's queue limit (`--platform-queue`), when there is one.
    pub platform_queue_limit: Option<usize>,
    /// Events the extension's filter leaves out, and did (not in Kinesis; not lost) ...
    pub filtered: u64,
    /// ... of them, those the platform sent it (the others were never subscribed) ...
    pub filtered_received: u64,
    /// ... and events in Kinesis that the filter should have left out.
    pub filtered_but_delivered: u64,
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
    /// Each failed telemetry POST, with its reason.
    pub failed_posts: Vec<FailedPost>,
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
    /// How much was lost and whose loss it was, when anything was (also in a passing run).
    pub loss: Vec<String>,
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
        let failed: Vec<String> = self
            .failed_posts
            .iter()
            .filter(|p| !p.unanswered_at_exit())
            .map(FailedPost::describe)
            .collect();
        if !failed.is_empty() {
            f.push(format!(
                "{} to the extension failed: {}",
                count(failed.len() as u64, "telemetry POST"),
                failed.join("; ")
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
        self.loss = self.whose_loss(expect_loss);
    }

    /// How much was lost and whose loss it was: the extension's (counted, and expected or
    /// not), or Lambda's (dropped before the listener, `platform.logsDropped`).
    fn whose_loss(&self, expect_loss: bool) -> Vec<String> {
        let share = |n: u64| {
            let pct = n as f64 * 100.0 / self.emitted.max(1) as f64;
            format!("{n} of {} events ({pct:.1} %)", self.emitted)
        };
        let expected = if expect_loss {
            ", as expected (--expect-loss)"
        } else {
            ""
        };
        let mut out = Vec::new();
        let c = self.extension.as_ref();
        let reasons = c
            .filter(|c| !c.dropped_by_reason.is_empty())
            .map_or(String::new(), |c| format!(" ({})", c.reasons()));
        if self.verified && self.lost > 0 {
            out.push(format!(
                "{} lost by the extension, which counted dropped={}{reasons}{expected}",
                share(self.lost),
                c.map_or(0, |c| c.dropped)
            ));
        } else if !self.verified {
            if let Some(c) = c.filter(|c| c.dropped > 0) {
                out.push(format!(
                    "{} dropped by the extension{reasons}{expected}",
                    share(c.dropped)
                ));
            }
        }
        if self.platform_dropped > 0 {
            let queue = self.platform_queue_limit.map_or(String::new(), |q| {
                format!(": more than the {q} events its queue holds were waiting")
            });
            out.push(format!(
                "{} dropped by Lambda before they reached the extension's listener (platform.logsDropped{queue})",
                share(self.platform_dropped)
            ));
        }
        out
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
        if let Some(s) = self.settings.as_ref().filter(|s| s.fixed_partition_key) {
            if self.order.inversions > 0 {
                f.push(format!(
                    "{} reached the stream out of emission order for partition key {}",
                    count(self.order.inversions, "event"),
                    s.partition_key
                ));
            }
        }
        let filter = self.settings.as_ref().and_then(RunSettings::filter);
        let filter = filter.as_deref().unwrap_or("none");
        if self.filtered_but_delivered > 0 {
            f.push(format!(
                "{} in Kinesis that the extension's filter ({filter}) leaves out",
                count(self.filtered_but_delivered, "event")
            ));
        }
        if let Some(c) = c.filter(|c| c.filtered != self.filtered_received) {
            f.push(format!(
                "the extension counted filtered={}, but its filter ({filter}) leaves out {} of the events it received",
                c.filtered, self.filtered_received
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
        r.settings = Some(RunSettings {
            fixed_partition_key: true,
            partition_key: "environment".into(),
            ..RunSettings::default()
        });
        r.judge(false);
        assert_eq!(
            r.failures,
            ["2 events reached the stream out of emission order for partition key environment"]
        );
    }

    #[test]
    fn a_failed_post_is_forgiven_only_when_unanswered_at_exit_with_its_events_delivered() {
        let at_exit = FailedPost {
            number: 12,
            after_shutdown_ms: Some(0.9),
            items: 2,
            status: None,
            error: Some("Peer disconnected".into()),
            events: 2,
            events_delivered: 2,
        };
        // (post, forgiven)
        let cases = [
            (at_exit.clone(), true),
            (
                FailedPost {
                    events_delivered: 1,
                    ..at_exit.clone()
                },
                false,
            ),
            (
                FailedPost {
                    after_shutdown_ms: None,
                    ..at_exit.clone()
                },
                false,
            ),
            (
                FailedPost {
                    status: Some(413),
                    error: None,
                    ..at_exit.clone()
                },
                false,
            ),
        ];
        for (post, forgiven) in cases {
            let mut r = verified(0, counted(0, 0));
            r.telemetry_posts_failed = 1;
            r.failed_posts = vec![post.clone()];
            r.judge(false);
            assert_eq!(r.passed(), forgiven, "{post:?}: {:?}", r.failures);
            let text = super::super::render(&r);
            assert!(
                text.contains(&format!("failed telemetry POST {}", post.describe())),
                "the reason is always printed:\n{text}"
            );
        }
        assert_eq!(
            at_exit.describe(),
            "#12 (2 items, sent 1 ms after SHUTDOWN): Peer disconnected; 2 of its 2 events in Kinesis"
        );
    }

    #[test]
    fn a_pass_with_loss_says_how_much_and_whose() {
        let mut r = verified(3, counted(3, 0));
        r.emitted = 10;
        r.extension
            .as_mut()
            .unwrap()
            .dropped_by_reason
            .insert("buffer_full".into(), 3);
        r.platform_dropped = 5;
        r.platform_queue_limit = Some(100);
        r.judge(true);
        assert!(r.passed(), "{:?}", r.failures);
        assert_eq!(
            r.loss,
            [
                "3 of 10 events (30.0 %) lost by the extension, which counted dropped=3 (buffer_full=3), as expected (--expect-loss)",
                "5 of 10 events (50.0 %) dropped by Lambda before they reached the extension's listener (platform.logsDropped: more than the 100 events its queue holds were waiting)",
            ]
        );
        let text = super::super::render(&r);
        assert!(
            text.ends_with(&format!("RESULT: PASS with loss: {}\n", r.loss.join("; "))),
            "{text}"
        );
        let mut clean = verified(0, counted(0, 0));
        clean.judge(false);
        assert!(clean.loss.is_empty());
        assert!(super::super::render(&clean).ends_with("RESULT: PASS\n"));
    }

    #[test]
    fn filtered_events_are_not_lost_but_a_wrong_count_or_a_leak_fails() {
        let mut c = counted(0, 0).unwrap();
        c.filtered = 4;
        let mut r = verified(0, Some(c));
        r.filtered = 4;
        r.filtered_received = 4;
        r.judge(false);
        assert!(r.passed(), "{:?}", r.failures);
        r.filtered_received = 3;
        r.judge(false);
        assert_eq!(
            r.failures,
            ["the extension counted filtered=4, but its filter (none) leaves out 3 of the events it received"]
        );
        r.filtered_received = 4;
        r.filtered_but_delivered = 2;
        r.judge(false);
        assert_eq!(
            r.failures,
            ["2 events in Kinesis that the extension's filter (none) leaves out"]
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
