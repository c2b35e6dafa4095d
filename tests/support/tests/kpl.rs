//! The KPL reference: AWS's own de-aggregator (`aws-kinesis-agg`, through
//! `kpl_deaggregate.py` in the venv) against this crate's Rust decoder.

use kte_test_support::kpl::{self, deaggregate_keyed, deaggregate_with_python};

/// The KPL peer (AWS's `aws-kinesis-agg` through `kpl_deaggregate.py`) agrees with the
/// Rust decoder on AWS's own vector and on a hand-built record with two keys, passes a
/// plain record through, and fails loudly where the module itself would silently hand
/// a corrupt aggregated record on as a plain one. Without the venv it fails and says
/// how to create it (as the moto tests do).
#[test]
fn kpl_python_peer_matches_the_rust_decoder_and_fails_loudly_on_corruption() {
    let (key, _, aws) = kpl::aws_vector();
    // Record 0 with key index 1 and an explicit hash key, record 1 with key index 0.
    let two_keys = kpl::wrap(
        &[
            &[
                0x0A, 0x02, b'k', b'0', 0x0A, 0x02, b'k', b'1', 0x12, 0x01, b'9',
            ][..],
            &[0x1A, 0x08, 0x08, 0x01, 0x10, 0x00, 0x1A, 0x02, b'h', b'i'],
            &[0x1A, 0x04, 0x08, 0x00, 0x1A, 0x00],
        ]
        .concat(),
    );
    let plain = br#"{"plain":"record"}"#.to_vec();
    let records = vec![
        (key.to_owned(), aws.clone()),
        ("plain-key".to_owned(), plain.clone()),
        ("outer".to_owned(), two_keys.clone()),
    ];
    let mut expected = deaggregate_keyed(&aws).unwrap();
    expected.push(("plain-key".to_owned(), plain));
    expected.extend(deaggregate_keyed(&two_keys).unwrap());
    assert_eq!(expected.len(), 6);
    assert_eq!(deaggregate_with_python(&records).unwrap(), expected);

    let mut bad_md5 = aws.clone();
    bad_md5[20] ^= 0x01;
    let no_data = kpl::wrap(&[0x0A, 0x01, b'k', 0x1A, 0x02, 0x08, 0x00]);
    let bad_index = kpl::wrap(&[0x0A, 0x01, b'k', 0x1A, 0x04, 0x08, 0x07, 0x1A, 0x00]);
    for (name, data, needle) in [
        ("bad MD5", bad_md5, "MD5 mismatch"),
        ("Record without data", no_data, "required fields missing"),
        (
            "key index outside the table",
            bad_index,
            "index out of range",
        ),
    ] {
        let err = deaggregate_with_python(&[("k".to_owned(), data)]).expect_err(name);
        assert!(err.contains(needle), "{name}: {err}");
    }
}
