//! Splunk HTTP Event Collector.
//!
//! * `POST {endpoint}/services/collector/event`, `Authorization: Splunk <token>`, body = the
//!   batch's event objects concatenated (`{"time":..,"host":..,"source":..,"sourcetype":..,
//!   "index":..,"event":{..}}{..}`), gzipped with `Content-Encoding: gzip` when `gzip: true`.
//! * Every request carries `X-Splunk-Request-Channel: <UUID>` (one per sink instance), which
//!   indexer acknowledgement requires. With `indexer_ack: true` the response's `ackId` is
//!   polled with `POST /services/collector/ack` `{"acks":[ids]}` (one poller per sink, all
//!   pending ids per poll) until Splunk answers `true`; only then is the batch delivered.
//!   Splunk answers `false` both for an ack still pending and for one it will never give
//!   (an `ackId` lost in a restart, events dropped before indexing), so the client decides
//!   when to stop waiting: an ack that does not come within `ack_timeout_secs` is an
//!   [`crate::Unacked`] send error. The worker re-sends such a batch after a back-off (same
//!   finding ids: at-least-once) at most `retry.max_unacked_resends` times, then spools it
//!   and marks the sink degraded (see `worker.rs`).
//! * Acks are pipelined: at most `batch.max_in_flight` event requests run at once, and at
//!   most `max_pending_acks` batches wait for their ack. A batch takes its ack slot *before*
//!   it is posted, so while acks are overdue nothing more is posted on the channel
//!   (backpressure, bounded memory) and Splunk's per-channel pending-ack limit (code 27,
//!   "ACK channel is at capacity") is not run into. A waiting batch holds no request slot.
//! * The ack poll backs off (doubling up to 10 s) while it fails (transport errors, 503
//!   codes 18–20 "ack service unavailable", 429 code 27); a poll answered 400 code 14 ("ACK
//!   is disabled") fails the waiting batches as a config error.
//! * Answers, by HEC status code (`{"text":..,"code":N}`, the full documented list 0–27;
//!   Splunk's *Troubleshoot HTTP Event Collector* page):
//!
//! | code | HTTP | text | class |
//! |---|---|---|---|
//! | 0 | 200 | Success | delivered |
//! | 1 | 403 | Token disabled | config |
//! | 2 | 401 | Token is required | config |
//! | 3 | 401 | Invalid authorization | config |
//! | 4 | 403 | Invalid token | config |
//! | 5 | 400 | No data | fatal |
//! | 6 | 400 | Invalid data format | fatal (the batch is split to find the bad event) |
//! | 7 | 400 | Incorrect index | config (the token may not write that index) |
//! | 8 | 500 | Internal server error | retryable |
//! | 9 | 503 | Server is busy | retryable (`Retry-After` honoured when given) |
//! | 10 | 400 | Data channel is missing | retryable |
//! | 11 | 400 | Invalid data channel | retryable |
//! | 12 | 400 | Event field is required | fatal |
//! | 13 | 400 | Event field cannot be blank | fatal |
//! | 14 | 400 | ACK is disabled | config (`indexer_ack: true` needs the token's ack on) |
//! | 15 | 400 | Error in handling indexed fields | fatal |
//! | 16 | 400 | Query string authorization is not enabled | config |
//! | 17 | 200 | HEC is healthy | (health endpoint) |
//! | 18–20 | 503 | HEC is unhealthy (queues full, ack service unavailable) | retryable |
//! | 21 | 400 | Invalid token (health endpoint) | config |
//! | 22 | 400 | Token disabled (health endpoint) | config |
//! | 23 | 503 | Server is shutting down | retryable |
//! | 24 | 200 | HEC queue is approaching its capacity limit | delivered (warning logged) |
//! | 25 | 200 | HEC ACK is approaching its capacity limit | delivered (warning logged) |
//! | 26 | 429 | HEC queue is at capacity | retryable |
//! | 27 | 429 | HEC ACK channel is at capacity | retryable |
//!
//! Without a known code: 408, 429, 5xx and transport errors (refused, reset, timeout) are
//! retryable, 401/403/404 config, other 4xx fatal.

