//! The streaming pipeline: sources → normalize → dedup → engine → deliver → checkpoint → ack.
//!
//! ```text
//!  source task (one per source)      detect task (one)               deliver task (one)
//!  next_batch ─> normalize ──chan──> dedup ─> engine ─> findings ──chan──> sinks.send
//!                (blocking pool)      every checkpoint_interval_ms:        ...
//!                                     snapshot + dedup delta + acks ─────> sinks.flush
//!                                                                          store.commit (fsync)
//!                                                                          settle the acks
//!                                                          findings ──> respond hook (playbooks)
//! ```
//!
//! The sinks are the sinks crate's `SinkSet` behind `deliver::SinkSetDeliver`: `flush`
//! resolves once every routed sink acknowledged or spooled each finding sent so far.
//!
//! Acknowledgement rule: a batch is acknowledged upstream (SQS message deleted, Kafka offset
//! committed, file position saved) only once (1) every finding emitted before the checkpoint
//! that follows it has been durably accepted by every sink and (2) that checkpoint — which
//! holds the engine's open windows, suppression periods, baselines and the dedup set, i.e.
//! the batch's whole effect on future findings — is on disk. The deliver task handles the
//! channel in order, so (1) holds by construction. After a crash the last checkpoint is
//! restored and every batch not acknowledged is delivered again by its source; its events
//! were not in the checkpoint (or, if they were, the restored dedup set drops them), so no
//! finding is lost and none is produced from an event twice. Finding ids are deterministic,
//! so a finding delivered before the crash but after the last checkpoint is delivered again
//! with the same id and content.
//!
//! Backpressure: the queues are bounded (`state.channel_capacity` batches) and so are the
//! bytes of batches in flight (`limits.memory_budget_bytes`, see `runtime::limits`); a slow
//! sink fills the deliver queue, the detect task waits, the source tasks wait, and sources stop
//! pulling (SQS receives nothing more, Kafka stops at `max_unacked_messages`).
//!
//! Nothing is dropped silently: every rejected record, bad object, batch over the memory
//! budget, batch whose normalization panicked and everything a source set aside
//! (`Batch.dead`) is a dead-letter entry (`runtime::deadletter`), written and fsynced before
//! the checkpoint that settles its batch. A checkpoint that cannot be written (full disk, I/O
//! error) is retried with back-off while `/readyz` says why; nothing is acknowledged past it.
//!
//! Every event is stamped with where it was read from (`kms.origin`: source id and the
//! batch's location — `s3://bucket/key`, `topic/partition/offset`, a file path without its
//! offset), which the response policy uses to decide whether a finding's origin is trusted.

use crate::config::{Config, SourceEntry};
use crate::runtime::deadletter::{DeadEntry, DeadKind, DeadLetterWriter};
use crate::runtime::dedup::{event_key, Dedup};
use crate::runtime::deliver::Deliver;
use crate::runtime::limits::{BudgetPermit, MemoryBudget};
use crate::runtime::metrics::{Metrics, LAG_BUCKETS, LATENCY_BUCKETS};
use crate::runtime::ready::Readiness;
use crate::runtime::respond::ResponseHook;
use crate::runtime::store::{Checkpoint, InFlight, Store};
use anyhow::{Context, Result};
use bytes::Bytes;
use kmswatch_model::{Event, Finding, Origin};
use kmswatch_normalize::{Format, Item, Normalizer, Options, SkipReason};
use kmswatch_rules::{Engine, EngineState};
use kmswatch_sources::{AckHandle, Batch, OnBadObject, Retry, Settle, Source, SourceConfig};
use serde_json::json;
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::{mpsc, watch};
use tracing::{debug, error, info, warn};

/// Milliseconds since the epoch, now.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// When the process was asked to stop, and how long the stop may take: every wait on the way
/// out ends by the deadline (`limits.shutdown_timeout_secs` after the signal). Cheap to clone.
#[derive(Debug, Clone)]
pub struct Shutdown {
    tx: Arc<watch::Sender<bool>>,
    at: Arc<OnceLock<Instant>>,
    timeout: Duration,
}

impl Shutdown {
    /// Not stopping yet; a stop may take `timeout`.
    pub fn new(timeout: Duration) -> Shutdown {
        Shutdown {
            tx: Arc::new(watch::channel(false).0),
            at: Arc::default(),
            timeout,
        }
    }

    /// Ask everything to stop (the first call starts the clock).
    pub fn trigger(&self) {
        let _ = self.at.set(Instant::now());
        self.tx.send_replace(true);
    }

    /// A receiver that turns true when stopping.
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.tx.subscribe()
    }

    /// Stopping.
    pub fn is_stopping(&self) -> bool {
        self.at.get().is_some()
    }

    /// Time left until the deadline (`None` while not stopping).
    pub fn remaining(&self) -> Option<Duration> {
        self.at
            .get()
            .map(|at| (*at + self.timeout).saturating_duration_since(Instant::now()))
    }

    /// Resolves once stopping and the deadline has passed.
    pub async fn deadline(&self) {
        let mut rx = self.subscribe();
        let _ = rx.wait_for(|s| *s).await;
        if let Some(left) = self.remaining() {
            tokio::time::sleep(left).await;
        }
    }

    /// `fut`, or an error naming `what` once stopping and past the deadline.
    pub async fn bounded<T>(&self, what: &str, fut: impl Future<Output = T>) -> Result<T> {
        tokio::select! {
            biased;
            r = fut => Ok(r),
            () = self.deadline() => {
                anyhow::bail!("{what}: still not done {} s after the stop signal (limits.shutdown_timeout_secs)", self.timeout.as_secs())
            }
        }
    }
}

/// A batch after normalization.
#[derive(Debug)]
pub struct Normalized {
    /// The configured source id.
    pub source: Arc<str>,
    /// The engine stream: the source id, plus `/topic/partition` for Kafka.
    pub stream: String,
    /// Where the bytes came from.
    pub origin: String,
    /// The events.
    pub events: Vec<Event>,
    /// Dead-letter entries: rejected records, the whole object when it is bad, what the
    /// source set aside.
    pub dead: Vec<DeadEntry>,
    /// How to settle the batch once its checkpoint is written.
    pub settle: Settle,
    /// The acknowledgement handle.
    pub ack: AckHandle,
    /// When the source handed the batch out.
    pub received: Instant,
    /// The batch's share of the memory budget, released when it is settled.
    pub permit: Option<BudgetPermit>,
}

impl Normalized {
    /// What the batch holds in memory, estimated: each event's raw record plus its fields,
    /// and the dead-letter bytes.
    pub fn held_bytes(&self) -> u64 {
        let events: u64 = self
            .events
            .iter()
            .map(|e| e.raw.get().len() as u64 + 1024)
            .sum();
        events + self.dead.iter().map(DeadEntry::held_bytes).sum::<u64>()
    }
}

/// What the source tasks send to the detect task.
#[derive(Debug)]
pub enum ToDetect {
    /// A normalized batch.
    Batch(Normalized),
    /// A finite source ended: its stream no longer holds the watermark back.
    End(String),
}

/// An acknowledgement waiting for its checkpoint.
#[derive(Debug)]
pub struct PendingAck {
    source: Arc<str>,
    origin: String,
    ack: AckHandle,
    how: Settle,
    received: Instant,
    /// Released after the settlement.
    #[allow(dead_code)]
    permit: Option<BudgetPermit>,
}

/// What the detect task sends to the deliver task, in order.
#[derive(Debug)]
pub enum ToDeliver {
    /// Findings to send to every sink.
    Findings(Vec<Finding>),
    /// Dead-letter entries.
    Dead(Vec<DeadEntry>),
    /// Flush the sinks, write the checkpoint, then settle the acknowledgements.
    Checkpoint(Box<Checkpoint>, Vec<PendingAck>),
}

/// How a source's batches map to engine streams (each stream has its own watermark).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamKind {
    /// One stream per source (SQS, S3 backfill).
    Source,
    /// One stream per topic partition (origin `topic/partition/offset`).
    Kafka,
    /// One stream per file (origin `path` or `path:offset`).
    File,
}

