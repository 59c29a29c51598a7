//! AWS CloudTrail (KMS events and the trail changes that bear on them) and KMS's own
//! EventBridge events.
//!
//! What is kept, decided from the scanner's top-level fields before anything is parsed:
//!
//! | record | outcome |
//! |---|---|
//! | CloudTrail digest (`digestStartTime` / `digestS3Object`) | `Skip(Digest)` |
//! | `eventSource: kms.amazonaws.com` | KMS event |
//! | `cloudtrail.amazonaws.com` `StopLogging`, `DeleteTrail`, `UpdateTrail`, `PutEventSelectors`, `PutInsightSelectors` | related, `LoggingChange` |
//! | `s3.amazonaws.com` object write/copy naming an SSE-KMS key | related, `Other`, key = that key |
//! | anything else | `Skip(NotKms)` |
//!
//! A kept record is validated once as a whole (JSON syntax and UTF-8: the pass that also
//! makes `raw`); then only the fields the event needs are read, straight from the scanner's
//! top-level fields: strings borrowed unless they have escapes, `userIdentity` deserialized
//! into a borrowed struct, sub-objects read for one or two fields (`requestParameters`,
//! `resources`, ...) parsed only when needed. No `serde_json::Value` is ever built, except for
//! the key policy document of `PutKeyPolicy` / `CreateKey` / `ReplicateKey` (rare, small and
//! free-form). Key identity rules are in [`identity`], `actor.kind` rules in [`classify`], the
//! operation table in [`mapping`], `kms.policy` and `kms.grantees` in [`policy`].

pub mod classify;
pub mod identity;
pub mod mapping;
pub mod policy;

use crate::{Normalizer, Outcome, Record, RecordError, RejectReason, SkipReason};
use classify::Principal;
use identity::Context;
use kmswatch_model::{
    Account, ActorKind, Event, Key, KmsOperation, Product, Request, Session, Status, User,
};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;

/// `metadata.product.name` of CloudTrail records.
pub const PRODUCT_CLOUDTRAIL: &str = "CloudTrail";
/// `metadata.product.name` of KMS EventBridge events.
pub const PRODUCT_EVENTBRIDGE: &str = "EventBridge";
/// `metadata.log_format` of CloudTrail records.
pub const LOG_FORMAT_CLOUDTRAIL: &str = "aws_cloudtrail";
/// `metadata.log_format` of KMS EventBridge events.
pub const LOG_FORMAT_EVENTBRIDGE: &str = "aws_eventbridge";
/// `eventSource` of AWS KMS.
pub const KMS_SOURCE: &str = "kms.amazonaws.com";

const S3_SSE_KMS_PARAM: &[u8] = b"x-amz-server-side-encryption-aws-kms-key-id";
const S3_SSE_KMS_DATA: &[u8] = b"SSEKMSKeyId";

/// What kind of kept record this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Kms,
    LoggingChange,
    S3UnderKmsKey,
}

/// Normalize one CloudTrail record (the record itself, envelopes already removed).
pub fn normalize(n: &Normalizer, rec: &Record<'_>) -> Result<Outcome, RecordError> {
    if rec.field("digestStartTime").is_some() || rec.field("digestS3Object").is_some() {
        return Ok(Outcome::Skip(SkipReason::Digest));
    }
    let Some(source) = rec.str_field("eventSource") else {
        if rec.field("detail-type").is_some() && rec.field("source").is_some() {
            return normalize_eventbridge(n, rec);
        }
        return Err(RecordError::new(
            RejectReason::UnknownFormat,
            "no eventSource: not a CloudTrail record",
        ));
    };
    let kind = match &*source {
        KMS_SOURCE => Kind::Kms,
        "cloudtrail.amazonaws.com" => match rec.str_field("eventName") {
            Some(name) if mapping::is_cloudtrail_logging_change(&name) => Kind::LoggingChange,
            _ => return Ok(Outcome::Skip(SkipReason::NotKms)),
        },
        "s3.amazonaws.com" => match rec.str_field("eventName") {
            Some(name)
                if mapping::is_s3_object_write(&name)
                    && (memchr::memmem::find(rec.bytes, S3_SSE_KMS_PARAM).is_some()
                        || memchr::memmem::find(rec.bytes, S3_SSE_KMS_DATA).is_some()) =>
            {
                Kind::S3UnderKmsKey
            }
            _ => return Ok(Outcome::Skip(SkipReason::NotKms)),
        },
        _ => return Ok(Outcome::Skip(SkipReason::NotKms)),
    };
    // One validating pass over the whole record (JSON syntax and UTF-8), which also yields
    // `raw`; then only the fields the event needs are read.
    let raw = rec.to_raw()?;
    let ct = CtRecord::from_record(rec)?;
    build(n, raw, &ct, kind)
}

