//! Azure: Key Vault `AuditEvent` resource logs and the Activity Log, as a diagnostic setting
//! archives them to a storage account: hourly `PT1H.json` blobs `{"records":[...]}`.

use crate::clock::{azure_z, civil, HOUR, MIN};
use crate::json::s;
use crate::rng::Rng;
use crate::scenario::Ctx;
use crate::world::{AzureApp, AzureTenant, Person, Vault, World};
use crate::{take_hour, write_file, CloudCounts, GenError, Rec};
use std::fmt::Write as _;
use std::path::Path;

const AZ_CLI_APPID: &str = "04b07795-8ddb-461a-bbee-02f9e1bf7b46";
const PORTAL_APPID: &str = "c44b4083-3bb0-49c1-b47d-974e53cbdf3c";
const STORAGE_RP_APPID: &str = "a6aa9161-5291-40bb-8c5c-923b567bee3b";
const STORAGE_RP_OID: &str = "1e2d3c4b-5a69-4788-97a6-b5c4d3e2f1a0";

fn human_claim(t: &AzureTenant, p: &Person) -> String {
    format!(
        r#"{{"http://schemas.microsoft.com/identity/claims/objectidentifier":"{}","http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn":"{}","appid":"{AZ_CLI_APPID}","http://schemas.microsoft.com/identity/claims/tenantid":"{}"}}"#,
        p.azure_oid,
        p.email(),
        t.tenant
    )
}

fn app_claim(t: &AzureTenant, a: &AzureApp, v: &Vault) -> String {
    let mirid = if a.managed {
        let sub = t.subs.get(v.sub).map(|x| x.0.as_str()).unwrap_or("");
        format!(
            r#","xms_mirid":"/subscriptions/{sub}/resourcegroups/{}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{}""#,
            v.rg, a.name
        )
    } else {
        String::new()
    };
    format!(
        r#"{{"oid":"{}","appid":"{}","idtyp":"app","tid":"{}"{mirid}}}"#,
        a.oid, a.appid, t.tenant
    )
}

fn storage_rp_claim(t: &AzureTenant) -> String {
    format!(
        r#"{{"oid":"{STORAGE_RP_OID}","appid":"{STORAGE_RP_APPID}","idtyp":"app","tid":"{}"}}"#,
        t.tenant
    )
}

fn vault_resource_id(t: &AzureTenant, v: &Vault) -> String {
    let sub = t.subs.get(v.sub).map(|x| x.0.as_str()).unwrap_or("");
    format!(
        "/SUBSCRIPTIONS/{}/RESOURCEGROUPS/{}/PROVIDERS/MICROSOFT.KEYVAULT/VAULTS/{}",
        sub.to_ascii_uppercase(),
        v.rg.to_ascii_uppercase(),
        v.name.to_ascii_uppercase()
    )
}

/// One Key Vault data-plane request.
pub(crate) struct Kv<'a> {
    pub t: i64,
    pub op: &'a str,
    pub claim: String,
    pub ip: &'a str,
    pub client: &'a str,
    pub status: u16,
    pub id: Option<String>,
    pub uri: String,
}

fn signature(status: u16) -> &'static str {
    match status {
        200 => "OK",
        204 => "NoContent",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "NotFound",
        _ => "OK",
    }
}

