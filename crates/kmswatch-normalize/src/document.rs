//! Containers, documents and envelopes: from a buffer to provider records.

use crate::{
    scan, Elided, Format, Normalizer, Outcome, Record, RecordError, RejectReason, SkipReason,
    ELIDED_PREFIX_BYTES,
};
use kmswatch_model::Event;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

/// Where a record was found: origin, line (1-based, of the record's first byte in the
/// decoded text), byte offset, and the path of envelopes and indexes inside the document
/// (`Records[3]`, `logEvents[2].message`). Cheap to clone: the origin and path prefix are
/// shared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// File path, `s3://bucket/key`, `topic/partition/offset` or `-`; `archive.zip!entry`
    /// inside an archive.
    pub origin: Arc<str>,
    /// 1-based line of the record's start in the decoded text (0 for the container itself).
    pub line: u64,
    /// Envelope path within the document (empty for a bare record) ...
    pub prefix: Arc<str>,
    /// ... and the element index within the last array of that path, if any.
    pub index: Option<usize>,
    /// Byte offset of the record's first byte in the same decoded text that `line` counts
    /// in (after gzip/zip decoding; 0 for the container itself). A record found inside a
    /// decoded copy (a JSON string holding a document, a Log Analytics row) has the offset
    /// of the enclosing record. Not part of the `Display` form.
    pub offset: u64,
}

impl Location {
    /// The envelope path as text (`Records[3]`).
    pub fn path(&self) -> String {
        match self.index {
            Some(i) => format!("{}[{i}]", self.prefix),
            None => self.prefix.to_string(),
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.origin, self.line)?;
        if !self.prefix.is_empty() || self.index.is_some() {
            write!(f, " {}", self.prefix)?;
            if let Some(i) = self.index {
                write!(f, "[{i}]")?;
            }
        }
        Ok(())
    }
}

/// One record's result.
#[derive(Debug)]
pub enum Item {
    /// A normalized event.
    Event {
        /// The event.
        event: Box<Event>,
        /// Kept as related (see [`Outcome::Event`]).
        related: bool,
        /// Where it was found.
        location: Location,
    },
    /// A recognised record that produced no event.
    Skipped {
        /// Why.
        reason: SkipReason,
        /// Where.
        location: Location,
    },
    /// A record that could not be normalized; `bytes` is the record as found (for the
    /// dead-letter output), exactly, possibly not valid UTF-8: a dead-letter writer must keep
    /// it lossless (base64 when it is not UTF-8). When the rejected span was larger than
    /// `max_record_bytes`, `bytes` is only its first bytes and [`RecordError::elided`] gives
    /// its size and SHA-256 (the span stays at `location`); otherwise `bytes` is all of it.
    Rejected {
        /// Why.
        error: RecordError,
        /// Where.
        location: Location,
        /// The offending record's bytes (see above).
        bytes: Vec<u8>,
    },
}

/// Counters over items: what a `normalize` run prints at the end.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Records seen (events + skipped + rejected).
    pub records: u64,
    /// Key-management events.
    pub kms_events: u64,
    /// Related events (logging changes, S3 under a KMS key).
    pub related_events: u64,
    /// Skipped records by reason.
    pub skipped: BTreeMap<&'static str, u64>,
    /// Rejected records by reason.
    pub rejected: BTreeMap<&'static str, u64>,
}

impl Summary {
    /// Count one item.
    pub fn add(&mut self, item: &Item) {
        self.records += 1;
        match item {
            Item::Event { related: false, .. } => self.kms_events += 1,
            Item::Event { related: true, .. } => self.related_events += 1,
            Item::Skipped { reason, .. } => *self.skipped.entry(reason.as_str()).or_default() += 1,
            Item::Rejected { error, .. } => {
                *self.rejected.entry(error.reason.as_str()).or_default() += 1
            }
        }
    }

    /// Total rejected records.
    pub fn rejected_total(&self) -> u64 {
        self.rejected.values().sum()
    }

    /// Add another summary into this one.
    pub fn merge(&mut self, other: &Summary) {
        self.records += other.records;
        self.kms_events += other.kms_events;
        self.related_events += other.related_events;
        for (k, v) in &other.skipped {
            *self.skipped.entry(k).or_default() += v;
        }
        for (k, v) in &other.rejected {
            *self.rejected.entry(k).or_default() += v;
        }
    }
}

/// Top-level object fields whose own fields the record scan also reads (see
/// [`Record::nested`]): a GCP `LogEntry`'s `protoPayload` (Panther spells it in lower case).
const NESTED: &[&[u8]] = &[b"protoPayload", b"protopayload"];

/// How deep envelopes and arrays around records may nest, in fields and array levels (a
/// record in a CloudTrail file's `Records` is at 2; a Pub/Sub push carrying a `records`
/// batch, 4). Deeper is one `too_deep` rejection.
pub const MAX_ENVELOPE_DEPTH: usize = 8;

/// Magic bytes of the containers read by content, not by name.
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
const ZIP_MAGIC: [u8; 4] = [b'P', b'K', 3, 4];

/// Longest table name kept in a Log Analytics location path.
const MAX_NAME_IN_PATH: usize = 64;

pub(crate) fn normalize(n: &Normalizer, bytes: &[u8], origin: &str, out: &mut dyn FnMut(Item)) {
    let mut w = Walker {
        n,
        out,
        decoded: 0,
        layers: 0,
        stopped: false,
        cut: None,
    };
    w.container(bytes, &Arc::from(origin));
}

struct Walker<'n, 'o> {
    n: &'n Normalizer,
    out: &'o mut dyn FnMut(Item),
    /// Bytes decoded from this object so far (gzip, zip entries, base64 payloads), against
    /// `max_decompressed_bytes`.
    decoded: u64,
    /// Containers open around the current position, against `max_container_depth`.
    layers: usize,
    /// The budget ran out and was reported: nothing more of this object is read or emitted.
    stopped: bool,
    /// While a buffer cut short by the budget is read: where it ends, and the location of
    /// the record the cut fell in (its rejection is the budget's, reported once).
    cut: Option<Cut>,
}

struct Cut {
    end: usize,
    /// Blanks at the end of the cut buffer: a rejected line ends before them.
    blanks: usize,
    at: Option<Location>,
}

/// The address just past a slice: how a rejection's bytes are matched with a cut buffer.
fn end_addr(b: &[u8]) -> usize {
    (b.as_ptr() as usize).wrapping_add(b.len())
}

/// Where the walker is: a [`Location`] under construction.
#[derive(Clone)]
struct Here {
    origin: Arc<str>,
    line: u64,
    prefix: Arc<str>,
    index: Option<usize>,
    depth: usize,
    offset: u64,
    /// Address and length of the text `line` and `offset` count in.
    base: usize,
    len: usize,
}