/// One CloudTrail record, borrowed: only the fields the normalized event needs, read from
/// the scanner's top-level fields (strings decoded only when they have escapes; objects kept
/// as bytes and parsed only when needed).
#[derive(Debug)]
struct CtRecord<'a> {
    event_time: Option<Cow<'a, str>>,
    timestamp: Option<Cow<'a, str>>,
    event_id: Option<Cow<'a, str>>,
    event_source: Option<Cow<'a, str>>,
    event_name: Option<Cow<'a, str>>,
    aws_region: Option<Cow<'a, str>>,
    recipient_account_id: Option<Cow<'a, str>>,
    request_id: Option<Cow<'a, str>>,
    error_code: Option<Cow<'a, str>>,
    source_ip: Option<Cow<'a, str>>,
    user_agent: Option<Cow<'a, str>>,
    user_identity: Option<UserIdentity<'a>>,
    request_parameters: Option<&'a [u8]>,
    response_elements: Option<&'a [u8]>,
    additional_event_data: Option<&'a [u8]>,
    service_event_details: Option<&'a [u8]>,
    resources: Option<&'a [u8]>,
}

impl<'a> CtRecord<'a> {
    /// Read the fields in one pass over the scanner's top-level fields (first occurrence
    /// wins). The record must already be validated as JSON (see [`normalize`]).
    fn from_record(rec: &Record<'a>) -> Result<CtRecord<'a>, RecordError> {
        let mut raw: [Option<&'a [u8]>; FIELDS.len()] = [None; FIELDS.len()];
        for (k, v) in rec.fields {
            if let Some(f) = field_of(k) {
                if let Some(slot) = raw.get_mut(f as usize) {
                    slot.get_or_insert(v);
                }
            }
        }
        let get = |f: Field| raw.get(f as usize).copied().flatten();
        let s = |f: Field| str_value(get(f), f);
        let obj = |f: Field| get(f).filter(|v| *v != b"null");
        let user_identity = match get(Field::UserIdentity) {
            None => None,
            Some(v) => serde_json::from_slice::<Option<UserIdentity<'a>>>(v).map_err(|e| {
                RecordError::new(RejectReason::BadValue, format!("userIdentity: {e}"))
            })?,
        };
        Ok(CtRecord {
            event_time: s(Field::EventTime)?,
            timestamp: s(Field::Timestamp)?,
            event_id: s(Field::EventId)?,
            event_source: s(Field::EventSource)?,
            event_name: s(Field::EventName)?,
            aws_region: s(Field::AwsRegion)?,
            recipient_account_id: s(Field::RecipientAccountId)?,
            request_id: s(Field::RequestId)?,
            error_code: s(Field::ErrorCode)?,
            source_ip: s(Field::SourceIp)?,
            user_agent: s(Field::UserAgent)?,
            user_identity,
            request_parameters: obj(Field::RequestParameters),
            response_elements: obj(Field::ResponseElements),
            additional_event_data: obj(Field::AdditionalEventData),
            service_event_details: obj(Field::ServiceEventDetails),
            resources: obj(Field::Resources),
        })
    }
}

/// The top-level CloudTrail fields read, in the order of [`FIELDS`].
#[derive(Debug, Clone, Copy)]
enum Field {
    EventTime,
    Timestamp,
    EventId,
    EventSource,
    EventName,
    AwsRegion,
    RecipientAccountId,
    RequestId,
    ErrorCode,
    SourceIp,
    UserAgent,
    UserIdentity,
    RequestParameters,
    ResponseElements,
    AdditionalEventData,
    ServiceEventDetails,
    Resources,
}

/// Field names as CloudTrail writes them, indexed by [`Field`].
const FIELDS: [&str; 17] = [
    "eventTime",
    "@timestamp",
    "eventID",
    "eventSource",
    "eventName",
    "awsRegion",
    "recipientAccountId",
    "requestID",
    "errorCode",
    "sourceIPAddress",
    "userAgent",
    "userIdentity",
    "requestParameters",
    "responseElements",
    "additionalEventData",
    "serviceEventDetails",
    "resources",
];

