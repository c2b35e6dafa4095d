//! Standard base64 (RFC 4648 §4, alphabet `A-Z a-z 0-9 + /`, `=` padding).
//!
//! Kinesis' JSON protocol carries each record's `Data` blob as standard base64 with
//! padding. The body of a full PutRecords request holds up to 10 MiB of data, so the
//! encoder writes whole 4-byte groups into pre-sized output without per-byte pushes.
//!
//! Invariant: output length is always `encoded_len(input.len())`.

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Characters of base64 text (with padding) for `n` input bytes: `4 * ceil(n / 3)`.
pub fn encoded_len(n: usize) -> usize {
    n.div_ceil(3) * 4
}

/// Appends the base64 encoding of `input` to `out`.
pub fn encode_into_vec(input: &[u8], out: &mut Vec<u8>) {
    let start = out.len();
    out.resize(start + encoded_len(input.len()), 0);
    let dst = &mut out[start..];

    let full = input.len() / 3;
    let (head, tail) = input.split_at(full * 3);
    let (dst_head, dst_tail) = dst.split_at_mut(full * 4);
    for (src, d) in head.chunks_exact(3).zip(dst_head.chunks_exact_mut(4)) {
        let n = (u32::from(src[0]) << 16) | (u32::from(src[1]) << 8) | u32::from(src[2]);
        d[0] = ALPHABET[(n >> 18) as usize & 63];
        d[1] = ALPHABET[(n >> 12) as usize & 63];
        d[2] = ALPHABET[(n >> 6) as usize & 63];
        d[3] = ALPHABET[n as usize & 63];
    }
    match *tail {
        [a] => {
            let n = u32::from(a) << 16;
            dst_tail[0] = ALPHABET[(n >> 18) as usize & 63];
            dst_tail[1] = ALPHABET[(n >> 12) as usize & 63];
            dst_tail[2] = b'=';
            dst_tail[3] = b'=';
        }
        [a, b] => {
            let n = (u32::from(a) << 16) | (u32::from(b) << 8);
            dst_tail[0] = ALPHABET[(n >> 18) as usize & 63];
            dst_tail[1] = ALPHABET[(n >> 12) as usize & 63];
            dst_tail[2] = ALPHABET[(n >> 6) as usize & 63];
            dst_tail[3] = b'=';
        }
        _ => {}
    }
}

/// Appends the base64 encoding of `input` to `out`.
///
/// Encodes through a small stack buffer so that only the new ASCII bytes are
/// UTF-8 checked (no `unsafe`, no re-validation of what `out` already holds).
#[cfg(test)]
pub fn encode_into(input: &[u8], out: &mut String) {
    const IN_CHUNK: usize = 3 * 1024;
    let mut buf = Vec::with_capacity(encoded_len(IN_CHUNK.min(input.len())));
    out.reserve(encoded_len(input.len()));
    for chunk in input.chunks(IN_CHUNK) {
        buf.clear();
        encode_into_vec(chunk, &mut buf);
        out.push_str(std::str::from_utf8(&buf).expect("base64 alphabet is ASCII"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(input: &[u8]) -> String {
        let mut s = String::new();
        encode_into(input, &mut s);
        s
    }

    #[test]
    fn rfc4648_test_vectors() {
        let vectors: [(&str, &str); 7] = [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ];
        for (plain, expected) in vectors {
            assert_eq!(enc(plain.as_bytes()), expected, "input {plain:?}");
        }
    }

    #[test]
    fn uses_the_standard_alphabet_for_62_and_63() {
        assert_eq!(enc(&[0xfb, 0xff, 0xbf]), "+/+/");
        assert_eq!(enc(&[0xff]), "/w==");
    }

    #[test]
    fn appends_to_existing_output() {
        let mut s = String::from("x:");
        encode_into(b"foo", &mut s);
        encode_into(b"f", &mut s);
        assert_eq!(s, "x:Zm9vZg==");
        let mut v = b"{\"Data\":\"".to_vec();
        encode_into_vec(b"fo", &mut v);
        assert_eq!(v, b"{\"Data\":\"Zm8=");
    }

    #[test]
    fn encoded_len_matches_output_for_every_remainder_and_across_chunks() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7 + i / 3) as u8).collect();
        for n in [0, 1, 2, 3, 4, 5, 3071, 3072, 3073, 6145, 10_000] {
            let s = enc(&data[..n]);
            assert_eq!(s.len(), encoded_len(n), "n = {n}");
            assert_eq!(decode(&s), &data[..n], "n = {n}");
        }
    }

    /// Minimal reference decoder, only for round-trip checks.
    fn decode(s: &str) -> Vec<u8> {
        let val = |c: u8| ALPHABET.iter().position(|&a| a == c).unwrap() as u32;
        let mut out = Vec::new();
        for quad in s.as_bytes().chunks(4) {
            let pad = quad.iter().filter(|&&c| c == b'=').count();
            let n = quad
                .iter()
                .map(|&c| if c == b'=' { 0 } else { val(c) })
                .fold(0u32, |acc, v| (acc << 6) | v);
            let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
            out.extend_from_slice(&bytes[..3 - pad]);
        }
        out
    }
}
