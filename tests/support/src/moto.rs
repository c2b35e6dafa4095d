//! A real third-party Kinesis for black-box tests: moto's server (PyPI `moto[server]`,
//! installed into `<repo>/.venv` by `.ci/python-tools.sh`) on 127.0.0.1, with its
//! IAM-like access control switched on, so SigV4 is checked by code that is neither
//! the extension's nor the fakes'.
//!
//! Life of a [`Moto`]:
//! 1. find the venv's Python ([`python`]), start `python -m moto.server -H 127.0.0.1
//!    -p 0` and read the port it bound from its ` * Running on http://...` line (the
//!    socket listens before that line is printed, so no polling and no port race);
//! 2. with auth still off, create an IAM user, an access key, an inline policy
//!    allowing `kinesis:*`, and the stream (`moto_admin.py setup`, through boto3);
//! 3. `POST /moto-api/reset-auth` with body `0`: from then on every AWS request must
//!    be SigV4-signed with a known key, and policies are enforced. A wrong secret gets
//!    HTTP 403 with an XML `<Code>SignatureDoesNotMatch</Code>` body (moto's shape; real
//!    Kinesis answers 400 JSON `InvalidSignatureException`);
//! 4. dropping the [`Moto`] kills the server.
//!
//! Reads ([`Moto::read_records`]) and oracle writes ([`Moto::put_with_boto3`]) go through
//! boto3/botocore in `moto_admin.py`: an independent signer, so a signing bug in
//! the extension cannot hide by being mirrored in the reader.
//!
//! moto keeps one backend per account and region, chosen by the region in the
//! request's credential scope: clients must sign for [`Moto::region`] (default
//! [`DEFAULT_REGION`]) or get `ResourceNotFoundException`. The account is moto's
//! default, 123456789012. The server is Werkzeug's threaded dev server and answers
//! every request with `Connection: close`.
//!
//! No skipping: without a venv ([`python`]) or with one that cannot run moto, the test
//! fails and says how to fix it (`bash .ci/python-tools.sh`, which `./build.sh test`
//! runs first).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::pipes;

/// Region moto's stream is created in, and the one clients must sign for.
pub const DEFAULT_REGION: &str = "us-east-1";
/// Env var naming the Python interpreter of a venv with `moto[server]` installed.
pub const PYTHON_ENV: &str = "MOTO_PYTHON";
/// Bound on moto's start (normally about 0.6 s) and on each admin command.
pub const START_TIMEOUT: Duration = Duration::from_secs(20);

/// The admin/oracle script run with the venv's Python.
const ADMIN_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/moto_admin.py");
/// Any key pair works while auth is off; these only get the setup calls signed.
const SETUP_KEY: (&str, &str) = ("testing", "testing");

/// The venv Python to run moto with: `$MOTO_PYTHON`, else `<repo>/.venv/bin/python`.
///
/// Panics, saying how to create it, when there is none: a moto test that cannot run
/// fails rather than passing without having run. `./build.sh test` creates the venv
/// first; `$MOTO_PYTHON` naming nothing runnable is a configuration error.
pub fn python() -> PathBuf {
    if let Some(p) = std::env::var_os(PYTHON_ENV) {
        let p = PathBuf::from(p);
        assert!(
            p.is_file(),
            "{PYTHON_ENV}={} is not a file: point it at the python of a venv with moto[server]",
            p.display()
        );
        return p;
    }
    let venv_python = crate::repo_root().join(".venv/bin/python");
    assert!(
        venv_python.is_file(),
        "no Python venv at {} (and {PYTHON_ENV} unset), so the moto tests cannot run: create it \
         with `bash .ci/python-tools.sh` (`./build.sh test` runs it first), or set {PYTHON_ENV}",
        venv_python.display()
    );
    venv_python
}

/// What to create in moto before auth is switched on.
#[derive(Clone, Debug)]
pub struct MotoOptions {
    pub region: String,
    pub stream: String,
    pub shards: u32,
    pub user: String,
}

impl Default for MotoOptions {
    fn default() -> Self {
        MotoOptions {
            region: DEFAULT_REGION.to_owned(),
            stream: "telemetry-stream".to_owned(),
            shards: 2,
            user: "telemetry-extension".to_owned(),
        }
    }
}

/// The IAM user's access key, allowed `kinesis:*` on every resource.
#[derive(Clone, Debug)]
pub struct IamKey {
    pub access_key_id: String,
    pub secret_access_key: String,
}

