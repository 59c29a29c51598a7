//! Webhook: one `POST` per item, `Content-Type: application/json`, the body signed with
//! `X-Kmswatch-Signature: sha256=<hex HMAC-SHA256(secret, body)>` when a secret is set, and
//! `X-Kmswatch-Id: <finding uid>`. `format: slack` sends `{"text": "..."}` (a Slack or Teams
//! incoming-webhook URL accepts it). 2xx is success; 429/5xx are retried (`Retry-After`
//! honoured), 401/403/404 are config errors, other 4xx fatal. Every request ends after
//! `retry.request_timeout_ms`; when one fails, the error lists the items posted before it,
//! and the retry resumes at the failed one.
//!
//! The URL is a secret (Slack, Teams and most webhook URLs carry their token in the path or
//! query): messages show `scheme://host:port/<redacted>` only, and so do the header values.

use super::{classify_status, http_client, retry_after, transport_error};
use crate::config::{Format, Secret, SecretUrl, WebhookConfig};
use crate::{Outgoing, Record, SendError};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::time::Duration;

pub(crate) struct WebhookDest {
    client: reqwest::Client,
    url: reqwest::Url,
    /// `webhook scheme://host:port/<redacted>`, for messages.
    shown: String,
    secret: Option<Secret>,
    format: Format,
    headers: Vec<(String, Secret)>,
}

/// `sha256=<hex>` of the body under the key.
pub fn signature(secret: &str, body: &[u8]) -> String {
    // HMAC accepts keys of any length; new_from_slice cannot fail for HMAC.
    match Hmac::<Sha256>::new_from_slice(secret.as_bytes()) {
        Ok(mut mac) => {
            mac.update(body);
            format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
        }
        Err(_) => String::new(),
    }
}

impl WebhookDest {
    pub fn new(c: &WebhookConfig, timeout: Duration) -> Result<WebhookDest, String> {
        Ok(WebhookDest {
            client: http_client(&c.tls, timeout)?,
            url: c.url.parse().map_err(|e| format!("url {e}"))?,
            shown: format!("webhook {}", SecretUrl::redacted(&c.url)),
            secret: c.secret.clone(),
            format: c.format,
            headers: c
                .headers
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        })
    }

    pub fn encode(&self, item: &Outgoing) -> Result<String, String> {
        super::encode_line(item, self.format)
    }

    async fn post(&self, r: &Record) -> Result<(), SendError> {
        let mut req = self
            .client
            .post(self.url.clone())
            .header("Content-Type", "application/json")
            .header("X-Kmswatch-Id", &r.id);
        for (k, v) in &self.headers {
            req = req.header(k, v.expose());
        }
        if let Some(s) = &self.secret {
            req = req.header(
                "X-Kmswatch-Signature",
                signature(s.expose(), r.body.as_bytes()),
            );
        }
        let resp = req
            .body(r.body.clone())
            .send()
            .await
            .map_err(|e| transport_error(&self.shown, e))?;
        let status = resp.status().as_u16();
        if (200..300).contains(&status) {
            return Ok(());
        }
        let ra = retry_after(resp.headers());
        let text = resp.text().await.unwrap_or_default();
        Err(SendError {
            class: classify_status(status),
            ..SendError::retryable(format!(
                "{} answered {status} to item {}: {}",
                self.shown,
                r.id,
                text.trim()
            ))
        }
        .with_retry_after(ra))
    }

    /// Posts the items in order; on failure the error lists the ones posted before it.
    pub async fn send(&self, recs: &[Record]) -> Result<(), SendError> {
        for (i, r) in recs.iter().enumerate() {
            self.post(r).await.map_err(|e| e.with_delivered(0..i))?;
        }
        Ok(())
    }

    /// A `HEAD` request: any HTTP answer means the endpoint is reachable.
    pub async fn check(&self) -> Result<String, SendError> {
        let resp = self
            .client
            .head(self.url.clone())
            .send()
            .await
            .map_err(|e| transport_error(&self.shown, e))?;
        Ok(format!(
            "{} reachable (HEAD answered {})",
            self.shown,
            resp.status()
        ))
    }
}
