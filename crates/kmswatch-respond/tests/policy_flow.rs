//! The policy end to end through the Responder, on the in-memory key store: approval flow,
//! idempotency, blast-radius cap, rate limit, allow/deny/break-glass, undo, journal replay.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use kmswatch_model::Provider;
use kmswatch_respond::action::BREAK_GLASS_TAG;
use kmswatch_respond::config::{ActionSpec, BlastRadius, KeyMatch, Playbook, Rate};
use kmswatch_respond::responder::BLAST_RADIUS_RULE;
use kmswatch_respond::testutil::{event_id, finding};
use kmswatch_respond::{
    Action, ActionKind, AuditRecord, Backend, KeyState, ManualRequest, MemoryBackend, Mode,
    Outcome, Phase, RespondConfig, Responder, ResponseOutput,
};
use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

/// Key `kN`'s ARN (`k1` -> `...:key/00000001-0000-4000-8000-000000000000`).
fn arn(id: &str) -> String {
    let n: u32 = id.trim_start_matches('k').parse().unwrap();
    format!("arn:aws:kms:us-east-1:111122223333:key/{n:08x}-0000-4000-8000-000000000000")
}

fn enabled() -> KeyState {
    KeyState {
        status: "Enabled".into(),
        enabled: true,
        account: Some("111122223333".into()),
        ..Default::default()
    }
}

fn config(dir: &Path, mode: Mode) -> RespondConfig {
    RespondConfig {
        mode,
        journal_path: dir.join("journal.jsonl"),
        playbooks: vec![Playbook {
            name: "contain".into(),
            rules: vec!["kms_human_decrypt".into()],
            min_level: None,
            tags: vec![],
            providers: vec![],
            actions: vec![ActionSpec {
                kind: ActionKind::Disable,
                rotation_period_days: None,
            }],
            mode: None,
        }],
        ..Default::default()
    }
}

struct Env {
    mem: MemoryBackend,
    clock: Arc<AtomicI64>,
}

impl Env {
    fn new(keys: &[&str]) -> Env {
        let mem = MemoryBackend::new(Provider::Aws);
        for k in keys {
            mem.put(&arn(k), enabled());
            // The evidence events of the test findings really happened.
            mem.log_event(&event_id(&arn(k)));
        }
        Env {
            mem,
            clock: Arc::new(AtomicI64::new(1_700_000_000_000)),
        }
    }

    fn responder(&self, cfg: RespondConfig) -> Responder {
        let c = self.clock.clone();
        Responder::new(cfg)
            .unwrap()
            .with_backend(Backend::Memory(self.mem.clone()))
            .with_clock(Arc::new(move || c.load(Ordering::SeqCst)))
    }
}

fn audits(out: &[ResponseOutput]) -> Vec<&AuditRecord> {
    out.iter().filter_map(ResponseOutput::audit).collect()
}

fn last_outcome(out: &[ResponseOutput]) -> (Phase, Outcome) {
    let a = audits(out);
    let r = a.last().expect("at least one record");
    eprintln!("{:?} {:?} {:?}", r.phase, r.outcome, r.detail);
    (r.phase, r.outcome)
}

#[tokio::test]
async fn approval_waits_then_applies_and_survives_restart() {
    let dir = tempfile::tempdir().unwrap();
    let env = Env::new(&["k1", "k2"]);
    let cfg = config(dir.path(), Mode::Approve);
    let r = env.responder(cfg.clone());
    let f1 = finding("kms_human_decrypt", 4, &[(Provider::Aws, &arn("k1"))]);
    let out = r.on_finding(&f1).await;
    assert_eq!(last_outcome(&out), (Phase::Plan, Outcome::Pending));
    assert!(
        env.mem.calls().is_empty(),
        "nothing changes before approval"
    );
    // The same finding again does not queue a second action.
    assert!(r.on_finding(&f1).await.is_empty());
    let mut f2 = finding("kms_human_decrypt", 4, &[(Provider::Aws, &arn("k2"))]);
    f2.finding_info.uid = "other".into();
    r.on_finding(&f2).await;
    drop(r);

    // Restart: pending approvals come back from the journal.
    let r = env.responder(cfg.clone());
    let pending = r.pending();
    assert_eq!(pending.len(), 2);
    let id1 = pending
        .iter()
        .find(|p| p.key == arn("k1"))
        .unwrap()
        .action_id
        .clone();
    let id2 = pending
        .iter()
        .find(|p| p.key == arn("k2"))
        .unwrap()
        .action_id
        .clone();
    let out = r.approve(&id1, "alice").await.unwrap();
    let recs = audits(&out);
    assert_eq!(recs[0].phase, Phase::Approve);
    assert_eq!(recs[0].who, "alice");
    assert_eq!(last_outcome(&out), (Phase::Execute, Outcome::Applied));
    assert!(!env.mem.get(&arn("k1")).unwrap().enabled);
    let rej = r.reject(&id2, "bob", "false positive").unwrap();
    assert_eq!(rej.outcome, Outcome::Rejected);
    assert!(
        env.mem.get(&arn("k2")).unwrap().enabled,
        "rejected: untouched"
    );
    assert!(r.approve(&id1, "alice").await.is_err(), "no longer pending");
    assert!(
        r.approve(&id2, "alice").await.is_err(),
        "rejected is not pending"
    );
    assert!(r.pending().is_empty());
    drop(r);
    assert!(env.responder(cfg).pending().is_empty(), "replay agrees");
}

