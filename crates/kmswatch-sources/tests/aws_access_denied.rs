//! `aws_s3_sqs` and an object its credentials may not read (AccessDenied), against a
//! moto_server of this test's own with IAM enforced: the reader's policy denies
//! `s3:GetObject` on part of the bucket. The source takes its credentials from the
//! environment, so this file holds one test (one process). Skipped, with a message, when
//! `KMSWATCH_TEST_AWS_ENDPOINT` is not set (the services, and so moto, are not installed).

mod common;

use std::time::Duration;

use common::{aws, aws_as, endpoint, gzip, next, s3_notice, unique, PrivateMoto, TRAIL};
use kmswatch_sources::{reason, S3SqsSource};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn object_the_credentials_may_not_read_is_one_dead_letter() {
    if endpoint().is_none() {
        return;
    }
    let Some(moto) = PrivateMoto::start(false) else {
        return;
    };
    let admin = aws(&moto.endpoint).await;
    let name = unique("kmsw-denied");
    let (queue_url, _) = admin.queue(&name).await;
    admin.bucket(&name).await;
    let denied = "private/AWSLogs/111122223333/CloudTrail/us-east-1/2024/05/01/a.json.gz";
    let allowed = "public/AWSLogs/111122223333/CloudTrail/us-east-1/2024/05/01/b.json.gz";
    admin.put(&name, denied, gzip(TRAIL)).await;
    admin.put(&name, allowed, gzip(TRAIL)).await;
    admin.send(&queue_url, s3_notice(&name, denied)).await;
    admin.send(&queue_url, s3_notice(&name, allowed)).await;
    let (id, secret) = moto.user_denied(&format!("arn:aws:s3:::{name}/private/*"));
    moto.enforce_iam();
    std::env::set_var("AWS_ACCESS_KEY_ID", &id);
    std::env::set_var("AWS_SECRET_ACCESS_KEY", &secret);
    let reader = aws_as(&moto.endpoint, Some((&id, &secret))).await;

    let mut src = S3SqsSource::new(reader.source_config(&queue_url))
        .await
        .expect("source");
    let mut batches = vec![next(&mut src).await, next(&mut src).await];
    batches.sort_by_key(|b| b.dead.len());
    let set_aside = batches.pop().expect("denied");
    let read = batches.pop().expect("allowed");
    assert_eq!(read.origin, format!("s3://{name}/{allowed}"));
    assert_eq!(&read.bytes[..], &gzip(TRAIL)[..]);
    let location = format!("s3://{name}/{denied}");
    assert!(set_aside.bytes.is_empty());
    assert_eq!(set_aside.origin, location);
    assert_eq!(set_aside.dead.len(), 1, "{:?}", set_aside.dead);
    let d = &set_aside.dead[0];
    assert_eq!(d.location, location);
    assert_eq!(d.reason, reason::ACCESS_DENIED, "{d:?}");
    assert!(d.detail.contains("403"), "{}", d.detail);
    assert_eq!(d.bytes, None);
    // Neither message is deleted before its batch is acknowledged.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(reader.queue_depth(&queue_url).await, 2);
    read.ack.ack();
    set_aside.ack.ack();
    reader.wait_empty(&queue_url).await;
    let extra = tokio::time::timeout(Duration::from_secs(3), src.next_batch()).await;
    assert!(extra.is_err(), "unexpected batch: {extra:?}");
}
