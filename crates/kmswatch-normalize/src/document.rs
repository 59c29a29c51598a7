//! Containers, documents and envelopes: from a buffer to provider records.

use crate::{scan, Format, Normalizer, Outcome, Record, RecordError, RejectReason, SkipReason};
use kmswatch_model::Event;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

/// Where a record was found: origin, line (1-based, of the record's first byte in the
/// decoded text) and the path of envelopes and indexes inside the document (`Records[3]`,
/// `logEvents[2].message`). Cheap to clone: the origin and path prefix are shared.
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
    /// dead-letter output), possibly not valid UTF-8.
    Rejected {
        /// Why.
        error: RecordError,
        /// Where.
        location: Location,
        /// The offending record's bytes.
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

/// How deep envelopes may nest (a Pub/Sub push carrying a `records` batch is 2).
const MAX_ENVELOPE_DEPTH: usize = 8;

/// Magic bytes of the containers read by content, not by name.
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
const ZIP_MAGIC: [u8; 4] = [b'P', b'K', 3, 4];

/// Cap on the bytes kept of a rejected container for the dead-letter output.
const MAX_DEAD_LETTER_SNIPPET: usize = 64 << 10;

pub(crate) fn normalize(n: &Normalizer, bytes: &[u8], origin: &str, out: &mut dyn FnMut(Item)) {
    let mut w = Walker { n, out };
    w.container(bytes, &Arc::from(origin));
}

struct Walker<'n, 'o> {
    n: &'n Normalizer,
    out: &'o mut dyn FnMut(Item),
}

/// Where the walker is: a [`Location`] under construction.
#[derive(Clone)]
struct Here {
    origin: Arc<str>,
    line: u64,
    prefix: Arc<str>,
    index: Option<usize>,
    depth: usize,
}

impl Here {
    fn top(origin: &Arc<str>, line: u64) -> Here {
        Here {
            origin: origin.clone(),
            line,
            prefix: Arc::from(""),
            index: None,
            depth: 0,
        }
    }

    fn location(&self) -> Location {
        Location {
            origin: self.origin.clone(),
            line: self.line,
            prefix: self.prefix.clone(),
            index: self.index,
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

    fn element(&self, i: usize, line: u64) -> Here {
        Here {
            index: Some(i),
            line,
            depth: self.depth + 1,
            ..self.clone()
        }
    }
}

impl Walker<'_, '_> {
    fn emit_skip(&mut self, reason: SkipReason, here: &Here) {
        (self.out)(Item::Skipped {
            reason,
            location: here.location(),
        });
    }

    fn reject(&mut self, reason: RejectReason, detail: String, here: &Here, bytes: &[u8]) {
        (self.out)(Item::Rejected {
            error: RecordError::new(reason, detail),
            location: here.location(),
            bytes: bytes.to_vec(),
        });
    }

    /// Bytes as found: gzip and zip by content, anything else is text.
    fn container(&mut self, bytes: &[u8], origin: &Arc<str>) {
        if bytes.starts_with(&GZIP_MAGIC) {
            let (decoded, err) = gunzip(bytes, self.n.options().max_decompressed_bytes);
            self.text(&decoded, origin);
            if let Some((reason, detail)) = err {
                let snippet = &bytes[..bytes.len().min(MAX_DEAD_LETTER_SNIPPET)];
                let here = Here::top(origin, 0).field("gzip");
                self.reject(
                    reason,
                    format!(
                        "gzip: {detail} (the {} decoded bytes before it were processed)",
                        decoded.len()
                    ),
                    &here,
                    snippet,
                );
            }
        } else if bytes.starts_with(&ZIP_MAGIC) {
            self.zip(bytes, origin);
        } else {
            self.text(bytes, origin);
        }
    }

    fn zip(&mut self, bytes: &[u8], origin: &Arc<str>) {
        use std::io::Read;
        let limit = self.n.options().max_decompressed_bytes;
        let here = Here::top(origin, 0).field("zip");
        let mut archive = match zip::ZipArchive::new(std::io::Cursor::new(bytes)) {
            Ok(a) => a,
            Err(e) => {
                let snippet = &bytes[..bytes.len().min(MAX_DEAD_LETTER_SNIPPET)];
                return self.reject(
                    RejectReason::BadEncoding,
                    format!("zip: {e}"),
                    &here,
                    snippet,
                );
            }
        };
        for idx in 0..archive.len() {
            let mut entry = match archive.by_index(idx) {
                Ok(e) => e,
                Err(e) => {
                    self.reject(
                        RejectReason::BadEncoding,
                        format!("zip entry #{idx}: {e}"),
                        &here,
                        &[],
                    );
                    continue;
                }
            };
            if entry.is_dir() {
                continue;
            }
            let inner: Arc<str> = Arc::from(format!("{origin}!{}", entry.name()));
            if !is_log_name(entry.name()) {
                (self.out)(Item::Skipped {
                    reason: SkipReason::NotALogFile,
                    location: Here::top(&inner, 0).location(),
                });
                continue;
            }
            let mut data = Vec::new();
            let res = (&mut entry).take(limit).read_to_end(&mut data);
            drop(entry);
            match res {
                Ok(_) => self.container(&data, &inner),
                Err(e) => self.reject(
                    RejectReason::BadEncoding,
                    format!("zip entry: {e}"),
                    &Here::top(&inner, 0).field("zip"),
                    &[],
                ),
            }
        }
    }

    /// Decoded text: one JSON document, JSON lines, or concatenated documents.
    fn text(&mut self, bytes: &[u8], origin: &Arc<str>) {
        let b = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
        let start = scan::skip_ws(b, 0);
        if start == b.len() {
            return self.emit_skip(SkipReason::Empty, &Here::top(origin, 1));
        }
        if is_json_lines(b, start) {
            self.lines(b, origin);
        } else {
            self.documents(b, origin, start);
        }
    }

    /// JSON lines: every non-blank line is one value; a bad line is rejected alone.
    fn lines(&mut self, b: &[u8], origin: &Arc<str>) {
        let mut line_no = 0u64;
        // memchr finds the line ends a word at a time (a byte loop showed in profiles).
        let mut start = 0usize;
        let ends = memchr::memchr_iter(b'\n', b).chain(std::iter::once(b.len()));
        for end in ends {
            let raw_line = b.get(start..end).unwrap_or_default();
            start = end + 1;
            line_no += 1;
            let line = trim(raw_line);
            if line.is_empty() {
                continue;
            }
            let here = Here::top(origin, line_no);
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
    fn documents(&mut self, b: &[u8], origin: &Arc<str>, mut i: usize) {
        let mut lines = LineCounter::default();
        while i < b.len() {
            let here = Here::top(origin, lines.line_at(b, i));
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
        if here.depth > MAX_ENVELOPE_DEPTH {
            let end = scan::skip_value(b, i).unwrap_or(b.len());
            self.reject(
                RejectReason::UnknownFormat,
                format!("envelopes nested deeper than {MAX_ENVELOPE_DEPTH}"),
                here,
                &b[i..end],
            );
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
        res.map_err(|e| {
            if let scan::ScanError::Reported(resume) = e {
                return resume;
            }
            let resume = resync(b, i);
            let (reason, detail) = scan_error(e, &b[i..resume]);
            self.reject(reason, detail, here, &b[i..resume]);
            resume
        })
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
            let el = base.element(idx, lines.line_at(b, j));
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
                        &base.element(idx, lines.line_at(b, j)),
                        scan::ScanError::Unexpected(0),
                    ))
                }
                None => {
                    return Err(self.cut(
                        b,
                        j,
                        &base.element(idx, lines.line_at(b, j)),
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
        if b[j] == b'{' {
            let mut nested = Vec::new();
            match scan::object_fields_strict_nested(b, j, NESTED, &mut nested) {
                Ok((fields, end, strict)) => {
                    self.object(&b[j..end], &fields, &nested, strict, el);
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

    /// Reject from `j` to the next line that starts a new document (or the end): the
    /// document was cut or broken there. Returns `Reported(resume)` to propagate.
    fn cut(&mut self, b: &[u8], j: usize, here: &Here, e: scan::ScanError) -> scan::ScanError {
        let resume = resync(b, j);
        let (reason, detail) = match e {
            scan::ScanError::Eof => (
                RejectReason::Truncated,
                "document cut short here; the records before it were processed".to_string(),
            ),
            scan::ScanError::Unexpected(o) | scan::ScanError::TooDeep(o) => (
                RejectReason::MalformedJson,
                format!(
                    "malformed JSON at byte {} of this record ({:?}); the records before it were processed",
                    o.saturating_sub(j),
                    preview(b.get(o..).unwrap_or_default())
                ),
            ),
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

    /// base64 (and optionally gzip) inside an envelope field.
    fn encoded(&mut self, s: &[u8], gz: bool, here: &Here) {
        let text = match serde_json::from_slice::<String>(s) {
            Ok(t) => t,
            Err(e) => {
                let err = RecordError::from_json(e);
                return self.reject(err.reason, err.detail, here, s);
            }
        };
        let Some(decoded) = decode_base64(text.trim()) else {
            return self.reject(
                RejectReason::BadEncoding,
                "not valid base64".to_string(),
                here,
                s,
            );
        };
        let data = if gz || decoded.starts_with(&GZIP_MAGIC) {
            let (data, err) = gunzip(&decoded, self.n.options().max_decompressed_bytes);
            if let Some((reason, detail)) = err {
                return self.reject(reason, format!("gzip: {detail}"), here, s);
            }
            data
        } else {
            decoded
        };
        let t = trim(&data);
        if !matches!(t.first(), Some(b'{') | Some(b'[')) {
            return self.reject(
                RejectReason::UnknownFormat,
                format!("decoded payload is not JSON: {:?}", preview(t)),
                here,
                s,
            );
        }
        match scan::skip_value(t, 0) {
            Ok(end) if end == t.len() => self.nested(t, here),
            // Several documents or lines inside one payload.
            _ => {
                let inner: Arc<str> =
                    Arc::from(format!("{} {}", here.origin, here.location().path()));
                self.text(t, &inner)
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
        let max = self.n.options().max_record_bytes;
        if v.len() > max {
            return self.reject(
                RejectReason::TooLarge,
                format!(
                    "record of {} bytes exceeds max_record_bytes ({max})",
                    v.len()
                ),
                here,
                v,
            );
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
        let els = match scan::array_elements(events, 0) {
            Ok((els, _)) => els,
            Err(e) => {
                let (reason, detail) = scan_error(e, events);
                return self.reject(reason, detail, here, events);
            }
        };
        let base = here.elements_of("logEvents");
        if els.is_empty() {
            self.emit_skip(SkipReason::Empty, &base);
        }
        for (idx, r) in els.into_iter().enumerate() {
            let el = base.element(idx, here.line);
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
    }

    fn log_analytics(&mut self, tables: &[u8], here: &Here) {
        #[derive(serde::Deserialize)]
        struct Table {
            #[serde(default)]
            name: String,
            columns: Vec<Column>,
            rows: Vec<Vec<serde_json::Value>>,
        }
        #[derive(serde::Deserialize)]
        struct Column {
            name: String,
            #[serde(default, rename = "type")]
            kind: String,
        }
        let tables: Vec<Table> = match serde_json::from_slice(tables) {
            Ok(t) => t,
            Err(e) => {
                let err = RecordError::from_json(e);
                return self.reject(
                    err.reason,
                    format!("Log Analytics response: {}", err.detail),
                    here,
                    tables,
                );
            }
        };
        if tables.iter().all(|t| t.rows.is_empty()) {
            self.emit_skip(SkipReason::Empty, &here.field("tables"));
        }
        for (ti, t) in tables.into_iter().enumerate() {
            let base = here.elements_of(&format!("tables[{ti}:{}].rows", t.name));
            for (ri, row) in t.rows.into_iter().enumerate() {
                let mut obj = serde_json::Map::new();
                for (c, val) in t.columns.iter().zip(row) {
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
                self.nested(&bytes, &base.element(ri, here.line));
            }
        }
    }

    fn provider(&mut self, rec: &Record<'_>, p: Provider, here: &Here) {
        let res = match p {
            Provider::Aws => crate::aws::normalize(self.n, rec),
            Provider::AwsEventBridge => crate::aws::normalize_eventbridge(self.n, rec),
            Provider::Azure => crate::azure::normalize(self.n, rec),
            Provider::Gcp => crate::gcp::normalize(self.n, rec),
        };
        let location = here.location();
        (self.out)(match res {
            Ok(Outcome::Event { event, related }) => Item::Event {
                event,
                related,
                location,
            },
            Ok(Outcome::Skip(reason)) => Item::Skipped { reason, location },
            Err(error) => Item::Rejected {
                error,
                location,
                bytes: rec.bytes.to_vec(),
            },
        })
    }
}

/// A field of a small nested object (`awslogs.data`, `message.data`).
fn sub_field<'a>(obj: &'a [u8], key: &[u8]) -> Option<&'a [u8]> {
    let (fields, _) = scan::object_fields(obj, 0).ok()?;
    fields.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
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
            RejectReason::MalformedJson,
            format!("nesting deeper than {} at byte {o}", scan::MAX_DEPTH),
        ),
    }
}

/// Decompress a gzip stream (members concatenated), up to `limit` bytes. Returns what was
/// decoded and, if the stream was cut or corrupt or too large, why.
fn gunzip(bytes: &[u8], limit: u64) -> (Vec<u8>, Option<(RejectReason, String)>) {
    use std::io::Read;
    let mut out = Vec::with_capacity(bytes.len().saturating_mul(4).min(1 << 28));
    let mut dec = flate2::read::MultiGzDecoder::new(bytes).take(limit.saturating_add(1));
    let mut buf = vec![0u8; 64 << 10];
    loop {
        match dec.read(&mut buf) {
            Ok(0) => break,
            Ok(k) => out.extend_from_slice(&buf[..k]),
            Err(e) => {
                let reason = if e.kind() == std::io::ErrorKind::UnexpectedEof {
                    RejectReason::Truncated
                } else {
                    RejectReason::BadEncoding
                };
                let detail = if reason == RejectReason::Truncated {
                    "stream truncated".to_string()
                } else {
                    e.to_string()
                };
                return (out, Some((reason, detail)));
            }
        }
    }
    if out.len() as u64 > limit {
        out.truncate(limit as usize);
        return (
            out,
            Some((
                RejectReason::TooLarge,
                format!("decompressed size exceeds max_decompressed_bytes ({limit})"),
            )),
        );
    }
    (out, None)
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
