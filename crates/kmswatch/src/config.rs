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
//! server: { listen: "127.0.0.1:9464" }   # /metrics, /healthz, /readyz
//! scale_out: { brokers: ["127.0.0.1:9092"], topic: kmswatch-events, group_id: kmswatch-detect,
//!              changelog_topic: kmswatch-events-state, partitions: 6 }
//! respond:                   # kmswatch_respond::RespondConfig: playbooks run on findings
//!   mode: dry_run            # dry_run (default) | approve | enforce
//!   playbooks: [{ name: stop-deletion, rules: [kms_schedule_key_deletion], actions: [{kind: cancel_deletion}] }]
//! ```
//!
//! Every section is optional; unknown keys are errors (a typo must not silently disable a
//! setting). `${NAME}` in any string is replaced by the environment variable `NAME` (an unset
//! variable is an error). Relative paths are relative to the config file.

use anyhow::{anyhow, bail, Context, Result};
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
    /// `kmswatch run`: the HTTP listener for metrics and health.
    pub server: ServerConfig,
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
    #[serde(default = "default_checkpoint_interval_ms")]
    pub checkpoint_interval_ms: u64,
    /// How long an event id (`metadata.uid`) is remembered to drop redelivered copies, seconds.
    #[serde(default = "default_dedup_ttl_secs")]
    pub dedup_ttl_secs: u64,
    /// At most this many event ids are remembered (the oldest are forgotten first).
    #[serde(default = "default_dedup_max_entries")]
    pub dedup_max_entries: usize,
    /// Capacity of each queue between stages, in batches (backpressure: a slow sink stops the
    /// sources once the queues are full).
    #[serde(default = "default_channel_capacity")]
    pub channel_capacity: usize,
    /// A stream with no event for this many seconds has its event-time clock moved to the wall
    /// clock, so its correlation windows close (0: never; replays of old logs that pause for
    /// long should set 0).
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

/// The `server:` section.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// `host:port` for `/metrics` (Prometheus), `/healthz` and `/readyz`; absent: no listener.
    #[serde(default)]
    pub listen: Option<String>,
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
    /// exist are used as they are). Default 6.
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
    normalize: Option<NormalizeOptions>,
    #[serde(default)]
    rules: Option<Value>,
    #[serde(default)]
    sources: Option<Vec<Value>>,
    #[serde(default)]
    sinks: Option<Vec<Value>>,
    #[serde(default)]
    state: Option<StateConfig>,
    #[serde(default)]
    server: Option<ServerConfig>,
    #[serde(default)]
    scale_out: Option<ScaleOutConfig>,
    #[serde(default)]
    respond: Option<Value>,
    #[serde(default)]
    limits: Option<crate::runtime::limits::LimitsConfig>,
}

impl Config {
    /// Read and validate a config file (pure validation after reading; no other I/O).
    pub fn load(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading config {}", path.display()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        let mut cfg =
            Config::parse(&text, base).with_context(|| format!("config {}", path.display()))?;
        cfg.path = Some(path.to_path_buf());
        Ok(cfg)
    }

