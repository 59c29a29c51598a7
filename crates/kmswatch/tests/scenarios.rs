//! The generated-scenario acceptance test: `kmswatch gen` writes a realistic three-cloud corpus
//! with injected attacks and a ground-truth label file; `kmswatch scan` (the real binary, the
//! shipped rule pack, the corpus's own config) must detect every injected scenario with its
//! intended rule, and raise no finding from a `stable` rule on the benign part.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use kmswatch_normalize::time::parse_millis;
use serde_json::Value;
use std::path::Path;
use std::process::Command;

/// Findings may start a little before or end a little after the labelled span (a correlation
/// window anchored at an earlier building-block event, suppression periods).
const SLACK_MS: i64 = 15 * 60 * 1000;

fn principal(f: &Value) -> Option<&str> {
    f.pointer("/actor/user/uid").and_then(Value::as_str)
}

fn scan(out: &Path) -> Vec<Value> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let o = Command::new(env!("CARGO_BIN_EXE_kmswatch"))
        .current_dir(&root)
        .arg("scan")
        .arg("-q")
        .arg("--json")
        .arg("-c")
        .arg(out.join("kmswatch.yml"))
        .args(["aws", "azure", "gcp"].map(|d| out.join(d)))
        .output()
        .expect("run kmswatch scan");
    assert!(
        o.status.success(),
        "scan failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn every_injected_scenario_is_detected_and_the_benign_part_is_quiet() {
    let dir = tempfile::tempdir().unwrap();
    let opts = kmswatch_gen::GenOptions {
        days: 1,
        seed: 20261122,
        ..kmswatch_gen::GenOptions::default()
    };
    kmswatch_gen::generate(&opts, dir.path()).unwrap();
    let labels: Vec<Value> = std::fs::read_to_string(dir.path().join("labels.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(labels.len() >= 40, "{} labels", labels.len());
    let findings = scan(dir.path());

    let span = |l: &Value| {
        (
            parse_millis(l["start"].as_str().unwrap()).unwrap(),
            parse_millis(l["end"].as_str().unwrap()).unwrap(),
        )
    };
    let overlaps = |f: &Value, (s, e): (i64, i64)| {
        f["start_time"].as_i64().unwrap() <= e + SLACK_MS
            && f["end_time"].as_i64().unwrap() >= s - SLACK_MS
    };
    let involves = |f: &Value, who: &str| {
        principal(f) == Some(who)
            || f["evidences"]
                .as_array()
                .is_some_and(|ev| ev.iter().any(|e| principal(e) == Some(who)))
    };

    let mut missed = Vec::new();
    for l in &labels {
        let who = l["principal"].as_str().unwrap();
        let hit = findings.iter().any(|f| {
            f.pointer("/finding_info/analytic/uid") == Some(&l["rule_id"])
                && overlaps(f, span(l))
                && involves(f, who)
        });
        if !hit {
            missed.push(format!("{} → {} ({who})", l["scenario"], l["rule"]));
        }
    }
    assert!(
        missed.is_empty(),
        "scenarios not detected by their rule:\n{}",
        missed.join("\n")
    );

    let mut unexplained = Vec::new();
    for f in &findings {
        if f.pointer("/kmswatch/rule_status").and_then(Value::as_str) != Some("stable") {
            continue;
        }
        let explained = labels
            .iter()
            .any(|l| overlaps(f, span(l)) && involves(f, l["principal"].as_str().unwrap()));
        if !explained {
            unexplained.push(format!(
                "{} by {:?} at {}",
                f.pointer("/finding_info/analytic/name").unwrap(),
                principal(f),
                f["start_time"]
            ));
        }
    }
    assert!(
        unexplained.is_empty(),
        "stable rules fired on benign traffic:\n{}",
        unexplained.join("\n")
    );
}
