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
//! Backpressure: the queues are bounded (`state.channel_capacity` batches); a slow sink
//! fills the deliver queue, the detect task waits, the source tasks wait, and sources stop
//! pulling (SQS receives nothing more, Kafka stops at `max_unacked_messages`).

use crate::config::{Config, SourceEntry};
use crate::runtime::dedup::{event_key, Dedup};
use crate::runtime::deliver::Deliver;
use crate::runtime::metrics::{Metrics, LAG_BUCKETS, LATENCY_BUCKETS};
use crate::runtime::store::{Checkpoint, InFlight, Store};
use anyhow::{Context, Result};
use kmswatch_model::{Event, Finding};
use kmswatch_normalize::{Format, Item, Normalizer, Options, SkipReason};
use kmswatch_rules::{Engine, EngineState};
use kmswatch_sources::{AckHandle, Batch, OnBadObject, Retry, Settle, Source, SourceConfig};
use serde_json::json;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
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
    /// Dead-letter records (rejected records; the whole object when it is bad).
    pub dead: Vec<serde_json::Value>,
    /// How to settle the batch once its checkpoint is written.
    pub settle: Settle,
    /// The acknowledgement handle.
    pub ack: AckHandle,
    /// When the source handed the batch out.
    pub received: Instant,
    /// The batch is a whole file read once: its stream ends with it.
    pub ends_stream: bool,
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
}