impl Here {
    /// At `offset` (on `line`) of `text`, read from `origin`, `depth` envelopes deep.
    fn top(origin: &Arc<str>, text: &[u8], line: u64, offset: usize, depth: usize) -> Here {
        Here {
            origin: origin.clone(),
            line,
            prefix: Arc::from(""),
            index: None,
            depth,
            offset: offset as u64,
            base: text.as_ptr() as usize,
            len: text.len(),
        }
    }

    fn location(&self) -> Location {
        Location {
            origin: self.origin.clone(),
            line: self.line,
            prefix: self.prefix.clone(),
            index: self.index,
            offset: self.offset,
        }
    }

    /// The offset of `at` (a position in some buffer) when it lies in this text; the current
    /// offset otherwise (a record inside a decoded copy).
    fn offset_of(&self, at: &[u8]) -> u64 {
        let a = at.as_ptr() as usize;
        if a >= self.base && a - self.base <= self.len {
            (a - self.base) as u64
        } else {
            self.offset
        }
    }

    /// Into a field of the current value (`detail`, `message.data`).
    fn field(&self, name: &str) -> Here {
        let base = match self.index {
            Some(i) => format!("{}[{i}]", self.prefix),
            None => self.prefix.to_string(),
        };
        let prefix = if base.is_empty() {
            name.to_string()
        } else {
            format!("{base}.{name}")
        };
        Here {
            prefix: Arc::from(prefix),
            index: None,
            depth: self.depth + 1,
            ..self.clone()
        }
    }

    /// The elements of an array field: the prefix is built once, the index set per element.
    fn elements_of(&self, name: &str) -> Here {
        self.field(name)
    }

    /// Element `i` of an array, starting at `at` on `line`.
    fn element(&self, i: usize, line: u64, at: &[u8]) -> Here {
        Here {
            index: Some(i),
            line,
            depth: self.depth + 1,
            offset: self.offset_of(at),
            ..self.clone()
        }
    }
}

impl Walker<'_, '_> {
    fn emit_skip(&mut self, reason: SkipReason, here: &Here) {
        if self.stopped {
            return;
        }
        (self.out)(Item::Skipped {
            reason,
            location: here.location(),
        });
    }

    fn reject(&mut self, reason: RejectReason, detail: String, here: &Here, bytes: &[u8]) {
        self.reject_error(RecordError::new(reason, detail), here, bytes);
    }

    /// Emit a rejection. Bytes larger than `max_record_bytes` are not copied: the item keeps
    /// their start, size and SHA-256 ([`RecordError::elided`]). A rejection of the record a
    /// budget cut fell in is not emitted: the budget's rejection stands for it.
    fn reject_error(&mut self, mut error: RecordError, here: &Here, bytes: &[u8]) {
        if self.stopped {
            return;
        }
        if let Some(cut) = self.cut.as_mut() {
            let end = end_addr(bytes);
            if cut.at.is_none()
                && !bytes.is_empty()
                && end <= cut.end
                && end + cut.blanks >= cut.end
            {
                cut.at = Some(here.location());
                return;
            }
        }
        let max = self.n.options().max_record_bytes;
        let kept = if bytes.len() > max {
            error.elided = Some(Elided::of(bytes));
            &bytes[..ELIDED_PREFIX_BYTES.min(max)]
        } else {
            bytes
        };
        (self.out)(Item::Rejected {
            error,
            location: here.location(),
            bytes: kept.to_vec(),
        });
    }

    /// What is left of the object's decoding budget.
    fn remaining(&self) -> usize {
        let max = self.n.options().max_decompressed_bytes;
        usize::try_from(max.saturating_sub(self.decoded)).unwrap_or(usize::MAX)
    }

    /// Enter a container (gzip, zip, a base64 payload), or reject it as too deep.
    fn enter(&mut self, what: &str, here: &Here, bytes: &[u8]) -> bool {
        let max = self.n.options().max_container_depth;
        if self.layers >= max {
            self.reject(
                RejectReason::TooDeep,
                format!("{what} nested deeper than max_container_depth ({max}); not opened"),
                here,
                bytes,
            );
            return false;
        }
        self.layers += 1;
        true
    }

    /// The budget ran out while decoding the container `bytes` at `here`: one rejection for
    /// the rest of the object (at the record the cut fell in, when there was one), then
    /// nothing more.
    fn over_budget(&mut self, here: &Here, at: Option<Location>, bytes: &[u8], what: &str) {
        if self.stopped {
            return;
        }
        let max = self.n.options().max_decompressed_bytes;
        let detail = format!(
            "{what}: decoding this object would exceed max_decompressed_bytes ({max}); the {} \
             bytes decoded before were processed, the rest of the object was not read",
            self.decoded
        );
        let mut here = here.clone();
        if let Some(at) = at {
            here.origin = at.origin;
            here.line = at.line;
            here.prefix = at.prefix;
            here.index = at.index;
            here.offset = at.offset;
            here.base = 0;
            here.len = 0;
        }
        self.reject(RejectReason::BudgetExceeded, detail, &here, bytes);
        self.stopped = true;
    }

    /// Read decoded `text` (from `origin`); when `cut`, the budget cut it short, and the
    /// location of the record the cut fell in is returned.
    fn decoded_text(&mut self, text: &[u8], origin: &Arc<str>, cut: bool) -> Option<Location> {
        if cut && text.is_empty() {
            return None;
        }
        self.reading_cut(text, cut, |w| w.text(text, origin, 0))
    }

    /// Run `read` over `text`; when `cut`, a rejection of the span reaching the end of `text`
    /// is not emitted and its location is returned instead (see [`Walker::over_budget`]).
    fn reading_cut(
        &mut self,
        text: &[u8],
        cut: bool,
        read: impl FnOnce(&mut Self),
    ) -> Option<Location> {
        let outer = self.cut.take();
        if cut {
            let kept = text.len() - trailing_blanks(text);
            self.cut = Some(Cut {
                end: end_addr(text),
                blanks: text.len() - kept,
                at: None,
            });
        }
        read(self);
        let at = self.cut.take().and_then(|c| c.at);
        self.cut = outer;
        at
    }

    /// Bytes as found: gzip and zip by content, anything else is text.
    fn container(&mut self, bytes: &[u8], origin: &Arc<str>) {
        if self.stopped {
            return;
        }
        if bytes.starts_with(&GZIP_MAGIC) {
            let here = Here::top(origin, bytes, 0, 0, 0).field("gzip");
            if !self.enter("gzip stream", &here, bytes) {
                return;
            }
            let (decoded, ended) = gunzip(bytes, self.remaining());
            self.decoded += decoded.len() as u64;
            let over = matches!(ended, Ended::OverBudget);
            let at = self.decoded_text(&decoded, origin, over);
            match ended {
                Ended::Complete => {}
                Ended::OverBudget => self.over_budget(&here, at, bytes, "gzip"),
                Ended::Failed(reason, detail) => self.reject(
                    reason,
                    format!(
                        "gzip: {detail} (the {} decoded bytes before it were processed)",
                        decoded.len()
                    ),
                    &here,
                    bytes,
                ),
            }
            self.layers -= 1;
        } else if bytes.starts_with(&ZIP_MAGIC) {
            let here = Here::top(origin, bytes, 0, 0, 0).field("zip");
            if self.enter("zip archive", &here, bytes) {
                self.zip(bytes, origin, &here);
                self.layers -= 1;
            }
        } else {
            self.text(bytes, origin, 0);
        }
    }