/// A file origin without its `:offset` suffix (a file is one origin).
fn file_path(origin: &str) -> &str {
    match origin.rsplit_once(':') {
        Some((p, off)) if !off.is_empty() && off.bytes().all(|b| b.is_ascii_digit()) => p,
        _ => origin,
    }
}

/// The engine stream of a batch.
pub fn stream_of(source_id: &str, kind: StreamKind, origin: &str) -> String {
    match kind {
        StreamKind::Kafka => {
            let mut it = origin.rsplitn(2, '/');
            let _offset = it.next();
            if let Some(tp) = it.next() {
                return format!("{source_id}/{tp}");
            }
            source_id.to_string()
        }
        StreamKind::File => format!("{source_id}/{}", file_path(origin)),
        StreamKind::Source => source_id.to_string(),
    }
}

/// `kms.origin` of the events of a batch: the source id and the batch's location
/// (`s3://bucket/key`, `topic/partition/offset`, a file path without its offset).
pub fn event_origin(source_id: &str, kind: StreamKind, origin: &str) -> Origin {
    let location = match kind {
        StreamKind::File => file_path(origin),
        StreamKind::Kafka | StreamKind::Source => origin,
    };
    Origin {
        source: source_id.to_string(),
        location: location.to_string(),
    }
}

/// Counts of one batch's normalization, for the bad-object decision and metrics.
#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    events: u64,
    skipped: u64,
    unrecognized: u64,
    empty: u64,
    rejected: u64,
}

/// How a bad batch is settled under a source's `on_bad_object`.
fn settle_bad(on_bad: OnBadObject) -> Settle {
    match on_bad {
        OnBadObject::Delete => Settle::Ack,
        OnBadObject::Retry => Settle::Retry,
        OnBadObject::Keep => Settle::Reject,
    }
}

/// A whole batch set aside as one `object` entry: bucket and key for S3 origins (whose bytes
/// stay in the bucket), the bytes themselves otherwise.
fn object_entry(
    source: &Arc<str>,
    origin: &str,
    reason: &str,
    detail: String,
    bytes: &Bytes,
    settle: Settle,
) -> DeadEntry {
    let mut e = DeadEntry::with_bytes(
        DeadKind::Object,
        source,
        origin,
        origin.to_string(),
        reason,
        detail,
        bytes.clone(),
    );
    if let Some((b, k)) = origin.strip_prefix("s3://").and_then(|r| r.split_once('/')) {
        e.extra.insert("bucket".into(), json!(b));
        e.extra.insert("key".into(), json!(k));
        e = e.without_bytes("at_location");
    }
    let action = match settle {
        Settle::Ack => "acknowledged",
        Settle::Retry => "left for retry",
        _ => "left to the transport dead-letter queue",
    };
    e.extra.insert("action".into(), json!(action));
    e
}

/// The text of a panic payload.
fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic without a message".into())
}

/// Test-only hook: a batch starting with these bytes makes normalization panic.
#[cfg(test)]
pub const PANIC_TRIGGER: &[u8] = b"KMSWATCH-TEST-PANIC";

/// The normalizer's items of `bytes`, or the panic message when it panicked.
fn normalize_items(
    normalizer: &Normalizer,
    bytes: &[u8],
    origin: &str,
    out: &mut dyn FnMut(Item),
) -> Result<(), String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        #[cfg(test)]
        if bytes.starts_with(PANIC_TRIGGER) {
            panic!("test hook: normalizer panic on {origin}");
        }
        normalizer.normalize_bytes(bytes, origin, out)
    }))
    .map_err(|p| panic_message(&*p))
}

/// A normalized batch of `ctx`'s source (its stream from the origin; no budget share yet).
fn normalized(
    ctx: &BatchContext,
    origin: String,
    ack: AckHandle,
    received: Instant,
    events: Vec<Event>,
    dead: Vec<DeadEntry>,
    settle: Settle,
) -> Normalized {
    Normalized {
        source: ctx.source.clone(),
        stream: stream_of(&ctx.source, ctx.kind, &origin),
        origin,
        events,
        dead,
        settle,
        ack,
        received,
        permit: None,
    }
}

/// The entries of what the source set aside for a batch.
fn set_aside(ctx: &BatchContext, batch: &Batch) -> Vec<DeadEntry> {
    batch
        .dead
        .iter()
        .map(|d| DeadEntry::set_aside(&ctx.source, &batch.origin, d))
        .collect()
}

/// What [`normalize_batch`] needs besides the batch.
#[derive(Debug, Clone)]
pub struct BatchContext {
    /// The configured source id.
    pub source: Arc<str>,
    /// How the source's batches map to streams and origins.
    pub kind: StreamKind,
    /// The source's bad-object policy.
    pub on_bad: OnBadObject,
    /// Metrics.
    pub metrics: Metrics,
}

/// Normalize one batch (runs on the blocking pool): events stamped with their origin, and a
/// dead-letter entry for every rejected record, a bad object, a panic of the normalizer and
/// everything the source set aside.
pub fn normalize_batch(
    normalizer: &Normalizer,
    ctx: &BatchContext,
    batch: Batch,
    received: Instant,
) -> Normalized {
    let source = &ctx.source;
    let metrics = &ctx.metrics;
    let stamp = event_origin(source, ctx.kind, &batch.origin);
    let mut events = Vec::new();
    let mut dead = set_aside(ctx, &batch);
    let mut c = Counts::default();
    let origin = batch.origin.clone();
    let mut rejected = Vec::new();
    let panicked = normalize_items(normalizer, &batch.bytes, &origin, &mut |item| match item {
        Item::Event { mut event, .. } => {
            c.events += 1;
            event.kms.origin = Some(stamp.clone());
            events.push(*event);
        }
        Item::Skipped { reason, .. } => {
            c.skipped += 1;
            match reason {
                SkipReason::Unrecognized | SkipReason::NotALogFile => c.unrecognized += 1,
                SkipReason::Empty => c.empty += 1,
                _ => {}
            }
        }
        Item::Rejected {
            error,
            location,
            bytes,
        } => {
            c.rejected += 1;
            rejected.push(DeadEntry::rejected(
                source,
                &origin,
                location.to_string(),
                &error,
                Bytes::from(bytes),
            ));
        }
    })
    .err();
    let fmt = batch.format.as_deref().unwrap_or("auto");
    for (outcome, n) in [
        ("event", c.events),
        ("skipped", c.skipped),
        ("rejected", c.rejected),
    ] {
        if n > 0 {
            metrics.add(
                "kmswatch_records_total",
                &[("source", source), ("format", fmt), ("outcome", outcome)],
                n as f64,
            );
        }
    }
    let mut settle = Settle::Ack;
    if let Some(msg) = panicked {
        // A poison batch: dead-lettered once and settled like a bad object, never retried in
        // a loop; whatever it produced before the panic is discarded.
        settle = settle_bad(ctx.on_bad);
        error!(source = %source, origin = %origin, panic = %msg, action = ?settle, "the normalizer panicked on a batch; dead-lettered");
        events.clear();
        rejected.clear();
        dead.push(object_entry(
            source,
            &origin,
            "internal_error",
            format!("the normalizer panicked: {msg}"),
            &batch.bytes,
            settle,
        ));
    } else if c.events == 0 && c.skipped == c.unrecognized + c.empty {
        // A bad object: nothing usable in it (empty, not gzip/JSON, or JSON of no known
        // format). A batch that only carries what its source set aside is settled the same
        // way, without an entry of its own.
        settle = settle_bad(ctx.on_bad);
        if !batch.bytes.is_empty() || batch.dead.is_empty() {
            let reason = if c.rejected > 0 {
                "unreadable"
            } else if c.unrecognized > 0 {
                "unrecognized_format"
            } else {
                "empty"
            };
            let mut e = object_entry(
                source,
                &origin,
                reason,
                format!(
                    "nothing usable in {} bytes ({} records rejected)",
                    batch.bytes.len(),
                    c.rejected
                ),
                &batch.bytes,
                settle,
            );
            e.extra.insert("rejected_records".into(), json!(c.rejected));
            dead.push(e);
        }
    }
    dead.append(&mut rejected);
    normalized(ctx, origin, batch.ack, received, events, dead, settle)
}

