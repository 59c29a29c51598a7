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
            assert_eq!(c.endpoint.expose(), "https://splunk:8088");
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

/// A webhook request that hangs is ended by `retry.request_timeout_ms`; the retry resumes at
/// the item that failed, so the items the endpoint already took are not posted again (a
/// webhook gets one request per item: re-sending the batch would repeat them on every
/// attempt, and forever from the spool).
#[tokio::test(flavor = "current_thread")]
async fn webhook_hanging_request_times_out_and_taken_items_are_not_resent() {
    let seen: Seen = Arc::default();
    let s2 = seen.clone();
    let hangs = Arc::new(Mutex::new(0usize));
    let h: Handler = Arc::new(move |r| {
        let hang = r.header("x-kmswatch-id") == Some("f-000003") && {
            let mut n = hangs.lock().unwrap();
            *n += 1;
            *n <= 2
        };
        s2.lock().unwrap().push(r);
        if hang {
            Reply::hang()
        } else {
            Reply::empty(200)
        }
    });
    let srv = Server::start(h).await;
    let dir = tempfile::tempdir().unwrap();
    let set = Arc::new(
        SinkSet::from_config(
            &[sink(json!({"type": "webhook", "url": format!("{}/hook/T000/B000/XXXX", srv.url()),
                          "batch": {"timeout_ms": 100, "max_in_flight": 1},
                          "retry": {"max_attempts": 5, "initial_backoff_ms": 50, "max_backoff_ms": 200, "request_timeout_ms": 500}}))],
            dir.path(),
        )
        .unwrap(),
    );
    let start = std::time::Instant::now();
    let res = common::deliver_each(&set, findings(6)).await;
    assert!(res.iter().all(Result::is_ok), "{res:?}");
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(1000) && took < Duration::from_secs(5),
        "two hanging requests ended by the 500 ms timeout: {took:?}"
    );
    let seen = seen.lock().unwrap();
    let mut per_id = std::collections::BTreeMap::<String, usize>::new();
    for r in seen.iter() {
        *per_id
            .entry(r.header("x-kmswatch-id").unwrap().to_string())
            .or_default() += 1;
    }
    let want: std::collections::BTreeMap<String, usize> = (0..6)
        .map(|i| (format!("f-{i:06}"), if i == 3 { 3 } else { 1 }))
        .collect();
    assert_eq!(per_id, want, "only the hanging item was posted again");
    assert_eq!(set.metrics()[0].retried, 2);
}

/// A destination that answers `503` with `Retry-After: 0` forever must not be hammered: the
/// retry waits at least half its exponential back-off (`initial_backoff_ms · 2^n`, capped at
/// `max_backoff_ms`), whatever `Retry-After` says, on the fresh path and from the spool.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_zero_does_not_make_a_retry_storm() {
    let seen: Seen = Arc::default();
    let s2 = seen.clone();
    let h: Handler = Arc::new(move |r| {
        s2.lock().unwrap().push(r);
        let mut rep = Reply::empty(503);
        rep.headers.push(("Retry-After".into(), "0".into()));
        rep
    });
    let srv = Server::start(h).await;
    let dir = tempfile::tempdir().unwrap();
    let set = SinkSet::from_config(
        &[sink(json!({"type": "webhook", "url": srv.url(), "batch": {"timeout_ms": 1},
                      "retry": {"max_attempts": 3, "initial_backoff_ms": 100, "max_backoff_ms": 400}}))],
        dir.path(),
    )
    .unwrap();
    set.deliver(Arc::new(Outgoing::Finding(finding(
        "r-1", "rule-0", "high",
    ))))
    .await
    .unwrap();
    assert_eq!(set.metrics()[0].spooled, 1);
    let from = std::time::Instant::now();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let n = seen.lock().unwrap().iter().filter(|r| r.at >= from).count();
    // The drainer's back-off reaches its 400 ms cap: at least 200 ms between requests.
    assert!((3..=16).contains(&n), "{n} requests in 3 s");
    set.shutdown(Duration::from_millis(100)).await;
}

