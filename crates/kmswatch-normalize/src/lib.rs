//! # kmswatch-normalize
//!
//! Second stage of the data path: provider log formats in, normalized [`Event`]s out.
//! Pure and synchronous — bytes in, events out, no network, no runtime — so every source
//! (files, S3 objects, Kafka messages) hands its bytes here and gets the same result.
//!
//! ```text
//!  bytes ──> container (gzip, zip) ──> documents (one JSON value, JSON lines, arrays)
//!        ──> envelopes (Records, records, EventBridge, CloudWatch Logs, LookupEvents,
//!            Pub/Sub push, Activity Log REST, labelled test wrappers)
//!        ──> one provider record ──> aws | azure | gcp normalizer ──> Event | skip | reject
//! ```
//!
//! Transport-independent: [`Normalizer::normalize_bytes`] takes a buffer and an origin name
//! (a path, `s3://bucket/key`, `topic/partition/offset`) that every rejection carries.
//! Bad input never stops the stream: a record that cannot be read is reported as an
//! [`Item::Rejected`] with its location and bytes, and the records around it go on.
//!
//! Hostile input is bounded per object ([`Options`]): everything decoded from one input
//! (gzip, zip, base64 payloads) shares one hard budget (`max_decompressed_bytes`), containers
//! nest at most `max_container_depth` deep, envelopes [`MAX_ENVELOPE_DEPTH`], JSON
//! [`scan::MAX_DEPTH`], and a record larger than `max_record_bytes` is rejected without being
//! copied ([`RecordError::elided`]). Past a bound: one rejection (`budget_exceeded`,
//! `too_deep`, `too_large`), never a panic or a stack overflow.

pub mod aws;
pub mod azure;
mod document;
pub mod gcp;
pub mod options;
pub mod scan;
pub mod time;

pub use document::{is_log_name, Item, Location, Summary, MAX_ENVELOPE_DEPTH};
pub use kmswatch_model as model;
use kmswatch_model::{Event, Raw};
pub use options::{Format, Options, OptionsError};

use std::borrow::Cow;

/// The normalizer: options compiled once, then shared by every document and thread.
#[derive(Debug, Clone)]
pub struct Normalizer {
    opts: Options,
    human_roles: globset::GlobSet,
}

impl Normalizer {
    /// Compile the options (glob patterns) once.
    pub fn new(opts: Options) -> Result<Normalizer, OptionsError> {
        let human_roles = opts.compile_human_roles()?;
        Ok(Normalizer { opts, human_roles })
    }

    /// The options this normalizer was built with.
    pub fn options(&self) -> &Options {
        &self.opts
    }

    /// True when an AWS role (name or ARN) matches the configured human role patterns.
    pub fn is_human_role(&self, role: &str) -> bool {
        self.human_roles.is_match(role)
    }

    /// Normalize one buffer (a file, an S3 object, a Kafka message). `origin` names where it
    /// came from and is carried by every [`Location`]. Every record becomes exactly one
    /// [`Item`] passed to `out`, in order.
    pub fn normalize_bytes(&self, bytes: &[u8], origin: &str, out: &mut dyn FnMut(Item)) {
        document::normalize(self, bytes, origin, out)
    }

    /// Convenience for tests and small inputs: every item of a buffer, collected.
    pub fn normalize_to_vec(&self, bytes: &[u8], origin: &str) -> Vec<Item> {
        let mut v = Vec::new();
        self.normalize_bytes(bytes, origin, &mut |i| v.push(i));
        v
    }
}

