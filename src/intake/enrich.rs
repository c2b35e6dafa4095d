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
mod tests {
    use super::*;
    use serde_json::Value;

    /// The event as Lambda sent it: the enrichment object removed.
    fn strip(enriched: &str) -> Option<String> {
        let marker = format!("\"{FIELD}\":{{\"function\":");
        let at = enriched.rfind(&marker)?;
        let (head, _) = enriched.split_at(at);
        let head = head.strip_suffix(',').unwrap_or(head);
        Some(format!("{head}}}"))
    }

    fn origin() -> Origin {
        Origin::new(
            &FunctionInfo {
                name: "orders".into(),
                version: "$LATEST".into(),
                region: "eu-west-1".into(),
                account: Some("123456789012".into()),
                memory_mb: Some(128),
            },
            "8f1c2a9e0b7d4e63".into(),
        )
    }

    #[test]
    fn the_object_is_spliced_and_the_original_bytes_stay() {
        let raw =
            r#"{"time":"2024-01-01T00:00:00.000Z","type":"function","record":"a\tb  \u00e9\n"}"#;
        let out = origin().splice(raw, 41, Some("req-1"), None).unwrap();
        assert!(out.starts_with(&raw[..raw.len() - 1]), "{out}");
        let v: Value = serde_json::from_str(&out).unwrap();
        let s = &v["source"];
        assert_eq!(s["function"], "orders");
        assert_eq!(s["version"], "$LATEST");
        assert_eq!(s["region"], "eu-west-1");
        assert_eq!(s["account"], "123456789012");
        assert_eq!(s["memoryMb"], 128);
        assert_eq!(s["environment"], "8f1c2a9e0b7d4e63");
        assert_eq!(s["seq"], 41);
        assert_eq!(s["eventId"], "8f1c2a9e0b7d4e63-41");
        assert_eq!(s["requestId"], "req-1");
        assert_eq!(strip(&out).as_deref(), Some(raw));
        assert!(out.len() - raw.len() <= origin().max_added_len());
    }

    #[test]
    fn edge_shapes() {
        let o = origin();
        let empty = o.splice("{}", 1, None, None).unwrap();
        let v: Value = serde_json::from_str(&empty).unwrap();
        assert_eq!(v["source"]["seq"], 1);
        assert!(v["source"].get("requestId").is_none());
        assert_eq!(strip(&empty).as_deref(), Some("{}"));
        let spaced = o.splice("{ }", 2, None, None).unwrap();
        assert!(serde_json::from_str::<Value>(&spaced).is_ok(), "{spaced}");
        assert!(o.splice("[1,2]", 3, None, None).is_none());
        assert!(o.splice("\"x\"", 3, None, None).is_none());
        // A function name that needs escaping stays valid JSON.
        let odd = Origin::new(
            &FunctionInfo {
                name: "a\"b\\c".into(),
                ..FunctionInfo::default()
            },
            "e".into(),
        );
        let out = odd
            .splice(r#"{"type":"x"}"#, 9, Some("q\""), Some("t\"1"))
            .unwrap();
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["source"]["function"], "a\"b\\c");
        assert_eq!(v["source"]["requestId"], "q\"");
        assert_eq!(v["source"]["tenantId"], "t\"1");
        assert!(v["source"].get("account").is_none());
    }

    #[test]
    fn the_tenant_is_added_and_a_restore_changes_only_the_environment() {
        let o = origin();
        let raw =
            r#"{"time":"t","type":"platform.start","record":{"requestId":"r","tenantId":"blue"}}"#;
        let out = o.splice(raw, 7, None, Some("blue")).unwrap();
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["source"]["tenantId"], "blue");
        assert!(v["source"].get("requestId").is_none());
        assert_eq!(strip(&out).as_deref(), Some(raw));
        let long = "t".repeat(MAX_TENANT_ID_BYTES);
        let most = o.splice("{}", u64::MAX, Some(&"r".repeat(256)), Some(&long));
        assert!(most.unwrap().len() - 2 <= o.max_added_len());

        let r = o.restored("0123456789abcdef");
        let after: Value = serde_json::from_str(&r.splice(raw, 0, None, None).unwrap()).unwrap();
        let before: Value = serde_json::from_str(&o.splice(raw, 0, None, None).unwrap()).unwrap();
        assert_eq!(after["source"]["eventId"], "0123456789abcdef-0");
        assert_eq!(before["source"]["eventId"], "8f1c2a9e0b7d4e63-0");
        for field in [
            "function", "version", "region", "account", "arch", "memoryMb",
        ] {
            assert_eq!(after["source"][field], before["source"][field], "{field}");
        }
        assert_eq!(r.max_added_len(), o.max_added_len());
    }

    #[test]
    fn architecture_uses_lambda_names() {
        assert!(["x86_64", "arm64"].contains(&architecture()));
    }
}
