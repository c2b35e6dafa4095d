//! Realistic Telemetry API events with unique markers, shaped like the samples in the
//! Lambda "Telemetry API schema reference": platform lifecycle events, `function`
//! records in the Text and JSON log formats, `extension` records, and odd but valid
//! JSON text whose bytes must survive untouched. Lambda Managed Instances have their own
//! shapes: `initializationType: "lambda-managed-instances"` in `platform.initStart`, no
//! `platform.runtimeDone`, and a slim `platform.report` ([`EventFactory::report_managed`]).
//!
//! What the 2025–26 platform adds, from the same reference and the guides named below:
//! - SnapStart: `initializationType: "snap-start"` in `platform.initStart`; after the
//!   restore `platform.restoreStart` (the function and runtime, like `initStart`),
//!   `platform.restoreRuntimeDone` (status, spans) and `platform.restoreReport` (status,
//!   `metrics.durationMs`), then the first invocation's `platform.report` with
//!   `metrics.restoreDurationMs` ("Lambda SnapStart", "Telemetry API schema reference").
//! - Tenant isolation mode: with [`EventFactory::tenant`] set, `platform.start` carries
//!   `functionArn` and `tenantId`, and the invocation's `platform.report` and JSON log lines
//!   carry `tenantId` ("Monitoring Lambda functions with tenant isolation"); Text lines and
//!   `platform.runtimeDone` do not.
//! - `platform.runtimeDone` spans: `responseLatency`, `responseDuration` (response
//!   streaming's time to the last byte) and `runtimeOverhead`.
//! - `platform.extension` and `platform.telemetrySubscription` (an extension registered, a
//!   subscription made).
//!
//! Every event a factory makes is distinct (request ids are fresh, log lines carry a
//! marker `mk-<run>-<n>`), so delivery can be checked as an exact multiset.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use serde_json::{json, Value};

use super::clock::iso8601_ms;
use super::rng::fresh_uuid;

/// `initializationType` (and `AWS_LAMBDA_INITIALIZATION_TYPE`) on Lambda Managed Instances.
pub const MANAGED_INSTANCES_INIT_TYPE: &str = "lambda-managed-instances";
/// `initializationType` (and `AWS_LAMBDA_INITIALIZATION_TYPE`) with SnapStart.
pub const SNAP_START_INIT_TYPE: &str = "snap-start";
/// The restore events, in the order Lambda emits them.
pub const RESTORE_TYPES: [&str; 3] = [
    "platform.restoreStart",
    "platform.restoreRuntimeDone",
    "platform.restoreReport",
];

/// Makes events for one fake function.
pub struct EventFactory {
    run: String,
    counter: u64,
    pub function_name: String,
    pub version: String,
    pub memory_mb: u64,
    /// Tenant isolation mode: the tenant of the invocations started from now on.
    pub tenant: Option<String>,
    /// Each started invocation's tenant (its report and JSON lines name it).
    tenants: HashMap<String, String>,
    /// The restore's duration, for the next `platform.report` (`restoreDurationMs`).
    restored_ms: Option<f64>,
}

impl Default for EventFactory {
    fn default() -> Self {
        EventFactory::new("fake-function")
    }
}

impl EventFactory {
    pub fn new(function_name: &str) -> Self {
        EventFactory {
            run: fresh_uuid()[..8].to_owned(),
            counter: 0,
            function_name: function_name.to_owned(),
            version: "$LATEST".to_owned(),
            memory_mb: 128,
            tenant: None,
            tenants: HashMap::new(),
            restored_ms: None,
        }
    }

    /// The tenant `request_id` was started for (tenant isolation mode).
    pub fn tenant_of(&self, request_id: &str) -> Option<&str> {
        self.tenants.get(request_id).map(String::as_str)
    }

    /// A new marker, unique across factories and processes.
    pub fn marker(&mut self) -> String {
        self.counter += 1;
        format!("mk-{}-{}", self.run, self.counter)
    }

    fn now() -> String {
        iso8601_ms(SystemTime::now())
    }

