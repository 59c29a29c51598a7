//! The `strict_json` target: `kmswatch_normalize::scan`'s strict scanner against
//! `serde_json`, on the same bytes.
//!
//! The normalizer delimits every record with [`scan::object_fields_strict_nested`] and, when
//! it says "strict", keeps the record as `raw` without parsing it again
//! (`Raw::from_checked`). That is only sound if "strict" means exactly "serde_json accepts
//! it": a record the scanner passes and serde_json refuses would be written to sinks as
//! invalid JSON; one it refuses and serde_json accepts costs a second parse. So:
//! * [`scan::strict_value`] consumes the whole input iff serde_json parses it as a `Value`
//!   (what provider rules do with a kept record's `raw`: paired surrogate escapes, numbers
//!   within f64) and it nests at most [`scan::MAX_DEPTH`] levels (the scanner's cap, below
//!   `Value`'s recursion limit so that the JSON wrapping `raw` parses too);
//! * for UTF-8 input it accepts, `RawValue::from_string` (the constructor of `raw`) accepts
//!   it too;
//! * for an object, [`scan::object_fields_strict`] finds the same fields, end and errors as
//!   the structural [`scan::object_fields`], and its flag is the same verdict;
//! * [`scan::object_fields_strict_nested`] (what the document reader calls, descending
//!   into `protoPayload`) gives the same result as [`scan::object_fields_strict`], and its
//!   nested fields are the structural fields of that value.

use kmswatch_normalize::scan;

/// serde_json's verdict on a whole input: one `Value` with nothing around it, within the
/// scanner's depth cap.
pub fn serde_accepts(b: &[u8]) -> bool {
    let trimmed = matches!((b.first(), b.last()), (Some(f), Some(l))
        if !f.is_ascii_whitespace() && !l.is_ascii_whitespace());
    trimmed
        && nesting(b) <= scan::MAX_DEPTH
        && serde_json::from_slice::<serde_json::Value>(b).is_ok()
}

/// The deepest nesting of brackets outside strings (for text serde_json accepts, its depth).
fn nesting(b: &[u8]) -> usize {
    let (mut depth, mut max, mut in_str, mut esc) = (0usize, 0usize, false, false);
    for &c in b {
        if in_str {
            match (esc, c) {
                (true, _) => esc = false,
                (false, b'\\') => esc = true,
                (false, b'"') => in_str = false,
                _ => {}
            }
            continue;
        }
        match c {
            b'"' => in_str = true,
            b'[' | b'{' => {
                depth += 1;
                max = max.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}

/// Every property of the module docs on one input.
pub fn check(b: &[u8]) {
    let serde = serde_accepts(b);
    let strict = scan::strict_value(b, 0) == Some(b.len());
    // The scanner leaves UTF-8 to `std::str::from_utf8` (the normalizer checks a record's
    // text apart from the scan), while `Value` checks it in strings: compare on UTF-8 only.
    if std::str::from_utf8(b).is_err() {
        if b.first() == Some(&b'{') {
            check_object(b, None);
        }
        return;
    }
    assert_eq!(
        strict,
        serde,
        "strict_value says {strict}, serde_json's Value says {serde}: {:?}",
        String::from_utf8_lossy(b)
    );
    if let Ok(text) = std::str::from_utf8(b) {
        let t = text.trim_matches(|c: char| matches!(c, ' ' | '\n' | '\r' | '\t'));
        if scan::strict_value(t.as_bytes(), 0) == Some(t.len()) {
            assert!(
                serde_json::value::RawValue::from_string(text.to_owned()).is_ok(),
                "strict_value accepts what RawValue::from_string refuses: {text:?}"
            );
        }
    }
    if b.first() == Some(&b'{') {
        check_object(b, Some(serde));
    }
}

/// The object scans agree with each other, and (`serde`: for UTF-8 input) with the parser.
fn check_object(b: &[u8], serde: Option<bool>) {
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
            if let (true, Some(serde)) = (end == b.len(), serde) {
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
