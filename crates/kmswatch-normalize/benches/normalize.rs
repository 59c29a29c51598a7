//! Normalize throughput against a parse-only baseline, measured in the same run.
//!
//! Corpora: the real CloudTrail records of `../shared/data/aws` amplified deterministically
//! (new event ids, times, principals and keys; the same shapes) to at least 500,000 records,
//! written as S3 delivery files of 100 records each:
//! - `real_mix`: every real record in its real proportion (mostly non-KMS);
//! - `kms_only`: only the `kms.amazonaws.com` records.
//!
//! For each corpus: `parse_value` = `serde_json::from_slice::<Value>` of every file (the
//! baseline: what a naive pipeline pays before it even looks at a record); `normalize` =
//! `Normalizer::normalize_bytes` of every file (events built, nothing written). Criterion
//! reports records/s per core (one thread); the ratios are printed at the end.
//!
//! `cargo bench -p kmswatch-normalize --bench normalize` (set `KMSWATCH_BENCH_RECORDS` to change
//! the corpus size).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use criterion::{black_box, Criterion, Throughput};
use kmswatch_normalize::{Item, Normalizer, Options};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::Duration;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .unwrap()
        .to_path_buf()
}

/// Every CloudTrail record of the real samples (or of our fixtures when they are absent).
fn real_records() -> Vec<Value> {
    let mut roots = vec![workspace().join("../shared/data/aws")];
    if !roots[0].exists() {
        eprintln!("bench: ../shared/data is absent; amplifying fixtures/aws instead");
        roots = vec![workspace().join("fixtures/aws")];
    }
    let mut out = Vec::new();
    let mut stack = roots;
    let mut files = Vec::new();
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if kmswatch_normalize::is_log_name(&p.to_string_lossy()) {
                files.push(p);
            }
        }
    }
    files.sort();
    for f in files {
        let Ok(text) = std::fs::read(&f) else {
            continue;
        };
        let values: Vec<Value> = if f.extension().is_some_and(|e| e == "jsonl") {
            text.split(|&b| b == b'\n')
                .filter_map(|l| serde_json::from_slice(l).ok())
                .collect()
        } else {
            serde_json::from_slice::<Value>(&text).into_iter().collect()
        };
        for v in values {
            collect(v, &mut out);
        }
    }
    out
}

/// Unwrap the shapes of the samples down to CloudTrail records.
fn collect(v: Value, out: &mut Vec<Value>) {
    match v {
        Value::Array(a) => a.into_iter().for_each(|x| collect(x, out)),
        Value::Object(mut m) => {
            if let Some(r) = m.remove("Records") {
                return collect(r, out);
            }
            if let Some(e) = m.remove("event") {
                return collect(e, out);
            }
            if let Some(d) = m.remove("detail") {
                if m.get("detail-type").and_then(Value::as_str)
                    == Some("AWS API Call via CloudTrail")
                {
                    return collect(d, out);
                }
                return;
            }
            if m.contains_key("eventSource") && m.contains_key("eventTime") {
                out.push(Value::Object(m));
            }
        }
        _ => {}
    }
}

fn hex_tail(s: &str, k: u64) -> String {
    // Replace the last 12 characters of a key id with a per-copy value (same length, hex).
    if s.len() >= 12 && s.is_char_boundary(s.len() - 12) {
        format!("{}{:012x}", &s[..s.len() - 12], k % 4000)
    } else {
        s.to_string()
    }
}

/// A new record with the same shape: new id, time, principal and key.
fn amplify(rec: &Value, k: u64, seq: u64) -> Value {
    let mut r = rec.clone();
    if let Some(m) = r.as_object_mut() {
        m.insert(
            "eventID".into(),
            Value::String(format!(
                "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
                seq >> 16,
                seq & 0xffff,
                k & 0xfff,
                (seq >> 8) & 0xfff,
                seq
            )),
        );
        let secs = 1_767_225_600 + seq / 10; // 2026-01-01, ten records per second
        let (y, mo, d) = kmswatch_normalize::time::civil_from_days((secs / 86_400) as i64);
        let sod = secs % 86_400;
        m.insert(
            "eventTime".into(),
            Value::String(format!(
                "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}Z",
                sod / 3600,
                (sod / 60) % 60,
                sod % 60
            )),
        );
        let who = k % 997;
        if let Some(Value::Object(u)) = m.get_mut("userIdentity") {
            for f in ["userName", "principalId"] {
                if let Some(Value::String(s)) = u.get_mut(f) {
                    *s = format!("{s}-{who}");
                }
            }
            if let Some(Value::String(s)) = u.get_mut("arn") {
                *s = format!("{s}-{who}");
            }
        }
        rekey(m.get_mut("requestParameters"), k);
        rekey(m.get_mut("resources"), k);
    }
    r
}

