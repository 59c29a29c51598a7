//! AWS KMS responder (`aws-sdk-kms`).
//!
//! Credentials come from the standard chain (environment, profile, web identity, container,
//! instance metadata); `AWS_ENDPOINT_URL` (or `endpoint_url` here) points it at an emulator.
//! Keys of accounts listed under `accounts` are reached by assuming that account's role (STS
//! AssumeRole, through `aws_config::sts::AssumeRoleProvider`).
//!
//! The SDK builds the endpoint host from the region: a region only ever comes from a key ARN
//! that passed `kmswatch_model::resource` (or from configuration), so no log text can name the
//! host. Corroboration (read-only) uses CloudTrail `LookupEvents` by event id, in the event's
//! region and with the key account's credentials, and `ListGrants` for grant actions.

use crate::action::{Action, ActionKind, KeyRef, KeyState, FINDING_TAG};
use crate::backend::KeyBackend;
use crate::basis::{Basis, Claim};
use crate::config::check_endpoint;
use crate::corroborate::{claims_about, NotCorroborated};
use crate::error::RespondError;
use crate::net::Net;
use aws_sdk_kms::error::ProvideErrorMetadata;
use aws_sdk_kms::Client;
use kmswatch_model::resource;
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
    /// KMS endpoint override (default: `AWS_ENDPOINT_URL`, else the real service).
    #[serde(default)]
    pub endpoint_url: Option<String>,
    /// CloudTrail endpoint override for corroboration (`LookupEvents`) (default:
    /// `AWS_ENDPOINT_URL_CLOUDTRAIL` / `AWS_ENDPOINT_URL`, else the real service).
    #[serde(default)]
    pub cloudtrail_endpoint_url: Option<String>,
    /// Accounts reached by assuming a role: account id -> role.
    #[serde(default)]
    pub accounts: BTreeMap<String, AwsAccount>,
    /// Accounts whose keys the standard credentials act on directly (12-digit ids). With this
    /// or `accounts` set, a key of any other account is refused before any call (scope); with
    /// neither, any account is in scope.
    #[serde(default)]
    pub account_ids: Vec<String>,
}

impl AwsConfig {
    pub(crate) fn validate(&self) -> Result<(), RespondError> {
        let bad = |m: String| Err(RespondError::Config(m));
        if let Some(r) = &self.region {
            if !resource::is_aws_region(r) {
                return bad(format!("aws.region: {r:?} is not an AWS region"));
            }
        }
        for (f, u) in [
            ("aws.endpoint_url", &self.endpoint_url),
            ("aws.cloudtrail_endpoint_url", &self.cloudtrail_endpoint_url),
        ] {
            if let Some(u) = u {
                check_endpoint(f, u)?;
            }
        }
        for a in &self.account_ids {
            if !resource::is_aws_account_id(a) {
                return bad(format!(
                    "aws.account_ids: {a:?} is not a 12-digit account id"
                ));
            }
        }
        for (a, r) in &self.accounts {
            if !resource::is_aws_account_id(a) {
                return bad(format!("aws.accounts: {a:?} is not a 12-digit account id"));
            }
            let ok = r
                .role_arn
                .strip_prefix("arn:")
                .and_then(|x| x.split_once(":iam::"))
                .is_some_and(|(partition, rest)| {
                    resource::AWS_PARTITIONS
                        .iter()
                        .any(|(p, _)| *p == partition)
                        && rest.strip_prefix(a.as_str()).is_some_and(|r| {
                            r.strip_prefix(":role/").is_some_and(|n| {
                                !n.is_empty()
                                    && n.len() <= 512
                                    && n.bytes().all(|b| {
                                        b.is_ascii_alphanumeric() || b"+=,.@_-/".contains(&b)
                                    })
                            })
                        })
                });
            if !ok {
                return bad(format!(
                    "aws.accounts.{a}.role_arn: {:?} is not arn:PARTITION:iam::{a}:role/NAME",
                    r.role_arn
                ));
            }
        }
        Ok(())
    }
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

/// The clients of one (account, region).
#[derive(Debug, Clone)]
struct Clients {
    kms: Client,
    cloudtrail: aws_sdk_cloudtrail::Client,
}

/// The AWS KMS responder: one set of clients per (account, region), created on first use.
#[derive(Debug)]
pub struct AwsBackend {
    cfg: AwsConfig,
    net: Net,
    clients: tokio::sync::Mutex<HashMap<(String, String), Clients>>,
}

impl AwsBackend {
    /// A responder (no I/O until the first call).
    pub fn new(cfg: AwsConfig, net: Net) -> AwsBackend {
        AwsBackend {
            cfg,
            net,
            clients: tokio::sync::Mutex::new(HashMap::new()),
        }
    }

