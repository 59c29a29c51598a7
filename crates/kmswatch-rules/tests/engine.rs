//! Engine conformance: correlation types, event time, duplicates, late events, chaining,
//! `generate`, suppression, enrichment, bounded state, snapshot/restore, the finding format.
#![allow(clippy::unwrap_used)]

use kmswatch_model::{ActorKind, Event, Finding, Key, KmsOperation, Status};
use kmswatch_rules::{
    CalendarConfig, Engine, EngineConfig, Inventory, LoadOptions, RuleSet, SuppressionConfig,
};
use proptest::prelude::*;
use serde_json::value::RawValue;

const T0: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z (a Thursday)
const MIN: i64 = 60_000;
const DAY: i64 = 86_400_000;
const KEY: &str = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";

fn ev(uid: &str, t: i64, op: KmsOperation, who: &str, key: &str) -> Event {
    let raw = RawValue::from_string(format!("{{\"eventID\":\"{uid}\"}}")).unwrap();
    let mut e = Event::new(t, op, raw);
    e.metadata.uid = uid.to_string();
    e.metadata.product.name = "CloudTrail".to_string();
    e.cloud.account.uid = Some("111122223333".to_string());
    e.cloud.region = Some("us-east-1".to_string());
    e.api.operation = op.as_str().to_string();
    e.api.service.name = "kms.amazonaws.com".to_string();
    e.actor.user.uid = Some(who.to_string());
    e.actor.kind = ActorKind::Human;
    e.kms.key = Some(Key {
        uid: key.to_string(),
        version: None,
        account_uid: Some("111122223333".to_string()),
    });
    e
}

fn decrypt(i: usize, t: i64, who: &str) -> Event {
    ev(&format!("e{i}"), t, KmsOperation::Decrypt, who, KEY)
}

fn rules(yaml: &str) -> RuleSet {
    RuleSet::from_yaml("test.yml", yaml, &LoadOptions::default())
        .unwrap_or_else(|e| panic!("{e}"))
        .0
}

fn engine(yaml: &str) -> Engine {
    Engine::new(rules(yaml), EngineConfig::default()).unwrap()
}

fn run(engine: &mut Engine, events: &[Event]) -> Vec<Finding> {
    let mut out = Vec::new();
    for e in events {
        engine.process(e, "s", &mut out);
    }
    engine.flush(&mut out);
    out
}

fn ids(findings: &[Finding]) -> Vec<String> {
    let mut v: Vec<String> = findings
        .iter()
        .map(|f| serde_json::to_string(f).unwrap())
        .collect();
    v.sort();
    v
}

const DECRYPT_RULE: &str = r#"
title: KMS decrypt
id: 11111111-0000-4000-8000-000000000001
name: kms_decrypt
level: low
logsource: {product: kms}
detection:
    sel:
        kms.operation: Decrypt
    condition: sel
"#;

fn burst_rule(extra: &str) -> String {
    format!(
        r#"title: Decrypt burst
id: 22222222-0000-4000-8000-000000000002
level: high
tags: [attack.impact, attack.t1486]
correlation:
    type: event_count
    rules: [kms_decrypt]
    group-by: [actor.user.uid]
    timespan: 10m
    condition:
        gte: 10
{extra}---
{DECRYPT_RULE}"#
    )
}

#[test]
fn event_count_fires_once_per_burst_and_silences_base_rule() {
    let mut e = engine(&burst_rule(""));
    let mut events: Vec<Event> = (0..12)
        .map(|i| {
            decrypt(
                i,
                T0 + 2 * 3_600_000 + i as i64 * 30_000,
                "alice@example.com",
            )
        })
        .collect();
    // 9 by bob: below the threshold.
    events.extend((0..9).map(|i| decrypt(100 + i, T0 + i as i64 * 1000, "bob@example.com")));
    let out = run(&mut e, &events);
    assert_eq!(out.len(), 1, "{out:#?}");
    let f = &out[0];
    assert_eq!(
        f.finding_info.analytic.uid,
        "22222222-0000-4000-8000-000000000002"
    );
    assert_eq!(f.evidences_count, 12);
    assert_eq!(f.evidences.len(), 10);
    assert_eq!(f.finding_info.related_events.len(), 12);
    assert_eq!(f.start_time, T0 + 2 * 3_600_000);
    assert_eq!(f.end_time, T0 + 2 * 3_600_000 + 11 * 30_000);
    assert_eq!(f.time, f.end_time);
    assert_eq!(f.severity_id, 4);
    assert_eq!(f.kmswatch.correlation_type.as_deref(), Some("event_count"));
    assert_eq!(
        f.kmswatch.group.get("actor.user.uid").map(String::as_str),
        Some("alice@example.com")
    );
    assert_eq!(f.kmswatch.window.unwrap().start_time, f.start_time);
    assert_eq!(f.attacks.len(), 1);
    assert!(
        f.message
            .contains("alice@example.com (human) called Decrypt 12 times on arn:aws:kms"),
        "{}",
        f.message
    );
    assert!(
        f.message.contains("between 2026-01-01 02:00 and 02:05 UTC"),
        "{}",
        f.message
    );
}

#[test]
fn generate_true_emits_referenced_rule_findings() {
    let mut e = engine(&burst_rule("generate: true\n"));
    let events: Vec<Event> = (0..10)
        .map(|i| decrypt(i, T0 + i as i64 * 1000, "a"))
        .collect();
    let out = run(&mut e, &events);
    assert_eq!(
        out.iter()
            .filter(|f| f.kmswatch.correlation_type.is_none())
            .count(),
        10
    );
    assert_eq!(
        out.iter()
            .filter(|f| f.kmswatch.correlation_type.is_some())
            .count(),
        1
    );
    // A rule no correlation refers to emits by itself.
    let mut e = engine(DECRYPT_RULE);
    assert_eq!(run(&mut e, &events).len(), 10);
}