    fn tracing() -> Value {
        json!({ "spanId": &fresh_uuid().replace('-', "")[..16], "type": "X-Amzn-Trace-Id",
                "value": format!("Root=1-{};Parent={};Sampled=1", &fresh_uuid().replace('-', "")[..32],
                                 &fresh_uuid().replace('-', "")[..16]) })
    }

    pub fn init_start(&mut self) -> Value {
        self.init_start_of("on-demand")
    }

    /// `platform.initStart` on Lambda Managed Instances.
    pub fn init_start_managed(&mut self) -> Value {
        self.init_start_of(MANAGED_INSTANCES_INIT_TYPE)
    }

    /// `platform.initStart` of a SnapStart function (the init runs when a version is published).
    pub fn init_start_snap_start(&mut self) -> Value {
        self.init_start_of(SNAP_START_INIT_TYPE)
    }

    /// `platform.restoreStart`: an environment resumed from the snapshot.
    pub fn restore_start(&mut self) -> Value {
        json!({ "time": Self::now(), "type": "platform.restoreStart", "record": {
            "runtimeVersion": "java:21.v30",
            "runtimeVersionArn": "arn:aws:lambda:us-east-1::runtime:6e1d4d0d1c1c7d0b9c2e8c0f3b7a1f2e5d4c3b2a1f0e9d8c7b6a5f4e3d2c1b0a",
            "functionName": self.function_name, "functionVersion": self.version,
            "instanceId": self.marker(), "instanceMaxMemory": self.memory_mb } })
    }

    /// A line the function's after-restore hook prints (between restoreStart and restoreRuntimeDone).
    pub fn restore_hook_line(&mut self) -> Value {
        let m = self.marker();
        json!({ "time": Self::now(), "type": "function",
                "record": format!("{}\tafterRestore: reconnecting pool {m}\n", Self::now()) })
    }

    /// `platform.restoreRuntimeDone`: the runtime's after-restore hooks finished.
    pub fn restore_runtime_done(&mut self, duration: Duration) -> Value {
        json!({ "time": Self::now(), "type": "platform.restoreRuntimeDone", "record": {
            "status": "success",
            "spans": [{ "name": "restoreHooks", "start": Self::now(),
                        "durationMs": duration.as_secs_f64() * 1000.0 }] } })
    }

    /// `platform.restoreReport`.
    pub fn restore_report(&mut self, duration: Duration) -> Value {
        let ms = duration.as_secs_f64() * 1000.0;
        json!({ "time": Self::now(), "type": "platform.restoreReport", "record": {
            "status": "success", "metrics": { "durationMs": ms } } })
    }

    /// The environment was restored in `duration`: the next `platform.report` says so
    /// (`restoreDurationMs`), as the first invocation's after a restore does.
    pub fn note_restore(&mut self, duration: Duration) {
        self.restored_ms = Some(duration.as_secs_f64() * 1000.0);
    }

    /// `platform.extension`: an extension registered.
    pub fn platform_extension(&mut self, name: &str) -> Value {
        json!({ "time": Self::now(), "type": "platform.extension", "record": {
            "name": name, "state": "Ready", "events": ["INVOKE", "SHUTDOWN"] } })
    }

    /// `platform.telemetrySubscription`: an extension subscribed.
    pub fn telemetry_subscription(&mut self, name: &str, types: &[&str]) -> Value {
        json!({ "time": Self::now(), "type": "platform.telemetrySubscription", "record": {
            "name": name, "state": "Subscribed", "types": types } })
    }

    fn init_start_of(&mut self, initialization_type: &str) -> Value {
        json!({ "time": Self::now(), "type": "platform.initStart", "record": {
            "initializationType": initialization_type, "phase": "init", "runtimeVersion": "nodejs:20.v13",
            "runtimeVersionArn": "arn:aws:lambda:us-east-1::runtime:0cdcfbdefbc5e7d3343f73c2e2dd4cba17d61dea0686b404502a0c9ce83931b9",
            "functionName": self.function_name, "functionVersion": self.version,
            "instanceId": self.marker(), "instanceMaxMemory": self.memory_mb * 1024 * 1024 } })
    }

