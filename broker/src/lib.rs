//! The FerroMQ broker: RocketMQ's request processors on top of the `store` crate.
//!
//! [`Broker::start`] opens the store (running recovery), loads the JSON state under
//! `<store>/config/`, binds the remoting listener, registers with every name server
//! and starts the background services: name-server registration, client
//! housekeeping, offset persistence, delay-level schedules and long-polling holds.
//! Processors live in [`processor`], one module per family of request codes.
//!
//! Invariants:
//! * the store host written into records (and hence every offsetMsgId) is the
//!   advertised `ip:port` clients can reach — `broker_ip1` or a detected address,
//!   with the port actually bound;
//! * every request gets a RocketMQ response code and remark; nothing on input panics;
//! * state files are written atomically (`config::persist`).

// Processors return a refusal as `Err(RemotingCommand)`: the error *is* the response
// to send, and boxing it would only add an allocation to every refused request.
#![allow(clippy::result_large_err)]

pub mod acl;
pub mod client_manager;
pub mod consumer_offset;
pub mod context;
pub mod controlled;
pub mod error;
pub mod filter;
pub mod gauges;
pub mod grpc_endpoint;
pub mod hold;
pub mod lock;
pub mod membership;
pub mod metrics;
pub mod namesrv_api;
pub mod order_expansion;
pub mod outcome;
pub mod persist;
pub mod plugins;
pub mod pop;
pub mod processor;
pub mod reroute;
pub mod role;
pub mod runtime_config;
pub mod schedule;
pub mod slave_sync;
pub mod spans;
pub mod stats;
pub mod stats_items;
pub mod subscription_group;
pub mod timer;
pub mod topic_config;
pub mod transaction;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{info, Instrument};

use replication::{HaMaster, HaSlave};
use role::Ha;

pub use context::BrokerContext;
pub use error::{Error, Result};

/// A running broker.
/// How one incarnation of a broker starts (controller mode restarts it in place).
#[derive(Default, Clone)]
pub struct StartOptions {
    /// Cut the commit log here first (see `store::StoreOptions::truncate_to`).
    pub truncate_to: Option<i64>,
    /// Controller mode: the supervisor's shared state (`None`: a plain broker).
    pub membership: Option<Arc<membership::Membership>>,
}

pub struct Broker {
    ctx: Arc<BrokerContext>,
    server: remoting::RemotingServer,
    /// The gRPC endpoint for RocketMQ 5 clients (`None`: `grpc_server_port = -1`).
    grpc: Option<grpc::GrpcServer>,
    metrics: Option<Arc<telemetry::MetricsExporter>>,
    cancel: CancellationToken,
    tasks: tokio_util::task::TaskTracker,
}

impl Broker {
    /// Starts a broker: store recovery, state files, listener, registration and
    /// background services.
    ///
    /// # Errors
    /// Invalid configuration, an unusable store, or a port that cannot be bound.
    pub async fn start(config: config::BrokerConfig, plugins: &config::PluginsConfig) -> Result<Self> {
        Self::start_observed(config, plugins, &config::TelemetryConfig::default()).await
    }

    /// [`Broker::start`] with RocketMQ 5's metrics and OpenTelemetry spans exported
    /// as `telemetry` says (`[telemetry.metrics]`, RocketMQ's `metricsExporterType`
    /// and friends; `[telemetry.traces]` and the `OTEL_*` variables).
    ///
    /// # Errors
    /// As [`Broker::start`]; invalid telemetry settings or an unbindable metrics port.
    pub async fn start_observed(
        config: config::BrokerConfig,
        plugins: &config::PluginsConfig,
        telemetry: &config::TelemetryConfig,
    ) -> Result<Self> {
        if config.enable_controller_mode {
            return Err(Error::Config(
                "enable_controller_mode: a broker in controller mode runs under `controlled::run`".into(),
            ));
        }
        Self::start_with(config, plugins, telemetry, StartOptions::default()).await
    }

