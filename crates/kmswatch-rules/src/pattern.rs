//! Compiled value matchers: the OR-set of a field's values, built once at load time.
//!
//! Literal equalities go into a case-folded hash set, `contains` values into one Aho-Corasick
//! automaton, prefixes and suffixes are compared in place, and everything else (general
//! wildcards, `re`) is a regex compiled once. Matching never allocates: numbers and booleans
//! are printed into a stack buffer when compared with string patterns.

use crate::document::FieldValue;
use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use hashbrown::{Equivalent, HashSet};
use regex::Regex;
use std::hash::{Hash, Hasher};
use std::net::IpAddr;

/// One token of a Sigma string value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Tok {
    Lit(String),
    Star,
    Quest,
}

/// Parse a Sigma string into literal text and wildcards, honouring `\` escapes.
pub(crate) fn parse_wildcards(s: &str) -> Vec<Tok> {
    let mut toks: Vec<Tok> = Vec::new();
    let mut lit = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.peek() {
                Some('*') | Some('?') | Some('\\') => {
                    if let Some(n) = chars.next() {
                        lit.push(n);
                    }
                }
                _ => lit.push('\\'),
            },
            '*' | '?' => {
                if !lit.is_empty() {
                    toks.push(Tok::Lit(std::mem::take(&mut lit)));
                }
                toks.push(if c == '*' { Tok::Star } else { Tok::Quest });
            }
            _ => lit.push(c),
        }
    }
    if !lit.is_empty() {
        toks.push(Tok::Lit(lit));
    }
    toks
}

/// Literal text of a token list with no wildcard.
pub(crate) fn plain_text(toks: &[Tok]) -> Option<String> {
    let mut out = String::new();
    for t in toks {
        match t {
            Tok::Lit(s) => out.push_str(s),
            _ => return None,
        }
    }
    Some(out)
}

/// A case-insensitive string key (Unicode lower-casing, char by char).
#[derive(Debug, Clone)]
pub(crate) struct Folded(pub String);

/// Hash the case-folded form of `s`: the UTF-8 bytes of its lower-cased chars, fed in
/// 64-byte chunks (so an ASCII string, folded byte by byte, hashes exactly like a
/// non-ASCII string that folds to the same chars), then a terminator.
fn fold_hash<H: Hasher>(s: &str, state: &mut H) {
    let mut buf = [0u8; 64];
    if s.is_ascii() {
        // The same writes as the loop below: full 64-byte chunks, then the rest (an empty
        // write for an empty string).
        let bytes = s.as_bytes();
        if bytes.is_empty() {
            state.write(&[]);
        }
        for chunk in bytes.chunks(buf.len()) {
            if let Some(lower) = buf.get_mut(..chunk.len()) {
                lower.copy_from_slice(chunk);
                lower.make_ascii_lowercase();
                state.write(lower);
            }
        }
        state.write_u8(0xff);
        return;
    }
    let mut n = 0usize;
    let mut push = |b: u8, state: &mut H| {
        if n == buf.len() {
            state.write(&buf);
            n = 0;
        }
        if let Some(slot) = buf.get_mut(n) {
            *slot = b;
        }
        n += 1;
    };
    let mut enc = [0u8; 4];
    for c in s.chars().flat_map(char::to_lowercase) {
        for b in c.encode_utf8(&mut enc).bytes() {
            push(b, state);
        }
    }
    state.write(buf.get(..n).unwrap_or(&[]));
    state.write_u8(0xff);
}

pub(crate) fn eq_fold(a: &str, b: &str) -> bool {
    if a.is_ascii() && b.is_ascii() {
        return a.eq_ignore_ascii_case(b);
    }
    a.chars()
        .flat_map(char::to_lowercase)
        .eq(b.chars().flat_map(char::to_lowercase))
}

impl Hash for Folded {
    fn hash<H: Hasher>(&self, state: &mut H) {
        fold_hash(&self.0, state)
    }
}
impl PartialEq for Folded {
    fn eq(&self, other: &Self) -> bool {
        eq_fold(&self.0, &other.0)
    }
}
impl Eq for Folded {}

