use super::*;
use std::collections::BTreeMap;

fn settings() -> MetricsSettings {
    MetricsSettings {
        enabled: true,
        namespace: "KinesisTelemetryExtension".into(),
        dimensions: vec![Dimension::FunctionName, Dimension::FunctionVersion],
        interval: Duration::from_secs(60),
    }
}

fn dims() -> DimensionValues {
    DimensionValues {
        function_name: "orders".into(),
        function_version: "7".into(),
        stream_name: "telemetry".into(),
    }
}

/// Checks the EMF specification's structure and returns metric name → (unit, value).
fn parse_emf(text: &str) -> BTreeMap<String, (String, f64)> {
    assert!(text.starts_with("{\"_aws\":"), "{text}");
    let v: Value = serde_json::from_str(text).expect("one JSON object");
    let aws = v["_aws"].as_object().expect("_aws metadata object");
    assert!(aws["Timestamp"].as_u64().unwrap() > 1_600_000_000_000);
    let directives = aws["CloudWatchMetrics"].as_array().unwrap();
    assert_eq!(directives.len(), 1);
    let d = &directives[0];
    assert!(!d["Namespace"].as_str().unwrap().is_empty());
    for set in d["Dimensions"].as_array().unwrap() {
        for name in set.as_array().unwrap() {
            let name = name.as_str().unwrap();
            assert!(v[name].is_string(), "dimension {name} has a value");
        }
    }
    // CloudWatch units (Bytes/Second among them).
    let units = ["Count", "Bytes", "Milliseconds", "Bytes/Second"];
    let mut out = BTreeMap::new();
    for m in d["Metrics"].as_array().unwrap() {
        let name = m["Name"].as_str().unwrap().to_string();
        let unit = m["Unit"].as_str().unwrap().to_string();
        assert!(units.contains(&unit.as_str()), "{name}: {unit}");
        let value = v[&name]
            .as_f64()
            .unwrap_or_else(|| panic!("{name} has no value"));
        assert!(out.insert(name, (unit, value)).is_none());
    }
    out
}

#[test]
fn a_line_is_valid_emf_with_the_period_s_numbers() {
    let mut dropped = BTreeMap::new();
    dropped.insert(DropReason::BufferFull, 3);
    dropped.insert(DropReason::Fatal("AccessDeniedException".into()), 2);
    let period = Period {
        delta: Snapshot {
            received: 100,
            filtered: 5,
            delivered: 90,
            dropped,
            resent_events: 7,
            throttled: 4,
            requests: 12,
            failed_requests: 1,
            lambda_dropped_events: 20,
            lambda_dropped_bytes: 2048,
            spilled: 0,
            listener: crate::stats::Refusals {
                refused_connections: 1,
                evicted: 16,
                bad_requests: 2,
                not_found: 3,
                method_not_allowed: 4,
                too_large: 5,
                aborted: 6,
                stalled: 7,
            },
            send_rate_limit: 420_000,
        },
        latencies: [10, 20, 30, 40].map(Duration::from_millis).to_vec(),
        high_water_bytes: 65_536,
    };
    let text = line(&settings(), &dims(), &period, 1_700_000_000_000);
    let m = parse_emf(&text);
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["FunctionName"], "orders");
    assert_eq!(v["FunctionVersion"], "7");
    assert_eq!(
        v["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
        json!([["FunctionName", "FunctionVersion"]])
    );
    let get = |n: &str| m.get(n).map(|(u, v)| (u.as_str(), *v));
    assert_eq!(get("EventsReceived"), Some(("Count", 100.0)));
    assert_eq!(get("EventsDelivered"), Some(("Count", 90.0)));
    assert_eq!(get("EventsFiltered"), Some(("Count", 5.0)));
    assert_eq!(get("EventsDropped"), Some(("Count", 5.0)));
    assert_eq!(get("EventsDroppedBufferFull"), Some(("Count", 3.0)));
    assert_eq!(get("EventsDroppedKinesisRefused"), Some(("Count", 2.0)));
    assert_eq!(get("EventsResent"), Some(("Count", 7.0)));
    assert_eq!(get("RecordsThrottled"), Some(("Count", 4.0)));
    assert_eq!(get("SendRateLimit"), Some(("Bytes/Second", 420_000.0)));
    assert_eq!(get("KinesisRequests"), Some(("Count", 12.0)));
    assert_eq!(get("KinesisRequestsFailed"), Some(("Count", 1.0)));
    assert_eq!(get("BufferHighWaterBytes"), Some(("Bytes", 65_536.0)));
    assert_eq!(get("LambdaDroppedEvents"), Some(("Count", 20.0)));
    assert_eq!(get("LambdaDroppedBytes"), Some(("Bytes", 2048.0)));
    assert_eq!(get("ListenerConnectionsRefused"), Some(("Count", 1.0)));
    assert_eq!(get("ListenerConnectionsEvicted"), Some(("Count", 16.0)));
    assert_eq!(get("ListenerRequestsRefused"), Some(("Count", 14.0)));
    assert_eq!(get("ListenerRequestsWrongPath"), Some(("Count", 3.0)));
    assert_eq!(get("ListenerRequestsCut"), Some(("Count", 13.0)));
    assert_eq!(get("KinesisLatencyP50"), Some(("Milliseconds", 20.0)));
    assert_eq!(get("KinesisLatencyP99"), Some(("Milliseconds", 40.0)));
    assert_eq!(get("KinesisLatencyMax"), Some(("Milliseconds", 40.0)));
}

#[test]
fn without_requests_there_are_no_latency_metrics_and_no_dimensions_is_allowed() {
    let s = MetricsSettings {
        dimensions: Vec::new(),
        ..settings()
    };
    let text = line(&s, &dims(), &Period::default(), 1_700_000_000_000);
    let m = parse_emf(&text);
    assert!(!m.contains_key("KinesisLatencyP50"));
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["_aws"]["CloudWatchMetrics"][0]["Dimensions"], json!([[]]));
    assert!(v.get("FunctionName").is_none());
}

#[test]
fn lines_come_at_most_once_per_interval_and_only_with_activity() {
    let mut m = Metrics::new(settings(), dims());
    let t0 = Instant::now();
    let busy = Snapshot {
        received: 10,
        ..Snapshot::default()
    };
    assert!(!m.is_due(t0, &busy), "not before the interval");
    let later = t0 + Duration::from_secs(61);
    assert!(m.is_due(later, &busy));
    m.emit(later, busy.clone(), Vec::new(), 0).unwrap();
    assert_eq!(m.lines, 1);
    let much_later = later + Duration::from_secs(600);
    assert!(!m.is_due(much_later, &busy), "no activity since: no line");
    let off = Metrics::new(
        MetricsSettings {
            enabled: false,
            ..settings()
        },
        dims(),
    );
    assert!(!off.is_due(much_later, &busy));
    assert_eq!(off.next_due(), None);
}
