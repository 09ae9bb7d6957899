//! RocketMQ 5's controller API (request codes 1001–1013 and BROKER_HEARTBEAT), with
//! its headers, bodies and response codes, so RocketMQ's brokers' and `mqadmin`'s
//! requests get the answers they expect.
//!
//! Reads that must be current and every change run on the leader: a change is
//! decided on the state read through [`RaftNode::read_linearizable`] and proposed as
//! an [`Event`] that carries the epochs it was decided at, one change at a time.
//! A follower answers CONTROLLER_NOT_LEADER. Heartbeats and the metadata request
//! are answered by every controller.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde::Serialize;

use common::ResponseCode;
use remoting::body::controller::{
    BrokerMemberGroup, BrokerReplicasInfo, ElectMasterBody, ReplicaIdentity, ReplicasInfoBody, SyncStateSetBody,
};
use remoting::header::controller::{
    AlterSyncStateSetRequestHeader, AlterSyncStateSetResponseHeader, ApplyBrokerIdRequestHeader,
    ApplyBrokerIdResponseHeader, BrokerHeartbeatRequestHeader, CleanBrokerDataRequestHeader, ElectMasterRequestHeader,
    ElectMasterResponseHeader, GetMetaDataResponseHeader, GetNextBrokerIdRequestHeader, GetNextBrokerIdResponseHeader,
    GetReplicaInfoRequestHeader, GetReplicaInfoResponseHeader, RegisterBrokerToControllerRequestHeader,
    RegisterBrokerToControllerResponseHeader,
};
use remoting::{Channel, RemotingCommand, RequestCode};

use crate::liveness::{BrokerKey, Heartbeat, LiveInfo};
use crate::raft::ProposeError;
use crate::state::{Applied, BrokerSet, Event, ReplicasInfo, FIRST_BROKER_ID};
use crate::Controller;

fn json<T: Serialize>(value: &T) -> Vec<u8> {
    remoting::json::to_vec(value).unwrap_or_default()
}

fn err(code: ResponseCode, remark: impl Into<String>) -> RemotingCommand {
    RemotingCommand::error(code, remark)
}

/// A refusal decided on the state (boxed: the decision's success value is small).
fn refuse(code: ResponseCode, remark: impl Into<String>) -> Box<RemotingCommand> {
    Box::new(err(code, remark))
}

fn from_propose(e: &ProposeError) -> RemotingCommand {
    match e {
        ProposeError::NotLeader(_) => err(ResponseCode::CONTROLLER_NOT_LEADER, "The controller is not in leader state"),
        ProposeError::Raft(e) => err(ResponseCode::SYSTEM_ERROR, e.clone()),
    }
}

/// A header that does not decode is answered with CONTROLLER_INVALID_REQUEST.
macro_rules! header {
    ($req:expr) => {
        match $req.decode_header() {
            Ok(h) => h,
            Err(e) => return err(ResponseCode::CONTROLLER_INVALID_REQUEST, format!("invalid request header: {e}")),
        }
    };
}

fn id(v: i64) -> Option<u64> {
    u64::try_from(v).ok()
}

impl Controller {
    /// Routes one request.
    pub(crate) async fn handle(&self, ch: &Channel, req: RemotingCommand) -> Option<RemotingCommand> {
        let resp = match req.request_code() {
            RequestCode::BROKER_HEARTBEAT => self.heartbeat(ch, &req),
            RequestCode::CONTROLLER_GET_METADATA_INFO => self.metadata(),
            RequestCode::CONTROLLER_GET_NEXT_BROKER_ID => self.next_broker_id(&req).await,
            RequestCode::CONTROLLER_APPLY_BROKER_ID => self.apply_broker_id(&req).await,
            RequestCode::CONTROLLER_REGISTER_BROKER => self.register_broker(&req).await,
            RequestCode::CONTROLLER_ELECT_MASTER => self.elect_master_request(&req).await,
            RequestCode::CONTROLLER_ALTER_SYNC_STATE_SET => self.alter_sync_state_set(&req).await,
            RequestCode::CONTROLLER_GET_REPLICA_INFO => self.replica_info(&req).await,
            RequestCode::CONTROLLER_GET_SYNC_STATE_DATA => self.sync_state_data(&req).await,
            RequestCode::CLEAN_BROKER_DATA => self.clean_broker_data(&req).await,
            RequestCode::FERROMQ_RAFT_APPEND_ENTRIES
            | RequestCode::FERROMQ_RAFT_VOTE
            | RequestCode::FERROMQ_RAFT_INSTALL_SNAPSHOT => crate::raft::network::serve(self.node.raft(), &req).await,
            other => err(ResponseCode::REQUEST_CODE_NOT_SUPPORTED, format!("request code {} not supported", other.0)),
        };
        (!req.is_oneway()).then_some(resp)
    }

