//! Record-level tests of the Azure normalizer: one record per shape, built directly.

use super::*;
use crate::{Options, Outcome};
use kmswatch_model::ActorKind;

fn norm(json: &str) -> Result<Outcome, RecordError> {
    let n = Normalizer::new(Options::default()).unwrap();
    let b = json.as_bytes();
    let (fields, _) = crate::scan::object_fields(b, 0).unwrap();
    let rec = Record {
        bytes: b,
        fields: &fields,
        strict: false,
        checked: None,
        nested: &[],
    };
    normalize(&n, &rec)
}

fn event(json: &str) -> Event {
    match norm(json) {
        Ok(Outcome::Event { event, related }) => {
            assert!(!related, "Azure events are never `related`");
            *event
        }
        other => panic!("expected an event, got {other:?}"),
    }
}

fn skipped(json: &str) -> SkipReason {
    match norm(json) {
        Ok(Outcome::Skip(r)) => r,
        other => panic!("expected a skip, got {other:?}"),
    }
}

fn looks(json: &str) -> bool {
    let b = json.as_bytes();
    let (fields, _) = crate::scan::object_fields(b, 0).unwrap();
    looks_like(&Record {
        bytes: b,
        fields: &fields,
        strict: false,
        checked: None,
        nested: &[],
    })
}

const SUB: &str = "5f0c7a3e-1b2d-4c6e-8f90-a1b2c3d4e5f6";
const TENANT: &str = "9e8d7c6b-5a49-4838-a726-1f0e0d0c0b0a";
const OID: &str = "0a1b2c3d-4e5f-4061-8273-94a5b6c7d8e9";
const VER: &str = "7c1d2e3f40516273849a0b1c2d3e4f50";

fn kv_record(op: &str, extra_props: &str, identity: &str, result: (&str, &str, u32)) -> String {
    format!(
        r#"{{"time":"2024-03-05T10:15:30.1234567Z","resourceId":"/SUBSCRIPTIONS/{}/RESOURCEGROUPS/RG-CRYPTO/PROVIDERS/MICROSOFT.KEYVAULT/VAULTS/KV-DEMO","operationName":"{op}","operationVersion":"7.4","category":"AuditEvent","resultType":"{}","resultSignature":"{}","durationMs":"12","callerIpAddress":"203.0.113.10","correlationId":"11111111-2222-4333-8444-555555555555","identity":{identity},"properties":{{"clientInfo":"azsdk-net-Security.KeyVault.Keys/4.5.0","httpStatusCode":{}{extra_props}}}}}"#,
        SUB.to_uppercase(),
        result.0,
        result.1,
        result.2
    )
}

fn user_identity() -> String {
    format!(
        r#"{{"claim":{{"http://schemas.microsoft.com/identity/claims/objectidentifier":"{OID}","http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn":"alice@kmswatch-demo.example","appid":"04b07795-8ddb-461a-bbee-02f9e1bf7b46","http://schemas.microsoft.com/identity/claims/tenantid":"{TENANT}"}}}}"#
    )
}

#[test]
fn key_decrypt_by_user() {
    let j = kv_record(
        "KeyDecrypt",
        &format!(
            r#","id":"https://KV-DEMO.vault.azure.net/keys/cmk-orders/{VER}","requestUri":"https://kv-demo.vault.azure.net/keys/cmk-orders/{VER}/decrypt?api-version=7.4""#
        ),
        &user_identity(),
        ("Success", "OK", 200),
    );
    assert!(looks(&j));
    let e = event(&j);
    assert_eq!(e.time, 1_709_633_730_123);
    assert_eq!(e.kms.operation, KmsOperation::Decrypt);
    assert_eq!(e.api.operation, "KeyDecrypt");
    assert_eq!(e.api.service.name, "Microsoft.KeyVault");
    assert_eq!(e.metadata.product.name, "Azure Key Vault");
    assert_eq!(e.metadata.product.vendor_name, "Microsoft");
    assert_eq!(e.metadata.log_format, "azure_keyvault");
    assert_eq!(
        e.metadata.uid,
        "11111111-2222-4333-8444-555555555555@2024-03-05T10:15:30.123Z"
    );
    assert_eq!(e.cloud.provider, Provider::Azure);
    assert_eq!(e.cloud.account.uid.as_deref(), Some(SUB));
    assert_eq!(e.status, Status::Success);
    assert_eq!(e.status_detail, None);
    let key = e.kms.key.as_ref().unwrap();
    assert_eq!(key.uid, "https://kv-demo.vault.azure.net/keys/cmk-orders");
    assert_eq!(key.version.as_deref(), Some(VER));
    assert_eq!(key.account_uid.as_deref(), Some(SUB));
    assert_eq!(e.kms.object_uid, None);
    assert_eq!(e.actor.kind, ActorKind::Human);
    assert_eq!(e.actor.user.uid.as_deref(), Some(OID));
    assert_eq!(
        e.actor.user.name.as_deref(),
        Some("alice@kmswatch-demo.example")
    );
    assert_eq!(
        e.actor.user.account.as_ref().unwrap().uid.as_deref(),
        Some(TENANT)
    );
    assert_eq!(e.src_endpoint.ip.as_deref(), Some("203.0.113.10"));
    assert_eq!(
        e.http_request.user_agent.as_deref(),
        Some("azsdk-net-Security.KeyVault.Keys/4.5.0")
    );
    // raw is the record, untouched.
    assert_eq!(e.raw.get(), j);
}

