//! Cutting a byte stream (a file from an offset, stdin) into batches that end on a line
//! boundary, in bounded memory.
//!
//! The [`Chunker`] is a state machine that does no I/O: the caller reads into
//! [`Chunker::spare`], reports the count with [`Chunker::filled`] and takes pieces with
//! [`Chunker::pop`]. So one implementation serves blocking file reads and async stdin, and
//! its state is consistent at every await point of the caller (cancel-safe).
//!
//! Memory: the buffer holds at most `max(max_batch_bytes, max_record_bytes + 1)` bytes plus
//! one read. A line longer than `max_record_bytes` is not kept: the bytes read so far are
//! hashed and dropped, and the rest of the line streams through the hash in reads of
//! [`BLOCK`] bytes until its newline (or the end of the input).

use sha2::{Digest, Sha256};

/// Bytes asked for per read while a line is skipped or a long line is collected.
pub(crate) const BLOCK: usize = 256 * 1024;

/// What the chunker hands out.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Piece {
    /// Lines starting at input offset `start`: complete lines (each with its newline), or
    /// the final line of an input that ended (or was declared complete) without one.
    Lines {
        /// Input offset of the first byte.
        start: u64,
        /// The bytes.
        bytes: Vec<u8>,
    },
    /// A line longer than `max_record_bytes`, skipped unread.
    TooLong {
        /// Input offset of the line's first byte.
        start: u64,
        /// The line's length, without its newline.
        size: u64,
        /// Lower-case hex SHA-256 of the line, without its newline.
        sha256: String,
        /// Input offset just after the line (and its newline, when it had one).
        end: u64,
    },
}

impl Piece {
    /// The input range the piece covers.
    pub(crate) fn range(&self) -> (u64, u64) {
        match self {
            Piece::Lines { start, bytes } => (*start, *start + bytes.len() as u64),
            Piece::TooLong { start, end, .. } => (*start, *end),
        }
    }
}

/// How much more input the caller may still read before asking for a piece.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum End {
    /// More input can be read now: hand out only full batches (or one long line).
    More,
    /// Nothing more to read right now: hand out every complete line.
    Now,
    /// The input ended, or its last line is known to be complete: hand out everything,
    /// including a final line without a newline and an over-long line being skipped.
    Final,
}

#[derive(Debug)]
struct Skip {
    start: u64,
    size: u64,
    sha: Sha256,
}

/// See the module documentation.
#[derive(Debug)]
pub(crate) struct Chunker {
    max_batch: usize,
    max_record: usize,
    /// Input offset of `buf[0]` (while skipping: of the next byte to read).
    at: u64,
    /// Read and not handed out: complete lines first, then at most one incomplete line; only
    /// `buf[..valid]` holds data (the rest is space handed out by [`Chunker::spare`] that was
    /// not filled, for example because the caller's read was cancelled).
    buf: Vec<u8>,
    /// Bytes of `buf` that hold data.
    valid: usize,
    /// An over-long line being skipped.
    skip: Option<Skip>,
    /// A skipped line that ended inside the last read, to hand out first.
    done: Option<Piece>,
}

fn hex_sha(sha: Sha256) -> String {
    hex::encode(sha.finalize())
}

impl Chunker {
    /// A chunker for input starting at offset `at`. `max_batch` must not exceed `max_record`
    /// (configuration validation guarantees it), so a batch never holds an over-long line.
    pub(crate) fn new(at: u64, max_batch: usize, max_record: usize) -> Self {
        Self {
            max_batch: max_batch.max(1),
            max_record: max_record.max(max_batch).max(1),
            at,
            buf: Vec::new(),
            valid: 0,
            skip: None,
            done: None,
        }
    }

    /// Input offset of the next byte to read.
    pub(crate) fn read_pos(&self) -> u64 {
        self.at + self.valid as u64
    }

