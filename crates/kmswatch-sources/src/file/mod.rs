//! `file`: files, directories (recursive), globs and stdin (`-`).
//!
//! **How much is read at once.** A file (or stdin) whose first line is a complete JSON value
//! is JSON lines: it is read in batches of at most `max_batch_bytes` that end on a line
//! (origin `path:offset`), so no such file is ever held whole, and each batch is valid JSON
//! lines by itself. A line longer than `max_record_bytes` is never held either: it is
//! skipped by streaming over it (size and SHA-256 computed on the way) and handed out as a
//! dead letter (`record_too_large`, location `path:offset`, no bytes: the file keeps them).
//! Any other file must be decoded whole and is handed over whole when it is at most
//! `max_object_bytes` (larger: a dead letter `object_too_large`, unread): a pretty-printed
//! document — a CloudTrail `{"Records":[…]}` file or a JSON array, told apart because its
//! first value does not end on its first line; the normalizer resynchronises such text on
//! lines that start with `{` or `[`, which only works on the whole text — and compressed
//! files (`.gz`, `.zip`, or gzip/zip magic bytes).
//!
//! **Read once** (no `follow`): every matching file in turn (stdin first), then the source
//! ends. A file read in one batch is named by its path, as before; a larger one is handed out
//! as consecutive batches `path:offset`, in order, before the next file starts, so a
//! consumer may end the file's stream when a batch of another path (or the end) arrives.
//!
//! **Follow**: appended lines are handed out as they come (origin `path:offset`); rotation
//! (a new file under the same path: the old one is read to its end first) and truncation are
//! detected; new files matching the globs are picked up; the position up to which every
//! batch was acknowledged is persisted through a [`PositionStore`], so a restart resumes
//! there. A last line without a newline — Azure writes `PT1H.json` that way — is handed out
//! once the file has not grown for `quiet_period_ms` and the line is a complete JSON value
//! (or is broken beyond repair, for the normalizer to reject); an unfinished one waits for
//! the writer (logged once), and whatever the writer appends after a handed-out line is read
//! from just after it, so nothing is lost or read twice. Documents and compressed files are
//! read whole once quiet. [`FileSource::drain`] hands out complete final records at once on
//! shutdown.
//!
//! Reads are blocking but short (one batch, or one block of a skipped line, between yields to
//! the runtime), and every await point leaves the source consistent: a dropped
//! [`FileSource::next_batch`] future loses nothing.

mod chunk;
mod positions;

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use serde::de::IgnoredAny;
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;
use tracing::{debug, info, warn};

use crate::{
    reason, set_aside, AckHandle, Batch, Bytes, Contiguous, DeadLetter, FileConfig, Settle,
    SourceError, StartAt,
};
use chunk::{Chunker, End, Piece};
pub use positions::{JsonPositionStore, MemoryPositionStore, Position, PositionStore};

const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b];
const ZIP_MAGIC: &[u8] = b"PK\x03\x04";
const BOM: &[u8] = b"\xEF\xBB\xBF";
/// Reads between two yields to the runtime while one step reads a lot (a long line).
const READS_PER_YIELD: u32 = 8;
/// The `source_type` of what this source sets aside.
const SOURCE_TYPE: &str = "file";

/// True when `p` contains glob syntax.
pub fn is_glob(p: &str) -> bool {
    p.contains(['*', '?', '[', '{'])
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

fn is_ws(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\r' | b'\n')
}

/// How a file is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// JSON lines (or text that is not JSON): batches cut on lines.
    Lines,
    /// A document or a compressed file: handed over whole.
    Whole,
}

/// Decide how a file is read from its first bytes `head` (from offset 0). `complete`: `head`
/// is all there will be for now (the end of the file, or of a rotated one). `None`: not
/// decidable yet (the first line is unfinished and shorter than a batch).
fn classify(head: &[u8], max_batch: usize, complete: bool) -> Option<Kind> {
    if head.starts_with(GZIP_MAGIC) || head.starts_with(ZIP_MAGIC) {
        return Some(Kind::Whole);
    }
    let b = head.strip_prefix(BOM).unwrap_or(head);
    let Some(start) = b.iter().position(|&c| !is_ws(c)) else {
        return complete.then_some(Kind::Lines);
    };
    match memchr::memchr(b'\n', &b[start..]) {
        Some(k) => Some(
            match serde_json::from_slice::<IgnoredAny>(&b[start..start + k]) {
                Ok(_) => Kind::Lines,
                // The first value goes on past its line: a pretty-printed document.
                Err(e) if e.is_eof() => Kind::Whole,
                // A broken first line of JSON lines, or text that is not JSON.
                Err(_) => Kind::Lines,
            },
        ),
        None if complete || head.len() >= max_batch => Some(Kind::Lines),
        None => None,
    }
}

