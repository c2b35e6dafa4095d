//! Property tests of the listener's request handling over a byte stream (`memory`), on
//! stable: whatever the bytes and wherever the stream is split, nothing panics and every
//! answer matches what was handed on; valid requests, however they are framed, pipelined and
//! split, hand on exactly their bodies. The fuzz target (`fuzzing::listener_stream`) runs the
//! same entry point for longer.

use std::time::Duration;

use proptest::prelude::*;

use super::memory::{serve_bytes, Served};
use super::ListenerLimits;

const PATH: &str = "/0123456789abcdef0123456789abcdef";
const MAX_BODY: usize = 4096;

fn limits() -> ListenerLimits {
    ListenerLimits {
        max_body: MAX_BODY,
        max_connections: 1,
        // Memory never waits: a request only stalls if the machine stops for this long.
        request_timeout: Duration::from_secs(600),
    }
}

/// `bytes` cut at `cuts` (positions taken modulo its length + 1, in any order).
fn split<'a>(bytes: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
    let mut at: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
    at.push(0);
    at.push(bytes.len());
    at.sort_unstable();
    at.dedup();
    at.windows(2).map(|w| &bytes[w[0]..w[1]]).collect()
}

/// What holds for any input: one 200 per body handed on (the handler answers 200), no body
/// over the limit, and every answer a status the listener gives.
fn check_consistent(served: &Served) -> Result<(), TestCaseError> {
    let ok = served.answers.iter().filter(|&&s| s == 200).count();
    prop_assert_eq!(ok, served.bodies.len(), "answers {:?}", served.answers);
    prop_assert!(served.bodies.iter().all(|b| b.len() <= MAX_BODY));
    for status in &served.answers {
        prop_assert!(
            [100, 200, 400, 404, 405, 413, 417, 431, 501].contains(status),
            "answered {}",
            status
        );
    }
    Ok(())
}

/// One valid request as Lambda might send it, framed one of the ways HTTP/1.1 allows.
#[derive(Debug, Clone)]
struct Valid {
    body: Vec<u8>,
    /// `None`: `Content-Length`; `Some(sizes)`: chunked, cut into chunks of these sizes
    /// (the last chunk takes the rest).
    chunks: Option<Vec<usize>>,
    expect_continue: bool,
    /// Header names in upper case rather than as usual.
    shout: bool,
    /// Chunk sizes in upper-case hex, with an extension.
    fancy_chunks: bool,
    trailer: bool,
}

impl Valid {
    fn bytes(&self) -> Vec<u8> {
        let name = |n: &str| {
            if self.shout {
                n.to_ascii_uppercase()
            } else {
                n.to_string()
            }
        };
        let mut head = format!(
            "POST {PATH} HTTP/1.1\r\n{}: sandbox.localdomain:4243\r\n{}: application/json\r\n",
            name("Host"),
            name("Content-Type")
        );
        match &self.chunks {
            None => head += &format!("{}: {}\r\n", name("Content-Length"), self.body.len()),
            Some(_) => head += &format!("{}: chunked\r\n", name("Transfer-Encoding")),
        }
        if self.expect_continue {
            head += &format!("{}: 100-continue\r\n", name("Expect"));
        }
        head += "\r\n";
        let mut out = head.into_bytes();
        let Some(sizes) = &self.chunks else {
            out.extend_from_slice(&self.body);
            return out;
        };
        let mut rest = &self.body[..];
        let mut sizes = sizes.iter();
        while !rest.is_empty() {
            let n = sizes.next().map_or(rest.len(), |&s| s.clamp(1, rest.len()));
            let (chunk, tail) = rest.split_at(n);
            let size = if self.fancy_chunks {
                format!("{n:X};name=value\r\n")
            } else {
                format!("{n:x}\r\n")
            };
            out.extend_from_slice(size.as_bytes());
            out.extend_from_slice(chunk);
            out.extend_from_slice(b"\r\n");
            rest = tail;
        }
        out.extend_from_slice(b"0\r\n");
        if self.trailer {
            out.extend_from_slice(b"X-Trailer: 1\r\n");
        }
        out.extend_from_slice(b"\r\n");
        out
    }

