//! Client errors.

use common::ResponseCode;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Remoting(#[from] remoting::Error),
    /// The broker or name server at `addr` answered with an error code.
    #[error("{addr} answered {code}: {remark}")]
    Broker { code: ResponseCode, remark: String, addr: String },
    #[error("no route info of topic {0}: create it, or enable autoCreateTopicEnable on a broker")]
    NoRoute(String),
    #[error(
        "no name server address: set it in code, in the client config, in NAMESRV_ADDR, or through namesrv_http_url"
    )]
    NoNameServer,
    #[error("no broker address for broker {0}")]
    NoBrokerAddr(String),
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    #[error("send of message to {topic} failed after {attempts} attempts: {last}")]
    SendFailed { topic: String, attempts: usize, last: Box<Error> },
    #[error("timed out after {0:?}")]
    Timeout(std::time::Duration),
    #[error("the client is shut down")]
    Shutdown,
    #[error("invalid response body: {0}")]
    Body(String),
    /// A message's sys flag names a compression type RocketMQ does not define.
    #[error("sys flag {sys_flag:#x} names compression type {value}, which RocketMQ does not define")]
    UnknownCompression { sys_flag: i32, value: i32 },
    /// A compressed message body does not decompress (corrupt or truncated).
    #[error("{compression} body does not decompress")]
    Decompress {
        compression: crate::compression::Compression,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// An allocation strategy panicked; the member keeps its queues this round.
    #[error("the allocation strategy panicked")]
    AllocatePanicked,
    /// A machine-room allocation strategy cannot tell where a queue's broker or a
    /// member of the group runs (RocketMQ's `AllocateMachineRoomNearby` throws).
    #[error("no machine room for {what} `{name}`")]
    NoMachineRoom { what: &'static str, name: String },
    /// A plugin could not be loaded or looked up (see [`crate::plugins`]).
    #[error(transparent)]
    PluginHost(#[from] plugin_host::Error),
    /// A plugin call failed and its failure policy makes the operation fail (a queue
    /// selector with policy `reject`).
    #[error("plugin {plugin} failed: {source}")]
    Plugin { plugin: String, source: plugin_api::PluginError },
}

impl Error {
    /// The broker's response code, when the error is a broker answer.
    pub fn response_code(&self) -> Option<ResponseCode> {
        match self {
            Error::Broker { code, .. } => Some(*code),
            Error::SendFailed { last, .. } => last.response_code(),
            _ => None,
        }
    }

    pub(crate) fn from_response(resp: &remoting::RemotingCommand, addr: &str) -> Self {
        Error::Broker { code: resp.response_code(), remark: resp.remark_str().to_owned(), addr: addr.to_owned() }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