    fn zip(&mut self, bytes: &[u8], origin: &Arc<str>, here: &Here) {
        let mut archive = match zip::ZipArchive::new(std::io::Cursor::new(bytes)) {
            Ok(a) => a,
            Err(e) => {
                return self.reject(RejectReason::BadEncoding, format!("zip: {e}"), here, bytes);
            }
        };
        let count = archive.len();
        for idx in 0..count {
            if self.stopped {
                return;
            }
            let remaining = self.remaining();
            let (inner, res) = match archive.by_index(idx) {
                Ok(mut entry) => {
                    if entry.is_dir() {
                        continue;
                    }
                    let inner: Arc<str> = Arc::from(format!("{origin}!{}", entry.name()));
                    if !is_log_name(entry.name()) {
                        self.emit_skip(SkipReason::NotALogFile, &Here::top(&inner, &[], 0, 0, 0));
                        continue;
                    }
                    let hint = usize::try_from(entry.size()).unwrap_or(usize::MAX);
                    (inner, fill(&mut entry, hint, remaining))
                }
                Err(e) => {
                    self.reject(
                        RejectReason::BadEncoding,
                        format!("zip entry #{idx}: {e}"),
                        here,
                        &[],
                    );
                    continue;
                }
            };
            // The entry's size was not what it said: read it again into a buffer of its size.
            let (data, ended) = match res {
                Ok(done) => done,
                Err(size) => match archive.by_index(idx) {
                    Ok(mut entry) => fill_exact(&mut entry, size, remaining),
                    Err(e) => (
                        Vec::new(),
                        Ended::Failed(RejectReason::BadEncoding, e.to_string()),
                    ),
                },
            };
            self.decoded += data.len() as u64;
            let entry_here = Here::top(&inner, &[], 0, 0, 0).field("zip");
            match ended {
                Ended::Complete => self.container(&data, &inner),
                Ended::OverBudget => {
                    let at = if data.starts_with(&GZIP_MAGIC) || data.starts_with(&ZIP_MAGIC) {
                        self.container(&data, &inner);
                        None
                    } else {
                        self.decoded_text(&data, &inner, true)
                    };
                    let what = format!(
                        "zip entry {} of {count} (the {} after it were not read)",
                        idx + 1,
                        count - idx - 1
                    );
                    self.over_budget(&entry_here, at, bytes, &what);
                }
                Ended::Failed(reason, detail) => {
                    self.reject(reason, format!("zip entry: {detail}"), &entry_here, &[])
                }
            }
        }
    }

    /// Decoded text: one JSON document, JSON lines, or concatenated documents. `depth`:
    /// envelopes around it (a base64 payload's text continues its envelope's depth).
    fn text(&mut self, bytes: &[u8], origin: &Arc<str>, depth: usize) {
        let b = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
        let start = scan::skip_ws(b, 0);
        if start == b.len() {
            return self.emit_skip(SkipReason::Empty, &Here::top(origin, bytes, 1, 0, depth));
        }
        if is_json_lines(b, start) {
            self.lines(b, bytes, origin, depth);
        } else {
            self.documents(b, bytes, origin, start, depth);
        }
    }

    /// JSON lines: every non-blank line is one value; a bad line is rejected alone. `text`
    /// is the whole decoded text `b` lies in (offsets count in it).
    fn lines(&mut self, b: &[u8], text: &[u8], origin: &Arc<str>, depth: usize) {
        let mut line_no = 0u64;
        let skew = (b.as_ptr() as usize).wrapping_sub(text.as_ptr() as usize);
        // memchr finds the line ends a word at a time (a byte loop showed in profiles).
        let mut start = 0usize;
        let ends = memchr::memchr_iter(b'\n', b).chain(std::iter::once(b.len()));
        for end in ends {
            if self.stopped {
                return;
            }
            let raw_line = b.get(start..end).unwrap_or_default();
            let line_start = start;
            start = end + 1;
            line_no += 1;
            let line = trim(raw_line);
            if line.is_empty() {
                continue;
            }
            let lead = (line.as_ptr() as usize).wrapping_sub(raw_line.as_ptr() as usize);
            let here = Here::top(origin, text, line_no, skew + line_start + lead, depth);
            match self.value_at_checked(line, 0, &here, Some(line.len())) {
                Ok(end) if end == line.len() => {}
                Ok(end) => self.reject(
                    RejectReason::MalformedJson,
                    format!(
                        "unexpected characters after the value at column {}",
                        end + 1
                    ),
                    &here,
                    raw_line,
                ),
                Err(_) => {}
            }
        }
    }

    /// One or more (pretty-printed) documents. After a broken one, reading resumes at the
    /// next line that starts with `{` or `[` in column 1.
    fn documents(&mut self, b: &[u8], text: &[u8], origin: &Arc<str>, mut i: usize, depth: usize) {
        let mut lines = LineCounter::default();
        let skew = (b.as_ptr() as usize).wrapping_sub(text.as_ptr() as usize);
        while i < b.len() && !self.stopped {
            let here = Here::top(origin, text, lines.line_at(b, i), skew + i, depth);
            match self.value_at(b, i, &here) {
                Ok(end) => i = scan::skip_ws(b, end),
                Err(resume) => i = resume,
            }
        }
    }

    /// Process the value at `b[i]` and return the offset just past it. On a structural error
    /// the error is reported (the broken span rejected) and `Err(resume)` says where reading
    /// can go on.
    fn value_at(&mut self, b: &[u8], i: usize, here: &Here) -> Result<usize, usize> {
        self.value_at_checked(b, i, here, None)
    }

    /// [`Walker::value_at`] for a value that must end exactly at `expect_end` (a JSON line):
    /// an object with anything after it is rejected whole instead of processed.
    fn value_at_checked(
        &mut self,
        b: &[u8],
        i: usize,
        here: &Here,
        expect_end: Option<usize>,
    ) -> Result<usize, usize> {
        if self.stopped {
            return Err(b.len());
        }
        if here.depth > MAX_ENVELOPE_DEPTH {
            let end = scan::skip_value(b, i).unwrap_or(b.len());
            self.too_deep(here, &b[i..end]);
            return Ok(end);
        }
        let res = match b.get(i) {
            Some(b'{') => {
                if let Some(r) = self.streamed_envelope(b, i, here) {
                    return r;
                }
                let mut nested = Vec::new();
                scan::object_fields_strict_nested(b, i, NESTED, &mut nested).map(
                    |(fields, end, strict)| {
                        if expect_end.is_none_or(|e| e == end) {
                            self.object(&b[i..end], &fields, &nested, strict, here);
                        }
                        end
                    },
                )
            }
            Some(b'[') => self.array(b, i, here, None),
            Some(_) => {
                let resume = resync(b, i);
                let seg = &b[i..resume];
                let end = scan::skip_value(b, i).ok().filter(|&e| e <= resume);
                self.reject(
                    if end.is_some() {
                        RejectReason::UnknownFormat
                    } else {
                        RejectReason::MalformedJson
                    },
                    format!("expected a JSON object, found {:?}", preview(seg)),
                    here,
                    end.map_or(seg, |e| &b[i..e]),
                );
                return end.ok_or(resume);
            }
            None => Err(scan::ScanError::Eof),
        };
        res.or_else(|e| {
            if let scan::ScanError::TooManyFields(end) = e {
                self.too_many_fields(here, &b[i..end]);
                return Ok(end);
            }
            if let scan::ScanError::Reported(resume) = e {
                return Err(resume);
            }
            let resume = resync(b, i);
            let (reason, detail) = scan_error(e, &b[i..resume]);
            self.reject(reason, detail, here, &b[i..resume]);
            Err(resume)
        })
    }

