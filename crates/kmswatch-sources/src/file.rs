//! `file`: files, directories (recursive), globs and stdin (`-`).
//!
//! Without `follow`, every matching file is read whole, one batch per file, and the source
//! ends. With `follow`, files are tailed: appended complete lines are handed out in chunks
//! (origin `path:offset`), rotation (a new file under the same path) and truncation are
//! detected, new files matching the globs are picked up, and the position up to which every
//! chunk was acknowledged is persisted through a [`PositionStore`], so a restart resumes there.
//! Compressed files (`.gz`, `.zip`) are always read whole, once.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use tokio::io::AsyncReadExt;
use tracing::{debug, info, warn};

use crate::{AckHandle, Batch, Bytes, Contiguous, FileConfig, Settle, SourceError, StartAt};

/// True when `p` contains glob syntax.
pub fn is_glob(p: &str) -> bool {
    p.contains(['*', '?', '[', '{'])
}

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

type FileId = (u64, u64);

fn file_id(meta: &std::fs::Metadata) -> FileId {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        (meta.dev(), meta.ino())
    }
    #[cfg(not(unix))]
    {
        let _ = meta;
        (0, 0)
    }
}

fn is_compressed(p: &Path) -> bool {
    matches!(
        p.extension().and_then(|e| e.to_str()),
        Some("gz" | "zip" | "gzip")
    )
}

/// Acknowledgement state shared with the handles.
#[derive(Debug, Default)]
struct AckState {
    /// Per file identity: its path and the acknowledged prefix.
    tracks: HashMap<FileId, (String, Contiguous)>,
    /// The identity currently under each path.
    active: HashMap<String, FileId>,
}

fn lock(m: &Mutex<AckState>) -> MutexGuard<'_, AckState> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[derive(Debug)]
struct Followed {
    file: std::fs::File,
    id: FileId,
    /// Next byte to read.
    offset: u64,
    whole: bool,
    done: bool,
}

/// The `file` source.
#[derive(Debug)]
pub struct FileSource {
    cfg: FileConfig,
    store: Arc<dyn PositionStore>,
    acks: Arc<Mutex<AckState>>,
    /// Non-follow mode: files still to read.
    queue: VecDeque<PathBuf>,
    stdin_done: bool,
    followed: BTreeMap<PathBuf, Followed>,
    ready: VecDeque<Batch>,
    started: bool,
    stdin_offset: u64,
}

impl FileSource {
    /// Build the source; `follow` mode persists positions under `state_dir` when set.
    pub fn new(cfg: FileConfig) -> Result<Self, SourceError> {
        crate::SourceConfig::File(cfg.clone()).validate()?;
        let store: Arc<dyn PositionStore> = match (&cfg.state_dir, cfg.follow) {
            (Some(dir), true) => Arc::new(JsonPositionStore::open(dir)?),
            _ => Arc::new(MemoryPositionStore::default()),
        };
        Ok(Self::with_store(cfg, store))
    }

    /// Build the source with a caller-provided position store.
    pub fn with_store(cfg: FileConfig, store: Arc<dyn PositionStore>) -> Self {
        Self {
            cfg,
            store,
            acks: Arc::new(Mutex::new(AckState::default())),
            queue: VecDeque::new(),
            stdin_done: false,
            followed: BTreeMap::new(),
            ready: VecDeque::new(),
            started: false,
            stdin_offset: 0,
        }
    }

    fn format(&self) -> Option<String> {
        self.cfg
            .format
            .clone()
            .filter(|f| f != "auto" && !f.is_empty())
    }

    /// Every file the configured paths name right now, sorted, without duplicates.
    pub fn expand(&self) -> Result<Vec<PathBuf>, SourceError> {
        let mut out = BTreeSet::new();
        for p in &self.cfg.paths {
            if p == "-" {
                continue;
            }
            if is_glob(p) {
                let glob = globset::Glob::new(p)
                    .map_err(|e| SourceError::Io {
                        path: p.clone(),
                        source: std::io::Error::new(std::io::ErrorKind::InvalidInput, e),
                    })?
                    .compile_matcher();
                let base: PathBuf = Path::new(p)
                    .components()
                    .take_while(|c| !is_glob(&c.as_os_str().to_string_lossy()))
                    .collect();
                let base = if base.as_os_str().is_empty() {
                    PathBuf::from(".")
                } else {
                    base
                };
                let strip_dot = !p.starts_with("./");
                for e in walkdir::WalkDir::new(&base).follow_links(true) {
                    let Ok(e) = e else { continue };
                    if !e.file_type().is_file() {
                        continue;
                    }
                    let path = e.path();
                    let rel = if strip_dot {
                        path.strip_prefix(".").unwrap_or(path)
                    } else {
                        path
                    };
                    if glob.is_match(rel) {
                        out.insert(rel.to_path_buf());
                    }
                }
            } else {
                let path = PathBuf::from(p);
                let meta = std::fs::metadata(&path).map_err(|source| SourceError::Io {
                    path: p.clone(),
                    source,
                })?;
                if meta.is_dir() {
                    for e in walkdir::WalkDir::new(&path).follow_links(true) {
                        let Ok(e) = e else { continue };
                        if e.file_type().is_file() {
                            out.insert(e.into_path());
                        }
                    }
                } else {
                    out.insert(path);
                }
            }
        }
        Ok(out.into_iter().collect())
    }

