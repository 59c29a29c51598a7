//! A fast structural JSON scanner: finds where values end and where an object's top-level
//! fields are, without building anything.
//!
//! This is what lets kmswatch decide "is this a KMS record?" without deserializing the
//! record. Two levels:
//! * structural ([`skip_value`], [`object_fields`]): brackets and string boundaries (escapes
//!   included), not the grammar of numbers and literals — for envelopes and for finding
//!   where things end;
//! * strict ([`object_fields_strict`], [`strict_value`]): the same walk that also checks the
//!   whole JSON grammar (RFC 8259: numbers, literals, commas and colons, escapes, no raw
//!   control characters in strings). The document reader delimits every record with it, so a
//!   record is validated in the pass that finds its fields, and `raw` is then a copy instead
//!   of a second parse (UTF-8 is checked separately, with `std::str::from_utf8`). A record
//!   that is structurally sound but not strict is still delimited the same way; it is
//!   validated by the parser when kept, and rejected with the parser's message.

use memchr::memchr2;

/// Why a structural scan stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScanError {
    /// Input ended inside a value.
    Eof,
    /// An unexpected byte at this offset.
    Unexpected(usize),
    /// Nesting deeper than [`MAX_DEPTH`].
    TooDeep(usize),
    /// An object with more than [`MAX_FIELDS`] top-level fields; the offset just past the
    /// object (it is otherwise well delimited, so reading can go on after it).
    TooManyFields(usize),
    /// Already reported by the caller that met it; reading resumes at this offset (used by
    /// the document reader).
    Reported(usize),
}

impl ScanError {
    /// The byte offset the error was detected at (the input length for [`ScanError::Eof`]).
    pub fn offset(self, len: usize) -> usize {
        match self {
            ScanError::Eof | ScanError::Reported(_) => len,
            ScanError::Unexpected(o) | ScanError::TooDeep(o) | ScanError::TooManyFields(o) => o,
        }
    }
}

/// Most top-level fields an object may have for [`object_fields`] and
/// [`object_fields_strict`] to list them: the list costs 32 bytes per field, for as few as
/// five bytes of input (`"":0,`), so without a cap a large object would cost six times its
/// size. Audit records have a few dozen fields; a Log Analytics row has one per column (at
/// most 500 in Azure Monitor).
pub const MAX_FIELDS: usize = 4096;

/// The list is full: the end of the object, found without listing, as
/// [`ScanError::TooManyFields`] (or the structural error that ends the scan first).
#[cold]
fn too_many_fields(b: &[u8], i: usize) -> ScanError {
    match skip_value(b, i) {
        Ok(end) => ScanError::TooManyFields(end),
        Err(e) => e,
    }
}

/// Deepest nesting the scanner accepts, counted from the record itself. serde_json parses a
/// `Value` at most 127 levels deep, and kmswatch writes a record's text one level deeper in
/// an event (`raw`) and four in a finding delivered to a sink (`{"event":{"evidences":[{"raw":
/// ...}]}}`); a cap of 100 keeps every one of those parseable, with room to spare. Audit
/// records nest a few levels; deeper input is hostile and rejected as `too_deep`.
pub const MAX_DEPTH: usize = 100;

/// Skip JSON whitespace from `i`.
#[inline]
pub fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && matches!(b[i], b' ' | b'\n' | b'\r' | b'\t') {
        i += 1;
    }
    i
}

/// `i` is at an opening quote; return the offset just past the closing quote.
#[inline]
pub fn skip_string(b: &[u8], i: usize) -> Result<usize, ScanError> {
    // The first 32 bytes eight at a time ([`special`]): most strings are short, where a SIMD
    // search costs more to set up than it saves; the rest of a long one with `memchr2`. A
    // control character (not JSON, but this scan is only structural) is passed over like any
    // other byte.
    const HEAD: usize = 32;
    let mut j = i + 1;
    loop {
        let rest = &b[j.min(b.len())..];
        let k = match special(&rest[..rest.len().min(HEAD)]) {
            Some(k) => k,
            None if rest.len() <= HEAD => return Err(ScanError::Eof),
            None => match memchr2(b'"', b'\\', &rest[HEAD..]) {
                Some(k) => HEAD + k,
                None => return Err(ScanError::Eof),
            },
        };
        let p = j + k;
        match b[p] {
            b'"' => return Ok(p + 1),
            b'\\' => {
                j = p + 2; // skip the escaped byte
                if j > b.len() {
                    return Err(ScanError::Eof);
                }
            }
            _ => j = p + 1,
        }
    }
}

/// `i` is at the first byte of a value; return the offset just past its end.
pub fn skip_value(b: &[u8], i: usize) -> Result<usize, ScanError> {
    let Some(&c) = b.get(i) else {
        return Err(ScanError::Eof);
    };
    match c {
        b'"' => skip_string(b, i),
        b'{' | b'[' => skip_container(b, i),
        b'-' | b'0'..=b'9' | b't' | b'f' | b'n' => {
            let mut j = i + 1;
            while j < b.len()
                && matches!(b[j], b'0'..=b'9' | b'a'..=b'z' | b'A'..=b'Z' | b'.' | b'+' | b'-')
            {
                j += 1;
            }
            Ok(j)
        }
        _ => Err(ScanError::Unexpected(i)),
    }
}

fn skip_container(b: &[u8], i: usize) -> Result<usize, ScanError> {
    let mut depth = 0usize;
    let mut j = i;
    while j < b.len() {
        match b[j] {
            b'"' => {
                j = skip_string(b, j)?;
                continue;
            }
            b'{' | b'[' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(ScanError::TooDeep(j));
                }
            }
            b'}' | b']' => {
                depth -= 1;
                if depth == 0 {
                    return Ok(j + 1);
                }
            }
            _ => {}
        }
        j += 1;
    }
    Err(ScanError::Eof)
}

