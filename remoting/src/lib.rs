//! RocketMQ's remoting protocol.
//!
//! * [`acl`] — RocketMQ's request signature: signing and verifying.
//! * [`codec`] — frames: `len | serialize type | header length | header | body`, with
//!   JSON and ROCKETMQ (binary) headers, a 16 MiB limit, and answers in the serialize
//!   type of the request.
//! * [`command`] — [`RemotingCommand`] and its `extFields`.
//! * [`header`] — typed custom headers ([`header::CommandHeader`]) for every request
//!   we handle; [`code`] — request codes and response codes.
//! * [`body`] and [`json`] — JSON bodies, tolerant of fastjson's output on input and
//!   emitting what every client reads.
//! * [`tls`] — TLS on the remoting port (RocketMQ's server modes) and for clients.
//! * [`channel`], [`server`], [`client`] — a full-duplex connection with opaque
//!   correlation (many requests in flight, both directions), a server that dispatches
//!   by request code, and a client with a connection per address.
//!
//! The wire format is an API boundary: every byte here must stay compatible with the
//! Java, Go, C++ and Rust RocketMQ clients (`remoting-protocol.md`).

pub mod acl;
pub mod body;
pub mod channel;
pub mod client;
pub mod code;
pub mod codec;
pub mod command;
pub mod error;
pub mod header;
pub mod json;
mod json_header;
pub mod server;
pub mod tls;

pub use channel::{Channel, RequestHandler};
pub use client::{ClientConfig, RemotingClient};
pub use code::RequestCode;
pub use codec::{RemotingCodec, MAX_FRAME_LEN};
pub use command::{ExtFields, LanguageCode, RemotingCommand, SerializeType};
pub use common::ResponseCode;
pub use error::{Error, Result};
pub use server::{LocalConnection, LocalConnector, RemotingServer, ServerConfig};
