//! Short sandbox sessions: the real binary in the simulated execution environment
//! (freeze/thaw with SIGSTOP/SIGCONT, SHUTDOWN deadline enforced by SIGKILL), every
//! emitted event checked off byte for byte in the mock Kinesis.

use std::time::Duration;

use kte_test_support as support;
use support::sandbox::{self, Faults, Pace, Report, SandboxConfig, Workload};

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

/// Telemetry reaches the extension during the run (25 ms buffering), not only at SHUTDOWN.
fn env(extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut v = vec![("KINESIS_TELEMETRY_BUFFERING_TIMEOUT_MS", "25")];
    v.extend_from_slice(extra);
    v.into_iter()
        .map(|(k, x)| (k.to_owned(), x.to_owned()))
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
            env: env(&[]),
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
            faults: Faults {
                throttle: 0.20,
                fail_500: 0.05,
                seed: 7,
                ..Faults::default()
            },
            // Flush often so that many requests meet the faults.
            env: env(&[("KINESIS_TELEMETRY_FLUSH_MAX_EVENTS", "10")]),
            ..SandboxConfig::default()
        },
        false,
    );
    assert!(r.passed(), "{}", show(&r));
    assert_eq!((r.lost, r.duplicated), (0, 0), "{}", show(&r));
    assert!(
        r.kinesis.records_throttled > 100 && r.kinesis.requests_rejected > 0,
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
            env: env(&[]),
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
    let r = run(
        SandboxConfig {
            workload: Workload {
                lines_per_invoke: 20,
                function_timeout: Duration::from_millis(400),
                ..workload(160)
            },
            faults: Faults {
                outage: Some((Duration::ZERO, Duration::from_millis(1_200))),
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
    // judge(expect_loss) fails the run unless the extension's dropped= equals the loss.
    assert!(r.passed(), "{}", show(&r));
    assert!(
        r.lost > 0,
        "the outage must outlast the buffer: {}",
        show(&r)
    );
    assert_eq!(r.extension_dropped, Some(r.lost), "{}", show(&r));
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
    assert!(
        r.invoke_to_next.max_ms < 400.0,
        "never held an invocation past its deadline: {}",
        show(&r)
    );
    assert!(r.shutdown.before_deadline, "{}", show(&r));
}
