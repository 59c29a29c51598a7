//! The `file` source reading stdin (`-`): in bounded batches that end on a line, a line over
//! `max_record_bytes` set aside, a document handed over whole. Stdin is the process's own, so
//! each case runs this test binary again as a child (its ignored `child_reads_stdin` test)
//! with the input piped in, and reads what the child reports.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use kmswatch_sources::{FileConfig, FileSource};

/// Set in the child: the config (JSON) to read stdin with.
const CHILD_CONFIG: &str = "KMSWATCH_TEST_STDIN_CONFIG";

/// Run the child over `input` with `config`; one JSON object per batch it read.
fn read_in_child(config: serde_json::Value, input: &[u8]) -> Vec<serde_json::Value> {
    let exe = std::env::current_exe().expect("test binary");
    let mut child = Command::new(exe)
        .args(["--ignored", "--exact", "child_reads_stdin", "--nocapture"])
        .env(CHILD_CONFIG, config.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the child");
    let mut stdin = child.stdin.take().expect("stdin");
    let input = input.to_vec();
    let writer = std::thread::spawn(move || {
        stdin.write_all(&input).expect("write stdin");
    });
    let out = child.wait_with_output().expect("child output");
    writer.join().expect("writer");
    assert!(
        out.status.success(),
        "child failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.strip_prefix("BATCH "))
        .map(|l| serde_json::from_str(l).expect("batch line"))
        .collect()
}

#[tokio::test]
#[ignore = "runs in the child process of the stdin tests"]
async fn child_reads_stdin() {
    let Ok(config) = std::env::var(CHILD_CONFIG) else {
        return;
    };
    let cfg: FileConfig = serde_json::from_str(&config).expect("config");
    let mut s = FileSource::new(cfg).expect("source");
    while let Some(b) = tokio::time::timeout(Duration::from_secs(60), s.next_batch())
        .await
        .expect("batch within 60 s")
        .expect("source error")
    {
        let dead: Vec<serde_json::Value> = b
            .dead
            .iter()
            .map(|d| serde_json::json!({"location": d.location, "reason": d.reason, "size": d.size, "sha256": d.sha256}))
            .collect();
        let line = serde_json::json!({
            "origin": b.origin,
            "bytes": String::from_utf8_lossy(&b.bytes),
            "dead": dead,
        });
        println!("BATCH {line}");
    }
}

#[test]
fn stdin_is_read_in_batches_that_end_on_a_line_and_sets_aside_a_long_line() {
    let mut input = Vec::new();
    for n in 0..2000 {
        input.extend_from_slice(
            format!("{{\"n\":{n},\"pad\":\"{}\"}}\n", "p".repeat(n % 97)).as_bytes(),
        );
    }
    let long_at = input.len();
    let long = format!("{{\"pad\":\"{}\"}}", "q".repeat(3 << 20));
    input.extend_from_slice(long.as_bytes());
    input.extend_from_slice(b"\n{\"n\":2000}");
    let batches = read_in_child(
        serde_json::json!({
            "paths": ["-"],
            "max_batch_bytes": 16 * 1024,
            "max_record_bytes": 64 * 1024,
        }),
        &input,
    );
    let mut joined = Vec::new();
    let mut dead = Vec::new();
    for b in &batches {
        let bytes = b["bytes"].as_str().expect("bytes");
        if let Some(d) = b["dead"].as_array().and_then(|d| d.first()) {
            assert!(bytes.is_empty());
            dead.push(d.clone());
            continue;
        }
        assert!(bytes.len() <= 16 * 1024, "a batch of {} bytes", bytes.len());
        assert_eq!(
            b["origin"],
            format!("-:{}", joined.len() + dead.len() * (long.len() + 1))
        );
        joined.extend_from_slice(bytes.as_bytes());
    }
    let mut expected = input[..long_at].to_vec();
    expected.extend_from_slice(b"{\"n\":2000}");
    assert_eq!(joined, expected);
    assert!(batches.len() > 10, "{} batches", batches.len());
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0]["location"], format!("-:{long_at}"));
    assert_eq!(dead[0]["reason"], "record_too_large");
    assert_eq!(dead[0]["size"], long.len());
    let sha = <sha2::Sha256 as sha2::Digest>::digest(long.as_bytes());
    assert_eq!(dead[0]["sha256"], hex::encode(sha));
}

#[test]
fn a_document_on_stdin_is_handed_over_whole_up_to_max_object_bytes() {
    let records: Vec<serde_json::Value> = (0..2000)
        .map(|n| serde_json::json!({"eventSource": "kms.amazonaws.com", "n": n}))
        .collect();
    let doc = serde_json::to_vec_pretty(&serde_json::json!({ "Records": records })).expect("json");
    assert!(doc.len() > 64 * 1024);
    let cfg = |max_object: usize| {
        serde_json::json!({
            "paths": ["-"],
            "max_batch_bytes": 16 * 1024,
            "max_object_bytes": max_object,
        })
    };
    let batches = read_in_child(cfg(1 << 20), &doc);
    assert_eq!(batches.len(), 1);
    assert_eq!(batches[0]["origin"], "-");
    assert_eq!(
        batches[0]["bytes"].as_str().map(str::as_bytes),
        Some(&doc[..])
    );

    // Larger than max_object_bytes: hashed to its end and set aside (stdin does not keep it).
    let batches = read_in_child(cfg(64 * 1024), &doc);
    assert_eq!(batches.len(), 1);
    assert_eq!(batches[0]["bytes"], "");
    let d = &batches[0]["dead"][0];
    assert_eq!(d["location"], "-");
    assert_eq!(d["reason"], "object_too_large");
    assert_eq!(d["size"], doc.len());
    let sha = <sha2::Sha256 as sha2::Digest>::digest(&doc);
    assert_eq!(d["sha256"], hex::encode(sha));
}
