//! The detection engine: enrichment, single-event findings, suppression and event-time
//! correlation windows, behind one small API ([`Engine`]).
//!
//! ## Event time and watermarks
//! Each source (a name the caller chooses: a file, an SQS queue, a Kafka partition) has a
//! watermark = the greatest event `time` seen from it − its allowed lateness
//! ([`EngineConfig::lateness_secs`], default 20 minutes, per source in
//! [`EngineConfig::source_lateness_secs`]). The engine's watermark is the smallest of the
//! sources' (so an idle source holds windows open; [`Engine::advance`] moves it on).
//! An event whose time is below its source's watermark is **late**: it is counted, still run
//! through the single-event rules (a late deletion is still an alert, marked
//! `kmswatch.late`), but it can no longer join a correlation window or a suppression period;
//! when it matched a rule it is returned by [`Engine::take_late`] so the caller can keep it.
//!
//! ## The window model (anchored sliding windows)
//! For each correlation and group key, the engine keeps the group's pending events sorted by
//! (time, event id). A window is anchored at the earliest pending event: `[a, a + timespan)`.
//! When the watermark passes `a + timespan` (no more events can arrive inside it) the window is
//! evaluated over the events in it. If the condition holds, one finding is emitted with
//! `window.start_time = a` and those events are consumed; otherwise the events at time `a` are
//! dropped and the next window is anchored at the next pending event. So every burst that fits
//! in a `timespan` is seen whatever its alignment, windows never overlap in findings, and the
//! result depends only on the set of events (not on arrival order) as long as none is late.
//! `flush()` closes every window at end of input.
//!
//! A correlation over another correlation (chaining) receives the inner finding as an event at
//! its `end_time`; its windows close `timespan` of the inner later so the inner's findings are
//! never late for it.
//!
//! `event_count`, `value_count` and `value_sum` count an event once even when it matches
//! several referenced rules; an event seen twice (same `metadata.uid` and time) is counted once
//! (a duplicate is dropped before matching). `temporal` counts the distinct referenced rules in
//! the window (all of them by default); `temporal_ordered` requires them to appear in order.
//!
//! ## Suppression
//! A single-event rule with a suppression period P (see [`SuppressionConfig`]) yields one
//! finding per (rule, group key, period) where periods are aligned to the epoch
//! (`floor(time / P) * P`), emitted when the watermark passes the period's end, with `count`
//! the number of matches. Without suppression (the default), findings are emitted at once.
//! The group key of a single-event rule is (`actor.user.uid`, `kms.key.uid`).
//!
//! ## Bounded state
//! Windows are removed as the watermark passes them. Per group at most
//! [`EngineConfig::max_pending_events_per_group`] events wait (beyond it the earliest window is
//! closed early, counted in [`EngineStats::forced_closes`]) and at most
//! [`EngineConfig::related_events_cap`] full events are kept for evidence (the earliest).
//! At most [`EngineConfig::max_groups`] groups live at once: beyond it the group whose window
//! closes first is closed early (its findings are emitted), counted in
//! [`EngineStats::groups_evicted`].

use crate::correlation::{CorrelationType, RefFields, RuleRef};
use crate::document::{Document, EventDocument, FieldPath, FieldValue};
use crate::enrich::{
    fnv1a, CalendarConfig, ConfigError, Enricher, FirstSeenState, HashKeyMap, Inventory,
    InventoryError, KeyHash,
};
use crate::ruleset::{LoadOptions, RuleId, RuleInfo, RuleSet};
use crate::Enrichment;
use kmswatch_model::Origin as LogOrigin;
use kmswatch_model::{
    attacks_from_tags, severity_of, Analytic, Event, Finding, FindingCloud, FindingExt,
    FindingInfo, FindingMetadata, Resource, Window, DETECTION_FINDING_CLASS_UID,
    FINDINGS_CATEGORY_UID, MAX_FINDING_ORIGINS,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::borrow::Cow;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::sync::Arc;

/// Engine configuration (the `detect:` section of kmswatch's config).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EngineConfig {
    /// Default business calendar for `kmswatch.off_hours` (none: the field is absent).
    #[serde(default)]
    pub calendar: Option<CalendarConfig>,
    /// Calendars per account / subscription / project id (`cloud.account.uid`).
    #[serde(default)]
    pub calendars: BTreeMap<String, CalendarConfig>,
    /// Identity inventory for `kmswatch.principal_known` (JSON lines or CSV of principals).
    #[serde(default)]
    pub inventory_path: Option<PathBuf>,
    /// Allowed lateness of events, seconds (default 1200 = 20 minutes).
    #[serde(default = "default_lateness_secs")]
    pub lateness_secs: u64,
    /// Allowed lateness per source name, seconds (overrides `lateness_secs`).
    #[serde(default)]
    pub source_lateness_secs: BTreeMap<String, u64>,
    /// Suppression of repeated single-event findings.
    #[serde(default)]
    pub suppression: SuppressionConfig,
    /// Lookback of `kmswatch.first_seen`, days (default 30).
    #[serde(default = "default_lookback")]
    pub first_seen_lookback_days: u32,
    /// Days from the first event the baseline sees during which `kmswatch.first_seen` is never
    /// true (the baseline is being learned; default 7, 0 to report from the first event).
    #[serde(default = "default_learning")]
    pub first_seen_learning_days: u32,
    /// Events kept in a finding's `evidences` (default 10).
    #[serde(default = "default_evidence_cap")]
    pub evidence_cap: usize,
    /// Event ids kept in `finding_info.related_events`, and full events kept per group for
    /// evidence (default 100).
    #[serde(default = "default_related_cap")]
    pub related_events_cap: usize,
    /// Events waiting in one correlation group before its earliest window is closed early
    /// (default 10000).
    #[serde(default = "default_max_pending")]
    pub max_pending_events_per_group: usize,
    /// Correlation groups alive at once before the one closing first is closed early
    /// (default 200000).
    #[serde(default = "default_max_groups")]
    pub max_groups: usize,
    /// Values for the `|expand` modifier (`%kms_admins%`): pass them to the rule loader with
    /// [`EngineConfig::load_options`].
    #[serde(default)]
    pub placeholders: BTreeMap<String, Vec<String>>,
}

fn default_lateness_secs() -> u64 {
    1200
}
fn default_lookback() -> u32 {
    30
}
fn default_learning() -> u32 {
    7
}
fn default_evidence_cap() -> usize {
    kmswatch_model::DEFAULT_EVIDENCE_CAP
}
fn default_related_cap() -> usize {
    100
}
fn default_max_pending() -> usize {
    10_000
}
fn default_max_groups() -> usize {
    200_000
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            calendar: None,
            calendars: BTreeMap::new(),
            inventory_path: None,
            lateness_secs: default_lateness_secs(),
            source_lateness_secs: BTreeMap::new(),
            suppression: SuppressionConfig::default(),
            first_seen_lookback_days: default_lookback(),
            first_seen_learning_days: default_learning(),
            evidence_cap: default_evidence_cap(),
            related_events_cap: default_related_cap(),
            max_pending_events_per_group: default_max_pending(),
            max_groups: default_max_groups(),
            placeholders: BTreeMap::new(),
        }
    }
}

impl EngineConfig {
    /// Rule load options carrying this config's placeholders.
    pub fn load_options(&self) -> LoadOptions {
        LoadOptions {
            skip_invalid: false,
            placeholders: self
                .placeholders
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        }
    }

    /// Check the config without any I/O (time zones, dates, caps).
    pub fn validate(&self) -> Result<(), ConfigError> {
        Enricher::new(
            self.calendar.as_ref(),
            &self.calendars,
            None,
            self.first_seen_lookback_days,
            self.first_seen_learning_days,
        )?;
        if self.related_events_cap < self.evidence_cap {
            return Err(ConfigError {
                field: "related_events_cap".to_string(),
                reason: format!(
                    "must be at least evidence_cap ({}), since evidence is taken from the kept events",
                    self.evidence_cap
                ),
            });
        }
        for (name, v) in [
            (
                "max_pending_events_per_group",
                self.max_pending_events_per_group,
            ),
            ("max_groups", self.max_groups),
        ] {
            if v == 0 {
                return Err(ConfigError {
                    field: name.to_string(),
                    reason: "must be at least 1".to_string(),
                });
            }
        }
        Ok(())
    }
}

