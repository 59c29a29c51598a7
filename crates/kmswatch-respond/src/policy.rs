//! The response policy, in one place: which findings trigger which actions (playbooks), which
//! keys may be touched (allow/deny lists, break-glass), how fast (per-account token buckets),
//! how much (blast-radius cap), and what was already done (idempotency, pending approvals).
//!
//! Everything here is pure: time is passed in (`now_ms`), state is rebuilt from the journal by
//! [`PolicyState::apply`], so a restart restores pending approvals and rate/blast counters.

use crate::action::{Action, ActionKind, KeyRef, KeyState};
use crate::audit::{AuditRecord, Mode, Outcome, Phase};
use crate::config::{KeyMatch, Playbook, Rate, RespondConfig};
use globset::{Glob, GlobMatcher};
use kmswatch_model::{Finding, Provider};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

/// One hour, ms: the blast-radius window.
pub const BLAST_WINDOW_MS: i64 = 3_600_000;

/// Why the policy said no.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The key carries the break-glass tag/label.
    BreakGlass,
    /// The key matches the deny list.
    Denied(String),
    /// An allow list is configured and the key is not on it.
    NotAllowed,
    /// AWS-managed keys cannot be changed.
    ProviderManaged,
    /// The token bucket stayed empty longer than `rate_wait_max_ms`.
    RateLimited {
        /// How long the caller would have had to wait, ms.
        wait_ms: u64,
    },
    /// The blast-radius cap is reached: automatic actions halt.
    BlastRadius {
        /// Distinct keys acted on in the last hour.
        keys: usize,
        /// The cap.
        cap: u32,
    },
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::BreakGlass => write!(f, "break_glass: the key is tagged kmswatch:break-glass=true (label kmswatch-break-glass); kmswatch never touches it"),
            Refusal::Denied(why) => write!(f, "denied: the key matches the deny list ({why})"),
            Refusal::NotAllowed => write!(f, "not_allowed: an allow list is configured and the key is not on it"),
            Refusal::ProviderManaged => write!(f, "provider_managed: the key is managed by the cloud provider and cannot be changed"),
            Refusal::RateLimited { wait_ms } => write!(f, "rate_limited: the account's token bucket is empty (next token in {wait_ms} ms)"),
            Refusal::BlastRadius { keys, cap } => write!(f, "blast_radius: automatic actions already changed {keys} distinct keys in the last hour (cap {cap}); automatic actions are halted"),
        }
    }
}

/// A compiled key selector.
#[derive(Debug, Clone, Default)]
struct CompiledMatch {
    ids: Vec<(String, GlobMatcher)>,
    names: Vec<(String, GlobMatcher)>,
    tags: Vec<(String, Option<GlobMatcher>)>,
    accounts: Vec<String>,
}

fn glob(p: &str) -> Option<GlobMatcher> {
    Glob::new(p).ok().map(|g| g.compile_matcher())
}

impl CompiledMatch {
    fn new(m: &KeyMatch) -> CompiledMatch {
        CompiledMatch {
            ids: m
                .ids
                .iter()
                .filter_map(|p| Some((p.clone(), glob(p)?)))
                .collect(),
            names: m
                .names
                .iter()
                .filter_map(|p| Some((p.clone(), glob(p)?)))
                .collect(),
            tags: m
                .tags
                .iter()
                .map(|t| match t.split_once('=') {
                    Some((k, v)) => (k.to_string(), glob(v)),
                    None => (t.clone(), None),
                })
                .collect(),
            accounts: m.accounts.clone(),
        }
    }

    fn is_empty(&self) -> bool {
        self.ids.is_empty()
            && self.names.is_empty()
            && self.tags.is_empty()
            && self.accounts.is_empty()
    }