#[test]
fn key_unwrap_by_managed_identity_and_first_party() {
    let mi = format!(
        r#"{{"claim":{{"oid":"{OID}","appid":"3c2f5a10-7d1e-4b8a-a000-0000000000bb","idtyp":"app","xms_mirid":"/subscriptions/{SUB}/resourcegroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/sql-cmk"}}}}"#
    );
    let e = event(&kv_record(
        "KeyUnwrap",
        r#","requestUri":"https://kv-demo.vault.azure.net/keys/cmk-sql/unwrapkey?api-version=7.4""#,
        &mi,
        ("Success", "OK", 200),
    ));
    assert_eq!(e.kms.operation, KmsOperation::UnwrapKey);
    assert_eq!(e.actor.kind, ActorKind::Service);
    assert_eq!(e.actor.user.type_.as_deref(), Some("ManagedIdentity"));
    assert_eq!(
        e.kms.key.unwrap().uid,
        "https://kv-demo.vault.azure.net/keys/cmk-sql"
    );

    let fp = r#"{"claim":{"oid":"aaaaaaaa-0000-4000-8000-000000000001","appid":"a6aa9161-5291-40bb-8c5c-923b567bee3b"}}"#;
    let e = event(&kv_record(
        "KeyWrap",
        r#","id":"https://kv-demo.vault.azure.net/keys/cmk-storage""#,
        fp,
        ("Success", "OK", 200),
    ));
    assert_eq!(e.kms.operation, KmsOperation::WrapKey);
    assert_eq!(e.actor.kind, ActorKind::CloudService);
    assert_eq!(
        e.actor.invoked_by.as_deref(),
        Some("Azure Storage Resource Provider")
    );
}

#[test]
fn delete_purge_and_failure() {
    let e = event(&kv_record(
        "KeyDelete",
        r#","id":"https://kv-demo.vault.azure.net/keys/cmk-orders""#,
        &user_identity(),
        ("Success", "OK", 200),
    ));
    assert_eq!(e.kms.operation, KmsOperation::ScheduleKeyDeletion);
    let e = event(&kv_record(
        "KeyPurge",
        r#","requestUri":"https://kv-demo.vault.azure.net/deletedkeys/cmk-orders?api-version=7.4""#,
        &user_identity(),
        ("Success", "NoContent", 204),
    ));
    assert_eq!(e.kms.operation, KmsOperation::PurgeKey);
    assert_eq!(
        e.kms.key.unwrap().uid,
        "https://kv-demo.vault.azure.net/keys/cmk-orders"
    );
    assert_eq!(e.status, Status::Success);

    // Key Vault writes resultType Success for a 403; the status code decides.
    let e = event(&kv_record(
        "SecretGet",
        r#","requestUri":"https://kv-demo.vault.azure.net/secrets/db-password?api-version=7.4""#,
        &user_identity(),
        ("Success", "Forbidden", 403),
    ));
    assert_eq!(e.status, Status::Failure);
    assert_eq!(e.status_detail.as_deref(), Some("Forbidden"));
    assert_eq!(e.kms.operation, KmsOperation::SecretGet);
    assert_eq!(e.kms.key, None);
    assert_eq!(
        e.kms.object_uid.as_deref(),
        Some("https://kv-demo.vault.azure.net/secrets/db-password")
    );
}

#[test]
fn anonymous_authentication() {
    let e = event(&kv_record(
        "Authentication",
        r#","requestUri":"https://kv-demo.vault.azure.net/keys?api-version=7.4""#,
        "{}",
        ("Success", "Unauthorized", 401),
    ));
    assert_eq!(e.actor.kind, ActorKind::Anonymous);
    assert_eq!(e.status, Status::Failure);
    assert_eq!(
        e.kms.object_uid.as_deref(),
        Some("https://kv-demo.vault.azure.net/")
    );
}

#[test]
fn microsoft_docs_sample_vault_get() {
    let j = r#"{"time":"2016-01-05T01:32:01.2691226Z","resourceId":"/SUBSCRIPTIONS/361DA5D4-A47A-4C79-AFDD-XXXXXXXXXXXX/RESOURCEGROUPS/CONTOSOGROUP/PROVIDERS/MICROSOFT.KEYVAULT/VAULTS/CONTOSOKEYVAULT","operationName":"VaultGet","operationVersion":"2015-06-01","category":"AuditEvent","resultType":"Success","resultSignature":"OK","resultDescription":"","durationMs":"78","callerIpAddress":"104.40.82.76","correlationId":"","identity":{"claim":{"http://schemas.microsoft.com/identity/claims/objectidentifier":"d9da5048-2737-4770-bd64-XXXXXXXXXXXX","http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn":"live.com#username@outlook.com","appid":"1950a258-227b-4e31-a9cf-XXXXXXXXXXXX"}},"properties":{"clientInfo":"azure-resource-manager/2.0","requestUri":"https://control-prod-wus.vaultcore.azure.net/subscriptions/361da5d4-a47a-4c79-afdd-XXXXXXXXXXXX/resourcegroups/contosoresourcegroup/providers/Microsoft.KeyVault/vaults/contosokeyvault?api-version=2015-06-01","id":"https://contosokeyvault.vault.azure.net/","httpStatusCode":200}}"#;
    let e = event(j);
    assert_eq!(e.kms.operation, KmsOperation::Other);
    assert_eq!(
        e.kms.object_uid.as_deref(),
        Some("https://contosokeyvault.vault.azure.net/")
    );
    assert_eq!(e.actor.kind, ActorKind::Human);
    assert_eq!(
        e.cloud.account.uid.as_deref(),
        Some("361da5d4-a47a-4c79-afdd-xxxxxxxxxxxx")
    );
    // No correlation id: a stable hash of the bytes.
    assert!(e.metadata.uid.starts_with("azure:"), "{}", e.metadata.uid);
    assert_eq!(event(j).metadata.uid, e.metadata.uid);
}