    fn too_deep(&mut self, here: &Here, v: &[u8]) {
        self.reject(
            RejectReason::TooDeep,
            format!("envelopes and arrays nested deeper than {MAX_ENVELOPE_DEPTH}"),
            here,
            v,
        );
    }

    /// Walk the array at `b[i]`, processing each element as it is delimited (one pass). A
    /// broken element stops the walk: the elements before it are kept, the rest rejected.
    fn array(
        &mut self,
        b: &[u8],
        i: usize,
        here: &Here,
        name: Option<&str>,
    ) -> Result<usize, scan::ScanError> {
        let base = match name {
            Some(n) => here.elements_of(n),
            None => Here {
                depth: here.depth,
                ..here.clone()
            },
        };
        let mut lines = LineCounter::starting(here.line, i);
        let mut j = scan::skip_ws(b, i + 1);
        if b.get(j) == Some(&b']') {
            self.emit_skip(SkipReason::Empty, &base);
            return Ok(j + 1);
        }
        let mut idx = 0usize;
        loop {
            if self.stopped {
                return Err(scan::ScanError::Reported(b.len()));
            }
            let el = base.element(idx, lines.line_at(b, j), &b[j..]);
            if b.get(j) == Some(&b'{') || b.get(j) == Some(&b'[') {
                j = self.value_at_bounded(b, j, &el)?;
            } else {
                let end = scan::skip_value(b, j).map_err(|e| self.cut(b, j, &el, e))?;
                self.reject(
                    RejectReason::UnknownFormat,
                    format!("expected a JSON object, found {:?}", preview(&b[j..end])),
                    &el,
                    &b[j..end],
                );
                j = end;
            }
            idx += 1;
            j = scan::skip_ws(b, j);
            match b.get(j) {
                Some(b',') => j = scan::skip_ws(b, j + 1),
                Some(b']') => return Ok(j + 1),
                Some(_) => {
                    return Err(self.cut(
                        b,
                        j,
                        &base.element(idx, lines.line_at(b, j), &b[j..]),
                        scan::ScanError::Unexpected(0),
                    ))
                }
                None => {
                    return Err(self.cut(
                        b,
                        j,
                        &base.element(idx, lines.line_at(b, j), &b[j..]),
                        scan::ScanError::Eof,
                    ))
                }
            }
        }
    }

    /// An element inside an array: like [`Walker::value_at`], but a structural error means
    /// the rest of the enclosing document is lost; it is rejected here, once.
    fn value_at_bounded(
        &mut self,
        b: &[u8],
        j: usize,
        el: &Here,
    ) -> Result<usize, scan::ScanError> {
        if el.depth > MAX_ENVELOPE_DEPTH {
            let end = scan::skip_value(b, j).map_err(|e| self.cut(b, j, el, e))?;
            self.too_deep(el, &b[j..end]);
            return Ok(end);
        }
        if b[j] == b'{' {
            let mut nested = Vec::new();
            match scan::object_fields_strict_nested(b, j, NESTED, &mut nested) {
                Ok((fields, end, strict)) => {
                    self.object(&b[j..end], &fields, &nested, strict, el);
                    Ok(end)
                }
                Err(scan::ScanError::TooManyFields(end)) => {
                    self.too_many_fields(el, &b[j..end]);
                    Ok(end)
                }
                Err(e) => Err(self.cut(b, j, el, e)),
            }
        } else {
            match scan::skip_value(b, j) {
                Ok(end) => {
                    let _ = self.array(b, j, el, None);
                    Ok(end)
                }
                Err(e) => Err(self.cut(b, j, el, e)),
            }
        }
    }

    fn too_many_fields(&mut self, here: &Here, v: &[u8]) {
        self.reject(
            RejectReason::TooLarge,
            format!(
                "object of {} bytes with more than {} top-level fields",
                v.len(),
                scan::MAX_FIELDS
            ),
            here,
            v,
        );
    }

    /// Reject from `j` to the next line that starts a new document (or the end): the
    /// document was cut or broken there. Returns `Reported(resume)` to propagate.
    fn cut(&mut self, b: &[u8], j: usize, here: &Here, e: scan::ScanError) -> scan::ScanError {
        let resume = resync(b, j);
        let (reason, detail) = match e {
            scan::ScanError::Eof => (
                RejectReason::Truncated,
                "document cut short here; the records before it were processed".to_string(),
            ),
            scan::ScanError::Unexpected(o) => (
                RejectReason::MalformedJson,
                format!(
                    "malformed JSON at byte {} of this record ({:?}); the records before it were processed",
                    o.saturating_sub(j),
                    preview(b.get(o..).unwrap_or_default())
                ),
            ),
            scan::ScanError::TooDeep(o) => (
                RejectReason::TooDeep,
                format!(
                    "JSON nested deeper than {} at byte {} of this record; the records before it were processed",
                    scan::MAX_DEPTH,
                    o.saturating_sub(j),
                ),
            ),
            scan::ScanError::TooManyFields(end) => {
                // Well delimited: only this object is rejected; reading goes on after it.
                self.too_many_fields(here, &b[j..end]);
                return scan::ScanError::Reported(end);
            }
            scan::ScanError::Reported(_) => return e,
        };
        self.reject(reason, detail, here, &b[j..resume]);
        scan::ScanError::Reported(resume)
    }

