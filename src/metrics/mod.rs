//! The extension's own metrics as CloudWatch Embedded Metric Format (EMF) lines on stdout:
//! Lambda puts the extension's output in the function's log group, and CloudWatch turns each
//! line into metrics, with no client library and no extra request.
//!
//! One line covers the counters' change since the previous line; the metrics, their units and
//! what to watch are listed for users in `docs/operating.md`.
//!
//! Cadence: at most one line per `METRICS_INTERVAL_MS` (60 s by default, at least 10 s)
//! while there is activity, checked when a window closes (never a line per invocation), and
//! one at SHUTDOWN. [`line`] is pure; [`Metrics`] keeps the previous snapshot and the clock.

use std::io::Write;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use crate::stats::{DropReason, Snapshot};

/// A dimension of the EMF metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dimension {
    FunctionName,
    FunctionVersion,
    StreamName,
}

/// The dimensions by the names `KINESIS_TELEMETRY_METRICS_DIMENSIONS` and CloudWatch use.
pub const DIMENSIONS: [(&str, Dimension); 3] = [
    ("FunctionName", Dimension::FunctionName),
    ("FunctionVersion", Dimension::FunctionVersion),
    ("StreamName", Dimension::StreamName),
];

/// CloudWatch Embedded Metric Format lines on stdout.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricsSettings {
    pub enabled: bool,
    pub namespace: String,
    pub dimensions: Vec<Dimension>,
    pub interval: Duration,
}

/// What the dimensions are worth for this function.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DimensionValues {
    pub function_name: String,
    pub function_version: String,
    pub stream_name: String,
}

impl DimensionValues {
    fn value(&self, d: Dimension) -> &str {
        match d {
            Dimension::FunctionName => &self.function_name,
            Dimension::FunctionVersion => &self.function_version,
            Dimension::StreamName => &self.stream_name,
        }
    }
}

fn dimension_name(d: Dimension) -> &'static str {
    DIMENSIONS
        .iter()
        .find(|(_, x)| *x == d)
        .map_or("?", |(n, _)| *n)
}

/// Nearest-rank percentile of sorted samples.
fn percentile(sorted: &[Duration], p: f64) -> Option<Duration> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted.get(rank.min(sorted.len()) - 1).copied()
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

/// Everything one line reports.
#[derive(Debug, Clone, Default)]
pub struct Period {
    pub delta: Snapshot,
    /// Kinesis request latencies in the period, sorted.
    pub latencies: Vec<Duration>,
    pub high_water_bytes: usize,
}

/// One metric: name, CloudWatch unit, value.
type Metric = (&'static str, &'static str, Value);

/// The event counts of a period: received, delivered, filtered, dropped (in total and by
/// cause), spilled and resent.
fn event_metrics(d: &Snapshot) -> Vec<Metric> {
    let dropped = |pick: &dyn Fn(&DropReason) -> bool| -> u64 {
        d.dropped
            .iter()
            .filter(|(r, _)| pick(r))
            .map(|(_, n)| *n)
            .sum()
    };
    vec![
        ("EventsReceived", "Count", json!(d.received)),
        ("EventsDelivered", "Count", json!(d.delivered)),
        ("EventsFiltered", "Count", json!(d.filtered)),
        ("EventsDropped", "Count", json!(d.dropped_total())),
        (
            "EventsDroppedBufferFull",
            "Count",
            json!(dropped(&|r| matches!(
                r,
                DropReason::BufferFull | DropReason::SpillFull
            ))),
        ),
        (
            "EventsDroppedKinesisRefused",
            "Count",
            json!(dropped(&|r| matches!(r, DropReason::Fatal(_)))),
        ),
        (
            "EventsDroppedAtShutdown",
            "Count",
            json!(dropped(&|r| matches!(r, DropReason::ShutdownDeadline))),
        ),
        (
            "EventsDroppedOther",
            "Count",
            json!(dropped(&|r| matches!(
                r,
                DropReason::Oversize | DropReason::SpillCorrupt | DropReason::PostLimit
            ))),
        ),
        ("EventsSpilled", "Count", json!(d.spilled)),
        ("EventsResent", "Count", json!(d.resent_events)),
    ]
}

