//! kmswatch's configuration file (YAML), one documented schema for every verb.
//!
//! ```yaml
//! normalize:                 # kmswatch_normalize::Options
//!   human_role_patterns: ["Admin*"]
//! rules:                     # where the rules are, plus the detection engine's settings
//!   paths: [rules]
//!   skip_invalid: false
//!   calendar: { time_zone: UTC, working_days: [mon, tue, wed, thu, fri], work_start: "08:00", work_end: "18:00" }
//!   calendars: { "111122223333": { time_zone: Europe/Paris, ... } }
//!   inventory_path: inventory.csv
//!   placeholders: { kms_admins: [arn:aws:iam::111122223333:user/kms-admin] }
//!   lateness_secs: 1200
//! sources:                   # `kmswatch run`: kmswatch_sources::SourceConfig plus an `id`
//!   - { id: cloudtrail, type: aws_s3_sqs, queue_url: "https://sqs.us-east-1.amazonaws.com/111122223333/ct", region: us-east-1 }
//!   - { id: keyvault, type: kafka, brokers: ["127.0.0.1:9092"], topics: [kms-audit], group_id: kmswatch, format: auto }
//!   - { type: file, paths: ["logs/**/*.json*"], follow: true }
//! sinks:                     # kmswatch_sinks::SinkConfig: where findings and audit records go
//!   - { type: file, path: findings.jsonl }
//!   - { type: stdout }
//!   - { type: splunk_hec, endpoint: "https://splunk:8088", token: "${HEC_TOKEN}", index: kms, indexer_ack: true }
//! state: { dir: ./state, checkpoint_interval_ms: 1000, dedup_ttl_secs: 86400 }
//! server:                   # /metrics, /healthz, /readyz; no section: no listener
//!   listen: "127.0.0.1:9464" # the default; not loopback: add auth (validate warns)
//!   auth: { bearer_token_file: /run/secrets/metrics-token }   # or bearer_token_env: NAME
//!   tls: { cert_path: tls.crt, key_path: tls.key }
//! scale_out: { brokers: ["127.0.0.1:9092"], topic: kmswatch-events, group_id: kmswatch-detect,
//!              changelog_topic: kmswatch-events-state, partitions: 6 }
//! respond:                   # kmswatch_respond::RespondConfig: playbooks run on findings
//!   mode: dry_run            # dry_run (default) | approve | enforce
//!   playbooks: [{ name: stop-deletion, rules: [kms_schedule_key_deletion], actions: [{kind: cancel_deletion}] }]
//! ```
//!
//! Every section is optional; unknown keys are errors (a typo must not silently disable a
//! setting). `${NAME}` in any string is replaced by the environment variable `NAME` (an unset
//! variable is an error). Relative paths are relative to the config file. Every numeric
//! setting has a documented range ([`ranges`]); [`Config::parse`] reports every problem at
//! once, each named by its path (`sinks[2]`, `state.channel_capacity`), before any I/O.

use anyhow::{anyhow, Context, Result};
use kmswatch_normalize::Options as NormalizeOptions;
use kmswatch_respond::RespondConfig;
use kmswatch_rules::EngineConfig;
use kmswatch_sources::SourceConfig;
use serde::Deserialize;
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};

/// The whole configuration.
#[derive(Debug, Clone, Default)]
pub struct Config {
    /// Normalizer options.
    pub normalize: NormalizeOptions,
    /// Rule files and the detection engine's settings.
    pub rules: RulesConfig,
    /// Where the file was read from (for messages), if it was.
    pub path: Option<PathBuf>,
    /// `kmswatch run`: the sources, each with its id.
    pub sources: Vec<SourceEntry>,
    /// `kmswatch run`: where findings are delivered.
    pub sinks: Vec<SinkConfig>,
    /// `kmswatch run`: durable state and the pipeline's limits.
    pub state: StateConfig,
    /// `kmswatch run`: the HTTP listener for metrics and health (`None`: no `server:`
    /// section, no listener).
    pub server: Option<ServerConfig>,
    /// `kmswatch run --mode ingest|detect`: the Kafka topic between ingest and detection.
    pub scale_out: Option<ScaleOutConfig>,
    /// `kmswatch run` and `kmswatch respond`: the response section (playbooks, mode,
    /// allow/deny lists, limits, journal), validated. `journal_path` defaults to
    /// `STATE_DIR/respond-journal.jsonl`.
    pub respond: Option<RespondConfig>,
    /// `kmswatch run`: the memory budget, dead-letter bounds and shutdown bound.
    pub limits: crate::runtime::limits::LimitsConfig,
}

/// One configured source: an id (its name in metrics, logs, engine streams and state) and the
/// source's own settings (`type: aws_s3_sqs | aws_s3 | kafka | file`).
#[derive(Debug, Clone)]
pub struct SourceEntry {
    /// Unique id; default `TYPE-INDEX` (`aws_s3_sqs-0`). Keep it stable: durable state is keyed
    /// by it.
    pub id: String,
    /// The source's settings.
    pub config: SourceConfig,
}

/// Where findings (and response audit records) are delivered: the `sinks:` list is
/// `kmswatch_sinks::SinkConfig` (`type: file | stdout | splunk_hec | sentinel | kafka | webhook`,
/// each with `name`, `route`, `batch`, `retry`, `spool`).
pub use kmswatch_sinks::SinkConfig;

