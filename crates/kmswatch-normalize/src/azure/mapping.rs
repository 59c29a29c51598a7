//! Native Azure operation names to the canonical [`KmsOperation`].
//!
//! Two tables:
//!
//! - [`RESOURCE_LOG_OPERATIONS`]: the `operationName` values of the Key Vault `AuditEvent`
//!   resource log (blob, Event Hub, AzureDiagnostics and AZKVAuditLogs rows), as listed in
//!   Microsoft's "Azure Key Vault logging" page (Vault, Keys, Secrets and Certificates tabs).
//!   The same names are written for Managed HSM keys.
//! - [`ARM_OPERATIONS`]: Azure Resource Manager operations of the `Microsoft.KeyVault`
//!   provider as they appear in the Activity Log (`operationName` / `operationName.value`),
//!   with the `Microsoft.KeyVault/` prefix removed and lowercased. Managed HSM operations
//!   (`managedHSMs/...`) are folded onto the vault ones before lookup.
//!
//! Both lookups are case-insensitive (Activity Log samples use `Microsoft.KeyVault/vaults/delete`
//! and `MICROSOFT.KEYVAULT/VAULTS/DELETE` alike). Names that are not in a table still produce an
//! event, with `kms.operation` = `Other`.
//!
//! Cross-cloud choices worth knowing:
//! - `KeyDelete` is a soft delete (recoverable until purged) → `ScheduleKeyDeletion`;
//!   `KeyPurge` → `PurgeKey`; `KeyRecover` → `RecoverKey`.
//! - `KeyRotationPolicySet` → `EnableKeyRotation`. The `AuditEvent` record carries no request
//!   body, so a policy that *removes* automatic rotation cannot be told apart from one that
//!   sets it: every policy write is `EnableKeyRotation` (see `DisableKeyRotation` gap in the
//!   module docs of `azure`).
//! - `KeyImport` → `ImportKeyMaterial`; `KeyListVersions` / `KeyListDeleted` → `ListKeys`;
//!   `KeyGetDeleted` and `KeyRotationPolicyGet` → `GetKey`; `KeyRotateIfDue` (the scheduled
//!   rotation) → `RotateKey`.
//! - Secret value reads are only `SecretGet`; `SecretPurge` and `SecretDelete` are both
//!   `SecretDelete`; `SecretRestore` / `SecretUpdate` → `SecretSet`.
//! - `VaultPurge` and the ARM `locations/deletedVaults/purge/action` → `VaultDelete`;
//!   `VaultPut`, `VaultPatch`, `vaults/write` → `VaultUpdate` (this is where soft delete and
//!   purge protection, network rules and the access-policy list change);
//!   `vaults/accessPolicies/write` → `UpdateKeyPolicy`.
//! - Certificate operations and Event Grid notifications have no canonical counterpart → `Other`.

use kmswatch_model::KmsOperation;
use KmsOperation as K;

