//! KPL aggregated records as consumers read them, for the black-box tests: a Rust
//! decoder for the fake Kinesis ([`deaggregate`], [`deaggregate_keyed`]) and AWS's
//! own Python module as a third-party check ([`deaggregate_with_python`]).
//!
//! The Rust decoder is written from the format (`MAGIC ++ protobuf(AggregatedRecord)
//! ++ MD5(protobuf)`), not from `src/kinesis/kpl.rs`, and reads all of it, not only what the
//! extension writes: several partition keys, explicit hash keys, tags, unknown fields
//! (skipped by wire type, as protobuf parsers do). It is strict where consumers are
//! lenient, because a test must see what they would hide:
//!
//! * data without the magic is not aggregated: `Err` ("no KPL magic"). Use
//!   [`has_magic`] to tell a plain record from a broken aggregated one;
//! * a bad MD5 is `Err` (`aws-kinesis-agg` silently passes such data on as one plain
//!   record);
//! * a `Record` without its `required` `partition_key_index` or `data`, a key index
//!   outside the table, a key that is not UTF-8, a truncated or malformed field: `Err`.
//!
//! [`deaggregate_with_python`] runs `kpl_deaggregate.py` (at this crate's root) with
//! the venv's Python (see [`crate::moto::python`]): records in the shape Kinesis stores
//! them go through `aws_kinesis_agg.deaggregator` as a Lambda consumer would call it,
//! and the script fails loudly where the module would silently pass a corrupt
//! aggregated record through as a plain one. Plain records come back as they went in.

use std::process::Command;
use std::time::Duration;

use base64::Engine as _;
use md5::{Digest, Md5};
use serde_json::{json, Value};

use crate::pipes;

/// The aggregation format's 4-byte prefix.
pub const MAGIC: [u8; 4] = [0xF3, 0x89, 0x9A, 0xC2];
/// The trailing MD5 of the protobuf bytes.
pub const DIGEST_BYTES: usize = 16;
/// Bound on one run of the Python de-aggregator (about 0.3 s normally).
pub const PYTHON_TIMEOUT: Duration = Duration::from_secs(30);

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/kpl_deaggregate.py");

/// Whether `data` starts with the KPL magic: the first test every de-aggregator
/// makes. `true` with an `Err` from [`deaggregate`] means a broken aggregated record.
pub fn has_magic(data: &[u8]) -> bool {
    data.starts_with(&MAGIC)
}

/// The user records' data of one aggregated record, in order. `Err` for anything
/// that is not a sound aggregated record, plain data included (see the module docs).
pub fn deaggregate(data: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    Ok(deaggregate_keyed(data)?
        .into_iter()
        .map(|(_, d)| d)
        .collect())
}

/// Like [`deaggregate`], with each user record's partition key (resolved from the
/// key table), to compare with the outer record's key and with
/// [`deaggregate_with_python`].
pub fn deaggregate_keyed(data: &[u8]) -> Result<Vec<(String, Vec<u8>)>, String> {
    let body = data.strip_prefix(&MAGIC).ok_or_else(|| {
        format!(
            "not a KPL aggregated record: no KPL magic (starts {:02x?})",
            &data[..data.len().min(4)]
        )
    })?;
    if body.len() <= DIGEST_BYTES {
        return Err(format!(
            "KPL magic but only {} bytes: no room for protobuf and digest",
            data.len()
        ));
    }
    let (proto, digest) = body.split_at(body.len() - DIGEST_BYTES);
    let expected = Md5::digest(proto);
    if digest != expected.as_slice() {
        return Err(format!(
            "MD5 mismatch: trailing digest {}, MD5 of the protobuf bytes {}",
            hex::encode(digest),
            hex::encode(expected)
        ));
    }

    let mut keys = Vec::new();
    let mut records = Vec::new();
    let mut r = Reader::new(proto);
    while let Some((field, wire)) = r.key()? {
        match (field, wire) {
            (1, WIRE_LEN) => keys.push(
                String::from_utf8(r.len_delimited()?.to_vec())
                    .map_err(|_| "a partition key is not UTF-8".to_owned())?,
            ),
            (3, WIRE_LEN) => records.push(parse_record(r.len_delimited()?)?),
            // explicit_hash_key_table (2) and fields unknown to this reader.
            _ => r.skip(wire)?,
        }
    }
    records
        .into_iter()
        .enumerate()
        .map(|(i, (index, data))| {
            let key = usize::try_from(index)
                .ok()
                .and_then(|k| keys.get(k))
                .ok_or_else(|| {
                    format!(
                        "record {i}: partition_key_index {index} outside the key table ({} keys)",
                        keys.len()
                    )
                })?;
            Ok((key.clone(), data))
        })
        .collect()
}

