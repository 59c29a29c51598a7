//! Key Vault object identity: data-plane URLs and ARM resource ids to canonical ids.
//!
//! Canonical forms (the `kms.key.uid` / `kms.object_uid` contract):
//! - key: `https://HOST/keys/NAME` (version separately), secret: `https://HOST/secrets/NAME`,
//!   certificate: `https://HOST/certificates/NAME`, vault: `https://HOST/`;
//! - `HOST` is lowercased and its port dropped; the DNS suffix is kept as logged.
//! - From an ARM resource id only the vault *name* is known, so the public-cloud suffix is
//!   assumed (`NAME.vault.azure.net`, `NAME.managedhsm.azure.net`): an Activity Log event for a
//!   sovereign-cloud vault gets a public-cloud URL. Resource logs carry the real host.
//!
//! **Host validation.** A URL names a Key Vault object only when its host passes
//! [`kmswatch_model::resource::parse_azure_vault_authority`]: `NAME.SUFFIX` with SUFFIX exactly
//! one of the documented Key Vault / Managed HSM DNS suffixes (public, China, US Government),
//! NAME a valid vault name, no user info, no port but 443, scheme `https`. Object names follow
//! Key Vault's grammar (1–127 letters, digits, hyphens), and a vault name taken from an ARM id
//! must be a valid vault name. Anything else (`x.vault.attacker.example`,
//! `localhost?x.vault.azure.net`, `kv.vault.x@host`, a name with `/`, `?` or `.`) names no
//! object: the record is still normalized and counted, but its event has no `kms.key` and no
//! `kms.object_uid`, so no response action can ever be planned on a host a record chose.

/// What a Key Vault URL or ARM id names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectKind {
    /// A key (`/keys/`, `/deletedkeys/`).
    Key,
    /// A secret (`/secrets/`, `/deletedsecrets/`).
    Secret,
    /// A certificate (`/certificates/`, `/deletedcertificates/`).
    Certificate,
    /// The vault or managed HSM itself.
    Vault,
}

/// A Key Vault object, canonicalized.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectRef {
    /// What it is.
    pub kind: ObjectKind,
    /// `https://host/`
    pub vault_url: String,
    /// Object name (absent for the vault itself).
    pub name: Option<String>,
    /// Object version, when the URL names one.
    pub version: Option<String>,
}

impl ObjectRef {
    /// `https://host/keys/NAME` (or secrets/certificates), or the vault URL.
    pub fn uid(&self) -> String {
        let coll = match self.kind {
            ObjectKind::Key => "keys",
            ObjectKind::Secret => "secrets",
            ObjectKind::Certificate => "certificates",
            ObjectKind::Vault => return self.vault_url.clone(),
        };
        match &self.name {
            Some(n) => format!("{}{coll}/{n}", self.vault_url),
            None => self.vault_url.clone(),
        }
    }
}

use kmswatch_model::resource::{
    is_azure_object_name, is_azure_object_version as is_version, is_azure_vault_name,
    parse_azure_vault_authority,
};

/// Parse a data-plane URL (`properties.id`, `requestUri`): `https://v.vault.azure.net/keys/k/ver`,
/// `https://v.vault.azure.net:443/deletedsecrets/s/recover?api-version=7.4`, `https://v.vault.azure.net/`.
/// `None` for anything that is not a vault or managed HSM URL (ARM `requestUri`s, garbage,
/// hosts outside the Key Vault DNS suffixes: see the module docs).
pub fn object_from_url(url: &str) -> Option<ObjectRef> {
    let url = url.trim();
    let rest = strip_prefix_ci(url, "https://")?;
    // Byte searches: the delimiters are ASCII, and a char-pattern search decodes every char.
    let end = rest
        .bytes()
        .position(|b| matches!(b, b'/' | b'?' | b'#' | b'\\'))
        .unwrap_or(rest.len());
    if rest.as_bytes().get(end) == Some(&b'\\') {
        return None;
    }
    let host = parse_azure_vault_authority(&rest[..end]).ok()?.host();
    let path = &rest[end..];
    let path = &path[..path
        .bytes()
        .position(|b| matches!(b, b'?' | b'#'))
        .unwrap_or(path.len())];
    let mut segs = path.split('/').filter(|s| !s.is_empty());
    let vault_url = format!("https://{host}/");
    let is = |seg: &str, names: [&str; 2]| names.iter().any(|n| seg.eq_ignore_ascii_case(n));
    let kind = match segs.next() {
        Some(s) if is(s, ["keys", "deletedkeys"]) => ObjectKind::Key,
        Some(s) if is(s, ["secrets", "deletedsecrets"]) => ObjectKind::Secret,
        Some(s) if is(s, ["certificates", "deletedcertificates"]) => ObjectKind::Certificate,
        _ => {
            return Some(ObjectRef {
                kind: ObjectKind::Vault,
                vault_url,
                name: None,
                version: None,
            })
        }
    };
    let Some(name) = segs.next() else {
        // `/keys?api-version=..` is a list on the vault.
        return Some(ObjectRef {
            kind: ObjectKind::Vault,
            vault_url,
            name: None,
            version: None,
        });
    };
    if !is_azure_object_name(name) {
        return None;
    }
    let version = segs.next().filter(|v| is_version(v)).map(str::to_string);
    Some(ObjectRef {
        kind,
        vault_url,
        name: Some(name.to_string()),
        version,
    })
}

