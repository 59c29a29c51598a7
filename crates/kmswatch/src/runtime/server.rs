//! The HTTP listener: `/metrics` (Prometheus text format), `/healthz` (the process answers)
//! and `/readyz` (state restored and sources open), configured by the `server:` section
//! (`crate::config::ServerConfig`, documented in docs/operations.md "Endpoints").
//!
//! It is reachable by whatever can reach its address, so it is built to be left alone safely:
//! - loopback by default; a non-loopback address without `auth` is warned about (here, at
//!   start, and by `kmswatch validate`);
//! - optional bearer token for `/metrics` (compared as SHA-256 digests in constant time; 401
//!   with `WWW-Authenticate: Bearer`), `/healthz` and `/readyz` always open (they say up/ready
//!   and nothing else);
//! - optional TLS (rustls, aws-lc-rs provider), the handshake bounded by the header timeout;
//! - HTTP/1.1 by hyper: a request head of at most [`MAX_HEAD_BYTES`] and [`MAX_HEADERS`]
//!   headers, which must arrive within `header_read_timeout_ms` (idle connections and heads
//!   sent byte by byte are closed), a connection lives at most `connection_timeout_secs`, at
//!   most `max_connections` are served at once (the rest wait in the kernel's queue);
//! - `accept` errors (out of file descriptors: EMFILE/ENFILE) back off from 10 ms to 1 s and
//!   are logged at most once per [`ACCEPT_LOG_INTERVAL`] with a count, never in a loop.
//!
//! Request paths and methods never become metric labels or log text unescaped.

use crate::config::{ServerAuthConfig, ServerConfig, ServerTlsConfig};
use crate::runtime::metrics::Metrics;
use crate::runtime::ready::Readiness;
use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use sha2::{Digest, Sha256};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tracing::{debug, info, warn};

/// Largest request head (request line and headers) read: hyper's smallest buffer.
pub const MAX_HEAD_BYTES: usize = 8 * 1024;
/// Most headers in one request.
pub const MAX_HEADERS: usize = 32;
/// `accept` errors are logged at most once per this interval (with how many there were).
pub const ACCEPT_LOG_INTERVAL: Duration = Duration::from_secs(10);
/// First and largest pause after a failed `accept`.
const ACCEPT_BACKOFF: (Duration, Duration) = (Duration::from_millis(10), Duration::from_secs(1));
/// Shortest bearer token accepted (a guessable token protects nothing).
pub const MIN_TOKEN_CHARS: usize = 16;

/// The bearer token for `/metrics`, kept only as its SHA-256 digest (so it is never printed,
/// and comparison time depends on neither its length nor its content).
#[derive(Clone)]
pub struct BearerToken {
    digest: [u8; 32],
}

impl std::fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BearerToken(<redacted>)")
    }
}

impl BearerToken {
    /// Read the token from where `server.auth` says (environment variable or file).
    pub fn load(a: &ServerAuthConfig) -> Result<BearerToken> {
        let (token, from) = match (&a.bearer_token_env, &a.bearer_token_file) {
            (Some(name), None) => (
                std::env::var(name).map_err(|_| {
                    anyhow!("server.auth.bearer_token_env: environment variable {name} is not set")
                })?,
                format!("environment variable {name}"),
            ),
            (None, Some(path)) => (
                std::fs::read_to_string(path).with_context(|| {
                    format!("server.auth.bearer_token_file: reading {}", path.display())
                })?,
                path.display().to_string(),
            ),
            _ => bail!("server.auth: give exactly one of bearer_token_env and bearer_token_file"),
        };
        let token = token.trim();
        if token.chars().count() < MIN_TOKEN_CHARS {
            bail!("server.auth: the token in {from} is shorter than {MIN_TOKEN_CHARS} characters");
        }
        // RFC 6750 b64token: what a client can send in the header unchanged.
        if !token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~+/=".contains(&b))
        {
            bail!(
                "server.auth: the token in {from} has characters outside A-Z a-z 0-9 - . _ ~ + / ="
            );
        }
        Ok(BearerToken::from_secret(token))
    }

    fn from_secret(token: &str) -> BearerToken {
        BearerToken {
            digest: Sha256::digest(token.as_bytes()).into(),
        }
    }

