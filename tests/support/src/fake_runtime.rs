//! A strict in-process fake of the Lambda Runtime API as an external extension sees
//! it: the Extensions API (`/2020-01-01/extension/...`) and the Telemetry API
//! (`/2022-07-01/telemetry` and the pushes to the subscriber), on `127.0.0.1:0`.
//!
//! Roles:
//! - **Lifecycle**: `register` checks `Lambda-Extension-Name` and the events body and
//!   hands out an identifier; `event/next` long-polls until the script
//!   ([`RuntimeHandle::invoke`], [`RuntimeHandle::shutdown`]) provides an event, which
//!   carries a real `deadlineMs` computed when it is delivered. Every call is logged
//!   with its arrival time so tests can measure how long the extension held an
//!   invocation and whether it came back.
//! - **Subscription**: validated like Lambda ([`super::telemetry_subscription`]),
//!   or answered 202 / 500 on demand ([`SubscribeMode`]).
//! - **Telemetry push**: [`super::telemetry_pusher`] POSTs queued events as JSON
//!   arrays to `http://sandbox.localdomain:<port>` (dialled at 127.0.0.1) with the
//!   subscription's buffering, only once subscribed.
//!
//! Invariant: an event's text is serialised once when queued and sent verbatim, so
//! the bytes a test queued are exactly the bytes inside the POSTed array.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use serde_json::{json, Value};

use super::clock;
use super::http::{self, Action, ClientResponse, Handler, Request, Response, Server};
use super::rng::fresh_uuid;
pub use super::telemetry_pusher::TelemetryPost;
use super::telemetry_pusher::{self, PusherHandle};
use super::telemetry_subscription::{validate_subscription, Subscription, TELEMETRY_API};

/// Base path of the Extensions API.
pub const EXTENSION_API: &str = "/2020-01-01/extension";
/// The whole SHUTDOWN phase with external extensions (2,000 ms).
pub const SHUTDOWN_BUDGET: Duration = Duration::from_millis(2_000);

/// How the fake answers a subscription request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SubscribeMode {
    /// Validate like Lambda: 200 when valid, 400 ValidationError otherwise.
    Validate,
    /// 202: telemetry not supported (as local emulators answer).
    NotSupported,
    /// 500 with an error body.
    ServerError,
}

/// What the fake function and platform look like.
#[derive(Clone, Debug)]
pub struct RuntimeConfig {
    /// The executable's file name; `Lambda-Extension-Name` must equal it.
    pub extension_name: String,
    pub function_name: String,
    pub function_version: String,
    pub handler: String,
    pub account_id: String,
    pub region: String,
    /// The function timeout: an INVOKE's `deadlineMs` is its delivery time plus this.
    pub function_timeout: Duration,
    /// A SHUTDOWN's `deadlineMs` is its delivery time plus this.
    pub shutdown_budget: Duration,
    pub subscribe_mode: SubscribeMode,
    /// Client timeout of each telemetry POST.
    pub telemetry_post_timeout: Duration,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            extension_name: "kinesis-telemetry-extension".to_owned(),
            function_name: "fake-function".to_owned(),
            function_version: "$LATEST".to_owned(),
            handler: "index.handler".to_owned(),
            account_id: "123456789012".to_owned(),
            region: "us-east-1".to_owned(),
            function_timeout: Duration::from_secs(3),
            shutdown_budget: SHUTDOWN_BUDGET,
            subscribe_mode: SubscribeMode::Validate,
            telemetry_post_timeout: Duration::from_secs(5),
        }
    }
}

/// One call to the Runtime API, whatever its path.
#[derive(Clone, Debug)]
pub struct ApiCall {
    pub received_at: Instant,
    pub path: String,
    /// Status answered (0 while a long poll is still open).
    pub status: u16,
    pub response_body: String,
}

/// One `GET /event/next`.
#[derive(Clone, Debug)]
pub struct NextCall {
    pub received_at: Instant,
    /// When the event was sent back; `None` while the extension is waiting.
    pub answered_at: Option<Instant>,
    pub event: Option<Value>,
}

/// Kind of a lifecycle event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    Invoke,
    Shutdown,
}

/// An event sent to the extension.
#[derive(Clone, Debug)]
pub struct DeliveredEvent {
    pub kind: EventKind,
    pub deadline_ms: u64,
    pub delivered_at: Instant,
}

/// A `/init/error` or `/exit/error` report.
#[derive(Clone, Debug)]
pub struct ErrorReport {
    /// `init` or `exit`.
    pub kind: String,
    /// `Lambda-Extension-Function-Error-Type` header.
    pub error_type: Option<String>,
}

