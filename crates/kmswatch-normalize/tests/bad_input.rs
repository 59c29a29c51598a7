//! Bad input never stops the stream: each broken record is rejected with its location and
//! reason, and every good record around it is still normalized.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use kmswatch_normalize::{Item, Normalizer, Options, RejectReason};
use std::path::Path;

fn fixture(name: &str) -> Vec<u8> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/broken")
        .join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// (events, rejections as (line, reason)).
fn outcome(n: &Normalizer, name: &str, bytes: &[u8]) -> (usize, Vec<(u64, RejectReason)>) {
    let mut events = 0;
    let mut rejected = Vec::new();
    n.normalize_bytes(bytes, name, &mut |item| match item {
        Item::Event { .. } => events += 1,
        Item::Rejected {
            error, location, ..
        } => {
            assert_eq!(&*location.origin, name);
            rejected.push((location.line, error.reason))
        }
        Item::Skipped { .. } => {}
    });
    (events, rejected)
}

fn check(name: &str, want_events: usize, want_rejected: &[(u64, RejectReason)]) {
    let n = Normalizer::new(Options::default()).unwrap();
    let (events, rejected) = outcome(&n, name, &fixture(name));
    assert_eq!(events, want_events, "{name}: events");
    assert_eq!(rejected, want_rejected, "{name}: rejections");
}

use RejectReason::*;

#[test]
fn malformed_line_in_json_lines() {
    check("malformed-line.jsonl", 2, &[(2, MalformedJson)]);
}

#[test]
fn truncated_line_in_the_middle() {
    check("truncated-line.jsonl", 2, &[(2, Truncated)]);
}

#[test]
fn invalid_utf8_in_a_record() {
    check("invalid-utf8.jsonl", 2, &[(2, InvalidUtf8)]);
}

#[test]
fn records_missing_required_fields() {
    check(
        "missing-fields.jsonl",
        2,
        &[(2, MissingField), (4, MissingField)],
    );
}

#[test]
fn a_time_that_is_not_a_time() {
    check("bad-time.jsonl", 1, &[(1, BadValue)]);
}

#[test]
fn not_json_at_all() {
    check("not-json.json", 0, &[(1, MalformedJson)]);
}

#[test]
fn broken_document_then_a_good_one() {
    let n = Normalizer::new(Options::default()).unwrap();
    let (events, rejected) = outcome(
        &n,
        "broken-then-good.json",
        &fixture("broken-then-good.json"),
    );
    assert_eq!(events, 1, "the good document after the broken one is read");
    // The cut falls inside the first record (line 3): scanning it runs into the next
    // document, so it is rejected as malformed, and reading resumes at that document.
    assert_eq!(rejected, vec![(3, MalformedJson)]);
}

#[test]
fn trailing_garbage_and_bare_values() {
    check(
        "trailing-garbage.jsonl",
        1,
        &[(1, MalformedJson), (2, UnknownFormat)],
    );
}

#[test]
fn truncated_gzip_keeps_what_was_decoded() {
    let n = Normalizer::new(Options::default()).unwrap();
    let (events, rejected) = outcome(&n, "truncated.json.gz", &fixture("truncated.json.gz"));
    // The S3 file holds 39 records; the cut keeps the complete ones before it, reports the
    // cut-off document and the gzip stream, and nothing panics.
    assert!(events > 10 && events < 39, "{events}");
    assert_eq!(rejected.len(), 2, "{rejected:?}");
    assert!(rejected.contains(&(1, Truncated)), "{rejected:?}");
    assert!(rejected.contains(&(0, Truncated)), "{rejected:?}");
}

fn kms_line(i: usize, user_agent: &str) -> String {
    serde_json::json!({
        "eventVersion": "1.08",
        "userIdentity": {"type": "IAMUser", "principalId": "AIDAEXAMPLE", "arn": "arn:aws:iam::111122223333:user/alice", "accountId": "111122223333", "userName": "alice"},
        "eventTime": "2026-03-01T10:00:00Z", "eventSource": "kms.amazonaws.com", "eventName": "Decrypt",
        "awsRegion": "us-east-1", "sourceIPAddress": "198.51.100.7", "userAgent": user_agent,
        "requestParameters": {"keyId": "1234abcd-12ab-34cd-56ef-1234567890ab"},
        "eventID": format!("e-{i}"), "eventType": "AwsApiCall", "recipientAccountId": "111122223333"
    })
    .to_string()
}

#[test]
fn a_50_mb_record_is_rejected_and_its_neighbours_are_kept() {
    let huge = "x".repeat(50 << 20);
    let text = format!(
        "{}\n{}\n{}\n",
        kms_line(1, "a"),
        kms_line(2, &huge),
        kms_line(3, "b")
    );
    let n = Normalizer::new(Options::default()).unwrap();
    let (events, rejected) = outcome(&n, "huge.jsonl", text.as_bytes());
    assert_eq!(events, 2);
    assert_eq!(rejected, vec![(2, TooLarge)]);

    // With the limit raised it is read like any other record.
    let n = Normalizer::new(Options {
        max_record_bytes: 64 << 20,
        ..Options::default()
    })
    .unwrap();
    let (events, rejected) = outcome(&n, "huge.jsonl", text.as_bytes());
    assert_eq!((events, rejected.len()), (3, 0));
}

#[test]
fn empty_inputs_are_counted_not_lost() {
    let n = Normalizer::new(Options::default()).unwrap();
    for input in [&b""[..], b"   \n", b"{\"Records\": []}", b"[]"] {
        let items = n.normalize_to_vec(input, "empty");
        assert!(
            items.iter().all(|i| matches!(i, Item::Skipped { .. })),
            "{items:?}"
        );
    }
}
