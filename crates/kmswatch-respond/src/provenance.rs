//! Verified log origin: whether the logs a finding was made from came from where they should.
//!
//! The runtime stamps every event with where it read it (`kms.origin`: source id and
//! `s3://bucket/key`, a Kafka topic/partition/offset, a file path); the engine lists the
//! distinct origins of all contributing events on the finding (`kmswatch.origins`). With
//! `respond.provenance.require` set, an automatic action in `enforce` mode (or approved) runs
//! only when every origin is verified:
//!
//! - `trusted_location`: the origin matches one of `trusted_locations` (source id glob and
//!   location glob: the trail's bucket and prefix, a topic, a directory). For a CloudTrail log
//!   object (`.../AWSLogs/[o-ORG/]ACCOUNT/CloudTrail/REGION/...`) every evidence event read from
//!   it must also name that account and region.
//! - `cloudtrail_digest`: all of the above, and every CloudTrail log object in S3 must pass
//!   CloudTrail log file integrity validation: the digest file listing it is found in the same
//!   bucket (`.../CloudTrail-Digest/REGION/YYYY/MM/DD/`), its RSA-SHA256 signature (S3
//!   metadata `x-amz-meta-signature`) verifies over the documented signing string (digest end
//!   time, digest S3 path, hex SHA-256 of the uncompressed digest, previous digest signature)
//!   with the region's public key (CloudTrail `ListPublicKeys`, by fingerprint, or
//!   `cloudtrail_digest.public_keys`), the link to the previous digest holds (its hash and
//!   signature), and the SHA-256 of the uncompressed log object equals the digest's entry.
//!   Digests come hourly: a log object younger than `digest_delay_secs` without one is
//!   "not verified yet" (retryable); older, it is missing.
//!
//! An unverified origin means plan only: the plan record's outcome is `unverified_origin`, with
//! exactly why, and a finding of rule [`crate::responder::UNVERIFIED_ORIGIN_RULE`] is raised.

use crate::basis::Basis;
use crate::config::{check_endpoint, compile_glob, range};
use crate::error::RespondError;
use crate::net::Net;
use globset::GlobMatcher;
use kmswatch_model::resource;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::io::Write;

/// What every origin of a finding must pass.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Require {
    /// No origin check (the default): corroboration with the cloud's state still applies.
    #[default]
    None,
    /// Every origin matches a trusted location.
    TrustedLocation,
    /// Trusted location, and CloudTrail log objects in S3 pass log file integrity validation.
    CloudtrailDigest,
}

/// One trusted place logs are read from.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustedLocation {
    /// The configured source id the origin must carry (glob; default: any source).
    #[serde(default)]
    pub source: Option<String>,
    /// The location, a glob: `s3://org-trail/AWSLogs/*` (bucket and prefix of the trail),
    /// `kafka://kms-audit/*`, `/var/log/azure/*`.
    pub location: String,
}

/// The `respond.provenance:` section.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProvenanceConfig {
    /// `none` (default), `trusted_location` or `cloudtrail_digest`: what every origin of a
    /// finding must pass before an automatic action runs in `enforce` mode or after approval.
    #[serde(default)]
    pub require: Require,
    /// Where trusted logs come from (required unless `require` is `none`).
    #[serde(default)]
    pub trusted_locations: Vec<TrustedLocation>,
    /// CloudTrail log file integrity validation (`require: cloudtrail_digest`).
    #[serde(default)]
    pub cloudtrail_digest: DigestConfig,
}

/// `respond.provenance.cloudtrail_digest:`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DigestConfig {
    /// Region of the S3 client that reads digests and log objects (default: the SDK's region
    /// chain).
    #[serde(default)]
    pub region: Option<String>,
    /// S3 endpoint override (tests, private endpoints). Default: the real service.
    #[serde(default)]
    pub s3_endpoint_url: Option<String>,
    /// CloudTrail endpoint override for `ListPublicKeys` (tests). Default: the real service of
    /// the digest's region.
    #[serde(default)]
    pub cloudtrail_endpoint_url: Option<String>,
    /// Public keys to verify digests with, instead of asking `ListPublicKeys`: hex fingerprint
    /// -> base64 of the DER `RSAPublicKey` (the `Value` `ListPublicKeys` returns).
    #[serde(default)]
    pub public_keys: BTreeMap<String, String>,
    /// A log object without a digest is "not verified yet" for this long after its delivery
    /// time, seconds (default 7200: digests are delivered hourly); after that, missing.
    #[serde(default = "default_delay")]
    pub digest_delay_secs: u64,
    /// Largest log object read to hash it, compressed bytes (default 64 MiB).
    #[serde(default = "default_max_log")]
    pub max_log_object_bytes: u64,
    /// Largest log object hashed, decompressed bytes (default 1 GiB; hashed as it streams).
    #[serde(default = "default_max_inflated")]
    pub max_log_decompressed_bytes: u64,
    /// Largest digest file read, bytes, compressed and decompressed (default 16 MiB).
    #[serde(default = "default_max_digest")]
    pub max_digest_bytes: u64,
    /// Most digest files opened to find the one listing a log object (default 8).
    #[serde(default = "default_max_digests")]
    pub max_digest_files: usize,
}

