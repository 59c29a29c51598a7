//! Scale-out on Kafka: `run --mode ingest` and `run --mode detect`.
//!
//! ```text
//!  ingest instances                                   detect instances (one consumer group)
//!  sources → normalize → dedup → produce ──> TOPIC ──> partition p → engine[p] → sinks
//!  (ack a batch once Kafka acked its events)  keyed    checkpoint: sinks.flush → snapshot[p]
//!                                             by       ─> TOPIC-state (key TOPIC/p) → commit p
//!                                             principal
//! ```
//!
//! **Ingest** reads the configured sources with the single-process pipeline's source tasks
//! (normalization on the blocking pool), drops events whose native id was seen within the
//! dedup TTL, and publishes each event as JSON (the model's `Event`) keyed by its principal
//! (`actor.user.uid`, else `actor.user.name`, else the account), with an idempotent producer
//! (`acks=all`). A source batch is acknowledged (SQS message deleted, offset committed, file
//! position saved) only once Kafka acknowledged every event of it; a message Kafka failed to
//! take is sent again until it is taken. The dedup set is checkpointed to `state.dir` every
//! `state.checkpoint_interval_ms`, after the events it covers were acknowledged by Kafka.
//!
//! **Detect** runs one engine per owned partition (its only stream is `TOPIC/p`, so the
//! watermark is per partition) on a dedicated thread around a `BaseConsumer`. Every
//! checkpoint interval, and for the partitions being revoked inside the rebalance callback
//! before they are released: findings are sent to the sinks and flushed (durably accepted),
//! then each changed partition's engine snapshot — with the offset of the next message — is
//! written to the changelog topic (gzip JSON, key `TOPIC/p`, partition `p mod changelog
//! partitions`) and acknowledged by Kafka, then the group offsets are committed. On
//! assignment, a partition's engine is restored from the changelog record with the highest
//! offset for its key and consumption starts at that offset (the group's committed offset
//! when there is no snapshot); a broker that answers a fetch from inside a record batch with
//! the next batch (tansu) is made to go back, so no message after the snapshot is skipped. A partition's findings therefore depend on its events only,
//! never on which instance owns it or when it moved: N instances produce the findings one
//! produces (same ids, same content; a finding emitted after the last checkpoint before a
//! crash is emitted again with the same id).
//!
//! With a `respond:` section the response queue is durable here too: a checkpoint adds the
//! findings a playbook has work for to their partition's snapshot (`respond`, keyed by finding
//! uid), and only once Kafka acknowledged that snapshot hands them to the response task of
//! `runtime::respond` (the single-process pipeline's, same sinks for audit records and raised
//! findings) through its bounded channel — waiting while it is full, not at all once stopping.
//! Findings whose playbooks ran are removed by the next snapshot of their partition. The
//! queue moves with the partition: a restart or the next owner after a rebalance restores the
//! snapshot and runs what is left first (`Responder::has_work` skips what the journal shows
//! as handled, so with a shared journal nothing runs twice). At SIGTERM the thread stops
//! consuming, lets the playbooks already handed over finish within the shutdown bound, and
//! writes the last snapshots with what finished removed.
//!
//! Limitation: a correlation whose group-by spans principals (the shipped pack's
//! `kms.key.uid` correlations) only sees the events of one partition; see ARCHITECTURE.md.

use crate::cmd::run::{close_sources, left, open_sources, spawn_signal_handler, start_server};
use crate::cmd::scan::load_rules;
use crate::config::{Config, ScaleOutConfig};
use crate::runtime::deadletter::DeadLetterWriter;
use crate::runtime::dedup::{event_key, Dedup};
use crate::runtime::deliver::{self, Deliver};
use crate::runtime::limits::{BudgetPermit, MemoryBudget};
use crate::runtime::metrics::{describe_all, export_sink_metrics, Metrics, LATENCY_BUCKETS};
use crate::runtime::pipeline::{
    self, commit_until_written, now_ms, sync_dead_letters, Shutdown, ToDetect,
};
use crate::runtime::ready::Readiness;
use crate::runtime::respond::{self, ResponseHook};
use crate::runtime::store::{Checkpoint, Store};
use anyhow::{anyhow, bail, Context, Result};
use kmswatch_model::{Event, Finding};
use kmswatch_rules::{Engine, EngineState};
use kmswatch_sources::{AckHandle, Backoff, Settle};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tracing::{debug, error, info, warn};

const KAFKA_TIMEOUT: Duration = Duration::from_secs(15);

fn base_client(so: &ScaleOutConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", so.brokers.join(","));
    for (k, v) in &so.librdkafka_options {
        c.set(k, v);
    }
    c
}

fn producer(so: &ScaleOutConfig) -> Result<FutureProducer> {
    let mut c = base_client(so);
    c.set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("compression.type", "gzip")
        .set("message.max.bytes", "67108864");
    for (k, v) in &so.librdkafka_options {
        c.set(k, v);
    }
    c.create()
        .with_context(|| format!("creating a Kafka producer for {}", so.brokers.join(",")))
}

/// Create the event topic and the changelog when they are missing (existing ones are kept).
async fn ensure_topics(so: &ScaleOutConfig) -> Result<()> {
    let admin: AdminClient<DefaultClientContext> = base_client(so)
        .create()
        .with_context(|| format!("creating a Kafka admin client for {}", so.brokers.join(",")))?;
    let changelog = so.changelog();
    let topics = [
        NewTopic::new(&so.topic, so.partitions, TopicReplication::Fixed(1)),
        NewTopic::new(&changelog, so.partitions, TopicReplication::Fixed(1))
            .set("cleanup.policy", "compact"),
    ];
    let res = admin
        .create_topics(
            &topics,
            &AdminOptions::new().operation_timeout(Some(KAFKA_TIMEOUT)),
        )
        .await
        .with_context(|| format!("creating topics on {}", so.brokers.join(",")))?;
    for r in res {
        match r {
            Ok(t) => info!(topic = %t, partitions = so.partitions, "kafka topic created"),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((t, e)) => warn!(topic = %t, error = %e, "could not create kafka topic"),
        }
    }
    Ok(())
}

