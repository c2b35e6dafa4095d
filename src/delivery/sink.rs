//! Where records go: the [`Sink`] a request is sent through, and the real one,
//! [`KinesisSink`] (PutRecords to one stream). Tests script their own.

use std::time::Duration;

use crate::kinesis::{Interrupt, PutRecordsResponse, Record, RequestError};

/// Where records go. The real one is [`KinesisSink`]; tests script one.
pub trait Sink: Send + 'static {
    /// One PutRecords: at most `timeout` in all, `connect_timeout` of it for a new connection.
    fn put(
        &mut self,
        records: &[Record<'_>],
        timeout: Duration,
        connect_timeout: Duration,
    ) -> Result<PutRecordsResponse, RequestError>;

    /// What the user should fix for a fatal error (names the stream and region).
    fn fix_hint(&self, err: &RequestError) -> String;

    /// Where requests go, as log lines name it.
    fn endpoint(&self) -> String;

    /// How long the connects made since the last call took.
    fn connect_times(&mut self) -> Vec<Duration> {
        Vec::new()
    }

    /// Cuts the request in flight from another thread (the added-time budget).
    fn interrupt(&self) -> Option<Interrupt> {
        None
    }

    /// A connect to the endpoint, run on its own thread at start: can Kinesis be reached,
    /// and how long does a connect take?
    fn connect_probe(&self) -> Option<ConnectProbe> {
        None
    }

    /// Forgets pooled connections (a SnapStart restore: they died with the snapshot).
    fn drop_connections(&mut self) {}
}

/// See [`Sink::connect_probe`].
pub type ConnectProbe = Box<dyn FnOnce() -> Result<Duration, RequestError> + Send>;

/// The start-up connect probe waits at most this long (or the connect timeout, if shorter): a
/// TCP connect that takes longer, even across regions, means Kinesis cannot be reached.
pub const START_PROBE_TIMEOUT: Duration = Duration::from_millis(500);

/// The real [`Sink`]: PutRecords to one stream.
pub struct KinesisSink {
    client: crate::kinesis::KinesisClient,
    target: crate::kinesis::StreamTarget,
    /// The configured connect timeout (the start-up probe's).
    connect_timeout: Duration,
}

impl KinesisSink {
    pub fn new(
        client: crate::kinesis::KinesisClient,
        target: crate::kinesis::StreamTarget,
        connect_timeout: Duration,
    ) -> Self {
        KinesisSink {
            client,
            target,
            connect_timeout,
        }
    }
}

impl Sink for KinesisSink {
    fn put(
        &mut self,
        records: &[Record<'_>],
        timeout: Duration,
        connect_timeout: Duration,
    ) -> Result<PutRecordsResponse, RequestError> {
        self.client
            .put_records(&self.target, records, timeout, connect_timeout)
    }

    fn fix_hint(&self, err: &RequestError) -> String {
        err.fix_hint(&self.target, self.client.region())
    }

    fn endpoint(&self) -> String {
        self.client.url().trim_end_matches('/').to_owned()
    }

    fn connect_times(&mut self) -> Vec<Duration> {
        self.client.connect_times()
    }

    fn interrupt(&self) -> Option<Interrupt> {
        Some(self.client.interrupt())
    }

    fn connect_probe(&self) -> Option<ConnectProbe> {
        let url = self.client.url().to_owned();
        let timeout = self.connect_timeout.min(START_PROBE_TIMEOUT);
        let interrupt = self.client.interrupt();
        Some(Box::new(move || {
            crate::kinesis::probe_connect(&url, timeout, &interrupt)
        }))
    }

    fn drop_connections(&mut self) {
        self.client.drop_connections();
    }
}
