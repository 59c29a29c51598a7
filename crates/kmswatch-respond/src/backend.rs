//! The responder trait and the registry of responders (one enum: every cloud in one place).

use crate::action::{Action, ActionKind, KeyRef, KeyState, FINDING_LABEL, FINDING_TAG};
use crate::aws::AwsBackend;
use crate::azure::AzureBackend;
use crate::basis::Basis;
use crate::corroborate::{claims_about, NotCorroborated};
use crate::error::RespondError;
use crate::gcp::GcpBackend;
use kmswatch_model::Provider;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

/// One cloud's key API. `describe` is the read-only plan step (resolve the key, read its state,
/// tags and names); `execute` makes one change. Undo is an `execute` of [`Action::inverse`].
///
/// Implementations never schedule deletion, delete keys or destroy key material: [`Action`] has
/// no such variant.
#[allow(async_fn_in_trait)]
pub trait KeyBackend {
    /// The cloud.
    fn provider(&self) -> Provider;
    /// Read the key's state (no change).
    async fn describe(&self, key: &KeyRef) -> Result<KeyState, RespondError>;
    /// Make the change. `before` is the state the plan read. Returns a detail for the audit
    /// record (a new version id), if any.
    async fn execute(
        &self,
        key: &KeyRef,
        action: &Action,
        before: &KeyState,
    ) -> Result<Option<String>, RespondError>;
    /// Read-only: check with the cloud's own records that the finding's evidence events about
    /// `key` really happened (where the cloud has an API for it), and, for grant actions, that
    /// the grant exists. Returns what was checked (see [`crate::corroborate`]).
    async fn corroborate(
        &self,
        key: &KeyRef,
        action: &Action,
        basis: &Basis,
        before: &KeyState,
    ) -> Result<Vec<String>, NotCorroborated>;
}

/// Every responder kmswatch has.
#[derive(Debug)]
pub enum Backend {
    /// AWS KMS.
    Aws(AwsBackend),
    /// Azure Key Vault (REST).
    Azure(Box<AzureBackend>),
    /// Google Cloud KMS (REST).
    Gcp(GcpBackend),
    /// An in-memory key store with the same semantics, for tests and demos.
    Memory(MemoryBackend),
}

impl KeyBackend for Backend {
    fn provider(&self) -> Provider {
        match self {
            Backend::Aws(b) => b.provider(),
            Backend::Azure(b) => b.provider(),
            Backend::Gcp(b) => b.provider(),
            Backend::Memory(b) => b.provider(),
        }
    }

    async fn describe(&self, key: &KeyRef) -> Result<KeyState, RespondError> {
        match self {
            Backend::Aws(b) => b.describe(key).await,
            Backend::Azure(b) => b.describe(key).await,
            Backend::Gcp(b) => b.describe(key).await,
            Backend::Memory(b) => b.describe(key).await,
        }
    }

    async fn execute(
        &self,
        key: &KeyRef,
        action: &Action,
        before: &KeyState,
    ) -> Result<Option<String>, RespondError> {
        match self {
            Backend::Aws(b) => b.execute(key, action, before).await,
            Backend::Azure(b) => b.execute(key, action, before).await,
            Backend::Gcp(b) => b.execute(key, action, before).await,
            Backend::Memory(b) => b.execute(key, action, before).await,
        }
    }

    async fn corroborate(
        &self,
        key: &KeyRef,
        action: &Action,
        basis: &Basis,
        before: &KeyState,
    ) -> Result<Vec<String>, NotCorroborated> {
        match self {
            Backend::Aws(b) => b.corroborate(key, action, basis, before).await,
            Backend::Azure(b) => b.corroborate(key, action, basis, before).await,
            Backend::Gcp(b) => b.corroborate(key, action, basis, before).await,
            Backend::Memory(b) => b.corroborate(key, action, basis, before).await,
        }
    }
}

/// An in-memory key store (tests, demos): keys by uid; records every change call; an event
/// history ([`MemoryBackend::log_event`]) that corroboration looks events up in.
#[derive(Debug, Clone)]
pub struct MemoryBackend {
    provider: Provider,
    keys: Arc<Mutex<HashMap<String, KeyState>>>,
    calls: Arc<Mutex<Vec<String>>>,
    events: Arc<Mutex<HashSet<String>>>,
}