#[test]
fn windows_slide_across_clock_boundaries() {
    // 10 events from 00:55 to 01:04: a tumbling hour would split them; the anchored window
    // sees them together.
    let yaml = burst_rule("").replace("timespan: 10m", "timespan: 1h");
    let mut e = engine(&yaml);
    let events: Vec<Event> = (0..10)
        .map(|i| decrypt(i, T0 + 55 * MIN + i as i64 * MIN, "a"))
        .collect();
    let out = run(&mut e, &events);
    assert_eq!(out.len(), 1);
    // Spread over more than the timespan: no finding.
    let mut e = engine(&burst_rule(""));
    let events: Vec<Event> = (0..10)
        .map(|i| decrypt(i, T0 + i as i64 * 2 * MIN, "a"))
        .collect();
    assert!(run(&mut e, &events).is_empty());
}

#[test]
fn two_bursts_two_findings_with_distinct_stable_ids() {
    let mut events: Vec<Event> = (0..10)
        .map(|i| decrypt(i, T0 + i as i64 * 1000, "a"))
        .collect();
    events.extend((0..10).map(|i| decrypt(50 + i, T0 + 3_600_000 + i as i64 * 1000, "a")));
    let a = run(&mut engine(&burst_rule("")), &events);
    let b = run(&mut engine(&burst_rule("")), &events);
    assert_eq!(a.len(), 2);
    assert_ne!(a[0].finding_info.uid, a[1].finding_info.uid);
    assert_eq!(ids(&a), ids(&b));
}

#[test]
fn value_count_distinct_keys() {
    let yaml = format!(
        r#"title: Many keys
correlation:
    type: value_count
    rules: [kms_decrypt]
    group-by: [actor.user.uid]
    timespan: 1h
    condition:
        field: kms.key.uid
        gte: 3
---
{DECRYPT_RULE}"#
    );
    let same: Vec<Event> = (0..5)
        .map(|i| decrypt(i, T0 + i as i64 * 1000, "a"))
        .collect();
    assert!(run(&mut engine(&yaml), &same).is_empty());
    let many: Vec<Event> = (0..3)
        .map(|i| {
            ev(
                &format!("k{i}"),
                T0 + i as i64 * 1000,
                KmsOperation::Decrypt,
                "a",
                &format!("key-{i}"),
            )
        })
        .collect();
    let out = run(&mut engine(&yaml), &many);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].kmswatch.value, Some(3.0));
    assert_eq!(out[0].resources.len(), 3);
    assert!(
        out[0].message.contains("3 distinct kms.key.uid"),
        "{}",
        out[0].message
    );
}

#[test]
fn value_sum_and_ranges() {
    let yaml = r#"title: Long pending windows
correlation:
    type: value_sum
    rules: [sched]
    group-by: [actor.user.uid]
    timespan: 1h
    condition:
        field: kms.pending_window_days
        gt: 20
        lte: 40
---
title: Scheduled deletion
name: sched
logsource: {product: kms}
detection:
    sel: {kms.operation: ScheduleKeyDeletion}
    condition: sel
"#;
    let mk = |i: usize, days: u32| {
        let mut e = ev(
            &format!("d{i}"),
            T0 + i as i64 * 1000,
            KmsOperation::ScheduleKeyDeletion,
            "a",
            KEY,
        );
        e.kms.pending_window_days = Some(days);
        e
    };
    assert_eq!(
        run(&mut engine(yaml), &[mk(0, 7), mk(1, 7), mk(2, 7)]).len(),
        1
    );
    assert!(run(&mut engine(yaml), &[mk(0, 7), mk(1, 7)]).is_empty());
    assert!(run(&mut engine(yaml), &[mk(0, 50)]).is_empty());
    // A non-monotone condition: the window anchored at the first event sums 60 (too much),
    // so the next window, anchored at the second event, is evaluated: 30 holds.
    let out = run(&mut engine(yaml), &[mk(0, 30), mk(1, 30)]);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].kmswatch.value, Some(30.0));
    assert_eq!(out[0].start_time, T0 + 1000);
}

const TEMPORAL_BASE: &str = r#"
title: Disable key
name: disable
logsource: {product: kms}
detection:
    sel: {kms.operation: DisableKey}
    condition: sel
---
title: Schedule deletion
name: schedule
logsource: {product: kms}
detection:
    sel: {kms.operation: ScheduleKeyDeletion}
    condition: sel
"#;

fn temporal(kind: &str) -> String {
    format!(
        r#"title: Disable then delete
correlation:
    type: {kind}
    rules: [disable, schedule]
    group-by: [kms.key.uid]
    timespan: 15m
---
{TEMPORAL_BASE}"#
    )
}

#[test]
fn temporal_and_temporal_ordered() {
    let dis = ev("1", T0, KmsOperation::DisableKey, "a", KEY);
    let sch = ev(
        "2",
        T0 + 5 * MIN,
        KmsOperation::ScheduleKeyDeletion,
        "b",
        KEY,
    );
    let sch_before = ev(
        "3",
        T0 - 5 * MIN,
        KmsOperation::ScheduleKeyDeletion,
        "b",
        KEY,
    );
    let other_key = ev(
        "4",
        T0 + MIN,
        KmsOperation::ScheduleKeyDeletion,
        "b",
        "other",
    );
    let far = ev(
        "5",
        T0 + 30 * MIN,
        KmsOperation::ScheduleKeyDeletion,
        "b",
        KEY,
    );
    assert_eq!(
        run(
            &mut engine(&temporal("temporal")),
            &[dis.clone(), sch.clone()]
        )
        .len(),
        1
    );
    assert_eq!(
        run(
            &mut engine(&temporal("temporal")),
            &[sch_before.clone(), dis.clone()]
        )
        .len(),
        1
    );
    assert!(run(
        &mut engine(&temporal("temporal")),
        &[dis.clone(), other_key]
    )
    .is_empty());
    assert!(run(&mut engine(&temporal("temporal")), &[dis.clone(), far]).is_empty());
    let ordered = temporal("temporal_ordered");
    let out = run(&mut engine(&ordered), &[sch.clone(), dis.clone()]);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].evidences_count, 2);
    assert!(run(&mut engine(&ordered), &[dis, sch_before]).is_empty());
}

