//! Short sandbox sessions: the real binary in the simulated execution environment
//! (freeze/thaw with SIGSTOP/SIGCONT, SHUTDOWN deadline enforced by SIGKILL; or Lambda
//! Managed Instances, concurrent and never frozen), every emitted event checked off byte
//! for byte in the mock Kinesis (packed records decoded as a consumer would).
//!
//! Every assertion is about behaviour, never about how long something took: faults are
//! scripted by count (the first N requests or records) or last from one invocation to
//! another, so they hit however the events happen to be batched on a loaded machine.

use std::time::Duration;

use kte_test_support as support;
use support::sandbox::{self, Faults, Outage, Pace, Report, SandboxConfig, Workload};

fn workload(invocations: usize) -> Workload {
    Workload {
        invocations,
        pace: Pace::Gap(Duration::from_millis(2)),
        init_duration: Duration::from_millis(5),
        runtime_duration: Duration::from_millis(1),
        lines_per_invoke: 4,
        freeze: true,
        ..Workload::default()
    }
}

fn env(vars: &[(&str, &str)]) -> Vec<(String, String)> {
    vars.iter()
        .map(|(k, x)| (k.to_string(), x.to_string()))
        .collect()
}

fn run(cfg: SandboxConfig, expect_loss: bool) -> Report {
    let cfg = SandboxConfig {
        binary: Some(support::extension_under_test!()),
        ..cfg
    };
    let mut r = sandbox::run(&cfg).unwrap_or_else(|e| panic!("sandbox session failed: {e}"));
    r.judge(expect_loss);
    eprintln!("{}", sandbox::render(&r));
    r
}

fn show(r: &Report) -> String {
    sandbox::render(r)
}

#[test]
fn two_hundred_frozen_invocations_then_shutdown_lose_nothing() {
    let r = run(
        SandboxConfig {
            workload: workload(200),
            ..SandboxConfig::default()
        },
        false,
    );
    assert!(r.passed(), "{}", show(&r));
    assert_eq!(
        r.freezes, 201,
        "frozen after init and after each invocation"
    );
    assert_eq!(r.emitted, 3 + 200 * (4 + 3), "{}", show(&r));
    assert_eq!((r.lost, r.duplicated), (0, 0), "{}", show(&r));
    assert_eq!(r.delivered, r.emitted);
    for t in [
        "platform.initStart",
        "platform.initRuntimeDone",
        "platform.initReport",
        "platform.start",
        "platform.runtimeDone",
        "platform.report",
        "function",
    ] {
        let c = &r.by_type[t];
        assert!(
            c.emitted > 0 && c.delivered == c.emitted,
            "{t}\n{}",
            show(&r)
        );
    }
    assert!(
        r.cost.records < r.emitted,
        "events are packed into records: {}",
        show(&r)
    );
    assert_eq!(r.registered_events, ["INVOKE", "SHUTDOWN"]);
    assert!(
        !r.shutdown.killed && r.shutdown.before_deadline,
        "{}",
        show(&r)
    );
    assert_eq!(r.shutdown.exit_code, Some(0));
}

#[test]
fn throttled_records_and_failing_requests_lose_nothing() {
    let r = run(
        SandboxConfig {
            workload: Workload {
                log_format: sandbox::LogFormat::Json,
                ..workload(200)
            },
            // The scripted counts hit whatever the batching (the extension must resend
            // until delivered); the fractions add more on top.
            faults: Faults {
                throttle: 0.20,
                throttle_first_records: 20,
                fail_500: 0.05,
                fail_first_requests: 3,
                seed: 7,
                ..Faults::default()
            },
            env: env(&[("KINESIS_TELEMETRY_FLUSH_MAX_EVENTS", "10")]),
            ..SandboxConfig::default()
        },
        false,
    );
    assert!(r.passed(), "{}", show(&r));
    assert_eq!((r.lost, r.duplicated), (0, 0), "{}", show(&r));
    assert!(
        r.kinesis.records_throttled >= 20 && r.kinesis.requests_rejected >= 3,
        "the faults must actually have hit: {}",
        show(&r)
    );
}

#[test]
fn a_burst_right_before_shutdown_is_delivered_before_the_deadline() {
    let r = run(
        SandboxConfig {
            workload: Workload {
                burst_before_shutdown: 5_000,
                ..workload(20)
            },
            ..SandboxConfig::default()
        },
        false,
    );
    assert!(r.passed(), "{}", show(&r));
    assert_eq!(r.by_type["function"].emitted, 20 * 4 + 5_000);
    assert_eq!((r.lost, r.duplicated), (0, 0), "{}", show(&r));
    assert!(
        r.shutdown.before_deadline && r.shutdown.exit_code == Some(0),
        "{}",
        show(&r)
    );
}

