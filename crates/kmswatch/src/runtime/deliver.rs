//! The delivery seam: where findings leave kmswatch.
//!
//! A [`Deliver`] takes findings in order and says when they are *durably accepted*: `send`
//! may buffer, `flush` returns only once everything sent is safe (fsynced, acknowledged by
//! the SIEM). The runtime calls `flush` before every checkpoint and acknowledges source
//! batches only after it, so nothing is acknowledged upstream that a sink could still lose.
//! Finding ids are deterministic: after a crash a sink may be sent the same finding again
//! (same id, same content) and can drop it.
//!
//! Every sink type lives in the sinks crate (`kmswatch-sinks`); [`SinkSetDeliver`] adapts its
//! `SinkSet` to this contract: `send` starts one `SinkSet::deliver` per finding (at most
//! [`MAX_IN_FLIGHT`] at once, so a full spool stalls the pipeline instead of queueing in
//! memory) and `flush` waits for all of them, i.e. until every finding sent so far was
//! acknowledged by, or fsynced in the spool of, every sink it is routed to.

use crate::config::Config;
use crate::runtime::metrics::Metrics;
use anyhow::{anyhow, Result};
use kmswatch_model::Finding;
use kmswatch_sinks::{DeliveryError, Outgoing, SinkSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinSet;
use tracing::{error, warn};

/// A boxed future, so that sinks can be trait objects.
pub type BoxFut<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A destination for findings.
pub trait Deliver: Send {
    /// The sink's name in metrics and logs.
    fn name(&self) -> &str;
    /// Hand over findings (in order). May buffer. An error means "retry later": the runtime
    /// retries with backoff, holding back the pipeline (backpressure).
    fn send<'a>(&'a mut self, findings: &'a [Finding]) -> BoxFut<'a, Result<()>>;
    /// Resolve once everything sent so far is durably accepted.
    fn flush(&mut self) -> BoxFut<'_, Result<()>>;
}

/// Deliveries in flight at once in [`SinkSetDeliver`]: past it `send` waits for the oldest
/// ones (backpressure reaches the detect task, then the sources).
pub const MAX_IN_FLIGHT: usize = 8192;

/// The runtime's [`Deliver`] over the sinks crate's [`SinkSet`].
pub struct SinkSetDeliver {
    set: Arc<SinkSet>,
    inflight: JoinSet<()>,
    max_in_flight: usize,
    metrics: Metrics,
}

impl std::fmt::Debug for SinkSetDeliver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SinkSetDeliver")
            .field("sinks", &self.set.names())
            .field("in_flight", &self.inflight.len())
            .finish()
    }
}

impl SinkSetDeliver {
    /// An adapter over `set`.
    pub fn new(set: Arc<SinkSet>, metrics: Metrics) -> SinkSetDeliver {
        SinkSetDeliver {
            set,
            inflight: JoinSet::new(),
            max_in_flight: MAX_IN_FLIGHT,
            metrics,
        }
    }

    /// Wait for the oldest delivery to finish.
    async fn reap_one(&mut self) {
        if let Some(Err(e)) = self.inflight.join_next().await {
            // A delivery task panicked: the process must not acknowledge past it.
            error!(error = %e, "delivery task failed");
            std::panic::resume_unwind(e.into_panic());
        }
    }
}

/// Deliver one item until every routed sink accepted it. Retryable failures (a spool that
/// cannot be written) are retried with backoff; items the destination rejects are in that
/// sink's dead-letter file, items that cannot be encoded are logged: both count as handled,
/// retrying cannot help.
pub async fn deliver_until_accepted(set: &SinkSet, item: Arc<Outgoing>, metrics: &Metrics) {
    let mut backoff =
        kmswatch_sources::Backoff::new(Duration::from_millis(100), Duration::from_secs(30));
    loop {
        match set.deliver(item.clone()).await {
            Ok(()) => return,
            Err(e) if e.is_retryable() => {
                metrics.add("kmswatch_sink_errors_total", &[("kind", "retryable")], 1.0);
                let d = backoff.next_delay();
                warn!(item = %item.id(), error = %e, delay_ms = d.as_millis() as u64, "delivery not accepted; retrying");
                tokio::time::sleep(d).await;
            }
            Err(e) => {
                let kind = match e {
                    DeliveryError::Rejected { .. } => "rejected",
                    _ => "encode",
                };
                metrics.add("kmswatch_sink_errors_total", &[("kind", kind)], 1.0);
                error!(item = %item.id(), error = %e, "item refused by a sink (not retryable)");
                return;
            }
        }
    }
}

impl Deliver for SinkSetDeliver {
    fn name(&self) -> &str {
        "sinks"
    }
    fn send<'a>(&'a mut self, findings: &'a [Finding]) -> BoxFut<'a, Result<()>> {
        Box::pin(async move {
            for f in findings {
                while self.inflight.len() >= self.max_in_flight {
                    self.reap_one().await;
                }
                let item = Arc::new(Outgoing::Finding(f.clone()));
                let (set, m) = (self.set.clone(), self.metrics.clone());
                self.inflight
                    .spawn(async move { deliver_until_accepted(&set, item, &m).await });
            }
            Ok(())
        })
    }
    fn flush(&mut self) -> BoxFut<'_, Result<()>> {
        Box::pin(async move {
            while !self.inflight.is_empty() {
                self.reap_one().await;
            }
            Ok(())
        })
    }
}

/// Start the configured sinks (spools under `STATE_DIR/spool/<sink>/`; a spool left by a
/// previous run is drained first). Needs a Tokio runtime.
pub fn start_sinks(cfg: &Config) -> Result<Arc<SinkSet>> {
    if cfg.sinks.is_empty() {
        return Err(anyhow!(
            "no sinks configured (add `sinks: [{{type: file, path: findings.jsonl}}]`)"
        ));
    }
    let set = SinkSet::from_config(&cfg.sinks, cfg.spool_dir()).map_err(|e| anyhow!("{e}"))?;
    Ok(Arc::new(set))
}

/// The runtime's sinks: the adapter over `set`.
pub fn build(set: &Arc<SinkSet>, metrics: &Metrics) -> Vec<Box<dyn Deliver>> {
    vec![Box::new(SinkSetDeliver::new(set.clone(), metrics.clone()))]
}
