use super::*;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

struct Case {
    name: &'static str,
    kind: WindowKind,
    requests: u32,
    /// Window end, ms after `now`.
    until_ms: u64,
    view: View,
    want: Step,
}

fn base(now: Instant) -> View {
    View {
        now,
        has_data: true,
        full: false,
        due: true,
        done_seen: false,
        done_pending: false,
        report_seen: false,
        last_arrival: None,
        due_at: None,
        backoff_until: None,
        struggling: false,
        probe_from: None,
        time_needed: ms(10),
        failing: false,
        run_left: None,
        recovery_probe: false,
    }
}

fn held() -> WindowKind {
    WindowKind::Invoke {
        hold: Some("r-1".into()),
    }
}

fn background() -> WindowKind {
    WindowKind::Invoke { hold: None }
}

/// Each case decides as it says; after a fatal answer an invocation window closes instead,
/// SHUTDOWN goes on.
fn decides(now: Instant, cases: Vec<Case>) {
    for c in cases {
        let mut w = Window {
            id: 1,
            kind: c.kind,
            opened: now,
            until: now + ms(c.until_ms),
            requests: c.requests,
            refused: false,
        };
        assert_eq!(next_step(&w, &c.view), c.want, "{}", c.name);
        w.refused = true;
        match w.kind {
            WindowKind::Invoke { .. } => {
                assert_eq!(
                    next_step(&w, &c.view),
                    Step::Close(Close::Refused),
                    "{}",
                    c.name
                )
            }
            _ => assert_eq!(next_step(&w, &c.view), c.want, "{}", c.name),
        }
    }
}

/// An invocation that is not held: send what is due, close when nothing is or when Kinesis
/// is slower than what is left of the window.
#[test]
fn a_background_invocation_sends_what_is_due_if_a_request_can_finish() {
    let now = Instant::now();
    let v = base(now);
    decides(
        now,
        vec![
            // Background invocations: send what is due, close when nothing is.
            Case {
                name: "bg: due",
                kind: background(),
                requests: 0,
                until_ms: 3000,
                view: v,
                want: Step::Send,
            },
            Case {
                name: "bg: not due",
                kind: background(),
                requests: 0,
                until_ms: 3000,
                view: View { due: false, ..v },
                want: Step::Close(Close::NothingDue),
            },
            Case {
                name: "bg: empty",
                kind: background(),
                requests: 0,
                until_ms: 3000,
                view: View {
                    has_data: false,
                    ..v
                },
                want: Step::Close(Close::NothingDue),
            },
            Case {
                name: "bg: Kinesis slower than the window",
                kind: background(),
                requests: 0,
                until_ms: 900,
                view: View {
                    time_needed: ms(1500),
                    ..v
                },
                want: Step::Close(Close::TooSlow),
            },
            Case {
                name: "bg: fits the window only if the timer does not overrun",
                kind: background(),
                requests: 0,
                until_ms: 75,
                view: View {
                    time_needed: ms(70),
                    ..v
                },
                want: Step::Close(Close::TooSlow),
            },
            Case {
                name: "bg: fits the window with the overrun",
                kind: background(),
                requests: 0,
                until_ms: 80,
                view: View {
                    time_needed: ms(70),
                    ..v
                },
                want: Step::Send,
            },
        ],
    );
}

/// While Kinesis struggles, an invocation makes one probe, spaced by the base backoff.
#[test]
fn while_kinesis_struggles_a_background_invocation_makes_one_probe() {
    let now = Instant::now();
    let v = base(now);
    decides(
        now,
        vec![
            Case {
                name: "bg: struggling, probe made",
                kind: background(),
                requests: 1,
                until_ms: 3000,
                view: View {
                    struggling: true,
                    ..v
                },
                want: Step::Close(Close::Struggling),
            },
            Case {
                name: "bg: struggling, first probe",
                kind: background(),
                requests: 0,
                until_ms: 3000,
                view: View {
                    struggling: true,
                    ..v
                },
                want: Step::Send,
            },
            Case {
                name: "bg: struggling, the probe waits for its spacing, not the grown backoff",
                kind: background(),
                requests: 0,
                until_ms: 40,
                view: View {
                    struggling: true,
                    backoff_until: Some(now + ms(900)),
                    probe_from: Some(now + ms(20)),
                    run_left: Some(ms(30)),
                    ..v
                },
                want: Step::Wait(now + ms(20)),
            },
            Case {
                name: "bg: struggling, probe spacing past the window",
                kind: background(),
                requests: 0,
                until_ms: 40,
                view: View {
                    struggling: true,
                    backoff_until: Some(now + ms(900)),
                    probe_from: Some(now + ms(35)),
                    ..v
                },
                want: Step::Close(Close::End),
            },
            Case {
                name: "bg: struggling, spacing over: probe now",
                kind: background(),
                requests: 0,
                until_ms: 40,
                view: View {
                    struggling: true,
                    backoff_until: Some(now + ms(900)),
                    probe_from: None,
                    ..v
                },
                want: Step::Send,
            },
        ],
    );
}

