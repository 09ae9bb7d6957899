//! The name-server address list over HTTP, for RocketMQ's HTTP discovery.
//!
//! Java clients configured with `rocketmq.namesrv.domain` (and the Go/C++ clients'
//! equivalents) fetch `http://<domain>/rocketmq/<subgroup>` — `nsaddr` by default —
//! and expect a plain-text body `ip:port;ip:port`. This endpoint serves exactly that
//! for any path ending in `/nsaddr` (or `/`), `404` otherwise, on the servers' shared
//! HTTP responder (`telemetry::http`).

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::info;

use telemetry::http::{Page, Routes};

/// Binds `bind` and serves `addresses` (`ip:port;ip:port`) until `cancel`.
///
/// # Errors
/// The port cannot be bound.
pub async fn serve(bind: SocketAddr, addresses: String, cancel: CancellationToken) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(bind).await?;
    let routes: Routes =
        Arc::new(move |path| (path == "/" || path.ends_with("/nsaddr")).then(|| Page::text(addresses.clone())));
    let local = telemetry::http::serve(listener, routes, cancel, "nsaddr")?;
    info!(addr = %local, "name server address list served over http");
    Ok(local)
}
