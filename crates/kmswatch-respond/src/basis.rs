//! What a finding claims, as far as the responder checks it before acting: the log origins of
//! its events (`kmswatch.origins`) and its evidence events (bounded). A [`Basis`] is taken from
//! the finding when a playbook plans an action and kept on the plan record, so that an approval
//! later (`kmswatch respond approve`, another process, no finding at hand) checks the same
//! claims against the cloud.

use kmswatch_model::{Finding, Origin, Provider};
use serde::{Deserialize, Serialize};

/// The most evidence events a basis keeps (and the most look-ups a corroboration makes).
pub const MAX_CLAIMS: usize = 16;
/// Longest string a claim keeps (longer ones are cut, so they never verify).
const MAX_FIELD: usize = 512;

/// One evidence event, as the finding gives it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claim {
    /// The native event id (`metadata.uid`: CloudTrail `eventID`, GCP `insertId`, ...).
    pub uid: String,
    /// The cloud.
    pub provider: Provider,
    /// The native operation (`api.operation`: `DisableKey`, `KeyDelete`, ...).
    pub operation: String,
    /// The service (`api.service.name`: `kms.amazonaws.com`, ...).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub service: String,
    /// Event time, epoch ms.
    pub time: i64,
    /// `cloud.account.uid`: the AWS account whose log holds it, the Azure subscription, the GCP
    /// project.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// `cloud.region`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// `kms.key.uid`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// `actor.user.uid`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal: Option<String>,
    /// `kms.origin`: where the runtime read the event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<Origin>,
}

/// A finding's claims: its origins and evidence events.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Basis {
    /// The distinct origins of all contributing events (`kmswatch.origins`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub origins: Vec<Origin>,
    /// More origins contributed than the finding lists.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub origins_truncated: bool,
    /// The evidence events (at most [`MAX_CLAIMS`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<Claim>,
    /// How many events contributed (`evidences_count`).
    #[serde(default)]
    pub events_total: u64,
}

fn cut(s: &str) -> String {
    crate::action::quote(s)
        .chars()
        .take(MAX_FIELD)
        .collect::<String>()
}

impl Basis {
    /// The claims of a finding.
    pub fn of(f: &Finding) -> Basis {
        Basis {
            origins: f.kmswatch.origins.clone(),
            origins_truncated: f.kmswatch.origins_truncated,
            events: f
                .evidences
                .iter()
                .take(MAX_CLAIMS)
                .map(|e| Claim {
                    uid: cut(&e.metadata.uid),
                    provider: e.cloud.provider,
                    operation: cut(&e.api.operation),
                    service: cut(&e.api.service.name),
                    time: e.time,
                    account: e.cloud.account.uid.as_deref().map(cut),
                    region: e.cloud.region.as_deref().map(cut),
                    key: e.kms.key.as_ref().map(|k| cut(&k.uid)),
                    principal: e.actor.user.uid.as_deref().map(cut),
                    origin: e.kms.origin.clone(),
                })
                .collect(),
            events_total: f.evidences_count,
        }
    }
}
