//! The dead-letter file: everything the pipeline set aside, one JSON line each, lossless.
//!
//! Three kinds of entry (`kind`):
//! - `record`: a record the normalizer rejected (`malformed_json`, `too_large`, ...), with its
//!   exact bytes;
//! - `object`: a batch with nothing usable in it (empty, not gzip/JSON, no known format), a
//!   batch over the memory budget, or one whose normalization panicked (`internal_error`);
//! - `set_aside`: what a source set aside instead of handing it over (`Batch.dead`: an
//!   unreadable S3 object, a bad SQS message, an oversize line).
//!
//! Every entry has `time_ms`, `kind`, `source` (the source id), `origin` (the batch's),
//! `location` (where exactly: `origin:line path` for a record), `reason` (snake_case, also
//! the metric label), `detail`, and where known `size` and `sha256` (lower-case hex) of the
//! bytes set aside. The bytes themselves are in `data`, with `encoding` `utf8` (the bytes are
//! valid UTF-8 and `data` is that text) or `base64` (standard alphabet, padded). An entry
//! without `data` says why in `data_omitted`: `at_location` (the bytes are still where
//! `location` says, e.g. an S3 object kmswatch never deletes), `over_memory_budget` (too
//! large to hold; `size` and `sha256` identify them at their location) or
//! `dead_letter_budget` (see below).
//!
//! **Bounded on disk.** The file (`state.dead_letter_path`, default
//! `STATE_DIR/dead-letter.jsonl`) is rotated by size: at most `limits.dead_letter_max_bytes`
//! in `limits.dead_letter_files` files (`NAME`, `NAME.1`, ... the oldest deleted), so the
//! retention is the newest entries that fit. At most half of each file holds entry bytes
//! (`data`): past that, entries keep their metadata and hash and drop only the bytes
//! (`data_omitted: dead_letter_budget`, counted in `kmswatch_dead_letter_data_dropped_total`),
//! so a flood of large garbage cannot rotate away the record of what came before it as fast.
//!
//! **Before the acknowledgement.** Entries are buffered by [`DeadLetterWriter::push`] and
//! written and fsynced by [`DeadLetterWriter::sync`], which the deliver task calls before it
//! commits the checkpoint that settles their batches. A failed write is rolled back (the file
//! truncated to its length before it) and kept for the next attempt, so a full disk neither
//! loses nor duplicates entries.

use crate::runtime::metrics::Metrics;
use base64::Engine as _;
use bytes::Bytes;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tracing::{debug, warn};

/// What an entry is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeadKind {
    /// A rejected record.
    Record,
    /// A whole batch (object, message, chunk).
    Object,
    /// Something a source set aside (`Batch.dead`).
    SetAside,
}

impl DeadKind {
    fn as_str(self) -> &'static str {
        match self {
            DeadKind::Record => "record",
            DeadKind::Object => "object",
            DeadKind::SetAside => "set_aside",
        }
    }
}

/// One dead-letter entry, before it is written.
#[derive(Debug, Clone)]
pub struct DeadEntry {
    /// The kind.
    pub kind: DeadKind,
    /// The configured source id.
    pub source: Arc<str>,
    /// The batch's origin.
    pub origin: String,
    /// Where exactly.
    pub location: String,
    /// Why (snake_case; the metric label).
    pub reason: String,
    /// What happened, for an operator.
    pub detail: String,
    /// Size of what was set aside, bytes.
    pub size: Option<u64>,
    /// Lower-case hex SHA-256 of what was set aside.
    pub sha256: Option<String>,
    /// The bytes to keep (exact).
    pub data: Option<Bytes>,
    /// Why `data` is absent.
    pub data_omitted: Option<&'static str>,
    /// More fields (objects: `bucket`, `key`, `action`, `rejected_records`).
    pub extra: Map<String, Value>,
}

