//! The normalized event: OCSF API Activity (class 6003) plus the `kms` extension.

use crate::{KmsOperation, Raw};
use serde::{Deserialize, Serialize};

/// OCSF class of every normalized event: API Activity.
pub const API_ACTIVITY_CLASS_UID: u32 = 6003;
/// OCSF category of API Activity: Application Activity.
pub const APPLICATION_ACTIVITY_CATEGORY_UID: u32 = 6;

/// One key-management audit record from any cloud, in the normalized schema.
///
/// Serialized with exactly the dotted field names of `DESIGN.md`; `time` is epoch
/// milliseconds (UTC); `raw` is the provider's original record, byte for byte.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Event {
    /// Always [`API_ACTIVITY_CLASS_UID`] (6003).
    pub class_uid: u32,
    /// Always [`APPLICATION_ACTIVITY_CATEGORY_UID`] (6).
    pub category_uid: u32,
    /// OCSF activity: 1 Create, 2 Read, 3 Update, 4 Delete, 99 Other (from `kms.operation`).
    pub activity_id: u8,
    /// OCSF `type_uid` = class_uid * 100 + activity_id.
    pub type_uid: u32,
    /// Event time, epoch milliseconds UTC.
    pub time: i64,
    /// Where the record came from.
    pub metadata: Metadata,
    /// Cloud, region and account the event belongs to.
    pub cloud: Cloud,
    /// The API call.
    pub api: Api,
    /// `Success` or `Failure`.
    pub status: Status,
    /// The native error code when the call failed (`AccessDenied`, `403`, `PERMISSION_DENIED`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_detail: Option<String>,
    /// Who made the call.
    pub actor: Actor,
    /// Caller network address.
    #[serde(default, skip_serializing_if = "Endpoint::is_empty")]
    pub src_endpoint: Endpoint,
    /// Caller user agent.
    #[serde(default, skip_serializing_if = "HttpRequest::is_empty")]
    pub http_request: HttpRequest,
    /// The key-management extension.
    pub kms: Kms,
    /// The original provider record, untouched.
    pub raw: Raw,
}

impl Event {
    /// A new event with the derived OCSF ids filled in from `kms.operation`.
    ///
    /// The builder-free constructor keeps the derived fields (`activity_id`, `type_uid`)
    /// consistent; normalizers fill in the rest.
    pub fn new(time: i64, operation: KmsOperation, raw: impl Into<Raw>) -> Event {
        let activity_id = operation.activity_id();
        Event {
            class_uid: API_ACTIVITY_CLASS_UID,
            category_uid: APPLICATION_ACTIVITY_CATEGORY_UID,
            activity_id,
            type_uid: API_ACTIVITY_CLASS_UID * 100 + u32::from(activity_id),
            time,
            metadata: Metadata::default(),
            cloud: Cloud::default(),
            api: Api::default(),
            status: Status::Success,
            status_detail: None,
            actor: Actor::default(),
            src_endpoint: Endpoint::default(),
            http_request: HttpRequest::default(),
            kms: Kms {
                operation,
                ..Kms::default()
            },
            raw: raw.into(),
        }
    }
}

/// `metadata.*`
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Metadata {
    /// Native event id: CloudTrail `eventID`, Azure `id` or `correlationId`+time, GCP `insertId`.
    pub uid: String,
    /// The product that wrote the log.
    pub product: Product,
    /// Native format the record was read as (`aws_cloudtrail`, `azure_keyvault`, ...).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub log_format: String,
    /// OCSF schema version this event follows.
    #[serde(default = "ocsf_version")]
    pub version: String,
}

impl Default for Metadata {
    fn default() -> Self {
        Metadata {
            uid: String::new(),
            product: Product::default(),
            log_format: String::new(),
            version: ocsf_version(),
        }
    }
}

fn ocsf_version() -> String {
    OCSF_VERSION.to_string()
}

/// OCSF schema version of the normalized event.
pub const OCSF_VERSION: &str = "1.3.0";

/// `metadata.product.*`
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Product {
    /// `CloudTrail`, `Azure Key Vault`, `Azure Activity`, `Cloud Audit Logs`.
    pub name: String,
    /// `AWS`, `Microsoft`, `Google`.
    pub vendor_name: String,
}

/// `cloud.*`
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Cloud {
    /// `AWS`, `Azure` or `GCP`.
    pub provider: Provider,
    /// Region or location, when the log names one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// AWS account, Azure subscription, GCP project.
    pub account: Account,
}

/// The three clouds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Provider {
    /// Amazon Web Services.
    #[default]
    #[serde(rename = "AWS")]
    Aws,
    /// Microsoft Azure.
    Azure,
    /// Google Cloud.
    #[serde(rename = "GCP")]
    Gcp,
}

impl Provider {
    /// `AWS`, `Azure` or `GCP`.
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Aws => "AWS",
            Provider::Azure => "Azure",
            Provider::Gcp => "GCP",
        }
    }
}

/// An account, subscription or project.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    /// Its id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
}

/// `api.*`
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Api {
    /// The native operation name (`Decrypt`, `KeyUnwrap`, `DestroyCryptoKeyVersion`).
    pub operation: String,
    /// The service that was called.
    pub service: Service,
    /// The native request id, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<Request>,
}

