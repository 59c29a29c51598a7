//! `actor.kind` from a CloudTrail `userIdentity`.
//!
//! Rules, first match wins:
//!
//! | `userIdentity` | kind |
//! |---|---|
//! | missing, or `ANONYMOUS_PRINCIPAL` as principal or account | `anonymous` |
//! | `type: Root` | `root` (even when a service acted for it: root use is always notable) |
//! | `type: AWSService`, or `invokedBy` naming an AWS service (`*.amazonaws.com`, `AWS Internal`, `Amazon Internal`) | `cloud_service` |
//! | `IAMUser`, `FederatedUser`, `SAMLUser`, `WebIdentityUser`, `IdentityCenterUser` | `human` |
//! | `AssumedRole` session of an `AWSReservedSSO_*` role (IAM Identity Center) | `human` |
//! | `AssumedRole` whose role name or role ARN matches `human_role_patterns` | `human` |
//! | any other `AssumedRole` (or `Role`) | `service` |
//! | `AWSAccount` (a principal of another account, named only by its account) | `service` |
//! | anything else | `unknown` |
//!
//! A call that a service made on a principal's behalf (S3 calling `GenerateDataKey` for a
//! user's upload) is `cloud_service`, with the service in `actor.invoked_by` and the principal
//! still in `actor.user`.

use crate::Normalizer;
use kmswatch_model::ActorKind;

/// What classification looks at, borrowed from the record.
#[derive(Debug, Clone, Copy, Default)]
pub struct Principal<'a> {
    /// Whether the record has a `userIdentity` at all.
    pub present: bool,
    /// `userIdentity.type`.
    pub type_: Option<&'a str>,
    /// `userIdentity.arn`.
    pub arn: Option<&'a str>,
    /// `userIdentity.principalId`.
    pub principal_id: Option<&'a str>,
    /// `userIdentity.accountId`.
    pub account_id: Option<&'a str>,
    /// `userIdentity.invokedBy`.
    pub invoked_by: Option<&'a str>,
    /// `userIdentity.sessionContext.sessionIssuer.arn`.
    pub issuer_arn: Option<&'a str>,
    /// `userIdentity.sessionContext.sessionIssuer.userName`.
    pub issuer_name: Option<&'a str>,
}

/// The principal CloudTrail writes for unauthenticated requests.
pub const ANONYMOUS_PRINCIPAL: &str = "ANONYMOUS_PRINCIPAL";

/// True when `invokedBy` names an AWS service rather than a client.
pub fn is_aws_service(invoked_by: &str) -> bool {
    invoked_by.ends_with(".amazonaws.com")
        || invoked_by.ends_with(".amazonaws.com.cn")
        || invoked_by == "AWS Internal"
        || invoked_by == "Amazon Internal"
}

/// The role behind an assumed-role session: issuer `userName`, else the last path segment of
/// the issuer ARN, else the role segment of the `assumed-role/ROLE/SESSION` ARN.
pub fn role_name<'a>(p: &Principal<'a>) -> Option<&'a str> {
    if let Some(n) = p.issuer_name.filter(|n| !n.is_empty()) {
        return Some(n);
    }
    if let Some(a) = p.issuer_arn.and_then(super::identity::parse_arn) {
        if let Some(r) = a.resource.strip_prefix("role/") {
            return r.rsplit('/').next();
        }
    }
    let a = p.arn.and_then(super::identity::parse_arn)?;
    a.resource.strip_prefix("assumed-role/")?.split('/').next()
}

/// The session name of an `assumed-role/ROLE/SESSION` ARN.
pub fn session_name(arn: &str) -> Option<&str> {
    let a = super::identity::parse_arn(arn)?;
    let rest = a.resource.strip_prefix("assumed-role/")?;
    rest.split_once('/')
        .map(|(_, s)| s)
        .filter(|s| !s.is_empty())
}