    /// The answers it gets: `100 Continue` when it asks (its body is always framed, if
    /// only by `Content-Length: 0`), then 200.
    fn answers(&self) -> Vec<u16> {
        if self.expect_continue {
            vec![100, 200]
        } else {
            vec![200]
        }
    }
}

fn valid() -> impl Strategy<Value = Valid> {
    (
        prop::collection::vec(any::<u8>(), 0..600),
        prop::option::of(prop::collection::vec(1usize..200, 0..6)),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |(body, chunks, expect_continue, shout, fancy_chunks, trailer)| Valid {
                body,
                chunks,
                expect_continue,
                shout,
                fancy_chunks,
                trailer,
            },
        )
}

fn cuts() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(any::<usize>(), 0..40)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Arbitrary bytes, split anywhere: never a panic, and the answers are consistent.
    #[test]
    fn arbitrary_bytes_never_panic(
        bytes in prop::collection::vec(any::<u8>(), 0..1024),
        cuts in cuts(),
    ) {
        let served = serve_bytes(&split(&bytes, &cuts), PATH, limits());
        check_consistent(&served)?;
    }

    /// Valid requests with a few bytes overwritten, inserted or cut: they reach deeper into
    /// the parser than random bytes do.
    #[test]
    fn damaged_requests_never_panic(
        requests in prop::collection::vec(valid(), 1..4),
        damage in prop::collection::vec((any::<usize>(), any::<u8>(), 0u8..3), 1..6),
        cuts in cuts(),
    ) {
        let mut bytes: Vec<u8> = requests.iter().flat_map(Valid::bytes).collect();
        for (at, byte, how) in damage {
            let at = at % (bytes.len() + 1);
            match how {
                0 if at < bytes.len() => bytes[at] = byte,
                1 => bytes.insert(at, byte),
                _ => bytes.truncate(at),
            }
        }
        let served = serve_bytes(&split(&bytes, &cuts), PATH, limits());
        check_consistent(&served)?;
    }

    /// Valid requests, pipelined on one connection and split at any byte boundaries, hand on
    /// exactly their bodies, in order, each answered as it asks.
    #[test]
    fn valid_requests_split_anywhere_arrive_whole(
        requests in prop::collection::vec(valid(), 1..5),
        cuts in cuts(),
    ) {
        let bytes: Vec<u8> = requests.iter().flat_map(Valid::bytes).collect();
        let served = serve_bytes(&split(&bytes, &cuts), PATH, limits());
        let bodies: Vec<Vec<u8>> = requests.iter().map(|r| r.body.clone()).collect();
        prop_assert_eq!(served.bodies, bodies);
        let answers: Vec<u16> = requests.iter().flat_map(Valid::answers).collect();
        prop_assert_eq!(served.answers, answers);
    }

    /// The same requests to any other path: each connection ends with one 404, and nothing
    /// is handed on.
    #[test]
    fn another_path_gets_404_and_nothing_is_handed_on(
        request in valid(),
        other in "/[0-9a-f]{0,40}",
        cuts in cuts(),
    ) {
        prop_assume!(other != PATH);
        let bytes = request.bytes();
        let bytes = String::from_utf8_lossy(&bytes).replacen(PATH, &other, 1);
        let served = serve_bytes(&split(bytes.as_bytes(), &cuts), PATH, limits());
        prop_assert!(served.bodies.is_empty());
        prop_assert_eq!(served.answers, vec![404]);
    }
}

#[test]
fn split_covers_the_bytes_in_order() {
    let bytes = b"abcdef";
    assert_eq!(split(bytes, &[]), [&b"abcdef"[..]]);
    assert_eq!(split(bytes, &[2, 2, 9, 6]), [&b"ab"[..], b"cdef"]);
    assert_eq!(split(b"", &[3]), Vec::<&[u8]>::new());
}

/// The fuzz target's entry point serves `/` and hands on what it parses.
#[test]
fn the_fuzzing_entry_point_hands_on_bodies() {
    let request = b"POST / HTTP/1.1\r\nContent-Length: 2\r\n\r\n[]";
    let (a, b) = request.split_at(17);
    assert_eq!(crate::fuzzing::listener_stream(&[a, b]), [b"[]".to_vec()]);
    assert!(crate::fuzzing::listener_stream(&[&b"GET / HTTP/1.1\r\n\r\n"[..]]).is_empty());
}