    /// One incarnation of a broker, as [`Broker::start_observed`] with `opts`.
    ///
    /// # Errors
    /// As [`Broker::start_observed`].
    pub async fn start_with(
        config: config::BrokerConfig,
        plugins: &config::PluginsConfig,
        telemetry: &config::TelemetryConfig,
        opts: StartOptions,
    ) -> Result<Self> {
        let listener = tokio::net::TcpListener::bind(SocketAddr::new(config.bind_address, config.listen_port)).await?;
        let bound = listener.local_addr()?;
        let advertised_ip = advertised_ip(&config, bound.ip())?;
        let broker_addr = SocketAddr::new(advertised_ip, bound.port());
        // A master serves its slaves on the HA port; a slave only connects out.
        let ha_listener = if config.broker_role.is_master() {
            Some(tokio::net::TcpListener::bind(SocketAddr::new(config.bind_address, config.ha_listen_port)).await?)
        } else {
            None
        };
        let ha_port = match &ha_listener {
            Some(l) => l.local_addr()?.port(),
            None => config.ha_listen_port,
        };
        let ha_ip = match &config.broker_ip2 {
            Some(ip) => ip.parse().map_err(|_| Error::Config(format!("broker_ip2 `{ip}` is not an IP address")))?,
            None => advertised_ip,
        };
        // One TLS for the remoting port and the HA port, reloaded together.
        let server_tls = remoting::tls::ServerTls::from_config(&config.tls)
            .map_err(|e| Error::Config(format!("broker.tls: {e}")))?;
        let mut ha_settings = ha_settings(&config);
        ha_settings.server_tls = server_tls.clone();
        // A slave in controller mode names itself to its master.
        ha_settings.identity =
            opts.membership.as_ref().filter(|_| !config.broker_role.is_master()).map(|m| m.broker_id);
        let node = telemetry::Node {
            node_type: "broker",
            cluster: config.broker_cluster_name.clone(),
            node_id: config.broker_name.clone(),
        };
        let exporter = telemetry::MetricsExporter::start(&telemetry.metrics, &node, advertised_ip)
            .await
            .map_err(|e| Error::Config(e.to_string()))?;
        let traces = telemetry::TraceExport::start(&telemetry.traces, "ferromq-broker")
            .map_err(|e| Error::Config(e.to_string()))?
            .map(Arc::new);
        let meter = exporter.as_ref().map(|e| e.meter("broker-meter"));
        let broker_metrics = meter.as_ref().map_or_else(metrics::BrokerMetrics::disabled, metrics::BrokerMetrics::new);
        let ctx = context::BrokerContext::open(
            config,
            plugins,
            broker_addr,
            SocketAddr::new(ha_ip, ha_port),
            broker_metrics,
            traces,
            &opts,
        )?;
        if let Some(meter) = &meter {
            gauges::register(meter, &ctx);
        }
        if let Some(tracer) = ctx.tracer.clone() {
            let broker_name = ctx.config.broker_name.clone();
            ha_settings.on_transfer =
                Some(Arc::new(move |t: &replication::Transfer| spans::record_transfer(&tracer, &broker_name, t)));
        }
        let cancel = CancellationToken::new();
        let tasks = tokio_util::task::TaskTracker::new();

        // State rebuilt from the store before the first request can arrive: the
        // arrival hook, then the pending timers (a timer reloaded here and also
        // reported by the hook would fire twice), then the transaction decisions
        // (an END_TRANSACTION must see the decisions made before the restart).
        fan_out_arrivals(&ctx);
        tasks.spawn(wake_on_read_limit(ctx.clone(), cancel.clone()));
        // The same for POP: checkpoints written since the offsets were last persisted.
        let revive = if ctx.role.is_slave() {
            None
        } else {
            ctx.timers.recover(&ctx.store);
            ctx.transactions.catch_up(&ctx.store);
            Some(pop::recover(&ctx))
        };
        match ha_listener {
            Some(l) => {
                let master = HaMaster::start(l, ctx.store.clone(), ha_settings)?;
                master.set_ack_policy(match &opts.membership {
                    Some(m) => m.ack_policy(),
                    None => classic_ack_policy(&ctx.config),
                });
                ctx.role.set_ha(Ha::Master(master));
            }
            None => {
                ctx.role.set_ha(Ha::Slave(HaSlave::start(ctx.store.clone(), ctx.role.master_ha_addr(), ha_settings)))
            }
        }

        let mut dispatcher = processor::dispatcher(ctx.clone());
        if let Some(meter) = &meter {
            dispatcher.observe(Arc::new(telemetry::RpcMetrics::new(meter)));
        }
        let mut server_config = remoting::ServerConfig::new(bound);
        server_config.channel.idle_timeout = ctx.config.channel_idle_timeout;
        server_config.tls = server_tls;
        if let Some(tls) = &server_config.tls {
            tasks.spawn(tls.clone().watch(cancel.clone()).instrument(tracing::info_span!("tls_reload")));
        }
        let server = remoting::RemotingServer::serve(listener, server_config, Arc::new(dispatcher))?;
        let grpc = grpc_endpoint::start(&ctx, server.local_connector()).await?;

        tasks.spawn(namesrv_api::run(ctx.clone(), cancel.clone()).instrument(tracing::info_span!("register_broker")));
        tasks.spawn(housekeeping(ctx.clone(), cancel.clone()).instrument(tracing::info_span!("client_housekeeping")));
        tasks.spawn(persist_offsets(ctx.clone(), cancel.clone()).instrument(tracing::info_span!("offset_persist")));
        tasks.spawn(sample_stats(ctx.clone(), cancel.clone()).instrument(tracing::info_span!("stats_sampler")));
        schedule::start(ctx.clone(), cancel.clone(), &tasks);
        timer::start(ctx.clone(), cancel.clone(), &tasks);
        if let Some(revive) = revive {
            pop::start(ctx.clone(), revive, cancel.clone(), &tasks);
        }
        tasks.spawn(
            transaction::run_checker(ctx.clone(), cancel.clone()).instrument(tracing::info_span!("transaction_check")),
        );
        tasks.spawn(slave_sync::run(ctx.clone(), cancel.clone()).instrument(tracing::info_span!("slave_sync")));
        if let Some(acl) = &ctx.acl {
            tasks.spawn(acl.clone().watch(cancel.clone()).instrument(tracing::info_span!("acl_reload")));
        }
        info!(addr = %broker_addr, cluster = %ctx.config.broker_cluster_name, broker_name = %ctx.config.broker_name,
              role = ctx.role.role().as_str(), ha = %ctx.role.ha_addr(), "broker started");
        Ok(Self { ctx, server, grpc, metrics: exporter, cancel, tasks })
    }

