//! `sandbox`: runs the real extension binary in a simulated Lambda execution environment
//! against mocked endpoints and reports what happened (`./build.sh local`), or measures it
//! (`--bench`). See `--help`; the simulation itself is [`kte_sandbox`].

mod bench;
mod throughput;

use kte_sandbox as sandbox;
use kte_test_support as support;

use std::process::ExitCode;
use std::time::Duration;

use sandbox::{Echo, LogFormat, Outage, Pace, SandboxConfig};

const HELP: &str = "\
sandbox: run the kinesis-telemetry-extension binary inside a simulated Lambda execution
environment (Extensions API, Telemetry API, freeze/thaw, SHUTDOWN deadline) against a mock
Kinesis, check every event off in the stream, and report what was emitted, delivered, lost,
how fast, in which order, at what cost, and how long each phase took.

USAGE: sandbox [OPTIONS]            (./build.sh local [OPTIONS])

Workload:
  --invocations N        invocations to run                              [200]
  --gap-ms MS            pause between invocations (frozen meanwhile)    [20]
  --rate PER_S           start invocations at this rate instead of --gap-ms
  --runtime-ms MS        each invocation's duration (the handler)        [5]
  --init-ms MS           the runtime's init duration                     [30]
  --lines K              function log records per invocation             [5]
  --log-format text|json Lambda log format of function records           [text]
  --line-bytes B         size of each function event (JSON text)         [200]
                         (heavy: --lines 600 --line-bytes 10000)
  --burst N              function records emitted right before SHUTDOWN  [0]
  --idle-ms MS           no telemetry for this long before SHUTDOWN (its CPU is reported) [0]
  --no-freeze            do not SIGSTOP the extension between invocations
  --function-timeout-ms MS   INVOKE deadlineMs = delivery + MS; a handler this long times out [3000]
  --shutdown-ms MS       the SHUTDOWN phase                              [2000]
  --runtime-share-ms MS  the runtime's share of it (deadlineMs = phase - share) [300]
  --platform-queue N     the platform drops events beyond N waiting for the extension
                         and says so (platform.logsDropped)              [unbounded]
