use super::*;

fn raw(s: &str) -> Box<RawValue> {
    RawValue::from_string(s.to_string()).unwrap()
}

#[test]
fn selections_parse_and_decide() {
    // (list, event type, wanted)
    let cases: &[(&str, &str, bool)] = &[
        ("platform,function,extension", "platform.report", true),
        ("function", "platform.report", false),
        ("function", "function", true),
        ("function", "extension", false),
        ("FUNCTION, Platform", "platform.start", true),
        ("platform.report", "platform.report", true),
        ("platform.report", "platform.start", false),
        ("platform.report", "platform.futureThing", false),
        ("platform", "platform.futureThing", true),
        ("platform.report,function", "function", true),
        ("platform.report", "function", false),
        // Unknown categories are always carried through.
        ("function", "somethingNew", true),
        ("platform.RUNTIMEDONE", "platform.runtimeDone", true),
    ];
    for (list, t, wanted) in cases {
        let s = TypeSelection::parse(list).unwrap();
        assert_eq!(s.wants(t), *wanted, "{list} / {t}");
    }
}

#[test]
fn bad_selections_name_the_item() {
    for (list, why) in [
        ("platform,bogus", "\"bogus\""),
        ("platform.reprot", "\"platform.reprot\""),
        ("", "empty"),
        (" , ", "empty"),
    ] {
        let err = TypeSelection::parse(list).unwrap_err();
        assert!(err.contains(why), "{list}: {err}");
    }
}

#[test]
fn categories_to_subscribe_cover_single_types() {
    let s = TypeSelection::parse("platform.report,function").unwrap();
    assert_eq!(s.categories(), ["platform", "function"]);
    assert_eq!(s.describe(), "function,platform.report");
    assert!(!s.is_all());
    assert!(TypeSelection::default().is_all());
    assert_eq!(
        TypeSelection::default().categories(),
        ["platform", "function", "extension"]
    );
}

#[test]
fn levels_of_real_log_lines() {
    let cases: &[(&str, Option<LogLevel>)] = &[
        (
            r#"{"timestamp":"t","level":"INFO","requestId":"r","message":"m"}"#,
            Some(LogLevel::Info),
        ),
        (r#"{"level":"debug","message":"m"}"#, Some(LogLevel::Debug)),
        (r#"{"level":"WARNING"}"#, Some(LogLevel::Warn)),
        (r#"{"message":"no level"}"#, None),
        (r#"{"level":5}"#, None),
        // Node.js Text format
        (
            r#""2024-01-01T00:00:00.000Z\tc6af9ac6-7b61-11e6-9a41-93e812345678\tERROR\tboom\n""#,
            Some(LogLevel::Error),
        ),
        // Python Text format
        (
            r#""[DEBUG]\t2024-01-01T00:00:00.000Z\tc6af9ac6\tdetails\n""#,
            Some(LogLevel::Debug),
        ),
        (r#""START RequestId: c6af9ac6 Version: $LATEST\n""#, None),
        (r#""plain print output\n""#, None),
        ("[1,2]", None),
    ];
    for (record, want) in cases {
        assert_eq!(level_of(&raw(record)), *want, "{record}");
    }
}

#[test]
fn min_level_drops_only_lower_log_lines() {
    let f = Filter {
        types: TypeSelection::default(),
        min_level: Some(LogLevel::Warn),
    };
    let info = raw(r#"{"level":"INFO","message":"m"}"#);
    let error = raw(r#"{"level":"ERROR","message":"m"}"#);
    let unknown = raw(r#""no level here""#);
    assert!(!f.keeps("function", Some(&info)));
    assert!(!f.keeps("extension", Some(&info)));
    assert!(f.keeps("function", Some(&error)));
    assert!(f.keeps("function", Some(&unknown)), "no level: kept");
    assert!(
        f.keeps("platform.report", Some(&info)),
        "platform events have no level"
    );
    assert!(!f.is_noop());
    assert!(Filter::default().is_noop());
}

#[test]
fn level_names_parse_back_to_their_level_and_the_filter_says_what_it_keeps() {
    for name in LEVEL_NAMES {
        let level = LogLevel::parse(name).unwrap();
        assert_eq!(level.name(), name);
    }
    let f = Filter {
        types: TypeSelection::parse("platform.report,function").unwrap(),
        min_level: Some(LogLevel::Warn),
    };
    assert_eq!(f.describe(), "function,platform.report, min level warn");
    assert_eq!(Filter::default().describe(), "platform,function,extension");
}