fn default_state_dir() -> PathBuf {
    PathBuf::from("state")
}
fn default_checkpoint_interval_ms() -> u64 {
    1_000
}
fn default_dedup_ttl_secs() -> u64 {
    86_400
}
fn default_dedup_max_entries() -> usize {
    2_000_000
}
fn default_channel_capacity() -> usize {
    64
}
fn default_idle_advance_secs() -> u64 {
    60
}

/// The `state:` section: durable state and the pipeline's limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateConfig {
    /// Directory of the embedded store (engine windows, baselines, dedup set), file positions
    /// and the dead-letter file. Relative to the config file. Default `state`.
    #[serde(default = "default_state_dir")]
    pub dir: PathBuf,
    /// How often a checkpoint is written, in milliseconds. Source batches are acknowledged
    /// (SQS message deleted, Kafka offset committed) when the checkpoint after them is written.
    /// Range 10–600000, default 1000.
    #[serde(default = "default_checkpoint_interval_ms")]
    pub checkpoint_interval_ms: u64,
    /// How long an event id (`metadata.uid`) is remembered to drop redelivered copies, seconds.
    /// Range 0–31536000 (365 days), default 86400.
    #[serde(default = "default_dedup_ttl_secs")]
    pub dedup_ttl_secs: u64,
    /// At most this many event ids are remembered (the oldest are forgotten first). Range
    /// 1–50000000, default 2000000.
    #[serde(default = "default_dedup_max_entries")]
    pub dedup_max_entries: usize,
    /// Capacity of each queue between stages, in batches (backpressure: a slow sink stops the
    /// sources once the queues are full). Range 1–4096, default 64.
    #[serde(default = "default_channel_capacity")]
    pub channel_capacity: usize,
    /// A stream with no event for this many seconds has its event-time clock moved to the wall
    /// clock, so its correlation windows close (0: never; replays of old logs that pause for
    /// long should set 0). Range 0–604800 (7 days), default 60.
    #[serde(default = "default_idle_advance_secs")]
    pub idle_advance_secs: u64,
    /// Dead-letter file (JSON lines): unreadable objects and rejected records with their
    /// location. Default `STATE_DIR/dead-letter.jsonl`.
    #[serde(default)]
    pub dead_letter_path: Option<PathBuf>,
}

impl Default for StateConfig {
    fn default() -> Self {
        StateConfig {
            dir: default_state_dir(),
            checkpoint_interval_ms: default_checkpoint_interval_ms(),
            dedup_ttl_secs: default_dedup_ttl_secs(),
            dedup_max_entries: default_dedup_max_entries(),
            channel_capacity: default_channel_capacity(),
            idle_advance_secs: default_idle_advance_secs(),
            dead_letter_path: None,
        }
    }
}

impl StateConfig {
    /// The dead-letter file.
    pub fn dead_letter(&self) -> PathBuf {
        self.dead_letter_path
            .clone()
            .unwrap_or_else(|| self.dir.join("dead-letter.jsonl"))
    }
}

fn default_listen() -> String {
    "127.0.0.1:9464".to_string()
}
fn default_header_read_timeout_ms() -> u64 {
    5_000
}
fn default_connection_timeout_secs() -> u64 {
    60
}
fn default_max_connections() -> usize {
    64
}

/// The `server:` section: the HTTP listener for `/metrics` (Prometheus), `/healthz` and
/// `/readyz`. Without a `server:` section there is no listener; `server: {}` listens on
/// `127.0.0.1:9464`. See docs/operations.md ("Endpoints").
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// `host:port` to listen on. Default `127.0.0.1:9464` (loopback: reachable from this host
    /// only). A non-loopback address should come with `auth` (`kmswatch validate` warns).
    #[serde(default = "default_listen")]
    pub listen: String,
    /// Bearer-token authentication for `/metrics` (`/healthz` and `/readyz` stay open: they
    /// reveal nothing but up/ready). Default: none.
    #[serde(default)]
    pub auth: Option<ServerAuthConfig>,
    /// Serve HTTPS with this certificate and key (PEM). Default: plain HTTP.
    #[serde(default)]
    pub tls: Option<ServerTlsConfig>,
    /// A connection must send a complete request head within this many milliseconds of
    /// opening (or of the previous response, on a kept-alive connection): an idle connection
    /// and a head sent byte by byte are closed after it. Range 100–60000, default 5000.
    #[serde(default = "default_header_read_timeout_ms")]
    pub header_read_timeout_ms: u64,
    /// Longest life of one connection, seconds (a client that stops reading a response is
    /// cut off after it; Prometheus reconnects). Range 1–3600, default 60.
    #[serde(default = "default_connection_timeout_secs")]
    pub connection_timeout_secs: u64,
    /// Connections served at once; more wait in the kernel's accept queue. Range 1–4096,
    /// default 64.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: default_listen(),
            auth: None,
            tls: None,
            header_read_timeout_ms: default_header_read_timeout_ms(),
            connection_timeout_secs: default_connection_timeout_secs(),
            max_connections: default_max_connections(),
        }
    }
}

/// `server.auth`: where the bearer token for `/metrics` comes from (exactly one of the two).
/// Requests must send `Authorization: Bearer TOKEN`; anything else is answered 401.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerAuthConfig {
    /// Name of an environment variable holding the token (read at start).
    #[serde(default)]
    pub bearer_token_env: Option<String>,
    /// File holding the token (read at start; surrounding whitespace ignored), for example a
    /// mounted Kubernetes Secret. Relative to the config file.
    #[serde(default)]
    pub bearer_token_file: Option<PathBuf>,
}