/// One `Record`: its `partition_key_index` and `data`, both `required`.
fn parse_record(bytes: &[u8]) -> Result<(u64, Vec<u8>), String> {
    let (mut index, mut data) = (None, None);
    let mut r = Reader::new(bytes);
    while let Some((field, wire)) = r.key()? {
        match (field, wire) {
            (1, WIRE_VARINT) => index = Some(r.varint()?),
            (3, WIRE_LEN) => data = Some(r.len_delimited()?.to_vec()),
            // explicit_hash_key_index (2), tags (4) and unknown fields.
            _ => r.skip(wire)?,
        }
    }
    match (index, data) {
        (Some(i), Some(d)) => Ok((i, d)),
        (None, _) => Err("a Record lacks its required partition_key_index".into()),
        (_, None) => Err("a Record lacks its required data".into()),
    }
}

const WIRE_VARINT: u8 = 0;
const WIRE_I64: u8 = 1;
const WIRE_LEN: u8 = 2;
const WIRE_I32: u8 = 5;

/// A cursor over protobuf wire format.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    /// The next field's (number, wire type), `None` at the end.
    fn key(&mut self) -> Result<Option<(u64, u8)>, String> {
        if self.pos == self.buf.len() {
            return Ok(None);
        }
        let key = self.varint()?;
        if key >> 3 == 0 {
            return Err("field number 0".into());
        }
        Ok(Some((key >> 3, (key & 7) as u8)))
    }

    fn varint(&mut self) -> Result<u64, String> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *self.buf.get(self.pos).ok_or("truncated varint")?;
            self.pos += 1;
            v |= u64::from(b & 0x7F) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err("varint longer than 10 bytes".into())
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| format!("field of {n} bytes runs past the end"))?;
        let out = &self.buf[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    fn len_delimited(&mut self) -> Result<&'a [u8], String> {
        let n = self.varint()?;
        self.take(usize::try_from(n).map_err(|_| "field length overflows")?)
    }

    fn skip(&mut self, wire: u8) -> Result<(), String> {
        match wire {
            WIRE_VARINT => self.varint().map(drop),
            WIRE_I64 => self.take(8).map(drop),
            WIRE_LEN => self.len_delimited().map(drop),
            WIRE_I32 => self.take(4).map(drop),
            w => Err(format!("unsupported wire type {w}")),
        }
    }
}

/// Runs `records` (partition key, data as Kinesis stores it) through AWS's
/// `aws_kinesis_agg.deaggregator` via `kpl_deaggregate.py`, and returns every user
/// record with its partition key, in order. Panics when the venv is missing (saying
/// to run `bash .ci/python-tools.sh`, as [`crate::moto::python`] does); `Err` when the
/// script rejects a record (bad MD5, bad protobuf, missing required field, sub-records
/// lost), or when it cannot run.
pub fn deaggregate_with_python(
    records: &[(String, Vec<u8>)],
) -> Result<Vec<(String, Vec<u8>)>, String> {
    let python = crate::moto::python();
    let b64 = &base64::engine::general_purpose::STANDARD;
    let input: Vec<Value> = records
        .iter()
        .map(|(key, data)| json!({"PartitionKey": key, "Data": b64.encode(data)}))
        .collect();
    let input = serde_json::to_vec(&input).map_err(|e| e.to_string())?;

    let mut cmd = Command::new(&python);
    cmd.arg(SCRIPT)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("PYTHONUTF8", "1")
        .env("PYTHONDONTWRITEBYTECODE", "1");
    let done = pipes::run_to_end(cmd, Some(input), PYTHON_TIMEOUT)
        .map_err(|e| format!("cannot run {} {SCRIPT}: {e}", python.display()))?;
    let stderr = String::from_utf8_lossy(&done.stderr);
    if !done.in_time {
        return Err(format!(
            "kpl_deaggregate.py killed after {PYTHON_TIMEOUT:?}\n{stderr}"
        ));
    }
    if !done.status.success() {
        return Err(format!(
            "kpl_deaggregate.py failed ({}): {}",
            done.status,
            stderr.trim()
        ));
    }
    done.stdin_written
        .map_err(|e| format!("writing to kpl_deaggregate.py: {e}"))?;
    let stdout = done.stdout;

    let out: Vec<Value> = serde_json::from_slice(&stdout).map_err(|e| {
        format!(
            "kpl_deaggregate.py printed no JSON array ({e}): {}",
            String::from_utf8_lossy(&stdout)
        )
    })?;
    out.iter()
        .map(|r| {
            let key = r["PartitionKey"].as_str();
            let data = r["Data"].as_str().and_then(|d| b64.decode(d).ok());
            match (key, data) {
                (Some(k), Some(d)) => Ok((k.to_owned(), d)),
                _ => Err(format!("kpl_deaggregate.py printed a bad record: {r}")),
            }
        })
        .collect()
}