    /// The bytes read and not handed out (lines and the incomplete last one).
    pub(crate) fn buffered(&self) -> &[u8] {
        &self.buf[..self.valid]
    }

    /// Drop space handed out by [`Chunker::spare`] and never filled.
    fn settle(&mut self) {
        self.buf.truncate(self.valid);
    }

    /// The incomplete last line, when everything before it has been handed out and no
    /// over-long line is being skipped.
    pub(crate) fn tail(&self) -> Option<&[u8]> {
        let data = self.buffered();
        if self.skip.is_some() || self.done.is_some() || data.is_empty() {
            return None;
        }
        (!data.contains(&b'\n')).then_some(data)
    }

    /// An over-long line is being skipped and has not ended yet.
    pub(crate) fn skipping(&self) -> bool {
        self.skip.is_some()
    }

    /// Space to read into; report the count read with [`Chunker::filled`].
    pub(crate) fn spare(&mut self) -> &mut [u8] {
        self.settle();
        let len = self.buf.len();
        let want = if self.skip.is_some() {
            BLOCK
        } else if len < self.max_batch {
            self.max_batch - len
        } else {
            BLOCK.min((self.max_record + 1).saturating_sub(len).max(1))
        };
        // At most two sizes, never doubling: a batch's (`max_batch`), and once a line runs
        // past it, the bound at once (max(max_batch, max_record + 1)), so collecting a long
        // line costs one reallocation (old + new) instead of a doubling series whose last
        // step held 1.5 times the bound. Pages reserved and not yet read into are not resident.
        let bound = self.max_batch.max(self.max_record + 1).max(BLOCK);
        if self.buf.capacity() < len + want {
            let target = if len + want <= self.max_batch {
                self.max_batch
            } else {
                bound.max(len + want)
            };
            self.buf.reserve_exact(target - len);
        }
        self.buf.resize(len + want, 0);
        &mut self.buf[len..]
    }

    /// `n` bytes were read into the last [`Chunker::spare`].
    pub(crate) fn filled(&mut self, n: usize) {
        self.valid = (self.valid + n).min(self.buf.len());
        self.settle();
        let Some(s) = self.skip.as_mut() else {
            return;
        };
        // While skipping the buffer holds only the bytes just read.
        match memchr::memchr(b'\n', &self.buf) {
            Some(i) => {
                s.sha.update(&self.buf[..i]);
                s.size += i as u64;
                let end = s.start + s.size + 1;
                if let Some(s) = self.skip.take() {
                    self.done = Some(Piece::TooLong {
                        start: s.start,
                        size: s.size,
                        sha256: hex_sha(s.sha),
                        end,
                    });
                }
                self.buf.drain(..=i);
                self.valid = self.buf.len();
                self.at = end;
            }
            None => {
                s.sha.update(&self.buf);
                s.size += self.buf.len() as u64;
                self.at += self.buf.len() as u64;
                self.buf.clear();
                self.valid = 0;
            }
        }
    }