/// The partition key of an event: its principal.
pub fn principal_key(ev: &Event) -> &str {
    let u = &ev.actor.user;
    u.uid
        .as_deref()
        .filter(|s| !s.is_empty())
        .or(u.name.as_deref().filter(|s| !s.is_empty()))
        .or(ev.cloud.account.uid.as_deref())
        .unwrap_or("")
}

// ------------------------------------------------------------------------------------ ingest

/// What the ingest loop hands the acker, in order.
enum ToAck {
    Batch {
        source: Arc<str>,
        origin: String,
        sent: Vec<DeliveryFuture>,
        ack: AckHandle,
        how: Settle,
        received: Instant,
        /// The batch's share of the memory budget, released with the settlement.
        permit: Option<BudgetPermit>,
    },
    Checkpoint(Box<Checkpoint>),
}

/// Queue one record, waiting while the producer's queue is full.
async fn produce(
    p: &FutureProducer,
    topic: &str,
    key: &[u8],
    payload: &[u8],
) -> Result<DeliveryFuture> {
    loop {
        match p.send_result(FutureRecord::to(topic).key(key).payload(payload)) {
            Ok(f) => return Ok(f),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Err((e, _)) => return Err(anyhow!("queueing a message for topic {topic}: {e}")),
        }
    }
}

/// Wait for Kafka to take every event of each batch (sending refused ones again), then settle
/// the batch; write dedup checkpoints once the batches before them are published.
async fn acker(
    mut rx: mpsc::Receiver<ToAck>,
    producer: FutureProducer,
    topic: String,
    store: Arc<Store>,
    metrics: Metrics,
    ready: Readiness,
    shutdown: Shutdown,
) -> Result<()> {
    while let Some(m) = rx.recv().await {
        match m {
            ToAck::Batch {
                source,
                origin,
                sent,
                ack,
                how,
                received,
                permit,
            } => {
                let mut ok = true;
                for f in sent {
                    let mut res = f.await;
                    let mut backoff =
                        Backoff::new(Duration::from_millis(100), Duration::from_secs(30));
                    loop {
                        match res {
                            Ok(Ok(_)) => break,
                            Ok(Err((e, msg))) => {
                                metrics.add("kmswatch_publish_errors_total", &[], 1.0);
                                let d = backoff.next_delay();
                                warn!(topic = %topic, origin = %origin, error = %e, delay_ms = d.as_millis() as u64, "kafka refused an event; sending it again");
                                tokio::time::sleep(d).await;
                                let key = msg.key().unwrap_or_default().to_vec();
                                let payload = msg.payload().unwrap_or_default().to_vec();
                                res = match produce(&producer, &topic, &key, &payload).await?.await
                                {
                                    Ok(r) => Ok(r),
                                    Err(_) => Ok(Err((e, msg))),
                                };
                            }
                            Err(_) => {
                                ok = false;
                                break;
                            }
                        }
                    }
                }
                let how = if ok { how } else { Settle::Retry };
                metrics.observe(
                    "kmswatch_end_to_end_seconds",
                    &[("source", &source)],
                    LATENCY_BUCKETS,
                    received.elapsed().as_secs_f64(),
                    1,
                );
                metrics.add(
                    "kmswatch_source_acked_total",
                    &[
                        ("source", &source),
                        ("outcome", if how.is_ack() { "ack" } else { "retry" }),
                    ],
                    1.0,
                );
                debug!(target: "kmswatch::ack", origin = %origin, "batch settled");
                ack.settle(how);
                drop(permit);
            }
            ToAck::Checkpoint(cp) => {
                commit_until_written(&store, Arc::from(cp), &ready, &metrics, &shutdown).await?;
                metrics.add("kmswatch_checkpoints_total", &[], 1.0);
            }
        }
    }
    Ok(())
}

