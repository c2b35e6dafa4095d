//! Reading the extension's Kinesis records back into telemetry events, as a consumer would:
//! the three record formats (one event per record, NDJSON lines, KPL aggregated records)
//! and the enrichment object (`"source":{...}`) the extension adds to each event.
//!
//! Strict on purpose: a record that is not exactly one of the formats (a line that is not
//! one JSON value, a KPL record whose MD5 does not match, an enrichment object that is not
//! the last field) is an error, so a test fails instead of guessing. Independent of the
//! extension's code: the KPL side is [`crate::kpl`]'s own decoder.

use serde_json::Value;

use crate::kpl;

/// How a record's data was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Event,
    Ndjson,
    Kpl,
}

/// The events of one record's data, each as its exact JSON text, and the format found.
pub fn decode(data: &[u8]) -> Result<(Format, Vec<Vec<u8>>), String> {
    if kpl::has_magic(data) {
        return kpl::deaggregate(data).map(|e| (Format::Kpl, e));
    }
    let text = std::str::from_utf8(data).map_err(|e| format!("record data is not UTF-8: {e}"))?;
    if let Some(body) = text.strip_suffix('\n') {
        let mut events = Vec::new();
        for (i, line) in body.split('\n').enumerate() {
            serde_json::from_str::<Value>(line)
                .map_err(|e| format!("NDJSON line {i} is not one JSON value ({e}): {line:.120}"))?;
            events.push(line.as_bytes().to_vec());
        }
        return Ok((Format::Ndjson, events));
    }
    serde_json::from_str::<Value>(text)
        .map_err(|e| format!("record is not one JSON event ({e}): {text:.120}"))?;
    Ok((Format::Event, vec![data.to_vec()]))
}

/// An event as delivered: the text Lambda sent, and the enrichment object when there is one.
#[derive(Debug, Clone, PartialEq)]
pub struct Enriched {
    pub original: String,
    pub source: Option<Value>,
}

const MARKER: &str = ",\"source\":{\"function\":";

/// Splits the enrichment object off an event's text. Ours is the event's last field, in the
/// extension's layout, so that removing it gives back Lambda's bytes; an event without one
/// (or whose trailing `"source"` is not in that layout: the user's own) is returned whole.
pub fn split_enrichment(text: &str) -> Result<Enriched, String> {
    let whole = || Enriched {
        original: text.to_string(),
        source: None,
    };
    let Some(at) = text.rfind(MARKER) else {
        return Ok(whole());
    };
    let Some(object) = text[at + 1 + "\"source\":".len()..].strip_suffix('}') else {
        return Ok(whole());
    };
    let source = match serde_json::from_str::<Value>(object) {
        Ok(v @ Value::Object(_)) if object.ends_with('}') => v,
        _ => return Ok(whole()),
    };
    let original = format!("{}}}", &text[..at]);
    serde_json::from_str::<Value>(&original)
        .map_err(|e| format!("event without its enrichment is not JSON ({e}): {original:.160}"))?;
    Ok(Enriched {
        original,
        source: Some(source),
    })
}

/// Every event of every record, split from its enrichment; with each record's partition
/// key. Errors name the record.
pub fn events_of<'a>(
    records: impl IntoIterator<Item = (&'a str, &'a [u8])>,
) -> Result<Vec<(String, Enriched)>, String> {
    let mut out = Vec::new();
    for (i, (key, data)) in records.into_iter().enumerate() {
        let (_, events) = decode(data).map_err(|e| format!("record {i}: {e}"))?;
        for e in events {
            let text = String::from_utf8(e).map_err(|e| format!("record {i}: {e}"))?;
            out.push((key.to_string(), split_enrichment(&text)?));
        }
    }
    Ok(out)
}

/// The enrichment's `eventId` (unique per event; a resend repeats it).
pub fn event_id(source: &Value) -> Option<&str> {
    source.get("eventId").and_then(Value::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_three_formats_decode() {
        let a = r#"{"type":"function","record":"a"}"#;
        let b = r#"{"type":"function","record":"b\n"}"#;
        assert_eq!(
            decode(a.as_bytes()).unwrap(),
            (Format::Event, vec![a.as_bytes().to_vec()])
        );
        let nd = format!("{a}\n{b}\n");
        assert_eq!(
            decode(nd.as_bytes()).unwrap(),
            (
                Format::Ndjson,
                vec![a.as_bytes().to_vec(), b.as_bytes().to_vec()]
            )
        );
        let (_, records, agg) = kpl::aws_vector();
        let (format, events) = decode(&agg).unwrap();
        assert_eq!((format, events), (Format::Kpl, records));
        for bad in [&b"{not json"[..], b"{\"a\":1}\n{oops\n", b"\n"] {
            assert!(decode(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn enrichment_splits_off_and_gives_back_the_original() {
        let original = r#"{"time":"t","type":"function","record":{"message":"x","source":{"function":"nested"}}}"#;
        let enriched = format!(
            "{},\"source\":{{\"function\":\"f\",\"seq\":3,\"eventId\":\"e-3\"}}}}",
            &original[..original.len() - 1]
        );
        let e = split_enrichment(&enriched).unwrap();
        assert_eq!(e.original, original);
        assert_eq!(e.source.as_ref().and_then(event_id), Some("e-3"));
        let plain = split_enrichment(original).unwrap();
        assert_eq!(
            plain.source, None,
            "a nested source is the user's, not ours"
        );
        assert_eq!(plain.original, original);
        let spaced = split_enrichment(r#"{"a":1,"source":{"function":"f"} }"#).unwrap();
        assert_eq!(spaced.source, None, "not the extension's layout");
    }
}