    fn heartbeat(&self, ch: &Channel, req: &RemotingCommand) -> RemotingCommand {
        let h: BrokerHeartbeatRequestHeader = header!(req);
        let Some(broker_id) = h.broker_id.and_then(id) else {
            return err(ResponseCode::CONTROLLER_INVALID_REQUEST, "Heart beat with empty brokerId");
        };
        self.liveness.on_heartbeat(
            Heartbeat {
                key: BrokerKey { cluster_name: h.cluster_name, broker_name: h.broker_name, broker_id },
                address: h.broker_addr,
                connection: ch.id(),
                timeout: h
                    .heartbeat_timeout_mills
                    .and_then(|t| u64::try_from(t).ok())
                    .map_or(DEFAULT_HEARTBEAT_TIMEOUT, Duration::from_millis),
                epoch: h.epoch.unwrap_or(-1),
                max_offset: h.max_offset.unwrap_or(-1),
                confirm_offset: h.confirm_offset.unwrap_or(-1),
                election_priority: h.election_priority.unwrap_or(i32::MAX),
            },
            Instant::now(),
        );
        RemotingCommand::success().with_remark("Heart beat success")
    }

    fn metadata(&self) -> RemotingCommand {
        let leader = self.node.leader();
        let header = GetMetaDataResponseHeader {
            group: self.config.controller_dleger_group.clone(),
            controller_leader_id: leader.as_ref().map(|(id, _)| peer_name(*id)),
            controller_leader_address: leader.map(|(_, addr)| addr),
            is_leader: self.node.is_leader(),
            peers: self.node.peers().iter().map(|(id, addr)| format!("{}:{addr};", peer_name(*id))).collect(),
        };
        RemotingCommand::response_with(ResponseCode::SUCCESS, &header)
    }

    async fn next_broker_id(&self, req: &RemotingCommand) -> RemotingCommand {
        let h: GetNextBrokerIdRequestHeader = header!(req);
        let next = match self
            .node
            .read_linearizable(|s| s.set(&h.broker_name).map_or(FIRST_BROKER_ID, |set| set.next_broker_id))
            .await
        {
            Ok(n) => n,
            Err(e) => return from_propose(&e),
        };
        let header = GetNextBrokerIdResponseHeader {
            cluster_name: h.cluster_name,
            broker_name: h.broker_name,
            next_broker_id: Some(next as i64),
        };
        RemotingCommand::response_with(ResponseCode::SUCCESS, &header)
    }

    async fn apply_broker_id(&self, req: &RemotingCommand) -> RemotingCommand {
        let h: ApplyBrokerIdRequestHeader = header!(req);
        let Some(broker_id) = id(h.applied_broker_id) else {
            return err(
                ResponseCode::CONTROLLER_BROKER_ID_INVALID,
                format!("broker id {} is invalid", h.applied_broker_id),
            );
        };
        let address = h.register_check_code.split(';').next().unwrap_or_default().to_owned();
        let result = self
            .change(|s, _| {
                let ok = match s.set(&h.broker_name) {
                    None => broker_id == FIRST_BROKER_ID,
                    Some(set) => {
                        set.brokers.get(&broker_id).is_none_or(|b| b.register_check_code == h.register_check_code)
                    }
                };
                if !ok {
                    return Err(refuse(
                        ResponseCode::CONTROLLER_BROKER_ID_INVALID,
                        format!("Fail to apply brokerId: {broker_id} in broker-set: {}", h.broker_name),
                    ));
                }
                let event = Event::ApplyBrokerId {
                    cluster_name: h.cluster_name.clone(),
                    broker_name: h.broker_name.clone(),
                    broker_id,
                    address: address.clone(),
                    check_code: h.register_check_code.clone(),
                };
                Ok((Some(event), ()))
            })
            .await;
        match result {
            Ok(()) => RemotingCommand::response_with(
                ResponseCode::SUCCESS,
                &ApplyBrokerIdResponseHeader { cluster_name: h.cluster_name, broker_name: h.broker_name },
            ),
            Err(resp) => resp,
        }
    }

