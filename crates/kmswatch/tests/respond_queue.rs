//! The response queue is durable: 1,002 findings with a playbook, the process stopped
//! (SIGTERM, then `kill -9`) while most of their actions are still queued, restarted — and
//! every action is in the journal exactly once.
//!
//! The responder talks to a fake AWS KMS endpoint on 127.0.0.1 (the JSON protocol's
//! `DescribeKey`, `ListAliases`, `ListResourceTags`, `GetKeyRotationStatus`) with a gate: while
//! it is closed, requests wait, so the response task is stuck mid-queue exactly when the test
//! stops the process. Playbooks run in `dry_run`: each action is one `dry_run` plan record.

mod support;

use http_body_util::Full;
use hyper::body::Bytes;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use support::{
    ingest_to_new_topic, saved_offset, schedule_deletion_line, wait_for, workspace, Run,
};

const KEY: &str = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";
const FINDINGS: usize = 1002;
const RULE: &str = "kms_schedule_key_deletion";

/// The fake KMS: its address, the gate (true: answer) and the number of requests answered.
struct FakeKms {
    addr: std::net::SocketAddr,
    open: Arc<AtomicBool>,
    answered: Arc<AtomicU64>,
}

fn fake_kms(rt: &tokio::runtime::Runtime) -> FakeKms {
    let open = Arc::new(AtomicBool::new(true));
    let answered = Arc::new(AtomicU64::new(0));
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind fake kms");
    let addr = listener.local_addr().expect("addr");
    let (o, a) = (open.clone(), answered.clone());
    rt.spawn(async move {
        loop {
            let Ok((sock, _)) = listener.accept().await else {
                continue;
            };
            let (o, a) = (o.clone(), a.clone());
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let (o, a) = (o.clone(), a.clone());
                        async move {
                            while !o.load(Ordering::SeqCst) {
                                tokio::time::sleep(Duration::from_millis(20)).await;
                            }
                            let target = req
                                .headers()
                                .get("x-amz-target")
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or_default()
                                .to_string();
                            let body = match target.rsplit('.').next().unwrap_or_default() {
                                "DescribeKey" => serde_json::json!({"KeyMetadata": {
                                    "AWSAccountId": "111122223333",
                                    "KeyId": "1234abcd-12ab-34cd-56ef-1234567890ab",
                                    "Arn": KEY,
                                    "KeyState": "PendingDeletion",
                                    "Enabled": false,
                                    "KeyManager": "CUSTOMER",
                                    "KeyUsage": "ENCRYPT_DECRYPT",
                                    "KeySpec": "SYMMETRIC_DEFAULT",
                                    "Origin": "AWS_KMS",
                                    "CreationDate": 1.7e9,
                                    "DeletionDate": 1.8e9
                                }}),
                                "ListAliases" => {
                                    serde_json::json!({"Aliases": [], "Truncated": false})
                                }
                                "ListResourceTags" => {
                                    serde_json::json!({"Tags": [], "Truncated": false})
                                }
                                "GetKeyRotationStatus" => {
                                    serde_json::json!({"KeyRotationEnabled": false})
                                }
                                _ => serde_json::json!({}),
                            };
                            a.fetch_add(1, Ordering::SeqCst);
                            hyper::Response::builder()
                                .header("content-type", "application/x-amz-json-1.1")
                                .body(Full::new(Bytes::from(body.to_string())))
                        }
                    },
                );
                let io = hyper_util::rt::TokioIo::new(sock);
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(io, svc)
                    .await;
            });
        }
    });
    FakeKms {
        addr,
        open,
        answered,
    }
}

/// The respond section for the fake KMS, in dry-run.
fn respond(kms: &FakeKms) -> String {
    format!(
        "limits: {{ shutdown_timeout_secs: 5 }}\n\
         respond:\n  mode: dry_run\n  aws: {{ region: us-east-1, endpoint_url: \"http://{addr}\" }}\n  playbooks:\n    \
         - {{ name: stop-deletion, rules: [{RULE}], actions: [{{kind: cancel_deletion}}] }}\n",
        addr = kms.addr,
    )
}