/// Key Vault resource-log `operationName` → canonical operation.
pub const RESOURCE_LOG_OPERATIONS: &[(&str, KmsOperation)] = &[
    // Vault tab.
    ("Authentication", K::Other),
    ("VaultGet", K::Other),
    ("VaultPut", K::VaultUpdate),
    ("VaultDelete", K::VaultDelete),
    ("VaultPatch", K::VaultUpdate),
    ("VaultList", K::Other),
    ("VaultPurge", K::VaultDelete),
    ("VaultRecover", K::Other),
    ("VaultGetDeleted", K::Other),
    ("VaultListDeleted", K::Other),
    ("VaultAccessPolicyChangedEventGridNotification", K::Other),
    // Keys tab.
    ("KeyCreate", K::CreateKey),
    ("KeyGet", K::GetKey),
    ("KeyImport", K::ImportKeyMaterial),
    ("KeyDelete", K::ScheduleKeyDeletion),
    ("KeySign", K::Sign),
    ("KeyVerify", K::Verify),
    ("KeyWrap", K::WrapKey),
    ("KeyUnwrap", K::UnwrapKey),
    ("KeyEncrypt", K::Encrypt),
    ("KeyDecrypt", K::Decrypt),
    ("KeyUpdate", K::UpdateKey),
    ("KeyList", K::ListKeys),
    ("KeyListVersions", K::ListKeys),
    ("KeyPurge", K::PurgeKey),
    ("KeyBackup", K::BackupKey),
    ("KeyRestore", K::RestoreKey),
    ("KeyRecover", K::RecoverKey),
    ("KeyGetDeleted", K::GetKey),
    ("KeyListDeleted", K::ListKeys),
    ("KeyNearExpiryEventGridNotification", K::Other),
    ("KeyExpiredEventGridNotification", K::Other),
    ("KeyRotate", K::RotateKey),
    ("KeyRotateIfDue", K::RotateKey),
    ("KeyRotationPolicyGet", K::GetKey),
    ("KeyRotationPolicySet", K::EnableKeyRotation),
    // Secrets tab.
    ("SecretSet", K::SecretSet),
    ("SecretGet", K::SecretGet),
    ("SecretUpdate", K::SecretSet),
    ("SecretDelete", K::SecretDelete),
    ("SecretList", K::SecretList),
    ("SecretListVersions", K::SecretList),
    ("SecretPurge", K::SecretDelete),
    ("SecretBackup", K::Other),
    ("SecretRestore", K::SecretSet),
    ("SecretRecover", K::Other),
    ("SecretGetDeleted", K::Other),
    ("SecretListDeleted", K::SecretList),
    ("SecretNearExpiryEventGridNotification", K::Other),
    ("SecretExpiredEventGridNotification", K::Other),
    // Certificates tab: no canonical counterpart.
    ("CertificateGet", K::Other),
    ("CertificateCreate", K::Other),
    ("CertificateImport", K::Other),
    ("CertificateUpdate", K::Other),
    ("CertificateList", K::Other),
    ("CertificateListVersions", K::Other),
    ("CertificateDelete", K::Other),
    ("CertificatePurge", K::Other),
    ("CertificateBackup", K::Other),
    ("CertificateRestore", K::Other),
    ("CertificateRecover", K::Other),
    ("CertificateGetDeleted", K::Other),
    ("CertificateListDeleted", K::Other),
    ("CertificatePolicyGet", K::Other),
    ("CertificatePolicyUpdate", K::Other),
    ("CertificatePolicySet", K::Other),
    ("CertificateContactsGet", K::Other),
    ("CertificateContactsSet", K::Other),
    ("CertificateContactsDelete", K::Other),
    ("CertificateIssuerGet", K::Other),
    ("CertificateIssuerSet", K::Other),
    ("CertificateIssuerUpdate", K::Other),
    ("CertificateIssuerDelete", K::Other),
    ("CertificateIssuersList", K::Other),
    ("CertificateEnroll", K::Other),
    ("CertificateRenew", K::Other),
    ("CertificatePendingGet", K::Other),
    ("CertificatePendingMerge", K::Other),
    ("CertificatePendingUpdate", K::Other),
    ("CertificatePendingDelete", K::Other),
    ("CertificateNearExpiryEventGridNotification", K::Other),
    ("CertificateExpiredEventGridNotification", K::Other),
];

