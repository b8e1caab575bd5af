//! A small HTTP endpoint: `/metrics` (Prometheus text format), `/healthz` (the process is alive
//! and its pipeline is moving) and `/readyz` (programs attached and rules loaded).
//!
//! Hand-rolled on tokio to keep the agent's dependency set small; it answers GET requests only,
//! reads at most 8 KiB of request headers, and closes each connection after one response.
use std::{
    net::SocketAddr,
    sync::{
        Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use prometheus::{Encoder, TextEncoder};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
};
use tracing::{debug, info};

use crate::telemetry::metrics::Metrics;

/// The pipeline is unhealthy when its stage has not turned for this long.
pub(crate) const STALL_AFTER: Duration = Duration::from_secs(15);

/// What the health endpoints report.
pub(crate) struct Health {
    start: Instant,
    /// Milliseconds since `start` of the last beat.
    beat_ms: AtomicU64,
    ready: AtomicBool,
    /// Why the agent is not ready (yet).
    not_ready: Mutex<String>,
}

impl Default for Health {
    fn default() -> Self {
        Health {
            start: Instant::now(),
            beat_ms: AtomicU64::new(0),
            ready: AtomicBool::new(false),
            not_ready: Mutex::new("starting: loading kernel programs".into()),
        }
    }
}

impl Health {
    /// The pipeline made progress.
    pub(crate) fn beat(&self) {
        self.beat_ms
            .store(self.start.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    pub(crate) fn set_ready(&self, ready: bool, why_not: &str) {
        if let Ok(mut g) = self.not_ready.lock() {
            *g = why_not.to_string();
        }
        self.ready.store(ready, Ordering::Release);
    }

    /// `Ok` with a short text, or `Err` with why not.
    pub(crate) fn live(&self) -> Result<String, String> {
        let since = self
            .start
            .elapsed()
            .saturating_sub(Duration::from_millis(self.beat_ms.load(Ordering::Relaxed)));
        if since > STALL_AFTER {
            Err(format!(
                "pipeline stalled: no progress for {}s\n",
                since.as_secs()
            ))
        } else {
            Ok("ok\n".into())
        }
    }

    pub(crate) fn ready(&self) -> Result<String, String> {
        if self.ready.load(Ordering::Acquire) {
            Ok("ready\n".into())
        } else {
            Err(self
                .not_ready
                .lock()
                .map(|g| format!("not ready: {g}\n"))
                .unwrap_or_else(|_| "not ready\n".into()))
        }
    }
}

/// Binds the endpoint; returns the bound address (useful with port 0).
pub(crate) async fn bind(addr: SocketAddr) -> std::io::Result<(TcpListener, SocketAddr)> {
    let l = TcpListener::bind(addr).await?;
    let local = l.local_addr()?;
    info!(addr = %local, "metrics endpoint listening (/metrics, /healthz, /readyz)");
    Ok((l, local))
}

fn response(status: &str, ctype: &str, body: &[u8]) -> Vec<u8> {
    let mut r = format!("HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len())
        .into_bytes();
    r.extend_from_slice(body);
    r
}

/// Serves until the task is dropped.
pub(crate) async fn serve(listener: TcpListener, metrics: Metrics, health: std::sync::Arc<Health>) {
    loop {
        let Ok((mut sock, peer)) = listener.accept().await else {
            continue;
        };
        let metrics = metrics.clone();
        let health = health.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 8192];
            let mut n = 0;
            while n < buf.len() {
                match tokio::time::timeout(
                    std::time::Duration::from_secs(5),
                    sock.read(&mut buf[n..]),
                )
                .await
                {
                    Ok(Ok(0)) | Err(_) | Ok(Err(_)) => break,
                    Ok(Ok(k)) => {
                        n += k;
                        if buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
                            break;
                        }
                    }
                }
            }
            let req = String::from_utf8_lossy(&buf[..n]);
            let mut parts = req.split_whitespace();
            let reply = match (parts.next(), parts.next()) {
                (Some("GET"), Some("/metrics")) => {
                    let mut body = Vec::new();
                    match TextEncoder::new().encode(&metrics.registry.gather(), &mut body) {
                        Ok(()) => {
                            response("200 OK", "text/plain; version=0.0.4; charset=utf-8", &body)
                        }
                        Err(e) => response(
                            "500 Internal Server Error",
                            "text/plain",
                            e.to_string().as_bytes(),
                        ),
                    }
                }
                (Some("GET"), Some("/healthz")) => match health.live() {
                    Ok(t) => response("200 OK", "text/plain", t.as_bytes()),
                    Err(t) => response("503 Service Unavailable", "text/plain", t.as_bytes()),
                },
                (Some("GET"), Some("/readyz")) => match health.ready() {
                    Ok(t) => response("200 OK", "text/plain", t.as_bytes()),
                    Err(t) => response("503 Service Unavailable", "text/plain", t.as_bytes()),
                },
                (Some("GET"), Some(_)) => response("404 Not Found", "text/plain", b"not found\n"),
                _ => response("405 Method Not Allowed", "text/plain", b"GET only\n"),
            };
            if let Err(e) = sock.write_all(&reply).await {
                debug!(%peer, error = %e, "metrics client went away");
            }
        });
    }
}