#[tokio::test]
async fn idempotent_by_state_and_by_finding() {
    let dir = tempfile::tempdir().unwrap();
    let env = Env::new(&["k1", "k2"]);
    let mut off = enabled();
    off.enabled = false;
    off.status = "Disabled".into();
    env.mem.put(&arn("k2"), off);
    let cfg = config(dir.path(), Mode::Enforce);
    let r = env.responder(cfg.clone());
    // Already disabled: already_applied, no change call.
    let out = r
        .on_finding(&finding(
            "kms_human_decrypt",
            4,
            &[(Provider::Aws, &arn("k2"))],
        ))
        .await;
    assert_eq!(last_outcome(&out), (Phase::Plan, Outcome::AlreadyApplied));
    assert!(env.mem.calls().is_empty());
    // Applied once; the same finding replayed later (after a person re-enabled the key, and
    // after a restart) is not applied again.
    let f = finding("kms_human_decrypt", 4, &[(Provider::Aws, &arn("k1"))]);
    let out = r.on_finding(&f).await;
    let recs = audits(&out);
    assert_eq!(recs.len(), 2, "plan then execute");
    assert_eq!(
        (recs[0].phase, recs[0].outcome),
        (Phase::Plan, Outcome::Planned)
    );
    let exec = recs[1];
    assert_eq!(exec.outcome, Outcome::Applied);
    assert!(exec.state_before.as_ref().unwrap().enabled);
    assert!(!exec.state_after.as_ref().unwrap().enabled);
    assert_eq!(exec.undo.as_ref().map(|a| a.kind), Some(ActionKind::Enable));
    // The printed command names the journal the action was recorded in.
    assert_eq!(
        exec.undo_command.as_deref(),
        Some(
            format!(
                "kmswatch respond undo {} --journal {}",
                exec.record_id,
                dir.path().join("journal.jsonl").display()
            )
            .as_str()
        )
    );
    assert_eq!(
        exec.finding_id.as_deref(),
        Some(f.finding_info.uid.as_str())
    );
    env.mem.put(&arn("k1"), enabled());
    drop(r);
    let r = env.responder(cfg);
    let out = r.on_finding(&f).await;
    assert_eq!(last_outcome(&out), (Phase::Plan, Outcome::AlreadyApplied));
    assert_eq!(env.mem.calls().len(), 1);
}

