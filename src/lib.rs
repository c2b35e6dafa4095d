//! `kinesis-telemetry-extension`: an AWS Lambda external extension that delivers every
//! Telemetry API event (platform, function and extension logs) to Amazon Kinesis Data Streams.
//!
//! Threads, joined by the buffer and bounded channels:
//!
//! ```text
//!  Telemetry API --POST--> listener --> receiver --admit--> Buffer <--lease-- flusher --PutRecords--> Kinesis
//!                       (a thread per connection)             |  wake            ^  |
//!  Extensions API <--event/next-- lifecycle (main) ------------+---- Control ----+  +-- Ack --> lifecycle
//! ```
//!
//! This file only wires them (`config` reads the environment and assembles each part's
//! settings); each module documents its own invariants. `main.rs` only calls
//! [`main`]: the crate is a library so that the fuzz targets (`fuzz/`) can reach the parsers
//! through its hidden `fuzzing` module; nothing else is public.

#![deny(unsafe_code)]

mod config;
mod delivery;
mod event;
mod intake;
mod kinesis;
mod lifecycle;
mod metrics;
mod rng;
mod stats;
mod store;

/// Entry points for the fuzz targets (`fuzz/`) and the property tests: not an API.
#[doc(hidden)]
pub mod fuzzing;

use std::sync::Arc;

use log::{error, info, warn};

use config::{Config, StreamAccess};
use delivery::sink::KinesisSink;
use intake::enrich::Origin;
use intake::listener::Listener;
use intake::receiver::TelemetryReceiver;
use intake::snapstart::Environment;
use kinesis::KinesisClient;
use lifecycle::runtime_api::{Registration, RuntimeApi, Subscribed, Subscription};
use lifecycle::{Lifecycle, Pipeline};
use metrics::Metrics;
use stats::Stats;
use store::buffer::Buffer;

/// The name Lambda knows this extension by when the file is not renamed.
const DEFAULT_NAME: &str = "kinesis-telemetry-extension";

