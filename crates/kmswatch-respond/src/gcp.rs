//! Google Cloud KMS responder, over the Cloud KMS REST API (v1).
//!
//! Why REST and not `google-cloud-kms-v1`: the official Rust client is young, generated for the
//! whole API surface and heavy to compile; kmswatch needs a handful of stable endpoints. Auth is
//! a service-account key (a self-signed RS256 JWT exchanged at the key's `token_uri`) or the
//! metadata server's token; tokens are cached and refreshed.
//!
//! Calls: `GET {key}`, `GET {key}/cryptoKeyVersions`, `PATCH {version}?updateMask=state`,
//! `POST {key}/cryptoKeyVersions` + `POST {key}:updatePrimaryVersion` (rotate),
//! `POST {version}:restore`, `PATCH {key}?updateMask=rotationPeriod,nextRotationTime|labels`.
//! Never `:destroy`.
//!
//! URLs are built only from key names that passed the Cloud KMS grammar (re-checked for every
//! URL) and version ids that are numbers; the endpoints come from configuration.
//! Corroboration looks each evidence event up in Cloud Logging (`entries:list` by `insertId`
//! in the event's project, within a day of its time): it must exist, be the method the
//! finding says, and be about the key.

use crate::action::{Action, ActionKind, KeyRef, KeyState, VersionState, FINDING_LABEL};
use crate::backend::KeyBackend;
use crate::basis::{Basis, Claim};
use crate::config::{check_endpoint, range};
use crate::corroborate::{claims_about, NotCorroborated};
use crate::error::RespondError;
use crate::http::{pem_to_der, Auth, Rest, Secret, TokenSource};
use crate::net::Net;
use kmswatch_model::resource;
use kmswatch_model::Provider;
use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::Duration;

/// The `respond.gcp:` section.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GcpConfig {
    /// Service-account key JSON (default: `GOOGLE_APPLICATION_CREDENTIALS`; without either, the
    /// metadata server).
    #[serde(default)]
    pub credentials_file: Option<PathBuf>,
    /// Override the key file's `token_uri` (tests).
    #[serde(default)]
    pub token_uri: Option<String>,
    /// Metadata server (default `http://metadata.google.internal`).
    #[serde(default)]
    pub metadata_endpoint: Option<String>,
    /// Cloud KMS endpoint (default `https://cloudkms.googleapis.com`).
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Cloud Logging endpoint for corroboration (default `https://logging.googleapis.com`).
    #[serde(default)]
    pub logging_endpoint: Option<String>,
    /// Projects whose keys this responder may act on (project ids, globs). Empty: any. A key
    /// outside is refused before any call.
    #[serde(default)]
    pub projects: Vec<String>,
    /// A fixed bearer token (tests).
    #[serde(default)]
    pub static_token: Option<Secret>,
    /// Retries after throttling (default 4).
    #[serde(default)]
    pub max_retries: Option<u32>,
    /// Longest `Retry-After` honoured, seconds (default 30).
    #[serde(default)]
    pub max_retry_wait_secs: Option<u64>,
}

#[derive(Deserialize)]
struct ServiceAccountKey {
    client_email: String,
    private_key: String,
    #[serde(default)]
    private_key_id: Option<String>,
    #[serde(default)]
    token_uri: Option<String>,
}

impl GcpConfig {
    pub(crate) fn validate(&self) -> Result<(), RespondError> {
        for (f, u) in [
            ("gcp.token_uri", &self.token_uri),
            ("gcp.metadata_endpoint", &self.metadata_endpoint),
            ("gcp.endpoint", &self.endpoint),
            ("gcp.logging_endpoint", &self.logging_endpoint),
        ] {
            if let Some(u) = u {
                check_endpoint(f, u)?;
            }
        }
        range("gcp.max_retries", self.max_retries.unwrap_or(4), 0, 10)?;
        range(
            "gcp.max_retry_wait_secs",
            self.max_retry_wait_secs.unwrap_or(30),
            0,
            600,
        )
    }
}

/// The Google Cloud KMS responder.
#[derive(Debug)]
pub struct GcpBackend {
    rest: Rest,
    endpoint: String,
    logging_endpoint: String,
}

/// RFC 3339 UTC timestamp of epoch milliseconds.
pub fn rfc3339(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    // Civil from days (Howard Hinnant).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        sod / 3600,
        (sod % 3600) / 60,
        sod % 60
    )
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

fn last_segment(name: &str) -> String {
    name.rsplit('/').next().unwrap_or_default().to_string()
}

