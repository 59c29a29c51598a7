//! Typed errors. Each says what an operator needs (provider, key, HTTP status, provider code) and
//! whether retrying can help.

use std::path::PathBuf;

/// What went wrong in a responder, the policy or the journal.
#[derive(Debug, thiserror::Error)]
pub enum RespondError {
    /// The key id cannot be understood.
    #[error("invalid key id {key:?}: {reason}")]
    InvalidKey {
        /// What was given.
        key: String,
        /// Why it is not a key id.
        reason: String,
    },
    /// The provider API refused or failed.
    #[error("{provider} {operation} on {key} failed{}: {code}: {message}", status.map(|s| format!(" (HTTP {s})")).unwrap_or_default())]
    Api {
        /// `AWS`, `Azure`, `GCP`.
        provider: &'static str,
        /// The API operation.
        operation: String,
        /// The key.
        key: String,
        /// HTTP status, when there was a response.
        status: Option<u16>,
        /// The provider's error code (`NotFoundException`, `KeyNotFound`, `NOT_FOUND`).
        code: String,
        /// The provider's message.
        message: String,
        /// Whether trying again later can help (throttling, 5xx, network).
        retryable: bool,
    },
    /// Getting a token or credentials failed.
    #[error("{provider} authentication failed: {message}")]
    Auth {
        /// `AWS`, `Azure`, `GCP`.
        provider: &'static str,
        /// What failed.
        message: String,
        /// Whether trying again later can help.
        retryable: bool,
    },
    /// The configuration is wrong (found before any I/O).
    #[error("respond config: {0}")]
    Config(String),
    /// No responder is configured for this provider.
    #[error("no {0} responder is configured (add a `{1}:` section under `respond:`)")]
    NoBackend(&'static str, &'static str),
    /// A request that could delete a key or destroy key material was about to be sent.
    #[error("refused to send {0}: kmswatch never deletes keys or destroys key material")]
    Forbidden(String),
    /// The journal could not be read or written.
    #[error("journal {}: {source}", path.display())]
    Journal {
        /// The journal file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// No pending action / record with this id.
    #[error("{0}")]
    NotFound(String),
}

impl RespondError {
    /// Whether retrying the same call later can succeed.
    pub fn retryable(&self) -> bool {
        match self {
            RespondError::Api { retryable, .. } | RespondError::Auth { retryable, .. } => {
                *retryable
            }
            RespondError::Journal { .. } => true,
            _ => false,
        }
    }

    /// The provider's error code, when the error came from a provider API.
    pub fn code(&self) -> Option<&str> {
        match self {
            RespondError::Api { code, .. } => Some(code),
            _ => None,
        }
    }
}
