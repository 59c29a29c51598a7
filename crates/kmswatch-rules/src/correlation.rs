//! Sigma v2.1 correlation rules: loading, reference resolution and field resolution.
//!
//! A correlation document (`correlation:` section) names the rules it correlates by `id` or
//! `name` (detection rules or other correlations, in any loaded file), a `group-by`, a
//! `timespan` and a `condition`. References are resolved after every file is read, so order
//! does not matter; an unknown reference, a cycle, an unknown field or a missing required
//! attribute is a load error at the offending `file:line`. The windows themselves are run by
//! [`crate::Engine`].

use crate::document::FieldPath;
use crate::error::{LoadError, LoadErrorKind, LoadReport};
use crate::ruleset::{resolver_for, CompiledRule, Loader, LogSource, RuleId, RuleInfo};
use crate::yaml::{Kind, Node};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Index of a correlation rule in its [`crate::RuleSet`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CorrelationId(pub u32);

/// What a correlation refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RuleRef {
    /// A detection rule.
    Rule(RuleId),
    /// Another correlation (chaining).
    Correlation(CorrelationId),
}

/// The correlation types kmswatch runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CorrelationType {
    /// `event_count`: the number of events in the window.
    EventCount,
    /// `value_count`: the number of distinct values of `condition.field` in the window.
    ValueCount,
    /// `temporal`: the number of distinct referenced rules seen in the window (all of them
    /// when there is no condition).
    Temporal,
    /// `temporal_ordered`: like `temporal`, and the rules must first appear in the listed order.
    TemporalOrdered,
    /// `value_sum`: the sum of the numeric field `condition.field` in the window.
    ValueSum,
}

impl CorrelationType {
    /// The Sigma name.
    pub fn as_str(self) -> &'static str {
        match self {
            CorrelationType::EventCount => "event_count",
            CorrelationType::ValueCount => "value_count",
            CorrelationType::Temporal => "temporal",
            CorrelationType::TemporalOrdered => "temporal_ordered",
            CorrelationType::ValueSum => "value_sum",
        }
    }
}

/// A correlation `condition`: every bound present must hold (`gt: 100, lte: 200` is a range).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CountCondition {
    /// `gt`
    pub gt: Option<f64>,
    /// `gte`
    pub gte: Option<f64>,
    /// `lt`
    pub lt: Option<f64>,
    /// `lte`
    pub lte: Option<f64>,
    /// `eq`
    pub eq: Option<f64>,
    /// `neq`
    pub neq: Option<f64>,
}

impl CountCondition {
    /// Whether `v` satisfies every bound.
    pub fn holds(&self, v: f64) -> bool {
        self.gt.is_none_or(|x| v > x)
            && self.gte.is_none_or(|x| v >= x)
            && self.lt.is_none_or(|x| v < x)
            && self.lte.is_none_or(|x| v <= x)
            && self.eq.is_none_or(|x| v == x)
            && self.neq.is_none_or(|x| v != x)
    }

    /// `gte 10`, `gt 100 and lte 200`: for messages.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        for (name, v) in [
            ("gt", self.gt),
            ("gte", self.gte),
            ("lt", self.lt),
            ("lte", self.lte),
            ("eq", self.eq),
            ("neq", self.neq),
        ] {
            if let Some(v) = v {
                parts.push(format!("{name} {v}"));
            }
        }
        parts.join(" and ")
    }
}

/// Resolved fields for one referenced rule.
#[derive(Debug, Clone)]
pub(crate) enum RefFields {
    /// A detection rule: paths into its document (normalized event or raw record).
    Rule {
        group: Vec<FieldPath>,
        value: Vec<FieldPath>,
        raw: bool,
    },
    /// A correlation: names into its group key.
    Correlation { group: Vec<String> },
}