    async fn client(&self, key: &KeyRef) -> Result<Client, RespondError> {
        Ok(self.clients_for(key, key.region.as_deref()).await?.kms)
    }

    /// The clients for `key`'s account in `region` (the key's region, else the configured
    /// one, else the SDK's chain). A region that is not a region name is refused here too.
    async fn clients_for(
        &self,
        key: &KeyRef,
        region: Option<&str>,
    ) -> Result<Clients, RespondError> {
        let account = key.account.clone().unwrap_or_default();
        let region = region
            .map(str::to_string)
            .or_else(|| self.cfg.region.clone())
            .unwrap_or_default();
        if !region.is_empty() && !resource::is_aws_region(&region) {
            return Err(RespondError::InvalidKey {
                key: key.uid.clone(),
                reason: format!("{region:?} is not an AWS region"),
            });
        }
        let mut clients = self.clients.lock().await;
        if let Some(c) = clients.get(&(account.clone(), region.clone())) {
            return Ok(c.clone());
        }
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
        if !region.is_empty() {
            loader = loader.region(aws_config::Region::new(region.clone()));
        }
        let base = self.net.aws(loader).load().await;
        let creds = match self.cfg.accounts.get(&account) {
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
                Some(aws_sdk_kms::config::SharedCredentialsProvider::new(
                    b.build().await,
                ))
            }
            None => None,
        };
        let mut kms = aws_sdk_kms::config::Builder::from(&base);
        let mut trail = aws_sdk_cloudtrail::config::Builder::from(&base);
        if let Some(c) = creds {
            kms = kms.credentials_provider(c.clone());
            trail = trail.credentials_provider(c);
        }
        if let Some(e) = &self.cfg.endpoint_url {
            kms = kms.endpoint_url(e);
        }
        if let Some(e) = &self.cfg.cloudtrail_endpoint_url {
            trail = trail.endpoint_url(e);
        }
        let c = Clients {
            kms: Client::from_conf(kms.build()),
            cloudtrail: aws_sdk_cloudtrail::Client::from_conf(trail.build()),
        };
        clients.insert((account, region), c.clone());
        Ok(c)
    }

