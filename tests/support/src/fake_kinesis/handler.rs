//! How the fake Kinesis answers a request, in the real endpoint's order: transport
//! faults (drop, hold unanswered, stall, latency), scripted server failures, routing,
//! SigV4, a scripted fatal error, body shape and limits, the stream, then each record's
//! outcome.

use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use serde_json::{json, Value};

use super::shards::ShardMeter;
use super::{
    access_key_of, AfterStall, Outcome, RequestLog, Shared, State, StoredRecord, MAX_STALL,
};
use crate::http::{Action, Connection, Handler, Request, Response};
use crate::kinesis_api::{
    parse_put_records, shard_for, Account, AwsError, ParsedRequest, CONTENT_TYPE,
    PUT_RECORDS_TARGET,
};
use crate::rng::uuid_like;
use crate::sigv4::HttpParts;

pub(super) struct KinesisHandler(pub(super) Arc<Shared>);

/// How often a held request checks whether its fault was cleared.
const HOLD_POLL: Duration = Duration::from_millis(20);

enum Transport {
    Normal,
    Drop,
    /// No answer until the client hangs up or the fault is cleared.
    Hold,
    Stall(Duration, AfterStall),
}

impl Handler for KinesisHandler {
    fn handle(&self, req: Request) -> Action {
        let shared = &self.0;
        let (index, transport, latency) = {
            let mut st = shared.lock();
            st.stats.requests += 1;
            st.stats.request_bytes += req.body.len() as u64;
            let index = st.requests.len();
            st.requests.push(RequestLog {
                index,
                received_at: Instant::now(),
                answered_at: None,
                body_bytes: req.body.len(),
                connection_index: req.connection_index,
                index_on_connection: req.index_on_connection,
                peer: req.connection.as_ref().map(|c| c.peer),
                access_key: req.header("authorization").and_then(access_key_of),
                stalled: false,
                held: false,
                outcome: Outcome::Pending,
                records_throttled: 0,
                bytes_accepted: 0,
            });
            let drop_roll = st.faults.drop_fraction > 0.0 && {
                let roll = st.rng.next_f64();
                roll < st.faults.drop_fraction
            };
            let f = &mut st.faults;
            let transport = if f.drop_next > 0 {
                f.drop_next -= 1;
                Transport::Drop
            } else if drop_roll {
                Transport::Drop
            } else if f.never_answer {
                Transport::Hold
            } else if f.stall_next > 0 {
                f.stall_next -= 1;
                Transport::Stall(f.stall_for, f.after_stall.unwrap_or(AfterStall::Answer))
            } else {
                Transport::Normal
            };
            (index, transport, f.latency)
            // Lock released before any sleep: other connections keep being served.
        };
        match transport {
            Transport::Drop => return self.finish_dropped(index),
            Transport::Hold => return self.hold(index, req.connection.as_ref()),
            Transport::Stall(d, then) => {
                {
                    let mut st = shared.lock();
                    st.requests[index].stalled = true;
                    st.stats.stalled_requests += 1;
                }
                thread::sleep(d);
                if then == AfterStall::Drop {
                    return self.finish_dropped(index);
                }
            }
            Transport::Normal => {}
        }
        if !latency.is_zero() {
            thread::sleep(latency);
        }
        let result = self.process(&req, index);
        let mut st = shared.lock();
        let (resp, outcome) = match result {
            Ok((body, records, failed)) => {
                st.stats.answered_200 += 1;
                (
                    Response::new(200, CONTENT_TYPE, body.to_string()),
                    Outcome::Answered200 { records, failed },
                )
            }
            Err(e) => {
                st.stats.rejected += 1;
                *st.stats.rejections.entry(e.code.clone()).or_default() += 1;
                (
                    Response::new(e.status, CONTENT_TYPE, e.body().to_string()),
                    Outcome::Rejected {
                        status: e.status,
                        code: e.code.clone(),
                    },
                )
            }
        };
        let log = &mut st.requests[index];
        log.outcome = outcome;
        log.answered_at = Some(Instant::now());
        drop(st);
        shared.changed.notify_all();
        let request_id = uuid_like(index as u64 ^ 0x5eed);
        Action::Respond(resp.with_header("x-amzn-RequestId", &request_id))
    }
}

