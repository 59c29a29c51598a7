//! Conformance tests: one small inline rule per modifier and condition form, with events that
//! must and must not match.

#![allow(clippy::unwrap_used)]

use kmswatch_model::{ActorKind, Event, Key, KmsOperation, Provider};
use kmswatch_rules::{Enrichment, LoadErrorKind, LoadOptions, RawSource, RuleId, RuleSet};
use serde_json::{json, Value};
use std::collections::HashMap;

/// A CloudTrail-logsource rule with the given `detection` body (indented 4 spaces).
fn raw_rule(detection: &str) -> String {
    format!(
        "title: t\nid: r1\nlogsource:\n    product: aws\n    service: cloudtrail\ndetection:\n{detection}\n"
    )
}

fn load(text: &str) -> RuleSet {
    load_with(text, &LoadOptions::default())
}

fn load_with(text: &str, opts: &LoadOptions) -> RuleSet {
    match RuleSet::from_yaml("inline.yml", text, opts) {
        Ok((r, report)) => {
            assert!(report.errors.is_empty());
            r
        }
        Err(e) => panic!("{e}"),
    }
}

fn raw_hits(rules: &RuleSet, event: &Value) -> Vec<RuleId> {
    let mut out = Vec::new();
    rules.matches_raw(RawSource::AwsCloudTrail, event, &mut out);
    out
}

/// Assert which events match a raw rule.
fn check(detection: &str, cases: &[(Value, bool)]) {
    let rules = load(&raw_rule(detection));
    for (event, want) in cases {
        let got = !raw_hits(&rules, event).is_empty();
        assert_eq!(got, *want, "detection:\n{detection}\nevent: {event}");
    }
}

fn load_err(text: &str) -> kmswatch_rules::LoadError {
    match RuleSet::from_yaml("bad.yml", text, &LoadOptions::default()) {
        Ok(_) => panic!("rule should not load:\n{text}"),
        Err(e) => e.0.into_iter().next().expect("one error"),
    }
}

#[test]
fn plain_values_are_case_insensitive_and_lists_are_or() {
    check(
        "    sel:\n        eventName:\n            - Decrypt\n            - Encrypt\n    condition: sel",
        &[
            (json!({"eventName": "decrypt"}), true),
            (json!({"eventName": "ENCRYPT"}), true),
            (json!({"eventName": "Decrypted"}), false),
            (json!({}), false),
        ],
    );
}

#[test]
fn maps_are_and_list_of_maps_is_or() {
    check(
        "    sel:\n        eventName: Decrypt\n        eventSource: kms.amazonaws.com\n    condition: sel",
        &[
            (json!({"eventName": "Decrypt", "eventSource": "kms.amazonaws.com"}), true),
            (json!({"eventName": "Decrypt", "eventSource": "s3.amazonaws.com"}), false),
        ],
    );
    check(
        "    sel:\n        - eventName: Decrypt\n        - eventSource: kms.amazonaws.com\n    condition: sel",
        &[
            (json!({"eventName": "Decrypt"}), true),
            (json!({"eventSource": "kms.amazonaws.com"}), true),
            (json!({"eventName": "Encrypt"}), false),
        ],
    );
}

#[test]
fn wildcards_and_escapes() {
    check(
        "    sel:\n        a: 'ab*cd'\n        b: 'x?z'\n        c: 'lit\\*'\n    condition: sel",
        &[
            (json!({"a": "AB123cd", "b": "xyz", "c": "lit*"}), true),
            (json!({"a": "abcd", "b": "xz", "c": "lit*"}), false),
            (json!({"a": "abcd", "b": "xyz", "c": "litx"}), false),
        ],
    );
    // A plain backslash stays a backslash; `\\*` is a backslash then a wildcard; `\*` a star.
    check(
        "    sel:\n        a: 'C:\\Windows\\\\*'\n    condition: sel",
        &[
            (json!({"a": "c:\\windows\\system32"}), true),
            (json!({"a": "c:/windows"}), false),
        ],
    );
    check(
        "    sel:\n        a: 'C:\\Windows\\*'\n    condition: sel",
        &[
            (json!({"a": "c:\\windows*"}), true),
            (json!({"a": "c:\\windows\\system32"}), false),
        ],
    );
}

#[test]
fn contains_startswith_endswith() {
    check(
        "    sel:\n        a|contains: 'mid'\n        b|startswith: 'pre'\n        c|endswith: 'fix'\n    condition: sel",
        &[
            (json!({"a": "xxMIDxx", "b": "PREfix", "c": "suffIX"}), true),
            (json!({"a": "xxmdxx", "b": "prefix", "c": "suffix"}), false),
            (json!({"a": "mid", "b": "xpre", "c": "suffix"}), false),
            (json!({"a": "mid", "b": "pre", "c": "fixed"}), false),
        ],
    );
}