/// Sources → normalized events on the scale_out topic, keyed by principal.
pub async fn ingest(cfg: Config, _exit_when_done: bool) -> Result<()> {
    let Some(so) = cfg.scale_out.clone() else {
        bail!("--mode ingest needs a `scale_out:` section (brokers, topic)");
    };
    let metrics = Metrics::default();
    describe_all(&metrics);
    pipeline::describe_metrics(&metrics);
    let ready = Readiness::new(&metrics);
    let listen = start_server(&cfg, &metrics, &ready).await?;
    let store = Arc::new(Store::open(&cfg.state.dir)?);
    let mut dedup = Dedup::new(cfg.state.dedup_ttl_secs, cfg.state.dedup_max_entries);
    dedup.restore(store.restore()?.dedup);
    let producer = producer(&so)?;
    ensure_topics(&so).await?;
    let sources = open_sources(&cfg).await?;
    info!(
        version = env!("CARGO_PKG_VERSION"),
        mode = "ingest",
        sources = %cfg.sources.iter().map(|s| format!("{}({})", s.id, s.config.type_name())).collect::<Vec<_>>().join(", "),
        topic = %so.topic,
        brokers = %so.brokers.join(","),
        state_dir = %cfg.state.dir.display(),
        dedup_entries = dedup.len(),
        listen = %listen.map(|a| a.to_string()).unwrap_or_else(|| "-".into()),
        "kmswatch started"
    );
    let cap = cfg.state.channel_capacity;
    let (tx_detect, mut rx_detect) = mpsc::channel::<ToDetect>(cap);
    let (tx_ack, rx_ack) = mpsc::channel::<ToAck>(cap);
    let timeout = cfg.limits.shutdown_timeout();
    let shutdown = Shutdown::new(timeout);
    spawn_signal_handler(shutdown.clone());
    let acker = tokio::spawn(acker(
        rx_ack,
        producer.clone(),
        so.topic.clone(),
        store.clone(),
        metrics.clone(),
        ready.clone(),
        shutdown.clone(),
    ));
    let budget = MemoryBudget::new(cfg.limits.in_flight_bytes());
    let normalize = cfg.limits.normalize_options(&cfg.normalize);
    let mut tasks = Vec::new();
    for (entry, source) in sources {
        tasks.push(tokio::spawn(pipeline::source_task(
            entry,
            source,
            normalize.clone(),
            budget.clone(),
            tx_detect.clone(),
            shutdown.subscribe(),
            metrics.clone(),
        )));
    }
    drop(tx_detect);
    ready.started(true);
    // The same writer as `--mode all`: every entry written and fsynced before its batch is
    // handed to the acknowledger.
    let mut dead = DeadLetterWriter::new(
        cfg.state.dead_letter(),
        cfg.limits.dead_letter_max_bytes,
        cfg.limits.dead_letter_files,
        metrics.clone(),
    );
    let interval = Duration::from_millis(cfg.state.checkpoint_interval_ms);
    let mut tick = tokio::time::interval(interval);
    let mut payload = Vec::new();
    let closed = || anyhow!("the acknowledgement task stopped");
    let checkpoint = |dedup: &mut Dedup| {
        dedup.expire(now_ms());
        let (dedup_insert, dedup_remove) = dedup.take_delta();
        ToAck::Checkpoint(Box::new(Checkpoint {
            dedup_insert,
            dedup_remove,
            ..Checkpoint::default()
        }))
    };
    loop {
        tokio::select! {
            m = rx_detect.recv() => match m {
                Some(ToDetect::Batch(n)) => {
                    let now = now_ms();
                    let mut sent = Vec::with_capacity(n.events.len());
                    let mut dups = 0u64;
                    for ev in &n.events {
                        if !ev.metadata.uid.is_empty()
                            && !dedup.first_time(event_key(ev.cloud.provider.as_str(), &ev.metadata.uid), now)
                        {
                            dups += 1;
                            continue;
                        }
                        payload.clear();
                        serde_json::to_writer(&mut payload, ev).context("serializing an event")?;
                        sent.push(produce(&producer, &so.topic, principal_key(ev).as_bytes(), &payload).await?);
                    }
                    if dups > 0 {
                        metrics.add("kmswatch_events_duplicate_total", &[("source", &n.source)], dups as f64);
                    }
                    metrics.add("kmswatch_published_total", &[("topic", &so.topic)], sent.len() as f64);
                    for e in &n.dead {
                        dead.push(e);
                    }
                    sync_dead_letters(&mut dead, &ready, &metrics, &shutdown).await?;
                    tx_ack.send(ToAck::Batch {
                        source: n.source,
                        origin: n.origin,
                        sent,
                        ack: n.ack,
                        how: n.settle,
                        received: n.received,
                        permit: n.permit,
                    }).await.map_err(|_| closed())?;
                }
                Some(ToDetect::End(_)) => {}
                None => break,
            },
            _ = tick.tick() => {
                metrics.set("kmswatch_dedup_entries", &[], dedup.len() as f64);
                tx_ack.send(checkpoint(&mut dedup)).await.map_err(|_| closed())?;
            }
        }
    }
    tx_ack
        .send(checkpoint(&mut dedup))
        .await
        .map_err(|_| closed())?;
    drop(tx_ack);
    let mut finished = Vec::new();
    for t in tasks {
        match t.await {
            Ok(s) => finished.push(s),
            Err(e) => error!(error = %e, "source task failed"),
        }
    }
    acker.await.context("acknowledgement task")??;
    ready.started(false);
    close_sources(finished, left(&shutdown, timeout)).await;
    info!("kmswatch ingest stopped; every published batch acknowledged");
    Ok(())
}

// ------------------------------------------------------------------------------------ detect

/// One partition's snapshot in the changelog.
#[derive(Serialize, Deserialize)]
struct PartSnapshot {
    topic: String,
    partition: i32,
    /// The offset of the next message to process.
    next_offset: i64,
    engine: EngineState,
    /// Findings queued for the playbooks and not yet run (see the module docs).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    respond: Vec<Finding>,
}

struct Part {
    engine: Engine,
    /// Findings queued for the playbooks (in the snapshot): uid -> (finding, handed to the
    /// response task).
    respond: BTreeMap<String, (Finding, bool)>,
    next_offset: Option<i64>,
    committed: Option<i64>,
    dirty: bool,
    last_event: Instant,
    /// When the partition's end offset was last asked for (idle check).
    idle_checked: Instant,
    /// The idle advance ran since the last event (logged once per quiet spell).
    caught_up: bool,
    findings: Vec<Finding>,
    /// Restored from a snapshot and the message at `next_offset` not seen yet: the offset
    /// the consumer was last pointed at (see [`resume_step`]).
    resume_from: Option<i64>,
    /// When a restored partition without a message was last checked (see `Core::unstall`).
    resume_checked: Instant,
}

/// What to do with a message of a partition whose snapshot says `next` is the offset to
/// process next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// Run it through the engine.
    Process,
    /// Already in the snapshot's state: drop it.
    Skip,
    /// Messages before it were not delivered: point the consumer at this earlier offset
    /// (messages before `next` will be skipped) and drop this one.
    SeekBack(i64),
}

/// The first seek back from a resume position that the broker skipped past, in messages.
const SEEK_BACK_MIN: i64 = 256;

