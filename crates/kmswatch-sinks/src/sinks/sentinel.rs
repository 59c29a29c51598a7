//! Microsoft Sentinel through the Azure Monitor Logs Ingestion API.
//!
//! * `POST {endpoint}/dataCollectionRules/{dcr_immutable_id}/streams/{stream}?api-version=2023-01-01`
//!   with `Authorization: Bearer <token>`, `Content-Type: application/json`, body a JSON array
//!   of rows (see [`crate::format`] for the columns). Success is 204.
//! * Bodies stay under 1 MB (the API's limit per call): a batch is cut into requests of at
//!   most [`MAX_BODY_BYTES`]; a 413 splits the request in two and sends both halves.
//! * 429 and 503 honour `Retry-After`; 401 drops the cached token (the retry fetches a new
//!   one); 403 (missing *Monitoring Metrics Publisher* role) and 404 (unknown DCR or stream)
//!   are config errors; other 4xx are fatal.
//! * Token: client credentials, `POST {authority}/{tenant}/oauth2/v2.0/token` (form:
//!   `grant_type=client_credentials`, `client_id`, `client_secret`, `scope`), or a managed
//!   identity from IMDS (`GET {endpoint}?api-version=2018-02-01&resource=...`, `Metadata: true`).
//!   Cached, refreshed `token_refresh_skew_secs` before `expires_in` runs out.

use super::{classify_status, gzip, http_client, retry_after, transport_error};
use crate::config::{SentinelAuth, SentinelConfig};
use crate::{ErrorClass, Record, SendError};
use serde_json::Value;
use std::time::Duration;
use tokio::sync::Mutex;
use tokio::time::Instant;

/// Largest request body sent (the Logs Ingestion API limit is 1 MB per call).
pub const MAX_BODY_BYTES: usize = 1_000_000;

struct Token {
    value: String,
    refresh_at: Instant,
}

pub(crate) struct SentinelDest {
    client: reqwest::Client,
    findings_url: String,
    audit_url: String,
    auth: SentinelAuth,
    skew: Duration,
    gzip: bool,
    token: Mutex<Option<Token>>,
}

fn urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

impl SentinelDest {
    pub fn new(c: &SentinelConfig, timeout: Duration) -> Result<SentinelDest, String> {
        let base = c.endpoint.trim_end_matches('/');
        let url = |stream: &str| {
            format!(
                "{base}/dataCollectionRules/{}/streams/{}?api-version={}",
                urlencode(&c.dcr_immutable_id),
                urlencode(stream),
                urlencode(&c.api_version)
            )
        };
        Ok(SentinelDest {
            client: http_client(&c.tls, timeout)?,
            findings_url: url(&c.stream),
            audit_url: url(&c.audit_stream),
            auth: c.auth.clone(),
            skew: Duration::from_secs(c.token_refresh_skew_secs),
            gzip: c.gzip,
            token: Mutex::new(None),
        })
    }

    async fn fetch_token(&self) -> Result<(String, u64), SendError> {
        let (resp, what) = match &self.auth {
            SentinelAuth::ClientSecret {
                tenant_id,
                client_id,
                client_secret,
                authority,
                scope,
            } => {
                let url = format!(
                    "{}/{}/oauth2/v2.0/token",
                    authority.trim_end_matches('/'),
                    urlencode(tenant_id)
                );
                let form = format!(
                    "grant_type=client_credentials&client_id={}&client_secret={}&scope={}",
                    urlencode(client_id),
                    urlencode(client_secret.expose()),
                    urlencode(scope)
                );
                let r = self
                    .client
                    .post(&url)
                    .header("Content-Type", "application/x-www-form-urlencoded")
                    .body(form)
                    .send()
                    .await
                    .map_err(|e| transport_error("Entra ID token", e))?;
                (r, url)
            }
            SentinelAuth::ManagedIdentity {
                client_id,
                endpoint,
                resource,
            } => {
                let mut url = format!(
                    "{endpoint}?api-version=2018-02-01&resource={}",
                    urlencode(resource)
                );
                if let Some(id) = client_id {
                    url.push_str(&format!("&client_id={}", urlencode(id)));
                }
                let r = self
                    .client
                    .get(&url)
                    .header("Metadata", "true")
                    .send()
                    .await
                    .map_err(|e| transport_error("managed identity token", e))?;
                (r, endpoint.clone())
            }
        };
        let status = resp.status().as_u16();
        let text = resp
            .text()
            .await
            .map_err(|e| transport_error("token response", e))?;
        if status != 200 {
            // 400/401 from Entra: wrong tenant, client or secret.
            let class = match status {
                400 | 401 | 403 => ErrorClass::Config,
                s => classify_status(s),
            };
            return Err(SendError {
                class: if class == ErrorClass::Fatal {
                    ErrorClass::Config
                } else {
                    class
                },
                message: format!("token endpoint {what} answered {status}: {}", text.trim()),
                retry_after: None,
            });
        }
        let v: Value = serde_json::from_str(&text)
            .map_err(|e| SendError::retryable(format!("token endpoint {what}: bad JSON: {e}")))?;
        let token = v
            .get("access_token")
            .and_then(Value::as_str)
            .ok_or_else(|| {
                SendError::retryable(format!("token endpoint {what}: no access_token"))
            })?;
        // expires_in is a number (Entra) or a string (IMDS).
        let expires_in = match v.get("expires_in") {
            Some(Value::Number(n)) => n.as_u64(),
            Some(Value::String(s)) => s.parse().ok(),
            _ => None,
        }
        .unwrap_or(300);
        Ok((token.to_string(), expires_in))
    }

