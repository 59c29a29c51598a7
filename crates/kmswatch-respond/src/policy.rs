//! The response policy, in one place: which findings trigger which actions (playbooks), which
//! keys may be touched (allow/deny lists, break-glass), how fast (per-account token buckets),
//! how much (blast-radius cap), and what was already done (idempotency, pending approvals).
//!
//! Everything here is pure: time is passed in (`now_ms`), state is rebuilt from the journal by
//! [`PolicyState::apply`], so a restart restores pending approvals and rate/blast counters.

use crate::action::{Action, ActionKind, KeyRef, KeyState};
use crate::audit::{AuditRecord, Mode, Outcome, Phase};
use crate::config::{compile_glob, compile_globs, KeyMatch, Playbook, Rate, RespondConfig};
use crate::error::RespondError;
use globset::GlobMatcher;
use kmswatch_model::resource::{self, AzureCloud};
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
    /// The key is outside what the responder is configured to serve (its AWS accounts, Azure
    /// cloud and vaults, GCP projects).
    OutOfScope(String),
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
            Refusal::OutOfScope(why) => write!(f, "out_of_scope: {why}"),
            Refusal::ProviderManaged => write!(f, "provider_managed: the key is managed by the cloud provider and cannot be changed"),
            Refusal::RateLimited { wait_ms } => write!(f, "rate_limited: the account's token bucket is empty (next token in {wait_ms} ms)"),
            Refusal::BlastRadius { keys, cap } => write!(f, "blast_radius: automatic actions already changed {keys} distinct keys in the last hour (cap {cap}); automatic actions are halted"),
        }
    }
}

/// A compiled key selector (`allow` or `deny`).
#[derive(Debug, Clone, Default)]
struct CompiledMatch {
    ids: Vec<(String, GlobMatcher)>,
    names: Vec<(String, GlobMatcher)>,
    /// (selector as written, tag key, value glob or any value)
    tags: Vec<(String, String, Option<GlobMatcher>)>,
    accounts: Vec<(String, GlobMatcher)>,
}

/// The bare AWS key id of an ARN (`...:key/ID`).
fn bare_key_id(id: &str) -> Option<&str> {
    id.rsplit_once(":key/").map(|(_, id)| id)
}

impl CompiledMatch {
    fn new(m: &KeyMatch, field: &str) -> Result<CompiledMatch, RespondError> {
        let tags = m
            .tags
            .iter()
            .enumerate()
            .map(|(i, t)| {
                Ok(match t.split_once('=') {
                    Some((k, v)) => (
                        t.clone(),
                        k.to_string(),
                        Some(compile_glob(&format!("{field}.tags[{i}]"), v)?),
                    ),
                    None => (t.clone(), t.clone(), None),
                })
            })
            .collect::<Result<_, RespondError>>()?;
        Ok(CompiledMatch {
            ids: compile_globs(&format!("{field}.ids"), &m.ids)?,
            names: compile_globs(&format!("{field}.names"), &m.names)?,
            tags,
            accounts: compile_globs(&format!("{field}.accounts"), &m.accounts)?,
        })
    }

    fn is_empty(&self) -> bool {
        self.ids.is_empty()
            && self.names.is_empty()
            && self.tags.is_empty()
            && self.accounts.is_empty()
    }

    /// The first selector that matches from the key reference alone (no call needed): ids
    /// against the key id (and an ARN's bare key id), names against the key's own name (an AWS
    /// alias given as the key, an Azure key name, a GCP crypto key id), accounts against the
    /// account the reference names.
    fn matches_static(&self, key: &KeyRef) -> Option<String> {
        let ids = [Some(key.uid.as_str()), bare_key_id(&key.uid)];
        for (p, g) in &self.ids {
            if ids.iter().flatten().any(|i| g.is_match(i)) {
                return Some(format!("id {p}"));
            }
        }
        let last = key.uid.rsplit('/').next().unwrap_or_default();
        let alias = key
            .uid
            .find("alias/")
            .and_then(|i| key.uid.get(i..))
            .filter(|_| key.provider == Provider::Aws);
        for (p, g) in &self.names {
            if g.is_match(last) || alias.is_some_and(|a| g.is_match(a)) {
                return Some(format!("name {p}"));
            }
        }
        if let Some(a) = &key.account {
            if let Some((p, _)) = self.accounts.iter().find(|(_, g)| g.is_match(a)) {
                return Some(format!("account {p}"));
            }
        }
        None
    }

