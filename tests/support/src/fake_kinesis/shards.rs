//! Per-shard write limits, when the fake is asked to enforce them
//! ([`KinesisConfig::shard_limits`](super::KinesisConfig::shard_limits)): each shard takes
//! up to 1 MiB/s (data plus partition key, as Kinesis counts it) and 1,000 records/s. A
//! record over either is answered `ProvisionedThroughputExceededException` on its own (the
//! rest of the request is still taken), and takes nothing from the shard.
//!
//! Each limit is a token bucket that holds one second of its rate (a shard idle for a
//! second takes a one-second burst, no more) and refills continuously. Pure: the time is
//! passed in, so the tests below need no clock.

use std::time::{Duration, Instant};

/// Kinesis's per-shard write limits.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct ShardLimits {
    /// Data + partition key bytes per second (1 MiB).
    pub bytes_per_second: f64,
    /// Records per second (1,000).
    pub records_per_second: f64,
}

impl Default for ShardLimits {
    fn default() -> Self {
        ShardLimits {
            bytes_per_second: 1024.0 * 1024.0,
            records_per_second: 1000.0,
        }
    }
}

/// Tokens that refill at `rate` per second up to `capacity`.
#[derive(Clone, Debug)]
pub struct TokenBucket {
    capacity: f64,
    rate: f64,
    tokens: f64,
    at: Option<Instant>,
}

impl TokenBucket {
    /// Full, holding one second of `rate`.
    pub fn per_second(rate: f64) -> TokenBucket {
        TokenBucket {
            capacity: rate,
            rate,
            tokens: rate,
            at: None,
        }
    }

    fn refill(&mut self, now: Instant) {
        if let Some(at) = self.at {
            let dt = now.saturating_duration_since(at).as_secs_f64();
            self.tokens = (self.tokens + dt * self.rate).min(self.capacity);
        }
        self.at = Some(self.at.map_or(now, |at| at.max(now)));
    }

    /// The tokens there are at `now`.
    pub fn available(&mut self, now: Instant) -> f64 {
        self.refill(now);
        self.tokens
    }

    fn take(&mut self, n: f64) {
        self.tokens -= n;
    }
}

/// One shard's meter: its two buckets and what it took.
#[derive(Clone, Debug)]
pub struct ShardMeter {
    bytes: TokenBucket,
    records: TokenBucket,
    pub accepted_records: u64,
    pub accepted_bytes: u64,
    pub throttled_records: u64,
}

impl ShardMeter {
    pub fn new(limits: ShardLimits) -> ShardMeter {
        ShardMeter {
            bytes: TokenBucket::per_second(limits.bytes_per_second),
            records: TokenBucket::per_second(limits.records_per_second),
            accepted_records: 0,
            accepted_bytes: 0,
            throttled_records: 0,
        }
    }

    /// Whether a record of `size` bytes (data + partition key) fits at `now`; if it does,
    /// the shard takes it.
    pub fn admit(&mut self, size: usize, now: Instant) -> bool {
        let fits = self.bytes.available(now) >= size as f64 && self.records.available(now) >= 1.0;
        if fits {
            self.bytes.take(size as f64);
            self.records.take(1.0);
            self.accepted_records += 1;
            self.accepted_bytes += size as u64;
        } else {
            self.throttled_records += 1;
        }
        fits
    }
}

/// What one shard took over a span of time, against what it could have.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct ShardUse {
    pub shard_id: String,
    pub accepted_records: u64,
    pub accepted_bytes: u64,
    pub throttled_records: u64,
}

