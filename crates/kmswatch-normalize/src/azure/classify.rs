//! Who called: Entra ID token claims to `actor.*`.
//!
//! Key Vault resource logs carry the claims of the caller's access token (`identity.claim`,
//! with short names like `oid`/`upn`/`appid` or the long `http://schemas...` URIs; flattened to
//! `identity_claim_*_s|_g` columns in AzureDiagnostics; the `Identity` column of AZKVAuditLogs).
//! Activity Log entries carry `claims` (REST/SDK) or `identity.claims` (export), plus `caller`
//! and sometimes `identity.authorization.evidence.principalType`.
//!
//! Rules, first match wins:
//!
//! | evidence | `actor.kind` | `actor.user.type` |
//! |---|---|---|
//! | a UPN claim (`upn`, `…/claims/upn`, `unique_name`), `idtyp: user`, or evidence `principalType: User` | `human` | `User` |
//! | `xms_mirid` claim (managed identity resource id) | `service` | `ManagedIdentity` |
//! | app id in [`FIRST_PARTY_APPS`] and no UPN | `cloud_service`, `invoked_by` = the app's name | `ServicePrincipal` |
//! | app-only token: `idtyp: app`, or `appid`/`oid` without UPN, or evidence `principalType: ServicePrincipal` | `service` | `ServicePrincipal` |
//! | Activity `caller` with `@` and no claims | `human` | `User` |
//! | Activity `caller` that is a GUID and no claims (a service principal's object id) | `service` | `ServicePrincipal` |
//! | no identity at all on a Key Vault `Authentication` call or a 401 | `anonymous` | — |
//! | nothing else known | `unknown` | — |
//!
//! `actor.user.uid` is the object id (`oid` claim, else a GUID `caller`), `actor.user.name` the
//! UPN or else the app id, `actor.user.account.uid` the tenant (`tid` claim, else the record's
//! own tenant id when it has one).

use kmswatch_model::{Account, ActorKind, User};
use std::borrow::Cow;

/// Microsoft first-party applications that call Key Vault for customers (customer-managed
/// keys, certificate sync, backup, policy evaluation) or stand in for ARM. Public-cloud app ids,
/// as published in Microsoft's docs for granting these services vault access.
/// Azure Disk Encryption is not listed: it runs in the customer's VM (its caller is the VM's
/// identity) and disk encryption sets use a managed identity, so their calls classify as
/// `ManagedIdentity` service calls.
pub const FIRST_PARTY_APPS: &[(&str, &str)] = &[
    ("cfa8b339-82a2-471a-a3c9-0fc0be7a4093", "Azure Key Vault"),
    (
        "797f4846-ba00-4fd7-ba43-dac1f8f63013",
        "Azure Resource Manager",
    ),
    (
        "a6aa9161-5291-40bb-8c5c-923b567bee3b",
        "Azure Storage Resource Provider",
    ),
    ("262044b1-e2ce-469f-a196-69ab7ada62d3", "Azure Backup"),
    (
        "1d78a85d-813d-46f0-b496-dd72f50a3ec0",
        "Microsoft Azure Policy Insights",
    ),
    ("a232010e-820c-4083-83bb-3ace5fc29d0b", "Azure Cosmos DB"),
    ("e9f49c6b-5ce5-44c8-925d-015017e9f7ad", "Azure Data Lake"),
    ("022907d3-0f1b-48f7-badc-1ba6abab6d66", "Azure SQL Database"),
    ("abfa0a7c-a6b6-4736-8310-5855508787cd", "Azure App Service"),
    ("ad0e1c7e-6d38-4ba4-9efd-0bc77ba9f037", "Azure Front Door"),
];

/// The name of a first-party application id (case-insensitive), if listed.
pub fn first_party_app(appid: &str) -> Option<&'static str> {
    FIRST_PARTY_APPS
        .iter()
        .find(|(id, _)| id.eq_ignore_ascii_case(appid))
        .map(|(_, name)| *name)
}

/// The claims kmswatch reads, collected from whichever spelling the record uses.
#[derive(Debug, Default, Clone)]
pub struct Claims<'a> {
    /// Object id of the principal.
    pub oid: Option<Cow<'a, str>>,
    /// User principal name.
    pub upn: Option<Cow<'a, str>>,
    /// `unique_name` (users, including guests `live.com#...`).
    pub unique_name: Option<Cow<'a, str>>,
    /// Client application id (`appid`, `azp`).
    pub appid: Option<Cow<'a, str>>,
    /// Token type: `user` or `app`.
    pub idtyp: Option<Cow<'a, str>>,
    /// Tenant id.
    pub tid: Option<Cow<'a, str>>,
    /// Managed identity resource id.
    pub mirid: Option<Cow<'a, str>>,
}

