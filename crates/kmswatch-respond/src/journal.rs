//! The local append-only journal: one audit record per line (JSON), each line written with a
//! single `write` on a file opened for append and followed by `fsync`, so a record that was
//! returned to the caller survives a crash.
//!
//! Several processes may share a journal (the runtime and `kmswatch respond approve`): appends are
//! atomic for lines under the pipe buffer size on local filesystems, and each process reads the
//! lines others appended ([`Journal::read_new`]) before it decides.

use crate::audit::AuditRecord;
use crate::error::RespondError;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// An open journal.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    file: File,
    read_offset: u64,
    /// Lines that could not be parsed (counted, skipped).
    pub bad_lines: u64,
}

impl Journal {
    /// Open (creating it and its directory when missing). Returns the journal and every record
    /// already in it, oldest first.
    pub fn open(path: &Path) -> Result<(Journal, Vec<AuditRecord>), RespondError> {
        let err = |source| RespondError::Journal {
            path: path.to_path_buf(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(err)?;
        }
        let file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(path)
            .map_err(err)?;
        let mut j = Journal {
            path: path.to_path_buf(),
            file,
            read_offset: 0,
            bad_lines: 0,
        };
        let records = j.read_new()?;
        Ok((j, records))
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Records appended since the last read (by any process), oldest first. A partial last line
    /// (a writer in the middle of its append) is left for the next read.
    pub fn read_new(&mut self) -> Result<Vec<AuditRecord>, RespondError> {
        let err = |source| RespondError::Journal {
            path: self.path.clone(),
            source,
        };
        let mut f = self.file.try_clone().map_err(err)?;
        f.seek(SeekFrom::Start(self.read_offset)).map_err(err)?;
        let mut reader = BufReader::new(f);
        let mut out = Vec::new();
        let mut line = String::new();
        loop {
            line.clear();
            let n = reader.read_line(&mut line).map_err(err)?;
            if n == 0 || !line.ends_with('\n') {
                break;
            }
            self.read_offset += n as u64;
            let t = line.trim();
            if t.is_empty() {
                continue;
            }
            match serde_json::from_str::<AuditRecord>(t) {
                Ok(r) => out.push(r),
                Err(e) => {
                    self.bad_lines += 1;
                    tracing::warn!(journal = %self.path.display(), error = %e, "unreadable journal line skipped");
                }
            }
        }
        Ok(out)
    }

    /// Append one record durably (write + fsync).
    pub fn append(&mut self, rec: &AuditRecord) -> Result<(), RespondError> {
        let err = |source| RespondError::Journal {
            path: self.path.clone(),
            source,
        };
        let mut line = serde_json::to_vec(rec).map_err(|e| err(std::io::Error::other(e)))?;
        line.push(b'\n');
        self.file.write_all(&line).map_err(err)?;
        self.file.sync_data().map_err(err)?;
        Ok(())
    }
}
