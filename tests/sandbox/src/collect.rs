//! Gathering what a session measured into its [`Report`]: the invocations' timings, the
//! platform's and the mock's counts, the extension's own counts, EMF and problem lines from
//! its log; then every event checked off (`account`).

use std::time::{Duration, Instant};

use super::echo::is_problem;
use super::report::{ms, Percentiles, Report, ShutdownReport, Startup};
use super::session::{Invocation, Run};
use super::{
    account, ExtensionCounters, InFlightReport, KinesisReport, RunSettings, DEADLINE_MARGIN,
};

/// Whether a log line is an EMF metric line: a JSON object with the `_aws` metadata key at
/// its top level (anywhere in it: CloudWatch does not ask for it first, and the extension's
/// keys come sorted, `_aws` last).
pub(super) fn is_emf(line: &str) -> bool {
    line.starts_with('{')
        && line.contains("\"_aws\"")
        && serde_json::from_str::<serde_json::Value>(line)
            .is_ok_and(|v| v.get("_aws").is_some_and(serde_json::Value::is_object))
}

/// `later - earlier` in milliseconds, negative when `earlier` is the later one.
pub(super) fn signed_ms(later: Instant, earlier: Instant) -> f64 {
    if earlier <= later {
        ms(later - earlier)
    } else {
        -ms(earlier - later)
    }
}

impl Run<'_> {
    /// Everything measured, then every event checked off.
    pub(super) fn report(
        &mut self,
        started: Instant,
        startup: Startup,
        shutdown: ShutdownReport,
    ) -> Report {
        let w = &self.cfg.workload;
        self.invocations.sort_by_key(|i| i.index);
        let added: Vec<Duration> = self
            .invocations
            .iter()
            .filter_map(Invocation::added)
            .collect();
        let to_next: Vec<Duration> = self
            .invocations
            .iter()
            .filter(|i| i.runtime_done.is_some())
            .map(|i| i.ended.saturating_duration_since(i.started))
            .collect();
        let past = |margin: Duration| {
            self.invocations
                .iter()
                .filter(|i| i.deadline.is_some_and(|d| i.ended > d - margin))
                .count() as u64
        };
        let least_margin = self
            .invocations
            .iter()
            .filter_map(|i| i.deadline.map(|d| signed_ms(d, i.ended)))
            .reduce(f64::min);
        let rt = &self.lambda.runtime;
        let posts = rt.telemetry_posts();
        let mut report = Report {
            binary: self
                .cfg
                .binary
                .clone()
                .unwrap_or_else(kte_test_support::extension_binary)
                .display()
                .to_string(),
            settings: RunSettings::from_log(&self.lambda.log()),
            managed_instances: w.managed_instances,
            concurrency: w.managed_instances.then_some(w.concurrency),
            invocations: w.invocations,
            freeze: w.freezes(),
            freezes: self.freezes,
            wall_ms: ms(started.elapsed()),
            startup,
            registered_events: rt.registered_events(),
            runtime_done_to_next: Percentiles::of(&added),
            invoke_to_next: Percentiles::of(&to_next),
            in_flight_at_next: InFlightReport::of(&self.invocations),
            invocations_past_deadline: past(Duration::ZERO),
            invocations_past_deadline_margin: past(DEADLINE_MARGIN),
            least_deadline_margin_ms: least_margin,
            peak_rss_kb: self.peak_rss_kb,
            idle_cpu_ms: self.idle_cpu.map(ms),
            shutdown,
            extension_summary: self.lambda.summary_line(),
            telemetry_posts: posts.len() as u64,
            telemetry_posts_failed: posts.iter().filter(|p| p.status != Some(200)).count() as u64,
            platform_dropped: rt.telemetry_dropped().0,
            platform_queue_limit: self.cfg.telemetry_queue_limit,
            ..Report::default()
        };
        report.extension = report
            .extension_summary
            .as_deref()
            .and_then(ExtensionCounters::parse);
        let log = self.lambda.log();
        report.emf_lines = log.iter().filter(|l| is_emf(l)).count() as u64;
        report.extension_problems = log.iter().filter(|l| is_problem(l)).count() as u64;
        self.emitter
            .note_platform_reports(&rt.logs_dropped_events());
        if self.cfg.endpoint.is_none() {
            let k = &self.lambda.kinesis;
            let s = k.stats_of(self.access_key.as_deref());
            report.kinesis = KinesisReport {
                requests: s.requests,
                records_accepted: s.records_accepted,
                data_bytes_accepted: s.data_bytes_accepted,
                records_throttled: s.records_throttled,
                requests_rejected: s.rejected,
                connections_dropped: s.dropped_connections,
                requests_held: s.held_requests,
                requests_abandoned: s.abandoned_requests,
                // A fleet's shards are the fleet's business.
                shards: match self.access_key {
                    None => k.shard_use(&self.cfg.stream_name()),
                    Some(_) => Vec::new(),
                },
            };
        }
        let outage = self.faults.outage_window(Instant::now());
        account::check_off(self, outage, &mut report);
        report
    }
}
