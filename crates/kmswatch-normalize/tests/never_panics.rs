//! Property tests: the normalizer never panics, whatever it is given, and never loses input
//! silently (non-blank input always produces at least one item: an event, a skip or a
//! rejection) — also under budgets of a few bytes, where every line decoded whole is
//! accounted for and the rest is one `budget_exceeded` rejection.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use kmswatch_normalize::{Item, Normalizer, Options, RejectReason, ELIDED_PREFIX_BYTES};
use proptest::prelude::*;
use serde_json::{json, Value};
use std::path::Path;

fn normalizer() -> Normalizer {
    Normalizer::new(Options {
        human_role_patterns: vec!["Admin*".into()],
        ..Options::default()
    })
    .unwrap()
}

fn run(bytes: &[u8]) -> Vec<Item> {
    let items = normalizer().normalize_to_vec(bytes, "prop");
    let blank = bytes
        .iter()
        .all(|b| matches!(b, b' ' | b'\n' | b'\r' | b'\t'));
    assert!(
        blank || !items.is_empty(),
        "non-blank input produced no item: {:?}",
        String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
    );
    for i in &items {
        if let Item::Rejected { error, .. } = i {
            assert!(!error.detail.is_empty());
        }
    }
    items
}

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        ".{0,20}".prop_map(Value::String),
        prop_oneof![
            Just("kms.amazonaws.com"),
            Just("cloudkms.googleapis.com"),
            Just("Decrypt"),
            Just("2026-03-01T10:00:00Z"),
            Just("arn:aws:kms:us-east-1:111122223333:key/k"),
            Just("https://v.vault.azure.net/keys/k/1"),
            Just("projects/p/locations/l/keyRings/r/cryptoKeys/k/cryptoKeyVersions/1"),
            Just("AssumedRole"),
            Just("H4sIAAAAAAAA/w=="),
        ]
        .prop_map(|s| Value::String(s.to_string())),
    ];
    let keys = prop_oneof![
        "[a-zA-Z_@-]{1,12}",
        prop_oneof![
            Just("eventSource"),
            Just("eventName"),
            Just("eventTime"),
            Just("eventID"),
            Just("userIdentity"),
            Just("requestParameters"),
            Just("resources"),
            Just("keyId"),
            Just("Records"),
            Just("records"),
            Just("detail"),
            Just("detail-type"),
            Just("source"),
            Just("protoPayload"),
            Just("serviceName"),
            Just("methodName"),
            Just("resourceName"),
            Just("authenticationInfo"),
            Just("timestamp"),
            Just("insertId"),
            Just("logName"),
            Just("operationName"),
            Just("resourceId"),
            Just("identity"),
            Just("claim"),
            Just("properties"),
            Just("time"),
            Just("category"),
            Just("value"),
            Just("message"),
            Just("data"),
            Just("logEvents"),
            Just("messageType"),
            Just("awslogs"),
            Just("CloudTrailEvent"),
            Just("Events"),
            Just("tables"),
            Just("event"),
            Just("_x"),
            Just("TimeGenerated"),
            Just("OperationName"),
            Just("id_s"),
            Just("Type"),
            Just("operation_name"),
            Just("event_timestamp"),
            Just("type"),
            Just("arn"),
            Just("invokedBy"),
            Just("errorCode"),
            Just("status"),
            Just("code"),
        ]
        .prop_map(str::to_string),
    ];
    leaf.prop_recursive(5, 64, 8, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(keys.clone(), inner, 0..10)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        run(&bytes);
    }

    #[test]
    fn arbitrary_json(v in arb_json()) {
        let text = serde_json::to_vec(&v).unwrap();
        run(&text);
        let pretty = serde_json::to_vec_pretty(&v).unwrap();
        run(&pretty);
    }

    #[test]
    fn arbitrary_json_lines(vs in prop::collection::vec(arb_json(), 1..5)) {
        let mut text = Vec::new();
        for v in &vs {
            text.extend(serde_json::to_vec(v).unwrap());
            text.push(b'\n');
        }
        run(&text);
    }
}

fn fixture_files() -> Vec<Vec<u8>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures");
    let mut out = Vec::new();
    let mut stack = vec![root];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if !p.to_string_lossy().ends_with(".golden") {
                out.push(std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    /// Real shapes, damaged: truncated anywhere, or bytes overwritten anywhere.
    #[test]
    fn damaged_fixtures(pick in any::<prop::sample::Index>(), cut in any::<prop::sample::Index>(),
                        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..8)) {
        let files = fixture_files();
        prop_assume!(!files.is_empty());
        let mut f = files[pick.index(files.len())].clone();
        prop_assume!(!f.is_empty());
        for (at, b) in flips {
            let i = at.index(f.len());
            f[i] = b;
        }
        run(&f);
        let n = cut.index(f.len());
        run(&f[..n]);
    }
}

