//! Load errors and load reports.

use std::fmt;
use std::path::PathBuf;

/// What kind of problem a [`LoadError`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadErrorKind {
    /// The file could not be read. Retrying may help (permissions, a file being written).
    Io,
    /// The file is not valid YAML.
    Syntax,
    /// The rule is not valid Sigma, or names something that does not exist (an unknown field
    /// of the normalized event, a bad regex, a missing placeholder value).
    Invalid,
    /// The rule is valid Sigma but uses a feature kmswatch does not support for JSON events.
    Unsupported,
    /// The rule uses an `|expand` placeholder (`%kms_admins%`) that has no configured values:
    /// the rule is fine, the site configuration is incomplete.
    MissingPlaceholder,
}

/// One rule that could not be loaded, with where and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadError {
    /// The rule file (or the name given to an in-memory source).
    pub file: PathBuf,
    /// 1-based line of the offending node (0 when the whole file is at fault).
    pub line: usize,
    /// The rule's `id` or `title`, when it got that far.
    pub rule: Option<String>,
    /// The kind of problem.
    pub kind: LoadErrorKind,
    /// What is wrong, for the person who fixes the rule.
    pub reason: String,
}

impl LoadError {
    /// Whether retrying the load can help (only for I/O errors; a rule error needs a fix).
    pub fn is_retryable(&self) -> bool {
        self.kind == LoadErrorKind::Io
    }
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: ", self.file.display(), self.line)?;
        if let Some(r) = &self.rule {
            write!(f, "rule {r}: ")?;
        }
        f.write_str(&self.reason)
    }
}

impl std::error::Error for LoadError {}

/// Every error of a failed load (see [`crate::LoadOptions::skip_invalid`]).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{} Sigma rule error(s):\n{}", .0.len(), display_all(.0))]
pub struct LoadErrors(pub Vec<LoadError>);

fn display_all(errors: &[LoadError]) -> String {
    errors
        .iter()
        .map(|e| format!("  {e}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A rule or filter that was read but will not run, and why (not an error).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// The file.
    pub file: PathBuf,
    /// 1-based line of the document.
    pub line: usize,
    /// The rule's `id` or `title`.
    pub rule: String,
    /// Why it will not run.
    pub reason: String,
}

impl fmt::Display for Skipped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}: rule {}: {}",
            self.file.display(),
            self.line,
            self.rule,
            self.reason
        )
    }
}

/// What a load found besides the rules themselves.
#[derive(Debug, Clone, Default)]
pub struct LoadReport {
    /// Rules that failed to load (only non-empty with `skip_invalid`).
    pub errors: Vec<LoadError>,
    /// Rules loaded but not applicable to kmswatch's events (other logsources), and filters
    /// that name no loaded rule.
    pub skipped: Vec<Skipped>,
}
