//! The Telemetry API subscription as Lambda validates it, and the rule for which
//! events a subscription receives.
//!
//! Pure functions: [`validate_subscription`] turns a `PUT /2022-07-01/telemetry`
//! body into a [`Subscription`] or the `ValidationError` message; ranges and
//! defaults are the documented ones (Telemetry API reference).

use std::time::Duration;

use serde_json::Value;

/// Path of the Telemetry API subscription.
pub const TELEMETRY_API: &str = "/2022-07-01/telemetry";
/// Telemetry schema versions Lambda accepts.
pub const SCHEMA_VERSIONS: [&str; 3] = ["2022-07-01", "2022-12-13", "2025-01-29"];
/// Event categories a subscription may name.
pub const TELEMETRY_TYPES: [&str; 3] = ["platform", "function", "extension"];
/// Port reserved by the Runtime API; a subscriber may not use it.
pub const RESERVED_PORT: u16 = 9001;
/// Telemetry API buffering ranges and defaults (Telemetry API reference).
pub const MAX_ITEMS_RANGE: (u64, u64) = (1_000, 10_000);
pub const MAX_BYTES_RANGE: (u64, u64) = (262_144, 1_048_576);
pub const TIMEOUT_MS_RANGE: (u64, u64) = (25, 30_000);
pub const DEFAULT_BUFFERING: Buffering = Buffering {
    max_items: 10_000,
    max_bytes: 262_144,
    timeout: Duration::from_millis(1_000),
};

/// A subscription's buffering.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Buffering {
    pub max_items: usize,
    pub max_bytes: usize,
    pub timeout: Duration,
}

/// An accepted subscription.
#[derive(Clone, Debug)]
pub struct Subscription {
    pub schema_version: String,
    /// Port of the destination URI; telemetry is POSTed to 127.0.0.1 on it.
    pub port: u16,
    /// Path of the destination URI (`/` when absent).
    pub path: String,
    pub types: Vec<String>,
    pub buffering: Buffering,
}

/// Parses a subscription body; `Err` is the ValidationError message.
pub fn validate_subscription(body: &[u8]) -> Result<Subscription, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("Invalid JSON body: {e}"))?;
    let schema_version = v
        .get("schemaVersion")
        .and_then(Value::as_str)
        .ok_or("schemaVersion is required")?
        .to_owned();
    if !SCHEMA_VERSIONS.contains(&schema_version.as_str()) {
        return Err(format!(
            "Unsupported schemaVersion: {schema_version}. Supported: {}",
            SCHEMA_VERSIONS.join(", ")
        ));
    }
    let dest = v
        .get("destination")
        .and_then(Value::as_object)
        .ok_or("destination is required")?;
    let protocol = dest
        .get("protocol")
        .and_then(Value::as_str)
        .ok_or("destination.protocol is required")?;
    if protocol != "HTTP" {
        return Err(format!(
            "Unsupported destination protocol: {protocol}. Only HTTP is supported"
        ));
    }
    let uri = dest
        .get("URI")
        .and_then(Value::as_str)
        .ok_or("destination.URI is required")?
        .to_owned();
    let rest = uri
        .strip_prefix("http://")
        .ok_or_else(|| format!("Invalid destination URI: {uri}"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], rest[i..].to_owned()),
        None => (rest, "/".to_owned()),
    };
    let (host, port) = authority
        .rsplit_once(':')
        .ok_or_else(|| format!("Destination URI must have a port: {uri}"))?;
    if host != "sandbox.localdomain" {
        return Err(format!(
            "Invalid destination URI host: {host}. Use sandbox.localdomain"
        ));
    }
    let port: u16 = port
        .parse()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| format!("Invalid destination port in {uri}"))?;
    check_path(&path).map_err(|why| format!("Invalid destination URI path in {uri}: {why}"))?;
    if port == RESERVED_PORT {
        return Err(format!("Port {RESERVED_PORT} is reserved"));
    }
    let types: Vec<String> = match v.get("types") {
        None => TELEMETRY_TYPES.iter().map(|t| t.to_string()).collect(),
        Some(Value::Array(a)) if !a.is_empty() => {
            let mut out = Vec::new();
            for t in a {
                let t = t.as_str().ok_or("types must be strings")?;
                if !TELEMETRY_TYPES.contains(&t) {
                    return Err(format!(
                        "Invalid type: {t}. Allowed: platform, function, extension"
                    ));
                }
                out.push(t.to_owned());
            }
            out
        }
        Some(_) => return Err("types must be a non-empty array".to_owned()),
    };
    let mut buffering = DEFAULT_BUFFERING;
    if let Some(b) = v.get("buffering") {
        let b = b.as_object().ok_or("buffering must be an object")?;
        let field = |name: &str, (lo, hi): (u64, u64)| -> Result<Option<u64>, String> {
            match b.get(name) {
                None => Ok(None),
                Some(x) => match x.as_u64() {
                    Some(n) if (lo..=hi).contains(&n) => Ok(Some(n)),
                    _ => Err(format!(
                        "buffering.{name} must be an integer between {lo} and {hi}, got {x}"
                    )),
                },
            }
        };
        if let Some(n) = field("maxItems", MAX_ITEMS_RANGE)? {
            buffering.max_items = n as usize;
        }
        if let Some(n) = field("maxBytes", MAX_BYTES_RANGE)? {
            buffering.max_bytes = n as usize;
        }
        if let Some(n) = field("timeoutMs", TIMEOUT_MS_RANGE)? {
            buffering.timeout = Duration::from_millis(n);
        }
    }
    Ok(Subscription {
        schema_version,
        port,
        path,
        types,
        buffering,
    })
}

