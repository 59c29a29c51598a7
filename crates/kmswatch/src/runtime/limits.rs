//! The `limits:` section: the memory budget, what the runtime derives from it, and how long a
//! graceful stop may take.
//!
//! ```yaml
//! limits:
//!   memory_budget_bytes: 402653184   # default: 3/4 of the container's memory limit, else 384 MiB
//!   max_record_bytes: 8388608        # optional: overrides normalize.max_record_bytes
//!   max_decompressed_bytes: 67108864 # optional: overrides normalize.max_decompressed_bytes
//!   dead_letter_max_bytes: 268435456 # the dead-letter files on disk, at most (256 MiB)
//!   dead_letter_files: 4             # ... in this many files (rotated by size)
//!   shutdown_timeout_secs: 45        # SIGTERM to exit, at most
//! ```
//!
//! **The default budget** is three quarters of the memory limit of the container (cgroup v2
//! `memory.max`, or v1 `memory.limit_in_bytes`) when there is one — so each tier of the Helm
//! chart gets a budget that fits its own limit without configuration — and 384 MiB otherwise.
//!
//! **How the budget is spent.** Half of `memory_budget_bytes` bounds the *batches in flight*
//! between the sources and the deliver task: a byte-counting semaphore ([`MemoryBudget`]) is
//! acquired for a batch's size before it is queued for normalization, topped up to the size of
//! what normalization made of it (events and dead-letter bytes), and released only once the
//! batch is settled (acknowledged) after its checkpoint. A single batch larger than that half is
//! dead-lettered unread (reason `over_memory_budget`) and settled like a bad object. One batch
//! may decompress to at most a quarter of the budget unless `max_decompressed_bytes` says
//! otherwise. The other half is left to what the budget does not count: the engine's windows
//! and baselines (bounded by `rules:` limits), the dedup set (`state.dedup_max_entries`), the
//! state store's page cache (32 MiB), the sinks' in-flight deliveries, the response queue's
//! in-memory part (1,024 findings) and the allocator's own overhead.
//!
//! `state.channel_capacity` counts batches and this budget counts bytes: both apply.

use serde::Deserialize;

/// Default [`LimitsConfig::memory_budget_bytes`]: 384 MiB — three quarters of the Helm chart's
/// 512 MiB container limit (`deploy/helm/kmswatch/values.yaml`), the rest being headroom.
pub const DEFAULT_MEMORY_BUDGET_BYTES: u64 = 384 << 20;
/// The smallest budget accepted: 1 MiB.
pub const MIN_MEMORY_BUDGET_BYTES: u64 = 1 << 20;
/// Default [`LimitsConfig::dead_letter_max_bytes`]: 256 MiB.
pub const DEFAULT_DEAD_LETTER_MAX_BYTES: u64 = 256 << 20;
/// Default [`LimitsConfig::dead_letter_files`].
pub const DEFAULT_DEAD_LETTER_FILES: u32 = 4;
/// Default [`LimitsConfig::shutdown_timeout_secs`]: 45 s, inside the Helm chart's 60 s
/// `terminationGracePeriodSeconds`.
pub const DEFAULT_SHUTDOWN_TIMEOUT_SECS: u64 = 45;

fn default_dead_letter_max_bytes() -> u64 {
    DEFAULT_DEAD_LETTER_MAX_BYTES
}
fn default_dead_letter_files() -> u32 {
    DEFAULT_DEAD_LETTER_FILES
}
fn default_shutdown_timeout_secs() -> u64 {
    DEFAULT_SHUTDOWN_TIMEOUT_SECS
}

