//! Record formats: the OCSF finding (default), a flat Splunk CIM-style record, the Sentinel
//! row, Slack text, and the `{dotted.path}` templates of HEC metadata.
//!
//! ## CIM mapping (`format: cim`)
//!
//! | CIM-style field | from the finding |
//! |---|---|
//! | `id` | `finding_info.uid` |
//! | `_time` | `time` / 1000 (epoch seconds) |
//! | `signature` | `finding_info.title` |
//! | `signature_id`, `rule_id` | `finding_info.analytic.uid` |
//! | `rule_name` | `finding_info.analytic.name` |
//! | `description` | `message` |
//! | `severity` | `severity`, lower case (`critical` ... `informational`, `unknown`) |
//! | `severity_id` | `severity_id` |
//! | `user` | `actor.user.name`, else `actor.user.uid` |
//! | `user_id` | `actor.user.uid` |
//! | `user_type` | `actor.kind` |
//! | `src` | `src_endpoint.ip` of the first evidence |
//! | `dest`, `object` | `resources[0].uid` (the key) |
//! | `object_category` | `resources[0].type` |
//! | `app` | `api.service.name` of the first evidence (`kms.amazonaws.com`...) |
//! | `action` | `kms.operation` of the first evidence (`ScheduleKeyDeletion`...) |
//! | `vendor_account`, `vendor_region`, `cloud_provider` | `cloud.account.uid`, `cloud.region`, `cloud.provider` |
//! | `mitre_technique_id`, `mitre_tactic_id` | `attacks[].technique.uid`, `attacks[].tactic.uid` (lists) |
//! | `tag` | `kmswatch.tags` |
//! | `count` | `count` |
//! | `evidence_count` | `evidences_count` |
//! | `start_time`, `end_time` | epoch ms |
//! | `type` | `alert` |
//! | `vendor_product` | `kmswatch` |
//!
//! ## Sentinel columns (`KmswatchFindings_CL`)
//!
//! `TimeGenerated` (datetime, ISO 8601 of `time`), `FindingId`, `RuleId`, `RuleTitle`,
//! `Severity`, `SeverityId`, `Message`, `Principal` (user name, else uid), `PrincipalId`,
//! `PrincipalKind`, `SourceIp`, `KeyId` (first resource), `Operation`, `Cloud`, `Account`,
//! `Region`, `Count`, `EvidenceCount`, `StartTime`, `EndTime` (datetime), `Techniques`,
//! `Tactics`, `Tags` (dynamic arrays), `Finding` (dynamic: the whole OCSF finding). Audit
//! records go to `KmswatchAudit_CL`: `TimeGenerated`, `RecordId`, `Record` (dynamic).
//! `deploy/sentinel/` has the table schema and a DCR that declares these columns.

use crate::Outgoing;
use kmswatch_model::Finding;
use serde_json::{json, Map, Value};

/// The first contributing event, when the finding carries evidences.
fn first_evidence(f: &Finding) -> Option<&kmswatch_model::Event> {
    f.evidences.first()
}

fn principal(f: &Finding) -> (Option<String>, Option<String>, Option<&'static str>) {
    match &f.actor {
        Some(a) => (
            a.user.name.clone().or_else(|| a.user.uid.clone()),
            a.user.uid.clone(),
            Some(a.kind.as_str()),
        ),
        None => (None, None, None),
    }
}

fn techniques(f: &Finding) -> Vec<String> {
    f.attacks
        .iter()
        .filter_map(|a| a.technique.as_ref().map(|t| t.uid.clone()))
        .collect()
}

fn tactics(f: &Finding) -> Vec<String> {
    let mut v: Vec<String> = Vec::new();
    for t in f.attacks.iter().filter_map(|a| a.tactic.as_ref()) {
        if !v.contains(&t.uid) {
            v.push(t.uid.clone());
        }
    }
    v
}