/// Decide about the message at `offset` of a partition restored to `next`, while the
/// message at `next` has not been seen; `resume_from` is where the consumer was pointed
/// (`next` after the assignment, earlier after a seek back). Returns the step and whether
/// the resume is settled (later messages are contiguous with what was processed).
///
/// A broker may answer a fetch from an offset inside a record batch with the *next* batch
/// (tansu does: fetching from 400 of a batch 378..415 returns 416 first), so the messages
/// between the snapshot's offset and the next batch would never be processed by anyone. A
/// first message past `next` therefore makes the consumer seek back — doubling the
/// distance, down to offset 0 — until a message at or before `next` arrives; messages
/// before `next` are skipped. Only when even offset 0 gives a message past `next` are the
/// offsets in between taken to be missing from the log (compaction, retention).
fn resume_step(next: i64, resume_from: i64, offset: i64) -> (Step, bool) {
    if offset < next {
        // The stream is contiguous from here: everything up to `next` is skipped.
        (Step::Skip, true)
    } else if offset == next || resume_from <= 0 {
        (Step::Process, true)
    } else {
        let back = (next - resume_from).saturating_mul(2).max(SEEK_BACK_MIN);
        (Step::SeekBack(next.saturating_sub(back).max(0)), false)
    }
}

/// An error once stopping and past the shutdown deadline (retry loops on the detect thread).
fn past_deadline(shutdown: &Shutdown, what: &str) -> Result<()> {
    if shutdown.remaining().is_some_and(|r| r.is_zero()) {
        bail!("{what}: still failing at the shutdown deadline (limits.shutdown_timeout_secs); the next owner resumes from the last snapshot");
    }
    Ok(())
}

/// How often an idle partition's end offset is asked for.
const IDLE_CHECK: Duration = Duration::from_secs(1);

/// Everything the detect thread and the rebalance callback share.
struct Core {
    cfg: Config,
    topic: String,
    changelog: String,
    changelog_partitions: Option<i32>,
    parts: BTreeMap<i32, Part>,
    sinks: Vec<Box<dyn Deliver>>,
    producer: FutureProducer,
    restorer: BaseConsumer,
    handle: tokio::runtime::Handle,
    metrics: Metrics,
    idle_advance: Option<Duration>,
    last_checkpoint: Instant,
    /// The instance is failing (a sink or the changelog gave a permanent error): stop.
    failed: Option<anyhow::Error>,
    /// The playbooks (`respond:` section): findings they have work for are queued in the
    /// snapshots and handed to them.
    respond: Option<ResponseHook>,
    /// The stop signal and its deadline.
    shutdown: Shutdown,
}

fn lock(m: &Mutex<Core>) -> MutexGuard<'_, Core> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

struct DetectCtx {
    core: Arc<Mutex<Core>>,
}

impl ClientContext for DetectCtx {}

impl ConsumerContext for DetectCtx {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        let mut core = lock(&self.core);
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                let mut assign = TopicPartitionList::new();
                for e in tpl.elements() {
                    let p = e.partition();
                    let offset = match core.restore(p) {
                        Ok(o) => o,
                        Err(e) => {
                            error!(partition = p, error = %format!("{e:#}"), "restoring partition state failed");
                            core.failed.get_or_insert(e);
                            Offset::Stored
                        }
                    };
                    if let Err(e) = assign.add_partition_offset(e.topic(), p, offset) {
                        error!(partition = p, error = %e, "assign");
                    }
                }
                info!(
                    partitions = ?core.parts.keys().collect::<Vec<_>>(),
                    "kafka partitions assigned; state restored"
                );
                if let Err(e) = consumer.assign(&assign) {
                    error!(error = %e, "kafka assign failed");
                }
            }
            _ => {
                let revoked: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
                if let Err(e) = core.checkpoint(consumer, Some(&revoked)) {
                    error!(error = %format!("{e:#}"), "checkpoint on revocation failed; the next owner resumes from the last one");
                    core.failed.get_or_insert(e);
                }
                for p in &revoked {
                    core.parts.remove(p);
                }
                info!(partitions = ?revoked, "kafka partitions revoked after their checkpoint");
                if let Err(e) = consumer.unassign() {
                    error!(error = %e, "kafka unassign failed");
                }
            }
        }
    }
}

impl Core {
    fn stream(&self, p: i32) -> String {
        format!("{}/{p}", self.topic)
    }

    fn new_engine(&self) -> Result<Engine> {
        let rules = load_rules(&self.cfg, &[], false)?;
        Engine::new(rules, self.cfg.rules.engine.clone()).context("building the detection engine")
    }

    fn changelog_partition(&mut self, p: i32) -> Result<i32> {
        let n = match self.changelog_partitions {
            Some(n) => n,
            None => {
                let md = self
                    .restorer
                    .fetch_metadata(Some(&self.changelog), KAFKA_TIMEOUT)
                    .with_context(|| format!("metadata of topic {}", self.changelog))?;
                let n = md
                    .topics()
                    .first()
                    .map(|t| t.partitions().len() as i32)
                    .filter(|n| *n > 0)
                    .ok_or_else(|| {
                        anyhow!("changelog topic {} has no partitions", self.changelog)
                    })?;
                self.changelog_partitions = Some(n);
                n
            }
        };
        Ok(p.rem_euclid(n))
    }

