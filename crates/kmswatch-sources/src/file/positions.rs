//! Where followed files stopped: positions persisted per path, keyed by file identity.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::SourceError;

/// Where reading of one file stopped: its identity (device and inode) and the byte offset up
/// to which everything was acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    /// Device number.
    pub dev: u64,
    /// Inode number.
    pub ino: u64,
    /// Acknowledged byte offset.
    pub offset: u64,
}

/// Persists file positions. The runtime may replace the JSON file with its embedded store.
pub trait PositionStore: Send + Sync + std::fmt::Debug {
    /// The saved position of `path`, if any.
    fn load(&self, path: &str) -> Option<Position>;
    /// Save the position of `path`.
    fn save(&self, path: &str, pos: Position) -> std::io::Result<()>;
}

/// Positions in memory only (no `state_dir`).
#[derive(Debug, Default)]
pub struct MemoryPositionStore(Mutex<BTreeMap<String, Position>>);

impl PositionStore for MemoryPositionStore {
    fn load(&self, path: &str) -> Option<Position> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(path)
            .copied()
    }
    fn save(&self, path: &str, pos: Position) -> std::io::Result<()> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(path.to_owned(), pos);
        Ok(())
    }
}

/// Positions in `STATE_DIR/file-positions.json`, rewritten atomically on every change.
#[derive(Debug)]
pub struct JsonPositionStore {
    file: PathBuf,
    map: Mutex<BTreeMap<String, Position>>,
}

impl JsonPositionStore {
    /// Open (or create) the store under `state_dir`.
    pub fn open(state_dir: &Path) -> Result<Self, SourceError> {
        let io = |source| SourceError::Io {
            path: state_dir.display().to_string(),
            source,
        };
        std::fs::create_dir_all(state_dir).map_err(io)?;
        let file = state_dir.join("file-positions.json");
        let map = match std::fs::read(&file) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| SourceError::Io {
                path: file.display().to_string(),
                source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(io(e)),
        };
        Ok(Self {
            file,
            map: Mutex::new(map),
        })
    }
}

impl PositionStore for JsonPositionStore {
    fn load(&self, path: &str) -> Option<Position> {
        self.map
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(path)
            .copied()
    }
    fn save(&self, path: &str, pos: Position) -> std::io::Result<()> {
        let mut m = self.map.lock().unwrap_or_else(|e| e.into_inner());
        m.insert(path.to_owned(), pos);
        let json = serde_json::to_vec_pretty(&*m).map_err(std::io::Error::other)?;
        let tmp = self.file.with_extension("json.tmp");
        std::fs::write(&tmp, json)?;
        std::fs::rename(&tmp, &self.file)
    }
}