pub(crate) fn kv_rec(r: &mut Rng, t: &AzureTenant, vi: usize, k: &Kv<'_>) -> Rec {
    let v = t.vaults.get(vi);
    let rid = v.map(|v| vault_resource_id(t, v)).unwrap_or_default();
    let mut o = String::with_capacity(1100);
    let _ = write!(
        o,
        r#"{{"time":"{}","category":"AuditEvent","operationName":"{}","resultType":"Success","correlationId":"{}","callerIpAddress":"{}","identity":{{"claim":{}}},"properties":{{"clientInfo":{},"httpStatusCode":{},"#,
        azure_z(k.t, r.below(10_000) as u32),
        k.op,
        r.uuid(),
        k.ip,
        k.claim,
        s(k.client),
        k.status
    );
    if let Some(id) = &k.id {
        let _ = write!(o, r#""id":"{id}","#);
    }
    let _ = write!(
        o,
        r#""requestUri":"{}","isAccessPolicyMatch":false,"isRbacAuthorized":true}},"resourceId":"{rid}","operationVersion":"7.4","resultSignature":"{}","durationMs":"{}"}}"#,
        k.uri,
        signature(k.status),
        r.range(3, 60)
    );
    Rec {
        t: k.t,
        bucket: vi as u32,
        kms: true,
        json: o,
    }
}

/// A key operation `op` (`KeyUnwrap`) on key `(name, version)` with URI verb `verb`.
fn key_op<'a>(
    t: i64,
    op: &'a str,
    v: &Vault,
    key: &(String, String),
    verb: &str,
    claim: String,
) -> Kv<'a> {
    let id = format!("{}/keys/{}/{}", v.uri(), key.0, key.1);
    Kv {
        t,
        op,
        claim,
        ip: "10.20.30.40",
        client: "azsdk-net-Security.KeyVault.Keys/4.6.0 (.NET 8.0.4; Linux)",
        status: 200,
        uri: if verb.is_empty() {
            format!("{id}?api-version=7.4")
        } else {
            format!("{id}/{verb}?api-version=7.4")
        },
        id: Some(id),
    }
}

fn secret_get<'a>(t: i64, v: &Vault, sec: &(String, String), claim: String) -> Kv<'a> {
    Kv {
        t,
        op: "SecretGet",
        claim,
        ip: "10.20.31.7",
        client: "azsdk-net-Security.KeyVault.Secrets/4.6.0 (.NET 8.0.4; Linux)",
        status: 200,
        id: Some(format!("{}/secrets/{}/{}", v.uri(), sec.0, sec.1)),
        uri: format!("{}/secrets/{}?api-version=7.4", v.uri(), sec.0),
    }
}

/// One Activity Log (administrative) record.
pub(crate) struct Act<'a> {
    pub t: i64,
    pub sub: usize,
    pub resource: String,
    pub op: &'a str,
    pub action: &'a str,
    pub claims: String,
    pub principal_oid: String,
    pub principal_type: &'a str,
    pub ip: &'a str,
    pub body: Option<String>,
}

