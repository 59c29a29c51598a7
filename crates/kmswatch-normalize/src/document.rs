//! Containers, documents and envelopes: from a buffer to provider records.

use crate::{scan, Format, Normalizer, Outcome, Record, RecordError, RejectReason, SkipReason};
use kmswatch_model::Event;
use std::collections::BTreeMap;
use std::fmt;

/// Where a record was found: origin, line (1-based, of the record's first byte in the
/// decoded text) and the path of envelopes and indexes inside that line's document
/// (`Records[3]`, `logEvents[2]`, `zip:logs/a.json`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// File path, `s3://bucket/key`, `topic/partition/offset` or `-`.
    pub origin: String,
    /// 1-based line of the record's start in the decoded text.
    pub line: u64,
    /// Envelope path within the document, empty for a bare record.
    pub path: String,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.origin, self.line)?;
        if !self.path.is_empty() {
            write!(f, " {}", self.path)?;
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

/// How deep envelopes may nest (a Pub/Sub push carrying a `records` batch is 2).
const MAX_ENVELOPE_DEPTH: usize = 8;

/// Magic bytes of the containers read by content, not by name.
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
const ZIP_MAGIC: [u8; 4] = [b'P', b'K', 3, 4];

struct Walker<'n, 'o> {
    n: &'n Normalizer,
    out: &'o mut dyn FnMut(Item),
}

pub(crate) fn normalize(n: &Normalizer, bytes: &[u8], origin: &str, out: &mut dyn FnMut(Item)) {
    let mut w = Walker { n, out };
    w.container(bytes, origin);
}

fn loc(origin: &str, line: u64, path: &str) -> Location {
    Location {
        origin: origin.to_string(),
        line,
        path: path.to_string(),
    }
}

fn join(path: &str, seg: &str) -> String {
    if path.is_empty() {
        seg.to_string()
    } else if seg.starts_with('[') {
        format!("{path}{seg}")
    } else {
        format!("{path}.{seg}")
    }
}

/// Cap on the bytes kept of a rejected container/segment for the dead-letter output.
const MAX_DEAD_LETTER_SNIPPET: usize = 64 << 10;

impl Walker<'_, '_> {
    fn reject(&mut self, reason: RejectReason, detail: String, location: Location, bytes: &[u8]) {
        (self.out)(Item::Rejected {
            error: RecordError::new(reason, detail),
            location,
            bytes: bytes.to_vec(),
        });
    }

    /// Bytes as found: gzip and zip by content, anything else is text.
    fn container(&mut self, bytes: &[u8], origin: &str) {
        if bytes.starts_with(&GZIP_MAGIC) {
            let (decoded, err) = gunzip(bytes, self.n.options().max_decompressed_bytes);
            self.text(&decoded, origin);
            if let Some((reason, detail)) = err {
                let snippet = &bytes[..bytes.len().min(MAX_DEAD_LETTER_SNIPPET)];
                self.reject(
                    reason,
                    format!(
                        "gzip: {detail} (the {} decoded bytes before it were processed)",
                        decoded.len()
                    ),
                    loc(origin, 0, "gzip"),
                    snippet,
                );
            }
        } else if bytes.starts_with(&ZIP_MAGIC) {
            self.zip(bytes, origin);
        } else {
            self.text(bytes, origin);
        }
    }

    fn zip(&mut self, bytes: &[u8], origin: &str) {
        let limit = self.n.options().max_decompressed_bytes;
        let mut archive = match zip::ZipArchive::new(std::io::Cursor::new(bytes)) {
            Ok(a) => a,
            Err(e) => {
                let snippet = &bytes[..bytes.len().min(MAX_DEAD_LETTER_SNIPPET)];
                return self.reject(
                    RejectReason::BadEncoding,
                    format!("zip: {e}"),
                    loc(origin, 0, "zip"),
                    snippet,
                );
            }
        };
        for idx in 0..archive.len() {
            let (name, data) = {
                let mut entry = match archive.by_index(idx) {
                    Ok(e) => e,
                    Err(e) => {
                        self.reject(
                            RejectReason::BadEncoding,
                            format!("zip entry #{idx}: {e}"),
                            loc(origin, 0, "zip"),
                            &[],
                        );
                        continue;
                    }
                };
                if entry.is_dir() {
                    continue;
                }
                let name = entry.name().to_string();
                if !is_log_name(&name) {
                    continue;
                }
                let mut data = Vec::new();
                use std::io::Read;
                let res = (&mut entry).take(limit).read_to_end(&mut data);
                if let Err(e) = res {
                    let inner = format!("{origin}!{name}");
                    self.reject(
                        RejectReason::BadEncoding,
                        format!("zip entry: {e}"),
                        loc(&inner, 0, "zip"),
                        &[],
                    );
                    continue;
                }
                (name, data)
            };
            let inner = format!("{origin}!{name}");
            self.container(&data, &inner);
        }
    }

    /// Decoded text: one JSON document, JSON lines, or concatenated documents.
    fn text(&mut self, bytes: &[u8], origin: &str) {
        let b = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
        let start = scan::skip_ws(b, 0);
        if start == b.len() {
            (self.out)(Item::Skipped {
                reason: SkipReason::Empty,
                location: loc(origin, 1, ""),
            });
            return;
        }
        if is_json_lines(b, start) {
            self.lines(b, origin);
        } else {
            self.documents(b, origin, start);
        }
    }

    /// JSON lines: every non-blank line is one value; a bad line is rejected alone.
    fn lines(&mut self, b: &[u8], origin: &str) {
        let mut line_no = 0u64;
        for raw_line in b.split(|&c| c == b'\n') {
            line_no += 1;
            let line = trim(raw_line);
            if line.is_empty() {
                continue;
            }
            match scan::skip_value(line, 0) {
                Ok(end) if end == line.len() => self.value(line, origin, line_no, "", 0),
                Ok(end) => self.reject(
                    RejectReason::MalformedJson,
                    format!(
                        "unexpected characters after the value at column {}",
                        end + 1
                    ),
                    loc(origin, line_no, ""),
                    raw_line,
                ),
                Err(e) => {
                    let (reason, detail) = scan_error(e, line);
                    self.reject(reason, detail, loc(origin, line_no, ""), raw_line)
                }
            }
        }
    }

    /// One or more (pretty-printed) documents. After a broken one, reading resumes at the
    /// next line that starts with `{` or `[` in column 1.
    fn documents(&mut self, b: &[u8], origin: &str, mut i: usize) {
        let mut line = 1u64;
        let mut counted_to = 0usize;
        while i < b.len() {
            line += memchr::memchr_iter(b'\n', &b[counted_to..i]).count() as u64;
            counted_to = i;
            let res = match b[i] {
                b'{' | b'[' => scan::skip_value(b, i),
                _ => Err(scan::ScanError::Unexpected(i)),
            };
            match res {
                Ok(end) => {
                    self.value(&b[i..end], origin, line, "", 0);
                    i = scan::skip_ws(b, end);
                }
                Err(e) => {
                    let resume = resync(b, i);
                    let seg = &b[i..resume];
                    let (reason, detail) = if b[i] == b'{' || b[i] == b'[' {
                        scan_error(e, seg)
                    } else {
                        (
                            RejectReason::MalformedJson,
                            format!("expected a JSON object or array, found {:?}", preview(seg)),
                        )
                    };
                    self.reject(reason, detail, loc(origin, line, ""), seg);
                    i = resume;
                }
            }
        }
    }

    /// One JSON value: an envelope to open, an array to walk, or a provider record.
    fn value(&mut self, v: &[u8], origin: &str, line: u64, path: &str, depth: usize) {
        if depth > MAX_ENVELOPE_DEPTH {
            return self.reject(
                RejectReason::UnknownFormat,
                format!("envelopes nested deeper than {MAX_ENVELOPE_DEPTH}"),
                loc(origin, line, path),
                v,
            );
        }
        match v.first() {
            Some(b'[') => match scan::array_elements(v, 0) {
                Ok((elements, _)) => {
                    for (idx, r) in elements.into_iter().enumerate() {
                        let p = join(path, &format!("[{idx}]"));
                        self.value(&v[r], origin, line, &p, depth + 1);
                    }
                }
                Err(e) => {
                    let (reason, detail) = scan_error(e, v);
                    self.reject(reason, detail, loc(origin, line, path), v)
                }
            },
            Some(b'{') => match scan::object_fields(v, 0) {
                Ok((fields, _)) => self.object(v, &fields, origin, line, path, depth),
                Err(e) => {
                    let (reason, detail) = scan_error(e, v);
                    self.reject(reason, detail, loc(origin, line, path), v)
                }
            },
            _ => self.reject(
                RejectReason::UnknownFormat,
                format!("expected a JSON object, found {:?}", preview(v)),
                loc(origin, line, path),
                v,
            ),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn each_element(
        &mut self,
        arr: &[u8],
        key: &str,
        origin: &str,
        line: u64,
        path: &str,
        depth: usize,
    ) {
        match scan::array_elements(arr, 0) {
            Ok((elements, _)) => {
                for (idx, r) in elements.into_iter().enumerate() {
                    let p = join(path, &format!("{key}[{idx}]"));
                    self.value(&arr[r], origin, line, &p, depth + 1);
                }
            }
            Err(e) => {
                let (reason, detail) = scan_error(e, arr);
                self.reject(reason, detail, loc(origin, line, &join(path, key)), arr)
            }
        }
    }

    /// A JSON string field holding a whole JSON document (LookupEvents `CloudTrailEvent`,
    /// CloudWatch Logs `message`).
    fn embedded(&mut self, s: &[u8], origin: &str, line: u64, path: &str, depth: usize) {
        match serde_json::from_slice::<String>(s) {
            Ok(text) => {
                let t = trim(text.as_bytes());
                self.value(t, origin, line, path, depth + 1)
            }
            Err(e) => {
                let err = RecordError::from_json(e);
                self.reject(err.reason, err.detail, loc(origin, line, path), s)
            }
        }
    }

    /// base64 (and optionally gzip) inside an envelope field.
    fn encoded(&mut self, s: &[u8], gz: bool, origin: &str, line: u64, path: &str, depth: usize) {
        let text = match serde_json::from_slice::<String>(s) {
            Ok(t) => t,
            Err(e) => {
                let err = RecordError::from_json(e);
                return self.reject(err.reason, err.detail, loc(origin, line, path), s);
            }
        };
        let decoded = match decode_base64(text.trim()) {
            Some(d) => d,
            None => {
                return self.reject(
                    RejectReason::BadEncoding,
                    "not valid base64".to_string(),
                    loc(origin, line, path),
                    s,
                )
            }
        };
        let data = if gz || decoded.starts_with(&GZIP_MAGIC) {
            let (data, err) = gunzip(&decoded, self.n.options().max_decompressed_bytes);
            if let Some((reason, detail)) = err {
                return self.reject(
                    reason,
                    format!("gzip: {detail}"),
                    loc(origin, line, path),
                    s,
                );
            }
            data
        } else {
            decoded
        };
        let t = trim(&data);
        if t.first() == Some(&b'{') || t.first() == Some(&b'[') {
            match scan::skip_value(t, 0) {
                Ok(end) if end == t.len() => self.value(t, origin, line, path, depth + 1),
                Ok(_) | Err(_) => {
                    // Several documents or lines inside one payload.
                    let inner = format!("{origin} {path}");
                    self.text(t, &inner)
                }
            }
        } else {
            self.reject(
                RejectReason::UnknownFormat,
                format!("decoded payload is not JSON: {:?}", preview(t)),
                loc(origin, line, path),
                s,
            )
        }
    }

    fn object(
        &mut self,
        v: &[u8],
        fields: &[scan::Field<'_>],
        origin: &str,
        line: u64,
        path: &str,
        depth: usize,
    ) {
        let rec = Record { bytes: v, fields };
        let get = |k: &str| rec.field(k);
        let is_arr = |x: Option<&[u8]>| x.is_some_and(|x| x.first() == Some(&b'['));
        let is_obj = |x: Option<&[u8]>| x.is_some_and(|x| x.first() == Some(&b'{'));
        let is_str = |x: Option<&[u8]>| x.is_some_and(|x| x.first() == Some(&b'"'));

        // --- envelopes ---------------------------------------------------------------
        // CloudTrail S3 delivery file.
        if is_arr(get("Records")) && get("eventSource").is_none() {
            return self.each_element(
                get("Records").unwrap_or_default(),
                "Records",
                origin,
                line,
                path,
                depth,
            );
        }
        // Azure storage blob / Event Hub batch / diagnostic-settings export.
        if is_arr(get("records")) && get("operationName").is_none() {
            return self.each_element(
                get("records").unwrap_or_default(),
                "records",
                origin,
                line,
                path,
                depth,
            );
        }
        // CloudWatch Logs subscription: gzip+base64, then the decoded form.
        if let Some(awslogs) = get("awslogs").filter(|x| x.first() == Some(&b'{')) {
            let data = scan::object_fields(awslogs, 0)
                .ok()
                .and_then(|(f, _)| f.iter().find(|(k, _)| *k == b"data").map(|(_, v)| *v));
            return match data {
                Some(d) => self.encoded(d, true, origin, line, &join(path, "awslogs.data"), depth),
                None => self.reject(
                    RejectReason::MissingField,
                    "CloudWatch Logs payload without awslogs.data".to_string(),
                    loc(origin, line, path),
                    v,
                ),
            };
        }
        if let Some(mt) = rec.str_field("messageType") {
            if mt == "CONTROL_MESSAGE" {
                return (self.out)(Item::Skipped {
                    reason: SkipReason::ControlMessage,
                    location: loc(origin, line, path),
                });
            }
            if let Some(events) = get("logEvents").filter(|x| x.first() == Some(&b'[')) {
                return match scan::array_elements(events, 0) {
                    Ok((els, _)) => {
                        for (idx, r) in els.into_iter().enumerate() {
                            let p = join(path, &format!("logEvents[{idx}].message"));
                            let msg = scan::object_fields(&events[r.clone()], 0).ok().and_then(
                                |(f, _)| f.iter().find(|(k, _)| *k == b"message").map(|(_, v)| *v),
                            );
                            match msg {
                                Some(m) => self.embedded(m, origin, line, &p, depth),
                                None => self.reject(
                                    RejectReason::MissingField,
                                    "log event without message".to_string(),
                                    loc(origin, line, &p),
                                    &events[r],
                                ),
                            }
                        }
                    }
                    Err(e) => {
                        let (reason, detail) = scan_error(e, events);
                        self.reject(reason, detail, loc(origin, line, path), v)
                    }
                };
            }
        }
        // CloudTrail LookupEvents: the full response and single items.
        if is_arr(get("Events")) {
            return self.each_element(
                get("Events").unwrap_or_default(),
                "Events",
                origin,
                line,
                path,
                depth,
            );
        }
        if let Some(s) = get("CloudTrailEvent").filter(|x| x.first() == Some(&b'"')) {
            return self.embedded(s, origin, line, &join(path, "CloudTrailEvent"), depth);
        }
        // Pub/Sub push (`message.data`), pull (`receivedMessages`), or a bare message.
        if is_arr(get("receivedMessages")) {
            return self.each_element(
                get("receivedMessages").unwrap_or_default(),
                "receivedMessages",
                origin,
                line,
                path,
                depth,
            );
        }
        if let Some(msg) = get("message").filter(|x| x.first() == Some(&b'{')) {
            if let Ok((f, _)) = scan::object_fields(msg, 0) {
                if let Some((_, d)) = f.iter().find(|(k, _)| *k == b"data") {
                    return self.encoded(
                        d,
                        false,
                        origin,
                        line,
                        &join(path, "message.data"),
                        depth,
                    );
                }
            }
        }
        if is_str(get("data")) && (get("messageId").is_some() || get("message_id").is_some()) {
            return self.encoded(
                get("data").unwrap_or_default(),
                false,
                origin,
                line,
                &join(path, "data"),
                depth,
            );
        }
        // Log Analytics query API response.
        if is_arr(get("tables")) {
            return self.log_analytics(
                get("tables").unwrap_or_default(),
                origin,
                line,
                path,
                depth,
            );
        }
        // Azure REST list.
        if is_arr(get("value")) && get("operationName").is_none() {
            return self.each_element(
                get("value").unwrap_or_default(),
                "value",
                origin,
                line,
                path,
                depth,
            );
        }
        // Labelled test wrappers: {"_meta": ..., "event": {...}}.
        if is_obj(get("event"))
            && fields
                .iter()
                .all(|(k, _)| *k == b"event" || k.first() == Some(&b'_'))
        {
            return self.value(
                get("event").unwrap_or_default(),
                origin,
                line,
                &join(path, "event"),
                depth + 1,
            );
        }
        // EventBridge.
        if get("detail-type").is_some() {
            let source = rec.str_field("source");
            if source.as_deref() == Some("aws.kms") {
                return self.provider(&rec, Provider::AwsEventBridge, origin, line, path);
            }
            if let Some(detail) = get("detail").filter(|x| x.first() == Some(&b'{')) {
                let dt = rec.str_field("detail-type").unwrap_or_default();
                if dt.ends_with("via CloudTrail") {
                    return self.value(detail, origin, line, &join(path, "detail"), depth + 1);
                }
            }
            return (self.out)(Item::Skipped {
                reason: SkipReason::NotAuditRecord,
                location: loc(origin, line, path),
            });
        }
        // CloudTrail digest files.
        if get("digestStartTime").is_some() || get("digestS3Object").is_some() {
            return (self.out)(Item::Skipped {
                reason: SkipReason::Digest,
                location: loc(origin, line, path),
            });
        }

        // --- a provider record ----------------------------------------------------------
        if v.len() > self.n.options().max_record_bytes {
            return self.reject(
                RejectReason::TooLarge,
                format!(
                    "record of {} bytes exceeds max_record_bytes ({})",
                    v.len(),
                    self.n.options().max_record_bytes
                ),
                loc(origin, line, path),
                v,
            );
        }
        let provider = match self.n.options().format {
            Format::AwsCloudtrail => Some(Provider::Aws),
            Format::AzureKeyvault => Some(Provider::Azure),
            Format::GcpAudit => Some(Provider::Gcp),
            Format::Auto => detect(&rec),
        };
        match provider {
            Some(p) => self.provider(&rec, p, origin, line, path),
            None => (self.out)(Item::Skipped {
                reason: SkipReason::Unrecognized,
                location: loc(origin, line, path),
            }),
        }
    }

    fn log_analytics(&mut self, tables: &[u8], origin: &str, line: u64, path: &str, depth: usize) {
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
                    loc(origin, line, path),
                    tables,
                );
            }
        };
        for (ti, t) in tables.into_iter().enumerate() {
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
                let p = join(path, &format!("tables[{ti}:{}].rows[{ri}]", t.name));
                self.value(&bytes, origin, line, &p, depth + 1);
            }
        }
    }

    fn provider(&mut self, rec: &Record<'_>, p: Provider, origin: &str, line: u64, path: &str) {
        let res = match p {
            Provider::Aws => crate::aws::normalize(self.n, rec),
            Provider::AwsEventBridge => crate::aws::normalize_eventbridge(self.n, rec),
            Provider::Azure => crate::azure::normalize(self.n, rec),
            Provider::Gcp => crate::gcp::normalize(self.n, rec),
        };
        let location = loc(origin, line, path);
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
    if has("protoPayload") || (has("logName") && (has("insertId") || has("resource"))) {
        return Some(Provider::Gcp);
    }
    if has("operationName")
        || has("OperationName")
        || has("operation_name")
        || rec.str_field("Type").as_deref() == Some("AZKVAuditLogs")
    {
        return Some(Provider::Azure);
    }
    None
}

/// A document is JSON lines when its first value ends on its first line and another value
/// starts on a later line.
fn is_json_lines(b: &[u8], start: usize) -> bool {
    let Some(nl) = memchr::memchr(b'\n', &b[start..]).map(|k| start + k) else {
        return false;
    };
    match scan::skip_value(&b[..nl], start) {
        Ok(end) => {
            let next = scan::skip_ws(b, end);
            next < b.len() && next > nl
        }
        _ => {
            // A broken first line: JSON lines when the next line starts a new object.
            let next = scan::skip_ws(b, nl + 1);
            b.get(nl + 1) == Some(&b'{') && next == nl + 1 && b[start] == b'{'
        }
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