    /// The first selector that matches, described.
    fn matches(&self, key: &KeyRef, state: &KeyState) -> Option<String> {
        let mut ids = vec![key.uid.as_str(), key.name.as_str()];
        if let Some(r) = state.resolved_uid.as_deref() {
            ids.push(r);
        }
        // The bare AWS key id (the part after key/).
        let bare: Vec<String> = ids
            .iter()
            .filter_map(|i| i.rsplit_once(":key/").map(|(_, id)| id.to_string()))
            .collect();
        for (p, g) in &self.ids {
            if ids.iter().any(|i| g.is_match(i)) || bare.iter().any(|i| g.is_match(i)) {
                return Some(format!("id {p}"));
            }
        }
        let last = key.uid.rsplit('/').next().unwrap_or_default();
        for (p, g) in &self.names {
            if state.names.iter().any(|n| g.is_match(n)) || g.is_match(last) {
                return Some(format!("name {p}"));
            }
        }
        for (k, v) in &self.tags {
            if let Some(val) = state.tags.get(k) {
                if v.as_ref().is_none_or(|g| g.is_match(val)) {
                    return Some(format!("tag {k}"));
                }
            }
        }
        let account = state.account.as_ref().or(key.account.as_ref());
        if let Some(a) = account {
            if self.accounts.iter().any(|x| x == a) {
                return Some(format!("account {a}"));
            }
        }
        None
    }
}

/// A token bucket (tokens refill continuously at `per_second`, up to `burst`).
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: Rate,
    tokens: f64,
    last_ms: i64,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(rate: Rate, now_ms: i64) -> TokenBucket {
        TokenBucket {
            rate,
            tokens: f64::from(rate.burst),
            last_ms: now_ms,
        }
    }

    fn refill(&mut self, now_ms: i64) {
        if now_ms > self.last_ms {
            let dt = (now_ms - self.last_ms) as f64 / 1000.0;
            self.tokens = (self.tokens + dt * self.rate.per_second).min(f64::from(self.rate.burst));
            self.last_ms = now_ms;
        }
    }

    /// Take a token now, or say how long (ms) until one is available.
    pub fn try_take(&mut self, now_ms: i64) -> Result<(), u64> {
        self.refill(now_ms);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            let need = 1.0 - self.tokens;
            Err((need / self.rate.per_second * 1000.0).ceil() as u64)
        }
    }

    /// Record a token taken at `at_ms` (journal replay): never fails, never below zero.
    pub fn replay(&mut self, at_ms: i64) {
        self.refill(at_ms);
        self.tokens = (self.tokens - 1.0).max(0.0);
    }
}

/// What the policy decides for one action (before mode and budgets).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    /// Go on.
    Proceed,
    /// Nothing to do: the state already is the wanted one, or this action already ran.
    AlreadyApplied(String),
    /// No.
    Refused(Refusal),
}

/// An action a playbook asks for.
#[derive(Debug, Clone)]
pub struct PlannedAction {
    /// The playbook.
    pub playbook: String,
    /// Its mode (the stricter of the global and the playbook's).
    pub mode: Mode,
    /// The key.
    pub key: KeyRef,
    /// The action.
    pub action: Action,
}

/// The policy: compiled config plus the state rebuilt from the journal.
#[derive(Debug)]
pub struct Policy {
    cfg: RespondConfig,
    playbook_rules: Vec<Vec<GlobMatcher>>,
    allow: CompiledMatch,
    deny: CompiledMatch,
    /// The mutable part (journal-derived).
    pub state: PolicyState,
}

/// What the journal tells: pending approvals, finished actions, rate and blast counters.
#[derive(Debug, Default)]
pub struct PolicyState {
    seen: HashSet<String>,
    /// Action ids with a record that ends their automatic handling: every record but a plan
    /// that proceeds to execution (`planned`). See `Responder::has_work`.
    pub handled: HashSet<String>,
    /// Pending actions by action id (their plan record).
    pub pending: BTreeMap<String, AuditRecord>,
    /// Outcome of finished actions by action id (applied / already_applied).
    pub done: HashMap<String, Outcome>,
    /// Applied execute records by record id (for undo).
    pub executed: HashMap<String, AuditRecord>,
    /// (time, key) of automatic applied changes, oldest first.
    blast: VecDeque<(i64, String)>,
    buckets: HashMap<(Provider, String), TokenBucket>,
    /// When the last blast-radius halt finding was raised.
    pub halt_raised_ms: Option<i64>,
}