    /// The next batch. Without `follow`: `Ok(None)` after the last file. With `follow`: waits
    /// for data forever (stdin: until it closes).
    pub async fn next_batch(&mut self) -> Result<Option<Batch>, SourceError> {
        let stdin = self.cfg.paths.iter().any(|p| p == "-");
        if !self.started {
            self.started = true;
            if !self.cfg.follow {
                self.queue = self.expand()?.into();
            }
        }
        if !self.cfg.follow {
            if stdin && !self.stdin_done {
                self.stdin_done = true;
                let mut buf = Vec::new();
                tokio::io::stdin()
                    .read_to_end(&mut buf)
                    .await
                    .map_err(|source| SourceError::Io {
                        path: "-".into(),
                        source,
                    })?;
                return Ok(Some(self.plain_batch("-".into(), buf)));
            }
            let Some(path) = self.queue.pop_front() else {
                return Ok(None);
            };
            let bytes = tokio::fs::read(&path)
                .await
                .map_err(|source| SourceError::Io {
                    path: path.display().to_string(),
                    source,
                })?;
            info!(path = %path.display(), bytes = bytes.len(), "file read");
            return Ok(Some(self.plain_batch(path.display().to_string(), bytes)));
        }
        if stdin {
            return self.next_stdin_chunk().await;
        }
        loop {
            if let Some(b) = self.ready.pop_front() {
                return Ok(Some(b));
            }
            self.poll_files()?;
            if self.ready.is_empty() {
                tokio::time::sleep(Duration::from_millis(self.cfg.poll_interval_ms)).await;
            }
        }
    }

    fn plain_batch(&self, origin: String, bytes: Vec<u8>) -> Batch {
        Batch {
            origin,
            bytes: Bytes::from(bytes),
            format: self.format(),
            received_at: SystemTime::now(),
            ack: AckHandle::noop(),
            dead: Vec::new(),
        }
    }

    async fn next_stdin_chunk(&mut self) -> Result<Option<Batch>, SourceError> {
        use tokio::io::AsyncBufReadExt;
        if self.stdin_done {
            return Ok(None);
        }
        let mut reader = tokio::io::BufReader::new(tokio::io::stdin());
        let mut buf = Vec::new();
        while buf.len() < self.cfg.max_batch_bytes {
            let n = reader
                .read_until(b'\n', &mut buf)
                .await
                .map_err(|source| SourceError::Io {
                    path: "-".into(),
                    source,
                })?;
            if n == 0 {
                self.stdin_done = true;
                break;
            }
            if reader.buffer().is_empty() {
                break;
            }
        }
        if buf.is_empty() {
            return Ok(None);
        }
        let origin = format!("-:{}", self.stdin_offset);
        self.stdin_offset += buf.len() as u64;
        Ok(Some(self.plain_batch(origin, buf)))
    }

