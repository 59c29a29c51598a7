//! Acceptance over the real public samples in `../shared/data` (not part of the repository):
//! one test per dataset folder. Every log file in it is read with no rejected record, and the
//! number of key-management events equals the count in the folder's SOURCES.md.
//!
//! When the folder is absent (a fresh clone), the tests are reported as ignored with a message.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use kmswatch_normalize::{is_log_name, Item, Normalizer, Options, Summary};
use libtest_mimic::{Arguments, Failed, Trial};
use std::path::{Path, PathBuf};

/// Records that are broken in the source data on purpose or by accident, with the reason.
/// (Path suffix, reason.) Empty: the extractor already dropped the four invalid blocks of the
/// KMS developer guide (ct-decrypt, ct-encrypt, ct-decrypt-enclave, ct-replicate-key), see its
/// SOURCES.md; our own copies of such breakage live in fixtures/broken/.
const KNOWN_BROKEN: &[(&str, &str)] = &[];

fn data_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("workspace root")
        .join("../shared/data")
}

/// "**Counts (computed here):** 56 files, 3662039 bytes, 2900 events, 240 KMS / Key Vault events"
fn expected_kms(sources: &str) -> Option<u64> {
    let line = sources
        .lines()
        .find(|l| l.contains("Counts (computed here)"))?;
    let before = line.split(" KMS / Key Vault events").next()?;
    before.rsplit(' ').next()?.parse().ok()
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<_> = rd.flatten().map(|e| e.path()).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            walk(&p, out);
        } else if p
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(is_log_name)
        {
            out.push(p);
        }
    }
}

fn check(folder: &Path) -> Result<(), Failed> {
    let sources = std::fs::read_to_string(folder.join("SOURCES.md"))
        .map_err(|e| format!("{}: {e}", folder.display()))?;
    let want = expected_kms(&sources).ok_or("SOURCES.md has no KMS count")?;
    let n = Normalizer::new(Options::default()).map_err(|e| e.to_string())?;
    let mut files = Vec::new();
    walk(folder, &mut files);
    let mut summary = Summary::default();
    let mut problems = Vec::new();
    for f in &files {
        let bytes = std::fs::read(f).map_err(|e| format!("{}: {e}", f.display()))?;
        let origin = f.display().to_string();
        n.normalize_bytes(&bytes, &origin, &mut |item| {
            summary.add(&item);
            if let Item::Rejected {
                error, location, ..
            } = &item
            {
                let known = KNOWN_BROKEN
                    .iter()
                    .any(|(suffix, _)| location.origin.ends_with(suffix));
                if !known {
                    problems.push(format!("rejected {location}: {error}"));
                }
            }
        });
    }
    if summary.kms_events != want {
        problems.push(format!(
            "{} KMS / Key Vault events, SOURCES.md says {want} ({summary:?})",
            summary.kms_events
        ));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n").into())
    }
}

fn main() {
    let args = Arguments::from_args();
    let root = data_root();
    let mut trials = Vec::new();
    for provider in ["aws", "azure", "gcp"] {
        let Ok(rd) = std::fs::read_dir(root.join(provider)) else {
            continue;
        };
        let mut dirs: Vec<_> = rd
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_dir())
            .collect();
        dirs.sort();
        for d in dirs {
            let name = format!(
                "{provider}/{}",
                d.file_name().and_then(|n| n.to_str()).unwrap_or("?")
            );
            trials.push(Trial::test(name, move || check(&d)));
        }
    }
    if trials.is_empty() {
        eprintln!(
            "shared_data: {} is absent; skipping the real-sample acceptance tests",
            root.display()
        );
        trials.push(Trial::test("shared-data-absent", || Ok(())).with_ignored_flag(true));
    }
    libtest_mimic::run(&args, trials).exit();
}

#[cfg(test)]
mod tests {}
