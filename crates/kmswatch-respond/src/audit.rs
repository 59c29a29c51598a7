//! Audit records: one per step (plan, execute, approve, reject, halt), written to the local journal
//! and returned to the caller, which sends them to the sinks.

use crate::action::{Action, KeyState};
use kmswatch_model::{Finding, Provider};
use serde::{Deserialize, Serialize};

/// `kind` of every audit record (lets a SIEM search tell them from findings).
pub const AUDIT_KIND: &str = "kmswatch.response";

/// Where the policy applies actions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Plan only: say what would be done (the default).
    #[default]
    DryRun,
    /// Plan and store the action as pending until a person approves it
    /// (`kmswatch respond approve ID`).
    Approve,
    /// Plan and execute.
    Enforce,
}

/// Which step a record is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// The read-only step: key resolved, state read, policy decided.
    Plan,
    /// The change (or the decision not to make one).
    Execute,
    /// A person approved a pending action.
    Approve,
    /// A person rejected a pending action.
    Reject,
    /// The blast-radius cap stopped automatic actions.
    Halt,
}

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Plan: allowed, execution follows.
    Planned,
    /// Plan in dry-run mode: this is what would be done; nothing was changed.
    DryRun,
    /// Plan in approve mode: stored until approved or rejected.
    Pending,
    /// Execute: the change was made.
    Applied,
    /// The key already was in the wanted state (or this finding's action already ran).
    AlreadyApplied,
    /// The policy refused (deny list, not allowed, break-glass, out of scope, invalid key id,
    /// rate limit, blast radius).
    Refused,
    /// Plan only: the cloud's own state or history does not corroborate the finding (the key
    /// is not in the state the finding implies, the event is not in CloudTrail / Cloud
    /// Logging, the grant does not exist). Nothing was changed; `detail` says why.
    NotCorroborated,
    /// Plan only: a log origin of the finding is not verified (`respond.provenance`: not a
    /// trusted location, or no valid CloudTrail digest — `retryable` when the digest may
    /// still come). Nothing was changed; `detail` says why.
    UnverifiedOrigin,
    /// The provider call failed.
    Failed,
    /// Approve record.
    Approved,
    /// Reject record.
    Rejected,
    /// Halt record.
    Halted,
}

impl Outcome {
    /// `applied`, `already_applied`...
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Planned => "planned",
            Outcome::DryRun => "dry_run",
            Outcome::Pending => "pending",
            Outcome::Applied => "applied",
            Outcome::AlreadyApplied => "already_applied",
            Outcome::Refused => "refused",
            Outcome::NotCorroborated => "not_corroborated",
            Outcome::UnverifiedOrigin => "unverified_origin",
            Outcome::Failed => "failed",
            Outcome::Approved => "approved",
            Outcome::Rejected => "rejected",
            Outcome::Halted => "halted",
        }
    }
}

/// One audit record: who did what to which key, why, and how to undo it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// Always [`AUDIT_KIND`].
    pub kind: String,
    /// This record's id (unique).
    pub record_id: String,
    /// The action's id: shared by its plan, approve/reject and execute records. For actions
    /// triggered by a finding it is derived from finding id + key + action, so a replayed finding
    /// maps to the same action (and is not applied twice).
    pub action_id: String,
    /// When, epoch ms UTC.
    pub time: i64,
    /// Which step.
    pub phase: Phase,
    /// What happened.
    pub outcome: Outcome,
    /// The mode the action ran under.
    pub mode: Mode,
    /// True when a playbook (not a person on the CLI) asked for the action.
    pub automatic: bool,
    /// Who: `kmswatch` (playbooks) or the person (`$USER` / `--who`).
    pub who: String,
    /// The cloud.
    pub provider: Provider,
    /// The key (canonical id).
    pub key: String,
    /// AWS account / Azure vault / GCP project.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// The change.
    pub action: Action,
    /// Why: the playbook and rule title, or the person's `--reason`.
    pub reason: String,
    /// The finding that triggered it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finding_id: Option<String>,
    /// The rule of that finding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule_id: Option<String>,
    /// The playbook that mapped the finding to the action.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub playbook: Option<String>,
    /// The key's state read by the plan step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_before: Option<KeyState>,
    /// The key's state read back after the change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_after: Option<KeyState>,
    /// The action that reverses this one (execute records), when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub undo: Option<Action>,
    /// The command that reverses this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub undo_command: Option<String>,
    /// Refusal reason, provider error, or detail of the change (new version id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Failures: whether retrying can help.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retryable: Option<bool>,
    /// When this action undoes an earlier one: that execute record's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub undo_of: Option<String>,
    /// Plan records of playbook actions: what the finding claims (its log origins and evidence
    /// events), so that an approval checks the same claims against the cloud.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basis: Option<crate::basis::Basis>,
}

/// What the responder hands back: audit records to send to the sinks, and findings it raised
/// itself (blast-radius halt, failed action).
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum ResponseOutput {
    /// An audit record.
    Audit(Box<AuditRecord>),
    /// A finding raised by the responder.
    Finding(Box<Finding>),
}

impl ResponseOutput {
    /// The record, when this is one.
    pub fn audit(&self) -> Option<&AuditRecord> {
        match self {
            ResponseOutput::Audit(a) => Some(a),
            ResponseOutput::Finding(_) => None,
        }
    }

    /// The finding, when this is one.
    pub fn finding(&self) -> Option<&Finding> {
        match self {
            ResponseOutput::Finding(f) => Some(f),
            ResponseOutput::Audit(_) => None,
        }
    }
}
