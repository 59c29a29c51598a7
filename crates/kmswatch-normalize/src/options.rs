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
    /// A single record larger than this many bytes is rejected as `too_large`. The rejection
    /// carries the record's first 1 KiB, its size and its SHA-256, not a copy (the bytes stay
    /// in the object at its location). CloudTrail events, Cloud Logging entries and Event Hub
    /// events are at most 256 KiB, 256 KiB and 1 MiB; the default is 1 MiB.
    pub max_record_bytes: usize,
    /// Per-object budget, in bytes, of everything decoded from one input (one
    /// `normalize_bytes` call: an S3 object, a Kafka message, a file): all gzip members, all
    /// zip entries, nested containers and base64/gzip envelope payloads (CloudWatch Logs
    /// `awslogs.data`, Pub/Sub `message.data`) together. A hard bound: decoding streams into
    /// buffers that never grow past what is left of it, so the decoded bytes held while one
    /// object is normalized never exceed it. What was decoded before it ran out is processed;
    /// the rest of the object is one `budget_exceeded` rejection. The input's own bytes are
    /// not counted (the source holds them). Default 64 MiB: well above a CloudTrail log
    /// file or Key Vault blob after decompression, and small enough that one object being
    /// decoded, with the events it yields, fits a 512 MiB container with the rest of the
    /// process.
    pub max_decompressed_bytes: u64,
    /// How many containers may nest: gzip, zip archives and base64 payloads of envelopes
    /// each count one (a zip holding `x.json.gz` is 2; CloudWatch Logs data in that file,
    /// 3). A container deeper than this is one `too_deep` rejection and is not opened.
    /// Default 4.
    pub max_container_depth: usize,
}

/// Default [`Options::max_record_bytes`]: 1 MiB.
pub const DEFAULT_MAX_RECORD_BYTES: usize = 1 << 20;
/// Default [`Options::max_decompressed_bytes`]: 64 MiB.
pub const DEFAULT_MAX_DECOMPRESSED_BYTES: u64 = 64 << 20;
/// Default [`Options::max_container_depth`]: 4.
pub const DEFAULT_MAX_CONTAINER_DEPTH: usize = 4;

impl Default for Options {
    fn default() -> Self {
        Options {
            format: Format::Auto,
            human_role_patterns: Vec::new(),
            max_record_bytes: DEFAULT_MAX_RECORD_BYTES,
            max_decompressed_bytes: DEFAULT_MAX_DECOMPRESSED_BYTES,
            max_container_depth: DEFAULT_MAX_CONTAINER_DEPTH,
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