/// A backoff is waited for only while the function is expected to run, inside the window.
#[test]
fn a_background_invocation_waits_out_a_backoff_only_while_its_function_runs() {
    let now = Instant::now();
    let v = base(now);
    decides(
        now,
        vec![
            Case {
                name: "bg: backoff inside the window, while the function runs",
                kind: background(),
                requests: 1,
                until_ms: 3000,
                view: View {
                    backoff_until: Some(now + ms(50)),
                    run_left: Some(ms(200)),
                    ..v
                },
                want: Step::Wait(now + ms(50)),
            },
            Case {
                name: "bg: a backoff past the function's expected end: close",
                kind: background(),
                requests: 1,
                until_ms: 3000,
                view: View {
                    backoff_until: Some(now + ms(50)),
                    run_left: Some(ms(20)),
                    ..v
                },
                want: Step::Close(Close::End),
            },
            Case {
                name: "bg: a backoff with the function's run unknown: close",
                kind: background(),
                requests: 1,
                until_ms: 3000,
                view: View {
                    backoff_until: Some(now + ms(10)),
                    ..v
                },
                want: Step::Close(Close::End),
            },
            Case {
                name: "bg: backoff past the window",
                kind: background(),
                requests: 1,
                until_ms: 40,
                view: View {
                    backoff_until: Some(now + ms(50)),
                    ..v
                },
                want: Step::Close(Close::End),
            },
        ],
    );
}

/// A held invocation: wait for telemetry, send it, close once its runtimeDone is delivered or
/// its window ends.
#[test]
fn a_held_invocation_sends_until_its_runtime_done_is_delivered() {
    let now = Instant::now();
    let v = base(now);
    decides(
        now,
        vec![
            // Held invocations: send continuously, close once runtimeDone is delivered.
            Case {
                name: "hold: waiting, nothing to send",
                kind: held(),
                requests: 0,
                until_ms: 2900,
                view: View { due: false, ..v },
                want: Step::Wait(now + ms(2900)),
            },
            Case {
                name: "hold: a full request goes at once",
                kind: held(),
                requests: 0,
                until_ms: 2900,
                view: View {
                    due: false,
                    full: true,
                    ..v
                },
                want: Step::Send,
            },
            Case {
                name: "hold: due by age",
                kind: held(),
                requests: 0,
                until_ms: 2900,
                view: v,
                want: Step::Send,
            },
            Case {
                name: "hold: runtimeDone in, pending",
                kind: held(),
                requests: 0,
                until_ms: 2900,
                view: View {
                    due: false,
                    done_seen: true,
                    done_pending: true,
                    ..v
                },
                want: Step::Send,
            },
            Case {
                name: "hold: runtimeDone delivered",
                kind: held(),
                requests: 2,
                until_ms: 2900,
                view: View {
                    done_seen: true,
                    done_pending: false,
                    ..v
                },
                want: Step::Close(Close::Delivered),
            },
            Case {
                name: "hold: runtimeDone never came",
                kind: held(),
                requests: 0,
                until_ms: 0,
                view: View { due: false, ..v },
                want: Step::Close(Close::NoRuntimeDone),
            },
            Case {
                name: "hold: end after runtimeDone",
                kind: held(),
                requests: 1,
                until_ms: 0,
                view: View {
                    done_seen: true,
                    done_pending: true,
                    ..v
                },
                want: Step::Close(Close::End),
            },
        ],
    );
}

