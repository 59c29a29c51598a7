//! Integration tests of `aws_s3_sqs` and `aws_s3` against a real S3/SQS emulator
//! (moto_server), started by `scripts/services up` (which `scripts/test` sources). Skipped,
//! with a message, when `KMSWATCH_TEST_AWS_ENDPOINT` is not set.

mod common;

use std::time::Duration;

use common::{aws, endpoint, gzip, next, s3_notice, unique, PrivateMoto, TRAIL};
use kmswatch_sources::{reason, Batch, S3SqsSource, Source, SourceConfig};

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
    aws.send(&queue_url, s3_notice(&name, key)).await;

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
    let missing = "AWSLogs/111122223333/CloudTrail/eu-west-1/2024/05/01/missing.json.gz";
    let bodies = [
        serde_json::json!({"Service":"Amazon S3","Event":"s3:TestEvent","Bucket":name}).to_string(),
        s3_notice(&name, "AWSLogs/111122223333/CloudTrail-Digest/eu-west-1/2024/05/01/d.json.gz"),
        serde_json::json!({"Type":"Notification","MessageId":"m-1","TopicArn":"arn:aws:sns:eu-west-1:111122223333:ct","Message":s3_notice(&name, key)}).to_string(),
        s3_notice(&name, missing),
    ];
    for b in bodies {
        aws.send(&queue_url, b).await;
    }
    let mut src = S3SqsSource::new(aws.source_config(&queue_url))
        .await
        .expect("source");
    let skips = src.skip_counts();
    // The SNS-wrapped object comes out, and the missing object as a dead letter; the test
    // event and the digest are deleted (and counted) by the source itself.
    let mut got = Vec::new();
    for _ in 0..2 {
        let b = next(&mut src).await;
        got.push((b.origin.clone(), b.dead.len()));
        b.ack.ack();
    }
    got.sort();
    let mut want = vec![
        (format!("s3://{name}/{key}"), 0),
        (format!("s3://{name}/{missing}"), 1),
    ];
    want.sort();
    assert_eq!(got, want);
    aws.wait_empty(&queue_url).await;
    assert_eq!(
        skips.snapshot(),
        vec![("cloudtrail_digest", 1), ("s3_test_event", 1)]
    );
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

