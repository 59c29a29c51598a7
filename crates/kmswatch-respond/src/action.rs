//! What can be done to a key ([`Action`]), which key ([`KeyRef`]) and what it looks like
//! ([`KeyState`]).
//!
//! The action list is closed on purpose: there is no variant that schedules deletion, deletes a
//! key or destroys key material, so no playbook, CLI call or undo can ask for one.

use crate::error::RespondError;
use kmswatch_model::resource::{self, AwsKeyRef};
use kmswatch_model::Provider;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The tag (AWS, Azure) that marks a key kmswatch must never touch, with value `true`.
pub const BREAK_GLASS_TAG: &str = "kmswatch:break-glass";
/// The label (GCP: no `:` allowed in label keys) that marks a key kmswatch must never touch.
pub const BREAK_GLASS_LABEL: &str = "kmswatch-break-glass";
/// The tag key that [`ActionKind::Tag`] writes (value: the finding id).
pub const FINDING_TAG: &str = "kmswatch:finding";
/// The GCP label key that [`ActionKind::Tag`] writes.
pub const FINDING_LABEL: &str = "kmswatch-finding";

/// Provider API operations kmswatch never calls, whatever the configuration says. Tests assert
/// that no code path calls them.
pub const FORBIDDEN_OPERATIONS: &[&str] = &[
    "ScheduleKeyDeletion",
    "DeleteImportedKeyMaterial",
    "DestroyCryptoKeyVersion",
    "KeyDelete",
    "KeyPurge",
    "DeleteKey",
    "PurgeDeletedKey",
];

/// The kind of change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionKind {
    /// Make the key unusable: AWS DisableKey; Azure `enabled=false`; GCP every enabled version
    /// (or the named one) to `DISABLED`.
    Disable,
    /// Make the key usable again: AWS EnableKey; Azure `enabled=true`; GCP the named (or
    /// recorded, or primary) versions to `ENABLED`.
    Enable,
    /// New key material now: AWS RotateKeyOnDemand; Azure `rotate`; GCP a new version made
    /// primary.
    Rotate,
    /// Turn on automatic rotation every `rotation_period_days`: AWS EnableKeyRotation; Azure
    /// rotation policy; GCP `rotationPeriod`.
    EnableRotation,
    /// Turn automatic rotation off (only as the undo of `enable_rotation`).
    DisableRotation,
    /// Stop a pending deletion and make the key usable: AWS CancelKeyDeletion then EnableKey;
    /// Azure recover the soft-deleted key; GCP restore versions scheduled for destruction and
    /// enable them.
    CancelDeletion,
    /// AWS RevokeGrant for the grant named in the finding.
    RevokeGrant,
    /// AWS RetireGrant for the grant named in the finding.
    RetireGrant,
    /// Tag (label) the key with the finding id.
    Tag,
    /// Remove the finding tag (only as the undo of `tag`).
    Untag,
    /// GCP: make `version` the primary version again (the undo of a GCP `rotate`).
    SetPrimary,
}

impl ActionKind {
    /// The snake_case name used in config, CLI and records.
    pub fn as_str(self) -> &'static str {
        match self {
            ActionKind::Disable => "disable",
            ActionKind::Enable => "enable",
            ActionKind::Rotate => "rotate",
            ActionKind::EnableRotation => "enable_rotation",
            ActionKind::DisableRotation => "disable_rotation",
            ActionKind::CancelDeletion => "cancel_deletion",
            ActionKind::RevokeGrant => "revoke_grant",
            ActionKind::RetireGrant => "retire_grant",
            ActionKind::Tag => "tag",
            ActionKind::Untag => "untag",
            ActionKind::SetPrimary => "set_primary",
        }
    }
}

/// One change to one key, with its parameters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Action {
    /// What to do.
    pub kind: ActionKind,
    /// `enable_rotation`: the period, days (AWS allows 90–2560; default 365).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotation_period_days: Option<u32>,
    /// `revoke_grant` / `retire_grant`: the grant id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant_id: Option<String>,
    /// `tag` / `untag`: the tag value (the finding id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag_value: Option<String>,
    /// GCP: the versions acted on (ids). Empty: decided at plan time (all enabled versions for
    /// `disable`, the primary for `enable`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub versions: Vec<String>,
}

