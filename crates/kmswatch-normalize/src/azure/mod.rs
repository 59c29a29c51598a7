//! Azure Key Vault resource logs (`AuditEvent`, AzureDiagnostics and AZKVAuditLogs rows) and
//! Activity Log entries for Key Vault and for diagnostic settings on vaults.

use crate::{Normalizer, Outcome, Record, RecordError, SkipReason};

/// Normalize one Azure record (the record itself, envelopes already removed).
pub fn normalize(_n: &Normalizer, _rec: &Record<'_>) -> Result<Outcome, RecordError> {
    Ok(Outcome::Skip(SkipReason::NotKms))
}
