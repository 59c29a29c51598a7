//! AWS end to end against moto_server (KMS): `KMSWATCH_TEST_AWS_ENDPOINT` (from `scripts/services
//! up`) or a moto_server started here on a free 127.0.0.1 port when it is on PATH; skipped with
//! a message otherwise. CloudTrail `LookupEvents` (corroboration), which moto does not
//! implement, is served by the CloudTrail test server of `common`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use aws_sdk_kms::Client;
use common::{cloudtrail, fake_aws_env, moto, Shared, Trail, TrailEvent};
use kmswatch_model::Provider;
use kmswatch_respond::action::BREAK_GLASS_TAG;
use kmswatch_respond::aws::AwsConfig;
use kmswatch_respond::config::{ActionSpec, Playbook};
use kmswatch_respond::testutil::finding;
use kmswatch_respond::{
    ActionKind, AuditRecord, Mode, Outcome, Phase, RespondConfig, Responder, ResponseOutput,
};
use std::path::Path;
use std::sync::{Arc, Mutex};

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

fn config(dir: &Path, endpoint: &str, trail: &str, mode: Mode) -> RespondConfig {
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
            cloudtrail_endpoint_url: Some(trail.into()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn audits(out: &[ResponseOutput]) -> Vec<AuditRecord> {
    out.iter().filter_map(|o| o.audit().cloned()).collect()
}

#[tokio::test]
async fn aws_end_to_end_against_moto() {
    let Some(e) = env().await else { return };
    let (ep, c, dir, history, trail) = (&e.ep, &e.c, &e.dir, &e.history, &e.trail);
    // The findings of this test are about events that really happened.
    let real = |f: &kmswatch_model::Finding| known(history, f);

    // 1. A ScheduleKeyDeletion finding cancels the deletion and re-enables the key.
    let doomed = create_key(c, &[]).await;
    // (moto answers 500 to ScheduleKeyDeletion by ARN; the bare key id works.)
    let doomed_id = doomed.rsplit('/').next().unwrap().to_string();
    c.schedule_key_deletion()
        .key_id(&doomed_id)
        .pending_window_in_days(7)
        .send()
        .await
        .unwrap();
    assert_eq!(key_state(c, &doomed).await.1, "PendingDeletion");
    let r = Responder::new(config(dir.path(), ep, trail, Mode::Enforce)).unwrap();
    let f = real(&finding(
        "kms_schedule_key_deletion",
        5,
        &[(Provider::Aws, &doomed)],
    ));
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
    assert_eq!(key_state(c, &doomed).await, (true, "Enabled".to_string()));
    let tags = c.list_resource_tags().key_id(&doomed).send().await.unwrap();
    assert!(tags
        .tags()
        .iter()
        .any(|t| t.tag_key() == "kmswatch:finding" && t.tag_value() == f.finding_info.uid));

    // 2. A human-Decrypt finding in enforce mode disables the key; undo re-enables it.
    let k = create_key(c, &[]).await;
    let f = real(&finding("kms_human_decrypt", 4, &[(Provider::Aws, &k)]));
    let out = r.on_finding(&f).await;
    let exec = audits(&out).pop().unwrap();
    assert_eq!(
        (exec.phase, exec.outcome),
        (Phase::Execute, Outcome::Applied)
    );
    assert_eq!(key_state(c, &k).await, (false, "Disabled".to_string()));
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
    assert_eq!(key_state(c, &k).await, (true, "Enabled".to_string()));
    drop(r);

    // 3. dry_run changes nothing.
    let dir2 = tempfile::tempdir().unwrap();
    let r = Responder::new(config(dir2.path(), ep, trail, Mode::DryRun)).unwrap();
    let k2 = create_key(c, &[]).await;
    let out = audits(
        &r.on_finding(&finding("kms_human_decrypt", 4, &[(Provider::Aws, &k2)]))
            .await,
    );
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].outcome, Outcome::DryRun);
    assert_eq!(key_state(c, &k2).await, (true, "Enabled".to_string()));
    drop(r);

    // 4. approve waits for approval, then applies (from a fresh process state).
    let dir3 = tempfile::tempdir().unwrap();
    let cfg = config(dir3.path(), ep, trail, Mode::Approve);
    let r = Responder::new(cfg.clone()).unwrap();
    let out = audits(
        &r.on_finding(&real(&finding(
            "kms_human_decrypt",
            4,
            &[(Provider::Aws, &k2)],
        )))
        .await,
    );
    assert_eq!(out[0].outcome, Outcome::Pending);
    assert_eq!(key_state(c, &k2).await, (true, "Enabled".to_string()));
    drop(r);
    let r = Responder::new(cfg).unwrap();
    let id = r.pending()[0].action_id.clone();
    let out = audits(&r.approve(&id, "alice").await.unwrap());
    assert_eq!(out.last().unwrap().outcome, Outcome::Applied);
    assert_eq!(key_state(c, &k2).await, (false, "Disabled".to_string()));

    // 5. A break-glass key is never touched.
    let bg = create_key(c, &[(BREAK_GLASS_TAG, "true")]).await;
    let dir4 = tempfile::tempdir().unwrap();
    let r = Responder::new(config(dir4.path(), ep, trail, Mode::Enforce)).unwrap();
    let out = audits(
        &r.on_finding(&finding("kms_human_decrypt", 4, &[(Provider::Aws, &bg)]))
            .await,
    );
    assert_eq!(out[0].outcome, Outcome::Refused);
    assert_eq!(key_state(c, &bg).await, (true, "Enabled".to_string()));
}