#[test]
fn contains_list_and_all() {
    check(
        "    sel:\n        a|contains:\n            - one\n            - two\n    condition: sel",
        &[
            (json!({"a": "xxTWOxx"}), true),
            (json!({"a": "three"}), false),
        ],
    );
    check(
        "    sel:\n        a|contains|all:\n            - one\n            - two\n    condition: sel",
        &[
            (json!({"a": "two and one"}), true),
            (json!({"a": "only one"}), false),
        ],
    );
    // `all` on a single value is rejected by the spec.
    let e = load_err(&raw_rule(
        "    sel:\n        a|contains|all: one\n    condition: sel",
    ));
    assert!(e.reason.contains("all"), "{e}");
}

#[test]
fn cased() {
    check(
        "    sel:\n        a|cased: Decrypt\n        b|contains|cased: Key\n    condition: sel",
        &[
            (json!({"a": "Decrypt", "b": "aKey"}), true),
            (json!({"a": "decrypt", "b": "aKey"}), false),
            (json!({"a": "Decrypt", "b": "akey"}), false),
        ],
    );
}

#[test]
fn regex_and_flags() {
    check(
        "    sel:\n        a|re: '^arn:aws:iam::[0-9]+:root$'\n    condition: sel",
        &[
            (json!({"a": "arn:aws:iam::111122223333:root"}), true),
            (json!({"a": "ARN:AWS:IAM::111122223333:ROOT"}), false),
        ],
    );
    check(
        "    sel:\n        a|re|i: '^arn:aws:iam::[0-9]+:root$'\n    condition: sel",
        &[(json!({"a": "ARN:AWS:IAM::1:ROOT"}), true)],
    );
    check(
        "    sel:\n        a|re|m: '^second$'\n    condition: sel",
        &[(json!({"a": "first\nsecond"}), true)],
    );
    check(
        "    sel:\n        a|re: '^second$'\n    condition: sel",
        &[(json!({"a": "first\nsecond"}), false)],
    );
    check(
        "    sel:\n        a|re|s: 'a.b'\n    condition: sel",
        &[(json!({"a": "a\nb"}), true)],
    );
    check(
        "    sel:\n        a|re: 'a.b'\n    condition: sel",
        &[(json!({"a": "a\nb"}), false)],
    );
    let e = load_err(&raw_rule(
        "    sel:\n        a|re: '(unclosed'\n    condition: sel",
    ));
    assert_eq!(e.kind, LoadErrorKind::Invalid);
    assert_eq!(e.line, 8, "{e}");
    assert!(e.to_string().starts_with("bad.yml:8:"), "{e}");
    assert!(e.reason.contains("regular expression"), "{e}");
}

#[test]
fn cidr() {
    check(
        "    sel:\n        sourceIPAddress|cidr:\n            - 10.0.0.0/8\n            - '2001:db8::/32'\n    condition: sel",
        &[
            (json!({"sourceIPAddress": "10.20.30.40"}), true),
            (json!({"sourceIPAddress": "2001:db8::5"}), true),
            (json!({"sourceIPAddress": "11.0.0.1"}), false),
            (json!({"sourceIPAddress": "kms.amazonaws.com"}), false),
        ],
    );
    let e = load_err(&raw_rule(
        "    sel:\n        a|cidr: 10.0.0.0/40\n    condition: sel",
    ));
    assert!(e.reason.contains("CIDR"), "{e}");
}

#[test]
fn exists_and_null() {
    check(
        "    sel:\n        errorCode|exists: true\n    condition: sel",
        &[(json!({"errorCode": null}), true), (json!({"x": 1}), false)],
    );
    check(
        "    sel:\n        errorCode|exists: false\n    condition: sel",
        &[
            (json!({"errorCode": "AccessDenied"}), false),
            (json!({"x": 1}), true),
        ],
    );
    check(
        "    sel:\n        a: x\n    empty:\n        b: null\n    condition: sel and empty",
        &[
            (json!({"a": "x"}), true),
            (json!({"a": "x", "b": null}), true),
            (json!({"a": "x", "b": "v"}), false),
        ],
    );
    check(
        "    sel:\n        b: ''\n    condition: sel",
        &[
            (json!({"b": ""}), true),
            (json!({}), false),
            (json!({"b": "v"}), false),
        ],
    );
    let e = load_err(&raw_rule(
        "    sel:\n        b:\n            - ''\n            - null\n    condition: sel",
    ));
    assert!(e.reason.contains("null"), "{e}");
}

#[test]
fn numeric_comparisons_and_numbers() {
    check(
        "    sel:\n        n|gt: 5\n        m|lte: 2.5\n    condition: sel",
        &[
            (json!({"n": 6, "m": 2.5}), true),
            (json!({"n": "7", "m": "1"}), true),
            (json!({"n": 5, "m": 1}), false),
            (json!({"n": 6, "m": 3}), false),
        ],
    );
    check(
        "    sel:\n        n|gte: 5\n        m|lt: 0\n    condition: sel",
        &[
            (json!({"n": 5, "m": -1}), true),
            (json!({"n": 4, "m": -1}), false),
        ],
    );
    // A number in the rule matches the number and its string form.
    check(
        "    sel:\n        code: 403\n    condition: sel",
        &[
            (json!({"code": 403}), true),
            (json!({"code": "403"}), true),
            (json!({"code": 404}), false),
        ],
    );
    check(
        "    sel:\n        flag: true\n    condition: sel",
        &[
            (json!({"flag": true}), true),
            (json!({"flag": "True"}), true),
            (json!({"flag": false}), false),
        ],
    );
}

