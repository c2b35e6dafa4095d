//! The ledger of every event the sandbox emitted (text, type, when, in which invocation, in
//! which order), the [`Emitter`] that hands events to the fake platform and writes them
//! down, and the [`Telemetry`] that makes the events of one emitting thread.
//!
//! Invariants: an event is written down under the same lock that queues it with the
//! platform, so the ledger's `seq` is the order in which the platform received them (and
//! sends them on), also when Managed Instances workers emit concurrently. Every text is
//! unique; it is keyed as it must arrive (NDJSON records carry an event's line breaks as
//! spaces).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use serde_json::{json, Value};

use super::report::ms;
use super::{LogFormat, FUNCTION_NAME};
use kte_test_support::fake_runtime::RuntimeHandle;
use kte_test_support::{clock, EventFactory};

/// One emitted event.
#[derive(Clone, Debug)]
pub(super) struct Emitted {
    pub(super) kind: String,
    pub(super) at: Instant,
    /// The order in which the platform received it.
    pub(super) seq: u64,
    /// The invocation it belongs to (`None`: init, the burst before SHUTDOWN, platform reports).
    pub(super) invocation: Option<usize>,
    /// The platform dropped it (queue limit) before the extension could see it.
    pub(super) platform_dropped: bool,
    /// The log level a `function` line carries where the extension can read it (the JSON
    /// format's `level`, the Text format's level column); `None` otherwise.
    pub(super) level: Option<&'static str>,
}

impl Emitted {
    pub(super) fn is_function(&self) -> bool {
        self.kind == "function"
    }
}

/// Events the sandbox emitted, by the text they must arrive as.
#[derive(Default)]
pub(super) struct Ledger {
    pub(super) index: HashMap<String, usize>,
    pub(super) events: Vec<Emitted>,
}

impl Ledger {
    fn insert(&mut self, key: String, e: Emitted) {
        let i = self.events.len();
        let prev = self.index.insert(key, i);
        debug_assert!(prev.is_none(), "emitted events must be unique");
        self.events.push(e);
    }
}

/// Queues events with the fake platform and writes them in the ledger. Clonable across
/// threads.
#[derive(Clone)]
pub(super) struct Emitter {
    runtime: RuntimeHandle,
    ledger: Arc<Mutex<Ledger>>,
    /// Records are NDJSON: an event's raw line breaks arrive as spaces.
    ndjson: bool,
}