/// A batch larger than the whole in-flight budget: dead-lettered unread (size and hash; its
/// bytes stay at its location) and settled like a bad object.
pub fn over_budget(ctx: &BatchContext, batch: Batch, received: Instant, budget: u64) -> Normalized {
    let settle = settle_bad(ctx.on_bad);
    let mut dead = set_aside(ctx, &batch);
    let e = object_entry(
        &ctx.source,
        &batch.origin,
        "over_memory_budget",
        format!(
            "{} bytes in one batch; batches in flight may hold {budget} bytes (half of limits.memory_budget_bytes)",
            batch.bytes.len()
        ),
        &batch.bytes,
        settle,
    )
    .without_bytes("over_memory_budget");
    dead.push(e);
    normalized(
        ctx,
        batch.origin,
        batch.ack,
        received,
        Vec::new(),
        dead,
        settle,
    )
}

/// The normalizer for a batch's format hint (built once per hint).
fn normalizer_for(
    cache: &mut HashMap<Option<String>, Arc<Normalizer>>,
    base: &Options,
    hint: &Option<String>,
) -> Result<Arc<Normalizer>> {
    if let Some(n) = cache.get(hint) {
        return Ok(n.clone());
    }
    let mut opts = base.clone();
    if let Some(h) = hint {
        opts.format = h
            .parse::<Format>()
            .map_err(|e| anyhow::anyhow!("format {h:?}: {e}"))?;
    }
    let n = Arc::new(Normalizer::new(opts)?);
    cache.insert(hint.clone(), n.clone());
    Ok(n)
}

/// A batch as read, with its admission to the memory budget (`None`: larger than the whole
/// budget).
type Admitted = (Batch, Instant, Option<BudgetPermit>);

/// One source: a reader task pulls batches (never cancelled mid-batch except at shutdown),
/// each admitted to the memory budget first, up to [`MAX_INFLIGHT`] of them normalize at once
/// on the blocking pool, and they are passed on in order. Returns the source when stopped (so
/// that Kafka can commit on shutdown) or when it ended.
pub async fn source_task(
    entry: SourceEntry,
    source: Source,
    base: Options,
    budget: MemoryBudget,
    tx: mpsc::Sender<ToDetect>,
    stop: watch::Receiver<bool>,
    metrics: Metrics,
) -> Source {
    let id: Arc<str> = Arc::from(entry.id.as_str());
    let (kind, whole_files) = match &entry.config {
        SourceConfig::Kafka(_) => (StreamKind::Kafka, false),
        SourceConfig::File(f) => (StreamKind::File, !f.follow),
        _ => (StreamKind::Source, false),
    };
    let on_bad = match &entry.config {
        SourceConfig::AwsS3Sqs(c) => c.on_bad_object,
        _ => OnBadObject::Delete,
    };
    let ctx = Arc::new(BatchContext {
        source: id.clone(),
        kind,
        on_bad,
        metrics: metrics.clone(),
    });
    let (raw_tx, mut raw_rx) = mpsc::channel::<Admitted>(MAX_INFLIGHT);
    let reader = tokio::spawn(read_source(
        source,
        id.clone(),
        budget.clone(),
        base.max_decompressed_bytes,
        raw_tx,
        stop,
        metrics.clone(),
    ));
    let mut cache = HashMap::new();
    let mut inflight: VecDeque<tokio::task::JoinHandle<Normalized>> = VecDeque::new();
    let mut open = true;
    // Files read once: the stream of the last batch passed on (see `forward`).
    let mut last_file_stream: Option<String> = None;
    while open || !inflight.is_empty() {
        tokio::select! {
            biased;
            r = front(&mut inflight) => {
                inflight.pop_front();
                if !forward(r, whole_files.then_some(&mut last_file_stream), &tx, &id).await {
                    break;
                }
            }
            b = raw_rx.recv(), if open && inflight.len() < MAX_INFLIGHT => match b {
                Some((batch, received, permit)) => {
                    let ctx = ctx.clone();
                    let job = match permit {
                        Some(permit) => {
                            let normalizer = match normalizer_for(&mut cache, &base, &batch.format) {
                                Ok(n) => n,
                                Err(e) => {
                                    error!(source = %id, origin = %batch.origin, error = %e, "bad format hint; batch left unacknowledged");
                                    continue;
                                }
                            };
                            tokio::task::spawn_blocking(move || {
                                let mut n = normalize_batch(&normalizer, &ctx, batch, received);
                                n.permit = Some(permit);
                                n
                            })
                        }
                        None => {
                            let bound = budget.bytes();
                            tokio::task::spawn_blocking(move || over_budget(&ctx, batch, received, bound))
                        }
                    };
                    inflight.push_back(job);
                }
                None => open = false,
            },
        }
    }
    drop(raw_rx);
    match reader.await {
        Ok((source, finished)) => {
            if finished {
                info!(source = %id, "source finished");
                let _ = tx.send(ToDetect::End(id.to_string())).await;
            }
            source
        }
        Err(e) => {
            // The reader panicked: nothing to hand back; the process stops with an error.
            error!(source = %id, error = %e, "source reader failed");
            std::panic::resume_unwind(e.into_panic())
        }
    }
}

/// The next finished normalization, in order; pending while none is in flight.
async fn front(
    q: &mut VecDeque<tokio::task::JoinHandle<Normalized>>,
) -> Result<Normalized, tokio::task::JoinError> {
    match q.front_mut() {
        Some(j) => j.await,
        None => std::future::pending().await,
    }
}

/// Pull batches until stopped or the source ends; each is admitted to the memory budget
/// (waiting while it is spent) before it is queued. Returns the source and whether it ended.
async fn read_source(
    mut source: Source,
    id: Arc<str>,
    budget: MemoryBudget,
    max_decompressed: u64,
    tx: mpsc::Sender<Admitted>,
    mut stop: watch::Receiver<bool>,
    metrics: Metrics,
) -> (Source, bool) {
    let mut backoff =
        kmswatch_sources::Backoff::new(Duration::from_millis(200), Duration::from_secs(30));
    let skipped = source.skip_counts();
    metrics.add_collector({
        let id = id.clone();
        move |m| {
            for (reason, n) in skipped.snapshot() {
                m.set_counter(
                    "kmswatch_source_skipped_total",
                    &[("source", &id), ("reason", reason)],
                    n as f64,
                );
            }
        }
    });
    loop {
        if *stop.borrow() {
            return drained(source, &id, &budget, &tx, &metrics).await;
        }
        let next = tokio::select! {
            _ = stop.changed() => return drained(source, &id, &budget, &tx, &metrics).await,
            n = source.next_batch() => n,
        };
        match next {
            Ok(Some(batch)) => {
                backoff.reset();
                metrics.add("kmswatch_source_batches_total", &[("source", &id)], 1.0);
                metrics.add(
                    "kmswatch_source_bytes_total",
                    &[("source", &id)],
                    batch.bytes.len() as f64,
                );
                let size = batch_size(&batch);
                let permit = if budget.admits(size) {
                    // Room to decode it is reserved now, before any byte is decompressed or
                    // parsed (capped at the whole budget); the permit is resized to what the
                    // batch holds once it is normalized. Unsettled when stopped while
                    // waiting: the source delivers it again.
                    let reserve = size + decode_reserve(&batch.bytes, max_decompressed);
                    tokio::select! {
                        _ = stop.changed() => return drained(source, &id, &budget, &tx, &metrics).await,
                        p = budget.acquire(reserve) => Some(p),
                    }
                } else {
                    None
                };
                if tx.send((batch, Instant::now(), permit)).await.is_err() {
                    return (source, false);
                }
            }
            Ok(None) => return (source, true),
            Err(e) => {
                metrics.add("kmswatch_source_errors_total", &[("source", &id)], 1.0);
                let d = backoff.next_delay();
                if e.retry() == Retry::Permanent {
                    error!(source = %id, error = %e, delay_ms = d.as_millis() as u64, "source error (needs an operator); retrying");
                } else {
                    warn!(source = %id, error = %e, delay_ms = d.as_millis() as u64, "source error; retrying");
                }
                tokio::select! {
                    _ = stop.changed() => return drained(source, &id, &budget, &tx, &metrics).await,
                    _ = tokio::time::sleep(d) => {}
                }
            }
        }
    }
}

/// How long a stopping source may take to hand out what it still holds ([`Source::drain`]).
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

