//! `follow: true` and a last record without a newline (Azure's `PT1H.json` blobs end that way),
//! through `kmswatch run`: the record is read once the file is quiet, and on SIGTERM before
//! that it is drained — read, delivered and its position saved before the process exits — so
//! a restart reads nothing twice.

mod support;

use std::io::Write;
use std::path::Path;
use support::{schedule_deletion_line, wait_for, workspace, Run};

const KEY: &str = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";

/// A followed file source with `extra` source options.
fn support_config(log: &Path, extra: &str) -> String {
    format!(
        "rules:\n  paths: [{rules}]\n  lateness_secs: 172800\n\
         sources:\n  - {{ id: trail, type: file, paths: [\"{log}\"], follow: true, {extra} }}\n\
         sinks:\n  - {{ type: file, path: out.jsonl, batch: {{ timeout_ms: 20 }} }}\n\
         state: {{ dir: state, checkpoint_interval_ms: 200, idle_advance_secs: 0 }}\n",
        rules = workspace().join("rules").display(),
        log = log.display(),
    )
}

fn deletions(r: &Run, user: &str) -> usize {
    r.jsonl("out.jsonl")
        .iter()
        .filter(|f| {
            f["finding_info"]["analytic"]["name"] == "kms_schedule_key_deletion"
                && f.to_string().contains(&format!("user/{user}"))
        })
        .count()
}

#[test]
fn a_last_record_without_newline_is_read_when_quiet_and_drained_on_stop() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("PT1H.json");
    let line = |user: &str, id: &str| schedule_deletion_line(KEY, user, id);
    // One whole line, then one without its newline.
    let first = line("first", "ev-1");
    let quiet = line("quiet", "ev-2");
    std::fs::write(&log, format!("{first}{}", quiet.trim_end())).expect("write");
    let run_dir = dir.path().join("run");
    // A long quiet period: the drain on stop, not the timer, must read the second record.
    let cfg = support_config(&log, "quiet_period_ms: 600000");
    let mut run = Run::start(&run_dir, &cfg, &[]);
    wait_for("the first record's finding", 120, &mut run, |r| {
        deletions(r, "first") == 1
    });
    assert_eq!(
        deletions(&run, "quiet"),
        0,
        "read before the file was quiet"
    );
    run.stop(30);
    assert_eq!(
        deletions(&run, "quiet"),
        1,
        "the last record, without a newline, was drained on stop:\n{}",
        run.log()
    );

    // A restart reads neither record again; what the writer appends later is read.
    let mut run = Run::start(&run_dir, &support_config(&log, "quiet_period_ms: 500"), &[]);
    {
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&log)
            .expect("open");
        write!(f, "\n{}", line("later", "ev-3").trim_end()).expect("append");
    }
    wait_for(
        "the appended record (quiet period 0.5 s)",
        60,
        &mut run,
        |r| deletions(r, "later") == 1,
    );
    run.stop(30);
    assert_eq!(
        (deletions(&run, "first"), deletions(&run, "quiet")),
        (1, 1),
        "nothing read twice"
    );
}
