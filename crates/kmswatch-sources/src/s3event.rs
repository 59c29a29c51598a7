//! Parsing of the notifications that announce S3 objects on an SQS queue. Pure functions.
//!
//! Understood bodies: raw S3 event notifications (`{"Records":[{"s3":{...}}]}`), the same
//! wrapped by SNS (`{"Type":"Notification","Message":"<json string>"}`), EventBridge
//! `Object Created` events, and CloudTrail's own delivery notices
//! (`{"s3Bucket":"b","s3ObjectKey":["k"]}`). `s3:TestEvent` is recognised so it can be deleted.

use serde_json::Value;

/// One object announced by a notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectRef {
    /// Bucket name.
    pub bucket: String,
    /// Object key, decoded.
    pub key: String,
    /// Size in bytes when the notification says it.
    pub size: Option<u64>,
}

impl ObjectRef {
    /// `s3://bucket/key`.
    pub fn origin(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.key)
    }
}

/// What an SQS message body announces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// Objects to read (may be empty: e.g. only delete events).
    Objects(Vec<ObjectRef>),
    /// `s3:TestEvent`, sent when a notification is configured: delete it.
    TestEvent,
}

/// Why a message body is not a notification.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not an S3/SNS/EventBridge/CloudTrail notification: {0}")]
pub struct NoticeError(pub String);

/// Parse an SQS message body. Bucket names must follow S3's naming rules and keys be 1 to
/// 1024 bytes: the bucket becomes part of the request's host name (virtual-hosted style), so
/// a forged message must not be able to put anything else there.
pub fn parse_notice(body: &str) -> Result<Notice, NoticeError> {
    let v: Value = serde_json::from_str(body).map_err(|e| NoticeError(format!("not JSON: {e}")))?;
    let notice = parse_value(&v, 0)?;
    if let Notice::Objects(objects) = &notice {
        for o in objects {
            if !is_bucket_name(&o.bucket) {
                return Err(NoticeError(format!(
                    "{:?} is not an S3 bucket name",
                    o.bucket
                )));
            }
            if o.key.is_empty() || o.key.len() > 1024 {
                return Err(NoticeError(format!(
                    "an object key of {} bytes (S3 keys are 1 to 1024)",
                    o.key.len()
                )));
            }
        }
    }
    Ok(notice)
}

/// S3's bucket naming rules: 3 to 63 characters of lower-case letters, digits, `.` and `-`,
/// starting and ending with a letter or digit, no `..`, not an IPv4 address.
pub fn is_bucket_name(name: &str) -> bool {
    let b = name.as_bytes();
    let edge = |c: Option<&u8>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    (3..=63).contains(&b.len())
        && b.iter()
            .all(|&c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'.' || c == b'-')
        && edge(b.first())
        && edge(b.last())
        && !name.contains("..")
        && name.parse::<std::net::Ipv4Addr>().is_err()
}

fn parse_value(v: &Value, depth: u8) -> Result<Notice, NoticeError> {
    if depth > 3 {
        return Err(NoticeError("too deeply wrapped".into()));
    }
    let Some(obj) = v.as_object() else {
        return Err(NoticeError("not a JSON object".into()));
    };
    // SNS envelope.
    if obj.get("Type").and_then(Value::as_str) == Some("Notification") {
        let msg = obj
            .get("Message")
            .and_then(Value::as_str)
            .ok_or_else(|| NoticeError("SNS notification without a Message string".into()))?;
        let inner: Value = serde_json::from_str(msg)
            .map_err(|e| NoticeError(format!("SNS Message is not JSON: {e}")))?;
        return parse_value(&inner, depth + 1);
    }
    if obj.get("Event").and_then(Value::as_str) == Some("s3:TestEvent") {
        return Ok(Notice::TestEvent);
    }
    if let Some(records) = obj.get("Records").and_then(Value::as_array) {
        let mut out = Vec::new();
        for r in records {
            let name = r.get("eventName").and_then(Value::as_str).unwrap_or("");
            if !name.is_empty() && !name.starts_with("ObjectCreated") {
                continue;
            }
            let bucket = r
                .pointer("/s3/bucket/name")
                .and_then(Value::as_str)
                .ok_or_else(|| NoticeError("S3 record without s3.bucket.name".into()))?;
            let key = r
                .pointer("/s3/object/key")
                .and_then(Value::as_str)
                .ok_or_else(|| NoticeError("S3 record without s3.object.key".into()))?;
            out.push(ObjectRef {
                bucket: bucket.to_owned(),
                key: decode_key(key),
                size: r.pointer("/s3/object/size").and_then(Value::as_u64),
            });
        }
        return Ok(Notice::Objects(out));
    }
    if obj.get("source").and_then(Value::as_str) == Some("aws.s3") {
        if obj.get("detail-type").and_then(Value::as_str) != Some("Object Created") {
            return Ok(Notice::Objects(Vec::new()));
        }
        let bucket = v
            .pointer("/detail/bucket/name")
            .and_then(Value::as_str)
            .ok_or_else(|| NoticeError("EventBridge event without detail.bucket.name".into()))?;
        let key = v
            .pointer("/detail/object/key")
            .and_then(Value::as_str)
            .ok_or_else(|| NoticeError("EventBridge event without detail.object.key".into()))?;
        // EventBridge object keys are URL-encoded like S3 notifications'.
        return Ok(Notice::Objects(vec![ObjectRef {
            bucket: bucket.to_owned(),
            key: decode_key(key),
            size: v.pointer("/detail/object/size").and_then(Value::as_u64),
        }]));
    }
    if let Some(bucket) = obj.get("s3Bucket").and_then(Value::as_str) {
        let keys = obj
            .get("s3ObjectKey")
            .and_then(Value::as_array)
            .ok_or_else(|| NoticeError("CloudTrail notice without s3ObjectKey".into()))?;
        return Ok(Notice::Objects(
            keys.iter()
                .filter_map(Value::as_str)
                .map(|k| ObjectRef {
                    bucket: bucket.to_owned(),
                    key: k.to_owned(),
                    size: None,
                })
                .collect(),
        ));
    }
    Err(NoticeError(
        "no Records, SNS Message, EventBridge detail or s3Bucket".into(),
    ))
}