/// A batch that holds only one dead letter for `location`, with no bytes of its own.
fn assert_set_aside(b: &Batch, location: &str, why: &str) {
    assert!(b.bytes.is_empty(), "{} bytes handed over", b.bytes.len());
    assert_eq!(b.origin, location);
    assert_eq!(b.dead.len(), 1, "{:?}", b.dead);
    assert_eq!(b.dead[0].location, location);
    assert_eq!(b.dead[0].reason, why, "{:?}", b.dead[0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_object_is_one_dead_letter_and_its_message_waits_for_the_ack() {
    let Some(ep) = endpoint() else { return };
    let aws = aws(&ep).await;
    let name = unique("kmsw-gone");
    let (queue_url, _) = aws.queue(&name).await;
    aws.bucket(&name).await;
    // Written, announced, then deleted before kmswatch reads it.
    let key = "AWSLogs/111122223333/CloudTrail/us-east-1/2024/05/01/gone.json.gz";
    aws.put(&name, key, gzip(TRAIL)).await;
    aws.send(&queue_url, s3_notice(&name, key)).await;
    aws.s3
        .delete_object()
        .bucket(&name)
        .key(key)
        .send()
        .await
        .expect("delete object");

    let mut src = S3SqsSource::new(aws.source_config(&queue_url))
        .await
        .expect("source");
    let location = format!("s3://{name}/{key}");
    let b = next(&mut src).await;
    assert_set_aside(&b, &location, reason::NO_SUCH_KEY);
    let dead = &b.dead[0];
    assert_eq!(dead.bytes, None, "S3 would still hold it");
    assert!(dead.detail.contains("404"), "{}", dead.detail);
    // Not deleted before the dead letter is written (the batch acknowledged): still in
    // flight past the 2 s visibility timeout ...
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(aws.queue_depth(&queue_url).await, 1);
    // ... and received again when the handle is dropped.
    drop(b);
    let b = next(&mut src).await;
    assert_set_aside(&b, &location, reason::NO_SUCH_KEY);
    b.ack.ack();
    aws.wait_empty(&queue_url).await;
    let extra = tokio::time::timeout(Duration::from_secs(3), src.next_batch()).await;
    assert!(extra.is_err(), "unexpected batch: {extra:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn object_over_max_object_bytes_is_set_aside_without_being_downloaded() {
    if endpoint().is_none() {
        return;
    }
    // A moto_server of this test's own, logging every request it receives.
    let Some(moto) = PrivateMoto::start(true) else {
        return;
    };
    let aws = aws(&moto.endpoint).await;
    let name = unique("kmsw-big");
    let (queue_url, _) = aws.queue(&name).await;
    aws.bucket(&name).await;
    let big = vec![b'x'; 2 << 20];
    aws.put(&name, "big.json", big.clone()).await;
    aws.put(&name, "small.json.gz", gzip(TRAIL)).await;
    // The notification understates the size: HeadObject decides, not the message.
    let forged = serde_json::json!({"Records":[{"eventName":"ObjectCreated:Put","s3":{"bucket":{"name":name},"object":{"key":"big.json","size":10}}}]});
    aws.send(&queue_url, forged.to_string()).await;
    aws.send(&queue_url, s3_notice(&name, "small.json.gz"))
        .await;

    let cfg = aws.source_config(&queue_url);
    assert_eq!(cfg.max_object_bytes, 1 << 20);
    let mut src = S3SqsSource::new(cfg).await.expect("source");
    let mut batches = vec![next(&mut src).await, next(&mut src).await];
    batches.sort_by(|a, b| a.origin.cmp(&b.origin));
    let small = batches.pop().expect("small");
    let set_aside = batches.pop().expect("big");
    assert_eq!(&small.bytes[..], &gzip(TRAIL)[..]);
    assert!(small.dead.is_empty());
    assert_set_aside(
        &set_aside,
        &format!("s3://{name}/big.json"),
        reason::OBJECT_TOO_LARGE,
    );
    assert_eq!(set_aside.dead[0].size, Some(big.len() as u64));
    assert!(set_aside.dead[0].detail.contains("max_object_bytes"));
    small.ack.ack();
    set_aside.ack.ack();
    aws.wait_empty(&queue_url).await;

    let requests = moto.requests();
    let on = |method: &str, key: &str| {
        requests
            .iter()
            .filter(|(m, u)| m == method && u.contains(&format!("/{name}/{key}")))
            .count()
    };
    assert_eq!(on("HEAD", "big.json"), 1, "{requests:?}");
    assert_eq!(on("GET", "big.json"), 0, "the big object was downloaded");
    assert_eq!(on("GET", "small.json.gz"), 1, "{requests:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_that_is_not_a_notification_is_dead_lettered_with_its_body() {
    let Some(ep) = endpoint() else { return };
    let aws = aws(&ep).await;
    let name = unique("kmsw-junk");
    let (queue_url, _) = aws.queue(&name).await;
    let bodies = [
        "hello, this is not JSON".to_owned(),
        serde_json::json!({"detail-type":"Something Else","detail":{}}).to_string(),
    ];
    let mut ids = Vec::new();
    for b in &bodies {
        ids.push(aws.send(&queue_url, b.clone()).await);
    }
    let mut src = S3SqsSource::new(aws.source_config(&queue_url))
        .await
        .expect("source");
    let queue = queue_url
        .split_once("://")
        .map_or(&queue_url[..], |(_, r)| r);
    let check = |b: &Batch| -> usize {
        let i = bodies
            .iter()
            .position(|body| {
                b.dead.first().and_then(|d| d.bytes.as_deref()) == Some(body.as_bytes())
            })
            .expect("a dead letter carrying one of the bodies");
        let location = format!("sqs://{queue}#{}", ids[i]);
        assert_set_aside(b, &location, reason::NOT_A_NOTIFICATION);
        let d = &b.dead[0];
        assert_eq!(d.size, Some(bodies[i].len() as u64));
        assert_eq!(
            d.sha256.as_deref(),
            Some(
                hex::encode(<sha2::Sha256 as sha2::Digest>::digest(bodies[i].as_bytes())).as_str()
            )
        );
        assert!(d.detail.contains(&ids[i]), "{}", d.detail);
        i
    };
    let first = next(&mut src).await;
    let second = next(&mut src).await;
    let (a, b) = (check(&first), check(&second));
    assert_ne!(a, b);
    // Both stay on the queue until their batches are acknowledged.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(aws.queue_depth(&queue_url).await, 2);
    // One handle dropped: that message comes back, once; the other is deleted.
    drop(first);
    second.ack.ack();
    let again = next(&mut src).await;
    assert_eq!(check(&again), a);
    again.ack.ack();
    aws.wait_empty(&queue_url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn object_in_a_bucket_not_listed_is_set_aside_unread() {
    let Some(ep) = endpoint() else { return };
    let aws = aws(&ep).await;
    let trail = unique("kmsw-trail");
    let other = unique("kmsw-other");
    let (queue_url, _) = aws.queue(&trail).await;
    aws.bucket(&trail).await;
    aws.bucket(&other).await;
    let key = "AWSLogs/111122223333/CloudTrail/us-east-1/2024/05/01/x.json.gz";
    aws.put(&trail, key, gzip(TRAIL)).await;
    aws.put(&other, key, gzip(TRAIL)).await;
    // One message announcing an object in each bucket.
    let notice = serde_json::json!({"Records": [
        {"eventName":"ObjectCreated:Put","s3":{"bucket":{"name":trail},"object":{"key":key}}},
        {"eventName":"ObjectCreated:Put","s3":{"bucket":{"name":other},"object":{"key":key}}},
    ]});
    aws.send(&queue_url, notice.to_string()).await;
    let mut cfg = aws.source_config(&queue_url);
    cfg.buckets = vec![trail.clone()];
    let mut src = S3SqsSource::new(cfg).await.expect("source");
    let mut batches = vec![next(&mut src).await, next(&mut src).await];
    batches.sort_by_key(|b| b.dead.len());
    let set_aside = batches.pop().expect("other");
    let read = batches.pop().expect("trail");
    assert_eq!(read.origin, format!("s3://{trail}/{key}"));
    assert_eq!(&read.bytes[..], &gzip(TRAIL)[..]);
    assert_set_aside(
        &set_aside,
        &format!("s3://{other}/{key}"),
        reason::BUCKET_NOT_ALLOWED,
    );
    // The message goes once both are acknowledged.
    read.ack.ack();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(aws.queue_depth(&queue_url).await, 1);
    set_aside.ack.ack();
    aws.wait_empty(&queue_url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_sets_aside_objects_over_max_object_bytes() {
    let Some(ep) = endpoint() else { return };
    let aws = aws(&ep).await;
    let bucket = unique("kmsw-backfill-big");
    aws.bucket(&bucket).await;
    let day = "AWSLogs/111122223333/CloudTrail/us-east-1/2024/02/28";
    aws.put(&bucket, &format!("{day}/small.json.gz"), gzip(TRAIL))
        .await;
    aws.put(&bucket, &format!("{day}/big.json"), vec![b'y'; 2 << 20])
        .await;
    aws.put(
        &bucket,
        &format!("{day}/111122223333_CloudTrail-Digest_us-east-1_d.json.gz"),
        gzip(b"{}"),
    )
    .await;
    let cfg: SourceConfig = serde_json::from_value(serde_json::json!({
        "type": "aws_s3", "bucket": bucket, "endpoint_url": ep, "region": "us-east-1",
        "force_path_style": true, "start_date": "2024-02-28", "end_date": "2024-02-28",
        "max_object_bytes": 1 << 20,
    }))
    .expect("config");
    let mut src = Source::open(&cfg).await.expect("open");
    let skips = src.skip_counts();
    let mut read = Vec::new();
    let mut dead = Vec::new();
    while let Some(b) = src.next_batch().await.expect("batch") {
        if b.dead.is_empty() {
            read.push(b.origin.clone());
        } else {
            assert_set_aside(
                &b,
                &format!("s3://{bucket}/{day}/big.json"),
                reason::OBJECT_TOO_LARGE,
            );
            dead.push(b.dead[0].clone());
        }
    }
    assert_eq!(read, vec![format!("s3://{bucket}/{day}/small.json.gz")]);
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].size, Some(2 << 20));
    assert_eq!(skips.snapshot(), vec![("cloudtrail_digest", 1)]);
}
