//! # kmswatch-sinks
//!
//! The last stage of kmswatch's data path: findings (and response audit records) leave the
//! engine here for the places the SOC reads — JSON-lines files or stdout, Splunk HEC,
//! Microsoft Sentinel (Logs Ingestion API), a Kafka topic, a webhook. The runtime acknowledges
//! its sources (SQS delete, Kafka commit) only once every sink an item is routed to has
//! accepted it, so an outage of a SIEM pauses or spools, and never loses, a finding.
//!
//! ```text
//!  engine ──Finding──> SinkSet::deliver ──route──> sink "splunk" ─batch─> HEC (+ ack polling)
//!  respond ──Audit───>        │                 └> sink "file"   ─batch─> findings.jsonl
//!                             └── resolves once every routed sink has accepted the item:
//!                                 the destination acknowledged it, or it is fsynced in that
//!                                 sink's disk spool (`<spool_dir>/<sink>/`), drained later
//! ```
//!
//! ## API (used by `kmswatch run` and `kmswatch validate --connect`)
//!
//! ```no_run
//! # async fn demo(configs: Vec<kmswatch_sinks::SinkConfig>, f: kmswatch_model::Finding)
//! #   -> Result<(), Box<dyn std::error::Error>> {
//! use kmswatch_sinks::{Outgoing, SinkSet};
//! use std::sync::Arc;
//! let sinks = SinkSet::from_config(&configs, "/var/lib/kmswatch/spool")?; // pure checks + spools opened
//! sinks.check_connect().await;            // Vec<ConnectReport>: one per sink; changes nothing
//! SinkSet::check_connect_configs(&configs).await?; // the same, without starting sinks or spools
//! sinks.deliver(Arc::new(Outgoing::Finding(f))).await?; // accepted by every routed sink
//! let _m = sinks.metrics();               // Vec<SinkMetricsSnapshot>, for Prometheus
//! sinks.shutdown(std::time::Duration::from_secs(10)).await; // flush; the spool keeps the rest
//! # Ok(()) }
//! ```
//!
//! * [`SinkSet::from_config`] validates every [`SinkConfig`] (pure), opens each sink's spool
//!   and starts its tasks; it must run inside a Tokio runtime. A spool left non-empty by a
//!   previous run is drained first.
//! * [`SinkSet::deliver`] routes the item ([`config::RouteConfig`]), encodes it once per sink
//!   and resolves when every routed sink has accepted it. It waits (backpressure) while a sink's
//!   queue and spool are full. Call it concurrently (one future per finding, many in flight) for
//!   throughput: sinks batch what arrives together. It fails only with
//!   [`DeliveryError::Rejected`] (the destination refused that item as invalid — it is kept in
//!   the sink's `dead-letter.jsonl`, so the caller may acknowledge upstream),
//!   [`DeliveryError::Encode`] and [`DeliveryError::ShuttingDown`]; an unreachable destination
//!   is never an error here: the item is retried, then spooled.
//! * Delivery is at-least-once: a resend after a timeout may duplicate an item, always under
//!   the same id ([`Outgoing::id`]: `finding_info.uid`), which HEC/Sentinel searches and Kafka
//!   consumers can de-duplicate on.
//!
//! ## Delivery semantics, per sink
//!
//! A batch (`batch.max_events` / `max_bytes` / `timeout_ms`) is sent with up to
//! `retry.max_attempts` attempts (exponential back-off with jitter, each wait in `[c/2, c]`,
//! `c = min(max_backoff_ms, initial_backoff_ms · 2^n)`, or a longer `Retry-After`); every
//! request ends after `retry.request_timeout_ms`. A retry sends only the records the
//! destination did not take ([`SendError::delivered`]). Errors are classified
//! ([`ErrorClass`]): *retryable* (network, 5xx, 429, HEC busy), *config* (bad token, missing
//! permission or index: the destination refuses us, not the data — treated like an outage,
//! retried slowly, loudly logged) and *fatal* (the destination rejects the data: the batch is
//! split to find the culprit, which is dead-lettered). A destination that takes a batch but
//! does not acknowledge it in time (HEC indexer ack, Kafka delivery report: [`Unacked`]) gets
//! it again at most `retry.max_unacked_resends` times.
//!
//! When the attempts run out the batch goes to the spool, the item counts as accepted and the
//! sink is *degraded* (metric, one warning naming the sink — and for missing acks the channel,
//! `ackId` and how long it has waited). While degraded or while the spool is non-empty new
//! batches go to the spool (order is kept, the pipeline is not held) and only a background
//! task talks to the destination: it re-sends the oldest spooled batch, one at a time, retrying
//! without limit but with the same back-off — so a destination that misbehaves sees at most one
//! request per back-off interval (HEC: one post per `ack_timeout_secs` plus back-off), never a
//! storm. The first acknowledged send ends the degraded state; the spool drains. The spool is
//! bounded (`spool.max_spool_bytes`); when full, `deliver` waits.
//!
//! Secrets: URLs that can carry credentials are [`SecretUrl`]s and tokens [`Secret`]s; both
//! print redacted, and every message a destination produces (errors, connect reports, log
//! fields) is scrubbed of the sink's secret values, so none reaches a log, an error or
//! `kmswatch validate --connect`.
//!
//! Sinks: [`SinkConfig`] lists them all — `stdout`, `file`, `splunk_hec`, `sentinel`, `kafka`,
//! `webhook`. Formats and the CIM and Sentinel column mappings are in [`format`](mod@format).

