//! One sink's machinery: a queue, a batcher, in-flight sends with retries, the spool and its
//! drainer, the dead-letter file and the metrics. Every sink type shares it; only
//! [`Destination`] differs.
//!
//! Bounds, whatever the destination does:
//! * A fresh batch is sent at most `retry.max_attempts` times, and re-sent at most
//!   `retry.max_unacked_resends` times after the destination took it without acknowledging
//!   it (HEC ack timeout, Kafka delivery timeout); every retry waits `retry.backoff(n)` (in
//!   `[c/2, c]`, `c = min(max_backoff_ms, initial_backoff_ms · 2^n)`, or a longer
//!   `Retry-After`). Then it goes to the spool and the sink is *degraded*.
//! * While the spool holds anything (from the moment a batch is spooled) fresh batches go
//!   straight to it, and while degraded a batch still in its retries stops at its next
//!   failure: only the drainer talks to the destination, one batch at a time — so at most
//!   one request (HEC: one post per `ack_timeout_secs` plus back-off) is outstanding while
//!   the destination misbehaves.
//! * A retry sends only the records the destination did not take (`SendError::delivered`).
//! * Degraded ends at the next acknowledged send; the spool then drains, oldest first.

use crate::config::{BatchConfig, RetryConfig, SinkConfig};
use crate::metrics::{SinkMetrics, SinkMetricsSnapshot};
use crate::route::Route;
use crate::sinks::Destination;
use crate::spool::Spool;
use crate::{DeliveryError, ErrorClass, Outgoing, Record, SendError, SetupError};
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use std::time::Instant as StdInstant;
use tokio::sync::{mpsc, oneshot, Notify, Semaphore};
use tokio::task::JoinHandle;
use tokio::time::Instant;

struct Job {
    rec: Record,
    done: oneshot::Sender<Result<(), DeliveryError>>,
}

struct Shared {
    name: String,
    dest: Destination,
    spool: Spool,
    metrics: SinkMetrics,
    batch: BatchConfig,
    retry: RetryConfig,
    dead_letter: PathBuf,
    dead_letter_lock: Mutex<()>,
    stopping: AtomicBool,
    deadline: Mutex<Option<Instant>>,
    stop: Notify,
    /// The destination did not take or acknowledge a batch within its attempts: new batches
    /// go to the spool until it acknowledges one again.
    degraded: AtomicBool,
}

/// What happened to one item of a batch.
enum ItemOutcome {
    Sent,
    Rejected(String),
    GaveUp,
}

/// How long to keep retrying.
#[derive(Clone, Copy)]
enum Limit {
    Attempts(u32),
    /// Until delivered, or until shutdown's deadline passes.
    UntilStopped,
}

impl Shared {
    fn past_deadline(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
            && self
                .deadline
                .lock()
                .map(|d| d.is_some_and(|d| Instant::now() >= d))
                .unwrap_or(true)
    }

    fn is_degraded(&self) -> bool {
        self.degraded.load(Ordering::Acquire)
    }

    /// The destination took or acknowledged something: no longer degraded.
    fn acknowledged(&self) {
        if self.degraded.swap(false, Ordering::AcqRel) {
            tracing::info!(sink = %self.name, "destination acknowledges again; sink no longer degraded (the spool drains)");
        }
    }

    /// The destination did not take or acknowledge a batch: degraded (warned once).
    fn degrade(&self, err: &SendError) {
        if self.degraded.swap(true, Ordering::AcqRel) {
            return;
        }
        let backlog = self.dest.ack_backlog().unwrap_or_default();
        match &err.unacked {
            Some(u) => tracing::warn!(
                sink = %self.name,
                channel = %u.channel,
                ack_id = %u.ack_id,
                unacked_secs = u.waited.as_secs_f64(),
                pending_ack_items = backlog.items,
                oldest_pending_ack_secs = backlog.oldest_age_secs,
                error = %err.message,
                "sink degraded: the destination takes batches but does not acknowledge them; the batch is spooled, new items go to the spool, and one batch at a time is re-sent from it until acknowledgements come back"
            ),
            None => tracing::warn!(
                sink = %self.name,
                error = %err.message,
                "sink degraded: the destination does not take batches; new items go to the spool until it does"
            ),
        }
    }