/// One known answer: (partition key, user records, the aggregated record built from them).
pub type KnownAnswer = (&'static str, Vec<Vec<u8>>, Vec<u8>);

/// Known answers from AWS's own aggregator: for each, the partition key, the user records,
/// and the aggregated record AWS built from them. The one copy: `src/kinesis/kpl.rs`'s tests
/// check that the extension's encoder builds exactly these bytes, this module's decoder and
/// AWS's de-aggregator (`tests/kpl.rs`) that they read back.
///
/// Made once by hand with `aws-kinesis-agg` 1.2.3 from PyPI (protobuf 7.36.2, six 1.17.0)
/// in a scratch venv:
///
/// ```text
/// python3 -m venv /tmp/kpl-venv && /tmp/kpl-venv/bin/pip install aws-kinesis-agg six
/// from aws_kinesis_agg.aggregator import RecordAggregator
/// a = RecordAggregator()
/// for d in DATA: assert a.add_user_record(KEY, d) is None   # no explicit hash key
/// pk, ehk, agg = a.clear_and_get().get_contents()           # ehk is None
/// print(agg.hex())
/// ```
///
/// The Python aggregator serializes with protobuf's own encoder (fields in number order,
/// `partition_key_index = 0` present, empty `data` present), so the bytes match exactly;
/// its deaggregator also decodes them back to the inputs. Its own size estimate
/// (`get_size_bytes`) over-counts the key table once per record (211 for the 175 bytes of
/// the first vector): do not copy it.
pub fn aws_vectors() -> Vec<KnownAnswer> {
    let cases: [(&str, Vec<Vec<u8>>, &str); 2] = [
        (
            // JSON event, non-ASCII text (2-, 3- and 4-byte UTF-8), binary bytes including
            // the magic itself.
            "a1b2c3d4e5f60718",
            vec![
                br#"{"time":"2024-01-01T00:00:00.000Z","type":"platform.start","record":{"requestId":"r-1"}}"#.to_vec(),
                "h\u{e9}llo w\u{f6}rld \u{2713} \u{1f980}".as_bytes().to_vec(),
                vec![0x00, 0xFF, 0xF3, 0x89, 0x9A, 0xC2, 0x80, 0x7F, 0x0A],
            ],
            concat!(
                "f3899ac2",
                "0a10613162326333643465356636303731381a5c08001a587b2274696d65223a2232",
                "3032342d30312d30315430303a30303a30302e3030305a222c2274797065223a2270",
                "6c6174666f726d2e7374617274222c227265636f7264223a7b227265717565737449",
                "64223a22722d31227d7d1a1a08001a1668c3a96c6c6f2077c3b6726c6420e29c9320",
                "f09fa6801a0d08001a0900fff3899ac2807f0a",
                "81fe064d2c4a33a239284e81213de5fc",
            ),
        ),
        (
            // Non-ASCII key (5 chars, 7 bytes), an empty record, and a record whose data
            // length (200) and Record length (205) take 2-byte varints.
            "cl\u{e9}-\u{fc}",
            vec![Vec::new(), (0..200).collect()],
            concat!(
                "f3899ac2",
                "0a07636cc3a92dc3bc1a0408001a001acd0108001ac801",
                "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
                "202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f",
                "404142434445464748494a4b4c4d4e4f505152535455565758595a5b5c5d5e5f",
                "606162636465666768696a6b6c6d6e6f707172737475767778797a7b7c7d7e7f",
                "808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f",
                "a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebf",
                "c0c1c2c3c4c5c6c7",
                "61069567378dbfd37c81017cb8cf903b",
            ),
        ),
    ];
    cases
        .into_iter()
        .map(|(key, records, hex)| (key, records, hex::decode(hex).expect("hex")))
        .collect()
}

/// The first of [`aws_vectors`] (one key, three records of every kind).
pub fn aws_vector() -> KnownAnswer {
    aws_vectors().swap_remove(0)
}

/// Wraps protobuf bytes as an aggregated record (magic, bytes, their MD5): for
/// hand-built vectors in tests.
pub fn wrap(proto: &[u8]) -> Vec<u8> {
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(proto);
    out.extend_from_slice(&Md5::digest(proto));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_the_aws_vectors() {
        let vectors = aws_vectors();
        assert_eq!(vectors.len(), 2);
        for (key, records, aggregated) in vectors {
            let expected: Vec<(String, Vec<u8>)> = records
                .iter()
                .map(|d| (key.to_owned(), d.clone()))
                .collect();
            assert_eq!(deaggregate_keyed(&aggregated).unwrap(), expected, "{key}");
            assert_eq!(deaggregate(&aggregated).unwrap(), records, "{key}");
        }
    }

    #[test]
    fn reads_what_the_format_allows_beyond_what_the_extension_writes() {
        // Two keys, an explicit hash key table and index, a tag, an unknown varint
        // field, fields out of order (records before the key table).
        let proto = [
            &[0x1A, 0x0F][..],                           // Record, 15 bytes:
            &[0x08, 0x01],                               //   partition_key_index 1
            &[0x10, 0x00],                               //   explicit_hash_key_index 0
            &[0x1A, 0x02, b'h', b'i'],                   // data "hi"
            &[0x22, 0x05, 0x0A, 0x01, b't', 0x12, 0x00], // tags { key "t" value "" }
            &[0x0A, 0x02, b'k', b'0'],                   // partition_key_table "k0"
            &[0x0A, 0x02, b'k', b'1'],                   // partition_key_table "k1"
            &[0x12, 0x01, b'9'],                         // explicit_hash_key_table "9"
            &[0x78, 0x05],                               // field 15, varint: unknown
            &[0x1A, 0x04, 0x08, 0x00, 0x1A, 0x00],       // Record: key 0, empty data
        ]
        .concat();
        assert_eq!(
            deaggregate_keyed(&wrap(&proto)).unwrap(),
            [
                ("k1".to_owned(), b"hi".to_vec()),
                ("k0".to_owned(), Vec::new())
            ]
        );
    }

    #[test]
    fn rejects_what_consumers_would_hide_or_choke_on() {
        let (_, _, good) = aws_vector();
        let mut bad_digest = good.clone();
        *bad_digest.last_mut().unwrap() ^= 1;
        let mut bad_body = good.clone();
        bad_body[30] ^= 1;
        let cases: [(&str, Vec<u8>, &str); 9] = [
            ("plain data", br#"{"plain":true}"#.to_vec(), "no KPL magic"),
            ("empty", Vec::new(), "no KPL magic"),
            (
                "magic and 16 bytes",
                [&MAGIC[..], &[0; 16]].concat(),
                "no room",
            ),
            ("digest flipped", bad_digest, "MD5 mismatch"),
            ("body flipped", bad_body, "MD5 mismatch"),
            ("truncated", good[..good.len() - 1].to_vec(), "MD5 mismatch"),
            (
                "no data",
                wrap(&[0x0A, 0x01, b'k', 0x1A, 0x02, 0x08, 0x00]),
                "required data",
            ),
            (
                "no key index",
                wrap(&[0x0A, 0x01, b'k', 0x1A, 0x02, 0x1A, 0x00]),
                "required partition_key_index",
            ),
            (
                "key index outside the table",
                wrap(&[0x0A, 0x01, b'k', 0x1A, 0x04, 0x08, 0x01, 0x1A, 0x00]),
                "outside the key table",
            ),
        ];
        for (name, data, needle) in cases {
            let err = deaggregate(&data).expect_err(name);
            assert!(err.contains(needle), "{name}: {err}");
        }
        assert!(!has_magic(br#"{"plain":true}"#));
        assert!(has_magic(&good));
    }

    #[test]
    fn rejects_malformed_protobuf() {
        for (name, proto) in [
            ("length past the end", &[0x0A, 0x05, b'k'][..]),
            ("truncated varint", &[0x1A, 0x80]),
            ("group wire type", &[0x0B]),
            ("field number 0", &[0x02, 0x00]),
            ("key not UTF-8", &[0x0A, 0x01, 0xFF]),
        ] {
            assert!(deaggregate(&wrap(proto)).is_err(), "{name}");
        }
    }
}
