//! Partition keys, their one home: the mode (`KINESIS_TELEMETRY_PARTITION_KEY`), the key each
//! event gets when it is admitted ([`PartitionKeyMode::key_of`]), fixed keys made valid for
//! Kinesis ([`fixed_key`]) and the random key drawn per record when it is built
//! ([`random_key`]).
//!
//! Invariants:
//! - A [`Key::Fixed`] is always a valid Kinesis partition key (1..=256 characters, at most
//!   [`MAX_KEY_BYTES`] bytes): every fixed key is made by [`fixed_key`], or is a tenant id,
//!   which is 1..=256 bytes already (`tenant`).
//! - A random key is always [`RANDOM_KEY_CHARS`] bytes long, so an event's size in a record
//!   is known before its key is drawn ([`Key::len`]).

use std::sync::Arc;

use crate::kinesis::limits::{MAX_PARTITION_KEY_CHARS, MIN_PARTITION_KEY_CHARS};
use crate::rng::Rng;

/// How each record's partition key is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartitionKeyMode {
    /// A random key per record: spreads evenly over all shards.
    Random,
    /// The invocation's request id: one invocation's records on one shard, in order.
    RequestId,
    /// The function's name: one function's records on one shard.
    Function,
    /// The execution environment's id: one environment's records on one shard, in order.
    Environment,
    /// The invocation's tenant (tenant isolation mode): one tenant's records on one shard,
    /// in order. Events of no tenant are keyed by the environment id.
    Tenant,
}

impl PartitionKeyMode {
    /// The name `KINESIS_TELEMETRY_PARTITION_KEY` uses.
    pub const fn name(&self) -> &'static str {
        match self {
            PartitionKeyMode::Random => "random",
            PartitionKeyMode::RequestId => "request_id",
            PartitionKeyMode::Function => "function",
            PartitionKeyMode::Environment => "environment",
            PartitionKeyMode::Tenant => "tenant",
        }
    }

    /// The key known at start that every event gets in this mode: the function's name in
    /// `function` mode, `None` in the others.
    pub fn fixed_at_start(self, function_name: &str) -> Option<Arc<str>> {
        match self {
            PartitionKeyMode::Function => fixed_key(function_name),
            _ => None,
        }
    }

    /// The key of one event, chosen when it is admitted (pure).
    pub fn key_of(self, sources: &KeySources<'_>) -> Key {
        let key = match self {
            PartitionKeyMode::Random => None,
            PartitionKeyMode::RequestId => sources
                .request_id
                .and_then(fixed_key)
                .or_else(|| sources.inferred.map(Arc::from)),
            PartitionKeyMode::Function => sources.function.cloned(),
            PartitionKeyMode::Environment => sources.environment.cloned(),
            // A tenant id is 1..=256 bytes (`tenant`), so already a valid key.
            PartitionKeyMode::Tenant => sources.tenant.or(sources.environment).cloned(),
        };
        key.map_or(Key::Random, Key::Fixed)
    }
}

/// What an event's key can be made of; which one counts depends on the mode.
#[derive(Debug, Clone, Copy, Default)]
pub struct KeySources<'a> {
    /// The record's own `requestId`.
    pub request_id: Option<&'a str>,
    /// The running invocation's request id, for an event that carries none (already a valid
    /// key: it went through [`fixed_key`] when the invocation started).
    pub inferred: Option<&'a str>,
    /// The function's name as a key ([`PartitionKeyMode::fixed_at_start`]).
    pub function: Option<&'a Arc<str>>,
    /// The execution environment's id as a key (new after a SnapStart restore).
    pub environment: Option<&'a Arc<str>>,
    /// The invocation's tenant.
    pub tenant: Option<&'a Arc<str>>,
}

/// How an event's partition key is chosen (decided once, when it is admitted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Key {
    /// A random key, drawn per record when it is sent.
    Random,
    /// This key (a request id, the function name or the environment id), valid for Kinesis.
    Fixed(Arc<str>),
}

impl Key {
    /// Bytes the key takes in a record (a random key's length is fixed).
    pub fn len(&self) -> usize {
        match self {
            Key::Random => RANDOM_KEY_CHARS,
            Key::Fixed(k) => k.len(),
        }
    }
}