/// The [`Field`] a top-level key names, if read.
fn field_of(key: &[u8]) -> Option<Field> {
    Some(match key {
        b"eventTime" => Field::EventTime,
        b"@timestamp" => Field::Timestamp,
        b"eventID" => Field::EventId,
        b"eventSource" => Field::EventSource,
        b"eventName" => Field::EventName,
        b"awsRegion" => Field::AwsRegion,
        b"recipientAccountId" => Field::RecipientAccountId,
        b"requestID" => Field::RequestId,
        b"errorCode" => Field::ErrorCode,
        b"sourceIPAddress" => Field::SourceIp,
        b"userAgent" => Field::UserAgent,
        b"userIdentity" => Field::UserIdentity,
        b"requestParameters" => Field::RequestParameters,
        b"responseElements" => Field::ResponseElements,
        b"additionalEventData" => Field::AdditionalEventData,
        b"serviceEventDetails" => Field::ServiceEventDetails,
        b"resources" => Field::Resources,
        _ => return None,
    })
}

/// A string value: `None` when absent or null, an error when it is not a string.
fn str_value(v: Option<&[u8]>, f: Field) -> Result<Option<Cow<'_, str>>, RecordError> {
    let Some(v) = v else {
        return Ok(None);
    };
    if v == b"null" {
        return Ok(None);
    }
    if let Some(s) = crate::scan::plain_str(v) {
        return Ok(Some(Cow::Borrowed(s)));
    }
    serde_json::from_slice::<Cow<'_, str>>(v)
        .map(Some)
        .map_err(|e| {
            let name = FIELDS.get(f as usize).copied().unwrap_or("field");
            RecordError::new(RejectReason::BadValue, format!("{name}: {e}"))
        })
}

#[derive(Debug, Default, Deserialize)]
struct UserIdentity<'a> {
    #[serde(rename = "type", borrow, default, deserialize_with = "opt_cow")]
    type_: Option<Cow<'a, str>>,
    #[serde(rename = "principalId", borrow, default, deserialize_with = "opt_cow")]
    principal_id: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "opt_cow")]
    arn: Option<Cow<'a, str>>,
    #[serde(rename = "accountId", borrow, default, deserialize_with = "opt_cow")]
    account_id: Option<Cow<'a, str>>,
    #[serde(rename = "userName", borrow, default, deserialize_with = "opt_cow")]
    user_name: Option<Cow<'a, str>>,
    #[serde(rename = "invokedBy", borrow, default, deserialize_with = "opt_cow")]
    invoked_by: Option<Cow<'a, str>>,
    #[serde(rename = "sessionContext", borrow, default)]
    session_context: Option<SessionContext<'a>>,
    #[serde(rename = "onBehalfOf", borrow, default)]
    on_behalf_of: Option<OnBehalfOf<'a>>,
}

#[derive(Debug, Default, Deserialize)]
struct SessionContext<'a> {
    #[serde(rename = "sessionIssuer", borrow, default)]
    session_issuer: Option<SessionIssuer<'a>>,
    #[serde(borrow, default)]
    attributes: Option<SessionAttributes<'a>>,
}

#[derive(Debug, Default, Deserialize)]
struct SessionIssuer<'a> {
    #[serde(borrow, default, deserialize_with = "opt_cow")]
    arn: Option<Cow<'a, str>>,
    #[serde(rename = "userName", borrow, default, deserialize_with = "opt_cow")]
    user_name: Option<Cow<'a, str>>,
}

#[derive(Debug, Default, Deserialize)]
struct SessionAttributes<'a> {
    /// `"true"` / `"false"` as written by CloudTrail; some exports write a boolean.
    #[serde(rename = "mfaAuthenticated", borrow, default)]
    mfa_authenticated: Option<&'a RawValue>,
}

#[derive(Debug, Default, Deserialize)]
struct OnBehalfOf<'a> {
    #[serde(rename = "userId", borrow, default, deserialize_with = "opt_cow")]
    user_id: Option<Cow<'a, str>>,
}

