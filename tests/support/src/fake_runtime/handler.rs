//! How the fake Runtime API answers each call: routing, `register` (name and events
//! checked; INVOKE refused on Managed Instances), the `event/next` long poll with real
//! deadlines (and, with SnapStart, the Restore phase before the first event), `/init/error` and `/exit/error`, and the subscription (validated like Lambda,
//! schema `2025-01-29` required on Managed Instances, or 202 / 500 on demand).

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use serde_json::{json, Value};

use super::{
    ApiCall, DeliveredEvent, ErrorReport, EventKind, NextCall, Scripted, Shared, SubscribeMode,
    EXTENSION_API, MANAGED_INSTANCES_SCHEMA,
};
use crate::clock;
use crate::events::EventFactory;
use crate::http::{self, Action, Handler, Request, Response};
use crate::rng::fresh_uuid;
use crate::telemetry_subscription::{validate_subscription, TELEMETRY_API};

fn error_body(error_type: &str, message: &str) -> Value {
    json!({ "errorType": error_type, "errorMessage": message })
}

pub(super) struct RuntimeHandler(pub(super) Arc<Shared>);

impl Handler for RuntimeHandler {
    fn handle(&self, req: Request) -> Action {
        let call_index = self.0.update(|st| {
            st.calls.push(ApiCall {
                received_at: Instant::now(),
                path: req.path.clone(),
                status: 0,
                response_body: String::new(),
            });
            st.calls.len() - 1
        });
        let resp = self.route(&req);
        self.0.update(|st| {
            st.calls[call_index].status = resp.status;
            st.calls[call_index].response_body = String::from_utf8_lossy(&resp.body).into_owned();
        });
        Action::Respond(resp)
    }
}

impl RuntimeHandler {
    fn route(&self, req: &Request) -> Response {
        let ext = |p: &str| format!("{EXTENSION_API}{p}");
        match (req.method.as_str(), req.path.as_str()) {
            ("POST", p) if p == ext("/register") => self.register(req),
            ("GET", p) if p == ext("/event/next") => self.next(req),
            ("POST", p) if p == ext("/init/error") => self.error_report(req, "init"),
            ("POST", p) if p == ext("/exit/error") => self.error_report(req, "exit"),
            ("PUT", TELEMETRY_API) => self.subscribe(req),
            (_, p) if p == ext("/register") || p == ext("/event/next") || p == TELEMETRY_API => {
                Response::json(
                    405,
                    &error_body(
                        "MethodNotAllowed",
                        &format!("{} not allowed on {p}", req.method),
                    ),
                )
            }
            _ => Response::json(
                404,
                &error_body("NotFound", &format!("No such path: {}", req.path)),
            ),
        }
    }

    /// `Err` is the 403 answer for a missing or unknown identifier.
    fn check_identifier(&self, req: &Request) -> Result<(), Response> {
        let st = self.0.lock();
        match (req.header("lambda-extension-identifier"), &st.extension_id) {
            (Some(got), Some(id)) if got == id => Ok(()),
            (None, _) => Err(Response::json(
                403,
                &error_body(
                    "Extension.MissingExtensionIdentifier",
                    "Missing Lambda-Extension-Identifier header",
                ),
            )),
            _ => Err(Response::json(
                403,
                &error_body(
                    "Extension.InvalidExtensionIdentifier",
                    "Invalid extension identifier",
                ),
            )),
        }
    }

    fn register(&self, req: &Request) -> Response {
        let cfg = &self.0.config;
        match req.header("lambda-extension-name") {
            None => {
                return Response::json(
                    403,
                    &error_body(
                        "Extension.MissingExtensionName",
                        "Missing Lambda-Extension-Name header",
                    ),
                )
            }
            Some(n) if n != cfg.extension_name => {
                return Response::json(
                    403,
                    &error_body(
                        "Extension.InvalidExtensionName",
                        &format!("Unknown extension name: {n}"),
                    ),
                )
            }
            Some(_) => {}
        }
        if self.0.lock().extension_id.is_some() {
            return Response::json(
                403,
                &error_body(
                    "Extension.AlreadyRegistered",
                    &format!("Extension {} is already registered", cfg.extension_name),
                ),
            );
        }
        let events: Result<Vec<String>, String> = serde_json::from_slice::<Value>(&req.body)
            .map_err(|e| format!("Invalid JSON body: {e}"))
            .and_then(|v| {
                let arr = v
                    .get("events")
                    .and_then(Value::as_array)
                    .ok_or("events must be an array")?;
                arr.iter()
                    .map(|e| match e.as_str() {
                        Some(s @ ("INVOKE" | "SHUTDOWN")) => Ok(s.to_owned()),
                        _ => Err(format!("Invalid event: {e}. Allowed: INVOKE, SHUTDOWN")),
                    })
                    .collect()
            });
        let events = match events {
            Ok(e) => e,
            Err(m) => return Response::json(400, &error_body("ValidationError", &m)),
        };
        if cfg.managed_instances && events.iter().any(|e| e == "INVOKE") {
            return Response::json(
                400,
                &error_body(
                    "Extension.InvalidEventType",
                    "INVOKE is not a supported event type on Lambda Managed Instances: extensions may register for SHUTDOWN only",
                ),
            );
        }
        let id = fresh_uuid();
        self.0.update(|st| {
            st.extension_id = Some(id.clone());
            st.registered_events = events;
        });
        let mut body = json!({
            "functionName": cfg.function_name,
            "functionVersion": cfg.function_version,
            "handler": cfg.handler,
        });
        if req
            .header("lambda-extension-accept-feature")
            .is_some_and(|f| f.split(',').any(|x| x.trim() == "accountId"))
        {
            body["accountId"] = json!(cfg.account_id);
        }
        Response::json(200, &body).with_header("Lambda-Extension-Identifier", &id)
    }

