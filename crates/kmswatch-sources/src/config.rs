//! Source configuration: one enum listing every source type, serde with
//! `deny_unknown_fields`, defaults beside the structs, and a pure [`SourceConfig::validate`]
//! that runs before any I/O.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use serde::Deserialize;

/// A secret string (password, connection string). Its `Debug` and `Display` never show it.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wrap a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    /// The secret itself, for handing to a client library. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Every source kmswatch can read from. The `type` key selects the variant.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SourceConfig {
    /// S3 objects announced on an SQS queue (S3 event notifications, SNS-wrapped, EventBridge,
    /// CloudTrail's own SNS notices).
    AwsS3Sqs(AwsS3SqsConfig),
    /// A one-off listing of S3 objects under a prefix within a date range (backfill, replay).
    AwsS3(AwsS3Config),
    /// Kafka topics (also Azure Event Hubs' Kafka endpoint, Confluent Cloud, MSK).
    Kafka(KafkaConfig),
    /// Files, directories, globs or stdin (`-`), optionally followed as they grow.
    File(FileConfig),
}

/// What to do with an SQS message whose object cannot be read (GetObject 404/403) or whose body
/// is not a notification kmswatch understands. It is reported with its location first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum OnBadObject {
    /// Count the object as done; the message is deleted once its other objects are acked.
    #[default]
    Delete,
    /// Leave the message; it becomes visible again after the visibility timeout and is retried
    /// (ends in the queue's dead-letter queue if it has a redrive policy).
    Retry,
    /// Same as `retry` for the message, but stop extending its visibility at once; meant for
    /// queues with a redrive policy that parks such messages in a dead-letter queue.
    Keep,
}

fn default_wait_time_secs() -> u32 {
    20
}
fn default_visibility_timeout_secs() -> u32 {
    300
}
fn default_max_messages() -> u32 {
    10
}
fn default_true() -> bool {
    true
}
fn default_max_backoff_secs() -> u64 {
    60
}
/// Default `max_object_bytes` of every source that reads whole objects (S3 objects, whole
/// files, compressed files, stdin documents): 64 MiB. One object is held in memory as read
/// (compressed, for gzip/zip), and the normalizer decodes it within its own per-object
/// budget; with the runtime's few batches in flight per source this fits the Helm chart's
/// 512 MiB container. CloudTrail delivers gzip objects of a few MB at most.
pub const DEFAULT_MAX_OBJECT_BYTES: u64 = 64 << 20;

fn default_max_object_bytes() -> u64 {
    DEFAULT_MAX_OBJECT_BYTES
}

/// The largest `max_object_bytes` accepted: 1 GiB (an object is held in memory whole).
pub const MAX_MAX_OBJECT_BYTES: u64 = 1 << 30;

