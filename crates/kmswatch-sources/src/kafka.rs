//! `kafka`: a consumer group whose offsets are committed only for acknowledged messages, in
//! order per partition (the contiguous acknowledged prefix), never automatically.
//!
//! Works with Apache Kafka, Azure Event Hubs' Kafka endpoint (SASL_SSL + PLAIN, user
//! `$ConnectionString`, the connection string as password: set
//! `event_hubs_connection_string`), Confluent Cloud (SASL_SSL + PLAIN with an API key) and MSK
//! (SASL/SCRAM-SHA-512; MSK IAM needs an OAUTHBEARER token provider that is not built in yet).
//!
//! Rebalance-safe: when partitions are revoked, what was acknowledged is committed
//! synchronously before they go, their unacknowledged messages are forgotten (the next owner
//! reads them from the committed offset) and late acknowledgements for them are ignored.
//! A nacked (or dropped) message is handed out again after a short delay; it holds back the
//! commit point of its partition until it is acknowledged or rejected.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::KafkaError;
use rdkafka::{ClientContext, Message, Offset, TopicPartitionList};
use tracing::{debug, error, info, warn};

use crate::{
    AckHandle, Backoff, Batch, Bytes, Contiguous, KafkaConfig, Retry, SaslMechanism,
    SecurityProtocol, Settle, SourceError,
};

/// Delay before a nacked message is handed out again.
const REDELIVERY_DELAY: Duration = Duration::from_secs(1);

type PartKey = (String, i32);

#[derive(Debug)]
struct PartState {
    generation: u64,
    track: Contiguous,
    committed: Option<i64>,
}

#[derive(Debug)]
struct Redelivery {
    key: PartKey,
    offset: i64,
    generation: u64,
    payload: Bytes,
    due: Instant,
}

#[derive(Debug, Default)]
struct Shared {
    parts: HashMap<PartKey, PartState>,
    retry: VecDeque<Redelivery>,
    generations: u64,
    in_flight: usize,
}

fn lock(m: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    /// Offsets to commit: partitions whose acknowledged prefix moved since the last commit.
    fn take_commits(&mut self, only: Option<&[PartKey]>) -> TopicPartitionList {
        let mut tpl = TopicPartitionList::new();
        for (key, p) in &mut self.parts {
            if only.is_some_and(|o| !o.contains(key)) {
                continue;
            }
            if let Some(point) = p.track.commit_point() {
                if p.committed != Some(point)
                    && tpl
                        .add_partition_offset(&key.0, key.1, Offset::Offset(point))
                        .is_ok()
                {
                    p.committed = Some(point);
                }
            }
        }
        tpl
    }

    fn settle(&mut self, key: PartKey, generation: u64, offset: i64, payload: Bytes, how: Settle) {
        let Some(p) = self.parts.get_mut(&key) else {
            debug!(topic = %key.0, partition = key.1, offset, "ack for a revoked partition ignored");
            return;
        };
        if p.generation != generation {
            return;
        }
        match how {
            Settle::Ack | Settle::Reject => {
                p.track.acked(offset);
                self.in_flight = self.in_flight.saturating_sub(1);
            }
            Settle::Retry | Settle::Dropped => self.retry.push_back(Redelivery {
                key,
                offset,
                generation,
                payload,
                due: Instant::now() + REDELIVERY_DELAY,
            }),
        }
    }
}

/// The consumer context: keeps the per-partition state in step with rebalances.
struct Ctx {
    shared: Arc<Mutex<Shared>>,
}

impl ClientContext for Ctx {}

impl ConsumerContext for Ctx {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Revoke(tpl) = rebalance else {
            return;
        };
        let keys: Vec<PartKey> = tpl
            .elements()
            .iter()
            .map(|e| (e.topic().to_owned(), e.partition()))
            .collect();
        let commit = {
            let mut s = lock(&self.shared);
            let commit = s.take_commits(Some(&keys));
            for k in &keys {
                if let Some(p) = s.parts.remove(k) {
                    s.in_flight = s.in_flight.saturating_sub(p.track.in_flight());
                }
            }
            s.retry.retain(|r| !keys.contains(&r.key));
            commit
        };
        info!(partitions = keys.len(), "kafka partitions revoked");
        if commit.count() > 0 {
            if let Err(e) = consumer.commit(&commit, CommitMode::Sync) {
                error!(error = %e, "commit on revocation failed; those messages will be read again");
            }
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Assign(tpl) = rebalance else {
            return;
        };
        let mut s = lock(&self.shared);
        for e in tpl.elements() {
            s.generations += 1;
            let generation = s.generations;
            s.parts
                .entry((e.topic().to_owned(), e.partition()))
                .or_insert(PartState {
                    generation,
                    track: Contiguous::default(),
                    committed: None,
                });
        }
        info!(partitions = tpl.count(), "kafka partitions assigned");
    }
}

