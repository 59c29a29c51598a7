//! `kmswatch respond`: act on a key by hand, and manage the actions playbooks queued.

use anyhow::{anyhow, Context, Result};
use is_terminal::IsTerminal;
use kmswatch_model::Provider;
use kmswatch_respond::azure::AzureConfig;
use kmswatch_respond::{
    Action, ActionKind, AuditRecord, ManualRequest, Outcome, RespondConfig, Responder,
    ResponseOutput,
};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

/// Disable, enable, rotate or stop the deletion of a key; list, approve, reject and undo
/// response actions.
///
/// WHAT ACTS AT ONCE: `disable`, `enable`, `rotate` and `cancel-deletion` change the key NOW,
/// whatever `respond.mode` says, unless --dry-run is given. `approve ID` runs the pending
/// action now; `undo ID` reverses an applied one now. Playbooks (`kmswatch run`) are a dry run
/// unless `respond.mode` (or a playbook's `mode`) says `approve` or `enforce`.
///
/// Every action is planned first. Before any call: the key id must follow its cloud's
/// grammar (Key Vault DNS suffixes, KMS ARN partitions and regions, Cloud KMS names), be in
/// the responders' scope, and pass the deny/allow lists by id, name and account. Then the
/// read-only describe (state, aliases, tags) and the checks that need it: break-glass tag
/// `kmswatch:break-glass=true` / label `kmswatch-break-glass`, lists by tag, per-account rate
/// limit. An action whose result is already in place is not repeated. Playbook actions that
/// are about to execute must also be corroborated by the cloud (the event in CloudTrail /
/// Cloud Logging, the key in the state the finding implies) and, when
/// `respond.provenance.require` says so, come from verified logs. Every step is written to
/// the journal (`respond.journal_path`, JSON lines) with who, why, the state before and after,
/// and the command that undoes the change (it names the journal: --journal, and --config
/// when known). kmswatch never schedules deletion or destroys key material.
///
/// Output: one JSON audit record per line when stdout is not a terminal (or with --json), a
/// short summary otherwise.
///
/// Exit status:
///   0   applied (or: listed, approved/rejected as asked)
///   10  already applied: the key already was in the wanted state; nothing changed
///   11  refused by policy (deny list, not on the allow list, out of scope, invalid key id,
///       break-glass, rate limit, blast-radius cap, provider-managed key)
///   12  failed: the provider call or the key lookup failed (the record says whether
///       retrying can help)
///   13  planned only: --dry-run, or the action waits for approval
///   14  not taken: the cloud does not corroborate the finding, or its log origin is not
///       verified (approving a playbook action)
///   2   usage or configuration error (also: the id is not in the journal)
///
/// Examples:
///   kmswatch respond disable --provider aws --key arn:aws:kms:eu-west-1:111122223333:key/1234abcd-... --reason "INC-42"
///   kmswatch respond cancel-deletion --provider azure --key https://kv-demo.vault.azure.net/keys/cmk
///   kmswatch respond rotate --provider gcp --key projects/kmswatch-demo/locations/global/keyRings/r/cryptoKeys/k --dry-run
///   kmswatch respond list --config kmswatch.yml
///   kmswatch respond approve 3f2a9c0d41b7e685 --config kmswatch.yml
///   kmswatch respond undo 9d0c51e2aa4f3b17 --config /etc/kmswatch/kmswatch.yml --journal /var/lib/kmswatch/respond-journal.jsonl
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    #[command(subcommand)]
    pub command: Verb,

    /// Configuration file (its `respond:` section: mode, journal, lists, limits, clouds).
    #[arg(long, short = 'c', value_name = "FILE", global = true)]
    pub config: Option<PathBuf>,

    /// The journal to read and write (default: the config's `respond.journal_path`, else
    /// `STATE_DIR/respond-journal.jsonl`; without --config, `kmswatch-respond.jsonl`). Audit
    /// records' `undo_command` names it.
    #[arg(long, value_name = "FILE", global = true)]
    pub journal: Option<PathBuf>,

    /// Print JSON lines even on a terminal.
    #[arg(long, global = true)]
    pub json: bool,

    /// Who is acting (recorded). Default: $USER.
    #[arg(long, value_name = "NAME", global = true)]
    pub who: Option<String>,
}

/// The key to act on.
#[derive(Debug, clap::Args)]
pub struct KeyArgs {
    /// The cloud: aws, azure or gcp.
    #[arg(long, value_parser = parse_provider)]
    pub provider: Provider,
    /// The key: AWS key ARN (or key id / alias with the configured region); Azure
    /// https://VAULT.vault.azure.net/keys/NAME; GCP projects/P/locations/L/keyRings/R/cryptoKeys/K
    /// (with /cryptoKeyVersions/V for one version).
    #[arg(long, value_name = "ID")]
    pub key: String,
    /// Plan only: show what would be done.
    #[arg(long)]
    pub dry_run: bool,
    /// Why (recorded in the audit record).
    #[arg(long, value_name = "TEXT", default_value = "")]
    pub reason: String,
}

