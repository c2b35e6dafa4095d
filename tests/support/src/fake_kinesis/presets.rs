//! The whole-endpoint faults of the fake Kinesis, by name: what a Kinesis endpoint can do
//! to a client other than answer well. The sandbox's `--kinesis-fault` takes these names,
//! and the benchmarks' fault table runs each ([`KinesisFault::ALL`]).
//!
//! | name | what the client sees | as when |
//! |---|---|---|
//! | `hang-connect` | TCP connects never complete | a VPC function with no NAT gateway and no Kinesis endpoint |
//! | `no-answer` | connects complete, requests get no answer | a proxy or endpoint that hangs |
//! | `slow:MS` | every answer MS late | a struggling or distant endpoint |
//! | `5xx` | every request answered 500 InternalFailure | a service outage |
//! | `throttle` | every record ProvisionedThroughputExceededException | a full stream |
//! | `drop` | every connection closed without an answer | a broken network path |

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// A named fault of the whole endpoint, set with
/// [`KinesisHandle::apply`](super::KinesisHandle::apply).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KinesisFault {
    /// Connects hang: the listener stops accepting and its queue is full.
    HangConnect,
    /// Connections are accepted, requests read and never answered (until the client hangs
    /// up or the fault is healed; nothing is stored).
    NoAnswer,
    /// Every answer comes this late.
    Slow(Duration),
    /// Every request is answered 500 InternalFailure.
    Fail5xx,
    /// Every record is answered ProvisionedThroughputExceededException.
    Throttle,
    /// Every connection is closed without an answer (nothing stored).
    Drop,
}

impl KinesisFault {
    /// The names the parser takes, for usage text.
    pub const NAMES: &'static str = "hang-connect|no-answer|slow:MS|5xx|throttle|drop";

    /// Every fault, in the order the benchmarks' table shows them (the latency of the
    /// issue's measurements: 1.5 s).
    pub const ALL: [KinesisFault; 6] = [
        KinesisFault::HangConnect,
        KinesisFault::NoAnswer,
        KinesisFault::Slow(Duration::from_millis(1500)),
        KinesisFault::Fail5xx,
        KinesisFault::Throttle,
        KinesisFault::Drop,
    ];

    /// What a person reading a report should understand.
    pub fn describe(&self) -> String {
        match self {
            KinesisFault::HangConnect => "unreachable: connects hang".to_owned(),
            KinesisFault::NoAnswer => "accepting connections, never answering".to_owned(),
            KinesisFault::Slow(d) => format!("answering in {} ms", d.as_millis()),
            KinesisFault::Fail5xx => "failing every request (500)".to_owned(),
            KinesisFault::Throttle => "throttling every record".to_owned(),
            KinesisFault::Drop => "dropping every connection".to_owned(),
        }
    }
}

impl fmt::Display for KinesisFault {
    /// The name [`FromStr`] takes back.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KinesisFault::HangConnect => f.write_str("hang-connect"),
            KinesisFault::NoAnswer => f.write_str("no-answer"),
            KinesisFault::Slow(d) => write!(f, "slow:{}", d.as_millis()),
            KinesisFault::Fail5xx => f.write_str("5xx"),
            KinesisFault::Throttle => f.write_str("throttle"),
            KinesisFault::Drop => f.write_str("drop"),
        }
    }
}

impl FromStr for KinesisFault {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("a Kinesis fault is one of {}, got {s:?}", Self::NAMES);
        Ok(match s {
            "hang-connect" => KinesisFault::HangConnect,
            "no-answer" => KinesisFault::NoAnswer,
            "5xx" => KinesisFault::Fail5xx,
            "throttle" => KinesisFault::Throttle,
            "drop" => KinesisFault::Drop,
            _ => {
                let ms = s.strip_prefix("slow:").ok_or_else(bad)?;
                KinesisFault::Slow(Duration::from_millis(ms.parse().map_err(|_| bad())?))
            }
        })
    }
}

#[cfg(test)]
mod tests {
    //! Each named fault against the fake itself: what a client sees, and that healing it
    //! gives a healthy endpoint back.
    use super::*;
    use crate::fake_kinesis::{
        send_put_records, test_credentials, FakeKinesis, KinesisConfig, Outcome,
    };
    use crate::http::{self, ClientResponse};
    use crate::tcp;
    use base64::Engine as _;
    use std::io;
    use std::net::{SocketAddr, TcpStream};
    use std::thread;
    use std::time::Instant;

    const T: Duration = Duration::from_secs(10);

    fn body(records: usize) -> Vec<u8> {
        let recs: Vec<serde_json::Value> = (0..records)
            .map(|i| {
                let data = base64::engine::general_purpose::STANDARD.encode(format!("r{i}"));
                serde_json::json!({"Data": data, "PartitionKey": format!("k{i}")})
            })
            .collect();
        serde_json::json!({"StreamName": "telemetry-stream", "Records": recs})
            .to_string()
            .into_bytes()
    }

    fn put(addr: SocketAddr, records: usize) -> io::Result<ClientResponse> {
        send_put_records(
            addr,
            &test_credentials(),
            "us-east-1",
            &body(records),
            |_| {},
        )
    }

    /// A request that gives up after `timeout` (the fake's helper waits 10 s).
    fn put_within(addr: SocketAddr, timeout: Duration) -> io::Result<ClientResponse> {
        let mut headers = vec![
            ("Host".to_owned(), addr.to_string()),
            (
                "Content-Type".to_owned(),
                super::super::CONTENT_TYPE.to_owned(),
            ),
            (
                "X-Amz-Target".to_owned(),
                super::super::PUT_RECORDS_TARGET.to_owned(),
            ),
        ];
        let b = body(1);
        let parts = crate::sigv4::HttpParts {
            method: "POST",
            path: "/",
            query: "",
            headers: &headers,
            body: &b,
        };
        let added = crate::sigv4::sign(
            parts,
            &test_credentials(),
            "us-east-1",
            "kinesis",
            std::time::SystemTime::now(),
        );
        headers.extend(added);
        http::request_once(addr, "POST", "/", &headers, &b, timeout)
    }

