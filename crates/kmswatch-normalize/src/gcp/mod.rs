//! GCP Cloud Audit Logs `LogEntry` records for Cloud KMS, and the logging changes that can
//! blind it.

use crate::{Normalizer, Outcome, Record, RecordError, SkipReason};

/// Normalize one `LogEntry` (the entry itself, envelopes already removed).
pub fn normalize(_n: &Normalizer, _rec: &Record<'_>) -> Result<Outcome, RecordError> {
    Ok(Outcome::Skip(SkipReason::NotKms))
}
