//! `kmswatch run` wired to the sinks crate and the responder, end to end:
//!
//! - a file source delivering to a Splunk HEC test collector (the sinks crate's own, shared
//!   through `#[path]`): findings arrive with the HEC token, and the file position is saved
//!   only once the collector acknowledged them (indexer acknowledgement);
//! - issue 6's acceptance through the service: a ScheduleKeyDeletion CloudTrail event for a
//!   real moto KMS key triggers CancelKeyDeletion + EnableKey in `enforce` mode (DescribeKey
//!   shows Enabled, audit records reach the file sink), and changes nothing in `dry_run`;
//! - a failing action (a key moto does not know) raises a response-failure finding;
//! - the same playbook in scale-out: `run --mode ingest` to a tansu topic, `run --mode detect`
//!   cancels the deletion (also needs `KMSWATCH_TEST_KAFKA_BROKERS`).
//!
//! The moto tests skip, with a message, when `KMSWATCH_TEST_AWS_ENDPOINT` is not set
//! (`source scripts/services up`).
#![allow(clippy::unwrap_used)]

#[path = "../../kmswatch-sinks/tests/common/mod.rs"]
mod common;
/// The CloudTrail test server (`LookupEvents`, which moto lacks): enforce needs CloudTrail to
/// corroborate the finding's event.
#[path = "../../kmswatch-respond/tests/common/mod.rs"]
mod respond_common;

mod support;

use serde_json::Value;
use std::path::Path;
use std::process::Command;
use std::time::Duration;
use support::{ingest_to_new_topic, schedule_deletion_in, workspace, Run, BIN};

const HEC_TOKEN: &str = "11111111-2222-3333-4444-555555555555";

fn aws_endpoint() -> Option<String> {
    std::env::var("KMSWATCH_TEST_AWS_ENDPOINT")
        .ok()
        .filter(|s| !s.is_empty())
}

/// A CloudTrail ScheduleKeyDeletion record (7-day window) by `mallory` for `key_arn`.
fn schedule_deletion_line(key_arn: &str, event_id: &str) -> String {
    schedule_deletion_in(key_arn, "mallory", event_id, 7)
}

fn config(log: &Path, sinks: &str, extra: &str) -> String {
    format!(
        "rules:\n  paths: [{rules}]\n  lateness_secs: 172800\n\
         sources:\n  - {{ id: trail, type: file, paths: [\"{log}\"], follow: true }}\n\
         sinks:\n{sinks}\
         state: {{ dir: state, checkpoint_interval_ms: 200, idle_advance_secs: 0 }}\n{extra}",
        rules = workspace().join("rules").display(),
        log = log.display(),
    )
}

/// The saved offset of `path` in the file source's position store (0 when none).
fn saved_offset(dir: &Path, path: &Path) -> u64 {
    support::saved_offset(&dir.join("state/files/trail"), path)
}

