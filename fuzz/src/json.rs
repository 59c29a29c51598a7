//! The `strict_json` target: `kmswatch_normalize::scan`'s strict scanner against
//! `serde_json`, on the same bytes.
//!
//! The normalizer delimits every record with [`scan::object_fields_strict_nested`] and, when
//! it says "strict", keeps the record as `raw` without parsing it again
//! (`Raw::from_checked`). That is only sound if "strict" means exactly "serde_json accepts
//! it": a record the scanner passes and serde_json refuses would be written to sinks as
//! invalid JSON; one it refuses and serde_json accepts costs a second parse. So:
//! * [`scan::strict_value`] consumes the whole input iff `serde_json::from_slice` (ignoring
//!   the value, as `RawValue` does) accepts it, and for UTF-8 input iff
//!   `RawValue::from_string` does (the constructor the non-strict path uses);
//! * UTF-8 input it accepts parses as a `serde_json::Value` (what provider rules do with a
//!   kept record's `raw`), known open defects aside ([`KnownOpen`]);
//! * for an object, [`scan::object_fields_strict`] finds the same fields, end and errors as
//!   the structural [`scan::object_fields`], and its flag is the same verdict;
//! * [`scan::object_fields_strict_nested`] (what the document reader calls, descending
//!   into `protoPayload`) gives the same result as [`scan::object_fields_strict`], and its
//!   nested fields are the structural fields of that value.

use crate::KnownOpen;
use kmswatch_normalize::scan;

/// serde_json's verdict on a whole input: one value with nothing around it.
pub fn serde_accepts(b: &[u8]) -> bool {
    let trimmed = matches!((b.first(), b.last()), (Some(f), Some(l))
        if !f.is_ascii_whitespace() && !l.is_ascii_whitespace());
    trimmed && serde_json::from_slice::<serde::de::IgnoredAny>(b).is_ok()
}

/// Every property of the module docs on one input.
pub fn check(b: &[u8]) {
    // Deeper than the scanner's MAX_DEPTH: refused by it, validated by serde_json.
    let t = b.trim_ascii();
    if matches!(scan::skip_value(t, 0), Err(scan::ScanError::TooDeep(_)))
        && KnownOpen::ScannerDepthDiffersFromSerde.tolerated()
    {
        return;
    }
    let serde = serde_accepts(b);
    let strict = scan::strict_value(b, 0) == Some(b.len());
    // What provider rules do with a kept record's raw text (UTF-8 is checked apart from the
    // scan, so only UTF-8 input is a record that can be kept).
    if strict && std::str::from_utf8(b).is_ok() {
        if let Err(e) = serde_json::from_slice::<serde_json::Value>(b) {
            let known = KnownOpen::of_value_error(&e);
            assert!(
                known.is_some_and(KnownOpen::tolerated),
                "strict_value accepts what serde_json cannot parse as a Value ({e}): {:?}",
                String::from_utf8_lossy(b)
            );
        }
    }
    assert_eq!(
        strict,
        serde,
        "strict_value says {strict}, serde_json says {serde}: {:?}",
        String::from_utf8_lossy(b)
    );
    if let Ok(text) = std::str::from_utf8(b) {
        let raw = serde_json::value::RawValue::from_string(text.to_owned()).is_ok();
        let t = text.trim_matches(|c: char| matches!(c, ' ' | '\n' | '\r' | '\t'));
        let strict_trimmed = scan::strict_value(t.as_bytes(), 0) == Some(t.len());
        assert_eq!(
            strict_trimmed, raw,
            "strict_value says {strict_trimmed}, RawValue::from_string says {raw}: {text:?}"
        );
    }
    if b.first() == Some(&b'{') {
        check_object(b, serde);
    }
}

fn check_object(b: &[u8], serde: bool) {
    let structural = scan::object_fields(b, 0);
    let strict = scan::object_fields_strict(b, 0);
    let mut nested = Vec::new();
    let descended = scan::object_fields_strict_nested(b, 0, &[b"protoPayload"], &mut nested);
    assert_eq!(
        strict,
        descended,
        "descending into protoPayload changed the result: {:?}",
        String::from_utf8_lossy(b)
    );
    match (structural, strict) {
        (Ok((fields, end)), Ok((sfields, send, is_strict))) => {
            assert_eq!(
                (&fields, end),
                (&sfields, send),
                "strict and structural scans delimit differently: {:?}",
                String::from_utf8_lossy(b)
            );
            if end == b.len() {
                assert_eq!(
                    is_strict,
                    serde,
                    "object_fields_strict says {is_strict}, serde_json says {serde}: {:?}",
                    String::from_utf8_lossy(b)
                );
            }
            let proto = fields
                .iter()
                .find(|(k, v)| *k == b"protoPayload" && v.first() == Some(&b'{'));
            let expected = match proto {
                Some((_, v)) => scan::object_fields(v, 0)
                    .map(|(f, _)| f)
                    .unwrap_or_default(),
                None => Vec::new(),
            };
            assert_eq!(
                nested,
                expected,
                "protoPayload's fields read in the same pass differ: {:?}",
                String::from_utf8_lossy(b)
            );
        }
        (Err(e), Err(se)) => assert_eq!(
            e,
            se,
            "strict and structural scans fail differently: {:?}",
            String::from_utf8_lossy(b)
        ),
        (a, s) => panic!(
            "strict and structural scans disagree ({a:?} vs {s:?}): {:?}",
            String::from_utf8_lossy(b)
        ),
    }
}
