//! Controller mode (RocketMQ 5's `enableControllerMode`): the broker takes its id
//! and role from a controller group, and follows the group when the master changes.
//!
//! [`run`] supervises the broker. It registers with the controllers (the id it was
//! given is kept in `<store>/brokerIdentity`, as RocketMQ keeps it), heartbeats every
//! controller, asks the leader who its set's master is (and asks for an election when
//! there is none), then starts the broker in that role:
//!
//! * as **master** (broker id 0) it records the new epoch and where it starts in the
//!   epoch file, works out every `check_sync_state_set_period` which slaves keep up
//!   and reports the SyncStateSet to the controllers; with
//!   `all_ack_in_sync_state_set` a put is acknowledged only once every member holds
//!   it, and with fewer than `min_in_sync_replicas` members puts are refused;
//! * as **slave** it first truncates its log to the last offset it shares with the
//!   master (the two epoch histories' [consistent point](replication::epoch)), then
//!   follows it, naming itself so the master can count it in the SyncStateSet.
//!
//! When the controllers grant a newer master epoch to another broker (or to this one)
//! — learnt from NOTIFY_BROKER_ROLE_CHANGED or from polling — the broker is restarted
//! in place in its new role: same ports, same store, which the restart truncates when
//! the new role needs it. A broker never takes writes for an epoch the controllers
//! did not grant it, and a master that stops hearing that it still leads (its epoch
//! superseded) stops at its next poll.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Mutex, RwLock};
use tokio::sync::Notify;
use tracing::{info, warn};

use common::ResponseCode;
use config::{BrokerFile, BrokerRole};
use remoting::body::controller::{EpochEntryCache, SyncStateSetBody};
use remoting::header::controller::{
    AlterSyncStateSetRequestHeader, ApplyBrokerIdRequestHeader, BrokerHeartbeatRequestHeader, ElectMasterRequestHeader,
    ElectMasterResponseHeader, GetMetaDataResponseHeader, GetNextBrokerIdRequestHeader, GetNextBrokerIdResponseHeader,
    GetReplicaInfoRequestHeader, GetReplicaInfoResponseHeader, RegisterBrokerToControllerRequestHeader,
};
use remoting::{RemotingClient, RemotingCommand, RequestCode};
use replication::epoch::{EpochEntry, EpochFile};

use crate::error::{Error, Result};
pub use crate::membership::Membership;
use crate::Broker;

/// The controllers, as a broker talks to them.
struct Controllers {
    client: RemotingClient,
    addrs: Vec<String>,
    cluster: String,
    broker_name: String,
}

const CALL_TIMEOUT: Duration = Duration::from_secs(3);

/// The controllers' view of the broker's set.
#[derive(Debug, Clone, PartialEq, Eq)]
struct SetView {
    master: Option<(u64, String)>,
    master_epoch: i32,
    sync_state_set: BTreeSet<u64>,
    sync_state_set_epoch: i32,
}

impl Controllers {
    async fn leader(&self) -> Result<String> {
        for addr in &self.addrs {
            let cmd = RemotingCommand::request(RequestCode::CONTROLLER_GET_METADATA_INFO);
            let Ok(resp) = self.client.invoke(addr, cmd, CALL_TIMEOUT).await else { continue };
            if let Ok(h) = resp.decode_header::<GetMetaDataResponseHeader>() {
                if let Some(leader) = h.controller_leader_address.filter(|a| !a.is_empty()) {
                    return Ok(leader);
                }
            }
        }
        Err(Error::Controller("no controller knows a leader".into()))
    }

    /// A request to the leader; any answer but success is an error.
    async fn call(&self, cmd: RemotingCommand, ok: &[ResponseCode]) -> Result<RemotingCommand> {
        let leader = self.leader().await?;
        let resp =
            self.client.invoke(&leader, cmd, CALL_TIMEOUT).await.map_err(|e| Error::Controller(e.to_string()))?;
        if resp.response_code() == ResponseCode::SUCCESS || ok.contains(&resp.response_code()) {
            return Ok(resp);
        }
        Err(Error::Controller(format!("controller {leader}: {} {}", resp.response_code(), resp.remark_str())))
    }

