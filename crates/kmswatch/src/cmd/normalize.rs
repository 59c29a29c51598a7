//! `kmswatch normalize`: audit logs in, one normalized event per line out.

use crate::input::{self, Input};
use crate::runtime::deadletter::cli_dead_letter;
use crate::term::{escape, Escaped};
use anyhow::{Context, Result};
use kmswatch_normalize::{Format, Item, Normalizer, Options, Summary};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

/// Normalize audit logs to one JSON event per line (OCSF API Activity + `kms.*`).
///
/// Reads every PATH — a file in any supported shape (plain or gzip, zip archives), a directory
/// (walked recursively; files whose names do not look like logs are passed over), or `-` for
/// standard input — and prints each key-management event as one line of JSON on stdout. Records
/// of other services are skipped and counted; records that cannot be read are reported on
/// stderr with file, line and reason (and written whole to --dead-letter), and every other
/// record is still processed.
///
/// Exit status: 0 when nothing was rejected, 1 when some records were rejected, 2 on usage or
/// I/O errors.
///
/// Examples:
///   kmswatch normalize fixtures/
///   kmswatch normalize --format aws_cloudtrail 111122223333_CloudTrail_us-east-1_*.json.gz
///   gunzip -c PT1H.json.gz | kmswatch normalize - --dead-letter rejected.jsonl
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// Files, directories or `-` (stdin).
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,

    /// Read records as this format instead of detecting it per record
    /// (auto, aws_cloudtrail, azure_keyvault, gcp_audit).
    #[arg(long, default_value = "auto", value_parser = parse_format)]
    pub format: Format,

    /// Write every rejected record (location, reason and the record itself) to this file as
    /// JSON lines.
    #[arg(long, value_name = "PATH")]
    pub dead_letter: Option<PathBuf>,

    /// Write events to this file instead of stdout.
    #[arg(long, short = 'o', value_name = "PATH")]
    pub output: Option<PathBuf>,

    /// AWS roles (name or ARN glob) whose sessions are people, e.g. 'Admin*'. Repeatable.
    /// Sessions of AWSReservedSSO_* roles are always people.
    #[arg(long = "human-role", value_name = "GLOB")]
    pub human_roles: Vec<String>,

    /// Reject single records larger than this many bytes.
    #[arg(long, default_value_t = kmswatch_normalize::options::DEFAULT_MAX_RECORD_BYTES, value_name = "BYTES")]
    pub max_record_bytes: usize,

    /// Also print events kept because they bear on key management although they come from
    /// another service (trail stopped, log sink changed, S3 copy under a KMS key). On by default.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub related: bool,

    /// No progress bar, no summary.
    #[arg(long, short = 'q')]
    pub quiet: bool,

    /// How many rejected records to list on stderr (all are counted and dead-lettered).
    #[arg(long, default_value_t = 20, value_name = "N")]
    pub show_rejected: usize,
}

fn parse_format(s: &str) -> Result<Format, String> {
    s.parse::<Format>().map_err(|e| e.to_string())
}

/// Run the verb.
pub fn run(args: Args) -> Result<ExitCode> {
    let normalizer = Normalizer::new(Options {
        format: args.format,
        human_role_patterns: args.human_roles.clone(),
        max_record_bytes: args.max_record_bytes,
        ..Options::default()
    })?;
    let inputs = input::expand(&args.paths)?;
    let pb = input::progress(&inputs, !args.quiet);

    let mut out: Box<dyn Write> = match &args.output {
        Some(p) => Box::new(BufWriter::with_capacity(
            1 << 20,
            File::create(p).with_context(|| format!("creating {}", p.display()))?,
        )),
        None => Box::new(BufWriter::with_capacity(1 << 20, std::io::stdout().lock())),
    };
    let mut dead = match &args.dead_letter {
        Some(p) => Some(BufWriter::new(
            File::create(p).with_context(|| format!("creating {}", p.display()))?,
        )),
        None => None,
    };

    let mut summary = Summary::default();
    let mut shown = 0usize;
    let mut write_err: Option<std::io::Error> = None;
    for inp in &inputs.files {
        let origin = inp.origin();
        // Dead letters name the verb as their source (the runtime names the configured id).
        let source: std::sync::Arc<str> = std::sync::Arc::from("normalize");
        pb.set_message(escape(&short(&origin)).into_owned());
        let bytes = inp.read()?;
        normalizer.normalize_bytes(&bytes, &origin, &mut |item| {
            summary.add(&item);
            match item {
                Item::Event { event, related, .. } => {
                    if related && !args.related {
                        return;
                    }
                    if write_err.is_none() {
                        let r = serde_json::to_writer(&mut out, &event)
                            .map_err(std::io::Error::from)
                            .and_then(|_| out.write_all(b"\n"));
                        if let Err(e) = r {
                            write_err = Some(e);
                        }
                    }
                }
                Item::Skipped { .. } => {}
                Item::Rejected {
                    error,
                    location,
                    bytes,
                } => {
                    if shown < args.show_rejected && !args.quiet {
                        pb.suspend(|| {
                            eprintln!("rejected: {}", Escaped(&format!("{location}: {error}")))
                        });
                        shown += 1;
                    }
                    if let Some(d) = dead.as_mut() {
                        let _ = d.write_all(&cli_dead_letter(
                            &source, &origin, &location, &error, bytes,
                        ));
                    }
                }
            }
        });
        if let Some(e) = write_err.take() {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                return Ok(ExitCode::SUCCESS);
            }
            return Err(e).context("writing events");
        }
        if let Input::File(_, n) = inp {
            pb.inc(*n);
        }
    }
    pb.finish_and_clear();
    match out.flush() {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(ExitCode::SUCCESS),
        r => r.context("writing events")?,
    }
    if let Some(mut d) = dead {
        d.flush().context("writing dead letters")?;
    }
    if !args.quiet {
        eprint!(
            "{}",
            render_summary(&summary, inputs.files.len(), inputs.not_logs.len())
        );
        if summary.rejected_total() > shown as u64 {
            eprintln!(
                "({} more rejected records not listed{})",
                summary.rejected_total() - shown as u64,
                if args.dead_letter.is_some() {
                    "; all are in the dead-letter file"
                } else {
                    "; use --dead-letter PATH to keep them"
                }
            );
        }
    }
    Ok(if summary.rejected_total() > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn short(origin: &str) -> String {
    let n = origin.chars().count();
    if n > 40 {
        format!("…{}", origin.chars().skip(n - 39).collect::<String>())
    } else {
        origin.to_string()
    }
}

/// The end-of-run summary printed on stderr.
pub fn render_summary(s: &Summary, files: usize, not_logs: usize) -> String {
    let mut out = format!(
        "summary: {files} files, {} records, {} KMS events, {} related events",
        s.records, s.kms_events, s.related_events
    );
    if not_logs > 0 {
        out.push_str(&format!(", {not_logs} non-log files passed over"));
    }
    out.push('\n');
    let list = |m: &std::collections::BTreeMap<&str, u64>| {
        m.iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    if !s.skipped.is_empty() {
        out.push_str(&format!("  skipped:  {}\n", list(&s.skipped)));
    }
    if !s.rejected.is_empty() {
        out.push_str(&format!("  rejected: {}\n", list(&s.rejected)));
    }
    out
}
