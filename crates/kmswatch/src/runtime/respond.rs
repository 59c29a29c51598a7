//! Response wiring: findings from the engine trigger playbooks (`kmswatch_respond`), through a
//! durable queue.
//!
//! ```text
//!  deliver task: findings ─> sinks.send            response task (one)
//!     │ has_work? (a playbook plans an action          │ load the next ≤ 1,024 queued findings
//!     │  the journal does not show as handled)         │ has_work? (skip what a previous run did)
//!     └─> checkpoint transaction: respond_queue  ──>   │ Responder::on_finding: plan -> policy ->
//!         (+ engine, dedup, then the acks)             │   execute, each step in the journal
//!                                                      │ audit records, raised findings ─> sinks
//!                                                      └─> done: removed by the next checkpoint
//! ```
//!
//! **Durable.** A finding a playbook has work for is written to the state store (a redb table
//! keyed by finding uid, in arrival order) in the *same* checkpoint transaction that
//! acknowledges its batch, so acknowledging a batch never loses its actions. The response
//! task reads the queue from the store (at most [`RESPONSE_QUEUE`] findings in memory; the
//! durable part can be longer) and runs the playbooks one finding at a time (the policy's
//! rate limits and blast-radius cap see them in order); one run is abandoned after
//! [`RESPONSE_TIMEOUT`]. A finished finding's uid is removed from the store by the next
//! checkpoint. After a crash the entries left are queued first; a finding whose actions the
//! journal already shows as handled (`Responder::has_work` is false: it ran, but its removal
//! was not committed) is skipped, and a finding stopped mid-way runs again — the responder is
//! idempotent per action id through its journal, so nothing that was done is repeated.
//! Playbooks therefore start up to one checkpoint interval after their finding is delivered.
//!
//! **Shutdown.** SIGTERM lets the task drain the queue for what remains of
//! `limits.shutdown_timeout_secs` (after the pipeline's last checkpoint), then stops it; what
//! it did not run stays in the store for the next start. `kill -9` loses nothing either.
//!
//! **Scale-out.** `run --mode detect` (`runtime::scale`) keeps a partition's queued findings in
//! its changelog snapshot (they move with the partition to its next owner) and hands them to
//! this task through a bounded channel once the snapshot holding them is acknowledged by Kafka
//! ([`ResponseHook::hand_until`]); finished uids are taken by the next snapshot.
//!
//! Every plan/execute step is written to the journal (`respond.journal_path`, default
//! `STATE_DIR/respond-journal.jsonl`) by the responder and delivered to the sinks as an audit
//! record; a failed automatic action and the blast-radius halt are findings (deterministic
//! ids) delivered like any other. The journal is the durable copy of audit records: a crash
//! between a step and its delivery to the sinks leaves it in the journal only. In `approve`
//! mode pending actions wait in the journal for `kmswatch respond approve ID --config
//! SAME_CONFIG`.
//!
//! Metrics: `kmswatch_respond_queue` (findings queued and not finished; goes up and down),
//! `kmswatch_respond_resumed_total` (queued findings found at start),
//! `kmswatch_respond_already_handled_total` (queued findings skipped: the journal had them).

use crate::runtime::deliver::deliver_until_accepted;
use crate::runtime::metrics::Metrics;
use crate::runtime::store::{Committed, Store};
use anyhow::{anyhow, Result};
use kmswatch_model::Finding;
use kmswatch_respond::{RespondConfig, Responder, ResponseOutput};
use kmswatch_sinks::{Outgoing, SinkSet};
use std::collections::VecDeque;
use std::future::Future;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, watch, Notify};
use tokio::task::{JoinHandle, JoinSet};
use tracing::{debug, error, info, warn};

/// Findings held in memory for the responder at most.
pub const RESPONSE_QUEUE: usize = 1024;
/// Longest one finding's playbooks may run.
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(120);