/// Poll `f` until it holds (the run must stay alive), off the async workers.
async fn wait_for(what: &str, secs: u64, run: &mut Run, f: impl FnMut(&Run) -> bool) {
    tokio::task::block_in_place(|| support::wait_for(what, secs, run, f));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hec_sink_acknowledges_before_the_file_position_moves() {
    let (srv, st) = common::hec::start(HEC_TOKEN, true).await;
    // Hold every acknowledgement back until the test releases it.
    st.lock().unwrap().ack_after_polls = u32::MAX;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("trail.jsonl");
    let key = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";
    std::fs::write(&log, schedule_deletion_line(key, "ev-hec-1")).unwrap();
    let len = std::fs::metadata(&log).unwrap().len();
    let sinks = format!(
        "  - {{ type: splunk_hec, name: splunk, endpoint: \"{}\", token: \"${{KMSWATCH_TEST_HEC_TOKEN}}\", index: kms, indexer_ack: true, ack_poll_interval_ms: 50, batch: {{ timeout_ms: 20 }} }}\n",
        srv.url()
    );
    let mut run = Run::start(
        dir.path(),
        &config(&log, &sinks, "server: { listen: \"127.0.0.1:0\" }\n"),
        &[("KMSWATCH_TEST_HEC_TOKEN", HEC_TOKEN)],
    );
    // The finding reaches the collector, with the token in the Authorization header.
    wait_for("the event request", 60, &mut run, |_| {
        st.lock().unwrap().event_requests > 0
    })
    .await;
    {
        let s = st.lock().unwrap();
        let req = s
            .requests
            .iter()
            .find(|r| r.path == "/services/collector/event")
            .unwrap();
        assert_eq!(
            req.header("authorization"),
            Some(format!("Splunk {HEC_TOKEN}").as_str())
        );
        assert!(req.header("x-splunk-request-channel").is_some());
    }
    // Not acknowledged yet: several checkpoints pass, the position stays put.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    run.assert_alive();
    assert_eq!(
        saved_offset(dir.path(), &log),
        0,
        "file position saved before Splunk acknowledged:\n{}",
        run.log()
    );
    assert!(common::hec::indexed_uids(&st).is_empty());
    // Release the acknowledgements: the position moves to the end of the file.
    st.lock().unwrap().ack_after_polls = 0;
    wait_for("the position after the ack", 30, &mut run, |_| {
        saved_offset(dir.path(), &log) == len
    })
    .await;
    // Both findings of the record (deletion scheduled; with a 7-day window), in index kms.
    let s = st.lock().unwrap();
    let rules: Vec<&str> = s
        .indexed
        .iter()
        .filter_map(|e| e["event"]["finding_info"]["analytic"]["name"].as_str())
        .collect();
    assert!(rules.contains(&"kms_schedule_key_deletion"), "{rules:?}");
    assert!(
        rules.contains(&"kms_schedule_key_deletion_short_window"),
        "{rules:?}"
    );
    assert!(s.indexed.iter().all(|e| e["index"] == "kms"));
    drop(s);
    // The sink's own metrics are on /metrics.
    let (_, metrics) = run.get("/metrics").expect("GET /metrics");
    assert!(
        metrics.contains("kmswatch_sink_sent_total{sink=\"splunk\",type=\"splunk_hec\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("kmswatch_sink_spooled_bytes{sink=\"splunk\",type=\"splunk_hec\"} 0"),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            "kmswatch_sink_acked_latency_seconds_count{sink=\"splunk\",type=\"splunk_hec\"} 2"
        ),
        "{metrics}"
    );
    let s = st.lock().unwrap();
    drop(s);
    run.stop(40);
}

/// A KMS client on moto.
async fn kms(endpoint: &str) -> aws_sdk_kms::Client {
    let conf = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .load()
        .await;
    aws_sdk_kms::Client::new(&conf)
}

/// A moto key scheduled for deletion, as CloudTrail would report it; returns its ARN.
async fn key_pending_deletion(c: &aws_sdk_kms::Client) -> String {
    let k = c.create_key().send().await.unwrap();
    let meta = k.key_metadata().unwrap();
    let arn = meta.arn().unwrap().to_string();
    c.schedule_key_deletion()
        .key_id(meta.key_id())
        .pending_window_in_days(7)
        .send()
        .await
        .unwrap();
    arn
}

async fn key_state(c: &aws_sdk_kms::Client, arn: &str) -> String {
    let d = c.describe_key().key_id(arn).send().await.unwrap();
    d.key_metadata()
        .unwrap()
        .key_state()
        .unwrap()
        .as_str()
        .to_string()
}

/// A CloudTrail test server whose history has the ScheduleKeyDeletion event `id` on `arn`
/// (for `AWS_ENDPOINT_URL_CLOUDTRAIL`).
async fn trail_knowing(arn: &str, id: &str) -> String {
    let history = std::sync::Arc::new(std::sync::Mutex::new(respond_common::Trail::default()));
    history
        .lock()
        .unwrap()
        .events
        .push(respond_common::TrailEvent {
            id: id.into(),
            name: "ScheduleKeyDeletion".into(),
            key_arn: arn.into(),
        });
    respond_common::cloudtrail(history).await
}

fn respond_config(mode: &str) -> String {
    format!(
        "respond:\n  mode: {mode}\n  aws: {{ region: us-east-1 }}\n  playbooks:\n    \
         - {{ name: stop-deletion, rules: [kms_schedule_key_deletion], actions: [{{kind: cancel_deletion}}] }}\n"
    )
}

fn aws_env(endpoint: &str) -> Vec<(&'static str, String)> {
    vec![
        ("AWS_ENDPOINT_URL", endpoint.to_string()),
        ("AWS_ACCESS_KEY_ID", "testing".into()),
        ("AWS_SECRET_ACCESS_KEY", "testing".into()),
        ("AWS_REGION", "us-east-1".into()),
        ("AWS_EC2_METADATA_DISABLED", "true".into()),
    ]
}

fn audits(run: &Run) -> Vec<Value> {
    run.jsonl("out.jsonl")
        .into_iter()
        .filter(|v| v["kind"] == "kmswatch.response")
        .collect()
}

/// Wait for the applied audit record of the `stop-deletion` playbook, check the key is
/// Enabled again and the record names the action and the key; the applied records.
async fn wait_for_cancelled_deletion(
    run: &mut Run,
    secs: u64,
    c: &aws_sdk_kms::Client,
    arn: &str,
) -> Vec<Value> {
    wait_for("the applied audit record", secs, run, |r| {
        audits(r)
            .iter()
            .any(|a| a["phase"] == "execute" && a["outcome"] == "applied")
    })
    .await;
    assert_eq!(key_state(c, arn).await, "Enabled");
    let applied: Vec<Value> = audits(run)
        .into_iter()
        .filter(|a| a["outcome"] == "applied")
        .collect();
    assert_eq!(applied[0]["action"]["kind"], "cancel_deletion");
    assert_eq!(applied[0]["key"].as_str().unwrap(), arn);
    applied
}

fn findings_of(run: &Run, rule: &str) -> Vec<Value> {
    run.jsonl("out.jsonl")
        .into_iter()
        .filter(|v| {
            v["finding_info"]["analytic"]["uid"] == rule
                || v["finding_info"]["analytic"]["name"] == rule
        })
        .collect()
}

const FILE_SINK: &str = "  - { type: file, path: out.jsonl, batch: { timeout_ms: 20 } }\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedule_key_deletion_is_cancelled_in_enforce_mode_only() {
    let Some(ep) = aws_endpoint() else {
        eprintln!("SKIPPED schedule_key_deletion_is_cancelled_in_enforce_mode_only: KMSWATCH_TEST_AWS_ENDPOINT not set (source scripts/services up)");
        return;
    };
    let c = kms(&ep).await;
    let env = aws_env(&ep);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();

    // dry_run: the finding and a dry-run audit record, the key untouched.
    let arn = key_pending_deletion(&c).await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("trail.jsonl");
    std::fs::write(&log, schedule_deletion_line(&arn, "ev-dry-1")).unwrap();
    let mut run = Run::start(
        dir.path(),
        &config(&log, FILE_SINK, &respond_config("dry_run")),
        &env,
    );
    wait_for("the dry-run audit record", 60, &mut run, |r| {
        audits(r).iter().any(|a| a["outcome"] == "dry_run")
    })
    .await;
    assert_eq!(findings_of(&run, "kms_schedule_key_deletion").len(), 1);
    assert_eq!(key_state(&c, &arn).await, "PendingDeletion");
    run.stop(40);
    assert_eq!(key_state(&c, &arn).await, "PendingDeletion");
    let journal = dir.path().join("state/respond-journal.jsonl");
    assert!(
        std::fs::read_to_string(&journal).unwrap().contains(&arn),
        "journal under state.dir"
    );

    // enforce: CancelKeyDeletion + EnableKey, verified with DescribeKey; CloudTrail
    // (`AWS_ENDPOINT_URL_CLOUDTRAIL`, the test server) has the event.
    let arn = key_pending_deletion(&c).await;
    let trail = trail_knowing(&arn, "ev-enforce-1").await;
    let mut env = env.clone();
    env.push(("AWS_ENDPOINT_URL_CLOUDTRAIL", trail.as_str()));
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("trail.jsonl");
    std::fs::write(&log, schedule_deletion_line(&arn, "ev-enforce-1")).unwrap();
    let mut run = Run::start(
        dir.path(),
        &config(&log, FILE_SINK, &respond_config("enforce")),
        &env,
    );
    let applied = wait_for_cancelled_deletion(&mut run, 60, &c, &arn).await;
    assert_eq!(
        applied[0]["finding_id"],
        findings_of(&run, "kms_schedule_key_deletion")[0]["finding_info"]["uid"]
    );
    run.stop(40);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_action_raises_a_finding() {
    let Some(ep) = aws_endpoint() else {
        eprintln!("SKIPPED a_failed_action_raises_a_finding: KMSWATCH_TEST_AWS_ENDPOINT not set (source scripts/services up)");
        return;
    };
    let env = aws_env(&ep);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let arn = "arn:aws:kms:us-east-1:123456789012:key/00000000-0000-0000-0000-00000000dead";
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("trail.jsonl");
    std::fs::write(&log, schedule_deletion_line(arn, "ev-fail-1")).unwrap();
    let mut run = Run::start(
        dir.path(),
        &config(&log, FILE_SINK, &respond_config("enforce")),
        &env,
    );
    wait_for("the response-failure finding", 60, &mut run, |r| {
        !findings_of(r, "kmswatch-respond-action-failed").is_empty()
    })
    .await;
    let f = &findings_of(&run, "kmswatch-respond-action-failed")[0];
    assert!(
        f["message"]
            .as_str()
            .unwrap_or_default()
            .contains("00000000dead")
            || f.to_string().contains(arn),
        "{f}"
    );
    assert!(audits(&run).iter().any(|a| a["outcome"] == "failed"));
    // The triggering finding was delivered too, regardless of the action's outcome.
    assert_eq!(findings_of(&run, "kms_schedule_key_deletion").len(), 1);
    run.stop(40);
}

/// Scale-out: the ScheduleKeyDeletion event goes through `run --mode ingest` to a tansu topic;
/// `run --mode detect` with the playbook in `enforce` mode cancels the deletion (DescribeKey
/// shows Enabled) and delivers the audit records to its file sink, like `--mode all`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn detect_mode_runs_the_playbooks() {
    let (Some(ep), Some(brokers)) = (
        aws_endpoint(),
        std::env::var("KMSWATCH_TEST_KAFKA_BROKERS")
            .ok()
            .filter(|s| !s.is_empty()),
    ) else {
        eprintln!("SKIPPED detect_mode_runs_the_playbooks: KMSWATCH_TEST_AWS_ENDPOINT or KMSWATCH_TEST_KAFKA_BROKERS not set (source scripts/services up)");
        return;
    };
    let c = kms(&ep).await;
    let env = aws_env(&ep);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let arn = key_pending_deletion(&c).await;
    let trail = trail_knowing(&arn, "ev-scale-1").await;
    let mut env = env.clone();
    env.push(("AWS_ENDPOINT_URL_CLOUDTRAIL", trail.as_str()));
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("trail.jsonl");
    std::fs::write(&log, schedule_deletion_line(&arn, "ev-scale-1")).unwrap();
    // Ingest: the trail file (not followed: the instance exits once it is published).
    let so = tokio::task::block_in_place(|| {
        ingest_to_new_topic(dir.path(), &log, &brokers, "kmsw-respond", &env)
    });

    // Detect, with the playbook in enforce mode.
    let mut detect = Run::start_args(
        &dir.path().join("detect"),
        &format!(
            "rules:\n  paths: [{rules}]\n  lateness_secs: 172800\n\
             sinks:\n{FILE_SINK}\
             state: {{ dir: state, checkpoint_interval_ms: 200, idle_advance_secs: 0 }}\n{respond}{so}",
            rules = workspace().join("rules").display(),
            respond = respond_config("enforce"),
        ),
        &env,
        &["--mode", "detect"],
    );
    let applied = wait_for_cancelled_deletion(&mut detect, 45, &c, &arn).await;
    let found = findings_of(&detect, "kms_schedule_key_deletion");
    assert_eq!(found.len(), 1);
    assert_eq!(applied[0]["finding_id"], found[0]["finding_info"]["uid"]);
    detect.stop(40);
    assert!(
        std::fs::read_to_string(dir.path().join("detect/state/respond-journal.jsonl"))
            .unwrap()
            .contains(&arn),
        "journal under the detect instance's state.dir"
    );
}

