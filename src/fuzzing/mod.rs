//! Entry points for the fuzz targets (`fuzz/`) and the property tests: each takes arbitrary
//! bytes, runs one parser the way the extension runs it, and panics when an invariant the
//! extension relies on breaks (a fuzzer reports the panic as a finding; a property test
//! fails). Not an API: hidden from the docs, reached only by `fuzz/` and by the tests.
//!
//! The oracles check what a user would notice, independently of the code under test where
//! they can (the reference parse of a body is serde_json's own `Vec<&RawValue>`):
//! - [`telemetry_post`]: a POST body through the receiver into the buffer: answered 200;
//!   every buffered event valid JSON, within the record budget, one line in NDJSON, with
//!   exactly one top-level `source` when enrichment is on and it is an object (or as many as
//!   Lambda sent, which the extension never changes); each one is an element of the body,
//!   byte for byte, in order, plus the enrichment (or truncated, saying so); and every
//!   element received is filtered, dropped with a reason, or held.
//! - [`truncation`]: within the limit, valid JSON, the original size recorded, the record
//!   kept as a prefix of the original.
//! - [`setting_values`]: any values for the settings: no panic, every value in its range,
//!   and an invalid integer named in a problem.
//! - [`listener_requests`]: the listener's request parsing over a byte stream split anywhere
//!   (no panic, no hang); [`spill_segment`]: recovery of a segment file (only frames really
//!   there, in order; records back whole).

use std::sync::Arc;

use serde::de::{IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::Value;

use crate::config::{self, Config, Documented, KNOWN, PREFIX};
use crate::event::key::PartitionKeyMode;
use crate::event::{Event, Key};
use crate::intake::enrich::{FunctionInfo, Origin};
use crate::intake::filter::{Filter, LogLevel, TypeSelection};
use crate::intake::listener::Handler;
use crate::intake::receiver::{self, TelemetryReceiver, MAX_EVENTS_PER_POST};
use crate::intake::truncate::truncate_event;
use crate::stats::Stats;
use crate::store::buffer::{Buffer, BufferCap};

#[cfg(test)]
pub mod strategies;

// ---------------------------------------------------------------------------------------------
// Batch parsing with enrichment
// ---------------------------------------------------------------------------------------------

/// The receiver's settings for one run, drawn from a byte so a fuzzer explores them all.
#[derive(Debug, Clone, Copy)]
pub struct Variant {
    pub enrich: bool,
    /// Keep only `function` lines of level INFO and up, and `platform.report`.
    pub filter: bool,
    pub one_line: bool,
    /// A buffer that holds a few events only (the refusal path).
    pub small_buffer: bool,
    /// Events over 300 bytes are truncated (else over 4,000).
    pub small_events: bool,
    pub request_id_keys: bool,
    pub concurrent: bool,
}

impl Variant {
    pub fn from_byte(b: u8) -> Variant {
        Variant {
            enrich: b & 1 == 0,
            filter: b & 2 != 0,
            one_line: b & 4 == 0,
            small_buffer: b & 8 != 0,
            small_events: b & 16 != 0,
            request_id_keys: b & 32 != 0,
            concurrent: b & 64 != 0,
        }
    }

    fn max_event_bytes(&self) -> usize {
        if self.small_events {
            300
        } else {
            4_000
        }
    }
}

/// A POST body through the receiver (the first byte picks the [`Variant`]); panics when an
/// invariant breaks (see the module docs).
pub fn telemetry_post(data: &[u8]) {
    let (variant, body) = data.split_first().map_or((0, data), |(v, b)| (*v, b));
    check_post(Variant::from_byte(variant), body);
}

/// [`telemetry_post`] with the variant given.
pub fn check_post(v: Variant, body: &[u8]) {
    let cap = if v.small_buffer {
        BufferCap {
            max_events: 5,
            max_bytes: 4_096,
        }
    } else {
        BufferCap {
            max_events: 100_000,
            max_bytes: 64 << 20,
        }
    };
    let (buffer, _woken) = Buffer::new(cap, None);
    let buffer = Arc::new(buffer);
    let stats = Arc::new(Stats::default());
    let (receiver, budget) = receiver_for(&v, buffer.clone(), stats.clone());
    assert_eq!(receiver.post(body), 200, "every POST is answered 200");

    let (lease, ()) = buffer.take(|q| (q.len(), ()));
    let events = lease.events();
    for e in events {
        check_event(&v, e, budget);
    }
    if v.enrich {
        let seqs: Vec<u64> = events.iter().filter_map(seq_of).collect();
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "seq grows in arrival order: {seqs:?}"
        );
    }

    let get = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
    let received = get(&stats.received);
    let dropped = stats.snapshot().dropped_total();
    assert_eq!(
        received,
        get(&stats.filtered) + dropped + events.len() as u64,
        "every element received is filtered, dropped with a reason, or held"
    );
    assert!(events.len() as u64 <= MAX_EVENTS_PER_POST);

    let unusable: u64 = stats.bad_bodies.iter().map(get).sum();
    match serde_json::from_slice::<Vec<&RawValue>>(body) {
        Ok(elements) => {
            assert_eq!(unusable, 0, "a valid array is used");
            assert_eq!(received, elements.len() as u64, "every element counted");
            if !v.filter {
                match_in_order(&v, &elements, events);
            }
        }
        Err(_) => assert_eq!(unusable, 1, "an unusable body is counted once"),
    }
}

