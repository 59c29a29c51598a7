//! # kmswatch-sources
//!
//! The first stage of kmswatch's data path: transports. A source reads bytes from where key
//! management audit logs really land — files, directories and stdin, S3 objects announced on
//! SQS, an S3 prefix (backfill), Kafka topics (including Azure Event Hubs' Kafka endpoint) —
//! and hands them out as [`Batch`]es: the bytes, an origin string (`s3://bucket/key`,
//! `topic/partition/offset`, `path:offset`), an optional format hint, what the source set
//! aside ([`DeadLetter`]s) and an [`AckHandle`].
//!
//! Every batch is bounded: an S3 object or a whole file up to `max_object_bytes` (decided
//! before reading it), JSON lines in batches of `max_batch_bytes` that end on a line, a line
//! over `max_record_bytes` skipped by streaming over it. Nothing is dropped silently: what a
//! source cannot hand over (an unreadable or oversized object, a message that is not a
//! notification, an over-long line) becomes a [`DeadLetter`] in a batch of its own, whose
//! acknowledgement settles what it came from only after the runtime has written the entry.
//!
//! Sources know nothing about formats: the binary passes the bytes to `kmswatch-normalize`.
//! The acknowledgement is the only thing that flows back: a batch is acknowledged (SQS
//! message deleted, Kafka offset committed, file position persisted) only after every finding
//! derived from it was delivered. Dropping an [`AckHandle`] never acknowledges.
//!
//! [`SourceConfig`] lists every source type; [`Source::open`] builds one.

mod ack;
mod backoff;
mod config;
pub mod file;
pub mod kafka;
pub mod s3;
pub mod s3event;
pub mod sqs;
mod track;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use sha2::{Digest, Sha256};
use tracing::warn;

pub use ack::{AckHandle, Settle};
pub use backoff::Backoff;
pub use bytes::Bytes;
pub use config::*;
pub use file::{FileSource, JsonPositionStore, MemoryPositionStore, Position, PositionStore};
pub use kafka::KafkaSource;
pub use s3::S3BackfillSource;
pub use sqs::S3SqsSource;
pub use track::Contiguous;

/// A unit of bytes read by a source.
#[derive(Debug)]
pub struct Batch {
    /// Where the bytes came from: `s3://bucket/key`, `topic/partition/offset`, `path:offset`
    /// or `-:offset` for stdin (`path` or `-` for a file or stdin read once in one batch); for
    /// a batch that only carries a dead letter, the dead letter's location. Errors about its
    /// records name it.
    pub origin: String,
    /// The bytes as stored (possibly gzip; the normalizer detects compression by content).
    pub bytes: Bytes,
    /// A format hint for the normalizer; `None` means detect.
    pub format: Option<String>,
    /// When the source received the bytes.
    pub received_at: SystemTime,
    /// Settle once everything derived from the batch is delivered.
    pub ack: AckHandle,
    /// What the source read (or tried to read) for this batch but could not hand over as
    /// bytes: an unreadable S3 object, a message that is not an S3 notification, a record
    /// over the size limit. The runtime writes each as a dead-letter entry (and counts it)
    /// before the batch is acknowledged, so setting something aside is never silent.
    pub dead: Vec<DeadLetter>,
}

/// Something a source set aside instead of handing it over: one dead-letter entry.
///
/// Sources hand each one out in a [`Batch`] of its own, with empty `bytes` and the
/// acknowledgement handle of what it came from (the SQS message, the file range), so the
/// thing is forgotten upstream only after the runtime has written the entry. The reasons are
/// listed in [`reason`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// Where it is: `s3://bucket/key`, `sqs://HOST/ACCOUNT/QUEUE#MESSAGE_ID` (the queue URL
    /// without its scheme), `PATH:OFFSET` for a line of a file (`-:OFFSET` for stdin), `PATH`
    /// for a whole file.
    pub location: String,
    /// A short machine-readable reason, one of [`reason`]; it is also the metric label.
    pub reason: String,
    /// What happened, for an operator.
    pub detail: String,
    /// The bytes, when they exist nowhere else once the batch is acknowledged (an SQS
    /// message body); `None` when `location` still holds them (an S3 object, a file range),
    /// so the entry is lossless without copying them.
    pub bytes: Option<Bytes>,
    /// The size in bytes of what was set aside, when known.
    pub size: Option<u64>,
    /// Lower-case hex SHA-256 of what was set aside, when computed.
    pub sha256: Option<String>,
}