/// The flat CIM-style record (see the module docs for the mapping).
pub fn cim(f: &Finding) -> Value {
    let (user, user_id, kind) = principal(f);
    let ev = first_evidence(f);
    let res = f.resources.first();
    let mut m = Map::new();
    let mut put = |k: &str, v: Value| {
        if !v.is_null() {
            m.insert(k.to_string(), v);
        }
    };
    put("id", json!(f.finding_info.uid));
    put("_time", json!(f.time as f64 / 1000.0));
    put("type", json!("alert"));
    put("vendor_product", json!("kmswatch"));
    put("signature", json!(f.finding_info.title));
    put("signature_id", json!(f.finding_info.analytic.uid));
    put("rule_id", json!(f.finding_info.analytic.uid));
    put("rule_name", json!(f.finding_info.analytic.name));
    put("description", json!(f.message));
    put("severity", json!(f.severity.to_ascii_lowercase()));
    put("severity_id", json!(f.severity_id));
    put("user", json!(user));
    put("user_id", json!(user_id));
    put("user_type", json!(kind));
    put("src", json!(ev.and_then(|e| e.src_endpoint.ip.clone())));
    put("dest", json!(res.map(|r| r.uid.clone())));
    put("object", json!(res.map(|r| r.uid.clone())));
    put("object_category", json!(res.map(|r| r.type_.clone())));
    put("app", json!(ev.map(|e| e.api.service.name.clone())));
    put("action", json!(ev.map(|e| e.kms.operation.to_string())));
    if let Some(c) = &f.cloud {
        put("cloud_provider", json!(c.provider.as_str()));
        put(
            "vendor_account",
            json!(c.account.as_ref().and_then(|a| a.uid.clone())),
        );
        put("vendor_region", json!(c.region));
    }
    put("mitre_technique_id", json!(techniques(f)));
    put("mitre_tactic_id", json!(tactics(f)));
    put("tag", json!(f.kmswatch.tags));
    put("count", json!(f.count));
    put("evidence_count", json!(f.evidences_count));
    put("start_time", json!(f.start_time));
    put("end_time", json!(f.end_time));
    Value::Object(m)
}

/// RFC 3339 UTC of epoch milliseconds (`2024-05-01T12:00:00.123Z`).
pub fn rfc3339_millis(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let milli = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{milli:03}Z",
        sod / 3600,
        (sod % 3600) / 60,
        sod % 60
    )
}

/// The Sentinel row of an item (see the module docs for the columns).
pub fn sentinel_row(item: &Outgoing) -> Result<Value, serde_json::Error> {
    let f = match item {
        Outgoing::Audit(v) => {
            let time = v
                .get("time")
                .and_then(Value::as_i64)
                .map(rfc3339_millis)
                .unwrap_or_else(|| rfc3339_millis(now_millis()));
            return Ok(json!({
                "TimeGenerated": time,
                "RecordId": item.id(),
                "Record": v,
            }));
        }
        Outgoing::Finding(f) => f,
    };
    let (user, user_id, kind) = principal(f);
    let ev = first_evidence(f);
    let c = f.cloud.as_ref();
    Ok(json!({
        "TimeGenerated": rfc3339_millis(f.time),
        "FindingId": f.finding_info.uid,
        "RuleId": f.finding_info.analytic.uid,
        "RuleTitle": f.finding_info.title,
        "Severity": f.severity,
        "SeverityId": f.severity_id,
        "Message": f.message,
        "Principal": user,
        "PrincipalId": user_id,
        "PrincipalKind": kind,
        "SourceIp": ev.and_then(|e| e.src_endpoint.ip.clone()),
        "KeyId": f.resources.first().map(|r| r.uid.clone()),
        "Operation": ev.map(|e| e.kms.operation.to_string()),
        "Cloud": c.map(|c| c.provider.as_str()),
        "Account": c.and_then(|c| c.account.as_ref()).and_then(|a| a.uid.clone()),
        "Region": c.and_then(|c| c.region.clone()),
        "Count": f.count,
        "EvidenceCount": f.evidences_count,
        "StartTime": rfc3339_millis(f.start_time),
        "EndTime": rfc3339_millis(f.end_time),
        "Techniques": techniques(f),
        "Tactics": tactics(f),
        "Tags": f.kmswatch.tags,
        "Finding": serde_json::to_value(f)?,
    }))
}

