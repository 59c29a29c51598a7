//! What a Cloud KMS `SetIamPolicy` (on a key, key ring or other Cloud KMS resource) opens the
//! resource to: `kms.grantees` and `kms.policy`.
//!
//! **Grantees.** When the entry carries a policy delta (`serviceData.policyDelta` in current
//! Cloud Audit Logs, `metadata.policyDelta` in some versions), the grantees are the members of
//! its `bindingDeltas` with `action: ADD`, in order, deduplicated; the delta is authoritative,
//! so a delta that only removes members yields no grantees. Without a delta, every member of
//! the new policy (`request.policy.bindings[].members`) is a grantee: the whole policy is what
//! the caller set. Members are kept as logged (`user:…`, `serviceAccount:…`, `allUsers`).
//! When the entry has neither, both fields stay unset.
//!
//! **`kms.policy.public`**: a grantee is `allUsers` or `allAuthenticatedUsers`.
//!
//! **`kms.policy.external_accounts`**: the projects of service-account grantees
//! (`serviceAccount:NAME@PROJECT.iam.gserviceaccount.com`, `PROJECT@appspot…`, as read by
//! [`super::classify`]) that differ from the key's project, lowercased, deduplicated and
//! sorted. Google-managed service agents (`service-N@gcp-sa-…`, `service-N@gs-project-accounts…`
//! and the rest of [`super::classify`]'s list) act for the key's own project and are never
//! external. A project number is compared only with a number and an id only with an id (the
//! Compute Engine default account `N-compute@developer…` names a number); a pair that cannot
//! be compared is not reported. When the key's project is unknown every service-account
//! project is reported. Users, groups and domains are not accounts here (their email domain
//! says nothing about the key's organization).

use super::classify;
use kmswatch_model::{ActorKind, PolicyChange};
use serde::Deserialize;
use std::collections::BTreeSet;

/// Members that make a resource public.
pub const PUBLIC_MEMBERS: &[&str] = &["allUsers", "allAuthenticatedUsers"];

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AuditData {
    policy_delta: Option<PolicyDelta>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PolicyDelta {
    binding_deltas: Option<Vec<BindingDelta>>,
}

#[derive(Debug, Deserialize)]
struct BindingDelta {
    action: Option<String>,
    member: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Request {
    policy: Option<Policy>,
}

#[derive(Debug, Deserialize)]
struct Policy {
    bindings: Option<Vec<Binding>>,
}

#[derive(Debug, Deserialize)]
struct Binding {
    members: Option<Vec<String>>,
}

fn parse<T: for<'de> Deserialize<'de>>(raw: Option<&str>) -> Option<T> {
    raw.and_then(|r| serde_json::from_str(r).ok())
}

/// Grantees and policy change of a `SetIamPolicy` entry, from its `serviceData`, `metadata`
/// and `request` (JSON text), given the key's project.
pub fn analyze(
    service_data: Option<&str>,
    metadata: Option<&str>,
    request: Option<&str>,
    key_project: Option<&str>,
) -> (Vec<String>, Option<PolicyChange>) {
    let delta = [service_data, metadata]
        .into_iter()
        .filter_map(parse::<AuditData>)
        .find_map(|d| d.policy_delta.and_then(|p| p.binding_deltas));
    let members: Vec<String> = match delta {
        Some(deltas) => deltas
            .into_iter()
            .filter(|d| {
                d.action
                    .as_deref()
                    .is_some_and(|a| a.trim().eq_ignore_ascii_case("ADD"))
            })
            .filter_map(|d| d.member)
            .collect(),
        None => {
            let Some(bindings) = parse::<Request>(request)
                .and_then(|r| r.policy)
                .and_then(|p| p.bindings)
            else {
                return (Vec::new(), None);
            };
            bindings
                .into_iter()
                .flat_map(|b| b.members.unwrap_or_default())
                .collect()
        }
    };
    let mut grantees: Vec<String> = Vec::new();
    for m in members {
        let m = m.trim();
        if !m.is_empty() && !grantees.iter().any(|g| g == m) {
            grantees.push(m.to_string());
        }
    }
    let change = change_of(&grantees, key_project);
    (grantees, Some(change))
}

/// `kms.policy` for a list of granted members.
pub fn change_of(grantees: &[String], key_project: Option<&str>) -> PolicyChange {
    let public = grantees
        .iter()
        .any(|g| PUBLIC_MEMBERS.iter().any(|p| p.eq_ignore_ascii_case(g)));
    let mut external = BTreeSet::new();
    for g in grantees {
        if let Some(project) = service_account_project(g) {
            let differs = match key_project {
                Some(k) => {
                    classify::is_number(k) == classify::is_number(&project)
                        && !k.eq_ignore_ascii_case(&project)
                }
                None => true,
            };
            if differs {
                external.insert(project.to_ascii_lowercase());
            }
        }
    }
    PolicyChange {
        public,
        external_accounts: external.into_iter().collect(),
    }
}

/// The project of a customer service account member; `None` for users, groups, domains,
/// service agents and anything else.
fn service_account_project(member: &str) -> Option<String> {
    let m = member.trim();
    if !(m.starts_with("serviceAccount:") || m.contains("gserviceaccount.com")) {
        return None;
    }
    let id = classify::classify(m);
    if id.kind != ActorKind::Service || id.user_type != Some("serviceAccount") {
        return None;
    }
    id.project.filter(|p| !p.is_empty())
}
