//! Golden tests: one fixture file under `fixtures/` is one test case.
//!
//! For a fixture `fixtures/P/NAME.EXT` the expected output is `fixtures/P/NAME.EXT.golden`:
//! one line per record, in order — the normalized event for an event, or a
//! `{"skipped": ...}` / `{"rejected": ...}` line with the location. Run with
//! `KMSWATCH_BLESS=1` to (re)write the golden files after a deliberate change, then review the
//! diff like code.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use kmswatch_normalize::{Item, Normalizer, Options};
use libtest_mimic::{Arguments, Failed, Trial};
use std::path::{Path, PathBuf};

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("workspace root")
        .to_path_buf()
}

/// The golden rendering of one item.
pub fn render(item: &Item) -> String {
    match item {
        Item::Event { event, related, .. } => {
            let mut v = serde_json::to_value(event).expect("event serializes");
            if *related {
                v["_related"] = serde_json::Value::Bool(true);
            }
            serde_json::to_string(&v).expect("json")
        }
        Item::Skipped { reason, location } => serde_json::json!({
            "skipped": reason.as_str(),
            "location": location.to_string(),
        })
        .to_string(),
        Item::Rejected {
            error, location, ..
        } => serde_json::json!({
            "rejected": error.reason.as_str(),
            "detail": error.detail,
            "location": location.to_string(),
        })
        .to_string(),
    }
}

fn fixtures(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.join("fixtures")];
    while let Some(dir) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
                if !(name.ends_with(".golden") || name.ends_with(".md") || name.starts_with('.')) {
                    out.push(p);
                }
            }
        }
    }
    out.sort();
    out
}

fn check(root: &Path, fixture: &Path) -> Result<(), Failed> {
    let normalizer = Normalizer::new(Options::default()).map_err(|e| e.to_string())?;
    let rel = fixture
        .strip_prefix(root)
        .unwrap_or(fixture)
        .to_string_lossy()
        .replace('\\', "/");
    let bytes = std::fs::read(fixture).map_err(|e| format!("{rel}: {e}"))?;
    let mut got = String::new();
    normalizer.normalize_bytes(&bytes, &rel, &mut |item| {
        got.push_str(&render(&item));
        got.push('\n');
    });
    let golden = PathBuf::from(format!("{}.golden", fixture.display()));
    if std::env::var_os("KMSWATCH_BLESS").is_some() {
        std::fs::write(&golden, &got).map_err(|e| format!("{}: {e}", golden.display()))?;
        return Ok(());
    }
    let want = std::fs::read_to_string(&golden).map_err(|e| {
        format!(
            "{}: {e} (run with KMSWATCH_BLESS=1 to create it, then review it)",
            golden.display()
        )
    })?;
    if want != got {
        let mut msg = format!("{rel}: output differs from {}\n", golden.display());
        for (i, (w, g)) in want.lines().zip(got.lines()).enumerate() {
            if w != g {
                msg.push_str(&format!(
                    "first difference at line {}:\n want: {w}\n  got: {g}\n",
                    i + 1
                ));
                break;
            }
        }
        let (wl, gl) = (want.lines().count(), got.lines().count());
        if wl != gl {
            msg.push_str(&format!("want {wl} lines, got {gl}\n"));
        }
        return Err(msg.into());
    }
    Ok(())
}

fn main() {
    let args = Arguments::from_args();
    let root = workspace_root();
    let trials = fixtures(&root)
        .into_iter()
        .map(|f| {
            let name = f
                .strip_prefix(&root)
                .unwrap_or(&f)
                .to_string_lossy()
                .into_owned();
            let root = root.clone();
            Trial::test(name, move || check(&root, &f))
        })
        .collect();
    libtest_mimic::run(&args, trials).exit();
}