/// A stopping source hands out the complete records it still holds (a followed file's last
/// line without a newline, buffered stdin) so they are processed and acknowledged before the
/// last checkpoint instead of waiting for the next start. Bounded by [`DRAIN_TIMEOUT`]; a
/// batch the memory budget cannot take in that time is left unacknowledged (read again at
/// the next start, since its position was not saved).
async fn drained(
    mut source: Source,
    id: &Arc<str>,
    budget: &MemoryBudget,
    tx: &mpsc::Sender<Admitted>,
    metrics: &Metrics,
) -> (Source, bool) {
    let deadline = tokio::time::Instant::now() + DRAIN_TIMEOUT;
    let batches = match tokio::time::timeout_at(deadline, source.drain()).await {
        Ok(Ok(b)) => b,
        Ok(Err(e)) => {
            warn!(source = %id, error = %e, "draining the source failed; what it held is read again at the next start");
            Vec::new()
        }
        Err(_) => {
            warn!(source = %id, "draining the source timed out; what it held is read again at the next start");
            Vec::new()
        }
    };
    for batch in batches {
        metrics.add("kmswatch_source_batches_total", &[("source", id)], 1.0);
        metrics.add(
            "kmswatch_source_bytes_total",
            &[("source", id)],
            batch.bytes.len() as f64,
        );
        let size = batch_size(&batch);
        let permit = if budget.admits(size) {
            match tokio::time::timeout_at(deadline, budget.acquire(size)).await {
                Ok(p) => Some(p),
                Err(_) => {
                    warn!(source = %id, origin = %batch.origin, "no memory budget left while stopping; the drained batch is read again at the next start");
                    continue;
                }
            }
        } else {
            None
        };
        info!(source = %id, origin = %batch.origin, bytes = batch.bytes.len(), "drained on stop");
        if tx.send((batch, Instant::now(), permit)).await.is_err() {
            break;
        }
    }
    (source, false)
}

/// What normalizing `bytes` may allocate on top of them: a compressed batch (gzip, zip) up to
/// the per-object decompression budget, plain text about its own size again (the events and
/// their `raw` copies of it). Reserved in the memory budget before the batch is normalized,
/// so that batches decoding at once stay within it together.
fn decode_reserve(bytes: &[u8], max_decompressed: u64) -> u64 {
    let compressed = bytes.starts_with(&[0x1f, 0x8b]) || bytes.starts_with(b"PK\x03\x04");
    if compressed {
        max_decompressed
    } else {
        bytes.len() as u64
    }
}

/// The bytes a batch holds in memory (its own and its dead letters').
fn batch_size(batch: &Batch) -> u64 {
    batch.bytes.len() as u64
        + batch
            .dead
            .iter()
            .map(|d| d.bytes.as_ref().map_or(0, |b| b.len() as u64))
            .sum::<u64>()
}

/// Batches of one source normalized at once (read-ahead while the previous ones normalize).
const MAX_INFLIGHT: usize = 4;

/// Pass a finished normalization on (its budget share resized to what it holds); false when
/// the pipeline is gone.
///
/// Files read once (`whole_files`) come in several batches each (bounded reading); a file's
/// stream ends when the first batch of another file arrives (or the source ends: `End`),
/// never after one of its batches, so a correlation spanning batches of one file is whole.
async fn forward(
    job: Result<Normalized, tokio::task::JoinError>,
    whole_files: Option<&mut Option<String>>,
    tx: &mpsc::Sender<ToDetect>,
    id: &str,
) -> bool {
    match job {
        Ok(mut n) => {
            if let Some(last) = whole_files {
                if last.as_deref().is_some_and(|l| l != n.stream) {
                    if let Some(prev) = last.take() {
                        if tx.send(ToDetect::End(prev)).await.is_err() {
                            return false;
                        }
                    }
                }
                *last = Some(n.stream.clone());
            }
            let held = n.held_bytes();
            if let Some(p) = n.permit.as_mut() {
                p.resize_to(held).await;
            }
            tx.send(ToDetect::Batch(n)).await.is_ok()
        }
        Err(e) => {
            // Normalization panics are caught in `normalize_batch`; this is a cancelled task.
            error!(source = %id, error = %e, "normalizer task failed; batch left unacknowledged");
            true
        }
    }
}

/// The detect task's settings.
#[derive(Debug, Clone)]
pub struct DetectSettings {
    /// Checkpoint period.
    pub checkpoint_interval: Duration,
    /// Idle streams advance to the wall clock after this long (`None`: never).
    pub idle_advance: Option<Duration>,
    /// Close every window when the input ends (finite sources only: `--exit-when-done`).
    pub flush_at_end: bool,
}

/// The detect task: owns the engine and the dedup set.
pub struct Detector {
    /// The engine.
    pub engine: Engine,
    /// The dedup set.
    pub dedup: Dedup,
    settings: DetectSettings,
    metrics: Metrics,
    tx: mpsc::Sender<ToDeliver>,
    pending: Vec<PendingAck>,
    last_event: HashMap<String, Instant>,
    last_checkpoint: Instant,
    findings: Vec<Finding>,
    /// Checkpoints sent and not yet committed.
    checkpoints: Arc<std::sync::atomic::AtomicUsize>,
}

impl std::fmt::Debug for Detector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Detector")
            .field("pending_acks", &self.pending.len())
            .finish()
    }
}

impl Detector {
    /// A detector sending to `tx`.
    pub fn new(
        engine: Engine,
        dedup: Dedup,
        settings: DetectSettings,
        metrics: Metrics,
        tx: mpsc::Sender<ToDeliver>,
    ) -> Detector {
        Detector {
            engine,
            dedup,
            settings,
            metrics,
            tx,
            pending: Vec::new(),
            last_event: HashMap::new(),
            last_checkpoint: Instant::now(),
            findings: Vec::new(),
            checkpoints: Arc::default(),
        }
    }

    async fn send_findings(&mut self) -> Result<()> {
        let late = self.engine.take_late();
        if !late.is_empty() {
            self.metrics
                .add("kmswatch_events_late_total", &[], late.len() as f64);
        }
        if self.findings.is_empty() {
            return Ok(());
        }
        let mut by_rule: HashMap<&str, u64> = HashMap::new();
        for f in &self.findings {
            *by_rule
                .entry(f.finding_info.analytic.uid.as_str())
                .or_default() += 1;
        }
        for (rule, n) in by_rule {
            self.metrics
                .add("kmswatch_rule_findings_total", &[("rule", rule)], n as f64);
        }
        let v = std::mem::take(&mut self.findings);
        self.tx
            .send(ToDeliver::Findings(v))
            .await
            .map_err(|_| anyhow::anyhow!("deliver task stopped"))
    }

    /// Process one normalized batch.
    pub async fn batch(&mut self, n: Normalized) -> Result<()> {
        let now = now_ms();
        let mut dups = 0u64;
        let mut lag_sum = 0f64;
        let mut lagged = 0u64;
        for ev in &n.events {
            if !ev.metadata.uid.is_empty() {
                let key = event_key(ev.cloud.provider.as_str(), &ev.metadata.uid);
                if !self.dedup.first_time(key, now) {
                    dups += 1;
                    continue;
                }
            }
            let lag = (now as i64).saturating_sub(ev.time).max(0) as f64 / 1000.0;
            lag_sum += lag;
            lagged += 1;
            self.engine.process(ev, &n.stream, &mut self.findings);
        }
        if lagged > 0 {
            self.metrics.observe(
                "kmswatch_event_lag_seconds",
                &[("source", &n.source)],
                LAG_BUCKETS,
                lag_sum / lagged as f64,
                lagged,
            );
            self.last_event.insert(n.stream.clone(), Instant::now());
        }
        if dups > 0 {
            debug!(origin = %n.origin, duplicates = dups, "duplicate events dropped");
            self.metrics.add(
                "kmswatch_events_duplicate_total",
                &[("source", &n.source)],
                dups as f64,
            );
        }
        self.send_findings().await?;
        if !n.dead.is_empty() {
            self.tx
                .send(ToDeliver::Dead(n.dead))
                .await
                .map_err(|_| anyhow::anyhow!("deliver task stopped"))?;
        }
        self.pending.push(PendingAck {
            source: n.source,
            origin: n.origin,
            ack: n.ack,
            how: n.settle,
            received: n.received,
            permit: n.permit,
        });
        if self.checkpoint_due() {
            self.checkpoint().await?;
        }
        Ok(())
    }