pub mod config;
pub mod format;
pub mod metrics;
pub mod route;
pub mod secret;
mod sinks;
pub mod spool;
mod worker;

pub use config::{Format, SinkConfig};
pub use metrics::{LatencyHistogram, SinkMetricsSnapshot};
pub use secret::{Secret, SecretUrl};

use kmswatch_model::Finding;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// What the sinks carry (always behind an `Arc`, so the size difference does not matter).
#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant)]
pub enum Outgoing {
    /// A detection finding (OCSF 2004).
    Finding(Finding),
    /// A response audit record (plan or execution of an action, issue 6). Its id is its `id`
    /// (or `uid`) field when it has one, else a hash of its JSON.
    Audit(serde_json::Value),
}

impl Outgoing {
    /// The delivery id: `finding_info.uid` for findings; for audit records their `id`/`uid`
    /// field, else the hex SHA-256 (first 128 bits) of their JSON. Redeliveries keep it.
    pub fn id(&self) -> String {
        match self {
            Outgoing::Finding(f) => f.finding_info.uid.clone(),
            Outgoing::Audit(v) => {
                for k in ["id", "uid"] {
                    if let Some(s) = v.get(k).and_then(serde_json::Value::as_str) {
                        return s.to_string();
                    }
                }
                use sha2::Digest;
                let h = sha2::Sha256::digest(v.to_string().as_bytes());
                hex::encode(h.get(..16).unwrap_or_default())
            }
        }
    }

    /// Is this a response audit record?
    pub fn is_audit(&self) -> bool {
        matches!(self, Outgoing::Audit(_))
    }

    /// The rule id (findings) or `audit`.
    pub fn rule_id(&self) -> &str {
        match self {
            Outgoing::Finding(f) => &f.finding_info.analytic.uid,
            Outgoing::Audit(_) => "audit",
        }
    }

    /// The rule level (`high`), else the severity in lower case; `audit` for audit records.
    pub fn level(&self) -> String {
        match self {
            Outgoing::Finding(f) => f
                .kmswatch
                .rule_level
                .clone()
                .unwrap_or_else(|| f.severity.to_ascii_lowercase()),
            Outgoing::Audit(_) => "audit".to_string(),
        }
    }

    /// The OCSF JSON form (the finding itself, or the audit record).
    pub fn to_json(&self) -> Result<serde_json::Value, serde_json::Error> {
        match self {
            Outgoing::Finding(f) => serde_json::to_value(f),
            Outgoing::Audit(v) => Ok(v.clone()),
        }
    }

    /// The OCSF JSON text.
    pub fn to_json_string(&self) -> Result<String, serde_json::Error> {
        match self {
            Outgoing::Finding(f) => serde_json::to_string(f),
            Outgoing::Audit(v) => serde_json::to_string(v),
        }
    }
}

/// One item encoded for one sink: what batches, the spool and the wire carry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Delivery id ([`Outgoing::id`]).
    pub id: String,
    /// Rule id (`audit` for audit records).
    pub rule_id: String,
    /// Rule level.
    pub level: String,
    /// A response audit record (some sinks send those elsewhere).
    #[serde(default)]
    pub audit: bool,
    /// The encoded item in the sink's wire form (one HEC event, one Sentinel row, one line).
    pub body: String,
    /// When `deliver` was called, epoch ms (for the acked-latency and spool-age metrics).
    pub enqueued_ms: i64,
}

/// Why retrying a failed send can or cannot help.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Transient: network, timeouts, 5xx, 429, HEC busy. Retry, then spool.
    Retryable,
    /// The destination refuses us (token, permission, index, ack disabled): an operator must
    /// act; the data is fine. Retried slowly and spooled meanwhile.
    Config,
    /// The destination rejects this data; resending it cannot help. Dead-lettered.
    Fatal,
}