    /// `{"Records": [...]}` / `{"records": [...]}` with the array as the first field (how
    /// CloudTrail, Key Vault blobs and Event Hub batches are written): processed element by
    /// element in one pass. `None` when the object is not of that form.
    fn streamed_envelope(
        &mut self,
        b: &[u8],
        i: usize,
        here: &Here,
    ) -> Option<Result<usize, usize>> {
        let k = scan::skip_ws(b, i + 1);
        let key = if b[k..].starts_with(b"\"Records\"") {
            "Records"
        } else if b[k..].starts_with(b"\"records\"") {
            "records"
        } else {
            return None;
        };
        let colon = scan::skip_ws(b, k + key.len() + 2);
        if b.get(colon) != Some(&b':') {
            return None;
        }
        let at = scan::skip_ws(b, colon + 1);
        if b.get(at) != Some(&b'[') {
            return None;
        }
        let mut sub = here.clone();
        sub.line = LineCounter::starting(here.line, i).line_at(b, at);
        let res = match self.array(b, at, &sub, Some(key)) {
            Ok(end) => {
                // The remaining fields of the envelope, if any, are skipped.
                let mut j = scan::skip_ws(b, end);
                let mut ok = true;
                while b.get(j) == Some(&b',') {
                    j = scan::skip_ws(b, j + 1);
                    match scan::skip_string(b, j).map(|e| scan::skip_ws(b, e)) {
                        Ok(c) if b.get(c) == Some(&b':') => {
                            match scan::skip_value(b, scan::skip_ws(b, c + 1)) {
                                Ok(e) => j = scan::skip_ws(b, e),
                                Err(_) => {
                                    ok = false;
                                    break;
                                }
                            }
                        }
                        _ => {
                            ok = false;
                            break;
                        }
                    }
                }
                if ok && b.get(j) == Some(&b'}') {
                    Ok(j + 1)
                } else if end >= b.len() {
                    Err(b.len())
                } else {
                    let resume = resync(b, j);
                    self.reject(
                        RejectReason::MalformedJson,
                        format!("malformed envelope after its {key} array"),
                        here,
                        &b[j..resume],
                    );
                    Err(resume)
                }
            }
            Err(scan::ScanError::Reported(resume)) => Err(resume),
            Err(e) => {
                let resume = resync(b, at);
                let (reason, detail) = scan_error(e, &b[at..resume]);
                self.reject(reason, detail, here, &b[at..resume]);
                Err(resume)
            }
        };
        Some(res)
    }

    /// An array field of an envelope, already delimited; `within` is the enclosing object
    /// (for line numbers).
    fn each_element(&mut self, within: &[u8], arr: &[u8], key: &str, here: &Here) {
        let offset = (arr.as_ptr() as usize).saturating_sub(within.as_ptr() as usize);
        let mut at = here.clone();
        if offset <= within.len() {
            at.line += memchr::memchr_iter(b'\n', &within[..offset]).count() as u64;
        }
        match self.array(arr, 0, &at, Some(key)) {
            Ok(_) | Err(scan::ScanError::Reported(_)) => {}
            Err(e) => {
                let (reason, detail) = scan_error(e, arr);
                self.reject(reason, detail, &here.field(key), arr)
            }
        }
    }

    /// A whole delimited value (an envelope field).
    fn nested(&mut self, v: &[u8], here: &Here) {
        let _ = self.value_at(v, 0, here);
    }

    /// A JSON string field holding a whole JSON document (LookupEvents `CloudTrailEvent`,
    /// CloudWatch Logs `message`).
    fn embedded(&mut self, s: &[u8], here: &Here) {
        match serde_json::from_slice::<String>(s) {
            Ok(text) => {
                let t = trim(text.as_bytes());
                match self.value_at(t, 0, here) {
                    Ok(end) if end < t.len() => self.reject(
                        RejectReason::MalformedJson,
                        "unexpected characters after the embedded document".to_string(),
                        here,
                        t,
                    ),
                    _ => {}
                }
            }
            Err(e) => {
                let err = RecordError::from_json(e);
                self.reject(err.reason, err.detail, here, s)
            }
        }
    }

    /// base64 (and optionally gzip) inside an envelope field: a container, charged to the
    /// object's budget and counted in its depth.
    fn encoded(&mut self, s: &[u8], gz: bool, here: &Here) {
        if !self.enter("base64 payload", here, s) {
            return;
        }
        self.encoded_payload(s, gz, here);
        self.layers -= 1;
    }

    fn encoded_payload(&mut self, s: &[u8], gz: bool, here: &Here) {
        let text = match serde_json::from_slice::<String>(s) {
            Ok(t) => t,
            Err(e) => {
                let err = RecordError::from_json(e);
                return self.reject(err.reason, err.detail, here, s);
            }
        };
        let b64 = text.trim();
        // The decoded size is known before decoding: three bytes per four characters, and
        // one or two for the two or three of an unpadded end.
        if b64.len() / 4 * 3 + (b64.len() % 4).saturating_sub(1) > self.remaining() {
            return self.over_budget(here, None, s, "base64 payload");
        }
        let Some(decoded) = decode_base64(b64) else {
            return self.reject(
                RejectReason::BadEncoding,
                "not valid base64".to_string(),
                here,
                s,
            );
        };
        drop(text);
        self.decoded += decoded.len() as u64;
        if !(gz || decoded.starts_with(&GZIP_MAGIC)) {
            self.payload(&decoded, here, false);
            return;
        }
        let (data, ended) = gunzip(&decoded, self.remaining());
        drop(decoded);
        self.decoded += data.len() as u64;
        match ended {
            Ended::Complete => {
                self.payload(&data, here, false);
            }
            Ended::OverBudget => {
                let at = self.payload(&data, here, true);
                self.over_budget(here, at, s, "gzip in a base64 payload");
            }
            Ended::Failed(reason, detail) => {
                self.reject(reason, format!("gzip: {detail}"), here, s)
            }
        }
    }

    /// A decoded envelope payload: one document, or several documents or lines. `cut`: the
    /// budget cut it short (see [`Walker::decoded_text`]).
    fn payload(&mut self, data: &[u8], here: &Here, cut: bool) -> Option<Location> {
        let t = trim(data);
        if !matches!(t.first(), Some(b'{') | Some(b'[')) {
            if !cut {
                self.reject(
                    RejectReason::UnknownFormat,
                    format!("decoded payload is not JSON: {:?}", preview(t)),
                    here,
                    data,
                );
            }
            return None;
        }
        match scan::skip_value(t, 0) {
            Ok(end) if end == t.len() => {
                self.nested(t, here);
                None
            }
            // Several documents or lines inside one payload, or a document cut short.
            _ => {
                let inner: Arc<str> =
                    Arc::from(format!("{} {}", here.origin, here.location().path()));
                self.reading_cut(t, cut, |w| w.text(t, &inner, here.depth + 1))
            }
        }
    }

