//! CloudTrail log file integrity validation (`respond.provenance.require: cloudtrail_digest`)
//! against moto S3, with digest files this test signs with its own RSA key pairs and serves
//! through the CloudTrail test server's `ListPublicKeys`: a valid chain, and each way it can be
//! wrong (tampered log, tampered digest, wrong key, broken chain, missing digest, digest not
//! delivered yet). Then end to end: an enforce playbook acts on a finding read from a verified
//! log object and only plans on one read from a tampered one.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{KeyPair, RsaKeyPair, RSA_PKCS1_SHA256};
use common::{cloudtrail, fake_aws_env, moto, Shared, Trail, TrailEvent, TrailKey};
use flate2::write::GzEncoder;
use kmswatch_model::{Origin, Provider};
use kmswatch_respond::aws::AwsConfig;
use kmswatch_respond::config::Playbook;
use kmswatch_respond::net::Net;
use kmswatch_respond::provenance::{
    signing_string, DigestConfig, DigestFile, DigestVerifier, ProvenanceConfig, Require,
    TrustedLocation,
};
use kmswatch_respond::testutil::finding;
use kmswatch_respond::{ActionKind, Mode, Outcome, Phase, RespondConfig, Responder};
use serde_json::json;
use sha2::{Digest, Sha256};
use std::io::Write;
use std::sync::{Arc, Mutex};

const ACCOUNT: &str = "111122223333";
const REGION: &str = "us-east-1";
/// 2024-03-05T10:15:00Z, the log objects' delivery time.
const DELIVERED: i64 = 1_709_633_700;

fn gz(b: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(b).unwrap();
    e.finish().unwrap()
}

fn sha_hex(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

fn log_key(name: &str) -> String {
    format!("AWSLogs/{ACCOUNT}/CloudTrail/{REGION}/2024/03/05/{ACCOUNT}_CloudTrail_{REGION}_20240305T1015Z_{name}.json.gz")
}

fn digest_key(end: &str) -> String {
    format!("AWSLogs/{ACCOUNT}/CloudTrail-Digest/{REGION}/2024/03/05/{ACCOUNT}_CloudTrail-Digest_{REGION}_org-trail_{REGION}_{end}.json.gz")
}

/// What to break in a scenario.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Break {
    Nothing,
    Log,
    Digest,
    WrongKey,
    Chain,
    NoDigest,
}

struct Keys {
    good: RsaKeyPair,
    other: RsaKeyPair,
}

fn sign(kp: &RsaKeyPair, s: &str) -> String {
    let mut sig = vec![0; kp.public_modulus_len()];
    kp.sign(
        &RSA_PKCS1_SHA256,
        &SystemRandom::new(),
        s.as_bytes(),
        &mut sig,
    )
    .unwrap();
    hex::encode(sig)
}

/// Put a signed digest: returns (uncompressed content, signature).
async fn put_digest(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    end_time: &str,
    previous: Option<(&str, &[u8], &str)>,
    logs: &[(String, String)],
    signer: &RsaKeyPair,
) -> (Vec<u8>, String) {
    let doc = json!({
        "awsAccountId": ACCOUNT,
        "digestStartTime": "2024-03-05T09:01:31Z",
        "digestEndTime": end_time,
        "digestS3Bucket": bucket,
        "digestS3Object": key,
        "digestPublicKeyFingerprint": "0123456789abcdef0123456789abcdef",
        "digestSignatureAlgorithm": "SHA256withRSA",
        "newestEventTime": end_time,
        "oldestEventTime": "2024-03-05T09:30:00Z",
        "previousDigestS3Bucket": previous.map(|_| bucket),
        "previousDigestS3Object": previous.map(|p| p.0),
        "previousDigestHashValue": previous.map(|p| sha_hex(p.1)),
        "previousDigestHashAlgorithm": previous.map(|_| "SHA-256"),
        "previousDigestSignature": previous.map(|p| p.2),
        "logFiles": logs.iter().map(|(k, h)| json!({
            "s3Bucket": bucket, "s3Object": k, "hashValue": h, "hashAlgorithm": "SHA-256",
            "newestEventTime": end_time, "oldestEventTime": "2024-03-05T09:30:00Z"
        })).collect::<Vec<_>>(),
    });
    let raw = serde_json::to_vec(&doc).unwrap();
    let d: DigestFile = serde_json::from_slice(&raw).unwrap();
    let sig = sign(signer, &signing_string(&d, &sha_hex(&raw)));
    s3.put_object()
        .bucket(bucket)
        .key(key)
        .body(gz(&raw).into())
        .metadata("signature", &sig)
        .metadata("signature-algorithm", "SHA256withRSA")
        .send()
        .await
        .unwrap();
    (raw, sig)
}

