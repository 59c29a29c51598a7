//! GCP Cloud Audit Logs `LogEntry` records for Cloud KMS, and the logging changes that can
//! blind it.
//!
//! One Cloud Logging [`LogEntry`](https://cloud.google.com/logging/docs/reference/v2/rest/v2/LogEntry)
//! with an [`AuditLog`](https://cloud.google.com/logging/docs/reference/audit/auditlog/rest/Shared.Types/AuditLog)
//! `protoPayload` comes in (the document reader has removed arrays, JSON lines, Pub/Sub push
//! envelopes and test wrappers). What comes out:
//!
//! * `protoPayload.serviceName == "cloudkms.googleapis.com"` (Admin Activity and Data Access):
//!   a key-management event (`related: false`), operation from [`mapping`].
//! * Related events (`related: true`, `kms.operation` = `LoggingChange`), kept because they can
//!   blind KMS logging:
//!   * `SetIamPolicy` on a project, folder or organization that changes its audit configs
//!     (`serviceData.policyDelta.auditConfigDeltas` when the entry has a policy delta,
//!     otherwise a request that writes `policy.auditConfigs` or names `auditConfigs` in its
//!     update mask) — e.g. turning off Data Access logs for `cloudkms.googleapis.com`;
//!   * Cloud Logging configuration: `google.logging.v2.ConfigServiceV2.CreateSink`,
//!     `UpdateSink`, `DeleteSink`, `CreateExclusion`, `UpdateExclusion`, `DeleteExclusion`,
//!     `UpdateSettings`, `UpdateCmekSettings` and `DeleteBucket`. The sink, exclusion or
//!     bucket name goes to `kms.object_uid`.
//! * Any other `LogEntry`: [`SkipReason::NotKms`]; a record that is not a `LogEntry` at all
//!   (a Security Command Center notification, ...): [`SkipReason::NotAuditRecord`].
//!
//! The decision is taken before deserializing: a substring search for
//! `cloudkms.googleapis.com`, `ConfigServiceV2` or `auditConfig` in the record's bytes, then a
//! structural scan of `protoPayload` for `serviceName` / `methodName`. Only kept entries are
//! deserialized, into borrowed structs; `request`, `response` and `serviceData` are read
//! lazily from raw JSON and only for the fields needed.
//!
//! Field choices: `time` from `timestamp`, else `receiveTimestamp`. `metadata.uid` is
//! `insertId`; an entry without one (hand-written test events) gets `gcp-fnv-<hash>`, a hash
//! of its bytes, so a replay keeps the id. `cloud.account.uid` is `resource.labels.project_id`,
//! else the project of `logName`, else of the resource name; `cloud.region` is
//! `resource.labels.location`, else the resource name's location, else
//! `resourceLocation.currentLocations[0]`. Key identity is in [`identity`], principals in
//! [`classify`]. `kms.cross_account` is true only when the caller's project is known (a
//! service account's or agent's) and differs from the key's project; a project number is
//! only compared with a project number and an id with an id, anything else is unknown and
//! reads as false. `kms.pending_window_days` of `DestroyCryptoKeyVersion` comes from the
//! response's `destroyTime` (rounded to days after the event time) or a
//! `destroyScheduledDuration` in the response or request; absent otherwise.
//!
//! `kms.grantees` and `kms.policy` of a Cloud KMS `SetIamPolicy` (members added, public
//! members, service accounts of other projects) are in [`policy`].
//!
//! Panther's test events spell some keys in lower case (`protopayload`, `insertid`,
//! `logname`, `receivetimestamp`, `callerIP`); those spellings are read too.

pub mod classify;
pub mod identity;
pub mod mapping;
pub mod policy;

use crate::{Normalizer, Outcome, Record, RecordError, RejectReason, SkipReason};
use kmswatch_model::{Account, ActorKind, Event, Key, KmsOperation, Provider, Status, User};
use memchr::memmem::Finder;
use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::sync::LazyLock;

/// The service name of Cloud KMS in audit logs.
pub const KMS_SERVICE: &str = "cloudkms.googleapis.com";

/// Cheap test: is this record a Cloud Logging `LogEntry`? True when it has a `protoPayload`,
/// or a `logName` together with an `insertId`, `resource` or `timestamp`.
pub fn looks_like(rec: &Record<'_>) -> bool {
    let has = |a: &str, b: &str| rec.field(a).is_some() || rec.field(b).is_some();
    has("protoPayload", "protopayload")
        || (has("logName", "logname")
            && (has("insertId", "insertid")
                || rec.field("resource").is_some()
                || rec.field("timestamp").is_some()))
}