impl GcpBackend {
    /// Build from config (reads the key file; no network).
    pub fn new(cfg: &GcpConfig, net: &Net) -> Result<GcpBackend, RespondError> {
        let scope =
            "https://www.googleapis.com/auth/cloudkms https://www.googleapis.com/auth/logging.read"
                .to_string();
        let file = cfg
            .credentials_file
            .clone()
            .or_else(|| std::env::var_os("GOOGLE_APPLICATION_CREDENTIALS").map(PathBuf::from));
        let source = if let Some(t) = &cfg.static_token {
            TokenSource::Static(t.clone())
        } else if let Some(path) = file {
            let text = std::fs::read_to_string(&path).map_err(|e| {
                RespondError::Config(format!("gcp.credentials_file {}: {e}", path.display()))
            })?;
            let k: ServiceAccountKey = serde_json::from_str(&text).map_err(|e| {
                RespondError::Config(format!(
                    "gcp.credentials_file {}: not a service-account key: {e}",
                    path.display()
                ))
            })?;
            let der = pem_to_der(&k.private_key).map_err(|e| {
                RespondError::Config(format!("gcp.credentials_file {}: {e}", path.display()))
            })?;
            TokenSource::GoogleServiceAccount {
                client_email: k.client_email,
                private_key_id: k.private_key_id,
                private_key_der: der,
                token_uri: cfg
                    .token_uri
                    .clone()
                    .or(k.token_uri)
                    .unwrap_or_else(|| "https://oauth2.googleapis.com/token".into()),
                scope,
            }
        } else {
            TokenSource::GoogleMetadata {
                endpoint: cfg
                    .metadata_endpoint
                    .clone()
                    .unwrap_or_else(|| "http://metadata.google.internal".into()),
            }
        };
        let trim = |e: Option<&String>, d: &str| {
            e.map_or(d, String::as_str)
                .trim_end_matches('/')
                .to_string()
        };
        Ok(GcpBackend {
            rest: Rest::new(
                "GCP",
                net.http(),
                Auth::new("GCP", source),
                cfg.max_retries.unwrap_or(4),
                Duration::from_secs(cfg.max_retry_wait_secs.unwrap_or(30)),
            ),
            endpoint: trim(cfg.endpoint.as_ref(), "https://cloudkms.googleapis.com"),
            logging_endpoint: trim(
                cfg.logging_endpoint.as_ref(),
                "https://logging.googleapis.com",
            ),
        })
    }

    /// The key's canonical name, re-checked against the grammar: the only name a URL is built
    /// from.
    fn key_name(key: &KeyRef) -> Result<String, RespondError> {
        let n =
            resource::parse_gcp_crypto_key(&key.name).map_err(|e| RespondError::InvalidKey {
                key: key.uid.clone(),
                reason: e.reason,
            })?;
        match n.version {
            None => Ok(n.name()),
            Some(_) => Err(RespondError::InvalidKey {
                key: key.uid.clone(),
                reason: "a key name, not a version, was expected".into(),
            }),
        }
    }

    fn url(&self, key: &KeyRef, suffix: &str) -> Result<String, RespondError> {
        Ok(format!(
            "{}/v1/{}{suffix}",
            self.endpoint,
            Self::key_name(key)?
        ))
    }

    /// The URL of version `v` of the key (`v` must be a version number).
    fn version_url(&self, key: &KeyRef, v: &str, suffix: &str) -> Result<String, RespondError> {
        if !resource::is_gcp_version(v) {
            return Err(RespondError::InvalidKey {
                key: key.uid.clone(),
                reason: format!("{:?} is not a key version number", crate::action::quote(v)),
            });
        }
        self.url(key, &format!("/cryptoKeyVersions/{v}{suffix}"))
    }

    async fn set_version_state(
        &self,
        key: &KeyRef,
        v: &str,
        state: &str,
    ) -> Result<(), RespondError> {
        let url = self.version_url(key, v, "?updateMask=state")?;
        self.rest
            .call(
                "UpdateCryptoKeyVersion",
                key,
                Method::PATCH,
                &url,
                Some(&json!({ "state": state })),
            )
            .await?;
        Ok(())
    }

    async fn set_primary(&self, key: &KeyRef, v: &str) -> Result<(), RespondError> {
        if !resource::is_gcp_version(v) {
            return Err(RespondError::InvalidKey {
                key: key.uid.clone(),
                reason: format!("{:?} is not a key version number", crate::action::quote(v)),
            });
        }
        let url = self.url(key, ":updatePrimaryVersion")?;
        self.rest
            .call(
                "UpdateCryptoKeyPrimaryVersion",
                key,
                Method::POST,
                &url,
                Some(&json!({ "cryptoKeyVersionId": v })),
            )
            .await?;
        Ok(())
    }
}

impl KeyBackend for GcpBackend {
    fn provider(&self) -> Provider {
        Provider::Gcp
    }

