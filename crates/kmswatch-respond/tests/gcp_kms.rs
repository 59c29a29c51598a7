//! Google Cloud KMS responder against a fake implementing the documented REST endpoints (v1
//! paths, `updateMask`, `:updatePrimaryVersion`, `:restore`), the OAuth JWT-bearer token
//! exchange (the fake verifies the RS256 signature of the service account's JWT), the
//! `{"error":{"code","message","status"}}` error shape, 429 throttling and a token that expires
//! mid-run.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::signature::{self, KeyPair as _};
use base64::Engine;
use common::{serve, Req, Resp, Shared};
use kmswatch_model::Finding;
use kmswatch_model::Provider;
use kmswatch_respond::action::BREAK_GLASS_LABEL;
use kmswatch_respond::config::{ActionSpec, Playbook};
use kmswatch_respond::gcp::GcpConfig;
use kmswatch_respond::testutil::finding;
use kmswatch_respond::{
    Action, ActionKind, AuditRecord, ManualRequest, Mode, Outcome, RespondConfig, Responder,
    ResponseOutput,
};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

const RING: &str = "projects/kmswatch-demo/locations/europe-west1/keyRings/prod";
const SA: &str = "kmswatch-respond@kmswatch-demo.iam.gserviceaccount.com";

#[derive(Debug, Clone, Default)]
struct Key {
    versions: BTreeMap<u32, String>,
    primary: u32,
    labels: BTreeMap<String, String>,
    rotation_period: Option<String>,
}

#[derive(Debug, Default)]
struct Fake {
    keys: BTreeMap<String, Key>,
    public_key: Vec<u8>,
    token_uri: String,
    tokens_issued: u32,
    valid_token: Option<String>,
    throttle: u32,
    log: Vec<String>,
    /// Cloud Logging entries (`entries:list` answers from these).
    entries: Vec<Value>,
}

fn err(status: u16, code: &str, msg: &str) -> Resp {
    Resp::json(
        status,
        json!({"error": {"code": status, "message": msg, "status": code}}),
    )
}

fn b64d(s: &str) -> Vec<u8> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .unwrap_or_default()
}

fn key_json(name: &str, k: &Key) -> Value {
    let mut v = json!({
        "name": name,
        "purpose": "ENCRYPT_DECRYPT",
        "primary": {"name": format!("{name}/cryptoKeyVersions/{}", k.primary), "state": k.versions.get(&k.primary)},
        "labels": k.labels,
    });
    if let Some(p) = &k.rotation_period {
        v["rotationPeriod"] = json!(p);
    }
    v
}

fn version_json(key: &str, id: u32, state: &str) -> Value {
    json!({"name": format!("{key}/cryptoKeyVersions/{id}"), "state": state})
}

