//! Azure Key Vault resource logs (`AuditEvent`, AzureDiagnostics and AZKVAuditLogs rows) and
//! Activity Log entries for Key Vault and for diagnostic settings and role assignments on vaults.
//!
//! One record in, one [`Outcome`] out; the document reader has already removed the delivery
//! envelope (`{"records":[...]}` blobs and Event Hub batches, `{"value":[...]}` REST pages,
//! JSON lines, Log Analytics `tables/columns/rows`, labelled test wrappers).
//!
//! ## Record shapes
//!
//! | shape | recognised by | product |
//! |---|---|---|
//! | Key Vault `AuditEvent` resource log (blob, Event Hub) | `operationName` string without `/`, `category`/`resourceId` | `Azure Key Vault` |
//! | Log Analytics `AzureDiagnostics` row | `OperationName` + `ResourceProvider`/`TimeGenerated` | `Azure Key Vault` |
//! | Log Analytics `AZKVAuditLogs` row | `Type` = `AZKVAuditLogs` | `Azure Key Vault` |
//! | Activity Log, diagnostic-settings export | `operationName` string with `/` (`Microsoft.KeyVault/vaults/delete`) | `Azure Activity` |
//! | Activity Log, REST / CLI | `operationName: {value}`, `eventTimestamp` | `Azure Activity` |
//! | Activity Log, Python SDK snake_case | `operation_name: {value}`, `event_timestamp` | `Azure Activity` |
//! | Log Analytics `AzureActivity` row | `Type` = `AzureActivity`, `OperationNameValue` | `Azure Activity` |
//!
//! Anything else Azure-shaped (sign-in logs, storage logs, other resource providers' Activity
//! operations, Key Vault's `AzurePolicyEvaluationDetails` category) is
//! [`SkipReason::NotKms`]. Diagnostic settings written or deleted on a vault are
//! `LoggingChange`; role assignments scoped to a vault or key are `UpdateKeyPolicy`; both are
//! Key Vault events (`related: false`). A `Microsoft.Storage/storageAccounts/write` whose
//! request body switches the account to a customer-managed Key Vault key is a related event
//! (`related: true`, `kms.operation` = `Other`, `kms.key` = that key); see
//! [`storage`](self::storage). Every other storage write is `NotKms`.
//!
//! ## Fields
//!
//! - `time`: `time` / `TimeGenerated` / `eventTimestamp` / `event_timestamp`.
//! - `metadata.uid`: Log Analytics `_ItemId` when the row has it; Activity `eventDataId`;
//!   otherwise `correlationId@time` (time as `YYYY-MM-DDTHH:MM:SS.mmmZ`); when the record has
//!   no correlation id either, `azure:` + a 64-bit FNV-1a hash of the record's bytes (stable
//!   across replays). Key Vault's `properties.id` is the *object* URL, not an event id, so it
//!   is not used.
//! - `cloud.account.uid`: the subscription (explicit field, else from the ARM resource id),
//!   lowercased. `cloud.region`: `location` when present.
//! - `api.operation`: the native operation name; `api.service.name`: `Microsoft.KeyVault` for
//!   resource logs, the operation's resource provider for Activity entries;
//!   `api.request.uid`: the correlation id.
//! - `status`: `Failure` for `Failed`/`Failure`, an HTTP status ≥ 400 or an HTTP reason phrase
//!   of one (`Forbidden`, `Unauthorized`, ...); `status_detail` (failures only): the result
//!   signature, else the HTTP status, else the Activity sub-status.
//! - `actor`: see [`classify`](self::classify) (token claims → human / service / cloud service).
//! - `src_endpoint.ip`: caller IP; `http_request.user_agent`: Key Vault `clientInfo`.
//! - `kms.key` for keys: `https://VAULT.vault.azure.net/keys/NAME` (+ version); secrets,
//!   certificates and vault-level operations put `https://VAULT.../secrets/NAME`,
//!   `.../certificates/NAME` or the vault URL `https://VAULT.vault.azure.net/` in
//!   `kms.object_uid`. See [`identity`](self::identity) for canonical forms.
//!
//! ## Known gaps
//!
//! - `DisableKeyRotation` is never produced: `KeyRotationPolicySet` records carry no request
//!   body, so a policy that removes the `Rotate` lifetime action looks the same as one that
//!   adds it; every policy write is `EnableKeyRotation`.
//! - Activity entries name a vault by ARM id only; the vault URL assumes the public cloud.
//! - `kms.cross_account` is always false: a Key Vault record does not say which tenant owns
//!   the vault, only the caller's.