#[test]
fn neq() {
    check(
        "    sel:\n        eventSource: kms.amazonaws.com\n        userIdentity.type|neq: AWSService\n    condition: sel",
        &[
            (json!({"eventSource": "kms.amazonaws.com", "userIdentity": {"type": "IAMUser"}}), true),
            (json!({"eventSource": "kms.amazonaws.com", "userIdentity": {"type": "awsservice"}}), false),
        ],
    );
}

#[test]
fn time_modifiers() {
    check(
        "    sel:\n        eventTime|hour|gte: 22\n    condition: sel",
        &[
            (json!({"eventTime": "2024-01-01T23:10:00Z"}), true),
            (json!({"eventTime": "2024-01-01T08:10:00Z"}), false),
        ],
    );
    check(
        "    sel:\n        eventTime|month: 2\n        eventTime|year: 2024\n    condition: sel",
        &[
            (json!({"eventTime": "2024-02-29T00:00:00Z"}), true),
            (json!({"eventTime": "2023-02-28T00:00:00Z"}), false),
        ],
    );
}

#[test]
fn base64_and_base64offset() {
    // base64("kmswatch") = a21zd2F0Y2g=
    check(
        "    sel:\n        a|base64: kmswatch\n    condition: sel",
        &[
            (json!({"a": "a21zd2F0Y2g="}), true),
            (json!({"a": "kmswatch"}), false),
        ],
    );
    let enc = |s: &str| {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(s)
    };
    check(
        "    sel:\n        a|base64offset|contains: secret\n    condition: sel",
        &[
            (json!({"a": enc("my secret")}), true),
            (json!({"a": enc("xsecretx")}), true),
            (json!({"a": enc("xxsecret")}), true),
            (json!({"a": enc("nothing here")}), false),
        ],
    );
    let e = load_err(&raw_rule(
        "    sel:\n        a|contains|base64: x\n    condition: sel",
    ));
    assert!(e.reason.contains("wildcards"), "{e}");
}

#[test]
fn utf16_with_base64() {
    use base64::Engine as _;
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let le: Vec<u8> = "cmd".encode_utf16().flat_map(u16::to_le_bytes).collect();
    let be: Vec<u8> = "cmd".encode_utf16().flat_map(u16::to_be_bytes).collect();
    check(
        "    sel:\n        a|wide|base64: cmd\n    condition: sel",
        &[
            (json!({"a": b64(&le)}), true),
            (json!({"a": b64(b"cmd")}), false),
        ],
    );
    check(
        "    sel:\n        a|utf16le|base64: cmd\n    condition: sel",
        &[(json!({"a": b64(&le)}), true)],
    );
    check(
        "    sel:\n        a|utf16be|base64: cmd\n    condition: sel",
        &[
            (json!({"a": b64(&be)}), true),
            (json!({"a": b64(&le)}), false),
        ],
    );
    let mut bom = vec![0xff, 0xfe];
    bom.extend_from_slice(&le);
    check(
        "    sel:\n        a|utf16|base64: cmd\n    condition: sel",
        &[(json!({"a": b64(&bom)}), true)],
    );
    // UTF-16 bytes cannot be matched against JSON text.
    let e = load_err(&raw_rule(
        "    sel:\n        a|utf16le: cmd\n    condition: sel",
    ));
    assert_eq!(e.kind, LoadErrorKind::Unsupported);
    assert!(e.reason.contains("base64"), "{e}");
}

#[test]
fn windash() {
    check(
        "    sel:\n        cmd|windash|contains: ' -force'\n    condition: sel",
        &[
            (json!({"cmd": "x /force"}), true),
            (json!({"cmd": "x \u{2013}force"}), true),
            (json!({"cmd": "x -force"}), true),
            (json!({"cmd": "x +force"}), false),
        ],
    );
}

#[test]
fn expand_placeholders() {
    let mut opts = LoadOptions::default();
    opts.placeholders.insert(
        "Administrators".into(),
        vec!["admin-*".into(), "root".into()],
    );
    let rules = load_with(
        &raw_rule("    sel:\n        userIdentity.userName|expand: '%Administrators%'\n    condition: sel"),
        &opts,
    );
    assert_eq!(
        raw_hits(&rules, &json!({"userIdentity": {"userName": "admin-bob"}})).len(),
        1
    );
    assert_eq!(
        raw_hits(&rules, &json!({"userIdentity": {"userName": "ROOT"}})).len(),
        1
    );
    assert!(raw_hits(&rules, &json!({"userIdentity": {"userName": "bob"}})).is_empty());
    // Without expand, the placeholder is a literal.
    check(
        "    sel:\n        a: '%Administrators%'\n    condition: sel",
        &[(json!({"a": "%administrators%"}), true)],
    );
    let e = load_err(&raw_rule(
        "    sel:\n        a|expand: '%Nope%'\n    condition: sel",
    ));
    assert!(e.reason.contains("%Nope%"), "{e}");
}

