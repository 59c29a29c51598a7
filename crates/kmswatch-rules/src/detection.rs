//! Compiling a Sigma `detection` section (search identifiers, value modifiers, condition) into
//! matchers, and evaluating them against a [`Document`].

use crate::condition::{Cond, CondParser};
use crate::document::{Document, FieldPath, FieldValue};
use crate::pattern::{
    eq_fold, parse_wildcards, plain_text, Cidr, CmpOp, Pattern, PatternSet, TimePart, Tok,
};
use crate::yaml::{Kind, Node};
use base64::Engine as _;
use regex::RegexBuilder;
use std::collections::HashMap;

/// A compile error: the line of the offending node and the reason.
pub(crate) type CompileError = (usize, String);

/// How a rule's field names are resolved.
pub(crate) trait FieldResolver {
    fn resolve(&self, name: &str) -> Result<FieldPath, String>;
}

/// Everything compilation needs besides the YAML.
pub(crate) struct Ctx<'a> {
    pub resolver: &'a dyn FieldResolver,
    pub placeholders: &'a HashMap<String, Vec<String>>,
}

/// A compiled detection: selections and the condition over them.
#[derive(Debug)]
pub(crate) struct Detection {
    pub(crate) selections: Vec<Selection>,
    pub(crate) cond: Cond,
}

/// One search identifier.
#[derive(Debug)]
pub(crate) enum Selection {
    /// A map: every field must match.
    Fields(Vec<FieldMatcher>),
    /// A list of maps / keywords: any may match.
    AnyOf(Vec<Selection>),
    /// Field-less keywords, searched across the document's strings.
    Keywords(Multi),
}

/// A field and how its value must look.
#[derive(Debug)]
pub(crate) struct FieldMatcher {
    pub(crate) path: FieldPath,
    pub(crate) matcher: ValueMatcher,
}

