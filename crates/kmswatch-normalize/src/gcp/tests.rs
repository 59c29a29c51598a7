//! Unit tests of the GCP normalizer: records are built with the scanner directly, so these
//! run without the document reader.

use super::*;
use crate::{Normalizer, Options};
use base64::Engine as _;
use kmswatch_model::{KmsOperation as K, OCSF_VERSION};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

fn normalizer() -> Normalizer {
    Normalizer::new(Options::default()).expect("default options compile")
}

fn run_bytes(bytes: &[u8]) -> Result<Outcome, RecordError> {
    let start = crate::scan::skip_ws(bytes, 0);
    let (fields, end) = crate::scan::object_fields(bytes, start).expect("test record is an object");
    let rec = Record {
        bytes: &bytes[start..end],
        fields: &fields,
        strict: false,
        checked: None,
        nested: &[],
    };
    normalize(&normalizer(), &rec)
}

fn run(v: &Value) -> Result<Outcome, RecordError> {
    run_bytes(v.to_string().as_bytes())
}

/// The event of a KMS (`related == false`) or related record; panics with the outcome otherwise.
fn event(v: &Value, want_related: bool) -> Event {
    match run(v) {
        Ok(Outcome::Event { event, related }) => {
            assert_eq!(related, want_related, "related flag");
            *event
        }
        other => panic!("expected an event, got {other:?}"),
    }
}

fn skip(v: &Value) -> SkipReason {
    match run(v) {
        Ok(Outcome::Skip(r)) => r,
        other => panic!("expected a skip, got {other:?}"),
    }
}

const KEY: &str = "projects/kmswatch-demo/locations/us-east1/keyRings/app-ring/cryptoKeys/app-key";

fn kms_entry(method: &str, principal: Value) -> Value {
    json!({
        "protoPayload": {
            "@type": "type.googleapis.com/google.cloud.audit.AuditLog",
            "status": {},
            "authenticationInfo": {"principalEmail": principal},
            "requestMetadata": {"callerIp": "203.0.113.10", "callerSuppliedUserAgent": "gcloud"},
            "serviceName": "cloudkms.googleapis.com",
            "methodName": method,
            "resourceName": KEY,
        },
        "insertId": "abc123",
        "resource": {"type": "cloudkms_cryptokey", "labels": {
            "project_id": "kmswatch-demo", "location": "us-east1",
            "key_ring_id": "app-ring", "crypto_key_id": "app-key"}},
        "timestamp": "2024-05-14T09:12:03.123456789Z",
        "logName": "projects/kmswatch-demo/logs/cloudaudit.googleapis.com%2Fdata_access",
    })
}

#[test]
fn decrypt_by_user_all_fields() {
    let ev = event(&kms_entry("Decrypt", json!("alice@example.com")), false);
    assert_eq!(ev.time, 1_715_677_923_123);
    assert_eq!(ev.metadata.uid, "abc123");
    assert_eq!(ev.metadata.product.name, "Cloud Audit Logs");
    assert_eq!(ev.metadata.product.vendor_name, "Google");
    assert_eq!(ev.metadata.log_format, "gcp_audit");
    assert_eq!(ev.metadata.version, OCSF_VERSION);
    assert_eq!(ev.cloud.provider, Provider::Gcp);
    assert_eq!(ev.cloud.region.as_deref(), Some("us-east1"));
    assert_eq!(ev.cloud.account.uid.as_deref(), Some("kmswatch-demo"));
    assert_eq!(ev.api.operation, "Decrypt");
    assert_eq!(ev.api.service.name, "cloudkms.googleapis.com");
    assert_eq!(ev.status, Status::Success);
    assert_eq!(ev.status_detail, None);
    assert_eq!(ev.actor.kind, ActorKind::Human);
    assert_eq!(ev.actor.user.uid.as_deref(), Some("alice@example.com"));
    assert_eq!(ev.actor.user.type_.as_deref(), Some("user"));
    assert_eq!(ev.actor.invoked_by, None);
    assert_eq!(ev.src_endpoint.ip.as_deref(), Some("203.0.113.10"));
    assert_eq!(ev.http_request.user_agent.as_deref(), Some("gcloud"));
    assert_eq!(ev.kms.operation, K::Decrypt);
    let key = ev.kms.key.expect("key");
    assert_eq!(key.uid, KEY);
    assert_eq!(key.version, None);
    assert_eq!(key.account_uid.as_deref(), Some("kmswatch-demo"));
    assert!(!ev.kms.cross_account);
    assert_eq!(ev.activity_id, K::Decrypt.activity_id());
    // raw is the record, byte for byte.
    let raw: Value = serde_json::from_str(ev.raw.get()).expect("raw is JSON");
    assert_eq!(raw["insertId"], "abc123");
}

#[test]
fn fully_qualified_method_names() {
    let ev = event(
        &kms_entry(
            "google.cloud.kms.v1.KeyManagementService.AsymmetricSign",
            json!("alice@example.com"),
        ),
        false,
    );
    assert_eq!(ev.kms.operation, K::Sign);
    assert_eq!(
        ev.api.operation,
        "google.cloud.kms.v1.KeyManagementService.AsymmetricSign"
    );
}