    /// Counts records as acknowledged by the destination.
    fn mark_sent(&self, recs: &[Record], idx: &[usize], sent: &mut [bool]) {
        let now = crate::format::now_millis();
        let mut n = 0;
        for &i in idx {
            if let (Some(r), Some(s)) = (recs.get(i), sent.get_mut(i)) {
                if !*s {
                    *s = true;
                    n += 1;
                    self.metrics.observe_latency_ms(now - r.enqueued_ms);
                }
            }
        }
        self.metrics.sent.fetch_add(n, Ordering::Relaxed);
    }

    /// Sends `recs`, retrying per `limit` (see the module docs for the bounds). Returns which
    /// records the destination took and, when some were not, the last error.
    async fn send_limited(&self, recs: &[Record], limit: Limit) -> (Vec<bool>, Option<SendError>) {
        let mut sent = vec![false; recs.len()];
        // Positions still to send, and their records when that is not all of `recs`.
        let mut todo: Vec<usize> = (0..recs.len()).collect();
        let mut rest: Option<Vec<Record>> = None;
        let mut attempt: u32 = 0;
        let mut unacked: u32 = 0;
        let first = StdInstant::now();
        loop {
            let batch = rest.as_deref().unwrap_or(recs);
            let mut err = match self.dest.send(batch).await {
                Ok(()) => {
                    self.mark_sent(recs, &todo, &mut sent);
                    self.acknowledged();
                    return (sent, None);
                }
                Err(e) => e,
            };
            if !err.delivered.is_empty() {
                let taken: Vec<usize> = err
                    .delivered
                    .iter()
                    .filter_map(|k| todo.get(*k).copied())
                    .collect();
                self.mark_sent(recs, &taken, &mut sent);
                self.acknowledged();
                todo.retain(|i| !sent.get(*i).copied().unwrap_or(true));
                rest = Some(todo.iter().filter_map(|i| recs.get(*i).cloned()).collect());
                err.delivered.clear();
            }
            if err.class == ErrorClass::Fatal {
                return (sent, Some(err));
            }
            self.metrics.retried.fetch_add(1, Ordering::Relaxed);
            attempt += 1;
            if let Some(u) = err.unacked.as_mut() {
                unacked += 1;
                self.metrics.ack_timeouts.fetch_add(1, Ordering::Relaxed);
                u.waited = first.elapsed();
            }
            let give_up = match limit {
                Limit::Attempts(n) => {
                    attempt >= n.max(1)
                        || (err.unacked.is_some() && unacked > self.retry.max_unacked_resends)
                        || self.is_degraded()
                }
                Limit::UntilStopped => {
                    self.degrade(&err);
                    self.past_deadline()
                }
            };
            let level_config = err.class == ErrorClass::Config;
            if level_config {
                tracing::error!(sink = %self.name, error = %err.message, attempt, "destination refuses the sink's requests: fix the sink's configuration (items are spooled meanwhile)");
            } else if let Some(u) = &err.unacked {
                tracing::warn!(sink = %self.name, channel = %u.channel, ack_id = %u.ack_id, unacked_secs = u.waited.as_secs_f64(), attempt, error = %err.message, "destination took the batch but did not acknowledge it in time");
            } else {
                tracing::warn!(sink = %self.name, error = %err.message, attempt, "send failed, will retry");
            }
            if give_up {
                return (sent, Some(err));
            }
            let wait = if level_config {
                // An operator must act: do not hammer the destination.
                self.retry.wait(attempt.saturating_add(4), err.retry_after)
            } else {
                self.retry.wait(attempt - 1, err.retry_after)
            };
            match limit {
                Limit::Attempts(_) => tokio::time::sleep(wait).await,
                Limit::UntilStopped => {
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = self.stop.notified() => {}
                    }
                }
            }
        }
    }

    /// Sends a batch; when the destination rejects it as invalid, sends the records it did
    /// not take one by one to find the rejected ones. Returns each record's outcome and the
    /// error that made the sink give up on some (for the degraded warning).
    async fn send_batch(
        &self,
        recs: &[Record],
        limit: Limit,
    ) -> (Vec<ItemOutcome>, Option<SendError>) {
        let (sent, err) = self.send_limited(recs, limit).await;
        let Some(e) = err else {
            return (recs.iter().map(|_| ItemOutcome::Sent).collect(), None);
        };
        let mut out: Vec<ItemOutcome> = sent
            .iter()
            .map(|s| {
                if *s {
                    ItemOutcome::Sent
                } else {
                    ItemOutcome::GaveUp
                }
            })
            .collect();
        let rest: Vec<usize> = (0..recs.len())
            .filter(|i| !sent.get(*i).copied().unwrap_or(true))
            .collect();
        if e.class != ErrorClass::Fatal {
            return (out, Some(e));
        }
        if rest.len() == 1 {
            if let Some(o) = rest.first().and_then(|i| out.get_mut(*i)) {
                *o = ItemOutcome::Rejected(e.message);
            }
            return (out, None);
        }
        tracing::warn!(sink = %self.name, error = %e.message, items = rest.len(), "batch rejected; sending its items one by one to find the bad ones");
        let mut last = None;
        for i in rest {
            let Some(r) = recs.get(i) else { continue };
            let outcome = match self.send_limited(std::slice::from_ref(r), limit).await {
                (_, None) => ItemOutcome::Sent,
                (_, Some(e)) if e.class == ErrorClass::Fatal => ItemOutcome::Rejected(e.message),
                (_, Some(e)) => {
                    last = Some(e);
                    ItemOutcome::GaveUp
                }
            };
            if let Some(o) = out.get_mut(i) {
                *o = outcome;
            }
        }
        (out, last)
    }

    /// Keeps a rejected item in the dead-letter file.
    fn dead_letter(&self, rec: &Record, reason: &str) -> std::io::Result<()> {
        let _g = self
            .dead_letter_lock
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let line = serde_json::json!({
            "time": crate::format::rfc3339_millis(crate::format::now_millis()),
            "sink": self.name,
            "id": rec.id,
            "rule_id": rec.rule_id,
            "reason": reason,
            "record": rec.body,
        });
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.dead_letter)?;
        writeln!(f, "{line}")?;
        f.sync_data()?;
        self.metrics.failed.fetch_add(1, Ordering::Relaxed);
        tracing::error!(sink = %self.name, id = %rec.id, rule_id = %rec.rule_id, reason, file = %self.dead_letter.display(), "destination rejected an item; kept in the dead-letter file");
        Ok(())
    }

    fn spool_err(&self, e: &std::io::Error) -> DeliveryError {
        DeliveryError::Spool {
            sink: self.name.clone(),
            path: self.spool.dir().to_path_buf(),
            reason: e.to_string(),
        }
    }

    /// A fresh batch from the queue: send directly (when nothing is spooled), else spool.
    async fn process(&self, jobs: Vec<Job>) {
        let (recs, dones): (Vec<Record>, Vec<_>) =
            jobs.into_iter().map(|j| (j.rec, j.done)).unzip();
        // While the spool holds anything (the destination failed us, or it is draining) new
        // batches queue behind it; a degraded sink's spool is never empty but when the spool
        // itself failed, and then a fresh batch gets one attempt (`send_limited`).
        let (outcomes, gave_up) = if self.spool.is_empty() {
            self.send_batch(&recs, Limit::Attempts(self.retry.max_attempts))
                .await
        } else {
            (recs.iter().map(|_| ItemOutcome::GaveUp).collect(), None)
        };
        let to_spool: Vec<Record> = recs
            .iter()
            .zip(&outcomes)
            .filter(|(_, o)| matches!(o, ItemOutcome::GaveUp))
            .map(|(r, _)| r.clone())
            .collect();
        let spooled = if to_spool.is_empty() {
            Ok(())
        } else {
            let r = self.spool.append(&to_spool).await;
            if r.is_ok() {
                self.metrics
                    .spooled
                    .fetch_add(to_spool.len() as u64, Ordering::Relaxed);
                tracing::info!(sink = %self.name, items = to_spool.len(), "items spooled to disk while the destination is unavailable");
            }
            r
        };
        if let Some(e) = gave_up {
            self.degrade(&e);
        }
        for ((rec, outcome), done) in recs.iter().zip(outcomes).zip(dones) {
            let res = match outcome {
                ItemOutcome::Sent => Ok(()),
                ItemOutcome::GaveUp => spooled.as_ref().map_err(|e| self.spool_err(e)).copied(),
                ItemOutcome::Rejected(reason) => match self.dead_letter(rec, &reason) {
                    Ok(()) => Err(DeliveryError::Rejected {
                        sink: self.name.clone(),
                        id: rec.id.clone(),
                        reason,
                        dead_letter: self.dead_letter.clone(),
                    }),
                    Err(e) => Err(DeliveryError::Spool {
                        sink: self.name.clone(),
                        path: self.dead_letter.clone(),
                        reason: e.to_string(),
                    }),
                },
            };
            let _ = done.send(res);
        }
    }
}