impl KinesisHandler {
    /// Holds a request unanswered: until the client closes the connection (abandoned),
    /// or the fault is cleared, the server stops or [`MAX_STALL`] passes (then the
    /// connection is closed unanswered). Nothing it carried is stored either way.
    fn hold(&self, index: usize, connection: Option<&Connection>) -> Action {
        let shared = &self.0;
        {
            let mut st = shared.lock();
            st.stats.held_requests += 1;
            st.requests[index].held = true;
        }
        shared.changed.notify_all();
        let until = Instant::now() + MAX_STALL;
        loop {
            let hung_up = match connection {
                Some(c) => c.wait_for_hang_up(HOLD_POLL),
                None => {
                    thread::sleep(HOLD_POLL);
                    false
                }
            };
            if hung_up {
                let mut st = shared.lock();
                st.stats.abandoned_requests += 1;
                st.requests[index].outcome = Outcome::Abandoned;
                drop(st);
                shared.changed.notify_all();
                return Action::Drop;
            }
            let held = shared.lock().faults.never_answer;
            if !held || shared.stopped() || Instant::now() >= until {
                return self.finish_dropped(index);
            }
        }
    }

    fn finish_dropped(&self, index: usize) -> Action {
        let mut st = self.0.lock();
        st.stats.dropped_connections += 1;
        st.requests[index].outcome = Outcome::Dropped;
        st.requests[index].answered_at = Some(Instant::now());
        drop(st);
        self.0.changed.notify_all();
        Action::Drop
    }

    /// Returns (body, records, failed records) for a 200, or the whole-request error. The
    /// state is locked only to read or change it: verifying the signature and parsing the
    /// body (the costly parts) run unlocked, so connections are served in parallel.
    fn process(&self, req: &Request, index: usize) -> Result<(Value, usize, usize), AwsError> {
        let cfg = &self.0.config;
        // Server-side failures come before anything is looked at.
        self.server_failure()?;
        // Routing: the JSON protocol dispatches on method, content type and target.
        let unknown_op = || AwsError::new(400, "UnknownOperationException", "");
        if req.method != "POST" || req.path != "/" {
            return Err(unknown_op());
        }
        let ctype = req.header("content-type").unwrap_or("");
        if ctype.split(';').next().unwrap_or("").trim() != CONTENT_TYPE {
            return Err(unknown_op());
        }
        if req.header("x-amz-target") != Some(PUT_RECORDS_TARGET) {
            return Err(unknown_op());
        }
        let parts = HttpParts {
            method: &req.method,
            path: &req.path,
            query: &req.query,
            headers: &req.headers,
            body: &req.body,
        };
        let now = SystemTime::now();
        let key = req.header("authorization").and_then(super::access_key_of);
        let verifier = self.0.verifier_at(key.as_deref(), now)?;
        if let Err(e) = verifier.verify(parts, now) {
            return Err(AwsError::new(400, e.aws_code(), e.aws_message()));
        }
        if let Some(fatal) = &self.0.lock().faults.fatal {
            return Err(fatal.clone());
        }
        let account = Account {
            region: &cfg.region,
            account_id: &cfg.account_id,
            limits: &cfg.limits,
        };
        let parsed = parse_put_records(&req.body, &account)?;
        if !cfg.streams.contains(&parsed.stream) {
            return Err(AwsError::new(
                400,
                "ResourceNotFoundException",
                format!(
                    "Stream {} under account {} not found.",
                    parsed.stream, cfg.account_id
                ),
            ));
        }
        let mut st = self.0.lock();
        Ok(self.store(&mut st, parsed, index))
    }

