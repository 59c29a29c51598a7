//! How the engine reads an event: the [`Document`] trait, resolved [`FieldPath`]s and borrowed
//! [`FieldValue`]s.
//!
//! A rule's field names are resolved once, when the rule is loaded: a field of the normalized
//! event becomes an [`EventField`] (an enum the event is matched against with one `match`), an
//! enrichment field an [`EnrichmentField`], and a provider field a pre-split JSON path. Reading a
//! field never copies or allocates.

use kmswatch_model::Event;
use serde_json::{Map, Value};

/// A value read from a document, borrowed from it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FieldValue<'a> {
    /// The field is not there.
    Absent,
    /// The field is there and is `null`.
    Null,
    /// A boolean.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A number that is not an `i64`.
    Float(f64),
    /// A string.
    Str(&'a str),
    /// A list: a value matches when any element matches.
    List(&'a [Value]),
    /// A list of strings from the normalized event (`kms.grantees`): matches like `List`.
    StrList(&'a [String]),
    /// A nested object (exists, but matches no value).
    Object(&'a Map<String, Value>),
}

impl<'a> FieldValue<'a> {
    /// A JSON value as a field value.
    pub fn from_json(v: &'a Value) -> FieldValue<'a> {
        match v {
            Value::Null => FieldValue::Null,
            Value::Bool(b) => FieldValue::Bool(*b),
            Value::Number(n) => match n.as_i64() {
                Some(i) => FieldValue::Int(i),
                None => FieldValue::Float(n.as_f64().unwrap_or(f64::NAN)),
            },
            Value::String(s) => FieldValue::Str(s),
            Value::Array(a) => FieldValue::List(a),
            Value::Object(o) => FieldValue::Object(o),
        }
    }

    fn opt_str(s: &'a Option<String>) -> FieldValue<'a> {
        match s {
            Some(s) => FieldValue::Str(s),
            None => FieldValue::Absent,
        }
    }

    fn opt_bool(b: Option<bool>) -> FieldValue<'a> {
        match b {
            Some(b) => FieldValue::Bool(b),
            None => FieldValue::Absent,
        }
    }
}

/// Enrichment computed beside the event (off-hours calendar, first-seen baselines, known
/// principals) and addressable by rules as `kmswatch.*`. `None` reads as an absent field.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Enrichment {
    /// `kmswatch.off_hours`: the event falls outside the configured business hours.
    pub off_hours: Option<bool>,
    /// `kmswatch.first_seen`: first time this principal used this key (baseline).
    pub first_seen: Option<bool>,
    /// `kmswatch.principal_known`: the principal is in the configured inventory.
    pub principal_known: Option<bool>,
}

/// A field of the enrichment record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EnrichmentField {
    /// `kmswatch.off_hours`
    OffHours,
    /// `kmswatch.first_seen`
    FirstSeen,
    /// `kmswatch.principal_known`
    PrincipalKnown,
}

macro_rules! event_fields {
    ($( $name:literal => $variant:ident ),* $(,)?) => {
        /// A field of the normalized [`Event`], by its dotted name in `DESIGN.md`.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[allow(missing_docs)]
        pub enum EventField { $( $variant, )* }

        impl EventField {
            /// Every addressable field of the normalized event.
            pub const ALL: &'static [EventField] = &[ $(EventField::$variant,)* ];

            /// The dotted name.
            pub const fn name(self) -> &'static str {
                match self { $(EventField::$variant => $name,)* }
            }

            /// Resolve a dotted name (exact, case-sensitive).
            pub fn parse(name: &str) -> Option<EventField> {
                match name { $($name => Some(EventField::$variant),)* _ => None }
            }
        }
    };
}

event_fields! {
    "class_uid" => ClassUid,
    "category_uid" => CategoryUid,
    "activity_id" => ActivityId,
    "type_uid" => TypeUid,
    "time" => Time,
    "metadata.uid" => MetadataUid,
    "metadata.product.name" => ProductName,
    "metadata.product.vendor_name" => ProductVendorName,
    "metadata.log_format" => LogFormat,
    "metadata.version" => MetadataVersion,
    "cloud.provider" => CloudProvider,
    "cloud.region" => CloudRegion,
    "cloud.account.uid" => CloudAccountUid,
    "api.operation" => ApiOperation,
    "api.service.name" => ApiServiceName,
    "api.request.uid" => ApiRequestUid,
    "status" => Status,
    "status_detail" => StatusDetail,
    "actor.user.uid" => ActorUserUid,
    "actor.user.name" => ActorUserName,
    "actor.user.type" => ActorUserType,
    "actor.user.account.uid" => ActorUserAccountUid,
    "actor.invoked_by" => ActorInvokedBy,
    "actor.kind" => ActorKind,
    "actor.session.issuer" => ActorSessionIssuer,
    "actor.session.is_mfa" => ActorSessionIsMfa,
    "actor.impersonator.uid" => ActorImpersonatorUid,
    "actor.impersonator.name" => ActorImpersonatorName,
    "actor.impersonator.type" => ActorImpersonatorType,
    "actor.impersonator.account.uid" => ActorImpersonatorAccountUid,
    "src_endpoint.ip" => SrcEndpointIp,
    "http_request.user_agent" => HttpUserAgent,
    "kms.operation" => KmsOperation,
    "kms.key.uid" => KmsKeyUid,
    "kms.key.version" => KmsKeyVersion,
    "kms.key.account_uid" => KmsKeyAccountUid,
    "kms.cross_account" => KmsCrossAccount,
    "kms.pending_window_days" => KmsPendingWindowDays,
    "kms.object_uid" => KmsObjectUid,
    "kms.grantees" => KmsGrantees,
    "kms.policy.public" => KmsPolicyPublic,
    "kms.policy.external_accounts" => KmsPolicyExternalAccounts,
}

/// A field name resolved at load time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldPath {
    name: Box<str>,
    kind: PathKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum PathKind {
    Event(EventField),
    Enrichment(EnrichmentField),
    Json(JsonPath),
}

/// For one start segment: every (end segment, joined key), longest first.
type JoinedKeys = Box<[(usize, Box<str>)]>;

/// A dotted path into a JSON object. Each split of the name into keys is tried, longest key
/// first, so `a.b.c` finds `{"a":{"b":{"c":..}}}`, `{"a.b":{"c":..}}` and `{"a.b.c":..}`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct JsonPath {
    /// The name itself (the whole name as one literal key).
    segments: Box<[Box<str>]>,
    /// `joined[i]`: for the keys starting at segment `i`, every (end, joined key), longest first.
    joined: Box<[JoinedKeys]>,
    /// Alternative paths tried in order when this one is absent (logsource field mappings).
    fallbacks: Box<[JsonPath]>,
}