impl Emitter {
    pub(super) fn new(runtime: RuntimeHandle, ndjson: bool) -> Self {
        Emitter {
            runtime,
            ledger: Arc::default(),
            ndjson,
        }
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, Ledger> {
        self.ledger.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The text as it must arrive in this run's record format.
    pub(super) fn as_delivered(&self, text: &str) -> String {
        if self.ndjson {
            text.replace(['\n', '\r'], " ")
        } else {
            text.to_owned()
        }
    }

    /// Emits `text` (of type `kind`) as part of `invocation`.
    pub(super) fn emit(&self, kind: &str, text: String, invocation: Option<usize>) {
        self.emit_at_level(kind, text, None, invocation);
    }

    /// Emits a `function` line made by [`Telemetry::function`].
    pub(super) fn emit_line(&self, line: Line, invocation: Option<usize>) {
        self.emit_at_level("function", line.text, line.level, invocation);
    }

    fn emit_at_level(
        &self,
        kind: &str,
        text: String,
        level: Option<&'static str>,
        invocation: Option<usize>,
    ) {
        let key = self.as_delivered(&text);
        let mut ledger = self.lock();
        let seq = ledger.events.len() as u64;
        let kept = self.runtime.push_raw_event(text);
        let e = Emitted {
            kind: kind.to_owned(),
            at: Instant::now(),
            seq,
            invocation,
            platform_dropped: !kept,
            level,
        };
        ledger.insert(key, e);
    }

    /// Emits a JSON event, its type read from it.
    pub(super) fn emit_value(&self, v: &Value, invocation: Option<usize>) {
        let kind = v["type"].as_str().unwrap_or("?").to_owned();
        self.emit(&kind, v.to_string(), invocation);
    }

    /// Writes down the platform's own `platform.logsDropped` reports (it made them, not the
    /// sandbox): they are expected in the stream like any other event.
    pub(super) fn note_platform_reports(&self, texts: &[String]) {
        let mut ledger = self.lock();
        for t in texts {
            let key = self.as_delivered(t);
            if ledger.index.contains_key(&key) {
                continue;
            }
            let e = Emitted {
                kind: "platform.logsDropped".to_owned(),
                at: Instant::now(),
                seq: ledger.events.len() as u64,
                invocation: None,
                platform_dropped: false,
                level: None,
            };
            ledger.insert(key, e);
        }
    }
}

/// The levels `function` lines take in turn, so that a `KINESIS_TELEMETRY_MIN_LEVEL` run has
/// lines on both sides of its threshold (two in five at `warn` or above).
const LINE_LEVELS: [&str; 5] = ["INFO", "DEBUG", "INFO", "WARN", "ERROR"];

/// A `function` line and the level the extension can read in it.
pub(super) struct Line {
    pub(super) text: String,
    pub(super) level: Option<&'static str>,
}

/// Makes the events of one emitting thread; platform shapes come from [`EventFactory`].
pub(super) struct Telemetry {
    pub(super) factory: EventFactory,
    lines: usize,
}

impl Default for Telemetry {
    fn default() -> Self {
        Telemetry {
            factory: EventFactory::new(FUNCTION_NAME),
            lines: 0,
        }
    }
}

impl Telemetry {
    /// A `function` event of about `bytes` bytes of JSON text, in the given log format, at
    /// the next of [`LINE_LEVELS`]. A Text line names its request and level in the runtime's
    /// tab layout when `text_names_request` (on Managed Instances it does not: a plain
    /// printed line, with no level); a JSON line always carries its `requestId` and `level`.
    pub(super) fn function(
        &mut self,
        request_id: &str,
        text_names_request: bool,
        format: LogFormat,
        bytes: usize,
    ) -> Line {
        let level = LINE_LEVELS[self.lines % LINE_LEVELS.len()];
        self.lines += 1;
        let m = self.factory.marker();
        let now = clock::iso8601_ms(SystemTime::now());
        let build = |pad: &str| -> String {
            match format {
                LogFormat::Text if text_names_request => json!({"time": now, "type": "function",
                    "record": format!("{now}\t{request_id}\t{level}\t{m} {pad}\n")}),
                LogFormat::Text => json!({"time": now, "type": "function",
                    "record": format!("{m} {pad}\n")}),
                LogFormat::Json => json!({"time": now, "type": "function",
                    "record": {"timestamp": now, "level": level, "requestId": request_id,
                               "message": format!("{m} {pad}")}}),
            }
            .to_string()
        };
        let short = build("");
        let text = build(&"x".repeat(bytes.saturating_sub(short.len())));
        let readable = text_names_request || format == LogFormat::Json;
        Line {
            text,
            level: readable.then_some(level),
        }
    }

    pub(super) fn init_runtime_done(&mut self, initialization_type: &str, took: Duration) -> Value {
        json!({"time": clock::iso8601_ms(SystemTime::now()), "type": "platform.initRuntimeDone",
               "record": {"initializationType": initialization_type, "phase": "init", "status": "success",
                          "spans": [{"name": "runtimeInit", "start": clock::iso8601_ms(SystemTime::now() - took),
                                     "durationMs": ms(took)}],
                          "marker": self.factory.marker()}})
    }

    pub(super) fn init_report(&mut self, initialization_type: &str, took: Duration) -> Value {
        json!({"time": clock::iso8601_ms(SystemTime::now()), "type": "platform.initReport",
               "record": {"initializationType": initialization_type, "phase": "init", "status": "success",
                          "metrics": {"durationMs": ms(took)}, "marker": self.factory.marker()}})
    }

    /// `platform.runtimeDone`; `timed_out`: the runtime was stopped at the deadline.
    pub(super) fn runtime_done(
        &mut self,
        request_id: &str,
        took: Duration,
        timed_out: bool,
    ) -> Value {
        let mut v = self.factory.runtime_done(request_id, took);
        if timed_out {
            v["record"]["status"] = json!("timeout");
            v["record"]["errorType"] = json!("Sandbox.Timedout");
        }
        v
    }
}
