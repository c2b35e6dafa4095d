//! The extension's own counts, read from its shutdown summary line:
//!
//! ```text
//! shutdown (<reason>): events received=N[ recovered=N] delivered=N filtered=N dropped=N
//! (reason=n, …)[ in_doubt=N] still_buffered=N | resent_events=N (unconfirmed=N) in
//! retry_requests=N, throttled=N records, truncated=N, spilled=N | kinesis requests=N
//! failed_requests=N records=N bytes_sent=N | telemetry posts=N unusable_posts=N
//! lambda_dropped=N (N bytes) accept_errors=N stalled_connections=N
//! ```
//!
//! A count the line does not carry is 0 (`recovered`, `in_doubt` appear only when not 0);
//! a line without `received=` is not a summary. When records cannot be checked off (a real
//! endpoint) these counts are the verdict's only basis.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

/// What the extension says it did with the events it received.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ExtensionCounters {
    pub received: u64,
    /// Events found in the spill store at start (a previous environment's).
    pub recovered: u64,
    pub delivered: u64,
    pub filtered: u64,
    pub dropped: u64,
    pub dropped_by_reason: BTreeMap<String, u64>,
    /// Dropped at the SHUTDOWN deadline although their last request may have landed: the
    /// loss lies in `[dropped - in_doubt, dropped]`.
    pub in_doubt: u64,
    pub still_buffered: u64,
    pub resent_events: u64,
    /// Resent events whose earlier attempt may have landed too (possible duplicates).
    pub unconfirmed: u64,
    pub retry_requests: u64,
    pub throttled: u64,
    pub truncated: u64,
    pub spilled: u64,
    pub kinesis_requests: u64,
    pub failed_requests: u64,
    pub records_sent: u64,
    pub bytes_sent: u64,
    pub telemetry_posts: u64,
    pub unusable_posts: u64,
    /// What Lambda said it dropped (`platform.logsDropped`): events and bytes.
    pub lambda_dropped: u64,
    pub lambda_dropped_bytes: u64,
}

fn number(s: &str) -> u64 {
    let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    s[..end].parse().unwrap_or(0)
}

impl ExtensionCounters {
    /// Parses a summary line; `None` when it is not one.
    pub fn parse(line: &str) -> Option<ExtensionCounters> {
        let body = line.split_once("): ").map_or(line, |(_, b)| b);
        let mut values: HashMap<&str, u64> = HashMap::new();
        for token in body.split(|c: char| c.is_whitespace() || matches!(c, '(' | ')' | ',')) {
            if let Some((k, v)) = token.split_once('=') {
                values.entry(k).or_insert_with(|| number(v));
            }
        }
        let received = *values.get("received")?;
        let get = |k: &str| values.get(k).copied().unwrap_or(0);
        // `dropped=N (a=1, b=2)`: the reasons are the group right after it.
        let mut dropped_by_reason = BTreeMap::new();
        if let Some(at) = body.find(" dropped=") {
            let rest = &body[at + " dropped=".len()..];
            let digits = rest
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(rest.len());
            if let Some(group) = rest[digits..].strip_prefix(" (") {
                let group = group.split(')').next().unwrap_or("");
                for part in group.split(", ") {
                    if let Some((k, v)) = part.split_once('=') {
                        dropped_by_reason.insert(k.trim().to_owned(), number(v));
                    }
                }
            }
        }
        let lambda_dropped_bytes = body
            .find("lambda_dropped=")
            .and_then(|at| body[at..].split_once(" ("))
            .map_or(0, |(_, rest)| number(rest));
        Some(ExtensionCounters {
            received,
            recovered: get("recovered"),
            delivered: get("delivered"),
            filtered: get("filtered"),
            dropped: get("dropped"),
            dropped_by_reason,
            in_doubt: get("in_doubt"),
            still_buffered: get("still_buffered"),
            resent_events: get("resent_events"),
            unconfirmed: get("unconfirmed"),
            retry_requests: get("retry_requests"),
            throttled: get("throttled"),
            truncated: get("truncated"),
            spilled: get("spilled"),
            kinesis_requests: get("requests"),
            failed_requests: get("failed_requests"),
            records_sent: get("records"),
            bytes_sent: get("bytes_sent"),
            telemetry_posts: get("posts"),
            unusable_posts: get("unusable_posts"),
            lambda_dropped: get("lambda_dropped"),
            lambda_dropped_bytes,
        })
    }

    /// The drop reasons as `reason=n, …` (empty when nothing was dropped).
    pub fn reasons(&self) -> String {
        self.dropped_by_reason
            .iter()
            .map(|(r, n)| format!("{r}={n}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_count_of_the_summary_line() {
        let line = "[kinesis-telemetry] INFO shutdown (spindown): events received=403 recovered=2 delivered=380 filtered=1 dropped=22 (buffer_full=20, AccessDeniedException=2) in_doubt=3 still_buffered=0 | resent_events=185 (unconfirmed=4) in retry_requests=8, throttled=9 records, truncated=1, spilled=7 | kinesis requests=9 failed_requests=5 records=12 bytes_sent=209371 | telemetry posts=54 unusable_posts=1 lambda_dropped=6 (600 bytes) accept_errors=0 stalled_connections=0";
        let c = ExtensionCounters::parse(line).unwrap();
        assert_eq!(
            (c.received, c.recovered, c.delivered, c.filtered, c.dropped),
            (403, 2, 380, 1, 22)
        );
        assert_eq!(c.reasons(), "AccessDeniedException=2, buffer_full=20");
        assert_eq!((c.in_doubt, c.still_buffered), (3, 0));
        assert_eq!(
            (c.resent_events, c.unconfirmed, c.retry_requests),
            (185, 4, 8)
        );
        assert_eq!((c.throttled, c.truncated, c.spilled), (9, 1, 7));
        assert_eq!(
            (
                c.kinesis_requests,
                c.failed_requests,
                c.records_sent,
                c.bytes_sent
            ),
            (9, 5, 12, 209_371)
        );
        assert_eq!((c.telemetry_posts, c.unusable_posts), (54, 1));
        assert_eq!((c.lambda_dropped, c.lambda_dropped_bytes), (6, 600));
    }

    #[test]
    fn absent_counts_are_zero_and_other_lines_are_not_summaries() {
        let c = ExtensionCounters::parse("shutdown (timeout): events received=5 delivered=5 filtered=0 dropped=0 still_buffered=0 | resent_events=0 (unconfirmed=0)").unwrap();
        assert_eq!(
            (c.received, c.dropped, c.in_doubt, c.recovered),
            (5, 0, 0, 0)
        );
        assert!(c.dropped_by_reason.is_empty());
        assert_eq!(
            ExtensionCounters::parse("INFO subscribed to platform"),
            None
        );
    }
}
