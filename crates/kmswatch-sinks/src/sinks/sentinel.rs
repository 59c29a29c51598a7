//! Microsoft Sentinel through the Azure Monitor Logs Ingestion API.
//!
//! * `POST {endpoint}/dataCollectionRules/{dcr_immutable_id}/streams/{stream}?api-version=2023-01-01`
//!   with `Authorization: Bearer <token>`, `Content-Type: application/json`, body a JSON array
//!   of rows (see [`crate::format`] for the columns). Success is 204.
//! * Bodies stay under 1 MB (the API's limit per call): a batch is cut, in order, into
//!   requests of at most [`MAX_BODY_BYTES`] (a run of findings or of audit records, each to
//!   its stream); a 413 splits the request in two and sends both halves. When a request
//!   fails, the error says which rows went before it, and the retry sends only the rest.
//! * Every request (token included) ends after `retry.request_timeout_ms`.
//! * 429 and 503 honour `Retry-After`; 401 drops the cached token (the retry fetches a new
//!   one); 403 (missing *Monitoring Metrics Publisher* role) and 404 (unknown DCR or stream)
//!   are config errors; other 4xx are fatal.
//! * Token: client credentials, `POST {authority}/{tenant}/oauth2/v2.0/token` (form:
//!   `grant_type=client_credentials`, `client_id`, `client_secret`, `scope`), or a managed
//!   identity from IMDS (`GET {endpoint}?api-version=2018-02-01&resource=...`, `Metadata: true`).
//!   Cached, refreshed `token_refresh_skew_secs` before `expires_in` runs out.

use super::{classify_status, gzip, http_client, join_path, retry_after, transport_error};
use crate::config::{SentinelAuth, SentinelConfig};
use crate::secret::{percent_encode as urlencode, Secret};
use crate::{ErrorClass, Record, SendError};
use serde_json::Value;
use std::time::Duration;
use tokio::sync::Mutex;
use tokio::time::Instant;

/// Largest request body sent (the Logs Ingestion API limit is 1 MB per call).
pub const MAX_BODY_BYTES: usize = 1_000_000;

struct Token {
    value: Secret,
    refresh_at: Instant,
}

/// A stream's ingestion URL and how messages name it (no secret).
struct Stream {
    url: reqwest::Url,
    shown: String,
}

pub(crate) struct SentinelDest {
    client: reqwest::Client,
    findings: Stream,
    audit: Stream,
    auth: SentinelAuth,
    skew: Duration,
    gzip: bool,
    token: Mutex<Option<Token>>,
}

impl SentinelDest {
    pub fn new(c: &SentinelConfig, timeout: Duration) -> Result<SentinelDest, String> {
        let base = c.endpoint.parse().map_err(|e| format!("endpoint {e}"))?;
        let stream = |stream: &str| {
            let mut url = join_path(
                &base,
                &format!(
                    "/dataCollectionRules/{}/streams/{}",
                    urlencode(&c.dcr_immutable_id),
                    urlencode(stream)
                ),
            );
            url.query_pairs_mut()
                .append_pair("api-version", &c.api_version);
            Stream {
                url,
                shown: format!(
                    "Logs Ingestion {} (DCR {}, stream {stream})",
                    c.endpoint, c.dcr_immutable_id
                ),
            }
        };
        Ok(SentinelDest {
            client: http_client(&c.tls, timeout)?,
            findings: stream(&c.stream),
            audit: stream(&c.audit_stream),
            auth: c.auth.clone(),
            skew: Duration::from_secs(c.token_refresh_skew_secs),
            gzip: c.gzip,
            token: Mutex::new(None),
        })
    }