    /// The next piece, if one is ready given `end`.
    pub(crate) fn pop(&mut self, end: End) -> Option<Piece> {
        self.settle();
        if let Some(p) = self.done.take() {
            return Some(p);
        }
        if self.skip.is_some() {
            if end != End::Final {
                return None;
            }
            let s = self.skip.take()?;
            return Some(Piece::TooLong {
                start: s.start,
                size: s.size,
                sha256: hex_sha(s.sha),
                end: s.start + s.size,
            });
        }
        if self.buf.is_empty() {
            return None;
        }
        if end == End::Final && self.buf.len() <= self.max_batch {
            // The rest fits one batch (and so holds no over-long line).
            return Some(self.take_lines(self.buf.len()));
        }
        let window = &self.buf[..self.buf.len().min(self.max_batch)];
        if let Some(i) = memchr::memrchr(b'\n', window) {
            if self.buf.len() >= self.max_batch || end != End::More {
                return Some(self.take_lines(i + 1));
            }
            return None;
        }
        if self.buf.len() >= self.max_batch {
            // The first line is longer than a batch.
            if let Some(i) = memchr::memchr(b'\n', &self.buf[self.max_batch..]) {
                let nl = self.max_batch + i;
                if nl <= self.max_record {
                    return Some(self.take_lines(nl + 1));
                }
                let start = self.at;
                let sha256 = hex::encode(Sha256::digest(&self.buf[..nl]));
                self.buf.drain(..=nl);
                self.valid = self.buf.len();
                self.at += nl as u64 + 1;
                self.release();
                return Some(Piece::TooLong {
                    start,
                    size: nl as u64,
                    sha256,
                    end: self.at,
                });
            }
            if self.buf.len() > self.max_record {
                // Over the limit and not ended: hash what is here, skip the rest as it comes.
                let mut sha = Sha256::new();
                sha.update(&self.buf);
                let size = self.buf.len() as u64;
                self.skip = Some(Skip {
                    start: self.at,
                    size,
                    sha,
                });
                self.at += size;
                self.buf = Vec::new();
                self.valid = 0;
                return self.pop(end);
            }
        }
        if end == End::Final {
            return Some(self.take_lines(self.buf.len()));
        }
        None
    }

    fn take_lines(&mut self, n: usize) -> Piece {
        let bytes = self.buf[..n].to_vec();
        self.buf.drain(..n);
        self.valid = self.buf.len();
        let start = self.at;
        self.at += n as u64;
        self.release();
        Piece::Lines { start, bytes }
    }

