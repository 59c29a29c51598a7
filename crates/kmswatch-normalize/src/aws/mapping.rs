//! AWS KMS `eventName` -> canonical [`KmsOperation`].
//!
//! Covers every action of the AWS KMS API reference (`API_Operations`) and the events KMS
//! itself writes to CloudTrail (`AwsServiceEvent`s and internal calls: `RotateKey`,
//! `DeleteKey`, `DeleteExpiredKeyMaterial`, `SynchronizeMultiRegionKey`). Names not in the
//! table map to [`KmsOperation::Other`].
//!
//! Judgement calls, so that an analyst can predict the mapping:
//!
//! | native | canonical | why |
//! |---|---|---|
//! | `GenerateDataKey*` (4 APIs) | `GenerateDataKey` | all hand out key material protected by the key |
//! | `PutKeyPolicy` | `UpdateKeyPolicy` | changes who may use or manage the key |
//! | `DeleteKey` | `DestroyKeyVersion` | the service event at the end of the deletion window: material is gone |
//! | `DeleteExpiredKeyMaterial` | `DeleteImportedKeyMaterial` | imported material expired and was deleted by KMS |
//! | `RotateKey`, `RotateKeyOnDemand` | `RotateKey` | automatic (service event) and on-demand rotation |
//! | aliases, tags, description, `UpdatePrimaryRegion` | `UpdateKey` | key metadata |
//! | `Describe*`, `Get*` | `GetKey` | reads of key metadata, policy, rotation status, public key, import parameters |
//! | `List*` | `ListKeys` | enumeration |
//! | `CreateCustomKeyStore` | `CreateKey` | the canonical CreateKey covers custom key stores |
//! | `ConnectCustomKeyStore` / `DisconnectCustomKeyStore` | `EnableKey` / `DisableKey` | disconnecting a store makes every key in it unusable |
//! | `UpdateCustomKeyStore` | `UpdateKey` | re-points the store (cluster, XKS proxy): key configuration |
//! | `DeleteCustomKeyStore` | `Other` | the store must already be empty; no key is affected |
//! | `GenerateRandom` | `Other` | uses no key |
//! | `DeriveSharedSecret` | `Other` | ECDH agreement; none of the canonical crypto operations fits |
//! | `SynchronizeMultiRegionKey` | `Other` | routine internal sync of replicas, creates nothing |

use kmswatch_model::KmsOperation;

macro_rules! table {
    ($( $name:literal => $op:ident ),* $(,)?) => {
        /// The whole table, for tests and documentation: `(eventName, canonical)`.
        pub const TABLE: &[(&str, KmsOperation)] = &[ $( ($name, KmsOperation::$op), )* ];

        /// Canonical operation of a KMS `eventName`; [`KmsOperation::Other`] when unknown.
        pub fn operation(event_name: &str) -> KmsOperation {
            match event_name {
                $( $name => KmsOperation::$op, )*
                _ => KmsOperation::Other,
            }
        }
    };
}