/// Where the response queue is fed from.
#[derive(Debug, Clone)]
pub enum Feed {
    /// The state store's queue (`run --mode all`).
    Store(Arc<Store>),
    /// A bounded channel from the detect thread (`run --mode detect`).
    Channel,
}

/// What the pipeline and the response task share; cheap to clone.
#[derive(Debug, Clone)]
pub struct ResponseHook {
    responder: Arc<Responder>,
    metrics: Metrics,
    /// Uids of findings whose playbooks ran, not yet removed durably.
    done: Arc<Mutex<Vec<String>>>,
    /// Wakes the response task when findings were queued in the store.
    notify: Arc<Notify>,
    /// The channel feed (`Feed::Channel`).
    tx: Option<mpsc::Sender<Finding>>,
    /// Findings queued and not finished.
    queued: Arc<AtomicI64>,
}

/// The running response task.
#[derive(Debug)]
pub struct ResponseTask {
    handle: JoinHandle<()>,
    closing: watch::Sender<bool>,
}

impl ResponseHook {
    /// Whether a playbook has an action for `f` that the journal does not show as handled.
    pub fn has_work(&self, f: &Finding) -> bool {
        self.responder.has_work(f)
    }

    /// The findings of `fs` with work, as queue entries (uid, JSON) for a checkpoint.
    pub fn entries(&self, fs: &[Finding]) -> Vec<(String, Vec<u8>)> {
        fs.iter()
            .filter(|f| self.has_work(f))
            .filter_map(|f| match serde_json::to_vec(f) {
                Ok(b) => Some((f.finding_info.uid.clone(), b)),
                Err(e) => {
                    error!(finding = %f.finding_info.uid, error = %e, "finding not serializable; its playbooks do not run");
                    None
                }
            })
            .collect()
    }

    /// A checkpoint holding queue changes was committed: count them, wake the task.
    pub fn committed(&self, c: Committed) {
        if c.respond_inserted > 0 {
            self.add_queued(c.respond_inserted as i64);
            self.notify.notify_one();
        }
    }

    /// `n` more (or fewer) findings queued and not finished.
    pub fn add_queued(&self, n: i64) {
        let now = self.queued.fetch_add(n, Ordering::SeqCst) + n;
        self.metrics
            .set("kmswatch_respond_queue", &[], now.max(0) as f64);
    }

