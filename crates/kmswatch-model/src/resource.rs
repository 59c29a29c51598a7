//! One strict grammar for key and vault references, used wherever a name from a log can turn
//! into a network endpoint: the Azure normalizer (which Key Vault hosts become `kms.key.uid`)
//! and the responders (`kmswatch_respond::KeyRef::parse`, which decides where requests go).
//!
//! Pure functions, no I/O. A reference either parses into a typed value whose parts each match
//! the provider's documented grammar, or is refused with a [`ResourceError`] saying which part is
//! wrong. Nothing here "fixes up" input: a host with a user part, an unknown DNS suffix, a port
//! other than an explicit `:443`, a query or fragment in a key id, a region that is not a region
//! name, is refused.
//!
//! - **Azure Key Vault / Managed HSM**: `https://NAME.SUFFIX[:443][/keys|secrets|certificates/
//!   NAME[/VERSION]]`, SUFFIX exactly one of [`AZURE_KEY_VAULT_SUFFIXES`] (public, China and US
//!   Government clouds; vaults and managed HSMs), NAME 3–24 characters of letters, digits and
//!   single hyphens starting with a letter and ending with a letter or digit; object names 1–127
//!   letters, digits and hyphens; versions 32 hex digits. The canonical form is lower-cased
//!   host, no port: `https://kv-prod.vault.azure.net/keys/cmk`. Object names keep their case
//!   (Key Vault compares them case-insensitively; kmswatch keeps what the log wrote).
//! - **AWS KMS**: `arn:PARTITION:kms:REGION:ACCOUNT:key/ID` or `...:alias/NAME`; the partition is
//!   one of [`AWS_PARTITIONS`] and the region must match that partition's region grammar (the
//!   SDK builds the endpoint host from the region, so `eu-west-1.attacker.example` is refused);
//!   ACCOUNT is 12 digits; ID a lower-case UUID or `mrk-` and 32 lower-case hex digits; alias
//!   names `alias/` and 1–250 of `A-Z a-z 0-9 / _ -`.
//! - **Google Cloud KMS**: `projects/P/locations/L/keyRings/R/cryptoKeys/K[/cryptoKeyVersions/N]`
//!   (optionally prefixed with `//cloudkms.googleapis.com/`): P a project id (6–30 of `a-z 0-9 -`,
//!   starting with a letter, or a domain-scoped `example.com:id`) or a project number; L
//!   `global` or a location name; R and K 1–63 of `A-Z a-z 0-9 _ -`; N a positive number.

use std::fmt;

/// Longest input quoted back in an error (the rest is cut).
const QUOTE_MAX: usize = 160;

/// A reference that does not follow its provider's grammar.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what} {input:?}: {reason}")]
pub struct ResourceError {
    /// What was being parsed (`Azure Key Vault URL`, `AWS KMS ARN`, ...).
    pub what: &'static str,
    /// The input, cut to a bounded length.
    pub input: String,
    /// Which part is wrong.
    pub reason: String,
}

impl ResourceError {
    fn new(what: &'static str, input: &str, reason: impl Into<String>) -> ResourceError {
        let input = if input.len() > QUOTE_MAX {
            let mut end = QUOTE_MAX;
            while !input.is_char_boundary(end) {
                end -= 1;
            }
            format!("{}…", &input[..end])
        } else {
            input.to_string()
        };
        ResourceError {
            what,
            input,
            reason: reason.into(),
        }
    }
}

// ------------------------------------------------------------------------------------ Azure

/// The Azure clouds kmswatch knows Key Vault endpoints of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AzureCloud {
    /// Azure (public).
    Public,
    /// Azure operated by 21Vianet (China).
    China,
    /// Azure US Government.
    UsGovernment,
}

/// A vault or a managed HSM pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AzureVaultKind {
    /// A key vault (`NAME.vault.azure.net`).
    Vault,
    /// A managed HSM pool (`NAME.managedhsm.azure.net`).
    ManagedHsm,
}

/// Every Key Vault / Managed HSM data-plane DNS suffix, per cloud (Microsoft's "DNS suffixes
/// for base URL" table). Nothing else is a Key Vault host.
pub const AZURE_KEY_VAULT_SUFFIXES: &[(&str, AzureVaultKind, AzureCloud)] = &[
    ("vault.azure.net", AzureVaultKind::Vault, AzureCloud::Public),
    (
        "managedhsm.azure.net",
        AzureVaultKind::ManagedHsm,
        AzureCloud::Public,
    ),
    ("vault.azure.cn", AzureVaultKind::Vault, AzureCloud::China),
    (
        "managedhsm.azure.cn",
        AzureVaultKind::ManagedHsm,
        AzureCloud::China,
    ),
    (
        "vault.usgovcloudapi.net",
        AzureVaultKind::Vault,
        AzureCloud::UsGovernment,
    ),
    (
        "managedhsm.usgovcloudapi.net",
        AzureVaultKind::ManagedHsm,
        AzureCloud::UsGovernment,
    ),
];