/// moto (KMS), a client on it, a journal directory and the CloudTrail test server.
struct Env {
    _moto: common::Moto,
    ep: String,
    c: Client,
    dir: tempfile::TempDir,
    history: Shared<Trail>,
    trail: String,
}

async fn env() -> Option<Env> {
    let Some(m) = moto() else {
        eprintln!("SKIPPED: no KMSWATCH_TEST_AWS_ENDPOINT and no moto_server on PATH (source scripts/services up)");
        return None;
    };
    fake_aws_env();
    let ep = m.1.clone();
    let history: Shared<Trail> = Arc::new(Mutex::new(Trail::default()));
    Some(Env {
        c: client(&ep).await,
        dir: tempfile::tempdir().unwrap(),
        trail: cloudtrail(history.clone()).await,
        history,
        ep,
        _moto: m,
    })
}

/// Register every evidence event of `f` in the CloudTrail test server's history.
fn known(history: &Shared<Trail>, f: &kmswatch_model::Finding) -> kmswatch_model::Finding {
    let mut h = history.lock().unwrap();
    for e in &f.evidences {
        h.events.push(TrailEvent {
            id: e.metadata.uid.clone(),
            name: e.api.operation.clone(),
            key_arn: e.kms.key.as_ref().unwrap().uid.clone(),
        });
    }
    f.clone()
}

