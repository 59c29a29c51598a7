//! A full disk under `state.dir`: checkpoints fail, `/readyz` says so (503), nothing is
//! acknowledged past the failed checkpoint, everything recovers by itself once space returns,
//! and SIGTERM during the outage exits within the shutdown bound, non-zero.
//!
//! `state.dir` is a tmpfs mounted for the test and filled with a filler file. Mounting
//! needs root (or CAP_SYS_ADMIN): without it the test is skipped with a message.

mod support;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use support::{saved_offset, schedule_deletion_line, wait_for, workspace, Run};

const KEY: &str = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";

/// A tmpfs mounted on a directory, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(at).expect("mount point");
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .stderr(std::process::Stdio::null())
            .status()
            .ok()?;
        st.success().then(|| Tmpfs(at.to_path_buf()))
    }

    /// Write a filler file until the filesystem is full.
    fn fill(&self) {
        let mut f = std::fs::File::create(self.0.join("filler")).expect("filler");
        let chunk = vec![0xa5u8; 64 << 10];
        while f.write_all(&chunk).is_ok() {}
        // The last partial page too.
        while f.write_all(&chunk[..512]).is_ok() {}
        let _ = f.sync_all();
    }

    fn free(&self) {
        std::fs::remove_file(self.0.join("filler")).expect("remove filler");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn append(log: &Path, from: usize, n: usize) {
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(log)
        .expect("open trail");
    for i in from..from + n {
        f.write_all(
            schedule_deletion_line(KEY, &format!("user{i:05}"), &format!("ev-{i:05}")).as_bytes(),
        )
        .expect("append");
    }
}

fn findings(run: &Run) -> usize {
    run.jsonl("out.jsonl")
        .iter()
        .filter(|v| v["finding_info"]["analytic"]["name"] == "kms_schedule_key_deletion")
        .count()
}

fn readyz(run: &Run) -> u16 {
    run.get("/readyz").map(|(c, _)| c).unwrap_or(0)
}

#[test]
fn a_full_state_disk_is_reported_retried_and_recovered() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(fs) = Tmpfs::mount(&dir.path().join("statefs"), "64m") else {
        eprintln!("SKIPPED a_full_state_disk_is_reported_retried_and_recovered: cannot mount a tmpfs (needs root)");
        return;
    };
    let log = dir.path().join("trail.jsonl");
    let positions = dir.path().join("positions");
    append(&log, 0, 20);
    let config = format!(
        "rules:\n  paths: [{rules}]\n  lateness_secs: 172800\n\
         sources:\n  - {{ id: trail, type: file, paths: [\"{log}\"], follow: true, state_dir: \"{positions}\" }}\n\
         sinks:\n  - {{ type: file, path: out.jsonl, batch: {{ timeout_ms: 20 }} }}\n\
         state: {{ dir: \"{state}\", checkpoint_interval_ms: 200, idle_advance_secs: 0, dead_letter_path: dead.jsonl }}\n\
         server: {{ listen: \"127.0.0.1:0\" }}\n\
         limits: {{ shutdown_timeout_secs: 5 }}\n",
        rules = workspace().join("rules").display(),
        log = log.display(),
        positions = positions.display(),
        state = fs.0.join("state").display(),
    );
    let run_dir = dir.path().join("run");
    let mut run = Run::start(&run_dir, &config, &[]);
    wait_for("the first findings, acknowledged", 120, &mut run, |r| {
        findings(r) == 20
            && saved_offset(&positions, &log)
                == std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0)
    });
    wait_for("/readyz 200", 30, &mut run, |r| readyz(r) == 200);

    // The disk fills up; new events keep coming (the dedup set and the engine state grow).
    fs.fill();
    let acked = saved_offset(&positions, &log);
    let mut next = 20;
    wait_for("a failed checkpoint", 120, &mut run, |r| {
        append(&log, next, 20);
        next += 20;
        r.metric("kmswatch_checkpoint_failures_total{}") > 0.0
    });
    wait_for("/readyz 503", 30, &mut run, |r| readyz(r) == 503);
    assert_eq!(
        run.metric("kmswatch_not_ready{reason=\"state_store\"}"),
        1.0,
        "the reason is on /metrics"
    );
    if let Some((_, body)) = run.get("/readyz") {
        eprintln!("/readyz during the outage: {body}");
    }
    // Nothing is acknowledged past the failed checkpoint.
    std::thread::sleep(Duration::from_millis(1500));
    run.assert_alive();
    assert_eq!(
        saved_offset(&positions, &log),
        acked,
        "a file position was saved while checkpoints fail:\n{}",
        run.log()
    );

    // Space returns: the retried checkpoint goes through, readiness and acknowledgements too.
    fs.free();
    let end = std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
    wait_for("recovery: every event acknowledged", 120, &mut run, |_| {
        saved_offset(&positions, &log) == end
    });
    wait_for("/readyz 200 again", 30, &mut run, |r| readyz(r) == 200);
    assert_eq!(findings(&run), next, "one finding per event, none lost");
    assert!(
        run.log().contains("checkpoint written again"),
        "{}",
        run.log()
    );

    // A second outage, and SIGTERM during it: bounded, non-zero, nothing acknowledged.
    fs.fill();
    let acked = saved_offset(&positions, &log);
    let failures = run.metric("kmswatch_checkpoint_failures_total{}");
    wait_for("a failed checkpoint again", 120, &mut run, |r| {
        append(&log, next, 20);
        next += 20;
        r.metric("kmswatch_checkpoint_failures_total{}") > failures
    });
    let (st, took) = run.sigterm(40);
    assert!(
        !st.success(),
        "exit {st}: the last checkpoint was not written"
    );
    assert!(took < Duration::from_secs(25), "SIGTERM took {took:?}");
    assert!(
        run.log().contains("could not write the last checkpoint"),
        "{}",
        run.log()
    );
    assert_eq!(saved_offset(&positions, &log), acked);

    // The next start, with space, processes what was not acknowledged: no event lost.
    fs.free();
    let end = std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
    let mut run = Run::start(&run_dir, &config, &[]);
    wait_for("everything after the restart", 120, &mut run, |r| {
        saved_offset(&positions, &log) == end && findings(r) >= next
    });
    run.stop(30);
    let all = run.jsonl("out.jsonl");
    let ids: std::collections::BTreeSet<&str> = all
        .iter()
        .filter(|v| v["finding_info"]["analytic"]["name"] == "kms_schedule_key_deletion")
        .filter_map(|v| v["finding_info"]["uid"].as_str())
        .collect();
    assert_eq!(ids.len(), next, "one distinct finding per event");
}
