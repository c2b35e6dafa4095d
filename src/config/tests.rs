use super::*;
use crate::kinesis::limits as batch;
use crate::kinesis::{CredentialSource, StreamTarget};
use std::collections::HashMap;

fn parse(vars: &[(&str, &str)]) -> (Config, Vec<Problem>) {
    let map: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let names: Vec<String> = map.keys().cloned().collect();
    Config::from_lookup(&move |k| map.get(k).cloned(), &names)
}

const BASE: [(&str, &str); 4] = [
    ("KINESIS_TELEMETRY_STREAM", "telemetry"),
    ("AWS_REGION", "eu-west-1"),
    ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
    (
        "AWS_SECRET_ACCESS_KEY",
        "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
    ),
];

fn with(extra: &[(&'static str, &'static str)]) -> (Config, Vec<Problem>) {
    let mut v = BASE.to_vec();
    v.extend_from_slice(extra);
    parse(&v)
}

#[test]
fn defaults_are_valid_and_complete() {
    let (c, problems) = with(&[]);
    assert!(problems.is_empty(), "{problems:?}");
    let d = c.access.expect("access configured");
    assert_eq!(d.stream, StreamTarget::Name("telemetry".into()));
    assert_eq!(d.endpoint, "https://kinesis.eu-west-1.amazonaws.com");
    assert_eq!(c.port, 4243);
    assert_eq!(c.subscription.schema_version, "2022-12-13");
    assert_eq!(c.subscription.types, ["platform", "function", "extension"]);
    assert_eq!(
        c.subscription.buffering.timeout_ms, 25,
        "adaptive waits for runtimeDone"
    );
    assert_eq!(c.pacing.strategy, Strategy::Adaptive);
    assert_eq!(c.pacing.freshness, Duration::from_secs(1));
    assert_eq!(c.records.format, RecordFormat::Ndjson);
    assert_eq!(c.records.target_bytes, 25_000);
    assert_eq!(c.records.limits, Limits::default());
    assert!(c.enrich);
    assert!(c.metrics.enabled);
    assert_eq!(c.metrics.dimensions, [Dimension::FunctionName]);
    assert_eq!(c.spill.max_bytes, 0, "spill is off by default");
    assert!(c.filter.is_noop());
    assert!(!c.lambda.managed_instances);
    assert!(!c.fail_on_error);
}

#[test]
fn node_sample_variable_is_a_fallback() {
    let (c, problems) = parse(&[
        ("KINESIS_STREAM_NAME", "legacy"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "A"),
        ("AWS_SECRET_ACCESS_KEY", "S"),
    ]);
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(
        c.access.unwrap().stream,
        StreamTarget::Name("legacy".into())
    );
}

#[test]
fn arn_region_wins_and_china_endpoint() {
    let (c, problems) = with(&[(
        "KINESIS_TELEMETRY_STREAM",
        "arn:aws-cn:kinesis:cn-north-1:123456789012:stream/logs",
    )]);
    assert!(problems.is_empty(), "{problems:?}");
    let d = c.access.unwrap();
    assert_eq!(d.region, "cn-north-1");
    assert_eq!(d.endpoint, "https://kinesis.cn-north-1.amazonaws.com.cn");
}

#[test]
fn endpoint_precedence() {
    let (c, _) = with(&[
        ("AWS_ENDPOINT_URL", "http://general:1"),
        ("AWS_ENDPOINT_URL_KINESIS", "http://kinesis-specific:2/"),
    ]);
    assert_eq!(c.access.unwrap().endpoint, "http://kinesis-specific:2");
    let (c, _) = with(&[
        ("AWS_ENDPOINT_URL_KINESIS", "http://kinesis-specific:2"),
        ("KINESIS_TELEMETRY_ENDPOINT", "https://mine:3"),
    ]);
    assert_eq!(c.access.unwrap().endpoint, "https://mine:3");
}