impl Action {
    /// An action with no parameters.
    pub fn new(kind: ActionKind) -> Action {
        Action {
            kind,
            rotation_period_days: None,
            grant_id: None,
            tag_value: None,
            versions: Vec::new(),
        }
    }

    /// Whether the key's current state already is what this action would produce.
    pub fn already_applied(&self, s: &KeyState) -> bool {
        match self.kind {
            ActionKind::Disable => {
                if s.versions.is_empty() {
                    !s.enabled
                } else {
                    self.target_versions(s, "ENABLED").is_empty()
                }
            }
            ActionKind::Enable => {
                if s.versions.is_empty() {
                    s.enabled && !s.pending_deletion
                } else {
                    self.target_versions(s, "DISABLED").is_empty()
                }
            }
            ActionKind::CancelDeletion => !s.pending_deletion && s.enabled,
            ActionKind::EnableRotation => {
                s.rotation_enabled == Some(true)
                    && (self.rotation_period_days.is_none()
                        || s.rotation_period_days == self.rotation_period_days)
            }
            ActionKind::DisableRotation => s.rotation_enabled == Some(false),
            ActionKind::Tag => {
                let v = self.tag_value.as_deref().unwrap_or_default();
                s.tags.get(FINDING_TAG).map(String::as_str) == Some(v)
                    || s.tags.get(FINDING_LABEL).map(String::as_str) == Some(v)
            }
            ActionKind::Untag => {
                !s.tags.contains_key(FINDING_TAG) && !s.tags.contains_key(FINDING_LABEL)
            }
            ActionKind::SetPrimary => {
                !self.versions.is_empty() && s.primary_version == self.versions.first().cloned()
            }
            ActionKind::Rotate | ActionKind::RevokeGrant | ActionKind::RetireGrant => false,
        }
    }

    /// GCP: the versions this action touches given the current state: the named ones when the
    /// action names some, else (for `disable`) every version in `from_state`, else the primary.
    pub fn target_versions(&self, s: &KeyState, from_state: &str) -> Vec<String> {
        if !self.versions.is_empty() {
            return s
                .versions
                .iter()
                .filter(|v| self.versions.contains(&v.id) && v.state == from_state)
                .map(|v| v.id.clone())
                .collect();
        }
        match self.kind {
            ActionKind::Disable => s
                .versions
                .iter()
                .filter(|v| v.state == from_state)
                .map(|v| v.id.clone())
                .collect(),
            _ => s
                .versions
                .iter()
                .filter(|v| Some(&v.id) == s.primary_version.as_ref() && v.state == from_state)
                .map(|v| v.id.clone())
                .collect(),
        }
    }

    /// The action that reverses this one, given the state before and after it ran; `None` when
    /// kmswatch cannot (or must not) reverse it.
    pub fn inverse(&self, before: &KeyState, after: &KeyState) -> Option<Action> {
        let mut inv = match self.kind {
            ActionKind::Disable => Action::new(ActionKind::Enable),
            ActionKind::Enable => Action::new(ActionKind::Disable),
            ActionKind::EnableRotation if before.rotation_enabled == Some(false) => {
                Action::new(ActionKind::DisableRotation)
            }
            ActionKind::DisableRotation => {
                let mut a = Action::new(ActionKind::EnableRotation);
                a.rotation_period_days = before.rotation_period_days;
                a
            }
            ActionKind::Tag if !before.tags.contains_key(FINDING_TAG) => {
                let mut a = Action::new(ActionKind::Untag);
                a.tag_value = self.tag_value.clone();
                a
            }
            ActionKind::Rotate => {
                let old = before.primary_version.clone()?;
                if after.primary_version.as_ref() == Some(&old) || before.versions.is_empty() {
                    return None;
                }
                let mut a = Action::new(ActionKind::SetPrimary);
                a.versions = vec![old];
                a
            }
            _ => return None,
        };
        if matches!(self.kind, ActionKind::Disable | ActionKind::Enable)
            && !before.versions.is_empty()
        {
            // Exactly the versions whose state changed.
            let (from, to) = if self.kind == ActionKind::Disable {
                ("ENABLED", "DISABLED")
            } else {
                ("DISABLED", "ENABLED")
            };
            inv.versions = before
                .versions
                .iter()
                .filter(|v| {
                    v.state == from && after.versions.iter().any(|w| w.id == v.id && w.state == to)
                })
                .map(|v| v.id.clone())
                .collect();
            if inv.versions.is_empty() {
                return None;
            }
        }
        Some(inv)
    }
}