fn default_delay() -> u64 {
    7200
}
fn default_max_log() -> u64 {
    64 << 20
}
fn default_max_inflated() -> u64 {
    1 << 30
}
fn default_max_digest() -> u64 {
    16 << 20
}
fn default_max_digests() -> usize {
    8
}

impl Default for DigestConfig {
    fn default() -> Self {
        DigestConfig {
            region: None,
            s3_endpoint_url: None,
            cloudtrail_endpoint_url: None,
            public_keys: BTreeMap::new(),
            digest_delay_secs: default_delay(),
            max_log_object_bytes: default_max_log(),
            max_log_decompressed_bytes: default_max_inflated(),
            max_digest_bytes: default_max_digest(),
            max_digest_files: default_max_digests(),
        }
    }
}

impl ProvenanceConfig {
    pub(crate) fn validate(&self) -> Result<(), RespondError> {
        let bad = |m: String| Err(RespondError::Config(m));
        if self.require != Require::None && self.trusted_locations.is_empty() {
            return bad(
                "provenance.require needs provenance.trusted_locations (where trusted logs are read from)"
                    .into(),
            );
        }
        let d = &self.cloudtrail_digest;
        if let Some(r) = &d.region {
            if !resource::is_aws_region(r) {
                return bad(format!(
                    "provenance.cloudtrail_digest.region: {r:?} is not an AWS region"
                ));
            }
        }
        for (f, u) in [
            ("s3_endpoint_url", &d.s3_endpoint_url),
            ("cloudtrail_endpoint_url", &d.cloudtrail_endpoint_url),
        ] {
            if let Some(u) = u {
                check_endpoint(&format!("provenance.cloudtrail_digest.{f}"), u)?;
            }
        }
        for (fp, k) in &d.public_keys {
            if public_key_der(k).is_none() {
                return bad(format!(
                    "provenance.cloudtrail_digest.public_keys.{fp}: not base64 DER"
                ));
            }
        }
        let f = |n: &str| format!("provenance.cloudtrail_digest.{n}");
        range(&f("digest_delay_secs"), d.digest_delay_secs, 0, 7 * 86_400)?;
        range(
            &f("max_log_object_bytes"),
            d.max_log_object_bytes,
            1 << 10,
            1 << 30,
        )?;
        range(
            &f("max_log_decompressed_bytes"),
            d.max_log_decompressed_bytes,
            1 << 10,
            16 << 30,
        )?;
        range(
            &f("max_digest_bytes"),
            d.max_digest_bytes,
            1 << 10,
            256 << 20,
        )?;
        range(&f("max_digest_files"), d.max_digest_files, 1, 64)?;
        Ok(())
    }
}

fn public_key_der(b64: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()
        .filter(|d| !d.is_empty())
}

/// Why an origin is not verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unverified {
    /// Exactly why.
    pub why: String,
    /// The check may pass later (a digest not delivered yet, a call that failed).
    pub yet: bool,
}

impl Unverified {
    fn no(why: impl Into<String>) -> Unverified {
        Unverified {
            why: why.into(),
            yet: false,
        }
    }

    fn later(why: impl Into<String>) -> Unverified {
        Unverified {
            why: why.into(),
            yet: true,
        }
    }
}

/// The compiled section.
#[derive(Debug, Clone, Default)]
pub(crate) struct CompiledProvenance {
    pub(crate) require: Require,
    locations: Vec<(Option<GlobMatcher>, GlobMatcher, String)>,
}

impl CompiledProvenance {
    pub(crate) fn new(cfg: &ProvenanceConfig) -> Result<CompiledProvenance, RespondError> {
        let locations = cfg
            .trusted_locations
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let f = format!("provenance.trusted_locations[{i}]");
                Ok((
                    t.source
                        .as_deref()
                        .map(|s| compile_glob(&format!("{f}.source"), s))
                        .transpose()?,
                    compile_glob(&format!("{f}.location"), &t.location)?,
                    t.location.clone(),
                ))
            })
            .collect::<Result<_, RespondError>>()?;
        Ok(CompiledProvenance {
            require: cfg.require,
            locations,
        })
    }

    /// The location check (pure): every origin trusted, every evidence event consistent with
    /// the CloudTrail path it was read from. Returns what was checked.
    pub(crate) fn check_locations(&self, basis: &Basis) -> Result<Vec<String>, Unverified> {
        if basis.origins.is_empty() {
            return Err(Unverified::no(
                "the finding's events carry no log origin (read by `kmswatch scan`, or by a pipeline that does not record where events were read)",
            ));
        }
        if basis.origins_truncated {
            return Err(Unverified::no(format!(
                "the finding's events came from more than {} origins; the list is incomplete and cannot vouch for all of them",
                kmswatch_model::MAX_FINDING_ORIGINS
            )));
        }
        for c in &basis.events {
            match &c.origin {
                None => {
                    return Err(Unverified::no(format!(
                        "evidence event {} carries no origin",
                        c.uid
                    )))
                }
                Some(o) if !basis.origins.contains(o) => {
                    return Err(Unverified::no(format!(
                    "evidence event {} was read from {}, which the finding's origins do not list",
                    c.uid, o.location
                )))
                }
                Some(_) => {}
            }
        }
        let mut checked = Vec::new();
        for o in &basis.origins {
            let Some((_, _, pattern)) = self.locations.iter().find(|(s, l, _)| {
                s.as_ref().is_none_or(|s| s.is_match(&o.source)) && l.is_match(&o.location)
            }) else {
                return Err(Unverified::no(format!(
                    "origin {} (source {}) is not a trusted location (provenance.trusted_locations)",
                    o.location, o.source
                )));
            };
            if let Some(p) = CloudTrailPath::parse(&o.location) {
                for c in basis.events.iter().filter(|c| c.origin.as_ref() == Some(o)) {
                    if c.account.as_deref() != Some(p.account.as_str())
                        || c.region.as_deref() != Some(p.region.as_str())
                    {
                        return Err(Unverified::no(format!(
                            "evidence event {} names account {} region {} but was read from the CloudTrail log of account {} region {} ({})",
                            c.uid,
                            c.account.as_deref().unwrap_or("-"),
                            c.region.as_deref().unwrap_or("-"),
                            p.account,
                            p.region,
                            o.location
                        )));
                    }
                }
            }
            checked.push(format!("{} trusted ({pattern})", o.location));
        }
        Ok(checked)
    }
}

