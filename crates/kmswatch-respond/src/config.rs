//! The `respond:` section of kmswatch's configuration.
//!
//! ```yaml
//! respond:
//!   mode: dry_run                 # dry_run (default) | approve | enforce
//!   journal_path: /var/lib/kmswatch/respond.jsonl
//!   playbooks:
//!     - name: stop-deletion
//!       rules: [kms_schedule_key_deletion]       # rule ids or names (globs)
//!       actions: [{kind: cancel_deletion}, {kind: tag}]
//!     - name: human-decrypt
//!       rules: [kms_human_decrypt]
//!       min_level: high
//!       mode: approve                            # this playbook only
//!       actions: [{kind: disable}]
//!   allow: {}                                    # empty: every key may be acted on
//!   deny: {names: ["alias/prod-root-*"], tags: ["owner=payments"]}
//!   rate_limits: {aws: {per_second: 4, burst: 4}}
//!   blast_radius: {max_keys_per_hour: 10}
//!   provenance: {require: trusted_location, trusted_locations: [{location: "s3://org-trail/AWSLogs/*"}]}
//!   aws: {accounts: {"111122223333": {role_arn: "arn:aws:iam::111122223333:role/kmswatch-respond"}}}
//!   azure: {tenant_id: ..., client_id: ..., client_secret_env: AZURE_CLIENT_SECRET, vaults: ["kv-prod.vault.azure.net"]}
//!   gcp: {credentials_file: /etc/kmswatch/sa.json, projects: [kmswatch-prod]}
//! ```
//!
//! [`RespondConfig::validate`] is pure and complete: every glob (playbook rules, allow/deny
//! lists, scopes, trusted locations) is compiled there, so an invalid pattern is a validation
//! error naming the field and the pattern, never a selector that silently matches nothing or
//! everything.

use crate::action::ActionKind;
use crate::audit::Mode;
use crate::aws::AwsConfig;
use crate::azure::AzureConfig;
use crate::error::RespondError;
use crate::gcp::GcpConfig;
use crate::provenance::ProvenanceConfig;
use globset::{Glob, GlobMatcher};
use kmswatch_model::Provider;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// The whole `respond:` section.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RespondConfig {
    /// Mode for playbook actions (default `dry_run`). CLI actions by a person run unless
    /// `--dry-run` is given.
    #[serde(default)]
    pub mode: Mode,
    /// The local audit journal (JSON lines). Default `kmswatch-respond.jsonl` in the working
    /// directory.
    #[serde(default = "default_journal")]
    pub journal_path: PathBuf,
    /// Which findings trigger which actions.
    #[serde(default)]
    pub playbooks: Vec<Playbook>,
    /// Keys that may be acted on (empty: all, minus `deny`).
    #[serde(default)]
    pub allow: KeyMatch,
    /// Keys that are never acted on (wins over `allow`). Break-glass keys are always denied.
    #[serde(default)]
    pub deny: KeyMatch,
    /// Per-account token buckets for changing calls.
    #[serde(default)]
    pub rate_limits: RateLimits,
    /// The cap on automatic actions.
    #[serde(default)]
    pub blast_radius: BlastRadius,
    /// How long an action may wait for a rate-limit token before it is refused, ms (default 2000).
    #[serde(default = "default_rate_wait")]
    pub rate_wait_max_ms: u64,
    /// Name recorded as `who` for playbook actions (default `kmswatch`).
    #[serde(default = "default_actor")]
    pub actor: String,
    /// What an automatic action in `enforce` mode (or approved) requires of the finding's log
    /// origins (default: nothing beyond the cloud-state corroboration every such action gets).
    #[serde(default)]
    pub provenance: ProvenanceConfig,
    /// AWS KMS responder.
    #[serde(default)]
    pub aws: Option<AwsConfig>,
    /// Azure Key Vault responder.
    #[serde(default)]
    pub azure: Option<AzureConfig>,
    /// Google Cloud KMS responder.
    #[serde(default)]
    pub gcp: Option<GcpConfig>,
}

impl Default for RespondConfig {
    fn default() -> Self {
        RespondConfig {
            mode: Mode::default(),
            journal_path: default_journal(),
            playbooks: Vec::new(),
            allow: KeyMatch::default(),
            deny: KeyMatch::default(),
            rate_limits: RateLimits::default(),
            blast_radius: BlastRadius::default(),
            rate_wait_max_ms: default_rate_wait(),
            actor: default_actor(),
            provenance: ProvenanceConfig::default(),
            aws: None,
            azure: None,
            gcp: None,
        }
    }
}