/// The reasons a source sets something aside ([`DeadLetter::reason`], the metric label).
pub mod reason {
    /// A line longer than `max_record_bytes` (file, stdin): skipped unread; size and SHA-256.
    pub const RECORD_TOO_LARGE: &str = "record_too_large";
    /// An S3 object, a whole file or stdin document over `max_object_bytes`: not read.
    pub const OBJECT_TOO_LARGE: &str = "object_too_large";
    /// GetObject/HeadObject: the key does not exist (404 `NoSuchKey`/`NotFound`).
    pub const NO_SUCH_KEY: &str = "no_such_key";
    /// GetObject/HeadObject: the bucket does not exist (`NoSuchBucket`).
    pub const NO_SUCH_BUCKET: &str = "no_such_bucket";
    /// GetObject/HeadObject: the credentials may not read the object (403 `AccessDenied`).
    pub const ACCESS_DENIED: &str = "access_denied";
    /// GetObject: the object is archived (Glacier, Deep Archive) and must be restored first.
    pub const INVALID_OBJECT_STATE: &str = "invalid_object_state";
    /// GetObject/HeadObject: another client error (4xx) that retrying does not fix.
    pub const UNREADABLE_OBJECT: &str = "unreadable_object";
    /// An SQS message body that is not JSON or not an S3/SNS/EventBridge/CloudTrail notice
    /// (or names something that is not an S3 bucket name or key).
    pub const NOT_A_NOTIFICATION: &str = "not_a_notification";
    /// A notification announced an object in a bucket that `buckets` does not list: not read.
    pub const BUCKET_NOT_ALLOWED: &str = "bucket_not_allowed";
}

impl DeadLetter {
    /// An entry for something that `location` still holds (`bytes: None`).
    pub fn new(location: impl Into<String>, reason: &str, detail: impl Into<String>) -> Self {
        Self {
            location: location.into(),
            reason: reason.to_owned(),
            detail: detail.into(),
            bytes: None,
            size: None,
            sha256: None,
        }
    }

    /// Set the size in bytes.
    pub fn with_size(mut self, size: u64) -> Self {
        self.size = Some(size);
        self
    }

    /// Set the lower-case hex SHA-256.
    pub fn with_sha256(mut self, sha256: String) -> Self {
        self.sha256 = Some(sha256);
        self
    }

    /// Keep the bytes themselves (they exist nowhere else), with their size and SHA-256.
    pub fn with_bytes(mut self, bytes: Bytes) -> Self {
        self.size = Some(bytes.len() as u64);
        self.sha256 = Some(hex::encode(Sha256::digest(&bytes)));
        self.bytes = Some(bytes);
        self
    }
}

/// The batch that carries one set-aside thing: empty bytes, the dead letter, and the handle
/// that acknowledges what it came from once the runtime has written the entry. Every source
/// sets things aside through here, so each is logged once, from one place.
pub(crate) fn set_aside(source_type: &'static str, dead: DeadLetter, ack: AckHandle) -> Batch {
    warn!(
        source_type,
        location = %dead.location,
        reason = %dead.reason,
        size = ?dead.size,
        sha256 = dead.sha256.as_deref().unwrap_or(""),
        bytes_kept = dead.bytes.is_some(),
        detail = %dead.detail,
        "set aside as a dead letter"
    );
    Batch {
        origin: dead.location.clone(),
        bytes: Bytes::new(),
        format: None,
        received_at: SystemTime::now(),
        ack,
        dead: vec![dead],
    }
}

/// Things a source passed over on purpose, counted by reason: not data, so not dead letters
/// (`s3_test_event`: the message S3 sends when a notification is configured;
/// `cloudtrail_digest`: a digest file, skipped per `skip_digest_files`). The runtime may
/// export them as `kmswatch_source_skipped_total{source,reason}`.
#[derive(Debug, Default)]
pub struct SkipCounts(Mutex<BTreeMap<&'static str, u64>>);

impl SkipCounts {
    pub(crate) fn add(&self, reason: &'static str, n: u64) {
        *self
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(reason)
            .or_default() += n;
    }

    /// The counts so far, by reason.
    pub fn snapshot(&self) -> Vec<(&'static str, u64)> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(k, v)| (*k, *v))
            .collect()
    }
}

/// Whether retrying an operation can help.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// A transient failure (network, throttling, 5xx): the source retries with backoff.
    Transient,
    /// Retrying will not help without an operator (permissions, missing queue, bad config).
    Permanent,
}