    pub fn platform_start(&mut self, request_id: &str) -> Value {
        let mut e = json!({ "time": Self::now(), "type": "platform.start",
                "record": { "requestId": request_id, "version": self.version, "tracing": Self::tracing() } });
        if let Some(t) = self.tenant.clone() {
            e["record"]["functionArn"] = json!(format!(
                "arn:aws:lambda:us-east-1:123456789012:function:{}",
                self.function_name
            ));
            e["record"]["tenantId"] = json!(t);
            self.tenants.insert(request_id.to_owned(), t);
        }
        e
    }

    /// Adds the invocation's `tenantId` to a record that names it (report, JSON lines).
    fn with_tenant(&self, mut e: Value, request_id: &str) -> Value {
        if let Some(t) = self.tenants.get(request_id) {
            e["record"]["tenantId"] = json!(t);
        }
        e
    }

    pub fn runtime_done(&mut self, request_id: &str, duration: Duration) -> Value {
        let ms = duration.as_secs_f64() * 1000.0;
        json!({ "time": Self::now(), "type": "platform.runtimeDone", "record": {
            "requestId": request_id, "status": "success", "tracing": Self::tracing(),
            "spans": [{ "name": "responseLatency", "start": Self::now(), "durationMs": ms / 2.0 },
                      { "name": "responseDuration", "start": Self::now(), "durationMs": 0.12 },
                      { "name": "runtimeOverhead", "start": Self::now(), "durationMs": 0.31 }],
            "metrics": { "durationMs": ms, "producedBytes": 53 } } })
    }

    pub fn report(&mut self, request_id: &str, duration: Duration) -> Value {
        let ms = duration.as_secs_f64() * 1000.0;
        let mut e = json!({ "time": Self::now(), "type": "platform.report", "record": {
            "requestId": request_id, "status": "success", "tracing": Self::tracing(),
            "metrics": { "durationMs": ms, "billedDurationMs": ms.ceil() as u64,
                         "memorySizeMB": self.memory_mb, "maxMemoryUsedMB": 71 } } });
        if let Some(r) = self.restored_ms.take() {
            e["record"]["metrics"]["restoreDurationMs"] = json!(r);
        }
        self.with_tenant(e, request_id)
    }

    /// `platform.report` on Lambda Managed Instances: `durationMs` is its only metric, and it
    /// carries the response spans itself (there is no `platform.runtimeDone`).
    pub fn report_managed(&mut self, request_id: &str, duration: Duration) -> Value {
        let ms = duration.as_secs_f64() * 1000.0;
        let e = json!({ "time": Self::now(), "type": "platform.report", "record": {
            "requestId": request_id, "status": "success", "tracing": Self::tracing(),
            "spans": [{ "name": "responseLatency", "start": Self::now(), "durationMs": ms / 2.0 },
                      { "name": "responseDuration", "start": Self::now(), "durationMs": 0.12 }],
            "metrics": { "durationMs": ms } } });
        self.with_tenant(e, request_id)
    }

    /// A `function` record in the Text log format (a string, with the tab layout of Node's console).
    pub fn function_text(&mut self, request_id: &str) -> Value {
        let m = self.marker();
        json!({ "time": Self::now(), "type": "function",
                "record": format!("{}\t{request_id}\tINFO\tprocessing order {m} \"quoted\" caf\u{e9} \u{1F680}\n", Self::now()) })
    }

    /// A `function` record in the JSON log format (an object).
    pub fn function_json(&mut self, request_id: &str) -> Value {
        let m = self.marker();
        let e = json!({ "time": Self::now(), "type": "function", "record": {
            "timestamp": Self::now(), "level": "INFO", "requestId": request_id,
            "message": format!("order {m} shipped"), "items": [1, 2.5, null, true] } });
        self.with_tenant(e, request_id)
    }

