//! A deliberately tiny HTTP/1.1 responder: read-only GETs, a bounded request head,
//! one response per connection. The servers need no more than that (the name
//! server's address list, the metrics endpoint), and a web framework would bring a
//! second async stack into binaries that serve RocketMQ's own protocol.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tracing::{debug, Instrument};

/// Largest request head read before answering 431.
const MAX_REQUEST: usize = 8 * 1024;

/// A connection that has not sent its request and read its answer by then is dropped.
const CONNECTION_DEADLINE: Duration = Duration::from_secs(10);

/// What a GET is answered with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub content_type: &'static str,
    pub body: String,
}

impl Page {
    pub fn text(body: impl Into<String>) -> Self {
        Self { content_type: "text/plain; charset=utf-8", body: body.into() }
    }
}

/// Maps a request path (without the query) to a page; `None` is 404. Called on a
/// blocking thread: it may take a while (rendering every series of a large broker).
pub type Routes = Arc<dyn Fn(&str) -> Option<Page> + Send + Sync>;

/// Serves `routes` on `listener` until `cancel`, in a task of its own (its span is
/// named `name`). Returns the bound address.
///
/// # Errors
/// The listener's address cannot be read.
pub fn serve(
    listener: TcpListener,
    routes: Routes,
    cancel: CancellationToken,
    name: &'static str,
) -> std::io::Result<SocketAddr> {
    let local = listener.local_addr()?;
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
                let routes = routes.clone();
                tokio::spawn(async move {
                    match tokio::time::timeout(CONNECTION_DEADLINE, answer(stream, routes)).await {
                        Ok(Err(e)) => debug!(error = %e, "http request failed"),
                        Err(_) => debug!("http request timed out"),
                        Ok(Ok(())) => {}
                    }
                });
            }
        }
        .instrument(tracing::info_span!("http", endpoint = name)),
    );
    Ok(local)
}

async fn answer(mut stream: TcpStream, routes: Routes) -> std::io::Result<()> {
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
            return respond(&mut stream, "431 Request Header Fields Too Large", None).await;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]);
    let mut parts = head.lines().next().unwrap_or_default().split_whitespace();
    let (method, target) = (parts.next().unwrap_or_default(), parts.next().unwrap_or_default());
    let path = target.split('?').next().unwrap_or_default().to_owned();
    if method != "GET" && method != "HEAD" {
        return respond(&mut stream, "405 Method Not Allowed", None).await;
    }
    let page = tokio::task::spawn_blocking(move || routes(&path)).await.ok().flatten();
    match page {
        Some(mut page) => {
            if method == "HEAD" {
                page.body.clear();
            }
            respond(&mut stream, "200 OK", Some(&page)).await
        }
        None => respond(&mut stream, "404 Not Found", None).await,
    }
}

async fn respond(stream: &mut TcpStream, status: &str, page: Option<&Page>) -> std::io::Result<()> {
    let (content_type, body) = page.map_or(("text/plain; charset=utf-8", ""), |p| (p.content_type, p.body.as_str()));
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn get(addr: SocketAddr, request: &str) -> String {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(request.as_bytes()).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn routes_answer_and_everything_else_is_refused() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let routes: Routes = Arc::new(|path| (path == "/metrics").then(|| Page::text("a 1\n")));
        let cancel = CancellationToken::new();
        let addr = serve(listener, routes, cancel.clone(), "test").unwrap();

        let ok = get(addr, "GET /metrics?x=1 HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n") && ok.ends_with("\r\n\r\na 1\n"), "{ok}");
        let head = get(addr, "HEAD /metrics HTTP/1.1\r\n\r\n").await;
        assert!(head.contains("Content-Length: 0\r\n"), "{head}");
        assert!(get(addr, "GET /other HTTP/1.1\r\n\r\n").await.starts_with("HTTP/1.1 404 "));
        assert!(get(addr, "POST /metrics HTTP/1.1\r\n\r\n").await.starts_with("HTTP/1.1 405 "));
        cancel.cancel();
    }
}
