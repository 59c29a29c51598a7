//! `kmswatch run`: the always-on service.

use crate::cmd::scan::load_rules;
use crate::config::{Config, SourceEntry};
use crate::runtime::deadletter::DeadLetterWriter;
use crate::runtime::dedup::Dedup;
use crate::runtime::deliver;
use crate::runtime::limits::MemoryBudget;
use crate::runtime::metrics::{describe_all, export_sink_metrics, Metrics};
use crate::runtime::pipeline::{self, Deliverer, DetectSettings, Detector, Shutdown};
use crate::runtime::ready::Readiness;
use crate::runtime::respond;
use crate::runtime::server;
use crate::runtime::store::{Checkpoint, Store};
use anyhow::{bail, Context, Result};
use kmswatch_sources::{Source, SourceConfig};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tracing::{error, info, warn};

/// Run kmswatch as a service: read the configured sources, detect, deliver findings.
///
/// Sources (S3 via SQS, S3 backfill, Kafka, files) are read continuously; every event is
/// normalized, de-duplicated by its native id, run through the rules in event time, and
/// findings are delivered to the sinks. A source batch (SQS message, Kafka offset, file
/// chunk) is acknowledged only after every finding derived from it was delivered and the
/// checkpoint holding its effect on open correlation windows was written under `state.dir`;
/// a restart, including after `kill -9`, resumes from there without losing a finding.
///
/// Serves /metrics, /healthz and /readyz on `server.listen` (/readyz is 503 while a checkpoint
/// or the dead-letter file cannot be written, e.g. on a full disk; both are retried). SIGTERM
/// or SIGINT: stop reading, finish what is in flight, checkpoint, acknowledge, let queued
/// playbooks run, exit — within `limits.shutdown_timeout_secs`; what is left stays durable
/// for the next start. The exit status is non-zero when the last checkpoint could not be
/// written (nothing after the previous one was acknowledged).
///
/// Modes (scale-out on Kafka, see ARCHITECTURE.md): `all` (default) does everything in one
/// process; `ingest` reads the sources and publishes normalized events to the `scale_out`
/// topic keyed by principal; `detect` consumes that topic in one consumer group, each instance
/// owning partitions and their engine state.
///
/// Examples:
///   kmswatch run --config /etc/kmswatch/kmswatch.yml
///   kmswatch run --config kmswatch.yml --log-format text
///   kmswatch run --config backfill.yml --exit-when-done
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// Configuration file.
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: PathBuf,

    /// Log format on stderr: json (one object per line) or text.
    #[arg(long, value_enum, default_value = "json")]
    pub log_format: LogFormat,

    /// What this instance does.
    #[arg(long, value_enum, default_value = "all")]
    pub mode: Mode,

    /// Exit once every source has ended (finite sources: files without follow, S3 backfill),
    /// closing every correlation window first, as `scan` does.
    #[arg(long)]
    pub exit_when_done: bool,
}

/// Log formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One JSON object per line.
    Json,
    /// Human-readable lines.
    Text,
}

/// Run modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// Sources, detection and sinks in one process.
    All,
    /// Sources → normalized events on the scale_out Kafka topic.
    Ingest,
    /// The scale_out topic → detection → sinks.
    Detect,
}

/// Set up `tracing` (`KMSWATCH_LOG` filters, default `info`).
pub fn init_logging(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("KMSWATCH_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().with_current_span(false).try_init(),
        // Field values are log text: escaped (crate::term); colours only on a terminal.
        LogFormat::Text => builder
            .with_ansi(is_terminal::IsTerminal::is_terminal(&std::io::stderr()))
            .fmt_fields(crate::term::TextFields)
            .try_init(),
    };
}

/// Run the verb.
pub fn run(args: Args) -> Result<ExitCode> {
    init_logging(args.log_format);
    let mut cfg = Config::load(&args.config)?;
    // The default memory budget follows the container's limit (all modes).
    cfg.limits.detect_container_limit();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("kmswatch")
        .build()
        .context("starting the async runtime")?;
    let result = rt.block_on(async move {
        match args.mode {
            Mode::All => service(cfg, args.exit_when_done).await,
            Mode::Ingest => crate::runtime::scale::ingest(cfg, args.exit_when_done).await,
            Mode::Detect => crate::runtime::scale::detect(cfg).await,
        }
    });
    rt.shutdown_timeout(Duration::from_secs(5));
    match result {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e) => {
            error!(error = %format!("{e:#}"), "kmswatch stopped on an error");
            Err(e)
        }
    }
}