mod classify;
mod identity;
mod json;
pub mod mapping;
mod storage;
#[cfg(test)]
mod tests;

pub use classify::{first_party_app, FIRST_PARTY_APPS};

use crate::{Normalizer, Outcome, Record, RecordError, RejectReason, SkipReason};
use classify::{Claims, Hints};
use identity::{ObjectKind, ObjectRef};
use json::{Localized, Pairs, Text};
use kmswatch_model::{Account, Event, Key, KmsOperation, Product, Provider, Request, Status};
use mapping::ArmOp;
use serde::Deserialize;
use std::borrow::Cow;

/// `metadata.product.name` of Key Vault resource logs.
pub const PRODUCT_KEY_VAULT: &str = "Azure Key Vault";
/// `metadata.product.name` of Activity Log entries.
pub const PRODUCT_ACTIVITY: &str = "Azure Activity";
/// `metadata.log_format` of Key Vault resource logs.
pub const FORMAT_KEY_VAULT: &str = "azure_keyvault";
/// `metadata.log_format` of Activity Log entries.
pub const FORMAT_ACTIVITY: &str = "azure_activity";

/// Cheap test on top-level field names: is this one of the Azure record shapes above?
/// (Used by the document reader's auto-detection; says nothing about Key Vault.)
pub fn looks_like(rec: &Record<'_>) -> bool {
    let has = |k: &str| rec.field(k).is_some();
    if let Some(t) = rec.str_field("Type") {
        if matches!(&*t, "AZKVAuditLogs" | "AzureDiagnostics" | "AzureActivity") {
            return true;
        }
    }
    (has("operationName") && (has("resourceId") || has("category") || has("eventTimestamp")))
        || (has("OperationName") && (has("ResourceProvider") || has("TimeGenerated")))
        || (has("operation_name") && has("event_timestamp"))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// Key Vault resource log in any of its three spellings.
    KeyVault(KvStyle),
    /// Activity Log in any of its spellings.
    Activity,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KvStyle {
    /// `AuditEvent` record as written to storage / Event Hubs.
    Json,
    /// AzureDiagnostics row.
    Diagnostics,
    /// AZKVAuditLogs row.
    Table,
}

fn shape(rec: &Record<'_>) -> Option<Shape> {
    let has = |k: &str| rec.field(k).is_some();
    match rec.str_field("Type").as_deref() {
        Some("AZKVAuditLogs") => return Some(Shape::KeyVault(KvStyle::Table)),
        Some("AzureActivity") => return Some(Shape::Activity),
        _ => {}
    }
    if has("operation_name") || has("OperationNameValue") {
        return Some(Shape::Activity);
    }
    if has("OperationName") {
        return Some(Shape::KeyVault(KvStyle::Diagnostics));
    }
    let op = rec.field("operationName")?;
    if op.first() == Some(&b'{') || has("eventTimestamp") {
        return Some(Shape::Activity);
    }
    match text(rec, "operationName") {
        Some(s) if s.contains('/') => Some(Shape::Activity),
        _ => Some(Shape::KeyVault(KvStyle::Json)),
    }
}

/// Normalize one Azure record (the record itself, envelopes already removed).
pub fn normalize(_n: &Normalizer, rec: &Record<'_>) -> Result<Outcome, RecordError> {
    match shape(rec) {
        Some(Shape::KeyVault(style)) => key_vault(rec, style),
        Some(Shape::Activity) => activity(rec),
        None => Err(RecordError::new(
            RejectReason::UnknownFormat,
            "not an Azure Key Vault or Activity Log record (no operationName, OperationName, \
             operation_name or Type field)",
        )),
    }
}

// ---- field access -----------------------------------------------------------------------

/// A top-level scalar as text (strings borrowed when unescaped, numbers as written).
fn text<'a>(rec: &Record<'a>, key: &str) -> Option<Cow<'a, str>> {
    let v = rec.field(key)?;
    if let Some(s) = rec.plain_str(v) {
        return Some(Cow::Borrowed(s)).filter(|s| !s.trim().is_empty());
    }
    serde_json::from_slice::<Text<'a>>(v).ok()?.get()
}