/// What a last line without a newline is, once the file is quiet.
#[derive(Debug, PartialEq, Eq)]
enum TailState {
    /// Only whitespace (or a byte-order mark): nothing to read.
    Blank,
    /// JSON cut short: the writer has not finished it.
    Incomplete,
    /// A complete JSON value, or text no continuation can make valid (for the normalizer to
    /// reject): hand it out.
    Ready,
}

fn tail_state(tail: &[u8]) -> TailState {
    let t = tail.strip_prefix(BOM).unwrap_or(tail);
    if t.iter().all(|&c| is_ws(c)) {
        return TailState::Blank;
    }
    match serde_json::from_slice::<IgnoredAny>(t) {
        Ok(_) => TailState::Ready,
        Err(e) if e.is_eof() => TailState::Incomplete,
        Err(_) => TailState::Ready,
    }
}

/// Read once from `r` into `ch`; `eof` when `r` had nothing more.
fn fill(r: &mut impl Read, ch: &mut Chunker, eof: &mut bool) -> std::io::Result<()> {
    loop {
        match r.read(ch.spare()) {
            Ok(n) => {
                ch.filled(n);
                *eof = n == 0;
                return Ok(());
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                ch.filled(0);
                return Err(e);
            }
        }
    }
}

/// Read from `r` into `ch` until a piece is ready; once `r` is at its end (`eof`), the
/// pieces `at_end` allows. Yields to the runtime every few reads.
async fn read_step(
    r: &mut impl Read,
    ch: &mut Chunker,
    eof: &mut bool,
    at_end: End,
) -> std::io::Result<Option<Piece>> {
    let mut reads = 0u32;
    loop {
        if let Some(p) = ch.pop(if *eof { at_end } else { End::More }) {
            return Ok(Some(p));
        }
        if *eof {
            return Ok(None);
        }
        fill(r, ch, eof)?;
        reads += 1;
        if reads.is_multiple_of(READS_PER_YIELD) {
            tokio::task::yield_now().await;
        }
    }
}

/// A whole file from its start, or `Err(size)` when it is larger than `max` (not read).
fn read_whole(file: &mut std::fs::File, max: u64) -> std::io::Result<Result<Vec<u8>, u64>> {
    let len = file.metadata()?.len();
    if len > max {
        return Ok(Err(len));
    }
    file.seek(SeekFrom::Start(0))?;
    let mut buf = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    file.take(max.saturating_add(1)).read_to_end(&mut buf)?;
    if buf.len() as u64 > max {
        let len = file.metadata()?.len().max(buf.len() as u64);
        return Ok(Err(len));
    }
    Ok(Ok(buf))
}

/// The dead-letter batch of a line over `max_record_bytes` of `name` (a path, or `-` for
/// stdin) at offset `start`.
fn line_set_aside(
    name: &str,
    (start, size, sha256): (u64, u64, String),
    max: u64,
    ack: AckHandle,
) -> Batch {
    let kept = if name == "-" {
        "stdin does not keep it"
    } else {
        "the file still holds it at this offset"
    };
    let dead = DeadLetter::new(
        format!("{name}:{start}"),
        reason::RECORD_TOO_LARGE,
        format!("line of {size} bytes exceeds max_record_bytes ({max}); skipped unread, {kept}"),
    )
    .with_size(size)
    .with_sha256(sha256);
    set_aside(SOURCE_TYPE, dead, ack)
}