/// The receiver a [`Variant`] describes, over `buffer`, and the byte budget each event it
/// admits must fit (the record budget plus what enrichment adds).
fn receiver_for(v: &Variant, buffer: Arc<Buffer>, stats: Arc<Stats>) -> (TelemetryReceiver, usize) {
    let origin = Origin::new(
        &FunctionInfo {
            name: "orders".into(),
            version: "$LATEST".into(),
            region: "eu-west-1".into(),
            account: Some("123456789012".into()),
            memory_mb: Some(128),
        },
        "f0f0f0f0f0f0f0f0".into(),
    );
    let budget = v.max_event_bytes() + if v.enrich { origin.max_added_len() } else { 0 };
    let filter = if v.filter {
        Filter {
            types: TypeSelection::parse("function,platform.report").expect("a valid list"),
            min_level: Some(LogLevel::Info),
        }
    } else {
        Filter::default()
    };
    let receiver = TelemetryReceiver::new(
        receiver::ReceiverSettings {
            filter,
            origin: v.enrich.then_some(origin),
            partition_key: if v.request_id_keys {
                PartitionKeyMode::RequestId
            } else {
                PartitionKeyMode::Random
            },
            fixed_key: None,
            environment: Arc::new(crate::intake::snapstart::Environment::with_id(
                false,
                "f0f0f0f0f0f0f0f0",
            )),
            concurrent: v.concurrent,
            max_event_bytes: v.max_event_bytes(),
            one_line: v.one_line,
            buffering: receiver::Buffering {
                max_items: 10_000,
                max_bytes: 262_144,
                timeout_ms: 25,
            },
        },
        buffer,
        stats,
    );
    (receiver, budget)
}

/// Every buffered event is an element of the body, in order (some may be missing: refused
/// by a small buffer), kept byte for byte but for the enrichment and NDJSON's line breaks,
/// or truncated and saying so.
fn match_in_order(v: &Variant, elements: &[&RawValue], events: &[Event]) {
    let mut rest = elements.iter();
    for e in events {
        let found = rest.by_ref().any(|el| is_kept_as(v, el.get(), &e.raw));
        assert!(
            found,
            "buffered event matches no element in order: {}",
            e.raw
        );
    }
}

fn is_kept_as(v: &Variant, original: &str, kept: &str) -> bool {
    if original.len() > v.max_event_bytes() {
        let one_source = !v.enrich || source_keys(kept) == Some(1);
        let size = member(kept, "truncated").and_then(|t| t["originalBytes"].as_u64());
        return one_source && size == Some(original.len() as u64);
    }
    let expected = if v.one_line {
        original.replace(['\n', '\r'], " ")
    } else {
        original.to_string()
    };
    let enriched = v.enrich && expected.starts_with('{') && source_keys(&expected) == Some(0);
    if !enriched {
        return kept == expected;
    }
    // The object spliced in before the closing brace: `{…` + `,"source":{…}}`.
    let stem = &expected[..expected.len() - 1];
    kept.strip_prefix(stem)
        .map(|tail| tail.strip_prefix(',').unwrap_or(tail))
        .is_some_and(|tail| tail.starts_with("\"source\":{") && tail.ends_with("}}"))
        && source_keys(kept) == Some(1)
}