#[test]
fn failure_status_code_names() {
    for (code, name) in [
        (7, "PERMISSION_DENIED"),
        (5, "NOT_FOUND"),
        (9, "FAILED_PRECONDITION"),
        (16, "UNAUTHENTICATED"),
        (99, "99"),
    ] {
        let mut v = kms_entry("Decrypt", json!("alice@example.com"));
        v["protoPayload"]["status"] = json!({"code": code, "message": "no"});
        let ev = event(&v, false);
        assert_eq!(ev.status, Status::Failure);
        assert_eq!(ev.status_detail.as_deref(), Some(name));
    }
    let mut v = kms_entry("Decrypt", json!("alice@example.com"));
    v["protoPayload"]["status"] = json!({"code": 0});
    assert_eq!(event(&v, false).status, Status::Success);
}

#[test]
fn service_agent_is_cloud_service() {
    let ev = event(
        &kms_entry(
            "Encrypt",
            json!("service-123456789012@gs-project-accounts.iam.gserviceaccount.com"),
        ),
        false,
    );
    assert_eq!(ev.kms.operation, K::Encrypt);
    assert_eq!(ev.actor.kind, ActorKind::CloudService);
    assert_eq!(ev.actor.user.type_.as_deref(), Some("serviceAgent"));
    assert_eq!(
        ev.actor.invoked_by.as_deref(),
        Some("storage.googleapis.com")
    );
    // Agent project is a number, key project an id: unknown, not cross-account.
    assert!(!ev.kms.cross_account);
}

#[test]
fn cross_account_by_service_account_project() {
    let ev = event(
        &kms_entry(
            "Decrypt",
            json!("app@other-project.iam.gserviceaccount.com"),
        ),
        false,
    );
    assert_eq!(ev.actor.kind, ActorKind::Service);
    assert_eq!(
        ev.actor
            .user
            .account
            .as_ref()
            .and_then(|a| a.uid.as_deref()),
        Some("other-project")
    );
    assert!(ev.kms.cross_account);

    let ev = event(
        &kms_entry(
            "Decrypt",
            json!("app@kmswatch-demo.iam.gserviceaccount.com"),
        ),
        false,
    );
    assert!(!ev.kms.cross_account);

    // Numbers compare with numbers.
    let mut v = kms_entry(
        "Encrypt",
        json!("service-999@gs-project-accounts.iam.gserviceaccount.com"),
    );
    let numeric_key = "projects/123/locations/us/keyRings/r/cryptoKeys/k";
    v["protoPayload"]["resourceName"] = json!(numeric_key);
    v["resource"] = json!({"type": "cloudkms_cryptokey", "labels": {"project_id": "123"}});
    let ev = event(&v, false);
    assert_eq!(
        ev.kms.key.as_ref().map(|k| k.uid.as_str()),
        Some(numeric_key)
    );
    assert!(ev.kms.cross_account);
}

#[test]
fn impersonated_service_account_is_human() {
    let mut v = kms_entry(
        "Decrypt",
        json!("batch@kmswatch-apps.iam.gserviceaccount.com"),
    );
    v["protoPayload"]["authenticationInfo"]["serviceAccountDelegationInfo"] = json!([
        {"firstPartyPrincipal": {"principalEmail": "dave@example.com"}}
    ]);
    let ev = event(&v, false);
    assert_eq!(ev.actor.kind, ActorKind::Human);
    assert_eq!(
        ev.actor.user.uid.as_deref(),
        Some("batch@kmswatch-apps.iam.gserviceaccount.com")
    );
    assert_eq!(ev.actor.user.type_.as_deref(), Some("serviceAccount"));
    let imp = ev.actor.impersonator.expect("impersonator");
    assert_eq!(imp.uid.as_deref(), Some("dave@example.com"));
    assert_eq!(imp.type_.as_deref(), Some("user"));
    assert!(
        ev.kms.cross_account,
        "kmswatch-apps SA on a kmswatch-demo key"
    );

    // A service account impersonating a service account stays a service.
    let mut v = kms_entry("Decrypt", json!("b@kmswatch-demo.iam.gserviceaccount.com"));
    v["protoPayload"]["authenticationInfo"]["serviceAccountDelegationInfo"] = json!([
        {"firstPartyPrincipal": {"principalEmail": "a@kmswatch-demo.iam.gserviceaccount.com"}}
    ]);
    let ev = event(&v, false);
    assert_eq!(ev.actor.kind, ActorKind::Service);
    assert!(ev.actor.impersonator.is_some());
}

#[test]
fn principal_subject_and_missing_principal() {
    let mut v = kms_entry("Decrypt", json!(null));
    v["protoPayload"]["authenticationInfo"] = json!({
        "principalSubject": "principal://iam.googleapis.com/locations/global/workforcePools/corp/subject/alice"
    });
    let ev = event(&v, false);
    assert_eq!(ev.actor.kind, ActorKind::Human);
    assert_eq!(ev.actor.user.type_.as_deref(), Some("workforceIdentity"));

    let mut v = kms_entry("Decrypt", json!(null));
    v["protoPayload"]["authenticationInfo"] = json!({});
    let ev = event(&v, false);
    assert_eq!(ev.actor.kind, ActorKind::Anonymous);
    assert_eq!(ev.actor.user.uid, None);

    let mut v = kms_entry("Decrypt", json!(null));
    v["protoPayload"]
        .as_object_mut()
        .expect("object")
        .remove("authenticationInfo");
    assert_eq!(event(&v, false).actor.kind, ActorKind::Unknown);
}

