//! No code path can delete a key or destroy key material: the action list has no such variant,
//! the REST guard refuses such requests, and no source file calls such an API (checked here).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use kmswatch_respond::http::guard;
use reqwest::Method;

/// Source text of the crate, minus the guard itself (which names what it refuses).
fn sources() -> Vec<(String, String)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut out = Vec::new();
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().and_then(|x| x.to_str()) != Some("rs") {
            continue;
        }
        let mut text = std::fs::read_to_string(&p).unwrap();
        if let Some(start) = text.find("pub fn guard(") {
            let end = text[start..]
                .find("\n}\n")
                .map_or(text.len(), |e| start + e);
            text.replace_range(start..end, "");
        }
        // Unit tests exercise the guard with destructive requests.
        if let Some(t) = text.find("#[cfg(test)]\nmod tests") {
            text.truncate(t);
        }
        // Comments and the FORBIDDEN_OPERATIONS list name the operations; code must not call them.
        let code: String = text
            .lines()
            .filter(|l| !l.trim_start().starts_with("//"))
            .filter(|l| !l.trim_start().starts_with('"'))
            .collect::<Vec<_>>()
            .join("\n");
        out.push((p.display().to_string(), code));
    }
    assert!(out.len() >= 10, "found the sources");
    out
}

#[test]
fn no_source_calls_a_destructive_api() {
    let forbidden = [
        // AWS SDK
        "schedule_key_deletion",
        "delete_imported_key_material",
        "ScheduleKeyDeletion",
        // Azure Key Vault: KeyDelete is DELETE {vault}/keys/{name}; purge is .../purge
        "Method::DELETE",
        ".delete(",
        "/purge",
        // Cloud KMS: DestroyCryptoKeyVersion is POST ...:destroy
        ":destroy",
        "DestroyCryptoKeyVersion",
    ];
    for (file, code) in sources() {
        for f in forbidden {
            assert!(!code.contains(f), "{file} contains {f:?}");
        }
    }
}

#[test]
fn the_guard_refuses_destructive_requests() {
    assert!(guard(
        &Method::DELETE,
        "https://kv.vault.azure.net/keys/k?api-version=7.4"
    )
    .is_err());
    assert!(guard(
        &Method::DELETE,
        "https://kv.vault.azure.net/deletedkeys/k?api-version=7.4"
    )
    .is_err());
    assert!(guard(
        &Method::POST,
        "https://kv.vault.azure.net/deletedkeys/k/purge"
    )
    .is_err());
    assert!(guard(
        &Method::POST,
        "https://cloudkms.googleapis.com/v1/projects/p/locations/l/keyRings/r/cryptoKeys/k/cryptoKeyVersions/1:destroy"
    )
    .is_err());
    assert!(guard(
        &Method::PATCH,
        "https://kv.vault.azure.net/keys/k?api-version=7.4"
    )
    .is_ok());
}

#[test]
fn no_action_deletes() {
    for kind in [
        "schedule_key_deletion",
        "delete",
        "destroy",
        "purge",
        "delete_key",
    ] {
        let r: Result<kmswatch_respond::ActionKind, _> =
            serde_json::from_value(serde_json::Value::String(kind.into()));
        assert!(r.is_err(), "{kind} must not be an action");
    }
}