/// `check_connect` (`kmswatch validate --connect`) changes nothing on the system: a file
/// sink whose directory does not exist yet is reported as "would be created" (its nearest
/// existing ancestor is writable) and nothing is created; an ancestor that is a file is an
/// error naming it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_check_connect_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("not/yet/findings.jsonl");
    std::fs::write(dir.path().join("a-file"), "x").unwrap();
    let blocked = dir.path().join("a-file/sub/findings.jsonl");
    let existing = dir.path().join("existing.jsonl");
    std::fs::write(&existing, "").unwrap();
    let spool = tempfile::tempdir().unwrap();
    let set = SinkSet::from_config(
        &[
            sink(json!({"type": "file", "path": target})),
            sink(json!({"type": "file", "path": blocked})),
            sink(json!({"type": "file", "path": existing})),
        ],
        spool.path(),
    )
    .unwrap();
    let rep = set.check_connect().await;
    let ok = rep[0].result.as_ref().unwrap();
    assert!(ok.contains("would be created"), "{ok}");
    assert!(
        !dir.path().join("not").exists(),
        "check_connect created a directory"
    );
    let err = rep[1].result.as_ref().unwrap_err();
    assert!(err.message.contains("a-file"), "{}", err.message);
    assert!(rep[2].result.as_ref().unwrap().contains("writable"));
    assert_eq!(std::fs::read(&existing).unwrap(), b"");
    set.shutdown(Duration::from_millis(100)).await;
    assert!(!dir.path().join("not").exists());

    // Without a running set (`kmswatch validate --connect`): no spool either.
    let cfgs = [sink(json!({"type": "file", "path": target}))];
    let rep = SinkSet::check_connect_configs(&cfgs).await.unwrap();
    assert!(rep[0].result.as_ref().unwrap().contains("would be created"));
    let entries: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        entries.len(),
        2,
        "nothing new in {}: {entries:?}",
        dir.path().display()
    );
}

/// Every numeric setting is range-checked before any I/O (`kmswatch validate`): a value out
/// of range is an error naming the key, never a panic or a huge allocation at start.
#[test]
fn numeric_settings_are_range_checked() {
    let base = || json!({"type": "splunk_hec", "endpoint": "https://splunk:8088", "token": "t"});
    let with = |path: &[&str], v: Value| {
        let mut c = base();
        let mut at = &mut c;
        for (i, k) in path.iter().enumerate() {
            if i + 1 == path.len() {
                at[*k] = v.clone();
            } else {
                if at.get(*k).is_none() {
                    at[*k] = json!({});
                }
                at = &mut at[*k];
            }
        }
        sink(c)
    };
    assert!(SinkSet::validate(&[sink(base())]).is_ok());
    for (path, bad) in [
        (&["batch", "max_events"][..], json!(0)),
        (&["batch", "max_events"], json!(1_000_000_000u64)),
        (&["batch", "max_bytes"], json!(10)),
        (&["batch", "max_bytes"], json!(1u64 << 40)),
        (&["batch", "timeout_ms"], json!(86_400_000u64)),
        (&["batch", "max_in_flight"], json!(100_000)),
        (&["retry", "max_attempts"], json!(0)),
        (&["retry", "max_attempts"], json!(1_000_000)),
        (&["retry", "initial_backoff_ms"], json!(0)),
        (&["retry", "max_backoff_ms"], json!(86_400_000u64)),
        (&["retry", "request_timeout_ms"], json!(0)),
        (&["retry", "request_timeout_ms"], json!(86_400_000u64)),
        (&["spool", "max_spool_bytes"], json!(100)),
        (&["spool", "segment_bytes"], json!(1u64 << 40)),
        (&["ack_timeout_secs"], json!(0)),
        (&["ack_timeout_secs"], json!(1_000_000)),
        (&["ack_poll_interval_ms"], json!(0)),
        (&["max_pending_acks"], json!(0)),
        (&["max_pending_acks"], json!(10_000_000)),
    ] {
        let key = path.join(".");
        let e = SinkSet::validate(&[with(path, bad.clone())])
            .err()
            .unwrap_or_else(|| panic!("{key} = {bad} accepted"));
        assert!(e.to_string().contains(&key), "{key}: {e}");
    }
}