    /// Give back a large buffer once it holds little.
    fn release(&mut self) {
        if self.buf.capacity() > 2 * self.max_batch.max(BLOCK) && self.buf.len() <= self.max_batch {
            self.buf.shrink_to(self.max_batch);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Feed `input` in reads of the given sizes (cycled), taking pieces as `pop` allows.
    fn run(input: &[u8], max_batch: usize, max_record: usize, reads: &[usize]) -> Vec<Piece> {
        let mut c = Chunker::new(0, max_batch, max_record);
        let mut out = Vec::new();
        let mut pos = 0usize;
        let mut k = 0usize;
        loop {
            let eof = pos == input.len();
            while let Some(p) = c.pop(if eof { End::Final } else { End::More }) {
                out.push(p);
            }
            if eof {
                return out;
            }
            let dst = c.spare();
            let n = dst
                .len()
                .min(reads[k % reads.len()].max(1))
                .min(input.len() - pos);
            k += 1;
            dst[..n].copy_from_slice(&input[pos..pos + n]);
            pos += n;
            c.filled(n);
            assert!(
                c.buffered().len() <= max_batch.max(max_record + 1) + BLOCK,
                "buffer of {} bytes",
                c.buffered().len()
            );
        }
    }

    #[test]
    fn lines_batches_and_a_skipped_line() {
        let long = vec![b'x'; 100];
        let mut input = b"a\nbb\n".to_vec();
        input.extend_from_slice(&long);
        input.extend_from_slice(b"\ncc\ndd");
        let pieces = run(&input, 8, 16, &[3]);
        let sha = hex::encode(Sha256::digest(&long));
        assert_eq!(
            pieces,
            vec![
                Piece::Lines {
                    start: 0,
                    bytes: b"a\nbb\n".to_vec()
                },
                Piece::TooLong {
                    start: 5,
                    size: 100,
                    sha256: sha,
                    end: 106
                },
                Piece::Lines {
                    start: 106,
                    bytes: b"cc\ndd".to_vec()
                },
            ]
        );
    }

    #[test]
    fn a_tail_waits_until_final_and_continues() {
        let mut c = Chunker::new(10, 64, 64);
        let dst = c.spare();
        dst[..9].copy_from_slice(b"{\"a\":1}\n{");
        c.filled(9);
        assert_eq!(
            c.pop(End::Now),
            Some(Piece::Lines {
                start: 10,
                bytes: b"{\"a\":1}\n".to_vec()
            })
        );
        assert_eq!(c.pop(End::Now), None);
        assert_eq!(c.tail(), Some(&b"{"[..]));
        assert_eq!(c.read_pos(), 19);
        let dst = c.spare();
        dst[..2].copy_from_slice(b"}\n");
        c.filled(2);
        assert_eq!(
            c.pop(End::Now),
            Some(Piece::Lines {
                start: 18,
                bytes: b"{}\n".to_vec()
            })
        );
        assert_eq!(c.tail(), None);
    }

    #[test]
    fn space_not_filled_by_a_cancelled_read_is_ignored() {
        let mut c = Chunker::new(0, 64, 64);
        let dst = c.spare();
        dst[..3].copy_from_slice(b"{}\n");
        c.filled(3);
        // A read whose future was dropped: spare handed out, never filled.
        let _ = c.spare();
        assert_eq!(c.read_pos(), 3);
        assert_eq!(c.buffered(), b"{}\n");
        assert_eq!(
            c.pop(End::Now),
            Some(Piece::Lines {
                start: 0,
                bytes: b"{}\n".to_vec()
            })
        );
        let _ = c.spare();
        assert_eq!(c.tail(), None);
        assert_eq!(c.pop(End::Final), None);
    }

    #[test]
    fn an_unended_long_line_is_skipped_at_the_end() {
        let input = vec![b'y'; 50];
        let pieces = run(&input, 4, 8, &[5]);
        assert_eq!(
            pieces,
            vec![Piece::TooLong {
                start: 0,
                size: 50,
                sha256: hex::encode(Sha256::digest(&input)),
                end: 50
            }]
        );
    }

    fn lines_strategy() -> impl Strategy<Value = Vec<u8>> {
        prop::collection::vec((0usize..120, any::<bool>()), 0..40).prop_map(|lines| {
            let mut out = Vec::new();
            for (i, (len, nl)) in lines.iter().enumerate() {
                out.extend(std::iter::repeat_n(b'a' + (i % 26) as u8, *len));
                if *nl || i + 1 < lines.len() {
                    out.push(b'\n');
                }
            }
            out
        })
    }

    proptest! {
        /// Whatever the read sizes: pieces tile the input in order; lines pieces end on a
        /// newline (except at the end), are at most a batch unless one line, and hold no
        /// line over the limit; every over-long line is skipped with its size and hash.
        #[test]
        fn pieces_tile_the_input(
            input in lines_strategy(),
            max_batch in 1usize..40,
            extra in 0usize..60,
            reads in prop::collection::vec(1usize..70, 1..5),
        ) {
            let max_record = max_batch + extra;
            let pieces = run(&input, max_batch, max_record, &reads);
            let mut pos = 0u64;
            for p in &pieces {
                let (s, e) = p.range();
                prop_assert_eq!(s, pos);
                let seg = &input[s as usize..e as usize];
                match p {
                    Piece::Lines { bytes, .. } => {
                        prop_assert_eq!(&bytes[..], seg);
                        prop_assert!(e as usize == input.len() || bytes.last() == Some(&b'\n'));
                        let lines: Vec<&[u8]> = bytes.split(|&c| c == b'\n').collect();
                        prop_assert!(bytes.len() <= max_batch || lines.len() <= 2);
                        for l in lines {
                            prop_assert!(l.len() <= max_record, "line of {} bytes", l.len());
                        }
                    }
                    Piece::TooLong { size, sha256, .. } => {
                        let line = seg.strip_suffix(b"\n").unwrap_or(seg);
                        prop_assert!(!line.contains(&b'\n'));
                        prop_assert_eq!(*size as usize, line.len());
                        prop_assert!(line.len() > max_record);
                        prop_assert_eq!(sha256, &hex::encode(Sha256::digest(line)));
                    }
                }
                pos = e;
            }
            prop_assert_eq!(pos as usize, input.len());
        }
    }
}
