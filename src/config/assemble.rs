//! The settings each part of the pipeline takes, assembled from a [`Config`] in one place,
//! so that the modules below never see `Config` (each owns its settings type) and the wiring
//! in `lib.rs` only connects threads. Pure: nothing here reads the environment or starts
//! anything.

use std::sync::Arc;
use std::time::Duration;

use super::{Config, StreamAccess, MANAGED_INSTANCES_SCHEMA_VERSION};
use crate::delivery::flusher;
use crate::delivery::records::{self, RecordFormat};
use crate::intake::enrich::{FunctionInfo, Origin};
use crate::intake::listener::ListenerLimits;
use crate::intake::receiver::ReceiverSettings;
use crate::intake::snapstart::Environment;
use crate::kinesis::ClientSettings;
use crate::lifecycle::runtime_api::{Registration, Subscription};
use crate::metrics::DimensionValues;

/// The Kinesis client's endpoint, region, credentials, connect timeout and trust.
pub fn client_settings(config: &Config, access: &StreamAccess) -> ClientSettings {
    ClientSettings {
        endpoint: access.endpoint.clone(),
        region: access.region.clone(),
        credentials: access.credentials.clone(),
        connect_timeout: config.http.connect_timeout,
        ca_file: config.http.ca_file.clone(),
    }
}

/// The function as enrichment and the metrics name it: what registration said, else the
/// environment's variables.
pub fn function_info(
    config: &Config,
    access: &StreamAccess,
    registration: &Registration,
) -> FunctionInfo {
    FunctionInfo {
        name: registration
            .function_name
            .clone()
            .unwrap_or_else(|| config.lambda.function_name.clone()),
        version: registration
            .function_version
            .clone()
            .unwrap_or_else(|| config.lambda.function_version.clone()),
        region: access.region.clone(),
        account: registration.account_id.clone(),
        memory_mb: config.lambda.memory_mb,
    }
}

/// The listener's limits: the largest body the subscription's buffering can send.
pub fn listener_limits(config: &Config) -> ListenerLimits {
    ListenerLimits {
        max_body: config.max_body_bytes(),
        ..ListenerLimits::default()
    }
}

/// The receiver's filter, enrichment, partition keys and event size budget.
/// `concurrent`: Lambda Managed Instances (invocations overlap).
pub fn receiver_settings(
    config: &Config,
    function: &FunctionInfo,
    origin: &Origin,
    environment: Arc<Environment>,
    concurrent: bool,
) -> ReceiverSettings {
    let added = if config.enrich {
        origin.max_added_len()
    } else {
        0
    };
    let r = &config.records;
    ReceiverSettings {
        filter: config.filter.clone(),
        origin: config.enrich.then(|| origin.clone()),
        partition_key: r.partition_key,
        fixed_key: r.partition_key.fixed_at_start(&function.name),
        environment,
        concurrent,
        max_event_bytes: records::max_event_bytes(&r.limits, r.format, added),
        one_line: r.format == RecordFormat::Ndjson,
        buffering: config.subscription.buffering,
    }
}

/// The values of the metrics' dimensions.
pub fn dimension_values(function: &FunctionInfo, access: &StreamAccess) -> DimensionValues {
    DimensionValues {
        function_name: function.name.clone(),
        function_version: function.version.clone(),
        stream_name: access.stream.stream_name().to_string(),
    }
}

/// The flusher's pacing, records, transport and shutdown settings.
pub fn flusher_settings(config: &Config) -> flusher::Settings {
    flusher::Settings {
        pacing: config.pacing.clone(),
        records: config.records.clone(),
        http: config.http.clone(),
        shutdown_grace: config.shutdown_grace,
        buffering_timeout: Duration::from_millis(config.subscription.buffering.timeout_ms),
    }
}

/// The Telemetry API subscription. Registered for SHUTDOWN only without the variable saying
/// so (`concurrent`, the fallback): a Managed Instances environment, which requires this
/// schema (accepted on default Lambda too).
pub fn subscription(config: &Config, concurrent: bool) -> Subscription {
    let mut subscription = config.subscription.clone();
    if concurrent {
        subscription.schema_version = MANAGED_INSTANCES_SCHEMA_VERSION.to_string();
    }
    subscription
}

/// The settings in force once subscribed on `port`, after every invalid value fell back to
/// its default: the one place where the log says what this environment actually does (the
/// sandbox reads it).
pub fn subscribed_line(
    config: &Config,
    access: &StreamAccess,
    port: u16,
    concurrent: bool,
) -> String {
    let sending = if concurrent {
        "sending continuously".to_string()
    } else {
        format!("pacing {}", config.pacing.strategy.name())
    };
    format!(
        "subscribed to {} telemetry on port {port} (keeping {}); delivering to {} in {} as {} records, partition key {}, enrichment {}; {sending}, freshness budget {} ms, added-time budget {} ms",
        config.subscription.types.join(","),
        config.filter.describe(),
        access.stream,
        access.region,
        config.records.format.name(),
        config.records.partition_key.name(),
        if config.enrich { "on" } else { "off" },
        config.pacing.freshness.as_millis(),
        config.pacing.max_added.as_millis()
    )
}