#[tokio::test]
async fn blast_radius_cap_refuses_and_raises_a_finding_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let env = Env::new(&["k1", "k2", "k3", "k4"]);
    let mut cfg = config(dir.path(), Mode::Enforce);
    cfg.blast_radius = BlastRadius {
        max_keys_per_hour: 2,
    };
    let r = env.responder(cfg.clone());
    for k in ["k1", "k2"] {
        let mut f = finding("kms_human_decrypt", 4, &[(Provider::Aws, &arn(k))]);
        f.finding_info.uid = format!("f-{k}");
        let out = r.on_finding(&f).await;
        assert_eq!(last_outcome(&out), (Phase::Execute, Outcome::Applied));
    }
    assert_eq!(r.blast_count(), 2);
    let mut f3 = finding("kms_human_decrypt", 4, &[(Provider::Aws, &arn("k3"))]);
    f3.finding_info.uid = "f-k3".into();
    let out = r.on_finding(&f3).await;
    let refused = audits(&out)
        .into_iter()
        .find(|a| a.phase == Phase::Plan)
        .unwrap()
        .clone();
    assert_eq!(refused.outcome, Outcome::Refused);
    assert!(refused
        .detail
        .as_deref()
        .unwrap()
        .starts_with("blast_radius"));
    let raised: Vec<_> = out.iter().filter_map(ResponseOutput::finding).collect();
    assert_eq!(raised.len(), 1);
    assert_eq!(raised[0].finding_info.analytic.uid, BLAST_RADIUS_RULE);
    assert_eq!(raised[0].resources[0].uid, arn("k3"));
    assert!(env.mem.get(&arn("k3")).unwrap().enabled, "k3 untouched");
    // A person can still act by hand.
    let out = r
        .manual(ManualRequest {
            provider: Provider::Aws,
            key: arn("k3"),
            action: Action::new(ActionKind::Disable),
            dry_run: false,
            reason: "incident 42".into(),
            who: "alice".into(),
        })
        .await
        .unwrap();
    assert_eq!(last_outcome(&out), (Phase::Execute, Outcome::Applied));
    drop(r);

    // After a restart the counters come back: still halted, no second halt finding this hour.
    let r = env.responder(cfg.clone());
    assert_eq!(r.blast_count(), 2);
    let mut f4 = finding("kms_human_decrypt", 4, &[(Provider::Aws, &arn("k4"))]);
    f4.finding_info.uid = "f-k4".into();
    let out = r.on_finding(&f4).await;
    assert_eq!(last_outcome(&out), (Phase::Plan, Outcome::Refused));
    assert_eq!(out.iter().filter_map(ResponseOutput::finding).count(), 0);
    // An hour later the window has slid.
    env.clock.fetch_add(3_600_000, Ordering::SeqCst);
    let mut f5 = finding("kms_human_decrypt", 4, &[(Provider::Aws, &arn("k4"))]);
    f5.finding_info.uid = "f-k4-later".into();
    let out = r.on_finding(&f5).await;
    assert_eq!(last_outcome(&out), (Phase::Execute, Outcome::Applied));
}

#[tokio::test]
async fn rate_limit_per_account_survives_restart() {
    let dir = tempfile::tempdir().unwrap();
    let env = Env::new(&["k1", "k2", "k3"]);
    let mut cfg = config(dir.path(), Mode::Enforce);
    cfg.rate_limits.aws = Rate {
        per_second: 1.0,
        burst: 2,
    };
    cfg.rate_wait_max_ms = 0;
    let req = |k: &str| ManualRequest {
        provider: Provider::Aws,
        key: arn(k),
        action: Action::new(ActionKind::Disable),
        dry_run: false,
        reason: "test".into(),
        who: "t".into(),
    };
    let r = env.responder(cfg.clone());
    for k in ["k1", "k2"] {
        let out = r.manual(req(k)).await.unwrap();
        assert_eq!(last_outcome(&out), (Phase::Execute, Outcome::Applied));
    }
    let out = r.manual(req("k3")).await.unwrap();
    let rec = audits(&out)[0].clone();
    assert_eq!(rec.outcome, Outcome::Refused);
    assert!(rec.detail.unwrap().starts_with("rate_limited"));
    drop(r);
    // Restart: the bucket is rebuilt from the journal, so still empty at the same instant.
    let r = env.responder(cfg.clone());
    assert_eq!(
        last_outcome(&r.manual(req("k3")).await.unwrap()).1,
        Outcome::Refused
    );
    // With waiting allowed, the action waits for the next token instead.
    drop(r);
    cfg.rate_wait_max_ms = 2000;
    let r = env.responder(cfg);
    env.clock.fetch_add(1000, Ordering::SeqCst);
    assert_eq!(
        last_outcome(&r.manual(req("k3")).await.unwrap()),
        (Phase::Execute, Outcome::Applied)
    );
}

