//! AWS CloudTrail: records as CloudTrail writes them, delivered as gzipped S3 objects
//! `{"Records":[...]}` every five minutes per account and region.

use crate::clock::{civil, secs_z, HOUR, MIN};
use crate::json::s;
use crate::rng::Rng;
use crate::scenario::Ctx;
use crate::world::{AwsAccount, AwsKey, World};
use crate::{gzip, take_hour, write_file, CloudCounts, GenError, Rec};
use std::fmt::Write as _;
use std::path::Path;

/// A stable IAM-style unique id (`AROA` + 17 upper-case characters) for a name.
fn pid(prefix: &str, name: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    format!("{prefix}{h:016X}Z")
}

pub(crate) fn iam_user(acct: &str, name: &str) -> String {
    format!(
        r#"{{"type":"IAMUser","principalId":"{}","arn":"arn:aws:iam::{acct}:user/{name}","accountId":"{acct}","accessKeyId":"{}","userName":"{name}"}}"#,
        pid("AIDA", name),
        pid("AKIA", name)
    )
}

fn session(
    acct: &str,
    role_path: &str,
    role: &str,
    sess: &str,
    invoked_by: Option<&str>,
) -> String {
    let rid = pid("AROA", role);
    let inv = invoked_by
        .map(|i| format!(r#","invokedBy":"{i}""#))
        .unwrap_or_default();
    format!(
        r#"{{"type":"AssumedRole","principalId":"{rid}:{sess}","arn":"arn:aws:sts::{acct}:assumed-role/{role}/{sess}","accountId":"{acct}","accessKeyId":"{}","sessionContext":{{"sessionIssuer":{{"type":"Role","principalId":"{rid}","arn":"arn:aws:iam::{acct}:role/{role_path}{role}","accountId":"{acct}","userName":"{role}"}},"attributes":{{"creationDate":"2026-01-01T00:00:00Z","mfaAuthenticated":"false"}}}}{inv}}}"#,
        pid("ASIA", sess)
    )
}

pub(crate) fn role(acct: &str, role: &str, sess: &str, invoked_by: Option<&str>) -> String {
    session(acct, "", role, sess, invoked_by)
}

pub(crate) fn human(a: &AwsAccount, w: &World, hi: usize) -> (String, String) {
    let Some(h) = a.humans.get(hi).or(a.humans.first()) else {
        return (iam_user(&a.id, "nobody"), String::new());
    };
    let p = &w.people[h.person];
    let ident = match h.permission_set {
        Some(set) => session(
            &a.id,
            "aws-reserved/sso.amazonaws.com/",
            &format!("AWSReservedSSO_{set}_{}", a.sso_suffix),
            &p.email(),
            None,
        ),
        None => iam_user(&a.id, &p.handle),
    };
    (ident, a.human_uid(w, h))
}

pub(crate) fn aws_service(svc: &str) -> String {
    format!(r#"{{"type":"AWSService","invokedBy":"{svc}"}}"#)
}

pub(crate) fn root(acct: &str) -> String {
    format!(
        r#"{{"type":"Root","principalId":"{acct}","arn":"arn:aws:iam::{acct}:root","accountId":"{acct}","accessKeyId":"{}"}}"#,
        pid("ASIA", "root")
    )
}

pub(crate) fn key_res(k: &AwsKey) -> String {
    let acct = k.arn.split(':').nth(4).unwrap_or("");
    format!(
        r#"[{{"accountId":"{acct}","type":"AWS::KMS::Key","ARN":"{}"}}]"#,
        k.arn
    )
}

/// One CloudTrail call.
pub(crate) struct Call<'a> {
    pub t: i64,
    pub acct: &'a str,
    pub region: &'a str,
    pub ident: String,
    pub source: &'a str,
    pub name: &'a str,
    pub ip: &'a str,
    pub ua: &'a str,
    pub req: String,
    pub resp: String,
    pub resources: String,
    pub read_only: bool,
    pub service_event: bool,
    pub data: bool,
    pub error: Option<(&'a str, String)>,
    pub extra: String,
}

impl<'a> Call<'a> {
    pub(crate) fn new(
        t: i64,
        acct: &'a str,
        region: &'a str,
        ident: String,
        source: &'a str,
        name: &'a str,
    ) -> Call<'a> {
        Call {
            t,
            acct,
            region,
            ident,
            source,
            name,
            ip: "10.0.12.34",
            ua: "aws-sdk-java/2.25.0 Linux/5.10 OpenJDK_64-Bit_Server_VM/17.0.10",
            req: "null".into(),
            resp: "null".into(),
            resources: String::new(),
            read_only: true,
            service_event: false,
            data: false,
            error: None,
            extra: String::new(),
        }
    }

    pub(crate) fn json(&self, r: &mut Rng) -> String {
        let mut o = String::with_capacity(1200);
        let _ = write!(
            o,
            r#"{{"eventVersion":"1.10","userIdentity":{},"eventTime":"{}","eventSource":"{}","eventName":"{}","awsRegion":"{}","sourceIPAddress":"{}","userAgent":{},"#,
            self.ident,
            secs_z(self.t),
            self.source,
            self.name,
            self.region,
            self.ip,
            s(self.ua)
        );
        if let Some((code, msg)) = &self.error {
            let _ = write!(o, r#""errorCode":"{code}","errorMessage":{},"#, s(msg));
        }
        let _ = write!(
            o,
            r#""requestParameters":{},"responseElements":{},"#,
            self.req, self.resp
        );
        if !self.service_event {
            let _ = write!(o, r#""requestID":"{}","#, r.uuid());
        }
        let _ = write!(
            o,
            r#""eventID":"{}","readOnly":{},"#,
            r.uuid(),
            self.read_only
        );
        if !self.resources.is_empty() {
            let _ = write!(o, r#""resources":{},"#, self.resources);
        }
        let _ = write!(
            o,
            r#""eventType":"{}","managementEvent":{},"recipientAccountId":"{}",{}"eventCategory":"{}""#,
            if self.service_event {
                "AwsServiceEvent"
            } else {
                "AwsApiCall"
            },
            !self.data,
            self.acct,
            self.extra,
            if self.data { "Data" } else { "Management" }
        );
        if !self.service_event && !self.ip.ends_with(".amazonaws.com") {
            let _ = write!(
                o,
                r#","tlsDetails":{{"tlsVersion":"TLSv1.3","cipherSuite":"TLS_AES_128_GCM_SHA256","clientProvidedHostHeader":"{}.{}.amazonaws.com"}}"#,
                self.source.trim_end_matches(".amazonaws.com"),
                self.region
            );
        }
        o.push('}');
        o
    }
}

pub(crate) fn rec(r: &mut Rng, bucket: u32, c: &Call<'_>) -> Rec {
    Rec {
        t: c.t,
        bucket,
        kms: c.source == "kms.amazonaws.com",
        json: c.json(r),
    }
}

const CRYPTO_CTX: [&str; 4] = ["orders", "billing", "exports", "sessions"];

fn crypto_req(r: &mut Rng, op: &str, k: &AwsKey) -> String {
    let app = r.pick(&CRYPTO_CTX).copied().unwrap_or("orders");
    match op {
        "GenerateDataKey" => format!(
            r#"{{"keyId":"alias/{}","keySpec":"AES_256","encryptionContext":{{"app":"{app}"}}}}"#,
            k.alias
        ),
        _ => format!(
            r#"{{"encryptionAlgorithm":"SYMMETRIC_DEFAULT","encryptionContext":{{"app":"{app}"}}}}"#
        ),
    }
}

/// Benign traffic of one account and region for the hour starting at `t0`.
fn benign(w: &World, r: &mut Rng, ai: usize, ri: usize, t0: i64, out: &mut Vec<Rec>) {
    let Some(a) = w.aws.get(ai) else { return };
    let (Some(region), Some(keys)) = (a.regions.get(ri), a.keys.get(ri)) else {
        return;
    };
    let bucket = (ai * a.regions.len() + ri) as u32;
    let acct = a.id.as_str();
    let nk = w.non_kms();
    let hour = |per_day: f64| w.hourly(&a.cal, t0, per_day);
    let plan: [(u8, f64); 14] = [
        (0, hour(2000.0 * nk)),
        (1, hour(1000.0 * nk)),
        (2, hour(1500.0 * nk)),
        (3, hour(1200.0 * nk)),
        (4, hour(300.0 * nk)),
        (5, hour(400.0 * nk)),
        (6, hour(600.0 * nk)),
        (10, hour(400.0)),
        (11, hour(200.0)),
        (12, hour(150.0)),
        (13, hour(180.0)),
        (14, hour(60.0)),
        (15, hour(3.0)),
        (16, if a.cal.business(t0) { 12.0 / 9.0 } else { 0.0 }),
    ];
    for (kind, expect) in plan {
        for _ in 0..r.round(expect) {
            let t = t0 + r.range(0, HOUR / 1000) * 1000;
            let (role_name, sess) = r
                .pick(&a.roles)
                .cloned()
                .unwrap_or_else(|| ("orders-api".into(), "i-0".into()));
            let Some(k) = r.pick(keys).cloned() else {
                return;
            };
            let ident = role(acct, &role_name, &sess, None);
            let mut c = Call::new(t, acct, region, ident, "kms.amazonaws.com", "Decrypt");
            match kind {
                0 | 1 => {
                    let get = kind == 0;
                    c.source = "s3.amazonaws.com";
                    c.name = if get { "GetObject" } else { "PutObject" };
                    c.data = true;
                    c.read_only = get;
                    let bucket_name = format!("kmswatch-{}-{}", a.name, role_name);
                    let obj = format!("data/{}/{}.parquet", civil(t).h, r.hex(8));
                    c.req = format!(
                        r#"{{"bucketName":"{bucket_name}","Host":"{bucket_name}.s3.{region}.amazonaws.com","key":"{obj}"}}"#
                    );
                    c.resources = format!(
                        r#"[{{"type":"AWS::S3::Object","ARN":"arn:aws:s3:::{bucket_name}/{obj}"}},{{"accountId":"{acct}","type":"AWS::S3::Bucket","ARN":"arn:aws:s3:::{bucket_name}"}}]"#
                    );
                    c.extra = format!(
                        r#""additionalEventData":{{"SignatureVersion":"SigV4","CipherSuite":"TLS_AES_128_GCM_SHA256","bytesTransferredIn":{},"AuthenticationMethod":"AuthHeader","x-amz-id-2":"{}","bytesTransferredOut":{}}},"#,
                        if get { 0 } else { r.range(100, 900_000) },
                        r.hex(24),
                        if get { r.range(100, 900_000) } else { 0 }
                    );
                }
                2 => {
                    c.source = "ec2.amazonaws.com";
                    c.name = r
                        .pick(&[
                            "DescribeInstances",
                            "DescribeVolumes",
                            "DescribeSecurityGroups",
                            "DescribeSubnets",
                        ])
                        .copied()
                        .unwrap_or("DescribeInstances");
                    c.req = r#"{"filterSet":{},"maxResults":1000}"#.into();
                    if r.chance(0.3) {
                        c.ident = aws_service("autoscaling.amazonaws.com");
                        c.ip = "autoscaling.amazonaws.com";
                        c.ua = "autoscaling.amazonaws.com";
                    }
                }
                3 => {
                    let svc = r
                        .pick(&[
                            "ecs-tasks.amazonaws.com",
                            "lambda.amazonaws.com",
                            "ec2.amazonaws.com",
                        ])
                        .copied()
                        .unwrap_or("lambda.amazonaws.com");
                    c.ident = aws_service(svc);
                    c.ip = svc;
                    c.ua = svc;
                    c.source = "sts.amazonaws.com";
                    c.name = "AssumeRole";
                    c.req = format!(
                        r#"{{"roleArn":"arn:aws:iam::{acct}:role/{role_name}","roleSessionName":"{sess}"}}"#
                    );
                    c.resp = format!(
                        r#"{{"credentials":{{"accessKeyId":"{}","sessionToken":"IQoJb3JpZ2luX2VjEXAMPLE","expiration":"{}"}},"assumedRoleUser":{{"assumedRoleId":"{}:{sess}","arn":"arn:aws:sts::{acct}:assumed-role/{role_name}/{sess}"}}}}"#,
                        pid("ASIA", &sess),
                        secs_z(t + HOUR),
                        pid("AROA", &role_name)
                    );
                    c.resources = format!(
                        r#"[{{"accountId":"{acct}","type":"AWS::IAM::Role","ARN":"arn:aws:iam::{acct}:role/{role_name}"}}]"#
                    );
                    c.extra = format!(r#""sharedEventID":"{}","#, r.uuid());
                }
                4 => {
                    c.source = "iam.amazonaws.com";
                    c.region = "us-east-1";
                    c.name = r
                        .pick(&[
                            "GetRole",
                            "ListRoles",
                            "GetPolicy",
                            "ListAttachedRolePolicies",
                        ])
                        .copied()
                        .unwrap_or("GetRole");
                    c.req = format!(r#"{{"roleName":"{role_name}"}}"#);
                }
                5 => {
                    c.source = "secretsmanager.amazonaws.com";
                    c.name = "GetSecretValue";
                    c.req = format!(
                        r#"{{"secretId":"arn:aws:secretsmanager:{region}:{acct}:secret:{role_name}/db-{}"}}"#,
                        r.hex(6)
                    );
                }
                6 => {
                    c.source = "monitoring.amazonaws.com";
                    c.name = "GetMetricData";
                    c.req = r#"{"metricDataQueries":[{"id":"m1","returnData":true}],"scanBy":"TimestampDescending"}"#.into();
                }
                10 => {
                    c.req = crypto_req(r, "Decrypt", &k);
                    c.resources = key_res(&k);
                }
                11 => {
                    c.name = "GenerateDataKey";
                    c.req = crypto_req(r, "GenerateDataKey", &k);
                    c.resources = key_res(&k);
                }
                12 => {
                    c.ident = role(
                        acct,
                        &role_name,
                        &sess,
                        Some("secretsmanager.amazonaws.com"),
                    );
                    c.ip = "secretsmanager.amazonaws.com";
                    c.ua = "secretsmanager.amazonaws.com";
                    c.req = format!(
                        r#"{{"encryptionAlgorithm":"SYMMETRIC_DEFAULT","encryptionContext":{{"SecretARN":"arn:aws:secretsmanager:{region}:{acct}:secret:{role_name}/db","SecretVersionId":"{}"}}}}"#,
                        r.uuid()
                    );
                    c.resources = key_res(&k);
                }
                13 => {
                    c.ident = role(acct, &role_name, &sess, Some("s3.amazonaws.com"));
                    c.ip = "s3.amazonaws.com";
                    c.ua = "s3.amazonaws.com";
                    let put = r.chance(0.55);
                    c.name = if put { "GenerateDataKey" } else { "Decrypt" };
                    c.req = format!(
                        r#"{{"keyId":"{}",{}"encryptionContext":{{"aws:s3:arn":"arn:aws:s3:::kmswatch-{}-{role_name}/data/{}.parquet"}}}}"#,
                        k.arn,
                        if put {
                            r#""keySpec":"AES_256","#
                        } else {
                            r#""encryptionAlgorithm":"SYMMETRIC_DEFAULT","#
                        },
                        a.name,
                        r.hex(8)
                    );
                    c.resources = key_res(&k);
                }
                14 => {
                    c.ident = aws_service("ebs.amazonaws.com");
                    c.ip = "ebs.amazonaws.com";
                    c.ua = "ebs.amazonaws.com";
                    c.req = format!(
                        r#"{{"encryptionContext":{{"aws:ebs:id":"vol-0{}"}},"encryptionAlgorithm":"SYMMETRIC_DEFAULT"}}"#,
                        r.hex(16)
                    );
                    c.resources = key_res(&k);
                    c.extra = format!(r#""sharedEventID":"{}","#, r.uuid());
                }
                15 => {
                    c.error = Some((
                        "AccessDenied",
                        format!("User: arn:aws:sts::{acct}:assumed-role/{role_name}/{sess} is not authorized to perform: kms:Decrypt on resource: {} because no identity-based policy allows the kms:Decrypt action", k.arn),
                    ));
                    c.req = crypto_req(r, "Decrypt", &k);
                    c.resources = key_res(&k);
                }
                _ => admin_call(w, r, a, &k, &mut c),
            }
            out.push(rec(r, bucket, &c));
        }
    }
    // Automatic rotation: each key about once in 20 days, in the small hours.
    if civil(a.cal.local(t0)).h == 3 {
        for (i, k) in keys.iter().enumerate() {
            let first = t0 < w.start_ms + 24 * HOUR && ai == 0 && ri == 0 && i == 0;
            if first || r.chance(0.05) {
                let t = t0 + r.range(0, 3600) * 1000;
                let mut c = Call::new(
                    t,
                    acct,
                    region,
                    format!(r#"{{"accountId":"{acct}","invokedBy":"AWS Internal"}}"#),
                    "kms.amazonaws.com",
                    "RotateKey",
                );
                c.ip = "AWS Internal";
                c.ua = "AWS Internal";
                c.read_only = false;
                c.service_event = true;
                c.resources = key_res(k);
                c.extra = format!(
                    r#""serviceEventDetails":{{"rotationType":"AUTOMATIC","keyId":"{}"}},"#,
                    k.id
                );
                out.push(rec(r, bucket, &c));
            }
        }
    }
}

/// A human's key administration in business hours (never a crypto call, never a deletion).
fn admin_call(w: &World, r: &mut Rng, a: &AwsAccount, k: &AwsKey, c: &mut Call<'_>) {
    let roll = r.below(100);
    let admins: Vec<usize> = a
        .humans
        .iter()
        .enumerate()
        .filter(|(_, h)| w.people[h.person].admin)
        .map(|(i, _)| i)
        .collect();
    let writer = roll >= 70;
    let hi = if writer {
        r.pick(&admins).copied().unwrap_or(0)
    } else {
        r.below(a.humans.len() as u64) as usize
    };
    let (ident, _) = human(a, w, hi);
    c.ident = ident;
    c.ip = r
        .pick(&["198.51.100.23", "198.51.100.24", "203.0.113.40"])
        .copied()
        .unwrap_or("198.51.100.23");
    c.ua = r
        .pick(&[
            "aws-cli/2.15.30 Python/3.11.8 Darwin/23.4.0",
            "Mozilla/5.0 (console)",
            "Boto3/1.34.84 md/Botocore#1.34.84",
        ])
        .copied()
        .unwrap_or("Mozilla/5.0 (console)");
    c.resources = key_res(k);
    c.req = format!(r#"{{"keyId":"{}"}}"#, k.id);
    let acct = a.id.as_str();
    c.name = match roll {
        0..=29 => "DescribeKey",
        30..=44 => {
            c.resources.clear();
            c.req = r#"{"limit":100}"#.into();
            if r.chance(0.5) {
                "ListKeys"
            } else {
                "ListAliases"
            }
        }
        45..=69 => {
            if r.chance(0.5) {
                c.req = format!(r#"{{"keyId":"{}","policyName":"default"}}"#, k.id);
                "GetKeyPolicy"
            } else {
                "GetKeyRotationStatus"
            }
        }
        70..=79 => {
            c.read_only = false;
            c.req = format!(
                r#"{{"keyId":"{}","tags":[{{"tagKey":"cost-center","tagValue":"cc-{}"}}]}}"#,
                k.id,
                r.range(100, 999)
            );
            "TagResource"
        }
        80..=87 => {
            c.read_only = false;
            c.req = format!(r#"{{"keyId":"{}","rotationPeriodInDays":365}}"#, k.id);
            "EnableKeyRotation"
        }
        88..=93 => {
            c.read_only = false;
            let policy = format!(
                r#"{{"Version":"2012-10-17","Statement":[{{"Sid":"Enable IAM User Permissions","Effect":"Allow","Principal":{{"AWS":"arn:aws:iam::{acct}:root"}},"Action":"kms:*","Resource":"*"}},{{"Sid":"AllowUseByWorkload","Effect":"Allow","Principal":{{"AWS":"arn:aws:iam::{acct}:role/orders-api"}},"Action":["kms:Decrypt","kms:GenerateDataKey*"],"Resource":"*"}}]}}"#
            );
            c.req = format!(
                r#"{{"keyId":"{}","policyName":"default","policy":{},"bypassPolicyLockoutSafetyCheck":false}}"#,
                k.arn,
                s(&policy)
            );
            "PutKeyPolicy"
        }
        _ => {
            c.read_only = false;
            let kid = r.uuid();
            let arn = format!("arn:aws:kms:{}:{acct}:key/{kid}", c.region);
            c.req = r#"{"keySpec":"SYMMETRIC_DEFAULT","keyUsage":"ENCRYPT_DECRYPT","origin":"AWS_KMS","description":"application data key","bypassPolicyLockoutSafetyCheck":false,"multiRegion":false}"#.into();
            c.resp = format!(
                r#"{{"keyMetadata":{{"aWSAccountId":"{acct}","keyId":"{kid}","arn":"{arn}","creationDate":"{}","enabled":true,"description":"application data key","keyUsage":"ENCRYPT_DECRYPT","keyState":"Enabled","origin":"AWS_KMS","keyManager":"CUSTOMER","customerMasterKeySpec":"SYMMETRIC_DEFAULT","keySpec":"SYMMETRIC_DEFAULT","encryptionAlgorithms":["SYMMETRIC_DEFAULT"],"multiRegion":false}}}}"#,
                secs_z(c.t)
            );
            c.resources =
                format!(r#"[{{"accountId":"{acct}","type":"AWS::KMS::Key","ARN":"{arn}"}}]"#);
            "CreateKey"
        }
    };
}

/// Write the AWS part of the corpus.
pub(crate) fn run(
    w: &World,
    seed: u64,
    mut inj: Vec<Rec>,
    out: &Path,
    tick: &(dyn Fn() + Sync),
) -> Result<CloudCounts, GenError> {
    let mut r = Rng::new(seed, "aws");
    inj.sort_by_key(|x| (x.t, x.bucket));
    let mut pos = 0;
    let mut counts = CloudCounts::default();
    let mut hour_recs = Vec::new();
    let mut t0 = w.start_ms;
    while t0 < w.end_ms {
        hour_recs.clear();
        for ai in 0..w.aws.len() {
            let nr = w.aws.get(ai).map_or(0, |a| a.regions.len());
            for ri in 0..nr {
                benign(w, &mut r, ai, ri, t0, &mut hour_recs);
            }
        }
        take_hour(&inj, &mut pos, t0 + HOUR, &mut hour_recs);
        hour_recs.sort_by_key(|x| (x.bucket, x.t));
        for group in hour_recs.chunk_by(|x, y| {
            x.bucket == y.bucket && (x.t - t0) / (5 * MIN) == (y.t - t0) / (5 * MIN)
        }) {
            let Some(first) = group.first() else { continue };
            let nr = w.aws.first().map_or(1, |a| a.regions.len().max(1));
            let ai = first.bucket as usize / nr;
            let ri = first.bucket as usize % nr;
            let Some(a) = w.aws.get(ai) else { continue };
            let region = a.regions.get(ri).copied().unwrap_or("us-east-1");
            let slot_end = t0 + ((first.t - t0) / (5 * MIN) + 1) * 5 * MIN;
            let c = civil(slot_end);
            let path = out.join(format!(
                "aws/AWSLogs/{acct}/CloudTrail/{region}/{:04}/{:02}/{:02}/{acct}_CloudTrail_{region}_{:04}{:02}{:02}T{:02}{:02}Z_{}.json.gz",
                c.y, c.mo, c.d, c.y, c.mo, c.d, c.h, c.mi,
                r.hex(16),
                acct = a.id
            ));
            let mut body = String::with_capacity(group.len() * 1300 + 16);
            body.push_str(r#"{"Records":["#);
            for (i, x) in group.iter().enumerate() {
                if i > 0 {
                    body.push(',');
                }
                body.push_str(&x.json);
                counts.records += 1;
                counts.kms_records += u64::from(x.kms);
            }
            body.push_str("]}");
            let gz = gzip(body.as_bytes(), &path)?;
            counts.bytes += write_file(&path, &gz)?;
            counts.files += 1;
        }
        tick();
        t0 += HOUR;
    }
    Ok(counts)
}

/// The AWS scenarios.
pub(crate) fn scenarios(c: &mut Ctx<'_>) {
    let w = c.w;
    let ext = w.aws_external.clone();
    let Some(a) = w.aws.first() else { return };
    let Some(b) = w.aws.get(1) else { return };
    let acct = a.id.as_str();
    let region = "us-east-1";
    let Some(key) = a.keys.first().and_then(|k| k.first()).cloned() else {
        return;
    };
    let sk = |i: usize| {
        a.scenario_keys
            .get(i)
            .cloned()
            .unwrap_or_else(|| key.clone())
    };
    let (dev_ident, dev_uid) = human(a, w, 4); // erin.tan, IAM user, not an admin
    let (sso_dev, sso_dev_uid) = human(a, w, 2); // carol.diaz, Developers
    let (admin, admin_uid) = human(a, w, 0); // alice.nguyen, KeyAdministrators
    let (nonadmin, nonadmin_uid) = human(a, w, 3); // dave.okafor
    let ip = "198.51.100.23";
    let ua = "aws-cli/2.15.30 Python/3.11.8 Linux/6.5.0";

    // Shorthand: one KMS call by `ident` at `t`.
    let kms = |t: i64, ident: &str, name: &'static str, k: &AwsKey| {
        let mut call = Call::new(
            t,
            acct,
            region,
            ident.to_string(),
            "kms.amazonaws.com",
            name,
        );
        call.ip = ip;
        call.ua = ua;
        call.resources = key_res(k);
        call.req = format!(r#"{{"keyId":"{}"}}"#, k.arn);
        call
    };
    let one = |c: &mut Ctx<'_>,
               scen: &str,
               rules: &[&str],
               princ: &str,
               k: &AwsKey,
               _local_hour: u32,
               calls: Vec<Call<'_>>| {
        let recs: Vec<Rec> = calls.iter().map(|x| rec(&mut c.rng, 0, x)).collect();
        c.label(scen, rules, "AWS", princ, &k.arn, &recs);
        c.inj.aws.extend(recs);
    };

    let d = c.slot();
    let t = w.at_local(&a.cal, d, 10, 17, 60_000);
    let mut x = kms(t, &dev_ident, "Decrypt", &key);
    x.req = crypto_req(&mut c.rng, "Decrypt", &key);
    one(
        c,
        "aws_human_decrypt",
        &["kms_human_decrypt"],
        &dev_uid,
        &key,
        10,
        vec![x],
    );

    let d = c.slot();
    let t = w.at_local(&a.cal, d, 11, 3, 60_000);
    let mut x = kms(t, &sso_dev, "GenerateDataKey", &key);
    x.req = crypto_req(&mut c.rng, "GenerateDataKey", &key);
    one(
        c,
        "aws_human_generate_data_key",
        &["kms_human_generate_data_key"],
        &sso_dev_uid,
        &key,
        11,
        vec![x],
    );

    let d = c.slot();
    let t = w.at_local(&a.cal, d, 14, 40, 60_000);
    let mut x = kms(t, &sso_dev, "ReEncrypt", &key);
    x.req = format!(
        r#"{{"sourceKeyId":"{0}","destinationKeyId":"{0}","sourceEncryptionAlgorithm":"SYMMETRIC_DEFAULT","destinationEncryptionAlgorithm":"SYMMETRIC_DEFAULT"}}"#,
        key.arn
    );
    one(
        c,
        "aws_human_reencrypt",
        &["kms_human_reencrypt"],
        &sso_dev_uid,
        &key,
        14,
        vec![x],
    );

    let d = c.slot();
    let sign_key = sk(1);
    let t = w.at_local(&a.cal, d, 15, 12, 60_000);
    let mut x = kms(t, &dev_ident, "Sign", &sign_key);
    x.req = format!(
        r#"{{"keyId":"{}","messageType":"DIGEST","signingAlgorithm":"ECDSA_SHA_256"}}"#,
        sign_key.arn
    );
    one(
        c,
        "aws_human_sign",
        &["kms_human_sign"],
        &dev_uid,
        &sign_key,
        15,
        vec![x],
    );

    let d = c.slot();
    let t = w.at_local(&a.cal, d, 21, 47, 60_000);
    let mut x = kms(t, &root(acct), "DescribeKey", &key);
    x.ua = "Mozilla/5.0 (console)";
    x.ip = "203.0.113.99";
    one(
        c,
        "aws_root_key_use",
        &["kms_root_key_use"],
        &format!("arn:aws:iam::{acct}:root"),
        &key,
        21,
        vec![x],
    );

    // Deletion of a key in seven days; workloads then fail on it; an admin reverses it.
    let d = c.slot();
    let victim = sk(0);
    let t = w.at_local(&a.cal, d, 16, 5, 3 * HOUR);
    let mut x = kms(t, &nonadmin, "ScheduleKeyDeletion", &victim);
    x.read_only = false;
    x.ua = "Mozilla/5.0 (console)";
    x.req = format!(r#"{{"keyId":"{}","pendingWindowInDays":7}}"#, victim.id);
    x.resp = format!(
        r#"{{"keyId":"{}","deletionDate":"{}","keyState":"PendingDeletion","pendingWindowInDays":7}}"#,
        victim.arn,
        secs_z(t + 7 * 24 * HOUR)
    );
    one(
        c,
        "aws_schedule_key_deletion_7d",
        &[
            "kms_schedule_key_deletion",
            "kms_schedule_key_deletion_short_window",
        ],
        &nonadmin_uid,
        &victim,
        16,
        vec![x],
    );
    let (rn, sess) = a.roles.get(3).cloned().unwrap_or_default();
    let failing: Vec<Call<'_>> = (0..4)
        .map(|i| {
            let mut y = kms(
                t + (10 + i * 7) * MIN,
                &role(acct, &rn, &sess, None),
                "Decrypt",
                &victim,
            );
            y.ip = "10.0.40.11";
            y.ua = "aws-sdk-java/2.25.0";
            y.req = r#"{"encryptionAlgorithm":"SYMMETRIC_DEFAULT"}"#.into();
            y.error = Some((
                "KMSInvalidStateException",
                format!("{} is pending deletion.", victim.arn),
            ));
            y
        })
        .collect();
    let role_uid = format!("arn:aws:sts::{acct}:assumed-role/{rn}/{sess}");
    one(
        c,
        "aws_use_of_key_pending_deletion",
        &["kms_use_of_key_pending_deletion"],
        &role_uid,
        &victim,
        16,
        failing,
    );
    let mut x = kms(t + 2 * HOUR, &admin, "CancelKeyDeletion", &victim);
    x.read_only = false;
    x.req = format!(r#"{{"keyId":"{}"}}"#, victim.id);
    x.resp = format!(r#"{{"keyId":"{}"}}"#, victim.arn);
    one(
        c,
        "aws_key_deletion_cancelled",
        &["kms_key_deletion_cancelled"],
        &admin_uid,
        &victim,
        18,
        vec![x],
    );

    let d = c.slot();
    let t = w.at_local(&a.cal, d, 13, 31, 60_000);
    let mut x = kms(t, &sso_dev, "DisableKey", &sk(2));
    x.read_only = false;
    x.req = format!(r#"{{"keyId":"{}"}}"#, sk(2).id);
    one(
        c,
        "aws_disable_key",
        &["kms_key_disabled"],
        &sso_dev_uid,
        &sk(2),
        13,
        vec![x],
    );

    let d = c.slot();
    let t = w.at_local(&a.cal, d, 13, 50, 60_000);
    let mut x = kms(t, &admin, "DeleteImportedKeyMaterial", &sk(2));
    x.read_only = false;
    x.req = format!(r#"{{"keyId":"{}"}}"#, sk(2).id);
    one(
        c,
        "aws_imported_key_material_deleted",
        &["kms_imported_key_material_deleted"],
        &admin_uid,
        &sk(2),
        13,
        vec![x],
    );

    // Off-hours bulk decryption by a person: 30 calls in 8 minutes at 02:00 local.
    let d = c.slot();
    let t = w.at_local(&a.cal, d, 2, 0, 10 * MIN);
    let calls: Vec<Call<'_>> = (0..30)
        .map(|i| {
            let mut y = kms(t + i * 16_000, &dev_ident, "Decrypt", &key);
            y.req = r#"{"encryptionAlgorithm":"SYMMETRIC_DEFAULT","encryptionContext":{"app":"billing"}}"#.into();
            y
        })
        .collect();
    one(
        c,
        "aws_off_hours_bulk_decrypt",
        &["kms_off_hours_bulk_key_use", "kms_human_decrypt"],
        &dev_uid,
        &key,
        2,
        calls,
    );

    // Access-denied burst by a workload role probing keys.
    let d = c.slot();
    let t = w.at_local(&a.cal, d, 4, 20, 5 * MIN);
    let (rn, sess) = a.roles.get(4).cloned().unwrap_or_default();
    let ident = role(acct, &rn, &sess, None);
    let calls: Vec<Call<'_>> = (0..15)
        .map(|i| {
            let k = a.keys.first().and_then(|v| v.get(i as usize % v.len().max(1))).cloned().unwrap_or_else(|| key.clone());
            let mut y = kms(t + i * 11_000, &ident, "Decrypt", &k);
            y.ip = "10.0.77.5";
            y.error = Some(("AccessDenied", format!("User: arn:aws:sts::{acct}:assumed-role/{rn}/{sess} is not authorized to perform: kms:Decrypt on resource: {} because no resource-based policy allows the kms:Decrypt action", k.arn)));
            y
        })
        .collect();
    let role_uid = format!("arn:aws:sts::{acct}:assumed-role/{rn}/{sess}");
    one(
        c,
        "aws_access_denied_burst",
        &["kms_access_denied_burst"],
        &role_uid,
        &key,
        4,
        calls,
    );

    // Key policies: public, another account, and a change by a non-admin.
    let policy = |extra: &str| {
        format!(
            r#"{{"Version":"2012-10-17","Statement":[{{"Sid":"Enable IAM User Permissions","Effect":"Allow","Principal":{{"AWS":"arn:aws:iam::{acct}:root"}},"Action":"kms:*","Resource":"*"}}{extra}]}}"#
        )
    };
    let put = |t: i64, ident: &str, pol: String, k: &AwsKey| {
        let mut y = kms(t, ident, "PutKeyPolicy", k);
        y.read_only = false;
        y.ua = "Mozilla/5.0 (console)";
        y.req = format!(
            r#"{{"keyId":"{}","policyName":"default","policy":{},"bypassPolicyLockoutSafetyCheck":false}}"#,
            k.arn,
            s(&pol)
        );
        y
    };
    let d = c.slot();
    let t = w.at_local(&a.cal, d, 12, 5, 60_000);
    let x = put(
        t,
        &admin,
        policy(
            r#",{"Sid":"Open","Effect":"Allow","Principal":"*","Action":"kms:Decrypt","Resource":"*"}"#,
        ),
        &key,
    );
    one(
        c,
        "aws_key_policy_public",
        &["kms_key_policy_public"],
        &admin_uid,
        &key,
        12,
        vec![x],
    );
    let d = c.slot();
    let t = w.at_local(&a.cal, d, 12, 25, 60_000);
    let x = put(
        t,
        &admin,
        policy(&format!(
            r#",{{"Sid":"PartnerAccess","Effect":"Allow","Principal":{{"AWS":"arn:aws:iam::{ext}:root"}},"Action":["kms:Decrypt","kms:DescribeKey"],"Resource":"*"}}"#
        )),
        &key,
    );
    one(
        c,
        "aws_key_policy_external_account",
        &["kms_key_policy_external_account"],
        &admin_uid,
        &key,
        12,
        vec![x],
    );
    let d = c.slot();
    let t = w.at_local(&a.cal, d, 15, 45, 60_000);
    let x = put(
        t,
        &nonadmin,
        policy(&format!(
            r#",{{"Sid":"DevAccess","Effect":"Allow","Principal":{{"AWS":"arn:aws:iam::{acct}:role/reporting"}},"Action":"kms:*","Resource":"*"}}"#
        )),
        &key,
    );
    one(
        c,
        "aws_key_policy_changed_by_non_admin",
        &["kms_key_policy_changed_by_non_admin"],
        &nonadmin_uid,
        &key,
        15,
        vec![x],
    );

    let d = c.slot();
    let t = w.at_local(&a.cal, d, 16, 40, 60_000);
    let mut x = kms(t, &nonadmin, "CreateGrant", &key);
    x.read_only = false;
    x.req = format!(
        r#"{{"keyId":"{}","granteePrincipal":"arn:aws:iam::{ext}:role/exfil","retiringPrincipal":"arn:aws:iam::{ext}:role/exfil","operations":["Decrypt","GenerateDataKey"]}}"#,
        key.arn
    );
    x.resp = format!(r#"{{"grantId":"{}","keyId":"{}"}}"#, c.rng.hex(64), key.arn);
    one(
        c,
        "aws_grant_to_external_account",
        &["kms_grant_to_external_principal"],
        &nonadmin_uid,
        &key,
        16,
        vec![x],
    );

    let d = c.slot();
    let t = w.at_local(&a.cal, d, 17, 10, 60_000);
    let mut x = kms(t, &nonadmin, "DisableKeyRotation", &key);
    x.read_only = false;
    x.req = format!(r#"{{"keyId":"{}"}}"#, key.id);
    one(
        c,
        "aws_rotation_disabled",
        &["kms_key_rotation_disabled"],
        &nonadmin_uid,
        &key,
        17,
        vec![x],
    );

    // Trail tampering.
    let d = c.slot();
    let t = w.at_local(&a.cal, d, 1, 12, 60_000);
    let mut x = Call::new(
        t,
        acct,
        region,
        nonadmin.clone(),
        "cloudtrail.amazonaws.com",
        "StopLogging",
    );
    x.ip = ip;
    x.ua = ua;
    x.read_only = false;
    x.req = format!(r#"{{"name":"arn:aws:cloudtrail:{region}:{acct}:trail/org-trail"}}"#);
    one(
        c,
        "aws_cloudtrail_stop_logging",
        &["aws_cloudtrail_logging_stopped"],
        &nonadmin_uid,
        &key,
        1,
        vec![x],
    );
    let d = c.slot();
    let t = w.at_local(&a.cal, d, 1, 40, 60_000);
    let mut x = Call::new(
        t,
        acct,
        region,
        nonadmin.clone(),
        "cloudtrail.amazonaws.com",
        "PutEventSelectors",
    );
    x.ip = ip;
    x.ua = ua;
    x.read_only = false;
    x.req = r#"{"trailName":"org-trail","advancedEventSelectors":[{"name":"Management events without KMS","fieldSelectors":[{"field":"eventCategory","equals":["Management"]},{"field":"eventSource","notEquals":["kms.amazonaws.com"]}]}]}"#.into();
    x.resp = format!(
        r#"{{"trailARN":"arn:aws:cloudtrail:{region}:{acct}:trail/org-trail","advancedEventSelectors":[{{"name":"Management events without KMS","fieldSelectors":[{{"field":"eventCategory","equals":["Management"]}},{{"field":"eventSource","notEquals":["kms.amazonaws.com"]}}]}}]}}"#
    );
    let mut x2 = Call::new(
        t + 30_000,
        acct,
        region,
        nonadmin.clone(),
        "cloudtrail.amazonaws.com",
        "PutEventSelectors",
    );
    x2.ip = ip;
    x2.ua = ua;
    x2.read_only = false;
    x2.req = r#"{"trailName":"org-trail","eventSelectors":[{"readWriteType":"All","includeManagementEvents":true,"dataResources":[],"excludeManagementEventSources":["kms.amazonaws.com"]}]}"#.into();
    one(
        c,
        "aws_cloudtrail_kms_events_excluded",
        &["aws_cloudtrail_kms_events_excluded"],
        &nonadmin_uid,
        &key,
        1,
        vec![x, x2],
    );

    // Another account decrypts with our key; a workload copies data under an outside key.
    let d = c.slot();
    let t = w.at_local(&a.cal, d, 3, 33, 60_000);
    let ext_ident = role(&ext, "exfil", "pivot-session", None);
    let mut x = kms(t, &ext_ident, "Decrypt", &key);
    x.ip = "192.0.2.66";
    x.req = r#"{"encryptionAlgorithm":"SYMMETRIC_DEFAULT"}"#.into();
    one(
        c,
        "aws_cross_account_decrypt",
        &["kms_cross_account_decrypt"],
        &format!("arn:aws:sts::{ext}:assumed-role/exfil/pivot-session"),
        &key,
        3,
        vec![x],
    );

    let d = c.slot();
    let t = w.at_local(&a.cal, d, 3, 50, 60_000);
    let (rn, sess) = a.roles.first().cloned().unwrap_or_default();
    let ext_key = format!("arn:aws:kms:{region}:{ext}:key/0badc0de-0000-4000-8000-00000000beef");
    let bucket = format!("kmswatch-{}-{rn}", a.name);
    let mut x = Call::new(
        t,
        acct,
        region,
        role(acct, &rn, &sess, None),
        "s3.amazonaws.com",
        "CopyObject",
    );
    x.data = true;
    x.read_only = false;
    x.req = format!(
        r#"{{"bucketName":"{bucket}","Host":"{bucket}.s3.{region}.amazonaws.com","key":"exports/customers.csv","x-amz-copy-source":"{bucket}/exports/customers.csv","x-amz-server-side-encryption":"aws:kms","x-amz-server-side-encryption-aws-kms-key-id":"{ext_key}"}}"#
    );
    x.resp = format!(
        r#"{{"x-amz-server-side-encryption":"aws:kms","x-amz-server-side-encryption-aws-kms-key-id":"{ext_key}"}}"#
    );
    x.extra = format!(
        r#""additionalEventData":{{"SignatureVersion":"SigV4","CipherSuite":"TLS_AES_128_GCM_SHA256","bytesTransferredIn":0,"SSEApplied":"SSE_KMS","SSEKMSKeyId":"{ext_key}","AuthenticationMethod":"AuthHeader","x-amz-id-2":"{}","bytesTransferredOut":234}},"#,
        c.rng.hex(24)
    );
    x.resources = format!(
        r#"[{{"type":"AWS::S3::Object","ARN":"arn:aws:s3:::{bucket}/exports/customers.csv"}},{{"accountId":"{acct}","type":"AWS::S3::Bucket","ARN":"arn:aws:s3:::{bucket}"}}]"#
    );
    let recs = vec![rec(&mut c.rng, 0, &x)];
    c.label(
        "aws_s3_copy_with_external_kms_key",
        &["aws_s3_copy_with_external_kms_key"],
        "AWS",
        &format!("arn:aws:sts::{acct}:assumed-role/{rn}/{sess}"),
        &ext_key,
        &recs,
    );
    c.inj.aws.extend(recs);

    // A departed employee's IAM user (absent from the inventory) still works, in account B.
    let d = c.slot();
    let bkey = b
        .keys
        .first()
        .and_then(|v| v.first())
        .cloned()
        .unwrap_or_else(|| key.clone());
    let t = w.at_local(&b.cal, d, 19, 5, 10 * MIN);
    let gina = w.people.iter().position(|p| !p.active).unwrap_or(6);
    let handle = w
        .people
        .get(gina)
        .map(|p| p.handle.clone())
        .unwrap_or_default();
    let ident = iam_user(&b.id, &handle);
    let bucket_b = (b.regions.len()) as u32; // account index 1, region 0
    let calls: Vec<Rec> = (0..3)
        .map(|i| {
            let mut y = Call::new(
                t + i * 90_000,
                &b.id,
                "us-east-1",
                ident.clone(),
                "kms.amazonaws.com",
                "Decrypt",
            );
            y.ip = "192.0.2.145";
            y.ua = ua;
            y.resources = key_res(&bkey);
            y.req = r#"{"encryptionAlgorithm":"SYMMETRIC_DEFAULT"}"#.into();
            rec(&mut c.rng, bucket_b, &y)
        })
        .collect();
    c.label(
        "aws_departed_user_decrypt",
        &["kms_principal_not_in_inventory", "kms_human_decrypt"],
        "AWS",
        &format!("arn:aws:iam::{}:user/{handle}", b.id),
        &bkey.arn,
        &calls,
    );
    c.inj.aws.extend(calls);
}