    async fn fetch_token(&self) -> Result<(Secret, u64), SendError> {
        let (resp, what) = match &self.auth {
            SentinelAuth::ClientSecret {
                tenant_id,
                client_id,
                client_secret,
                authority,
                scope,
            } => {
                let base = authority
                    .parse()
                    .map_err(|e| SendError::config(format!("auth.authority {e}")))?;
                let url = join_path(
                    &base,
                    &format!("/{}/oauth2/v2.0/token", urlencode(tenant_id)),
                );
                let what = format!("Entra ID token endpoint {authority} (tenant {tenant_id})");
                let form = format!(
                    "grant_type=client_credentials&client_id={}&client_secret={}&scope={}",
                    urlencode(client_id),
                    urlencode(client_secret.expose()),
                    urlencode(scope)
                );
                let r = self
                    .client
                    .post(url)
                    .header("Content-Type", "application/x-www-form-urlencoded")
                    .body(form)
                    .send()
                    .await
                    .map_err(|e| transport_error(&what, e))?;
                (r, what)
            }
            SentinelAuth::ManagedIdentity {
                client_id,
                endpoint,
                resource,
            } => {
                let mut url = endpoint
                    .parse()
                    .map_err(|e| SendError::config(format!("auth.endpoint {e}")))?;
                url.query_pairs_mut()
                    .append_pair("api-version", "2018-02-01")
                    .append_pair("resource", resource);
                if let Some(id) = client_id {
                    url.query_pairs_mut().append_pair("client_id", id);
                }
                let what = format!("managed identity endpoint {endpoint}");
                let r = self
                    .client
                    .get(url)
                    .header("Metadata", "true")
                    .send()
                    .await
                    .map_err(|e| transport_error(&what, e))?;
                (r, what)
            }
        };
        let status = resp.status().as_u16();
        let text = resp.text().await.map_err(|e| transport_error(&what, e))?;
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
                ..SendError::retryable(format!("{what} answered {status}: {}", text.trim()))
            });
        }
        let v: Value = serde_json::from_str(&text)
            .map_err(|e| SendError::retryable(format!("{what}: bad JSON: {e}")))?;
        let token = v
            .get("access_token")
            .and_then(Value::as_str)
            .ok_or_else(|| SendError::retryable(format!("{what}: no access_token")))?;
        // expires_in is a number (Entra) or a string (IMDS).
        let expires_in = match v.get("expires_in") {
            Some(Value::Number(n)) => n.as_u64(),
            Some(Value::String(s)) => s.parse().ok(),
            _ => None,
        }
        .unwrap_or(300);
        Ok((Secret::new(token), expires_in))
    }

    async fn token(&self) -> Result<Secret, SendError> {
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
    async fn post(&self, to: &Stream, rows: &[Record]) -> Result<(), (SendError, Option<u16>)> {
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
            .post(to.url.clone())
            .header("Authorization", format!("Bearer {}", token.expose()))
            .header("Content-Type", "application/json");
        if self.gzip {
            body = gzip(&body).map_err(|e| (e, None))?;
            req = req.header("Content-Encoding", "gzip");
        }
        let resp = req
            .body(body)
            .send()
            .await
            .map_err(|e| (transport_error(&to.shown, e), None))?;
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
                ..SendError::retryable(format!("{} answered {status}: {}", to.shown, text.trim()))
            }
            .with_retry_after(ra),
            Some(status),
        ))
    }

    /// Posts rows, halving on 413. The parts go in order; a failure reports how many rows
    /// (from the start) were taken before it.
    async fn post_split(&self, to: &Stream, rows: &[Record]) -> Result<(), (SendError, usize)> {
        let mut stack: Vec<&[Record]> = vec![rows];
        let mut done = 0;
        while let Some(part) = stack.pop() {
            match self.post(to, part).await {
                Ok(()) => done += part.len(),
                Err((_, Some(413))) if part.len() > 1 => {
                    let (a, b) = part.split_at(part.len() / 2);
                    stack.push(b);
                    stack.push(a);
                }
                Err((e, _)) => return Err((e, done)),
            }
        }
        Ok(())
    }

    /// Sends the records in order: runs of findings (or of audit records) to their stream,
    /// cut into bodies under [`MAX_BODY_BYTES`]. On failure the error's `delivered` lists the
    /// records taken before it (a prefix), which a retry does not send again.
    pub async fn send(&self, recs: &[Record]) -> Result<(), SendError> {
        let mut start = 0;
        while start < recs.len() {
            let audit = recs.get(start).is_some_and(|r| r.audit);
            // 2 bytes of brackets, 1 comma per row; at least one row per body.
            let mut end = start;
            let mut size = 2;
            while let Some(r) = recs.get(end) {
                let add = r.body.len() + 1;
                if r.audit != audit || (end > start && size + add > MAX_BODY_BYTES) {
                    break;
                }
                size += add;
                end += 1;
            }
            let to = if audit { &self.audit } else { &self.findings };
            if let Err((e, done)) = self
                .post_split(to, recs.get(start..end).unwrap_or_default())
                .await
            {
                return Err(e.with_delivered(0..start + done));
            }
            start = end;
        }
        Ok(())
    }

    /// Fetches a token and posts an empty array to the findings stream (204 when the DCR,
    /// stream and role assignment are right).
    pub async fn check(&self) -> Result<String, SendError> {
        self.token().await?;
        self.post(&self.findings, &[]).await.map_err(|(e, _)| e)?;
        Ok(format!(
            "token fetched; {} accepts rows",
            self.findings.shown
        ))
    }
}