    /// Build partition `p`'s engine from its latest snapshot; the offset to start from.
    fn restore(&mut self, p: i32) -> Result<Offset> {
        let started = Instant::now();
        let mut engine = self.new_engine()?;
        let cp = self.changelog_partition(p)?;
        let key = self.stream(p);
        let (lo, hi) = self
            .restorer
            .fetch_watermarks(&self.changelog, cp, KAFKA_TIMEOUT)
            .with_context(|| format!("offsets of {}/{cp}", self.changelog))?;
        let mut best: Option<PartSnapshot> = None;
        if hi > lo {
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition_offset(&self.changelog, cp, Offset::Beginning)?;
            self.restorer.assign(&tpl)?;
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                if Instant::now() > deadline {
                    bail!(
                        "reading {}/{cp} up to offset {hi} took too long",
                        self.changelog
                    );
                }
                let Some(m) = self.restorer.poll(Duration::from_millis(500)) else {
                    continue;
                };
                let m = match m {
                    Ok(m) => m,
                    Err(KafkaError::PartitionEOF(_)) => break,
                    Err(e) => bail!("reading {}/{cp}: {e}", self.changelog),
                };
                let at = m.offset();
                if m.key() == Some(key.as_bytes()) {
                    if let Some(bytes) = m.payload() {
                        let snap: PartSnapshot =
                            serde_json::from_reader(flate2::read::GzDecoder::new(bytes))
                                .with_context(|| {
                                    format!("snapshot at {}/{cp}/{at}", self.changelog)
                                })?;
                        if best
                            .as_ref()
                            .is_none_or(|b| snap.next_offset >= b.next_offset)
                        {
                            best = Some(snap);
                        }
                    }
                }
                if at + 1 >= hi {
                    break;
                }
            }
            self.restorer.unassign()?;
        }
        let mut respond = BTreeMap::new();
        let (offset, next) = match best {
            Some(s) => {
                engine
                    .restore(s.engine)
                    .map_err(|e| anyhow!("restoring partition {p}'s engine: {e}"))?;
                for f in s.respond {
                    respond.insert(f.finding_info.uid.clone(), (f, false));
                }
                (Offset::Offset(s.next_offset), Some(s.next_offset))
            }
            None => (Offset::Stored, None),
        };
        if let Some(hook) = &self.respond {
            hook.resumed(respond.len() as u64);
        }
        info!(partition = p, from = ?offset, ms = started.elapsed().as_millis() as u64, "partition state restored");
        self.parts.insert(
            p,
            Part {
                engine,
                respond,
                next_offset: next,
                committed: next,
                dirty: false,
                last_event: Instant::now(),
                idle_checked: Instant::now(),
                caught_up: false,
                findings: Vec::new(),
                resume_from: next,
                resume_checked: Instant::now(),
            },
        );
        Ok(offset)
    }

    /// Process the message at `offset` of partition `p`; `Some(offset)` when the consumer
    /// must be pointed back at that earlier offset of `p` first (see [`resume_step`]).
    fn process(&mut self, p: i32, offset: i64, payload: &[u8]) -> Option<i64> {
        let stream = self.stream(p);
        let Some(part) = self.parts.get_mut(&p) else {
            warn!(
                partition = p,
                offset, "message of a partition not owned; skipped"
            );
            return None;
        };
        let next = part.next_offset.unwrap_or(0);
        if let Some(from) = part.resume_from {
            let (step, settled) = resume_step(next, from, offset);
            if settled {
                part.resume_from = None;
                if step == Step::Process && offset > next {
                    warn!(
                        partition = p,
                        expected = next,
                        offset,
                        "offsets missing from the partition (compacted or deleted); resuming at the next message"
                    );
                }
            }
            match step {
                Step::Process => {}
                Step::Skip => return None,
                Step::SeekBack(to) => {
                    info!(
                        partition = p,
                        expected = next,
                        offset,
                        seek_to = to,
                        "the broker resumed past the restored offset; reading from an earlier one"
                    );
                    part.resume_from = Some(to);
                    return Some(to);
                }
            }
        } else if part.next_offset.is_some_and(|n| offset < n) {
            // Already processed (a message delivered again after a seek): drop it.
            return None;
        }
        match serde_json::from_slice::<Event>(payload) {
            Ok(ev) => {
                part.engine.process(&ev, &stream, &mut part.findings);
                let late = part.engine.take_late();
                if !late.is_empty() {
                    self.metrics
                        .add("kmswatch_events_late_total", &[], late.len() as f64);
                }
                self.metrics.add(
                    "kmswatch_records_total",
                    &[
                        ("source", &self.topic),
                        ("format", "event"),
                        ("outcome", "event"),
                    ],
                    1.0,
                );
            }
            Err(e) => {
                warn!(partition = p, offset, error = %e, "not a kmswatch event; skipped");
                self.metrics.add(
                    "kmswatch_records_total",
                    &[
                        ("source", &self.topic),
                        ("format", "event"),
                        ("outcome", "rejected"),
                    ],
                    1.0,
                );
            }
        }
        part.next_offset = Some(offset + 1);
        part.dirty = true;
        part.last_event = Instant::now();
        part.caught_up = false;
        None
    }

    /// Restored partitions that got no message for [`IDLE_CHECK`] although their end is past
    /// the restored offset: the broker skipped to a batch that does not exist yet (the
    /// offset is inside the last one), so the consumer is pointed back as for a message
    /// past it ([`resume_step`] with the end offset).
    fn unstall<C: ConsumerContext>(&mut self, consumer: &BaseConsumer<C>) {
        let topic = self.topic.clone();
        for (p, part) in self.parts.iter_mut() {
            let (Some(from), Some(next)) = (part.resume_from, part.next_offset) else {
                continue;
            };
            if part.last_event.elapsed() < IDLE_CHECK || part.resume_checked.elapsed() < IDLE_CHECK
            {
                continue;
            }
            part.resume_checked = Instant::now();
            let Ok((_, high)) = consumer.fetch_watermarks(&topic, *p, Duration::from_secs(2))
            else {
                continue;
            };
            if high <= next {
                // At the end: the next message starts a new batch, at `next`.
                part.resume_from = None;
                continue;
            }
            if let (Step::SeekBack(to), _) = resume_step(next, from, high) {
                info!(
                    partition = *p,
                    expected = next,
                    end = high,
                    seek_to = to,
                    "no message since the restore although the partition has more; reading from an earlier offset"
                );
                part.resume_from = Some(to);
                if let Err(e) =
                    consumer.seek(&topic, *p, Offset::Offset(to), Duration::from_secs(10))
                {
                    warn!(partition = *p, offset = to, error = %e, "seek failed");
                }
            }
        }
    }

    /// Idle partitions — caught up with the partition's end and without an event for
    /// `idle_advance` — have their event clock moved to the wall clock. A partition with a
    /// backlog is never idle (its events are coming, only later than the others'), so the
    /// moment windows close does not depend on how the consumer interleaves partitions.
    fn idle<C: ConsumerContext>(&mut self, consumer: &BaseConsumer<C>) {
        let Some(idle) = self.idle_advance else {
            return;
        };
        let now = now_ms() as i64;
        let topic = self.topic.clone();
        for (p, part) in self.parts.iter_mut() {
            if part.last_event.elapsed() < idle || part.idle_checked.elapsed() < IDLE_CHECK {
                continue;
            }
            part.idle_checked = Instant::now();
            let ends = consumer.fetch_watermarks(&topic, *p, Duration::from_secs(2));
            let caught_up = match (part.next_offset, ends) {
                (Some(next), Ok((_, high))) => high >= 0 && next >= high,
                (None, Ok((low, high))) => high >= 0 && high <= low,
                _ => false,
            };
            if !caught_up {
                continue;
            }
            let before = (part.findings.len(), part.engine.stats().groups);
            part.engine
                .advance(&format!("{topic}/{p}"), now, &mut part.findings);
            if (part.findings.len(), part.engine.stats().groups) != before {
                part.dirty = true;
            }
            if !part.caught_up {
                part.caught_up = true;
                info!(
                    partition = *p,
                    next_offset = part.next_offset,
                    "partition caught up and idle; event clock moved to the wall clock"
                );
            }
        }
    }

    /// Deliver the findings of `which` partitions (all when `None`), write their snapshots to
    /// the changelog, then commit their offsets.
    fn checkpoint<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        which: Option<&[i32]>,
    ) -> Result<()> {
        self.last_checkpoint = Instant::now();
        let started = Instant::now();
        let chosen: Vec<i32> = self
            .parts
            .keys()
            .copied()
            .filter(|p| which.is_none_or(|w| w.contains(p)))
            .collect();
        // 0. Findings whose playbooks ran leave their partitions' queues.
        if let Some(hook) = &self.respond {
            for uid in hook.take_done() {
                for part in self.parts.values_mut() {
                    if part.respond.remove(&uid).is_some() {
                        part.dirty = true;
                    }
                }
            }
        }
        let mut findings = Vec::new();
        let mut per_part = Vec::new();
        for p in &chosen {
            if let Some(part) = self.parts.get_mut(p) {
                per_part.push((*p, findings.len(), part.findings.len()));
                findings.append(&mut part.findings);
            }
        }
        // 1. Findings durably accepted by every sink.
        let (handle, metrics) = (self.handle.clone(), self.metrics.clone());
        for sink in &mut self.sinks {
            let name = sink.name().to_string();
            let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(30));
            let t = Instant::now();
            loop {
                let r = handle.block_on(self.shutdown.bounded("delivering findings", async {
                    if !findings.is_empty() {
                        sink.send(&findings).await?;
                    }
                    sink.flush().await
                }))?;
                match r {
                    Ok(()) => break,
                    Err(e) => {
                        metrics.add("kmswatch_sink_errors_total", &[("sink", &name)], 1.0);
                        let d = backoff.next_delay();
                        warn!(sink = %name, error = %format!("{e:#}"), "delivery failed; retrying");
                        past_deadline(&self.shutdown, "delivering findings")?;
                        std::thread::sleep(d);
                    }
                }
            }
            if !findings.is_empty() {
                metrics.observe(
                    "kmswatch_sink_latency_seconds",
                    &[("sink", &name)],
                    LATENCY_BUCKETS,
                    t.elapsed().as_secs_f64(),
                    1,
                );
                metrics.add(
                    "kmswatch_sink_delivered_total",
                    &[("sink", &name)],
                    findings.len() as f64,
                );
            }
        }
        for f in &findings {
            metrics.add(
                "kmswatch_rule_findings_total",
                &[("rule", &f.finding_info.analytic.uid)],
                1.0,
            );
        }
        // 1b. Findings a playbook has work for join their partition's durable queue.
        if let Some(hook) = &self.respond {
            for (p, from, n) in &per_part {
                let Some(part) = self.parts.get_mut(p) else {
                    continue;
                };
                for f in findings.iter().skip(*from).take(*n) {
                    if !part.respond.contains_key(&f.finding_info.uid) && hook.has_work(f) {
                        part.respond
                            .insert(f.finding_info.uid.clone(), (f.clone(), false));
                        part.dirty = true;
                    }
                }
            }
        }
        // 2. Snapshots of the changed partitions, acknowledged by Kafka.
        let mut sent = Vec::new();
        for p in &chosen {
            let cp = self.changelog_partition(*p)?;
            let key = self.stream(*p);
            let Some(part) = self.parts.get_mut(p) else {
                continue;
            };
            let (true, Some(next)) = (part.dirty, part.next_offset) else {
                continue;
            };
            let snap = PartSnapshot {
                topic: self.topic.clone(),
                partition: *p,
                next_offset: next,
                engine: part.engine.snapshot(),
                respond: part.respond.values().map(|(f, _)| f.clone()).collect(),
            };
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            serde_json::to_writer(&mut gz, &snap).context("serializing a partition snapshot")?;
            let bytes = gz.finish().context("compressing a partition snapshot")?;
            metrics.set(
                "kmswatch_engine_state_bytes",
                &[("partition", &p.to_string())],
                bytes.len() as f64,
            );
            part.dirty = false;
            sent.push((key, cp, bytes));
        }
        for (key, cp, bytes) in sent {
            let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(30));
            loop {
                let r = handle.block_on(async {
                    self.producer
                        .send(
                            FutureRecord::to(&self.changelog)
                                .partition(cp)
                                .key(&key)
                                .payload(&bytes),
                            KAFKA_TIMEOUT,
                        )
                        .await
                });
                match r {
                    Ok(_) => break,
                    Err((e, _)) => {
                        let d = backoff.next_delay();
                        warn!(topic = %self.changelog, key = %key, error = %e, "writing a snapshot failed; retrying (nothing is committed meanwhile)");
                        past_deadline(&self.shutdown, "writing the last snapshots")?;
                        std::thread::sleep(d);
                    }
                }
            }
        }
        // 2b. Queued findings of the partitions kept, now in acknowledged snapshots, to the
        // response task (waiting while its queue is full; not once stopping: they stay queued
        // in the snapshots). A revoked partition's queue goes to its next owner.
        if let Some(hook) = self.respond.clone() {
            let revoking = which.is_some();
            let mut to_hand: Vec<(i32, Finding)> = Vec::new();
            if !revoking {
                for p in &chosen {
                    if let Some(part) = self.parts.get(p) {
                        to_hand.extend(
                            part.respond
                                .values()
                                .filter(|(_, handed)| !handed)
                                .map(|(f, _)| (*p, f.clone())),
                        );
                    }
                }
            }
            if !to_hand.is_empty() {
                let fs: Vec<Finding> = to_hand.iter().map(|(_, f)| f.clone()).collect();
                let shutdown = self.shutdown.clone();
                let handed = handle.block_on(hook.hand_until(&fs, async move {
                    let mut rx = shutdown.subscribe();
                    let _ = rx.wait_for(|s| *s).await;
                }));
                for (p, f) in to_hand.iter().take(handed) {
                    if let Some((_, h)) = self
                        .parts
                        .get_mut(p)
                        .and_then(|part| part.respond.get_mut(&f.finding_info.uid))
                    {
                        *h = true;
                    }
                }
            }
        }
        // 3. Offsets.
        let mut tpl = TopicPartitionList::new();
        for p in &chosen {
            if let Some(part) = self.parts.get_mut(p) {
                if let Some(next) = part.next_offset.filter(|n| Some(*n) != part.committed) {
                    tpl.add_partition_offset(&self.topic, *p, Offset::Offset(next))?;
                    part.committed = Some(next);
                }
            }
        }
        if tpl.count() > 0 {
            if let Err(e) = consumer.commit(&tpl, CommitMode::Sync) {
                // The snapshots hold the offsets: the next owner starts from them anyway.
                warn!(error = %e, "offset commit failed");
            }
        }
        metrics.add("kmswatch_checkpoints_total", &[], 1.0);
        metrics.observe(
            "kmswatch_checkpoint_seconds",
            &[],
            LATENCY_BUCKETS,
            started.elapsed().as_secs_f64(),
            1,
        );
        Ok(())
    }
}