#[test]
fn fieldref() {
    check(
        "    sel:\n        userIdentity.arn|fieldref: requestParameters.userName\n    condition: sel",
        &[
            (json!({"userIdentity": {"arn": "Bob"}, "requestParameters": {"userName": "bob"}}), true),
            (json!({"userIdentity": {"arn": "Bob"}, "requestParameters": {"userName": "eve"}}), false),
            (json!({"userIdentity": {"arn": "Bob"}}), false),
        ],
    );
    check(
        "    sel:\n        a|fieldref|neq: b\n    condition: sel",
        &[
            (json!({"a": "1", "b": "2"}), true),
            (json!({"a": "1", "b": "1"}), false),
        ],
    );
    check(
        "    sel:\n        a|fieldref|endswith: b\n    condition: sel",
        &[
            (json!({"a": "arn:user/bob", "b": "BOB"}), true),
            (json!({"a": "bob/x", "b": "bob"}), false),
        ],
    );
}

#[test]
fn keywords() {
    check(
        "    keywords:\n        - 'ScheduleKeyDeletion'\n        - 'PurgeKey'\n    condition: keywords",
        &[
            (json!({"eventName": "ScheduleKeyDeletion"}), true),
            (json!({"deep": {"list": ["x", "call purgekey now"]}}), true),
            (json!({"eventName": "Decrypt"}), false),
        ],
    );
    check(
        "    keywords:\n        '|all':\n            - 'alpha'\n            - 'beta'\n    condition: keywords",
        &[
            (json!({"a": "alpha", "b": {"c": "BETA"}}), true),
            (json!({"a": "alpha"}), false),
        ],
    );
}

#[test]
fn conditions() {
    let det = "    sel_a:\n        a: 1\n    sel_b:\n        b: 1\n    filter_c:\n        c: 1\n    _hidden:\n        d: 1\n";
    let case =
        |cond: &str, cases: &[(Value, bool)]| check(&format!("{det}    condition: {cond}"), cases);
    case(
        "sel_a and not filter_c",
        &[(json!({"a": 1}), true), (json!({"a": 1, "c": 1}), false)],
    );
    case(
        "sel_a or sel_b",
        &[(json!({"b": 1}), true), (json!({"c": 1}), false)],
    );
    case(
        "1 of sel_*",
        &[(json!({"b": 1}), true), (json!({"c": 1}), false)],
    );
    case(
        "all of sel_*",
        &[(json!({"a": 1, "b": 1}), true), (json!({"a": 1}), false)],
    );
    case(
        "1 of them",
        &[(json!({"c": 1}), true), (json!({"d": 1}), false)],
    );
    case(
        "all of them",
        &[
            (json!({"a": 1, "b": 1, "c": 1}), true),
            (json!({"a": 1, "b": 1, "d": 1}), false),
        ],
    );
    case(
        "not (sel_a or sel_b)",
        &[(json!({"c": 1}), true), (json!({"a": 1}), false)],
    );
    case(
        "sel_a and (sel_b or filter_c)",
        &[(json!({"a": 1, "c": 1}), true), (json!({"a": 1}), false)],
    );
    case(
        "not sel_a and sel_b",
        &[(json!({"b": 1}), true), (json!({"a": 1, "b": 1}), false)],
    );
    case(
        "sel_a or sel_b and filter_c",
        &[(json!({"a": 1}), true), (json!({"b": 1}), false)],
    );
    case(
        "2 of sel_* or filter_c",
        &[(json!({"a": 1, "b": 1}), true), (json!({"a": 1}), false)],
    );
    case(
        "1 of sel_* and not 1 of filter_*",
        &[(json!({"a": 1}), true), (json!({"a": 1, "c": 1}), false)],
    );
    // A list of conditions is OR.
    check(
        &format!("{det}    condition:\n        - sel_a\n        - sel_b"),
        &[(json!({"b": 1}), true), (json!({"c": 1}), false)],
    );
    let e = load_err(&raw_rule(&format!(
        "{det}    condition: sel_a | count() > 3"
    )));
    assert!(e.reason.contains("correlation"), "{e}");
    let e = load_err(&raw_rule(&format!("{det}    condition: sel_x")));
    assert!(e.reason.contains("sel_x"), "{e}");
}

#[test]
fn lists_in_events_match_any_element() {
    check(
        "    sel:\n        tags|contains: prod\n    condition: sel",
        &[
            (json!({"tags": ["dev", "production"]}), true),
            (json!({"tags": ["dev"]}), false),
        ],
    );
}

#[test]
fn literal_dotted_keys() {
    check(
        "    sel:\n        gcp.audit.method_name: x\n    condition: sel",
        &[
            (json!({"gcp.audit.method_name": "x"}), true),
            (json!({"gcp": {"audit": {"method_name": "X"}}}), true),
        ],
    );
}