/// OR of patterns, or AND (`all`) of OR-sets.
#[derive(Debug)]
pub(crate) enum Multi {
    Any(Box<PatternSet>),
    All(Vec<PatternSet>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RefMode {
    Eq,
    StartsWith,
    EndsWith,
    Contains,
}

/// How one field's value is tested.
#[derive(Debug)]
pub(crate) enum ValueMatcher {
    Values(Multi),
    Exists(bool),
    FieldRef {
        other: Vec<FieldPath>,
        mode: RefMode,
        cased: bool,
        all: bool,
    },
    Not(Box<ValueMatcher>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mod {
    Contains,
    StartsWith,
    EndsWith,
    All,
    Re,
    ReI,
    ReM,
    ReS,
    Cidr,
    Exists,
    Cmp(CmpOp),
    Neq,
    Base64,
    Base64Offset,
    Utf16Le,
    Utf16Be,
    Utf16,
    Windash,
    Expand,
    FieldRef,
    Cased,
    Time(TimePart),
}

fn parse_mod(s: &str) -> Result<Mod, String> {
    Ok(match s {
        "contains" => Mod::Contains,
        "startswith" => Mod::StartsWith,
        "endswith" => Mod::EndsWith,
        "all" => Mod::All,
        "re" => Mod::Re,
        "i" => Mod::ReI,
        "m" => Mod::ReM,
        "s" => Mod::ReS,
        "cidr" => Mod::Cidr,
        "exists" => Mod::Exists,
        "gt" => Mod::Cmp(CmpOp::Gt),
        "gte" => Mod::Cmp(CmpOp::Gte),
        "lt" => Mod::Cmp(CmpOp::Lt),
        "lte" => Mod::Cmp(CmpOp::Lte),
        "neq" => Mod::Neq,
        "base64" => Mod::Base64,
        "base64offset" => Mod::Base64Offset,
        "utf16le" | "wide" => Mod::Utf16Le,
        "utf16be" => Mod::Utf16Be,
        "utf16" => Mod::Utf16,
        "windash" => Mod::Windash,
        "expand" => Mod::Expand,
        "fieldref" => Mod::FieldRef,
        "cased" => Mod::Cased,
        "minute" => Mod::Time(TimePart::Minute),
        "hour" => Mod::Time(TimePart::Hour),
        "day" => Mod::Time(TimePart::Day),
        "week" => Mod::Time(TimePart::Week),
        "month" => Mod::Time(TimePart::Month),
        "year" => Mod::Time(TimePart::Year),
        other => return Err(format!("unknown value modifier `{other}`")),
    })
}

impl Detection {
    /// Compile a detection map (`detection:` of a rule, or `filter:` of a filter minus `rules`).
    pub(crate) fn compile(
        ctx: &Ctx<'_>,
        node: &Node,
        skip_keys: &[&str],
    ) -> Result<Detection, CompileError> {
        let Kind::Map(entries) = &node.kind else {
            return Err((node.line, "`detection` must be a map".to_string()));
        };
        let mut names = Vec::new();
        let mut selections = Vec::new();
        let mut condition = None;
        for (key, key_line, value) in entries {
            if key == "condition" {
                condition = Some((value, *key_line));
                continue;
            }
            if skip_keys.contains(&key.as_str()) {
                continue;
            }
            if key == "timeframe" {
                return Err((
                    *key_line,
                    "`timeframe` in a detection is Sigma v1 aggregation; write a correlation rule"
                        .to_string(),
                ));
            }
            names.push(key.clone());
            selections.push(compile_selection(ctx, value)?);
        }
        let Some((cond_node, cond_line)) = condition else {
            return Err((node.line, "the detection has no `condition`".to_string()));
        };
        let texts: Vec<String> = match &cond_node.kind {
            Kind::Str(s) => vec![s.clone()],
            Kind::Seq(items) => items
                .iter()
                .map(|n| {
                    n.as_str()
                        .map(str::to_string)
                        .ok_or((n.line, "a condition must be a string".to_string()))
                })
                .collect::<Result<_, _>>()?,
            _ => {
                return Err((
                    cond_line,
                    "a condition must be a string or a list of strings".to_string(),
                ))
            }
        };
        let mut conds = Vec::new();
        for t in &texts {
            conds.push(CondParser::parse(t, &names).map_err(|e| (cond_node.line, e))?);
        }
        let cond = if conds.len() == 1 {
            conds.remove(0)
        } else {
            Cond::Or(conds)
        };
        Ok(Detection { selections, cond })
    }

    /// Whether the document matches.
    pub(crate) fn eval<D: Document + ?Sized>(&self, doc: &D) -> bool {
        eval_cond(&self.cond, &self.selections, doc)
    }
}

fn eval_cond<D: Document + ?Sized>(c: &Cond, sels: &[Selection], doc: &D) -> bool {
    match c {
        Cond::Sel(i) => sels.get(*i).is_some_and(|s| s.eval(doc)),
        Cond::Not(inner) => !eval_cond(inner, sels, doc),
        Cond::And(items) => items.iter().all(|i| eval_cond(i, sels, doc)),
        Cond::Or(items) => items.iter().any(|i| eval_cond(i, sels, doc)),
        Cond::AtLeast(n, idx) => {
            let mut hits = 0usize;
            for i in idx {
                if sels.get(*i).is_some_and(|s| s.eval(doc)) {
                    hits += 1;
                    if hits >= *n {
                        return true;
                    }
                }
            }
            false
        }
    }
}

impl Selection {
    fn eval<D: Document + ?Sized>(&self, doc: &D) -> bool {
        match self {
            Selection::Fields(fields) => fields.iter().all(|f| f.matcher.eval(&f.path, doc)),
            Selection::AnyOf(items) => items.iter().any(|s| s.eval(doc)),
            Selection::Keywords(Multi::Any(set)) => doc.any_string(&mut |s| set.matches_str(s)),
            Selection::Keywords(Multi::All(sets)) => sets
                .iter()
                .all(|set| doc.any_string(&mut |s| set.matches_str(s))),
        }
    }
}

impl ValueMatcher {
    fn eval<D: Document + ?Sized>(&self, path: &FieldPath, doc: &D) -> bool {
        match self {
            ValueMatcher::Values(Multi::Any(set)) => set.matches(doc.get(path)),
            ValueMatcher::Values(Multi::All(sets)) => {
                let v = doc.get(path);
                sets.iter().all(|s| s.matches(v))
            }
            ValueMatcher::Exists(want) => !matches!(doc.get(path), FieldValue::Absent) == *want,
            ValueMatcher::FieldRef {
                other,
                mode,
                cased,
                all,
            } => {
                let v = doc.get(path);
                let test = |o: &FieldPath| field_ref_match(v, doc.get(o), *mode, *cased);
                if *all {
                    other.iter().all(test)
                } else {
                    other.iter().any(test)
                }
            }
            ValueMatcher::Not(inner) => !inner.eval(path, doc),
        }
    }
}

fn scalar_text<R>(v: FieldValue<'_>, f: impl FnOnce(&str) -> R) -> Option<R> {
    match v {
        FieldValue::Str(s) => Some(f(s)),
        FieldValue::Bool(b) => Some(f(if b { "true" } else { "false" })),
        FieldValue::Int(i) => {
            let mut buf = itoa_buf(i);
            let s = buf.as_str();
            Some(f(s))
        }
        _ => None,
    }
}

struct NumBuf {
    buf: [u8; 24],
    start: usize,
}
impl NumBuf {
    fn as_str(&mut self) -> &str {
        self.buf
            .get(self.start..)
            .and_then(|b| std::str::from_utf8(b).ok())
            .unwrap_or("")
    }
}

fn itoa_buf(i: i64) -> NumBuf {
    let mut buf = [0u8; 24];
    let mut pos = buf.len();
    let neg = i < 0;
    let mut n = i.unsigned_abs();
    loop {
        pos -= 1;
        if let Some(slot) = buf.get_mut(pos) {
            *slot = b'0' + (n % 10) as u8;
        }
        n /= 10;
        if n == 0 || pos == 0 {
            break;
        }
    }
    if neg && pos > 0 {
        pos -= 1;
        if let Some(slot) = buf.get_mut(pos) {
            *slot = b'-';
        }
    }
    NumBuf { buf, start: pos }
}

fn field_ref_match(a: FieldValue<'_>, b: FieldValue<'_>, mode: RefMode, cased: bool) -> bool {
    if let FieldValue::List(items) = a {
        return items
            .iter()
            .any(|e| field_ref_match(FieldValue::from_json(e), b, mode, cased));
    }
    if let FieldValue::List(items) = b {
        return items
            .iter()
            .any(|e| field_ref_match(a, FieldValue::from_json(e), mode, cased));
    }
    if let FieldValue::StrList(items) = a {
        return items
            .iter()
            .any(|e| field_ref_match(FieldValue::Str(e), b, mode, cased));
    }
    if let FieldValue::StrList(items) = b {
        return items
            .iter()
            .any(|e| field_ref_match(a, FieldValue::Str(e), mode, cased));
    }
    scalar_text(a, |x| {
        scalar_text(b, |y| text_relation(x, y, mode, cased)).unwrap_or(false)
    })
    .unwrap_or(false)
}

fn text_relation(x: &str, y: &str, mode: RefMode, cased: bool) -> bool {
    if cased {
        return match mode {
            RefMode::Eq => x == y,
            RefMode::StartsWith => x.starts_with(y),
            RefMode::EndsWith => x.ends_with(y),
            RefMode::Contains => x.contains(y),
        };
    }
    if !(x.is_ascii() && y.is_ascii()) {
        // Rare: Unicode case folding needs lower-cased copies.
        let (x, y) = (x.to_lowercase(), y.to_lowercase());
        return text_relation(&x, &y, mode, true);
    }
    let (xb, yb) = (x.as_bytes(), y.as_bytes());
    match mode {
        RefMode::Eq => xb.eq_ignore_ascii_case(yb),
        RefMode::StartsWith => xb
            .get(..yb.len())
            .is_some_and(|h| h.eq_ignore_ascii_case(yb)),
        RefMode::EndsWith => xb
            .len()
            .checked_sub(yb.len())
            .and_then(|s| xb.get(s..))
            .is_some_and(|t| t.eq_ignore_ascii_case(yb)),
        RefMode::Contains => {
            yb.is_empty() || xb.windows(yb.len()).any(|w| w.eq_ignore_ascii_case(yb))
        }
    }
}

fn compile_selection(ctx: &Ctx<'_>, node: &Node) -> Result<Selection, CompileError> {
    match &node.kind {
        Kind::Map(entries) => {
            if entries.is_empty() {
                return Err((
                    node.line,
                    "a search identifier must not be empty".to_string(),
                ));
            }
            let mut fields = Vec::new();
            let mut keywords = Vec::new();
            for (key, key_line, value) in entries {
                let (name, mods) = split_key(key, *key_line)?;
                if name.is_empty() {
                    keywords.push(compile_keywords(ctx, &mods, value, *key_line)?);
                } else {
                    fields.push(compile_field(ctx, name, &mods, value, *key_line)?);
                }
            }
            // Cheap, likely-failing tests first (see `FieldPath::cost`); stable, so equal
            // costs keep the rule's order.
            fields.sort_by_key(|f: &FieldMatcher| f.path.cost());
            if keywords.is_empty() {
                Ok(Selection::Fields(fields))
            } else if fields.is_empty() && keywords.len() == 1 {
                Ok(keywords.remove(0))
            } else {
                Err((
                    node.line,
                    "a search identifier cannot mix field-less keywords and fields".to_string(),
                ))
            }
        }
        Kind::Seq(items) => {
            if items.is_empty() {
                return Err((
                    node.line,
                    "a search identifier must not be empty".to_string(),
                ));
            }
            let mut words = Vec::new();
            let mut maps = Vec::new();
            for item in items {
                match &item.kind {
                    Kind::Map(_) => maps.push(compile_selection(ctx, item)?),
                    Kind::Str(_) | Kind::Int(_) | Kind::Float(_) | Kind::Bool(_) => {
                        words.push(item.clone())
                    }
                    Kind::Null => {
                        return Err((item.line, "`null` is not a keyword".to_string()));
                    }
                    Kind::Seq(_) => {
                        return Err((
                            item.line,
                            "nested lists are not valid in a detection".to_string(),
                        ));
                    }
                }
            }
            if !words.is_empty() {
                let list = Node {
                    line: node.line,
                    kind: Kind::Seq(words),
                };
                maps.push(compile_keywords(ctx, &[], &list, node.line)?);
            }
            Ok(if maps.len() == 1 {
                maps.remove(0)
            } else {
                Selection::AnyOf(maps)
            })
        }
        Kind::Str(_) | Kind::Int(_) | Kind::Float(_) => compile_keywords(ctx, &[], node, node.line),
        _ => Err((
            node.line,
            format!(
                "a search identifier must be a map or a list, not a {}",
                node.type_name()
            ),
        )),
    }
}

fn split_key(key: &str, line: usize) -> Result<(&str, Vec<Mod>), CompileError> {
    let mut parts = key.split('|');
    let name = parts.next().unwrap_or_default();
    let mods = parts
        .map(|m| parse_mod(m).map_err(|e| (line, format!("field `{key}`: {e}"))))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((name, mods))
}

fn values_of(node: &Node) -> Vec<&Node> {
    match &node.kind {
        Kind::Seq(items) => items.iter().collect(),
        _ => vec![node],
    }
}

fn compile_keywords(
    ctx: &Ctx<'_>,
    mods: &[Mod],
    value: &Node,
    line: usize,
) -> Result<Selection, CompileError> {
    let has_type = mods
        .iter()
        .any(|m| matches!(m, Mod::Contains | Mod::StartsWith | Mod::EndsWith | Mod::Re));
    let mut mods = mods.to_vec();
    if !has_type {
        // Keywords search anywhere in a string field, as full-text search does.
        mods.push(Mod::Contains);
    }
    for m in &mods {
        if matches!(
            m,
            Mod::Exists | Mod::FieldRef | Mod::Cidr | Mod::Cmp(_) | Mod::Neq | Mod::Time(_)
        ) {
            return Err((
                line,
                format!("modifier {m:?} needs a field; keywords have none"),
            ));
        }
    }
    let multi = compile_values(ctx, &mods, value, line, "keywords")?;
    Ok(Selection::Keywords(multi))
}

fn compile_field(
    ctx: &Ctx<'_>,
    name: &str,
    mods: &[Mod],
    value: &Node,
    line: usize,
) -> Result<FieldMatcher, CompileError> {
    let path = ctx.resolver.resolve(name).map_err(|e| (line, e))?;
    let neq = mods.contains(&Mod::Neq);
    let rest: Vec<Mod> = mods.iter().copied().filter(|m| *m != Mod::Neq).collect();

    let matcher = if rest.contains(&Mod::Exists) {
        if rest.len() != 1 || neq {
            return Err((
                line,
                format!("field `{name}`: `exists` cannot be combined with other modifiers"),
            ));
        }
        match value.kind {
            Kind::Bool(b) => ValueMatcher::Exists(b),
            _ => {
                return Err((
                    value.line,
                    format!("field `{name}`: `exists` needs true or false"),
                ))
            }
        }
    } else if rest.contains(&Mod::FieldRef) {
        let mut mode = RefMode::Eq;
        for m in &rest {
            match m {
                Mod::FieldRef | Mod::Cased | Mod::All => {}
                Mod::Contains => mode = RefMode::Contains,
                Mod::StartsWith => mode = RefMode::StartsWith,
                Mod::EndsWith => mode = RefMode::EndsWith,
                other => {
                    return Err((
                        line,
                        format!("field `{name}`: `fieldref` cannot be combined with {other:?}"),
                    ))
                }
            }
        }
        let mut other = Vec::new();
        for v in values_of(value) {
            let Some(s) = v.as_str() else {
                return Err((
                    v.line,
                    format!("field `{name}`: `fieldref` needs field names"),
                ));
            };
            other.push(ctx.resolver.resolve(s).map_err(|e| (v.line, e))?);
        }
        ValueMatcher::FieldRef {
            other,
            mode,
            cased: rest.contains(&Mod::Cased),
            all: rest.contains(&Mod::All),
        }
    } else if matches!(value.kind, Kind::Null) {
        if !rest.is_empty() {
            return Err((
                value.line,
                format!("field `{name}`: `null` cannot take modifiers"),
            ));
        }
        ValueMatcher::Values(Multi::Any(Box::new(
            PatternSet::build(vec![Pattern::Null]).map_err(|e| (line, e))?,
        )))
    } else {
        ValueMatcher::Values(compile_values(ctx, &rest, value, line, name)?)
    };
    let matcher = if neq {
        ValueMatcher::Not(Box::new(matcher))
    } else {
        matcher
    };
    Ok(FieldMatcher { path, matcher })
}

/// Intermediate value while applying transformation modifiers.
enum SVal {
    Text(Vec<Tok>),
    Bytes(Vec<u8>),
}

const DASHES: [char; 5] = ['-', '/', '\u{2013}', '\u{2014}', '\u{2015}'];
const MAX_VARIANTS: usize = 4096;

fn compile_values(
    ctx: &Ctx<'_>,
    mods: &[Mod],
    value: &Node,
    line: usize,
    name: &str,
) -> Result<Multi, CompileError> {
    let err = |l: usize, m: String| (l, format!("field `{name}`: {m}"));
    let all = mods.contains(&Mod::All);
    let cased = mods.contains(&Mod::Cased);
    let values = values_of(value);
    if values.is_empty() {
        return Err(err(value.line, "empty value list".to_string()));
    }
    if all && values.len() < 2 {
        return Err(err(
            value.line,
            "`all` needs a list of at least two values (the spec forbids it on a single value)"
                .to_string(),
        ));
    }
    let mut per_value: Vec<Vec<Pattern>> = Vec::new();
    let is_re = mods.contains(&Mod::Re);
    let has_flags = mods
        .iter()
        .any(|m| matches!(m, Mod::ReI | Mod::ReM | Mod::ReS));
    if has_flags && !is_re {
        return Err(err(
            line,
            "`i`, `m` and `s` are sub-modifiers of `re`".to_string(),
        ));
    }
    let time = mods.iter().find_map(|m| match m {
        Mod::Time(t) => Some(*t),
        _ => None,
    });
    let cmp = mods.iter().find_map(|m| match m {
        Mod::Cmp(c) => Some(*c),
        _ => None,
    });

    for v in &values {
        if matches!(v.kind, Kind::Null) {
            return Err(err(
                v.line,
                "`null` cannot be part of a list of values".to_string(),
            ));
        }
        if matches!(v.kind, Kind::Map(_) | Kind::Seq(_)) {
            return Err(err(
                v.line,
                format!("a value must be a scalar, not a {}", v.type_name()),
            ));
        }
        let pats = if is_re {
            for m in mods {
                if !matches!(
                    m,
                    Mod::Re | Mod::ReI | Mod::ReM | Mod::ReS | Mod::All | Mod::Cased
                ) {
                    return Err(err(line, format!("`re` cannot be combined with {m:?}")));
                }
            }
            let Some(text) = v.scalar_text() else {
                return Err(err(v.line, "`re` needs a string".to_string()));
            };
            let re = RegexBuilder::new(&text)
                .case_insensitive(mods.contains(&Mod::ReI))
                .multi_line(mods.contains(&Mod::ReM))
                .dot_matches_new_line(mods.contains(&Mod::ReS))
                .size_limit(1 << 22)
                .build()
                .map_err(|e| err(v.line, format!("bad regular expression: {e}")))?;
            vec![Pattern::Regex(re)]
        } else if mods.contains(&Mod::Cidr) {
            for m in mods {
                if !matches!(m, Mod::Cidr | Mod::All) {
                    return Err(err(line, format!("`cidr` cannot be combined with {m:?}")));
                }
            }
            let c = v
                .as_str()
                .and_then(Cidr::parse)
                .ok_or_else(|| err(v.line, format!("bad CIDR network {:?}", v.scalar_text())))?;
            vec![Pattern::Cidr(c)]
        } else if time.is_some() || cmp.is_some() {
            for m in mods {
                if !matches!(m, Mod::Time(_) | Mod::Cmp(_) | Mod::All) {
                    return Err(err(
                        line,
                        format!("numeric and time modifiers cannot be combined with {m:?}"),
                    ));
                }
            }
            if mods
                .iter()
                .filter(|m| matches!(m, Mod::Time(_) | Mod::Cmp(_)))
                .count()
                > usize::from(time.is_some()) + 1
            {
                return Err(err(
                    line,
                    "at most one time part and one comparison".to_string(),
                ));
            }
            #[allow(clippy::cast_precision_loss)]
            let n = match &v.kind {
                Kind::Int(i) => *i as f64,
                Kind::Float(f) => *f,
                Kind::Str(s) => s
                    .trim()
                    .parse::<f64>()
                    .map_err(|_| err(v.line, format!("{s:?} is not a number")))?,
                _ => return Err(err(v.line, "a numeric modifier needs a number".to_string())),
            };
            let op = cmp.unwrap_or(CmpOp::Eq);
            match time {
                Some(t) => vec![Pattern::Time(t, op, n)],
                None => vec![Pattern::Num(op, n)],
            }
        } else {
            string_patterns(ctx, mods, v, cased).map_err(|(l, m)| err(l, m))?
        };
        per_value.push(pats);
    }

    let build = |p: Vec<Pattern>| PatternSet::build(p).map_err(|e| err(line, e));
    if all {
        Ok(Multi::All(
            per_value.into_iter().map(build).collect::<Result<_, _>>()?,
        ))
    } else {
        Ok(Multi::Any(Box::new(build(
            per_value.into_iter().flatten().collect(),
        )?)))
    }
}

fn string_patterns(
    ctx: &Ctx<'_>,
    mods: &[Mod],
    v: &Node,
    cased: bool,
) -> Result<Vec<Pattern>, CompileError> {
    let line = v.line;
    let raw: Vec<SVal> = match &v.kind {
        Kind::Str(s) if mods.contains(&Mod::Expand) => expand(ctx, s)
            .map_err(|e| (line, e))?
            .iter()
            .map(|s| SVal::Text(parse_wildcards(s)))
            .collect(),
        Kind::Str(s) => vec![SVal::Text(parse_wildcards(s))],
        _ => match v.scalar_text() {
            Some(t) => vec![SVal::Text(vec![Tok::Lit(t)])],
            None => return Err((line, "a value must be a scalar".to_string())),
        },
    };
    let mut vals = raw;
    for m in mods {
        let mut next = Vec::new();
        for val in vals {
            match (m, val) {
                (Mod::All | Mod::Cased | Mod::Expand, val) => next.push(val),
                (Mod::Contains, SVal::Text(t)) => next.push(SVal::Text(wrap(t, true, true))),
                (Mod::StartsWith, SVal::Text(t)) => next.push(SVal::Text(wrap(t, false, true))),
                (Mod::EndsWith, SVal::Text(t)) => next.push(SVal::Text(wrap(t, true, false))),
                (Mod::Windash, SVal::Text(t)) => {
                    for variant in windash(&t).map_err(|e| (line, e))? {
                        next.push(SVal::Text(variant));
                    }
                }
                (Mod::Utf16Le | Mod::Utf16Be | Mod::Utf16, SVal::Text(t)) => {
                    let s = plain_text(&t).ok_or((
                        line,
                        "UTF-16 encoding of a value with wildcards is not possible".to_string(),
                    ))?;
                    let units = s.encode_utf16();
                    let mut bytes = Vec::new();
                    if *m == Mod::Utf16 {
                        bytes.extend_from_slice(&[0xff, 0xfe]);
                    }
                    for u in units {
                        if *m == Mod::Utf16Be {
                            bytes.extend_from_slice(&u.to_be_bytes());
                        } else {
                            bytes.extend_from_slice(&u.to_le_bytes());
                        }
                    }
                    next.push(SVal::Bytes(bytes));
                }
                (Mod::Base64 | Mod::Base64Offset, val) => {
                    let bytes = match val {
                        SVal::Bytes(b) => b,
                        SVal::Text(t) => plain_text(&t)
                            .ok_or((
                                line,
                                "base64 encoding of a value with wildcards is not possible (put `contains` after `base64offset`)"
                                    .to_string(),
                            ))?
                            .into_bytes(),
                    };
                    if *m == Mod::Base64 {
                        let enc = base64::engine::general_purpose::STANDARD.encode(&bytes);
                        next.push(SVal::Text(vec![Tok::Lit(enc)]));
                    } else {
                        for enc in base64_offsets(&bytes) {
                            next.push(SVal::Text(vec![Tok::Lit(enc)]));
                        }
                    }
                }
                (m, SVal::Bytes(_)) => {
                    return Err((
                        line,
                        format!("{m:?} cannot apply to UTF-16 bytes; follow utf16le/utf16be/utf16/wide with base64 or base64offset"),
                    ))
                }
                (m, SVal::Text(_)) => {
                    return Err((line, format!("modifier {m:?} cannot be combined with string modifiers")))
                }
            }
        }
        vals = next;
    }
    vals.into_iter()
        .map(|v| match v {
            SVal::Text(toks) => Ok(Pattern::Wild { toks, cased }),
            SVal::Bytes(_) => Err((
                line,
                "UTF-16 bytes cannot be matched against JSON text; add base64 or base64offset after utf16le/utf16be/utf16/wide"
                    .to_string(),
            )),
        })
        .collect()
}

fn wrap(mut t: Vec<Tok>, star_before: bool, star_after: bool) -> Vec<Tok> {
    if star_before && t.first() != Some(&Tok::Star) {
        t.insert(0, Tok::Star);
    }
    if star_after && t.last() != Some(&Tok::Star) {
        t.push(Tok::Star);
    }
    t
}

fn windash(t: &[Tok]) -> Result<Vec<Vec<Tok>>, String> {
    let mut out: Vec<Vec<Tok>> = vec![Vec::new()];
    for tok in t {
        match tok {
            Tok::Lit(s) => {
                let mut lits: Vec<String> = vec![String::new()];
                for c in s.chars() {
                    if DASHES.contains(&c) {
                        let mut n = Vec::with_capacity(lits.len() * DASHES.len());
                        for l in &lits {
                            for d in DASHES {
                                let mut x = l.clone();
                                x.push(d);
                                n.push(x);
                            }
                        }
                        lits = n;
                        if lits.len() * out.len() > MAX_VARIANTS {
                            return Err(format!(
                                "`windash` would create more than {MAX_VARIANTS} variants"
                            ));
                        }
                    } else {
                        for l in &mut lits {
                            l.push(c);
                        }
                    }
                }
                let mut n = Vec::with_capacity(out.len() * lits.len());
                for prefix in &out {
                    for l in &lits {
                        let mut p = prefix.clone();
                        p.push(Tok::Lit(l.clone()));
                        n.push(p);
                    }
                }
                out = n;
            }
            other => {
                for p in &mut out {
                    p.push(other.clone());
                }
            }
        }
    }
    Ok(out)
}

/// The three base64 forms of `value` at byte offsets 0, 1 and 2 inside a larger string, with
/// the edge characters that depend on the surrounding bytes cut off.
fn base64_offsets(value: &[u8]) -> Vec<String> {
    const START: [usize; 3] = [0, 2, 3];
    let mut out = Vec::new();
    for i in 0..3usize {
        let mut buf = vec![b' '; i];
        buf.extend_from_slice(value);
        let enc = base64::engine::general_purpose::STANDARD.encode(&buf);
        let start = START.get(i).copied().unwrap_or(0);
        let cut = match (value.len() + i) % 3 {
            0 => 0,
            1 => 3,
            _ => 2,
        };
        let end = enc.len().saturating_sub(cut);
        if let Some(s) = enc.get(start..end) {
            if !s.is_empty() {
                out.push(s.to_string());
            }
        }
    }
    out
}

/// Replace `%name%` placeholders with their configured values (all combinations).
fn expand(ctx: &Ctx<'_>, s: &str) -> Result<Vec<String>, String> {
    let mut outs = vec![String::new()];
    let mut rest = s;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix("\\%") {
            for o in &mut outs {
                o.push('%');
            }
            rest = after;
            continue;
        }
        if let Some(after) = rest.strip_prefix('%') {
            let Some(end) = after.find('%') else {
                for o in &mut outs {
                    o.push('%');
                }
                rest = after;
                continue;
            };
            let name = after.get(..end).unwrap_or_default();
            let values = ctx
                .placeholders
                .iter()
                .find(|(k, _)| eq_fold(k, name))
                .map(|(_, v)| v)
                .ok_or_else(|| {
                    format!(
                        "placeholder `%{name}%` {MISSING_PLACEHOLDER} (LoadOptions::placeholders)"
                    )
                })?;
            if values.is_empty() {
                return Err(format!("placeholder `%{name}%` has an empty value list"));
            }
            let mut n = Vec::new();
            for o in &outs {
                for v in values {
                    n.push(format!("{o}{v}"));
                }
            }
            if n.len() > MAX_VARIANTS {
                return Err("placeholder expansion creates too many values".to_string());
            }
            outs = n;
            rest = after.get(end + 1..).unwrap_or_default();
            continue;
        }
        let mut chars = rest.chars();
        if let Some(c) = chars.next() {
            for o in &mut outs {
                o.push(c);
            }
        }
        rest = chars.as_str();
    }
    Ok(outs)
}

/// The words of the load error for an `|expand` placeholder without configured values (the
/// loader classifies it as [`crate::LoadErrorKind::MissingPlaceholder`]).
pub(crate) const MISSING_PLACEHOLDER: &str = "has no configured values";

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn base64offset_matches_pysigma_forms() {
        // Known outputs for "/c" style checks: encode "test" at three offsets.
        let v = base64_offsets(b"test");
        assert_eq!(v, vec!["dGVzd", "Rlc3", "0ZXN0"]);
        let full = base64::engine::general_purpose::STANDARD.encode(b"xxtestyy");
        assert!(v.iter().any(|p| full.contains(p.as_str())));
    }

    #[test]
    fn windash_variants() {
        let v = windash(&[Tok::Lit("-a /b".into())]).unwrap();
        assert_eq!(v.len(), 25);
    }
}