impl JsonPath {
    fn new(name: &str, fallbacks: Vec<JsonPath>) -> JsonPath {
        let segments: Vec<Box<str>> = name.split('.').map(Box::from).collect();
        let n = segments.len();
        let joined = (0..n)
            .map(|i| {
                (i + 1..=n)
                    .rev()
                    .filter_map(|j| segments.get(i..j).map(|s| (j, Box::from(s.join(".")))))
                    .collect::<Vec<_>>()
                    .into_boxed_slice()
            })
            .collect();
        JsonPath {
            segments: segments.into_boxed_slice(),
            joined,
            fallbacks: fallbacks.into_boxed_slice(),
        }
    }

    fn lookup<'a>(&self, root: &'a Value) -> FieldValue<'a> {
        match self.walk(root, 0) {
            Some(v) => FieldValue::from_json(v),
            None => {
                for f in self.fallbacks.iter() {
                    if let Some(v) = f.walk(root, 0) {
                        return FieldValue::from_json(v);
                    }
                }
                FieldValue::Absent
            }
        }
    }

    fn walk<'a>(&self, v: &'a Value, i: usize) -> Option<&'a Value> {
        if i == self.segments.len() {
            return Some(v);
        }
        let obj = v.as_object()?;
        for (end, key) in self.joined.get(i)?.iter() {
            if let Some(child) = obj.get(&**key) {
                if let Some(found) = self.walk(child, *end) {
                    return Some(found);
                }
            }
        }
        None
    }
}

