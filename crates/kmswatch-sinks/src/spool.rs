//! A bounded, durable, append-only disk queue: one per sink, used while its destination is
//! down.
//!
//! Layout of `<spool_dir>/<sink>/`:
//! * `seg-<20-digit number>.log` — segment files, appended to and never rewritten. Each record
//!   is a frame: `u32` little-endian payload length, `u32` CRC-32 of the payload, the payload
//!   (the [`Record`] as JSON). A new segment starts when the current one passes
//!   `segment_bytes`; a segment is deleted once every record in it is delivered.
//! * `index` — the read cursor, `<segment number> <byte offset>`, replaced atomically
//!   (write, fsync, rename) after each delivered batch.
//!
//! Appends are fsynced before they count as accepted. On open, a torn frame at the end of the
//! last segment (a crash mid-write) is cut off; records before it are kept. Delivery from the
//! spool is at-least-once: a crash between send and cursor update resends that batch.

use crate::Record;
use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use tokio::sync::Notify;

const FRAME_HEADER: u64 = 8;
/// Largest payload accepted when reading (a corrupt length must not allocate gigabytes).
const MAX_FRAME: u32 = 64 << 20;

/// Where a peeked batch ends; pass it to [`Spool::commit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    segment: u64,
    offset: u64,
    records: u64,
    bytes: u64,
}

#[derive(Debug)]
struct Segment {
    id: u64,
    size: u64,
    records: u64,
}

#[derive(Debug)]
struct Inner {
    segments: VecDeque<Segment>,
    writer: Option<File>,
    read_segment: u64,
    read_offset: u64,
    /// Unread bytes (frames included).
    bytes: u64,
    /// Unread records.
    records: u64,
    /// `enqueued_ms` of the record at the cursor, when known.
    head_ms: Option<i64>,
}

/// A sink's disk spool.
#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    segment_bytes: u64,
    inner: Mutex<Inner>,
    space: Notify,
    data: Notify,
}

fn seg_name(id: u64) -> String {
    format!("seg-{id:020}.log")
}

fn lock(m: &Mutex<Inner>) -> std::sync::MutexGuard<'_, Inner> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Reads frames from `f` starting at its position; stops at `limit` bytes or a bad frame.
/// Returns (records, bytes consumed).
fn read_frames(
    f: &mut File,
    limit: u64,
    max_records: usize,
    max_bytes: u64,
) -> io::Result<(Vec<Record>, u64)> {
    let mut out = Vec::new();
    let mut used = 0u64;
    let mut hdr = [0u8; 8];
    while used + FRAME_HEADER <= limit && out.len() < max_records {
        f.read_exact(&mut hdr)?;
        let len = u32::from_le_bytes([hdr[0], hdr[1], hdr[2], hdr[3]]);
        let crc = u32::from_le_bytes([hdr[4], hdr[5], hdr[6], hdr[7]]);
        if len > MAX_FRAME || used + FRAME_HEADER + u64::from(len) > limit {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "bad frame length",
            ));
        }
        let mut buf = vec![0u8; len as usize];
        f.read_exact(&mut buf)?;
        if crc32fast::hash(&buf) != crc {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "frame CRC mismatch",
            ));
        }
        let rec: Record = serde_json::from_slice(&buf)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        let frame = FRAME_HEADER + u64::from(len);
        if !out.is_empty() && used + frame > max_bytes {
            break;
        }
        used += frame;
        out.push(rec);
    }
    Ok((out, used))
}

/// Scans a segment: (valid length, records). Stops at the first bad frame.
fn scan(path: &Path) -> io::Result<(u64, u64)> {
    let mut f = File::open(path)?;
    let size = f.metadata()?.len();
    let mut pos = 0u64;
    let mut n = 0u64;
    let mut hdr = [0u8; 8];
    while pos + FRAME_HEADER <= size {
        if f.read_exact(&mut hdr).is_err() {
            break;
        }
        let len = u32::from_le_bytes([hdr[0], hdr[1], hdr[2], hdr[3]]);
        let crc = u32::from_le_bytes([hdr[4], hdr[5], hdr[6], hdr[7]]);
        if len > MAX_FRAME || pos + FRAME_HEADER + u64::from(len) > size {
            break;
        }
        let mut buf = vec![0u8; len as usize];
        if f.read_exact(&mut buf).is_err() || crc32fast::hash(&buf) != crc {
            break;
        }
        pos += FRAME_HEADER + u64::from(len);
        n += 1;
    }
    Ok((pos, n))
}

