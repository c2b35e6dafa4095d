//! Settings, read once at start from the environment into a typed [`Config`].
//!
//! Every extension setting shares the prefix `KINESIS_TELEMETRY_` because the function's own
//! variables are shared with the extension. Each setting has a documented default and a
//! validated range; the README's settings table lists the same names, defaults and ranges.
//!
//! Invariants:
//! - Parsing never fails as a whole. An invalid value gives one [`Problem`] naming the
//!   variable, the value it had and what is allowed, and the default is used instead, so a
//!   typo in a tuning knob never stops telemetry.
//! - What delivery cannot work without (a stream, a region, credentials) is reported as a
//!   [`Problem`] with `disables_delivery = true`; the extension then stays registered and
//!   keeps serving `/event/next` so the function runs normally, but ships nothing.
//! - Secrets are never part of a [`Problem`] message or of `Debug` output.

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::batch::{self, Limits};
use crate::kinesis::StreamTarget;

/// The prefix every extension setting shares.
pub const PREFIX: &str = "KINESIS_TELEMETRY_";

/// Telemetry API buffering limits (Lambda developer guide, "Telemetry API", buffering).
pub mod buffering {
    pub const MAX_ITEMS_MIN: u64 = 1_000;
    pub const MAX_ITEMS_MAX: u64 = 10_000;
    pub const MAX_ITEMS_DEFAULT: u64 = 10_000;
    pub const MAX_BYTES_MIN: u64 = 262_144;
    pub const MAX_BYTES_MAX: u64 = 1_048_576;
    pub const MAX_BYTES_DEFAULT: u64 = 262_144;
    pub const TIMEOUT_MS_MIN: u64 = 25;
    pub const TIMEOUT_MS_MAX: u64 = 30_000;
    /// Lambda's own default is 1,000 ms. The sandbox freezes right after each invocation,
    /// so a long buffering timeout mostly delays the last batch at SHUTDOWN, when time is
    /// shortest; 100 ms gets it there early at the cost of a few more local POSTs.
    pub const TIMEOUT_MS_DEFAULT: u64 = 100;
}

/// Port 9001 is reserved by the Lambda Runtime API.
pub const RESERVED_PORT: u16 = 9001;
/// Default telemetry listener port.
pub const DEFAULT_PORT: u16 = 4243;

/// Schema versions the Telemetry API accepts.
pub const SCHEMA_VERSIONS: [&str; 3] = ["2022-07-01", "2022-12-13", "2025-01-29"];
pub const DEFAULT_SCHEMA_VERSION: &str = "2022-12-13";
/// Telemetry stream types a subscription may name.
pub const TELEMETRY_TYPES: [&str; 3] = ["platform", "function", "extension"];

/// Telemetry API subscription settings, validated against the documented ranges.
#[derive(Debug, Clone, PartialEq)]
pub struct Subscription {
    pub schema_version: String,
    pub types: Vec<String>,
    pub max_items: u64,
    pub max_bytes: u64,
    pub timeout_ms: u64,
}

/// When buffered telemetry is due to be sent during an invocation.
#[derive(Debug, Clone, PartialEq)]
pub struct FlushPolicy {
    /// Due once this many events are buffered.
    pub max_events: usize,
    /// Due once this many bytes of events are buffered.
    pub max_bytes: usize,
    /// Due once the oldest buffered event is this old.
    pub max_age: Duration,
    /// Longest time one invocation's flush may take before the extension calls `/event/next`.
    pub invoke_budget: Duration,
}

/// The memory cap on everything received but not yet delivered.
#[derive(Debug, Clone, PartialEq)]
pub struct BufferCap {
    pub max_events: usize,
    pub max_bytes: usize,
}

/// How each record's partition key is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartitionKeyMode {
    /// A random key per record: spreads evenly over all shards.
    Random,
    /// The invocation's request id: one invocation's records land on one shard, in order.
    RequestId,
}

