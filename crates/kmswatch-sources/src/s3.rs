//! S3 helpers shared by the SQS source, and `aws_s3`: a backfill that lists the objects of a
//! date range, aware of the CloudTrail key layout
//! `PREFIX/AWSLogs/[o-ORG/]ACCOUNT/CloudTrail/REGION/YYYY/MM/DD/...` so that only the day
//! prefixes of the requested accounts, regions and dates are listed.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use tracing::{info, warn};

use crate::config::{civil_from_days, parse_date};
use crate::s3event::{is_digest_key, ObjectRef};
use crate::{
    reason, set_aside, AckHandle, AwsS3Config, Backoff, Batch, DeadLetter, Retry, S3Layout,
    SkipCounts, SourceError,
};

/// Load the AWS configuration: standard credential chain, optional region and endpoint
/// override (`AWS_ENDPOINT_URL` is honoured by the chain itself).
pub(crate) async fn sdk_config(region: Option<&str>, endpoint_url: Option<&str>) -> SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest());
    if let Some(r) = region {
        loader = loader.region(Region::new(r.to_owned()));
    }
    if let Some(e) = endpoint_url {
        loader = loader.endpoint_url(e);
    }
    loader.load().await
}

pub(crate) fn s3_client(conf: &SdkConfig, force_path_style: bool) -> aws_sdk_s3::Client {
    let c = aws_sdk_s3::config::Builder::from(conf)
        .force_path_style(force_path_style)
        .build();
    aws_sdk_s3::Client::from_conf(c)
}

/// Why an object was not handed over.
#[derive(Debug)]
pub(crate) enum FetchError {
    /// Missing, forbidden, archived or too large: retrying will not help. The dead letter
    /// names the object, the reason and the error code (and the size, when known).
    Bad(DeadLetter),
    /// Network, throttling, 5xx.
    Transient(String),
}

fn status_of<E, R: HttpStatus>(e: &SdkError<E, R>) -> Option<u16> {
    e.raw_response().map(HttpStatus::status_code)
}

/// Anything with an HTTP status (the SDK's raw response).
pub(crate) trait HttpStatus {
    fn status_code(&self) -> u16;
}

impl HttpStatus for aws_sdk_s3::config::http::HttpResponse {
    fn status_code(&self) -> u16 {
        self.status().as_u16()
    }
}

/// Sort an S3 error into a dead letter (retrying will not help) or a transient failure.
fn fetch_error<E>(
    operation: &str,
    obj: &ObjectRef,
    e: SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
) -> FetchError
where
    E: std::error::Error + ProvideErrorMetadata + 'static,
{
    let status = status_of(&e);
    let code = e.code().map(str::to_owned);
    let why = match (code.as_deref(), status) {
        (Some("NoSuchKey" | "NotFound"), _) | (None, Some(404)) => Some(reason::NO_SUCH_KEY),
        (Some("NoSuchBucket"), _) => Some(reason::NO_SUCH_BUCKET),
        (Some("InvalidObjectState"), _) => Some(reason::INVALID_OBJECT_STATE),
        (Some("AccessDenied" | "Forbidden" | "AllAccessDisabled"), _) | (_, Some(403)) => {
            Some(reason::ACCESS_DENIED)
        }
        (_, Some(408 | 429)) => None,
        (_, Some(400..=499)) => Some(reason::UNREADABLE_OBJECT),
        _ => None,
    };
    let message = DisplayErrorContext(&e).to_string();
    match why {
        Some(why) => {
            let status =
                status.map_or_else(|| "no HTTP status".to_owned(), |s| format!("HTTP {s}"));
            let code = code.unwrap_or_else(|| "no error code".to_owned());
            FetchError::Bad(DeadLetter::new(
                obj.origin(),
                why,
                format!("{operation}: {status}, {code}: {message}"),
            ))
        }
        None => FetchError::Transient(format!("{operation}: {message}")),
    }
}

fn too_large(obj: &ObjectRef, size: u64, max_bytes: u64, when: &str) -> FetchError {
    FetchError::Bad(
        DeadLetter::new(
            obj.origin(),
            reason::OBJECT_TOO_LARGE,
            format!("{size} bytes exceed max_object_bytes ({max_bytes}) {when}; not read"),
        )
        .with_size(size),
    )
}