#[tokio::test]
async fn allow_deny_and_break_glass() {
    let dir = tempfile::tempdir().unwrap();
    let env = Env::new(&["k1", "k2", "k3"]);
    let mut bg = enabled();
    bg.tags.insert(BREAK_GLASS_TAG.into(), "true".into());
    env.mem.put(&arn("k3"), bg);
    let mut named = enabled();
    named.names = vec!["alias/prod-payments".into()];
    env.mem.put(&arn("k2"), named);
    let mut cfg = config(dir.path(), Mode::Enforce);
    cfg.deny = KeyMatch {
        names: vec!["alias/prod-*".into()],
        ..Default::default()
    };
    cfg.allow = KeyMatch {
        accounts: vec!["111122223333".into()],
        ..Default::default()
    };
    let r = env.responder(cfg);
    for (k, want) in [
        ("k1", None),
        ("k2", Some("denied")),
        ("k3", Some("break_glass")),
    ] {
        let mut f = finding("kms_human_decrypt", 4, &[(Provider::Aws, &arn(k))]);
        f.finding_info.uid = format!("f-{k}");
        let out = r.on_finding(&f).await;
        let last = (*audits(&out).last().unwrap()).clone();
        match want {
            None => assert_eq!(last.outcome, Outcome::Applied),
            Some(w) => {
                assert_eq!(last.outcome, Outcome::Refused, "{k}");
                assert!(last.detail.unwrap().starts_with(w), "{k}");
            }
        }
    }
    assert_eq!(env.mem.calls(), vec![format!("disable {}", arn("k1"))]);
    // A person on the CLI cannot touch break-glass keys either.
    let out = r
        .manual(ManualRequest {
            provider: Provider::Aws,
            key: arn("k3"),
            action: Action::new(ActionKind::Disable),
            dry_run: false,
            reason: String::new(),
            who: "alice".into(),
        })
        .await
        .unwrap();
    assert_eq!(last_outcome(&out).1, Outcome::Refused);
}

#[tokio::test]
async fn dry_run_default_and_undo() {
    let dir = tempfile::tempdir().unwrap();
    let env = Env::new(&["k1"]);
    // Default mode is dry_run: nothing changes.
    let mut cfg = config(dir.path(), Mode::default());
    let r = env.responder(cfg.clone());
    let f = finding("kms_human_decrypt", 4, &[(Provider::Aws, &arn("k1"))]);
    assert_eq!(
        last_outcome(&r.on_finding(&f).await),
        (Phase::Plan, Outcome::DryRun)
    );
    assert!(env.mem.calls().is_empty());
    drop(r);
    cfg.mode = Mode::Enforce;
    let r = env.responder(cfg);
    let out = r.on_finding(&f).await;
    let exec = audits(&out).last().unwrap().record_id.clone();
    assert!(!env.mem.get(&arn("k1")).unwrap().enabled);
    let out = r.undo(&exec, "alice", "").await.unwrap();
    let last = (*audits(&out).last().unwrap()).clone();
    assert_eq!(last.outcome, Outcome::Applied);
    assert_eq!(last.undo_of.as_deref(), Some(exec.as_str()));
    assert!(env.mem.get(&arn("k1")).unwrap().enabled);
    let again = r.undo(&exec, "alice", "").await.unwrap();
    assert_eq!(last_outcome(&again).1, Outcome::AlreadyApplied);
}

#[tokio::test]
async fn missing_responder_is_a_failed_record_and_a_finding() {
    let dir = tempfile::tempdir().unwrap();
    let env = Env::new(&[]);
    let r = env.responder(config(dir.path(), Mode::Enforce));
    let f = finding(
        "kms_human_decrypt",
        4,
        &[(
            Provider::Gcp,
            "projects/kmswatch-demo/locations/global/keyRings/r/cryptoKeys/k",
        )],
    );
    let out = r.on_finding(&f).await;
    assert_eq!(last_outcome(&out).1, Outcome::Failed);
    assert_eq!(
        out.iter()
            .filter_map(ResponseOutput::finding)
            .next()
            .unwrap()
            .finding_info
            .analytic
            .uid,
        kmswatch_respond::responder::ACTION_FAILED_RULE
    );
}

/// An invalid glob anywhere in the lists is a validation error naming the field and the
/// pattern; it used to pass, and an invalid tag glob matched every value (so an allow list of
/// `env=prod[` let a key tagged `env=production` be disabled).
#[test]
fn invalid_globs_fail_validation_with_the_pattern() {
    for (field, m) in [
        (
            "tags",
            KeyMatch {
                tags: vec!["env=prod[".into()],
                ..Default::default()
            },
        ),
        (
            "accounts",
            KeyMatch {
                accounts: vec!["1111[".into()],
                ..Default::default()
            },
        ),
        (
            "ids",
            KeyMatch {
                ids: vec!["arn:aws:kms:*:{x".into()],
                ..Default::default()
            },
        ),
    ] {
        for which in ["allow", "deny"] {
            let mut cfg = RespondConfig::default();
            if which == "allow" {
                cfg.allow = m.clone();
            } else {
                cfg.deny = m.clone();
            }
            let e = cfg
                .validate()
                .expect_err("an invalid glob must not validate")
                .to_string();
            assert!(e.contains(&format!("{which}.{field}[0]")), "{e}");
            let pattern = m
                .tags
                .iter()
                .chain(&m.accounts)
                .chain(&m.ids)
                .next()
                .unwrap();
            let shown = pattern.split_once('=').map_or(pattern.as_str(), |(_, v)| v);
            assert!(e.contains(shown), "{e}");
        }
    }
}