#[test]
fn azure_diagnostics_row() {
    let j = format!(
        r#"{{"TenantId":"00000000-1111-2222-3333-444444444444","TimeGenerated":"2024-03-05T10:20:00.5Z","ResourceId":"/SUBSCRIPTIONS/{}/RESOURCEGROUPS/RG/PROVIDERS/MICROSOFT.KEYVAULT/VAULTS/KV-DEMO","Category":"AuditEvent","ResourceGroup":"RG","SubscriptionId":"{}","ResourceProvider":"MICROSOFT.KEYVAULT","Resource":"KV-DEMO","ResourceType":"VAULTS","OperationName":"KeySign","ResultType":"Success","ResultSignature":"OK","CallerIPAddress":"198.51.100.7","CorrelationId":"c0ffee00-0000-4000-8000-000000000001","id_s":"https://kv-demo.vault.azure.net/keys/signer/{VER}","requestUri_s":"https://kv-demo.vault.azure.net/keys/signer/{VER}/sign?api-version=7.4","httpStatusCode_d":200,"clientInfo_s":"Python/3.11 azure-keyvault-keys/4.8.0","identity_claim_http_schemas_microsoft_com_identity_claims_objectidentifier_g":"{OID}","identity_claim_appid_g":"3c2f5a10-7d1e-4b8a-a000-0000000000bb","identity_claim_idtyp_s":"app","identity_claim_upn_s":null,"_ItemId":"row-0001","Type":"AzureDiagnostics"}}"#,
        SUB.to_uppercase(),
        SUB.to_uppercase()
    );
    assert!(looks(&j));
    let e = event(&j);
    assert_eq!(e.kms.operation, KmsOperation::Sign);
    assert_eq!(e.metadata.uid, "row-0001");
    assert_eq!(e.cloud.account.uid.as_deref(), Some(SUB));
    assert_eq!(e.actor.kind, ActorKind::Service);
    assert_eq!(e.actor.user.uid.as_deref(), Some(OID));
    // The Log Analytics TenantId is the workspace, not the caller's tenant.
    assert_eq!(e.actor.user.account, None);
    assert_eq!(e.src_endpoint.ip.as_deref(), Some("198.51.100.7"));
    assert_eq!(
        e.http_request.user_agent.as_deref(),
        Some("Python/3.11 azure-keyvault-keys/4.8.0")
    );
    let key = e.kms.key.unwrap();
    assert_eq!(key.uid, "https://kv-demo.vault.azure.net/keys/signer");
    assert_eq!(key.version.as_deref(), Some(VER));
}

#[test]
fn azure_diagnostics_row_with_user_long_claim_and_403() {
    let j = format!(
        r#"{{"TimeGenerated":"2024-03-05T10:20:00Z","ResourceProvider":"MICROSOFT.KEYVAULT","ResourceId":"/SUBSCRIPTIONS/{SUB}/RESOURCEGROUPS/RG/PROVIDERS/MICROSOFT.KEYVAULT/VAULTS/KV-DEMO","OperationName":"SecretGet","ResultType":"Success","ResultSignature":"Forbidden","httpStatusCode_d":403.0,"requestUri_s":"https://kv-demo.vault.azure.net/secrets/api-token?api-version=7.4","identity_claim_http_schemas_xmlsoap_org_ws_2005_05_identity_claims_upn_s":"bob@kmswatch-demo.example","Category":"AuditEvent"}}"#
    );
    let e = event(&j);
    assert_eq!(e.status, Status::Failure);
    assert_eq!(e.actor.kind, ActorKind::Human);
    assert_eq!(
        e.actor.user.name.as_deref(),
        Some("bob@kmswatch-demo.example")
    );
    assert_eq!(
        e.kms.object_uid.as_deref(),
        Some("https://kv-demo.vault.azure.net/secrets/api-token")
    );
}

#[test]
fn azure_diagnostics_other_provider_is_not_kms() {
    let j = r#"{"TimeGenerated":"2024-03-05T10:20:00Z","ResourceProvider":"MICROSOFT.SQL","OperationName":"AuditEvent","Category":"SQLSecurityAuditEvents","ResourceId":"/SUBSCRIPTIONS/S/RESOURCEGROUPS/RG/PROVIDERS/MICROSOFT.SQL/SERVERS/X"}"#;
    assert_eq!(skipped(j), SkipReason::NotKms);
    let j = r#"{"TimeGenerated":"2024-03-05T10:20:00Z","ResourceProvider":"MICROSOFT.KEYVAULT","OperationName":"VaultGet","Category":"AzurePolicyEvaluationDetails"}"#;
    assert_eq!(skipped(j), SkipReason::NotKms);
}

