//! The telemetry listener, black box: the real binary keeps taking telemetry through
//! failures that ended it before (an accept error, a stalled connection).

use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use kte_test_support as support;

use support::{Lambda, LambdaOptions};

const T: Duration = Duration::from_secs(10);

fn opts() -> LambdaOptions {
    LambdaOptions::default()
        .binary(support::extension_under_test!())
        .env("KINESIS_TELEMETRY_BUFFERING_TIMEOUT_MS", "25")
}

/// Sets the soft `RLIMIT_NOFILE` of another process; returns the previous limits.
fn set_nofile(pid: u32, soft: u64) -> libc::rlimit {
    let mut old = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: a read of the current limits into `old`, then a write of a lower soft limit,
    // of a child process this test spawned and still owns.
    unsafe {
        assert_eq!(
            libc::prlimit(pid as i32, libc::RLIMIT_NOFILE, std::ptr::null(), &mut old),
            0
        );
        let new = libc::rlimit {
            rlim_cur: soft as libc::rlim_t,
            rlim_max: old.rlim_max,
        };
        assert_eq!(
            libc::prlimit(pid as i32, libc::RLIMIT_NOFILE, &new, std::ptr::null_mut()),
            0
        );
    }
    old
}

fn restore_nofile(pid: u32, old: libc::rlimit) {
    // SAFETY: as above.
    let r = unsafe { libc::prlimit(pid as i32, libc::RLIMIT_NOFILE, &old, std::ptr::null_mut()) };
    assert_eq!(r, 0);
}

/// With no file descriptor left (EMFILE), accepting telemetry connections fails. tiny_http's
/// accept thread ended on that error, and telemetry with it, for the life of the sandbox; the
/// listener must count it, say so once, keep retrying, and serve the connection that waited
/// in the kernel's queue once descriptors free up.
#[test]
fn the_listener_survives_an_accept_failure() {
    let mut l = Lambda::start(opts());
    let pid = l.pid();
    // No descriptor can be opened from now on: 0, 1 and 2 stay open, so every new one would
    // be past the limit. (An accept already waiting in the kernel holds its descriptor: the
    // platform's first connection still gets in, and the next accept fails at once.) Nothing
    // else needs a descriptor meanwhile: the lifecycle waits in its long poll, and the
    // flusher has nothing to send.
    let old = set_nofile(pid, 3);
    let init = l.events.init_start();
    l.push(&init);
    let extra = l.events.extension_text();
    l.push(&extra);
    assert!(l.runtime.flush_telemetry(T));
    let failed = l.wait_log("accepting a connection failed", T);
    // A new connection waits in the kernel's queue while the listener cannot accept it.
    let runtime = l.runtime.handle();
    let waiting = std::thread::spawn(move || runtime.post_raw(b"[]").map(|r| r.status));
    std::thread::sleep(Duration::from_millis(500));
    restore_nofile(pid, old);
    assert!(failed, "the accept failure is logged\n{}", l.log_text());
    assert!(
        l.wait_log("accepting connections again", T),
        "the listener recovers by itself\n{}",
        l.log_text()
    );
    assert_eq!(
        waiting.join().unwrap().ok(),
        Some(200),
        "the waiting connection is served"
    );
    l.invoke(2);
    let out = l.shutdown();
    assert!(out.exited_ok_before_deadline(), "{out:?}\n{}", l.log_text());
    l.assert_each_event_delivered_once();
    assert!(
        l.summary_count("accept_errors").is_some_and(|n| n >= 1),
        "{:?}",
        l.summary_line()
    );
    let lines = l.log_lines_with("accepting a connection failed").len();
    assert_eq!(lines, 1, "logged once per episode\n{}", l.log_text());
}

/// A client that starts a POST and stops sending holds only its own connection: telemetry
/// keeps arriving on the platform's connection, and the stalled one is closed and counted.
#[test]
fn a_stalled_telemetry_connection_does_not_stop_intake() {
    let mut l = Lambda::start(opts());
    let port = l.runtime.subscription().expect("subscribed").port;
    let mut stuck = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stuck
        .write_all(b"POST / HTTP/1.1\r\nHost: sandbox.localdomain\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n[{\"type\":")
        .unwrap();
    l.invoke(3);
    let out = l.shutdown();
    assert!(out.exited_ok_before_deadline(), "{out:?}\n{}", l.log_text());
    l.assert_each_event_delivered_once();
    drop(stuck);
}

/// The stalled connection is cut after the request timeout, counted and logged once.
#[test]
fn a_stalled_telemetry_connection_is_closed_and_counted() {
    let mut l = Lambda::start(opts());
    let port = l.runtime.subscription().expect("subscribed").port;
    let mut stuck = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stuck
        .write_all(b"POST / HTTP/1.1\r\nContent-Length: 100\r\n\r\n[")
        .unwrap();
    assert!(
        l.wait_log("telemetry listener:", Duration::from_secs(15)),
        "the stall is logged\n{}",
        l.log_text()
    );
    l.invoke(1);
    let out = l.shutdown();
    assert!(out.exited_ok_before_deadline(), "{out:?}");
    assert_eq!(
        l.summary_count("stalled_connections"),
        Some(1),
        "{:?}",
        l.summary_line()
    );
    l.assert_each_event_delivered_once();
}