    async fn register_broker(&self, req: &RemotingCommand) -> RemotingCommand {
        let h: RegisterBrokerToControllerRequestHeader = header!(req);
        let Some(broker_id) = h.broker_id.and_then(id) else {
            return err(ResponseCode::CONTROLLER_BROKER_NEED_TO_BE_REGISTERED, "the broker has no id");
        };
        let cluster = h.cluster_name.clone();
        let result = self
            .change(|s, now| {
                let Some(set) = s.set(&h.broker_name).filter(|set| set.brokers.contains_key(&broker_id)) else {
                    return Err(refuse(
                        ResponseCode::CONTROLLER_BROKER_NEED_TO_BE_REGISTERED,
                        format!("broker {}:{broker_id} must apply for its id first", h.broker_name),
                    ));
                };
                let event = (set.brokers[&broker_id].address != h.broker_address).then(|| Event::UpdateBrokerAddress {
                    broker_name: h.broker_name.clone(),
                    broker_id,
                    address: h.broker_address.clone(),
                });
                // The master, only while it is alive.
                let master = set
                    .master
                    .filter(|m| self.live(&cluster, set, *m, now).is_some())
                    .map(|m| (m, set.master_address().unwrap_or_default().to_owned()));
                let body = SyncStateSetBody {
                    sync_state_set: set.sync_state_set.clone(),
                    sync_state_set_epoch: set.sync_state_set_epoch,
                };
                Ok((event, (master, set.master_epoch, set.sync_state_set_epoch, body)))
            })
            .await;
        match result {
            Ok((master, master_epoch, sss_epoch, body)) => {
                let has_master = master.is_some();
                let header = RegisterBrokerToControllerResponseHeader {
                    cluster_name: h.cluster_name,
                    broker_name: h.broker_name,
                    master_broker_id: master.as_ref().map(|(id, _)| *id as i64),
                    master_address: master.map(|(_, addr)| addr),
                    master_epoch: has_master.then_some(master_epoch),
                    sync_state_set_epoch: has_master.then_some(sss_epoch),
                };
                RemotingCommand::response_with(ResponseCode::SUCCESS, &header).with_body(json(&body))
            }
            Err(resp) => resp,
        }
    }

    async fn elect_master_request(&self, req: &RemotingCommand) -> RemotingCommand {
        let h: ElectMasterRequestHeader = header!(req);
        let designated = h.designate_elect.unwrap_or(false);
        let requester = h.broker_id.and_then(id);
        self.elect_master(&h.broker_name, requester, designated).await
    }

