//! The platform side of telemetry delivery: a pusher thread that buffers queued
//! events and POSTs them as JSON arrays to the subscriber, as Lambda does.
//!
//! The thread owns the buffer and the keep-alive connection; it meets the rest of
//! the fake only through a channel ([`PusherHandle`]) and a small shared log of what
//! it did. A batch goes out when `maxItems` or `maxBytes` is reached, or when
//! `timeoutMs` has passed since the first buffered event (a `recv_timeout` on the
//! channel, no sleeping). Events queue up before the subscription and are checked
//! against its types once it exists. A failed POST is recorded, not retried.
//!
//! A subscriber that falls behind loses events, as on Lambda: with a queue limit, an event
//! pushed while that many are already waiting to be POSTed (queued before the subscription,
//! held while paused, or behind a slow POST) is dropped and counted, and the next POST starts
//! with a `platform.logsDropped` event saying how many records and bytes were lost (shape of
//! the Telemetry API schema reference). Those reports are recorded so that tests can tell
//! them from the events they pushed.
//!
//! Invariant: event texts are sent verbatim, joined by `,` inside `[` `]`.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use super::clock;
use super::http::Client;
use super::telemetry_subscription::{type_subscribed, Buffering, Subscription};

/// `platform.logsDropped`'s reason, as Lambda words it.
pub const LOGS_DROPPED_REASON: &str =
    "Consumer seems to have fallen behind as it has not acknowledged receipt of logs.";

/// The `platform.logsDropped` event reporting `records` events (`bytes` bytes) dropped.
pub fn logs_dropped_event(records: u64, bytes: u64) -> String {
    serde_json::json!({
        "time": clock::iso8601_ms(std::time::SystemTime::now()),
        "type": "platform.logsDropped",
        "record": { "droppedBytes": bytes, "droppedRecords": records, "reason": LOGS_DROPPED_REASON },
    })
    .to_string()
}

/// One telemetry POST made by the pusher, as the platform saw it: tests and the sandbox
/// count items and statuses; the time, size, error and latency explain a failed POST.
#[derive(Clone, Debug)]
pub struct TelemetryPost {
    pub sent_at: Instant,
    pub items: usize,
    pub bytes: usize,
    /// HTTP status, or `None` when the POST failed at the connection level.
    pub status: Option<u16>,
    pub error: Option<String>,
    pub latency: Duration,
    /// The events of a POST that did not get a 200, verbatim (empty for the others), so
    /// that the sandbox can tell whether they reached the stream anyway.
    pub failed_texts: Vec<String>,
}

enum PushMsg {
    Event(String),
    Subscribed(Subscription),
    Flush(Sender<()>),
    Pause(Sender<()>),
    Resume,
    Stop,
}

#[derive(Default)]
struct PushState {
    /// Events queued and not yet posted or filtered out (including a POST in flight).
    queued: usize,
    in_flight: bool,
    /// Events in the POST in flight: queued, but no longer waiting.
    in_flight_items: usize,
    posts: Vec<TelemetryPost>,
    /// Events dropped over the queue limit, in all (records, bytes) ...
    dropped: (u64, u64),
    /// ... and since the last `platform.logsDropped` report.
    unreported: (u64, u64),
    /// Every `platform.logsDropped` event sent, verbatim.
    logs_dropped: Vec<String>,
}

#[derive(Default)]
struct PushLog {
    state: Mutex<PushState>,
    changed: Condvar,
}

impl PushLog {
    fn lock(&self) -> MutexGuard<'_, PushState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn update(&self, f: impl FnOnce(&mut PushState)) {
        f(&mut self.lock());
        self.changed.notify_all();
    }
}

/// Clonable handle to the pusher thread.
#[derive(Clone)]
pub struct PusherHandle {
    tx: Sender<PushMsg>,
    log: Arc<PushLog>,
    queue_limit: Option<usize>,
}

/// Starts the pusher thread; each POST times out after `post_timeout`; with `queue_limit`,
/// events pushed while that many wait to be POSTed are dropped (see the module docs).
pub fn spawn(
    post_timeout: Duration,
    queue_limit: Option<usize>,
) -> io::Result<(PusherHandle, JoinHandle<()>)> {
    let (tx, rx) = crossbeam_channel::unbounded();
    let log = Arc::new(PushLog::default());
    let pusher = Pusher::new(log.clone(), post_timeout);
    let thread = thread::Builder::new()
        .name("fake-telemetry-pusher".to_owned())
        .spawn(move || pusher.run(rx))?;
    Ok((
        PusherHandle {
            tx,
            log,
            queue_limit,
        },
        thread,
    ))
}