use super::{
    classify_status, gzip, http_client, join_path, retry_after, transport_error, AckBacklog, Mode,
};
use crate::config::{Format, HecConfig};
use crate::format::Template;
use crate::secret::{Redactor, Secret};
use crate::{ErrorClass, Outgoing, Record, SendError, Unacked};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::io::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{oneshot, Notify};
use tokio::time::Instant;

/// The HEC class of a failing status code (`None`: success codes and unknown codes, which
/// the HTTP status then classifies).
pub(crate) fn classify_code(code: i64) -> Option<ErrorClass> {
    Some(match code {
        1..=4 | 7 | 14 | 16 | 21 | 22 => ErrorClass::Config,
        5 | 6 | 12 | 13 | 15 => ErrorClass::Fatal,
        8..=11 | 18..=20 | 23 | 26 | 27 => ErrorClass::Retryable,
        _ => return None,
    })
}

/// Codes that accompany an accepted request: 0 success, 17 healthy, and the capacity
/// warnings 24 and 25 (HTTP 200: the data was taken).
pub(crate) fn is_success_code(code: i64) -> bool {
    matches!(code, 0 | 17 | 24 | 25)
}

/// Did HEC accept the request? Logs the capacity warnings (`at` names the endpoint,
/// redacted; `text` is HEC's answer, already scrubbed).
fn accepted(status: u16, code: Option<i64>, text: &str, at: &str) -> bool {
    if !(200..300).contains(&status) {
        return false;
    }
    match code {
        None | Some(0) | Some(17) => true,
        Some(c) if is_success_code(c) => {
            tracing::warn!(endpoint = at, code = c, answer = %text.trim(), "HEC accepted the request but is near capacity");
            true
        }
        Some(_) => false,
    }
}

/// Longest wait between ack polls while they fail.
const MAX_POLL_BACKOFF: Duration = Duration::from_secs(10);

/// An HEC answer: HTTP status, `Retry-After`, text (scrubbed of the sink's secrets), and the
/// JSON with its `code` when it is JSON.
struct Answer {
    status: u16,
    retry_after: Option<Duration>,
    text: String,
    json: Option<Value>,
    code: Option<i64>,
}

impl Answer {
    /// Sends `req` and reads the answer; `what` names the request in transport errors.
    async fn of(
        req: reqwest::RequestBuilder,
        what: &str,
        redactor: &Redactor,
    ) -> Result<Answer, SendError> {
        let resp = req.send().await.map_err(|e| transport_error(what, e))?;
        let status = resp.status().as_u16();
        let retry_after = retry_after(resp.headers());
        let text = resp.text().await.map_err(|e| transport_error(what, e))?;
        let text = redactor.scrub(&text);
        let json: Option<Value> = serde_json::from_str(&text).ok();
        let code = json
            .as_ref()
            .and_then(|v| v.get("code"))
            .and_then(Value::as_i64);
        Ok(Answer {
            status,
            retry_after,
            text,
            json,
            code,
        })
    }

    /// Did HEC accept the request? (Logs the capacity warnings.)
    fn accepted(&self, at: &str) -> bool {
        accepted(self.status, self.code, &self.text, at)
    }

    /// The refusal as a send error, classified by HEC code, else by HTTP status.
    fn refusal(&self, what: &str) -> SendError {
        SendError {
            class: self
                .code
                .and_then(classify_code)
                .unwrap_or_else(|| classify_status(self.status)),
            ..SendError::retryable(format!(
                "{what} answered {}: {}",
                self.status,
                self.text.trim()
            ))
        }
        .with_retry_after(self.retry_after)
    }
}

/// Initial buffer of an encoded event (a typical finding is 1–2 kB of JSON).
const ENCODE_CAPACITY: usize = 2048;

/// A batch waiting for its ack.
struct Waiter {
    tx: oneshot::Sender<Result<(), SendError>>,
    posted: Instant,
    items: usize,
}

type AckWaiters = HashMap<u64, Waiter>;

struct AckPoller {
    pending: Mutex<AckWaiters>,
    wake: Notify,
}