#[test]
fn update_crypto_key_version_states() {
    for (state, mask, want) in [
        ("DISABLED", json!("state"), K::DisableKey),
        ("ENABLED", json!("state"), K::EnableKey),
        ("DISABLED", json!("labels"), K::UpdateKey),
    ] {
        let mut v = kms_entry("UpdateCryptoKeyVersion", json!("carol@example.com"));
        v["protoPayload"]["resourceName"] = json!(format!("{KEY}/cryptoKeyVersions/4"));
        v["protoPayload"]["request"] = json!({
            "cryptoKeyVersion": {"name": format!("{KEY}/cryptoKeyVersions/4"), "state": state},
            "updateMask": mask,
        });
        let ev = event(&v, false);
        assert_eq!(ev.kms.operation, want, "{state}");
        let key = ev.kms.key.expect("key");
        assert_eq!(key.uid, KEY);
        assert_eq!(key.version.as_deref(), Some("4"));
    }
}

#[test]
fn update_crypto_key_rotation() {
    let cases = [
        (
            json!({"cryptoKey": {"name": KEY}, "updateMask": "rotationPeriod,nextRotationTime"}),
            K::DisableKeyRotation,
        ),
        (
            json!({"cryptoKey": {"name": KEY, "rotationPeriod": "7776000s",
                "nextRotationTime": "2024-08-01T00:00:00Z"},
                "updateMask": "rotationPeriod,nextRotationTime"}),
            K::EnableKeyRotation,
        ),
        (
            json!({"cryptoKey": {"name": KEY, "labels": {"team": "a"}}, "updateMask": "labels"}),
            K::UpdateKey,
        ),
        (
            json!({"cryptoKey": {"name": KEY}, "updateMask": {"paths": ["rotation_period"]}}),
            K::DisableKeyRotation,
        ),
    ];
    for (req, want) in cases {
        let mut v = kms_entry("UpdateCryptoKey", json!("carol@example.com"));
        v["protoPayload"]["request"] = req.clone();
        assert_eq!(event(&v, false).kms.operation, want, "{req}");
    }
}

#[test]
fn destroy_pending_window() {
    let mut v = kms_entry("DestroyCryptoKeyVersion", json!("carol@example.com"));
    v["timestamp"] = json!("2024-05-15T22:41:07.881Z");
    v["protoPayload"]["resourceName"] = json!(format!("{KEY}/cryptoKeyVersions/1"));
    v["protoPayload"]["response"] = json!({"state": "DESTROY_SCHEDULED",
        "destroyTime": "2024-06-14T22:41:07.870Z"});
    let ev = event(&v, false);
    assert_eq!(ev.kms.operation, K::DestroyKeyVersion);
    assert_eq!(ev.kms.pending_window_days, Some(30));

    v["protoPayload"]["response"] = json!({"destroyScheduledDuration": "86400s"});
    assert_eq!(event(&v, false).kms.pending_window_days, Some(1));

    v["protoPayload"]
        .as_object_mut()
        .expect("object")
        .remove("response");
    assert_eq!(event(&v, false).kms.pending_window_days, None);
}

#[test]
fn key_ring_operations_have_an_object_not_a_key() {
    let ring = "projects/kmswatch-demo/locations/us-east1/keyRings/app-ring";
    let mut v = kms_entry("CreateKeyRing", json!("alice@example.com"));
    v["protoPayload"]["resourceName"] = json!(ring);
    v["resource"] = json!({"type": "cloudkms_keyring", "labels": {
        "project_id": "kmswatch-demo", "location": "us-east1", "key_ring_id": "app-ring"}});
    let ev = event(&v, false);
    assert_eq!(ev.kms.operation, K::CreateKey);
    assert_eq!(ev.kms.key, None);
    assert_eq!(ev.kms.object_uid.as_deref(), Some(ring));
}

#[test]
fn key_from_labels_and_request_when_no_resource_name() {
    let mut v = kms_entry("Decrypt", json!("alice@example.com"));
    v["protoPayload"]
        .as_object_mut()
        .expect("object")
        .remove("resourceName");
    assert_eq!(
        event(&v, false).kms.key.map(|k| k.uid),
        Some(KEY.to_owned())
    );
    v["protoPayload"]["request"] = json!({"name": format!("{KEY}/cryptoKeyVersions/9")});
    let key = event(&v, false).kms.key.expect("key");
    assert_eq!((key.uid.as_str(), key.version.as_deref()), (KEY, Some("9")));
}

#[test]
fn version_from_labels_of_the_same_key() {
    let mut v = kms_entry("CreateCryptoKeyVersion", json!("alice@example.com"));
    v["resource"]["labels"]["crypto_key_version_id"] = json!("2");
    assert_eq!(
        event(&v, false).kms.key.and_then(|k| k.version),
        Some("2".to_owned())
    );
    v["resource"]["labels"]["crypto_key_id"] = json!("other-key");
    assert_eq!(event(&v, false).kms.key.and_then(|k| k.version), None);
}

