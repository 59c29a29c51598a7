//! Helpers of the S3/SQS integration tests: clients for the shared moto_server started by
//! `scripts/services up` (`KMSWATCH_TEST_AWS_ENDPOINT`), and a private moto_server per test
//! where a test needs one for itself (its request log, or IAM enforcement, which would break
//! every other test sharing the server).

#![allow(dead_code)] // each test file uses a part

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_config::BehaviorVersion;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_sqs::types::QueueAttributeName;
use kmswatch_sources::{AwsS3SqsConfig, Batch, OnBadObject, S3SqsSource};

/// The shared moto_server's endpoint, with fake credentials set when none are; `None` (and a
/// message) when the services are not running.
pub fn endpoint() -> Option<String> {
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

pub fn unique(prefix: &str) -> String {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{prefix}-{}-{}", std::process::id(), n % 1_000_000_000)
}

pub struct Aws {
    pub s3: aws_sdk_s3::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub endpoint: String,
}

/// Clients for `endpoint` with the environment's credentials.
pub async fn aws(endpoint: &str) -> Aws {
    aws_as(endpoint, None).await
}

/// Clients for `endpoint`, as the given access key (id, secret) when set.
pub async fn aws_as(endpoint: &str, key: Option<(&str, &str)>) -> Aws {
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(endpoint);
    if let Some((id, secret)) = key {
        loader = loader.credentials_provider(aws_sdk_s3::config::Credentials::new(
            id, secret, None, None, "test",
        ));
    }
    let conf = loader.load().await;
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
    pub async fn queue(&self, name: &str) -> (String, String) {
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

    pub async fn bucket(&self, name: &str) {
        self.s3
            .create_bucket()
            .bucket(name)
            .send()
            .await
            .expect("create bucket");
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

    /// Send a message; its id.
    pub async fn send(&self, queue_url: &str, body: String) -> String {
        self.sqs
            .send_message()
            .queue_url(queue_url)
            .message_body(body)
            .send()
            .await
            .expect("send")
            .message_id
            .expect("message id")
    }

    /// Messages visible plus in flight.
    pub async fn queue_depth(&self, url: &str) -> u64 {
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

    pub async fn wait_empty(&self, url: &str) {
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

    pub fn source_config(&self, queue_url: &str) -> AwsS3SqsConfig {
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
            buckets: Vec::new(),
            max_object_bytes: 1 << 20,
            max_backoff_secs: 2,
            format: None,
        }
    }
}

/// An S3 event notification announcing `key` in `bucket`.
pub fn s3_notice(bucket: &str, key: &str) -> String {
    serde_json::json!({"Records":[{"eventName":"ObjectCreated:Put","s3":{"bucket":{"name":bucket},"object":{"key":key}}}]}).to_string()
}

pub async fn next(src: &mut S3SqsSource) -> Batch {
    tokio::time::timeout(Duration::from_secs(30), src.next_batch())
        .await
        .expect("no batch within 30 s")
        .expect("source error")
        .expect("source ended")
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).expect("gzip");
    e.finish().expect("gzip")
}

pub const TRAIL: &[u8] = br#"{"Records":[{"eventVersion":"1.08","eventSource":"kms.amazonaws.com","eventName":"Decrypt","awsRegion":"us-east-1","eventTime":"2024-05-01T00:00:00Z","eventID":"11111111-2222-3333-4444-555555555555","recipientAccountId":"111122223333"}]}"#;

/// A moto_server of one test's own, on a free 127.0.0.1 port, stopped on drop.
pub struct PrivateMoto {
    child: Child,
    port: u16,
    pub endpoint: String,
    dir: tempfile::TempDir,
}

impl PrivateMoto {
    /// Start one (`record`: log every request); `None` when python3/moto are missing.
    pub fn start(record: bool) -> Option<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("free port");
        let dir = tempfile::tempdir().expect("tempdir");
        let log = std::fs::File::create(dir.path().join("moto.log")).expect("log");
        let mut cmd = Command::new("python3");
        cmd.args([
            "-m",
            "moto.server",
            "-H",
            "127.0.0.1",
            "-p",
            &port.to_string(),
        ])
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log);
        if record {
            cmd.env("MOTO_ENABLE_RECORDING", "true")
                .env("MOTO_RECORDER_FILEPATH", dir.path().join("requests.jsonl"));
        }
        let Ok(child) = cmd.spawn() else {
            eprintln!("SKIPPED: python3 -m moto.server cannot be started");
            return None;
        };
        let moto = Self {
            child,
            port,
            endpoint: format!("http://127.0.0.1:{port}"),
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while moto.http("GET", "/moto-api/", "").is_none() {
            assert!(
                Instant::now() < deadline,
                "private moto_server did not start; log: {}",
                std::fs::read_to_string(moto.dir.path().join("moto.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        Some(moto)
    }

    /// A plain HTTP/1.1 request to the server; the response, `None` when it cannot connect.
    fn http(&self, method: &str, path: &str, body: &str) -> Option<String> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.port,
            body.len()
        )
        .ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).ok()?;
        Some(out)
    }

    /// From now on every request is authenticated and authorized against moto's IAM.
    pub fn enforce_iam(&self) {
        let r = self
            .http("POST", "/moto-api/reset-auth", "0")
            .expect("reset-auth");
        assert!(
            r.starts_with("HTTP/1.1 200") || r.starts_with("HTTP/1.0 200"),
            "{r}"
        );
    }

    /// Create an IAM user allowed S3 and SQS but denied `s3:GetObject` on `deny_arn`; its
    /// access key (id, secret). Done with boto3, which moto brings.
    pub fn user_denied(&self, deny_arn: &str) -> (String, String) {
        let script = r#"
import json, sys, boto3
iam = boto3.client("iam", endpoint_url=sys.argv[1], region_name="us-east-1",
                   aws_access_key_id="testing", aws_secret_access_key="testing")
iam.create_user(UserName="kmswatch-reader")
iam.put_user_policy(UserName="kmswatch-reader", PolicyName="read", PolicyDocument=json.dumps({
    "Version": "2012-10-17",
    "Statement": [
        {"Effect": "Allow", "Action": ["s3:*", "sqs:*"], "Resource": "*"},
        {"Effect": "Deny", "Action": "s3:GetObject", "Resource": sys.argv[2]},
    ]}))
k = iam.create_access_key(UserName="kmswatch-reader")["AccessKey"]
print(k["AccessKeyId"], k["SecretAccessKey"])
"#;
        let out = Command::new("python3")
            .args(["-c", script, &self.endpoint, deny_arn])
            .output()
            .expect("python3");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let mut it = text.split_whitespace();
        let id = it.next().expect("access key id").to_owned();
        let secret = it.next().expect("secret").to_owned();
        (id, secret)
    }

    /// Every request recorded so far: (method, URL).
    pub fn requests(&self) -> Vec<(String, String)> {
        let path: PathBuf = self.dir.path().join("requests.jsonl");
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .map(|v| {
                (
                    v["method"].as_str().unwrap_or("").to_owned(),
                    v["url"].as_str().unwrap_or("").to_owned(),
                )
            })
            .collect()
    }
}

impl Drop for PrivateMoto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