    /// Whether an `Authorization` header value carries this token (`Bearer TOKEN`, scheme
    /// case-insensitive).
    fn admits(&self, header: Option<&HeaderValue>) -> bool {
        let Some(value) = header.map(HeaderValue::as_bytes) else {
            return false;
        };
        let Some((scheme, token)) = value.split_at_checked(7) else {
            return false;
        };
        if !scheme.eq_ignore_ascii_case(b"bearer ") {
            return false;
        }
        let given: [u8; 32] = Sha256::digest(token.trim_ascii()).into();
        subtle::ConstantTimeEq::ct_eq(&given[..], &self.digest[..]).into()
    }
}

/// TLS from `server.tls`: certificate chain and key read from PEM files.
pub fn load_tls(t: &ServerTlsConfig) -> Result<tokio_rustls::TlsAcceptor> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    use tokio_rustls::rustls;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&t.cert_path)
        .and_then(|it| it.collect::<Result<_, _>>())
        .map_err(|e| anyhow!("server.tls.cert_path {}: {e}", t.cert_path.display()))?;
    if certs.is_empty() {
        bail!(
            "server.tls.cert_path {}: no CERTIFICATE in the file",
            t.cert_path.display()
        );
    }
    let key = PrivateKeyDer::from_pem_file(&t.key_path)
        .map_err(|e| anyhow!("server.tls.key_path {}: {e}", t.key_path.display()))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| anyhow!("TLS: {e}"))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| {
            anyhow!(
                "server.tls: {} and {} do not make a usable certificate and key: {e}",
                t.cert_path.display(),
                t.key_path.display()
            )
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// What `kmswatch validate --connect` checks of the server section (reads the token and
/// certificate files; changes nothing): a description of the listener.
pub fn check(cfg: &ServerConfig) -> Result<String> {
    let auth = cfg.auth.as_ref().map(BearerToken::load).transpose()?;
    let tls = cfg.tls.as_ref().map(load_tls).transpose()?;
    Ok(describe(cfg, auth.is_some(), tls.is_some()))
}

fn describe(cfg: &ServerConfig, auth: bool, tls: bool) -> String {
    format!(
        "{}://{} ({}; /metrics {})",
        if tls { "https" } else { "http" },
        cfg.listen,
        if cfg.is_loopback() {
            "loopback only"
        } else {
            "reachable from the network"
        },
        if auth {
            "needs the bearer token"
        } else {
            "open"
        }
    )
}

/// Everything a connection needs, shared.
struct Shared {
    metrics: Metrics,
    ready: Readiness,
    token: Option<BearerToken>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    header_read_timeout: Duration,
    connection_timeout: Duration,
}

/// Bind `server.listen` and serve until the process ends. Returns the bound address.
pub async fn start(cfg: &ServerConfig, metrics: &Metrics, ready: &Readiness) -> Result<SocketAddr> {
    let addr: SocketAddr = cfg
        .listen
        .parse()
        .with_context(|| format!("server.listen {:?}", cfg.listen))?;
    let token = cfg.auth.as_ref().map(BearerToken::load).transpose()?;
    let tls = cfg.tls.as_ref().map(load_tls).transpose()?;
    if let Some(w) = cfg.exposure_warning() {
        warn!(listen = %cfg.listen, "{w}");
    }
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("listening on {addr} (server.listen)"))?;
    let local = listener.local_addr()?;
    info!(
        listen = %local,
        endpoint = %describe(cfg, token.is_some(), tls.is_some()),
        "metrics listener started"
    );
    let shared = Arc::new(Shared {
        metrics: metrics.clone(),
        ready: ready.clone(),
        token,
        tls,
        header_read_timeout: Duration::from_millis(cfg.header_read_timeout_ms),
        connection_timeout: Duration::from_secs(cfg.connection_timeout_secs),
    });
    let limit = Arc::new(Semaphore::new(cfg.max_connections));
    tokio::spawn(accept_loop(listener, limit, shared));
    Ok(local)
}

