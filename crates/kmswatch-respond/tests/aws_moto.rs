//! AWS end to end against moto_server: `KMSWATCH_TEST_AWS_ENDPOINT` (from `scripts/services up`)
//! or a moto_server started here on a free 127.0.0.1 port when it is on PATH; skipped with a
//! message otherwise.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use aws_sdk_kms::Client;
use kmswatch_model::Provider;
use kmswatch_respond::action::BREAK_GLASS_TAG;
use kmswatch_respond::aws::AwsConfig;
use kmswatch_respond::config::{ActionSpec, Playbook};
use kmswatch_respond::testutil::finding;
use kmswatch_respond::{
    ActionKind, AuditRecord, Mode, Outcome, Phase, RespondConfig, Responder, ResponseOutput,
};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Moto(Option<Child>, String);

impl Drop for Moto {
    fn drop(&mut self) {
        if let Some(c) = self.0.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn moto() -> Option<Moto> {
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

async fn client(endpoint: &str) -> Client {
    let conf = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .load()
        .await;
    Client::new(&conf)
}

async fn create_key(c: &Client, tags: &[(&str, &str)]) -> String {
    let mut req = c.create_key().description("kmswatch respond test");
    for (k, v) in tags {
        req = req.tags(
            aws_sdk_kms::types::Tag::builder()
                .tag_key(*k)
                .tag_value(*v)
                .build()
                .unwrap(),
        );
    }
    let out = req.send().await.unwrap();
    out.key_metadata().unwrap().arn().unwrap().to_string()
}

async fn key_state(c: &Client, arn: &str) -> (bool, String) {
    let out = c.describe_key().key_id(arn).send().await.unwrap();
    let m = out.key_metadata().unwrap();
    (
        m.enabled(),
        m.key_state()
            .map(|s| s.as_str().to_string())
            .unwrap_or_default(),
    )
}

fn config(dir: &Path, endpoint: &str, mode: Mode) -> RespondConfig {
    let pb = |name: &str, rule: &str, kinds: &[ActionKind]| Playbook {
        name: name.into(),
        rules: vec![rule.into()],
        min_level: None,
        tags: vec![],
        providers: vec![Provider::Aws],
        actions: kinds
            .iter()
            .map(|k| ActionSpec {
                kind: *k,
                rotation_period_days: None,
            })
            .collect(),
        mode: None,
    };
    RespondConfig {
        mode,
        journal_path: dir.join("journal.jsonl"),
        playbooks: vec![
            pb(
                "stop-deletion",
                "kms_schedule_key_deletion",
                &[ActionKind::CancelDeletion, ActionKind::Tag],
            ),
            pb(
                "contain-human-decrypt",
                "kms_human_decrypt",
                &[ActionKind::Disable],
            ),
        ],
        aws: Some(AwsConfig {
            region: Some("us-east-1".into()),
            endpoint_url: Some(endpoint.into()),
            accounts: Default::default(),
        }),
        ..Default::default()
    }
}

fn audits(out: &[ResponseOutput]) -> Vec<AuditRecord> {
    out.iter().filter_map(|o| o.audit().cloned()).collect()
}

#[tokio::test]
async fn aws_end_to_end_against_moto() {
    let Some(m) = moto() else {
        eprintln!("SKIPPED aws_end_to_end_against_moto: no KMSWATCH_TEST_AWS_ENDPOINT and no moto_server on PATH (source scripts/services up)");
        return;
    };
    // Fake credentials for the emulator (the responder uses the standard chain).
    std::env::set_var("AWS_ACCESS_KEY_ID", "testing");
    std::env::set_var("AWS_SECRET_ACCESS_KEY", "testing");
    std::env::set_var("AWS_REGION", "us-east-1");
    let ep = m.1.clone();
    let c = client(&ep).await;
    let dir = tempfile::tempdir().unwrap();

    // 1. A ScheduleKeyDeletion finding cancels the deletion and re-enables the key.
    let doomed = create_key(&c, &[]).await;
    // (moto answers 500 to ScheduleKeyDeletion by ARN; the bare key id works.)
    let doomed_id = doomed.rsplit('/').next().unwrap().to_string();
    c.schedule_key_deletion()
        .key_id(&doomed_id)
        .pending_window_in_days(7)
        .send()
        .await
        .unwrap();
    assert_eq!(key_state(&c, &doomed).await.1, "PendingDeletion");
    let r = Responder::new(config(dir.path(), &ep, Mode::Enforce)).unwrap();
    let f = finding("kms_schedule_key_deletion", 5, &[(Provider::Aws, &doomed)]);
    let out = r.on_finding(&f).await;
    let recs = audits(&out);
    let execs: Vec<_> = recs.iter().filter(|a| a.phase == Phase::Execute).collect();
    assert_eq!(execs.len(), 2, "{recs:#?}");
    assert!(
        execs.iter().all(|e| e.outcome == Outcome::Applied),
        "{recs:#?}"
    );
    assert_eq!(
        execs[0].state_before.as_ref().unwrap().status,
        "PendingDeletion"
    );
    assert_eq!(key_state(&c, &doomed).await, (true, "Enabled".to_string()));
    let tags = c.list_resource_tags().key_id(&doomed).send().await.unwrap();
    assert!(tags
        .tags()
        .iter()
        .any(|t| t.tag_key() == "kmswatch:finding" && t.tag_value() == f.finding_info.uid));

    // 2. A human-Decrypt finding in enforce mode disables the key; undo re-enables it.
    let k = create_key(&c, &[]).await;
    let f = finding("kms_human_decrypt", 4, &[(Provider::Aws, &k)]);
    let out = r.on_finding(&f).await;
    let exec = audits(&out).pop().unwrap();
    assert_eq!(
        (exec.phase, exec.outcome),
        (Phase::Execute, Outcome::Applied)
    );
    assert_eq!(key_state(&c, &k).await, (false, "Disabled".to_string()));
    assert!(!exec.state_after.as_ref().unwrap().enabled);
    // Again: already applied (idempotent), no second call needed.
    let again = audits(&r.on_finding(&f).await);
    assert_eq!(again.last().unwrap().outcome, Outcome::AlreadyApplied);
    let undo = audits(
        &r.undo(&exec.record_id, "alice", "false positive")
            .await
            .unwrap(),
    );
    assert_eq!(undo.last().unwrap().outcome, Outcome::Applied);
    assert_eq!(key_state(&c, &k).await, (true, "Enabled".to_string()));
    drop(r);

    // 3. dry_run changes nothing.
    let dir2 = tempfile::tempdir().unwrap();
    let r = Responder::new(config(dir2.path(), &ep, Mode::DryRun)).unwrap();
    let k2 = create_key(&c, &[]).await;
    let out = audits(
        &r.on_finding(&finding("kms_human_decrypt", 4, &[(Provider::Aws, &k2)]))
            .await,
    );
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].outcome, Outcome::DryRun);
    assert_eq!(key_state(&c, &k2).await, (true, "Enabled".to_string()));
    drop(r);

    // 4. approve waits for approval, then applies (from a fresh process state).
    let dir3 = tempfile::tempdir().unwrap();
    let cfg = config(dir3.path(), &ep, Mode::Approve);
    let r = Responder::new(cfg.clone()).unwrap();
    let out = audits(
        &r.on_finding(&finding("kms_human_decrypt", 4, &[(Provider::Aws, &k2)]))
            .await,
    );
    assert_eq!(out[0].outcome, Outcome::Pending);
    assert_eq!(key_state(&c, &k2).await, (true, "Enabled".to_string()));
    drop(r);
    let r = Responder::new(cfg).unwrap();
    let id = r.pending()[0].action_id.clone();
    let out = audits(&r.approve(&id, "alice").await.unwrap());
    assert_eq!(out.last().unwrap().outcome, Outcome::Applied);
    assert_eq!(key_state(&c, &k2).await, (false, "Disabled".to_string()));

    // 5. A break-glass key is never touched.
    let bg = create_key(&c, &[(BREAK_GLASS_TAG, "true")]).await;
    let dir4 = tempfile::tempdir().unwrap();
    let r = Responder::new(config(dir4.path(), &ep, Mode::Enforce)).unwrap();
    let out = audits(
        &r.on_finding(&finding("kms_human_decrypt", 4, &[(Provider::Aws, &bg)]))
            .await,
    );
    assert_eq!(out[0].outcome, Outcome::Refused);
    assert_eq!(key_state(&c, &bg).await, (true, "Enabled".to_string()));
}
