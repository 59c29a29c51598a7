//! `kmswatch run` on hostile input delivered the way CloudTrail delivers it (S3 objects
//! announced on SQS, in moto) and as a file, under a memory budget (`limits.memory_budget_bytes`):
//!
//! - every hostile object of `kmswatch_gen::hostile::corpus` (zip nested 3,000 deep, gzip and
//!   zip bombs of 3 and 8 GiB, a CloudWatch Logs envelope bomb, JSON nested 100,000 deep,
//!   records that validate but do not parse), an object larger than `max_object_bytes` and a
//!   file holding one 256 MiB line are read, dead-lettered where they are bad, and
//!   acknowledged (the queue empties); the ordinary record among them still becomes a finding;
//! - the process's peak resident memory (`VmHWM`) stays under the configured budget the whole
//!   time;
//! - the poison object (the 3,000-level zip, which overflowed the stack on every restart
//!   before) is dead-lettered once: a restart finds nothing left to read and writes no entry.

mod support;

use kmswatch_gen::hostile::{corpus, write_long_line, MIB};
use serde_json::Value;
use support::aws::{aws_endpoint, sqs_source, unique, wait_queue_empty, wait_until, Aws};
use support::{read_jsonl, workspace, Run};

/// The budget the run is given (the chart's default is 384 MiB; a smaller one shows the bound).
const BUDGET: u64 = 160 * MIB as u64;

fn config(sqs: &str, file: &std::path::Path) -> String {
    format!(
        "rules:\n  paths: [{rules}]\n  lateness_secs: 172800\n\
         sources:\n{sqs}  - {{ id: files, type: file, paths: [\"{file}\"] }}\n\
         sinks:\n  - {{ type: file, path: findings.jsonl, batch: {{ timeout_ms: 20 }} }}\n\
         state: {{ dir: state, checkpoint_interval_ms: 200, idle_advance_secs: 2 }}\n\
         server: {{ listen: \"127.0.0.1:0\" }}\n\
         limits: {{ memory_budget_bytes: {BUDGET} }}\n",
        rules = workspace().join("rules").display(),
        file = file.display(),
        sqs = sqs,
    )
}

/// Entries of the dead-letter file whose origin or location names `name`.
fn entries_for<'a>(dead: &'a [Value], name: &str) -> Vec<&'a Value> {
    dead.iter()
        .filter(|e| {
            e["origin"].as_str().is_some_and(|o| o.ends_with(name))
                || e["location"].as_str().is_some_and(|l| l.contains(name))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_input_stays_within_the_memory_budget_and_poison_is_dead_lettered_once() {
    let Some(ep) = aws_endpoint() else { return };
    let aws = Aws::new(&ep).await;
    let bucket = unique("kmsw-hostile");
    let url = aws.bucket_with_queue(&bucket).await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let long = tmp.path().join("long-line.jsonl");
    {
        let mut w = std::io::BufWriter::new(std::fs::File::create(&long).expect("long line"));
        write_long_line(&mut w, 256 * MIB).expect("write long line");
        std::io::Write::flush(&mut w).expect("flush");
    }
    let dir = tmp.path().join("run");
    let cfg = config(&sqs_source(&aws, &url), &long);
    let mut run = Run::start(&dir, &cfg, &[]);
    let prefix = "AWSLogs/111122223333/CloudTrail/us-east-1/2026/03/01";
    let cases = corpus();
    for c in &cases {
        aws.put(&bucket, &format!("{prefix}/{}", c.name), c.bytes.clone())
            .await;
    }
    // Larger than the S3 source's max_object_bytes (64 MiB): set aside unread (HeadObject).
    let mut big = Vec::with_capacity(72 * MIB);
    write_long_line(&mut big, 72 * MIB).expect("big object");
    aws.put(&bucket, &format!("{prefix}/big.json"), big).await;

    let dl = dir.join("state/dead-letter.jsonl");
    let mut peak = 0u64;
    let expected = [
        "nested-3000.zip",
        "bomb-3mb.json.gz",
        "bomb-8gb.zip",
        "awslogs-bomb.json",
        "deep.jsonl",
        "unparseable.jsonl",
        "big.json",
        "long-line.jsonl",
    ];
    wait_until("a dead-letter entry for every hostile input", 300, || {
        run.assert_alive();
        peak = peak.max(run.peak_rss_bytes().unwrap_or(0));
        let dead = read_jsonl(&dl);
        expected.iter().all(|n| !entries_for(&dead, n).is_empty())
    })
    .await;
    wait_queue_empty(&aws, &url, 120).await;
    wait_until("the ordinary record's finding", 60, || {
        peak = peak.max(run.peak_rss_bytes().unwrap_or(0));
        !run.jsonl("findings.jsonl").is_empty()
    })
    .await;
    peak = peak.max(run.peak_rss_bytes().unwrap_or(0));
    run.stop(60);
    eprintln!(
        "hostile run: peak RSS {:.1} MiB of a {:.0} MiB budget",
        peak as f64 / MIB as f64,
        BUDGET as f64 / MIB as f64
    );
    assert!(peak > 0, "VmHWM not read");
    assert!(
        peak < BUDGET,
        "peak RSS {} MiB over the {} MiB budget",
        peak / MIB as u64,
        BUDGET / MIB as u64
    );

    let dead = read_jsonl(&dl);
    let reasons = |n: &str| -> Vec<String> {
        entries_for(&dead, n)
            .iter()
            .map(|e| e["reason"].as_str().unwrap_or_default().to_string())
            .collect()
    };
    assert!(
        reasons("nested-3000.zip").contains(&"too_deep".to_string()),
        "{dead:?}"
    );
    for bomb in ["bomb-3mb.json.gz", "bomb-8gb.zip", "awslogs-bomb.json"] {
        assert_eq!(reasons(bomb), ["budget_exceeded"], "{bomb}: {dead:?}");
    }
    assert!(reasons("deep.jsonl")
        .iter()
        .all(|r| r == "too_deep" || r == "unreadable"));
    assert!(reasons("unparseable.jsonl")
        .iter()
        .all(|r| r == "malformed_json" || r == "unreadable"));
    assert_eq!(reasons("big.json"), ["object_too_large"], "{dead:?}");
    assert_eq!(reasons("long-line.jsonl"), ["record_too_large"], "{dead:?}");
    let long_entry = entries_for(&dead, "long-line.jsonl")[0];
    // The line without its newline.
    assert_eq!(long_entry["size"], 256 * MIB as u64 - 1, "{long_entry}");
    assert!(
        long_entry.get("data").is_none(),
        "the line is not copied: {long_entry}"
    );
    // Records before a budget ran out were processed: the bombs' heads are findings too.
    let findings = run.jsonl("findings.jsonl");
    assert!(findings.len() >= 2, "{} findings", findings.len());

    // A restart: the poison object and the rest were acknowledged, nothing comes back.
    let before = dead.len();
    let mut run = Run::start(&dir, &cfg, &[]);
    wait_until("the restarted run to be ready", 60, || {
        run.assert_alive();
        run.get("/readyz").is_some_and(|(s, _)| s == 200)
    })
    .await;
    tokio::time::sleep(std::time::Duration::from_secs(4)).await;
    run.assert_alive();
    run.stop(60);
    assert_eq!(
        read_jsonl(&dl).len(),
        before,
        "a restart dead-lettered something again"
    );
    assert_eq!(aws.depth(&url).await, 0);
}
