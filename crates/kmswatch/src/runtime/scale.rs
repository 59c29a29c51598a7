//! Scale-out on Kafka: `run --mode ingest` and `run --mode detect`.

use crate::config::Config;
use anyhow::{bail, Result};

/// Sources → normalized events on the scale_out topic, keyed by principal.
pub async fn ingest(cfg: Config, _exit_when_done: bool) -> Result<()> {
    let Some(_so) = &cfg.scale_out else {
        bail!("--mode ingest needs a `scale_out:` section (brokers, topic)");
    };
    bail!("--mode ingest is not implemented yet")
}

/// The scale_out topic → detection → sinks, one consumer group.
pub async fn detect(cfg: Config) -> Result<()> {
    let Some(_so) = &cfg.scale_out else {
        bail!("--mode detect needs a `scale_out:` section (brokers, topic, group_id)");
    };
    bail!("--mode detect is not implemented yet")
}
