use super::*;

const KEY: &str = "a1b2c3d4e5f60718";
const MIB: usize = 1024 * 1024;

fn agg(key: &str, blobs: &[Vec<u8>]) -> Vec<u8> {
    aggregate(key, blobs.iter().map(Vec::as_slice))
}

fn len_of(key: &str, blobs: &[Vec<u8>]) -> usize {
    aggregated_len(key.len(), blobs.iter().map(Vec::len))
}

/// A test pattern that is not all one byte, so misplaced bytes show.
fn blob(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 + n) as u8).collect()
}

/// A minimal protobuf reader written from the format, independent of the
/// encoder's helpers: checks magic and digest, requires both `required` fields
/// of every `Record`, rejects anything the encoder must never write.
fn decode(bytes: &[u8]) -> Result<(Vec<String>, Vec<Vec<u8>>), String> {
    fn varint(buf: &[u8], pos: &mut usize) -> Result<u64, String> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *buf.get(*pos).ok_or("truncated varint")?;
            *pos += 1;
            v |= u64::from(b & 0x7F) << shift;
            if b < 0x80 {
                return Ok(v);
            }
        }
        Err("varint longer than 10 bytes".into())
    }
    fn len_payload<'b>(buf: &'b [u8], pos: &mut usize) -> Result<&'b [u8], String> {
        let n = varint(buf, pos)? as usize;
        let payload = buf.get(*pos..*pos + n).ok_or("truncated field")?;
        *pos += n;
        Ok(payload)
    }

    let body = bytes
        .strip_prefix(&[0xF3, 0x89, 0x9A, 0xC2])
        .ok_or("no magic")?;
    if body.len() < 16 {
        return Err("shorter than the digest".into());
    }
    let (proto, digest) = body.split_at(body.len() - 16);
    if Md5::digest(proto).as_slice() != digest {
        return Err("MD5 mismatch".into());
    }
    let (mut keys, mut records, mut pos) = (Vec::new(), Vec::new(), 0);
    while pos < proto.len() {
        match varint(proto, &mut pos)? {
            0x0A => keys.push(
                String::from_utf8(len_payload(proto, &mut pos)?.to_vec())
                    .map_err(|e| e.to_string())?,
            ),
            0x1A => {
                let rec = len_payload(proto, &mut pos)?;
                let (mut i, mut index, mut data) = (0, None, None);
                while i < rec.len() {
                    match varint(rec, &mut i)? {
                        0x08 => index = Some(varint(rec, &mut i)?),
                        0x1A => data = Some(len_payload(rec, &mut i)?.to_vec()),
                        k => return Err(format!("unexpected Record field key {k:#x}")),
                    }
                }
                if index.ok_or("Record without partition_key_index")? != 0 {
                    return Err("partition_key_index is not 0".into());
                }
                records.push(data.ok_or("Record without data")?);
            }
            k => return Err(format!("unexpected AggregatedRecord field key {k:#x}")),
        }
    }
    Ok((keys, records))
}

/// Known answers from AWS's own aggregator, `aws-kinesis-agg` 1.2.3: the one copy is
/// `kte_test_support::kpl::aws_vectors` (how they were made is written there), which the
/// support crate's decoder and AWS's de-aggregator read back too.
#[test]
fn bytes_match_aws_kinesis_agg_known_answers() {
    let vectors = kte_test_support::kpl::aws_vectors();
    assert_eq!(vectors.len(), 2, "both known answers");
    for (key, blobs, expected) in vectors {
        assert_eq!(
            hex::encode(agg(key, &blobs)),
            hex::encode(&expected),
            "key {key:?}"
        );
        assert_eq!(len_of(key, &blobs), expected.len(), "key {key:?}");
    }
}

#[test]
fn trailing_digest_is_md5_of_exactly_the_protobuf_bytes() {
    // RFC 1321 appendix A.5: the hash in use is MD5.
    for (input, hex) in [
        ("", "d41d8cd98f00b204e9800998ecf8427e"),
        ("abc", "900150983cd24fb0d6963f7d28e17f72"),
        (
            "12345678901234567890123456789012345678901234567890123456789012345678901234567890",
            "57edf4a22be3c955ac49da2e2107b67a",
        ),
    ] {
        assert_eq!(hex::encode(Md5::digest(input.as_bytes())), hex);
    }
    for blobs in [vec![], vec![blob(3)], vec![blob(100), blob(0), blob(300)]] {
        let out = agg(KEY, &blobs);
        let (head, digest) = out.split_at(out.len() - DIGEST_BYTES);
        assert_eq!(&head[..4], &MAGIC);
        assert_eq!(digest, Md5::digest(&head[4..]).as_slice(), "{blobs:?}");
    }
}

