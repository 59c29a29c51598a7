//! Tests over the third-party data beside the repository (`../shared/data`): every SigmaHQ cloud
//! rule loads, the Sigma specification's test rules load, and SigmaHQ's KMS / Key Vault rules
//! fire on the matching real samples. Each test skips with a message when the data is absent.

#![allow(clippy::unwrap_used)]

use kmswatch_rules::{LoadOptions, RawSource, RuleId, RuleSet};
use serde_json::Value;
use std::path::PathBuf;

fn shared(rel: &str) -> Option<PathBuf> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/data")
        .join(rel);
    if p.exists() {
        Some(p)
    } else {
        eprintln!(
            "SKIP: {} is absent (shared data not beside the repository)",
            p.display()
        );
        None
    }
}

fn jsonl(path: &PathBuf) -> Vec<Value> {
    std::fs::read_to_string(path)
        .expect("read jsonl")
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect()
}

#[test]
fn every_sigmahq_rule_loads() {
    let Some(dir) = shared("sigma/sigmahq-rules") else {
        return;
    };
    let (rules, report) = match RuleSet::load(&[&dir], &LoadOptions::default()) {
        Ok(r) => r,
        Err(e) => panic!("{e}"),
    };
    assert!(rules.len() >= 200, "only {} rules", rules.len());
    let applicable = rules.rules().filter(|(_, r)| r.target.is_some()).count();
    // aws/cloudtrail, azure/activitylogs|auditlogs|signinlogs, gcp/gcp.audit are applicable.
    assert!(applicable >= 150, "only {applicable} applicable");
    for s in &report.skipped {
        eprintln!("skipped: {s}");
    }
    assert!(rules.find("1279262f-1464-422f-ac0d-5b545320c526").is_some());
}