    /// `LookupEvents` by event id: the event exists, is the operation the claim says, from
    /// KMS, and about the key.
    async fn lookup(
        &self,
        key: &KeyRef,
        c: &Claim,
        before: &KeyState,
    ) -> Result<String, NotCorroborated> {
        if c.uid.is_empty()
            || c.uid.len() > 128
            || !c
                .uid
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(NotCorroborated::no(format!(
                "evidence event id {:?} is not a CloudTrail event id",
                c.uid
            )));
        }
        let region = c
            .region
            .as_deref()
            .filter(|r| resource::is_aws_region(r))
            .or(key.region.as_deref());
        let clients = self
            .clients_for(key, region)
            .await
            .map_err(|e| NotCorroborated::no(e.to_string()))?;
        let attr = aws_sdk_cloudtrail::types::LookupAttribute::builder()
            .attribute_key(aws_sdk_cloudtrail::types::LookupAttributeKey::EventId)
            .attribute_value(&c.uid)
            .build()
            .map_err(|e| NotCorroborated::no(e.to_string()))?;
        let out = clients
            .cloudtrail
            .lookup_events()
            .lookup_attributes(attr)
            .max_results(5)
            .send()
            .await
            .map_err(|e| {
                NotCorroborated::later(format!(
                    "CloudTrail LookupEvents for event {} failed: {}",
                    c.uid,
                    aws_sdk_cloudtrail::error::DisplayErrorContext(&e)
                ))
            })?;
        let bare = before
            .resolved_uid
            .as_deref()
            .unwrap_or(&key.uid)
            .rsplit_once(":key/")
            .map(|(_, id)| id.to_string());
        let Some(e) = out
            .events()
            .iter()
            .find(|e| e.event_id() == Some(c.uid.as_str()))
        else {
            return Err(NotCorroborated::later(format!(
                "CloudTrail has no event {} ({} {}): the event the finding reports did not happen in this account and region, or is not recorded yet",
                c.uid,
                c.operation,
                region.unwrap_or("default region")
            )));
        };
        if e.event_name() != Some(c.operation.as_str())
            || e.event_source().is_some_and(|s| s != "kms.amazonaws.com")
        {
            return Err(NotCorroborated::no(format!(
                "CloudTrail event {} is {} from {}, not {} as the finding says",
                c.uid,
                e.event_name().unwrap_or("-"),
                e.event_source().unwrap_or("-"),
                c.operation
            )));
        }
        let about_key = bare.as_deref().is_some_and(|b| {
            e.resources()
                .iter()
                .any(|r| r.resource_name().is_some_and(|n| n.contains(b)))
                || e.cloud_trail_event().is_some_and(|t| t.contains(b))
        });
        if !about_key {
            return Err(NotCorroborated::no(format!(
                "CloudTrail event {} is not about key {}",
                c.uid, key.uid
            )));
        }
        Ok(format!(
            "CloudTrail event {} ({}) found",
            c.uid, c.operation
        ))
    }

    /// `ListGrants`: the grant the action names exists on the key.
    async fn grant_exists(
        &self,
        key: &KeyRef,
        action: &Action,
        before: &KeyState,
    ) -> Result<String, NotCorroborated> {
        let Some(g) = action.grant_id.as_deref() else {
            return Err(NotCorroborated::no("the action names no grant"));
        };
        let c = self
            .client(key)
            .await
            .map_err(|e| NotCorroborated::no(e.to_string()))?;
        let id = before
            .resolved_uid
            .clone()
            .unwrap_or_else(|| key.name.clone());
        let mut marker: Option<String> = None;
        for _ in 0..20 {
            let mut req = c.list_grants().key_id(&id).limit(100);
            if let Some(m) = &marker {
                req = req.marker(m);
            }
            let out = req.send().await.map_err(|e| {
                NotCorroborated::later(format!(
                    "ListGrants on {}: {}",
                    key.uid,
                    aws_sdk_kms::error::DisplayErrorContext(&e)
                ))
            })?;
            if out.grants().iter().any(|x| x.grant_id() == Some(g)) {
                return Ok(format!("grant {g} exists on the key"));
            }
            match out.next_marker() {
                Some(m) if out.truncated() => marker = Some(m.to_string()),
                _ => break,
            }
        }
        Err(NotCorroborated::no(format!(
            "the key has no grant {g}: the grant the finding reports does not exist"
        )))
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
        let c = self.client(key).await?;
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
        let c = self.client(key).await?;
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

    async fn corroborate(
        &self,
        key: &KeyRef,
        action: &Action,
        basis: &Basis,
        before: &KeyState,
    ) -> Result<Vec<String>, NotCorroborated> {
        let mut checked = Vec::new();
        for c in claims_about(key, before, basis)? {
            checked.push(self.lookup(key, c, before).await?);
        }
        if matches!(
            action.kind,
            ActionKind::RevokeGrant | ActionKind::RetireGrant
        ) {
            checked.push(self.grant_exists(key, action, before).await?);
        }
        Ok(checked)
    }
}
