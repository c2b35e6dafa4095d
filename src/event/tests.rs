use super::*;

fn parse(body: &str) -> Result<Vec<Item<'_>>, ParseError> {
    parse_batch(body.as_bytes())
}

#[test]
fn events_are_kept_byte_for_byte_with_unknown_fields_and_types() {
    let e1 = r#"{"time":"2022-10-12T00:00:00.000Z","type":"platform.start","record":{"requestId":"r-1","version":"$LATEST"},"extra":[1,2]}"#;
    let e2 =
        r#"{"time":"2022-10-12T00:00:00.001Z","type":"function","record":"START of a Text log\n"}"#;
    let e3 = r#"{"time":"2022-10-12T00:00:00.002Z","type":"function","record":{"timestamp":"x","level":"INFO","requestId":"r-1","message":"hi"}}"#;
    let e4 = r#"{"time":"t","type":"platform.futureThing","record":{"a":  1}}"#;
    let e5 = r#"{"time":"t","type":"platform.report","record":{"requestId":"r-1","status":"success","metrics":{"durationMs":1.5}}}"#;
    let e6 = r#"{"time":"t","type":"platform.logsDropped","record":{"reason":"Consumer seems to have fallen behind","droppedRecords":123,"droppedBytes":12345}}"#;
    let body = format!("[{e1}, {e2},\n{e3},{e4},{e5},{e6}]");
    let items = parse(&body).unwrap();
    let raws: Vec<&str> = items.iter().map(|e| e.raw).collect();
    assert_eq!(raws, [e1, e2, e3, e4, e5, e6]);
    let kinds: Vec<&Kind> = items.iter().map(|i| &i.kind).collect();
    assert_eq!(
        kinds,
        [
            &Kind::Start,
            &Kind::Log,
            &Kind::Log,
            &Kind::Other,
            &Kind::Report,
            &Kind::LogsDropped {
                records: 123,
                bytes: 12345
            }
        ]
    );
    let ids: Vec<Option<&str>> = items.iter().map(|i| i.request_id.as_deref()).collect();
    assert_eq!(
        ids,
        [Some("r-1"), None, Some("r-1"), None, Some("r-1"), None]
    );
    assert_eq!(items[3].event_type, "platform.futureThing");
    assert!(items.iter().all(|i| i.enrichable));
}

