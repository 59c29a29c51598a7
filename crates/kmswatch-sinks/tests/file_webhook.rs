//! File (rotation, routing by level/rule/tag, formats), webhook (HMAC signature, Slack text)
//! and configuration (the documented keys, unknown keys refused, validation, metrics).
#![allow(clippy::unwrap_used)]

mod common;

use common::{finding, findings, sink, Handler, Reply, Server};
use hmac::{Hmac, Mac};
use kmswatch_sinks::{Outgoing, SinkConfig, SinkSet};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::Duration;

async fn deliver(set: &SinkSet, items: Vec<Outgoing>) {
    for it in items {
        set.deliver(Arc::new(it)).await.unwrap();
    }
}

fn lines(p: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(p)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test]
async fn documented_config_keys_parse() {
    let hec: SinkConfig = sink(json!({
        "type": "splunk_hec", "endpoint": "https://splunk:8088", "token": "abc",
        "index": "kms", "sourcetype": "kmswatch:finding", "indexer_ack": true
    }));
    match &hec {
        SinkConfig::SplunkHec(c) => {
            assert_eq!(c.endpoint, "https://splunk:8088");
            assert_eq!(c.index.as_deref(), Some("kms"));
            assert_eq!(c.sourcetype, "kmswatch:finding");
            assert!(c.indexer_ack);
            assert!(c.gzip);
            assert_eq!(c.token.expose(), "abc");
            assert!(!format!("{c:?}").contains("abc"), "token redacted");
        }
        other => panic!("{other:?}"),
    }
    let file: SinkConfig = sink(json!({"type": "file", "path": "findings.jsonl"}));
    assert!(
        matches!(&file, SinkConfig::File(c) if c.path == std::path::Path::new("findings.jsonl"))
    );
    assert_eq!(
        SinkSet::validate(&[hec, file.clone(), file]).unwrap(),
        vec!["splunk_hec", "file", "file-2"]
    );
    // Unknown keys are refused, in the sink and in its nested sections.
    for bad in [
        json!({"type": "file", "path": "x", "max_byte": 1}),
        json!({"type": "file", "path": "x", "route": {"min_levle": "high"}}),
        json!({"type": "splunk_hec", "endpoint": "https://s", "token": "t", "ack": true}),
        json!({"type": "nope"}),
    ] {
        assert!(
            serde_json::from_value::<SinkConfig>(bad.clone()).is_err(),
            "{bad} accepted"
        );
    }
    // Validation: unset token, bad URL, bad level, format not offered by the sink.
    for bad in [
        json!({"type": "splunk_hec", "endpoint": "https://s", "token": "${HEC_TOKEN}"}),
        json!({"type": "splunk_hec", "endpoint": "splunk:8088", "token": "t"}),
        json!({"type": "file", "path": "x", "route": {"min_level": "severe"}}),
        json!({"type": "splunk_hec", "endpoint": "https://s", "token": "t", "format": "slack"}),
    ] {
        assert!(
            SinkSet::validate(&[sink(bad.clone())]).is_err(),
            "{bad} valid"
        );
    }
}