    /// A delimited object: an envelope to open, or a provider record. `strict`: the scan
    /// found it strict JSON (see [`Record::strict`]).
    fn object(
        &mut self,
        v: &[u8],
        fields: &[scan::Field<'_>],
        nested: &[scan::Field<'_>],
        strict: bool,
        here: &Here,
    ) {
        let rec = Record {
            bytes: v,
            fields,
            nested,
            strict,
            checked: None,
        };
        let get = |k: &str| rec.field(k);
        let kind = |x: Option<&[u8]>| x.and_then(|x| x.first().copied());

        // Every envelope below is recognized by one of these keys: a record with none of them
        // (nearly all) goes straight to its provider, in one pass over its keys instead of a
        // lookup per envelope.
        let envelope = fields.iter().any(|(k, _)| {
            matches!(
                *k,
                b"Records"
                    | b"records"
                    | b"awslogs"
                    | b"messageType"
                    | b"Events"
                    | b"CloudTrailEvent"
                    | b"receivedMessages"
                    | b"message"
                    | b"data"
                    | b"tables"
                    | b"value"
                    | b"event"
                    | b"detail-type"
                    | b"digestStartTime"
                    | b"digestS3Object"
            )
        });
        if !envelope {
            return self.record(v, &rec, here);
        }

        // CloudTrail S3 delivery file; Azure storage blob / Event Hub batch (when the array is
        // not the first field; see `streamed_envelope`).
        if kind(get("Records")) == Some(b'[') && get("eventSource").is_none() {
            return self.each_element(v, get("Records").unwrap_or_default(), "Records", here);
        }
        if kind(get("records")) == Some(b'[') && get("operationName").is_none() {
            return self.each_element(v, get("records").unwrap_or_default(), "records", here);
        }
        // CloudWatch Logs subscription: gzip+base64, then the decoded form.
        if let Some(awslogs) = get("awslogs").filter(|x| x.first() == Some(&b'{')) {
            return match sub_field(awslogs, b"data") {
                Some(d) => self.encoded(d, true, &here.field("awslogs.data")),
                None => self.reject(
                    RejectReason::MissingField,
                    "CloudWatch Logs payload without awslogs.data".to_string(),
                    here,
                    v,
                ),
            };
        }
        if let Some(mt) = rec.str_field("messageType") {
            if mt == "CONTROL_MESSAGE" {
                return self.emit_skip(SkipReason::ControlMessage, here);
            }
            if let Some(events) = get("logEvents").filter(|x| x.first() == Some(&b'[')) {
                return self.log_events(events, here);
            }
        }
        // CloudTrail LookupEvents: the full response and single items.
        if kind(get("Events")) == Some(b'[') {
            return self.each_element(v, get("Events").unwrap_or_default(), "Events", here);
        }
        if let Some(s) = get("CloudTrailEvent").filter(|x| x.first() == Some(&b'"')) {
            return self.embedded(s, &here.field("CloudTrailEvent"));
        }
        // Pub/Sub push (`message.data`), pull (`receivedMessages`), or a bare message.
        if kind(get("receivedMessages")) == Some(b'[') {
            return self.each_element(
                v,
                get("receivedMessages").unwrap_or_default(),
                "receivedMessages",
                here,
            );
        }
        if let Some(msg) = get("message").filter(|x| x.first() == Some(&b'{')) {
            if let Some(d) = sub_field(msg, b"data") {
                return self.encoded(d, false, &here.field("message.data"));
            }
        }
        if kind(get("data")) == Some(b'"')
            && (get("messageId").is_some() || get("message_id").is_some())
        {
            return self.encoded(get("data").unwrap_or_default(), false, &here.field("data"));
        }
        // Log Analytics query API response.
        if kind(get("tables")) == Some(b'[') {
            return self.log_analytics(get("tables").unwrap_or_default(), here);
        }
        // Azure REST list.
        if kind(get("value")) == Some(b'[') && get("operationName").is_none() {
            return self.each_element(v, get("value").unwrap_or_default(), "value", here);
        }
        // Labelled test wrappers: {"_meta": ..., "event": {...}}.
        if kind(get("event")) == Some(b'{')
            && fields
                .iter()
                .all(|(k, _)| *k == b"event" || k.first() == Some(&b'_'))
        {
            return self.nested(get("event").unwrap_or_default(), &here.field("event"));
        }
        // EventBridge.
        if get("detail-type").is_some() {
            if rec.str_field("source").as_deref() == Some("aws.kms") {
                return self.provider(&rec, Provider::AwsEventBridge, here);
            }
            if let Some(detail) = get("detail").filter(|x| x.first() == Some(&b'{')) {
                let dt = rec.str_field("detail-type").unwrap_or_default();
                if dt.ends_with("via CloudTrail") {
                    return self.nested(detail, &here.field("detail"));
                }
            }
            return self.emit_skip(SkipReason::NotAuditRecord, here);
        }
        // CloudTrail digest files.
        if get("digestStartTime").is_some() || get("digestS3Object").is_some() {
            return self.emit_skip(SkipReason::Digest, here);
        }

        self.record(v, &rec, here)
    }

    /// A provider record (no envelope around it).
    fn record(&mut self, v: &[u8], rec: &Record<'_>, here: &Here) {
        if self.too_large(v, here) {
            return;
        }
        let provider = match self.n.options().format {
            Format::AwsCloudtrail => Some(Provider::Aws),
            Format::AzureKeyvault => Some(Provider::Azure),
            Format::GcpAudit => Some(Provider::Gcp),
            Format::Auto => detect(rec),
        };
        match provider {
            Some(p) => self.provider(rec, p, here),
            None if is_known_non_audit(rec) => self.emit_skip(SkipReason::NotAuditRecord, here),
            None => self.emit_skip(SkipReason::Unrecognized, here),
        }
    }

    fn log_events(&mut self, events: &[u8], here: &Here) {
        let base = here.elements_of("logEvents");
        let mut idx = 0usize;
        for r in scan::elements(events, 0) {
            if self.stopped {
                return;
            }
            let r = match r {
                Ok(r) => r,
                Err(e) => {
                    let (reason, detail) = scan_error(e, events);
                    return self.reject(reason, detail, here, events);
                }
            };
            let el = base.element(idx, here.line, &events[r.start..]);
            idx += 1;
            match sub_field(&events[r.clone()], b"message") {
                Some(m) => self.embedded(m, &el.field("message")),
                None => self.reject(
                    RejectReason::MissingField,
                    "log event without message".to_string(),
                    &el,
                    &events[r],
                ),
            }
        }
        if idx == 0 {
            self.emit_skip(SkipReason::Empty, &base);
        }
    }

    /// A Log Analytics query response: `tables[]` of `columns` and `rows`, read a table and
    /// a row at a time (each row is one record: at most `max_record_bytes`), never parsed
    /// whole.
    fn log_analytics(&mut self, tables: &[u8], here: &Here) {
        #[derive(serde::Deserialize)]
        struct Column {
            name: String,
            #[serde(default, rename = "type")]
            kind: String,
        }
        let bad = |w: &mut Self, e: scan::ScanError, v: &[u8]| {
            let (reason, detail) = scan_error(e, v);
            w.reject(reason, format!("Log Analytics response: {detail}"), here, v);
        };
        let mut rows_seen = 0usize;
        for (ti, t) in scan::elements(tables, 0).enumerate() {
            if self.stopped {
                return;
            }
            let t = match t {
                Ok(r) => &tables[r],
                Err(e) => return bad(self, e, tables),
            };
            let [name, columns, rows] = scan::find_fields(t, [&b"name"[..], b"columns", b"rows"]);
            let name = name.and_then(scan::string_value).unwrap_or_default();
            let name: String = name.chars().take(MAX_NAME_IN_PATH).collect();
            let table = here.field(&format!("tables[{ti}:{name}]"));
            let columns = match (columns, rows) {
                (Some(c), Some(r)) if c.first() == Some(&b'[') && r.first() == Some(&b'[') => c,
                _ => {
                    self.reject(
                        RejectReason::MissingField,
                        "Log Analytics response: a table without columns or rows".to_string(),
                        &table,
                        t,
                    );
                    continue;
                }
            };
            let Some(columns) = self.part::<Vec<Column>>(columns, "Log Analytics columns", &table)
            else {
                continue;
            };
            let rows = rows.unwrap_or_default();
            let base = here.elements_of(&format!("tables[{ti}:{name}].rows"));
            for (ri, row) in scan::elements(rows, 0).enumerate() {
                if self.stopped {
                    return;
                }
                let row = match row {
                    Ok(r) => &rows[r],
                    Err(e) => {
                        bad(self, e, rows);
                        break;
                    }
                };
                rows_seen += 1;
                let at = base.element(ri, here.line, row);
                let Some(values) =
                    self.part::<Vec<serde_json::Value>>(row, "Log Analytics row", &at)
                else {
                    continue;
                };
                let mut obj = serde_json::Map::new();
                for (c, val) in columns.iter().zip(values) {
                    // `dynamic` columns come back as JSON text; give the provider the object.
                    let val = match (&val, c.kind.as_str()) {
                        (serde_json::Value::String(s), "dynamic") => {
                            serde_json::from_str(s).unwrap_or(val)
                        }
                        _ => val,
                    };
                    obj.insert(c.name.clone(), val);
                }
                let bytes = serde_json::to_vec(&obj).unwrap_or_default();
                self.nested(&bytes, &at);
            }
        }
        if rows_seen == 0 {
            self.emit_skip(SkipReason::Empty, &here.field("tables"));
        }
    }

    /// A part of a response parsed whole (at most `max_record_bytes`), or rejected.
    fn part<T: serde::de::DeserializeOwned>(
        &mut self,
        v: &[u8],
        what: &str,
        here: &Here,
    ) -> Option<T> {
        if self.too_large(v, here) {
            return None;
        }
        match serde_json::from_slice(v) {
            Ok(t) => Some(t),
            Err(e) => {
                let err = RecordError::from_json(e);
                self.reject(err.reason, format!("{what}: {}", err.detail), here, v);
                None
            }
        }
    }

    /// Reject a record over `max_record_bytes` (without copying it).
    fn too_large(&mut self, v: &[u8], here: &Here) -> bool {
        let max = self.n.options().max_record_bytes;
        if v.len() <= max {
            return false;
        }
        self.reject(
            RejectReason::TooLarge,
            format!(
                "record of {} bytes exceeds max_record_bytes ({max})",
                v.len()
            ),
            here,
            v,
        );
        true
    }

    fn provider(&mut self, rec: &Record<'_>, p: Provider, here: &Here) {
        if self.stopped || self.too_large(rec.bytes, here) {
            return;
        }
        let res = match p {
            Provider::Aws => crate::aws::normalize(self.n, rec),
            Provider::AwsEventBridge => crate::aws::normalize_eventbridge(self.n, rec),
            Provider::Azure => crate::azure::normalize(self.n, rec),
            Provider::Gcp => crate::gcp::normalize(self.n, rec),
        };
        match res {
            Ok(Outcome::Event { event, related }) => (self.out)(Item::Event {
                event,
                related,
                location: here.location(),
            }),
            Ok(Outcome::Skip(reason)) => self.emit_skip(reason, here),
            Err(error) => self.reject_error(error, here, rec.bytes),
        }
    }
}

/// A field of a small nested object (`awslogs.data`, `message.data`).
fn sub_field<'a>(obj: &'a [u8], key: &[u8]) -> Option<&'a [u8]> {
    let [v] = scan::find_fields(obj, [key]);
    v
}