    /// The broker's id: from `<store>/brokerIdentity`, or applied for and saved
    /// (RocketMQ 5.1's flow: next id, a temporary file, apply, the file).
    async fn register(&self, root: &Path, broker_addr: &str) -> Result<u64> {
        let identity = root.join("brokerIdentity");
        let temp = root.join("brokerIdentity-temp");
        let id = match read_identity(&identity, &self.cluster, &self.broker_name)? {
            Some(id) => id,
            None => {
                let (id, check_code) = match read_identity_temp(&temp, &self.cluster, &self.broker_name)? {
                    Some(pending) => pending,
                    None => {
                        let h = GetNextBrokerIdRequestHeader {
                            cluster_name: self.cluster.clone(),
                            broker_name: self.broker_name.clone(),
                        };
                        let resp = self
                            .call(RemotingCommand::request_with(RequestCode::CONTROLLER_GET_NEXT_BROKER_ID, &h), &[])
                            .await?;
                        let next: GetNextBrokerIdResponseHeader =
                            resp.decode_header().map_err(|e| Error::Controller(e.to_string()))?;
                        let id = next.next_broker_id.and_then(|i| u64::try_from(i).ok()).unwrap_or(1);
                        let code = format!("{broker_addr};{}", common::time::now_ms());
                        write_file(&temp, &format!("{}#{}#{id}#{code}", self.cluster, self.broker_name))?;
                        (id, code)
                    }
                };
                let h = ApplyBrokerIdRequestHeader {
                    cluster_name: self.cluster.clone(),
                    broker_name: self.broker_name.clone(),
                    applied_broker_id: id as i64,
                    register_check_code: check_code,
                };
                if let Err(e) =
                    self.call(RemotingCommand::request_with(RequestCode::CONTROLLER_APPLY_BROKER_ID, &h), &[]).await
                {
                    // Another broker took it: start over with a fresh id.
                    let _ = std::fs::remove_file(&temp);
                    return Err(e);
                }
                write_file(&identity, &format!("{}#{}#{id}", self.cluster, self.broker_name))?;
                let _ = std::fs::remove_file(&temp);
                id
            }
        };
        let h = RegisterBrokerToControllerRequestHeader {
            cluster_name: self.cluster.clone(),
            broker_name: self.broker_name.clone(),
            broker_id: Some(id as i64),
            broker_address: broker_addr.to_owned(),
            invoke_time: Some(common::time::now_ms()),
        };
        self.call(RemotingCommand::request_with(RequestCode::CONTROLLER_REGISTER_BROKER, &h), &[]).await?;
        Ok(id)
    }

    async fn set_view(&self) -> Result<SetView> {
        let h = GetReplicaInfoRequestHeader { broker_name: self.broker_name.clone() };
        let resp = self.call(RemotingCommand::request_with(RequestCode::CONTROLLER_GET_REPLICA_INFO, &h), &[]).await?;
        let h: GetReplicaInfoResponseHeader = resp.decode_header().map_err(|e| Error::Controller(e.to_string()))?;
        let body: SyncStateSetBody = remoting::json::from_slice(&resp.body_bytes()).unwrap_or_default();
        Ok(SetView {
            master: h.master_broker_id.and_then(|i| u64::try_from(i).ok()).zip(h.master_address),
            master_epoch: h.master_epoch.unwrap_or(0),
            sync_state_set: body.sync_state_set,
            sync_state_set_epoch: body.sync_state_set_epoch,
        })
    }

    /// Asks for an election (a broker that finds its set without a master).
    async fn elect(&self, id: u64) -> Result<()> {
        let h = ElectMasterRequestHeader {
            cluster_name: self.cluster.clone(),
            broker_name: self.broker_name.clone(),
            broker_id: Some(id as i64),
            designate_elect: Some(false),
            invoke_time: Some(common::time::now_ms()),
        };
        let resp = self
            .call(
                RemotingCommand::request_with(RequestCode::CONTROLLER_ELECT_MASTER, &h),
                &[ResponseCode::CONTROLLER_MASTER_STILL_EXIST],
            )
            .await?;
        let h: ElectMasterResponseHeader = resp.decode_header().map_err(|e| Error::Controller(e.to_string()))?;
        info!(master = ?h.master_broker_id, epoch = ?h.master_epoch, "election answered");
        Ok(())
    }

    async fn alter_sync_state_set(&self, id: u64, m: &Membership, set: &BTreeSet<u64>) -> Result<()> {
        let h = AlterSyncStateSetRequestHeader {
            broker_name: self.broker_name.clone(),
            master_broker_id: id as i64,
            master_epoch: m.master_epoch.load(Ordering::Acquire),
            invoke_time: Some(common::time::now_ms()),
        };
        let body = SyncStateSetBody {
            sync_state_set: set.clone(),
            sync_state_set_epoch: m.sync_state_set_epoch.load(Ordering::Acquire),
        };
        let cmd = RemotingCommand::request_with(RequestCode::CONTROLLER_ALTER_SYNC_STATE_SET, &h)
            .with_body(remoting::json::to_vec(&body).unwrap_or_default());
        let resp = self.call(cmd, &[]).await?;
        let new: SyncStateSetBody = remoting::json::from_slice(&resp.body_bytes()).unwrap_or_default();
        *m.sync_state_set.write() = new.sync_state_set;
        m.sync_state_set_epoch.store(new.sync_state_set_epoch, Ordering::Release);
        Ok(())
    }