/// The three collector endpoints.
struct Endpoints {
    event: reqwest::Url,
    ack: reqwest::Url,
    health: reqwest::Url,
}

pub(crate) struct HecDest {
    client: reqwest::Client,
    urls: Arc<Endpoints>,
    /// The endpoint as printed: `scheme://host:port` ([`crate::SecretUrl`]).
    shown: Arc<str>,
    auth: Secret,
    channel: String,
    gzip: bool,
    format: Format,
    index: Option<Template>,
    source: Template,
    sourcetype: Template,
    audit_sourcetype: String,
    host: Option<Template>,
    /// All templates are static: no per-item JSON needed for them.
    static_meta: bool,
    indexer_ack: bool,
    ack_timeout: Duration,
    acks: Option<Arc<AckPoller>>,
    /// Concurrent event requests (`batch.max_in_flight`); an ack wait holds no permit.
    posts: tokio::sync::Semaphore,
    /// One permit per batch posted and not yet acknowledged (`max_pending_acks`), taken
    /// before the post.
    ack_slots: tokio::sync::Semaphore,
    max_pending_acks: usize,
    redactor: Redactor,
}

fn lock(m: &Mutex<AckWaiters>) -> std::sync::MutexGuard<'_, AckWaiters> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl HecDest {
    pub fn new(
        c: &HecConfig,
        timeout: Duration,
        mode: Mode,
        redactor: Redactor,
    ) -> Result<HecDest, String> {
        let client = http_client(&c.tls, timeout)?;
        let base = c.endpoint.parse().map_err(|e| format!("endpoint {e}"))?;
        let t = |s: &str, key: &str| Template::parse(s).map_err(|e| format!("{key}: {e}"));
        let index = c.index.as_deref().map(|s| t(s, "index")).transpose()?;
        let host = c.host.as_deref().map(|s| t(s, "host")).transpose()?;
        let source = t(&c.source, "source")?;
        let sourcetype = t(&c.sourcetype, "sourcetype")?;
        let static_meta = index.as_ref().is_none_or(|t| t.as_static().is_some())
            && host.as_ref().is_none_or(|t| t.as_static().is_some())
            && source.as_static().is_some()
            && sourcetype.as_static().is_some();
        let mut d = HecDest {
            client,
            urls: Arc::new(Endpoints {
                event: join_path(&base, "/services/collector/event"),
                ack: join_path(&base, "/services/collector/ack"),
                health: join_path(&base, "/services/collector/health"),
            }),
            shown: c.endpoint.redacted().into(),
            auth: Secret::new(format!("Splunk {}", c.token.expose())),
            channel: uuid::Uuid::new_v4().to_string(),
            gzip: c.gzip,
            format: c.format,
            index,
            source,
            sourcetype,
            audit_sourcetype: c.audit_sourcetype.clone(),
            host,
            static_meta,
            indexer_ack: c.indexer_ack,
            ack_timeout: Duration::from_secs(c.ack_timeout_secs.max(1)),
            acks: None,
            posts: tokio::sync::Semaphore::new(c.batch.max_in_flight.max(1)),
            ack_slots: tokio::sync::Semaphore::new(c.max_pending_acks.max(1)),
            max_pending_acks: c.max_pending_acks.max(1),
            redactor,
        };
        if c.indexer_ack && mode == Mode::Run {
            let poller = Arc::new(AckPoller {
                pending: Mutex::new(HashMap::new()),
                wake: Notify::new(),
            });
            d.acks = Some(poller.clone());
            let ctx = PollCtx {
                client: d.client.clone(),
                urls: d.urls.clone(),
                shown: d.shown.clone(),
                auth: d.auth.clone(),
                channel: d.channel.clone(),
                every: Duration::from_millis(c.ack_poll_interval_ms.max(10)),
                redactor: d.redactor.clone(),
            };
            let weak = Arc::downgrade(&poller);
            drop(poller);
            tokio::spawn(poll_acks(weak, ctx));
        }
        Ok(d)
    }

    /// See `Destination::max_batches_in_flight`.
    pub fn max_batches_in_flight(&self, configured: usize) -> usize {
        if self.indexer_ack {
            configured.max(self.max_pending_acks)
        } else {
            configured
        }
    }

    /// Batches posted and awaiting their ack.
    pub fn ack_backlog(&self) -> Option<AckBacklog> {
        let poller = self.acks.as_ref()?;
        let g = lock(&poller.pending);
        let now = Instant::now();
        Some(AckBacklog {
            items: g.values().map(|w| w.items as u64).sum(),
            oldest_age_secs: g
                .values()
                .map(|w| now.saturating_duration_since(w.posted).as_secs_f64())
                .fold(0.0, f64::max),
        })
    }

    /// One HEC event object for an item, written into one buffer: the envelope, then the
    /// event serialized in place (no intermediate `String` or `Value` for static metadata).
    pub fn encode(&self, item: &Outgoing) -> Result<String, String> {
        let full = if self.static_meta {
            None
        } else {
            Some(item.to_json().map_err(|e| e.to_string())?)
        };
        let render = |t: &Template| match t.as_static() {
            Some(s) => s.to_string(),
            None => full.as_ref().map(|v| t.render(v)).unwrap_or_default(),
        };
        let time_ms = match item {
            Outgoing::Finding(f) => f.time,
            Outgoing::Audit(v) => v
                .get("time")
                .and_then(Value::as_i64)
                .unwrap_or_else(crate::format::now_millis),
        };
        let mut o: Vec<u8> = Vec::with_capacity(ENCODE_CAPACITY);
        let e = |e: serde_json::Error| e.to_string();
        let _ = write!(
            o,
            "{{\"time\":{}.{:03}",
            time_ms.div_euclid(1000),
            time_ms.rem_euclid(1000)
        );
        if let Some(h) = &self.host {
            let h = render(h);
            if !h.is_empty() {
                o.extend_from_slice(b",\"host\":");
                serde_json::to_writer(&mut o, &h).map_err(e)?;
            }
        }
        o.extend_from_slice(b",\"source\":");
        serde_json::to_writer(&mut o, &render(&self.source)).map_err(e)?;
        o.extend_from_slice(b",\"sourcetype\":");
        if item.is_audit() {
            serde_json::to_writer(&mut o, &self.audit_sourcetype).map_err(e)?;
        } else {
            serde_json::to_writer(&mut o, &render(&self.sourcetype)).map_err(e)?;
        }
        if let Some(i) = &self.index {
            let i = render(i);
            if !i.is_empty() {
                o.extend_from_slice(b",\"index\":");
                serde_json::to_writer(&mut o, &i).map_err(e)?;
            }
        }
        o.extend_from_slice(b",\"event\":");
        match (self.format, item, &full) {
            (Format::Cim, Outgoing::Finding(f), _) => {
                serde_json::to_writer(&mut o, &crate::format::cim(f)).map_err(e)?
            }
            (_, _, Some(v)) => serde_json::to_writer(&mut o, v).map_err(e)?,
            (_, Outgoing::Finding(f), None) => serde_json::to_writer(&mut o, f).map_err(e)?,
            (_, Outgoing::Audit(v), None) => serde_json::to_writer(&mut o, v).map_err(e)?,
        }
        o.push(b'}');
        // serde_json writes UTF-8; the check cannot fail.
        String::from_utf8(o).map_err(|e| e.to_string())
    }

    pub async fn send(&self, recs: &[Record]) -> Result<(), SendError> {
        let mut body = Vec::with_capacity(recs.iter().map(|r| r.body.len()).sum());
        for r in recs {
            body.extend_from_slice(r.body.as_bytes());
        }
        let mut req = self.post(self.urls.event.clone());
        if self.gzip {
            body = gzip(&body)?;
            req = req.header("Content-Encoding", "gzip");
        }
        // With ack: the batch's place among `max_pending_acks`, held until its ack (or the
        // ack timeout). Taken before posting: no post while every place waits.
        let _ack_slot = if self.indexer_ack {
            Some(
                self.ack_slots
                    .acquire()
                    .await
                    .map_err(|_| SendError::retryable("HEC sink closed"))?,
            )
        } else {
            None
        };
        let what = format!("HEC {} /services/collector/event", self.shown);
        let ans = {
            let _slot = self
                .posts
                .acquire()
                .await
                .map_err(|_| SendError::retryable("HEC sink closed"))?;
            Answer::of(req.body(body), &what, &self.redactor).await?
        };
        if !ans.accepted(&self.shown) {
            return Err(ans.refusal(&what));
        }
        if !self.indexer_ack {
            return Ok(());
        }
        let ack_id = ans
            .json
            .as_ref()
            .and_then(|v| v.get("ackId"))
            .and_then(Value::as_u64)
            .ok_or_else(|| {
                SendError::config(format!(
                    "indexer_ack is on but HEC answered without an ackId ({}): enable indexer acknowledgement on the token",
                    ans.text.trim()
                ))
            })?;
        let Some(poller) = &self.acks else {
            return Err(SendError::config("ack poller missing"));
        };
        let (tx, rx) = oneshot::channel();
        let posted = Instant::now();
        let earlier = lock(&poller.pending).insert(
            ack_id,
            Waiter {
                tx,
                posted,
                items: recs.len(),
            },
        );
        if let Some(w) = earlier {
            // HEC numbers acks per channel from 0; a restarted collector hands them out again.
            let _ = w.tx.send(Err(SendError::retryable(format!(
                "HEC {} handed out ackId {ack_id} again on channel {} (restarted?); resending",
                self.shown, self.channel
            ))));
        }
        poller.wake.notify_one();
        match tokio::time::timeout(self.ack_timeout, rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(SendError::retryable("HEC ack poller stopped")),
            Err(_) => {
                lock(&poller.pending).remove(&ack_id);
                Err(SendError::unacked(
                    format!(
                        "HEC {} did not acknowledge ackId {ack_id} on channel {} within {} s ({} events taken, not confirmed indexed)",
                        self.shown,
                        self.channel,
                        self.ack_timeout.as_secs(),
                        recs.len()
                    ),
                    Unacked {
                        channel: self.channel.clone(),
                        ack_id: ack_id.to_string(),
                        waited: posted.elapsed(),
                    },
                ))
            }
        }
    }

    /// Health endpoint, then the token: an empty event request must fail with code 5
    /// ("No data"), which HEC answers only to an accepted token; with `indexer_ack`, an
    /// empty ack query must be answered (code 14 means ack is off on the token).
    pub async fn check(&self) -> Result<String, SendError> {
        let what = format!("HEC {} /services/collector/health", self.shown);
        let health = self.client.get(self.urls.health.clone());
        let ans = Answer::of(health, &what, &self.redactor).await?;
        if ans.status != 200 {
            return Err(SendError {
                class: classify_status(ans.status),
                ..ans.refusal(&what)
            });
        }
        let what = format!("HEC {} token check", self.shown);
        let empty = self.post(self.urls.event.clone()).body("");
        let ans = Answer::of(empty, &what, &self.redactor).await?;
        if ans.code != Some(5) {
            return Err(ans.refusal(&what));
        }
        if !self.indexer_ack {
            return Ok(format!("HEC {} healthy, token accepted", self.shown));
        }
        let what = format!("HEC {} ack check", self.shown);
        let none = self.post(self.urls.ack.clone()).body(r#"{"acks":[]}"#);
        let ans = Answer::of(none, &what, &self.redactor).await?;
        if ans.status == 200 && ans.json.as_ref().is_some_and(|v| v.get("acks").is_some()) {
            return Ok(format!(
                "HEC {} healthy, token accepted, indexer acknowledgement on",
                self.shown
            ));
        }
        let mut e = ans.refusal(&what);
        e.message
            .push_str(" (indexer_ack needs indexer acknowledgement on the token)");
        Err(e)
    }

    /// A POST with the token and the channel.
    fn post(&self, url: reqwest::Url) -> reqwest::RequestBuilder {
        post(&self.client, url, &self.auth, &self.channel)
    }
}