/// A bucket with one log object and (unless `NoDigest`) a chain of two digests, the second
/// listing the log object, broken as asked. Returns the log object's `s3://` location.
async fn scenario(s3: &aws_sdk_s3::Client, bucket: &str, keys: &Keys, brk: Break) -> String {
    s3.create_bucket().bucket(bucket).send().await.unwrap();
    let log = serde_json::to_vec(&json!({"Records": [{"eventID": "6f1c6fa4-2a0e-4c53-9a8b-2f7d3c1e0b9a", "eventName": "DisableKey"}]})).unwrap();
    let lk = log_key("log1");
    s3.put_object()
        .bucket(bucket)
        .key(&lk)
        .body(gz(&log).into())
        .send()
        .await
        .unwrap();
    let location = format!("s3://{bucket}/{lk}");
    if brk == Break::NoDigest {
        return location;
    }
    let signer = if brk == Break::WrongKey {
        &keys.other
    } else {
        &keys.good
    };
    let first = digest_key("20240305T100131Z");
    let (first_raw, first_sig) = put_digest(
        s3,
        bucket,
        &first,
        "2024-03-05T10:01:31Z",
        None,
        &[],
        signer,
    )
    .await;
    let second = digest_key("20240305T110131Z");
    put_digest(
        s3,
        bucket,
        &second,
        "2024-03-05T11:01:31Z",
        Some((&first, &first_raw, &first_sig)),
        &[(lk.clone(), sha_hex(&log))],
        signer,
    )
    .await;
    match brk {
        Break::Log => {
            // One record changed after delivery.
            let forged = serde_json::to_vec(&json!({"Records": [{"eventID": "6f1c6fa4-2a0e-4c53-9a8b-2f7d3c1e0b9a", "eventName": "ScheduleKeyDeletion"}]})).unwrap();
            s3.put_object()
                .bucket(bucket)
                .key(&lk)
                .body(gz(&forged).into())
                .send()
                .await
                .unwrap();
        }
        Break::Digest => {
            // The digest rewritten (its log hash replaced), the signature kept.
            let out = s3
                .head_object()
                .bucket(bucket)
                .key(&second)
                .send()
                .await
                .unwrap();
            let sig = out.metadata().unwrap()["signature"].clone();
            let doc = json!({
                "awsAccountId": ACCOUNT, "digestStartTime": "2024-03-05T09:01:31Z",
                "digestEndTime": "2024-03-05T11:01:31Z", "digestS3Bucket": bucket,
                "digestS3Object": second, "digestPublicKeyFingerprint": "0123456789abcdef0123456789abcdef",
                "digestSignatureAlgorithm": "SHA256withRSA", "previousDigestS3Bucket": bucket,
                "previousDigestS3Object": first, "previousDigestHashValue": sha_hex(&first_raw),
                "previousDigestHashAlgorithm": "SHA-256", "previousDigestSignature": first_sig,
                "logFiles": [{"s3Bucket": bucket, "s3Object": lk, "hashValue": sha_hex(b"anything"), "hashAlgorithm": "SHA-256"}],
            });
            s3.put_object()
                .bucket(bucket)
                .key(&second)
                .body(gz(&serde_json::to_vec(&doc).unwrap()).into())
                .metadata("signature", sig)
                .metadata("signature-algorithm", "SHA256withRSA")
                .send()
                .await
                .unwrap();
        }
        Break::Chain => {
            // The previous digest replaced by another (validly signed) one.
            put_digest(
                s3,
                bucket,
                &first,
                "2024-03-05T10:01:31Z",
                None,
                &[(log_key("other"), sha_hex(b"x"))],
                signer,
            )
            .await;
        }
        Break::Nothing | Break::WrongKey | Break::NoDigest => {}
    }
    location
}