/// Transport and retry settings for Kinesis.
#[derive(Debug, Clone, PartialEq)]
pub struct Http {
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    pub ca_file: Option<PathBuf>,
    pub max_attempts: u32,
    pub backoff_base: Duration,
    pub backoff_max: Duration,
}

/// AWS credentials from the function's environment. `Debug` never shows the secrets.
#[derive(Clone, PartialEq)]
pub struct Credentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"** redacted **")
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "** redacted **"),
            )
            .finish()
    }
}

/// Where and how to deliver. Present only when delivery can work.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    pub stream: StreamTarget,
    pub region: String,
    pub endpoint: String,
    pub credentials: Credentials,
}

/// Every setting, parsed and validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// `None` when something delivery needs is missing (see the problems list).
    pub delivery: Option<Delivery>,
    pub bind_address: IpAddr,
    pub port: u16,
    pub subscription: Subscription,
    pub flush: FlushPolicy,
    pub buffer: BufferCap,
    pub limits: Limits,
    pub partition_key: PartitionKeyMode,
    pub http: Http,
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

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// Reads settings through `get` (the process environment in production, a map in tests).
struct Reader<'a> {
    get: &'a dyn Fn(&str) -> Option<String>,
    problems: Vec<Problem>,
}

impl Reader<'_> {
    /// The variable's value, trimmed; `None` when unset or blank.
    fn raw(&self, var: &str) -> Option<String> {
        (self.get)(var)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    }

    fn invalid(&mut self, var: &str, value: &str, allowed: &str, default: &dyn fmt::Display) {
        self.problems.push(Problem {
            message: format!(
                "{var}={value:?} is invalid: allowed {allowed}; using the default {default}"
            ),
            disables_delivery: false,
        });
    }

    fn missing(&mut self, message: String) {
        self.problems.push(Problem {
            message,
            disables_delivery: true,
        });
    }

    /// An integer in `min..=max` (underscores allowed as digit separators).
    fn int(&mut self, name: &str, default: u64, min: u64, max: u64) -> u64 {
        let var = format!("{PREFIX}{name}");
        let Some(value) = self.raw(&var) else {
            return default;
        };
        match value.replace('_', "").parse::<u64>() {
            Ok(n) if (min..=max).contains(&n) => n,
            _ => {
                self.invalid(&var, &value, &format!("an integer {min}..={max}"), &default);
                default
            }
        }
    }

    /// Like [`Self::int`], but a value above `max` is clamped to it with a warning instead of
    /// being refused: the user asked for "as much as possible".
    fn int_clamped(&mut self, name: &str, default: u64, min: u64, max: u64) -> u64 {
        let var = format!("{PREFIX}{name}");
        let Some(value) = self.raw(&var) else {
            return default;
        };
        match value.replace('_', "").parse::<u64>() {
            Ok(n) if n > max => {
                self.problems.push(Problem {
                    message: format!(
                        "{var}={value:?} is above the Kinesis maximum {max}; using {max}"
                    ),
                    disables_delivery: false,
                });
                max
            }
            Ok(n) if n >= min => n,
            _ => {
                self.invalid(&var, &value, &format!("an integer {min}..={max}"), &default);
                default
            }
        }
    }

    fn millis(&mut self, name: &str, default: u64, min: u64, max: u64) -> Duration {
        Duration::from_millis(self.int(name, default, min, max))
    }

    fn boolean(&mut self, name: &str, default: bool) -> bool {
        let var = format!("{PREFIX}{name}");
        let Some(value) = self.raw(&var) else {
            return default;
        };
        match value.to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" | "on" => true,
            "0" | "false" | "no" | "off" => false,
            _ => {
                self.invalid(&var, &value, "true or false", &default);
                default
            }
        }
    }
}

impl Config {
    /// Reads the settings from the process environment.
    pub fn from_env() -> (Config, Vec<Problem>) {
        Config::from_lookup(&|name| std::env::var(name).ok())
    }

