//! `kmswatch scan`: audit logs in, findings out — normalize, enrich, match, correlate.

use crate::config::Config;
use crate::input;
use crate::runtime::deadletter::cli_dead_letter;
use crate::term::{escape, Escaped};
use anyhow::{anyhow, Context, Result};
use is_terminal::IsTerminal;
use kmswatch_model::Finding;
use kmswatch_normalize::{Format, Item, Normalizer, Options, Summary};
use kmswatch_rules::{Engine, LoadOptions, RuleSet};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

/// Scan audit logs with the rule pack and print findings.
///
/// Reads every PATH like `kmswatch normalize` (files in any supported shape, directories,
/// `-`), runs every event through the rules (single-event and correlation rules, in event
/// time), and prints findings: a readable table on a terminal, one OCSF Detection Finding per
/// line of JSON otherwise (or with --json). A summary goes to stderr.
///
/// Event time: each input file is a source with its own watermark; an event older than the
/// latest event of its file by more than the allowed lateness (default 20 minutes) is counted
/// as late and written to --late, never silently dropped. Correlation windows close as the
/// watermark passes them, and all remaining windows at the end of the input.
///
/// Exit status: 0 success; 1 some input records were rejected; 2 usage, config or rule errors;
/// 3 --fail-on was given and a finding at or above that level was raised.
///
/// Examples:
///   kmswatch scan fixtures/
///   kmswatch scan --config kmswatch.yml --json s3-export/ > findings.jsonl
///   kmswatch scan --rules my-rules/ --rules rules/ --fail-on high logs/
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// Files, directories or `-` (stdin).
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,

    /// Rule files or directories (repeatable). Default: the config's `rules.paths`, else
    /// `./rules`.
    #[arg(long = "rules", value_name = "PATH")]
    pub rules: Vec<PathBuf>,

    /// Configuration file (normalize options, calendars, inventory, placeholders...).
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Read records as this format instead of detecting it
    /// (auto, aws_cloudtrail, azure_keyvault, gcp_audit).
    #[arg(long, default_value = "auto", value_parser = parse_format)]
    pub format: Format,

    /// Print findings as JSON lines even on a terminal.
    #[arg(long, conflicts_with = "table")]
    pub json: bool,

    /// Print the findings table even when stdout is not a terminal (for `| less -R`, a
    /// report file). Text from the logs (principals, key names, titles) is printed with its
    /// control characters escaped (`\x1b`), as on a terminal.
    #[arg(long, conflicts_with = "output")]
    pub table: bool,

    /// Write findings (JSON lines) to this file instead of stdout.
    #[arg(long, short = 'o', value_name = "PATH")]
    pub output: Option<PathBuf>,

    /// Only report findings at or above this level
    /// (informational, low, medium, high, critical).
    #[arg(long, value_name = "LEVEL", value_parser = parse_level)]
    pub min_level: Option<u8>,

    /// Exit with status 3 when a finding at or above this level is raised.
    #[arg(long, value_name = "LEVEL", value_parser = parse_level)]
    pub fail_on: Option<u8>,

    /// Write late events (older than the watermark allows) to this file as JSON lines.
    #[arg(long, value_name = "PATH")]
    pub late: Option<PathBuf>,

    /// Write rejected input records to this file as JSON lines.
    #[arg(long, value_name = "PATH")]
    pub dead_letter: Option<PathBuf>,

    /// Load the valid rules even when some fail to load (each failure is reported).
    #[arg(long)]
    pub skip_invalid: bool,

    /// No progress bar, no summary.
    #[arg(long, short = 'q')]
    pub quiet: bool,
}

fn parse_format(s: &str) -> Result<Format, String> {
    s.parse::<Format>().map_err(|e| e.to_string())
}