/// Which claim a (possibly flattened) claim name is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Which {
    Oid,
    Upn,
    UniqueName,
    AppId,
    IdTyp,
    Tid,
    MiRid,
}

/// Claim names, in the `sanitize`d form (lowercase, runs of non-alphanumerics → `_`), so one
/// table matches `upn`, `http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn` and the
/// AzureDiagnostics column `identity_claim_http_schemas_xmlsoap_org_ws_2005_05_identity_claims_upn_s`.
const CLAIM_NAMES: &[(&str, Which)] = &[
    ("oid", Which::Oid),
    (
        "http_schemas_microsoft_com_identity_claims_objectidentifier",
        Which::Oid,
    ),
    ("upn", Which::Upn),
    (
        "http_schemas_xmlsoap_org_ws_2005_05_identity_claims_upn",
        Which::Upn,
    ),
    ("unique_name", Which::UniqueName),
    ("appid", Which::AppId),
    ("azp", Which::AppId),
    ("idtyp", Which::IdTyp),
    ("tid", Which::Tid),
    (
        "http_schemas_microsoft_com_identity_claims_tenantid",
        Which::Tid,
    ),
    ("xms_mirid", Which::MiRid),
];

fn sanitize(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut sep = false;
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            if sep && !out.is_empty() {
                out.push('_');
            }
            sep = false;
            out.push(c.to_ascii_lowercase());
        } else {
            sep = true;
        }
    }
    out
}

fn which(name: &str) -> Option<Which> {
    let s = sanitize(name);
    CLAIM_NAMES.iter().find(|(n, _)| *n == s).map(|(_, w)| *w)
}

impl<'a> Claims<'a> {
    /// Take one claim (by any of its spellings); empty values and unknown names are ignored.
    /// A claim already set keeps its first value.
    pub fn absorb(&mut self, name: &str, value: Cow<'a, str>) {
        if value.trim().is_empty() {
            return;
        }
        let Some(w) = which(name) else {
            return;
        };
        let slot = match w {
            Which::Oid => &mut self.oid,
            Which::Upn => &mut self.upn,
            Which::UniqueName => &mut self.unique_name,
            Which::AppId => &mut self.appid,
            Which::IdTyp => &mut self.idtyp,
            Which::Tid => &mut self.tid,
            Which::MiRid => &mut self.mirid,
        };
        if slot.is_none() {
            *slot = Some(value);
        }
    }

    /// Take an AzureDiagnostics `identity_claim_<name>_<s|g|d>` column; other columns are ignored.
    pub fn absorb_column(&mut self, column: &str, value: Cow<'a, str>) {
        let Some(rest) = column.strip_prefix("identity_claim_") else {
            return;
        };
        let name = rest
            .strip_suffix("_s")
            .or_else(|| rest.strip_suffix("_g"))
            .or_else(|| rest.strip_suffix("_d"))
            .unwrap_or(rest);
        self.absorb(name, value);
    }

    fn is_empty(&self) -> bool {
        self.oid.is_none() && self.upn.is_none() && self.appid.is_none() && self.mirid.is_none()
    }
}

/// Non-claim evidence about the caller.
#[derive(Debug, Default, Clone)]
pub struct Hints<'a> {
    /// Activity Log `caller` (UPN or object id).
    pub caller: Option<Cow<'a, str>>,
    /// `identity.authorization.evidence.principalType` (`User`, `ServicePrincipal`, `Group`, ...).
    pub principal_type: Option<Cow<'a, str>>,
    /// `identity.authorization.evidence.principalId`.
    pub principal_id: Option<Cow<'a, str>>,
    /// The record's tenant id (Activity Log `tenantId`), used when no `tid` claim.
    pub tenant: Option<Cow<'a, str>>,
    /// The call may be unauthenticated (Key Vault `Authentication` operation or an HTTP 401).
    pub maybe_anonymous: bool,
}

/// The classified principal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// `actor.user`.
    pub user: User,
    /// `actor.invoked_by`.
    pub invoked_by: Option<String>,
    /// `actor.kind`.
    pub kind: ActorKind,
}

