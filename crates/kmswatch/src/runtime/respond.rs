//! Response wiring: findings from the engine trigger playbooks (`kmswatch_respond`).
//!
//! ```text
//!  deliver task ──findings──> bounded queue ──> response task: Responder::on_finding
//!   (findings go to the        (RESPONSE_QUEUE)     plan -> policy -> execute (journal)
//!    sinks regardless)                              └─> audit records and raised findings
//!                                                       ──SinkSet::deliver──> the same sinks
//! ```
//!
//! The deliver task hands every engine finding to the queue after giving it to the sinks, so a
//! finding is delivered whatever its actions do. The response task runs the playbooks one
//! finding at a time (the policy's rate limits and blast-radius cap see them in order); one
//! playbook run is abandoned after [`RESPONSE_TIMEOUT`] so a cloud API that hangs cannot stall
//! the queue for long. When the queue is full the deliver task waits (backpressure, bounded by
//! that timeout), nothing is dropped. Every plan/execute step is written to the journal
//! (`respond.journal_path`, default `STATE_DIR/respond-journal.jsonl`) by the responder and
//! delivered to the sinks as an audit record; a failed automatic action and the blast-radius
//! halt are findings (deterministic ids) delivered like any other. In `approve` mode pending
//! actions wait in the journal for `kmswatch respond approve ID --config SAME_CONFIG`.
//!
//! `run --mode detect` (`runtime::scale`) uses the same hook: each checkpoint hands the
//! findings it delivered and flushed to the queue from the detect thread, before the
//! partition snapshots are written ([`ResponseHook::hand_until`], so a stopping instance
//! does not wait on a full queue for long).
//!
//! Audit records and raised findings are not tied to a source acknowledgement: the journal is
//! their durable copy; after a crash they are not re-sent to the sinks (the finding that caused
//! them is, and the responder recognises the action as already handled).