async fn accept_loop(listener: TcpListener, limit: Arc<Semaphore>, shared: Arc<Shared>) {
    let mut backoff = AcceptBackoff::default();
    loop {
        // The cap: no accept while `max_connections` are being served.
        let Ok(permit) = limit.clone().acquire_owned().await else {
            return; // the semaphore is never closed
        };
        match listener.accept().await {
            Ok((sock, peer)) => {
                if let Some(n) = backoff.recovered() {
                    info!(errors = n, "accept works again");
                }
                let shared = shared.clone();
                tokio::spawn(async move {
                    connection(sock, peer, &shared).await;
                    drop(permit);
                });
            }
            Err(e) => {
                drop(permit);
                shared
                    .metrics
                    .add("kmswatch_server_accept_errors_total", &[], 1.0);
                let (pause, log) = backoff.failed(Instant::now());
                if let Some(n) = log {
                    warn!(
                        error = %e,
                        errors = n,
                        pause_ms = pause.as_millis() as u64,
                        "accept failed (out of file descriptors?); backing off, next report in {}s at the earliest",
                        ACCEPT_LOG_INTERVAL.as_secs()
                    );
                }
                tokio::time::sleep(pause).await;
            }
        }
    }
}

/// The pause after each failed `accept` (doubling, capped) and when to log.
#[derive(Debug, Default)]
struct AcceptBackoff {
    pause: Option<Duration>,
    /// Errors since the last report, and when that report was.
    unreported: u64,
    last_report: Option<Instant>,
    /// Errors in the current run of failures.
    run: u64,
}

impl AcceptBackoff {
    /// One more failure at `now`: how long to pause, and `Some(count)` when to log (the first
    /// failure, then at most once per [`ACCEPT_LOG_INTERVAL`], with the failures since).
    fn failed(&mut self, now: Instant) -> (Duration, Option<u64>) {
        let (first, max) = ACCEPT_BACKOFF;
        let pause = self.pause.map_or(first, |p| (p * 2).min(max));
        self.pause = Some(pause);
        self.unreported += 1;
        self.run += 1;
        let due = self
            .last_report
            .is_none_or(|t| now.duration_since(t) >= ACCEPT_LOG_INTERVAL);
        if due {
            self.last_report = Some(now);
            let n = std::mem::take(&mut self.unreported);
            return (pause, Some(n));
        }
        (pause, None)
    }

    /// A successful accept: `Some(failures)` if it ends a run of failures.
    fn recovered(&mut self) -> Option<u64> {
        self.pause = None;
        self.unreported = 0;
        (self.run > 0).then(|| std::mem::take(&mut self.run))
    }
}

async fn connection(sock: TcpStream, peer: SocketAddr, shared: &Arc<Shared>) {
    let _ = sock.set_nodelay(true);
    let deadline = tokio::time::Instant::now() + shared.connection_timeout;
    match &shared.tls {
        Some(acceptor) => {
            let handshake = tokio::time::timeout(shared.header_read_timeout, acceptor.accept(sock));
            match handshake.await {
                Ok(Ok(tls)) => serve(TokioIo::new(tls), peer, shared, deadline).await,
                Ok(Err(e)) => debug!(%peer, error = %e, "TLS handshake failed"),
                Err(_) => debug!(%peer, "TLS handshake timed out"),
            }
        }
        None => serve(TokioIo::new(sock), peer, shared, deadline).await,
    }
}

async fn serve<I>(io: I, peer: SocketAddr, shared: &Arc<Shared>, deadline: tokio::time::Instant)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let svc_shared = shared.clone();
    let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
        let r = route(&req, &svc_shared);
        async move { Ok::<_, std::convert::Infallible>(r) }
    });
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(shared.header_read_timeout)
        .max_buf_size(MAX_HEAD_BYTES)
        .max_headers(MAX_HEADERS)
        .keep_alive(true);
    let conn = http.serve_connection(io, svc);
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                debug!(%peer, error = %e, "connection closed");
            }
        }
        _ = tokio::time::sleep_until(deadline) => {
            // Let a response in progress finish briefly, then drop the socket.
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(Duration::from_secs(1), conn).await;
            debug!(%peer, "connection closed after server.connection_timeout_secs");
        }
    }
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    r
}

