//! Cloud KMS method names to the canonical [`KmsOperation`].
//!
//! Covers every method of `google.cloud.kms.v1.KeyManagementService`, `EkmService`, `Autokey`
//! and `AutokeyAdmin`, the IAM mixin (`google.iam.v1.IAMPolicy`), the locations mixin and the
//! long-running-operations reads that Cloud KMS writes to its audit logs
//! (<https://cloud.google.com/kms/docs/audit-logging>). Cloud KMS logs most methods by their
//! short name (`Decrypt`) and some by their fully-qualified name
//! (`google.cloud.kms.v1.Autokey.CreateKeyHandle`); both forms match: only the last
//! dot-separated segment is looked up.
//!
//! Two methods depend on the request as well as the name, see [`RequestHints`]:
//!
//! * `UpdateCryptoKey` is `EnableKeyRotation` when it sets `rotationPeriod` or
//!   `nextRotationTime`, `DisableKeyRotation` when its update mask names one of them and the
//!   request leaves them empty (rotation removed), otherwise `UpdateKey`.
//! * `UpdateCryptoKeyVersion` is `DisableKey` / `EnableKey` when it sets the version's `state`
//!   to `DISABLED` / `ENABLED`, otherwise `UpdateKey`.
//!
//! Choices where the canonical list has no exact match (documented so rules can rely on them):
//! `RawEncrypt` → Encrypt, `RawDecrypt` → Decrypt, `AsymmetricDecrypt` → Decrypt,
//! `DecapsulateKey` (KEM) → UnwrapKey, `GenerateRandomBytes` → Other,
//! `DeleteCryptoKey` / `DeleteCryptoKeyVersion` (removing an already destroyed key or version)
//! → PurgeKey, `CreateImportJob` → Other (it creates a wrapping key, not a customer key),
//! `CreateKeyHandle` (Autokey provisions a key) → CreateKey, EKM connection and config changes
//! → UpdateKey (they decide where external keys are served from), `CreateEkmConnection`,
//! `VerifyConnectivity`, `UpdateAutokeyConfig`, `TestIamPermissions`, `GetOperation` and the
//! locations mixin → Other. Every other `Get*` / `Show*` read → GetKey, `List*` → ListKeys.

use kmswatch_model::KmsOperation;

/// What the request of an update says, for the two methods whose meaning depends on it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequestHints<'a> {
    /// The request has an update mask (`updateMask`).
    pub has_update_mask: bool,
    /// The update mask names `rotation_period` / `next_rotation_time` (either spelling).
    pub mask_names_rotation: bool,
    /// The update mask names `state`.
    pub mask_names_state: bool,
    /// The request's `cryptoKey` sets `rotationPeriod` or `nextRotationTime` to a value.
    pub sets_rotation: bool,
    /// The request's `cryptoKeyVersion.state`.
    pub version_state: Option<&'a str>,
}

/// The last dot-separated segment of a method name: `Decrypt` for both `Decrypt` and
/// `google.cloud.kms.v1.KeyManagementService.Decrypt`.
pub fn short_name(method: &str) -> &str {
    method.rsplit('.').next().unwrap_or(method)
}

/// The canonical operation of a Cloud KMS method (short or fully-qualified name).
pub fn operation(method: &str, hints: &RequestHints<'_>) -> KmsOperation {
    use KmsOperation as K;
    let short = short_name(method);
    match short {
        // Cryptographic operations (Data Access, DATA_READ / DATA_WRITE).
        "Encrypt" | "RawEncrypt" => K::Encrypt,
        "Decrypt" | "RawDecrypt" | "AsymmetricDecrypt" => K::Decrypt,
        "AsymmetricSign" => K::Sign,
        "MacSign" => K::GenerateMac,
        "MacVerify" => K::VerifyMac,
        "DecapsulateKey" => K::UnwrapKey,
        "GenerateRandomBytes" => K::Other,
        // Key lifecycle (Admin Activity).
        "CreateKeyRing" | "CreateCryptoKey" | "CreateCryptoKeyVersion" => K::CreateKey,
        "ImportCryptoKeyVersion" => K::ImportKeyMaterial,
        "CreateImportJob" => K::Other,
        "UpdateCryptoKeyPrimaryVersion" => K::RotateKey,
        "UpdateCryptoKey" => update_crypto_key(hints),
        "UpdateCryptoKeyVersion" => update_crypto_key_version(hints),
        "DestroyCryptoKeyVersion" => K::DestroyKeyVersion,
        "RestoreCryptoKeyVersion" => K::RecoverKey,
        "DeleteCryptoKey" | "DeleteCryptoKeyVersion" => K::PurgeKey,
        // IAM on key rings, keys, import jobs, EKM connections.
        "SetIamPolicy" => K::UpdateKeyPolicy,
        "GetIamPolicy" => K::GetKey,
        "TestIamPermissions" => K::Other,
        // Cloud EKM.
        "UpdateEkmConnection" | "UpdateEkmConfig" => K::UpdateKey,
        "CreateEkmConnection" | "VerifyConnectivity" => K::Other,
        // Autokey.
        "CreateKeyHandle" => K::CreateKey,
        "UpdateAutokeyConfig" => K::Other,
        "ShowEffectiveAutokeyConfig" => K::GetKey,
        // Mixins that are not about keys.
        "GetOperation" | "ListOperations" | "GetLocation" | "ListLocations" => K::Other,
        // Every other read: GetKeyRing, GetCryptoKey, GetCryptoKeyVersion, GetPublicKey,
        // GetImportJob, GetEkmConnection, GetEkmConfig, GetKeyHandle, GetAutokeyConfig,
        // GetRetiredResource, ...; ListKeyRings, ListCryptoKeys, ListCryptoKeyVersions,
        // ListImportJobs, ListEkmConnections, ListKeyHandles, ListRetiredResources, ...
        s if s.starts_with("Get") => K::GetKey,
        s if s.starts_with("List") => K::ListKeys,
        _ => K::Other,
    }
}

