//! The shipped rule pack under `rules/`: `kmswatch rules lint` and `kmswatch rules test`, one
//! test case per rule and per check (`lint::<slug>`, `test::<slug>`).
//!
//! The binary runs once per check over the whole pack (`--json`); each case then asserts its
//! rule's entry, printing the problems and failing test files when it fails. A rule file without
//! an entry in the report fails too.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use libtest_mimic::{Arguments, Failed, Trial};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};

/// Rules whose true-positive events cannot raise a finding yet, with the reason. Their cases
/// are listed as ignored (run them with `--include-ignored`); remove an entry when its reason
/// is gone.
const PENDING: &[(&str, &str)] = &[];

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("workspace root")
        .to_path_buf()
}

fn run_json(verb: &str, pack: &Path) -> Result<Value, String> {
    let out = Command::new(env!("CARGO_BIN_EXE_kmswatch"))
        .args(["rules", verb, "--json"])
        .arg(pack)
        .output()
        .map_err(|e| format!("running kmswatch rules {verb}: {e}"))?;
    serde_json::from_slice(&out.stdout).map_err(|e| {
        format!(
            "kmswatch rules {verb} printed no JSON report ({e}); stderr:\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn rule_slugs(pack: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![pack.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).expect("read rules dir").flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "yml")
                && !p
                    .file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with("tests.")
            {
                out.push(p.file_stem().unwrap().to_string_lossy().into_owned());
            }
        }
    }
    out.sort();
    out
}

fn entry<'a>(report: &'a Value, slug: &str) -> Option<&'a Value> {
    report["rules"]
        .as_array()?
        .iter()
        .find(|r| r["slug"].as_str() == Some(slug))
}

fn check_lint(report: &Result<Value, String>, slug: &str) -> Result<(), Failed> {
    let report = report.as_ref().map_err(|e| Failed::from(e.as_str()))?;
    if let Some(p) = report["pack"].as_array().filter(|p| !p.is_empty()) {
        return Err(format!("pack problems: {p:?}").into());
    }
    let e = entry(report, slug).ok_or("the rule is missing from the lint report")?;
    let problems = e["problems"].as_array().cloned().unwrap_or_default();
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{}:\n{}",
            e["file"],
            problems
                .iter()
                .map(|p| format!("  {}", p.as_str().unwrap_or_default()))
                .collect::<Vec<_>>()
                .join("\n")
        )
        .into())
    }
}

fn check_test(report: &Result<Value, String>, slug: &str) -> Result<(), Failed> {
    let report = report.as_ref().map_err(|e| Failed::from(e.as_str()))?;
    let e = entry(report, slug).ok_or("the rule is missing from the test report")?;
    if e["passed"] == Value::Bool(true) {
        let tests = e["tests"].as_array().map_or(0, Vec::len);
        assert!(tests >= 2, "a passing rule has at least one tp and one tn");
        return Ok(());
    }
    let mut msg = format!("{}:\n", e["file"]);
    for p in e["problems"].as_array().into_iter().flatten() {
        msg.push_str(&format!("  {}\n", p.as_str().unwrap_or_default()));
    }
    for t in e["tests"].as_array().into_iter().flatten() {
        if t["passed"] != Value::Bool(true) {
            msg.push_str(&format!(
                "  {}: {}\n",
                t["file"].as_str().unwrap_or_default(),
                t["error"].as_str().unwrap_or("failed")
            ));
        }
    }
    Err(msg.into())
}

/// `docs/rules.md` lists every field a `product: kms` rule can use, with its row in the fields
/// table, and every rule of the pack in the catalogue.
fn check_docs(root: &Path, slugs: &[String]) -> Result<(), Failed> {
    let doc = std::fs::read_to_string(root.join("docs/rules.md"))
        .map_err(|e| format!("reading docs/rules.md: {e}"))?;
    let mut missing = Vec::new();
    let enrichment = [
        "kmswatch.off_hours",
        "kmswatch.first_seen",
        "kmswatch.principal_known",
    ];
    let fields = kmswatch_rules::EventField::ALL
        .iter()
        .map(|f| f.name())
        .chain(enrichment);
    for f in fields {
        if !doc.contains(&format!("| `{f}` |")) {
            missing.push(format!("field {f} has no row in the fields table"));
        }
    }
    for s in slugs {
        if !doc.contains(&format!("/{s}.yml`]")) {
            missing.push(format!("rule {s} is not in the catalogue"));
        }
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(missing.join("\n").into())
    }
}

fn main() {
    let args = Arguments::from_args();
    let pack = workspace_root().join("rules");
    let slugs = rule_slugs(&pack);
    assert!(!slugs.is_empty(), "no rules under {}", pack.display());

    let lint: Arc<OnceLock<Result<Value, String>>> = Arc::new(OnceLock::new());
    let test: Arc<OnceLock<Result<Value, String>>> = Arc::new(OnceLock::new());
    let mut trials = Vec::new();
    for slug in &slugs {
        let (l, p, s) = (lint.clone(), pack.clone(), slug.clone());
        trials.push(Trial::test(format!("lint::{slug}"), move || {
            check_lint(l.get_or_init(|| run_json("lint", &p)), &s)
        }));
        let (t, p, s) = (test.clone(), pack.clone(), slug.clone());
        let pending = PENDING.iter().find(|(n, _)| n == slug);
        let trial = Trial::test(format!("test::{slug}"), move || {
            check_test(t.get_or_init(|| run_json("test", &p)), &s)
        });
        trials.push(match pending {
            Some(_) => trial.with_ignored_flag(true).with_kind("pending"),
            None => trial,
        });
    }
    let (root, all) = (workspace_root(), slugs.clone());
    trials.push(Trial::test("docs::fields_and_catalogue", move || {
        check_docs(&root, &all)
    }));
    libtest_mimic::run(&args, trials).exit();
}
