//! `kmswatch validate`: check a configuration before running it.

use crate::cmd::rules::test_pack;
use crate::cmd::scan::load_rules_noting;
use crate::config::{Config, SinkConfig};
use crate::term::escape_lines;
use anyhow::{anyhow, Result};
use kmswatch_sources::SourceConfig;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

/// Check a configuration: its schema and every value, the rules it names, the rules' own
/// tests, and (with --connect) what it reaches — without changing anything.
///
/// Checks, in order: the config parses and every problem in it is listed on its own line,
/// named by its path (`sinks[2]`, `state.channel_capacity`): unknown keys, unset ${ENV}
/// variables, numbers outside their documented range, patterns and globs that do not compile,
/// each source's, sink's and the response section's own checks; warnings for a metrics
/// listener open to the network without auth and for rules left off for a missing
/// `rules.placeholders` value. Then the rules load and the engine builds with the config's
/// settings, and every rule pack directory's tests pass (`kmswatch rules test`).
///
/// With --connect, read-only: SQS GetQueueAttributes on each queue, S3 HeadBucket for
/// backfills, Kafka metadata for the topics, file source paths exist, each network sink's
/// destination (HEC health and token, Sentinel token, Kafka metadata, webhook reachable), the
/// metrics listener's token and certificate files; and for the state directory, the
/// dead-letter file, file sinks and the response journal: exists and writable, or "would be
/// created" when the nearest existing parent is writable. Nothing is created or written.
///
/// Exit status: 0 all checks passed (warnings allowed); 1 a check failed; 2 the config file
/// could not be read (missing, unreadable, not YAML).
///
/// Examples:
///   kmswatch validate /etc/kmswatch/kmswatch.yml
///   kmswatch validate --connect deploy/config/kmswatch.yml
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// Configuration file.
    #[arg(value_name = "CONFIG")]
    pub config: PathBuf,

    /// Also check, read-only, that sources, sinks and local paths are reachable and writable.
    #[arg(long)]
    pub connect: bool,

    /// Skip the rule tests.
    #[arg(long)]
    pub no_tests: bool,
}

struct Checks {
    failed: usize,
}

impl Checks {
    /// One line per check; texts may quote config values and remote answers: escaped.
    fn report(&mut self, what: &str, r: Result<String>) {
        match r {
            Ok(detail) if detail.is_empty() => println!("ok    {}", escape_lines(what)),
            Ok(detail) => println!("ok    {}: {}", escape_lines(what), escape_lines(&detail)),
            Err(e) => {
                self.failed += 1;
                println!(
                    "FAIL  {}: {}",
                    escape_lines(what),
                    escape_lines(&format!("{e:#}"))
                );
            }
        }
    }

    fn warn(&self, what: &str, message: &str) {
        println!("WARN  {}: {}", escape_lines(what), escape_lines(message));
    }
}