#[test]
fn output_length_is_aggregated_len_around_varint_boundaries() {
    // Data, Record and key lengths each cross the 1->2 byte varint boundary at
    // 128 and the 2->3 byte one at 16384; a Record is 3 + varint + data bytes,
    // so its own length crosses them at data 123/124 and 16378/16379.
    let mut lens: Vec<usize> = (0..=260).collect();
    lens.extend(16_370..=16_390);
    lens.extend([MIB - 1, MIB, MIB + 1]);
    for &n in &lens {
        let blobs = [blob(n)];
        assert_eq!(agg(KEY, &blobs).len(), len_of(KEY, &blobs), "data {n}");
    }
    let tables: [&[usize]; 5] = [
        &[],
        &[0],
        &[127, 128, 16_383, 16_384],
        &[1; 500],
        &[MIB, 0, 1, 127],
    ];
    for key_bytes in [1, 127, 128, 256, 1024] {
        let key = "k".repeat(key_bytes);
        for sizes in tables {
            let blobs: Vec<Vec<u8>> = sizes.iter().map(|&n| blob(n)).collect();
            let out = agg(&key, &blobs);
            assert_eq!(out.len(), len_of(&key, &blobs), "key {key_bytes} {sizes:?}");
        }
    }
}

#[test]
fn sizes_are_exact_by_hand_at_the_boundaries() {
    // user_record_len(n) = 1 (key) + varint(body) + body, body = 2 + 1 + varint(n) + n.
    let cases = [
        (0, 1 + 1 + 4), // 1a 04 08 00 1a 00
        (1, 1 + 1 + 5),
        (123, 1 + 1 + 127), // body 127: one-byte length
        (124, 1 + 2 + 128), // body 128: two-byte length
        (127, 1 + 2 + 131),
        (128, 1 + 2 + (3 + 2 + 128)), // data 128: two-byte length
        (16_378, 1 + 2 + 16_383),     // body 16383
        (16_379, 1 + 3 + 16_384),     // body 16384: three-byte length
        (16_383, 1 + 3 + 16_388),
        (16_384, 1 + 3 + (3 + 3 + 16_384)), // data 16384: three-byte length
        (MIB, 1 + 3 + (3 + 3 + MIB)),
    ];
    for (n, expected) in cases {
        assert_eq!(user_record_len(n), expected, "data {n}");
    }
    // magic + 0a + varint(key) + key + digest
    for (key, expected) in [
        ("k", 4 + 1 + 1 + 1 + 16),
        (&*"k".repeat(127), 4 + 1 + 1 + 127 + 16),
        (&*"k".repeat(128), 4 + 1 + 2 + 128 + 16),
        ("\u{e9}", 4 + 1 + 1 + 2 + 16), // UTF-8 bytes, not characters
    ] {
        assert_eq!(base_len(key.len()), expected, "key {key:?}");
        assert_eq!(aggregated_len(key.len(), []), expected);
    }
}

#[test]
fn each_record_adds_user_record_len_wherever_it_goes() {
    let sizes = [5, 0, 200, 16_384, 1, 127];
    let mut blobs = Vec::new();
    let mut expected = base_len(KEY.len());
    assert_eq!(agg(KEY, &blobs).len(), expected);
    for n in sizes {
        blobs.push(blob(n));
        expected += user_record_len(n);
        assert_eq!(agg(KEY, &blobs).len(), expected, "after adding {n}");
    }
    assert_eq!(len_of(KEY, &blobs), expected);
}

#[test]
fn decoding_recovers_the_key_and_every_blob_byte_for_byte() {
    let cases: [(&str, Vec<Vec<u8>>); 6] = [
        (KEY, vec![]),
        (KEY, vec![b"one".to_vec()]),
        (KEY, vec![Vec::new(), Vec::new()]),
        (
            "cl\u{e9}-\u{1f980}",
            vec![vec![0xF3, 0x89, 0x9A, 0xC2], vec![0; 16]],
        ),
        (KEY, vec![blob(127), blob(128), blob(16_383), blob(16_384)]),
        (KEY, vec![blob(MIB), blob(1), (0..=255).collect()]),
    ];
    for (key, blobs) in cases {
        let (keys, records) = decode(&agg(key, &blobs)).unwrap();
        assert_eq!(keys, [key], "one key in the table");
        assert!(records == blobs, "{key:?}: {} blobs", blobs.len());
    }
}

#[test]
fn the_decoder_rejects_corruption() {
    // The decoder above is what the other tests trust: show it can fail.
    let out = agg(KEY, &[b"payload".to_vec()]);
    assert!(decode(&out).is_ok());
    for i in [0, 4, 5, 20, out.len() - 1] {
        let mut bad = out.clone();
        bad[i] ^= 0x01;
        assert!(decode(&bad).is_err(), "flipped byte {i}");
    }
    assert!(decode(&out[..out.len() - 1]).is_err());
}

#[test]
fn zero_records_is_the_key_table_alone() {
    let out = agg("k", &[]);
    assert_eq!(&out[..7], &[0xF3, 0x89, 0x9A, 0xC2, 0x0A, 0x01, b'k']);
    assert_eq!(out.len(), 7 + DIGEST_BYTES);
    assert_eq!(decode(&out).unwrap(), (vec!["k".to_owned()], vec![]));
}
