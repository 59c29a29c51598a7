//! The delivery seam: where findings leave kmswatch.
//!
//! A [`Deliver`] takes findings in order and says when they are *durably accepted*: `send`
//! may buffer, `flush` returns only once everything sent is safe (fsynced, acknowledged by
//! the SIEM). The runtime calls `flush` before every checkpoint and acknowledges source
//! batches only after it, so nothing is acknowledged upstream that a sink could still lose.
//! Finding ids are deterministic: after a crash a sink may be sent the same finding again
//! (same id, same content) and can drop it. The sinks crate (`kmswatch-sinks`) plugs in here.

use crate::config::SinkConfig;
use anyhow::{Context, Result};
use kmswatch_model::Finding;
use std::future::Future;
use std::io::Write;
use std::path::PathBuf;
use std::pin::Pin;

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

/// JSON lines appended to a file; `flush` fsyncs.
#[derive(Debug)]
pub struct FileSink {
    name: String,
    path: PathBuf,
    file: std::io::BufWriter<std::fs::File>,
}

impl FileSink {
    /// Open `path` for appending (parents created).
    pub fn open(path: PathBuf) -> Result<FileSink> {
        if let Some(dir) = path.parent() {
            if !dir.as_os_str().is_empty() {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("creating {}", dir.display()))?;
            }
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .with_context(|| format!("opening findings file {}", path.display()))?;
        Ok(FileSink {
            name: format!("file:{}", path.display()),
            path,
            file: std::io::BufWriter::with_capacity(1 << 16, file),
        })
    }
}

impl Deliver for FileSink {
    fn name(&self) -> &str {
        &self.name
    }
    fn send<'a>(&'a mut self, findings: &'a [Finding]) -> BoxFut<'a, Result<()>> {
        Box::pin(async move {
            for f in findings {
                serde_json::to_writer(&mut self.file, f)?;
                self.file.write_all(b"\n")?;
            }
            Ok(())
        })
    }
    fn flush(&mut self) -> BoxFut<'_, Result<()>> {
        Box::pin(async move {
            self.file
                .flush()
                .with_context(|| format!("writing {}", self.path.display()))?;
            let f = self.file.get_ref();
            tokio::task::block_in_place(|| f.sync_data())
                .with_context(|| format!("fsync {}", self.path.display()))?;
            Ok(())
        })
    }
}

/// JSON lines on standard output.
#[derive(Debug, Default)]
pub struct StdoutSink;

impl Deliver for StdoutSink {
    fn name(&self) -> &str {
        "stdout"
    }
    fn send<'a>(&'a mut self, findings: &'a [Finding]) -> BoxFut<'a, Result<()>> {
        Box::pin(async move {
            let mut out = std::io::stdout().lock();
            for f in findings {
                serde_json::to_writer(&mut out, f)?;
                out.write_all(b"\n")?;
            }
            Ok(())
        })
    }
    fn flush(&mut self) -> BoxFut<'_, Result<()>> {
        Box::pin(async move {
            std::io::stdout().flush()?;
            Ok(())
        })
    }
}

/// Build the configured sinks (the registry of sink types).
pub fn build(configs: &[SinkConfig]) -> Result<Vec<Box<dyn Deliver>>> {
    configs
        .iter()
        .map(|c| -> Result<Box<dyn Deliver>> {
            Ok(match c {
                SinkConfig::File { path } => Box::new(FileSink::open(path.clone())?),
                SinkConfig::Stdout => Box::new(StdoutSink),
            })
        })
        .collect()
}