/// The elements of the array starting at `b[i] == b'['`, as byte ranges, plus the offset
/// just past the array.
pub fn array_elements(
    b: &[u8],
    i: usize,
) -> Result<(Vec<std::ops::Range<usize>>, usize), ScanError> {
    debug_assert_eq!(b.get(i), Some(&b'['));
    let mut out = Vec::new();
    let mut j = skip_ws(b, i + 1);
    if b.get(j) == Some(&b']') {
        return Ok((out, j + 1));
    }
    loop {
        let end = skip_value(b, j)?;
        out.push(j..end);
        j = skip_ws(b, end);
        match b.get(j) {
            Some(b',') => j = skip_ws(b, j + 1),
            Some(b']') => return Ok((out, j + 1)),
            Some(_) => return Err(ScanError::Unexpected(j)),
            None => return Err(ScanError::Eof),
        }
    }
}

/// The elements of the array starting at `b[i] == b'['`, one at a time as byte ranges:
/// [`array_elements`] without collecting them (a list would cost 24 bytes per element, for
/// as few as two bytes of input). After the last element, [`Elements::end`] is the offset
/// just past the array. A structural error is yielded once, then the iteration stops.
pub fn elements(b: &[u8], i: usize) -> Elements<'_> {
    debug_assert_eq!(b.get(i), Some(&b'['));
    Elements {
        b,
        j: skip_ws(b, i + 1),
        first: true,
        end: None,
        done: false,
    }
}

/// Iterator of [`elements`].
#[derive(Debug)]
pub struct Elements<'a> {
    b: &'a [u8],
    j: usize,
    first: bool,
    end: Option<usize>,
    done: bool,
}

impl Elements<'_> {
    /// The offset just past the array, once iterated to its end without error.
    pub fn end(&self) -> Option<usize> {
        self.end
    }

    fn fail(&mut self, e: ScanError) -> Option<Result<std::ops::Range<usize>, ScanError>> {
        self.done = true;
        Some(Err(e))
    }
}

impl Iterator for Elements<'_> {
    type Item = Result<std::ops::Range<usize>, ScanError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let b = self.b;
        if self.first {
            self.first = false;
            if b.get(self.j) == Some(&b']') {
                self.done = true;
                self.end = Some(self.j + 1);
                return None;
            }
        } else {
            let j = skip_ws(b, self.j);
            match b.get(j) {
                Some(b',') => self.j = skip_ws(b, j + 1),
                Some(b']') => {
                    self.done = true;
                    self.end = Some(j + 1);
                    return None;
                }
                Some(_) => return self.fail(ScanError::Unexpected(j)),
                None => return self.fail(ScanError::Eof),
            }
        }
        match skip_value(b, self.j) {
            Ok(end) => {
                let r = self.j..end;
                self.j = end;
                Some(Ok(r))
            }
            Err(e) => self.fail(e),
        }
    }
}

/// One top-level field of an object: the key as written (between the quotes, escapes not
/// decoded) and the value's bytes.
pub type Field<'a> = (&'a [u8], &'a [u8]);

/// The top-level fields of the object starting at `b[i] == b'{'`, and the offset just past it.
pub fn object_fields(b: &[u8], i: usize) -> Result<(Vec<Field<'_>>, usize), ScanError> {
    let mut out = Vec::with_capacity(24);
    let mut j = skip_ws(b, i + 1);
    if b.get(j) == Some(&b'}') {
        return Ok((out, j + 1));
    }
    loop {
        if b.get(j) != Some(&b'"') {
            return Err(if j >= b.len() {
                ScanError::Eof
            } else {
                ScanError::Unexpected(j)
            });
        }
        let key_end = skip_string(b, j)?;
        let key = &b[j + 1..key_end - 1];
        j = skip_ws(b, key_end);
        match b.get(j) {
            Some(b':') => {}
            Some(_) => return Err(ScanError::Unexpected(j)),
            None => return Err(ScanError::Eof),
        }
        j = skip_ws(b, j + 1);
        let vend = skip_value(b, j)?;
        if out.len() == MAX_FIELDS {
            return Err(too_many_fields(b, i));
        }
        out.push((key, &b[j..vend]));
        j = skip_ws(b, vend);
        match b.get(j) {
            Some(b',') => j = skip_ws(b, j + 1),
            Some(b'}') => return Ok((out, j + 1)),
            Some(_) => return Err(ScanError::Unexpected(j)),
            None => return Err(ScanError::Eof),
        }
    }
}

/// [`object_fields`] that also says whether the object is strict JSON (RFC 8259 grammar,
/// strings without control characters, valid escapes; UTF-8 is not checked here). The
/// structural result (fields, end, errors) is exactly that of [`object_fields`]; a value
/// that is structurally sound but not strict JSON only turns the flag to false, so that the
/// caller can reject the record with the parser's own message.
pub fn object_fields_strict(
    b: &[u8],
    i: usize,
) -> Result<(Vec<Field<'_>>, usize, bool), ScanError> {
    object_fields_strict_nested(b, i, &[], &mut Vec::new())
}

/// [`object_fields_strict`] that also reads, in the same pass, the fields of the first field
/// whose key is one of `descend` and whose value is an object: they are put in `nested`
/// (left empty when there is none). Used for a GCP `LogEntry`'s `protoPayload`, which holds
/// most of the record and is read field by field.
pub fn object_fields_strict_nested<'a>(
    b: &'a [u8],
    i: usize,
    descend: &[&[u8]],
    nested: &mut Vec<Field<'a>>,
) -> Result<(Vec<Field<'a>>, usize, bool), ScanError> {
    fields_strict_at(b, i, descend, nested, 1)
}