    fn next(&self, req: &Request) -> Response {
        if let Err(r) = self.check_identifier(req) {
            return r;
        }
        let cfg = &self.0.config;
        let call = self.0.update(|st| {
            st.next_calls.push(NextCall {
                received_at: Instant::now(),
                answered_at: None,
                event: None,
            });
            st.next_calls.len() - 1
        });
        // Long poll: take the next scripted event this extension registered for.
        let mut st = self.0.lock();
        let scripted = loop {
            if st.stopping {
                return Response::json(
                    500,
                    &error_body("Runtime.Stopping", "fake runtime stopped"),
                );
            }
            if !st.shutdown_delivered {
                if let Some(s) = st.script.pop_front() {
                    let wanted = match &s {
                        Scripted::Invoke { .. } => "INVOKE",
                        Scripted::Shutdown { .. } => "SHUTDOWN",
                    };
                    if st.registered_events.iter().any(|e| e == wanted) {
                        break s;
                    }
                    continue;
                }
            }
            st = self
                .0
                .changed
                .wait_timeout(st, http::IDLE_POLL)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        };
        if cfg.snap_start && st.restored_at.is_none() {
            st.restored_at = Some(Instant::now());
            st.restore_events = self.restore();
        }
        let now = SystemTime::now();
        let (kind, deadline_ms, body) = match scripted {
            Scripted::Invoke {
                request_id,
                timeout,
            } => {
                let deadline_ms = clock::epoch_ms(now + timeout);
                let body = json!({
                    "eventType": "INVOKE",
                    "deadlineMs": deadline_ms,
                    "requestId": request_id,
                    "invokedFunctionArn": format!(
                        "arn:aws:lambda:{}:{}:function:{}", cfg.region, cfg.account_id, cfg.function_name
                    ),
                    "tracing": {
                        "type": "X-Amzn-Trace-Id",
                        "value": format!("Root=1-{:08x}-{};Parent={};Sampled=1",
                            clock::epoch_ms(now) / 1000, &fresh_uuid().replace('-', "")[..24],
                            &fresh_uuid().replace('-', "")[..16]),
                    },
                });
                (EventKind::Invoke, deadline_ms, body)
            }
            Scripted::Shutdown { reason } => {
                let deadline_ms = clock::epoch_ms(now + cfg.shutdown_budget);
                st.shutdown_delivered = true;
                (
                    EventKind::Shutdown,
                    deadline_ms,
                    json!({ "eventType": "SHUTDOWN", "shutdownReason": reason, "deadlineMs": deadline_ms }),
                )
            }
        };
        let at = Instant::now();
        st.next_calls[call].answered_at = Some(at);
        st.next_calls[call].event = Some(body.clone());
        st.delivered.push(DeliveredEvent {
            kind,
            deadline_ms,
            delivered_at: at,
        });
        drop(st);
        self.0.changed.notify_all();
        Response::json(200, &body).with_header("Lambda-Extension-Event-Identifier", &fresh_uuid())
    }

    /// SnapStart's Restore phase, between the snapshot and the first event: its telemetry,
    /// queued in the order Lambda emits it; returns the texts.
    fn restore(&self) -> Vec<String> {
        let mut f = EventFactory::new(&self.0.config.function_name);
        f.version = self.0.config.function_version.clone();
        let hooks = Duration::from_millis(4);
        let events = [
            f.restore_start(),
            f.restore_hook_line(),
            f.restore_runtime_done(hooks),
            f.restore_report(hooks + Duration::from_millis(11)),
        ];
        events
            .iter()
            .map(|e| {
                let text = e.to_string();
                self.0.pusher.push(text.clone());
                text
            })
            .collect()
    }

    fn error_report(&self, req: &Request, kind: &str) -> Response {
        if let Err(r) = self.check_identifier(req) {
            return r;
        }
        self.0.update(|st| {
            st.errors.push(ErrorReport {
                kind: kind.to_owned(),
                error_type: req
                    .header("lambda-extension-function-error-type")
                    .map(str::to_owned),
                message: serde_json::from_slice::<serde_json::Value>(&req.body)
                    .ok()
                    .and_then(|v| v["errorMessage"].as_str().map(str::to_owned)),
            })
        });
        Response::json(202, &json!({ "status": "OK" }))
    }

    fn subscribe(&self, req: &Request) -> Response {
        if let Err(r) = self.check_identifier(req) {
            return r;
        }
        let mode = self
            .0
            .lock()
            .subscribe_mode
            .unwrap_or(self.0.config.subscribe_mode);
        match mode {
            SubscribeMode::NotSupported => {
                return Response::json(
                    202,
                    &json!({ "errorMessage": "Telemetry API is not supported", "errorType": "Telemetry.NotSupported" }),
                )
            }
            SubscribeMode::ServerError => {
                return Response::json(
                    500,
                    &error_body("ServiceException", "Internal error in the fake runtime"),
                )
            }
            SubscribeMode::Validate => {}
        }
        match validate_subscription(&req.body) {
            Ok(sub)
                if self.0.config.managed_instances
                    && sub.schema_version != MANAGED_INSTANCES_SCHEMA =>
            {
                Response::json(
                    400,
                    &error_body(
                        "ValidationError",
                        &format!(
                            "schemaVersion {} is not supported on Lambda Managed Instances: use {MANAGED_INSTANCES_SCHEMA}",
                            sub.schema_version
                        ),
                    ),
                )
            }
            Ok(sub) => {
                self.0.update(|st| st.subscription = Some(sub.clone()));
                self.0.pusher.subscribed(sub);
                Response::new(200, "text/plain", "OK")
            }
            Err(m) => Response::json(400, &error_body("ValidationError", &m)),
        }
    }
}
