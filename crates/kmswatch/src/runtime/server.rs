//! The HTTP listener: `/metrics` (Prometheus text format), `/healthz` (the process answers)
//! and `/readyz` (state restored and sources open). A deliberately tiny HTTP/1.1 responder:
//! one request per connection, no body parsing, so no web framework is needed.

use crate::runtime::metrics::Metrics;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tracing::{debug, warn};

/// Bind `addr` and serve until the process ends. Returns the bound address.
pub async fn serve(
    addr: SocketAddr,
    metrics: Metrics,
    ready: Arc<AtomicBool>,
) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let (mut sock, peer) = match listener.accept().await {
                Ok(s) => s,
                Err(e) => {
                    warn!(error = %e, "accept failed");
                    continue;
                }
            };
            let metrics = metrics.clone();
            let ready = ready.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let mut n = 0;
                // Read until the end of the request head (or the buffer is full).
                while n < buf.len() {
                    match sock.read(&mut buf[n..]).await {
                        Ok(0) | Err(_) => break,
                        Ok(k) => {
                            n += k;
                            if buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
                                break;
                            }
                        }
                    }
                }
                let head = String::from_utf8_lossy(&buf[..n]);
                let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
                debug!(%peer, %path, "http request");
                let (status, ctype, body) = route(&path, &metrics, &ready);
                let resp = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = sock.write_all(resp.as_bytes()).await;
                let _ = sock.write_all(body.as_bytes()).await;
                let _ = sock.shutdown().await;
            });
        }
    });
    Ok(local)
}

fn route(
    path: &str,
    metrics: &Metrics,
    ready: &AtomicBool,
) -> (&'static str, &'static str, String) {
    let path = path.split('?').next().unwrap_or(path);
    match path {
        "/metrics" => (
            "200 OK",
            "text/plain; version=0.0.4; charset=utf-8",
            metrics.render(),
        ),
        "/healthz" => ("200 OK", "text/plain", "ok\n".into()),
        "/readyz" if ready.load(Ordering::Relaxed) => ("200 OK", "text/plain", "ready\n".into()),
        "/readyz" => (
            "503 Service Unavailable",
            "text/plain",
            "not ready\n".into(),
        ),
        _ => ("404 Not Found", "text/plain", "not found\n".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn serves_metrics_health_and_readiness() {
        let m = Metrics::default();
        m.add("kmswatch_checkpoints_total", &[], 2.0);
        let ready = Arc::new(AtomicBool::new(false));
        let addr = serve("127.0.0.1:0".parse().expect("addr"), m, ready.clone())
            .await
            .expect("bind");
        async fn get(addr: SocketAddr, path: &str) -> String {
            let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
            s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
                .await
                .expect("write");
            let mut out = String::new();
            s.read_to_string(&mut out).await.expect("read");
            out
        }
        assert!(get(addr, "/healthz").await.starts_with("HTTP/1.1 200"));
        assert!(get(addr, "/readyz").await.starts_with("HTTP/1.1 503"));
        ready.store(true, Ordering::Relaxed);
        assert!(get(addr, "/readyz").await.starts_with("HTTP/1.1 200"));
        let metrics = get(addr, "/metrics").await;
        assert!(
            metrics.contains("kmswatch_checkpoints_total{} 2"),
            "{metrics}"
        );
        assert!(get(addr, "/nope").await.starts_with("HTTP/1.1 404"));
    }
}