/// The dead-letter line of a record rejected by `kmswatch normalize|scan --dead-letter`: the
/// same format as the runtime's file ([`DeadEntry::rejected`]), exact bytes.
pub fn cli_dead_letter(
    source: &Arc<str>,
    origin: &str,
    location: &kmswatch_normalize::Location,
    error: &kmswatch_normalize::RecordError,
    bytes: Vec<u8>,
) -> Vec<u8> {
    DeadEntry::rejected(source, origin, location.to_string(), error, bytes.into()).to_line()
}

/// Lower-case hex SHA-256.
pub fn sha256_hex(b: &[u8]) -> String {
    let d = Sha256::digest(b);
    let mut s = String::with_capacity(64);
    for x in d {
        use std::fmt::Write as _;
        let _ = write!(s, "{x:02x}");
    }
    s
}

impl DeadEntry {
    /// An entry for `bytes` (kept in the entry), with size and hash.
    pub fn with_bytes(
        kind: DeadKind,
        source: &Arc<str>,
        origin: &str,
        location: String,
        reason: &str,
        detail: String,
        bytes: Bytes,
    ) -> DeadEntry {
        DeadEntry {
            kind,
            source: source.clone(),
            origin: origin.to_string(),
            location,
            reason: reason.to_string(),
            detail,
            size: Some(bytes.len() as u64),
            sha256: Some(sha256_hex(&bytes)),
            data: Some(bytes),
            data_omitted: None,
            extra: Map::new(),
        }
    }

    /// A record the normalizer rejected: its exact bytes, or — when the record was over
    /// `max_record_bytes` and the normalizer kept only a prefix ([`RecordError::elided`]) —
    /// the prefix marked as such, with the whole record's size and SHA-256 (the record stays
    /// at `location`).
    ///
    /// [`RecordError::elided`]: kmswatch_normalize::RecordError::elided
    pub fn rejected(
        source: &Arc<str>,
        origin: &str,
        location: String,
        error: &kmswatch_normalize::RecordError,
        bytes: Bytes,
    ) -> DeadEntry {
        let mut e = DeadEntry::with_bytes(
            DeadKind::Record,
            source,
            origin,
            location,
            error.reason.as_str(),
            error.detail.clone(),
            bytes,
        );
        if let Some(el) = &error.elided {
            e.size = Some(el.size_bytes);
            e.sha256 = Some(el.sha256_hex());
            e.extra.insert("data_is_prefix".into(), true.into());
        }
        e
    }

    /// The JSON line of this entry with its bytes, as the dead-letter file holds it (also
    /// what `kmswatch normalize|scan --dead-letter` write, one per rejected record).
    pub fn to_line(&self) -> Vec<u8> {
        self.line(crate::runtime::pipeline::now_ms(), true)
    }

    /// The same entry without its bytes (they stay at `location`), keeping size and hash.
    pub fn without_bytes(mut self, why: &'static str) -> DeadEntry {
        self.data = None;
        self.data_omitted = Some(why);
        self
    }

    /// What a source set aside (`Batch.dead`).
    pub fn set_aside(
        source: &Arc<str>,
        origin: &str,
        d: &kmswatch_sources::DeadLetter,
    ) -> DeadEntry {
        let sha256 = d
            .sha256
            .clone()
            .or_else(|| d.bytes.as_ref().map(|b| sha256_hex(b)));
        DeadEntry {
            kind: DeadKind::SetAside,
            source: source.clone(),
            origin: origin.to_string(),
            location: d.location.clone(),
            reason: d.reason.clone(),
            detail: d.detail.clone(),
            size: d.size.or(d.bytes.as_ref().map(|b| b.len() as u64)),
            sha256,
            data: d.bytes.clone(),
            data_omitted: d.bytes.is_none().then_some("at_location"),
            extra: Map::new(),
        }
    }

    /// Bytes this entry holds in memory.
    pub fn held_bytes(&self) -> u64 {
        self.data.as_ref().map_or(0, |d| d.len() as u64) + self.detail.len() as u64 + 256
    }