fn default_journal() -> PathBuf {
    PathBuf::from("kmswatch-respond.jsonl")
}
fn default_rate_wait() -> u64 {
    2000
}
fn default_actor() -> String {
    "kmswatch".to_string()
}

/// A playbook: which findings, which actions.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Playbook {
    /// Name (recorded in audit records).
    pub name: String,
    /// Rule ids or names (`finding_info.analytic.uid` / `.name`), globs. Empty: any rule.
    #[serde(default)]
    pub rules: Vec<String>,
    /// Lowest rule level that triggers (`informational`..`critical`). Default: any.
    #[serde(default)]
    pub min_level: Option<String>,
    /// Rule tags (`kmswatch.tags`) of which at least one must be present. Empty: any.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Clouds this playbook applies to. Empty: all.
    #[serde(default)]
    pub providers: Vec<Provider>,
    /// The actions, in order, for every key of the finding.
    pub actions: Vec<ActionSpec>,
    /// Overrides the global mode for this playbook (it can only be stricter: a playbook cannot
    /// enforce when the global mode is dry_run).
    #[serde(default)]
    pub mode: Option<Mode>,
}

impl Playbook {
    /// A playbook of these rules (globs) and actions, for any level, tag and cloud, in the
    /// global mode.
    pub fn new(name: &str, rules: &[&str], actions: &[ActionKind]) -> Playbook {
        Playbook {
            name: name.to_string(),
            rules: rules.iter().map(|r| r.to_string()).collect(),
            min_level: None,
            tags: Vec::new(),
            providers: Vec::new(),
            actions: actions
                .iter()
                .map(|kind| ActionSpec {
                    kind: *kind,
                    rotation_period_days: None,
                })
                .collect(),
            mode: None,
        }
    }
}

/// One action of a playbook.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionSpec {
    /// `disable`, `enable`, `rotate`, `enable_rotation`, `cancel_deletion`, `revoke_grant`,
    /// `retire_grant`, `tag`.
    pub kind: ActionKind,
    /// `enable_rotation`: period, days (default 365).
    #[serde(default)]
    pub rotation_period_days: Option<u32>,
}

/// Key selectors. A key matches when any selector matches.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyMatch {
    /// Key ids (ARN, key id, Azure key URL, GCP resource name), globs.
    #[serde(default)]
    pub ids: Vec<String>,
    /// Aliases (`alias/prod-*`) or key names, globs.
    #[serde(default)]
    pub names: Vec<String>,
    /// Tags/labels: `key=value` (value may be a glob) or `key` (any value).
    #[serde(default)]
    pub tags: Vec<String>,
    /// Accounts (AWS account id), vaults (Azure vault host `NAME.vault.azure.net`), projects
    /// (GCP project id), globs.
    #[serde(default)]
    pub accounts: Vec<String>,
}

impl KeyMatch {
    /// No selector at all.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
            && self.names.is_empty()
            && self.tags.is_empty()
            && self.accounts.is_empty()
    }
}

/// Token-bucket settings per provider (each account gets its own bucket).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimits {
    /// AWS (quota for DisableKey/EnableKey is 5/s; default 4/s, burst 4).
    #[serde(default = "aws_rate")]
    pub aws: Rate,
    /// Azure Key Vault (default 5/s, burst 5).
    #[serde(default = "azure_rate")]
    pub azure: Rate,
    /// Google Cloud KMS (write quota is per minute; default 1/s, burst 5).
    #[serde(default = "gcp_rate")]
    pub gcp: Rate,
}

impl Default for RateLimits {
    fn default() -> Self {
        RateLimits {
            aws: aws_rate(),
            azure: azure_rate(),
            gcp: gcp_rate(),
        }
    }
}

impl RateLimits {
    /// The settings for one provider.
    pub fn of(&self, p: Provider) -> Rate {
        match p {
            Provider::Aws => self.aws,
            Provider::Azure => self.azure,
            Provider::Gcp => self.gcp,
        }
    }
}

fn aws_rate() -> Rate {
    Rate {
        per_second: 4.0,
        burst: 4,
    }
}
fn azure_rate() -> Rate {
    Rate {
        per_second: 5.0,
        burst: 5,
    }
}
fn gcp_rate() -> Rate {
    Rate {
        per_second: 1.0,
        burst: 5,
    }
}

/// One token bucket's settings.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rate {
    /// Tokens added per second.
    pub per_second: f64,
    /// Bucket size.
    pub burst: u32,
}

