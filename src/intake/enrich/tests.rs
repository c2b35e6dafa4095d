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
    let raw = r#"{"time":"2024-01-01T00:00:00.000Z","type":"function","record":"a\tb  \u00e9\n"}"#;
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