fn handle(state: &Shared<Fake>, r: Req) -> Resp {
    let mut s = state.lock().unwrap();
    s.log.push(format!("{} {}", r.method, r.path));
    if r.path == "/token" {
        let f = r.form();
        if f.get("grant_type").map(String::as_str)
            != Some("urn:ietf:params:oauth:grant-type:jwt-bearer")
        {
            return Resp::json(400, json!({"error": "unsupported_grant_type"}));
        }
        let jwt = f.get("assertion").cloned().unwrap_or_default();
        let parts: Vec<&str> = jwt.split('.').collect();
        let [h, c, sig] = parts.as_slice() else {
            return Resp::json(
                400,
                json!({"error": "invalid_grant", "error_description": "malformed JWT"}),
            );
        };
        let pk = signature::UnparsedPublicKey::new(
            &signature::RSA_PKCS1_2048_8192_SHA256,
            &s.public_key,
        );
        if pk
            .verify(format!("{h}.{c}").as_bytes(), &b64d(sig))
            .is_err()
        {
            return Resp::json(
                400,
                json!({"error": "invalid_grant", "error_description": "Invalid JWT Signature."}),
            );
        }
        let header: Value = serde_json::from_slice(&b64d(h)).unwrap_or_default();
        let claims: Value = serde_json::from_slice(&b64d(c)).unwrap_or_default();
        if header["alg"] != "RS256"
            || claims["iss"] != SA
            || claims["aud"] != s.token_uri.as_str()
            || claims["scope"]
                != "https://www.googleapis.com/auth/cloudkms https://www.googleapis.com/auth/logging.read"
        {
            return Resp::json(
                400,
                json!({"error": "invalid_grant", "error_description": "bad claims"}),
            );
        }
        s.tokens_issued += 1;
        let t = format!("ya29.token-{}", s.tokens_issued);
        s.valid_token = Some(t.clone());
        return Resp::json(
            200,
            json!({"access_token": t, "expires_in": 3599, "token_type": "Bearer"}),
        );
    }
    if r.bearer().is_none() || r.bearer() != s.valid_token.as_deref() {
        return err(
            401,
            "UNAUTHENTICATED",
            "Request had invalid authentication credentials.",
        );
    }
    if s.throttle > 0 {
        s.throttle -= 1;
        return err(
            429,
            "RESOURCE_EXHAUSTED",
            "Quota exceeded for quota metric 'Write requests'.",
        )
        .header("Retry-After", "1");
    }
    if r.method == "DELETE" || r.path.ends_with(":destroy") {
        panic!(
            "kmswatch sent a destructive request: {} {}",
            r.method, r.path
        );
    }
    if r.path == "/v2/entries:list" {
        // Cloud Logging: `insertId="X" AND timestamp>="T1" AND timestamp<="T2"` over one project.
        let body = r.json();
        let filter = body["filter"].as_str().unwrap_or_default().to_string();
        let project = body["resourceNames"][0]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let parts: Vec<&str> = filter.split(" AND ").collect();
        let [id, from, to] = parts.as_slice() else {
            return err(400, "INVALID_ARGUMENT", "unexpected filter");
        };
        let (Some(id), true, true) = (
            id.strip_prefix("insertId=\"")
                .and_then(|x| x.strip_suffix('"')),
            from.starts_with("timestamp>=\""),
            to.starts_with("timestamp<=\""),
        ) else {
            return err(400, "INVALID_ARGUMENT", "unexpected filter");
        };
        let found: Vec<Value> = s
            .entries
            .iter()
            .filter(|e| {
                e["insertId"] == id
                    && e["logName"]
                        .as_str()
                        .is_some_and(|l| l.starts_with(&format!("{project}/logs/")))
            })
            .cloned()
            .collect();
        return Resp::json(200, json!({ "entries": found }));
    }
    let Some(path) = r.path.strip_prefix("/v1/") else {
        return err(404, "NOT_FOUND", "no such path");
    };
    // Split "NAME:verb".
    let (name, verb) = match path.rsplit_once(':') {
        Some((n, v)) if !v.contains('/') => (n.to_string(), Some(v.to_string())),
        _ => (path.to_string(), None),
    };
    let (key_name, version) = match name.split_once("/cryptoKeyVersions") {
        Some((k, rest)) => (
            k.to_string(),
            Some(rest.trim_start_matches('/').to_string()),
        ),
        None => (name.clone(), None),
    };
    let Some(k) = s.keys.get_mut(&key_name) else {
        return err(404, "NOT_FOUND", &format!("{key_name} not found."));
    };
    match (r.method.as_str(), version.as_deref(), verb.as_deref()) {
        ("GET", None, None) => Resp::json(200, key_json(&key_name, k)),
        ("GET", Some(""), None) => Resp::json(
            200,
            json!({"cryptoKeyVersions": k.versions.iter().map(|(i, st)| version_json(&key_name, *i, st)).collect::<Vec<_>>(), "totalSize": k.versions.len()}),
        ),
        ("PATCH", None, None) => {
            let mask = r.query.get("updateMask").cloned().unwrap_or_default();
            let body = r.json();
            if mask.is_empty() {
                return err(400, "INVALID_ARGUMENT", "updateMask is required");
            }
            for field in mask.split(',') {
                match field {
                    "labels" => {
                        k.labels = body["labels"]
                            .as_object()
                            .map(|m| {
                                m.iter()
                                    .map(|(a, b)| {
                                        (a.clone(), b.as_str().unwrap_or_default().to_string())
                                    })
                                    .collect()
                            })
                            .unwrap_or_default()
                    }
                    "rotationPeriod" => {
                        k.rotation_period = body["rotationPeriod"].as_str().map(str::to_string)
                    }
                    "nextRotationTime" => {
                        if k.rotation_period.is_some()
                            && body["nextRotationTime"]
                                .as_str()
                                .is_none_or(|t| !t.ends_with('Z'))
                        {
                            return err(
                                400,
                                "INVALID_ARGUMENT",
                                "nextRotationTime is required with rotationPeriod",
                            );
                        }
                    }
                    other => {
                        return err(
                            400,
                            "INVALID_ARGUMENT",
                            &format!("bad updateMask field {other}"),
                        )
                    }
                }
            }
            Resp::json(200, key_json(&key_name, k))
        }
        ("PATCH", Some(v), None) => {
            if r.query.get("updateMask").map(String::as_str) != Some("state") {
                return err(400, "INVALID_ARGUMENT", "updateMask=state is required");
            }
            let id: u32 = v.parse().unwrap_or(0);
            let want = r.json()["state"].as_str().unwrap_or_default().to_string();
            let Some(cur) = k.versions.get_mut(&id) else {
                return err(404, "NOT_FOUND", "version not found");
            };
            if !matches!(want.as_str(), "ENABLED" | "DISABLED")
                || !matches!(cur.as_str(), "ENABLED" | "DISABLED")
            {
                return err(
                    400,
                    "FAILED_PRECONDITION",
                    &format!("cannot change {cur} to {want}"),
                );
            }
            *cur = want.clone();
            Resp::json(200, version_json(&key_name, id, &want))
        }
        ("POST", Some(""), None) => {
            let id = k.versions.keys().max().copied().unwrap_or(0) + 1;
            k.versions.insert(id, "ENABLED".into());
            Resp::json(200, version_json(&key_name, id, "ENABLED"))
        }
        ("POST", None, Some("updatePrimaryVersion")) => {
            let id: u32 = r.json()["cryptoKeyVersionId"]
                .as_str()
                .unwrap_or_default()
                .parse()
                .unwrap_or(0);
            if k.versions.get(&id).map(String::as_str) != Some("ENABLED") {
                return err(400, "FAILED_PRECONDITION", "primary must be ENABLED");
            }
            k.primary = id;
            Resp::json(200, key_json(&key_name, k))
        }
        ("POST", Some(v), Some("restore")) => {
            let id: u32 = v.parse().unwrap_or(0);
            match k.versions.get_mut(&id) {
                Some(st) if st == "DESTROY_SCHEDULED" => {
                    *st = "DISABLED".into();
                    Resp::json(200, version_json(&key_name, id, "DISABLED"))
                }
                _ => err(
                    400,
                    "FAILED_PRECONDITION",
                    "version is not DESTROY_SCHEDULED",
                ),
            }
        }
        _ => err(
            400,
            "INVALID_ARGUMENT",
            &format!("no route {} {}", r.method, r.path),
        ),
    }
}

