//! Sink configuration: one enum ([`SinkConfig`]) listing every sink type, one struct per sink,
//! and the settings every sink shares (routing, batching, retry, spool). Defaults sit beside
//! each struct. Validation ([`SinkConfig::validate`]) is pure and runs before any I/O.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

pub use crate::secret::{Secret, SecretUrl};

/// One configured sink. The `type` key selects the variant; every variant has the shared keys
/// `name`, `route`, `batch`, `retry` and `spool` (see [`Common`]).
///
/// ```yaml
/// sinks:
///   - { type: splunk_hec, endpoint: "https://splunk:8088", token: "${HEC_TOKEN}",
///       index: kms, sourcetype: "kmswatch:finding", indexer_ack: true }
///   - { type: file, path: findings.jsonl }
/// ```
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SinkConfig {
    /// JSON lines to standard output.
    Stdout(StdoutConfig),
    /// JSON lines to a file, rotated by size.
    File(FileConfig),
    /// Splunk HTTP Event Collector (`/services/collector/event`), with indexer acknowledgement.
    SplunkHec(HecConfig),
    /// Microsoft Sentinel / Azure Monitor Logs Ingestion API (a DCR stream).
    Sentinel(SentinelConfig),
    /// A Kafka topic (idempotent producer).
    Kafka(KafkaConfig),
    /// An HTTP webhook (JSON with an HMAC-SHA256 signature, or Slack-compatible text).
    Webhook(WebhookConfig),
}

/// Keys every sink has (`name`, `route`, `batch`, `retry`, `spool`), gathered from a sink's
/// config. Each sink struct declares them itself (serde's `flatten` would switch off
/// `deny_unknown_fields`).
#[derive(Debug, Clone, Default)]
pub struct Common {
    /// See the sink structs' `name`.
    pub name: Option<String>,
    /// See `route`.
    pub route: RouteConfig,
    /// See `batch`.
    pub batch: BatchConfig,
    /// See `retry`.
    pub retry: RetryConfig,
    /// See `spool`.
    pub spool: SpoolConfig,
}

/// Declares a sink config struct with the shared keys appended.
macro_rules! sink_struct {
    ($(#[$m:meta])* pub struct $name:ident { $($(#[$fm:meta])* pub $f:ident : $t:ty,)* }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Serialize, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct $name {
            $($(#[$fm])* pub $f: $t,)*
            /// Name of the sink in logs, metrics and the spool directory (default: the type,
            /// with `-2`, `-3`... appended when a type repeats). Letters, digits, `-`, `_`, `.`.
            #[serde(default)]
            pub name: Option<String>,
            /// Which findings go to this sink (default: all findings and audit records).
            #[serde(default)]
            pub route: RouteConfig,
            /// Batching.
            #[serde(default)]
            pub batch: BatchConfig,
            /// Retries before a batch goes to the spool.
            #[serde(default)]
            pub retry: RetryConfig,
            /// The disk spool used while the destination is down.
            #[serde(default)]
            pub spool: SpoolConfig,
        }

        impl $name {
            /// The shared keys.
            pub fn common(&self) -> Common {
                Common {
                    name: self.name.clone(),
                    route: self.route.clone(),
                    batch: self.batch.clone(),
                    retry: self.retry.clone(),
                    spool: self.spool.clone(),
                }
            }
        }
    };
}

/// `route:` — a finding goes to the sink when it passes every condition given.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Lowest severity sent: `informational`, `low`, `medium`, `high`, `critical`
    /// (default: everything, including findings of unknown severity).
    #[serde(default)]
    pub min_level: Option<String>,
    /// Only findings of these rules (rule id or rule name/title, exact match); empty = all.
    #[serde(default)]
    pub rules: Vec<String>,
    /// Only findings carrying at least one of these rule tags (case-insensitive); empty = all.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Send response audit records to this sink (default true).
    #[serde(default = "default_true")]
    pub audit: bool,
    /// Send findings to this sink (default true; false makes an audit-only sink).
    #[serde(default = "default_true")]
    pub findings: bool,
}

fn default_true() -> bool {
    true
}

impl Default for RouteConfig {
    fn default() -> Self {
        RouteConfig {
            min_level: None,
            rules: Vec::new(),
            tags: Vec::new(),
            audit: true,
            findings: true,
        }
    }
}

/// `batch:` — a batch is sent when it holds `max_events` items or `max_bytes` encoded bytes,
/// or `timeout_ms` after its first item arrived, whichever comes first.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchConfig {
    /// Most items in one request (default 500; Kafka and webhooks send items one by one
    /// but still group them for the spool).
    #[serde(default = "default_batch_events")]
    pub max_events: usize,
    /// Most encoded bytes in one request, before compression (default 1,000,000 —
    /// the Sentinel sink caps it below 1 MB whatever is set).
    #[serde(default = "default_batch_bytes")]
    pub max_bytes: usize,
    /// Longest wait for a batch to fill, milliseconds (default 200).
    #[serde(default = "default_batch_timeout_ms")]
    pub timeout_ms: u64,
    /// Requests in flight at once (default 4).
    #[serde(default = "default_in_flight")]
    pub max_in_flight: usize,
}