/// The `limits:` section.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// The memory the process should stay within, in bytes (at least 1 MiB). Default: three
    /// quarters of the container's memory limit (cgroup) when there is one, else 384 MiB.
    /// Half of it bounds the bytes of batches in flight (see the module docs).
    #[serde(default)]
    pub memory_budget_bytes: Option<u64>,
    /// The container's memory limit, read at start ([`LimitsConfig::detect_container_limit`]).
    #[serde(skip)]
    pub container_limit_bytes: Option<u64>,
    /// A single record larger than this is rejected and dead-lettered (passed to the
    /// normalizer; default: `normalize.max_record_bytes`).
    #[serde(default)]
    pub max_record_bytes: Option<usize>,
    /// One batch (gzip stream, zip entry) decompresses to at most this many bytes (passed to
    /// the normalizer; default: the smaller of `normalize.max_decompressed_bytes` and a quarter
    /// of `memory_budget_bytes`).
    #[serde(default)]
    pub max_decompressed_bytes: Option<u64>,
    /// The dead-letter files together take at most this many bytes on disk (default 256 MiB);
    /// older entries are rotated away (retention: the newest entries that fit).
    #[serde(default = "default_dead_letter_max_bytes")]
    pub dead_letter_max_bytes: u64,
    /// How many files the dead letters are kept in: the current one and the rotated
    /// `NAME.1` .. `NAME.N-1` (default 4, at least 2).
    #[serde(default = "default_dead_letter_files")]
    pub dead_letter_files: u32,
    /// From SIGTERM to exit, at most, in seconds (default 45): the last checkpoint's retries,
    /// the response queue's drain and the sinks' drain all end by then. What is left stays
    /// durable for the next start (queued responses in the state store, findings in the
    /// sinks' spools, batches unacknowledged at their source).
    #[serde(default = "default_shutdown_timeout_secs")]
    pub shutdown_timeout_secs: u64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            memory_budget_bytes: None,
            container_limit_bytes: None,
            max_record_bytes: None,
            max_decompressed_bytes: None,
            dead_letter_max_bytes: default_dead_letter_max_bytes(),
            dead_letter_files: default_dead_letter_files(),
            shutdown_timeout_secs: default_shutdown_timeout_secs(),
        }
    }
}

impl LimitsConfig {
    /// Check the ranges (pure; run by config loading and `kmswatch validate`).
    pub fn validate(&self) -> Result<(), String> {
        if let Some(b) = self
            .memory_budget_bytes
            .filter(|&b| b < MIN_MEMORY_BUDGET_BYTES)
        {
            return Err(format!(
                "limits.memory_budget_bytes: {b} is below the minimum of {MIN_MEMORY_BUDGET_BYTES} (1 MiB)"
            ));
        }
        if self.max_record_bytes == Some(0) {
            return Err("limits.max_record_bytes: must be at least 1".into());
        }
        if self.max_decompressed_bytes == Some(0) {
            return Err("limits.max_decompressed_bytes: must be at least 1".into());
        }
        if let Some(n) = self
            .max_decompressed_bytes
            .filter(|&n| n > self.in_flight_bytes())
        {
            return Err(format!(
                "limits.max_decompressed_bytes: {n} is more than the bytes allowed in flight ({}, half of limits.memory_budget_bytes): one object could exceed the memory budget",
                self.in_flight_bytes()
            ));
        }
        if !(2..=100).contains(&self.dead_letter_files) {
            return Err(format!(
                "limits.dead_letter_files: {} is outside 2..=100",
                self.dead_letter_files
            ));
        }
        if self.dead_letter_max_bytes < 64 << 10 {
            return Err(format!(
                "limits.dead_letter_max_bytes: {} is below the minimum of 65536",
                self.dead_letter_max_bytes
            ));
        }
        if !(1..=3600).contains(&self.shutdown_timeout_secs) {
            return Err(format!(
                "limits.shutdown_timeout_secs: {} is outside 1..=3600",
                self.shutdown_timeout_secs
            ));
        }
        Ok(())
    }

    /// The budget in force: configured, else three quarters of the container's memory limit,
    /// else [`DEFAULT_MEMORY_BUDGET_BYTES`].
    pub fn budget_bytes(&self) -> u64 {
        self.memory_budget_bytes.unwrap_or_else(|| {
            self.container_limit_bytes
                .map_or(DEFAULT_MEMORY_BUDGET_BYTES, |l| {
                    (l / 4 * 3).max(MIN_MEMORY_BUDGET_BYTES)
                })
        })
    }