/// A borrowed lookup key for [`Folded`] sets.
#[derive(Debug)]
pub(crate) struct FoldedRef<'a>(pub &'a str);
impl Hash for FoldedRef<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        fold_hash(self.0, state)
    }
}
impl Equivalent<Folded> for FoldedRef<'_> {
    fn equivalent(&self, key: &Folded) -> bool {
        eq_fold(self.0, &key.0)
    }
}

/// Numeric comparison operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CmpOp {
    Eq,
    Gt,
    Gte,
    Lt,
    Lte,
}

impl CmpOp {
    fn test(self, a: f64, b: f64) -> bool {
        match self {
            CmpOp::Eq => a == b,
            CmpOp::Gt => a > b,
            CmpOp::Gte => a >= b,
            CmpOp::Lt => a < b,
            CmpOp::Lte => a <= b,
        }
    }
}

/// Part of a date extracted by a time modifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TimePart {
    Minute,
    Hour,
    Day,
    Week,
    Month,
    Year,
}

/// An IP network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Cidr {
    net: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub(crate) fn parse(s: &str) -> Option<Cidr> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a.trim(), Some(p.trim().parse::<u8>().ok()?)),
            None => (s.trim(), None),
        };
        let net: IpAddr = addr.parse().ok()?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        if prefix > max {
            return None;
        }
        Some(Cidr { net, prefix })
    }

    fn contains(&self, ip: IpAddr) -> bool {
        match (self.net, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                (u32::from(n) & mask) == (u32::from(a) & mask)
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                (u128::from(n) & mask) == (u128::from(a) & mask)
            }
            (IpAddr::V6(_), IpAddr::V4(a)) => self.contains(IpAddr::V6(a.to_ipv6_mapped())),
            (IpAddr::V4(_), IpAddr::V6(a)) => match a.to_ipv4_mapped() {
                Some(v4) => self.contains(IpAddr::V4(v4)),
                None => false,
            },
        }
    }
}

/// One compiled value (before grouping into a [`PatternSet`]).
#[derive(Debug, Clone)]
pub(crate) enum Pattern {
    /// Wildcard string (`cased` says whether case matters).
    Wild { toks: Vec<Tok>, cased: bool },
    /// `re`
    Regex(Regex),
    /// `cidr`
    Cidr(Cidr),
    /// `gt`/`gte`/`lt`/`lte`
    Num(CmpOp, f64),
    /// time modifiers, optionally with a comparison
    Time(TimePart, CmpOp, f64),
    /// `null`: absent or null
    Null,
}

/// Up to this many case-insensitive literals are compared one by one rather than looked up.
const EXACT_CI_FEW: usize = 8;

/// An OR-set of patterns, grouped for speed.
#[derive(Debug, Default)]
pub(crate) struct PatternSet {
    exact_ci: HashSet<Folded>,
    /// `exact_ci` as a list when it is small: comparing a few literals in place is cheaper
    /// than case-folding and hashing the value (same result: [`eq_fold`] is the set's
    /// equality).
    exact_ci_few: Vec<(String, bool)>,
    exact_cs: HashSet<String>,
    contains_ci: Option<AhoCorasick>,
    contains_cs: Option<AhoCorasick>,
    prefix: Vec<(String, bool)>,
    suffix: Vec<(String, bool)>,
    regexes: Vec<Regex>,
    cidrs: Vec<Cidr>,
    nums: Vec<(CmpOp, f64)>,
    times: Vec<(TimePart, CmpOp, f64)>,
    null: bool,
    /// Whether any pattern looks at string forms at all.
    has_string: bool,
    /// For the raw-text prefilter: literals of which every string this set matches contains
    /// at least one (ASCII case-insensitively); `None` when some pattern has no such literal.
    required: Option<Vec<String>>,
}

/// Characters a JSON text always writes as themselves (in a text without `\u` escapes):
/// printable ASCII except `"`, `\` and `/` (which a producer may escape as `\/`).
fn json_verbatim(b: u8) -> bool {
    (0x20..0x7f).contains(&b) && !matches!(b, b'"' | b'\\' | b'/')
}

/// The longest run of `lit` that a JSON text holding a string containing `lit` must contain
/// verbatim; `None` when that run is empty or could be part of a number printed differently
/// from its JSON spelling (`1.50` vs `1.5`).
pub(crate) fn verbatim_literal(lit: &str) -> Option<String> {
    let best = lit
        .as_bytes()
        .split(|b| !json_verbatim(*b))
        .max_by_key(|run| run.len())?;
    if best.is_empty()
        || best
            .iter()
            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'+'))
    {
        return None;
    }
    std::str::from_utf8(best).ok().map(str::to_string)
}

