//! The `file` source against real files: a final record without a newline (Azure's
//! `PT1H.json`) in `follow` mode, the drain on shutdown, batches cut on record boundaries,
//! whole documents, and lines over `max_record_bytes` set aside as dead letters.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use kmswatch_sources::{Batch, FileConfig, FileSource, Source, SourceConfig};
use sha2::{Digest, Sha256};

fn config(v: serde_json::Value) -> FileConfig {
    serde_json::from_value(v).expect("file config")
}

fn follow(path: &Path, state: &Path, quiet_period_ms: u64) -> FileConfig {
    config(serde_json::json!({
        "paths": [path.display().to_string()],
        "follow": true,
        "state_dir": state.display().to_string(),
        "poll_interval_ms": 20,
        "quiet_period_ms": quiet_period_ms,
    }))
}

async fn next(s: &mut FileSource) -> Batch {
    tokio::time::timeout(Duration::from_secs(10), s.next_batch())
        .await
        .expect("no batch within 10 s")
        .expect("source error")
        .expect("source ended")
}

/// A temporary `PT1H.json` holding `content`, and a state directory beside it.
fn pt1h(content: &[u8]) -> (tempfile::TempDir, PathBuf, PathBuf) {
    let d = tempfile::tempdir().expect("tempdir");
    let log = d.path().join("PT1H.json");
    std::fs::write(&log, content).expect("write");
    let state = d.path().join("state");
    (d, state, log)
}

/// The next batch's numbers; the batch is acknowledged.
async fn take(s: &mut FileSource) -> Vec<u64> {
    let b = next(s).await;
    let n = numbers(&b);
    b.ack.ack();
    n
}

/// No batch comes within `ms` milliseconds.
async fn nothing_for(s: &mut FileSource, ms: u64) {
    if let Ok(r) = tokio::time::timeout(Duration::from_millis(ms), s.next_batch()).await {
        let b = r.expect("source error");
        panic!("unexpected batch: {b:?}");
    }
}

fn append(path: &Path, bytes: &[u8]) {
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .expect("open for append");
    f.write_all(bytes).expect("append");
}

/// The `n` of every JSON line of a batch.
fn numbers(b: &Batch) -> Vec<u64> {
    b.bytes
        .split(|&c| c == b'\n')
        .filter(|l| l.iter().any(|c| !c.is_ascii_whitespace()))
        .map(|l| {
            let v: serde_json::Value = serde_json::from_slice(l).expect("a JSON line");
            v["n"].as_u64().expect("n")
        })
        .collect()
}