/// A Key Vault or Managed HSM host: `NAME.SUFFIX`, lower-cased.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AzureVaultHost {
    /// The vault or pool name, lower-cased.
    pub name: String,
    /// The DNS suffix (one of [`AZURE_KEY_VAULT_SUFFIXES`]).
    pub suffix: &'static str,
    /// Vault or managed HSM.
    pub kind: AzureVaultKind,
    /// Which cloud.
    pub cloud: AzureCloud,
}

impl AzureVaultHost {
    /// `NAME.SUFFIX`.
    pub fn host(&self) -> String {
        format!("{}.{}", self.name, self.suffix)
    }

    /// `https://NAME.SUFFIX` (no trailing slash, no port).
    pub fn base_url(&self) -> String {
        format!("https://{}.{}", self.name, self.suffix)
    }

    /// The OAuth resource (audience) a token for this host must be issued for:
    /// `https://vault.azure.net`, `https://managedhsm.azure.net`, ...
    pub fn token_resource(&self) -> String {
        format!("https://{}", self.suffix)
    }
}

impl fmt::Display for AzureVaultHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.name, self.suffix)
    }
}

/// A vault or managed HSM name: 3–24 ASCII letters, digits and hyphens, starting with a
/// letter, ending with a letter or digit, no two hyphens in a row.
pub fn is_azure_vault_name(s: &str) -> bool {
    let b = s.as_bytes();
    (3..=24).contains(&b.len())
        && b.first().is_some_and(u8::is_ascii_alphabetic)
        && b.last().is_some_and(u8::is_ascii_alphanumeric)
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
        && !s.contains("--")
}

/// A key, secret or certificate name: 1–127 ASCII letters, digits and hyphens.
pub fn is_azure_object_name(s: &str) -> bool {
    (1..=127).contains(&s.len()) && s.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-')
}

/// An object version: 32 hex digits.
pub fn is_azure_object_version(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|c| c.is_ascii_hexdigit())
}

/// Parse the authority part of a URL (`HOST` or `HOST:443`) as a Key Vault / Managed HSM host.
/// Refused: user info (`a@b`), any port but 443, a suffix not in [`AZURE_KEY_VAULT_SUFFIXES`]
/// (matched as whole labels: `x.vault.azure.net.attacker.example` is not one), a name that is
/// not a vault name (so no further labels: `a.b.vault.azure.net` is refused).
pub fn parse_azure_vault_authority(authority: &str) -> Result<AzureVaultHost, ResourceError> {
    const WHAT: &str = "Azure Key Vault host";
    let bad = |why: &str| Err(ResourceError::new(WHAT, authority, why));
    if authority.contains('@') {
        return bad("user info is not allowed");
    }
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (authority, None),
    };
    if let Some(p) = port {
        if p != "443" {
            return bad("only the HTTPS port 443 may be named");
        }
    }
    if !host.is_ascii() {
        return bad("the host is not ASCII");
    }
    let lower = host.to_ascii_lowercase();
    let Some((name, suffix)) = lower.split_once('.') else {
        return bad("not NAME.SUFFIX");
    };
    let Some(&(suffix, kind, cloud)) = AZURE_KEY_VAULT_SUFFIXES.iter().find(|s| s.0 == suffix)
    else {
        return bad(
            "the DNS suffix is not a Key Vault or Managed HSM suffix (vault.azure.net, managedhsm.azure.net, vault.azure.cn, managedhsm.azure.cn, vault.usgovcloudapi.net, managedhsm.usgovcloudapi.net)",
        );
    };
    if !is_azure_vault_name(name) {
        return bad("the vault name must be 3-24 letters, digits and single hyphens, starting with a letter and ending with a letter or digit");
    }
    Ok(AzureVaultHost {
        name: name.to_string(),
        suffix,
        kind,
        cloud,
    })
}

/// The object collections of a vault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AzureCollection {
    /// `/keys`
    Keys,
    /// `/secrets`
    Secrets,
    /// `/certificates`
    Certificates,
}

impl AzureCollection {
    /// The path segment.
    pub fn as_str(self) -> &'static str {
        match self {
            AzureCollection::Keys => "keys",
            AzureCollection::Secrets => "secrets",
            AzureCollection::Certificates => "certificates",
        }
    }

    fn parse(s: &str) -> Option<AzureCollection> {
        [
            AzureCollection::Keys,
            AzureCollection::Secrets,
            AzureCollection::Certificates,
        ]
        .into_iter()
        .find(|c| c.as_str() == s)
    }
}