#[test]
fn unknown_modifier_and_bad_yaml_name_the_line() {
    let e = load_err(&raw_rule(
        "    sel:\n        a|bogus: x\n    condition: sel",
    ));
    assert_eq!(e.line, 8);
    assert!(e.reason.contains("bogus"), "{e}");
    let e = load_err("title: t\nlogsource: {product: aws\ndetection: x\n");
    assert_eq!(e.kind, LoadErrorKind::Syntax);
    assert!(e.line >= 2, "{e}");
}

#[test]
fn invalid_rules_do_not_disable_others() {
    let text = format!(
        "{}---\n{}---\ntitle: other\nlogsource: {{product: windows}}\ndetection:\n    s:\n        a: 1\n    condition: s\n",
        raw_rule("    sel:\n        eventName: Decrypt\n    condition: sel"),
        raw_rule("    sel:\n        a|re: '('\n    condition: sel").replace("id: r1", "id: r2"),
    );
    let err = RuleSet::from_yaml("multi.yml", &text, &LoadOptions::default()).unwrap_err();
    assert_eq!(err.0.len(), 1);
    assert_eq!(err.0[0].rule.as_deref(), Some("r2"));
    let opts = LoadOptions {
        skip_invalid: true,
        ..LoadOptions::default()
    };
    let (rules, report) = RuleSet::from_yaml("multi.yml", &text, &opts).unwrap();
    assert_eq!(rules.len(), 2, "the good rule and the inapplicable one");
    assert_eq!(report.errors.len(), 1);
    assert_eq!(report.skipped.len(), 1);
    assert!(report.skipped[0].reason.contains("windows"));
    assert_eq!(raw_hits(&rules, &json!({"eventName": "Decrypt"})).len(), 1);
}

#[test]
fn global_filters_apply_to_named_rules() {
    let text = format!(
        "{}---\ntitle: not service roles\nlogsource:\n    product: aws\n    service: cloudtrail\nfilter:\n    rules:\n        - r1\n    selection:\n        userIdentity.type: AWSService\n    condition: not selection\n",
        raw_rule("    sel:\n        eventName: Decrypt\n    condition: sel")
    );
    let rules = load(&text);
    assert_eq!(
        raw_hits(
            &rules,
            &json!({"eventName": "Decrypt", "userIdentity": {"type": "IAMUser"}})
        )
        .len(),
        1
    );
    assert!(raw_hits(
        &rules,
        &json!({"eventName": "Decrypt", "userIdentity": {"type": "AWSService"}})
    )
    .is_empty());
    let id = rules.find("r1").unwrap();
    assert_eq!(
        rules.rule(id).unwrap().filters,
        vec!["not service roles".to_string()]
    );
    // A filter for another logsource does not apply.
    let other = text.replace(
        "    product: aws\n    service: cloudtrail\nfilter",
        "    product: azure\n    service: activitylogs\nfilter",
    );
    let (rules, report) = RuleSet::from_yaml("f.yml", &other, &LoadOptions::default()).unwrap();
    assert_eq!(
        raw_hits(
            &rules,
            &json!({"eventName": "Decrypt", "userIdentity": {"type": "AWSService"}})
        )
        .len(),
        1
    );
    assert_eq!(report.skipped.len(), 1);
}

fn kms_event(op: KmsOperation) -> Event {
    let raw = serde_json::value::to_raw_value(&json!({
        "eventSource": "kms.amazonaws.com",
        "eventName": op.as_str(),
        "userIdentity": {"type": "Root", "arn": "arn:aws:iam::111122223333:root"}
    }))
    .unwrap();
    let mut e = Event::new(1_700_000_000_000, op, raw);
    e.cloud.provider = Provider::Aws;
    e.metadata.product.name = "CloudTrail".into();
    e.actor.kind = ActorKind::Root;
    e.actor.user.uid = Some("arn:aws:iam::111122223333:root".into());
    e.kms.key = Some(Key {
        uid: "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab".into(),
        ..Key::default()
    });
    e.kms.cross_account = true;
    e
}

const KMS_RULES: &str = "title: deletion by root off hours
id: k1
logsource:
    product: kms
detection:
    selection:
        kms.operation:
            - ScheduleKeyDeletion
            - DisableKey
        actor.kind: root
        kms.cross_account: true
        kmswatch.off_hours: true
    condition: selection
---
title: any key under account
id: k2
logsource:
    product: kms
detection:
    selection:
        kms.key.uid|contains: ':111122223333:key/'
        cloud.provider: AWS
    condition: selection
---
title: raw root
id: k3
logsource:
    product: aws
    service: cloudtrail
detection:
    selection:
        userIdentity.type: Root
        eventName: ScheduleKeyDeletion
    condition: selection
";

