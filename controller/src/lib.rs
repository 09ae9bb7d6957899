//! The FerroMQ controller: RocketMQ 5's controller mode.
//!
//! A small group of controllers (one, or three or five for fault tolerance) agrees
//! through Raft on, for each broker set (a `brokerName`): which brokers belong to it
//! and their ids, who the master is and its epoch, and the SyncStateSet — the
//! replicas holding every acknowledged message. Brokers register, heartbeat every
//! controller, and report their SyncStateSet changes; when a master's heartbeats
//! stop or its connection closes, the leading controller elects a new master from
//! the SyncStateSet, raises the epoch, and tells the brokers.
//!
//! * [`state`] — the replicated state and the events that change it;
//! * [`raft`] — the consensus (`openraft`), its disk and its network;
//! * [`api`] — RocketMQ's controller requests (1001–1013, BROKER_HEARTBEAT);
//! * [`liveness`] — which brokers are alive (local to each controller);
//! * [`elect`] — who becomes master.
//!
//! [`ControllerServer::start`] runs a controller; the `controller` binary and a name
//! server with `enable_controller_in_namesrv` both use it.

pub mod api;
pub mod elect;
pub mod liveness;
pub mod raft;
pub mod state;

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn, Instrument};

use common::ResponseCode;
use config::ControllerConfig;
use remoting::body::controller::SyncStateSetBody;
use remoting::header::controller::NotifyBrokerRoleChangedRequestHeader;
use remoting::server::Dispatcher;
use remoting::{RemotingClient, RemotingCommand, RemotingServer, RequestCode, ServerConfig};

use liveness::{BrokerKey, Liveness};
use raft::{RaftNode, Timing};
use state::BrokerSet;