/// A Key Vault object id: `https://HOST/COLLECTION/NAME[/VERSION]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AzureObjectId {
    /// The vault.
    pub vault: AzureVaultHost,
    /// Keys, secrets or certificates.
    pub collection: AzureCollection,
    /// The object name (as written).
    pub name: String,
    /// The version (lower-cased), when named.
    pub version: Option<String>,
}

impl AzureObjectId {
    /// The canonical id without version: `https://host/keys/NAME`.
    pub fn uid(&self) -> String {
        format!(
            "{}/{}/{}",
            self.vault.base_url(),
            self.collection.as_str(),
            self.name
        )
    }
}

/// Parse a Key Vault object id strictly: `https://NAME.SUFFIX[:443]/COLLECTION/NAME[/VERSION]`.
/// Scheme `https` only; no query, fragment, empty segment or trailing slash.
pub fn parse_azure_object_id(s: &str) -> Result<AzureObjectId, ResourceError> {
    const WHAT: &str = "Azure Key Vault object id";
    let bad = |why: &str| Err(ResourceError::new(WHAT, s, why));
    let Some(rest) = strip_prefix_ci(s, "https://") else {
        return bad("must start with https://");
    };
    if rest.contains(['?', '#']) {
        return bad("a query or fragment is not part of an object id");
    }
    if rest.contains(['\\', '%']) || rest.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return bad("escapes, backslashes, spaces and control characters are not allowed");
    }
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let vault = parse_azure_vault_authority(authority)
        .map_err(|e| ResourceError::new(WHAT, s, e.reason))?;
    let segs: Vec<&str> = path.split('/').collect();
    let (coll, name, version) = match segs.as_slice() {
        [c, n] => (*c, *n, None),
        [c, n, v] => (*c, *n, Some(*v)),
        _ => return bad("the path must be /keys|secrets|certificates/NAME[/VERSION]"),
    };
    let Some(collection) = AzureCollection::parse(&coll.to_ascii_lowercase()) else {
        return bad("the collection must be keys, secrets or certificates");
    };
    if !is_azure_object_name(name) {
        return bad("the object name must be 1-127 letters, digits and hyphens");
    }
    if let Some(v) = version {
        if !is_azure_object_version(v) {
            return bad("the version must be 32 hex digits");
        }
    }
    Ok(AzureObjectId {
        vault,
        collection,
        name: name.to_string(),
        version: version.map(str::to_ascii_lowercase),
    })
}

fn strip_prefix_ci<'s>(s: &'s str, p: &str) -> Option<&'s str> {
    if s.len() >= p.len() && s.is_char_boundary(p.len()) && s[..p.len()].eq_ignore_ascii_case(p) {
        Some(&s[p.len()..])
    } else {
        None
    }
}

// -------------------------------------------------------------------------------------- AWS

/// AWS partitions and the prefix every region of the partition starts with (from the SDKs'
/// partition table: `aws` regions are `(us|eu|ap|sa|ca|me|af|il|mx)-NAME-N`, `aws-us-gov`
/// `us-gov-NAME-N`, ...).
pub const AWS_PARTITIONS: &[(&str, &[&str])] = &[
    (
        "aws",
        &["us", "eu", "ap", "sa", "ca", "me", "af", "il", "mx"],
    ),
    ("aws-cn", &["cn"]),
    ("aws-us-gov", &["us-gov"]),
    ("aws-iso", &["us-iso"]),
    ("aws-iso-b", &["us-isob"]),
    ("aws-iso-e", &["eu-isoe"]),
    ("aws-iso-f", &["us-isof"]),
    ("aws-eusc", &["eusc-de"]),
];

/// The partition a region belongs to, when the string is a region name: `PREFIX-NAME-N` with
/// PREFIX one of the partition's prefixes, NAME 1–20 lower-case letters and N 1–2 digits.
pub fn aws_partition_of_region(region: &str) -> Option<&'static str> {
    let (rest, num) = region.rsplit_once('-')?;
    if !(1..=2).contains(&num.len()) || !num.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (prefix, name) = rest.rsplit_once('-')?;
    if !(1..=20).contains(&name.len()) || !name.bytes().all(|b| b.is_ascii_lowercase()) {
        return None;
    }
    AWS_PARTITIONS
        .iter()
        .find(|(_, prefixes)| prefixes.contains(&prefix))
        .map(|(p, _)| *p)
}

/// A region name of any partition (see [`aws_partition_of_region`]).
pub fn is_aws_region(s: &str) -> bool {
    aws_partition_of_region(s).is_some()
}

/// A 12-digit AWS account id.
pub fn is_aws_account_id(s: &str) -> bool {
    s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit())
}