fn too_big(location: String, size: u64, max: u64) -> DeadLetter {
    DeadLetter::new(
        location,
        reason::OBJECT_TOO_LARGE,
        format!(
            "{size} bytes exceed max_object_bytes ({max}); a document or compressed file is read whole, so it was not read"
        ),
    )
    .with_size(size)
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

/// Where followed files' batches are acknowledged and their positions persisted.
#[derive(Debug, Clone)]
struct Positions {
    acks: Arc<Mutex<AckState>>,
    store: Arc<dyn PositionStore>,
}

impl Positions {
    /// `start..end` of file `id` was handed out; the handle persists the position once
    /// everything before `end` was acknowledged (or rejected: kept elsewhere).
    fn handle(&self, key: &str, id: FileId, start: u64, end: u64) -> AckHandle {
        if let Some((_, t)) = lock(&self.acks).tracks.get_mut(&id) {
            t.handed_out(start as i64, end as i64);
        }
        let this = self.clone();
        let path = key.to_owned();
        AckHandle::new(move |how| {
            if !matches!(how, Settle::Ack | Settle::Reject) {
                // The batch stays unacknowledged: its position is not persisted past it and a
                // restart reads it again.
                warn!(path = %path, offset = start, "file batch not acknowledged");
                return;
            }
            this.settled(&path, id, start);
        })
    }

    /// `start..end` holds nothing to hand out (blank lines): move past it at once.
    fn pass(&self, key: &str, id: FileId, start: u64, end: u64) {
        if let Some((_, t)) = lock(&self.acks).tracks.get_mut(&id) {
            t.handed_out(start as i64, end as i64);
        }
        self.settled(key, id, start);
    }

    fn settled(&self, path: &str, id: FileId, start: u64) {
        let mut st = lock(&self.acks);
        let Some((_, t)) = st.tracks.get_mut(&id) else {
            return;
        };
        let Some(point) = t.acked(start as i64) else {
            return;
        };
        if st.active.get(path) == Some(&id) {
            let pos = Position {
                dev: id.0,
                ino: id.1,
                offset: point.max(0) as u64,
            };
            if let Err(e) = self.store.save(path, pos) {
                warn!(path = %path, error = %e, "saving file position failed");
            }
        }
    }

    /// Track file `id` under `key` from `offset`, and make it the one under `key`.
    fn start(&self, key: &str, id: FileId, offset: u64) {
        let mut st = lock(&self.acks);
        st.tracks
            .insert(id, (key.to_owned(), Contiguous::starting_at(offset as i64)));
        st.active.insert(key.to_owned(), id);
    }
}

/// What reading a followed file produced.
#[derive(Debug)]
enum Out {
    Piece(Piece),
    /// A whole document or compressed file.
    Whole(Vec<u8>),
    /// A whole file over `max_object_bytes`, of this size, not read.
    TooBig(u64),
}

/// One followed file.
#[derive(Debug)]
struct Followed {
    file: std::fs::File,
    id: FileId,
    key: String,
    /// `None` until the first line tells.
    kind: Option<Kind>,
    ch: Chunker,
    /// A whole file was handed out.
    done: bool,
    /// Size at the last look, and when it last changed.
    len: u64,
    changed: Instant,
    /// The last line last found unfinished (offset, length): not checked again until it
    /// changes.
    waiting: Option<(u64, usize)>,
    /// Renamed away (rotated): read to its end, its last line as it is.
    retired: bool,
}

/// When a file last changed, as an [`Instant`], from its modification time.
fn changed_at(meta: &std::fs::Metadata, now: Instant) -> Instant {
    meta.modified()
        .ok()
        .and_then(|m| SystemTime::now().duration_since(m).ok())
        .and_then(|age| now.checked_sub(age))
        .unwrap_or(now)
}

/// Limits taken from the configuration.
#[derive(Debug, Clone, Copy)]
struct Limits {
    max_batch: usize,
    max_record: u64,
    max_object: u64,
    quiet: Duration,
}

impl Limits {
    fn of(cfg: &FileConfig) -> Self {
        Self {
            max_batch: cfg.max_batch_bytes,
            max_record: cfg.max_record_bytes,
            max_object: cfg.max_object_bytes,
            quiet: Duration::from_millis(cfg.quiet_period_ms),
        }
    }

    fn chunker(&self, at: u64) -> Chunker {
        Chunker::new(
            at,
            self.max_batch,
            usize::try_from(self.max_record).unwrap_or(usize::MAX - 1),
        )
    }
}

impl Followed {
    /// A document or compressed file: read whole once it is quiet (`now`).
    fn whole(&mut self, lim: Limits, now: bool) -> Option<Out> {
        if !now {
            return None;
        }
        match read_whole(&mut self.file, lim.max_object) {
            Ok(r) => {
                self.done = true;
                Some(match r {
                    Ok(bytes) => Out::Whole(bytes),
                    Err(size) => Out::TooBig(size),
                })
            }
            Err(e) => {
                warn!(path = %self.key, error = %e, "cannot read file");
                None
            }
        }
    }

    /// Read what is there now: at most one piece (or whole file). `drain`: the source is
    /// stopping, so a complete last line is handed out without waiting to be quiet, and
    /// whole files and over-long lines still being written are left for the next start.
    async fn poll(&mut self, lim: Limits, now: Instant, drain: bool) -> Option<Out> {
        if self.done {
            return None;
        }
        let quiet = drain || self.retired || now.duration_since(self.changed) >= lim.quiet;
        if self.kind == Some(Kind::Whole) {
            return self.whole(lim, quiet && !drain);
        }
        if let Err(e) = self.file.seek(SeekFrom::Start(self.ch.read_pos())) {
            warn!(path = %self.key, error = %e, "cannot seek in followed file");
            return None;
        }
        let mut eof = false;
        while self.kind.is_none() {
            self.kind = classify(self.ch.buffered(), lim.max_batch, self.retired && eof);
            if self.kind.is_some() || eof {
                break;
            }
            if let Err(e) = fill(&mut self.file, &mut self.ch, &mut eof) {
                warn!(path = %self.key, error = %e, "read failed");
                return None;
            }
        }
        match self.kind {
            Some(Kind::Whole) => return self.whole(lim, quiet && !drain),
            Some(Kind::Lines) => {
                match read_step(&mut self.file, &mut self.ch, &mut eof, End::Now).await {
                    Ok(Some(p)) => return Some(Out::Piece(p)),
                    Ok(None) => {}
                    Err(e) => {
                        warn!(path = %self.key, error = %e, "read failed");
                        return None;
                    }
                }
            }
            None => {}
        }
        // Nothing more for now but, perhaps, a last line without a newline.
        if !quiet {
            return None;
        }
        if self.retired {
            return self.ch.pop(End::Final).map(Out::Piece);
        }
        if self.ch.skipping() {
            // An over-long last line the writer stopped writing: set aside what is there.
            return if drain {
                None
            } else {
                self.ch.pop(End::Final).map(Out::Piece)
            };
        }
        let tail = self.ch.tail()?;
        let here = (self.ch.read_pos() - tail.len() as u64, tail.len());
        if self.waiting == Some(here) {
            return None;
        }
        match tail_state(tail) {
            TailState::Ready => {
                self.waiting = None;
                self.kind.get_or_insert(Kind::Lines);
                self.ch.pop(End::Final).map(Out::Piece)
            }
            TailState::Incomplete => {
                self.waiting = Some(here);
                info!(path = %self.key, offset = here.0, bytes = here.1, "last line unfinished; waiting for the writer");
                None
            }
            TailState::Blank => None,
        }
    }
}

/// Reading one file once.
#[derive(Debug)]
struct OnceFile {
    key: String,
    file: std::fs::File,
    kind: Option<Kind>,
    ch: Chunker,
    eof: bool,
    batches: u64,
}

/// Reading stdin.
#[derive(Debug)]
struct StdinReader {
    input: tokio::io::Stdin,
    ch: Chunker,
    kind: Option<Kind>,
    eof: bool,
}

impl StdinReader {
    async fn fill(&mut self) -> Result<(), SourceError> {
        let n = self
            .input
            .read(self.ch.spare())
            .await
            .map_err(|source| SourceError::Io {
                path: "-".into(),
                source,
            })?;
        self.ch.filled(n);
        self.eof = n == 0;
        Ok(())
    }
}

/// The `file` source.
#[derive(Debug)]
pub struct FileSource {
    cfg: FileConfig,
    lim: Limits,
    positions: Positions,
    started: bool,
    /// Read once: the files still to read, and the one being read.
    queue: VecDeque<PathBuf>,
    once: Option<Box<OnceFile>>,
    stdin: Option<Box<StdinReader>>,
    stdin_done: bool,
    /// Follow mode: the files under their paths, and rotated ones still being finished.
    followed: BTreeMap<PathBuf, Followed>,
    retired: VecDeque<Followed>,
    last_scan: Option<Instant>,
    /// Where the next round over the followed files starts (round robin).
    cursor: usize,
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
            lim: Limits::of(&cfg),
            cfg,
            positions: Positions {
                acks: Arc::new(Mutex::new(AckState::default())),
                store,
            },
            started: false,
            queue: VecDeque::new(),
            once: None,
            stdin: None,
            stdin_done: false,
            followed: BTreeMap::new(),
            retired: VecDeque::new(),
            last_scan: None,
            cursor: 0,
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
    /// for data forever (stdin: until it closes). Cancel-safe.
    pub async fn next_batch(&mut self) -> Result<Option<Batch>, SourceError> {
        let stdin = self.cfg.paths.iter().any(|p| p == "-");
        if !self.started {
            self.started = true;
            if !self.cfg.follow {
                self.queue = self.expand()?.into();
            }
        }
        if stdin && !self.stdin_done {
            if let Some(b) = self.next_stdin().await? {
                return Ok(Some(b));
            }
        }
        if !self.cfg.follow {
            return self.next_once().await;
        }
        if stdin {
            // Validation keeps stdin alone in follow mode: it has ended.
            return Ok(None);
        }
        self.next_followed().await
    }

    /// On shutdown: complete final records (a last line without a newline that is a whole
    /// JSON value) of followed files that have been read up to it, at once, without waiting
    /// for `quiet_period_ms`; for stdin, everything buffered. Files with more than a batch
    /// left unread keep it for the next start (their position is saved only up to what was
    /// acknowledged). Process and acknowledge the batches like any other.
    pub async fn drain(&mut self) -> Result<Vec<Batch>, SourceError> {
        let mut out = Vec::new();
        let lim = self.lim;
        let fmt = self.format();
        if let Some(s) = self.stdin.as_mut() {
            while let Some(p) = s.ch.pop(End::Final) {
                out.extend(stdin_batch(p, false, lim, &fmt));
            }
        }
        if !self.cfg.follow {
            return Ok(out);
        }
        let now = Instant::now();
        self.scan(now);
        for f in self.retired.iter_mut().chain(self.followed.values_mut()) {
            if f.len.saturating_sub(f.ch.read_pos()) > lim.max_batch as u64 {
                continue;
            }
            while let Some(o) = f.poll(lim, now, true).await {
                out.extend(emit(&self.positions, lim, &fmt, &f.key, f.id, o));
            }
        }
        Ok(out)
    }

    // ------------------------------------------------------------------------------ stdin

    async fn next_stdin(&mut self) -> Result<Option<Batch>, SourceError> {
        let lim = self.lim;
        let follow = self.cfg.follow;
        let fmt = self.format();
        let s = self.stdin.get_or_insert_with(|| {
            Box::new(StdinReader {
                input: tokio::io::stdin(),
                ch: lim.chunker(0),
                kind: follow.then_some(Kind::Lines),
                eof: false,
            })
        });
        loop {
            while s.kind.is_none() {
                s.kind = classify(s.ch.buffered(), lim.max_batch, s.eof);
                if s.kind.is_none() {
                    s.fill().await?;
                }
            }
            if s.kind == Some(Kind::Whole) {
                let b = stdin_whole(s, lim, &fmt).await?;
                self.stdin_done = true;
                return Ok(Some(b));
            }
            let end = if s.eof {
                End::Final
            } else if follow {
                End::Now
            } else {
                End::More
            };
            if let Some(p) = s.ch.pop(end) {
                let single = s.eof && p.range().0 == 0 && s.ch.buffered().is_empty();
                match stdin_batch(p, single, lim, &fmt) {
                    Some(b) => return Ok(Some(b)),
                    None => continue,
                }
            }
            if s.eof {
                self.stdin_done = true;
                return Ok(None);
            }
            if follow && s.ch.tail().is_some() {
                // A last line without a newline: read it once stdin has been silent long
                // enough and it is complete.
                match tokio::time::timeout(lim.quiet, s.fill()).await {
                    Ok(r) => r?,
                    Err(_) => {
                        if s.ch.tail().map(tail_state) == Some(TailState::Ready) {
                            if let Some(p) = s.ch.pop(End::Final) {
                                if let Some(b) = stdin_batch(p, false, lim, &fmt) {
                                    return Ok(Some(b));
                                }
                            }
                        } else {
                            s.fill().await?;
                        }
                    }
                }
            } else {
                s.fill().await?;
            }
        }
    }

    fn plain_batch(&self, origin: String, bytes: Vec<u8>) -> Batch {
        plain_batch(origin, bytes, &self.format())
    }

    // -------------------------------------------------------------------------- read once

    async fn next_once(&mut self) -> Result<Option<Batch>, SourceError> {
        let lim = self.lim;
        loop {
            if self.once.is_none() {
                let Some(path) = self.queue.pop_front() else {
                    return Ok(None);
                };
                let key = path.display().to_string();
                let file = std::fs::File::open(&path).map_err(|source| SourceError::Io {
                    path: key.clone(),
                    source,
                })?;
                self.once = Some(Box::new(OnceFile {
                    key,
                    file,
                    kind: is_compressed(&path).then_some(Kind::Whole),
                    ch: lim.chunker(0),
                    eof: false,
                    batches: 0,
                }));
            }
            let Some(o) = self.once.as_mut() else {
                continue;
            };
            let io = |key: &str, source| SourceError::Io {
                path: key.to_owned(),
                source,
            };
            while o.kind.is_none() {
                // The first batch (or all of a smaller file) tells what the file is.
                if !o.eof && o.ch.buffered().len() < lim.max_batch {
                    fill(&mut o.file, &mut o.ch, &mut o.eof).map_err(|e| io(&o.key, e))?;
                    continue;
                }
                o.kind =
                    Some(classify(o.ch.buffered(), lim.max_batch, true).unwrap_or(Kind::Lines));
            }
            if o.kind == Some(Kind::Whole) {
                let whole = read_whole(&mut o.file, lim.max_object).map_err(|e| io(&o.key, e))?;
                let key = o.key.clone();
                self.once = None;
                return Ok(Some(match whole {
                    Ok(bytes) => {
                        info!(path = %key, bytes = bytes.len(), "file read");
                        self.plain_batch(key, bytes)
                    }
                    Err(size) => set_aside(
                        SOURCE_TYPE,
                        too_big(key, size, lim.max_object),
                        AckHandle::noop(),
                    ),
                }));
            }
            let piece = read_step(&mut o.file, &mut o.ch, &mut o.eof, End::Final)
                .await
                .map_err(|e| io(&o.key, e))?;
            let Some(piece) = piece else {
                info!(path = %o.key, bytes = o.ch.read_pos(), batches = o.batches, "file read");
                self.once = None;
                continue;
            };
            o.batches += 1;
            let single = o.eof && piece.range().0 == 0 && o.ch.buffered().is_empty();
            let key = o.key.clone();
            match piece {
                Piece::Lines { start, bytes } => {
                    if bytes.iter().all(|&c| is_ws(c)) {
                        continue;
                    }
                    let origin = if single {
                        key
                    } else {
                        format!("{key}:{start}")
                    };
                    return Ok(Some(self.plain_batch(origin, bytes)));
                }
                Piece::TooLong {
                    start,
                    size,
                    sha256,
                    ..
                } => {
                    let line = (start, size, sha256);
                    return Ok(Some(line_set_aside(
                        &key,
                        line,
                        lim.max_record,
                        AckHandle::noop(),
                    )));
                }
            }
        }
    }

    // ----------------------------------------------------------------------------- follow

    async fn next_followed(&mut self) -> Result<Option<Batch>, SourceError> {
        let poll = Duration::from_millis(self.cfg.poll_interval_ms);
        loop {
            let now = Instant::now();
            if self.last_scan.is_none_or(|t| now.duration_since(t) >= poll) {
                self.scan(now);
                self.last_scan = Some(now);
            }
            if let Some(b) = self.poll_round(now).await {
                return Ok(Some(b));
            }
            tokio::time::sleep(poll).await;
        }
    }

    /// One piece from the first file that has one: rotated files first (they end), then the
    /// followed ones in turn.
    async fn poll_round(&mut self, now: Instant) -> Option<Batch> {
        let lim = self.lim;
        let fmt = self.format();
        while let Some(f) = self.retired.front_mut() {
            match f.poll(lim, now, false).await {
                Some(o) => {
                    if let Some(b) = emit(&self.positions, lim, &fmt, &f.key, f.id, o) {
                        return Some(b);
                    }
                }
                None => {
                    debug!(path = %f.key, "rotated file read to its end");
                    self.retired.pop_front();
                }
            }
        }
        let n = self.followed.len();
        let cursor = self.cursor.min(n);
        // From the cursor to the end, then from the start to the cursor.
        for pass in [cursor..n, 0..cursor] {
            for (idx, f) in self.followed.values_mut().enumerate() {
                if !pass.contains(&idx) {
                    continue;
                }
                while let Some(o) = f.poll(lim, now, false).await {
                    if let Some(b) = emit(&self.positions, lim, &fmt, &f.key, f.id, o) {
                        self.cursor = (idx + 1) % n;
                        return Some(b);
                    }
                }
            }
        }
        None
    }

    /// Discover files, detect rotation and truncation, note growth.
    fn scan(&mut self, now: Instant) {
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
                    old.retired = true;
                    self.retired.push_back(old);
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
                let saved = self
                    .positions
                    .store
                    .load(&key)
                    .filter(|p| (p.dev, p.ino) == id);
                let offset = match saved {
                    Some(p) if p.offset <= len => p.offset,
                    Some(_) => 0,
                    None if rotated => 0,
                    None => match self.cfg.start_at {
                        StartAt::Beginning => 0,
                        StartAt::End => len,
                    },
                };
                let kind = if is_compressed(&path) {
                    Some(Kind::Whole)
                } else if offset > 0 {
                    Some(Kind::Lines)
                } else {
                    None
                };
                let done = kind == Some(Kind::Whole) && saved.is_some_and(|p| p.offset >= len);
                debug!(path = %key, offset, "following file");
                self.positions.start(&key, id, offset);
                self.followed.insert(
                    path.clone(),
                    Followed {
                        file,
                        id,
                        key: key.clone(),
                        kind,
                        ch: self.lim.chunker(offset),
                        done,
                        len,
                        changed: changed_at(&meta, now),
                        waiting: None,
                        retired: false,
                    },
                );
            }
            let Some(f) = self.followed.get_mut(&path) else {
                continue;
            };
            let truncated = if f.kind == Some(Kind::Whole) {
                len < f.len
            } else {
                len < f.ch.read_pos()
            };
            if truncated {
                info!(path = %key, "file truncated; reading from the start");
                f.ch = self.lim.chunker(0);
                f.kind = is_compressed(&path).then_some(Kind::Whole);
                f.done = false;
                f.waiting = None;
                self.positions.start(&key, id, 0);
            }
            if len != f.len || truncated {
                f.len = len;
                f.changed = now;
            }
        }
    }
}