    /// A scripted outage or failing request.
    fn server_failure(&self) -> Result<(), AwsError> {
        let mut st = self.0.lock();
        let st = &mut *st;
        if let Some((until, status)) = st.faults.outage {
            if Instant::now() < until {
                return Err(AwsError::server(status));
            }
            st.faults.outage = None;
        }
        if st.faults.fail_next > 0 {
            st.faults.fail_next -= 1;
            return Err(AwsError::server(st.faults.fail_next_status));
        }
        if st.faults.fail_fraction > 0.0 && st.rng.next_f64() < st.faults.fail_fraction {
            return Err(AwsError::server(st.faults.fail_fraction_status));
        }
        Ok(())
    }

    /// Each record's outcome: a scripted throttle or InternalFailure, then the shard's
    /// limits when enforced, else stored. Returns the 200's body, records and failed ones.
    fn store(&self, st: &mut State, parsed: ParsedRequest, index: usize) -> (Value, usize, usize) {
        let cfg = &self.0.config;
        let now = Instant::now();
        let mut results = Vec::with_capacity(parsed.records.len());
        let (mut failed, mut throttled, mut accepted_bytes) = (0, 0, 0u64);
        for (i, rec) in parsed.records.into_iter().enumerate() {
            let shard = shard_for(
                &rec.partition_key,
                rec.explicit_hash_key.as_deref(),
                cfg.shard_count,
            );
            let shard_id = format!("shardId-{shard:012}");
            let size = rec.data.len() + rec.partition_key.len();
            let f = &mut st.faults;
            let scripted = if f.throttle_next_records > 0 {
                f.throttle_next_records -= 1;
                true
            } else {
                f.throttle_fraction > 0.0 && st.rng.next_f64() < f.throttle_fraction
            };
            let internal = !scripted && st.faults.internal_next_records > 0;
            let over_limit = !scripted
                && !internal
                && cfg.shard_limits.is_some_and(|limits| {
                    let meter = st
                        .shards
                        .entry((parsed.stream.clone(), shard))
                        .or_insert_with(|| ShardMeter::new(limits));
                    !meter.admit(size, now)
                });
            if scripted || over_limit {
                failed += 1;
                throttled += 1;
                st.stats.records_throttled += 1;
                results.push(json!({
                    "ErrorCode": "ProvisionedThroughputExceededException",
                    "ErrorMessage": format!(
                        "Rate exceeded for shard {shard_id} in stream {} under account {}.",
                        parsed.stream, cfg.account_id
                    ),
                }));
            } else if internal {
                st.faults.internal_next_records -= 1;
                failed += 1;
                st.stats.records_internal_failure += 1;
                results.push(json!({ "ErrorCode": "InternalFailure", "ErrorMessage": "Internal service failure." }));
            } else {
                let sequence_number = format!("49{:054}", st.next_sequence);
                st.next_sequence += 1;
                st.stats.records_accepted += 1;
                st.stats.data_bytes_accepted += rec.data.len() as u64;
                accepted_bytes += size as u64;
                results.push(json!({ "SequenceNumber": sequence_number, "ShardId": shard_id }));
                let order = st.records.len() as u64;
                st.records.push(StoredRecord {
                    stream: parsed.stream.clone(),
                    data: rec.data,
                    partition_key: rec.partition_key,
                    explicit_hash_key: rec.explicit_hash_key,
                    shard_id,
                    sequence_number,
                    order,
                    request_index: index,
                    index_in_request: i,
                });
            }
        }
        let n = results.len();
        st.stats.records_received += n as u64;
        let log = &mut st.requests[index];
        log.records_throttled = throttled;
        log.bytes_accepted = accepted_bytes;
        (
            json!({ "FailedRecordCount": failed, "Records": results, "EncryptionType": "NONE" }),
            n,
            failed,
        )
    }
}
