//! What a KMS key policy or grant opens the key to: `kms.policy` and `kms.grantees`.
//!
//! ## Key policies (`PutKeyPolicy`, `CreateKey`, `ReplicateKey`)
//!
//! The new policy is `requestParameters.policy`: CloudTrail writes it as a JSON *string*
//! holding the policy document; some exporters and hand-written events write the document as
//! an object. Both are read. When the policy is absent, empty, not JSON, or has no
//! `Statement`, `kms.policy` stays unset: an odd policy never fails the event.
//!
//! Only `Allow` statements count (`Deny` only narrows). A statement is read as:
//!
//! - **public** when its `Principal` is `"*"`, `{"AWS": "*"}` or an `AWS` list containing
//!   `"*"` (or it uses `NotPrincipal` with `Allow`, which grants everyone but the listed
//!   principals), **and** it has no `Condition` naming a key that restricts who the caller
//!   is. Restricting keys (case-insensitive, under any operator, including
//!   `ForAnyValue:`/`ForAllValues:` forms): `aws:PrincipalOrgID`, `aws:PrincipalOrgPaths`,
//!   `aws:PrincipalAccount`, `aws:PrincipalArn`, `kms:CallerAccount`, `kms:ViaService`,
//!   `aws:SourceAccount`, `aws:SourceArn`. Any other condition (encryption context, grant
//!   constraints, source IP, ...) leaves the statement public. The value of a restricting
//!   condition is not judged: `aws:PrincipalAccount` = `*` still counts as restricting.
//! - **external accounts**: the 12-digit account ids of its `AWS` principals
//!   (`arn:PARTITION:iam::ACCOUNT:…`, `arn:PARTITION:sts::ACCOUNT:…`, or a bare account id)
//!   other than the key owner's. `Service` and `Federated` principals are not accounts.
//!
//! `kms.policy.public` is true when any statement is public; `external_accounts` is the
//! union over all Allow statements, deduplicated and sorted. The owner is the key ARN's
//! account, else `recipientAccountId`, else the caller's account; when none is known every
//! account named is reported (a detection is better missed by no one).
//!
//! ## Grants (`CreateGrant`)
//!
//! `kms.grantees` = `requestParameters.granteePrincipal`, then `retiringPrincipal` when
//! present and different. `kms.policy` = `{public: false, external_accounts}` with the
//! accounts of those principals (ARNs, bare account ids, and the `ACCOUNT:aws:…` form EC2
//! writes for EBS grants) other than the owner's. Service principals
//! (`s3.amazonaws.com`) are not accounts. A `CreateGrant` without a grantee (a failed call
//! that logged no parameters) leaves both fields unset.

use kmswatch_model::PolicyChange;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;
use std::borrow::Cow;
use std::collections::BTreeSet;

/// Condition keys that narrow who may use a statement with a wildcard principal.
pub const RESTRICTING_CONDITION_KEYS: &[&str] = &[
    "aws:PrincipalOrgID",
    "aws:PrincipalOrgPaths",
    "aws:PrincipalAccount",
    "aws:PrincipalArn",
    "kms:CallerAccount",
    "kms:ViaService",
    "aws:SourceAccount",
    "aws:SourceArn",
];

/// The `requestParameters` fields read here.
#[derive(Debug, Default, Deserialize)]
struct Params<'a> {
    #[serde(borrow, default)]
    policy: Option<&'a RawValue>,
    #[serde(
        rename = "granteePrincipal",
        borrow,
        default,
        deserialize_with = "super::opt_cow"
    )]
    grantee_principal: Option<Cow<'a, str>>,
    #[serde(
        rename = "retiringPrincipal",
        borrow,
        default,
        deserialize_with = "super::opt_cow"
    )]
    retiring_principal: Option<Cow<'a, str>>,
}

/// What a call changes: `(kms.grantees, kms.policy)` for `event_name` given its
/// `requestParameters` bytes and the key owner's account.
pub fn analyze(
    event_name: &str,
    request_parameters: Option<&[u8]>,
    owner: Option<&str>,
) -> (Vec<String>, Option<PolicyChange>) {
    match event_name {
        "PutKeyPolicy" | "CreateKey" | "ReplicateKey" => {
            let p: Params<'_> = super::sub(request_parameters);
            (Vec::new(), p.policy.and_then(|raw| key_policy(raw, owner)))
        }
        "CreateGrant" => {
            let p: Params<'_> = super::sub(request_parameters);
            grant(
                p.grantee_principal.as_deref(),
                p.retiring_principal.as_deref(),
                owner,
            )
        }
        _ => (Vec::new(), None),
    }
}