#[derive(Debug, clap::Subcommand)]
pub enum Verb {
    /// Make the key unusable (AWS DisableKey; Azure enabled=false; GCP versions DISABLED).
    Disable(KeyArgs),
    /// Make the key usable again.
    Enable(KeyArgs),
    /// Rotate now (AWS RotateKeyOnDemand; Azure rotate; GCP new primary version); with
    /// --period-days, turn on automatic rotation instead.
    Rotate {
        #[command(flatten)]
        key: KeyArgs,
        /// Turn on automatic rotation with this period (days).
        #[arg(long, value_name = "DAYS")]
        period_days: Option<u32>,
    },
    /// Stop a pending deletion and re-enable the key (AWS CancelKeyDeletion + EnableKey; Azure
    /// recover; GCP restore the versions scheduled for destruction).
    CancelDeletion(KeyArgs),
    /// List actions waiting for approval (with --all: every journal record).
    List {
        /// Every record in the journal, not only pending actions.
        #[arg(long)]
        all: bool,
    },
    /// Approve a pending action (it runs now).
    Approve {
        /// The action id (from `list`).
        id: String,
    },
    /// Reject a pending action (it never runs).
    Reject {
        /// The action id (from `list`).
        id: String,
        /// Why.
        #[arg(long, value_name = "TEXT", default_value = "")]
        reason: String,
    },
    /// Undo an applied action (by its execute record id or action id): run the record's
    /// `undo_command`, which names the journal the action was recorded in.
    Undo {
        /// The record or action id (the audit record's `undo_command` names it).
        id: String,
        /// Why.
        #[arg(long, value_name = "TEXT", default_value = "")]
        reason: String,
    },
}

fn parse_provider(s: &str) -> Result<Provider, String> {
    match s.to_ascii_lowercase().as_str() {
        "aws" => Ok(Provider::Aws),
        "azure" => Ok(Provider::Azure),
        "gcp" | "google" => Ok(Provider::Gcp),
        _ => Err(format!("unknown provider {s:?} (aws, azure, gcp)")),
    }
}

/// The `respond:` section of the config file, resolved as `kmswatch run` resolves it (same
/// journal: `respond.journal_path`, default `STATE_DIR/respond-journal.jsonl`), so that
/// `approve` finds the actions `run` left pending.
fn load_config(path: Option<&PathBuf>) -> Result<RespondConfig> {
    let Some(path) = path else {
        return Ok(RespondConfig::default());
    };
    let cfg = crate::config::Config::load(path)?;
    Ok(cfg.respond.unwrap_or_else(|| RespondConfig {
        journal_path: cfg.state.dir.join(crate::config::DEFAULT_JOURNAL),
        ..RespondConfig::default()
    }))
}

/// Give the cloud a person names on the command line a responder even when the config has no
/// section for it: AWS standard chain; Azure from AZURE_TENANT_ID/AZURE_CLIENT_ID/
/// AZURE_CLIENT_SECRET, else managed identity; GCP from GOOGLE_APPLICATION_CREDENTIALS, else
/// the metadata server.
fn ensure_backend(cfg: &mut RespondConfig, p: Provider) {
    match p {
        Provider::Aws if cfg.aws.is_none() => cfg.aws = Some(Default::default()),
        Provider::Azure if cfg.azure.is_none() => {
            let secret = std::env::var_os("AZURE_CLIENT_SECRET").is_some();
            cfg.azure = Some(AzureConfig {
                tenant_id: std::env::var("AZURE_TENANT_ID").ok(),
                client_id: std::env::var("AZURE_CLIENT_ID").ok(),
                client_secret_env: secret.then(|| "AZURE_CLIENT_SECRET".to_string()),
                managed_identity: !secret,
                ..Default::default()
            });
        }
        Provider::Gcp if cfg.gcp.is_none() => cfg.gcp = Some(Default::default()),
        _ => {}
    }
}

/// Exit status for the outcome of an action.
fn exit_for(o: Outcome) -> u8 {
    match o {
        Outcome::Applied | Outcome::Approved | Outcome::Rejected => 0,
        Outcome::AlreadyApplied => 10,
        Outcome::Refused | Outcome::Halted => 11,
        Outcome::Failed => 12,
        Outcome::Planned | Outcome::DryRun | Outcome::Pending => 13,
        Outcome::NotCorroborated | Outcome::UnverifiedOrigin => 14,
    }
}

fn summary(r: &AuditRecord) -> String {
    let mut s = format!(
        "{:<8} {:<16} {:<16} {} {}",
        format!("{:?}", r.phase).to_lowercase(),
        r.outcome.as_str(),
        r.action.kind.as_str(),
        r.key,
        r.action_id
    );
    if let Some(d) = &r.detail {
        s.push_str(&format!("\n         {d}"));
    }
    if let Some(u) = &r.undo_command {
        s.push_str(&format!("\n         undo: {u}"));
    }
    s
}