    /// An election of `broker_name`'s master: asked by a broker (`requester`), by an
    /// admin (`designated`: `requester` must win), or by this controller (`None`).
    pub(crate) async fn elect_master(
        &self,
        broker_name: &str,
        requester: Option<u64>,
        designated: bool,
    ) -> RemotingCommand {
        let unclean = self.config.enable_elect_unclean_master;
        let result = self
            .change(|s, now| {
                let Some(set) = s.set(broker_name) else {
                    return Err(refuse(
                        ResponseCode::CONTROLLER_BROKER_NEED_TO_BE_REGISTERED,
                        format!("broker set {broker_name} is not registered"),
                    ));
                };
                let live = |id| self.live(&set.cluster_name, set, id, now);
                // The first election of a set takes the broker that asks.
                let new_master = if set.master_epoch == 0 && !designated {
                    requester.filter(|id| set.brokers.contains_key(id))
                } else {
                    crate::elect::elect(set, live, unclean, designated.then_some(requester).flatten())
                };
                match new_master {
                    Some(m) if Some(m) == set.master => Err(Box::new(still_master(set))),
                    Some(m) => {
                        let event = Event::ElectMaster {
                            broker_name: broker_name.to_owned(),
                            new_master: Some(m),
                            master_epoch: set.master_epoch,
                        };
                        Ok((Some(event), Some((set.clone(), m))))
                    }
                    None if requester.is_none() => {
                        if set.master.is_none() {
                            // Already without a master: nothing new to say.
                            return Err(refuse(
                                ResponseCode::CONTROLLER_MASTER_NOT_AVAILABLE,
                                format!("no broker of {broker_name} can be elected"),
                            ));
                        }
                        let event = Event::ElectMaster {
                            broker_name: broker_name.to_owned(),
                            new_master: None,
                            master_epoch: set.master_epoch,
                        };
                        Ok((Some(event), None))
                    }
                    None => Err(refuse(
                        ResponseCode::CONTROLLER_ELECT_MASTER_FAILED,
                        format!("no broker of {broker_name} can be elected"),
                    )),
                }
            })
            .await;
        match result {
            Ok(Some((old, master))) => {
                tracing::info!(broker_name, master, epoch = old.master_epoch + 1, "master elected");
                let address = old.brokers.get(&master).map(|b| b.address.clone()).unwrap_or_default();
                let header = ElectMasterResponseHeader {
                    master_broker_id: Some(master as i64),
                    master_address: Some(address.clone()),
                    master_epoch: Some(old.master_epoch + 1),
                    sync_state_set_epoch: Some(old.sync_state_set_epoch + 1),
                };
                let body = ElectMasterBody {
                    broker_member_group: Some(BrokerMemberGroup {
                        cluster: old.cluster_name.clone(),
                        broker_name: old.broker_name.clone(),
                        broker_addrs: old.brokers.iter().map(|(id, b)| (*id, b.address.clone())).collect(),
                    }),
                    sync_state_set: BTreeSet::from([master]),
                };
                if self.config.notify_broker_role_changed {
                    self.notify_role_changed(&old, master, &address);
                }
                RemotingCommand::response_with(ResponseCode::SUCCESS, &header).with_body(json(&body))
            }
            Ok(None) => {
                tracing::warn!(broker_name, "the master is gone and no broker can be elected");
                err(ResponseCode::CONTROLLER_MASTER_NOT_AVAILABLE, format!("no broker of {broker_name} can be elected"))
            }
            Err(resp) => resp,
        }
    }

    async fn alter_sync_state_set(&self, req: &RemotingCommand) -> RemotingCommand {
        let h: AlterSyncStateSetRequestHeader = header!(req);
        let body: SyncStateSetBody = match remoting::json::from_slice(&req.body_bytes()) {
            Ok(b) => b,
            Err(e) => return err(ResponseCode::CONTROLLER_INVALID_REQUEST, format!("invalid SyncStateSet body: {e}")),
        };
        let result = self
            .change(|s, now| {
                let failed = |remark: String| Err(refuse(ResponseCode::CONTROLLER_ALTER_SYNC_STATE_SET_FAILED, remark));
                let Some(set) = s.set(&h.broker_name) else { return failed("Broker metadata is not existed".into()) };
                if body.sync_state_set == set.sync_state_set {
                    return failed("The newSyncStateSet is equal with the old one".into());
                }
                if set.master.is_none() || set.master.map(|m| m as i64) != Some(h.master_broker_id) {
                    return Err(refuse(ResponseCode::CONTROLLER_INVALID_MASTER, "the request is not from the master"));
                }
                if h.master_epoch != set.master_epoch {
                    return Err(refuse(ResponseCode::CONTROLLER_FENCED_MASTER_EPOCH, "the master epoch is stale"));
                }
                if body.sync_state_set_epoch != set.sync_state_set_epoch {
                    return Err(refuse(
                        ResponseCode::CONTROLLER_FENCED_SYNC_STATE_SET_EPOCH,
                        "the SyncStateSet epoch is stale",
                    ));
                }
                for id in &body.sync_state_set {
                    if !set.brokers.contains_key(id) {
                        return Err(refuse(
                            ResponseCode::CONTROLLER_INVALID_REPLICAS,
                            format!("broker {id} is unknown"),
                        ));
                    }
                    if self.live(&set.cluster_name, set, *id, now).is_none() {
                        return Err(refuse(
                            ResponseCode::CONTROLLER_BROKER_NOT_ALIVE,
                            format!("broker {id} is not alive"),
                        ));
                    }
                }
                if !set.master.is_some_and(|m| body.sync_state_set.contains(&m)) {
                    return failed("the new SyncStateSet does not contain the master".into());
                }
                let event = Event::AlterSyncStateSet {
                    broker_name: h.broker_name.clone(),
                    new_set: body.sync_state_set.clone(),
                    master_epoch: set.master_epoch,
                    sync_state_set_epoch: set.sync_state_set_epoch,
                };
                Ok((Some(event), set.sync_state_set_epoch + 1))
            })
            .await;
        match result {
            Ok(epoch) => {
                let header = AlterSyncStateSetResponseHeader { new_sync_state_set_epoch: epoch };
                let body = SyncStateSetBody { sync_state_set: body.sync_state_set, sync_state_set_epoch: epoch };
                RemotingCommand::response_with(ResponseCode::SUCCESS, &header).with_body(json(&body))
            }
            Err(resp) => resp,
        }
    }