fn strip_prefix_ci<'s>(s: &'s str, p: &str) -> Option<&'s str> {
    if s.len() >= p.len() && s.is_char_boundary(p.len()) && s[..p.len()].eq_ignore_ascii_case(p) {
        Some(&s[p.len()..])
    } else {
        None
    }
}

/// Parse an ARM resource id naming a vault, managed HSM, one of their keys, secrets or
/// certificates, a deleted vault, or a child resource of a vault (diagnostic setting, role
/// assignment): `/subscriptions/S/resourceGroups/G/providers/Microsoft.KeyVault/vaults/V/keys/K`.
pub fn object_from_arm(id: &str) -> Option<ObjectRef> {
    let segs: Vec<&str> = id.split('/').filter(|s| !s.is_empty()).collect();
    let kv = segs.windows(2).position(|w| {
        w[0].eq_ignore_ascii_case("providers") && w[1].eq_ignore_ascii_case("Microsoft.KeyVault")
    })?;
    let after = segs.get(kv + 2..)?;
    let (suffix, vault_name, rest) = match after {
        [t, name, rest @ ..] if t.eq_ignore_ascii_case("vaults") => {
            ("vault.azure.net", *name, rest)
        }
        [t, name, rest @ ..] if t.eq_ignore_ascii_case("managedHSMs") => {
            ("managedhsm.azure.net", *name, rest)
        }
        [l, _, t, name, rest @ ..]
            if l.eq_ignore_ascii_case("locations") && t.eq_ignore_ascii_case("deletedVaults") =>
        {
            ("vault.azure.net", *name, rest)
        }
        [l, _, t, name, rest @ ..]
            if l.eq_ignore_ascii_case("locations")
                && t.eq_ignore_ascii_case("deletedManagedHSMs") =>
        {
            ("managedhsm.azure.net", *name, rest)
        }
        _ => return None,
    };
    if !is_azure_vault_name(vault_name) {
        return None;
    }
    let vault_url = format!("https://{}.{suffix}/", vault_name.to_ascii_lowercase());
    let kind = match rest.first().map(|s| s.to_ascii_lowercase()).as_deref() {
        Some("keys") => ObjectKind::Key,
        Some("secrets") => ObjectKind::Secret,
        Some("certificates") => ObjectKind::Certificate,
        _ => ObjectKind::Vault,
    };
    if kind == ObjectKind::Vault {
        return Some(ObjectRef {
            kind,
            vault_url,
            name: None,
            version: None,
        });
    }
    let name = rest.get(1).map(|s| s.to_string());
    if name.as_deref().is_some_and(|n| !is_azure_object_name(n)) {
        return None;
    }
    if name.is_none() {
        return Some(ObjectRef {
            kind: ObjectKind::Vault,
            vault_url,
            name: None,
            version: None,
        });
    }
    let version = match rest.get(2..) {
        Some([v, ver, ..]) if v.eq_ignore_ascii_case("versions") => Some(ver.to_string()),
        _ => None,
    };
    Some(ObjectRef {
        kind,
        vault_url,
        name,
        version,
    })
}