/// HeadObject first (its size decides before anything is downloaded, and a missing or
/// forbidden object is found without a GET), then the object. Used where the size is not
/// known from S3 itself (a notification's size is whatever the message says).
pub(crate) async fn head_and_fetch(
    s3: &aws_sdk_s3::Client,
    obj: &ObjectRef,
    max_bytes: u64,
) -> Result<bytes::Bytes, FetchError> {
    let head = s3
        .head_object()
        .bucket(&obj.bucket)
        .key(&obj.key)
        .send()
        .await
        .map_err(|e| fetch_error("HeadObject", obj, e))?;
    let size = head
        .content_length()
        .and_then(|l| u64::try_from(l).ok())
        .unwrap_or(0);
    if size > max_bytes {
        return Err(too_large(obj, size, max_bytes, "per HeadObject"));
    }
    fetch_object(s3, obj, max_bytes).await
}

/// GetObject, reading at most `max_bytes` of the body: an object larger than the listing's
/// size or its Content-Length says is cut off and set aside, never held whole.
pub(crate) async fn fetch_object(
    s3: &aws_sdk_s3::Client,
    obj: &ObjectRef,
    max_bytes: u64,
) -> Result<bytes::Bytes, FetchError> {
    if let Some(size) = obj.size.filter(|&s| s > max_bytes) {
        return Err(too_large(obj, size, max_bytes, "per the listing"));
    }
    let resp = s3
        .get_object()
        .bucket(&obj.bucket)
        .key(&obj.key)
        .send()
        .await
        .map_err(|e| fetch_error("GetObject", obj, e))?;
    let length = resp.content_length().and_then(|l| u64::try_from(l).ok());
    if let Some(size) = length.filter(|&l| l > max_bytes) {
        return Err(too_large(
            obj,
            size,
            max_bytes,
            "per GetObject's Content-Length",
        ));
    }
    let cap = usize::try_from(length.unwrap_or(0).min(max_bytes)).unwrap_or(0);
    let mut buf = Vec::with_capacity(cap);
    let mut body = resp.body;
    while let Some(chunk) = body
        .try_next()
        .await
        .map_err(|e| FetchError::Transient(format!("GetObject: reading the body: {e}")))?
    {
        if (buf.len() + chunk.len()) as u64 > max_bytes {
            let seen = (buf.len() + chunk.len()) as u64;
            return Err(too_large(
                obj,
                length.unwrap_or(seen).max(seen),
                max_bytes,
                "while downloading (at least)",
            ));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(bytes::Bytes::from(buf))
}

fn s3_error<E, R>(operation: &'static str, location: String, e: SdkError<E, R>) -> SourceError
where
    E: std::error::Error + ProvideErrorMetadata + 'static,
    R: std::fmt::Debug,
{
    let retry = match &e {
        SdkError::ServiceError(se) => match se.err().code() {
            Some(
                "NoSuchBucket" | "AccessDenied" | "InvalidAccessKeyId" | "SignatureDoesNotMatch",
            ) => Retry::Permanent,
            _ => Retry::Transient,
        },
        SdkError::ConstructionFailure(_) => Retry::Permanent,
        _ => Retry::Transient,
    };
    SourceError::S3 {
        operation,
        location,
        message: DisplayErrorContext(&e).to_string(),
        retry,
    }
}

/// The day prefixes `YYYY/MM/DD/` from `start` to `end` (inclusive, days since the epoch).
pub fn day_paths(start: i64, end: i64) -> Vec<String> {
    (start..=end)
        .map(|d| {
            let (y, m, dd) = civil_from_days(d);
            format!("{y:04}/{m:02}/{dd:02}/")
        })
        .collect()
}

/// The `aws_s3` backfill source: finite, ends with `Ok(None)`.
pub struct S3BackfillSource {
    cfg: AwsS3Config,
    s3: aws_sdk_s3::Client,
    /// Prefixes still to list (each fully, with pagination).
    prefixes: VecDeque<String>,
    /// Objects listed but not yet read.
    objects: VecDeque<ObjectRef>,
    planned: bool,
    /// Flat layout: LastModified window, epoch seconds `[from, to)`.
    window: (i64, i64),
    backoff: Backoff,
    skips: Arc<SkipCounts>,
}

impl std::fmt::Debug for S3BackfillSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3BackfillSource")
            .field("bucket", &self.cfg.bucket)
            .field("prefixes_left", &self.prefixes.len())
            .field("objects_left", &self.objects.len())
            .finish()
    }
}

impl S3BackfillSource {
    /// Build the client; nothing is listed until the first batch is asked for.
    pub async fn new(cfg: AwsS3Config) -> Result<Self, SourceError> {
        crate::SourceConfig::AwsS3(cfg.clone()).validate()?;
        let conf = sdk_config(cfg.region.as_deref(), cfg.endpoint_url.as_deref()).await;
        let s3 = s3_client(&conf, cfg.force_path_style);
        let start = parse_date(&cfg.start_date).unwrap_or(0);
        let end = parse_date(&cfg.end_date).unwrap_or(0);
        Ok(Self {
            cfg,
            s3,
            prefixes: VecDeque::new(),
            objects: VecDeque::new(),
            planned: false,
            window: (start * 86_400, (end + 1) * 86_400),
            backoff: Backoff::new(Duration::from_millis(200), Duration::from_secs(30)),
            skips: Arc::default(),
        })
    }

    /// What the backfill passed over on purpose (digest files).
    pub fn skip_counts(&self) -> Arc<SkipCounts> {
        self.skips.clone()
    }

    /// The common prefixes one level below `prefix`.
    async fn children(&self, prefix: &str) -> Result<Vec<String>, SourceError> {
        let mut out = Vec::new();
        let mut token = None;
        loop {
            let resp = self
                .s3
                .list_objects_v2()
                .bucket(&self.cfg.bucket)
                .prefix(prefix)
                .delimiter("/")
                .set_continuation_token(token)
                .send()
                .await
                .map_err(|e| {
                    s3_error(
                        "ListObjectsV2",
                        format!("s3://{}/{prefix}", self.cfg.bucket),
                        e,
                    )
                })?;
            out.extend(
                resp.common_prefixes()
                    .iter()
                    .filter_map(|p| p.prefix().map(str::to_owned)),
            );
            token = resp.next_continuation_token().map(str::to_owned);
            if token.is_none() {
                return Ok(out);
            }
        }
    }

    /// Work out the prefixes to list, listing only directory levels that are not configured.
    async fn plan(&mut self) -> Result<(), SourceError> {
        let mut base = self.cfg.prefix.clone();
        if self.cfg.layout == S3Layout::Flat {
            self.prefixes.push_back(base);
            return Ok(());
        }
        if !base.is_empty() && !base.ends_with('/') {
            base.push('/');
        }
        base.push_str("AWSLogs/");
        let last_segment = |p: &str| {
            p.trim_end_matches('/')
                .rsplit('/')
                .next()
                .unwrap_or("")
                .to_owned()
        };
        // Account directories: BASE/ACCOUNT/ or BASE/o-ORG/ACCOUNT/.
        let mut roots = Vec::new();
        if self.cfg.organization_ids.is_empty() {
            roots.push(base.clone());
        } else {
            roots.extend(
                self.cfg
                    .organization_ids
                    .iter()
                    .map(|o| format!("{base}{o}/")),
            );
        }
        let mut account_dirs = Vec::new();
        if self.cfg.accounts.is_empty() {
            let mut discovered_orgs = Vec::new();
            for root in &roots {
                for c in self.children(root).await? {
                    let seg = last_segment(&c);
                    if seg.starts_with("o-") && self.cfg.organization_ids.is_empty() {
                        discovered_orgs.push(c);
                    } else if seg.len() == 12 && seg.bytes().all(|b| b.is_ascii_digit()) {
                        account_dirs.push(c);
                    }
                }
            }
            for org in discovered_orgs {
                account_dirs.extend(self.children(&org).await?.into_iter().filter(|c| {
                    let seg = last_segment(c);
                    seg.len() == 12 && seg.bytes().all(|b| b.is_ascii_digit())
                }));
            }
        } else {
            for root in &roots {
                account_dirs.extend(self.cfg.accounts.iter().map(|a| format!("{root}{a}/")));
            }
        }
        let start = parse_date(&self.cfg.start_date).unwrap_or(0);
        let end = parse_date(&self.cfg.end_date).unwrap_or(0);
        let days = day_paths(start, end);
        for acct in account_dirs {
            let trail = format!("{acct}CloudTrail/");
            let regions: Vec<String> = if self.cfg.regions.is_empty() {
                self.children(&trail).await?
            } else {
                self.cfg
                    .regions
                    .iter()
                    .map(|r| format!("{trail}{r}/"))
                    .collect()
            };
            for r in regions {
                self.prefixes.extend(days.iter().map(|d| format!("{r}{d}")));
            }
        }
        info!(bucket = %self.cfg.bucket, prefixes = self.prefixes.len(), "s3 backfill planned");
        Ok(())
    }

    async fn list_prefix(&mut self, prefix: &str) -> Result<(), SourceError> {
        let mut token = None;
        loop {
            let resp = self
                .s3
                .list_objects_v2()
                .bucket(&self.cfg.bucket)
                .prefix(prefix)
                .set_continuation_token(token)
                .send()
                .await
                .map_err(|e| {
                    s3_error(
                        "ListObjectsV2",
                        format!("s3://{}/{prefix}", self.cfg.bucket),
                        e,
                    )
                })?;
            for o in resp.contents() {
                let Some(key) = o.key() else { continue };
                if self.cfg.skip_digest_files && is_digest_key(key) {
                    self.skips.add("cloudtrail_digest", 1);
                    continue;
                }
                if self.cfg.layout == S3Layout::Flat {
                    let t = o.last_modified().map(|t| t.secs());
                    if t.is_some_and(|t| t < self.window.0 || t >= self.window.1) {
                        continue;
                    }
                }
                self.objects.push_back(ObjectRef {
                    bucket: self.cfg.bucket.clone(),
                    key: key.to_owned(),
                    size: o.size().and_then(|s| u64::try_from(s).ok()),
                });
            }
            token = resp.next_continuation_token().map(str::to_owned);
            if token.is_none() {
                return Ok(());
            }
        }
    }

    /// The next object of the range, `Ok(None)` when all were read. An object that cannot be
    /// read for a reason retrying will not fix (missing, forbidden, archived, over
    /// `max_object_bytes` per the listing) is handed out as a dead letter instead.
    pub async fn next_batch(&mut self) -> Result<Option<Batch>, SourceError> {
        if !self.planned {
            self.plan().await?;
            self.planned = true;
        }
        loop {
            if let Some(obj) = self.objects.pop_front() {
                match fetch_object(&self.s3, &obj, self.cfg.max_object_bytes).await {
                    Ok(bytes) => {
                        self.backoff.reset();
                        return Ok(Some(Batch {
                            origin: obj.origin(),
                            bytes,
                            format: self
                                .cfg
                                .format
                                .clone()
                                .filter(|f| f != "auto" && !f.is_empty()),
                            received_at: SystemTime::now(),
                            ack: AckHandle::noop(),
                            dead: Vec::new(),
                        }));
                    }
                    Err(FetchError::Bad(dead)) => {
                        self.backoff.reset();
                        return Ok(Some(set_aside("aws_s3", dead, AckHandle::noop())));
                    }
                    Err(FetchError::Transient(why)) if self.backoff.attempts() < 5 => {
                        let d = self.backoff.next_delay();
                        warn!(origin = %obj.origin(), reason = %why, "s3 read failed; retrying");
                        tokio::time::sleep(d).await;
                        self.objects.push_front(obj);
                    }
                    Err(FetchError::Transient(why)) => {
                        return Err(SourceError::S3 {
                            operation: "GetObject",
                            location: obj.origin(),
                            message: why,
                            retry: Retry::Transient,
                        });
                    }
                }
                continue;
            }
            let Some(prefix) = self.prefixes.pop_front() else {
                return Ok(None);
            };
            self.list_prefix(&prefix).await?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn day_paths_cross_months_and_leap_days() {
        let s = parse_date("2024-02-28").unwrap_or(0);
        let e = parse_date("2024-03-01").unwrap_or(0);
        assert_eq!(
            day_paths(s, e),
            vec!["2024/02/28/", "2024/02/29/", "2024/03/01/"]
        );
    }
}