/// Normalize one `LogEntry` (the entry itself, envelopes already removed).
pub fn normalize(_n: &Normalizer, rec: &Record<'_>) -> Result<Outcome, RecordError> {
    let Some(pp) = rec
        .field("protoPayload")
        .or_else(|| rec.field("protopayload"))
    else {
        return Ok(Outcome::Skip(if looks_like(rec) {
            SkipReason::NotKms
        } else {
            SkipReason::NotAuditRecord
        }));
    };
    let Some((kind, pp_fields)) = triage(rec.bytes, pp, rec.nested) else {
        return Ok(Outcome::Skip(SkipReason::NotKms));
    };
    // One validating pass over the whole record (JSON syntax and UTF-8), which also yields
    // `raw`; then the fields are read from the structural scan, no second parse.
    let text = rec.text()?;
    let raw = rec.to_raw_from(text)?;
    let entry = LogEntry::from_record(rec, text, pp, &pp_fields)?;
    let audit = &entry.audit;
    if kind == Kind::AuditConfig && !changes_audit_config(audit) {
        return Ok(Outcome::Skip(SkipReason::NotKms));
    }
    let event = build(rec, raw, &entry, audit, kind)?;
    Ok(Outcome::Event {
        event: Box::new(event),
        related: kind != Kind::Kms,
    })
}

/// What a record was kept as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A Cloud KMS entry.
    Kms,
    /// A Cloud Logging configuration change.
    Logging,
    /// A `SetIamPolicy` that may change audit configs (confirmed after parsing).
    AuditConfig,
}

/// Logging configuration methods kept as related (short names under
/// `google.logging.v2.ConfigServiceV2`).
const LOGGING_CHANGES: &[&str] = &[
    "CreateSink",
    "UpdateSink",
    "DeleteSink",
    "CreateExclusion",
    "UpdateExclusion",
    "DeleteExclusion",
    "UpdateSettings",
    "UpdateCmekSettings",
    "DeleteBucket",
];

/// Decide from bytes and the top-level fields of `protoPayload`, without deserializing.
/// Also returns those fields, read again to build the event.
/// `nested`: `protoPayload`'s fields when the record scan read them (else scanned here).
fn triage<'a>(
    bytes: &[u8],
    pp: &'a [u8],
    nested: &'a [crate::scan::Field<'a>],
) -> Option<(Kind, Cow<'a, [crate::scan::Field<'a>]>)> {
    static KMS: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(KMS_SERVICE));
    static LOGGING: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new("ConfigServiceV2"));
    static AUDIT: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new("auditConfig"));
    // The other two searches only when the first misses or the entry is not a KMS one
    // (most kept entries are: one pass over the bytes instead of three).
    let kms_hint = KMS.find(bytes).is_some();
    let other_hints = || (LOGGING.find(bytes).is_some(), AUDIT.find(bytes).is_some());
    let early = if kms_hint { None } else { Some(other_hints()) };
    if early.is_some_and(|(l, a)| !(l || a)) {
        return None;
    }
    if pp.first() != Some(&b'{') {
        return None;
    }
    let within = |f: &crate::scan::Field<'_>| {
        let (p, k) = (pp.as_ptr() as usize, f.0.as_ptr() as usize);
        k > p && k < p + pp.len()
    };
    let fields: Cow<'a, [crate::scan::Field<'a>]> = match nested.first() {
        Some(f) if within(f) => Cow::Borrowed(nested),
        _ => Cow::Owned(crate::scan::object_fields(pp, 0).ok()?.0),
    };
    let get = |key: &str| -> Option<Cow<'_, str>> {
        let v = fields.iter().find(|(k, _)| *k == key.as_bytes())?.1;
        match crate::scan::plain_str(v) {
            Some(s) => Some(Cow::Borrowed(s)),
            None => serde_json::from_slice::<String>(v).ok().map(Cow::Owned),
        }
    };
    let service = get("serviceName");
    let kind = 'kind: {
        if kms_hint && service.as_deref() == Some(KMS_SERVICE) {
            break 'kind Kind::Kms;
        }
        let method = get("methodName")?;
        let (log_hint, iam_hint) = early.unwrap_or_else(other_hints);
        if log_hint && is_logging_change(&method, service.as_deref()) {
            break 'kind Kind::Logging;
        }
        if iam_hint && mapping::short_name(&method) == "SetIamPolicy" {
            break 'kind Kind::AuditConfig;
        }
        return None;
    };
    drop(service);
    Some((kind, fields))
}