impl ShardUse {
    /// Accepted bytes ÷ what the shard could take in `span` (0 for an empty span).
    pub fn busy(&self, limits: ShardLimits, span: Duration) -> f64 {
        let capacity = limits.bytes_per_second * span.as_secs_f64();
        if capacity > 0.0 {
            self.accepted_bytes as f64 / capacity
        } else {
            0.0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: usize = 1024 * 1024;

    fn ms(t0: Instant, ms: u64) -> Instant {
        t0 + Duration::from_millis(ms)
    }

    #[test]
    fn a_bucket_holds_one_second_and_refills_at_its_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::per_second(1000.0);
        // (time in ms, tokens to take, tokens there before taking)
        let steps: &[(u64, f64, f64)] = &[
            (0, 1000.0, 1000.0), // full: one second of burst
            (0, 0.0, 0.0),
            (250, 0.0, 250.0), // a quarter second refills a quarter
            (250, 250.0, 250.0),
            (5_000, 0.0, 1000.0), // never more than one second
            (4_000, 0.0, 1000.0), // time going back changes nothing
        ];
        for &(at, take, before) in steps {
            let got = b.available(ms(t0, at));
            assert!((got - before).abs() < 1e-6, "at {at} ms: {got} != {before}");
            b.take(take);
        }
    }

    #[test]
    fn a_shard_takes_one_mib_and_a_thousand_records_a_second() {
        let t0 = Instant::now();
        let limits = ShardLimits::default();
        // Bytes: 1 MiB in 1 KiB records passes (1,024 records ≥ 1,000: the record limit
        // bites first at the 1,001st).
        let mut s = ShardMeter::new(limits);
        let taken = (0..1024).filter(|_| s.admit(1024, t0)).count();
        assert_eq!(taken, 1000);
        // Bytes: two 600 KiB records in the same instant: the second is over.
        let mut s = ShardMeter::new(limits);
        assert!(s.admit(600 * 1024, t0));
        assert!(!s.admit(600 * 1024, t0));
        // Half a second later half a MiB came back: 424 KiB left + 512 KiB ≥ 600 KiB.
        assert!(s.admit(600 * 1024, ms(t0, 500)));
        assert_eq!(
            (s.accepted_records, s.accepted_bytes, s.throttled_records),
            (2, 2 * 600 * 1024, 1)
        );
        // A record bigger than a second's worth never fits.
        let mut s = ShardMeter::new(limits);
        assert!(!s.admit(MIB + 1, ms(t0, 10_000)));
        // Sustained: 10 s at 1.5 MiB/s offered (150 KiB every 100 ms) lands about 1 MiB/s.
        let mut s = ShardMeter::new(limits);
        for tick in 0..100 {
            for _ in 0..15 {
                s.admit(10 * 1024, ms(t0, tick * 100));
            }
        }
        let landed = s.accepted_bytes as f64 / MIB as f64;
        assert!((10.0..=11.0).contains(&landed), "{landed} MiB in 10 s");
    }

    /// The fake with limits on: records over them are throttled one by one (the rest of the
    /// request stored), accepted entries name their shard, throttled ones do not.
    #[test]
    fn the_fake_throttles_records_over_a_shards_limits_and_names_shards() {
        use crate::fake_kinesis::{send_put_records, test_credentials, FakeKinesis, KinesisConfig};
        use base64::Engine as _;
        let k = FakeKinesis::start(KinesisConfig {
            shard_count: 2,
            shard_limits: Some(ShardLimits::default()),
            ..KinesisConfig::default()
        })
        .unwrap();
        // "a" hashes to shard 0 of 2, "abc" to shard 1 (see kinesis_api's known answers):
        // 600 records a request on shard 0, one on shard 1.
        let data = base64::engine::general_purpose::STANDARD.encode(b"0123456789");
        let body = |n: usize| {
            let mut recs: Vec<_> = (0..n)
                .map(|_| serde_json::json!({"Data": data, "PartitionKey": "a"}))
                .collect();
            recs.push(serde_json::json!({"Data": data, "PartitionKey": "abc"}));
            serde_json::json!({"StreamName": "telemetry-stream", "Records": recs}).to_string()
        };
        let started = Instant::now();
        let mut answers = Vec::new();
        for _ in 0..3 {
            let r = send_put_records(
                k.addr(),
                &test_credentials(),
                "us-east-1",
                body(499).as_bytes(),
                |_| {},
            )
            .unwrap();
            assert_eq!(r.status, 200);
            answers.push(r.json().unwrap());
        }
        let elapsed = started.elapsed().as_secs_f64();
        let entries: Vec<&serde_json::Value> = answers
            .iter()
            .flat_map(|a| a["Records"].as_array().unwrap())
            .collect();
        let throttled = entries
            .iter()
            .filter(|e| e["ErrorCode"] == "ProvisionedThroughputExceededException")
            .count();
        let accepted: Vec<&str> = entries
            .iter()
            .filter_map(|e| e["ShardId"].as_str())
            .collect();
        assert_eq!(accepted.len() + throttled, 3 * 500);
        // Shard 0 took its second's 1,000 records plus what refilled meanwhile; shard 1
        // all three of its own.
        let on = |id: &str| accepted.iter().filter(|s| **s == id).count();
        assert_eq!(on("shardId-000000000001"), 3);
        let refilled = (elapsed * 1000.0).ceil() as usize + 1;
        let zero = on("shardId-000000000000");
        assert!(
            (1000..=1000 + refilled).contains(&zero),
            "{zero} in {elapsed} s"
        );
        assert!(entries
            .iter()
            .filter(|e| e.get("ErrorCode").is_some())
            .all(|e| e.get("ShardId").is_none()
                && e["ErrorMessage"]
                    .as_str()
                    .unwrap()
                    .starts_with("Rate exceeded for shard shardId-000000000000")));
        let uses = k.shard_use("telemetry-stream");
        assert_eq!(uses.len(), 2);
        assert_eq!(uses[0].throttled_records as usize, throttled);
        assert_eq!(k.stats().records_throttled as usize, throttled);
    }

    #[test]
    fn busy_is_accepted_bytes_over_capacity() {
        let u = ShardUse {
            accepted_bytes: 512 * 1024,
            ..ShardUse::default()
        };
        let limits = ShardLimits::default();
        assert_eq!(u.busy(limits, Duration::from_secs(1)), 0.5);
        assert_eq!(u.busy(limits, Duration::ZERO), 0.0);
    }
}