/// The first of several spellings that is present and non-empty.
fn first<'a>(rec: &Record<'a>, keys: &[&str]) -> Option<Cow<'a, str>> {
    keys.iter().find_map(|k| text(rec, k))
}

/// A nested object field, read leniently: absent, null, or not an object → default;
/// malformed JSON inside → rejected.
fn nested<'a, T: Deserialize<'a> + Default>(rec: &Record<'a>, key: &str) -> Result<T, RecordError> {
    match rec.field(key) {
        Some(v) if v.first() == Some(&b'{') => serde_json::from_slice(v).map_err(|e| {
            let e = RecordError::from_json(e);
            RecordError::new(e.reason, format!("{key}: {}", e.detail))
        }),
        _ => Ok(T::default()),
    }
}

fn first_nested<'a, T: Deserialize<'a> + Default>(
    rec: &Record<'a>,
    keys: &[&str],
) -> Result<T, RecordError> {
    for k in keys {
        if rec.field(k).is_some_and(|v| v.first() == Some(&b'{')) {
            return nested(rec, k);
        }
    }
    Ok(T::default())
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct IdentityObj<'a> {
    #[serde(borrow)]
    claim: Pairs<'a>,
    #[serde(borrow)]
    claims: Pairs<'a>,
    #[serde(borrow)]
    authorization: Authorization<'a>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Authorization<'a> {
    #[serde(borrow)]
    scope: Text<'a>,
    #[serde(borrow)]
    evidence: Evidence<'a>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct Evidence<'a> {
    #[serde(borrow)]
    principal_type: Text<'a>,
    #[serde(borrow)]
    principal_id: Text<'a>,
    #[serde(borrow)]
    role_assignment_scope: Text<'a>,
}

/// An identity object read in one pass: the members of `claim` and of `claims`, the object's
/// own scalar members (a flat claim set), and `authorization.evidence`. A `claim`, `claims`
/// or `authorization` that is a scalar counts as a flat member, as any other scalar.
#[derive(Debug, Default)]
struct Identity<'a> {
    claim: Vec<(Cow<'a, str>, Cow<'a, str>)>,
    claims: Vec<(Cow<'a, str>, Cow<'a, str>)>,
    flat: Vec<(Cow<'a, str>, Cow<'a, str>)>,
    authorization: Authorization<'a>,
}

impl<'a> Identity<'a> {
    /// Every claim, in the order they are absorbed: `claim`, `claims`, then the flat ones.
    fn pairs(self) -> impl Iterator<Item = (Cow<'a, str>, Cow<'a, str>)> {
        self.claim.into_iter().chain(self.claims).chain(self.flat)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Identity<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::{IgnoredAny, MapAccess, Visitor};
        use std::marker::PhantomData;

        /// An object member's value: an object read as `T`, or a scalar as text.
        enum Member<'a, T> {
            Object(T),
            Scalar(Text<'a>),
        }
        struct MemberVisitor<'a, T>(PhantomData<(&'a (), T)>);
        impl<'de: 'a, 'a, T: Deserialize<'de>> Visitor<'de> for MemberVisitor<'a, T> {
            type Value = Member<'a, T>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_map<A: MapAccess<'de>>(self, a: A) -> Result<Self::Value, A::Error> {
                T::deserialize(serde::de::value::MapAccessDeserializer::new(a)).map(Member::Object)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut a: A,
            ) -> Result<Self::Value, A::Error> {
                while a.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Member::Scalar(Text(None)))
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Member::Scalar(Text(Some(Cow::Borrowed(v)))))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Text::deserialize(serde::de::value::StrDeserializer::<E>::new(v))
                    .map(Member::Scalar)
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Text::deserialize(serde::de::value::I64Deserializer::<E>::new(v))
                    .map(Member::Scalar)
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Text::deserialize(serde::de::value::U64Deserializer::<E>::new(v))
                    .map(Member::Scalar)
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Self::Value, E> {
                Text::deserialize(serde::de::value::F64Deserializer::<E>::new(v))
                    .map(Member::Scalar)
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Self::Value, E> {
                Text::deserialize(serde::de::value::BoolDeserializer::<E>::new(v))
                    .map(Member::Scalar)
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(Member::Scalar(Text(None)))
            }
            fn visit_none<E>(self) -> Result<Self::Value, E> {
                Ok(Member::Scalar(Text(None)))
            }
        }
        impl<'de: 'a, 'a, T: Deserialize<'de>> Deserialize<'de> for Member<'a, T> {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                d.deserialize_any(MemberVisitor(PhantomData))
            }
        }

        struct IdentityVisitor<'a>(PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for IdentityVisitor<'a> {
            type Value = Identity<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an identity object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Self::Value, A::Error> {
                let mut out = Identity::default();
                while let Some(k) = a.next_key::<Text<'a>>()? {
                    let Some(k) = k.0 else {
                        a.next_value::<IgnoredAny>()?;
                        continue;
                    };
                    let scalar = match k.as_ref() {
                        "claim" | "claims" => match a.next_value::<Member<'a, Pairs<'a>>>()? {
                            Member::Object(p) if k == "claim" => {
                                out.claim.extend(p.0);
                                continue;
                            }
                            Member::Object(p) => {
                                out.claims.extend(p.0);
                                continue;
                            }
                            Member::Scalar(t) => t,
                        },
                        "authorization" => {
                            match a.next_value::<Member<'a, Authorization<'a>>>()? {
                                Member::Object(auth) => {
                                    out.authorization = auth;
                                    continue;
                                }
                                Member::Scalar(t) => t,
                            }
                        }
                        _ => a.next_value::<Text<'a>>()?,
                    };
                    if let Some(v) = scalar.0 {
                        out.flat.push((k, v));
                    }
                }
                Ok(out)
            }
        }
        d.deserialize_map(IdentityVisitor(PhantomData))
    }
}

