//! Log text never reaches a terminal with its escape sequences: a principal, a key or a file
//! name holding ESC/CSI/OSC sequences, BEL, backspace, CR or C1 controls is printed escaped
//! (`\x1b`) by `scan` (table and stderr), `normalize`, `rules test`, error messages and the
//! text log format of `run`; JSON output keeps the exact text (JSON-escaped).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_kmswatch");

/// What an attacker writes into a name: clear screen, set the window title, red, a one-byte
/// C1 CSI, backspaces and a carriage return.
const HOSTILE: &str = "\u{1b}[2J\u{1b}]0;pwned\u{7}\u{9b}31m\u{8}\u{8}\r";
/// The same in a JSON string.
const HOSTILE_JSON: &str = r"\u001b[2J\u001b]0;pwned\u0007\u009b31m\b\b\r";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn raw_control(s: &str) -> Option<char> {
    s.chars()
        .find(|c| c.is_control() && *c != '\n' || ('\u{202a}'..='\u{202e}').contains(c))
}

/// Neither stream holds a raw control character (but newlines); both as text.
fn assert_clean(what: &str, out: &Output) -> (String, String) {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    for (name, s) in [("stdout", &stdout), ("stderr", &stderr)] {
        if let Some(c) = raw_control(s) {
            panic!("{what}: raw U+{:04X} on {name}:\n{s:?}", u32::from(c));
        }
    }
    (stdout, stderr)
}

/// A CloudTrail ScheduleKeyDeletion by a user whose name carries the sequences (the shipped
/// rule raises a finding on it), plus a record that cannot be read.
fn hostile_log(dir: &Path) -> PathBuf {
    let sample =
        root().join("rules/kms/kms_schedule_key_deletion/tp_aws_schedule_key_deletion.json");
    let text = std::fs::read_to_string(sample).expect("sample");
    let text = text.replace("alice", &format!("alice{HOSTILE_JSON}"));
    let name = format!("trail{HOSTILE}.json");
    let path = dir.join(name);
    std::fs::write(
        &path,
        format!("{text}\n{{\"Records\": [{{\"eventVersion\": 1.09,,]}}\n"),
    )
    .expect("log");
    path
}

#[test]
fn scan_table_and_messages_escape_log_text() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = hostile_log(dir.path());
    // The shipped rules, with the pack's test configuration (placeholders).
    let scan = |output: &str| {
        Command::new(BIN)
            .args(["scan", output, "--rules"])
            .arg(root().join("rules"))
            .arg("--config")
            .arg(root().join("rules/tests.config.yml"))
            .arg(&log)
            .output()
            .expect("scan")
    };
    let out = scan("--table");
    let (stdout, stderr) = assert_clean("scan --table", &out);
    assert!(
        stdout.contains("alice\\x1b[2J\\x1b]0;pwned\\x07"),
        "the principal is in the table, escaped:\n{stdout}"
    );
    assert!(
        stderr.contains("rejected: ") && stderr.contains("trail\\x1b[2J"),
        "the rejected record's file is named, escaped:\n{stderr}"
    );
    // JSON keeps the exact text.
    let out = scan("--json");
    let first = String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .map(str::to_string)
        .expect("a finding");
    let f: serde_json::Value = serde_json::from_str(&first).expect("JSON finding");
    let name = f["actor"]["user"]["name"].as_str().expect("principal name");
    assert_eq!(name, format!("alice{HOSTILE}"));
}

#[test]
fn normalize_and_errors_escape_file_names() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = hostile_log(dir.path());
    let out = Command::new(BIN)
        .args(["normalize", "-o"])
        .arg(dir.path().join("events.jsonl"))
        .arg(&log)
        .output()
        .expect("normalize");
    let (_, stderr) = assert_clean("normalize", &out);
    assert!(stderr.contains("trail\\x1b[2J"), "{stderr}");
    // An error that names a file.
    let missing = dir.path().join(format!("gone{HOSTILE}.json"));
    let out = Command::new(BIN)
        .arg("normalize")
        .arg(&missing)
        .output()
        .expect("normalize");
    let (_, stderr) = assert_clean("normalize (error)", &out);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr.contains("gone\\x1b[2J"), "{stderr}");
}

#[test]
fn rules_test_output_escapes_test_file_names_and_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pack = dir.path().join("pack");
    let tests = pack.join("kms_schedule_key_deletion");
    std::fs::create_dir_all(&tests).expect("pack");
    let src = root().join("rules/kms");
    std::fs::copy(
        src.join("kms_schedule_key_deletion.yml"),
        pack.join("kms_schedule_key_deletion.yml"),
    )
    .expect("rule");
    std::fs::copy(
        src.join("kms_schedule_key_deletion/tn_aws_cancel_key_deletion.json"),
        tests.join("tn_aws_cancel_key_deletion.json"),
    )
    .expect("tn");
    // A true-positive sample that does not parse, named with the sequences.
    std::fs::write(
        tests.join(format!("tp_{HOSTILE}.json")),
        "{\"Records\": [{\"eventVersion\": 1.09,,]}\n",
    )
    .expect("tp");
    let out = Command::new(BIN)
        .args(["rules", "test"])
        .arg(&pack)
        .output()
        .expect("rules test");
    let (stdout, _) = assert_clean("rules test", &out);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("tp_\\x1b[2J"), "{stdout}");
}

#[test]
fn the_text_log_format_escapes_logged_log_text() {
    let dir = tempfile::tempdir().expect("tempdir");
    let logs = dir.path().join("logs");
    std::fs::create_dir(&logs).expect("logs");
    // Not a log at all: the runtime logs it as a bad object, naming its origin (the path).
    std::fs::write(logs.join(format!("x{HOSTILE}.json")), "not json\n").expect("file");
    let cfg = dir.path().join("kmswatch.yml");
    std::fs::write(
        &cfg,
        format!(
            "rules: {{ paths: [\"{}\"] }}\nsources: [{{ id: logs, type: file, paths: [logs] }}]\nsinks: [{{ type: file, path: f.jsonl }}]\nstate: {{ dir: state }}\n",
            root().join("rules").display()
        ),
    )
    .expect("config");
    let out = Command::new(BIN)
        .args([
            "run",
            "--log-format",
            "text",
            "--exit-when-done",
            "--config",
        ])
        .arg(&cfg)
        .env("KMSWATCH_LOG", "info")
        .output()
        .expect("run");
    let (_, stderr) = assert_clean("run --log-format text", &out);
    assert!(
        stderr.contains("x\\x1b[2J\\x1b]0;pwned\\x07\\u{9b}31m\\x08\\x08\\r"),
        "the origin is logged, escaped:\n{stderr}"
    );
}
