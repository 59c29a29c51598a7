//! The [`Responder`]: the one entry point. It turns findings (playbooks) and people's requests
//! (CLI) into plan → execute steps under the [`Policy`], writes every step to the journal and
//! returns the audit records (and any findings it raises) to the caller.

use crate::action::{Action, ActionKind, KeyRef, KeyState};
use crate::audit::{AuditRecord, Mode, Outcome, Phase, ResponseOutput, AUDIT_KIND};
use crate::aws::AwsBackend;
use crate::azure::AzureBackend;
use crate::backend::{Backend, KeyBackend};
use crate::config::RespondConfig;
use crate::error::RespondError;
use crate::gcp::GcpBackend;
use crate::journal::Journal;
use crate::policy::{Check, PlannedAction, Policy, Refusal};
use kmswatch_model::{
    Analytic, Finding, FindingCloud, FindingExt, FindingInfo, FindingMetadata, Provider, Resource,
};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Milliseconds since the epoch (injectable for tests).
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// Rule id of the finding raised when the blast-radius cap halts automatic actions.
pub const BLAST_RADIUS_RULE: &str = "kmswatch-respond-blast-radius";
/// Rule id of the finding raised when an automatic action fails.
pub const ACTION_FAILED_RULE: &str = "kmswatch-respond-action-failed";

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
}

/// The response engine: policy + responders + journal.
pub struct Responder {
    policy: Mutex<Policy>,
    journal: Mutex<Journal>,
    backends: HashMap<Provider, Backend>,
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
        cfg.validate()?;
        let mut backends = HashMap::new();
        if let Some(a) = &cfg.aws {
            backends.insert(Provider::Aws, Backend::Aws(AwsBackend::new(a.clone())));
        }
        if let Some(a) = &cfg.azure {
            backends.insert(Provider::Azure, Backend::Azure(AzureBackend::new(a)?));
        }
        if let Some(g) = &cfg.gcp {
            backends.insert(Provider::Gcp, Backend::Gcp(GcpBackend::new(g)?));
        }
        let (journal, records) = Journal::open(&cfg.journal_path)?;
        let mut policy = Policy::new(cfg);
        for r in &records {
            policy.apply(r);
        }
        Ok(Responder {
            policy: Mutex::new(policy),
            journal: Mutex::new(journal),
            backends,
            clock: Arc::new(system_clock),
            seq: AtomicU64::new(0),
        })
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
        }
    }

    /// The runtime's entry point: run the playbooks that match this finding. Returns the audit
    /// records of every step and the findings the responder raised (blast-radius halt, failed
    /// automatic action). Never fails: failures are records.
    pub async fn on_finding(&self, f: &Finding) -> Vec<ResponseOutput> {
        self.refresh();
        let (plans, actor) = {
            let p = self.lock_policy();
            (p.plan_finding(f), p.config().actor.clone())
        };
        let mut out = Vec::new();
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
            };
            out.extend(self.run(ctx).await);
        }
        out
    }

    /// Whether [`Responder::on_finding`] has anything left to do for `f`: a playbook plans an
    /// action for it that the journal does not show as handled (a plan that proceeded to
    /// execution without an execute record is not handled). Changes nothing; reads what other
    /// processes appended to the journal first. The runtime's durable response queue asks it
    /// before it queues a finding and before it runs a queued one again after a restart, so
    /// no step is journaled twice.
    pub fn has_work(&self, f: &Finding) -> bool {
        self.refresh();
        let p = self.lock_policy();
        p.plan_finding(f)
            .iter()
            .any(|pa| !p.state.handled.contains(&action_id(f, pa)))
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
                    "no pending action {action_id} (see `kmswatch respond list`)"
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
                    "no pending action {action_id} (see `kmswatch respond list`)"
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
                "no applied action with record or action id {id} in the journal"
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
        };
        Ok(self.run(ctx).await)
    }

    /// Plan, then (mode and policy permitting) execute one action.
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
                        "waiting for approval: kmswatch respond approve {}",
                        ctx.action_id
                    )),
                );
                r.undo_command = None;
                out.push(audit(self.write(r)));
                return out;
            }
            _ => {}
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
        out.push(audit(self.write(plan_rec(Outcome::Planned, None))));

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
                r.undo_command = r
                    .undo
                    .as_ref()
                    .map(|_| format!("kmswatch respond undo {}", r.record_id));
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

    fn failure_finding(&self, r: &AuditRecord) -> Finding {
        let mut g = BTreeMap::new();
        g.insert("action_id".into(), r.action_id.clone());
        if let Some(f) = &r.finding_id {
            g.insert("finding_id".into(), f.clone());
        }
        self.finding(
            ACTION_FAILED_RULE,
            "Automatic key response failed",
            format!(
                "kmswatch could not {} {}: {}",
                r.action.kind.as_str(),
                r.key,
                r.detail.as_deref().unwrap_or("unknown error")
            ),
            r,
            g,
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