#[test]
fn an_outage_longer_than_the_buffer_loses_a_bounded_counted_amount_and_never_stalls() {
    let buffer_cap = 1_000; // KINESIS_TELEMETRY_BUFFER_MAX_EVENTS below
                            // Kinesis is down from the first invocation until the 100th begins: 100 × 23 events
                            // meet a buffer of 1,000, however fast the machine runs them.
    let r = run(
        SandboxConfig {
            workload: Workload {
                lines_per_invoke: 20,
                function_timeout: Duration::from_millis(400),
                ..workload(160)
            },
            faults: Faults {
                outage: Some(Outage::Invocations { start: 0, end: 100 }),
                ..Faults::default()
            },
            env: env(&[
                ("KINESIS_TELEMETRY_BUFFER_MAX_EVENTS", "1000"),
                ("KINESIS_TELEMETRY_FLUSH_MAX_EVENTS", "100"),
            ]),
            ..SandboxConfig::default()
        },
        true,
    );
    // judge(expect_loss) fails the run unless the loss lies in [dropped - in_doubt, dropped].
    assert!(r.passed(), "{}", show(&r));
    let c = r.extension.clone().expect("the summary line");
    // 2,300 events meet a buffer of 1,000 (slack for where the last batches land).
    assert!(
        r.lost >= 1_000 && r.lost_during_outage > 0,
        "the outage outlasts the buffer: {}",
        show(&r)
    );
    assert!(
        r.lost <= c.dropped && r.lost >= c.dropped - c.in_doubt,
        "{}",
        show(&r)
    );
    assert!(
        r.lost <= r.emitted - buffer_cap,
        "at least a buffer's worth survives: {}",
        show(&r)
    );
    assert!(
        r.delivered >= buffer_cap,
        "the buffered events are delivered after the outage: {}",
        show(&r)
    );
    assert_eq!(r.invocations_past_deadline, 0, "{}", show(&r));
    assert!(r.shutdown.before_deadline, "{}", show(&r));
}

#[test]
fn managed_instances_workers_lose_nothing_and_the_extension_registers_for_shutdown_only() {
    let r = run(
        SandboxConfig {
            workload: Workload {
                managed_instances: true,
                concurrency: 4,
                pace: Pace::Rate(200.0),
                ..workload(120)
            },
            ..SandboxConfig::default()
        },
        false,
    );
    assert!(r.passed(), "{}", show(&r));
    assert_eq!(r.registered_events, ["SHUTDOWN"], "{}", show(&r));
    assert_eq!((r.lost, r.duplicated, r.freezes), (0, 0, 0), "{}", show(&r));
    assert_eq!(r.emitted, 3 + 120 * (4 + 2), "{}", show(&r));
    assert!(
        !r.by_type.contains_key("platform.runtimeDone"),
        "no runtimeDone on Managed Instances"
    );
    assert_eq!(r.shutdown.exit_code, Some(0), "{}", show(&r));
    assert!(r.shutdown.before_deadline && !r.shutdown.killed);
}

#[test]
fn the_end_strategy_has_every_function_line_in_the_stream_before_its_invocation_ends() {
    let r = run(
        SandboxConfig {
            workload: workload(100),
            env: env(&[("KINESIS_TELEMETRY_FLUSH_STRATEGY", "end")]),
            ..SandboxConfig::default()
        },
        false,
    );
    assert!(r.passed(), "{}", show(&r));
    assert_eq!(
        r.function_in_stream_at_end,
        Some(1.0),
        "held until runtimeDone is delivered: {}",
        show(&r)
    );
}

#[test]
fn a_fixed_partition_key_keeps_emission_order_through_throttling() {
    let r = run(
        SandboxConfig {
            workload: workload(100),
            faults: Faults {
                throttle: 0.20,
                throttle_first_records: 10,
                seed: 11,
                ..Faults::default()
            },
            env: env(&[("KINESIS_TELEMETRY_PARTITION_KEY", "environment")]),
            ..SandboxConfig::default()
        },
        false,
    );
    // judge fails a fixed-key run on any inversion.
    assert!(r.passed(), "{}", show(&r));
    assert!(r.settings.fixed_partition_key);
    assert_eq!(r.order.partition_keys, 1, "{}", show(&r));
    assert_eq!(r.order.inversions, 0, "{}", show(&r));
    assert!(r.kinesis.records_throttled >= 10, "{}", show(&r));
}

#[test]
fn an_unreachable_endpoint_fails_on_the_extensions_own_counts() {
    let r = run(
        SandboxConfig {
            workload: workload(5),
            endpoint: Some("http://127.0.0.1:1".to_owned()),
            ..SandboxConfig::default()
        },
        false,
    );
    assert!(!r.verified);
    assert!(!r.passed(), "nothing can have been delivered: {}", show(&r));
    assert!(
        r.failures
            .iter()
            .any(|f| f.contains("the extension dropped")),
        "{}",
        show(&r)
    );
    assert!(show(&r).contains("verdict based on the extension's own counts"));
}

#[test]
fn a_fleet_checks_off_each_environments_events_in_the_one_stream_they_share() {
    let cfg = SandboxConfig {
        binary: Some(support::extension_under_test!()),
        workload: Workload {
            pace: Pace::Rate(50.0),
            ..workload(10)
        },
        environments: 3,
        shards: Some(2),
        ..SandboxConfig::default()
    };
    let mut f = sandbox::run_fleet(&cfg).unwrap_or_else(|e| panic!("fleet failed: {e}"));
    f.judge(false);
    let text = sandbox::render_fleet(&f);
    eprintln!("{text}");
    assert!(f.passed(), "{text}");
    assert_eq!(f.reports.len(), 3);
    for (r, line) in f.reports.iter().zip(&f.per_environment) {
        // Each environment's own events, all of them, and nothing of the others' (an event
        // of another environment would be "unexpected" in its ledger).
        assert!(r.verified && r.emitted > 0, "{text}");
        assert_eq!((r.delivered, r.unexpected_events), (r.emitted, 0), "{text}");
        assert!(
            line.put_records_calls > 0 && line.accepted_bytes > 0,
            "{text}"
        );
    }
    let calls: u64 = f.per_environment.iter().map(|l| l.put_records_calls).sum();
    assert_eq!(f.total.put_records_calls, calls);
    assert_eq!(f.shard_load.len(), 2, "{text}");
    assert!(f.total.clean_exit, "{text}");
}