/// [`object_fields_strict_nested`] for an object at nesting `level` (1 for a record): its
/// values are strict only within [`MAX_DEPTH`] levels in all, as for the whole record.
fn fields_strict_at<'a>(
    b: &'a [u8],
    i: usize,
    descend: &[&[u8]],
    nested: &mut Vec<Field<'a>>,
    level: usize,
) -> Result<(Vec<Field<'a>>, usize, bool), ScanError> {
    nested.clear();
    let mut descended = false;
    let mut out = Vec::with_capacity(24);
    let mut strict = true;
    let mut j = skip_ws(b, i + 1);
    if b.get(j) == Some(&b'}') {
        return Ok((out, j + 1, strict));
    }
    loop {
        if b.get(j) != Some(&b'"') {
            return Err(if j >= b.len() {
                ScanError::Eof
            } else {
                ScanError::Unexpected(j)
            });
        }
        let key_end = match strict_string(b, j) {
            Some(e) => e,
            None => {
                strict = false;
                skip_string(b, j)?
            }
        };
        let key = &b[j + 1..key_end - 1];
        j = skip_ws(b, key_end);
        match b.get(j) {
            Some(b':') => {}
            Some(_) => return Err(ScanError::Unexpected(j)),
            None => return Err(ScanError::Eof),
        }
        j = skip_ws(b, j + 1);
        // A strict value must also end where the structural scan ends it (`01` is `0`
        // strictly, then garbage; structurally one token).
        let inner = if !descended && b.get(j) == Some(&b'{') && descend.contains(&key) {
            descended = true;
            match fields_strict_at(b, j, &[], &mut Vec::new(), level + 1) {
                Ok((fields, end, inner_strict)) => {
                    *nested = fields;
                    Some(end).filter(|_| inner_strict)
                }
                Err(_) => None,
            }
        } else {
            strict_value_at(b, j, level)
        };
        let strict_end = inner.filter(|&e| matches!(b.get(skip_ws(b, e)), Some(b',' | b'}')));
        let vend = match strict_end {
            Some(e) => e,
            None => {
                strict = false;
                skip_value(b, j)?
            }
        };
        if out.len() == MAX_FIELDS {
            return Err(too_many_fields(b, i));
        }
        out.push((key, &b[j..vend]));
        j = skip_ws(b, vend);
        match b.get(j) {
            Some(b',') => j = skip_ws(b, j + 1),
            Some(b'}') => return Ok((out, j + 1, strict)),
            Some(_) => return Err(ScanError::Unexpected(j)),
            None => return Err(ScanError::Eof),
        }
    }
}

/// `i` is at the first byte of a value: the offset just past it when the value is strict
/// JSON (grammar of RFC 8259, nesting up to [`MAX_DEPTH`], strings without raw control
/// characters and with valid escapes), `None` otherwise. UTF-8 is not checked. One pass, no
/// allocation: what lets a record be validated while it is delimited.
pub fn strict_value(b: &[u8], i: usize) -> Option<usize> {
    strict_value_at(b, i, 0)
}

/// [`strict_value`] for a value inside `outer` levels of containers: it may nest
/// `MAX_DEPTH - outer` levels itself.
#[inline]
fn strict_value_at(b: &[u8], i: usize, outer: usize) -> Option<usize> {
    // Container kinds of the open levels, one bit each (1 = object), innermost lowest.
    let mut kinds: u128 = 0;
    let mut depth = outer;
    let mut j = i;
    loop {
        // A value starts at `j`.
        match *b.get(j)? {
            b'"' => j = strict_string(b, j)?,
            c @ (b'{' | b'[') => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return None;
                }
                let obj = c == b'{';
                kinds = (kinds << 1) | u128::from(obj);
                j = skip_ws(b, j + 1);
                let close = if obj { b'}' } else { b']' };
                if b.get(j) == Some(&close) {
                    depth -= 1;
                    kinds >>= 1;
                    j += 1;
                } else {
                    if obj {
                        j = strict_key(b, j)?;
                    }
                    continue;
                }
            }
            b'-' | b'0'..=b'9' => j = strict_number(b, j)?,
            b't' => j = literal(b, j, b"true")?,
            b'f' => j = literal(b, j, b"false")?,
            b'n' => j = literal(b, j, b"null")?,
            _ => return None,
        }
        // After a value: commas and closing brackets.
        loop {
            if depth == outer {
                return Some(j);
            }
            j = skip_ws(b, j);
            let obj = kinds & 1 == 1;
            match *b.get(j)? {
                b',' => {
                    j = skip_ws(b, j + 1);
                    if obj {
                        j = strict_key(b, j)?;
                    }
                    break;
                }
                b'}' if obj => {}
                b']' if !obj => {}
                _ => return None,
            }
            depth -= 1;
            kinds >>= 1;
            j += 1;
        }
    }
}

/// `"key" :` at `j`; the offset of the value after it.
#[inline]
fn strict_key(b: &[u8], j: usize) -> Option<usize> {
    if b.get(j) != Some(&b'"') {
        return None;
    }
    let j = skip_ws(b, strict_string(b, j)?);
    if b.get(j) != Some(&b':') {
        return None;
    }
    Some(skip_ws(b, j + 1))
}

#[inline]
fn literal(b: &[u8], j: usize, lit: &[u8]) -> Option<usize> {
    let end = j + lit.len();
    (b.get(j..end)? == lit).then_some(end)
}

/// `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?` at `j`.
#[inline]
fn strict_number(b: &[u8], mut j: usize) -> Option<usize> {
    let start = j;
    let digits = |b: &[u8], mut j: usize| -> Option<usize> {
        let start = j;
        while b.get(j).is_some_and(u8::is_ascii_digit) {
            j += 1;
        }
        (j > start).then_some(j)
    };
    if b.get(j) == Some(&b'-') {
        j += 1;
    }
    match *b.get(j)? {
        b'0' => j += 1,
        b'1'..=b'9' => j = digits(b, j)?,
        _ => return None,
    }
    if b.get(j) == Some(&b'.') {
        j = digits(b, j + 1)?;
    }
    let mut exponent = false;
    if matches!(b.get(j), Some(b'e' | b'E')) {
        exponent = true;
        j += 1;
        if matches!(b.get(j), Some(b'+' | b'-')) {
            j += 1;
        }
        j = digits(b, j)?;
    }
    // A number beyond f64's range (`1e400`) is refused by serde_json's `Value`, so it is not
    // strict either. Only an exponent or more than 300 characters can get there; those few
    // are read by serde_json's own number parser, so the verdict is exactly the parser's.
    if (exponent || j - start > 300) && serde_json::from_slice::<f64>(&b[start..j]).is_err() {
        return None;
    }
    Some(j)
}

