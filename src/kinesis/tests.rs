use super::*;
use serde_json::Value;

#[test]
fn stream_targets_parse_and_validate() {
    assert_eq!(
        StreamTarget::parse("my-stream_1.x"),
        Ok(StreamTarget::Name("my-stream_1.x".into()))
    );
    for bad in ["", "has space", "slash/name", "é", &"a".repeat(129)] {
        assert!(StreamTarget::parse(bad).is_err(), "{bad:?}");
    }
    assert!(StreamTarget::parse(&"a".repeat(128)).is_ok());

    let arn = "arn:aws:kinesis:eu-west-1:111122223333:stream/telemetry";
    let t = StreamTarget::parse(arn).unwrap();
    assert_eq!(t, StreamTarget::Arn(arn.into()));
    assert_eq!(t.region(), Some("eu-west-1"));
    assert_eq!(t.stream_name(), "telemetry");
    assert_eq!(t.to_string(), arn);

    let cn = StreamTarget::parse("arn:aws-cn:kinesis:cn-north-1:111122223333:stream/s").unwrap();
    assert_eq!(cn.region(), Some("cn-north-1"));
    assert_eq!(StreamTarget::Name("s".into()).region(), None);

    for bad in [
        "arn:aws:kinesis:eu-west-1:111122223333:telemetry",
        "arn:aws:firehose:eu-west-1:111122223333:stream/x",
        "arn:aws:kinesis:eu-west-1:1111:stream/x",
        "arn:aws:kinesis::111122223333:stream/x",
        "arn:aws:kinesis:eu-west-1:111122223333:stream/",
        "arn:aws:kinesis",
    ] {
        let err = StreamTarget::parse(bad).unwrap_err();
        assert!(err.contains("ARN"), "{bad}: {err}");
    }
}

#[test]
fn endpoints_per_partition() {
    assert_eq!(
        endpoint_for_region("us-east-1"),
        "https://kinesis.us-east-1.amazonaws.com"
    );
    assert_eq!(
        endpoint_for_region("cn-northwest-1"),
        "https://kinesis.cn-northwest-1.amazonaws.com.cn"
    );
    assert_eq!(
        endpoint_for_region("us-gov-west-1"),
        "https://kinesis.us-gov-west-1.amazonaws.com"
    );
}

fn decode_b64(s: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .expect("standard padded base64")
}

#[test]
fn body_is_the_documented_json_and_data_round_trips_byte_for_byte() {
    let events: [&[u8]; 3] = [
        br#"{"time":"2024-01-01T00:00:00Z","type":"platform.start","record":{"requestId":"r"}}"#,
        b"",
        "{\"record\":\"caf\u{e9} \\u0000\"}".as_bytes(),
    ];
    let keys = ["k1", "quote\"back\\slash", "日本"];
    let records: Vec<Record> = events
        .iter()
        .zip(keys)
        .map(|(d, k)| Record::new(d, k))
        .collect();
    let body = put_records_body(&StreamTarget::Name("s\"x".into()), &records);
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["StreamName"], "s\"x");
    assert!(v.get("StreamARN").is_none());
    let recs = v["Records"].as_array().unwrap();
    assert_eq!(recs.len(), 3);
    for (i, r) in recs.iter().enumerate() {
        assert_eq!(decode_b64(r["Data"].as_str().unwrap()), events[i]);
        assert_eq!(r["PartitionKey"], keys[i]);
        assert_eq!(
            r.as_object().unwrap().len(),
            2,
            "only Data and PartitionKey"
        );
    }

    let arn = "arn:aws:kinesis:us-east-1:111122223333:stream/s";
    let body = put_records_body(&StreamTarget::Arn(arn.into()), &records[..1]);
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["StreamARN"], arn);
    assert!(v.get("StreamName").is_none());
}

#[test]
fn body_buffer_is_sized_up_front() {
    let data = vec![7u8; 100_000];
    let records: Vec<Record> = (0..50)
        .map(|_| Record::new(&data, "0123456789abcdef"))
        .collect();
    let body = put_records_body(&StreamTarget::Name("s".into()), &records);
    assert!(body.capacity() >= body.len() && body.capacity() - body.len() < 4096);
}