    /// Discover files, detect rotation and truncation, and queue appended complete lines.
    fn poll_files(&mut self) -> Result<(), SourceError> {
        let paths = self.expand().unwrap_or_else(|e| {
            warn!(error = %e, "listing followed paths failed");
            Vec::new()
        });
        for path in paths {
            let key = path.display().to_string();
            let Ok(meta) = std::fs::metadata(&path) else {
                continue;
            };
            let id = file_id(&meta);
            let len = meta.len();
            let rotated = self.followed.get(&path).is_some_and(|f| f.id != id);
            if rotated {
                // Finish the old file first: whatever was written before the rename.
                if let Some(mut old) = self.followed.remove(&path) {
                    self.read_chunks(&path, &mut old, true);
                }
                info!(path = %key, "file rotated");
            }
            if !self.followed.contains_key(&path) {
                let file = match std::fs::File::open(&path) {
                    Ok(f) => f,
                    Err(e) => {
                        warn!(path = %key, error = %e, "cannot open followed file");
                        continue;
                    }
                };
                let saved = self.store.load(&key).filter(|p| (p.dev, p.ino) == id);
                let offset = match saved {
                    Some(p) if p.offset <= len => p.offset,
                    Some(_) => 0,
                    None if rotated => 0,
                    None => match self.cfg.start_at {
                        StartAt::Beginning => 0,
                        StartAt::End => len,
                    },
                };
                debug!(path = %key, offset, "following file");
                let whole = is_compressed(&path);
                let done = whole && saved.is_some_and(|p| p.offset >= len);
                let mut st = lock(&self.acks);
                st.tracks
                    .insert(id, (key.clone(), Contiguous::starting_at(offset as i64)));
                st.active.insert(key.clone(), id);
                drop(st);
                self.followed.insert(
                    path.clone(),
                    Followed {
                        file,
                        id,
                        offset,
                        whole,
                        done,
                    },
                );
            }
            let Some(mut f) = self.followed.remove(&path) else {
                continue;
            };
            if len < f.offset {
                info!(path = %key, "file truncated; reading from the start");
                f.offset = 0;
                f.done = false;
                lock(&self.acks)
                    .tracks
                    .insert(id, (key.clone(), Contiguous::starting_at(0)));
            }
            self.read_chunks(&path, &mut f, false);
            self.followed.insert(path, f);
        }
        Ok(())
    }

    /// Queue complete lines after `f.offset` (everything, for compressed files or a final drain).
    fn read_chunks(&mut self, path: &Path, f: &mut Followed, drain: bool) {
        if f.done {
            return;
        }
        let key = path.display().to_string();
        if f.whole {
            let mut buf = Vec::new();
            if f.file.seek(SeekFrom::Start(0)).is_err() || f.file.read_to_end(&mut buf).is_err() {
                warn!(path = %key, "cannot read compressed file");
                return;
            }
            // Only once the file stopped growing between two polls is it read.
            if (buf.len() as u64) != f.offset {
                f.offset = buf.len() as u64;
                return;
            }
            f.done = true;
            let end = buf.len() as i64;
            self.push_chunk(&key, f.id, 0, end, buf);
            return;
        }
        loop {
            if f.file.seek(SeekFrom::Start(f.offset)).is_err() {
                return;
            }
            let mut buf = Vec::new();
            let limit = self.cfg.max_batch_bytes as u64;
            if let Err(e) = (&mut f.file).take(limit).read_to_end(&mut buf) {
                warn!(path = %key, error = %e, "read failed");
                return;
            }
            if buf.is_empty() {
                return;
            }
            if memchr_last_newline(&buf).is_none() && buf.len() as u64 == limit {
                // A line longer than a batch: hand it out whole once it is complete.
                let mut rest = Vec::new();
                loop {
                    rest.clear();
                    if (&mut f.file).take(limit).read_to_end(&mut rest).is_err() || rest.is_empty()
                    {
                        break;
                    }
                    buf.extend_from_slice(&rest);
                    if rest.contains(&b'\n') {
                        break;
                    }
                }
            }
            let cut = match memchr_last_newline(&buf) {
                Some(i) => i + 1,
                None if drain => buf.len(),
                None => return,
            };
            buf.truncate(cut);
            let start = f.offset;
            f.offset += cut as u64;
            self.push_chunk(&key, f.id, start as i64, f.offset as i64, buf);
        }
    }

    fn push_chunk(&mut self, key: &str, id: FileId, start: i64, end: i64, bytes: Vec<u8>) {
        if let Some((_, t)) = lock(&self.acks).tracks.get_mut(&id) {
            t.handed_out(start, end);
        }
        let acks = self.acks.clone();
        let store = self.store.clone();
        let path = key.to_owned();
        let ack = AckHandle::new(move |how| {
            if !matches!(how, Settle::Ack | Settle::Reject) {
                // The chunk stays unacknowledged: its position is not persisted past it and a
                // restart reads it again.
                warn!(path = %path, offset = start, "file chunk not acknowledged");
                return;
            }
            let mut st = lock(&acks);
            let Some((_, t)) = st.tracks.get_mut(&id) else {
                return;
            };
            let Some(point) = t.acked(start) else {
                return;
            };
            if st.active.get(&path) == Some(&id) {
                let pos = Position {
                    dev: id.0,
                    ino: id.1,
                    offset: point.max(0) as u64,
                };
                if let Err(e) = store.save(&path, pos) {
                    warn!(path = %path, error = %e, "saving file position failed");
                }
            }
        });
        self.ready.push_back(Batch {
            origin: format!("{key}:{start}"),
            bytes: Bytes::from(bytes),
            format: self.format(),
            received_at: SystemTime::now(),
            ack,
            dead: Vec::new(),
        });
    }
}

