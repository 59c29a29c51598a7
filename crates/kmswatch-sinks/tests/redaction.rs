//! Secrets never leave the sinks in text (issue 12): URLs that carry credentials (webhook
//! paths, `?token=` queries, userinfo), tokens, client secrets, SASL passwords, librdkafka
//! secret properties and header values are absent from every rendering of a sink config
//! (`Debug`), every validation and setup error, every connect-check report (success and
//! failure), every delivery error, the dead-letter file and every log line — even when the
//! destination echoes the request back in its error answer.
#![allow(clippy::unwrap_used)]

mod common;

use common::{finding, logs, sink, Handler, Reply, Server};
use kmswatch_sinks::{Outgoing, SinkSet};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

/// Every secret value used below. None may appear in any text the sinks produce.
const SECRETS: &[&str] = &[
    "T0SECRETPATH",
    "B0SECRETPATH",
    "qtok-5ecret",
    "userinfo-pw",
    "hec-tok-5ecret",
    "hecq-5ecret",
    "hecinfo-pw",
    "sentinel-sig-5ecret",
    "authority-pw",
    "cl1ent-5ecret",
    "imds-5ecret",
    "sasl-5ecret",
    "ssl-key-5ecret",
    "keystore-5ecret",
    "hdr-5ecret",
    "hmac-5ecret",
];

fn assert_clean(what: &str, text: &str) {
    for s in SECRETS {
        assert!(!text.contains(s), "{what} shows the secret {s:?}:\n{text}");
    }
}

/// A destination that refuses everything and echoes the request (path, query and body) in
/// its answer, as a misconfigured proxy or a chatty API might.
async fn echo_server(status: u16) -> Server {
    let h: Handler = Arc::new(move |r| {
        let text = format!(
            "{} {}?{} refused; body was {}",
            r.method,
            r.path,
            r.query,
            String::from_utf8_lossy(&r.body)
        );
        let mut rep = Reply::json(status, json!({"text": text, "code": 4}));
        rep.body = text.clone() + &rep.body;
        rep
    });
    Server::start(h).await
}

/// A port nothing listens on.
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