/// Claims from an identity object (`identity`, `Identity`): `{"claim":{..}}`, `{"claims":{..}}`
/// or the claims themselves. Also accepts the object JSON-encoded in a string (Log Analytics
/// `dynamic` columns as some exporters write them).
fn identity_into<'a>(
    rec: &Record<'a>,
    key: &str,
    claims: &mut Claims<'a>,
    hints: &mut Hints<'a>,
) -> Result<(), RecordError> {
    let Some(v) = rec.field(key) else {
        return Ok(());
    };
    if v.first() == Some(&b'"') {
        let Ok(s) = serde_json::from_slice::<String>(v) else {
            return Ok(());
        };
        if !s.trim_start().starts_with('{') {
            return Ok(());
        }
        let obj: Identity<'_> = serde_json::from_str(&s).unwrap_or_default();
        for (k, v) in obj.pairs() {
            claims.absorb(&k, Cow::Owned(v.into_owned()));
        }
        return Ok(());
    }
    if v.first() != Some(&b'{') {
        return Ok(());
    }
    // One parse: the claim sets, the flat claims and the authorization evidence together.
    let mut obj: Identity<'a> = nested(rec, key)?;
    let ev = std::mem::take(&mut obj.authorization.evidence);
    for (k, v) in obj.pairs() {
        claims.absorb(&k, v);
    }
    if hints.principal_type.is_none() {
        hints.principal_type = ev.principal_type.get();
    }
    if hints.principal_id.is_none() {
        hints.principal_id = ev.principal_id.get();
    }
    Ok(())
}