fn parse_level(s: &str) -> Result<u8, String> {
    match s.to_ascii_lowercase().as_str() {
        "informational" | "info" => Ok(1),
        "low" => Ok(2),
        "medium" => Ok(3),
        "high" => Ok(4),
        "critical" => Ok(5),
        _ => Err(format!(
            "unknown level {s:?}; expected informational, low, medium, high or critical"
        )),
    }
}

/// A rule left off because the config lacks a value it needs.
#[derive(Debug, Clone)]
pub struct RuleOff {
    /// The rule (id or title).
    pub rule: String,
    /// The `|expand` placeholder missing from `rules.placeholders`.
    pub placeholder: String,
    /// The rule file.
    pub file: PathBuf,
}

/// Load the rules named by the config and arguments; print load problems.
pub fn load_rules(cfg: &Config, extra: &[PathBuf], skip_invalid: bool) -> Result<RuleSet> {
    let (rules, off) = load_rules_noting(cfg, extra, skip_invalid)?;
    for o in &off {
        eprintln!(
            "note: rule {} is off: it needs rules.placeholders.{} in the config ({})",
            Escaped(&o.rule),
            Escaped(&o.placeholder),
            Escaped(&o.file.display().to_string())
        );
    }
    Ok(rules)
}

/// Load the rules named by the config and arguments; rules that need site values (`|expand`
/// placeholders such as %kms_admins%) the config does not supply are left off and returned.
pub fn load_rules_noting(
    cfg: &Config,
    extra: &[PathBuf],
    skip_invalid: bool,
) -> Result<(RuleSet, Vec<RuleOff>)> {
    let paths: Vec<PathBuf> = if extra.is_empty() {
        cfg.rules.paths.clone()
    } else {
        extra.to_vec()
    };
    for p in &paths {
        if !p.exists() {
            return Err(anyhow!(
                "rules: {} does not exist (give --rules DIR or set rules.paths in the config)",
                p.display()
            ));
        }
    }
    let mut opts: LoadOptions = cfg.rules.engine.load_options();
    opts.skip_invalid = skip_invalid || cfg.rules.skip_invalid;
    // Rules that need site values cannot run until the config supplies them: without them,
    // run the rest and say which are off.
    if !opts.skip_invalid {
        if let Err(errors) = RuleSet::load(&paths, &opts) {
            let placeholder = |e: &kmswatch_rules::LoadError| {
                e.kind == kmswatch_rules::LoadErrorKind::MissingPlaceholder
            };
            if errors.0.iter().all(placeholder) {
                let off = errors
                    .0
                    .iter()
                    .map(|e| RuleOff {
                        rule: e.rule.clone().unwrap_or_else(|| "?".into()),
                        placeholder: e.reason.split('%').nth(1).unwrap_or("?").to_string(),
                        file: e.file.clone(),
                    })
                    .collect();
                opts.skip_invalid = true;
                let (rules, _) = RuleSet::load(&paths, &opts).map_err(|e| anyhow!("{e}"))?;
                return Ok((rules, off));
            }
        }
    }
    match RuleSet::load(&paths, &opts) {
        Ok((rules, report)) => {
            for e in &report.errors {
                eprintln!("rule skipped (invalid): {}", Escaped(&e.to_string()));
            }
            Ok((rules, Vec::new()))
        }
        Err(errors) => Err(anyhow!(
            "{} rule(s) failed to load (use --skip-invalid to run the others):\n{errors}",
            errors.0.len()
        )),
    }
}

