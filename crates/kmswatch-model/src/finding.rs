//! The finding (alert): OCSF Detection Finding (class 2004) plus a small `kmswatch` extension.
//!
//! A finding is what the detection stage hands to the sinks. Its JSON field names are a public
//! contract (SIEM searches and dashboards address them): `finding_info.uid` is deterministic
//! (rule id + group key + window start, hashed with SHA-256), so replaying the same logs gives
//! the same ids and a sink can drop duplicates.

use crate::event::{Account, Actor, Event, Provider};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// OCSF class of a finding: Detection Finding.
pub const DETECTION_FINDING_CLASS_UID: u32 = 2004;
/// OCSF category of a finding: Findings.
pub const FINDINGS_CATEGORY_UID: u32 = 2;
/// Default number of contributing events kept in [`Finding::evidences`].
pub const DEFAULT_EVIDENCE_CAP: usize = 10;

/// One alert: a rule matched one event, or a correlation matched a window of events.
///
/// Compare findings by their JSON form (events carry their raw record, which has no equality).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Finding {
    /// Always [`DETECTION_FINDING_CLASS_UID`] (2004).
    pub class_uid: u32,
    /// Always [`FINDINGS_CATEGORY_UID`] (2).
    pub category_uid: u32,
    /// OCSF activity: 1 Create.
    pub activity_id: u8,
    /// `class_uid * 100 + activity_id` (200401).
    pub type_uid: u32,
    /// When the finding happened: the event time of its last contributing event (= `end_time`),
    /// epoch milliseconds UTC.
    pub time: i64,
    /// Event time of the first contributing event, epoch ms.
    pub start_time: i64,
    /// Event time of the last contributing event, epoch ms.
    pub end_time: i64,
    /// `Informational`, `Low`, `Medium`, `High`, `Critical` (from the rule's `level`).
    pub severity: String,
    /// 1 informational, 2 low, 3 medium, 4 high, 5 critical (0 unknown: the rule has no level).
    pub severity_id: u8,
    /// OCSF finding status: always `New` when kmswatch emits it.
    pub status: String,
    /// 1 (`New`).
    pub status_id: u8,
    /// One sentence an analyst can act on: who did what, how often, on which key, when.
    pub message: String,
    /// What was found, by which rule, from which events.
    pub finding_info: FindingInfo,
    /// The product that produced the finding.
    pub metadata: FindingMetadata,
    /// Cloud and account of the contributing events (the first one's when they differ).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloud: Option<FindingCloud>,
    /// The principal (of the first contributing event).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<Actor>,
    /// The key(s) acted on, distinct, in order of first appearance.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<Resource>,
    /// ATT&CK techniques and tactics from the rule's `attack.*` tags.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attacks: Vec<Attack>,
    /// The contributing normalized events, earliest first, capped (see `evidences_count`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub evidences: Vec<Event>,
    /// How many events contributed (evidences holds at most the configured cap of them).
    pub evidences_count: u64,
    /// How many findings this one stands for (1, or more when repeats were suppressed).
    pub count: u64,
    /// The kmswatch extension: rule metadata, group key, correlation window.
    pub kmswatch: FindingExt,
}

/// `finding_info.*`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FindingInfo {
    /// Deterministic id: hex SHA-256 (first 128 bits) of rule id, group key and window start.
    pub uid: String,
    /// The rule's title.
    pub title: String,
    /// The rule's description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desc: Option<String>,
    /// The rule.
    pub analytic: Analytic,
    /// `metadata.uid` of the contributing events, earliest first (capped like evidences).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub related_events: Vec<String>,
}

/// `finding_info.analytic.*`: the rule that produced the finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Analytic {
    /// The rule's `id` (its title when it has none).
    pub uid: String,
    /// The rule's `name`, else its title.
    pub name: String,
    /// `Rule` for single-event rules, `Correlation` for correlation rules.
    #[serde(rename = "type")]
    pub type_: String,
    /// OCSF analytic type id: 1 Rule, 99 Other (correlation).
    pub type_id: u8,
}

/// `metadata.*` of a finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FindingMetadata {
    /// `{"name": "kmswatch", "vendor_name": "kmswatch"}`.
    pub product: FindingProduct,
    /// OCSF schema version.
    pub version: String,
}

impl Default for FindingMetadata {
    fn default() -> Self {
        FindingMetadata {
            product: FindingProduct {
                name: "kmswatch".to_string(),
                vendor_name: "kmswatch".to_string(),
            },
            version: crate::event::OCSF_VERSION.to_string(),
        }
    }
}

/// `metadata.product.*` of a finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FindingProduct {
    /// `kmswatch`.
    pub name: String,
    /// `kmswatch`.
    pub vendor_name: String,
}