fn config(log: &std::path::Path, kms: &FakeKms) -> String {
    format!(
        "rules:\n  paths: [{rules}]\n  lateness_secs: 172800\n\
         sources:\n  - {{ id: trail, type: file, paths: [\"{log}\"], follow: true }}\n\
         sinks:\n  - {{ type: file, path: out.jsonl, batch: {{ timeout_ms: 20 }} }}\n\
         state: {{ dir: state, checkpoint_interval_ms: 200, idle_advance_secs: 0 }}\n\
         server: {{ listen: \"127.0.0.1:0\" }}\n{respond}",
        rules = workspace().join("rules").display(),
        log = log.display(),
        respond = respond(kms),
    )
}

const AWS_ENV: [(&str, &str); 4] = [
    ("AWS_ACCESS_KEY_ID", "testing"),
    ("AWS_SECRET_ACCESS_KEY", "testing"),
    ("AWS_REGION", "us-east-1"),
    ("AWS_EC2_METADATA_DISABLED", "true"),
];

fn journal(run: &Run) -> Vec<Value> {
    run.jsonl("state/respond-journal.jsonl")
}

fn rule_findings(run: &Run) -> usize {
    run.jsonl("out.jsonl")
        .iter()
        .filter(|v| v["finding_info"]["analytic"]["name"] == RULE)
        .count()
}

/// `n` ScheduleKeyDeletion records by distinct users: `n` findings with one action each.
fn trail(n: usize) -> String {
    (0..n)
        .map(|i| schedule_deletion_line(KEY, &format!("user{i:04}"), &format!("ev-{i:04}")))
        .collect()
}

/// Every action of the `n` findings is journaled exactly once, as a dry-run record.
fn assert_each_action_once(records: &[Value], n: usize) {
    let mut by_action: BTreeMap<String, Vec<&Value>> = BTreeMap::new();
    for r in records {
        by_action
            .entry(r["action_id"].as_str().unwrap_or_default().to_string())
            .or_default()
            .push(r);
    }
    let repeated: Vec<_> = by_action.iter().filter(|(_, v)| v.len() != 1).collect();
    assert!(
        repeated.is_empty(),
        "{} action(s) journaled more than once, e.g. {:?}",
        repeated.len(),
        repeated.first()
    );
    assert_eq!(by_action.len(), n, "one action per finding");
    let findings: std::collections::BTreeSet<&str> = records
        .iter()
        .filter_map(|r| r["finding_id"].as_str())
        .collect();
    assert_eq!(findings.len(), n, "every finding's action journaled");
    assert!(
        records.iter().all(|r| r["outcome"] == "dry_run"),
        "dry_run records only"
    );
}

/// Stop the process (`how`) while most actions are queued and the response task is stuck on
/// the fake KMS; restart; every action must be journaled exactly once.
fn stop_mid_way_then_restart(how: &str) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let kms = fake_kms(&rt);
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("trail.jsonl");
    let text = trail(FINDINGS);
    std::fs::write(&log, &text).expect("write trail");
    let run_dir = dir.path().join("run");
    let mut run = Run::start(&run_dir, &config(&log, &kms), &AWS_ENV);
    // Some actions run, then the responder's calls hang.
    wait_for("the first dry-run records", 120, &mut run, |r| {
        journal(r).len() >= 150
    });
    kms.open.store(false, Ordering::SeqCst);
    // Every finding is delivered and its batch acknowledged (the file position saved).
    wait_for(
        "every finding delivered and acknowledged",
        120,
        &mut run,
        |r| {
            rule_findings(r) == FINDINGS
                && saved_offset(&r.dir.join("state/files/trail"), &log) == text.len() as u64
        },
    );
    std::thread::sleep(Duration::from_millis(500));
    let before = journal(&run).len();
    assert!(
        before < FINDINGS,
        "the playbooks finished before the stop ({before} records): nothing to resume"
    );
    match how {
        "sigterm" => {
            let (st, took) = run.sigterm(30);
            assert!(st.success(), "exit {st} after SIGTERM:\n{}", run.log());
            assert!(
                took < Duration::from_secs(15),
                "SIGTERM took {took:?} with a stuck playbook (bound: limits.shutdown_timeout_secs)"
            );
        }
        _ => run.kill9(),
    }
    kms.open.store(true, Ordering::SeqCst);
    let answered = kms.answered.load(Ordering::SeqCst);
    let mut run = Run::start(&run_dir, &config(&log, &kms), &AWS_ENV);
    wait_for(
        "every action journaled after the restart",
        180,
        &mut run,
        |r| journal(r).len() >= FINDINGS,
    );
    // Nothing more comes: let the queue settle, then stop cleanly.
    std::thread::sleep(Duration::from_millis(1500));
    run.stop(30);
    assert!(kms.answered.load(Ordering::SeqCst) > answered);
    assert_each_action_once(&journal(&run), FINDINGS);
    assert!(
        run.log().contains("resuming queued findings"),
        "the second start resumed the queue:\n{}",
        run.log()
    );
}

