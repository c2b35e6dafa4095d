//! What a window allows a request (the request itself runs in the flusher's tests).

use super::*;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[test]
fn a_request_is_bounded_by_what_its_window_allows() {
    let now = Instant::now();
    let policy = RetryPolicy {
        max_attempts: 1,
        backoff_base: ms(1),
        backoff_max: ms(5),
    };
    let mut rng = Rng::seeded(1);
    let mut healthy = Health::default();
    // A 5 MB request in 100 ms: what the rest of a budget moves is known.
    healthy.observe_sized(now, ms(100), 5_000_000, Observation::Ok, &policy, &mut rng);
    let mut struggling = healthy.clone();
    struggling.observe(now, ms(5), Observation::Retry, &policy, &mut rng);
    assert!(struggling.struggling());
    let window = |kind: WindowKind| Window {
        id: 1,
        kind,
        opened: now,
        until: now + ms(3_000),
        requests: 0,
        refused: false,
    };
    let invoke = || window(WindowKind::Invoke { hold: None });
    let shutdown = || {
        window(WindowKind::Shutdown {
            grace_end: now,
            last_request: None,
            quiet: ms(200),
        })
    };
    let view = |failing: bool, run_left: Option<u64>, done_seen: bool| View {
        now,
        has_data: true,
        full: false,
        due: true,
        done_seen,
        done_pending: done_seen,
        report_seen: false,
        last_arrival: None,
        due_at: None,
        backoff_until: None,
        struggling: false,
        probe_from: None,
        time_needed: ms(30),
        failing,
        run_left: run_left.map(ms),
        recovery_probe: false,
    };
    // (name, window, view, health, until after now, probe, capped)
    let cases = [
        (
            "healthy",
            invoke(),
            view(false, None, false),
            &healthy,
            3_000,
            false,
            false,
        ),
        (
            "after runtimeDone: what the rest moves",
            invoke(),
            view(false, None, true),
            &healthy,
            3_000,
            false,
            true,
        ),
        (
            "failing: while the function runs",
            invoke(),
            view(true, Some(200), false),
            &healthy,
            200,
            false,
            false,
        ),
        (
            "failing, run unknown: a probe within the budget",
            invoke(),
            view(true, None, false),
            &healthy,
            55,
            true,
            false,
        ),
        (
            "struggling: a probe",
            invoke(),
            view(false, None, false),
            &struggling,
            3_000,
            true,
            false,
        ),
        (
            "struggling at SHUTDOWN: everything it can",
            shutdown(),
            view(false, None, false),
            &struggling,
            3_000,
            false,
            false,
        ),
    ];
    for (name, w, v, health, until, probe, capped) in cases {
        let b = Bounds::in_window(&w, &v, health, ms(60), now);
        assert_eq!(b.until, now + ms(until), "{name}: until");
        assert_eq!(b.probe, probe, "{name}: probe");
        assert_eq!(b.max_bytes.is_some(), capped, "{name}: max bytes");
    }
}

#[test]
fn an_episode_of_credentials_trouble_ends_with_its_own_line() {
    let creds = || Trouble::Credentials("host 127.0.0.1:9: answered HTTP 403".into());
    let kinesis = "Kinesis accepts records again; delivery resumed";
    let creds_back = "the function's credentials can be fetched again; delivery resumed";
    // (troubles the episode had, the line that ends it)
    let cases: [(Vec<Trouble>, &str); 4] = [
        (vec![creds()], creds_back),
        (vec![creds(), creds()], creds_back),
        (vec![Trouble::Hanging], kinesis),
        (vec![creds(), Trouble::Hanging], kinesis),
    ];
    for (ended, want) in cases {
        assert_eq!(recovery_line(&ended), want, "{ended:?}");
    }
}