/// Counts records of a segment from `offset` on.
fn count_from(path: &Path, offset: u64, size: u64) -> io::Result<u64> {
    let mut f = File::open(path)?;
    f.seek(SeekFrom::Start(offset))?;
    let (recs, _) = read_frames(&mut f, size - offset, usize::MAX, u64::MAX)?;
    Ok(recs.len() as u64)
}

impl Spool {
    /// Opens (creating) the spool in `dir`, recovering what a previous run left.
    pub fn open(dir: impl Into<PathBuf>, max_bytes: u64, segment_bytes: u64) -> io::Result<Spool> {
        let dir = dir.into();
        fs::create_dir_all(&dir)?;
        let mut ids: Vec<u64> = Vec::new();
        for e in fs::read_dir(&dir)? {
            let name = e?.file_name();
            let name = name.to_string_lossy();
            if let Some(n) = name
                .strip_prefix("seg-")
                .and_then(|s| s.strip_suffix(".log"))
                .and_then(|s| s.parse().ok())
            {
                ids.push(n);
            }
        }
        ids.sort_unstable();
        let (mut rseg, mut roff) = match fs::read_to_string(dir.join("index")) {
            Ok(s) => {
                let mut it = s.split_whitespace().map(|x| x.parse::<u64>().ok());
                match (it.next().flatten(), it.next().flatten()) {
                    (Some(a), Some(b)) => (a, b),
                    _ => (0, 0),
                }
            }
            Err(_) => (0, 0),
        };
        let mut segments = VecDeque::new();
        for (i, id) in ids.iter().enumerate() {
            let path = dir.join(seg_name(*id));
            if *id < rseg {
                fs::remove_file(&path)?; // fully delivered before the crash
                continue;
            }
            let (valid, n) = scan(&path)?;
            let size = fs::metadata(&path)?.len();
            if valid < size {
                if i + 1 == ids.len() {
                    let f = OpenOptions::new().write(true).open(&path)?;
                    f.set_len(valid)?;
                    f.sync_all()?;
                    tracing::warn!(spool = %dir.display(), segment = id, "cut a torn record off the spool's last segment");
                } else {
                    tracing::warn!(spool = %dir.display(), segment = id, "spool segment has a bad record; the rest of it is skipped");
                }
            }
            segments.push_back(Segment {
                id: *id,
                size: valid,
                records: n,
            });
        }
        match segments.front() {
            Some(first) if first.id > rseg => {
                rseg = first.id;
                roff = 0;
            }
            Some(first) if first.id == rseg && roff > first.size => roff = first.size,
            None => roff = 0,
            _ => {}
        }
        // Persist the recovered cursor (a stale index must not outlive its segments).
        {
            let tmp = dir.join("index.tmp");
            let mut f = File::create(&tmp)?;
            write!(f, "{rseg} {roff}")?;
            f.sync_all()?;
            fs::rename(&tmp, dir.join("index"))?;
        }
        let mut bytes = 0;
        let mut records = 0;
        for s in &segments {
            if s.id == rseg {
                bytes += s.size - roff;
                records += if roff == 0 {
                    s.records
                } else {
                    count_from(&dir.join(seg_name(s.id)), roff, s.size)?
                };
            } else {
                bytes += s.size;
                records += s.records;
            }
        }
        let spool = Spool {
            dir,
            max_bytes,
            segment_bytes,
            inner: Mutex::new(Inner {
                segments,
                writer: None,
                read_segment: rseg,
                read_offset: roff,
                bytes,
                records,
                head_ms: None,
            }),
            space: Notify::new(),
            data: Notify::new(),
        };
        Ok(spool)
    }

    /// The spool's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Nothing waits in the spool.
    pub fn is_empty(&self) -> bool {
        lock(&self.inner).records == 0
    }

    /// (unread bytes, unread records).
    pub fn usage(&self) -> (u64, u64) {
        let g = lock(&self.inner);
        (g.bytes, g.records)
    }

    /// `enqueued_ms` of the oldest waiting record.
    pub fn oldest_ms(&self) -> Option<i64> {
        let g = lock(&self.inner);
        if g.records == 0 {
            return None;
        }
        if g.head_ms.is_some() {
            return g.head_ms;
        }
        drop(g);
        // Read the head record (only when a metric asks and it is not cached).
        self.peek(1, u64::MAX)
            .ok()
            .and_then(|(r, _)| r.first().map(|r| r.enqueued_ms))
    }

