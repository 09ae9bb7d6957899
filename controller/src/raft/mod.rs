//! The controllers' consensus: an `openraft` group whose log carries the
//! [`Event`]s of [`crate::state`]. The log, vote and snapshots persist under
//! `<controllerStorePath>/raft` ([`log_store`], [`state_machine`]); peers talk over
//! the remoting protocol ([`network`]).
//!
//! Every controller is configured with the same peers (`controllerDLegerPeers`) and
//! initializes the group with exactly that membership, so a group forms whichever
//! controllers start first; a controller that restarts continues from its files.

// openraft's storage traits return its `StorageError` (~224 bytes) by value.
#![allow(clippy::result_large_err)]

pub mod log_store;
pub mod network;
pub mod state_machine;

use std::collections::BTreeMap;
// The macro's default snapshot type names `Cursor` unqualified.
use std::io::Cursor;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{CheckIsLeaderError, ClientWriteError, InitializeError, RaftError};
use openraft::{BasicNode, Config, Raft, ServerState};

use remoting::RemotingClient;

use crate::state::{Applied, Event, ReplicasInfo};
use log_store::LogStore;
use network::Network;
use state_machine::StateMachine;

openraft::declare_raft_types!(
    /// The controller group's Raft types: events in, [`Applied`] out.
    pub TypeConfig:
        D = Event,
        R = Applied,
);

/// Raft timing (ms): how often the leader heartbeats and how long followers wait
/// before electing another.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub heartbeat: u64,
    pub election_min: u64,
    pub election_max: u64,
}

impl Default for Timing {
    fn default() -> Self {
        Self { heartbeat: 200, election_min: 1000, election_max: 2000 }
    }
}

/// Why a change could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ProposeError {
    /// This controller is not the leader; the leader's address if one is known.
    #[error("the controller is not in leader state")]
    NotLeader(Option<String>),
    #[error("controller consensus failed: {0}")]
    Raft(String),
}

/// One controller's member of the group.
#[derive(Clone)]
pub struct RaftNode {
    raft: Raft<TypeConfig>,
    sm: StateMachine,
    id: u64,
    peers: Arc<BTreeMap<u64, String>>,
}

impl RaftNode {
    /// Opens the stores under `dir` and joins the group of `peers` (id → address,
    /// this node included).
    ///
    /// # Errors
    /// The stores cannot be opened, or the Raft configuration is invalid.
    pub async fn start(
        id: u64,
        peers: BTreeMap<u64, String>,
        dir: &Path,
        client: RemotingClient,
        timing: Timing,
    ) -> std::io::Result<Self> {
        let config = Config {
            cluster_name: "ferromq-controller".into(),
            heartbeat_interval: timing.heartbeat,
            election_timeout_min: timing.election_min,
            election_timeout_max: timing.election_max,
            ..Config::default()
        }
        .validate()
        .map_err(std::io::Error::other)?;
        let log = LogStore::open(dir)?;
        let sm = StateMachine::open(dir)?;
        let raft = Raft::new(id, Arc::new(config), Network { client }, log, sm.clone())
            .await
            .map_err(std::io::Error::other)?;
        // The same membership on every node: whichever starts first forms the group.
        // A node with a log or a vote already belongs to it and continues from there.
        if !raft.is_initialized().await.map_err(std::io::Error::other)? {
            let members: BTreeMap<u64, BasicNode> =
                peers.iter().map(|(id, addr)| (*id, BasicNode::new(addr))).collect();
            match raft.initialize(members).await {
                Ok(()) | Err(RaftError::APIError(InitializeError::NotAllowed(_))) => {}
                Err(e) => return Err(std::io::Error::other(e.to_string())),
            }
        }
        Ok(Self { raft, sm, id, peers: Arc::new(peers) })
    }

    pub fn id(&self) -> u64 {
        self.id
    }

    pub fn raft(&self) -> &Raft<TypeConfig> {
        &self.raft
    }

    pub fn peers(&self) -> &BTreeMap<u64, String> {
        &self.peers
    }

    /// Whether this node leads now (from its metrics: for routing, not for safety).
    pub fn is_leader(&self) -> bool {
        self.raft.metrics().borrow().state == ServerState::Leader
    }

