//! Storage accounts switched to a customer-managed Key Vault key.
//!
//! An Activity Log `Microsoft.Storage/storageAccounts/write` is kept (as a *related* event,
//! `kms.operation` = `Other`, the same choice as AWS's S3 writes under a KMS key: the key is
//! configured on a consumer, not changed) when its **request body** sets customer-managed-key
//! encryption:
//!
//! ```json
//! {"properties":{"encryption":{"keySource":"Microsoft.Keyvault",
//!   "keyvaultproperties":{"keyvaulturi":"https://v.vault.azure.net","keyname":"k","keyversion":"…"}}}}
//! ```
//!
//! `kms.key.uid` is then `https://VAULT-HOST/keys/NAME` (host lowercased, as every Key Vault
//! key uid), `kms.key.version` the `keyversion` when one is pinned; a rule can join the event,
//! by `kms.key.uid`, to a later `ScheduleKeyDeletion` (`KeyDelete`) of the same key.
//! `kms.key.account_uid` is left unset: the vault may live in another subscription than the
//! storage account.
//!
//! Where the body is read: `properties.requestbody` (the diagnostic-settings export and the
//! REST/CLI `EventData`, a JSON string), `Properties_d.requestbody` (Log Analytics
//! `AzureActivity`) or the `Properties` column as JSON text; the body may also be an object.
//! Key names are matched case-insensitively (`requestBody`, `keyVaultUri`, `keySource`).
//! Only the request is read, never `responseBody`: the response of any write to a CMK account
//! restates its encryption even when the write changed something else. The Activity Log
//! writes the body on the `Started` entry of the operation; the `Succeeded` entry has none and
//! is skipped. A body whose `keySource` is not `Microsoft.Keyvault`, or that names no vault
//! URI and key name, is [`SkipReason::NotKms`](crate::SkipReason::NotKms) like any other
//! storage write.
//!
//! This is the one place in the Azure normalizer that builds a `serde_json::Value`: it runs
//! only for storage account writes whose bytes mention `keyvaulturi`.

use super::identity::{self, ObjectKind, ObjectRef};
use crate::Record;
use serde_json::Value;

/// The Key Vault key a storage account write switches encryption to, if it does.
pub fn cmk_key(rec: &Record<'_>) -> Option<ObjectRef> {
    if !contains_ci(rec.bytes, b"keyvaulturi") {
        return None;
    }
    ["properties", "Properties_d", "Properties", "properties_d"]
        .iter()
        .filter_map(|k| rec.field(k))
        .filter_map(as_object)
        .find_map(|props| {
            let body = get_ci(&props, "requestbody")?;
            let body = match body {
                Value::String(s) => serde_json::from_str::<Value>(s).ok()?,
                v @ Value::Object(_) => v.clone(),
                _ => return None,
            };
            key_of_body(&body)
        })
}

/// A JSON object given as an object or as a JSON string holding one.
fn as_object(v: &[u8]) -> Option<Value> {
    let v: Value = serde_json::from_slice(v).ok()?;
    match v {
        Value::Object(_) => Some(v),
        Value::String(s) => serde_json::from_str::<Value>(&s)
            .ok()
            .filter(Value::is_object),
        _ => None,
    }
}

/// `properties.encryption` (or a top-level `encryption`) of a storage account body.
fn key_of_body(body: &Value) -> Option<ObjectRef> {
    let enc = get_ci(body, "properties")
        .and_then(|p| get_ci(p, "encryption"))
        .or_else(|| get_ci(body, "encryption"))?;
    let source = get_ci(enc, "keySource")?.as_str()?;
    if !source.trim().eq_ignore_ascii_case("Microsoft.Keyvault") {
        return None;
    }
    let kv = get_ci(enc, "keyvaultproperties")?;
    let text = |k: &str| {
        get_ci(kv, k)
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
    };
    let from_uri = identity::object_from_url(text("keyvaulturi")?)?;
    let name = text("keyname")
        .map(str::to_string)
        .or_else(|| (from_uri.kind == ObjectKind::Key).then(|| from_uri.name.clone())?)?;
    let version = text("keyversion")
        .map(str::to_string)
        .or_else(|| (from_uri.kind == ObjectKind::Key).then(|| from_uri.version.clone())?);
    Some(ObjectRef {
        kind: ObjectKind::Key,
        vault_url: from_uri.vault_url,
        name: Some(name),
        version,
    })
}

/// A field of a JSON object, exact name first, then case-insensitively.
fn get_ci<'v>(v: &'v Value, name: &str) -> Option<&'v Value> {
    let obj = v.as_object()?;
    obj.get(name).or_else(|| {
        obj.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    })
}

fn contains_ci(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle))
}