fn update_crypto_key(h: &RequestHints<'_>) -> KmsOperation {
    if h.sets_rotation {
        KmsOperation::EnableKeyRotation
    } else if h.mask_names_rotation {
        KmsOperation::DisableKeyRotation
    } else {
        KmsOperation::UpdateKey
    }
}

fn update_crypto_key_version(h: &RequestHints<'_>) -> KmsOperation {
    if h.has_update_mask && !h.mask_names_state {
        return KmsOperation::UpdateKey;
    }
    match h.version_state {
        Some("DISABLED") => KmsOperation::DisableKey,
        Some("ENABLED") => KmsOperation::EnableKey,
        _ => KmsOperation::UpdateKey,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use KmsOperation as K;

    /// Every documented method whose mapping depends on the name alone, with its service.
    const TABLE: &[(&str, &str, KmsOperation)] = &[
        ("KeyManagementService", "Encrypt", K::Encrypt),
        ("KeyManagementService", "Decrypt", K::Decrypt),
        ("KeyManagementService", "RawEncrypt", K::Encrypt),
        ("KeyManagementService", "RawDecrypt", K::Decrypt),
        ("KeyManagementService", "AsymmetricDecrypt", K::Decrypt),
        ("KeyManagementService", "AsymmetricSign", K::Sign),
        ("KeyManagementService", "MacSign", K::GenerateMac),
        ("KeyManagementService", "MacVerify", K::VerifyMac),
        ("KeyManagementService", "DecapsulateKey", K::UnwrapKey),
        ("KeyManagementService", "GenerateRandomBytes", K::Other),
        ("KeyManagementService", "GetKeyRing", K::GetKey),
        ("KeyManagementService", "GetCryptoKey", K::GetKey),
        ("KeyManagementService", "GetCryptoKeyVersion", K::GetKey),
        ("KeyManagementService", "GetPublicKey", K::GetKey),
        ("KeyManagementService", "GetImportJob", K::GetKey),
        ("KeyManagementService", "GetRetiredResource", K::GetKey),
        ("KeyManagementService", "ListKeyRings", K::ListKeys),
        ("KeyManagementService", "ListCryptoKeys", K::ListKeys),
        ("KeyManagementService", "ListCryptoKeyVersions", K::ListKeys),
        ("KeyManagementService", "ListImportJobs", K::ListKeys),
        ("KeyManagementService", "ListRetiredResources", K::ListKeys),
        ("KeyManagementService", "CreateKeyRing", K::CreateKey),
        ("KeyManagementService", "CreateCryptoKey", K::CreateKey),
        (
            "KeyManagementService",
            "CreateCryptoKeyVersion",
            K::CreateKey,
        ),
        ("KeyManagementService", "CreateImportJob", K::Other),
        (
            "KeyManagementService",
            "ImportCryptoKeyVersion",
            K::ImportKeyMaterial,
        ),
        (
            "KeyManagementService",
            "UpdateCryptoKeyPrimaryVersion",
            K::RotateKey,
        ),
        (
            "KeyManagementService",
            "DestroyCryptoKeyVersion",
            K::DestroyKeyVersion,
        ),
        (
            "KeyManagementService",
            "RestoreCryptoKeyVersion",
            K::RecoverKey,
        ),
        ("KeyManagementService", "DeleteCryptoKey", K::PurgeKey),
        (
            "KeyManagementService",
            "DeleteCryptoKeyVersion",
            K::PurgeKey,
        ),
        ("IAMPolicy", "SetIamPolicy", K::UpdateKeyPolicy),
        ("IAMPolicy", "GetIamPolicy", K::GetKey),
        ("IAMPolicy", "TestIamPermissions", K::Other),
        ("EkmService", "ListEkmConnections", K::ListKeys),
        ("EkmService", "GetEkmConnection", K::GetKey),
        ("EkmService", "CreateEkmConnection", K::Other),
        ("EkmService", "UpdateEkmConnection", K::UpdateKey),
        ("EkmService", "GetEkmConfig", K::GetKey),
        ("EkmService", "UpdateEkmConfig", K::UpdateKey),
        ("EkmService", "VerifyConnectivity", K::Other),
        ("Autokey", "CreateKeyHandle", K::CreateKey),
        ("Autokey", "GetKeyHandle", K::GetKey),
        ("Autokey", "ListKeyHandles", K::ListKeys),
        ("AutokeyAdmin", "UpdateAutokeyConfig", K::Other),
        ("AutokeyAdmin", "GetAutokeyConfig", K::GetKey),
        ("AutokeyAdmin", "ShowEffectiveAutokeyConfig", K::GetKey),
        ("Operations", "GetOperation", K::Other),
        ("Locations", "GetLocation", K::Other),
        ("Locations", "ListLocations", K::Other),
        ("KeyManagementService", "SomethingNew", K::Other),
    ];

    fn qualified(service: &str, method: &str) -> String {
        match service {
            "IAMPolicy" => format!("google.iam.v1.IAMPolicy.{method}"),
            "Operations" => format!("google.longrunning.Operations.{method}"),
            "Locations" => format!("google.cloud.location.Locations.{method}"),
            s => format!("google.cloud.kms.v1.{s}.{method}"),
        }
    }

    #[test]
    fn every_method_short_and_qualified() {
        let none = RequestHints::default();
        for &(service, method, want) in TABLE {
            assert_eq!(operation(method, &none), want, "{method}");
            let q = qualified(service, method);
            assert_eq!(operation(&q, &none), want, "{q}");
        }
    }

    #[test]
    fn update_crypto_key_rotation() {
        let m = "UpdateCryptoKey";
        let q = "google.cloud.kms.v1.KeyManagementService.UpdateCryptoKey";
        let set = RequestHints {
            has_update_mask: true,
            mask_names_rotation: true,
            sets_rotation: true,
            ..RequestHints::default()
        };
        let cleared = RequestHints {
            has_update_mask: true,
            mask_names_rotation: true,
            ..RequestHints::default()
        };
        let labels_only = RequestHints {
            has_update_mask: true,
            ..RequestHints::default()
        };
        let no_mask_sets = RequestHints {
            sets_rotation: true,
            ..RequestHints::default()
        };
        for name in [m, q] {
            assert_eq!(operation(name, &set), K::EnableKeyRotation);
            assert_eq!(operation(name, &cleared), K::DisableKeyRotation);
            assert_eq!(operation(name, &labels_only), K::UpdateKey);
            assert_eq!(operation(name, &no_mask_sets), K::EnableKeyRotation);
            assert_eq!(operation(name, &RequestHints::default()), K::UpdateKey);
        }
    }

    #[test]
    fn update_crypto_key_version_state() {
        let with = |state, mask_names_state, has_update_mask| RequestHints {
            version_state: state,
            mask_names_state,
            has_update_mask,
            ..RequestHints::default()
        };
        for name in [
            "UpdateCryptoKeyVersion",
            "google.cloud.kms.v1.KeyManagementService.UpdateCryptoKeyVersion",
        ] {
            assert_eq!(
                operation(name, &with(Some("DISABLED"), true, true)),
                K::DisableKey
            );
            assert_eq!(
                operation(name, &with(Some("ENABLED"), true, true)),
                K::EnableKey
            );
            assert_eq!(
                operation(name, &with(Some("DISABLED"), false, false)),
                K::DisableKey
            );
            // State present but not in the mask: the API ignores it.
            assert_eq!(
                operation(name, &with(Some("DISABLED"), false, true)),
                K::UpdateKey
            );
            assert_eq!(
                operation(name, &with(Some("DESTROY_SCHEDULED"), true, true)),
                K::UpdateKey
            );
            assert_eq!(operation(name, &with(None, false, false)), K::UpdateKey);
        }
    }

    #[test]
    fn short_names() {
        assert_eq!(short_name("Decrypt"), "Decrypt");
        assert_eq!(
            short_name("google.cloud.kms.v1.KeyManagementService.Decrypt"),
            "Decrypt"
        );
        assert_eq!(short_name(""), "");
    }
}