fn is_logging_change(method: &str, service: Option<&str>) -> bool {
    let short = match method.strip_prefix("google.logging.v2.ConfigServiceV2.") {
        Some(s) => s,
        None if service == Some("logging.googleapis.com") => method,
        None => return false,
    };
    LOGGING_CHANGES.contains(&short)
}

/// True when a `SetIamPolicy` on a project, folder or organization changes audit configs.
fn changes_audit_config(a: &AuditLog<'_>) -> bool {
    let req: Option<SetIamRequest<'_>> = sub(a.request);
    let target = a
        .resource_name
        .as_deref()
        .or_else(|| req.as_ref().and_then(|r| r.resource.as_deref()));
    let on_container = match target {
        Some(t) => is_container(t),
        None => a.service_name.as_deref() == Some("cloudresourcemanager.googleapis.com"),
    };
    if !on_container {
        return false;
    }
    let delta = [a.service_data, a.metadata]
        .into_iter()
        .filter_map(sub::<AuditData<'_>>)
        .find_map(|d| d.policy_delta);
    if let Some(delta) = delta {
        return delta.audit_config_deltas.is_some_and(non_empty);
    }
    req.is_some_and(|r| {
        r.policy
            .and_then(|p| p.audit_configs)
            .is_some_and(non_empty)
            || r.update_mask
                .is_some_and(|m| m.get().contains("auditConfigs"))
    })
}

/// `projects/P`, `folders/F`, `organizations/O` (optionally with a `//…googleapis.com/` prefix).
fn is_container(name: &str) -> bool {
    let name = match name.strip_prefix("//") {
        Some(rest) => rest.split_once('/').map_or("", |(_, r)| r),
        None => name,
    };
    let mut parts = name.split('/');
    matches!(
        (parts.next(), parts.next(), parts.next()),
        (Some("projects" | "folders" | "organizations"), Some(id), None) if !id.is_empty()
    )
}

/// A JSON value that is present and not `null`, `""`, `[]` or `{}`.
fn non_empty(v: &RawValue) -> bool {
    non_empty_str(v.get())
}

/// [`non_empty`] of a value's JSON text.
fn non_empty_str(s: &str) -> bool {
    let s = s.trim();
    !matches!(s, "null" | "\"\"" | "[]" | "{}")
        && !(s.len() >= 2
            && (s.starts_with('[') || s.starts_with('{'))
            && s[1..s.len() - 1].trim().is_empty())
}

/// Parse an optional raw sub-object leniently: a value of the wrong shape counts as absent.
fn sub<'a, T: Deserialize<'a>>(raw: Option<&'a str>) -> Option<T> {
    raw.and_then(|r| serde_json::from_str(r).ok())
}

fn build(
    rec: &Record<'_>,
    raw: kmswatch_model::Raw,
    entry: &LogEntry<'_>,
    a: &AuditLog<'_>,
    kind: Kind,
) -> Result<Event, RecordError> {
    let time = event_time(entry)?;
    let method = a
        .method_name
        .as_deref()
        .filter(|m| !m.is_empty())
        .ok_or_else(|| RecordError::missing("protoPayload.methodName"))?;
    let labels = entry.resource.map(Labels::read).unwrap_or_default();
    // `request`, `response`, `status` and `authenticationInfo` are read field by field from
    // the validated text (no second parse); a field of another type reads as absent.
    let (request, response) = match kind {
        Kind::Kms => (
            a.request.map(KmsRequest::read).unwrap_or_default(),
            a.response.map(KmsResponse::read).unwrap_or_default(),
        ),
        Kind::Logging | Kind::AuditConfig => (KmsRequest::default(), KmsResponse::default()),
    };

    let operation = match kind {
        Kind::Kms => mapping::operation(method, &request.hints()),
        Kind::Logging | Kind::AuditConfig => KmsOperation::LoggingChange,
    };
    let mut ev = Event::new(time, operation, raw);

    // metadata
    ev.metadata.uid = match entry.insert_id.as_deref() {
        Some(id) if !id.is_empty() => id.to_owned(),
        _ => format!("gcp-fnv-{:016x}", fnv1a(rec.bytes)),
    };
    ev.metadata.product.name = "Cloud Audit Logs".to_owned();
    ev.metadata.product.vendor_name = "Google".to_owned();
    ev.metadata.log_format = "gcp_audit".to_owned();

    // api
    ev.api.operation = method.to_owned();
    ev.api.service.name = a.service_name.as_deref().unwrap_or_default().to_owned();

    // status
    if let Some(code) = a.status.and_then(status_code).filter(|c| *c != 0) {
        ev.status = Status::Failure;
        ev.status_detail = Some(code_name(code));
    }

    // resource names
    let name = if kind == Kind::Kms {
        key_name(a, &request)
    } else {
        None
    };
    let log_name = entry.log_name.as_deref();

    // cloud
    ev.cloud.provider = Provider::Gcp;
    ev.cloud.region = labels
        .location
        .as_deref()
        .or(name.and_then(|n| n.location))
        .map(str::to_owned)
        .or_else(|| {
            sub::<ResourceLocation<'_>>(a.resource_location)
                .and_then(|l| l.current_locations.into_iter().next())
                .map(Cow::into_owned)
        });
    ev.cloud.account.uid = labels
        .project_id
        .as_deref()
        .or_else(|| log_name.and_then(identity::project_of_log_name))
        .or(name.and_then(|n| n.project))
        .map(str::to_owned);

    // actor
    if let Some(m) = a.request_metadata {
        // Read field by field from the validated text (a field of another type reads as
        // absent); `callerIP` is Panther's spelling.
        let [ip, ip_upper, ua] = crate::scan::find_fields(
            m.as_bytes(),
            [b"callerIp", b"callerIP", b"callerSuppliedUserAgent"],
        )
        .map(|v| v.and_then(|v| crate::scan::string_value_in(m, v)));
        ev.src_endpoint.ip = ip
            .or(ip_upper)
            .filter(|s| !s.is_empty())
            .map(Cow::into_owned);
        ev.http_request.user_agent = ua.filter(|s| !s.is_empty()).map(Cow::into_owned);
    }
    let caller_project = fill_actor(
        &mut ev,
        a.authentication_info.and_then(AuthenticationInfo::read),
    );

    // kms
    if let Some(n) = name {
        let key_project = n.project;
        if let Some(key) = n.key {
            let version = n
                .version
                .map(str::to_owned)
                .or_else(|| version_from_labels(key, &labels))
                .or_else(|| {
                    let r = identity::parse(response.name.as_deref()?)?;
                    (r.key == Some(key)).then(|| r.version.map(str::to_owned))?
                });
            ev.kms.key = Some(Key {
                uid: key.to_owned(),
                version,
                account_uid: key_project.map(str::to_owned),
            });
        } else if n.has_object {
            ev.kms.object_uid = Some(n.full.to_owned());
        }
        ev.kms.cross_account = match (caller_project.as_deref(), key_project) {
            (Some(c), Some(k)) => {
                classify::is_number(c) == classify::is_number(k) && !c.eq_ignore_ascii_case(k)
            }
            _ => false,
        };
    } else if kind == Kind::Kms {
        if let Some(uid) = key_from_labels(&labels) {
            ev.kms.key = Some(Key {
                uid,
                version: labels.crypto_key_version_id.as_deref().map(str::to_owned),
                account_uid: labels.project_id.as_deref().map(str::to_owned),
            });
        }
    } else {
        ev.kms.object_uid = a
            .resource_name
            .as_deref()
            .filter(|s| !s.is_empty())
            .map(str::to_owned);
    }
    if kind == Kind::Kms && mapping::short_name(method) == "SetIamPolicy" {
        let key_project = name
            .and_then(|n| n.project)
            .or(labels.project_id.as_deref())
            .filter(|p| !p.is_empty());
        let (grantees, change) =
            policy::analyze(a.service_data, a.metadata, a.request, key_project);
        ev.kms.grantees = grantees;
        ev.kms.policy = change;
    }
    if ev.kms.operation == KmsOperation::DestroyKeyVersion {
        ev.kms.pending_window_days = pending_window_days(time, &request, &response);
    }
    Ok(ev)
}

fn event_time(entry: &LogEntry<'_>) -> Result<i64, RecordError> {
    let (field, value) = match (&entry.timestamp, &entry.receive_timestamp) {
        (Some(t), _) => ("timestamp", t),
        (None, Some(t)) => ("receiveTimestamp", t),
        (None, None) => return Err(RecordError::missing("timestamp and receiveTimestamp")),
    };
    crate::time::parse_millis(value).ok_or_else(|| {
        RecordError::new(
            RejectReason::BadValue,
            format!("{field} is not a timestamp: {value:?}"),
        )
    })
}

/// The best KMS resource name the entry gives: the first that reaches a key, else the first
/// that parses at all.
fn key_name<'a>(a: &'a AuditLog<'_>, req: &'a KmsRequest<'_>) -> Option<identity::KmsName<'a>> {
    let candidates = [
        a.resource_name.as_deref(),
        req.name.as_deref(),
        req.resource.as_deref(),
        req.crypto_key_version
            .as_ref()
            .and_then(|v| v.name.as_deref()),
        req.crypto_key.as_ref().and_then(|k| k.name.as_deref()),
        req.parent.as_deref(),
    ];
    let parsed = || candidates.into_iter().flatten().filter_map(identity::parse);
    parsed()
        .find(|n| n.key.is_some())
        .or_else(|| parsed().next())
}

fn version_from_labels(key: &str, labels: &Labels<'_>) -> Option<String> {
    let v = labels.crypto_key_version_id.as_deref()?;
    let k = labels.crypto_key_id.as_deref()?;
    let ring_ok = labels
        .key_ring_id
        .as_deref()
        .is_none_or(|r| key.contains(&format!("/keyRings/{r}/")));
    (key.ends_with(&format!("/cryptoKeys/{k}")) && ring_ok && !v.is_empty()).then(|| v.to_owned())
}

fn key_from_labels(l: &Labels<'_>) -> Option<String> {
    Some(format!(
        "projects/{}/locations/{}/keyRings/{}/cryptoKeys/{}",
        l.project_id.as_deref().filter(|s| !s.is_empty())?,
        l.location.as_deref().filter(|s| !s.is_empty())?,
        l.key_ring_id.as_deref().filter(|s| !s.is_empty())?,
        l.crypto_key_id.as_deref().filter(|s| !s.is_empty())?,
    ))
}

/// Fill `actor.*`; returns the caller's project when its identity names one.
fn fill_actor(ev: &mut Event, auth: Option<AuthenticationInfo<'_>>) -> Option<String> {
    let Some(auth) = auth else {
        ev.actor.kind = ActorKind::Unknown;
        return None;
    };
    let principal = auth
        .principal_email
        .as_deref()
        .filter(|s| !s.trim().is_empty())
        .or(auth.principal_subject.as_deref())
        .unwrap_or("");
    let id = classify::classify(principal);
    ev.actor.kind = id.kind;
    ev.actor.invoked_by = id.invoked_by;
    let uid = classify::strip_member_prefix(principal.trim());
    if !uid.is_empty() {
        ev.actor.user = User {
            uid: Some(uid.to_owned()),
            name: Some(uid.to_owned()),
            type_: id.user_type.map(str::to_owned),
            account: id.project.clone().map(|p| Account { uid: Some(p) }),
        };
    }
    // Impersonation: the first (original) principal of the delegation chain.
    let first = auth
        .service_account_delegation_info
        .and_then(|d| serde_json::from_str::<Vec<Delegation<'_>>>(d).ok())
        .unwrap_or_default()
        .into_iter()
        .find_map(|d| {
            d.first_party_principal
                .and_then(|p| p.principal_email)
                .or(d.principal_subject)
                .filter(|s| !s.trim().is_empty())
        });
    if let Some(person) = first {
        let pid = classify::classify(&person);
        let puid = classify::strip_member_prefix(person.trim()).to_owned();
        if pid.kind == ActorKind::Human {
            ev.actor.kind = ActorKind::Human;
        }
        ev.actor.impersonator = Some(User {
            uid: Some(puid.clone()),
            name: Some(puid),
            type_: pid.user_type.map(str::to_owned),
            account: pid.project.map(|p| Account { uid: Some(p) }),
        });
    }
    id.project
}

fn pending_window_days(time: i64, req: &KmsRequest<'_>, resp: &KmsResponse<'_>) -> Option<u32> {
    const DAY_MS: i64 = 86_400_000;
    if let Some(dt) = resp
        .destroy_time
        .as_deref()
        .and_then(crate::time::parse_millis)
    {
        let ms = dt.checked_sub(time)?;
        if ms >= 0 {
            return u32::try_from((ms + DAY_MS / 2) / DAY_MS).ok();
        }
    }
    let dur = resp.destroy_scheduled_duration.as_deref().or_else(|| {
        req.crypto_key
            .as_ref()?
            .destroy_scheduled_duration
            .as_deref()
    })?;
    let secs = parse_duration_secs(dur)?;
    u32::try_from((secs + 43_200) / 86_400).ok()
}

/// A protobuf JSON `Duration` (`"2592000s"`, `"86400.5s"`) in whole seconds.
fn parse_duration_secs(s: &str) -> Option<i64> {
    let s = s.strip_suffix('s')?;
    let whole = s.split('.').next()?;
    if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    whole.parse().ok()
}

/// The canonical name of a `google.rpc.Code`.
pub fn code_name(code: i64) -> String {
    let name = match code {
        0 => "OK",
        1 => "CANCELLED",
        2 => "UNKNOWN",
        3 => "INVALID_ARGUMENT",
        4 => "DEADLINE_EXCEEDED",
        5 => "NOT_FOUND",
        6 => "ALREADY_EXISTS",
        7 => "PERMISSION_DENIED",
        8 => "RESOURCE_EXHAUSTED",
        9 => "FAILED_PRECONDITION",
        10 => "ABORTED",
        11 => "OUT_OF_RANGE",
        12 => "UNIMPLEMENTED",
        13 => "INTERNAL",
        14 => "UNAVAILABLE",
        15 => "DATA_LOSS",
        16 => "UNAUTHENTICATED",
        other => return other.to_string(),
    };
    name.to_owned()
}

/// FNV-1a, 64 bits: a stable id for entries without `insertId`.
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

// ---- borrowed views of the parts of a LogEntry that are read ----

/// The parts of a `LogEntry` that are read, borrowed from the record: strings decoded only
/// when they have escapes, sub-objects kept as JSON text and parsed only when needed.
#[derive(Debug)]
struct LogEntry<'a> {
    audit: AuditLog<'a>,
    insert_id: Option<Cow<'a, str>>,
    log_name: Option<Cow<'a, str>>,
    timestamp: Option<Cow<'a, str>>,
    receive_timestamp: Option<Cow<'a, str>>,
    resource: Option<&'a str>,
}

#[derive(Debug, Default)]
struct AuditLog<'a> {
    service_name: Option<Cow<'a, str>>,
    method_name: Option<Cow<'a, str>>,
    resource_name: Option<Cow<'a, str>>,
    status: Option<&'a str>,
    authentication_info: Option<&'a str>,
    request_metadata: Option<&'a str>,
    request: Option<&'a str>,
    response: Option<&'a str>,
    service_data: Option<&'a str>,
    metadata: Option<&'a str>,
    resource_location: Option<&'a str>,
}