#[test]
fn time_fallback_and_errors() {
    let mut v = kms_entry("Decrypt", json!("alice@example.com"));
    v.as_object_mut().expect("object").remove("timestamp");
    v["receiveTimestamp"] = json!("2024-05-14T09:12:04Z");
    assert_eq!(event(&v, false).time, 1_715_677_924_000);

    v.as_object_mut()
        .expect("object")
        .remove("receiveTimestamp");
    let err = run(&v).expect_err("no time");
    assert_eq!(err.reason, RejectReason::MissingField);

    v["timestamp"] = json!("yesterday");
    let err = run(&v).expect_err("bad time");
    assert_eq!(err.reason, RejectReason::BadValue);
    assert!(err.detail.contains("yesterday"), "{}", err.detail);

    let mut v = kms_entry("Decrypt", json!("alice@example.com"));
    v["protoPayload"]
        .as_object_mut()
        .expect("object")
        .remove("methodName");
    assert_eq!(
        run(&v).expect_err("no method").reason,
        RejectReason::MissingField
    );
}

#[test]
fn missing_insert_id_gets_a_stable_id() {
    let mut v = kms_entry("Decrypt", json!("alice@example.com"));
    v.as_object_mut().expect("object").remove("insertId");
    let a = event(&v, false).metadata.uid;
    let b = event(&v, false).metadata.uid;
    assert!(a.starts_with("gcp-fnv-"), "{a}");
    assert_eq!(a, b);
    v["timestamp"] = json!("2024-05-14T09:12:05Z");
    assert_ne!(event(&v, false).metadata.uid, a);
}

#[test]
fn panther_lower_case_spellings() {
    let v = json!({
        "protopayload": {
            "serviceName": "cloudkms.googleapis.com", "methodName": "Encrypt",
            "resourceName": KEY,
            "authenticationInfo": {"principalEmail": "alice@example.com"},
            "requestMetadata": {"callerIP": "1.2.3.4"},
        },
        "insertid": "lc1",
        "logname": "projects/kmswatch-demo/logs/cloudaudit.googleapis.com%2Fdata_access",
        "receivetimestamp": "2023-05-23 19:39:07.924",
    });
    let ev = event(&v, false);
    assert_eq!(ev.metadata.uid, "lc1");
    assert_eq!(ev.cloud.account.uid.as_deref(), Some("kmswatch-demo"));
    assert_eq!(ev.src_endpoint.ip.as_deref(), Some("1.2.3.4"));
    assert_eq!(ev.time, 1_684_870_747_924);
}

#[test]
fn caller_ip_both_spellings_do_not_clash() {
    let mut v = kms_entry("Decrypt", json!("alice@example.com"));
    v["protoPayload"]["requestMetadata"] = json!({"callerIP": "1.1.1.1", "callerIp": "2.2.2.2"});
    assert_eq!(event(&v, false).src_endpoint.ip.as_deref(), Some("2.2.2.2"));
    // A requestMetadata of the wrong shape is ignored, not fatal.
    v["protoPayload"]["requestMetadata"] = json!("...");
    assert_eq!(event(&v, false).src_endpoint.ip, None);
}

fn project_set_iam(service_data: Value, request: Value) -> Value {
    json!({
        "protoPayload": {
            "serviceName": "cloudresourcemanager.googleapis.com",
            "methodName": "SetIamPolicy",
            "resourceName": "projects/kmswatch-demo",
            "authenticationInfo": {"principalEmail": "mallory@example.net"},
            "serviceData": service_data,
            "request": request,
        },
        "insertId": "iam1",
        "resource": {"type": "project", "labels": {"project_id": "kmswatch-demo"}},
        "timestamp": "2024-05-16T05:00:00Z",
        "logName": "projects/kmswatch-demo/logs/cloudaudit.googleapis.com%2Factivity",
    })
}

#[test]
fn audit_config_changes_are_related() {
    let removed = project_set_iam(
        json!({"policyDelta": {"auditConfigDeltas": [
            {"action": "REMOVE", "service": "cloudkms.googleapis.com", "logType": "DATA_READ"}]}}),
        json!({"resource": "kmswatch-demo", "policy": {"bindings": []}}),
    );
    let ev = event(&removed, true);
    assert_eq!(ev.kms.operation, K::LoggingChange);
    assert_eq!(ev.api.operation, "SetIamPolicy");
    assert_eq!(ev.api.service.name, "cloudresourcemanager.googleapis.com");
    assert_eq!(ev.kms.key, None);
    assert_eq!(ev.kms.object_uid.as_deref(), Some("projects/kmswatch-demo"));
    assert_eq!(ev.cloud.account.uid.as_deref(), Some("kmswatch-demo"));

    // No delta: the request writing auditConfigs is enough.
    let written = project_set_iam(
        json!(null),
        json!({"policy": {"auditConfigs": [{"service": "allServices"}]}}),
    );
    event(&written, true);

    // A delta without audit config changes (Terraform names auditConfigs in every mask).
    let bindings_only = project_set_iam(
        json!({"policyDelta": {"bindingDeltas": [{"action": "ADD", "member": "user:x@example.com"}]}}),
        json!({"policy": {"bindings": []}, "updateMask": "bindings,etag,auditConfigs"}),
    );
    assert_eq!(skip(&bindings_only), SkipReason::NotKms);

    // Empty auditConfigDeltas are no change.
    let empty = project_set_iam(
        json!({"policyDelta": {"auditConfigDeltas": []}}),
        json!({"policy": {}}),
    );
    assert_eq!(skip(&empty), SkipReason::NotKms);

    // Not a project/folder/org: a bucket's SetIamPolicy mentioning auditConfig is not kept.
    let mut bucket = removed.clone();
    bucket["protoPayload"]["resourceName"] = json!("projects/_/buckets/b");
    bucket["protoPayload"]["serviceName"] = json!("storage.googleapis.com");
    assert_eq!(skip(&bucket), SkipReason::NotKms);

    // Folders and organizations count.
    let mut org = removed;
    org["protoPayload"]["resourceName"] = json!("organizations/888888888888");
    event(&org, true);
}

