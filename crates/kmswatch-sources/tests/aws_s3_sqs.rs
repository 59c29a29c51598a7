//! Integration tests of `aws_s3_sqs` against a real S3/SQS emulator (moto_server), started by
//! `scripts/services up` (which `scripts/test` sources). Skipped, with a message, when
//! `KMSWATCH_TEST_AWS_ENDPOINT` is not set.

use std::io::Write;
use std::time::{Duration, Instant};

use aws_config::BehaviorVersion;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_sqs::types::QueueAttributeName;
use kmswatch_sources::{AwsS3SqsConfig, Batch, OnBadObject, S3SqsSource};

fn endpoint() -> Option<String> {
    match std::env::var("KMSWATCH_TEST_AWS_ENDPOINT") {
        Ok(e) if !e.is_empty() => {
            for (k, v) in [
                ("AWS_ACCESS_KEY_ID", "testing"),
                ("AWS_SECRET_ACCESS_KEY", "testing"),
                ("AWS_EC2_METADATA_DISABLED", "true"),
            ] {
                if std::env::var_os(k).is_none() {
                    std::env::set_var(k, v);
                }
            }
            Some(e)
        }
        _ => {
            eprintln!(
                "SKIPPED: KMSWATCH_TEST_AWS_ENDPOINT is not set; run scripts/test (or `source scripts/services up`)"
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

struct Aws {
    s3: aws_sdk_s3::Client,
    sqs: aws_sdk_sqs::Client,
    endpoint: String,
}

async fn aws(endpoint: &str) -> Aws {
    let conf = aws_config::defaults(BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .load()
        .await;
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&conf)
            .force_path_style(true)
            .build(),
    );
    Aws {
        s3,
        sqs: aws_sdk_sqs::Client::new(&conf),
        endpoint: endpoint.to_owned(),
    }
}

impl Aws {
    async fn queue(&self, name: &str) -> (String, String) {
        let url = self
            .sqs
            .create_queue()
            .queue_name(name)
            .send()
            .await
            .expect("create queue")
            .queue_url
            .expect("queue url");
        let arn = self
            .sqs
            .get_queue_attributes()
            .queue_url(&url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .expect("queue attributes")
            .attributes
            .and_then(|a| a.get(&QueueAttributeName::QueueArn).cloned())
            .expect("queue arn");
        (url, arn)
    }

    async fn bucket(&self, name: &str) {
        self.s3
            .create_bucket()
            .bucket(name)
            .send()
            .await
            .expect("create bucket");
    }

    async fn put(&self, bucket: &str, key: &str, body: Vec<u8>) {
        self.s3
            .put_object()
            .bucket(bucket)
            .key(key)
            .body(ByteStream::from(body))
            .send()
            .await
            .expect("put object");
    }

    /// Messages visible plus in flight.
    async fn queue_depth(&self, url: &str) -> u64 {
        let attrs = self
            .sqs
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .expect("queue attributes")
            .attributes
            .unwrap_or_default();
        attrs.values().filter_map(|v| v.parse::<u64>().ok()).sum()
    }

    async fn wait_empty(&self, url: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let depth = self.queue_depth(url).await;
            if depth == 0 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "queue still holds {depth} message(s)"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    fn source_config(&self, queue_url: &str) -> AwsS3SqsConfig {
        AwsS3SqsConfig {
            queue_url: queue_url.to_owned(),
            region: Some("us-east-1".into()),
            endpoint_url: Some(self.endpoint.clone()),
            force_path_style: true,
            wait_time_secs: 1,
            visibility_timeout_secs: 2,
            max_messages: 10,
            on_bad_object: OnBadObject::Delete,
            skip_digest_files: true,
            max_object_bytes: 1 << 20,
            max_backoff_secs: 2,
            format: None,
        }
    }
}

async fn next(src: &mut S3SqsSource) -> Batch {
    tokio::time::timeout(Duration::from_secs(30), src.next_batch())
        .await
        .expect("no batch within 30 s")
        .expect("source error")
        .expect("source ended")
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).expect("gzip");
    e.finish().expect("gzip")
}

const TRAIL: &[u8] = br#"{"Records":[{"eventVersion":"1.08","eventSource":"kms.amazonaws.com","eventName":"Decrypt","awsRegion":"us-east-1","eventTime":"2024-05-01T00:00:00Z","eventID":"11111111-2222-3333-4444-555555555555","recipientAccountId":"111122223333"}]}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_notification_is_read_then_deleted_after_ack() {
    let Some(ep) = endpoint() else { return };
    let aws = aws(&ep).await;
    let name = unique("kmsw-ct");
    let (queue_url, queue_arn) = aws.queue(&name).await;
    aws.bucket(&name).await;
    aws.s3
        .put_bucket_notification_configuration()
        .bucket(&name)
        .notification_configuration(
            aws_sdk_s3::types::NotificationConfiguration::builder()
                .queue_configurations(
                    aws_sdk_s3::types::QueueConfiguration::builder()
                        .queue_arn(&queue_arn)
                        .events(aws_sdk_s3::types::Event::S3ObjectCreated)
                        .build()
                        .expect("queue configuration"),
                )
                .build(),
        )
        .send()
        .await
        .expect("bucket notification");
    let key = "AWSLogs/111122223333/CloudTrail/us-east-1/2024/05/01/111122223333_CloudTrail_us-east-1_20240501T0000Z_a b.json.gz";
    let body = gzip(TRAIL);
    aws.put(&name, key, body.clone()).await;

    let mut src = S3SqsSource::new(aws.source_config(&queue_url))
        .await
        .expect("source");
    let b = next(&mut src).await;
    assert_eq!(b.origin, format!("s3://{name}/{key}"));
    assert_eq!(&b.bytes[..], &body[..], "object bytes as stored (gzip)");
    // Still in flight while unacknowledged, and kept invisible by the heartbeat past the
    // 2 s visibility timeout.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(aws.queue_depth(&queue_url).await, 1);
    b.ack.ack();
    aws.wait_empty(&queue_url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_or_nacked_handles_leave_the_message_for_redelivery() {
    let Some(ep) = endpoint() else { return };
    let aws = aws(&ep).await;
    let name = unique("kmsw-nack");
    let (queue_url, _) = aws.queue(&name).await;
    aws.bucket(&name).await;
    let key = "AWSLogs/111122223333/CloudTrail/us-east-1/2024/05/01/x.json.gz";
    aws.put(&name, key, gzip(TRAIL)).await;
    let notice = serde_json::json!({"Records":[{"eventName":"ObjectCreated:Put","s3":{"bucket":{"name":name},"object":{"key":key}}}]});
    aws.sqs
        .send_message()
        .queue_url(&queue_url)
        .message_body(notice.to_string())
        .send()
        .await
        .expect("send");

    let mut src = S3SqsSource::new(aws.source_config(&queue_url))
        .await
        .expect("source");
    let b = next(&mut src).await;
    assert_eq!(b.origin, format!("s3://{name}/{key}"));
    drop(b.ack);
    // Received again after the visibility timeout.
    let b = next(&mut src).await;
    assert_eq!(b.origin, format!("s3://{name}/{key}"));
    assert_eq!(aws.queue_depth(&queue_url).await, 1);
    b.ack.nack();
    let b = next(&mut src).await;
    assert_eq!(b.origin, format!("s3://{name}/{key}"));
    b.ack.ack();
    aws.wait_empty(&queue_url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sns_wrapped_test_events_digests_and_missing_objects() {
    let Some(ep) = endpoint() else { return };
    let aws = aws(&ep).await;
    let name = unique("kmsw-sns");
    let (queue_url, _) = aws.queue(&name).await;
    aws.bucket(&name).await;
    let key = "AWSLogs/111122223333/CloudTrail/eu-west-1/2024/05/01/sns.json.gz";
    aws.put(&name, key, gzip(TRAIL)).await;
    let s3_notice = |k: &str| {
        serde_json::json!({"Records":[{"eventName":"ObjectCreated:Put","s3":{"bucket":{"name":name},"object":{"key":k}}}]}).to_string()
    };
    let bodies = [
        serde_json::json!({"Service":"Amazon S3","Event":"s3:TestEvent","Bucket":name}).to_string(),
        s3_notice("AWSLogs/111122223333/CloudTrail/eu-west-1/2024/05/01/missing.json.gz"),
        s3_notice("AWSLogs/111122223333/CloudTrail-Digest/eu-west-1/2024/05/01/d.json.gz"),
        serde_json::json!({"Type":"Notification","MessageId":"m-1","TopicArn":"arn:aws:sns:eu-west-1:111122223333:ct","Message":s3_notice(key)}).to_string(),
    ];
    for b in bodies {
        aws.sqs
            .send_message()
            .queue_url(&queue_url)
            .message_body(b)
            .send()
            .await
            .expect("send");
    }
    let mut src = S3SqsSource::new(aws.source_config(&queue_url))
        .await
        .expect("source");
    // Only the SNS-wrapped object comes out; the test event, the digest and the missing object
    // are handled (deleted) by the source itself.
    let b = next(&mut src).await;
    assert_eq!(b.origin, format!("s3://{name}/{key}"));
    b.ack.ack();
    aws.wait_empty(&queue_url).await;
    let extra = tokio::time::timeout(Duration::from_secs(3), src.next_batch()).await;
    assert!(extra.is_err(), "unexpected batch: {extra:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_lists_only_the_requested_days_accounts_and_regions() {
    let Some(ep) = endpoint() else { return };
    let aws = aws(&ep).await;
    let bucket = unique("kmsw-backfill");
    aws.bucket(&bucket).await;
    let keys = [
        "trails/AWSLogs/111122223333/CloudTrail/us-east-1/2024/02/28/a.json.gz",
        "trails/AWSLogs/111122223333/CloudTrail/us-east-1/2024/02/29/b.json.gz",
        "trails/AWSLogs/111122223333/CloudTrail/us-east-1/2024/03/02/out-of-range.json.gz",
        "trails/AWSLogs/111122223333/CloudTrail/eu-west-1/2024/03/01/c.json.gz",
        "trails/AWSLogs/111122223333/CloudTrail-Digest/us-east-1/2024/02/29/digest.json.gz",
        "trails/AWSLogs/o-abcdef1234/444455556666/CloudTrail/us-east-1/2024/02/29/org.json.gz",
        "trails/AWSLogs/444455556666/CloudTrail/us-east-1/2024/02/29/other-account.json.gz",
    ];
    for k in keys {
        aws.put(&bucket, k, gzip(TRAIL)).await;
    }
    let read = |cfg: serde_json::Value| {
        let ep = ep.clone();
        let bucket = bucket.clone();
        async move {
            let mut cfg = cfg;
            cfg["type"] = "aws_s3".into();
            cfg["bucket"] = bucket.clone().into();
            cfg["prefix"] = "trails".into();
            cfg["endpoint_url"] = ep.into();
            cfg["region"] = "us-east-1".into();
            cfg["force_path_style"] = true.into();
            cfg["start_date"] = "2024-02-28".into();
            cfg["end_date"] = "2024-03-01".into();
            let cfg: kmswatch_sources::SourceConfig = serde_json::from_value(cfg).expect("config");
            let mut src = kmswatch_sources::Source::open(&cfg).await.expect("open");
            let mut got = Vec::new();
            while let Some(b) = src.next_batch().await.expect("batch") {
                assert_eq!(&b.bytes[..], &gzip(TRAIL)[..]);
                got.push(
                    b.origin
                        .trim_start_matches(&format!("s3://{bucket}/"))
                        .to_owned(),
                );
            }
            got.sort();
            got
        }
    };
    // Everything discovered: both accounts, the organization trail, both regions; no digest,
    // nothing outside the dates.
    let all = read(serde_json::json!({})).await;
    let mut expected: Vec<String> = [0usize, 1, 3, 5, 6]
        .iter()
        .map(|&i| keys[i].to_owned())
        .collect();
    expected.sort();
    assert_eq!(all, expected);
    // One account, one region.
    let one = read(serde_json::json!({"accounts":["111122223333"],"regions":["us-east-1"]})).await;
    assert_eq!(one, vec![keys[0].to_owned(), keys[1].to_owned()]);
    // The organization trail only.
    let org = read(serde_json::json!({"organization_ids":["o-abcdef1234"]})).await;
    assert_eq!(org, vec![keys[5].to_owned()]);
}