impl FieldPath {
    /// A field of the normalized event.
    pub fn event(field: EventField) -> FieldPath {
        FieldPath {
            name: field.name().into(),
            kind: PathKind::Event(field),
        }
    }

    /// An enrichment field.
    pub fn enrichment(field: EnrichmentField) -> FieldPath {
        let name = match field {
            EnrichmentField::OffHours => "kmswatch.off_hours",
            EnrichmentField::FirstSeen => "kmswatch.first_seen",
            EnrichmentField::PrincipalKnown => "kmswatch.principal_known",
        };
        FieldPath {
            name: name.into(),
            kind: PathKind::Enrichment(field),
        }
    }

    /// Resolve a name against the normalized event and its enrichment (`product: kms` rules).
    pub fn normalized(name: &str) -> Option<FieldPath> {
        if let Some(f) = EventField::parse(name) {
            return Some(FieldPath::event(f));
        }
        let e = match name {
            "kmswatch.off_hours" => EnrichmentField::OffHours,
            "kmswatch.first_seen" => EnrichmentField::FirstSeen,
            "kmswatch.principal_known" => EnrichmentField::PrincipalKnown,
            _ => return None,
        };
        Some(FieldPath::enrichment(e))
    }

    /// A dotted path into a provider's JSON record.
    pub fn json(name: &str) -> FieldPath {
        FieldPath::json_with_fallbacks(name, &[])
    }

    /// A dotted path into a JSON record, with alternative names tried when it is absent.
    pub fn json_with_fallbacks(name: &str, fallbacks: &[&str]) -> FieldPath {
        let fallbacks = fallbacks
            .iter()
            .map(|f| JsonPath::new(f, Vec::new()))
            .collect();
        FieldPath {
            name: name.into(),
            kind: PathKind::Json(JsonPath::new(name, fallbacks)),
        }
    }

    /// Relative cost of testing this field, for ordering the tests of a selection (they are
    /// ANDed and free of side effects, so the order changes no result): enrichment flags and
    /// enum- or bool-backed event fields first, other event fields, then paths into the raw
    /// record. `kms.operation` comes after the other cheap fields: the candidate index has
    /// usually checked it already, so it is the test least likely to fail.
    pub(crate) fn cost(&self) -> u8 {
        match self.kind {
            PathKind::Enrichment(_) => 0,
            PathKind::Event(
                EventField::ActorKind
                | EventField::Status
                | EventField::CloudProvider
                | EventField::KmsCrossAccount
                | EventField::ActorSessionIsMfa
                | EventField::KmsPolicyPublic,
            ) => 1,
            PathKind::Event(_) => 2,
            PathKind::Json(_) => 3,
        }
    }

    /// The name as written in the rule.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The event field this path names, when it names one.
    pub fn event_field(&self) -> Option<EventField> {
        match self.kind {
            PathKind::Event(f) => Some(f),
            _ => None,
        }
    }
}

/// Something rules can be matched against.
pub trait Document {
    /// The value at `path`, borrowed; [`FieldValue::Absent`] when this document has no such field
    /// (including paths resolved for another kind of document).
    fn get(&self, path: &FieldPath) -> FieldValue<'_>;

    /// Call `f` on every string value of the document (for keyword rules) until it returns true;
    /// return whether it did.
    fn any_string(&self, f: &mut dyn FnMut(&str) -> bool) -> bool;
}