/// `kmswatch validate --connect` with a HEC sink using `token`: exit code and output.
fn validate_connect(dir: &Path, hec_url: &str, token: &str) -> (Option<i32>, String) {
    let log = dir.join("trail.jsonl");
    std::fs::write(&log, "").unwrap();
    let sinks = format!(
        "  - {{ type: splunk_hec, name: splunk, endpoint: \"{hec_url}\", token: \"{token}\", indexer_ack: true }}\n  - {{ type: file, path: out.jsonl }}\n"
    );
    std::fs::write(dir.join("kmswatch.yml"), config(&log, &sinks, "")).unwrap();
    let out = Command::new(BIN)
        .args(["validate", "--connect", "--no-tests"])
        .arg(dir.join("kmswatch.yml"))
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_connect_checks_each_sink() {
    let (srv, _st) = common::hec::start(HEC_TOKEN, true).await;
    let dir = tempfile::tempdir().unwrap();
    let (d, url) = (dir.path().to_path_buf(), srv.url());
    let (good, bad) = tokio::task::spawn_blocking(move || {
        (
            validate_connect(&d, &url, HEC_TOKEN),
            validate_connect(&d, &url, "00000000-0000-0000-0000-000000000000"),
        )
    })
    .await
    .unwrap();
    assert_eq!(good.0, Some(0), "{}", good.1);
    assert!(
        good.1.contains("ok    sink splunk (splunk_hec)"),
        "{}",
        good.1
    );
    assert!(good.1.contains("ok    sink file (file)"), "{}", good.1);
    assert_eq!(bad.0, Some(1), "{}", bad.1);
    assert!(
        bad.1.contains("FAIL  sink splunk (splunk_hec)"),
        "{}",
        bad.1
    );
}