/// Run the verb.
pub fn run(args: Args) -> Result<ExitCode> {
    let (cfg, problems) = Config::load_checked(&args.config)?;
    let mut checks = Checks { failed: 0 };
    if problems.is_empty() {
        checks.report(
            "config",
            Ok(format!(
                "{} source(s), {} sink(s), state in {}",
                cfg.sources.len(),
                cfg.sinks.len(),
                cfg.state.dir.display()
            )),
        );
    }
    for p in &problems {
        let what = if p.path.is_empty() {
            "config".to_string()
        } else {
            p.path.clone()
        };
        checks.report(&what, Err(anyhow!("{}", p.message)));
    }
    if let Some(w) = cfg.server.as_ref().and_then(|s| s.exposure_warning()) {
        checks.warn("server.listen", &w);
    }
    if let Some(r) = &cfg.respond {
        checks.report(
            "respond",
            Ok(format!(
                "response policy valid: mode {:?}, {} playbook(s), journal {}",
                r.mode,
                r.playbooks.len(),
                r.journal_path.display()
            )),
        );
    }
    match load_rules_noting(&cfg, &[], false) {
        Ok((r, off)) => {
            for o in &off {
                checks.warn(
                    &format!("rules.placeholders.{}", o.placeholder),
                    &format!(
                        "not set: rule {} ({}) is off until it is",
                        o.rule,
                        o.file.display()
                    ),
                );
            }
            let (n, c) = (r.len(), r.correlations().count());
            // With problems in the config, the engine settings are not the ones written.
            let engine = if problems.is_empty() {
                kmswatch_rules::Engine::new(r, cfg.rules.engine.clone())
                    .map(|_| format!("{n} detection, {c} correlation"))
                    .map_err(|e| anyhow!("engine: {e}"))
            } else {
                Ok(format!("{n} detection, {c} correlation loaded"))
            };
            checks.report("rules", engine);
        }
        Err(e) => checks.report("rules", Err(e)),
    }
    if !args.no_tests {
        for dir in cfg.rules.paths.iter().filter(|p| p.is_dir()) {
            let what = format!("rule tests in {}", dir.display());
            let r = test_pack(dir, None, &[]).and_then(|rep| {
                if rep.failed == 0 {
                    Ok(format!("{} rule(s) passed", rep.passed))
                } else {
                    let names: Vec<&str> = rep
                        .rules
                        .iter()
                        .filter(|r| !r.passed)
                        .map(|r| r.slug.as_str())
                        .collect();
                    Err(anyhow!(
                        "{} failed ({}); run `kmswatch rules test {}`",
                        rep.failed,
                        names.join(", "),
                        dir.display()
                    ))
                }
            });
            checks.report(&what, r);
        }
    }
    if cfg.sinks.is_empty() && problems.is_empty() {
        // An ingest instance (`run --mode ingest`) publishes events to the scale_out topic and
        // delivers nothing itself; `run` in the other modes refuses to start without sinks.
        let r = if cfg.scale_out.is_some() {
            Ok("none: only `run --mode ingest` may run this config (it publishes to scale_out.topic)".to_string())
        } else {
            Err(anyhow!("no sinks configured: findings would go nowhere"))
        };
        checks.report("sinks", r);
    }
    if args.connect {
        if problems.is_empty() {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            rt.block_on(connect_checks(&cfg, &mut checks));
        } else {
            println!("skip  --connect checks: fix the config first");
        }
    }
    Ok(if checks.failed == 0 {
        println!("configuration OK");
        ExitCode::SUCCESS
    } else {
        println!("{} check(s) failed", checks.failed);
        ExitCode::from(1)
    })
}

/// Whether the directory `dir` can be used — it exists and this process may create files in
/// it, or it does not exist and its nearest existing ancestor is such a directory ("would be
/// created") — asked of the kernel (access(2)), so nothing is created or written.
fn dir_usable(dir: &Path) -> Result<String> {
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => {
            writable(dir).map(|_| format!("{} exists and is writable", dir.display()))
        }
        Ok(_) => Err(anyhow!("{} exists and is not a directory", dir.display())),
        Err(e) if is_missing(&e) => {
            let mut ancestor = dir;
            let existing = loop {
                match ancestor.parent() {
                    Some(p) if p.as_os_str().is_empty() => break Path::new("."),
                    Some(p) => {
                        if std::fs::symlink_metadata(p).is_ok() {
                            break p;
                        }
                        ancestor = p;
                    }
                    None => break ancestor,
                }
            };
            if !existing.is_dir() {
                return Err(anyhow!(
                    "{} does not exist and cannot be created: {} is not a directory",
                    dir.display(),
                    existing.display()
                ));
            }
            writable(existing).map_err(|e| {
                anyhow!(
                    "{} does not exist and cannot be created: {e}",
                    dir.display()
                )
            })?;
            Ok(format!(
                "{} does not exist; would be created (in {}, writable)",
                dir.display(),
                existing.display()
            ))
        }
        Err(e) => Err(anyhow!("{}: {e}", dir.display())),
    }
}