/// Line numbers of offsets met in increasing order, counted incrementally.
#[derive(Default)]
struct LineCounter {
    line: u64,
    at: usize,
}

impl LineCounter {
    fn starting(line: u64, at: usize) -> LineCounter {
        LineCounter {
            line: line.saturating_sub(1),
            at,
        }
    }

    fn line_at(&mut self, b: &[u8], i: usize) -> u64 {
        if i >= self.at {
            self.line += memchr::memchr_iter(b'\n', &b[self.at..i.min(b.len())]).count() as u64;
            self.at = i;
        }
        self.line + 1
    }
}

#[derive(Debug, Clone, Copy)]
enum Provider {
    Aws,
    AwsEventBridge,
    Azure,
    Gcp,
}

/// Which provider a record belongs to, from its top-level field names.
fn detect(rec: &Record<'_>) -> Option<Provider> {
    let has = |k: &str| rec.field(k).is_some();
    if has("eventSource") || (has("eventName") && (has("eventVersion") || has("userIdentity"))) {
        return Some(Provider::Aws);
    }
    if crate::gcp::looks_like(rec) {
        return Some(Provider::Gcp);
    }
    if crate::azure::looks_like(rec)
        || has("operationName")
        || has("OperationName")
        || has("operation_name")
        || rec.str_field("Type").as_deref() == Some("AZKVAuditLogs")
    {
        return Some(Provider::Azure);
    }
    None
}

/// Known records that are not audit logs: skipped as such rather than as unrecognized.
fn is_known_non_audit(rec: &Record<'_>) -> bool {
    let has = |k: &str| rec.field(k).is_some();
    // Security Command Center notification; AWS Config rule invocation.
    (has("notificationConfigName") && has("finding"))
        || (has("configRuleName") && has("invokingEvent"))
}

/// A document is JSON lines when its first value ends on its first line and another value
/// starts on a later line.
fn is_json_lines(b: &[u8], start: usize) -> bool {
    let Some(nl) = memchr::memchr(b'\n', &b[start..]).map(|k| start + k) else {
        return false;
    };
    let more_lines = scan::skip_ws(b, nl + 1) < b.len();
    match scan::skip_value(&b[..nl], start) {
        // The first value ends on the first line.
        Ok(_) => more_lines,
        // A broken first line: JSON lines when the next line starts a new object.
        Err(_) => b[start] == b'{' && b.get(nl + 1) == Some(&b'{'),
    }
}

/// The next line after `i` that starts with `{` or `[` in column 1, or the end.
fn resync(b: &[u8], i: usize) -> usize {
    let mut j = i;
    while let Some(k) = memchr::memchr(b'\n', &b[j..]) {
        let p = j + k + 1;
        if matches!(b.get(p), Some(b'{') | Some(b'[')) {
            return p;
        }
        j = p;
    }
    b.len()
}

/// How many blanks (JSON whitespace) end `b`.
fn trailing_blanks(b: &[u8]) -> usize {
    b.iter()
        .rev()
        .take_while(|c| matches!(c, b' ' | b'\n' | b'\r' | b'\t'))
        .count()
}