fn claims_into<'a>(
    rec: &Record<'a>,
    key: &str,
    claims: &mut Claims<'a>,
) -> Result<(), RecordError> {
    let p: Pairs<'a> = nested(rec, key)?;
    for (k, v) in p.0 {
        claims.absorb(&k, v);
    }
    Ok(())
}

// ---- common event assembly --------------------------------------------------------------

/// What both kinds of record contribute to the event.
#[derive(Debug, Default)]
struct Common<'a> {
    time: Option<Cow<'a, str>>,
    op: Cow<'a, str>,
    service: String,
    failed: bool,
    status_detail: Option<Cow<'a, str>>,
    uid: Option<Cow<'a, str>>,
    correlation_id: Option<Cow<'a, str>>,
    subscription: Option<String>,
    region: Option<Cow<'a, str>>,
    caller_ip: Option<Cow<'a, str>>,
    user_agent: Option<Cow<'a, str>>,
    claims: Claims<'a>,
    hints: Hints<'a>,
}

fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

fn build(
    rec: &Record<'_>,
    c: Common<'_>,
    op: KmsOperation,
    target: Option<ObjectRef>,
    product: &str,
    format: &str,
) -> Result<Outcome, RecordError> {
    let time_s = c.time.ok_or_else(|| {
        RecordError::missing("time (time, TimeGenerated, eventTimestamp or event_timestamp)")
    })?;
    let time = crate::time::parse_millis(&time_s).ok_or_else(|| {
        RecordError::new(
            RejectReason::BadValue,
            format!("time {time_s:?} is not an ISO 8601 timestamp"),
        )
    })?;
    let raw = rec.to_raw()?;
    let mut ev = Event::new(time, op, raw);

    ev.metadata.uid = match (&c.uid, &c.correlation_id) {
        (Some(u), _) => u.to_string(),
        (None, Some(corr)) => {
            let mut uid = String::with_capacity(corr.len() + 25);
            uid.push_str(corr);
            uid.push('@');
            crate::time::push_millis(&mut uid, time);
            uid
        }
        (None, None) => format!("azure:{:016x}", fnv1a(rec.bytes)),
    };
    ev.metadata.product = Product {
        name: product.to_string(),
        vendor_name: "Microsoft".to_string(),
    };
    ev.metadata.log_format = format.to_string();

    ev.cloud.provider = Provider::Azure;
    ev.cloud.region = c.region.map(Cow::into_owned);
    ev.cloud.account = Account {
        uid: c.subscription.clone(),
    };

    ev.api.operation = c.op.into_owned();
    ev.api.service.name = c.service;
    ev.api.request = c.correlation_id.map(|u| Request {
        uid: u.into_owned(),
    });

    if c.failed {
        ev.status = Status::Failure;
        ev.status_detail = c.status_detail.map(Cow::into_owned);
    }

    let p = classify::classify(&c.claims, &c.hints);
    ev.actor.user = p.user;
    ev.actor.invoked_by = p.invoked_by;
    ev.actor.kind = p.kind;
    ev.src_endpoint.ip = c.caller_ip.map(Cow::into_owned);
    ev.http_request.user_agent = c.user_agent.map(Cow::into_owned);

    if let Some(t) = target {
        if t.kind == ObjectKind::Key {
            ev.kms.key = Some(Key {
                uid: t.uid(),
                version: t.version.clone(),
                account_uid: c.subscription,
            });
        } else {
            ev.kms.object_uid = Some(t.uid());
        }
    }
    Ok(Outcome::Event {
        event: Box::new(ev),
        related: false,
    })
}

/// HTTP reason phrases Key Vault writes in `resultSignature` for 4xx/5xx answers.
const FAILURE_SIGNATURES: &[&str] = &[
    "BadRequest",
    "Unauthorized",
    "Forbidden",
    "NotFound",
    "MethodNotAllowed",
    "Conflict",
    "Gone",
    "PreconditionFailed",
    "TooManyRequests",
    "InternalServerError",
    "NotImplemented",
    "BadGateway",
    "ServiceUnavailable",
    "GatewayTimeout",
];