#[test]
fn logging_config_changes_are_related() {
    for (method, want) in [
        ("google.logging.v2.ConfigServiceV2.UpdateSink", true),
        ("google.logging.v2.ConfigServiceV2.DeleteSink", true),
        ("google.logging.v2.ConfigServiceV2.CreateSink", true),
        ("google.logging.v2.ConfigServiceV2.CreateExclusion", true),
        ("google.logging.v2.ConfigServiceV2.UpdateExclusion", true),
        ("google.logging.v2.ConfigServiceV2.DeleteExclusion", true),
        ("google.logging.v2.ConfigServiceV2.UpdateSettings", true),
        ("google.logging.v2.ConfigServiceV2.UpdateCmekSettings", true),
        ("google.logging.v2.ConfigServiceV2.GetSink", false),
        ("google.logging.v2.ConfigServiceV2.ListSinks", false),
    ] {
        let v = json!({
            "protoPayload": {
                "serviceName": "logging.googleapis.com",
                "methodName": method,
                "resourceName": "projects/kmswatch-demo/sinks/kms-to-siem",
                "authenticationInfo": {"principalEmail": "mallory@example.net"},
            },
            "insertId": "log1",
            "timestamp": "2024-05-16T05:01:00Z",
            "logName": "projects/kmswatch-demo/logs/cloudaudit.googleapis.com%2Factivity",
        });
        if want {
            let ev = event(&v, true);
            assert_eq!(ev.kms.operation, K::LoggingChange);
            assert_eq!(ev.api.operation, method);
            assert_eq!(
                ev.kms.object_uid.as_deref(),
                Some("projects/kmswatch-demo/sinks/kms-to-siem")
            );
            assert_eq!(ev.actor.kind, ActorKind::Human);
        } else {
            assert_eq!(skip(&v), SkipReason::NotKms, "{method}");
        }
    }
}

#[test]
fn other_entries_are_skipped() {
    // Another service's entry mentioning cloudkms (a CMEK-protected disk).
    let v = json!({
        "protoPayload": {"serviceName": "compute.googleapis.com",
            "methodName": "v1.compute.disks.insert",
            "request": {"diskEncryptionKey": {"kmsKeyName": "x"}, "note": "cloudkms.googleapis.com"}},
        "insertId": "x", "timestamp": "2024-05-16T05:01:00Z",
        "logName": "projects/kmswatch-demo/logs/cloudaudit.googleapis.com%2Factivity",
    });
    assert_eq!(skip(&v), SkipReason::NotKms);
    // Non-audit LogEntry.
    let v = json!({"textPayload": "hello", "logName": "projects/p/logs/stdout",
        "insertId": "y", "timestamp": "2024-05-16T05:01:00Z"});
    assert_eq!(skip(&v), SkipReason::NotKms);
    // A KMS-looking entry without a time is skipped when it is not KMS, not rejected.
    let v = json!({"protoPayload": {"serviceName": "storage.googleapis.com", "methodName": "x"}});
    assert_eq!(skip(&v), SkipReason::NotKms);
    // Security Command Center notification.
    let v = json!({"notificationConfigName": "organizations/1/notificationConfigs/n",
        "finding": {"name": "f", "category": "OPEN_FIREWALL"}, "resource": {"name": "r"}});
    assert_eq!(skip(&v), SkipReason::NotAuditRecord);
}

#[test]
fn looks_like_log_entries() {
    let yes = [
        json!({"protoPayload": {}}),
        json!({"protopayload": {}}),
        json!({"logName": "projects/p/logs/x", "insertId": "1"}),
        json!({"logName": "projects/p/logs/x", "resource": {}}),
    ];
    let no = [
        json!({"logName": "projects/p/logs/x"}),
        json!({"eventSource": "kms.amazonaws.com"}),
        json!({"notificationConfigName": "x", "finding": {}}),
    ];
    for (v, want) in yes
        .iter()
        .map(|v| (v, true))
        .chain(no.iter().map(|v| (v, false)))
    {
        let bytes = v.to_string();
        let (fields, _) = crate::scan::object_fields(bytes.as_bytes(), 0).expect("object");
        let rec = Record {
            bytes: bytes.as_bytes(),
            fields: &fields,
            strict: false,
            checked: None,
            nested: &[],
        };
        assert_eq!(looks_like(&rec), want, "{v}");
    }
}