/// A POST to HEC with the token and the channel.
fn post(
    client: &reqwest::Client,
    url: reqwest::Url,
    auth: &Secret,
    channel: &str,
) -> reqwest::RequestBuilder {
    client
        .post(url)
        .header("Authorization", auth.expose())
        .header("X-Splunk-Request-Channel", channel)
        .header("Content-Type", "application/json")
}

/// What the ack poller needs.
struct PollCtx {
    client: reqwest::Client,
    urls: Arc<Endpoints>,
    shown: Arc<str>,
    auth: Secret,
    channel: String,
    every: Duration,
    redactor: Redactor,
}

async fn poll_acks(poller: std::sync::Weak<AckPoller>, ctx: PollCtx) {
    let mut wait = ctx.every;
    loop {
        let Some(p) = poller.upgrade() else {
            return;
        };
        let ids: Vec<u64> = lock(&p.pending).keys().copied().collect();
        if ids.is_empty() {
            // Holds the poller at most 5 s, so a dropped sink ends this task.
            tokio::select! {
                _ = p.wake.notified() => {}
                _ = tokio::time::sleep(Duration::from_secs(5)) => {}
            }
            continue;
        }
        drop(p);
        tokio::time::sleep(wait).await;
        let poll = post(&ctx.client, ctx.urls.ack.clone(), &ctx.auth, &ctx.channel)
            .body(json!({ "acks": ids }).to_string());
        let what = format!("HEC {} ack poll", ctx.shown);
        let ans = Answer::of(poll, &what, &ctx.redactor).await;
        let Some(p) = poller.upgrade() else {
            return;
        };
        let failed = |wait: &mut Duration, why: &str| {
            *wait = (*wait * 2).min(MAX_POLL_BACKOFF.max(ctx.every));
            tracing::warn!(endpoint = %ctx.shown, channel = %ctx.channel, pending = ids.len(), error = why, next_poll_ms = wait.as_millis() as u64, "HEC ack poll failed; polling again after a back-off");
        };
        let ans = match ans {
            Ok(a) => a,
            Err(e) => {
                failed(&mut wait, &e.message);
                continue;
            }
        };
        if !ans.accepted(&ctx.shown) {
            let e = ans.refusal(&what);
            if e.class != ErrorClass::Retryable {
                // e.g. 14 ACK is disabled: fail the waiting sends.
                let mut g = lock(&p.pending);
                for id in &ids {
                    if let Some(w) = g.remove(id) {
                        let _ = w.tx.send(Err(SendError::config(e.message.clone())));
                    }
                }
            } else {
                failed(&mut wait, &e.message);
            }
            continue;
        }
        wait = ctx.every;
        let Some(acks) = ans
            .json
            .as_ref()
            .and_then(|v| v.get("acks"))
            .and_then(Value::as_object)
        else {
            continue;
        };
        let mut g = lock(&p.pending);
        for (k, ok) in acks {
            if ok.as_bool() == Some(true) {
                if let Some(w) = k.parse::<u64>().ok().and_then(|id| g.remove(&id)) {
                    let _ = w.tx.send(Ok(()));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_documented_code_is_classified() {
        // Splunk's table: 0-27 (17 health, 24/25 warnings that come with HTTP 200).
        for code in 0..=27 {
            let success = is_success_code(code);
            let class = classify_code(code);
            assert!(
                success != class.is_some(),
                "code {code}: success={success} class={class:?}"
            );
        }
        assert_eq!(classify_code(9), Some(ErrorClass::Retryable));
        assert_eq!(classify_code(4), Some(ErrorClass::Config));
        assert_eq!(classify_code(14), Some(ErrorClass::Config));
        assert_eq!(classify_code(6), Some(ErrorClass::Fatal));
        assert_eq!(classify_code(26), Some(ErrorClass::Retryable));
        assert!(accepted(200, Some(24), "near capacity", "u"));
        assert!(accepted(200, None, "", "u"));
        assert!(!accepted(200, Some(6), "", "u"));
        assert!(!accepted(503, Some(9), "", "u"));
        assert!(classify_code(99).is_none());
    }
}