    /// Where [`LimitsConfig::budget_bytes`] comes from, for the startup log.
    pub fn budget_origin(&self) -> &'static str {
        match (self.memory_budget_bytes, self.container_limit_bytes) {
            (Some(_), _) => "configured",
            (None, Some(_)) => "3/4 of the container memory limit",
            (None, None) => "default",
        }
    }

    /// Read the container's memory limit (cgroup v2 `memory.max`, v1
    /// `memory.limit_in_bytes`); unlimited or unreadable leaves it unset.
    pub fn detect_container_limit(&mut self) {
        self.container_limit_bytes = container_memory_limit(std::path::Path::new("/sys/fs/cgroup"));
    }

    /// Bytes of batches in flight between the sources and the deliver task, at most.
    pub fn in_flight_bytes(&self) -> u64 {
        self.budget_bytes() / 2
    }

    /// The normalizer's options with this section applied: `max_record_bytes` and
    /// `max_decompressed_bytes` overridden when set; otherwise the decompression cap is at
    /// most a quarter of the budget.
    pub fn normalize_options(
        &self,
        base: &kmswatch_normalize::Options,
    ) -> kmswatch_normalize::Options {
        let mut o = base.clone();
        if let Some(n) = self.max_record_bytes {
            o.max_record_bytes = n;
        }
        o.max_decompressed_bytes = match self.max_decompressed_bytes {
            Some(n) => n,
            None => o.max_decompressed_bytes.min(self.budget_bytes() / 4),
        };
        o
    }

    /// The most one source may hold while it reads one unit (an S3 object, a file's line
    /// or whole document), outside the in-flight budget: an eighth of the budget.
    pub fn per_read_bytes(&self) -> u64 {
        self.budget_bytes() / 8
    }

    /// Lower a source's size limits (`max_object_bytes`, the file source's
    /// `max_record_bytes` and `max_batch_bytes`) to [`LimitsConfig::per_read_bytes`]: what a
    /// source reads is held before the budget sees it. Returns a note per value lowered.
    pub fn clamp_source(&self, c: &mut kmswatch_sources::SourceConfig) -> Vec<String> {
        use kmswatch_sources::SourceConfig as S;
        let cap = self.per_read_bytes();
        let mut notes = Vec::new();
        let mut clamp = |name: &str, v: &mut u64| {
            if *v > cap {
                notes.push(format!(
                    "{name} {v} lowered to {cap} (an eighth of limits.memory_budget_bytes)"
                ));
                *v = cap;
            }
        };
        match c {
            S::AwsS3Sqs(s) => clamp("max_object_bytes", &mut s.max_object_bytes),
            S::AwsS3(s) => clamp("max_object_bytes", &mut s.max_object_bytes),
            S::File(f) => {
                clamp("max_object_bytes", &mut f.max_object_bytes);
                clamp("max_record_bytes", &mut f.max_record_bytes);
                let mut batch = f.max_batch_bytes as u64;
                clamp("max_batch_bytes", &mut batch);
                f.max_batch_bytes = usize::try_from(batch).unwrap_or(f.max_batch_bytes);
            }
            S::Kafka(_) => {}
        }
        notes
    }

    /// How long a graceful stop may take.
    pub fn shutdown_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.shutdown_timeout_secs)
    }
}

/// The memory limit of the cgroup under `root` (v2 `memory.max`; v1
/// `memory/memory.limit_in_bytes`), `None` when there is none ("max", or v1's huge
/// "unlimited" value) or it cannot be read.
pub fn container_memory_limit(root: &std::path::Path) -> Option<u64> {
    let read = |p: std::path::PathBuf| std::fs::read_to_string(p).ok();
    let v = read(root.join("memory.max"))
        .or_else(|| read(root.join("memory/memory.limit_in_bytes")))?;
    let n = v.trim().parse::<u64>().ok()?;
    // cgroup v1 writes "no limit" as the largest page-aligned i64.
    (n < 1 << 60).then_some(n)
}

/// Bytes are counted in units of this many (the semaphore's permits are `u32`-sized).
const UNIT: u64 = 1024;

