//! # kmswatch
//!
//! The binary at the end of the data path: command-line verbs that wire the library crates
//! (normalize, rules, sources, sinks, respond) together.
//!
//! Exit codes are part of the interface: 0 success; 1 the run completed but some input was
//! rejected (or, for `scan`, findings were raised with `--fail-on-findings`); 2 usage or I/O
//! errors that stopped the run.

mod cmd;
mod config;
mod input;
mod runtime;
mod term;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// jemalloc instead of the system allocator: each checkpoint serializes the whole engine state
/// (tens of MB) and frees it again among long-lived small allocations; glibc malloc fragments
/// under that pattern and the resident memory of `kmswatch run` climbs steadily while the live
/// heap stays level (measured with heaptrack over the Kafka soak, `scripts/bench-kafka`).
/// jemalloc hands the freed pages back and keeps it flat.
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// kmswatch — who touched your keys? Detection for AWS KMS, Azure Key Vault and Google Cloud KMS
/// audit logs.
///
/// Reads CloudTrail, Key Vault / Activity Log and Cloud Audit Logs in the shapes they are
/// delivered in (S3 files, Event Hub batches, Pub/Sub pushes, Log Analytics exports, gzip,
/// zip...), normalizes them into one schema (OCSF API Activity + `kms.*`), and runs Sigma rules
/// over them.
#[derive(Debug, Parser)]
#[command(
    name = "kmswatch",
    version,
    propagate_version = true,
    max_term_width = 100
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    Normalize(cmd::normalize::Args),
    Scan(cmd::scan::Args),
    Rules(cmd::rules::Args),
    Respond(cmd::respond::Args),
    Gen(cmd::gen::Args),
    Bench(cmd::bench::Args),
    Run(cmd::run::Args),
    Validate(cmd::validate::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Normalize(args) => cmd::normalize::run(args),
        Command::Scan(args) => cmd::scan::run(args),
        Command::Rules(args) => cmd::rules::run(args),
        Command::Respond(args) => cmd::respond::run(args),
        Command::Gen(args) => cmd::gen::run(args),
        Command::Bench(args) => cmd::bench::run(args),
        Command::Run(args) => cmd::run::run(args),
        Command::Validate(args) => cmd::validate::run(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            // Errors quote file names, config values and sometimes log text.
            eprintln!("kmswatch: error: {}", term::escape_lines(&format!("{e:#}")));
            ExitCode::from(2)
        }
    }
}