fn default_batch_events() -> usize {
    500
}
fn default_batch_bytes() -> usize {
    1_000_000
}
fn default_batch_timeout_ms() -> u64 {
    200
}
fn default_in_flight() -> usize {
    4
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig {
            max_events: default_batch_events(),
            max_bytes: default_batch_bytes(),
            timeout_ms: default_batch_timeout_ms(),
            max_in_flight: default_in_flight(),
        }
    }
}

/// `retry:` — exponential back-off with jitter: the n-th retry (0-based) waits a random time
/// in `[c/2, c]`, `c = min(max_backoff_ms, initial_backoff_ms · 2^n)`, or the server's
/// `Retry-After` when that is longer (capped at `max_backoff_ms`). So two attempts of one
/// batch are never closer than `initial_backoff_ms / 2`, whatever the destination answers.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    /// Attempts of a fresh batch before it goes to the spool (default 4). Spooled batches are
    /// retried until they are delivered.
    #[serde(default = "default_attempts")]
    pub max_attempts: u32,
    /// First backoff, milliseconds (default 200).
    #[serde(default = "default_initial_backoff_ms")]
    pub initial_backoff_ms: u64,
    /// Longest backoff, milliseconds (default 30,000).
    #[serde(default = "default_max_backoff_ms")]
    pub max_backoff_ms: u64,
    /// Timeout of one request, milliseconds (default 30,000): connecting, sending and reading
    /// the answer. A request that hangs fails after this long and counts as an attempt.
    #[serde(default = "default_request_timeout_ms")]
    pub request_timeout_ms: u64,
    /// Re-sends of a fresh batch the destination took but did not acknowledge in time (HEC
    /// `ackId` not reported within `ack_timeout_secs`, Kafka delivery report timed out)
    /// before it goes to the spool and the sink is marked degraded (default 1; 0 spools at
    /// the first missing acknowledgement). Counted within `max_attempts`.
    #[serde(default = "default_unacked_resends")]
    pub max_unacked_resends: u32,
}

fn default_attempts() -> u32 {
    4
}
fn default_initial_backoff_ms() -> u64 {
    200
}
fn default_max_backoff_ms() -> u64 {
    30_000
}
fn default_request_timeout_ms() -> u64 {
    30_000
}
fn default_unacked_resends() -> u32 {
    1
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            max_attempts: default_attempts(),
            initial_backoff_ms: default_initial_backoff_ms(),
            max_backoff_ms: default_max_backoff_ms(),
            request_timeout_ms: default_request_timeout_ms(),
            max_unacked_resends: default_unacked_resends(),
        }
    }
}

impl RetryConfig {
    /// The wait before retry number `attempt` (0-based): a random time in `[c/2, c]`,
    /// `c = min(max_backoff_ms, initial_backoff_ms · 2^attempt)` (jitter spreads the retries
    /// of many batches; the floor keeps any one of them from spinning).
    pub fn backoff(&self, attempt: u32) -> Duration {
        let cap = self.max_backoff_ms.max(1);
        let exp = self
            .initial_backoff_ms
            .max(1)
            .saturating_mul(1u64 << attempt.min(30));
        let ceiling = exp.min(cap);
        Duration::from_millis(fastrand::u64(ceiling.div_ceil(2)..=ceiling))
    }