    /// The address bound by the listener.
    pub fn local_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// The address registered with name servers and written into records.
    pub fn broker_addr(&self) -> SocketAddr {
        self.ctx.broker_addr
    }

    /// The gRPC endpoint's address, unless it is off (`grpc_server_port = -1`).
    pub fn grpc_addr(&self) -> Option<SocketAddr> {
        self.grpc.as_ref().map(grpc::GrpcServer::local_addr)
    }

    /// The Prometheus endpoint's address, when metrics are exported there.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().and_then(|m| m.endpoint())
    }

    pub fn context(&self) -> &Arc<BrokerContext> {
        &self.ctx
    }

    /// Resolves once a registration round has been accepted by a name server, with
    /// how many accepted it (never, without name servers).
    pub async fn registered(&self) -> usize {
        let mut rx = self.ctx.registered.subscribe();
        let accepted = rx.wait_for(|n| *n > 0).await.map(|n| *n);
        match accepted {
            Ok(n) => n,
            // The sender lives as long as the context, which `self` holds.
            Err(_) => std::future::pending().await,
        }
    }

    /// Clean shutdown: unregister from name servers, stop accepting, finish requests
    /// in progress (up to `grace`), persist offsets and delay progress, close the
    /// store (flush + checkpoint).
    pub async fn shutdown(self, grace: Duration) {
        namesrv_api::unregister_all(&self.ctx).await;
        self.cancel.cancel();
        // Parked pulls answer now rather than hold the grace period.
        self.ctx.holds.wake_all();
        match self.ctx.role.ha() {
            Some(Ha::Master(m)) => m.shutdown().await,
            Some(Ha::Slave(s)) => s.shutdown().await,
            None => {}
        }
        if let Some(g) = self.grpc {
            g.shutdown().await;
        }
        self.server.shutdown(grace).await;
        self.tasks.close();
        let _ = tokio::time::timeout(grace, self.tasks.wait()).await;
        self.ctx.persist_all();
        if let Some(m) = &self.metrics {
            m.shutdown();
        }
        if let Some(t) = &self.ctx.traces {
            t.shutdown();
        }
        if let Err(e) = self.ctx.store.shutdown() {
            tracing::error!(error = %e, "store shutdown failed");
        }
        info!("broker stopped");
    }
}

/// The replication settings of `config`.
fn ha_settings(config: &config::BrokerConfig) -> replication::HaSettings {
    replication::HaSettings {
        heartbeat_interval: config.ha_send_heartbeat_interval,
        housekeeping_interval: config.ha_housekeeping_interval,
        transfer_batch_size: usize::try_from(config.ha_transfer_batch_size.as_u64()).unwrap_or(usize::MAX),
        max_gap_not_in_sync: i64::try_from(config.ha_max_gap_not_in_sync.as_u64()).unwrap_or(i64::MAX),
        on_transfer: None,
        identity: None,
        // RocketMQ 4.x's slave always starts from the newest segment.
        sync_from_last_file: !config.enable_controller_mode || config.sync_from_last_file,
        server_tls: None,
        client_tls: remoting::tls::ClientTls::from_config(&config.outgoing_tls, Some(&config.tls)),
    }
}