#[test]
fn sigterm_leaves_queued_actions_for_the_next_start() {
    stop_mid_way_then_restart("sigterm");
}

#[test]
fn kill_9_loses_no_queued_action() {
    stop_mid_way_then_restart("kill9");
}

/// `run --mode detect`: the queue lives in the partition snapshots. Killed while the response
/// task is stuck, the instance restarts from its snapshots and runs each action once.
#[test]
fn detect_mode_keeps_queued_actions_in_its_snapshots() {
    let Some(brokers) = std::env::var("KMSWATCH_TEST_KAFKA_BROKERS")
        .ok()
        .filter(|b| !b.is_empty())
    else {
        eprintln!("SKIPPED detect_mode_keeps_queued_actions_in_its_snapshots: KMSWATCH_TEST_KAFKA_BROKERS is not set (source scripts/services up)");
        return;
    };
    const N: usize = 300;
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let kms = fake_kms(&rt);
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("trail.jsonl");
    std::fs::write(&log, trail(N)).expect("write trail");
    let so = ingest_to_new_topic(dir.path(), &log, &brokers, "kmsw-rq", &AWS_ENV);
    let detect_config = format!(
        "rules:\n  paths: [{rules}]\n  lateness_secs: 172800\n\
         sinks:\n  - {{ type: file, path: out.jsonl, batch: {{ timeout_ms: 20 }} }}\n\
         state: {{ dir: state, checkpoint_interval_ms: 200, idle_advance_secs: 0 }}\n{respond}{so}",
        rules = workspace().join("rules").display(),
        respond = respond(&kms),
    );
    let detect_dir = dir.path().join("detect");
    let mut run = Run::start_args(&detect_dir, &detect_config, &AWS_ENV, &["--mode", "detect"]);
    wait_for("the first dry-run records", 180, &mut run, |r| {
        journal(r).len() >= 50
    });
    kms.open.store(false, Ordering::SeqCst);
    wait_for("every finding delivered", 240, &mut run, |r| {
        rule_findings(r) >= N
    });
    // A few checkpoints: the queue is in the snapshots.
    std::thread::sleep(Duration::from_millis(1500));
    let before = journal(&run).len();
    assert!(before < N, "nothing left to resume ({before} records)");
    run.kill9();
    kms.open.store(true, Ordering::SeqCst);
    let mut run = Run::start_args(&detect_dir, &detect_config, &AWS_ENV, &["--mode", "detect"]);
    wait_for(
        "every action journaled after the restart",
        180,
        &mut run,
        |r| journal(r).len() >= N,
    );
    std::thread::sleep(Duration::from_millis(1500));
    run.stop(30);
    assert_each_action_once(&journal(&run), N);
    assert!(
        run.log().contains("resuming queued findings"),
        "the restart resumed the snapshots' queues:\n{}",
        run.log()
    );
}
