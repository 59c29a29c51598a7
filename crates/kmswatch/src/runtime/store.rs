//! Durable state: one embedded redb database under `state.dir`.
//!
//! A checkpoint is one write transaction (fsynced on commit): the engine snapshot (open
//! correlation windows, suppression periods, first-seen baselines), the changes to the dedup
//! set since the last checkpoint, and named positions. Either all of it is on disk or none of
//! it is, so a `kill -9` at any moment leaves the previous checkpoint intact.
//!
//! With a `respond:` section the checkpoint also holds the durable response queue: findings
//! that a playbook has work for, keyed by finding uid (`respond_uids`) and queued in order
//! (`respond_queue`, by a sequence number that only grows), written in the transaction that
//! acknowledges their batches and removed once their playbooks ran (see `runtime::respond`).
//!
//! **Failures.** A commit that fails (ENOSPC, EIO) leaves redb refusing every later operation
//! until the database is opened again, so the store drops its handle and reopens the file on
//! the next call (redb repairs it from the last committed transaction). The caller retries the
//! same checkpoint; nothing of the failed one is on disk.
//!
//! The dedup rows are keyed by (expiry, id): ids arrive in expiry order, so a checkpoint
//! appends at the end of the B-tree and expiry cuts at its front, touching a few pages instead
//! of rewriting pages all over a table keyed by (random) id. Layout 1 (keyed by id) is
//! converted on open.

use anyhow::{Context, Result};
use redb::{Database, ReadableTable, ReadableTableMetadata, TableDefinition};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
/// Layout 1: id -> expiry (converted to [`DEDUP`] on open).
const DEDUP_V1: TableDefinition<u128, u64> = TableDefinition::new("dedup");
/// (expiry epoch ms, id).
const DEDUP: TableDefinition<(u64, u128), ()> = TableDefinition::new("dedup_by_expiry");
/// The durable response queue: sequence number -> finding (JSON).
const RESPOND_QUEUE: TableDefinition<u64, &[u8]> = TableDefinition::new("respond_queue");
/// Finding uid -> its sequence number in [`RESPOND_QUEUE`].
const RESPOND_UIDS: TableDefinition<&str, u64> = TableDefinition::new("respond_uids");
/// `meta` key of the next response-queue sequence number.
const RESPOND_SEQ: &str = "respond_seq";

/// The store's page cache, bytes.
const CACHE_BYTES: usize = 32 << 20;

/// The layout version written in `meta/version`; a different one is refused.
const VERSION: &[u8] = b"2";

/// Opens the database (again, after a failure).
type Opener = Box<dyn Fn() -> Result<Database, redb::DatabaseError> + Send + Sync>;