    /// The interval has passed and the previous checkpoint is committed: a snapshot taken
    /// while one is still being written would only queue behind it (each holds the whole
    /// engine state), so a slow store stretches the interval instead.
    fn checkpoint_due(&self) -> bool {
        self.last_checkpoint.elapsed() >= self.settings.checkpoint_interval
            && self.checkpoints.load(std::sync::atomic::Ordering::SeqCst) == 0
    }

    /// A finite stream ended.
    pub async fn end(&mut self, stream: &str) -> Result<()> {
        self.engine.end_source(stream, &mut self.findings);
        self.last_event.remove(stream);
        self.send_findings().await
    }

    /// Periodic work: idle streams, due checkpoint.
    pub async fn tick(&mut self) -> Result<()> {
        if let Some(idle) = self.settings.idle_advance {
            let now = now_ms() as i64;
            let idle_streams: Vec<String> = self
                .last_event
                .iter()
                .filter(|(_, t)| t.elapsed() >= idle)
                .map(|(s, _)| s.clone())
                .collect();
            for s in idle_streams {
                self.engine.advance(&s, now, &mut self.findings);
            }
            self.send_findings().await?;
        }
        if self.checkpoint_due() {
            self.checkpoint().await?;
        }
        Ok(())
    }

    /// Snapshot the engine and dedup set and send the checkpoint with the pending acks.
    pub async fn checkpoint(&mut self) -> Result<()> {
        self.last_checkpoint = Instant::now();
        self.dedup.expire(now_ms());
        let stats = self.engine.stats();
        // Windows, suppression, duplicates and the first-seen baseline.
        self.metrics.set(
            "kmswatch_engine_state_bytes",
            &[],
            (stats.state_bytes + stats.baseline_bytes) as f64,
        );
        self.metrics
            .set("kmswatch_dedup_entries", &[], self.dedup.len() as f64);
        self.metrics.set(
            "kmswatch_watermark_ms",
            &[("stream", "engine")],
            stats.watermark as f64,
        );
        let engine = tokio::task::block_in_place(|| self.engine.snapshot_json())
            .context("serializing the engine state")?;
        let (dedup_insert, dedup_remove) = self.dedup.take_delta();
        let cp = Checkpoint {
            engine: Some(engine),
            dedup_insert,
            dedup_remove,
            in_flight: Some(InFlight::new(&self.checkpoints)),
            ..Checkpoint::default()
        };
        let acks = std::mem::take(&mut self.pending);
        self.tx
            .send(ToDeliver::Checkpoint(Box::new(cp), acks))
            .await
            .map_err(|_| anyhow::anyhow!("deliver task stopped"))
    }

    /// Run until every source task has stopped; then write the last checkpoint.
    pub async fn run(mut self, mut rx: mpsc::Receiver<ToDetect>) -> Result<Engine> {
        let mut tick = tokio::time::interval(
            self.settings
                .checkpoint_interval
                .min(Duration::from_millis(500)),
        );
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                m = rx.recv() => match m {
                    Some(ToDetect::Batch(n)) => self.batch(n).await?,
                    Some(ToDetect::End(s)) => {
                        // A finite source: its streams are `id` and `id/...`.
                        let streams: Vec<String> = self.last_event.keys()
                            .filter(|k| **k == s || k.starts_with(&format!("{s}/")))
                            .cloned().collect();
                        self.end(&s).await?;
                        for st in streams { self.end(&st).await?; }
                    }
                    None => break,
                },
                _ = tick.tick() => self.tick().await?,
            }
        }
        if self.settings.flush_at_end {
            self.engine.flush(&mut self.findings);
            self.send_findings().await?;
        }
        self.checkpoint().await?;
        Ok(self.engine)
    }
}

/// Restore the engine and dedup set from the store.
pub fn restore(store: &Store, engine: &mut Engine, dedup: &mut Dedup) -> Result<bool> {
    let r = store.restore()?;
    dedup.restore(r.dedup);
    let Some(bytes) = r.engine else {
        return Ok(false);
    };
    let state: EngineState = serde_json::from_slice(&bytes).with_context(|| {
        format!(
            "reading the engine state in {} (move the state directory away to start afresh)",
            store.path().display()
        )
    })?;
    engine
        .restore(state)
        .map_err(|e| anyhow::anyhow!("restoring the engine state: {e}"))?;
    Ok(true)
}

/// The deliver task: sinks, dead-letter file, checkpoints, acknowledgements, the durable
/// response queue.
pub struct Deliverer {
    /// The sinks.
    pub sinks: Vec<Box<dyn Deliver>>,
    /// The store.
    pub store: Arc<Store>,
    /// The dead-letter file.
    pub dead: DeadLetterWriter,
    /// Metrics.
    pub metrics: Metrics,
    /// The playbooks (`None`: no `respond:` section): findings they have work for are queued
    /// in the checkpoint that acknowledges their batches.
    pub respond: Option<ResponseHook>,
    /// Readiness: a failing checkpoint or dead-letter write makes the process not ready.
    pub ready: Readiness,
    /// The stop signal and its deadline.
    pub shutdown: Shutdown,
}

impl std::fmt::Debug for Deliverer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deliverer")
            .field("sinks", &self.sinks.len())
            .finish()
    }
}

/// Back-off between retries of a failing checkpoint (the longest wait once space returns).
const RETRY_MAX: Duration = Duration::from_secs(5);

/// Write a checkpoint, retrying with back-off while it fails: `/readyz` is 503 with the reason
/// meanwhile and `kmswatch_checkpoint_failures_total` counts the failures. Fails only once
/// stopping and past the shutdown deadline.
pub async fn commit_until_written(
    store: &Arc<Store>,
    cp: Arc<Checkpoint>,
    ready: &Readiness,
    metrics: &Metrics,
    shutdown: &Shutdown,
) -> Result<crate::runtime::store::Committed> {
    let mut backoff = kmswatch_sources::Backoff::new(Duration::from_millis(100), RETRY_MAX);
    let mut failures = 0u64;
    loop {
        let (s, c) = (store.clone(), cp.clone());
        let attempt = shutdown
            .bounded(
                "the last checkpoint",
                tokio::task::spawn_blocking(move || s.commit(&c)),
            )
            .await
            .context("could not write the last checkpoint; nothing after the previous one is acknowledged")?;
        let err = match attempt {
            Ok(Ok(done)) => {
                if ready.recover("state_store") {
                    info!(
                        failures,
                        "checkpoint written again; the state store recovered"
                    );
                }
                return Ok(done);
            }
            Ok(Err(e)) => e,
            Err(e) => anyhow::anyhow!("checkpoint task: {e}"),
        };
        failures += 1;
        metrics.add("kmswatch_checkpoint_failures_total", &[], 1.0);
        let d = backoff.next_delay();
        let why = format!("{err:#}");
        error!(error = %why, delay_ms = d.as_millis() as u64, failures, "checkpoint failed; retrying (nothing is acknowledged meanwhile)");
        ready.fail("state_store", why.clone());
        shutdown
            .bounded("the last checkpoint", tokio::time::sleep(d))
            .await
            .with_context(|| format!("could not write the last checkpoint ({why}); nothing after the previous one is acknowledged"))?;
    }
}

/// Write the buffered dead-letter entries, retrying like [`commit_until_written`].
pub async fn sync_dead_letters(
    dead: &mut DeadLetterWriter,
    ready: &Readiness,
    metrics: &Metrics,
    shutdown: &Shutdown,
) -> Result<()> {
    let mut backoff = kmswatch_sources::Backoff::new(Duration::from_millis(100), RETRY_MAX);
    loop {
        match tokio::task::block_in_place(|| dead.sync()) {
            Ok(()) => {
                if ready.recover("dead_letters") {
                    info!(file = %dead.path().display(), "dead-letter file written again");
                }
                return Ok(());
            }
            Err(e) => {
                let why = format!("writing {}: {e}", dead.path().display());
                metrics.add("kmswatch_dead_letter_write_failures_total", &[], 1.0);
                let d = backoff.next_delay();
                error!(error = %why, delay_ms = d.as_millis() as u64, "dead-letter write failed; retrying (nothing is acknowledged meanwhile)");
                ready.fail("dead_letters", why.clone());
                shutdown
                    .bounded("the dead-letter file", tokio::time::sleep(d))
                    .await
                    .with_context(|| format!("could not write the last dead letters ({why})"))?;
            }
        }
    }
}