/// ARM operation (lowercase, without `microsoft.keyvault/`) → canonical operation.
/// `managedhsms/` and `locations/deletedmanagedhsms/` are folded onto `vaults/` and
/// `locations/deletedvaults/` before lookup.
pub const ARM_OPERATIONS: &[(&str, KmsOperation)] = &[
    // Vault management (control plane).
    ("vaults/read", K::Other),
    ("vaults/write", K::VaultUpdate),
    ("vaults/delete", K::VaultDelete),
    ("vaults/deploy/action", K::Other),
    ("vaults/accesspolicies/write", K::UpdateKeyPolicy),
    ("vaults/privateendpointconnections/write", K::VaultUpdate),
    ("vaults/privateendpointconnections/delete", K::VaultUpdate),
    (
        "vaults/privateendpointconnectionproxies/write",
        K::VaultUpdate,
    ),
    (
        "vaults/privateendpointconnectionproxies/delete",
        K::VaultUpdate,
    ),
    ("deletedvaults/read", K::Other),
    ("locations/deletedvaults/read", K::Other),
    ("locations/deletedvaults/purge/action", K::VaultDelete),
    ("locations/operationresults/read", K::Other),
    ("checknameavailability/read", K::Other),
    ("register/action", K::Other),
    ("unregister/action", K::Other),
    // Keys through ARM (control plane) and as data actions.
    ("vaults/keys/read", K::GetKey),
    ("vaults/keys/write", K::CreateKey),
    ("vaults/keys/versions/read", K::GetKey),
    ("vaults/keys/read/action", K::GetKey),
    ("vaults/keys/create/action", K::CreateKey),
    ("vaults/keys/import/action", K::ImportKeyMaterial),
    ("vaults/keys/update/action", K::UpdateKey),
    ("vaults/keys/delete", K::ScheduleKeyDeletion),
    ("vaults/keys/purge/action", K::PurgeKey),
    ("vaults/keys/recover/action", K::RecoverKey),
    ("vaults/keys/backup/action", K::BackupKey),
    ("vaults/keys/restore/action", K::RestoreKey),
    ("vaults/keys/rotate/action", K::RotateKey),
    ("vaults/keys/encrypt/action", K::Encrypt),
    ("vaults/keys/decrypt/action", K::Decrypt),
    ("vaults/keys/sign/action", K::Sign),
    ("vaults/keys/verify/action", K::Verify),
    ("vaults/keys/wrap/action", K::WrapKey),
    ("vaults/keys/unwrap/action", K::UnwrapKey),
    ("vaults/keys/release/action", K::Other),
    ("vaults/keyrotationpolicies/read", K::GetKey),
    ("vaults/keyrotationpolicies/write", K::EnableKeyRotation),
    ("vaults/deletedkeys/read/action", K::GetKey),
    ("vaults/deletedkeys/delete", K::PurgeKey),
    ("vaults/deletedkeys/recover/action", K::RecoverKey),
    // Secrets.
    ("vaults/secrets/read", K::Other),
    ("vaults/secrets/write", K::SecretSet),
    ("vaults/secrets/getsecret/action", K::SecretGet),
    ("vaults/secrets/readmetadata/action", K::Other),
    ("vaults/secrets/setsecret/action", K::SecretSet),
    ("vaults/secrets/update/action", K::SecretSet),
    ("vaults/secrets/delete", K::SecretDelete),
    ("vaults/secrets/purge/action", K::SecretDelete),
    ("vaults/secrets/recover/action", K::Other),
    ("vaults/secrets/backup/action", K::Other),
    ("vaults/secrets/restore/action", K::SecretSet),
    ("vaults/deletedsecrets/read/action", K::Other),
    // Certificates: no canonical counterpart.
    ("vaults/certificates/read", K::Other),
    ("vaults/certificates/write", K::Other),
    ("vaults/certificates/delete", K::Other),
    ("vaults/certificates/purge/action", K::Other),
    ("vaults/certificates/recover/action", K::Other),
    ("vaults/certificates/backup/action", K::Other),
    ("vaults/certificates/restore/action", K::Other),
];

/// Canonical operation of a Key Vault resource-log `operationName` (case-insensitive);
/// `None` when the name is not in Microsoft's list (the caller maps it to `Other`).
pub fn resource_log_operation(name: &str) -> Option<KmsOperation> {
    RESOURCE_LOG_OPERATIONS
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, op)| *op)
}