impl<'a> LogEntry<'a> {
    /// Read the entry from the scanner's fields (first occurrence of a key wins). The record
    /// must already be validated as JSON and UTF-8 (see [`normalize`]).
    fn from_record(
        rec: &Record<'a>,
        text: &'a str,
        pp: &'a [u8],
        pp_fields: &[crate::scan::Field<'a>],
    ) -> Result<LogEntry<'a>, RecordError> {
        // `pp` is a sub-slice of the record, whose text is already checked UTF-8.
        let pp_text = sub_text(text, pp)?;
        let mut audit = AuditLog::default();
        for &(k, v) in pp_fields {
            let slot = match k {
                b"serviceName" => &mut audit.service_name,
                b"methodName" => &mut audit.method_name,
                b"resourceName" => &mut audit.resource_name,
                _ => {
                    let slot = match k {
                        b"status" => &mut audit.status,
                        b"authenticationInfo" => &mut audit.authentication_info,
                        b"requestMetadata" => &mut audit.request_metadata,
                        b"request" => &mut audit.request,
                        b"response" => &mut audit.response,
                        b"serviceData" => &mut audit.service_data,
                        b"metadata" => &mut audit.metadata,
                        b"resourceLocation" => &mut audit.resource_location,
                        _ => continue,
                    };
                    if slot.is_none() && v != b"null" {
                        *slot = Some(sub_text(pp_text, v)?);
                    }
                    continue;
                }
            };
            if slot.is_none() {
                *slot = str_value(text, v, k)?;
            }
        }
        let get = |a: &str, b: &str| -> Result<Option<Cow<'a, str>>, RecordError> {
            for key in [a, b] {
                if let Some(v) = rec.field(key) {
                    if let Some(s) = str_value(text, v, key.as_bytes())? {
                        return Ok(Some(s));
                    }
                }
            }
            Ok(None)
        };
        let insert_id = get("insertId", "insertid")?;
        let log_name = get("logName", "logname")?;
        let timestamp = match rec.field("timestamp") {
            Some(v) => str_value(text, v, b"timestamp")?,
            None => None,
        };
        let receive_timestamp = get("receiveTimestamp", "receivetimestamp")?;
        let resource = match rec.field("resource") {
            Some(v) if v != b"null" => Some(sub_text(text, v)?),
            _ => None,
        };
        Ok(LogEntry {
            audit,
            insert_id,
            log_name,
            timestamp,
            receive_timestamp,
            resource,
        })
    }
}