/// Read a key policy (a JSON string holding the document, or the document itself).
pub fn key_policy(raw: &RawValue, owner: Option<&str>) -> Option<PolicyChange> {
    let text = raw.get().trim();
    let doc: Value = if text.starts_with('"') {
        let inner: String = serde_json::from_str(text).ok()?;
        serde_json::from_str(&inner).ok()?
    } else if text.starts_with('{') {
        serde_json::from_str(text).ok()?
    } else {
        return None;
    };
    let statements: Vec<&Value> = match get_ci(&doc, "Statement")? {
        Value::Array(a) => a.iter().collect(),
        v @ Value::Object(_) => vec![v],
        _ => return None,
    };
    let mut public = false;
    let mut accounts = BTreeSet::new();
    for st in statements {
        let allow = get_ci(st, "Effect")
            .and_then(Value::as_str)
            .is_some_and(|e| e.trim().eq_ignore_ascii_case("Allow"));
        if !allow {
            continue;
        }
        let principal = get_ci(st, "Principal");
        let wildcard =
            principal.is_some_and(is_wildcard_principal) || get_ci(st, "NotPrincipal").is_some();
        if wildcard && !has_restricting_condition(get_ci(st, "Condition")) {
            public = true;
        }
        if let Some(p) = principal {
            for arn in aws_principals(p) {
                if let Some(a) = account_of(arn) {
                    accounts.insert(a.to_string());
                }
            }
        }
    }
    Some(PolicyChange {
        public,
        external_accounts: external(accounts, owner),
    })
}

/// Grantee and retiring principal of a `CreateGrant`.
pub fn grant(
    grantee: Option<&str>,
    retiring: Option<&str>,
    owner: Option<&str>,
) -> (Vec<String>, Option<PolicyChange>) {
    let Some(grantee) = grantee.map(str::trim).filter(|g| !g.is_empty()) else {
        return (Vec::new(), None);
    };
    let mut grantees = vec![grantee.to_string()];
    if let Some(r) = retiring.map(str::trim).filter(|r| !r.is_empty()) {
        if r != grantee {
            grantees.push(r.to_string());
        }
    }
    let accounts = grantees
        .iter()
        .filter_map(|g| account_of(g).or_else(|| ec2_account_prefix(g)))
        .map(str::to_string)
        .collect();
    let change = PolicyChange {
        public: false,
        external_accounts: external(accounts, owner),
    };
    (grantees, Some(change))
}

fn external(accounts: BTreeSet<String>, owner: Option<&str>) -> Vec<String> {
    accounts
        .into_iter()
        .filter(|a| owner.is_none_or(|o| o.trim() != a))
        .collect()
}

/// A field of a JSON object, exact name first, then case-insensitively.
fn get_ci<'v>(v: &'v Value, name: &str) -> Option<&'v Value> {
    let obj = v.as_object()?;
    obj.get(name).or_else(|| {
        obj.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    })
}

/// `"*"`, `{"AWS": "*"}`, `{"AWS": [.., "*", ..]}`.
fn is_wildcard_principal(p: &Value) -> bool {
    match p {
        Value::String(s) => s.trim() == "*",
        Value::Object(_) => aws_principals(p).any(|s| s.trim() == "*"),
        _ => false,
    }
}

/// The `AWS` principals of a `Principal` value (a string principal counts as `AWS`).
fn aws_principals(p: &Value) -> impl Iterator<Item = &str> {
    let list: Vec<&str> = match p {
        Value::String(s) => vec![s.as_str()],
        Value::Object(_) => match get_ci(p, "AWS") {
            Some(Value::String(s)) => vec![s.as_str()],
            Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        },
        _ => Vec::new(),
    };
    list.into_iter()
}

/// True when a `Condition` block names one of [`RESTRICTING_CONDITION_KEYS`].
fn has_restricting_condition(cond: Option<&Value>) -> bool {
    let Some(Value::Object(ops)) = cond else {
        return false;
    };
    ops.values().any(|keys| {
        keys.as_object().is_some_and(|keys| {
            keys.keys().any(|k| {
                RESTRICTING_CONDITION_KEYS
                    .iter()
                    .any(|r| r.eq_ignore_ascii_case(k.trim()))
            })
        })
    })
}

fn is_account_id(s: &str) -> bool {
    s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit())
}

/// The account of an AWS principal: `arn:P:iam::ACCOUNT:…`, `arn:P:sts::ACCOUNT:…`, or a bare
/// 12-digit id. `None` for `*`, service principals and anything else.
pub fn account_of(principal: &str) -> Option<&str> {
    let p = principal.trim();
    if is_account_id(p) {
        return Some(p);
    }
    let arn = super::identity::parse_arn(p)?;
    (matches!(arn.service, "iam" | "sts") && is_account_id(arn.account)).then_some(arn.account)
}

/// `111122223333:aws:ec2-infrastructure:i-…`, the grantee EC2 writes for EBS volume grants.
fn ec2_account_prefix(principal: &str) -> Option<&str> {
    let (account, rest) = principal.trim().split_once(':')?;
    (is_account_id(account) && rest.starts_with("aws:")).then_some(account)
}