/// The literal a wildcard pattern's matches must contain (its longest literal run).
fn wild_literal(toks: &[Tok]) -> Option<String> {
    toks.iter()
        .filter_map(|t| match t {
            Tok::Lit(s) => verbatim_literal(s),
            _ => None,
        })
        .max_by_key(String::len)
}

fn regex_escape_wild(toks: &[Tok], cased: bool) -> String {
    let mut re = String::from(if cased { "(?s)^" } else { "(?si)^" });
    for t in toks {
        match t {
            Tok::Lit(s) => re.push_str(&regex::escape(s)),
            Tok::Star => re.push_str(".*"),
            Tok::Quest => re.push('.'),
        }
    }
    re.push('$');
    re
}

impl PatternSet {
    /// Group `patterns` (OR). Fails only when a generated regex cannot be compiled.
    pub(crate) fn build(patterns: Vec<Pattern>) -> Result<PatternSet, String> {
        let mut set = PatternSet::default();
        let mut contains_ci = Vec::new();
        let mut contains_cs = Vec::new();
        let mut required = Some(Vec::new());
        for p in patterns {
            let lit = match &p {
                Pattern::Wild { toks, .. } => wild_literal(toks),
                _ => None,
            };
            match (lit, required.as_mut()) {
                (Some(l), Some(r)) => r.push(l),
                _ => required = None,
            }
            match p {
                Pattern::Wild { toks, cased } => {
                    set.has_string = true;
                    // An ASCII-only literal can use the fast paths; others go through a regex
                    // for Unicode-aware case folding.
                    let ascii = toks.iter().all(|t| match t {
                        Tok::Lit(s) => s.is_ascii(),
                        _ => true,
                    });
                    match toks.as_slice() {
                        [] => {
                            set.exact_cs.insert(String::new());
                        }
                        [Tok::Lit(s)] if cased => {
                            set.exact_cs.insert(s.clone());
                        }
                        [Tok::Lit(s)] => {
                            set.exact_ci.insert(Folded(s.clone()));
                        }
                        [Tok::Star] => set.prefix.push((String::new(), true)),
                        [Tok::Lit(s), Tok::Star] if ascii || cased => {
                            set.prefix.push((s.clone(), cased))
                        }
                        [Tok::Star, Tok::Lit(s)] if ascii || cased => {
                            set.suffix.push((s.clone(), cased))
                        }
                        [Tok::Star, Tok::Lit(s), Tok::Star] if cased => contains_cs.push(s.clone()),
                        [Tok::Star, Tok::Lit(s), Tok::Star] if ascii => contains_ci.push(s.clone()),
                        _ => {
                            let re = regex_escape_wild(&toks, cased);
                            set.regexes
                                .push(Regex::new(&re).map_err(|e| e.to_string())?);
                        }
                    }
                }
                Pattern::Regex(r) => {
                    set.has_string = true;
                    set.regexes.push(r)
                }
                Pattern::Cidr(c) => set.cidrs.push(c),
                Pattern::Num(op, v) => set.nums.push((op, v)),
                Pattern::Time(part, op, v) => set.times.push((part, op, v)),
                Pattern::Null => set.null = true,
            }
        }
        set.required = required.filter(|r| !r.is_empty());
        if set.exact_ci.len() <= EXACT_CI_FEW {
            set.exact_ci_few = set
                .exact_ci
                .iter()
                .map(|f| (f.0.clone(), f.0.is_ascii()))
                .collect();
        }
        if !contains_ci.is_empty() {
            set.contains_ci = Some(build_ac(&contains_ci, true)?);
        }
        if !contains_cs.is_empty() {
            set.contains_cs = Some(build_ac(&contains_cs, false)?);
        }
        Ok(set)
    }

