//! Durable state: one embedded redb database under `state.dir`.
//!
//! A checkpoint is one write transaction (fsynced on commit): the engine snapshot (open
//! correlation windows, suppression periods, first-seen baselines), the changes to the dedup
//! set since the last checkpoint, and named positions. Either all of it is on disk or none of
//! it is, so a `kill -9` at any moment leaves the previous checkpoint intact.
//!
//! The dedup rows are keyed by (expiry, id): ids arrive in expiry order, so a checkpoint
//! appends at the end of the B-tree and expiry cuts at its front, touching a few pages instead
//! of rewriting pages all over a table keyed by (random) id. Layout 1 (keyed by id) is
//! converted on open.

use anyhow::{Context, Result};
use redb::{Database, ReadableTable, TableDefinition};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
/// Layout 1: id -> expiry (converted to [`DEDUP`] on open).
const DEDUP_V1: TableDefinition<u128, u64> = TableDefinition::new("dedup");
/// (expiry epoch ms, id).
const DEDUP: TableDefinition<(u64, u128), ()> = TableDefinition::new("dedup_by_expiry");

/// The store's page cache, bytes.
const CACHE_BYTES: usize = 32 << 20;

/// The layout version written in `meta/version`; a different one is refused.
const VERSION: &[u8] = b"2";

/// The store.
#[derive(Debug)]
pub struct Store {
    db: Database,
    path: PathBuf,
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
    /// Released when the checkpoint is dropped (held only for that).
    #[allow(dead_code)]
    pub in_flight: Option<InFlight>,
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
        // A bounded page cache keeps memory flat (redb's default cache is large).
        let db = redb::Builder::new()
            .set_cache_size(CACHE_BYTES)
            .create(&path)
            .with_context(|| {
                format!(
                    "opening state store {} (is another kmswatch using this state.dir?)",
                    path.display()
                )
            })?;
        let store = Store { db, path };
        let tx = store.db.begin_write()?;
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
        }
        tx.commit()?;
        Ok(store)
    }

    /// Where the database lives.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Read the last checkpoint.
    pub fn restore(&self) -> Result<Restored> {
        let tx = self.db.begin_read()?;
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
    }

    /// A named value from the `meta` table.
    #[allow(dead_code)] // used by the scale-out mode
    pub fn meta(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let tx = self.db.begin_read()?;
        let meta = tx.open_table(META)?;
        Ok(meta.get(key)?.map(|v| v.value().to_vec()))
    }

    /// Write a checkpoint atomically and durably.
    pub fn commit(&self, cp: &Checkpoint) -> Result<()> {
        let tx = self.db.begin_write()?;
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
        }
        tx.commit()
            .with_context(|| format!("committing checkpoint to {}", self.path.display()))?;
        Ok(())
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
                in_flight: None,
            })
            .expect("commit");
            s.commit(&Checkpoint {
                engine: None,
                dedup_insert: vec![(3, 30)],
                dedup_remove: vec![(1, 10)],
                meta: vec![],
                in_flight: None,
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
}
