//! KPL aggregated records: many user records (telemetry events) packed into one
//! Kinesis record, in the format of the Kinesis Producer Library
//! (`amazon-kinesis-producer/aggregation-format.md`), which the KCL and Firehose
//! de-aggregate and AWS's `aws-kinesis-agg` modules decode for Lambda consumers.
//!
//! ```text
//! MAGIC (F3 89 9A C2) ++ protobuf(AggregatedRecord) ++ MD5(protobuf bytes) (16 bytes)
//!
//! AggregatedRecord { repeated string partition_key_table = 1;
//!                    repeated string explicit_hash_key_table = 2;
//!                    repeated Record records = 3; }
//! Record { required uint64 partition_key_index = 1; optional uint64 explicit_hash_key_index = 2;
//!          required bytes data = 3; repeated Tag tags = 4; }
//! ```
//!
//! Invariants of what [`aggregate`] writes:
//!
//! * exactly ONE partition key in the table, the one the caller also sends as the
//!   Kinesis record's `PartitionKey`: the KCL silently drops sub-records whose key
//!   hashes outside the shard it reads, so every sub-record must hash where the
//!   outer record went. Every `Record` therefore has `partition_key_index = 0`,
//!   written explicitly even though it is protobuf's default value: it is proto2
//!   `required`, and a parser that checks required fields (protobuf-java, the
//!   KCL's) rejects the whole message without it. `data` is written even when
//!   empty, for the same reason. No explicit hash keys, no tags;
//! * fields in field-number order, as protobuf's own serializers write them, so the
//!   bytes are identical to those of AWS's aggregator (a known-answer test holds
//!   us to that);
//! * sizes are exact and known before building: `aggregate(key, data).len() ==
//!   aggregated_len(key.len(), lens) == base_len(key.len()) + Σ user_record_len(len)`. A record
//!   costs the same whatever its position (its key index is always the one byte
//!   `0`), so a packer adds [`user_record_len`] per event and stops before a limit,
//!   as `records::pack` does. Kinesis counts the result as `aggregated_len` plus the
//!   outer partition key's UTF-8 bytes.
//!
//! The key is not validated here (see `event::key::fixed_key`). A record
//! with zero user records is well formed (the key table only) and decodes to
//! nothing; callers have no reason to send one.
//!
//! A corrupt record is not an error for consumers: `aws-kinesis-agg` (1.2.3,
//! checked) silently hands data whose MD5 does not match, or whose protobuf does
//! not parse, back as ONE PLAIN record, the whole blob. The digest is what tells an
//! aggregated record from a plain one, so it is always over exactly the protobuf.

use md5::{Digest, Md5};

/// The aggregation format's 4-byte prefix (`aggregation-format.md`).
pub const MAGIC: [u8; 4] = [0xF3, 0x89, 0x9A, 0xC2];
/// The trailing MD5 digest of the protobuf bytes.
pub const DIGEST_BYTES: usize = 16;

/// Protobuf wire types (protobuf encoding guide): varint and length-delimited.
const WIRE_VARINT: u8 = 0;
const WIRE_LEN: u8 = 2;

/// A field key (`field_number << 3 | wire_type`); every field used here has a
/// number below 16, so its key is one byte.
const fn key(field: u8, wire_type: u8) -> u8 {
    (field << 3) | wire_type
}

/// `AggregatedRecord.partition_key_table = 1` (string).
const PARTITION_KEY_TABLE: u8 = key(1, WIRE_LEN);
/// `AggregatedRecord.records = 3` (embedded `Record`).
const RECORDS: u8 = key(3, WIRE_LEN);
/// `Record.partition_key_index = 1` (uint64).
const PARTITION_KEY_INDEX: u8 = key(1, WIRE_VARINT);
/// `Record.data = 3` (bytes).
const DATA: u8 = key(3, WIRE_LEN);
/// The index of the table's only key: a one-byte varint.
const ONLY_KEY_INDEX: u8 = 0;

/// Bytes of the aggregated record with no user records, for a partition key of
/// `key_bytes` UTF-8 bytes: magic, the partition key table's one entry, digest. Equal to
/// `aggregated_len(key_bytes, [])`.
pub fn base_len(key_bytes: usize) -> usize {
    MAGIC.len() + len_field_len(key_bytes) + DIGEST_BYTES
}

/// Bytes that adding one user record of `data_len` bytes adds to an aggregated
/// record: the `records` entry (key, length, `partition_key_index`, `data`).
pub fn user_record_len(data_len: usize) -> usize {
    len_field_len(record_body_len(data_len))
}

/// Exact size of the aggregated record (magic + protobuf + MD5) that [`aggregate`]
/// builds for a partition key of `key_bytes` bytes and user records of these data lengths.
pub fn aggregated_len(key_bytes: usize, data_lens: impl IntoIterator<Item = usize>) -> usize {
    data_lens
        .into_iter()
        .fold(base_len(key_bytes), |len, n| len + user_record_len(n))
}

/// Builds the aggregated record holding each of `data` as one user record, in
/// order, all under `partition_key`. The output is allocated once, at its exact
/// size: the iterator is walked twice (sizes, then bytes), hence `Clone`.
pub fn aggregate<'a, I>(partition_key: &str, data: I) -> Vec<u8>
where
    I: IntoIterator<Item = &'a [u8]>,
    I::IntoIter: Clone,
{
    let data = data.into_iter();
    let len = aggregated_len(partition_key.len(), data.clone().map(<[u8]>::len));
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(&MAGIC);
    put_len_field(&mut out, PARTITION_KEY_TABLE, partition_key.as_bytes());
    for blob in data {
        out.push(RECORDS);
        put_varint(&mut out, record_body_len(blob.len()));
        out.extend_from_slice(&[PARTITION_KEY_INDEX, ONLY_KEY_INDEX]);
        put_len_field(&mut out, DATA, blob);
    }
    let digest = Md5::digest(&out[MAGIC.len()..]);
    out.extend_from_slice(&digest);
    debug_assert_eq!(out.len(), len, "aggregated_len must be exact");
    out
}

/// Bytes of one `Record` message: `partition_key_index` (key + `0`) and `data`.
fn record_body_len(data_len: usize) -> usize {
    2 + len_field_len(data_len)
}

/// Bytes of a length-delimited field with `n` bytes of payload.
fn len_field_len(n: usize) -> usize {
    1 + varint_len(n) + n
}

/// Bytes of `v` as a protobuf varint: 7 bits per byte, at least one byte.
fn varint_len(v: usize) -> usize {
    let bits = usize::BITS - (v | 1).leading_zeros();
    bits.div_ceil(7) as usize
}

fn put_varint(out: &mut Vec<u8>, mut v: usize) {
    while v >= 0x80 {
        out.push((v as u8 & 0x7F) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_len_field(out: &mut Vec<u8>, key: u8, payload: &[u8]) {
    out.push(key);
    put_varint(out, payload.len());
    out.extend_from_slice(payload);
}

#[cfg(test)]
mod tests;
