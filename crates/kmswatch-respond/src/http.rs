//! The REST plumbing shared by the Azure and GCP responders: bearer tokens (fetched, cached,
//! refreshed before expiry and after a 401), throttling (429/503 honour `Retry-After`), the
//! providers' error shapes, and a guard that refuses any request that could delete a key or
//! destroy key material.

use crate::action::KeyRef;
use crate::error::RespondError;
use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::time::{Duration, Instant};

/// A secret that never prints itself.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// How a token is obtained.
#[derive(Debug, Clone)]
pub enum TokenSource {
    /// A fixed token (tests, or a token minted elsewhere).
    Static(Secret),
    /// Microsoft Entra ID client credentials:
    /// `POST {authority}/{tenant}/oauth2/v2.0/token`.
    EntraClientCredentials {
        /// `https://login.microsoftonline.com`.
        authority: String,
        /// Tenant id.
        tenant: String,
        /// Application (client) id.
        client_id: String,
        /// Client secret.
        client_secret: Secret,
        /// `https://vault.azure.net/.default`.
        scope: String,
    },
    /// Azure managed identity through the instance metadata service (IMDS).
    AzureManagedIdentity {
        /// `http://169.254.169.254/metadata/identity/oauth2/token`.
        endpoint: String,
        /// `https://vault.azure.net`.
        resource: String,
        /// A user-assigned identity's client id.
        client_id: Option<String>,
    },
    /// A Google service-account key: a self-signed RS256 JWT exchanged at the token URI.
    GoogleServiceAccount {
        /// `client_email`.
        client_email: String,
        /// `private_key_id`.
        private_key_id: Option<String>,
        /// PKCS#8 DER of `private_key`.
        private_key_der: Vec<u8>,
        /// `token_uri`.
        token_uri: String,
        /// `https://www.googleapis.com/auth/cloudkms`.
        scope: String,
    },
    /// The GCE/GKE metadata server's token for the attached service account.
    GoogleMetadata {
        /// `http://metadata.google.internal`.
        endpoint: String,
    },
}

#[derive(Debug)]
struct CachedToken {
    value: Secret,
    refresh_at: Instant,
}

/// A token source plus its cache.
#[derive(Debug)]
pub struct Auth {
    provider: &'static str,
    source: TokenSource,
    cache: tokio::sync::Mutex<Option<CachedToken>>,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    expires_in: Option<Value>,
}

