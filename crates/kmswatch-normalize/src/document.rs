//! Containers, documents and envelopes: from a buffer to provider records.

use crate::{Normalizer, Outcome, Record, RecordError, RejectReason, SkipReason};
use kmswatch_model::Event;
use std::collections::BTreeMap;
use std::fmt;

/// Where a record was found: origin, line (1-based, of the record's first byte in the
/// decoded text) and the path of envelopes and indexes inside that line's document
/// (`Records[3]`, `logEvents[2]`, `zip:logs/a.json`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// File path, `s3://bucket/key`, `topic/partition/offset` or `-`.
    pub origin: String,
    /// 1-based line of the record's start in the decoded text.
    pub line: u64,
    /// Envelope path within the document, empty for a bare record.
    pub path: String,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.origin, self.line)?;
        if !self.path.is_empty() {
            write!(f, " {}", self.path)?;
        }
        Ok(())
    }
}

/// One record's result.
#[derive(Debug)]
pub enum Item {
    /// A normalized event.
    Event {
        /// The event.
        event: Box<Event>,
        /// Kept as related (see [`Outcome::Event`]).
        related: bool,
        /// Where it was found.
        location: Location,
    },
    /// A recognised record that produced no event.
    Skipped {
        /// Why.
        reason: SkipReason,
        /// Where.
        location: Location,
    },
    /// A record that could not be normalized; `bytes` is the record as found (for the
    /// dead-letter output), possibly not valid UTF-8.
    Rejected {
        /// Why.
        error: RecordError,
        /// Where.
        location: Location,
        /// The offending record's bytes.
        bytes: Vec<u8>,
    },
}

/// Counters over items: what a `normalize` run prints at the end.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Records seen (events + skipped + rejected).
    pub records: u64,
    /// Key-management events.
    pub kms_events: u64,
    /// Related events (logging changes, S3 under a KMS key).
    pub related_events: u64,
    /// Skipped records by reason.
    pub skipped: BTreeMap<&'static str, u64>,
    /// Rejected records by reason.
    pub rejected: BTreeMap<&'static str, u64>,
}

impl Summary {
    /// Count one item.
    pub fn add(&mut self, item: &Item) {
        self.records += 1;
        match item {
            Item::Event { related: false, .. } => self.kms_events += 1,
            Item::Event { related: true, .. } => self.related_events += 1,
            Item::Skipped { reason, .. } => *self.skipped.entry(reason.as_str()).or_default() += 1,
            Item::Rejected { error, .. } => {
                *self.rejected.entry(error.reason.as_str()).or_default() += 1
            }
        }
    }

    /// Total rejected records.
    pub fn rejected_total(&self) -> u64 {
        self.rejected.values().sum()
    }

    /// Add another summary into this one.
    pub fn merge(&mut self, other: &Summary) {
        self.records += other.records;
        self.kms_events += other.kms_events;
        self.related_events += other.related_events;
        for (k, v) in &other.skipped {
            *self.skipped.entry(k).or_default() += v;
        }
        for (k, v) in &other.rejected {
            *self.rejected.entry(k).or_default() += v;
        }
    }
}

pub(crate) fn normalize(n: &Normalizer, bytes: &[u8], origin: &str, out: &mut dyn FnMut(Item)) {
    // Placeholder until the document reader lands: one JSON object per buffer.
    let location = Location {
        origin: origin.to_string(),
        line: 1,
        path: String::new(),
    };
    let start = crate::scan::skip_ws(bytes, 0);
    match crate::scan::object_fields(bytes, start) {
        Ok((fields, end)) => {
            let rec = Record {
                bytes: &bytes[start..end],
                fields: &fields,
            };
            let res = if rec.field("protoPayload").is_some() {
                crate::gcp::normalize(n, &rec)
            } else if rec.field("eventSource").is_some() {
                crate::aws::normalize(n, &rec)
            } else {
                crate::azure::normalize(n, &rec)
            };
            out(match res {
                Ok(Outcome::Event { event, related }) => Item::Event {
                    event,
                    related,
                    location,
                },
                Ok(Outcome::Skip(reason)) => Item::Skipped { reason, location },
                Err(error) => Item::Rejected {
                    error,
                    location,
                    bytes: bytes.to_vec(),
                },
            })
        }
        Err(e) => out(Item::Rejected {
            error: RecordError::new(RejectReason::MalformedJson, format!("{e:?}")),
            location,
            bytes: bytes.to_vec(),
        }),
    }
}
