//! A tiny HTTP/1.1 test server (one request per connection, `Connection: close`) for the Azure
//! Key Vault and Cloud KMS fakes.

#![allow(dead_code)]

use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// One request.
#[derive(Debug, Clone)]
pub struct Req {
    pub method: String,
    /// Path without the query.
    pub path: String,
    pub query: BTreeMap<String, String>,
    pub headers: BTreeMap<String, String>,
    pub body: String,
}

impl Req {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
    pub fn bearer(&self) -> Option<&str> {
        self.headers.get("authorization")?.strip_prefix("Bearer ")
    }
    pub fn form(&self) -> BTreeMap<String, String> {
        self.body
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (decode(k), decode(v)))
            .collect()
    }
}

pub fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let h = std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("00");
                out.push(u8::from_str_radix(h, 16).unwrap_or(b'?'));
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// One response.
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Resp {
    pub fn json(status: u16, v: Value) -> Resp {
        Resp {
            status,
            headers: vec![],
            body: v.to_string(),
        }
    }
    pub fn header(mut self, k: &str, v: &str) -> Resp {
        self.headers.push((k.into(), v.into()));
        self
    }
}

/// Serve `handler` on a free 127.0.0.1 port; returns the base URL. The server task ends with the
/// test's runtime.
pub async fn serve<H>(handler: H) -> String
where
    H: Fn(Req) -> Resp + Send + Sync + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let handler = Arc::new(handler);
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let handler = handler.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut tmp = [0u8; 8192];
                let header_end = loop {
                    let Ok(n) = sock.read(&mut tmp).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&tmp[..n]);
                    if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        break p;
                    }
                };
                let head = String::from_utf8_lossy(&buf[..header_end]).into_owned();
                let mut lines = head.split("\r\n");
                let first = lines.next().unwrap_or_default();
                let mut parts = first.split(' ');
                let method = parts.next().unwrap_or_default().to_string();
                let target = parts.next().unwrap_or_default().to_string();
                let headers: BTreeMap<String, String> = lines
                    .filter_map(|l| l.split_once(':'))
                    .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
                    .collect();
                let len: usize = headers
                    .get("content-length")
                    .and_then(|l| l.parse().ok())
                    .unwrap_or(0);
                let mut body = buf[header_end + 4..].to_vec();
                while body.len() < len {
                    let Ok(n) = sock.read(&mut tmp).await else {
                        return;
                    };
                    if n == 0 {
                        break;
                    }
                    body.extend_from_slice(&tmp[..n]);
                }
                let (path, q) = target.split_once('?').unwrap_or((&target, ""));
                let query = q
                    .split('&')
                    .filter_map(|kv| kv.split_once('='))
                    .map(|(k, v)| (decode(k), decode(v)))
                    .collect();
                let req = Req {
                    method,
                    path: path.to_string(),
                    query,
                    headers,
                    body: String::from_utf8_lossy(&body).into_owned(),
                };
                let resp = handler(req);
                let mut out = format!(
                    "HTTP/1.1 {} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n",
                    resp.status,
                    resp.body.len()
                );
                for (k, v) in &resp.headers {
                    out.push_str(&format!("{k}: {v}\r\n"));
                }
                out.push_str("\r\n");
                out.push_str(&resp.body);
                let _ = sock.write_all(out.as_bytes()).await;
                let _ = sock.shutdown().await;
            });
        }
    });
    format!("http://{addr}")
}

/// Shared mutable state for a fake.
pub type Shared<T> = Arc<Mutex<T>>;

// ------------------------------------------------------------------------ moto_server

/// A moto_server: the one `scripts/services up` started (`KMSWATCH_TEST_AWS_ENDPOINT`), or one
/// started here on a free 127.0.0.1 port (stopped on drop). `None` when neither is possible.
pub struct Moto(Option<Child>, pub String);

