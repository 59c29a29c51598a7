//! Helpers for the `kmswatch run` tests that use the S3/SQS emulator (moto, started by
//! `scripts/services up`, which exports `KMSWATCH_TEST_AWS_ENDPOINT`).

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_sqs::types::QueueAttributeName;
use std::io::Write;
use std::time::{Duration, Instant};

pub fn aws_endpoint() -> Option<String> {
    match std::env::var("KMSWATCH_TEST_AWS_ENDPOINT") {
        Ok(e) if !e.is_empty() => {
            for (k, v) in [
                ("AWS_ACCESS_KEY_ID", "testing"),
                ("AWS_SECRET_ACCESS_KEY", "testing"),
                ("AWS_EC2_METADATA_DISABLED", "true"),
                ("AWS_REGION", "us-east-1"),
            ] {
                if std::env::var_os(k).is_none() {
                    std::env::set_var(k, v);
                }
            }
            Some(e)
        }
        _ => {
            eprintln!("SKIPPED: KMSWATCH_TEST_AWS_ENDPOINT is not set; run scripts/test (or `source scripts/services up`)");
            None
        }
    }
}

pub fn unique(prefix: &str) -> String {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{prefix}-{}-{}", std::process::id(), n % 1_000_000_000)
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).expect("gzip");
    e.finish().expect("gzip")
}

pub struct Aws {
    pub s3: aws_sdk_s3::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub endpoint: String,
}

impl Aws {
    pub async fn new(endpoint: &str) -> Aws {
        let conf = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .endpoint_url(endpoint)
            .load()
            .await;
        Aws {
            s3: aws_sdk_s3::Client::from_conf(
                aws_sdk_s3::config::Builder::from(&conf)
                    .force_path_style(true)
                    .build(),
            ),
            sqs: aws_sdk_sqs::Client::new(&conf),
            endpoint: endpoint.to_string(),
        }
    }

    /// A bucket whose object-created notifications go to a new queue; returns the queue URL.
    pub async fn bucket_with_queue(&self, name: &str) -> String {
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
        self.s3
            .create_bucket()
            .bucket(name)
            .send()
            .await
            .expect("create bucket");
        self.s3
            .put_bucket_notification_configuration()
            .bucket(name)
            .notification_configuration(
                aws_sdk_s3::types::NotificationConfiguration::builder()
                    .queue_configurations(
                        aws_sdk_s3::types::QueueConfiguration::builder()
                            .queue_arn(&arn)
                            .events(aws_sdk_s3::types::Event::S3ObjectCreated)
                            .build()
                            .expect("queue configuration"),
                    )
                    .build(),
            )
            .send()
            .await
            .expect("bucket notification");
        // moto announces the configuration with an s3:TestEvent; kmswatch deletes it.
        url
    }

    pub async fn put(&self, bucket: &str, key: &str, body: Vec<u8>) {
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
    pub async fn depth(&self, url: &str) -> u64 {
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
}

pub async fn wait_until<F: FnMut() -> bool>(what: &str, secs: u64, mut f: F) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(
            Instant::now() < deadline,
            "timed out after {secs} s waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

pub async fn wait_queue_empty(aws: &Aws, url: &str, secs: u64) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let d = aws.depth(url).await;
        if d == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "queue still holds {d} message(s) after {secs} s"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

pub fn sqs_source(aws: &Aws, url: &str) -> String {
    format!(
        "  - {{ id: cloudtrail, type: aws_s3_sqs, queue_url: \"{url}\", region: us-east-1, endpoint_url: \"{}\", force_path_style: true, wait_time_secs: 1, visibility_timeout_secs: 6 }}\n",
        aws.endpoint
    )
}