enum Scripted {
    Invoke {
        request_id: String,
        timeout: Duration,
    },
    Shutdown {
        reason: String,
    },
}

#[derive(Default)]
struct State {
    calls: Vec<ApiCall>,
    extension_id: Option<String>,
    registered_events: Vec<String>,
    subscription: Option<Subscription>,
    subscribe_mode: Option<SubscribeMode>,
    script: VecDeque<Scripted>,
    next_calls: Vec<NextCall>,
    delivered: Vec<DeliveredEvent>,
    errors: Vec<ErrorReport>,
    shutdown_delivered: bool,
    stopping: bool,
}

struct Shared {
    config: RuntimeConfig,
    state: Mutex<State>,
    changed: Condvar,
    pusher: PusherHandle,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn update<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        let r = f(&mut self.lock());
        self.changed.notify_all();
        r
    }

    fn wait_until<R>(
        &self,
        timeout: Duration,
        mut f: impl FnMut(&State) -> Option<R>,
    ) -> Option<R> {
        let deadline = Instant::now() + timeout;
        let mut st = self.lock();
        loop {
            if let Some(r) = f(&st) {
                return Some(r);
            }
            let now = Instant::now();
            if now >= deadline || st.stopping {
                return None;
            }
            st = self
                .changed
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

/// Clonable, thread-safe handle to script the platform and read what it saw.
#[derive(Clone)]
pub struct RuntimeHandle(Arc<Shared>);

/// The running fake. Dereferences to its [`RuntimeHandle`].
pub struct FakeRuntime {
    server: Server,
    handle: RuntimeHandle,
    pusher: Option<JoinHandle<()>>,
}

impl std::ops::Deref for FakeRuntime {
    type Target = RuntimeHandle;
    fn deref(&self) -> &RuntimeHandle {
        &self.handle
    }
}

impl FakeRuntime {
    /// Starts the API server and the telemetry pusher.
    pub fn start(config: RuntimeConfig) -> io::Result<FakeRuntime> {
        let (pusher_handle, pusher) = telemetry_pusher::spawn(config.telemetry_post_timeout)?;
        let shared = Arc::new(Shared {
            config,
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
            pusher: pusher_handle,
        });
        let server = Server::start(Arc::new(RuntimeHandler(shared.clone())))?;
        Ok(FakeRuntime {
            server,
            handle: RuntimeHandle(shared),
            pusher: Some(pusher),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// `127.0.0.1:<port>`, the value for `AWS_LAMBDA_RUNTIME_API`.
    pub fn runtime_api(&self) -> String {
        self.server.addr().to_string()
    }

    pub fn handle(&self) -> RuntimeHandle {
        self.handle.clone()
    }
}

impl Drop for FakeRuntime {
    fn drop(&mut self) {
        self.handle.0.update(|st| st.stopping = true);
        self.handle.0.pusher.stop();
        if let Some(p) = self.pusher.take() {
            let _ = p.join();
        }
        self.server.stop();
    }
}

impl RuntimeHandle {
    pub fn config(&self) -> &RuntimeConfig {
        &self.0.config
    }

    /// Changes how later subscription requests are answered.
    pub fn set_subscribe_mode(&self, mode: SubscribeMode) {
        self.0.update(|st| st.subscribe_mode = Some(mode));
    }

    /// Queues an INVOKE with a fresh request id and the configured timeout; returns the id.
    pub fn invoke(&self) -> String {
        let id = fresh_uuid();
        self.invoke_with(&id, self.0.config.function_timeout);
        id
    }

    /// Queues an INVOKE whose `deadlineMs` will be its delivery time plus `timeout`.
    pub fn invoke_with(&self, request_id: &str, timeout: Duration) {
        self.0.update(|st| {
            st.script.push_back(Scripted::Invoke {
                request_id: request_id.to_owned(),
                timeout,
            })
        });
    }

    /// Queues a SHUTDOWN (`spindown`, `timeout` or `failure`).
    pub fn shutdown(&self, reason: &str) {
        self.0.update(|st| {
            st.script.push_back(Scripted::Shutdown {
                reason: reason.to_owned(),
            })
        });
    }

    /// Waits until the extension has made at least `n` `/event/next` calls.
    pub fn wait_for_next_calls(&self, n: usize, timeout: Duration) -> bool {
        self.0
            .wait_until(timeout, |st| (st.next_calls.len() >= n).then_some(()))
            .is_some()
    }

    /// Waits until at least `n` events were delivered.
    pub fn wait_delivered(&self, n: usize, timeout: Duration) -> bool {
        self.0
            .wait_until(timeout, |st| (st.delivered.len() >= n).then_some(()))
            .is_some()
    }

    /// Waits until at least `n` `/init/error` or `/exit/error` reports arrived.
    pub fn wait_errors(&self, n: usize, timeout: Duration) -> bool {
        self.0
            .wait_until(timeout, |st| (st.errors.len() >= n).then_some(()))
            .is_some()
    }

    pub fn subscription(&self) -> Option<Subscription> {
        self.0.lock().subscription.clone()
    }

    /// Calls whose path ends with `suffix` (e.g. `/register`, `/telemetry`).
    pub fn calls_to(&self, suffix: &str) -> Vec<ApiCall> {
        self.0
            .lock()
            .calls
            .iter()
            .filter(|c| c.path.ends_with(suffix))
            .cloned()
            .collect()
    }

    pub fn next_calls(&self) -> Vec<NextCall> {
        self.0.lock().next_calls.clone()
    }

    pub fn delivered(&self) -> Vec<DeliveredEvent> {
        self.0.lock().delivered.clone()
    }

    pub fn errors(&self) -> Vec<ErrorReport> {
        self.0.lock().errors.clone()
    }

    /// For each delivered event, the time until the extension's next `/event/next`
    /// (`None` if it has not come back yet): the `PostRuntimeExtensionsDuration` it causes.
    pub fn time_to_next_after_each_event(&self) -> Vec<(EventKind, Option<Duration>)> {
        let st = self.0.lock();
        st.delivered
            .iter()
            .map(|e| {
                let back = st
                    .next_calls
                    .iter()
                    .find(|c| c.received_at >= e.delivered_at)
                    .map(|c| c.received_at - e.delivered_at);
                (e.kind, back)
            })
            .collect()
    }

    /// Queues a telemetry event; returns the exact text that will be sent.
    pub fn push_event(&self, event: &Value) -> String {
        let text = event.to_string();
        self.push_raw_event(text.clone());
        text
    }

    /// Queues an event given as JSON text, sent verbatim as one array element.
    pub fn push_raw_event(&self, text: String) {
        self.0.pusher.push(text);
    }

    /// Sends everything buffered now (once subscribed) and waits for the POSTs to finish.
    pub fn flush_telemetry(&self, timeout: Duration) -> bool {
        self.0.pusher.flush(timeout)
    }

    /// Waits until every queued event was POSTed (or filtered out) and no POST is in flight.
    pub fn wait_telemetry_idle(&self, timeout: Duration) -> bool {
        self.0.pusher.wait_idle(timeout)
    }

    /// Holds telemetry deliveries while the sandbox is frozen; returns once no POST is
    /// in flight (false on timeout). Events pushed meanwhile wait for
    /// [`RuntimeHandle::resume_telemetry`].
    pub fn pause_telemetry(&self, timeout: Duration) -> bool {
        self.0.pusher.pause(timeout)
    }

    /// Resumes telemetry deliveries after a freeze; overdue batches go out at once.
    pub fn resume_telemetry(&self) {
        self.0.pusher.resume();
    }

    /// The `i`-th `/event/next` call (without copying the whole log).
    pub fn next_call(&self, i: usize) -> Option<NextCall> {
        self.0.lock().next_calls.get(i).cloned()
    }

    /// Number of `/event/next` calls so far.
    pub fn next_call_count(&self) -> usize {
        self.0.lock().next_calls.len()
    }

    /// Every telemetry POST made by the pusher.
    pub fn telemetry_posts(&self) -> Vec<TelemetryPost> {
        self.0.pusher.posts()
    }

    /// POSTs an arbitrary body to the subscriber (malformed, non-array, empty, huge…)
    /// on a fresh connection and returns its answer. Needs a subscription.
    pub fn post_raw(&self, body: &[u8]) -> io::Result<ClientResponse> {
        let sub = self
            .subscription()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotConnected, "no subscription yet"))?;
        let addr = SocketAddr::from(([127, 0, 0, 1], sub.port));
        let headers = vec![
            (
                "Host".to_owned(),
                format!("sandbox.localdomain:{}", sub.port),
            ),
            ("Content-Type".to_owned(), "application/json".to_owned()),
        ];
        http::request_once(
            addr,
            "POST",
            &sub.path,
            &headers,
            body,
            self.0.config.telemetry_post_timeout,
        )
    }
}

fn error_body(error_type: &str, message: &str) -> Value {
    json!({ "errorType": error_type, "errorMessage": message })
}

struct RuntimeHandler(Arc<Shared>);

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
            Ok(sub) => {
                self.0.update(|st| st.subscription = Some(sub.clone()));
                self.0.pusher.subscribed(sub);
                Response::new(200, "text/plain", "OK")
            }
            Err(m) => Response::json(400, &error_body("ValidationError", &m)),
        }
    }
}