pub(crate) fn act_rec(r: &mut Rng, t: &AzureTenant, a: &Act<'_>) -> Rec {
    let sub = t.subs.get(a.sub).map(|x| x.0.as_str()).unwrap_or("");
    let scope = a.resource.to_ascii_lowercase();
    let mut o = String::with_capacity(1800);
    let _ = write!(
        o,
        r#"{{"time":"{}","resourceId":"{}","operationName":"{}","category":"Administrative","resultType":"Success","resultSignature":"Succeeded.OK","durationMs":"{}","callerIpAddress":"{}","correlationId":"{}","identity":{{"authorization":{{"scope":"{scope}","action":"{}","evidence":{{"role":"Owner","roleAssignmentScope":"/subscriptions/{sub}","roleAssignmentId":"{}","roleDefinitionId":"8e3af657a8ff443ca75c2fe8c4bcb635","principalId":"{}","principalType":"{}"}}}},"claims":{}}},"level":"Information","location":"westeurope","properties":{{"statusCode":"OK","serviceRequestId":"","eventCategory":"Administrative","entity":"{scope}","message":"{}","hierarchy":"{}/{sub}""#,
        azure_z(a.t, r.below(10_000) as u32),
        a.resource.to_ascii_uppercase(),
        a.op,
        r.range(80, 3000),
        a.ip,
        r.uuid(),
        a.action,
        r.hex(32),
        a.principal_oid.replace('-', ""),
        a.principal_type,
        a.claims,
        a.action,
        t.tenant
    );
    if let Some(b) = &a.body {
        let _ = write!(o, r#","requestbody":{}"#, s(b));
    }
    let _ = write!(o, r#"}},"tenantId":"{}"}}"#, t.tenant);
    Rec {
        t: a.t,
        bucket: a.sub as u32,
        kms: a.op.starts_with("MICROSOFT.KEYVAULT"),
        json: o,
    }
}

fn act_claims(t: &AzureTenant, p: &Person, ip: &str) -> String {
    format!(
        r#"{{"aud":"https://management.core.windows.net/","iss":"https://sts.windows.net/{0}/","appid":"{PORTAL_APPID}","http://schemas.microsoft.com/identity/claims/objectidentifier":"{1}","http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn":"{2}","name":"{3}","http://schemas.microsoft.com/identity/claims/tenantid":"{0}","ipaddr":"{ip}"}}"#,
        t.tenant,
        p.azure_oid,
        p.email(),
        p.display
    )
}

fn sp_claims(t: &AzureTenant, oid: &str, appid: &str) -> String {
    format!(
        r#"{{"aud":"https://management.core.windows.net/","iss":"https://sts.windows.net/{0}/","appid":"{appid}","http://schemas.microsoft.com/identity/claims/objectidentifier":"{oid}","idtyp":"app","http://schemas.microsoft.com/identity/claims/tenantid":"{0}"}}"#,
        t.tenant
    )
}

const ACTIVITY_OPS: [(&str, &str, &str); 6] = [
    (
        "MICROSOFT.COMPUTE/VIRTUALMACHINES/WRITE",
        "Microsoft.Compute/virtualMachines/write",
        "MICROSOFT.COMPUTE/VIRTUALMACHINES/VM-APP",
    ),
    (
        "MICROSOFT.COMPUTE/VIRTUALMACHINES/START/ACTION",
        "Microsoft.Compute/virtualMachines/start/action",
        "MICROSOFT.COMPUTE/VIRTUALMACHINES/VM-BATCH",
    ),
    (
        "MICROSOFT.NETWORK/NETWORKSECURITYGROUPS/WRITE",
        "Microsoft.Network/networkSecurityGroups/write",
        "MICROSOFT.NETWORK/NETWORKSECURITYGROUPS/NSG-APP",
    ),
    (
        "MICROSOFT.RESOURCES/DEPLOYMENTS/WRITE",
        "Microsoft.Resources/deployments/write",
        "MICROSOFT.RESOURCES/DEPLOYMENTS/PIPELINE",
    ),
    (
        "MICROSOFT.STORAGE/STORAGEACCOUNTS/LISTKEYS/ACTION",
        "Microsoft.Storage/storageAccounts/listKeys/action",
        "MICROSOFT.STORAGE/STORAGEACCOUNTS/STKMSWATCH",
    ),
    (
        "MICROSOFT.WEB/SITES/RESTART/ACTION",
        "Microsoft.Web/sites/restart/action",
        "MICROSOFT.WEB/SITES/APP-ORDERS",
    ),
];

fn benign(w: &World, r: &mut Rng, t0: i64, kv: &mut Vec<Rec>, act: &mut Vec<Rec>) {
    let t = &w.azure;
    let cal = &t.cal;
    let hourly = |per_day: f64| w.hourly(cal, t0, per_day);
    let at = |r: &mut Rng| t0 + r.range(0, HOUR);
    // Workloads: unwrap/wrap with their key, read their few secrets. `--scale` adds
    // workloads (`reps` copies of each), so each one's own rate stays the same.
    let per_app = 1.0 / w.reps as f64;
    for a in &t.apps {
        let Some(v) = t.vaults.get(a.vault) else {
            continue;
        };
        for _ in 0..r.round(hourly(110.0 * per_app)) {
            let Some(key) = v.keys.get(a.key) else { break };
            let op = if r.chance(0.7) {
                ("KeyUnwrap", "unwrapkey")
            } else {
                ("KeyWrap", "wrapkey")
            };
            let mut k = key_op(at(r), op.0, v, key, op.1, app_claim(t, a, v));
            k.client = a.client;
            kv.push(kv_rec(r, t, a.vault, &k));
        }
        for _ in 0..r.round(hourly(80.0 * per_app)) {
            let Some(sec) = r.pick(&a.secrets).and_then(|i| v.secrets.get(*i)) else {
                break;
            };
            let mut k = secret_get(at(r), v, sec, app_claim(t, a, v));
            k.client = a.client;
            kv.push(kv_rec(r, t, a.vault, &k));
        }
        for _ in 0..r.round(hourly(15.0 * per_app)) {
            let Some(key) = v.keys.get(a.key) else { break };
            let mut k = key_op(at(r), "KeyGet", v, key, "", app_claim(t, a, v));
            k.client = a.client;
            kv.push(kv_rec(r, t, a.vault, &k));
        }
    }
    // The Storage resource provider (first party) wraps and unwraps storage account keys.
    for (vi, v) in t.vaults.iter().enumerate() {
        for _ in 0..r.round(hourly(600.0)) {
            let Some(key) = r.pick(&v.keys).cloned() else {
                break;
            };
            let op = if r.chance(0.5) {
                ("KeyUnwrap", "unwrapkey")
            } else {
                ("KeyWrap", "wrapkey")
            };
            let mut k = key_op(at(r), op.0, v, &key, op.1, storage_rp_claim(t));
            k.client = "Azure Storage Resource Provider";
            k.ip = "192.0.2.50";
            kv.push(kv_rec(r, t, vi, &k));
        }
        // Occasional denied read by a workload (a rotated credential, a missing role).
        if r.chance(hourly(2.0).min(1.0)) {
            if let (Some(a), Some(sec)) = (r.pick(&t.apps).cloned(), r.pick(&v.secrets).cloned()) {
                let mut k = secret_get(at(r), v, &sec, app_claim(t, &a, v));
                k.status = 403;
                k.id = None;
                kv.push(kv_rec(r, t, vi, &k));
            }
        }
    }
    // People administer in business hours.
    if cal.business(t0) {
        for _ in 0..r.round(10.0 / 9.0 * t.vaults.len() as f64) {
            let active: Vec<&Person> = w.people.iter().filter(|p| p.active).collect();
            let admins: Vec<&Person> = w.people.iter().filter(|p| p.active && p.admin).collect();
            let vi = r.below(t.vaults.len() as u64) as usize;
            let Some(v) = t.vaults.get(vi) else { continue };
            let Some(key) = r.pick(&v.keys).cloned() else {
                continue;
            };
            let roll = r.below(100);
            let who = if roll >= 60 {
                r.pick(&admins)
            } else {
                r.pick(&active)
            };
            let Some(p) = who.copied() else { continue };
            let claim = human_claim(t, p);
            let tt = at(r);
            let mut k = match roll {
                0..=34 => key_op(tt, "KeyGet", v, &key, "", claim),
                35..=49 => Kv {
                    t: tt,
                    op: "KeyList",
                    claim,
                    ip: "",
                    client: "",
                    status: 200,
                    id: None,
                    uri: format!("{}/keys?api-version=7.4", v.uri()),
                },
                50..=59 => Kv {
                    t: tt,
                    op: "SecretList",
                    claim,
                    ip: "",
                    client: "",
                    status: 200,
                    id: None,
                    uri: format!("{}/secrets?api-version=7.4", v.uri()),
                },
                60..=74 => {
                    let sec = r.pick(&v.secrets).cloned().unwrap_or_default();
                    Kv {
                        t: tt,
                        op: "SecretSet",
                        claim,
                        ip: "",
                        client: "",
                        status: 200,
                        id: Some(format!("{}/secrets/{}/{}", v.uri(), sec.0, r.hex(32))),
                        uri: format!("{}/secrets/{}?api-version=7.4", v.uri(), sec.0),
                    }
                }
                75..=89 => {
                    let name = format!("cmk-{}", r.hex(6));
                    let ver = r.hex(32);
                    let mut k = key_op(tt, "KeyCreate", v, &(name.clone(), ver), "", claim);
                    k.uri = format!("{}/keys/{name}/create?api-version=7.4", v.uri());
                    k
                }
                _ => {
                    let mut k = key_op(tt, "KeyRotationPolicySet", v, &key, "", claim);
                    k.id = None;
                    k.uri = format!("{}/keys/{}/rotationpolicy?api-version=7.4", v.uri(), key.0);
                    k
                }
            };
            k.ip = "203.0.113.10";
            k.client = "azure-cli/2.61.0";
            kv.push(kv_rec(r, t, vi, &k));
        }
    }
    // Activity Log: mostly infrastructure changes by pipelines and people, none on vaults.
    for (si, (sub, _)) in t.subs.iter().enumerate() {
        for _ in 0..r.round(hourly(1500.0 * w.non_kms())) {
            let Some(&(op, action, res)) = r.pick(&ACTIVITY_OPS) else {
                break;
            };
            let rg = t
                .vaults
                .iter()
                .find(|v| v.sub == si)
                .map_or("rg-app", |v| v.rg);
            let resource = format!(
                "/subscriptions/{sub}/resourceGroups/{rg}/providers/{res}-{:02}",
                r.below(12)
            );
            let human = cal.business(t0) && r.chance(0.2);
            let (claims, oid, ptype) = if human {
                let p = w
                    .people
                    .iter()
                    .filter(|p| p.active)
                    .nth(r.below(5) as usize);
                match p {
                    Some(p) => (
                        act_claims(t, p, "203.0.113.10"),
                        p.azure_oid.clone(),
                        "User",
                    ),
                    None => continue,
                }
            } else {
                let Some(a) = r.pick(&t.apps) else { continue };
                (
                    sp_claims(t, &a.oid, &a.appid),
                    a.oid.clone(),
                    "ServicePrincipal",
                )
            };
            let tt = at(r);
            act.push(act_rec(
                r,
                t,
                &Act {
                    t: tt,
                    sub: si,
                    resource,
                    op,
                    action,
                    claims,
                    principal_oid: oid,
                    principal_type: ptype,
                    ip: "203.0.113.10",
                    body: None,
                },
            ));
        }
    }
}

fn write_blob(
    out: &Path,
    rel: String,
    recs: &[Rec],
    counts: &mut CloudCounts,
) -> Result<(), GenError> {
    let path = out.join(rel);
    let mut body = String::with_capacity(recs.len() * 1200 + 16);
    body.push_str("{\"records\":[");
    for (i, x) in recs.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.push_str(&x.json);
        counts.records += 1;
        counts.kms_records += u64::from(x.kms);
    }
    body.push_str("]}");
    counts.bytes += write_file(&path, body.as_bytes())?;
    counts.files += 1;
    Ok(())
}

/// Write the Azure part of the corpus.
pub(crate) fn run(
    w: &World,
    seed: u64,
    mut kv_inj: Vec<Rec>,
    mut act_inj: Vec<Rec>,
    out: &Path,
    tick: &(dyn Fn() + Sync),
) -> Result<CloudCounts, GenError> {
    let mut r = Rng::new(seed, "azure");
    let t = &w.azure;
    kv_inj.sort_by_key(|x| (x.t, x.bucket));
    act_inj.sort_by_key(|x| (x.t, x.bucket));
    let (mut pk, mut pa) = (0, 0);
    let mut counts = CloudCounts::default();
    let (mut kv, mut act) = (Vec::new(), Vec::new());
    let mut t0 = w.start_ms;
    while t0 < w.end_ms {
        kv.clear();
        act.clear();
        benign(w, &mut r, t0, &mut kv, &mut act);
        take_hour(&kv_inj, &mut pk, t0 + HOUR, &mut kv);
        take_hour(&act_inj, &mut pa, t0 + HOUR, &mut act);
        kv.sort_by_key(|x| (x.bucket, x.t));
        act.sort_by_key(|x| (x.bucket, x.t));
        let c = civil(t0);
        let stamp = format!(
            "y={:04}/m={:02}/d={:02}/h={:02}/m=00/PT1H.json",
            c.y, c.mo, c.d, c.h
        );
        for group in kv.chunk_by(|a, b| a.bucket == b.bucket) {
            let Some(v) = group.first().and_then(|x| t.vaults.get(x.bucket as usize)) else {
                continue;
            };
            let rel = format!(
                "azure/insights-logs-auditevent/resourceId={}/{stamp}",
                vault_resource_id(t, v)
            );
            write_blob(out, rel, group, &mut counts)?;
        }
        for group in act.chunk_by(|a, b| a.bucket == b.bucket) {
            let Some((sub, _)) = group.first().and_then(|x| t.subs.get(x.bucket as usize)) else {
                continue;
            };
            let rel = format!(
                "azure/insights-activity-logs/resourceId=/SUBSCRIPTIONS/{}/{stamp}",
                sub.to_ascii_uppercase()
            );
            write_blob(out, rel, group, &mut counts)?;
        }
        tick();
        t0 += HOUR;
    }
    Ok(counts)
}

/// The Azure scenarios.
pub(crate) fn scenarios(c: &mut Ctx<'_>) {
    let w = c.w;
    let t = &w.azure;
    let cal = &t.cal;
    let Some(v) = t.vaults.first() else { return };
    let Some(key) = v.keys.first().cloned() else {
        return;
    };
    let key_uid = format!("{}/keys/{}", v.uri(), key.0);
    let (Some(dev), Some(admin)) = (w.people.get(3), w.people.first()) else {
        return;
    };
    let push = |c: &mut Ctx<'_>, scen: &str, rules: &[&str], who: &str, k: &str, recs: Vec<Rec>| {
        c.label(scen, rules, "Azure", who, k, &recs);
        c.inj.azure_kv.extend(recs);
    };
    let human = |tt: i64, op: &'static str, verb: &str, p: &Person| {
        let mut k = key_op(tt, op, v, &key, verb, human_claim(t, p));
        k.ip = "198.51.100.88";
        k.client = "azsdk-python-keyvault-keys/4.9.0 Python/3.11.8 (Linux)";
        k
    };

    for (scen, op, verb, rule, hh) in [
        (
            "azure_human_decrypt",
            "KeyDecrypt",
            "decrypt",
            "kms_human_decrypt",
            10u32,
        ),
        (
            "azure_human_unwrap_key",
            "KeyUnwrap",
            "unwrapkey",
            "kms_human_unwrap_key",
            11,
        ),
        ("azure_human_sign", "KeySign", "sign", "kms_human_sign", 14),
    ] {
        let d = c.slot();
        let tt = w.at_local(cal, d, hh, 22, MIN);
        let k = human(tt, op, verb, dev);
        let recs = vec![kv_rec(&mut c.rng, t, 0, &k)];
        push(c, scen, &[rule], &dev.azure_oid, &key_uid, recs);
    }

    // Soft delete then purge of a key.
    let d = c.slot();
    let tt = w.at_local(cal, d, 18, 40, 10 * MIN);
    let victim = v.keys.get(1).cloned().unwrap_or_else(|| key.clone());
    let victim_uid = format!("{}/keys/{}", v.uri(), victim.0);
    let mut del = Kv {
        t: tt,
        op: "KeyDelete",
        claim: human_claim(t, dev),
        ip: "198.51.100.88",
        client: "azure-cli/2.61.0",
        status: 200,
        id: Some(victim_uid.clone()),
        uri: format!("{victim_uid}?api-version=7.4"),
    };
    let r1 = vec![kv_rec(&mut c.rng, t, 0, &del)];
    push(
        c,
        "azure_key_soft_deleted",
        &["kms_schedule_key_deletion"],
        &dev.azure_oid,
        &victim_uid,
        r1,
    );
    del.t = tt + 4 * MIN;
    del.op = "KeyPurge";
    del.status = 204;
    del.id = None;
    del.uri = format!("{}/deletedkeys/{}?api-version=7.4", v.uri(), victim.0);
    let r2 = vec![kv_rec(&mut c.rng, t, 0, &del)];
    push(
        c,
        "azure_key_purged",
        &["kms_key_purged"],
        &dev.azure_oid,
        &victim_uid,
        r2,
    );

    // Off-hours bulk decryption by a person.
    let d = c.slot();
    let tt = w.at_local(cal, d, 2, 0, 10 * MIN);
    let recs: Vec<Rec> = (0..30)
        .map(|i| {
            let k = human(tt + i * 15_000, "KeyDecrypt", "decrypt", dev);
            kv_rec(&mut c.rng, t, 0, &k)
        })
        .collect();
    push(
        c,
        "azure_off_hours_bulk_decrypt",
        &["kms_off_hours_bulk_key_use", "kms_human_decrypt"],
        &dev.azure_oid,
        &key_uid,
        recs,
    );

    // Mass retrieval of a few secrets by one application (stolen client secret).
    let d = c.slot();
    let tt = w.at_local(cal, d, 3, 10, 5 * MIN);
    if let Some(app) = t.apps.iter().find(|a| !a.managed && a.vault == 0) {
        let recs: Vec<Rec> = (0..64)
            .map(|i| {
                let sec = v.secrets.get(i % 3).cloned().unwrap_or_default();
                let mut k = secret_get(tt + i as i64 * 3_700, v, &sec, app_claim(t, app, v));
                k.ip = "192.0.2.201";
                k.client = "python-requests/2.31.0";
                kv_rec(&mut c.rng, t, 0, &k)
            })
            .collect();
        push(
            c,
            "azure_mass_secret_retrieval",
            &["kms_mass_secret_retrieval"],
            &app.oid,
            &v.uri(),
            recs,
        );
    }

    // A person enumerates many distinct secrets (30 in six minutes).
    let d = c.slot();
    let tt = w.at_local(cal, d, 16, 15, 7 * MIN);
    let recs: Vec<Rec> = (0..30)
        .map(|i| {
            let name = format!("{}-{i:02}", ["svc-cred", "conn-str", "api-key"][i % 3]);
            let sec = (name, format!("{:032x}", i * 7919));
            let mut k = secret_get(tt + i as i64 * 12_000, v, &sec, human_claim(t, dev));
            k.ip = "198.51.100.88";
            k.client = "azure-cli/2.61.0";
            kv_rec(&mut c.rng, t, 0, &k)
        })
        .collect();
    push(
        c,
        "azure_many_distinct_secrets",
        &["kms_many_distinct_secrets_read"],
        &dev.azure_oid,
        &v.uri(),
        recs,
    );

    // Activity Log: purge protection off, diagnostic setting deleted, a vault deleted.
    let vault_arm = |v: &Vault| {
        let sub = t.subs.get(v.sub).map(|x| x.0.as_str()).unwrap_or("");
        format!(
            "/subscriptions/{sub}/resourceGroups/{}/providers/Microsoft.KeyVault/vaults/{}",
            v.rg, v.name
        )
    };
    let act = |tt: i64,
               v: &Vault,
               resource: String,
               op: &'static str,
               action: &'static str,
               body: Option<String>,
               p: &Person| Act {
        t: tt,
        sub: v.sub,
        resource,
        op,
        action,
        claims: act_claims(t, p, "198.51.100.88"),
        principal_oid: p.azure_oid.clone(),
        principal_type: "User",
        ip: "198.51.100.88",
        body,
    };
    let d = c.slot();
    let tt = w.at_local(cal, d, 20, 5, MIN);
    let a = act(
        tt,
        v,
        vault_arm(v),
        "MICROSOFT.KEYVAULT/VAULTS/WRITE",
        "Microsoft.KeyVault/vaults/write",
        Some(r#"{"properties":{"enablePurgeProtection":false,"enableSoftDelete":true}}"#.into()),
        admin,
    );
    let recs = vec![act_rec(&mut c.rng, t, &a)];
    c.label(
        "azure_purge_protection_disabled",
        &["azure_keyvault_purge_protection_disabled"],
        "Azure",
        &admin.azure_oid,
        &format!("{}/", v.uri()),
        &recs,
    );
    c.inj.azure_act.extend(recs);

    let d = c.slot();
    let tt = w.at_local(cal, d, 20, 30, MIN);
    let res = format!(
        "{}/providers/microsoft.insights/diagnosticSettings/to-sentinel",
        vault_arm(v)
    );
    let a = act(
        tt,
        v,
        res,
        "MICROSOFT.INSIGHTS/DIAGNOSTICSETTINGS/DELETE",
        "Microsoft.Insights/diagnosticSettings/delete",
        None,
        dev,
    );
    let recs = vec![act_rec(&mut c.rng, t, &a)];
    c.label(
        "azure_diagnostic_setting_deleted",
        &["azure_keyvault_diagnostic_setting_deleted"],
        "Azure",
        &dev.azure_oid,
        &format!("{}/", v.uri()),
        &recs,
    );
    c.inj.azure_act.extend(recs);

    let d = c.slot();
    let tt = w.at_local(cal, d, 21, 10, MIN);
    let old = Vault {
        name: "kv-legacy-batch".into(),
        rg: "rg-platform",
        sub: 0,
        keys: Vec::new(),
        secrets: Vec::new(),
    };
    let a = act(
        tt,
        &old,
        vault_arm(&old),
        "MICROSOFT.KEYVAULT/VAULTS/DELETE",
        "Microsoft.KeyVault/vaults/delete",
        None,
        dev,
    );
    let recs = vec![act_rec(&mut c.rng, t, &a)];
    c.label(
        "azure_vault_deleted",
        &["kms_vault_deleted"],
        "Azure",
        &dev.azure_oid,
        &format!("{}/", old.uri()),
        &recs,
    );
    c.inj.azure_act.extend(recs);
}