#[test]
fn never_panics_on_odd_shapes() {
    for pp in [
        json!("string"),
        json!([1, 2]),
        json!({"serviceName": 5, "methodName": "Decrypt"}),
        json!({"serviceName": "cloudkms.googleapis.com", "methodName": ["x"]}),
        json!({"serviceName": "cloudkms.googleapis.com", "methodName": "Decrypt",
            "resourceName": "projects//locations//keyRings", "request": "x", "response": 1,
            "status": "bad", "authenticationInfo": [], "resourceLocation": "..."}),
        json!({"serviceName": "cloudkms.googleapis.com", "methodName": "DestroyCryptoKeyVersion",
            "response": {"destroyTime": "1970-01-01T00:00:00Z", "destroyScheduledDuration": "xs"}}),
    ] {
        let v = json!({"protoPayload": pp, "timestamp": "2024-05-16T05:01:00Z", "resource": 7});
        let _ = run(&v);
    }
}

// ---- fixtures and the real samples in /work/shared/data ----

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// Records of a file, unwrapped the way the document reader will: JSON lines, arrays,
/// Pub/Sub push envelopes and `{"_panther":…,"event":…}` wrappers.
fn records_of(path: &Path) -> Vec<Vec<u8>> {
    let text = std::fs::read_to_string(path).expect("readable");
    let docs: Vec<Value> = match serde_json::from_str::<Value>(&text) {
        Ok(Value::Array(a)) => a,
        Ok(v) => vec![v],
        Err(_) => text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).expect("JSON line"))
            .collect(),
    };
    docs.into_iter()
        .map(|d| {
            if let Some(data) = d.pointer("/message/data").and_then(Value::as_str) {
                base64::engine::general_purpose::STANDARD
                    .decode(data)
                    .expect("base64")
            } else if let Some(ev) = d.get("event").filter(|_| d.get("_panther").is_some()) {
                ev.to_string().into_bytes()
            } else {
                d.to_string().into_bytes()
            }
        })
        .collect()
}

#[derive(Debug, Default, PartialEq, Eq)]
struct Counts {
    kms: usize,
    related: usize,
    skipped: usize,
    rejected: usize,
}

fn count(paths: &[PathBuf]) -> (Counts, Vec<Event>) {
    let mut c = Counts::default();
    let mut events = Vec::new();
    for p in paths {
        for r in records_of(p) {
            match run_bytes(&r) {
                Ok(Outcome::Event { event, related }) => {
                    if related {
                        c.related += 1;
                    } else {
                        c.kms += 1;
                    }
                    events.push(*event);
                }
                Ok(Outcome::Skip(_)) => c.skipped += 1,
                Err(e) => {
                    c.rejected += 1;
                    eprintln!("{}: rejected: {e}", p.display());
                }
            }
        }
    }
    (c, events)
}

fn files(dir: &Path) -> Option<Vec<PathBuf>> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            let n = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            (n.ends_with(".json") || n.ends_with(".jsonl")) && !n.ends_with(".golden.jsonl")
        })
        .collect();
    v.sort();
    Some(v)
}

#[test]
fn project_fixtures() {
    let dir = workspace_root().join("fixtures/gcp");
    let Some(paths) = files(&dir) else {
        panic!("fixtures/gcp missing at {}", dir.display());
    };
    let (c, events) = count(&paths);
    assert_eq!(
        c,
        Counts {
            kms: 14,
            related: 3,
            skipped: 4,
            rejected: 0
        }
    );
    // kms-setiampolicy-public.json and kms-setiampolicy-external.json.
    assert!(events
        .iter()
        .any(|e| e.kms.policy.as_ref().is_some_and(|p| p.public)));
    assert!(events.iter().any(|e| e
        .kms
        .policy
        .as_ref()
        .is_some_and(|p| p.external_accounts == ["partner-analytics-prod"])));
    let ops: Vec<_> = events.iter().map(|e| e.kms.operation).collect();
    for want in [
        K::Decrypt,
        K::Encrypt,
        K::Sign,
        K::GetKey,
        K::ListKeys,
        K::CreateKey,
        K::DestroyKeyVersion,
        K::DisableKey,
        K::DisableKeyRotation,
        K::UpdateKeyPolicy,
        K::GenerateMac,
        K::LoggingChange,
    ] {
        assert!(ops.contains(&want), "no {want:?} in fixtures: {ops:?}");
    }
    assert!(events
        .iter()
        .any(|e| e.actor.impersonator.is_some() && e.actor.kind == ActorKind::Human));
    assert!(events
        .iter()
        .any(|e| e.status_detail.as_deref() == Some("PERMISSION_DENIED")));
    assert!(events.iter().any(|e| e.kms.pending_window_days == Some(30)));
}

/// A Panther sample file of KMS events, by its file name: not by its whole path, which
/// holds the checkout's folder (`kmswatch`, as `git clone` names it).
fn is_kms_sample(p: &Path) -> bool {
    p.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.contains("kms"))
}

#[test]
fn kms_samples_are_chosen_by_file_name() {
    let root = Path::new("/home/dev/kmswatch/../shared/data/gcp/panther-analysis-test-events");
    assert!(is_kms_sample(&root.join("panther_gcp_kms_tests.jsonl")));
    assert!(!is_kms_sample(&root.join("panther_gcp_other_tests.jsonl")));
}