/// `application/x-www-form-urlencoded` encoding of one value.
pub fn form_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn form(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", form_encode(k), form_encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn b64url(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The PKCS#8 DER inside a PEM `PRIVATE KEY` block.
pub fn pem_to_der(pem: &str) -> Result<Vec<u8>, String> {
    use base64::Engine;
    let body: String = pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .map(str::trim)
        .collect();
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .map_err(|e| format!("private_key is not PEM: {e}"))
}

/// A signed RS256 JWT for the Google OAuth JWT-bearer grant.
pub fn google_jwt(
    client_email: &str,
    key_id: Option<&str>,
    der: &[u8],
    token_uri: &str,
    scope: &str,
    now_secs: i64,
) -> Result<String, String> {
    use aws_lc_rs::{rand::SystemRandom, signature};
    let mut header = serde_json::json!({"alg": "RS256", "typ": "JWT"});
    if let Some(k) = key_id {
        header["kid"] = Value::String(k.to_string());
    }
    let claims = serde_json::json!({
        "iss": client_email,
        "scope": scope,
        "aud": token_uri,
        "iat": now_secs,
        "exp": now_secs + 3600,
    });
    let msg = format!(
        "{}.{}",
        b64url(header.to_string().as_bytes()),
        b64url(claims.to_string().as_bytes())
    );
    let kp = signature::RsaKeyPair::from_pkcs8(der)
        .map_err(|e| format!("private_key is not an RSA PKCS#8 key: {e}"))?;
    let mut sig = vec![0u8; kp.public_modulus_len()];
    kp.sign(
        &signature::RSA_PKCS1_SHA256,
        &SystemRandom::new(),
        msg.as_bytes(),
        &mut sig,
    )
    .map_err(|e| format!("signing the JWT failed: {e}"))?;
    Ok(format!("{msg}.{}", b64url(&sig)))
}

impl Auth {
    /// A cached token source.
    pub fn new(provider: &'static str, source: TokenSource) -> Auth {
        Auth {
            provider,
            source,
            cache: tokio::sync::Mutex::new(None),
        }
    }

    /// A valid token (cached until a minute before it expires).
    pub async fn token(&self, http: &reqwest::Client) -> Result<Secret, RespondError> {
        let mut cache = self.cache.lock().await;
        if let Some(t) = cache.as_ref().filter(|t| Instant::now() < t.refresh_at) {
            return Ok(t.value.clone());
        }
        let (value, ttl) = self.fetch(http).await?;
        let refresh_at = Instant::now()
            + ttl
                .saturating_sub(Duration::from_secs(60))
                .max(Duration::from_secs(1));
        *cache = Some(CachedToken {
            value: value.clone(),
            refresh_at,
        });
        Ok(value)
    }

    /// Forget the cached token (after a 401).
    pub async fn invalidate(&self) {
        *self.cache.lock().await = None;
    }

    fn auth_err(&self, message: String, retryable: bool) -> RespondError {
        RespondError::Auth {
            provider: self.provider,
            message,
            retryable,
        }
    }

    async fn fetch(&self, http: &reqwest::Client) -> Result<(Secret, Duration), RespondError> {
        let req = match &self.source {
            TokenSource::Static(s) => return Ok((s.clone(), Duration::from_secs(3600))),
            TokenSource::EntraClientCredentials {
                authority,
                tenant,
                client_id,
                client_secret,
                scope,
            } => http
                .post(format!(
                    "{}/{}/oauth2/v2.0/token",
                    authority.trim_end_matches('/'),
                    tenant
                ))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(form(&[
                    ("grant_type", "client_credentials"),
                    ("client_id", client_id),
                    ("client_secret", &client_secret.0),
                    ("scope", scope),
                ])),
            TokenSource::AzureManagedIdentity {
                endpoint,
                resource,
                client_id,
            } => {
                let mut url = format!(
                    "{endpoint}?api-version=2018-02-01&resource={}",
                    form_encode(resource)
                );
                if let Some(c) = client_id {
                    url.push_str(&format!("&client_id={}", form_encode(c)));
                }
                http.get(url).header("Metadata", "true")
            }
            TokenSource::GoogleServiceAccount {
                client_email,
                private_key_id,
                private_key_der,
                token_uri,
                scope,
            } => {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs() as i64)
                    .unwrap_or_default();
                let jwt = google_jwt(
                    client_email,
                    private_key_id.as_deref(),
                    private_key_der,
                    token_uri,
                    scope,
                    now,
                )
                .map_err(|e| self.auth_err(e, false))?;
                http.post(token_uri)
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(form(&[
                        ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
                        ("assertion", &jwt),
                    ]))
            }
            TokenSource::GoogleMetadata { endpoint } => http
                .get(format!(
                    "{}/computeMetadata/v1/instance/service-accounts/default/token",
                    endpoint.trim_end_matches('/')
                ))
                .header("Metadata-Flavor", "Google"),
        };
        let resp = req
            .send()
            .await
            .map_err(|e| self.auth_err(format!("token request failed: {e}"), true))?;
        let status = resp.status();
        let text = resp
            .text()
            .await
            .map_err(|e| self.auth_err(format!("token response unreadable: {e}"), true))?;
        if !status.is_success() {
            let retryable = status.as_u16() == 429 || status.is_server_error();
            return Err(self.auth_err(
                format!(
                    "token endpoint answered HTTP {}: {}",
                    status.as_u16(),
                    truncate(&text)
                ),
                retryable,
            ));
        }
        let t: TokenResponse = serde_json::from_str(&text)
            .map_err(|e| self.auth_err(format!("token response is not a token: {e}"), false))?;
        // IMDS sends expires_in as a string.
        let secs = match t.expires_in {
            Some(Value::Number(n)) => n.as_u64(),
            Some(Value::String(s)) => s.parse().ok(),
            _ => None,
        }
        .unwrap_or(3600);
        Ok((Secret(t.access_token), Duration::from_secs(secs)))
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(300).collect()
}

/// An authenticated JSON REST client with retries.
#[derive(Debug)]
pub struct Rest {
    /// `Azure`, `GCP`.
    pub provider: &'static str,
    http: reqwest::Client,
    auth: Auth,
    /// Retries after throttling / server errors.
    pub max_retries: u32,
    /// Longest wait honoured for one `Retry-After`.
    pub max_retry_wait: Duration,
}

/// Refuse requests that could delete a key or destroy key material (defence in depth: no code
/// path builds one, and this check makes sure none ever goes out).
pub fn guard(method: &Method, url: &str) -> Result<(), RespondError> {
    let path = url.split('?').next().unwrap_or(url);
    let bad = method.as_str() == "DELETE"
        || path.ends_with(":destroy")
        || path.contains("/deletedkeys/") && path.ends_with("/purge")
        || path.ends_with(":scheduleKeyDeletion");
    if bad {
        return Err(RespondError::Forbidden(format!("{method} {path}")));
    }
    Ok(())
}

impl Rest {
    /// A client over `http` (see [`crate::net::Net`]).
    pub fn new(
        provider: &'static str,
        http: reqwest::Client,
        auth: Auth,
        max_retries: u32,
        max_retry_wait: Duration,
    ) -> Rest {
        Rest {
            provider,
            http,
            auth,
            max_retries,
            max_retry_wait,
        }
    }

    /// Send a JSON request; returns the status and JSON body of a 2xx answer. 401 refreshes the
    /// token and tries once more; 429/5xx wait (`Retry-After`, else exponential) and retry.
    pub async fn call(
        &self,
        op: &str,
        key: &KeyRef,
        method: Method,
        url: &str,
        body: Option<&Value>,
    ) -> Result<(u16, Value), RespondError> {
        guard(&method, url)?;
        let mut refreshed = false;
        let mut attempt = 0u32;
        loop {
            let token = self.auth.token(&self.http).await?;
            let mut req = self
                .http
                .request(method.clone(), url)
                .bearer_auth(&token.0)
                .header("accept", "application/json");
            if let Some(b) = body {
                req = req.json(b);
            }
            let resp = match req.send().await {
                Ok(r) => r,
                Err(e) if attempt < self.max_retries => {
                    tracing::warn!(provider = self.provider, %op, error = %e, "request failed; retrying");
                    attempt += 1;
                    tokio::time::sleep(self.backoff(attempt, None)).await;
                    continue;
                }
                Err(e) => {
                    return Err(self.err(
                        op,
                        key,
                        None,
                        "RequestFailed".into(),
                        e.to_string(),
                        true,
                    ));
                }
            };
            let status = resp.status().as_u16();
            let retry_after = resp
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok());
            let text = resp.text().await.unwrap_or_default();
            if (200..300).contains(&status) {
                let v = if text.trim().is_empty() {
                    Value::Null
                } else {
                    serde_json::from_str(&text).unwrap_or(Value::Null)
                };
                return Ok((status, v));
            }
            if status == 401 && !refreshed {
                tracing::info!(provider = self.provider, %op, "401: refreshing the token and retrying");
                self.auth.invalidate().await;
                refreshed = true;
                continue;
            }
            let retryable =
                status == 429 || status == 500 || status == 502 || status == 503 || status == 504;
            if retryable && attempt < self.max_retries {
                attempt += 1;
                let wait = self.backoff(attempt, retry_after);
                tracing::warn!(provider = self.provider, %op, status, wait_ms = wait.as_millis() as u64, "throttled; retrying");
                tokio::time::sleep(wait).await;
                continue;
            }
            let (code, message) = parse_error(&text);
            return Err(self.err(op, key, Some(status), code, message, retryable));
        }
    }

    fn backoff(&self, attempt: u32, retry_after: Option<u64>) -> Duration {
        let d = match retry_after {
            Some(s) => Duration::from_secs(s),
            None => Duration::from_millis(250u64.saturating_mul(1 << attempt.min(8))),
        };
        d.min(self.max_retry_wait)
    }

    fn err(
        &self,
        op: &str,
        key: &KeyRef,
        status: Option<u16>,
        code: String,
        message: String,
        retryable: bool,
    ) -> RespondError {
        RespondError::Api {
            provider: self.provider,
            operation: op.to_string(),
            key: key.uid.clone(),
            status,
            code,
            message,
            retryable,
        }
    }
}

