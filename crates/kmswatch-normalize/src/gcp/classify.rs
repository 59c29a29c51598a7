//! Who is behind a Cloud Audit Logs principal: `actor.kind`, `actor.user.type`,
//! `actor.invoked_by` and the caller's project.
//!
//! The principal is `authenticationInfo.principalEmail`, else `principalSubject` (with its
//! `user:` / `serviceAccount:` prefix removed). Rules, first match wins:
//!
//! | principal | kind | type | invoked_by | caller project |
//! |---|---|---|---|---|
//! | absent or empty | `anonymous` | — | — | — |
//! | `service-N@gs-project-accounts.iam.gserviceaccount.com` and the other Google-managed service agents: `service-N@…iam.gserviceaccount.com`, `…@gcp-sa-X.iam.gserviceaccount.com`, `…@compute-system…`, `…@container-engine-robot…`, `bq-N@bigquery-encryption…`, `…@serverless-robot-prod…`, `N@cloudservices.gserviceaccount.com`, `N@cloudbuild.gserviceaccount.com`, `…@system.gserviceaccount.com` | `cloud_service` | `serviceAgent` | the agent's API (`storage.googleapis.com`, `X.googleapis.com`, …) where known | `N` (a project **number**) |
//! | `N-compute@developer.gserviceaccount.com` (Compute Engine default) | `service` | `serviceAccount` | — | `N` |
//! | `P@appspot.gserviceaccount.com` (App Engine default) | `service` | `serviceAccount` | — | `P` |
//! | `NAME@P.iam.gserviceaccount.com`, any other `*.gserviceaccount.com` | `service` | `serviceAccount` | — | `P` when the domain names it |
//! | `principal://…/workloadIdentityPools/…`, `principalSet://…` | `service` | `workloadIdentity` | — | the project number in the path |
//! | `principal://…/workforcePools/…` | `human` | `workforceIdentity` | — | — |
//! | anything else (a Google account, a Workspace or Cloud Identity user) | `human` | `user` | — | — |
//!
//! A service account impersonated by a person (`serviceAccountDelegationInfo`) is decided by
//! the normalizer on top of this: the person becomes `actor.impersonator` and the event is
//! `human` (see [`super`]).
//!
//! Panther's test events write agents without the `@`
//! (`service-111111111111-gs-project-accounts.iam.gserviceaccount.com`); that spelling is read
//! as `service-111111111111@gs-project-accounts.iam.gserviceaccount.com`.
//!
//! Known limit: a user-created service account literally named `service-<digits>` would be read
//! as a service agent.

use kmswatch_model::ActorKind;

/// What a principal is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// `actor.kind`.
    pub kind: ActorKind,
    /// `actor.user.type`, when the principal has one.
    pub user_type: Option<&'static str>,
    /// `actor.invoked_by`: the API a service agent works for.
    pub invoked_by: Option<String>,
    /// The project the principal belongs to (an id or a number), when its name says.
    pub project: Option<String>,
}

impl Identity {
    fn new(kind: ActorKind, user_type: Option<&'static str>) -> Identity {
        Identity {
            kind,
            user_type,
            invoked_by: None,
            project: None,
        }
    }
}

/// The principal as written in a log, without a `user:` / `serviceAccount:` style prefix.
pub fn strip_member_prefix(p: &str) -> &str {
    for prefix in [
        "user:",
        "serviceAccount:",
        "group:",
        "domain:",
        "deleted:user:",
    ] {
        if let Some(rest) = p.strip_prefix(prefix) {
            return rest;
        }
    }
    p
}

/// Classify one principal (`principalEmail` or `principalSubject`).
pub fn classify(principal: &str) -> Identity {
    let p = strip_member_prefix(principal.trim());
    if p.is_empty() {
        return Identity::new(ActorKind::Anonymous, None);
    }
    if let Some(path) = p
        .strip_prefix("principal://")
        .or_else(|| p.strip_prefix("principalSet://"))
    {
        if path.contains("/workforcePools/") {
            return Identity::new(ActorKind::Human, Some("workforceIdentity"));
        }
        let mut id = Identity::new(ActorKind::Service, Some("workloadIdentity"));
        id.project = segment_after(path, "projects/").map(str::to_owned);
        return id;
    }
    let (local, domain) = split_email(p);
    let domain = domain.to_ascii_lowercase();
    if !domain.ends_with("gserviceaccount.com") {
        return Identity::new(ActorKind::Human, Some("user"));
    }
    if let Some(agent) = service_agent(local, &domain) {
        return agent;
    }
    let mut id = Identity::new(ActorKind::Service, Some("serviceAccount"));
    id.project = if domain == "developer.gserviceaccount.com" {
        local
            .strip_suffix("-compute")
            .filter(|n| is_number(n))
            .map(str::to_owned)
    } else if domain == "appspot.gserviceaccount.com" {
        Some(local.to_owned())
    } else {
        domain
            .strip_suffix(".iam.gserviceaccount.com")
            .filter(|p| !p.is_empty() && !p.contains('.'))
            .map(str::to_owned)
    };
    id
}