#[test]
fn normalized_rules_and_enrichment_and_raw_rules_together() {
    let rules = load(KMS_RULES);
    let (k1, k2, k3) = (
        rules.find("k1").unwrap(),
        rules.find("k2").unwrap(),
        rules.find("k3").unwrap(),
    );
    let mut out = Vec::new();
    let off = Enrichment {
        off_hours: Some(true),
        ..Enrichment::default()
    };
    rules.matches(
        &kms_event(KmsOperation::ScheduleKeyDeletion),
        &off,
        &mut out,
    );
    assert_eq!(out, vec![k1, k2, k3]);
    out.clear();
    rules.matches(
        &kms_event(KmsOperation::ScheduleKeyDeletion),
        &Enrichment::default(),
        &mut out,
    );
    assert_eq!(out, vec![k2, k3], "absent enrichment does not match `true`");
    out.clear();
    rules.matches(&kms_event(KmsOperation::Decrypt), &off, &mut out);
    assert_eq!(out, vec![k2]);
    out.clear();
    let mut azure = kms_event(KmsOperation::ScheduleKeyDeletion);
    azure.cloud.provider = Provider::Azure;
    azure.metadata.product.name = "Azure Key Vault".into();
    rules.matches(&azure, &off, &mut out);
    assert_eq!(out, vec![k1], "raw AWS rule does not run on an Azure event");
}

#[test]
fn unknown_normalized_field_is_a_load_error() {
    let e = load_err("title: t\nlogsource:\n    product: kms\ndetection:\n    sel:\n        kms.keyid: x\n    condition: sel\n");
    assert_eq!(e.line, 6);
    assert!(e.reason.contains("unknown field `kms.keyid`"), "{e}");
    let e = load_err("title: t\nlogsource:\n    product: kms\ndetection:\n    sel:\n        raw.eventName: x\n    condition: sel\n");
    assert!(e.reason.contains("provider logsource"), "{e}");
}

#[test]
fn event_fields_cover_the_serialized_event() {
    // Every leaf of the serialized event (except `raw`) is addressable, and reads the same value.
    let mut e = kms_event(KmsOperation::Decrypt);
    e.cloud.region = Some("us-east-1".into());
    e.cloud.account.uid = Some("111122223333".into());
    e.api.operation = "Decrypt".into();
    e.api.service.name = "kms.amazonaws.com".into();
    e.api.request = Some(kmswatch_model::Request { uid: "req".into() });
    e.status_detail = Some("AccessDenied".into());
    e.actor.user.name = Some("root".into());
    e.actor.user.type_ = Some("Root".into());
    e.actor.user.account = Some(kmswatch_model::Account {
        uid: Some("111122223333".into()),
    });
    e.actor.invoked_by = Some("ec2.amazonaws.com".into());
    e.actor.session = Some(kmswatch_model::Session {
        issuer: Some("arn:role".into()),
        is_mfa: Some(true),
    });
    e.actor.impersonator = Some(kmswatch_model::User {
        uid: Some("a@b".into()),
        name: Some("a".into()),
        type_: Some("User".into()),
        account: Some(kmswatch_model::Account {
            uid: Some("p".into()),
        }),
    });
    e.src_endpoint.ip = Some("10.0.0.1".into());
    e.http_request.user_agent = Some("aws-cli".into());
    e.metadata.uid = "uid".into();
    e.metadata.log_format = "aws_cloudtrail".into();
    e.metadata.product.vendor_name = "AWS".into();
    if let Some(k) = e.kms.key.as_mut() {
        k.version = Some("1".into());
        k.account_uid = Some("111122223333".into());
    }
    e.kms.pending_window_days = Some(7);
    e.kms.object_uid = Some("obj".into());
    e.kms.grantees = vec!["arn:aws:iam::444455556666:root".into()];
    e.kms.policy = Some(kmswatch_model::PolicyChange {
        public: true,
        external_accounts: vec!["444455556666".into()],
    });
    let json = serde_json::to_value(&e).unwrap();
    let mut leaves = Vec::new();
    fn walk(prefix: &str, v: &Value, out: &mut Vec<(String, Value)>) {
        match v {
            Value::Object(o) => {
                for (k, v) in o {
                    let p = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    if p != "raw" {
                        walk(&p, v, out);
                    }
                }
            }
            // A list of strings is one leaf (matched element-wise).
            _ => out.push((prefix.to_string(), v.clone())),
        }
    }
    walk("", &json, &mut leaves);
    assert!(leaves.len() >= 35, "{}", leaves.len());
    let enrichment = Enrichment::default();
    let doc = kmswatch_rules::EventDocument {
        event: &e,
        enrichment: &enrichment,
    };
    for (name, value) in &leaves {
        let path = kmswatch_rules::FieldPath::normalized(name)
            .unwrap_or_else(|| panic!("{name} not addressable"));
        let got = kmswatch_rules::Document::get(&doc, &path);
        let got_json = match got {
            kmswatch_rules::FieldValue::Str(s) => json!(s),
            kmswatch_rules::FieldValue::Int(i) => json!(i),
            kmswatch_rules::FieldValue::Bool(b) => json!(b),
            kmswatch_rules::FieldValue::StrList(l) => json!(l),
            other => panic!("{name}: {other:?}"),
        };
        assert_eq!(&got_json, value, "{name}");
    }
    assert_eq!(
        leaves.len(),
        kmswatch_rules::EventField::ALL.len(),
        "every EventField is a serialized leaf"
    );
}

