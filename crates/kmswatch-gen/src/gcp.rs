//! GCP: Cloud Audit Logs `LogEntry` records as a log sink exports them to Cloud Storage:
//! hourly JSON-lines files per log (`data_access`, `activity`).

use crate::clock::{civil, nanos_z, HOUR, MIN};
use crate::rng::Rng;
use crate::scenario::Ctx;
use crate::world::{GcpProject, World};
use crate::{take_hour, write_file, CloudCounts, GenError, Rec};
use std::fmt::Write as _;
use std::path::Path;

/// Bucket (file) of the data-access log.
const DATA_ACCESS: u32 = 0;
/// Bucket of the admin-activity log.
const ACTIVITY: u32 = 1;

/// One audit log entry.
pub(crate) struct Entry<'a> {
    pub t: i64,
    pub p: &'a GcpProject,
    pub email: String,
    pub ip: &'a str,
    pub ua: &'a str,
    pub service: &'a str,
    pub method: &'a str,
    pub resource: String,
    pub permission: &'a str,
    pub perm_type: &'a str,
    pub request: String,
    pub response: Option<String>,
    pub service_data: Option<String>,
    pub res_type: &'a str,
    pub labels: String,
    pub activity: bool,
    pub denied: Option<(u32, String)>,
}

impl<'a> Entry<'a> {
    /// A Cloud KMS call on a key of project `p`.
    pub(crate) fn kms(
        t: i64,
        p: &'a GcpProject,
        email: String,
        method: &'a str,
        key: &str,
        permission: &'a str,
        req_type: &str,
    ) -> Entry<'a> {
        let name = p.key_name(key);
        Entry {
            t,
            p,
            email,
            ip: "private",
            ua: "grpc-java-netty/1.62.2,gzip(gfe)",
            service: "cloudkms.googleapis.com",
            method,
            request: format!(
                r#"{{"@type":"type.googleapis.com/google.cloud.kms.v1.{req_type}","name":"{name}"}}"#
            ),
            resource: name,
            permission,
            perm_type: "DATA_READ",
            response: None,
            service_data: None,
            res_type: "cloudkms_cryptokey",
            labels: format!(
                r#"{{"project_id":"{}","location":"{}","key_ring_id":"{}","crypto_key_id":"{key}"}}"#,
                p.id, p.location, p.ring
            ),
            activity: false,
            denied: None,
        }
    }

    pub(crate) fn json(&self, r: &mut Rng) -> String {
        let ts = nanos_z(self.t, r.below(1_000_000) as u32);
        let mut o = String::with_capacity(1400);
        let status = match &self.denied {
            Some((code, msg)) => format!(r#"{{"code":{code},"message":{}}}"#, crate::json::s(msg)),
            None => "{}".into(),
        };
        let ua = if self.ua.is_empty() {
            String::new()
        } else {
            format!(r#","callerSuppliedUserAgent":{}"#, crate::json::s(self.ua))
        };
        let _ = write!(
            o,
            r#"{{"protoPayload":{{"@type":"type.googleapis.com/google.cloud.audit.AuditLog","status":{status},"authenticationInfo":{{"principalEmail":"{}"}},"requestMetadata":{{"callerIp":"{}"{ua},"requestAttributes":{{"time":"{ts}","auth":{{}}}},"destinationAttributes":{{}}}},"serviceName":"{}","methodName":"{}","authorizationInfo":[{{"resource":"{}","permission":"{}","granted":{},"resourceAttributes":{{}},"permissionType":"{}"}}],"resourceName":"{}","request":{}"#,
            self.email,
            self.ip,
            self.service,
            self.method,
            self.resource,
            self.permission,
            self.denied.is_none(),
            self.perm_type,
            self.resource,
            self.request
        );
        if let Some(resp) = &self.response {
            let _ = write!(o, r#","response":{resp}"#);
        }
        if self.service == "cloudkms.googleapis.com" {
            let _ = write!(
                o,
                r#","resourceLocation":{{"currentLocations":["{}"]}}"#,
                self.p.location
            );
        }
        if let Some(sd) = &self.service_data {
            let _ = write!(o, r#","serviceData":{sd}"#);
        }
        let log = if self.activity {
            "activity"
        } else {
            "data_access"
        };
        let sev = match (&self.denied, self.activity) {
            (Some(_), _) => "ERROR",
            (None, true) => "NOTICE",
            (None, false) => "INFO",
        };
        let _ = write!(
            o,
            r#"}},"insertId":"{}","resource":{{"type":"{}","labels":{}}},"timestamp":"{ts}","severity":"{sev}","logName":"projects/{}/logs/cloudaudit.googleapis.com%2F{log}","receiveTimestamp":"{}"}}"#,
            r.hex(12),
            self.res_type,
            self.labels,
            self.p.id,
            nanos_z(self.t + r.range(50, 900), r.below(1_000_000) as u32)
        );
        o
    }

    pub(crate) fn rec(&self, r: &mut Rng) -> Rec {
        Rec {
            t: self.t,
            bucket: if self.activity { ACTIVITY } else { DATA_ACCESS },
            kms: self.service == "cloudkms.googleapis.com",
            json: self.json(r),
        }
    }
}

fn benign(w: &World, r: &mut Rng, t0: i64, out: &mut Vec<Rec>) {
    let nk = w.non_kms();
    for p in &w.gcp {
        let hourly = |per_day: f64| w.hourly(&p.cal, t0, per_day);
        let at = |r: &mut Rng| t0 + r.range(0, HOUR);
        for _ in 0..r.round(hourly(2500.0)) {
            let (Some(sa), Some(key)) = (r.pick(&p.sas).cloned(), r.pick(&p.keys).cloned()) else {
                break;
            };
            let e = if r.chance(0.6) {
                Entry::kms(
                    at(r),
                    p,
                    sa,
                    "Decrypt",
                    &key,
                    "cloudkms.cryptoKeyVersions.useToDecrypt",
                    "DecryptRequest",
                )
            } else {
                Entry::kms(
                    at(r),
                    p,
                    sa,
                    "Encrypt",
                    &key,
                    "cloudkms.cryptoKeyVersions.useToEncrypt",
                    "EncryptRequest",
                )
            };
            out.push(e.rec(r));
        }
        for _ in 0..r.round(hourly(1500.0)) {
            let Some(key) = r.pick(&p.keys).cloned() else {
                break;
            };
            let e = if r.chance(0.5) {
                Entry::kms(
                    at(r),
                    p,
                    p.gcs_agent(),
                    "Decrypt",
                    &key,
                    "cloudkms.cryptoKeyVersions.useToDecrypt",
                    "DecryptRequest",
                )
            } else {
                Entry::kms(
                    at(r),
                    p,
                    p.gcs_agent(),
                    "Encrypt",
                    &key,
                    "cloudkms.cryptoKeyVersions.useToEncrypt",
                    "EncryptRequest",
                )
            };
            out.push(e.rec(r));
        }
        for _ in 0..r.round(hourly(300.0)) {
            let Some(key) = r.pick(&p.keys).cloned() else {
                break;
            };
            let agent = format!(
                "service-{}@compute-system.iam.gserviceaccount.com",
                p.number
            );
            let e = Entry::kms(
                at(r),
                p,
                agent,
                "Decrypt",
                &key,
                "cloudkms.cryptoKeyVersions.useToDecrypt",
                "DecryptRequest",
            );
            out.push(e.rec(r));
        }
        // People read key metadata in business hours; admins now and then create a key.
        if p.cal.business(t0) {
            for _ in 0..r.round(15.0 / 9.0) {
                let Some(person) = w
                    .people
                    .iter()
                    .filter(|x| x.active)
                    .nth(r.below(6) as usize)
                else {
                    continue;
                };
                let Some(key) = r.pick(&p.keys).cloned() else {
                    continue;
                };
                let mut e = match r.below(3) {
                    0 => Entry::kms(
                        at(r),
                        p,
                        person.email(),
                        "GetCryptoKey",
                        &key,
                        "cloudkms.cryptoKeys.get",
                        "GetCryptoKeyRequest",
                    ),
                    1 => Entry::kms(
                        at(r),
                        p,
                        person.email(),
                        "GetIamPolicy",
                        &key,
                        "cloudkms.cryptoKeys.getIamPolicy",
                        "GetIamPolicyRequest",
                    ),
                    _ => {
                        let mut e = Entry::kms(
                            at(r),
                            p,
                            person.email(),
                            "ListCryptoKeys",
                            &key,
                            "cloudkms.cryptoKeys.list",
                            "ListCryptoKeysRequest",
                        );
                        let ring = format!(
                            "projects/{}/locations/{}/keyRings/{}",
                            p.id, p.location, p.ring
                        );
                        e.request = format!(
                            r#"{{"@type":"type.googleapis.com/google.cloud.kms.v1.ListCryptoKeysRequest","parent":"{ring}"}}"#
                        );
                        e.resource = ring;
                        e.res_type = "cloudkms_keyring";
                        e.labels = format!(
                            r#"{{"project_id":"{}","location":"{}","key_ring_id":"{}"}}"#,
                            p.id, p.location, p.ring
                        );
                        e
                    }
                };
                e.perm_type = "ADMIN_READ";
                e.ip = "203.0.113.10";
                e.ua = "google-cloud-sdk gcloud/470.0.0 command/gcloud.kms.keys.describe";
                out.push(e.rec(r));
            }
            if r.chance(0.1) {
                if let Some(admin) = w.people.iter().find(|x| x.admin) {
                    let key = format!("app-{}", r.hex(6));
                    let tt = at(r);
                    let mut e = Entry::kms(
                        tt,
                        p,
                        admin.email(),
                        "CreateCryptoKey",
                        &key,
                        "cloudkms.cryptoKeys.create",
                        "CreateCryptoKeyRequest",
                    );
                    e.activity = true;
                    e.perm_type = "ADMIN_WRITE";
                    e.ip = "203.0.113.10";
                    e.ua = "google-cloud-sdk gcloud/470.0.0 command/gcloud.kms.keys.create";
                    let ring = format!(
                        "projects/{}/locations/{}/keyRings/{}",
                        p.id, p.location, p.ring
                    );
                    e.request = format!(
                        r#"{{"@type":"type.googleapis.com/google.cloud.kms.v1.CreateCryptoKeyRequest","parent":"{ring}","cryptoKeyId":"{key}","cryptoKey":{{"purpose":"ENCRYPT_DECRYPT","rotationPeriod":"7776000s","versionTemplate":{{"algorithm":"GOOGLE_SYMMETRIC_ENCRYPTION","protectionLevel":"SOFTWARE"}}}}}}"#
                    );
                    e.response = Some(format!(
                        r#"{{"@type":"type.googleapis.com/google.cloud.kms.v1.CryptoKey","name":"{}","purpose":"ENCRYPT_DECRYPT","primary":{{"name":"{}/cryptoKeyVersions/1","state":"ENABLED"}},"rotationPeriod":"7776000s"}}"#,
                        e.resource, e.resource
                    ));
                    out.push(e.rec(r));
                }
            }
        }
        // Other services: object reads and writes, infrastructure changes.
        for _ in 0..r.round(hourly(1500.0 * nk)) {
            let Some(sa) = r.pick(&p.sas).cloned() else {
                break;
            };
            let read = r.chance(0.7);
            let bucket = format!("{}-data", p.id);
            let obj = format!(
                "projects/_/buckets/{bucket}/objects/exports/{}.avro",
                r.hex(10)
            );
            let e = Entry {
                t: at(r),
                p,
                email: sa,
                ip: "10.128.0.12",
                ua: "gcloud-python/3.1.0 gl-python/3.11.8 grpc/1.62.1",
                service: "storage.googleapis.com",
                method: if read {
                    "storage.objects.get"
                } else {
                    "storage.objects.create"
                },
                request: "{}".into(),
                resource: obj,
                permission: if read {
                    "storage.objects.get"
                } else {
                    "storage.objects.create"
                },
                perm_type: if read { "DATA_READ" } else { "DATA_WRITE" },
                response: None,
                service_data: None,
                res_type: "gcs_bucket",
                labels: format!(
                    r#"{{"project_id":"{}","bucket_name":"{bucket}","location":"{}"}}"#,
                    p.id, p.location
                ),
                activity: false,
                denied: None,
            };
            out.push(e.rec(r));
        }
        for _ in 0..r.round(hourly(400.0 * nk)) {
            let Some(sa) = r.pick(&p.sas).cloned() else {
                break;
            };
            let zone = format!("{}-b", p.location);
            let inst = format!("web-{}", r.below(40));
            let e = Entry {
                t: at(r),
                p,
                email: sa,
                ip: "10.128.0.20",
                ua: "google-api-go-client/0.5 Terraform/1.7.5",
                service: "compute.googleapis.com",
                method: "v1.compute.instances.insert",
                request: r#"{"@type":"type.googleapis.com/compute.instances.insert"}"#.into(),
                resource: format!("projects/{}/zones/{zone}/instances/{inst}", p.id),
                permission: "compute.instances.create",
                perm_type: "ADMIN_WRITE",
                response: None,
                service_data: None,
                res_type: "gce_instance",
                labels: format!(
                    r#"{{"project_id":"{}","zone":"{zone}","instance_id":"{}"}}"#,
                    p.id,
                    r.range(1_000_000, 9_999_999)
                ),
                activity: true,
                denied: None,
            };
            out.push(e.rec(r));
        }
    }
}

/// Write the GCP part of the corpus.
pub(crate) fn run(
    w: &World,
    seed: u64,
    mut inj: Vec<Rec>,
    out: &Path,
    tick: &(dyn Fn() + Sync),
) -> Result<CloudCounts, GenError> {
    let mut r = Rng::new(seed, "gcp");
    inj.sort_by_key(|x| (x.t, x.bucket));
    let mut pos = 0;
    let mut counts = CloudCounts::default();
    let mut recs = Vec::new();
    let mut t0 = w.start_ms;
    while t0 < w.end_ms {
        recs.clear();
        benign(w, &mut r, t0, &mut recs);
        take_hour(&inj, &mut pos, t0 + HOUR, &mut recs);
        recs.sort_by_key(|x| (x.bucket, x.t));
        let c = civil(t0);
        for group in recs.chunk_by(|a, b| a.bucket == b.bucket) {
            let Some(first) = group.first() else { continue };
            let log = if first.bucket == ACTIVITY {
                "activity"
            } else {
                "data_access"
            };
            let path = out.join(format!(
                "gcp/cloudaudit.googleapis.com/{log}/{:04}/{:02}/{:02}/{:02}:00:00_{:02}:59:59_S0.json",
                c.y, c.mo, c.d, c.h, c.h
            ));
            let mut body = String::with_capacity(group.len() * 1400);
            for x in group {
                body.push_str(&x.json);
                body.push('\n');
                counts.records += 1;
                counts.kms_records += u64::from(x.kms);
            }
            counts.bytes += write_file(&path, body.as_bytes())?;
            counts.files += 1;
        }
        tick();
        t0 += HOUR;
    }
    Ok(counts)
}

/// The GCP scenarios.
pub(crate) fn scenarios(c: &mut Ctx<'_>) {
    let w = c.w;
    let Some(p) = w.gcp.first() else { return };
    let cal = &p.cal;
    let (Some(dev), Some(admin)) = (w.people.get(5), w.people.get(1)) else {
        return;
    };
    let key = p.keys.get(1).cloned().unwrap_or_default();
    let key_uid = p.key_name(&key);
    let gcloud = |e: &mut Entry<'_>, cmd: &str| {
        e.ip = "198.51.100.120";
        e.ua = match cmd {
            "decrypt" => "google-cloud-sdk gcloud/470.0.0 command/gcloud.kms.decrypt",
            "destroy" => "google-cloud-sdk gcloud/470.0.0 command/gcloud.kms.keys.versions.destroy",
            "disable" => "google-cloud-sdk gcloud/470.0.0 command/gcloud.kms.keys.versions.disable",
            _ => "google-cloud-sdk gcloud/470.0.0 command/gcloud.kms.keys.update",
        };
    };
    let push =
        |c: &mut Ctx<'_>, scen: &str, rules: &[&str], who: &str, k: &str, es: Vec<Entry<'_>>| {
            let recs: Vec<Rec> = es.iter().map(|e| e.rec(&mut c.rng)).collect();
            c.label(scen, rules, "GCP", who, k, &recs);
            c.inj.gcp.extend(recs);
        };

    let d = c.slot();
    let t = w.at_local(cal, d, 10, 44, MIN);
    let mut e = Entry::kms(
        t,
        p,
        dev.email(),
        "Decrypt",
        &key,
        "cloudkms.cryptoKeyVersions.useToDecrypt",
        "DecryptRequest",
    );
    gcloud(&mut e, "decrypt");
    push(
        c,
        "gcp_human_decrypt",
        &["kms_human_decrypt"],
        &dev.email(),
        &key_uid,
        vec![e],
    );

    // Version lifecycle attacks on a key no workload uses.
    let legacy = "legacy-exports";
    let legacy_uid = p.key_name(legacy);
    let version = |e: &mut Entry<'_>, v: u32| {
        e.resource = format!("{}/cryptoKeyVersions/{v}", e.resource);
        e.res_type = "cloudkms_cryptokeyversion";
        e.labels = format!(
            r#"{{"project_id":"{}","location":"{}","key_ring_id":"{}","crypto_key_id":"{legacy}","crypto_key_version_id":"{v}"}}"#,
            p.id, p.location, p.ring
        );
        e.activity = true;
        e.perm_type = "ADMIN_WRITE";
    };
    let d = c.slot();
    let t = w.at_local(cal, d, 22, 41, MIN);
    let mut e = Entry::kms(
        t,
        p,
        dev.email(),
        "DestroyCryptoKeyVersion",
        legacy,
        "cloudkms.cryptoKeyVersions.destroy",
        "DestroyCryptoKeyVersionRequest",
    );
    version(&mut e, 1);
    gcloud(&mut e, "destroy");
    e.request = format!(
        r#"{{"@type":"type.googleapis.com/google.cloud.kms.v1.DestroyCryptoKeyVersionRequest","name":"{}"}}"#,
        e.resource
    );
    e.response = Some(format!(
        r#"{{"@type":"type.googleapis.com/google.cloud.kms.v1.CryptoKeyVersion","name":"{}","state":"DESTROY_SCHEDULED","destroyTime":"{}","algorithm":"GOOGLE_SYMMETRIC_ENCRYPTION"}}"#,
        e.resource,
        nanos_z(t + 30 * 24 * HOUR, 0)
    ));
    push(
        c,
        "gcp_destroy_key_version",
        &["kms_key_version_destroyed"],
        &dev.email(),
        &legacy_uid,
        vec![e],
    );

    let d = c.slot();
    let t = w.at_local(cal, d, 22, 40, MIN);
    let mut e = Entry::kms(
        t,
        p,
        dev.email(),
        "UpdateCryptoKeyVersion",
        legacy,
        "cloudkms.cryptoKeyVersions.update",
        "UpdateCryptoKeyVersionRequest",
    );
    version(&mut e, 2);
    gcloud(&mut e, "disable");
    e.request = format!(
        r#"{{"@type":"type.googleapis.com/google.cloud.kms.v1.UpdateCryptoKeyVersionRequest","cryptoKeyVersion":{{"name":"{}","state":"DISABLED"}},"updateMask":"state"}}"#,
        e.resource
    );
    push(
        c,
        "gcp_disable_key_version",
        &["kms_key_disabled"],
        &dev.email(),
        &legacy_uid,
        vec![e],
    );

    let d = c.slot();
    let t = w.at_local(cal, d, 2, 0, 10 * MIN);
    let es: Vec<Entry<'_>> = (0..28)
        .map(|i| {
            let mut e = Entry::kms(
                t + i * 17_000,
                p,
                dev.email(),
                "Decrypt",
                &key,
                "cloudkms.cryptoKeyVersions.useToDecrypt",
                "DecryptRequest",
            );
            gcloud(&mut e, "decrypt");
            e
        })
        .collect();
    push(
        c,
        "gcp_off_hours_bulk_decrypt",
        &["kms_off_hours_bulk_key_use", "kms_human_decrypt"],
        &dev.email(),
        &key_uid,
        es,
    );

    // Ransomware through CMEK: the storage agent encrypts 150 objects in nine minutes.
    let d = c.slot();
    let t = w.at_local(cal, d, 3, 5, 10 * MIN);
    let bkey = p.keys.first().cloned().unwrap_or_default();
    let es: Vec<Entry<'_>> = (0..150)
        .map(|i| {
            Entry::kms(
                t + i * 3_600,
                p,
                p.gcs_agent(),
                "Encrypt",
                &bkey,
                "cloudkms.cryptoKeyVersions.useToEncrypt",
                "EncryptRequest",
            )
        })
        .collect();
    push(
        c,
        "gcp_storage_agent_bulk_encrypt",
        &["gcp_storage_agent_bulk_encrypt"],
        &p.gcs_agent(),
        &p.key_name(&bkey),
        es,
    );

    // Key opened to the world (by an admin, so only the public-policy rule applies).
    let d = c.slot();
    let t = w.at_local(cal, d, 15, 20, MIN);
    let mut e = Entry::kms(
        t,
        p,
        admin.email(),
        "SetIamPolicy",
        &key,
        "cloudkms.cryptoKeys.setIamPolicy",
        "SetIamPolicyRequest",
    );
    e.activity = true;
    e.perm_type = "ADMIN_WRITE";
    e.ip = "203.0.113.10";
    e.ua = "google-cloud-sdk gcloud/470.0.0 command/gcloud.kms.keys.add-iam-policy-binding";
    e.request = format!(
        r#"{{"@type":"type.googleapis.com/google.iam.v1.SetIamPolicyRequest","resource":"{key_uid}","policy":{{"bindings":[{{"role":"roles/cloudkms.cryptoKeyEncrypterDecrypter","members":["serviceAccount:orders-api@{0}.iam.gserviceaccount.com","allUsers"]}}],"etag":"BwYZ1x2y3z4="}}}}"#,
        p.id
    );
    e.response = Some(format!(
        r#"{{"@type":"type.googleapis.com/google.iam.v1.Policy","bindings":[{{"role":"roles/cloudkms.cryptoKeyEncrypterDecrypter","members":["serviceAccount:orders-api@{0}.iam.gserviceaccount.com","allUsers"]}}],"etag":"BwYZ1x9y8z7="}}"#,
        p.id
    ));
    e.service_data = Some(r#"{"@type":"type.googleapis.com/google.iam.v1.logging.AuditData","policyDelta":{"bindingDeltas":[{"action":"ADD","role":"roles/cloudkms.cryptoKeyEncrypterDecrypter","member":"allUsers"}]}}"#.into());
    push(
        c,
        "gcp_key_made_public",
        &["kms_key_policy_public"],
        &admin.email(),
        &key_uid,
        vec![e],
    );

    let d = c.slot();
    let t = w.at_local(cal, d, 16, 2, MIN);
    let mut e = Entry::kms(
        t,
        p,
        dev.email(),
        "UpdateCryptoKey",
        &key,
        "cloudkms.cryptoKeys.update",
        "UpdateCryptoKeyRequest",
    );
    e.activity = true;
    e.perm_type = "ADMIN_WRITE";
    gcloud(&mut e, "update");
    e.request = format!(
        r#"{{"@type":"type.googleapis.com/google.cloud.kms.v1.UpdateCryptoKeyRequest","cryptoKey":{{"name":"{key_uid}"}},"updateMask":"rotationPeriod,nextRotationTime"}}"#
    );
    e.response = Some(format!(
        r#"{{"@type":"type.googleapis.com/google.cloud.kms.v1.CryptoKey","name":"{key_uid}","purpose":"ENCRYPT_DECRYPT"}}"#
    ));
    push(
        c,
        "gcp_rotation_removed",
        &["kms_key_rotation_disabled"],
        &dev.email(),
        &key_uid,
        vec![e],
    );

    // Access-denied burst: a workload identity probing keys it may not use.
    let d = c.slot();
    let t = w.at_local(cal, d, 5, 30, 5 * MIN);
    let sa = p.sas.get(3).cloned().unwrap_or_default();
    let es: Vec<Entry<'_>> = (0..12)
        .map(|i| {
            let k = p.keys.get(i as usize % p.keys.len().max(1)).cloned().unwrap_or_default();
            let mut e = Entry::kms(t + i * 19_000, p, sa.clone(), "Decrypt", &k, "cloudkms.cryptoKeyVersions.useToDecrypt", "DecryptRequest");
            e.ip = "10.128.0.99";
            e.denied = Some((7, format!("Permission 'cloudkms.cryptoKeyVersions.useToDecrypt' denied on resource '{}' (or it may not exist).", p.key_name(&k))));
            e
        })
        .collect();
    push(
        c,
        "gcp_access_denied_burst",
        &["kms_access_denied_burst"],
        &sa,
        &key_uid,
        es,
    );

    // Logging tampering: Cloud KMS data-access logs turned off, the SIEM sink disabled.
    let d = c.slot();
    let t = w.at_local(cal, d, 23, 5, MIN);
    let proj = format!("projects/{}", p.id);
    let e = Entry {
        t,
        p,
        email: dev.email(),
        ip: "198.51.100.120",
        ua: "Mozilla/5.0 (X11; Linux x86_64) Firefox/125.0,gzip(gfe)",
        service: "cloudresourcemanager.googleapis.com",
        method: "SetIamPolicy",
        resource: proj.clone(),
        permission: "resourcemanager.projects.setIamPolicy",
        perm_type: "ADMIN_WRITE",
        request: format!(r#"{{"@type":"type.googleapis.com/google.iam.v1.SetIamPolicyRequest","resource":"{}","policy":{{"bindings":[{{"role":"roles/owner","members":["user:{}"]}}],"etag":"BwYZabcdefg="}},"updateMask":"bindings,etag,auditConfigs"}}"#, p.id, admin.email()),
        response: Some(format!(r#"{{"@type":"type.googleapis.com/google.iam.v1.Policy","bindings":[{{"role":"roles/owner","members":["user:{}"]}}],"etag":"BwYZhijklmn="}}"#, admin.email())),
        service_data: Some(r#"{"@type":"type.googleapis.com/google.iam.v1.logging.AuditData","policyDelta":{"auditConfigDeltas":[{"action":"REMOVE","service":"cloudkms.googleapis.com","logType":"DATA_READ"},{"action":"REMOVE","service":"cloudkms.googleapis.com","logType":"DATA_WRITE"}]}}"#.into()),
        res_type: "project",
        labels: format!(r#"{{"project_id":"{}"}}"#, p.id),
        activity: true,
        denied: None,
    };
    push(
        c,
        "gcp_audit_config_removed",
        &["gcp_kms_audit_logging_changed"],
        &dev.email(),
        &proj,
        vec![e],
    );

    let d = c.slot();
    let t = w.at_local(cal, d, 23, 8, MIN);
    let sink = format!("projects/{}/sinks/kms-to-siem", p.id);
    let e = Entry {
        t,
        p,
        email: dev.email(),
        ip: "198.51.100.120",
        ua: "google-cloud-sdk gcloud/470.0.0 command/gcloud.logging.sinks.update",
        service: "logging.googleapis.com",
        method: "google.logging.v2.ConfigServiceV2.UpdateSink",
        resource: sink.clone(),
        permission: "logging.sinks.update",
        perm_type: "ADMIN_WRITE",
        request: format!(
            r#"{{"@type":"type.googleapis.com/google.logging.v2.UpdateSinkRequest","sinkName":"{sink}","sink":{{"name":"kms-to-siem","destination":"pubsub.googleapis.com/projects/{}/topics/kms-audit","filter":"protoPayload.serviceName=\"cloudkms.googleapis.com\"","disabled":true}},"updateMask":"disabled"}}"#,
            p.id
        ),
        response: None,
        service_data: None,
        res_type: "logging_sink",
        labels: format!(
            r#"{{"project_id":"{}","name":"kms-to-siem","destination":""}}"#,
            p.id
        ),
        activity: true,
        denied: None,
    };
    push(
        c,
        "gcp_log_sink_disabled",
        &["gcp_log_sink_changed"],
        &dev.email(),
        &sink,
        vec![e],
    );
}
