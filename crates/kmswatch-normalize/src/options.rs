//! Normalizer options.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Which provider format to read records as.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// Detect per record (the default).
    #[default]
    Auto,
    /// AWS CloudTrail (any delivery shape) and KMS EventBridge events.
    AwsCloudtrail,
    /// Azure Key Vault resource logs and Activity Log (any delivery shape).
    AzureKeyvault,
    /// GCP Cloud Audit Logs `LogEntry` (any delivery shape).
    GcpAudit,
}

impl Format {
    /// Every format, for `--help` and validation messages.
    pub const ALL: [Format; 4] = [
        Format::Auto,
        Format::AwsCloudtrail,
        Format::AzureKeyvault,
        Format::GcpAudit,
    ];

    /// The config / CLI name.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Auto => "auto",
            Format::AwsCloudtrail => "aws_cloudtrail",
            Format::AzureKeyvault => "azure_keyvault",
            Format::GcpAudit => "gcp_audit",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Format {
    type Err = OptionsError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Format::ALL
            .into_iter()
            .find(|f| f.as_str() == s)
            .ok_or_else(|| OptionsError::UnknownFormat(s.to_string()))
    }
}

/// Options of the normalizer. Defaults suit CloudTrail, Key Vault and Cloud Audit Logs as
/// delivered; every field has a doc comment and a unit in its name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Options {
    /// Read records as this format instead of detecting it per record.
    pub format: Format,
    /// Glob patterns over AWS role names or role ARNs whose sessions are people (for example
    /// `Admin*`, `arn:aws:iam::*:role/BreakGlass`). Sessions of `AWSReservedSSO_*` roles are
    /// always people; other role sessions are workloads unless they match here.
    pub human_role_patterns: Vec<String>,
    /// A single record larger than this is rejected as `too_large` (CloudTrail, Key Vault and
    /// Cloud Logging entries are at most 256 KiB; the default leaves ample room).
    pub max_record_bytes: usize,
    /// Decompressed size limit for one gzip stream or zip entry (guards against bombs).
    pub max_decompressed_bytes: u64,
}

/// Default [`Options::max_record_bytes`]: 8 MiB.
pub const DEFAULT_MAX_RECORD_BYTES: usize = 8 << 20;
/// Default [`Options::max_decompressed_bytes`]: 2 GiB.
pub const DEFAULT_MAX_DECOMPRESSED_BYTES: u64 = 2 << 30;

impl Default for Options {
    fn default() -> Self {
        Options {
            format: Format::Auto,
            human_role_patterns: Vec::new(),
            max_record_bytes: DEFAULT_MAX_RECORD_BYTES,
            max_decompressed_bytes: DEFAULT_MAX_DECOMPRESSED_BYTES,
        }
    }
}

/// Invalid options.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OptionsError {
    /// `--format` / `format:` names no format.
    #[error(
        "unknown format {0:?}; expected one of auto, aws_cloudtrail, azure_keyvault, gcp_audit"
    )]
    UnknownFormat(String),
    /// A human role pattern is not a valid glob.
    #[error("human_role_patterns: {pattern:?} is not a valid glob: {reason}")]
    BadPattern {
        /// The pattern.
        pattern: String,
        /// The glob parser's message.
        reason: String,
    },
}

impl Options {
    pub(crate) fn compile_human_roles(&self) -> Result<globset::GlobSet, OptionsError> {
        let mut b = globset::GlobSetBuilder::new();
        for p in &self.human_role_patterns {
            let g = globset::GlobBuilder::new(p)
                .literal_separator(false)
                .build()
                .map_err(|e| OptionsError::BadPattern {
                    pattern: p.clone(),
                    reason: e.to_string(),
                })?;
            b.add(g);
        }
        b.build().map_err(|e| OptionsError::BadPattern {
            pattern: self.human_role_patterns.join(","),
            reason: e.to_string(),
        })
    }
}