/// Resolve a source's defaults that depend on the runtime (file positions under state.dir).
pub fn prepare_source(cfg: &Config, entry: &SourceEntry) -> SourceConfig {
    let mut c = entry.config.clone();
    for note in cfg.limits.clamp_source(&mut c) {
        info!(source = %entry.id, "{note}");
    }
    if let SourceConfig::File(f) = &mut c {
        if f.follow && f.state_dir.is_none() {
            f.state_dir = Some(cfg.state.dir.join("files").join(&entry.id));
        }
    }
    c
}

/// Open every source.
pub async fn open_sources(cfg: &Config) -> Result<Vec<(SourceEntry, Source)>> {
    if cfg.sources.is_empty() {
        bail!("no sources configured (add a `sources:` list to the config)");
    }
    let mut out = Vec::new();
    for e in &cfg.sources {
        let c = prepare_source(cfg, e);
        let s = Source::open(&c)
            .await
            .with_context(|| format!("opening source {}", e.id))?;
        out.push((e.clone(), s));
    }
    Ok(out)
}

/// Stop on SIGTERM or SIGINT.
pub fn spawn_signal_handler(shutdown: Shutdown) {
    tokio::spawn(async move {
        let term = async {
            #[cfg(unix)]
            {
                if let Ok(mut s) =
                    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                {
                    s.recv().await;
                } else {
                    std::future::pending::<()>().await;
                }
            }
            #[cfg(not(unix))]
            std::future::pending::<()>().await;
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => info!(signal = "SIGINT", "shutting down: finishing in-flight batches"),
            _ = term => info!(signal = "SIGTERM", "shutting down: finishing in-flight batches"),
        }
        shutdown.trigger();
    });
}

/// Start the HTTP listener when configured (`/readyz` serves `ready`).
pub async fn start_server(
    cfg: &Config,
    metrics: &Metrics,
    ready: &Readiness,
) -> Result<Option<std::net::SocketAddr>> {
    match &cfg.server {
        Some(s) => Ok(Some(server::start(s, metrics, ready).await?)),
        None => Ok(None),
    }
}

/// Finish sources after the pipeline drained: Kafka commits what was acknowledged; SQS
/// deletions are sent by a background task, given a moment to finish. Bounded by `within`.
pub async fn close_sources(sources: Vec<Source>, within: Duration) {
    let close = async {
        let mut sqs = false;
        for s in sources {
            match s {
                Source::Kafka(k) => {
                    if let Err(e) = k.shutdown().await {
                        warn!(error = %e, "kafka commit on shutdown failed; those messages will be read again");
                    }
                }
                Source::AwsS3Sqs(_) => sqs = true,
                _ => {}
            }
        }
        if sqs {
            tokio::time::sleep(Duration::from_millis(1500)).await;
        }
    };
    if tokio::time::timeout(within, close).await.is_err() {
        warn!(
            waited_ms = within.as_millis() as u64,
            "sources not closed in time; unsettled batches are delivered again after the restart"
        );
    }
}

/// Time left for one step of a stop: what remains of the shutdown bound (all of it while
/// not stopping, e.g. after `--exit-when-done`).
pub fn left(shutdown: &Shutdown, timeout: Duration) -> Duration {
    shutdown.remaining().unwrap_or(timeout)
}

async fn service(cfg: Config, exit_when_done: bool) -> Result<()> {
    let metrics = Metrics::default();
    describe_all(&metrics);
    pipeline::describe_metrics(&metrics);
    let ready = Readiness::new(&metrics);
    let listen = start_server(&cfg, &metrics, &ready).await?;
    let rules = load_rules(&cfg, &[], false)?;
    let (n_rules, n_corr) = (rules.len(), rules.correlations().count());
    let store = Arc::new(Store::open(&cfg.state.dir)?);
    let (engine, dedup, restored) = pipeline::build_detector_state(&cfg, rules, &store)?;
    let sinks = deliver::start_sinks(&cfg)?;
    export_sink_metrics(&metrics, sinks.clone());
    let sources = open_sources(&cfg).await?;
    info!(
        version = env!("CARGO_PKG_VERSION"),
        rules = n_rules,
        correlations = n_corr,
        sources = %cfg.sources.iter().map(|s| format!("{}({})", s.id, s.config.type_name())).collect::<Vec<_>>().join(", "),
        sinks = %sinks.names().join(", "),
        respond = %respond::describe(cfg.respond.as_ref()),
        state_dir = %cfg.state.dir.display(),
        restored_state = restored,
        dedup_entries = dedup.len(),
        memory_budget_bytes = cfg.limits.budget_bytes(),
        memory_budget = cfg.limits.budget_origin(),
        listen = %listen.map(|a| a.to_string()).unwrap_or_else(|| "-".into()),
        "kmswatch started"
    );
    run_pipeline(
        &cfg,
        engine,
        dedup,
        sinks,
        store,
        sources,
        metrics,
        ready,
        exit_when_done,
    )
    .await
}