/// What the detect task sends to the deliver task, in order.
#[derive(Debug)]
pub enum ToDeliver {
    /// Findings to send to every sink.
    Findings(Vec<Finding>),
    /// Dead-letter records.
    Dead(Vec<serde_json::Value>),
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
        StreamKind::File => {
            let path = match origin.rsplit_once(':') {
                Some((p, off)) if !off.is_empty() && off.bytes().all(|b| b.is_ascii_digit()) => p,
                _ => origin,
            };
            format!("{source_id}/{path}")
        }
        StreamKind::Source => source_id.to_string(),
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

/// Normalize one batch (runs on the blocking pool).
pub fn normalize_batch(
    normalizer: &Normalizer,
    source: &Arc<str>,
    stream: String,
    batch: Batch,
    on_bad: OnBadObject,
    received: Instant,
    metrics: &Metrics,
) -> Normalized {
    let mut events = Vec::new();
    let mut dead = Vec::new();
    let mut c = Counts::default();
    let origin = batch.origin.clone();
    normalizer.normalize_bytes(&batch.bytes, &origin, &mut |item| match item {
        Item::Event { event, .. } => {
            c.events += 1;
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
            if dead.len() < 100 {
                dead.push(json!({
                    "kind": "record",
                    "source": &**source,
                    "location": location.to_string(),
                    "reason": error.reason.as_str(),
                    "detail": error.detail,
                    "record": String::from_utf8_lossy(bytes.get(..bytes.len().min(64 * 1024)).unwrap_or_default()),
                }));
            }
        }
    });
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
    // A bad object: nothing usable in it (empty, not gzip/JSON, or JSON of no known format).
    let bad = c.events == 0 && c.skipped == c.unrecognized + c.empty;
    let mut settle = Settle::Ack;
    if bad {
        let reason = if c.rejected > 0 {
            "unreadable"
        } else if c.unrecognized > 0 {
            "unrecognized format"
        } else {
            "empty"
        };
        settle = match on_bad {
            OnBadObject::Delete => Settle::Ack,
            OnBadObject::Retry => Settle::Retry,
            OnBadObject::Keep => Settle::Reject,
        };
        let (bucket, key) = origin
            .strip_prefix("s3://")
            .and_then(|r| r.split_once('/'))
            .map_or((None, None), |(b, k)| (Some(b), Some(k)));
        warn!(source = %source, origin = %origin, reason, bytes = batch.bytes.len(), action = ?settle, "bad object dead-lettered");
        metrics.add(
            "kmswatch_dead_letters_total",
            &[("source", source), ("reason", reason)],
            1.0,
        );
        dead.insert(
            0,
            json!({
                "kind": "object",
                "source": &**source,
                "origin": origin,
                "bucket": bucket,
                "key": key,
                "reason": reason,
                "bytes": batch.bytes.len(),
                "rejected_records": c.rejected,
                "head": String::from_utf8_lossy(batch.bytes.get(..batch.bytes.len().min(256)).unwrap_or_default()),
                "action": match settle { Settle::Ack => "acknowledged", Settle::Retry => "left for retry", _ => "left to the transport dead-letter queue" },
                "time_ms": now_ms(),
            }),
        );
    } else if c.rejected > 0 {
        metrics.add(
            "kmswatch_dead_letters_total",
            &[("source", source), ("reason", "rejected record")],
            c.rejected as f64,
        );
    }
    Normalized {
        source: source.clone(),
        stream,
        origin,
        events,
        dead,
        settle,
        ack: batch.ack,
        received,
        ends_stream: false,
    }
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

/// One source: a reader task pulls batches (never cancelled mid-batch except at shutdown),
/// up to [`MAX_INFLIGHT`] of them normalize at once on the blocking pool, and they are passed
/// on in order. Returns the source when stopped (so that Kafka can commit on shutdown) or when
/// it ended.
pub async fn source_task(
    entry: SourceEntry,
    source: Source,
    base: Options,
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
    let (raw_tx, mut raw_rx) = mpsc::channel::<(Batch, Instant)>(MAX_INFLIGHT);
    let reader = tokio::spawn(read_source(
        source,
        id.clone(),
        raw_tx,
        stop,
        metrics.clone(),
    ));
    let mut cache = HashMap::new();
    let mut inflight: VecDeque<tokio::task::JoinHandle<Normalized>> = VecDeque::new();
    let mut open = true;
    while open || !inflight.is_empty() {
        tokio::select! {
            biased;
            r = front(&mut inflight) => {
                inflight.pop_front();
                if !forward(r, whole_files, &tx, &id).await {
                    break;
                }
            }
            b = raw_rx.recv(), if open && inflight.len() < MAX_INFLIGHT => match b {
                Some((batch, received)) => {
                    let normalizer = match normalizer_for(&mut cache, &base, &batch.format) {
                        Ok(n) => n,
                        Err(e) => {
                            error!(source = %id, origin = %batch.origin, error = %e, "bad format hint; batch left unacknowledged");
                            continue;
                        }
                    };
                    let stream = stream_of(&id, kind, &batch.origin);
                    let (sid, m) = (id.clone(), metrics.clone());
                    inflight.push_back(tokio::task::spawn_blocking(move || {
                        normalize_batch(&normalizer, &sid, stream, batch, on_bad, received, &m)
                    }));
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

/// Pull batches until stopped or the source ends; returns the source and whether it ended.
async fn read_source(
    mut source: Source,
    id: Arc<str>,
    tx: mpsc::Sender<(Batch, Instant)>,
    mut stop: watch::Receiver<bool>,
    metrics: Metrics,
) -> (Source, bool) {
    let mut backoff =
        kmswatch_sources::Backoff::new(Duration::from_millis(200), Duration::from_secs(30));
    loop {
        if *stop.borrow() {
            return (source, false);
        }
        let next = tokio::select! {
            _ = stop.changed() => return (source, false),
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
                if tx.send((batch, Instant::now())).await.is_err() {
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
                    _ = stop.changed() => return (source, false),
                    _ = tokio::time::sleep(d) => {}
                }
            }
        }
    }
}

/// Batches of one source normalized at once (read-ahead while the previous ones normalize).
const MAX_INFLIGHT: usize = 4;

/// Pass a finished normalization on; false when the pipeline is gone.
async fn forward(
    job: Result<Normalized, tokio::task::JoinError>,
    whole_files: bool,
    tx: &mpsc::Sender<ToDetect>,
    id: &str,
) -> bool {
    match job {
        Ok(mut n) => {
            n.ends_stream = whole_files;
            tx.send(ToDetect::Batch(n)).await.is_ok()
        }
        Err(e) => {
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
        if n.ends_stream {
            self.engine.end_source(&n.stream, &mut self.findings);
            self.last_event.remove(&n.stream);
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
            meta: Vec::new(),
            in_flight: Some(InFlight::new(&self.checkpoints)),
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

/// The deliver task: sinks, dead-letter file, checkpoints, acknowledgements.
pub struct Deliverer {
    /// The sinks.
    pub sinks: Vec<Box<dyn Deliver>>,
    /// The store.
    pub store: Arc<Store>,
    /// The dead-letter file.
    pub dead_letter: std::path::PathBuf,
    /// Metrics.
    pub metrics: Metrics,
    /// The playbooks: every finding is handed to them once the sinks have it (`None`: no
    /// `respond:` section).
    pub respond: Option<crate::runtime::respond::ResponseHook>,
}

impl std::fmt::Debug for Deliverer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deliverer")
            .field("sinks", &self.sinks.len())
            .finish()
    }
}

impl Deliverer {
    /// Run until the detect task has stopped.
    pub async fn run(mut self, mut rx: mpsc::Receiver<ToDeliver>) -> Result<()> {
        use std::io::Write;
        let mut dead: Option<std::io::BufWriter<std::fs::File>> = None;
        while let Some(m) = rx.recv().await {
            match m {
                ToDeliver::Findings(v) => {
                    for sink in &mut self.sinks {
                        let started = Instant::now();
                        let mut backoff = kmswatch_sources::Backoff::new(
                            Duration::from_millis(100),
                            Duration::from_secs(30),
                        );
                        loop {
                            match sink.send(&v).await {
                                Ok(()) => break,
                                Err(e) => {
                                    let name = sink.name().to_string();
                                    self.metrics.add(
                                        "kmswatch_sink_errors_total",
                                        &[("sink", &name)],
                                        1.0,
                                    );
                                    let d = backoff.next_delay();
                                    warn!(sink = %name, error = %format!("{e:#}"), delay_ms = d.as_millis() as u64, "delivery failed; retrying");
                                    tokio::time::sleep(d).await;
                                }
                            }
                        }
                        let name = sink.name().to_string();
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
                    for f in &v {
                        debug!(finding = %f.finding_info.uid, rule = %f.finding_info.analytic.uid, "finding delivered");
                    }
                    if let Some(hook) = &self.respond {
                        hook.hand(&v).await;
                    }
                }
                ToDeliver::Dead(recs) => {
                    if dead.is_none() {
                        if let Some(dir) = self.dead_letter.parent() {
                            std::fs::create_dir_all(dir).ok();
                        }
                        let f = std::fs::OpenOptions::new()
                            .create(true)
                            .append(true)
                            .open(&self.dead_letter)
                            .with_context(|| {
                                format!("opening dead-letter file {}", self.dead_letter.display())
                            })?;
                        dead = Some(std::io::BufWriter::new(f));
                    }
                    if let Some(w) = dead.as_mut() {
                        for r in &recs {
                            serde_json::to_writer(&mut *w, r)?;
                            w.write_all(b"\n")?;
                        }
                    }
                }
                ToDeliver::Checkpoint(cp, acks) => {
                    let started = Instant::now();
                    let mut backoff = kmswatch_sources::Backoff::new(
                        Duration::from_millis(100),
                        Duration::from_secs(30),
                    );
                    for sink in &mut self.sinks {
                        while let Err(e) = sink.flush().await {
                            let name = sink.name().to_string();
                            self.metrics
                                .add("kmswatch_sink_errors_total", &[("sink", &name)], 1.0);
                            let d = backoff.next_delay();
                            warn!(sink = %name, error = %format!("{e:#}"), "flush failed; retrying");
                            tokio::time::sleep(d).await;
                        }
                    }
                    if let Some(w) = dead.as_mut() {
                        w.flush().context("writing the dead-letter file")?;
                        let f = w.get_ref();
                        tokio::task::block_in_place(|| f.sync_data())
                            .context("fsync of the dead-letter file")?;
                    }
                    let store = self.store.clone();
                    loop {
                        match tokio::task::block_in_place(|| store.commit(&cp)) {
                            Ok(()) => break,
                            Err(e) => {
                                let d = backoff.next_delay();
                                error!(error = %format!("{e:#}"), "checkpoint failed; retrying (nothing is acknowledged meanwhile)");
                                tokio::time::sleep(d).await;
                            }
                        }
                    }
                    self.metrics.add("kmswatch_checkpoints_total", &[], 1.0);
                    self.metrics.observe(
                        "kmswatch_checkpoint_seconds",
                        &[],
                        LATENCY_BUCKETS,
                        started.elapsed().as_secs_f64(),
                        1,
                    );
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
        }
        Ok(())
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

    #[test]
    fn bad_objects_are_dead_lettered_and_settled_per_policy() {
        let normalizer = Normalizer::new(Options::default()).expect("normalizer");
        let m = Metrics::default();
        let id: Arc<str> = Arc::from("ct");
        for (bytes, reason) in [
            (&b""[..], "empty"),
            (&b"\x1f\x8b\x08garbage"[..], "unreadable"),
            (&b"not json at all"[..], "unreadable"),
            (
                &br#"{"kind":"k8s","apiVersion":"audit.k8s.io/v1"}"#[..],
                "unrecognized format",
            ),
        ] {
            for (policy, settle) in [
                (OnBadObject::Delete, Settle::Ack),
                (OnBadObject::Keep, Settle::Reject),
                (OnBadObject::Retry, Settle::Retry),
            ] {
                let b = Batch {
                    origin: "s3://bucket/AWSLogs/x.json.gz".into(),
                    bytes: bytes.to_vec().into(),
                    format: None,
                    received_at: SystemTime::now(),
                    ack: AckHandle::noop(),
                    dead: Vec::new(),
                };
                let n =
                    normalize_batch(&normalizer, &id, "ct".into(), b, policy, Instant::now(), &m);
                assert_eq!(n.settle, settle, "{reason}");
                let first = n
                    .dead
                    .first()
                    .unwrap_or_else(|| panic!("no dead-letter record for {reason}"));
                assert_eq!(first["bucket"], "bucket");
                assert_eq!(first["key"], "AWSLogs/x.json.gz");
                assert_eq!(
                    first["reason"],
                    reason,
                    "{}",
                    String::from_utf8_lossy(bytes)
                );
            }
        }
    }
}
