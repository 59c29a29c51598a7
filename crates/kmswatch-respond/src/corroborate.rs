//! Corroboration: before an automatic action executes in `enforce` mode (or after approval),
//! the cloud's own records must agree with what the finding says happened. A log record can be
//! forged by anyone who can write where logs land; the key's state and the cloud's own event
//! history cannot.
//!
//! Two parts, both read-only:
//! - **The key's state** ([`check_state`], every cloud): the key exists (the plan's describe
//!   found it) and is in the state the finding implies for the action: pending deletion for
//!   `cancel_deletion` (so a forged "deletion scheduled" record cannot re-enable a key someone
//!   disabled on purpose), enabled for `disable`, disabled for `enable`.
//! - **The events** (per cloud, [`crate::backend::KeyBackend::corroborate`]): each evidence
//!   event of the finding that is about the key ([`claims_about`], at most
//!   [`crate::basis::MAX_CLAIMS`]) is looked up in the cloud's own audit history where an API
//!   allows it (AWS CloudTrail `LookupEvents` by event id; GCP Cloud Logging `entries:list` by
//!   `insertId`); grants are listed (`ListGrants`) before a grant is revoked or retired. What
//!   each cloud checks is listed in docs/response.md.
//!
//! When anything does not agree the action is not taken: the plan record's outcome is
//! `not_corroborated`, with the reason, and a finding of rule
//! [`crate::responder::NOT_CORROBORATED_RULE`] is raised.

use crate::action::{Action, ActionKind, KeyRef, KeyState};
use crate::basis::{Basis, Claim};

/// Why the cloud does not corroborate the finding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotCorroborated {
    /// What disagreed (or could not be checked).
    pub why: String,
    /// Whether checking again later can help (the cloud's history lags, or a call failed).
    pub retryable: bool,
}

impl NotCorroborated {
    /// A final disagreement.
    pub fn no(why: impl Into<String>) -> NotCorroborated {
        NotCorroborated {
            why: why.into(),
            retryable: false,
        }
    }

    /// A check that may succeed later.
    pub fn later(why: impl Into<String>) -> NotCorroborated {
        NotCorroborated {
            why: why.into(),
            retryable: true,
        }
    }
}

/// The key state the finding implies for `action`, checked against the state the plan read.
/// Returns what was checked.
pub fn check_state(action: &Action, before: &KeyState) -> Result<String, NotCorroborated> {
    match action.kind {
        ActionKind::CancelDeletion if !before.pending_deletion => Err(NotCorroborated::no(format!(
            "the key is not pending deletion (status {}): the deletion the finding reports is not in the key's state, and cancel_deletion would re-enable a key that is disabled on purpose",
            before.status
        ))),
        ActionKind::CancelDeletion => Ok(format!("the key is pending deletion (status {})", before.status)),
        ActionKind::Disable if !before.enabled => Err(NotCorroborated::no(format!(
            "the key is not enabled (status {})",
            before.status
        ))),
        ActionKind::Enable if before.enabled => Err(NotCorroborated::no(format!(
            "the key is already enabled (status {})",
            before.status
        ))),
        _ => Ok(format!("the key exists (status {})", before.status)),
    }
}

/// Whether a claim's key is `key`: the same id, the id the provider resolved it to, or (AWS)
/// the same bare key id.
fn names_key(claim: &Claim, key: &KeyRef, before: &KeyState) -> bool {
    let Some(c) = claim.key.as_deref() else {
        return false;
    };
    let bare = |s: &str| s.rsplit_once(":key/").map(|(_, id)| id.to_string());
    c == key.uid
        || before.resolved_uid.as_deref() == Some(c)
        || (bare(c).is_some() && bare(c) == before.resolved_uid.as_deref().and_then(bare))
}

/// The finding's evidence events about `key`; at least one, all of the key's cloud.
pub fn claims_about<'a>(
    key: &KeyRef,
    before: &KeyState,
    basis: &'a Basis,
) -> Result<Vec<&'a Claim>, NotCorroborated> {
    if basis.events.is_empty() {
        return Err(NotCorroborated::no(
            "the finding carries no evidence events to check against the cloud",
        ));
    }
    let about: Vec<&Claim> = basis
        .events
        .iter()
        .filter(|c| names_key(c, key, before))
        .collect();
    if about.is_empty() {
        return Err(NotCorroborated::no(format!(
            "none of the finding's evidence events is about {}",
            key.uid
        )));
    }
    if let Some(c) = about.iter().find(|c| c.provider != key.provider) {
        return Err(NotCorroborated::no(format!(
            "evidence event {} is a {} event about a {} key",
            c.uid,
            c.provider.as_str(),
            key.provider.as_str()
        )));
    }
    Ok(about)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kmswatch_model::Provider;

    #[test]
    fn state_must_match_the_action() {
        let pending = KeyState {
            status: "PendingDeletion".into(),
            pending_deletion: true,
            ..Default::default()
        };
        let disabled = KeyState {
            status: "Disabled".into(),
            ..Default::default()
        };
        let enabled = KeyState {
            status: "Enabled".into(),
            enabled: true,
            ..Default::default()
        };
        let cancel = Action::new(ActionKind::CancelDeletion);
        assert!(check_state(&cancel, &pending).is_ok());
        let e = check_state(&cancel, &disabled).unwrap_err();
        assert!(e.why.contains("not pending deletion"), "{e:?}");
        assert!(check_state(&Action::new(ActionKind::Disable), &enabled).is_ok());
        assert!(check_state(&Action::new(ActionKind::Disable), &disabled).is_err());
        assert!(check_state(&Action::new(ActionKind::Enable), &enabled).is_err());
        assert!(check_state(&Action::new(ActionKind::Tag), &disabled).is_ok());
    }

    #[test]
    fn claims_must_name_the_key() {
        let arn = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";
        let key = KeyRef::parse(Provider::Aws, arn).unwrap();
        let claim = |k: &str| Claim {
            uid: "e1".into(),
            provider: Provider::Aws,
            operation: "Decrypt".into(),
            service: String::new(),
            time: 0,
            account: None,
            region: None,
            key: Some(k.into()),
            principal: None,
            origin: None,
        };
        let before = KeyState {
            resolved_uid: Some(arn.into()),
            ..Default::default()
        };
        let basis = Basis {
            events: vec![
                claim(arn),
                claim("arn:aws:kms:us-east-1:111122223333:key/other"),
            ],
            ..Default::default()
        };
        assert_eq!(claims_about(&key, &before, &basis).unwrap().len(), 1);
        assert!(claims_about(&key, &before, &Basis::default()).is_err());
        let other = Basis {
            events: vec![claim("arn:aws:kms:us-east-1:111122223333:key/other")],
            ..Default::default()
        };
        assert!(claims_about(&key, &before, &other).is_err());
    }
}
