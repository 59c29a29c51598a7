//! Dead letters of `kmswatch run` are lossless and uncapped, and the memory budget holds:
//!
//! - 300 rejected records in one batch (half of them not UTF-8) give 300 dead-letter entries
//!   whose bytes decode back exactly (UTF-8 text or base64, the encoding named in the entry),
//!   with size and SHA-256, counted in `kmswatch_dead_letters_total`;
//! - under a small `limits.memory_budget_bytes` a large append is read in batches the budget
//!   admits (the file source's limits are lowered to it) and every record is processed (a
//!   batch over the budget — possible from Kafka — is dead-lettered unread: the pipeline's
//!   unit test `a_batch_over_the_budget_is_an_entry_without_its_bytes`);
//! - `kmswatch normalize|scan --dead-letter` write the same exact format.

mod support;

use base64::Engine as _;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::Path;
use support::{read_jsonl, schedule_deletion_line, wait_for, workspace, Run};

const KEY: &str = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";

fn config(log: &Path, extra: &str) -> String {
    format!(
        "rules:\n  paths: [{rules}]\n  lateness_secs: 172800\n\
         sources:\n  - {{ id: trail, type: file, paths: [\"{log}\"], follow: true }}\n\
         sinks:\n  - {{ type: file, path: out.jsonl, batch: {{ timeout_ms: 20 }} }}\n\
         state: {{ dir: state, checkpoint_interval_ms: 200, idle_advance_secs: 0 }}\n\
         server: {{ listen: \"127.0.0.1:0\" }}\n{extra}",
        rules = workspace().join("rules").display(),
        log = log.display(),
    )
}

fn decode(entry: &Value) -> Vec<u8> {
    let data = entry["data"]
        .as_str()
        .unwrap_or_else(|| panic!("no data: {entry}"));
    match entry["encoding"].as_str() {
        Some("utf8") => data.as_bytes().to_vec(),
        Some("base64") => base64::engine::general_purpose::STANDARD
            .decode(data)
            .unwrap_or_else(|e| panic!("bad base64 in {entry}: {e}")),
        other => panic!("unknown encoding {other:?} in {entry}"),
    }
}

fn hex_sha256(b: &[u8]) -> String {
    Sha256::digest(b)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

#[test]
fn three_hundred_rejected_records_decode_back_exactly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("trail.jsonl");
    // One valid record (the batch is not a bad object), then 300 rejected lines.
    let mut bad: Vec<Vec<u8>> = Vec::new();
    for i in 0..150 {
        bad.push(format!("garbage line {i} {{not json \u{e9}\t\"quoted\"").into_bytes());
        bad.push(
            [
                &b"\xff\xfe bad \x80 line "[..],
                i.to_string().as_bytes(),
                b"\x00\x1b[31m",
            ]
            .concat(),
        );
    }
    let mut text = schedule_deletion_line(KEY, "alice", "ev-1").into_bytes();
    for b in &bad {
        text.extend_from_slice(b);
        text.push(b'\n');
    }
    std::fs::write(&log, &text).expect("write trail");
    let mut run = Run::start(&dir.path().join("run"), &config(&log, ""), &[]);
    let dl = dir.path().join("run/state/dead-letter.jsonl");
    wait_for("300 dead-letter entries", 120, &mut run, |_| {
        read_jsonl(&dl)
            .iter()
            .filter(|e| e["kind"] == "record")
            .count()
            >= 300
    });
    wait_for("the metric", 30, &mut run, |r| {
        r.metric("kmswatch_dead_letters_total{source=\"trail\",reason=\"malformed_json\"}") == 300.0
    });
    run.stop(30);
    let entries: Vec<Value> = read_jsonl(&dl)
        .into_iter()
        .filter(|e| e["kind"] == "record")
        .collect();
    assert_eq!(entries.len(), 300, "one entry per rejected record, no cap");
    for (i, (e, want)) in entries.iter().zip(&bad).enumerate() {
        let got = decode(e);
        assert_eq!(&got, want, "entry {i} does not decode to the record: {e}");
        assert_eq!(e["size"], want.len(), "{e}");
        assert_eq!(e["sha256"], hex_sha256(want), "{e}");
        assert_eq!(e["source"], "trail");
        assert_eq!(e["reason"], "malformed_json");
        assert_eq!(
            e["encoding"],
            if std::str::from_utf8(want).is_ok() {
                "utf8"
            } else {
                "base64"
            }
        );
        let loc = e["location"].as_str().unwrap_or_default();
        assert!(loc.starts_with(&log.display().to_string()), "{loc}");
    }
    assert!(
        !run.jsonl("out.jsonl").is_empty(),
        "the valid record's finding"
    );
}