#[test]
fn gcp_elastic_names_map_to_log_entry() {
    let rules = load(
        "title: g\nid: g1\nlogsource:\n    product: gcp\n    service: gcp.audit\ndetection:\n    selection:\n        gcp.audit.method_name|endswith: DestroyCryptoKeyVersion\n    condition: selection\n",
    );
    let entry = json!({"protoPayload": {"methodName": "google.cloud.kms.v1.KeyManagementService.DestroyCryptoKeyVersion"}});
    let mut out = Vec::new();
    rules.matches_raw(RawSource::GcpAudit, &entry, &mut out);
    assert_eq!(out.len(), 1);
    out.clear();
    rules.matches_raw(RawSource::AwsCloudTrail, &entry, &mut out);
    assert!(out.is_empty());
}

#[test]
fn candidate_index_keeps_results_identical() {
    // Many indexed rules plus unindexed ones: results equal a brute-force check per rule.
    let mut text = String::new();
    let ops = [
        "Decrypt",
        "Encrypt",
        "CreateGrant",
        "ScheduleKeyDeletion",
        "PutKeyPolicy",
    ];
    for (i, op) in ops.iter().enumerate() {
        text.push_str(&format!(
            "title: r{i}\nid: r{i}\nlogsource:\n    product: aws\n    service: cloudtrail\ndetection:\n    sel:\n        eventName: {op}\n    condition: sel\n---\n"
        ));
    }
    text.push_str("title: u\nid: u\nlogsource:\n    product: aws\n    service: cloudtrail\ndetection:\n    sel:\n        eventName|startswith: Sched\n    condition: sel\n---\n");
    text.push_str("title: n\nid: n\nlogsource:\n    product: aws\n    service: cloudtrail\ndetection:\n    sel:\n        eventName: Decrypt\n    f:\n        eventSource: kms.amazonaws.com\n    condition: not f or sel\n");
    let rules = load(&text);
    let mut hits: HashMap<&str, Vec<String>> = HashMap::new();
    for op in ops.iter().chain(["Other"].iter()) {
        for src in ["kms.amazonaws.com", "x"] {
            let ev = json!({"eventName": op.to_lowercase(), "eventSource": src});
            let got: Vec<String> = raw_hits(&rules, &ev)
                .iter()
                .map(|i| rules.rule(*i).unwrap().id.clone().unwrap())
                .collect();
            hits.insert(op, got.clone());
            let mut want: Vec<String> = ops
                .iter()
                .enumerate()
                .filter(|(_, o)| *o == op)
                .map(|(i, _)| format!("r{i}"))
                .collect();
            if op.starts_with("Sched") {
                want.push("u".into());
            }
            if src != "kms.amazonaws.com" || *op == "Decrypt" {
                want.push("n".into());
            }
            let mut got_sorted = got.clone();
            got_sorted.sort();
            want.sort();
            assert_eq!(got_sorted, want, "{op} {src}");
        }
    }
}

/// An AWS event whose raw record is exactly `text` (so `RuleSet::matches` sees the text).
fn raw_text_event(text: &str) -> Event {
    let raw = serde_json::value::RawValue::from_string(text.to_string()).unwrap();
    let mut e = Event::new(1_700_000_000_000, KmsOperation::Decrypt, raw);
    e.cloud.provider = Provider::Aws;
    e.metadata.product.name = "CloudTrail".into();
    e
}

/// `matches` (prefiltered raw text) must agree with `matches_raw` (parsed record) and `want`.
fn check_text(detection: &str, cases: &[(&str, bool)]) {
    let rules = load(&raw_rule(detection));
    for (text, want) in cases {
        let mut got = Vec::new();
        rules.matches(&raw_text_event(text), &Enrichment::default(), &mut got);
        let parsed: Value = serde_json::from_str(text).unwrap();
        assert_eq!(
            got,
            raw_hits(&rules, &parsed),
            "prefilter disagrees with the parsed match:\n{detection}\n{text}"
        );
        assert_eq!(
            !got.is_empty(),
            *want,
            "detection:\n{detection}\nevent: {text}"
        );
    }
}