#[test]
fn azkv_audit_logs_row() {
    let j = format!(
        r#"{{"TenantId":"00000000-1111-2222-3333-444444444444","TimeGenerated":"2024-03-05T11:00:00.000Z","OperationName":"KeyRotate","ResultType":"Success","ResultSignature":"OK","CallerIpAddress":"192.0.2.44","CorrelationId":"c0ffee00-0000-4000-8000-000000000002","Identity":{{"claim":{{"oid":"{OID}","upn":"carol@kmswatch-demo.example","tid":"{TENANT}"}}}},"Id":"https://kv-demo.vault.azure.net/keys/cmk-orders/{VER}","RequestUri":"https://kv-demo.vault.azure.net/keys/cmk-orders/rotate?api-version=7.4","HttpStatusCode":200,"ClientInfo":"azure-cli/2.61.0","Location":"westeurope","_ResourceId":"/subscriptions/{SUB}/resourcegroups/rg/providers/microsoft.keyvault/vaults/kv-demo","_SubscriptionId":"{SUB}","Type":"AZKVAuditLogs"}}"#
    );
    assert!(looks(&j));
    let e = event(&j);
    assert_eq!(e.kms.operation, KmsOperation::RotateKey);
    assert_eq!(e.actor.kind, ActorKind::Human);
    assert_eq!(
        e.actor.user.account.as_ref().unwrap().uid.as_deref(),
        Some(TENANT)
    );
    assert_eq!(e.cloud.region.as_deref(), Some("westeurope"));
    assert_eq!(e.cloud.account.uid.as_deref(), Some(SUB));
    assert_eq!(e.src_endpoint.ip.as_deref(), Some("192.0.2.44"));
    assert_eq!(e.kms.key.unwrap().version.as_deref(), Some(VER));
}

#[test]
fn azkv_identity_as_json_text() {
    let j = format!(
        r#"{{"TimeGenerated":"2024-03-05T11:00:00Z","OperationName":"KeyGet","Identity":"{{\"claim\":{{\"oid\":\"{OID}\",\"appid\":\"cfa8b339-82a2-471a-a3c9-0fc0be7a4093\"}}}}","Id":"https://kv-demo.vault.azure.net/keys/k","Type":"AZKVAuditLogs"}}"#
    );
    let e = event(&j);
    assert_eq!(e.actor.kind, ActorKind::CloudService);
    assert_eq!(e.actor.invoked_by.as_deref(), Some("Azure Key Vault"));
    assert_eq!(e.actor.user.uid.as_deref(), Some(OID));
}

#[test]
fn activity_export_vault_write_and_delete() {
    let j = format!(
        r#"{{"time":"2024-03-06T08:00:00.0000000Z","resourceId":"/SUBSCRIPTIONS/{}/RESOURCEGROUPS/RG/PROVIDERS/MICROSOFT.KEYVAULT/VAULTS/KV-DEMO","operationName":"MICROSOFT.KEYVAULT/VAULTS/WRITE","category":"Administrative","resultType":"Success","resultSignature":"Succeeded.OK","callerIpAddress":"203.0.113.99","correlationId":"aaaa0000-0000-4000-8000-00000000000a","identity":{{"authorization":{{"scope":"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/kv-demo","action":"Microsoft.KeyVault/vaults/write","evidence":{{"principalType":"User","principalId":"{OID}"}}}},"claims":{{"http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn":"dave@kmswatch-demo.example","http://schemas.microsoft.com/identity/claims/objectidentifier":"{OID}"}}}},"properties":{{"statusCode":"OK"}},"location":"westeurope","tenantId":"{TENANT}"}}"#,
        SUB.to_uppercase()
    );
    assert!(looks(&j));
    let e = event(&j);
    assert_eq!(e.kms.operation, KmsOperation::VaultUpdate);
    assert_eq!(e.metadata.product.name, "Azure Activity");
    assert_eq!(e.metadata.log_format, "azure_activity");
    assert_eq!(e.api.service.name, "Microsoft.KeyVault");
    assert_eq!(e.api.operation, "MICROSOFT.KEYVAULT/VAULTS/WRITE");
    assert_eq!(
        e.kms.object_uid.as_deref(),
        Some("https://kv-demo.vault.azure.net/")
    );
    assert_eq!(e.actor.kind, ActorKind::Human);
    assert_eq!(e.actor.user.uid.as_deref(), Some(OID));
    assert_eq!(
        e.actor.user.account.as_ref().unwrap().uid.as_deref(),
        Some(TENANT)
    );
    assert_eq!(e.cloud.region.as_deref(), Some("westeurope"));
    assert_eq!(e.status, Status::Success);
}

#[test]
fn activity_rest_shape() {
    let j = format!(
        r#"{{"authorization":{{"action":"Microsoft.KeyVault/vaults/delete","scope":"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/kv-old"}},"caller":"erin@kmswatch-demo.example","claims":{{"http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn":"erin@kmswatch-demo.example","http://schemas.microsoft.com/identity/claims/objectidentifier":"{OID}","http://schemas.microsoft.com/identity/claims/tenantid":"{TENANT}"}},"correlationId":"bbbb0000-0000-4000-8000-00000000000b","eventDataId":"e0e0e0e0-0000-4000-8000-000000000001","eventTimestamp":"2024-03-06T09:00:00.123456Z","httpRequest":{{"clientIpAddress":"198.51.100.20","method":"DELETE"}},"operationName":{{"value":"Microsoft.KeyVault/vaults/delete","localizedValue":"Delete Key Vault"}},"resourceId":"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/kv-old","status":{{"value":"Succeeded","localizedValue":"Succeeded"}},"subStatus":{{"value":"OK","localizedValue":"OK (HTTP Status Code: 200)"}},"subscriptionId":"{SUB}","tenantId":"{TENANT}"}}"#
    );
    assert!(looks(&j));
    let e = event(&j);
    assert_eq!(e.kms.operation, KmsOperation::VaultDelete);
    assert_eq!(e.metadata.uid, "e0e0e0e0-0000-4000-8000-000000000001");
    assert_eq!(e.api.operation, "Microsoft.KeyVault/vaults/delete");
    assert_eq!(e.src_endpoint.ip.as_deref(), Some("198.51.100.20"));
    assert_eq!(e.actor.kind, ActorKind::Human);
    assert_eq!(
        e.actor.user.name.as_deref(),
        Some("erin@kmswatch-demo.example")
    );
    assert_eq!(e.time, 1_709_715_600_123);
}