/// A CloudTrail log object's location:
/// `s3://BUCKET/[PREFIX/]AWSLogs/[o-ORG/]ACCOUNT/CloudTrail/REGION/YYYY/MM/DD/FILE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloudTrailPath {
    /// The bucket.
    pub bucket: String,
    /// The object key.
    pub key: String,
    /// Everything before `CloudTrail/` (`[PREFIX/]AWSLogs/[o-ORG/]ACCOUNT/`).
    pub base: String,
    /// The account.
    pub account: String,
    /// The region.
    pub region: String,
    /// Delivery time from the file name, epoch seconds.
    pub delivered: i64,
}

/// An S3 bucket name: 3–63 of `a-z 0-9 . -`, starting and ending with a letter or digit.
pub fn is_bucket_name(s: &str) -> bool {
    let b = s.as_bytes();
    (3..=63).contains(&b.len())
        && b.first()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && b.last()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'.' || *c == b'-')
        && !s.contains("..")
}

impl CloudTrailPath {
    /// Parse an origin location; `None` when it is not a CloudTrail log object in S3.
    pub fn parse(location: &str) -> Option<CloudTrailPath> {
        let rest = location.strip_prefix("s3://")?;
        let (bucket, key) = rest.split_once('/')?;
        if !is_bucket_name(bucket) || key.len() > 1024 {
            return None;
        }
        let segs: Vec<&str> = key.split('/').collect();
        let at = segs.iter().position(|s| *s == "AWSLogs")?;
        let mut i = at + 1;
        if segs.get(i).is_some_and(|s| s.starts_with("o-")) {
            i += 1;
        }
        let account = *segs.get(i)?;
        let (ct, region, y, m, d, file) = match segs.get(i + 1..)? {
            [ct, region, y, m, d, file] => (*ct, *region, *y, *m, *d, *file),
            _ => return None,
        };
        if ct != "CloudTrail"
            || !resource::is_aws_account_id(account)
            || !resource::is_aws_region(region)
        {
            return None;
        }
        // ACCOUNT_CloudTrail_REGION_YYYYMMDDTHHmmZ_UNIQUE.json.gz
        let parts: Vec<&str> = file.splitn(5, '_').collect();
        let [fa, "CloudTrail", fr, ts, _] = parts.as_slice() else {
            return None;
        };
        if *fa != account || *fr != region || !ts.starts_with(&format!("{y}{m}{d}T")) {
            return None;
        }
        let delivered = chrono::NaiveDateTime::parse_from_str(ts, "%Y%m%dT%H%MZ")
            .ok()?
            .and_utc()
            .timestamp();
        let base_end = segs.get(..=i)?.join("/");
        Some(CloudTrailPath {
            bucket: bucket.to_string(),
            key: key.to_string(),
            base: format!("{base_end}/"),
            account: account.to_string(),
            region: region.to_string(),
            delivered,
        })
    }

    /// The digest folders that may hold the digest listing this object: the delivery day's and
    /// the next day's (a digest ends up to an hour after the files it lists).
    fn digest_prefixes(&self) -> Vec<String> {
        let day = |t: i64| {
            chrono::DateTime::from_timestamp(t, 0)
                .map(|d| d.format("%Y/%m/%d").to_string())
                .unwrap_or_default()
        };
        [self.delivered, self.delivered + 86_400]
            .iter()
            .map(|t| {
                format!(
                    "{}CloudTrail-Digest/{}/{}/",
                    self.base,
                    self.region,
                    day(*t)
                )
            })
            .collect()
    }
}

