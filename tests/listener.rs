//! The telemetry listener, black box: the real binary keeps taking telemetry through
//! failures that ended it before (an accept error, a stalled connection, connections that
//! hold every slot), and takes it only from whoever knows the subscribed path.

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use kte_test_support as support;

use support::{http, Lambda, LambdaOptions};

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
    let sub = l.runtime.subscription().expect("subscribed");
    let mut stuck = TcpStream::connect(("127.0.0.1", sub.port)).unwrap();
    let head = format!("POST {} HTTP/1.1\r\nHost: sandbox.localdomain\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n[{{\"type\":", sub.path);
    stuck.write_all(head.as_bytes()).unwrap();
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
    let sub = l.runtime.subscription().expect("subscribed");
    let mut stuck = TcpStream::connect(("127.0.0.1", sub.port)).unwrap();
    let head = format!("POST {} HTTP/1.1\r\nContent-Length: 100\r\n\r\n[", sub.path);
    stuck.write_all(head.as_bytes()).unwrap();
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

/// Connections that never send a byte (the function's own code, or a leak) once held every
/// connection slot for good, and the platform's next connection was the one refused: its
/// telemetry was lost for as long as they stayed open. Idle connections now give way to a
/// newcomer, never the platform's keep-alive connection, which has carried telemetry.
#[test]
fn idle_connections_give_way_to_the_platform() {
    let mut l = Lambda::start(opts());
    let port = l.runtime.subscription().expect("subscribed").port;
    let hold = |n: usize| -> Vec<TcpStream> {
        (0..n)
            .map(|_| TcpStream::connect(("127.0.0.1", port)).expect("connect"))
            .collect()
    };
    // As many as the listener serves at once, before the platform's first POST: its new
    // connection comes after all of them in the accept queue.
    let idle = hold(16);
    let init = l.events.init_start();
    l.push(&init);
    assert!(
        l.runtime.flush_telemetry(T),
        "the first POST ends within {T:?}"
    );
    let first = l.runtime.telemetry_posts();
    if let Some(p) = first.first() {
        eprintln!(
            "with 16 idle connections held: the platform's first POST: {:?} {:?} after {:?}",
            p.status, p.error, p.latency
        );
    }
    assert_eq!(
        first.first().and_then(|p| p.status),
        Some(200),
        "the platform's new connection is answered: {first:?}\n{}",
        l.log_text()
    );
    l.invoke(2);
    // The platform's connection is idle between invocations; 16 more silent connections
    // take the other slots and keep asking for room.
    let more = hold(16);
    l.invoke(2);
    let out = l.shutdown();
    assert!(out.exited_ok_before_deadline(), "{out:?}\n{}", l.log_text());
    let posts = l.runtime.telemetry_posts();
    assert!(
        posts.iter().all(|p| p.status == Some(200)),
        "every POST answered 200: {posts:?}"
    );
    l.assert_each_event_delivered_once();
    assert!(
        l.summary_count("evicted_connections")
            .is_some_and(|n| n >= 16),
        "{:?}",
        l.summary_line()
    );
    drop((idle, more));
}

/// Anything in the sandbox can reach the listener (the function's code, or a request-forgery
/// bug in it aimed at localhost). Only the Telemetry API knows the subscribed path, random
/// for each start: a POST to any other path is refused, counted, and never reaches the
/// stream.
#[test]
fn only_the_subscribed_path_can_post() {
    let mut l = Lambda::start(opts());
    let sub = l.runtime.subscription().expect("subscribed");
    let secret = sub.path.strip_prefix('/').unwrap_or_default();
    assert!(
        secret.len() >= 16 && secret.bytes().all(|b| b.is_ascii_hexdigit()),
        "at least 16 random characters: {:?}",
        sub.path
    );
    let other = Lambda::start(opts());
    let other_path = other.runtime.subscription().expect("subscribed").path;
    assert_ne!(sub.path, other_path, "drawn afresh at each start");
    drop(other);

    let forged = r#"[{"time":"2024-01-01T00:00:00.000Z","type":"function","record":"forged"}]"#;
    let addr = SocketAddr::from(([127, 0, 0, 1], sub.port));
    let headers = vec![("Content-Type".to_owned(), "application/json".to_owned())];
    let guesses = [
        "/".to_string(),
        format!("/{}", "0".repeat(secret.len())),
        format!("{}/", sub.path),
    ];
    for path in &guesses {
        let answer = http::request_once(addr, "POST", path, &headers, forged.as_bytes(), T)
            .expect("answered");
        assert_eq!(answer.status, 404, "POST {path}");
    }
    l.invoke(2);
    let out = l.shutdown();
    assert!(out.exited_ok_before_deadline(), "{out:?}\n{}", l.log_text());
    // Exactly what the platform pushed: nothing forged.
    l.assert_each_event_delivered_once();
    assert_eq!(
        l.summary_count("wrong_path"),
        Some(guesses.len() as u64),
        "{:?}",
        l.summary_line()
    );
    assert_eq!(
        l.log_lines_with("a request to a path other than the subscribed one")
            .len(),
        1,
        "logged once\n{}",
        l.log_text()
    );
}

/// With no `KINESIS_TELEMETRY_BIND_ADDRESS`, the listener binds what `sandbox.localdomain`
/// resolves to (Lambda's `/etc/hosts`), and all addresses where the name does not resolve
/// (here, emulators), saying so.
#[test]
fn without_a_bind_address_it_listens_where_sandbox_localdomain_points() {
    use std::net::ToSocketAddrs;
    let resolved = ("sandbox.localdomain", 0)
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.find(SocketAddr::is_ipv4));
    let mut l = Lambda::start(opts().unset("KINESIS_TELEMETRY_BIND_ADDRESS"));
    let port = l.runtime.subscription().expect("subscribed").port;
    let all = l
        .log_lines_with(
            "sandbox.localdomain does not resolve here: listening for telemetry on all addresses",
        )
        .len();
    match resolved {
        None => {
            assert_eq!(all, 1, "{}", l.log_text());
            // The fake platform dials 127.0.0.1, one of all addresses.
            l.invoke(2);
            let out = l.shutdown();
            assert!(out.exited_ok_before_deadline(), "{out:?}\n{}", l.log_text());
            l.assert_each_event_delivered_once();
        }
        Some(addr) => {
            assert_eq!(all, 0, "{}", l.log_text());
            TcpStream::connect((addr.ip(), port)).expect("listening on the resolved address");
        }
    }
}

/// Another process holding the port: one error line naming the setting to change, and the
/// function runs on without telemetry.
#[test]
fn a_port_clash_names_kinesis_telemetry_port_and_the_function_runs_on() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let mut l = Lambda::start(opts().env("KINESIS_TELEMETRY_PORT", &port));
    assert!(
        l.wait_log("cannot listen for telemetry", T),
        "{}",
        l.log_text()
    );
    let lines = l.log_lines_with(&format!("cannot listen for telemetry on 127.0.0.1:{port}"));
    assert_eq!(lines.len(), 1, "{}", l.log_text());
    assert!(
        lines[0].contains("set KINESIS_TELEMETRY_PORT to a free port")
            && lines[0].contains("the function runs normally"),
        "{}",
        lines[0]
    );
    assert!(l.runtime.subscription().is_none(), "nothing to subscribe");
    l.invoke(2);
    let out = l.shutdown();
    assert!(out.exited_ok_before_deadline(), "{out:?}\n{}", l.log_text());
    drop(taken);
}
