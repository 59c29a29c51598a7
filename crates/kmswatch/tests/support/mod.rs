//! Helpers shared by the `kmswatch run` tests that own no services: a child process with its
//! directory, and what an operator can read from it (files, log, `/metrics`, `/readyz`).
#![allow(dead_code)]

pub mod aws;

use serde_json::{json, Value};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_kmswatch");

pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A `kmswatch run` child process writing its log to `DIR/kmswatch.log`; killed when dropped.
pub struct Run {
    pub dir: PathBuf,
    child: Option<Child>,
}

impl Run {
    /// Write `config` to `DIR/kmswatch.yml` and start `kmswatch run` on it (the log is appended
    /// to, so a restart keeps the earlier lines).
    pub fn start(dir: &Path, config: &str, env: &[(&str, &str)]) -> Run {
        Run::start_args(dir, config, env, &[])
    }

    /// [`Run::start`] with more arguments (`--mode ingest`).
    pub fn start_args(dir: &Path, config: &str, env: &[(&str, &str)], args: &[&str]) -> Run {
        std::fs::create_dir_all(dir).expect("run dir");
        std::fs::write(dir.join("kmswatch.yml"), config).expect("write config");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("kmswatch.log"))
            .expect("log file");
        let mut cmd = Command::new(BIN);
        cmd.arg("run")
            .arg("--config")
            .arg(dir.join("kmswatch.yml"))
            .args(args)
            .env(
                "KMSWATCH_LOG",
                "info,aws_config=warn,aws_smithy_runtime=warn",
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        for (k, v) in env {
            cmd.env(k, v);
        }
        Run {
            dir: dir.to_path_buf(),
            child: Some(cmd.spawn().expect("spawn kmswatch run")),
        }
    }