/// Help texts of the pipeline's own metrics (beside `metrics::describe_all`).
pub fn describe_metrics(m: &Metrics) {
    m.describe(
        "kmswatch_checkpoint_failures_total",
        "counter",
        "Checkpoint writes that failed (full disk, I/O error) and were retried.",
    );
    m.describe(
        "kmswatch_dead_letter_write_failures_total",
        "counter",
        "Dead-letter file writes that failed and were retried.",
    );
    m.describe(
        "kmswatch_memory_budget_available_bytes",
        "gauge",
        "Bytes of the in-flight batch budget (half of limits.memory_budget_bytes) not held by a batch.",
    );
    crate::runtime::deadletter::describe(m);
    crate::runtime::respond::describe_metrics(m);
}

impl Deliverer {
    /// Run until the detect task has stopped.
    pub async fn run(mut self, mut rx: mpsc::Receiver<ToDeliver>) -> Result<()> {
        let mut queued: Vec<(String, Vec<u8>)> = Vec::new();
        while let Some(m) = rx.recv().await {
            match m {
                ToDeliver::Findings(v) => {
                    self.send(&v).await?;
                    if let Some(hook) = &self.respond {
                        queued.extend(hook.entries(&v));
                    }
                }
                ToDeliver::Dead(entries) => {
                    for e in &entries {
                        self.dead.push(e);
                    }
                }
                ToDeliver::Checkpoint(mut cp, acks) => {
                    let started = Instant::now();
                    self.flush().await?;
                    sync_dead_letters(&mut self.dead, &self.ready, &self.metrics, &self.shutdown)
                        .await?;
                    cp.respond_insert = std::mem::take(&mut queued);
                    if let Some(hook) = &self.respond {
                        cp.respond_remove = hook.take_done();
                    }
                    let done = commit_until_written(
                        &self.store,
                        Arc::from(cp),
                        &self.ready,
                        &self.metrics,
                        &self.shutdown,
                    )
                    .await?;
                    if let Some(hook) = &self.respond {
                        hook.committed(done);
                    }
                    self.metrics.add("kmswatch_checkpoints_total", &[], 1.0);
                    self.metrics.observe(
                        "kmswatch_checkpoint_seconds",
                        &[],
                        LATENCY_BUCKETS,
                        started.elapsed().as_secs_f64(),
                        1,
                    );
                    self.settle(acks);
                }
            }
        }
        Ok(())
    }

    /// Hand findings to every sink (retrying; bounded once stopping).
    async fn send(&mut self, v: &[Finding]) -> Result<()> {
        for sink in &mut self.sinks {
            let started = Instant::now();
            let name = sink.name().to_string();
            let mut backoff =
                kmswatch_sources::Backoff::new(Duration::from_millis(100), Duration::from_secs(30));
            loop {
                let r = self
                    .shutdown
                    .bounded("delivering findings", sink.send(v))
                    .await?;
                match r {
                    Ok(()) => break,
                    Err(e) => {
                        self.metrics
                            .add("kmswatch_sink_errors_total", &[("sink", &name)], 1.0);
                        let d = backoff.next_delay();
                        warn!(sink = %name, error = %format!("{e:#}"), delay_ms = d.as_millis() as u64, "delivery failed; retrying");
                        self.shutdown
                            .bounded("delivering findings", tokio::time::sleep(d))
                            .await?;
                    }
                }
            }
            self.metrics.observe(
                "kmswatch_sink_latency_seconds",
                &[("sink", &name)],
                LATENCY_BUCKETS,
                started.elapsed().as_secs_f64(),
                1,
            );
            self.metrics.add(
                "kmswatch_sink_delivered_total",
                &[("sink", &name)],
                v.len() as f64,
            );
        }
        for f in v {
            debug!(finding = %f.finding_info.uid, rule = %f.finding_info.analytic.uid, "finding delivered");
        }
        Ok(())
    }

    /// Wait until every sink durably accepted what it was sent (bounded once stopping).
    async fn flush(&mut self) -> Result<()> {
        let mut backoff =
            kmswatch_sources::Backoff::new(Duration::from_millis(100), Duration::from_secs(30));
        for sink in &mut self.sinks {
            loop {
                let r = self
                    .shutdown
                    .bounded("flushing the sinks", sink.flush())
                    .await
                    .context("could not write the last checkpoint")?;
                let Err(e) = r else { break };
                let name = sink.name().to_string();
                self.metrics
                    .add("kmswatch_sink_errors_total", &[("sink", &name)], 1.0);
                let d = backoff.next_delay();
                warn!(sink = %name, error = %format!("{e:#}"), "flush failed; retrying");
                self.shutdown
                    .bounded("flushing the sinks", tokio::time::sleep(d))
                    .await?;
            }
        }
        Ok(())
    }