fn level_rank(level: Option<&str>) -> u8 {
    kmswatch_model::severity_of(level).1
}

impl Policy {
    /// Compile a validated config.
    pub fn new(cfg: RespondConfig) -> Policy {
        let playbook_rules = cfg
            .playbooks
            .iter()
            .map(|p| p.rules.iter().filter_map(|r| glob(r)).collect())
            .collect();
        Policy {
            allow: CompiledMatch::new(&cfg.allow),
            deny: CompiledMatch::new(&cfg.deny),
            playbook_rules,
            cfg,
            state: PolicyState::default(),
        }
    }

    /// The config.
    pub fn config(&self) -> &RespondConfig {
        &self.cfg
    }

    /// The actions the playbooks ask for this finding: for each matching playbook, each action,
    /// each key resource of a provider that parses.
    pub fn plan_finding(&self, f: &Finding) -> Vec<PlannedAction> {
        let mut out = Vec::new();
        for (pb, rules) in self.cfg.playbooks.iter().zip(&self.playbook_rules) {
            if !playbook_matches(pb, rules, f) {
                continue;
            }
            let mode = stricter(self.cfg.mode, pb.mode.unwrap_or(self.cfg.mode));
            for r in f.resources.iter().filter(|r| r.type_ == "kms_key") {
                if !pb.providers.is_empty() && !pb.providers.contains(&r.cloud_provider) {
                    continue;
                }
                let Ok(key) = KeyRef::parse(r.cloud_provider, &r.uid) else {
                    tracing::warn!(key = %r.uid, "finding resource is not a key id; skipped");
                    continue;
                };
                for spec in &pb.actions {
                    let mut action = Action::new(spec.kind);
                    action.rotation_period_days = spec
                        .rotation_period_days
                        .or((spec.kind == ActionKind::EnableRotation).then_some(365));
                    if let Some(v) = &key.version {
                        if r.cloud_provider == Provider::Gcp
                            && matches!(
                                spec.kind,
                                ActionKind::Disable
                                    | ActionKind::Enable
                                    | ActionKind::CancelDeletion
                            )
                        {
                            action.versions = vec![v.clone()];
                        }
                    }
                    match spec.kind {
                        ActionKind::RevokeGrant | ActionKind::RetireGrant => {
                            action.grant_id = grant_id_of(f);
                            if action.grant_id.is_none() {
                                tracing::warn!(finding = %f.finding_info.uid, "grant action but the finding names no grant; skipped");
                                continue;
                            }
                        }
                        ActionKind::Tag => action.tag_value = Some(f.finding_info.uid.clone()),
                        _ => {}
                    }
                    out.push(PlannedAction {
                        playbook: pb.name.clone(),
                        mode,
                        key: key.clone(),
                        action,
                    });
                }
            }
        }
        out
    }

    /// Allow/deny/break-glass and idempotency, from the key's state (read-only).
    pub fn check(&self, action_id: &str, key: &KeyRef, state: &KeyState, action: &Action) -> Check {
        if state.is_break_glass() {
            return Check::Refused(Refusal::BreakGlass);
        }
        if let Some(why) = self.deny.matches(key, state) {
            return Check::Refused(Refusal::Denied(why));
        }
        if !self.allow.is_empty() && self.allow.matches(key, state).is_none() {
            return Check::Refused(Refusal::NotAllowed);
        }
        if state.manager.as_deref() == Some("AWS") {
            return Check::Refused(Refusal::ProviderManaged);
        }
        if let Some(o) = self.state.done.get(action_id) {
            return Check::AlreadyApplied(format!(
                "action {action_id} already ran ({})",
                o.as_str()
            ));
        }
        if action.already_applied(state) {
            return Check::AlreadyApplied(format!("the key already is {}", state.status));
        }
        Check::Proceed
    }

