//! Hostile inputs, one test each, generated here (no big fixtures): the normalizer stays
//! inside its budgets (`Options::max_decompressed_bytes`, `max_container_depth`,
//! `max_record_bytes`, the JSON and envelope depth caps), never overflows its stack, keeps
//! what was decoded before a budget ran out, and rejects the rest once.
//!
//! Memory is measured with a counting global allocator (`peak_alloc`: every allocation of the
//! process, a realloc counted as old + new while both exist). Each test holds one lock for its
//! whole body — generation included — so no other test allocates while one measures.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use kmswatch_gen::hostile::{
    awslogs, deep, gzip, gzip_bomb, kms_line, kms_lines, nested_zip, zip_bomb, MIB,
};
use kmswatch_normalize::{Elided, Item, Normalizer, Options, RejectReason, ELIDED_PREFIX_BYTES};
use sha2::Digest;
use std::sync::{Mutex, MutexGuard};

#[global_allocator]
static PEAK: peak_alloc::PeakAlloc = peak_alloc::PeakAlloc;

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// What the normalizer needs besides the decoded bytes themselves: the gzip/zip decoder state
/// (a 32 KiB window and tables), one 64 KiB read buffer, locations and items.
const SLACK: usize = 4 << 20;

/// One rejection, without its bytes (kept short so the tally itself stays small).
#[derive(Debug, Clone)]
struct Rej {
    reason: &'static str,
    detail: String,
    location: String,
    origin: String,
    line: u64,
    offset: u64,
    bytes_len: usize,
    /// The bytes when short (a prefix of an elided span is).
    short: Option<Vec<u8>>,
    elided: Option<Elided>,
}

#[derive(Debug, Default)]
struct Tally {
    events: usize,
    skipped: usize,
    rejected: Vec<Rej>,
}

impl Tally {
    fn reasons(&self) -> Vec<&'static str> {
        self.rejected.iter().map(|r| r.reason).collect()
    }
}

/// Normalize `input` and return the items' tally and the peak number of bytes allocated
/// above what was allocated before the call.
fn measured(n: &Normalizer, input: &[u8], origin: &str) -> (Tally, usize) {
    let mut t = Tally::default();
    t.rejected.reserve(16);
    let base = PEAK.current_usage();
    PEAK.reset_peak_usage();
    n.normalize_bytes(input, origin, &mut |item| match item {
        Item::Event { .. } => t.events += 1,
        Item::Skipped { .. } => t.skipped += 1,
        Item::Rejected {
            error,
            location,
            bytes,
        } => t.rejected.push(Rej {
            reason: error.reason.as_str(),
            detail: error.detail.clone(),
            location: location.to_string(),
            origin: location.origin.to_string(),
            line: location.line,
            offset: location.offset,
            bytes_len: bytes.len(),
            short: (bytes.len() <= 4096).then_some(bytes),
            elided: error.elided,
        }),
    });
    (t, PEAK.peak_usage().saturating_sub(base))
}

fn normalizer(opts: Options) -> Normalizer {
    Normalizer::new(opts).expect("options")
}

#[test]
fn zip_nested_3000_levels_is_one_too_deep_rejection() {
    let _g = serial();
    let input = nested_zip(3000, kms_lines(1).as_bytes());
    assert!(input.len() < 1 << 20, "{}", input.len());
    let n = normalizer(Options::default());
    let (t, peak) = measured(&n, &input, "s3://b/deep.zip");
    assert_eq!(t.events, 0);
    assert_eq!(t.reasons(), vec!["too_deep"], "{t:?}");
    let r = &t.rejected[0];
    assert!(r.detail.contains("max_container_depth (4)"), "{r:?}");
    // The rejection names the archive path down to the level that was refused: the fifth.
    assert_eq!(
        r.origin,
        format!("s3://b/deep.zip{}", "!nested.zip".repeat(4)),
        "{r:?}"
    );
    assert_eq!(RejectReason::TooDeep.as_str(), r.reason);
    assert!(peak < 4 * input.len() + SLACK, "peak {peak}");
}

#[test]
fn zip_nested_within_the_depth_cap_is_read() {
    let _g = serial();
    let input = nested_zip(3, kms_lines(2).as_bytes());
    let n = normalizer(Options::default());
    let (t, _) = measured(&n, &input, "nested.zip");
    assert_eq!((t.events, t.rejected.len()), (2, 0), "{t:?}");
}

fn with_budget(bytes: usize) -> Normalizer {
    normalizer(Options {
        max_decompressed_bytes: bytes as u64,
        ..Options::default()
    })
}