#[test]
fn invalid_values_name_the_variable_and_fall_back() {
    let (c, problems) = with(&[
        ("KINESIS_TELEMETRY_PORT", "9001"),
        ("KINESIS_TELEMETRY_BUFFERING_TIMEOUT_MS", "5"),
        ("KINESIS_TELEMETRY_TYPES", "platform,bogus"),
        ("KINESIS_TELEMETRY_FAIL_ON_ERROR", "maybe"),
        ("KINESIS_TELEMETRY_FLUSH_STRATEGY", "sometimes"),
        ("KINESIS_TELEMETRY_RECORD_FORMAT", "xml"),
        ("KINESIS_TELEMETRY_MIN_LEVEL", "loud"),
        ("KINESIS_TELEMETRY_SPILL_MAX_BYTES", "1000"),
        ("KINESIS_TELEMETRY_METRICS_DIMENSIONS", "Colour"),
    ]);
    assert_eq!(problems.len(), 9, "{problems:?}");
    let about = |var: &str| {
        problems
            .iter()
            .find(|p| p.message.starts_with(var))
            .unwrap_or_else(|| panic!("no problem names {var}: {problems:?}"))
            .message
            .clone()
    };
    assert!(about("KINESIS_TELEMETRY_PORT=\"9001\"").contains("other than 9001"));
    assert!(about("KINESIS_TELEMETRY_BUFFERING_TIMEOUT_MS=\"5\"").contains("25..=30000"));
    assert!(about("KINESIS_TELEMETRY_TYPES").contains("\"bogus\""));
    assert!(about("KINESIS_TELEMETRY_FAIL_ON_ERROR").contains("true or false"));
    assert!(about("KINESIS_TELEMETRY_FLUSH_STRATEGY").contains("adaptive, end, background"));
    assert!(about("KINESIS_TELEMETRY_RECORD_FORMAT").contains("ndjson, event, kpl"));
    assert!(about("KINESIS_TELEMETRY_MIN_LEVEL").contains("none, trace, debug"));
    assert!(about("KINESIS_TELEMETRY_SPILL_MAX_BYTES").contains("0 (off)"));
    assert!(about("KINESIS_TELEMETRY_METRICS_DIMENSIONS").contains("FunctionName"));
    assert!(problems.iter().all(|p| !p.disables_delivery));
    assert_eq!(c.port, 4243);
    assert_eq!(
        c.subscription.buffering.timeout_ms,
        BUFFERING_TIMEOUT_MS.default
    );
    assert_eq!(c.pacing.strategy, Strategy::Adaptive);
    assert_eq!(c.records.format, RecordFormat::Ndjson);
    assert_eq!(c.spill.max_bytes, 0);
    assert!(c.access.is_some());
}

#[test]
fn kinesis_limits_are_clamped_not_refused() {
    let (c, problems) = with(&[
        ("KINESIS_TELEMETRY_MAX_RECORDS_PER_REQUEST", "501"),
        ("KINESIS_TELEMETRY_MAX_REQUEST_BYTES", "99999999999"),
    ]);
    assert_eq!(c.records.limits.max_records, 500);
    assert_eq!(
        c.records.limits.max_request_bytes,
        batch::HARD_MAX_REQUEST_BYTES
    );
    assert_eq!(problems.len(), 2);
    assert!(problems[0].message.contains("above the Kinesis maximum"));
}

#[test]
fn the_record_target_never_exceeds_the_record_limit() {
    let (c, _) = with(&[
        ("KINESIS_TELEMETRY_RECORD_TARGET_BYTES", "2000000"),
        ("KINESIS_TELEMETRY_MAX_RECORD_BYTES", "1048576"),
    ]);
    assert_eq!(c.records.target_bytes, 1_048_576);
}

#[test]
fn strategies_choose_the_subscription_timeout_and_platform_is_always_subscribed() {
    let (c, _) = with(&[
        ("KINESIS_TELEMETRY_FLUSH_STRATEGY", "background"),
        ("KINESIS_TELEMETRY_TYPES", "function"),
    ]);
    assert_eq!(c.pacing.strategy, Strategy::Background);
    assert_eq!(c.subscription.buffering.timeout_ms, 100);
    assert_eq!(c.subscription.types, ["platform", "function"]);
    assert!(!c.filter.types.wants("platform.report"));
    let (c, _) = with(&[
        ("KINESIS_TELEMETRY_FLUSH_STRATEGY", "END"),
        ("KINESIS_TELEMETRY_BUFFERING_TIMEOUT_MS", "200"),
    ]);
    assert_eq!(c.pacing.strategy, Strategy::End);
    assert_eq!(
        c.subscription.buffering.timeout_ms, 200,
        "an explicit value wins"
    );
}