    /// Reads the settings through `get`; returns the config and everything wrong with it.
    pub fn from_lookup(get: &dyn Fn(&str) -> Option<String>) -> (Config, Vec<Problem>) {
        let mut r = Reader {
            get,
            problems: Vec::new(),
        };

        let port = match r.raw(&format!("{PREFIX}PORT")) {
            None => DEFAULT_PORT,
            Some(v) => match v.parse::<u16>() {
                Ok(p) if p != RESERVED_PORT => p,
                _ => {
                    r.invalid(
                        "KINESIS_TELEMETRY_PORT",
                        &v,
                        "a port 0..=65535 other than 9001 (0 picks a free port)",
                        &DEFAULT_PORT,
                    );
                    DEFAULT_PORT
                }
            },
        };
        let default_bind = IpAddr::from([0, 0, 0, 0]);
        let bind_address = match r.raw(&format!("{PREFIX}BIND_ADDRESS")) {
            None => default_bind,
            Some(v) => v.parse().unwrap_or_else(|_| {
                r.invalid(
                    "KINESIS_TELEMETRY_BIND_ADDRESS",
                    &v,
                    "an IPv4 or IPv6 address such as 0.0.0.0 or 127.0.0.1",
                    &default_bind,
                );
                default_bind
            }),
        };

        let subscription = read_subscription(&mut r);

        let buffer = BufferCap {
            max_events: r.int("BUFFER_MAX_EVENTS", 100_000, 1_000, 10_000_000) as usize,
            max_bytes: r.int("BUFFER_MAX_BYTES", 8 << 20, 1 << 20, 1 << 30) as usize,
        };
        let flush = FlushPolicy {
            max_events: r.int("FLUSH_MAX_EVENTS", 500, 1, 10_000_000) as usize,
            max_bytes: r.int("FLUSH_MAX_BYTES", 1 << 20, 1, 1 << 30) as usize,
            max_age: r.millis("FLUSH_MAX_AGE_MS", 5_000, 0, 3_600_000),
            invoke_budget: r.millis("FLUSH_TIMEOUT_MS", 3_000, 10, 900_000),
        };
        let limits = Limits {
            max_records: r.int_clamped(
                "MAX_RECORDS_PER_REQUEST",
                batch::MAX_RECORDS_PER_REQUEST as u64,
                1,
                batch::MAX_RECORDS_PER_REQUEST as u64,
            ) as usize,
            max_request_bytes: r.int_clamped(
                "MAX_REQUEST_BYTES",
                batch::DEFAULT_MAX_REQUEST_BYTES as u64,
                1024,
                batch::HARD_MAX_REQUEST_BYTES as u64,
            ) as usize,
            max_record_bytes: r.int_clamped(
                "MAX_RECORD_BYTES",
                batch::DEFAULT_MAX_RECORD_BYTES as u64,
                1024,
                batch::HARD_MAX_RECORD_BYTES as u64,
            ) as usize,
        };
        let partition_key = match r.raw(&format!("{PREFIX}PARTITION_KEY")) {
            None => PartitionKeyMode::Random,
            Some(v) => match v.to_ascii_lowercase().replace('-', "_").as_str() {
                "random" => PartitionKeyMode::Random,
                "request_id" => PartitionKeyMode::RequestId,
                _ => {
                    r.invalid(
                        "KINESIS_TELEMETRY_PARTITION_KEY",
                        &v,
                        "random or request_id",
                        &"random",
                    );
                    PartitionKeyMode::Random
                }
            },
        };
        let http = Http {
            connect_timeout: r.millis("CONNECT_TIMEOUT_MS", 1_000, 10, 60_000),
            request_timeout: r.millis("REQUEST_TIMEOUT_MS", 2_000, 10, 300_000),
            ca_file: r.raw(&format!("{PREFIX}CA_FILE")).map(PathBuf::from),
            max_attempts: r.int("MAX_ATTEMPTS", 4, 1, 100) as u32,
            backoff_base: r.millis("BACKOFF_BASE_MS", 25, 1, 60_000),
            backoff_max: r.millis("BACKOFF_MAX_MS", 1_000, 1, 300_000),
        };
        let shutdown_grace = r.millis("SHUTDOWN_GRACE_MS", 1_000, 0, 1_500);
        let fail_on_error = r.boolean("FAIL_ON_ERROR", false);
        let delivery = read_delivery(&mut r);

        let config = Config {
            delivery,
            bind_address,
            port,
            subscription,
            flush,
            buffer,
            limits,
            partition_key,
            http,
            shutdown_grace,
            fail_on_error,
        };
        (config, r.problems)
    }