/// One record read back with GetRecords.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamRecord {
    pub shard_id: String,
    pub sequence_number: String,
    pub partition_key: String,
    /// The record's data, base64-decoded: exactly the bytes the producer sent.
    pub data: Vec<u8>,
}

/// Status and body of a raw HTTP answer.
#[derive(Clone, Debug)]
pub struct RawResponse {
    pub status: u16,
    pub body: String,
}

/// A running moto server holding one stream, with auth on.
pub struct Moto {
    python: PathBuf,
    child: Child,
    port: u16,
    log: Arc<Mutex<Vec<String>>>,
    pub region: String,
    pub stream: String,
    pub stream_arn: String,
    pub key: IamKey,
}

impl Moto {
    /// Starts moto with the venv's Python ([`python`]); panics when there is none, or
    /// with moto's output when it fails to start.
    pub fn start(opts: MotoOptions) -> Moto {
        Moto::start_with(python(), opts)
    }

    /// Starts moto with `python`, sets up user, key, policy and stream, switches auth
    /// on. Panics with moto's output on any failure.
    pub fn start_with(python: PathBuf, opts: MotoOptions) -> Moto {
        let mut child = Command::new(&python)
            .args(["-m", "moto.server", "-H", "127.0.0.1", "-p", "0"])
            .env_clear()
            .envs(python_env(&opts.region, SETUP_KEY))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", python.display()));

        // Both pipes are drained for the server's whole life: Werkzeug logs every
        // request, and a full pipe would block the server.
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, lines) = crossbeam_channel::unbounded::<String>();
        let captured = log.clone();
        // `lines` disconnects once both pipes have closed (their threads drop their `tx`).
        pipes::drain_lines(&mut child, move |line| {
            let line = strip_ansi(&line);
            captured
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(line.clone());
            let _ = tx.send(line);
        });