/// `i` is at an opening quote: the offset past the closing quote when the string has no raw
/// control character and only valid escapes.
#[inline]
pub fn strict_string(b: &[u8], i: usize) -> Option<usize> {
    let mut j = i + 1;
    loop {
        let p = j + special(b.get(j..)?)?;
        match b[p] {
            b'"' => return Some(p + 1),
            b'\\' => {}
            _ => return None, // a control character
        }
        match *b.get(p + 1)? {
            b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => j = p + 2,
            b'u' => {
                let n = hex4(b.get(p + 2..p + 6)?)?;
                j = p + 6;
                // UTF-16 surrogates must come in pairs, as for serde_json's `Value` (which
                // refuses a lone one): a kept record's `raw` must parse for provider rules.
                if (0xDC00..=0xDFFF).contains(&n) {
                    return None;
                }
                if (0xD800..=0xDBFF).contains(&n) {
                    if b.get(j..j + 2)? != b"\\u" {
                        return None;
                    }
                    let low = hex4(b.get(j + 2..j + 6)?)?;
                    if !(0xDC00..=0xDFFF).contains(&low) {
                        return None;
                    }
                    j += 6;
                }
            }
            _ => return None,
        }
    }
}

/// Four hex digits as a number.
#[inline]
fn hex4(h: &[u8]) -> Option<u16> {
    h.iter().try_fold(0u16, |n, &c| {
        let d = (c as char).to_digit(16)?;
        Some(n << 4 | d as u16)
    })
}

/// Offset of the first `"`, `\` or control character (< 0x20) in `s`: eight bytes at a time
/// (SWAR), one pass for the three tests.
#[inline]
fn special(s: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let mut k = 0;
    for chunk in s.chunks_exact(8) {
        let mut w = [0u8; 8];
        w.copy_from_slice(chunk);
        let x = u64::from_le_bytes(w);
        let quote = x ^ (ONES * u64::from(b'"'));
        let backslash = x ^ (ONES * u64::from(b'\\'));
        // "has a zero byte" / "has a byte below 0x20": exact for the lowest flagged byte,
        // which is the one used (bytes >= 0x80 never flag: `!x` clears their high bit).
        let hit = (quote.wrapping_sub(ONES) & !quote)
            | (backslash.wrapping_sub(ONES) & !backslash)
            | (x.wrapping_sub(ONES * 0x20) & !x);
        let hit = hit & HIGH;
        if hit != 0 {
            return Some(k + (hit.trailing_zeros() / 8) as usize);
        }
        k += 8;
    }
    s[k..]
        .iter()
        .position(|&c| c == b'"' || c == b'\\' || c < 0x20)
        .map(|p| k + p)
}

/// The values of `keys` among the top-level fields of the object `obj` (first occurrence
/// wins), in one structural pass and without allocating. Anything that is not an object
/// (or is cut short) yields what was found before the problem.
pub fn find_fields<'a, const N: usize>(obj: &'a [u8], keys: [&[u8]; N]) -> [Option<&'a [u8]>; N] {
    let mut out = [None; N];
    let mut j = skip_ws(obj, 0);
    if obj.get(j) != Some(&b'{') {
        return out;
    }
    j = skip_ws(obj, j + 1);
    while obj.get(j) == Some(&b'"') {
        let Ok(key_end) = skip_string(obj, j) else {
            break;
        };
        let key = &obj[j + 1..key_end - 1];
        j = skip_ws(obj, key_end);
        if obj.get(j) != Some(&b':') {
            break;
        }
        j = skip_ws(obj, j + 1);
        let Ok(vend) = skip_value(obj, j) else {
            break;
        };
        if let Some(slot) = keys
            .iter()
            .position(|k| *k == key)
            .and_then(|p| out.get_mut(p))
        {
            slot.get_or_insert(&obj[j..vend]);
        }
        j = skip_ws(obj, vend);
        if obj.get(j) != Some(&b',') {
            break;
        }
        j = skip_ws(obj, j + 1);
    }
    out
}

/// A JSON string token's value, decoded (borrowed when it has no escapes); `None` for
/// anything else (`null`, numbers, objects, a broken token).
pub fn string_value(v: &[u8]) -> Option<std::borrow::Cow<'_, str>> {
    if v.first() != Some(&b'"') {
        return None;
    }
    if let Some(s) = plain_str(v) {
        return Some(std::borrow::Cow::Borrowed(s));
    }
    serde_json::from_slice::<String>(v)
        .ok()
        .map(std::borrow::Cow::Owned)
}

/// [`string_value`] of a token `v` that lies inside `within`, text already checked as UTF-8:
/// the string is cut from it instead of being checked again.
pub fn string_value_in<'a>(within: &'a str, v: &'a [u8]) -> Option<std::borrow::Cow<'a, str>> {
    if v.first() != Some(&b'"') {
        return None;
    }
    if let Some(s) = plain_str_in(within, v) {
        return Some(std::borrow::Cow::Borrowed(s));
    }
    string_value(v)
}

/// [`plain_str`] of a token `v` that lies inside `within`, text already checked as UTF-8 (a
/// token outside it is checked as [`plain_str`] does).
pub fn plain_str_in<'a>(within: &'a str, v: &'a [u8]) -> Option<&'a str> {
    if v.len() < 2 || v[0] != b'"' || v[v.len() - 1] != b'"' {
        return None;
    }
    let inner = &v[1..v.len() - 1];
    if memchr::memchr(b'\\', inner).is_some() {
        return None;
    }
    text_in(within, inner).or_else(|| std::str::from_utf8(inner).ok())
}

