//! Kafka: an idempotent producer (`enable.idempotence=true`, `acks=all`). Message key = the
//! item's id (finding uid), value = the record (OCSF JSON or CIM), headers `rule_id` and
//! `level`. A batch is delivered when every message's delivery report is in.

use crate::config::{Format, KafkaConfig};
use crate::{ErrorClass, Record, SendError};
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
        for (k, v) in &c.properties {
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

    pub async fn send(&self, recs: &[Record]) -> Result<(), SendError> {
        let mut pending = Vec::with_capacity(recs.len());
        for r in recs {
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
                Ok(f) => pending.push(f),
                Err((e, _)) => {
                    return Err(SendError {
                        class: classify(&e),
                        message: format!("Kafka {topic}: {e}"),
                        retry_after: None,
                    })
                }
            }
        }
        let mut first_err = None;
        for f in pending {
            let res = match f.await {
                Ok(Ok(_)) => continue,
                Ok(Err((e, _))) => SendError {
                    class: classify(&e),
                    message: format!("Kafka delivery: {e}"),
                    retry_after: None,
                },
                Err(_) => SendError::retryable("Kafka delivery report lost"),
            };
            first_err.get_or_insert(res);
        }
        match first_err {
            Some(e) => Err(e),
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