/// A byte-counting semaphore over the batches in flight (see the module docs).
#[derive(Debug, Clone)]
pub struct MemoryBudget {
    sem: std::sync::Arc<tokio::sync::Semaphore>,
    units: u32,
}

/// Bytes of the budget held by one batch; released when dropped (after the batch is settled).
#[derive(Debug)]
pub struct BudgetPermit {
    permit: tokio::sync::OwnedSemaphorePermit,
    sem: std::sync::Arc<tokio::sync::Semaphore>,
    cap: u32,
}

impl MemoryBudget {
    /// A budget of `bytes` in flight.
    pub fn new(bytes: u64) -> MemoryBudget {
        let units = u32::try_from(bytes.div_ceil(UNIT).max(1)).unwrap_or(u32::MAX >> 4);
        MemoryBudget {
            sem: std::sync::Arc::new(tokio::sync::Semaphore::new(units as usize)),
            units,
        }
    }

    /// The bound, in bytes.
    pub fn bytes(&self) -> u64 {
        u64::from(self.units) * UNIT
    }

    /// Whether a batch of `bytes` can ever be admitted.
    pub fn admits(&self, bytes: u64) -> bool {
        bytes <= self.bytes()
    }

    /// Hold `bytes` (at most the whole budget), waiting while the budget is spent.
    pub async fn acquire(&self, bytes: u64) -> BudgetPermit {
        let n = units(bytes).min(self.units);
        // The semaphore is never closed.
        let permit = loop {
            if let Ok(p) = self.sem.clone().acquire_many_owned(n).await {
                break p;
            }
        };
        BudgetPermit {
            permit,
            sem: self.sem.clone(),
            cap: self.units,
        }
    }

    /// Bytes not held by any batch (tests, metrics).
    pub fn available(&self) -> u64 {
        self.sem.available_permits() as u64 * UNIT
    }
}

fn units(bytes: u64) -> u32 {
    u32::try_from(bytes.div_ceil(UNIT).max(1)).unwrap_or(u32::MAX)
}

impl BudgetPermit {
    /// Hold at least `bytes` (capped at the whole budget), waiting for the difference.
    pub async fn grow_to(&mut self, bytes: u64) {
        let want = units(bytes).min(self.cap);
        let have = self.permit.num_permits() as u32;
        if want > have {
            if let Ok(more) = self.sem.clone().acquire_many_owned(want - have).await {
                self.permit.merge(more);
            }
        }
    }

    /// Hold `bytes` (capped at the whole budget): wait for more, or give back the excess.
    /// A batch reserves room to decode before it is normalized and holds what it keeps after.
    pub async fn resize_to(&mut self, bytes: u64) {
        let want = units(bytes).min(self.cap);
        let have = self.permit.num_permits() as u32;
        if want < have {
            // Dropping the split-off part returns it to the semaphore.
            drop(self.permit.split((have - want) as usize));
        } else {
            self.grow_to(bytes).await;
        }
    }

    /// Bytes held.
    #[cfg(test)]
    pub fn bytes(&self) -> u64 {
        self.permit.num_permits() as u64 * UNIT
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_budget_is_three_quarters_of_the_container_limit() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(container_memory_limit(dir.path()), None, "no cgroup files");
        std::fs::write(dir.path().join("memory.max"), "max\n").expect("write");
        assert_eq!(container_memory_limit(dir.path()), None, "v2 unlimited");
        std::fs::write(dir.path().join("memory.max"), "402653184\n").expect("write");
        assert_eq!(container_memory_limit(dir.path()), Some(384 << 20));
        let v1 = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(v1.path().join("memory")).expect("mkdir");
        std::fs::write(
            v1.path().join("memory/memory.limit_in_bytes"),
            "9223372036854771712\n",
        )
        .expect("write");
        assert_eq!(container_memory_limit(v1.path()), None, "v1 unlimited");
        std::fs::write(v1.path().join("memory/memory.limit_in_bytes"), "536870912").expect("write");
        assert_eq!(container_memory_limit(v1.path()), Some(512 << 20));

        // The chart's ingest pods (384 MiB) get 288 MiB, the others (512 MiB) 384 MiB; a
        // configured budget wins.
        let mut l = LimitsConfig {
            container_limit_bytes: Some(384 << 20),
            ..LimitsConfig::default()
        };
        assert_eq!(
            (l.budget_bytes(), l.budget_origin()),
            (288 << 20, "3/4 of the container memory limit")
        );
        l.container_limit_bytes = Some(512 << 20);
        assert_eq!(l.budget_bytes(), 384 << 20);
        l.memory_budget_bytes = Some(100 << 20);
        assert_eq!(
            (l.budget_bytes(), l.budget_origin()),
            (100 << 20, "configured")
        );
    }