/// The few `requestParameters` / `additionalEventData` / `responseElements` /
/// `serviceEventDetails` fields used for key identity.
#[derive(Debug, Default, Deserialize)]
struct KeyParams<'a> {
    #[serde(rename = "keyId", borrow, default, deserialize_with = "opt_cow")]
    key_id: Option<Cow<'a, str>>,
    #[serde(rename = "targetKeyId", borrow, default, deserialize_with = "opt_cow")]
    target_key_id: Option<Cow<'a, str>>,
    #[serde(rename = "aliasName", borrow, default, deserialize_with = "opt_cow")]
    alias_name: Option<Cow<'a, str>>,
    #[serde(rename = "pendingWindowInDays", borrow, default)]
    pending_window_in_days: Option<&'a RawValue>,
    #[serde(
        rename = "x-amz-server-side-encryption-aws-kms-key-id",
        borrow,
        default
    )]
    sse_kms_key_id: Option<Cow<'a, str>>,
    #[serde(rename = "SSEKMSKeyId", borrow, default, deserialize_with = "opt_cow")]
    sse_kms_key_id_data: Option<Cow<'a, str>>,
    #[serde(rename = "keyMetadata", borrow, default)]
    key_metadata: Option<KeyMetadata<'a>>,
}

#[derive(Debug, Default, Deserialize)]
struct KeyMetadata<'a> {
    #[serde(borrow, default, deserialize_with = "opt_cow")]
    arn: Option<Cow<'a, str>>,
}

#[derive(Debug, Deserialize)]
struct Resource<'a> {
    #[serde(rename = "ARN", borrow, default, deserialize_with = "opt_cow")]
    arn: Option<Cow<'a, str>>,
    #[serde(rename = "type", borrow, default, deserialize_with = "opt_cow")]
    type_: Option<Cow<'a, str>>,
}

/// `Option<Cow<str>>` that borrows from the input when the string has no escapes (serde's
/// own `Cow` impl always allocates unless the field is exactly `Cow<'a, str>`).
fn opt_cow<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Cow<'de, str>>, D::Error> {
    #[derive(Deserialize)]
    struct Borrowed<'a>(#[serde(borrow)] Cow<'a, str>);
    Ok(Option::<Borrowed<'de>>::deserialize(d)?.map(|b| b.0))
}

/// Parse a sub-object leniently: a value of an unexpected shape reads as empty (the event is
/// still worth keeping without it).
fn sub<'a, T: Deserialize<'a> + Default>(v: Option<&'a [u8]>) -> T {
    v.and_then(|v| serde_json::from_slice(v).ok())
        .unwrap_or_default()
}

fn opt(s: &Option<Cow<'_, str>>) -> Option<String> {
    s.as_deref().filter(|s| !s.is_empty()).map(str::to_string)
}

fn nonempty<'a>(s: &'a Option<Cow<'_, str>>) -> Option<&'a str> {
    s.as_deref().filter(|s| !s.is_empty())
}

fn build(
    n: &Normalizer,
    raw: kmswatch_model::Raw,
    ct: &CtRecord<'_>,
    kind: Kind,
) -> Result<Outcome, RecordError> {
    let time = event_time(ct)?;
    let event_name = nonempty(&ct.event_name).ok_or_else(|| RecordError::missing("eventName"))?;
    let operation = match kind {
        Kind::Kms => mapping::operation(event_name),
        Kind::LoggingChange => KmsOperation::LoggingChange,
        Kind::S3UnderKmsKey => KmsOperation::Other,
    };
    let ui = ct.user_identity.as_ref();
    let caller_account = ui.and_then(|u| nonempty(&u.account_id));
    let account = nonempty(&ct.recipient_account_id).or(caller_account);
    let ctx = Context {
        region: nonempty(&ct.aws_region),
        account,
    };

    let key = match kind {
        Kind::Kms => kms_key(ct, event_name, ctx),
        Kind::S3UnderKmsKey => s3_key(ct, ctx),
        Kind::LoggingChange => None,
    };
    if kind == Kind::S3UnderKmsKey && key.is_none() {
        // The field name appeared somewhere else in the record (an object key, a response).
        return Ok(Outcome::Skip(SkipReason::NotKms));
    }

    let mut ev = Event::new(time, operation, raw);
    ev.metadata.uid = opt(&ct.event_id).unwrap_or_default();
    ev.metadata.product = Product {
        name: PRODUCT_CLOUDTRAIL.to_string(),
        vendor_name: "AWS".to_string(),
    };
    ev.metadata.log_format = LOG_FORMAT_CLOUDTRAIL.to_string();
    ev.cloud.region = opt(&ct.aws_region);
    ev.cloud.account.uid = account.map(str::to_string);
    ev.api.operation = event_name.to_string();
    ev.api.service.name = opt(&ct.event_source).unwrap_or_default();
    ev.api.request = opt(&ct.request_id).map(|uid| Request { uid });
    if let Some(code) = nonempty(&ct.error_code) {
        ev.status = Status::Failure;
        ev.status_detail = Some(code.to_string());
    }
    ev.src_endpoint.ip = opt(&ct.source_ip);
    ev.http_request.user_agent = opt(&ct.user_agent);
    fill_actor(n, &mut ev, ui);

    if operation == KmsOperation::ScheduleKeyDeletion {
        let p: KeyParams<'_> = sub(ct.request_parameters);
        ev.kms.pending_window_days = p.pending_window_in_days.and_then(parse_days);
    }
    if kind == Kind::Kms {
        let owner = key
            .as_ref()
            .and_then(|k| k.account_uid.as_deref())
            .or(account);
        let (grantees, change) = policy::analyze(event_name, ct.request_parameters, owner);
        ev.kms.grantees = grantees;
        ev.kms.policy = change;
    }
    if let Some(key) = key {
        ev.kms.cross_account = match (caller_account, key.account_uid.as_deref()) {
            (Some(caller), Some(owner)) => {
                caller != owner && caller.bytes().all(|b| b.is_ascii_digit())
            }
            _ => false,
        };
        ev.kms.key = Some(key);
    }
    Ok(Outcome::Event {
        event: Box::new(ev),
        related: kind != Kind::Kms,
    })
}