async fn front(sh: Arc<Shared>, mut rx: mpsc::Receiver<Job>) {
    let in_flight = sh.batch.max_in_flight.max(1);
    let sem = Arc::new(Semaphore::new(in_flight));
    let timeout = Duration::from_millis(sh.batch.timeout_ms);
    let max_events = sh.batch.max_events.max(1);
    let max_bytes = sh.batch.max_bytes.max(1);
    while let Some(first) = rx.recv().await {
        let mut bytes = first.rec.body.len();
        let mut jobs = vec![first];
        let deadline = Instant::now() + timeout;
        while jobs.len() < max_events && bytes < max_bytes {
            let next = match rx.try_recv() {
                Ok(j) => Some(j),
                Err(mpsc::error::TryRecvError::Disconnected) => None,
                Err(mpsc::error::TryRecvError::Empty) => tokio::select! {
                    j = rx.recv() => j,
                    _ = tokio::time::sleep_until(deadline) => None,
                },
            };
            match next {
                Some(j) => {
                    bytes += j.rec.body.len();
                    jobs.push(j);
                }
                None => break,
            }
        }
        let Ok(permit) = sem.clone().acquire_owned().await else {
            break;
        };
        let sh = sh.clone();
        tokio::spawn(async move {
            sh.process(jobs).await;
            drop(permit);
        });
    }
    let _ = sem.acquire_many(in_flight as u32).await;
}