#[test]
fn aliases_join_different_fields() {
    // A grant to X followed by X decrypting, joined through an alias.
    let yaml = format!(
        r#"title: Grant then use
correlation:
    type: temporal_ordered
    rules: [grant, kms_decrypt]
    group-by: [principal]
    timespan: 1h
    aliases:
        principal:
            grant: kms.grantees
            kms_decrypt: actor.user.uid
---
title: Grant
name: grant
logsource: {{product: kms}}
detection:
    sel: {{kms.operation: CreateGrant}}
    condition: sel
---
{DECRYPT_RULE}"#
    );
    let mut grant = ev("g", T0, KmsOperation::CreateGrant, "admin", KEY);
    grant.kms.grantees = vec!["mallory".to_string()];
    let use_ = decrypt(1, T0 + MIN, "mallory");
    let other = decrypt(2, T0 + MIN, "alice");
    let out = run(&mut engine(&yaml), &[grant.clone(), use_]);
    assert_eq!(out.len(), 1);
    assert_eq!(
        out[0].kmswatch.group.get("principal").map(String::as_str),
        Some("mallory")
    );
    assert!(run(&mut engine(&yaml), &[grant, other]).is_empty());
}

/// The specification's chained example, on KMS events: many failed decrypts by one principal
/// followed by a successful one.
const CHAIN: &str = r#"
title: Failed decrypts followed by success
id: b180ead8-d58f-40b2-ae54-c8940995b9b6
level: high
correlation:
    type: temporal_ordered
    rules:
        - multiple_failed
        - successful
    group-by:
        - actor.user.uid
    timespan: 10m
---
title: Multiple failed decrypts
id: a8418a5a-5fc4-46b5-b23b-6c73beb19d41
name: multiple_failed
correlation:
    type: event_count
    rules:
        - failed
    group-by:
        - actor.user.uid
    timespan: 10m
    condition:
        gte: 3
---
title: Failed decrypt
name: failed
logsource: {product: kms}
detection:
    sel: {kms.operation: Decrypt, status: Failure}
    condition: sel
---
title: Successful decrypt
name: successful
logsource: {product: kms}
detection:
    sel: {kms.operation: Decrypt, status: Success}
    condition: sel
"#;

fn failed(i: usize, t: i64) -> Event {
    let mut e = decrypt(i, t, "eve");
    e.status = Status::Failure;
    e
}

#[test]
fn chained_correlations() {
    let mut events: Vec<Event> = (0..4).map(|i| failed(i, T0 + i as i64 * 10_000)).collect();
    events.push(decrypt(10, T0 + 2 * MIN, "eve"));
    let out = run(&mut engine(CHAIN), &events);
    assert_eq!(out.len(), 1, "{out:#?}");
    let f = &out[0];
    assert_eq!(
        f.finding_info.analytic.uid,
        "b180ead8-d58f-40b2-ae54-c8940995b9b6"
    );
    assert_eq!(f.evidences_count, 5);
    assert_eq!(f.finding_info.related_events.len(), 5);
    // Success before the failures: no finding.
    let mut events: Vec<Event> = (0..4)
        .map(|i| failed(i, T0 + MIN + i as i64 * 10_000))
        .collect();
    events.push(decrypt(10, T0, "eve"));
    assert!(run(&mut engine(CHAIN), &events).is_empty());
    // Too few failures.
    let mut events: Vec<Event> = (0..2).map(|i| failed(i, T0 + i as i64 * 10_000)).collect();
    events.push(decrypt(10, T0 + 2 * MIN, "eve"));
    assert!(run(&mut engine(CHAIN), &events).is_empty());
}

#[test]
fn chained_inner_emitted_with_generate() {
    let yaml = CHAIN.replace("level: high\n", "level: high\ngenerate: true\n");
    let mut events: Vec<Event> = (0..4).map(|i| failed(i, T0 + i as i64 * 10_000)).collect();
    events.push(decrypt(10, T0 + 2 * MIN, "eve"));
    let out = run(&mut engine(&yaml), &events);
    let types: Vec<_> = out.iter().map(|f| f.finding_info.title.as_str()).collect();
    assert!(types.contains(&"Multiple failed decrypts"), "{types:?}");
    assert!(
        types.contains(&"Failed decrypts followed by success"),
        "{types:?}"
    );
    // `successful` is generated too (5 findings: 1 inner, 1 outer, 4 failed, 1 success - the
    // failed rule is referenced by the inner correlation without generate, so it is silent).
    assert_eq!(
        out.iter()
            .filter(|f| f.finding_info.title == "Successful decrypt")
            .count(),
        1
    );
    assert_eq!(
        out.iter()
            .filter(|f| f.finding_info.title == "Failed decrypt")
            .count(),
        0
    );
}

#[test]
fn duplicates_are_counted_once() {
    let mut e = engine(&burst_rule(""));
    let mut events: Vec<Event> = (0..9)
        .map(|i| decrypt(i, T0 + i as i64 * 1000, "a"))
        .collect();
    events.extend(events.clone());
    assert!(run(&mut e, &events).is_empty());
    assert_eq!(e.stats().duplicates, 9);
}

#[test]
fn late_events_are_reported_not_counted() {
    let mut e = engine(&burst_rule(""));
    let mut out = Vec::new();
    for i in 0..9 {
        e.process(&decrypt(i, T0 + i as i64 * 1000, "a"), "s", &mut out);
    }
    // An hour later: the watermark (max - 20 min) is past T0.
    e.process(&decrypt(50, T0 + 3_600_000, "b"), "s", &mut out);
    e.process(&decrypt(9, T0 + 9000, "a"), "s", &mut out);
    e.flush(&mut out);
    assert!(out.is_empty(), "{out:#?}");
    let late = e.take_late();
    assert_eq!(late.len(), 1);
    assert_eq!(late[0].event.metadata.uid, "e9");
    assert_eq!(
        late[0].rules,
        vec!["11111111-0000-4000-8000-000000000001".to_string()]
    );
    assert_eq!(e.stats().late, 1);
    // Within the lateness it joins the window.
    let mut e = engine(&burst_rule(""));
    let mut out = Vec::new();
    for i in 0..9 {
        e.process(&decrypt(i, T0 + i as i64 * 1000, "a"), "s", &mut out);
    }
    e.process(&decrypt(50, T0 + 15 * MIN, "b"), "s", &mut out);
    e.process(&decrypt(9, T0 + 9000, "a"), "s", &mut out);
    e.flush(&mut out);
    assert_eq!(out.len(), 1);
    assert!(e.take_late().is_empty());
}

