//! The listener against real sockets on 127.0.0.1, driven byte by byte with `TcpStream`
//! (and once with ureq), plus the accept loop driven with scripted errors.

use super::address::{bind_hint, pick_address};
use super::connection::MAX_HEADERS;
use super::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;

/// The longest a test waits for something that should happen at once: only a broken
/// listener reaches it, so it is generous for a loaded machine.
const WAIT: Duration = Duration::from_secs(20);
/// A request timeout no test reaches unless the listener waits where it must not.
const NEVER: Duration = Duration::from_secs(120);

/// Records every body it is handed and answers `status`.
struct Recorder {
    bodies: Mutex<Vec<Vec<u8>>>,
    status: u16,
}

impl Handler for Recorder {
    fn post(&self, body: &[u8]) -> u16 {
        self.bodies.lock().unwrap().push(body.to_vec());
        self.status
    }
}

struct Server {
    port: u16,
    stats: Arc<ListenerStats>,
    recorder: Arc<Recorder>,
}

impl Server {
    fn start(limits: ListenerLimits) -> Server {
        Server::answering(limits, 200)
    }

    fn answering(limits: ListenerLimits, status: u16) -> Server {
        Server::serving("/", limits, status)
    }

    /// A listener that serves `path` only (the others serve `/`, as the requests here say).
    fn serving(path: &str, limits: ListenerLimits, status: u16) -> Server {
        let stats = Arc::new(ListenerStats::default());
        let listener = Listener::bind(
            IpAddr::from([127, 0, 0, 1]),
            0,
            path.to_string(),
            limits,
            stats.clone(),
        )
        .expect("bind on port 0");
        let port = listener.port();
        let recorder = Arc::new(Recorder {
            bodies: Mutex::new(Vec::new()),
            status,
        });
        listener.spawn(recorder.clone()).expect("accept thread");
        Server {
            port,
            stats,
            recorder,
        }
    }

    fn connect(&self) -> Client {
        Client::connect(self.port)
    }

    fn bodies(&self) -> Vec<Vec<u8>> {
        self.recorder.bodies.lock().unwrap().clone()
    }
}

fn limits(max_body: usize, max_connections: usize, request_timeout: Duration) -> ListenerLimits {
    ListenerLimits {
        max_body,
        max_connections,
        request_timeout,
    }
}

struct Client(TcpStream);

#[derive(Debug, PartialEq)]
struct Answer {
    status: u16,
    close: bool,
}

impl Client {
    fn connect(port: u16) -> Client {
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        stream.set_read_timeout(Some(WAIT)).unwrap();
        stream.set_nodelay(true).unwrap();
        Client(stream)
    }

    fn send(&mut self, bytes: &[u8]) {
        self.0.write_all(bytes).expect("send");
    }

    /// Reads one answer (they have no body); `None` if the listener closed instead.
    fn answer(&mut self) -> Option<Answer> {
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            match self.0.read(&mut byte) {
                Ok(0) if head.is_empty() => return None,
                Ok(0) => panic!("closed mid-answer: {:?}", String::from_utf8_lossy(&head)),
                Ok(_) => head.push(byte[0]),
                Err(e) if head.is_empty() && e.kind() == io::ErrorKind::ConnectionReset => {
                    return None
                }
                Err(e) => panic!("no answer within {WAIT:?}: {e}"),
            }
        }
        let mut headers = [httparse::EMPTY_HEADER; 8];
        let mut response = httparse::Response::new(&mut headers);
        assert!(response.parse(&head).unwrap().is_complete());
        let header = |name: &str| {
            response
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case(name))
                .map(|h| h.value.to_vec())
        };
        let status = response.code.unwrap();
        if status >= 200 {
            assert_eq!(header("content-length").as_deref(), Some(&b"0"[..]));
        }
        Some(Answer {
            status,
            close: header("connection").as_deref() == Some(b"close"),
        })
    }

    fn status(&mut self) -> u16 {
        self.answer().expect("an answer, not a close").status
    }

    fn expect_closed(&mut self) {
        let mut byte = [0u8; 1];
        match self.0.read(&mut byte) {
            Ok(0) => {}
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {}
            Ok(_) => panic!("data where the connection should be closed"),
            Err(e) => panic!("connection still open after {WAIT:?}: {e}"),
        }
    }
}