/// The text of `v`, a sub-slice of the checked `text`, without checking UTF-8 again
/// ([`crate::scan::text_in`]).
fn sub_text<'a>(text: &'a str, v: &[u8]) -> Result<&'a str, RecordError> {
    // Always a sub-slice at token boundaries (the scanner's fields); checked, not assumed.
    crate::scan::text_in(text, v).ok_or_else(|| {
        RecordError::new(
            RejectReason::MalformedJson,
            "a field outside the object it was read from",
        )
    })
}

/// A string value: `None` when null, an error when it is not a string. `v` lies in `text`,
/// the record's checked text.
fn str_value<'a>(
    text: &'a str,
    v: &'a [u8],
    key: &[u8],
) -> Result<Option<Cow<'a, str>>, RecordError> {
    if v == b"null" {
        return Ok(None);
    }
    if let Some(s) = crate::scan::plain_str_in(text, v) {
        return Ok(Some(Cow::Borrowed(s)));
    }
    serde_json::from_slice::<Cow<'a, str>>(v)
        .map(Some)
        .map_err(|e| {
            RecordError::new(
                RejectReason::BadValue,
                format!("{}: {e}", String::from_utf8_lossy(key)),
            )
        })
}

/// `resource.labels` of a `LogEntry` (a `MonitoredResource`), the labels that are read.
#[derive(Debug, Default)]
struct Labels<'a> {
    project_id: Option<Cow<'a, str>>,
    location: Option<Cow<'a, str>>,
    key_ring_id: Option<Cow<'a, str>>,
    crypto_key_id: Option<Cow<'a, str>>,
    crypto_key_version_id: Option<Cow<'a, str>>,
}

