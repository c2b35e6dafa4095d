//! The settings the extension actually used, read back from its own log: what the report
//! shows and what the checking off relies on (the record format, the filter, whether order
//! per key is promised). Never the settings the sandbox asked for: a rejected value (a WARN
//! line, then the default) must not be reported as used.
//!
//! The extension says what it does in one line once subscribed (`src/lib.rs`):
//!
//! ```text
//! INFO subscribed to platform,function,extension telemetry on port 4243 (keeping
//! platform,function,extension, min level warn); delivering to telemetry-stream in us-east-1
//! as ndjson records, partition key random, enrichment on; pacing adaptive, freshness budget
//! 1000 ms
//! ```
//!
//! On Managed Instances the pacing part is `sending continuously` (no strategy applies).
//! Without that line (delivery off, init failed) the settings are unknown, and say so.

use serde::Serialize;

/// Log levels as `KINESIS_TELEMETRY_MIN_LEVEL` names them, lowest first.
pub const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "fatal"];

/// What the extension reported using.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RunSettings {
    /// `adaptive`, `end` or `background`; `None` when no strategy applies (Managed
    /// Instances: the extension sends continuously).
    pub strategy: Option<String>,
    /// The freshness budget: emit → in the stream.
    pub freshness_ms: u64,
    pub record_format: String,
    pub partition_key: String,
    /// `request_id`, `function` or `environment`: order per key is promised.
    pub fixed_partition_key: bool,
    pub enrich: bool,
    /// The event types kept (`KINESIS_TELEMETRY_TYPES`) ...
    pub keeping: String,
    /// ... and the least level of log lines kept (`KINESIS_TELEMETRY_MIN_LEVEL`).
    pub min_level: Option<String>,
    /// Settings the extension refused (its WARN lines), each with what it did instead.
    pub not_used: Vec<String>,
}

/// The text between `start` and the next `end` after it.
fn between<'a>(s: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let from = s.find(start)? + start.len();
    let rest = &s[from..];
    Some(&rest[..rest.find(end).unwrap_or(rest.len())])
}

impl RunSettings {
    /// Reads the settings from the extension's log; `None` when it never said (it did not
    /// subscribe).
    pub fn from_log(log: &[String]) -> Option<RunSettings> {
        let mut s = log.iter().find_map(|l| RunSettings::parse(l))?;
        s.not_used = log.iter().filter_map(|l| refused(l)).collect();
        Some(s)
    }

    /// Parses the start-up line; `None` for any other line.
    pub fn parse(line: &str) -> Option<RunSettings> {
        let body = between(line, "] INFO subscribed to ", "\n")?;
        let keeping = between(body, "(keeping ", ")")?;
        let (types, min_level) = match keeping.split_once(", min level ") {
            Some((t, l)) => (t, Some(l.to_owned())),
            None => (keeping, None),
        };
        let partition_key = between(body, ", partition key ", ",")?.to_owned();
        let fixed_partition_key = matches!(
            partition_key.as_str(),
            "request_id" | "function" | "environment"
        );
        Some(RunSettings {
            strategy: between(body, "; pacing ", ",").map(str::to_owned),
            freshness_ms: between(body, "freshness budget ", " ms")?.parse().ok()?,
            record_format: between(body, " as ", " records")?.to_owned(),
            partition_key,
            fixed_partition_key,
            enrich: between(body, ", enrichment ", ";")? == "on",
            keeping: types.to_owned(),
            min_level,
            not_used: Vec::new(),
        })
    }

    /// Whether the extension's filter keeps an event of type `kind` whose log level (for
    /// `function` and `extension` lines) is `level`: the same rules as `src/intake/filter.rs`
    /// (categories or single platform types; lines without a level are kept).
    pub fn keeps(&self, kind: &str, level: Option<&str>) -> bool {
        let category = if kind.starts_with("platform.") {
            "platform"
        } else {
            kind
        };
        let wanted = self.keeping.split(',').any(|t| t == category || t == kind);
        let known = ["platform", "function", "extension"].contains(&category);
        if known && !wanted {
            return false;
        }
        let rank = |l: &str| LEVELS.iter().position(|x| x.eq_ignore_ascii_case(l));
        match (&self.min_level, category, level.and_then(rank)) {
            (Some(min), "function" | "extension", Some(l)) => rank(min).is_none_or(|m| l >= m),
            _ => true,
        }
    }

    /// The filter in words, when it leaves anything out.
    pub fn filter(&self) -> Option<String> {
        let all = self.keeping == "platform,function,extension";
        match (&self.min_level, all) {
            (None, true) => None,
            (None, false) => Some(format!("types {}", self.keeping)),
            (Some(l), true) => Some(format!("min level {l}")),
            (Some(l), false) => Some(format!("types {}, min level {l}", self.keeping)),
        }
    }
}