/// `cloud.*` of a finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FindingCloud {
    /// `AWS`, `Azure`, `GCP`.
    pub provider: Provider,
    /// AWS account, Azure subscription, GCP project.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<Account>,
    /// Region, when the first contributing event names one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
}

/// One entry of `resources`: a key (or vault object) the finding is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resource {
    /// Canonical key id (`kms.key.uid`) or object id (`kms.object_uid`).
    pub uid: String,
    /// `kms_key` or `secret` (the kind of object).
    #[serde(rename = "type")]
    pub type_: String,
    /// `AWS`, `Azure`, `GCP`.
    pub cloud_provider: Provider,
    /// The account/subscription/project that owns it, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<Account>,
}

/// One entry of `attacks`: an ATT&CK technique and/or tactic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attack {
    /// The technique (`T1485`), when the rule names one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub technique: Option<AttackRef>,
    /// The tactic (`TA0040`), when the rule names one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tactic: Option<AttackRef>,
}

/// A technique or tactic: id and name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttackRef {
    /// `T1485`, `T1562.008`, `TA0040`.
    pub uid: String,
    /// Its name, when kmswatch knows it (empty otherwise).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
}

/// `kmswatch.*`: what OCSF has no place for.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct FindingExt {
    /// The rule's `level` as written (`high`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule_level: Option<String>,
    /// The rule's `status` (`stable`, `test`, `experimental`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule_status: Option<String>,
    /// The rule's tags.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// The rule file (for the detection engineer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule_file: Option<String>,
    /// The group key: field name -> value (a correlation's `group-by`; for single-event rules
    /// `actor.user.uid` and `kms.key.uid`). Absent fields are the empty string.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub group: BTreeMap<String, String>,
    /// `event_count`, `value_count`, `temporal`, `temporal_ordered`, `value_sum`; absent for
    /// single-event rules.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_type: Option<String>,
    /// The correlation window (or the suppression period) the finding closes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<Window>,
    /// The correlation's measured value (event count, distinct values, sum, rules seen).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    /// Set when the finding comes from an event that arrived after the watermark passed it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub late: bool,
    /// The distinct origins (`kms.origin`) of the contributing events, at most
    /// [`MAX_FINDING_ORIGINS`]; empty when the events carry none (e.g. `kmswatch scan`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub origins: Vec<crate::Origin>,
    /// Set when the contributing events came from more than [`MAX_FINDING_ORIGINS`] origins
    /// (then `origins` is incomplete and cannot vouch for all of them).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub origins_truncated: bool,
}

/// The most origins a finding lists (`kmswatch.origins`).
pub const MAX_FINDING_ORIGINS: usize = 64;

/// A window: `[start_time, end_time)` in event time, epoch ms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    /// Window start (the anchor event's time), inclusive.
    pub start_time: i64,
    /// Window end, exclusive.
    pub end_time: i64,
    /// Length, seconds (`timespan` or the suppression period).
    pub timespan_secs: i64,
}

/// Severity name and id from a Sigma `level` (unknown levels are `Unknown`, 0).
pub fn severity_of(level: Option<&str>) -> (&'static str, u8) {
    match level.map(str::to_ascii_lowercase).as_deref() {
        Some("informational") => ("Informational", 1),
        Some("low") => ("Low", 2),
        Some("medium") => ("Medium", 3),
        Some("high") => ("High", 4),
        Some("critical") => ("Critical", 5),
        _ => ("Unknown", 0),
    }
}

/// ATT&CK tactics by Sigma tag suffix (`attack.impact`): (tag, id, name).
const TACTICS: &[(&str, &str, &str)] = &[
    ("reconnaissance", "TA0043", "Reconnaissance"),
    ("resource_development", "TA0042", "Resource Development"),
    ("initial_access", "TA0001", "Initial Access"),
    ("execution", "TA0002", "Execution"),
    ("persistence", "TA0003", "Persistence"),
    ("privilege_escalation", "TA0004", "Privilege Escalation"),
    ("defense_evasion", "TA0005", "Defense Evasion"),
    ("credential_access", "TA0006", "Credential Access"),
    ("discovery", "TA0007", "Discovery"),
    ("lateral_movement", "TA0008", "Lateral Movement"),
    ("collection", "TA0009", "Collection"),
    ("command_and_control", "TA0011", "Command and Control"),
    ("exfiltration", "TA0010", "Exfiltration"),
    ("impact", "TA0040", "Impact"),
];