fn check_gzip_bomb(compressed: usize, budget: usize) {
    let head = kms_lines(3);
    let (input, decoded) = gzip_bomb(head.as_bytes(), compressed);
    assert!(decoded > 900 * compressed, "{decoded} from {}", input.len());
    let (t, peak) = measured(&with_budget(budget), &input, "s3://b/bomb.json.gz");
    // The records decoded before the budget ran out are processed; the rest is one rejection.
    assert_eq!(t.events, 3, "{t:?}");
    assert_eq!(t.reasons(), vec!["budget_exceeded"], "{t:?}");
    assert!(
        t.rejected[0].detail.contains("max_decompressed_bytes"),
        "{t:?}"
    );
    assert!(
        peak < budget + SLACK,
        "peak {} MiB with a budget of {} MiB",
        peak / MIB,
        budget / MIB
    );
}

#[test]
fn gzip_bomb_of_1_mb_stays_within_the_default_budget() {
    let _g = serial();
    let budget = Options::default().max_decompressed_bytes as usize;
    assert!(budget <= 128 * MIB, "the default fits a 512 MiB container");
    check_gzip_bomb(MIB, budget);
}

#[test]
fn gzip_bomb_of_3_mb_stays_within_a_small_budget() {
    let _g = serial();
    check_gzip_bomb(3 * MIB, 16 * MIB);
}