fn event_time(ct: &CtRecord<'_>) -> Result<i64, RecordError> {
    let (name, value) = match (&ct.event_time, &ct.timestamp) {
        (Some(t), _) => ("eventTime", t),
        (None, Some(t)) => ("@timestamp", t),
        (None, None) => return Err(RecordError::missing("eventTime and @timestamp")),
    };
    crate::time::parse_millis(value).ok_or_else(|| {
        RecordError::new(
            RejectReason::BadValue,
            format!("{name} {value:?} is not an RFC 3339 time"),
        )
    })
}

/// `pendingWindowInDays` as a number or a numeric string.
fn parse_days(v: &RawValue) -> Option<u32> {
    let s = v.get().trim().trim_matches('"');
    s.parse().ok()
}

fn fill_actor(n: &Normalizer, ev: &mut Event, ui: Option<&UserIdentity<'_>>) {
    let Some(u) = ui else {
        ev.actor.kind = ActorKind::Anonymous;
        return;
    };
    let issuer = u
        .session_context
        .as_ref()
        .and_then(|s| s.session_issuer.as_ref());
    let p = Principal {
        present: true,
        type_: nonempty(&u.type_),
        arn: nonempty(&u.arn),
        principal_id: u.principal_id.as_deref(),
        account_id: u.account_id.as_deref(),
        invoked_by: nonempty(&u.invoked_by),
        issuer_arn: issuer.and_then(|i| nonempty(&i.arn)),
        issuer_name: issuer.and_then(|i| nonempty(&i.user_name)),
    };
    ev.actor.kind = classify::classify(n, &p);
    ev.actor.invoked_by = p.invoked_by.map(str::to_string);
    ev.actor.user = User {
        uid: p.arn.or(nonempty(&u.principal_id)).map(str::to_string),
        name: user_name(u, &p).map(str::to_string),
        type_: p.type_.map(str::to_string),
        account: p.account_id.filter(|a| !a.is_empty()).map(|a| Account {
            uid: Some(a.to_string()),
        }),
    };
    let is_mfa = u
        .session_context
        .as_ref()
        .and_then(|s| s.attributes.as_ref())
        .and_then(|a| a.mfa_authenticated)
        .and_then(|v| match v.get().trim().trim_matches('"') {
            "true" => Some(true),
            "false" => Some(false),
            _ => None,
        });
    if p.issuer_arn.is_some() || is_mfa.is_some() {
        ev.actor.session = Some(Session {
            issuer: p.issuer_arn.map(str::to_string),
            is_mfa,
        });
    }
}