/// A destination path the fake can POST to verbatim: RFC 3986 path characters only, `%`
/// only as an escape. A query or fragment is refused too: nothing documents what Lambda does
/// with them, so an extension that relied on one would pass here and fail there.
fn check_path(path: &str) -> Result<(), String> {
    let bytes = path.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        let ok = b.is_ascii_alphanumeric()
            || b"-._~!$&'()*+,;=:@/".contains(&b)
            || (b == b'%'
                && bytes.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && bytes.get(i + 2).is_some_and(u8::is_ascii_hexdigit));
        if !ok {
            return Err(format!("{:?} at byte {i}", b as char));
        }
    }
    Ok(())
}

/// Whether an event's `type` belongs to a subscribed category; unparsable text is delivered.
pub fn type_subscribed(text: &str, types: &[String]) -> bool {
    let Ok(v) = serde_json::from_str::<Value>(text) else {
        return true;
    };
    let Some(t) = v.get("type").and_then(Value::as_str) else {
        return true;
    };
    let category = if t.starts_with("platform.") {
        "platform"
    } else {
        t
    };
    if !TELEMETRY_TYPES.contains(&category) {
        return true;
    }
    types.iter().any(|s| s == category)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(buffering: &str, uri: &str) -> Vec<u8> {
        format!(
            r#"{{"schemaVersion":"2022-12-13","destination":{{"protocol":"HTTP","URI":"{uri}"}},
               "types":["platform","function","extension"],"buffering":{buffering}}}"#
        )
        .into_bytes()
    }

    #[test]
    fn accepts_the_documented_subscription() {
        let s = validate_subscription(&body(
            r#"{"maxItems":1000,"maxBytes":262144,"timeoutMs":25}"#,
            "http://sandbox.localdomain:4243",
        ))
        .unwrap();
        assert_eq!((s.port, s.path.as_str()), (4243, "/"));
        let with_path = |uri: &str| {
            let body = body("{}", uri);
            validate_subscription(&body).map(|s| s.path)
        };
        assert_eq!(
            with_path("http://sandbox.localdomain:8124/lambda/logs").as_deref(),
            Ok("/lambda/logs")
        );
        assert_eq!(
            with_path("http://sandbox.localdomain:4243/0a1B%2F").as_deref(),
            Ok("/0a1B%2F")
        );
        assert_eq!(
            s.buffering,
            Buffering {
                max_items: 1000,
                max_bytes: 262_144,
                timeout: Duration::from_millis(25)
            }
        );
    }

    #[test]
    fn rejects_out_of_range_buffering_and_bad_destinations() {
        for (buf, uri) in [
            (r#"{"maxItems":999}"#, "http://sandbox.localdomain:4243"),
            (r#"{"maxBytes":1048577}"#, "http://sandbox.localdomain:4243"),
            (r#"{"timeoutMs":24}"#, "http://sandbox.localdomain:4243"),
            (r#"{"timeoutMs":30001}"#, "http://sandbox.localdomain:4243"),
            ("{}", "http://sandbox.localdomain:9001"),
            ("{}", "https://sandbox.localdomain:4243"),
            ("{}", "http://localhost:4243"),
            ("{}", "http://sandbox.localdomain"),
            ("{}", "http://sandbox.localdomain:4243/a b"),
            ("{}", "http://sandbox.localdomain:4243/a?b=1"),
            ("{}", "http://sandbox.localdomain:4243/a#b"),
            ("{}", "http://sandbox.localdomain:4243/a%zz"),
            ("{}", "http://sandbox.localdomain:4243/caf\u{e9}"),
        ] {
            assert!(
                validate_subscription(&body(buf, uri)).is_err(),
                "{buf} {uri}"
            );
        }
    }

    #[test]
    fn filters_by_category() {
        let types = vec!["function".to_owned()];
        assert!(type_subscribed(
            r#"{"type":"function","record":"x"}"#,
            &types
        ));
        assert!(!type_subscribed(
            r#"{"type":"platform.start","record":{}}"#,
            &types
        ));
        assert!(type_subscribed("not json", &types));
    }
}
