//! Reading one setting: the registry of every `KINESIS_TELEMETRY_*` variable with its
//! documented default, the typed readers that validate a value against it, and the warning
//! for a variable nobody reads (a typo).
//!
//! Invariants: a setting's name, default and range are written once, in [`KNOWN`] or in an
//! [`Int`] constant it points to; parsing, the unknown-variable check and the docs test all
//! read them from there. A reader never fails: an invalid value becomes a [`Problem`] naming
//! the variable, the value and what is allowed, and the default is used.

use std::fmt;
use std::time::Duration;

use super::{Problem, PREFIX};

/// What happens to an integer above its maximum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AboveMax {
    /// Refused like any invalid value: the default is used.
    Refuse,
    /// Clamped to the maximum with a warning (for "as much as the API allows" limits).
    Clamp,
}

/// An integer setting: name without the prefix, documented default and allowed range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Int {
    pub name: &'static str,
    pub default: u64,
    pub min: u64,
    pub max: u64,
    pub above_max: AboveMax,
}

impl Int {
    pub const fn new(name: &'static str, default: u64, min: u64, max: u64) -> Int {
        Int {
            name,
            default,
            min,
            max,
            above_max: AboveMax::Refuse,
        }
    }

    pub const fn clamped(self) -> Int {
        Int {
            above_max: AboveMax::Clamp,
            ..self
        }
    }
}

/// How a setting's default is documented (read by the docs check).
#[derive(Debug, Clone, Copy)]
#[cfg_attr(not(test), allow(dead_code))]
pub enum Documented {
    Int(&'static Int),
    /// A default that is not a plain integer, as the settings table shows it.
    Text(&'static str),
}

/// One known variable (name without [`PREFIX`]) and its documented default.
#[derive(Debug, Clone, Copy)]
pub struct Known {
    pub name: &'static str,
    #[cfg_attr(not(test), allow(dead_code))]
    pub default: Documented,
}

impl Known {
    pub const fn int(i: &'static Int) -> Known {
        Known {
            name: i.name,
            default: Documented::Int(i),
        }
    }

    pub const fn text(name: &'static str, default: &'static str) -> Known {
        Known {
            name,
            default: Documented::Text(default),
        }
    }

    /// The default as the settings table writes it.
    #[cfg(test)]
    pub fn default_text(&self) -> String {
        match self.default {
            Documented::Int(i) => i.default.to_string(),
            Documented::Text(t) => t.to_string(),
        }
    }
}

/// Reads settings through `get` (the process environment in production, a map in tests).
pub struct Reader<'a> {
    pub get: &'a dyn Fn(&str) -> Option<String>,
    pub problems: Vec<Problem>,
}

impl Reader<'_> {
    /// The variable's value, trimmed; `None` when unset or blank.
    pub fn raw(&self, var: &str) -> Option<String> {
        (self.get)(var)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    }

    /// The value of `KINESIS_TELEMETRY_<name>` and the full variable name.
    pub fn setting(&self, name: &str) -> (String, Option<String>) {
        let var = format!("{PREFIX}{name}");
        let value = self.raw(&var);
        (var, value)
    }

    pub fn invalid(&mut self, var: &str, value: &str, allowed: &str, default: &dyn fmt::Display) {
        self.problems.push(Problem::warning(format!(
            "{var}={value:?} is invalid: allowed {allowed}; using the default {default}"
        )));
    }

    /// An integer in the setting's range (underscores allowed as digit separators).
    pub fn int(&mut self, s: &Int) -> u64 {
        let (var, Some(value)) = self.setting(s.name) else {
            return s.default;
        };
        match value.replace('_', "").parse::<u64>() {
            Ok(n) if n > s.max && s.above_max == AboveMax::Clamp => {
                self.problems.push(Problem::warning(format!(
                    "{var}={value:?} is above the Kinesis maximum {}; using {}",
                    s.max, s.max
                )));
                s.max
            }
            Ok(n) if (s.min..=s.max).contains(&n) => n,
            _ => {
                let allowed = format!("an integer {}..={}", s.min, s.max);
                self.invalid(&var, &value, &allowed, &s.default);
                s.default
            }
        }
    }

    pub fn usize(&mut self, s: &Int) -> usize {
        usize::try_from(self.int(s)).unwrap_or(usize::MAX)
    }

    pub fn millis(&mut self, s: &Int) -> Duration {
        Duration::from_millis(self.int(s))
    }

    pub fn boolean(&mut self, name: &str, default: bool) -> bool {
        let (var, Some(value)) = self.setting(name) else {
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

    /// One of a fixed list of words (case-insensitive, `-` and `_` alike).
    pub fn choice<T: Copy>(&mut self, name: &str, options: &[(&str, T)], default: T) -> T {
        let (var, Some(value)) = self.setting(name) else {
            return default;
        };
        let wanted = value.to_ascii_lowercase().replace('-', "_");
        if let Some((_, v)) = options.iter().find(|(n, _)| *n == wanted) {
            return *v;
        }
        let names: Vec<&str> = options.iter().map(|(n, _)| *n).collect();
        let default_name = options.first().map_or("", |(n, _)| *n);
        self.invalid(&var, &value, &names.join(", "), &default_name);
        default
    }
}

/// A warning for each `KINESIS_TELEMETRY_*` variable in `names` that no setting reads, naming
/// the closest known one.
pub fn unknown_variables(names: &[String], known: &[Known]) -> Vec<Problem> {
    let mut out = Vec::new();
    for full in names {
        let Some(name) = full.strip_prefix(PREFIX) else {
            continue;
        };
        if known.iter().any(|k| k.name == name) {
            continue;
        }
        let closest = known
            .iter()
            .min_by_key(|k| edit_distance(k.name, name))
            .map(|k| format!("; did you mean {PREFIX}{}?", k.name))
            .unwrap_or_default();
        out.push(Problem::warning(format!(
            "{full} is not a setting of this extension and is ignored{closest}"
        )));
    }
    out
}

/// Levenshtein distance (small strings only: setting names).
pub fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let subst = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = subst.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distances() {
        for (a, b, d) in [
            ("TYPES", "TYPEZ", 1),
            ("TYPES", "TYPES", 0),
            ("", "ABC", 3),
            ("FLUSH_MAX_AGE_MS", "FLUSH_MAX_AGE", 3),
        ] {
            assert_eq!(edit_distance(a, b), d, "{a} {b}");
        }
    }

    #[test]
    fn unknown_variables_name_the_closest_setting() {
        let known = [Known::text("TYPES", "x"), Known::text("PORT", "1")];
        let names = vec![
            "KINESIS_TELEMETRY_TYPEZ".to_string(),
            "KINESIS_TELEMETRY_PORT".to_string(),
            "AWS_REGION".to_string(),
        ];
        let p = unknown_variables(&names, &known);
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(
            p[0].message.contains("KINESIS_TELEMETRY_TYPEZ")
                && p[0]
                    .message
                    .contains("did you mean KINESIS_TELEMETRY_TYPES?"),
            "{}",
            p[0].message
        );
        assert!(!p[0].disables_delivery);
    }
}
