//! The Splunk HEC sink against a test collector: exact requests, indexer acknowledgement,
//! failures (503 busy, resets, slow answers, lost acks, a collector down for a while, bad
//! tokens, rejected events), restart with a non-empty spool, and a throughput benchmark.
#![allow(clippy::unwrap_used)]

mod common;

use common::hec::{self, Fail};
use common::{finding, findings, sink, wait_until};
use kmswatch_sinks::{DeliveryError, Outgoing, SinkSet};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn hec_cfg(url: &str, extra: Value) -> kmswatch_sinks::SinkConfig {
    let mut v = json!({
        "type": "splunk_hec", "endpoint": url, "token": "11111111-2222-3333-4444-555555555555",
        "index": "kms", "sourcetype": "kmswatch:finding", "indexer_ack": true,
        "ack_poll_interval_ms": 20,
        "batch": {"max_events": 10, "timeout_ms": 20},
        "retry": {"max_attempts": 3, "initial_backoff_ms": 20, "max_backoff_ms": 200, "request_timeout_ms": 2000}
    });
    if let (Some(o), Value::Object(e)) = (v.as_object_mut(), extra) {
        o.extend(e);
    }
    sink(v)
}

use common::deliver_each as deliver_all;

fn ids(n: usize) -> BTreeSet<String> {
    (0..n).map(|i| format!("f-{i:06}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exact_requests_batching_gzip_channel_and_ack() {
    let (srv, st) = hec::start("11111111-2222-3333-4444-555555555555", true).await;
    st.lock().unwrap().ack_after_polls = 2;
    let spool = tempfile::tempdir().unwrap();
    let cfg = hec_cfg(
        &srv.url(),
        json!({"host": "kms-{cloud.provider}", "source": "kmswatch:{finding_info.analytic.uid}",
               "index": "kms_{cloud.account.uid}"}),
    );
    let set = Arc::new(SinkSet::from_config(&[cfg], spool.path()).unwrap());
    let start = Instant::now();
    let res = deliver_all(&set, findings(25)).await;
    assert!(res.iter().all(Result::is_ok), "{res:?}");
    // Resolved only after the acks: two `false` polls at 20 ms each first.
    assert!(start.elapsed() >= Duration::from_millis(40));
    let got: BTreeSet<String> = hec::indexed_uids(&st).into_iter().collect();
    assert_eq!(got, ids(25));

    {
        let s = st.lock().unwrap();
        let events: Vec<_> = s
            .requests
            .iter()
            .filter(|r| r.path == "/services/collector/event")
            .collect();
        assert!(events.len() >= 3, "25 findings in batches of at most 10");
        assert!(s.events_per_request.iter().all(|n| *n <= 10));
        let channel = events[0]
            .header("x-splunk-request-channel")
            .unwrap()
            .to_string();
        assert!(uuid::Uuid::parse_str(&channel).is_ok(), "channel is a UUID");
        for r in &events {
            assert_eq!(r.method, "POST");
            assert_eq!(
                r.header("authorization"),
                Some("Splunk 11111111-2222-3333-4444-555555555555")
            );
            assert_eq!(r.header("content-encoding"), Some("gzip"));
            assert_eq!(r.header("x-splunk-request-channel"), Some(channel.as_str()));
            assert_eq!(r.body[..2], [0x1f, 0x8b], "gzip magic");
        }
        let acks: Vec<_> = s
            .requests
            .iter()
            .filter(|r| r.path == "/services/collector/ack")
            .collect();
        assert!(!acks.is_empty());
        for r in &acks {
            assert_eq!(r.method, "POST");
            assert_eq!(r.header("x-splunk-request-channel"), Some(channel.as_str()));
            let v: Value = serde_json::from_slice(&r.body).unwrap();
            assert!(v["acks"].as_array().is_some_and(|a| !a.is_empty()));
        }
        let e = &s.indexed[0];
        assert_eq!(
            e["index"], "kms_111122223333",
            "index templated from the finding"
        );
        assert_eq!(e["sourcetype"], "kmswatch:finding");
        assert_eq!(e["host"], "kms-AWS");
        assert!(e["source"].as_str().unwrap().starts_with("kmswatch:rule-"));
        assert_eq!(e["time"], json!(1_714_564_800.123));
        assert_eq!(e["event"]["class_uid"], 2004);
    }
    let m = &set.metrics()[0];
    assert_eq!(m.sent, 25);
    assert_eq!(m.acked_latency.count, 25);
    assert_eq!(m.spooled_items, 0);
    set.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cim_format_and_routing() {
    let (srv, st) = hec::start("tok", false).await;
    let spool = tempfile::tempdir().unwrap();
    let cfg = sink(json!({
        "type": "splunk_hec", "endpoint": srv.url(), "token": "tok", "format": "cim", "gzip": false,
        "route": {"min_level": "high", "rules": ["rule-1", "Title of rule-2"]},
        "batch": {"timeout_ms": 10}
    }));
    let set = Arc::new(SinkSet::from_config(&[cfg], spool.path()).unwrap());
    let fs = vec![
        finding("a", "rule-1", "critical"),
        finding("b", "rule-2", "high"),
        finding("c", "rule-1", "medium"),   // below min_level
        finding("d", "rule-3", "critical"), // other rule
    ];
    assert!(deliver_all(&set, fs).await.iter().all(Result::is_ok));
    let s = st.lock().unwrap();
    let got: BTreeSet<_> = s
        .indexed
        .iter()
        .filter_map(|e| e["event"]["id"].as_str())
        .collect();
    assert_eq!(got, BTreeSet::from(["a", "b"]));
    let a = s.indexed.iter().find(|e| e["event"]["id"] == "a").unwrap();
    let ev = &a["event"];
    assert_eq!(ev["signature"], "Title of rule-1");
    assert_eq!(ev["rule_id"], "rule-1");
    assert_eq!(ev["rule_name"], "name_rule-1");
    assert_eq!(ev["severity"], "critical");
    assert_eq!(ev["user"], "mallory");
    assert_eq!(ev["user_type"], "human");
    assert_eq!(
        ev["dest"],
        "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    );
    assert_eq!(ev["mitre_technique_id"], json!(["T1485"]));
    assert_eq!(ev["mitre_tactic_id"], json!(["TA0040"]));
    assert_eq!(ev["vendor_account"], "111122223333");
    assert_eq!(ev["cloud_provider"], "AWS");
    assert!(s
        .requests
        .iter()
        .all(|r| r.header("content-encoding").is_none()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_reset_slow_and_lost_ack_lose_nothing() {
    let (srv, st) = hec::start("11111111-2222-3333-4444-555555555555", true).await;
    st.lock().unwrap().script = vec![
        Fail::Busy,
        Fail::Reset,
        Fail::Slow(Duration::from_millis(2500)), // > request timeout (2 s)
        Fail::LoseAck,
        Fail::Busy,
    ]
    .into();
    let spool = tempfile::tempdir().unwrap();
    let cfg = hec_cfg(
        &srv.url(),
        json!({"ack_timeout_secs": 1, "retry": {"max_attempts": 10, "initial_backoff_ms": 20, "max_backoff_ms": 100, "request_timeout_ms": 2000}}),
    );
    let set = Arc::new(SinkSet::from_config(&[cfg], spool.path()).unwrap());
    let res = deliver_all(&set, findings(40)).await;
    assert!(res.iter().all(Result::is_ok), "{res:?}");
    let uids = hec::indexed_uids(&st);
    let distinct: BTreeSet<String> = uids.iter().cloned().collect();
    assert_eq!(distinct, ids(40), "every finding indexed, under its own id");
    let m = &set.metrics()[0];
    assert!(m.retried >= 4, "retried {}", m.retried);
    assert_eq!(m.failed, 0);
    set.shutdown(Duration::from_secs(1)).await;
}

/// Length of the "collector down" outage: `KMSWATCH_TEST_OUTAGE_SECS` (default 6; set 60 for
/// the "down for a minute" — same code path, only longer).
fn outage() -> Duration {
    Duration::from_secs(
        std::env::var("KMSWATCH_TEST_OUTAGE_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(6)
            .max(2),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collector_down_then_back_spools_and_drains() {
    let (srv, st) = hec::start("11111111-2222-3333-4444-555555555555", true).await;
    let spool = tempfile::tempdir().unwrap();
    let cfg = hec_cfg(
        &srv.url(),
        json!({"retry": {"max_attempts": 2, "initial_backoff_ms": 50, "max_backoff_ms": 500, "request_timeout_ms": 1000}}),
    );
    let set = Arc::new(SinkSet::from_config(&[cfg], spool.path()).unwrap());
    assert!(deliver_all(&set, findings(10))
        .await
        .iter()
        .all(Result::is_ok));
    srv.stop().await;
    let down_at = Instant::now();
    // While down: deliver resolves (spooled), nothing is indexed.
    let more: Vec<_> = (10..200)
        .map(|i| finding(&format!("f-{i:06}"), "rule-0", "high"))
        .collect();
    let res = deliver_all(&set, more).await;
    assert!(res.iter().all(Result::is_ok));
    let m = set.metrics()[0].clone();
    assert_eq!(m.spooled, 190);
    assert!(m.spooled_items > 0 && m.spooled_bytes > 0);
    let outage = outage();
    tokio::time::sleep(outage.saturating_sub(down_at.elapsed())).await;
    let m = set.metrics()[0].clone();
    assert!(
        m.oldest_spooled_age_secs >= outage.as_secs_f64() / 2.0,
        "{m:?}"
    );
    assert_eq!(hec::indexed_uids(&st).len(), 10);
    srv.restart().await;
    assert!(
        wait_until(20, || hec::indexed_uids(&st)
            .into_iter()
            .collect::<BTreeSet<_>>()
            == ids(200))
        .await,
        "all 200 findings indexed after the collector came back"
    );
    // Only the expected ids, none under another id (the set equality above), and each once
    // (no ack was lost, so nothing had to be resent).
    assert!(wait_until(5, || set.metrics()[0].spooled_items == 0).await);
    assert_eq!(hec::indexed_uids(&st).len(), 200, "no duplicates");
    assert!(wait_until(5, || set.metrics()[0].spooled_items == 0).await);
    let m = &set.metrics()[0];
    assert_eq!(m.oldest_spooled_age_secs, 0.0);
    assert!(m.retried > 0);
    set.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_with_non_empty_spool_delivers_the_rest() {
    let (srv, st) = hec::start("11111111-2222-3333-4444-555555555555", true).await;
    srv.stop().await;
    let spool = tempfile::tempdir().unwrap();
    let cfg = hec_cfg(
        &srv.url(),
        json!({"retry": {"max_attempts": 1, "initial_backoff_ms": 10, "max_backoff_ms": 50, "request_timeout_ms": 500}}),
    );
    {
        let set = Arc::new(SinkSet::from_config(std::slice::from_ref(&cfg), spool.path()).unwrap());
        assert!(deliver_all(&set, findings(60))
            .await
            .iter()
            .all(Result::is_ok));
        assert_eq!(set.metrics()[0].spooled_items, 60);
        set.shutdown(Duration::from_millis(200)).await;
    }
    srv.restart().await;
    let set = Arc::new(SinkSet::from_config(&[cfg], spool.path()).unwrap());
    assert!(
        wait_until(15, || hec::indexed_uids(&st)
            .into_iter()
            .collect::<BTreeSet<_>>()
            == ids(60))
        .await
    );
    assert!(wait_until(5, || set.metrics()[0].spooled_items == 0).await);
    set.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_event_is_dead_lettered_others_delivered() {
    let (srv, st) = hec::start("tok", false).await;
    st.lock().unwrap().reject_uids = vec!["f-000003".into()];
    let spool = tempfile::tempdir().unwrap();
    let cfg = sink(json!({
        "type": "splunk_hec", "endpoint": srv.url(), "token": "tok",
        "batch": {"max_events": 10, "timeout_ms": 50}
    }));
    let set = Arc::new(SinkSet::from_config(&[cfg], spool.path()).unwrap());
    let res = deliver_all(&set, findings(8)).await;
    let rejected: Vec<_> = res
        .iter()
        .filter_map(|r| match r {
            Err(DeliveryError::Rejected { id, .. }) => Some(id.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(rejected, vec!["f-000003".to_string()]);
    assert_eq!(res.iter().filter(|r| r.is_ok()).count(), 7);
    let got: BTreeSet<_> = hec::indexed_uids(&st).into_iter().collect();
    let mut want = ids(8);
    want.remove("f-000003");
    assert_eq!(got, want);
    let dl = std::fs::read_to_string(spool.path().join("splunk_hec/dead-letter.jsonl")).unwrap();
    assert_eq!(dl.lines().count(), 1);
    let line: Value = serde_json::from_str(dl.trim()).unwrap();
    assert_eq!(line["id"], "f-000003");
    assert!(line["reason"]
        .as_str()
        .unwrap()
        .contains("Invalid data format"));
    assert_eq!(set.metrics()[0].failed, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_token_spools_until_the_token_is_accepted() {
    let (srv, st) = hec::start("the-real-token", false).await;
    let spool = tempfile::tempdir().unwrap();
    let cfg = sink(json!({
        "type": "splunk_hec", "endpoint": srv.url(), "token": "tok",
        "batch": {"timeout_ms": 10},
        "retry": {"max_attempts": 2, "initial_backoff_ms": 10, "max_backoff_ms": 300}
    }));
    let set = Arc::new(SinkSet::from_config(&[cfg], spool.path()).unwrap());
    let reports = set.check_connect().await;
    let err = reports[0].result.as_ref().unwrap_err();
    assert_eq!(err.class, kmswatch_sinks::ErrorClass::Config);
    assert!(err.message.contains("Invalid token"), "{}", err.message);
    assert!(deliver_all(&set, findings(5))
        .await
        .iter()
        .all(Result::is_ok));
    assert_eq!(set.metrics()[0].spooled, 5);
    assert!(hec::indexed_uids(&st).is_empty());
    st.lock().unwrap().token = "tok".into(); // the operator fixes the token
    assert!(wait_until(15, || hec::indexed_uids(&st).len() == 5).await);
    let ok = set.check_connect().await;
    assert!(ok[0].result.is_ok(), "{:?}", ok[0].result);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documented_codes_429_retry_after_capacity_and_shutdown() {
    let (srv, st) = hec::start("11111111-2222-3333-4444-555555555555", true).await;
    st.lock().unwrap().script = vec![
        Fail::Answer(429, 26, Some(1)), // queue at capacity, Retry-After: 1
        Fail::Answer(503, 23, None),    // server is shutting down
        Fail::Answer(503, 18, None),    // unhealthy, queues full
        Fail::Answer(429, 27, None),    // ack channel at capacity
        Fail::Answer(503, 9, Some(1)),  // busy, Retry-After: 1
        Fail::NearCapacity,             // 200 code 24: accepted, must not be resent
        Fail::NearCapacity,
    ]
    .into();
    let spool = tempfile::tempdir().unwrap();
    let cfg = hec_cfg(
        &srv.url(),
        // One batch at a time, so the two Retry-After waits add up.
        json!({"retry": {"max_attempts": 10, "initial_backoff_ms": 10, "max_backoff_ms": 2000, "request_timeout_ms": 2000},
               "batch": {"max_events": 10, "timeout_ms": 20, "max_in_flight": 1}, "max_pending_acks": 1}),
    );
    let set = Arc::new(SinkSet::from_config(&[cfg], spool.path()).unwrap());
    let start = Instant::now();
    let res = deliver_all(&set, findings(30)).await;
    assert!(res.iter().all(Result::is_ok), "{res:?}");
    assert!(
        start.elapsed() >= Duration::from_secs(2),
        "two Retry-After: 1 waits honoured"
    );
    let uids = hec::indexed_uids(&st);
    assert_eq!(
        uids.iter().cloned().collect::<BTreeSet<_>>(),
        ids(30),
        "every finding, under its own id"
    );
    assert_eq!(
        uids.len(),
        30,
        "accepted-near-capacity batches were not resent"
    );
    let m = &set.metrics()[0];
    assert_eq!(m.retried, 5, "the five refusals were retried");
    assert_eq!((m.failed, m.spooled), (0, 0));
    set.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ack_disabled_on_token_is_a_config_error() {
    let (srv, st) = hec::start("tok", false).await;
    let spool = tempfile::tempdir().unwrap();
    let cfg = sink(json!({
        "type": "splunk_hec", "endpoint": srv.url(), "token": "tok", "indexer_ack": true,
        "batch": {"timeout_ms": 10},
        "retry": {"max_attempts": 1}
    }));
    let set = Arc::new(SinkSet::from_config(&[cfg], spool.path()).unwrap());
    assert!(deliver_all(&set, findings(3))
        .await
        .iter()
        .all(Result::is_ok));
    // No ackId in the answer: the batch is not counted as delivered; it waits in the spool.
    assert_eq!(set.metrics()[0].sent, 0);
    assert_eq!(set.metrics()[0].spooled, 3);
    st.lock().unwrap().ack_enabled = true;
    assert!(wait_until(20, || set.metrics()[0].spooled_items == 0).await);
    assert!(hec::indexed_uids(&st).len() >= 3);
}

/// The HEC throughput benchmark (issue 5: at least 50,000 findings/s to a local collector).
///
/// `cargo test -p kmswatch-sinks --release --test hec -- --ignored --nocapture bench`
/// (`KMSWATCH_BENCH_N`, default 200,000 findings; `KMSWATCH_BENCH_ROUNDS`, default 2).
///
/// The sink runs with its default settings (gzip on, batches of 500, 4 requests in flight,
/// ack polled every 250 ms, up to 64 batches awaiting their ack), once without and once with
/// indexer acknowledgement, against the test collector in light mode (it still gunzips and
/// parses every event and checks its uid). The baseline, measured in the same run on the same
/// findings, is plain `serde_json` serialization of each finding on one thread; each sink rate
/// is printed as a ratio of it, since the machine is shared and absolute numbers move with
/// its load. Every round asserts that every finding arrived under its own id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn bench_hec_throughput() {
    let env = |k: &str, d: usize| {
        std::env::var(k)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(d)
    };
    let n = env("KMSWATCH_BENCH_N", 200_000);
    let rounds = env("KMSWATCH_BENCH_ROUNDS", 2).max(1);
    let fs: Vec<Arc<Outgoing>> = findings(n)
        .into_iter()
        .map(|f| Arc::new(Outgoing::Finding(f)))
        .collect();
    let bytes: usize = fs
        .iter()
        .map(|o| o.to_json_string().map(|s| s.len()).unwrap_or(0))
        .sum();
    println!(
        "{n} findings, {:.0} bytes of OCSF JSON each on average",
        bytes as f64 / n as f64
    );
    let mut best = [0f64; 2];
    for round in 1..=rounds {
        // Baseline: serialize every finding once, on one thread.
        let start = Instant::now();
        let mut total = 0usize;
        for o in &fs {
            total += std::hint::black_box(o.to_json_string().unwrap()).len();
        }
        assert_eq!(total, bytes);
        let base = n as f64 / start.elapsed().as_secs_f64();
        println!(
            "round {round}: baseline serde_json::to_string: {base:.0} findings/s ({:.1} us per finding)",
            1e6 / base
        );
        for (k, ack) in [false, true].into_iter().enumerate() {
            let rate = hec_round(&fs, ack).await;
            best[k] = best[k].max(rate);
            println!(
                "round {round}: HEC sink (gzip, indexer_ack={ack}): {rate:.0} findings/s = {:.2} x baseline",
                rate / base
            );
        }
    }
    println!(
        "best of {rounds}: without ack {:.0}/s, with ack {:.0}/s",
        best[0], best[1]
    );
}

/// CPU time of this process (user + system) from `/proc/self/stat`, seconds (Linux; 0 elsewhere).
fn cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the `(comm)`: utime and stime are the 12th and 13th, in clock ticks.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let tick = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (tick(11) + tick(12)) / 100.0
}

/// Delivers every finding through a default-configured HEC sink; returns findings/s.
async fn hec_round(fs: &[Arc<Outgoing>], ack: bool) -> f64 {
    let n = fs.len();
    let (srv, st) = hec::start("tok", ack).await;
    st.lock().unwrap().light = true;
    let spool = tempfile::tempdir().unwrap();
    let mut cfg = json!({
        "type": "splunk_hec", "endpoint": srv.url(), "token": "tok", "indexer_ack": ack,
        "index": "kms"
    });
    // KMSWATCH_BENCH_BATCH overrides batch.max_events (default: the sink's default).
    if let Some(b) = std::env::var("KMSWATCH_BENCH_BATCH")
        .ok()
        .and_then(|s| s.parse::<usize>().ok())
    {
        cfg["batch"] = json!({"max_events": b});
    }
    let cfg = sink(cfg);
    let set = Arc::new(SinkSet::from_config(&[cfg], spool.path()).unwrap());
    let start = Instant::now();
    let cpu0 = cpu_secs();
    // As the runtime does: one `deliver` future per finding, many in flight, spawned from a
    // runtime task (not from the test's own thread, whose spawns go through the global queue).
    let driver = {
        let set = set.clone();
        let fs: Vec<Arc<Outgoing>> = fs.to_vec();
        tokio::spawn(async move {
            let sem = Arc::new(tokio::sync::Semaphore::new(50_000));
            let mut hs = Vec::with_capacity(fs.len());
            for f in fs {
                let permit = sem.clone().acquire_owned().await.unwrap();
                let set = set.clone();
                hs.push(tokio::spawn(async move {
                    let r = set.deliver(f).await;
                    drop(permit);
                    r
                }));
            }
            for h in hs {
                h.await.unwrap().unwrap();
            }
        })
    };
    driver.await.unwrap();
    let secs = start.elapsed().as_secs_f64();
    let cpu = cpu_secs() - cpu0;
    println!(
        "    indexer_ack={ack}: {secs:.2} s wall, {cpu:.2} s CPU (sink + test collector) = {:.1} us CPU per finding",
        cpu * 1e6 / n as f64
    );
    let got = hec::indexed_uids(&st);
    let distinct: std::collections::HashSet<&String> = got.iter().collect();
    assert_eq!(distinct.len(), n, "every finding indexed under its own id");
    assert!(
        fs.iter().all(|o| distinct.contains(&o.id())),
        "no finding under another id"
    );
    let m = &set.metrics()[0];
    assert_eq!((m.spooled, m.failed), (0, 0));
    set.shutdown(Duration::from_secs(1)).await;
    srv.stop().await;
    n as f64 / secs
}

/// Event requests the collector received in `[from, to)`.
fn event_requests_between(st: &hec::State, from: Instant, to: Instant) -> usize {
    st.lock()
        .unwrap()
        .requests
        .iter()
        .filter(|r| r.path == "/services/collector/event" && r.at >= from && r.at < to)
        .count()
}

/// Splunk takes every request (200 with an `ackId`) and never acknowledges it (issue 12): the
/// sink must neither hold the pipeline until every attempt of every batch has timed out nor
/// re-send in a storm. A batch is re-sent at most `retry.max_unacked_resends` times (after
/// its ack timeout and a back-off), then spooled; the sink is then degraded, new batches go
/// straight to the spool, and only the spool's drainer probes Splunk: one batch at a time,
/// so at most one event request per `ack_timeout_secs`. When acks come back the spool drains.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepted_but_never_acknowledged_is_bounded_spooled_and_drains() {
    common::logs();
    let (srv, st) = hec::start("11111111-2222-3333-4444-555555555555", true).await;
    st.lock().unwrap().never_ack = true;
    let spool = tempfile::tempdir().unwrap();
    let cfg = hec_cfg(
        &srv.url(),
        json!({"name": "never-acked", "ack_timeout_secs": 1, "max_pending_acks": 3,
               "batch": {"max_events": 10, "timeout_ms": 20, "max_in_flight": 2},
               "retry": {"max_attempts": 10, "max_unacked_resends": 1, "initial_backoff_ms": 200,
                         "max_backoff_ms": 1000, "request_timeout_ms": 2000}}),
    );
    let set = Arc::new(SinkSet::from_config(&[cfg], spool.path()).unwrap());
    // Outstanding acks stay bounded: at most max_pending_acks (3) batches of 10.
    let most_unacked = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let sampler = {
        let (set, most) = (set.clone(), most_unacked.clone());
        tokio::spawn(async move {
            loop {
                let m = set.metrics()[0].unacked_items;
                most.fetch_max(m, std::sync::atomic::Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    // Every deliver resolves (spooled) once the first batches have used their unacknowledged
    // re-sends: 1 s ack timeout, a back-off of at most 1 s, a second 1 s timeout.
    let res = tokio::time::timeout(Duration::from_secs(8), deliver_all(&set, findings(100)))
        .await
        .expect("the pipeline is not held while Splunk does not acknowledge");
    assert!(res.iter().all(Result::is_ok), "{res:?}");
    let resolved = Instant::now();
    let m = set.metrics()[0].clone();
    assert_eq!(m.spooled, 100, "every finding waits in the spool: {m:?}");
    assert_eq!(m.sent, 0);
    assert!(m.degraded, "{m:?}");
    // Three batches posted, each timed out, the first of them re-sent once and timed out.
    assert!(m.ack_timeouts >= 4, "{m:?}");
    let warned = common::log_text()
        .lines()
        .find(|l| l.contains("sink degraded") && l.contains("never-acked"))
        .map(str::to_string)
        .expect("a warning names the degraded sink");
    for field in ["channel=", "ack_id=", "unacked_secs=", "WARN"] {
        assert!(warned.contains(field), "{field} missing: {warned}");
    }
    // While Splunk does not acknowledge, only the drainer sends: one batch per ack timeout
    // (1 s) plus its back-off, so at most 5 + 1 event requests in 5 s.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let probes = event_requests_between(&st, resolved, Instant::now());
    assert!(
        (1..=6).contains(&probes),
        "{probes} event requests in 5 s while degraded"
    );
    sampler.abort();
    let most = most_unacked.load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        (10..=30).contains(&most),
        "{most} items awaited their ack at once"
    );
    let most_polled = st
        .lock()
        .unwrap()
        .requests
        .iter()
        .filter(|r| r.path == "/services/collector/ack")
        .map(|r| {
            serde_json::from_slice::<Value>(&r.body).unwrap()["acks"]
                .as_array()
                .unwrap()
                .len()
        })
        .max()
        .unwrap();
    assert!(most_polled <= 3, "{most_polled} ackIds pending at once");
    // Splunk recovers: the spool drains, every finding is indexed under its own id.
    st.lock().unwrap().never_ack = false;
    assert!(
        wait_until(30, || hec::indexed_uids(&st)
            .into_iter()
            .collect::<BTreeSet<_>>()
            == ids(100))
        .await,
        "every finding indexed after Splunk acknowledges again"
    );
    assert!(wait_until(5, || set.metrics()[0].spooled_items == 0).await);
    let m = set.metrics()[0].clone();
    assert!(!m.degraded, "{m:?}");
    assert_eq!((m.unacked_items, m.oldest_unacked_age_secs), (0, 0.0));
    assert_eq!(m.sent, 100);
    set.shutdown(Duration::from_secs(1)).await;
}