    /// The wait before retry number `attempt` after an answer that carried `retry_after`:
    /// the longer of the back-off and the server's wish, the latter capped at
    /// `max_backoff_ms` (a `Retry-After: 0` does not make the sink spin).
    pub fn wait(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        let b = self.backoff(attempt);
        match retry_after {
            Some(ra) => b.max(ra.min(Duration::from_millis(self.max_backoff_ms.max(1)))),
            None => b,
        }
    }
}

/// `spool:` — the sink's disk spool (`<spool_dir>/<sink name>/`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpoolConfig {
    /// Most bytes kept on disk (default 1 GiB). When full, `deliver` waits (backpressure):
    /// nothing is dropped.
    #[serde(default = "default_spool_bytes")]
    pub max_spool_bytes: u64,
    /// Size at which a segment file is closed and a new one started (default 16 MiB).
    #[serde(default = "default_segment_bytes")]
    pub segment_bytes: u64,
}

fn default_spool_bytes() -> u64 {
    1 << 30
}
fn default_segment_bytes() -> u64 {
    16 << 20
}

impl Default for SpoolConfig {
    fn default() -> Self {
        SpoolConfig {
            max_spool_bytes: default_spool_bytes(),
            segment_bytes: default_segment_bytes(),
        }
    }
}

sink_struct! {
/// `type: stdout`
pub struct StdoutConfig {
    /// Record format (default `ocsf`).
    #[serde(default)]
    pub format: Format,
}
}

sink_struct! {
/// `type: file`
pub struct FileConfig {
    /// The JSON-lines file (relative paths are relative to the working directory).
    pub path: PathBuf,
    /// Rotate when the file would grow past this many bytes (default 100 MiB; 0 = never).
    /// The rotated files are `path.1` (newest) ... `path.<max_files>`.
    #[serde(default = "default_file_max_bytes")]
    pub max_bytes: u64,
    /// Rotated files kept (default 5).
    #[serde(default = "default_max_files")]
    pub max_files: u32,
    /// `fsync` after each batch (default true: a delivered finding survives a power cut).
    #[serde(default = "default_true")]
    pub fsync: bool,
    /// Record format (default `ocsf`).
    #[serde(default)]
    pub format: Format,
}
}

fn default_file_max_bytes() -> u64 {
    100 << 20
}
fn default_max_files() -> u32 {
    5
}

/// Record format of a sink.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// The OCSF Detection Finding JSON (the public alert format).
    #[default]
    Ocsf,
    /// A flat record with Splunk CIM-style field names (see `format::cim`).
    Cim,
    /// The flat Sentinel row (see `format::sentinel_row`).
    Sentinel,
    /// Slack-compatible `{"text": "..."}` (webhook only).
    Slack,
}

/// TLS settings of an HTTPS sink.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM file with the CA certificate(s) to trust, in addition to the system roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Accept any certificate and host name. For labs only: the token travels to whoever
    /// answers.
    #[serde(default)]
    pub insecure_skip_verify: bool,
}

