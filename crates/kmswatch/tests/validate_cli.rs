//! `kmswatch validate` and the other verbs that read a config, through the CLI: every class
//! of mistake is reported with its exit status and the path of the offending key; a value
//! that passes cannot crash `run`; `validate --connect` changes nothing on the system; a
//! missing config file given to `rules test`/`rules lint` is an error.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_kmswatch");

fn rules_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../rules")
}

fn kmswatch(args: &[&str], dir: &Path) -> Output {
    Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .env_remove("KMSWATCH_TEST_UNSET_VARIABLE")
        .output()
        .expect("kmswatch")
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}--- stderr\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// `kmswatch validate --no-tests CONFIG` (with `--connect`), run in `dir`.
fn validate(cfg: &Path, dir: &Path, connect: bool) -> Output {
    let mut args = vec!["validate", "--no-tests"];
    if connect {
        args.push("--connect");
    }
    args.push(cfg.to_str().expect("utf-8"));
    kmswatch(&args, dir)
}

/// A config with a sink and the shipped rules, plus `extra`.
fn config(dir: &Path, extra: &str) -> PathBuf {
    let p = dir.join("kmswatch.yml");
    std::fs::write(
        &p,
        format!(
            "rules: {{ paths: [\"{}\"], placeholders: {{ kms_admins: [a], org_accounts: [\"111122223333\"] }} }}\n\
             sinks: [{{ type: stdout }}]\n{extra}",
            rules_dir().display()
        ),
    )
    .expect("config");
    p
}

#[test]
fn each_class_of_mistake_is_named_by_its_path() {
    let cases: &[(&str, &str, &str)] = &[
        // (config, path printed after FAIL, words of the message)
        (
            "state: { channel_capacity: 100000000000 }\n",
            "state.channel_capacity",
            "out of range",
        ),
        (
            "state: { checkpoint_interval_ms: 0 }\n",
            "state.checkpoint_interval_ms",
            "out of range",
        ),
        (
            "state: { dedup_ttl_secs: \"a day\" }\n",
            "state.dedup_ttl_secs",
            "invalid type",
        ),
        (
            "server: { max_connections: -1 }\n",
            "server.max_connections",
            "invalid value",
        ),
        (
            "server: { header_read_timeout_ms: 3600000 }\n",
            "server.header_read_timeout_ms",
            "out of range",
        ),
        (
            "state: { channel_capacty: 8 }\n",
            "state.channel_capacty",
            "unknown field",
        ),
        ("server: { listen: \"*:9464\" }\n", "server.listen", "IP:PORT"),
        (
            "server: { auth: { bearer_token_env: A, bearer_token_file: b } }\n",
            "server.auth",
            "exactly one",
        ),
        (
            "normalize: { human_role_patterns: [\"Admin[*\"] }\n",
            "normalize.human_role_patterns",
            "not a valid glob",
        ),
        (
            "sources:\n  - { type: aws_s3_sqs, queue_url: q }\n",
            "sources[0].queue_url",
            "queue_url",
        ),
        (
            "sinks:\n  - { type: stdout }\n  - { type: file, path: f.jsonl }\n  - { type: webhook, url: \"ftp://hooks.example/x\" }\n",
            "sinks[2]",
            "url",
        ),
        (
            "sinks:\n  - { type: splunk_hec, endpoint: \"https://hec.example:8088\", token: \"${KMSWATCH_TEST_UNSET_VARIABLE}\" }\n",
            "sinks[0].token",
            "KMSWATCH_TEST_UNSET_VARIABLE",
        ),
        ("rules: { max_groups: 20000000 }\n", "rules.max_groups", "out of range"),
        (
            "rules: { suppression: { default_secs: 99999999999 } }\n",
            "rules.suppression.default_secs",
            "out of range",
        ),
        (
            "respond: { allow: { key_ids: [k] } }\n",
            "respond.allow.key_ids",
            "unknown field",
        ),
        (
            "respond: { playbooks: [{ name: p, rules: [\"kms_[x\"], actions: [{ kind: disable }] }] }\n",
            "respond",
            "kms_[x",
        ),
        (
            "scale_out: { brokers: [\"127.0.0.1:9092\"], partitions: 0 }\n",
            "scale_out.partitions",
            "out of range",
        ),
    ];
    for (extra, path, words) in cases {
        let dir = tempfile::tempdir().expect("tempdir");
        // A `rules:` or `sinks:` of the case replaces the default one.
        let cfg = if extra.starts_with("rules:") || extra.starts_with("sinks:") {
            let p = dir.path().join("kmswatch.yml");
            let base = if extra.starts_with("rules:") {
                "sinks: [{ type: stdout }]\n"
            } else {
                ""
            };
            std::fs::write(&p, format!("{base}{extra}")).expect("config");
            p
        } else {
            config(dir.path(), extra)
        };
        let out = validate(&cfg, dir.path(), false);
        let t = text(&out);
        assert_eq!(out.status.code(), Some(1), "{extra}{t}");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let line = stdout
            .lines()
            .find(|l| l.starts_with(&format!("FAIL  {path}:")))
            .unwrap_or_else(|| panic!("no `FAIL  {path}:` line for\n{extra}{t}"));
        assert!(line.contains(words), "{line}\n{t}");
    }
}