/// Code and message from Key Vault (`{"error":{"code","message"}}`) or Google
/// (`{"error":{"code":404,"message","status":"NOT_FOUND"}}`) error bodies.
pub fn parse_error(text: &str) -> (String, String) {
    let v: Value = serde_json::from_str(text).unwrap_or(Value::Null);
    let e = v.get("error");
    let code = e
        .and_then(|e| e.get("status").and_then(Value::as_str))
        .or_else(|| e.and_then(|e| e.get("code").and_then(Value::as_str)))
        .map(str::to_string)
        .or_else(|| e.and_then(|e| e.get("code")).map(|c| c.to_string()))
        .unwrap_or_else(|| "Unknown".to_string());
    let message = e
        .and_then(|e| e.get("message").and_then(Value::as_str))
        .map(str::to_string)
        .unwrap_or_else(|| truncate(text));
    (code, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guard_refuses_destruction() {
        assert!(guard(
            &Method::DELETE,
            "https://kv.vault.azure.net/keys/k?api-version=7.4"
        )
        .is_err());
        assert!(guard(&Method::POST, "https://x/v1/projects/p/locations/l/keyRings/r/cryptoKeys/k/cryptoKeyVersions/1:destroy").is_err());
        assert!(guard(&Method::POST, "https://kv/deletedkeys/k/purge").is_err());
        assert!(guard(&Method::POST, "https://x/v1/p/cryptoKeyVersions/1:restore").is_ok());
        assert!(guard(&Method::PATCH, "https://kv/keys/k?api-version=7.4").is_ok());
    }

    #[test]
    fn error_shapes() {
        assert_eq!(
            parse_error(
                r#"{"error":{"code":"KeyNotFound","message":"A key with (name/id) k was not found"}}"#
            ),
            (
                "KeyNotFound".into(),
                "A key with (name/id) k was not found".into()
            )
        );
        assert_eq!(
            parse_error(r#"{"error":{"code":404,"message":"not found","status":"NOT_FOUND"}}"#),
            ("NOT_FOUND".into(), "not found".into())
        );
        assert_eq!(parse_error("oops").0, "Unknown");
        assert_eq!(form_encode("a b/c=d"), "a%20b%2Fc%3Dd");
        assert_eq!(format!("{:?}", Secret("hunter2".into())), "Secret(***)");
    }
}
