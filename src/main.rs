//! `kinesis-telemetry-extension`: an AWS Lambda external extension that delivers every
//! Telemetry API event (platform, function and extension logs) to Amazon Kinesis Data Streams.
//!
//! Threads, joined by bounded channels:
//!
//! ```text
//!  Lambda Telemetry API --POST--> receiver --Vec<Event>--> flusher --PutRecords--> Kinesis
//!                                                            ^  |
//!  Extensions API <--event/next-- lifecycle (main) --Control-+  +--Ack--> lifecycle
//! ```
//!
//! This file only wires them; each module documents its own invariants.

#![deny(unsafe_code)]

mod batch;
mod config;
mod event;
mod flusher;
mod kinesis;
// Not wired into the flusher yet.
#[allow(dead_code)]
mod kpl;
mod lifecycle;
mod receiver;
mod retry;
mod rng;
mod runtime_api;
mod sign;
#[allow(dead_code)] // until the flusher spills to it
mod spill;
mod stats;

use std::io::Write;
use std::sync::Arc;

use log::{error, info, warn};

use config::{Config, Delivery};
use flusher::{Flusher, Settings};
use lifecycle::{FlusherHandle, Lifecycle};
use receiver::Receiver;
use runtime_api::{RuntimeApi, Subscribed};
use stats::Stats;

/// The name Lambda knows this extension by when the file is not renamed.
const DEFAULT_NAME: &str = "kinesis-telemetry-extension";
/// Batches of events the receiver may queue for the flusher (bytes are capped separately).
const EVENT_QUEUE_BATCHES: usize = 1024;

fn main() {
    if std::env::args().nth(1).as_deref() == Some("--version") {
        println!("{DEFAULT_NAME} {}", env!("CARGO_PKG_VERSION"));
        return;
    }
    init_logging();
    // The release build aborts on panic (smaller binary); say why in one line first.
    std::panic::set_hook(Box::new(|info| {
        eprintln!("[kinesis-telemetry] ERROR internal error, exiting: {info}");
    }));
    std::process::exit(run());
}

/// Logs go to stderr (the function's log group). `KINESIS_TELEMETRY_LOG_LEVEL` sets the level
/// of this extension's lines only: dependencies never log, so no request header (and no
/// credential) can reach the log through them. An unknown level falls back to `info` with a
/// warning instead of silencing the extension.
fn init_logging() {
    const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];
    let raw = std::env::var("KINESIS_TELEMETRY_LOG_LEVEL").unwrap_or_default();
    let wanted = raw.trim().to_ascii_lowercase();
    let invalid = !wanted.is_empty() && !LEVELS.contains(&wanted.as_str());
    let level = if wanted.is_empty() || invalid {
        "info"
    } else {
        wanted.as_str()
    };
    env_logger::Builder::new()
        .parse_filters(&format!("off,kinesis_telemetry_extension={level}"))
        .format(|buf, record| {
            writeln!(
                buf,
                "[kinesis-telemetry] {} {}",
                record.level(),
                record.args()
            )
        })
        .init();
    if invalid {
        warn!(
            "KINESIS_TELEMETRY_LOG_LEVEL={raw:?} is invalid: allowed {}; using the default info",
            LEVELS.join(", ")
        );
    }
}

/// The executable's own file name: Lambda requires it as the registration name, and a
/// renamed file must still register.
fn extension_name() -> String {
    std::env::args_os()
        .next()
        .and_then(|a| {
            std::path::Path::new(&a)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
        })
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| DEFAULT_NAME.into())
}

fn run() -> i32 {
    let (config, mut problems) = Config::from_env();
    let runtime_api = std::env::var("AWS_LAMBDA_RUNTIME_API").unwrap_or_default();
    let api = match RuntimeApi::new(&runtime_api) {
        Ok(api) => api,
        Err(e) => {
            error!("cannot reach the Extensions API: {e}");
            return 1;
        }
    };
    let name = extension_name();
    let id = match api.register(&name) {
        Ok(id) => id,
        Err(e) => {
            error!("registering as {name:?} failed: {e}");
            return 1;
        }
    };

    for p in &problems {
        if p.disables_delivery {
            error!("{p}");
        } else {
            warn!("{p}");
        }
    }
    if config.fail_on_error && !problems.is_empty() {
        let all: Vec<String> = problems.drain(..).map(|p| p.message).collect();
        return fail_init(&api, &id, "ConfigInvalid", &all.join("; "));
    }

    let stats = Arc::new(Stats::default());
    let flusher = match &config.delivery {
        None => None,
        Some(delivery) => match start_pipeline(&config, delivery, &api, &id, &stats) {
            Ok(handle) => Some(handle),
            Err((reason, message)) if config.fail_on_error => {
                error!("{message}");
                return fail_init(&api, &id, reason, &message);
            }
            Err((_, message)) => {
                error!("{message}; the function runs normally without telemetry delivery");
                None
            }
        },
    };
    Lifecycle::new(&api, &id, flusher, stats).run()
}