fn check_event(v: &Variant, e: &Event, budget: usize) {
    let text = &*e.raw;
    valid_json(text);
    assert!(
        text.len() <= budget,
        "{} bytes > the record budget {budget}: {text}",
        text.len()
    );
    if v.one_line {
        assert!(!text.contains(['\n', '\r']), "not one line: {text:?}");
    }
    if v.enrich && text.starts_with('{') {
        // One of its own (or, as Lambda sent them, several), or exactly the one added: which
        // is checked against the element it came from in `is_kept_as`.
        assert!(source_keys(text).unwrap_or(0) >= 1, "no `source`: {text}");
    }
    if let Key::Fixed(k) = &e.key {
        let chars = k.chars().count();
        assert!(
            (1..=256).contains(&chars),
            "partition key of {chars} characters"
        );
    }
}

/// Panics unless `text` is one JSON value (RFC 8259: a number may be out of `f64`'s range,
/// such as `1e400`, which Lambda could send and `serde_json::Value` refuses).
fn valid_json(text: &str) {
    if let Err(e) = serde_json::from_str::<&RawValue>(text) {
        panic!("not one JSON value ({e}): {text:?}");
    }
}

/// A top-level member of a JSON object, as a `Value` (the last one of that name), `None`
/// when absent or not representable as a `Value`.
fn member(text: &str, name: &str) -> Option<Value> {
    let fields: std::collections::BTreeMap<String, &RawValue> = serde_json::from_str(text).ok()?;
    serde_json::from_str(fields.get(name)?.get()).ok()
}

/// The `seq` the extension gave an event it enriched.
fn seq_of(e: &Event) -> Option<u64> {
    let s = member(&e.raw, "source")?;
    (s.get("environment")? == "f0f0f0f0f0f0f0f0")
        .then(|| s.get("seq")?.as_u64())
        .flatten()
}

/// How many top-level members of a JSON object are named `source` (decoded: an escaped
/// name counts); `None` when `text` is not an object.
pub fn source_keys(text: &str) -> Option<usize> {
    struct Count;
    impl<'de> Visitor<'de> for Count {
        type Value = usize;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<usize, A::Error> {
            let mut n = 0;
            while let Some(IsSource(yes)) = map.next_key::<IsSource>()? {
                n += usize::from(yes);
                map.next_value::<IgnoredAny>()?;
            }
            Ok(n)
        }
    }
    /// Whether a member's name, decoded, is `source`. Read as bytes: a name may hold an
    /// escaped lone surrogate (`"\uDDDD"`), valid JSON text that no Rust `String` can hold.
    struct IsSource(bool);
    impl<'de> serde::Deserialize<'de> for IsSource {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct MemberName;
            impl<'de> Visitor<'de> for MemberName {
                type Value = IsSource;
                fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                    f.write_str("a member name")
                }
                fn visit_bytes<E>(self, b: &[u8]) -> Result<IsSource, E> {
                    Ok(IsSource(b == b"source"))
                }
                fn visit_str<E>(self, s: &str) -> Result<IsSource, E> {
                    Ok(IsSource(s == "source"))
                }
            }
            d.deserialize_bytes(MemberName)
        }
    }
    let mut de = serde_json::Deserializer::from_str(text);
    serde::Deserializer::deserialize_map(&mut de, Count).ok()
}

// ---------------------------------------------------------------------------------------------
// Truncation
// ---------------------------------------------------------------------------------------------

/// Truncation: the first two bytes are the limit (little endian), the rest the event text.
pub fn truncation(data: &[u8]) {
    let (limit, text) = match data {
        [a, b, rest @ ..] => (usize::from(u16::from_le_bytes([*a, *b])), rest),
        _ => (0, data),
    };
    check_truncation(&String::from_utf8_lossy(text), limit);
}

