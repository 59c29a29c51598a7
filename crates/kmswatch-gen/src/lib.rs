//! # kmswatch-gen
//!
//! Test-data side of the data path: writes a realistic, seeded corpus of AWS CloudTrail,
//! Azure Key Vault / Activity Log and GCP Cloud Audit Logs in the shapes and places those
//! services deliver them (S3 objects, storage-account blobs, log-sink files), with attack
//! scenarios injected into ordinary traffic and a ground-truth label for each. Detection
//! engineers measure rules against it; benchmarks read it as a million-event input.
//!
//! ```text
//!  seed ──> World (accounts, zones, keys, workloads, people)
//!       ──> per cloud, hour by hour: benign traffic on a diurnal curve + injected scenarios
//!       ──> OUT/aws/AWSLogs/..  OUT/azure/insights-logs-auditevent/..  OUT/gcp/cloudaudit.googleapis.com/..
//!       ──> OUT/labels.jsonl  OUT/context.json  OUT/inventory.csv
//! ```
//!
//! Same options and seed, same bytes: every random draw comes from a seeded per-cloud
//! stream and files are written in a fixed order.

mod aws;
mod azure;
pub mod clock;
mod context;
mod gcp;
pub mod hostile;
mod json;
pub mod rng;
mod scenario;
pub mod world;

use serde::Serialize;
use std::path::{Path, PathBuf};

pub use scenario::{Label, CATALOGUE};

/// What to generate.
#[derive(Debug, Clone, PartialEq)]
pub struct GenOptions {
    /// Number of days (1..=366).
    pub days: u32,
    /// Seed: same seed, same bytes.
    pub seed: u64,
    /// First day, `YYYY-MM-DD` (UTC midnight starts the corpus).
    pub start: String,
    /// Benign volume factor (> 0, at most 1000). Scenarios are injected once whatever the scale.
    pub scale: f64,
    /// Make at least 80% of records key-management records (benchmark profile).
    pub kms_heavy: bool,
}

/// Default start date: a Monday.
pub const DEFAULT_START: &str = "2026-03-02";

impl Default for GenOptions {
    fn default() -> Self {
        GenOptions {
            days: 1,
            seed: 1,
            start: DEFAULT_START.into(),
            scale: 1.0,
            kms_heavy: false,
        }
    }
}

/// Counts for one cloud.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct CloudCounts {
    /// Files written.
    pub files: u64,
    /// Records written (all services).
    pub records: u64,
    /// Records of the key-management service itself (KMS, Key Vault, Cloud KMS).
    pub kms_records: u64,
    /// Bytes written (compressed size for gzip objects).
    pub bytes: u64,
}

impl CloudCounts {
    fn add(&mut self, o: &CloudCounts) {
        self.files += o.files;
        self.records += o.records;
        self.kms_records += o.kms_records;
        self.bytes += o.bytes;
    }
}

/// What [`generate`] wrote.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct GenSummary {
    /// Output directory.
    pub out_dir: PathBuf,
    /// Corpus window start (RFC 3339).
    pub start: String,
    /// Corpus window end, exclusive (RFC 3339).
    pub end: String,
    /// AWS CloudTrail.
    pub aws: CloudCounts,
    /// Azure Key Vault and Activity Log.
    pub azure: CloudCounts,
    /// GCP Cloud Audit Logs.
    pub gcp: CloudCounts,
    /// All clouds, including the label, context and inventory files.
    pub total: CloudCounts,
    /// Scenarios injected (distinct scenario names).
    pub scenarios: usize,
    /// Label lines (one per scenario and rule it should trigger).
    pub labels: usize,
}

impl GenSummary {
    /// Share of key-management records among all records.
    pub fn kms_share(&self) -> f64 {
        if self.total.records == 0 {
            0.0
        } else {
            self.total.kms_records as f64 / self.total.records as f64
        }
    }
}

