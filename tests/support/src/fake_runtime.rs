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
//!   arrays to the subscribed `http://sandbox.localdomain:<port><path>` (dialled at
//!   127.0.0.1, the path exactly as subscribed: a path a URI cannot carry verbatim fails
//!   the subscription) with the subscription's buffering, only once subscribed; with a
//!   queue limit it drops what a subscriber that falls behind cannot take and reports it
//!   (`platform.logsDropped`).
//! - **Lambda Managed Instances** ([`RuntimeConfig::managed_instances`]): registering for
//!   INVOKE is refused (400 `Extension.InvalidEventType`), SHUTDOWN only is accepted, and the
//!   subscription must use schema `2025-01-29`. Whether the environment variables say
//!   Managed Instances is the caller's business: leaving them out exercises an extension's
//!   fallback. Nothing freezes there (the sandbox never pauses such a run).
//! - **SnapStart** ([`RuntimeConfig::snap_start`]): the init is the one Lambda runs when a
//!   version is published; the snapshot is taken while the extension waits in its first
//!   `/event/next`, and the environment is restored when the first scripted event is
//!   delivered: the Restore phase's telemetry is queued first (`platform.restoreStart`, a
//!   line from the function's after-restore hook, `platform.restoreRuntimeDone`,
//!   `platform.restoreReport`: [`RuntimeHandle::restore_events`]), then the event is
//!   answered. The harness sets `AWS_LAMBDA_INITIALIZATION_TYPE=snap-start` and the
//!   `initializationType` of the init events. Whether Lambda delivers init telemetry still
//!   buffered at the snapshot before or after the restore is not documented: a test that
//!   needs it before waits for the pusher to go idle first (the harness's `invoke` does).
//!
//! Here: configuration, the recorded calls and the scripting handle; how each call is
//! answered is in `handler`.
//!
//! Invariant: an event's text is serialised once when queued and sent verbatim, so
//! the bytes a test queued are exactly the bytes inside the POSTed array.

mod handler;

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::http::{self, ClientResponse, Server};
use super::rng::fresh_uuid;
pub use super::telemetry_pusher::TelemetryPost;
use super::telemetry_pusher::{self, PusherHandle};
use super::telemetry_subscription::Subscription;
use handler::RuntimeHandler;

/// Base path of the Extensions API.
pub const EXTENSION_API: &str = "/2020-01-01/extension";
/// The whole SHUTDOWN phase with external extensions (2,000 ms).
pub const SHUTDOWN_BUDGET: Duration = Duration::from_millis(2_000);
/// The telemetry schema Lambda Managed Instances require.
pub const MANAGED_INSTANCES_SCHEMA: &str = "2025-01-29";

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
    /// Lambda Managed Instances: SHUTDOWN-only registration, schema `2025-01-29`.
    pub managed_instances: bool,
    /// Events the platform keeps waiting for the subscriber (queued, not yet POSTed);
    /// events pushed beyond it are dropped and reported (`platform.logsDropped`).
    /// `None`: unbounded.
    pub telemetry_queue_limit: Option<usize>,
    /// SnapStart: the environment is restored from the init's snapshot before its first event.
    pub snap_start: bool,
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
            managed_instances: false,
            telemetry_queue_limit: None,
            snap_start: false,
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
    /// The body's `errorMessage`, when it has one.
    pub message: Option<String>,
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
    /// SnapStart: when the environment was restored, and the Restore phase's telemetry.
    restored_at: Option<Instant>,
    restore_events: Vec<String>,
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
        let (pusher_handle, pusher) =
            telemetry_pusher::spawn(config.telemetry_post_timeout, config.telemetry_queue_limit)?;
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

    /// The events of the accepted registration (empty before it).
    pub fn registered_events(&self) -> Vec<String> {
        self.0.lock().registered_events.clone()
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

    /// SnapStart: when the environment was restored (`None` before, or without SnapStart).
    pub fn restored_at(&self) -> Option<Instant> {
        self.0.lock().restored_at
    }

    /// SnapStart: the Restore phase's telemetry, exactly as queued, in order.
    pub fn restore_events(&self) -> Vec<String> {
        self.0.lock().restore_events.clone()
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

    /// Queues a telemetry event; returns the exact text that will be sent (unless the
    /// queue limit drops it: see [`RuntimeHandle::telemetry_dropped`]).
    pub fn push_event(&self, event: &Value) -> String {
        let text = event.to_string();
        self.push_raw_event(text.clone());
        text
    }

    /// Queues an event given as JSON text, sent verbatim as one array element; `false`
    /// when the platform dropped it instead ([`RuntimeConfig::telemetry_queue_limit`]).
    pub fn push_raw_event(&self, text: String) -> bool {
        self.0.pusher.push(text)
    }

    /// Events the platform dropped over its queue limit: (records, bytes).
    pub fn telemetry_dropped(&self) -> (u64, u64) {
        self.0.pusher.dropped()
    }

    /// Every `platform.logsDropped` event the platform sent, verbatim (not pushed by a test).
    pub fn logs_dropped_events(&self) -> Vec<String> {
        self.0.pusher.logs_dropped_events()
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
