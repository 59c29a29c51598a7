//! Peak memory of the `file` source over a 64 MiB line with a small `max_record_bytes`: the
//! line is streamed over (its size and SHA-256 computed on the way), never held. Measured as
//! the process's peak resident set (`VmHWM`, reset through `/proc/self/clear_refs`), so this
//! file holds one test and runs in its own process.

use std::io::Write;
use std::time::Duration;

use kmswatch_sources::{FileConfig, FileSource};
use sha2::{Digest, Sha256};

const LINE_BYTES: usize = 64 << 20;
const PIECE: usize = 1 << 20;

fn status_kib(field: &str) -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    s.lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Reset the peak resident set to the current one; `None` where Linux does not allow it.
fn reset_peak() -> Option<u64> {
    std::fs::write("/proc/self/clear_refs", "5").ok()?;
    status_kib("VmRSS:")
}

#[tokio::test]
async fn a_64_mib_line_is_set_aside_in_bounded_memory() {
    let d = tempfile::tempdir().expect("tempdir");
    let path = d.path().join("huge.jsonl");
    // {"n":1,"pad":"zzzz…"} of 64 MiB, written and hashed piece by piece.
    let mut f = std::io::BufWriter::new(std::fs::File::create(&path).expect("create"));
    f.write_all(b"{\"n\":0}\n").expect("write");
    let head = b"{\"n\":1,\"pad\":\"";
    let tail = b"\"}";
    let mut sha = Sha256::new();
    f.write_all(head).expect("write");
    sha.update(head);
    let piece = vec![b'z'; PIECE];
    let mut left = LINE_BYTES - head.len() - tail.len();
    while left > 0 {
        let n = left.min(PIECE);
        f.write_all(&piece[..n]).expect("write");
        sha.update(&piece[..n]);
        left -= n;
    }
    f.write_all(tail).expect("write");
    sha.update(tail);
    f.write_all(b"\n{\"n\":2}\n").expect("write");
    f.flush().expect("flush");
    drop(f);
    drop(piece);
    let expected_sha = hex::encode(sha.finalize());

    for follow in [false, true] {
        let cfg: FileConfig = serde_json::from_value(serde_json::json!({
            "paths": [path.display().to_string()],
            "follow": follow,
            "poll_interval_ms": 20,
            "max_batch_bytes": 256 * 1024,
            "max_record_bytes": 1 << 20,
        }))
        .expect("config");
        let Some(base_kib) = reset_peak() else {
            eprintln!("SKIPPED: /proc/self/clear_refs is not writable here");
            return;
        };
        let mut s = FileSource::new(cfg).expect("source");
        let mut lines = Vec::new();
        let mut dead = Vec::new();
        while lines.len() < 2 {
            let b = tokio::time::timeout(Duration::from_secs(60), s.next_batch())
                .await
                .expect("batch within 60 s")
                .expect("source error")
                .expect("source ended");
            if b.dead.is_empty() {
                lines.push(b.bytes.to_vec());
            }
            dead.extend(b.dead.iter().cloned());
            b.ack.ack();
        }
        let peak_kib = status_kib("VmHWM:").expect("VmHWM");
        drop(s);
        assert_eq!(
            lines,
            vec![b"{\"n\":0}\n".to_vec(), b"{\"n\":2}\n".to_vec()],
            "follow={follow}"
        );
        assert_eq!(dead.len(), 1, "{dead:?}");
        assert_eq!(dead[0].location, format!("{}:8", path.display()));
        assert_eq!(dead[0].reason, "record_too_large");
        assert_eq!(dead[0].size, Some(LINE_BYTES as u64));
        assert_eq!(dead[0].sha256.as_deref(), Some(expected_sha.as_str()));
        let grew_mib = peak_kib.saturating_sub(base_kib) as f64 / 1024.0;
        eprintln!("follow={follow}: peak RSS grew by {grew_mib:.1} MiB over a 64 MiB line");
        assert!(
            grew_mib < 16.0,
            "follow={follow}: peak RSS grew by {grew_mib:.1} MiB reading a 64 MiB line"
        );
    }
}