#[test]
fn every_problem_is_listed_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(
        dir.path(),
        "state: { channel_capacity: 0 }\nserver: { max_connections: 100000 }\nscale_out: { brokers: [] }\n",
    );
    let out = validate(&cfg, dir.path(), false);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    for path in [
        "state.channel_capacity",
        "server.max_connections",
        "scale_out.brokers",
    ] {
        assert!(t.contains(&format!("FAIL  {path}:")), "{path}\n{t}");
    }
    // The other verbs refuse the same config, naming every problem too.
    let out = kmswatch(
        &["scan", "-c", cfg.to_str().expect("utf-8"), "."],
        dir.path(),
    );
    let t = text(&out);
    assert_eq!(out.status.code(), Some(2), "{t}");
    assert!(
        t.contains("3 problems") && t.contains("server.max_connections"),
        "{t}"
    );
}

#[test]
fn a_huge_channel_capacity_never_reaches_the_pipeline() {
    // tokio's mpsc::channel asserts on its capacity: `run` used to panic (exit 101).
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("logs")).expect("logs");
    let cfg = config(
        dir.path(),
        "sources: [{ type: file, paths: [logs] }]\nstate: { dir: state, channel_capacity: 4611686018427387904 }\n",
    );
    let out = kmswatch(
        &[
            "run",
            "--exit-when-done",
            "--config",
            cfg.to_str().expect("utf-8"),
        ],
        dir.path(),
    );
    let t = text(&out);
    assert_eq!(out.status.code(), Some(2), "{t}");
    assert!(
        t.contains("state.channel_capacity") && !t.contains("panicked"),
        "{t}"
    );
    assert!(!dir.path().join("state").exists(), "run started anyway");
}

#[test]
fn a_listener_open_to_the_network_without_auth_is_warned_about() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(dir.path(), "server: { listen: \"0.0.0.0:9464\" }\n");
    let out = validate(&cfg, dir.path(), false);
    let t = text(&out);
    assert_eq!(
        out.status.code(),
        Some(0),
        "a warning is not a failure: {t}"
    );
    assert!(t.contains("WARN  server.listen: 0.0.0.0:9464"), "{t}");
    for ok in [
        "server: { listen: \"127.0.0.1:9464\" }\n",
        "server: {}\n",
        "server: { listen: \"0.0.0.0:9464\", auth: { bearer_token_env: METRICS_TOKEN } }\n",
    ] {
        let cfg = config(dir.path(), ok);
        let out = validate(&cfg, dir.path(), false);
        let t = text(&out);
        assert_eq!(out.status.code(), Some(0), "{ok}{t}");
        assert!(!t.contains("WARN  server"), "{ok}{t}");
    }
}

/// Every entry under `dir`, recursively, with its size (files) — a snapshot to compare.
fn tree(dir: &Path) -> Vec<(PathBuf, u64)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read_dir") {
            let e = e.expect("entry");
            let m = e.metadata().expect("metadata");
            if m.is_dir() {
                stack.push(e.path());
            }
            out.push((e.path(), if m.is_file() { m.len() } else { 0 }));
        }
    }
    out.sort();
    out
}