/// `api.service.*`
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Service {
    /// `kms.amazonaws.com`, `Microsoft.KeyVault`, `cloudkms.googleapis.com`, ...
    pub name: String,
}

/// `api.request.*`
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Request {
    /// Native request id.
    pub uid: String,
}

/// `status`
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Status {
    /// The call succeeded.
    #[default]
    Success,
    /// The call failed; `status_detail` holds the native error code.
    Failure,
}

/// `actor.*`
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Actor {
    /// The principal.
    pub user: User,
    /// The cloud service that called on the principal's behalf, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invoked_by: Option<String>,
    /// Computed principal class.
    pub kind: ActorKind,
    /// The session the principal acted in (AWS role sessions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<Session>,
    /// The person behind the principal when a service identity was impersonated
    /// (GCP `serviceAccountDelegationInfo`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub impersonator: Option<User>,
}

/// `actor.user.*`
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// Principal id: ARN, object id, email.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    /// Display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Native principal type (`IAMUser`, `AssumedRole`, `User`, `ServicePrincipal`, ...).
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<String>,
    /// The account the principal belongs to, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<Account>,
}

/// `actor.session.*`
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Session {
    /// What issued the session (the role ARN for an AWS assumed-role session).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// Whether the session was created with MFA, when the log says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_mfa: Option<bool>,
}

/// `actor.kind`: who is behind a call, across clouds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActorKind {
    /// A person: IAM user, federated or SSO session, a UPN token, a Google user.
    Human,
    /// A workload identity: role session, app-only token, service account.
    Service,
    /// The cloud provider itself or one of its managed services acting for the customer.
    CloudService,
    /// The AWS account root user.
    Root,
    /// No authenticated principal.
    Anonymous,
    /// Not enough information to decide.
    #[default]
    Unknown,
}

impl ActorKind {
    /// The serialized name.
    pub fn as_str(self) -> &'static str {
        match self {
            ActorKind::Human => "human",
            ActorKind::Service => "service",
            ActorKind::CloudService => "cloud_service",
            ActorKind::Root => "root",
            ActorKind::Anonymous => "anonymous",
            ActorKind::Unknown => "unknown",
        }
    }
}

/// `src_endpoint.*`
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Endpoint {
    /// Caller address (or the service name CloudTrail writes for service calls).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
}

impl Endpoint {
    fn is_empty(&self) -> bool {
        self.ip.is_none()
    }
}

/// `http_request.*`
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct HttpRequest {
    /// Caller user agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
}

impl HttpRequest {
    fn is_empty(&self) -> bool {
        self.user_agent.is_none()
    }
}

/// `kms.*`: the key-management extension.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Kms {
    /// Canonical operation across clouds.
    pub operation: KmsOperation,
    /// The key acted on, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<Key>,
    /// True when the caller's account differs from the key owner's account.
    pub cross_account: bool,
    /// Pending window of a scheduled deletion or destruction, in days, when the log says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_window_days: Option<u32>,
    /// The principal a grant or IAM binding is given to (AWS CreateGrant `granteePrincipal`,
    /// GCP SetIamPolicy members added), when the log says.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub grantees: Vec<String>,
    /// What a key policy / IAM policy change opens the key to, when the log carries the new
    /// policy (AWS PutKeyPolicy / CreateKey `policy`, GCP SetIamPolicy `policy`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<PolicyChange>,
    /// Name of the vault/secret object for Key Vault secret operations
    /// (`https://VAULT.vault.azure.net/secrets/NAME`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_uid: Option<String>,
    /// Where the event's bytes were read from (source id and location), stamped by the
    /// runtime from the batch it arrived in. Never set from log text: a normalizer does not
    /// read it, so a forged record cannot claim an origin. Absent in `kmswatch normalize`
    /// output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<Origin>,
}

/// `kms.origin`: where an event was read from. The response policy decides from it whether
/// the event's log origin is trusted (see `kmswatch_respond::provenance`).
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Origin {
    /// The configured source id (`cloudtrail`, `files`, ...).
    pub source: String,
    /// The location the bytes came from: `s3://BUCKET/KEY`, `kafka://TOPIC/PARTITION@OFFSET`,
    /// or a file path.
    pub location: String,
}

impl Default for Kms {
    fn default() -> Self {
        Kms {
            operation: KmsOperation::Other,
            key: None,
            cross_account: false,
            pending_window_days: None,
            grantees: Vec::new(),
            policy: None,
            object_uid: None,
            origin: None,
        }
    }
}

/// `kms.policy.*`: what a policy change grants, computed by the normalizer from the new policy.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyChange {
    /// The policy lets anyone use or manage the key: an AWS statement with principal `*` and
    /// no condition narrowing it, or a GCP binding to `allUsers` / `allAuthenticatedUsers`.
    pub public: bool,
    /// Accounts / projects other than the key owner's that the change names (AWS account ids
    /// of policy principals and grantees; GCP project ids of customer service accounts).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub external_accounts: Vec<String>,
}

/// `kms.key.*`
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Key {
    /// Canonical key id: AWS key ARN (or alias ARN when nothing better is known); Azure
    /// `https://VAULT.vault.azure.net/keys/NAME`; GCP
    /// `projects/P/locations/L/keyRings/R/cryptoKeys/K`.
    pub uid: String,
    /// Key version, when the log names one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The account/subscription/project that owns the key, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_uid: Option<String>,
}
