//! `aws_s3_sqs`: S3 objects announced on an SQS queue.
//!
//! Long-polls the queue, parses each message ([`crate::s3event`]), fetches the announced
//! objects one at a time as batches are asked for (HeadObject first, so an object over
//! `max_object_bytes` is never downloaded), keeps the message invisible
//! (ChangeMessageVisibility heartbeat) while any of its objects is still in the pipeline, and
//! deletes it only once every object was acknowledged. A nack or a dropped handle leaves the
//! message: it is received again after its visibility timeout (and ends in the queue's
//! dead-letter queue when the queue has a redrive policy).
//!
//! Nothing is dropped silently. With `on_bad_object: delete` (the default) an object that
//! cannot be read for a reason retrying will not fix (NoSuchKey, AccessDenied, archived, over
//! `max_object_bytes`) and a message that is not a notification are each handed out as a
//! batch holding one [`crate::DeadLetter`] (the message body itself, for a message, since it
//! is gone once deleted) and the message's acknowledgement: the message is deleted only once
//! the runtime has written the dead letter. `s3:TestEvent` messages and CloudTrail digest
//! files are deleted and counted ([`crate::SkipCounts`]).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_sdk_sqs::error::DisplayErrorContext;
use tokio::sync::mpsc;
use tracing::{debug, error, info, warn};

use crate::s3::{head_and_fetch, s3_client, sdk_config, FetchError};
use crate::s3event::{is_digest_key, parse_notice, Notice, ObjectRef};
use crate::{
    reason, set_aside, AckHandle, AwsS3SqsConfig, Backoff, Batch, Bytes, DeadLetter, OnBadObject,
    Retry, Settle, SkipCounts, SourceError,
};

const SOURCE_TYPE: &str = "aws_s3_sqs";

/// Give up on an object (leave its message for redelivery) after this many transient failures.
const MAX_FETCH_ATTEMPTS: u32 = 5;

struct PendingObject {
    msg: u64,
    obj: ObjectRef,
    attempts: u32,
}

/// What is still to hand out, in order.
enum Work {
    /// An announced object to read.
    Object(PendingObject),
    /// A message that is not a notification, set aside.
    SetAside { msg: u64, dead: DeadLetter },
}

enum TrackerMsg {
    Register {
        id: u64,
        receipt: String,
        count: usize,
    },
    Settled {
        id: u64,
        how: Settle,
    },
}

/// The `aws_s3_sqs` source.
pub struct S3SqsSource {
    cfg: AwsS3SqsConfig,
    sqs: aws_sdk_sqs::Client,
    s3: aws_sdk_s3::Client,
    pending: VecDeque<Work>,
    abandoned: HashSet<u64>,
    tracker: mpsc::UnboundedSender<TrackerMsg>,
    next_id: u64,
    backoff: Backoff,
    skips: Arc<SkipCounts>,
}

impl std::fmt::Debug for S3SqsSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3SqsSource")
            .field("queue_url", &self.cfg.queue_url)
            .field("pending_objects", &self.pending.len())
            .finish()
    }
}

fn format_hint(f: &Option<String>) -> Option<String> {
    f.as_ref()
        .filter(|f| *f != "auto" && !f.is_empty())
        .cloned()
}

impl S3SqsSource {
    /// Build the clients (standard credential chain; `endpoint_url` or `AWS_ENDPOINT_URL`).
    pub async fn new(cfg: AwsS3SqsConfig) -> Result<Self, SourceError> {
        crate::SourceConfig::AwsS3Sqs(cfg.clone()).validate()?;
        let conf = sdk_config(cfg.region.as_deref(), cfg.endpoint_url.as_deref()).await;
        let sqs = aws_sdk_sqs::Client::new(&conf);
        let s3 = s3_client(&conf, cfg.force_path_style);
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(tracker(
            sqs.clone(),
            cfg.queue_url.clone(),
            cfg.visibility_timeout_secs,
            rx,
        ));
        let backoff = Backoff::new(
            Duration::from_millis(200),
            Duration::from_secs(cfg.max_backoff_secs),
        );
        Ok(Self {
            cfg,
            sqs,
            s3,
            pending: VecDeque::new(),
            abandoned: HashSet::new(),
            tracker: tx,
            next_id: 0,
            backoff,
            skips: Arc::default(),
        })
    }

