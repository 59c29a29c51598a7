//! Azure Key Vault responder against a fake implementing the documented REST endpoints
//! (`api-version=7.4`, bearer tokens from the Entra ID client-credentials endpoint, the
//! `{"error":{"code","message"}}` error shape), with 429 throttling and a token that expires
//! mid-run.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{serve, Req, Resp, Shared};
use kmswatch_model::Provider;
use kmswatch_respond::action::BREAK_GLASS_TAG;
use kmswatch_respond::azure::AzureConfig;
use kmswatch_respond::config::{ActionSpec, Playbook};
use kmswatch_respond::http::Secret;
use kmswatch_respond::testutil::finding;
use kmswatch_respond::{
    Action, ActionKind, AuditRecord, ManualRequest, Mode, Outcome, Phase, RespondConfig, Responder,
    ResponseOutput,
};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

const VAULT: &str = "https://kv-kmswatch-demo.vault.azure.net";
const TENANT: &str = "8f4a1c2e-5b6d-4e7f-9a0b-1c2d3e4f5a6b";

#[derive(Debug, Clone, Default)]
struct Key {
    enabled: bool,
    deleted: bool,
    version: u32,
    tags: BTreeMap<String, String>,
    rotate_days: Option<u32>,
}

#[derive(Debug, Default)]
struct Fake {
    keys: BTreeMap<String, Key>,
    tokens_issued: u32,
    valid_token: Option<String>,
    throttle: u32,
    log: Vec<String>,
}

fn err(status: u16, code: &str, msg: &str) -> Resp {
    Resp::json(status, json!({"error": {"code": code, "message": msg}}))
}

fn bundle(name: &str, k: &Key) -> Value {
    json!({
        "key": {"kid": format!("{VAULT}/keys/{name}/v{}", k.version), "kty": "RSA"},
        "attributes": {"enabled": k.enabled, "recoveryLevel": "Recoverable+Purgeable"},
        "tags": k.tags,
    })
}

fn handle(state: &Shared<Fake>, r: Req) -> Resp {
    let mut s = state.lock().unwrap();
    s.log.push(format!("{} {}", r.method, r.path));
    // Entra ID token endpoint.
    if r.path == format!("/{TENANT}/oauth2/v2.0/token") {
        let f = r.form();
        if r.method != "POST"
            || f.get("grant_type").map(String::as_str) != Some("client_credentials")
            || f.get("client_id").map(String::as_str) != Some("app-id")
            || f.get("client_secret").map(String::as_str) != Some("s3cret")
            || f.get("scope").map(String::as_str) != Some("https://vault.azure.net/.default")
        {
            return Resp::json(
                400,
                json!({"error": "invalid_request", "error_description": "bad client credentials request"}),
            );
        }
        s.tokens_issued += 1;
        let t = format!("token-{}", s.tokens_issued);
        s.valid_token = Some(t.clone());
        return Resp::json(
            200,
            json!({"token_type": "Bearer", "expires_in": 3599, "access_token": t}),
        );
    }
    if r.query.get("api-version").map(String::as_str) != Some("7.4") {
        return err(400, "BadParameter", "api-version 7.4 is required");
    }
    if r.bearer().is_none() || r.bearer() != s.valid_token.as_deref() {
        return err(401, "Unauthorized", "AKV10032: Invalid issuer or expired token.")
            .header("WWW-Authenticate", "Bearer authorization=\"https://login.microsoftonline.com/x\", resource=\"https://vault.azure.net\"");
    }
    if s.throttle > 0 {
        s.throttle -= 1;
        return err(429, "Throttled", "Operations per second limit reached")
            .header("Retry-After", "1");
    }
    if r.method == "DELETE" || r.path.ends_with("/purge") {
        panic!(
            "kmswatch sent a destructive request: {} {}",
            r.method, r.path
        );
    }
    let segs: Vec<&str> = r.path.trim_start_matches('/').split('/').collect();
    match (r.method.as_str(), segs.as_slice()) {
        ("GET", ["keys", name]) => match s.keys.get(*name) {
            Some(k) if !k.deleted => Resp::json(200, bundle(name, k)),
            _ => err(
                404,
                "KeyNotFound",
                &format!("A key with (name/id) {name} was not found in this key vault."),
            ),
        },
        ("GET", ["deletedkeys", name]) => match s.keys.get(*name) {
            Some(k) if k.deleted => {
                let mut b = bundle(name, k);
                b["recoveryId"] = json!(format!("{VAULT}/deletedkeys/{name}"));
                b["scheduledPurgeDate"] = json!(1_800_000_000);
                b["deletedDate"] = json!(1_700_000_000);
                Resp::json(200, b)
            }
            _ => err(
                404,
                "KeyNotFound",
                &format!("Deleted Key not found: {name}"),
            ),
        },
        ("PATCH", ["keys", name]) => {
            let body = r.json();
            let Some(k) = s.keys.get_mut(*name).filter(|k| !k.deleted) else {
                return err(404, "KeyNotFound", "not found");
            };
            if let Some(e) = body.pointer("/attributes/enabled") {
                let Some(e) = e.as_bool() else {
                    return err(400, "BadParameter", "attributes.enabled must be a boolean");
                };
                k.enabled = e;
            }
            if let Some(t) = body.get("tags").and_then(Value::as_object) {
                k.tags = t
                    .iter()
                    .map(|(a, b)| (a.clone(), b.as_str().unwrap_or_default().to_string()))
                    .collect();
            }
            let k = k.clone();
            Resp::json(200, bundle(name, &k))
        }
        ("POST", ["keys", name, "rotate"]) => {
            let Some(k) = s.keys.get_mut(*name).filter(|k| !k.deleted) else {
                return err(404, "KeyNotFound", "not found");
            };
            k.version += 1;
            let k = k.clone();
            Resp::json(200, bundle(name, &k))
        }
        ("GET", ["keys", name, "rotationpolicy"]) => match s.keys.get(*name) {
            Some(k) => Resp::json(
                200,
                json!({"id": format!("{VAULT}/keys/{name}/rotationpolicy"), "lifetimeActions": k.rotate_days.map(|d| vec![json!({"trigger": {"timeAfterCreate": format!("P{d}D")}, "action": {"type": "Rotate"}})]).unwrap_or_default()}),
            ),
            None => err(404, "KeyNotFound", "not found"),
        },
        ("PUT", ["keys", name, "rotationpolicy"]) => {
            let body = r.json();
            let Some(k) = s.keys.get_mut(*name) else {
                return err(404, "KeyNotFound", "not found");
            };
            let Some(actions) = body.get("lifetimeActions").and_then(Value::as_array) else {
                return err(400, "BadParameter", "lifetimeActions is required");
            };
            k.rotate_days = actions
                .iter()
                .find(|a| a.pointer("/action/type").and_then(Value::as_str) == Some("Rotate"))
                .and_then(|a| {
                    a.pointer("/trigger/timeAfterCreate")
                        .and_then(Value::as_str)
                })
                .and_then(|t| t.strip_prefix('P')?.strip_suffix('D')?.parse().ok());
            Resp::json(200, body)
        }
        ("POST", ["deletedkeys", name, "recover"]) => match s.keys.get_mut(*name) {
            Some(k) if k.deleted => {
                k.deleted = false;
                let k = k.clone();
                Resp::json(200, bundle(name, &k))
            }
            _ => err(404, "KeyNotFound", "Deleted Key not found"),
        },
        _ => err(
            400,
            "BadParameter",
            &format!("no route {} {}", r.method, r.path),
        ),
    }
}

