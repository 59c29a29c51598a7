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
    let res = common::deliver_each(&set, findings(20)).await;
    assert!(res.iter().all(Result::is_ok), "{res:?}");
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

/// A broker that takes the connection and never answers: no delivery report ever comes.
/// librdkafka times each message out after `message.timeout.ms` (the sink's
/// `retry.request_timeout_ms`); the sink counts it unacknowledged, re-sends it at most
/// `retry.max_unacked_resends` times, then spools it and reports itself degraded — it does
/// not hold `deliver` for `max_attempts` delivery timeouts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivery_reports_that_never_come_are_bounded_and_spooled() {
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let brokers = silent.local_addr().unwrap().to_string();
    let accept = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = silent.accept().await {
            held.push(s); // never read, never answered
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let set = SinkSet::from_config(
        &[sink(json!({"type": "kafka", "brokers": brokers, "topic": "t",
                      "batch": {"timeout_ms": 20},
                      "retry": {"max_attempts": 10, "max_unacked_resends": 1, "initial_backoff_ms": 100,
                                "max_backoff_ms": 200, "request_timeout_ms": 1000}}))],
        dir.path(),
    )
    .unwrap();
    let start = Instant::now();
    tokio::time::timeout(
        Duration::from_secs(8),
        set.deliver(Arc::new(Outgoing::Finding(findings(1).remove(0)))),
    )
    .await
    .expect("deliver is not held for max_attempts delivery timeouts")
    .unwrap();
    let took = start.elapsed();
    eprintln!("deliver resolved after {took:?}");
    assert!(
        took >= Duration::from_secs(2),
        "two delivery timeouts: {took:?}"
    );
    let m = set.metrics()[0].clone();
    assert_eq!((m.spooled, m.sent), (1, 0), "{m:?}");
    assert!(m.ack_timeouts >= 2 && m.degraded, "{m:?}");
    set.shutdown(Duration::from_millis(100)).await;
    accept.abort();
}