fn configs(echo: &str, closed: u16) -> Vec<kmswatch_sinks::SinkConfig> {
    let host = echo.trim_start_matches("http://");
    vec![
        sink(json!({"type": "webhook", "name": "hook",
            "url": format!("{echo}/services/T0SECRETPATH/B0SECRETPATH?token=qtok-5ecret"),
            "secret": "hmac-5ecret", "headers": {"Authorization": "Bearer hdr-5ecret"},
            "batch": {"timeout_ms": 1},
            "retry": {"max_attempts": 1, "initial_backoff_ms": 10, "max_backoff_ms": 20, "request_timeout_ms": 1000}})),
        sink(json!({"type": "webhook", "name": "hook-down",
            "url": format!("http://user:userinfo-pw@127.0.0.1:{closed}/services/T0SECRETPATH?token=qtok-5ecret"),
            "batch": {"timeout_ms": 1},
            "retry": {"max_attempts": 1, "initial_backoff_ms": 10, "max_backoff_ms": 20, "request_timeout_ms": 1000}})),
        sink(json!({"type": "splunk_hec", "name": "hec",
            "endpoint": format!("http://hec:hecinfo-pw@{host}/?token=hecq-5ecret"),
            "token": "hec-tok-5ecret", "indexer_ack": true,
            "batch": {"timeout_ms": 1},
            "retry": {"max_attempts": 1, "initial_backoff_ms": 10, "max_backoff_ms": 20, "request_timeout_ms": 1000}})),
        sink(json!({"type": "sentinel", "name": "sentinel",
            "endpoint": format!("{echo}/?sig=sentinel-sig-5ecret"),
            "dcr_immutable_id": "dcr-0011", "auth": {"kind": "client_secret", "tenant_id": "t", "client_id": "c",
                "client_secret": "cl1ent-5ecret", "authority": format!("http://au:authority-pw@{host}")},
            "retry": {"max_attempts": 1, "request_timeout_ms": 1000}})),
        sink(json!({"type": "sentinel", "name": "sentinel-mi",
            "endpoint": format!("http://127.0.0.1:{closed}/"),
            "dcr_immutable_id": "dcr-0011", "auth": {"kind": "managed_identity",
                "endpoint": format!("http://127.0.0.1:{closed}/token/T0SECRETPATH?key=imds-5ecret")},
            "retry": {"max_attempts": 1, "request_timeout_ms": 1000}})),
        sink(
            json!({"type": "kafka", "name": "kafka", "brokers": format!("127.0.0.1:{closed}"), "topic": "t",
            "sasl_password": "sasl-5ecret",
            "properties": {"ssl.key.password": "ssl-key-5ecret", "ssl.keystore.password": "keystore-5ecret"},
            "retry": {"max_attempts": 1, "request_timeout_ms": 1000}}),
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_never_appear_in_configs_errors_reports_or_logs() {
    let logs = logs();
    let echo = echo_server(400).await;
    let closed = closed_port();
    let cfgs = configs(&echo.url(), closed);

    // Debug of every config, and of the whole list.
    for c in &cfgs {
        assert_clean("config Debug", &format!("{c:?}"));
        assert_clean("config Debug (pretty)", &format!("{c:#?}"));
    }

    // Validation errors quoting a bad URL.
    for bad in [
        json!({"type": "webhook", "url": "ftp://user:userinfo-pw@example.com/services/T0SECRETPATH?token=qtok-5ecret"}),
        json!({"type": "webhook", "url": "hooks.example.com/services/T0SECRETPATH?token=qtok-5ecret"}),
        json!({"type": "splunk_hec", "endpoint": "splunk:8088/?token=hecq-5ecret", "token": "hec-tok-5ecret"}),
        json!({"type": "sentinel", "endpoint": "https://dce.example.com/?sig=sentinel-sig-5ecret", "dcr_immutable_id": "d",
               "auth": {"kind": "client_secret", "tenant_id": "t", "client_id": "c", "client_secret": "cl1ent-5ecret",
                        "authority": "login:authority-pw@example.com"}}),
    ] {
        let e = SinkSet::validate(&[sink(bad)]).unwrap_err();
        assert_clean("validation error", &format!("{e} {e:?}"));
    }

    // A sink that cannot be built.
    let mut broken = configs(&echo.url(), closed).remove(0);
    if let kmswatch_sinks::SinkConfig::Webhook(w) = &mut broken {
        w.tls.ca_file = Some("/nonexistent/ca.pem".into());
    }
    let spool = tempfile::tempdir().unwrap();
    let e = SinkSet::from_config(&[broken], spool.path()).unwrap_err();
    assert_clean("setup error", &format!("{e} {e:?}"));

    // Connect checks: refusals echoing the request, a refused connection.
    let set = Arc::new(SinkSet::from_config(&cfgs, spool.path()).unwrap());
    assert_clean("SinkSet Debug", &format!("{set:?}"));
    let reports = set.check_connect().await;
    assert_eq!(reports.len(), cfgs.len());
    for r in &reports {
        let text = match &r.result {
            Ok(s) => s.clone(),
            Err(e) => format!("{e} {}", e.message),
        };
        assert_clean(&format!("connect report of {}", r.sink), &text);
        assert_clean("connect report Debug", &format!("{r:?}"));
    }
    assert!(reports.iter().any(|r| r.result.is_err()));
    // What an operator still sees: scheme, host and port.
    let echo_host = echo.url();
    let shown = |name: &str| match &reports.iter().find(|r| r.sink == name).unwrap().result {
        Ok(s) => s.clone(),
        Err(e) => e.message.clone(),
    };
    assert!(
        shown("hook").contains(&format!("{echo_host}/<redacted>")),
        "{}",
        shown("hook")
    );
    assert!(
        shown("hook-down").contains(&format!("http://<redacted>@127.0.0.1:{closed}/<redacted>"))
    );
    assert!(shown("hec").contains(&format!("http://<redacted>@{}/<redacted>", &echo_host[7..])));
    assert!(
        shown("sentinel-mi").contains(&format!(
            "managed identity endpoint http://127.0.0.1:{closed}/<redacted>"
        )),
        "{}",
        shown("sentinel-mi")
    );
    if std::env::var_os("KMSWATCH_SHOW").is_some() {
        for r in &reports {
            eprintln!("{r:?}");
        }
    }

    // The same checks without a running set (`kmswatch validate --connect`).
    for r in SinkSet::check_connect_configs(&cfgs).await.unwrap() {
        assert_clean(
            "connect report (no set)",
            &format!("{r:?} {:?}", r.result.as_ref().map_err(|e| e.to_string())),
        );
    }

    // Delivery: the echo answers 400 (the item is rejected and dead-lettered), the other
    // destinations are down (retried, spooled, logged).
    let res = set
        .deliver(Arc::new(Outgoing::Finding(finding(
            "x-1", "rule-0", "high",
        ))))
        .await;
    let e = res.unwrap_err();
    assert_clean("delivery error", &format!("{e} {e:?}"));
    let dl = std::fs::read_to_string(spool.path().join("hook/dead-letter.jsonl")).unwrap();
    assert!(dl.contains("x-1"));
    assert_clean("dead-letter file", &dl);
    tokio::time::sleep(Duration::from_millis(500)).await;
    set.shutdown(Duration::from_millis(200)).await;

    let text = String::from_utf8_lossy(&logs.lock().unwrap()).to_string();
    assert!(text.contains("hook"), "logs were captured: {text}");
    assert_clean("logs", &text);
    if std::env::var_os("KMSWATCH_SHOW").is_some() {
        eprintln!("{e}\n{dl}\n{text}");
    }
}
