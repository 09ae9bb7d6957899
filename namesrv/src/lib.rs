//! The FerroMQ name server.
//!
//! Keeps the topic → broker routing table that clients poll (RocketMQ's
//! `RouteInfoManager`): brokers register every 30 s with their full topic table,
//! are expired after two minutes of silence (or at once when their connection
//! closes), and routes are rebuilt entirely from those registrations — nothing
//! but the KV config is persisted. Name servers never talk to each other.
//!
//! * [`route`] — the tables and every rule of registration, expiry and lookup.
//! * [`kv`] — the persisted namespace → key → value store (`kvConfig.json`).
//! * [`processor`] — request codes → handlers.
//! * [`http`] — the address-list endpoint for RocketMQ's HTTP name-server discovery.
//!
//! [`NameServer::start`] runs everything; the binary only parses flags and loads
//! configuration, so tests run exactly what operators run.

pub mod error;
pub mod http;
pub mod kv;
pub mod processor;
pub mod route;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use config::NamesrvConfig;
use remoting::channel::ChannelOptions;
use remoting::{RemotingServer, ServerConfig};
use tokio_util::sync::CancellationToken;
use tracing::{info, Instrument};

pub use error::{Error, Result};

/// A running name server.
pub struct NameServer {
    server: RemotingServer,
    http_addr: Option<SocketAddr>,
    cancel: CancellationToken,
    state: Arc<processor::NamesrvState>,
    metrics: Option<Arc<telemetry::MetricsExporter>>,
}

impl NameServer {
    /// Loads the KV config, binds the remoting listener (and the HTTP endpoint when
    /// configured) and starts the broker-expiry scan.
    ///
    /// # Errors
    /// The KV file is unreadable, or a port cannot be bound.
    pub async fn start(config: NamesrvConfig) -> Result<Self> {
        Self::start_observed(config, &config::MetricsConfig::default()).await
    }

    /// [`NameServer::start`] with metrics exported as `metrics` says: the request
    /// latency (`rocketmq_rpc_latency`, `node_type="nameserver"`) and the route
    /// tables' sizes (`ferromq_namesrv_*`).
    ///
    /// # Errors
    /// As [`NameServer::start`]; invalid metric settings or an unbindable metrics port.
    pub async fn start_observed(config: NamesrvConfig, metrics: &config::MetricsConfig) -> Result<Self> {
        let kv = kv::KvConfigManager::load(config.kv_config_path.clone())?;
        let routes = route::RouteInfoManager::new(config.broker_channel_expired_time);
        let state = Arc::new(processor::NamesrvState::new(config.clone(), routes, kv));
        let mut dispatcher = processor::dispatcher(state.clone());
        let node = telemetry::Node {
            node_type: "nameserver",
            cluster: String::new(),
            node_id: SocketAddr::new(config.bind_address, config.listen_port).to_string(),
        };
        let bind_ip = config.bind_address;
        let exporter = telemetry::MetricsExporter::start(metrics, &node, bind_ip).await?;
        if let Some(exporter) = &exporter {
            let meter = exporter.meter("namesrv-meter");
            dispatcher.observe(Arc::new(telemetry::RpcMetrics::new(&meter)));
            register_gauges(&meter, &state);
        }
        let mut server_config = ServerConfig::new(SocketAddr::new(config.bind_address, config.listen_port));
        server_config.channel =
            ChannelOptions { idle_timeout: config.channel_idle_timeout, ..ChannelOptions::default() };
        server_config.tls = remoting::tls::ServerTls::from_config(&config.tls)?;
        let server = RemotingServer::bind(server_config.clone(), Arc::new(dispatcher)).await?;
        let cancel = CancellationToken::new();
        if let Some(tls) = server_config.tls {
            tokio::spawn(tls.watch(cancel.clone()));
        }

        let scan_state = state.clone();
        let scan_cancel = cancel.clone();
        let interval = config.scan_not_active_broker_interval;
        tokio::spawn(
            async move {
                let mut tick = tokio::time::interval(interval);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        _ = scan_cancel.cancelled() => break,
                        _ = tick.tick() => { scan_state.routes.scan_not_active_brokers(); }
                    }
                }
            }
            .instrument(tracing::info_span!("scan_not_active_broker")),
        );

        let http_addr = match config.http_listen_port {
            Some(port) => {
                let advertised = config.advertised_addr.clone().unwrap_or_else(|| advertised(server.local_addr()));
                let addr = http::serve(SocketAddr::new(config.bind_address, port), advertised, cancel.clone()).await?;
                Some(addr)
            }
            None => None,
        };
        info!(addr = %server.local_addr(), "name server started");
        Ok(Self { server, http_addr, cancel, state, metrics: exporter })
    }

    /// The remoting listener's address.
    pub fn local_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// The Prometheus endpoint, when metrics are exported there.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().and_then(|m| m.endpoint())
    }

    /// The HTTP address-list endpoint, when enabled.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http_addr
    }

    /// Route tables, for embedding and tests.
    pub fn routes(&self) -> &route::RouteInfoManager {
        &self.state.routes
    }

    /// Stops accepting, finishes requests in progress (up to `grace`), stops the
    /// background tasks and persists the KV config.
    pub async fn shutdown(self, grace: Duration) {
        self.cancel.cancel();
        if let Some(m) = &self.metrics {
            m.shutdown();
        }
        self.server.shutdown(grace).await;
        if let Err(e) = self.state.kv.persist() {
            tracing::error!(error = %e, "could not persist the kv config on shutdown");
        }
        info!("name server stopped");
    }
}

/// The route tables' sizes, read when a scrape asks.
fn register_gauges(meter: &opentelemetry::metrics::Meter, state: &Arc<processor::NamesrvState>) {
    let gauge = |name: &'static str, description: &'static str, read: fn(&processor::NamesrvState) -> i64| {
        let weak = Arc::downgrade(state);
        meter
            .i64_observable_gauge(name)
            .with_description(description)
            .with_callback(move |o| {
                if let Some(s) = weak.upgrade() {
                    o.observe(read(&s), &[]);
                }
            })
            .build();
    };
    gauge("ferromq_namesrv_brokers", "Live broker addresses registered", |s| s.routes.live_broker_count() as i64);
    gauge("ferromq_namesrv_topics", "Topics with a route", |s| s.routes.all_topics().len() as i64);
    gauge("ferromq_namesrv_clusters", "Clusters with a registered broker", |s| {
        s.routes.cluster_info().cluster_addr_table.len() as i64
    });
}

/// The address clients should use for a listener bound to `addr`. An unspecified
/// bind address cannot be advertised; loopback is used and operators who serve remote
/// clients set `advertised_addr`.
pub fn advertised(addr: SocketAddr) -> String {
    if addr.ip().is_unspecified() {
        tracing::warn!(%addr, "listening on all interfaces without advertised_addr; advertising loopback");
        SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), addr.port()).to_string()
    } else {
        addr.to_string()
    }
}
