//! The destinations: one module per sink type, one enum ([`Destination`]) over them.

mod file;
mod hec;
#[cfg(feature = "kafka")]
mod kafka;
mod sentinel;
mod webhook;

use crate::config::{Format, KafkaProperties, SentinelAuth, SinkConfig, TlsConfig};
use crate::secret::Redactor;
use crate::{Outgoing, Record, SendError};
use std::time::Duration;

/// What a destination is built for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Delivering (background tasks such as the HEC ack poller run).
    Run,
    /// Only `check` (`SinkSet::check_connect_configs`): no task is started.
    CheckOnly,
}

/// A configured destination and the redactor that cleans everything it says.
pub(crate) struct Destination {
    kind: Kind,
    redactor: Redactor,
}

enum Kind {
    Stdout(file::StdoutDest),
    File(file::FileDest),
    Hec(hec::HecDest),
    Sentinel(sentinel::SentinelDest),
    #[cfg(feature = "kafka")]
    Kafka(kafka::KafkaDest),
    Webhook(webhook::WebhookDest),
}

/// Acknowledgements a destination is waiting for (HEC indexer acks, Kafka delivery reports).
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct AckBacklog {
    /// Items in requests taken but not yet acknowledged.
    pub items: u64,
    /// Age of the oldest of those requests, seconds (0: none, or unknown).
    pub oldest_age_secs: f64,
}

/// Every secret of a sink's config, for its [`Redactor`].
fn redactor(cfg: &SinkConfig) -> Redactor {
    let mut r = Redactor::default();
    match cfg {
        SinkConfig::Stdout(_) | SinkConfig::File(_) => {}
        SinkConfig::SplunkHec(c) => {
            r.url(&c.endpoint).secret(c.token.expose());
        }
        SinkConfig::Sentinel(c) => {
            r.url(&c.endpoint);
            match &c.auth {
                SentinelAuth::ClientSecret {
                    client_secret,
                    authority,
                    ..
                } => {
                    r.url(authority).secret(client_secret.expose());
                }
                SentinelAuth::ManagedIdentity { endpoint, .. } => {
                    r.url(endpoint);
                }
            }
        }
        SinkConfig::Kafka(c) => {
            if let Some(p) = &c.sasl_password {
                r.secret(p.expose());
            }
            for (k, v) in &c.properties.0 {
                if KafkaProperties::is_secret(k) {
                    r.secret(v);
                }
            }
        }
        SinkConfig::Webhook(c) => {
            r.url(&c.url);
            if let Some(s) = &c.secret {
                r.secret(s.expose());
            }
            for v in c.headers.values() {
                r.secret(v.expose());
            }
        }
    }
    r
}

impl Destination {
    pub fn build(cfg: &SinkConfig, name: &str, mode: Mode) -> Result<Destination, String> {
        let redactor = redactor(cfg);
        let timeout = Duration::from_millis(cfg.common().retry.request_timeout_ms.max(1));
        let kind = (|| {
            Ok(match cfg {
                SinkConfig::Stdout(c) => Kind::Stdout(file::StdoutDest::new(c.format)),
                SinkConfig::File(c) => Kind::File(file::FileDest::new(c)?),
                SinkConfig::SplunkHec(c) => {
                    Kind::Hec(hec::HecDest::new(c, timeout, mode, redactor.clone())?)
                }
                SinkConfig::Sentinel(c) => Kind::Sentinel(sentinel::SentinelDest::new(c, timeout)?),
                #[cfg(feature = "kafka")]
                SinkConfig::Kafka(c) => Kind::Kafka(kafka::KafkaDest::new(c, name, timeout)?),
                #[cfg(not(feature = "kafka"))]
                SinkConfig::Kafka(_) => {
                    let _ = name;
                    return Err("this build has no Kafka support (feature `kafka`)".to_string());
                }
                SinkConfig::Webhook(c) => Kind::Webhook(webhook::WebhookDest::new(c, timeout)?),
            })
        })()
        .map_err(|e: String| redactor.scrub(&e))?;
        Ok(Destination { kind, redactor })
    }