    /// The JSON line, with or without the bytes.
    fn line(&self, time_ms: u64, with_data: bool) -> Vec<u8> {
        let mut m = Map::new();
        m.insert("time_ms".into(), time_ms.into());
        m.insert("kind".into(), self.kind.as_str().into());
        m.insert("source".into(), (*self.source).into());
        m.insert("origin".into(), self.origin.clone().into());
        m.insert("location".into(), self.location.clone().into());
        m.insert("reason".into(), self.reason.clone().into());
        m.insert("detail".into(), self.detail.clone().into());
        if let Some(s) = self.size {
            m.insert("size".into(), s.into());
        }
        if let Some(h) = &self.sha256 {
            m.insert("sha256".into(), h.clone().into());
        }
        match (&self.data, with_data) {
            (Some(d), true) => {
                let (enc, text) = match std::str::from_utf8(d) {
                    Ok(s) => ("utf8", s.to_string()),
                    Err(_) => (
                        "base64",
                        base64::engine::general_purpose::STANDARD.encode(d),
                    ),
                };
                m.insert("encoding".into(), enc.into());
                m.insert("data".into(), text.into());
            }
            (Some(_), false) => {
                m.insert("data_omitted".into(), "dead_letter_budget".into());
            }
            (None, _) => {
                if let Some(w) = self.data_omitted {
                    m.insert("data_omitted".into(), w.into());
                }
            }
        }
        for (k, v) in &self.extra {
            m.insert(k.clone(), v.clone());
        }
        let mut line = serde_json::to_vec(&Value::Object(m)).unwrap_or_default();
        line.push(b'\n');
        line
    }
}

/// Lines waiting to be written; `rotate`: start a new file before them.
#[derive(Debug)]
struct Pending {
    rotate: bool,
    buf: Vec<u8>,
}

/// The rotating, budgeted dead-letter file (see the module docs).
#[derive(Debug)]
pub struct DeadLetterWriter {
    path: PathBuf,
    files: u32,
    file_max: u64,
    file: Option<File>,
    /// Length of the file on disk.
    len: u64,
    /// Length and data bytes of the current file once the pending lines are written.
    vlen: u64,
    vdata: u64,
    pending: Vec<Pending>,
    metrics: Metrics,
}

impl DeadLetterWriter {
    /// A writer for `path` keeping at most `max_bytes` in `files` files (nothing is opened
    /// until the first entry).
    pub fn new(path: PathBuf, max_bytes: u64, files: u32, metrics: Metrics) -> DeadLetterWriter {
        describe(&metrics);
        let files = files.max(2);
        DeadLetterWriter {
            path,
            files,
            file_max: (max_bytes / u64::from(files)).max(4096),
            file: None,
            len: 0,
            vlen: 0,
            vdata: 0,
            pending: Vec::new(),
            metrics,
        }
    }