fn route<B>(req: &Request<B>, shared: &Shared) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "GET only\n");
        r.headers_mut()
            .insert(hyper::header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    match req.uri().path() {
        "/metrics" => {
            if let Some(token) = &shared.token {
                let header = req.headers().get(AUTHORIZATION);
                if !token.admits(header) {
                    shared
                        .metrics
                        .add("kmswatch_server_auth_failures_total", &[], 1.0);
                    let mut r = text(StatusCode::UNAUTHORIZED, "unauthorized\n");
                    // RFC 6750 section 3: say why when a token was sent.
                    let challenge = if header.is_some() {
                        "Bearer realm=\"kmswatch\", error=\"invalid_token\""
                    } else {
                        "Bearer realm=\"kmswatch\""
                    };
                    r.headers_mut()
                        .insert(WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
                    return r;
                }
            }
            let mut r = Response::new(Full::new(Bytes::from(shared.metrics.render())));
            r.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            r
        }
        "/healthz" => text(StatusCode::OK, "ok\n"),
        "/readyz" if shared.ready.is_ready() => text(StatusCode::OK, "ready\n"),
        // The reason names the failing component (`state_store: ...`): operators see why.
        "/readyz" => text(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "{}\n",
                shared.ready.reason().as_deref().unwrap_or("not ready")
            ),
        ),
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_backoff_grows_is_capped_and_logs_once_per_interval() {
        let mut b = AcceptBackoff::default();
        let t0 = Instant::now();
        let (p, log) = b.failed(t0);
        assert_eq!((p, log), (Duration::from_millis(10), Some(1)));
        let mut logs = 0;
        let mut last = p;
        // 10,000 failures within one interval: pauses grow to 1 s, nothing more is logged.
        for i in 1..10_000u32 {
            let (p, log) = b.failed(t0 + Duration::from_micros(u64::from(i)));
            assert!(p >= last && p <= Duration::from_secs(1));
            last = p;
            logs += usize::from(log.is_some());
        }
        assert_eq!(last, Duration::from_secs(1));
        assert_eq!(logs, 0);
        // The next failure after the interval reports every failure since the last report.
        let (_, log) = b.failed(t0 + ACCEPT_LOG_INTERVAL);
        assert_eq!(log, Some(10_000));
        assert_eq!(b.recovered(), Some(10_001));
        assert_eq!(b.recovered(), None);
        assert_eq!(
            b.failed(t0 + ACCEPT_LOG_INTERVAL * 3).0,
            Duration::from_millis(10)
        );
    }

    #[test]
    fn bearer_token_is_checked_whole_and_never_printed() {
        let t = BearerToken::from_secret("s3cret-token-0123456789");
        let h = |v: &str| HeaderValue::from_str(v).expect("header");
        assert!(t.admits(Some(&h("Bearer s3cret-token-0123456789"))));
        assert!(t.admits(Some(&h("bearer s3cret-token-0123456789"))));
        for bad in [
            "Bearer s3cret-token-012345678",
            "Bearer s3cret-token-01234567890",
            "Basic s3cret-token-0123456789",
            "Bearer",
            "",
        ] {
            assert!(!t.admits(Some(&h(bad))), "{bad:?}");
        }
        assert!(!t.admits(None));
        assert!(!format!("{t:?}").contains("s3cret"));
    }

    #[test]
    fn bearer_token_sources() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = dir.path().join("token");
        std::fs::write(&f, "  abcdefghijklmnop0123\n").expect("write");
        let file = ServerAuthConfig {
            bearer_token_env: None,
            bearer_token_file: Some(f.clone()),
        };
        let t = BearerToken::load(&file).expect("token file");
        assert!(t.admits(Some(&HeaderValue::from_static(
            "Bearer abcdefghijklmnop0123"
        ))));
        std::fs::write(&f, "short").expect("write");
        let e = BearerToken::load(&file).expect_err("short token");
        assert!(e.to_string().contains("shorter than 16"), "{e}");
        std::fs::write(&f, "abcdefghijklmnop 0123").expect("write");
        assert!(BearerToken::load(&file).is_err());
        let env = ServerAuthConfig {
            bearer_token_env: Some("KMSWATCH_TEST_UNSET_TOKEN_VAR".into()),
            bearer_token_file: None,
        };
        let e = BearerToken::load(&env).expect_err("unset");
        assert!(
            e.to_string().contains("KMSWATCH_TEST_UNSET_TOKEN_VAR"),
            "{e}"
        );
    }
}