impl Drop for Moto {
    fn drop(&mut self) {
        if let Some(c) = self.0.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub fn moto() -> Option<Moto> {
    if let Ok(e) = std::env::var("KMSWATCH_TEST_AWS_ENDPOINT") {
        return Some(Moto(None, e));
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .ok()?
        .local_addr()
        .ok()?
        .port();
    let child = Command::new("moto_server")
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let m = Moto(Some(child), format!("http://127.0.0.1:{port}"));
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Some(m);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    None
}

/// Fake credentials and region for the emulators (the responders use the standard chain).
pub fn fake_aws_env() {
    std::env::set_var("AWS_ACCESS_KEY_ID", "testing");
    std::env::set_var("AWS_SECRET_ACCESS_KEY", "testing");
    std::env::set_var("AWS_REGION", "us-east-1");
}

// ---------------------------------------------------------------- CloudTrail test server

/// One event the fake CloudTrail knows.
#[derive(Debug, Clone)]
pub struct TrailEvent {
    pub id: String,
    pub name: String,
    pub key_arn: String,
}

/// One public key the fake CloudTrail lists.
#[derive(Debug, Clone)]
pub struct TrailKey {
    pub fingerprint: String,
    pub der: Vec<u8>,
}

#[derive(Debug, Default)]
pub struct Trail {
    pub events: Vec<TrailEvent>,
    pub keys: Vec<TrailKey>,
    /// Every call: (operation, region of the signature scope).
    pub calls: Vec<(String, String)>,
}

/// A CloudTrail test server speaking the JSON 1.1 protocol (`POST /`,
/// `X-Amz-Target: [com.amazonaws.cloudtrail.v20131101.]CloudTrail_20131101.OP`) for the two
/// operations moto does not implement: `LookupEvents` (by `EventId`) and `ListPublicKeys`.
/// Requests must be SigV4-signed for the `cloudtrail` service.
pub async fn cloudtrail(state: Shared<Trail>) -> String {
    serve(move |r| {
        let target = r.headers.get("x-amz-target").cloned().unwrap_or_default();
        let auth = r.headers.get("authorization").cloned().unwrap_or_default();
        let err = |code: &str, msg: &str| {
            Resp::json(400, json!({"__type": code, "message": msg}))
        };
        // The SDKs send `CloudTrail_20131101.OP`; the service also takes the fully qualified
        // `com.amazonaws.cloudtrail.v20131101.CloudTrail_20131101.OP`.
        let Some(op) = target
            .strip_prefix("com.amazonaws.cloudtrail.v20131101.")
            .unwrap_or(&target)
            .strip_prefix("CloudTrail_20131101.")
        else {
            return err("UnknownOperationException", "bad X-Amz-Target");
        };
        // Credential=AKID/DATE/REGION/cloudtrail/aws4_request
        let scope: Vec<&str> = auth
            .split("Credential=")
            .nth(1)
            .and_then(|c| c.split(',').next())
            .map(|c| c.split('/').collect())
            .unwrap_or_default();
        if r.method != "POST"
            || !auth.starts_with("AWS4-HMAC-SHA256 ")
            || scope.get(3) != Some(&"cloudtrail")
            || r.headers.get("content-type").map(String::as_str)
                != Some("application/x-amz-json-1.1")
        {
            return err("InvalidSignatureException", "not a signed JSON 1.1 CloudTrail request");
        }
        let mut s = state.lock().unwrap();
        s.calls.push((op.to_string(), scope.get(2).unwrap_or(&"").to_string()));
        let body = r.json();
        match op {
            "LookupEvents" => {
                let attrs = body["LookupAttributes"].as_array().cloned().unwrap_or_default();
                let [a] = attrs.as_slice() else {
                    return err("InvalidLookupAttributesException", "exactly one attribute");
                };
                if a["AttributeKey"] != "EventId" {
                    return err("InvalidLookupAttributesException", "EventId only here");
                }
                let id = a["AttributeValue"].as_str().unwrap_or_default();
                let events: Vec<Value> = s
                    .events
                    .iter()
                    .filter(|e| e.id == id)
                    .map(|e| {
                        json!({
                            "EventId": e.id,
                            "EventName": e.name,
                            "EventSource": "kms.amazonaws.com",
                            "EventTime": 1.7e9,
                            "ReadOnly": "false",
                            "Resources": [{"ResourceType": "AWS::KMS::Key", "ResourceName": e.key_arn}],
                            "CloudTrailEvent": json!({"eventID": e.id, "eventName": e.name, "resources": [{"ARN": e.key_arn}]}).to_string(),
                        })
                    })
                    .collect();
                Resp::json(200, json!({"Events": events}))
            }
            "ListPublicKeys" => {
                use base64::Engine;
                let keys: Vec<Value> = s
                    .keys
                    .iter()
                    .map(|k| {
                        json!({
                            "Value": base64::engine::general_purpose::STANDARD.encode(&k.der),
                            "ValidityStartTime": 1.0e9,
                            "ValidityEndTime": 2.0e9,
                            "Fingerprint": k.fingerprint,
                        })
                    })
                    .collect();
                Resp::json(200, json!({"PublicKeyList": keys}))
            }
            _ => err("UnknownOperationException", op),
        }
    })
    .await
}
