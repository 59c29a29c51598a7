//! The metrics listener of `kmswatch run` (`server:`), as a client and an attacker see it:
//! idle connections and slow request heads are cut off, `/metrics` needs the bearer token when
//! one is configured, TLS serves with a certificate, and running out of file descriptors makes
//! `accept` back off instead of logging in a loop.
//!
//! `tests/data/server-test.{crt,key}`: a self-signed certificate for `localhost` and
//! `127.0.0.1`, made for these tests only (`openssl req -x509 -newkey ec ...`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_kmswatch");
const TOKEN: &str = "metrics-token-0123456789abcdef";

/// `kmswatch run` with a file source that follows an empty folder (it runs until stopped),
/// a file sink, and the given `server:` section; its log collected as it comes.
struct Service {
    child: Child,
    log: Arc<Mutex<String>>,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Service {
    fn start(server: &str) -> Service {
        Service::start_with(server, &[], None)
    }

    fn start_with(server: &str, env: &[(&str, &str)], nofile: Option<u32>) -> Service {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("logs")).expect("logs dir");
        let cfg = dir.path().join("kmswatch.yml");
        let rules = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../rules");
        std::fs::write(
            &cfg,
            format!(
                "rules: {{ paths: [\"{}\"] }}\n\
                 sources:\n  - {{ id: logs, type: file, paths: [\"logs/*.json\"], follow: true }}\n\
                 sinks: [{{ type: file, path: findings.jsonl }}]\n\
                 state: {{ dir: state }}\n{server}\n",
                rules.display()
            ),
        )
        .expect("config");
        let mut cmd = match nofile {
            // A low open-files limit for the service only (the shell's builtin, then exec).
            Some(n) => {
                let mut c = Command::new("sh");
                c.args(["-c", &format!("ulimit -n {n} && exec \"$0\" \"$@\""), BIN]);
                c
            }
            None => Command::new(BIN),
        };
        cmd.args(["run", "--log-format", "json", "--config"])
            .arg(&cfg)
            .env("KMSWATCH_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("kmswatch run");
        let log = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().expect("stderr");
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let mut l = sink.lock().expect("log");
                l.push_str(&line);
                l.push('\n');
            }
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        let addr = loop {
            let text = log.lock().expect("log").clone();
            if let Some(a) = text
                .split("\"listen\":\"")
                .nth(1)
                .and_then(|r| r.split('"').next())
                .and_then(|a| a.parse().ok())
            {
                break a;
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("kmswatch run exited ({status}) before listening:\n{text}");
            }
            assert!(
                Instant::now() < deadline,
                "no listen address logged:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        Service {
            child,
            log,
            addr,
            _dir: dir,
        }
    }

    fn log(&self) -> String {
        self.log.lock().expect("log").clone()
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One request with `Connection: close`; the status line and the whole answer.
fn get(addr: SocketAddr, path: &str, headers: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: kmswatch\r\nConnection: close\r\n{headers}\r\n"
    )
    .expect("request");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("response");
    let status = out
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {out:?}"));
    (status, out)
}

/// Reads until the server closes the connection (EOF or reset); how long that took, or
/// `None` if it was still open after `limit`.
fn closed_within(s: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let mut buf = [0u8; 1024];
    while start.elapsed() < limit {
        match s.read(&mut buf) {
            Ok(0) => return Some(start.elapsed()),
            Ok(_) => {} // a 408 or the like before the close
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return Some(start.elapsed()),
        }
    }
    None
}

#[test]
fn an_idle_connection_is_closed_by_default() {
    // Defaults only: the header read timeout (5 s) closes a connection that sends nothing.
    let svc = Service::start("server: { listen: \"127.0.0.1:0\" }");
    let mut idle = TcpStream::connect(svc.addr).expect("connect");
    let took = closed_within(&mut idle, Duration::from_secs(15));
    let took = took.unwrap_or_else(|| {
        panic!(
            "an idle connection was still open after 15 s:\n{}",
            svc.log()
        )
    });
    assert!(took >= Duration::from_secs(4), "closed after {took:?}");
    // And the listener still serves.
    assert_eq!(get(svc.addr, "/healthz", "").0, 200);
}

#[test]
fn a_slow_request_head_is_cut_off_and_a_huge_one_refused() {
    // Defaults only (header read timeout 5 s).
    let svc = Service::start("server: { listen: \"127.0.0.1:0\" }");
    // Slow loris: a header line every 100 ms, never the blank line that ends the head.
    let mut s = TcpStream::connect(svc.addr).expect("connect");
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        .expect("request line");
    let start = Instant::now();
    let mut cut = None;
    for i in 0..100 {
        std::thread::sleep(Duration::from_millis(100));
        if s.write_all(format!("X-Slow-{i}: y\r\n").as_bytes())
            .is_err()
        {
            cut = Some(start.elapsed());
            break;
        }
        if let Some(t) = closed_within(&mut s, Duration::from_millis(1)) {
            cut = Some(start.elapsed().max(t));
            break;
        }
    }
    let cut = cut.unwrap_or_else(|| panic!("a trickled head was never cut off:\n{}", svc.log()));
    assert!(
        cut >= Duration::from_secs(4) && cut < Duration::from_secs(8),
        "cut off after {cut:?}"
    );
    // A head over the size limit is refused, not buffered.
    let mut s = TcpStream::connect(svc.addr).expect("connect");
    let big = format!(
        "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(64 * 1024)
    );
    let _ = s.write_all(big.as_bytes());
    let mut out = Vec::new();
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let _ = s.read_to_end(&mut out);
    let out = String::from_utf8_lossy(&out);
    assert!(!out.contains(" 200 "), "a 64 KiB head was served: {out}");
    assert_eq!(get(svc.addr, "/healthz", "").0, 200);
}

#[test]
fn metrics_need_the_bearer_token_and_probes_do_not() {
    let svc = Service::start_with(
        "server: { listen: \"127.0.0.1:0\", auth: { bearer_token_env: KMSWATCH_METRICS_TOKEN } }",
        &[("KMSWATCH_METRICS_TOKEN", TOKEN)],
        None,
    );
    let (code, out) = get(svc.addr, "/metrics", "");
    assert_eq!(code, 401, "{out}");
    assert!(
        out.to_ascii_lowercase()
            .contains("www-authenticate: bearer"),
        "{out}"
    );
    assert!(!out.contains("kmswatch_"), "metrics leaked: {out}");
    for wrong in [
        "Authorization: Bearer metrics-token-0123456789abcdeX\r\n".to_string(),
        format!("Authorization: Bearer {TOKEN}x\r\n"),
        format!("Authorization: Basic {TOKEN}\r\n"),
    ] {
        let (code, out) = get(svc.addr, "/metrics", &wrong);
        assert_eq!(code, 401, "{wrong}: {out}");
    }
    let (code, out) = get(
        svc.addr,
        "/metrics",
        &format!("Authorization: Bearer {TOKEN}\r\n"),
    );
    assert_eq!(code, 200, "{out}");
    assert!(
        out.contains("kmswatch_server_auth_failures_total{} 4"),
        "{out}"
    );
    assert_eq!(get(svc.addr, "/healthz", "").0, 200);
    let deadline = Instant::now() + Duration::from_secs(30);
    while get(svc.addr, "/readyz", "").0 != 200 {
        assert!(Instant::now() < deadline, "never ready:\n{}", svc.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!svc.log().contains(TOKEN), "the token was logged");
}

#[test]
fn tls_serves_with_a_test_certificate() {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    let svc = Service::start(&format!(
        "server: {{ listen: \"127.0.0.1:0\", tls: {{ cert_path: \"{}\", key_path: \"{}\" }} }}",
        data.join("server-test.crt").display(),
        data.join("server-test.key").display()
    ));
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10", "--cacert"])
        .arg(data.join("server-test.crt"))
        .arg(format!("https://localhost:{}/healthz", svc.addr.port()))
        .output()
        .expect("curl");
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout) == "ok\n",
        "curl over TLS: {} {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        svc.log()
    );
    // Plain HTTP on the TLS port gets no answer of ours.
    let mut s = TcpStream::connect(svc.addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("write");
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    assert!(
        !String::from_utf8_lossy(&out).contains("200 OK"),
        "plain HTTP answered on the TLS port"
    );
}

#[test]
fn running_out_of_file_descriptors_backs_off_and_recovers() {
    // Defaults (64 connections at most, closed after 5 s idle) under an open-files limit of
    // 40 (the service uses 13 at rest): accept fails with EMFILE well before the cap, for the
    // 5 s the held connections stay open.
    let svc = Service::start_with("server: { listen: \"127.0.0.1:0\" }", &[], Some(40));
    let deadline = Instant::now() + Duration::from_secs(30);
    while get(svc.addr, "/readyz", "").0 != 200 {
        assert!(Instant::now() < deadline, "never ready:\n{}", svc.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut held = Vec::new();
    for _ in 0..200 {
        match TcpStream::connect(svc.addr) {
            Ok(s) => held.push(s),
            Err(_) => break,
        }
    }
    // Accept is failing now: what the log grows by over three seconds.
    std::thread::sleep(Duration::from_millis(500));
    let before = svc.log().len();
    std::thread::sleep(Duration::from_secs(3));
    let grown = svc.log().len() - before;
    let log = svc.log();
    assert!(
        log.contains("accept failed"),
        "accept never failed (limit too high?):\n{log}"
    );
    assert!(
        grown < 4096,
        "the log grew by {grown} bytes in 3 s while accept was failing:\n{}",
        &log[log.len().saturating_sub(2000)..]
    );
    // Once the connections go, the listener serves again.
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let ok = std::panic::catch_unwind(|| get(svc.addr, "/healthz", "").0 == 200);
        if ok.unwrap_or(false) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the listener did not recover:\n{}",
            svc.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(svc.log().contains("accept works again"), "{}", svc.log());
}