/// The blast-radius cap.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlastRadius {
    /// Distinct keys automatic actions may change per rolling hour (default 10). Past it,
    /// automatic actions halt and a finding is raised.
    #[serde(default = "default_blast")]
    pub max_keys_per_hour: u32,
}

impl Default for BlastRadius {
    fn default() -> Self {
        BlastRadius {
            max_keys_per_hour: default_blast(),
        }
    }
}

fn default_blast() -> u32 {
    10
}

/// Compile one glob of field `field`; an invalid pattern is an error naming both.
pub(crate) fn compile_glob(field: &str, pattern: &str) -> Result<GlobMatcher, RespondError> {
    Glob::new(pattern)
        .map(|g| g.compile_matcher())
        .map_err(|e| {
            RespondError::Config(format!("{field}: invalid glob {pattern:?}: {}", e.kind()))
        })
}

/// Compile a list of globs of field `field` (`field[i]` in errors).
pub(crate) fn compile_globs(
    field: &str,
    patterns: &[String],
) -> Result<Vec<(String, GlobMatcher)>, RespondError> {
    patterns
        .iter()
        .enumerate()
        .map(|(i, p)| Ok((p.clone(), compile_glob(&format!("{field}[{i}]"), p)?)))
        .collect()
}

pub(crate) fn range<T: PartialOrd + std::fmt::Display + Copy>(
    field: &str,
    v: T,
    lo: T,
    hi: T,
) -> Result<(), RespondError> {
    if v < lo || v > hi {
        return Err(RespondError::Config(format!(
            "{field}: {v} is out of range ({lo}..={hi})"
        )));
    }
    Ok(())
}

/// An endpoint given in configuration: an absolute `http(s)://` URL.
pub(crate) fn check_endpoint(field: &str, url: &str) -> Result<(), RespondError> {
    let ok = reqwest::Url::parse(url)
        .ok()
        .is_some_and(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some());
    if ok {
        Ok(())
    } else {
        Err(RespondError::Config(format!(
            "{field}: {url:?} is not an http(s) URL"
        )))
    }
}

impl RespondConfig {
    /// Pure validation (no I/O): every field, every glob compiled (an invalid pattern is an
    /// error naming the field and the pattern), every range, the grammar of every configured
    /// account, region and role.
    pub fn validate(&self) -> Result<(), RespondError> {
        crate::policy::Compiled::new(self).map(|_| ())
    }

    /// The checks that compiling does not do already.
    pub(crate) fn validate_fields(&self) -> Result<(), RespondError> {
        let bad = |m: String| Err(RespondError::Config(m));
        for (i, p) in self.playbooks.iter().enumerate() {
            if p.name.trim().is_empty() {
                return bad(format!("playbooks[{i}]: name is empty"));
            }
            if p.actions.is_empty() {
                return bad(format!("playbook {}: no actions", p.name));
            }
            if let Some(l) = &p.min_level {
                if kmswatch_model::severity_of(Some(l)).1 == 0 {
                    return bad(format!(
                        "playbook {}: min_level {l:?} is not informational, low, medium, high or critical",
                        p.name
                    ));
                }
            }
            for a in &p.actions {
                if matches!(
                    a.kind,
                    ActionKind::Untag | ActionKind::SetPrimary | ActionKind::DisableRotation
                ) {
                    return bad(format!(
                        "playbook {}: {} is only used to undo another action",
                        p.name,
                        a.kind.as_str()
                    ));
                }
                if let Some(d) = a.rotation_period_days {
                    if !(1..=3650).contains(&d) {
                        return bad(format!(
                            "playbook {}: rotation_period_days {d} out of range",
                            p.name
                        ));
                    }
                }
            }
        }
        for (name, r) in [
            ("aws", self.rate_limits.aws),
            ("azure", self.rate_limits.azure),
            ("gcp", self.rate_limits.gcp),
        ] {
            let ok =
                r.per_second > 0.0 && r.per_second <= 1000.0 && (1..=10_000).contains(&r.burst);
            if !ok {
                return bad(format!(
                    "rate_limits.{name}: per_second must be in (0, 1000] and burst in 1..=10000"
                ));
            }
        }
        range(
            "blast_radius.max_keys_per_hour",
            self.blast_radius.max_keys_per_hour,
            1,
            100_000,
        )?;
        range("rate_wait_max_ms", self.rate_wait_max_ms, 0, 600_000)?;
        if let Some(a) = &self.aws {
            a.validate()?;
        }
        if let Some(a) = &self.azure {
            a.validate()?;
        }
        if let Some(g) = &self.gcp {
            g.validate()?;
        }
        self.provenance.validate()
    }
}