sink_struct! {
/// `type: splunk_hec`
pub struct HecConfig {
    /// Base URL of the collector, `https://splunk:8088` (the sink appends
    /// `/services/collector/event`, `/services/collector/ack`, `/services/collector/health`
    /// to its path and keeps its query). Printed as `scheme://host:port` only.
    pub endpoint: SecretUrl,
    /// The HEC token (sent as `Authorization: Splunk <token>`).
    pub token: Secret,
    /// Index template (default: the token's default index).
    #[serde(default)]
    pub index: Option<String>,
    /// Source template (default `kmswatch`).
    #[serde(default = "default_source")]
    pub source: String,
    /// Sourcetype template (default `kmswatch:finding`; audit records use
    /// `audit_sourcetype`).
    #[serde(default = "default_sourcetype")]
    pub sourcetype: String,
    /// Sourcetype of response audit records (default `kmswatch:audit`).
    #[serde(default = "default_audit_sourcetype")]
    pub audit_sourcetype: String,
    /// Host template (default: none — Splunk uses the sender's address), e.g.
    /// `kms-{cloud.provider}`.
    #[serde(default)]
    pub host: Option<String>,
    /// Wait for indexer acknowledgement (the token must have it enabled): a batch counts as
    /// delivered only when `/services/collector/ack` reports its `ackId` true.
    #[serde(default)]
    pub indexer_ack: bool,
    /// How often to poll for acknowledgements, milliseconds (default 250; 10 to 60,000). One
    /// small request per interval carries every pending `ackId`; failed polls back off up to
    /// 10 s.
    #[serde(default = "default_ack_poll_ms")]
    pub ack_poll_interval_ms: u64,
    /// With `indexer_ack`: batches that may wait for their acknowledgement at once (default
    /// 64; 1 to 10,000), spool drainer included. A batch takes its place before it is posted,
    /// so while acks are overdue no further batch is posted on the channel (backpressure;
    /// memory stays at most `max_pending_acks` batches). Posting stays limited to
    /// `batch.max_in_flight` concurrent requests; a batch awaiting its ack holds no request
    /// slot. Throughput with ack is at most `max_pending_acks × batch.max_events / ack
    /// latency`, e.g. 64 × 500 / 0.5 s = 64,000 findings/s; raise it when Splunk
    /// acknowledges slowly.
    #[serde(default = "default_max_pending_acks")]
    pub max_pending_acks: usize,
    /// Give up waiting for an acknowledgement after this long, seconds (default 60; 1 to
    /// 3,600). The batch is then re-sent after a back-off (at-least-once: the same finding
    /// ids), at most `retry.max_unacked_resends` times, then spooled, and the sink is marked
    /// degraded. From the spool it is re-sent at most once per `ack_timeout_secs` plus
    /// back-off until Splunk acknowledges it.
    #[serde(default = "default_ack_timeout_secs")]
    pub ack_timeout_secs: u64,
    /// Gzip request bodies (default true).
    #[serde(default = "default_true")]
    pub gzip: bool,
    /// `ocsf` (default) or `cim`.
    #[serde(default)]
    pub format: Format,
    /// TLS verification.
    #[serde(default)]
    pub tls: TlsConfig,
}
}

fn default_source() -> String {
    "kmswatch".to_string()
}
fn default_sourcetype() -> String {
    "kmswatch:finding".to_string()
}
fn default_audit_sourcetype() -> String {
    "kmswatch:audit".to_string()
}
fn default_ack_poll_ms() -> u64 {
    250
}
fn default_max_pending_acks() -> usize {
    64
}
fn default_ack_timeout_secs() -> u64 {
    60
}

/// How the Sentinel sink gets its Entra ID token.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum SentinelAuth {
    /// OAuth2 client credentials of an app registration.
    ClientSecret {
        /// Directory (tenant) id.
        tenant_id: String,
        /// Application (client) id.
        client_id: String,
        /// Client secret.
        client_secret: Secret,
        /// Authority host (default `https://login.microsoftonline.com`; sovereign clouds
        /// and tests change it).
        #[serde(default = "default_authority")]
        authority: SecretUrl,
        /// Token scope (default `https://monitor.azure.com//.default`).
        #[serde(default = "default_scope")]
        scope: String,
    },
    /// The Azure Instance Metadata Service (managed identity of the VM / pod).
    ManagedIdentity {
        /// Client id of a user-assigned identity (default: the system-assigned one).
        #[serde(default)]
        client_id: Option<String>,
        /// IMDS token endpoint (default
        /// `http://169.254.169.254/metadata/identity/oauth2/token`).
        #[serde(default = "default_imds")]
        endpoint: SecretUrl,
        /// Resource (default `https://monitor.azure.com/`).
        #[serde(default = "default_resource")]
        resource: String,
    },
}

fn default_authority() -> SecretUrl {
    SecretUrl::new("https://login.microsoftonline.com")
}
fn default_scope() -> String {
    "https://monitor.azure.com//.default".to_string()
}
fn default_imds() -> SecretUrl {
    SecretUrl::new("http://169.254.169.254/metadata/identity/oauth2/token")
}
fn default_resource() -> String {
    "https://monitor.azure.com/".to_string()
}