#[test]
fn shared_samples() {
    let root = workspace_root().join("../shared/data/gcp");
    let custodian = root.join("cloud-custodian-gcp-audit-events");
    let panther = root.join("panther-analysis-test-events");
    let (Some(c_files), Some(p_files)) = (files(&custodian), files(&panther)) else {
        eprintln!("skipping shared_samples: {} not present", root.display());
        return;
    };
    let (c, events) = count(&c_files);
    assert_eq!((c.kms, c.rejected), (3, 0), "custodian: {c:?}");
    // CreateSink and CreateExclusion are kept as related; the rest skipped.
    assert_eq!(c.related, 2, "custodian: {c:?}");
    assert!(events
        .iter()
        .filter(|e| !matches!(e.kms.operation, K::LoggingChange))
        .all(|e| e.kms.operation == K::CreateKey && e.actor.kind == ActorKind::Human));

    let kms_file: Vec<_> = p_files
        .iter()
        .filter(|p| is_kms_sample(p))
        .cloned()
        .collect();
    let (c, events) = count(&kms_file);
    assert_eq!(
        c,
        Counts {
            kms: 10,
            related: 0,
            skipped: 0,
            rejected: 0
        }
    );
    let agent_encrypts = events
        .iter()
        .filter(|e| e.kms.operation == K::Encrypt && e.actor.kind == ActorKind::CloudService)
        .count();
    assert_eq!(agent_encrypts, 4);
    assert!(events.iter().any(|e| e.kms.operation == K::DisableKey));
    assert!(events.iter().any(|e| e.kms.operation == K::EnableKey));
    assert!(events
        .iter()
        .any(|e| e.kms.operation == K::DestroyKeyVersion));
    assert_eq!(
        events
            .iter()
            .filter(|e| e.kms.operation == K::UpdateKeyPolicy)
            .count(),
        2
    );

    let (c, _) = count(&p_files);
    assert_eq!(c.rejected, 0, "panther: {c:?}");
    assert_eq!(c.kms, 10, "panther: {c:?}");
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    fn any_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            ".{0,40}".prop_map(Value::from),
            Just(json!(KEY)),
            Just(json!("2024-05-14T09:12:03Z")),
        ];
        leaf.prop_recursive(3, 16, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
                proptest::collection::btree_map(
                    prop_oneof![
                        Just("name".to_owned()),
                        Just("state".to_owned()),
                        Just("updateMask".to_owned()),
                        Just("principalEmail".to_owned()),
                        "[a-z]{1,8}",
                    ],
                    inner,
                    0..4
                )
                .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        /// Any value in any field a kept entry reads: an event, a skip or a typed error, never
        /// a panic.
        #[test]
        fn never_panics(
            method in prop_oneof![Just("UpdateCryptoKey".to_owned()), Just("DestroyCryptoKeyVersion".to_owned()), ".{0,30}"],
            principal in any_json(),
            request in any_json(),
            response in any_json(),
            status in any_json(),
            resource_name in any_json(),
            auth in any_json(),
            meta in any_json(),
            labels in any_json(),
            ts in any_json(),
        ) {
            let mut v = kms_entry(&method, principal);
            v["protoPayload"]["request"] = request;
            v["protoPayload"]["response"] = response;
            v["protoPayload"]["status"] = status;
            v["protoPayload"]["resourceName"] = resource_name;
            v["protoPayload"]["requestMetadata"] = meta;
            v["resource"]["labels"] = labels;
            v["timestamp"] = ts;
            let _ = run(&v);
            v["protoPayload"]["authenticationInfo"] = auth;
            let _ = run(&v);
        }

        /// Principals of any shape classify without panicking.
        #[test]
        fn classify_never_panics(p in ".{0,80}") {
            let _ = classify::classify(&p);
            let _ = identity::parse(&p);
        }
    }
}

// ---- SetIamPolicy: kms.grantees and kms.policy ----

fn set_iam(request_members: &[&str], delta: Option<Value>, delta_under: &str) -> Value {
    let mut v = kms_entry("SetIamPolicy", json!("carol@example.com"));
    v["protoPayload"]["request"] = json!({
        "@type": "type.googleapis.com/google.iam.v1.SetIamPolicyRequest",
        "resource": KEY,
        "policy": {"bindings": [{"role": "roles/cloudkms.cryptoKeyEncrypterDecrypter",
                                  "members": request_members}]},
    });
    if let Some(d) = delta {
        v["protoPayload"][delta_under] = json!({
            "@type": "type.googleapis.com/google.iam.v1.logging.AuditData",
            "policyDelta": {"bindingDeltas": d},
        });
    }
    v
}

#[test]
fn set_iam_policy_delta_adds_are_the_grantees() {
    for under in ["serviceData", "metadata"] {
        let delta = json!([
            {"action": "ADD", "role": "roles/cloudkms.cryptoKeyDecrypter", "member": "serviceAccount:etl@partner-proj.iam.gserviceaccount.com"},
            {"action": "REMOVE", "role": "roles/cloudkms.cryptoKeyDecrypter", "member": "user:old@example.com"},
            {"action": "ADD", "role": "roles/cloudkms.viewer", "member": "allAuthenticatedUsers"},
            {"action": "ADD", "role": "roles/cloudkms.cryptoKeyDecrypter", "member": "serviceAccount:etl@partner-proj.iam.gserviceaccount.com"},
        ]);
        // The request's full policy also lists members that were already there.
        let ev = event(
            &set_iam(
                &["user:alice@example.com", "allAuthenticatedUsers"],
                Some(delta),
                under,
            ),
            false,
        );
        assert_eq!(ev.kms.operation, K::UpdateKeyPolicy);
        assert_eq!(
            ev.kms.grantees,
            vec![
                "serviceAccount:etl@partner-proj.iam.gserviceaccount.com",
                "allAuthenticatedUsers"
            ],
            "{under}"
        );
        let p = ev.kms.policy.expect("policy");
        assert!(p.public);
        assert_eq!(p.external_accounts, vec!["partner-proj"]);
    }
}