    /// Largest telemetry POST body the listener accepts: Lambda sends up to about
    /// `2 * maxBytes` plus metadata in one POST; a megabyte of margin covers the metadata.
    pub fn max_body_bytes(&self) -> usize {
        2 * self.subscription.max_bytes as usize + (1 << 20)
    }
}

fn read_subscription(r: &mut Reader<'_>) -> Subscription {
    use buffering::*;
    let schema_version = match r.raw(&format!("{PREFIX}SCHEMA_VERSION")) {
        None => DEFAULT_SCHEMA_VERSION.to_string(),
        Some(v) if SCHEMA_VERSIONS.contains(&v.as_str()) => v,
        Some(v) => {
            r.invalid(
                "KINESIS_TELEMETRY_SCHEMA_VERSION",
                &v,
                &SCHEMA_VERSIONS.join(", "),
                &DEFAULT_SCHEMA_VERSION,
            );
            DEFAULT_SCHEMA_VERSION.to_string()
        }
    };
    let default_types: Vec<String> = TELEMETRY_TYPES.iter().map(|s| s.to_string()).collect();
    let types = match r.raw(&format!("{PREFIX}TYPES")) {
        None => default_types,
        Some(v) => {
            let mut types: Vec<String> = Vec::new();
            let mut ok = true;
            for t in v.split(',').map(|t| t.trim().to_ascii_lowercase()) {
                if !TELEMETRY_TYPES.contains(&t.as_str()) {
                    ok = false;
                } else if !types.contains(&t) {
                    types.push(t);
                }
            }
            if ok && !types.is_empty() {
                types
            } else {
                r.invalid(
                    "KINESIS_TELEMETRY_TYPES",
                    &v,
                    "a comma-separated list of platform, function, extension",
                    &"platform,function,extension",
                );
                default_types
            }
        }
    };
    Subscription {
        schema_version,
        types,
        max_items: r.int(
            "BUFFERING_MAX_ITEMS",
            MAX_ITEMS_DEFAULT,
            MAX_ITEMS_MIN,
            MAX_ITEMS_MAX,
        ),
        max_bytes: r.int(
            "BUFFERING_MAX_BYTES",
            MAX_BYTES_DEFAULT,
            MAX_BYTES_MIN,
            MAX_BYTES_MAX,
        ),
        timeout_ms: r.int(
            "BUFFERING_TIMEOUT_MS",
            TIMEOUT_MS_DEFAULT,
            TIMEOUT_MS_MIN,
            TIMEOUT_MS_MAX,
        ),
    }
}