    /// The current file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Open the current file (once): its length, and its data bytes estimated from its lines.
    fn open(&mut self) -> std::io::Result<()> {
        if self.file.is_some() {
            return Ok(());
        }
        if let Some(d) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(d)?;
        }
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .open(&self.path)?;
        let len = f.metadata()?.len();
        let mut data = 0u64;
        let mut r = std::io::BufReader::new(&f);
        let mut line = Vec::new();
        while r.read_until(b'\n', &mut line)? > 0 {
            if memchr_data(&line) {
                data += line.len() as u64;
            }
            line.clear();
        }
        self.len = len;
        if self.pending.is_empty() {
            self.vlen = len;
            self.vdata = data;
        }
        self.file = Some(f);
        Ok(())
    }

    /// Buffer one entry (written by the next [`sync`](Self::sync)) and count it.
    pub fn push(&mut self, e: &DeadEntry) {
        if self.file.is_none() {
            if let Err(err) = self.open() {
                // Written (or retried) by `sync`; the budget starts from an empty file.
                warn!(file = %self.path.display(), error = %err, "dead-letter file not readable yet");
            }
        }
        let now = crate::runtime::pipeline::now_ms();
        let data_len = e.data.as_ref().map_or(0, |d| d.len() as u64);
        let half = self.file_max / 2;
        let mut with_data = e.data.is_some() && self.vdata + data_len <= half;
        let mut line = e.line(now, with_data);
        if self.vlen > 0 && self.vlen + line.len() as u64 > self.file_max {
            self.pending.push(Pending {
                rotate: true,
                buf: Vec::new(),
            });
            self.vlen = 0;
            self.vdata = 0;
            // A new file: the entry's bytes may fit there.
            let fits = e.data.is_some() && data_len <= half;
            if fits != with_data {
                with_data = fits;
                line = e.line(now, with_data);
            }
        }
        if !with_data && e.data.is_some() {
            self.metrics.add(
                "kmswatch_dead_letter_data_dropped_total",
                &[("source", &e.source), ("reason", &e.reason)],
                1.0,
            );
        }
        if with_data {
            self.vdata += line.len() as u64;
        }
        self.vlen += line.len() as u64;
        match self.pending.last_mut() {
            Some(p) => p.buf.extend_from_slice(&line),
            None => self.pending.push(Pending {
                rotate: false,
                buf: line,
            }),
        }
        self.metrics.add(
            "kmswatch_dead_letters_total",
            &[("source", &e.source), ("reason", &e.reason)],
            1.0,
        );
        match e.kind {
            DeadKind::Record => {
                debug!(source = %e.source, location = %e.location, reason = %e.reason, size = e.size, "record dead-lettered")
            }
            _ => {
                warn!(source = %e.source, kind = e.kind.as_str(), location = %e.location, reason = %e.reason, detail = %e.detail, size = e.size, "dead-lettered")
            }
        }
    }

    /// Entries buffered and not yet durable.
    pub fn pending(&self) -> bool {
        self.pending.iter().any(|p| p.rotate || !p.buf.is_empty())
    }

    /// Write the buffered entries and fsync. On an error nothing half-written stays in the
    /// file and the entries not written are kept for the next call.
    pub fn sync(&mut self) -> std::io::Result<()> {
        if !self.pending() {
            return Ok(());
        }
        self.open()?;
        while !self.pending.is_empty() {
            if self.pending[0].rotate {
                self.rotate()?;
                self.pending[0].rotate = false;
            }
            let Some(f) = self.file.as_mut() else {
                return Err(std::io::Error::other("dead-letter file not open"));
            };
            let buf = &self.pending[0].buf;
            if let Err(e) = f.write_all(buf).and_then(|()| f.sync_data()) {
                // Roll back what this attempt wrote; the entries stay pending.
                let _ = f.set_len(self.len);
                return Err(e);
            }
            self.len += buf.len() as u64;
            self.pending.remove(0);
        }
        Ok(())
    }

    /// `NAME` -> `NAME.1` -> ... -> `NAME.{files-1}` (deleted), then a new `NAME`.
    fn rotate(&mut self) -> std::io::Result<()> {
        let numbered = |i: u32| {
            let mut s = self.path.clone().into_os_string();
            s.push(format!(".{i}"));
            PathBuf::from(s)
        };
        let last = numbered(self.files - 1);
        if last.exists() {
            std::fs::remove_file(&last)?;
        }
        for i in (1..self.files - 1).rev() {
            let from = numbered(i);
            if from.exists() {
                std::fs::rename(&from, numbered(i + 1))?;
            }
        }
        if self.path.exists() {
            std::fs::rename(&self.path, numbered(1))?;
        }
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .open(&self.path)?;
        if let Some(d) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            if let Ok(dir) = File::open(d) {
                let _ = dir.sync_all();
            }
        }
        self.file = Some(f);
        self.len = 0;
        debug!(file = %self.path.display(), "dead-letter file rotated");
        Ok(())
    }
}

/// Whether a written line carries entry bytes.
fn memchr_data(line: &[u8]) -> bool {
    line.windows(8).any(|w| w == b"\"data\":\"")
}

