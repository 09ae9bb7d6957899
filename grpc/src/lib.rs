//! RocketMQ 5's gRPC messaging endpoint, served by the broker itself (RocketMQ's
//! "local proxy" mode: no separate process).
//!
//! Every 5.x client (Java, Go, C#, C++, Python, Node.js, Rust) speaks
//! `apache.rocketmq.v2.MessagingService`. This crate serves that service with tonic and
//! translates each call into the remoting requests the broker already processes, sent
//! over an in-process connection per client ([`Backend::connect`]): the broker's own
//! processors, ACL guard, spans and metrics apply to gRPC clients exactly as to remoting
//! ones, and a gRPC producer's messages are stored and read as a remoting producer's.
//!
//! ```text
//!  5.x client ──gRPC──► Messaging (this crate) ──RemotingCommand──► in-process Channel
//!                        session per client id                      └► broker dispatcher
//! ```
//!
//! The protocol types come from RocketMQ's published `.proto` files (`proto/`), compiled
//! by the build script.

pub mod pb {
    //! The generated `apache.rocketmq.v2` types and service.
    #![allow(clippy::all, clippy::pedantic, missing_docs)]
    tonic::include_proto!("apache.rocketmq.v2");
}

mod consume;
mod convert;
mod gather;
mod pull;
mod renew;
mod service;
mod status;

pub use consume::GroupInfo;
pub use gather::Gathered;
/// The protobuf well-known types the generated messages use (durations, timestamps).
pub use prost_types;
pub use service::{serve, Backend, GrpcServer, Signer, TopicInfo};
pub use status::{code_of, Failure};