/// A loaded correlation rule.
#[derive(Debug, Clone)]
pub struct Correlation {
    /// Title, id, name, level, status, description, tags, file and line (no logsource).
    pub info: RuleInfo,
    /// The type.
    pub kind: CorrelationType,
    /// The referenced rules, in the order written.
    pub rules: Vec<RuleRef>,
    /// The `group-by` names (aliases or field names), as written.
    pub group_by: Vec<String>,
    /// `timespan`, seconds.
    pub timespan_secs: i64,
    /// `condition` (for temporal types: `None` means "all referenced rules").
    pub condition: Option<CountCondition>,
    /// `condition.field` (value_count, value_sum): one or more fields, combined.
    pub fields: Vec<String>,
    /// `aliases`: alias -> (rule name -> field).
    pub aliases: BTreeMap<String, BTreeMap<String, String>>,
    /// `generate`: whether the referenced rules also emit their own findings (default false).
    pub generate: bool,
    pub(crate) ref_fields: Vec<RefFields>,
}

/// A correlation document read but not yet resolved.
#[derive(Debug)]
pub(crate) struct PendingCorrelation {
    info: RuleInfo,
    kind: CorrelationType,
    refs: Vec<(String, usize)>,
    group_by: Vec<String>,
    timespan_secs: i64,
    condition: Option<CountCondition>,
    fields: Vec<String>,
    aliases: BTreeMap<String, BTreeMap<String, String>>,
    aliases_line: usize,
    generate: bool,
}

/// Parse a Sigma `timespan` (`30s`, `10m`, `1h`, `7d`) into seconds.
pub fn parse_timespan(s: &str) -> Option<i64> {
    let s = s.trim();
    let unit = s.chars().last()?;
    let n: i64 = s.get(..s.len() - unit.len_utf8())?.trim().parse().ok()?;
    let mult = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        'w' => 7 * 86_400,
        _ => return None,
    };
    (n > 0).then(|| n.checked_mul(mult)).flatten()
}

fn str_list(n: &Node) -> Option<Vec<String>> {
    match &n.kind {
        Kind::Seq(items) => items.iter().map(Node::scalar_text).collect(),
        _ => n.scalar_text().map(|s| vec![s]),
    }
}

