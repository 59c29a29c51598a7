//! AWS KMS responder (`aws-sdk-kms`).
//!
//! Credentials come from the standard chain (environment, profile, web identity, container,
//! instance metadata); `AWS_ENDPOINT_URL` (or `endpoint_url` here) points it at an emulator.
//! Keys of accounts listed under `accounts` are reached by assuming that account's role (STS
//! AssumeRole, through `aws_config::sts::AssumeRoleProvider`).

use crate::action::{Action, ActionKind, KeyRef, KeyState, FINDING_TAG};
use crate::backend::KeyBackend;
use crate::error::RespondError;
use aws_sdk_kms::error::ProvideErrorMetadata;
use aws_sdk_kms::Client;
use kmswatch_model::Provider;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};

/// The `respond.aws:` section.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsConfig {
    /// Region for keys given without an ARN (default: the SDK's region chain).
    #[serde(default)]
    pub region: Option<String>,
    /// Endpoint override (default: `AWS_ENDPOINT_URL`, else the real service).
    #[serde(default)]
    pub endpoint_url: Option<String>,
    /// Accounts reached by assuming a role: account id -> role.
    #[serde(default)]
    pub accounts: BTreeMap<String, AwsAccount>,
}

/// A role to assume for one account.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsAccount {
    /// `arn:aws:iam::ACCOUNT:role/NAME`.
    pub role_arn: String,
    /// The external id the role's trust policy requires, if any.
    #[serde(default)]
    pub external_id: Option<String>,
    /// Session name (default `kmswatch-respond`), visible in the account's CloudTrail.
    #[serde(default)]
    pub session_name: Option<String>,
}

/// The AWS KMS responder: one client per (account, region), created on first use.
#[derive(Debug)]
pub struct AwsBackend {
    cfg: AwsConfig,
    clients: tokio::sync::Mutex<HashMap<(String, String), Client>>,
}

impl AwsBackend {
    /// A responder (no I/O until the first call).
    pub fn new(cfg: AwsConfig) -> AwsBackend {
        AwsBackend {
            cfg,
            clients: tokio::sync::Mutex::new(HashMap::new()),
        }
    }

    async fn client(&self, key: &KeyRef) -> Client {
        let account = key.account.clone().unwrap_or_default();
        let region = key
            .region
            .clone()
            .or_else(|| self.cfg.region.clone())
            .unwrap_or_default();
        let mut clients = self.clients.lock().await;
        if let Some(c) = clients.get(&(account.clone(), region.clone())) {
            return c.clone();
        }
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
        if !region.is_empty() {
            loader = loader.region(aws_config::Region::new(region.clone()));
        }
        if let Some(e) = &self.cfg.endpoint_url {
            loader = loader.endpoint_url(e);
        }
        let base = loader.load().await;
        let c = match self.cfg.accounts.get(&account) {
            Some(acct) => {
                let mut b = aws_config::sts::AssumeRoleProvider::builder(&acct.role_arn)
                    .session_name(
                        acct.session_name
                            .clone()
                            .unwrap_or_else(|| "kmswatch-respond".into()),
                    )
                    .configure(&base);
                if let Some(x) = &acct.external_id {
                    b = b.external_id(x);
                }
                let creds = b.build().await;
                Client::from_conf(
                    aws_sdk_kms::config::Builder::from(&base)
                        .credentials_provider(creds)
                        .build(),
                )
            }
            None => Client::new(&base),
        };
        clients.insert((account, region), c.clone());
        c
    }
}

fn api_err<E, R>(op: &str, key: &KeyRef, e: aws_sdk_kms::error::SdkError<E, R>) -> RespondError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    use aws_sdk_kms::error::SdkError;
    let (status, retryable_kind) = match &e {
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => (None, true),
        SdkError::ResponseError(_) => (None, true),
        _ => (None, false),
    };
    let code = e.code().unwrap_or("Unknown").to_string();
    let message = e
        .message()
        .map(str::to_string)
        .unwrap_or_else(|| aws_sdk_kms::error::DisplayErrorContext(&e).to_string());
    let retryable = retryable_kind
        || matches!(
            code.as_str(),
            "ThrottlingException"
                | "LimitExceededException"
                | "KMSInternalException"
                | "DependencyTimeoutException"
        );
    RespondError::Api {
        provider: "AWS",
        operation: op.to_string(),
        key: key.uid.clone(),
        status,
        code,
        message,
        retryable,
    }
}

impl KeyBackend for AwsBackend {
    fn provider(&self) -> Provider {
        Provider::Aws
    }