/// Canonical operation of an ARM Activity Log operation, for the operations kmswatch keeps:
/// `Microsoft.KeyVault/*` (unknown ones → `Other`), diagnostic settings (→ `LoggingChange`),
/// role assignments (→ `UpdateKeyPolicy`) and storage account writes (→ `Other`, related).
/// `None` for any other operation. Whether a diagnostic setting or role assignment is on a
/// vault, and whether a storage account write sets a Key Vault key, is decided by the caller
/// from the resource id and the request body.
pub fn arm_operation(name: &str) -> Option<ArmOp> {
    let lower = name.trim().to_ascii_lowercase();
    if let Some(rest) = lower.strip_prefix("microsoft.keyvault/") {
        let folded = fold_hsm(rest);
        let op = ARM_OPERATIONS
            .iter()
            .find(|(n, _)| *n == folded)
            .map_or(K::Other, |(_, op)| *op);
        return Some(ArmOp::KeyVault(op));
    }
    match lower.as_str() {
        "microsoft.insights/diagnosticsettings/write"
        | "microsoft.insights/diagnosticsettings/delete" => Some(ArmOp::DiagnosticSetting),
        "microsoft.authorization/roleassignments/write"
        | "microsoft.authorization/roleassignments/delete" => Some(ArmOp::RoleAssignment),
        "microsoft.storage/storageaccounts/write" => Some(ArmOp::StorageAccountWrite),
        _ => None,
    }
}

/// What an Activity Log operation is, for kmswatch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArmOp {
    /// A `Microsoft.KeyVault` operation with its canonical mapping.
    KeyVault(KmsOperation),
    /// `microsoft.insights/diagnosticSettings/write|delete` (kept when on a vault).
    DiagnosticSetting,
    /// `Microsoft.Authorization/roleAssignments/write|delete` (kept when on a vault or key).
    RoleAssignment,
    /// `Microsoft.Storage/storageAccounts/write` (kept, as a related event with `kms.operation`
    /// = `Other`, only when its request body sets customer-managed-key encryption).
    StorageAccountWrite,
}