/// A held invocation gives a slow or failing Kinesis no more of its time than a probe.
#[test]
fn a_held_invocation_is_not_stretched_for_a_slow_or_failing_kinesis() {
    let now = Instant::now();
    let v = base(now);
    decides(
        now,
        vec![
            Case {
                name: "hold: struggling, the probe waits for its spacing while the function runs",
                kind: held(),
                requests: 0,
                until_ms: 2900,
                view: View {
                    struggling: true,
                    full: true,
                    backoff_until: Some(now + ms(900)),
                    probe_from: Some(now + ms(20)),
                    ..v
                },
                want: Step::Wait(now + ms(20)),
            },
            Case {
                name: "hold: after runtimeDone nothing waits (the time is the function's)",
                kind: held(),
                requests: 0,
                until_ms: 2900,
                view: View {
                    done_seen: true,
                    done_pending: true,
                    backoff_until: Some(now + ms(20)),
                    ..v
                },
                want: Step::Close(Close::End),
            },
            Case {
                name: "hold: struggling, probe made",
                kind: held(),
                requests: 1,
                until_ms: 2900,
                view: View {
                    struggling: true,
                    done_seen: true,
                    done_pending: true,
                    ..v
                },
                want: Step::Close(Close::Struggling),
            },
            Case {
                name: "hold: too slow to send",
                kind: held(),
                requests: 0,
                until_ms: 900,
                view: View {
                    done_seen: true,
                    done_pending: true,
                    time_needed: ms(1500),
                    ..v
                },
                want: Step::Close(Close::TooSlow),
            },
            Case {
                name: "hold: too slow before runtimeDone",
                kind: held(),
                requests: 0,
                until_ms: 900,
                view: View {
                    full: true,
                    time_needed: ms(1500),
                    ..v
                },
                want: Step::Close(Close::TooSlow),
            },
            Case {
                name: "hold: backoff while the function runs",
                kind: held(),
                requests: 1,
                until_ms: 900,
                view: View {
                    full: true,
                    backoff_until: Some(now + ms(30)),
                    ..v
                },
                want: Step::Wait(now + ms(30)),
            },
            Case {
                name: "hold: backoff past the end",
                kind: held(),
                requests: 1,
                until_ms: 20,
                view: View {
                    done_seen: true,
                    done_pending: true,
                    backoff_until: Some(now + ms(30)),
                    ..v
                },
                want: Step::Close(Close::End),
            },
        ],
    );
}

/// SHUTDOWN: send while there is data and a request can finish, wait for the last batch.
#[test]
fn shutdown_delivers_everything_before_the_end() {
    let now = Instant::now();
    let v = base(now);
    let grace = now + ms(400);
    let shutdown = |last: Option<&str>| WindowKind::Shutdown {
        grace_end: grace,
        last_request: last.map(Into::into),
        quiet: ms(200),
    };
    decides(
        now,
        vec![
            // SHUTDOWN: send while there is data; wait for the last report (or quiet) otherwise.
            Case {
                name: "shutdown: data",
                kind: shutdown(Some("r-9")),
                requests: 0,
                until_ms: 1700,
                view: View { due: false, ..v },
                want: Step::Send,
            },
            Case {
                name: "shutdown: deadline",
                kind: shutdown(Some("r-9")),
                requests: 3,
                until_ms: 5,
                view: v,
                want: Step::Close(Close::End),
            },
            Case {
                name: "shutdown: only the base backoff is waited",
                kind: shutdown(Some("r-9")),
                requests: 4,
                until_ms: 300,
                view: View {
                    backoff_until: Some(now + ms(900)),
                    probe_from: Some(now + ms(25)),
                    ..v
                },
                want: Step::Wait(now + ms(25)),
            },
            Case {
                name: "shutdown: never past the last chance",
                kind: shutdown(Some("r-9")),
                requests: 4,
                until_ms: 300,
                view: View {
                    backoff_until: Some(now + ms(900)),
                    probe_from: Some(now + ms(600)),
                    time_needed: ms(70),
                    ..v
                },
                // 70 ms and what the timer may overrun: 80 ms before the end.
                want: Step::Wait(now + ms(220)),
            },
            Case {
                name: "shutdown: the last chance has come",
                kind: shutdown(Some("r-9")),
                requests: 4,
                until_ms: 300,
                view: View {
                    now: now + ms(220),
                    backoff_until: Some(now + ms(900)),
                    probe_from: Some(now + ms(600)),
                    time_needed: ms(70),
                    ..v
                },
                want: Step::Send,
            },
            Case {
                name: "shutdown: slow Kinesis still gets the last attempt",
                kind: shutdown(Some("r-9")),
                requests: 0,
                until_ms: 900,
                view: View {
                    time_needed: ms(1500),
                    ..v
                },
                want: Step::Send,
            },
            Case {
                name: "shutdown: waiting for the report",
                kind: shutdown(Some("r-9")),
                requests: 0,
                until_ms: 1700,
                view: View {
                    has_data: false,
                    ..v
                },
                want: Step::Wait(grace),
            },
            Case {
                name: "shutdown: report in",
                kind: shutdown(Some("r-9")),
                requests: 0,
                until_ms: 1700,
                view: View {
                    has_data: false,
                    report_seen: true,
                    ..v
                },
                want: Step::Close(Close::Drained),
            },
            Case {
                name: "shutdown: no invocation: quiet period",
                kind: shutdown(None),
                requests: 0,
                until_ms: 1700,
                view: View {
                    has_data: false,
                    ..v
                },
                want: Step::Wait(now + ms(200)),
            },
        ],
    );
}

