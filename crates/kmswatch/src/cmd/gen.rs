//! `kmswatch gen`: write a realistic, labelled three-cloud corpus (see `kmswatch-gen`).

use anyhow::{Context, Result};
use kmswatch_gen::{generate_with_progress, CloudCounts, GenOptions, GenSummary};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

/// Generate a realistic audit-log corpus with labelled attack scenarios.
///
/// Writes AWS CloudTrail S3 objects, Azure Key Vault and Activity Log blobs and GCP Cloud
/// Audit Logs sink files under OUT, in the paths and shapes those services deliver them,
/// with ordinary traffic on a daily cycle and attack scenarios injected into it. Also writes
/// OUT/labels.jsonl (one line per scenario and rule it should trigger), OUT/context.json
/// (accounts, time zones, business hours, holidays, kms_admins) and OUT/inventory.csv.
/// The same seed gives byte-identical output.
///
/// Examples:
///   kmswatch gen --days 1 --seed 7 corpus/
///   kmswatch gen --days 1 --seed 1 --scale 50 --kms-heavy bench/    (over 1,000,000 events, ~90% KMS)
///   kmswatch gen --hostile hostile/ && kmswatch scan hostile/       (bombs, deep nesting, a 1 GiB line)
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// Output directory (created if missing; files are overwritten).
    #[arg(value_name = "OUT")]
    pub out: PathBuf,

    /// Number of days of logs.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub days: u32,

    /// Random seed.
    #[arg(long, default_value_t = 1, value_name = "S")]
    pub seed: u64,

    /// First day (UTC).
    #[arg(long, default_value = kmswatch_gen::DEFAULT_START, value_name = "YYYY-MM-DD")]
    pub start: String,

    /// Benign volume factor (1 ≈ 70,000 records a day).
    #[arg(long, default_value_t = 1.0, value_name = "X")]
    pub scale: f64,

    /// Benchmark profile: at least 80% of records are key-management records.
    #[arg(long)]
    pub kms_heavy: bool,

    /// Write the hostile corpus instead: what anyone who can write into a monitored bucket can
    /// send — gzip and zip bombs (3 GiB, 8 GiB), a zip nested 3,000 levels, JSON nested
    /// 100,000 levels, a CloudWatch Logs envelope bomb, records that validate but do not
    /// parse, one very long line — plus one ordinary record. Each file is small on disk but
    /// the long line; what each is is printed. kmswatch must read them all within
    /// its budgets (docs/operations.md, "Hostile input").
    #[arg(long, conflicts_with_all = ["days", "seed", "scale", "kms_heavy"])]
    pub hostile: bool,

    /// With --hostile: the long line's size, MiB.
    #[arg(long, default_value_t = 1024, value_name = "MIB", requires = "hostile")]
    pub long_line_mib: usize,
}

/// `--hostile`: the cases of `kmswatch_gen::hostile`, and a list saying what each is.
fn hostile(args: &Args) -> Result<ExitCode> {
    use kmswatch_gen::hostile::{corpus, write_long_line, MIB};
    use std::io::Write as _;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let mut readme = String::from(
        "Hostile inputs written by `kmswatch gen --hostile` (kmswatch_gen::hostile).\n\n",
    );
    for c in corpus() {
        let p = args.out.join(c.name);
        std::fs::write(&p, &c.bytes).with_context(|| format!("writing {}", p.display()))?;
        readme.push_str(&format!(
            "{:<20} {:>10} bytes  {}\n",
            c.name,
            c.bytes.len(),
            c.what
        ));
    }
    let long = args.out.join("long-line.jsonl");
    let bytes = args.long_line_mib.saturating_mul(MIB);
    let f = std::fs::File::create(&long).with_context(|| format!("creating {}", long.display()))?;
    let mut w = std::io::BufWriter::new(f);
    write_long_line(&mut w, bytes)
        .and_then(|()| w.flush())
        .with_context(|| format!("writing {}", long.display()))?;
    readme.push_str(&format!(
        "{:<20} {bytes:>10} bytes  one line of {} MiB: set aside by the file source (max_record_bytes) without being held\n",
        "long-line.jsonl", args.long_line_mib
    ));
    // Printed, not written into OUT: everything in OUT is input for `kmswatch scan OUT`.
    print!("{readme}");
    Ok(ExitCode::SUCCESS)
}

pub fn run(args: Args) -> Result<ExitCode> {
    if args.hostile {
        return hostile(&args);
    }
    let opts = GenOptions {
        days: args.days,
        seed: args.seed,
        start: args.start,
        scale: args.scale,
        kms_heavy: args.kms_heavy,
    };
    let bar = std::io::stderr().is_terminal().then(|| {
        let b = indicatif::ProgressBar::new(u64::from(opts.days) * 24 * 3);
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} generating [{bar:40}] {pos}/{len} cloud-hours {elapsed}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        b
    });
    let started = std::time::Instant::now();
    let progress = |done: u64, _total: u64| {
        if let Some(b) = &bar {
            b.set_position(done);
        }
    };
    let summary = generate_with_progress(&opts, &args.out, &progress)
        .with_context(|| format!("generating into {}", args.out.display()))?;
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    print_summary(&summary, started.elapsed());
    Ok(ExitCode::SUCCESS)
}

fn line(name: &str, c: &CloudCounts) {
    println!(
        "  {name:<6} {:>10} records {:>10} KMS {:>7} files {:>9.1} MB",
        c.records,
        c.kms_records,
        c.files,
        c.bytes as f64 / 1e6
    );
}

fn print_summary(s: &GenSummary, took: std::time::Duration) {
    println!(
        "wrote {} ({} .. {})",
        crate::term::escape(&s.out_dir.display().to_string()),
        s.start,
        s.end
    );
    line("aws", &s.aws);
    line("azure", &s.azure);
    line("gcp", &s.gcp);
    line("total", &s.total);
    println!(
        "  KMS share {:.1}%, {} scenarios ({} labels) in labels.jsonl; context.json, inventory.csv; {:.1}s",
        s.kms_share() * 100.0,
        s.scenarios,
        s.labels,
        took.as_secs_f64()
    );
}