/// Reports `Extension.<reason>` through `/init/error` (the user made errors fatal with
/// `KINESIS_TELEMETRY_FAIL_ON_ERROR=true`) and returns the exit code.
fn fail_init(api: &RuntimeApi, id: &str, reason: &str, message: &str) -> i32 {
    error!("KINESIS_TELEMETRY_FAIL_ON_ERROR=true: failing init with Extension.{reason}");
    if let Err(e) = api.init_error(id, reason, message) {
        error!("reporting init/error failed: {e}");
    }
    1
}

/// Starts the receiver and flusher threads and subscribes to the Telemetry API.
/// The error names the `Extension.<Reason>` to report when failures are fatal.
fn start_pipeline(
    config: &Config,
    delivery: &Delivery,
    api: &RuntimeApi,
    id: &str,
    stats: &Arc<Stats>,
) -> Result<FlusherHandle, (&'static str, String)> {
    let client = kinesis::KinesisClient::new(kinesis::ClientSettings {
        endpoint: delivery.endpoint.clone(),
        region: delivery.region.clone(),
        credentials: delivery.credentials.clone(),
        connect_timeout: config.http.connect_timeout,
        ca_file: config.http.ca_file.clone(),
    })
    .map_err(|e| {
        (
            "KinesisClient",
            format!("cannot set up the Kinesis client: {e}"),
        )
    })?;

    let (events_tx, events_rx) = crossbeam_channel::bounded(EVENT_QUEUE_BATCHES);
    let (control_tx, control_rx) = crossbeam_channel::bounded(4);
    let (ack_tx, ack_rx) = crossbeam_channel::bounded(4);

    let receiver = Receiver::bind(
        config.bind_address,
        config.port,
        events_tx,
        stats.clone(),
        config.buffer.clone(),
        config.max_body_bytes(),
        config
            .limits
            .max_record_bytes
            .min(config.limits.max_request_bytes),
    )
    .map_err(|e| ("ListenerFailed", e))?;
    let port = receiver.port();
    spawn("telemetry-receiver", move || receiver.run())?;

    let settings = Settings {
        policy: config.flush.clone(),
        limits: config.limits,
        http: config.http.clone(),
        partition_key: config.partition_key,
        shutdown_grace: config.shutdown_grace,
    };
    let sink = flusher::KinesisSink::new(client, delivery.stream.clone());
    let flusher = Flusher::new(sink, settings, stats.clone(), events_rx);
    spawn("flusher", move || flusher.run(control_rx, ack_tx))?;

    match api.subscribe(id, &config.subscription, port) {
        Ok(Subscribed::Yes) => info!(
            "subscribed to {} telemetry on port {port}; delivering to {} in {}",
            config.subscription.types.join(","),
            delivery.stream,
            delivery.region
        ),
        Ok(Subscribed::NotSupported) => {
            warn!("this environment has no Telemetry API (subscription answered 202): nothing to deliver");
        }
        Err(e) => {
            return Err((
                "SubscribeFailed",
                format!("telemetry subscription failed: {e}"),
            ))
        }
    }
    Ok(FlusherHandle {
        control: control_tx,
        acks: ack_rx,
        invoke_budget: config.flush.invoke_budget,
    })
}

fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> Result<(), (&'static str, String)> {
    std::thread::Builder::new()
        .name(name.into())
        .stack_size(1024 * 1024)
        .spawn(f)
        .map(drop)
        .map_err(|e| {
            (
                "ThreadSpawn",
                format!("cannot start the {name} thread: {e}"),
            )
        })
}