/// A setting the extension refused, from its WARN line: `NAME="value" (what it did instead)`.
fn refused(line: &str) -> Option<String> {
    let w = between(line, "] WARN ", "\n")?;
    if let Some((setting, rest)) = w.split_once(" is invalid: ") {
        let instead = between(rest, "; using ", "\n").unwrap_or("its default");
        return Some(format!("{setting} (invalid: {instead} used)"));
    }
    let (name, _) = w.split_once(" is not a setting of this extension")?;
    Some(format!("{name} (not a setting of this extension)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINE: &str = "[kinesis-telemetry] INFO subscribed to platform,function,extension telemetry on port 38843 (keeping platform,function,extension, min level warn); delivering to telemetry-stream in us-east-1 as ndjson records, partition key random, enrichment on; pacing adaptive, freshness budget 1000 ms";

    #[test]
    fn the_start_up_line_gives_every_setting_in_force() {
        let s = RunSettings::parse(LINE).unwrap();
        assert_eq!(s.strategy.as_deref(), Some("adaptive"));
        assert_eq!(s.freshness_ms, 1000);
        assert_eq!(
            (s.record_format.as_str(), s.partition_key.as_str()),
            ("ndjson", "random")
        );
        assert!(s.enrich && !s.fixed_partition_key);
        assert_eq!(s.keeping, "platform,function,extension");
        assert_eq!(s.min_level.as_deref(), Some("warn"));
        assert_eq!(s.filter().as_deref(), Some("min level warn"));

        let managed = "[kinesis-telemetry] INFO subscribed to platform,function telemetry on port 1 (keeping function,platform.report); delivering to arn:aws:kinesis:eu-west-1:123456789012:stream/s in eu-west-1 as kpl records, partition key environment, enrichment off; sending continuously, freshness budget 250 ms";
        let s = RunSettings::parse(managed).unwrap();
        assert_eq!(s.strategy, None, "no strategy on Managed Instances");
        assert_eq!((s.freshness_ms, s.record_format.as_str()), (250, "kpl"));
        assert!(s.fixed_partition_key && !s.enrich);
        assert_eq!(s.min_level, None);
        assert_eq!(
            s.filter().as_deref(),
            Some("types function,platform.report")
        );
        assert_eq!(
            RunSettings::parse("[kinesis-telemetry] INFO pacing: holding"),
            None
        );
    }

    #[test]
    fn refused_settings_are_read_from_the_warn_lines() {
        let log = [
            "[kinesis-telemetry] WARN KINESIS_TELEMETRY_FLUSH_STRATEGY=\"fast\" is invalid: allowed adaptive, end, background; using the default adaptive".to_owned(),
            "[kinesis-telemetry] WARN KINESIS_TELEMETRY_FLUSH_STRATEG is not a setting of this extension and is ignored; did you mean KINESIS_TELEMETRY_FLUSH_STRATEGY?".to_owned(),
            LINE.replace("min level warn", "min level info"),
        ];
        let s = RunSettings::from_log(&log).unwrap();
        assert_eq!(
            s.not_used,
            [
                "KINESIS_TELEMETRY_FLUSH_STRATEGY=\"fast\" (invalid: the default adaptive used)",
                "KINESIS_TELEMETRY_FLUSH_STRATEG (not a setting of this extension)",
            ]
        );
        assert_eq!(RunSettings::from_log(&log[..2]), None, "never subscribed");
    }

    #[test]
    fn the_filter_model_follows_the_extensions_rules() {
        let warn = RunSettings::parse(LINE).unwrap();
        let types = RunSettings {
            keeping: "function,platform.report".into(),
            min_level: None,
            ..warn.clone()
        };
        // (settings, type, level, kept)
        let cases: &[(&RunSettings, &str, Option<&str>, bool)] = &[
            (&warn, "function", Some("INFO"), false),
            (&warn, "function", Some("DEBUG"), false),
            (&warn, "function", Some("WARN"), true),
            (&warn, "function", Some("ERROR"), true),
            (&warn, "function", None, true),
            (&warn, "extension", Some("info"), false),
            (&warn, "platform.report", None, true),
            (&types, "platform.report", None, true),
            (&types, "platform.start", None, false),
            (&types, "function", Some("DEBUG"), true),
            (&types, "extension", None, false),
            (&types, "somethingNew", None, true),
        ];
        for (s, kind, level, kept) in cases {
            assert_eq!(s.keeps(kind, *level), *kept, "{kind} {level:?} {s:?}");
        }
    }
}