#[test]
fn activity_sdk_snake_case_failure() {
    let j = format!(
        r#"{{"caller":"{OID}","claims":{{"appid":"3c2f5a10-7d1e-4b8a-a000-0000000000bb","idtyp":"app","http://schemas.microsoft.com/identity/claims/objectidentifier":"{OID}"}},"correlation_id":"cccc0000-0000-4000-8000-00000000000c","event_data_id":"e0e0e0e0-0000-4000-8000-000000000002","event_timestamp":"2024-03-06T10:00:00.5Z","http_request":{{"client_ip_address":"192.0.2.8","method":"POST"}},"operation_name":{{"value":"Microsoft.KeyVault/locations/deletedVaults/purge/action","localized_value":"Purge Deleted Vault"}},"resource_id":"/subscriptions/{SUB}/providers/Microsoft.KeyVault/locations/westeurope/deletedVaults/kv-old","status":{{"value":"Failed","localized_value":"Failed"}},"sub_status":{{"value":"Conflict","localized_value":"Conflict (HTTP Status Code: 409)"}},"subscription_id":"{SUB}"}}"#
    );
    assert!(looks(&j));
    let e = event(&j);
    assert_eq!(e.kms.operation, KmsOperation::VaultDelete);
    assert_eq!(e.status, Status::Failure);
    assert_eq!(e.status_detail.as_deref(), Some("Conflict"));
    assert_eq!(e.actor.kind, ActorKind::Service);
    assert_eq!(e.src_endpoint.ip.as_deref(), Some("192.0.2.8"));
    assert_eq!(
        e.kms.object_uid.as_deref(),
        Some("https://kv-old.vault.azure.net/")
    );
}

#[test]
fn activity_diagnostic_setting_and_role_assignment() {
    let diag = format!(
        r#"{{"time":"2024-03-06T11:00:00Z","resourceId":"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/kv-demo/providers/Microsoft.Insights/diagnosticSettings/to-sentinel","operationName":"microsoft.insights/diagnosticSettings/delete","category":"Administrative","resultType":"Success","correlationId":"dddd0000-0000-4000-8000-00000000000d"}}"#
    );
    let e = event(&diag);
    assert_eq!(e.kms.operation, KmsOperation::LoggingChange);
    assert_eq!(e.api.service.name, "Microsoft.Insights");
    assert_eq!(
        e.kms.object_uid.as_deref(),
        Some("https://kv-demo.vault.azure.net/")
    );
    // The same operation on a storage account is not ours.
    let other = diag.replace(
        "Microsoft.KeyVault/vaults/kv-demo",
        "Microsoft.Storage/storageAccounts/st1",
    );
    assert_eq!(skipped(&other), SkipReason::NotKms);

    let ra = format!(
        r#"{{"time":"2024-03-06T12:00:00Z","resourceId":"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/kv-demo/keys/cmk-orders/providers/Microsoft.Authorization/roleAssignments/0f0f0f0f-0000-4000-8000-000000000001","operationName":"Microsoft.Authorization/roleAssignments/write","category":"Administrative","resultType":"Success","correlationId":"eeee0000-0000-4000-8000-00000000000e","identity":{{"authorization":{{"evidence":{{"principalType":"ServicePrincipal","principalId":"{OID}"}}}}}}}}"#
    );
    let e = event(&ra);
    assert_eq!(e.kms.operation, KmsOperation::UpdateKeyPolicy);
    assert_eq!(
        e.kms.key.unwrap().uid,
        "https://kv-demo.vault.azure.net/keys/cmk-orders"
    );
    assert_eq!(e.actor.kind, ActorKind::Service);
    // A subscription-wide role assignment is not ours.
    let sub_ra = format!(
        r#"{{"time":"2024-03-06T12:00:00Z","resourceId":"/subscriptions/{SUB}/providers/Microsoft.Authorization/roleAssignments/x","operationName":"Microsoft.Authorization/roleAssignments/write","category":"Administrative","identity":{{"authorization":{{"evidence":{{"roleAssignmentScope":"/subscriptions/{SUB}"}}}}}}}}"#
    );
    assert_eq!(skipped(&sub_ra), SkipReason::NotKms);
}

#[test]
fn activity_other_providers_and_sign_ins_skip() {
    for j in [
        r#"{"time":"2024-03-06T12:00:00Z","resourceId":"/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/disks/d","operationName":"Microsoft.Compute/disks/delete","category":"Administrative"}"#,
        r#"{"time":"2024-03-06T12:00:00Z","operationName":"Sign-in activity","category":"SignInLogs","resultType":"0"}"#,
        r#"{"time":"2024-03-06T12:00:00Z","resourceId":"/subscriptions/s/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/a","operationName":"GetBlob","category":"StorageRead"}"#,
        r#"{"operation_name":{"value":"Microsoft.Compute/disks/delete"},"event_timestamp":"2022-02-09T03:04:54.297853Z"}"#,
        r#"{"operationName":{"value":"Microsoft.Authorization/elevateAccess/action"},"time":"2024-01-01T00:00:00Z","category":"Administrative"}"#,
    ] {
        assert_eq!(skipped(j), SkipReason::NotKms, "{j}");
    }
}

#[test]
fn bad_records_are_rejected_with_reason() {
    let missing_time = r#"{"resourceId":"/subscriptions/s/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/v","operationName":"KeyGet","category":"AuditEvent"}"#;
    let e = norm(missing_time).unwrap_err();
    assert_eq!(e.reason, RejectReason::MissingField);
    assert!(e.detail.contains("time"), "{}", e.detail);

    let bad_time = r#"{"time":"yesterday","operationName":"KeyGet","category":"AuditEvent"}"#;
    let e = norm(bad_time).unwrap_err();
    assert_eq!(e.reason, RejectReason::BadValue);
    assert!(e.detail.contains("yesterday"));

    let not_azure = r#"{"hello":"world"}"#;
    assert_eq!(
        norm(not_azure).unwrap_err().reason,
        RejectReason::UnknownFormat
    );
    assert!(!looks(not_azure));
}