/// librdkafka properties for `cfg` (pure; secrets included, never log the result).
pub fn client_properties(cfg: &KafkaConfig) -> Vec<(String, String)> {
    let mut p: Vec<(String, String)> = Vec::new();
    let mut set = |k: &str, v: &str| p.push((k.to_owned(), v.to_owned()));
    set("bootstrap.servers", &cfg.brokers.join(","));
    set("group.id", &cfg.group_id);
    set("enable.auto.commit", "false");
    set("enable.auto.offset.store", "false");
    set(
        "auto.offset.reset",
        match cfg.auto_offset_reset {
            crate::AutoOffsetReset::Earliest => "earliest",
            crate::AutoOffsetReset::Latest => "latest",
        },
    );
    set("session.timeout.ms", &cfg.session_timeout_ms.to_string());
    let (user, pass) = match (&cfg.event_hubs_connection_string, &cfg.sasl_username) {
        (Some(cs), _) => (
            Some("$ConnectionString".to_owned()),
            Some(cs.expose().to_owned()),
        ),
        (None, Some(u)) => (
            Some(u.clone()),
            cfg.sasl_password.as_ref().map(|s| s.expose().to_owned()),
        ),
        (None, None) => (None, None),
    };
    let protocol = cfg.security_protocol.unwrap_or(if user.is_some() {
        SecurityProtocol::SaslSsl
    } else {
        SecurityProtocol::Plaintext
    });
    set("security.protocol", protocol.as_librdkafka());
    if matches!(
        protocol,
        SecurityProtocol::SaslSsl | SecurityProtocol::SaslPlaintext
    ) {
        let mech = cfg.sasl_mechanism.unwrap_or(SaslMechanism::Plain);
        set("sasl.mechanism", mech.as_librdkafka());
        if let (Some(u), Some(pw)) = (&user, &pass) {
            set("sasl.username", u);
            set("sasl.password", pw);
        }
    }
    if let Some(ca) = &cfg.ssl_ca_location {
        set("ssl.ca.location", &ca.display().to_string());
    }
    if cfg.event_hubs_connection_string.is_some() {
        // Event Hubs closes idle connections after 240 s; Microsoft's recommended values.
        set("socket.keepalive.enable", "true");
        set("metadata.max.age.ms", "180000");
        set("request.timeout.ms", "60000");
    }
    for (k, v) in &cfg.librdkafka_options {
        set(k, v);
    }
    p
}

/// The `kafka` source.
pub struct KafkaSource {
    cfg: KafkaConfig,
    consumer: Arc<StreamConsumer<Ctx>>,
    shared: Arc<Mutex<Shared>>,
    last_commit: Instant,
    backoff: Backoff,
}

impl std::fmt::Debug for KafkaSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSource")
            .field("brokers", &self.cfg.brokers)
            .field("topics", &self.cfg.topics)
            .field("group_id", &self.cfg.group_id)
            .finish()
    }
}

fn kafka_error(operation: &'static str, context: String, e: &KafkaError) -> SourceError {
    let retry = match e {
        KafkaError::ClientCreation(_) | KafkaError::Subscription(_) => Retry::Permanent,
        _ => Retry::Transient,
    };
    SourceError::Kafka {
        operation,
        context,
        message: e.to_string(),
        retry,
    }
}