/// Slack-compatible text: `{"text": ":rotating_light: [High] title — message (rule id, finding id)"}`.
pub fn slack(item: &Outgoing) -> Value {
    match item {
        Outgoing::Finding(f) => {
            let icon = match f.severity_id {
                5 => ":rotating_light:",
                4 => ":red_circle:",
                3 => ":large_orange_circle:",
                _ => ":large_blue_circle:",
            };
            json!({
                "text": format!(
                    "{icon} *[{}] {}*\n{}\nrule `{}` · finding `{}`",
                    f.severity, f.finding_info.title, f.message,
                    f.finding_info.analytic.uid, f.finding_info.uid
                )
            })
        }
        Outgoing::Audit(v) => json!({
            "text": format!("kmswatch response audit record `{}`: {}", item.id(), v)
        }),
    }
}

pub(crate) fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A `{dotted.path}` template over the finding's JSON (`kms-{cloud.provider}`). A path that
/// is absent renders as the empty string; `{{` and `}}` are literal braces.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Lit(String),
    Path(Vec<String>),
}

impl Template {
    /// Parses a template; an unclosed `{` is an error.
    pub fn parse(s: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut lit = String::new();
        let mut chars = s.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '{' if chars.peek() == Some(&'{') => {
                    chars.next();
                    lit.push('{');
                }
                '}' if chars.peek() == Some(&'}') => {
                    chars.next();
                    lit.push('}');
                }
                '{' => {
                    let mut path = String::new();
                    let mut closed = false;
                    for c in chars.by_ref() {
                        if c == '}' {
                            closed = true;
                            break;
                        }
                        path.push(c);
                    }
                    if !closed || path.trim().is_empty() {
                        return Err(format!("template {s:?}: unclosed or empty {{...}}"));
                    }
                    if !lit.is_empty() {
                        parts.push(Part::Lit(std::mem::take(&mut lit)));
                    }
                    parts.push(Part::Path(
                        path.trim().split('.').map(str::to_string).collect(),
                    ));
                }
                c => lit.push(c),
            }
        }
        if !lit.is_empty() {
            parts.push(Part::Lit(lit));
        }
        Ok(Template { parts })
    }

    /// The template has no `{path}`: its value is the same for every item.
    pub fn as_static(&self) -> Option<&str> {
        match self.parts.as_slice() {
            [] => Some(""),
            [Part::Lit(s)] => Some(s),
            _ => None,
        }
    }

    /// Renders over an item's JSON form.
    pub fn render(&self, v: &Value) -> String {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Lit(s) => out.push_str(s),
                Part::Path(path) => {
                    let mut cur = Some(v);
                    for seg in path {
                        cur = cur.and_then(|c| match c {
                            Value::Object(m) => m.get(seg),
                            Value::Array(a) => seg.parse::<usize>().ok().and_then(|i| a.get(i)),
                            _ => None,
                        });
                    }
                    match cur {
                        Some(Value::String(s)) => out.push_str(s),
                        Some(Value::Null) | None => {}
                        Some(other) => out.push_str(&other.to_string()),
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339() {
        assert_eq!(rfc3339_millis(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            rfc3339_millis(1_714_564_800_123),
            "2024-05-01T12:00:00.123Z"
        );
        assert_eq!(rfc3339_millis(951_782_400_000), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn templates() {
        let t = Template::parse("kms-{cloud.provider}-{{x}}").unwrap_or_else(|e| panic!("{e}"));
        let v = json!({"cloud": {"provider": "AWS"}});
        assert_eq!(t.render(&v), "kms-AWS-{x}");
        assert_eq!(t.render(&json!({})), "kms--{x}");
        assert!(Template::parse("kms-{cloud").is_err());
        assert_eq!(
            Template::parse("plain")
                .ok()
                .and_then(|t| t.as_static().map(str::to_string)),
            Some("plain".to_string())
        );
        let idx = Template::parse("{resources.0.uid}").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(idx.render(&json!({"resources": [{"uid": "k1"}]})), "k1");
    }
}