#[test]
fn never_panics_on_odd_values() {
    for j in [
        r#"{"operationName":null,"category":"AuditEvent"}"#,
        r#"{"operationName":{"value":null},"eventTimestamp":"x"}"#,
        r#"{"operationName":[1,2],"resourceId":7}"#,
        r#"{"time":"2024-01-01T00:00:00Z","operationName":"KeyGet","category":"AuditEvent","identity":"garbage","properties":[1]}"#,
        r#"{"time":"2024-01-01T00:00:00Z","operationName":"KeyGet","category":"AuditEvent","identity":{"claim":"x"},"properties":{"id":{"nested":1},"httpStatusCode":"abc"}}"#,
        r#"{"Type":"AZKVAuditLogs","Identity":"{not json","OperationName":"KeyGet","TimeGenerated":"2024-01-01T00:00:00Z"}"#,
        r#"{"OperationName":"KeyGet","ResourceProvider":"MICROSOFT.KEYVAULT","TimeGenerated":"2024-01-01T00:00:00Z","identity_claim_upn_s":5}"#,
    ] {
        let _ = norm(j);
    }
}

// ---- the shared real samples (skipped when absent) ------------------------------------

fn shared(rel: &str) -> Option<std::path::PathBuf> {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/data/azure")
        .join(rel);
    if p.exists() {
        Some(p)
    } else {
        eprintln!("skipping: {} not found", p.display());
        None
    }
}

fn inner<'a>(line: &'a [u8], key: &str) -> &'a [u8] {
    let (fields, _) = crate::scan::object_fields(line, 0).unwrap();
    fields
        .iter()
        .find(|(k, _)| *k == key.as_bytes())
        .map(|(_, v)| *v)
        .unwrap()
}

#[test]
fn panther_key_vault_events_all_normalize() {
    let Some(p) = shared("panther-analysis-test-events/panther_azure_kms_tests.jsonl") else {
        return;
    };
    let text = std::fs::read_to_string(p).unwrap();
    let mut n = 0;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let ev = std::str::from_utf8(inner(line.as_bytes(), "event")).unwrap();
        let e = event(ev);
        assert_eq!(e.metadata.product.name, "Azure Activity", "{ev}");
        assert!(
            e.kms.key.is_some() || e.kms.object_uid.is_some(),
            "no object for {ev}"
        );
        n += 1;
    }
    assert_eq!(n, 22);
}

#[test]
fn panther_other_azure_events_skip() {
    let Some(p) = shared("panther-analysis-test-events/panther_azure_other_tests.jsonl") else {
        return;
    };
    let text = std::fs::read_to_string(p).unwrap();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let ev = std::str::from_utf8(inner(line.as_bytes(), "event")).unwrap();
        match norm(ev) {
            Ok(Outcome::Skip(SkipReason::NotKms)) => {}
            other => panic!("{other:?} for {ev}"),
        }
    }
}

#[test]
fn microsoft_docs_and_plaso_samples() {
    if let Some(p) = shared("microsoft-docs-keyvault-logging-sample/logging.md.records-sample.json")
    {
        let text = std::fs::read_to_string(p).unwrap();
        let records = inner(text.trim().as_bytes(), "records");
        let (els, _) = crate::scan::array_elements(records, 0).unwrap();
        assert_eq!(els.len(), 1);
        for r in els {
            let e = event(std::str::from_utf8(&records[r]).unwrap());
            assert_eq!(e.api.operation, "VaultGet");
        }
    }
    if let Some(p) = shared("plaso-test-data/azure_activity_log.jsonl") {
        let text = std::fs::read_to_string(p).unwrap();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            assert_eq!(skipped(line), SkipReason::NotKms, "{line}");
            assert!(looks(line));
        }
    }
}

/// The same shared files through the whole document reader (envelopes, labelled wrappers).
#[test]
fn shared_samples_through_document_reader() {
    let n = Normalizer::new(Options::default()).unwrap();
    let count = |rel: &str| -> Option<crate::Summary> {
        let p = shared(rel)?;
        let bytes = std::fs::read(&p).unwrap();
        let mut s = crate::Summary::default();
        for item in n.normalize_to_vec(&bytes, rel) {
            if let crate::Item::Rejected {
                error, location, ..
            } = &item
            {
                panic!("{location}: rejected: {error}");
            }
            s.add(&item);
        }
        Some(s)
    };
    if let Some(s) = count("panther-analysis-test-events/panther_azure_kms_tests.jsonl") {
        assert_eq!(s.kms_events, 22, "{s:?}");
    }
    if let Some(s) = count("panther-analysis-test-events/panther_azure_other_tests.jsonl") {
        assert_eq!(s.kms_events + s.related_events, 0, "{s:?}");
        assert_eq!(s.records, 272);
        assert_eq!(s.skipped.get("not_kms").copied(), Some(272), "{s:?}");
    }
    if let Some(s) = count("microsoft-docs-keyvault-logging-sample/logging.md.records-sample.json")
    {
        assert_eq!(s.kms_events, 1, "{s:?}");
    }
    if let Some(s) = count("plaso-test-data/azure_activity_log.jsonl") {
        assert_eq!(s.kms_events, 0, "{s:?}");
        assert_eq!(s.skipped.get("not_kms").copied(), Some(s.records), "{s:?}");
    }
}