/// Whether the file `file` can be appended to, or created in its directory (see [`dir_usable`]).
fn file_usable(file: &Path) -> Result<String> {
    match std::fs::metadata(file) {
        Ok(m) if m.is_file() => {
            rustix::fs::access(file, rustix::fs::Access::WRITE_OK)
                .map_err(|e| anyhow!("{} is not writable: {e}", file.display()))?;
            Ok(format!("{} exists and is writable", file.display()))
        }
        Ok(_) => Err(anyhow!(
            "{} exists and is not a regular file",
            file.display()
        )),
        Err(e) if is_missing(&e) => {
            let dir = file
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            let d = dir_usable(dir)
                .map_err(|e| anyhow!("{} cannot be created: {e:#}", file.display()))?;
            Ok(format!("{} would be created; {d}", file.display()))
        }
        Err(e) => Err(anyhow!("{}: {e}", file.display())),
    }
}

/// The path does not exist (or a file stands where a parent directory should be).
fn is_missing(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
    )
}

/// May this process create entries in the directory `dir`?
fn writable(dir: &Path) -> Result<()> {
    use rustix::fs::Access;
    rustix::fs::access(dir, Access::WRITE_OK | Access::EXEC_OK)
        .map_err(|e| anyhow!("{} is not writable: {e}", dir.display()))
}

async fn sdk(region: Option<&str>, endpoint: Option<&str>) -> aws_config::SdkConfig {
    let mut l = aws_config::defaults(aws_config::BehaviorVersion::latest());
    if let Some(r) = region {
        l = l.region(aws_config::Region::new(r.to_owned()));
    }
    if let Some(e) = endpoint {
        l = l.endpoint_url(e);
    }
    l.load().await
}