#[tokio::test]
async fn an_invalid_allow_glob_never_lets_a_key_through() {
    let dir = tempfile::tempdir().unwrap();
    let env = Env::new(&["k1"]);
    let mut tagged = enabled();
    tagged.tags.insert("env".into(), "production".into());
    env.mem.put(&arn("k1"), tagged);
    let mut cfg = config(dir.path(), Mode::Enforce);
    cfg.allow = KeyMatch {
        tags: vec!["env=prod[".into()],
        ..Default::default()
    };
    match Responder::new(cfg) {
        Err(e) => assert!(e.to_string().contains("allow.tags[0]"), "{e}"),
        Ok(r) => {
            let r = r.with_backend(Backend::Memory(env.mem.clone()));
            r.on_finding(&finding(
                "kms_human_decrypt",
                4,
                &[(Provider::Aws, &arn("k1"))],
            ))
            .await;
            panic!(
                "the config was accepted; key enabled afterwards: {}",
                env.mem.get(&arn("k1")).unwrap().enabled
            );
        }
    }
    assert!(env.mem.calls().is_empty());
}

/// Enforce on a finding whose event the cloud's history does not know: nothing changes, the
/// plan record and a finding say why. The same finding with the event in the history acts.
#[tokio::test]
async fn enforce_needs_the_cloud_to_corroborate_the_finding() {
    let dir = tempfile::tempdir().unwrap();
    let env = Env::new(&["k1"]);
    let r = env.responder(config(dir.path(), Mode::Enforce));
    let mut forged = finding("kms_human_decrypt", 4, &[(Provider::Aws, &arn("k1"))]);
    forged.evidences[0].metadata.uid = "forged-event-id".into();
    let out = r.on_finding(&forged).await;
    let rec = audits(&out).last().copied().cloned().unwrap();
    assert_eq!(
        (rec.phase, rec.outcome),
        (Phase::Plan, Outcome::NotCorroborated)
    );
    assert!(
        rec.detail.as_deref().unwrap().contains("forged-event-id"),
        "{:?}",
        rec.detail
    );
    assert!(rec.basis.is_some(), "the claims are on the record");
    let raised: Vec<_> = out.iter().filter_map(ResponseOutput::finding).collect();
    assert_eq!(raised.len(), 1);
    assert_eq!(
        raised[0].finding_info.analytic.uid,
        kmswatch_respond::responder::NOT_CORROBORATED_RULE
    );
    assert!(env.mem.calls().is_empty(), "nothing changed");
    assert!(env.mem.get(&arn("k1")).unwrap().enabled);

    // No evidence at all: not corroborated either.
    let mut bare = finding("kms_human_decrypt", 4, &[(Provider::Aws, &arn("k1"))]);
    bare.finding_info.uid = "bare".into();
    bare.evidences.clear();
    assert_eq!(
        last_outcome(&r.on_finding(&bare).await).1,
        Outcome::NotCorroborated
    );

    // The real one.
    let mut real = finding("kms_human_decrypt", 4, &[(Provider::Aws, &arn("k1"))]);
    real.finding_info.uid = "real".into();
    let out = r.on_finding(&real).await;
    assert_eq!(last_outcome(&out), (Phase::Execute, Outcome::Applied));
    let plan = audits(&out)[0].clone();
    assert!(plan.detail.unwrap().starts_with("corroborated: "));
    assert!(!env.mem.get(&arn("k1")).unwrap().enabled);
}