/// The display name most useful to an analyst: the IAM user name, the role session name
/// (for SSO sessions the person's user name; the role is in `actor.session.issuer`), the
/// federated user name, the Identity Center user id, or the service for `AWSService` and
/// for service events without a principal.
fn user_name<'a>(u: &'a UserIdentity<'_>, p: &Principal<'a>) -> Option<&'a str> {
    let last_segment = |arn: &'a str| -> Option<&'a str> {
        identity::parse_arn(arn).and_then(|a| a.resource.rsplit('/').next())
    };
    match p.type_.unwrap_or("") {
        "AssumedRole" | "Role" => p
            .arn
            .and_then(classify::session_name)
            .or_else(|| classify::role_name(p)),
        "FederatedUser" => p
            .arn
            .and_then(|a| {
                identity::parse_arn(a)?
                    .resource
                    .strip_prefix("federated-user/")
            })
            .or_else(|| nonempty(&u.user_name)),
        "Root" => nonempty(&u.user_name).or(Some("root")),
        "IdentityCenterUser" => u
            .on_behalf_of
            .as_ref()
            .and_then(|o| nonempty(&o.user_id))
            .or_else(|| nonempty(&u.user_name)),
        "AWSService" => p.invoked_by,
        // KMS's own service events carry only `accountId` and `invokedBy: AWS Internal`.
        _ => nonempty(&u.user_name)
            .or_else(|| p.arn.and_then(last_segment))
            .or(p.invoked_by),
    }
}

/// Key of a KMS record (see [`identity`] for the order).
fn kms_key(ct: &CtRecord<'_>, event_name: &str, ctx: Context<'_>) -> Option<Key> {
    if event_name == "CreateKey" {
        let r: KeyParams<'_> = sub(ct.response_elements);
        if let Some(arn) = r.key_metadata.as_ref().and_then(|m| nonempty(&m.arn)) {
            if let Some(k) = identity::key_from_reference(arn, ctx) {
                return Some(k);
            }
        }
    }
    let resources: Vec<Resource<'_>> = sub_vec(ct.resources);
    let mut alias_arn = None;
    for r in &resources {
        let Some(arn) = nonempty(&r.arn) else {
            continue;
        };
        let typed_key = r.type_.as_deref().is_none_or(|t| t == "AWS::KMS::Key");
        if typed_key && identity::is_key_arn(arn) {
            return identity::key_from_reference(arn, ctx);
        }
        if alias_arn.is_none() && identity::is_alias_arn(arn) {
            alias_arn = Some(arn);
        }
    }
    let req: KeyParams<'_> = sub(ct.request_parameters);
    for r in [nonempty(&req.key_id), nonempty(&req.target_key_id)]
        .into_iter()
        .flatten()
    {
        if let Some(k) = identity::key_from_reference(r, ctx) {
            return Some(k);
        }
    }
    for v in [ct.response_elements, ct.service_event_details] {
        let p: KeyParams<'_> = sub(v);
        if let Some(k) = nonempty(&p.key_id).and_then(|r| identity::key_from_reference(r, ctx)) {
            return Some(k);
        }
    }
    if let Some(a) = alias_arn {
        return identity::key_from_reference(a, ctx);
    }
    nonempty(&req.alias_name).and_then(|a| identity::key_from_reference(a, ctx))
}

/// Key an S3 object write names: `requestParameters` SSE-KMS header, else
/// `additionalEventData.SSEKMSKeyId`.
fn s3_key(ct: &CtRecord<'_>, ctx: Context<'_>) -> Option<Key> {
    let req: KeyParams<'_> = sub(ct.request_parameters);
    if let Some(k) =
        nonempty(&req.sse_kms_key_id).and_then(|r| identity::key_from_reference(r, ctx))
    {
        return Some(k);
    }
    let add: KeyParams<'_> = sub(ct.additional_event_data);
    nonempty(&add.sse_kms_key_id_data).and_then(|r| identity::key_from_reference(r, ctx))
}

fn sub_vec<'a, T: Deserialize<'a>>(v: Option<&'a [u8]>) -> Vec<T> {
    v.and_then(|v| serde_json::from_slice(v).ok())
        .unwrap_or_default()
}

/// A KMS EventBridge event, borrowed.
#[derive(Debug, Deserialize)]
struct KmsEventBridge<'a> {
    #[serde(borrow, default, deserialize_with = "opt_cow")]
    id: Option<Cow<'a, str>>,
    #[serde(rename = "detail-type", borrow, default, deserialize_with = "opt_cow")]
    detail_type: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "opt_cow")]
    source: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "opt_cow")]
    account: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "opt_cow")]
    time: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "opt_cow")]
    region: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    resources: Option<&'a RawValue>,
    #[serde(borrow, default)]
    detail: Option<&'a RawValue>,
}