#[test]
fn windows_close_on_watermark_not_only_at_flush() {
    let mut e = engine(&burst_rule(""));
    let mut out = Vec::new();
    for i in 0..10 {
        e.process(&decrypt(i, T0 + i as i64 * 1000, "a"), "s", &mut out);
    }
    assert!(out.is_empty());
    // Window [T0, T0+10m) closes once the watermark (max time - 20m) passes T0+10m.
    e.advance("s", T0 + 30 * MIN, &mut out);
    assert_eq!(out.len(), 1);
    // An idle second source holds the watermark back.
    let mut e = engine(&burst_rule(""));
    let mut out = Vec::new();
    e.process(&decrypt(99, T0, "z"), "other", &mut out);
    for i in 0..10 {
        e.process(&decrypt(i, T0 + i as i64 * 1000, "a"), "s", &mut out);
    }
    e.advance("s", T0 + 30 * MIN, &mut out);
    assert!(out.is_empty());
    e.advance("other", T0 + 30 * MIN, &mut out);
    assert_eq!(out.len(), 1);

    // An ended source (a file read to its end) no longer holds it back.
    let mut e = engine(&burst_rule(""));
    let mut out = Vec::new();
    e.process(&decrypt(99, T0, "z"), "old-file", &mut out);
    for i in 0..10 {
        e.process(&decrypt(i, T0 + i as i64 * 1000, "a"), "s", &mut out);
    }
    e.advance("s", T0 + 30 * MIN, &mut out);
    assert!(out.is_empty());
    e.end_source("old-file", &mut out);
    assert_eq!(out.len(), 1);
}

#[test]
fn suppression_folds_repeats() {
    let cfg = EngineConfig {
        suppression: SuppressionConfig {
            default_secs: 3600,
            ..SuppressionConfig::default()
        },
        ..EngineConfig::default()
    };
    let mut e = Engine::new(rules(DECRYPT_RULE), cfg.clone()).unwrap();
    let mut events: Vec<Event> = (0..37)
        .map(|i| {
            decrypt(
                i,
                T0 + 2 * 3_600_000 + 10 * MIN + i as i64 * 15_000,
                "alice@example.com",
            )
        })
        .collect();
    events.push(decrypt(
        99,
        T0 + 2 * 3_600_000 + 10 * MIN,
        "bob@example.com",
    ));
    let out = run(&mut e, &events);
    assert_eq!(out.len(), 2);
    let alice = out
        .iter()
        .find(|f| f.kmswatch.group.values().any(|v| v == "alice@example.com"))
        .unwrap();
    assert_eq!(alice.count, 37);
    assert_eq!(alice.evidences_count, 37);
    assert!(
        alice.message.contains("called Decrypt 37 times"),
        "{}",
        alice.message
    );
    assert_eq!(e.stats().suppressed, 36);
    // Per-rule override turns it off.
    let mut cfg = cfg;
    cfg.suppression.rules.insert("kms_decrypt".to_string(), 0);
    let mut e = Engine::new(rules(DECRYPT_RULE), cfg).unwrap();
    assert_eq!(run(&mut e, &events).len(), 38);
}

fn shuffle_within(events: &mut [Event], seed: u64, max_shift: i64) {
    // Deterministic shuffle: sort by time + a pseudo-random offset below the lateness.
    let mut x = seed | 1;
    let mut keyed: Vec<(i64, Event)> = events
        .iter()
        .map(|e| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (e.time + (x % max_shift as u64) as i64, e.clone())
        })
        .collect();
    keyed.sort_by_key(|(k, _)| *k);
    for (slot, (_, e)) in events.iter_mut().zip(keyed) {
        *slot = e;
    }
}

fn mixed_events(seed: u64, n: usize) -> Vec<Event> {
    let mut x = seed | 1;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut t = T0;
    (0..n)
        .map(|i| {
            t += (next() % 40_000) as i64;
            let who = ["alice", "bob", "eve"][(next() % 3) as usize];
            let op = [
                KmsOperation::Decrypt,
                KmsOperation::DisableKey,
                KmsOperation::ScheduleKeyDeletion,
            ][(next() % 3) as usize];
            let key = ["k1", "k2", "k3", "k4"][(next() % 4) as usize];
            let mut e = ev(&format!("m{i}"), t, op, who, key);
            if next() % 3 == 0 {
                e.status = Status::Failure;
            }
            e
        })
        .collect()
}

fn all_types() -> String {
    format!(
        r#"title: Burst
correlation:
    type: event_count
    rules: [kms_decrypt]
    group-by: [actor.user.uid]
    timespan: 5m
    condition: {{gte: 4}}
generate: true
---
title: Keys
correlation:
    type: value_count
    rules: [kms_decrypt]
    group-by: [actor.user.uid]
    timespan: 10m
    condition: {{field: kms.key.uid, gte: 3}}
---
title: Disable then delete
correlation:
    type: temporal_ordered
    rules: [disable, schedule]
    group-by: [kms.key.uid]
    timespan: 15m
---
title: Any order
correlation:
    type: temporal
    rules: [disable, schedule]
    group-by: [actor.user.uid]
    timespan: 5m
---
{CHAIN}---
{TEMPORAL_BASE}---
{DECRYPT_RULE}"#
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]
    #[test]
    fn shuffling_within_lateness_gives_identical_findings(seed in 1u64..u64::MAX, n in 20usize..200) {
        let yaml = all_types();
        let events = mixed_events(seed, n);
        let expected = run(&mut engine(&yaml), &events);
        let mut shuffled = events.clone();
        // Shift by up to 19 minutes: every event stays within the 20-minute lateness.
        shuffle_within(&mut shuffled, seed.rotate_left(7), 19 * MIN);
        let got = run(&mut engine(&yaml), &shuffled);
        prop_assert_eq!(ids(&expected), ids(&got));
    }
}

#[test]
fn shuffled_corpus_produces_findings() {
    // Guard for the property test: the corpus exercises several rules.
    let out = run(&mut engine(&all_types()), &mixed_events(42, 400));
    let mut titles: Vec<&str> = out.iter().map(|f| f.finding_info.title.as_str()).collect();
    titles.sort();
    titles.dedup();
    assert!(titles.len() >= 4, "{titles:?}");
}