#[test]
fn validate_connect_changes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    std::fs::create_dir(root.join("logs")).expect("logs");
    std::fs::write(root.join("existing.jsonl"), "").expect("existing file");
    let cfg = root.join("kmswatch.yml");
    std::fs::write(
        &cfg,
        format!(
            "rules: {{ paths: [\"{}\"] }}\n\
             sources: [{{ type: file, paths: [logs] }}]\n\
             sinks:\n  - {{ type: file, path: out/findings/findings.jsonl }}\n  - {{ type: file, path: existing.jsonl }}\n\
             state: {{ dir: var/state, dead_letter_path: dl/dead/dead-letter.jsonl }}\n\
             respond: {{ journal_path: journal/respond.jsonl }}\n\
             server: {{ listen: \"127.0.0.1:0\", tls: {{ cert_path: \"{data}/server-test.crt\", key_path: \"{data}/server-test.key\" }} }}\n",
            rules_dir().display(),
            data = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data").display()
        ),
    )
    .expect("config");
    let before = tree(root);
    let out = validate(&cfg, root, true);
    let t = text(&out);
    assert_eq!(
        tree(root),
        before,
        "validate --connect changed the folder:\n{t}"
    );
    for p in ["var", "dl", "out", "journal"] {
        assert!(!root.join(p).exists(), "{p} was created\n{t}");
    }
    assert_eq!(out.status.code(), Some(0), "{t}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    for (check, what) in [
        ("state.dir", "var/state does not exist; would be created"),
        (
            "state.dead_letter_path",
            "dead-letter.jsonl would be created",
        ),
        ("sink file (file)", "findings.jsonl would be created"),
        (
            "sink file-2 (file)",
            "existing.jsonl exists and is writable",
        ),
        ("respond.journal_path", "respond.jsonl would be created"),
        (
            "server",
            "https://127.0.0.1:0 (loopback only; /metrics open)",
        ),
    ] {
        assert!(
            stdout
                .lines()
                .any(|l| l.starts_with(&format!("ok    {check}:")) && l.contains(what)),
            "no `ok    {check}: …{what}…`\n{t}"
        );
    }
    // Where nothing can be created, it says so and fails.
    let cfg2 = root.join("bad.yml");
    std::fs::write(
        &cfg2,
        format!(
            "rules: {{ paths: [\"{}\"] }}\nsinks: [{{ type: stdout }}]\nstate: {{ dir: existing.jsonl/state }}\n",
            rules_dir().display()
        ),
    )
    .expect("config");
    let out = validate(&cfg2, root, true);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(
        t.contains("FAIL  state.dir:") && t.contains("is not a directory"),
        "{t}"
    );
}

#[test]
fn rules_test_and_lint_refuse_a_missing_config() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rules = rules_dir();
    for verb in ["test", "lint"] {
        for flag in ["-c", "--config"] {
            let out = kmswatch(
                &[
                    "rules",
                    verb,
                    rules.to_str().expect("utf-8"),
                    flag,
                    "missing.yml",
                ],
                dir.path(),
            );
            let t = text(&out);
            assert_eq!(out.status.code(), Some(2), "rules {verb} {flag}: {t}");
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(
                stderr.contains("missing.yml") && stderr.contains("reading config"),
                "rules {verb} {flag}: {t}"
            );
        }
    }
}

#[test]
fn run_refuses_to_start_without_its_metrics_token() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("logs")).expect("logs");
    let cfg = config(
        dir.path(),
        "sources: [{ type: file, paths: [logs] }]\nstate: { dir: state }\n\
         server: { listen: \"0.0.0.0:0\", auth: { bearer_token_env: KMSWATCH_TEST_UNSET_VARIABLE } }\n",
    );
    let out = kmswatch(
        &[
            "run",
            "--exit-when-done",
            "--config",
            cfg.to_str().expect("utf-8"),
        ],
        dir.path(),
    );
    let t = text(&out);
    assert_eq!(out.status.code(), Some(2), "{t}");
    assert!(
        t.contains("server.auth.bearer_token_env: environment variable KMSWATCH_TEST_UNSET_VARIABLE is not set"),
        "{t}"
    );
    // validate --connect says the same, and plain validate (no environment) does not.
    let out = validate(&cfg, dir.path(), true);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(
        t.contains("FAIL  server: server.auth.bearer_token_env"),
        "{t}"
    );
    let out = validate(&cfg, dir.path(), false);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}