    /// Acknowledgements awaited now (`None`: the destination acknowledges synchronously).
    pub fn ack_backlog(&self) -> Option<AckBacklog> {
        match &self.kind {
            Kind::Hec(d) => d.ack_backlog(),
            #[cfg(feature = "kafka")]
            Kind::Kafka(d) => Some(d.ack_backlog()),
            _ => None,
        }
    }

    /// Batches that may be in flight at once: `configured` (`batch.max_in_flight`), except
    /// for HEC with indexer acknowledgement, where a batch waiting for its ack holds no
    /// request slot and up to `max_pending_acks` batches may wait.
    pub fn max_batches_in_flight(&self, configured: usize) -> usize {
        match &self.kind {
            Kind::Hec(d) => d.max_batches_in_flight(configured),
            _ => configured,
        }
    }

    pub fn encode(&self, item: &Outgoing) -> Result<Record, String> {
        let body = match &self.kind {
            Kind::Stdout(d) => encode_line(item, d.format),
            Kind::File(d) => encode_line(item, d.format),
            Kind::Hec(d) => d.encode(item),
            Kind::Sentinel(_) => crate::format::sentinel_row(item)
                .and_then(|v| serde_json::to_string(&v))
                .map_err(|e| e.to_string()),
            #[cfg(feature = "kafka")]
            Kind::Kafka(d) => encode_line(item, d.format),
            Kind::Webhook(d) => d.encode(item),
        }?;
        Ok(record(item, body))
    }

    /// Sends one request's records; the error (if any) passed through the redactor.
    pub async fn send(&self, recs: &[Record]) -> Result<(), SendError> {
        let r = match &self.kind {
            Kind::Stdout(d) => d.send(recs).await,
            Kind::File(d) => d.send(recs).await,
            Kind::Hec(d) => d.send(recs).await,
            Kind::Sentinel(d) => d.send(recs).await,
            #[cfg(feature = "kafka")]
            Kind::Kafka(d) => d.send(recs).await,
            Kind::Webhook(d) => d.send(recs).await,
        };
        r.map_err(|e| self.redactor.error(e))
    }

    /// The connect check; its report (either way) passed through the redactor.
    pub async fn check(&self) -> Result<String, SendError> {
        let r = match &self.kind {
            Kind::Stdout(_) => Ok("stdout".into()),
            Kind::File(d) => d.check().await,
            Kind::Hec(d) => d.check().await,
            Kind::Sentinel(d) => d.check().await,
            #[cfg(feature = "kafka")]
            Kind::Kafka(d) => d.check().await,
            Kind::Webhook(d) => d.check().await,
        };
        r.map(|ok| self.redactor.scrub(&ok))
            .map_err(|e| self.redactor.error(e))
    }

    pub async fn close(&self) {
        match &self.kind {
            #[cfg(feature = "kafka")]
            Kind::Kafka(d) => d.close().await,
            Kind::File(d) => d.close(),
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

/// A transport error (connect, reset, timeout, body) as a retryable send error. The
/// request's URL is cut from reqwest's message (`what` names the destination, redacted).
pub(crate) fn transport_error(what: &str, e: reqwest::Error) -> SendError {
    let timed_out = e.is_timeout();
    let builder = e.is_builder();
    let e = e.without_url();
    let mut msg = format!("{what}: {e}");
    let mut src = std::error::Error::source(&e);
    while let Some(s) = src {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        src = s.source();
    }
    if timed_out {
        msg.push_str(" (no complete answer within retry.request_timeout_ms)");
    }
    if builder {
        SendError::config(msg)
    } else {
        SendError::retryable(msg)
    }
}

/// `base` (path and query kept) with `suffix` appended to its path.
pub(crate) fn join_path(base: &reqwest::Url, suffix: &str) -> reqwest::Url {
    let mut u = base.clone();
    let path = format!("{}{suffix}", base.path().trim_end_matches('/'));
    u.set_path(&path);
    u
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