impl KafkaSource {
    /// Create the consumer and subscribe (must run inside a tokio runtime).
    pub fn new(cfg: KafkaConfig) -> Result<Self, SourceError> {
        crate::SourceConfig::Kafka(cfg.clone()).validate()?;
        let mut cc = ClientConfig::new();
        for (k, v) in client_properties(&cfg) {
            cc.set(k, v);
        }
        let shared = Arc::new(Mutex::new(Shared::default()));
        let consumer: StreamConsumer<Ctx> = cc
            .create_with_context(Ctx {
                shared: shared.clone(),
            })
            .map_err(|e| kafka_error("create consumer", cfg.brokers.join(","), &e))?;
        let topics: Vec<&str> = cfg.topics.iter().map(String::as_str).collect();
        consumer
            .subscribe(&topics)
            .map_err(|e| kafka_error("subscribe", cfg.topics.join(","), &e))?;
        Ok(Self {
            cfg,
            consumer: Arc::new(consumer),
            shared,
            last_commit: Instant::now(),
            backoff: Backoff::new(Duration::from_millis(100), Duration::from_secs(30)),
        })
    }

    fn batch(&self, key: PartKey, offset: i64, generation: u64, payload: Bytes) -> Batch {
        let shared = self.shared.clone();
        let origin = format!("{}/{}/{}", key.0, key.1, offset);
        let format = self.cfg.format_for(&key.0);
        let p = payload.clone();
        Batch {
            origin,
            bytes: payload,
            format,
            received_at: SystemTime::now(),
            ack: AckHandle::new(move |how| lock(&shared).settle(key, generation, offset, p, how)),
            dead: Vec::new(),
        }
    }

    /// Commit the acknowledged prefixes now (asynchronously unless `sync`).
    pub fn commit_acked(&self, sync: bool) -> Result<(), SourceError> {
        let tpl = lock(&self.shared).take_commits(None);
        if tpl.count() == 0 {
            return Ok(());
        }
        let mode = if sync {
            CommitMode::Sync
        } else {
            CommitMode::Async
        };
        debug!(partitions = tpl.count(), "committing acknowledged offsets");
        self.consumer
            .commit(&tpl, mode)
            .map_err(|e| kafka_error("commit", self.cfg.group_id.clone(), &e))
    }

    /// Commit what was acknowledged and leave the group.
    pub async fn shutdown(self) -> Result<(), SourceError> {
        let consumer = self.consumer.clone();
        let shared = self.shared.clone();
        let group = self.cfg.group_id.clone();
        drop(self);
        tokio::task::spawn_blocking(move || {
            let tpl = lock(&shared).take_commits(None);
            if tpl.count() > 0 {
                consumer
                    .commit(&tpl, CommitMode::Sync)
                    .map_err(|e| kafka_error("commit", group.clone(), &e))?;
            }
            consumer.unsubscribe();
            Ok(())
        })
        .await
        .map_err(|e| SourceError::Kafka {
            operation: "shutdown",
            context: String::new(),
            message: e.to_string(),
            retry: Retry::Permanent,
        })?
    }