#[test]
fn non_object_elements_are_carried_through() {
    let items = parse(r#"[1, "x", null, {"type": 5}, {"type":"x","source":{}}]"#).unwrap();
    assert_eq!(items.len(), 5);
    assert!(items.iter().all(|e| e.kind == Kind::Other));
    assert!(!items[0].enrichable && items[3].enrichable);
    assert!(!items[4].enrichable, "has a source of its own");
}

#[test]
fn heads_of_any_shape_are_read_without_failing() {
    // (element, type, requestId, enrichable)
    let cases: &[(&str, &str, Option<&str>, bool)] = &[
        // Duplicates: the last one counts, as in JSON readers downstream.
        (
            r#"{"type":"x","type":"function","record":{"requestId":"a","requestId":"b"}}"#,
            "function",
            Some("b"),
            true,
        ),
        (r#"{"type":5,"source":1}"#, "", None, false),
        (r#"{"type":null,"record":{"requestId":7}}"#, "", None, true),
        (
            r#"{"t\u0079pe":"platform.start","sour\u0063e":{}}"#,
            "platform.start",
            None,
            false,
        ),
        (
            r#"{"type":"func\u0074ion","record":{"requestId":"r\"1"}}"#,
            "function",
            Some("r\"1"),
            true,
        ),
        (
            r#"{"record":"text","type":"extension"}"#,
            "extension",
            None,
            true,
        ),
        (r#"{}"#, "", None, true),
        (r#"["type","source"]"#, "", None, false),
    ];
    for (element, event_type, request_id, enrichable) in cases {
        let body = format!("[{element}]");
        let items = parse(&body).unwrap();
        let i = &items[0];
        assert_eq!(i.raw, *element);
        assert_eq!(i.event_type, *event_type, "{element}");
        assert_eq!(i.request_id.as_deref(), *request_id, "{element}");
        assert_eq!(i.enrichable, *enrichable, "{element}");
    }
}

#[test]
fn logs_dropped_counts_saturate_and_ignore_what_is_not_a_count() {
    let counts = |record: &str| {
        let body = format!(r#"[{{"type":"platform.logsDropped","record":{record}}}]"#);
        match parse(&body).unwrap()[0].kind {
            Kind::LogsDropped { records, bytes } => (records, bytes),
            ref k => panic!("{k:?}"),
        }
    };
    assert_eq!(counts(r#"{"droppedRecords":3,"droppedBytes":40}"#), (3, 40));
    assert_eq!(
        counts(r#"{"droppedRecords":18446744073709551616,"droppedBytes":1e300}"#),
        (u64::MAX, u64::MAX)
    );
    assert_eq!(
        counts(r#"{"droppedRecords":2.9,"droppedBytes":-5}"#),
        (2, 0)
    );
    assert_eq!(
        counts(r#"{"droppedRecords":"7","droppedBytes":null}"#),
        (0, 0)
    );
    assert_eq!(counts(r#""no counts""#), (0, 0));
}

#[test]
fn bad_bodies_are_classified() {
    assert_eq!(parse("").unwrap_err(), ParseError::Empty);
    assert_eq!(parse(" \n ").unwrap_err(), ParseError::Empty);
    assert_eq!(parse(r#"{"type":"x"}"#).unwrap_err(), ParseError::NotArray);
    assert!(matches!(parse("[{]"), Err(ParseError::Malformed(_))));
    assert!(matches!(parse("nope"), Err(ParseError::Malformed(_))));
    assert!(parse("[]").unwrap().is_empty());
}

#[test]
fn the_2025_26_types_and_fields_are_read_and_kept() {
    // Shapes from the Telemetry API schema reference and the tenant isolation guide.
    let restore = r#"{"time":"t","type":"platform.restoreStart","record":{"functionName":"f","functionVersion":"3","instanceId":"i","instanceMaxMemory":256,"runtimeVersion":"java:21.v1","runtimeVersionArn":"arn"}}"#;
    let restore_done = r#"{"time":"t","type":"platform.restoreRuntimeDone","record":{"status":"success","spans":[{"name":"s","start":"t","durationMs":80.0}]}}"#;
    let restore_report = r#"{"time":"t","type":"platform.restoreReport","record":{"status":"success","metrics":{"durationMs":15.19}}}"#;
    let start = r#"{"time":"t","type":"platform.start","record":{"requestId":"r-1","functionArn":"arn:aws:lambda:us-east-1:1:function:f","version":"$LATEST","tenantId":"BlueTenant"}}"#;
    let line = r#"{"time":"t","type":"function","record":{"timestamp":"t","level":"INFO","requestId":"r-1","tenantId":"BlueTenant","message":"m"}}"#;
    let ext = r#"{"time":"t","type":"platform.extension","record":{"events":["INVOKE","SHUTDOWN"],"name":"x","state":"Ready"}}"#;
    let body = format!("[{restore},{restore_done},{restore_report},{start},{line},{ext}]");
    let items = parse(&body).unwrap();
    let raws: Vec<&str> = items.iter().map(|i| i.raw).collect();
    assert_eq!(
        raws,
        [restore, restore_done, restore_report, start, line, ext]
    );
    let kinds: Vec<&Kind> = items.iter().map(|i| &i.kind).collect();
    assert_eq!(
        kinds,
        [
            &Kind::RestoreStart,
            &Kind::Other,
            &Kind::Other,
            &Kind::Start,
            &Kind::Log,
            &Kind::Other
        ]
    );
    let tenants: Vec<Option<&str>> = items.iter().map(|i| i.tenant_id.as_deref()).collect();
    assert_eq!(
        tenants,
        [
            None,
            None,
            None,
            Some("BlueTenant"),
            Some("BlueTenant"),
            None
        ]
    );
}
