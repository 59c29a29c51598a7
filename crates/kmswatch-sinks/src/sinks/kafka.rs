//! Kafka: an idempotent producer (`enable.idempotence=true`, `acks=all`). Message key = the
//! item's id (finding uid), value = the record (OCSF JSON or CIM), headers `rule_id` and
//! `level`. A batch is delivered when every message's delivery report is in.
//!
//! librdkafka retries inside the producer and reports every message within
//! `message.timeout.ms` (set to `retry.request_timeout_ms`); a report that still does not
//! come (a stuck client) ends the wait 5 s later. A message whose report says it timed out
//! is [`crate::Unacked`]: the broker may have it, a re-send may duplicate it (the worker
//! re-sends at most `retry.max_unacked_resends` times, then spools). The messages whose
//! report was a success are listed in the error and are not sent again.

use super::AckBacklog;
use crate::config::{Format, KafkaConfig};
use crate::{ErrorClass, Record, SendError, Unacked};
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use std::time::Duration;

pub(crate) struct KafkaDest {
    pub format: Format,
    producer: FutureProducer,
    topic: String,
    audit_topic: String,
    brokers: String,
    timeout: Duration,
}

fn classify(e: &KafkaError) -> ErrorClass {
    let code = match e {
        KafkaError::MessageProduction(c) => Some(*c),
        _ => e.rdkafka_error_code(),
    };
    match code {
        Some(
            RDKafkaErrorCode::MessageSizeTooLarge
            | RDKafkaErrorCode::InvalidMessage
            | RDKafkaErrorCode::InvalidMessageSize
            | RDKafkaErrorCode::InvalidRecord,
        ) => ErrorClass::Fatal,
        Some(
            RDKafkaErrorCode::TopicAuthorizationFailed
            | RDKafkaErrorCode::ClusterAuthorizationFailed
            | RDKafkaErrorCode::SaslAuthenticationFailed
            | RDKafkaErrorCode::UnknownTopicOrPartition
            | RDKafkaErrorCode::UnknownTopic,
        ) => ErrorClass::Config,
        _ => ErrorClass::Retryable,
    }
}

impl KafkaDest {
    pub fn new(c: &KafkaConfig, name: &str, timeout: Duration) -> Result<KafkaDest, String> {
        let mut cc = ClientConfig::new();
        for (k, v) in &c.properties.0 {
            cc.set(k, v);
        }
        cc.set("bootstrap.servers", &c.brokers)
            .set("client.id", format!("kmswatch-sink-{name}"))
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set(
                "message.timeout.ms",
                timeout.as_millis().max(1000).to_string(),
            );
        if let Some(p) = &c.sasl_password {
            cc.set("sasl.password", p.expose());
        }
        let producer: FutureProducer = cc
            .create()
            .map_err(|e| format!("Kafka producer for {}: {e}", c.brokers))?;
        Ok(KafkaDest {
            format: c.format,
            producer,
            topic: c.topic.clone(),
            audit_topic: c.audit_topic.clone().unwrap_or_else(|| c.topic.clone()),
            brokers: c.brokers.clone(),
            timeout,
        })
    }

    /// Messages queued in the producer or awaiting their delivery report.
    pub fn ack_backlog(&self) -> AckBacklog {
        AckBacklog {
            items: u64::try_from(self.producer.in_flight_count().max(0)).unwrap_or(0),
            oldest_age_secs: 0.0,
        }
    }

    pub async fn send(&self, recs: &[Record]) -> Result<(), SendError> {
        let mut pending = Vec::with_capacity(recs.len());
        let mut first_err = None;
        for (i, r) in recs.iter().enumerate() {
            let topic = if r.audit {
                &self.audit_topic
            } else {
                &self.topic
            };
            let headers = OwnedHeaders::new()
                .insert(Header {
                    key: "rule_id",
                    value: Some(r.rule_id.as_bytes()),
                })
                .insert(Header {
                    key: "level",
                    value: Some(r.level.as_bytes()),
                });
            let rec = FutureRecord::to(topic)
                .key(r.id.as_bytes())
                .payload(r.body.as_bytes())
                .headers(headers);
            match self.producer.send_result(rec) {
                Ok(f) => pending.push((i, f)),
                Err((e, _)) => {
                    // Queue full or refused: the messages queued so far still get their
                    // reports (awaited below), the rest is retried.
                    first_err = Some(SendError {
                        class: classify(&e),
                        ..SendError::retryable(format!("Kafka {topic}: {e}"))
                    });
                    break;
                }
            }
        }
        // librdkafka reports every message within message.timeout.ms; this bounds a stuck
        // client.
        let deadline = tokio::time::Instant::now() + self.timeout + Duration::from_secs(5);
        let started = tokio::time::Instant::now();
        let mut delivered = Vec::with_capacity(pending.len());
        for (i, f) in pending {
            let topic = if recs.get(i).is_some_and(|r| r.audit) {
                &self.audit_topic
            } else {
                &self.topic
            };
            let key = recs.get(i).map(|r| r.id.clone()).unwrap_or_default();
            let unacked = |why: String| {
                SendError::unacked(
                    format!("Kafka {topic}: no delivery report for message {key} ({why}); the broker may still have it"),
                    Unacked {
                        channel: topic.clone(),
                        ack_id: key.clone(),
                        waited: started.elapsed(),
                    },
                )
            };
            let res = match tokio::time::timeout_at(deadline, f).await {
                Ok(Ok(Ok(_))) => {
                    delivered.push(i);
                    continue;
                }
                Ok(Ok(Err((e, _)))) => {
                    if e.rdkafka_error_code() == Some(RDKafkaErrorCode::MessageTimedOut) {
                        unacked(format!("{e}"))
                    } else {
                        SendError {
                            class: classify(&e),
                            ..SendError::retryable(format!("Kafka delivery to {topic}: {e}"))
                        }
                    }
                }
                Ok(Err(_)) => SendError::retryable("Kafka delivery report lost"),
                Err(_) => unacked(format!(
                    "none within {} s",
                    (self.timeout + Duration::from_secs(5)).as_secs()
                )),
            };
            first_err.get_or_insert(res);
        }
        match first_err {
            Some(e) => Err(e.with_delivered(delivered)),
            None => Ok(()),
        }
    }

    /// Fetches the topic's metadata.
    pub async fn check(&self) -> Result<String, SendError> {
        let producer = self.producer.clone();
        let topic = self.topic.clone();
        let timeout = self.timeout;
        let md = tokio::task::spawn_blocking(move || {
            producer
                .client()
                .fetch_metadata(Some(&topic), timeout)
                .map(|m| {
                    (
                        m.brokers().len(),
                        m.topics()
                            .first()
                            .map(|t| t.partitions().len())
                            .unwrap_or(0),
                    )
                })
        })
        .await
        .map_err(|e| SendError::retryable(format!("Kafka metadata task: {e}")))?
        .map_err(|e| SendError::retryable(format!("Kafka metadata from {}: {e}", self.brokers)))?;
        Ok(format!(
            "Kafka {}: {} broker(s), topic {} has {} partition(s)",
            self.brokers, md.0, self.topic, md.1
        ))
    }

    pub async fn close(&self) {
        let producer = self.producer.clone();
        let timeout = self.timeout;
        let _ = tokio::task::spawn_blocking(move || producer.flush(timeout)).await;
    }
}