/// A KMS key id: a lower-case UUID (`1234abcd-12ab-34cd-56ef-1234567890ab`) or a multi-Region
/// key id (`mrk-` and 32 lower-case hex digits).
pub fn is_aws_key_id(s: &str) -> bool {
    let hex = |p: &str, n: usize| {
        p.len() == n
            && p.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    if let Some(m) = s.strip_prefix("mrk-") {
        return hex(m, 32);
    }
    let parts: Vec<&str> = s.split('-').collect();
    matches!(parts.as_slice(), [a, b, c, d, e]
        if hex(a, 8) && hex(b, 4) && hex(c, 4) && hex(d, 4) && hex(e, 12))
}

/// A KMS alias name: `alias/` followed by 1–250 of `A-Z a-z 0-9 / _ -` (the API's
/// `AliasName` grammar without `:`), not ending with `/`.
pub fn is_aws_alias_name(s: &str) -> bool {
    let Some(n) = s.strip_prefix("alias/") else {
        return false;
    };
    (1..=250).contains(&n.len())
        && !n.ends_with('/')
        && !n.starts_with('/')
        && !n.contains("//")
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'_' | b'-'))
}

/// What a KMS reference names.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum AwsKmsResource {
    /// `key/ID`: the key id.
    Key(String),
    /// `alias/NAME`: the alias, with its `alias/` prefix.
    Alias(String),
}

impl AwsKmsResource {
    /// `key/ID` or `alias/NAME`.
    pub fn path(&self) -> String {
        match self {
            AwsKmsResource::Key(id) => format!("key/{id}"),
            AwsKmsResource::Alias(a) => a.clone(),
        }
    }

    /// The key id or alias name as KMS takes it in `KeyId` (`1234...`, `alias/NAME`).
    pub fn key_id(&self) -> &str {
        match self {
            AwsKmsResource::Key(id) | AwsKmsResource::Alias(id) => id,
        }
    }
}

/// A KMS key or alias ARN: `arn:PARTITION:kms:REGION:ACCOUNT:key/ID|alias/NAME`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AwsKmsArn {
    /// `aws`, `aws-cn`, `aws-us-gov`, ...
    pub partition: &'static str,
    /// The region (matches the partition).
    pub region: String,
    /// The 12-digit account.
    pub account: String,
    /// Key or alias.
    pub resource: AwsKmsResource,
}

impl AwsKmsArn {
    /// The ARN, canonical.
    pub fn arn(&self) -> String {
        format!(
            "arn:{}:kms:{}:{}:{}",
            self.partition,
            self.region,
            self.account,
            self.resource.path()
        )
    }
}

impl fmt::Display for AwsKmsArn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.arn())
    }
}

/// Parse a KMS key or alias ARN strictly (see the module docs).
pub fn parse_aws_kms_arn(s: &str) -> Result<AwsKmsArn, ResourceError> {
    const WHAT: &str = "AWS KMS ARN";
    let bad = |why: &str| Err(ResourceError::new(WHAT, s, why));
    let parts: Vec<&str> = s.splitn(6, ':').collect();
    let [arn, partition, service, region, account, resource] = parts.as_slice() else {
        return bad("an AWS KMS ARN is arn:PARTITION:kms:REGION:ACCOUNT:key/ID or alias/NAME");
    };
    if *arn != "arn" {
        return bad("must start with arn:");
    }
    let Some(&(partition, _)) = AWS_PARTITIONS.iter().find(|(p, _)| p == partition) else {
        return bad("unknown partition (aws, aws-cn, aws-us-gov, aws-iso, aws-iso-b, aws-iso-e, aws-iso-f, aws-eusc)");
    };
    if *service != "kms" {
        return bad("the service is not kms");
    }
    match aws_partition_of_region(region) {
        Some(p) if p == partition => {}
        Some(_) => return bad("the region is not in the ARN's partition"),
        None => return bad("the region is not a region name (PREFIX-NAME-N)"),
    }
    if !is_aws_account_id(account) {
        return bad("the account must be 12 digits");
    }
    let resource = if let Some(id) = resource.strip_prefix("key/") {
        if !is_aws_key_id(id) {
            return bad(
                "the key id must be a lower-case UUID or mrk- and 32 lower-case hex digits",
            );
        }
        AwsKmsResource::Key(id.to_string())
    } else if resource.starts_with("alias/") {
        if !is_aws_alias_name(resource) {
            return bad("the alias must be alias/ and 1-250 of A-Z a-z 0-9 / _ -");
        }
        AwsKmsResource::Alias(resource.to_string())
    } else {
        return bad("the resource must be key/ID or alias/NAME");
    };
    Ok(AwsKmsArn {
        partition,
        region: region.to_string(),
        account: account.to_string(),
        resource,
    })
}