    /// What the source passed over on purpose (`s3_test_event`, `cloudtrail_digest`).
    pub fn skip_counts(&self) -> Arc<SkipCounts> {
        self.skips.clone()
    }

    /// The acknowledgement of one batch of message `id`.
    fn handle(&self, id: u64) -> AckHandle {
        let tx = self.tracker.clone();
        AckHandle::new(move |how| {
            let _ = tx.send(TrackerMsg::Settled { id, how });
        })
    }

    /// The next object; never `None` (the queue is polled forever). Transient errors are
    /// retried with backoff; permanent ones (no such queue, access denied) are returned.
    pub async fn next_batch(&mut self) -> Result<Option<Batch>, SourceError> {
        loop {
            match self.pending.pop_front() {
                Some(Work::Object(p)) => {
                    if let Some(b) = self.fetch(p).await {
                        return Ok(Some(b));
                    }
                    continue;
                }
                Some(Work::SetAside { msg, dead }) => {
                    return Ok(Some(set_aside(SOURCE_TYPE, dead, self.handle(msg))));
                }
                None => {}
            }
            match self.receive().await {
                Ok(()) => self.backoff.reset(),
                Err(e) if e.retry() == Retry::Transient => {
                    let d = self.backoff.next_delay();
                    warn!(error = %e, delay_ms = d.as_millis() as u64, "sqs receive failed; retrying");
                    tokio::time::sleep(d).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn settle(&self, msg: u64, how: Settle) {
        let _ = self.tracker.send(TrackerMsg::Settled { id: msg, how });
    }

    async fn fetch(&mut self, mut p: PendingObject) -> Option<Batch> {
        if self.abandoned.contains(&p.msg) {
            self.settle(p.msg, Settle::Retry);
            return None;
        }
        let origin = p.obj.origin();
        // A cancelled call (shutdown) leaves the object pending, not lost.
        self.pending.push_front(Work::Object(PendingObject {
            msg: p.msg,
            obj: p.obj.clone(),
            attempts: p.attempts,
        }));
        let fetched = head_and_fetch(&self.s3, &p.obj, self.cfg.max_object_bytes).await;
        self.pending.pop_front();
        match fetched {
            Ok(bytes) => {
                self.backoff.reset();
                info!(origin = %origin, bytes = bytes.len(), "s3 object read");
                Some(Batch {
                    origin,
                    bytes,
                    format: format_hint(&self.cfg.format),
                    received_at: SystemTime::now(),
                    ack: self.handle(p.msg),
                    dead: Vec::new(),
                })
            }
            Err(FetchError::Bad(dead)) => {
                self.backoff.reset();
                let how = match self.cfg.on_bad_object {
                    OnBadObject::Delete => {
                        // Deleted once the runtime has written the dead letter.
                        return Some(set_aside(SOURCE_TYPE, dead, self.handle(p.msg)));
                    }
                    OnBadObject::Retry => Settle::Retry,
                    OnBadObject::Keep => Settle::Reject,
                };
                error!(origin = %origin, reason = %dead.reason, detail = %dead.detail, policy = ?self.cfg.on_bad_object, "unreadable s3 object left on the queue");
                self.abandoned.insert(p.msg);
                self.settle(p.msg, how);
                None
            }
            Err(FetchError::Transient(why)) => {
                p.attempts += 1;
                if p.attempts >= MAX_FETCH_ATTEMPTS {
                    error!(origin = %origin, reason = %why, "s3 object still unreadable; leaving its message for redelivery");
                    self.abandoned.insert(p.msg);
                    self.settle(p.msg, Settle::Retry);
                    return None;
                }
                let d = self.backoff.next_delay();
                warn!(origin = %origin, reason = %why, delay_ms = d.as_millis() as u64, "s3 read failed; retrying");
                // Queued again before waiting, so a cancelled call loses nothing.
                self.pending.push_front(Work::Object(p));
                tokio::time::sleep(d).await;
                None
            }
        }
    }

    async fn receive(&mut self) -> Result<(), SourceError> {
        let out = self
            .sqs
            .receive_message()
            .queue_url(&self.cfg.queue_url)
            .max_number_of_messages(self.cfg.max_messages as i32)
            .wait_time_seconds(self.cfg.wait_time_secs as i32)
            .visibility_timeout(self.cfg.visibility_timeout_secs as i32)
            .send()
            .await
            .map_err(|e| sqs_error("ReceiveMessage", &self.cfg.queue_url, e))?;
        for m in out.messages.unwrap_or_default() {
            let (Some(receipt), body) = (m.receipt_handle, m.body.unwrap_or_default()) else {
                continue;
            };
            let mid = m.message_id.unwrap_or_default();
            let objects = match parse_notice(&body) {
                Ok(Notice::TestEvent) => {
                    info!(message_id = %mid, "s3:TestEvent deleted");
                    self.skips.add("s3_test_event", 1);
                    self.delete(&receipt).await?;
                    continue;
                }
                Ok(Notice::Objects(o)) => o,
                Err(e) if self.cfg.on_bad_object == OnBadObject::Delete => {
                    let location = format!("sqs://{}#{mid}", without_scheme(&self.cfg.queue_url));
                    let dead = DeadLetter::new(
                        location,
                        reason::NOT_A_NOTIFICATION,
                        format!("message {mid} on {}: {e}", self.cfg.queue_url),
                    )
                    .with_bytes(Bytes::from(body));
                    let id = self.register(receipt, 1);
                    self.pending.push_back(Work::SetAside { msg: id, dead });
                    continue;
                }
                Err(e) => {
                    error!(message_id = %mid, queue_url = %self.cfg.queue_url, error = %e, policy = ?self.cfg.on_bad_object, "message that is not a notification left on the queue");
                    continue;
                }
            };
            let total = objects.len();
            let objects: Vec<ObjectRef> = objects
                .into_iter()
                .filter(|o| {
                    let skip = self.cfg.skip_digest_files && is_digest_key(&o.key);
                    if skip {
                        debug!(origin = %o.origin(), "cloudtrail digest skipped");
                    }
                    !skip
                })
                .collect();
            let digests = (total - objects.len()) as u64;
            if digests > 0 {
                self.skips.add("cloudtrail_digest", digests);
            }
            let allowed = &self.cfg.buckets;
            let (objects, foreign): (Vec<ObjectRef>, Vec<ObjectRef>) = objects
                .into_iter()
                .partition(|o| allowed.is_empty() || allowed.contains(&o.bucket));
            if !foreign.is_empty() && self.cfg.on_bad_object != OnBadObject::Delete {
                let bucket = &foreign[0].bucket;
                error!(message_id = %mid, queue_url = %self.cfg.queue_url, bucket = ?bucket, policy = ?self.cfg.on_bad_object, "notification for a bucket not in `buckets` left on the queue");
                continue;
            }
            if objects.is_empty() && foreign.is_empty() {
                self.delete(&receipt).await?;
                continue;
            }
            let id = self.register(receipt, objects.len() + foreign.len());
            for obj in foreign {
                let dead = DeadLetter::new(
                    obj.origin(),
                    reason::BUCKET_NOT_ALLOWED,
                    format!(
                        "message {mid} on {}: bucket {:?} is not in `buckets`; not read",
                        self.cfg.queue_url, obj.bucket
                    ),
                );
                self.pending.push_back(Work::SetAside { msg: id, dead });
            }
            self.pending.extend(objects.into_iter().map(|obj| {
                Work::Object(PendingObject {
                    msg: id,
                    obj,
                    attempts: 0,
                })
            }));
        }
        Ok(())
    }

    /// Track a received message whose `count` batches must all be acknowledged before it is
    /// deleted; its id.
    fn register(&mut self, receipt: String, count: usize) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        let _ = self
            .tracker
            .send(TrackerMsg::Register { id, receipt, count });
        id
    }

    async fn delete(&self, receipt: &str) -> Result<(), SourceError> {
        self.sqs
            .delete_message()
            .queue_url(&self.cfg.queue_url)
            .receipt_handle(receipt)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| sqs_error("DeleteMessage", &self.cfg.queue_url, e))
    }
}

/// `https://sqs.REGION.amazonaws.com/ACCOUNT/NAME` → `sqs.REGION.amazonaws.com/ACCOUNT/NAME`.
fn without_scheme(url: &str) -> &str {
    url.split_once("://").map_or(url, |(_, rest)| rest)
}

fn sqs_error<E, R>(
    operation: &'static str,
    queue_url: &str,
    e: aws_sdk_sqs::error::SdkError<E, R>,
) -> SourceError
where
    E: std::error::Error + aws_sdk_sqs::error::ProvideErrorMetadata + 'static,
    R: std::fmt::Debug,
{
    use aws_sdk_sqs::error::SdkError;
    let retry = match &e {
        SdkError::ServiceError(se) => match se.err().code() {
            Some(
                "AWS.SimpleQueueService.NonExistentQueue"
                | "QueueDoesNotExist"
                | "AccessDenied"
                | "AccessDeniedException"
                | "InvalidAddress"
                | "InvalidClientTokenId"
                | "InvalidParameterValue",
            ) => Retry::Permanent,
            _ => Retry::Transient,
        },
        SdkError::ConstructionFailure(_) => Retry::Permanent,
        _ => Retry::Transient,
    };
    SourceError::Sqs {
        operation,
        queue_url: queue_url.to_owned(),
        message: DisplayErrorContext(&e).to_string(),
        retry,
    }
}

struct MsgState {
    receipt: String,
    remaining: usize,
    worst: Settle,
}

/// Owns the in-flight SQS messages: heartbeats their visibility and deletes each once all of
/// its objects were acknowledged.
async fn tracker(
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
    visibility_secs: u32,
    mut rx: mpsc::UnboundedReceiver<TrackerMsg>,
) {
    let mut msgs: HashMap<u64, MsgState> = HashMap::new();
    let period =
        Duration::from_millis(u64::from(visibility_secs) * 500).max(Duration::from_millis(500));
    let mut beat = tokio::time::interval(period);
    beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    beat.tick().await;
    loop {
        tokio::select! {
            m = rx.recv() => {
                let Some(m) = m else { break };
                match m {
                    TrackerMsg::Register { id, receipt, count } => {
                        msgs.insert(id, MsgState { receipt, remaining: count, worst: Settle::Ack });
                    }
                    TrackerMsg::Settled { id, how } => {
                        let done = match msgs.get_mut(&id) {
                            Some(s) => {
                                s.remaining = s.remaining.saturating_sub(1);
                                if !how.is_ack() { s.worst = how; }
                                s.remaining == 0
                            }
                            None => false,
                        };
                        if done {
                            if let Some(s) = msgs.remove(&id) {
                                finish(&sqs, &queue_url, s).await;
                            }
                        }
                    }
                }
            }
            _ = beat.tick() => {
                for s in msgs.values() {
                    if let Err(e) = sqs
                        .change_message_visibility()
                        .queue_url(&queue_url)
                        .receipt_handle(&s.receipt)
                        .visibility_timeout(visibility_secs as i32)
                        .send()
                        .await
                    {
                        warn!(queue_url = %queue_url, error = %DisplayErrorContext(&e), "visibility heartbeat failed");
                    }
                }
            }
        }
    }
}

async fn finish(sqs: &aws_sdk_sqs::Client, queue_url: &str, s: MsgState) {
    if !s.worst.is_ack() {
        info!(queue_url = %queue_url, settle = ?s.worst, "sqs message left for redelivery");
        return;
    }
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
    for _ in 0..5 {
        match sqs
            .delete_message()
            .queue_url(queue_url)
            .receipt_handle(&s.receipt)
            .send()
            .await
        {
            Ok(_) => {
                debug!(queue_url = %queue_url, "sqs message deleted");
                return;
            }
            Err(e) => {
                warn!(queue_url = %queue_url, error = %DisplayErrorContext(&e), "sqs delete failed; retrying");
                tokio::time::sleep(backoff.next_delay()).await;
            }
        }
    }
    error!(queue_url = %queue_url, "sqs message could not be deleted; it will be received again");
}