fn is_failure_type(t: &str) -> bool {
    let t = t.trim();
    t.eq_ignore_ascii_case("Failed")
        || t.eq_ignore_ascii_case("Failure")
        || t.eq_ignore_ascii_case("Fail")
        || t.eq_ignore_ascii_case("Error")
}

/// An HTTP status in a signature (`403`, `Failed.Forbidden`, `Forbidden`), as a number when
/// it is one, else whether its reason phrase is a failure.
fn signature_fails(sig: &str) -> bool {
    let last = sig.rsplit('.').next().unwrap_or(sig).trim();
    if let Ok(n) = last.parse::<u32>() {
        return n >= 400;
    }
    FAILURE_SIGNATURES
        .iter()
        .any(|f| f.eq_ignore_ascii_case(last))
        || sig
            .split('.')
            .next()
            .is_some_and(|h| h.eq_ignore_ascii_case("Failed"))
}

fn http_status(s: Option<&str>) -> Option<u32> {
    let s = s?.trim();
    s.parse::<u32>()
        .ok()
        .or_else(|| s.parse::<f64>().ok().map(|f| f as u32))
}

// ---- Key Vault resource logs ------------------------------------------------------------

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct KvProperties<'a> {
    #[serde(borrow)]
    id: Text<'a>,
    #[serde(borrow)]
    request_uri: Text<'a>,
    #[serde(borrow)]
    client_info: Text<'a>,
    #[serde(borrow)]
    http_status_code: Text<'a>,
}

fn key_vault(rec: &Record<'_>, style: KvStyle) -> Result<Outcome, RecordError> {
    let Some(op) = first(rec, &["operationName", "OperationName"]) else {
        return Err(RecordError::missing("operationName"));
    };
    let resource_id = first(rec, &["resourceId", "ResourceId", "_ResourceId"]);
    let rid_is_kv = resource_id
        .as_deref()
        .is_some_and(identity::is_key_vault_scope);
    let category = first(rec, &["category", "Category"]);
    let category_ok = category
        .as_deref()
        .map(|c| c.eq_ignore_ascii_case("AuditEvent"));
    let is_kv = match style {
        KvStyle::Table => true,
        KvStyle::Diagnostics => {
            let rp_kv = text(rec, "ResourceProvider")
                .is_some_and(|p| p.eq_ignore_ascii_case("MICROSOFT.KEYVAULT"));
            (rp_kv || rid_is_kv) && category_ok != Some(false)
        }
        KvStyle::Json => match category_ok {
            Some(ok) => ok && (resource_id.is_none() || rid_is_kv),
            None => rid_is_kv && mapping::resource_log_operation(&op).is_some(),
        },
    };
    if !is_kv {
        return Ok(Outcome::Skip(SkipReason::NotKms));
    }
    // A kept record: UTF-8 checked once, for the fields read below and for `raw`.
    let rec = &rec.checked()?;

    let props: KvProperties<'_> = first_nested(rec, &["properties", "Properties"])?;
    let obj_id = props.id.get().or_else(|| first(rec, &["id_s", "Id"]));
    let request_uri = props
        .request_uri
        .get()
        .or_else(|| first(rec, &["requestUri_s", "RequestUri"]));
    let http = props
        .http_status_code
        .get()
        .or_else(|| first(rec, &["httpStatusCode_d", "HttpStatusCode"]));
    let result_type = first(rec, &["resultType", "ResultType"]);
    let signature = first(rec, &["resultSignature", "ResultSignature"]);
    let http_n = http_status(http.as_deref());

    let failed = result_type.as_deref().is_some_and(is_failure_type)
        || http_n.is_some_and(|n| n >= 400)
        || signature.as_deref().is_some_and(signature_fails);

    let mut claims = Claims::default();
    let mut hints = Hints::default();
    identity_into(rec, "identity", &mut claims, &mut hints)?;
    identity_into(rec, "Identity", &mut claims, &mut hints)?;
    if style == KvStyle::Diagnostics {
        for (k, _) in rec.fields {
            if k.starts_with(b"identity_claim_") {
                if let Ok(name) = std::str::from_utf8(k) {
                    if let Some(v) = text(rec, name) {
                        claims.absorb_column(name, v);
                    }
                }
            }
        }
    }
    if style == KvStyle::Json {
        // The workspace id in Log Analytics rows' `TenantId` is not the caller's tenant.
        hints.tenant = text(rec, "tenantId");
    }
    hints.maybe_anonymous = op.eq_ignore_ascii_case("Authentication")
        || http_n == Some(401)
        || signature
            .as_deref()
            .is_some_and(|s| s.eq_ignore_ascii_case("Unauthorized"));

    let subscription = first(
        rec,
        &["SubscriptionId", "_SubscriptionId", "subscriptionId"],
    )
    .map(|s| s.to_ascii_lowercase())
    .or_else(|| {
        resource_id
            .as_deref()
            .and_then(identity::subscription_from_arm)
    });

    // The most specific object named: the returned id, else the request URI, else the vault
    // from the ARM resource id.
    let from_id = obj_id.as_deref().and_then(identity::object_from_url);
    let from_uri = request_uri.as_deref().and_then(identity::object_from_url);
    let target = match (from_id, from_uri) {
        (Some(a), Some(b)) if a.name.is_none() && b.name.is_some() => Some(b),
        (Some(a), _) => Some(a),
        (None, Some(b)) => Some(b),
        (None, None) => resource_id.as_deref().and_then(identity::object_from_arm),
    };

    let kop = mapping::resource_log_operation(&op).unwrap_or(KmsOperation::Other);
    let correlation_id = first(rec, &["correlationId", "CorrelationId"]);
    let c = Common {
        time: first(rec, &["time", "TimeGenerated"]),
        service: "Microsoft.KeyVault".to_string(),
        failed,
        status_detail: signature.or(http),
        uid: text(rec, "_ItemId"),
        correlation_id,
        subscription,
        region: first(rec, &["location", "Location"]),
        caller_ip: first(
            rec,
            &["callerIpAddress", "CallerIPAddress", "CallerIpAddress"],
        ),
        user_agent: props
            .client_info
            .get()
            .or_else(|| first(rec, &["clientInfo_s", "ClientInfo"])),
        claims,
        hints,
        op,
    };
    build(rec, c, kop, target, PRODUCT_KEY_VAULT, FORMAT_KEY_VAULT)
}