/// The names the start-up line prints are the values the settings accept, so a user can
/// copy them from the log into a function's configuration.
#[test]
fn strategy_and_partition_key_names_read_back_as_themselves() {
    for (name, strategy) in STRATEGIES {
        assert_eq!(strategy.name(), name);
        let (c, problems) = parse(&[("KINESIS_TELEMETRY_FLUSH_STRATEGY", name)]);
        assert!(problems
            .iter()
            .all(|p| !p.message.contains("FLUSH_STRATEGY")));
        assert_eq!(c.pacing.strategy, strategy);
    }
    for (name, mode) in PARTITION_KEYS {
        assert_eq!(mode.name(), name);
        let (c, problems) = parse(&[("KINESIS_TELEMETRY_PARTITION_KEY", name)]);
        assert!(problems
            .iter()
            .all(|p| !p.message.contains("PARTITION_KEY")));
        assert_eq!(c.records.partition_key, mode);
    }
}

#[test]
fn event_types_and_levels_filter() {
    let (c, problems) = with(&[
        ("KINESIS_TELEMETRY_TYPES", "platform.report,function"),
        ("KINESIS_TELEMETRY_MIN_LEVEL", "WARN"),
    ]);
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(c.subscription.types, ["platform", "function"]);
    assert!(c.filter.types.wants("platform.report"));
    assert!(!c.filter.types.wants("platform.start"));
    assert_eq!(c.filter.min_level, Some(LogLevel::Warn));
}

#[test]
fn managed_instances_are_detected_and_force_their_schema() {
    let (c, problems) = with(&[
        ("AWS_LAMBDA_INITIALIZATION_TYPE", "lambda-managed-instances"),
        ("AWS_LAMBDA_MAX_CONCURRENCY", "8"),
    ]);
    assert!(problems.is_empty(), "{problems:?}");
    assert!(c.lambda.managed_instances);
    assert_eq!(c.lambda.max_concurrency, Some(8));
    assert_eq!(c.subscription.schema_version, "2025-01-29");
    let (c, problems) = with(&[
        ("AWS_LAMBDA_INITIALIZATION_TYPE", "lambda-managed-instances"),
        ("KINESIS_TELEMETRY_SCHEMA_VERSION", "2022-12-13"),
    ]);
    assert_eq!(c.subscription.schema_version, "2025-01-29");
    assert!(
        problems[0].message.contains("Managed Instances"),
        "{problems:?}"
    );
    let (c, _) = with(&[("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand")]);
    assert!(!c.lambda.managed_instances);
}

#[test]
fn snap_start_and_the_tenant_key_are_read() {
    let (c, problems) = with(&[
        ("AWS_LAMBDA_INITIALIZATION_TYPE", "snap-start"),
        ("KINESIS_TELEMETRY_PARTITION_KEY", "tenant"),
    ]);
    assert!(problems.is_empty(), "{problems:?}");
    assert!(c.lambda.snap_start && !c.lambda.managed_instances);
    assert_eq!(c.records.partition_key, PartitionKeyMode::Tenant);
    let (c, _) = with(&[("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand")]);
    assert!(!c.lambda.snap_start);
}

#[test]
fn the_retired_flush_age_is_read_as_the_freshness_budget_with_a_warning() {
    let (c, problems) = with(&[("KINESIS_TELEMETRY_FLUSH_MAX_AGE_MS", "0")]);
    assert_eq!(c.pacing.freshness, Duration::ZERO);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].message.contains("retired"));
    assert!(problems[0]
        .message
        .contains("KINESIS_TELEMETRY_FRESHNESS_MS"));
    let (c, _) = with(&[
        ("KINESIS_TELEMETRY_FLUSH_MAX_AGE_MS", "0"),
        ("KINESIS_TELEMETRY_FRESHNESS_MS", "300"),
    ]);
    assert_eq!(
        c.pacing.freshness,
        Duration::from_millis(300),
        "the new name wins"
    );
}

#[test]
fn a_mistyped_setting_warns_with_the_closest_name() {
    let (c, problems) = with(&[("KINESIS_TELEMETRY_TYPEZ", "x")]);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0]
            .message
            .contains("did you mean KINESIS_TELEMETRY_TYPES?"),
        "{}",
        problems[0].message
    );
    assert!(c.access.is_some());
}