/// `type: aws_s3_sqs`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsS3SqsConfig {
    /// The SQS queue URL that receives the S3 (or SNS/EventBridge) notifications.
    pub queue_url: String,
    /// AWS region; when absent the standard chain (`AWS_REGION`, profile) decides.
    #[serde(default)]
    pub region: Option<String>,
    /// Endpoint override for both SQS and S3 (tests, VPC endpoints). The standard
    /// `AWS_ENDPOINT_URL` environment variable works as well.
    #[serde(default)]
    pub endpoint_url: Option<String>,
    /// Address S3 buckets by path (`endpoint/bucket/key`) rather than by virtual host.
    #[serde(default)]
    pub force_path_style: bool,
    /// SQS long-poll wait, 0..=20 seconds.
    #[serde(default = "default_wait_time_secs")]
    pub wait_time_secs: u32,
    /// Visibility timeout asked for on receive and renewed (every half of it) while the
    /// message's objects are still in the pipeline, 1..=43200 seconds.
    #[serde(default = "default_visibility_timeout_secs")]
    pub visibility_timeout_secs: u32,
    /// Messages per receive call, 1..=10.
    #[serde(default = "default_max_messages")]
    pub max_messages: u32,
    /// What to do with an object that cannot be read for a reason retrying will not fix
    /// (NoSuchKey, AccessDenied, over `max_object_bytes`) and with a message that is not a
    /// notification. `delete` (default): it is handed out as a dead letter and the message is
    /// deleted once the runtime has written it. `retry`/`keep`: the message is left on the
    /// queue (logged, not dead-lettered: the queue still holds it).
    #[serde(default)]
    pub on_bad_object: OnBadObject,
    /// Skip (and acknowledge) CloudTrail digest files (`CloudTrail-Digest` in the key).
    #[serde(default = "default_true")]
    pub skip_digest_files: bool,
    /// Buckets whose objects may be read (names, without `s3://`). An object a message
    /// announces in any other bucket is not read but set aside as a dead letter
    /// (`bucket_not_allowed`): a forged or misrouted notification must not make kmswatch read
    /// a bucket it was not meant to (nor show it its credentials' role). Empty (the default):
    /// any bucket the credentials can read; list the trail buckets in production.
    #[serde(default)]
    pub buckets: Vec<String>,
    /// Objects larger than this (per HeadObject, before any download) are set aside as dead
    /// letters (`object_too_large`) instead of being read into memory; a body that turns out
    /// larger while downloading is cut off the same way. Default 64 MiB, at most 1 GiB.
    #[serde(default = "default_max_object_bytes")]
    pub max_object_bytes: u64,
    /// Upper bound of the exponential backoff after errors, in seconds.
    #[serde(default = "default_max_backoff_secs")]
    pub max_backoff_secs: u64,
    /// Format hint handed to the normalizer with every object (`auto` or absent: detect).
    #[serde(default)]
    pub format: Option<String>,
}

/// Key layout of the bucket read by `aws_s3`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum S3Layout {
    /// `PREFIX/AWSLogs/[o-ORG/]ACCOUNT/CloudTrail/REGION/YYYY/MM/DD/...`: only the day
    /// prefixes in the range are listed.
    #[default]
    Cloudtrail,
    /// Any layout: everything under the prefix is listed and filtered by LastModified.
    Flat,
}

/// `type: aws_s3` (backfill / replay).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsS3Config {
    /// Bucket to read.
    pub bucket: String,
    /// Key prefix before `AWSLogs/` (cloudtrail layout) or of every object (flat layout).
    #[serde(default)]
    pub prefix: String,
    /// AWS region; when absent the standard chain decides.
    #[serde(default)]
    pub region: Option<String>,
    /// Endpoint override (tests, VPC endpoints); `AWS_ENDPOINT_URL` works as well.
    #[serde(default)]
    pub endpoint_url: Option<String>,
    /// Address buckets by path rather than by virtual host.
    #[serde(default)]
    pub force_path_style: bool,
    /// Key layout.
    #[serde(default)]
    pub layout: S3Layout,
    /// Organization ids (`o-...`) whose organization-trail keys to read; empty: discover.
    #[serde(default)]
    pub organization_ids: Vec<String>,
    /// Accounts to read (12 digits); empty: discover by listing with a delimiter.
    #[serde(default)]
    pub accounts: Vec<String>,
    /// Regions to read; empty: discover by listing with a delimiter.
    #[serde(default)]
    pub regions: Vec<String>,
    /// First day (UTC, `YYYY-MM-DD`, inclusive).
    pub start_date: String,
    /// Last day (UTC, `YYYY-MM-DD`, inclusive).
    pub end_date: String,
    /// Skip CloudTrail digest files.
    #[serde(default = "default_true")]
    pub skip_digest_files: bool,
    /// Objects larger than this (per the listing's size) are set aside as dead letters
    /// (`object_too_large`) without being downloaded. Default 64 MiB, at most 1 GiB.
    #[serde(default = "default_max_object_bytes")]
    pub max_object_bytes: u64,
    /// Format hint handed to the normalizer with every object.
    #[serde(default)]
    pub format: Option<String>,
}