/// Which key: parsed from a canonical `kms.key.uid` (or what a person types on the CLI).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRef {
    /// The cloud.
    pub provider: Provider,
    /// The canonical id (AWS key ARN when known; Azure `https://VAULT.vault.azure.net/keys/NAME`;
    /// GCP `projects/P/locations/L/keyRings/R/cryptoKeys/K`), without version.
    pub uid: String,
    /// AWS account, Azure vault host, GCP project.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// AWS region, GCP location.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// AWS key id (or alias name); Azure key name; GCP crypto key resource name.
    pub name: String,
    /// Azure vault base URL (`https://VAULT.vault.azure.net`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vault: Option<String>,
    /// The key version named in the id (Azure, GCP).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

impl KeyRef {
    /// Parse a key id for `provider` by the strict grammar of [`kmswatch_model::resource`]:
    /// nothing that fails it ever becomes a `KeyRef`, so no responder ever builds a URL or an
    /// endpoint from text that did not pass it.
    ///
    /// - AWS: a key or alias ARN (partition, region grammar, 12-digit account, key id or alias
    ///   name), or a bare key id / `alias/NAME` (the configured region and the credentials'
    ///   own account then apply).
    /// - Azure: `https://NAME.SUFFIX[:443]/keys/NAME[/VERSION]` with a Key Vault or Managed HSM
    ///   DNS suffix; canonical form lower-cased host, no port.
    /// - GCP: `projects/P/locations/L/keyRings/R/cryptoKeys/K[/cryptoKeyVersions/N]`.
    pub fn parse(provider: Provider, id: &str) -> Result<KeyRef, RespondError> {
        let id = id.trim();
        let bad = |reason: String| RespondError::InvalidKey {
            key: quote(id),
            reason,
        };
        if id.is_empty() {
            return Err(bad("empty key id".into()));
        }
        match provider {
            Provider::Aws => match resource::parse_aws_key_ref(id).map_err(|e| bad(e.reason))? {
                AwsKeyRef::Arn(arn) => {
                    let uid = arn.arn();
                    Ok(KeyRef {
                        provider,
                        name: uid.clone(),
                        uid,
                        account: Some(arn.account),
                        region: Some(arn.region),
                        vault: None,
                        version: None,
                    })
                }
                AwsKeyRef::Bare(r) => Ok(KeyRef {
                    provider,
                    uid: r.key_id().to_string(),
                    name: r.key_id().to_string(),
                    account: None,
                    region: None,
                    vault: None,
                    version: None,
                }),
            },
            Provider::Azure => {
                let o = resource::parse_azure_object_id(id).map_err(|e| bad(e.reason))?;
                if o.collection != resource::AzureCollection::Keys {
                    return Err(bad(
                        "an Azure key id is https://VAULT.vault.azure.net/keys/NAME[/VERSION]"
                            .into(),
                    ));
                }
                Ok(KeyRef {
                    provider,
                    uid: o.uid(),
                    account: Some(o.vault.host()),
                    region: None,
                    name: o.name,
                    vault: Some(o.vault.base_url()),
                    version: o.version,
                })
            }
            Provider::Gcp => {
                let n = resource::parse_gcp_crypto_key(id).map_err(|e| bad(e.reason))?;
                let key = n.name();
                Ok(KeyRef {
                    provider,
                    uid: key.clone(),
                    account: Some(n.project),
                    region: Some(n.location),
                    name: key,
                    vault: None,
                    version: n.version,
                })
            }
        }
    }
}