/// True when an ARM id or scope is on a vault or managed HSM (or below one).
/// The same answer as `object_from_arm(id).is_some()`, without building the reference.
pub fn is_key_vault_scope(id: &str) -> bool {
    let ci = |a: &str, b: &str| a.eq_ignore_ascii_case(b);
    let mut segs = id.split('/').filter(|s| !s.is_empty());
    let mut prev = "";
    loop {
        let Some(s) = segs.next() else {
            return false;
        };
        if ci(prev, "providers") && ci(s, "Microsoft.KeyVault") {
            break;
        }
        prev = s;
    }
    match (segs.next(), segs.next(), segs.next(), segs.next()) {
        (Some(t), Some(_), _, _) if ci(t, "vaults") || ci(t, "managedHSMs") => true,
        (Some(l), Some(_), Some(t), Some(_)) => {
            ci(l, "locations") && (ci(t, "deletedVaults") || ci(t, "deletedManagedHSMs"))
        }
        _ => false,
    }
}

/// The subscription GUID of an ARM id, lowercased.
pub fn subscription_from_arm(id: &str) -> Option<String> {
    let mut segs = id.split('/').filter(|s| !s.is_empty());
    while let Some(s) = segs.next() {
        if s.eq_ignore_ascii_case("subscriptions") {
            return segs
                .next()
                .filter(|g| !g.is_empty())
                .map(str::to_ascii_lowercase);
        }
    }
    None
}