fn rekey(v: Option<&mut Value>, k: u64) {
    match v {
        Some(Value::String(s))
            if s.contains(":key/") || (s.len() == 36 && s.matches('-').count() == 4) =>
        {
            *s = hex_tail(s, k);
        }
        Some(Value::Array(a)) => a.iter_mut().for_each(|x| rekey(Some(x), k)),
        Some(Value::Object(o)) => o.values_mut().for_each(|x| rekey(Some(x), k)),
        _ => {}
    }
}

/// S3 delivery files of 100 records each, `n` records in all.
fn corpus(base: &[Value], n: usize) -> Vec<Vec<u8>> {
    let mut files = Vec::new();
    let mut batch = Vec::with_capacity(100);
    for seq in 0..n {
        let rec = &base[seq % base.len()];
        batch.push(amplify(rec, (seq / base.len()) as u64, seq as u64));
        if batch.len() == 100 || seq + 1 == n {
            let doc = serde_json::json!({ "Records": std::mem::take(&mut batch) });
            files.push(serde_json::to_vec(&doc).unwrap());
        }
    }
    files
}

fn main() {
    // `--list` (cargo test / nextest listing the benchmarks): no corpus, no report.
    if std::env::args().any(|a| a == "--list") {
        for g in ["real_mix", "kms_only"] {
            for b in ["parse_value", "normalize"] {
                println!("{g}/{b}: benchmark");
            }
        }
        return;
    }
    let n: usize = std::env::var("KMSWATCH_BENCH_RECORDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(500_000);
    let real = real_records();
    let kms: Vec<Value> = real
        .iter()
        .filter(|r| r["eventSource"] == "kms.amazonaws.com")
        .cloned()
        .collect();
    eprintln!(
        "bench: {} real CloudTrail records ({} KMS); amplifying each corpus to {n} records",
        real.len(),
        kms.len()
    );
    let corpora = [
        ("real_mix", corpus(&real, n)),
        ("kms_only", corpus(&kms, n)),
    ];
    let normalizer = Normalizer::new(Options::default()).unwrap();

    let mut c = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(20))
        .configure_from_args();
    for (name, files) in &corpora {
        let bytes: usize = files.iter().map(Vec::len).sum();
        let mut g = c.benchmark_group(*name);
        g.throughput(Throughput::Elements(n as u64));
        g.bench_function("parse_value", |b| {
            b.iter(|| {
                for f in files {
                    black_box(serde_json::from_slice::<Value>(f).unwrap());
                }
            })
        });
        g.bench_function("normalize", |b| {
            b.iter(|| {
                let mut events = 0usize;
                for f in files {
                    normalizer.normalize_bytes(f, "bench", &mut |item| {
                        if let Item::Event { event, .. } = item {
                            events += 1;
                            black_box(event);
                        }
                    });
                }
                black_box(events)
            })
        });
        g.finish();
        eprintln!("bench: {name}: {} files, {} MB", files.len(), bytes >> 20);
    }
    c.final_summary();
    report(n);
}

/// Read criterion's estimates back and print records/s and the ratios.
fn report(n: usize) {
    let dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target"))
        .join("criterion");
    let mean = |group: &str, bench: &str| -> Option<f64> {
        let p = dir.join(group).join(bench).join("new/estimates.json");
        let v: Value = serde_json::from_slice(&std::fs::read(p).ok()?).ok()?;
        v["mean"]["point_estimate"].as_f64() // nanoseconds per iteration
    };
    println!("\nrecords per second per core ({n} records per iteration):");
    for group in ["real_mix", "kms_only"] {
        if let (Some(p), Some(nm)) = (mean(group, "parse_value"), mean(group, "normalize")) {
            let rate = |ns: f64| n as f64 / (ns / 1e9);
            println!(
                "  {group:9} parse_value {:>10.0}/s   normalize {:>10.0}/s   ratio {:.2}x",
                rate(p),
                rate(nm),
                p / nm
            );
        }
    }
}