/// Log text quoted in an error or a record: at most 256 characters.
pub(crate) fn quote(s: &str) -> String {
    match s.char_indices().nth(256) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

/// One version of a key (GCP crypto key versions).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionState {
    /// The version id (`1`).
    pub id: String,
    /// `ENABLED`, `DISABLED`, `DESTROY_SCHEDULED`, `DESTROYED`...
    pub state: String,
}

/// What a key looks like now, as read by the plan step.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyState {
    /// The provider's canonical id as it reported it (AWS key ARN).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_uid: Option<String>,
    /// The provider's own status word (`Enabled`, `Disabled`, `PendingDeletion`; `enabled`,
    /// `disabled`, `deleted` for Azure; the primary version's state for GCP).
    pub status: String,
    /// Usable for cryptography.
    pub enabled: bool,
    /// Scheduled for deletion / soft-deleted / (GCP) some version scheduled for destruction.
    pub pending_deletion: bool,
    /// Automatic rotation on, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotation_enabled: Option<bool>,
    /// Automatic rotation period, days, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotation_period_days: Option<u32>,
    /// Aliases (AWS `alias/NAME`), the key name (Azure, GCP).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<String>,
    /// Tags (AWS, Azure) or labels (GCP).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    /// AWS account, Azure vault host, GCP project.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// GCP primary version id; Azure current version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary_version: Option<String>,
    /// GCP versions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub versions: Vec<VersionState>,
    /// AWS: `CUSTOMER` or `AWS` (AWS-managed keys cannot be changed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manager: Option<String>,
    /// When the key was deleted (Azure soft delete `deletedDate`), epoch ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleted_at_ms: Option<i64>,
}