    /// A `function` record whose text is about `bytes` long (for size limits).
    pub fn function_sized(&mut self, request_id: &str, bytes: usize) -> Value {
        let m = self.marker();
        let pad = "x".repeat(bytes.saturating_sub(m.len() + request_id.len() + 3));
        json!({ "time": Self::now(), "type": "function", "record": format!("{request_id}\t{m} {pad}\n") })
    }

    pub fn extension_text(&mut self) -> Value {
        let m = self.marker();
        json!({ "time": Self::now(), "type": "extension", "record": format!("[other-ext] flushed {m}") })
    }

    /// A type this code has never heard of: must be carried through, not rejected.
    pub fn unknown_type(&mut self) -> Value {
        let m = self.marker();
        json!({ "time": Self::now(), "type": "platform.futureThing", "record": { "marker": m, "nested": { "a": [] } } })
    }

    /// Valid JSON whose exact bytes (spacing, escapes, key order, number spelling)
    /// differ from what a serializer would produce: only a byte-exact forwarder keeps them.
    pub fn oddly_formatted(&mut self) -> String {
        let m = self.marker();
        format!(
            "{{ \"type\" : \"function\",\n  \"time\":\"{}\", \"record\" : \"caf\\u00e9 \\/ {m} \\ud83d\\ude80\", \"z\": 1.50E+2 }}",
            Self::now()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_valid_json_and_distinct() {
        let mut f = EventFactory::default();
        let rid = fresh_uuid();
        let texts: Vec<String> = vec![
            f.function_text(&rid).to_string(),
            f.function_json(&rid).to_string(),
            f.oddly_formatted(),
            f.unknown_type().to_string(),
        ];
        for t in &texts {
            serde_json::from_str::<Value>(t).unwrap();
        }
        let mut dedup = texts.clone();
        dedup.sort();
        dedup.dedup();
        assert_eq!(dedup.len(), texts.len());
        // The odd one does not survive a parse/serialize round trip: good for byte checks.
        let odd = &texts[2];
        assert_ne!(
            &serde_json::from_str::<Value>(odd).unwrap().to_string(),
            odd
        );
    }

    #[test]
    fn factory_has_the_tenant_and_snap_start_shapes() {
        let mut f = EventFactory::default();
        assert_eq!(
            f.init_start_snap_start()["record"]["initializationType"],
            "snap-start"
        );
        let plain = f.platform_start("r-0");
        assert!(plain["record"].get("tenantId").is_none());
        f.tenant = Some("BlueTenant".into());
        let start = f.platform_start("r-1");
        assert_eq!(start["record"]["tenantId"], "BlueTenant");
        assert!(start["record"]["functionArn"]
            .as_str()
            .unwrap()
            .ends_with(":function:fake-function"));
        f.tenant = Some("GreenTenant".into());
        // The report and JSON lines name their own invocation's tenant, whatever comes next.
        assert_eq!(
            f.report("r-1", Duration::from_millis(3))["record"]["tenantId"],
            "BlueTenant"
        );
        assert_eq!(f.function_json("r-1")["record"]["tenantId"], "BlueTenant");
        assert!(f.function_text("r-1")["record"].is_string());
        assert!(f.runtime_done("r-1", Duration::from_millis(3))["record"]
            .get("tenantId")
            .is_none());
        let spans: Vec<Value> = f.runtime_done("r-1", Duration::from_millis(3))["record"]["spans"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["name"].clone())
            .collect();
        assert_eq!(
            spans,
            ["responseLatency", "responseDuration", "runtimeOverhead"]
        );
        f.note_restore(Duration::from_millis(15));
        let first = f.report("r-0", Duration::from_millis(3));
        assert_eq!(first["record"]["metrics"]["restoreDurationMs"], 15.0);
        assert!(first["record"].get("tenantId").is_none());
        let second = f.report("r-0", Duration::from_millis(3));
        assert!(second["record"]["metrics"]
            .get("restoreDurationMs")
            .is_none());
    }
}