    /// Appends records durably (fsynced). Waits while the spool is full, unless it is empty
    /// (a batch larger than the whole spool is still accepted, alone).
    pub async fn append(&self, recs: &[Record]) -> io::Result<()> {
        let mut frames = Vec::new();
        for r in recs {
            let payload = serde_json::to_vec(r).map_err(io::Error::other)?;
            let len = u32::try_from(payload.len())
                .ok()
                .filter(|l| *l <= MAX_FRAME)
                .ok_or_else(|| io::Error::other("record larger than 64 MiB"))?;
            frames.extend_from_slice(&len.to_le_bytes());
            frames.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
            frames.extend_from_slice(&payload);
        }
        let need = frames.len() as u64;
        loop {
            let notified = self.space.notified();
            {
                let g = lock(&self.inner);
                if g.records == 0 || g.bytes + need <= self.max_bytes {
                    break;
                }
            }
            notified.await;
        }
        {
            let mut g = lock(&self.inner);
            let roll = match g.segments.back() {
                None => true,
                Some(s) => s.size >= self.segment_bytes,
            };
            if roll || g.writer.is_none() {
                let id = if roll {
                    g.segments
                        .back()
                        .map(|s| s.id + 1)
                        .unwrap_or(g.read_segment)
                } else {
                    g.segments.back().map(|s| s.id).unwrap_or(0)
                };
                let f = OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(self.dir.join(seg_name(id)))?;
                if roll {
                    g.segments.push_back(Segment {
                        id,
                        size: 0,
                        records: 0,
                    });
                    File::open(&self.dir)?.sync_all()?;
                }
                g.writer = Some(f);
            }
            let Some(w) = g.writer.as_mut() else {
                return Err(io::Error::other("spool writer missing"));
            };
            w.write_all(&frames)?;
            w.sync_data()?;
            if let Some(s) = g.segments.back_mut() {
                s.size += need;
                s.records += recs.len() as u64;
            }
            if g.records == 0 {
                g.head_ms = recs.first().map(|r| r.enqueued_ms);
            }
            g.bytes += need;
            g.records += recs.len() as u64;
        }
        self.data.notify_one();
        Ok(())
    }

    /// Waits until the spool holds something (or `notify_waiters` for shutdown).
    pub async fn wait_data(&self) {
        let n = self.data.notified();
        if !self.is_empty() {
            return;
        }
        n.await;
    }

    /// Wakes a task in [`Spool::wait_data`].
    pub fn wake(&self) {
        self.data.notify_one();
    }

    /// Reads up to `max_records` / `max_bytes` (at least one record) from the cursor, without
    /// consuming them.
    pub fn peek(&self, max_records: usize, max_bytes: u64) -> io::Result<(Vec<Record>, Cursor)> {
        let g = lock(&self.inner);
        let mut seg = g.read_segment;
        let mut off = g.read_offset;
        let mut out: Vec<Record> = Vec::new();
        let mut used = 0u64;
        for s in g.segments.iter().filter(|s| s.id >= g.read_segment) {
            if out.len() >= max_records || (used >= max_bytes && !out.is_empty()) {
                break;
            }
            let start = if s.id == g.read_segment {
                g.read_offset
            } else {
                0
            };
            if start >= s.size {
                seg = s.id;
                off = s.size;
                continue;
            }
            let mut f = File::open(self.dir.join(seg_name(s.id)))?;
            f.seek(SeekFrom::Start(start))?;
            let budget = if out.is_empty() {
                max_bytes
            } else {
                max_bytes.saturating_sub(used).max(1)
            };
            let (recs, n) = read_frames(&mut f, s.size - start, max_records - out.len(), budget)?;
            if recs.is_empty() {
                break;
            }
            used += n;
            seg = s.id;
            off = start + n;
            out.extend(recs);
            if off < s.size {
                break;
            }
        }
        let cur = Cursor {
            segment: seg,
            offset: off,
            records: out.len() as u64,
            bytes: used,
        };
        Ok((out, cur))
    }