    /// Parse config text; relative paths are resolved against `base`.
    pub fn parse(text: &str, base: &Path) -> Result<Config> {
        let docs = yaml_rust2::YamlLoader::load_from_str(text).map_err(|e| anyhow!("{e}"))?;
        let mut value = docs.first().map(yaml_to_json).unwrap_or(Value::Null);
        if value.is_null() {
            value = Value::Object(Map::new());
        }
        interpolate_env(&mut value)?;
        let top: RawTop = serde_json::from_value(value).map_err(|e| anyhow!("{e}"))?;
        let mut rules = RulesConfig::default();
        if let Some(Value::Object(mut m)) = top.rules {
            if let Some(p) = m.remove("paths") {
                let paths: Vec<PathBuf> =
                    serde_json::from_value(p).map_err(|e| anyhow!("rules.paths: {e}"))?;
                rules.paths = paths.into_iter().map(|p| base.join(p)).collect();
            }
            if let Some(s) = m.remove("skip_invalid") {
                rules.skip_invalid =
                    serde_json::from_value(s).map_err(|e| anyhow!("rules.skip_invalid: {e}"))?;
            }
            rules.engine =
                serde_json::from_value(Value::Object(m)).map_err(|e| anyhow!("rules: {e}"))?;
            if let Some(p) = rules.engine.inventory_path.as_mut() {
                *p = base.join(&*p);
            }
        } else if let Some(other) = top.rules {
            if !other.is_null() {
                bail!("rules: expected a mapping, found {other}");
            }
        }
        rules.engine.validate().map_err(|e| anyhow!("rules: {e}"))?;
        let mut sources = Vec::new();
        for (i, v) in top.sources.unwrap_or_default().into_iter().enumerate() {
            let Value::Object(mut m) = v else {
                bail!("sources[{i}]: expected a mapping with a `type`");
            };
            let id = match m.remove("id") {
                Some(Value::String(s)) if !s.is_empty() => s,
                Some(other) => bail!("sources[{i}].id: expected a non-empty string, found {other}"),
                None => format!(
                    "{}-{i}",
                    m.get("type").and_then(Value::as_str).unwrap_or("source")
                ),
            };
            if id.contains(['/', ' ']) {
                bail!("sources[{i}].id {id:?}: no `/` or spaces (it names state and streams)");
            }
            let mut config: SourceConfig = serde_json::from_value(Value::Object(m))
                .map_err(|e| anyhow!("sources[{i}] ({id}): {e}"))?;
            config
                .validate()
                .map_err(|e| anyhow!("sources[{i}] ({id}): {e}"))?;
            if let SourceConfig::File(f) = &mut config {
                for p in &mut f.paths {
                    if p != "-" && !Path::new(p.as_str()).is_absolute() {
                        *p = base.join(&*p).to_string_lossy().into_owned();
                    }
                }
            }
            if sources.iter().any(|s: &SourceEntry| s.id == id) {
                bail!("sources[{i}]: duplicate id {id:?}");
            }
            sources.push(SourceEntry { id, config });
        }
        let mut sinks = Vec::new();
        for (i, v) in top.sinks.unwrap_or_default().into_iter().enumerate() {
            let mut s: SinkConfig =
                serde_json::from_value(v).map_err(|e| anyhow!("sinks[{i}]: {e}"))?;
            rebase_sink_paths(&mut s, base);
            sinks.push(s);
        }
        kmswatch_sinks::SinkSet::validate(&sinks).map_err(|e| anyhow!("sinks: {e}"))?;
        let mut state = top.state.unwrap_or_default();
        state.dir = base.join(&state.dir);
        let respond = match top.respond {
            None | Some(Value::Null) => None,
            Some(v) => Some(respond_section(v, base, &state.dir)?),
        };
        if let Some(p) = state.dead_letter_path.as_mut() {
            *p = base.join(&*p);
        }
        if state.checkpoint_interval_ms == 0 {
            bail!("state.checkpoint_interval_ms: must be at least 1");
        }
        if state.channel_capacity == 0 {
            bail!("state.channel_capacity: must be at least 1");
        }
        let server = top.server.unwrap_or_default();
        if let Some(l) = &server.listen {
            l.parse::<std::net::SocketAddr>()
                .map_err(|e| anyhow!("server.listen {l:?}: not host:port ({e})"))?;
        }
        if let Some(so) = &top.scale_out {
            if so.brokers.is_empty() || so.topic.is_empty() || so.group_id.is_empty() {
                bail!("scale_out: brokers, topic and group_id must not be empty");
            }
            if so.partitions < 1 {
                bail!("scale_out.partitions: must be at least 1");
            }
        }
        let limits = top.limits.unwrap_or_default();
        limits.validate().map_err(|e| anyhow!(e))?;
        Ok(Config {
            limits,
            normalize: top.normalize.unwrap_or_default(),
            rules,
            path: None,
            sources,
            sinks,
            state,
            server,
            scale_out: top.scale_out,
            respond,
        })
    }

    /// The spool directory of the sinks (`STATE_DIR/spool`, one subdirectory per sink).
    pub fn spool_dir(&self) -> PathBuf {
        self.state.dir.join("spool")
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

/// Parse and validate the `respond:` section; `journal_path` relative to the config file,
/// default `STATE_DIR/respond-journal.jsonl` (the same file for `run` and `respond approve`).
pub fn respond_section(v: Value, base: &Path, state_dir: &Path) -> Result<RespondConfig> {
    let explicit = v.get("journal_path").is_some();
    let mut rc: RespondConfig = serde_json::from_value(v).map_err(|e| anyhow!("respond: {e}"))?;
    rc.journal_path = if explicit {
        base.join(&rc.journal_path)
    } else {
        state_dir.join(DEFAULT_JOURNAL)
    };
    rc.validate().map_err(|e| anyhow!("respond: {e}"))?;
    Ok(rc)
}

/// `${NAME}` in strings → the environment variable.
fn interpolate_env(v: &mut Value) -> Result<()> {
    match v {
        Value::String(s) if s.contains("${") => {
            let mut out = String::with_capacity(s.len());
            let mut rest = s.as_str();
            while let Some(i) = rest.find("${") {
                out.push_str(&rest[..i]);
                let after = &rest[i + 2..];
                let end = after
                    .find('}')
                    .ok_or_else(|| anyhow!("unterminated ${{ in {s:?}"))?;
                let name = &after[..end];
                let val = std::env::var(name).map_err(|_| {
                    anyhow!("environment variable {name} is not set (used as ${{{name}}})")
                })?;
                out.push_str(&val);
                rest = &after[end + 1..];
            }
            out.push_str(rest);
            *s = out;
        }
        Value::Array(a) => a.iter_mut().try_for_each(interpolate_env)?,
        Value::Object(o) => o.values_mut().try_for_each(interpolate_env)?,
        _ => {}
    }
    Ok(())
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
