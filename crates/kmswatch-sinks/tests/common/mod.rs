//! Test support: findings, and a small HTTP server (hyper, 127.0.0.1, random port) that can be
//! stopped and restarted on the same port, delay answers or reset connections.
#![allow(dead_code, clippy::unwrap_used)]

pub mod azure;
pub mod hec;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use kmswatch_model::Finding;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// A finding with a given uid, rule and level.
pub fn finding(uid: &str, rule: &str, level: &str) -> Finding {
    let (sev, sev_id) = kmswatch_model::severity_of(Some(level));
    let v = serde_json::json!({
        "class_uid": 2004, "category_uid": 2, "activity_id": 1, "type_uid": 200401,
        "time": 1_714_564_800_123i64, "start_time": 1_714_564_700_000i64, "end_time": 1_714_564_800_123i64,
        "severity": sev, "severity_id": sev_id, "status": "New", "status_id": 1,
        "message": format!("arn:aws:iam::111122223333:user/mallory scheduled deletion of a key ({uid})"),
        "finding_info": {
            "uid": uid, "title": format!("Title of {rule}"),
            "analytic": {"uid": rule, "name": format!("name_{rule}"), "type": "Rule", "type_id": 1}
        },
        "metadata": {"product": {"name": "kmswatch", "vendor_name": "kmswatch"}, "version": "1.3.0"},
        "cloud": {"provider": "AWS", "account": {"uid": "111122223333"}, "region": "eu-west-1"},
        "actor": {"user": {"uid": "arn:aws:iam::111122223333:user/mallory", "name": "mallory", "type": "IAMUser"}, "kind": "human"},
        "resources": [{"uid": "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab", "type": "kms_key", "cloud_provider": "AWS"}],
        "attacks": [{"technique": {"uid": "T1485", "name": "Data Destruction"}, "tactic": {"uid": "TA0040", "name": "Impact"}}],
        "evidences_count": 1, "count": 1,
        "kmswatch": {"rule_level": level, "tags": ["attack.impact", "attack.t1485"]}
    });
    serde_json::from_value(v).unwrap()
}

/// Findings `f-0000` ... with rules cycling over 3 ids.
pub fn findings(n: usize) -> Vec<Finding> {
    (0..n)
        .map(|i| finding(&format!("f-{i:06}"), &format!("rule-{}", i % 3), "high"))
        .collect()
}

/// What a handler answers.
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
    pub delay: Duration,
    /// Close the connection without an answer.
    pub reset: bool,
}

impl Reply {
    pub fn json(status: u16, body: serde_json::Value) -> Reply {
        Reply {
            status,
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: body.to_string(),
            delay: Duration::ZERO,
            reset: false,
        }
    }
    pub fn empty(status: u16) -> Reply {
        Reply {
            status,
            headers: vec![],
            body: String::new(),
            delay: Duration::ZERO,
            reset: false,
        }
    }
    pub fn reset() -> Reply {
        Reply {
            reset: true,
            ..Reply::empty(500)
        }
    }
    /// Never answers (the connection stays open until the client gives up).
    pub fn hang() -> Reply {
        Reply {
            delay: Duration::from_secs(3600),
            ..Reply::empty(200)
        }
    }
}

/// A received request.
#[derive(Debug, Clone)]
pub struct Req {
    pub method: String,
    pub path: String,
    pub query: String,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
    /// When the request arrived.
    pub at: std::time::Instant,
}