fn print(outs: &[ResponseOutput], json: bool) -> Result<()> {
    let stdout = std::io::stdout();
    let mut w = stdout.lock();
    for o in outs {
        if json {
            serde_json::to_writer(&mut w, o)?;
            writeln!(w)?;
        } else {
            match o {
                ResponseOutput::Audit(r) => writeln!(w, "{}", summary(r))?,
                ResponseOutput::Finding(f) => writeln!(w, "FINDING  {}", f.message)?,
            }
        }
    }
    Ok(())
}

pub fn run(args: Args) -> Result<ExitCode> {
    let json = args.json || !std::io::stdout().is_terminal();
    let who = args
        .who
        .clone()
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| "cli".to_string());
    let mut cfg = load_config(args.config.as_ref())?;
    if let Some(j) = &args.journal {
        cfg.journal_path = j.clone();
    }
    if matches!(
        args.command,
        Verb::Approve { .. } | Verb::Reject { .. } | Verb::Undo { .. }
    ) && !cfg.journal_path.exists()
    {
        return Err(anyhow!(
            "the journal {} does not exist: give the one the action was recorded in (--journal FILE, or the --config kmswatch run used; the audit record's undo_command names both)",
            cfg.journal_path.display()
        ));
    }
    let manual = |k: &KeyArgs, action: Action| ManualRequest {
        provider: k.provider,
        key: k.key.clone(),
        action,
        dry_run: k.dry_run,
        reason: if k.reason.is_empty() {
            "requested on the command line".to_string()
        } else {
            k.reason.clone()
        },
        who: who.clone(),
    };
    let request = match &args.command {
        Verb::Disable(k) => Some(manual(k, Action::new(ActionKind::Disable))),
        Verb::Enable(k) => Some(manual(k, Action::new(ActionKind::Enable))),
        Verb::CancelDeletion(k) => Some(manual(k, Action::new(ActionKind::CancelDeletion))),
        Verb::Rotate { key, period_days } => {
            let mut a = Action::new(if period_days.is_some() {
                ActionKind::EnableRotation
            } else {
                ActionKind::Rotate
            });
            a.rotation_period_days = *period_days;
            Some(manual(key, a))
        }
        _ => None,
    };
    if let Some(r) = &request {
        ensure_backend(&mut cfg, r.provider);
    } else {
        // approve/undo act on keys named in the journal: any cloud.
        for p in [Provider::Aws, Provider::Azure, Provider::Gcp] {
            if matches!(args.command, Verb::Approve { .. } | Verb::Undo { .. }) {
                ensure_backend(&mut cfg, p);
            }
        }
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let responder = match Responder::new(cfg.clone()) {
        Ok(r) => r,
        // A cloud whose credentials are missing must not stop list/reject (see below).
        // A cloud whose credentials are missing must not stop list/reject.
        Err(e)
            if request.is_none()
                && !matches!(e, kmswatch_respond::RespondError::Journal { .. }) =>
        {
            Responder::new(RespondConfig {
                aws: cfg.aws.clone(),
                azure: None,
                gcp: None,
                ..cfg.clone()
            })
            .map_err(|e| anyhow!("{e}"))?
        }
        Err(e) => return Err(anyhow!("{e}")),
    };
    let responder = match &args.config {
        Some(path) => responder.with_config_path(path),
        None => responder,
    };
    let outs: Vec<ResponseOutput> = match args.command {
        Verb::List { all } => {
            let recs = if all {
                let (_, recs) = kmswatch_respond::journal::Journal::open(&cfg.journal_path)
                    .map_err(|e| anyhow!("{e}"))?;
                recs
            } else {
                responder.pending()
            };
            if !json && recs.is_empty() {
                eprintln!("no {}", if all { "records" } else { "pending actions" });
            }
            let outs: Vec<_> = recs
                .into_iter()
                .map(|r| ResponseOutput::Audit(Box::new(r)))
                .collect();
            print(&outs, json)?;
            return Ok(ExitCode::SUCCESS);
        }
        Verb::Approve { id } => rt
            .block_on(responder.approve(&id, &who))
            .map_err(|e| anyhow!("{e}"))?,
        Verb::Reject { id, reason } => vec![ResponseOutput::Audit(Box::new(
            responder
                .reject(&id, &who, &reason)
                .map_err(|e| anyhow!("{e}"))?,
        ))],
        Verb::Undo { id, reason } => rt
            .block_on(responder.undo(&id, &who, &reason))
            .map_err(|e| anyhow!("{e}"))?,
        _ => match request {
            Some(r) => rt
                .block_on(responder.manual(r))
                .map_err(|e| anyhow!("{e}"))?,
            None => Vec::new(),
        },
    };
    print(&outs, json)?;
    let code = outs
        .iter()
        .filter_map(ResponseOutput::audit)
        .next_back()
        .map_or(0, |r| exit_for(r.outcome));
    Ok(ExitCode::from(code))
}