#[test]
fn spec_test_rules_load() {
    let Some(dir) = shared("sigma/sigma-specification/tests/schema") else {
        return;
    };
    let rules_dir = dir.join("rules");
    let (rules, report) =
        RuleSet::load(&[&rules_dir], &LoadOptions::default()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(rules.len(), 2);
    // windows/application and network/dns are not kmswatch logsources.
    assert_eq!(report.skipped.len(), 2, "{:?}", report.skipped);
    assert!(rules.rules().all(|(_, r)| r.target.is_none()));

    // The filters apply to rules that are not loaded: reported, not errors.
    let (_, report) = RuleSet::load(&[dir.join("filter")], &LoadOptions::default())
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(report.skipped.len(), 2, "{:?}", report.skipped);

    // The specification's correlation examples parse; they refer to rules that are not in
    // the directory, so each is an "unknown reference" error at the reference's line, except
    // value_avg / value_percentile, which kmswatch does not run (unsupported).
    let opts = LoadOptions {
        skip_invalid: true,
        ..LoadOptions::default()
    };
    let (rules, report) =
        RuleSet::load(&[dir.join("correlation")], &opts).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(rules.correlations().count(), 0);
    let unknown = report
        .errors
        .iter()
        .filter(|e| e.reason.contains("no loaded rule") && e.line > 1)
        .count();
    let unsupported = report
        .errors
        .iter()
        .filter(|e| e.kind == kmswatch_rules::LoadErrorKind::Unsupported)
        .count();
    assert!(unknown >= 6, "{:?}", report.errors);
    assert_eq!(unsupported, 2, "{:?}", report.errors);
}

fn sigmahq() -> Option<RuleSet> {
    let dir = shared("sigma/sigmahq-rules")?;
    Some(
        RuleSet::load(&[dir], &LoadOptions::default())
            .unwrap_or_else(|e| panic!("{e}"))
            .0,
    )
}

fn titles(rules: &RuleSet, ids: &[RuleId]) -> Vec<String> {
    ids.iter()
        .filter_map(|i| rules.rule(*i))
        .map(|r| r.title.clone())
        .collect()
}

#[test]
fn sigmahq_kms_import_rule_fires_on_aws_kms_examples() {
    let Some(rules) = sigmahq() else { return };
    let Some(path) =
        shared("aws/aws-kms-developer-guide-examples/kms_cloudtrail_examples.extracted.jsonl")
    else {
        return;
    };
    let rule = rules
        .find("1279262f-1464-422f-ac0d-5b545320c526")
        .expect("aws_kms_import_key_material");
    let mut fired = Vec::new();
    let mut out = Vec::new();
    for rec in jsonl(&path) {
        let rec = rec.get("event").cloned().unwrap_or(rec);
        out.clear();
        rules.matches_raw(RawSource::AwsCloudTrail, &rec, &mut out);
        let name = rec["eventName"].as_str().unwrap_or_default().to_string();
        let hit = out.contains(&rule);
        let expected = name == "ImportKeyMaterial" || name == "DeleteImportedKeyMaterial";
        assert_eq!(hit, expected, "{name}: fired {:?}", titles(&rules, &out));
        if hit {
            fired.push(name);
        }
    }
    assert!(
        fired.contains(&"ImportKeyMaterial".to_string()),
        "no ImportKeyMaterial sample fired: {fired:?}"
    );
}

#[test]
fn sigmahq_keyvault_rules_fire_on_panther_azure_samples() {
    let Some(rules) = sigmahq() else { return };
    let Some(path) = shared("azure/panther-analysis-test-events/panther_azure_kms_tests.jsonl")
    else {
        return;
    };
    let vault = rules
        .find("459a2970-bb84-4e6a-a32e-ff0fbd99448d")
        .expect("azure_keyvault_modified_or_deleted");
    let keys = rules
        .find("80eeab92-0979-4152-942d-96749e11df40")
        .expect("azure_keyvault_key_modified_or_deleted");
    let secrets = rules
        .find("b831353c-1971-477b-abb6-2828edc3bca1")
        .expect("azure_keyvault_secrets_modified_or_deleted");
    let mut seen = [0usize; 3];
    let mut out = Vec::new();
    for line in jsonl(&path) {
        let event = &line["event"];
        let op = event["operationName"]
            .as_str()
            .unwrap_or_default()
            .to_ascii_uppercase();
        out.clear();
        rules.matches_raw(RawSource::AzureActivityLogs, event, &mut out);
        // What SigmaHQ's three Key Vault rules list (compared case-insensitively).
        let want_vault = matches!(
            op.as_str(),
            "MICROSOFT.KEYVAULT/VAULTS/WRITE" | "MICROSOFT.KEYVAULT/VAULTS/DELETE"
        );
        let want_keys = matches!(
            op.as_str(),
            "MICROSOFT.KEYVAULT/VAULTS/KEYS/PURGE/ACTION"
                | "MICROSOFT.KEYVAULT/VAULTS/KEYS/DELETE"
                | "MICROSOFT.KEYVAULT/VAULTS/KEYS/RECOVER/ACTION"
                | "MICROSOFT.KEYVAULT/VAULTS/KEYS/RESTORE/ACTION"
        );
        let want_secrets = matches!(
            op.as_str(),
            "MICROSOFT.KEYVAULT/VAULTS/SECRETS/WRITE"
                | "MICROSOFT.KEYVAULT/VAULTS/SECRETS/RECOVER/ACTION"
        );
        assert_eq!(
            out.contains(&vault),
            want_vault,
            "{op}: {:?}",
            titles(&rules, &out)
        );
        assert_eq!(
            out.contains(&keys),
            want_keys,
            "{op}: {:?}",
            titles(&rules, &out)
        );
        assert_eq!(
            out.contains(&secrets),
            want_secrets,
            "{op}: {:?}",
            titles(&rules, &out)
        );
        seen[0] += usize::from(want_vault);
        seen[1] += usize::from(want_keys);
        seen[2] += usize::from(want_secrets);
    }
    // The samples hold vault deletes, key purges/deletes and secret writes/recoveries.
    assert!(seen.iter().all(|n| *n > 0), "{seen:?}");
}

#[test]
fn sigmahq_nested_field_rules_agree_with_direct_checks() {
    // Two SigmaHQ rules that read nested CloudTrail fields, checked on every KMS sample against
    // the same logic written by hand.
    let Some(rules) = sigmahq() else { return };
    let Some(path) =
        shared("aws/aws-kms-developer-guide-examples/kms_cloudtrail_examples.extracted.jsonl")
    else {
        return;
    };
    let assume = rules
        .find("905d389b-b853-46d0-9d3d-dea0d3a3cd49")
        .expect("aws_sts_assumerole_misuse");
    let imds = rules
        .find("352a918a-34d8-4882-8470-44830c507aa3")
        .expect("aws_cloudtrail_imds_malicious_usage");
    let re = regex::Regex::new(".+:assumed-role/aws:.+").unwrap();
    let mut out = Vec::new();
    let (mut n_assume, mut n_quiet) = (0, 0);
    for rec in jsonl(&path) {
        let rec = rec.get("event").cloned().unwrap_or(rec);
        out.clear();
        rules.matches_raw(RawSource::AwsCloudTrail, &rec, &mut out);
        let ui = &rec["userIdentity"];
        let want_assume = ui["type"]
            .as_str()
            .is_some_and(|t| t.eq_ignore_ascii_case("AssumedRole"))
            && ui["sessionContext"]["sessionIssuer"]["type"]
                .as_str()
                .is_some_and(|t| t.eq_ignore_ascii_case("Role"));
        let filtered = rec["eventSource"]
            .as_str()
            .is_some_and(|s| s.eq_ignore_ascii_case("ssm.amazonaws.com"))
            || rec["eventName"]
                .as_str()
                .is_some_and(|s| s.eq_ignore_ascii_case("RegisterManagedInstance"))
            || rec["sourceIPAddress"]
                .as_str()
                .is_some_and(|s| s.eq_ignore_ascii_case("AWS Internal"));
        let want_imds = ui["arn"].as_str().is_some_and(|a| re.is_match(a)) && !filtered;
        assert_eq!(out.contains(&assume), want_assume, "{rec}");
        assert_eq!(out.contains(&imds), want_imds, "{rec}");
        n_assume += usize::from(want_assume);
        n_quiet += usize::from(out.is_empty());
    }
    assert!(n_assume > 0 && n_quiet > 0, "{n_assume} {n_quiet}");
}

/// Per-event cost, for the report: `cargo test -p kmswatch-rules --release --test shared_data
/// -- --ignored --nocapture per_event_cost`.
#[test]
#[ignore = "timing, run by hand in release mode"]
fn per_event_cost() {
    use kmswatch_model::{Event, KmsOperation, Provider};
    use kmswatch_rules::Enrichment;
    let Some(dir) = shared("sigma/sigmahq-rules") else {
        return;
    };
    let Some(path) =
        shared("aws/aws-kms-developer-guide-examples/kms_cloudtrail_examples.extracted.jsonl")
    else {
        return;
    };
    let (rules, _) = RuleSet::load(&[dir], &LoadOptions::default()).unwrap();
    let records: Vec<Value> = jsonl(&path)
        .into_iter()
        .map(|r| r.get("event").cloned().unwrap_or(r))
        .collect();
    let n = 200_000usize;
    let mut out = Vec::with_capacity(16);
    let start = std::time::Instant::now();
    let mut hits = 0usize;
    for i in 0..n {
        out.clear();
        rules.matches_raw(
            RawSource::AwsCloudTrail,
            &records[i % records.len()],
            &mut out,
        );
        hits += out.len();
    }
    let raw_ns = start.elapsed().as_nanos() as f64 / n as f64;
    let events: Vec<Event> = records
        .iter()
        .map(|r| {
            let mut e = Event::new(
                0,
                KmsOperation::Decrypt,
                serde_json::value::to_raw_value(r).unwrap(),
            );
            e.cloud.provider = Provider::Aws;
            e
        })
        .collect();
    let start = std::time::Instant::now();
    for i in 0..n {
        out.clear();
        rules.matches(&events[i % events.len()], &Enrichment::default(), &mut out);
        hits += out.len();
    }
    let full_ns = start.elapsed().as_nanos() as f64 / n as f64;
    eprintln!(
        "{} SigmaHQ rules: matches_raw on a parsed CloudTrail record {raw_ns:.0} ns/event; matches() incl. raw JSON parse {full_ns:.0} ns/event ({hits} hits)",
        rules.len()
    );
}