#[derive(Debug, Default, Deserialize)]
struct KmsEventDetail<'a> {
    #[serde(rename = "key-id", borrow, default, deserialize_with = "opt_cow")]
    key_id: Option<Cow<'a, str>>,
}

/// The canonical operation of a KMS EventBridge `detail-type`.
pub fn eventbridge_operation(detail_type: &str) -> Option<KmsOperation> {
    match detail_type {
        "KMS CMK Rotation" => Some(KmsOperation::RotateKey),
        "KMS CMK Deletion" => Some(KmsOperation::DestroyKeyVersion),
        "KMS Imported Key Material Expiration" => Some(KmsOperation::DeleteImportedKeyMaterial),
        _ => None,
    }
}

/// Normalize one EventBridge event whose `source` is `aws.kms` (`KMS CMK Rotation`,
/// `KMS CMK Deletion`, `KMS Imported Key Material Expiration`). An `AWS API Call via
/// CloudTrail` envelope handed here is normalized as the CloudTrail record in its `detail`;
/// other detail types are `Skip(NotAuditRecord)`.
pub fn normalize_eventbridge(n: &Normalizer, rec: &Record<'_>) -> Result<Outcome, RecordError> {
    let eb: KmsEventBridge<'_> =
        serde_json::from_slice(rec.bytes).map_err(RecordError::from_json)?;
    let detail_type = eb.detail_type.as_deref().unwrap_or("");
    if detail_type == "AWS API Call via CloudTrail" {
        let Some(detail) = eb.detail else {
            return Err(RecordError::missing("detail"));
        };
        let bytes = detail.get().as_bytes();
        let (fields, _) = crate::scan::object_fields(bytes, 0).map_err(|e| {
            RecordError::new(
                RejectReason::MalformedJson,
                format!("detail is not an object: {e:?}"),
            )
        })?;
        return normalize(
            n,
            &Record {
                bytes,
                fields: &fields,
                // `detail` was read by the parser as a borrowed RawValue: valid JSON, UTF-8.
                strict: true,
                checked: None,
                nested: &[],
            },
        );
    }
    if eb.source.as_deref() != Some("aws.kms") {
        return Ok(Outcome::Skip(SkipReason::NotAuditRecord));
    }
    let Some(operation) = eventbridge_operation(detail_type) else {
        return Ok(Outcome::Skip(SkipReason::NotAuditRecord));
    };
    let time_s = eb
        .time
        .as_deref()
        .ok_or_else(|| RecordError::missing("time"))?;
    let time = crate::time::parse_millis(time_s).ok_or_else(|| {
        RecordError::new(
            RejectReason::BadValue,
            format!("time {time_s:?} is not an RFC 3339 time"),
        )
    })?;
    let ctx = Context {
        region: nonempty(&eb.region),
        account: nonempty(&eb.account),
    };
    let resources: Vec<Cow<'_, str>> = sub_vec(eb.resources.map(|r| r.get().as_bytes()));
    let detail: KmsEventDetail<'_> = sub(eb.detail.map(|r| r.get().as_bytes()));
    let key = resources
        .iter()
        .find(|r| identity::is_key_arn(r))
        .and_then(|r| identity::key_from_reference(r, ctx))
        .or_else(|| nonempty(&detail.key_id).and_then(|k| identity::key_from_reference(k, ctx)));

    let mut ev = Event::new(time, operation, rec.to_raw()?);
    ev.metadata.uid = opt(&eb.id).unwrap_or_default();
    ev.metadata.product = Product {
        name: PRODUCT_EVENTBRIDGE.to_string(),
        vendor_name: "AWS".to_string(),
    };
    ev.metadata.log_format = LOG_FORMAT_EVENTBRIDGE.to_string();
    ev.cloud.region = opt(&eb.region);
    ev.cloud.account.uid = opt(&eb.account);
    ev.api.operation = detail_type.to_string();
    ev.api.service.name = KMS_SOURCE.to_string();
    ev.actor.kind = ActorKind::CloudService;
    ev.actor.invoked_by = Some(KMS_SOURCE.to_string());
    ev.actor.user = User {
        uid: None,
        name: Some(KMS_SOURCE.to_string()),
        type_: None,
        account: opt(&eb.account).map(|a| Account { uid: Some(a) }),
    };
    ev.kms.key = key;
    Ok(Outcome::Event {
        event: Box::new(ev),
        related: false,
    })
}

#[cfg(test)]
mod tests;