impl<'a> Labels<'a> {
    /// From the validated text of `resource`, label by label (one that is not a string reads
    /// as absent).
    fn read(resource: &'a str) -> Labels<'a> {
        let [labels] = crate::scan::find_fields(resource.as_bytes(), [b"labels"]);
        let Some(labels) = labels else {
            return Labels::default();
        };
        let [project_id, location, key_ring_id, crypto_key_id, crypto_key_version_id] =
            crate::scan::find_fields(
                labels,
                [
                    b"project_id",
                    b"location",
                    b"key_ring_id",
                    b"crypto_key_id",
                    b"crypto_key_version_id",
                ],
            )
            .map(|v| v.and_then(|v| crate::scan::string_value_in(resource, v)));
        Labels {
            project_id,
            location,
            key_ring_id,
            crypto_key_id,
            crypto_key_version_id,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ResourceLocation<'a> {
    #[serde(borrow, default)]
    current_locations: Vec<Cow<'a, str>>,
}

/// The `code` of a `google.rpc.Status`, from its validated text; `None` when absent or not
/// an integer.
fn status_code(status: &str) -> Option<i64> {
    let [code] = crate::scan::find_fields(status.as_bytes(), [b"code"]);
    std::str::from_utf8(code?).ok()?.parse().ok()
}

/// String fields of a validated JSON object's text, read field by field: absent, `null` or
/// not a string reads as `None`.
fn strings<'a, const N: usize>(obj: &'a str, keys: [&[u8]; N]) -> [Option<Cow<'a, str>>; N] {
    crate::scan::find_fields(obj.as_bytes(), keys)
        .map(|v| v.and_then(|v| crate::scan::string_value_in(obj, v)))
}

/// Fields of a validated JSON object's text as JSON text (`null` reads as `None`).
fn values<'a, const N: usize>(obj: &'a str, keys: [&[u8]; N]) -> [Option<&'a str>; N] {
    crate::scan::find_fields(obj.as_bytes(), keys).map(|v| {
        v.filter(|v| *v != b"null")
            .and_then(|v| crate::scan::text_in(obj, v))
    })
}

/// The text when it is a JSON object's.
fn object(text: &str) -> Option<&str> {
    text.starts_with('{').then_some(text)
}

#[derive(Debug)]
struct AuthenticationInfo<'a> {
    principal_email: Option<Cow<'a, str>>,
    principal_subject: Option<Cow<'a, str>>,
    /// JSON text, parsed only when present.
    service_account_delegation_info: Option<&'a str>,
}

