//! Where the name servers are, in RocketMQ's four ways: set in code, the client
//! config (`namesrv_addr`, RocketMQ's `rocketmq.namesrv.addr`), the `NAMESRV_ADDR`
//! environment variable (both folded into the config by `config::load_client`), or
//! an HTTP endpoint returning `host:port;host:port`, re-fetched periodically.
//!
//! Requests stick to the last name server that answered; one that fails is skipped
//! for the next in the list.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use parking_lot::RwLock;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tracing::{debug, info, warn};

use crate::error::{Error, Result};

pub struct NameServers {
    addrs: RwLock<Vec<String>>,
    http_url: Option<String>,
    current: AtomicUsize,
}

impl NameServers {
    /// `explicit` (set in code) wins over the configured list.
    pub fn new(explicit: Option<Vec<String>>, configured: Vec<String>, http_url: Option<String>) -> Self {
        let addrs = explicit.filter(|v| !v.is_empty()).unwrap_or(configured);
        Self { addrs: RwLock::new(addrs), http_url, current: AtomicUsize::new(0) }
    }

    pub fn list(&self) -> Vec<String> {
        self.addrs.read().clone()
    }

    pub fn http_url(&self) -> Option<&str> {
        self.http_url.as_deref()
    }

    /// Name servers in the order to try them: the sticky one first.
    pub fn candidates(&self) -> Result<Vec<String>> {
        let addrs = self.addrs.read();
        if addrs.is_empty() {
            return Err(Error::NoNameServer);
        }
        let start = self.current.load(Ordering::Relaxed) % addrs.len();
        Ok(addrs.iter().cycle().skip(start).take(addrs.len()).cloned().collect())
    }

    /// Remembers which name server answered.
    pub fn mark_good(&self, addr: &str) {
        if let Some(i) = self.addrs.read().iter().position(|a| a == addr) {
            self.current.store(i, Ordering::Relaxed);
        }
    }

    /// Re-fetches the list from the HTTP endpoint, if one is configured.
    ///
    /// # Errors
    /// The endpoint cannot be reached or returns no address.
    pub async fn refresh_from_http(&self) -> Result<()> {
        let Some(url) = &self.http_url else { return Ok(()) };
        let body = http_get(url, Duration::from_secs(3)).await?;
        let list: Vec<String> =
            body.trim().split(';').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect();
        if list.is_empty() {
            return Err(Error::Body(format!("{url} returned no name server address")));
        }
        let mut addrs = self.addrs.write();
        if *addrs != list {
            info!(url = %url, addrs = ?list, "name server addresses updated from http");
            *addrs = list;
            self.current.store(0, Ordering::Relaxed);
        }
        Ok(())
    }
}

/// A minimal HTTP/1.1 GET for `http://host:port/path` — enough for the address
/// endpoint, which answers one short text body.
async fn http_get(url: &str, timeout: Duration) -> Result<String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| Error::InvalidArgument(format!("namesrv_http_url `{url}` must start with http://")))?;
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let host_port = if host.contains(':') { host.to_owned() } else { format!("{host}:80") };
    let fetch = async {
        let mut stream = tokio::net::TcpStream::connect(&host_port).await?;
        let req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nAccept: text/plain\r\n\r\n");
        stream.write_all(req.as_bytes()).await?;
        let mut buf = Vec::new();
        stream.take(64 * 1024).read_to_end(&mut buf).await?;
        Ok::<_, std::io::Error>(buf)
    };
    let buf = tokio::time::timeout(timeout, fetch).await.map_err(|_| Error::Timeout(timeout))??;
    let text = String::from_utf8_lossy(&buf);
    let (head, body) = text.split_once("\r\n\r\n").ok_or_else(|| Error::Body("malformed http response".into()))?;
    let status = head.lines().next().unwrap_or_default();
    if !status.contains(" 200") {
        warn!(url, status, "name server http endpoint refused");
        return Err(Error::Body(format!("{url}: {status}")));
    }
    debug!(url, "fetched name server list");
    Ok(body.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn code_wins_over_config_and_empty_code_falls_back() {
        let ns = NameServers::new(Some(addrs(&["code:1"])), addrs(&["cfg:1"]), None);
        assert_eq!(ns.list(), addrs(&["code:1"]));
        let ns = NameServers::new(Some(Vec::new()), addrs(&["cfg:1", "cfg:2"]), None);
        assert_eq!(ns.list(), addrs(&["cfg:1", "cfg:2"]));
        let ns = NameServers::new(None, Vec::new(), Some("http://h/x".into()));
        assert!(matches!(ns.candidates(), Err(Error::NoNameServer)));
    }

    #[test]
    fn candidates_start_at_the_last_good_one() {
        let ns = NameServers::new(None, addrs(&["a:1", "b:1", "c:1"]), None);
        assert_eq!(ns.candidates().unwrap(), addrs(&["a:1", "b:1", "c:1"]));
        ns.mark_good("b:1");
        assert_eq!(ns.candidates().unwrap(), addrs(&["b:1", "c:1", "a:1"]));
    }

    #[tokio::test]
    async fn http_list_replaces_the_addresses() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/rocketmq/nsaddr", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf).await;
            s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 18\r\n\r\n10.0.0.1:9876;x:1\n").await.unwrap();
        });
        let ns = NameServers::new(None, addrs(&["old:1"]), Some(url));
        ns.refresh_from_http().await.unwrap();
        assert_eq!(ns.list(), addrs(&["10.0.0.1:9876", "x:1"]));
    }
}