    fn start() -> FakeKinesis {
        FakeKinesis::start(KinesisConfig::default()).unwrap()
    }

    #[test]
    fn names_round_trip_and_bad_names_say_what_is_allowed() {
        for f in KinesisFault::ALL {
            assert_eq!(f.to_string().parse::<KinesisFault>(), Ok(f));
        }
        assert_eq!(
            "slow:250".parse(),
            Ok(KinesisFault::Slow(Duration::from_millis(250)))
        );
        for bad in ["slow", "slow:x", "hang", ""] {
            let e = bad.parse::<KinesisFault>().unwrap_err();
            assert!(e.contains(KinesisFault::NAMES), "{e}");
        }
    }

    #[test]
    fn hang_connect_makes_connects_hang_and_healing_takes_them_again() {
        let k = start();
        // A keep-alive connection served before the fault (one exchange: the server write
        // its answer in one piece) is closed by it.
        let mut before = TcpStream::connect(k.addr()).unwrap();
        before.set_read_timeout(Some(T)).unwrap();
        io::Write::write_all(&mut before, b"GET / HTTP/1.1\r\nHost: k\r\n\r\n").unwrap();
        let mut buf = [0u8; 4096];
        let n = io::Read::read(&mut before, &mut buf).unwrap();
        assert!(
            buf[..n].starts_with(b"HTTP/1.1 400"),
            "{:?}",
            String::from_utf8_lossy(&buf[..n])
        );
        k.apply(KinesisFault::HangConnect).unwrap();
        assert!(tcp::connect_hangs(k.addr(), Duration::from_millis(300)));
        assert_eq!(
            io::Read::read(&mut before, &mut buf).unwrap(),
            0,
            "the idle connection was closed"
        );
        k.heal();
        let r = put(k.addr(), 2).unwrap();
        assert_eq!(r.status, 200, "{}", r.body_text());
        assert_eq!(k.stats().records_accepted, 2);
    }

    #[test]
    fn no_answer_holds_requests_until_the_client_hangs_up_and_stores_nothing() {
        let k = start();
        k.apply(KinesisFault::NoAnswer).unwrap();
        let err = put_within(k.addr(), Duration::from_millis(300)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut, "{err}");
        assert!(
            k.wait_until(T, |s, _| s.abandoned_requests == 1),
            "the fake saw the client hang up: {:?}",
            k.requests()
        );
        assert_eq!(k.requests()[0].outcome, Outcome::Abandoned);
        assert_eq!(k.stats().records_accepted, 0);

        // A request held while the fault is healed is closed unanswered; the next is served.
        let addr = k.addr();
        let held = thread::spawn(move || put(addr, 1));
        assert!(k.wait_until(T, |s, _| s.held_requests == 2));
        k.heal();
        let err = held.join().unwrap().unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof, "{err}");
        assert_eq!(put(k.addr(), 1).unwrap().status, 200);
        assert_eq!(k.stats().records_accepted, 1);
    }

    #[test]
    fn a_request_held_unanswered_is_in_flight_until_its_client_closes() {
        let k = start();
        k.apply(KinesisFault::NoAnswer).unwrap();
        assert!(!k.in_flight().unwrap().any(), "nothing sent yet");
        let addr = k.addr();
        let client = thread::spawn(move || put_within(addr, T));
        assert!(k.wait_until(T, |s, _| s.held_requests == 1));
        let f = k.in_flight().unwrap();
        assert_eq!((f.requests, f.connects), (1, 0), "{f:?}");
        k.heal();
        assert!(client.join().unwrap().is_err());
        assert!(k.wait_until(T, |s, _| s.dropped_connections + s.abandoned_requests == 1));
        assert!(!k.in_flight().unwrap().any());
    }

    #[test]
    fn slow_answers_no_sooner_than_its_latency() {
        let k = start();
        let latency = Duration::from_millis(200);
        k.apply(KinesisFault::Slow(latency)).unwrap();
        let sent = Instant::now();
        assert_eq!(put(k.addr(), 1).unwrap().status, 200);
        assert!(sent.elapsed() >= latency);
        let log = &k.requests()[0];
        assert!(log.answered_at.unwrap() - log.received_at >= latency);
    }

    #[test]
    fn fail_5xx_throttle_and_drop_hit_every_request() {
        let k = start();
        k.apply(KinesisFault::Fail5xx).unwrap();
        for _ in 0..3 {
            let r = put(k.addr(), 1).unwrap();
            assert_eq!(r.status, 500);
            assert_eq!(r.json().unwrap()["__type"], "InternalFailure");
        }
        k.heal();
        k.apply(KinesisFault::Throttle).unwrap();
        let r = put(k.addr(), 5).unwrap();
        assert_eq!(r.status, 200);
        let v = r.json().unwrap();
        assert_eq!(v["FailedRecordCount"], 5);
        assert!(v["Records"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| { e["ErrorCode"] == "ProvisionedThroughputExceededException" }));
        k.heal();
        k.apply(KinesisFault::Drop).unwrap();
        for _ in 0..3 {
            let e = put(k.addr(), 1).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof, "{e}");
        }
        k.heal();
        assert_eq!(put(k.addr(), 1).unwrap().status, 200);
        let s = k.stats();
        assert_eq!(
            (
                s.rejected,
                s.records_throttled,
                s.dropped_connections,
                s.records_accepted
            ),
            (3, 5, 3, 1)
        );
    }
}