#[test]
fn snapshot_and_restore_continue_exactly() {
    let yaml = all_types();
    let events = mixed_events(7, 300);
    let expected = run(&mut engine(&yaml), &events);
    let mut a = engine(&yaml);
    let mut out = Vec::new();
    let (first, second) = events.split_at(150);
    for e in first {
        a.process(e, "s", &mut out);
    }
    let json = serde_json::to_string(&a.snapshot()).unwrap();
    let mut b = engine(&yaml);
    b.restore(serde_json::from_str(&json).unwrap()).unwrap();
    for e in second {
        b.process(e, "s", &mut out);
    }
    b.flush(&mut out);
    assert_eq!(ids(&expected), ids(&out));
}

#[test]
fn snapshot_json_is_the_snapshot_without_a_copy() {
    let yaml = all_types();
    let events = mixed_events(11, 300);
    let expected = run(&mut engine(&yaml), &events);
    let mut a = engine(&yaml);
    let mut out = Vec::new();
    let (first, second) = events.split_at(170);
    for e in first {
        a.process(e, "s", &mut out);
    }
    let json = a.snapshot_json().unwrap();
    assert_eq!(json, serde_json::to_vec(&a.snapshot()).unwrap());
    let mut b = engine(&yaml);
    b.restore(serde_json::from_slice(&json).unwrap()).unwrap();
    for e in second {
        b.process(e, "s", &mut out);
    }
    b.flush(&mut out);
    assert_eq!(ids(&expected), ids(&out));
}

#[test]
fn million_groups_stay_bounded() {
    // Up to one million principals, each decrypting once, time advancing 1 s per event, lateness
    // 60 s: windows expire as the watermark advances, so live groups stay near
    // (timespan + lateness) / 1 s and the state stays small.
    let yaml = burst_rule("").replace("timespan: 10m", "timespan: 2m");
    let cfg = EngineConfig {
        lateness_secs: 60,
        ..EngineConfig::default()
    };
    let mut e = Engine::new(rules(&yaml), cfg).unwrap();
    // A million in release builds; a fifth of that in debug builds to keep `cargo test` fast
    // (the bound asserted does not depend on n: it is the window, not the input).
    let n: usize = if cfg!(debug_assertions) {
        200_000
    } else {
        1_000_000
    };
    let mut out = Vec::new();
    let mut base = decrypt(0, T0, "p");
    let mut max_bytes = 0;
    let mut max_groups = 0;
    for i in 0..n {
        base.time = T0 + i as i64 * 1000;
        base.metadata.uid.clear();
        base.metadata.uid.push_str(&i.to_string());
        base.actor.user.uid = Some(format!("p{i}"));
        e.process(&base, "s", &mut out);
        if i % 10_000 == 0 {
            let s = e.stats();
            max_bytes = max_bytes.max(s.state_bytes);
            max_groups = max_groups.max(s.groups);
        }
    }
    let s = e.stats();
    assert_eq!(s.events, n as u64);
    assert!(max_groups <= 200, "live groups {max_groups}");
    let per_group = max_bytes / max_groups.max(1);
    eprintln!("max live groups {max_groups}, max state {max_bytes} bytes (~{per_group} per group)");
    assert!(max_bytes < 4 * 1024 * 1024, "state {max_bytes} bytes");
    // The first-seen baseline is counted apart: it grows with distinct (principal, key)
    // pairs within its 30-day lookback, not with the windows.
    assert!(
        s.baseline_bytes >= n as u64 * 12,
        "baseline {} bytes",
        s.baseline_bytes
    );
    assert!(out.is_empty());
    e.flush(&mut out);
    assert_eq!(e.stats().groups, 0);
}

#[test]
fn max_groups_evicts_and_counts() {
    let cfg = EngineConfig {
        max_groups: 100,
        ..EngineConfig::default()
    };
    let mut e = Engine::new(rules(&burst_rule("")), cfg).unwrap();
    let mut out = Vec::new();
    // All at the same minute: nothing expires, so the cap must evict.
    for i in 0..1000 {
        e.process(&decrypt(i, T0 + i as i64, &format!("p{i}")), "s", &mut out);
    }
    let s = e.stats();
    assert!(s.groups <= 100, "{s:?}");
    assert_eq!(s.groups_evicted, 900);
}

#[test]
fn pending_cap_forces_early_close() {
    let cfg = EngineConfig {
        max_pending_events_per_group: 50,
        ..EngineConfig::default()
    };
    let mut e = Engine::new(rules(&burst_rule("")), cfg).unwrap();
    let events: Vec<Event> = (0..200)
        .map(|i| decrypt(i, T0 + i as i64 * 100, "a"))
        .collect();
    let out = run(&mut e, &events);
    assert!(!out.is_empty());
    assert!(e.stats().forced_closes > 0);
    assert_eq!(out.iter().map(|f| f.evidences_count).sum::<u64>(), 200);
}

#[test]
fn enrichment_fields_drive_rules() {
    let yaml = r#"
title: Off-hours decrypt by unknown principal, first use
logsource: {product: kms}
detection:
    sel:
        kms.operation: Decrypt
        kmswatch.off_hours: true
        kmswatch.principal_known: false
        kmswatch.first_seen: true
    condition: sel
"#;
    let cfg = EngineConfig {
        calendar: Some(CalendarConfig::default()),
        calendars: [(
            "999999999999".to_string(),
            CalendarConfig {
                time_zone: "Asia/Tokyo".to_string(),
                ..CalendarConfig::default()
            },
        )]
        .into_iter()
        .collect(),
        first_seen_learning_days: 0,
        ..EngineConfig::default()
    };
    let inv = Inventory::parse("alice@example.com\n").unwrap();
    let mut e = Engine::with_inventory(rules(yaml), cfg, Some(inv)).unwrap();
    let night = T0 + 2 * 3_600_000; // 02:00 UTC
    let mut out = Vec::new();
    e.process(&decrypt(1, night, "alice@example.com"), "s", &mut out);
    assert!(out.is_empty(), "known principal");
    e.process(&decrypt(2, night, "mallory@example.com"), "s", &mut out);
    assert_eq!(out.len(), 1);
    assert!(
        out[0].message.contains("outside business hours"),
        "{}",
        out[0].message
    );
    e.process(
        &decrypt(3, night + 1000, "mallory@example.com"),
        "s",
        &mut out,
    );
    assert_eq!(out.len(), 1, "no longer first seen");
    // 31 days later: the lookback has expired, first seen again.
    e.process(
        &decrypt(4, night + 31 * 86_400_000, "mallory@example.com"),
        "s",
        &mut out,
    );
    assert_eq!(out.len(), 2);
    // Tokyo account: 02:00 UTC on Tuesday is 11:00 there, business hours.
    let mut tokyo = decrypt(5, night + 33 * 86_400_000, "trudy@example.com");
    tokyo.cloud.account.uid = Some("999999999999".to_string());
    e.process(&tokyo, "s", &mut out);
    assert_eq!(out.len(), 2);
}

