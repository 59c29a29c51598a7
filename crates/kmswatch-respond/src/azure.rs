//! Azure Key Vault responder, over the Key Vault REST API (`api-version=7.4`).
//!
//! Why REST and not the Azure SDK for Rust: the official `azure_security_keyvault_keys` crates
//! are pre-1.0 with breaking changes between releases and pull a large dependency tree; kmswatch
//! needs six calls, which are stable, documented REST endpoints. Auth is Microsoft Entra ID
//! (client credentials) or a managed identity (IMDS); tokens are cached and refreshed.
//!
//! Calls: `GET {vault}/keys/{name}` (state), `GET {vault}/deletedkeys/{name}` (soft-deleted),
//! `PATCH {vault}/keys/{name}` with `{"attributes":{"enabled":false|true}}` or `{"tags":..}`,
//! `POST {vault}/keys/{name}/rotate`, `GET|PUT {vault}/keys/{name}/rotationpolicy`,
//! `POST {vault}/deletedkeys/{name}/recover`. Never KeyDelete or purge.
//!
//! Requests go only to the vault host of a [`KeyRef`] that passed the Key Vault grammar (a
//! documented DNS suffix of the configured `cloud`), re-checked when each URL is built, or to
//! `vault_endpoint` from configuration. The bearer token is requested for that host's own
//! audience (`https://vault.azure.net`, `https://managedhsm.azure.net`, the sovereign clouds'
//! equivalents), so a Key Vault token is never sent to a Managed HSM and vice versa.
//!
//! Corroboration: Key Vault has no API to look a data-plane event up by id, so the checks are
//! the key's own state (exists, enabled / soft-deleted as the action implies) and, for
//! `cancel_deletion`, that the key's `deletedDate` is not before the finding's deletion event.

use crate::action::{Action, ActionKind, KeyRef, KeyState, FINDING_TAG};
use crate::backend::KeyBackend;
use crate::basis::Basis;
use crate::config::{check_endpoint, range};
use crate::corroborate::{claims_about, NotCorroborated};
use crate::error::RespondError;
use crate::http::{Auth, Rest, Secret, TokenSource};
use crate::net::Net;
use kmswatch_model::resource::{self, AzureCloud, AzureVaultKind};
use kmswatch_model::Provider;
use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::Duration;

/// The Azure cloud a responder serves.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AzureCloudName {
    /// Azure (public): `*.vault.azure.net`, `*.managedhsm.azure.net`,
    /// `login.microsoftonline.com`.
    #[default]
    Public,
    /// Azure operated by 21Vianet: `*.vault.azure.cn`, `*.managedhsm.azure.cn`,
    /// `login.chinacloudapi.cn`.
    China,
    /// Azure US Government: `*.vault.usgovcloudapi.net`, `*.managedhsm.usgovcloudapi.net`,
    /// `login.microsoftonline.us`.
    UsGovernment,
}

impl AzureCloudName {
    /// The model's cloud.
    pub fn cloud(self) -> AzureCloud {
        match self {
            AzureCloudName::Public => AzureCloud::Public,
            AzureCloudName::China => AzureCloud::China,
            AzureCloudName::UsGovernment => AzureCloud::UsGovernment,
        }
    }

    fn authority(self) -> &'static str {
        match self {
            AzureCloudName::Public => "https://login.microsoftonline.com",
            AzureCloudName::China => "https://login.chinacloudapi.cn",
            AzureCloudName::UsGovernment => "https://login.microsoftonline.us",
        }
    }

    /// The token audience of a kind of vault in this cloud (`https://vault.azure.net`).
    fn resource(self, kind: AzureVaultKind) -> String {
        let suffix = resource::AZURE_KEY_VAULT_SUFFIXES
            .iter()
            .find(|(_, k, c)| *k == kind && *c == self.cloud())
            .map_or("vault.azure.net", |(s, _, _)| s);
        format!("https://{suffix}")
    }
}