impl Document for Value {
    fn get(&self, path: &FieldPath) -> FieldValue<'_> {
        match &path.kind {
            PathKind::Json(p) => p.lookup(self),
            _ => FieldValue::Absent,
        }
    }

    fn any_string(&self, f: &mut dyn FnMut(&str) -> bool) -> bool {
        match self {
            Value::String(s) => f(s),
            Value::Array(a) => a.iter().any(|v| v.any_string(f)),
            Value::Object(o) => o.values().any(|v| v.any_string(f)),
            _ => false,
        }
    }
}

/// A normalized event together with its enrichment, as a [`Document`].
#[derive(Debug, Clone, Copy)]
pub struct EventDocument<'a> {
    /// The event.
    pub event: &'a Event,
    /// Its enrichment.
    pub enrichment: &'a Enrichment,
}

impl EventDocument<'_> {
    fn field(&self, f: EventField) -> FieldValue<'_> {
        use FieldValue as V;
        let e = self.event;
        match f {
            EventField::ClassUid => V::Int(i64::from(e.class_uid)),
            EventField::CategoryUid => V::Int(i64::from(e.category_uid)),
            EventField::ActivityId => V::Int(i64::from(e.activity_id)),
            EventField::TypeUid => V::Int(i64::from(e.type_uid)),
            EventField::Time => V::Int(e.time),
            EventField::MetadataUid => V::Str(&e.metadata.uid),
            EventField::ProductName => V::Str(&e.metadata.product.name),
            EventField::ProductVendorName => V::Str(&e.metadata.product.vendor_name),
            EventField::LogFormat if e.metadata.log_format.is_empty() => V::Absent,
            EventField::LogFormat => V::Str(&e.metadata.log_format),
            EventField::MetadataVersion => V::Str(&e.metadata.version),
            EventField::CloudProvider => V::Str(e.cloud.provider.as_str()),
            EventField::CloudRegion => V::opt_str(&e.cloud.region),
            EventField::CloudAccountUid => V::opt_str(&e.cloud.account.uid),
            EventField::ApiOperation => V::Str(&e.api.operation),
            EventField::ApiServiceName => V::Str(&e.api.service.name),
            EventField::ApiRequestUid => match &e.api.request {
                Some(r) => V::Str(&r.uid),
                None => V::Absent,
            },
            EventField::Status => V::Str(match e.status {
                kmswatch_model::Status::Success => "Success",
                kmswatch_model::Status::Failure => "Failure",
            }),
            EventField::StatusDetail => V::opt_str(&e.status_detail),
            EventField::ActorUserUid => V::opt_str(&e.actor.user.uid),
            EventField::ActorUserName => V::opt_str(&e.actor.user.name),
            EventField::ActorUserType => V::opt_str(&e.actor.user.type_),
            EventField::ActorUserAccountUid => match &e.actor.user.account {
                Some(a) => V::opt_str(&a.uid),
                None => V::Absent,
            },
            EventField::ActorInvokedBy => V::opt_str(&e.actor.invoked_by),
            EventField::ActorKind => V::Str(e.actor.kind.as_str()),
            EventField::ActorSessionIssuer => match &e.actor.session {
                Some(s) => V::opt_str(&s.issuer),
                None => V::Absent,
            },
            EventField::ActorSessionIsMfa => match &e.actor.session {
                Some(s) => V::opt_bool(s.is_mfa),
                None => V::Absent,
            },
            EventField::ActorImpersonatorUid => match &e.actor.impersonator {
                Some(u) => V::opt_str(&u.uid),
                None => V::Absent,
            },
            EventField::ActorImpersonatorName => match &e.actor.impersonator {
                Some(u) => V::opt_str(&u.name),
                None => V::Absent,
            },
            EventField::ActorImpersonatorType => match &e.actor.impersonator {
                Some(u) => V::opt_str(&u.type_),
                None => V::Absent,
            },
            EventField::ActorImpersonatorAccountUid => {
                match e
                    .actor
                    .impersonator
                    .as_ref()
                    .and_then(|u| u.account.as_ref())
                {
                    Some(a) => V::opt_str(&a.uid),
                    None => V::Absent,
                }
            }
            EventField::SrcEndpointIp => V::opt_str(&e.src_endpoint.ip),
            EventField::HttpUserAgent => V::opt_str(&e.http_request.user_agent),
            EventField::KmsOperation => V::Str(e.kms.operation.as_str()),
            EventField::KmsKeyUid => match &e.kms.key {
                Some(k) => V::Str(&k.uid),
                None => V::Absent,
            },
            EventField::KmsKeyVersion => match &e.kms.key {
                Some(k) => V::opt_str(&k.version),
                None => V::Absent,
            },
            EventField::KmsKeyAccountUid => match &e.kms.key {
                Some(k) => V::opt_str(&k.account_uid),
                None => V::Absent,
            },
            EventField::KmsCrossAccount => V::Bool(e.kms.cross_account),
            EventField::KmsPendingWindowDays => match e.kms.pending_window_days {
                Some(d) => V::Int(i64::from(d)),
                None => V::Absent,
            },
            EventField::KmsObjectUid => V::opt_str(&e.kms.object_uid),
            EventField::KmsGrantees if e.kms.grantees.is_empty() => V::Absent,
            EventField::KmsGrantees => V::StrList(&e.kms.grantees),
            EventField::KmsPolicyPublic => match &e.kms.policy {
                Some(p) => V::Bool(p.public),
                None => V::Absent,
            },
            EventField::KmsPolicyExternalAccounts => match &e.kms.policy {
                Some(p) if !p.external_accounts.is_empty() => V::StrList(&p.external_accounts),
                _ => V::Absent,
            },
        }
    }
}

