//! FerroMQ's web console: a single-page UI for a FerroMQ or Apache RocketMQ cluster —
//! brokers, topics, consumer groups, messages, producers and plugins — and the HTTP
//! JSON API behind it,
//! which scripts can use as well (`console/README.md` documents each route).
//!
//! The console owns no data: every answer comes from the name servers and brokers,
//! asked through the client SDK (`client::Admin`, a producer for test messages) and
//! the `admin` library. What it
//! keeps between requests is the last reading of each broker's counters (to derive
//! rates, [`rates`]) and, once a test message has been sent, one producer.
//!
//! It has no login: it binds loopback by default and signs its requests with the
//! ACL account it is given, so whoever reaches its port acts with that account.

pub mod api;
mod assets;
pub mod error;
pub mod rates;

use std::future::Future;
use std::sync::{Arc, OnceLock};

use axum::Router;
use client::{Admin, Producer, ProducerOptions};

pub use error::{Error, Result};

/// The producer group of test messages sent from the console.
pub const PRODUCER_GROUP: &str = "ferromq-console";

/// What the API handlers share: the cluster client and the rate readings.
pub struct Console {
    admin: Admin,
    producer: OnceLock<Producer>,
    rates: rates::RateMeter,
}

impl Console {
    /// A console asking the name servers `namesrv` (set in code; else those of
    /// `config`), signing with `config`'s account.
    pub fn new(config: config::ClientConfig, namesrv: Option<Vec<String>>) -> Self {
        Self { admin: Admin::new(config, namesrv), producer: OnceLock::new(), rates: rates::RateMeter::default() }
    }

    /// The cluster client the API asks through.
    pub fn admin(&self) -> &Admin {
        &self.admin
    }

    /// The producer of test messages, started on first use on the admin client's
    /// connections.
    fn producer(&self) -> &Producer {
        self.producer.get_or_init(|| {
            Producer::with_instance(PRODUCER_GROUP, self.admin.instance().clone(), ProducerOptions::default())
        })
    }

    /// Stops the producer (if started) and the client.
    pub async fn shutdown(&self) {
        if let Some(p) = self.producer.get() {
            p.shutdown().await;
        }
        self.admin.shutdown();
    }
}

/// The whole site: the page at `/`, its assets, and the API under `/api`.
pub fn app(console: Arc<Console>) -> Router {
    api::router(console)
        .merge(assets::router())
        .fallback(assets::not_found)
        .layer(axum::middleware::from_fn(assets::security_headers))
}

/// Serves the console on `listener` until `shutdown` completes, then lets requests in
/// progress finish.
///
/// # Errors
/// Accepting connections failed for good.
pub async fn serve(
    listener: tokio::net::TcpListener,
    console: Arc<Console>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    axum::serve(listener, app(console)).with_graceful_shutdown(shutdown).await.map_err(Error::Serve)
}
