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

use crate::action::{Action, ActionKind, KeyRef, KeyState, FINDING_TAG};
use crate::backend::KeyBackend;
use crate::error::RespondError;
use crate::http::{Auth, Rest, Secret, TokenSource};
use kmswatch_model::Provider;
use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::Duration;

/// The `respond.azure:` section.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AzureConfig {
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
    /// Entra ID authority (default `https://login.microsoftonline.com`).
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

/// The Azure Key Vault responder.
#[derive(Debug)]
pub struct AzureBackend {
    rest: Rest,
    vault_endpoint: Option<String>,
    api_version: String,
}

impl AzureBackend {
    /// Build from config (reads the secret's environment variable; no network).
    pub fn new(cfg: &AzureConfig) -> Result<AzureBackend, RespondError> {
        let source = if let Some(t) = &cfg.static_token {
            TokenSource::Static(t.clone())
        } else if cfg.managed_identity {
            TokenSource::AzureManagedIdentity {
                endpoint: cfg.imds_endpoint.clone().unwrap_or_else(|| {
                    "http://169.254.169.254/metadata/identity/oauth2/token".into()
                }),
                resource: "https://vault.azure.net".into(),
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
                    .unwrap_or_else(|| "https://login.microsoftonline.com".into()),
                tenant: cfg
                    .tenant_id
                    .clone()
                    .ok_or_else(|| RespondError::Config("azure.tenant_id is required".into()))?,
                client_id: cfg
                    .client_id
                    .clone()
                    .ok_or_else(|| RespondError::Config("azure.client_id is required".into()))?,
                client_secret: secret,
                scope: "https://vault.azure.net/.default".into(),
            }
        };
        Ok(AzureBackend {
            rest: Rest::new(
                "Azure",
                Auth::new("Azure", source),
                cfg.max_retries.unwrap_or(4),
                Duration::from_secs(cfg.max_retry_wait_secs.unwrap_or(30)),
            ),
            vault_endpoint: cfg.vault_endpoint.clone(),
            api_version: cfg.api_version.clone().unwrap_or_else(|| "7.4".into()),
        })
    }

    fn url(&self, key: &KeyRef, path: &str) -> String {
        let base = self
            .vault_endpoint
            .clone()
            .or_else(|| key.vault.clone())
            .unwrap_or_default();
        format!(
            "{}{path}?api-version={}",
            base.trim_end_matches('/'),
            self.api_version
        )
    }

    async fn patch(&self, key: &KeyRef, body: Value) -> Result<Value, RespondError> {
        let url = self.url(key, &format!("/keys/{}", key.name));
        Ok(self
            .rest
            .call("UpdateKey", key, Method::PATCH, &url, Some(&body))
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
        let url = self.url(key, &format!("/keys/{}", key.name));
        let (body, deleted) = match self.rest.call("GetKey", key, Method::GET, &url, None).await {
            Ok((_, v)) => (v, false),
            Err(e) if e.code() == Some("KeyNotFound") => {
                let url = self.url(key, &format!("/deletedkeys/{}", key.name));
                let (_, v) = self
                    .rest
                    .call("GetDeletedKey", key, Method::GET, &url, None)
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
            ..Default::default()
        };
        if !deleted {
            let url = self.url(key, &format!("/keys/{}/rotationpolicy", key.name));
            if let Ok((_, p)) = self
                .rest
                .call("GetKeyRotationPolicy", key, Method::GET, &url, None)
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
                    let url = self.url(key, &format!("/deletedkeys/{}/recover", key.name));
                    let (_, v) = self
                        .rest
                        .call("RecoverDeletedKey", key, Method::POST, &url, None)
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
                let url = self.url(key, &format!("/keys/{}/rotate", key.name));
                let (_, v) = self
                    .rest
                    .call("RotateKey", key, Method::POST, &url, None)
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
                let url = self.url(key, &format!("/keys/{}/rotationpolicy", key.name));
                self.rest
                    .call(
                        "UpdateKeyRotationPolicy",
                        key,
                        Method::PUT,
                        &url,
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
}