    /// Whether a selector that did not match statically could still match once the key's
    /// state is read: tags; AWS aliases; the resolved ARN or account of a key given by a bare
    /// id or an alias.
    fn may_match_state(&self, key: &KeyRef) -> bool {
        let aws = key.provider == Provider::Aws;
        let unresolved = aws && (key.account.is_none() || key.uid.contains("alias/"));
        !self.tags.is_empty()
            || (aws && !self.names.is_empty())
            || (unresolved && !self.ids.is_empty())
            || (key.account.is_none() && !self.accounts.is_empty())
    }

    /// The first selector that matches, from the reference and the state read by describe.
    fn matches(&self, key: &KeyRef, state: &KeyState) -> Option<String> {
        if let Some(m) = self.matches_static(key) {
            return Some(m);
        }
        if let Some(r) = state.resolved_uid.as_deref() {
            for (p, g) in &self.ids {
                if g.is_match(r) || bare_key_id(r).is_some_and(|b| g.is_match(b)) {
                    return Some(format!("id {p}"));
                }
            }
        }
        for (p, g) in &self.names {
            if state.names.iter().any(|n| g.is_match(n)) {
                return Some(format!("name {p}"));
            }
        }
        for (t, k, v) in &self.tags {
            if let Some(val) = state.tags.get(k) {
                if v.as_ref().is_none_or(|g| g.is_match(val)) {
                    return Some(format!("tag {t}"));
                }
            }
        }
        if let Some(a) = &state.account {
            if let Some((p, _)) = self.accounts.iter().find(|(_, g)| g.is_match(a)) {
                return Some(format!("account {p}"));
            }
        }
        None
    }
}

/// What each responder is configured to serve: a key outside it is refused before any call.
#[derive(Debug, Clone, Default)]
struct Scope {
    /// AWS accounts (`aws.accounts` keys and `aws.account_ids`); empty: any.
    aws_accounts: Vec<String>,
    /// The Azure cloud of the responder (its vault hosts must be of it).
    azure_cloud: Option<AzureCloud>,
    /// Azure vault hosts (globs); empty: any vault of the cloud.
    azure_vaults: Vec<(String, GlobMatcher)>,
    /// GCP projects (globs); empty: any.
    gcp_projects: Vec<(String, GlobMatcher)>,
}

impl Scope {
    fn check(&self, key: &KeyRef, account: Option<&str>) -> Result<(), Refusal> {
        let out = |m: String| Err(Refusal::OutOfScope(m));
        match key.provider {
            Provider::Aws => match account {
                Some(a) if !self.aws_accounts.is_empty() && !self.aws_accounts.iter().any(|x| x == a) => out(format!(
                    "AWS account {a} is not one the responder serves (aws.accounts, aws.account_ids)"
                )),
                _ => Ok(()),
            },
            Provider::Azure => {
                let Some(host) = key
                    .vault
                    .as_deref()
                    .and_then(|v| v.strip_prefix("https://"))
                    .and_then(|h| resource::parse_azure_vault_authority(h).ok())
                else {
                    return out("no valid Key Vault host".into());
                };
                if let Some(c) = self.azure_cloud {
                    if host.cloud != c {
                        return out(format!(
                            "vault {host} is not in the responder's Azure cloud (azure.cloud)"
                        ));
                    }
                }
                let h = host.host();
                if !self.azure_vaults.is_empty() && !self.azure_vaults.iter().any(|(_, g)| g.is_match(&h)) {
                    return out(format!("vault {h} is not one the responder serves (azure.vaults)"));
                }
                Ok(())
            }
            Provider::Gcp => match account {
                Some(p) if !self.gcp_projects.is_empty() && !self.gcp_projects.iter().any(|(_, g)| g.is_match(p)) => out(format!(
                    "project {p} is not one the responder serves (gcp.projects)"
                )),
                _ => Ok(()),
            },
        }
    }
}

/// Everything of the config that is compiled once: globs, selectors, scopes, trusted
/// locations. [`RespondConfig::validate`] is "this compiles".
#[derive(Debug, Clone)]
pub(crate) struct Compiled {
    playbook_rules: Vec<Vec<GlobMatcher>>,
    allow: CompiledMatch,
    deny: CompiledMatch,
    scope: Scope,
    pub(crate) provenance: crate::provenance::CompiledProvenance,
}