/// Length of a random partition key (hex digits of 64 random bits).
pub const RANDOM_KEY_CHARS: usize = 16;
/// Longest fixed partition key kept, in bytes (longer ones are cut on a character boundary,
/// which also keeps them within the API's 256 characters).
pub const MAX_KEY_BYTES: usize = MAX_PARTITION_KEY_CHARS;

/// A fresh random key: spreads records evenly over the stream's shards.
pub fn random_key(rng: &mut Rng) -> String {
    format!("{:016x}", rng.next_u64())
}

/// `candidate` as a partition key: cut to [`MAX_KEY_BYTES`], and `None` when it breaks the
/// PartitionKey rule (1..=256 Unicode characters) even so.
pub fn fixed_key(candidate: &str) -> Option<Arc<str>> {
    let mut end = candidate.len().min(MAX_KEY_BYTES);
    while !candidate.is_char_boundary(end) {
        end -= 1;
    }
    let key = &candidate[..end];
    let chars = key.chars().count();
    (MIN_PARTITION_KEY_CHARS..=MAX_PARTITION_KEY_CHARS)
        .contains(&chars)
        .then(|| Arc::from(key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_keys_are_cut_to_the_limit_and_validated() {
        assert_eq!(fixed_key("abc").as_deref(), Some("abc"));
        assert!(fixed_key("").is_none());
        let long = "é".repeat(300); // 600 bytes
        let k = fixed_key(&long).unwrap();
        assert!(k.len() <= MAX_KEY_BYTES && k.chars().all(|c| c == 'é'));
        assert_eq!(k.chars().count(), 128);
        let ascii = fixed_key(&"a".repeat(300)).unwrap();
        assert_eq!(ascii.len(), 256);
    }

    #[test]
    fn random_keys_are_16_hex_digits() {
        let mut rng = Rng::seeded(3);
        let a = random_key(&mut rng);
        let b = random_key(&mut rng);
        assert_eq!(a.len(), RANDOM_KEY_CHARS);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }

    #[test]
    fn each_mode_takes_its_own_source_and_falls_back_as_documented() {
        let (function, environment, tenant): (Arc<str>, Arc<str>, Arc<str>) =
            ("orders".into(), "e0".into(), "t-1".into());
        let all = KeySources {
            request_id: Some("req-1"),
            inferred: Some("req-0"),
            function: Some(&function),
            environment: Some(&environment),
            tenant: Some(&tenant),
        };
        let fixed = |k: &str| Key::Fixed(Arc::from(k));
        let no_tenant = KeySources {
            tenant: None,
            ..all
        };
        let inferred_only = KeySources {
            request_id: None,
            ..all
        };
        let cases = [
            (PartitionKeyMode::Random, all, Key::Random),
            (PartitionKeyMode::RequestId, all, fixed("req-1")),
            (PartitionKeyMode::RequestId, inferred_only, fixed("req-0")),
            (
                PartitionKeyMode::RequestId,
                KeySources::default(),
                Key::Random,
            ),
            (PartitionKeyMode::Function, all, fixed("orders")),
            (PartitionKeyMode::Environment, all, fixed("e0")),
            (PartitionKeyMode::Tenant, all, fixed("t-1")),
            (PartitionKeyMode::Tenant, no_tenant, fixed("e0")),
        ];
        for (mode, sources, want) in cases {
            assert_eq!(mode.key_of(&sources), want, "{mode:?} from {sources:?}");
        }
    }

    #[test]
    fn only_function_mode_has_a_key_fixed_at_start() {
        for mode in [
            PartitionKeyMode::Random,
            PartitionKeyMode::RequestId,
            PartitionKeyMode::Function,
            PartitionKeyMode::Environment,
            PartitionKeyMode::Tenant,
        ] {
            let key = mode.fixed_at_start("orders");
            assert_eq!(
                key.as_deref(),
                (mode == PartitionKeyMode::Function).then_some("orders")
            );
        }
        assert_eq!(PartitionKeyMode::Function.fixed_at_start(""), None);
    }
}