impl KeyState {
    /// Whether the key carries the break-glass tag/label (then kmswatch never touches it).
    pub fn is_break_glass(&self) -> bool {
        self.tags.iter().any(|(k, v)| {
            (k == BREAK_GLASS_TAG || k == BREAK_GLASS_LABEL)
                && !matches!(v.to_ascii_lowercase().as_str(), "false" | "0" | "no")
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_key_ids() {
        let k = KeyRef::parse(
            Provider::Aws,
            "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
        )
        .unwrap();
        assert_eq!(k.account.as_deref(), Some("111122223333"));
        assert_eq!(k.region.as_deref(), Some("eu-west-1"));
        assert!(KeyRef::parse(Provider::Aws, "arn:aws:s3:::bucket").is_err());
        let bare = KeyRef::parse(Provider::Aws, "alias/app").unwrap();
        assert_eq!((bare.account, bare.region), (None, None));
        let v = "0123456789abcdef0123456789abcdef";
        let k = KeyRef::parse(
            Provider::Azure,
            &format!("https://KV-Demo.vault.azure.net:443/keys/cmk/{v}"),
        )
        .unwrap();
        assert_eq!(k.uid, "https://kv-demo.vault.azure.net/keys/cmk");
        assert_eq!(k.version.as_deref(), Some(v));
        assert_eq!(k.vault.as_deref(), Some("https://kv-demo.vault.azure.net"));
        assert_eq!(k.account.as_deref(), Some("kv-demo.vault.azure.net"));
        assert!(KeyRef::parse(Provider::Azure, "https://kv/secrets/x").is_err());
        assert!(
            KeyRef::parse(Provider::Azure, "https://kv-demo.vault.azure.net/secrets/x").is_err(),
            "a secret is not a key"
        );
        let k = KeyRef::parse(
            Provider::Gcp,
            "projects/kmswatch-demo/locations/global/keyRings/r/cryptoKeys/k/cryptoKeyVersions/3",
        )
        .unwrap();
        assert_eq!(
            k.uid,
            "projects/kmswatch-demo/locations/global/keyRings/r/cryptoKeys/k"
        );
        assert_eq!(k.version.as_deref(), Some("3"));
        assert_eq!(k.account.as_deref(), Some("kmswatch-demo"));
        assert!(KeyRef::parse(Provider::Gcp, "projects/p/keyRings/r").is_err());
        assert!(KeyRef::parse(Provider::Gcp, "").is_err());
    }

    /// The hostile forms of the issue never become a key reference (so no backend can build a
    /// URL from them): each cloud, every trick.
    #[test]
    fn hostile_key_ids_are_refused() {
        let key = "1234abcd-12ab-34cd-56ef-1234567890ab";
        let cases: &[(Provider, String)] = &[
            (Provider::Azure, "https://x.vault.attacker.example/keys/k".into()),
            (Provider::Azure, "https://localhost?x.vault.azure.net/keys/k".into()),
            (Provider::Azure, "https://kv.vault.x@host/keys/k".into()),
            (Provider::Azure, "https://kv-demo.vault.azure.net@127.0.0.1/keys/k".into()),
            (Provider::Azure, "https://kv-demo.vault.azure.net:8443/keys/k".into()),
            (Provider::Azure, "https://kv-demo.vault.azure.net/keys/k?x=1".into()),
            (Provider::Azure, "https://kv-demo.vault.azure.net/keys/k#x".into()),
            (Provider::Azure, "https://kv-demo.vault.azure.net/keys/../../x".into()),
            (Provider::Azure, "http://kv-demo.vault.azure.net/keys/k".into()),
            (Provider::Azure, "https://kv-demo.vault.azure.net/deletedkeys/k".into()),
            (
                Provider::Aws,
                format!("arn:aws:kms:eu-west-1.attacker.example:111122223333:key/{key}"),
            ),
            (Provider::Aws, format!("arn:aws:kms:localhost:111122223333:key/{key}")),
            (Provider::Aws, "k1".into()),
            (Provider::Aws, "https://kms.attacker.example/".into()),
            (
                Provider::Gcp,
                "projects/kmswatch-demo/locations/global/keyRings/r/cryptoKeys/k/../../x".into(),
            ),
            (
                Provider::Gcp,
                "projects/kmswatch-demo/locations/global/keyRings/r/cryptoKeys/k?alt=x".into(),
            ),
            (
                Provider::Gcp,
                "//attacker.example/projects/kmswatch-demo/locations/global/keyRings/r/cryptoKeys/k"
                    .into(),
            ),
        ];
        for (p, id) in cases {
            let e = KeyRef::parse(*p, id).expect_err(id);
            assert!(matches!(e, RespondError::InvalidKey { .. }), "{id}: {e}");
        }
    }

    #[test]
    fn inverse_and_already_applied() {
        let on = KeyState {
            status: "Enabled".into(),
            enabled: true,
            ..Default::default()
        };
        let off = KeyState {
            status: "Disabled".into(),
            enabled: false,
            ..Default::default()
        };
        let d = Action::new(ActionKind::Disable);
        assert!(!d.already_applied(&on));
        assert!(d.already_applied(&off));
        assert_eq!(
            d.inverse(&on, &off).map(|a| a.kind),
            Some(ActionKind::Enable)
        );
        assert!(Action::new(ActionKind::CancelDeletion)
            .inverse(&off, &on)
            .is_none());
        // GCP: only the versions that changed are re-enabled.
        let v = |id: &str, st: &str| VersionState {
            id: id.into(),
            state: st.into(),
        };
        let before = KeyState {
            versions: vec![v("1", "DISABLED"), v("2", "ENABLED")],
            ..Default::default()
        };
        let after = KeyState {
            versions: vec![v("1", "DISABLED"), v("2", "DISABLED")],
            ..Default::default()
        };
        assert_eq!(d.target_versions(&before, "ENABLED"), vec!["2".to_string()]);
        assert_eq!(
            d.inverse(&before, &after).map(|a| a.versions),
            Some(vec!["2".to_string()])
        );
        assert!(d.already_applied(&after));
    }

    #[test]
    fn break_glass() {
        let mut s = KeyState::default();
        assert!(!s.is_break_glass());
        s.tags.insert(BREAK_GLASS_TAG.into(), "true".into());
        assert!(s.is_break_glass());
        s.tags.insert(BREAK_GLASS_TAG.into(), "false".into());
        assert!(!s.is_break_glass());
        s.tags.insert(BREAK_GLASS_LABEL.into(), "yes".into());
        assert!(s.is_break_glass());
    }
}