    /// Settle the acknowledgements of a written checkpoint (their budget shares go with them).
    fn settle(&self, acks: Vec<PendingAck>) {
        let mut by_source: HashMap<(Arc<str>, &'static str), u64> = HashMap::new();
        for a in acks {
            let outcome = match a.how {
                Settle::Ack => "ack",
                Settle::Reject => "reject",
                _ => "retry",
            };
            self.metrics.observe(
                "kmswatch_end_to_end_seconds",
                &[("source", &a.source)],
                LATENCY_BUCKETS,
                a.received.elapsed().as_secs_f64(),
                1,
            );
            *by_source.entry((a.source.clone(), outcome)).or_default() += 1;
            debug!(target: "kmswatch::ack", origin = %a.origin, outcome, "batch settled");
            a.ack.settle(a.how);
        }
        for ((s, o), n) in by_source {
            self.metrics.add(
                "kmswatch_source_acked_total",
                &[("source", &s), ("outcome", o)],
                n as f64,
            );
        }
    }
}

/// Engine + dedup for a config, restored from the store.
pub fn build_detector_state(
    cfg: &Config,
    rules: kmswatch_rules::RuleSet,
    store: &Store,
) -> Result<(Engine, Dedup, bool)> {
    let mut engine =
        Engine::new(rules, cfg.rules.engine.clone()).context("building the detection engine")?;
    let mut dedup = Dedup::new(cfg.state.dedup_ttl_secs, cfg.state.dedup_max_entries);
    let restored = restore(store, &mut engine, &mut dedup)?;
    Ok((engine, dedup, restored))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafka_streams_are_per_partition() {
        assert_eq!(
            stream_of("kv", StreamKind::Kafka, "audit/3/1200"),
            "kv/audit/3"
        );
        assert_eq!(stream_of("kv", StreamKind::Kafka, "weird"), "kv");
        assert_eq!(
            stream_of("ct", StreamKind::Source, "s3://b/k/a.json.gz"),
            "ct"
        );
        assert_eq!(
            stream_of("f", StreamKind::File, "/l/a.json:4096"),
            "f//l/a.json"
        );
        assert_eq!(stream_of("f", StreamKind::File, "/l/a.json"), "f//l/a.json");
    }

    fn ctx(on_bad: OnBadObject, kind: StreamKind) -> (BatchContext, Metrics) {
        let m = Metrics::default();
        (
            BatchContext {
                source: Arc::from("ct"),
                kind,
                on_bad,
                metrics: m.clone(),
            },
            m,
        )
    }

    fn batch(origin: &str, bytes: &[u8], ack: AckHandle) -> Batch {
        Batch {
            origin: origin.into(),
            bytes: Bytes::copy_from_slice(bytes),
            format: None,
            received_at: SystemTime::now(),
            ack,
            dead: Vec::new(),
        }
    }

    const EVENT: &str = r#"{"Records":[{"eventVersion":"1.09","userIdentity":{"type":"IAMUser","principalId":"AIDAX","arn":"arn:aws:iam::111122223333:user/u","accountId":"111122223333","userName":"u"},"eventTime":"2026-01-15T15:00:00Z","eventSource":"kms.amazonaws.com","eventName":"DisableKey","awsRegion":"us-east-1","sourceIPAddress":"203.0.113.10","userAgent":"x","requestParameters":{"keyId":"arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"},"responseElements":null,"requestID":"r","eventID":"e1","readOnly":false,"eventType":"AwsApiCall","managementEvent":true,"recipientAccountId":"111122223333","eventCategory":"Management"}]}"#;

    #[test]
    fn bad_objects_are_dead_lettered_and_settled_per_policy() {
        let normalizer = Normalizer::new(Options::default()).expect("normalizer");
        for (bytes, reason) in [
            (&b""[..], "empty"),
            (&b"\x1f\x8b\x08garbage"[..], "unreadable"),
            (&b"not json at all"[..], "unreadable"),
            (
                &br#"{"kind":"k8s","apiVersion":"audit.k8s.io/v1"}"#[..],
                "unrecognized_format",
            ),
        ] {
            for (policy, settle) in [
                (OnBadObject::Delete, Settle::Ack),
                (OnBadObject::Keep, Settle::Reject),
                (OnBadObject::Retry, Settle::Retry),
            ] {
                let (c, m) = ctx(policy, StreamKind::Source);
                let b = batch("s3://bucket/AWSLogs/x.json.gz", bytes, AckHandle::noop());
                let n = normalize_batch(&normalizer, &c, b, Instant::now());
                assert_eq!(n.settle, settle, "{reason}");
                let first = n
                    .dead
                    .first()
                    .unwrap_or_else(|| panic!("no dead-letter entry for {reason}"));
                assert_eq!(first.kind, DeadKind::Object);
                assert_eq!(first.extra["bucket"], "bucket");
                assert_eq!(first.extra["key"], "AWSLogs/x.json.gz");
                assert_eq!(first.reason, reason, "{}", String::from_utf8_lossy(bytes));
                // The object stays in its bucket: identified by size and hash, not copied.
                assert!(first.data.is_none());
                assert_eq!(first.data_omitted, Some("at_location"));
                assert_eq!(first.size, Some(bytes.len() as u64));
                assert_eq!(
                    first.sha256.as_deref(),
                    Some(crate::runtime::deadletter::sha256_hex(bytes).as_str())
                );
                let mut w = DeadLetterWriter::new(
                    tempfile::tempdir().expect("tmp").path().join("dl"),
                    1 << 20,
                    2,
                    m.clone(),
                );
                for e in &n.dead {
                    w.push(e);
                }
                assert_eq!(
                    m.counter(
                        "kmswatch_dead_letters_total",
                        &[("source", "ct"), ("reason", reason)]
                    ),
                    1.0
                );
            }
        }
    }

    /// Issue 12: every rejected record is an entry with its exact bytes — no cap per batch,
    /// no truncation, no lossy conversion.
    #[test]
    fn three_hundred_rejected_records_are_three_hundred_exact_entries() {
        let normalizer = Normalizer::new(Options::default()).expect("normalizer");
        let (c, m) = ctx(OnBadObject::Delete, StreamKind::File);
        let mut text = format!("{EVENT}\n").into_bytes();
        let mut bad: Vec<Vec<u8>> = Vec::new();
        for i in 0..300 {
            let mut line = format!("garbage {i} {{not json").into_bytes();
            if i % 2 == 1 {
                line.extend_from_slice(b"\xff\xfe\x80");
            }
            line.extend(std::iter::repeat_n(b'z', 70_000 * (i % 3 == 0) as usize));
            text.extend_from_slice(&line);
            text.push(b'\n');
            bad.push(line);
        }
        let n = normalize_batch(
            &normalizer,
            &c,
            batch("/logs/a.json:4096", &text, AckHandle::noop()),
            Instant::now(),
        );
        assert_eq!(n.events.len(), 1);
        assert_eq!(n.settle, Settle::Ack);
        let records: Vec<&DeadEntry> = n
            .dead
            .iter()
            .filter(|e| e.kind == DeadKind::Record)
            .collect();
        assert_eq!(records.len(), 300);
        let dir = tempfile::tempdir().expect("tmp");
        let mut w = DeadLetterWriter::new(dir.path().join("dl.jsonl"), 1 << 30, 2, m.clone());
        for e in &n.dead {
            w.push(e);
        }
        w.sync().expect("sync");
        let lines: Vec<serde_json::Value> = std::fs::read_to_string(dir.path().join("dl.jsonl"))
            .expect("read")
            .lines()
            .map(|l| serde_json::from_str(l).expect("json"))
            .collect();
        assert_eq!(lines.len(), 300);
        for (l, want) in lines.iter().zip(&bad) {
            use base64::Engine as _;
            let data = l["data"].as_str().expect("data");
            let got = match l["encoding"].as_str() {
                Some("utf8") => data.as_bytes().to_vec(),
                Some("base64") => base64::engine::general_purpose::STANDARD
                    .decode(data)
                    .expect("base64"),
                e => panic!("encoding {e:?}"),
            };
            assert_eq!(&got, want);
            assert_eq!(l["size"], want.len());
            assert_eq!(l["origin"], "/logs/a.json:4096");
            assert_eq!(l["kind"], "record");
        }
        assert_eq!(
            m.counter(
                "kmswatch_dead_letters_total",
                &[("source", "ct"), ("reason", "malformed_json")]
            ),
            300.0
        );
    }

    #[test]
    fn events_carry_their_origin() {
        let normalizer = Normalizer::new(Options::default()).expect("normalizer");
        for (kind, origin, location) in [
            (StreamKind::File, "/l/a.json:4096", "/l/a.json"),
            (StreamKind::File, "/l/a.json", "/l/a.json"),
            (StreamKind::Kafka, "audit/3/1200", "audit/3/1200"),
            (
                StreamKind::Source,
                "s3://b/AWSLogs/k.json.gz",
                "s3://b/AWSLogs/k.json.gz",
            ),
        ] {
            let (c, _) = ctx(OnBadObject::Delete, kind);
            let n = normalize_batch(
                &normalizer,
                &c,
                batch(origin, EVENT.as_bytes(), AckHandle::noop()),
                Instant::now(),
            );
            assert_eq!(n.events.len(), 1);
            assert_eq!(
                n.events[0].kms.origin,
                Some(Origin {
                    source: "ct".into(),
                    location: location.into()
                }),
                "{origin}"
            );
        }
    }

    /// A panic while normalizing one batch is caught: the batch is dead-lettered once
    /// (`internal_error`, with the panic message) and settled per `on_bad_object`.
    #[test]
    fn a_normalizer_panic_dead_letters_the_batch_once() {
        let normalizer = Normalizer::new(Options::default()).expect("normalizer");
        for (policy, settle) in [
            (OnBadObject::Delete, Settle::Ack),
            (OnBadObject::Keep, Settle::Reject),
        ] {
            let (c, _) = ctx(policy, StreamKind::Kafka);
            let mut bytes = PANIC_TRIGGER.to_vec();
            bytes.extend_from_slice(EVENT.as_bytes());
            let n = normalize_batch(
                &normalizer,
                &c,
                batch("audit/0/7", &bytes, AckHandle::noop()),
                Instant::now(),
            );
            assert!(n.events.is_empty());
            assert_eq!(n.settle, settle);
            assert_eq!(n.dead.len(), 1);
            let e = &n.dead[0];
            assert_eq!(e.reason, "internal_error");
            assert!(
                e.detail
                    .contains("test hook: normalizer panic on audit/0/7"),
                "{}",
                e.detail
            );
            // A Kafka message exists nowhere else once its offset is committed: its bytes are
            // in the entry.
            assert_eq!(e.data.as_deref(), Some(&bytes[..]));
        }
    }

    /// Through a source task: the poison file is dead-lettered and the next one processed.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_pipeline_goes_on_after_a_poison_batch() {
        let dir = tempfile::tempdir().expect("tmp");
        let mut poison = PANIC_TRIGGER.to_vec();
        poison.extend_from_slice(EVENT.as_bytes());
        std::fs::write(dir.path().join("a-poison.json"), &poison).expect("write");
        std::fs::write(dir.path().join("b-good.json"), EVENT).expect("write");
        let entry = SourceEntry {
            id: "files".into(),
            config: serde_json::from_value(json!({"type": "file", "paths": [dir.path()]}))
                .expect("file source"),
        };
        let source = Source::open(&entry.config).await.expect("open");
        let (tx, mut rx) = mpsc::channel(8);
        let (_stop_tx, stop) = watch::channel(false);
        let task = tokio::spawn(source_task(
            entry,
            source,
            Options::default(),
            MemoryBudget::new(1 << 20),
            tx,
            stop,
            Metrics::default(),
        ));
        let mut got = Vec::new();
        while let Some(m) = rx.recv().await {
            if let ToDetect::Batch(n) = m {
                got.push(n);
            }
        }
        task.await.expect("source task");
        assert_eq!(got.len(), 2);
        assert!(got[0].origin.ends_with("a-poison.json"));
        assert_eq!(got[0].dead[0].reason, "internal_error");
        assert!(got[0].events.is_empty());
        assert_eq!(got[1].events.len(), 1);
        assert!(got[1].permit.is_some(), "admitted to the budget");
    }