    /// The process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The process's peak resident memory so far (`VmHWM` in `/proc/PID/status`), bytes.
    pub fn peak_rss_bytes(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()?)).ok()?;
        let kb = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))?
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse::<u64>()
            .ok()?;
        Some(kb * 1024)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("kmswatch.log")).unwrap_or_default()
    }

    /// The JSON lines of `DIR/NAME` (unparsable lines are skipped).
    pub fn jsonl(&self, name: &str) -> Vec<Value> {
        read_jsonl(&self.dir.join(name))
    }

    pub fn assert_alive(&mut self) {
        if let Some(c) = self.child.as_mut() {
            if let Ok(Some(st)) = c.try_wait() {
                panic!("kmswatch run exited early with {st}:\n{}", self.log());
            }
        }
    }

    /// SIGKILL: no checkpoint, no acknowledgement, no flush.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM; the exit status and how long the exit took (fails after `secs`).
    pub fn sigterm(&mut self, secs: u64) -> (ExitStatus, Duration) {
        let mut c = self.child.take().expect("a running child");
        let sent = Instant::now();
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(c.id().to_string())
            .status();
        loop {
            if let Ok(Some(st)) = c.try_wait() {
                return (st, sent.elapsed());
            }
            if sent.elapsed() > Duration::from_secs(secs) {
                let _ = c.kill();
                let _ = c.wait();
                panic!(
                    "kmswatch run did not stop within {secs} s of SIGTERM:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM and expect a clean exit within `secs`.
    pub fn stop(&mut self, secs: u64) {
        let (st, _) = self.sigterm(secs);
        assert!(
            st.success(),
            "kmswatch run exited with {st}:\n{}",
            self.log()
        );
    }

    /// Expect a clean exit on its own within `secs` (a finite run).
    pub fn wait_exit(&mut self, secs: u64) {
        let mut c = self.child.take().expect("a running child");
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Ok(Some(st)) = c.try_wait() {
                assert!(
                    st.success(),
                    "kmswatch run exited with {st}:\n{}",
                    self.log()
                );
                return;
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                let _ = c.wait();
                panic!("kmswatch run did not stop within {secs} s:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The address of `server.listen` from the startup banner of the latest start.
    pub fn listen(&self) -> Option<String> {
        let log = self.log();
        let banner = log.lines().rev().find(|l| l.contains("kmswatch started"))?;
        banner
            .split("\"listen\":\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .filter(|a| *a != "-")
            .map(str::to_string)
    }

    /// GET `path` from the listener: (status code, body); `None` when it cannot be reached.
    pub fn get(&self, path: &str) -> Option<(u16, String)> {
        http_get(&self.listen()?, path)
    }

    /// The value of one metric series (`name{labels}` exactly as rendered), 0 when absent.
    pub fn metric(&self, series: &str) -> f64 {
        let Some((_, body)) = self.get("/metrics") else {
            return 0.0;
        };
        metric_value(&body, series)
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A plain HTTP/1.1 GET: (status code, body).
pub fn http_get(addr: &str, path: &str) -> Option<(u16, String)> {
    let mut c = std::net::TcpStream::connect(addr).ok()?;
    c.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    c.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .ok()?;
    let mut out = String::new();
    c.read_to_string(&mut out).ok()?;
    let code = out.split_whitespace().nth(1)?.parse().ok()?;
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b.to_string())?;
    Some((code, body))
}

/// The value of `series` in a Prometheus text exposition, 0 when absent.
pub fn metric_value(body: &str, series: &str) -> f64 {
    body.lines()
        .find_map(|l| {
            l.strip_prefix(series)?
                .strip_prefix(' ')?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(0.0)
}

pub fn read_jsonl(p: &Path) -> Vec<Value> {
    std::fs::read_to_string(p)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Poll `f` every 100 ms for up to `secs` (the run must stay alive meanwhile).
pub fn wait_for(what: &str, secs: u64, run: &mut Run, mut f: impl FnMut(&Run) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if f(run) {
            return;
        }
        run.assert_alive();
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!(
        "timed out after {secs} s waiting for {what}:\n{}",
        run.log()
    );
}

/// A CloudTrail ScheduleKeyDeletion record (30-day window) by IAM user `user` for `key_arn`,
/// as one JSON line.
pub fn schedule_deletion_line(key_arn: &str, user: &str, event_id: &str) -> String {
    schedule_deletion_in(key_arn, user, event_id, 30)
}

/// [`schedule_deletion_line`] with a pending window of `days` (7 also raises the
/// short-window rule).
pub fn schedule_deletion_in(key_arn: &str, user: &str, event_id: &str, days: u32) -> String {
    let account = key_arn.split(':').nth(4).unwrap_or("111122223333");
    let rec = json!({
        "eventVersion": "1.09",
        "userIdentity": {
            "type": "IAMUser", "principalId": format!("AIDA{user}"),
            "arn": format!("arn:aws:iam::{account}:user/{user}"),
            "accountId": account, "userName": user
        },
        "eventTime": "2026-01-15T15:00:00Z",
        "eventSource": "kms.amazonaws.com",
        "eventName": "ScheduleKeyDeletion",
        "awsRegion": "us-east-1",
        "sourceIPAddress": "203.0.113.10",
        "userAgent": "aws-cli/2.15.30",
        "requestParameters": {"keyId": key_arn, "pendingWindowInDays": days},
        "responseElements": {"keyId": key_arn, "keyState": "PendingDeletion", "pendingWindowInDays": days},
        "requestID": format!("req-{event_id}"),
        "eventID": event_id,
        "readOnly": false,
        "eventType": "AwsApiCall",
        "managementEvent": true,
        "recipientAccountId": account,
        "eventCategory": "Management",
        "resources": [{"accountId": account, "type": "AWS::KMS::Key", "ARN": key_arn}]
    });
    format!("{}\n", json!({ "Records": [rec] }))
}

/// The saved offset of `path` in a file source's position store under `positions_dir`.
pub fn saved_offset(positions_dir: &Path, path: &Path) -> u64 {
    let Ok(b) = std::fs::read(positions_dir.join("file-positions.json")) else {
        return 0;
    };
    let v: Value = serde_json::from_slice(&b).unwrap_or_default();
    v.get(path.to_string_lossy().as_ref())
        .and_then(|p| p.get("offset"))
        .and_then(Value::as_u64)
        .unwrap_or(0)
}

/// Publish the records of `log` (not followed) with `run --mode ingest` to a new topic on
/// `brokers` (2 partitions) and wait for the ingest instance to finish; returns the
/// `scale_out:` section for detect instances.
pub fn ingest_to_new_topic(
    dir: &Path,
    log: &Path,
    brokers: &str,
    prefix: &str,
    env: &[(&str, &str)],
) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() % 1_000_000_000)
        .unwrap_or(0);
    let topic = format!("{prefix}-{}-{nanos}", std::process::id());
    let so = format!(
        "scale_out: {{ brokers: [\"{brokers}\"], topic: {topic}, group_id: {topic}-g, changelog_topic: {topic}-state, partitions: 2 }}\n"
    );
    let mut ingest = Run::start_args(
        &dir.join("ingest"),
        &format!(
            "sources:\n  - {{ id: trail, type: file, paths: [\"{}\"] }}\nstate: {{ dir: state }}\n{so}",
            log.display()
        ),
        env,
        &["--mode", "ingest"],
    );
    ingest.wait_exit(60);
    assert!(
        ingest.log().contains("every published batch acknowledged"),
        "{}",
        ingest.log()
    );
    so
}