fn audits(out: &[ResponseOutput]) -> Vec<AuditRecord> {
    out.iter().filter_map(|o| o.audit().cloned()).collect()
}

fn last(out: &[ResponseOutput]) -> AuditRecord {
    audits(out).pop().unwrap()
}

#[tokio::test]
async fn azure_key_vault_end_to_end() {
    let state: Shared<Fake> = Arc::new(Mutex::new(Fake::default()));
    {
        let mut s = state.lock().unwrap();
        for name in [
            "cmk-payments",
            "cmk-orders",
            "cmk-deleted",
            "cmk-breakglass",
        ] {
            let mut k = Key {
                enabled: true,
                version: 1,
                ..Default::default()
            };
            if name == "cmk-deleted" {
                k.deleted = true;
                k.enabled = false;
            }
            if name == "cmk-breakglass" {
                k.tags.insert(BREAK_GLASS_TAG.into(), "true".into());
            }
            s.keys.insert(name.into(), k);
        }
    }
    let st = state.clone();
    let base = serve(move |r| handle(&st, r)).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = RespondConfig {
        mode: Mode::Enforce,
        journal_path: dir.path().join("j.jsonl"),
        playbooks: vec![
            Playbook {
                name: "contain".into(),
                rules: vec!["kms_human_decrypt".into()],
                min_level: None,
                tags: vec![],
                providers: vec![],
                actions: vec![ActionSpec {
                    kind: ActionKind::Disable,
                    rotation_period_days: None,
                }],
                mode: None,
            },
            Playbook {
                name: "recover".into(),
                rules: vec!["kms_schedule_key_deletion".into()],
                min_level: None,
                tags: vec![],
                providers: vec![],
                actions: vec![ActionSpec {
                    kind: ActionKind::CancelDeletion,
                    rotation_period_days: None,
                }],
                mode: None,
            },
        ],
        azure: Some(AzureConfig {
            tenant_id: Some(TENANT.into()),
            client_id: Some("app-id".into()),
            client_secret: Some(Secret("s3cret".into())),
            authority: Some(base.clone()),
            vault_endpoint: Some(base.clone()),
            max_retry_wait_secs: Some(2),
            ..Default::default()
        }),
        ..Default::default()
    };
    let r = Responder::new(cfg).unwrap();
    let key = |n: &str| format!("{VAULT}/keys/{n}");

    // Disable through a playbook: PATCH attributes.enabled=false.
    let out = r
        .on_finding(&finding(
            "kms_human_decrypt",
            4,
            &[(Provider::Azure, &key("cmk-payments"))],
        ))
        .await;
    let exec = last(&out);
    assert_eq!(
        (exec.phase, exec.outcome),
        (Phase::Execute, Outcome::Applied),
        "{exec:#?}"
    );
    assert!(!state.lock().unwrap().keys["cmk-payments"].enabled);
    assert_eq!(exec.state_before.as_ref().unwrap().status, "enabled");
    assert_eq!(exec.state_after.as_ref().unwrap().status, "disabled");
    assert_eq!(
        state.lock().unwrap().tokens_issued,
        1,
        "the token is cached"
    );

    // The token expires mid-run: 401, refresh, retry; the undo succeeds.
    state.lock().unwrap().valid_token = Some("rotated-out".into());
    let out = r.undo(&exec.record_id, "alice", "").await.unwrap();
    assert_eq!(last(&out).outcome, Outcome::Applied, "{:#?}", last(&out));
    assert!(state.lock().unwrap().keys["cmk-payments"].enabled);
    assert_eq!(state.lock().unwrap().tokens_issued, 2);

    // Throttled: 429 with Retry-After: 1, then success.
    state.lock().unwrap().throttle = 1;
    let t0 = Instant::now();
    let manual = |k: &str, kind: ActionKind| ManualRequest {
        provider: Provider::Azure,
        key: key(k),
        action: Action::new(kind),
        dry_run: false,
        reason: "test".into(),
        who: "t".into(),
    };
    let out = r
        .manual(manual("cmk-orders", ActionKind::Rotate))
        .await
        .unwrap();
    assert!(t0.elapsed().as_millis() >= 1000, "Retry-After honoured");
    let rec = last(&out);
    assert_eq!(rec.outcome, Outcome::Applied);
    assert!(rec.detail.unwrap().contains("/keys/cmk-orders/v2"));
    assert_eq!(state.lock().unwrap().keys["cmk-orders"].version, 2);

    // Rotation policy.
    let mut a = Action::new(ActionKind::EnableRotation);
    a.rotation_period_days = Some(90);
    let out = r
        .manual(ManualRequest {
            action: a,
            ..manual("cmk-orders", ActionKind::EnableRotation)
        })
        .await
        .unwrap();
    assert_eq!(last(&out).outcome, Outcome::Applied);
    assert_eq!(
        state.lock().unwrap().keys["cmk-orders"].rotate_days,
        Some(90)
    );
    assert_eq!(
        last(&out).undo.map(|u| u.kind),
        Some(ActionKind::DisableRotation)
    );

    // A soft-deleted key is recovered (and enabled).
    let out = r
        .on_finding(&finding(
            "kms_schedule_key_deletion",
            5,
            &[(Provider::Azure, &key("cmk-deleted"))],
        ))
        .await;
    let rec = last(&out);
    assert_eq!(rec.outcome, Outcome::Applied, "{rec:#?}");
    assert!(rec.state_before.unwrap().pending_deletion);
    {
        let s = state.lock().unwrap();
        assert!(!s.keys["cmk-deleted"].deleted);
        assert!(s.keys["cmk-deleted"].enabled);
    }

    // Break-glass tag: refused, untouched.
    let out = r
        .manual(manual("cmk-breakglass", ActionKind::Disable))
        .await
        .unwrap();
    assert_eq!(last(&out).outcome, Outcome::Refused);
    assert!(state.lock().unwrap().keys["cmk-breakglass"].enabled);

    // Unknown key: the provider's error code reaches the record.
    let out = r.manual(manual("nope", ActionKind::Disable)).await.unwrap();
    let rec = last(&out);
    assert_eq!(rec.outcome, Outcome::Failed);
    assert!(rec.detail.unwrap().contains("KeyNotFound"));

    // Persistent throttling ends in a retryable failure, not a hang.
    state.lock().unwrap().throttle = 100;
    let out = r
        .manual(manual("cmk-orders", ActionKind::Disable))
        .await
        .unwrap();
    let rec = last(&out);
    assert_eq!(rec.outcome, Outcome::Failed);
    assert_eq!(rec.retryable, Some(true));
    state.lock().unwrap().throttle = 0;

    let log = state.lock().unwrap().log.clone();
    assert!(log
        .iter()
        .all(|l| !l.starts_with("DELETE") && !l.ends_with("/purge")));
}
