//! The Kafka sink against a real broker (tansu): `source scripts/services up` sets
//! `KMSWATCH_TEST_KAFKA_BROKERS`; without it the test says so and passes.
#![cfg(feature = "kafka")]
#![allow(clippy::unwrap_used)]

mod common;

use common::{findings, sink};
use kmswatch_sinks::{Outgoing, SinkSet};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::ClientConfig;
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_sink_keys_headers_and_delivery_reports() {
    let Ok(brokers) = std::env::var("KMSWATCH_TEST_KAFKA_BROKERS") else {
        eprintln!("SKIPPED kafka_sink: KMSWATCH_TEST_KAFKA_BROKERS is not set (run `source scripts/services up`)");
        return;
    };
    let topic = format!("kmswatch-sink-test-{}", uuid::Uuid::new_v4().simple());
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .create()
        .unwrap();
    let created = admin
        .create_topics(
            &[NewTopic::new(&topic, 1, TopicReplication::Fixed(1))],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
        )
        .await
        .unwrap();
    assert!(created.iter().all(Result::is_ok), "{created:?}");
    let dir = tempfile::tempdir().unwrap();
    let set = Arc::new(
        SinkSet::from_config(
            &[sink(
                json!({"type": "kafka", "brokers": brokers, "topic": topic,
                           "batch": {"timeout_ms": 20}}),
            )],
            dir.path(),
        )
        .unwrap(),
    );
    let rep = set.check_connect().await;
    let msg = rep[0].result.as_ref().unwrap();
    assert!(msg.contains("1 partition(s)"), "{msg}");
    let mut hs = Vec::new();
    for f in findings(20) {
        let set = set.clone();
        hs.push(tokio::spawn(async move {
            set.deliver(Arc::new(Outgoing::Finding(f))).await
        }));
    }
    for h in hs {
        h.await.unwrap().unwrap();
    }
    assert_eq!(set.metrics()[0].sent, 20);
    set.shutdown(Duration::from_secs(2)).await;

    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("group.id", format!("t-{topic}"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    consumer.subscribe(&[&topic]).unwrap();
    let mut got = BTreeMap::new();
    let end = Instant::now() + Duration::from_secs(30);
    while got.len() < 20 && Instant::now() < end {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(500)) {
            let key = String::from_utf8_lossy(m.key().unwrap_or_default()).to_string();
            let v: serde_json::Value =
                serde_json::from_slice(m.payload().unwrap_or_default()).unwrap();
            let mut hdr = BTreeMap::new();
            if let Some(h) = m.headers() {
                for x in h.iter() {
                    hdr.insert(
                        x.key.to_string(),
                        String::from_utf8_lossy(x.value.unwrap_or_default()).to_string(),
                    );
                }
            }
            got.insert(key, (v, hdr));
        }
    }
    assert_eq!(got.len(), 20, "every finding consumed once per key");
    let (v, hdr) = &got["f-000004"];
    assert_eq!(v["finding_info"]["uid"], "f-000004");
    assert_eq!(hdr["rule_id"], "rule-1");
    assert_eq!(hdr["level"], "high");
}