    /// Uids of findings whose playbooks ran since the last call (remove them durably).
    pub fn take_done(&self) -> Vec<String> {
        std::mem::take(&mut *self.done.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Count queued findings found at start (`kmswatch_respond_resumed_total`).
    pub fn resumed(&self, n: u64) {
        if n > 0 {
            info!(
                findings = n,
                "resuming queued findings: their playbooks run first"
            );
            self.metrics
                .add("kmswatch_respond_resumed_total", &[], n as f64);
        }
    }

    /// Findings queued (store feed) or handed over (channel feed) and not finished.
    pub fn outstanding(&self) -> u64 {
        self.queued.load(Ordering::SeqCst).max(0) as u64
    }

    /// Hand findings to the task (`Feed::Channel`), waiting while its queue is full, giving up
    /// on the rest once `give_up` resolves; returns how many were handed over. Those not
    /// handed stay wherever the caller keeps them durably.
    pub async fn hand_until(
        &self,
        findings: &[Finding],
        give_up: impl Future<Output = ()>,
    ) -> usize {
        let Some(tx) = &self.tx else {
            return 0;
        };
        let mut handed = 0usize;
        let stopped = {
            let send = async {
                for f in findings {
                    if tx.send(f.clone()).await.is_err() {
                        return true;
                    }
                    handed += 1;
                    self.add_queued(1);
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
            let left = findings.len() - handed;
            if stopped {
                error!(finding = %f.finding_info.uid, left, "response task stopped; findings stay queued in the snapshot");
            } else {
                info!(finding = %f.finding_info.uid, left, "stopping with the response queue full; findings stay queued in the snapshot");
            }
        }
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

/// Help texts of the response metrics.
pub fn describe_metrics(m: &Metrics) {
    m.describe(
        "kmswatch_respond_resumed_total",
        "counter",
        "Queued findings found at start (left by the previous run), run first.",
    );
    m.describe(
        "kmswatch_respond_already_handled_total",
        "counter",
        "Queued findings skipped because the journal shows their actions handled.",
    );
}

/// Build the responder (journal replayed) and start the response task. `config_path` (the
/// config file the process runs with) goes into the undo commands the audit records print,
/// so `kmswatch respond undo ID --config PATH` finds the same journal and responders.
pub fn start(
    cfg: &RespondConfig,
    config_path: Option<&std::path::Path>,
    sinks: Arc<SinkSet>,
    metrics: Metrics,
    feed: Feed,
) -> Result<(ResponseHook, ResponseTask)> {
    let mut responder = Responder::new(cfg.clone()).map_err(|e| anyhow!("respond: {e}"))?;
    if let Some(p) = config_path {
        responder = responder.with_config_path(p);
    }
    start_with(responder, sinks, metrics, feed)
}

/// [`start`] with a responder built by the caller.
pub fn start_with(
    responder: Responder,
    sinks: Arc<SinkSet>,
    metrics: Metrics,
    feed: Feed,
) -> Result<(ResponseHook, ResponseTask)> {
    describe_metrics(&metrics);
    let (closing, closing_rx) = watch::channel(false);
    let (tx, rx) = match feed {
        Feed::Channel => {
            let (tx, rx) = mpsc::channel::<Finding>(RESPONSE_QUEUE);
            (Some(tx), Some(rx))
        }
        Feed::Store(_) => (None, None),
    };
    let hook = ResponseHook {
        responder: Arc::new(responder),
        metrics: metrics.clone(),
        done: Arc::default(),
        notify: Arc::default(),
        tx,
        queued: Arc::default(),
    };
    let worker = Worker {
        hook: hook.clone(),
        sinks,
        deliveries: JoinSet::new(),
    };
    let handle = match (feed, rx) {
        (Feed::Store(store), _) => {
            let n = store.respond_len()?;
            hook.resumed(n);
            hook.add_queued(n as i64);
            tokio::spawn(worker.run_store(store, closing_rx))
        }
        (Feed::Channel, Some(rx)) => tokio::spawn(worker.run_channel(rx, closing_rx)),
        (Feed::Channel, None) => return Err(anyhow!("response channel missing")),
    };
    Ok((hook, ResponseTask { handle, closing }))
}

/// Findings whose audit records are being delivered at once, at most: the playbooks of the
/// next findings run meanwhile (a sink's batch timeout does not pace the queue).
const DELIVERIES_IN_FLIGHT: usize = 256;

/// The response task's side.
struct Worker {
    hook: ResponseHook,
    sinks: Arc<SinkSet>,
    /// Deliveries of audit records and raised findings; a finding is done once its own are
    /// accepted by the sinks.
    deliveries: JoinSet<()>,
}

impl Worker {
    /// Queued findings from the store, oldest first, until closing and drained.
    async fn run_store(mut self, store: Arc<Store>, closing: watch::Receiver<bool>) {
        self.store_loop(store, closing).await;
        self.drain().await;
    }

    async fn store_loop(&mut self, store: Arc<Store>, mut closing: watch::Receiver<bool>) {
        let mut cursor = 0u64;
        let mut buf: VecDeque<Finding> = VecDeque::new();
        // Whether the store was read after closing began: entries committed just before it
        // (their batch acknowledged) must still run before the task leaves.
        let mut read_since_closing = false;
        loop {
            if buf.is_empty() {
                read_since_closing = *closing.borrow();
                let s = store.clone();
                let rows =
                    tokio::task::spawn_blocking(move || s.respond_load(cursor, RESPONSE_QUEUE))
                        .await
                        .map_err(|e| anyhow!("{e}"))
                        .and_then(|r| r);
                match rows {
                    Ok(rows) => {
                        for (seq, bytes) in rows {
                            cursor = seq;
                            match serde_json::from_slice::<Finding>(&bytes) {
                                Ok(f) => buf.push_back(f),
                                Err(e) => self.undecodable(seq, &bytes, &e),
                            }
                        }
                    }
                    Err(e) => {
                        warn!(error = %format!("{e:#}"), "reading the response queue failed; retrying");
                        tokio::select! {
                            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                            r = closing.changed() => if r.is_err() { return },
                        }
                        if *closing.borrow() {
                            return;
                        }
                        continue;
                    }
                }
            }
            match buf.pop_front() {
                Some(f) => self.run_one(&f).await,
                None if *closing.borrow() && read_since_closing => return,
                None if *closing.borrow() => {}
                None => {
                    tokio::select! {
                        () = self.hook.notify.notified() => {}
                        r = closing.changed() => if r.is_err() { return },
                    }
                }
            }
        }
    }

    /// Findings from the channel until every sender is gone, or closing and drained.
    async fn run_channel(mut self, rx: mpsc::Receiver<Finding>, closing: watch::Receiver<bool>) {
        self.channel_loop(rx, closing).await;
        self.drain().await;
    }

    /// Wait for the deliveries still in flight.
    async fn drain(&mut self) {
        while self.deliveries.join_next().await.is_some() {}
    }

    async fn channel_loop(
        &mut self,
        mut rx: mpsc::Receiver<Finding>,
        mut closing: watch::Receiver<bool>,
    ) {
        loop {
            tokio::select! {
                biased;
                f = rx.recv() => match f {
                    Some(f) => self.run_one(&f).await,
                    None => return,
                },
                r = closing.changed() => {
                    if r.is_err() || *closing.borrow() {
                        while let Ok(f) = rx.try_recv() {
                            self.run_one(&f).await;
                        }
                        return;
                    }
                }
            }
        }
    }

    /// A stored entry that is not a finding (written by another version): logged and removed.
    fn undecodable(&self, seq: u64, bytes: &[u8], e: &serde_json::Error) {
        let uid = serde_json::from_slice::<serde_json::Value>(bytes)
            .ok()
            .and_then(|v| v["finding_info"]["uid"].as_str().map(str::to_string));
        error!(seq, uid = ?uid, error = %e, "queued finding unreadable; its playbooks do not run");
        if let Some(uid) = uid {
            self.finished(uid);
        }
    }

    fn finished(&self, uid: String) {
        finished(&self.hook, uid);
    }

    /// Run one finding's playbooks (unless the journal shows them handled), deliver the audit
    /// records and raised findings, and mark it done.
    async fn run_one(&mut self, f: &Finding) {
        let m = &self.hook.metrics;
        let uid = f.finding_info.uid.clone();
        if !self.hook.responder.has_work(f) {
            debug!(finding = %uid, "queued finding already handled (journal); skipped");
            m.add("kmswatch_respond_already_handled_total", &[], 1.0);
            self.finished(uid);
            return;
        }
        let outs = match tokio::time::timeout(RESPONSE_TIMEOUT, self.hook.responder.on_finding(f))
            .await
        {
            Ok(o) => o,
            Err(_) => {
                m.add("kmswatch_respond_timeouts_total", &[], 1.0);
                error!(finding = %uid, timeout_s = RESPONSE_TIMEOUT.as_secs(), "playbooks abandoned after the response timeout; see the journal for the steps taken");
                self.finished(uid);
                return;
            }
        };
        let mut items = Vec::new();
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
            items.push(Arc::new(item));
        }
        while self.deliveries.len() >= DELIVERIES_IN_FLIGHT {
            self.deliveries.join_next().await;
        }
        let (sinks, hook) = (self.sinks.clone(), self.hook.clone());
        self.deliveries.spawn(async move {
            for item in items {
                deliver_until_accepted(&sinks, item, &hook.metrics).await;
            }
            finished(&hook, uid);
        });
    }
}

/// A finding's playbooks ran and their records were delivered: remove it at the next
/// checkpoint.
fn finished(hook: &ResponseHook, uid: String) {
    hook.done
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(uid);
    hook.add_queued(-1);
}

/// Let the response task drain its queue for at most `within` (every feeder is done), then
/// stop it; what it did not run stays queued (store, or the detect snapshots).
pub async fn finish(task: ResponseTask, hook: &ResponseHook, within: Duration) {
    let _ = task.closing.send(true);
    let mut handle = task.handle;
    if tokio::time::timeout(within, &mut handle).await.is_err() {
        let left = hook.outstanding();
        warn!(
            left,
            waited_ms = within.as_millis() as u64,
            "response queue not drained at shutdown; the rest stays queued for the next start"
        );
        handle.abort();
        let _ = handle.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::store::Checkpoint;
    use kmswatch_model::Provider;
    use kmswatch_respond::testutil::finding;
    use kmswatch_respond::{Backend, KeyState, MemoryBackend};

    const KEY: &str = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";

    fn responder(dir: &std::path::Path) -> Responder {
        let cfg: RespondConfig = serde_json::from_value(serde_json::json!({
            "mode": "dry_run",
            "journal_path": dir.join("journal.jsonl"),
            "playbooks": [{"name": "p", "rules": ["r*"], "actions": [{"kind": "disable"}]}]
        }))
        .expect("config");
        let mem = MemoryBackend::new(Provider::Aws);
        mem.put(
            KEY,
            KeyState {
                enabled: true,
                status: "Enabled".into(),
                ..KeyState::default()
            },
        );
        Responder::new(cfg)
            .expect("responder")
            .with_backend(Backend::Memory(mem))
    }

    fn f(rule: &str) -> Finding {
        let mut f = finding(rule, 3, &[(Provider::Aws, KEY)]);
        f.finding_info.uid = format!("uid-{rule}");
        f
    }

    fn journal(dir: &std::path::Path) -> Vec<serde_json::Value> {
        std::fs::read_to_string(dir.join("journal.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("record"))
            .collect()
    }

    /// A response task over `feed` with a file sink in `dir`.
    fn start_in(dir: &std::path::Path, feed: Feed) -> (ResponseHook, ResponseTask, Metrics) {
        let cfg: Vec<kmswatch_sinks::SinkConfig> = serde_json::from_value(serde_json::json!([
            {"type": "file", "path": dir.join("out.jsonl"), "batch": {"timeout_ms": 5}}
        ]))
        .expect("sinks");
        let sinks = Arc::new(SinkSet::from_config(&cfg, dir.join("spool")).expect("sink set"));
        let m = Metrics::default();
        let (hook, task) = start_with(responder(dir), sinks, m.clone(), feed).expect("start");
        (hook, task, m)
    }

    /// The store-fed queue: entries committed by a checkpoint run in order, finished ones
    /// are removed by the next checkpoint, and a restart resumes what was left — skipping
    /// what the journal shows as done, so each action is journaled once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_store_queue_runs_resumes_and_never_repeats_an_action() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(Store::open(&dir.path().join("state")).expect("store"));
        let (hook, task, m) = start_in(dir.path(), Feed::Store(store.clone()));
        let fs: Vec<Finding> = ["r1", "r2", "x3", "r4"].iter().map(|r| f(r)).collect();
        let entries = hook.entries(&fs);
        // x3 matches no playbook: not queued.
        assert_eq!(entries.len(), 3);
        let c = store
            .commit(&Checkpoint {
                respond_insert: entries,
                ..Checkpoint::default()
            })
            .expect("commit");
        hook.committed(c);
        finish(task, &hook, Duration::from_secs(10)).await;
        assert_eq!(journal(dir.path()).len(), 3);
        let mut done = hook.take_done();
        done.sort();
        assert_eq!(done, ["uid-r1", "uid-r2", "uid-r4"]);
        assert!(m.render().contains("kmswatch_respond_queue{} 0"));
        // A crash before the removal was committed: the next start finds all three queued and
        // skips them (the journal has their records); nothing is journaled twice.
        drop(hook);
        let (hook, task, m) = start_in(dir.path(), Feed::Store(store.clone()));
        assert_eq!(m.counter("kmswatch_respond_resumed_total", &[]), 3.0);
        // A finding delivered again (its batch was not acknowledged) is not queued again.
        assert!(hook.entries(&[f("r1")]).is_empty());
        let entries = hook.entries(&[f("r5")]);
        hook.committed(
            store
                .commit(&Checkpoint {
                    respond_insert: entries,
                    ..Checkpoint::default()
                })
                .expect("commit"),
        );
        finish(task, &hook, Duration::from_secs(10)).await;
        assert_eq!(
            m.counter("kmswatch_respond_already_handled_total", &[]),
            3.0
        );
        let recs = journal(dir.path());
        assert_eq!(recs.len(), 4, "{recs:?}");
        let c = store
            .commit(&Checkpoint {
                respond_remove: hook.take_done(),
                ..Checkpoint::default()
            })
            .expect("commit");
        assert_eq!(c.respond_removed, 4);
        assert_eq!(store.respond_len().expect("len"), 0);
    }

    /// More findings than the in-memory queue holds are all run, the queue gauge going up
    /// and back down; a stopped task leaves the rest in the store.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_long_durable_queue_is_fed_in_slices_and_a_stop_leaves_the_rest() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(Store::open(&dir.path().join("state")).expect("store"));
        let (hook, task, m) = start_in(dir.path(), Feed::Store(store.clone()));
        let n = RESPONSE_QUEUE + 200;
        let fs: Vec<Finding> = (0..n).map(|i| f(&format!("r{i}"))).collect();
        let c = store
            .commit(&Checkpoint {
                respond_insert: hook.entries(&fs),
                ..Checkpoint::default()
            })
            .expect("commit");
        assert_eq!(c.respond_inserted, n);
        hook.committed(c);
        finish(task, &hook, Duration::from_secs(120)).await;
        assert_eq!(journal(dir.path()).len(), n);
        assert!(m.render().contains("kmswatch_respond_queue{} 0"));
        store
            .commit(&Checkpoint {
                respond_remove: hook.take_done(),
                ..Checkpoint::default()
            })
            .expect("commit");
        // Stopped at once: nothing runs, everything stays queued.
        let fs: Vec<Finding> = (0..50).map(|i| f(&format!("rs{i}"))).collect();
        let (hook, task, _) = start_in(dir.path(), Feed::Store(store.clone()));
        store
            .commit(&Checkpoint {
                respond_insert: hook.entries(&fs),
                ..Checkpoint::default()
            })
            .expect("commit");
        finish(task, &hook, Duration::ZERO).await;
        // Nothing leaves the store without a checkpoint: all 50 wait for the next start.
        assert_eq!(store.respond_len().expect("len"), 50);
    }

    #[tokio::test]
    async fn hand_until_waits_on_a_full_queue_until_given_up() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (hook, task, _) = start_in(dir.path(), Feed::Channel);
        task.handle.abort();
        let _ = task.handle.await;
        // The task is gone: nothing can be handed.
        let fs = vec![f("r1")];
        assert_eq!(hook.hand_until(&fs, std::future::pending()).await, 0);
        // A channel nobody reads: the first RESPONSE_QUEUE fit, then the hook gives up.
        let (tx, _rx) = mpsc::channel(1);
        let hook = ResponseHook {
            tx: Some(tx),
            ..hook
        };
        let fs: Vec<Finding> = ["r1", "r2", "r3"].iter().map(|r| f(r)).collect();
        let n = hook
            .hand_until(&fs, tokio::time::sleep(Duration::from_millis(50)))
            .await;
        assert_eq!(n, 1);
    }
}