/// Kafka `security.protocol`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SecurityProtocol {
    /// No TLS, no SASL (local brokers, tests).
    Plaintext,
    /// TLS without SASL.
    Ssl,
    /// SASL without TLS.
    SaslPlaintext,
    /// SASL over TLS (Event Hubs, Confluent Cloud, MSK SASL/SCRAM).
    SaslSsl,
}

impl SecurityProtocol {
    pub(crate) fn as_librdkafka(self) -> &'static str {
        match self {
            Self::Plaintext => "plaintext",
            Self::Ssl => "ssl",
            Self::SaslPlaintext => "sasl_plaintext",
            Self::SaslSsl => "sasl_ssl",
        }
    }
}

/// Kafka `sasl.mechanism`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum SaslMechanism {
    /// PLAIN (Event Hubs with `$ConnectionString`, Confluent Cloud API keys).
    #[serde(rename = "PLAIN", alias = "plain")]
    Plain,
    /// SCRAM-SHA-256.
    #[serde(rename = "SCRAM-SHA-256", alias = "scram_sha_256")]
    ScramSha256,
    /// SCRAM-SHA-512 (MSK SASL/SCRAM).
    #[serde(rename = "SCRAM-SHA-512", alias = "scram_sha_512")]
    ScramSha512,
    /// OAUTHBEARER with librdkafka's OIDC client (set its options in `librdkafka_options`).
    /// MSK IAM needs a signed token callback that this source does not provide yet.
    #[serde(rename = "OAUTHBEARER", alias = "oauthbearer")]
    OauthBearer,
}

impl SaslMechanism {
    pub(crate) fn as_librdkafka(self) -> &'static str {
        match self {
            Self::Plain => "PLAIN",
            Self::ScramSha256 => "SCRAM-SHA-256",
            Self::ScramSha512 => "SCRAM-SHA-512",
            Self::OauthBearer => "OAUTHBEARER",
        }
    }
}

/// Where a consumer group without a committed offset starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum AutoOffsetReset {
    /// The oldest retained message.
    #[default]
    Earliest,
    /// Only messages produced from now on.
    Latest,
}

fn default_format_auto() -> String {
    "auto".to_owned()
}
fn default_session_timeout_ms() -> u32 {
    45_000
}
fn default_commit_interval_ms() -> u64 {
    5_000
}
fn default_max_unacked_messages() -> usize {
    10_000
}

/// `type: kafka`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// Bootstrap brokers, `host:port` (Event Hubs: `NAMESPACE.servicebus.windows.net:9093`).
    pub brokers: Vec<String>,
    /// Topics to consume (Event Hubs: event hub names).
    pub topics: Vec<String>,
    /// Consumer group id (Event Hubs: consumer group name).
    pub group_id: String,
    /// Format hint for every topic: `auto` (detect) or a normalizer format name.
    #[serde(default = "default_format_auto")]
    pub format: String,
    /// Per-topic format hints, overriding `format`.
    #[serde(default)]
    pub topic_formats: BTreeMap<String, String>,
    /// `security.protocol`; default `plaintext`, or `sasl_ssl` when a connection string or
    /// SASL user is set.
    #[serde(default)]
    pub security_protocol: Option<SecurityProtocol>,
    /// `sasl.mechanism`; default `PLAIN` when a SASL user or connection string is set.
    #[serde(default)]
    pub sasl_mechanism: Option<SaslMechanism>,
    /// SASL user name (Confluent Cloud: API key).
    #[serde(default)]
    pub sasl_username: Option<String>,
    /// SASL password (Confluent Cloud: API secret).
    #[serde(default)]
    pub sasl_password: Option<Secret>,
    /// Azure Event Hubs connection string; sets SASL_SSL + PLAIN with user
    /// `$ConnectionString` and this as the password.
    #[serde(default)]
    pub event_hubs_connection_string: Option<Secret>,
    /// CA bundle (PEM) for TLS; default: the system store.
    #[serde(default)]
    pub ssl_ca_location: Option<PathBuf>,
    /// Where a group with no committed offset starts.
    #[serde(default)]
    pub auto_offset_reset: AutoOffsetReset,
    /// Consumer session timeout in milliseconds.
    #[serde(default = "default_session_timeout_ms")]
    pub session_timeout_ms: u32,
    /// How often acknowledged offsets are committed, in milliseconds (also on revocation and
    /// shutdown).
    #[serde(default = "default_commit_interval_ms")]
    pub commit_interval_ms: u64,
    /// Stop handing out messages while this many are unacknowledged (backpressure).
    #[serde(default = "default_max_unacked_messages")]
    pub max_unacked_messages: usize,
    /// Extra librdkafka properties (e.g. `sasl.oauthbearer.*`, `client.id`). Applied last;
    /// `enable.auto.commit` and `enable.auto.offset.store` cannot be overridden.
    #[serde(default)]
    pub librdkafka_options: BTreeMap<String, String>,
}