/// Suppression of repeated single-event findings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SuppressionConfig {
    /// Period for every single-event rule, seconds (default 0: no suppression).
    #[serde(default)]
    pub default_secs: u64,
    /// Period per rule (`id`, `name` or `title`), seconds; 0 turns suppression off for it.
    #[serde(default)]
    pub rules: BTreeMap<String, u64>,
}

/// Why an engine could not be built.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The configuration is invalid.
    #[error("detection config: {0}")]
    Config(#[from] ConfigError),
    /// The identity inventory could not be read.
    #[error(transparent)]
    Inventory(#[from] InventoryError),
    /// A state snapshot does not fit this engine.
    #[error("engine state: {0}")]
    State(String),
}

/// An event that arrived after its source's watermark had passed its time, and matched at
/// least one rule: it could not join correlation windows or suppression periods.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LateEvent {
    /// The source it came from.
    pub source: String,
    /// The source's watermark when it arrived (epoch ms).
    pub watermark: i64,
    /// Rules (`id` or title) it matched.
    pub rules: Vec<String>,
    /// The event.
    pub event: Event,
}

/// Counters of what the engine did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EngineStats {
    /// Events processed.
    pub events: u64,
    /// Events that matched at least one rule.
    pub matched: u64,
    /// Late events (time below their source's watermark).
    pub late: u64,
    /// Duplicated events dropped (same `metadata.uid` and time).
    pub duplicates: u64,
    /// Findings emitted.
    pub findings: u64,
    /// Single-event findings folded into another by suppression.
    pub suppressed: u64,
    /// Correlation groups alive now.
    pub groups: u64,
    /// Groups closed early because of `max_groups`.
    pub groups_evicted: u64,
    /// Windows closed early because of `max_pending_events_per_group`.
    pub forced_closes: u64,
    /// Events waiting in correlation windows now.
    pub pending_events: u64,
    /// The engine's watermark (epoch ms; `i64::MIN` before any event).
    pub watermark: i64,
    /// Approximate bytes of window and suppression state and of the duplicate set (bounded
    /// by the windows and the allowed lateness).
    pub state_bytes: u64,
    /// Approximate bytes of the first-seen baseline (bounded by its lookback, not by the
    /// windows). Absent from snapshots written before it existed.
    #[serde(default)]
    pub baseline_bytes: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
enum Payload {
    /// Shared by the groups of every correlation the event feeds (copied once).
    Event(#[serde(with = "arc_event")] Arc<Event>),
    Finding(Box<Finding>),
}

/// Serde for a shared event: the event itself.
mod arc_event {
    use kmswatch_model::Event;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use std::sync::Arc;