/// How long shutdown lets the sinks drain their spools at most (the rest is sent by the next
/// start).
const SINK_GRACE: Duration = Duration::from_secs(10);

/// Wire and run sources → detect → deliver until stopped (or, with `exit_when_done`, until
/// every source ended).
#[allow(clippy::too_many_arguments)]
pub async fn run_pipeline(
    cfg: &Config,
    engine: kmswatch_rules::Engine,
    dedup: Dedup,
    sinks: Arc<kmswatch_sinks::SinkSet>,
    store: Arc<Store>,
    sources: Vec<(SourceEntry, Source)>,
    metrics: Metrics,
    ready: Readiness,
    exit_when_done: bool,
) -> Result<()> {
    let cap = cfg.state.channel_capacity;
    let (tx_detect, rx_detect) = mpsc::channel(cap);
    let (tx_deliver, rx_deliver) = mpsc::channel(cap);
    let timeout = cfg.limits.shutdown_timeout();
    let shutdown = Shutdown::new(timeout);
    spawn_signal_handler(shutdown.clone());
    let (respond, respond_task) = match &cfg.respond {
        Some(rc) => {
            let (hook, task) = respond::start(
                rc,
                cfg.path.as_deref(),
                sinks.clone(),
                metrics.clone(),
                respond::Feed::Store(store.clone()),
            )?;
            (Some(hook), Some(task))
        }
        None => (None, None),
    };
    let budget = MemoryBudget::new(cfg.limits.in_flight_bytes());
    let b = budget.clone();
    metrics.add_collector(move |m| {
        m.set(
            "kmswatch_memory_budget_available_bytes",
            &[],
            b.available() as f64,
        )
    });
    let deliverer = Deliverer {
        sinks: deliver::build(&sinks, &metrics),
        store: store.clone(),
        dead: DeadLetterWriter::new(
            cfg.state.dead_letter(),
            cfg.limits.dead_letter_max_bytes,
            cfg.limits.dead_letter_files,
            metrics.clone(),
        ),
        metrics: metrics.clone(),
        respond: respond.clone(),
        ready: ready.clone(),
        shutdown: shutdown.clone(),
    };
    let deliver_task = tokio::spawn(deliverer.run(rx_deliver));
    let settings = DetectSettings {
        checkpoint_interval: Duration::from_millis(cfg.state.checkpoint_interval_ms),
        idle_advance: (cfg.state.idle_advance_secs > 0)
            .then(|| Duration::from_secs(cfg.state.idle_advance_secs)),
        flush_at_end: exit_when_done,
    };
    let detector = Detector::new(engine, dedup, settings, metrics.clone(), tx_deliver);
    let detect_task = tokio::spawn(detector.run(rx_detect));
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
    let mut finished = Vec::new();
    for t in tasks {
        match t.await {
            Ok(s) => finished.push(s),
            Err(e) => error!(error = %e, "source task failed"),
        }
    }
    info!("sources stopped; draining the pipeline");
    let detect = detect_task.await.context("detect task")?;
    let deliver = deliver_task.await.context("deliver task")?;
    ready.started(false);
    close_sources(finished, left(&shutdown, timeout)).await;
    if let (Some(t), Some(hook)) = (respond_task, respond.as_ref()) {
        // Every finding is queued in the store: let the playbooks run in the time left, then
        // record which finished (the rest runs first at the next start).
        respond::finish(t, hook, left(&shutdown, timeout)).await;
        let done = hook.take_done();
        if !done.is_empty() && deliver.is_ok() {
            let cp = Checkpoint {
                respond_remove: done,
                ..Checkpoint::default()
            };
            let s = store.clone();
            match tokio::time::timeout(
                left(&shutdown, timeout).max(Duration::from_secs(1)),
                tokio::task::spawn_blocking(move || s.commit(&cp)),
            )
            .await
            {
                Ok(Ok(Ok(_))) => {}
                Ok(Ok(Err(e))) => {
                    warn!(error = %format!("{e:#}"), "finished responses not recorded; the next start skips them (the journal has them)")
                }
                _ => warn!("finished responses not recorded in time; the next start skips them (the journal has them)"),
            }
        }
    }
    sinks
        .shutdown(left(&shutdown, timeout).min(SINK_GRACE))
        .await;
    // The deliver task's error says why the last checkpoint was not written.
    deliver?;
    let engine = detect?;
    let stats = engine.stats();
    info!(
        events = stats.events,
        findings = stats.findings,
        duplicates = stats.duplicates,
        late = stats.late,
        "kmswatch stopped; state checkpointed"
    );
    Ok(())
}