    async fn replica_info(&self, req: &RemotingCommand) -> RemotingCommand {
        let h: GetReplicaInfoRequestHeader = header!(req);
        let set = match self.node.read_linearizable(|s| s.set(&h.broker_name).cloned()).await {
            Ok(Some(set)) => set,
            Ok(None) => {
                return err(ResponseCode::CONTROLLER_BROKER_METADATA_NOT_EXIST, "Broker metadata is not existed")
            }
            Err(e) => return from_propose(&e),
        };
        let header = GetReplicaInfoResponseHeader {
            master_broker_id: set.master.map(|m| m as i64),
            master_address: set.master_address().map(str::to_owned),
            master_epoch: Some(set.master_epoch),
        };
        let body =
            SyncStateSetBody { sync_state_set: set.sync_state_set, sync_state_set_epoch: set.sync_state_set_epoch };
        RemotingCommand::response_with(ResponseCode::SUCCESS, &header).with_body(json(&body))
    }

    async fn sync_state_data(&self, req: &RemotingCommand) -> RemotingCommand {
        let names: Vec<String> = match remoting::json::from_slice(&req.body_bytes()) {
            Ok(n) => n,
            Err(_) => return err(ResponseCode::SYSTEM_ERROR, "not set any response code"),
        };
        let now = Instant::now();
        let info = self.node.read_linearizable(|s| self.replicas_info(s, &names, now)).await;
        match info {
            Ok(info) => RemotingCommand::success().with_body(json(&info)),
            Err(e) => from_propose(&e),
        }
    }

    /// The SyncStateSet view of `names` (all sets when empty).
    pub(crate) fn replicas_info(&self, s: &ReplicasInfo, names: &[String], now: Instant) -> BrokerReplicasInfo {
        let mut out = BrokerReplicasInfo::default();
        for (name, set) in &s.sets {
            if !names.is_empty() && !names.contains(name) {
                continue;
            }
            let mut body = ReplicasInfoBody {
                master_broker_id: set.master,
                master_address: set.master_address().map(str::to_owned),
                master_epoch: set.master_epoch,
                sync_state_set_epoch: set.sync_state_set_epoch,
                ..ReplicasInfoBody::default()
            };
            for (id, b) in &set.brokers {
                let r = ReplicaIdentity {
                    broker_name: name.clone(),
                    broker_id: *id,
                    broker_address: b.address.clone(),
                    alive: self.live(&set.cluster_name, set, *id, now).is_some(),
                };
                if set.sync_state_set.contains(id) {
                    body.in_sync_replicas.push(r);
                } else {
                    body.not_in_sync_replicas.push(r);
                }
            }
            out.replicas_info_table.insert(name.clone(), body);
        }
        out
    }

