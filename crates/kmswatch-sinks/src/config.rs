//! Sink configuration: one enum ([`SinkConfig`]) listing every sink type, one struct per sink,
//! and the settings every sink shares (routing, batching, retry, spool). Defaults sit beside
//! each struct. Validation ([`SinkConfig::validate`]) is pure and runs before any I/O.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// A secret (token, client secret, HMAC key): deserialized from a plain string, never printed.
///
/// `Debug` and `Display` show `<redacted>`; [`Secret::expose`] gives the value to the one place
/// that sends it. Write `token: "${HEC_TOKEN}"` in the config: the binary interpolates
/// environment variables before the sinks see the config.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// A secret from its value.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }
    /// The value, for the request that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

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

/// `retry:` — exponential backoff with full jitter: the n-th retry waits a random time in
/// `[0, min(max_backoff_ms, initial_backoff_ms * 2^n)]` (or the server's `Retry-After`).
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
    /// Timeout of one request, milliseconds (default 30,000).
    #[serde(default = "default_request_timeout_ms")]
    pub request_timeout_ms: u64,
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

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            max_attempts: default_attempts(),
            initial_backoff_ms: default_initial_backoff_ms(),
            max_backoff_ms: default_max_backoff_ms(),
            request_timeout_ms: default_request_timeout_ms(),
        }
    }
}

impl RetryConfig {
    /// The wait before retry number `attempt` (0-based), with full jitter.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let cap = self.max_backoff_ms.max(1);
        let exp = self
            .initial_backoff_ms
            .max(1)
            .saturating_mul(1u64 << attempt.min(30));
        let ceiling = exp.min(cap);
        // Full jitter, but never below a tenth of the ceiling so retries do not spin.
        let low = ceiling / 10;
        Duration::from_millis(fastrand::u64(low..=ceiling))
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
    /// `/services/collector/event`, `/services/collector/ack`, `/services/collector/health`).
    pub endpoint: String,
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
    /// How often to poll for acknowledgements, milliseconds (default 250). One small
    /// request per interval carries every pending `ackId`.
    #[serde(default = "default_ack_poll_ms")]
    pub ack_poll_interval_ms: u64,
    /// With `indexer_ack`: batches that may wait for their acknowledgement at once (default
    /// 64). Posting stays limited to `batch.max_in_flight` concurrent requests; a batch awaiting
    /// its ack holds no request slot. Throughput with ack is at most
    /// `max_pending_acks × batch.max_events / ack latency`, e.g. 64 × 500 / 0.5 s = 64,000
    /// findings/s; raise it when Splunk acknowledges slowly (memory: the batches are kept).
    #[serde(default = "default_max_pending_acks")]
    pub max_pending_acks: usize,
    /// Give up waiting for an acknowledgement after this long and resend the batch
    /// (at-least-once), seconds (default 120).
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
    120
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
        authority: String,
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
        endpoint: String,
        /// Resource (default `https://monitor.azure.com/`).
        #[serde(default = "default_resource")]
        resource: String,
    },
}

fn default_authority() -> String {
    "https://login.microsoftonline.com".to_string()
}
fn default_scope() -> String {
    "https://monitor.azure.com//.default".to_string()
}
fn default_imds() -> String {
    "http://169.254.169.254/metadata/identity/oauth2/token".to_string()
}
fn default_resource() -> String {
    "https://monitor.azure.com/".to_string()
}

sink_struct! {
/// `type: sentinel`
pub struct SentinelConfig {
    /// Data collection endpoint (or the workspace's logs ingestion endpoint),
    /// `https://my-dce-abcd.eastus-1.ingest.monitor.azure.com`.
    pub endpoint: String,
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
    /// Refresh the token this many seconds before it expires (default 300).
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
    /// `enable.idempotence` and `acks` are fixed (true, all).
    #[serde(default)]
    pub properties: std::collections::BTreeMap<String, String>,
    /// SASL password, kept out of logs (set as `sasl.password`).
    #[serde(default)]
    pub sasl_password: Option<Secret>,
    /// `ocsf` (default) or `cim`.
    #[serde(default)]
    pub format: Format,
}
}

sink_struct! {
/// `type: webhook`
pub struct WebhookConfig {
    /// URL to POST to.
    pub url: String,
    /// HMAC-SHA256 key: the body's MAC goes in `X-Kmswatch-Signature: sha256=<hex>`.
    #[serde(default)]
    pub secret: Option<Secret>,
    /// `ocsf` (default: one finding JSON per request) or `slack` (`{"text": ...}`).
    #[serde(default)]
    pub format: Format,
    /// Extra request headers.
    #[serde(default)]
    pub headers: std::collections::BTreeMap<String, String>,
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

    /// Pure checks: URLs, levels, sizes, formats allowed per sink.
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
        if common.batch.max_events == 0 || common.batch.max_in_flight == 0 {
            return Err(err(
                "batch.max_events and batch.max_in_flight must be at least 1".into(),
            ));
        }
        if common.spool.max_spool_bytes < 1024 || common.spool.segment_bytes < 1024 {
            return Err(err(
                "spool.max_spool_bytes and spool.segment_bytes must be at least 1024".into(),
            ));
        }
        let url = |u: &str, key: &str| -> Result<(), ConfigError> {
            if u.starts_with("https://") || u.starts_with("http://") {
                Ok(())
            } else {
                Err(err(format!(
                    "{key} {u:?} must start with https:// or http://"
                )))
            }
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
            }
            SinkConfig::SplunkHec(c) => {
                url(&c.endpoint, "endpoint")?;
                format_in(c.format, &[Format::Ocsf, Format::Cim])?;
                if c.max_pending_acks == 0 {
                    return Err(err("max_pending_acks must be at least 1".into()));
                }
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
}

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