/// One provider record, as the providers see it: its bytes (exactly one JSON object) and
/// its top-level fields as located by the structural scanner, so a provider can decide
/// "KMS or not" from a field or two without deserializing the record.
#[derive(Debug, Clone, Copy)]
pub struct Record<'a> {
    /// The whole record, one JSON object. Becomes `raw` of the event.
    pub bytes: &'a [u8],
    /// Top-level `(key, value)` pairs; keys as written between the quotes.
    pub fields: &'a [scan::Field<'a>],
    /// The scanner found the record strict JSON while delimiting it
    /// ([`scan::object_fields_strict`]): [`Record::to_raw`] then only checks UTF-8 instead
    /// of parsing the record again. `false` is always safe (the record is then validated by
    /// the parser, whose message a rejection carries).
    pub strict: bool,
    /// The fields of the record's `protoPayload` object (a GCP `LogEntry`), read in the same
    /// pass as `fields`; empty when there is none (or when not read: providers fall back to
    /// scanning the field themselves).
    pub nested: &'a [scan::Field<'a>],
    /// The record's text once a provider has checked it as UTF-8 ([`Record::checked`]):
    /// strings are then cut from it without a second check. `None` is always safe.
    pub checked: Option<&'a str>,
}

impl<'a> Record<'a> {
    /// Raw bytes of a top-level field's value.
    pub fn field(&self, key: &str) -> Option<&'a [u8]> {
        let key = key.as_bytes();
        // Length and first byte before the byte comparison: most keys differ there, and a
        // provider looks up several spellings of each field.
        self.fields
            .iter()
            .find(|(k, _)| k.len() == key.len() && k.first() == key.first() && *k == key)
            .map(|(_, v)| *v)
    }

    /// The record with its text checked as UTF-8 once ([`Record::text`]), so that the string
    /// fields read afterwards and [`Record::to_raw`] do not check it again.
    pub fn checked(self) -> Result<Record<'a>, RecordError> {
        Ok(Record {
            checked: Some(self.text()?),
            ..self
        })
    }

    /// A top-level string value's text when it has no escapes (see [`scan::plain_str`]),
    /// cut from the checked text when there is one.
    pub fn plain_str(&self, v: &'a [u8]) -> Option<&'a str> {
        match self.checked {
            Some(text) => scan::plain_str_in(text, v),
            None => scan::plain_str(v),
        }
    }

    /// A top-level string field, decoded (borrowed when it has no escapes).
    pub fn str_field(&self, key: &str) -> Option<Cow<'a, str>> {
        let v = self.field(key)?;
        if let Some(s) = self.plain_str(v) {
            return Some(Cow::Borrowed(s));
        }
        serde_json::from_slice::<String>(v).ok().map(Cow::Owned)
    }

    /// The record as an owned raw JSON value (for `Event::raw`), validated. Content is kept
    /// byte for byte; only line breaks and indentation between tokens are removed when the
    /// record was pretty-printed, so that one event stays one line of JSON.
    pub fn to_raw(&self) -> Result<Raw, RecordError> {
        self.to_raw_from(self.text()?)
    }

    /// The record's bytes as text (checked UTF-8).
    pub fn text(&self) -> Result<&'a str, RecordError> {
        if let Some(text) = self.checked {
            return Ok(text);
        }
        std::str::from_utf8(self.bytes).map_err(RecordError::invalid_utf8)
    }

    /// [`Record::to_raw`] from the record's text (from [`Record::text`]), for a provider that
    /// also reads the text itself: UTF-8 is checked once.
    pub fn to_raw_from(&self, text: &str) -> Result<Raw, RecordError> {
        // Compacting drops whitespace between tokens only (ASCII), so the text stays UTF-8.
        let s: Box<str> = match scan::compact(text.as_bytes()) {
            std::borrow::Cow::Borrowed(_) => text.into(),
            std::borrow::Cow::Owned(v) => String::from_utf8(v)
                .map_err(|e| RecordError::invalid_utf8(e.utf8_error()))?
                .into_boxed_str(),
        };
        if self.strict {
            return Ok(Raw::from_checked(s));
        }
        // Not strict per the scan: the parser says why, with `Value`'s rules (what provider
        // rules parse `raw` with), so a record kept is one they can read.
        let v = serde_json::from_str::<serde_json::Value>(&s).map_err(RecordError::from_json)?;
        // The structural scan caps each field's value; the record counts as a level too.
        let depth = value_depth(&v);
        if depth > scan::MAX_DEPTH {
            return Err(RecordError::new(
                RejectReason::TooDeep,
                format!(
                    "JSON nested {depth} levels deep (at most {})",
                    scan::MAX_DEPTH
                ),
            ));
        }
        Raw::from_string(s.into()).map_err(RecordError::from_json)
    }
}