    /// Equality values that the candidate index may use: `Some` when this set is nothing but
    /// case-insensitive exact literals.
    pub(crate) fn index_values(&self) -> Option<Vec<String>> {
        let only_exact = self.exact_cs.is_empty()
            && self.contains_ci.is_none()
            && self.contains_cs.is_none()
            && self.prefix.is_empty()
            && self.suffix.is_empty()
            && self.regexes.is_empty()
            && self.cidrs.is_empty()
            && self.nums.is_empty()
            && self.times.is_empty()
            && !self.null
            && !self.exact_ci.is_empty();
        only_exact.then(|| self.exact_ci.iter().map(|f| f.0.clone()).collect())
    }

    /// Literals of which any string this set matches contains one (ASCII case-insensitively,
    /// JSON-verbatim: see [`verbatim_literal`]); `None` when unknown (regexes, numbers, CIDRs,
    /// `null`, ...).
    pub(crate) fn required_literals(&self) -> Option<&[String]> {
        self.required.as_deref()
    }

    /// Whether `v` matches any pattern. Lists match when any element does.
    pub(crate) fn matches(&self, v: FieldValue<'_>) -> bool {
        match v {
            FieldValue::Absent | FieldValue::Null => self.null,
            FieldValue::Str(s) => self.matches_str(s) || self.matches_num_str(s),
            FieldValue::Int(i) => {
                #[allow(clippy::cast_precision_loss)]
                let f = i as f64;
                self.matches_num(f)
                    || (self.has_string && self.with_printed(|s| self.matches_str(s), i))
            }
            FieldValue::Float(f) => {
                self.matches_num(f)
                    || (self.has_string && self.with_printed(|s| self.matches_str(s), f))
            }
            FieldValue::Bool(b) => {
                self.has_string && self.matches_str(if b { "true" } else { "false" })
            }
            FieldValue::List(items) => items.iter().any(|e| self.matches(FieldValue::from_json(e))),
            FieldValue::StrList(items) => items.iter().any(|e| self.matches(FieldValue::Str(e))),
            FieldValue::Object(_) => false,
        }
    }

    fn with_printed<T: std::fmt::Display>(&self, f: impl Fn(&str) -> bool, v: T) -> bool {
        let mut buf = StackStr::new();
        if std::fmt::Write::write_fmt(&mut buf, format_args!("{v}")).is_err() {
            return false;
        }
        f(buf.as_str())
    }

    fn matches_num(&self, f: f64) -> bool {
        self.nums.iter().any(|(op, v)| op.test(f, *v))
            || self
                .times
                .iter()
                .any(|(part, op, v)| time_part_of_number(f, *part).is_some_and(|x| op.test(x, *v)))
    }

    fn matches_num_str(&self, s: &str) -> bool {
        if !self.nums.is_empty() {
            if let Ok(f) = s.trim().parse::<f64>() {
                if self.nums.iter().any(|(op, v)| op.test(f, *v)) {
                    return true;
                }
            }
        }
        if !self.times.is_empty() {
            if let Some(dt) = parse_rfc3339_prefix(s) {
                return self
                    .times
                    .iter()
                    .any(|(part, op, v)| op.test(dt.part(*part), *v));
            }
            if let Ok(f) = s.trim().parse::<f64>() {
                return self.matches_num(f);
            }
        }
        if !self.cidrs.is_empty() {
            if let Ok(ip) = s.trim().parse::<IpAddr>() {
                return self.cidrs.iter().any(|c| c.contains(ip));
            }
        }
        false
    }

    /// Whether a string matches any of the string patterns.
    pub(crate) fn matches_str(&self, s: &str) -> bool {
        if !self.exact_ci_few.is_empty() {
            // `eq_fold`, with the ASCII checks done once.
            let s_ascii = s.is_ascii();
            let hit = self.exact_ci_few.iter().any(|(x, x_ascii)| {
                if *x_ascii && s_ascii {
                    x.len() == s.len() && x.eq_ignore_ascii_case(s)
                } else {
                    eq_fold(x, s)
                }
            });
            if hit {
                return true;
            }
        } else if !self.exact_ci.is_empty() && self.exact_ci.contains(&FoldedRef(s)) {
            return true;
        }
        if !self.exact_cs.is_empty() && self.exact_cs.contains(s) {
            return true;
        }
        if self.contains_ci.as_ref().is_some_and(|ac| ac.is_match(s)) {
            return true;
        }
        if self.contains_cs.as_ref().is_some_and(|ac| ac.is_match(s)) {
            return true;
        }
        let b = s.as_bytes();
        for (p, cased) in &self.prefix {
            if let Some(head) = b.get(..p.len()) {
                if if *cased {
                    head == p.as_bytes()
                } else {
                    head.eq_ignore_ascii_case(p.as_bytes())
                } {
                    return true;
                }
            }
        }
        for (p, cased) in &self.suffix {
            if let Some(start) = b.len().checked_sub(p.len()) {
                if let Some(tail) = b.get(start..) {
                    if if *cased {
                        tail == p.as_bytes()
                    } else {
                        tail.eq_ignore_ascii_case(p.as_bytes())
                    } {
                        return true;
                    }
                }
            }
        }
        self.regexes.iter().any(|r| r.is_match(s))
    }
}