fn last(out: &[ResponseOutput]) -> AuditRecord {
    out.iter()
        .filter_map(|o| o.audit().cloned())
        .next_back()
        .unwrap()
}

#[tokio::test]
async fn gcp_cloud_kms_end_to_end() {
    // A service-account key of our own.
    let kp = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
    let der = AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(&kp).unwrap();
    let pem = format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        base64::engine::general_purpose::STANDARD.encode(der.as_ref())
    );
    let state: Shared<Fake> = Arc::new(Mutex::new(Fake {
        public_key: kp.public_key().as_ref().to_vec(),
        ..Default::default()
    }));
    {
        let mut s = state.lock().unwrap();
        let v = |pairs: &[(u32, &str)]| pairs.iter().map(|(i, st)| (*i, st.to_string())).collect();
        s.keys.insert(
            format!("{RING}/cryptoKeys/payments"),
            Key {
                versions: v(&[(1, "DISABLED"), (2, "ENABLED"), (3, "ENABLED")]),
                primary: 3,
                ..Default::default()
            },
        );
        s.keys.insert(
            format!("{RING}/cryptoKeys/orders"),
            Key {
                versions: v(&[(1, "ENABLED"), (2, "DESTROY_SCHEDULED")]),
                primary: 1,
                ..Default::default()
            },
        );
        let mut bg = Key {
            versions: v(&[(1, "ENABLED")]),
            primary: 1,
            ..Default::default()
        };
        bg.labels.insert(BREAK_GLASS_LABEL.into(), "true".into());
        s.keys.insert(format!("{RING}/cryptoKeys/breakglass"), bg);
    }
    let st = state.clone();
    let base = serve(move |r| handle(&st, r)).await;
    state.lock().unwrap().token_uri = format!("{base}/token");
    let dir = tempfile::tempdir().unwrap();
    let sa_file = dir.path().join("sa.json");
    std::fs::write(
        &sa_file,
        json!({
            "type": "service_account",
            "project_id": "kmswatch-demo",
            "private_key_id": "0123456789abcdef",
            "private_key": pem,
            "client_email": SA,
            "token_uri": format!("{base}/token"),
        })
        .to_string(),
    )
    .unwrap();
    let cfg = RespondConfig {
        mode: Mode::Enforce,
        journal_path: dir.path().join("j.jsonl"),
        playbooks: vec![
            Playbook {
                name: "contain".into(),
                rules: vec!["kms_human_decrypt".into()],
                min_level: None,
                tags: vec![],
                providers: vec![Provider::Gcp],
                actions: vec![ActionSpec {
                    kind: ActionKind::Disable,
                    rotation_period_days: None,
                }],
                mode: None,
            },
            Playbook {
                name: "restore".into(),
                rules: vec!["kms_key_version_destroyed".into()],
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
        gcp: Some(GcpConfig {
            credentials_file: Some(sa_file),
            endpoint: Some(base.clone()),
            logging_endpoint: Some(base.clone()),
            max_retry_wait_secs: Some(2),
            ..Default::default()
        }),
        ..Default::default()
    };
    let r = Responder::new(cfg).unwrap();
    let key = |n: &str| format!("{RING}/cryptoKeys/{n}");
    let versions = |n: &str| state.lock().unwrap().keys[&key(n)].versions.clone();

    // The findings' events are in Cloud Logging.
    let logged = |f: Finding| {
        let mut s = state.lock().unwrap();
        for e in &f.evidences {
            let k = e.kms.key.as_ref().unwrap().uid.clone();
            s.entries.push(json!({
                "insertId": e.metadata.uid,
                "logName": "projects/kmswatch-demo/logs/cloudaudit.googleapis.com%2Fdata_access",
                "protoPayload": {
                    "methodName": format!("google.cloud.kms.v1.KeyManagementService.{}", e.api.operation),
                    "resourceName": format!("{k}/cryptoKeyVersions/3"),
                },
            }));
        }
        f
    };

    // A finding whose event Cloud Logging does not have: nothing changes.
    let mut forged = finding("kms_human_decrypt", 4, &[(Provider::Gcp, &key("payments"))]);
    forged.finding_info.uid = "forged".into();
    forged.evidences[0].metadata.uid = "forged-insert-id".into();
    let out = r.on_finding(&forged).await;
    let rec = last(&out);
    assert_eq!(rec.outcome, Outcome::NotCorroborated, "{rec:#?}");
    assert!(rec
        .detail
        .unwrap()
        .contains("Cloud Logging has no entry forged-insert-id"));
    assert!(versions("payments").values().any(|s| s == "ENABLED"));

    // Disable: every ENABLED version; the undo re-enables exactly those.
    let out = r
        .on_finding(&logged(finding(
            "kms_human_decrypt",
            4,
            &[(Provider::Gcp, &key("payments"))],
        )))
        .await;
    let exec = last(&out);
    assert_eq!(exec.outcome, Outcome::Applied, "{exec:#?}");
    assert!(versions("payments").values().all(|s| s == "DISABLED"));
    assert_eq!(
        exec.undo.as_ref().unwrap().versions,
        vec!["2".to_string(), "3".to_string()]
    );
    assert_eq!(state.lock().unwrap().tokens_issued, 1);

    // Token expires mid-run: 401, a fresh JWT exchange, retry.
    state.lock().unwrap().valid_token = Some("expired".into());
    let out = r.undo(&exec.record_id, "alice", "").await.unwrap();
    assert_eq!(last(&out).outcome, Outcome::Applied, "{:#?}", last(&out));
    let v = versions("payments");
    assert_eq!(
        (v[&1].as_str(), v[&2].as_str(), v[&3].as_str()),
        ("DISABLED", "ENABLED", "ENABLED")
    );
    assert_eq!(state.lock().unwrap().tokens_issued, 2);

    // Rotate under throttling: 429 + Retry-After, then a new primary; undo restores the old one.
    state.lock().unwrap().throttle = 1;
    let manual = |k: &str, a: Action| ManualRequest {
        provider: Provider::Gcp,
        key: key(k),
        action: a,
        dry_run: false,
        reason: "test".into(),
        who: "t".into(),
    };
    let out = r
        .manual(manual("payments", Action::new(ActionKind::Rotate)))
        .await
        .unwrap();
    let rot = last(&out);
    assert_eq!(rot.outcome, Outcome::Applied, "{rot:#?}");
    assert_eq!(state.lock().unwrap().keys[&key("payments")].primary, 4);
    assert_eq!(
        rot.undo.as_ref().map(|u| u.kind),
        Some(ActionKind::SetPrimary)
    );
    r.undo(&rot.record_id, "alice", "").await.unwrap();
    assert_eq!(state.lock().unwrap().keys[&key("payments")].primary, 3);

    // Automatic rotation period.
    let mut a = Action::new(ActionKind::EnableRotation);
    a.rotation_period_days = Some(90);
    let out = r.manual(manual("payments", a)).await.unwrap();
    assert_eq!(last(&out).outcome, Outcome::Applied, "{:#?}", last(&out));
    assert_eq!(
        state.lock().unwrap().keys[&key("payments")]
            .rotation_period
            .as_deref(),
        Some("7776000s")
    );

    // A version scheduled for destruction is restored and enabled.
    let out = r
        .on_finding(&logged(finding(
            "kms_key_version_destroyed",
            5,
            &[(Provider::Gcp, &key("orders"))],
        )))
        .await;
    assert_eq!(last(&out).outcome, Outcome::Applied, "{:#?}", last(&out));
    assert_eq!(versions("orders")[&2], "ENABLED");

    // One named version only.
    let out = r
        .manual(manual(
            "orders/cryptoKeyVersions/1",
            Action::new(ActionKind::Disable),
        ))
        .await
        .unwrap();
    assert_eq!(last(&out).outcome, Outcome::Applied);
    let v = versions("orders");
    assert_eq!((v[&1].as_str(), v[&2].as_str()), ("DISABLED", "ENABLED"));

    // Break-glass label.
    let out = r
        .manual(manual("breakglass", Action::new(ActionKind::Disable)))
        .await
        .unwrap();
    assert_eq!(last(&out).outcome, Outcome::Refused);

    // Google's error shape reaches the record.
    let out = r
        .manual(manual("missing", Action::new(ActionKind::Disable)))
        .await
        .unwrap();
    let rec = last(&out);
    assert_eq!(rec.outcome, Outcome::Failed);
    assert!(rec.detail.unwrap().contains("NOT_FOUND"));

    let log = state.lock().unwrap().log.clone();
    assert!(log
        .iter()
        .all(|l| !l.starts_with("DELETE") && !l.ends_with(":destroy")));
}
