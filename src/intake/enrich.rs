//! Enrichment: one object added to each event saying where it came from, so that many
//! functions can share a stream and consumers can de-duplicate exactly. The object, field by
//! field, as consumers see it: `docs/consumers.md` ("Enrichment").
//!
//! Invariants:
//! - The original bytes are never re-serialised: the object is spliced in before the event's
//!   closing brace, so `time`, `type` and `record` stay exactly as Lambda sent them, and
//!   removing the object gives them back.
//! - `environment` is random per process start, and drawn again when a SnapStart restore
//!   resumes this process from a snapshot shared with other environments (see `snapstart`);
//!   `seq` counts every event the receiver accepted (before the buffer cap) under that id,
//!   from 0, so `eventId` is unique per event and a resend repeats it; a gap in `seq` means
//!   events were dropped (the metrics and the summary say why).
//! - `requestId` is added only for log lines that carry none (the Text format), with the
//!   invocation running when the line arrived; never on Lambda Managed Instances, where
//!   invocations run concurrently.
//! - `tenantId` (tenant isolation mode) is added to every event of an invocation whose
//!   tenant is known, matched as `requestId` is (see `tenant`).
//! - Events that are not JSON objects, or that already have a top-level `source` (under any
//!   spelling of the name: `"sour\u0063e"` is `source` too), are left as they are: an event
//!   never has two `source` members.

use crate::intake::tenant::MAX_TENANT_ID_BYTES;

/// The name of the added top-level field.
pub const FIELD: &str = "source";

/// Longest request id spliced in (Lambda's are 36-character UUIDs).
const MAX_REQUEST_ID_BYTES: usize = 256;

/// What every event of this environment says about where it came from.
#[derive(Debug, Clone)]
pub struct Origin {
    /// `,"source":{` … `,"memoryMb":…`: what does not change at a SnapStart restore.
    base: String,
    /// `base` and `,"environment":"<id>"`: everything but `seq`, `eventId`, `requestId`,
    /// `tenantId`.
    prefix: String,
    environment: String,
}

/// The Lambda name of the architecture this binary was built for.
pub fn architecture() -> &'static str {
    match std::env::consts::ARCH {
        "aarch64" => "arm64",
        other => other,
    }
}

fn json_str(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

/// Who the function is (from the register response and the environment).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FunctionInfo {
    pub name: String,
    pub version: String,
    pub region: String,
    pub account: Option<String>,
    pub memory_mb: Option<u32>,
}

impl Origin {
    pub fn new(f: &FunctionInfo, environment: String) -> Origin {
        let mut prefix = format!(
            ",\"{FIELD}\":{{\"function\":{},\"version\":{},\"region\":{}",
            json_str(&f.name),
            json_str(&f.version),
            json_str(&f.region)
        );
        if let Some(a) = &f.account {
            prefix.push_str(&format!(",\"account\":{}", json_str(a)));
        }
        prefix.push_str(&format!(",\"arch\":{}", json_str(architecture())));
        if let Some(m) = f.memory_mb {
            prefix.push_str(&format!(",\"memoryMb\":{m}"));
        }
        Origin::with_base(prefix, environment)
    }

    fn with_base(base: String, environment: String) -> Origin {
        let prefix = format!("{base},\"environment\":{}", json_str(&environment));
        Origin {
            base,
            prefix,
            environment,
        }
    }

    /// The same function under a new environment id (after a SnapStart restore).
    pub fn restored(&self, environment: &str) -> Origin {
        Origin::with_base(self.base.clone(), environment.to_string())
    }

    /// The most bytes [`Origin::splice`] can add (so truncation leaves room for it).
    pub fn max_added_len(&self) -> usize {
        let seq = u64::MAX.to_string().len();
        self.prefix.len()
            + ",\"seq\":".len()
            + seq
            + ",\"eventId\":\"\"".len()
            + self.environment.len()
            + 1
            + seq
            + ",\"requestId\":".len()
            + 2 * MAX_REQUEST_ID_BYTES
            + 2
            + ",\"tenantId\":".len()
            + 2 * MAX_TENANT_ID_BYTES
            + 2
            + "}".len()
    }

    /// The event with the object spliced in before its closing brace, or `None` when the
    /// event cannot take it (not an object, or it has a `source` already).
    pub fn splice(
        &self,
        raw: &str,
        seq: u64,
        request_id: Option<&str>,
        tenant: Option<&str>,
    ) -> Option<String> {
        let body = raw.strip_prefix('{')?.strip_suffix('}')?;
        let mut out = String::with_capacity(raw.len() + self.prefix.len() + 96);
        out.push('{');
        out.push_str(body);
        if body.trim().is_empty() {
            // `{}` or `{ }`: no member before ours, so no comma (the whitespace stays).
            out.push_str(&self.prefix[1..]);
        } else {
            out.push_str(&self.prefix);
        }
        out.push_str(&format!(
            ",\"seq\":{seq},\"eventId\":\"{}-{seq}\"",
            self.environment
        ));
        if let Some(id) = request_id.filter(|id| id.len() <= MAX_REQUEST_ID_BYTES) {
            out.push_str(",\"requestId\":");
            out.push_str(&json_str(id));
        }
        // Bounded by what `max_added_len` reserved, escapes included.
        let tenant = tenant
            .filter(|t| t.len() <= MAX_TENANT_ID_BYTES)
            .map(json_str)
            .filter(|q| q.len() <= 2 * MAX_TENANT_ID_BYTES + 2);
        if let Some(quoted) = tenant {
            out.push_str(",\"tenantId\":");
            out.push_str(&quoted);
        }
        out.push_str("}}");
        Some(out)
    }
}

#[cfg(test)]
mod tests;