fn build_ac(patterns: &[String], ci: bool) -> Result<AhoCorasick, String> {
    AhoCorasickBuilder::new()
        .ascii_case_insensitive(ci)
        .match_kind(MatchKind::Standard)
        .build(patterns)
        .map_err(|e| e.to_string())
}

/// A small fixed buffer for printing numbers without allocating.
struct StackStr {
    buf: [u8; 64],
    len: usize,
}

impl StackStr {
    fn new() -> StackStr {
        StackStr {
            buf: [0; 64],
            len: 0,
        }
    }
    fn as_str(&self) -> &str {
        self.buf
            .get(..self.len)
            .and_then(|b| std::str::from_utf8(b).ok())
            .unwrap_or("")
    }
}

impl std::fmt::Write for StackStr {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let end = self.len.checked_add(s.len()).ok_or(std::fmt::Error)?;
        let dst = self.buf.get_mut(self.len..end).ok_or(std::fmt::Error)?;
        dst.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// A civil UTC date-time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DateTime {
    year: i64,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
}

impl DateTime {
    #[allow(clippy::cast_precision_loss)]
    fn part(&self, p: TimePart) -> f64 {
        match p {
            TimePart::Minute => f64::from(self.minute),
            TimePart::Hour => f64::from(self.hour),
            TimePart::Day => f64::from(self.day),
            TimePart::Month => f64::from(self.month),
            TimePart::Year => self.year as f64,
            TimePart::Week => f64::from(iso_week(self.year, self.month, self.day)),
        }
    }
}

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
fn iso_week(y: i64, m: u32, d: u32) -> u32 {
    let days = days_from_civil(y, m, d);
    // 1970-01-01 was a Thursday; ISO weekday 1 = Monday.
    let wd = (days + 3).rem_euclid(7) + 1;
    let thursday = days - wd + 4;
    let (ty, _, _) = civil_from_days(thursday);
    let jan1 = days_from_civil(ty, 1, 1);
    ((thursday - jan1) / 7 + 1) as u32
}

/// Date parts of an epoch timestamp (milliseconds when larger than 10^11, else seconds).
#[allow(clippy::cast_possible_truncation)]
fn time_part_of_number(f: f64, part: TimePart) -> Option<f64> {
    if !f.is_finite() {
        return None;
    }
    let secs = if f.abs() > 1e11 { f / 1000.0 } else { f };
    let secs = secs.floor() as i64;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    let dt = DateTime {
        year,
        month,
        day,
        hour: u32::try_from(rem / 3600).ok()?,
        minute: u32::try_from((rem % 3600) / 60).ok()?,
    };
    Some(dt.part(part))
}

