//! The destinations: one module per sink type, one enum ([`Destination`]) over them.

mod file;
mod hec;
#[cfg(feature = "kafka")]
mod kafka;
mod sentinel;
mod webhook;

use crate::config::{Format, SinkConfig, TlsConfig};
use crate::{Outgoing, Record, SendError};
use std::time::Duration;

/// A configured destination.
pub(crate) enum Destination {
    Stdout(file::StdoutDest),
    File(file::FileDest),
    Hec(hec::HecDest),
    Sentinel(sentinel::SentinelDest),
    #[cfg(feature = "kafka")]
    Kafka(kafka::KafkaDest),
    Webhook(webhook::WebhookDest),
}

impl Destination {
    pub fn build(cfg: &SinkConfig, name: &str) -> Result<Destination, String> {
        let timeout = Duration::from_millis(cfg.common().retry.request_timeout_ms.max(1));
        Ok(match cfg {
            SinkConfig::Stdout(c) => Destination::Stdout(file::StdoutDest::new(c.format)),
            SinkConfig::File(c) => Destination::File(file::FileDest::new(c)?),
            SinkConfig::SplunkHec(c) => Destination::Hec(hec::HecDest::new(c, timeout)?),
            SinkConfig::Sentinel(c) => {
                Destination::Sentinel(sentinel::SentinelDest::new(c, timeout)?)
            }
            #[cfg(feature = "kafka")]
            SinkConfig::Kafka(c) => Destination::Kafka(kafka::KafkaDest::new(c, name, timeout)?),
            #[cfg(not(feature = "kafka"))]
            SinkConfig::Kafka(_) => {
                let _ = name;
                return Err("this build has no Kafka support (feature `kafka`)".into());
            }
            SinkConfig::Webhook(c) => Destination::Webhook(webhook::WebhookDest::new(c, timeout)?),
        })
    }

    /// Batches that may be in flight at once: `configured` (`batch.max_in_flight`), except
    /// for HEC with indexer acknowledgement, where a batch waiting for its ack holds no
    /// request slot and up to `max_pending_acks` batches may wait.
    pub fn max_batches_in_flight(&self, configured: usize) -> usize {
        match self {
            Destination::Hec(d) => d.max_batches_in_flight(configured),
            _ => configured,
        }
    }

    pub fn encode(&self, item: &Outgoing) -> Result<Record, String> {
        let body = match self {
            Destination::Stdout(d) => encode_line(item, d.format),
            Destination::File(d) => encode_line(item, d.format),
            Destination::Hec(d) => d.encode(item),
            Destination::Sentinel(_) => crate::format::sentinel_row(item)
                .and_then(|v| serde_json::to_string(&v))
                .map_err(|e| e.to_string()),
            #[cfg(feature = "kafka")]
            Destination::Kafka(d) => encode_line(item, d.format),
            Destination::Webhook(d) => d.encode(item),
        }?;
        Ok(record(item, body))
    }

    pub async fn send(&self, recs: &[Record]) -> Result<(), SendError> {
        match self {
            Destination::Stdout(d) => d.send(recs).await,
            Destination::File(d) => d.send(recs).await,
            Destination::Hec(d) => d.send(recs).await,
            Destination::Sentinel(d) => d.send(recs).await,
            #[cfg(feature = "kafka")]
            Destination::Kafka(d) => d.send(recs).await,
            Destination::Webhook(d) => d.send(recs).await,
        }
    }

    pub async fn check(&self) -> Result<String, SendError> {
        match self {
            Destination::Stdout(_) => Ok("stdout".into()),
            Destination::File(d) => d.check().await,
            Destination::Hec(d) => d.check().await,
            Destination::Sentinel(d) => d.check().await,
            #[cfg(feature = "kafka")]
            Destination::Kafka(d) => d.check().await,
            Destination::Webhook(d) => d.check().await,
        }
    }

    pub async fn close(&self) {
        match self {
            #[cfg(feature = "kafka")]
            Destination::Kafka(d) => d.close().await,
            Destination::File(d) => d.close(),
            _ => {}
        }
    }
}

/// A record for an item with its encoded body.
pub(crate) fn record(item: &Outgoing, body: String) -> Record {
    Record {
        id: item.id(),
        rule_id: item.rule_id().to_string(),
        level: item.level(),
        audit: item.is_audit(),
        body,
        enqueued_ms: crate::format::now_millis(),
    }
}

/// One JSON line (without the newline) in the given format.
pub(crate) fn encode_line(item: &Outgoing, format: Format) -> Result<String, String> {
    let r = match (format, item) {
        (Format::Cim, Outgoing::Finding(f)) => serde_json::to_string(&crate::format::cim(f)),
        (Format::Sentinel, _) => {
            crate::format::sentinel_row(item).and_then(|v| serde_json::to_string(&v))
        }
        (Format::Slack, _) => serde_json::to_string(&crate::format::slack(item)),
        _ => item.to_json_string(),
    };
    r.map_err(|e| e.to_string())
}

/// An HTTP client with the sink's TLS settings.
pub(crate) fn http_client(tls: &TlsConfig, timeout: Duration) -> Result<reqwest::Client, String> {
    let mut b = reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .pool_max_idle_per_host(16)
        .user_agent(concat!("kmswatch/", env!("CARGO_PKG_VERSION")));
    if let Some(ca) = &tls.ca_file {
        let pem = std::fs::read(ca).map_err(|e| format!("tls.ca_file {}: {e}", ca.display()))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| format!("tls.ca_file {}: {e}", ca.display()))?;
        if certs.is_empty() {
            return Err(format!(
                "tls.ca_file {}: no certificate in it",
                ca.display()
            ));
        }
        for c in certs {
            b = b.add_root_certificate(c);
        }
    }
    if tls.insecure_skip_verify {
        tracing::warn!("tls.insecure_skip_verify is set: certificates are not checked");
        b = b.danger_accept_invalid_certs(true);
    }
    b.build().map_err(|e| format!("HTTP client: {e}"))
}

/// A transport error (connect, reset, timeout, body) as a retryable send error.
pub(crate) fn transport_error(what: &str, e: reqwest::Error) -> SendError {
    let mut msg = format!("{what}: {e}");
    let mut src = std::error::Error::source(&e);
    while let Some(s) = src {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        src = s.source();
    }
    if e.is_builder() {
        SendError::config(msg)
    } else {
        SendError::retryable(msg)
    }
}

/// `Retry-After` in seconds (the HTTP-date form is ignored).
pub(crate) fn retry_after(h: &reqwest::header::HeaderMap) -> Option<Duration> {
    h.get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(Duration::from_secs_f64)
}

/// Generic classification of an HTTP status.
pub(crate) fn classify_status(status: u16) -> crate::ErrorClass {
    use crate::ErrorClass::*;
    match status {
        408 | 425 | 429 | 500..=599 => Retryable,
        401 | 403 | 404 => Config,
        _ => Fatal,
    }
}

/// Gzip at the fast level.
pub(crate) fn gzip(data: &[u8]) -> Result<Vec<u8>, SendError> {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(
        Vec::with_capacity(data.len() / 4),
        flate2::Compression::fast(),
    );
    enc.write_all(data)
        .and_then(|_| enc.finish())
        .map_err(|e| SendError::retryable(format!("gzip: {e}")))
}