/// A KMS key reference as a person or a log may give it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum AwsKeyRef {
    /// A full key or alias ARN.
    Arn(AwsKmsArn),
    /// A bare key id or `alias/NAME` (the region and account come from configuration).
    Bare(AwsKmsResource),
}

/// Parse a KMS key ARN, alias ARN, bare key id or `alias/NAME`.
pub fn parse_aws_key_ref(s: &str) -> Result<AwsKeyRef, ResourceError> {
    if s.starts_with("arn:") {
        return parse_aws_kms_arn(s).map(AwsKeyRef::Arn);
    }
    if is_aws_key_id(s) {
        return Ok(AwsKeyRef::Bare(AwsKmsResource::Key(s.to_string())));
    }
    if is_aws_alias_name(s) {
        return Ok(AwsKeyRef::Bare(AwsKmsResource::Alias(s.to_string())));
    }
    Err(ResourceError::new(
        "AWS KMS key id",
        s,
        "not a key ARN, alias ARN, key id (UUID or mrk-...) or alias/NAME",
    ))
}

// -------------------------------------------------------------------------------------- GCP

/// A project id (`kmswatch-demo`: 6–30 of `a-z 0-9 -`, starting with a letter, not ending with
/// a hyphen), a domain-scoped project id (`example.com:my-project`) or a project number.
pub fn is_gcp_project(s: &str) -> bool {
    if !s.is_empty() && s.len() <= 20 && s.bytes().all(|b| b.is_ascii_digit()) {
        return !s.starts_with('0');
    }
    let id = match s.split_once(':') {
        Some((domain, id)) => {
            let domain_ok = (1..=253).contains(&domain.len())
                && domain.split('.').count() >= 2
                && domain.split('.').all(|l| {
                    (1..=63).contains(&l.len())
                        && l.bytes()
                            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                        && !l.starts_with('-')
                        && !l.ends_with('-')
                });
            if !domain_ok {
                return false;
            }
            id
        }
        None => s,
    };
    let b = id.as_bytes();
    (6..=30).contains(&b.len())
        && b.first().is_some_and(u8::is_ascii_lowercase)
        && b.last()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
}

/// A Cloud KMS location: `global`, or 1–63 of `a-z 0-9 -` starting with a letter and ending
/// with a letter or digit (`us-central1`, `europe`, `nam-eur-asia1`).
pub fn is_gcp_location(s: &str) -> bool {
    let b = s.as_bytes();
    (1..=63).contains(&b.len())
        && b.first().is_some_and(u8::is_ascii_lowercase)
        && b.last()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
}

/// A key ring or crypto key id: `[a-zA-Z0-9_-]{1,63}`.
pub fn is_gcp_kms_id(s: &str) -> bool {
    (1..=63).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// A crypto key version id: a positive decimal number (at most 20 digits).
pub fn is_gcp_version(s: &str) -> bool {
    (1..=20).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit()) && !s.starts_with('0')
}

/// A Cloud KMS crypto key (and optional version) resource name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct GcpCryptoKeyName {
    /// Project id or number.
    pub project: String,
    /// Location.
    pub location: String,
    /// Key ring id.
    pub key_ring: String,
    /// Crypto key id.
    pub crypto_key: String,
    /// Crypto key version, when named.
    pub version: Option<String>,
}

impl GcpCryptoKeyName {
    /// `projects/P/locations/L/keyRings/R/cryptoKeys/K` (without version).
    pub fn name(&self) -> String {
        format!(
            "projects/{}/locations/{}/keyRings/{}/cryptoKeys/{}",
            self.project, self.location, self.key_ring, self.crypto_key
        )
    }
}