sink_struct! {
/// `type: sentinel`
pub struct SentinelConfig {
    /// Data collection endpoint (or the workspace's logs ingestion endpoint),
    /// `https://my-dce-abcd.eastus-1.ingest.monitor.azure.com`. Printed as
    /// `scheme://host:port` only.
    pub endpoint: SecretUrl,
    /// Immutable id of the data collection rule, `dcr-...`.
    pub dcr_immutable_id: String,
    /// Stream declared in the DCR (default `Custom-KmswatchFindings_CL`).
    #[serde(default = "default_stream")]
    pub stream: String,
    /// Stream for response audit records (default `Custom-KmswatchAudit_CL`).
    #[serde(default = "default_audit_stream")]
    pub audit_stream: String,
    /// API version (default `2023-01-01`).
    #[serde(default = "default_api_version")]
    pub api_version: String,
    /// How to get the token.
    pub auth: SentinelAuth,
    /// Refresh the token this many seconds before it expires (default 300; at most 3,600).
    #[serde(default = "default_refresh_skew")]
    pub token_refresh_skew_secs: u64,
    /// Gzip request bodies (default false: the 1 MB limit then applies to plain JSON).
    #[serde(default)]
    pub gzip: bool,
    /// TLS verification.
    #[serde(default)]
    pub tls: TlsConfig,
}
}

fn default_stream() -> String {
    "Custom-KmswatchFindings_CL".to_string()
}
fn default_audit_stream() -> String {
    "Custom-KmswatchAudit_CL".to_string()
}
fn default_api_version() -> String {
    "2023-01-01".to_string()
}
fn default_refresh_skew() -> u64 {
    300
}

sink_struct! {
/// `type: kafka`
pub struct KafkaConfig {
    /// `host:port,host:port`.
    pub brokers: String,
    /// Topic of findings.
    pub topic: String,
    /// Topic of response audit records (default: `topic`).
    #[serde(default)]
    pub audit_topic: Option<String>,
    /// Extra librdkafka properties (`security.protocol`, `sasl.*`, `compression.type`...).
    /// `enable.idempotence` and `acks` are fixed (true, all). Values of secret properties
    /// (names with `password`, `secret`, `key`, `token`, `jaas`, `credential`,
    /// `oauthbearer`) are never printed.
    #[serde(default)]
    pub properties: KafkaProperties,
    /// SASL password, kept out of logs (set as `sasl.password`).
    #[serde(default)]
    pub sasl_password: Option<Secret>,
    /// `ocsf` (default) or `cim`.
    #[serde(default)]
    pub format: Format,
}
}

/// librdkafka properties of a Kafka sink: a map whose `Debug` hides the values of secret
/// properties ([`KafkaProperties::is_secret`]).
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct KafkaProperties(pub BTreeMap<String, String>);

impl KafkaProperties {
    /// Does this librdkafka property hold a secret (`sasl.password`, `ssl.key.password`,
    /// `ssl.key.pem`, `sasl.oauthbearer.client.secret`, `sasl.jaas.config`...)?
    pub fn is_secret(name: &str) -> bool {
        let n = name.to_ascii_lowercase();
        [
            "password",
            "secret",
            "key",
            "token",
            "jaas",
            "credential",
            "oauthbearer",
        ]
        .iter()
        .any(|w| n.contains(w))
    }
}

impl fmt::Debug for KafkaProperties {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut m = f.debug_map();
        for (k, v) in &self.0 {
            if KafkaProperties::is_secret(k) {
                m.entry(k, &format_args!("{}", crate::secret::REDACTED));
            } else {
                m.entry(k, v);
            }
        }
        m.finish()
    }
}

sink_struct! {
/// `type: webhook`
pub struct WebhookConfig {
    /// URL to POST to. A secret (Slack, Teams and most webhook URLs carry their token in the
    /// path or query): printed as `scheme://host:port/<redacted>` only.
    pub url: SecretUrl,
    /// HMAC-SHA256 key: the body's MAC goes in `X-Kmswatch-Signature: sha256=<hex>`.
    #[serde(default)]
    pub secret: Option<Secret>,
    /// `ocsf` (default: one finding JSON per request) or `slack` (`{"text": ...}`).
    #[serde(default)]
    pub format: Format,
    /// Extra request headers (values are secrets: `Authorization: Bearer ...`; never
    /// printed).
    #[serde(default)]
    pub headers: BTreeMap<String, Secret>,
    /// TLS verification.
    #[serde(default)]
    pub tls: TlsConfig,
}
}

/// A configuration mistake found before any I/O.
#[derive(Debug, thiserror::Error)]
#[error("sink {sink}: {message}")]
pub struct ConfigError {
    /// The sink's name.
    pub sink: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl SinkConfig {
    /// The sink type as written in the config.
    pub fn type_name(&self) -> &'static str {
        match self {
            SinkConfig::Stdout(_) => "stdout",
            SinkConfig::File(_) => "file",
            SinkConfig::SplunkHec(_) => "splunk_hec",
            SinkConfig::Sentinel(_) => "sentinel",
            SinkConfig::Kafka(_) => "kafka",
            SinkConfig::Webhook(_) => "webhook",
        }
    }