impl KafkaConfig {
    /// The format hint for messages of `topic`, `None` meaning "detect".
    pub fn format_for(&self, topic: &str) -> Option<String> {
        let f = self.topic_formats.get(topic).unwrap_or(&self.format);
        (f != "auto" && !f.is_empty()).then(|| f.clone())
    }
}

/// Where `follow` mode starts in a file it has no saved position for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum StartAt {
    /// Read the file from its first byte.
    #[default]
    Beginning,
    /// Only read what is appended from now on.
    End,
}

fn default_poll_interval_ms() -> u64 {
    250
}
fn default_max_batch_bytes() -> usize {
    1 << 20
}
/// Default `max_record_bytes` of the `file` source: 64 MiB (a JSON line may be a whole
/// single-line CloudTrail document; the normalizer bounds each record inside it again).
pub const DEFAULT_MAX_RECORD_BYTES: u64 = 64 << 20;
fn default_max_record_bytes() -> u64 {
    DEFAULT_MAX_RECORD_BYTES
}
/// Default `quiet_period_ms` of the `file` source: 2 s.
pub const DEFAULT_QUIET_PERIOD_MS: u64 = 2_000;
fn default_quiet_period_ms() -> u64 {
    DEFAULT_QUIET_PERIOD_MS
}

/// `type: file`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Files, directories (read recursively), globs (`logs/**/*.json*`) or `-` for stdin.
    pub paths: Vec<String>,
    /// Keep reading files as they grow (appended lines), across rotation and truncation, and
    /// pick up new files matching the globs. A last line without a newline is read once the
    /// file has been quiet for `quiet_period_ms` and the line is a complete JSON value (Azure
    /// writes `PT1H.json` that way), or when the source is drained at shutdown.
    #[serde(default)]
    pub follow: bool,
    /// Directory where `follow` mode persists file positions; without it positions live only
    /// in memory (a restart reads files again per `start_at`).
    #[serde(default)]
    pub state_dir: Option<PathBuf>,
    /// Where `follow` starts in a file it has no saved position for.
    #[serde(default)]
    pub start_at: StartAt,
    /// How often followed files are checked for growth, in milliseconds.
    #[serde(default = "default_poll_interval_ms")]
    pub poll_interval_ms: u64,
    /// Largest batch of lines handed out at once, in bytes (a JSON-lines file or stdin is
    /// read in batches that end on a line, in every mode; one line longer than this is a
    /// batch of its own). 1 KiB..=256 MiB, at most `max_record_bytes`; default 1 MiB.
    #[serde(default = "default_max_batch_bytes")]
    pub max_batch_bytes: usize,
    /// A line longer than this, in bytes, is not read into memory: it is skipped, its size
    /// and SHA-256 computed on the way, and handed out as a dead letter
    /// (`record_too_large`, location `PATH:OFFSET`); the lines after it are read as usual.
    /// 1 KiB..=1 GiB; default 64 MiB.
    #[serde(default = "default_max_record_bytes")]
    pub max_record_bytes: u64,
    /// A file that is not JSON lines — a pretty-printed document such as a CloudTrail
    /// `{"Records":[...]}` file or a JSON array, told apart by its first line not being a
    /// complete JSON value — or a compressed file (`.gz`, `.zip`, or gzip/zip content) is
    /// handed over whole, as it must be decoded whole; larger than this, in bytes, it is set
    /// aside unread as a dead letter (`object_too_large`). Also bounds a document read from
    /// stdin. 1 byte..=1 GiB; default 64 MiB.
    #[serde(default = "default_max_object_bytes")]
    pub max_object_bytes: u64,
    /// `follow` mode: how long, in milliseconds, a file must stop growing before a last
    /// line without a newline is read (when it is a complete JSON value) and before a whole
    /// document or compressed file is read. Also how long stdin must be silent for the same.
    /// 0..=3,600,000; default 2,000.
    #[serde(default = "default_quiet_period_ms")]
    pub quiet_period_ms: u64,
    /// Format hint handed to the normalizer (`auto` or absent: detect).
    #[serde(default)]
    pub format: Option<String>,
}

