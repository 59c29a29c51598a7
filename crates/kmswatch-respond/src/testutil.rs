//! Helpers for tests (not part of the API).

use kmswatch_model::{
    Analytic, Finding, FindingExt, FindingInfo, FindingMetadata, Provider, Resource,
};

/// A finding of rule `rule` at `severity_id` about `keys`.
pub fn finding(rule: &str, severity_id: u8, keys: &[(Provider, &str)]) -> Finding {
    Finding {
        class_uid: 2004,
        category_uid: 2,
        activity_id: 1,
        type_uid: 200401,
        time: 0,
        start_time: 0,
        end_time: 0,
        severity: "High".into(),
        severity_id,
        status: "New".into(),
        status_id: 1,
        message: String::new(),
        finding_info: FindingInfo {
            uid: format!(
                "f-{rule}-{}",
                keys.first().map(|k| k.1).unwrap_or_default().len()
            ),
            title: rule.to_string(),
            desc: None,
            analytic: Analytic {
                uid: rule.to_string(),
                name: rule.to_string(),
                type_: "Rule".into(),
                type_id: 1,
            },
            related_events: Vec::new(),
        },
        metadata: FindingMetadata::default(),
        cloud: None,
        actor: None,
        resources: keys
            .iter()
            .map(|(p, k)| Resource {
                uid: k.to_string(),
                type_: "kms_key".into(),
                cloud_provider: *p,
                account: None,
            })
            .collect(),
        attacks: Vec::new(),
        evidences: Vec::new(),
        evidences_count: 0,
        count: 1,
        kmswatch: FindingExt::default(),
    }
}