    /// The blast-radius cap for an automatic action on `key` at `now_ms`: acting again on a key
    /// already counted is free; a new key past the cap is refused.
    pub fn check_blast(&mut self, key: &str, now_ms: i64) -> Result<(), Refusal> {
        self.state.expire_blast(now_ms);
        let keys: HashSet<&str> = self.state.blast.iter().map(|(_, k)| k.as_str()).collect();
        if keys.contains(key) {
            return Ok(());
        }
        let cap = self.cfg.blast_radius.max_keys_per_hour;
        if keys.len() >= cap as usize {
            return Err(Refusal::BlastRadius {
                keys: keys.len(),
                cap,
            });
        }
        Ok(())
    }

    /// Take a rate-limit token for the key's account, or say how long to wait.
    pub fn take_token(&mut self, key: &KeyRef, now_ms: i64) -> Result<(), u64> {
        let rate = self.cfg.rate_limits.of(key.provider);
        self.state
            .buckets
            .entry((key.provider, key.account.clone().unwrap_or_default()))
            .or_insert_with(|| TokenBucket::new(rate, now_ms))
            .try_take(now_ms)
    }

    /// Fold one journal record read back from the journal into the state (idempotent per
    /// record id); changes it records consume rate-limit tokens.
    pub fn apply(&mut self, r: &AuditRecord) {
        let rate = self.cfg.rate_limits.of(r.provider);
        self.state.apply(r, rate, true);
    }

    /// Fold a record this process just wrote (its token was taken by [`Policy::take_token`]).
    pub fn apply_live(&mut self, r: &AuditRecord) {
        let rate = self.cfg.rate_limits.of(r.provider);
        self.state.apply(r, rate, false);
    }

    /// Whether a halt finding should be raised now (at most one per hour).
    pub fn should_raise_halt(&self, now_ms: i64) -> bool {
        self.state
            .halt_raised_ms
            .is_none_or(|t| now_ms - t >= BLAST_WINDOW_MS)
    }
}

impl PolicyState {
    fn expire_blast(&mut self, now_ms: i64) {
        while self
            .blast
            .front()
            .is_some_and(|(t, _)| now_ms - *t >= BLAST_WINDOW_MS)
        {
            self.blast.pop_front();
        }
    }

    /// Distinct keys changed by automatic actions in the hour before `now_ms`.
    pub fn blast_keys(&mut self, now_ms: i64) -> usize {
        self.expire_blast(now_ms);
        self.blast
            .iter()
            .map(|(_, k)| k)
            .collect::<HashSet<_>>()
            .len()
    }

    fn apply(&mut self, r: &AuditRecord, rate: Rate, replay_tokens: bool) {
        if !self.seen.insert(r.record_id.clone()) {
            return;
        }
        if (r.phase, r.outcome) != (Phase::Plan, Outcome::Planned) {
            self.handled.insert(r.action_id.clone());
        }
        match (r.phase, r.outcome) {
            (Phase::Plan, Outcome::Pending) => {
                self.pending.insert(r.action_id.clone(), r.clone());
            }
            (Phase::Reject, _) => {
                self.pending.remove(&r.action_id);
            }
            (Phase::Execute, o) => {
                self.pending.remove(&r.action_id);
                if matches!(o, Outcome::Applied | Outcome::AlreadyApplied) {
                    self.done.insert(r.action_id.clone(), o);
                }
                if o == Outcome::Applied {
                    self.executed.insert(r.record_id.clone(), r.clone());
                    if r.automatic {
                        self.blast.push_back((r.time, r.key.clone()));
                    }
                }
                if replay_tokens && matches!(o, Outcome::Applied | Outcome::Failed) {
                    self.buckets
                        .entry((r.provider, r.account.clone().unwrap_or_default()))
                        .or_insert_with(|| TokenBucket::new(rate, r.time))
                        .replay(r.time);
                }
            }
            (Phase::Halt, _) => {
                self.halt_raised_ms = Some(self.halt_raised_ms.map_or(r.time, |t| t.max(r.time)));
            }
            _ => {}
        }
    }
}

fn stricter(a: Mode, b: Mode) -> Mode {
    let rank = |m: Mode| match m {
        Mode::DryRun => 0,
        Mode::Approve => 1,
        Mode::Enforce => 2,
    };
    if rank(a) <= rank(b) {
        a
    } else {
        b
    }
}