fn plain_batch(origin: String, bytes: Vec<u8>, format: &Option<String>) -> Batch {
    Batch {
        origin,
        bytes: Bytes::from(bytes),
        format: format.clone(),
        received_at: SystemTime::now(),
        ack: AckHandle::noop(),
        dead: Vec::new(),
    }
}

/// A batch of stdin; `None` for blank lines.
fn stdin_batch(p: Piece, single: bool, lim: Limits, format: &Option<String>) -> Option<Batch> {
    match p {
        Piece::Lines { start, bytes } => {
            if bytes.iter().all(|&c| is_ws(c)) {
                return None;
            }
            let origin = if single {
                "-".to_owned()
            } else {
                format!("-:{start}")
            };
            Some(plain_batch(origin, bytes, format))
        }
        Piece::TooLong {
            start,
            size,
            sha256,
            ..
        } => Some(line_set_aside(
            "-",
            (start, size, sha256),
            lim.max_record,
            AckHandle::noop(),
        )),
    }
}

/// All of stdin as one document, up to `max_object_bytes`; beyond that it is hashed to its
/// end and set aside.
async fn stdin_whole(
    s: &mut StdinReader,
    lim: Limits,
    format: &Option<String>,
) -> Result<Batch, SourceError> {
    let max = lim.max_object;
    let mut doc: Vec<u8> = s.ch.buffered().to_vec();
    s.ch = lim.chunker(0);
    let mut block = vec![0u8; chunk::BLOCK];
    let mut sha: Option<Sha256> = None;
    let mut size = doc.len() as u64;
    if size > max {
        let mut h = Sha256::new();
        h.update(&doc);
        doc = Vec::new();
        sha = Some(h);
    }
    while !s.eof {
        let n = s
            .input
            .read(&mut block)
            .await
            .map_err(|source| SourceError::Io {
                path: "-".into(),
                source,
            })?;
        s.eof = n == 0;
        size += n as u64;
        let got = block.get(..n).unwrap_or_default();
        match sha.as_mut() {
            Some(h) => h.update(got),
            None if size > max => {
                let mut h = Sha256::new();
                h.update(&doc);
                h.update(got);
                doc = Vec::new();
                sha = Some(h);
            }
            None => doc.extend_from_slice(got),
        }
    }
    Ok(match sha {
        Some(h) => set_aside(
            SOURCE_TYPE,
            too_big("-".into(), size, max).with_sha256(hex::encode(h.finalize())),
            AckHandle::noop(),
        ),
        None => plain_batch("-".into(), doc, format),
    })
}