/// Stream, region, endpoint and credentials; `None` (with a problem) when delivery can't work.
fn read_delivery(r: &mut Reader<'_>) -> Option<Delivery> {
    let stream_var = format!("{PREFIX}STREAM");
    let stream = match r
        .raw(&stream_var)
        .map(|v| (stream_var.as_str(), v))
        .or_else(|| {
            r.raw("KINESIS_STREAM_NAME")
                .map(|v| ("KINESIS_STREAM_NAME", v))
        }) {
        None => {
            r.missing(format!(
                "no stream set: set {stream_var} to the Kinesis stream's name or ARN; telemetry is not delivered"
            ));
            None
        }
        Some((var, v)) => match StreamTarget::parse(&v) {
            Ok(s) => Some(s),
            Err(why) => {
                r.missing(format!(
                    "{var}={v:?} is invalid: {why}; telemetry is not delivered"
                ));
                None
            }
        },
    };

    // A stream ARN names its region; it wins over AWS_REGION so cross-region streams work.
    let region = stream
        .as_ref()
        .and_then(|s| s.region().map(str::to_string))
        .or_else(|| r.raw("AWS_REGION"))
        .or_else(|| r.raw("AWS_DEFAULT_REGION"));
    if region.is_none() {
        r.missing("AWS_REGION is not set (and the stream is not an ARN): the Kinesis region is unknown; telemetry is not delivered".to_string());
    }

    let endpoint = [
        "KINESIS_TELEMETRY_ENDPOINT",
        "AWS_ENDPOINT_URL_KINESIS",
        "AWS_ENDPOINT_URL",
    ]
    .iter()
    .find_map(|var| r.raw(var));
    // Checked (scheme, host, no query) where it is used: KinesisClient::new.
    let endpoint = match (endpoint, &region) {
        (Some(v), _) => Some(v.trim_end_matches('/').to_string()),
        (None, Some(region)) => Some(crate::kinesis::endpoint_for_region(region)),
        (None, None) => None,
    };

    let key = r.raw("AWS_ACCESS_KEY_ID");
    let secret = r.raw("AWS_SECRET_ACCESS_KEY");
    let credentials = match (key, secret) {
        (Some(access_key_id), Some(secret_access_key)) => Some(Credentials {
            access_key_id,
            secret_access_key,
            session_token: r.raw("AWS_SESSION_TOKEN"),
        }),
        (key, secret) => {
            let mut missing = Vec::new();
            if key.is_none() {
                missing.push("AWS_ACCESS_KEY_ID");
            }
            if secret.is_none() {
                missing.push("AWS_SECRET_ACCESS_KEY");
            }
            r.missing(format!(
                "credentials missing: {} not set; telemetry is not delivered",
                missing.join(" and ")
            ));
            None
        }
    };

    Some(Delivery {
        stream: stream?,
        region: region?,
        endpoint: endpoint?,
        credentials: credentials?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn parse(vars: &[(&str, &str)]) -> (Config, Vec<Problem>) {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(&move |k| map.get(k).cloned())
    }

    const BASE: [(&str, &str); 4] = [
        ("KINESIS_TELEMETRY_STREAM", "telemetry"),
        ("AWS_REGION", "eu-west-1"),
        ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
        (
            "AWS_SECRET_ACCESS_KEY",
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        ),
    ];

    fn with(extra: &[(&'static str, &'static str)]) -> (Config, Vec<Problem>) {
        let mut v = BASE.to_vec();
        v.extend_from_slice(extra);
        parse(&v)
    }

    #[test]
    fn defaults_are_valid_and_complete() {
        let (c, problems) = with(&[]);
        assert!(problems.is_empty(), "{problems:?}");
        let d = c.delivery.expect("delivery configured");
        assert_eq!(d.stream, StreamTarget::Name("telemetry".into()));
        assert_eq!(d.endpoint, "https://kinesis.eu-west-1.amazonaws.com");
        assert_eq!(c.port, 4243);
        assert_eq!(c.subscription.schema_version, "2022-12-13");
        assert_eq!(c.subscription.types, ["platform", "function", "extension"]);
        assert_eq!(c.limits, Limits::default());
        assert!(!c.fail_on_error);
    }

    #[test]
    fn node_sample_variable_is_a_fallback() {
        let (c, problems) = parse(&[
            ("KINESIS_STREAM_NAME", "legacy"),
            ("AWS_REGION", "us-east-1"),
            ("AWS_ACCESS_KEY_ID", "A"),
            ("AWS_SECRET_ACCESS_KEY", "S"),
        ]);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(
            c.delivery.unwrap().stream,
            StreamTarget::Name("legacy".into())
        );
    }

    #[test]
    fn arn_region_wins_and_china_endpoint() {
        let (c, problems) = with(&[(
            "KINESIS_TELEMETRY_STREAM",
            "arn:aws-cn:kinesis:cn-north-1:123456789012:stream/logs",
        )]);
        assert!(problems.is_empty(), "{problems:?}");
        let d = c.delivery.unwrap();
        assert_eq!(d.region, "cn-north-1");
        assert_eq!(d.endpoint, "https://kinesis.cn-north-1.amazonaws.com.cn");
    }

    #[test]
    fn endpoint_precedence() {
        let (c, _) = with(&[
            ("AWS_ENDPOINT_URL", "http://general:1"),
            ("AWS_ENDPOINT_URL_KINESIS", "http://kinesis-specific:2/"),
        ]);
        assert_eq!(c.delivery.unwrap().endpoint, "http://kinesis-specific:2");
        let (c, _) = with(&[
            ("AWS_ENDPOINT_URL_KINESIS", "http://kinesis-specific:2"),
            ("KINESIS_TELEMETRY_ENDPOINT", "https://mine:3"),
        ]);
        assert_eq!(c.delivery.unwrap().endpoint, "https://mine:3");
    }

    #[test]
    fn invalid_values_name_the_variable_and_fall_back() {
        let (c, problems) = with(&[
            ("KINESIS_TELEMETRY_PORT", "9001"),
            ("KINESIS_TELEMETRY_BUFFERING_TIMEOUT_MS", "5"),
            ("KINESIS_TELEMETRY_TYPES", "platform,bogus"),
            ("KINESIS_TELEMETRY_FAIL_ON_ERROR", "maybe"),
        ]);
        assert_eq!(problems.len(), 4, "{problems:?}");
        let about = |var: &str| {
            problems
                .iter()
                .find(|p| p.message.starts_with(var))
                .unwrap_or_else(|| panic!("no problem names {var}: {problems:?}"))
                .message
                .clone()
        };
        assert!(about("KINESIS_TELEMETRY_PORT=\"9001\"").contains("other than 9001"));
        assert!(about("KINESIS_TELEMETRY_BUFFERING_TIMEOUT_MS=\"5\"").contains("25..=30000"));
        assert!(about("KINESIS_TELEMETRY_TYPES").contains("platform, function, extension"));
        assert!(about("KINESIS_TELEMETRY_FAIL_ON_ERROR").contains("true or false"));
        assert!(problems.iter().all(|p| !p.disables_delivery));
        assert_eq!(c.port, DEFAULT_PORT);
        assert_eq!(c.subscription.timeout_ms, buffering::TIMEOUT_MS_DEFAULT);
        assert!(c.delivery.is_some());
    }

    #[test]
    fn kinesis_limits_are_clamped_not_refused() {
        let (c, problems) = with(&[
            ("KINESIS_TELEMETRY_MAX_RECORDS_PER_REQUEST", "501"),
            ("KINESIS_TELEMETRY_MAX_REQUEST_BYTES", "99999999999"),
        ]);
        assert_eq!(c.limits.max_records, 500);
        assert_eq!(c.limits.max_request_bytes, batch::HARD_MAX_REQUEST_BYTES);
        assert_eq!(problems.len(), 2);
    }

    #[test]
    fn missing_essentials_disable_delivery_with_named_causes() {
        let (c, problems) = parse(&[("AWS_REGION", "us-east-1")]);
        assert!(c.delivery.is_none());
        let text: Vec<_> = problems.iter().map(|p| p.message.as_str()).collect();
        assert!(text[0].contains("KINESIS_TELEMETRY_STREAM"), "{text:?}");
        assert!(text[1].contains("AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"));
        assert!(problems.iter().all(|p| p.disables_delivery));
    }

    #[test]
    fn secrets_never_appear_in_debug_or_problems() {
        let (c, problems) = with(&[
            ("AWS_SESSION_TOKEN", "TOKENSECRET"),
            ("KINESIS_TELEMETRY_PORT", "x"),
        ]);
        let dump = format!("{c:?} {problems:?}");
        assert!(!dump.contains("EXAMPLEKEY"));
        assert!(!dump.contains("TOKENSECRET"));
    }
}