#[test]
fn missing_essentials_disable_delivery_with_named_causes() {
    let (c, problems) = parse(&[("AWS_REGION", "us-east-1")]);
    assert!(c.access.is_none());
    let text: Vec<_> = problems.iter().map(|p| p.message.as_str()).collect();
    assert!(text[0].contains("KINESIS_TELEMETRY_STREAM"), "{text:?}");
    assert!(text[1].contains("AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"));
    assert!(problems.iter().all(|p| p.disables_delivery));
    let (c, problems) = with(&[("KINESIS_TELEMETRY_STREAM", "bad name")]);
    assert!(c.access.is_none());
    assert!(problems[0].message.contains("is invalid"), "{problems:?}");
    assert!(problems[0].disables_delivery);
}

#[test]
fn secrets_never_appear_in_debug_or_problems() {
    let (c, problems) = with(&[
        ("AWS_SESSION_TOKEN", "TOKENSECRET"),
        ("KINESIS_TELEMETRY_PORT", "x"),
    ]);
    let dump = format!("{c:?} {problems:?}");
    assert!(!dump.contains("EXAMPLEKEY"));
    assert!(!dump.contains("TOKENSECRET"));
}

/// The rows of a Markdown settings table: `| `KINESIS_TELEMETRY_X` | `default` | ...`, by
/// full name, with the default as written (the quoted value, or the cell as it is).
fn settings_rows(doc: &str, text: &str) -> HashMap<String, String> {
    let mut rows: HashMap<String, String> = HashMap::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("| `KINESIS_TELEMETRY_") else {
            continue;
        };
        let cells: Vec<&str> = rest.split(" | ").collect();
        let name = format!(
            "KINESIS_TELEMETRY_{}",
            cells[0].trim_end_matches('`').trim()
        );
        let default_cell = cells.get(1).copied().unwrap_or("").trim();
        let default = match default_cell.split('`').nth(1) {
            Some(quoted) if default_cell.starts_with('`') => quoted.to_string(),
            _ => default_cell.to_string(),
        };
        assert!(
            rows.insert(name.clone(), default).is_none(),
            "{name} twice in {doc}"
        );
    }
    rows
}

/// The full settings table (docs/settings.md) and the code agree: every variable, and its
/// default, and nothing else.
#[test]
fn the_settings_reference_matches_the_code() {
    let rows = settings_rows("docs/settings.md", include_str!("../../docs/settings.md"));
    let code: HashMap<String, String> = documented().into_iter().collect();
    for (name, default) in &code {
        let documented = rows
            .get(name)
            .unwrap_or_else(|| panic!("{name} has no row in docs/settings.md"));
        assert_eq!(documented, default, "docs/settings.md default of {name}");
    }
    for name in rows.keys() {
        assert!(
            code.contains_key(name),
            "docs/settings.md documents unknown {name}"
        );
    }
}

/// The README's shorter table (the settings most users touch) names only real settings, with
/// their real defaults.
#[test]
fn the_readme_settings_rows_match_the_code() {
    let rows = settings_rows("README.md", include_str!("../../README.md"));
    assert!(!rows.is_empty(), "the README has a settings table");
    let code: HashMap<String, String> = documented().into_iter().collect();
    for (name, default) in &rows {
        let real = code
            .get(name)
            .unwrap_or_else(|| panic!("README documents unknown {name}"));
        assert_eq!(default, real, "README default of {name}");
    }
}

mod properties {
    //! Setting values: whatever a variable holds, reading it never panics and yields a value
    //! in range or a problem naming the variable. The whole-config oracle is
    //! `fuzzing::check_settings` (shared with the `setting_values` fuzz target).
    use crate::config::reader::{Documented, Reader};
    use crate::config::{KNOWN, PREFIX};
    use crate::fuzzing::check_settings;
    use proptest::prelude::*;
    use proptest::sample::select;