    /// The next message; never `None`. Offsets are committed every `commit_interval_ms`.
    pub async fn next_batch(&mut self) -> Result<Option<Batch>, SourceError> {
        let interval = Duration::from_millis(self.cfg.commit_interval_ms);
        loop {
            if self.last_commit.elapsed() >= interval {
                if let Err(e) = self.commit_acked(false) {
                    warn!(error = %e, "kafka commit failed");
                }
                self.last_commit = Instant::now();
            }
            let (due, busy) = {
                let mut s = lock(&self.shared);
                let now = Instant::now();
                let due = match s.retry.front() {
                    Some(r) if r.due <= now => s.retry.pop_front(),
                    _ => None,
                };
                (due, s.in_flight >= self.cfg.max_unacked_messages)
            };
            if let Some(r) = due {
                let valid = lock(&self.shared)
                    .parts
                    .get(&r.key)
                    .is_some_and(|p| p.generation == r.generation);
                if valid {
                    return Ok(Some(self.batch(r.key, r.offset, r.generation, r.payload)));
                }
                continue;
            }
            if busy {
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
            let wait = interval
                .saturating_sub(self.last_commit.elapsed())
                .min(REDELIVERY_DELAY)
                .max(Duration::from_millis(10));
            let msg = tokio::select! {
                m = self.consumer.recv() => m.map(|m| {
                    (
                        (m.topic().to_owned(), m.partition()),
                        m.offset(),
                        Bytes::copy_from_slice(m.payload().unwrap_or_default()),
                    )
                }),
                _ = tokio::time::sleep(wait) => continue,
            };
            match msg {
                Ok((key, offset, payload)) => {
                    self.backoff.reset();
                    let generation = {
                        let mut s = lock(&self.shared);
                        let Some(p) = s.parts.get_mut(&key) else {
                            debug!(topic = %key.0, partition = key.1, offset, "message of an unassigned partition dropped");
                            continue;
                        };
                        p.track.handed_out(offset, offset + 1);
                        let g = p.generation;
                        s.in_flight += 1;
                        g
                    };
                    return Ok(Some(self.batch(key, offset, generation, payload)));
                }
                Err(e) => {
                    let d = self.backoff.next_delay();
                    warn!(error = %e, delay_ms = d.as_millis() as u64, "kafka receive failed; retrying");
                    tokio::time::sleep(d).await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SourceConfig;

    fn kafka(json: &str) -> KafkaConfig {
        match serde_json::from_str::<SourceConfig>(json) {
            Ok(SourceConfig::Kafka(k)) => k,
            other => panic!("not a kafka config: {other:?}"),
        }
    }

    fn get<'a>(p: &'a [(String, String)], k: &str) -> Option<&'a str> {
        p.iter()
            .rev()
            .find(|(a, _)| a == k)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn event_hubs_connection_string() {
        let c = kafka(
            r#"{"type":"kafka","brokers":["ns.servicebus.windows.net:9093"],"topics":["kv"],"group_id":"$Default","event_hubs_connection_string":"Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=k;SharedAccessKey=s"}"#,
        );
        let p = client_properties(&c);
        assert_eq!(get(&p, "security.protocol"), Some("sasl_ssl"));
        assert_eq!(get(&p, "sasl.mechanism"), Some("PLAIN"));
        assert_eq!(get(&p, "sasl.username"), Some("$ConnectionString"));
        assert!(get(&p, "sasl.password").is_some_and(|v| v.starts_with("Endpoint=sb://")));
        assert_eq!(get(&p, "enable.auto.commit"), Some("false"));
    }

    #[test]
    fn plaintext_and_scram() {
        let c = kafka(
            r#"{"type":"kafka","brokers":["a:9092","b:9092"],"topics":["t"],"group_id":"g"}"#,
        );
        let p = client_properties(&c);
        assert_eq!(get(&p, "bootstrap.servers"), Some("a:9092,b:9092"));
        assert_eq!(get(&p, "security.protocol"), Some("plaintext"));
        assert_eq!(get(&p, "sasl.mechanism"), None);
        let c = kafka(
            r#"{"type":"kafka","brokers":["b-1.msk:9096"],"topics":["t"],"group_id":"g","sasl_mechanism":"SCRAM-SHA-512","sasl_username":"u","sasl_password":"p"}"#,
        );
        let p = client_properties(&c);
        assert_eq!(get(&p, "security.protocol"), Some("sasl_ssl"));
        assert_eq!(get(&p, "sasl.mechanism"), Some("SCRAM-SHA-512"));
    }

    #[test]
    fn settling_tracks_the_prefix_and_ignores_revoked_partitions() {
        let mut s = Shared::default();
        let key = ("t".to_owned(), 0);
        s.parts.insert(
            key.clone(),
            PartState {
                generation: 1,
                track: Contiguous::default(),
                committed: None,
            },
        );
        for o in 0..3 {
            if let Some(p) = s.parts.get_mut(&key) {
                p.track.handed_out(o, o + 1);
            }
            s.in_flight += 1;
        }
        s.settle(key.clone(), 1, 1, Bytes::new(), Settle::Ack);
        assert_eq!(s.take_commits(None).count(), 0);
        s.settle(key.clone(), 1, 0, Bytes::new(), Settle::Dropped);
        assert_eq!(s.retry.len(), 1);
        s.settle(key.clone(), 1, 0, Bytes::new(), Settle::Ack);
        let tpl = s.take_commits(None);
        assert_eq!(
            tpl.find_partition("t", 0).map(|e| e.offset()),
            Some(Offset::Offset(2))
        );
        // A stale generation does not move anything.
        s.settle(key.clone(), 7, 2, Bytes::new(), Settle::Ack);
        assert_eq!(s.take_commits(None).count(), 0);
        assert_eq!(s.in_flight, 1);
    }
}
