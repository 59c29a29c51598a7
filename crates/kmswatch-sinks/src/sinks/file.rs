//! `stdout` and `file`: JSON lines; the file rotates by size (`path.1` newest ... `path.N`).

use crate::config::{FileConfig, Format};
use crate::{Record, SendError};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Can `path` be written by this process? Never creates or writes anything.
pub(crate) fn check_writable(path: &Path) -> Result<String, String> {
    let shown = path.display();
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() => {
            return writable(path)
                .map(|()| format!("{shown} is writable"))
                .map_err(|e| format!("{shown} is not writable: {e}"));
        }
        Ok(_) => return Err(format!("{shown} exists and is not a regular file")),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("{shown}: {e}")),
    }
    let mut missing = vec![path.to_path_buf()];
    let mut at = path.parent();
    while let Some(dir) = at {
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        match std::fs::metadata(dir) {
            Ok(m) if m.is_dir() => {
                return writable(dir)
                    .map(|()| {
                        format!(
                            "{shown} would be created, with {} missing director{} (nearest existing directory {} is writable)",
                            missing.len() - 1,
                            if missing.len() == 2 { "y" } else { "ies" },
                            dir.display(),
                        )
                    })
                    .map_err(|e| {
                        format!(
                            "{shown} cannot be created: {} is not writable: {e}",
                            dir.display()
                        )
                    });
            }
            Ok(_) => {
                return Err(format!(
                    "{shown} cannot be created: {} is not a directory",
                    dir.display()
                ))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                missing.push(dir.to_path_buf());
                at = dir.parent();
            }
            Err(e) => return Err(format!("{shown}: {}: {e}", dir.display())),
        }
    }
    Err(format!("{shown}: no existing parent directory"))
}

/// `access(W_OK)` for the effective user (a read-only file system counts as not writable).
fn writable(p: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        rustix::fs::accessat(
            rustix::fs::CWD,
            p,
            rustix::fs::Access::WRITE_OK,
            rustix::fs::AtFlags::EACCESS,
        )
        .map_err(std::io::Error::from)
    }
    #[cfg(not(unix))]
    {
        let m = std::fs::metadata(p)?;
        if m.permissions().readonly() {
            Err(std::io::Error::from(std::io::ErrorKind::PermissionDenied))
        } else {
            Ok(())
        }
    }
}

pub(crate) struct StdoutDest {
    pub format: Format,
}

impl StdoutDest {
    pub fn new(format: Format) -> StdoutDest {
        StdoutDest { format }
    }

    pub async fn send(&self, recs: &[Record]) -> Result<(), SendError> {
        let mut buf = String::new();
        for r in recs {
            buf.push_str(&r.body);
            buf.push('\n');
        }
        let out = std::io::stdout();
        let mut lock = out.lock();
        lock.write_all(buf.as_bytes())
            .and_then(|_| lock.flush())
            .map_err(|e| SendError::retryable(format!("stdout: {e}")))
    }
}

struct Open {
    file: File,
    size: u64,
}

pub(crate) struct FileDest {
    pub format: Format,
    path: PathBuf,
    max_bytes: u64,
    max_files: u32,
    fsync: bool,
    file: Mutex<Option<Open>>,
}

fn rotated(path: &Path, n: u32) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{n}"));
    PathBuf::from(s)
}

impl FileDest {
    pub fn new(c: &FileConfig) -> Result<FileDest, String> {
        Ok(FileDest {
            format: c.format,
            path: c.path.clone(),
            max_bytes: c.max_bytes,
            max_files: c.max_files,
            fsync: c.fsync,
            file: Mutex::new(None),
        })
    }

    fn err(&self, e: std::io::Error) -> SendError {
        SendError::retryable(format!("{}: {e}", self.path.display()))
    }

    fn open(&self) -> std::io::Result<Open> {
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        let size = file.metadata()?.len();
        Ok(Open { file, size })
    }

    fn rotate(&self) -> std::io::Result<()> {
        if self.max_files == 0 {
            return std::fs::remove_file(&self.path);
        }
        let _ = std::fs::remove_file(rotated(&self.path, self.max_files));
        for n in (1..self.max_files).rev() {
            let from = rotated(&self.path, n);
            if from.exists() {
                std::fs::rename(&from, rotated(&self.path, n + 1))?;
            }
        }
        std::fs::rename(&self.path, rotated(&self.path, 1))
    }

    pub async fn send(&self, recs: &[Record]) -> Result<(), SendError> {
        let mut g = self.file.lock().unwrap_or_else(|p| p.into_inner());
        for r in recs {
            let len = r.body.len() as u64 + 1;
            if g.is_none() {
                *g = Some(self.open().map_err(|e| self.err(e))?);
            }
            let must_rotate = self.max_bytes > 0
                && g.as_ref()
                    .is_some_and(|o| o.size > 0 && o.size + len > self.max_bytes);
            if must_rotate {
                if let Some(o) = g.take() {
                    if self.fsync {
                        o.file.sync_data().map_err(|e| self.err(e))?;
                    }
                }
                self.rotate().map_err(|e| self.err(e))?;
                *g = Some(self.open().map_err(|e| self.err(e))?);
            }
            let Some(o) = g.as_mut() else {
                return Err(SendError::retryable("file not open"));
            };
            let mut line = Vec::with_capacity(r.body.len() + 1);
            line.extend_from_slice(r.body.as_bytes());
            line.push(b'\n');
            if let Err(e) = o.file.write_all(&line) {
                *g = None; // reopen next time
                return Err(self.err(e));
            }
            o.size += len;
        }
        if self.fsync {
            if let Some(o) = g.as_ref() {
                o.file.sync_data().map_err(|e| self.err(e))?;
            }
        }
        Ok(())
    }

    /// Whether the file can be written, changing nothing: an existing file must be a
    /// writable regular file; a missing one needs its nearest existing ancestor to be a
    /// writable directory ("would be created"). Nothing is opened, created or written.
    pub async fn check(&self) -> Result<String, SendError> {
        check_writable(&self.path).map_err(SendError::config)
    }

    pub fn close(&self) {
        let mut g = self.file.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(o) = g.take() {
            let _ = o.file.sync_all();
        }
    }
}