    async fn clean_broker_data(&self, req: &RemotingCommand) -> RemotingCommand {
        let h: CleanBrokerDataRequestHeader = header!(req);
        let ids: Option<BTreeSet<u64>> = match h.broker_controller_ids_to_clean.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(list) => match list.split(';').filter(|s| !s.is_empty()).map(str::parse).collect() {
                Ok(ids) => Some(ids),
                Err(_) => {
                    return err(
                        ResponseCode::CONTROLLER_INVALID_CLEAN_BROKER_METADATA,
                        format!("invalid broker ids `{list}`"),
                    )
                }
            },
        };
        let result = self
            .change(|s, now| {
                let invalid = |r: String| Err(refuse(ResponseCode::CONTROLLER_INVALID_CLEAN_BROKER_METADATA, r));
                let Some(set) = s.set(&h.broker_name) else {
                    return invalid(format!("broker set {} does not exist", h.broker_name));
                };
                if !h.is_clean_living_broker.unwrap_or(false) {
                    let living: Vec<u64> = match &ids {
                        Some(ids) => ids
                            .iter()
                            .copied()
                            .filter(|id| self.live(&set.cluster_name, set, *id, now).is_some())
                            .collect(),
                        None => set
                            .brokers
                            .keys()
                            .copied()
                            .filter(|id| self.live(&set.cluster_name, set, *id, now).is_some())
                            .collect(),
                    };
                    if !living.is_empty() {
                        return invalid(format!("brokers {living:?} of {} are still alive", h.broker_name));
                    }
                }
                Ok((Some(Event::CleanBrokerData { broker_name: h.broker_name.clone(), broker_ids: ids.clone() }), ()))
            })
            .await;
        match result {
            Ok(()) => RemotingCommand::success(),
            Err(resp) => resp,
        }
    }

    /// Decides a change on the current state and proposes it, one change at a time.
    /// `decide` answers the event to propose (or none) and what to reply with, or
    /// the reply of a refusal.
    async fn change<T>(
        &self,
        decide: impl FnOnce(&ReplicasInfo, Instant) -> Result<(Option<Event>, T), Box<RemotingCommand>>,
    ) -> Result<T, RemotingCommand> {
        let _one_at_a_time = self.changes.lock().await;
        let now = Instant::now();
        let decided = self.node.read_linearizable(|s| decide(s, now)).await.map_err(|e| from_propose(&e))?;
        let (event, out) = decided.map_err(|refused| *refused)?;
        if let Some(event) = event {
            match self.node.propose(event).await {
                Ok(Applied::Done) => {}
                Ok(Applied::Fenced(reason)) => return Err(err(ResponseCode::CONTROLLER_INVALID_REQUEST, reason)),
                Err(e) => return Err(from_propose(&e)),
            }
        }
        Ok(out)
    }

    /// `id` of `set` if its heartbeats say it is alive.
    fn live(&self, cluster: &str, set: &BrokerSet, id: u64, now: Instant) -> Option<LiveInfo> {
        let key = BrokerKey { cluster_name: cluster.to_owned(), broker_name: set.broker_name.clone(), broker_id: id };
        self.liveness.alive(&key, now)
    }
}

/// CONTROLLER_MASTER_STILL_EXIST with the current master (what brokers read as "no
/// change").
fn still_master(set: &BrokerSet) -> RemotingCommand {
    let header = ElectMasterResponseHeader {
        master_broker_id: set.master.map(|m| m as i64),
        master_address: set.master_address().map(str::to_owned),
        master_epoch: Some(set.master_epoch),
        sync_state_set_epoch: Some(set.sync_state_set_epoch),
    };
    let body = ElectMasterBody { broker_member_group: None, sync_state_set: set.sync_state_set.clone() };
    RemotingCommand::response_with(ResponseCode::CONTROLLER_MASTER_STILL_EXIST, &header)
        .with_remark("The old master is still alive")
        .with_body(json(&body))
}

/// How long a broker that names no heartbeat timeout stays alive without one.
pub const DEFAULT_HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(10);

/// RocketMQ's peer id spelling (`n0`).
pub fn peer_name(id: u64) -> String {
    format!("n{id}")
}