/// `server.tls`: serve HTTPS (TLS 1.2 and 1.3, rustls with the aws-lc-rs provider).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerTlsConfig {
    /// Certificate chain, PEM (leaf first). Relative to the config file.
    pub cert_path: PathBuf,
    /// Private key, PEM (PKCS#8, PKCS#1 or SEC1). Relative to the config file.
    pub key_path: PathBuf,
}

impl ServerConfig {
    /// Whether the listen address is a loopback address (reachable from this host only).
    pub fn is_loopback(&self) -> bool {
        self.listen
            .parse::<std::net::SocketAddr>()
            .is_ok_and(|a| a.ip().is_loopback())
    }
}

fn default_events_topic() -> String {
    "kmswatch-events".to_string()
}
fn default_detect_group() -> String {
    "kmswatch-detect".to_string()
}
fn default_partitions() -> i32 {
    6
}

/// The `scale_out:` section: ingest instances publish normalized events to `topic`, keyed by
/// principal; detection instances share `group_id` over it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScaleOutConfig {
    /// Bootstrap brokers, `host:port`.
    pub brokers: Vec<String>,
    /// The normalized-event topic.
    #[serde(default = "default_events_topic")]
    pub topic: String,
    /// The detection instances' consumer group.
    #[serde(default = "default_detect_group")]
    pub group_id: String,
    /// The detection state changelog (compacted; one record per event-topic partition,
    /// keyed `TOPIC/PARTITION`). Default `TOPIC-state`.
    #[serde(default)]
    pub changelog_topic: Option<String>,
    /// Partitions of the event topic and the changelog when kmswatch creates them (topics that
    /// exist are used as they are). Range 1–10000, default 6.
    #[serde(default = "default_partitions")]
    pub partitions: i32,
    /// Extra librdkafka properties for the producer and consumer.
    #[serde(default)]
    pub librdkafka_options: std::collections::BTreeMap<String, String>,
}

impl ScaleOutConfig {
    /// The changelog topic.
    pub fn changelog(&self) -> String {
        self.changelog_topic
            .clone()
            .unwrap_or_else(|| format!("{}-state", self.topic))
    }
}

/// The `rules:` section.
#[derive(Debug, Clone)]
pub struct RulesConfig {
    /// Rule files or directories (default `rules` when it exists).
    pub paths: Vec<PathBuf>,
    /// Load the valid rules even when some are invalid (each invalid one is reported).
    pub skip_invalid: bool,
    /// Detection engine settings: calendars, inventory, placeholders, lateness, suppression.
    pub engine: EngineConfig,
}