    #[test]
    fn a_batch_over_the_budget_is_an_entry_without_its_bytes() {
        let (c, _) = ctx(OnBadObject::Delete, StreamKind::Source);
        let big = vec![b'{'; 5000];
        let n = over_budget(
            &c,
            batch("s3://b/k.json.gz", &big, AckHandle::noop()),
            Instant::now(),
            4096,
        );
        assert_eq!(n.settle, Settle::Ack);
        assert!(n.events.is_empty());
        let e = &n.dead[0];
        assert_eq!(e.reason, "over_memory_budget");
        assert_eq!(e.size, Some(5000));
        assert_eq!(e.data_omitted, Some("over_memory_budget"));
        assert_eq!(e.extra["key"], "k.json.gz");
    }

    /// A test sink that accepts everything.
    struct NullSink;

    impl Deliver for NullSink {
        fn name(&self) -> &str {
            "null"
        }
        fn send<'a>(
            &'a mut self,
            _: &'a [Finding],
        ) -> crate::runtime::deliver::BoxFut<'a, Result<()>> {
            Box::pin(async { Ok(()) })
        }
        fn flush(&mut self) -> crate::runtime::deliver::BoxFut<'_, Result<()>> {
            Box::pin(async { Ok(()) })
        }
    }

    /// What a source set aside (`Batch.dead`) is written, fsynced and counted before the
    /// batch is acknowledged.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn set_aside_entries_are_written_and_counted_before_the_ack() {
        let dir = tempfile::tempdir().expect("tmp");
        let dl = dir.path().join("dead.jsonl");
        let m = Metrics::default();
        let normalizer = Normalizer::new(Options::default()).expect("normalizer");
        let c = BatchContext {
            source: Arc::from("sqs"),
            kind: StreamKind::Source,
            on_bad: OnBadObject::Delete,
            metrics: m.clone(),
        };
        let seen = Arc::new(std::sync::Mutex::new(None));
        let (path, metrics, s2) = (dl.clone(), m.clone(), seen.clone());
        let ack = AckHandle::new(move |how| {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let counted = metrics.counter(
                "kmswatch_dead_letters_total",
                &[("source", "sqs"), ("reason", "not_a_notification")],
            );
            *s2.lock().expect("lock") = Some((how, text, counted));
        });
        let mut b = batch("sqs://q#m-1", b"", ack);
        b.dead.push(kmswatch_sources::DeadLetter {
            location: "sqs://q#m-1".into(),
            reason: "not_a_notification".into(),
            detail: "the body is not an S3 event notification".into(),
            bytes: Some(Bytes::from_static(b"\x00hello\xff")),
            size: Some(7),
            sha256: None,
        });
        let n = normalize_batch(&normalizer, &c, b, Instant::now());
        assert_eq!(
            n.dead.len(),
            1,
            "no extra 'empty' entry for a carrier batch"
        );
        let store = Arc::new(Store::open(&dir.path().join("state")).expect("store"));
        let (tx, rx) = mpsc::channel(8);
        let deliverer = Deliverer {
            sinks: vec![Box::new(NullSink)],
            store: store.clone(),
            dead: DeadLetterWriter::new(dl.clone(), 1 << 20, 2, m.clone()),
            metrics: m.clone(),
            respond: None,
            ready: Readiness::new(&m),
            shutdown: Shutdown::new(Duration::from_secs(5)),
        };
        let task = tokio::spawn(deliverer.run(rx));
        tx.send(ToDeliver::Dead(n.dead)).await.expect("send");
        tx.send(ToDeliver::Checkpoint(
            Box::default(),
            vec![PendingAck {
                source: n.source,
                origin: n.origin,
                ack: n.ack,
                how: n.settle,
                received: n.received,
                permit: None,
            }],
        ))
        .await
        .expect("send");
        drop(tx);
        task.await.expect("join").expect("deliver");
        let (how, text, counted) = seen.lock().expect("lock").take().expect("settled");
        assert_eq!(how, Settle::Ack);
        assert_eq!(counted, 1.0);
        let e: serde_json::Value = serde_json::from_str(text.trim()).expect("one entry");
        assert_eq!(e["kind"], "set_aside");
        assert_eq!(e["reason"], "not_a_notification");
        assert_eq!(e["encoding"], "base64");
        assert_eq!(e["size"], 7);
        assert_eq!(e["location"], "sqs://q#m-1");
    }

    /// A checkpoint that cannot be written keeps the process not ready and settles nothing;
    /// once stopping, the deliver task gives up at the deadline with an error (a non-zero
    /// exit) instead of hanging.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failing_checkpoint_settles_nothing_and_stops_by_the_deadline() {
        let dir = tempfile::tempdir().expect("tmp");
        let m = Metrics::default();
        let store = Arc::new(Store::open(&dir.path().join("state")).expect("store"));
        let ready = Readiness::new(&m);
        ready.started(true);
        let shutdown = Shutdown::new(Duration::from_millis(1500));
        // One good checkpoint, then the database file is replaced by a directory: every later
        // commit fails (reopening it fails) until the end of the test.
        let cp = Checkpoint {
            engine: Some(vec![0u8; 16]),
            ..Checkpoint::default()
        };
        store.commit(&cp).expect("first commit works");
        store.close_after_failure();
        let db = dir.path().join("state/kmswatch.redb");
        std::fs::remove_file(&db).expect("rm db");
        std::fs::create_dir(&db).expect("dir in its place");
        let settled = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let s2 = settled.clone();
        let (tx, rx) = mpsc::channel(8);
        let deliverer = Deliverer {
            sinks: vec![Box::new(NullSink)],
            store: store.clone(),
            dead: DeadLetterWriter::new(dir.path().join("dl"), 1 << 20, 2, m.clone()),
            metrics: m.clone(),
            respond: None,
            ready: ready.clone(),
            shutdown: shutdown.clone(),
        };
        let task = tokio::spawn(deliverer.run(rx));
        tx.send(ToDeliver::Checkpoint(
            Box::default(),
            vec![PendingAck {
                source: Arc::from("s"),
                origin: "o".into(),
                ack: AckHandle::new(move |how| {
                    s2.store(how.is_ack(), std::sync::atomic::Ordering::SeqCst)
                }),
                how: Settle::Ack,
                received: Instant::now(),
                permit: None,
            }],
        ))
        .await
        .expect("send");
        for _ in 0..100 {
            if m.counter("kmswatch_checkpoint_failures_total", &[]) > 0.0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(m.counter("kmswatch_checkpoint_failures_total", &[]) > 0.0);
        assert!(!ready.is_ready());
        assert!(
            ready.reason().unwrap_or_default().contains("state_store"),
            "{:?}",
            ready.reason()
        );
        assert!(!settled.load(std::sync::atomic::Ordering::SeqCst));
        // SIGTERM: the deliver task ends by the deadline with an error.
        let t = Instant::now();
        shutdown.trigger();
        drop(tx);
        let r = tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("bounded")
            .expect("join");
        let e = r.expect_err("the last checkpoint was not written");
        assert!(
            format!("{e:#}").contains("could not write the last checkpoint"),
            "{e:#}"
        );
        assert!(t.elapsed() < Duration::from_secs(5));
        assert!(!settled.load(std::sync::atomic::Ordering::SeqCst));
    }
}
