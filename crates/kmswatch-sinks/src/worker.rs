//! One sink's machinery: a queue, a batcher, in-flight sends with retries, the spool and its
//! drainer, the dead-letter file and the metrics. Every sink type shares it; only
//! [`Destination`] differs.

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

    /// Sends `recs` as one request, retrying per `limit`.
    async fn send_limited(&self, recs: &[Record], limit: Limit) -> Result<(), SendError> {
        let mut attempt: u32 = 0;
        loop {
            let err = match self.dest.send(recs).await {
                Ok(()) => {
                    let now = crate::format::now_millis();
                    self.metrics
                        .sent
                        .fetch_add(recs.len() as u64, Ordering::Relaxed);
                    for r in recs {
                        self.metrics.observe_latency_ms(now - r.enqueued_ms);
                    }
                    return Ok(());
                }
                Err(e) => e,
            };
            if err.class == ErrorClass::Fatal {
                return Err(err);
            }
            self.metrics.retried.fetch_add(1, Ordering::Relaxed);
            attempt += 1;
            let give_up = match limit {
                Limit::Attempts(n) => attempt >= n.max(1),
                Limit::UntilStopped => self.past_deadline(),
            };
            let level_config = err.class == ErrorClass::Config;
            if level_config {
                tracing::error!(sink = %self.name, error = %err.message, attempt, "destination refuses the sink's requests: fix the sink's configuration (items are spooled meanwhile)");
            } else {
                tracing::warn!(sink = %self.name, error = %err.message, attempt, "send failed, will retry");
            }
            if give_up {
                return Err(err);
            }
            let mut wait = if level_config {
                // An operator must act: do not hammer the destination.
                self.retry.backoff(attempt.saturating_add(4))
            } else {
                self.retry.backoff(attempt - 1)
            };
            if let Some(ra) = err.retry_after {
                wait = ra.min(Duration::from_millis(self.retry.max_backoff_ms.max(1)));
            }
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

    /// Sends a batch; when the destination rejects it as invalid, sends its items one by one
    /// to find the rejected ones.
    async fn send_batch(&self, recs: &[Record], limit: Limit) -> Vec<ItemOutcome> {
        match self.send_limited(recs, limit).await {
            Ok(()) => recs.iter().map(|_| ItemOutcome::Sent).collect(),
            Err(e) if e.class == ErrorClass::Fatal && recs.len() > 1 => {
                tracing::warn!(sink = %self.name, error = %e.message, items = recs.len(), "batch rejected; sending its items one by one to find the bad ones");
                let mut out = Vec::with_capacity(recs.len());
                for r in recs {
                    out.push(
                        match self.send_limited(std::slice::from_ref(r), limit).await {
                            Ok(()) => ItemOutcome::Sent,
                            Err(e) if e.class == ErrorClass::Fatal => {
                                ItemOutcome::Rejected(e.message)
                            }
                            Err(_) => ItemOutcome::GaveUp,
                        },
                    );
                }
                out
            }
            Err(e) if e.class == ErrorClass::Fatal => vec![ItemOutcome::Rejected(e.message)],
            Err(_) => recs.iter().map(|_| ItemOutcome::GaveUp).collect(),
        }
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
        let outcomes = if self.spool.is_empty() {
            self.send_batch(&recs, Limit::Attempts(self.retry.max_attempts))
                .await
        } else {
            recs.iter().map(|_| ItemOutcome::GaveUp).collect()
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
        let outcomes = sh.send_batch(&recs, Limit::UntilStopped).await;
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