/// Fake credentials, an S3 client on moto, two key pairs and a CloudTrail test server that
/// lists the good one's public key.
async fn setup(endpoint: &str) -> (aws_sdk_s3::Client, Keys, Shared<Trail>, String) {
    fake_aws_env();
    let s3 = s3_client(endpoint).await;
    let keys = Keys {
        good: RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap(),
        other: RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap(),
    };
    let trail_state: Shared<Trail> = Arc::new(Mutex::new(Trail::default()));
    trail_state.lock().unwrap().keys.push(TrailKey {
        fingerprint: "0123456789abcdef0123456789abcdef".into(),
        der: keys.good.public_key().as_ref().to_vec(),
    });
    let trail = cloudtrail(trail_state.clone()).await;
    (s3, keys, trail_state, trail)
}

fn unique(name: &str) -> String {
    format!(
        "kmswatch-{name}-{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
}

async fn s3_client(endpoint: &str) -> aws_sdk_s3::Client {
    let conf = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(REGION))
        .load()
        .await;
    aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&conf)
            .endpoint_url(endpoint)
            .force_path_style(true)
            .build(),
    )
}

#[tokio::test]
async fn digest_validation_accepts_a_valid_chain_and_names_each_failure() {
    let Some(m) = moto() else {
        eprintln!("SKIPPED digest_validation: no KMSWATCH_TEST_AWS_ENDPOINT and no moto_server on PATH (source scripts/services up)");
        return;
    };
    let (s3, keys, trail_state, trail) = setup(&m.1).await;
    let verifier = || {
        DigestVerifier::new(
            DigestConfig {
                region: Some(REGION.into()),
                s3_endpoint_url: Some(m.1.clone()),
                cloudtrail_endpoint_url: Some(trail.clone()),
                ..DigestConfig::default()
            },
            Net::default(),
        )
    };
    let later = DELIVERED + 3 * 86_400;

    let ok = scenario(&s3, &unique("valid"), &keys, Break::Nothing).await;
    let v = verifier();
    let got = v.verify(&ok, later).await.unwrap();
    assert!(got.contains("verified by CloudTrail digest"), "{got}");
    assert!(trail_state
        .lock()
        .unwrap()
        .calls
        .contains(&("ListPublicKeys".to_string(), REGION.to_string())));

    let cases = [
        (Break::Log, "was changed after CloudTrail delivered it"),
        (Break::Digest, "the signature does not verify"),
        (Break::WrongKey, "the signature does not verify"),
        (Break::Chain, "the previous digest"),
        (Break::NoDigest, "the digest is missing"),
    ];
    for (brk, want) in cases {
        let loc = scenario(&s3, &unique(&format!("{brk:?}").to_lowercase()), &keys, brk).await;
        let e = verifier().verify(&loc, later).await.unwrap_err();
        assert!(e.why.contains(want), "{brk:?}: {}", e.why);
        assert!(!e.yet, "{brk:?} is final");
    }
    // A log object without a digest yet, 10 minutes after delivery: not verified *yet*.
    let loc = scenario(&s3, &unique("recent"), &keys, Break::NoDigest).await;
    let e = verifier().verify(&loc, DELIVERED + 600).await.unwrap_err();
    assert!(e.yet && e.why.contains("not verified yet"), "{e:?}");
    // Not a CloudTrail object at all.
    let e = verifier()
        .verify("s3://some-bucket/logs/x.json", later)
        .await
        .unwrap_err();
    assert!(e.why.contains("not a CloudTrail log object"), "{}", e.why);
}