fn trim(b: &[u8]) -> &[u8] {
    let s = scan::skip_ws(b, 0);
    let mut e = b.len();
    while e > s && matches!(b[e - 1], b' ' | b'\n' | b'\r' | b'\t') {
        e -= 1;
    }
    &b[s..e]
}

fn preview(b: &[u8]) -> String {
    let s = String::from_utf8_lossy(&b[..b.len().min(40)]);
    s.lines().next().unwrap_or("").to_string()
}

fn scan_error(e: scan::ScanError, seg: &[u8]) -> (RejectReason, String) {
    match e {
        scan::ScanError::Eof => (
            RejectReason::Truncated,
            format!("input ends inside a JSON value ({} bytes read)", seg.len()),
        ),
        scan::ScanError::Unexpected(o) => (
            RejectReason::MalformedJson,
            format!(
                "unexpected {:?} at byte {o}",
                preview(&seg[o.min(seg.len())..])
            ),
        ),
        scan::ScanError::Reported(_) => (RejectReason::MalformedJson, "see above".to_string()),
        scan::ScanError::TooDeep(o) => (
            RejectReason::TooDeep,
            format!("JSON nested deeper than {} at byte {o}", scan::MAX_DEPTH),
        ),
        scan::ScanError::TooManyFields(_) => (
            RejectReason::TooLarge,
            format!(
                "object of {} bytes with more than {} top-level fields",
                seg.len(),
                scan::MAX_FIELDS
            ),
        ),
    }
}

/// How a bounded decode ended.
enum Ended {
    /// The whole stream was decoded.
    Complete,
    /// The stream holds more than the budget: what fitted was decoded.
    OverBudget,
    /// The stream is cut or corrupt after what was decoded.
    Failed(RejectReason, String),
}

/// Size of the scratch buffer decoders are read through.
const READ_CHUNK: usize = 64 << 10;

/// The largest inflation ratio of deflate (about 1032:1): a size hint beyond it is a lie.
const MAX_DEFLATE_RATIO: usize = 1032;

fn read_some(r: &mut dyn std::io::Read, buf: &mut [u8]) -> std::io::Result<usize> {
    loop {
        match r.read(buf) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            res => return res,
        }
    }
}

fn failed(e: &std::io::Error) -> Ended {
    if e.kind() == std::io::ErrorKind::UnexpectedEof {
        Ended::Failed(RejectReason::Truncated, "stream truncated".to_string())
    } else {
        Ended::Failed(RejectReason::BadEncoding, e.to_string())
    }
}

/// Decode `r` into one buffer of at most `limit` bytes. The buffer starts at `hint` (a gzip
/// trailer's or zip header's size, right for honest input) and grows only while the old and
/// the new buffer together fit in `limit`, so the bytes held never exceed it, reallocation
/// included. When the data does not fit that way, the rest is only counted and
/// `Err(size)` says how big a buffer the data needs (`limit` when it is larger): decode it
/// again with [`fill_exact`].
fn fill(r: &mut dyn std::io::Read, hint: usize, limit: usize) -> Result<(Vec<u8>, Ended), usize> {
    let mut out: Vec<u8> = Vec::with_capacity(hint.min(limit));
    let mut chunk = vec![0u8; READ_CHUNK];
    loop {
        let n = match read_some(r, &mut chunk) {
            Ok(0) => return Ok((out, Ended::Complete)),
            Ok(n) => n,
            Err(e) => return Ok((out, failed(&e))),
        };
        let need = out.len() + n;
        if need > out.capacity() {
            if need > limit {
                if out.capacity() >= limit {
                    let keep = limit - out.len();
                    out.extend_from_slice(&chunk[..keep]);
                    return Ok((out, Ended::OverBudget));
                }
                return Err(limit);
            }
            let grown = need.max(out.capacity().saturating_mul(2)).min(limit);
            if out.capacity() + grown > limit {
                // Growing would hold both buffers at once: count the rest instead.
                drop(out);
                let mut total = need;
                loop {
                    match read_some(r, &mut chunk) {
                        Ok(0) | Err(_) => return Err(total),
                        Ok(n) => {
                            total += n;
                            if total > limit {
                                return Err(limit);
                            }
                        }
                    }
                }
            }
            out.reserve_exact(grown - out.len());
        }
        out.extend_from_slice(&chunk[..n]);
    }
}

/// Decode `r` into a buffer of exactly `size` bytes (as measured by [`fill`]); more data
/// than that is [`Ended::OverBudget`].
fn fill_exact(r: &mut dyn std::io::Read, size: usize, limit: usize) -> (Vec<u8>, Ended) {
    let mut out = vec![0u8; size.min(limit)];
    let mut len = 0;
    while len < out.len() {
        match read_some(r, &mut out[len..]) {
            Ok(0) => {
                out.truncate(len);
                return (out, Ended::Complete);
            }
            Ok(n) => len += n,
            Err(e) => {
                out.truncate(len);
                return (out, failed(&e));
            }
        }
    }
    let mut probe = [0u8; 1];
    match read_some(r, &mut probe) {
        Ok(0) => (out, Ended::Complete),
        Ok(_) => (out, Ended::OverBudget),
        Err(e) => (out, failed(&e)),
    }
}

/// Decompress a gzip stream (members concatenated) into at most `limit` bytes: what was
/// decoded, and how the stream ended.
fn gunzip(bytes: &[u8], limit: usize) -> (Vec<u8>, Ended) {
    // The trailer's ISIZE: the (last) member's size, modulo 4 GiB.
    let isize = bytes
        .len()
        .checked_sub(4)
        .and_then(|k| bytes.get(k..))
        .and_then(|t| <[u8; 4]>::try_from(t).ok())
        .map_or(0, |t| u32::from_le_bytes(t) as usize);
    let hint = isize.min(bytes.len().saturating_mul(MAX_DEFLATE_RATIO));
    match fill(&mut flate2::read::MultiGzDecoder::new(bytes), hint, limit) {
        Ok(done) => done,
        Err(size) => fill_exact(&mut flate2::read::MultiGzDecoder::new(bytes), size, limit),
    }
}

fn decode_base64(s: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    let engines = [
        &base64::engine::general_purpose::STANDARD,
        &base64::engine::general_purpose::URL_SAFE,
        &base64::engine::general_purpose::STANDARD_NO_PAD,
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
    ];
    engines.iter().find_map(|e| e.decode(s).ok())
}

/// File names that may hold audit logs, for directory walks and archive entries: JSON, JSON
/// lines, logs, and their gzip forms. Everything else (README, LICENSE, CSV, YAML) is not read.
pub fn is_log_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    let base = lower.strip_suffix(".gz").unwrap_or(&lower);
    let base = base.rsplit('/').next().unwrap_or(base);
    if base.ends_with(".zip") {
        return true;
    }
    [".json", ".jsonl", ".ndjson", ".log", ".txt"]
        .iter()
        .any(|ext| base.ends_with(ext))
}