    /// The leader's id and address, as this node knows them.
    pub fn leader(&self) -> Option<(u64, String)> {
        let id = self.raft.metrics().borrow().current_leader?;
        Some((id, self.peers.get(&id).cloned().unwrap_or_default()))
    }

    /// Reads the state as of now, confirmed by a quorum: only the leader can.
    ///
    /// # Errors
    /// Not the leader, or no quorum answers.
    pub async fn read_linearizable<T>(&self, f: impl FnOnce(&ReplicasInfo) -> T) -> Result<T, ProposeError> {
        match self.raft.ensure_linearizable().await {
            Ok(_) => Ok(self.sm.read(f)),
            Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(fwd))) => {
                Err(ProposeError::NotLeader(fwd.leader_node.map(|n| n.addr)))
            }
            Err(e) => Err(ProposeError::Raft(e.to_string())),
        }
    }

    /// Reads the state this node has applied (possibly behind the leader's).
    pub fn read_local<T>(&self, f: impl FnOnce(&ReplicasInfo) -> T) -> T {
        self.sm.read(f)
    }

    /// Appends `event` and waits until it is committed and applied here.
    ///
    /// # Errors
    /// Not the leader, or the group cannot commit.
    pub async fn propose(&self, event: Event) -> Result<Applied, ProposeError> {
        match self.raft.client_write(event).await {
            Ok(r) => Ok(r.data),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                Err(ProposeError::NotLeader(f.leader_node.map(|n| n.addr)))
            }
            Err(e) => Err(ProposeError::Raft(e.to_string())),
        }
    }

    /// Waits until this node knows a leader (for tests and start-up), at most `timeout`.
    pub async fn wait_for_leader(&self, timeout: Duration) -> Option<u64> {
        let mut rx = self.raft.metrics();
        let wait = async {
            loop {
                if let Some(l) = rx.borrow().current_leader {
                    return l;
                }
                if rx.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
        };
        tokio::time::timeout(timeout, wait).await.ok()
    }

    /// Stops the node (its files stay).
    pub async fn shutdown(&self) {
        let _ = self.raft.shutdown().await;
    }
}

#[cfg(test)]
mod tests {
    use openraft::testing::{StoreBuilder, Suite};
    use openraft::StorageError;

    use super::*;

    struct OnDisk;

    impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for OnDisk {
        async fn build(&self) -> Result<(tempfile::TempDir, LogStore, StateMachine), StorageError<u64>> {
            let dir = tempfile::tempdir().expect("temporary directory");
            let log = LogStore::open(dir.path()).expect("log store");
            let sm = StateMachine::open(dir.path()).expect("state machine");
            Ok((dir, log, sm))
        }
    }

    /// openraft's own conformance suite for log stores and state machines.
    #[test]
    fn the_stores_pass_openraft_s_suite() -> Result<(), StorageError<u64>> {
        Suite::test_all(OnDisk)
    }

    #[tokio::test]
    async fn a_single_node_group_elects_itself_and_keeps_its_state_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        drop(listener);
        let peers = BTreeMap::from([(0, addr)]);
        let client = || RemotingClient::new(remoting::ClientConfig::default(), None);
        let node = RaftNode::start(0, peers.clone(), dir.path(), client(), Timing::default()).await.unwrap();
        assert_eq!(node.wait_for_leader(Duration::from_secs(10)).await, Some(0));
        let event = Event::ApplyBrokerId {
            cluster_name: "C".into(),
            broker_name: "a".into(),
            broker_id: 1,
            address: "h:1".into(),
            check_code: "h:1;5".into(),
        };
        assert_eq!(node.propose(event).await.unwrap(), Applied::Done);
        let elect = Event::ElectMaster { broker_name: "a".into(), new_master: Some(1), master_epoch: 0 };
        assert_eq!(node.propose(elect).await.unwrap(), Applied::Done);
        node.shutdown().await;

        let node = RaftNode::start(0, peers, dir.path(), client(), Timing::default()).await.unwrap();
        assert_eq!(node.wait_for_leader(Duration::from_secs(10)).await, Some(0));
        let master = node.read_linearizable(|s| s.set("a").map(|set| (set.master, set.master_epoch))).await.unwrap();
        assert_eq!(master, Some((Some(1), 1)));
        node.shutdown().await;
    }
}