/// The nesting depth of a parsed value (a scalar is 0, `[]` is 1); bounded by serde_json's
/// recursion limit, so the recursion is too.
fn value_depth(v: &serde_json::Value) -> usize {
    match v {
        serde_json::Value::Array(a) => 1 + a.iter().map(value_depth).max().unwrap_or(0),
        serde_json::Value::Object(o) => 1 + o.values().map(value_depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// What a provider makes of one record.
#[derive(Debug)]
pub enum Outcome {
    /// A normalized event. `related` is true for events outside the key-management service
    /// that are kept because they bear on it (a CloudTrail trail stopped, a GCP log sink
    /// changed, an S3 copy under a KMS key); false for the key-management service's own
    /// events (including Key Vault diagnostic settings and GCP IAM on keys).
    Event {
        /// The event.
        event: Box<Event>,
        /// Kept as related rather than as a key-management event.
        related: bool,
    },
    /// Recognised and deliberately not turned into an event.
    Skip(SkipReason),
}

/// Why a recognised record produced no event. Counted, never an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SkipReason {
    /// An audit record of another service, not bearing on key management.
    NotKms,
    /// A CloudTrail digest file.
    Digest,
    /// A CloudWatch Logs `CONTROL_MESSAGE`.
    ControlMessage,
    /// A known envelope carrying something that is not an audit record (GuardDuty finding,
    /// EC2 state change, Security Command Center notification, ...).
    NotAuditRecord,
    /// A file that is not a log (README, licence, YAML, CSV) met while walking a directory.
    NotALogFile,
    /// An empty document or line-less file.
    Empty,
    /// Valid JSON with none of the marker fields of any supported format (a Kubernetes audit
    /// event, an Okta log line). Skipped and counted when the format is detected; with a
    /// forced `--format` such a record is rejected instead.
    Unrecognized,
}

impl SkipReason {
    /// Stable snake_case name, used in summaries and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::NotKms => "not_kms",
            SkipReason::Digest => "digest",
            SkipReason::ControlMessage => "control_message",
            SkipReason::NotAuditRecord => "not_audit_record",
            SkipReason::NotALogFile => "not_a_log_file",
            SkipReason::Empty => "empty",
            SkipReason::Unrecognized => "unrecognized",
        }
    }
}

/// Why a record was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RejectReason {
    /// Not valid JSON.
    MalformedJson,
    /// The input ended inside a record (truncated line, file or gzip stream).
    Truncated,
    /// Bytes that are not UTF-8.
    InvalidUtf8,
    /// A field the schema needs is missing (time, operation, ...).
    MissingField,
    /// A field has a value of the wrong type or form (a time that is not a time, ...).
    BadValue,
    /// A record larger than `max_record_bytes`, or an object with more than
    /// [`scan::MAX_FIELDS`] top-level fields. The item carries a short prefix of it and its
    /// size and SHA-256 ([`RecordError::elided`]), not a copy.
    TooLarge,
    /// Nested deeper than a cap: containers (`max_container_depth`: a zip in a zip in a zip
    /// ..., base64 payloads inside them), envelopes ([`MAX_ENVELOPE_DEPTH`]) or JSON
    /// ([`scan::MAX_DEPTH`]).
    TooDeep,
    /// Decoding the object would produce more than `max_decompressed_bytes` (gzip members,
    /// zip entries and base64 payloads together). What was decoded before is processed; this
    /// one rejection stands for the rest of the object, which is not read.
    BudgetExceeded,
    /// base64 / gzip / zip inside an envelope or container that does not decode.
    BadEncoding,
    /// Valid JSON that matches no supported log format.
    UnknownFormat,
}