/// A configuration that cannot work, found before any I/O.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {source_type} source: {field}: {problem}")]
pub struct ConfigError {
    /// The source type (`aws_s3_sqs`, `kafka`, ...).
    pub source_type: &'static str,
    /// The offending key.
    pub field: &'static str,
    /// What is wrong and how to fix it.
    pub problem: String,
}

fn err(source_type: &'static str, field: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError {
        source_type,
        field,
        problem: problem.into(),
    }
}

/// Parse `YYYY-MM-DD` into days since 1970-01-01.
pub fn parse_date(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() != 10 || b.get(4) != Some(&b'-') || b.get(7) != Some(&b'-') {
        return None;
    }
    let y: i64 = s.get(0..4)?.parse().ok()?;
    let m: u32 = s.get(5..7)?.parse().ok()?;
    let d: u32 = s.get(8..10)?.parse().ok()?;
    if !(1..=12).contains(&m) || d == 0 || d > days_in_month(y, m) {
        return None;
    }
    Some(days_from_civil(y, m, d))
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since the epoch of a civil date (Howard Hinnant's algorithm).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date of a day number.
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

impl SourceConfig {
    /// The `type` key of this source.
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::AwsS3Sqs(_) => "aws_s3_sqs",
            Self::AwsS3(_) => "aws_s3",
            Self::Kafka(_) => "kafka",
            Self::File(_) => "file",
        }
    }

    /// Check the configuration without any I/O.
    pub fn validate(&self) -> Result<(), ConfigError> {
        match self {
            Self::AwsS3Sqs(c) => validate_sqs(c),
            Self::AwsS3(c) => validate_s3(c),
            Self::Kafka(c) => validate_kafka(c),
            Self::File(c) => validate_file(c),
        }
    }
}

fn validate_sqs(c: &AwsS3SqsConfig) -> Result<(), ConfigError> {
    const T: &str = "aws_s3_sqs";
    if !(c.queue_url.starts_with("https://") || c.queue_url.starts_with("http://")) {
        return Err(err(
            T,
            "queue_url",
            format!(
                "{:?} is not a queue URL (https://sqs.REGION.amazonaws.com/ACCOUNT/NAME)",
                c.queue_url
            ),
        ));
    }
    if c.wait_time_secs > 20 {
        return Err(err(T, "wait_time_secs", "must be 0..=20 (SQS limit)"));
    }
    if !(1..=43_200).contains(&c.visibility_timeout_secs) {
        return Err(err(
            T,
            "visibility_timeout_secs",
            "must be 1..=43200 (SQS limit)",
        ));
    }
    if !(1..=10).contains(&c.max_messages) {
        return Err(err(T, "max_messages", "must be 1..=10 (SQS limit)"));
    }
    if let Some(e) = &c.endpoint_url {
        if !(e.starts_with("http://") || e.starts_with("https://")) {
            return Err(err(
                T,
                "endpoint_url",
                "must start with http:// or https://",
            ));
        }
    }
    if !(1..=3600).contains(&c.max_backoff_secs) {
        return Err(err(T, "max_backoff_secs", "must be 1..=3600"));
    }
    if let Some(b) = c
        .buckets
        .iter()
        .find(|b| !crate::s3event::is_bucket_name(b))
    {
        return Err(err(
            T,
            "buckets",
            format!("{b:?} is not an S3 bucket name (a name, without s3:// or a key)"),
        ));
    }
    check_object_bytes(T, c.max_object_bytes)
}