impl PusherHandle {
    /// Queues one event's JSON text; `false` when it was dropped over the queue limit.
    pub fn push(&self, text: String) -> bool {
        let mut st = self.log.lock();
        let waiting = st.queued - st.in_flight_items;
        if self.queue_limit.is_some_and(|limit| waiting >= limit) {
            let bytes = text.len() as u64;
            st.dropped.0 += 1;
            st.dropped.1 += bytes;
            st.unreported.0 += 1;
            st.unreported.1 += bytes;
            return false;
        }
        st.queued += 1;
        // Sent under the lock, so that the channel's order is the order of the count.
        let _ = self.tx.send(PushMsg::Event(text));
        drop(st);
        self.log.changed.notify_all();
        true
    }

    /// Events dropped over the queue limit so far: (records, bytes).
    pub fn dropped(&self) -> (u64, u64) {
        self.log.lock().dropped
    }

    /// Every `platform.logsDropped` event POSTed so far, verbatim.
    pub fn logs_dropped_events(&self) -> Vec<String> {
        self.log.lock().logs_dropped.clone()
    }

    /// Starts delivery to this subscriber.
    pub fn subscribed(&self, sub: Subscription) {
        let _ = self.tx.send(PushMsg::Subscribed(sub));
    }

    /// Sends everything buffered now (once subscribed); waits for the POSTs.
    pub fn flush(&self, timeout: Duration) -> bool {
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.tx.send(PushMsg::Flush(tx)).is_ok() && rx.recv_timeout(timeout).is_ok()
    }

    /// Holds deliveries, as a frozen sandbox does: returns once no POST is in flight.
    /// Events keep queueing; an explicit [`PusherHandle::flush`] still sends.
    pub fn pause(&self, timeout: Duration) -> bool {
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.tx.send(PushMsg::Pause(tx)).is_ok() && rx.recv_timeout(timeout).is_ok()
    }

    /// Ends a [`PusherHandle::pause`]: overdue batches go out at once.
    pub fn resume(&self) {
        let _ = self.tx.send(PushMsg::Resume);
    }

    /// Ends the thread after its current POST.
    pub fn stop(&self) {
        let _ = self.tx.send(PushMsg::Stop);
    }