        let deadline = Instant::now() + START_TIMEOUT;
        let port = loop {
            match lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) => {
                    if let Some(port) = parse_running_port(&line) {
                        break port;
                    }
                }
                Err(e) => {
                    // Disconnected: moto exited (its pipes closed); Timeout: it hangs.
                    if e.is_timeout() {
                        let _ = child.kill();
                    }
                    let status = child.wait();
                    panic!(
                        "moto did not start within {START_TIMEOUT:?} ({status:?}) with {}:\n{}",
                        python.display(),
                        log_text(&log)
                    );
                }
            }
        };

        let mut moto = Moto {
            python,
            child,
            port,
            log,
            region: opts.region.clone(),
            stream: opts.stream.clone(),
            stream_arn: String::new(),
            key: IamKey {
                access_key_id: String::new(),
                secret_access_key: String::new(),
            },
        };
        let setup = moto.admin(
            SETUP_KEY,
            &["setup", &opts.stream, &opts.shards.to_string(), &opts.user],
        );
        let field = |name: &str| setup[name].as_str().unwrap_or_default().to_owned();
        moto.key = IamKey {
            access_key_id: field("AccessKeyId"),
            secret_access_key: field("SecretAccessKey"),
        };
        moto.stream_arn = field("StreamARN");
        assert!(
            !moto.key.secret_access_key.is_empty() && !moto.stream_arn.is_empty(),
            "moto setup answered {setup}"
        );
        moto.enable_auth();
        moto
    }

    /// `http://127.0.0.1:<port>`, the value for `KINESIS_TELEMETRY_ENDPOINT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Every line moto printed so far (startup banner and one line per request).
    pub fn log(&self) -> Vec<String> {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn log_text(&self) -> String {
        log_text(&self.log)
    }

    /// How many `POST /` (every AWS JSON API call) moto answered with `status`, from
    /// its request log.
    pub fn requests_answered(&self, status: u16) -> usize {
        let needle = format!("\"POST / HTTP/1.1\" {status} ");
        self.log().iter().filter(|l| l.contains(&needle)).count()
    }

    /// `INITIAL_NO_AUTH_ACTION_COUNT = 0`: auth is enforced from the next request on.
    fn enable_auth(&self) {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(START_TIMEOUT))
            .build()
            .into();
        let url = format!("{}/moto-api/reset-auth", self.endpoint());
        let mut resp = agent
            .post(&url)
            .header("Content-Type", "text/plain")
            .send("0")
            .unwrap_or_else(|e| panic!("POST {url}: {e}\n{}", self.log_text()));
        let status = resp.status().as_u16();
        let body = resp.body_mut().read_to_string().unwrap_or_default();
        assert!(
            status == 200 && body.contains("\"ok\""),
            "POST {url} answered {status} {body}\n{}",
            self.log_text()
        );
    }

    /// Every record of every shard, read from TRIM_HORIZON with GetRecords, signed
    /// (by botocore) with the IAM key. In shard order, then sequence order.
    pub fn read_records(&self) -> Vec<StreamRecord> {
        let key = (
            self.key.access_key_id.as_str(),
            self.key.secret_access_key.as_str(),
        );
        let out = self.admin(key, &["read", &self.stream]);
        out["Records"]
            .as_array()
            .unwrap_or_else(|| panic!("moto read answered {out}"))
            .iter()
            .map(|r| {
                let s = |k: &str| r[k].as_str().unwrap_or_default().to_owned();
                StreamRecord {
                    shard_id: s("ShardId"),
                    sequence_number: s("SequenceNumber"),
                    partition_key: s("PartitionKey"),
                    data: hex::decode(s("DataHex")).expect("moto_admin.py prints hex"),
                }
            })
            .collect()
    }

    /// The data of every record in the stream.
    pub fn read_data(&self) -> Vec<Vec<u8>> {
        self.read_records().into_iter().map(|r| r.data).collect()
    }

    /// One PutRecords of `data`, signed by botocore with the given key pair and sent
    /// raw: the exact status and body moto answers.
    pub fn put_with_boto3(
        &self,
        access_key_id: &str,
        secret_access_key: &str,
        partition_key: &str,
        data: &[u8],
    ) -> RawResponse {
        let out = self.admin(
            (access_key_id, secret_access_key),
            &["put", &self.stream, partition_key, &hex::encode(data)],
        );
        RawResponse {
            status: out["Status"].as_u64().unwrap_or_default() as u16,
            body: out["Body"].as_str().unwrap_or_default().to_owned(),
        }
    }

    /// Runs `moto_admin.py <args>` against this server and parses its JSON answer.
    fn admin(&self, key: (&str, &str), args: &[&str]) -> Value {
        let mut cmd = Command::new(&self.python);
        cmd.arg(ADMIN_SCRIPT)
            .arg(args[0])
            .arg(self.endpoint())
            .args(&args[1..])
            .env_clear()
            .envs(python_env(&self.region, key))
            .stdin(Stdio::null());
        let done = pipes::run_to_end(cmd, None, START_TIMEOUT)
            .unwrap_or_else(|e| panic!("cannot run moto_admin.py {}: {e}", args[0]));
        let stdout = String::from_utf8_lossy(&done.stdout);
        let killed = match done.in_time {
            true => String::new(),
            false => format!("\n(killed after {START_TIMEOUT:?})"),
        };
        assert!(
            done.ok(),
            "moto_admin.py {} failed:\n{}\n{}{killed}\n--- moto ---\n{}",
            args[0],
            stdout,
            String::from_utf8_lossy(&done.stderr),
            self.log_text()
        );
        serde_json::from_str(stdout.trim())
            .unwrap_or_else(|e| panic!("moto_admin.py {}: {e}: {stdout}", args[0]))
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The port of Werkzeug's ` * Running on http://127.0.0.1:PORT` line.
fn parse_running_port(line: &str) -> Option<u16> {
    let rest = line.split("Running on http://").nth(1)?;
    let digits: String = rest
        .rsplit(':')
        .next()?
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// Werkzeug colours its banner and its 4xx/5xx request lines; the log keeps plain text.
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC '[' parameters, ending with a letter.
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// A clean environment for moto and boto3: nothing from the test's own AWS settings
/// or config files leaks in.
fn python_env(region: &str, key: (&str, &str)) -> Vec<(&'static str, String)> {
    vec![
        ("PATH", std::env::var("PATH").unwrap_or_default()),
        ("PYTHONUNBUFFERED", "1".to_owned()),
        ("PYTHONUTF8", "1".to_owned()),
        ("PYTHONDONTWRITEBYTECODE", "1".to_owned()),
        ("AWS_CONFIG_FILE", "/dev/null".to_owned()),
        ("AWS_SHARED_CREDENTIALS_FILE", "/dev/null".to_owned()),
        ("AWS_DEFAULT_REGION", region.to_owned()),
        ("AWS_ACCESS_KEY_ID", key.0.to_owned()),
        ("AWS_SECRET_ACCESS_KEY", key.1.to_owned()),
    ]
}

fn log_text(log: &Mutex<Vec<String>>) -> String {
    log.lock().unwrap_or_else(|e| e.into_inner()).join("\n")
}