    /// The shared keys.
    pub fn common(&self) -> Common {
        match self {
            SinkConfig::Stdout(c) => c.common(),
            SinkConfig::File(c) => c.common(),
            SinkConfig::SplunkHec(c) => c.common(),
            SinkConfig::Sentinel(c) => c.common(),
            SinkConfig::Kafka(c) => c.common(),
            SinkConfig::Webhook(c) => c.common(),
        }
    }

    /// Pure checks: URLs, levels, formats allowed per sink, and the range of every number
    /// (see [`RANGES`]). Messages name the key and never print a secret.
    pub fn validate(&self, name: &str) -> Result<(), ConfigError> {
        let err = |m: String| ConfigError {
            sink: name.to_string(),
            message: m,
        };
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(err(format!(
                "name {name:?} must be letters, digits, '-', '_' or '.'"
            )));
        }
        let common = self.common();
        if let Some(l) = &common.route.min_level {
            if crate::route::level_rank(l).is_none() {
                return Err(err(format!(
                    "route.min_level {l:?} is not one of informational, low, medium, high, critical"
                )));
            }
        }
        for (key, value) in self.numbers() {
            let Some((_, lo, hi, unit)) = RANGES.iter().find(|(k, ..)| *k == key) else {
                continue;
            };
            if value < *lo || value > *hi {
                return Err(err(format!(
                    "{key} = {value} is out of range: {lo} to {hi}{unit}"
                )));
            }
        }
        let r = &common.retry;
        if r.max_backoff_ms < r.initial_backoff_ms {
            return Err(err(format!(
                "retry.max_backoff_ms ({}) is below retry.initial_backoff_ms ({})",
                r.max_backoff_ms, r.initial_backoff_ms
            )));
        }
        let url = |u: &SecretUrl, key: &str| -> Result<(), ConfigError> {
            u.parse().map(|_| ()).map_err(|e| err(format!("{key} {e}")))
        };
        let format_in = |f: Format, ok: &[Format]| -> Result<(), ConfigError> {
            if ok.contains(&f) {
                Ok(())
            } else {
                Err(err(format!(
                    "format {f:?} is not available for {} (use one of {ok:?})",
                    self.type_name()
                )))
            }
        };
        match self {
            SinkConfig::Stdout(c) => {
                format_in(c.format, &[Format::Ocsf, Format::Cim, Format::Sentinel])?
            }
            SinkConfig::File(c) => {
                format_in(c.format, &[Format::Ocsf, Format::Cim, Format::Sentinel])?;
                if c.path.as_os_str().is_empty() {
                    return Err(err("path is empty".into()));
                }
                if c.max_bytes != 0 && c.max_bytes < 1024 {
                    return Err(err(format!(
                        "max_bytes = {} is out of range: 0 (never rotate) or at least 1024",
                        c.max_bytes
                    )));
                }
            }
            SinkConfig::SplunkHec(c) => {
                url(&c.endpoint, "endpoint")?;
                format_in(c.format, &[Format::Ocsf, Format::Cim])?;
                if c.token.expose().is_empty() || c.token.expose().starts_with("${") {
                    return Err(err(
                        "token is empty or an unset ${VARIABLE}: set the HEC token".into(),
                    ));
                }
            }
            SinkConfig::Sentinel(c) => {
                url(&c.endpoint, "endpoint")?;
                if c.dcr_immutable_id.is_empty() || c.stream.is_empty() {
                    return Err(err("dcr_immutable_id and stream are required".into()));
                }
                match &c.auth {
                    SentinelAuth::ClientSecret {
                        tenant_id,
                        client_id,
                        client_secret,
                        authority,
                        ..
                    } => {
                        url(authority, "auth.authority")?;
                        if tenant_id.is_empty()
                            || client_id.is_empty()
                            || client_secret.expose().is_empty()
                        {
                            return Err(err(
                                "auth: tenant_id, client_id and client_secret are required".into(),
                            ));
                        }
                    }
                    SentinelAuth::ManagedIdentity { endpoint, .. } => {
                        url(endpoint, "auth.endpoint")?
                    }
                }
            }
            SinkConfig::Kafka(c) => {
                format_in(c.format, &[Format::Ocsf, Format::Cim])?;
                if c.brokers.is_empty() || c.topic.is_empty() {
                    return Err(err("brokers and topic are required".into()));
                }
            }
            SinkConfig::Webhook(c) => {
                url(&c.url, "url")?;
                format_in(c.format, &[Format::Ocsf, Format::Cim, Format::Slack])?;
            }
        }
        Ok(())
    }

    /// Every numeric setting of this sink, by its key (for [`RANGES`]).
    fn numbers(&self) -> Vec<(&'static str, u64)> {
        let c = self.common();
        let mut v = vec![
            ("batch.max_events", c.batch.max_events as u64),
            ("batch.max_bytes", c.batch.max_bytes as u64),
            ("batch.timeout_ms", c.batch.timeout_ms),
            ("batch.max_in_flight", c.batch.max_in_flight as u64),
            ("retry.max_attempts", u64::from(c.retry.max_attempts)),
            ("retry.initial_backoff_ms", c.retry.initial_backoff_ms),
            ("retry.max_backoff_ms", c.retry.max_backoff_ms),
            ("retry.request_timeout_ms", c.retry.request_timeout_ms),
            (
                "retry.max_unacked_resends",
                u64::from(c.retry.max_unacked_resends),
            ),
            ("spool.max_spool_bytes", c.spool.max_spool_bytes),
            ("spool.segment_bytes", c.spool.segment_bytes),
        ];
        match self {
            SinkConfig::SplunkHec(h) => v.extend([
                ("ack_poll_interval_ms", h.ack_poll_interval_ms),
                ("max_pending_acks", h.max_pending_acks as u64),
                ("ack_timeout_secs", h.ack_timeout_secs),
            ]),
            SinkConfig::File(f) => v.push(("max_files", u64::from(f.max_files))),
            SinkConfig::Sentinel(s) => {
                v.push(("token_refresh_skew_secs", s.token_refresh_skew_secs))
            }
            _ => {}
        }
        v
    }
}