impl MemoryBackend {
    /// An empty store for `provider`.
    pub fn new(provider: Provider) -> MemoryBackend {
        MemoryBackend {
            provider,
            keys: Arc::default(),
            calls: Arc::default(),
            events: Arc::default(),
        }
    }

    /// Record that the event with this native id really happened (what the cloud's own history
    /// would return).
    pub fn log_event(&self, uid: &str) {
        if let Ok(mut e) = self.events.lock() {
            e.insert(uid.to_string());
        }
    }

    /// Add or replace a key.
    pub fn put(&self, uid: &str, state: KeyState) {
        if let Ok(mut k) = self.keys.lock() {
            k.insert(uid.to_string(), state);
        }
    }

    /// A key's state.
    pub fn get(&self, uid: &str) -> Option<KeyState> {
        self.keys.lock().ok()?.get(uid).cloned()
    }

    /// The change calls made so far (`disable KEY`).
    pub fn calls(&self) -> Vec<String> {
        self.calls.lock().map(|c| c.clone()).unwrap_or_default()
    }
}

impl KeyBackend for MemoryBackend {
    fn provider(&self) -> Provider {
        self.provider
    }

    async fn describe(&self, key: &KeyRef) -> Result<KeyState, RespondError> {
        self.get(&key.uid).ok_or_else(|| RespondError::Api {
            provider: self.provider.as_str(),
            operation: "describe".into(),
            key: key.uid.clone(),
            status: Some(404),
            code: "NotFound".into(),
            message: "no such key".into(),
            retryable: false,
        })
    }

    async fn execute(
        &self,
        key: &KeyRef,
        action: &Action,
        _before: &KeyState,
    ) -> Result<Option<String>, RespondError> {
        let mut keys = self
            .keys
            .lock()
            .map_err(|_| RespondError::Config("memory backend poisoned".into()))?;
        let s = keys.get_mut(&key.uid).ok_or_else(|| RespondError::Api {
            provider: self.provider.as_str(),
            operation: action.kind.as_str().into(),
            key: key.uid.clone(),
            status: Some(404),
            code: "NotFound".into(),
            message: "no such key".into(),
            retryable: false,
        })?;
        if let Ok(mut c) = self.calls.lock() {
            c.push(format!("{} {}", action.kind.as_str(), key.uid));
        }
        match action.kind {
            ActionKind::Disable => {
                s.enabled = false;
                s.status = "Disabled".into();
            }
            ActionKind::Enable | ActionKind::CancelDeletion => {
                s.enabled = true;
                s.pending_deletion = false;
                s.status = "Enabled".into();
            }
            ActionKind::EnableRotation => {
                s.rotation_enabled = Some(true);
                s.rotation_period_days = action.rotation_period_days;
            }
            ActionKind::DisableRotation => s.rotation_enabled = Some(false),
            ActionKind::Tag => {
                s.tags.insert(
                    FINDING_TAG.into(),
                    action.tag_value.clone().unwrap_or_default(),
                );
            }
            ActionKind::Untag => {
                s.tags.remove(FINDING_TAG);
                s.tags.remove(FINDING_LABEL);
            }
            ActionKind::Rotate
            | ActionKind::RevokeGrant
            | ActionKind::RetireGrant
            | ActionKind::SetPrimary => {}
        }
        Ok(None)
    }

    async fn corroborate(
        &self,
        key: &KeyRef,
        _action: &Action,
        basis: &Basis,
        before: &KeyState,
    ) -> Result<Vec<String>, NotCorroborated> {
        let known = self.events.lock().map(|e| e.clone()).unwrap_or_default();
        claims_about(key, before, basis)?
            .into_iter()
            .map(|c| {
                if known.contains(&c.uid) {
                    Ok(format!("event {} found in the history", c.uid))
                } else {
                    Err(NotCorroborated::no(format!(
                        "event {} ({}) is not in the history",
                        c.uid, c.operation
                    )))
                }
            })
            .collect()
    }
}
