//! The `s3_notification` target: `kmswatch_sources::s3event`, the parser of the SQS message
//! bodies that announce S3 objects (S3 event notifications, the same wrapped by SNS,
//! EventBridge `Object Created`, CloudTrail's delivery notices). Anyone who can send to the
//! queue or publish to the topic chooses these bytes.
//!
//! Two kinds of input, chosen by the first byte's low bit:
//! * `0`: the rest is a message body as received (lossily made UTF-8, as SQS bodies are
//!   text): parsing never panics, every announced object's `origin()` is `s3://BUCKET/KEY`;
//! * `1`: the rest is `bucket \0 key` and the second bit picks the envelope (raw S3
//!   notification or SNS-wrapped, or, third bit, EventBridge): the key is URL-encoded the
//!   way S3 writes notifications, and parsing must give back exactly that bucket and key —
//!   the object kmswatch then reads is the object that was announced.

// The parser's own source file, compiled here rather than through a dependency on
// `kmswatch-sources`, which also brings the AWS SDK, rdkafka (librdkafka, OpenSSL) and aws-lc:
// the instrumented cold build took 42 min (15 min CPU) with it and 8 min (2.6 min CPU)
// without, on a loaded 2-core machine, for a module that needs only serde_json and
// thiserror. It is the same file, not a copy: a change to it is fuzzed at the next run.
// Should it start using other items of its crate, depend on `kmswatch-sources` instead (or
// give the module a crate of its own).
#[path = "../../crates/kmswatch-sources/src/s3event.rs"]
#[allow(dead_code)]
mod s3event;

use s3event::{decode_key, is_bucket_name, parse_notice, Notice, ObjectRef};

/// Run one input.
pub fn check(data: &[u8]) {
    match data.split_first() {
        Some((mode, rest)) if mode & 1 == 1 => round_trip(*mode, rest),
        Some((_, rest)) => body(rest),
        None => body(data),
    }
}

fn body(bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    if let Ok(Notice::Objects(objects)) = parse_notice(&text) {
        for o in &objects {
            assert_eq!(o.origin(), format!("s3://{}/{}", o.bucket, o.key));
        }
    }
}

/// URL-encode an object key as S3 does in event notifications (`application/x-www-form-
/// urlencoded`: space as `+`, unreserved bytes as is, the rest `%XX`).
pub fn encode_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for &b in key.as_bytes() {
        match b {
            b' ' => out.push('+'),
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                out.push(char::from(b))
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

fn round_trip(mode: u8, rest: &[u8]) {
    let (bucket, key) = match rest.iter().position(|&b| b == 0) {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, &b""[..]),
    };
    let bucket = String::from_utf8_lossy(bucket).into_owned();
    let key = String::from_utf8_lossy(key).into_owned();
    let encoded = encode_key(&key);
    assert_eq!(decode_key(&encoded), key, "decode_key(encode_key(k)) == k");
    let size = rest.len() as u64;
    let body = if mode & 4 != 0 {
        serde_json::json!({
            "version": "0", "detail-type": "Object Created", "source": "aws.s3",
            "detail": {"bucket": {"name": bucket}, "object": {"key": encoded, "size": size}},
        })
    } else {
        serde_json::json!({"Records": [{
            "eventVersion": "2.1", "eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
            "s3": {"bucket": {"name": bucket}, "object": {"key": encoded, "size": size}},
        }]})
    };
    let body = if mode & 2 != 0 {
        serde_json::json!({"Type": "Notification", "MessageId": "m", "Message": body.to_string()})
    } else {
        body
    };
    let parsed = parse_notice(&body.to_string());
    // A bucket name becomes part of the request's host name: a notice naming something that
    // is not an S3 bucket name (or a key outside 1..=1024 bytes) is refused, never read.
    if !is_bucket_name(&bucket) || key.is_empty() || key.len() > 1024 {
        assert!(
            !matches!(parsed, Ok(Notice::Objects(ref o)) if !o.is_empty()),
            "a notice naming an invalid bucket or key was read: {body} -> {parsed:?}"
        );
        return;
    }
    let expected = ObjectRef {
        bucket,
        key,
        size: Some(size),
    };
    assert_eq!(
        parsed,
        Ok(Notice::Objects(vec![expected])),
        "the announced object is the object read: {body}"
    );
}