fn is_guid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// Classify a caller (see the module table).
pub fn classify(c: &Claims<'_>, h: &Hints<'_>) -> Principal {
    let s = |v: &Option<Cow<'_, str>>| v.as_deref().map(str::to_string);
    let tenant = c.tid.as_deref().or(h.tenant.as_deref()).map(|t| Account {
        uid: Some(t.to_ascii_lowercase()),
    });
    let upn = c.upn.as_ref().or(c.unique_name.as_ref());
    let ptype = h.principal_type.as_deref().unwrap_or("");
    let idtyp = c.idtyp.as_deref().unwrap_or("");
    let caller = h.caller.as_deref().filter(|c| !c.trim().is_empty());
    let oid = s(&c.oid).or_else(|| s(&h.principal_id));

    let mut user = User {
        uid: oid,
        name: None,
        type_: None,
        account: tenant,
    };
    let mut invoked_by = None;

    let kind = if upn.is_some()
        || idtyp.eq_ignore_ascii_case("user")
        || ptype.eq_ignore_ascii_case("User")
    {
        user.name = upn
            .map(|u| u.to_string())
            .or_else(|| caller.filter(|c| c.contains('@')).map(str::to_string))
            .or_else(|| s(&c.appid));
        user.type_ = Some("User".to_string());
        ActorKind::Human
    } else if let Some(mirid) = c.mirid.as_deref() {
        user.name = s(&c.appid).or_else(|| Some(mirid.to_string()));
        user.type_ = Some("ManagedIdentity".to_string());
        ActorKind::Service
    } else if let Some(app) = c.appid.as_deref().and_then(first_party_app) {
        user.name = s(&c.appid);
        user.type_ = Some("ServicePrincipal".to_string());
        invoked_by = Some(app.to_string());
        ActorKind::CloudService
    } else if !c.is_empty()
        || idtyp.eq_ignore_ascii_case("app")
        || ptype.eq_ignore_ascii_case("ServicePrincipal")
    {
        user.name = s(&c.appid);
        user.type_ = Some("ServicePrincipal".to_string());
        ActorKind::Service
    } else if let Some(caller) = caller {
        if caller.contains('@') {
            user.name = Some(caller.to_string());
            user.type_ = Some("User".to_string());
            ActorKind::Human
        } else if is_guid(caller) {
            user.uid = Some(caller.to_ascii_lowercase());
            user.type_ = Some("ServicePrincipal".to_string());
            ActorKind::Service
        } else {
            user.name = Some(caller.to_string());
            ActorKind::Unknown
        }
    } else if h.maybe_anonymous {
        ActorKind::Anonymous
    } else {
        ActorKind::Unknown
    };
    Principal {
        user,
        invoked_by,
        kind,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(pairs: &[(&str, &str)]) -> Claims<'static> {
        let mut c = Claims::default();
        for (k, v) in pairs {
            c.absorb(k, Cow::Owned(v.to_string()));
        }
        c
    }

    const OID: &str = "6f1b0c3e-2a4d-4c5e-9f00-0000000000aa";
    const APP: &str = "3c2f5a10-7d1e-4b8a-a000-0000000000bb";
    const TID: &str = "d3b07384-d9a0-4c9b-8a00-0000000000cc";

    #[test]
    fn upn_short_form_is_human() {
        let c = claims(&[("oid", OID), ("upn", "alice@contoso.example"), ("tid", TID)]);
        let p = classify(&c, &Hints::default());
        assert_eq!(p.kind, ActorKind::Human);
        assert_eq!(p.user.uid.as_deref(), Some(OID));
        assert_eq!(p.user.name.as_deref(), Some("alice@contoso.example"));
        assert_eq!(p.user.type_.as_deref(), Some("User"));
        assert_eq!(p.user.account.unwrap().uid.as_deref(), Some(TID));
        assert_eq!(p.invoked_by, None);
    }

    #[test]
    fn upn_long_form_is_human_even_through_first_party_client() {
        // Azure PowerShell (a public client app) on behalf of a user: still the user.
        let c = claims(&[
            (
                "http://schemas.microsoft.com/identity/claims/objectidentifier",
                OID,
            ),
            (
                "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn",
                "live.com#username@outlook.com",
            ),
            ("appid", "1950a258-227b-4e31-a9cf-717495945fc2"),
        ]);
        let p = classify(&c, &Hints::default());
        assert_eq!(p.kind, ActorKind::Human);
        assert_eq!(
            p.user.name.as_deref(),
            Some("live.com#username@outlook.com")
        );
        assert_eq!(p.user.uid.as_deref(), Some(OID));
    }

    #[test]
    fn flattened_columns() {
        let mut c = Claims::default();
        c.absorb_column(
            "identity_claim_http_schemas_xmlsoap_org_ws_2005_05_identity_claims_upn_s",
            Cow::Borrowed("bob@contoso.example"),
        );
        c.absorb_column(
            "identity_claim_http_schemas_microsoft_com_identity_claims_objectidentifier_g",
            Cow::Borrowed(OID),
        );
        c.absorb_column("identity_claim_appid_g", Cow::Borrowed(APP));
        c.absorb_column("clientInfo_s", Cow::Borrowed("ignored"));
        assert_eq!(c.upn.as_deref(), Some("bob@contoso.example"));
        assert_eq!(c.oid.as_deref(), Some(OID));
        assert_eq!(c.appid.as_deref(), Some(APP));
        let p = classify(&c, &Hints::default());
        assert_eq!(p.kind, ActorKind::Human);
    }

    #[test]
    fn app_only_token_is_service() {
        let c = claims(&[("oid", OID), ("appid", APP), ("idtyp", "app")]);
        let p = classify(&c, &Hints::default());
        assert_eq!(p.kind, ActorKind::Service);
        assert_eq!(p.user.type_.as_deref(), Some("ServicePrincipal"));
        assert_eq!(p.user.name.as_deref(), Some(APP));
        // Without idtyp, appid without upn is still an app-only token.
        let c = claims(&[("appid", APP)]);
        assert_eq!(classify(&c, &Hints::default()).kind, ActorKind::Service);
    }

    #[test]
    fn managed_identity() {
        let c = claims(&[
            ("oid", OID),
            ("appid", APP),
            ("idtyp", "app"),
            (
                "xms_mirid",
                "/subscriptions/s/resourcegroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/cmk-id",
            ),
        ]);
        let p = classify(&c, &Hints::default());
        assert_eq!(p.kind, ActorKind::Service);
        assert_eq!(p.user.type_.as_deref(), Some("ManagedIdentity"));
    }

    #[test]
    fn first_party_app_is_cloud_service() {
        let c = claims(&[
            ("oid", OID),
            ("appid", "a6aa9161-5291-40bb-8c5c-923b567bee3b"),
        ]);
        let p = classify(&c, &Hints::default());
        assert_eq!(p.kind, ActorKind::CloudService);
        assert_eq!(
            p.invoked_by.as_deref(),
            Some("Azure Storage Resource Provider")
        );
        let c = claims(&[("appid", "CFA8B339-82A2-471A-A3C9-0FC0BE7A4093")]);
        assert_eq!(
            classify(&c, &Hints::default()).invoked_by.as_deref(),
            Some("Azure Key Vault")
        );
    }

    #[test]
    fn activity_caller_and_evidence() {
        let h = Hints {
            caller: Some(Cow::Borrowed("carol@contoso.example")),
            ..Hints::default()
        };
        let p = classify(&Claims::default(), &h);
        assert_eq!(p.kind, ActorKind::Human);
        assert_eq!(p.user.name.as_deref(), Some("carol@contoso.example"));

        let h = Hints {
            caller: Some(Cow::Borrowed(APP)),
            ..Hints::default()
        };
        let p = classify(&Claims::default(), &h);
        assert_eq!(p.kind, ActorKind::Service);
        assert_eq!(p.user.uid.as_deref(), Some(APP));

        let h = Hints {
            principal_type: Some(Cow::Borrowed("User")),
            principal_id: Some(Cow::Borrowed(OID)),
            tenant: Some(Cow::Borrowed(TID)),
            ..Hints::default()
        };
        let p = classify(&Claims::default(), &h);
        assert_eq!(p.kind, ActorKind::Human);
        assert_eq!(p.user.uid.as_deref(), Some(OID));
        assert_eq!(p.user.account.unwrap().uid.as_deref(), Some(TID));
    }

    #[test]
    fn nobody() {
        let p = classify(&Claims::default(), &Hints::default());
        assert_eq!(p.kind, ActorKind::Unknown);
        assert_eq!(p.user, User::default());
        let h = Hints {
            maybe_anonymous: true,
            ..Hints::default()
        };
        assert_eq!(classify(&Claims::default(), &h).kind, ActorKind::Anonymous);
    }

    #[test]
    fn sanitize_matches_flattening() {
        assert_eq!(
            sanitize("http://schemas.microsoft.com/identity/claims/objectidentifier"),
            "http_schemas_microsoft_com_identity_claims_objectidentifier"
        );
        assert_eq!(sanitize("xms_mirid"), "xms_mirid");
        assert_eq!(which("UPN"), Some(Which::Upn));
        assert_eq!(which("name"), None);
    }
}
