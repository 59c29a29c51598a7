//! Helpers for tests (not part of the API).

use kmswatch_model::{
    Analytic, Event, Finding, FindingExt, FindingInfo, FindingMetadata, Key, KmsOperation,
    Provider, Resource,
};

/// The native id [`finding`] gives the evidence event about `key`.
pub fn event_id(key: &str) -> String {
    format!("evt-{:016x}", fnv(key))
}

fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// An evidence event: `operation` by `alice` on `key`, native id `uid`.
pub fn evidence(provider: Provider, key: &str, uid: &str, operation: &str) -> Event {
    let raw = serde_json::value::RawValue::from_string(format!("{{\"id\":{:?}}}", uid))
        .map(kmswatch_model::Raw::from)
        .unwrap_or_else(|_| kmswatch_model::Raw::from_checked("{}".into()));
    let mut e = Event::new(0, KmsOperation::Other, raw);
    e.metadata.uid = uid.to_string();
    e.cloud.provider = provider;
    e.api.operation = operation.to_string();
    e.actor.user.uid = Some("alice".into());
    e.kms.key = Some(Key {
        uid: key.to_string(),
        version: None,
        account_uid: None,
    });
    e
}

/// A finding of rule `rule` at `severity_id` about `keys`, with one evidence event per key
/// (native id [`event_id`] of the key).
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
        evidences: keys
            .iter()
            .map(|(p, k)| evidence(*p, k, &event_id(k), "Decrypt"))
            .collect(),
        evidences_count: keys.len() as u64,
        count: 1,
        kmswatch: FindingExt::default(),
    }
}
