//! KMS key identity: every way a CloudTrail record names a key, to one canonical key ARN.
//!
//! Order of preference (first that yields something wins):
//! 1. for `CreateKey`, `responseElements.keyMetadata.arn` (the new key);
//! 2. a key ARN in `resources[]` (`arn:PARTITION:kms:REGION:ACCOUNT:key/ID`; old records
//!    omit the resource `type`, so the ARN decides);
//! 3. `requestParameters.keyId` (then `targetKeyId`), `responseElements.keyId`,
//!    `serviceEventDetails.keyId`: a key ARN is kept, a bare key id becomes
//!    `arn:aws:kms:REGION:ACCOUNT:key/ID` (region = `awsRegion`, account = the recipient
//!    account), an alias name becomes the alias ARN;
//! 4. an alias ARN in `resources[]`, or `requestParameters.aliasName`, as the alias ARN.
//!
//! `kms.key.account_uid` is the ARN's account field.

use kmswatch_model::Key;

/// The parts of an ARN: `arn:PARTITION:SERVICE:REGION:ACCOUNT:RESOURCE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Arn<'a> {
    /// `aws`, `aws-cn`, `aws-us-gov`.
    pub partition: &'a str,
    /// `kms`, `iam`, `sts`, ...
    pub service: &'a str,
    /// May be empty (IAM).
    pub region: &'a str,
    /// May be empty (S3).
    pub account: &'a str,
    /// Everything after the fifth colon (`key/ID`, `alias/NAME`, `role/NAME`).
    pub resource: &'a str,
}

/// Split an ARN; `None` when it is not one.
pub fn parse_arn(s: &str) -> Option<Arn<'_>> {
    let mut it = s.splitn(6, ':');
    if it.next()? != "arn" {
        return None;
    }
    let partition = it.next()?;
    let service = it.next()?;
    let region = it.next()?;
    let account = it.next()?;
    let resource = it.next()?;
    if partition.is_empty() || service.is_empty() {
        return None;
    }
    Some(Arn {
        partition,
        service,
        region,
        account,
        resource,
    })
}

/// True for `arn:*:kms:*:*:key/*`.
pub fn is_key_arn(s: &str) -> bool {
    parse_arn(s).is_some_and(|a| a.service == "kms" && a.resource.starts_with("key/"))
}

/// True for `arn:*:kms:*:*:alias/*`.
pub fn is_alias_arn(s: &str) -> bool {
    parse_arn(s).is_some_and(|a| a.service == "kms" && a.resource.starts_with("alias/"))
}

/// The AWS partition of a region (`cn-north-1` -> `aws-cn`).
pub fn partition_of_region(region: &str) -> &'static str {
    if region.starts_with("cn-") {
        "aws-cn"
    } else if region.starts_with("us-gov-") {
        "aws-us-gov"
    } else if region.starts_with("us-iso-") {
        "aws-iso"
    } else if region.starts_with("us-isob-") {
        "aws-iso-b"
    } else {
        "aws"
    }
}

/// Where a record is: region and the account its bare key ids and alias names belong to.
#[derive(Debug, Clone, Copy, Default)]
pub struct Context<'a> {
    /// `awsRegion`.
    pub region: Option<&'a str>,
    /// `recipientAccountId`, else the caller's account.
    pub account: Option<&'a str>,
}

/// A key reference as a caller wrote it (`keyId`): key ARN, alias ARN, bare key id or
/// `alias/NAME`, to a [`Key`] with the most canonical uid that can be built.
pub fn key_from_reference(reference: &str, ctx: Context<'_>) -> Option<Key> {
    let reference = reference.trim();
    if reference.is_empty() {
        return None;
    }
    if let Some(arn) = parse_arn(reference) {
        return Some(key_with_arn(reference.to_string(), arn.account));
    }
    let (kind, id) = match reference.strip_prefix("alias/") {
        Some(_) => ("", reference),
        None => ("key/", reference),
    };
    match (ctx.region, ctx.account) {
        (Some(region), Some(account)) if !region.is_empty() && !account.is_empty() => {
            let uid = format!(
                "arn:{}:kms:{region}:{account}:{kind}{id}",
                partition_of_region(region)
            );
            Some(Key {
                uid,
                version: None,
                account_uid: Some(account.to_string()),
            })
        }
        // Not enough context to build an ARN: keep what the caller wrote.
        _ => Some(Key {
            uid: reference.to_string(),
            version: None,
            account_uid: None,
        }),
    }
}

