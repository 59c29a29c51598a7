//! AWS CloudTrail (KMS events and the trail changes that bear on them) and KMS's own
//! EventBridge events.

use crate::{Normalizer, Outcome, Record, RecordError, SkipReason};

/// Normalize one CloudTrail record (the record itself, envelopes already removed).
pub fn normalize(_n: &Normalizer, _rec: &Record<'_>) -> Result<Outcome, RecordError> {
    Ok(Outcome::Skip(SkipReason::NotKms))
}

/// Normalize one EventBridge event whose `source` is `aws.kms` (`KMS CMK Rotation`,
/// `KMS CMK Deletion`, `KMS Imported Key Material Expiration`).
pub fn normalize_eventbridge(_n: &Normalizer, _rec: &Record<'_>) -> Result<Outcome, RecordError> {
    Ok(Outcome::Skip(SkipReason::NotKms))
}
