//! `sandbox`: runs the real extension binary in a simulated Lambda execution environment
//! against mocked endpoints and reports what happened (`./build.sh local`), or measures it
//! (`--bench`). See `--help`; the simulation itself is [`kte_test_support::sandbox`].

mod bench;
mod throughput;

use kte_test_support as support;
use support::sandbox;

use std::process::ExitCode;
use std::time::Duration;

use sandbox::{Faults, LogFormat, Pace, SandboxConfig, Workload};

const HELP: &str = "\
sandbox: run the kinesis-telemetry-extension binary inside a simulated Lambda execution
environment (Extensions API, Telemetry API, freeze/thaw, SHUTDOWN deadline) against a mock
Kinesis, and report what was emitted, delivered, lost and how long each phase took.

USAGE: sandbox [OPTIONS]            (./build.sh local [OPTIONS])

Workload:
  --invocations N        invocations to run                              [200]
  --gap-ms MS            pause between invocations (frozen meanwhile)    [20]
  --rate PER_S           start invocations at this rate instead of --gap-ms
  --runtime-ms MS        each invocation's duration                      [5]
  --init-ms MS           the runtime's init duration                     [30]
  --lines K              function log records per invocation             [5]
  --log-format text|json Lambda log format of function records           [text]
  --line-bytes B         size of each function event (JSON text)         [200]
  --burst N              function records emitted right before SHUTDOWN  [0]
  --no-freeze            do not SIGSTOP the extension between invocations
  --function-timeout-ms MS   INVOKE deadlineMs = delivery + MS           [3000]
  --shutdown-ms MS       the SHUTDOWN phase                              [2000]
  --runtime-share-ms MS  the runtime's share of it (deadlineMs = phase - share) [300]
Kinesis faults (mock):
  --throttle F           fraction of records throttled (0..1)            [0]
  --fail-500 F           fraction of requests answered 500               [0]
  --latency-ms MS        latency added to every answer                   [0]
  --drop F               fraction of requests whose connection is dropped [0]
  --outage START_MS:LEN_MS   every request fails (503) in this window, from the first INVOKE
  --seed N               seed of the fault dice                          [1]
  --expect-loss          loss is not a failure if the extension counted it exactly
Endpoint:
  --endpoint URL         send to a real endpoint (e.g. http://127.0.0.1:5000 for moto),
                         with AWS_* credentials from this environment; not checked off
  --stream NAME          stream name                                     [telemetry-stream]
  --env KEY=VALUE        extra variable for the extension (repeatable)
  --binary PATH          extension binary                     [target/<profile>/kinesis-telemetry-extension]
Output:
  --progress-every N     progress line every N invocations               [invocations/10]
  --json                 JSON report instead of text
  --verbose              echo the extension's log lines
  --bench [--bench-seconds S]  benchmarks instead of one run             [S=5]

Exit code: 0 when every event was delivered exactly once (or the loss was expected and
counted), no invocation was held past its deadline and the extension exited 0 before the
SHUTDOWN deadline; 1 otherwise; 2 on a usage error.
";

struct Args {
    cfg: SandboxConfig,
    json: bool,
    expect_loss: bool,
    bench: bool,
    bench_seconds: f64,
}

fn parse() -> Result<Args, String> {
    let mut a = Args {
        cfg: SandboxConfig::default(),
        json: false,
        expect_loss: false,
        bench: false,
        bench_seconds: 5.0,
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
                let r: f64 = v.parse().map_err(|_| format!("bad rate {v:?}"))?;
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
            "--no-freeze" => w.freeze = false,
            "--freeze" => w.freeze = true,
            "--function-timeout-ms" => w.function_timeout = millis(val()?)?,
            "--shutdown-ms" => a.cfg.shutdown_phase = millis(val()?)?,
            "--runtime-share-ms" => a.cfg.runtime_share = millis(val()?)?,
            "--throttle" => a.cfg.faults.throttle = fraction(val()?)?,
            "--fail-500" => a.cfg.faults.fail_500 = fraction(val()?)?,
            "--latency-ms" => a.cfg.faults.latency = millis(val()?)?,
            "--drop" => a.cfg.faults.drop_connections = fraction(val()?)?,
            "--outage" => {
                let v = val()?;
                let (s, l) = v
                    .split_once(':')
                    .ok_or_else(|| format!("--outage START_MS:LEN_MS, got {v:?}"))?;
                a.cfg.faults.outage = Some((millis(s.into())?, millis(l.into())?));
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
            "--verbose" => std::env::set_var("HARNESS_ECHO_LOG", "1"),
            "--bench" => a.bench = true,
            "--bench-seconds" => {
                let v = val()?;
                a.bench_seconds = v.parse().map_err(|_| format!("bad seconds {v:?}"))?;
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
            "no extension binary at {} — build it first: cargo build --release --bin kinesis-telemetry-extension",
            bin.display()
        )
    })?;
    let built = meta.modified().ok();
    let src = support::repo_root().join("src");
    let newest = walk_newest(&src);
    if let (Some(b), Some(s)) = (built, newest) {
        if s > b {
            eprintln!(
                "[sandbox] warning: {} is older than src/; rebuild it (cargo build --release --bin kinesis-telemetry-extension)",
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
    if let Err(e) = check_binary(&args.cfg) {
        eprintln!("sandbox: {e}");
        return ExitCode::from(2);
    }
    if args.bench {
        return bench::main(&args.cfg, args.bench_seconds, args.json);
    }
    let w = &args.cfg.workload;
    let f: &Faults = &args.cfg.faults;
    eprintln!(
        "[sandbox] {} invocations, {} {:?} log records of {} B each, freeze {}, faults: throttle {} / 500s {} / latency {:?} / drop {} / outage {:?}",
        w.invocations,
        w.lines_per_invoke,
        w.log_format,
        w.line_bytes,
        if w.freeze { "on" } else { "off" },
        f.throttle,
        f.fail_500,
        f.latency,
        f.drop_connections,
        f.outage
    );
    let _: &Workload = w;
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