    #[test]
    fn defaults_fit_the_helm_limit_and_derive_the_bounds() {
        let l = LimitsConfig::default();
        assert!(l.validate().is_ok());
        assert_eq!(l.budget_bytes(), DEFAULT_MEMORY_BUDGET_BYTES);
        assert!(l.budget_bytes() <= 512 << 20);
        assert_eq!(l.in_flight_bytes(), 192 << 20);
        let base = kmswatch_normalize::Options::default();
        let o = l.normalize_options(&base);
        // The normalizer's own default (64 MiB) is below a quarter of the budget (96 MiB).
        assert_eq!(
            o.max_decompressed_bytes,
            kmswatch_normalize::options::DEFAULT_MAX_DECOMPRESSED_BYTES.min(96 << 20)
        );
        assert_eq!(o.max_record_bytes, base.max_record_bytes);
        let l = LimitsConfig {
            max_record_bytes: Some(1000),
            max_decompressed_bytes: Some(150 << 20),
            ..LimitsConfig::default()
        };
        assert!(l.validate().is_ok());
        let o = l.normalize_options(&base);
        assert_eq!(
            (o.max_record_bytes, o.max_decompressed_bytes),
            (1000, 150 << 20)
        );
        // One object may not decompress past the bytes allowed in flight.
        let too_big = LimitsConfig {
            max_decompressed_bytes: Some(1 << 40),
            ..LimitsConfig::default()
        };
        assert!(too_big
            .validate()
            .is_err_and(|e| e.contains("limits.max_decompressed_bytes")));
        for bad in [
            LimitsConfig {
                memory_budget_bytes: Some(1000),
                ..LimitsConfig::default()
            },
            LimitsConfig {
                dead_letter_files: 1,
                ..LimitsConfig::default()
            },
            LimitsConfig {
                shutdown_timeout_secs: 0,
                ..LimitsConfig::default()
            },
            LimitsConfig {
                max_record_bytes: Some(0),
                ..LimitsConfig::default()
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
    }

    #[tokio::test]
    async fn the_budget_waits_while_spent_and_frees_on_drop() {
        let b = MemoryBudget::new(10 * 1024);
        assert!(b.admits(10 * 1024) && !b.admits(10 * 1024 + 1));
        let mut p1 = b.acquire(4000).await;
        assert_eq!(p1.bytes(), 4096);
        p1.grow_to(8 * 1024).await;
        assert_eq!(b.available(), 2 * 1024);
        // The room reserved to decode is given back once the batch holds less.
        p1.resize_to(3 * 1024).await;
        assert_eq!((p1.bytes(), b.available()), (3 * 1024, 7 * 1024));
        p1.resize_to(8 * 1024).await;
        assert_eq!(b.available(), 2 * 1024);
        // A second batch of 4 KiB waits until the first is settled.
        let b2 = b.clone();
        let waiter = tokio::spawn(async move { b2.acquire(4 * 1024).await });
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(!waiter.is_finished());
        drop(p1);
        let p2 = waiter.await.expect("acquired");
        assert_eq!(b.available(), 6 * 1024);
        // Asking for more than the whole budget holds the whole budget.
        drop(p2);
        let all = b.acquire(1 << 30).await;
        assert_eq!(all.bytes(), 10 * 1024);
    }
}