/// Classify a principal (see the module docs).
pub fn classify(n: &Normalizer, p: &Principal<'_>) -> ActorKind {
    if !p.present
        || p.principal_id == Some(ANONYMOUS_PRINCIPAL)
        || p.account_id == Some(ANONYMOUS_PRINCIPAL)
    {
        return ActorKind::Anonymous;
    }
    let ty = p.type_.unwrap_or("");
    if ty == "Root" {
        return ActorKind::Root;
    }
    if ty == "AWSService" || p.invoked_by.is_some_and(is_aws_service) {
        return ActorKind::CloudService;
    }
    match ty {
        "IAMUser" | "FederatedUser" | "SAMLUser" | "WebIdentityUser" | "IdentityCenterUser" => {
            ActorKind::Human
        }
        "AssumedRole" | "Role" => {
            let role = role_name(p);
            if role.is_some_and(|r| r.starts_with("AWSReservedSSO_")) {
                return ActorKind::Human;
            }
            let human = role.is_some_and(|r| n.is_human_role(r))
                || p.issuer_arn.is_some_and(|a| n.is_human_role(a));
            if human {
                ActorKind::Human
            } else {
                ActorKind::Service
            }
        }
        "AWSAccount" => ActorKind::Service,
        _ => ActorKind::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Options;

    fn normalizer(patterns: &[&str]) -> Normalizer {
        Normalizer::new(Options {
            human_role_patterns: patterns.iter().map(|s| s.to_string()).collect(),
            ..Options::default()
        })
        .unwrap()
    }

    fn typed(ty: &'static str) -> Principal<'static> {
        Principal {
            present: true,
            type_: Some(ty),
            account_id: Some("111122223333"),
            ..Principal::default()
        }
    }

    fn role(role_arn: &'static str, name: &'static str) -> Principal<'static> {
        Principal {
            issuer_arn: Some(role_arn),
            issuer_name: Some(name),
            ..typed("AssumedRole")
        }
    }

    fn kind(p: &Principal<'_>) -> ActorKind {
        classify(&normalizer(&[]), p)
    }

    #[test]
    fn iam_user_is_human() {
        assert_eq!(kind(&typed("IAMUser")), ActorKind::Human);
    }

    #[test]
    fn federated_user_is_human() {
        assert_eq!(kind(&typed("FederatedUser")), ActorKind::Human);
    }

    #[test]
    fn saml_user_is_human() {
        assert_eq!(kind(&typed("SAMLUser")), ActorKind::Human);
    }

    #[test]
    fn web_identity_user_is_human() {
        assert_eq!(kind(&typed("WebIdentityUser")), ActorKind::Human);
    }

    #[test]
    fn identity_center_user_is_human() {
        assert_eq!(kind(&typed("IdentityCenterUser")), ActorKind::Human);
    }

    #[test]
    fn sso_role_session_is_human() {
        let p = role(
            "arn:aws:iam::111122223333:role/aws-reserved/sso.amazonaws.com/AWSReservedSSO_Admin_0123456789abcdef",
            "AWSReservedSSO_Admin_0123456789abcdef",
        );
        assert_eq!(kind(&p), ActorKind::Human);
        // Also when only the issuer ARN (with its path) is known.
        let p = Principal {
            issuer_name: None,
            ..p
        };
        assert_eq!(kind(&p), ActorKind::Human);
    }

    #[test]
    fn root_is_root() {
        assert_eq!(kind(&typed("Root")), ActorKind::Root);
        let p = Principal {
            invoked_by: Some("s3.amazonaws.com"),
            ..typed("Root")
        };
        assert_eq!(kind(&p), ActorKind::Root);
    }

    #[test]
    fn other_role_session_is_service() {
        let p = role("arn:aws:iam::111122223333:role/app-backend", "app-backend");
        assert_eq!(kind(&p), ActorKind::Service);
    }

    #[test]
    fn role_matching_human_patterns_is_human() {
        let n = normalizer(&["Admin*", "arn:aws:iam::*:role/BreakGlass"]);
        let admins = role("arn:aws:iam::111122223333:role/Admins", "Admins");
        assert_eq!(classify(&n, &admins), ActorKind::Human);
        let bg = Principal {
            issuer_name: None,
            ..role("arn:aws:iam::111122223333:role/BreakGlass", "")
        };
        assert_eq!(classify(&n, &bg), ActorKind::Human);
        let app = role("arn:aws:iam::111122223333:role/app", "app");
        assert_eq!(classify(&n, &app), ActorKind::Service);
    }

    #[test]
    fn role_name_from_session_arn_alone() {
        let n = normalizer(&["Ops*"]);
        let p = Principal {
            arn: Some("arn:aws:sts::111122223333:assumed-role/OpsTeam/jdoe"),
            ..typed("AssumedRole")
        };
        assert_eq!(role_name(&p), Some("OpsTeam"));
        assert_eq!(classify(&n, &p), ActorKind::Human);
    }

    #[test]
    fn aws_service_is_cloud_service() {
        let p = Principal {
            invoked_by: Some("workmail.eu-west-1.amazonaws.com"),
            account_id: None,
            ..typed("AWSService")
        };
        assert_eq!(kind(&p), ActorKind::CloudService);
    }

    #[test]
    fn invoked_by_a_service_is_cloud_service() {
        let p = Principal {
            invoked_by: Some("s3.amazonaws.com"),
            ..role("arn:aws:iam::111122223333:role/app", "app")
        };
        assert_eq!(kind(&p), ActorKind::CloudService);
    }

    #[test]
    fn aws_internal_is_cloud_service() {
        // KMS service events: `{"accountId": "...", "invokedBy": "AWS Internal"}`.
        let p = Principal {
            present: true,
            account_id: Some("111122223333"),
            invoked_by: Some("AWS Internal"),
            ..Principal::default()
        };
        assert_eq!(kind(&p), ActorKind::CloudService);
        let cn = Principal {
            invoked_by: Some("Amazon Internal"),
            ..p
        };
        assert_eq!(kind(&cn), ActorKind::CloudService);
    }

    #[test]
    fn client_invoked_by_is_not_a_service() {
        let p = Principal {
            invoked_by: Some("my-tool/1.0"),
            ..typed("IAMUser")
        };
        assert_eq!(kind(&p), ActorKind::Human);
    }

    #[test]
    fn aws_account_is_service() {
        let p = Principal {
            principal_id: Some("AIDAEXAMPLE"),
            account_id: Some("444455556666"),
            ..typed("AWSAccount")
        };
        assert_eq!(kind(&p), ActorKind::Service);
    }

    #[test]
    fn missing_identity_is_anonymous() {
        assert_eq!(kind(&Principal::default()), ActorKind::Anonymous);
    }

    #[test]
    fn anonymous_principal_is_anonymous() {
        let p = Principal {
            principal_id: Some(""),
            account_id: Some(ANONYMOUS_PRINCIPAL),
            ..typed("AWSAccount")
        };
        assert_eq!(kind(&p), ActorKind::Anonymous);
    }

    #[test]
    fn unknown_type_is_unknown() {
        assert_eq!(kind(&typed("Directory")), ActorKind::Unknown);
        let p = Principal {
            present: true,
            ..Principal::default()
        };
        assert_eq!(kind(&p), ActorKind::Unknown);
    }

    #[test]
    fn session_names() {
        assert_eq!(
            session_name("arn:aws:sts::111122223333:assumed-role/Admins/alice@example.com"),
            Some("alice@example.com")
        );
        assert_eq!(session_name("arn:aws:iam::111122223333:user/Alice"), None);
    }
}
