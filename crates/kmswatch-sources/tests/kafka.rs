//! Integration tests of the `kafka` source against a real broker (tansu), started by
//! `scripts/services up`. Skipped, with a message, when `KMSWATCH_TEST_KAFKA_BROKERS` is not
//! set.

use std::time::Duration;

use kmswatch_sources::{Batch, KafkaSource, SourceConfig};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;

fn brokers() -> Option<String> {
    match std::env::var("KMSWATCH_TEST_KAFKA_BROKERS") {
        Ok(b) if !b.is_empty() => Some(b),
        _ => {
            eprintln!(
                "SKIPPED: KMSWATCH_TEST_KAFKA_BROKERS is not set; run scripts/test (or `source scripts/services up`)"
            );
            None
        }
    }
}

fn unique(prefix: &str) -> String {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{prefix}-{}-{}", std::process::id(), n % 1_000_000_000)
}

fn source(brokers: &str, topic: &str, group: &str) -> KafkaSource {
    let cfg: SourceConfig = serde_json::from_value(serde_json::json!({
        "type": "kafka",
        "brokers": [brokers],
        "topics": [topic],
        "group_id": group,
        "format": "auto",
        "topic_formats": {topic: "azure_keyvault"},
        "commit_interval_ms": 200,
        "session_timeout_ms": 10000
    }))
    .expect("config");
    let SourceConfig::Kafka(k) = cfg else {
        panic!("not kafka")
    };
    KafkaSource::new(k).expect("consumer")
}

async fn next(src: &mut KafkaSource) -> Batch {
    tokio::time::timeout(Duration::from_secs(60), src.next_batch())
        .await
        .expect("no message within 60 s")
        .expect("source error")
        .expect("source ended")
}

async fn create_topic(brokers: &str, topic: &str) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .expect("admin");
    let created = admin
        .create_topics(
            &[NewTopic::new(topic, 1, TopicReplication::Fixed(1))],
            &AdminOptions::new(),
        )
        .await
        .expect("create topic");
    for r in created {
        r.expect("topic created");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commits_only_the_contiguous_acked_prefix() {
    let Some(brokers) = brokers() else { return };
    let topic = unique("kmsw-kv");
    create_topic(&brokers, &topic).await;
    prefix_scenario(&brokers, &topic).await;
}

/// The same scenario against librdkafka's in-process mock cluster: always runs, no services.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mock_cluster_commits_only_the_contiguous_acked_prefix() {
    let mock = rdkafka::mocking::MockCluster::new(1).expect("mock cluster");
    let topic = unique("kmsw-mock");
    mock.create_topic(&topic, 1, 1).expect("mock topic");
    prefix_scenario(&mock.bootstrap_servers(), &topic).await;
}

async fn prefix_scenario(brokers: &str, topic: &str) {
    let brokers = brokers.to_owned();
    let topic = topic.to_owned();
    let group = unique("kmsw-group");
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("message.timeout.ms", "10000")
        .create()
        .expect("producer");
    for i in 0..10 {
        let payload = format!("{{\"n\":{i}}}");
        producer
            .send(
                FutureRecord::<(), _>::to(&topic).payload(&payload),
                Duration::from_secs(10),
            )
            .await
            .map_err(|(e, _)| e)
            .expect("produce");
    }

    let mut src = source(&brokers, &topic, &group);
    let mut held = Vec::new();
    for i in 0..10 {
        let b = next(&mut src).await;
        assert_eq!(b.origin, format!("{topic}/0/{i}"));
        assert_eq!(&b.bytes[..], format!("{{\"n\":{i}}}").as_bytes());
        assert_eq!(b.format.as_deref(), Some("azure_keyvault"));
        if i == 5 {
            held.push(b.ack); // in the pipeline still: offsets >= 5 must not be committed
        } else {
            b.ack.ack();
        }
    }
    src.shutdown().await.expect("shutdown");
    drop(held); // too late: the partition is gone, nothing is committed for it

    let mut src = source(&brokers, &topic, &group);
    let b = next(&mut src).await;
    assert_eq!(
        b.origin,
        format!("{topic}/0/5"),
        "resumes after the acked prefix"
    );
    b.ack.ack();
    // 6..9 were acked but behind the gap: delivered again (at least once).
    for i in 6..10 {
        let b = next(&mut src).await;
        assert_eq!(b.origin, format!("{topic}/0/{i}"));
        b.ack.ack();
    }
    src.shutdown().await.expect("shutdown");

    // Everything acked and committed: a third consumer starts with a new message.
    producer
        .send(
            FutureRecord::<(), _>::to(&topic).payload("{\"n\":10}"),
            Duration::from_secs(10),
        )
        .await
        .map_err(|(e, _)| e)
        .expect("produce");
    let mut src = source(&brokers, &topic, &group);
    let b = next(&mut src).await;
    assert_eq!(
        b.origin,
        format!("{topic}/0/10"),
        "nothing old is read again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nacked_messages_are_handed_out_again() {
    let Some(brokers) = brokers() else { return };
    let topic = unique("kmsw-nack");
    let group = unique("kmsw-group");
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("message.timeout.ms", "10000")
        .create()
        .expect("producer");
    create_topic(&brokers, &topic).await;
    for i in 0..2 {
        producer
            .send(
                FutureRecord::<(), _>::to(&topic).payload(&format!("m{i}")),
                Duration::from_secs(10),
            )
            .await
            .map_err(|(e, _)| e)
            .expect("produce");
    }
    let mut src = source(&brokers, &topic, &group);
    let b0 = next(&mut src).await;
    assert_eq!(&b0.bytes[..], b"m0");
    b0.ack.nack();
    let b1 = next(&mut src).await;
    assert_eq!(&b1.bytes[..], b"m1");
    b1.ack.ack();
    let again = next(&mut src).await;
    assert_eq!(again.origin, format!("{topic}/0/0"));
    assert_eq!(&again.bytes[..], b"m0");
    again.ack.ack();
    src.shutdown().await.expect("shutdown");
}