/// The resource provider namespace of an operation (`Microsoft.KeyVault/vaults/delete` →
/// `Microsoft.KeyVault`), spelled canonically for the providers kmswatch keeps.
pub fn provider_of(operation: &str) -> String {
    let ns = operation.split('/').next().unwrap_or(operation);
    for canon in [
        "Microsoft.KeyVault",
        "Microsoft.Insights",
        "Microsoft.Authorization",
    ] {
        if ns.eq_ignore_ascii_case(canon) {
            return canon.to_string();
        }
    }
    ns.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const VER: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn data_plane_urls() {
        let k =
            object_from_url(&format!("https://MyVault.vault.azure.net/keys/cmk/{VER}")).unwrap();
        assert_eq!(k.kind, ObjectKind::Key);
        assert_eq!(k.uid(), "https://myvault.vault.azure.net/keys/cmk");
        assert_eq!(k.version.as_deref(), Some(VER));

        let op = object_from_url(&format!(
            "https://myvault.vault.azure.net:443/keys/cmk/{VER}/unwrapkey?api-version=7.4"
        ))
        .unwrap();
        assert_eq!(op.uid(), "https://myvault.vault.azure.net/keys/cmk");
        assert_eq!(op.version.as_deref(), Some(VER));

        let create =
            object_from_url("https://myvault.vault.azure.net/keys/cmk/create?api-version=7.4")
                .unwrap();
        assert_eq!(create.uid(), "https://myvault.vault.azure.net/keys/cmk");
        assert_eq!(create.version, None);

        let purge =
            object_from_url("https://myvault.vault.azure.net/deletedkeys/cmk?api-version=7.4")
                .unwrap();
        assert_eq!(purge.kind, ObjectKind::Key);
        assert_eq!(purge.uid(), "https://myvault.vault.azure.net/keys/cmk");

        let s = object_from_url("https://myvault.vault.azure.net/secrets/db-pass?api-version=7.4")
            .unwrap();
        assert_eq!(s.kind, ObjectKind::Secret);
        assert_eq!(s.uid(), "https://myvault.vault.azure.net/secrets/db-pass");

        let v = object_from_url("https://contosokeyvault.vault.azure.net/").unwrap();
        assert_eq!(v.kind, ObjectKind::Vault);
        assert_eq!(v.uid(), "https://contosokeyvault.vault.azure.net/");

        let list = object_from_url("https://myvault.vault.azure.net/keys?api-version=7.4").unwrap();
        assert_eq!(list.kind, ObjectKind::Vault);

        let cn = object_from_url("https://kv1.vault.azure.cn/keys/k").unwrap();
        assert_eq!(cn.uid(), "https://kv1.vault.azure.cn/keys/k");
        let hsm = object_from_url("https://HSM1.managedhsm.azure.net/keys/k").unwrap();
        assert_eq!(hsm.uid(), "https://hsm1.managedhsm.azure.net/keys/k");
    }

    #[test]
    fn non_vault_urls() {
        assert_eq!(
            object_from_url("https://control-prod-wus.vaultcore.azure.net/subscriptions/x/resourcegroups/y/providers/Microsoft.KeyVault/vaults/v?api-version=2015-06-01"),
            None
        );
        assert_eq!(object_from_url("https://management.azure.com/"), None);
        assert_eq!(object_from_url("not a url"), None);
        assert_eq!(object_from_url(""), None);
        assert_eq!(object_from_url("https://é"), None);
    }

    #[test]
    fn arm_ids() {
        let base = "/subscriptions/AAAA1111-0000-0000-0000-000000000001/resourceGroups/rg/providers/Microsoft.KeyVault";
        let k = object_from_arm(&format!("{base}/vaults/MyVault/keys/cmk")).unwrap();
        assert_eq!(k.kind, ObjectKind::Key);
        assert_eq!(k.uid(), "https://myvault.vault.azure.net/keys/cmk");
        let kv = object_from_arm(&format!("{base}/vaults/kv1/keys/cmk/versions/{VER}")).unwrap();
        assert_eq!(kv.version.as_deref(), Some(VER));
        let s = object_from_arm(&format!("{base}/vaults/kv1/secrets/pw")).unwrap();
        assert_eq!(s.uid(), "https://kv1.vault.azure.net/secrets/pw");
        let v = object_from_arm(&format!("{}/VAULTS/KV1", base.to_uppercase())).unwrap();
        assert_eq!(v.uid(), "https://kv1.vault.azure.net/");
        let d = object_from_arm(
            "/subscriptions/s/providers/Microsoft.KeyVault/locations/eastus/deletedVaults/gone",
        )
        .unwrap();
        assert_eq!(d.uid(), "https://gone.vault.azure.net/");
        let diag = object_from_arm(&format!(
            "{base}/vaults/kv1/providers/Microsoft.Insights/diagnosticSettings/logging"
        ))
        .unwrap();
        assert_eq!(diag.kind, ObjectKind::Vault);
        let ra = object_from_arm(&format!(
            "{base}/vaults/kv1/keys/k/providers/Microsoft.Authorization/roleAssignments/abc"
        ))
        .unwrap();
        assert_eq!(ra.uid(), "https://kv1.vault.azure.net/keys/k");
        let hsm = object_from_arm(&format!("{base}/managedHSMs/hsm1")).unwrap();
        assert_eq!(hsm.uid(), "https://hsm1.managedhsm.azure.net/");
        assert_eq!(
            object_from_arm("/subscriptions/s/providers/Microsoft.Authorization/roleAssignments/x"),
            None
        );
        assert_eq!(object_from_arm(&format!("{base}/vaults")), None);
        assert!(is_key_vault_scope(&format!("{base}/vaults/kv1")));
        assert!(!is_key_vault_scope("/subscriptions/s"));
        // The allocation-free test answers as the full parse does.
        let ids = [
            format!("{base}/vaults/kv1"),
            format!("{base}/vaults"),
            format!("{base}/VAULTS/kv1/keys/k/versions/1"),
            format!("{base}/managedHSMs/hsm"),
            "/subscriptions/s/providers/Microsoft.KeyVault/locations/eastus/deletedVaults/kv1"
                .to_string(),
            "/subscriptions/s/providers/Microsoft.KeyVault/locations/eastus/deletedManagedHSMs"
                .to_string(),
            "/subscriptions/s/providers/Microsoft.KeyVault/locations/eastus/deletedVaults"
                .to_string(),
            "/subscriptions/s/providers/Microsoft.KeyVault/locations/eastus/other/x".to_string(),
            "providers/Microsoft.KeyVault/vaults/kv1".to_string(),
            "/providers//Microsoft.KeyVault//vaults//kv1".to_string(),
            "/x/providers/y/providers/Microsoft.KeyVault/vaults/kv1".to_string(),
            "/x/providers/Microsoft.KeyVault/providers/Microsoft.KeyVault/vaults/kv1".to_string(),
            "Microsoft.KeyVault/vaults/kv1".to_string(),
            String::new(),
        ];
        for id in ids {
            assert_eq!(
                is_key_vault_scope(&id),
                object_from_arm(&id).is_some(),
                "{id}"
            );
        }
    }

    /// Hostile hosts in every field the Key Vault normalizer reads a vault from (`properties.id`,
    /// `requestUri`, the ARM `resourceId`): the record is still an event, counted as such, but
    /// its event names no key and no object on a host the record chose.
    #[test]
    fn hostile_hosts_yield_no_key() {
        let n = crate::Normalizer::new(crate::Options::default()).expect("default options");
        let legit_arm = "/SUBSCRIPTIONS/5F0C7A3E-1B2D-4C6E-8F90-A1B2C3D4E5F6/RESOURCEGROUPS/RG/PROVIDERS/MICROSOFT.KEYVAULT/VAULTS/KV-DEMO";
        let record = |arm: &str, id: &str, uri: &str| {
            serde_json::json!({
                "time": "2024-03-05T10:15:30.1234567Z",
                "resourceId": arm,
                "operationName": "KeyGet",
                "category": "AuditEvent",
                "resultType": "Success",
                "resultSignature": "OK",
                "callerIpAddress": "203.0.113.10",
                "correlationId": "11111111-2222-4333-8444-555555555555",
                "identity": {"claim": {"appid": "04b07795-8ddb-461a-bbee-02f9e1bf7b46"}},
                "properties": {"id": id, "requestUri": uri, "httpStatusCode": 200}
            })
            .to_string()
        };
        let hostile_urls = [
            "https://x.vault.attacker.example/keys/k",
            "https://localhost?x.vault.azure.net/keys/k",
            "https://kv.vault.x@host/keys/k",
            "https://kv-demo.vault.azure.net@attacker.example/keys/k",
            "https://user:pw@kv-demo.vault.azure.net/keys/k",
            "https://kv-demo.vault.azure.net:8443/keys/k",
            "http://kv-demo.vault.azure.net/keys/k",
            "https://kv-demo.vault.azure.net.attacker.example/keys/k",
            "https://a.b.vault.azure.net/keys/k",
            "https://kv-demo.vault.azure.net\\@attacker.example/keys/k",
            "https://kv-demo.managedhsm.attacker.example/keys/k",
            "https://kv-demo.vault.azure.net/keys/a.b",
        ];
        let mut cases: Vec<(String, String)> = Vec::new();
        for url in hostile_urls {
            cases.push((format!("properties.id {url}"), record(legit_arm, url, "")));
            cases.push((format!("requestUri {url}"), record(legit_arm, "", url)));
        }
        for vault in [
            "localhost?x",
            "attacker.example#",
            "kv.vault.x@host",
            "x.attacker.example",
            "kv-demo:8443",
            "ab",
        ] {
            let arm = format!("/subscriptions/s/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/{vault}/keys/k");
            cases.push((format!("resourceId vault {vault}"), record(&arm, "", "")));
        }
        for (what, json) in cases {
            let items = n.normalize_to_vec(json.as_bytes(), "test");
            let [crate::Item::Event { event, .. }] = items.as_slice() else {
                panic!("{what}: expected one event (still normalized and counted), got {items:?}");
            };
            assert!(
                event.kms.key.is_none(),
                "{what}: a hostile host became a key uid: {:?}",
                event.kms.key
            );
            if let Some(o) = &event.kms.object_uid {
                assert_eq!(
                    o, "https://kv-demo.vault.azure.net/",
                    "{what}: object from the ARM id only"
                );
            }
        }
        // The legitimate forms still name the key.
        let ok = record(
            legit_arm,
            "https://KV-Demo.vault.azure.net:443/keys/cmk",
            "",
        );
        let items = n.normalize_to_vec(ok.as_bytes(), "test");
        let [crate::Item::Event { event, .. }] = items.as_slice() else {
            panic!("expected an event, got {items:?}");
        };
        assert_eq!(
            event.kms.key.as_ref().map(|k| k.uid.as_str()),
            Some("https://kv-demo.vault.azure.net/keys/cmk")
        );
    }

    #[test]
    fn subscriptions_and_providers() {
        assert_eq!(
            subscription_from_arm("/SUBSCRIPTIONS/361DA5D4-A47A-4C79-AFDD-0000/RESOURCEGROUPS/x"),
            Some("361da5d4-a47a-4c79-afdd-0000".to_string())
        );
        assert_eq!(subscription_from_arm("/tenants/x"), None);
        assert_eq!(subscription_from_arm("/subscriptions/"), None);
        assert_eq!(
            provider_of("microsoft.keyvault/vaults/delete"),
            "Microsoft.KeyVault"
        );
        assert_eq!(
            provider_of("MICROSOFT.INSIGHTS/DIAGNOSTICSETTINGS/DELETE"),
            "Microsoft.Insights"
        );
        assert_eq!(provider_of("Microsoft.Foo/bar"), "Microsoft.Foo");
    }
}