/// The store.
pub struct Store {
    /// `None` after a failed commit: reopened by the next call.
    db: RwLock<Option<Database>>,
    path: PathBuf,
    opener: Opener,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

/// Counts a checkpoint as in flight from its creation until it is dropped (after its commit),
/// so that the detect task does not queue snapshots faster than the store writes them.
#[derive(Debug)]
pub struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    /// Count one more checkpoint in flight on `counter`.
    pub fn new(counter: &Arc<AtomicUsize>) -> InFlight {
        counter.fetch_add(1, Ordering::SeqCst);
        InFlight(counter.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// What a checkpoint writes.
#[derive(Debug, Default)]
pub struct Checkpoint {
    /// The engine snapshot (JSON), `None` to leave the stored one.
    pub engine: Option<Vec<u8>>,
    /// Dedup ids added since the last checkpoint, with their expiry (epoch ms).
    pub dedup_insert: Vec<(u128, u64)>,
    /// Dedup ids forgotten since the last checkpoint, with the expiry they were stored with.
    pub dedup_remove: Vec<(u128, u64)>,
    /// Other named values (`meta` table).
    pub meta: Vec<(String, Vec<u8>)>,
    /// Findings to queue for the playbooks: (finding uid, finding JSON). A uid already queued
    /// is not queued twice.
    pub respond_insert: Vec<(String, Vec<u8>)>,
    /// Finding uids whose playbooks ran: removed from the queue.
    pub respond_remove: Vec<String>,
    /// Released when the checkpoint is dropped (held only for that).
    #[allow(dead_code)]
    pub in_flight: Option<InFlight>,
}

/// What a commit changed that callers count.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Committed {
    /// Findings newly queued for the playbooks.
    pub respond_inserted: usize,
    /// Findings removed from the queue.
    pub respond_removed: usize,
}

/// What was restored.
#[derive(Debug, Default)]
pub struct Restored {
    /// The engine snapshot, when one was written.
    pub engine: Option<Vec<u8>>,
    /// The dedup set.
    pub dedup: Vec<(u128, u64)>,
}

impl Store {
    /// Open (or create) `dir/kmswatch.redb`.
    pub fn open(dir: &Path) -> Result<Store> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating state directory {}", dir.display()))?;
        let path = dir.join("kmswatch.redb");
        let p = path.clone();
        // A bounded page cache keeps memory flat (redb's default cache is large).
        Store::open_with(
            path,
            Box::new(move || redb::Builder::new().set_cache_size(CACHE_BYTES).create(&p)),
        )
    }

    /// Open the database `opener` opens (at `path`, for messages) and check its layout.
    fn open_with(path: PathBuf, opener: Opener) -> Result<Store> {
        let db = opener().with_context(|| {
            format!(
                "opening state store {} (is another kmswatch using this state.dir?)",
                path.display()
            )
        })?;
        let store = Store {
            db: RwLock::new(None),
            path,
            opener,
        };
        let tx = db.begin_write()?;
        {
            let mut meta = tx.open_table(META)?;
            let existing = meta.get("version")?.map(|v| v.value().to_vec());
            match existing {
                Some(v) if v == b"1" => {
                    // Layout 1 -> 2: the dedup rows re-keyed by expiry.
                    let mut rows = Vec::new();
                    {
                        let old = tx.open_table(DEDUP_V1)?;
                        for row in old.iter()? {
                            let (k, v) = row?;
                            rows.push((v.value(), k.value()));
                        }
                    }
                    tx.delete_table(DEDUP_V1)?;
                    let mut new = tx.open_table(DEDUP)?;
                    for r in rows {
                        new.insert(r, ())?;
                    }
                    meta.insert("version", VERSION)?;
                }
                Some(v) if v != VERSION => anyhow::bail!(
                    "state store {} has layout version {} (this kmswatch writes {}); move it away to start afresh",
                    store.path.display(),
                    String::from_utf8_lossy(&v),
                    String::from_utf8_lossy(VERSION)
                ),
                Some(_) => {}
                None => {
                    meta.insert("version", VERSION)?;
                }
            }
            tx.open_table(DEDUP)?;
            tx.open_table(RESPOND_QUEUE)?;
            tx.open_table(RESPOND_UIDS)?;
        }
        tx.commit()?;
        *store.db.write().unwrap_or_else(|e| e.into_inner()) = Some(db);
        Ok(store)
    }

    /// Run `f` on the database, reopening it first when a failure closed it.
    fn with_db<R>(&self, f: impl FnOnce(&Database) -> Result<R>) -> Result<R> {
        {
            let g = self.db.read().unwrap_or_else(|e| e.into_inner());
            if let Some(db) = g.as_ref() {
                return f(db);
            }
        }
        let mut g = self.db.write().unwrap_or_else(|e| e.into_inner());
        if g.is_none() {
            let db = (self.opener)().with_context(|| {
                format!(
                    "reopening state store {} after a failure",
                    self.path.display()
                )
            })?;
            tracing::info!(store = %self.path.display(), "state store reopened after a failure");
            *g = Some(db);
        }
        match g.as_ref() {
            Some(db) => f(db),
            None => anyhow::bail!("state store {} is not open", self.path.display()),
        }
    }

    /// After a failed write: close the database so that the next call reopens it (redb
    /// refuses every operation after an I/O error until then).
    pub(crate) fn close_after_failure(&self) {
        let db = self.db.write().unwrap_or_else(|e| e.into_inner()).take();
        drop(db);
    }

    /// Where the database lives.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Read the last checkpoint.
    pub fn restore(&self) -> Result<Restored> {
        self.with_db(|db| {
            let tx = db.begin_read()?;
            let meta = tx.open_table(META)?;
            let engine = meta.get("engine")?.map(|v| v.value().to_vec());
            let dedup_t = tx.open_table(DEDUP)?;
            let mut dedup = Vec::new();
            for row in dedup_t.iter()? {
                let (k, _) = row?;
                let (exp, id) = k.value();
                dedup.push((id, exp));
            }
            Ok(Restored { engine, dedup })
        })
    }

    /// A named value from the `meta` table.
    #[allow(dead_code)] // used by the scale-out mode
    pub fn meta(&self, key: &str) -> Result<Option<Vec<u8>>> {
        self.with_db(|db| {
            let tx = db.begin_read()?;
            let meta = tx.open_table(META)?;
            Ok(meta.get(key)?.map(|v| v.value().to_vec()))
        })
    }

    /// Queued findings after sequence number `after`, oldest first, at most `limit`.
    pub fn respond_load(&self, after: u64, limit: usize) -> Result<Vec<(u64, Vec<u8>)>> {
        self.with_db(|db| {
            let tx = db.begin_read()?;
            let q = tx.open_table(RESPOND_QUEUE)?;
            let mut out = Vec::new();
            for row in q.range(after.saturating_add(1)..)?.take(limit) {
                let (k, v) = row?;
                out.push((k.value(), v.value().to_vec()));
            }
            Ok(out)
        })
    }

    /// How many findings are queued.
    pub fn respond_len(&self) -> Result<u64> {
        self.with_db(|db| {
            let tx = db.begin_read()?;
            Ok(tx.open_table(RESPOND_QUEUE)?.len()?)
        })
    }

    /// Write a checkpoint atomically and durably. After a failure nothing of it is on disk:
    /// the database is reopened by the next call and the same checkpoint can be retried.
    pub fn commit(&self, cp: &Checkpoint) -> Result<Committed> {
        let r = self
            .with_db(|db| Store::write(db, cp))
            .with_context(|| format!("committing checkpoint to {}", self.path.display()));
        if r.is_err() {
            self.close_after_failure();
        }
        r
    }

    fn write(db: &Database, cp: &Checkpoint) -> Result<Committed> {
        let mut done = Committed::default();
        let tx = db.begin_write()?;
        {
            let mut meta = tx.open_table(META)?;
            if let Some(e) = &cp.engine {
                meta.insert("engine", e.as_slice())?;
            }
            for (k, v) in &cp.meta {
                meta.insert(k.as_str(), v.as_slice())?;
            }
            let mut dedup = tx.open_table(DEDUP)?;
            for (k, exp) in &cp.dedup_insert {
                dedup.insert((*exp, *k), ())?;
            }
            for (k, exp) in &cp.dedup_remove {
                dedup.remove((*exp, *k))?;
            }
            if !cp.respond_insert.is_empty() || !cp.respond_remove.is_empty() {
                let mut queue = tx.open_table(RESPOND_QUEUE)?;
                let mut uids = tx.open_table(RESPOND_UIDS)?;
                for uid in &cp.respond_remove {
                    let seq = uids.remove(uid.as_str())?.map(|s| s.value());
                    if let Some(seq) = seq {
                        queue.remove(seq)?;
                        done.respond_removed += 1;
                    }
                }
                let mut next = meta
                    .get(RESPOND_SEQ)?
                    .and_then(|v| <[u8; 8]>::try_from(v.value()).ok())
                    .map_or(1, u64::from_le_bytes);
                for (uid, finding) in &cp.respond_insert {
                    if uids.get(uid.as_str())?.is_some() {
                        continue;
                    }
                    uids.insert(uid.as_str(), next)?;
                    queue.insert(next, finding.as_slice())?;
                    next += 1;
                    done.respond_inserted += 1;
                }
                meta.insert(RESPOND_SEQ, &next.to_le_bytes()[..])?;
            }
        }
        tx.commit()?;
        Ok(done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoint_round_trip_and_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let s = Store::open(dir.path()).expect("open");
            assert!(s.restore().expect("restore").engine.is_none());
            s.commit(&Checkpoint {
                engine: Some(b"{\"a\":1}".to_vec()),
                dedup_insert: vec![(1, 10), (2, 20)],
                dedup_remove: vec![],
                meta: vec![("k".into(), b"v".to_vec())],
                ..Checkpoint::default()
            })
            .expect("commit");
            s.commit(&Checkpoint {
                engine: None,
                dedup_insert: vec![(3, 30)],
                dedup_remove: vec![(1, 10)],
                meta: vec![],
                ..Checkpoint::default()
            })
            .expect("commit");
        }
        let s = Store::open(dir.path()).expect("reopen");
        let r = s.restore().expect("restore");
        assert_eq!(r.engine.as_deref(), Some(&b"{\"a\":1}"[..]));
        assert_eq!(r.dedup, vec![(2, 20), (3, 30)]);
        assert_eq!(s.meta("k").expect("meta").as_deref(), Some(&b"v"[..]));
    }

    #[test]
    fn layout_1_dedup_rows_are_converted() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let db = Database::create(dir.path().join("kmswatch.redb")).expect("create");
            let tx = db.begin_write().expect("tx");
            {
                let mut meta = tx.open_table(META).expect("meta");
                meta.insert("version", &b"1"[..]).expect("version");
                meta.insert("engine", &b"{}"[..]).expect("engine");
                let mut d = tx.open_table(DEDUP_V1).expect("dedup");
                d.insert(7u128, 70u64).expect("row");
                d.insert(5u128, 90u64).expect("row");
            }
            tx.commit().expect("commit");
        }
        let s = Store::open(dir.path()).expect("open converts");
        let r = s.restore().expect("restore");
        assert_eq!(r.dedup, vec![(7, 70), (5, 90)]);
        assert_eq!(r.engine.as_deref(), Some(&b"{}"[..]));
        // Rows keep working under the new layout: remove by (id, expiry).
        s.commit(&Checkpoint {
            dedup_remove: vec![(7, 70)],
            ..Checkpoint::default()
        })
        .expect("commit");
        assert_eq!(s.restore().expect("restore").dedup, vec![(5, 90)]);
        drop(s);
        let s = Store::open(dir.path()).expect("reopen at layout 2");
        assert_eq!(s.meta("version").expect("meta").as_deref(), Some(VERSION));
    }

    #[test]
    fn the_response_queue_keeps_order_and_uids_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = Store::open(dir.path()).expect("open");
        let ins = |uids: &[&str]| Checkpoint {
            respond_insert: uids
                .iter()
                .map(|u| (u.to_string(), format!("{{\"uid\":\"{u}\"}}").into_bytes()))
                .collect(),
            ..Checkpoint::default()
        };
        let c = s.commit(&ins(&["b", "a", "c"])).expect("commit");
        assert_eq!(c.respond_inserted, 3);
        // A uid already queued is not queued again.
        assert_eq!(
            s.commit(&ins(&["a", "d"]))
                .expect("commit")
                .respond_inserted,
            1
        );
        let all = s.respond_load(0, 10).expect("load");
        let order: Vec<u64> = all.iter().map(|(q, _)| *q).collect();
        assert_eq!(order, vec![1, 2, 3, 4]);
        assert_eq!(all[0].1, br#"{"uid":"b"}"#);
        assert_eq!(s.respond_load(2, 1).expect("load")[0].1, br#"{"uid":"c"}"#);
        let c = s
            .commit(&Checkpoint {
                respond_remove: vec!["b".into(), "a".into(), "c".into(), "d".into(), "x".into()],
                ..Checkpoint::default()
            })
            .expect("commit");
        assert_eq!(c.respond_removed, 4);
        assert_eq!(s.respond_len().expect("len"), 0);
        // Sequence numbers keep growing across an empty queue and a reopen.
        drop(s);
        let s = Store::open(dir.path()).expect("reopen");
        s.commit(&ins(&["e"])).expect("commit");
        assert_eq!(s.respond_load(4, 10).expect("load")[0].0, 5);
    }

    /// A file backend whose writes fail with ENOSPC while `full` is set.
    #[derive(Debug)]
    struct FullDisk {
        file: redb::backends::FileBackend,
        full: Arc<std::sync::atomic::AtomicBool>,
    }

    impl FullDisk {
        fn check(&self) -> std::io::Result<()> {
            if self.full.load(Ordering::SeqCst) {
                Err(std::io::Error::from_raw_os_error(28))
            } else {
                Ok(())
            }
        }
    }

    impl redb::StorageBackend for FullDisk {
        fn len(&self) -> std::io::Result<u64> {
            self.file.len()
        }
        fn read(&self, offset: u64, len: usize) -> std::io::Result<Vec<u8>> {
            self.file.read(offset, len)
        }
        fn set_len(&self, len: u64) -> std::io::Result<()> {
            self.check()?;
            self.file.set_len(len)
        }
        fn sync_data(&self, eventual: bool) -> std::io::Result<()> {
            self.check()?;
            self.file.sync_data(eventual)
        }
        fn write(&self, offset: u64, data: &[u8]) -> std::io::Result<()> {
            self.check()?;
            self.file.write(offset, data)
        }
    }

    #[test]
    fn a_failed_commit_is_retried_after_a_reopen_and_loses_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("kmswatch.redb");
        let full = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (p, f) = (path.clone(), full.clone());
        let s = Store::open_with(
            path.clone(),
            Box::new(move || {
                let file = std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create(true)
                    .truncate(false)
                    .open(&p)
                    .map_err(redb::StorageError::from)?;
                let backend = FullDisk {
                    file: redb::backends::FileBackend::new(file)?,
                    full: f.clone(),
                };
                redb::Builder::new().create_with_backend(backend)
            }),
        )
        .expect("open");
        let cp = |n: u128| Checkpoint {
            engine: Some(format!("{{\"n\":{n}}}").into_bytes()),
            dedup_insert: vec![(n, 100)],
            ..Checkpoint::default()
        };
        s.commit(&cp(1)).expect("commit");
        full.store(true, Ordering::SeqCst);
        let e = s.commit(&cp(2)).expect_err("disk full");
        assert!(format!("{e:#}").contains("committing checkpoint"), "{e:#}");
        // Still full: the reopen or the commit fails again, without a panic.
        assert!(s.commit(&cp(2)).is_err());
        full.store(false, Ordering::SeqCst);
        s.commit(&cp(2))
            .expect("the same checkpoint, retried once space returns");
        s.commit(&cp(3)).expect("later checkpoints too");
        let r = s.restore().expect("restore");
        assert_eq!(r.engine.as_deref(), Some(&b"{\"n\":3}"[..]));
        assert_eq!(r.dedup, vec![(1, 100), (2, 100), (3, 100)]);
    }
}