impl Document for EventDocument<'_> {
    fn get(&self, path: &FieldPath) -> FieldValue<'_> {
        match &path.kind {
            PathKind::Event(f) => self.field(*f),
            PathKind::Enrichment(f) => FieldValue::opt_bool(match f {
                EnrichmentField::OffHours => self.enrichment.off_hours,
                EnrichmentField::FirstSeen => self.enrichment.first_seen,
                EnrichmentField::PrincipalKnown => self.enrichment.principal_known,
            }),
            PathKind::Json(_) => FieldValue::Absent,
        }
    }

    fn any_string(&self, f: &mut dyn FnMut(&str) -> bool) -> bool {
        EventField::ALL
            .iter()
            .any(|field| match self.field(*field) {
                FieldValue::Str(s) => f(s),
                _ => false,
            })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_paths_nested_and_literal_dots() {
        let v = json!({"a": {"b": {"c": 1}}, "x.y": "lit", "p": {"q.r": "mixed"}, "l": [1, 2]});
        assert_eq!(
            Document::get(&v, &FieldPath::json("a.b.c")),
            FieldValue::Int(1)
        );
        assert_eq!(
            Document::get(&v, &FieldPath::json("x.y")),
            FieldValue::Str("lit")
        );
        assert_eq!(
            Document::get(&v, &FieldPath::json("p.q.r")),
            FieldValue::Str("mixed")
        );
        assert_eq!(
            Document::get(&v, &FieldPath::json("a.b.d")),
            FieldValue::Absent
        );
        assert!(
            matches!(Document::get(&v, &FieldPath::json("l")), FieldValue::List(l) if l.len() == 2)
        );
        let alias = FieldPath::json_with_fallbacks("gcp.audit.method_name", &["a.b.c"]);
        assert_eq!(Document::get(&v, &alias), FieldValue::Int(1));
        assert_eq!(
            Document::get(&v, &FieldPath::normalized("kms.operation").unwrap()),
            FieldValue::Absent
        );
    }

    #[test]
    fn every_event_field_name_resolves() {
        for f in EventField::ALL {
            assert_eq!(EventField::parse(f.name()), Some(*f));
        }
        assert!(FieldPath::normalized("kmswatch.off_hours").is_some());
        assert!(FieldPath::normalized("kms.nope").is_none());
    }
}