    async fn describe(&self, key: &KeyRef) -> Result<KeyState, RespondError> {
        let c = self.client(key).await;
        let out = c
            .describe_key()
            .key_id(&key.name)
            .send()
            .await
            .map_err(|e| api_err("DescribeKey", key, e))?;
        let Some(m) = out.key_metadata() else {
            return Err(RespondError::Api {
                provider: "AWS",
                operation: "DescribeKey".into(),
                key: key.uid.clone(),
                status: None,
                code: "NoKeyMetadata".into(),
                message: "DescribeKey returned no KeyMetadata".into(),
                retryable: false,
            });
        };
        let key_id = m.key_id().to_string();
        let status = m
            .key_state()
            .map(|s| s.as_str().to_string())
            .unwrap_or_default();
        let mut st = KeyState {
            resolved_uid: m.arn().map(str::to_string),
            enabled: m.enabled(),
            pending_deletion: status == "PendingDeletion" || status == "PendingReplicaDeletion",
            status,
            account: m.aws_account_id().map(str::to_string),
            manager: m.key_manager().map(|k| k.as_str().to_string()),
            ..Default::default()
        };
        let aliases = c
            .list_aliases()
            .key_id(&key_id)
            .send()
            .await
            .map_err(|e| api_err("ListAliases", key, e))?;
        st.names = aliases
            .aliases()
            .iter()
            .filter_map(|a| a.alias_name().map(str::to_string))
            .collect();
        let tags = c
            .list_resource_tags()
            .key_id(&key_id)
            .send()
            .await
            .map_err(|e| api_err("ListResourceTags", key, e))?;
        st.tags = tags
            .tags()
            .iter()
            .map(|t| (t.tag_key().to_string(), t.tag_value().to_string()))
            .collect();
        // Rotation status exists only for symmetric customer keys; absent otherwise.
        if let Ok(r) = c.get_key_rotation_status().key_id(&key_id).send().await {
            st.rotation_enabled = Some(r.key_rotation_enabled());
            st.rotation_period_days = r
                .rotation_period_in_days()
                .and_then(|d| u32::try_from(d).ok());
        }
        Ok(st)
    }

    async fn execute(
        &self,
        key: &KeyRef,
        action: &Action,
        before: &KeyState,
    ) -> Result<Option<String>, RespondError> {
        let c = self.client(key).await;
        // Change calls take the bare key id: they are made as the owning account (directly or
        // through its assumed role) and cannot be cross-account anyway.
        let id = before
            .resolved_uid
            .as_deref()
            .and_then(|a| a.rsplit_once(":key/").map(|(_, id)| id.to_string()))
            .unwrap_or_else(|| key.name.clone());
        match action.kind {
            ActionKind::Disable => {
                c.disable_key()
                    .key_id(&id)
                    .send()
                    .await
                    .map_err(|e| api_err("DisableKey", key, e))?;
            }
            ActionKind::Enable => {
                c.enable_key()
                    .key_id(&id)
                    .send()
                    .await
                    .map_err(|e| api_err("EnableKey", key, e))?;
            }
            ActionKind::CancelDeletion => {
                if before.pending_deletion {
                    c.cancel_key_deletion()
                        .key_id(&id)
                        .send()
                        .await
                        .map_err(|e| api_err("CancelKeyDeletion", key, e))?;
                }
                // CancelKeyDeletion leaves the key Disabled.
                c.enable_key()
                    .key_id(&id)
                    .send()
                    .await
                    .map_err(|e| api_err("EnableKey", key, e))?;
            }
            ActionKind::Rotate => {
                c.rotate_key_on_demand()
                    .key_id(&id)
                    .send()
                    .await
                    .map_err(|e| api_err("RotateKeyOnDemand", key, e))?;
            }
            ActionKind::EnableRotation => {
                let mut r = c.enable_key_rotation().key_id(&id);
                if let Some(d) = action.rotation_period_days {
                    r = r.rotation_period_in_days(i32::try_from(d).unwrap_or(365));
                }
                r.send()
                    .await
                    .map_err(|e| api_err("EnableKeyRotation", key, e))?;
            }
            ActionKind::DisableRotation => {
                c.disable_key_rotation()
                    .key_id(&id)
                    .send()
                    .await
                    .map_err(|e| api_err("DisableKeyRotation", key, e))?;
            }
            ActionKind::RevokeGrant => {
                let g = action.grant_id.clone().unwrap_or_default();
                c.revoke_grant()
                    .key_id(&id)
                    .grant_id(&g)
                    .send()
                    .await
                    .map_err(|e| api_err("RevokeGrant", key, e))?;
                return Ok(Some(format!("grant {g} revoked")));
            }
            ActionKind::RetireGrant => {
                let g = action.grant_id.clone().unwrap_or_default();
                c.retire_grant()
                    .key_id(&id)
                    .grant_id(&g)
                    .send()
                    .await
                    .map_err(|e| api_err("RetireGrant", key, e))?;
                return Ok(Some(format!("grant {g} retired")));
            }
            ActionKind::Tag => {
                let tag = aws_sdk_kms::types::Tag::builder()
                    .tag_key(FINDING_TAG)
                    .tag_value(action.tag_value.clone().unwrap_or_default())
                    .build()
                    .map_err(|e| RespondError::Config(e.to_string()))?;
                c.tag_resource()
                    .key_id(&id)
                    .tags(tag)
                    .send()
                    .await
                    .map_err(|e| api_err("TagResource", key, e))?;
            }
            ActionKind::Untag => {
                c.untag_resource()
                    .key_id(&id)
                    .tag_keys(FINDING_TAG)
                    .send()
                    .await
                    .map_err(|e| api_err("UntagResource", key, e))?;
            }
            ActionKind::SetPrimary => {
                return Err(RespondError::Config(
                    "set_primary exists only for Google Cloud KMS".into(),
                ))
            }
        }
        Ok(None)
    }
}