/// End to end: `provenance.require: cloudtrail_digest`, an enforce playbook, a key in moto KMS
/// and the event in the CloudTrail test server. From the verified log object the key is
/// disabled; from a tampered one nothing changes and the finding says why.
#[tokio::test]
async fn enforce_requires_a_verified_log_origin() {
    let Some(m) = moto() else {
        eprintln!(
            "SKIPPED enforce_requires_a_verified_log_origin: no moto (source scripts/services up)"
        );
        return;
    };
    let (s3, keys, trail_state, trail) = setup(&m.1).await;
    let good_bucket = unique("e2e-good");
    let bad_bucket = unique("e2e-bad");
    let good = scenario(&s3, &good_bucket, &keys, Break::Nothing).await;
    let bad = scenario(&s3, &bad_bucket, &keys, Break::Log).await;

    let kms = aws_sdk_kms::Client::from_conf(
        aws_sdk_kms::config::Builder::from(
            &aws_config::defaults(aws_config::BehaviorVersion::latest())
                .region(aws_config::Region::new(REGION))
                .load()
                .await,
        )
        .endpoint_url(&m.1)
        .build(),
    );
    // moto's keys live in its default account, 123456789012.
    let arn = kms
        .create_key()
        .send()
        .await
        .unwrap()
        .key_metadata()
        .unwrap()
        .arn()
        .unwrap()
        .to_string();
    let account = arn.split(':').nth(4).unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let cfg = RespondConfig {
        mode: Mode::Enforce,
        journal_path: dir.path().join("j.jsonl"),
        playbooks: vec![Playbook::new(
            "contain",
            &["kms_human_decrypt"],
            &[ActionKind::Disable],
        )],
        provenance: ProvenanceConfig {
            require: Require::CloudtrailDigest,
            trusted_locations: vec![TrustedLocation {
                source: Some("cloudtrail".into()),
                location: "s3://kmswatch-e2e-*/AWSLogs/*".into(),
            }],
            cloudtrail_digest: DigestConfig {
                region: Some(REGION.into()),
                s3_endpoint_url: Some(m.1.clone()),
                cloudtrail_endpoint_url: Some(trail.clone()),
                ..DigestConfig::default()
            },
        },
        aws: Some(AwsConfig {
            region: Some(REGION.into()),
            endpoint_url: Some(m.1.clone()),
            cloudtrail_endpoint_url: Some(trail.clone()),
            ..Default::default()
        }),
        ..Default::default()
    };
    let r = Responder::new(cfg).unwrap();
    let event_id = "6f1c6fa4-2a0e-4c53-9a8b-2f7d3c1e0b9a";
    trail_state.lock().unwrap().events.push(TrailEvent {
        id: event_id.into(),
        name: "Decrypt".into(),
        key_arn: arn.clone(),
    });
    let from = |location: &str, uid: &str| {
        // The log path names account 111122223333; the evidence event says the same.
        let mut f = finding("kms_human_decrypt", 4, &[(Provider::Aws, &arn)]);
        f.finding_info.uid = uid.into();
        let o = Origin {
            source: "cloudtrail".into(),
            location: location.into(),
        };
        f.kmswatch.origins = vec![o.clone()];
        let e = &mut f.evidences[0];
        e.metadata.uid = event_id.into();
        e.cloud.account.uid = Some(ACCOUNT.into());
        e.cloud.region = Some(REGION.into());
        e.kms.origin = Some(o);
        f
    };
    let enabled = |arn: String| {
        let kms = kms.clone();
        async move {
            kms.describe_key()
                .key_id(arn)
                .send()
                .await
                .unwrap()
                .key_metadata()
                .unwrap()
                .enabled()
        }
    };

    let out = r.on_finding(&from(&bad, "tampered")).await;
    let rec = out.iter().filter_map(|o| o.audit()).next_back().unwrap();
    assert_eq!(
        (rec.phase, rec.outcome),
        (Phase::Plan, Outcome::UnverifiedOrigin),
        "{rec:#?}"
    );
    assert!(
        rec.detail
            .as_deref()
            .unwrap()
            .contains("was changed after CloudTrail delivered it"),
        "{:?}",
        rec.detail
    );
    let raised = out.iter().find_map(|o| o.finding()).unwrap();
    assert_eq!(
        raised.finding_info.analytic.uid,
        kmswatch_respond::responder::UNVERIFIED_ORIGIN_RULE
    );
    assert!(enabled(arn.clone()).await, "nothing changed");

    let out = r.on_finding(&from(&good, "verified")).await;
    let rec = out.iter().filter_map(|o| o.audit()).next_back().unwrap();
    assert_eq!(rec.outcome, Outcome::Applied, "{out:#?}");
    assert!(!enabled(arn.clone()).await);
    let _ = account;
}