fn validate_s3(c: &AwsS3Config) -> Result<(), ConfigError> {
    const T: &str = "aws_s3";
    if c.bucket.is_empty() || c.bucket.contains('/') {
        return Err(err(T, "bucket", "a bucket name, without s3:// or a key"));
    }
    let start = parse_date(&c.start_date)
        .ok_or_else(|| err(T, "start_date", "must be a date YYYY-MM-DD"))?;
    let end =
        parse_date(&c.end_date).ok_or_else(|| err(T, "end_date", "must be a date YYYY-MM-DD"))?;
    if end < start {
        return Err(err(T, "end_date", "is before start_date"));
    }
    if end - start > 3660 {
        return Err(err(T, "end_date", "range longer than ten years"));
    }
    if let Some(a) = c
        .accounts
        .iter()
        .find(|a| a.len() != 12 || !a.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(err(
            T,
            "accounts",
            format!("{a:?} is not a 12-digit account id"),
        ));
    }
    if let Some(o) = c.organization_ids.iter().find(|o| !o.starts_with("o-")) {
        return Err(err(
            T,
            "organization_ids",
            format!("{o:?} is not an organization id (o-...)"),
        ));
    }
    if let Some(r) = c.regions.iter().find(|r| r.is_empty() || r.contains('/')) {
        return Err(err(T, "regions", format!("{r:?} is not a region")));
    }
    check_object_bytes(T, c.max_object_bytes)
}

fn validate_kafka(c: &KafkaConfig) -> Result<(), ConfigError> {
    const T: &str = "kafka";
    if c.brokers.is_empty() || c.brokers.iter().any(|b| b.is_empty()) {
        return Err(err(T, "brokers", "list at least one host:port"));
    }
    if c.topics.is_empty() || c.topics.iter().any(|t| t.is_empty()) {
        return Err(err(T, "topics", "list at least one topic"));
    }
    if c.group_id.is_empty() {
        return Err(err(T, "group_id", "must not be empty"));
    }
    if let Some(t) = c.topic_formats.keys().find(|t| !c.topics.contains(t)) {
        return Err(err(
            T,
            "topic_formats",
            format!("topic {t:?} is not in topics"),
        ));
    }
    if c.event_hubs_connection_string.is_some()
        && (c.sasl_username.is_some() || c.sasl_password.is_some())
    {
        return Err(err(
            T,
            "event_hubs_connection_string",
            "sets the SASL user and password itself; remove sasl_username/sasl_password",
        ));
    }
    if c.sasl_username.is_some() != c.sasl_password.is_some() {
        return Err(err(
            T,
            "sasl_password",
            "sasl_username and sasl_password go together",
        ));
    }
    let uses_sasl = matches!(
        c.security_protocol,
        Some(SecurityProtocol::SaslSsl | SecurityProtocol::SaslPlaintext)
    );
    if uses_sasl
        && c.sasl_username.is_none()
        && c.event_hubs_connection_string.is_none()
        && c.sasl_mechanism != Some(SaslMechanism::OauthBearer)
    {
        return Err(err(
            T,
            "sasl_username",
            "a SASL security_protocol needs sasl_username/sasl_password or a connection string",
        ));
    }
    for k in c.librdkafka_options.keys() {
        if k == "enable.auto.commit" || k == "enable.auto.offset.store" || k == "group.id" {
            return Err(err(
                T,
                "librdkafka_options",
                format!("{k} is managed by kmswatch (offsets are committed only after delivery)"),
            ));
        }
    }
    if c.max_unacked_messages == 0 {
        return Err(err(T, "max_unacked_messages", "must be at least 1"));
    }
    if c.commit_interval_ms == 0 {
        return Err(err(T, "commit_interval_ms", "must be at least 1"));
    }
    Ok(())
}