use crate::runtime::deliver::deliver_until_accepted;
use crate::runtime::metrics::Metrics;
use anyhow::{anyhow, Result};
use kmswatch_model::Finding;
use kmswatch_respond::{RespondConfig, Responder, ResponseOutput};
use kmswatch_sinks::{Outgoing, SinkSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{error, info, warn};

/// Findings waiting for the responder at most.
pub const RESPONSE_QUEUE: usize = 1024;
/// Longest one finding's playbooks may run.
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(120);
/// How long shutdown waits for the playbooks of findings already queued.
pub const RESPONSE_DRAIN: Duration = Duration::from_secs(60);

/// Where the deliver task hands findings to the responder.
#[derive(Debug, Clone)]
pub struct ResponseHook {
    tx: mpsc::Sender<Finding>,
    metrics: Metrics,
}

impl ResponseHook {
    /// Queue findings for the playbooks (waits while the queue is full).
    pub async fn hand(&self, findings: &[Finding]) {
        self.hand_until(findings, std::future::pending()).await;
    }

    /// [`hand`](Self::hand), giving up on the findings not yet queued once `give_up`
    /// resolves (a stopping instance whose queue stays full); returns how many were queued.
    /// Findings not queued are logged: their playbooks do not run.
    pub async fn hand_until(
        &self,
        findings: &[Finding],
        give_up: impl Future<Output = ()>,
    ) -> usize {
        let mut handed = 0usize;
        let stopped = {
            let send = async {
                for f in findings {
                    if self.tx.send(f.clone()).await.is_err() {
                        return true;
                    }
                    handed += 1;
                }
                false
            };
            tokio::select! {
                biased;
                stopped = send => stopped,
                () = give_up => false,
            }
        };
        if let Some(f) = findings.get(handed) {
            let missed = findings.len() - handed;
            if stopped {
                error!(finding = %f.finding_info.uid, missed, "response task stopped; findings not handed to the playbooks");
            } else {
                warn!(finding = %f.finding_info.uid, missed, "stopping with the response queue full; findings not handed to the playbooks");
            }
            self.metrics
                .add("kmswatch_respond_not_handed_total", &[], missed as f64);
        }
        self.metrics.set(
            "kmswatch_respond_queue",
            &[],
            (RESPONSE_QUEUE - self.tx.capacity()) as f64,
        );
        handed
    }
}

/// One line for the start-up log: mode, playbooks, journal (`-` without a `respond:` section).
pub fn describe(cfg: Option<&RespondConfig>) -> String {
    cfg.map(|r| {
        format!(
            "{:?}, {} playbook(s), journal {}",
            r.mode,
            r.playbooks.len(),
            r.journal_path.display()
        )
    })
    .unwrap_or_else(|| "-".into())
}

/// Wait for the response task — whose hooks are all dropped — to drain its queue, at most
/// [`RESPONSE_DRAIN`].
pub async fn finish(task: JoinHandle<()>) {
    if tokio::time::timeout(RESPONSE_DRAIN, task).await.is_err() {
        warn!("response task still busy at shutdown; its steps are in the journal");
    }
}

/// Build the responder (journal replayed) and start the response task. Returns the hook and
/// the task, which ends once every hook is dropped and the queue is drained.
pub fn start(
    cfg: &RespondConfig,
    sinks: Arc<SinkSet>,
    metrics: Metrics,
) -> Result<(ResponseHook, JoinHandle<()>)> {
    let responder = Responder::new(cfg.clone()).map_err(|e| anyhow!("respond: {e}"))?;
    Ok(start_with(responder, sinks, metrics))
}

/// [`start`] with a responder built by the caller.
pub fn start_with(
    responder: Responder,
    sinks: Arc<SinkSet>,
    metrics: Metrics,
) -> (ResponseHook, JoinHandle<()>) {
    let (tx, mut rx) = mpsc::channel::<Finding>(RESPONSE_QUEUE);
    let m = metrics.clone();
    let task = tokio::spawn(async move {
        while let Some(f) = rx.recv().await {
            let outs = match tokio::time::timeout(RESPONSE_TIMEOUT, responder.on_finding(&f)).await
            {
                Ok(o) => o,
                Err(_) => {
                    m.add("kmswatch_respond_timeouts_total", &[], 1.0);
                    error!(finding = %f.finding_info.uid, timeout_s = RESPONSE_TIMEOUT.as_secs(), "playbooks abandoned after the response timeout; see the journal for the steps taken");
                    continue;
                }
            };
            for o in outs {
                let item = match o {
                    ResponseOutput::Audit(r) => {
                        let phase = format!("{:?}", r.phase).to_lowercase();
                        m.add(
                            "kmswatch_respond_steps_total",
                            &[("phase", &phase), ("outcome", r.outcome.as_str())],
                            1.0,
                        );
                        match serde_json::to_value(&*r) {
                            Ok(v) => Outgoing::Audit(v),
                            Err(e) => {
                                warn!(record = %r.record_id, error = %e, "audit record not serializable");
                                continue;
                            }
                        }
                    }
                    ResponseOutput::Finding(rf) => {
                        m.add(
                            "kmswatch_respond_findings_total",
                            &[("rule", &rf.finding_info.analytic.uid)],
                            1.0,
                        );
                        info!(finding = %rf.finding_info.uid, rule = %rf.finding_info.analytic.uid, "responder raised a finding");
                        Outgoing::Finding(*rf)
                    }
                };
                deliver_until_accepted(&sinks, Arc::new(item), &m).await;
            }
        }
    });
    (ResponseHook { tx, metrics }, task)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kmswatch_respond::testutil::finding;

    #[tokio::test]
    async fn hand_until_waits_on_a_full_queue_until_given_up() {
        let (tx, mut rx) = mpsc::channel(1);
        let hook = ResponseHook {
            tx,
            metrics: Metrics::default(),
        };
        let fs: Vec<Finding> = ["a", "b", "c"].iter().map(|r| finding(r, 3, &[])).collect();
        // Nobody reads: the first fits, then the hook waits until it gives up.
        let n = hook
            .hand_until(&fs, tokio::time::sleep(Duration::from_millis(50)))
            .await;
        assert_eq!(n, 1);
        // A reader drains the queue: everything is handed over in order, no give-up needed.
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            while let Some(f) = rx.recv().await {
                got.push(f.finding_info.analytic.uid);
            }
            got
        });
        assert_eq!(hook.hand_until(&fs, std::future::pending()).await, 3);
        drop(hook);
        assert_eq!(reader.await.expect("reader"), ["a", "a", "b", "c"]);
    }

    #[tokio::test]
    async fn hand_until_returns_when_the_response_task_is_gone() {
        let (tx, rx) = mpsc::channel(4);
        drop(rx);
        let hook = ResponseHook {
            tx,
            metrics: Metrics::default(),
        };
        let fs = vec![finding("a", 3, &[])];
        assert_eq!(hook.hand_until(&fs, std::future::pending()).await, 0);
    }
}