async fn drainer(sh: Arc<Shared>) {
    let max_events = sh.batch.max_events.max(1);
    let max_bytes = sh.batch.max_bytes.max(1) as u64;
    loop {
        if sh.spool.is_empty() {
            if sh.stopping.load(Ordering::Acquire) {
                return;
            }
            tokio::select! {
                _ = sh.spool.wait_data() => {}
                _ = sh.stop.notified() => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
            continue;
        }
        if sh.past_deadline() {
            return;
        }
        let (recs, cur) = match sh.spool.peek(max_events, max_bytes) {
            Ok(x) => x,
            Err(e) => {
                tracing::error!(sink = %sh.name, spool = %sh.spool.dir().display(), error = %e, "cannot read the spool");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if recs.is_empty() {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        }
        let (outcomes, _) = sh.send_batch(&recs, Limit::UntilStopped).await;
        if outcomes.iter().any(|o| matches!(o, ItemOutcome::GaveUp)) {
            return; // shutting down: the batch stays spooled for the next start
        }
        for (rec, o) in recs.iter().zip(outcomes) {
            if let ItemOutcome::Rejected(reason) = o {
                if let Err(e) = sh.dead_letter(rec, &reason) {
                    tracing::error!(sink = %sh.name, error = %e, "cannot write the dead-letter file; the item stays spooled");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            }
        }
        if let Err(e) = sh.spool.commit(cur) {
            tracing::error!(sink = %sh.name, spool = %sh.spool.dir().display(), error = %e, "cannot update the spool index (items may be sent again)");
        } else if sh.spool.is_empty() {
            tracing::info!(sink = %sh.name, "spool drained; the destination is back");
        }
    }
}

/// A running sink.
pub(crate) struct SinkHandle {
    name: String,
    sink_type: &'static str,
    route: Route,
    tx: Mutex<Option<mpsc::Sender<Job>>>,
    shared: Arc<Shared>,
    front: tokio::sync::Mutex<Option<JoinHandle<()>>>,
    drainer: tokio::sync::Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for SinkHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SinkHandle")
            .field("name", &self.name)
            .field("type", &self.sink_type)
            .finish()
    }
}

impl SinkHandle {
    pub fn start(
        name: String,
        cfg: &SinkConfig,
        dest: Destination,
        dir: PathBuf,
    ) -> Result<SinkHandle, SetupError> {
        let common = cfg.common();
        let spool = Spool::open(
            &dir,
            common.spool.max_spool_bytes,
            common.spool.segment_bytes,
        )
        .map_err(|source| SetupError::Spool {
            sink: name.clone(),
            path: dir.clone(),
            source,
        })?;
        let (bytes, items) = spool.usage();
        if items > 0 {
            tracing::info!(sink = %name, items, bytes, "spool left by a previous run; delivering it first");
        }
        let mut batch = common.batch.clone();
        batch.max_in_flight = dest.max_batches_in_flight(batch.max_in_flight.max(1));
        let shared = Arc::new(Shared {
            name: name.clone(),
            dest,
            spool,
            metrics: SinkMetrics::default(),
            batch,
            retry: common.retry.clone(),
            dead_letter: dir.join("dead-letter.jsonl"),
            dead_letter_lock: Mutex::new(()),
            stopping: AtomicBool::new(false),
            deadline: Mutex::new(None),
            stop: Notify::new(),
            degraded: AtomicBool::new(false),
        });
        let (tx, rx) = mpsc::channel(common.batch.max_events.max(1) * 2);
        let front = tokio::spawn(front(shared.clone(), rx));
        let drainer = tokio::spawn(drainer(shared.clone()));
        Ok(SinkHandle {
            name,
            sink_type: cfg.type_name(),
            route: Route::new(&common.route),
            tx: Mutex::new(Some(tx)),
            shared,
            front: tokio::sync::Mutex::new(Some(front)),
            drainer: tokio::sync::Mutex::new(Some(drainer)),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn sink_type(&self) -> &'static str {
        self.sink_type
    }

    pub fn routes(&self, item: &Outgoing) -> bool {
        self.route.matches(item)
    }

    /// Encodes and queues an item; the returned future resolves when the sink accepted it.
    pub async fn submit(
        &self,
        item: &Outgoing,
    ) -> Result<impl std::future::Future<Output = Result<(), DeliveryError>>, DeliveryError> {
        let rec = self
            .shared
            .dest
            .encode(item)
            .map_err(|reason| DeliveryError::Encode {
                sink: self.name.clone(),
                id: item.id(),
                reason,
            })?;
        let sender = self
            .tx
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or_else(|| DeliveryError::ShuttingDown {
                sink: self.name.clone(),
            })?;
        let (done, wait) = oneshot::channel();
        sender
            .send(Job { rec, done })
            .await
            .map_err(|_| DeliveryError::ShuttingDown {
                sink: self.name.clone(),
            })?;
        let sink = self.name.clone();
        Ok(async move {
            wait.await
                .unwrap_or(Err(DeliveryError::ShuttingDown { sink }))
        })
    }

    pub async fn check(&self) -> Result<String, SendError> {
        self.shared.dest.check().await
    }

    pub fn metrics(&self) -> SinkMetricsSnapshot {
        let m = &self.shared.metrics;
        let (bytes, items) = self.shared.spool.usage();
        let age = self
            .shared
            .spool
            .oldest_ms()
            .map(|t| (crate::format::now_millis() - t).max(0) as f64 / 1000.0)
            .unwrap_or(0.0);
        let backlog = self.shared.dest.ack_backlog().unwrap_or_default();
        SinkMetricsSnapshot {
            sink: self.name.clone(),
            sink_type: self.sink_type,
            sent: m.sent.load(Ordering::Relaxed),
            retried: m.retried.load(Ordering::Relaxed),
            failed: m.failed.load(Ordering::Relaxed),
            spooled: m.spooled.load(Ordering::Relaxed),
            spooled_bytes: bytes,
            spooled_items: items,
            oldest_spooled_age_secs: age,
            ack_timeouts: m.ack_timeouts.load(Ordering::Relaxed),
            unacked_items: backlog.items,
            oldest_unacked_age_secs: backlog.oldest_age_secs,
            degraded: self.shared.is_degraded(),
            acked_latency: m.histogram(),
        }
    }

    /// Stops accepting items.
    pub fn close(&self) {
        self.tx.lock().unwrap_or_else(|p| p.into_inner()).take();
    }

    /// Waits for queued items to be sent or spooled, drains the spool until `deadline`, then
    /// flushes the destination.
    pub async fn finish(&self, deadline: Instant) {
        if let Some(h) = self.front.lock().await.take() {
            let _ = h.await;
        }
        if let Ok(mut d) = self.shared.deadline.lock() {
            *d = Some(deadline);
        }
        self.shared.stopping.store(true, Ordering::Release);
        self.shared.stop.notify_waiters();
        self.shared.spool.wake();
        if let Some(mut h) = self.drainer.lock().await.take() {
            let grace = deadline + Duration::from_secs(1);
            tokio::select! {
                _ = &mut h => {}
                _ = tokio::time::sleep_until(grace) => {
                    h.abort();
                    tracing::warn!(sink = %self.name, "shutdown: spool not drained in time; it is delivered by the next start");
                }
            }
        }
        self.shared.dest.close().await;
    }
}