/// Every metric of a period, in the order the line lists them: events, Kinesis, buffer,
/// Lambda's drops, the listener's refusals, then the latency percentiles there are samples
/// for.
fn metrics_of(period: &Period) -> Vec<Metric> {
    let d = &period.delta;
    let mut metrics = event_metrics(d);
    metrics.extend([
        ("RecordsThrottled", "Count", json!(d.throttled)),
        // The send rate the stream's throttling left this environment (0: no limit).
        ("SendRateLimit", "Bytes/Second", json!(d.send_rate_limit)),
        ("KinesisRequests", "Count", json!(d.requests)),
        ("KinesisRequestsFailed", "Count", json!(d.failed_requests)),
        (
            "BufferHighWaterBytes",
            "Bytes",
            json!(period.high_water_bytes),
        ),
        (
            "LambdaDroppedEvents",
            "Count",
            json!(d.lambda_dropped_events),
        ),
        ("LambdaDroppedBytes", "Bytes", json!(d.lambda_dropped_bytes)),
        // The listener's refusals, grouped (each metric name is billed; the summary line
        // gives every counter): 404s alone, as the sign that something other than Lambda
        // posts to the listener.
        (
            "ListenerConnectionsRefused",
            "Count",
            json!(d.listener.refused_connections),
        ),
        (
            "ListenerConnectionsEvicted",
            "Count",
            json!(d.listener.evicted),
        ),
        (
            "ListenerRequestsRefused",
            "Count",
            json!(d.listener.refused_requests()),
        ),
        (
            "ListenerRequestsWrongPath",
            "Count",
            json!(d.listener.not_found),
        ),
        (
            "ListenerRequestsCut",
            "Count",
            json!(d.listener.aborted.saturating_add(d.listener.stalled)),
        ),
    ]);
    for (name, p) in [
        ("KinesisLatencyP50", 50.0),
        ("KinesisLatencyP99", 99.0),
        ("KinesisLatencyMax", 100.0),
    ] {
        if let Some(v) = percentile(&period.latencies, p) {
            metrics.push((name, "Milliseconds", json!(ms(v))));
        }
    }
    metrics
}

/// One EMF line (pure).
pub fn line(
    settings: &MetricsSettings,
    dims: &DimensionValues,
    period: &Period,
    timestamp_ms: u64,
) -> String {
    let metrics = metrics_of(period);
    let names: Vec<&str> = settings
        .dimensions
        .iter()
        .map(|d| dimension_name(*d))
        .collect();
    // `_aws` first, so the line is easy to pick out of a log (`{"_aws":`).
    let aws = json!({
        "Timestamp": timestamp_ms,
        "CloudWatchMetrics": [{
            "Namespace": settings.namespace,
            "Dimensions": [names],
            "Metrics": metrics.iter().map(|(n, u, _)| json!({"Name": n, "Unit": u})).collect::<Vec<_>>(),
        }],
    });
    let mut out = format!("{{\"_aws\":{aws}");
    let fields = settings
        .dimensions
        .iter()
        .map(|d| (dimension_name(*d), json!(dims.value(*d))))
        .chain(metrics.into_iter().map(|(n, _, v)| (n, v)));
    for (name, value) in fields {
        out.push_str(&format!(",{}:{value}", json!(name)));
    }
    out.push('}');
    out
}

/// The emitter: the previous snapshot, and when the last line went out.
pub struct Metrics {
    settings: MetricsSettings,
    dims: DimensionValues,
    last: Snapshot,
    last_at: Instant,
    pub lines: u64,
}

impl Metrics {
    pub fn new(settings: MetricsSettings, dims: DimensionValues) -> Metrics {
        Metrics {
            settings,
            dims,
            last: Snapshot::default(),
            last_at: Instant::now(),
            lines: 0,
        }
    }

    /// Whether a periodic line is due (pure): the interval has passed and something
    /// happened since the last line.
    pub fn is_due(&self, now: Instant, current: &Snapshot) -> bool {
        self.settings.enabled
            && now.saturating_duration_since(self.last_at) >= self.settings.interval
            && current != &self.last
    }

    /// When the next periodic line may go out.
    pub fn next_due(&self) -> Option<Instant> {
        self.settings
            .enabled
            .then(|| self.last_at + self.settings.interval)
    }

    /// Writes the line for everything since the previous one (to stdout) and returns it.
    pub fn emit(
        &mut self,
        now: Instant,
        current: Snapshot,
        latencies: Vec<Duration>,
        high_water_bytes: usize,
    ) -> Option<String> {
        if !self.settings.enabled {
            return None;
        }
        let period = Period {
            delta: current.since(&self.last),
            latencies,
            high_water_bytes,
        };
        let timestamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let text = line(&self.settings, &self.dims, &period, timestamp);
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{text}");
        let _ = out.flush();
        self.last = current;
        self.last_at = now;
        self.lines += 1;
        Some(text)
    }
}

#[cfg(test)]
mod tests;