/// The `respond.azure:` section.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AzureConfig {
    /// The cloud (`public` default, `china`, `us_government`): only its Key Vault / Managed HSM
    /// hosts are ever contacted, and tokens are requested from its Entra ID authority.
    #[serde(default)]
    pub cloud: AzureCloudName,
    /// Vault hosts whose keys this responder may act on (`kv-prod.vault.azure.net`, globs
    /// such as `kv-*.vault.azure.net`). Empty: any vault of `cloud`. A key outside is refused
    /// before any call.
    #[serde(default)]
    pub vaults: Vec<String>,
    /// Entra ID tenant (client credentials).
    #[serde(default)]
    pub tenant_id: Option<String>,
    /// Application (client) id; with `managed_identity`, a user-assigned identity's client id.
    #[serde(default)]
    pub client_id: Option<String>,
    /// Name of the environment variable holding the client secret (preferred).
    #[serde(default)]
    pub client_secret_env: Option<String>,
    /// The client secret itself (redacted in logs; prefer `client_secret_env`).
    #[serde(default)]
    pub client_secret: Option<Secret>,
    /// Use the managed identity (IMDS) instead of client credentials.
    #[serde(default)]
    pub managed_identity: bool,
    /// Entra ID authority (default: the cloud's, `https://login.microsoftonline.com`).
    #[serde(default)]
    pub authority: Option<String>,
    /// IMDS token endpoint (default `http://169.254.169.254/metadata/identity/oauth2/token`).
    #[serde(default)]
    pub imds_endpoint: Option<String>,
    /// Send every vault request here instead of the key's vault URL (tests, private endpoints).
    #[serde(default)]
    pub vault_endpoint: Option<String>,
    /// A fixed bearer token (tests).
    #[serde(default)]
    pub static_token: Option<Secret>,
    /// Key Vault API version (default `7.4`).
    #[serde(default)]
    pub api_version: Option<String>,
    /// Retries after throttling (default 4).
    #[serde(default)]
    pub max_retries: Option<u32>,
    /// Longest `Retry-After` honoured, seconds (default 30).
    #[serde(default)]
    pub max_retry_wait_secs: Option<u64>,
}

impl AzureConfig {
    pub(crate) fn validate(&self) -> Result<(), RespondError> {
        for (f, u) in [
            ("azure.authority", &self.authority),
            ("azure.imds_endpoint", &self.imds_endpoint),
            ("azure.vault_endpoint", &self.vault_endpoint),
        ] {
            if let Some(u) = u {
                check_endpoint(f, u)?;
            }
        }
        if let Some(t) = &self.tenant_id {
            let ok = !t.is_empty()
                && t.len() <= 253
                && t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
            if !ok {
                return Err(RespondError::Config(format!(
                    "azure.tenant_id: {t:?} is not a tenant id or domain"
                )));
            }
        }
        if let Some(v) = &self.api_version {
            if v.is_empty()
                || !v
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
            {
                return Err(RespondError::Config(format!(
                    "azure.api_version: {v:?} is not an API version"
                )));
            }
        }
        range("azure.max_retries", self.max_retries.unwrap_or(4), 0, 10)?;
        range(
            "azure.max_retry_wait_secs",
            self.max_retry_wait_secs.unwrap_or(30),
            0,
            600,
        )
    }
}

/// The Azure Key Vault responder.
#[derive(Debug)]
pub struct AzureBackend {
    /// Requests to key vaults (token audience of the cloud's vaults).
    vaults: Rest,
    /// Requests to managed HSM pools (their own audience).
    hsms: Rest,
    cloud: AzureCloudName,
    vault_endpoint: Option<String>,
    api_version: String,
}

impl AzureBackend {
    /// Build from config (reads the secret's environment variable; no network).
    pub fn new(cfg: &AzureConfig, net: &Net) -> Result<AzureBackend, RespondError> {
        let rest = |kind: AzureVaultKind| -> Result<Rest, RespondError> {
            Ok(Rest::new(
                "Azure",
                net.http(),
                Auth::new("Azure", Self::token_source(cfg, kind)?),
                cfg.max_retries.unwrap_or(4),
                Duration::from_secs(cfg.max_retry_wait_secs.unwrap_or(30)),
            ))
        };
        Ok(AzureBackend {
            vaults: rest(AzureVaultKind::Vault)?,
            hsms: rest(AzureVaultKind::ManagedHsm)?,
            cloud: cfg.cloud,
            vault_endpoint: cfg.vault_endpoint.clone(),
            api_version: cfg.api_version.clone().unwrap_or_else(|| "7.4".into()),
        })
    }