async fn connect_checks(cfg: &Config, checks: &mut Checks) {
    checks.report("state.dir", dir_usable(&cfg.state.dir));
    checks.report(
        "state.dead_letter_path",
        file_usable(&cfg.state.dead_letter()),
    );
    if let Some(s) = &cfg.server {
        checks.report("server", crate::runtime::server::check(s));
    }
    for s in &cfg.sources {
        let what = format!("source {} ({})", s.id, s.config.type_name());
        let r: Result<String> = match &s.config {
            SourceConfig::AwsS3Sqs(c) => {
                let conf = sdk(c.region.as_deref(), c.endpoint_url.as_deref()).await;
                let sqs = aws_sdk_sqs::Client::new(&conf);
                tokio::time::timeout(
                    Duration::from_secs(15),
                    sqs.get_queue_attributes()
                        .queue_url(&c.queue_url)
                        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
                        .send(),
                )
                .await
                .map_err(|_| anyhow!("GetQueueAttributes on {} timed out", c.queue_url))
                .and_then(|r| {
                    r.map_err(|e| {
                        anyhow!(
                            "GetQueueAttributes on {}: {}",
                            c.queue_url,
                            aws_sdk_sqs::error::DisplayErrorContext(&e)
                        )
                    })
                })
                .map(|o| {
                    let n = o
                        .attributes()
                        .and_then(|a| {
                            a.get(&aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
                        })
                        .cloned()
                        .unwrap_or_else(|| "?".into());
                    format!("{} reachable, ~{n} message(s) waiting", c.queue_url)
                })
            }
            SourceConfig::AwsS3(c) => {
                let conf = sdk(c.region.as_deref(), c.endpoint_url.as_deref()).await;
                let s3 = aws_sdk_s3::Client::from_conf(
                    aws_sdk_s3::config::Builder::from(&conf)
                        .force_path_style(c.force_path_style)
                        .build(),
                );
                tokio::time::timeout(
                    Duration::from_secs(15),
                    s3.head_bucket().bucket(&c.bucket).send(),
                )
                .await
                .map_err(|_| anyhow!("HeadBucket s3://{} timed out", c.bucket))
                .and_then(|r| {
                    r.map_err(|e| {
                        anyhow!(
                            "HeadBucket s3://{}: {}",
                            c.bucket,
                            aws_sdk_s3::error::DisplayErrorContext(&e)
                        )
                    })
                })
                .map(|_| format!("s3://{} reachable", c.bucket))
            }
            SourceConfig::Kafka(c) => {
                let props = kmswatch_sources::kafka::client_properties(c);
                let topics = c.topics.clone();
                tokio::task::spawn_blocking(move || kafka_metadata(props, &topics))
                    .await
                    .map_err(|e| anyhow!("{e}"))
                    .and_then(|r| r)
            }
            SourceConfig::File(c) => {
                let missing: Vec<&String> = c
                    .paths
                    .iter()
                    .filter(|p| *p != "-")
                    .filter(|p| {
                        let base = if kmswatch_sources::file::is_glob(p) {
                            glob_base(p)
                        } else {
                            PathBuf::from(p)
                        };
                        !base.exists()
                    })
                    .collect();
                if missing.is_empty() {
                    Ok(format!("{} path(s) present", c.paths.len()))
                } else {
                    Err(anyhow!(
                        "missing: {}",
                        missing
                            .iter()
                            .map(|s| s.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ))
                }
            }
        };
        checks.report(&what, r);
    }
    sink_connect_checks(&cfg.sinks, checks).await;
    if let Some(r) = &cfg.respond {
        checks.report("respond.journal_path", file_usable(&r.journal_path));
    }
}

/// Each sink's destination. Local ones (file, stdout) are checked here without touching
/// them; network ones by `SinkSet::check_connect_configs` (HEC health, token and ack, Entra
/// token and DCE, Kafka metadata, webhook reachable), which starts no sink, task or spool, so
/// nothing is created or written.
async fn sink_connect_checks(sinks: &[SinkConfig], checks: &mut Checks) {
    let names = match kmswatch_sinks::SinkSet::validate(sinks) {
        Ok(n) => n,
        Err(e) => return checks.report("sinks", Err(anyhow!("{e}"))),
    };
    let mut remote = Vec::new();
    for (s, name) in sinks.iter().zip(&names) {
        let what = format!("sink {name} ({})", s.type_name());
        match s {
            SinkConfig::File(f) => checks.report(&what, file_usable(&f.path)),
            SinkConfig::Stdout(_) => checks.report(&what, Ok("standard output".into())),
            _ => remote.push(s.clone()),
        }
    }
    if remote.is_empty() {
        return;
    }
    match kmswatch_sinks::SinkSet::check_connect_configs(&remote).await {
        Ok(reports) => {
            for r in reports {
                let what = format!("sink {} ({})", r.sink, r.sink_type);
                checks.report(&what, r.result.map_err(|e| anyhow!("{e}")));
            }
        }
        Err(e) => checks.report("sinks", Err(anyhow!("{e}"))),
    }
}

fn glob_base(p: &str) -> PathBuf {
    let mut base = PathBuf::new();
    for c in Path::new(p).components() {
        if kmswatch_sources::file::is_glob(&c.as_os_str().to_string_lossy()) {
            break;
        }
        base.push(c);
    }
    if base.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        base
    }
}

/// Fetch Kafka metadata for `topics`; an error names what is missing.
pub fn kafka_metadata(props: Vec<(String, String)>, topics: &[String]) -> Result<String> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let mut cc = rdkafka::ClientConfig::new();
    for (k, v) in props {
        cc.set(k, v);
    }
    let consumer: BaseConsumer = cc.create().map_err(|e| anyhow!("kafka client: {e}"))?;
    let md = consumer
        .fetch_metadata(None, Duration::from_secs(10))
        .map_err(|e| anyhow!("kafka metadata: {e}"))?;
    let mut parts = Vec::new();
    for t in topics {
        match md.topics().iter().find(|mt| mt.name() == t) {
            Some(mt) if mt.error().is_none() => {
                parts.push(format!("{t}: {} partition(s)", mt.partitions().len()))
            }
            _ => return Err(anyhow!("topic {t} not found on the brokers")),
        }
    }
    Ok(format!(
        "{} broker(s); {}",
        md.brokers().len(),
        parts.join(", ")
    ))
}