impl<'a> AuthenticationInfo<'a> {
    /// From the validated text of `authenticationInfo`; `None` when it is not an object.
    fn read(text: &'a str) -> Option<AuthenticationInfo<'a>> {
        let text = object(text)?;
        let [principal_email, principal_subject] =
            strings(text, [b"principalEmail", b"principalSubject"]);
        let [service_account_delegation_info] = values(text, [b"serviceAccountDelegationInfo"]);
        Some(AuthenticationInfo {
            principal_email,
            principal_subject,
            service_account_delegation_info,
        })
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Delegation<'a> {
    #[serde(borrow)]
    first_party_principal: Option<FirstPartyPrincipal<'a>>,
    #[serde(borrow)]
    principal_subject: Option<Cow<'a, str>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct FirstPartyPrincipal<'a> {
    #[serde(borrow)]
    principal_email: Option<Cow<'a, str>>,
}

/// The request fields of Cloud KMS methods that are read.
#[derive(Debug, Default)]
struct KmsRequest<'a> {
    name: Option<Cow<'a, str>>,
    parent: Option<Cow<'a, str>>,
    resource: Option<Cow<'a, str>>,
    /// JSON text.
    update_mask: Option<&'a str>,
    crypto_key: Option<CryptoKey<'a>>,
    crypto_key_version: Option<CryptoKeyVersion<'a>>,
}

impl<'a> KmsRequest<'a> {
    /// From the validated text of `request` (not an object: nothing is read).
    fn read(text: &'a str) -> KmsRequest<'a> {
        let Some(text) = object(text) else {
            return KmsRequest::default();
        };
        let [name, parent, resource] = strings(text, [b"name", b"parent", b"resource"]);
        let [update_mask, crypto_key, crypto_key_version] =
            values(text, [b"updateMask", b"cryptoKey", b"cryptoKeyVersion"]);
        KmsRequest {
            name,
            parent,
            resource,
            update_mask,
            crypto_key: crypto_key.and_then(object).map(|k| {
                let [name, destroy_scheduled_duration] =
                    strings(k, [b"name", b"destroyScheduledDuration"]);
                let [rotation_period, next_rotation_time] =
                    values(k, [b"rotationPeriod", b"nextRotationTime"]);
                CryptoKey {
                    name,
                    rotation_period,
                    next_rotation_time,
                    destroy_scheduled_duration,
                }
            }),
            crypto_key_version: crypto_key_version.and_then(object).map(|v| {
                let [name, state] = strings(v, [b"name", b"state"]);
                CryptoKeyVersion { name, state }
            }),
        }
    }

    fn hints(&self) -> mapping::RequestHints<'_> {
        let mask = self.update_mask.unwrap_or("");
        let has = |a: &str, b: &str| mask.contains(a) || mask.contains(b);
        mapping::RequestHints {
            has_update_mask: self.update_mask.is_some_and(non_empty_str),
            mask_names_rotation: has("rotationPeriod", "rotation_period")
                || has("nextRotationTime", "next_rotation_time"),
            mask_names_state: mask
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .any(|w| w == "state"),
            sets_rotation: self.crypto_key.as_ref().is_some_and(|k| {
                k.rotation_period.is_some_and(non_empty_str)
                    || k.next_rotation_time.is_some_and(non_empty_str)
            }),
            version_state: self
                .crypto_key_version
                .as_ref()
                .and_then(|v| v.state.as_deref()),
        }
    }
}

#[derive(Debug, Default)]
struct CryptoKey<'a> {
    name: Option<Cow<'a, str>>,
    /// JSON text.
    rotation_period: Option<&'a str>,
    /// JSON text.
    next_rotation_time: Option<&'a str>,
    destroy_scheduled_duration: Option<Cow<'a, str>>,
}

#[derive(Debug, Default)]
struct CryptoKeyVersion<'a> {
    name: Option<Cow<'a, str>>,
    state: Option<Cow<'a, str>>,
}