/// The batch for what a followed file produced; `None` for blank lines (moved past at once).
fn emit(
    positions: &Positions,
    lim: Limits,
    format: &Option<String>,
    key: &str,
    id: FileId,
    out: Out,
) -> Option<Batch> {
    let batch = |origin: String, bytes: Vec<u8>, ack| Batch {
        origin,
        bytes: Bytes::from(bytes),
        format: format.clone(),
        received_at: SystemTime::now(),
        ack,
        dead: Vec::new(),
    };
    match out {
        Out::Piece(Piece::Lines { start, bytes }) => {
            let end = start + bytes.len() as u64;
            if bytes.iter().all(|&c| is_ws(c)) {
                positions.pass(key, id, start, end);
                return None;
            }
            let ack = positions.handle(key, id, start, end);
            Some(batch(format!("{key}:{start}"), bytes, ack))
        }
        Out::Piece(Piece::TooLong {
            start,
            size,
            sha256,
            end,
        }) => Some(line_set_aside(
            key,
            (start, size, sha256),
            lim.max_record,
            positions.handle(key, id, start, end),
        )),
        Out::Whole(bytes) => {
            let ack = positions.handle(key, id, 0, bytes.len() as u64);
            Some(batch(format!("{key}:0"), bytes, ack))
        }
        Out::TooBig(size) => Some(set_aside(
            SOURCE_TYPE,
            too_big(key.to_owned(), size, lim.max_object),
            positions.handle(key, id, 0, size),
        )),
    }
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
            max_record_bytes: crate::DEFAULT_MAX_RECORD_BYTES,
            max_object_bytes: crate::DEFAULT_MAX_OBJECT_BYTES,
            quiet_period_ms: 50,
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

    fn append(path: &Path, bytes: &[u8]) {
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(path)
            .expect("open");
        f.write_all(bytes).expect("append");
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
        append(&log, b"3}\n{\"n\":4}\n");
        let b = next(&mut s).await;
        assert_eq!(&b.bytes[..], b"{\"n\":3}\n{\"n\":4}\n");
        drop(b); // not acknowledged: a restart reads it again
        drop(s);

        let mut s = FileSource::new(cfg(paths.clone(), true, Some(state.clone()))).expect("src");
        let b = next(&mut s).await;
        assert_eq!(&b.bytes[..], b"{\"n\":3}\n{\"n\":4}\n");
        b.ack.ack();
        // Rotate: rename, write a last line to the old file, create a new one.
        append(&log, b"{\"n\":5}\n");
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
        append(&log, b"{\"n\":7}\n");
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
