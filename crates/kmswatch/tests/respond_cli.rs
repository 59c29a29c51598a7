//! `kmswatch respond` exit codes and JSON output, against moto_server (started here on a free
//! 127.0.0.1 port, or `KMSWATCH_TEST_AWS_ENDPOINT`); skipped with a message when neither exists.

#![allow(clippy::unwrap_used, clippy::expect_used)]

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
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Some(m);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    None
}

/// Create a key through moto's JSON API (TrentService.CreateKey) with python-free plain HTTP.
fn create_key(endpoint: &str, tags: &str) -> String {
    let out = Command::new("curl")
        .args([
            "-s",
            "-X",
            "POST",
            endpoint,
            "-H",
            "X-Amz-Target: TrentService.CreateKey",
            "-H",
            "Content-Type: application/x-amz-json-1.1",
            "-H",
            "Authorization: AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/kms/aws4_request, SignedHeaders=host, Signature=x",
            "-d",
            &format!("{{\"Tags\":[{tags}]}}"),
        ])
        .output()
        .expect("curl");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("CreateKey answer");
    v["KeyMetadata"]["Arn"]
        .as_str()
        .expect("an ARN")
        .to_string()
}

/// `kmswatch respond ARGS` in `dir`, against moto.
fn respond(endpoint: &str, dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_kmswatch"))
        .arg("respond")
        .args(args)
        .current_dir(dir)
        .env("AWS_ENDPOINT_URL", endpoint)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", "us-east-1")
        .output()
        .unwrap()
}

fn kmswatch(endpoint: &str, dir: &std::path::Path, args: &[&str]) -> (i32, Vec<serde_json::Value>) {
    let out = respond(endpoint, dir, args);
    let recs = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON lines when piped"))
        .collect();
    (out.status.code().unwrap_or(-1), recs)
}

#[test]
fn respond_cli_exit_codes() {
    if Command::new("curl").arg("--version").output().is_err() {
        eprintln!("SKIPPED respond_cli_exit_codes: curl not found");
        return;
    }
    let Some(m) = moto() else {
        eprintln!("SKIPPED respond_cli_exit_codes: no KMSWATCH_TEST_AWS_ENDPOINT and no moto_server on PATH");
        return;
    };
    let ep = m.1.clone();
    let dir = tempfile::tempdir().unwrap();
    let key = create_key(&ep, "");
    let k = ["--provider", "aws", "--key", key.as_str()];
    let args = |verb: &'static str, extra: &[&'static str]| {
        let mut a = vec![verb];
        a.extend_from_slice(&k);
        a.extend_from_slice(extra);
        a
    };
    let (code, recs) = kmswatch(&ep, dir.path(), &args("disable", &["--dry-run"]));
    assert_eq!(code, 13, "{recs:?}");
    assert_eq!(recs[0]["outcome"], "dry_run");
    let (code, recs) = kmswatch(&ep, dir.path(), &args("disable", &["--reason", "INC-7"]));
    assert_eq!(code, 0, "{recs:?}");
    let exec = recs.last().unwrap();
    assert_eq!(exec["outcome"], "applied");
    assert_eq!(exec["reason"], "INC-7");
    assert_eq!(exec["state_after"]["status"], "Disabled");
    let (code, _) = kmswatch(&ep, dir.path(), &args("disable", &[]));
    assert_eq!(code, 10, "already applied");
    let undo_id = exec["record_id"].as_str().unwrap().to_string();
    let (code, recs) = kmswatch(&ep, dir.path(), &["undo", &undo_id]);
    assert_eq!(code, 0, "{recs:?}");
    assert_eq!(recs.last().unwrap()["state_after"]["status"], "Enabled");
    // Break-glass: refused by policy.
    let bg = create_key(
        &ep,
        r#"{"TagKey":"kmswatch:break-glass","TagValue":"true"}"#,
    );
    let (code, recs) = kmswatch(
        &ep,
        dir.path(),
        &["disable", "--provider", "aws", "--key", &bg],
    );
    assert_eq!(code, 11, "{recs:?}");
    // A key that does not exist: failed.
    let missing = "arn:aws:kms:us-east-1:123456789012:key/00000000-0000-0000-0000-000000000000";
    let (code, _) = kmswatch(
        &ep,
        dir.path(),
        &["disable", "--provider", "aws", "--key", missing],
    );
    assert_eq!(code, 12);
    // The journal has it all.
    let (code, recs) = kmswatch(&ep, dir.path(), &["list", "--all"]);
    assert_eq!(code, 0);
    assert!(recs.len() >= 8, "{}", recs.len());
}

