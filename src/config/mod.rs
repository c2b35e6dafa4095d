//! Settings, read once at start from the environment into a typed [`Config`].
//!
//! `config` sits above every other module and nothing below imports it: each module owns
//! its settings type (`BufferCap` in `buffer`, `Pacing` in `pacing`, `RecordSettings` in
//! `records`, `Http` and `CredentialSource` in `kinesis`, `Subscription` in `runtime_api`,
//! `PartitionKeyMode` in `event::key`, ...), `config` fills them from the environment, and
//! `assemble` builds what each thread takes from the [`Config`], so
//! that `lib.rs` only connects the threads.
//!
//! Every extension setting shares the prefix `KINESIS_TELEMETRY_` because the function's own
//! variables are shared with the extension. Each one is listed in [`KNOWN`] with its
//! documented default (ranges live in the [`Int`] constants below); the settings reference
//! (`docs/settings.md`) lists the same names and defaults, and a test keeps the two in step.
//!
//! Invariants:
//! - Parsing never fails as a whole. An invalid value gives one [`Problem`] naming the
//!   variable, the value it had and what is allowed, and the default is used, so a typo in a
//!   tuning knob never stops telemetry. A `KINESIS_TELEMETRY_*` variable nobody reads gives a
//!   warning naming the closest known one.
//! - What delivery cannot work without (a valid stream, a region, credentials) is a
//!   [`Problem`] with `disables_delivery = true`; the extension then stays registered and
//!   keeps serving `/event/next` so the function runs normally, but ships nothing.
//! - Secrets are never part of a [`Problem`] message or of `Debug` output.

mod assemble;
mod known;
mod reader;
mod stream;

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

pub use assemble::*;
pub use known::*;
use reader::Reader;
pub use reader::{Documented, Int};
pub use stream::StreamAccess;

use crate::delivery::pacing::{Pacing, Strategy};
use crate::delivery::records::{RecordFormat, RecordSettings};
use crate::event::key::PartitionKeyMode;
use crate::intake::filter::{Filter, LogLevel, TypeSelection, LEVEL_NAMES};
use crate::intake::receiver::Buffering;
use crate::kinesis::limits::Limits;
use crate::kinesis::Http;
use crate::lifecycle::runtime_api::Subscription;
use crate::metrics::{Dimension, MetricsSettings, DIMENSIONS};
use crate::store::buffer::BufferCap;
use crate::store::spill::SpillSettings;

/// A choice table: each value by the name its owner gives it.
macro_rules! choices {
    ($($value:expr),+ $(,)?) => {
        [$(($value.name(), $value)),+]
    };
}

/// `KINESIS_TELEMETRY_FLUSH_STRATEGY` values.
const STRATEGIES: [(&str, Strategy); 3] =
    choices!(Strategy::Adaptive, Strategy::End, Strategy::Background);
/// `KINESIS_TELEMETRY_RECORD_FORMAT` values.
const RECORD_FORMATS: [(&str, RecordFormat); 3] =
    choices!(RecordFormat::Ndjson, RecordFormat::Event, RecordFormat::Kpl);
/// `KINESIS_TELEMETRY_PARTITION_KEY` values.
const PARTITION_KEYS: [(&str, PartitionKeyMode); 5] = choices!(
    PartitionKeyMode::Random,
    PartitionKeyMode::RequestId,
    PartitionKeyMode::Function,
    PartitionKeyMode::Environment,
    PartitionKeyMode::Tenant,
);

/// What Lambda tells the extension about the function and the environment.
#[derive(Debug, Clone, PartialEq)]
pub struct LambdaEnv {
    /// `AWS_LAMBDA_INITIALIZATION_TYPE=lambda-managed-instances`.
    pub managed_instances: bool,
    /// `AWS_LAMBDA_INITIALIZATION_TYPE=snap-start`: this process will be snapshotted after
    /// init and resumed, maybe many times over (see `snapstart`).
    pub snap_start: bool,
    pub max_concurrency: Option<u32>,
    pub function_name: String,
    pub function_version: String,
    pub memory_mb: Option<u32>,
    pub region: Option<String>,
}