    async fn describe(&self, key: &KeyRef) -> Result<KeyState, RespondError> {
        let (_, k) = self
            .rest
            .call("GetCryptoKey", key, Method::GET, &self.url(key, "")?, None)
            .await?;
        let mut versions = Vec::new();
        let mut page: Option<String> = None;
        for _ in 0..100 {
            let mut url = self.url(key, "/cryptoKeyVersions?pageSize=1000")?;
            if let Some(p) = &page {
                url.push_str(&format!("&pageToken={}", crate::http::form_encode(p)));
            }
            let (_, l) = self
                .rest
                .call("ListCryptoKeyVersions", key, Method::GET, &url, None)
                .await?;
            for v in l
                .get("cryptoKeyVersions")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                versions.push(VersionState {
                    id: last_segment(v.get("name").and_then(Value::as_str).unwrap_or_default()),
                    state: v
                        .get("state")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string(),
                });
            }
            page = l
                .get("nextPageToken")
                .and_then(Value::as_str)
                .filter(|p| !p.is_empty())
                .map(str::to_string);
            if page.is_none() {
                break;
            }
        }
        let primary = k
            .pointer("/primary/name")
            .and_then(Value::as_str)
            .map(last_segment);
        let primary_state = k
            .pointer("/primary/state")
            .and_then(Value::as_str)
            .map(str::to_string);
        let enabled = match &primary_state {
            Some(s) => s == "ENABLED",
            None => versions.iter().any(|v| v.state == "ENABLED"),
        };
        let rotation = k.get("rotationPeriod").and_then(Value::as_str);
        Ok(KeyState {
            resolved_uid: Some(key.uid.clone()),
            status: primary_state.unwrap_or_else(|| "NO_PRIMARY".into()),
            enabled,
            pending_deletion: versions.iter().any(|v| v.state == "DESTROY_SCHEDULED"),
            rotation_enabled: Some(rotation.is_some()),
            rotation_period_days: rotation
                .and_then(|r| r.strip_suffix('s'))
                .and_then(|s| s.parse::<u64>().ok())
                .and_then(|s| u32::try_from(s / 86_400).ok()),
            names: vec![last_segment(&key.name)],
            tags: k
                .get("labels")
                .and_then(Value::as_object)
                .map(|m| {
                    m.iter()
                        .map(|(a, b)| (a.clone(), b.as_str().unwrap_or_default().to_string()))
                        .collect()
                })
                .unwrap_or_default(),
            account: key.account.clone(),
            primary_version: primary,
            versions,
            manager: None,
            deleted_at_ms: None,
        })
    }

    async fn execute(
        &self,
        key: &KeyRef,
        action: &Action,
        before: &KeyState,
    ) -> Result<Option<String>, RespondError> {
        match action.kind {
            ActionKind::Disable | ActionKind::Enable => {
                let (from, to) = if action.kind == ActionKind::Disable {
                    ("ENABLED", "DISABLED")
                } else {
                    ("DISABLED", "ENABLED")
                };
                let targets = action.target_versions(before, from);
                for v in &targets {
                    self.set_version_state(key, v, to).await?;
                }
                return Ok(Some(format!("versions {} -> {to}", targets.join(","))));
            }
            ActionKind::CancelDeletion => {
                let targets = action.target_versions(
                    &KeyState {
                        primary_version: None,
                        ..before.clone()
                    },
                    "DESTROY_SCHEDULED",
                );
                let targets = if targets.is_empty() && action.versions.is_empty() {
                    before
                        .versions
                        .iter()
                        .filter(|v| v.state == "DESTROY_SCHEDULED")
                        .map(|v| v.id.clone())
                        .collect()
                } else {
                    targets
                };
                for v in &targets {
                    let url = self.version_url(key, v, ":restore")?;
                    self.rest
                        .call(
                            "RestoreCryptoKeyVersion",
                            key,
                            Method::POST,
                            &url,
                            Some(&json!({})),
                        )
                        .await?;
                    // A restored version is DISABLED.
                    self.set_version_state(key, v, "ENABLED").await?;
                }
                return Ok(Some(format!(
                    "versions {} restored and enabled",
                    targets.join(",")
                )));
            }
            ActionKind::Rotate => {
                let url = self.url(key, "/cryptoKeyVersions")?;
                let (_, v) = self
                    .rest
                    .call(
                        "CreateCryptoKeyVersion",
                        key,
                        Method::POST,
                        &url,
                        Some(&json!({})),
                    )
                    .await?;
                let id = last_segment(v.get("name").and_then(Value::as_str).unwrap_or_default());
                if id.is_empty() {
                    return Err(RespondError::Api {
                        provider: "GCP",
                        operation: "CreateCryptoKeyVersion".into(),
                        key: key.uid.clone(),
                        status: None,
                        code: "NoName".into(),
                        message: "the new version has no name".into(),
                        retryable: false,
                    });
                }
                self.set_primary(key, &id).await?;
                return Ok(Some(format!("new primary version {id}")));
            }
            ActionKind::SetPrimary => {
                let v = action.versions.first().cloned().unwrap_or_default();
                self.set_primary(key, &v).await?;
            }
            ActionKind::EnableRotation | ActionKind::DisableRotation => {
                let body = if action.kind == ActionKind::EnableRotation {
                    let d = i64::from(action.rotation_period_days.unwrap_or(365));
                    json!({
                        "rotationPeriod": format!("{}s", d * 86_400),
                        "nextRotationTime": rfc3339(now_ms() + d * 86_400_000),
                    })
                } else {
                    json!({})
                };
                let url = self.url(key, "?updateMask=rotationPeriod,nextRotationTime")?;
                self.rest
                    .call("UpdateCryptoKey", key, Method::PATCH, &url, Some(&body))
                    .await?;
            }
            ActionKind::Tag | ActionKind::Untag => {
                let mut labels = before.tags.clone();
                if action.kind == ActionKind::Tag {
                    labels.insert(
                        FINDING_LABEL.into(),
                        action
                            .tag_value
                            .clone()
                            .unwrap_or_default()
                            .to_ascii_lowercase(),
                    );
                } else {
                    labels.remove(FINDING_LABEL);
                }
                let url = self.url(key, "?updateMask=labels")?;
                self.rest
                    .call(
                        "UpdateCryptoKey",
                        key,
                        Method::PATCH,
                        &url,
                        Some(&json!({ "labels": labels })),
                    )
                    .await?;
            }
            ActionKind::RevokeGrant | ActionKind::RetireGrant => {
                return Err(RespondError::Config(format!(
                    "{} is not a Cloud KMS action",
                    action.kind.as_str()
                )))
            }
        }
        Ok(None)
    }

    async fn corroborate(
        &self,
        key: &KeyRef,
        _action: &Action,
        basis: &Basis,
        before: &KeyState,
    ) -> Result<Vec<String>, NotCorroborated> {
        let mut checked = Vec::new();
        for c in claims_about(key, before, basis)? {
            checked.push(self.lookup(key, c).await?);
        }
        Ok(checked)
    }
}