#[test]
fn correlation_load_errors_name_file_and_line() {
    let bad = r#"title: Bad
correlation:
    type: event_count
    rules:
        - nope
    group-by: [actor.user.uid]
    timespan: 10m
    condition: {gte: 2}
"#;
    let err = RuleSet::from_yaml("bad.yml", bad, &LoadOptions::default()).unwrap_err();
    let s = err.to_string();
    assert!(s.contains("bad.yml:5:") && s.contains("nope"), "{s}");
    let no_span = format!(
        "title: X\ncorrelation:\n    type: temporal\n    rules: [kms_decrypt]\n---\n{DECRYPT_RULE}"
    );
    let s = RuleSet::from_yaml("x.yml", &no_span, &LoadOptions::default())
        .unwrap_err()
        .to_string();
    assert!(s.contains("x.yml:3:") && s.contains("timespan"), "{s}");
    let bad_field = format!("title: X\ncorrelation:\n    type: event_count\n    rules: [kms_decrypt]\n    group-by: [kms.nope]\n    timespan: 1h\n    condition: {{gt: 1}}\n---\n{DECRYPT_RULE}");
    let s = RuleSet::from_yaml("y.yml", &bad_field, &LoadOptions::default())
        .unwrap_err()
        .to_string();
    assert!(s.contains("kms.nope"), "{s}");
    let cycle = "title: A\nname: a\ncorrelation:\n    type: temporal\n    rules: [b]\n    timespan: 1h\n---\ntitle: B\nname: b\ncorrelation:\n    type: temporal\n    rules: [a]\n    timespan: 1h\n";
    let s = RuleSet::from_yaml("c.yml", cycle, &LoadOptions::default())
        .unwrap_err()
        .to_string();
    assert!(s.contains("cycle"), "{s}");
    let ok = rules(&burst_rule(""));
    assert_eq!(ok.correlations().count(), 1);
    assert_eq!(ok.correlations().next().unwrap().1.timespan_secs, 600);
}

#[test]
fn config_is_strict_and_documented_defaults_hold() {
    let cfg: EngineConfig = serde_json::from_str("{}").unwrap();
    assert_eq!(cfg, EngineConfig::default());
    assert_eq!(cfg.lateness_secs, 1200);
    assert_eq!(cfg.first_seen_lookback_days, 30);
    assert_eq!(cfg.evidence_cap, 10);
    assert!(serde_json::from_str::<EngineConfig>("{\"latenes_secs\": 1}").is_err());
    let bad = EngineConfig {
        calendar: Some(CalendarConfig {
            work_start: "25:00".to_string(),
            ..CalendarConfig::default()
        }),
        ..EngineConfig::default()
    };
    assert!(bad
        .validate()
        .unwrap_err()
        .to_string()
        .contains("calendar.work_start"));
}

#[test]
fn golden_finding_json() {
    let yaml = r#"
title: KMS key scheduled for deletion
id: 33333333-0000-4000-8000-000000000003
status: test
description: A key was scheduled for deletion; once the pending window ends, data encrypted under it is lost.
level: high
tags: [attack.impact, attack.t1485]
logsource: {product: kms}
detection:
    sel: {kms.operation: ScheduleKeyDeletion}
    condition: sel
"#;
    let mut e = Engine::new(
        rules(yaml),
        EngineConfig {
            calendar: Some(CalendarConfig::default()),
            ..EngineConfig::default()
        },
    )
    .unwrap();
    let mut event = ev(
        "0f1e2d3c-aaaa-bbbb-cccc-111122223333",
        T0 + 2 * 3_600_000 + 10 * MIN,
        KmsOperation::ScheduleKeyDeletion,
        "arn:aws:iam::111122223333:user/alice",
        KEY,
    );
    event.actor.user.name = Some("alice".to_string());
    event.actor.user.type_ = Some("IAMUser".to_string());
    event.kms.pending_window_days = Some(7);
    event.src_endpoint.ip = Some("198.51.100.7".to_string());
    let mut out = Vec::new();
    e.process(&event, "s", &mut out);
    assert_eq!(out.len(), 1);
    let got = serde_json::to_string_pretty(&out[0]).unwrap() + "\n";
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/finding.json");
    if std::env::var_os("KMSWATCH_BLESS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &got).unwrap();
    }
    let want = std::fs::read_to_string(&path)
        .unwrap_or_else(|_| panic!("missing {}; run with KMSWATCH_BLESS=1", path.display()));
    assert_eq!(got, want);
    // Round trip.
    let back: Finding = serde_json::from_str(&want).unwrap();
    assert_eq!(serde_json::to_string_pretty(&back).unwrap() + "\n", want);
}