fn validate_file(c: &FileConfig) -> Result<(), ConfigError> {
    const T: &str = "file";
    if c.paths.is_empty() || c.paths.iter().any(|p| p.is_empty()) {
        return Err(err(
            T,
            "paths",
            "list at least one file, directory, glob or -",
        ));
    }
    for p in &c.paths {
        if crate::file::is_glob(p) {
            if let Err(e) = globset::Glob::new(p) {
                return Err(err(T, "paths", format!("bad glob {p:?}: {e}")));
            }
        }
    }
    if c.follow && c.paths.iter().any(|p| p == "-") && c.paths.len() > 1 {
        return Err(err(
            T,
            "paths",
            "stdin (-) cannot be mixed with files in follow mode",
        ));
    }
    if !(1..=3_600_000).contains(&c.poll_interval_ms) {
        return Err(err(T, "poll_interval_ms", "must be 1..=3600000 (one hour)"));
    }
    if c.quiet_period_ms > 3_600_000 {
        return Err(err(T, "quiet_period_ms", "must be 0..=3600000 (one hour)"));
    }
    if !(1024..=256 << 20).contains(&c.max_batch_bytes) {
        return Err(err(
            T,
            "max_batch_bytes",
            "must be 1024..=268435456 (1 KiB to 256 MiB)",
        ));
    }
    if !(1024..=MAX_MAX_OBJECT_BYTES).contains(&c.max_record_bytes) {
        return Err(err(
            T,
            "max_record_bytes",
            "must be 1024..=1073741824 (1 KiB to 1 GiB)",
        ));
    }
    if (c.max_batch_bytes as u64) > c.max_record_bytes {
        return Err(err(
            T,
            "max_batch_bytes",
            format!(
                "{} is larger than max_record_bytes ({}): a batch would hold lines over the record limit",
                c.max_batch_bytes, c.max_record_bytes
            ),
        ));
    }
    check_object_bytes(T, c.max_object_bytes)
}

