//! The client against throwaway local servers: plain HTTP (tiny_http) and HTTPS with a
//! CA file (rustls, certificates made by the openssl CLI).

use super::*;
use crate::kinesis::{ErrorClass, RecordOutcome};
use serde_json::Value;
use std::net::TcpListener;
use std::sync::mpsc;
use std::thread;
use std::time::Instant;

fn decode_b64(s: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .expect("standard padded base64")
}

#[test]
fn endpoint_urls_are_validated_and_normalized() {
    assert_eq!(
        request_url("https://kinesis.us-east-1.amazonaws.com").unwrap(),
        "https://kinesis.us-east-1.amazonaws.com/"
    );
    assert_eq!(
        request_url("http://127.0.0.1:4567/").unwrap(),
        "http://127.0.0.1:4567/"
    );
    assert_eq!(
        request_url("http://127.0.0.1:4567/prefix/x").unwrap(),
        "http://127.0.0.1:4567/prefix/x/"
    );
    for bad in [
        "kinesis.us-east-1.amazonaws.com",
        "ftp://h/",
        "http://",
        "http://u:p@h/",
        "http://h/?a=b",
        "",
    ] {
        assert!(request_url(bad).is_err(), "{bad}");
    }
}

fn settings(endpoint: &str) -> ClientSettings {
    ClientSettings {
        endpoint: endpoint.to_owned(),
        region: "us-east-1".into(),
        credentials: crate::kinesis::CredentialSource::Environment(crate::kinesis::Credentials {
            access_key_id: "AKIDTEST".into(),
            secret_access_key: "SECRETKEYVALUE".into(),
            session_token: Some("SESSIONTOKENVALUE".into()),
        }),
        connect_timeout: Duration::from_secs(2),
        ca_file: None,
    }
}

#[test]
fn settings_and_client_debug_hide_credentials() {
    let s = settings("http://127.0.0.1:1");
    let dbg = format!("{s:?} {:?}", KinesisClient::new(s.clone()).unwrap());
    assert!(dbg.contains("AKIDTEST"));
    assert!(
        !dbg.contains("SECRETKEYVALUE") && !dbg.contains("SESSIONTOKENVALUE"),
        "{dbg}"
    );
}

