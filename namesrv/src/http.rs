//! The name-server address list over HTTP, for RocketMQ's HTTP discovery.
//!
//! Java clients configured with `rocketmq.namesrv.domain` (and the Go/C++ clients'
//! equivalents) fetch `http://<domain>/rocketmq/<subgroup>` — `nsaddr` by default —
//! and expect a plain-text body `ip:port;ip:port`. This endpoint serves exactly that
//! for any path ending in `/nsaddr` (or `/`), `404` otherwise.
//!
//! It is a deliberately tiny HTTP/1.1 responder rather than a web framework: one
//! read-only GET, bounded request size, one response per connection.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, Instrument};

/// Largest request head we read before answering 431.
const MAX_REQUEST: usize = 8 * 1024;

/// Binds `bind` and serves `addresses` (`ip:port;ip:port`) until `cancel`.
///
/// # Errors
/// The port cannot be bound.
pub async fn serve(bind: SocketAddr, addresses: String, cancel: CancellationToken) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(bind).await?;
    let local = listener.local_addr()?;
    info!(addr = %local, "name server address list served over http");
    tokio::spawn(
        async move {
            loop {
                let (stream, _) = tokio::select! {
                    _ = cancel.cancelled() => break,
                    a = listener.accept() => match a {
                        Ok(a) => a,
                        Err(e) => {
                            debug!(error = %e, "http accept failed");
                            continue;
                        }
                    },
                };
                let body = addresses.clone();
                tokio::spawn(async move {
                    if let Err(e) = tokio::time::timeout(Duration::from_secs(10), answer(stream, &body)).await {
                        debug!(error = %e, "http request timed out");
                    }
                });
            }
        }
        .instrument(tracing::info_span!("http_nsaddr")),
    );
    Ok(local)
}

async fn answer(mut stream: TcpStream, body: &str) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    let head_end = loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break pos;
        }
        if buf.len() > MAX_REQUEST {
            return respond(&mut stream, "431 Request Header Fields Too Large", "").await;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]);
    let mut parts = head.lines().next().unwrap_or_default().split_whitespace();
    let (method, target) = (parts.next().unwrap_or_default(), parts.next().unwrap_or_default());
    let path = target.split('?').next().unwrap_or_default();
    match method {
        "GET" | "HEAD" if path == "/" || path.ends_with("/nsaddr") => {
            let body = if method == "HEAD" { "" } else { body };
            respond(&mut stream, "200 OK", body).await
        }
        "GET" | "HEAD" => respond(&mut stream, "404 Not Found", "").await,
        _ => respond(&mut stream, "405 Method Not Allowed", "").await,
    }
}

async fn respond(stream: &mut TcpStream, status: &str, body: &str) -> std::io::Result<()> {
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}