#[test]
fn a_large_append_under_a_small_budget_is_read_in_bounded_batches() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("trail.jsonl");
    std::fs::write(&log, schedule_deletion_line(KEY, "before", "ev-before")).expect("trail");
    // 1 MiB budget: batches in flight are bounded to half of it, and what the file source
    // reads at once to an eighth (its max_batch_bytes and max_record_bytes are lowered).
    let mut run = Run::start(
        &dir.path().join("run"),
        &config(&log, "limits: { memory_budget_bytes: 1048576 }\n"),
        &[],
    );
    let findings_of = |r: &Run, prefix: &str| {
        r.jsonl("out.jsonl")
            .iter()
            .filter(|f| {
                f["finding_info"]["analytic"]["name"] == "kms_schedule_key_deletion"
                    && f.to_string().contains(&format!("user/{prefix}"))
            })
            .count()
    };
    wait_for("the first finding", 120, &mut run, |r| {
        findings_of(r, "before") > 0
    });
    assert!(
        run.log().contains("lowered to 131072"),
        "the source's limits follow the budget"
    );
    // One append of ~900 KiB: more than the in-flight half of the budget at once.
    let mut big = Vec::new();
    let mut n = 0;
    while big.len() < 900 << 10 {
        big.extend_from_slice(
            schedule_deletion_line(KEY, &format!("big{n:05}"), &format!("ev-big-{n}")).as_bytes(),
        );
        n += 1;
    }
    {
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&log)
            .expect("open");
        f.write_all(&big).expect("append big");
        f.write_all(schedule_deletion_line(KEY, "after", "ev-after").as_bytes())
            .expect("append");
    }
    // Read in batches the budget admits: every record is processed, none set aside.
    wait_for("every appended record's finding", 120, &mut run, |r| {
        findings_of(r, "big") == n && findings_of(r, "after") == 1
    });
    run.stop(30);
    let dl = dir.path().join("run/state/dead-letter.jsonl");
    assert!(
        !read_jsonl(&dl)
            .iter()
            .any(|e| e["reason"] == "over_memory_budget"),
        "no batch was over the budget"
    );
}

/// `kmswatch normalize|scan --dead-letter FILE` write the runtime's entry format: exact bytes
/// (UTF-8 text or base64), size and SHA-256; a record over `--max-record-bytes` keeps only a
/// prefix (`data_is_prefix`) with the *whole* record's size and hash — the input still holds
/// it, and its location says where.
#[test]
fn cli_dead_letters_are_exact_and_an_oversize_record_is_named_by_its_hash() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("in.jsonl");
    let bad_utf8 = b"\xff\xfe not \x80 json \x1b[31m".to_vec();
    let not_json = b"{\"eventVersion\": broken".to_vec();
    let big = format!("{{\"note\":\"{}\"}}", "x".repeat(3000)).into_bytes();
    let mut text = schedule_deletion_line(KEY, "alice", "ev-1").into_bytes();
    for b in [&bad_utf8, &not_json, &big] {
        text.extend_from_slice(b);
        text.push(b'\n');
    }
    std::fs::write(&input, &text).expect("write input");
    // `scan` reads the record limit from a config's `normalize:` section, `normalize` from a flag.
    let cfg = dir.path().join("kmswatch.yml");
    std::fs::write(
        &cfg,
        format!(
            "rules: {{ paths: [{}] }}\nnormalize: {{ max_record_bytes: 2048 }}\n",
            workspace().join("rules").display()
        ),
    )
    .expect("config");
    for verb in ["normalize", "scan"] {
        let dl = dir.path().join(format!("{verb}-dead.jsonl"));
        let mut cmd = std::process::Command::new(support::BIN);
        cmd.arg(verb);
        if verb == "normalize" {
            cmd.args(["--max-record-bytes", "2048"]);
        } else {
            cmd.arg("-c").arg(&cfg);
        }
        let out = cmd
            .arg("--dead-letter")
            .arg(&dl)
            .arg(&input)
            .output()
            .expect("run kmswatch");
        assert_eq!(
            out.status.code(),
            Some(1),
            "{verb}: rejected records exit 1: {out:?}"
        );
        let entries = read_jsonl(&dl);
        assert_eq!(entries.len(), 3, "{verb}: {entries:?}");
        for (e, want) in entries.iter().zip([&bad_utf8, &not_json]) {
            assert_eq!(&decode(e), want, "{verb}: {e}");
            assert_eq!(e["size"], want.len(), "{e}");
            assert_eq!(e["sha256"], hex_sha256(want), "{e}");
            assert_eq!(e["source"], verb);
            assert!(e.get("data_is_prefix").is_none(), "{e}");
        }
        let e = &entries[2];
        assert_eq!(e["reason"], "too_large", "{e}");
        assert_eq!(e["data_is_prefix"], true, "{e}");
        assert_eq!(e["size"], big.len(), "the whole record's size: {e}");
        assert_eq!(
            e["sha256"],
            hex_sha256(&big),
            "the whole record's hash: {e}"
        );
        let prefix = decode(e);
        assert!(prefix.len() < big.len() && big.starts_with(&prefix), "{e}");
        assert!(
            e["location"]
                .as_str()
                .unwrap_or_default()
                .contains("in.jsonl"),
            "{e}"
        );
    }
}