/// How far a classic SYNC_MASTER holds puts: until a slave has them (RocketMQ 4.x),
/// or `inSyncReplicas - 1` slaves when that is more.
fn classic_ack_policy(config: &config::BrokerConfig) -> replication::AckPolicy {
    match config.in_sync_replicas {
        0..=2 => replication::AckPolicy::AnySlave,
        n => replication::AckPolicy::AtLeast(n as usize - 1),
    }
}

/// Connects the store's arrivals (one call per dispatched message, on the store thread
/// that dispatches it, inside every send's acknowledgement path) to what waits for
/// them: parked pulls, and the timer for entries of the timer queue.
fn fan_out_arrivals(ctx: &Arc<BrokerContext>) {
    let weak = Arc::downgrade(ctx);
    ctx.store.set_arrival_listener(Arc::new(move |a: &store::Arrival<'_>| {
        let Some(c) = weak.upgrade() else { return };
        if a.topic == common::topic::TIMER_TOPIC {
            c.timers.on_arrival(a.queue_offset, a.tags_code, a.phy_offset);
        }
        c.holds.on_arrival(a.topic, a.queue_id, a.queue_offset, a.tags_code, a.properties);
    }));
}

/// Wakes the parked pulls whose next record a raised read limit released (records
/// an arrival announced before every SyncStateSet member held them).
async fn wake_on_read_limit(ctx: Arc<BrokerContext>, cancel: CancellationToken) {
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = ctx.store.read_limit_raised() => {}
        }
        ctx.holds.wake_readable(|topic, queue_id, offset| ctx.store.readable_at(topic, queue_id, offset));
    }
}

/// `broker_ip1` if set, else the bound address if specific, else the first
/// non-loopback IPv4 address of this host (RocketMQ's `getLocalAddress` rule), else
/// loopback.
pub(crate) fn advertised_ip(config: &config::BrokerConfig, bound: IpAddr) -> Result<IpAddr> {
    if let Some(ip) = &config.broker_ip1 {
        return ip.parse().map_err(|_| Error::Config(format!("broker_ip1 `{ip}` is not an IP address")));
    }
    if !bound.is_unspecified() {
        return Ok(bound);
    }
    let detected = if_addrs::get_if_addrs()
        .ok()
        .and_then(|ifs| ifs.into_iter().map(|i| i.ip()).find(|ip| ip.is_ipv4() && !ip.is_loopback()));
    Ok(detected.unwrap_or(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)))
}

async fn housekeeping(ctx: Arc<BrokerContext>, cancel: CancellationToken) {
    let max_idle = ctx.config.client_channel_max_idle_time;
    let period = (max_idle / 4).clamp(Duration::from_millis(100), Duration::from_secs(10));
    let mut tick = tokio::time::interval(period);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tick.tick() => {}
        }
        for (group, channel) in ctx.clients.scan_expired(max_idle) {
            channel.close();
            ctx.notify_group_changed(&group);
        }
    }
}

/// Samples the stats items every 10 s and moves the daily marks at midnight.
async fn sample_stats(ctx: Arc<BrokerContext>, cancel: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_millis(stats_items::SAMPLE_EVERY_MS as u64));
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tick.tick() => {}
        }
        ctx.refresh_broker_stats();
        ctx.stats_items.sample(common::time::now_ms());
        ctx.daily_marks();
    }
}

async fn persist_offsets(ctx: Arc<BrokerContext>, cancel: CancellationToken) {
    let mut tick = tokio::time::interval(ctx.config.flush_consumer_offset_interval);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tick.tick() => {}
        }
        let c = ctx.clone();
        let _ = tokio::task::spawn_blocking(move || {
            if let Err(e) = c.offsets.persist() {
                tracing::error!(error = %e, "could not persist consumer offsets");
            }
        })
        .await;
    }
}

/// A client for the connections the broker opens itself (name servers,
/// controllers, its master), with `[broker.outgoing_tls]`.
pub(crate) fn outgoing_client(config: &config::BrokerConfig) -> remoting::RemotingClient {
    let tls = remoting::tls::ClientTls::from_config(&config.outgoing_tls, Some(&config.tls));
    remoting::RemotingClient::new(remoting::ClientConfig { tls, ..remoting::ClientConfig::default() }, None)
}