/// The scale_out topic → detection → sinks, one consumer group.
pub async fn detect(cfg: Config) -> Result<()> {
    let Some(so) = cfg.scale_out.clone() else {
        bail!("--mode detect needs a `scale_out:` section (brokers, topic, group_id)");
    };
    if cfg.sinks.is_empty() {
        bail!("no sinks configured (add `sinks: [{{type: file, path: findings.jsonl}}]`)");
    }
    let metrics = Metrics::default();
    describe_all(&metrics);
    pipeline::describe_metrics(&metrics);
    let ready = Readiness::new(&metrics);
    let listen = start_server(&cfg, &metrics, &ready).await?;
    let rules = load_rules(&cfg, &[], false)?;
    let (n_rules, n_corr) = (rules.len(), rules.correlations().count());
    drop(rules);
    let sink_set = deliver::start_sinks(&cfg)?;
    export_sink_metrics(&metrics, sink_set.clone());
    let sinks = deliver::build(&sink_set, &metrics);
    let (respond, respond_task) = match &cfg.respond {
        Some(rc) => {
            let (hook, task) = respond::start(
                rc,
                cfg.path.as_deref(),
                sink_set.clone(),
                metrics.clone(),
                respond::Feed::Channel,
            )?;
            (Some(hook), Some(task))
        }
        None => (None, None),
    };
    let timeout = cfg.limits.shutdown_timeout();
    let shutdown = Shutdown::new(timeout);
    ensure_topics(&so).await?;
    let producer = producer(&so)?;
    let restorer: BaseConsumer = base_client(&so)
        .set("group.id", format!("{}-restore", so.group_id))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("auto.offset.reset", "earliest")
        .create()
        .context("creating the changelog reader")?;
    let core = Arc::new(Mutex::new(Core {
        cfg: cfg.clone(),
        topic: so.topic.clone(),
        changelog: so.changelog(),
        changelog_partitions: None,
        parts: BTreeMap::new(),
        sinks,
        producer,
        restorer,
        handle: tokio::runtime::Handle::current(),
        metrics: metrics.clone(),
        idle_advance: (cfg.state.idle_advance_secs > 0)
            .then(|| Duration::from_secs(cfg.state.idle_advance_secs)),
        last_checkpoint: Instant::now(),
        failed: None,
        respond: respond.clone(),
        shutdown: shutdown.clone(),
    }));
    let mut cc = base_client(&so);
    cc.set("group.id", &so.group_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "10000")
        .set("heartbeat.interval.ms", "1000");
    for (k, v) in &so.librdkafka_options {
        cc.set(k, v);
    }
    let consumer: BaseConsumer<DetectCtx> = cc
        .create_with_context(DetectCtx { core: core.clone() })
        .context("creating the detection consumer")?;
    consumer
        .subscribe(&[so.topic.as_str()])
        .with_context(|| format!("subscribing to {}", so.topic))?;
    info!(
        version = env!("CARGO_PKG_VERSION"),
        mode = "detect",
        rules = n_rules,
        correlations = n_corr,
        topic = %so.topic,
        changelog = %so.changelog(),
        group = %so.group_id,
        sinks = %sink_set.names().join(", "),
        respond = %respond::describe(cfg.respond.as_ref()),
        listen = %listen.map(|a| a.to_string()).unwrap_or_else(|| "-".into()),
        "kmswatch started"
    );
    spawn_signal_handler(shutdown.clone());
    ready.started(true);
    let interval = Duration::from_millis(cfg.state.checkpoint_interval_ms);
    let stop = shutdown.clone();
    let hook = respond.clone();
    let worker = std::thread::Builder::new()
        .name("kmswatch-detect".into())
        .spawn(move || -> Result<()> {
            while !stop.is_stopping() {
                let polled = consumer.poll(Duration::from_millis(100));
                let mut core = lock(&core);
                if let Some(e) = core.failed.take() {
                    return Err(e);
                }
                match polled {
                    Some(Ok(m)) => {
                        let payload = m.payload().unwrap_or_default();
                        let p = m.partition();
                        if let Some(to) = core.process(p, m.offset(), payload) {
                            drop(m);
                            if let Err(e) = consumer.seek(
                                &core.topic,
                                p,
                                Offset::Offset(to),
                                Duration::from_secs(10),
                            ) {
                                // The partition stays unsettled: the next message of it
                                // asks for the seek again.
                                warn!(partition = p, offset = to, error = %e, "seek failed");
                            }
                        }
                    }
                    Some(Err(e)) => {
                        warn!(error = %e, "kafka consumer error");
                    }
                    None => {
                        core.unstall(&consumer);
                        core.idle(&consumer);
                    }
                }
                if core.last_checkpoint.elapsed() >= interval {
                    core.idle(&consumer);
                    core.checkpoint(&consumer, None)?;
                }
            }
            // The playbooks already handed over finish (within the shutdown bound), so the
            // last snapshots no longer queue them.
            if let Some(hook) = &hook {
                while hook.outstanding() > 0 && stop.remaining().is_some_and(|r| !r.is_zero()) {
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
            lock(&core).checkpoint(&consumer, None)?;
            info!("kmswatch detect stopping; state checkpointed");
            consumer.unsubscribe();
            drop(consumer);
            Ok(())
        })
        .context("starting the detection thread")?;
    let res = tokio::task::spawn_blocking(move || worker.join())
        .await
        .context("detection thread")?
        .map_err(|_| anyhow!("the detection thread panicked"))?;
    ready.started(false);
    if let (Some(t), Some(hook)) = (respond_task, respond.as_ref()) {
        // Every sender is gone with the detection thread: what is left stays queued in the
        // snapshots.
        respond::finish(t, hook, left(&shutdown, timeout)).await;
    }
    sink_set
        .shutdown(left(&shutdown, timeout).min(Duration::from_secs(10)))
        .await;
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_keyed_by_principal_then_name_then_account() {
        let raw = serde_json::value::RawValue::from_string("{}".into()).expect("raw");
        let mut ev = Event::new(0, kmswatch_model::KmsOperation::Decrypt, raw);
        assert_eq!(principal_key(&ev), "");
        ev.cloud.account.uid = Some("111122223333".into());
        assert_eq!(principal_key(&ev), "111122223333");
        ev.actor.user.name = Some("alice".into());
        assert_eq!(principal_key(&ev), "alice");
        ev.actor.user.uid = Some("arn:aws:iam::111122223333:user/alice".into());
        assert_eq!(principal_key(&ev), "arn:aws:iam::111122223333:user/alice");
    }

    /// Replays a partition 0..len whose broker answers a fetch from inside a record batch
    /// with the next batch (as tansu does), resuming a snapshot at `next`: every offset from
    /// `next` on must be processed exactly once, in order.
    fn replay(next: i64, batch_starts: &[i64], len: i64) -> Vec<i64> {
        let fetch_from = |at: i64| -> i64 {
            batch_starts
                .iter()
                .copied()
                .find(|b| *b >= at)
                .unwrap_or(len)
        };
        let (mut next, mut resume_from, mut pos) = (next, Some(next), fetch_from(next));
        let mut processed = Vec::new();
        let mut guard = 0;
        loop {
            guard += 1;
            assert!(guard < 10_000, "no progress");
            if pos >= len {
                // Nothing delivered: `Core::unstall` asks with the end offset.
                match resume_from.map(|from| resume_step(next, from, len)) {
                    Some((Step::SeekBack(to), _)) => {
                        resume_from = Some(to);
                        pos = fetch_from(to);
                        continue;
                    }
                    _ => break,
                }
            }
            let offset = pos;
            pos += 1;
            if let Some(from) = resume_from {
                let (step, settled) = resume_step(next, from, offset);
                if settled {
                    resume_from = None;
                }
                match step {
                    Step::Process => {}
                    Step::Skip => continue,
                    Step::SeekBack(to) => {
                        assert!(to < from, "seeks must go back");
                        resume_from = Some(to);
                        pos = fetch_from(to);
                        continue;
                    }
                }
            } else if offset < next {
                continue;
            }
            processed.push(offset);
            next = offset + 1;
        }
        processed
    }

    #[test]
    fn a_resume_inside_a_record_batch_loses_no_message() {
        let batches = [0, 378, 416, 900, 2000];
        for next in [0, 1, 377, 378, 400, 415, 416, 417, 1999, 2001] {
            assert_eq!(
                replay(next, &batches, 2100),
                (next..2100).collect::<Vec<_>>(),
                "resumed at {next}"
            );
        }
        // One huge batch: the seek back doubles down to offset 0.
        assert_eq!(replay(5000, &[0], 6000), (5000..6000).collect::<Vec<_>>());
    }

    #[test]
    fn offsets_missing_from_the_log_are_passed_over_after_reaching_offset_zero() {
        // Offsets 10..20 do not exist (compacted): seeking back cannot find 10.
        assert_eq!(resume_step(10, 10, 20), (Step::SeekBack(0), false));
        assert_eq!(resume_step(10, 0, 5), (Step::Skip, true));
        assert_eq!(resume_step(10, 0, 20), (Step::Process, true));
        assert_eq!(resume_step(10, 10, 10), (Step::Process, true));
    }
}