#[test]
fn azure_activity_table_row() {
    let j = format!(
        r#"{{"TimeGenerated":"2024-03-06T13:00:00Z","OperationNameValue":"MICROSOFT.KEYVAULT/VAULTS/ACCESSPOLICIES/WRITE","ActivityStatusValue":"Success","ActivitySubstatusValue":"","Caller":"frank@kmswatch-demo.example","CallerIpAddress":"203.0.113.61","CorrelationId":"ffff0000-0000-4000-8000-00000000000f","EventDataId":"e0e0e0e0-0000-4000-8000-000000000003","_ResourceId":"/subscriptions/{SUB}/resourcegroups/rg/providers/microsoft.keyvault/vaults/kv-demo","SubscriptionId":"{SUB}","Claims_d":{{"http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn":"frank@kmswatch-demo.example"}},"Type":"AzureActivity"}}"#
    );
    assert!(looks(&j));
    let e = event(&j);
    assert_eq!(e.kms.operation, KmsOperation::UpdateKeyPolicy);
    assert_eq!(e.metadata.uid, "e0e0e0e0-0000-4000-8000-000000000003");
    assert_eq!(e.metadata.product.name, "Azure Activity");
    assert_eq!(e.actor.kind, ActorKind::Human);
    assert_eq!(e.src_endpoint.ip.as_deref(), Some("203.0.113.61"));
    assert_eq!(
        e.kms.object_uid.as_deref(),
        Some("https://kv-demo.vault.azure.net/")
    );
}

// ---- storage accounts switched to a customer-managed Key Vault key ----

fn related_event(json: &str) -> Event {
    match norm(json) {
        Ok(Outcome::Event { event, related }) => {
            assert!(related, "a storage CMK switch is a related event");
            *event
        }
        other => panic!("expected a related event, got {other:?}"),
    }
}

const STORAGE_ID: &str = "/subscriptions/5f0c7a3e-1b2d-4c6e-8f90-a1b2c3d4e5f6/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/stdemo";

/// An exported Activity Log storage write with `properties.requestbody` = `body` (JSON text).
fn storage_write(body: &str) -> String {
    let body = serde_json::to_string(body).unwrap();
    format!(
        r#"{{"time":"2024-03-10T02:14:00.0000000Z","resourceId":"{STORAGE_ID}","operationName":"Microsoft.Storage/storageAccounts/write","category":"Administrative","resultType":"Start","resultSignature":"Started.","correlationId":"c0c0c0c0-0000-4000-8000-000000000001","callerIpAddress":"203.0.113.10","identity":{{"claims":{{"http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn":"alice@kmswatch-demo.example"}}}},"properties":{{"requestbody":{body}}}}}"#
    )
}

const CMK_BODY: &str = r#"{"properties":{"encryption":{"keySource":"Microsoft.Keyvault","keyvaultproperties":{"keyvaulturi":"https://KV-Demo.vault.azure.net:443/","keyname":"storage-cmk","keyversion":"7c1d2e3f40516273849a0b1c2d3e4f50"}}}}"#;

#[test]
fn storage_cmk_switch_is_related_with_the_vault_key() {
    let ev = related_event(&storage_write(CMK_BODY));
    assert_eq!(ev.kms.operation, KmsOperation::Other);
    let key = ev.kms.key.expect("key");
    assert_eq!(key.uid, "https://kv-demo.vault.azure.net/keys/storage-cmk");
    assert_eq!(key.version.as_deref(), Some(VER));
    assert_eq!(key.account_uid, None);
    assert_eq!(ev.cloud.account.uid.as_deref(), Some(SUB));
    assert_eq!(ev.api.operation, "Microsoft.Storage/storageAccounts/write");
    assert_eq!(ev.actor.kind, ActorKind::Human);
}

#[test]
fn storage_cmk_body_variants() {
    // camelCase names, no version, a managed HSM; the key in the URI instead of `keyname`.
    for (body, uid, version) in [
        (
            r#"{"properties":{"encryption":{"keySource":"Microsoft.KeyVault","keyVaultProperties":{"keyVaultUri":"https://kv-demo.vault.azure.net","keyName":"k1"}}}}"#,
            "https://kv-demo.vault.azure.net/keys/k1",
            None,
        ),
        (
            r#"{"properties":{"encryption":{"keySource":"Microsoft.Keyvault","keyvaultproperties":{"keyvaulturi":"https://hsm-demo.managedhsm.azure.net/","keyname":"k2"}}}}"#,
            "https://hsm-demo.managedhsm.azure.net/keys/k2",
            None,
        ),
        (
            r#"{"properties":{"encryption":{"keySource":"Microsoft.Keyvault","keyvaultproperties":{"keyvaulturi":"https://kv-demo.vault.azure.net/keys/k3/7c1d2e3f40516273849a0b1c2d3e4f50"}}}}"#,
            "https://kv-demo.vault.azure.net/keys/k3",
            Some(VER),
        ),
    ] {
        let key = related_event(&storage_write(body)).kms.key.expect(body);
        assert_eq!(key.uid, uid, "{body}");
        assert_eq!(key.version.as_deref(), version, "{body}");
    }
}