impl RejectReason {
    /// Stable snake_case name, used in summaries and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::MalformedJson => "malformed_json",
            RejectReason::Truncated => "truncated",
            RejectReason::InvalidUtf8 => "invalid_utf8",
            RejectReason::MissingField => "missing_field",
            RejectReason::BadValue => "bad_value",
            RejectReason::TooLarge => "too_large",
            RejectReason::TooDeep => "too_deep",
            RejectReason::BudgetExceeded => "budget_exceeded",
            RejectReason::BadEncoding => "bad_encoding",
            RejectReason::UnknownFormat => "unknown_format",
        }
    }
}

/// A record a provider (or the document reader) could not normalize.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {detail}", reason.as_str())]
pub struct RecordError {
    /// Classified reason.
    pub reason: RejectReason,
    /// What exactly was wrong, for the operator (`missing eventTime and @timestamp`).
    pub detail: String,
    /// Set when the rejected item's `bytes` are *not* all of what was rejected: it was larger
    /// than `max_record_bytes`, so the item holds only its first [`ELIDED_PREFIX_BYTES`]
    /// bytes, and this gives the whole span's size and SHA-256. The bytes themselves stay
    /// where [`Location`] points (the object, file or message they were read from). `None`
    /// means `bytes` is the rejected span exactly, byte for byte.
    pub elided: Option<Elided>,
}

/// What a rejected item stands for when its bytes were too large to copy (see
/// [`RecordError::elided`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Elided {
    /// Size in bytes of the whole rejected span.
    pub size_bytes: u64,
    /// SHA-256 of the whole rejected span.
    pub sha256: [u8; 32],
}

impl Elided {
    /// Size and SHA-256 of `bytes`.
    pub fn of(bytes: &[u8]) -> Elided {
        use sha2::Digest;
        Elided {
            size_bytes: bytes.len() as u64,
            sha256: sha2::Sha256::digest(bytes).into(),
        }
    }

    /// The SHA-256 in lower-case hex (the form dead-letter entries use).
    pub fn sha256_hex(&self) -> String {
        use std::fmt::Write;
        self.sha256
            .iter()
            .fold(String::with_capacity(64), |mut s, b| {
                let _ = write!(s, "{b:02x}");
                s
            })
    }
}

/// How many bytes of a rejected span larger than `max_record_bytes` an item keeps (its
/// start, for an operator to recognise it; see [`RecordError::elided`]).
pub const ELIDED_PREFIX_BYTES: usize = 1024;

impl RecordError {
    /// A new error.
    pub fn new(reason: RejectReason, detail: impl Into<String>) -> RecordError {
        RecordError {
            reason,
            detail: detail.into(),
            elided: None,
        }
    }

    /// Bytes that are not UTF-8, with where they stop being.
    pub fn invalid_utf8(e: std::str::Utf8Error) -> RecordError {
        RecordError::new(
            RejectReason::InvalidUtf8,
            format!("invalid UTF-8 at byte {}", e.valid_up_to()),
        )
    }

    /// Classify a serde_json error: EOF → truncated, data errors (missing field, wrong type)
    /// → missing field / bad value, the rest → malformed JSON.
    pub fn from_json(e: serde_json::Error) -> RecordError {
        use serde_json::error::Category;
        let msg = e.to_string();
        let reason = match e.classify() {
            Category::Eof => RejectReason::Truncated,
            Category::Data if msg.starts_with("missing field") => RejectReason::MissingField,
            Category::Data => RejectReason::BadValue,
            Category::Syntax if msg.contains("UTF-8") || msg.contains("unicode") => {
                RejectReason::InvalidUtf8
            }
            Category::Syntax if msg.starts_with("recursion limit exceeded") => {
                RejectReason::TooDeep
            }
            Category::Syntax | Category::Io => RejectReason::MalformedJson,
        };
        RecordError::new(reason, msg)
    }

    /// Shorthand for a missing required field.
    pub fn missing(what: &str) -> RecordError {
        RecordError::new(RejectReason::MissingField, format!("missing {what}"))
    }
}
