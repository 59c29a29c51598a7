//! The [`Responder`]: the one entry point. It turns findings (playbooks) and people's requests
//! (CLI) into plan → execute steps under the [`Policy`], writes every step to the journal and
//! returns the audit records (and any findings it raises) to the caller.

use crate::action::{Action, ActionKind, KeyRef, KeyState};
use crate::audit::{AuditRecord, Mode, Outcome, Phase, ResponseOutput, AUDIT_KIND};
use crate::aws::AwsBackend;
use crate::azure::AzureBackend;
use crate::backend::{Backend, KeyBackend};
use crate::basis::Basis;
use crate::config::RespondConfig;
use crate::corroborate::{check_state, NotCorroborated};
use crate::error::RespondError;
use crate::gcp::GcpBackend;
use crate::journal::Journal;
use crate::net::Net;
use crate::policy::{Check, InvalidTarget, PlannedAction, Policy, Refusal};
use crate::provenance::{CloudTrailPath, DigestVerifier, Require, Unverified};
use kmswatch_model::{
    Analytic, Finding, FindingCloud, FindingExt, FindingInfo, FindingMetadata, Provider, Resource,
};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Milliseconds since the epoch (injectable for tests).
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// Rule id of the finding raised when the blast-radius cap halts automatic actions.
pub const BLAST_RADIUS_RULE: &str = "kmswatch-respond-blast-radius";
/// Rule id of the finding raised when an automatic action fails.
pub const ACTION_FAILED_RULE: &str = "kmswatch-respond-action-failed";
/// Rule id of the finding raised when the cloud does not corroborate a finding an automatic
/// action was about to act on.
pub const NOT_CORROBORATED_RULE: &str = "kmswatch-respond-not-corroborated";
/// Rule id of the finding raised when a log origin of such a finding is not verified.
pub const UNVERIFIED_ORIGIN_RULE: &str = "kmswatch-respond-unverified-origin";
/// Rule id of the finding raised when a finding names a key (or grant) id that does not follow
/// its provider's grammar: a forged or damaged record; nothing is called.
pub const INVALID_TARGET_RULE: &str = "kmswatch-respond-invalid-target";

fn system_clock() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

fn hash(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0u8]);
    }
    h.finalize()
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The id of the refusal recorded for a target the grammar refused.
fn invalid_action_id(f: &Finding, t: &InvalidTarget) -> String {
    hash(&["invalid", &f.finding_info.uid, &t.key, t.action.as_str()])
}

/// The id of a playbook action on a finding: the same finding gives the same ids.
fn action_id(f: &Finding, pa: &PlannedAction) -> String {
    hash(&[
        &f.finding_info.uid,
        &pa.key.uid,
        pa.action.kind.as_str(),
        pa.action.grant_id.as_deref().unwrap_or_default(),
        &pa.action.versions.join(","),
    ])
}

/// A person's request (CLI).
#[derive(Debug, Clone)]
pub struct ManualRequest {
    /// The cloud.
    pub provider: Provider,
    /// The key as typed.
    pub key: String,
    /// What to do.
    pub action: Action,
    /// Plan only.
    pub dry_run: bool,
    /// Why (recorded).
    pub reason: String,
    /// Who (recorded).
    pub who: String,
}

/// Everything one action needs.
#[derive(Debug, Clone)]
struct Ctx {
    action_id: String,
    key: KeyRef,
    action: Action,
    mode: Mode,
    automatic: bool,
    approved: bool,
    who: String,
    reason: String,
    finding_id: Option<String>,
    rule_id: Option<String>,
    playbook: Option<String>,
    undo_of: Option<String>,
    /// What the finding claims (playbook actions).
    basis: Option<Basis>,
}

/// The response engine: policy + responders + journal.
pub struct Responder {
    policy: Mutex<Policy>,
    journal: Mutex<Journal>,
    /// The journal, as an absolute path (printed in `undo_command`).
    journal_path: PathBuf,
    /// The config file the responder was built from, when the caller says (printed in
    /// `undo_command`).
    config_path: Option<PathBuf>,
    backends: HashMap<Provider, Backend>,
    digests: DigestVerifier,
    clock: Clock,
    seq: AtomicU64,
}