    /// Heartbeats every controller (oneway).
    async fn heartbeat(&self, h: &BrokerHeartbeatRequestHeader) {
        for addr in &self.addrs {
            let cmd = RemotingCommand::request_with(RequestCode::BROKER_HEARTBEAT, h).set_oneway();
            let _ = self.client.invoke_oneway(addr, cmd).await;
        }
    }
}

fn write_file(path: &Path, text: &str) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).and_then(|()| std::fs::rename(&tmp, path)).map_err(Error::from)
}

/// `cluster#name#id`, when the file exists and names this broker set.
fn read_identity(path: &Path, cluster: &str, name: &str) -> Result<Option<u64>> {
    let Ok(text) = std::fs::read_to_string(path) else { return Ok(None) };
    let parts: Vec<&str> = text.trim().split('#').collect();
    match parts[..] {
        [c, n, id] if c == cluster && n == name => Ok(id.parse().ok()),
        _ => Err(Error::Config(format!("{} names another broker: {text}", path.display()))),
    }
}

/// `cluster#name#id#checkCode` of an application in progress.
fn read_identity_temp(path: &Path, cluster: &str, name: &str) -> Result<Option<(u64, String)>> {
    let Ok(text) = std::fs::read_to_string(path) else { return Ok(None) };
    let parts: Vec<&str> = text.trim().splitn(4, '#').collect();
    match parts[..] {
        [c, n, id, code] if c == cluster && n == name => Ok(id.parse().ok().map(|id| (id, code.to_owned()))),
        _ => Ok(None),
    }
}

/// The master's epoch history (GET_BROKER_EPOCH_CACHE).
async fn master_epochs(client: &RemotingClient, master: &str) -> Result<EpochEntryCache> {
    let resp = client
        .invoke(master, RemotingCommand::request(RequestCode::GET_BROKER_EPOCH_CACHE), CALL_TIMEOUT)
        .await
        .map_err(|e| Error::Controller(e.to_string()))?;
    if resp.response_code() != ResponseCode::SUCCESS {
        return Err(Error::Controller(format!("epoch cache of {master}: {}", resp.remark_str())));
    }
    remoting::json::from_slice(&resp.body_bytes()).map_err(|e| Error::Controller(e.to_string()))
}

/// Reserves a port now (0: a free one) so every incarnation binds the same.
fn reserve(ip: std::net::IpAddr, port: u16) -> Result<u16> {
    if port != 0 {
        return Ok(port);
    }
    Ok(std::net::TcpListener::bind(SocketAddr::new(ip, 0))?.local_addr()?.port())
}

/// The commit-log end of the store at `root`, without serving it.
fn store_end(config: &config::BrokerConfig) -> Result<i64> {
    let store = store::MessageStore::open(Arc::new(config.store.clone()), ([127, 0, 0, 1], 0).into())?;
    let end = store.commit_log_max_offset();
    store.shutdown()?;
    Ok(end)
}