/// Lambda Managed Instances: full or due requests go, the rest waits for its time.
#[test]
fn a_continuous_window_sends_on_its_own_clock() {
    let now = Instant::now();
    let v = base(now);
    decides(
        now,
        vec![
            // Managed Instances: on the clock.
            Case {
                name: "continuous: due",
                kind: WindowKind::Continuous,
                requests: 9,
                until_ms: 999_999,
                view: v,
                want: Step::Send,
            },
            Case {
                name: "continuous: full",
                kind: WindowKind::Continuous,
                requests: 9,
                until_ms: 999_999,
                view: View {
                    due: false,
                    full: true,
                    ..v
                },
                want: Step::Send,
            },
            Case {
                name: "continuous: not yet due",
                kind: WindowKind::Continuous,
                requests: 9,
                until_ms: 999_999,
                view: View {
                    due: false,
                    due_at: Some(now + ms(700)),
                    ..v
                },
                want: Step::Wait(now + ms(700)),
            },
            Case {
                name: "continuous: struggling keeps the grown backoff",
                kind: WindowKind::Continuous,
                requests: 0,
                until_ms: 999_999,
                view: View {
                    struggling: true,
                    backoff_until: Some(now + ms(800)),
                    probe_from: Some(now + ms(20)),
                    ..v
                },
                want: Step::Wait(now + ms(800)),
            },
            Case {
                name: "continuous: backoff",
                kind: WindowKind::Continuous,
                requests: 9,
                until_ms: 999_999,
                view: View {
                    backoff_until: Some(now + ms(80)),
                    ..v
                },
                want: Step::Wait(now + ms(80)),
            },
        ],
    );
}

#[test]
fn the_shutdown_wait_ends_after_a_quiet_period_or_the_grace() {
    let opened = Instant::now();
    let w = Window {
        id: 2,
        kind: WindowKind::Shutdown {
            grace_end: opened + ms(1000),
            last_request: None,
            quiet: ms(200),
        },
        opened,
        until: opened + ms(1700),
        requests: 0,
        refused: false,
    };
    let v = |at: u64, last: Option<u64>| View {
        now: opened + ms(at),
        has_data: false,
        last_arrival: last.map(|l| opened + ms(l)),
        ..base(opened)
    };
    assert_eq!(next_step(&w, &v(100, None)), Step::Wait(opened + ms(200)));
    assert_eq!(next_step(&w, &v(200, None)), Step::Close(Close::Drained));
    // A batch at 150 ms restarts the quiet period.
    assert_eq!(
        next_step(&w, &v(200, Some(150))),
        Step::Wait(opened + ms(350))
    );
    assert_eq!(
        next_step(&w, &v(350, Some(150))),
        Step::Close(Close::Drained)
    );
    // Never past the grace.
    assert_eq!(
        next_step(&w, &v(1000, Some(990))),
        Step::Close(Close::Drained)
    );
}

#[test]
fn while_kinesis_fails_an_invocation_sends_only_while_its_function_runs() {
    let now = Instant::now();
    let failing = |run_left: Option<u64>, done_seen: bool| View {
        failing: true,
        run_left: run_left.map(ms),
        done_seen,
        time_needed: ms(30),
        ..base(now)
    };
    let w = |kind: WindowKind| Window {
        id: 1,
        kind,
        opened: now,
        until: now + ms(5_000),
        requests: 0,
        refused: false,
    };
    // (name, kind, view, step)
    let cases = [
        (
            "time to run: send",
            background(),
            failing(Some(200), false),
            Step::Send,
        ),
        (
            "run unknown: wait for a later one",
            background(),
            failing(None, false),
            Step::Close(Close::NoTime),
        ),
        (
            "too short for the observed latency",
            background(),
            failing(Some(20), false),
            Step::Close(Close::NoTime),
        ),
        (
            "after runtimeDone: nothing",
            background(),
            failing(Some(200), true),
            Step::Close(Close::NoTime),
        ),
        (
            "healthy: as usual",
            background(),
            View {
                run_left: None,
                ..base(now)
            },
            Step::Send,
        ),
        (
            "held, failing after runtimeDone: close",
            held(),
            View {
                done_pending: true,
                ..failing(None, true)
            },
            Step::Close(Close::Struggling),
        ),
    ];
    for (name, kind, view, want) in cases {
        assert_eq!(next_step(&w(kind), &view), want, "{name}");
    }
}