fn fold_hsm(rest: &str) -> String {
    if let Some(r) = rest.strip_prefix("managedhsms/") {
        format!("vaults/{r}")
    } else if let Some(r) = rest.strip_prefix("locations/deletedmanagedhsms/") {
        format!("locations/deletedvaults/{r}")
    } else if rest == "managedhsms" {
        "vaults".to_string()
    } else {
        rest.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every operation name of Microsoft's Key Vault logging page, with the canonical value
    /// kmswatch promises for it. A change to the table must change this list too.
    const EXPECTED_RESOURCE_LOG: &[(&str, KmsOperation)] = &[
        ("Authentication", K::Other),
        ("VaultGet", K::Other),
        ("VaultPut", K::VaultUpdate),
        ("VaultDelete", K::VaultDelete),
        ("VaultPatch", K::VaultUpdate),
        ("VaultList", K::Other),
        ("VaultPurge", K::VaultDelete),
        ("VaultRecover", K::Other),
        ("VaultGetDeleted", K::Other),
        ("VaultListDeleted", K::Other),
        ("VaultAccessPolicyChangedEventGridNotification", K::Other),
        ("KeyCreate", K::CreateKey),
        ("KeyGet", K::GetKey),
        ("KeyImport", K::ImportKeyMaterial),
        ("KeyDelete", K::ScheduleKeyDeletion),
        ("KeySign", K::Sign),
        ("KeyVerify", K::Verify),
        ("KeyWrap", K::WrapKey),
        ("KeyUnwrap", K::UnwrapKey),
        ("KeyEncrypt", K::Encrypt),
        ("KeyDecrypt", K::Decrypt),
        ("KeyUpdate", K::UpdateKey),
        ("KeyList", K::ListKeys),
        ("KeyListVersions", K::ListKeys),
        ("KeyPurge", K::PurgeKey),
        ("KeyBackup", K::BackupKey),
        ("KeyRestore", K::RestoreKey),
        ("KeyRecover", K::RecoverKey),
        ("KeyGetDeleted", K::GetKey),
        ("KeyListDeleted", K::ListKeys),
        ("KeyNearExpiryEventGridNotification", K::Other),
        ("KeyExpiredEventGridNotification", K::Other),
        ("KeyRotate", K::RotateKey),
        ("KeyRotateIfDue", K::RotateKey),
        ("KeyRotationPolicyGet", K::GetKey),
        ("KeyRotationPolicySet", K::EnableKeyRotation),
        ("SecretSet", K::SecretSet),
        ("SecretGet", K::SecretGet),
        ("SecretUpdate", K::SecretSet),
        ("SecretDelete", K::SecretDelete),
        ("SecretList", K::SecretList),
        ("SecretListVersions", K::SecretList),
        ("SecretPurge", K::SecretDelete),
        ("SecretBackup", K::Other),
        ("SecretRestore", K::SecretSet),
        ("SecretRecover", K::Other),
        ("SecretGetDeleted", K::Other),
        ("SecretListDeleted", K::SecretList),
        ("SecretNearExpiryEventGridNotification", K::Other),
        ("SecretExpiredEventGridNotification", K::Other),
    ];

    const CERTIFICATE_NAMES: &[&str] = &[
        "CertificateGet",
        "CertificateCreate",
        "CertificateImport",
        "CertificateUpdate",
        "CertificateList",
        "CertificateListVersions",
        "CertificateDelete",
        "CertificatePurge",
        "CertificateBackup",
        "CertificateRestore",
        "CertificateRecover",
        "CertificateGetDeleted",
        "CertificateListDeleted",
        "CertificatePolicyGet",
        "CertificatePolicyUpdate",
        "CertificatePolicySet",
        "CertificateContactsGet",
        "CertificateContactsSet",
        "CertificateContactsDelete",
        "CertificateIssuerGet",
        "CertificateIssuerSet",
        "CertificateIssuerUpdate",
        "CertificateIssuerDelete",
        "CertificateIssuersList",
        "CertificateEnroll",
        "CertificateRenew",
        "CertificatePendingGet",
        "CertificatePendingMerge",
        "CertificatePendingUpdate",
        "CertificatePendingDelete",
        "CertificateNearExpiryEventGridNotification",
        "CertificateExpiredEventGridNotification",
    ];

    #[test]
    fn resource_log_entry_by_entry() {
        for (name, want) in EXPECTED_RESOURCE_LOG {
            assert_eq!(resource_log_operation(name), Some(*want), "{name}");
            assert_eq!(
                resource_log_operation(&name.to_ascii_uppercase()),
                Some(*want),
                "{name} upper-case"
            );
        }
        for name in CERTIFICATE_NAMES {
            assert_eq!(resource_log_operation(name), Some(K::Other), "{name}");
        }
        // The table holds exactly the documented names, no more.
        assert_eq!(
            RESOURCE_LOG_OPERATIONS.len(),
            EXPECTED_RESOURCE_LOG.len() + CERTIFICATE_NAMES.len()
        );
        assert_eq!(resource_log_operation("KeyFrobnicate"), None);
    }

    #[test]
    fn resource_log_names_are_unique() {
        for (i, (a, _)) in RESOURCE_LOG_OPERATIONS.iter().enumerate() {
            for (b, _) in &RESOURCE_LOG_OPERATIONS[i + 1..] {
                assert!(!a.eq_ignore_ascii_case(b), "duplicate {a}");
            }
        }
    }

    #[test]
    fn arm_entry_by_entry() {
        let expected: &[(&str, KmsOperation)] = &[
            ("Microsoft.KeyVault/vaults/read", K::Other),
            ("Microsoft.KeyVault/vaults/write", K::VaultUpdate),
            ("Microsoft.KeyVault/vaults/delete", K::VaultDelete),
            ("Microsoft.KeyVault/vaults/deploy/action", K::Other),
            (
                "Microsoft.KeyVault/vaults/accessPolicies/write",
                K::UpdateKeyPolicy,
            ),
            (
                "Microsoft.KeyVault/vaults/privateEndpointConnections/write",
                K::VaultUpdate,
            ),
            (
                "Microsoft.KeyVault/vaults/privateEndpointConnections/delete",
                K::VaultUpdate,
            ),
            (
                "Microsoft.KeyVault/vaults/privateEndpointConnectionProxies/write",
                K::VaultUpdate,
            ),
            (
                "Microsoft.KeyVault/vaults/privateEndpointConnectionProxies/delete",
                K::VaultUpdate,
            ),
            ("Microsoft.KeyVault/deletedVaults/read", K::Other),
            ("Microsoft.KeyVault/locations/deletedVaults/read", K::Other),
            (
                "Microsoft.KeyVault/locations/deletedVaults/purge/action",
                K::VaultDelete,
            ),
            (
                "Microsoft.KeyVault/locations/operationResults/read",
                K::Other,
            ),
            ("Microsoft.KeyVault/checkNameAvailability/read", K::Other),
            ("Microsoft.KeyVault/register/action", K::Other),
            ("Microsoft.KeyVault/unregister/action", K::Other),
            ("Microsoft.KeyVault/vaults/keys/read", K::GetKey),
            ("Microsoft.KeyVault/vaults/keys/write", K::CreateKey),
            ("Microsoft.KeyVault/vaults/keys/versions/read", K::GetKey),
            ("Microsoft.KeyVault/vaults/keys/read/action", K::GetKey),
            ("Microsoft.KeyVault/vaults/keys/create/action", K::CreateKey),
            (
                "Microsoft.KeyVault/vaults/keys/import/action",
                K::ImportKeyMaterial,
            ),
            ("Microsoft.KeyVault/vaults/keys/update/action", K::UpdateKey),
            (
                "Microsoft.KeyVault/vaults/keys/delete",
                K::ScheduleKeyDeletion,
            ),
            ("Microsoft.KeyVault/vaults/keys/purge/action", K::PurgeKey),
            (
                "Microsoft.KeyVault/vaults/keys/recover/action",
                K::RecoverKey,
            ),
            ("Microsoft.KeyVault/vaults/keys/backup/action", K::BackupKey),
            (
                "Microsoft.KeyVault/vaults/keys/restore/action",
                K::RestoreKey,
            ),
            ("Microsoft.KeyVault/vaults/keys/rotate/action", K::RotateKey),
            ("Microsoft.KeyVault/vaults/keys/encrypt/action", K::Encrypt),
            ("Microsoft.KeyVault/vaults/keys/decrypt/action", K::Decrypt),
            ("Microsoft.KeyVault/vaults/keys/sign/action", K::Sign),
            ("Microsoft.KeyVault/vaults/keys/verify/action", K::Verify),
            ("Microsoft.KeyVault/vaults/keys/wrap/action", K::WrapKey),
            ("Microsoft.KeyVault/vaults/keys/unwrap/action", K::UnwrapKey),
            ("Microsoft.KeyVault/vaults/keys/release/action", K::Other),
            (
                "Microsoft.KeyVault/vaults/keyrotationpolicies/read",
                K::GetKey,
            ),
            (
                "Microsoft.KeyVault/vaults/keyrotationpolicies/write",
                K::EnableKeyRotation,
            ),
            (
                "Microsoft.KeyVault/vaults/deletedKeys/read/action",
                K::GetKey,
            ),
            ("Microsoft.KeyVault/vaults/deletedKeys/delete", K::PurgeKey),
            (
                "Microsoft.KeyVault/vaults/deletedKeys/recover/action",
                K::RecoverKey,
            ),
            ("Microsoft.KeyVault/vaults/secrets/read", K::Other),
            ("Microsoft.KeyVault/vaults/secrets/write", K::SecretSet),
            (
                "Microsoft.KeyVault/vaults/secrets/getSecret/action",
                K::SecretGet,
            ),
            (
                "Microsoft.KeyVault/vaults/secrets/readMetadata/action",
                K::Other,
            ),
            (
                "Microsoft.KeyVault/vaults/secrets/setSecret/action",
                K::SecretSet,
            ),
            (
                "Microsoft.KeyVault/vaults/secrets/update/action",
                K::SecretSet,
            ),
            ("Microsoft.KeyVault/vaults/secrets/delete", K::SecretDelete),
            (
                "Microsoft.KeyVault/vaults/secrets/purge/action",
                K::SecretDelete,
            ),
            ("Microsoft.KeyVault/vaults/secrets/recover/action", K::Other),
            ("Microsoft.KeyVault/vaults/secrets/backup/action", K::Other),
            (
                "Microsoft.KeyVault/vaults/secrets/restore/action",
                K::SecretSet,
            ),
            (
                "Microsoft.KeyVault/vaults/deletedSecrets/read/action",
                K::Other,
            ),
            ("Microsoft.KeyVault/vaults/certificates/read", K::Other),
            ("Microsoft.KeyVault/vaults/certificates/write", K::Other),
            ("Microsoft.KeyVault/vaults/certificates/delete", K::Other),
            (
                "Microsoft.KeyVault/vaults/certificates/purge/action",
                K::Other,
            ),
            (
                "Microsoft.KeyVault/vaults/certificates/recover/action",
                K::Other,
            ),
            (
                "Microsoft.KeyVault/vaults/certificates/backup/action",
                K::Other,
            ),
            (
                "Microsoft.KeyVault/vaults/certificates/restore/action",
                K::Other,
            ),
        ];
        assert_eq!(expected.len(), ARM_OPERATIONS.len());
        for (name, want) in expected {
            assert_eq!(arm_operation(name), Some(ArmOp::KeyVault(*want)), "{name}");
            assert_eq!(
                arm_operation(&name.to_ascii_uppercase()),
                Some(ArmOp::KeyVault(*want)),
                "{name} upper"
            );
            assert_eq!(
                arm_operation(&name.to_ascii_lowercase()),
                Some(ArmOp::KeyVault(*want)),
                "{name} lower"
            );
        }
    }

    #[test]
    fn arm_managed_hsm_folds_onto_vaults() {
        assert_eq!(
            arm_operation("Microsoft.KeyVault/managedHSMs/delete"),
            Some(ArmOp::KeyVault(K::VaultDelete))
        );
        assert_eq!(
            arm_operation("Microsoft.KeyVault/managedHSMs/write"),
            Some(ArmOp::KeyVault(K::VaultUpdate))
        );
        assert_eq!(
            arm_operation("Microsoft.KeyVault/locations/deletedManagedHSMs/purge/action"),
            Some(ArmOp::KeyVault(K::VaultDelete))
        );
        assert_eq!(
            arm_operation("Microsoft.KeyVault/managedHSMs/keys/write"),
            Some(ArmOp::KeyVault(K::CreateKey))
        );
    }

    #[test]
    fn arm_related_and_foreign() {
        assert_eq!(
            arm_operation("microsoft.insights/diagnosticSettings/delete"),
            Some(ArmOp::DiagnosticSetting)
        );
        assert_eq!(
            arm_operation("Microsoft.Insights/diagnosticSettings/write"),
            Some(ArmOp::DiagnosticSetting)
        );
        assert_eq!(
            arm_operation("MICROSOFT.AUTHORIZATION/ROLEASSIGNMENTS/WRITE"),
            Some(ArmOp::RoleAssignment)
        );
        assert_eq!(
            arm_operation("Microsoft.Authorization/roleAssignments/delete"),
            Some(ArmOp::RoleAssignment)
        );
        assert_eq!(
            arm_operation("Microsoft.KeyVault/vaults/somethingNew/action"),
            Some(ArmOp::KeyVault(K::Other))
        );
        assert_eq!(
            arm_operation("Microsoft.Storage/storageAccounts/delete"),
            None
        );
        assert_eq!(
            arm_operation("microsoft.storage/storageaccounts/WRITE"),
            Some(ArmOp::StorageAccountWrite)
        );
        assert_eq!(
            arm_operation("Microsoft.Storage/storageAccounts/listKeys/action"),
            None
        );
        assert_eq!(
            arm_operation("Microsoft.Insights/actionGroups/delete"),
            None
        );
        assert_eq!(
            arm_operation("Microsoft.Authorization/roleDefinitions/write"),
            None
        );
    }
}