/// `YYYY-MM-DD[T ]HH:MM...` (the time zone is ignored, as the spec says).
fn parse_rfc3339_prefix(s: &str) -> Option<DateTime> {
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        let part = b.get(r)?;
        if !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(part).ok()?.parse().ok()
    };
    if b.get(4) != Some(&b'-') || b.get(7) != Some(&b'-') {
        return None;
    }
    let year = i64::from(num(0..4)?);
    let month = num(5..7)?;
    let day = num(8..10)?;
    let (hour, minute) = match b.get(10) {
        Some(b'T') | Some(b't') | Some(b' ') => (num(11..13)?, num(14..16)?),
        _ => (0, 0),
    };
    Some(DateTime {
        year,
        month,
        day,
        hour,
        minute,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn folded_lookups_agree_across_ascii_and_unicode_spellings() {
        // U+212A KELVIN SIGN lower-cases to ASCII `k`: an ASCII key and a non-ASCII spelling
        // of it must hash alike at every length (the hash is fed in 64-byte chunks).
        for len in [0usize, 1, 63, 64, 65, 127, 128, 129, 200] {
            let ascii: String = (0..len)
                .map(|i| if i % 7 == 0 { 'K' } else { 'a' })
                .collect();
            let mut set: HashSet<Folded> = HashSet::new();
            set.insert(Folded(ascii.to_ascii_lowercase()));
            assert!(set.contains(&FoldedRef(&ascii)), "{len}");
            let kelvin = ascii.replace('K', "\u{212a}");
            assert!(set.contains(&FoldedRef(&kelvin)), "{len}");
            let mut set: HashSet<Folded> = HashSet::new();
            set.insert(Folded(kelvin));
            assert!(set.contains(&FoldedRef(&ascii)), "{len}");
            assert!(!set.contains(&FoldedRef(&format!("{ascii}x"))), "{len}");
        }
        let few = PatternSet::build(vec![Pattern::Wild {
            toks: vec![Tok::Lit("Decrypt".into())],
            cased: false,
        }])
        .unwrap();
        assert!(few.matches_str("DECRYPT"));
        assert!(!few.matches_str("Decrypt2"));
    }

    #[test]
    fn wildcard_escapes() {
        assert_eq!(parse_wildcards(r"a\*b"), vec![Tok::Lit("a*b".into())]);
        assert_eq!(
            parse_wildcards(r"a\\*"),
            vec![Tok::Lit(r"a\".into()), Tok::Star]
        );
        assert_eq!(parse_wildcards(r"a\\\*"), vec![Tok::Lit(r"a\*".into())]);
        assert_eq!(parse_wildcards(r"c:\win"), vec![Tok::Lit(r"c:\win".into())]);
        assert_eq!(
            parse_wildcards("x?y"),
            vec![Tok::Lit("x".into()), Tok::Quest, Tok::Lit("y".into())]
        );
    }

    #[test]
    fn folded_hash_agrees_with_folded_equality() {
        use std::hash::BuildHasher;
        let h = hashbrown::DefaultHashBuilder::default();
        let long = "A".repeat(70) + "Key";
        for (a, b) in [
            ("Decrypt", "dECRYPT"),
            ("\u{212a}ey", "key"),
            (long.as_str(), &long.to_lowercase()),
            ("\u{c9}t\u{e9}", "\u{e9}T\u{c9}"),
        ] {
            assert!(eq_fold(a, b), "{a} {b}");
            assert_eq!(
                h.hash_one(Folded(a.to_string())),
                h.hash_one(FoldedRef(b)),
                "{a} {b}"
            );
        }
        let set: HashSet<Folded> = [Folded("\u{212a}ey".into())].into_iter().collect();
        assert!(set.contains(&FoldedRef("KEY")));
        assert!(!set.contains(&FoldedRef("keys")));
    }

    #[test]
    fn dates() {
        // 2024-12-30 is ISO week 1 of 2025.
        assert_eq!(iso_week(2024, 12, 30), 1);
        assert_eq!(iso_week(2021, 1, 3), 53);
        assert_eq!(civil_from_days(days_from_civil(2000, 2, 29)), (2000, 2, 29));
        assert_eq!(
            time_part_of_number(1_700_000_000_000.0, TimePart::Hour),
            Some(22.0)
        );
        let dt = parse_rfc3339_prefix("2019-01-01T13:45:00Z").unwrap();
        assert_eq!(dt.part(TimePart::Minute), 45.0);
    }

    #[test]
    fn cidr() {
        let c = Cidr::parse("10.0.0.0/8").unwrap();
        assert!(c.contains("10.1.2.3".parse().unwrap()));
        assert!(!c.contains("11.1.2.3".parse().unwrap()));
        let c6 = Cidr::parse("2001:db8::/32").unwrap();
        assert!(c6.contains("2001:db8::1".parse().unwrap()));
        assert!(Cidr::parse("10.0.0.0/33").is_none());
        assert!(Cidr::parse("0.0.0.0/0")
            .unwrap()
            .contains("8.8.8.8".parse().unwrap()));
    }
}