fn post(body: &[u8]) -> Vec<u8> {
    let mut request = format!(
        "POST / HTTP/1.1\r\nHost: sandbox.localdomain\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body);
    request
}

fn chunked(chunks: &[&[u8]]) -> Vec<u8> {
    let mut request = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for chunk in chunks {
        request.extend_from_slice(format!("{:x};ext=1\r\n", chunk.len()).as_bytes());
        request.extend_from_slice(chunk);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\nX-Trailer: yes\r\n\r\n");
    request
}

fn wait_until(what: &str, done: impl Fn() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < WAIT, "still not {what} after {WAIT:?}");
        thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn keep_alive_connection_carries_several_posts_byte_for_byte() {
    let server = Server::start(limits(1 << 20, 4, NEVER));
    let bodies: [&[u8]; 4] = [
        br#"[{"time":"2024-01-01T00:00:00Z","type":"function","record":"a\r\n\r\nb"}]"#,
        b"\x00\xff not UTF-8 \r\n",
        b"",
        &[b'x'; 200_000],
    ];
    let mut client = server.connect();
    for body in &bodies[..2] {
        client.send(&post(body));
        let expected = Answer {
            status: 200,
            close: false,
        };
        assert_eq!(client.answer(), Some(expected));
    }
    // Pipelined: both requests in one write.
    client.send(&[post(bodies[2]), post(bodies[3])].concat());
    assert_eq!((client.status(), client.status()), (200, 200));

    assert_eq!(server.bodies(), bodies.map(<[u8]>::to_vec));
    assert_eq!(server.stats.connections.load(Relaxed), 1);
    assert_eq!(server.stats.requests.load(Relaxed), 4);
}

#[test]
fn a_real_client_reuses_its_connection() {
    let server = Server::start(ListenerLimits::default());
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(WAIT))
        .build()
        .into();
    let url = format!("http://127.0.0.1:{}", server.port);
    for body in ["[1]", "[2]"] {
        let response = agent.post(&url).send(body).expect("POST");
        assert_eq!(response.status().as_u16(), 200);
    }
    assert_eq!(server.bodies(), [b"[1]".to_vec(), b"[2]".to_vec()]);
    assert_eq!(server.stats.connections.load(Relaxed), 1);
}

#[test]
fn chunked_and_expect_continue_bodies_arrive_whole() {
    let body = b"[{\"type\":\"platform.start\"}]\r\n0\r\n";
    let (first, rest) = body.split_at(10);
    let cases: [(&str, Vec<u8>); 4] = [
        ("chunked", chunked(&[first, rest])),
        ("chunked, one byte per write", chunked(&[first, rest])),
        ("expect, content-length", post(body)),
        ("expect, chunked", chunked(&[first, &rest[..3], &rest[3..]])),
    ];
    for (name, request) in cases {
        let server = Server::start(limits(1 << 20, 4, NEVER));
        let mut client = server.connect();
        if name.starts_with("expect") {
            let split = request.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
            let (head, payload) = request.split_at(split);
            client.send(&[head, b"\r\nExpect: 100-continue\r\n\r\n"].concat());
            // The body is sent only once the listener has asked for it.
            assert_eq!(client.status(), 100, "{name}");
            client.send(payload.strip_prefix(b"\r\n\r\n").unwrap());
        } else if name.contains("one byte") {
            request.chunks(1).for_each(|b| client.send(b));
        } else {
            client.send(&request);
        }
        assert_eq!(client.status(), 200, "{name}");
        assert_eq!(server.bodies(), [body.to_vec()], "{name}");
    }
}

#[test]
fn refused_requests_are_answered_counted_and_closed() {
    type Counter = fn(&ListenerStats) -> &AtomicU64;
    let too_large: Counter = |s| &s.too_large;
    let bad: Counter = |s| &s.bad_requests;
    let method: Counter = |s| &s.method_not_allowed;
    let many_headers = format!(
        "POST / HTTP/1.1\r\n{}Content-Length: 0\r\n\r\n",
        "X-A: b\r\n".repeat(MAX_HEADERS)
    );
    let huge_head = format!(
        "POST / HTTP/1.1\r\nX-A: {}\r\n\r\n",
        "a".repeat(MAX_HEAD_BYTES)
    );
    // The request timeout is NEVER: a listener that waited for a body it refuses would
    // leave the client without an answer.
    let cases: [(&str, Vec<u8>, u16, Counter); 14] = [
        (
            "length over max_body, body not sent",
            b"POST / HTTP/1.1\r\nContent-Length: 1001\r\n\r\n".to_vec(),
            413,
            too_large,
        ),
        (
            "length over max_body, expecting 100",
            b"POST / HTTP/1.1\r\nContent-Length: 99999999999\r\nExpect: 100-continue\r\n\r\n"
                .to_vec(),
            413,
            too_large,
        ),
        (
            "chunks over max_body",
            chunked(&[&[b'a'; 600], &[b'b'; 600]]),
            413,
            too_large,
        ),
        (
            "GET",
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
            405,
            method,
        ),
        (
            "PUT with a body",
            [&b"PUT"[..], &post(b"[]")[4..]].concat(),
            405,
            method,
        ),
        ("garbage", b"\x00\x01\x02 hello\r\n\r\n".to_vec(), 400, bad),
        ("no version", b"POST /\r\n\r\n".to_vec(), 400, bad),
        (
            "signed length",
            b"POST / HTTP/1.1\r\nContent-Length: +5\r\n\r\nhello".to_vec(),
            400,
            bad,
        ),
        (
            "two lengths",
            b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab".to_vec(),
            400,
            bad,
        ),
        (
            "length and chunked",
            b"POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
                .to_vec(),
            400,
            bad,
        ),
        (
            "bad chunk size",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n".to_vec(),
            400,
            bad,
        ),
        (
            "unknown coding",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n".to_vec(),
            501,
            bad,
        ),
        (
            "unknown expectation",
            b"POST / HTTP/1.1\r\nExpect: 200-ok\r\nContent-Length: 0\r\n\r\n".to_vec(),
            417,
            bad,
        ),
        ("too many headers", many_headers.into_bytes(), 431, bad),
    ];
    let huge = [("head over 64 KiB", huge_head.into_bytes(), 431, bad)];
    for (name, request, status, counter) in cases.into_iter().chain(huge) {
        let server = Server::start(limits(1000, 4, NEVER));
        let mut client = server.connect();
        client.send(&request);
        let answer = client.answer();
        assert_eq!(
            answer,
            Some(Answer {
                status,
                close: true
            }),
            "{name}"
        );
        client.expect_closed();
        assert_eq!(counter(&server.stats).load(Relaxed), 1, "{name}");
        assert!(server.bodies().is_empty(), "{name}");
    }
}

#[test]
fn stalled_connection_does_not_hold_up_others() {
    let server = Server::start(limits(1000, 4, NEVER));
    let body = [b'a'; 100];
    let request = post(&body);
    let mut stalled = server.connect();
    stalled.send(&request[..request.len() - 90]);

    let mut other = server.connect();
    other.send(&post(b"[2]"));
    assert_eq!(other.status(), 200);
    assert_eq!(server.bodies(), [b"[2]".to_vec()]);

    // The stalled client was only slow: its request completes.
    stalled.send(&request[request.len() - 90..]);
    assert_eq!(stalled.status(), 200);
    assert_eq!(server.bodies()[1], body);
}

#[test]
fn stalled_requests_are_closed_after_the_request_timeout() {
    let timeout = Duration::from_millis(200);
    let body_head = post(&[b'a'; 100]);
    let cases: [(&str, &[u8]); 4] = [
        ("mid-head", b"POST / HTTP/1.1\r\nContent-"),
        ("mid-body", &body_head[..body_head.len() - 50]),
        (
            "mid-chunk",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n10\r\nabc",
        ),
        ("dripping a byte at a time", b"P"),
    ];
    for (name, sent) in cases {
        let server = Server::start(limits(1000, 4, timeout));
        let mut client = server.connect();
        let start = Instant::now();
        client.send(sent);
        if name.starts_with("dripping") {
            // Never idle for the whole timeout, yet never done: the budget is per request.
            let mut drip = client.0.try_clone().unwrap();
            thread::spawn(move || {
                let deadline = Instant::now() + WAIT;
                while Instant::now() < deadline && drip.write_all(b"O").is_ok() {
                    thread::sleep(Duration::from_millis(20));
                }
            });
        }
        client.expect_closed();
        assert!(
            start.elapsed() >= timeout,
            "{name}: closed before the timeout"
        );
        wait_until("counted", || server.stats.stalled.load(Relaxed) == 1);
        assert!(server.bodies().is_empty(), "{name}");
    }
}

#[test]
fn idle_keep_alive_connection_outlives_the_request_timeout() {
    let timeout = Duration::from_millis(100);
    let server = Server::start(limits(1000, 4, timeout));
    let mut client = server.connect();
    for body in [&b"[1]"[..], b"[2]"] {
        // Idle on purpose: time must pass, there is nothing to wait for.
        thread::sleep(timeout * 5);
        client.send(&post(body));
        assert_eq!(client.status(), 200);
    }
    assert_eq!(server.stats.stalled.load(Relaxed), 0);
    assert_eq!(server.stats.connections.load(Relaxed), 1);
}

#[test]
fn connection_close_and_http_1_0_end_the_connection_after_the_answer() {
    let cases: [(&str, &[u8]); 3] = [
        (
            "close",
            b"POST / HTTP/1.1\r\nConnection: close\r\nContent-Length: 2\r\n\r\n[]",
        ),
        (
            "close among tokens",
            b"POST / HTTP/1.1\r\nConnection: TE, Close\r\nContent-Length: 2\r\n\r\n[]",
        ),
        (
            "HTTP/1.0",
            b"POST / HTTP/1.0\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\n[]",
        ),
    ];
    for (name, request) in cases {
        let server = Server::start(limits(1000, 4, NEVER));
        let mut client = server.connect();
        client.send(request);
        let expected = Answer {
            status: 200,
            close: true,
        };
        assert_eq!(client.answer(), Some(expected), "{name}");
        client.expect_closed();
        assert_eq!(server.bodies(), [b"[]".to_vec()], "{name}");
    }
}

#[test]
fn the_handlers_status_is_answered_as_returned() {
    for (returned, answered) in [(200, 200), (202, 202), (500, 500), (299, 299), (7, 500)] {
        let server = Server::answering(limits(1000, 4, NEVER), returned);
        let mut client = server.connect();
        for _ in 0..2 {
            client.send(&post(b"[]"));
            let expected = Answer {
                status: answered,
                close: false,
            };
            assert_eq!(
                client.answer(),
                Some(expected),
                "handler returned {returned}"
            );
        }
    }
}

#[test]
fn a_newcomer_takes_the_slot_of_the_connection_idle_longest() {
    let server = Server::start(limits(1000, 2, NEVER));
    let mut a = server.connect();
    // `a` is admitted (and idle) before `b` connects: which thread registers first is up to
    // the scheduler otherwise.
    wait_until("a admitted", || {
        server.stats.open_connections.load(Relaxed) == 1
    });
    std::thread::sleep(std::time::Duration::from_millis(5));
    let mut b = server.connect();
    wait_until("both admitted", || {
        server.stats.open_connections.load(Relaxed) == 2
    });
    // Neither has sent a byte; `a` has been idle longest.
    let mut c = server.connect();
    c.send(&post(b"[c]"));
    assert_eq!(c.status(), 200);
    a.expect_closed();
    b.send(&post(b"[b]"));
    assert_eq!(b.status(), 200);
    assert_eq!(server.bodies(), [b"[c]".to_vec(), b"[b]".to_vec()]);
    assert_eq!(server.stats.evicted.load(Relaxed), 1);
    assert_eq!(server.stats.refused_connections.load(Relaxed), 0);
}

#[test]
fn connections_mid_request_are_never_evicted_the_newcomer_is_refused() {
    let server = Server::start(limits(1000, 2, NEVER));
    let head = b"POST / HTTP/1.1\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n";
    let mut busy: Vec<Client> = (0..2).map(|_| server.connect()).collect();
    for client in &mut busy {
        client.send(head);
        // The listener asked for the body: it is reading this request.
        assert_eq!(client.status(), 100);
    }
    let mut over = server.connect();
    over.expect_closed();
    assert_eq!(server.stats.refused_connections.load(Relaxed), 1);
    assert_eq!(server.stats.evicted.load(Relaxed), 0);
    for (client, body) in busy.iter_mut().zip([b"[1]", b"[2]"]) {
        client.send(body);
        assert_eq!(client.status(), 200);
    }
    assert_eq!(server.bodies(), [b"[1]".to_vec(), b"[2]".to_vec()]);

    // Once idle again, they give way.
    let mut c = server.connect();
    c.send(&post(b"[c]"));
    assert_eq!(c.status(), 200);
    assert_eq!(server.stats.evicted.load(Relaxed), 1);
}

#[test]
fn the_platforms_keep_alive_connection_outlasts_silent_newcomers() {
    let server = Server::start(limits(1000, 2, NEVER));
    let mut platform = server.connect();
    platform.send(&post(b"[1]"));
    assert_eq!(platform.status(), 200);
    // More silent connections than there are slots: each takes the slot of the previous
    // one, not the platform's, which has carried a request to the subscribed path.
    let silent: Vec<Client> = (0..5).map(|_| server.connect()).collect();
    wait_until("each silent one evicted by the next", || {
        server.stats.evicted.load(Relaxed) == 4
    });
    platform.send(&post(b"[2]"));
    assert_eq!(platform.status(), 200);
    assert_eq!(server.bodies(), [b"[1]".to_vec(), b"[2]".to_vec()]);
    drop(silent);
}

#[test]
fn requests_to_another_path_are_answered_404_and_never_handed_on() {
    let path = "/0123456789abcdef0123456789abcdef";
    let server = Server::serving(path, limits(1000, 4, NEVER), 200);
    let wrong = [
        "/",
        "/0123456789abcdef0123456789abcdeF",
        "/0123456789abcdef0123456789abcdef/",
        "/0123456789abcdef0123456789abcde",
        "/0123456789abcdef0123456789abcdef?x=1",
        "http://sandbox.localdomain/0123456789abcdef0123456789abcdef",
        "*",
    ];
    for (i, target) in wrong.iter().enumerate() {
        for method in ["POST", "GET"] {
            let mut client = server.connect();
            client.send(
                format!("{method} {target} HTTP/1.1\r\nContent-Length: 2\r\n\r\n[]").as_bytes(),
            );
            let expected = Answer {
                status: 404,
                close: true,
            };
            assert_eq!(client.answer(), Some(expected), "{method} {target}");
            client.expect_closed();
        }
        assert_eq!(server.stats.not_found.load(Relaxed), 2 * (i as u64 + 1));
    }
    assert!(server.bodies().is_empty());
    let mut client = server.connect();
    client.send(format!("POST {path} HTTP/1.1\r\nContent-Length: 2\r\n\r\n[]").as_bytes());
    assert_eq!(client.status(), 200);
    assert_eq!(server.bodies(), [b"[]".to_vec()]);
}

#[test]
fn the_secret_path_is_32_hex_digits_of_its_bytes() {
    let mut secret = [0u8; PATH_SECRET_BYTES];
    secret[0] = 0xab;
    secret[15] = 0x01;
    assert_eq!(secret_path(&secret), "/ab000000000000000000000000000001");
}

#[test]
fn the_bind_address_is_the_first_ipv4_one() {
    let v4 = IpAddr::from([169, 254, 100, 1]);
    let v6: IpAddr = "fe80::1".parse().unwrap();
    assert_eq!(pick_address([]), None);
    assert_eq!(pick_address([v6]), Some(v6));
    assert_eq!(pick_address([v6, v4]), Some(v4));
    assert_eq!(pick_address([v4, IpAddr::from([127, 0, 0, 1])]), Some(v4));
}

#[test]
fn a_port_clash_names_the_setting_to_change() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let stats = Arc::new(ListenerStats::default());
    let err = Listener::bind(
        IpAddr::from([127, 0, 0, 1]),
        port,
        "/".into(),
        ListenerLimits::default(),
        stats,
    )
    .err()
    .expect("the port is taken");
    let text = err.to_string();
    assert!(text.contains(&format!("127.0.0.1:{port}")), "{text}");
    assert!(
        text.contains("set KINESIS_TELEMETRY_PORT to a free port"),
        "{text}"
    );
    let other = bind_hint(io::ErrorKind::AddrNotAvailable, 4243).unwrap();
    assert!(other.contains("KINESIS_TELEMETRY_BIND_ADDRESS"), "{other}");
    assert_eq!(bind_hint(io::ErrorKind::Other, 4243), None);
}