impl std::fmt::Debug for Responder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Responder")
            .field("backends", &self.backends.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Responder {
    /// Validate the config, open the journal and replay it (pending approvals, rate and blast
    /// counters, finished actions), and build the configured responders (no network yet).
    pub fn new(cfg: RespondConfig) -> Result<Responder, RespondError> {
        Responder::with_net(cfg, Net::default())
    }

    /// [`Responder::new`] with every connection sent to a local test server (feature
    /// `test-hooks`, tests only).
    #[cfg(feature = "test-hooks")]
    pub fn new_redirected(
        cfg: RespondConfig,
        redirect: crate::testhook::Redirect,
    ) -> Result<Responder, RespondError> {
        Responder::with_net(
            cfg,
            Net {
                redirect: Some(redirect),
            },
        )
    }

    fn with_net(cfg: RespondConfig, net: Net) -> Result<Responder, RespondError> {
        let mut policy = Policy::new(cfg)?;
        let cfg = policy.config().clone();
        let mut backends = HashMap::new();
        if let Some(a) = &cfg.aws {
            backends.insert(
                Provider::Aws,
                Backend::Aws(AwsBackend::new(a.clone(), net.clone())),
            );
        }
        if let Some(a) = &cfg.azure {
            backends.insert(
                Provider::Azure,
                Backend::Azure(Box::new(AzureBackend::new(a, &net)?)),
            );
        }
        if let Some(g) = &cfg.gcp {
            backends.insert(Provider::Gcp, Backend::Gcp(GcpBackend::new(g, &net)?));
        }
        let (journal, records) = Journal::open(&cfg.journal_path)?;
        for r in &records {
            policy.apply(r);
        }
        Ok(Responder {
            policy: Mutex::new(policy),
            journal: Mutex::new(journal),
            journal_path: std::path::absolute(&cfg.journal_path)
                .unwrap_or_else(|_| cfg.journal_path.clone()),
            config_path: None,
            backends,
            digests: DigestVerifier::new(cfg.provenance.cloudtrail_digest.clone(), net),
            clock: Arc::new(system_clock),
            seq: AtomicU64::new(0),
        })
    }

    /// The config file this responder's configuration was read from: `undo_command` (and the
    /// approval hint) then name it, so the printed command reaches the same journal and
    /// clouds. Without it they name the journal (`--journal PATH`).
    pub fn with_config_path(mut self, path: &Path) -> Responder {
        self.config_path = Some(std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf()));
        self
    }

    /// The journal file (absolute).
    pub fn journal_path(&self) -> &Path {
        &self.journal_path
    }

    /// The options that make `kmswatch respond` find this responder's journal (and config).
    fn locate_args(&self) -> String {
        let quote = |p: &Path| {
            let s = p.display().to_string();
            if s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"/._-+=:,@".contains(&b))
            {
                s
            } else {
                format!("'{}'", s.replace('\'', "'\\''"))
            }
        };
        let mut a = format!("--journal {}", quote(&self.journal_path));
        if let Some(c) = &self.config_path {
            a = format!("--config {} {a}", quote(c));
        }
        a
    }

    /// Use this responder for its provider (replaces a configured one).
    pub fn with_backend(mut self, b: Backend) -> Responder {
        self.backends.insert(b.provider(), b);
        self
    }

    /// Use this clock (tests).
    pub fn with_clock(mut self, clock: Clock) -> Responder {
        self.clock = clock;
        self
    }

    fn now(&self) -> i64 {
        (self.clock)()
    }

    fn lock_policy(&self) -> std::sync::MutexGuard<'_, Policy> {
        self.policy.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Read what other processes appended to the journal.
    fn refresh(&self) {
        let new = {
            let mut j = self.journal.lock().unwrap_or_else(|p| p.into_inner());
            j.read_new()
        };
        match new {
            Ok(recs) => {
                let mut p = self.lock_policy();
                for r in &recs {
                    p.apply(r);
                }
            }
            Err(e) => tracing::warn!(error = %e, "journal refresh failed"),
        }
    }

    /// Write a record (durably) and fold it into the policy state.
    fn write(&self, r: AuditRecord) -> AuditRecord {
        {
            let mut j = self.journal.lock().unwrap_or_else(|p| p.into_inner());
            if let Err(e) = j.append(&r) {
                tracing::error!(error = %e, record = %r.record_id, "journal append failed; the record is still returned");
            }
        }
        self.lock_policy().apply_live(&r);
        tracing::info!(
            phase = ?r.phase, outcome = r.outcome.as_str(), action = r.action.kind.as_str(),
            key = %r.key, action_id = %r.action_id, "response step"
        );
        r
    }

    fn record(&self, ctx: &Ctx, phase: Phase, outcome: Outcome) -> AuditRecord {
        let now = self.now();
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        let record_id = hash(&[
            &ctx.action_id,
            &format!("{phase:?}"),
            &now.to_string(),
            &std::process::id().to_string(),
            &seq.to_string(),
        ]);
        AuditRecord {
            kind: AUDIT_KIND.to_string(),
            record_id,
            action_id: ctx.action_id.clone(),
            time: now,
            phase,
            outcome,
            mode: ctx.mode,
            automatic: ctx.automatic,
            who: ctx.who.clone(),
            provider: ctx.key.provider,
            key: ctx.key.uid.clone(),
            account: ctx.key.account.clone(),
            action: ctx.action.clone(),
            reason: ctx.reason.clone(),
            finding_id: ctx.finding_id.clone(),
            rule_id: ctx.rule_id.clone(),
            playbook: ctx.playbook.clone(),
            state_before: None,
            state_after: None,
            undo: None,
            undo_command: None,
            detail: None,
            retryable: None,
            undo_of: ctx.undo_of.clone(),
            basis: None,
        }
    }

    /// The runtime's entry point: run the playbooks that match this finding. Returns the audit
    /// records of every step and the findings the responder raised (blast-radius halt, failed
    /// automatic action). Never fails: failures are records.
    pub async fn on_finding(&self, f: &Finding) -> Vec<ResponseOutput> {
        self.refresh();
        let ((plans, invalid), actor) = {
            let p = self.lock_policy();
            (p.plan(f), p.config().actor.clone())
        };
        let mut out = Vec::new();
        for t in invalid {
            out.extend(self.refuse_invalid(f, t, &actor));
        }
        let basis = (!plans.is_empty()).then(|| Basis::of(f));
        for pa in plans {
            let action_id = action_id(f, &pa);
            let ctx = Ctx {
                action_id,
                key: pa.key,
                action: pa.action,
                mode: pa.mode,
                automatic: true,
                approved: false,
                who: actor.clone(),
                reason: format!(
                    "playbook {} on finding {:?} ({})",
                    pa.playbook, f.finding_info.title, f.finding_info.analytic.uid
                ),
                finding_id: Some(f.finding_info.uid.clone()),
                rule_id: Some(f.finding_info.analytic.uid.clone()),
                playbook: Some(pa.playbook),
                undo_of: None,
                basis: basis.clone(),
            };
            out.extend(self.run(ctx).await);
        }
        out
    }

    /// A finding's target whose id does not follow the grammar: a refused plan record (no
    /// call of any kind) and a finding, once per finding and target.
    fn refuse_invalid(&self, f: &Finding, t: InvalidTarget, actor: &str) -> Vec<ResponseOutput> {
        let action_id = invalid_action_id(f, &t);
        if self.lock_policy().state.seen_action(&action_id) {
            return Vec::new();
        }
        let ctx = Ctx {
            action_id,
            key: KeyRef {
                provider: t.provider,
                uid: t.key.clone(),
                account: None,
                region: None,
                name: t.key,
                vault: None,
                version: None,
            },
            action: Action::new(t.action),
            mode: t.mode,
            automatic: true,
            approved: false,
            who: actor.to_string(),
            reason: format!(
                "playbook {} on finding {:?} ({})",
                t.playbook, f.finding_info.title, f.finding_info.analytic.uid
            ),
            finding_id: Some(f.finding_info.uid.clone()),
            rule_id: Some(f.finding_info.analytic.uid.clone()),
            playbook: Some(t.playbook),
            undo_of: None,
            basis: None,
        };
        let mut r = self.record(&ctx, Phase::Plan, Outcome::Refused);
        r.detail = Some(format!("invalid_target: {}; nothing was called", t.reason));
        r.retryable = Some(false);
        let r = self.write(r);
        let raised = self.action_finding(
            INVALID_TARGET_RULE,
            "Finding names an invalid key: response refused",
            &r,
            format!(
                "kmswatch refused to act on {:?} for finding {}: {}. A record naming a key that no cloud can have is forged or damaged; look at where it was read.",
                r.key,
                f.finding_info.uid,
                r.detail.as_deref().unwrap_or_default()
            ),
        );
        vec![
            ResponseOutput::Audit(Box::new(r)),
            ResponseOutput::Finding(Box::new(raised)),
        ]
    }

    /// Whether [`Responder::on_finding`] has anything left to do for `f`: a playbook plans an
    /// action for it that the journal does not show as handled (a plan that proceeded to
    /// execution without an execute record is not handled), or names a target refused by the
    /// grammar whose refusal is not journaled yet. Changes nothing; reads what other
    /// processes appended to the journal first. The runtime's durable response queue asks it
    /// before it queues a finding and before it runs a queued one again after a restart, so
    /// no step is journaled twice.
    pub fn has_work(&self, f: &Finding) -> bool {
        self.refresh();
        let p = self.lock_policy();
        let (planned, invalid) = p.plan(f);
        planned
            .iter()
            .any(|pa| !p.state.handled.contains(&action_id(f, pa)))
            || invalid
                .iter()
                .any(|t| !p.state.seen_action(&invalid_action_id(f, t)))
    }

    /// A person's request (CLI): runs unless `dry_run`; the policy's lists, break-glass and rate
    /// limits apply, the blast-radius cap (which bounds automation) does not.
    pub async fn manual(&self, req: ManualRequest) -> Result<Vec<ResponseOutput>, RespondError> {
        self.refresh();
        let key = KeyRef::parse(req.provider, &req.key)?;
        let mut action = req.action;
        if let (Provider::Gcp, Some(v)) = (key.provider, &key.version) {
            if action.versions.is_empty() {
                action.versions = vec![v.clone()];
            }
        }
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        let action_id = hash(&[
            "manual",
            &key.uid,
            action.kind.as_str(),
            &self.now().to_string(),
            &std::process::id().to_string(),
            &seq.to_string(),
        ]);
        let ctx = Ctx {
            action_id,
            key,
            action,
            mode: if req.dry_run {
                Mode::DryRun
            } else {
                Mode::Enforce
            },
            automatic: false,
            approved: false,
            who: req.who,
            reason: req.reason,
            finding_id: None,
            rule_id: None,
            playbook: None,
            undo_of: None,
            basis: None,
        };
        Ok(self.run(ctx).await)
    }

    /// Pending actions (approve mode), oldest first.
    pub fn pending(&self) -> Vec<AuditRecord> {
        self.refresh();
        let mut v: Vec<AuditRecord> = self.lock_policy().state.pending.values().cloned().collect();
        v.sort_by_key(|r| r.time);
        v
    }

    /// Approve a pending action and run it (enforce), re-checking the key's state and policy.
    pub async fn approve(
        &self,
        action_id: &str,
        who: &str,
    ) -> Result<Vec<ResponseOutput>, RespondError> {
        self.refresh();
        let plan = self
            .lock_policy()
            .state
            .pending
            .get(action_id)
            .cloned()
            .ok_or_else(|| {
                RespondError::NotFound(format!(
                    "no pending action {action_id} in the journal {} (see `kmswatch respond list {}`)",
                    self.journal_path.display(),
                    self.locate_args()
                ))
            })?;
        let key = KeyRef::parse(plan.provider, &plan.key)?;
        let mut ctx = Ctx {
            action_id: plan.action_id.clone(),
            key,
            action: plan.action.clone(),
            mode: Mode::Enforce,
            automatic: plan.automatic,
            approved: true,
            who: who.to_string(),
            reason: plan.reason.clone(),
            finding_id: plan.finding_id.clone(),
            rule_id: plan.rule_id.clone(),
            playbook: plan.playbook.clone(),
            undo_of: None,
            basis: plan.basis.clone(),
        };
        let approve = self.write(self.record(&ctx, Phase::Approve, Outcome::Approved));
        ctx.mode = Mode::Approve;
        let mut out = vec![ResponseOutput::Audit(Box::new(approve))];
        out.extend(self.run(ctx).await);
        Ok(out)
    }

    /// Reject a pending action (it is never run).
    pub fn reject(
        &self,
        action_id: &str,
        who: &str,
        reason: &str,
    ) -> Result<AuditRecord, RespondError> {
        self.refresh();
        let plan = self
            .lock_policy()
            .state
            .pending
            .get(action_id)
            .cloned()
            .ok_or_else(|| {
                RespondError::NotFound(format!(
                    "no pending action {action_id} in the journal {} (see `kmswatch respond list {}`)",
                    self.journal_path.display(),
                    self.locate_args()
                ))
            })?;
        let ctx = Ctx {
            action_id: plan.action_id.clone(),
            key: KeyRef::parse(plan.provider, &plan.key)?,
            action: plan.action.clone(),
            mode: plan.mode,
            automatic: plan.automatic,
            approved: false,
            who: who.to_string(),
            reason: if reason.is_empty() {
                plan.reason.clone()
            } else {
                reason.to_string()
            },
            finding_id: plan.finding_id.clone(),
            rule_id: plan.rule_id.clone(),
            playbook: plan.playbook.clone(),
            undo_of: None,
            basis: None,
        };
        Ok(self.write(self.record(&ctx, Phase::Reject, Outcome::Rejected)))
    }

    /// Undo an applied action, by the record id of its execute record (or its action id).
    pub async fn undo(
        &self,
        id: &str,
        who: &str,
        reason: &str,
    ) -> Result<Vec<ResponseOutput>, RespondError> {
        self.refresh();
        let rec = {
            let p = self.lock_policy();
            p.state
                .executed
                .get(id)
                .or_else(|| p.state.executed.values().find(|r| r.action_id == id))
                .cloned()
        }
        .ok_or_else(|| {
            RespondError::NotFound(format!(
                "no applied action with record or action id {id} in the journal {}: give the journal the action was recorded in (the record's undo_command names it)",
                self.journal_path.display()
            ))
        })?;
        let inverse = rec.undo.clone().ok_or_else(|| {
            RespondError::NotFound(format!(
                "{} on {} cannot be undone by kmswatch",
                rec.action.kind.as_str(),
                rec.key
            ))
        })?;
        let ctx = Ctx {
            action_id: hash(&["undo", &rec.record_id]),
            key: KeyRef::parse(rec.provider, &rec.key)?,
            action: inverse,
            mode: Mode::Enforce,
            automatic: false,
            approved: false,
            who: who.to_string(),
            reason: if reason.is_empty() {
                format!("undo of {} ({})", rec.record_id, rec.action.kind.as_str())
            } else {
                reason.to_string()
            },
            finding_id: rec.finding_id.clone(),
            rule_id: rec.rule_id.clone(),
            playbook: rec.playbook.clone(),
            undo_of: Some(rec.record_id.clone()),
            basis: None,
        };
        Ok(self.run(ctx).await)
    }

    /// Plan, then (mode and policy permitting) execute one action.
    ///
    /// Order: the static pre-check (scope, deny/allow by id/name/account, already done) before
    /// any call; the read-only describe; the checks that need the key's state; the mode
    /// (dry run, pending approval); for automatic actions that are about to execute, the
    /// verified log origin and the cloud's corroboration; blast radius and rate limit; then
    /// the change.
    async fn run(&self, ctx: Ctx) -> Vec<ResponseOutput> {
        let mut out = Vec::new();
        let audit = |r: AuditRecord| ResponseOutput::Audit(Box::new(r));
        let Some(backend) = self.backends.get(&ctx.key.provider) else {
            let (name, section) = match ctx.key.provider {
                Provider::Aws => ("AWS", "aws"),
                Provider::Azure => ("Azure", "azure"),
                Provider::Gcp => ("GCP", "gcp"),
            };
            let e = RespondError::NoBackend(name, section);
            let mut r = self.record(&ctx, Phase::Plan, Outcome::Failed);
            r.detail = Some(e.to_string());
            r.retryable = Some(false);
            let r = self.write(r);
            let failed = ctx.automatic.then(|| self.failure_finding(&r));
            out.push(audit(r));
            if let Some(f) = failed {
                out.push(ResponseOutput::Finding(Box::new(f)));
            }
            return out;
        };

        // Static pre-check: decided before anything touches the network.
        let pre = self.lock_policy().precheck(&ctx.action_id, &ctx.key);
        match pre {
            Check::Refused(why) => {
                let mut r = self.record(&ctx, Phase::Plan, Outcome::Refused);
                r.detail = Some(format!("{why} (decided before any call)"));
                out.push(audit(self.write(r)));
                return out;
            }
            Check::AlreadyApplied(why) => {
                let mut r = self.record(&ctx, Phase::Plan, Outcome::AlreadyApplied);
                r.detail = Some(why);
                out.push(audit(self.write(r)));
                return out;
            }
            Check::Proceed => {}
        }

        // Plan (read-only).
        let before = match backend.describe(&ctx.key).await {
            Ok(s) => s,
            Err(e) => {
                let mut r = self.record(&ctx, Phase::Plan, Outcome::Failed);
                r.detail = Some(e.to_string());
                r.retryable = Some(e.retryable());
                let r = self.write(r);
                let failed = ctx.automatic.then(|| self.failure_finding(&r));
                out.push(audit(r));
                if let Some(f) = failed {
                    out.push(ResponseOutput::Finding(Box::new(f)));
                }
                return out;
            }
        };
        let plan_rec = |outcome: Outcome, detail: Option<String>| {
            let mut r = self.record(&ctx, Phase::Plan, outcome);
            r.state_before = Some(before.clone());
            r.detail = detail;
            r
        };
        let check = self
            .lock_policy()
            .check(&ctx.action_id, &ctx.key, &before, &ctx.action);
        match check {
            Check::Refused(why) => {
                out.push(audit(
                    self.write(plan_rec(Outcome::Refused, Some(why.to_string()))),
                ));
                return out;
            }
            Check::AlreadyApplied(why) => {
                out.push(audit(
                    self.write(plan_rec(Outcome::AlreadyApplied, Some(why))),
                ));
                return out;
            }
            Check::Proceed => {}
        }
        match ctx.mode {
            Mode::DryRun => {
                out.push(audit(self.write(plan_rec(
                    Outcome::DryRun,
                    Some(format!(
                        "dry run: would {} {}",
                        ctx.action.kind.as_str(),
                        ctx.key.uid
                    )),
                ))));
                return out;
            }
            Mode::Approve if !ctx.approved => {
                if self
                    .lock_policy()
                    .state
                    .pending
                    .contains_key(&ctx.action_id)
                {
                    return out; // the same finding again: already waiting for approval
                }
                let mut r = plan_rec(
                    Outcome::Pending,
                    Some(format!(
                        "waiting for approval: kmswatch respond approve {} {}",
                        ctx.action_id,
                        self.locate_args()
                    )),
                );
                r.undo_command = None;
                r.basis = ctx.basis.clone();
                out.push(audit(self.write(r)));
                return out;
            }
            _ => {}
        }
        // An automatic action about to execute: the finding must hold up.
        let mut vouched = Vec::new();
        if ctx.automatic {
            let basis = ctx.basis.clone().unwrap_or_default();
            if let Err(u) = self.verify_origins(&basis).await {
                let mut r = plan_rec(
                    Outcome::UnverifiedOrigin,
                    Some(format!("unverified_origin: {}", u.why)),
                );
                r.retryable = Some(u.yet);
                r.basis = ctx.basis.clone();
                let r = self.write(r);
                let f = self.unverified_finding(&r);
                out.push(audit(r));
                out.push(ResponseOutput::Finding(Box::new(f)));
                return out;
            }
            match self.corroborate(backend, &ctx, &basis, &before).await {
                Ok(c) => vouched = c,
                Err(n) => {
                    let mut r = plan_rec(
                        Outcome::NotCorroborated,
                        Some(format!("not_corroborated: {}", n.why)),
                    );
                    r.retryable = Some(n.retryable);
                    r.basis = ctx.basis.clone();
                    let r = self.write(r);
                    let f = self.not_corroborated_finding(&r);
                    out.push(audit(r));
                    out.push(ResponseOutput::Finding(Box::new(f)));
                    return out;
                }
            }
        }
        // Blast radius (automatic actions not approved by a person).
        if ctx.automatic && !ctx.approved {
            let now = self.now();
            let blast = self.lock_policy().check_blast(&ctx.key.uid, now);
            if let Err(refusal) = blast {
                out.push(audit(
                    self.write(plan_rec(Outcome::Refused, Some(refusal.to_string()))),
                ));
                let raise = self.lock_policy().should_raise_halt(now);
                if raise {
                    let mut h = self.record(&ctx, Phase::Halt, Outcome::Halted);
                    h.detail = Some(refusal.to_string());
                    let h = self.write(h);
                    out.push(ResponseOutput::Finding(Box::new(
                        self.blast_finding(&h, &refusal),
                    )));
                    out.push(audit(h));
                }
                return out;
            }
        }
        // Rate limit: wait for a token up to rate_wait_max_ms.
        let max_wait = self.lock_policy().config().rate_wait_max_ms;
        let mut waited = 0u64;
        loop {
            let now = self.now();
            let r = self.lock_policy().take_token(&ctx.key, now);
            match r {
                Ok(()) => break,
                Err(wait) if waited + wait <= max_wait => {
                    waited += wait;
                    tokio::time::sleep(std::time::Duration::from_millis(wait)).await;
                }
                Err(wait) => {
                    let why = Refusal::RateLimited { wait_ms: wait };
                    out.push(audit(
                        self.write(plan_rec(Outcome::Refused, Some(why.to_string()))),
                    ));
                    return out;
                }
            }
        }
        let detail = (!vouched.is_empty()).then(|| format!("corroborated: {}", vouched.join("; ")));
        out.push(audit(self.write(plan_rec(Outcome::Planned, detail))));

        // Execute.
        let result = backend.execute(&ctx.key, &ctx.action, &before).await;
        let after = backend.describe(&ctx.key).await.ok();
        let mut r = self.record(&ctx, Phase::Execute, Outcome::Applied);
        r.state_before = Some(before.clone());
        r.state_after = after.clone();
        match result {
            Ok(detail) => {
                r.detail = detail;
                r.undo = after.as_ref().and_then(|a| ctx.action.inverse(&before, a));
                r.undo_command = r.undo.as_ref().map(|_| {
                    format!(
                        "kmswatch respond undo {} {}",
                        r.record_id,
                        self.locate_args()
                    )
                });
                if r.undo.is_none() {
                    r.detail = Some(
                        [r.detail.take(), Some("not reversible by kmswatch".into())]
                            .into_iter()
                            .flatten()
                            .collect::<Vec<_>>()
                            .join("; "),
                    );
                }
            }
            Err(e)
                if matches!(
                    ctx.action.kind,
                    ActionKind::RevokeGrant | ActionKind::RetireGrant
                ) && e.code().is_some_and(|c| c.contains("NotFound")) =>
            {
                r.outcome = Outcome::AlreadyApplied;
                r.detail = Some(format!("the grant no longer exists ({e})"));
            }
            Err(e) => {
                r.outcome = Outcome::Failed;
                r.detail = Some(e.to_string());
                r.retryable = Some(e.retryable());
            }
        }
        let r = self.write(r);
        let failed =
            (r.outcome == Outcome::Failed && ctx.automatic).then(|| self.failure_finding(&r));
        out.push(audit(r));
        if let Some(f) = failed {
            out.push(ResponseOutput::Finding(Box::new(f)));
        }
        out
    }

    /// `respond.provenance`: every origin of the finding verified as configured.
    async fn verify_origins(&self, basis: &Basis) -> Result<Vec<String>, Unverified> {
        let compiled = self.lock_policy().compiled().provenance.clone();
        if compiled.require == Require::None {
            return Ok(Vec::new());
        }
        let mut checked = compiled.check_locations(basis)?;
        if compiled.require == Require::CloudtrailDigest {
            if let Some(c) = basis.events.iter().find(|c| {
                c.provider == Provider::Aws
                    && c.origin
                        .as_ref()
                        .is_none_or(|o| CloudTrailPath::parse(&o.location).is_none())
            }) {
                return Err(Unverified {
                    why: format!(
                        "AWS evidence event {} was not read from a CloudTrail log object in S3, so no digest can vouch for it",
                        c.uid
                    ),
                    yet: false,
                });
            }
            let now = self.now().div_euclid(1000);
            for o in basis
                .origins
                .iter()
                .filter(|o| o.location.starts_with("s3://"))
            {
                checked.push(self.digests.verify(&o.location, now).await?);
            }
        }
        Ok(checked)
    }

    /// The cloud's corroboration of the finding for this action: the key's state, then the
    /// backend's look-ups.
    async fn corroborate(
        &self,
        backend: &Backend,
        ctx: &Ctx,
        basis: &Basis,
        before: &KeyState,
    ) -> Result<Vec<String>, NotCorroborated> {
        let mut checked = vec![check_state(&ctx.action, before)?];
        checked.extend(
            backend
                .corroborate(&ctx.key, &ctx.action, basis, before)
                .await?,
        );
        Ok(checked)
    }

    fn finding(
        &self,
        rule: &str,
        title: &str,
        message: String,
        r: &AuditRecord,
        group: BTreeMap<String, String>,
    ) -> Finding {
        let (severity, severity_id) = kmswatch_model::severity_of(Some("high"));
        Finding {
            class_uid: kmswatch_model::DETECTION_FINDING_CLASS_UID,
            category_uid: kmswatch_model::FINDINGS_CATEGORY_UID,
            activity_id: 1,
            type_uid: kmswatch_model::DETECTION_FINDING_CLASS_UID * 100 + 1,
            time: r.time,
            start_time: r.time,
            end_time: r.time,
            severity: severity.to_string(),
            severity_id,
            status: "New".into(),
            status_id: 1,
            message,
            finding_info: FindingInfo {
                // Deterministic: the same failed/halted action gives the same finding id, so
                // a replay after a restart is recognised downstream as a duplicate.
                uid: hash(&[rule, &r.action_id]),
                title: title.to_string(),
                desc: None,
                analytic: Analytic {
                    uid: rule.to_string(),
                    name: rule.replace('-', "_"),
                    type_: "Rule".into(),
                    type_id: 1,
                },
                related_events: Vec::new(),
            },
            metadata: FindingMetadata::default(),
            cloud: Some(FindingCloud {
                provider: r.provider,
                account: r
                    .account
                    .clone()
                    .map(|a| kmswatch_model::Account { uid: Some(a) }),
                region: None,
            }),
            actor: None,
            resources: vec![Resource {
                uid: r.key.clone(),
                type_: "kms_key".into(),
                cloud_provider: r.provider,
                account: r
                    .account
                    .clone()
                    .map(|a| kmswatch_model::Account { uid: Some(a) }),
            }],
            attacks: Vec::new(),
            evidences: Vec::new(),
            evidences_count: 0,
            count: 1,
            kmswatch: FindingExt {
                rule_level: Some("high".into()),
                rule_status: Some("stable".into()),
                tags: vec!["kmswatch.respond".into()],
                group,
                ..Default::default()
            },
        }
    }

    fn blast_finding(&self, r: &AuditRecord, why: &Refusal) -> Finding {
        let mut g = BTreeMap::new();
        g.insert("action_id".into(), r.action_id.clone());
        g.insert("refused_key".into(), r.key.clone());
        self.finding(
            BLAST_RADIUS_RULE,
            "Automatic key responses halted: blast-radius cap reached",
            format!(
                "kmswatch halted automatic responses: {why}. The {} of {} was refused. Review the journal, then act by hand (kmswatch respond ...) if needed.",
                r.action.kind.as_str(),
                r.key
            ),
            r,
            g,
        )
    }

    /// A finding about a step of an automatic action (grouped by action and finding).
    fn action_finding(&self, rule: &str, title: &str, r: &AuditRecord, message: String) -> Finding {
        let mut g = BTreeMap::new();
        g.insert("action_id".into(), r.action_id.clone());
        if let Some(f) = &r.finding_id {
            g.insert("finding_id".into(), f.clone());
        }
        self.finding(rule, title, message, r, g)
    }

    fn failure_finding(&self, r: &AuditRecord) -> Finding {
        let why = r.detail.as_deref().unwrap_or("unknown error");
        self.action_finding(
            ACTION_FAILED_RULE,
            "Automatic key response failed",
            r,
            format!(
                "kmswatch could not {} {}: {why}",
                r.action.kind.as_str(),
                r.key
            ),
        )
    }

    fn not_corroborated_finding(&self, r: &AuditRecord) -> Finding {
        let why = r.detail.as_deref().unwrap_or("not corroborated");
        self.action_finding(
            NOT_CORROBORATED_RULE,
            "Automatic key response not taken: the cloud does not corroborate the finding",
            r,
            format!(
                "kmswatch did not {} {}: {why}. The finding may come from a forged or replayed log record; nothing was changed.",
                r.action.kind.as_str(),
                r.key
            ),
        )
    }

    fn unverified_finding(&self, r: &AuditRecord) -> Finding {
        let why = r.detail.as_deref().unwrap_or("unverified origin");
        let yet = if r.retryable == Some(true) {
            "; the check may pass once the digest is delivered"
        } else {
            ""
        };
        self.action_finding(
            UNVERIFIED_ORIGIN_RULE,
            "Automatic key response not taken: log origin not verified",
            r,
            format!(
                "kmswatch did not {} {}: {why}. Nothing was changed{yet}.",
                r.action.kind.as_str(),
                r.key
            ),
        )
    }

    /// Read a key's state through its responder (no change).
    pub async fn describe(&self, provider: Provider, key: &str) -> Result<KeyState, RespondError> {
        let key = KeyRef::parse(provider, key)?;
        let b = self.backends.get(&provider).ok_or(match provider {
            Provider::Aws => RespondError::NoBackend("AWS", "aws"),
            Provider::Azure => RespondError::NoBackend("Azure", "azure"),
            Provider::Gcp => RespondError::NoBackend("GCP", "gcp"),
        })?;
        b.describe(&key).await
    }

    /// Distinct keys changed by automatic actions in the last hour.
    pub fn blast_count(&self) -> usize {
        let now = self.now();
        self.lock_policy().state.blast_keys(now)
    }
}