#[test]
fn first_seen_waits_for_its_learning_period() {
    let yaml = "title: first use\nlogsource: {product: kms}\ndetection:\n    sel:\n        kmswatch.first_seen: true\n    condition: sel\n";
    let cfg = EngineConfig {
        first_seen_learning_days: 2,
        ..EngineConfig::default()
    };
    let mut e = Engine::new(rules(yaml), cfg).unwrap();
    let mut out = Vec::new();
    // Day 0 and day 1: every pair is new, nothing is reported (the baseline is learned).
    e.process(&decrypt(1, T0, "a"), "s", &mut out);
    e.process(&decrypt(2, T0 + DAY, "b"), "s", &mut out);
    assert!(out.is_empty(), "{}", out.len());
    // Day 2: a pair never seen is reported; a learned one is not.
    e.process(&decrypt(3, T0 + 2 * DAY, "c"), "s", &mut out);
    e.process(&decrypt(4, T0 + 2 * DAY + 1000, "a"), "s", &mut out);
    e.flush(&mut out);
    assert_eq!(out.len(), 1);
    assert_eq!(
        out[0].actor.as_ref().and_then(|a| a.user.uid.as_deref()),
        Some("c")
    );
}

/// A snapshot written before the state recorded its hash (no `key_hash`: FNV-1a rows) keeps
/// working after an upgrade: a replayed event is still a duplicate and a known (principal,
/// key) pair is still not first seen; a fresh engine records the current hash.
#[test]
fn snapshot_without_key_hash_restores_with_fnv1a() {
    let yaml = "title: first use\nlogsource: {product: kms}\ndetection:\n    sel:\n        kmswatch.first_seen: true\n    condition: sel\n";
    let cfg = || EngineConfig {
        first_seen_learning_days: 0,
        ..EngineConfig::default()
    };
    let mut a = Engine::new(rules(yaml), cfg()).unwrap();
    let mut out = Vec::new();
    a.process(&decrypt(1, T0, "alice"), "s", &mut out);
    assert_eq!(out.len(), 1, "first use");
    let mut state: serde_json::Value = serde_json::to_value(a.snapshot()).unwrap();
    assert_eq!(
        state["key_hash"], "fold64",
        "a fresh state records its hash"
    );

    // The same history written by the old hash, as an older release would have saved it.
    let mut old = Engine::new(rules(yaml), cfg()).unwrap();
    let mut legacy: serde_json::Value = serde_json::to_value(old.snapshot()).unwrap();
    legacy.as_object_mut().unwrap().remove("key_hash");
    old.restore(serde_json::from_value(legacy).unwrap())
        .unwrap();
    let mut old_out = Vec::new();
    old.process(&decrypt(1, T0, "alice"), "s", &mut old_out);
    assert_eq!(old_out.len(), 1);
    let mut legacy: serde_json::Value = serde_json::to_value(old.snapshot()).unwrap();
    assert_eq!(legacy["key_hash"], "fnv1a");
    legacy.as_object_mut().unwrap().remove("key_hash");
    let fold_rows = state["first_seen"]["last_day"].as_object().unwrap().clone();
    let fnv_rows = legacy["first_seen"]["last_day"]
        .as_object()
        .unwrap()
        .clone();
    assert_ne!(
        fold_rows.keys().next(),
        fnv_rows.keys().next(),
        "different hashes"
    );

    for (json, what) in [(&mut state, "fold64"), (&mut legacy, "legacy")] {
        let mut b = Engine::new(rules(yaml), cfg()).unwrap();
        b.restore(serde_json::from_value(json.take()).unwrap())
            .unwrap();
        let mut out = Vec::new();
        b.process(&decrypt(1, T0, "alice"), "s", &mut out);
        assert_eq!(b.stats().duplicates, 1, "{what}: replay is a duplicate");
        b.process(&decrypt(2, T0 + MIN, "alice"), "s", &mut out);
        assert!(out.is_empty(), "{what}: alice is not first seen again");
        b.process(&decrypt(3, T0 + 2 * MIN, "bob"), "s", &mut out);
        assert_eq!(out.len(), 1, "{what}: bob is");
    }
}

/// `kmswatch.principal_known` answers are cached by (uid, name): the cache never mixes up a
/// uid with a name, an absent field with an empty one, or one principal with another,
/// however often each recurs.
#[test]
fn principal_known_cache_keeps_answers_apart() {
    let inv = Inventory::parse("Alice@Example.com\nsvc-name\n").unwrap();
    let mut e =
        Engine::with_inventory(rules(DECRYPT_ONLY), EngineConfig::default(), Some(inv)).unwrap();
    let who = |uid: Option<&str>, name: Option<&str>| {
        let mut ev = decrypt(1, T0, "x");
        ev.actor.user.uid = uid.map(str::to_string);
        ev.actor.user.name = name.map(str::to_string);
        ev
    };
    let cases = [
        (Some("alice@example.com"), None, Some(true)),
        (Some("bob@example.com"), None, Some(false)),
        (Some("bob@example.com"), Some("svc-name"), Some(true)),
        (Some("svc-name"), Some("bob@example.com"), Some(true)),
        (None, Some("bob@example.com"), Some(false)),
        (None, Some("ALICE@EXAMPLE.COM"), Some(true)),
        (Some(""), None, Some(false)),
        (None, Some(""), Some(false)),
        (None, None, None),
        (Some("svc-name"), Some("svc-name"), Some(true)),
        (Some("zed"), Some("zed"), Some(false)),
        (Some("zed"), None, Some(false)),
        (None, Some("svc-name"), Some(true)),
    ];
    for round in 0..3 {
        for (uid, name, want) in cases {
            let got = e.enrich(&who(uid, name)).principal_known;
            assert_eq!(got, want, "round {round}: uid {uid:?} name {name:?}");
        }
    }
}

const DECRYPT_ONLY: &str =
    "title: d\nlogsource: {product: kms}\ndetection:\n    sel:\n        kms.operation: Decrypt\n    condition: sel\n";

// ---------------------------------------------------------------- origins (kmswatch.origins)

fn from(mut e: Event, location: &str) -> Event {
    e.kms.origin = Some(kmswatch_model::Origin {
        source: "cloudtrail".to_string(),
        location: location.to_string(),
    });
    e
}

fn locations(f: &Finding) -> Vec<&str> {
    f.kmswatch
        .origins
        .iter()
        .map(|o| o.location.as_str())
        .collect()
}