/// The text of `v` when it is a sub-slice of `within` (text already checked as UTF-8) that
/// starts and ends on char boundaries: cut from it, not checked again. `None` otherwise.
pub fn text_in<'a>(within: &'a str, v: &[u8]) -> Option<&'a str> {
    let off = (v.as_ptr() as usize).wrapping_sub(within.as_ptr() as usize);
    within
        .get(off..off.saturating_add(v.len()))
        .filter(|s| s.as_ptr() == v.as_ptr() && s.len() == v.len())
}

/// The value of a JSON string token (`"..."`) without its quotes, when it has no escapes.
/// Returns `None` for non-strings and for strings with escapes (decode those with serde).
pub fn plain_str(v: &[u8]) -> Option<&str> {
    if v.len() >= 2 && v[0] == b'"' && v[v.len() - 1] == b'"' {
        let inner = &v[1..v.len() - 1];
        if memchr::memchr(b'\\', inner).is_none() {
            return std::str::from_utf8(inner).ok();
        }
    }
    None
}

/// What could be read of an object cut short: its complete fields, and the key and start
/// offset of the field whose value was cut (if the cut happened inside a value).
pub type PartialObject<'a> = (Vec<Field<'a>>, Option<(&'a [u8], usize)>);

/// Read as much as possible of a truncated object starting at `b[i] == b'{'`.
pub fn object_fields_partial(b: &[u8], i: usize) -> PartialObject<'_> {
    let mut out = Vec::new();
    let mut j = skip_ws(b, i + 1);
    loop {
        if b.get(j) != Some(&b'"') {
            return (out, None);
        }
        let Ok(key_end) = skip_string(b, j) else {
            return (out, None);
        };
        let key = &b[j + 1..key_end - 1];
        j = skip_ws(b, key_end);
        if b.get(j) != Some(&b':') {
            return (out, None);
        }
        j = skip_ws(b, j + 1);
        match skip_value(b, j) {
            Ok(vend) => {
                out.push((key, &b[j..vend]));
                j = skip_ws(b, vend);
                match b.get(j) {
                    Some(b',') => j = skip_ws(b, j + 1),
                    _ => return (out, None),
                }
            }
            Err(_) => return (out, Some((key, j))),
        }
    }
}

/// The complete elements of a truncated array starting at `b[i] == b'['`.
pub fn array_elements_partial(b: &[u8], i: usize) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let mut j = skip_ws(b, i + 1);
    while let Ok(end) = skip_value(b, j) {
        out.push(j..end);
        j = skip_ws(b, end);
        match b.get(j) {
            Some(b',') => j = skip_ws(b, j + 1),
            _ => break,
        }
    }
    out
}