    /// Consumes everything up to `cur` (from [`Spool::peek`]): persists the cursor, deletes
    /// finished segments, wakes writers waiting for space.
    pub fn commit(&self, cur: Cursor) -> io::Result<()> {
        {
            let mut g = lock(&self.inner);
            g.read_segment = cur.segment;
            g.read_offset = cur.offset;
            g.bytes = g.bytes.saturating_sub(cur.bytes);
            g.records = g.records.saturating_sub(cur.records);
            g.head_ms = None;
            // Delete segments before the cursor's, and the cursor's own when it is fully read
            // and not the one being written.
            let last = g.segments.back().map(|s| s.id);
            while let Some(front) = g.segments.front() {
                let done = front.id < cur.segment
                    || (front.id == cur.segment
                        && cur.offset >= front.size
                        && Some(front.id) != last);
                if !done {
                    break;
                }
                let id = front.id;
                g.segments.pop_front();
                match fs::remove_file(self.dir.join(seg_name(id))) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
                if id == cur.segment {
                    if let Some(next) = g.segments.front() {
                        g.read_segment = next.id;
                        g.read_offset = 0;
                    }
                }
            }
            let tmp = self.dir.join("index.tmp");
            let mut f = File::create(&tmp)?;
            write!(f, "{} {}", g.read_segment, g.read_offset)?;
            f.sync_all()?;
            fs::rename(&tmp, self.dir.join("index"))?;
        }
        self.space.notify_waiters();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(i: usize) -> Record {
        Record {
            id: format!("id-{i}"),
            rule_id: "r".into(),
            level: "high".into(),
            audit: false,
            body: format!("{{\"n\":{i},\"pad\":\"{}\"}}", "x".repeat(100)),
            enqueued_ms: i as i64,
        }
    }

    fn drain(s: &Spool) -> Vec<String> {
        let mut ids = Vec::new();
        loop {
            let (r, c) = s.peek(7, 10_000).unwrap_or_else(|e| panic!("{e}"));
            if r.is_empty() {
                break;
            }
            ids.extend(r.into_iter().map(|r| r.id));
            s.commit(c).unwrap_or_else(|e| panic!("{e}"));
        }
        ids
    }

    #[tokio::test]
    async fn append_peek_commit_across_segments_and_restart() {
        let d = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let s = Spool::open(d.path(), 1 << 20, 1024).unwrap_or_else(|e| panic!("{e}"));
        for chunk in (0..50).collect::<Vec<_>>().chunks(5) {
            let recs: Vec<_> = chunk.iter().map(|i| rec(*i)).collect();
            s.append(&recs).await.unwrap_or_else(|e| panic!("{e}"));
        }
        assert_eq!(s.usage().1, 50);
        assert_eq!(s.oldest_ms(), Some(0));
        // consume 12, then "crash" and reopen
        let (r, c) = s.peek(12, u64::MAX).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.len(), 12);
        s.commit(c).unwrap_or_else(|e| panic!("{e}"));
        drop(s);
        let s = Spool::open(d.path(), 1 << 20, 1024).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.usage().1, 38);
        assert_eq!(s.oldest_ms(), Some(12));
        let ids = drain(&s);
        let want: Vec<String> = (12..50).map(|i| format!("id-{i}")).collect();
        assert_eq!(ids, want);
        assert!(s.is_empty());
        assert_eq!(s.usage(), (0, 0));
        // appends after a full drain continue to work, and old segments are gone
        s.append(&[rec(99)]).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(drain(&s), vec!["id-99".to_string()]);
        let segs = fs::read_dir(d.path())
            .unwrap_or_else(|e| panic!("{e}"))
            .filter(|e| {
                e.as_ref()
                    .map(|e| e.file_name().to_string_lossy().starts_with("seg-"))
                    .unwrap_or(false)
            })
            .count();
        assert!(segs <= 1, "{segs} segments left");
    }

    #[tokio::test]
    async fn torn_tail_is_cut() {
        let d = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let s = Spool::open(d.path(), 1 << 20, 1 << 20).unwrap_or_else(|e| panic!("{e}"));
        s.append(&[rec(1), rec(2)])
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        drop(s);
        let seg = d.path().join(seg_name(0));
        let mut f = OpenOptions::new()
            .append(true)
            .open(&seg)
            .unwrap_or_else(|e| panic!("{e}"));
        f.write_all(&[200, 0, 0, 0, 1, 2])
            .unwrap_or_else(|e| panic!("{e}"));
        drop(f);
        let s = Spool::open(d.path(), 1 << 20, 1 << 20).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.usage().1, 2);
        s.append(&[rec(3)]).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(drain(&s), vec!["id-1", "id-2", "id-3"]);
    }

    #[tokio::test]
    async fn full_spool_waits_for_space() {
        let d = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let s = std::sync::Arc::new(
            Spool::open(d.path(), 2048, 1 << 20).unwrap_or_else(|e| panic!("{e}")),
        );
        let batch: Vec<_> = (0..10).map(rec).collect(); // > 1 KiB
        s.append(&batch).await.unwrap_or_else(|e| panic!("{e}"));
        let s2 = s.clone();
        let t = tokio::spawn(async move { s2.append(&[rec(10), rec(11)]).await });
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        assert!(!t.is_finished(), "append did not wait for space");
        assert_eq!(s.usage().1, 10);
        let (r, c) = s.peek(100, u64::MAX).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.len(), 10);
        s.commit(c).unwrap_or_else(|e| panic!("{e}"));
        t.await
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(drain(&s), vec!["id-10", "id-11"]);
    }
}