    /// Where tokens for `kind` come from.
    fn token_source(cfg: &AzureConfig, kind: AzureVaultKind) -> Result<TokenSource, RespondError> {
        let resource = cfg.cloud.resource(kind);
        Ok(if let Some(t) = &cfg.static_token {
            TokenSource::Static(t.clone())
        } else if cfg.managed_identity {
            TokenSource::AzureManagedIdentity {
                endpoint: cfg.imds_endpoint.clone().unwrap_or_else(|| {
                    "http://169.254.169.254/metadata/identity/oauth2/token".into()
                }),
                resource,
                client_id: cfg.client_id.clone(),
            }
        } else {
            let secret = match (&cfg.client_secret, &cfg.client_secret_env) {
                (Some(s), _) => s.clone(),
                (None, Some(var)) => Secret(std::env::var(var).map_err(|_| {
                    RespondError::Config(format!(
                        "azure.client_secret_env: environment variable {var} is not set"
                    ))
                })?),
                (None, None) => {
                    return Err(RespondError::Config(
                        "azure: set managed_identity: true, or tenant_id + client_id + client_secret_env".into(),
                    ))
                }
            };
            TokenSource::EntraClientCredentials {
                authority: cfg
                    .authority
                    .clone()
                    .unwrap_or_else(|| cfg.cloud.authority().into()),
                tenant: cfg
                    .tenant_id
                    .clone()
                    .ok_or_else(|| RespondError::Config("azure.tenant_id is required".into()))?,
                client_id: cfg
                    .client_id
                    .clone()
                    .ok_or_else(|| RespondError::Config("azure.client_id is required".into()))?,
                client_secret: secret,
                scope: format!("{resource}/.default"),
            }
        })
    }

    /// The key's vault host, re-checked against the grammar and the configured cloud: the
    /// only host a request for `key` may go to.
    fn host(&self, key: &KeyRef) -> Result<resource::AzureVaultHost, RespondError> {
        let bad = |reason: String| RespondError::InvalidKey {
            key: key.uid.clone(),
            reason,
        };
        let authority = key
            .vault
            .as_deref()
            .and_then(|v| v.strip_prefix("https://"))
            .ok_or_else(|| bad("no vault URL".into()))?;
        let host = resource::parse_azure_vault_authority(authority).map_err(|e| bad(e.reason))?;
        if host.cloud != self.cloud.cloud() {
            return Err(bad(format!(
                "{host} is not a vault of the configured Azure cloud"
            )));
        }
        if !resource::is_azure_object_name(&key.name) {
            return Err(bad("not a Key Vault key name".into()));
        }
        Ok(host)
    }

    /// The URL of `path` on the key's vault (or on `vault_endpoint`), and the client whose
    /// token audience fits the vault.
    fn url(&self, key: &KeyRef, path: &str) -> Result<(&Rest, String), RespondError> {
        let host = self.host(key)?;
        let base = self
            .vault_endpoint
            .clone()
            .unwrap_or_else(|| host.base_url());
        let rest = match host.kind {
            AzureVaultKind::Vault => &self.vaults,
            AzureVaultKind::ManagedHsm => &self.hsms,
        };
        Ok((
            rest,
            format!(
                "{}{path}?api-version={}",
                base.trim_end_matches('/'),
                self.api_version
            ),
        ))
    }

    async fn call(
        &self,
        op: &str,
        key: &KeyRef,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(u16, Value), RespondError> {
        let (rest, url) = self.url(key, path)?;
        rest.call(op, key, method, &url, body).await
    }

    async fn patch(&self, key: &KeyRef, body: Value) -> Result<Value, RespondError> {
        Ok(self
            .call(
                "UpdateKey",
                key,
                Method::PATCH,
                &format!("/keys/{}", key.name),
                Some(&body),
            )
            .await?
            .1)
    }
}

fn tags_of(v: &Value) -> BTreeMap<String, String> {
    v.get("tags")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default()
}

/// `P90D` -> 90.
fn iso_days(s: &str) -> Option<u32> {
    s.strip_prefix('P')?.strip_suffix('D')?.parse().ok()
}

impl KeyBackend for AzureBackend {
    fn provider(&self) -> Provider {
        Provider::Azure
    }

    async fn describe(&self, key: &KeyRef) -> Result<KeyState, RespondError> {
        let path = format!("/keys/{}", key.name);
        let (body, deleted) = match self.call("GetKey", key, Method::GET, &path, None).await {
            Ok((_, v)) => (v, false),
            Err(e) if e.code() == Some("KeyNotFound") => {
                let path = format!("/deletedkeys/{}", key.name);
                let (_, v) = self
                    .call("GetDeletedKey", key, Method::GET, &path, None)
                    .await
                    .map_err(|d| {
                        if d.code() == Some("KeyNotFound") {
                            e
                        } else {
                            d
                        }
                    })?;
                (v, true)
            }
            Err(e) => return Err(e),
        };
        let enabled = body
            .pointer("/attributes/enabled")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let kid = body
            .pointer("/key/kid")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let mut st = KeyState {
            resolved_uid: Some(key.uid.clone()),
            status: if deleted {
                "deleted".into()
            } else if enabled {
                "enabled".into()
            } else {
                "disabled".into()
            },
            enabled: enabled && !deleted,
            pending_deletion: deleted,
            names: vec![key.name.clone()],
            tags: tags_of(&body),
            account: key.account.clone(),
            primary_version: kid
                .rsplit('/')
                .next()
                .filter(|v| !v.is_empty() && kid.contains("/keys/"))
                .map(str::to_string),
            // Key Vault's `deletedDate` is epoch seconds.
            deleted_at_ms: body
                .get("deletedDate")
                .and_then(Value::as_i64)
                .map(|s| s.saturating_mul(1000)),
            ..Default::default()
        };
        if !deleted {
            let path = format!("/keys/{}/rotationpolicy", key.name);
            if let Ok((_, p)) = self
                .call("GetKeyRotationPolicy", key, Method::GET, &path, None)
                .await
            {
                let rotate = p
                    .get("lifetimeActions")
                    .and_then(Value::as_array)
                    .and_then(|a| {
                        a.iter().find(|x| {
                            x.pointer("/action/type")
                                .and_then(Value::as_str)
                                .is_some_and(|t| t.eq_ignore_ascii_case("rotate"))
                        })
                    })
                    .cloned();
                st.rotation_enabled = Some(rotate.is_some());
                st.rotation_period_days = rotate
                    .as_ref()
                    .and_then(|r| r.pointer("/trigger/timeAfterCreate"))
                    .and_then(Value::as_str)
                    .and_then(iso_days);
            }
        }
        Ok(st)
    }