table! {
    // Cryptographic operations.
    "Encrypt" => Encrypt,
    "Decrypt" => Decrypt,
    "ReEncrypt" => ReEncrypt,
    "GenerateDataKey" => GenerateDataKey,
    "GenerateDataKeyWithoutPlaintext" => GenerateDataKey,
    "GenerateDataKeyPair" => GenerateDataKey,
    "GenerateDataKeyPairWithoutPlaintext" => GenerateDataKey,
    "Sign" => Sign,
    "Verify" => Verify,
    "GenerateMac" => GenerateMac,
    "VerifyMac" => VerifyMac,
    "DeriveSharedSecret" => Other,
    "GenerateRandom" => Other,
    // Reads.
    "DescribeKey" => GetKey,
    "DescribeCustomKeyStores" => GetKey,
    "GetKeyPolicy" => GetKey,
    "GetKeyRotationStatus" => GetKey,
    "GetKeyLastUsage" => GetKey,
    "GetParametersForImport" => GetKey,
    "GetPublicKey" => GetKey,
    "ListAliases" => ListKeys,
    "ListGrants" => ListKeys,
    "ListKeyPolicies" => ListKeys,
    "ListKeyRotations" => ListKeys,
    "ListKeys" => ListKeys,
    "ListResourceTags" => ListKeys,
    "ListRetirableGrants" => ListKeys,
    // Key lifecycle.
    "CreateKey" => CreateKey,
    "ImportKeyMaterial" => ImportKeyMaterial,
    "DeleteImportedKeyMaterial" => DeleteImportedKeyMaterial,
    "DeleteExpiredKeyMaterial" => DeleteImportedKeyMaterial,
    "EnableKey" => EnableKey,
    "DisableKey" => DisableKey,
    "ScheduleKeyDeletion" => ScheduleKeyDeletion,
    "CancelKeyDeletion" => CancelKeyDeletion,
    "DeleteKey" => DestroyKeyVersion,
    "RotateKey" => RotateKey,
    "RotateKeyOnDemand" => RotateKey,
    "EnableKeyRotation" => EnableKeyRotation,
    "DisableKeyRotation" => DisableKeyRotation,
    "ReplicateKey" => ReplicateKey,
    "SynchronizeMultiRegionKey" => Other,
    // Access.
    "PutKeyPolicy" => UpdateKeyPolicy,
    "CreateGrant" => CreateGrant,
    "RevokeGrant" => RevokeGrant,
    "RetireGrant" => RetireGrant,
    // Metadata.
    "CreateAlias" => UpdateKey,
    "UpdateAlias" => UpdateKey,
    "DeleteAlias" => UpdateKey,
    "TagResource" => UpdateKey,
    "UntagResource" => UpdateKey,
    "UpdateKeyDescription" => UpdateKey,
    "UpdatePrimaryRegion" => UpdateKey,
    // Custom key stores (CloudHSM and external).
    "CreateCustomKeyStore" => CreateKey,
    "ConnectCustomKeyStore" => EnableKey,
    "DisconnectCustomKeyStore" => DisableKey,
    "UpdateCustomKeyStore" => UpdateKey,
    "DeleteCustomKeyStore" => Other,
}

/// KMS event names that deliberately map to [`KmsOperation::Other`] (see the module docs).
pub const DELIBERATELY_OTHER: &[&str] = &[
    "DeriveSharedSecret",
    "GenerateRandom",
    "SynchronizeMultiRegionKey",
    "DeleteCustomKeyStore",
];

/// CloudTrail's own events that change what a trail records: kept as related
/// [`KmsOperation::LoggingChange`] events.
pub fn is_cloudtrail_logging_change(event_name: &str) -> bool {
    matches!(
        event_name,
        "StopLogging" | "DeleteTrail" | "UpdateTrail" | "PutEventSelectors" | "PutInsightSelectors"
    )
}