/// Why a controller could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("controller configuration: {0}")]
    Config(#[from] config::Error),
    #[error("controller store: {0}")]
    Store(#[from] std::io::Error),
    #[error(transparent)]
    Remoting(#[from] remoting::Error),
    #[error("controller TLS: {0}")]
    Tls(#[from] remoting::tls::TlsError),
}

/// What a controller's request handlers share.
pub struct Controller {
    node: RaftNode,
    liveness: Liveness,
    config: ControllerConfig,
    /// Changes are decided and proposed one at a time.
    changes: tokio::sync::Mutex<()>,
    client: RemotingClient,
}

/// The request codes a controller serves.
const CODES: &[RequestCode] = &[
    RequestCode::BROKER_HEARTBEAT,
    RequestCode::CONTROLLER_ALTER_SYNC_STATE_SET,
    RequestCode::CONTROLLER_ELECT_MASTER,
    RequestCode::CONTROLLER_REGISTER_BROKER,
    RequestCode::CONTROLLER_GET_REPLICA_INFO,
    RequestCode::CONTROLLER_GET_METADATA_INFO,
    RequestCode::CONTROLLER_GET_SYNC_STATE_DATA,
    RequestCode::CLEAN_BROKER_DATA,
    RequestCode::CONTROLLER_GET_NEXT_BROKER_ID,
    RequestCode::CONTROLLER_APPLY_BROKER_ID,
    RequestCode::FERROMQ_RAFT_APPEND_ENTRIES,
    RequestCode::FERROMQ_RAFT_VOTE,
    RequestCode::FERROMQ_RAFT_INSTALL_SNAPSHOT,
];

impl Controller {
    /// Registers the controller's requests on `dispatcher` (its own server's, or a
    /// name server's when embedded), and forgets a broker whose connection closes.
    pub fn register(self: &Arc<Self>, dispatcher: &mut Dispatcher) {
        let this = self.clone();
        let processor: Arc<dyn remoting::server::Processor> = Arc::new(move |ch: remoting::Channel, req| {
            let this = this.clone();
            async move { this.handle(&ch, req).await }
        });
        dispatcher.register_many(CODES, processor);
        let this = Arc::downgrade(self);
        dispatcher.on_close(move |ch| {
            let Some(this) = this.upgrade() else { return };
            let gone = this.liveness.remove_connection(ch.id());
            if !gone.is_empty() {
                tokio::spawn(async move { this.on_brokers_gone(gone).await });
            }
        });
    }

    /// The Raft member (for tests and the admin view).
    pub fn node(&self) -> &RaftNode {
        &self.node
    }

    /// Brokers that stopped (heartbeats or connection): a master among them gets
    /// a successor.
    async fn on_brokers_gone(&self, gone: Vec<BrokerKey>) {
        if !self.node.is_leader() {
            return;
        }
        let names: BTreeSet<String> = gone
            .iter()
            .filter(|k| self.node.read_local(|s| s.set(&k.broker_name).and_then(|set| set.master)) == Some(k.broker_id))
            .map(|k| k.broker_name.clone())
            .collect();
        for name in names {
            info!(broker_name = %name, "the master is gone; electing another");
            self.elect_with_retries(&name).await;
        }
    }

    /// The periodic scan: expires silent brokers and elects a master for every set
    /// whose master is not alive while another broker is.
    async fn scan(&self) {
        let now = Instant::now();
        let expired = self.liveness.expire(now);
        for k in &expired {
            info!(broker_name = %k.broker_name, broker_id = k.broker_id, "broker heartbeats stopped");
        }
        if !self.node.is_leader() {
            return;
        }
        let need: Vec<String> = self.node.read_local(|s| {
            s.sets
                .values()
                .filter(|set| {
                    let alive = |id| self.live_in(set, id, now);
                    !set.master.is_some_and(alive) && set.brokers.keys().any(|id| alive(*id))
                })
                .map(|set| set.broker_name.clone())
                .collect()
        });
        for name in need {
            self.elect_with_retries(&name).await;
        }
    }

    fn live_in(&self, set: &BrokerSet, id: u64, now: Instant) -> bool {
        let key =
            BrokerKey { cluster_name: set.cluster_name.clone(), broker_name: set.broker_name.clone(), broker_id: id };
        self.liveness.alive(&key, now).is_some()
    }

    /// A controller-started election, tried `elect_master_max_retry_count` times.
    async fn elect_with_retries(&self, broker_name: &str) {
        for attempt in 1..=self.config.elect_master_max_retry_count.max(1) {
            let resp = self.elect_master(broker_name, None, false).await;
            match resp.response_code() {
                ResponseCode::SUCCESS | ResponseCode::CONTROLLER_MASTER_STILL_EXIST => return,
                ResponseCode::CONTROLLER_MASTER_NOT_AVAILABLE | ResponseCode::CONTROLLER_NOT_LEADER => return,
                code => {
                    warn!(broker_name, attempt, %code, remark = resp.remark_str(), "election failed");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    }

    /// Tells the live brokers of `set` (as it was before the election) who the new
    /// master is (NOTIFY_BROKER_ROLE_CHANGED, oneway); brokers also poll.
    fn notify_role_changed(&self, set: &BrokerSet, master: u64, master_address: &str) {
        let header = NotifyBrokerRoleChangedRequestHeader {
            master_address: Some(master_address.to_owned()),
            master_epoch: Some(set.master_epoch + 1),
            sync_state_set_epoch: Some(set.sync_state_set_epoch + 1),
            master_broker_id: Some(master as i64),
        };
        let body = SyncStateSetBody {
            sync_state_set: BTreeSet::from([master]),
            sync_state_set_epoch: set.sync_state_set_epoch + 1,
        };
        let body = remoting::json::to_vec(&body).unwrap_or_default();
        let now = Instant::now();
        for (id, b) in &set.brokers {
            if !self.live_in(set, *id, now) {
                continue;
            }
            let cmd = RemotingCommand::request_with(RequestCode::NOTIFY_BROKER_ROLE_CHANGED, &header)
                .with_body(body.clone())
                .set_oneway();
            let (client, addr) = (self.client.clone(), b.address.clone());
            tokio::spawn(async move {
                if let Err(e) = client.invoke_oneway(&addr, cmd).await {
                    tracing::debug!(broker = %addr, error = %e, "role change not delivered; the broker will poll");
                }
            });
        }
    }
}

/// A running controller with its own listener.
pub struct ControllerServer {
    controller: Arc<Controller>,
    server: Option<RemotingServer>,
    cancel: CancellationToken,
    tasks: TaskTracker,
}

impl ControllerServer {
    /// Starts a controller listening on its peer entry's port.
    ///
    /// # Errors
    /// Invalid configuration, an unusable store, or a port that cannot be bound.
    pub async fn start(config: ControllerConfig) -> Result<Self, Error> {
        let peers = config.peers()?;
        let id = config.self_id()?;
        let own = peers.get(&id).cloned().unwrap_or_default();
        let (host, port) = own.rsplit_once(':').unwrap_or(("0.0.0.0", "9878"));
        let port: u16 = port.parse().unwrap_or(9878);
        let ip: IpAddr = host.parse().unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        let tls = remoting::tls::ServerTls::from_config(&config.tls)?;
        let (controller, cancel, tasks) = Self::start_embedded(config).await?;
        let mut dispatcher = Dispatcher::new();
        controller.register(&mut dispatcher);
        let mut server_config = ServerConfig::new(SocketAddr::new(ip, port));
        server_config.tls = tls;
        if let Some(tls) = &server_config.tls {
            tasks.spawn(tls.clone().watch(cancel.clone()).instrument(tracing::info_span!("tls_reload")));
        }
        let server = RemotingServer::bind(server_config, Arc::new(dispatcher)).await?;
        info!(id, addr = %server.local_addr(), peers = peers.len(), "controller started");
        Ok(Self { controller, server: Some(server), cancel, tasks })
    }

    /// Starts a controller whose requests another server dispatches (a name
    /// server's, with `enable_controller_in_namesrv`): register it with
    /// [`Controller::register`], then keep the handles until shutdown.
    ///
    /// # Errors
    /// Invalid configuration or an unusable store.
    pub async fn start_embedded(
        config: ControllerConfig,
    ) -> Result<(Arc<Controller>, CancellationToken, TaskTracker), Error> {
        config.validate()?;
        let peers = config.peers()?;
        let id = config.self_id()?;
        // Raft traffic to the peers and role notices to brokers.
        let tls = remoting::tls::ClientTls::from_config(&config.outgoing_tls, Some(&config.tls));
        let client = RemotingClient::new(remoting::ClientConfig { tls, ..remoting::ClientConfig::default() }, None);
        let timing = Timing {
            heartbeat: config.raft_heartbeat_interval.as_millis() as u64,
            election_min: config.raft_election_timeout.as_millis() as u64,
            election_max: 2 * config.raft_election_timeout.as_millis() as u64,
        };
        let dir = config.controller_store_path.join("raft");
        let node = RaftNode::start(id, peers, &dir, client.clone(), timing).await?;
        let controller = Arc::new(Controller {
            node,
            liveness: Liveness::default(),
            config,
            changes: tokio::sync::Mutex::new(()),
            client,
        });
        let cancel = CancellationToken::new();
        let tasks = TaskTracker::new();
        let (c, stop) = (controller.clone(), cancel.clone());
        tasks.spawn(
            async move {
                let mut tick = tokio::time::interval(c.config.scan_not_active_broker_interval);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        _ = stop.cancelled() => break,
                        _ = tick.tick() => c.scan().await,
                    }
                }
            }
            .instrument(tracing::info_span!("controller_scan")),
        );
        Ok((controller, cancel, tasks))
    }

    pub fn controller(&self) -> &Arc<Controller> {
        &self.controller
    }

    /// The listener's address.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.server.as_ref().map(RemotingServer::local_addr)
    }

    /// Stops serving, then the Raft member (its files stay).
    pub async fn shutdown(mut self, grace: Duration) {
        self.cancel.cancel();
        if let Some(server) = self.server.take() {
            server.shutdown(grace).await;
        }
        self.tasks.close();
        self.tasks.wait().await;
        self.controller.node.shutdown().await;
    }
}