/// A failed send to a destination. Its message never holds a secret: URLs appear as
/// `scheme://host:port` ([`SecretUrl`]) and every message passes the sink's redactor.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct SendError {
    /// Can retrying help?
    pub class: ErrorClass,
    /// What happened, with the destination's own words.
    pub message: String,
    /// The server's `Retry-After`, when it gave one.
    pub retry_after: Option<Duration>,
    /// Positions (in the records of the failed request) that the destination took before
    /// it failed — a webhook posts item by item, Sentinel body by body, Kafka message by
    /// message. A retry sends only the others, so a failing item cannot make the ones
    /// before it repeat on every attempt.
    pub delivered: Vec<usize>,
    /// The destination took the data but did not acknowledge it in time (HEC indexer ack,
    /// Kafka delivery report). Retrying may duplicate; see `retry.max_unacked_resends`.
    pub unacked: Option<Box<Unacked>>,
}

/// A request the destination took (HTTP 200 with an `ackId`, a produced message) whose
/// acknowledgement did not come in time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unacked {
    /// Where the acknowledgement was awaited: the HEC channel, the Kafka topic.
    pub channel: String,
    /// What was awaited: the HEC `ackId`, the Kafka message key.
    pub ack_id: String,
    /// How long it was awaited: one request's wait as the destination reports it; over all
    /// re-sends of the batch once the worker has retried it.
    pub waited: Duration,
}

impl SendError {
    fn of(class: ErrorClass, message: impl Into<String>) -> SendError {
        SendError {
            class,
            message: message.into(),
            retry_after: None,
            delivered: Vec::new(),
            unacked: None,
        }
    }
    /// A transient failure.
    pub fn retryable(message: impl Into<String>) -> SendError {
        SendError::of(ErrorClass::Retryable, message)
    }
    /// A refusal an operator must fix.
    pub fn config(message: impl Into<String>) -> SendError {
        SendError::of(ErrorClass::Config, message)
    }
    /// The data is rejected.
    pub fn fatal(message: impl Into<String>) -> SendError {
        SendError::of(ErrorClass::Fatal, message)
    }
    /// Taken but not acknowledged in time (retryable).
    pub fn unacked(message: impl Into<String>, unacked: Unacked) -> SendError {
        SendError {
            unacked: Some(Box::new(unacked)),
            ..SendError::retryable(message)
        }
    }
    /// The same error, with the server's `Retry-After`.
    pub fn with_retry_after(mut self, retry_after: Option<Duration>) -> SendError {
        self.retry_after = retry_after;
        self
    }
    /// The same error, noting that the records at these positions were taken.
    pub fn with_delivered(mut self, delivered: impl IntoIterator<Item = usize>) -> SendError {
        self.delivered = delivered.into_iter().collect();
        self
    }
}

/// Why [`SinkSet::deliver`] failed.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    /// The destination rejected this item as invalid (never retryable). The item is kept in
    /// `dead_letter`, so acknowledging upstream loses nothing.
    #[error("sink {sink}: item {id} rejected: {reason} (kept in {})", dead_letter.display())]
    Rejected {
        /// The sink.
        sink: String,
        /// The item's id.
        id: String,
        /// The destination's answer.
        reason: String,
        /// The dead-letter file holding it.
        dead_letter: PathBuf,
    },
    /// The item could not be encoded for the sink (not retryable).
    #[error("sink {sink}: cannot encode item {id}: {reason}")]
    Encode {
        /// The sink.
        sink: String,
        /// The item's id.
        id: String,
        /// Why.
        reason: String,
    },
    /// The set is shutting down; the item was not accepted (retryable after a restart).
    #[error("sink {sink}: shutting down, item not accepted")]
    ShuttingDown {
        /// The sink.
        sink: String,
    },
    /// The spool could not be written (disk): the item was not accepted (retryable).
    #[error("sink {sink}: spool {}: {reason}", path.display())]
    Spool {
        /// The sink.
        sink: String,
        /// The spool directory.
        path: PathBuf,
        /// The I/O error.
        reason: String,
    },
}

impl DeliveryError {
    /// Can delivering the same item again help?
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            DeliveryError::ShuttingDown { .. } | DeliveryError::Spool { .. }
        )
    }
}