/// The end time a digest file's name carries (`..._YYYYMMDDTHHmmssZ.json.gz`), epoch seconds.
fn digest_end_of_name(key: &str) -> Option<i64> {
    let file = key.rsplit('/').next()?;
    let stem = file.strip_suffix(".json.gz")?;
    let ts = stem.rsplit('_').next()?;
    chrono::NaiveDateTime::parse_from_str(ts, "%Y%m%dT%H%M%SZ")
        .ok()
        .map(|d| d.and_utc().timestamp())
}

/// A digest file (the fields validation reads).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DigestFile {
    /// The account.
    pub aws_account_id: String,
    /// End of the hour it covers (`2015-08-17T15:01:31Z`), as written (part of the signed
    /// string).
    pub digest_end_time: String,
    /// Where CloudTrail wrote it: bucket.
    pub digest_s3_bucket: String,
    /// Where CloudTrail wrote it: key.
    pub digest_s3_object: String,
    /// Fingerprint of the public key that verifies it.
    pub digest_public_key_fingerprint: String,
    /// `SHA256withRSA`.
    pub digest_signature_algorithm: String,
    /// The previous digest: bucket (null in the first digest).
    #[serde(default)]
    pub previous_digest_s3_bucket: Option<String>,
    /// The previous digest: key.
    #[serde(default)]
    pub previous_digest_s3_object: Option<String>,
    /// The previous digest: hex SHA-256 of its uncompressed content.
    #[serde(default)]
    pub previous_digest_hash_value: Option<String>,
    /// The previous digest: its hex signature.
    #[serde(default)]
    pub previous_digest_signature: Option<String>,
    /// The log files delivered in the hour.
    #[serde(default)]
    pub log_files: Vec<DigestLogFile>,
}

/// One log file a digest lists.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DigestLogFile {
    /// Bucket.
    pub s3_bucket: String,
    /// Key.
    pub s3_object: String,
    /// Hex SHA-256 of the uncompressed log file.
    pub hash_value: String,
    /// `SHA-256`.
    #[serde(default)]
    pub hash_algorithm: Option<String>,
}

/// The string CloudTrail signs for a digest (AWS "custom implementations of log file integrity
/// validation"): end time, S3 path, hex SHA-256 of the uncompressed digest, previous signature
/// (`null` for the first digest of a chain), joined by newlines.
pub fn signing_string(d: &DigestFile, digest_sha256_hex: &str) -> String {
    format!(
        "{}\n{}/{}\n{}\n{}",
        d.digest_end_time,
        d.digest_s3_bucket,
        d.digest_s3_object,
        digest_sha256_hex,
        d.previous_digest_signature.as_deref().unwrap_or("null")
    )
}

/// Verify a digest's RSA-SHA256 (PKCS#1 v1.5) signature with a DER `RSAPublicKey`.
pub fn verify_signature(public_key_der: &[u8], signing: &str, signature_hex: &str) -> bool {
    let Ok(sig) = hex::decode(signature_hex.trim()) else {
        return false;
    };
    aws_lc_rs::signature::UnparsedPublicKey::new(
        &aws_lc_rs::signature::RSA_PKCS1_2048_8192_SHA256,
        public_key_der,
    )
    .verify(signing.as_bytes(), &sig)
    .is_ok()
}

/// Gunzip `bytes` into memory, at most `max` bytes out.
fn gunzip_bounded(bytes: &[u8], max: u64) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let mut dec = flate2::read::MultiGzDecoder::new(bytes);
    let n = std::io::copy(
        &mut std::io::Read::take(&mut dec, max.saturating_add(1)),
        &mut out,
    )
    .map_err(|e| format!("not gzip: {e}"))?;
    if n > max {
        return Err(format!("larger than {max} bytes decompressed"));
    }
    Ok(out)
}

/// A writer that hashes what it is given and counts it, failing past a cap.
struct HashingWriter {
    hash: Sha256,
    n: u64,
    max: u64,
}

impl Write for HashingWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.n += buf.len() as u64;
        if self.n > self.max {
            return Err(std::io::Error::other(format!(
                "larger than {} bytes decompressed",
                self.max
            )));
        }
        self.hash.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Validates CloudTrail log objects against their digests, remembering what it verified.
#[derive(Debug)]
pub struct DigestVerifier {
    cfg: DigestConfig,
    net: Net,
    s3: tokio::sync::OnceCell<aws_sdk_s3::Client>,
    trails: tokio::sync::Mutex<HashMap<String, aws_sdk_cloudtrail::Client>>,
    keys: std::sync::Mutex<HashMap<String, Vec<u8>>>,
    verified: std::sync::Mutex<HashMap<String, String>>,
}

/// Verified objects remembered (then the memory is cleared).
const VERIFIED_CACHE: usize = 4096;

impl DigestVerifier {
    /// A verifier (no I/O until used).
    pub fn new(cfg: DigestConfig, net: Net) -> DigestVerifier {
        DigestVerifier {
            cfg,
            net,
            s3: tokio::sync::OnceCell::new(),
            trails: tokio::sync::Mutex::new(HashMap::new()),
            keys: std::sync::Mutex::new(HashMap::new()),
            verified: std::sync::Mutex::new(HashMap::new()),
        }
    }

