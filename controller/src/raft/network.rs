//! Raft's messages between controllers, over the RocketMQ remoting protocol on the
//! controller's one port (as RocketMQ's DLedger controllers share their peer port
//! with the broker-facing API): each message is a request with a FerroMQ-private
//! code and a JSON body, answered with the JSON of the receiving node's `Result`.

use std::time::Duration;

use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use openraft::{BasicNode, Raft};
use serde::de::DeserializeOwned;
use serde::Serialize;

use common::ResponseCode;
use remoting::{RemotingClient, RemotingCommand, RequestCode};

use super::TypeConfig;

type NodeId = u64;

/// Every controller's Raft client: one per node, sharing connections.
#[derive(Clone)]
pub struct Network {
    pub client: RemotingClient,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Peer;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Peer {
        Peer { client: self.client.clone(), target, addr: node.addr.clone() }
    }
}

/// The connection to one peer.
pub struct Peer {
    client: RemotingClient,
    target: NodeId,
    addr: String,
}

/// How long a message may take when openraft sets no deadline.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(3);

impl Peer {
    async fn call<Req, Resp, E>(
        &self,
        code: RequestCode,
        req: &Req,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let body = serde_json::to_vec(req).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let timeout = option.soft_ttl().max(Duration::from_millis(50)).min(DEFAULT_TIMEOUT);
        let cmd = RemotingCommand::request(code).with_body(body);
        let resp = match self.client.invoke(&self.addr, cmd, timeout).await {
            Ok(r) => r,
            // A peer that is down: openraft backs off before trying again.
            Err(e @ (remoting::Error::Connect { .. } | remoting::Error::ConnectionClosed(_))) => {
                return Err(RPCError::Unreachable(Unreachable::new(&e)));
            }
            Err(e) => return Err(RPCError::Network(NetworkError::new(&e))),
        };
        if resp.response_code() != ResponseCode::SUCCESS {
            let e = std::io::Error::other(format!("{}: {}", resp.response_code(), resp.remark_str()));
            return Err(RPCError::Network(NetworkError::new(&e)));
        }
        let result: Result<Resp, RaftError<NodeId, E>> =
            serde_json::from_slice(&resp.body_bytes()).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for Peer {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        self.call(RequestCode::FERROMQ_RAFT_APPEND_ENTRIES, &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        self.call(RequestCode::FERROMQ_RAFT_VOTE, &rpc, &option).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>>
    {
        self.call(RequestCode::FERROMQ_RAFT_INSTALL_SNAPSHOT, &rpc, &option).await
    }
}

/// Answers a peer's Raft message with the local node's result.
pub async fn serve(raft: &Raft<TypeConfig>, req: &RemotingCommand) -> RemotingCommand {
    fn answer<T: Serialize>(r: &T) -> RemotingCommand {
        match serde_json::to_vec(r) {
            Ok(body) => RemotingCommand::success().with_body(body),
            Err(e) => RemotingCommand::error(ResponseCode::SYSTEM_ERROR, e.to_string()),
        }
    }
    fn bad(e: &serde_json::Error) -> RemotingCommand {
        RemotingCommand::error(ResponseCode::SYSTEM_ERROR, format!("malformed raft message: {e}"))
    }
    let body = req.body_bytes();
    match req.request_code() {
        RequestCode::FERROMQ_RAFT_APPEND_ENTRIES => match serde_json::from_slice(&body) {
            Ok(rpc) => answer(&raft.append_entries(rpc).await),
            Err(e) => bad(&e),
        },
        RequestCode::FERROMQ_RAFT_VOTE => match serde_json::from_slice(&body) {
            Ok(rpc) => answer(&raft.vote(rpc).await),
            Err(e) => bad(&e),
        },
        RequestCode::FERROMQ_RAFT_INSTALL_SNAPSHOT => match serde_json::from_slice(&body) {
            Ok(rpc) => answer(&raft.install_snapshot(rpc).await),
            Err(e) => bad(&e),
        },
        other => RemotingCommand::error(ResponseCode::REQUEST_CODE_NOT_SUPPORTED, format!("{other:?}")),
    }
}