/// A source failure, naming what an operator needs to find it.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// An SQS call failed.
    #[error("SQS {operation} on {queue_url}: {message}")]
    Sqs {
        /// The API operation.
        operation: &'static str,
        /// The queue.
        queue_url: String,
        /// The error, with its code.
        message: String,
        /// Whether retrying can help.
        retry: Retry,
    },
    /// An S3 call failed.
    #[error("S3 {operation} on {location}: {message}")]
    S3 {
        /// The API operation.
        operation: &'static str,
        /// `s3://bucket/key` or `s3://bucket/prefix`.
        location: String,
        /// The error, with its code.
        message: String,
        /// Whether retrying can help.
        retry: Retry,
    },
    /// A Kafka operation failed.
    #[error("Kafka {operation} ({context}): {message}")]
    Kafka {
        /// What was being done.
        operation: &'static str,
        /// Topic/partition/offset or brokers.
        context: String,
        /// The librdkafka error.
        message: String,
        /// Whether retrying can help.
        retry: Retry,
    },
    /// A file could not be read.
    #[error("file {path}: {source}")]
    Io {
        /// The path (or `-` for stdin, or the state file).
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
}

impl SourceError {
    /// Whether retrying can help.
    pub fn retry(&self) -> Retry {
        match self {
            Self::Config(_) => Retry::Permanent,
            Self::Sqs { retry, .. } | Self::S3 { retry, .. } | Self::Kafka { retry, .. } => *retry,
            Self::Io { source, .. } => match source.kind() {
                std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied => {
                    Retry::Permanent
                }
                _ => Retry::Transient,
            },
        }
    }
}

/// Any source, built from a [`SourceConfig`].
#[derive(Debug)]
pub enum Source {
    /// `aws_s3_sqs`.
    AwsS3Sqs(S3SqsSource),
    /// `aws_s3`.
    AwsS3(S3BackfillSource),
    /// `kafka`.
    Kafka(KafkaSource),
    /// `file`.
    File(FileSource),
}

impl Source {
    /// Validate `config` and build the source (connects clients, no reads yet).
    pub async fn open(config: &SourceConfig) -> Result<Self, SourceError> {
        config.validate()?;
        Ok(match config {
            SourceConfig::AwsS3Sqs(c) => Self::AwsS3Sqs(S3SqsSource::new(c.clone()).await?),
            SourceConfig::AwsS3(c) => Self::AwsS3(S3BackfillSource::new(c.clone()).await?),
            SourceConfig::Kafka(c) => Self::Kafka(KafkaSource::new(c.clone())?),
            SourceConfig::File(c) => Self::File(FileSource::new(c.clone())?),
        })
    }

    /// The next batch; `Ok(None)` when a finite source (backfill, non-follow files) is done.
    /// Streaming sources retry transient errors themselves and only return permanent ones.
    ///
    /// Cancel-safe: a call dropped at an await point (the runtime's shutdown `select!`) loses
    /// nothing; the next call, or [`Source::drain`], goes on from the same state.
    pub async fn next_batch(&mut self) -> Result<Option<Batch>, SourceError> {
        match self {
            Self::AwsS3Sqs(s) => s.next_batch().await,
            Self::AwsS3(s) => s.next_batch().await,
            Self::Kafka(s) => s.next_batch().await,
            Self::File(s) => s.next_batch().await,
        }
    }

    /// On shutdown, after the last [`Source::next_batch`]: the batches the source still holds
    /// that would otherwise wait for the next start — for `file` in `follow` mode, complete
    /// final records without a newline of files read up to them (handed out at once, without
    /// waiting for `quiet_period_ms`); for stdin, everything buffered. The
    /// caller processes and acknowledges them like any other batch before its last
    /// checkpoint. The other sources hold nothing (their unacknowledged messages are
    /// redelivered) and return an empty list.
    pub async fn drain(&mut self) -> Result<Vec<Batch>, SourceError> {
        match self {
            Self::File(s) => s.drain().await,
            Self::AwsS3Sqs(_) | Self::AwsS3(_) | Self::Kafka(_) => Ok(Vec::new()),
        }
    }

    /// What the source passed over on purpose so far (see [`SkipCounts`]); the handle stays
    /// valid while the source runs elsewhere.
    pub fn skip_counts(&self) -> Arc<SkipCounts> {
        match self {
            Self::AwsS3Sqs(s) => s.skip_counts(),
            Self::AwsS3(s) => s.skip_counts(),
            Self::Kafka(_) | Self::File(_) => Arc::new(SkipCounts::default()),
        }
    }
}