/// Every setting, parsed and validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// `None` when something delivery needs is missing (see the problems list).
    pub access: Option<StreamAccess>,
    pub lambda: LambdaEnv,
    /// `KINESIS_TELEMETRY_BIND_ADDRESS`; `None`: the address `sandbox.localdomain` resolves
    /// to, or all addresses when it does not resolve (decided where the listener is bound).
    pub bind_address: Option<IpAddr>,
    pub port: u16,
    pub subscription: Subscription,
    pub filter: Filter,
    pub pacing: Pacing,
    pub buffer: BufferCap,
    pub spill: SpillSettings,
    pub records: RecordSettings,
    pub enrich: bool,
    pub http: Http,
    pub metrics: MetricsSettings,
    /// How long SHUTDOWN waits for the platform's last telemetry batch.
    pub shutdown_grace: Duration,
    /// `KINESIS_TELEMETRY_FAIL_ON_ERROR`: configuration and subscription errors fail init.
    pub fail_on_error: bool,
}

/// One thing wrong with the settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub message: String,
    /// True when telemetry cannot be delivered at all because of it.
    pub disables_delivery: bool,
}

impl Problem {
    fn warning(message: String) -> Problem {
        Problem {
            message,
            disables_delivery: false,
        }
    }

    fn disabling(message: String) -> Problem {
        Problem {
            message,
            disables_delivery: true,
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl Config {
    /// Reads the settings from the process environment.
    pub fn from_env() -> (Config, Vec<Problem>) {
        let names: Vec<String> = std::env::vars_os()
            .filter_map(|(k, _)| k.into_string().ok())
            .collect();
        Config::from_lookup(&|name| std::env::var(name).ok(), &names)
    }

    /// Reads the settings through `get`; `names` are all variables set (for the check of
    /// unknown `KINESIS_TELEMETRY_*` ones). Returns the config and everything wrong with it.
    pub fn from_lookup(
        get: &dyn Fn(&str) -> Option<String>,
        names: &[String],
    ) -> (Config, Vec<Problem>) {
        let mut r = Reader {
            get,
            problems: reader::unknown_variables(names, KNOWN),
        };
        let lambda = read_lambda_env(&r);
        let port = read_port(&mut r);
        let bind_address = match r.setting("BIND_ADDRESS") {
            (_, None) => None,
            (var, Some(v)) => v.parse().map(Some).unwrap_or_else(|_| {
                let allowed = "an IPv4 or IPv6 address such as 0.0.0.0 or 127.0.0.1";
                r.invalid(&var, &v, allowed, &"the address of sandbox.localdomain");
                None
            }),
        };
        let filter = read_filter(&mut r);
        let pacing = read_pacing(&mut r);
        let subscription = read_subscription(&mut r, &filter, &pacing, &lambda);
        let buffer = BufferCap {
            max_events: r.usize(&BUFFER_MAX_EVENTS),
            max_bytes: r.usize(&BUFFER_MAX_BYTES),
        };
        let spill = read_spill(&mut r);
        let records = read_records(&mut r);
        let enrich = r.boolean("ENRICH", true);
        let http = Http {
            connect_timeout: r.millis(&CONNECT_TIMEOUT_MS),
            request_timeout: r.millis(&REQUEST_TIMEOUT_MS),
            ca_file: r.setting("CA_FILE").1.map(PathBuf::from),
            max_attempts: u32::try_from(r.int(&MAX_ATTEMPTS)).unwrap_or(u32::MAX),
            backoff_base: r.millis(&BACKOFF_BASE_MS),
            backoff_max: r.millis(&BACKOFF_MAX_MS),
        };
        let metrics = read_metrics(&mut r);
        let shutdown_grace = r.millis(&SHUTDOWN_GRACE_MS);
        let fail_on_error = r.boolean("FAIL_ON_ERROR", false);
        let access = stream::read_stream_access(&mut r);
        let config = Config {
            access,
            lambda,
            bind_address,
            port,
            subscription,
            filter,
            pacing,
            buffer,
            spill,
            records,
            enrich,
            http,
            metrics,
            shutdown_grace,
            fail_on_error,
        };
        (config, r.problems)
    }

    /// Largest telemetry POST body the listener accepts: Lambda sends up to about
    /// `2 * maxBytes` plus metadata in one POST; a megabyte of margin covers the metadata.
    pub fn max_body_bytes(&self) -> usize {
        2 * self.subscription.buffering.max_bytes as usize + (1 << 20)
    }
}

fn read_lambda_env(r: &Reader<'_>) -> LambdaEnv {
    LambdaEnv {
        managed_instances: r
            .raw("AWS_LAMBDA_INITIALIZATION_TYPE")
            .is_some_and(|v| v.eq_ignore_ascii_case(MANAGED_INSTANCES_INIT_TYPE)),
        snap_start: r.raw("AWS_LAMBDA_INITIALIZATION_TYPE").is_some_and(|v| {
            v.eq_ignore_ascii_case(crate::intake::snapstart::SNAP_START_INIT_TYPE)
        }),
        max_concurrency: r
            .raw("AWS_LAMBDA_MAX_CONCURRENCY")
            .and_then(|v| v.parse().ok()),
        function_name: r.raw("AWS_LAMBDA_FUNCTION_NAME").unwrap_or_default(),
        function_version: r.raw("AWS_LAMBDA_FUNCTION_VERSION").unwrap_or_default(),
        memory_mb: r
            .raw("AWS_LAMBDA_FUNCTION_MEMORY_SIZE")
            .and_then(|v| v.parse().ok()),
        region: r.raw("AWS_REGION").or_else(|| r.raw("AWS_DEFAULT_REGION")),
    }
}

fn read_port(r: &mut Reader<'_>) -> u16 {
    let default = PORT.default as u16;
    match r.setting(PORT.name) {
        (_, None) => default,
        (var, Some(v)) => match v.parse::<u16>() {
            Ok(p) if p != RESERVED_PORT => p,
            _ => {
                let allowed = "a port 0..=65535 other than 9001 (0 picks a free port)";
                r.invalid(&var, &v, allowed, &default);
                default
            }
        },
    }
}

fn read_filter(r: &mut Reader<'_>) -> Filter {
    let types = match r.setting("TYPES") {
        (_, None) => TypeSelection::default(),
        (var, Some(v)) => TypeSelection::parse(&v).unwrap_or_else(|why| {
            let allowed = format!(
                "a comma-separated list of platform, function, extension and platform event types such as platform.report ({why})"
            );
            r.invalid(&var, &v, &allowed, &"platform,function,extension");
            TypeSelection::default()
        }),
    };
    let min_level = match r.setting("MIN_LEVEL") {
        (_, None) => None,
        (_, Some(v)) if v.eq_ignore_ascii_case("none") => None,
        (var, Some(v)) => match LogLevel::parse(&v) {
            Some(l) => Some(l),
            None => {
                let allowed = format!("none, {}", LEVEL_NAMES.join(", "));
                r.invalid(&var, &v, &allowed, &"none");
                None
            }
        },
    };
    Filter { types, min_level }
}

fn read_pacing(r: &mut Reader<'_>) -> Pacing {
    let strategy = r.choice("FLUSH_STRATEGY", &STRATEGIES, Strategy::Adaptive);
    let freshness = match (r.setting(FRESHNESS_MS.name), r.setting("FLUSH_MAX_AGE_MS")) {
        ((_, None), (old, Some(_))) => {
            let retired = Int {
                name: "FLUSH_MAX_AGE_MS",
                ..FRESHNESS_MS
            };
            r.problems.push(Problem::warning(format!(
                "{old} is retired: it is read as {PREFIX}{} (the freshness budget); rename it",
                FRESHNESS_MS.name
            )));
            r.millis(&retired)
        }
        _ => r.millis(&FRESHNESS_MS),
    };
    let max_added = match (r.setting(MAX_ADDED_MS.name), r.setting("FLUSH_TIMEOUT_MS")) {
        ((_, None), (old, Some(_))) => {
            let retired = Int {
                name: "FLUSH_TIMEOUT_MS",
                ..MAX_ADDED_MS
            };
            r.problems.push(Problem::warning(format!(
                "{old} is retired: it is read as {PREFIX}{} (the most an invocation waits for \
                 the extension after its runtimeDone); rename it",
                MAX_ADDED_MS.name
            )));
            r.millis(&retired)
        }
        _ => r.millis(&MAX_ADDED_MS),
    };
    Pacing {
        strategy,
        freshness,
        flush_events: r.usize(&FLUSH_MAX_EVENTS),
        flush_bytes: r.usize(&FLUSH_MAX_BYTES),
        max_added,
    }
}

fn read_subscription(
    r: &mut Reader<'_>,
    filter: &Filter,
    pacing: &Pacing,
    lambda: &LambdaEnv,
) -> Subscription {
    let default_schema = if lambda.managed_instances {
        MANAGED_INSTANCES_SCHEMA_VERSION
    } else {
        DEFAULT_SCHEMA_VERSION
    };
    let schema_version = match r.setting("SCHEMA_VERSION") {
        (_, None) => default_schema.to_string(),
        (var, Some(v)) if lambda.managed_instances && v != MANAGED_INSTANCES_SCHEMA_VERSION => {
            r.problems.push(Problem::warning(format!(
                "{var}={v:?} cannot be used on Lambda Managed Instances, which require {MANAGED_INSTANCES_SCHEMA_VERSION}; using {MANAGED_INSTANCES_SCHEMA_VERSION}"
            )));
            MANAGED_INSTANCES_SCHEMA_VERSION.to_string()
        }
        (_, Some(v)) if SCHEMA_VERSIONS.contains(&v.as_str()) => v,
        (var, Some(v)) => {
            r.invalid(&var, &v, &SCHEMA_VERSIONS.join(", "), &default_schema);
            default_schema.to_string()
        }
    };
    let mut types = filter.types.categories();
    if !types.contains(&"platform") {
        types.insert(0, "platform");
    }
    let timeout_default = match pacing.strategy {
        Strategy::Background => BACKGROUND_BUFFERING_TIMEOUT_MS,
        Strategy::Adaptive | Strategy::End => BUFFERING_TIMEOUT_MS.default,
    };
    Subscription {
        schema_version,
        types,
        buffering: Buffering {
            max_items: r.int(&BUFFERING_MAX_ITEMS),
            max_bytes: r.int(&BUFFERING_MAX_BYTES),
            timeout_ms: r.int(&Int {
                default: timeout_default,
                ..BUFFERING_TIMEOUT_MS
            }),
        },
    }
}

fn read_spill(r: &mut Reader<'_>) -> SpillSettings {
    let mut max_bytes = r.int(&SPILL_MAX_BYTES);
    if max_bytes > 0 && max_bytes < SPILL_MIN_BYTES {
        let (var, v) = r.setting(SPILL_MAX_BYTES.name);
        let allowed = format!("0 (off) or {SPILL_MIN_BYTES}..={}", SPILL_MAX_BYTES.max);
        r.invalid(&var, &v.unwrap_or_default(), &allowed, &0);
        max_bytes = 0;
    }
    SpillSettings {
        max_bytes,
        dir: r
            .setting("SPILL_DIR")
            .1
            .map_or_else(|| PathBuf::from(DEFAULT_SPILL_DIR), PathBuf::from),
    }
}

fn read_records(r: &mut Reader<'_>) -> RecordSettings {
    let format = r.choice("RECORD_FORMAT", &RECORD_FORMATS, RecordFormat::Ndjson);
    let partition_key = r.choice("PARTITION_KEY", &PARTITION_KEYS, PartitionKeyMode::Random);
    let limits = Limits {
        max_records: r.usize(&MAX_RECORDS_PER_REQUEST),
        max_request_bytes: r.usize(&MAX_REQUEST_BYTES),
        max_record_bytes: r.usize(&MAX_RECORD_BYTES),
    };
    RecordSettings {
        format,
        target_bytes: r.usize(&RECORD_TARGET_BYTES).min(limits.max_record_bytes),
        partition_key,
        limits,
    }
}

fn read_metrics(r: &mut Reader<'_>) -> MetricsSettings {
    let enabled = r.boolean("METRICS", true);
    let namespace = match r.setting("METRICS_NAMESPACE") {
        (_, None) => DEFAULT_METRICS_NAMESPACE.to_string(),
        // CloudWatch: 1..=255 characters, no leading colon.
        (_, Some(v)) if v.len() <= 255 && !v.starts_with(':') && v.is_ascii() => v,
        (var, Some(v)) => {
            let allowed = "1 to 255 ASCII characters not starting with ':'";
            r.invalid(&var, &v, allowed, &DEFAULT_METRICS_NAMESPACE);
            DEFAULT_METRICS_NAMESPACE.to_string()
        }
    };
    let dimensions = match r.setting("METRICS_DIMENSIONS") {
        (_, None) => vec![Dimension::FunctionName],
        (_, Some(v)) if v.eq_ignore_ascii_case("none") => Vec::new(),
        (var, Some(v)) => {
            let parsed: Option<Vec<Dimension>> = v
                .split(',')
                .map(str::trim)
                .filter(|d| !d.is_empty())
                .map(|d| {
                    DIMENSIONS
                        .iter()
                        .find(|(n, _)| n.eq_ignore_ascii_case(d))
                        .map(|(_, x)| *x)
                })
                .collect();
            match parsed {
                Some(mut d) if !d.is_empty() => {
                    d.dedup();
                    d
                }
                _ => {
                    let names: Vec<&str> = DIMENSIONS.iter().map(|(n, _)| *n).collect();
                    let allowed = format!("none, or a comma list of {}", names.join(", "));
                    r.invalid(&var, &v, &allowed, &"FunctionName");
                    vec![Dimension::FunctionName]
                }
            }
        }
    };
    MetricsSettings {
        enabled,
        namespace,
        dimensions,
        interval: r.millis(&METRICS_INTERVAL_MS),
    }
}

#[cfg(test)]
mod tests;
