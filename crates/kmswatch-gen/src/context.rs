//! `labels.jsonl`, `context.json` and `inventory.csv`: what detection needs to judge the
//! corpus (calendars, admins, the identity inventory) and the ground truth to score it.

use crate::scenario::Label;
use crate::world::{Calendar, World, BUSINESS_END_H, BUSINESS_START_H};
use crate::{clock, write_file, CloudCounts, GenError, GenOptions};
use serde_json::{json, Value};
use std::path::Path;

fn calendar(c: &Calendar) -> Value {
    json!({
        "time_zone": c.tz,
        "utc_offset_minutes": c.offset_min,
        "business_hours": {
            "start": format!("{BUSINESS_START_H:02}:00"),
            "end": format!("{BUSINESS_END_H:02}:00"),
        },
        "business_days": ["Mon", "Tue", "Wed", "Thu", "Fri"],
        "holidays": c.holidays,
    })
}

/// One inventory row: cloud, account, principal uid (as `actor.user.uid`), display name,
/// kind, e-mail.
type Row = (String, String, String, String, &'static str, String);

fn inventory(w: &World) -> Vec<Row> {
    let mut rows: Vec<Row> = Vec::new();
    for a in &w.aws {
        for h in &a.humans {
            let p = &w.people[h.person];
            if p.active {
                rows.push((
                    "AWS".into(),
                    a.id.clone(),
                    a.human_uid(w, h),
                    p.display.clone(),
                    "human",
                    p.email(),
                ));
            }
        }
        for (role, _) in &a.roles {
            rows.push((
                "AWS".into(),
                a.id.clone(),
                format!("arn:aws:iam::{}:role/{role}", a.id),
                role.clone(),
                "service",
                String::new(),
            ));
        }
    }
    let t = &w.azure;
    for p in w.people.iter().filter(|p| p.active) {
        rows.push((
            "Azure".into(),
            t.tenant.clone(),
            p.azure_oid.clone(),
            p.display.clone(),
            "human",
            p.email(),
        ));
    }
    for a in &t.apps {
        rows.push((
            "Azure".into(),
            t.tenant.clone(),
            a.oid.clone(),
            a.name.clone(),
            "service",
            String::new(),
        ));
    }
    for g in &w.gcp {
        for p in w.people.iter().filter(|p| p.active) {
            rows.push((
                "GCP".into(),
                g.id.clone(),
                p.email(),
                p.display.clone(),
                "human",
                p.email(),
            ));
        }
        for sa in &g.sas {
            rows.push((
                "GCP".into(),
                g.id.clone(),
                sa.clone(),
                sa.split('@').next().unwrap_or("").into(),
                "service",
                String::new(),
            ));
        }
    }
    rows
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// The admin principals (`kms_admins`) of every cloud, as `actor.user.uid`.
pub(crate) fn admins(w: &World) -> Vec<String> {
    let mut v = Vec::new();
    for a in &w.aws {
        for h in &a.humans {
            if w.people[h.person].admin {
                v.push(a.human_uid(w, h));
            }
        }
    }
    for p in w.people.iter().filter(|p| p.admin && p.active) {
        v.push(p.azure_oid.clone());
    }
    for p in w.people.iter().filter(|p| p.admin && p.active) {
        v.push(p.email());
    }
    v
}

pub(crate) fn write(
    w: &World,
    opts: &GenOptions,
    labels: &[Label],
    out: &Path,
) -> Result<CloudCounts, GenError> {
    let mut c = CloudCounts::default();
    let mut text = String::new();
    let mut sorted: Vec<&Label> = labels.iter().collect();
    sorted.sort_by(|a, b| (&a.start, &a.scenario, &a.rule).cmp(&(&b.start, &b.scenario, &b.rule)));
    for l in sorted {
        text.push_str(&serde_json::to_string(l).unwrap_or_default());
        text.push('\n');
    }
    c.bytes += write_file(&out.join("labels.jsonl"), text.as_bytes())?;

    let mut csv = String::from("cloud,account,uid,name,kind,email\n");
    for r in inventory(w) {
        let fields = [r.0, r.1, r.2, r.3, r.4.to_string(), r.5];
        let line: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
        csv.push_str(&line.join(","));
        csv.push('\n');
    }
    c.bytes += write_file(&out.join("inventory.csv"), csv.as_bytes())?;

    let t = &w.azure;
    let ctx = json!({
        "generator": {
            "name": "kmswatch-gen",
            "version": env!("CARGO_PKG_VERSION"),
            "seed": opts.seed,
            "days": opts.days,
            "start": opts.start,
            "scale": opts.scale,
            "kms_heavy": opts.kms_heavy,
        },
        "corpus": { "start": clock::millis_z(w.start_ms), "end": clock::millis_z(w.end_ms) },
        "accounts": w.aws.iter().map(|a| {
            let mut v = json!({ "cloud": "AWS", "uid": a.id, "name": a.name, "regions": a.regions });
            if let (Some(o), Value::Object(cal)) = (v.as_object_mut(), calendar(&a.cal)) { o.extend(cal); }
            v
        }).chain(t.subs.iter().map(|(sub, name)| {
            let mut v = json!({ "cloud": "Azure", "uid": sub, "name": name, "tenant": t.tenant });
            if let (Some(o), Value::Object(cal)) = (v.as_object_mut(), calendar(&t.cal)) { o.extend(cal); }
            v
        })).chain(w.gcp.iter().map(|g| {
            let mut v = json!({ "cloud": "GCP", "uid": g.id, "number": g.number, "name": g.id });
            if let (Some(o), Value::Object(cal)) = (v.as_object_mut(), calendar(&g.cal)) { o.extend(cal); }
            v
        })).collect::<Vec<_>>(),
        "kms_admins": admins(w),
        "external_accounts": [w.aws_external],
        "vaults": t.vaults.iter().map(|v| json!({"name": v.name, "uri": v.uri(), "resource_group": v.rg, "subscription": t.subs.get(v.sub).map(|s| s.0.clone())})).collect::<Vec<_>>(),
        "inventory": "inventory.csv",
        "labels": "labels.jsonl",
        "notes": "Times are UTC. Time zones have no daylight saving, so utc_offset_minutes is exact. Identity uids are as kmswatch normalizes them (actor.user.uid): AWS IAM user / SSO session ARNs, Entra object ids, Google e-mails. People absent from inventory.csv have left the company.",
    });
    let text = serde_json::to_string_pretty(&ctx).unwrap_or_default() + "\n";
    c.bytes += write_file(&out.join("context.json"), text.as_bytes())?;
    c.files = 3;
    Ok(c)
}