/// The `undo_command` of an audit record, run as printed from another directory, finds the
/// journal the action was recorded in: with `--config` (and `--journal`) when the action was
/// taken with a config file, with `--journal` alone otherwise (what `kmswatch run` prints).
/// An id that is not in the given journal fails clearly, naming the journal.
#[test]
fn undo_as_printed_finds_the_journal() {
    if Command::new("curl").arg("--version").output().is_err() {
        eprintln!("SKIPPED undo_as_printed_finds_the_journal: curl not found");
        return;
    }
    let Some(m) = moto() else {
        eprintln!("SKIPPED undo_as_printed_finds_the_journal: no KMSWATCH_TEST_AWS_ENDPOINT and no moto_server on PATH");
        return;
    };
    let ep = m.1.clone();
    let home = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let cfg = home.path().join("kmswatch.yml");
    std::fs::write(
        &cfg,
        "state:\n  dir: state\nrespond:\n  aws: { region: us-east-1 }\n",
    )
    .unwrap();
    let cfg = cfg.to_str().unwrap().to_string();
    let printed = |recs: &[serde_json::Value]| -> Vec<String> {
        let cmd = recs.last().unwrap()["undo_command"]
            .as_str()
            .expect("an undo_command")
            .to_string();
        assert!(cmd.starts_with("kmswatch respond undo "), "{cmd}");
        cmd.split_whitespace().skip(2).map(str::to_string).collect()
    };
    let enabled =
        |recs: &[serde_json::Value]| recs.last().unwrap()["state_after"]["enabled"].clone();

    // 1. Taken with a config file (its journal is under its state dir).
    let key = create_key(&ep, "");
    let (code, recs) = kmswatch(
        &ep,
        home.path(),
        &[
            "disable",
            "--provider",
            "aws",
            "--key",
            &key,
            "--config",
            &cfg,
        ],
    );
    assert_eq!(code, 0, "{recs:?}");
    let undo = printed(&recs);
    assert!(
        undo.contains(&"--config".to_string()) && undo.contains(&"--journal".to_string()),
        "{undo:?}"
    );
    let args: Vec<&str> = undo.iter().map(String::as_str).collect();
    let (code, recs) = kmswatch(&ep, elsewhere.path(), &args);
    assert_eq!(code, 0, "{recs:?}");
    assert_eq!(enabled(&recs), true);

    // 2. Taken with --journal only, undone from elsewhere as printed.
    let key = create_key(&ep, "");
    let journal = home.path().join("ops").join("journal.jsonl");
    let journal = journal.to_str().unwrap();
    let (code, recs) = kmswatch(
        &ep,
        home.path(),
        &[
            "disable",
            "--provider",
            "aws",
            "--key",
            &key,
            "--journal",
            journal,
        ],
    );
    assert_eq!(code, 0, "{recs:?}");
    let undo = printed(&recs);
    assert_eq!(
        undo[1..],
        [
            recs.last().unwrap()["record_id"].as_str().unwrap(),
            "--journal",
            journal
        ]
    );
    let args: Vec<&str> = undo.iter().map(String::as_str).collect();
    let (code, recs) = kmswatch(&ep, elsewhere.path(), &args);
    assert_eq!(code, 0, "{recs:?}");
    assert_eq!(enabled(&recs), true);

    // 3. The id is not in the journal given: a clear error naming it.
    let id = undo[1].clone();
    let other = elsewhere.path().join("other.jsonl");
    let out = respond(
        &ep,
        elsewhere.path(),
        &["undo", &id, "--journal", other.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("does not exist") && err.contains("other.jsonl"),
        "{err}"
    );
    std::fs::write(&other, "").unwrap();
    let out = respond(
        &ep,
        elsewhere.path(),
        &["undo", &id, "--journal", other.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&id) && err.contains("other.jsonl"), "{err}");
}