// ---- Activity Log ----------------------------------------------------------------------

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct HttpRequestObj<'a> {
    #[serde(borrow, alias = "client_ip_address", rename = "clientIpAddress")]
    client_ip: Text<'a>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ActivityProperties<'a> {
    #[serde(borrow, rename = "statusCode")]
    status_code: Text<'a>,
}

fn localized<'a>(rec: &Record<'a>, keys: &[&str]) -> Result<Option<Cow<'a, str>>, RecordError> {
    for k in keys {
        if let Some(v) = rec.field(k) {
            let l: Localized<'a> = serde_json::from_slice(v).map_err(|e| {
                let e = RecordError::from_json(e);
                RecordError::new(e.reason, format!("{k}: {}", e.detail))
            })?;
            if l.0.is_some() {
                return Ok(l.0);
            }
        }
    }
    Ok(None)
}

fn activity(rec: &Record<'_>) -> Result<Outcome, RecordError> {
    let Some(op) = localized(
        rec,
        &["operationName", "operation_name", "OperationNameValue"],
    )?
    else {
        return Err(RecordError::missing("operationName"));
    };
    let Some(arm) = mapping::arm_operation(&op) else {
        return Ok(Outcome::Skip(SkipReason::NotKms));
    };
    let storage_key = match arm {
        ArmOp::StorageAccountWrite => match storage::cmk_key(rec) {
            Some(k) => Some(k),
            None => return Ok(Outcome::Skip(SkipReason::NotKms)),
        },
        _ => None,
    };
    let resource_id = first(
        rec,
        &["resourceId", "resource_id", "ResourceId", "_ResourceId"],
    );

    let mut claims = Claims::default();
    let mut hints = Hints::default();
    let identity: IdentityObj<'_> = nested(rec, "identity")?;
    for (k, v) in identity.claims.0.into_iter().chain(identity.claim.0) {
        claims.absorb(&k, v);
    }
    claims_into(rec, "claims", &mut claims)?;
    claims_into(rec, "Claims", &mut claims)?;
    claims_into(rec, "Claims_d", &mut claims)?;
    let ev = identity.authorization.evidence;
    hints.principal_type = ev.principal_type.get();
    hints.principal_id = ev.principal_id.get();
    hints.caller = first(rec, &["caller", "Caller"]);
    hints.tenant = first(rec, &["tenantId", "tenant_id"]);

    let top_auth: Authorization<'_> =
        first_nested(rec, &["authorization", "Authorization", "Authorization_d"])?;
    let scopes = [
        resource_id.clone(),
        top_auth.scope.get(),
        identity.authorization.scope.get(),
        ev.role_assignment_scope.get(),
    ];
    let target = match storage_key {
        Some(k) => Some(k),
        None => scopes
            .iter()
            .flatten()
            .find_map(|s| identity::object_from_arm(s)),
    };

    let kop = match arm {
        ArmOp::KeyVault(k) => k,
        ArmOp::DiagnosticSetting | ArmOp::RoleAssignment if target.is_none() => {
            return Ok(Outcome::Skip(SkipReason::NotKms))
        }
        ArmOp::DiagnosticSetting => KmsOperation::LoggingChange,
        ArmOp::RoleAssignment => KmsOperation::UpdateKeyPolicy,
        ArmOp::StorageAccountWrite => KmsOperation::Other,
    };

    let status = match first(rec, &["resultType", "ActivityStatusValue"]) {
        Some(s) => Some(s),
        None => localized(rec, &["status"])?,
    };
    let sub_status = match first(rec, &["resultSignature", "ActivitySubstatusValue"]) {
        Some(s) => Some(s),
        None => localized(rec, &["subStatus", "sub_status"])?,
    };
    let props: ActivityProperties<'_> = first_nested(rec, &["properties", "Properties_d"])?;
    let status_code = props.status_code.get();
    let failed = status.as_deref().is_some_and(is_failure_type)
        || sub_status.as_deref().is_some_and(signature_fails)
        || status_code.as_deref().is_some_and(signature_fails);

    let http: HttpRequestObj<'_> = first_nested(rec, &["httpRequest", "http_request"])?;
    let subscription = first(
        rec,
        &["subscriptionId", "subscription_id", "SubscriptionId"],
    )
    .map(|s| s.to_ascii_lowercase())
    .or_else(|| {
        resource_id
            .as_deref()
            .and_then(identity::subscription_from_arm)
    });

    let c = Common {
        time: first(
            rec,
            &["time", "eventTimestamp", "event_timestamp", "TimeGenerated"],
        ),
        service: identity::provider_of(&op),
        failed,
        status_detail: sub_status.or(status_code),
        uid: first(rec, &["eventDataId", "event_data_id", "EventDataId"]),
        correlation_id: first(rec, &["correlationId", "correlation_id", "CorrelationId"]),
        subscription,
        region: first(rec, &["location", "Location"]),
        caller_ip: first(rec, &["callerIpAddress", "CallerIpAddress"]).or(http.client_ip.get()),
        user_agent: None,
        claims,
        hints,
        op,
    };
    let out = build(rec, c, kop, target, PRODUCT_ACTIVITY, FORMAT_ACTIVITY)?;
    if arm != ArmOp::StorageAccountWrite {
        return Ok(out);
    }
    // The vault may be in another subscription than the storage account: owner unknown.
    Ok(match out {
        Outcome::Event { mut event, .. } => {
            if let Some(k) = event.kms.key.as_mut() {
                k.account_uid = None;
            }
            Outcome::Event {
                event,
                related: true,
            }
        }
        other => other,
    })
}
