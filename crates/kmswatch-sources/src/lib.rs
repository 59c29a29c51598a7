//! # kmswatch-sources
//!
//! The first stage of kmswatch's data path: transports. A source reads bytes from where key
//! management audit logs really land — files, directories and stdin, S3 objects announced on
//! SQS, an S3 prefix (backfill), Kafka topics (including Azure Event Hubs' Kafka endpoint) —
//! and hands them out as [`Batch`]es: the bytes, an origin string (`s3://bucket/key`,
//! `topic/partition/offset`, `path:offset`), an optional format hint and an [`AckHandle`].
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

use std::time::SystemTime;

pub use ack::{AckHandle, Settle};
pub use backoff::Backoff;
pub use bytes::Bytes;
pub use config::*;
pub use file::{FileSource, JsonPositionStore, Position, PositionStore};
pub use kafka::KafkaSource;
pub use s3::S3BackfillSource;
pub use sqs::S3SqsSource;
pub use track::Contiguous;

/// A unit of bytes read by a source.
#[derive(Debug)]
pub struct Batch {
    /// Where the bytes came from: `s3://bucket/key`, `topic/partition/offset`, `path:offset`
    /// or `-:offset` for stdin. Errors about its records name it.
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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// Where it is: `s3://bucket/key`, `sqs://QUEUE_URL#MESSAGE_ID`, `PATH:OFFSET`.
    pub location: String,
    /// A short machine-readable reason (`access_denied`, `no_such_key`, `not_a_notification`,
    /// `record_too_large`, ...); it is also the metric label.
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
    pub async fn next_batch(&mut self) -> Result<Option<Batch>, SourceError> {
        match self {
            Self::AwsS3Sqs(s) => s.next_batch().await,
            Self::AwsS3(s) => s.next_batch().await,
            Self::Kafka(s) => s.next_batch().await,
            Self::File(s) => s.next_batch().await,
        }
    }
}