fn sha256_hex(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

#[tokio::test]
async fn follow_hands_out_a_final_record_without_newline_once_the_file_is_quiet() {
    let (_d, state, log) = pt1h(b"{\"n\":1}\n{\"n\":2}");
    let mut s = FileSource::new(follow(&log, &state, 300)).expect("source");
    let b = next(&mut s).await;
    assert_eq!(&b.bytes[..], b"{\"n\":1}\n");
    b.ack.ack();
    // The last line has no newline; it is complete JSON and the file stopped growing.
    let b = next(&mut s).await;
    assert_eq!(&b.bytes[..], b"{\"n\":2}");
    assert!(b.origin.ends_with("PT1H.json:8"), "{}", b.origin);
    assert!(b.dead.is_empty());
    b.ack.ack();

    // The writer goes on after it: nothing lost, nothing read twice.
    append(&log, b"\n{\"n\":3}\n{\"n\":4}");
    assert_eq!(take(&mut s).await, vec![3]);
    assert_eq!(take(&mut s).await, vec![4]);

    // An unfinished record is not handed out, however long the file stays quiet ...
    append(&log, b"\n{\"n\":");
    nothing_for(&mut s, 1000).await;
    // ... and its continuation completes it.
    append(&log, b"5}\n");
    assert_eq!(take(&mut s).await, vec![5]);
    drop(s);

    // Everything was acknowledged: a restart reads nothing again, only what comes next.
    let mut s = FileSource::new(follow(&log, &state, 300)).expect("source");
    nothing_for(&mut s, 800).await;
    append(&log, b"{\"n\":6}");
    let b = next(&mut s).await;
    assert_eq!(numbers(&b), vec![6]);
}

#[tokio::test]
async fn follow_drains_complete_final_records_on_shutdown() {
    let (_d, state, log) = pt1h(b"{\"n\":1}\n{\"n\":2}");
    // A quiet period far longer than the test: only the drain can hand out the last record.
    let cfg = SourceConfig::File(follow(&log, &state, 600_000));
    let mut s = Source::open(&cfg).await.expect("open");
    let b = tokio::time::timeout(Duration::from_secs(10), s.next_batch())
        .await
        .expect("batch")
        .expect("source error")
        .expect("ended");
    assert_eq!(numbers(&b), vec![1]);
    b.ack.ack();
    let r = tokio::time::timeout(Duration::from_millis(500), s.next_batch()).await;
    assert!(r.is_err(), "the final record came before the quiet period");

    let drained = s.drain().await.expect("drain");
    assert_eq!(drained.len(), 1, "{drained:?}");
    assert_eq!(&drained[0].bytes[..], b"{\"n\":2}");
    for b in drained {
        b.ack.ack();
    }
    drop(s);

    // After a restart nothing is read twice; an unfinished record is never drained.
    let mut s = FileSource::new(follow(&log, &state, 600_000)).expect("source");
    nothing_for(&mut s, 500).await;
    append(&log, b"\n{\"n\":3}\n{\"n\":");
    assert_eq!(take(&mut s).await, vec![3]);
    let drained = s.drain().await.expect("drain");
    assert!(drained.is_empty(), "{drained:?}");
}

/// JSON lines of varied length (some longer than a batch), numbered from 0.
fn json_lines(count: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for n in 0..count {
        let pad = "x".repeat((n * 7919) % 3000 + if n % 500 == 7 { 70_000 } else { 0 });
        out.extend_from_slice(format!("{{\"n\":{n},\"pad\":\"{pad}\"}}\n").as_bytes());
    }
    out
}

#[tokio::test]
async fn json_lines_are_read_in_bounded_batches_that_end_on_a_line() {
    let d = tempfile::tempdir().expect("tempdir");
    let path = d.path().join("big.jsonl");
    let mut data = json_lines(3000);
    // The last line has no newline: read once, the file is complete, so it is read too.
    data.extend_from_slice(b"{\"n\":3000}");
    std::fs::write(&path, &data).expect("write");
    let max_batch = 64 * 1024;
    let whole: Vec<u64> = (0..=3000).collect();
    for follow_mode in [false, true] {
        let cfg = config(serde_json::json!({
            "paths": [path.display().to_string()],
            "follow": follow_mode,
            "poll_interval_ms": 20,
            "quiet_period_ms": 100,
            "max_batch_bytes": max_batch,
        }));
        let mut s = FileSource::new(cfg).expect("source");
        let mut got = Vec::new();
        let mut joined = Vec::new();
        let mut batches = 0;
        while joined.len() < data.len() {
            let b = next(&mut s).await;
            let offset = joined.len();
            assert_eq!(b.origin, format!("{}:{offset}", path.display()));
            assert!(b.dead.is_empty());
            // A batch is at most max_batch_bytes, unless it is one line longer than that.
            let lines = b.bytes.iter().filter(|&&c| c == b'\n').count();
            assert!(
                b.bytes.len() <= max_batch || lines <= 1,
                "batch of {} bytes and {lines} lines",
                b.bytes.len()
            );
            if joined.len() + b.bytes.len() < data.len() {
                assert_eq!(b.bytes.last(), Some(&b'\n'), "a batch ends on a line");
            }
            joined.extend_from_slice(&b.bytes);
            got.extend(numbers(&b));
            batches += 1;
            b.ack.ack();
        }
        assert_eq!(joined, data, "follow={follow_mode}");
        assert_eq!(got, whole, "follow={follow_mode}");
        assert!(batches > 20, "{batches} batches");
    }
}

/// JSON lines that do not compress away (pseudo-random hex), numbered from 0.
fn noisy_lines(count: usize) -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut out = Vec::new();
    for n in 0..count {
        let mut pad = String::new();
        for _ in 0..40 {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            pad.push_str(&format!("{:016x}", x >> 1));
        }
        out.extend_from_slice(format!("{{\"n\":{n},\"pad\":\"{pad}\"}}\n").as_bytes());
    }
    out
}

fn pretty_trail(records: usize) -> Vec<u8> {
    let recs: Vec<serde_json::Value> = (0..records)
        .map(|i| {
            serde_json::json!({
                "eventVersion": "1.08",
                "eventSource": "kms.amazonaws.com",
                "eventName": "Decrypt",
                "eventID": format!("00000000-0000-0000-0000-{i:012}"),
                "recipientAccountId": "111122223333",
            })
        })
        .collect();
    serde_json::to_vec_pretty(&serde_json::json!({ "Records": recs })).expect("json")
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).expect("gzip");
    e.finish().expect("gzip")
}