/// A [`Key`] for an ARN, account taken from the ARN.
pub fn key_with_arn(uid: String, account: &str) -> Key {
    Key {
        account_uid: (!account.is_empty()).then(|| account.to_string()),
        uid,
        version: None,
    }
}

/// The account of a key uid when it is an ARN.
pub fn account_of(uid: &str) -> Option<&str> {
    parse_arn(uid).map(|a| a.account).filter(|a| !a.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    const CTX: Context<'static> = Context {
        region: Some("eu-west-1"),
        account: Some("111122223333"),
    };

    #[test]
    fn arns_are_split() {
        let a = parse_arn("arn:aws:kms:us-east-1:111122223333:key/abc").unwrap();
        assert_eq!(a.partition, "aws");
        assert_eq!(a.service, "kms");
        assert_eq!(a.region, "us-east-1");
        assert_eq!(a.account, "111122223333");
        assert_eq!(a.resource, "key/abc");
        let r = parse_arn("arn:aws:sts::111122223333:assumed-role/R/s:with:colons").unwrap();
        assert_eq!(r.resource, "assumed-role/R/s:with:colons");
        assert!(parse_arn("1234abcd-12ab").is_none());
        assert!(parse_arn("arn:aws:kms").is_none());
        assert!(is_key_arn("arn:aws:kms:us-east-1:111122223333:key/abc"));
        assert!(!is_key_arn("arn:aws:kms:us-east-1:111122223333:alias/abc"));
        assert!(is_alias_arn("arn:aws:kms:us-east-1:111122223333:alias/abc"));
    }

    #[test]
    fn key_arn_is_kept() {
        let k = key_from_reference("arn:aws:kms:us-east-1:444455556666:key/k1", CTX).unwrap();
        assert_eq!(k.uid, "arn:aws:kms:us-east-1:444455556666:key/k1");
        assert_eq!(k.account_uid.as_deref(), Some("444455556666"));
    }

    #[test]
    fn bare_key_id_becomes_arn() {
        let k = key_from_reference("1234abcd-12ab-34cd-56ef-1234567890ab", CTX).unwrap();
        assert_eq!(
            k.uid,
            "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
        );
        assert_eq!(k.account_uid.as_deref(), Some("111122223333"));
        let mrk = key_from_reference("mrk-1234abcd", CTX).unwrap();
        assert_eq!(
            mrk.uid,
            "arn:aws:kms:eu-west-1:111122223333:key/mrk-1234abcd"
        );
    }

    #[test]
    fn alias_name_becomes_alias_arn() {
        let k = key_from_reference("alias/aws/ebs", CTX).unwrap();
        assert_eq!(k.uid, "arn:aws:kms:eu-west-1:111122223333:alias/aws/ebs");
        let a = key_from_reference("arn:aws:kms:eu-west-1:111122223333:alias/x", CTX).unwrap();
        assert_eq!(a.uid, "arn:aws:kms:eu-west-1:111122223333:alias/x");
    }

    #[test]
    fn partitions_follow_the_region() {
        let ctx = Context {
            region: Some("cn-north-1"),
            account: Some("111122223333"),
        };
        let k = key_from_reference("k1", ctx).unwrap();
        assert_eq!(k.uid, "arn:aws-cn:kms:cn-north-1:111122223333:key/k1");
        assert_eq!(partition_of_region("us-gov-west-1"), "aws-us-gov");
        assert_eq!(partition_of_region("us-east-1"), "aws");
    }

    #[test]
    fn without_context_the_reference_is_kept() {
        let k = key_from_reference("k1", Context::default()).unwrap();
        assert_eq!(k.uid, "k1");
        assert_eq!(k.account_uid, None);
        assert!(key_from_reference("  ", CTX).is_none());
    }
}