/// The process: handles `--version`, sets up logging and the panic line, runs the extension
/// and returns the exit status.
pub fn main() -> i32 {
    // `args_os`: a non-UTF-8 argument or executable name must not panic (release builds
    // abort on panic, and an extension crash resets the customer's environment).
    if std::env::args_os().nth(1).is_some_and(|a| a == "--version") {
        println!("{DEFAULT_NAME} {}", env!("CARGO_PKG_VERSION"));
        return 0;
    }
    lifecycle::logging::init(&format!("{}LOG_LEVEL", config::PREFIX));
    // The release build aborts on panic (smaller binary); say why in one line first.
    std::panic::set_hook(Box::new(|info| {
        eprintln!("[kinesis-telemetry] ERROR internal error, exiting: {info}");
    }));
    run()
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
    let (registration, shutdown_only) =
        match lifecycle::register(&api, &name, config.lambda.managed_instances) {
            Ok(r) => r,
            Err(e) => {
                error!("registering as {name:?} failed: {e}");
                return 1;
            }
        };
    let id = registration.id.clone();

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
    let pipeline = match &config.access {
        None => None,
        Some(access) => {
            match start_pipeline(&config, access, &registration, &api, &stats, shutdown_only) {
                Ok(p) => p,
                Err((reason, message)) if config.fail_on_error => {
                    error!("{message}");
                    return fail_init(&api, &id, reason, &message);
                }
                Err((_, message)) => {
                    error!("{message}; the function runs normally without telemetry delivery");
                    None
                }
            }
        }
    };
    Lifecycle::new(&api, &id, pipeline, stats, shutdown_only).run()
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

/// Binds the telemetry listener where the platform dials it; it serves only a secret path
/// drawn from fresh OS entropy, which only the subscription tells.
fn bind_listener(config: &Config, stats: &Stats) -> Result<Listener, (&'static str, String)> {
    let mut secret = [0u8; intake::listener::PATH_SECRET_BYTES];
    if let Err(e) = rng::os_entropy(&mut secret) {
        // Still far better than no path; say so rather than go without telemetry.
        warn!("the OS gave no entropy ({e}): the telemetry listener's path comes from the clock-seeded generator, which code in the sandbox could guess");
        let mut weak = rng::Rng::new();
        for b in &mut secret {
            *b = weak.next_u64() as u8;
        }
    }
    Listener::bind_for_platform(
        config.bind_address,
        config.port,
        intake::listener::secret_path(&secret),
        config::listener_limits(config),
        stats.listener.clone(),
    )
    .map_err(|e| ("ListenerFailed", e.to_string()))
}

/// Starts the buffer, the listener and the flusher, and subscribes to the Telemetry API;
/// `None` when the environment has no Telemetry API (nothing will ever arrive). The error
/// names the `Extension.<Reason>` to report when failures are fatal. `concurrent`: Lambda
/// Managed Instances (registered for SHUTDOWN only).
fn start_pipeline(
    config: &Config,
    access: &StreamAccess,
    registration: &Registration,
    api: &RuntimeApi,
    stats: &Arc<Stats>,
    concurrent: bool,
) -> Result<Option<Pipeline>, (&'static str, String)> {
    let client = KinesisClient::new(config::client_settings(config, access))
        .map_err(|e| failed("KinesisClient", "cannot set up the Kinesis client", e))?;
    let function = config::function_info(config, access, registration);
    let environment = Arc::new(Environment::new(config.lambda.snap_start));
    let origin = Origin::new(&function, environment.id().to_string());

    let (buffer, woken) = open_buffer(config, stats);

    let settings =
        config::receiver_settings(config, &function, &origin, environment.clone(), concurrent);
    let receiver = TelemetryReceiver::new(settings, buffer.clone(), stats.clone());
    let listener = bind_listener(config, stats)?;
    let (port, destination) = (listener.port(), listener.destination());
    listener
        .spawn(Arc::new(receiver))
        .map_err(|e| failed("ThreadSpawn", "cannot start the telemetry listener", e))?;

    let flusher = delivery::flusher::spawn(delivery::flusher::Parts {
        sink: KinesisSink::new(client, access.stream.clone(), config.http.connect_timeout),
        settings: config::flusher_settings(config),
        stats: stats.clone(),
        buffer: buffer.clone(),
        woken,
        metrics: Metrics::new(
            config.metrics.clone(),
            config::dimension_values(&function, access),
        ),
    })
    .map_err(|e| failed("ThreadSpawn", "cannot start the flusher thread", e))?;

    let subscription = config::subscription(config, concurrent);
    let in_force = || config::subscribed_line(config, access, port, concurrent);
    if !subscribe(api, registration, &subscription, &destination, in_force)? {
        return Ok(None);
    }
    Ok(Some(Pipeline {
        flusher,
        buffer,
        environment,
    }))
}

/// The buffer, with the spill file when it is on (events a previous process left in it
/// counted as recovered); the receiver that wakes the flusher.
fn open_buffer(config: &Config, stats: &Stats) -> (Arc<Buffer>, crossbeam_channel::Receiver<()>) {
    let spill = store::spill::open_logged(&config.spill);
    Stats::add(
        &stats.recovered,
        spill.as_ref().map_or(0, |s| s.found_at_open()),
    );
    let (buffer, woken) = Buffer::new(config.buffer.clone(), spill);
    (Arc::new(buffer), woken)
}

/// Subscribes the listener at `destination` to the Telemetry API and logs the settings in
/// force (`in_force`); `false` when the environment has no Telemetry API.
fn subscribe(
    api: &RuntimeApi,
    registration: &Registration,
    subscription: &Subscription,
    destination: &str,
    in_force: impl FnOnce() -> String,
) -> Result<bool, (&'static str, String)> {
    match api.subscribe(&registration.id, subscription, destination) {
        Ok(Subscribed::Yes) => info!("{}", in_force()),
        Ok(Subscribed::NotSupported) => {
            warn!("this environment has no Telemetry API (subscription answered 202): nothing to deliver");
            return Ok(false);
        }
        Err(e) => {
            return Err(failed(
                "SubscribeFailed",
                "telemetry subscription failed",
                e,
            ))
        }
    }
    Ok(true)
}

/// A start failure: the `Extension.<Reason>` to report and the message `what: error`.
fn failed(reason: &'static str, what: &str, e: impl std::fmt::Display) -> (&'static str, String) {
    (reason, format!("{what}: {e}"))
}