Lambda Managed Instances:
  --managed-instances    the fake runtime refuses INVOKE registrations and wants schema
                         2025-01-29; AWS_LAMBDA_INITIALIZATION_TYPE=lambda-managed-instances
                         and AWS_LAMBDA_MAX_CONCURRENCY are set; no freeze; invocations run
                         concurrently on --concurrency workers at --rate, without
                         platform.runtimeDone and with a slim platform.report
                         (add --env AWS_LAMBDA_INITIALIZATION_TYPE=on-demand to exercise the
                         extension's fallback when the environment does not say so)
  --concurrency N        runtime workers                                 [4]
Extension settings (shorthands for --env):
  --strategy adaptive|end|background       KINESIS_TELEMETRY_FLUSH_STRATEGY     [adaptive]
  --record-format ndjson|event|kpl         KINESIS_TELEMETRY_RECORD_FORMAT      [ndjson]
  --partition-key random|request_id|function|environment|tenant
                                           KINESIS_TELEMETRY_PARTITION_KEY      [random]
  --no-enrich                              KINESIS_TELEMETRY_ENRICH=false
  --env KEY=VALUE        any variable for the extension (repeatable; a later one wins)
Kinesis faults (mock):
  --throttle F           fraction of records throttled (0..1)            [0]
  --throttle-first N     the first N records are throttled               [0]
  --fail-500 F           fraction of requests answered 500               [0]
  --fail-first N         the first N requests are answered 500           [0]
  --latency-ms MS        latency added to every answer                   [0]
  --drop F               fraction of requests whose connection is dropped [0]
  --outage-invocations START:END
                         every request fails (503) from invocation START (0-based) until
                         invocation END begins: ends by a count, not a clock
  --outage START_MS:LEN_MS   every request fails (503) in this window, from the first INVOKE
  --kinesis-fault NAME   the whole endpoint, from the start: hang-connect (connects hang,
                         as to an endpoint nothing routes to), no-answer (connections
                         accepted, requests never answered), slow:MS (every answer MS
                         late), 5xx (every request 500), throttle (every record
                         throttled), drop (every connection closed unanswered)
  --seed N               seed of the fault dice                          [1]
  --shards N             the stream has N shards with Kinesis's per-shard write limits
                         enforced: partition key -> MD5 -> shard, 1 MiB/s and 1,000
                         records/s per shard, ProvisionedThroughputExceededException per
                         record over them                                 [4, no limits]
Fleet:
  --environments N       N execution environments of the function (N extension processes,
                         each its own Runtime API and freeze) writing to one mock stream, all
                         running the workload at once; the report gives each environment's
                         and the total loss, time added, request bytes sent / bytes the
                         shards accepted, PutRecords calls, throttled records, exits, and
                         each shard's busy share                          [1]
  --expect-loss          loss is no failure if the extension counted it: lost within
                         [dropped - in_doubt, dropped]
Endpoint:
  --endpoint URL         send to a real endpoint (e.g. http://127.0.0.1:5000 for moto),
                         with AWS_* credentials from this environment; events are not
                         checked off and the verdict rests on the extension's own counts
  --stream NAME          stream name                                     [telemetry-stream]
  --binary PATH          extension binary                     [target/<profile>/kinesis-telemetry-extension]
Output:
  --progress-every N     progress line every N invocations               [invocations/10]
  --json                 JSON report instead of text
  --verbose              echo every line of the extension's log as it comes (default: its
                         WARN and ERROR lines)
  --bench [--bench-seconds S] [--only NAME[,NAME]]
                         benchmarks instead of one run (--only: a subset; --only list names
                         them)                                           [S=5]

Exit code: 0 when every event was delivered (at least once, duplicates only within what the
extension resent unconfirmed; or the loss was expected and counted), in emission order per
partition key when the key is fixed, no invocation was held past its deadline and the
extension exited 0 before the SHUTDOWN deadline; 1 otherwise (an init failure included); 2 on
a usage error. Events the extension's filter leaves out are filtered, not lost; events Lambda
drops before the listener (--platform-queue) are no failure of the extension. A run that
passes with loss says how much and whose: RESULT: PASS with loss: ...
";

struct Args {
    cfg: SandboxConfig,
    json: bool,
    expect_loss: bool,
    bench: bool,
    bench_seconds: f64,
    only: Option<Vec<String>>,
}

fn one_of(flag: &str, v: String, allowed: &[&str]) -> Result<String, String> {
    if allowed.contains(&v.as_str()) {
        Ok(v)
    } else {
        Err(format!("{flag} {}, got {v:?}", allowed.join("|")))
    }
}

fn pair(flag: &str, v: &str, what: &str) -> Result<(u64, u64), String> {
    let bad = || format!("{flag} {what}, got {v:?}");
    let (a, b) = v.split_once(':').ok_or_else(bad)?;
    Ok((a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?))
}

fn parse() -> Result<Args, String> {
    let mut a = Args {
        cfg: SandboxConfig {
            echo: Echo::Problems,
            ..SandboxConfig::default()
        },
        json: false,
        expect_loss: false,
        bench: false,
        bench_seconds: 5.0,
        only: None,
    };
    a.cfg.faults.seed = 1;
    let mut progress = None;
    let mut it = std::env::args().skip(1);
    let millis = |v: String| -> Result<Duration, String> {
        v.parse::<u64>()
            .map(Duration::from_millis)
            .map_err(|_| format!("expected milliseconds, got {v:?}"))
    };
    let fraction = |v: String| -> Result<f64, String> {
        v.parse::<f64>()
            .ok()
            .filter(|f| (0.0..=1.0).contains(f))
            .ok_or_else(|| format!("expected a fraction 0..1, got {v:?}"))
    };
    let count = |v: String| -> Result<usize, String> {
        v.parse::<usize>()
            .map_err(|_| format!("expected a count, got {v:?}"))
    };
    let setting = |cfg: &mut SandboxConfig, name: &str, v: String| {
        cfg.env.push((format!("KINESIS_TELEMETRY_{name}"), v));
    };
    while let Some(flag) = it.next() {
        let mut val = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        let w = &mut a.cfg.workload;
        match flag.as_str() {
            "-h" | "--help" => {
                print!("{HELP}");
                std::process::exit(0);
            }
            "--invocations" => w.invocations = count(val()?)?,
            "--gap-ms" => w.pace = Pace::Gap(millis(val()?)?),
            "--rate" => {
                let v = val()?;
                let r: f64 = v
                    .parse()
                    .ok()
                    .filter(|r: &f64| *r > 0.0)
                    .ok_or_else(|| format!("--rate needs a positive rate, got {v:?}"))?;
                w.pace = Pace::Rate(r);
            }
            "--runtime-ms" => w.runtime_duration = millis(val()?)?,
            "--init-ms" => w.init_duration = millis(val()?)?,
            "--lines" => w.lines_per_invoke = count(val()?)?,
            "--log-format" => {
                w.log_format = match val()?.as_str() {
                    "text" => LogFormat::Text,
                    "json" => LogFormat::Json,
                    other => return Err(format!("--log-format text|json, got {other:?}")),
                }
            }
            "--line-bytes" => w.line_bytes = count(val()?)?,
            "--burst" => w.burst_before_shutdown = count(val()?)?,
            "--idle-ms" => w.idle_before_shutdown = millis(val()?)?,
            "--no-freeze" => w.freeze = false,
            "--freeze" => w.freeze = true,
            "--function-timeout-ms" => w.function_timeout = millis(val()?)?,
            "--managed-instances" => w.managed_instances = true,
            "--concurrency" => {
                w.concurrency = count(val()?)?.max(1);
            }
            "--shutdown-ms" => a.cfg.shutdown_phase = millis(val()?)?,
            "--runtime-share-ms" => a.cfg.runtime_share = millis(val()?)?,
            "--platform-queue" => a.cfg.telemetry_queue_limit = Some(count(val()?)?),
            "--strategy" => {
                let v = one_of(&flag, val()?, &["adaptive", "end", "background"])?;
                setting(&mut a.cfg, "FLUSH_STRATEGY", v);
            }
            "--record-format" => {
                let v = one_of(&flag, val()?, &["ndjson", "event", "kpl"])?;
                setting(&mut a.cfg, "RECORD_FORMAT", v);
            }
            "--partition-key" => {
                let allowed = ["random", "request_id", "function", "environment", "tenant"];
                let v = one_of(&flag, val()?, &allowed)?;
                setting(&mut a.cfg, "PARTITION_KEY", v);
            }
            "--no-enrich" => setting(&mut a.cfg, "ENRICH", "false".to_owned()),
            "--throttle" => a.cfg.faults.throttle = fraction(val()?)?,
            "--throttle-first" => a.cfg.faults.throttle_first_records = count(val()?)? as u64,
            "--fail-500" => a.cfg.faults.fail_500 = fraction(val()?)?,
            "--fail-first" => a.cfg.faults.fail_first_requests = count(val()?)? as u64,
            "--latency-ms" => a.cfg.faults.latency = millis(val()?)?,
            "--drop" => a.cfg.faults.drop_connections = fraction(val()?)?,
            "--outage" => {
                let (s, l) = pair(&flag, &val()?, "START_MS:LEN_MS")?;
                a.cfg.faults.outage = Some(Outage::Timed {
                    start: Duration::from_millis(s),
                    length: Duration::from_millis(l),
                });
            }
            "--outage-invocations" => {
                let (s, e) = pair(&flag, &val()?, "START:END")?;
                if e <= s {
                    return Err(format!(
                        "--outage-invocations START:END needs END > START, got {s}:{e}"
                    ));
                }
                a.cfg.faults.outage = Some(Outage::Invocations {
                    start: s as usize,
                    end: e as usize,
                });
            }
            "--kinesis-fault" => a.cfg.faults.kinesis = Some(val()?.parse()?),
            "--shards" => {
                let n = count(val()?)?;
                if n == 0 || n > 1024 {
                    return Err(format!("--shards needs 1..1024, got {n}"));
                }
                a.cfg.shards = Some(n as u32);
            }
            "--environments" => {
                let n = count(val()?)?;
                if n == 0 || n > 64 {
                    return Err(format!("--environments needs 1..64, got {n}"));
                }
                a.cfg.environments = n;
            }
            "--seed" => a.cfg.faults.seed = count(val()?)? as u64,
            "--expect-loss" => a.expect_loss = true,
            "--endpoint" => a.cfg.endpoint = Some(val()?),
            "--stream" => a.cfg.stream = Some(val()?),
            "--env" => {
                let v = val()?;
                let (k, x) = v
                    .split_once('=')
                    .ok_or_else(|| format!("--env KEY=VALUE, got {v:?}"))?;
                a.cfg.env.push((k.to_owned(), x.to_owned()));
            }
            "--binary" => a.cfg.binary = Some(val()?.into()),
            "--progress-every" => progress = Some(count(val()?)?),
            "--json" => a.json = true,
            "--verbose" => {
                std::env::set_var("HARNESS_ECHO_LOG", "1");
                a.cfg.echo = Echo::Nothing;
            }
            "--bench" => a.bench = true,
            "--bench-seconds" => {
                let v = val()?;
                a.bench_seconds = v.parse().map_err(|_| format!("bad seconds {v:?}"))?;
            }
            "--only" => {
                a.only = Some(val()?.split(',').map(|s| s.trim().to_owned()).collect());
            }
            other => return Err(format!("unknown option {other:?} (see --help)")),
        }
    }
    a.cfg.progress_every = progress.unwrap_or((a.cfg.workload.invocations / 10).max(1));
    Ok(a)
}

/// The binary must exist and should be newer than the sources (examples do not rebuild it).
fn check_binary(cfg: &SandboxConfig) -> Result<(), String> {
    let bin = cfg.binary.clone().unwrap_or_else(support::extension_binary);
    let meta = std::fs::metadata(&bin).map_err(|_| {
        format!(
            "no extension binary at {} — build it first: cargo build --release --workspace --bin kinesis-telemetry-extension --bin sandbox",
            bin.display()
        )
    })?;
    let built = meta.modified().ok();
    let src = support::repo_root().join("src");
    let newest = walk_newest(&src);
    if let (Some(b), Some(s)) = (built, newest) {
        if s > b {
            eprintln!(
                "[sandbox] warning: {} is older than src/; rebuild it (cargo build --release --workspace --bin kinesis-telemetry-extension --bin sandbox)",
                bin.display()
            );
        }
    }
    Ok(())
}

fn walk_newest(dir: &std::path::Path) -> Option<std::time::SystemTime> {
    let mut newest = None;
    for e in std::fs::read_dir(dir).ok()?.flatten() {
        let p = e.path();
        let t = if p.is_dir() {
            walk_newest(&p)
        } else {
            e.metadata().ok().and_then(|m| m.modified().ok())
        };
        newest = newest.max(t);
    }
    newest
}

fn main() -> ExitCode {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("sandbox: {e}");
            return ExitCode::from(2);
        }
    };
    let listing = args.only.as_deref() == Some(&["list".to_owned()][..]);
    if !listing {
        if let Err(e) = check_binary(&args.cfg) {
            eprintln!("sandbox: {e}");
            return ExitCode::from(2);
        }
    }
    if args.bench {
        return bench::main(
            &args.cfg,
            args.bench_seconds,
            args.only.as_deref(),
            args.json,
        );
    }
    eprintln!("{}", sandbox::describe(&args.cfg));
    if args.cfg.environments > 1 {
        return fleet(&args);
    }
    match sandbox::run(&args.cfg) {
        Ok(mut report) => {
            report.judge(args.expect_loss);
            if args.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&report).expect("serializable")
                );
            } else {
                print!("{}", sandbox::render(&report));
            }
            if report.passed() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("sandbox: the run could not complete: {e}");
            ExitCode::from(1)
        }
    }
}

fn fleet(args: &Args) -> ExitCode {
    match sandbox::run_fleet(&args.cfg) {
        Ok(mut report) => {
            report.judge(args.expect_loss);
            if args.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&report).expect("serializable")
                );
            } else {
                print!("{}", sandbox::render_fleet(&report));
            }
            if report.passed() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("sandbox: the fleet could not complete: {e}");
            ExitCode::from(1)
        }
    }
}