#[test]
fn storage_writes_without_a_vault_key_are_skipped() {
    for body in [
        r#"{"properties":{"allowSharedKeyAccess":true}}"#,
        r#"{"properties":{"encryption":{"keySource":"Microsoft.Storage","keyvaultproperties":{"keyvaulturi":"https://kv-demo.vault.azure.net","keyname":"k"}}}}"#,
        r#"{"properties":{"encryption":{"keySource":"Microsoft.Keyvault","keyvaultproperties":{"keyvaulturi":"https://kv-demo.vault.azure.net"}}}}"#,
        r#"{"properties":{"encryption":{"keySource":"Microsoft.Keyvault","keyvaultproperties":{"keyvaulturi":"https://example.com/","keyname":"k"}}}}"#,
        "{not json keyvaulturi",
    ] {
        assert_eq!(skipped(&storage_write(body)), SkipReason::NotKms, "{body}");
    }
    // Only the request counts: a response restating CMK encryption is not a switch.
    let resp = format!(
        r#"{{"time":"2024-03-10T02:14:03Z","resourceId":"{STORAGE_ID}","operationName":"Microsoft.Storage/storageAccounts/write","category":"Administrative","resultType":"Success","correlationId":"c","properties":{{"responseBody":{}}}}}"#,
        serde_json::to_string(CMK_BODY).unwrap()
    );
    assert_eq!(skipped(&resp), SkipReason::NotKms);
    // Other storage operations never are.
    let del = storage_write(CMK_BODY).replace("storageAccounts/write", "storageAccounts/delete");
    assert_eq!(skipped(&del), SkipReason::NotKms);
}

#[test]
fn storage_cmk_switch_in_other_activity_shapes() {
    // REST / CLI EventData: localized operation name, the body as an object.
    let rest = format!(
        r#"{{"eventTimestamp":"2024-03-10T02:14:00Z","operationName":{{"value":"Microsoft.Storage/storageAccounts/write","localizedValue":"Create/Update Storage Account"}},"resourceId":"{STORAGE_ID}","subscriptionId":"{SUB}","correlationId":"c1","eventDataId":"e1","status":{{"value":"Started"}},"properties":{{"requestbody":{CMK_BODY}}}}}"#
    );
    let ev = related_event(&rest);
    assert_eq!(
        ev.kms.key.unwrap().uid,
        "https://kv-demo.vault.azure.net/keys/storage-cmk"
    );
    // Log Analytics AzureActivity: `Properties_d` dynamic, then `Properties` as JSON text.
    let body = serde_json::to_string(CMK_BODY).unwrap();
    let la = format!(
        r#"{{"TimeGenerated":"2024-03-10T02:14:00Z","OperationNameValue":"MICROSOFT.STORAGE/STORAGEACCOUNTS/WRITE","ActivityStatusValue":"Start","_ResourceId":"{STORAGE_ID}","SubscriptionId":"{SUB}","CorrelationId":"c2","Properties_d":{{"requestbody":{body}}},"Type":"AzureActivity"}}"#
    );
    assert!(related_event(&la).kms.key.is_some());
    let props_text = serde_json::to_string(&format!(r#"{{"requestbody":{body}}}"#)).unwrap();
    let la_text = format!(
        r#"{{"TimeGenerated":"2024-03-10T02:14:00Z","OperationNameValue":"MICROSOFT.STORAGE/STORAGEACCOUNTS/WRITE","ActivityStatusValue":"Start","_ResourceId":"{STORAGE_ID}","SubscriptionId":"{SUB}","CorrelationId":"c3","Properties":{props_text},"Type":"AzureActivity"}}"#
    );
    assert!(related_event(&la_text).kms.key.is_some());
}

/// The one-pass identity reader gives the claims and evidence the two parses it replaced gave
/// (`IdentityObj` for `claim`/`claims`/`authorization`, `Pairs` for the flat members).
#[test]
fn identity_one_pass_matches_two_parses() {
    let shapes = [
        r#"{"claim":{"oid":"1","appid":"a","upn":"u@x"}}"#,
        r#"{"claims":{"oid":"2","http://schemas.microsoft.com/identity/claims/objectidentifier":"o"}}"#,
        r#"{"oid":"3","upn":"flat@x","n":7,"f":2.0,"b":true,"z":null,"arr":[1,{"q":2}],"o":{"k":"v"}}"#,
        r#"{"claim":{"oid":"4"},"claims":{"appid":"b"},"upn":"x@y","authorization":{"scope":"/s","evidence":{"principalType":"User","principalId":"p4","roleAssignmentScope":"/s"}}}"#,
        r#"{"authorization":{"evidence":{"principalType":"ServicePrincipal","principalId":"p5"}},"claims":{"x":"a\"b\u00e9"}}"#,
        r#"{"claim":null,"claims":[],"authorization":{},"k\u0065y":"esc"}"#,
        r#"{}"#,
    ];
    for s in shapes {
        let one: Identity<'_> = serde_json::from_str(s).unwrap();
        let ev = (
            one.authorization.evidence.principal_type.0.clone(),
            one.authorization.evidence.principal_id.0.clone(),
        );
        let got: Vec<(String, String)> = one
            .pairs()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        let obj: IdentityObj<'_> = serde_json::from_str(s).unwrap();
        let flat: Pairs<'_> = serde_json::from_str(s).unwrap();
        let want_ev = (
            obj.authorization.evidence.principal_type.0.clone(),
            obj.authorization.evidence.principal_id.0.clone(),
        );
        let want: Vec<(String, String)> = obj
            .claim
            .0
            .into_iter()
            .chain(obj.claims.0)
            .chain(flat.0)
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        assert_eq!(got, want, "{s}");
        assert_eq!(ev, want_ev, "{s}");
    }
    // A scalar where an object is expected is a flat member (the struct parse rejected it).
    let one: Identity<'_> =
        serde_json::from_str(r#"{"authorization":"none","claim":"c"}"#).unwrap();
    let got: Vec<_> = one.pairs().collect();
    assert_eq!(got.len(), 2, "{got:?}");
}
