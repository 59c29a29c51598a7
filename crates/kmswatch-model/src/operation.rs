//! The canonical, cross-cloud key-management operation (`kms.operation`).

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

macro_rules! operations {
    ($( $(#[$doc:meta])* $name:ident => $activity:expr ),* $(,)?) => {
        /// Canonical operation across AWS KMS, Azure Key Vault and Google Cloud KMS.
        ///
        /// Each provider keeps a mapping table from its native operation names to these values
        /// beside its normalizer. The string form is the variant name (`"Decrypt"`).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub enum KmsOperation {
            $( $(#[$doc])* $name, )*
        }

        impl KmsOperation {
            /// Every canonical operation, in the order of `DESIGN.md`.
            pub const ALL: &'static [KmsOperation] = &[ $(KmsOperation::$name,)* ];

            /// The canonical name, as serialized.
            pub const fn as_str(self) -> &'static str {
                match self { $(KmsOperation::$name => stringify!($name),)* }
            }

            /// OCSF API Activity `activity_id`: 1 Create, 2 Read, 3 Update, 4 Delete, 99 Other.
            pub const fn activity_id(self) -> u8 {
                match self { $(KmsOperation::$name => $activity,)* }
            }
        }

        impl FromStr for KmsOperation {
            type Err = UnknownOperation;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $(stringify!($name) => Ok(KmsOperation::$name),)*
                    _ => Err(UnknownOperation(s.to_string())),
                }
            }
        }
    };
}

const CREATE: u8 = 1;
const READ: u8 = 2;
const UPDATE: u8 = 3;
const DELETE: u8 = 4;
const OTHER: u8 = 99;

operations! {
    /// Encrypt data under a key.
    Encrypt => OTHER,
    /// Decrypt data (AWS Decrypt, Azure decrypt, GCP Decrypt/AsymmetricDecrypt).
    Decrypt => OTHER,
    /// Re-encrypt ciphertext under another key.
    ReEncrypt => OTHER,
    /// Generate a data key or key pair (with or without plaintext).
    GenerateDataKey => OTHER,
    /// Sign with an asymmetric key.
    Sign => OTHER,
    /// Verify a signature.
    Verify => OTHER,
    /// Compute a MAC.
    GenerateMac => OTHER,
    /// Verify a MAC.
    VerifyMac => OTHER,
    /// Wrap a key with a key (Azure wrapKey).
    WrapKey => OTHER,
    /// Unwrap a key (Azure unwrapKey).
    UnwrapKey => OTHER,
    /// Read key metadata or public key (DescribeKey, KeyGet, GetCryptoKey, GetPublicKey).
    GetKey => READ,
    /// List keys, aliases, grants, key rings.
    ListKeys => READ,
    /// Create a key, key ring, key version or custom key store.
    CreateKey => CREATE,
    /// Import key material.
    ImportKeyMaterial => CREATE,
    /// Delete (or let expire) imported key material.
    DeleteImportedKeyMaterial => DELETE,
    /// Enable a key or key version.
    EnableKey => UPDATE,
    /// Disable a key or key version.
    DisableKey => UPDATE,
    /// Schedule a key for deletion (AWS ScheduleKeyDeletion, Azure soft delete).
    ScheduleKeyDeletion => DELETE,
    /// Cancel a scheduled key deletion.
    CancelKeyDeletion => UPDATE,
    /// Destroy a key version (GCP DestroyCryptoKeyVersion; AWS DeleteKey at the end of the window).
    DestroyKeyVersion => DELETE,
    /// Permanently purge a soft-deleted key.
    PurgeKey => DELETE,
    /// Recover a soft-deleted key or restore a version scheduled for destruction.
    RecoverKey => UPDATE,
    /// Back up a key.
    BackupKey => READ,
    /// Restore a key from a backup.
    RestoreKey => CREATE,
    /// Rotate a key (create a new primary version).
    RotateKey => UPDATE,
    /// Turn on automatic rotation or set a rotation policy/period.
    EnableKeyRotation => UPDATE,
    /// Turn off automatic rotation or remove a rotation policy/period.
    DisableKeyRotation => UPDATE,
    /// Change who may use or manage a key (key policy, IAM policy, access policy).
    UpdateKeyPolicy => UPDATE,
    /// Create a grant on a key.
    CreateGrant => CREATE,
    /// Revoke a grant.
    RevokeGrant => DELETE,
    /// Retire a grant.
    RetireGrant => DELETE,
    /// Replicate a multi-region key.
    ReplicateKey => CREATE,
    /// Change key metadata: description, alias, tags, primary region, labels.
    UpdateKey => UPDATE,
    /// Read a secret value (Azure SecretGet).
    SecretGet => READ,
    /// List secrets.
    SecretList => READ,
    /// Create or update a secret.
    SecretSet => UPDATE,
    /// Delete or purge a secret.
    SecretDelete => DELETE,
    /// Delete a vault (or purge a deleted vault).
    VaultDelete => DELETE,
    /// Change a vault's properties (soft delete, purge protection, network rules, access).
    VaultUpdate => UPDATE,
    /// A change to audit logging that can blind KMS monitoring (trail, sink, diagnostic setting).
    LoggingChange => UPDATE,
    /// Any other operation of the key-management service.
    Other => OTHER,
}

impl fmt::Display for KmsOperation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is not a canonical operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownOperation(pub String);

impl fmt::Display for UnknownOperation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown canonical KMS operation {:?}", self.0)
    }
}

impl std::error::Error for UnknownOperation {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        assert_eq!(KmsOperation::ALL.len(), 41);
        for op in KmsOperation::ALL {
            assert_eq!(op.as_str().parse::<KmsOperation>().unwrap(), *op);
            let json = serde_json::to_string(op).unwrap();
            assert_eq!(json, format!("\"{}\"", op.as_str()));
        }
        assert!("decrypt".parse::<KmsOperation>().is_err());
    }
}