/// `(local, domain)`; tolerates the `@`-less `service-N-DOMAIN` spelling.
fn split_email(p: &str) -> (&str, &str) {
    if let Some(at) = p.rfind('@') {
        return (&p[..at], &p[at + 1..]);
    }
    if let Some(rest) = p.strip_prefix("service-") {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits > 0 && rest.as_bytes().get(digits) == Some(&b'-') {
            let local_len = "service-".len() + digits;
            return (&p[..local_len], &p[local_len + 1..]);
        }
    }
    (p, "")
}

/// Known agent domains and the API each works for.
const AGENT_DOMAINS: &[(&str, Option<&str>)] = &[
    (
        "gs-project-accounts.iam.gserviceaccount.com",
        Some("storage.googleapis.com"),
    ),
    (
        "compute-system.iam.gserviceaccount.com",
        Some("compute.googleapis.com"),
    ),
    (
        "container-engine-robot.iam.gserviceaccount.com",
        Some("container.googleapis.com"),
    ),
    (
        "bigquery-encryption.iam.gserviceaccount.com",
        Some("bigquery.googleapis.com"),
    ),
    (
        "serverless-robot-prod.iam.gserviceaccount.com",
        Some("run.googleapis.com"),
    ),
    (
        "dataflow-service-producer-prod.iam.gserviceaccount.com",
        Some("dataflow.googleapis.com"),
    ),
    (
        "dataproc-accounts.iam.gserviceaccount.com",
        Some("dataproc.googleapis.com"),
    ),
    (
        "cloudcomposer-accounts.iam.gserviceaccount.com",
        Some("composer.googleapis.com"),
    ),
    (
        "containerregistry.iam.gserviceaccount.com",
        Some("containerregistry.googleapis.com"),
    ),
    (
        "cloudbuild.gserviceaccount.com",
        Some("cloudbuild.googleapis.com"),
    ),
    ("cloudservices.gserviceaccount.com", None),
    ("system.gserviceaccount.com", None),
];

fn service_agent(local: &str, domain: &str) -> Option<Identity> {
    let known = AGENT_DOMAINS.iter().find(|(d, _)| *d == domain);
    let gcp_sa = domain
        .strip_prefix("gcp-sa-")
        .and_then(|d| d.strip_suffix(".iam.gserviceaccount.com"));
    let service_n = local
        .strip_prefix("service-")
        .filter(|n| is_number(n))
        .is_some()
        && domain.ends_with(".iam.gserviceaccount.com");
    let invoked_by = match (known, gcp_sa) {
        (Some((_, api)), _) => api.map(str::to_owned),
        (None, Some(name)) => Some(gcp_sa_api(name)),
        (None, None) if service_n => None,
        (None, None) => return None,
    };
    let project = [
        local.strip_prefix("service-"),
        local.strip_prefix("bq-"),
        Some(local),
    ]
    .into_iter()
    .flatten()
    .find(|n| is_number(n))
    .map(str::to_owned);
    Some(Identity {
        kind: ActorKind::CloudService,
        user_type: Some("serviceAgent"),
        invoked_by,
        project,
    })
}

/// The API behind a `gcp-sa-NAME` agent domain.
fn gcp_sa_api(name: &str) -> String {
    match name {
        "cloud-sql" => "sqladmin.googleapis.com".to_owned(),
        "cloudkms" | "ekms" => "cloudkms.googleapis.com".to_owned(),
        n => format!("{n}.googleapis.com"),
    }
}

fn segment_after<'a>(path: &'a str, prefix: &str) -> Option<&'a str> {
    let i = path.find(prefix)?;
    let rest = &path[i + prefix.len()..];
    rest.split('/').next().filter(|s| !s.is_empty())
}