/// The range of every numeric sink setting: (key, lowest, highest, unit). `validate`
/// refuses a value outside it; the bounds keep a typo from turning into a huge allocation, a
/// spinning retry or a request that never ends.
pub const RANGES: &[(&str, u64, u64, &str)] = &[
    ("batch.max_events", 1, 100_000, " items"),
    ("batch.max_bytes", 1024, 100 << 20, " bytes"),
    ("batch.timeout_ms", 0, 60_000, " ms"),
    ("batch.max_in_flight", 1, 1024, ""),
    ("retry.max_attempts", 1, 1000, ""),
    ("retry.initial_backoff_ms", 1, 600_000, " ms"),
    ("retry.max_backoff_ms", 1, 3_600_000, " ms"),
    ("retry.request_timeout_ms", 100, 3_600_000, " ms"),
    ("retry.max_unacked_resends", 0, 100, ""),
    ("spool.max_spool_bytes", 1024, 1 << 40, " bytes"),
    ("spool.segment_bytes", 1024, 1 << 30, " bytes"),
    ("ack_poll_interval_ms", 10, 60_000, " ms"),
    ("max_pending_acks", 1, 10_000, ""),
    ("ack_timeout_secs", 1, 3600, " s"),
    ("max_files", 0, 10_000, ""),
    ("token_refresh_skew_secs", 0, 3600, " s"),
];

/// Names of the sinks of a list, in order: `name` when given, else the type with `-2`, `-3`...
/// for repeats. Two sinks may not share a name (they would share a spool).
pub fn sink_names(configs: &[SinkConfig]) -> Result<Vec<String>, ConfigError> {
    let mut names: Vec<String> = Vec::with_capacity(configs.len());
    for c in configs {
        let name = match &c.common().name {
            Some(n) => n.clone(),
            None => {
                let base = c.type_name();
                let mut n = base.to_string();
                let mut i = 2;
                while names.contains(&n) {
                    n = format!("{base}-{i}");
                    i += 1;
                }
                n
            }
        };
        if names.contains(&name) {
            return Err(ConfigError {
                sink: name,
                message: "two sinks have this name; give each a distinct `name`".into(),
            });
        }
        c.validate(&name)?;
        names.push(name);
    }
    Ok(names)
}