    fn value() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<String>(),
            prop::collection::vec(
                select(vec!['0', '1', '5', '9', '_', ' ', '+', '-', '.', 'e', 'x']),
                0..24
            )
            .prop_map(String::from_iter),
            select(vec![
                "0",
                "1",
                "9001",
                "1e3",
                "18446744073709551616",
                "-1",
                " 42 ",
                "1_000",
                "true",
                "kpl",
                "none",
                "platform.report,function",
                "FunctionName,StreamName",
                ":x",
                "arn:aws:kinesis:eu-west-1:123456789012:stream/s",
                "http://127.0.0.1:1",
            ])
            .prop_map(str::to_string),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3_000))]

        #[test]
        fn any_values_of_any_settings(
            vars in prop::collection::vec((0..KNOWN.len(), value()), 0..8)
        ) {
            let vars: Vec<(String, String)> = vars
                .into_iter()
                .map(|(i, v)| (format!("{PREFIX}{}", KNOWN[i].name), v))
                .collect();
            check_settings(&vars);
        }

        #[test]
        fn an_integer_setting_is_in_range_or_a_problem(i in 0..KNOWN.len(), v in value()) {
            let Documented::Int(int) = KNOWN[i].default else {
                return Ok(());
            };
            let var = format!("{PREFIX}{}", int.name);
            let get = |name: &str| (name == var).then(|| v.clone());
            let mut r = Reader { get: &get, problems: Vec::new() };
            let n = r.int(int);
            prop_assert!((int.min..=int.max).contains(&n), "{} = {n}", int.name);
            let t = v.trim().replace('_', "");
            let taken = t.parse::<u64>().ok().filter(|n| (int.min..=int.max).contains(n));
            match taken {
                Some(given) => {
                    prop_assert_eq!(n, given);
                    prop_assert!(r.problems.is_empty());
                }
                None if v.trim().is_empty() => prop_assert_eq!(n, int.default),
                None => prop_assert!(
                    r.problems.iter().any(|p| p.message.contains(&var)),
                    "{var}={v:?} gave {n} silently"
                ),
            }
        }
    }
}

/// What a SnapStart function's environment holds instead of the keys.
const SNAP_START: [(&str, &str); 4] = [
    ("KINESIS_TELEMETRY_STREAM", "telemetry"),
    ("AWS_REGION", "eu-west-1"),
    (
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "http://127.0.0.1:9001/2021-04-23/credentials",
    ),
    ("AWS_CONTAINER_AUTHORIZATION_TOKEN", "header-token"),
];

fn credentials_of(vars: &[(&str, &str)]) -> (Option<CredentialSource>, Vec<Problem>) {
    let (c, problems) = parse(vars);
    (c.access.map(|a| a.credentials), problems)
}

#[test]
fn without_keys_the_container_endpoint_gives_the_credentials() {
    use crate::kinesis::{AuthToken, ContainerEndpoint};
    let (source, problems) = credentials_of(&SNAP_START);
    assert!(problems.is_empty(), "{problems:?}");
    let endpoint = |token| {
        Some(CredentialSource::Container(ContainerEndpoint {
            uri: "http://127.0.0.1:9001/2021-04-23/credentials".into(),
            token,
        }))
    };
    assert_eq!(source, endpoint(AuthToken::Value("header-token".into())));
    // The token file wins over the value, as in the SDKs (and is read at each fetch).
    let mut vars = SNAP_START.to_vec();
    vars.push(("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", "/var/run/token"));
    let (source, _) = credentials_of(&vars);
    assert_eq!(source, endpoint(AuthToken::File("/var/run/token".into())));
    // The keys win over the endpoint, as in the SDKs' chain.
    vars.extend([
        ("AWS_ACCESS_KEY_ID", "AKID"),
        ("AWS_SECRET_ACCESS_KEY", "S"),
    ]);
    let (source, _) = credentials_of(&vars);
    assert!(
        matches!(source, Some(CredentialSource::Environment(_))),
        "{source:?}"
    );
}

#[test]
fn an_endpoint_the_sdks_would_refuse_is_one_line_naming_the_variable() {
    let mut vars = SNAP_START.to_vec();
    vars[2].1 = "http://10.0.0.1/credentials";
    let (source, problems) = credentials_of(&vars);
    assert!(source.is_none());
    assert_eq!(problems.len(), 1, "{problems:?}");
    let line = &problems[0].message;
    assert!(
        line.contains("AWS_CONTAINER_CREDENTIALS_FULL_URI") && line.contains("loopback"),
        "{line}"
    );
    assert!(problems[0].disables_delivery);
}

#[test]
fn credentials_missing_names_every_way_to_give_them() {
    let (source, problems) = credentials_of(&SNAP_START[..2]);
    assert!(source.is_none());
    let line = &problems[0].message;
    for var in [
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_CONTAINER_AUTHORIZATION_TOKEN",
        "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
    ] {
        assert!(line.contains(var), "{var}: {line}");
    }
}