impl GcpBackend {
    /// Cloud Logging `entries:list` by `insertId` within a day of the claim: the entry exists,
    /// is the method the finding says and names the key.
    async fn lookup(&self, key: &KeyRef, c: &Claim) -> Result<String, NotCorroborated> {
        // insertIds are short tokens; anything else could change the filter's meaning.
        if c.uid.is_empty()
            || c.uid.len() > 128
            || !c
                .uid
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
        {
            return Err(NotCorroborated::no(format!(
                "evidence event id {:?} is not a Cloud Logging insertId",
                c.uid
            )));
        }
        let project = c
            .account
            .as_deref()
            .filter(|p| resource::is_gcp_project(p))
            .or(key.account.as_deref())
            .ok_or_else(|| NotCorroborated::no("no project to look the event up in"))?;
        let filter = format!(
            "insertId=\"{}\" AND timestamp>=\"{}\" AND timestamp<=\"{}\"",
            c.uid,
            rfc3339(c.time - 86_400_000),
            rfc3339(c.time + 86_400_000)
        );
        let body = json!({"resourceNames": [format!("projects/{project}")], "filter": filter, "pageSize": 5});
        let url = format!("{}/v2/entries:list", self.logging_endpoint);
        let (_, v) = self
            .rest
            .call("ListLogEntries", key, Method::POST, &url, Some(&body))
            .await
            .map_err(|e| NotCorroborated {
                retryable: e.retryable(),
                why: format!("Cloud Logging entries:list for {}: {e}", c.uid),
            })?;
        let entry = v
            .get("entries")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .find(|e| e.get("insertId").and_then(Value::as_str) == Some(c.uid.as_str()));
        let Some(entry) = entry else {
            return Err(NotCorroborated::later(format!(
                "Cloud Logging has no entry {} in project {project}: the event the finding reports did not happen there, or is not recorded yet",
                c.uid
            )));
        };
        let method = entry
            .pointer("/protoPayload/methodName")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let resource_name = entry
            .pointer("/protoPayload/resourceName")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let same_method = method == c.operation || method.ends_with(&format!(".{}", c.operation));
        let same_key =
            resource_name == key.uid || resource_name.starts_with(&format!("{}/", key.uid));
        if !same_method || !same_key {
            return Err(NotCorroborated::no(format!(
                "Cloud Logging entry {} is {method} on {resource_name}, not {} on {}",
                c.uid, c.operation, key.uid
            )));
        }
        Ok(format!("Cloud Logging entry {} ({method}) found", c.uid))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000_123), "2023-11-14T22:13:20Z");
    }
}
