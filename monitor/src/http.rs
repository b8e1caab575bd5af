//! A small HTTP endpoint: `/metrics` (Prometheus text format) and `/healthz`.
//!
//! Hand-rolled on tokio to keep the agent's dependency set small; it answers GET requests only,
//! reads at most 8 KiB of request headers, and closes each connection after one response.
use std::net::SocketAddr;

use prometheus::{Encoder, TextEncoder};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
};
use tracing::{debug, info};

use crate::metrics::Metrics;

/// Binds the endpoint; returns the bound address (useful with port 0).
pub async fn bind(addr: SocketAddr) -> std::io::Result<(TcpListener, SocketAddr)> {
    let l = TcpListener::bind(addr).await?;
    let local = l.local_addr()?;
    info!(addr = %local, "metrics endpoint listening (/metrics, /healthz)");
    Ok((l, local))
}

fn response(status: &str, ctype: &str, body: &[u8]) -> Vec<u8> {
    let mut r = format!("HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len())
        .into_bytes();
    r.extend_from_slice(body);
    r
}

/// Serves until the task is dropped.
pub async fn serve(listener: TcpListener, metrics: Metrics) {
    loop {
        let Ok((mut sock, peer)) = listener.accept().await else {
            continue;
        };
        let metrics = metrics.clone();
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
                (Some("GET"), Some("/healthz")) => response("200 OK", "text/plain", b"ok\n"),
                (Some("GET"), Some(_)) => response("404 Not Found", "text/plain", b"not found\n"),
                _ => response("405 Method Not Allowed", "text/plain", b"GET only\n"),
            };
            if let Err(e) = sock.write_all(&reply).await {
                debug!(%peer, error = %e, "metrics client went away");
            }
        });
    }
}
