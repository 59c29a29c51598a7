//! The `container` target's input: a short program of container layers (gzip, multi-member
//! gzip, zip with one or two entries, corruption, budgets) applied to a payload, so the
//! fuzzer mutates the JSON *inside* gzip and zip instead of the compressed bytes (where
//! almost every mutation is a checksum error).
//!
//! Input: `[n] [op; n % 9] payload…`; the ops are applied innermost first (the last op is
//! the outermost layer). Each op byte:
//!
//! | op | layer |
//! |---|---|
//! | `0x00..=0x1f` | gzip, compression level `op % 10` |
//! | `0x20..=0x3f` | gzip in two members, split at `(op & 0x1f)/32` of the data |
//! | `0x40..=0x5f` | zip, one entry named [`NAMES`]`[op & 7]`, deflated when `op & 8`, nested `1 + (op & 0x10 != 0) * 15` times |
//! | `0x60..=0x7f` | zip, two entries (names `op & 7` and `2/` + `(op >> 3) & 3`), split at the middle |
//! | `0x80..=0x9f` | cut the data at `(op & 0x1f)/32` of its length |
//! | `0xa0..=0xbf` | flip one byte at `(op & 0x1f)/32` of the data |
//! | `0xc0..=0xff` | no layer: normalize with [`options`](crate::options)`(op << 2)` |
//!
//! A program is *transparent* when the layers only wrap the payload — no cut, flip, split
//! into two zip entries, non-log entry name, budget, or gzip around bytes that are
//! themselves a container (read as text by design) — and then the archive must normalize to
//! exactly what the payload alone normalizes to: the same events and the same counts.

use std::io::Write;

/// Zip entry names: log names (read) and others (skipped as `not_a_log_file`).
pub const NAMES: [&str; 8] = [
    "a.json",
    "CloudTrail/b.json.gz",
    "c.jsonl",
    "d.zip",
    "PT1H.JSON",
    "README.md",
    "e.log",
    "f.csv",
];

/// Most layers one input builds (a `0x50`-style op nests 16 zips).
pub const MAX_LAYERS: usize = 8 * 16;

/// A built archive.
#[derive(Debug)]
pub struct Built {
    /// The bytes to normalize.
    pub bytes: Vec<u8>,
    /// The payload the layers wrap.
    pub payload: Vec<u8>,
    /// The options selector (0: defaults).
    pub selector: u8,
    /// The layers only wrap the payload (see the module docs).
    pub transparent: bool,
    /// Layers applied.
    pub layers: usize,
}

/// Build the archive an input describes.
pub fn build(data: &[u8]) -> Built {
    let (n, rest) = match data.split_first() {
        Some((n, rest)) => (usize::from(*n) % 9, rest),
        None => (0, data),
    };
    let n = n.min(rest.len());
    let (ops, payload) = rest.split_at(n);
    let mut cur = payload.to_vec();
    let mut out = Built {
        bytes: Vec::new(),
        payload: payload.to_vec(),
        selector: 0,
        transparent: true,
        layers: 0,
    };
    for &op in ops {
        let frac = |len: usize| len * usize::from(op & 0x1f) / 32;
        match op {
            0x00..=0x1f => {
                out.transparent &= !is_container(&cur);
                cur = gzip(&[&cur], u32::from(op % 10));
                out.layers += 1;
            }
            0x20..=0x3f => {
                out.transparent &= !is_container(&cur);
                let (a, b) = cur.split_at(frac(cur.len()));
                cur = gzip(&[a, b], 6);
                out.layers += 1;
            }
            0x40..=0x5f => {
                let name = NAMES[usize::from(op & 7)];
                out.transparent &= kmswatch_normalize::is_log_name(name);
                let times = if op & 0x10 != 0 { 16 } else { 1 };
                for _ in 0..times {
                    cur = zip(&[(name, &cur)], op & 8 != 0);
                    out.layers += 1;
                }
            }
            0x60..=0x7f => {
                out.transparent = false;
                let (a, b) = cur.split_at(cur.len() / 2);
                let first = NAMES[usize::from(op & 7)];
                let second = format!("2/{}", NAMES[usize::from((op >> 3) & 3)]);
                cur = zip(&[(first, a), (&second, b)], true);
                out.layers += 1;
            }
            0x80..=0x9f => {
                out.transparent = false;
                cur.truncate(frac(cur.len()));
            }
            0xa0..=0xbf => {
                out.transparent = false;
                let at = frac(cur.len());
                if let Some(b) = cur.get_mut(at) {
                    *b ^= 0x5a;
                }
            }
            0xc0..=0xff => {
                out.transparent = false;
                out.selector = op << 2;
            }
        }
    }
    out.bytes = cur;
    out
}

fn is_container(b: &[u8]) -> bool {
    b.starts_with(&[0x1f, 0x8b]) || b.starts_with(b"PK\x03\x04")
}

/// A gzip stream of one member per part.
pub fn gzip(parts: &[&[u8]], level: u32) -> Vec<u8> {
    let mut out = Vec::new();
    for part in parts {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(level));
        let member = enc
            .write_all(part)
            .and_then(|()| enc.finish())
            .unwrap_or_else(|e| panic!("gzip into memory: {e}"));
        out.extend_from_slice(&member);
    }
    out
}

/// A zip archive with these entries.
pub fn zip(entries: &[(&str, &[u8])], deflate: bool) -> Vec<u8> {
    let method = if deflate {
        zip::CompressionMethod::Deflated
    } else {
        zip::CompressionMethod::Stored
    };
    let opts = zip::write::SimpleFileOptions::default().compression_method(method);
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, data) in entries {
        w.start_file(*name, opts)
            .unwrap_or_else(|e| panic!("zip entry {name} into memory: {e}"));
        w.write_all(data)
            .unwrap_or_else(|e| panic!("zip entry {name} into memory: {e}"));
    }
    w.finish()
        .unwrap_or_else(|e| panic!("zip into memory: {e}"))
        .into_inner()
}
