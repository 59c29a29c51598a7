//! Offline inputs: paths on the command line expanded to files (directories walked
//! recursively, `-` for stdin), read whole, with a progress bar on a terminal.

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use is_terminal::IsTerminal;
use kmswatch_normalize::is_log_name;
use std::io::Read;
use std::path::PathBuf;

/// One input to read.
#[derive(Debug, Clone)]
pub enum Input {
    /// Standard input.
    Stdin,
    /// A file, with its size for the progress bar.
    File(PathBuf, u64),
}

impl Input {
    /// The origin name carried by every location.
    pub fn origin(&self) -> String {
        match self {
            Input::Stdin => "-".to_string(),
            Input::File(p, _) => p.display().to_string(),
        }
    }

    /// Read it whole.
    pub fn read(&self) -> Result<Vec<u8>> {
        match self {
            Input::Stdin => {
                let mut v = Vec::new();
                std::io::stdin()
                    .lock()
                    .read_to_end(&mut v)
                    .context("reading standard input")?;
                Ok(v)
            }
            Input::File(p, _) => {
                std::fs::read(p).with_context(|| format!("reading {}", p.display()))
            }
        }
    }
}

/// Expanded inputs plus the files passed over while walking directories.
#[derive(Debug, Default)]
pub struct Inputs {
    /// Files to read, in a stable order.
    pub files: Vec<Input>,
    /// Files under a directory whose names do not look like logs (README, CSV, YAML...).
    pub not_logs: Vec<PathBuf>,
}

impl Inputs {
    /// Total bytes on disk (stdin counts as 0).
    pub fn total_bytes(&self) -> u64 {
        self.files
            .iter()
            .map(|f| match f {
                Input::File(_, n) => *n,
                Input::Stdin => 0,
            })
            .sum()
    }
}

/// Expand paths: files as given (any name), directories walked recursively in name order
/// keeping files whose names look like logs (`.json`, `.jsonl`, `.ndjson`, `.log`, `.txt`,
/// `.zip`, and those with `.gz`), `-` for stdin.
pub fn expand(paths: &[PathBuf]) -> Result<Inputs> {
    let mut out = Inputs::default();
    for p in paths {
        if p.as_os_str() == "-" {
            out.files.push(Input::Stdin);
            continue;
        }
        let meta = std::fs::metadata(p).with_context(|| format!("{}: cannot open", p.display()))?;
        if meta.is_dir() {
            for entry in walkdir::WalkDir::new(p)
                .sort_by_file_name()
                .follow_links(true)
            {
                let entry = entry.with_context(|| format!("walking {}", p.display()))?;
                if !entry.file_type().is_file() {
                    continue;
                }
                let name = entry.file_name().to_string_lossy();
                if name.starts_with('.') {
                    continue;
                }
                if is_log_name(&name) {
                    let len = entry.metadata().map(|m| m.len()).unwrap_or(0);
                    out.files.push(Input::File(entry.into_path(), len));
                } else {
                    out.not_logs.push(entry.into_path());
                }
            }
        } else {
            out.files.push(Input::File(p.clone(), meta.len()));
        }
    }
    Ok(out)
}

/// A byte-based progress bar, drawn only when stderr is a terminal and the input is large
/// enough to be worth it (over 8 MiB or over 50 files).
pub fn progress(inputs: &Inputs, enabled: bool) -> ProgressBar {
    let total = inputs.total_bytes();
    let worth_it = total > (8 << 20) || inputs.files.len() > 50;
    if !enabled || !worth_it || !std::io::stderr().is_terminal() {
        return ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::hidden());
    }
    let pb = ProgressBar::new(total);
    pb.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} ({bytes_per_sec}, eta {eta}) {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    pb
}