#[test]
fn set_iam_policy_delta_with_only_removals_grants_nothing() {
    let delta =
        json!([{"action": "REMOVE", "role": "roles/cloudkms.viewer", "member": "allUsers"}]);
    let ev = event(
        &set_iam(&["user:alice@example.com"], Some(delta), "serviceData"),
        false,
    );
    assert!(ev.kms.grantees.is_empty());
    assert_eq!(ev.kms.policy, Some(kmswatch_model::PolicyChange::default()));
}

#[test]
fn set_iam_policy_without_delta_reads_request_members() {
    let ev = event(
        &set_iam(
            &[
                "allUsers",
                "user:alice@example.com",
                "serviceAccount:app@kmswatch-demo.iam.gserviceaccount.com",
                "serviceAccount:service-123456789012@gcp-sa-pubsub.iam.gserviceaccount.com",
                "serviceAccount:service-123456789012@gs-project-accounts.iam.gserviceaccount.com",
                "serviceAccount:123456789012-compute@developer.gserviceaccount.com",
                "serviceAccount:build@Other-Proj.iam.gserviceaccount.com",
                "group:kms-admins@example.com",
            ],
            None,
            "",
        ),
        false,
    );
    assert_eq!(ev.kms.grantees.len(), 8);
    assert_eq!(ev.kms.grantees[0], "allUsers");
    let p = ev.kms.policy.expect("policy");
    assert!(p.public);
    // Own project, service agents, a project number and users/groups are not external.
    assert_eq!(p.external_accounts, vec!["other-proj"]);
}

#[test]
fn set_iam_policy_without_any_policy_leaves_fields_unset() {
    let mut v = kms_entry("SetIamPolicy", json!("carol@example.com"));
    v["protoPayload"]["request"] = json!({"resource": KEY, "policy": "garbage"});
    let ev = event(&v, false);
    assert!(ev.kms.grantees.is_empty());
    assert!(ev.kms.policy.is_none());
    // Other methods never get the fields, even with a policy in the request.
    let mut v = kms_entry("GetIamPolicy", json!("carol@example.com"));
    v["protoPayload"]["request"] =
        json!({"resource": KEY, "policy": {"bindings": [{"members": ["allUsers"]}]}});
    let ev = event(&v, false);
    assert!(ev.kms.grantees.is_empty());
    assert!(ev.kms.policy.is_none());
}

#[test]
fn set_iam_policy_on_a_key_ring_uses_its_project() {
    let mut v = set_iam(
        &["serviceAccount:reader@kmswatch-demo.iam.gserviceaccount.com"],
        None,
        "",
    );
    let ring = "projects/kmswatch-demo/locations/us-east1/keyRings/app-ring";
    v["protoPayload"]["resourceName"] = json!(ring);
    v["protoPayload"]["request"]["resource"] = json!(ring);
    v["resource"] = json!({"type": "cloudkms_keyring", "labels": {"project_id": "kmswatch-demo"}});
    let ev = event(&v, false);
    assert!(ev.kms.key.is_none());
    assert_eq!(
        ev.kms.grantees,
        vec!["serviceAccount:reader@kmswatch-demo.iam.gserviceaccount.com"]
    );
    assert_eq!(ev.kms.policy, Some(kmswatch_model::PolicyChange::default()));
}

#[test]
fn panther_set_iam_policy_samples() {
    let path = workspace_root()
        .join("../shared/data/gcp/panther-analysis-test-events/panther_gcp_kms_tests.jsonl");
    if !path.exists() {
        eprintln!(
            "skipping panther_set_iam_policy_samples: {} not present",
            path.display()
        );
        return;
    }
    let mut seen = Vec::new();
    for r in records_of(&path) {
        let Ok(Outcome::Event { event, .. }) = run_bytes(&r) else {
            continue;
        };
        if event.api.operation != "SetIamPolicy" {
            continue;
        }
        let p = event
            .kms
            .policy
            .clone()
            .expect("SetIamPolicy gets kms.policy");
        // Neither sample is public or external: one grants the project's own GCS service
        // agent, the other a service account of the key's own project.
        assert!(!p.public, "{:?}", event.kms);
        assert!(p.external_accounts.is_empty(), "{:?}", event.kms);
        assert_eq!(event.kms.grantees.len(), 1, "{:?}", event.kms);
        seen.push(event.kms.grantees[0].clone());
    }
    seen.sort();
    assert_eq!(
        seen,
        vec![
            "serviceAccount:app-service@test-project.iam.gserviceaccount.com",
            "serviceAccount:service-111111111111-gs-project-accounts.iam.gserviceaccount.com",
        ]
    );
}