fn check_object_bytes(source_type: &'static str, v: u64) -> Result<(), ConfigError> {
    if !(1..=MAX_MAX_OBJECT_BYTES).contains(&v) {
        return Err(err(
            source_type,
            "max_object_bytes",
            format!("{v} must be 1..=1073741824 (1 GiB: an object is held in memory whole)"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<SourceConfig, serde_json::Error> {
        serde_json::from_str(s)
    }

    #[test]
    fn issue_keys_keep_their_meaning() {
        let c = parse(r#"{"type":"aws_s3_sqs","queue_url":"https://sqs.eu-west-1.amazonaws.com/111122223333/ct","region":"eu-west-1"}"#).expect("sqs");
        let SourceConfig::AwsS3Sqs(s) = &c else {
            panic!("wrong variant {c:?}")
        };
        assert_eq!(s.region.as_deref(), Some("eu-west-1"));
        assert_eq!(s.wait_time_secs, 20);
        assert_eq!(s.on_bad_object, OnBadObject::Delete);
        c.validate().expect("valid");

        let c = parse(r#"{"type":"kafka","brokers":["b:9093"],"topics":["kv"],"group_id":"g","format":"auto"}"#).expect("kafka");
        let SourceConfig::Kafka(k) = &c else {
            panic!("wrong variant {c:?}")
        };
        assert_eq!(k.format_for("kv"), None);
        c.validate().expect("valid");

        let c =
            parse(r#"{"type":"file","paths":["logs/**/*.json*"],"follow":true}"#).expect("file");
        let SourceConfig::File(f) = &c else {
            panic!("wrong variant {c:?}")
        };
        assert!(f.follow);
        assert_eq!(f.max_record_bytes, DEFAULT_MAX_RECORD_BYTES);
        assert_eq!(f.max_object_bytes, DEFAULT_MAX_OBJECT_BYTES);
        assert_eq!(f.quiet_period_ms, DEFAULT_QUIET_PERIOD_MS);
        c.validate().expect("valid");
    }

    #[test]
    fn unknown_keys_are_refused() {
        let e = parse(r#"{"type":"file","paths":["a"],"folow":true}"#).expect_err("typo");
        assert!(e.to_string().contains("folow"), "{e}");
        assert!(parse(r#"{"type":"ftp","paths":["a"]}"#).is_err());
    }

    #[test]
    fn secrets_do_not_print() {
        let c = parse(r#"{"type":"kafka","brokers":["ns.servicebus.windows.net:9093"],"topics":["insights-logs-auditevent"],"group_id":"$Default","event_hubs_connection_string":"Endpoint=sb://ns/;SharedAccessKey=TOPSECRET"}"#).expect("kafka");
        let shown = format!("{c:?}");
        assert!(!shown.contains("TOPSECRET"), "{shown}");
        assert!(shown.contains("redacted"));
        c.validate().expect("valid");
    }

    #[test]
    fn validation_catches_mistakes() {
        let bad = [
            (
                r#"{"type":"aws_s3_sqs","queue_url":"my-queue"}"#,
                "queue_url",
            ),
            (
                r#"{"type":"aws_s3_sqs","queue_url":"https://q","wait_time_secs":30}"#,
                "wait_time_secs",
            ),
            (
                r#"{"type":"kafka","brokers":[],"topics":["t"],"group_id":"g"}"#,
                "brokers",
            ),
            (
                r#"{"type":"kafka","brokers":["b"],"topics":["t"],"group_id":"g","librdkafka_options":{"enable.auto.commit":"true"}}"#,
                "librdkafka_options",
            ),
            (
                r#"{"type":"kafka","brokers":["b"],"topics":["t"],"group_id":"g","security_protocol":"sasl_ssl"}"#,
                "sasl_username",
            ),
            (
                r#"{"type":"aws_s3","bucket":"b","start_date":"2024-02-30","end_date":"2024-03-01"}"#,
                "start_date",
            ),
            (
                r#"{"type":"aws_s3","bucket":"b","start_date":"2024-03-02","end_date":"2024-03-01"}"#,
                "end_date",
            ),
            (
                r#"{"type":"aws_s3","bucket":"b","start_date":"2024-03-01","end_date":"2024-03-01","accounts":["1234"]}"#,
                "accounts",
            ),
            (r#"{"type":"file","paths":["logs/[a.json"]}"#, "paths"),
            (
                r#"{"type":"file","paths":["a"],"max_record_bytes":512}"#,
                "max_record_bytes",
            ),
            (
                r#"{"type":"file","paths":["a"],"max_batch_bytes":4096,"max_record_bytes":2048}"#,
                "max_batch_bytes",
            ),
            (
                r#"{"type":"file","paths":["a"],"max_object_bytes":0}"#,
                "max_object_bytes",
            ),
            (
                r#"{"type":"file","paths":["a"],"quiet_period_ms":3600001}"#,
                "quiet_period_ms",
            ),
            (
                r#"{"type":"aws_s3_sqs","queue_url":"https://q","max_object_bytes":2147483648}"#,
                "max_object_bytes",
            ),
            (
                r#"{"type":"aws_s3_sqs","queue_url":"https://q","buckets":["s3://trail"]}"#,
                "buckets",
            ),
            (
                r#"{"type":"aws_s3","bucket":"b","start_date":"2024-03-01","end_date":"2024-03-01","max_object_bytes":0}"#,
                "max_object_bytes",
            ),
        ];
        for (json, field) in bad {
            let c = parse(json).expect(json);
            let e = c.validate().expect_err(json);
            assert_eq!(e.field, field, "{json}: {e}");
        }
    }

    #[test]
    fn dates_round_trip() {
        assert_eq!(parse_date("1970-01-01"), Some(0));
        assert_eq!(parse_date("2024-02-29"), Some(19_782));
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
        assert_eq!(parse_date("2023-02-29"), None);
        assert_eq!(parse_date("2023-2-01"), None);
    }
}