#[test]
fn raw_text_prefilter_keeps_case_insensitive_matches() {
    let det = "    sel:\n        eventSource: cloudtrail.amazonaws.com\n        eventName|endswith: Logging\n    condition: sel";
    check_text(
        det,
        &[
            (
                r#"{"eventSource":"CLOUDTRAIL.amazonaws.COM","eventName":"stoplogging"}"#,
                true,
            ),
            (
                r#"{"eventSource":"cloudtrail.amazonaws.com","eventName":"StopLogging"}"#,
                true,
            ),
            // A literal absent from the text: never a match.
            (
                r#"{"eventSource":"cloudtrail.amazonaws.com","eventName":"DeleteTrail"}"#,
                false,
            ),
            (
                r#"{"eventSource":"kms.amazonaws.com","eventName":"StopLogging"}"#,
                false,
            ),
            // `\u` escapes spell the literal differently: the record is still parsed and matched.
            (
                r#"{"eventSource":"cloudtrail.amazonaws.com","eventName":"StopLoggin\u0067"}"#,
                true,
            ),
            // Non-ASCII text may fold differently: the prefilter stands aside.
            (
                r#"{"eventSource":"cloudtrail.amazonaws.com","eventName":"StopLogging","x":"é"}"#,
                true,
            ),
        ],
    );
    // Keywords, `all`, `|cased`, wildcards, `or` and `1 of`, with JSON-escaped characters.
    check_text(
        "    kw:\n        - 'Put*Selectors'\n    sel:\n        eventName|cased: PutEventSelectors\n    a:\n        requestParameters.x|contains|all:\n            - 'ab/cd'\n            - 'q\"zz'\n    condition: kw and sel or 1 of a",
        &[
            (r#"{"eventName":"PutEventSelectors"}"#, true),
            (r#"{"eventName":"puteventselectors"}"#, false),
            (r#"{"requestParameters":{"x":"ab\/cd q\"zz"}}"#, true),
            (r#"{"requestParameters":{"x":"ab/cd"}}"#, false),
        ],
    );
}

#[test]
fn raw_text_prefilter_is_skipped_for_negations_regexes_and_numbers() {
    // Nothing positive to require: every record is parsed and the rule decides.
    check_text(
        "    f:\n        eventName: Decrypt\n    condition: not f",
        &[
            (r#"{"eventName":"Encrypt"}"#, true),
            (r#"{"eventName":"decrypt"}"#, false),
        ],
    );
    check_text(
        "    sel:\n        eventName|re: '^St.p'\n    condition: sel",
        &[
            (r#"{"eventName":"StopLogging"}"#, true),
            (r#"{"eventName":"stop"}"#, false),
        ],
    );
    check_text(
        "    sel:\n        n: 1.5\n        m|gt: 3\n    condition: sel",
        &[
            (r#"{"n":15e-1,"m":4}"#, true),
            (r#"{"n":1.5,"m":2}"#, false),
        ],
    );
}

/// A CloudTrail / Cloud Audit Logs event as the normalizer builds it: `api.operation` is the
/// raw `eventName` / `protoPayload.methodName`, so the operation gate may decide from it.
fn gated_event(provider: Provider, format: &str, op: &str, text: &str) -> Event {
    let mut e = raw_text_event(text);
    e.cloud.provider = provider;
    e.metadata.log_format = format.into();
    e.api.operation = op.into();
    e
}

#[test]
fn operation_gate_agrees_with_the_parsed_match() {
    let aws = load(&raw_rule(
        "    sel:\n        eventName: StopLogging\n    condition: sel",
    ));
    let gcp = load(
        "title: g\nid: g1\nlogsource:\n    product: gcp\n    service: gcp.audit\ndetection:\n    selection:\n        protoPayload.methodName: CreateCryptoKey\n    condition: selection\n",
    );
    let cases: &[(&RuleSet, Provider, &str, &str, &str, bool)] = &[
        (
            &aws,
            Provider::Aws,
            "aws_cloudtrail",
            "StopLogging",
            r#"{"eventName":"StopLogging"}"#,
            true,
        ),
        (
            &aws,
            Provider::Aws,
            "aws_cloudtrail",
            "stoplogging",
            r#"{"eventName":"stoplogging"}"#,
            true,
        ),
        (
            &aws,
            Provider::Aws,
            "aws_cloudtrail",
            "Decrypt",
            r#"{"eventName":"Decrypt"}"#,
            false,
        ),
        // EventBridge events are not gated (their api.operation is the detail-type).
        (
            &aws,
            Provider::Aws,
            "aws_eventbridge",
            "AWS API Call",
            r#"{"eventName":"StopLogging"}"#,
            true,
        ),
        (
            &gcp,
            Provider::Gcp,
            "gcp_audit",
            "CreateCryptoKey",
            r#"{"protoPayload":{"methodName":"CreateCryptoKey"}}"#,
            true,
        ),
        (
            &gcp,
            Provider::Gcp,
            "gcp_audit",
            "Decrypt",
            r#"{"protoPayload":{"methodName":"Decrypt"}}"#,
            false,
        ),
    ];
    for (rules, provider, format, op, text, want) in cases {
        let mut got = Vec::new();
        let ev = gated_event(*provider, format, op, text);
        rules.matches(&ev, &Enrichment::default(), &mut got);
        let parsed: Value = serde_json::from_str(text).unwrap();
        let source = RawSource::of_event(&ev).unwrap();
        let mut direct = Vec::new();
        rules.matches_raw(source, &parsed, &mut direct);
        assert_eq!(got, direct, "{format} {op} {text}");
        assert_eq!(!got.is_empty(), *want, "{format} {op} {text}");
    }
}