#[test]
fn single_event_findings_name_their_origin_and_events_without_one_name_none() {
    let out = run(
        &mut engine(DECRYPT_RULE),
        &[
            from(decrypt(1, T0, "a"), "s3://trail/AWSLogs/1.json.gz"),
            decrypt(2, T0 + 1000, "b"),
        ],
    );
    assert_eq!(out.len(), 2);
    let a = out
        .iter()
        .find(|f| f.finding_info.related_events == ["e1"])
        .unwrap();
    assert_eq!(locations(a), ["s3://trail/AWSLogs/1.json.gz"]);
    assert!(!a.kmswatch.origins_truncated);
    let b = out
        .iter()
        .find(|f| f.finding_info.related_events == ["e2"])
        .unwrap();
    assert!(b.kmswatch.origins.is_empty());
    let json = serde_json::to_string(b).unwrap();
    assert!(
        !json.contains("origins"),
        "absent when there are none: {json}"
    );
}

#[test]
fn correlations_name_the_origins_of_all_contributing_events_beyond_the_evidence_cap() {
    let cfg = EngineConfig {
        evidence_cap: 2,
        related_events_cap: 3,
        ..EngineConfig::default()
    };
    let mut e = Engine::new(rules(&burst_rule("")), cfg).unwrap();
    // 12 decrypts: the first 11 from one object, the last from another; evidences keep 2, the
    // related ids 3, but the finding must still name both objects.
    let events: Vec<Event> = (0..12)
        .map(|i| {
            let loc = if i < 11 {
                "s3://trail/a.json.gz"
            } else {
                "s3://trail/b.json.gz"
            };
            from(decrypt(i, T0 + i as i64 * 1000, "alice"), loc)
        })
        .collect();
    let out = run(&mut e, &events);
    assert_eq!(out.len(), 1, "{out:#?}");
    assert_eq!(out[0].evidences.len(), 2);
    assert_eq!(
        locations(&out[0]),
        ["s3://trail/a.json.gz", "s3://trail/b.json.gz"]
    );
    assert!(!out[0].kmswatch.origins_truncated);
}

#[test]
fn suppressed_repeats_keep_every_origin_and_too_many_origins_are_flagged() {
    let cfg = EngineConfig {
        suppression: SuppressionConfig {
            default_secs: 3600,
            ..SuppressionConfig::default()
        },
        evidence_cap: 2,
        related_events_cap: 2,
        ..EngineConfig::default()
    };
    let mut e = Engine::new(rules(DECRYPT_RULE), cfg.clone()).unwrap();
    let t = T0 + 2 * 3_600_000;
    let events: Vec<Event> = (0..5)
        .map(|i| from(decrypt(i, t + i as i64 * 1000, "alice"), &format!("f{i}")))
        .collect();
    let out = run(&mut e, &events);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].count, 5);
    assert_eq!(locations(&out[0]), ["f0", "f1", "f2", "f3", "f4"]);
    // More distinct origins than a finding lists: the list is capped and says so.
    let n = kmswatch_model::MAX_FINDING_ORIGINS + 6;
    let events: Vec<Event> = (0..n)
        .map(|i| from(decrypt(i, t + i as i64 * 1000, "bob"), &format!("g{i}")))
        .collect();
    let mut e = Engine::new(rules(DECRYPT_RULE), cfg).unwrap();
    let out = run(&mut e, &events);
    assert_eq!(out.len(), 1);
    assert_eq!(
        out[0].kmswatch.origins.len(),
        kmswatch_model::MAX_FINDING_ORIGINS
    );
    assert!(out[0].kmswatch.origins_truncated);
    let mut e = engine(&burst_rule(""));
    let events: Vec<Event> = (0..n)
        .map(|i| from(decrypt(i, T0 + i as i64 * 100, "carol"), &format!("h{i}")))
        .collect();
    let out = run(&mut e, &events);
    assert!(!out.is_empty());
    assert!(out[0].kmswatch.origins_truncated, "correlations cap too");
}

#[test]
fn chained_correlations_carry_the_inner_origins() {
    let mut events: Vec<Event> = (0..4)
        .map(|i| from(failed(i, T0 + i as i64 * 10_000), &format!("fail-{i}")))
        .collect();
    events.push(from(decrypt(10, T0 + 2 * MIN, "eve"), "ok"));
    let out = run(&mut engine(CHAIN), &events);
    assert_eq!(out.len(), 1, "{out:#?}");
    let mut got = locations(&out[0]);
    got.sort_unstable();
    assert_eq!(got, ["fail-0", "fail-1", "fail-2", "fail-3", "ok"]);
}

#[test]
fn origins_survive_a_snapshot_and_old_snapshots_restore() {
    let yaml = burst_rule("");
    let events: Vec<Event> = (0..12)
        .map(|i| {
            from(
                decrypt(i, T0 + i as i64 * 1000, "alice"),
                &format!("o{}", i % 3),
            )
        })
        .collect();
    let expected = run(&mut engine(&yaml), &events);
    assert_eq!(locations(&expected[0]), ["o0", "o1", "o2"]);
    let (out, _) = run_across_restore(&yaml, &events, 6);
    assert_eq!(ids(&expected), ids(&out));

    // A snapshot written before origins existed (no `origins` anywhere, events without
    // `kms.origin`) restores and goes on.
    let plain: Vec<Event> = (0..12)
        .map(|i| decrypt(i, T0 + i as i64 * 1000, "bob"))
        .collect();
    let (out, snapshot) = run_across_restore(&yaml, &plain, 6);
    assert!(
        !String::from_utf8(snapshot).unwrap().contains("origins"),
        "no trace of the field without origins"
    );
    assert_eq!(out.len(), 1);
    assert!(out[0].kmswatch.origins.is_empty());
}

/// Run `events` through one engine up to `at`, snapshot it (JSON), restore a new engine from
/// the snapshot and run the rest: the findings of both, and the snapshot.
fn run_across_restore(yaml: &str, events: &[Event], at: usize) -> (Vec<Finding>, Vec<u8>) {
    let (first, second) = events.split_at(at);
    let mut a = engine(yaml);
    let mut out = Vec::new();
    for e in first {
        a.process(e, "s", &mut out);
    }
    let json = a.snapshot_json().unwrap();
    let mut b = engine(yaml);
    b.restore(serde_json::from_slice(&json).unwrap()).unwrap();
    for e in second {
        b.process(e, "s", &mut out);
    }
    b.flush(&mut out);
    (out, json)
}