/// Why [`SinkSet::from_config`] failed.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// A configuration mistake (pure check).
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    /// A sink could not be built (TLS CA file, client, Kafka producer).
    #[error("sink {sink}: {message}")]
    Build {
        /// The sink.
        sink: String,
        /// What failed.
        message: String,
    },
    /// A spool directory could not be opened.
    #[error("sink {sink}: spool {}: {source}", path.display())]
    Spool {
        /// The sink.
        sink: String,
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// Result of [`SinkSet::check_connect`] for one sink.
#[derive(Debug, Clone)]
pub struct ConnectReport {
    /// The sink.
    pub sink: String,
    /// Its type.
    pub sink_type: &'static str,
    /// `Ok(what was checked)` or the failure.
    pub result: Result<String, SendError>,
}

/// All configured sinks. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct SinkSet {
    sinks: Vec<worker::SinkHandle>,
}

impl SinkSet {
    /// Validates the configs (pure), opens each sink's spool under `spool_dir/<name>/` and
    /// starts its tasks. Needs a Tokio runtime.
    pub fn from_config(
        configs: &[SinkConfig],
        spool_dir: impl AsRef<Path>,
    ) -> Result<SinkSet, SetupError> {
        let names = config::sink_names(configs)?;
        let mut sinks = Vec::with_capacity(configs.len());
        for (cfg, name) in configs.iter().zip(names) {
            let dest = sinks::Destination::build(cfg, &name, sinks::Mode::Run).map_err(|m| {
                SetupError::Build {
                    sink: name.clone(),
                    message: m,
                }
            })?;
            let dir = spool_dir.as_ref().join(&name);
            sinks.push(worker::SinkHandle::start(name, cfg, dest, dir)?);
        }
        Ok(SinkSet { sinks })
    }

    /// Validates configs without starting anything (for `kmswatch validate`).
    pub fn validate(configs: &[SinkConfig]) -> Result<Vec<String>, config::ConfigError> {
        config::sink_names(configs)
    }

    /// Sink names, in config order.
    pub fn names(&self) -> Vec<String> {
        self.sinks.iter().map(|s| s.name().to_string()).collect()
    }

    /// Delivers one item to every sink its route selects; resolves once each has accepted it
    /// (acknowledged by the destination, or written to that sink's spool). An item no sink
    /// selects resolves at once.
    pub async fn deliver(&self, item: Arc<Outgoing>) -> Result<(), DeliveryError> {
        let mut waits = Vec::new();
        for s in &self.sinks {
            if s.routes(&item) {
                waits.push(s.submit(&item).await?);
            }
        }
        let mut first_err = None;
        for w in waits {
            if let Err(e) = w.await {
                first_err.get_or_insert(e);
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Checks each sink's destination (HEC health and token, Entra token and DCE reachability,
    /// Kafka metadata, file writable, webhook reachable), one after the other; each check is
    /// bounded by the sink's `retry.request_timeout_ms`. Changes nothing on the system (a
    /// file sink's missing directory is reported as "would be created", not created) and
    /// never prints a secret.
    pub async fn check_connect(&self) -> Vec<ConnectReport> {
        let mut out = Vec::new();
        for s in &self.sinks {
            out.push(ConnectReport {
                sink: s.name().to_string(),
                sink_type: s.sink_type(),
                result: s.check().await,
            });
        }
        out
    }

    /// [`SinkSet::check_connect`] without a running set, for `kmswatch validate --connect`:
    /// validates the configs, builds each destination (no spool, no tasks, no directory or
    /// file created) and checks it. Needs a Tokio runtime.
    pub async fn check_connect_configs(
        configs: &[SinkConfig],
    ) -> Result<Vec<ConnectReport>, SetupError> {
        let names = config::sink_names(configs)?;
        let mut out = Vec::with_capacity(configs.len());
        for (cfg, name) in configs.iter().zip(names) {
            let dest =
                sinks::Destination::build(cfg, &name, sinks::Mode::CheckOnly).map_err(|m| {
                    SetupError::Build {
                        sink: name.clone(),
                        message: m,
                    }
                })?;
            out.push(ConnectReport {
                result: dest.check().await,
                sink: name,
                sink_type: cfg.type_name(),
            });
            dest.close().await;
        }
        Ok(out)
    }

    /// Per-sink counters and gauges.
    pub fn metrics(&self) -> Vec<SinkMetricsSnapshot> {
        self.sinks.iter().map(|s| s.metrics()).collect()
    }

    /// Stops accepting items, sends or spools everything queued, then drains the spools for
    /// at most `grace`; what remains spooled is delivered by the next start.
    pub async fn shutdown(&self, grace: Duration) {
        for s in &self.sinks {
            s.close();
        }
        let deadline = tokio::time::Instant::now() + grace;
        for s in &self.sinks {
            s.finish(deadline).await;
        }
    }
}