/// Parse `projects/P/locations/L/keyRings/R/cryptoKeys/K[/cryptoKeyVersions/N]`, optionally
/// prefixed with `//cloudkms.googleapis.com/`.
pub fn parse_gcp_crypto_key(s: &str) -> Result<GcpCryptoKeyName, ResourceError> {
    const WHAT: &str = "Cloud KMS key name";
    let bad = |why: &str| Err(ResourceError::new(WHAT, s, why));
    let body = s.strip_prefix("//cloudkms.googleapis.com/").unwrap_or(s);
    let segs: Vec<&str> = body.split('/').collect();
    let (p, l, r, k, v) = match segs.as_slice() {
        ["projects", p, "locations", l, "keyRings", r, "cryptoKeys", k] => (*p, *l, *r, *k, None),
        ["projects", p, "locations", l, "keyRings", r, "cryptoKeys", k, "cryptoKeyVersions", v] => {
            (*p, *l, *r, *k, Some(*v))
        }
        _ => {
            return bad(
                "a Cloud KMS key is projects/P/locations/L/keyRings/R/cryptoKeys/K[/cryptoKeyVersions/N]",
            )
        }
    };
    if !is_gcp_project(p) {
        return bad("the project is not a project id or number");
    }
    if !is_gcp_location(l) {
        return bad("the location is not a location name");
    }
    if !is_gcp_kms_id(r) || !is_gcp_kms_id(k) {
        return bad("key ring and key ids are 1-63 of A-Z a-z 0-9 _ -");
    }
    if let Some(v) = v {
        if !is_gcp_version(v) {
            return bad("the version must be a positive number");
        }
    }
    Ok(GcpCryptoKeyName {
        project: p.to_string(),
        location: l.to_string(),
        key_ring: r.to_string(),
        crypto_key: k.to_string(),
        version: v.map(str::to_string),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const VER: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn azure_object_ids() {
        let ok: &[(&str, &str, Option<&str>)] = &[
            (
                "https://kv-prod.vault.azure.net/keys/cmk",
                "https://kv-prod.vault.azure.net/keys/cmk",
                None,
            ),
            (
                "HTTPS://KV-Prod.Vault.Azure.Net:443/keys/CMK-1/0123456789ABCDEF0123456789ABCDEF",
                "https://kv-prod.vault.azure.net/keys/CMK-1",
                Some(VER),
            ),
            (
                "https://hsm1.managedhsm.azure.net/keys/k",
                "https://hsm1.managedhsm.azure.net/keys/k",
                None,
            ),
            (
                "https://kvc.vault.azure.cn/secrets/s",
                "https://kvc.vault.azure.cn/secrets/s",
                None,
            ),
            (
                "https://kvg.vault.usgovcloudapi.net/certificates/c",
                "https://kvg.vault.usgovcloudapi.net/certificates/c",
                None,
            ),
            (
                "https://hsm2.managedhsm.usgovcloudapi.net/keys/k",
                "https://hsm2.managedhsm.usgovcloudapi.net/keys/k",
                None,
            ),
            (
                "https://hsm3.managedhsm.azure.cn/keys/k",
                "https://hsm3.managedhsm.azure.cn/keys/k",
                None,
            ),
        ];
        for (input, uid, version) in ok {
            let id = parse_azure_object_id(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(&id.uid(), uid, "{input}");
            assert_eq!(id.version.as_deref(), *version, "{input}");
        }
        let hsm = parse_azure_object_id("https://hsm1.managedhsm.azure.net/keys/k").unwrap();
        assert_eq!(hsm.vault.kind, AzureVaultKind::ManagedHsm);
        assert_eq!(hsm.vault.token_resource(), "https://managedhsm.azure.net");
        let cn = parse_azure_object_id("https://kvc.vault.azure.cn/keys/k").unwrap();
        assert_eq!(cn.vault.cloud, AzureCloud::China);

        let bad: &[&str] = &[
            // The forms from the issue.
            "https://x.vault.attacker.example/keys/k",
            "https://localhost?x.vault.azure.net/keys/k",
            "https://kv.vault.x@host/keys/k",
            "https://kv.vault.azure.net@attacker.example/keys/k",
            "https://user:pw@kv.vault.azure.net/keys/k",
            // Suffix tricks.
            "https://kv.vault.azure.net.attacker.example/keys/k",
            "https://kv.vault.azure.net./keys/k",
            "https://a.b.vault.azure.net/keys/k",
            "https://kv.vaultcore.azure.net/keys/k",
            "https://kv.vault.microsoftazure.de/keys/k",
            "https://vault.azure.net/keys/k",
            "https://.vault.azure.net/keys/k",
            // Ports, schemes, queries, fragments.
            "https://kv.vault.azure.net:8443/keys/k",
            "https://kv.vault.azure.net:/keys/k",
            "http://kv.vault.azure.net/keys/k",
            "kv.vault.azure.net/keys/k",
            "https://kv.vault.azure.net/keys/k?api-version=7.4",
            "https://kv.vault.azure.net/keys/k#x",
            "https://kv.vault.azure.net/keys/k/",
            "https://kv.vault.azure.net//keys/k",
            "https://kv.vault.azure.net/keys/k/v1",
            "https://kv.vault.azure.net/keys/k/0123/extra",
            "https://kv.vault.azure.net/keys",
            "https://kv.vault.azure.net",
            "https://kv.vault.azure.net/storage/k",
            "https://kv.vault.azure.net/keys/../k",
            "https://kv.vault.azure.net/keys/k%2f..",
            "https://kv.vault.azure.net/keys/k\\x",
            "https://kv.vault.azure.net/keys/a b",
            "https://kv.vault.azure.net/keys/k_1",
            "https://kv\u{0130}.vault.azure.net/keys/k",
            // Vault names.
            "https://ab.vault.azure.net/keys/k",
            "https://1kv.vault.azure.net/keys/k",
            "https://kv-.vault.azure.net/keys/k",
            "https://k--v.vault.azure.net/keys/k",
            "https://abcdefghijklmnopqrstuvwxy.vault.azure.net/keys/k",
            "",
        ];
        for input in bad {
            assert!(
                parse_azure_object_id(input).is_err(),
                "{input:?} must be refused"
            );
        }
        let long_name = "k".repeat(128);
        assert!(
            parse_azure_object_id(&format!("https://kv1.vault.azure.net/keys/{long_name}"))
                .is_err()
        );
        assert!(parse_azure_object_id(&format!(
            "https://kv1.vault.azure.net/keys/{}",
            &long_name[1..]
        ))
        .is_ok());
    }

    #[test]
    fn azure_authorities() {
        assert_eq!(
            parse_azure_vault_authority("KV1.VAULT.AZURE.NET:443")
                .unwrap()
                .base_url(),
            "https://kv1.vault.azure.net"
        );
        for a in [
            "kv1.vault.azure.net:80",
            "kv1.vault.azure.net:443:443",
            "a@kv1.vault.azure.net",
            "kv1.vault.azure.net.evil",
            "[::1]",
            "127.0.0.1",
            "localhost",
        ] {
            assert!(parse_azure_vault_authority(a).is_err(), "{a}");
        }
        assert!(is_azure_vault_name("abc"));
        assert!(is_azure_vault_name("a-b-c-1"));
        assert!(is_azure_vault_name(&"a".repeat(24)));
        assert!(!is_azure_vault_name(&"a".repeat(25)));
    }

    #[test]
    fn aws_arns() {
        let key = "1234abcd-12ab-34cd-56ef-1234567890ab";
        let mrk = "mrk-1234abcd12ab34cd56ef1234567890ab";
        for (arn, partition, region) in [
            (
                format!("arn:aws:kms:eu-west-1:111122223333:key/{key}"),
                "aws",
                "eu-west-1",
            ),
            (
                format!("arn:aws:kms:il-central-1:111122223333:key/{mrk}"),
                "aws",
                "il-central-1",
            ),
            (
                format!("arn:aws-cn:kms:cn-north-1:111122223333:key/{key}"),
                "aws-cn",
                "cn-north-1",
            ),
            (
                format!("arn:aws-us-gov:kms:us-gov-west-1:111122223333:key/{key}"),
                "aws-us-gov",
                "us-gov-west-1",
            ),
            (
                format!("arn:aws-iso-b:kms:us-isob-east-1:111122223333:key/{key}"),
                "aws-iso-b",
                "us-isob-east-1",
            ),
            (
                format!("arn:aws-eusc:kms:eusc-de-east-1:111122223333:key/{key}"),
                "aws-eusc",
                "eusc-de-east-1",
            ),
            (
                "arn:aws:kms:us-east-1:111122223333:alias/prod/app_key-1".to_string(),
                "aws",
                "us-east-1",
            ),
        ] {
            let a = parse_aws_kms_arn(&arn).unwrap_or_else(|e| panic!("{arn}: {e}"));
            assert_eq!(a.partition, partition);
            assert_eq!(a.region, region);
            assert_eq!(a.account, "111122223333");
            assert_eq!(a.arn(), arn, "canonical form is the input");
        }
        let bad = [
            format!("arn:aws:kms:eu-west-1.attacker.example:111122223333:key/{key}"),
            format!("arn:aws:kms:eu-west-1/x:111122223333:key/{key}"),
            format!("arn:aws:kms:localhost:111122223333:key/{key}"),
            format!("arn:aws:kms:us-gov-west-1:111122223333:key/{key}"),
            format!("arn:aws-cn:kms:eu-west-1:111122223333:key/{key}"),
            format!("arn:aws:kms:EU-WEST-1:111122223333:key/{key}"),
            format!("arn:aws:kms:eu-west-123:111122223333:key/{key}"),
            format!("arn:aws:kms:xx-west-1:111122223333:key/{key}"),
            format!("arn:aws:kms::111122223333:key/{key}"),
            format!("arn:evil:kms:eu-west-1:111122223333:key/{key}"),
            format!("arn:aws:s3:eu-west-1:111122223333:key/{key}"),
            format!("arn:aws:kms:eu-west-1:11112222333:key/{key}"),
            format!("arn:aws:kms:eu-west-1:1111222233334:key/{key}"),
            format!(
                "arn:aws:kms:eu-west-1:111122223333:key/{}",
                key.to_uppercase()
            ),
            "arn:aws:kms:eu-west-1:111122223333:key/k1".to_string(),
            "arn:aws:kms:eu-west-1:111122223333:key/mrk-123".to_string(),
            format!("arn:aws:kms:eu-west-1:111122223333:key/{key}/x"),
            format!("arn:aws:kms:eu-west-1:111122223333:key/{key}:x"),
            "arn:aws:kms:eu-west-1:111122223333:alias/".to_string(),
            "arn:aws:kms:eu-west-1:111122223333:alias/a b".to_string(),
            "arn:aws:kms:eu-west-1:111122223333:alias/a?b".to_string(),
            "arn:aws:kms:eu-west-1:111122223333:alias/a/".to_string(),
            format!(
                "arn:aws:kms:eu-west-1:111122223333:alias/{}",
                "a".repeat(251)
            ),
            "arn:aws:kms:eu-west-1:111122223333:grant/x".to_string(),
            "arn:aws:kms:eu-west-1:111122223333".to_string(),
            String::new(),
        ];
        for arn in bad {
            assert!(parse_aws_kms_arn(&arn).is_err(), "{arn:?} must be refused");
        }
        assert_eq!(
            parse_aws_key_ref(key),
            Ok(AwsKeyRef::Bare(AwsKmsResource::Key(key.into())))
        );
        assert_eq!(
            parse_aws_key_ref("alias/app"),
            Ok(AwsKeyRef::Bare(AwsKmsResource::Alias("alias/app".into())))
        );
        for s in ["k1", "alias", "alias/", "../x", "key/abc"] {
            assert!(parse_aws_key_ref(s).is_err(), "{s}");
        }
        assert!(is_aws_region("ap-southeast-5"));
        assert!(is_aws_region("us-isof-south-1"));
        assert!(is_aws_region("eu-isoe-west-1"));
        assert!(!is_aws_region("us-east-1 "));
        assert!(!is_aws_region("us-east1"));
    }

    #[test]
    fn gcp_names() {
        let n = parse_gcp_crypto_key(
            "projects/kmswatch-demo/locations/europe-west1/keyRings/prod/cryptoKeys/app_key-1/cryptoKeyVersions/12",
        )
        .unwrap();
        assert_eq!(
            n.name(),
            "projects/kmswatch-demo/locations/europe-west1/keyRings/prod/cryptoKeys/app_key-1"
        );
        assert_eq!(n.version.as_deref(), Some("12"));
        for ok in [
            "//cloudkms.googleapis.com/projects/kmswatch-demo/locations/global/keyRings/r/cryptoKeys/k",
            "projects/123/locations/us/keyRings/r/cryptoKeys/k",
            "projects/example.com:my-project/locations/nam-eur-asia1/keyRings/r/cryptoKeys/k",
        ] {
            assert!(parse_gcp_crypto_key(ok).is_ok(), "{ok}");
        }
        for bad in [
            "projects/p/locations/global/keyRings/r/cryptoKeys/k",
            "projects/Kmswatch-demo/locations/global/keyRings/r/cryptoKeys/k",
            "projects/kmswatch-demo/locations/Global/keyRings/r/cryptoKeys/k",
            "projects/kmswatch-demo/locations/global/keyRings/r.x/cryptoKeys/k",
            "projects/kmswatch-demo/locations/global/keyRings/r/cryptoKeys/k/",
            "projects/kmswatch-demo/locations/global/keyRings/r/cryptoKeys/k?x",
            "projects/kmswatch-demo/locations/global/keyRings/r/cryptoKeys/k/cryptoKeyVersions/0",
            "projects/kmswatch-demo/locations/global/keyRings/r/cryptoKeys/k/cryptoKeyVersions/1a",
            "projects/kmswatch-demo/locations/global/keyRings/r/cryptoKeys/../k",
            "projects/kmswatch-demo/locations/global/keyRings/r",
            "https://evil/projects/kmswatch-demo/locations/global/keyRings/r/cryptoKeys/k",
            "projects/evil@x.com:proj-ab/locations/global/keyRings/r/cryptoKeys/k",
            "projects/kmswatch-demo/locations/global/keyRings//cryptoKeys/k",
            "",
        ] {
            assert!(
                parse_gcp_crypto_key(bad).is_err(),
                "{bad:?} must be refused"
            );
        }
        let long = "r".repeat(64);
        assert!(parse_gcp_crypto_key(&format!(
            "projects/kmswatch-demo/locations/global/keyRings/{long}/cryptoKeys/k"
        ))
        .is_err());
    }

    #[test]
    fn errors_quote_a_bounded_input() {
        let long = format!("https://{}.vault.azure.net/keys/k", "é".repeat(500));
        let e = parse_azure_object_id(&long).unwrap_err();
        assert!(e.input.chars().count() <= QUOTE_MAX + 1);
        assert!(e
            .to_string()
            .starts_with("invalid Azure Key Vault object id"));
    }
}