#[test]
fn zip_of_entries_decompressing_to_8_gb_stops_at_the_object_budget() {
    let _g = serial();
    // One entry of 8 MiB of blanks, deflated once (8 KiB), copied raw 1,000 times: an 8 MB
    // archive that decompresses to 8 GiB.
    let input = zip_bomb(kms_lines(2).as_bytes(), 1000, 8 * MIB);
    assert!(input.len() < 12 * MIB, "{}", input.len());

    let budget = 64 * MIB;
    let n = with_budget(budget);
    let started = std::time::Instant::now();
    let (t, peak) = measured(&n, &input, "s3://b/bomb.zip");
    assert_eq!(t.events, 2, "{t:?}");
    assert_eq!(t.reasons(), vec!["budget_exceeded"], "{t:?}");
    // Entries after the one where the budget ran out are not read (nor listed one by one).
    assert!(t.skipped <= budget / (8 * MIB) + 1, "{} skipped", t.skipped);
    assert!(peak < budget + SLACK, "peak {} MiB", peak / MIB);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(60),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn cloudwatch_logs_envelope_bomb_is_one_rejection() {
    let _g = serial();
    // A CloudWatch Logs payload whose log events are followed by 1 GiB of blanks.
    let head = serde_json::json!({
        "messageType": "DATA_MESSAGE", "owner": "111122223333", "logGroup": "g",
        "logStream": "s", "subscriptionFilters": ["f"],
        "logEvents": [{"id": "1", "timestamp": 1, "message": kms_line(1)}],
    })
    .to_string();
    let (gz, _) = gzip_bomb(head.as_bytes(), MIB);
    let mut input = kms_lines(1).into_bytes();
    input.extend_from_slice(&awslogs(&gz));
    input.push(b'\n');
    let budget = 16 * MIB;
    let (t, peak) = measured(&with_budget(budget), &input, "kafka://logs/0/7");
    // The line before, and the log event of the payload (complete before the blanks).
    assert_eq!(t.events, 2, "{t:?}");
    assert_eq!(t.reasons(), vec!["budget_exceeded"], "{t:?}");
    assert!(t.rejected[0].location.contains("awslogs.data"), "{t:?}");
    assert!(
        peak < budget + 2 * input.len() + SLACK,
        "peak {} MiB",
        peak / MIB
    );
}

#[test]
fn nested_cloudwatch_logs_envelopes_stop_at_the_container_depth() {
    let _g = serial();
    // awslogs.data holding a payload that is itself an awslogs envelope, 200 times over.
    let mut doc = kms_line(0).into_bytes();
    for _ in 0..200 {
        doc = awslogs(&gzip(&doc));
    }
    let n = normalizer(Options::default());
    let (t, _) = measured(&n, &doc, "deep-awslogs.json");
    assert_eq!(t.events, 0);
    assert_eq!(t.reasons(), vec!["too_deep"], "{t:?}");
}

/// `big` as line 2 of three (the others are good records).
fn between_good_lines(big: String) -> String {
    format!("{}\n{big}\n{}\n", kms_line(1), kms_line(2))
}

fn one_mib_records() -> Normalizer {
    normalizer(Options {
        max_record_bytes: MIB,
        ..Options::default()
    })
}

#[test]
fn a_64_mib_line_is_rejected_without_a_copy() {
    let _g = serial();
    let big = format!(
        r#"{{"eventSource":"kms.amazonaws.com","eventName":"Decrypt","x":"{}"}}"#,
        "a".repeat(64 * MIB)
    );
    let input = between_good_lines(big);
    let (t, peak) = measured(&one_mib_records(), input.as_bytes(), "big.jsonl");
    assert_eq!(t.events, 2, "{t:?}");
    assert_eq!(t.reasons(), vec!["too_large"], "{t:?}");
    assert!(peak < SLACK, "peak {} MiB", peak / MIB);
    // Not a copy: the start of the line, its size and its SHA-256, and where it is.
    let r = &t.rejected[0];
    let start = kms_line(1).len() + 1;
    let line = &input.as_bytes()[start..input.len() - kms_line(2).len() - 2];
    assert_eq!((r.line, r.offset), (2, start as u64), "{r:?}");
    assert_eq!(r.bytes_len, ELIDED_PREFIX_BYTES);
    assert_eq!(r.short.as_deref(), Some(&line[..ELIDED_PREFIX_BYTES]));
    let elided = r.elided.expect("elided");
    assert_eq!(elided.size_bytes, line.len() as u64);
    assert_eq!(elided.sha256, <[u8; 32]>::from(sha2::Sha256::digest(line)));
    assert_eq!(elided.sha256_hex().len(), 64);
}

#[test]
fn a_64_mib_line_of_tiny_fields_is_rejected_without_amplification() {
    let _g = serial();
    // Five bytes per top-level field: a field list of this would be six times the line.
    let mut big = String::with_capacity(64 * MIB + 64);
    big.push('{');
    while big.len() < 64 * MIB {
        big.push_str(r#""":0,"#);
    }
    big.push_str(r#""eventSource":"kms.amazonaws.com"}"#);
    let input = between_good_lines(big);
    let (t, peak) = measured(&one_mib_records(), input.as_bytes(), "fields.jsonl");
    assert_eq!(t.events, 2, "{t:?}");
    assert_eq!(t.reasons(), vec!["too_large"], "{t:?}");
    assert!(t.rejected[0].detail.contains("top-level fields"), "{t:?}");
    assert!(t.rejected[0].elided.is_some(), "{t:?}");
    assert!(peak < SLACK, "peak {} MiB", peak / MIB);
}

#[test]
fn json_nested_100k_levels_in_records_and_envelopes() {
    let _g = serial();
    let levels = 100_000;
    let arrays = deep("[", "]", levels, "1");
    let objects = deep(r#"{"a":"#, "}", levels, "1");
    let record = |v: &str| {
        format!(
            r#"{{"eventSource":"kms.amazonaws.com","eventName":"Decrypt","requestParameters":{v}}}"#
        )
    };
    let cases = [
        ("record, arrays", record(&arrays)),
        ("record, objects", record(&objects)),
        ("bare arrays", arrays.clone()),
        (
            "Records envelope",
            format!(r#"{{"Records":[{}]}}"#, record(&arrays)),
        ),
        ("records of arrays", format!(r#"{{"records":{arrays}}}"#)),
        (
            "EventBridge detail",
            format!(
                r#"{{"detail-type":"AWS API Call via CloudTrail","source":"aws.kms","detail":{objects}}}"#
            ),
        ),
        (
            "CloudTrailEvent string",
            serde_json::json!({"CloudTrailEvent": record(&arrays)}).to_string(),
        ),
        (
            "labelled wrappers",
            deep(r#"{"_meta":1,"event":"#, "}", 50, &kms_line(3)),
        ),
    ];
    let n = normalizer(Options::default());
    for (what, doc) in cases {
        let input = format!("{doc}\n{}\n", kms_line(9));
        let (t, _) = measured(&n, input.as_bytes(), what);
        assert_eq!(t.events, 1, "{what}: the next line is still read: {t:?}");
        assert_eq!(t.reasons(), vec!["too_deep"], "{what}: {t:?}");
    }
    // The same inside a CloudWatch Logs payload (base64 + gzip).
    let payload = serde_json::json!({
        "messageType": "DATA_MESSAGE", "logEvents": [{"id": "1", "timestamp": 1, "message": record(&arrays)}],
    })
    .to_string();
    let input = awslogs(&gzip(payload.as_bytes()));
    let (t, _) = measured(&n, &input, "awslogs");
    assert_eq!(t.reasons(), vec!["too_deep"], "{t:?}");
}

#[test]
fn a_rejected_container_carries_its_exact_bytes() {
    let _g = serial();
    // A gzip stream cut short, larger than the old 64 KiB snippet (lines that do not
    // compress well: each with its own pseudo-random user agent).
    let mut x = 0x2545_f491_4f6c_dd1d_u64;
    let body: String = (0..4000)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            kms_line(i).replace("aws-cli", &format!("{x:016x}{:016x}", x.rotate_left(29))) + "\n"
        })
        .collect();
    let gz = gzip(body.as_bytes());
    let cut = &gz[..gz.len() - 100];
    assert!(cut.len() > 64 << 10, "{}", cut.len());
    let n = normalizer(Options::default());
    let mut got = Vec::new();
    n.normalize_bytes(cut, "cut.json.gz", &mut |item| {
        if let Item::Rejected {
            error,
            location,
            bytes,
        } = item
        {
            if location.line == 0 {
                got.push((error.reason.as_str(), bytes));
            }
        }
    });
    assert_eq!(
        got.len(),
        1,
        "{:?}",
        got.iter().map(|g| g.0).collect::<Vec<_>>()
    );
    assert_eq!(got[0].0, "truncated");
    assert!(
        got[0].1 == cut,
        "the gzip rejection holds the stream as found"
    );
}

#[test]
fn a_rejected_record_carries_its_exact_bytes() {
    let _g = serial();
    // Not UTF-8, and a control character: kept byte for byte, not converted.
    let bad = b"{\"eventSource\":\"kms.amazonaws.com\",\"x\":\"\xff\xfe\x01\"}".to_vec();
    let mut input = kms_lines(1).into_bytes();
    input.extend_from_slice(&bad);
    input.push(b'\n');
    let n = normalizer(Options::default());
    let (t, _) = measured(&n, &input, "bad.jsonl");
    assert_eq!(t.events, 1);
    assert_eq!(t.rejected.len(), 1, "{t:?}");
    let r = &t.rejected[0];
    assert_eq!(r.short.as_deref(), Some(&bad[..]));
    assert!(r.elided.is_none());
    assert_eq!((r.line, r.offset), (2, kms_line(0).len() as u64 + 1));
}

/// A record whose text provider rules could not parse as a `Value` — a lone UTF-16
/// surrogate escape, a number beyond f64, nesting past `scan::MAX_DEPTH` — is rejected (and
/// so dead-lettered and counted), not kept as an event invisible to every raw (SigmaHQ) rule.
/// Found by fuzzing (`fuzz/regressions/normalize_auto/`). A record at the depth cap is kept,
/// and its `raw` and its event's JSON (one level deeper) both parse.
#[test]
fn records_provider_rules_could_not_parse_are_rejected() {
    let _g = serial();
    let n = normalizer(Options::default());
    let with = |field: &str, value: &str| {
        let mut v: serde_json::Value = serde_json::from_str(&kms_line(1)).expect("line");
        v[field] = serde_json::Value::Null;
        v.to_string().replace(
            &format!("\"{field}\":null"),
            &format!("\"{field}\":{value}"),
        )
    };
    // The record itself is level 1, `note` holds the rest.
    let at_cap = scan_depth_inner(kmswatch_normalize::scan::MAX_DEPTH - 1);
    let past_cap = scan_depth_inner(kmswatch_normalize::scan::MAX_DEPTH);
    for (what, line, reason) in [
        (
            "lone leading surrogate",
            with("note", r#""\ud800""#),
            "malformed_json",
        ),
        (
            "lone trailing surrogate",
            with("note", r#""a\udc00b""#),
            "malformed_json",
        ),
        ("number beyond f64", with("note", "1e400"), "malformed_json"),
        (
            "negative number beyond f64",
            with("note", "-2e308"),
            "malformed_json",
        ),
        ("past the depth cap", with("note", &past_cap), "too_deep"),
    ] {
        let (t, _) = measured(&n, line.as_bytes(), "s3://b/forged.json");
        assert_eq!((t.events, t.reasons()), (0, vec![reason]), "{what}: {t:?}");
    }
    let line = with("note", &at_cap);
    let mut events = Vec::new();
    n.normalize_bytes(line.as_bytes(), "s3://b/deep.json", &mut |item| {
        if let Item::Event { event, .. } = item {
            events.push(event);
        }
    });
    assert_eq!(events.len(), 1, "a record at the cap is kept");
    let e = &events[0];
    assert!(serde_json::from_str::<serde_json::Value>(e.raw.get()).is_ok());
    let json = serde_json::to_string(e).expect("event json");
    assert!(serde_json::from_str::<serde_json::Value>(&json).is_ok());
    // A pair of surrogate escapes (one character outside the BMP) is fine.
    let (t, _) = measured(
        &n,
        with("note", r#""\ud83d\ude00""#).as_bytes(),
        "s3://b/ok.json",
    );
    assert_eq!((t.events, t.rejected.len()), (1, 0), "{t:?}");
}

/// JSON nested `levels` deep (arrays around an object).
fn scan_depth_inner(levels: usize) -> String {
    deep("[", "]", levels - 1, "{}")
}