impl Req {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

type BoxErr = std::io::Error;

pub type Handler = Arc<dyn Fn(Req) -> Reply + Send + Sync>;

/// A test HTTP server.
pub struct Server {
    pub addr: SocketAddr,
    handler: Handler,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl Server {
    pub async fn start(handler: Handler) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let s = Server {
            addr,
            handler,
            task: Mutex::new(None),
        };
        s.run(listener);
        s
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn run(&self, listener: TcpListener) {
        let handler = self.handler.clone();
        let task = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let handler = handler.clone();
                conns.spawn(async move {
                    let svc = service_fn(move |req: Request<Incoming>| {
                        let handler = handler.clone();
                        async move {
                            let (parts, body) = req.into_parts();
                            let body = match body.collect().await {
                                Ok(b) => b.to_bytes(),
                                Err(e) => return Err(BoxErr::other(e.to_string())),
                            };
                            let r = Req {
                                method: parts.method.to_string(),
                                path: parts.uri.path().to_string(),
                                query: parts.uri.query().unwrap_or("").to_string(),
                                headers: parts
                                    .headers
                                    .iter()
                                    .map(|(k, v)| {
                                        (k.to_string(), v.to_str().unwrap_or("").to_string())
                                    })
                                    .collect(),
                                body,
                                at: std::time::Instant::now(),
                            };
                            let reply = handler(r);
                            if !reply.delay.is_zero() {
                                tokio::time::sleep(reply.delay).await;
                            }
                            if reply.reset {
                                return Err(BoxErr::other("reset"));
                            }
                            let mut b = Response::builder().status(reply.status);
                            for (k, v) in reply.headers {
                                b = b.header(k, v);
                            }
                            Ok::<_, BoxErr>(b.body(Full::new(Bytes::from(reply.body))).unwrap())
                        }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        *self.task.lock().unwrap() = Some(task);
    }

    /// Stops listening and drops every open connection (clients see refused connections).
    pub async fn stop(&self) {
        let t = self.task.lock().unwrap().take();
        if let Some(t) = t {
            t.abort();
            let _ = t.await;
        }
    }

    /// Listens again on the same port.
    pub async fn restart(&self) {
        let mut tries = 0;
        let listener = loop {
            match TcpListener::bind(self.addr).await {
                Ok(l) => break l,
                Err(e) if tries < 50 => {
                    tries += 1;
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("rebind {}: {e}", self.addr),
            }
        };
        self.run(listener);
    }
}

/// Log lines written while the test binary runs (one global `tracing` subscriber, all
/// levels, no colour). Tests running in parallel share it: look for your sink's name.
pub fn logs() -> Arc<Mutex<Vec<u8>>> {
    static BUF: std::sync::OnceLock<Arc<Mutex<Vec<u8>>>> = std::sync::OnceLock::new();
    BUF.get_or_init(|| {
        let buf: Arc<Mutex<Vec<u8>>> = Arc::default();
        let b2 = buf.clone();
        let sub = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_max_level(tracing::Level::TRACE)
            .with_writer(move || Capture(b2.clone()))
            .finish();
        tracing::subscriber::set_global_default(sub).unwrap();
        buf
    })
    .clone()
}

/// The captured log text.
pub fn log_text() -> String {
    String::from_utf8_lossy(&logs().lock().unwrap()).into_owned()
}

struct Capture(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Capture {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Polls `cond` every 50 ms until it holds or `secs` pass.
pub async fn wait_until(secs: u64, mut cond: impl FnMut() -> bool) -> bool {
    let end = tokio::time::Instant::now() + Duration::from_secs(secs);
    while tokio::time::Instant::now() < end {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    cond()
}

/// Delivers every finding concurrently (one task each, spawned in order) and returns each
/// result, in order.
pub async fn deliver_each(
    set: &Arc<kmswatch_sinks::SinkSet>,
    fs: Vec<Finding>,
) -> Vec<Result<(), kmswatch_sinks::DeliveryError>> {
    let mut hs = Vec::new();
    for f in fs {
        let set = set.clone();
        hs.push(tokio::spawn(async move {
            set.deliver(Arc::new(kmswatch_sinks::Outgoing::Finding(f)))
                .await
        }));
    }
    let mut out = Vec::new();
    for h in hs {
        out.push(h.await.unwrap());
    }
    out
}

/// Parses a sink config from JSON (as the binary does from YAML).
pub fn sink(v: serde_json::Value) -> kmswatch_sinks::SinkConfig {
    serde_json::from_value(v).unwrap()
}

/// Gunzips when the request says so.
pub fn body_of(r: &Req) -> Vec<u8> {
    if r.header("content-encoding") == Some("gzip") {
        use std::io::Read;
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&r.body[..])
            .read_to_end(&mut out)
            .unwrap();
        out
    } else {
        r.body.to_vec()
    }
}