/// [`truncation`] with the event and limit given.
pub fn check_truncation(event: &str, limit: usize) {
    let out = truncate_event(event, limit);
    assert!(out.len() <= limit, "{} bytes > limit {limit}", out.len());
    if limit == 0 {
        return;
    }
    valid_json(&out);
    let marker_only = format!("{{\"truncated\":{{\"originalBytes\":{}}}}}", event.len());
    if limit >= marker_only.len() {
        let size = member(&out, "truncated").and_then(|t| t["originalBytes"].as_u64());
        assert_eq!(
            size,
            Some(event.len() as u64),
            "the original size is recorded: {out}"
        );
    }
    let Some(Value::String(kept)) = member(&out, "record") else {
        return;
    };
    // The text the record was cut from: a string record's value, another record's JSON
    // text, or the whole input when it is not an object.
    let fields: Option<std::collections::BTreeMap<String, &RawValue>> =
        serde_json::from_str(event).ok();
    let origin: String = match &fields {
        None => event.to_string(),
        Some(f) => match f.get("record") {
            None => String::new(),
            Some(r) => serde_json::from_str::<String>(r.get()).unwrap_or_else(|_| r.get().into()),
        },
    };
    assert!(
        origin.starts_with(kept.as_str()),
        "the record kept is not a prefix of the original: {kept:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Setting values
// ---------------------------------------------------------------------------------------------

/// Setting values: each line's first byte picks a setting of the registry, the rest of the
/// line is its value.
pub fn setting_values(data: &[u8]) {
    let vars: Vec<(String, String)> = data
        .split(|b| *b == b'\n')
        .filter_map(|line| {
            let (pick, value) = line.split_first()?;
            let known = &KNOWN[usize::from(*pick) % KNOWN.len()];
            Some((
                format!("{PREFIX}{}", known.name),
                String::from_utf8_lossy(value).into_owned(),
            ))
        })
        .collect();
    check_settings(&vars);
}

/// Reads a configuration from these variables (and a minimal Lambda environment) and panics
/// when a value is out of its range or an invalid integer goes unreported.
pub fn check_settings(vars: &[(String, String)]) {
    let mut env: Vec<(String, String)> = [
        ("AWS_REGION", "eu-west-1"),
        ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
        ("AWS_SECRET_ACCESS_KEY", "secret"),
        ("KINESIS_TELEMETRY_STREAM", "telemetry"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    env.extend(vars.iter().cloned());
    let get = |name: &str| {
        env.iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let names: Vec<String> = env.iter().map(|(k, _)| k.clone()).collect();
    let (c, problems) = Config::from_lookup(&get, &names);

    for known in KNOWN {
        let Documented::Int(int) = known.default else {
            continue;
        };
        let var = format!("{PREFIX}{}", int.name);
        let Some(value) = get(&var).map(|v| v.trim().to_string()) else {
            continue;
        };
        let fine = value
            .replace('_', "")
            .parse::<u64>()
            .is_ok_and(|n| (int.min..=int.max).contains(&n));
        if !value.is_empty() && !fine {
            assert!(
                problems.iter().any(|p| p.message.contains(&var)),
                "{var}={value:?} is out of range but no problem says so: {problems:?}"
            );
        }
    }

    check_ranges(&c);
}

/// Every numeric setting `c` holds is within its documented range, whatever was asked.
fn check_ranges(c: &Config) {
    let within = |int: &config::Int, n: u64| {
        assert!(
            (int.min..=int.max).contains(&n),
            "{} = {n} outside {}..={}",
            int.name,
            int.min,
            int.max
        );
    };
    let ms = |d: std::time::Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    within(
        &config::BUFFERING_MAX_ITEMS,
        c.subscription.buffering.max_items,
    );
    within(
        &config::BUFFERING_MAX_BYTES,
        c.subscription.buffering.max_bytes,
    );
    within(
        &config::BUFFERING_TIMEOUT_MS,
        c.subscription.buffering.timeout_ms,
    );
    within(&config::BUFFER_MAX_EVENTS, c.buffer.max_events as u64);
    within(&config::BUFFER_MAX_BYTES, c.buffer.max_bytes as u64);
    within(&config::FRESHNESS_MS, ms(c.pacing.freshness));
    within(&config::FLUSH_MAX_EVENTS, c.pacing.flush_events as u64);
    within(&config::FLUSH_MAX_BYTES, c.pacing.flush_bytes as u64);
    within(&config::MAX_ADDED_MS, ms(c.pacing.max_added));
    within(&config::CONNECT_TIMEOUT_MS, ms(c.http.connect_timeout));
    within(&config::REQUEST_TIMEOUT_MS, ms(c.http.request_timeout));
    within(&config::MAX_ATTEMPTS, u64::from(c.http.max_attempts));
    within(&config::BACKOFF_BASE_MS, ms(c.http.backoff_base));
    within(&config::BACKOFF_MAX_MS, ms(c.http.backoff_max));
    within(&config::SHUTDOWN_GRACE_MS, ms(c.shutdown_grace));
    within(&config::METRICS_INTERVAL_MS, ms(c.metrics.interval));
    within(&config::SPILL_MAX_BYTES, c.spill.max_bytes);
    assert!(c.spill.max_bytes == 0 || c.spill.max_bytes >= config::SPILL_MIN_BYTES);
    assert_ne!(c.port, config::RESERVED_PORT);
    let limits = c.records.limits;
    assert_eq!(limits, limits.clamped(), "record limits within the API's");
    assert!((1..=limits.max_record_bytes).contains(&c.records.target_bytes));
    assert!(
        (1..=255).contains(&c.metrics.namespace.len()),
        "namespace {:?}",
        c.metrics.namespace
    );
}

// ---------------------------------------------------------------------------------------------
// The listener's requests and the spill's segments
// ---------------------------------------------------------------------------------------------

/// The telemetry listener's HTTP/1.1 handling of one connection whose peer sends `pieces`
/// (each read returns at most one piece) and then closes: returns the POST bodies it would
/// hand on. Requests must go to `/`; default limits. It must never panic nor hang, whatever
/// the bytes.
pub fn listener_stream(pieces: &[&[u8]]) -> Vec<Vec<u8>> {
    crate::intake::listener::serve_bytes(
        pieces,
        "/",
        crate::intake::listener::ListenerLimits::default(),
    )
    .bodies
}

/// Bytes a peer sends on one telemetry connection: the first byte says where to split the
/// rest into two reads (requests split at any byte must parse the same), then
/// [`listener_stream`]. It must never panic nor hang.
pub fn listener_requests(data: &[u8]) {
    let Some((cut, rest)) = data.split_first() else {
        return;
    };
    let at = if rest.is_empty() {
        0
    } else {
        usize::from(*cut) % rest.len()
    };
    let (a, b) = rest.split_at(at);
    let _ = listener_stream(&[a, b]);
}

/// The spill file: `data` as a segment (recovery yields only frames really there, in order)
/// and as records (they come back whole), then as one spilled event's record.
pub fn spill(data: &[u8]) {
    crate::store::segments::fuzz_segment(data);
    crate::store::spill::fuzz_record(data);
}

/// A spill segment file as found in /tmp at start (see [`spill`]).
pub fn spill_segment(data: &[u8]) {
    spill(data);
}

#[cfg(test)]
mod tests {
    /// Every fuzz target's seeds (`fuzz/seeds/<target>/`) pass its oracle, and every target
    /// in `fuzz/fuzz_targets/` calls an entry point that exists here: the fuzz crate is its
    /// own workspace, so nothing else would notice a rename.
    /// A fuzz target's entry point.
    type Entry = (&'static str, fn(&[u8]));

    #[test]
    fn the_fuzz_seeds_pass_their_oracles() {
        let entry: &[Entry] = &[
            ("telemetry_post", super::telemetry_post),
            ("listener_requests", super::listener_requests),
            ("truncation", super::truncation),
            ("spill_segment", super::spill_segment),
            ("setting_values", super::setting_values),
        ];
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
        let mut targets: Vec<String> = std::fs::read_dir(root.join("fuzz_targets"))
            .expect("fuzz/fuzz_targets")
            .flatten()
            .filter_map(|e| {
                e.file_name()
                    .to_str()?
                    .strip_suffix(".rs")
                    .map(String::from)
            })
            .collect();
        targets.sort();
        let mut names: Vec<String> = entry.iter().map(|(n, _)| n.to_string()).collect();
        names.sort();
        assert_eq!(targets, names, "one entry point per fuzz target");
        for (name, run) in entry {
            let source = std::fs::read_to_string(root.join(format!("fuzz_targets/{name}.rs")))
                .expect("the target's source");
            assert!(
                source.contains(&format!("fuzzing::{name}(data)")),
                "fuzz_targets/{name}.rs calls fuzzing::{name}"
            );
            let seeds = std::fs::read_dir(root.join("seeds").join(name)).expect("its seeds");
            let mut n = 0;
            for seed in seeds.flatten() {
                run(&std::fs::read(seed.path()).expect("a seed"));
                n += 1;
            }
            assert!(n > 0, "{name} has seeds");
        }
    }
}