fn playbook_matches(pb: &Playbook, rules: &[GlobMatcher], f: &Finding) -> bool {
    let a = &f.finding_info.analytic;
    if !pb.rules.is_empty()
        && !rules
            .iter()
            .any(|g| g.is_match(&a.uid) || g.is_match(&a.name))
    {
        return false;
    }
    if let Some(min) = &pb.min_level {
        if f.severity_id < level_rank(Some(min)) {
            return false;
        }
    }
    if !pb.tags.is_empty()
        && !pb
            .tags
            .iter()
            .any(|t| f.kmswatch.tags.iter().any(|x| x.eq_ignore_ascii_case(t)))
    {
        return false;
    }
    true
}

/// The grant named by the finding: `kmswatch.group.grant_id`, else the contributing events'
/// CloudTrail `requestParameters.grantId` / `responseElements.grantId`.
pub fn grant_id_of(f: &Finding) -> Option<String> {
    if let Some(g) = f.kmswatch.group.get("grant_id").filter(|g| !g.is_empty()) {
        return Some(g.clone());
    }
    for e in &f.evidences {
        let Ok(raw) = serde_json::from_str::<serde_json::Value>(e.raw.get()) else {
            continue;
        };
        for path in ["/requestParameters/grantId", "/responseElements/grantId"] {
            if let Some(g) = raw.pointer(path).and_then(|v| v.as_str()) {
                return Some(g.to_string());
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ActionSpec, BlastRadius};

    fn state(tags: &[(&str, &str)], names: &[&str]) -> KeyState {
        KeyState {
            status: "Enabled".into(),
            enabled: true,
            names: names.iter().map(|s| s.to_string()).collect(),
            tags: tags
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            account: Some("111122223333".into()),
            ..Default::default()
        }
    }

    fn key(id: &str) -> KeyRef {
        KeyRef::parse(
            Provider::Aws,
            &format!("arn:aws:kms:us-east-1:111122223333:key/{id}"),
        )
        .unwrap()
    }

    #[test]
    fn allow_deny_break_glass() {
        let cfg = RespondConfig {
            allow: KeyMatch {
                names: vec!["alias/app-*".into()],
                tags: vec!["env=prod*".into()],
                ..Default::default()
            },
            deny: KeyMatch {
                ids: vec!["deny-me".into()],
                tags: vec!["owner=payments".into()],
                ..Default::default()
            },
            ..Default::default()
        };
        let p = Policy::new(cfg);
        let d = Action::new(ActionKind::Disable);
        assert_eq!(
            p.check("a", &key("k1"), &state(&[], &["alias/app-one"]), &d),
            Check::Proceed
        );
        assert_eq!(
            p.check("a", &key("k1"), &state(&[("env", "production")], &[]), &d),
            Check::Proceed
        );
        assert_eq!(
            p.check("a", &key("k1"), &state(&[], &["alias/other"]), &d),
            Check::Refused(Refusal::NotAllowed)
        );
        assert!(matches!(
            p.check("a", &key("deny-me"), &state(&[], &["alias/app-x"]), &d),
            Check::Refused(Refusal::Denied(_))
        ));
        assert!(matches!(
            p.check(
                "a",
                &key("k2"),
                &state(&[("owner", "payments")], &["alias/app-x"]),
                &d
            ),
            Check::Refused(Refusal::Denied(_))
        ));
        assert_eq!(
            p.check(
                "a",
                &key("k3"),
                &state(&[("kmswatch:break-glass", "true")], &["alias/app-x"]),
                &d
            ),
            Check::Refused(Refusal::BreakGlass)
        );
        let mut off = state(&[], &["alias/app-x"]);
        off.enabled = false;
        off.status = "Disabled".into();
        assert!(matches!(
            p.check("a", &key("k4"), &off, &d),
            Check::AlreadyApplied(_)
        ));
    }

    #[test]
    fn token_bucket_limits_and_refills() {
        let rate = Rate {
            per_second: 5.0,
            burst: 5,
        };
        let mut b = TokenBucket::new(rate, 0);
        for _ in 0..5 {
            assert!(b.try_take(0).is_ok());
        }
        assert_eq!(b.try_take(0), Err(200));
        assert!(b.try_take(200).is_ok());
        assert!(b.try_take(200).is_err());
        // A second later the bucket is full again, capped at burst.
        for _ in 0..5 {
            assert!(b.try_take(2000).is_ok());
        }
        assert!(b.try_take(2000).is_err());
    }

    #[test]
    fn blast_radius_counts_distinct_keys_per_hour() {
        let mut p = Policy::new(RespondConfig {
            blast_radius: BlastRadius {
                max_keys_per_hour: 2,
            },
            ..Default::default()
        });
        let rec = |id: &str, key: &str, t: i64| AuditRecord {
            kind: crate::audit::AUDIT_KIND.into(),
            record_id: id.into(),
            action_id: id.into(),
            time: t,
            phase: Phase::Execute,
            outcome: Outcome::Applied,
            mode: Mode::Enforce,
            automatic: true,
            who: "kmswatch".into(),
            provider: Provider::Aws,
            key: key.into(),
            account: None,
            action: Action::new(ActionKind::Disable),
            reason: String::new(),
            finding_id: None,
            rule_id: None,
            playbook: None,
            state_before: None,
            state_after: None,
            undo: None,
            undo_command: None,
            detail: None,
            retryable: None,
            undo_of: None,
        };
        p.apply(&rec("r1", "k1", 1000));
        p.apply(&rec("r1", "k1", 1000)); // same record twice counts once
        p.apply(&rec("r2", "k2", 2000));
        assert!(
            p.check_blast("k1", 3000).is_ok(),
            "a key already counted is free"
        );
        assert_eq!(
            p.check_blast("k3", 3000),
            Err(Refusal::BlastRadius { keys: 2, cap: 2 })
        );
        assert!(
            p.check_blast("k3", 1000 + BLAST_WINDOW_MS).is_ok(),
            "the window slides"
        );
    }

    #[test]
    fn playbooks_match_rule_level_tags() {
        let cfg = RespondConfig {
            mode: Mode::Enforce,
            playbooks: vec![Playbook {
                name: "pb".into(),
                rules: vec!["kms_human_*".into()],
                min_level: Some("high".into()),
                tags: vec!["attack.exfiltration".into()],
                providers: vec![],
                actions: vec![ActionSpec {
                    kind: ActionKind::Disable,
                    rotation_period_days: None,
                }],
                mode: Some(Mode::Approve),
            }],
            ..Default::default()
        };
        cfg.validate().unwrap();
        let p = Policy::new(cfg);
        let mut f = crate::testutil::finding(
            "kms_human_decrypt",
            4,
            &[(Provider::Aws, "arn:aws:kms:us-east-1:111122223333:key/k1")],
        );
        f.kmswatch.tags = vec!["attack.exfiltration".into()];
        let plan = p.plan_finding(&f);
        assert_eq!(plan.len(), 1);
        assert_eq!(plan[0].mode, Mode::Approve, "the stricter mode wins");
        f.severity_id = 3;
        assert!(p.plan_finding(&f).is_empty(), "below min_level");
        f.severity_id = 5;
        f.kmswatch.tags.clear();
        assert!(p.plan_finding(&f).is_empty(), "tag missing");
    }

    #[test]
    fn validation() {
        let mut cfg = RespondConfig::default();
        cfg.validate().unwrap();
        cfg.blast_radius.max_keys_per_hour = 0;
        assert!(cfg.validate().is_err());
        let cfg: Result<RespondConfig, _> = serde_json::from_value(
            serde_json::json!({"playbooks": [{"name": "x", "actions": [{"kind": "schedule_key_deletion"}]}]}),
        );
        assert!(cfg.is_err(), "there is no deletion action to configure");
        let cfg: Result<RespondConfig, _> =
            serde_json::from_value(serde_json::json!({"mdoe": "enforce"}));
        assert!(cfg.is_err(), "unknown keys are errors");
    }
}