fn memchr_last_newline(b: &[u8]) -> Option<usize> {
    b.iter().rposition(|&c| c == b'\n')
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn cfg(paths: Vec<String>, follow: bool, state: Option<PathBuf>) -> FileConfig {
        FileConfig {
            paths,
            follow,
            state_dir: state,
            start_at: StartAt::Beginning,
            poll_interval_ms: 10,
            max_batch_bytes: 4096,
            format: None,
        }
    }

    #[tokio::test]
    async fn reads_dirs_and_globs_once() {
        let d = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(d.path().join("a/b")).expect("mkdir");
        std::fs::write(d.path().join("a/b/x.json"), b"{}").expect("write");
        std::fs::write(d.path().join("a/y.json.gz"), b"gz").expect("write");
        std::fs::write(d.path().join("a/z.txt"), b"no").expect("write");
        let glob = format!("{}/**/*.json*", d.path().display());
        let mut s = FileSource::new(cfg(vec![glob], false, None)).expect("source");
        let mut origins = Vec::new();
        while let Some(b) = s.next_batch().await.expect("batch") {
            origins.push(b.origin);
        }
        assert_eq!(origins.len(), 2, "{origins:?}");
        assert!(origins.iter().all(|o| !o.ends_with(".txt")));
        let mut s =
            FileSource::new(cfg(vec![d.path().display().to_string()], false, None)).expect("src");
        let mut n = 0;
        while s.next_batch().await.expect("batch").is_some() {
            n += 1;
        }
        assert_eq!(n, 3);
    }

    async fn next(s: &mut FileSource) -> Batch {
        tokio::time::timeout(Duration::from_secs(5), s.next_batch())
            .await
            .expect("timed out")
            .expect("error")
            .expect("ended")
    }

    #[tokio::test]
    async fn follow_appends_rotation_and_restart() {
        let d = tempfile::tempdir().expect("tempdir");
        let state = d.path().join("state");
        let log = d.path().join("app.jsonl");
        let paths = vec![log.display().to_string()];
        std::fs::write(&log, b"{\"n\":1}\n{\"n\":2}\n{\"n\":").expect("write");
        let mut s = FileSource::new(cfg(paths.clone(), true, Some(state.clone()))).expect("src");
        let b = next(&mut s).await;
        assert_eq!(&b.bytes[..], b"{\"n\":1}\n{\"n\":2}\n");
        assert!(b.origin.ends_with("app.jsonl:0"), "{}", b.origin);
        b.ack.ack();
        // Complete the partial line and add one more.
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&log)
            .expect("open");
        f.write_all(b"3}\n{\"n\":4}\n").expect("append");
        drop(f);
        let b = next(&mut s).await;
        assert_eq!(&b.bytes[..], b"{\"n\":3}\n{\"n\":4}\n");
        drop(b); // not acknowledged: a restart reads it again
        drop(s);

        let mut s = FileSource::new(cfg(paths.clone(), true, Some(state.clone()))).expect("src");
        let b = next(&mut s).await;
        assert_eq!(&b.bytes[..], b"{\"n\":3}\n{\"n\":4}\n");
        b.ack.ack();
        // Rotate: rename, write a last line to the old file, create a new one.
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&log)
            .expect("open");
        f.write_all(b"{\"n\":5}\n").expect("append");
        drop(f);
        std::fs::rename(&log, d.path().join("app.jsonl.1")).expect("rename");
        std::fs::write(&log, b"{\"n\":6}\n").expect("write");
        let b = next(&mut s).await;
        assert_eq!(&b.bytes[..], b"{\"n\":5}\n");
        b.ack.ack();
        let b = next(&mut s).await;
        assert_eq!(&b.bytes[..], b"{\"n\":6}\n");
        assert!(b.origin.ends_with("app.jsonl:0"));
        b.ack.ack();
        drop(s);

        // Restart after everything was acknowledged: nothing old again, only the new line.
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&log)
            .expect("open");
        f.write_all(b"{\"n\":7}\n").expect("append");
        drop(f);
        let mut s = FileSource::new(cfg(paths.clone(), true, Some(state.clone()))).expect("src");
        let b = next(&mut s).await;
        assert_eq!(&b.bytes[..], b"{\"n\":7}\n");
        b.ack.ack();
        // Truncation: start again from the beginning.
        std::fs::write(&log, b"{\"n\":8}\n").expect("truncate");
        let b = next(&mut s).await;
        assert_eq!(&b.bytes[..], b"{\"n\":8}\n");
    }

    #[test]
    fn globs_are_recognised() {
        assert!(is_glob("logs/**/*.json*"));
        assert!(!is_glob("logs/a.json"));
    }
}