/// Runs a broker in controller mode until `stop` resolves. `started` is told of each
/// incarnation (the first prints the ready lines).
pub async fn run(
    mut file: BrokerFile,
    stop: impl std::future::Future<Output = ()>,
    mut started: impl FnMut(&Broker),
) -> Result<()> {
    let cfg = &mut file.broker;
    cfg.listen_port = reserve(cfg.bind_address, cfg.listen_port)?;
    cfg.ha_listen_port = reserve(cfg.bind_address, cfg.ha_listen_port)?;
    let ip = crate::advertised_ip(cfg, cfg.bind_address)?;
    let broker_addr = SocketAddr::new(ip, cfg.listen_port).to_string();
    let root: PathBuf = cfg.store.store_path_root_dir.clone();
    std::fs::create_dir_all(&root)?;
    let controllers = Arc::new(Controllers {
        client: crate::outgoing_client(cfg),
        addrs: cfg.controller_addr.split(';').map(str::trim).filter(|a| !a.is_empty()).map(str::to_owned).collect(),
        cluster: cfg.broker_cluster_name.clone(),
        broker_name: cfg.broker_name.clone(),
    });
    tokio::pin!(stop);
    let id = loop {
        match controllers.register(&root, &broker_addr).await {
            Ok(id) => break id,
            Err(e) => warn!(error = %e, "registration with the controllers failed; retrying"),
        }
        tokio::select! {
            () = &mut stop => return Ok(()),
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    };
    info!(broker_id = id, "registered with the controllers");
    let epochs = EpochFile::open(&root.join("epochFileCheckpoint"))?;
    let membership = Arc::new(Membership {
        broker_id: id,
        master_epoch: AtomicI32::new(0),
        sync_state_set: RwLock::new(BTreeSet::new()),
        sync_state_set_epoch: AtomicI32::new(0),
        min_in_sync_replicas: cfg.min_in_sync_replicas as usize,
        in_sync_replicas: cfg.in_sync_replicas as usize,
        all_ack_in_sync_state_set: cfg.all_ack_in_sync_state_set,
        epochs: Mutex::new(epochs),
        role_changed: Notify::new(),
        notified_epoch: AtomicI32::new(0),
    });
    // Heartbeats, for the whole life of the process.
    let max_offset = Arc::new(AtomicI64::new(store_end(cfg)?));
    let beat = {
        let (c, m, off) = (controllers.clone(), membership.clone(), max_offset.clone());
        let h = BrokerHeartbeatRequestHeader {
            cluster_name: cfg.broker_cluster_name.clone(),
            broker_addr: broker_addr.clone(),
            broker_name: cfg.broker_name.clone(),
            broker_id: Some(id as i64),
            epoch: None,
            max_offset: None,
            confirm_offset: None,
            heartbeat_timeout_mills: Some(cfg.controller_heart_beat_timeout.as_millis() as i64),
            election_priority: Some(cfg.broker_election_priority),
        };
        let every = cfg.broker_heartbeat_interval;
        tokio::spawn(async move {
            loop {
                let epoch = m.epochs.lock().last_epoch().unwrap_or(-1);
                let offset = off.load(Ordering::Acquire);
                let h = BrokerHeartbeatRequestHeader {
                    epoch: Some(epoch),
                    max_offset: Some(offset),
                    confirm_offset: Some(offset),
                    ..h.clone()
                };
                c.heartbeat(&h).await;
                tokio::time::sleep(every).await;
            }
        })
    };
    let result =
        supervise(&file, id, &broker_addr, &controllers, &membership, &max_offset, &mut stop, &mut started).await;
    beat.abort();
    result
}

#[allow(clippy::too_many_arguments)]
async fn supervise(
    file: &BrokerFile,
    id: u64,
    broker_addr: &str,
    controllers: &Controllers,
    membership: &Arc<Membership>,
    max_offset: &AtomicI64,
    stop: &mut std::pin::Pin<&mut impl std::future::Future<Output = ()>>,
    started: &mut impl FnMut(&Broker),
) -> Result<()> {
    let poll = file.broker.sync_broker_metadata_period;
    loop {
        // Who leads, by the controllers.
        let view = match controllers.set_view().await {
            Ok(v) if v.master.is_some() => v,
            Ok(_) => {
                if let Err(e) = controllers.elect(id).await {
                    warn!(error = %e, "no master and no election yet");
                }
                tokio::select! {
                    () = &mut *stop => return Ok(()),
                    () = tokio::time::sleep(Duration::from_millis(500)) => {}
                }
                continue;
            }
            Err(e) => {
                warn!(error = %e, "cannot learn the set's master");
                tokio::select! {
                    () = &mut *stop => return Ok(()),
                    () = tokio::time::sleep(Duration::from_millis(500)) => {}
                }
                continue;
            }
        };
        let (master_id, master_addr) = view.master.clone().unwrap_or_default();
        let leading = master_id == id;
        membership.master_epoch.store(view.master_epoch, Ordering::Release);
        *membership.sync_state_set.write() = view.sync_state_set.clone();
        membership.sync_state_set_epoch.store(view.sync_state_set_epoch, Ordering::Release);

        let mut cfg = file.broker.clone();
        let mut truncate_to = None;
        if leading {
            cfg.broker_id = 0;
            cfg.broker_role = BrokerRole::SyncMaster;
        } else {
            cfg.broker_id = id;
            cfg.broker_role = BrokerRole::Slave;
            // Keep only what this broker shares with the master.
            // The master's history must already hold the epoch it was granted (it
            // records it once it runs as master): until then, ask again.
            let epochs_of_master = master_epochs(&controllers.client, &master_addr).await.and_then(|theirs| {
                if theirs.epoch_list.last().is_some_and(|e| e.epoch >= view.master_epoch) {
                    Ok(theirs)
                } else {
                    Err(Error::Controller(format!(
                        "master {master_addr} has not started epoch {} yet",
                        view.master_epoch
                    )))
                }
            });
            match epochs_of_master {
                Ok(theirs) => {
                    let own_end = store_end(&cfg)?;
                    let list: Vec<EpochEntry> = theirs
                        .epoch_list
                        .iter()
                        .map(|e| EpochEntry { epoch: e.epoch, start_offset: e.start_offset, end_offset: e.end_offset })
                        .collect();
                    let mut epochs = membership.epochs.lock();
                    if epochs.last_epoch().is_some() {
                        let point = epochs.consistent_point(own_end, &list, theirs.max_offset).unwrap_or(0);
                        if point < own_end {
                            warn!(from = own_end, to = point, master = %master_addr, "truncating to what the master has");
                            truncate_to = Some(point);
                            epochs.truncate_suffix_by_offset(point)?;
                        }
                    }
                    // The master's history is this broker's from here on.
                    for e in &list {
                        if epochs.last_epoch().is_none_or(|last| e.epoch > last) {
                            epochs.append(e.epoch, e.start_offset)?;
                        }
                    }
                }
                Err(e) => {
                    warn!(error = %e, master = %master_addr, "cannot read the master's epochs yet");
                    tokio::select! {
                        () = &mut *stop => return Ok(()),
                        () = tokio::time::sleep(Duration::from_millis(500)) => {}
                    }
                    continue;
                }
            }
        }
        let opts = crate::StartOptions { truncate_to, membership: Some(membership.clone()) };
        let broker = start_in_place(&cfg, file, &opts).await?;
        if leading {
            let end = broker.context().store.commit_log_max_offset();
            membership.epochs.lock().append(view.master_epoch, end)?;
        }
        info!(broker_id = id, leading, epoch = view.master_epoch, master = %master_addr, addr = broker_addr, "running in the controllers' role");
        started(&broker);

        // Until the controllers move on.
        let mut tick = tokio::time::interval(poll.min(file.broker.check_sync_state_set_period));
        let outcome = loop {
            tokio::select! {
                () = &mut *stop => break None,
                () = membership.role_changed.notified() => {}
                _ = tick.tick() => {}
            }
            max_offset.store(broker.context().store.commit_log_max_offset(), Ordering::Release);
            if leading {
                report_sync_state_set(&broker, controllers, membership, &file.broker).await;
            }
            match controllers.set_view().await {
                Ok(now) if now.master_epoch > view.master_epoch => break Some(now),
                Ok(_) => {}
                Err(e) => tracing::debug!(error = %e, "controllers unreachable; keeping the role"),
            }
        };
        broker.shutdown(Duration::from_secs(3)).await;
        max_offset.store(store_end(&file.broker)?, Ordering::Release);
        match outcome {
            None => return Ok(()),
            Some(now) => {
                info!(epoch = now.master_epoch, master = ?now.master, "the master changed; restarting in the new role")
            }
        }
    }
}

/// Starts an incarnation, waiting (up to [`REBIND_FOR`]) for the previous one's
/// sockets to be released: a restart binds the same ports at once.
async fn start_in_place(cfg: &config::BrokerConfig, file: &BrokerFile, opts: &crate::StartOptions) -> Result<Broker> {
    let deadline = tokio::time::Instant::now() + REBIND_FOR;
    loop {
        match Broker::start_with(cfg.clone(), &file.plugins, &file.telemetry, opts.clone()).await {
            Err(Error::Io(e))
                if e.kind() == std::io::ErrorKind::AddrInUse && tokio::time::Instant::now() < deadline =>
            {
                tracing::debug!(error = %e, "a port of the previous incarnation is still bound; retrying");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            other => return other,
        }
    }
}

/// How long a restart waits for its ports.
const REBIND_FOR: Duration = Duration::from_secs(10);

/// A master's SyncStateSet: itself and the slaves that kept up within
/// `ha_max_time_slave_not_catchup`, reported when it differs from the controllers'.
async fn report_sync_state_set(broker: &Broker, controllers: &Controllers, m: &Membership, cfg: &config::BrokerConfig) {
    let Some(crate::role::Ha::Master(ha)) = broker.context().role.ha() else { return };
    let mut set = ha.caught_up_slaves(cfg.ha_max_time_slave_not_catchup);
    set.insert(m.broker_id);
    if *m.sync_state_set.read() != set {
        match controllers.alter_sync_state_set(m.broker_id, m, &set).await {
            Ok(()) => info!(sync_state_set = ?set, "SyncStateSet changed"),
            Err(e) => warn!(error = %e, "SyncStateSet change refused"),
        }
    }
    ha.set_ack_policy(m.ack_policy());
}
