//! What the extension had in flight to Kinesis when it called `/event/next`: Lambda
//! freezes the environment right after, so a request or connect open then stays open
//! across the freeze (the peer may time it out meanwhile, and the extension finds it broken
//! or answered late at the thaw). Observed from the kernel's sockets by the mock
//! ([`kte_test_support::fake_kinesis::KinesisHandle::in_flight`]) the moment the sandbox sees each
//! `/event/next`; only on default Lambda with the mock Kinesis.

use serde::Serialize;

use super::report::count;
use super::session::Invocation;

/// Over a session's invocations: how often something was in flight at `/event/next`.
#[derive(Clone, Debug, Default, Serialize)]
pub struct InFlightReport {
    /// Invocations whose `/event/next` was observed.
    pub observed: u64,
    /// Those at which something was in flight to Kinesis ...
    pub invocations: u64,
    /// ... and, summed over them: requests the mock had not answered on connections the
    /// extension had not closed, connects not completed, request bytes not read yet.
    pub requests: u64,
    pub connects: u64,
    pub unread_bytes: u64,
}

impl InFlightReport {
    pub(super) fn of(invocations: &[Invocation]) -> InFlightReport {
        let mut r = InFlightReport::default();
        for f in invocations.iter().filter_map(|i| i.in_flight) {
            r.observed += 1;
            if f.any() {
                r.invocations += 1;
                r.requests += f.requests;
                r.connects += f.connects;
                r.unread_bytes += f.unread_bytes;
            }
        }
        r
    }

    /// The report's line, `None` when nothing was observed.
    pub fn describe(&self) -> Option<String> {
        if self.observed == 0 {
            return None;
        }
        if self.invocations == 0 {
            return Some(format!(
                "in flight to Kinesis at /event/next: nothing ({} observed)",
                count(self.observed, "invocation")
            ));
        }
        Some(format!(
            "in flight to Kinesis at /event/next: at {} of {} ({} unanswered, {} pending, {} unread): open across the freeze",
            self.invocations,
            count(self.observed, "invocation"),
            count(self.requests, "request"),
            count(self.connects, "connect"),
            count(self.unread_bytes, "request byte"),
        ))
    }
}