/// The response fields of Cloud KMS methods that are read.
#[derive(Debug, Default)]
struct KmsResponse<'a> {
    name: Option<Cow<'a, str>>,
    destroy_time: Option<Cow<'a, str>>,
    destroy_scheduled_duration: Option<Cow<'a, str>>,
}

impl<'a> KmsResponse<'a> {
    /// From the validated text of `response` (not an object: nothing is read).
    fn read(text: &'a str) -> KmsResponse<'a> {
        let Some(text) = object(text) else {
            return KmsResponse::default();
        };
        let [name, destroy_time, destroy_scheduled_duration] =
            strings(text, [b"name", b"destroyTime", b"destroyScheduledDuration"]);
        KmsResponse {
            name,
            destroy_time,
            destroy_scheduled_duration,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SetIamRequest<'a> {
    #[serde(borrow)]
    resource: Option<Cow<'a, str>>,
    #[serde(borrow)]
    policy: Option<Policy<'a>>,
    #[serde(borrow)]
    update_mask: Option<&'a RawValue>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Policy<'a> {
    #[serde(borrow)]
    audit_configs: Option<&'a RawValue>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AuditData<'a> {
    #[serde(borrow)]
    policy_delta: Option<PolicyDelta<'a>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PolicyDelta<'a> {
    #[serde(borrow)]
    audit_config_deltas: Option<&'a RawValue>,
}

#[cfg(test)]
mod tests;