/// True for a non-empty string of ASCII digits (a project number).
pub fn is_number(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ActorKind as A;

    fn check(p: &str, kind: ActorKind, ty: Option<&str>, by: Option<&str>, proj: Option<&str>) {
        let id = classify(p);
        assert_eq!(id.kind, kind, "{p}: kind");
        assert_eq!(id.user_type, ty, "{p}: type");
        assert_eq!(id.invoked_by.as_deref(), by, "{p}: invoked_by");
        assert_eq!(id.project.as_deref(), proj, "{p}: project");
    }

    #[test]
    fn people() {
        check("alice@example.com", A::Human, Some("user"), None, None);
        check("user:alice@example.com", A::Human, Some("user"), None, None);
        check("someone@gmail.com", A::Human, Some("user"), None, None);
        check(
            "principal://iam.googleapis.com/locations/global/workforcePools/corp/subject/alice",
            A::Human,
            Some("workforceIdentity"),
            None,
            None,
        );
    }

    #[test]
    fn missing_principal() {
        check("", A::Anonymous, None, None, None);
        check("  ", A::Anonymous, None, None, None);
    }

    #[test]
    fn service_accounts() {
        check(
            "app@kmswatch-demo.iam.gserviceaccount.com",
            A::Service,
            Some("serviceAccount"),
            None,
            Some("kmswatch-demo"),
        );
        check(
            "serviceAccount:app@kmswatch-demo.iam.gserviceaccount.com",
            A::Service,
            Some("serviceAccount"),
            None,
            Some("kmswatch-demo"),
        );
        check(
            "123456789012-compute@developer.gserviceaccount.com",
            A::Service,
            Some("serviceAccount"),
            None,
            Some("123456789012"),
        );
        check(
            "kmswatch-demo@appspot.gserviceaccount.com",
            A::Service,
            Some("serviceAccount"),
            None,
            Some("kmswatch-demo"),
        );
        check(
            "odd@something.gserviceaccount.com",
            A::Service,
            Some("serviceAccount"),
            None,
            None,
        );
        // A service account named like a person is still a service account.
        check(
            "service-abc@kmswatch-demo.iam.gserviceaccount.com",
            A::Service,
            Some("serviceAccount"),
            None,
            Some("kmswatch-demo"),
        );
    }

    #[test]
    fn service_agents() {
        let agent = Some("serviceAgent");
        check(
            "service-123456789012@gs-project-accounts.iam.gserviceaccount.com",
            A::CloudService,
            agent,
            Some("storage.googleapis.com"),
            Some("123456789012"),
        );
        check(
            "service-111111111111-gs-project-accounts.iam.gserviceaccount.com",
            A::CloudService,
            agent,
            Some("storage.googleapis.com"),
            Some("111111111111"),
        );
        check(
            "service-123456789012@gcp-sa-pubsub.iam.gserviceaccount.com",
            A::CloudService,
            agent,
            Some("pubsub.googleapis.com"),
            Some("123456789012"),
        );
        check(
            "service-123456789012@gcp-sa-cloud-sql.iam.gserviceaccount.com",
            A::CloudService,
            agent,
            Some("sqladmin.googleapis.com"),
            Some("123456789012"),
        );
        check(
            "service-123456789012@compute-system.iam.gserviceaccount.com",
            A::CloudService,
            agent,
            Some("compute.googleapis.com"),
            Some("123456789012"),
        );
        check(
            "bq-123456789012@bigquery-encryption.iam.gserviceaccount.com",
            A::CloudService,
            agent,
            Some("bigquery.googleapis.com"),
            Some("123456789012"),
        );
        check(
            "123456789012@cloudservices.gserviceaccount.com",
            A::CloudService,
            agent,
            None,
            Some("123456789012"),
        );
        check(
            "123456789012@cloudbuild.gserviceaccount.com",
            A::CloudService,
            agent,
            Some("cloudbuild.googleapis.com"),
            Some("123456789012"),
        );
        // An agent of a service not in the table: still an agent, API unknown.
        check(
            "service-123456789012@new-agent-domain.iam.gserviceaccount.com",
            A::CloudService,
            agent,
            None,
            Some("123456789012"),
        );
        check(
            "service-org-123@gcp-sa-logging.iam.gserviceaccount.com",
            A::CloudService,
            agent,
            Some("logging.googleapis.com"),
            None,
        );
    }

    #[test]
    fn workload_identity() {
        check(
            "principal://iam.googleapis.com/projects/123456789012/locations/global/workloadIdentityPools/ci/subject/repo:x",
            A::Service,
            Some("workloadIdentity"),
            None,
            Some("123456789012"),
        );
    }
}