#[test]
fn setup_errors_name_the_problem() {
    let mut s = settings("http://127.0.0.1:1");
    s.region = String::new();
    assert_eq!(
        KinesisClient::new(s).unwrap_err(),
        SetupError::Missing("AWS_REGION")
    );

    let err = KinesisClient::new(settings("127.0.0.1:1")).unwrap_err();
    assert!(err.to_string().contains("http:// or https://"), "{err}");

    let mut s = settings("https://127.0.0.1:1");
    s.ca_file = Some("/nonexistent/ca.pem".into());
    assert!(matches!(
        KinesisClient::new(s).unwrap_err(),
        SetupError::CaFile { .. }
    ));

    let dir = std::env::temp_dir().join(format!("kte-ca-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let not_pem = dir.join("not.pem");
    std::fs::write(&not_pem, "hello").unwrap();
    let mut s = settings("https://127.0.0.1:1");
    s.ca_file = Some(not_pem);
    let err = KinesisClient::new(s).unwrap_err();
    assert!(err.to_string().contains("no CERTIFICATE"), "{err}");
    let _ = std::fs::remove_dir_all(dir);
}

// ---- the client against a throwaway local server ----

struct Seen {
    url: String,
    method: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    peer: std::net::SocketAddr,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Serves `answers` in order, one per request, then stops; reports what it saw.
fn serve(answers: Vec<(u16, String)>) -> (String, mpsc::Receiver<Seen>) {
    let server = tiny_http::Server::http("127.0.0.1:0").unwrap();
    let port = server.server_addr().to_ip().unwrap().port();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for (status, body) in answers {
            let Ok(mut req) = server.recv() else { return };
            let mut seen_body = Vec::new();
            req.as_reader().read_to_end(&mut seen_body).unwrap();
            let _ = tx.send(Seen {
                url: req.url().to_owned(),
                method: req.method().to_string(),
                headers: req
                    .headers()
                    .iter()
                    .map(|h| (h.field.to_string(), h.value.to_string()))
                    .collect(),
                body: seen_body,
                peer: *req.remote_addr().unwrap(),
            });
            let ct = tiny_http::Header::from_bytes("Content-Type", CONTENT_TYPE).unwrap();
            let _ = req.respond(
                tiny_http::Response::from_string(body)
                    .with_status_code(status)
                    .with_header(ct),
            );
        }
    });
    (format!("http://127.0.0.1:{port}"), rx)
}

fn ok_answer(n: usize) -> String {
    let entries: Vec<String> = (0..n)
        .map(|i| format!(r#"{{"SequenceNumber":"{i}","ShardId":"shardId-000000000000"}}"#))
        .collect();
    format!(
        r#"{{"FailedRecordCount":0,"Records":[{}]}}"#,
        entries.join(",")
    )
}

const T: Duration = Duration::from_secs(5);

#[test]
fn put_records_sends_a_signed_request_and_reuses_the_connection() {
    let (endpoint, seen) = serve(vec![(200, ok_answer(2)), (200, ok_answer(1))]);
    let client = KinesisClient::new(settings(&format!("{endpoint}/prefix"))).unwrap();
    let target = StreamTarget::Name("telemetry".into());
    let records = [
        Record::new(br#"{"type":"platform.start"}"#, "a"),
        Record::new(b"{}", "b"),
    ];

    let r = client.put_records(&target, &records, T, T).unwrap();
    assert_eq!(r.records.len(), 2);
    assert!(r.records.iter().all(|o| matches!(o, RecordOutcome::Ok)));

    let s = seen.recv().unwrap();
    assert_eq!((s.method.as_str(), s.url.as_str()), ("POST", "/prefix/"));
    assert_eq!(s.header("content-type"), Some(CONTENT_TYPE));
    assert_eq!(s.header("x-amz-target"), Some(PUT_RECORDS_TARGET));
    assert_eq!(s.header("x-amz-security-token"), Some("SESSIONTOKENVALUE"));
    assert!(s
        .header("x-amz-date")
        .is_some_and(|d| d.len() == 16 && d.ends_with('Z')));
    assert!(s
        .header("host")
        .is_some_and(|h| h.starts_with("127.0.0.1:")));
    let auth = s.header("authorization").unwrap();
    assert!(
        auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIDTEST/"),
        "{auth}"
    );
    assert!(auth.contains("/us-east-1/kinesis/aws4_request"), "{auth}");
    assert!(
        auth.contains(
            "SignedHeaders=content-type;host;x-amz-date;x-amz-security-token;x-amz-target"
        ),
        "{auth}"
    );
    assert!(!auth.contains("SECRETKEYVALUE"));
    let v: Value = serde_json::from_slice(&s.body).unwrap();
    assert_eq!(v["StreamName"], "telemetry");
    assert_eq!(
        decode_b64(v["Records"][0]["Data"].as_str().unwrap()),
        records[0].data.to_vec()
    );
    assert_eq!(v["Records"][1]["PartitionKey"], "b");

    client.put_records(&target, &records[..1], T, T).unwrap();
    let s2 = seen.recv().unwrap();
    assert_eq!(
        s.peer, s2.peer,
        "keep-alive: the second call reuses the connection"
    );
}

#[test]
fn dropping_connections_makes_the_next_call_open_a_new_one() {
    let (endpoint, seen) = serve(vec![
        (200, ok_answer(1)),
        (200, ok_answer(1)),
        (200, ok_answer(1)),
    ]);
    let client = KinesisClient::new(settings(&endpoint)).unwrap();
    let target = StreamTarget::Name("telemetry".into());
    let one = [Record::new(b"{}", "a")];
    client.put_records(&target, &one, T, T).unwrap();
    client.put_records(&target, &one, T, T).unwrap();
    client.drop_connections();
    client.put_records(&target, &one, T, T).unwrap();
    let peers: Vec<_> = (0..3).map(|_| seen.recv().unwrap().peer).collect();
    assert_eq!(peers[0], peers[1], "pooled before");
    assert_ne!(peers[1], peers[2], "a fresh connection after a restore");
}

#[test]
fn error_answers_are_classified_and_scrubbed() {
    let echo = r#"{"__type":"InvalidSignatureException","message":"The request signature we calculated does not match. SESSIONTOKENVALUE SECRETKEYVALUE"}"#;
    let (endpoint, _seen) = serve(vec![
        (400, r#"{"__type":"ResourceNotFoundException","message":"Stream telemetry under account 111122223333 not found."}"#.into()),
        (503, "<html>Service Unavailable</html>".into()),
        (200, ok_answer(3)),
        (403, echo.into()),
    ]);
    let client = KinesisClient::new(settings(&endpoint)).unwrap();
    let target = StreamTarget::Name("telemetry".into());
    let one = [Record::new(b"{}", "k")];

    let e = client.put_records(&target, &one, T, T).unwrap_err();
    assert_eq!(e.class(), ErrorClass::Fatal);
    assert_eq!(e.reason(), "ResourceNotFoundException");
    assert!(e
        .fix_hint(&target, client.region())
        .contains("stream telemetry not found in region us-east-1"));

    let e = client.put_records(&target, &one, T, T).unwrap_err();
    assert!(matches!(e, RequestError::Http { status: 503, .. }));
    assert_eq!(e.class(), ErrorClass::Retryable);

    let e = client.put_records(&target, &one, T, T).unwrap_err();
    assert!(
        matches!(e, RequestError::MalformedResponse(_)),
        "3 entries for 1 record: {e:?}"
    );

    let e = client.put_records(&target, &one, T, T).unwrap_err();
    let text = format!("{e} {e:?} {}", e.fix_hint(&target, "us-east-1"));
    assert!(
        !text.contains("SESSIONTOKENVALUE") && !text.contains("SECRETKEYVALUE"),
        "{text}"
    );
    assert_eq!(e.class(), ErrorClass::Fatal);
}

#[test]
fn a_redirect_is_reported_not_followed_and_empty_input_sends_nothing() {
    let (endpoint, seen) = serve(vec![(307, String::new())]);
    let client = KinesisClient::new(settings(&endpoint)).unwrap();
    let target = StreamTarget::Name("telemetry".into());

    let empty = client.put_records(&target, &[], T, T).unwrap();
    assert!(empty.records.is_empty());

    let e = client
        .put_records(&target, &[Record::new(b"{}", "k")], T, T)
        .unwrap_err();
    assert!(matches!(e, RequestError::Http { status: 307, .. }), "{e:?}");
    assert_eq!(e.class(), ErrorClass::Fatal);
    assert!(e.fix_hint(&target, "us-east-1").contains("endpoint"));
    assert_eq!(
        seen.try_iter().count(),
        1,
        "exactly one request reached the server"
    );
}

#[test]
fn refused_connection_is_a_connect_error() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let client = KinesisClient::new(settings(&format!("http://127.0.0.1:{port}"))).unwrap();
    let e = client
        .put_records(
            &StreamTarget::Name("s".into()),
            &[Record::new(b"{}", "k")],
            T,
            T,
        )
        .unwrap_err();
    assert!(matches!(e, RequestError::Connect(_)), "{e:?}");
    assert_eq!(e.class(), ErrorClass::Retryable);
}

#[test]
fn a_server_that_never_answers_times_out_within_the_budget() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (stop_tx, stop_rx) = mpsc::channel::<()>();
    let holder = thread::spawn(move || {
        let conn = listener.accept();
        let _ = stop_rx.recv(); // keep the socket open, silent, until the test ends
        drop(conn);
    });
    let client = KinesisClient::new(settings(&format!("http://127.0.0.1:{port}"))).unwrap();
    let start = Instant::now();
    let e = client
        .put_records(
            &StreamTarget::Name("s".into()),
            &[Record::new(b"{}", "k")],
            Duration::from_millis(300),
            T,
        )
        .unwrap_err();
    let took = start.elapsed();
    assert!(matches!(e, RequestError::Timeout(_)), "{e:?}");
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_secs(3),
        "{took:?}"
    );
    drop(stop_tx);
    holder.join().unwrap();
}

/// SYN_SENT sockets (connects under way) to `port`, from the kernel's table.
fn connects_pending_to(port: u16) -> usize {
    use kte_test_support::tcp::{sockets, TcpState};
    sockets()
        .expect("/proc/net/tcp")
        .iter()
        .filter(|s| s.state == TcpState::SYN_SENT && s.remote.port() == port)
        .count()
}

/// Fires the client's interrupt after `ms` on another thread.
fn cut_after(client: &KinesisClient, ms: u64) -> thread::JoinHandle<()> {
    let cut = client.interrupt();
    thread::spawn(move || {
        thread::sleep(Duration::from_millis(ms));
        cut.fire();
    })
}

#[test]
fn a_cut_ends_a_connect_that_hangs_and_leaves_no_connect_in_flight() {
    let hang =
        kte_test_support::tcp::HangingConnects::start().expect("a listener whose connects hang");
    let port = hang.addr().port();
    let client = KinesisClient::new(settings(&hang.endpoint())).unwrap();
    let cutter = cut_after(&client, 150);
    let start = Instant::now();
    let e = client
        .put_records(
            &StreamTarget::Name("s".into()),
            &[Record::new(b"{}", "k")],
            Duration::from_secs(10),
            Duration::from_secs(10),
        )
        .unwrap_err();
    let took = start.elapsed();
    cutter.join().unwrap();
    assert!(
        took < Duration::from_secs(3),
        "returned {took:?} after the start, not at the 10 s timeouts"
    );
    assert_eq!(
        e,
        RequestError::Timeout(TimeoutPhase::Connect),
        "nothing was sent: a connect that did not finish"
    );
    assert_eq!(
        connects_pending_to(port),
        0,
        "the kernel dropped the connect"
    );
    // The next request builds a new agent (the old one is shut down) and works again once
    // the endpoint does.
    let e2 = client
        .put_records(
            &StreamTarget::Name("s".into()),
            &[Record::new(b"{}", "k")],
            Duration::from_millis(200),
            Duration::from_millis(100),
        )
        .unwrap_err();
    assert_eq!(
        e2,
        RequestError::Timeout(TimeoutPhase::Connect),
        "bounded by its own timeout"
    );
}

#[test]
fn a_cut_ends_a_request_that_gets_no_answer_as_abandoned() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (stop_tx, stop_rx) = mpsc::channel::<()>();
    let holder = thread::spawn(move || {
        let conn = listener.accept();
        let _ = stop_rx.recv();
        drop(conn);
    });
    let client = KinesisClient::new(settings(&format!("http://127.0.0.1:{port}"))).unwrap();
    let cutter = cut_after(&client, 150);
    let start = Instant::now();
    let e = client
        .put_records(
            &StreamTarget::Name("s".into()),
            &[Record::new(b"{}", "k")],
            Duration::from_secs(10),
            T,
        )
        .unwrap_err();
    let took = start.elapsed();
    cutter.join().unwrap();
    assert!(took < Duration::from_secs(3), "{took:?}");
    assert_eq!(e, RequestError::Abandoned, "sent: it may have landed");
    drop(stop_tx);
    holder.join().unwrap();
}

// ---- HTTPS with an extra CA file (certificates made by the openssl CLI) ----

mod https {
    use super::*;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    use std::io::{BufRead, BufReader, Read, Write};
    use std::path::{Path, PathBuf};
    use std::process::Command;
    use std::sync::Arc;

    struct Pki {
        dir: PathBuf,
    }

    impl Pki {
        fn path(&self, name: &str) -> PathBuf {
            self.dir.join(name)
        }
    }

    impl Drop for Pki {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    fn openssl(dir: &Path, args: &[&str]) -> Result<(), String> {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .map_err(|e| format!("openssl CLI not runnable: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "openssl {args:?} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }

    /// A CA, a server certificate for 127.0.0.1 signed by it, and an unrelated CA.
    fn make_pki(tag: &str) -> Result<Pki, String> {
        let dir = std::env::temp_dir().join(format!("kte-tls-{}-{tag}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let pki = Pki { dir };
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ];
        for (name, cn) in [("ca", "kte test CA"), ("other", "kte unrelated CA")] {
            let (key, pem, subj) = (
                format!("{name}.key"),
                format!("{name}.pem"),
                format!("/CN={cn}"),
            );
            let mut args = vec!["req", "-x509"];
            args.extend(ec);
            args.extend(["-keyout", &key, "-out", &pem, "-subj", &subj, "-days", "2"]);
            args.extend(["-addext", "basicConstraints=critical,CA:TRUE"]);
            args.extend(["-addext", "keyUsage=critical,keyCertSign,cRLSign"]);
            openssl(&pki.dir, &args)?;
        }
        let mut args = vec!["req"];
        args.extend(ec);
        args.extend([
            "-keyout",
            "leaf.key",
            "-out",
            "leaf.csr",
            "-subj",
            "/CN=127.0.0.1",
        ]);
        openssl(&pki.dir, &args)?;
        std::fs::write(
            pki.path("leaf.ext"),
            "subjectAltName=IP:127.0.0.1\nbasicConstraints=critical,CA:FALSE\n\
             keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n",
        )
        .map_err(|e| e.to_string())?;
        openssl(
            &pki.dir,
            &[
                "x509",
                "-req",
                "-in",
                "leaf.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                "leaf.pem",
                "-days",
                "2",
                "-extfile",
                "leaf.ext",
            ],
        )?;
        Ok(pki)
    }

    /// Serves one HTTPS request with `answer`; yields the request body, or None
    /// if the handshake or the request failed.
    fn serve_tls(pki: &Pki, answer: String) -> (u16, thread::JoinHandle<Option<Vec<u8>>>) {
        let certs: Vec<CertificateDer<'static>> =
            CertificateDer::pem_file_iter(pki.path("leaf.pem"))
                .unwrap()
                .map(Result::unwrap)
                .collect();
        let key = PrivateKeyDer::from_pem_file(pki.path("leaf.key")).unwrap();
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let handle = thread::spawn(move || {
            let (tcp, _) = listener.accept().ok()?;
            tcp.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
            let conn = rustls::ServerConnection::new(Arc::new(config)).ok()?;
            let mut reader = BufReader::new(rustls::StreamOwned::new(conn, tcp));
            let mut length = 0;
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).ok()?;
                let line = line.trim_end();
                if line.is_empty() {
                    break;
                }
                if let Some((name, value)) = line.split_once(':') {
                    if name.eq_ignore_ascii_case("content-length") {
                        length = value.trim().parse().ok()?;
                    }
                }
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).ok()?;
            let stream = reader.get_mut();
            write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: {CONTENT_TYPE}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
                answer.len()
            )
            .ok()?;
            stream.flush().ok()?;
            stream.conn.send_close_notify();
            let _ = stream.flush();
            Some(body)
        });
        (port, handle)
    }

    fn client(port: u16, ca_file: Option<PathBuf>) -> KinesisClient {
        let mut s = settings(&format!("https://127.0.0.1:{port}"));
        s.ca_file = ca_file;
        KinesisClient::new(s).unwrap()
    }

    fn one() -> [Record<'static>; 1] {
        [Record::new(b"{\"type\":\"function\"}", "k")]
    }

    #[test]
    fn https_endpoint_trusted_through_the_ca_file() {
        let pki = match make_pki("ok") {
            Ok(p) => p,
            Err(why) => return eprintln!("skipping HTTPS test: {why}"),
        };
        let (port, server) = serve_tls(&pki, ok_answer(1));
        let target = StreamTarget::Name("telemetry".into());
        let r = client(port, Some(pki.path("ca.pem"))).put_records(&target, &one(), T, T);
        assert!(r.is_ok(), "{r:?}");
        let body = server.join().unwrap().expect("server got the request");
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["StreamName"], "telemetry");
    }

    #[test]
    fn https_endpoint_with_an_unknown_ca_is_a_tls_connect_error() {
        let pki = match make_pki("bad") {
            Ok(p) => p,
            Err(why) => return eprintln!("skipping HTTPS test: {why}"),
        };
        let target = StreamTarget::Name("telemetry".into());
        for ca_file in [None, Some(pki.path("other.pem"))] {
            let (port, server) = serve_tls(&pki, ok_answer(1));
            let e = client(port, ca_file.clone())
                .put_records(&target, &one(), T, T)
                .unwrap_err();
            assert!(matches!(&e, RequestError::Tls(_)), "{ca_file:?}: {e:?}");
            assert_eq!(
                (e.class(), e.reason().as_str()),
                (ErrorClass::Retryable, "Connect")
            );
            assert!(e
                .fix_hint(&target, "us-east-1")
                .contains("KINESIS_TELEMETRY_CA_FILE"));
            assert!(server.join().unwrap().is_none(), "no request got through");
        }
    }
}

// ---- credentials from the container credentials endpoint ----

fn container_answer(n: u32, expiration: &str) -> String {
    format!(
        r#"{{"AccessKeyId":"ASIAFETCHED{n}","SecretAccessKey":"fetched-secret-{n}","Token":"fetched-token-{n}","Expiration":"{expiration}"}}"#
    )
}

fn container_settings(endpoint: &str) -> ClientSettings {
    ClientSettings {
        credentials: crate::kinesis::CredentialSource::Container(
            crate::kinesis::ContainerEndpoint {
                uri: format!("{endpoint}/creds"),
                token: crate::kinesis::AuthToken::Value("the-header-token".into()),
            },
        ),
        ..settings(endpoint)
    }
}

#[test]
fn container_credentials_are_fetched_once_signed_with_and_fetched_again_after_a_restore() {
    let (endpoint, seen) = serve(vec![
        (200, container_answer(1, "2099-01-01T00:00:00Z")),
        (200, ok_answer(1)),
        (200, ok_answer(1)),
        (200, container_answer(2, "2099-01-01T00:00:00Z")),
        (200, ok_answer(1)),
    ]);
    let client = KinesisClient::new(container_settings(&endpoint)).unwrap();
    let target = StreamTarget::Name("telemetry".into());
    let one = [Record::new(b"{}", "a")];
    assert!(seen.try_recv().is_err(), "nothing fetched before a request");
    client.put_records(&target, &[], T, T).unwrap();
    client.put_records(&target, &one, T, T).unwrap();
    client.put_records(&target, &one, T, T).unwrap();
    client.drop_connections();
    client.put_records(&target, &one, T, T).unwrap();
    let s: Vec<Seen> = (0..5).map(|_| seen.recv().unwrap()).collect();
    assert_eq!((s[0].method.as_str(), s[0].url.as_str()), ("GET", "/creds"));
    assert_eq!(s[0].header("authorization"), Some("the-header-token"));
    for (i, key) in [
        (1, "ASIAFETCHED1"),
        (2, "ASIAFETCHED1"),
        (4, "ASIAFETCHED2"),
    ] {
        assert_eq!(s[i].method, "POST");
        let auth = s[i].header("authorization").unwrap();
        assert!(auth.contains(&format!("Credential={key}/")), "{i}: {auth}");
        let token = key.replace("ASIAFETCHED", "fetched-token-");
        assert_eq!(s[i].header("x-amz-security-token"), Some(token.as_str()));
    }
    assert_eq!(s[3].method, "GET", "a restore forgets what was fetched");
}

#[test]
fn credentials_due_soon_are_fetched_again_and_a_failed_fetch_names_the_host_not_the_token() {
    let soon = crate::kinesis::credentials::REFRESH_BEFORE / 2;
    let (y, mo, d, h, mi, s) = civil(SystemTime::now() + soon);
    let expiring = format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z");
    let (endpoint, seen) = serve(vec![
        (200, container_answer(1, &expiring)),
        (200, ok_answer(1)),
        (
            403,
            r#"{"code":"AccessDenied","message":"the-header-token is wrong"}"#.into(),
        ),
        (200, container_answer(2, "not a date")),
    ]);
    let client = KinesisClient::new(container_settings(&endpoint)).unwrap();
    let target = StreamTarget::Name("telemetry".into());
    let one = [Record::new(b"{}", "a")];
    client.put_records(&target, &one, T, T).unwrap();
    let host = endpoint.trim_start_matches("http://");
    for (want, err) in [
        (
            "HTTP 403",
            client.put_records(&target, &one, T, T).unwrap_err(),
        ),
        (
            "Expiration",
            client.put_records(&target, &one, T, T).unwrap_err(),
        ),
    ] {
        let text = err.to_string();
        assert!(matches!(err, RequestError::Credentials(_)), "{err:?}");
        assert_eq!(err.class(), crate::kinesis::ErrorClass::Retryable);
        assert!(
            text.contains("AWS_CONTAINER_CREDENTIALS_FULL_URI") && text.contains(host),
            "{text}"
        );
        assert!(text.contains(want), "{text}");
        assert!(
            !text.contains("the-header-token") && !text.contains("fetched-"),
            "{text}"
        );
    }
    let methods: Vec<String> = (0..4).map(|_| seen.recv().unwrap().method).collect();
    assert_eq!(
        methods,
        ["GET", "POST", "GET", "GET"],
        "due: fetched before each request"
    );
}

/// (year, month, day, hour, minute, second) of a time, in UTC.
fn civil(t: SystemTime) -> (u64, u64, u64, u64, u64, u64) {
    let secs = t.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let (mut days, rem) = (secs / 86_400, secs % 86_400);
    let mut y = 1970;
    let leap = |y: u64| y.is_multiple_of(4) && (!y.is_multiple_of(100) || y.is_multiple_of(400));
    while days >= if leap(y) { 366 } else { 365 } {
        days -= if leap(y) { 366 } else { 365 };
        y += 1;
    }
    let months = [
        31,
        if leap(y) { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    let mut m = 0;
    while days >= months[m] {
        days -= months[m];
        m += 1;
    }
    (
        y,
        m as u64 + 1,
        days + 1,
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
    )
}