fn number(n: &Node) -> Option<f64> {
    match &n.kind {
        Kind::Int(i) => Some(*i as f64),
        Kind::Float(f) => Some(*f),
        Kind::Str(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn meta_list(doc: &Node, key: &str) -> Vec<String> {
    doc.get(key).and_then(str_list).unwrap_or_default()
}

impl Loader {
    pub(crate) fn load_correlation(
        &mut self,
        file: &Path,
        doc: &Node,
        corr: &Node,
        title: Option<String>,
        id: Option<String>,
        display: Option<String>,
    ) {
        let fail = |this: &mut Loader, line: usize, reason: String| {
            this.error(file, line, display.clone(), LoadErrorKind::Invalid, reason);
        };
        let Some(title) = title else {
            fail(self, doc.line, "missing `title`".to_string());
            return;
        };
        let Kind::Map(entries) = &corr.kind else {
            fail(self, corr.line, "`correlation` must be a map".to_string());
            return;
        };
        let mut kind = None;
        let mut refs = Vec::new();
        let mut group_by = Vec::new();
        let mut timespan = None;
        let mut condition = None;
        let mut fields = Vec::new();
        let mut aliases = BTreeMap::new();
        let mut aliases_line = corr.line;
        let mut generate = doc.get("generate");
        for (key, line, v) in entries {
            match key.as_str() {
                "type" => {
                    kind = match v.as_str() {
                        Some("event_count") => Some(CorrelationType::EventCount),
                        Some("value_count") => Some(CorrelationType::ValueCount),
                        Some("temporal") => Some(CorrelationType::Temporal),
                        Some("temporal_ordered") => Some(CorrelationType::TemporalOrdered),
                        Some("value_sum") => Some(CorrelationType::ValueSum),
                        Some(t @ ("value_avg" | "value_percentile")) => {
                            self.error(
                                file,
                                v.line,
                                display.clone(),
                                LoadErrorKind::Unsupported,
                                format!("correlation type `{t}` is not supported (event_count, value_count, temporal, temporal_ordered, value_sum are)"),
                            );
                            return;
                        }
                        _ => {
                            fail(self, v.line, format!("unknown correlation type {:?} (event_count, value_count, temporal, temporal_ordered, value_sum)", v.scalar_text().unwrap_or_default()));
                            return;
                        }
                    }
                }
                "rules" => match &v.kind {
                    Kind::Seq(items) => {
                        for item in items {
                            match item.scalar_text() {
                                Some(s) => refs.push((s, item.line)),
                                None => {
                                    fail(
                                        self,
                                        item.line,
                                        "`rules` entries must be rule ids or names".to_string(),
                                    );
                                    return;
                                }
                            }
                        }
                    }
                    _ => match v.scalar_text() {
                        Some(s) => refs.push((s, v.line)),
                        None => {
                            fail(
                                self,
                                v.line,
                                "`rules` must be a list of rule ids or names".to_string(),
                            );
                            return;
                        }
                    },
                },
                "group-by" => match str_list(v) {
                    Some(g) => group_by = g,
                    None => {
                        fail(
                            self,
                            v.line,
                            "`group-by` must be a list of field names".to_string(),
                        );
                        return;
                    }
                },
                "timespan" => match v.scalar_text().as_deref().and_then(parse_timespan) {
                    Some(t) => timespan = Some(t),
                    None => {
                        fail(self, v.line, format!("bad `timespan` {:?}: write a positive number and s, m, h or d (`10m`)", v.scalar_text().unwrap_or_default()));
                        return;
                    }
                },
                "condition" => {
                    let Kind::Map(items) = &v.kind else {
                        fail(
                            self,
                            v.line,
                            "`condition` must be a map such as `gte: 10`".to_string(),
                        );
                        return;
                    };
                    let mut c = CountCondition::default();
                    for (op, oline, val) in items {
                        if op == "field" {
                            match str_list(val) {
                                Some(f) if !f.is_empty() => fields = f,
                                _ => {
                                    fail(
                                        self,
                                        *oline,
                                        "`condition.field` must name a field".to_string(),
                                    );
                                    return;
                                }
                            }
                            continue;
                        }
                        let Some(n) = number(val) else {
                            fail(self, *oline, format!("`condition.{op}` must be a number"));
                            return;
                        };
                        let slot = match op.as_str() {
                            "gt" => &mut c.gt,
                            "gte" => &mut c.gte,
                            "lt" => &mut c.lt,
                            "lte" => &mut c.lte,
                            "eq" => &mut c.eq,
                            "neq" => &mut c.neq,
                            _ => {
                                fail(self, *oline, format!("unknown condition operator `{op}` (gt, gte, lt, lte, eq, neq, field)"));
                                return;
                            }
                        };
                        *slot = Some(n);
                    }
                    if c != CountCondition::default() {
                        condition = Some(c);
                    }
                }
                "aliases" => {
                    aliases_line = *line;
                    let Kind::Map(items) = &v.kind else {
                        fail(
                            self,
                            v.line,
                            "`aliases` must map alias -> rule name -> field".to_string(),
                        );
                        return;
                    };
                    for (alias, aline, m) in items {
                        let Kind::Map(per_rule) = &m.kind else {
                            fail(
                                self,
                                *aline,
                                format!("alias `{alias}` must map rule names to fields"),
                            );
                            return;
                        };
                        let mut map = BTreeMap::new();
                        for (rule, rline, field) in per_rule {
                            let Some(field) = field.scalar_text() else {
                                fail(
                                    self,
                                    *rline,
                                    format!(
                                        "alias `{alias}`: the field for `{rule}` must be a string"
                                    ),
                                );
                                return;
                            };
                            map.insert(rule.clone(), field);
                        }
                        aliases.insert(alias.clone(), map);
                    }
                }
                "generate" => generate = Some(v),
                other => {
                    fail(self, *line, format!("unknown correlation attribute `{other}` (type, rules, group-by, timespan, condition, aliases, generate)"));
                    return;
                }
            }
        }
        let generate = match generate.map(|g| &g.kind) {
            None => false,
            Some(Kind::Bool(b)) => *b,
            Some(_) => {
                fail(
                    self,
                    corr.line,
                    "`generate` must be true or false".to_string(),
                );
                return;
            }
        };
        let Some(kind) = kind else {
            fail(self, corr.line, "missing `correlation.type`".to_string());
            return;
        };
        if refs.is_empty() {
            fail(self, corr.line, "missing `correlation.rules`".to_string());
            return;
        }
        let Some(timespan_secs) = timespan else {
            fail(
                self,
                corr.line,
                "missing `correlation.timespan`".to_string(),
            );
            return;
        };
        match kind {
            CorrelationType::EventCount if condition.is_none() => {
                fail(
                    self,
                    corr.line,
                    "event_count needs a `condition` (`gte: 10`)".to_string(),
                );
                return;
            }
            CorrelationType::ValueCount | CorrelationType::ValueSum
                if fields.is_empty() || condition.is_none() =>
            {
                fail(
                    self,
                    corr.line,
                    format!(
                        "{} needs a `condition` with `field` and a bound",
                        kind.as_str()
                    ),
                );
                return;
            }
            _ => {}
        }
        let str_field = |k: &str| doc.get(k).and_then(Node::scalar_text);
        let info = RuleInfo {
            id,
            name: str_field("name"),
            title,
            level: str_field("level"),
            status: str_field("status"),
            description: str_field("description"),
            tags: meta_list(doc, "tags"),
            falsepositives: meta_list(doc, "falsepositives"),
            logsource: LogSource::default(),
            target: None,
            file: file.to_path_buf(),
            line: doc.line,
            filters: Vec::new(),
        };
        self.correlations.push(PendingCorrelation {
            info,
            kind,
            refs,
            group_by,
            timespan_secs,
            condition,
            fields,
            aliases,
            aliases_line,
            generate,
        });
    }
}

fn err(file: &Path, line: usize, rule: &RuleInfo, reason: String) -> LoadError {
    LoadError {
        file: PathBuf::from(file),
        line,
        rule: Some(rule.display_id().to_string()),
        kind: LoadErrorKind::Invalid,
        reason,
    }
}

/// Resolve every pending correlation's references and fields. Correlations with errors are
/// dropped (and the errors reported); so are correlations referring to a dropped one.
pub(crate) fn resolve(
    rules: &[CompiledRule],
    pending: Vec<PendingCorrelation>,
    report: &mut LoadReport,
) -> Vec<Correlation> {
    let n = pending.len();
    let find_rule = |r: &str| {
        rules
            .iter()
            .position(|c| c.info.id.as_deref() == Some(r) || c.info.name.as_deref() == Some(r))
    };
    let find_corr = |r: &str| {
        pending
            .iter()
            .position(|c| c.info.id.as_deref() == Some(r) || c.info.name.as_deref() == Some(r))
    };
    // Pass 1: references.
    let mut refs: Refs = Vec::with_capacity(n);
    for p in &pending {
        let mut out = Vec::new();
        let mut ok = true;
        for (r, line) in &p.refs {
            if let Some(i) = find_rule(r) {
                out.push((Ok(i), r.clone()));
            } else if let Some(i) = find_corr(r) {
                out.push((Err(i), r.clone()));
            } else {
                report.errors.push(err(
                    &p.info.file,
                    *line,
                    &p.info,
                    format!("correlation refers to `{r}`, which is no loaded rule's id or name"),
                ));
                ok = false;
            }
        }
        refs.push(ok.then_some(out));
    }
    // Pass 2: cycles and broken dependencies (iterate to a fixed point).
    let mut valid: Vec<bool> = refs.iter().map(Option::is_some).collect();
    for (i, p) in pending.iter().enumerate() {
        if valid.get(i) == Some(&true) && reaches(&refs, i, i, &mut vec![false; n]) {
            report.errors.push(err(
                &p.info.file,
                p.info.line,
                &p.info,
                "correlation chain refers back to itself (a cycle)".to_string(),
            ));
            if let Some(v) = valid.get_mut(i) {
                *v = false;
            }
        }
    }
    loop {
        let mut changed = false;
        for i in 0..n {
            if valid.get(i) != Some(&true) {
                continue;
            }
            let broken = refs.get(i).and_then(Option::as_ref).is_some_and(|rs| {
                rs.iter()
                    .any(|(r, _)| matches!(r, Err(j) if valid.get(*j) != Some(&true)))
            });
            if broken {
                if let (Some(v), Some(p)) = (valid.get_mut(i), pending.get(i)) {
                    *v = false;
                    report.errors.push(err(
                        &p.info.file,
                        p.info.line,
                        &p.info,
                        "correlation refers to a correlation that failed to load".to_string(),
                    ));
                }
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    // Pass 3: fields; final ids are the positions among valid correlations.
    let mut new_id = vec![None; n];
    let mut next = 0u32;
    for (i, v) in valid.iter().enumerate() {
        if *v {
            if let Some(slot) = new_id.get_mut(i) {
                *slot = Some(next);
            }
            next += 1;
        }
    }
    let mut out: Vec<Correlation> = Vec::new();
    let mut failed_fields = vec![false; n];
    for (i, p) in pending.iter().enumerate() {
        if valid.get(i) != Some(&true) {
            continue;
        }
        let Some(Some(rs)) = refs.get(i) else {
            continue;
        };
        let mut ref_ids = Vec::new();
        let mut ref_fields = Vec::new();
        let mut problem = None;
        for alias_rules in p.aliases.values() {
            for rule_name in alias_rules.keys() {
                if !rs.iter().any(|(_, name)| name == rule_name) {
                    problem = Some((p.aliases_line, format!("alias names rule `{rule_name}`, which this correlation does not refer to")));
                }
            }
        }
        for (r, written) in rs {
            // The name aliases are keyed by: the reference as written, or the rule's name/id.
            let names: Vec<String> = match r {
                Ok(ri) => rules
                    .get(*ri)
                    .map(|c| {
                        [
                            Some(written.clone()),
                            c.info.name.clone(),
                            c.info.id.clone(),
                        ]
                        .into_iter()
                        .flatten()
                        .collect()
                    })
                    .unwrap_or_default(),
                Err(ci) => pending
                    .get(*ci)
                    .map(|c| {
                        [
                            Some(written.clone()),
                            c.info.name.clone(),
                            c.info.id.clone(),
                        ]
                        .into_iter()
                        .flatten()
                        .collect()
                    })
                    .unwrap_or_default(),
            };
            let field_for = |g: &str| -> String {
                p.aliases
                    .get(g)
                    .and_then(|m| names.iter().find_map(|n| m.get(n)))
                    .cloned()
                    .unwrap_or_else(|| g.to_string())
            };
            match r {
                Ok(ri) => {
                    let Some(rule) = rules.get(*ri) else { continue };
                    let resolver = resolver_for(rule.info.target);
                    let mut group = Vec::new();
                    let mut value = Vec::new();
                    for g in &p.group_by {
                        match resolver.resolve(&field_for(g)) {
                            Ok(f) => group.push(f),
                            Err(e) => {
                                problem = Some((
                                    p.info.line,
                                    format!("group-by `{g}` for rule `{written}`: {e}"),
                                ))
                            }
                        }
                    }
                    for f in &p.fields {
                        match resolver.resolve(&field_for(f)) {
                            Ok(f) => value.push(f),
                            Err(e) => {
                                problem = Some((
                                    p.info.line,
                                    format!("condition field `{f}` for rule `{written}`: {e}"),
                                ))
                            }
                        }
                    }
                    let raw = matches!(rule.info.target, Some(crate::ruleset::Target::Raw(_)));
                    ref_ids.push(RuleRef::Rule(RuleId(
                        u32::try_from(*ri).unwrap_or(u32::MAX),
                    )));
                    ref_fields.push(RefFields::Rule { group, value, raw });
                }
                Err(ci) => {
                    let Some(inner) = pending.get(*ci) else {
                        continue;
                    };
                    let mut group = Vec::new();
                    for g in &p.group_by {
                        let f = field_for(g);
                        if inner.group_by.contains(&f) {
                            group.push(f);
                        } else {
                            problem = Some((p.info.line, format!("group-by `{g}`: chained correlation `{written}` groups by {:?}, so only those names can be used", inner.group_by)));
                        }
                    }
                    if !p.fields.is_empty() {
                        problem = Some((p.info.line, format!("condition field over chained correlation `{written}` is not supported")));
                    }
                    let Some(Some(id)) = new_id.get(*ci) else {
                        continue;
                    };
                    ref_ids.push(RuleRef::Correlation(CorrelationId(*id)));
                    ref_fields.push(RefFields::Correlation { group });
                }
            }
        }
        if let Some((line, reason)) = problem {
            report.errors.push(err(&p.info.file, line, &p.info, reason));
            if let Some(f) = failed_fields.get_mut(i) {
                *f = true;
            }
        }
        out.push(Correlation {
            info: p.info.clone(),
            kind: p.kind,
            rules: ref_ids,
            group_by: p.group_by.clone(),
            timespan_secs: p.timespan_secs,
            condition: p.condition,
            fields: p.fields.clone(),
            aliases: p.aliases.clone(),
            generate: p.generate,
            ref_fields,
        });
    }
    if failed_fields.iter().any(|f| *f) {
        // With a field error the whole load fails unless skip_invalid; in that case keep the
        // others only when they do not depend on a failed one (simplest: drop dependents too).
        let failed: Vec<u32> = failed_fields
            .iter()
            .enumerate()
            .filter(|(_, f)| **f)
            .filter_map(|(i, _)| new_id.get(i).copied().flatten())
            .collect();
        let mut drop: Vec<bool> = (0..out.len())
            .map(|i| failed.contains(&u32::try_from(i).unwrap_or(u32::MAX)))
            .collect();
        loop {
            let mut changed = false;
            for (i, c) in out.iter().enumerate() {
                if drop.get(i) == Some(&true) {
                    continue;
                }
                if c.rules.iter().any(|r| matches!(r, RuleRef::Correlation(id) if drop.get(id.0 as usize) == Some(&true))) {
                    if let Some(d) = drop.get_mut(i) {
                        *d = true;
                    }
                    changed = true;
                }
            }
            if !changed {
                break;
            }
        }
        out = renumber(out, &drop);
    }
    out
}

/// Remove the dropped correlations and renumber the references of the others.
fn renumber(list: Vec<Correlation>, drop: &[bool]) -> Vec<Correlation> {
    let mut map = Vec::with_capacity(list.len());
    let mut next = 0u32;
    for d in drop {
        map.push(if *d {
            None
        } else {
            next += 1;
            Some(next - 1)
        });
    }
    list.into_iter()
        .enumerate()
        .filter(|(i, _)| drop.get(*i) != Some(&true))
        .map(|(_, mut c)| {
            for r in &mut c.rules {
                if let RuleRef::Correlation(id) = r {
                    if let Some(Some(n)) = map.get(id.0 as usize) {
                        *id = CorrelationId(*n);
                    }
                }
            }
            c
        })
        .collect()
}

type Refs = Vec<Option<Vec<(Result<usize, usize>, String)>>>;

fn reaches(refs: &Refs, from: usize, target: usize, seen: &mut Vec<bool>) -> bool {
    let Some(Some(rs)) = refs.get(from) else {
        return false;
    };
    for (r, _) in rs {
        if let Err(j) = r {
            if *j == target {
                return true;
            }
            if seen.get(*j) == Some(&false) {
                if let Some(s) = seen.get_mut(*j) {
                    *s = true;
                }
                if reaches(refs, *j, target, seen) {
                    return true;
                }
            }
        }
    }
    false
}