    async fn execute(
        &self,
        key: &KeyRef,
        action: &Action,
        before: &KeyState,
    ) -> Result<Option<String>, RespondError> {
        match action.kind {
            ActionKind::Disable => {
                self.patch(key, json!({"attributes": {"enabled": false}}))
                    .await?;
            }
            ActionKind::Enable => {
                self.patch(key, json!({"attributes": {"enabled": true}}))
                    .await?;
            }
            ActionKind::CancelDeletion => {
                let mut enabled = before.enabled;
                if before.pending_deletion {
                    let path = format!("/deletedkeys/{}/recover", key.name);
                    let (_, v) = self
                        .call("RecoverDeletedKey", key, Method::POST, &path, None)
                        .await?;
                    enabled = v
                        .pointer("/attributes/enabled")
                        .and_then(Value::as_bool)
                        .unwrap_or(false);
                }
                if !enabled {
                    self.patch(key, json!({"attributes": {"enabled": true}}))
                        .await?;
                }
            }
            ActionKind::Rotate => {
                let path = format!("/keys/{}/rotate", key.name);
                let (_, v) = self
                    .call("RotateKey", key, Method::POST, &path, None)
                    .await?;
                let kid = v
                    .pointer("/key/kid")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                return Ok(Some(format!("new key version {kid}")));
            }
            ActionKind::EnableRotation | ActionKind::DisableRotation => {
                let body = if action.kind == ActionKind::EnableRotation {
                    let d = action.rotation_period_days.unwrap_or(365);
                    json!({"lifetimeActions": [{"trigger": {"timeAfterCreate": format!("P{d}D")}, "action": {"type": "Rotate"}}]})
                } else {
                    json!({"lifetimeActions": []})
                };
                let path = format!("/keys/{}/rotationpolicy", key.name);
                self.call(
                    "UpdateKeyRotationPolicy",
                    key,
                    Method::PUT,
                    &path,
                    Some(&body),
                )
                .await?;
            }
            ActionKind::Tag | ActionKind::Untag => {
                let mut tags = before.tags.clone();
                if action.kind == ActionKind::Tag {
                    tags.insert(
                        FINDING_TAG.into(),
                        action.tag_value.clone().unwrap_or_default(),
                    );
                } else {
                    tags.remove(FINDING_TAG);
                }
                self.patch(key, json!({ "tags": tags })).await?;
            }
            ActionKind::RevokeGrant | ActionKind::RetireGrant | ActionKind::SetPrimary => {
                return Err(RespondError::Config(format!(
                    "{} is not an Azure Key Vault action",
                    action.kind.as_str()
                )))
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
        let claims = claims_about(key, before, basis)?;
        let mut checked = vec![format!(
            "{} evidence event(s) about the key; Key Vault has no API to look events up by id, the key's state is the evidence",
            claims.len()
        )];
        if action.kind == ActionKind::CancelDeletion {
            let first = claims.iter().map(|c| c.time).min().unwrap_or(0);
            match before.deleted_at_ms {
                // Key Vault records the deletion time; a deletion older than the events the
                // finding reports is not the deletion it reports.
                Some(d) if d + 60_000 < first => {
                    return Err(NotCorroborated::no(format!(
                    "the key was deleted at {d} ms, before the finding's first event at {first} ms"
                )))
                }
                Some(d) => checked.push(format!("the key was soft-deleted at {d} ms")),
                None => return Err(NotCorroborated::no("the deleted key has no deletedDate")),
            }
        }
        Ok(checked)
    }
}
