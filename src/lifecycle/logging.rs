//! The extension's log: one line per event that matters, on stderr (the function's log
//! group), prefixed `[kinesis-telemetry]`.
//!
//! `KINESIS_TELEMETRY_LOG_LEVEL` sets the level of this extension's lines only: dependencies
//! never log, so no request header (and no credential) can reach the log through them. An
//! unknown level falls back to `info` with a warning instead of silencing the extension.

use std::io::Write;

use log::warn;

const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];

/// Sets up the logger from the variable `var` (`KINESIS_TELEMETRY_LOG_LEVEL`: it is read
/// before the settings, so that their warnings are logged).
pub fn init(var: &str) {
    let raw = std::env::var(var).unwrap_or_default();
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
            "{var}={raw:?} is invalid: allowed {}; using the default info",
            LEVELS.join(", ")
        );
    }
}