/// Why generation failed.
#[derive(Debug, thiserror::Error)]
pub enum GenError {
    /// An option is out of range; nothing was written.
    #[error("invalid option {option}: {reason}")]
    InvalidOption {
        /// Option name (`--days`).
        option: &'static str,
        /// What is wrong and what is allowed.
        reason: String,
    },
    /// Writing a file failed (disk full, permissions); retrying after fixing the cause helps.
    #[error("cannot write {}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A generation thread panicked (a bug; please report it).
    #[error("generator thread for {0} failed")]
    Thread(&'static str),
}

/// Progress callback: `(hours done, hours total)`, summed over the three clouds.
pub type Progress<'a> = &'a (dyn Fn(u64, u64) + Sync);

/// Generate a corpus into `out_dir` (created if missing; existing files are overwritten).
pub fn generate(opts: &GenOptions, out_dir: &Path) -> Result<GenSummary, GenError> {
    generate_with_progress(opts, out_dir, &|_, _| {})
}

/// [`generate`], reporting progress hour by hour.
pub fn generate_with_progress(
    opts: &GenOptions,
    out_dir: &Path,
    progress: Progress<'_>,
) -> Result<GenSummary, GenError> {
    let start_day = validate(opts)?;
    let w = world::World::new(opts.seed, start_day, opts.days, opts.scale, opts.kms_heavy);
    let inject = scenario::build(&w, opts.seed);
    let hours = u64::from(opts.days) * 24;
    let total_hours = hours * 3;
    let done = std::sync::atomic::AtomicU64::new(0);
    let tick = || {
        let d = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        progress(d, total_hours);
    };
    let scenario::Injected {
        aws: aws_inj,
        azure_kv,
        azure_act,
        gcp: gcp_inj,
        labels,
    } = inject;
    let (aws, azure, gcp) = std::thread::scope(|s| {
        let a = s.spawn(|| aws::run(&w, opts.seed, aws_inj, out_dir, &tick));
        let z = s.spawn(|| azure::run(&w, opts.seed, azure_kv, azure_act, out_dir, &tick));
        let g = s.spawn(|| gcp::run(&w, opts.seed, gcp_inj, out_dir, &tick));
        (
            a.join().map_err(|_| GenError::Thread("aws")),
            z.join().map_err(|_| GenError::Thread("azure")),
            g.join().map_err(|_| GenError::Thread("gcp")),
        )
    });
    let (aws, azure, gcp) = (aws??, azure??, gcp??);
    let mut total = CloudCounts::default();
    for c in [&aws, &azure, &gcp] {
        total.add(c);
    }
    let extra = context::write(&w, opts, &labels, out_dir)?;
    total.files += extra.files;
    total.bytes += extra.bytes;
    let mut names: Vec<&str> = labels.iter().map(|l| l.scenario.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    Ok(GenSummary {
        out_dir: out_dir.to_path_buf(),
        start: clock::millis_z(w.start_ms),
        end: clock::millis_z(w.end_ms),
        aws,
        azure,
        gcp,
        total,
        scenarios: names.len(),
        labels: labels.len(),
    })
}

fn validate(opts: &GenOptions) -> Result<i64, GenError> {
    if !(1..=366).contains(&opts.days) {
        return Err(GenError::InvalidOption {
            option: "--days",
            reason: format!("{} is out of range 1..=366", opts.days),
        });
    }
    if !(opts.scale.is_finite() && opts.scale > 0.0 && opts.scale <= 1000.0) {
        return Err(GenError::InvalidOption {
            option: "--scale",
            reason: format!("{} must be a number above 0 and at most 1000", opts.scale),
        });
    }
    clock::parse_date(&opts.start).ok_or_else(|| GenError::InvalidOption {
        option: "--start",
        reason: format!("{:?} is not a date YYYY-MM-DD (1970..9999)", opts.start),
    })
}

/// One generated record: its event time, the file group it belongs to (account/region,
/// vault, log), whether it is a key-management record, and its JSON text.
#[derive(Debug, Clone)]
pub(crate) struct Rec {
    pub t: i64,
    pub bucket: u32,
    pub kms: bool,
    pub json: String,
}

/// Write a file, creating its directory.
pub(crate) fn write_file(path: &Path, bytes: &[u8]) -> Result<u64, GenError> {
    let io = |source| GenError::Io {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    std::fs::write(path, bytes).map_err(io)?;
    Ok(bytes.len() as u64)
}

/// Gzip bytes (fast level: CloudTrail objects are small and many).
pub(crate) fn gzip(bytes: &[u8], path: &Path) -> Result<Vec<u8>, GenError> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(
        Vec::with_capacity(bytes.len() / 6),
        flate2::Compression::fast(),
    );
    e.write_all(bytes)
        .and_then(|_| e.finish())
        .map_err(|source| GenError::Io {
            path: path.to_path_buf(),
            source,
        })
}

/// Take the injected records of one hour out of a time-sorted list.
pub(crate) fn take_hour(inj: &[Rec], pos: &mut usize, end: i64, out: &mut Vec<Rec>) {
    while let Some(r) = inj.get(*pos) {
        if r.t >= end {
            break;
        }
        out.push(r.clone());
        *pos += 1;
    }
}