#[tokio::test]
async fn file_rotates_by_size_and_routes_by_level_rule_tag() {
    let dir = tempfile::tempdir().unwrap();
    let all = dir.path().join("all.jsonl");
    let crit = dir.path().join("crit.jsonl");
    let tagged = dir.path().join("tagged.jsonl");
    let cfgs = vec![
        sink(
            json!({"type": "file", "path": all, "max_bytes": 10_000, "max_files": 2,
                     "batch": {"timeout_ms": 1}}),
        ),
        sink(
            json!({"type": "file", "name": "crit", "path": crit, "format": "cim",
                     "route": {"min_level": "critical", "audit": false}, "batch": {"timeout_ms": 1}}),
        ),
        sink(json!({"type": "file", "name": "tagged", "path": tagged,
                     "route": {"tags": ["ATTACK.T1485"], "rules": ["rule-9"]}, "batch": {"timeout_ms": 1}})),
    ];
    let set = SinkSet::from_config(&cfgs, dir.path().join("spool")).unwrap();
    let mut items: Vec<Outgoing> = findings(30).into_iter().map(Outgoing::Finding).collect();
    items.push(Outgoing::Finding(finding("crit-1", "rule-9", "critical")));
    items.push(Outgoing::Audit(json!({"id": "audit-1"})));
    deliver(&set, items).await;
    set.shutdown(Duration::from_secs(1)).await;

    // Rotation: all.jsonl, all.jsonl.1, all.jsonl.2 (older ones dropped), each under max_bytes.
    let mut total = 0;
    for p in [
        all.clone(),
        all.with_extension("jsonl.1"),
        all.with_extension("jsonl.2"),
    ] {
        let size = std::fs::metadata(&p).map(|m| m.len()).unwrap_or(0);
        assert!(size <= 10_000, "{} is {size} bytes", p.display());
        total += lines(&p).len();
    }
    assert!(all.with_extension("jsonl.1").exists());
    assert!(!all.with_extension("jsonl.3").exists());
    let newest = lines(&all);
    assert_eq!(newest.last().unwrap()["id"], "audit-1");
    assert!(total < 32, "oldest rotated file dropped (kept {total})");

    let c = lines(&crit);
    assert_eq!(c.len(), 1);
    assert_eq!(c[0]["id"], "crit-1");
    assert_eq!(c[0]["signature"], "Title of rule-9");
    let t = lines(&tagged);
    assert_eq!(t.len(), 2, "rule-9 finding and the audit record");
    assert_eq!(t[0]["finding_info"]["uid"], "crit-1");

    let m = set.metrics();
    assert_eq!(m[1].sink, "crit");
    assert_eq!(m[1].sent, 1);
    assert_eq!(m[0].sent, 32);
}

type Seen = Arc<Mutex<Vec<common::Req>>>;

async fn webhook_server(fail_first: usize) -> (Server, Seen) {
    let seen: Seen = Arc::default();
    let s2 = seen.clone();
    let n = Arc::new(Mutex::new(0usize));
    let h: Handler = Arc::new(move |r| {
        s2.lock().unwrap().push(r);
        let mut n = n.lock().unwrap();
        *n += 1;
        if *n <= fail_first {
            let mut rep = Reply::empty(429);
            rep.headers.push(("Retry-After".into(), "0".into()));
            rep
        } else {
            Reply::empty(200)
        }
    });
    (Server::start(h).await, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_signs_bodies_and_retries() {
    let (srv, seen) = webhook_server(2).await;
    let dir = tempfile::tempdir().unwrap();
    let set = SinkSet::from_config(
        &[sink(
            json!({"type": "webhook", "url": format!("{}/hook", srv.url()), "secret": "k3y",
                       "headers": {"X-Team": "soc"},
                       "retry": {"initial_backoff_ms": 10}, "batch": {"timeout_ms": 1}}),
        )],
        dir.path(),
    )
    .unwrap();
    deliver(
        &set,
        vec![Outgoing::Finding(finding("w-1", "rule-0", "high"))],
    )
    .await;
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 3, "two 429s then 200");
    let r = &seen[2];
    assert_eq!(r.path, "/hook");
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.header("x-kmswatch-id"), Some("w-1"));
    assert_eq!(r.header("x-team"), Some("soc"));
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(b"k3y").unwrap();
    mac.update(&r.body);
    let want = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    assert_eq!(r.header("x-kmswatch-signature"), Some(want.as_str()));
    let v: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["finding_info"]["uid"], "w-1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_slack_text() {
    let (srv, seen) = webhook_server(0).await;
    let dir = tempfile::tempdir().unwrap();
    let set = SinkSet::from_config(
        &[sink(json!({"type": "webhook", "url": srv.url(), "format": "slack", "batch": {"timeout_ms": 1}}))],
        dir.path(),
    )
    .unwrap();
    deliver(
        &set,
        vec![Outgoing::Finding(finding("s-1", "rule-0", "critical"))],
    )
    .await;
    let seen = seen.lock().unwrap();
    let v: Value = serde_json::from_slice(&seen[0].body).unwrap();
    let text = v["text"].as_str().unwrap();
    assert_eq!(v.as_object().unwrap().len(), 1);
    assert!(text.contains("[Critical] Title of rule-0"), "{text}");
    assert!(text.contains("s-1"));
    assert!(seen[0].header("x-kmswatch-signature").is_none());
}