    /// Waits until every queued event was posted (or filtered) and no POST is in flight.
    pub fn wait_idle(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut st = self.log.lock();
        loop {
            if st.queued == 0 && !st.in_flight {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            st = self
                .log
                .changed
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    pub fn posts(&self) -> Vec<TelemetryPost> {
        self.log.lock().posts.clone()
    }
}

/// The pusher thread's state: the buffer and the connection to the subscriber.
struct Pusher {
    log: Arc<PushLog>,
    post_timeout: Duration,
    subscription: Option<Subscription>,
    buffer: VecDeque<String>,
    buffer_bytes: usize,
    first_buffered_at: Option<Instant>,
    client: Option<Client>,
    paused: bool,
}

impl Pusher {
    fn new(log: Arc<PushLog>, post_timeout: Duration) -> Self {
        Pusher {
            log,
            post_timeout,
            subscription: None,
            buffer: VecDeque::new(),
            buffer_bytes: 0,
            first_buffered_at: None,
            client: None,
            paused: false,
        }
    }

    fn run(mut self, rx: Receiver<PushMsg>) {
        loop {
            let wait = match (&self.subscription, self.first_buffered_at) {
                (Some(sub), Some(first)) if !self.paused => {
                    (first + sub.buffering.timeout).saturating_duration_since(Instant::now())
                }
                _ => Duration::from_secs(3600),
            };
            match rx.recv_timeout(wait) {
                Ok(PushMsg::Event(text)) => self.accept(text),
                Ok(PushMsg::Subscribed(sub)) => {
                    self.client = Some(Client::new(
                        SocketAddr::from(([127, 0, 0, 1], sub.port)),
                        self.post_timeout,
                    ));
                    // Events queued before the subscription go out after one timeout, like any others.
                    if !self.buffer.is_empty() {
                        self.first_buffered_at = Some(Instant::now());
                    }
                    self.subscription = Some(sub);
                    self.flush_full();
                }
                Ok(PushMsg::Flush(ack)) => {
                    self.flush_all();
                    let _ = ack.send(());
                }
                Ok(PushMsg::Pause(ack)) => {
                    self.paused = true;
                    let _ = ack.send(());
                }
                Ok(PushMsg::Resume) => {
                    self.paused = false;
                    self.flush_full();
                }
                Ok(PushMsg::Stop) | Err(RecvTimeoutError::Disconnected) => return,
                Err(RecvTimeoutError::Timeout) if !self.paused => self.flush_all(),
                Err(RecvTimeoutError::Timeout) => {}
            }
        }
    }

    fn accept(&mut self, text: String) {
        if let Some(sub) = &self.subscription {
            if !type_subscribed(&text, &sub.types) {
                self.log.update(|st| st.queued -= 1);
                return;
            }
        }
        if self.buffer.is_empty() {
            self.first_buffered_at = Some(Instant::now());
        }
        self.buffer_bytes += text.len();
        self.buffer.push_back(text);
        self.flush_full();
    }

    /// Sends batches while the buffer holds at least `maxItems` items or `maxBytes` bytes.
    fn flush_full(&mut self) {
        let Some(b) = self.subscription.as_ref().map(|s| s.buffering) else {
            return;
        };
        if self.paused {
            return;
        }
        while self.buffer.len() >= b.max_items || self.buffer_bytes >= b.max_bytes {
            self.post_batch(b);
        }
    }

    /// Sends everything buffered (once subscribed).
    fn flush_all(&mut self) {
        let Some(b) = self.subscription.as_ref().map(|s| s.buffering) else {
            return;
        };
        self.drop_unsubscribed();
        while !self.buffer.is_empty() {
            self.post_batch(b);
        }
        self.first_buffered_at = None;
    }

    /// Events queued before the subscription are checked against its types once known.
    fn drop_unsubscribed(&mut self) {
        let Some(types) = self.subscription.as_ref().map(|s| s.types.clone()) else {
            return;
        };
        let before = self.buffer.len();
        self.buffer.retain(|t| type_subscribed(t, &types));
        let dropped = before - self.buffer.len();
        if dropped > 0 {
            self.buffer_bytes = self.buffer.iter().map(String::len).sum();
            self.log.update(|st| st.queued -= dropped);
        }
    }

    /// POSTs one batch of at most `max_items` items and `max_bytes` bytes (at least one item).
    fn post_batch(&mut self, b: Buffering) {
        let mut items = Vec::new();
        let mut bytes = 0;
        while let Some(front) = self.buffer.front() {
            if !items.is_empty()
                && (items.len() >= b.max_items || bytes + front.len() > b.max_bytes)
            {
                break;
            }
            bytes += front.len();
            items.push(self.buffer.pop_front().expect("front exists"));
        }
        self.buffer_bytes -= bytes;
        self.first_buffered_at = if self.buffer.is_empty() {
            None
        } else {
            Some(Instant::now())
        };
        let n = items.len();
        let sub = self
            .subscription
            .as_ref()
            .expect("only called when subscribed");
        // Lambda tells the subscriber what it missed at the front of the next batch.
        let report = {
            let mut st = self.log.lock();
            let (records, bytes) = std::mem::take(&mut st.unreported);
            let text = (records > 0).then(|| logs_dropped_event(records, bytes));
            match text {
                Some(t) if type_subscribed(&t, &sub.types) => {
                    st.logs_dropped.push(t.clone());
                    Some(t)
                }
                _ => None,
            }
        };
        if let Some(r) = report {
            items.insert(0, r);
        }
        let mut body = Vec::with_capacity(bytes + items.len() + 2);
        body.push(b'[');
        for (i, item) in items.iter().enumerate() {
            if i > 0 {
                body.push(b',');
            }
            body.extend_from_slice(item.as_bytes());
        }
        body.push(b']');
        let headers = vec![
            (
                "Host".to_owned(),
                format!("sandbox.localdomain:{}", sub.port),
            ),
            ("Content-Type".to_owned(), "application/json".to_owned()),
        ];
        let path = sub.path.clone();
        self.log.update(|st| {
            st.in_flight = true;
            st.in_flight_items = n;
        });
        let sent_at = Instant::now();
        let result = self
            .client
            .as_ref()
            .expect("client set with subscription")
            .request("POST", &path, &headers, &body);
        let latency = sent_at.elapsed();
        let (status, error) = match result {
            Ok(r) => (Some(r.status), None),
            Err(e) => (None, Some(e.to_string())),
        };
        let count = items.len();
        let failed_texts = if status == Some(200) {
            Vec::new()
        } else {
            items
        };
        self.log.update(|st| {
            st.posts.push(TelemetryPost {
                sent_at,
                items: count,
                bytes: body.len(),
                status,
                error,
                latency,
                failed_texts,
            });
            st.queued -= n;
            st.in_flight = false;
            st.in_flight_items = 0;
        });
    }
}
