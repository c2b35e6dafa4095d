//! Which events the user wants in the stream: `KINESIS_TELEMETRY_TYPES` (categories or exact
//! event types) and `KINESIS_TELEMETRY_MIN_LEVEL` (function and extension log lines below a
//! level).
//!
//! Invariants:
//! - Filtering is decided here and only here, as pure functions of an event's `type` and
//!   `record`. The receiver counts a filtered event as `filtered`, never as lost.
//! - What pacing needs is subscribed whatever the user selected (the Telemetry API
//!   subscription names categories, see [`TypeSelection::categories`]); unwanted events are
//!   dropped at the extension.
//! - Events of a category Lambda may add in the future (a `type` that is neither `function`,
//!   `extension` nor `platform.*`) are always carried through.
//! - A log line whose level cannot be told is kept: a level filter must never hide a line it
//!   does not understand.

use serde_json::value::RawValue;

use crate::event;

/// Telemetry API categories, as a subscription names them.
pub const CATEGORIES: [&str; 3] = ["platform", "function", "extension"];

/// The `platform.*` event types of the Telemetry API schema (2022-12-13, 2025-01-29).
pub const PLATFORM_TYPES: [&str; 12] = [
    "platform.initStart",
    "platform.initRuntimeDone",
    "platform.initReport",
    "platform.start",
    "platform.runtimeDone",
    "platform.report",
    "platform.restoreStart",
    "platform.restoreRuntimeDone",
    "platform.restoreReport",
    "platform.extension",
    "platform.telemetrySubscription",
    "platform.logsDropped",
];

/// What `KINESIS_TELEMETRY_TYPES` selected: whole categories and single platform types.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypeSelection {
    /// Whole categories, indexed like [`CATEGORIES`].
    categories: [bool; 3],
    /// Single event types (`platform.report`, ...), kept in the order given.
    types: Vec<String>,
}

impl Default for TypeSelection {
    fn default() -> Self {
        TypeSelection {
            categories: [true; 3],
            types: Vec::new(),
        }
    }
}

fn category_of(event_type: &str) -> Option<usize> {
    if event_type.starts_with("platform.") {
        return Some(0);
    }
    CATEGORIES.iter().position(|c| *c == event_type)
}

impl TypeSelection {
    /// Parses a comma-separated list of categories and/or platform event types
    /// (`platform,function` or `platform.report,platform.start,function`). Names are case
    /// sensitive for types (`platform.runtimeDone`) and not for categories.
    pub fn parse(list: &str) -> Result<TypeSelection, String> {
        let mut s = TypeSelection {
            categories: [false; 3],
            types: Vec::new(),
        };
        for item in list.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            let lower = item.to_ascii_lowercase();
            if let Some(i) = CATEGORIES.iter().position(|c| *c == lower) {
                s.categories[i] = true;
            } else if let Some(t) = PLATFORM_TYPES.iter().find(|t| t.eq_ignore_ascii_case(item)) {
                if !s.types.iter().any(|x| x == t) {
                    s.types.push((*t).to_string());
                }
            } else {
                return Err(format!("unknown type {item:?}"));
            }
        }
        if s.categories.iter().all(|c| !c) && s.types.is_empty() {
            return Err("the list is empty".into());
        }
        Ok(s)
    }

    /// Whether an event of this `type` goes to the stream.
    pub fn wants(&self, event_type: &str) -> bool {
        match category_of(event_type) {
            None => true,
            Some(i) if self.categories[i] => true,
            Some(_) => self.types.iter().any(|t| t == event_type),
        }
    }

    /// Whether every event is wanted (no type filtering at all).
    pub fn is_all(&self) -> bool {
        self.categories.iter().all(|c| *c)
    }

    /// The categories the user asked for (wholly or through single types), in
    /// [`CATEGORIES`] order.
    pub fn categories(&self) -> Vec<&'static str> {
        let mut wanted = self.categories;
        for t in &self.types {
            if let Some(i) = category_of(t) {
                wanted[i] = true;
            }
        }
        CATEGORIES
            .iter()
            .zip(wanted)
            .filter_map(|(c, w)| w.then_some(*c))
            .collect()
    }

    /// The selection as the user would write it (for log lines).
    pub fn describe(&self) -> String {
        let mut parts: Vec<&str> = CATEGORIES
            .iter()
            .zip(self.categories)
            .filter_map(|(c, w)| w.then_some(*c))
            .collect();
        parts.extend(self.types.iter().map(String::as_str));
        parts.join(",")
    }
}

/// Log levels, lowest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
    Fatal,
}

/// Level names as `KINESIS_TELEMETRY_MIN_LEVEL` accepts them.
pub const LEVEL_NAMES: [&str; 6] = ["trace", "debug", "info", "warn", "error", "fatal"];

impl LogLevel {
    /// The name `KINESIS_TELEMETRY_MIN_LEVEL` uses ([`LEVEL_NAMES`], lowest first).
    pub fn name(self) -> &'static str {
        LEVEL_NAMES[self as usize]
    }

    /// A level as runtimes write it: `INFO`, `[WARN]`, `warning`, `CRITICAL`, ...
    pub fn parse(word: &str) -> Option<LogLevel> {
        let w = word.trim().trim_start_matches('[').trim_end_matches(']');
        Some(match w.to_ascii_uppercase().as_str() {
            "TRACE" => LogLevel::Trace,
            "DEBUG" => LogLevel::Debug,
            "INFO" => LogLevel::Info,
            "WARN" | "WARNING" => LogLevel::Warn,
            "ERROR" => LogLevel::Error,
            "FATAL" | "CRITICAL" => LogLevel::Fatal,
            _ => return None,
        })
    }
}

/// The level of a `function` or `extension` record: the JSON log format's `level` field, or
/// a level column of the Text format (tab-separated, within the first four columns: Node
/// writes `time\trequestId\tINFO\tmessage`, Python `[INFO]\ttime\trequestId\tmessage`).
/// `None` when the line carries no recognisable level.
pub fn level_of(record: &RawValue) -> Option<LogLevel> {
    if let [Some(level)] = event::members(record.get(), ["level"]) {
        return event::string_of(level).as_deref().and_then(LogLevel::parse);
    }
    let line = event::string_of(record)?;
    line.split('\t').take(4).find_map(LogLevel::parse)
}

/// The whole filter: event types, then the minimum level of log lines.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    pub types: TypeSelection,
    pub min_level: Option<LogLevel>,
}

impl Filter {
    /// Whether an event goes to the stream (pure). `record` is only looked at for log lines
    /// when a minimum level is set.
    pub fn keeps(&self, event_type: &str, record: Option<&RawValue>) -> bool {
        if !self.types.wants(event_type) {
            return false;
        }
        match (self.min_level, event_type, record) {
            (Some(min), "function" | "extension", Some(r)) => level_of(r).is_none_or(|l| l >= min),
            _ => true,
        }
    }

    /// Whether any event could be filtered out (so the receiver must look at types).
    pub fn is_noop(&self) -> bool {
        self.types.is_all() && self.min_level.is_none()
    }

    /// What is kept, as the settings say it (for the start-up line): the types, then the
    /// minimum level when there is one.
    pub fn describe(&self) -> String {
        match self.min_level {
            None => self.types.describe(),
            Some(l) => format!("{}, min level {}", self.types.describe(), l.name()),
        }
    }
}

#[cfg(test)]
mod tests;
