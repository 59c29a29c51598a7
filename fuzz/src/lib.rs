//! # kmswatch-fuzz
//!
//! What the fuzz targets in `fuzz_targets/` share: building a normalizer from a selector
//! byte, running it, and the invariants that hold for *any* input. A target is a few lines
//! that pick the input's shape and call into here, so that every target checks the same
//! contract and a crash reproduces with the same code path (`fuzz/run repro TARGET FILE`).
//!
//! The invariants (each a panic, which libFuzzer reports as a crash with its input):
//! * no panic, no abort, no stack overflow, no allocation over libFuzzer's `-malloc_limit_mb`;
//! * every item is accounted for: the [`Summary`] of the items counts each exactly once, and
//!   a non-empty input that is not a zip archive yields at least one item;
//! * every item names where it was found: its origin is the input's origin (or inside it:
//!   `ORIGIN!entry`, `ORIGIN Records[0].data`), and a rejection names a line or an envelope
//!   path and says what was wrong;
//! * with a forced format, no record is skipped as `unrecognized` (it is rejected instead);
//! * every event serializes to JSON that parses back as a `serde_json::Value` and as an
//!   [`Event`](kmswatch_normalize::model::Event): sinks write that JSON, the Kafka scale-out
//!   reads it back as an `Event`, and provider rules parse `raw` as a `Value`.

use kmswatch_normalize::model::Event;
use kmswatch_normalize::{Format, Item, Normalizer, Options, SkipReason, Summary};

/// Parse `text` as a `Value`; a failure panics.
fn assert_value(text: &str, what: &str) {
    if let Err(e) = serde_json::from_str::<serde_json::Value>(text) {
        panic!("{what} does not parse as a Value ({e}): {text}");
    }
}

/// The origin every target gives the normalizer; every item's location must start with it.
pub const ORIGIN: &str = "fuzz://input";

/// Normalizer options from a selector byte (the first byte of an input): the low nibble
/// picks `max_record_bytes` (0: the default, `k`: `16 << k`, 32 B to 512 KiB), the high
/// nibble `max_decompressed_bytes` (0: the default, `k`: `64 << k`, 128 B to 2 MiB), so the
/// fuzzer also explores the budget edges. Fields added to [`Options`] later keep their
/// defaults.
pub fn options(selector: u8, format: Format) -> Options {
    let defaults = Options::default();
    let record = u32::from(selector & 0x0f);
    let decompressed = u32::from(selector >> 4);
    Options {
        format,
        max_record_bytes: if record == 0 {
            defaults.max_record_bytes
        } else {
            16usize << record
        },
        max_decompressed_bytes: if decompressed == 0 {
            defaults.max_decompressed_bytes
        } else {
            64u64 << decompressed
        },
        ..defaults
    }
}

/// A normalizer with these options (they have no glob patterns, so building never fails).
pub fn normalizer(opts: Options) -> Normalizer {
    match Normalizer::new(opts) {
        Ok(n) => n,
        Err(e) => panic!("options without patterns are valid: {e}"),
    }
}

/// Normalize `bytes` as [`ORIGIN`], check every invariant of the module docs, and return
/// the items.
pub fn normalize_checked(n: &Normalizer, bytes: &[u8]) -> Vec<Item> {
    let items = n.normalize_to_vec(bytes, ORIGIN);
    check_items(n.options().format, bytes, &items);
    items
}

/// The invariants of the module docs over the items of one input.
pub fn check_items(format: Format, bytes: &[u8], items: &[Item]) {
    let mut summary = Summary::default();
    for item in items {
        summary.add(item);
        check_item(format, item);
    }
    let by_kind = summary.kms_events
        + summary.related_events
        + summary.skipped.values().sum::<u64>()
        + summary.rejected_total();
    assert_eq!(
        summary.records,
        items.len() as u64,
        "summary counts every item"
    );
    assert_eq!(
        by_kind, summary.records,
        "every item is of one kind: {summary:?}"
    );
    // A zip archive whose entries are all directories holds no record; anything else
    // non-empty is at least one event, skip or rejection.
    if !bytes.is_empty() && !bytes.starts_with(b"PK\x03\x04") {
        assert!(!items.is_empty(), "a non-empty input yielded no item");
    }
}

fn check_item(format: Format, item: &Item) {
    let location = match item {
        Item::Event { location, .. }
        | Item::Skipped { location, .. }
        | Item::Rejected { location, .. } => location,
    };
    assert!(
        location.origin.starts_with(ORIGIN),
        "an item located outside the input: {location}"
    );
    match item {
        Item::Event { event, .. } => check_event(event),
        Item::Skipped { reason, .. } => {
            if format != Format::Auto {
                assert_ne!(
                    *reason,
                    SkipReason::Unrecognized,
                    "with --format {format} an unrecognized record is rejected, not skipped ({location})"
                );
            }
        }
        Item::Rejected { error, .. } => {
            assert!(
                location.line >= 1 || !location.prefix.is_empty(),
                "a rejection names a line or an envelope path: {location} ({error})"
            );
            assert!(
                !error.detail.is_empty(),
                "a rejection says what was wrong: {location}"
            );
        }
    }
}

/// An event's JSON (what sinks write) parses back as a `Value` (what provider rules do with
/// `raw`) and as an [`Event`] (what the Kafka scale-out's detect role does).
pub fn check_event(event: &Event) {
    assert_value(event.raw.get(), "an event's raw record");
    let json = match serde_json::to_string(event) {
        Ok(j) => j,
        Err(e) => panic!("an event does not serialize: {e}"),
    };
    assert_value(&json, "an event's JSON");
    if let Err(e) = serde_json::from_str::<Event>(&json) {
        panic!("an event's JSON does not parse back as an Event ({e}): {json}");
    }
}

/// What every event of a run serializes to, and the counts by outcome: two runs that agree
/// on this produced the same events, skips and rejections (locations aside).
pub fn outcome(items: &[Item]) -> (Vec<String>, Summary) {
    let mut summary = Summary::default();
    let mut events = Vec::new();
    for item in items {
        summary.add(item);
        if let Item::Event { event, .. } = item {
            events.push(serde_json::to_string(event).unwrap_or_default());
        }
    }
    (events, summary)
}

pub mod container;
pub mod json;
pub mod s3;