/// S3 operations that write an object and may name an SSE-KMS key.
pub fn is_s3_object_write(event_name: &str) -> bool {
    matches!(
        event_name,
        "PutObject" | "CopyObject" | "CreateMultipartUpload" | "UploadPartCopy"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    /// Every entry, asserted one by one through the lookup function (the table and the
    /// `match` are generated from the same list, this checks they agree and that no name
    /// appears twice).
    #[test]
    fn every_entry_maps_as_listed() {
        let mut seen = BTreeSet::new();
        for (name, op) in TABLE {
            assert!(seen.insert(*name), "{name} listed twice");
            assert_eq!(operation(name), *op, "{name}");
        }
    }

    #[test]
    fn expected_mappings() {
        use KmsOperation as K;
        let cases = [
            ("GenerateDataKeyPairWithoutPlaintext", K::GenerateDataKey),
            ("GenerateDataKeyWithoutPlaintext", K::GenerateDataKey),
            ("PutKeyPolicy", K::UpdateKeyPolicy),
            ("DeleteKey", K::DestroyKeyVersion),
            ("DeleteExpiredKeyMaterial", K::DeleteImportedKeyMaterial),
            ("RotateKey", K::RotateKey),
            ("RotateKeyOnDemand", K::RotateKey),
            ("UpdatePrimaryRegion", K::UpdateKey),
            ("TagResource", K::UpdateKey),
            ("CreateAlias", K::UpdateKey),
            ("DescribeKey", K::GetKey),
            ("GetPublicKey", K::GetKey),
            ("ListRetirableGrants", K::ListKeys),
            ("ScheduleKeyDeletion", K::ScheduleKeyDeletion),
            ("DisconnectCustomKeyStore", K::DisableKey),
        ];
        for (name, op) in cases {
            assert_eq!(operation(name), op, "{name}");
        }
    }

    #[test]
    fn unknown_and_case_sensitive_names_are_other() {
        assert_eq!(operation("FrobnicateKey"), KmsOperation::Other);
        assert_eq!(operation("decrypt"), KmsOperation::Other);
        assert_eq!(operation(""), KmsOperation::Other);
    }

    /// Every action of the KMS API reference is in the table.
    #[test]
    fn covers_the_api_reference() {
        const API: &[&str] = &[
            "CancelKeyDeletion",
            "ConnectCustomKeyStore",
            "CreateAlias",
            "CreateCustomKeyStore",
            "CreateGrant",
            "CreateKey",
            "Decrypt",
            "DeleteAlias",
            "DeleteCustomKeyStore",
            "DeleteImportedKeyMaterial",
            "DeriveSharedSecret",
            "DescribeCustomKeyStores",
            "DescribeKey",
            "DisableKey",
            "DisableKeyRotation",
            "DisconnectCustomKeyStore",
            "EnableKey",
            "EnableKeyRotation",
            "Encrypt",
            "GenerateDataKey",
            "GenerateDataKeyPair",
            "GenerateDataKeyPairWithoutPlaintext",
            "GenerateDataKeyWithoutPlaintext",
            "GenerateMac",
            "GenerateRandom",
            "GetKeyLastUsage",
            "GetKeyPolicy",
            "GetKeyRotationStatus",
            "GetParametersForImport",
            "GetPublicKey",
            "ImportKeyMaterial",
            "ListAliases",
            "ListGrants",
            "ListKeyPolicies",
            "ListKeyRotations",
            "ListKeys",
            "ListResourceTags",
            "ListRetirableGrants",
            "PutKeyPolicy",
            "ReEncrypt",
            "ReplicateKey",
            "RetireGrant",
            "RevokeGrant",
            "RotateKeyOnDemand",
            "ScheduleKeyDeletion",
            "Sign",
            "TagResource",
            "UntagResource",
            "UpdateAlias",
            "UpdateCustomKeyStore",
            "UpdateKeyDescription",
            "UpdatePrimaryRegion",
            "Verify",
            "VerifyMac",
        ];
        for name in API {
            assert!(
                TABLE.iter().any(|(n, _)| n == name),
                "{name} missing from the table"
            );
            if operation(name) == KmsOperation::Other {
                assert!(DELIBERATELY_OTHER.contains(name), "{name} maps to Other");
            }
        }
    }

    #[test]
    fn deliberately_other_really_are_other() {
        for name in DELIBERATELY_OTHER {
            assert_eq!(operation(name), KmsOperation::Other, "{name}");
            assert!(TABLE.iter().any(|(n, _)| n == name), "{name} not in table");
        }
    }

    #[test]
    fn related_event_names() {
        for n in [
            "StopLogging",
            "DeleteTrail",
            "UpdateTrail",
            "PutEventSelectors",
            "PutInsightSelectors",
        ] {
            assert!(is_cloudtrail_logging_change(n), "{n}");
        }
        assert!(!is_cloudtrail_logging_change("StartLogging"));
        assert!(!is_cloudtrail_logging_change("DescribeTrails"));
        assert!(is_s3_object_write("CopyObject"));
        assert!(!is_s3_object_write("GetObject"));
    }

    /// Every KMS eventName in the AWS KMS developer guide's CloudTrail examples maps to a
    /// canonical operation other than `Other`, except the deliberate ones.
    #[test]
    fn developer_guide_examples_map() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(
            "../../../shared/data/aws/aws-kms-developer-guide-examples/kms_cloudtrail_examples.extracted.jsonl",
        );
        let Ok(text) = std::fs::read_to_string(&path) else {
            println!("skipping: {} not present", path.display());
            return;
        };
        let mut checked = 0;
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let v: serde_json::Value = serde_json::from_str(line).expect("example is JSON");
            let ev = &v["event"];
            if ev["eventSource"] != "kms.amazonaws.com" {
                continue;
            }
            let name = ev["eventName"].as_str().expect("eventName");
            if !DELIBERATELY_OTHER.contains(&name) {
                assert_ne!(operation(name), KmsOperation::Other, "{name}");
            }
            assert!(TABLE.iter().any(|(n, _)| *n == name), "{name} not in table");
            checked += 1;
        }
        assert!(checked >= 60, "only {checked} KMS examples found");
    }
}
