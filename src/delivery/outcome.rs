//! What a PutRecords response means, and what becomes of the request's events: the
//! *outcome* step ([`Outcome::of`]: which records were delivered, which to resend, whether
//! the request was refused for good) and the *settle* step ([`settle`]: each taken event's
//! fate, and what to count). Both are pure.
//!
//! Invariants of an [`Outcome`] over the request's record indices (`0..sent`):
//! * `delivered + resend.len() + dropped == sent` (dropped: all of them when `fatal`);
//! * `resend` is ascending, so resent records keep their relative order;
//! * a whole-request fatal error drops every record of the request with one reason,
//!   a whole-request transient error resends all of them, and a 200 with failed
//!   entries resends exactly those (per-record codes are never fatal, see
//!   [`classify_record_code`]).
//!
//! A [`Settlement`] gives every taken event exactly one fate: the events of a resent record
//! go back to the front (in order), the others leave the buffer (delivered, or dropped when
//! the request was refused for good).
//!
//! Resending after a timeout or a lost answer can duplicate records: delivery is at
//! least once.

use crate::kinesis::{
    classify_record_code, ErrorClass, PutRecordsResponse, RecordOutcome, RequestError,
};
use crate::store::buffer::Fate;

/// What one PutRecords call came to, per record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Records Kinesis accepted.
    pub delivered: usize,
    /// Request indices to send again, ascending.
    pub resend: Vec<usize>,
    /// How many of `resend` were refused for throughput (per record, or the whole
    /// request): the stream is short of capacity.
    pub throttled: usize,
    /// Set when the whole request failed for good: all its records are dropped, for this
    /// reason (an AWS error code or a failure name).
    pub fatal: Option<String>,
    /// The outcome is unknown (the request timed out after it was sent): the records to
    /// resend may already be in the stream.
    pub unconfirmed: bool,
}

/// Whether a failed request may still have been applied: it reached Kinesis and the answer
/// was lost (a timeout after sending, a connection broken mid-exchange, a garbled 2xx).
fn may_have_landed(error: &RequestError) -> bool {
    use crate::kinesis::TimeoutPhase;
    matches!(
        error,
        RequestError::Timeout(TimeoutPhase::Send | TimeoutPhase::Receive | TimeoutPhase::Overall)
            | RequestError::Io(_)
            | RequestError::Abandoned
            | RequestError::MalformedResponse(_)
    )
}

impl Outcome {
    /// The outcome of a PutRecords call that carried `sent` records.
    pub fn of(result: &Result<PutRecordsResponse, RequestError>, sent: usize) -> Outcome {
        let all = || (0..sent).collect::<Vec<usize>>();
        match result {
            // The client already rejects a mismatched length; if one gets here anyway,
            // nothing is known about any record, so all are resent.
            Ok(response) if response.records.len() != sent => Outcome {
                delivered: 0,
                resend: all(),
                throttled: 0,
                fatal: None,
                unconfirmed: false,
            },
            Ok(response) => {
                let mut outcome = Outcome {
                    delivered: 0,
                    resend: Vec::new(),
                    throttled: 0,
                    fatal: None,
                    unconfirmed: false,
                };
                for (i, record) in response.records.iter().enumerate() {
                    match record {
                        RecordOutcome::Ok => outcome.delivered += 1,
                        RecordOutcome::Failed { code, .. } => {
                            outcome.resend.push(i);
                            if classify_record_code(code) == ErrorClass::Throttled {
                                outcome.throttled += 1;
                            }
                        }
                    }
                }
                outcome
            }
            Err(error) => match error.class() {
                ErrorClass::Fatal => Outcome {
                    delivered: 0,
                    resend: Vec::new(),
                    throttled: 0,
                    fatal: Some(error.reason()),
                    unconfirmed: false,
                },
                ErrorClass::Throttled => Outcome {
                    delivered: 0,
                    resend: all(),
                    throttled: sent,
                    fatal: None,
                    unconfirmed: false,
                },
                ErrorClass::Retryable => Outcome {
                    delivered: 0,
                    resend: all(),
                    throttled: 0,
                    fatal: None,
                    unconfirmed: may_have_landed(error),
                },
            },
        }
    }
}

/// What becomes of a request's events once its outcome is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settlement {
    /// Each taken event's fate, in buffer order: back to the front (`Resend`), or out of the
    /// buffer (`Gone`: delivered, or dropped when `dropped` is set).
    pub fates: Vec<Fate>,
    /// Events going back to the front.
    pub resent: u64,
    /// Records Kinesis accepted, and their bytes as Kinesis counts them (data + key).
    pub records_ok: u64,
    pub bytes_ok: u64,
    /// The events going back may already be in the stream (the answer was lost).
    pub unconfirmed: bool,
    /// Kinesis refused the request for good: every event is dropped under this reason.
    pub dropped: Option<String>,
}

/// Settles a request of `events` taken events from its `outcome`; `records` are the request's
/// records in order, each as (indices of its events, its bytes).
pub fn settle<'a>(
    outcome: &Outcome,
    records: impl IntoIterator<Item = (&'a [usize], usize)>,
    events: usize,
) -> Settlement {
    let mut s = Settlement {
        fates: vec![Fate::Gone; events],
        resent: 0,
        records_ok: 0,
        bytes_ok: 0,
        unconfirmed: false,
        dropped: outcome.fatal.clone(),
    };
    if s.dropped.is_some() {
        return s;
    }
    for (i, (record_events, bytes)) in records.into_iter().enumerate() {
        if !outcome.resend.contains(&i) {
            s.records_ok += 1;
            s.bytes_ok += bytes as u64;
            continue;
        }
        for &e in record_events {
            if let Some(f) = s.fates.get_mut(e) {
                *f = Fate::Resend;
                s.resent += 1;
            }
        }
    }
    s.unconfirmed = outcome.unconfirmed;
    s
}

#[cfg(test)]
mod tests;