    async fn token(&self) -> Result<String, SendError> {
        let mut g = self.token.lock().await;
        if let Some(t) = g.as_ref() {
            if Instant::now() < t.refresh_at {
                return Ok(t.value.clone());
            }
        }
        let (value, expires_in) = self.fetch_token().await?;
        let life = Duration::from_secs(expires_in);
        // Refresh `skew` before expiry, but never sooner than half the lifetime.
        let refresh_in = life.saturating_sub(self.skew).max(life / 2);
        *g = Some(Token {
            value: value.clone(),
            refresh_at: Instant::now() + refresh_in,
        });
        Ok(value)
    }

    /// One request; a failure carries the HTTP status when there was one.
    async fn post(&self, url: &str, rows: &[&Record]) -> Result<(), (SendError, Option<u16>)> {
        let mut body = Vec::with_capacity(rows.iter().map(|r| r.body.len() + 1).sum::<usize>() + 2);
        body.push(b'[');
        for (i, r) in rows.iter().enumerate() {
            if i > 0 {
                body.push(b',');
            }
            body.extend_from_slice(r.body.as_bytes());
        }
        body.push(b']');
        let token = self.token().await.map_err(|e| (e, None))?;
        let mut req = self
            .client
            .post(url)
            .header("Authorization", format!("Bearer {token}"))
            .header("Content-Type", "application/json");
        if self.gzip {
            body = gzip(&body).map_err(|e| (e, None))?;
            req = req.header("Content-Encoding", "gzip");
        }
        let resp = req
            .body(body)
            .send()
            .await
            .map_err(|e| (transport_error("Logs Ingestion", e), None))?;
        let status = resp.status().as_u16();
        if (200..300).contains(&status) {
            return Ok(());
        }
        let ra = retry_after(resp.headers());
        let text = resp.text().await.unwrap_or_default();
        let class = match status {
            401 => {
                *self.token.lock().await = None;
                ErrorClass::Retryable
            }
            413 => ErrorClass::Fatal,
            s => classify_status(s),
        };
        Err((
            SendError {
                class,
                message: format!("Logs Ingestion {url} answered {status}: {}", text.trim()),
                retry_after: ra,
            },
            Some(status),
        ))
    }

    /// Posts rows, halving on 413.
    async fn post_split(&self, url: &str, rows: &[&Record]) -> Result<(), SendError> {
        let mut stack: Vec<&[&Record]> = vec![rows];
        while let Some(part) = stack.pop() {
            match self.post(url, part).await {
                Ok(()) => {}
                Err((_, Some(413))) if part.len() > 1 => {
                    let (a, b) = part.split_at(part.len() / 2);
                    stack.push(b);
                    stack.push(a);
                }
                Err((e, _)) => return Err(e),
            }
        }
        Ok(())
    }

    pub async fn send(&self, recs: &[Record]) -> Result<(), SendError> {
        for (audit, url) in [(false, &self.findings_url), (true, &self.audit_url)] {
            let rows: Vec<&Record> = recs.iter().filter(|r| r.audit == audit).collect();
            // Cut into bodies under the limit (2 bytes of brackets, 1 comma per row).
            let mut start = 0;
            let mut size = 2;
            for (i, r) in rows.iter().enumerate() {
                let add = r.body.len() + 1;
                if i > start && size + add > MAX_BODY_BYTES {
                    self.post_split(url, rows.get(start..i).unwrap_or_default())
                        .await?;
                    start = i;
                    size = 2;
                }
                size += add;
            }
            if start < rows.len() {
                self.post_split(url, rows.get(start..).unwrap_or_default())
                    .await?;
            }
        }
        Ok(())
    }

    /// Fetches a token and posts an empty array to the findings stream (204 when the DCR,
    /// stream and role assignment are right).
    pub async fn check(&self) -> Result<String, SendError> {
        self.token().await?;
        self.post(&self.findings_url, &[])
            .await
            .map_err(|(e, _)| e)?;
        Ok(format!("token fetched; {} accepts rows", self.findings_url))
    }
}