impl Compiled {
    pub(crate) fn new(cfg: &RespondConfig) -> Result<Compiled, RespondError> {
        cfg.validate_fields()?;
        let playbook_rules = cfg
            .playbooks
            .iter()
            .enumerate()
            .map(|(i, p)| {
                compile_globs(&format!("playbooks[{i}].rules"), &p.rules)
                    .map(|v| v.into_iter().map(|(_, g)| g).collect())
            })
            .collect::<Result<_, _>>()?;
        let scope = Scope {
            aws_accounts: cfg
                .aws
                .as_ref()
                .map(|a| a.accounts.keys().chain(&a.account_ids).cloned().collect())
                .unwrap_or_default(),
            azure_cloud: cfg.azure.as_ref().map(|a| a.cloud.cloud()),
            azure_vaults: match &cfg.azure {
                Some(a) => compile_globs("azure.vaults", &a.vaults)?,
                None => Vec::new(),
            },
            gcp_projects: match &cfg.gcp {
                Some(g) => compile_globs("gcp.projects", &g.projects)?,
                None => Vec::new(),
            },
        };
        Ok(Compiled {
            playbook_rules,
            allow: CompiledMatch::new(&cfg.allow, "allow")?,
            deny: CompiledMatch::new(&cfg.deny, "deny")?,
            scope,
            provenance: crate::provenance::CompiledProvenance::new(&cfg.provenance)?,
        })
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

/// A finding's target refused before any call: its key id (or grant id) does not follow the
/// provider's grammar (a forged or damaged record). Recorded, never acted on.
#[derive(Debug, Clone)]
pub struct InvalidTarget {
    /// The playbook.
    pub playbook: String,
    /// Its mode.
    pub mode: Mode,
    /// The cloud the finding names.
    pub provider: Provider,
    /// The id as the finding gives it (cut to a bounded length).
    pub key: String,
    /// The (first) action the playbook asks for.
    pub action: ActionKind,
    /// Why it was refused.
    pub reason: String,
}

/// An AWS KMS grant id: 1–128 ASCII letters and digits.
pub fn is_grant_id(s: &str) -> bool {
    (1..=128).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// The policy: compiled config plus the state rebuilt from the journal.
#[derive(Debug)]
pub struct Policy {
    cfg: RespondConfig,
    compiled: Compiled,
    /// The mutable part (journal-derived).
    pub state: PolicyState,
}

/// What the journal tells: pending approvals, finished actions, rate and blast counters.
#[derive(Debug, Default)]
pub struct PolicyState {
    seen: HashSet<String>,
    actions: HashSet<String>,
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
    /// Validate and compile a config (an invalid glob is an error naming field and pattern).
    pub fn new(cfg: RespondConfig) -> Result<Policy, RespondError> {
        Ok(Policy {
            compiled: Compiled::new(&cfg)?,
            cfg,
            state: PolicyState::default(),
        })
    }

    /// The config.
    pub fn config(&self) -> &RespondConfig {
        &self.cfg
    }

    pub(crate) fn compiled(&self) -> &Compiled {
        &self.compiled
    }

    /// The actions the playbooks ask for this finding: for each matching playbook, each action,
    /// each key resource whose id passes the grammar ([`KeyRef::parse`]). Resources that do
    /// not (and grant actions without a valid grant id) are left out here; see
    /// [`Policy::plan`].
    pub fn plan_finding(&self, f: &Finding) -> Vec<PlannedAction> {
        self.plan(f).0
    }

    /// The playbooks' actions for this finding, and the targets that were refused before any
    /// call because the finding's key id (or grant id) does not follow the provider's grammar.
    pub fn plan(&self, f: &Finding) -> (Vec<PlannedAction>, Vec<InvalidTarget>) {
        let mut out = Vec::new();
        let mut invalid = Vec::new();
        for (pb, rules) in self.cfg.playbooks.iter().zip(&self.compiled.playbook_rules) {
            if !playbook_matches(pb, rules, f) {
                continue;
            }
            let mode = stricter(self.cfg.mode, pb.mode.unwrap_or(self.cfg.mode));
            for r in f.resources.iter().filter(|r| r.type_ == "kms_key") {
                if !pb.providers.is_empty() && !pb.providers.contains(&r.cloud_provider) {
                    continue;
                }
                let key = match KeyRef::parse(r.cloud_provider, &r.uid) {
                    Ok(k) => k,
                    Err(e) => {
                        invalid.push(InvalidTarget {
                            playbook: pb.name.clone(),
                            mode,
                            provider: r.cloud_provider,
                            key: crate::action::quote(&r.uid),
                            action: pb.actions.first().map_or(ActionKind::Tag, |a| a.kind),
                            reason: e.to_string(),
                        });
                        continue;
                    }
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
                        ActionKind::RevokeGrant | ActionKind::RetireGrant => match grant_id_of(f) {
                            Some(g) if is_grant_id(&g) => action.grant_id = Some(g),
                            Some(g) => {
                                invalid.push(InvalidTarget {
                                        playbook: pb.name.clone(),
                                        mode,
                                        provider: r.cloud_provider,
                                        key: key.uid.clone(),
                                        action: spec.kind,
                                        reason: format!(
                                            "invalid grant id {:?}: a KMS grant id is 1-128 letters and digits",
                                            crate::action::quote(&g)
                                        ),
                                    });
                                continue;
                            }
                            None => {
                                tracing::warn!(finding = %f.finding_info.uid, "grant action but the finding names no grant; skipped");
                                continue;
                            }
                        },
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
        (out, invalid)
    }

    /// The static pre-check, decided from the key reference alone before anything touches
    /// the network: the responder's scope (AWS accounts, Azure cloud and vaults, GCP
    /// projects), the deny list by id/name/account, the allow list where the reference alone
    /// decides it, and whether this action already ran. Only a key that passes may be
    /// described. (The grammar was checked when the [`KeyRef`] was parsed.)
    pub fn precheck(&self, action_id: &str, key: &KeyRef) -> Check {
        if let Err(r) = self.compiled.scope.check(key, key.account.as_deref()) {
            return Check::Refused(r);
        }
        if let Some(why) = self.compiled.deny.matches_static(key) {
            return Check::Refused(Refusal::Denied(why));
        }
        let allow = &self.compiled.allow;
        if !allow.is_empty() && allow.matches_static(key).is_none() && !allow.may_match_state(key) {
            return Check::Refused(Refusal::NotAllowed);
        }
        if let Some(o) = self.state.done.get(action_id) {
            return Check::AlreadyApplied(format!(
                "action {action_id} already ran ({})",
                o.as_str()
            ));
        }
        Check::Proceed
    }

    /// The checks that need the key's state (after the read-only describe): break-glass,
    /// deny and allow lists with tags, aliases and the resolved id and account, the scope of
    /// the account the provider reports, provider-managed keys, and whether the state already
    /// is the wanted one.
    pub fn check(&self, action_id: &str, key: &KeyRef, state: &KeyState, action: &Action) -> Check {
        if state.is_break_glass() {
            return Check::Refused(Refusal::BreakGlass);
        }
        if let Some(why) = self.compiled.deny.matches(key, state) {
            return Check::Refused(Refusal::Denied(why));
        }
        if !self.compiled.allow.is_empty() && self.compiled.allow.matches(key, state).is_none() {
            return Check::Refused(Refusal::NotAllowed);
        }
        let account = state.account.as_deref().or(key.account.as_deref());
        if let Err(r) = self.compiled.scope.check(key, account) {
            return Check::Refused(r);
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
    /// Whether the journal has any record of this action.
    pub fn seen_action(&self, action_id: &str) -> bool {
        self.actions.contains(action_id)
    }

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
        self.actions.insert(r.action_id.clone());
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

    /// Key `n`'s ARN (`k1` -> `...:key/00000001-0000-4000-8000-000000000000`).
    fn arn(n: u32) -> String {
        format!("arn:aws:kms:us-east-1:111122223333:key/{n:08x}-0000-4000-8000-000000000000")
    }

    fn key(id: &str) -> KeyRef {
        let n = id.trim_start_matches('k').parse().unwrap_or(99);
        KeyRef::parse(Provider::Aws, &arn(n)).unwrap()
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
                ids: vec!["00000063-*".into()],
                tags: vec!["owner=payments".into()],
                ..Default::default()
            },
            ..Default::default()
        };
        let p = Policy::new(cfg).unwrap();
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
            p.check("a", &key("k99"), &state(&[], &["alias/app-x"]), &d),
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
        })
        .unwrap();
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
            basis: None,
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
        let p = Policy::new(cfg).unwrap();
        let mut f = crate::testutil::finding("kms_human_decrypt", 4, &[(Provider::Aws, &arn(1))]);
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

    /// The pre-check decides before any call what the key reference alone decides: an allow
    /// list that excludes the key, a deny list by id or account, the responder's scope.
    #[test]
    fn precheck_decides_what_the_reference_decides() {
        let p = |allow: KeyMatch, deny: KeyMatch| {
            Policy::new(RespondConfig {
                allow,
                deny,
                aws: Some(crate::aws::AwsConfig {
                    account_ids: vec!["111122223333".into()],
                    ..Default::default()
                }),
                ..Default::default()
            })
            .unwrap()
        };
        let ids = |v: &[&str]| KeyMatch {
            ids: v.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        };
        let by_id = p(ids(&["00000001-*"]), KeyMatch::default());
        assert_eq!(by_id.precheck("a", &key("k1")), Check::Proceed);
        assert_eq!(
            by_id.precheck("a", &key("k2")),
            Check::Refused(Refusal::NotAllowed),
            "an allow list by id that excludes the key refuses before describe"
        );
        let by_tag = p(
            KeyMatch {
                tags: vec!["env=prod".into()],
                ..Default::default()
            },
            KeyMatch::default(),
        );
        assert_eq!(
            by_tag.precheck("a", &key("k2")),
            Check::Proceed,
            "tags are only known after the read-only describe"
        );
        let deny = p(
            KeyMatch::default(),
            KeyMatch {
                accounts: vec!["1111222233*".into()],
                ..Default::default()
            },
        );
        assert!(matches!(
            deny.precheck("a", &key("k1")),
            Check::Refused(Refusal::Denied(_))
        ));
        let other_account = KeyRef::parse(
            Provider::Aws,
            "arn:aws:kms:us-east-1:999999999999:key/00000001-0000-4000-8000-000000000000",
        )
        .unwrap();
        assert!(matches!(
            by_tag.precheck("a", &other_account),
            Check::Refused(Refusal::OutOfScope(_))
        ));
        // Azure: only the configured cloud and vaults.
        let az = Policy::new(RespondConfig {
            azure: Some(crate::azure::AzureConfig {
                vaults: vec!["kv-prod*.vault.azure.net".into()],
                static_token: Some(crate::http::Secret("t".into())),
                ..Default::default()
            }),
            ..Default::default()
        })
        .unwrap();
        let k = |u: &str| KeyRef::parse(Provider::Azure, u).unwrap();
        assert_eq!(
            az.precheck("a", &k("https://kv-prod1.vault.azure.net/keys/k")),
            Check::Proceed
        );
        assert!(matches!(
            az.precheck("a", &k("https://kv-test.vault.azure.net/keys/k")),
            Check::Refused(Refusal::OutOfScope(_))
        ));
        assert!(matches!(
            az.precheck("a", &k("https://kv-prod1.vault.azure.cn/keys/k")),
            Check::Refused(Refusal::OutOfScope(_))
        ));
    }

    /// Every glob is compiled by validate: an invalid one is an error naming field and
    /// pattern (it used to be dropped, and an allow list of only invalid globs matched all).
    #[test]
    fn invalid_globs_fail_validation_with_field_and_pattern() {
        let cases: Vec<(&str, RespondConfig)> = vec![
            (
                "allow.ids[0]",
                RespondConfig {
                    allow: KeyMatch {
                        ids: vec!["prod-[".into()],
                        ..Default::default()
                    },
                    ..Default::default()
                },
            ),
            (
                "allow.names[1]",
                RespondConfig {
                    allow: KeyMatch {
                        names: vec!["alias/ok".into(), "alias/{a".into()],
                        ..Default::default()
                    },
                    ..Default::default()
                },
            ),
            (
                "deny.tags[0]",
                RespondConfig {
                    deny: KeyMatch {
                        tags: vec!["env=prod[".into()],
                        ..Default::default()
                    },
                    ..Default::default()
                },
            ),
            (
                "deny.accounts[0]",
                RespondConfig {
                    deny: KeyMatch {
                        accounts: vec!["[1".into()],
                        ..Default::default()
                    },
                    ..Default::default()
                },
            ),
            (
                "playbooks[0].rules[0]",
                RespondConfig {
                    playbooks: vec![Playbook::new("pb", &["kms_["], &[ActionKind::Disable])],
                    ..Default::default()
                },
            ),
        ];
        for (field, cfg) in cases {
            let e = cfg.validate().expect_err(field).to_string();
            assert!(e.contains(field), "{field}: {e}");
            let pattern = ["prod-[", "alias/{a", "prod[", "[1", "kms_["]
                .iter()
                .find(|p| e.contains(*p));
            assert!(pattern.is_some(), "the pattern is named: {e}");
            assert!(Policy::new(cfg).is_err());
        }
    }
}