impl Default for RulesConfig {
    fn default() -> Self {
        RulesConfig {
            paths: vec![PathBuf::from("rules")],
            skip_invalid: false,
            engine: EngineConfig::default(),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTop {
    #[serde(default)]
    normalize: Option<Value>,
    #[serde(default)]
    rules: Option<Value>,
    #[serde(default)]
    sources: Option<Vec<Value>>,
    #[serde(default)]
    sinks: Option<Vec<Value>>,
    #[serde(default)]
    state: Option<Value>,
    #[serde(default)]
    server: Option<Value>,
    #[serde(default)]
    scale_out: Option<Value>,
    #[serde(default)]
    respond: Option<Value>,
    #[serde(default)]
    limits: Option<Value>,
}

/// One thing wrong with a config file, named by where it is (`sinks[2]`,
/// `state.channel_capacity`, `rules.max_groups`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Dotted path into the file; empty for the file as a whole.
    pub path: String,
    /// What is wrong and what is allowed.
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Every problem found in a config file ([`Config::parse`] reports them all at once, and
/// `kmswatch validate` prints one line each).
#[derive(Debug, Clone)]
pub struct Problems(pub Vec<Problem>);

impl std::fmt::Display for Problems {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0.as_slice() {
            [one] => write!(f, "{one}"),
            all => {
                write!(f, "{} problems:", all.len())?;
                for p in all {
                    write!(f, "\n  {p}")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for Problems {}

/// The allowed range of every numeric setting the binary owns, checked by [`Config::parse`]
/// (so by `kmswatch validate`, before any I/O) and listed in docs/operations.md
/// ("Configuration ranges"). Sources, sinks and the response section check their own through
/// their crates' `validate`.
pub mod ranges {
    use std::ops::RangeInclusive;

    /// `state.checkpoint_interval_ms`: 10 ms to 10 minutes (acknowledgements wait for it).
    pub const CHECKPOINT_INTERVAL_MS: RangeInclusive<u64> = 10..=600_000;
    /// `state.dedup_ttl_secs`: 0 (forget at once) to 365 days.
    pub const DEDUP_TTL_SECS: RangeInclusive<u64> = 0..=31_536_000;
    /// `state.dedup_max_entries`: 1 to 50 million (about 50 bytes each).
    pub const DEDUP_MAX_ENTRIES: RangeInclusive<usize> = 1..=50_000_000;
    /// `state.channel_capacity`: 1 to 4096 batches per queue.
    pub const CHANNEL_CAPACITY: RangeInclusive<usize> = 1..=4_096;
    /// `state.idle_advance_secs`: 0 (never) to 7 days.
    pub const IDLE_ADVANCE_SECS: RangeInclusive<u64> = 0..=604_800;
    /// `server.header_read_timeout_ms`: 100 ms to 60 s.
    pub const HEADER_READ_TIMEOUT_MS: RangeInclusive<u64> = 100..=60_000;
    /// `server.connection_timeout_secs`: 1 s to 1 hour.
    pub const CONNECTION_TIMEOUT_SECS: RangeInclusive<u64> = 1..=3_600;
    /// `server.max_connections`: 1 to 4096.
    pub const MAX_CONNECTIONS: RangeInclusive<usize> = 1..=4_096;
    /// `scale_out.partitions`: 1 to 10000 (topics kmswatch creates).
    pub const PARTITIONS: RangeInclusive<i32> = 1..=10_000;
    /// `rules.lateness_secs` and each `rules.source_lateness_secs` value: 0 to 7 days.
    pub const LATENESS_SECS: RangeInclusive<u64> = 0..=604_800;
    /// `rules.suppression.default_secs` and each `rules.suppression.rules` value: 0 to 30 days.
    pub const SUPPRESSION_SECS: RangeInclusive<u64> = 0..=2_592_000;
    /// `rules.first_seen_lookback_days`: 1 to 3650.
    pub const LOOKBACK_DAYS: RangeInclusive<u32> = 1..=3_650;
    /// `rules.first_seen_learning_days`: 0 to 3650.
    pub const LEARNING_DAYS: RangeInclusive<u32> = 0..=3_650;
    /// `rules.evidence_cap`: 0 to 1000 events per finding.
    pub const EVIDENCE_CAP: RangeInclusive<usize> = 0..=1_000;
    /// `rules.related_events_cap`: 0 to 100000 ids per finding.
    pub const RELATED_EVENTS_CAP: RangeInclusive<usize> = 0..=100_000;
    /// `rules.max_pending_events_per_group`: 1 to 1 million.
    pub const MAX_PENDING_EVENTS_PER_GROUP: RangeInclusive<usize> = 1..=1_000_000;
    /// `rules.max_groups`: 1 to 10 million.
    pub const MAX_GROUPS: RangeInclusive<usize> = 1..=10_000_000;
}

/// Problems found so far, each with its path. A section defined elsewhere (the runtime's
/// `limits:`) checks itself with `fn check(&self, found: &mut Found)` and [`Found::range`].
#[derive(Debug, Default)]
pub(crate) struct Found(Vec<Problem>);

impl Found {
    /// A problem at `path`.
    pub(crate) fn push(&mut self, path: impl Into<String>, message: impl std::fmt::Display) {
        self.0.push(Problem {
            path: path.into(),
            message: message.to_string(),
        });
    }

    /// `value` must lie in `range` (inclusive).
    pub(crate) fn range<T: PartialOrd + std::fmt::Display>(
        &mut self,
        path: impl Into<String>,
        value: T,
        range: &std::ops::RangeInclusive<T>,
    ) {
        let path = path.into();
        // One problem per key: a crate's own check may have named it already.
        if !range.contains(&value) && !self.0.iter().any(|p| p.path == path) {
            self.push(
                path,
                format_args!(
                    "{value} is out of range (allowed: {} to {})",
                    range.start(),
                    range.end()
                ),
            );
        }
    }

    /// Deserialize a section, naming the exact key of a mistake (`state.channel_capacity`).
    pub(crate) fn section<T: serde::de::DeserializeOwned>(
        &mut self,
        path: &str,
        v: Value,
    ) -> Option<T> {
        match serde_path_to_error::deserialize::<_, T>(v) {
            Ok(t) => Some(t),
            Err(e) => {
                let inner = e.path().to_string();
                let at = match inner.as_str() {
                    "" | "." => path.to_string(),
                    i if i.starts_with('[') => format!("{path}{i}"),
                    i => format!("{path}.{i}"),
                };
                self.push(at, e.into_inner());
                None
            }
        }
    }
}

impl Config {
    /// Read and validate a config file (pure validation after reading; no other I/O). Every
    /// problem is reported at once ([`Problems`] inside the error).
    pub fn load(path: &Path) -> Result<Config> {
        let (text, base) = read_config(path)?;
        let mut cfg =
            Config::parse(&text, base).with_context(|| format!("config {}", path.display()))?;
        cfg.path = Some(path.to_path_buf());
        Ok(cfg)
    }

    /// Read a config file and check all of it ([`Config::parse_checked`]); fails only when
    /// the file cannot be read or is not YAML.
    pub fn load_checked(path: &Path) -> Result<(Config, Vec<Problem>)> {
        let (text, base) = read_config(path)?;
        let (mut cfg, problems) = Config::parse_checked(&text, base)
            .with_context(|| format!("config {}", path.display()))?;
        cfg.path = Some(path.to_path_buf());
        Ok((cfg, problems))
    }

    /// Parse config text; relative paths are resolved against `base`. Fails with every
    /// [`Problems`] found.
    pub fn parse(text: &str, base: &Path) -> Result<Config> {
        let (cfg, problems) = Config::parse_checked(text, base)?;
        if problems.is_empty() {
            Ok(cfg)
        } else {
            Err(Problems(problems).into())
        }
    }

    /// Parse config text and check all of it, collecting every problem with its path (a
    /// section with a problem keeps its defaults). Fails only when the text is not YAML.
    pub fn parse_checked(text: &str, base: &Path) -> Result<(Config, Vec<Problem>)> {
        let docs = yaml_rust2::YamlLoader::load_from_str(text).map_err(|e| anyhow!("{e}"))?;
        let mut value = docs.first().map(yaml_to_json).unwrap_or(Value::Null);
        if value.is_null() {
            value = Value::Object(Map::new());
        }
        let mut found = Found::default();
        interpolate_env(&mut value, "", &mut found);
        let top: RawTop = match serde_json::from_value(value) {
            Ok(t) => t,
            Err(e) => {
                found.push("", e);
                return Ok((Config::default(), found.0));
            }
        };
        let normalize = match top.normalize {
            None | Some(Value::Null) => NormalizeOptions::default(),
            Some(v) => found.section("normalize", v).unwrap_or_default(),
        };
        // Every pattern is compiled here, so that `validate` finds a bad one.
        match kmswatch_normalize::Normalizer::new(normalize.clone()) {
            Err(kmswatch_normalize::OptionsError::BadPattern { pattern, reason }) => found.push(
                "normalize.human_role_patterns",
                format_args!("{pattern:?} is not a valid glob: {reason}"),
            ),
            Err(e) => found.push("normalize", e),
            Ok(_) => {}
        }
        let rules = rules_section(top.rules, base, &mut found);
        let mut sources = Vec::new();
        for (i, v) in top.sources.unwrap_or_default().into_iter().enumerate() {
            if let Some(s) = source_entry(i, v, base, &sources, &mut found) {
                sources.push(s);
            }
        }
        let mut sinks = Vec::new();
        let mut sinks_ok = true;
        for (i, v) in top.sinks.unwrap_or_default().into_iter().enumerate() {
            let Some(mut s) = found.section::<SinkConfig>(&format!("sinks[{i}]"), v) else {
                sinks_ok = false;
                continue;
            };
            if let Err(e) = kmswatch_sinks::config::sink_names(std::slice::from_ref(&s)) {
                found.push(format!("sinks[{i}]"), e);
                sinks_ok = false;
            }
            rebase_sink_paths(&mut s, base);
            sinks.push(s);
        }
        // Names unique across the sinks (each sink checked itself above).
        if sinks_ok {
            if let Err(e) = kmswatch_sinks::SinkSet::validate(&sinks) {
                found.push("sinks", e);
            }
        }
        let mut state: StateConfig = match top.state {
            None | Some(Value::Null) => StateConfig::default(),
            Some(v) => found.section("state", v).unwrap_or_default(),
        };
        state.dir = base.join(&state.dir);
        if let Some(p) = state.dead_letter_path.as_mut() {
            *p = base.join(&*p);
        }
        state.check(&mut found);
        let respond = match top.respond {
            None | Some(Value::Null) => None,
            Some(v) => respond_section(v, base, &state.dir, &mut found),
        };
        let server = match top.server {
            None | Some(Value::Null) => None,
            Some(v) => found
                .section::<ServerConfig>("server", v)
                .map(|mut s| {
                    s.rebase(base);
                    s.check(&mut found);
                    s
                })
                .or_else(|| Some(ServerConfig::default())),
        };
        let scale_out = match top.scale_out {
            None | Some(Value::Null) => None,
            Some(v) => found.section::<ScaleOutConfig>("scale_out", v),
        };
        if let Some(so) = &scale_out {
            so.check(&mut found);
        }
        let limits = match top.limits {
            None | Some(Value::Null) => crate::runtime::limits::LimitsConfig::default(),
            Some(v) => found.section("limits", v).unwrap_or_default(),
        };
        if let Err(e) = limits.validate() {
            // The message names the field (`limits.memory_budget_bytes: ...`).
            let (path, msg) = e.split_once(": ").unwrap_or(("limits", &e));
            found.push(path, msg);
        }
        Ok((
            Config {
                limits,
                normalize,
                rules,
                path: None,
                sources,
                sinks,
                state,
                server,
                scale_out,
                respond,
            },
            found.0,
        ))
    }

    /// The spool directory of the sinks (`STATE_DIR/spool`, one subdirectory per sink).
    pub fn spool_dir(&self) -> PathBuf {
        self.state.dir.join("spool")
    }
}

/// The text of a config file and the directory its relative paths start from.
fn read_config(path: &Path) -> Result<(String, &Path)> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading config {}", path.display()))?;
    Ok((text, path.parent().unwrap_or(Path::new("."))))
}

/// The `rules:` section: paths, `skip_invalid`, and the engine's settings (checked by the
/// rules crate, then against [`ranges`]).
fn rules_section(v: Option<Value>, base: &Path, found: &mut Found) -> RulesConfig {
    let mut rules = RulesConfig::default();
    match v {
        Some(Value::Object(mut m)) => {
            if let Some(p) = m.remove("paths") {
                if let Some(paths) = found.section::<Vec<PathBuf>>("rules.paths", p) {
                    rules.paths = paths.into_iter().map(|p| base.join(p)).collect();
                }
            }
            if let Some(s) = m.remove("skip_invalid") {
                if let Some(b) = found.section("rules.skip_invalid", s) {
                    rules.skip_invalid = b;
                }
            }
            match found.section::<EngineConfig>("rules", Value::Object(m)) {
                Some(e) => rules.engine = e,
                None => return rules,
            }
            if let Some(p) = rules.engine.inventory_path.as_mut() {
                *p = base.join(&*p);
            }
        }
        None | Some(Value::Null) => {}
        Some(other) => found.push("rules", format_args!("expected a mapping, found {other}")),
    }
    if let Err(e) = rules.engine.validate() {
        found.push(format!("rules.{}", e.field), e.reason);
    }
    let e = &rules.engine;
    found.range(
        "rules.lateness_secs",
        e.lateness_secs,
        &ranges::LATENESS_SECS,
    );
    for (name, secs) in &e.source_lateness_secs {
        found.range(
            format!("rules.source_lateness_secs.{name}"),
            *secs,
            &ranges::LATENESS_SECS,
        );
    }
    found.range(
        "rules.suppression.default_secs",
        e.suppression.default_secs,
        &ranges::SUPPRESSION_SECS,
    );
    for (rule, secs) in &e.suppression.rules {
        found.range(
            format!("rules.suppression.rules.{rule}"),
            *secs,
            &ranges::SUPPRESSION_SECS,
        );
    }
    found.range(
        "rules.first_seen_lookback_days",
        e.first_seen_lookback_days,
        &ranges::LOOKBACK_DAYS,
    );
    found.range(
        "rules.first_seen_learning_days",
        e.first_seen_learning_days,
        &ranges::LEARNING_DAYS,
    );
    found.range("rules.evidence_cap", e.evidence_cap, &ranges::EVIDENCE_CAP);
    found.range(
        "rules.related_events_cap",
        e.related_events_cap,
        &ranges::RELATED_EVENTS_CAP,
    );
    found.range(
        "rules.max_pending_events_per_group",
        e.max_pending_events_per_group,
        &ranges::MAX_PENDING_EVENTS_PER_GROUP,
    );
    found.range("rules.max_groups", e.max_groups, &ranges::MAX_GROUPS);
    for (name, values) in &e.placeholders {
        if values.is_empty() {
            found.push(
                format!("rules.placeholders.{name}"),
                "is empty: list at least one value (rules using it would match nothing)",
            );
        }
    }
    rules
}

/// One `sources:` entry: its id (default `TYPE-INDEX`) and settings, checked by the sources
/// crate (a problem there is named `sources[i].FIELD`).
fn source_entry(
    i: usize,
    v: Value,
    base: &Path,
    earlier: &[SourceEntry],
    found: &mut Found,
) -> Option<SourceEntry> {
    let at = format!("sources[{i}]");
    let Value::Object(mut m) = v else {
        found.push(at, "expected a mapping with a `type`");
        return None;
    };
    let id = match m.remove("id") {
        Some(Value::String(s)) if !s.is_empty() => s,
        Some(other) => {
            found.push(
                format!("{at}.id"),
                format_args!("expected a non-empty string, found {other}"),
            );
            return None;
        }
        None => format!(
            "{}-{i}",
            m.get("type").and_then(Value::as_str).unwrap_or("source")
        ),
    };
    if id.contains(['/', ' ']) {
        found.push(
            format!("{at}.id"),
            format_args!("{id:?}: no `/` or spaces (it names state and streams)"),
        );
    }
    if earlier.iter().any(|s| s.id == id) {
        found.push(format!("{at}.id"), format_args!("duplicate id {id:?}"));
    }
    let mut config: SourceConfig = found.section(&at, Value::Object(m))?;
    if let Err(e) = config.validate() {
        found.push(format!("{at}.{}", e.field), format_args!("({id}) {e}"));
    }
    if let SourceConfig::File(f) = &mut config {
        for p in &mut f.paths {
            if p != "-" && !Path::new(p.as_str()).is_absolute() {
                *p = base.join(&*p).to_string_lossy().into_owned();
            }
        }
    }
    Some(SourceEntry { id, config })
}

impl StateConfig {
    /// Range checks ([`ranges`]).
    fn check(&self, found: &mut Found) {
        found.range(
            "state.checkpoint_interval_ms",
            self.checkpoint_interval_ms,
            &ranges::CHECKPOINT_INTERVAL_MS,
        );
        found.range(
            "state.dedup_ttl_secs",
            self.dedup_ttl_secs,
            &ranges::DEDUP_TTL_SECS,
        );
        found.range(
            "state.dedup_max_entries",
            self.dedup_max_entries,
            &ranges::DEDUP_MAX_ENTRIES,
        );
        found.range(
            "state.channel_capacity",
            self.channel_capacity,
            &ranges::CHANNEL_CAPACITY,
        );
        found.range(
            "state.idle_advance_secs",
            self.idle_advance_secs,
            &ranges::IDLE_ADVANCE_SECS,
        );
    }
}

impl ServerConfig {
    /// Paths relative to the config file.
    fn rebase(&mut self, base: &Path) {
        if let Some(f) = self
            .auth
            .as_mut()
            .and_then(|a| a.bearer_token_file.as_mut())
        {
            *f = base.join(&*f);
        }
        if let Some(t) = self.tls.as_mut() {
            t.cert_path = base.join(&t.cert_path);
            t.key_path = base.join(&t.key_path);
        }
    }

    /// The address, ranges, and an auth section naming exactly one token source.
    fn check(&self, found: &mut Found) {
        if let Err(e) = self.listen.parse::<std::net::SocketAddr>() {
            found.push(
                "server.listen",
                format_args!("{:?} is not IP:PORT ({e})", self.listen),
            );
        }
        found.range(
            "server.header_read_timeout_ms",
            self.header_read_timeout_ms,
            &ranges::HEADER_READ_TIMEOUT_MS,
        );
        found.range(
            "server.connection_timeout_secs",
            self.connection_timeout_secs,
            &ranges::CONNECTION_TIMEOUT_SECS,
        );
        found.range(
            "server.max_connections",
            self.max_connections,
            &ranges::MAX_CONNECTIONS,
        );
        if let Some(a) = &self.auth {
            match (&a.bearer_token_env, &a.bearer_token_file) {
                (Some(_), Some(_)) | (None, None) => found.push(
                    "server.auth",
                    "give exactly one of bearer_token_env and bearer_token_file",
                ),
                (Some(name), None) if name.is_empty() => {
                    found.push("server.auth.bearer_token_env", "is empty")
                }
                _ => {}
            }
        }
    }

    /// Why this listener is open to the network without authentication, when it is (a
    /// warning of `kmswatch validate`, and logged by `run` at start).
    pub fn exposure_warning(&self) -> Option<String> {
        if self.auth.is_some() || self.is_loopback() {
            return None;
        }
        Some(format!(
            "{} is not a loopback address and server.auth is not set: anyone who can reach it \
             reads /metrics (rule ids, sources, sinks, volumes). Add server.auth (and server.tls), \
             or listen on 127.0.0.1",
            self.listen
        ))
    }
}

impl ScaleOutConfig {
    fn check(&self, found: &mut Found) {
        for (name, empty) in [
            ("brokers", self.brokers.is_empty()),
            ("topic", self.topic.is_empty()),
            ("group_id", self.group_id.is_empty()),
        ] {
            if empty {
                found.push(format!("scale_out.{name}"), "must not be empty");
            }
        }
        found.range("scale_out.partitions", self.partitions, &ranges::PARTITIONS);
    }
}

/// Relative paths in a sink's settings are relative to the config file.
fn rebase_sink_paths(s: &mut SinkConfig, base: &Path) {
    let rebase = |p: &mut PathBuf| {
        if p.is_relative() {
            *p = base.join(&*p);
        }
    };
    match s {
        SinkConfig::File(c) => rebase(&mut c.path),
        SinkConfig::SplunkHec(c) => {
            if let Some(p) = c.tls.ca_file.as_mut() {
                rebase(p)
            }
        }
        SinkConfig::Sentinel(c) => {
            if let Some(p) = c.tls.ca_file.as_mut() {
                rebase(p)
            }
        }
        SinkConfig::Webhook(c) => {
            if let Some(p) = c.tls.ca_file.as_mut() {
                rebase(p)
            }
        }
        SinkConfig::Stdout(_) | SinkConfig::Kafka(_) => {}
    }
}

/// The file pending approvals and every response step are journaled to, when the `respond:`
/// section does not name one.
pub const DEFAULT_JOURNAL: &str = "respond-journal.jsonl";

/// Parse and validate the `respond:` section (a problem is named `respond.KEY` when serde
/// knows the key, `respond` for the crate's own checks); `journal_path` relative to the config
/// file, default `STATE_DIR/respond-journal.jsonl` (the same file for `run` and `respond
/// approve`).
fn respond_section(
    v: Value,
    base: &Path,
    state_dir: &Path,
    found: &mut Found,
) -> Option<RespondConfig> {
    let explicit = v.get("journal_path").is_some();
    let mut rc: RespondConfig = found.section("respond", v)?;
    rc.journal_path = if explicit {
        base.join(&rc.journal_path)
    } else {
        state_dir.join(DEFAULT_JOURNAL)
    };
    match rc.validate() {
        Ok(()) => Some(rc),
        Err(e) => {
            found.push("respond", e);
            None
        }
    }
}

/// `${NAME}` in strings → the environment variable; an unset one is a problem at its path.
fn interpolate_env(v: &mut Value, path: &str, found: &mut Found) {
    match v {
        Value::String(s) if s.contains("${") => {
            let mut out = String::with_capacity(s.len());
            let mut rest = s.as_str();
            while let Some(i) = rest.find("${") {
                out.push_str(&rest[..i]);
                let after = &rest[i + 2..];
                let Some(end) = after.find('}') else {
                    found.push(path, "unterminated ${ (write ${NAME})");
                    return;
                };
                let name = &after[..end];
                match std::env::var(name) {
                    Ok(val) => out.push_str(&val),
                    Err(_) => {
                        found.push(
                            path,
                            format_args!(
                                "environment variable {name} is not set (used as ${{{name}}})"
                            ),
                        );
                        return;
                    }
                }
                rest = &after[end + 1..];
            }
            out.push_str(rest);
            *s = out;
        }
        Value::Array(a) => {
            for (i, x) in a.iter_mut().enumerate() {
                interpolate_env(x, &format!("{path}[{i}]"), found);
            }
        }
        Value::Object(o) => {
            for (k, x) in o.iter_mut() {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                interpolate_env(x, &p, found);
            }
        }
        _ => {}
    }
}

/// YAML → JSON value (strings, numbers, booleans, lists, maps; keys as strings).
pub fn yaml_to_json(y: &yaml_rust2::Yaml) -> Value {
    use yaml_rust2::Yaml as Y;
    match y {
        Y::Real(s) => s
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map_or(Value::String(s.clone()), Value::Number),
        Y::Integer(i) => Value::from(*i),
        Y::String(s) => Value::String(s.clone()),
        Y::Boolean(b) => Value::Bool(*b),
        Y::Array(a) => Value::Array(a.iter().map(yaml_to_json).collect()),
        Y::Hash(h) => Value::Object(
            h.iter()
                .map(|(k, v)| {
                    let key = match k {
                        Y::String(s) => s.clone(),
                        Y::Integer(i) => i.to_string(),
                        Y::Boolean(b) => b.to_string(),
                        Y::Real(r) => r.clone(),
                        _ => String::new(),
                    };
                    (key, yaml_to_json(v))
                })
                .collect(),
        ),
        Y::Alias(_) | Y::Null | Y::BadValue => Value::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_defaults_and_errors() {
        let c = Config::parse("", Path::new("/etc/kmswatch")).unwrap();
        assert_eq!(c.rules.paths, vec![PathBuf::from("rules")]);

        let c = Config::parse(
            "normalize: {human_role_patterns: [Admin*]}\nrules:\n  paths: [r]\n  inventory_path: inv.csv\n  lateness_secs: 60\n",
            Path::new("/etc/kmswatch"),
        )
        .unwrap();
        assert_eq!(c.rules.paths, vec![PathBuf::from("/etc/kmswatch/r")]);
        assert_eq!(c.rules.engine.lateness_secs, 60);
        assert_eq!(
            c.rules.engine.inventory_path,
            Some(PathBuf::from("/etc/kmswatch/inv.csv"))
        );
        assert_eq!(c.normalize.human_role_patterns, vec!["Admin*".to_string()]);

        let e = Config::parse("rules: {latenes_secs: 5}\n", Path::new(".")).unwrap_err();
        assert!(e.to_string().contains("latenes_secs"), "{e}");
        let e = Config::parse("sinkz: []\n", Path::new(".")).unwrap_err();
        assert!(e.to_string().contains("sinkz"), "{e}");
    }

    #[test]
    fn env_interpolation() {
        std::env::set_var("KMSWATCH_TEST_ROLE", "Breakglass");
        let c = Config::parse(
            "normalize: {human_role_patterns: [\"${KMSWATCH_TEST_ROLE}*\"]}\n",
            Path::new("."),
        )
        .unwrap();
        assert_eq!(
            c.normalize.human_role_patterns,
            vec!["Breakglass*".to_string()]
        );
        let e = Config::parse(
            "normalize: {human_role_patterns: [\"${KMSWATCH_TEST_UNSET_VAR}\"]}\n",
            Path::new("."),
        )
        .unwrap_err();
        assert!(e.to_string().contains("KMSWATCH_TEST_UNSET_VAR"));
    }
}

#[cfg(test)]
mod runtime_tests {
    use super::*;

    #[test]
    fn example_configs_parse() {
        std::env::set_var(
            "EVENTHUBS_CONNECTION_STRING",
            "Endpoint=sb://x/;SharedAccessKey=k",
        );
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/config");
        for name in ["kmswatch.yml", "backfill.yml"] {
            let c = Config::load(&dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e:#}"));
            assert!(!c.sources.is_empty() && !c.sinks.is_empty(), "{name}");
        }
        let c = Config::load(&dir.join("kmswatch.yml")).expect("example");
        let ids: Vec<&str> = c.sources.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(ids, ["cloudtrail", "keyvault", "gcp"]);
        assert_eq!(c.state.checkpoint_interval_ms, 1000);
        assert!(
            !format!("{c:?}").contains("SharedAccessKey=k"),
            "secrets redacted"
        );
    }

    #[test]
    fn runtime_sections_are_checked() {
        let base = Path::new("/etc/kmswatch");
        let c = Config::parse(
            "sources:\n  - { type: file, paths: [logs] }\n  - { type: file, paths: [more], id: b }\nsinks: [{type: file, path: out.jsonl}]\n",
            base,
        )
        .expect("config");
        assert_eq!(c.sources[0].id, "file-0");
        assert_eq!(c.sources[1].id, "b");
        assert_eq!(c.state.dir, PathBuf::from("/etc/kmswatch/state"));
        match &c.sinks[0] {
            SinkConfig::File(f) => {
                assert_eq!(f.path, PathBuf::from("/etc/kmswatch/out.jsonl"))
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(c.spool_dir(), PathBuf::from("/etc/kmswatch/state/spool"));
        assert!(c.respond.is_none());
        let c = Config::parse(
            "state: {dir: /var/lib/k}\nrespond: {mode: enforce, playbooks: [{name: p, rules: [r], actions: [{kind: disable}]}]}\n",
            base,
        )
        .expect("respond");
        let r = c.respond.expect("respond section");
        assert_eq!(
            r.journal_path,
            PathBuf::from("/var/lib/k/respond-journal.jsonl")
        );
        assert_eq!(r.playbooks.len(), 1);
        let c = Config::parse("respond: {journal_path: j.jsonl}\n", base).expect("respond");
        assert_eq!(
            c.respond.expect("respond").journal_path,
            PathBuf::from("/etc/kmswatch/j.jsonl")
        );
        for (text, needle) in [
            ("sources:\n  - { type: file, paths: [a], folow: true }\n", "folow"),
            ("sources:\n  - { type: file, paths: [a], id: x }\n  - { type: file, paths: [b], id: x }\n", "duplicate id"),
            ("sinks: [{type: file, path: a, extra: 1}]\n", "extra"),
            ("state: {dirr: x}\n", "dirr"),
            ("server: {listen: nowhere}\n", "server.listen"),
            ("sinks: [{type: splunk_hec, endpoint: \"ftp://x\", token: t}]\n", "sinks"),
            ("sinks: [{type: nosuch}]\n", "sinks[0]"),
            ("respond: {mode: yolo}\n", "respond"),
            ("sources:\n  - { type: aws_s3_sqs, queue_url: q }\n", "queue_url"),
        ] {
            let e = Config::parse(text, base).expect_err(text);
            assert!(format!("{e:#}").contains(needle), "{text}: {e:#}");
        }
    }
}