    pub(super) fn serialize<S: Serializer>(e: &Arc<Event>, s: S) -> Result<S::Ok, S::Error> {
        Event::serialize(e, s)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Arc<Event>, D::Error> {
        Event::deserialize(d).map(Arc::new)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Item {
    time: i64,
    uid: u64,
    pos: u16,
    /// Hash of the `condition.field` values (value_count); 0 with `has_value` false when absent.
    value: u64,
    has_value: bool,
    num: f64,
    off_hours: Option<bool>,
    payload: Option<Payload>,
    /// Where the event came from (its `kms.origin`), or a fed finding's `kmswatch.origins`:
    /// kept apart from the payload (which is capped) so that a finding names the origins of
    /// *all* its contributing events. Absent when there are none (no allocation: `scan`,
    /// `bench`), and in snapshots written before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    origins: Option<Box<Origins>>,
}

impl Item {
    fn key(&self) -> (i64, u64, u16) {
        (self.time, self.uid, self.pos)
    }
}

/// A bounded set of distinct log origins ([`MAX_FINDING_ORIGINS`]), in order of first
/// appearance; `truncated` once more were seen.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Origins {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    list: Vec<LogOrigin>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    truncated: bool,
}

impl Origins {
    /// The event's origin, when it has one (the only clone the hot path pays, and only then).
    fn of_event(e: &Event) -> Option<Box<Origins>> {
        e.kms.origin.as_ref().map(|o| {
            Box::new(Origins {
                list: vec![o.clone()],
                truncated: false,
            })
        })
    }

    /// A finding's origins, when it names any.
    fn of_finding(f: &Finding) -> Option<Box<Origins>> {
        (!f.kmswatch.origins.is_empty() || f.kmswatch.origins_truncated).then(|| {
            Box::new(Origins {
                list: f.kmswatch.origins.clone(),
                truncated: f.kmswatch.origins_truncated,
            })
        })
    }

    fn add(&mut self, o: &LogOrigin) {
        if self.list.iter().any(|x| x == o) {
            return;
        }
        if self.list.len() >= MAX_FINDING_ORIGINS {
            self.truncated = true;
        } else {
            self.list.push(o.clone());
        }
    }

    fn merge(&mut self, other: &Origins) {
        for o in &other.list {
            self.add(o);
        }
        self.truncated |= other.truncated;
    }

    fn bytes(&self) -> usize {
        self.list
            .iter()
            .map(|o| 48 + o.source.capacity() + o.location.capacity())
            .sum()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Group {
    key: Vec<String>,
    items: Vec<Item>,
    stored: usize,
    gen: u32,
    timer: i64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct CorrGroups {
    /// The correlation (`id` or title), to match state to rules on restore.
    rule: String,
    slots: Vec<Option<Group>>,
    free: Vec<u32>,
    gens: Vec<u32>,
    #[serde(skip)]
    index: hashbrown::HashMap<GroupKey, u32>,
}

/// A group key in [`CorrGroups::index`]; looked up by [`GroupKeyRef`] without building the
/// owned key for every event.
#[derive(Debug, Clone, PartialEq, Eq)]
struct GroupKey(Vec<String>);

/// A borrowed group key: hashes and compares like the [`GroupKey`] with the same strings.
struct GroupKeyRef<'a, 'b>(&'a [Cow<'b, str>]);

impl Hash for GroupKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_usize(self.0.len());
        for s in &self.0 {
            s.as_str().hash(state);
        }
    }
}

impl Hash for GroupKeyRef<'_, '_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_usize(self.0.len());
        for s in self.0 {
            s.as_ref().hash(state);
        }
    }
}

impl hashbrown::Equivalent<GroupKey> for GroupKeyRef<'_, '_> {
    fn equivalent(&self, key: &GroupKey) -> bool {
        self.0.len() == key.0.len() && self.0.iter().zip(&key.0).all(|(a, b)| a.as_ref() == b)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
struct Timer {
    deadline: i64,
    corr: u32,
    slot: u32,
    gen: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct SourceState {
    name: String,
    max_time: i64,
    lateness_ms: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Bucket {
    rule: String,
    rule_idx: u32,
    key: Vec<String>,
    start: i64,
    end: i64,
    count: u64,
    items: Vec<Item>,
    /// The origins of every event folded into the bucket (its items are capped; this is not).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    origins: Option<Box<Origins>>,
}

/// Everything the engine remembers between events, serializable for durable state.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct EngineState {
    sources: Vec<SourceState>,
    corrs: Vec<CorrGroups>,
    timers: Vec<Timer>,
    dedup: HashKeyMap<i64>,
    buckets: Vec<Bucket>,
    first_seen: FirstSeenState,
    stats: EngineStats,
    late: Vec<LateEvent>,
    /// The hash of `dedup` and `first_seen` (absent in older snapshots: FNV-1a).
    #[serde(default)]
    key_hash: KeyHash,
}

#[derive(Debug, Clone)]
struct RuleMeta {
    emits: bool,
    suppress_ms: i64,
    feeds: Vec<(u32, u16)>,
}

#[derive(Debug, Clone)]
struct CorrMeta {
    emits: bool,
    span_ms: i64,
    delay_ms: i64,
    feeds: Vec<(u32, u16)>,
}

#[doc = include_str!("engine.md")]
#[derive(Debug)]
pub struct Engine {
    rules: RuleSet,
    cfg: EngineConfig,
    enricher: Enricher,
    rule_meta: Vec<RuleMeta>,
    corr_meta: Vec<CorrMeta>,
    st: EngineState,
    heap: BinaryHeap<Reverse<Timer>>,
    watermark: i64,
    bucket_index: HashMap<(u32, Vec<String>, i64), usize>,
    next_bucket_end: i64,
    dedup_purge_at: usize,
    scratch: Vec<RuleId>,
}

fn sha_uid(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0u8]);
    }
    let d = h.finalize();
    d.iter().take(16).map(|b| format!("{b:02x}")).collect()
}

fn value_text(v: FieldValue<'_>) -> String {
    match v {
        FieldValue::Absent | FieldValue::Null | FieldValue::Object(_) => String::new(),
        FieldValue::Bool(b) => b.to_string(),
        FieldValue::Int(i) => i.to_string(),
        FieldValue::Float(f) => f.to_string(),
        FieldValue::Str(s) => s.to_string(),
        FieldValue::List(l) => l
            .iter()
            .map(|x| match x {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect::<Vec<_>>()
            .join(","),
        FieldValue::StrList(l) => l.join(","),
    }
}

fn value_num(v: FieldValue<'_>) -> Option<f64> {
    match v {
        FieldValue::Int(i) => Some(i as f64),
        FieldValue::Float(f) if f.is_finite() => Some(f),
        FieldValue::Str(s) => s.trim().parse::<f64>().ok().filter(|f| f.is_finite()),
        _ => None,
    }
}

/// What [`Engine::begin`] found out about an event, for [`Engine::finish`].
#[derive(Debug)]
struct Begun {
    si: usize,
    src_wm: i64,
    late: bool,
    enrichment: Enrichment,
    matched: Vec<RuleId>,
}

impl Engine {
    /// Build an engine over loaded rules. Reads the identity inventory when one is configured.
    pub fn new(rules: RuleSet, config: EngineConfig) -> Result<Engine, EngineError> {
        config.validate()?;
        let inventory = match &config.inventory_path {
            Some(p) => Some(Inventory::load(p)?),
            None => None,
        };
        Engine::with_inventory(rules, config, inventory)
    }

    /// Like [`Engine::new`] with an inventory already read (`inventory_path` is ignored).
    pub fn with_inventory(
        rules: RuleSet,
        config: EngineConfig,
        inventory: Option<Inventory>,
    ) -> Result<Engine, EngineError> {
        config.validate()?;
        let enricher = Enricher::new(
            config.calendar.as_ref(),
            &config.calendars,
            inventory,
            config.first_seen_lookback_days,
            config.first_seen_learning_days,
        )?;
        let n_rules = rules.rules().count();
        let suppress_for = |info: &RuleInfo| -> i64 {
            let over = [
                info.id.as_deref(),
                info.name.as_deref(),
                Some(info.title.as_str()),
            ]
            .into_iter()
            .flatten()
            .find_map(|k| config.suppression.rules.get(k).copied());
            let secs = over.unwrap_or(config.suppression.default_secs);
            i64::try_from(secs)
                .unwrap_or(i64::MAX / 1000)
                .saturating_mul(1000)
        };
        let mut rule_meta: Vec<RuleMeta> = rules
            .rules()
            .map(|(_, info)| RuleMeta {
                emits: true,
                suppress_ms: suppress_for(info),
                feeds: Vec::new(),
            })
            .collect();
        let corrs: Vec<_> = rules.correlations().map(|(_, c)| c.clone()).collect();
        let mut corr_meta: Vec<CorrMeta> = corrs
            .iter()
            .map(|c| CorrMeta {
                emits: true,
                span_ms: c.timespan_secs.saturating_mul(1000),
                delay_ms: 0,
                feeds: Vec::new(),
            })
            .collect();
        // Who feeds whom; `generate: false` (the default) silences the referenced rules unless
        // another correlation generates them or nothing references them.
        let mut generated_rule = vec![false; n_rules];
        let mut referenced_rule = vec![false; n_rules];
        let mut generated_corr = vec![false; corrs.len()];
        let mut referenced_corr = vec![false; corrs.len()];
        for (ci, c) in corrs.iter().enumerate() {
            let ci32 = u32::try_from(ci).unwrap_or(u32::MAX);
            for (pos, r) in c.rules.iter().enumerate() {
                let pos = u16::try_from(pos).unwrap_or(u16::MAX);
                match r {
                    RuleRef::Rule(id) => {
                        let i = id.0 as usize;
                        if let Some(m) = rule_meta.get_mut(i) {
                            m.feeds.push((ci32, pos));
                        }
                        if let Some(x) = referenced_rule.get_mut(i) {
                            *x = true;
                        }
                        if c.generate {
                            if let Some(x) = generated_rule.get_mut(i) {
                                *x = true;
                            }
                        }
                    }
                    RuleRef::Correlation(id) => {
                        let i = id.0 as usize;
                        if let Some(m) = corr_meta.get_mut(i) {
                            m.feeds.push((ci32, pos));
                        }
                        if let Some(x) = referenced_corr.get_mut(i) {
                            *x = true;
                        }
                        if c.generate {
                            if let Some(x) = generated_corr.get_mut(i) {
                                *x = true;
                            }
                        }
                    }
                }
            }
        }
        for (i, m) in rule_meta.iter_mut().enumerate() {
            m.emits = !referenced_rule.get(i).copied().unwrap_or(false)
                || generated_rule.get(i).copied().unwrap_or(false);
        }
        for (i, m) in corr_meta.iter_mut().enumerate() {
            m.emits = !referenced_corr.get(i).copied().unwrap_or(false)
                || generated_corr.get(i).copied().unwrap_or(false);
        }
        // Delay of each correlation: how much later than the watermark its windows close
        // (the spans of the correlations it chains on). The loader rejects cycles.
        for _ in 0..corrs.len() {
            let mut changed = false;
            for (ci, c) in corrs.iter().enumerate() {
                let d = c
                    .rules
                    .iter()
                    .filter_map(|r| match r {
                        RuleRef::Correlation(id) => corr_meta
                            .get(id.0 as usize)
                            .map(|m| m.span_ms.saturating_add(m.delay_ms)),
                        RuleRef::Rule(_) => None,
                    })
                    .max()
                    .unwrap_or(0);
                if let Some(m) = corr_meta.get_mut(ci) {
                    if m.delay_ms != d {
                        m.delay_ms = d;
                        changed = true;
                    }
                }
            }
            if !changed {
                break;
            }
        }
        let st = EngineState {
            corrs: corrs
                .iter()
                .map(|c| CorrGroups {
                    rule: c.info.display_id().to_string(),
                    ..CorrGroups::default()
                })
                .collect(),
            stats: EngineStats {
                watermark: i64::MIN,
                ..EngineStats::default()
            },
            key_hash: KeyHash::CURRENT,
            ..EngineState::default()
        };
        Ok(Engine {
            rules,
            cfg: config,
            enricher,
            rule_meta,
            corr_meta,
            st,
            heap: BinaryHeap::new(),
            watermark: i64::MIN,
            bucket_index: HashMap::new(),
            next_bucket_end: i64::MAX,
            dedup_purge_at: 4096,
            scratch: Vec::new(),
        })
    }

    /// The rules the engine runs.
    pub fn rules(&self) -> &RuleSet {
        &self.rules
    }

    /// The enrichment the engine computes for `event` (updates the first-seen baseline).
    pub fn enrich(&mut self, event: &Event) -> Enrichment {
        self.enricher.enrich(event, self.st.key_hash)
    }

    fn source_index(&mut self, source: &str) -> usize {
        if let Some(i) = self.st.sources.iter().position(|s| s.name == source) {
            return i;
        }
        let secs = self
            .cfg
            .source_lateness_secs
            .get(source)
            .copied()
            .unwrap_or(self.cfg.lateness_secs);
        self.st.sources.push(SourceState {
            name: source.to_string(),
            max_time: i64::MIN,
            lateness_ms: i64::try_from(secs)
                .unwrap_or(i64::MAX / 1000)
                .saturating_mul(1000),
        });
        self.st.sources.len() - 1
    }

    fn source_watermark(s: &SourceState) -> i64 {
        if s.max_time == i64::MIN {
            i64::MIN
        } else {
            s.max_time.saturating_sub(s.lateness_ms)
        }
    }

    /// Process one event, in arrival order. Findings of single-event rules (without
    /// suppression) are appended at once; correlation and suppressed findings when the
    /// watermark passes their window.
    pub fn process(&mut self, event: &Event, source: &str, out: &mut Vec<Finding>) {
        if let Some(pre) = self.begin(event, source) {
            self.finish(event, pre, None, source, out);
        }
    }

    /// [`Engine::process`] for an event the caller has no further use for: an event kept as
    /// evidence (by a correlation window, a suppression period or a finding) is moved, not
    /// copied. What the offline scan uses.
    pub fn process_owned(&mut self, event: Box<Event>, source: &str, out: &mut Vec<Finding>) {
        let Some(pre) = self.begin(&event, source) else {
            return;
        };
        if pre.matched.is_empty() {
            self.finish(&event, pre, None, source, out);
        } else {
            let shared: Arc<Event> = Arc::from(event);
            self.finish(&shared, pre, Some(Arc::clone(&shared)), source, out);
        }
    }

    /// First half of [`Engine::process`]: duplicates, enrichment, matching rules. `None` for
    /// a duplicate (nothing more to do).
    fn begin(&mut self, event: &Event, source: &str) -> Option<Begun> {
        self.st.stats.events += 1;
        let si = self.source_index(source);
        let (src_wm, late) = match self.st.sources.get(si) {
            Some(s) => {
                let wm = Engine::source_watermark(s);
                (wm, event.time < wm)
            }
            None => (i64::MIN, false),
        };
        // Duplicates: same metadata.uid and time.
        if !event.metadata.uid.is_empty() {
            let h = self
                .st
                .key_hash
                .hash(&[event.metadata.uid.as_bytes(), &event.time.to_le_bytes()]);
            if self.st.dedup.insert(h, event.time).is_some() {
                self.st.stats.duplicates += 1;
                self.scratch.clear();
                return None;
            }
        }
        let enrichment = self.enricher.enrich(event, self.st.key_hash);
        let mut matched = std::mem::take(&mut self.scratch);
        matched.clear();
        self.rules.matches(event, &enrichment, &mut matched);
        Some(Begun {
            si,
            src_wm,
            late,
            enrichment,
            matched,
        })
    }

    /// Second half of [`Engine::process`]: findings, correlation windows, the watermark.
    /// `shared`: the event already in an `Arc` (kept as evidence without a copy).
    fn finish(
        &mut self,
        event: &Event,
        pre: Begun,
        mut shared: Option<Arc<Event>>,
        source: &str,
        out: &mut Vec<Finding>,
    ) {
        let Begun {
            si,
            src_wm,
            late,
            enrichment,
            matched,
        } = pre;
        if late {
            self.st.stats.late += 1;
        }
        if !matched.is_empty() {
            self.st.stats.matched += 1;
            if late {
                self.st.late.push(LateEvent {
                    source: source.to_string(),
                    watermark: src_wm,
                    rules: matched
                        .iter()
                        .filter_map(|id| self.rules.rule(*id))
                        .map(|r| r.display_id().to_string())
                        .collect(),
                    event: event.clone(),
                });
            }
            let mut raw: Option<Option<serde_json::Value>> = None;
            for &id in &matched {
                let i = id.0 as usize;
                let Some((emits, suppress, nfeeds)) = self
                    .rule_meta
                    .get(i)
                    .map(|m| (m.emits, m.suppress_ms, m.feeds.len()))
                else {
                    continue;
                };
                if emits {
                    self.single(id, (event, &mut shared), &enrichment, suppress, late, out);
                }
                if late {
                    continue;
                }
                for k in 0..nfeeds {
                    let Some(&(ci, pos)) = self.rule_meta.get(i).and_then(|m| m.feeds.get(k))
                    else {
                        continue;
                    };
                    let fed = (event, &mut shared);
                    self.feed_event(ci, pos, fed, &enrichment, &mut raw, out);
                }
            }
        }
        self.scratch = matched;
        if let Some(s) = self.st.sources.get_mut(si) {
            s.max_time = s.max_time.max(event.time);
        }
        self.progress(out);
    }

    /// Move `source`'s event-time clock to `now_event_time_ms` without an event (an idle
    /// source), closing the windows that became due.
    pub fn advance(&mut self, source: &str, now_event_time_ms: i64, out: &mut Vec<Finding>) {
        let si = self.source_index(source);
        if let Some(s) = self.st.sources.get_mut(si) {
            s.max_time = s.max_time.max(now_event_time_ms);
        }
        self.progress(out);
    }

    /// The rules the last event given to [`Engine::process`] matched (empty for a duplicate),
    /// whether or not they emit findings of their own (correlation building blocks with
    /// `generate: false` do not). For rule tests.
    pub fn last_matched(&self) -> impl Iterator<Item = &RuleInfo> {
        self.scratch.iter().filter_map(|id| self.rules.rule(*id))
    }

    /// `source` has ended (a file read to its end in an offline scan): it no longer holds the
    /// watermark back, so windows close as the remaining sources progress. Its events already
    /// processed stay in their windows. A later event under the same name starts it afresh.
    pub fn end_source(&mut self, source: &str, out: &mut Vec<Finding>) {
        self.st.sources.retain(|s| s.name != source);
        self.progress(out);
    }

    /// End of input: close every window and suppression period and emit their findings.
    pub fn flush(&mut self, out: &mut Vec<Finding>) {
        let start = out.len();
        self.close_due(i64::MAX, out);
        self.close_buckets(i64::MAX, out);
        sort_tail(out, start);
        self.st.stats.watermark = self.watermark;
    }

    /// Take the late events collected so far (see [`LateEvent`]).
    pub fn take_late(&mut self) -> Vec<LateEvent> {
        std::mem::take(&mut self.st.late)
    }

    /// Counters and gauges.
    pub fn stats(&self) -> EngineStats {
        let mut s = self.st.stats;
        let mut groups = 0u64;
        let mut pending = 0u64;
        let mut bytes = 0usize;
        for c in &self.st.corrs {
            bytes += c.slots.capacity() * std::mem::size_of::<Option<Group>>();
            for g in c.slots.iter().flatten() {
                groups += 1;
                pending += g.items.len() as u64;
                bytes += g.key.iter().map(|k| k.capacity() + 24).sum::<usize>() * 2; // key + index copy
                bytes += 48; // index entry
                bytes += g.items.capacity() * std::mem::size_of::<Item>();
                bytes += g.items.iter().map(payload_bytes).sum::<usize>();
            }
        }
        for b in &self.st.buckets {
            bytes +=
                std::mem::size_of::<Bucket>() + b.items.iter().map(payload_bytes).sum::<usize>();
        }
        bytes += self.st.dedup.capacity() * 24;
        bytes += self.heap.capacity() * std::mem::size_of::<Timer>();
        s.groups = groups;
        s.pending_events = pending;
        s.state_bytes = bytes as u64;
        // (principal, key) hash -> day, one control byte per slot.
        s.baseline_bytes = (self.enricher.first_seen.last_day.capacity()
            * (std::mem::size_of::<(u64, i32)>() + 1)) as u64;
        s.watermark = self.watermark;
        s
    }

    /// A serializable copy of the engine's state (windows, suppression, baselines, counters,
    /// uncollected late events), for durable state.
    pub fn snapshot(&self) -> EngineState {
        let mut st = self.st.clone();
        st.timers = self.heap.iter().map(|Reverse(t)| *t).collect();
        st.timers.sort_unstable();
        st.first_seen = self.enricher.first_seen.clone();
        st.stats = self.stats();
        st
    }

    /// [`Engine::snapshot`] as JSON, written without copying the state first (a checkpoint of
    /// a large state would otherwise hold it twice, plus its JSON). Reads back as
    /// [`EngineState`].
    pub fn snapshot_json(&self) -> serde_json::Result<Vec<u8>> {
        #[derive(Serialize)]
        struct StateRef<'a> {
            sources: &'a [SourceState],
            corrs: &'a [CorrGroups],
            timers: Vec<Timer>,
            dedup: &'a HashKeyMap<i64>,
            buckets: &'a [Bucket],
            first_seen: &'a FirstSeenState,
            stats: EngineStats,
            late: &'a [LateEvent],
            key_hash: KeyHash,
        }
        let mut timers: Vec<Timer> = self.heap.iter().map(|Reverse(t)| *t).collect();
        timers.sort_unstable();
        serde_json::to_vec(&StateRef {
            sources: &self.st.sources,
            corrs: &self.st.corrs,
            timers,
            dedup: &self.st.dedup,
            buckets: &self.st.buckets,
            first_seen: &self.enricher.first_seen,
            stats: self.stats(),
            late: &self.st.late,
            key_hash: self.st.key_hash,
        })
    }

    /// Restore a snapshot taken from an engine with the same correlation rules. Windows of
    /// correlations no longer loaded are dropped; an unknown layout is an error.
    pub fn restore(&mut self, state: EngineState) -> Result<(), EngineError> {
        let mut state = state;
        let mut corrs: Vec<CorrGroups> = self
            .st
            .corrs
            .iter()
            .map(|c| CorrGroups {
                rule: c.rule.clone(),
                ..CorrGroups::default()
            })
            .collect();
        let mut map = Vec::new();
        for old in std::mem::take(&mut state.corrs) {
            let new = corrs.iter().position(|c| c.rule == old.rule);
            map.push(new);
            if let Some(slot) = new.and_then(|i| corrs.get_mut(i)) {
                let rule = slot.rule.clone();
                *slot = old;
                slot.rule = rule.clone();
                slot.index = slot
                    .slots
                    .iter()
                    .enumerate()
                    .filter_map(|(i, g)| {
                        g.as_ref().map(|g| {
                            (
                                GroupKey(g.key.clone()),
                                u32::try_from(i).unwrap_or(u32::MAX),
                            )
                        })
                    })
                    .collect();
                if slot.gens.len() != slot.slots.len() {
                    return Err(EngineError::State(format!(
                        "correlation {rule}: inconsistent group table"
                    )));
                }
            }
        }
        self.heap = state
            .timers
            .iter()
            .filter_map(|t| {
                map.get(t.corr as usize).copied().flatten().map(|c| {
                    Reverse(Timer {
                        corr: u32::try_from(c).unwrap_or(u32::MAX),
                        ..*t
                    })
                })
            })
            .collect();
        state.corrs = corrs;
        state.timers.clear();
        let mut buckets = Vec::new();
        for mut b in std::mem::take(&mut state.buckets) {
            if let Some(id) = self.rules.find(&b.rule).or_else(|| {
                self.rules
                    .rules()
                    .find(|(_, r)| r.display_id() == b.rule)
                    .map(|(id, _)| id)
            }) {
                b.rule_idx = id.0;
                buckets.push(b);
            }
        }
        self.bucket_index = buckets
            .iter()
            .enumerate()
            .map(|(i, b)| ((b.rule_idx, b.key.clone(), b.start), i))
            .collect();
        self.next_bucket_end = buckets.iter().map(|b| b.end).min().unwrap_or(i64::MAX);
        state.buckets = buckets;
        self.enricher.first_seen = std::mem::take(&mut state.first_seen);
        self.st = state;
        self.watermark = self.compute_watermark();
        self.dedup_purge_at = (self.st.dedup.len() * 2).max(4096);
        Ok(())
    }

    fn compute_watermark(&self) -> i64 {
        self.st
            .sources
            .iter()
            .map(Engine::source_watermark)
            .min()
            .unwrap_or(i64::MIN)
    }

    fn progress(&mut self, out: &mut Vec<Finding>) {
        let w = self.compute_watermark();
        // The watermark is the minimum over the *active* sources, so it can move back when a
        // new source starts (the next file of an offline scan, a new partition): windows
        // already closed stay closed, and windows opened by the new source's events close as
        // it progresses instead of waiting for the end of the input.
        if w == self.watermark {
            return;
        }
        self.watermark = w;
        self.st.stats.watermark = w;
        let start = out.len();
        self.close_due(w, out);
        if w >= self.next_bucket_end {
            self.close_buckets(w, out);
        }
        sort_tail(out, start);
        if self.st.dedup.len() > self.dedup_purge_at {
            let min_src = self
                .st
                .sources
                .iter()
                .map(Engine::source_watermark)
                .min()
                .unwrap_or(i64::MIN);
            self.st.dedup.retain(|_, t| *t >= min_src);
            self.dedup_purge_at = (self.st.dedup.len() * 2).max(4096);
        }
    }

    // ---------------------------------------------------------------- single-event rules

    fn single(
        &mut self,
        id: RuleId,
        (event, shared): (&Event, &mut Option<Arc<Event>>),
        enrichment: &Enrichment,
        suppress_ms: i64,
        late: bool,
        out: &mut Vec<Finding>,
    ) {
        let key = vec![
            event.actor.user.uid.clone().unwrap_or_default(),
            event
                .kms
                .key
                .as_ref()
                .map(|k| k.uid.clone())
                .unwrap_or_default(),
        ];
        let item = Item {
            time: event.time,
            uid: fnv1a(&[event.metadata.uid.as_bytes()]),
            pos: 0,
            value: 0,
            has_value: false,
            num: 0.0,
            off_hours: enrichment.off_hours,
            payload: None,
            origins: Origins::of_event(event),
        };
        // The event is copied into the item only where it is kept as evidence.
        let mut with_payload = |mut item: Item| {
            let e = shared.get_or_insert_with(|| Arc::new(event.clone()));
            item.payload = Some(Payload::Event(Arc::clone(e)));
            item
        };
        if suppress_ms <= 0 || late {
            let item = with_payload(item);
            let Some(info) = self.rules.rule(id) else {
                return;
            };
            let t = event.time.to_string();
            let uid = sha_uid(&[
                info.display_id(),
                &key.join("\u{1f}"),
                &t,
                &event.metadata.uid,
            ]);
            let mut f = self.build(
                Origin::Rule(info),
                &key,
                std::slice::from_ref(&item),
                uid,
                None,
                None,
                None,
            );
            f.kmswatch.late = late;
            self.st.stats.findings += 1;
            out.push(f);
            return;
        }
        let start = event
            .time
            .div_euclid(suppress_ms)
            .saturating_mul(suppress_ms);
        let bkey = (id.0, key, start);
        let cap = self.cfg.related_events_cap.max(1);
        if let Some(&bi) = self.bucket_index.get(&bkey) {
            if let Some(b) = self.st.buckets.get_mut(bi) {
                b.count += 1;
                self.st.stats.suppressed += 1;
                if let Some(o) = &event.kms.origin {
                    b.origins.get_or_insert_with(Box::default).add(o);
                }
                let k = item.key();
                let kept = b.items.len() < cap || b.items.last().is_some_and(|x| x.key() >= k);
                if kept {
                    insert_capped(&mut b.items, with_payload(item), cap);
                }
            }
            return;
        }
        let Some(info) = self.rules.rule(id) else {
            return;
        };
        let end = start.saturating_add(suppress_ms);
        self.next_bucket_end = self.next_bucket_end.min(end);
        self.st.buckets.push(Bucket {
            rule: info.display_id().to_string(),
            rule_idx: id.0,
            key: bkey.1.clone(),
            start,
            end,
            count: 1,
            origins: item.origins.clone(),
            items: vec![with_payload(item)],
        });
        self.bucket_index.insert(bkey, self.st.buckets.len() - 1);
    }

    fn close_buckets(&mut self, w: i64, out: &mut Vec<Finding>) {
        let mut i = 0;
        let mut next = i64::MAX;
        while i < self.st.buckets.len() {
            let due = self.st.buckets.get(i).is_some_and(|b| b.end <= w);
            if !due {
                if let Some(b) = self.st.buckets.get(i) {
                    next = next.min(b.end);
                }
                i += 1;
                continue;
            }
            let b = self.st.buckets.swap_remove(i);
            self.bucket_index
                .remove(&(b.rule_idx, b.key.clone(), b.start));
            if let Some(moved) = self.st.buckets.get(i) {
                self.bucket_index
                    .insert((moved.rule_idx, moved.key.clone(), moved.start), i);
            }
            let Some(info) = self.rules.rule(RuleId(b.rule_idx)) else {
                continue;
            };
            let uid = sha_uid(&[
                info.display_id(),
                &b.key.join("\u{1f}"),
                &b.start.to_string(),
                "suppressed",
            ]);
            let window = Window {
                start_time: b.start,
                end_time: b.end,
                timespan_secs: (b.end - b.start) / 1000,
            };
            let mut f = self.build(
                Origin::Rule(info),
                &b.key,
                &b.items,
                uid,
                Some(window),
                None,
                Some(b.count),
            );
            f.count = b.count;
            // The bucket saw every event; its items only the first ones.
            if let Some(o) = b.origins {
                f.kmswatch.origins = o.list;
                f.kmswatch.origins_truncated = o.truncated;
            }
            self.st.stats.findings += 1;
            out.push(f);
        }
        self.next_bucket_end = next;
    }

    // ---------------------------------------------------------------- correlations

    fn feed_event(
        &mut self,
        ci: u32,
        pos: u16,
        (event, shared): (&Event, &mut Option<Arc<Event>>),
        enrichment: &Enrichment,
        raw: &mut Option<Option<serde_json::Value>>,
        out: &mut Vec<Finding>,
    ) {
        let Some(corr) = self
            .rules
            .correlation(crate::correlation::CorrelationId(ci))
        else {
            return;
        };
        let Some(RefFields::Rule {
            group,
            value,
            raw: is_raw,
        }) = corr.ref_fields.get(pos as usize)
        else {
            return;
        };
        let nd = EventDocument { event, enrichment };
        let raw_doc: Option<&serde_json::Value> = if *is_raw {
            raw.get_or_insert_with(|| serde_json::from_str(event.raw.get()).ok())
                .as_ref()
        } else {
            None
        };
        let get = |p: &FieldPath| -> FieldValue<'_> {
            match raw_doc {
                Some(r) => Document::get(r, p),
                None => nd.get(p),
            }
        };
        let key: Vec<Cow<'_, str>> = group
            .iter()
            .map(|p| match get(p) {
                FieldValue::Str(s) => Cow::Borrowed(s),
                v => Cow::Owned(value_text(v)),
            })
            .collect();
        let (value, has_value, num) = value_of(corr.kind, value, &get);
        let item = Item {
            time: event.time,
            uid: fnv1a(&[event.metadata.uid.as_bytes()]),
            pos,
            value,
            has_value,
            num,
            off_hours: enrichment.off_hours,
            payload: None,
            origins: Origins::of_event(event),
        };
        self.insert(ci, &key, item, Some((event, shared)), out);
    }

    fn feed_finding(&mut self, ci: u32, pos: u16, f: &Finding, out: &mut Vec<Finding>) {
        let Some(corr) = self
            .rules
            .correlation(crate::correlation::CorrelationId(ci))
        else {
            return;
        };
        let Some(RefFields::Correlation { group }) = corr.ref_fields.get(pos as usize) else {
            return;
        };
        let key: Vec<Cow<'_, str>> = group
            .iter()
            .map(|g| Cow::Borrowed(f.kmswatch.group.get(g).map_or("", String::as_str)))
            .collect();
        let item = Item {
            time: f.end_time,
            uid: fnv1a(&[f.finding_info.uid.as_bytes()]),
            pos,
            value: 0,
            has_value: false,
            num: 0.0,
            off_hours: None,
            payload: Some(Payload::Finding(Box::new(f.clone()))),
            origins: Origins::of_finding(f),
        };
        self.insert(ci, &key, item, None, out);
    }

    /// Add `item` to its group. With `event`, the item stands for that event, which is cloned
    /// into it only when it is among the group's earliest `related_events_cap` kept payloads.
    fn insert(
        &mut self,
        ci: u32,
        key: &[Cow<'_, str>],
        item: Item,
        event: Option<(&Event, &mut Option<Arc<Event>>)>,
        out: &mut Vec<Finding>,
    ) {
        let Some(meta) = self.corr_meta.get(ci as usize) else {
            return;
        };
        let (span, delay) = (meta.span_ms, meta.delay_ms);
        let counting = self
            .rules
            .correlation(crate::correlation::CorrelationId(ci))
            .is_some_and(|c| {
                matches!(
                    c.kind,
                    CorrelationType::EventCount
                        | CorrelationType::ValueCount
                        | CorrelationType::ValueSum
                )
            });
        let found = self
            .st
            .corrs
            .get(ci as usize)
            .and_then(|c| c.index.get(&GroupKeyRef(key)).copied());
        if found.is_none() {
            let live: usize = self.st.corrs.iter().map(|c| c.index.len()).sum();
            if live >= self.cfg.max_groups {
                self.evict_one(out);
            }
        }
        let cap = self.cfg.related_events_cap;
        let max_pending = self.cfg.max_pending_events_per_group;
        let Some(cg) = self.st.corrs.get_mut(ci as usize) else {
            return;
        };
        // A group found above is still there: evicting happens only when none was found.
        let slot = match found {
            Some(s) => s,
            None => {
                let key: Vec<String> = key.iter().map(|k| k.to_string()).collect();
                let s = match cg.free.pop() {
                    Some(s) => s,
                    None => {
                        cg.slots.push(None);
                        cg.gens.push(0);
                        u32::try_from(cg.slots.len() - 1).unwrap_or(u32::MAX)
                    }
                };
                let gen = cg.gens.get(s as usize).copied().unwrap_or(0);
                if let Some(x) = cg.slots.get_mut(s as usize) {
                    *x = Some(Group {
                        key: key.clone(),
                        items: Vec::new(),
                        stored: 0,
                        gen,
                        timer: i64::MAX,
                    });
                }
                cg.index.insert(GroupKey(key), s);
                s
            }
        };
        let Some(Some(g)) = cg.slots.get_mut(slot as usize) else {
            return;
        };
        let k = item.key();
        let at = g.items.partition_point(|x| x.key() < k);
        if counting {
            // The same event matched by two referenced rules counts once.
            let dup = |x: &Item| x.time == item.time && x.uid == item.uid;
            let before = at
                .checked_sub(1)
                .and_then(|i| g.items.get(i))
                .is_some_and(dup);
            let here = g.items.get(at).is_some_and(dup);
            if before || here {
                return;
            }
        }
        let mut item = item;
        if item.payload.is_some() || event.is_some() {
            let keep = if g.stored >= cap {
                // Keep the earliest `cap` payloads: drop the latest one (maybe this one).
                let last = g.items.iter().rposition(|x| x.payload.is_some());
                match last {
                    Some(li) if li >= at => {
                        if let Some(x) = g.items.get_mut(li) {
                            x.payload = None;
                        }
                        true
                    }
                    _ => false,
                }
            } else {
                g.stored += 1;
                true
            };
            if !keep {
                item.payload = None;
            } else if let Some((e, shared)) = event {
                let e = shared.get_or_insert_with(|| Arc::new(e.clone()));
                item.payload = Some(Payload::Event(Arc::clone(e)));
            }
        }
        g.items.insert(at, item);
        let first = g.items.first().map(|x| x.time).unwrap_or(i64::MAX);
        let deadline = first.saturating_add(span).saturating_add(delay);
        let gen = g.gen;
        let overflow = g.items.len() > max_pending;
        if deadline < g.timer {
            g.timer = deadline;
            self.heap.push(Reverse(Timer {
                deadline,
                corr: ci,
                slot,
                gen,
            }));
        }
        if overflow {
            self.st.stats.forced_closes += 1;
            self.close_group(ci, slot, i64::MAX, Force::One, out);
        }
    }

    fn evict_one(&mut self, out: &mut Vec<Finding>) {
        while let Some(Reverse(t)) = self.heap.pop() {
            let valid = self
                .st
                .corrs
                .get(t.corr as usize)
                .and_then(|c| c.slots.get(t.slot as usize))
                .and_then(Option::as_ref)
                .is_some_and(|g| g.gen == t.gen && g.timer == t.deadline);
            if valid {
                self.st.stats.groups_evicted += 1;
                self.close_group(t.corr, t.slot, i64::MAX, Force::All, out);
                return;
            }
        }
    }

    fn close_due(&mut self, w: i64, out: &mut Vec<Finding>) {
        while let Some(Reverse(t)) = self.heap.peek().copied() {
            if t.deadline > w {
                break;
            }
            self.heap.pop();
            let valid = self
                .st
                .corrs
                .get(t.corr as usize)
                .and_then(|c| c.slots.get(t.slot as usize))
                .and_then(Option::as_ref)
                .is_some_and(|g| g.gen == t.gen && g.timer == t.deadline);
            if valid {
                self.close_group(t.corr, t.slot, w, Force::None, out);
            }
        }
    }

    /// Close the due windows of one group (all of them with `Force::All`, the earliest one
    /// with `Force::One`), emit findings, and re-arm or free the group.
    fn close_group(&mut self, ci: u32, slot: u32, w: i64, force: Force, out: &mut Vec<Finding>) {
        let Some(meta) = self.corr_meta.get(ci as usize) else {
            return;
        };
        let (span, delay, emits) = (meta.span_ms, meta.delay_ms, meta.emits);
        let Some(corr) = self
            .rules
            .correlation(crate::correlation::CorrelationId(ci))
        else {
            return;
        };
        let n_refs = corr.rules.len();
        let kind = corr.kind;
        let cond = corr.condition;
        let mut produced: Vec<Finding> = Vec::new();
        let mut windows: Vec<(Vec<Item>, i64, f64)> = Vec::new();
        let mut key = Vec::new();
        {
            let Some(Some(g)) = self
                .st
                .corrs
                .get_mut(ci as usize)
                .and_then(|c| c.slots.get_mut(slot as usize))
            else {
                return;
            };
            while let Some(a) = g.items.first().map(|x| x.time) {
                let end = a.saturating_add(span);
                if force == Force::None && end.saturating_add(delay) > w {
                    break;
                }
                let n = g.items.partition_point(|x| x.time < end);
                let window = g.items.get(..n).unwrap_or(&[]);
                let (fires, value) = evaluate(kind, cond, n_refs, window);
                if fires {
                    let taken: Vec<Item> = g.items.drain(..n).collect();
                    g.stored -= taken.iter().filter(|x| x.payload.is_some()).count();
                    windows.push((taken, a, value));
                } else {
                    let k = g.items.partition_point(|x| x.time <= a);
                    let dropped = g.items.drain(..k).filter(|x| x.payload.is_some()).count();
                    g.stored -= dropped;
                }
                if force == Force::One {
                    break;
                }
            }
            if !windows.is_empty() {
                key.clone_from(&g.key);
            }
        }
        for (items, a, value) in windows {
            let window = Window {
                start_time: a,
                end_time: a.saturating_add(span),
                timespan_secs: span / 1000,
            };
            let Some(corr) = self
                .rules
                .correlation(crate::correlation::CorrelationId(ci))
            else {
                return;
            };
            let uid = sha_uid(&[corr.info.display_id(), &key.join("\u{1f}"), &a.to_string()]);
            let f = self.build(
                Origin::Correlation(corr),
                &key,
                &items,
                uid,
                Some(window),
                Some(value),
                None,
            );
            produced.push(f);
        }
        // Re-arm or free the group.
        if let Some(cg) = self.st.corrs.get_mut(ci as usize) {
            let mut free = false;
            if let Some(Some(g)) = cg.slots.get_mut(slot as usize) {
                match g.items.first() {
                    Some(first) => {
                        let deadline = first.time.saturating_add(span).saturating_add(delay);
                        g.timer = deadline;
                        self.heap.push(Reverse(Timer {
                            deadline,
                            corr: ci,
                            slot,
                            gen: g.gen,
                        }));
                    }
                    None => free = true,
                }
            }
            if free {
                if let Some(s) = cg.slots.get_mut(slot as usize) {
                    if let Some(g) = s.take() {
                        cg.index.remove(&GroupKey(g.key));
                    }
                }
                if let Some(gen) = cg.gens.get_mut(slot as usize) {
                    *gen = gen.wrapping_add(1);
                }
                cg.free.push(slot);
            }
        }
        if produced.is_empty() {
            return;
        }
        let feeds = self
            .corr_meta
            .get(ci as usize)
            .map(|m| m.feeds.clone())
            .unwrap_or_default();
        for f in produced {
            for &(outer, pos) in &feeds {
                self.feed_finding(outer, pos, &f, out);
            }
            if emits {
                self.st.stats.findings += 1;
                out.push(f);
            }
        }
    }

    // ---------------------------------------------------------------- findings

    #[allow(clippy::too_many_arguments)]
    fn build(
        &self,
        origin: Origin<'_>,
        key: &[String],
        items: &[Item],
        uid: String,
        window: Option<Window>,
        value: Option<f64>,
        total: Option<u64>,
    ) -> Finding {
        let (info, group_names, ctype) = match origin {
            Origin::Rule(info) => (
                info,
                vec!["actor.user.uid".to_string(), "kms.key.uid".to_string()],
                None,
            ),
            Origin::Correlation(c) => (&c.info, c.group_by.clone(), Some(c)),
        };
        let mut evidences: Vec<Event> = Vec::new();
        let mut related: Vec<String> = Vec::new();
        let mut count: u64 = 0;
        let mut all_off = true;
        let mut any_off_known = false;
        let mut origins = Origins::default();
        let ecap = self.cfg.evidence_cap;
        let rcap = self.cfg.related_events_cap;
        for it in items {
            if let Some(o) = &it.origins {
                origins.merge(o);
            }
            match &it.payload {
                Some(Payload::Event(e)) => {
                    count += 1;
                    if evidences.len() < ecap {
                        evidences.push((**e).clone());
                    }
                    if related.len() < rcap {
                        related.push(e.metadata.uid.clone());
                    }
                }
                Some(Payload::Finding(f)) => {
                    count += f.evidences_count;
                    for e in &f.evidences {
                        if evidences.len() < ecap {
                            evidences.push(e.clone());
                        }
                    }
                    for r in &f.finding_info.related_events {
                        if related.len() < rcap {
                            related.push(r.clone());
                        }
                    }
                }
                None => count += 1,
            }
            match it.off_hours {
                Some(o) => {
                    any_off_known = true;
                    all_off &= o;
                }
                None => {
                    if let Some(Payload::Finding(f)) = &it.payload {
                        if f.message.contains("outside business hours") {
                            any_off_known = true;
                        } else {
                            all_off = false;
                        }
                    }
                }
            }
        }
        if let Some(t) = total {
            count = t;
        }
        let start = items.iter().map(|i| i.time).min().unwrap_or(0);
        let end_evt = items
            .iter()
            .map(|i| match &i.payload {
                Some(Payload::Finding(f)) => f.end_time,
                _ => i.time,
            })
            .max()
            .unwrap_or(start);
        let start_evt = items
            .iter()
            .map(|i| match &i.payload {
                Some(Payload::Finding(f)) => f.start_time,
                _ => i.time,
            })
            .min()
            .unwrap_or(start);
        let first = evidences.first();
        let (severity, severity_id) = severity_of(info.level.as_deref());
        let mut resources: Vec<Resource> = Vec::new();
        for e in &evidences {
            let (uid, t) = match (&e.kms.key, &e.kms.object_uid) {
                (Some(k), _) => (k.uid.clone(), "kms_key"),
                (None, Some(o)) => (o.clone(), object_type(o)),
                _ => continue,
            };
            if !resources.iter().any(|r| r.uid == uid) {
                let account = e
                    .kms
                    .key
                    .as_ref()
                    .and_then(|k| k.account_uid.clone())
                    .or_else(|| e.cloud.account.uid.clone())
                    .map(|u| kmswatch_model::Account { uid: Some(u) });
                resources.push(Resource {
                    uid,
                    type_: t.to_string(),
                    cloud_provider: e.cloud.provider,
                    account,
                });
            }
        }
        let group: BTreeMap<String, String> = group_names
            .iter()
            .cloned()
            .zip(key.iter().cloned())
            .collect();
        let off = any_off_known && all_off;
        let message = message(
            &info.title,
            first,
            &evidences,
            count,
            start_evt,
            end_evt,
            off,
            ctype.map(|c| (c, value.unwrap_or(0.0))),
        );
        Finding {
            class_uid: DETECTION_FINDING_CLASS_UID,
            category_uid: FINDINGS_CATEGORY_UID,
            activity_id: 1,
            type_uid: DETECTION_FINDING_CLASS_UID * 100 + 1,
            time: end_evt,
            start_time: start_evt,
            end_time: end_evt,
            severity: severity.to_string(),
            severity_id,
            status: "New".to_string(),
            status_id: 1,
            message,
            finding_info: FindingInfo {
                uid,
                title: info.title.clone(),
                desc: info.description.clone(),
                analytic: Analytic {
                    uid: info.display_id().to_string(),
                    name: info.name.clone().unwrap_or_else(|| info.title.clone()),
                    type_: if ctype.is_some() {
                        "Correlation"
                    } else {
                        "Rule"
                    }
                    .to_string(),
                    type_id: if ctype.is_some() { 99 } else { 1 },
                },
                related_events: related,
            },
            metadata: FindingMetadata::default(),
            cloud: first.map(|e| FindingCloud {
                provider: e.cloud.provider,
                account: e
                    .cloud
                    .account
                    .uid
                    .is_some()
                    .then(|| e.cloud.account.clone()),
                region: e.cloud.region.clone(),
            }),
            actor: first.map(|e| e.actor.clone()),
            resources,
            attacks: attacks_from_tags(&info.tags),
            evidences,
            evidences_count: count,
            count: 1,
            kmswatch: FindingExt {
                rule_level: info.level.clone(),
                rule_status: info.status.clone(),
                tags: info.tags.clone(),
                rule_file: Some(info.file.display().to_string()),
                group,
                correlation_type: ctype.map(|c| c.kind.as_str().to_string()),
                window,
                value,
                late: false,
                origins: origins.list,
                origins_truncated: origins.truncated,
            },
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Force {
    None,
    One,
    All,
}

#[derive(Clone, Copy)]
enum Origin<'a> {
    Rule(&'a RuleInfo),
    Correlation(&'a crate::correlation::Correlation),
}

fn payload_bytes(i: &Item) -> usize {
    i.origins.as_ref().map_or(0, |o| o.bytes())
        + match &i.payload {
            Some(Payload::Event(e)) => 1024 + e.raw.get().len(),
            Some(Payload::Finding(f)) => {
                2048 + f
                    .evidences
                    .iter()
                    .map(|e| 1024 + e.raw.get().len())
                    .sum::<usize>()
            }
            None => 0,
        }
}

fn sort_tail(out: &mut [Finding], start: usize) {
    if let Some(tail) = out.get_mut(start..) {
        tail.sort_by(|a, b| {
            (a.end_time, &a.finding_info.uid).cmp(&(b.end_time, &b.finding_info.uid))
        });
    }
}

/// Keep at most `cap` items, the earliest by (time, uid).
fn insert_capped(items: &mut Vec<Item>, item: Item, cap: usize) {
    let k = item.key();
    let at = items.partition_point(|x| x.key() < k);
    if items.len() >= cap && at >= items.len() {
        return;
    }
    items.insert(at, item);
    items.truncate(cap);
}

fn value_of<'a>(
    kind: CorrelationType,
    fields: &[FieldPath],
    get: &dyn Fn(&FieldPath) -> FieldValue<'a>,
) -> (u64, bool, f64) {
    match kind {
        CorrelationType::ValueCount => {
            let mut any = false;
            let texts: Vec<String> = fields
                .iter()
                .map(|p| {
                    let v = get(p);
                    if !matches!(v, FieldValue::Absent | FieldValue::Null) {
                        any = true;
                    }
                    value_text(v)
                })
                .collect();
            let parts: Vec<&[u8]> = texts.iter().map(|s| s.as_bytes()).collect();
            (fnv1a(&parts), any, 0.0)
        }
        CorrelationType::ValueSum => {
            let n = fields.iter().filter_map(|p| value_num(get(p))).sum();
            (0, true, n)
        }
        _ => (0, false, 0.0),
    }
}

fn evaluate(
    kind: CorrelationType,
    cond: Option<crate::correlation::CountCondition>,
    n_refs: usize,
    window: &[Item],
) -> (bool, f64) {
    let holds = |v: f64| cond.map(|c| c.holds(v));
    match kind {
        CorrelationType::EventCount => {
            let v = window.len() as f64;
            (holds(v).unwrap_or(false), v)
        }
        CorrelationType::ValueCount => {
            let mut vals: Vec<u64> = window
                .iter()
                .filter(|x| x.has_value)
                .map(|x| x.value)
                .collect();
            vals.sort_unstable();
            vals.dedup();
            let v = vals.len() as f64;
            (holds(v).unwrap_or(false), v)
        }
        CorrelationType::ValueSum => {
            let v: f64 = window.iter().map(|x| x.num).sum();
            (holds(v).unwrap_or(false), v)
        }
        CorrelationType::Temporal => {
            let mut seen = vec![false; n_refs];
            for x in window {
                if let Some(s) = seen.get_mut(x.pos as usize) {
                    *s = true;
                }
            }
            let v = seen.iter().filter(|s| **s).count() as f64;
            (holds(v).unwrap_or(v as usize == n_refs), v)
        }
        CorrelationType::TemporalOrdered => {
            // Greedy: the earliest event of rule 0, then the earliest later event of rule 1, ...
            let mut next = 0usize;
            let mut last_time = i64::MIN;
            for x in window {
                if x.pos as usize == next && x.time >= last_time {
                    next += 1;
                    last_time = x.time;
                    if next == n_refs {
                        break;
                    }
                }
            }
            let v = next as f64;
            (holds(v).unwrap_or(next == n_refs), v)
        }
    }
}

fn fmt_time(t: i64, with_date: bool) -> String {
    match chrono::DateTime::from_timestamp_millis(t) {
        Some(d) if with_date => d.format("%Y-%m-%d %H:%M").to_string(),
        Some(d) => d.format("%H:%M").to_string(),
        None => t.to_string(),
    }
}

#[allow(clippy::too_many_arguments)]
fn message(
    title: &str,
    first: Option<&Event>,
    evidences: &[Event],
    count: u64,
    start: i64,
    end: i64,
    off_hours: bool,
    corr: Option<(&crate::correlation::Correlation, f64)>,
) -> String {
    let mut m = format!("{title}: ");
    match first {
        Some(e) => {
            let who = e
                .actor
                .user
                .uid
                .as_deref()
                .or(e.actor.user.name.as_deref())
                .unwrap_or("an unknown principal");
            m.push_str(&format!("{who} ({})", e.actor.kind.as_str()));
            let mut ops: Vec<&str> = Vec::new();
            for ev in evidences {
                let op = ev.kms.operation.as_str();
                if !ops.contains(&op) {
                    ops.push(op);
                }
            }
            m.push_str(&format!(" called {}", ops.join("/")));
            if count > 1 {
                m.push_str(&format!(" {count} times"));
            }
            let mut keys: Vec<&str> = Vec::new();
            for ev in evidences {
                if let Some(k) = ev
                    .kms
                    .key
                    .as_ref()
                    .map(|k| k.uid.as_str())
                    .or(ev.kms.object_uid.as_deref())
                {
                    if !keys.contains(&k) {
                        keys.push(k);
                    }
                }
            }
            match keys.as_slice() {
                [] => {}
                [k] => m.push_str(&format!(" on {k}")),
                [k, rest @ ..] => m.push_str(&format!(" on {k} and {} other key(s)", rest.len())),
            }
        }
        None => m.push_str(&format!("{count} events")),
    }
    let same_day = start.div_euclid(86_400_000) == end.div_euclid(86_400_000);
    if count > 1 && end > start {
        m.push_str(&format!(
            " between {} and {} UTC",
            fmt_time(start, true),
            fmt_time(end, !same_day)
        ));
    } else {
        m.push_str(&format!(" at {} UTC", fmt_time(start, true)));
    }
    if off_hours {
        m.push_str(", outside business hours");
    }
    if let Some((c, v)) = corr {
        match c.kind {
            CorrelationType::ValueCount => {
                m.push_str(&format!(" ({v} distinct {})", c.fields.join("+")));
            }
            CorrelationType::ValueSum => {
                m.push_str(&format!(" (sum of {} = {v})", c.fields.join("+")));
            }
            CorrelationType::Temporal | CorrelationType::TemporalOrdered => {
                m.push_str(&format!(" ({v} of {} correlated rules)", c.rules.len()));
            }
            CorrelationType::EventCount => {}
        }
        if !c.group_by.is_empty() {
            m.push_str(&format!(
                " [{} window, by {}]",
                human_span(c.timespan_secs),
                c.group_by.join(", ")
            ));
        }
    }
    m.push('.');
    m
}

fn human_span(secs: i64) -> String {
    if secs % 86_400 == 0 {
        format!("{}d", secs / 86_400)
    } else if secs % 3600 == 0 {
        format!("{}h", secs / 3600)
    } else if secs % 60 == 0 {
        format!("{}m", secs / 60)
    } else {
        format!("{secs}s")
    }
}

/// The OCSF resource type of a `kms.object_uid` that is not a key: a Key Vault secret, a vault,
/// a GCP key ring, a logging sink or exclusion, or another cloud resource.
fn object_type(uid: &str) -> &'static str {
    if uid.contains("/secrets/") {
        "secret"
    } else if uid.contains(".vault.azure.") || uid.contains(".managedhsm.azure.") {
        "key_vault"
    } else if uid.contains("/keyRings/") {
        "key_ring"
    } else if uid.contains("/sinks/") || uid.contains("/exclusions/") {
        "logging_sink"
    } else {
        "cloud_resource"
    }
}