    async fn s3(&self) -> &aws_sdk_s3::Client {
        self.s3
            .get_or_init(|| async {
                let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
                if let Some(r) = &self.cfg.region {
                    loader = loader.region(aws_config::Region::new(r.clone()));
                }
                let base = self.net.aws(loader).load().await;
                let mut b = aws_sdk_s3::config::Builder::from(&base);
                if let Some(e) = &self.cfg.s3_endpoint_url {
                    b = b.endpoint_url(e).force_path_style(true);
                }
                aws_sdk_s3::Client::from_conf(b.build())
            })
            .await
    }

    async fn cloudtrail(&self, region: &str) -> aws_sdk_cloudtrail::Client {
        let mut m = self.trails.lock().await;
        if let Some(c) = m.get(region) {
            return c.clone();
        }
        let loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new(region.to_string()));
        let base = self.net.aws(loader).load().await;
        let mut b = aws_sdk_cloudtrail::config::Builder::from(&base);
        if let Some(e) = &self.cfg.cloudtrail_endpoint_url {
            b = b.endpoint_url(e);
        }
        let c = aws_sdk_cloudtrail::Client::from_conf(b.build());
        m.insert(region.to_string(), c.clone());
        c
    }

    /// Read an object, at most `max` bytes: (body, S3 user metadata).
    async fn get(
        &self,
        bucket: &str,
        key: &str,
        max: u64,
    ) -> Result<(Vec<u8>, HashMap<String, String>), Unverified> {
        use aws_sdk_s3::error::ProvideErrorMetadata;
        let out = self
            .s3()
            .await
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| {
                let code = e.code().unwrap_or("error").to_string();
                if matches!(code.as_str(), "NoSuchKey" | "AccessDenied" | "NoSuchBucket") {
                    Unverified::no(format!("s3://{bucket}/{key}: {code}"))
                } else {
                    Unverified::later(format!(
                        "s3://{bucket}/{key}: {}",
                        aws_sdk_s3::error::DisplayErrorContext(&e)
                    ))
                }
            })?;
        if out.content_length().is_some_and(|l| l as u64 > max) {
            return Err(Unverified::no(format!(
                "s3://{bucket}/{key} is larger than {max} bytes"
            )));
        }
        let meta = out.metadata().cloned().unwrap_or_default();
        let mut body = out.body;
        let mut buf = Vec::new();
        while let Some(chunk) = body
            .try_next()
            .await
            .map_err(|e| Unverified::later(format!("s3://{bucket}/{key}: {e}")))?
        {
            if (buf.len() + chunk.len()) as u64 > max {
                return Err(Unverified::no(format!(
                    "s3://{bucket}/{key} is larger than {max} bytes"
                )));
            }
            buf.extend_from_slice(&chunk);
        }
        Ok((buf, meta))
    }

    /// The public key with `fingerprint` of `region`, valid at `end` (epoch s).
    async fn public_key(
        &self,
        region: &str,
        fingerprint: &str,
        end: i64,
    ) -> Result<Vec<u8>, Unverified> {
        if let Some(k) = self.cfg.public_keys.get(fingerprint) {
            return public_key_der(k)
                .ok_or_else(|| Unverified::no("configured public key is not base64"));
        }
        let cache_key = format!("{region}/{fingerprint}");
        if let Some(k) = self
            .keys
            .lock()
            .ok()
            .and_then(|m| m.get(&cache_key).cloned())
        {
            return Ok(k);
        }
        let out = self
            .cloudtrail(region)
            .await
            .list_public_keys()
            .start_time(aws_sdk_cloudtrail::primitives::DateTime::from_secs(
                end - 86_400,
            ))
            .end_time(aws_sdk_cloudtrail::primitives::DateTime::from_secs(end))
            .send()
            .await
            .map_err(|e| {
                Unverified::later(format!(
                    "CloudTrail ListPublicKeys in {region}: {}",
                    aws_sdk_cloudtrail::error::DisplayErrorContext(&e)
                ))
            })?;
        let key = out
            .public_key_list()
            .iter()
            .find(|k| k.fingerprint() == Some(fingerprint))
            .and_then(|k| k.value())
            .map(|v| v.as_ref().to_vec())
            .ok_or_else(|| {
                Unverified::no(format!(
                    "no CloudTrail public key with fingerprint {fingerprint} in {region}"
                ))
            })?;
        if let Ok(mut m) = self.keys.lock() {
            m.insert(cache_key, key.clone());
        }
        Ok(key)
    }

    /// Validate the CloudTrail log object at `location` (`s3://...`) against the digest that
    /// lists it. `now` is epoch seconds. Returns what was verified.
    pub async fn verify(&self, location: &str, now: i64) -> Result<String, Unverified> {
        if let Some(v) = self
            .verified
            .lock()
            .ok()
            .and_then(|m| m.get(location).cloned())
        {
            return Ok(v);
        }
        let Some(p) = CloudTrailPath::parse(location) else {
            return Err(Unverified::no(format!(
                "{location} is not a CloudTrail log object in S3 (s3://BUCKET/[PREFIX/]AWSLogs/[o-ORG/]ACCOUNT/CloudTrail/REGION/YYYY/MM/DD/ACCOUNT_CloudTrail_REGION_TIME_ID.json.gz), so no digest can vouch for it"
            )));
        };
        let digest = self.find_digest(&p).await?;
        let Some((d, digest_key)) = digest else {
            let age = now - p.delivered;
            let why = format!(
                "no CloudTrail digest file lists s3://{}/{} (delivered {} s ago)",
                p.bucket, p.key, age
            );
            return if age < self.cfg.digest_delay_secs as i64 {
                Err(Unverified::later(format!(
                    "{why}: not verified yet, digests are delivered hourly"
                )))
            } else {
                Err(Unverified::no(format!("{why}: the digest is missing")))
            };
        };
        let entry = d
            .log_files
            .iter()
            .find(|l| l.s3_bucket == p.bucket && l.s3_object == p.key)
            .ok_or_else(|| Unverified::no("digest entry vanished"))?;
        if entry
            .hash_algorithm
            .as_deref()
            .is_some_and(|a| a != "SHA-256")
        {
            return Err(Unverified::no(format!(
                "digest {digest_key} hashes with {:?}, not SHA-256",
                entry.hash_algorithm
            )));
        }
        // The log object itself: SHA-256 of its uncompressed content, as it streams.
        let (body, _) = self
            .get(&p.bucket, &p.key, self.cfg.max_log_object_bytes)
            .await?;
        let mut w = flate2::write::MultiGzDecoder::new(HashingWriter {
            hash: Sha256::new(),
            n: 0,
            max: self.cfg.max_log_decompressed_bytes,
        });
        w.write_all(&body)
            .and_then(|()| w.try_finish())
            .map_err(|e| Unverified::no(format!("s3://{}/{}: {e}", p.bucket, p.key)))?;
        let hash = hex::encode(
            w.finish()
                .map_err(|e| Unverified::no(format!("s3://{}/{}: {e}", p.bucket, p.key)))?
                .hash
                .finalize(),
        );
        if !hash.eq_ignore_ascii_case(&entry.hash_value) {
            return Err(Unverified::no(format!(
                "the SHA-256 of s3://{}/{} ({hash}) is not the one its digest {digest_key} lists ({}): the log object was changed after CloudTrail delivered it",
                p.bucket, p.key, entry.hash_value
            )));
        }
        let ok = format!(
            "s3://{}/{} verified by CloudTrail digest s3://{}/{digest_key}",
            p.bucket, p.key, p.bucket
        );
        if let Ok(mut m) = self.verified.lock() {
            if m.len() >= VERIFIED_CACHE {
                m.clear();
            }
            m.insert(location.to_string(), ok.clone());
        }
        Ok(ok)
    }

    /// The signed, chained digest that lists `p`, if one is found.
    async fn find_digest(
        &self,
        p: &CloudTrailPath,
    ) -> Result<Option<(DigestFile, String)>, Unverified> {
        let mut candidates: Vec<(i64, String)> = Vec::new();
        for prefix in p.digest_prefixes() {
            let out = self
                .s3()
                .await
                .list_objects_v2()
                .bucket(&p.bucket)
                .prefix(&prefix)
                .max_keys(1000)
                .send()
                .await
                .map_err(|e| {
                    Unverified::later(format!(
                        "listing s3://{}/{prefix}: {}",
                        p.bucket,
                        aws_sdk_s3::error::DisplayErrorContext(&e)
                    ))
                })?;
            for o in out.contents() {
                let Some(k) = o.key() else { continue };
                if let Some(end) = digest_end_of_name(k).filter(|e| *e >= p.delivered) {
                    candidates.push((end, k.to_string()));
                }
            }
        }
        candidates.sort();
        for (_, key) in candidates.into_iter().take(self.cfg.max_digest_files) {
            let (gz, meta) = self.get(&p.bucket, &key, self.cfg.max_digest_bytes).await?;
            let raw = gunzip_bounded(&gz, self.cfg.max_digest_bytes)
                .map_err(|e| Unverified::no(format!("digest s3://{}/{key}: {e}", p.bucket)))?;
            let Ok(d) = serde_json::from_slice::<DigestFile>(&raw) else {
                return Err(Unverified::no(format!(
                    "digest s3://{}/{key} is not a CloudTrail digest file",
                    p.bucket
                )));
            };
            if !d
                .log_files
                .iter()
                .any(|l| l.s3_bucket == p.bucket && l.s3_object == p.key)
            {
                continue;
            }
            self.check_digest(p, &key, &d, &raw, &meta).await?;
            return Ok(Some((d, key)));
        }
        Ok(None)
    }

    /// Signature, place, account and chain link of the digest that lists `p`.
    async fn check_digest(
        &self,
        p: &CloudTrailPath,
        key: &str,
        d: &DigestFile,
        raw: &[u8],
        meta: &HashMap<String, String>,
    ) -> Result<(), Unverified> {
        let at = format!("digest s3://{}/{key}", p.bucket);
        if d.digest_s3_bucket != p.bucket || d.digest_s3_object != key {
            return Err(Unverified::no(format!(
                "{at} says it was written to s3://{}/{}: not where it was read",
                d.digest_s3_bucket, d.digest_s3_object
            )));
        }
        if d.aws_account_id != p.account {
            return Err(Unverified::no(format!(
                "{at} is for account {}, the log object for {}",
                d.aws_account_id, p.account
            )));
        }
        let alg = meta.get("signature-algorithm").map(String::as_str);
        if d.digest_signature_algorithm != "SHA256withRSA"
            || alg.is_some_and(|a| a != "SHA256withRSA")
        {
            return Err(Unverified::no(format!(
                "{at}: unsupported signature algorithm {}",
                d.digest_signature_algorithm
            )));
        }
        let Some(signature) = meta.get("signature") else {
            return Err(Unverified::no(format!(
                "{at} has no signature (S3 metadata x-amz-meta-signature)"
            )));
        };
        let end = chrono::DateTime::parse_from_rfc3339(&d.digest_end_time)
            .map_err(|_| Unverified::no(format!("{at}: digestEndTime is not a time")))?
            .timestamp();
        let digest_region = key
            .split('/')
            .skip_while(|s| *s != "CloudTrail-Digest")
            .nth(1)
            .filter(|r| resource::is_aws_region(r))
            .unwrap_or(p.region.as_str());
        let public_key = self
            .public_key(digest_region, &d.digest_public_key_fingerprint, end)
            .await?;
        let digest_hash = hex::encode(Sha256::digest(raw));
        if !verify_signature(&public_key, &signing_string(d, &digest_hash), signature) {
            return Err(Unverified::no(format!(
                "{at}: the signature does not verify with CloudTrail's public key {} (the digest was changed, or not signed by CloudTrail)",
                d.digest_public_key_fingerprint
            )));
        }
        // One link of the chain: the previous digest is where this one says, unchanged.
        if let (Some(pb), Some(pk)) = (&d.previous_digest_s3_bucket, &d.previous_digest_s3_object) {
            if pb != &p.bucket {
                return Ok(()); // another bucket: not readable with this trail's access
            }
            let (gz, pmeta) = self
                .get(pb, pk, self.cfg.max_digest_bytes)
                .await
                .map_err(|e| {
                    Unverified::no(format!("{at}: the previous digest of the chain: {}", e.why))
                })?;
            let praw = gunzip_bounded(&gz, self.cfg.max_digest_bytes)
                .map_err(|e| Unverified::no(format!("previous digest s3://{pb}/{pk}: {e}")))?;
            let phash = hex::encode(Sha256::digest(&praw));
            if d.previous_digest_hash_value.as_deref() != Some(phash.as_str())
                || pmeta.get("signature") != d.previous_digest_signature.as_ref()
            {
                return Err(Unverified::no(format!(
                    "{at}: the previous digest s3://{pb}/{pk} is not the one it chains to (hash or signature differ)"
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::basis::Claim;
    use kmswatch_model::{Origin, Provider};

    const LOG: &str = "s3://org-trail/prefix/AWSLogs/o-abc123/111122223333/CloudTrail/eu-west-1/2024/03/05/111122223333_CloudTrail_eu-west-1_20240305T1015Z_abcdEFGH12345678.json.gz";

    #[test]
    fn cloudtrail_paths() {
        let p = CloudTrailPath::parse(LOG).unwrap();
        assert_eq!(p.bucket, "org-trail");
        assert_eq!(p.account, "111122223333");
        assert_eq!(p.region, "eu-west-1");
        assert_eq!(p.base, "prefix/AWSLogs/o-abc123/111122223333/");
        assert_eq!(p.delivered, 1_709_633_700);
        assert_eq!(
            p.digest_prefixes(),
            [
                "prefix/AWSLogs/o-abc123/111122223333/CloudTrail-Digest/eu-west-1/2024/03/05/",
                "prefix/AWSLogs/o-abc123/111122223333/CloudTrail-Digest/eu-west-1/2024/03/06/"
            ]
        );
        for bad in [
            "s3://org-trail/x.json.gz",
            "kafka://topic/0@1",
            "s3://Org_Trail/AWSLogs/111122223333/CloudTrail/eu-west-1/2024/03/05/111122223333_CloudTrail_eu-west-1_20240305T1015Z_x.json.gz",
            "s3://org-trail/AWSLogs/111122223333/CloudTrail/eu-west-1/2024/03/05/999922223333_CloudTrail_eu-west-1_20240305T1015Z_x.json.gz",
            "s3://org-trail/AWSLogs/111122223333/CloudTrail/eu-west-1.evil/2024/03/05/111122223333_CloudTrail_eu-west-1.evil_20240305T1015Z_x.json.gz",
            "s3://org-trail/AWSLogs/111122223333/CloudTrail/eu-west-1/2024/03/05/111122223333_CloudTrail_eu-west-1_20240306T1015Z_x.json.gz",
        ] {
            assert_eq!(CloudTrailPath::parse(bad), None, "{bad}");
        }
        assert_eq!(
            digest_end_of_name("a/111122223333_CloudTrail-Digest_eu-west-1_my_trail_us-east-1_20240305T110131Z.json.gz"),
            Some(1_709_636_491)
        );
    }

    fn claim(uid: &str, account: &str, region: &str, location: &str) -> Claim {
        Claim {
            uid: uid.into(),
            provider: Provider::Aws,
            operation: "DisableKey".into(),
            service: "kms.amazonaws.com".into(),
            time: 0,
            account: Some(account.into()),
            region: Some(region.into()),
            key: None,
            principal: None,
            origin: Some(Origin {
                source: "cloudtrail".into(),
                location: location.into(),
            }),
        }
    }

    #[test]
    fn locations_are_trusted_and_consistent() {
        let cfg = ProvenanceConfig {
            require: Require::TrustedLocation,
            trusted_locations: vec![TrustedLocation {
                source: Some("cloudtrail".into()),
                location: "s3://org-trail/prefix/AWSLogs/*".into(),
            }],
            ..Default::default()
        };
        cfg.validate().unwrap();
        let c = CompiledProvenance::new(&cfg).unwrap();
        let origin = Origin {
            source: "cloudtrail".into(),
            location: LOG.into(),
        };
        let mut basis = Basis {
            origins: vec![origin.clone()],
            events: vec![claim("e1", "111122223333", "eu-west-1", LOG)],
            events_total: 1,
            ..Default::default()
        };
        assert_eq!(c.check_locations(&basis).unwrap().len(), 1);
        // The event says another account than the log it was read from.
        basis.events = vec![claim("e1", "999999999999", "eu-west-1", LOG)];
        assert!(c
            .check_locations(&basis)
            .unwrap_err()
            .why
            .contains("account 999999999999"));
        basis.events = vec![claim("e1", "111122223333", "us-east-1", LOG)];
        assert!(c.check_locations(&basis).is_err());
        // Another bucket, another source, no origin, too many origins.
        let other = "s3://attacker-bucket/AWSLogs/111122223333/CloudTrail/eu-west-1/2024/03/05/111122223333_CloudTrail_eu-west-1_20240305T1015Z_x.json.gz";
        let b = Basis {
            origins: vec![Origin {
                source: "cloudtrail".into(),
                location: other.into(),
            }],
            ..Default::default()
        };
        assert!(c
            .check_locations(&b)
            .unwrap_err()
            .why
            .contains("not a trusted location"));
        let b = Basis {
            origins: vec![Origin {
                source: "files".into(),
                location: LOG.into(),
            }],
            ..Default::default()
        };
        assert!(c.check_locations(&b).is_err());
        assert!(c
            .check_locations(&Basis::default())
            .unwrap_err()
            .why
            .contains("no log origin"));
        let b = Basis {
            origins: vec![origin],
            origins_truncated: true,
            ..Default::default()
        };
        assert!(c.check_locations(&b).unwrap_err().why.contains("more than"));
    }

    #[test]
    fn config_is_validated() {
        let mut cfg = ProvenanceConfig {
            require: Require::CloudtrailDigest,
            ..Default::default()
        };
        assert!(cfg.validate().is_err(), "require without trusted locations");
        cfg.trusted_locations.push(TrustedLocation {
            source: None,
            location: "s3://org-trail/[".into(),
        });
        cfg.validate().unwrap();
        let e = CompiledProvenance::new(&cfg).unwrap_err().to_string();
        assert!(
            e.contains("provenance.trusted_locations[0].location")
                && e.contains("s3://org-trail/["),
            "{e}"
        );
        cfg.cloudtrail_digest.max_digest_files = 0;
        assert!(cfg.validate().is_err());
    }

    #[test]
    fn signature_roundtrip() {
        use aws_lc_rs::rand::SystemRandom;
        use aws_lc_rs::signature::{KeyPair, RsaKeyPair, RSA_PKCS1_SHA256};
        let kp = RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
        let d: DigestFile = serde_json::from_value(serde_json::json!({
            "awsAccountId": "111122223333",
            "digestEndTime": "2024-03-05T11:01:31Z",
            "digestS3Bucket": "org-trail",
            "digestS3Object": "AWSLogs/111122223333/CloudTrail-Digest/eu-west-1/2024/03/05/x.json.gz",
            "digestPublicKeyFingerprint": "fp",
            "digestSignatureAlgorithm": "SHA256withRSA",
            "previousDigestSignature": null,
            "logFiles": []
        }))
        .unwrap();
        let s = signing_string(&d, "ab");
        assert!(s.ends_with("\nab\nnull"), "{s}");
        let mut sig = vec![0; kp.public_modulus_len()];
        kp.sign(
            &RSA_PKCS1_SHA256,
            &SystemRandom::new(),
            s.as_bytes(),
            &mut sig,
        )
        .unwrap();
        let pk = kp.public_key().as_ref().to_vec();
        assert!(verify_signature(&pk, &s, &hex::encode(&sig)));
        assert!(!verify_signature(&pk, &format!("{s}x"), &hex::encode(&sig)));
        assert!(!verify_signature(&pk, &s, "zz"));
    }
}