/// Run the verb.
pub fn run(args: Args) -> Result<ExitCode> {
    let mut cfg = match &args.config {
        Some(p) => Config::load(p)?,
        None => Config::default(),
    };
    if args.format != Format::Auto {
        cfg.normalize.format = args.format;
    }
    let normalizer = Normalizer::new(Options {
        ..cfg.normalize.clone()
    })?;
    let rules = load_rules(&cfg, &args.rules, args.skip_invalid)?;
    let n_rules = rules.len();
    let n_correlations = rules.correlations().count();
    let mut engine = Engine::new(rules, cfg.rules.engine.clone()).context("detection engine")?;

    let inputs = input::expand(&args.paths)?;
    let pb = input::progress(&inputs, !args.quiet);
    let table =
        args.table || (!args.json && args.output.is_none() && std::io::stdout().is_terminal());
    let mut out: Box<dyn Write> = match &args.output {
        Some(p) => Box::new(BufWriter::new(
            File::create(p).with_context(|| format!("creating {}", p.display()))?,
        )),
        None => Box::new(BufWriter::new(std::io::stdout().lock())),
    };
    let mut dead = args
        .dead_letter
        .as_ref()
        .map(|p| {
            File::create(p)
                .map(BufWriter::new)
                .with_context(|| format!("creating {}", p.display()))
        })
        .transpose()?;

    let mut summary = Summary::default();
    let mut findings: Vec<Finding> = Vec::new();
    let mut report = Report::new(table, args.min_level);
    for inp in &inputs.files {
        let origin = inp.origin();
        // Dead letters name the verb as their source (the runtime names the configured id).
        let source: std::sync::Arc<str> = std::sync::Arc::from("scan");
        let bytes = inp.read()?;
        normalizer.normalize_bytes(&bytes, &origin, &mut |item| {
            summary.add(&item);
            match item {
                Item::Event { event, .. } => {
                    engine.process_owned(event, &origin, &mut findings);
                }
                Item::Rejected {
                    error,
                    location,
                    bytes,
                } => {
                    if !args.quiet {
                        pb.suspend(|| {
                            eprintln!("rejected: {}", Escaped(&format!("{location}: {error}")))
                        });
                    }
                    if let Some(d) = dead.as_mut() {
                        let _ = d.write_all(&cli_dead_letter(
                            &source, &origin, &location, &error, bytes,
                        ));
                    }
                }
                Item::Skipped { .. } => {}
            }
        });
        engine.end_source(&origin, &mut findings);
        report.emit(&mut out, &mut findings)?;
        if let input::Input::File(_, n) = inp {
            pb.inc(*n);
        }
    }
    engine.flush(&mut findings);
    report.emit(&mut out, &mut findings)?;
    pb.finish_and_clear();
    if table {
        report.table(&mut out)?;
    }
    out.flush().context("writing findings")?;
    if let Some(mut d) = dead {
        d.flush()?;
    }

    let late = engine.take_late();
    if let Some(p) = &args.late {
        let mut w =
            BufWriter::new(File::create(p).with_context(|| format!("creating {}", p.display()))?);
        for l in &late {
            serde_json::to_writer(
                &mut w,
                &serde_json::json!({
                    "source": l.source, "watermark": l.watermark, "rules": l.rules, "event": l.event,
                }),
            )?;
            w.write_all(b"\n")?;
        }
        w.flush()?;
    }
    let stats = engine.stats();
    if !args.quiet {
        eprint!(
            "{}",
            crate::cmd::normalize::render_summary(
                &summary,
                inputs.files.len(),
                inputs.not_logs.len()
            )
        );
        eprintln!(
            "rules: {n_rules} detection, {n_correlations} correlation; events matched {}; late {}{}; duplicates {}",
            stats.matched,
            stats.late,
            if stats.late > 0 && args.late.is_none() { " (use --late PATH to keep them)" } else { "" },
            stats.duplicates
        );
        eprintln!("findings: {}", report.by_level());
    }
    if args.fail_on.is_some_and(|lvl| report.max_severity >= lvl) {
        return Ok(ExitCode::from(3));
    }
    Ok(if summary.rejected_total() > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// Findings as they come: JSON lines written at once, or rows kept for the table.
struct Report {
    table: bool,
    min_level: Option<u8>,
    rows: Vec<Finding>,
    counts: BTreeMap<u8, u64>,
    max_severity: u8,
}

impl Report {
    fn new(table: bool, min_level: Option<u8>) -> Report {
        Report {
            table,
            min_level,
            rows: Vec::new(),
            counts: BTreeMap::new(),
            max_severity: 0,
        }
    }

    fn emit(&mut self, out: &mut dyn Write, findings: &mut Vec<Finding>) -> Result<()> {
        for f in findings.drain(..) {
            if self.min_level.is_some_and(|m| f.severity_id < m) {
                continue;
            }
            *self.counts.entry(f.severity_id).or_default() += 1;
            self.max_severity = self.max_severity.max(f.severity_id);
            if self.table {
                self.rows.push(f);
            } else {
                serde_json::to_writer(&mut *out, &f)?;
                out.write_all(b"\n")?;
            }
        }
        Ok(())
    }

    fn by_level(&self) -> String {
        if self.counts.is_empty() {
            return "none".to_string();
        }
        let names = [
            "unknown",
            "informational",
            "low",
            "medium",
            "high",
            "critical",
        ];
        let total: u64 = self.counts.values().sum();
        let parts: Vec<String> = self
            .counts
            .iter()
            .rev()
            .map(|(lvl, n)| format!("{n} {}", names.get(usize::from(*lvl)).unwrap_or(&"?")))
            .collect();
        format!("{total} ({})", parts.join(", "))
    }

    /// The terminal table: time, level, rule, principal, key, count — most severe first,
    /// then by time. Text from the logs is escaped (`crate::term`).
    fn table(&mut self, out: &mut dyn Write) -> Result<()> {
        self.rows.sort_by(|a, b| {
            b.severity_id
                .cmp(&a.severity_id)
                .then(a.start_time.cmp(&b.start_time))
        });
        if self.rows.is_empty() {
            return Ok(());
        }
        writeln!(
            out,
            "{:<20} {:<8} {:<44} {:<32} {:<40} {:>5}",
            "TIME (UTC)", "LEVEL", "RULE", "PRINCIPAL", "KEY", "COUNT"
        )?;
        for f in &self.rows {
            let principal = f
                .actor
                .as_ref()
                .and_then(|a| a.user.name.clone().or_else(|| a.user.uid.clone()))
                .unwrap_or_else(|| "-".into());
            let kind = f.actor.as_ref().map(|a| a.kind.as_str()).unwrap_or("");
            let key = f
                .resources
                .first()
                .map(|r| short_key(&r.uid))
                .unwrap_or_else(|| "-".into());
            let count = f.evidences_count.max(f.count);
            writeln!(
                out,
                "{:<20} {:<8} {:<44} {:<32} {:<40} {:>5}",
                kmswatch_normalize::time::format_millis(f.start_time)
                    .get(..19)
                    .unwrap_or_default()
                    .replace('T', " "),
                f.severity.to_ascii_lowercase(),
                clip(&escape(&f.finding_info.title), 44),
                clip(&escape(&format!("{principal} ({kind})")), 32),
                clip(&escape(&key), 40),
                count
            )?;
        }
        writeln!(out)?;
        writeln!(
            out,
            "{} findings. Full details: --json (OCSF Detection Finding per line).",
            self.rows.len()
        )?;
        Ok(())
    }
}

/// The distinctive end of a key id: `key/1234abcd-…`, `keys/NAME`, `cryptoKeys/K`.
fn short_key(uid: &str) -> String {
    for marker in [":key/", ":alias/", "/keys/", "/cryptoKeys/", "/secrets/"] {
        if let Some(i) = uid.find(marker) {
            let host = if marker.starts_with('/') && uid.starts_with("https://") {
                uid.trim_start_matches("https://")
                    .split('.')
                    .next()
                    .unwrap_or_default()
                    .to_string()
                    + "/"
            } else {
                String::new()
            };
            return format!("{host}{}", &uid[i + 1..]);
        }
    }
    uid.to_string()
}

fn clip(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(n - 1).collect();
        t.push('…');
        t
    }
}