#[tokio::test]
async fn documents_and_compressed_files_are_handed_over_whole_up_to_max_object_bytes() {
    let d = tempfile::tempdir().expect("tempdir");
    let trail = pretty_trail(2000);
    let array = serde_json::to_vec_pretty(
        &(0..3000)
            .map(|n| serde_json::json!({"n": n}))
            .collect::<Vec<_>>(),
    )
    .expect("json");
    let lines = noisy_lines(600);
    let files: Vec<(&str, Vec<u8>)> = vec![
        ("trail.json", trail.clone()),
        ("array.json", array.clone()),
        ("lines.jsonl.gz", gzip(&lines)),
        ("gzip-without-extension.log", gzip(&lines)),
    ];
    for (name, bytes) in &files {
        assert!(bytes.len() > 64 * 1024, "{name} is larger than a batch");
        std::fs::write(d.path().join(name), bytes).expect("write");
    }
    for follow_mode in [false, true] {
        for (name, bytes) in &files {
            let path = d.path().join(name);
            let cfg = config(serde_json::json!({
                "paths": [path.display().to_string()],
                "follow": follow_mode,
                "poll_interval_ms": 20,
                "quiet_period_ms": 100,
                "max_batch_bytes": 64 * 1024,
                "max_object_bytes": 16 << 20,
            }));
            let mut s = FileSource::new(cfg).expect("source");
            let b = next(&mut s).await;
            assert_eq!(
                &b.bytes[..],
                &bytes[..],
                "{name} (follow={follow_mode}) whole"
            );
            assert!(b.dead.is_empty());
            let origin = path.display().to_string();
            assert!(
                b.origin == origin || b.origin == format!("{origin}:0"),
                "{}",
                b.origin
            );
            b.ack.ack();
            if follow_mode {
                nothing_for(&mut s, 300).await;
            } else {
                assert!(s.next_batch().await.expect("next").is_none());
            }
        }
    }

    // Over max_object_bytes: set aside unread, with its size; the file still holds it.
    let path = d.path().join("trail.json");
    for follow_mode in [false, true] {
        let cfg = config(serde_json::json!({
            "paths": [path.display().to_string()],
            "follow": follow_mode,
            "poll_interval_ms": 20,
            "quiet_period_ms": 100,
            "max_batch_bytes": 64 * 1024,
            "max_record_bytes": 64 * 1024,
            "max_object_bytes": 64 * 1024,
        }));
        let mut s = FileSource::new(cfg).expect("source");
        let b = next(&mut s).await;
        assert!(
            b.bytes.is_empty(),
            "nothing handed over: {} bytes",
            b.bytes.len()
        );
        assert_eq!(b.dead.len(), 1);
        let dl = &b.dead[0];
        assert!(
            dl.location.starts_with(&path.display().to_string()),
            "{}",
            dl.location
        );
        assert_eq!(dl.reason, "object_too_large");
        assert_eq!(dl.size, Some(trail.len() as u64));
        assert_eq!(dl.bytes, None);
        assert!(dl.detail.contains("max_object_bytes"), "{}", dl.detail);
        b.ack.ack();
    }
}

#[tokio::test]
async fn a_line_over_max_record_bytes_is_set_aside_and_the_next_lines_still_read() {
    let d = tempfile::tempdir().expect("tempdir");
    let state = d.path().join("state");
    let path = d.path().join("app.jsonl");
    let long = format!("{{\"n\":1,\"pad\":\"{}\"}}", "y".repeat(3 << 20));
    let mut data = b"{\"n\":0}\n".to_vec();
    let long_at = data.len() as u64;
    data.extend_from_slice(long.as_bytes());
    data.extend_from_slice(b"\n{\"n\":2}\n{\"n\":3}\n");
    std::fs::write(&path, &data).expect("write");
    for follow_mode in [false, true] {
        let cfg = config(serde_json::json!({
            "paths": [path.display().to_string()],
            "follow": follow_mode,
            "state_dir": state.display().to_string(),
            "poll_interval_ms": 20,
            "max_batch_bytes": 64 * 1024,
            "max_record_bytes": 1 << 20,
        }));
        let mut s = FileSource::new(cfg.clone()).expect("source");
        let mut got = Vec::new();
        let mut dead = Vec::new();
        while got.len() < 3 {
            let b = next(&mut s).await;
            if b.dead.is_empty() {
                got.extend(numbers(&b));
            } else {
                assert!(b.bytes.is_empty());
                dead.extend(b.dead.iter().cloned());
            }
            b.ack.ack();
        }
        assert_eq!(got, vec![0, 2, 3], "follow={follow_mode}");
        assert_eq!(dead.len(), 1, "{dead:?}");
        let dl = &dead[0];
        assert_eq!(dl.location, format!("{}:{long_at}", path.display()));
        assert_eq!(dl.reason, "record_too_large");
        assert_eq!(dl.size, Some(long.len() as u64));
        assert_eq!(
            dl.sha256.as_deref(),
            Some(sha256_hex(long.as_bytes()).as_str())
        );
        assert_eq!(dl.bytes, None, "the file still holds it");
        assert!(dl.detail.contains("max_record_bytes"), "{}", dl.detail);
        if follow_mode {
            // Acknowledged: a restart neither reads nor sets aside anything again.
            drop(s);
            let mut s = FileSource::new(cfg).expect("source");
            nothing_for(&mut s, 500).await;
        }
    }
}