/// Enforce on a forged CloudTrail event: the key exists and is enabled in KMS (moto), but
/// CloudTrail (`LookupEvents`) knows no such event. Nothing changes; the plan record and a
/// finding say why. The same finding once CloudTrail has the event disables the key. A
/// corroborated event of another kind, or about another key, does not count.
#[tokio::test]
async fn enforce_on_a_forged_cloudtrail_event_only_reports() {
    let Some(e) = env().await else { return };
    let (ep, c, dir, history, trail) = (&e.ep, &e.c, &e.dir, &e.history, &e.trail);
    let r = Responder::new(config(dir.path(), ep, trail, Mode::Enforce)).unwrap();
    let k = create_key(c, &[]).await;
    let other = create_key(c, &[]).await;
    let mut f = finding("kms_human_decrypt", 4, &[(Provider::Aws, &k)]);
    f.evidences[0].metadata.uid = "6f1c6fa4-2a0e-4c53-9a8b-2f7d3c1e0b9a".into();
    f.evidences[0].cloud.region = Some("us-east-1".into());

    let out = r.on_finding(&f).await;
    let recs = audits(&out);
    let plan = recs.last().unwrap();
    assert_eq!(
        (plan.phase, plan.outcome),
        (Phase::Plan, Outcome::NotCorroborated),
        "{recs:#?}"
    );
    let why = plan.detail.as_deref().unwrap();
    assert!(
        why.contains("6f1c6fa4-2a0e-4c53-9a8b-2f7d3c1e0b9a")
            && why.contains("CloudTrail has no event"),
        "{why}"
    );
    let raised: Vec<_> = out.iter().filter_map(ResponseOutput::finding).collect();
    assert_eq!(raised.len(), 1);
    assert_eq!(
        raised[0].finding_info.analytic.uid,
        kmswatch_respond::responder::NOT_CORROBORATED_RULE
    );
    assert!(
        raised[0].message.contains("CloudTrail has no event"),
        "{}",
        raised[0].message
    );
    assert_eq!(
        key_state(c, &k).await,
        (true, "Enabled".to_string()),
        "the key stays enabled"
    );
    {
        let h = history.lock().unwrap();
        assert_eq!(
            h.calls,
            [("LookupEvents".to_string(), "us-east-1".to_string())]
        );
    }

    // CloudTrail has an event with that id, but of another operation, then about another key:
    // still not corroborated.
    history.lock().unwrap().events.push(TrailEvent {
        id: f.evidences[0].metadata.uid.clone(),
        name: "ListAliases".into(),
        key_arn: k.clone(),
    });
    assert_eq!(
        audits(&r.on_finding(&f).await).last().unwrap().outcome,
        Outcome::NotCorroborated
    );
    history.lock().unwrap().events = vec![TrailEvent {
        id: f.evidences[0].metadata.uid.clone(),
        name: "Decrypt".into(),
        key_arn: other,
    }];
    let out = audits(&r.on_finding(&f).await);
    assert_eq!(out.last().unwrap().outcome, Outcome::NotCorroborated);
    assert!(out
        .last()
        .unwrap()
        .detail
        .as_deref()
        .unwrap()
        .contains("not about key"));
    assert_eq!(key_state(c, &k).await, (true, "Enabled".to_string()));

    // The event really happened: the same finding disables the key.
    history.lock().unwrap().events = vec![TrailEvent {
        id: f.evidences[0].metadata.uid.clone(),
        name: "Decrypt".into(),
        key_arn: k.clone(),
    }];
    let out = audits(&r.on_finding(&f).await);
    assert_eq!(out.last().unwrap().outcome, Outcome::Applied, "{out:#?}");
    assert!(out[0]
        .detail
        .as_deref()
        .unwrap()
        .contains("CloudTrail event 6f1c6fa4"));
    assert_eq!(key_state(c, &k).await, (false, "Disabled".to_string()));
}

/// Grants: the grant the finding names must exist (`ListGrants`) before it is revoked.
#[tokio::test]
async fn revoke_grant_needs_the_grant_to_exist() {
    let Some(e) = env().await else { return };
    let (ep, c, dir, history, trail) = (&e.ep, &e.c, &e.dir, &e.history, &e.trail);
    let mut cfg = config(dir.path(), ep, trail, Mode::Enforce);
    cfg.playbooks.push(Playbook {
        name: "revoke".into(),
        rules: vec!["kms_grant_to_external".into()],
        min_level: None,
        tags: vec![],
        providers: vec![],
        actions: vec![ActionSpec {
            kind: ActionKind::RevokeGrant,
            rotation_period_days: None,
        }],
        mode: None,
    });
    let r = Responder::new(cfg).unwrap();
    let k = create_key(c, &[]).await;
    let grant = c
        .create_grant()
        .key_id(&k)
        .grantee_principal("arn:aws:iam::444455556666:role/outsider")
        .operations(aws_sdk_kms::types::GrantOperation::Decrypt)
        .send()
        .await
        .unwrap()
        .grant_id()
        .unwrap()
        .to_string();
    let with_grant = |g: &str, uid: &str| {
        let mut f = known(
            history,
            &finding("kms_grant_to_external", 4, &[(Provider::Aws, &k)]),
        );
        f.finding_info.uid = uid.into();
        f.kmswatch.group.insert("grant_id".into(), g.into());
        f
    };
    let out = audits(
        &r.on_finding(&with_grant("0123456789abcdef0123456789abcdef", "f1"))
            .await,
    );
    assert_eq!(
        out.last().unwrap().outcome,
        Outcome::NotCorroborated,
        "{out:#?}"
    );
    assert!(out
        .last()
        .unwrap()
        .detail
        .as_deref()
        .unwrap()
        .contains("has no grant"));
    let out = audits(&r.on_finding(&with_grant(&grant, "f2")).await);
    assert_eq!(out.last().unwrap().outcome, Outcome::Applied, "{out:#?}");
    let left = c.list_grants().key_id(&k).send().await.unwrap();
    assert!(left
        .grants()
        .iter()
        .all(|g| g.grant_id() != Some(grant.as_str())));
}