/// Decode an S3 notification key: `+` is a space, `%XX` a byte; invalid escapes stay as is.
pub fn decode_key(key: &str) -> String {
    let b = key.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        match c {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = b
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                if let Some(byte) = hex {
                    out.push(byte);
                    i += 3;
                    continue;
                }
                out.push(c);
            }
            _ => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// True for CloudTrail digest files, which carry hashes, not events.
pub fn is_digest_key(key: &str) -> bool {
    key.contains("CloudTrail-Digest")
}

#[cfg(test)]
mod tests {
    use super::*;

    const S3: &str = r#"{"Records":[{"eventVersion":"2.1","eventSource":"aws:s3","eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"ct-logs"},"object":{"key":"AWSLogs/111122223333/CloudTrail/eu-west-1/2024/05/01/111122223333_CloudTrail_eu-west-1_20240501T0000Z_a+b%2Bc.json.gz","size":123}}}]}"#;

    #[test]
    fn raw_s3_event() {
        let Ok(Notice::Objects(o)) = parse_notice(S3) else {
            panic!("not parsed")
        };
        assert_eq!(o.len(), 1);
        assert_eq!(o[0].bucket, "ct-logs");
        assert!(o[0].key.ends_with("_a b+c.json.gz"), "{}", o[0].key);
        assert_eq!(o[0].size, Some(123));
        assert!(o[0].origin().starts_with("s3://ct-logs/AWSLogs/"));
    }

    #[test]
    fn sns_wrapped() {
        let body =
            serde_json::json!({"Type":"Notification","MessageId":"m","Message":S3}).to_string();
        let Ok(Notice::Objects(o)) = parse_notice(&body) else {
            panic!("not parsed")
        };
        assert_eq!(o[0].bucket, "ct-logs");
        let test = serde_json::json!({"Type":"Notification","Message":"{\"Service\":\"Amazon S3\",\"Event\":\"s3:TestEvent\",\"Bucket\":\"b\"}"}).to_string();
        assert_eq!(parse_notice(&test), Ok(Notice::TestEvent));
    }

    #[test]
    fn eventbridge_and_cloudtrail_notices() {
        let eb = r#"{"version":"0","detail-type":"Object Created","source":"aws.s3","detail":{"bucket":{"name":"bkt"},"object":{"key":"k%20x.json","size":5}}}"#;
        assert_eq!(
            parse_notice(eb),
            Ok(Notice::Objects(vec![ObjectRef {
                bucket: "bkt".into(),
                key: "k x.json".into(),
                size: Some(5)
            }]))
        );
        let ct = r#"{"s3Bucket":"bkt","s3ObjectKey":["AWSLogs/1/CloudTrail/x.json.gz","AWSLogs/1/CloudTrail-Digest/y.json.gz"]}"#;
        let Ok(Notice::Objects(o)) = parse_notice(ct) else {
            panic!("not parsed")
        };
        assert_eq!(o.len(), 2);
        assert!(is_digest_key(&o[1].key));
        assert!(!is_digest_key(&o[0].key));
    }

    #[test]
    fn test_event_and_garbage() {
        assert_eq!(
            parse_notice(
                r#"{"Service":"Amazon S3","Event":"s3:TestEvent","Time":"t","Bucket":"b"}"#
            ),
            Ok(Notice::TestEvent)
        );
        assert!(parse_notice("hello").is_err());
        assert!(parse_notice(r#"{"Records":[{"s3":{}}]}"#).is_err());
        assert!(parse_notice(r#"{"a":1}"#).is_err());
        assert_eq!(decode_key("%zz%4"), "%zz%4");
        // A bucket name is part of the host name: only S3's grammar passes.
        for bad in [
            "evil.example.com:8443",
            "Bucket",
            "a",
            "x..y",
            "192.168.0.1",
            "b/c",
            "-b",
            "b@evil",
        ] {
            assert!(!is_bucket_name(bad), "{bad}");
            let body = format!(
                r#"{{"Records":[{{"s3":{{"bucket":{{"name":{bad:?}}},"object":{{"key":"k"}}}}}}]}}"#
            );
            assert!(parse_notice(&body).is_err(), "{body}");
        }
        assert!(is_bucket_name("ct-logs.111122223333"));
        let long_key = format!(
            r#"{{"s3Bucket":"b-1","s3ObjectKey":["{}"]}}"#,
            "k".repeat(1025)
        );
        assert!(parse_notice(&long_key).is_err());
        assert_eq!(decode_key("%E2%9C%93"), "\u{2713}");
    }
}