/// Names of the ATT&CK techniques kmswatch's rules use.
const TECHNIQUES: &[(&str, &str)] = &[
    ("T1020", "Automated Exfiltration"),
    ("T1048", "Exfiltration Over Alternative Protocol"),
    ("T1078", "Valid Accounts"),
    ("T1078.004", "Valid Accounts: Cloud Accounts"),
    ("T1087.004", "Account Discovery: Cloud Account"),
    ("T1098", "Account Manipulation"),
    (
        "T1098.001",
        "Account Manipulation: Additional Cloud Credentials",
    ),
    ("T1098.003", "Account Manipulation: Additional Cloud Roles"),
    ("T1110", "Brute Force"),
    ("T1190", "Exploit Public-Facing Application"),
    ("T1485", "Data Destruction"),
    ("T1486", "Data Encrypted for Impact"),
    ("T1489", "Service Stop"),
    ("T1490", "Inhibit System Recovery"),
    ("T1496", "Resource Hijacking"),
    ("T1526", "Cloud Service Discovery"),
    ("T1528", "Steal Application Access Token"),
    ("T1530", "Data from Cloud Storage"),
    ("T1531", "Account Access Removal"),
    ("T1537", "Transfer Data to Cloud Account"),
    ("T1552", "Unsecured Credentials"),
    ("T1552.001", "Unsecured Credentials: Credentials In Files"),
    (
        "T1552.005",
        "Unsecured Credentials: Cloud Instance Metadata API",
    ),
    ("T1555", "Credentials from Password Stores"),
    (
        "T1555.006",
        "Credentials from Password Stores: Cloud Secrets Management Stores",
    ),
    ("T1562", "Impair Defenses"),
    ("T1562.001", "Impair Defenses: Disable or Modify Tools"),
    ("T1562.008", "Impair Defenses: Disable or Modify Cloud Logs"),
    ("T1565", "Data Manipulation"),
    ("T1580", "Cloud Infrastructure Discovery"),
    ("T1588", "Obtain Capabilities"),
    ("T1606", "Forge Web Credentials"),
    ("T1619", "Cloud Storage Object Discovery"),
    ("T1651", "Cloud Administration Command"),
];

/// The ATT&CK entries named by Sigma tags: `attack.tNNNN[.NNN]` techniques and
/// `attack.<tactic>` tactics. One entry per technique, paired with the rule's first tactic;
/// tactic-only entries when the rule names no technique. Other tags are ignored.
pub fn attacks_from_tags(tags: &[String]) -> Vec<Attack> {
    let mut techniques = Vec::new();
    let mut tactics = Vec::new();
    for tag in tags {
        let lower = tag.to_ascii_lowercase();
        let Some(rest) = lower.strip_prefix("attack.") else {
            continue;
        };
        let rest_dash = rest.replace('-', "_");
        if let Some(&(_, uid, name)) = TACTICS.iter().find(|(t, _, _)| *t == rest_dash) {
            let r = AttackRef {
                uid: uid.to_string(),
                name: name.to_string(),
            };
            if !tactics.contains(&r) {
                tactics.push(r);
            }
            continue;
        }
        let is_technique = rest.len() >= 5
            && rest.starts_with('t')
            && rest
                .get(1..5)
                .is_some_and(|d| d.bytes().all(|b| b.is_ascii_digit()));
        if is_technique {
            let uid = rest.to_ascii_uppercase();
            let name = TECHNIQUES
                .iter()
                .find(|(u, _)| *u == uid)
                .map(|(_, n)| n.to_string())
                .unwrap_or_default();
            let r = AttackRef { uid, name };
            if !techniques.contains(&r) {
                techniques.push(r);
            }
        }
    }
    if techniques.is_empty() {
        return tactics
            .into_iter()
            .map(|t| Attack {
                technique: None,
                tactic: Some(t),
            })
            .collect();
    }
    let tactic = tactics.into_iter().next();
    techniques
        .into_iter()
        .map(|t| Attack {
            technique: Some(t),
            tactic: tactic.clone(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attacks_from_sigma_tags() {
        let tags = vec![
            "attack.impact".to_string(),
            "attack.t1485".to_string(),
            "attack.T1562.008".to_string(),
            "cve.2020-1".to_string(),
        ];
        let a = attacks_from_tags(&tags);
        assert_eq!(a.len(), 2);
        assert_eq!(
            a[0].technique.as_ref().map(|t| t.uid.as_str()),
            Some("T1485")
        );
        assert_eq!(
            a[0].technique.as_ref().map(|t| t.name.as_str()),
            Some("Data Destruction")
        );
        assert_eq!(a[1].tactic.as_ref().map(|t| t.uid.as_str()), Some("TA0040"));
        let only = attacks_from_tags(&["attack.defense-evasion".to_string()]);
        assert_eq!(only.len(), 1);
        assert_eq!(
            only[0].tactic.as_ref().map(|t| t.name.as_str()),
            Some("Defense Evasion")
        );
        assert!(only[0].technique.is_none());
    }

    #[test]
    fn severity_levels() {
        assert_eq!(severity_of(Some("critical")), ("Critical", 5));
        assert_eq!(severity_of(Some("Informational")), ("Informational", 1));
        assert_eq!(severity_of(None), ("Unknown", 0));
    }
}