// ---- tiny budgets ----------------------------------------------------------------------

/// A normalizer with the given budgets.
fn tight(max_record_bytes: usize, max_decompressed_bytes: u64, depth: usize) -> Normalizer {
    Normalizer::new(Options {
        max_record_bytes,
        max_decompressed_bytes,
        max_container_depth: depth,
        ..Options::default()
    })
    .unwrap()
}

/// The invariants of every run, whatever the budgets: no panic; a rejection keeps at most
/// `max_record_bytes` bytes (a larger span is elided: its start, size and hash); a
/// `budget_exceeded` rejection comes once and last.
fn run_tight(n: &Normalizer, bytes: &[u8], origin: &str) -> Vec<Item> {
    let max = n.options().max_record_bytes;
    let items = n.normalize_to_vec(bytes, origin);
    let mut over = 0;
    for (k, i) in items.iter().enumerate() {
        let Item::Rejected { error, bytes, .. } = i else {
            continue;
        };
        assert!(!error.detail.is_empty());
        match error.elided {
            None => assert!(bytes.len() <= max, "{} > {max}", bytes.len()),
            Some(e) => {
                assert!(e.size_bytes > max as u64, "{e:?}");
                assert!(
                    bytes.len() <= max.min(ELIDED_PREFIX_BYTES),
                    "{}",
                    bytes.len()
                );
            }
        }
        if error.reason == RejectReason::BudgetExceeded {
            over += 1;
            assert_eq!(
                k,
                items.len() - 1,
                "the budget's rejection is the last item"
            );
        }
    }
    assert!(over <= 1, "{over} budget rejections");
    items
}

fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn zip_of(name: &str, data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    w.start_file(name, opts).unwrap();
    w.write_all(data).unwrap();
    w.finish().unwrap().into_inner()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    /// Arbitrary bytes, bare or in gzip or zip, under budgets of a few bytes.
    #[test]
    fn tiny_budgets_on_arbitrary_bytes(
        bytes in prop::collection::vec(any::<u8>(), 0..1024),
        wrap in 0u8..3,
        max_record in 0usize..300,
        budget in 0u64..2048,
        depth in 0usize..3,
    ) {
        let n = tight(max_record, budget, depth);
        let input = match wrap {
            0 => bytes,
            1 => gzip(&bytes),
            _ => zip_of("x.jsonl", &bytes),
        };
        let items = run_tight(&n, &input, "prop");
        let blank = input.iter().all(|b| matches!(b, b' ' | b'\n' | b'\r' | b'\t'));
        prop_assert!(blank || !items.is_empty());
    }

    /// JSON lines, bare or in gzip or zip, under a budget that may cut them: every line that
    /// was decoded whole is accounted for (an event, a skip or a rejection on its line);
    /// beyond the cut there is exactly one `budget_exceeded` rejection and nothing else.
    #[test]
    fn every_decoded_line_is_accounted_for(
        vs in prop::collection::vec(arb_json(), 1..6),
        wrap in 0u8..3,
        cut_at in 0.0f64..1.5,
        max_record in 0usize..400,
    ) {
        let mut text = Vec::new();
        let mut ends = Vec::new();
        for v in &vs {
            text.extend(serde_json::to_vec(v).unwrap());
            ends.push(text.len());
            text.push(b'\n');
        }
        let budget = (text.len() as f64 * cut_at) as u64;
        let (input, origin) = match wrap {
            0 => (text.clone(), "prop.jsonl".to_string()),
            1 => (gzip(&text), "prop.jsonl.gz".to_string()),
            _ => (zip_of("l.jsonl", &text), "prop.zip!l.jsonl".to_string()),
        };
        let n = tight(max_record, budget, 2);
        let items = run_tight(&n, &input, origin.split('!').next().unwrap_or_default());
        let decoded_whole = wrap == 0 || budget >= text.len() as u64;
        let over = items.iter().filter(|i| matches!(i,
            Item::Rejected { error, .. } if error.reason == RejectReason::BudgetExceeded)).count();
        prop_assert_eq!(over, usize::from(!decoded_whole));
        for (k, &end) in ends.iter().enumerate() {
            let line = k as u64 + 1;
            let whole = decoded_whole || end as u64 <= budget;
            let seen = items.iter().any(|i| {
                let l = match i {
                    Item::Event { location, .. }
                    | Item::Skipped { location, .. }
                    | Item::Rejected { location, .. } => location,
                };
                l.line == line && (*l.origin == *origin || l.origin.starts_with(&format!("{origin} ")))
            });
            if whole {
                prop_assert!(seen, "line {} not accounted for: {:?}", line, items);
            }
        }
    }
}
