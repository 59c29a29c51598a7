//! `kmswatch validate`: check a configuration before running it.

use crate::cmd::rules::test_pack;
use crate::cmd::scan::load_rules;
use crate::config::Config;
use anyhow::{anyhow, Context, Result};
use kmswatch_sources::SourceConfig;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

/// Check a configuration: its schema, the rules it names, the rules' own tests, and (with
/// --connect) that every source and sink is reachable.
///
/// Checks, in order: the config parses (unknown keys are errors, ${ENV} variables are set,
/// every source and sink validates); the rules load and the engine builds with the config's
/// settings; every rule pack directory's tests pass (`kmswatch rules test`). With --connect:
/// SQS GetQueueAttributes on each queue, S3 HeadBucket for backfills, Kafka metadata for the
/// topics, file paths exist, state directory writable, each sink's destination (HEC health
/// and token, Sentinel token, Kafka metadata, file writable, webhook reachable), and the
/// response journal's directory writable.
///
/// Exit status: 0 all checks passed; 1 a check failed; 2 the config could not be read.
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

    /// Also check that sources and sinks are reachable.
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
    fn report(&mut self, what: &str, r: Result<String>) {
        match r {
            Ok(detail) => println!(
                "ok    {what}{}",
                if detail.is_empty() {
                    String::new()
                } else {
                    format!(": {detail}")
                }
            ),
            Err(e) => {
                self.failed += 1;
                println!("FAIL  {what}: {e:#}");
            }
        }
    }
}

/// Run the verb.
pub fn run(args: Args) -> Result<ExitCode> {
    let cfg = Config::load(&args.config)?;
    let mut checks = Checks { failed: 0 };
    checks.report(
        "config",
        Ok(format!(
            "{} source(s), {} sink(s), state in {}",
            cfg.sources.len(),
            cfg.sinks.len(),
            cfg.state.dir.display()
        )),
    );
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
    let rules = load_rules(&cfg, &[], false);
    match rules {
        Ok(r) => {
            let (n, c) = (r.len(), r.correlations().count());
            checks.report(
                "rules",
                kmswatch_rules::Engine::new(r, cfg.rules.engine.clone())
                    .map(|_| format!("{n} detection, {c} correlation"))
                    .map_err(|e| anyhow!("engine: {e}")),
            );
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
    if cfg.sinks.is_empty() {
        checks.report(
            "sinks",
            Err(anyhow!("no sinks configured: findings would go nowhere")),
        );
    }
    if args.connect {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?;
        rt.block_on(connect_checks(&cfg, &mut checks));
    }
    Ok(if checks.failed == 0 {
        println!("configuration OK");
        ExitCode::SUCCESS
    } else {
        println!("{} check(s) failed", checks.failed);
        ExitCode::from(1)
    })
}

fn writable_dir(dir: &Path) -> Result<String> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let probe = dir.join(".kmswatch-write-test");
    std::fs::write(&probe, b"").with_context(|| format!("{} is not writable", dir.display()))?;
    let _ = std::fs::remove_file(&probe);
    Ok(format!("{} writable", dir.display()))
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
    checks.report("state.dir", writable_dir(&cfg.state.dir));
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
    match sink_connect_checks(&cfg.sinks).await {
        Ok(reports) => {
            for r in reports {
                let what = format!("sink {} ({})", r.sink, r.sink_type);
                checks.report(&what, r.result.map_err(|e| anyhow!("{e}")));
            }
        }
        Err(e) => checks.report("sinks", Err(e)),
    }
    if let Some(r) = &cfg.respond {
        checks.report(
            "respond journal",
            writable_dir(
                r.journal_path
                    .parent()
                    .filter(|p| !p.as_os_str().is_empty())
                    .unwrap_or(Path::new(".")),
            ),
        );
    }
}

/// `SinkSet::check_connect` on the configured sinks: HEC health and token, Entra token and
/// DCE, Kafka metadata, file writable, webhook reachable. The sinks are started with a
/// throw-away spool directory so that a running service's spool is never touched.
async fn sink_connect_checks(
    sinks: &[crate::config::SinkConfig],
) -> Result<Vec<kmswatch_sinks::ConnectReport>> {
    let spool = std::env::temp_dir().join(format!(
        "kmswatch-validate-spool-{}-{}",
        std::process::id(),
        crate::runtime::pipeline::now_ms()
    ));
    let set = kmswatch_sinks::SinkSet::from_config(sinks, &spool).map_err(|e| anyhow!("{e}"))?;
    let reports = set.check_connect().await;
    set.shutdown(Duration::from_millis(200)).await;
    let _ = std::fs::remove_dir_all(&spool);
    Ok(reports)
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