#[test]
fn counters_saturate_instead_of_wrapping() {
    let c = AtomicU64::new(u64::MAX - 1);
    assert_eq!(bump(&c), u64::MAX);
    assert_eq!(bump(&c), u64::MAX);
    assert_eq!(c.load(Relaxed), u64::MAX);
}

#[test]
fn accept_loop_keeps_going_through_errors_and_backs_off() {
    let os = io::Error::from_raw_os_error;
    let mut script: Vec<io::Result<u32>> = vec![
        Err(os(libc::EMFILE)),
        Err(os(libc::EMFILE)),
        Err(os(libc::EMFILE)),
        Err(os(libc::ECONNABORTED)),
        Ok(1),
        Err(os(libc::EPROTO)),
        Err(os(libc::ENFILE)),
        Ok(2),
    ];
    script.extend((0..8).map(|_| Err(os(libc::ENOBUFS))));
    script.push(Ok(3));
    let stats = ListenerStats::default();
    let mut pauses = Vec::new();
    let mut served = Vec::new();
    accept_loop(script, &stats, |d| pauses.push(d), |c| served.push(c));

    assert_eq!(served, [1, 2, 3]);
    assert_eq!(stats.accept_errors.load(Relaxed), 3 + 1 + 2 + 8);
    let ms: Vec<u64> = pauses.iter().map(|d| d.as_millis() as u64).collect();
    // Per-connection errors do not pause; the pause doubles to 200 ms and starts over
    // after a success.
    assert_eq!(ms, [5, 10, 20, 5, 5, 10, 20, 40, 80, 160, 200, 200]);
}