/// A forged "deletion scheduled" finding on a key that is disabled on purpose (not pending
/// deletion) must not re-enable it.
#[tokio::test]
async fn cancel_deletion_needs_a_pending_deletion() {
    let dir = tempfile::tempdir().unwrap();
    let env = Env::new(&["k1"]);
    let mut off = enabled();
    off.enabled = false;
    off.status = "Disabled".into();
    env.mem.put(&arn("k1"), off);
    let mut cfg = config(dir.path(), Mode::Enforce);
    cfg.playbooks[0].actions[0].kind = ActionKind::CancelDeletion;
    let r = env.responder(cfg);
    let out = r
        .on_finding(&finding(
            "kms_human_decrypt",
            4,
            &[(Provider::Aws, &arn("k1"))],
        ))
        .await;
    let rec = audits(&out).last().copied().cloned().unwrap();
    assert_eq!(rec.outcome, Outcome::NotCorroborated);
    assert!(rec.detail.unwrap().contains("not pending deletion"));
    assert!(!env.mem.get(&arn("k1")).unwrap().enabled, "still disabled");
    assert!(env.mem.calls().is_empty());
}

/// A finding naming a key no cloud can have (a hostile host, a region that is a host name):
/// refused before any call, recorded, and a finding raised.
#[tokio::test]
async fn invalid_targets_are_refused_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let env = Env::new(&["k1"]);
    let r = env.responder(config(dir.path(), Mode::Enforce));
    let hostile = "arn:aws:kms:eu-west-1.attacker.example:111122223333:key/00000001-0000-4000-8000-000000000000";
    let f = finding("kms_human_decrypt", 4, &[(Provider::Aws, hostile)]);
    let out = r.on_finding(&f).await;
    let rec = audits(&out)[0].clone();
    assert_eq!(rec.outcome, Outcome::Refused);
    assert!(rec.detail.unwrap().starts_with("invalid_target"));
    let raised: Vec<_> = out.iter().filter_map(ResponseOutput::finding).collect();
    assert_eq!(
        raised[0].finding_info.analytic.uid,
        kmswatch_respond::responder::INVALID_TARGET_RULE
    );
    assert!(
        r.on_finding(&f).await.is_empty(),
        "reported once per finding"
    );
    assert!(env.mem.calls().is_empty());
}

/// `provenance.require: trusted_location`: an origin outside the trusted locations means
/// plan only, with a finding that names it.
#[tokio::test]
async fn untrusted_origins_mean_plan_only() {
    use kmswatch_respond::provenance::{ProvenanceConfig, Require, TrustedLocation};
    let dir = tempfile::tempdir().unwrap();
    let env = Env::new(&["k1"]);
    let mut cfg = config(dir.path(), Mode::Enforce);
    cfg.provenance = ProvenanceConfig {
        require: Require::TrustedLocation,
        trusted_locations: vec![TrustedLocation {
            source: Some("trail".into()),
            location: "s3://org-trail/AWSLogs/*".into(),
        }],
        ..Default::default()
    };
    let r = env.responder(cfg);
    let mut f = finding("kms_human_decrypt", 4, &[(Provider::Aws, &arn("k1"))]);
    let origin = |loc: &str| kmswatch_model::Origin {
        source: "trail".into(),
        location: loc.into(),
    };
    f.kmswatch.origins = vec![origin("s3://attacker-bucket/AWSLogs/x.json.gz")];
    f.evidences[0].kms.origin = Some(origin("s3://attacker-bucket/AWSLogs/x.json.gz"));
    let out = r.on_finding(&f).await;
    let rec = audits(&out).last().copied().cloned().unwrap();
    assert_eq!(rec.outcome, Outcome::UnverifiedOrigin);
    assert!(
        rec.detail
            .as_deref()
            .unwrap()
            .contains("s3://attacker-bucket"),
        "{:?}",
        rec.detail
    );
    assert_eq!(
        out.iter()
            .filter_map(ResponseOutput::finding)
            .next()
            .unwrap()
            .finding_info
            .analytic
            .uid,
        kmswatch_respond::responder::UNVERIFIED_ORIGIN_RULE
    );
    assert!(env.mem.calls().is_empty());
    // From the trusted bucket it acts.
    let mut ok = f.clone();
    ok.finding_info.uid = "trusted".into();
    ok.kmswatch.origins = vec![origin("s3://org-trail/AWSLogs/y.json.gz")];
    ok.evidences[0].kms.origin = Some(origin("s3://org-trail/AWSLogs/y.json.gz"));
    assert_eq!(
        last_outcome(&r.on_finding(&ok).await),
        (Phase::Execute, Outcome::Applied)
    );
}