#[test]
fn data_is_standard_padded_base64() {
    // RFC 4648 §10 test vectors, then the two characters where base64 alphabets differ.
    let vectors: [(&[u8], &str); 9] = [
        (b"", ""),
        (b"f", "Zg=="),
        (b"fo", "Zm8="),
        (b"foo", "Zm9v"),
        (b"foob", "Zm9vYg=="),
        (b"fooba", "Zm9vYmE="),
        (b"foobar", "Zm9vYmFy"),
        (&[0xfb, 0xff, 0xbf], "+/+/"),
        (&[0xff], "/w=="),
    ];
    let records: Vec<Record> = vectors
        .iter()
        .map(|(data, _)| Record::new(data, "k"))
        .collect();
    let body = put_records_body(&StreamTarget::Name("s".into()), &records);
    let v: Value = serde_json::from_slice(&body).unwrap();
    let recs = v["Records"].as_array().unwrap();
    assert_eq!(recs.len(), vectors.len());
    for (r, (plain, expected)) in recs.iter().zip(vectors) {
        assert_eq!(r["Data"], expected, "input {plain:?}");
    }
}

#[test]
fn data_of_every_length_round_trips() {
    let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7 + i / 3) as u8).collect();
    for n in [0, 1, 2, 3, 4, 5, 3071, 3072, 3073, 6145, 10_000] {
        let records = [Record::new(&data[..n], "k")];
        let body = put_records_body(&StreamTarget::Name("s".into()), &records);
        let v: Value = serde_json::from_slice(&body).unwrap();
        let text = v["Records"][0]["Data"].as_str().unwrap();
        assert_eq!(text.len(), n.div_ceil(3) * 4, "n = {n}");
        assert_eq!(decode_b64(text), &data[..n], "n = {n}");
    }
}

#[test]
fn lines_are_encoded_as_their_concatenation_whatever_the_lengths() {
    let text: Vec<u8> = (0..5_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    // Line lengths around base64's 3-byte groups and its encoder's internal buffer.
    for lens in [
        vec![0],
        vec![1, 1, 1],
        vec![2, 0, 5, 767, 768, 769],
        vec![1023, 1024, 1025],
    ] {
        let mut at = 0;
        let lines: Vec<&[u8]> = lens
            .iter()
            .map(|&n| {
                let l = &text[at..at + n];
                at += n;
                l
            })
            .collect();
        let data = Data::Lines(lines);
        let expected = data.to_vec();
        assert_eq!(data.size(), expected.len());
        let records = [Record {
            data,
            partition_key: "k",
        }];
        let body = put_records_body(&StreamTarget::Name("s".into()), &records);
        let v: Value = serde_json::from_slice(&body).unwrap();
        let text = v["Records"][0]["Data"].as_str().unwrap();
        assert_eq!(decode_b64(text), expected, "{lens:?}");
        assert_eq!(text.len(), base64_len(expected.len()), "{lens:?}");
    }
}

#[test]
fn response_parsing_accepts_unknown_fields_and_reports_each_record() {
    let body = br#"{"FailedRecordCount":1,"EncryptionType":"NONE","NewField":[1],"Records":[
            {"SequenceNumber":"49543463076548007577105092703039560359975228518395019266","ShardId":"shardId-000000000000","Extra":true},
            {"ErrorCode":"ProvisionedThroughputExceededException","ErrorMessage":"Rate exceeded for shard"}]}"#;
    let r = parse_put_records_response(body, 2).unwrap();
    assert_eq!(
        r.records,
        vec![
            RecordOutcome::Ok,
            RecordOutcome::Failed {
                code: "ProvisionedThroughputExceededException".into(),
                message: "Rate exceeded for shard".into()
            },
        ]
    );
}

#[test]
fn response_of_the_wrong_length_or_shape_is_malformed_not_a_panic() {
    let two = br#"{"FailedRecordCount":0,"Records":[{"SequenceNumber":"1","ShardId":"a"},{"SequenceNumber":"2","ShardId":"a"}]}"#;
    for sent in [0, 1, 3, 500] {
        assert!(matches!(
            parse_put_records_response(two, sent),
            Err(RequestError::MalformedResponse(_))
        ));
    }
    for garbage in [
        &b""[..],
        b"null",
        b"{}",
        b"{\"Records\":{}}",
        b"\xff\xfe",
        b"<html>",
    ] {
        let e = parse_put_records_response(garbage, 1).unwrap_err();
        assert!(matches!(e, RequestError::MalformedResponse(_)), "{e:?}");
        assert_eq!(e.class(), ErrorClass::Retryable);
    }
    // An entry with neither field counts as failed (and is resent), not as delivered.
    let r = parse_put_records_response(br#"{"Records":[{}]}"#, 1).unwrap();
    assert!(matches!(&r.records[0], RecordOutcome::Failed { code, .. } if code.is_empty()));
}