#[test]
fn accept_errors_are_classified() {
    let transient = [
        libc::ECONNABORTED,
        libc::ECONNRESET,
        libc::EINTR,
        libc::EPROTO,
        libc::ENONET,
        libc::ENOPROTOOPT,
        libc::EOPNOTSUPP,
        libc::EHOSTDOWN,
        libc::EHOSTUNREACH,
        libc::ENETDOWN,
        libc::ENETUNREACH,
    ];
    let backoff = [
        libc::EMFILE,
        libc::ENFILE,
        libc::ENOBUFS,
        libc::ENOMEM,
        libc::EINVAL,
        libc::EBADF,
        libc::EAGAIN,
    ];
    for errno in transient {
        assert!(
            is_transient(&io::Error::from_raw_os_error(errno)),
            "{errno}"
        );
    }
    for errno in backoff {
        assert!(
            !is_transient(&io::Error::from_raw_os_error(errno)),
            "{errno}"
        );
    }
}

#[test]
fn deep_json_fits_the_connection_stack() {
    let stats = Arc::new(ListenerStats::default());
    let listener = Listener::bind(
        IpAddr::from([127, 0, 0, 1]),
        0,
        "/".into(),
        ListenerLimits::default(),
        stats,
    )
    .expect("bind");
    let port = listener.port();
    let parse = |body: &[u8]| match crate::event::parse_batch(body) {
        Ok(_) => 200,
        Err(_) => 299,
    };
    listener.spawn(Arc::new(parse)).expect("accept thread");
    let depth = 200_000;
    let batch = format!(
        r#"[{{"type":"function","record":{}1{}}},{{"type":"x","deep":{}1{}}}]"#,
        "[".repeat(depth),
        "]".repeat(depth),
        "{\"a\":".repeat(depth),
        "}".repeat(depth)
    );
    let mut client = Client::connect(port);
    client.send(&post(batch.as_bytes()));
    // A stack overflow would abort the whole test binary instead.
    assert_eq!(client.status(), 200, "the batch parses");
}