/// The value without whitespace between tokens, when it has line breaks (pretty-printed);
/// borrowed unchanged otherwise. Whitespace inside strings is kept (a raw line break cannot
/// appear inside a JSON string, so any line break is between tokens).
pub fn compact(b: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    if memchr::memchr2(b'\n', b'\r', b).is_none() {
        return std::borrow::Cow::Borrowed(b);
    }
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'"' => {
                let end = skip_string(b, i).unwrap_or(b.len());
                out.extend_from_slice(&b[i..end]);
                i = end;
            }
            b' ' | b'\n' | b'\r' | b'\t' => i += 1,
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    std::borrow::Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_and_fields() {
        let doc = br#" {"a": "x\"}y", "b" : [1, {"c": null}], "d": -1.5e3, "e": true} tail"#;
        let (fields, end) = object_fields(doc, 1).unwrap();
        assert_eq!(&doc[end..], b" tail");
        let keys: Vec<_> = fields.iter().map(|(k, _)| *k).collect();
        assert_eq!(keys, vec![&b"a"[..], b"b", b"d", b"e"]);
        assert_eq!(fields[0].1, br#""x\"}y""#);
        assert_eq!(fields[1].1, br#"[1, {"c": null}]"#);
        assert_eq!(fields[2].1, b"-1.5e3");
        assert_eq!(plain_str(fields[0].1), None);
        assert_eq!(
            plain_str(br#""kms.amazonaws.com""#),
            Some("kms.amazonaws.com")
        );
    }

    #[test]
    fn compacts_only_pretty_printed_values() {
        let compact_in = br#"{"a": "x y", "b":[1, 2]}"#;
        assert!(matches!(compact(compact_in), std::borrow::Cow::Borrowed(_)));
        let pretty = b"{\n  \"a\": \"x  y\\\"\",\n  \"b\": [\n    1,\n    2\n  ]\n}";
        assert_eq!(&*compact(pretty), br#"{"a":"x  y\"","b":[1,2]}"#);
    }

    #[test]
    fn arrays() {
        let doc = br#"[ {"a":1} , "s", [2] ]"#;
        let (els, end) = array_elements(doc, 0).unwrap();
        assert_eq!(end, doc.len());
        assert_eq!(els.len(), 3);
        assert_eq!(&doc[els[2].clone()], b"[2]");
        assert_eq!(array_elements(b"[]", 0).unwrap().0.len(), 0);
    }

    #[test]
    fn truncation_and_garbage() {
        assert_eq!(skip_value(br#"{"a": "b"#, 0), Err(ScanError::Eof));
        assert_eq!(skip_value(br#"{"a": "b\"#, 0), Err(ScanError::Eof));
        assert!(object_fields(br#"{"a" 1}"#, 0).is_err());
        assert!(object_fields(br#"{a: 1}"#, 0).is_err());
        let deep = "[".repeat(200);
        assert!(matches!(
            skip_value(deep.as_bytes(), 0),
            Err(ScanError::TooDeep(_))
        ));
    }

    /// strict JSON per the parser: the whole input is one value (no surrounding whitespace).
    fn serde_accepts(b: &[u8]) -> bool {
        let trimmed =
            !b.is_empty() && !b[0].is_ascii_whitespace() && !b[b.len() - 1].is_ascii_whitespace();
        // A `Value`, as provider rules parse a kept record's `raw` (lone surrogate escapes and
        // numbers beyond f64 are refused; merely validating would let them through).
        trimmed && serde_json::from_slice::<serde_json::Value>(b).is_ok()
    }

    #[test]
    fn strict_values_agree_with_the_parser() {
        let valid: &[&str] = &[
            r#"{}"#,
            r#"[]"#,
            r#"{"a":[1,-0.5e+3,true,false,null,"x\"\\\/\b\f\n\r\t\u00e9"],"b":{}}"#,
            r#"[ 0 , -1 , 1.25 , 3E7 , [ [ ] ] , { "k" : "v" } ]"#,
            r#""s""#,
            "0",
            "-0",
            "1e-2",
            "{\"a\":\n\t[1]\r}",
        ];
        for v in valid {
            assert_eq!(strict_value(v.as_bytes(), 0), Some(v.len()), "{v}");
            assert!(serde_accepts(v.as_bytes()), "{v}");
        }
        let invalid: &[&str] = &[
            r#"{"a":01}"#,
            r#"{"a":1.}"#,
            r#"{"a":.5}"#,
            r#"{"a":-}"#,
            r#"{"a":1e}"#,
            r#"{"a":tru}"#,
            r#"{"a":nul}"#,
            r#"{"a":True}"#,
            r#"{"a" 1}"#,
            r#"{"a":1,}"#,
            r#"[1,]"#,
            r#"[1 2]"#,
            r#"{"a":"\x"}"#,
            r#"{"a":"\u12g4"}"#,
            "{\"a\":\"x\ty\"}",
            r#"{a:1}"#,
            r#"{"a":[}"#,
            r#"{"a":1]"#,
            r#"["a":1]"#,
            r#"{,}"#,
            r#"{"a":+1}"#,
            r#"{"a":"x"#,
            r#"{"a":[1"#,
        ];
        for v in invalid {
            assert_eq!(strict_value(v.as_bytes(), 0), None, "{v}");
            assert!(!serde_accepts(v.as_bytes()), "{v}");
        }
        let deep = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert_eq!(strict_value(deep.as_bytes(), 0), Some(deep.len()));
        let deeper = format!("{}{}", "[".repeat(MAX_DEPTH + 1), "]".repeat(MAX_DEPTH + 1));
        assert_eq!(strict_value(deeper.as_bytes(), 0), None);
    }

    #[test]
    fn strict_object_fields_match_the_structural_ones() {
        let ok = br#"{"a": "x", "b" : [1, {"c": null}], "d": -1.5e3} tail"#;
        let (f1, e1) = object_fields(ok, 0).unwrap();
        let (f2, e2, strict) = object_fields_strict(ok, 0).unwrap();
        assert_eq!((f1, e1), (f2, e2));
        assert!(strict);
        // Structurally sound, not strict: same fields, flag down.
        let loose = br#"{"a": 01, "b": "x	y", "c": [1 2]}"#;
        let (f1, e1) = object_fields(loose, 0).unwrap();
        let (f2, e2, strict) = object_fields_strict(loose, 0).unwrap();
        assert_eq!((f1, e1), (f2, e2));
        assert!(!strict);
        // Structural errors are the same errors.
        for bad in [
            &br#"{"a" 1}"#[..],
            br#"{a: 1}"#,
            br#"{"a": [1"#,
            br#"{"a": 1 "b"}"#,
        ] {
            assert_eq!(
                object_fields(bad, 0).map(|r| r.1),
                object_fields_strict(bad, 0).map(|r| r.1)
            );
        }
    }

    #[test]
    fn find_fields_first_occurrence_without_allocating() {
        let obj = br#" {"a": 1, "b": {"a": 2}, "c": "x\"y", "a": 3} "#;
        let [a, c, z] = find_fields(obj, [b"a", b"c", b"z"]);
        assert_eq!(a, Some(&b"1"[..]));
        assert_eq!(c.and_then(string_value).as_deref(), Some("x\"y"));
        assert_eq!(z, None);
        assert_eq!(find_fields(b"[1]", [b"a"]), [None]);
        assert_eq!(
            find_fields(br#"{"a": 1, "b": [2"#, [b"a", b"b"]),
            [Some(&b"1"[..]), None]
        );
        assert_eq!(string_value(b"12"), None);
        assert_eq!(string_value(br#""plain""#).as_deref(), Some("plain"));
    }

    #[test]
    fn nested_fields_are_read_in_the_same_pass() {
        let rec =
            br#"{"a":1,"protoPayload":{"serviceName":"x","request":{"n":[1]}},"z":"protoPayload"}"#;
        let mut nested = Vec::new();
        let (fields, end, strict) =
            object_fields_strict_nested(rec, 0, &[b"protoPayload"], &mut nested).unwrap();
        assert_eq!((fields.clone(), end), object_fields(rec, 0).unwrap());
        assert!(strict);
        let pp = fields[1].1;
        assert_eq!(nested, object_fields(pp, 0).unwrap().0);
        // Not an object, or absent: nothing nested. Not strict inside: flag down, same fields.
        for (doc, strict_want) in [
            (&br#"{"protoPayload":"s"}"#[..], true),
            (br#"{"other":{}}"#, true),
            (br#"{"protoPayload":{"a":01}}"#, false),
        ] {
            let (f, e, st) =
                object_fields_strict_nested(doc, 0, &[b"protoPayload"], &mut nested).unwrap();
            assert_eq!((f, e), object_fields(doc, 0).unwrap());
            assert_eq!(st, strict_want);
            if doc.starts_with(br#"{"protoPayload":{"a""#) {
                assert_eq!(nested.len(), 1);
            } else {
                assert!(nested.is_empty());
            }
        }
        // A structural error inside is the structural scan's error.
        let cut = br#"{"protoPayload":{"a":[1}"#;
        assert_eq!(
            object_fields_strict_nested(cut, 0, &[b"protoPayload"], &mut nested).map(|r| r.1),
            object_fields(cut, 0).map(|r| r.1)
        );
    }

    /// How deep `b` nests, counting brackets outside strings (for text the parser accepted).
    fn nesting(b: &[u8]) -> usize {
        let (mut depth, mut max, mut i) = (0usize, 0usize, 0usize);
        while i < b.len() {
            match b[i] {
                b'"' => {
                    i = skip_string(b, i).unwrap_or(b.len());
                    continue;
                }
                b'{' | b'[' => {
                    depth += 1;
                    max = max.max(depth);
                }
                b'}' | b']' => depth = depth.saturating_sub(1),
                _ => {}
            }
            i += 1;
        }
        max
    }

    /// The parser's verdict on `b` as one whole document, as the record path needs it: UTF-8,
    /// one value without surrounding whitespace, valid for `serde_json` (`RawValue`, what
    /// `Record::to_raw` uses for a record the scan did not find strict), and within
    /// [`MAX_DEPTH`] (the scanner's documented cap; `RawValue` has none).
    fn parser_accepts(b: &[u8]) -> bool {
        let Ok(text) = std::str::from_utf8(b) else {
            return false;
        };
        serde_accepts(b)
            && serde_json::value::RawValue::from_string(text.to_string()).is_ok()
            && nesting(b) <= MAX_DEPTH
    }

    /// The scanner's verdict: [`strict_value`] over the whole input, plus the UTF-8 check
    /// that `Record::text` makes.
    fn scanner_accepts(b: &[u8]) -> bool {
        strict_value(b, 0) == Some(b.len()) && std::str::from_utf8(b).is_ok()
    }

    /// [`object_fields_strict`]'s verdict on a whole input that starts an object.
    fn fields_accept(b: &[u8]) -> bool {
        matches!(object_fields_strict(b, 0), Ok((_, end, true)) if end == b.len())
            && std::str::from_utf8(b).is_ok()
    }

    #[test]
    fn depth_cap_counts_the_record_itself() {
        for d in [MAX_DEPTH - 1, MAX_DEPTH, MAX_DEPTH + 1] {
            let inner = format!("{}{}", "[".repeat(d - 1), "]".repeat(d - 1));
            let rec = format!(r#"{{"a":{inner}}}"#);
            assert_eq!(nesting(rec.as_bytes()), d);
            assert_eq!(fields_accept(rec.as_bytes()), d <= MAX_DEPTH, "{d}");
            assert_eq!(parser_accepts(rec.as_bytes()), d <= MAX_DEPTH, "{d}");
        }
        // Lone surrogate escapes and out-of-range numbers: refused by `Value` and the scanner
        // (RawValue alone would take them, and provider rules could not read the record).
        for v in [
            &br#""\ud800""#[..],
            br#""\udc00""#,
            br#""\ud800x""#,
            br#""\ud800\u0041""#,
            br#"1e400"#,
            br#"-1e309"#,
            br#"{"n":1e400}"#,
        ] {
            assert!(
                !parser_accepts(v) && !scanner_accepts(v),
                "{:?}",
                String::from_utf8_lossy(v)
            );
        }
        for v in [
            &br#""\ud83d\ude00""#[..],
            br#"1e308"#,
            br#"1e-400"#,
            br#"0e999999"#,
        ] {
            assert!(
                parser_accepts(v) && scanner_accepts(v),
                "{:?}",
                String::from_utf8_lossy(v)
            );
        }
    }

    /// JSON-ish text: values as serializers write them and as they go wrong (leading zeros,
    /// cut literals, raw control characters, bad and lone-surrogate escapes, stray
    /// whitespace), nested up to six levels.
    fn jsonish() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        let ws = proptest::sample::select(vec!["", "", " ", "\n", "\t", "\r\n  "]);
        let string = r#""([a-zA-Z0-9 /é中]|\\["\\/bfnrtx]|\\u[0-9a-fA-F]{4}|\\u[dD][89abAB][0-9a-f]{2}|[\x00-\x1f\x7f])*""#;
        let leaf = prop_oneof![
            proptest::sample::select(vec![
                "true", "false", "null", "tru", "nul", "True", "-", "."
            ])
            .prop_map(str::to_string),
            any::<i64>().prop_map(|n| n.to_string()),
            any::<f64>().prop_map(|f| format!("{f:e}")),
            r"-?(0|[1-9][0-9]{0,4})(\.[0-9]{0,3})?([eE][+-]?[0-9]{0,2})?",
            r"[+-]?0[0-9]{1,3}",
            string,
        ];
        leaf.prop_recursive(6, 64, 6, move |inner| {
            prop_oneof![
                (
                    proptest::collection::vec(inner.clone(), 0..5),
                    ws.clone(),
                    ws.clone()
                )
                    .prop_map(|(v, a, b)| format!("[{a}{}{b}]", v.join(&format!("{b},{a}")))),
                (
                    proptest::collection::vec((string, inner), 0..5),
                    ws.clone(),
                    ws.clone()
                )
                    .prop_map(|(kv, a, b)| {
                        let fields: Vec<String> = kv
                            .into_iter()
                            .map(|(k, v)| format!("{k}{a}:{b}{v}"))
                            .collect();
                        format!("{{{a}{}{b}}}", fields.join(","))
                    }),
            ]
        })
    }

    /// Random edits of `b`: bytes replaced, inserted or removed, from JSON's own alphabet
    /// and bytes that break UTF-8.
    fn edit(b: &mut Vec<u8>, edits: &[(usize, u8, u8)]) {
        for &(at, op, c) in edits {
            let at = at % (b.len() + 1);
            match op % 3 {
                0 if at < b.len() => b[at] = c,
                1 if at < b.len() => {
                    b.remove(at);
                }
                _ => b.insert(at, c),
            }
        }
    }

    fn edits() -> impl proptest::strategy::Strategy<Value = Vec<(usize, u8, u8)>> {
        use proptest::prelude::*;
        let byte = prop_oneof![
            3 => proptest::sample::select(b"{}[]:,\"\\ \n0123456789-+.eEtrufalsnud8x".to_vec()),
            1 => proptest::sample::select(vec![0x00, 0x1f, 0x7f, 0x80, 0xbf, 0xc3, 0xe4, 0xed, 0xf4, 0xff]),
        ];
        proptest::collection::vec((any::<usize>(), any::<u8>(), byte), 0..4)
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig {
            cases: 2000,
            ..proptest::prelude::ProptestConfig::default()
        })]

        /// Arbitrary bytes: the strict scan accepts exactly what the parser accepts.
        #[test]
        fn strict_scan_is_the_parser_on_arbitrary_bytes(
            b in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..48),
        ) {
            proptest::prop_assert_eq!(scanner_accepts(&b), parser_accepts(&b));
        }

        /// Generated JSON-ish text, edited: the strict scan (a value, and a record's fields)
        /// accepts exactly what the parser accepts.
        #[test]
        fn strict_scan_is_the_parser_on_generated_text(text in jsonish(), edits in edits()) {
            let mut b = text.into_bytes();
            edit(&mut b, &edits);
            let want = parser_accepts(&b);
            proptest::prop_assert_eq!(scanner_accepts(&b), want, "{}", String::from_utf8_lossy(&b));
            if b.first() == Some(&b'{') {
                proptest::prop_assert_eq!(fields_accept(&b), want, "{}", String::from_utf8_lossy(&b));
            }
        }

        /// Nesting around the cap, objects and arrays mixed, edited.
        #[test]
        fn strict_scan_is_the_parser_around_the_depth_cap(
            kinds in proptest::collection::vec(proptest::prelude::any::<bool>(), MAX_DEPTH - 3..MAX_DEPTH + 3),
            edits in edits(),
        ) {
            let mut b = Vec::new();
            for &obj in &kinds {
                b.extend_from_slice(if obj { b"{\"k\":" } else { b"[" });
            }
            b.push(b'1');
            for &obj in kinds.iter().rev() {
                b.push(if obj { b'}' } else { b']' });
            }
            edit(&mut b, &edits);
            let want = parser_accepts(&b);
            proptest::prop_assert_eq!(scanner_accepts(&b), want);
            if b.first() == Some(&b'{') {
                proptest::prop_assert_eq!(fields_accept(&b), want);
            }
        }
    }

    proptest::proptest! {
        /// The eight-bytes-at-a-time search finds what a byte loop finds.
        #[test]
        fn special_bytes_found_like_a_byte_loop(s in proptest::collection::vec(
            proptest::prop_oneof![proptest::num::u8::ANY, proptest::sample::select(b"\"\\\x1f\x20\x00\x80\xff".to_vec())],
            0..80,
        )) {
            let naive = s.iter().position(|&c| c == b'"' || c == b'\\' || c < 0x20);
            proptest::prop_assert_eq!(special(&s), naive);
        }

        /// The string skip finds the end a byte loop finds, for short and long strings with
        /// escapes, control characters and no end.
        #[test]
        fn skip_string_is_a_byte_loop(s in proptest::collection::vec(
            proptest::prop_oneof![
                4 => proptest::num::u8::ANY,
                1 => proptest::sample::select(b"\"\\\x01\n".to_vec()),
            ],
            0..120,
        )) {
            let mut b = vec![b'"'];
            b.extend_from_slice(&s);
            let naive = {
                let mut j = 1;
                loop {
                    match b.get(j) {
                        None => break Err(ScanError::Eof),
                        Some(b'"') => break Ok(j + 1),
                        Some(b'\\') if j + 2 > b.len() => break Err(ScanError::Eof),
                        Some(b'\\') => j += 2,
                        Some(_) => j += 1,
                    }
                }
            };
            proptest::prop_assert_eq!(skip_string(&b, 0), naive);
        }

        /// A string cut from checked text is the string checked on its own, for tokens inside
        /// the text (at any offset, including inside a multi-byte char) and outside it.
        #[test]
        fn string_in_checked_text_is_the_string(
            s in "[a-z\u{e9}\u{4e2d}\"\\\\ ]{0,24}",
            start in 0usize..40,
            len in 0usize..40,
        ) {
            let text = format!("{{\"k\":{}}}", serde_json::to_string(&s).unwrap_or_default());
            let b = text.as_bytes();
            let start = start.min(b.len());
            let v = &b[start..(start + len).min(b.len())];
            proptest::prop_assert_eq!(plain_str_in(&text, v), plain_str(v));
            proptest::prop_assert_eq!(string_value_in(&text, v), string_value(v));
            let other = b"\"elsewhere\"".to_vec();
            proptest::prop_assert_eq!(plain_str_in(&text, &other), Some("elsewhere"));
        }

        /// Mutated JSON: the strict scan accepts exactly what the parser accepts.
        #[test]
        fn strict_scan_is_the_parser(
            base in proptest::sample::select(vec![
                r#"{"a":[1,-2.5e3,true,null],"b":{"c":"d\"e\u00e9"},"f":"g"}"#,
                r#"[{"k":0},[],{},"s",false,-0.0]"#,
            ]),
            edits in proptest::collection::vec((0usize..64, proptest::sample::select(
                b"{}[]:,\"\\ 0123456789-+.eEtrufalsn\tx".to_vec())), 0..4),
        ) {
            let mut b = base.as_bytes().to_vec();
            for (at, c) in edits {
                let at = at % (b.len() + 1);
                if at % 2 == 0 && at < b.len() { b[at] = c; } else { b.insert(at, c); }
            }
            let strict = strict_value(&b, 0) == Some(b.len());
            proptest::prop_assert_eq!(strict, serde_accepts(&b), "{}", String::from_utf8_lossy(&b));
        }
    }
}