/// Help texts of the dead-letter metrics.
pub fn describe(m: &Metrics) {
    m.describe(
        "kmswatch_dead_letter_data_dropped_total",
        "counter",
        "Dead-letter entries written without their bytes (the file's byte budget was spent), by source and reason.",
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(reason: &str, data: &[u8]) -> DeadEntry {
        DeadEntry::with_bytes(
            DeadKind::Record,
            &Arc::from("src"),
            "o",
            "o:1".into(),
            reason,
            "bad".into(),
            Bytes::copy_from_slice(data),
        )
    }

    fn lines(p: &Path) -> Vec<Value> {
        std::fs::read_to_string(p)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("json line"))
            .collect()
    }

    #[test]
    fn bytes_round_trip_as_utf8_or_base64() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("dl.jsonl");
        let m = Metrics::default();
        let mut w = DeadLetterWriter::new(p.clone(), 1 << 20, 4, m.clone());
        let inputs: [&[u8]; 3] = [b"plain \"text\" \xc3\xa9", b"\xff\x00\x80 not utf8", b""];
        for b in inputs {
            w.push(&entry("malformed_json", b));
        }
        w.sync().expect("sync");
        let got = lines(&p);
        assert_eq!(got.len(), 3);
        for (e, want) in got.iter().zip(inputs) {
            let data = e["data"].as_str().expect("data");
            let bytes = match e["encoding"].as_str() {
                Some("utf8") => data.as_bytes().to_vec(),
                _ => base64::engine::general_purpose::STANDARD
                    .decode(data)
                    .expect("base64"),
            };
            assert_eq!(bytes, want);
            assert_eq!(e["sha256"], sha256_hex(want));
            assert_eq!(e["size"], want.len());
        }
        assert_eq!(
            m.counter(
                "kmswatch_dead_letters_total",
                &[("source", "src"), ("reason", "malformed_json")]
            ),
            3.0
        );
    }

    #[test]
    fn rotation_bounds_the_files_and_a_spent_budget_drops_only_bytes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("dl.jsonl");
        let m = Metrics::default();
        // Files of 64 KiB, 3 of them.
        let mut w = DeadLetterWriter::new(p.clone(), 3 * 64 * 1024, 3, m.clone());
        let big = vec![b'x'; 20 * 1024];
        for _ in 0..600 {
            w.push(&entry("too_large", &big));
        }
        w.sync().expect("sync");
        let mut total = 0;
        for name in ["dl.jsonl", "dl.jsonl.1", "dl.jsonl.2"] {
            let len = std::fs::metadata(dir.path().join(name)).expect(name).len();
            assert!(len <= 64 * 1024 + 1024, "{name}: {len}");
            total += len;
        }
        assert!(!dir.path().join("dl.jsonl.3").exists());
        assert!(total <= 3 * (64 * 1024 + 1024));
        // Each file holds one entry with bytes (half a file is 32 KiB), the others are metadata.
        let cur = lines(&p);
        let with = cur.iter().filter(|e| e.get("data").is_some()).count();
        let without: Vec<&Value> = cur.iter().filter(|e| e.get("data").is_none()).collect();
        assert!(with <= 1, "{with}");
        assert!(!without.is_empty());
        for e in without {
            assert_eq!(e["data_omitted"], "dead_letter_budget");
            assert_eq!(e["sha256"], sha256_hex(&big));
            assert_eq!(e["size"], big.len());
        }
        assert!(
            m.counter(
                "kmswatch_dead_letter_data_dropped_total",
                &[("source", "src"), ("reason", "too_large")]
            ) > 0.0
        );
    }

    #[test]
    fn a_failed_write_is_rolled_back_and_retried() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("sub/dl.jsonl");
        let mut w = DeadLetterWriter::new(p.clone(), 1 << 20, 4, Metrics::default());
        w.push(&entry("a", b"one"));
        w.sync().expect("sync");
        // The directory becomes a file: the next write fails, then works again.
        w.push(&entry("b", b"two"));
        w.file = None;
        std::fs::rename(dir.path().join("sub"), dir.path().join("moved")).expect("mv");
        std::fs::write(dir.path().join("sub"), b"not a dir").expect("block");
        assert!(w.sync().is_err());
        assert!(w.pending());
        std::fs::remove_file(dir.path().join("sub")).expect("unblock");
        std::fs::rename(dir.path().join("moved"), dir.path().join("sub")).expect("mv back");
        w.sync().expect("retry");
        let got = lines(&p);
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!(got[1]["data"], "two");
    }
}
