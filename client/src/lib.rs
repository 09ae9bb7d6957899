//! The FerroMQ client SDK: producers and consumers for FerroMQ **and** Apache
//! RocketMQ clusters (same remoting protocol), with the semantics of RocketMQ's
//! Java client and an async Rust API.
//!
//! * [`Producer`] — sync, async (future or callback) and oneway sends, batches,
//!   retries on another broker, fault avoidance, compression, UNIQ_KEY stamping,
//!   queue selectors.
//! * [`consumer`] — push consumers (clustering/broadcasting, concurrent/orderly,
//!   rebalance, retry) and pull consumers.
//! * [`Admin`] — create topics, routes, cluster info, consumer progress, replay.
//! * [`TransactionProducer`] — transactional messages (half message, local
//!   transaction, check-back).
//! * [`request`] — request-reply: [`Producer::request`], [`create_reply_message`],
//!   [`Producer::send_reply`].
//! * [`msg_trace`] — RocketMQ 4.x message trace (`enableMsgTrace`): send,
//!   consumption and transaction records in RocketMQ's trace topic.
//! * [`plugins`] — queue selectors and allocation strategies as WASM, Lua or native
//!   plugins ([`ClientPlugins`], [`PluginQueueSelector`], [`PluginAllocateStrategy`]).
//!
//! Every producer/consumer owns a [`ClientInstance`]: connections, route cache,
//! heartbeats.

pub mod admin;
pub mod compression;
pub mod consumer;
pub mod error;
pub mod instance;
pub mod msg_trace;
pub mod namesrv;
pub mod plugins;
pub mod producer;
pub mod request;
mod trace;
pub mod transaction;

pub use admin::Admin;
pub use common::route::MessageQueue;
pub use common::{Message, MessageExt};
pub use compression::Compression;
pub use error::{Error, Result};
pub use instance::ClientInstance;
pub use plugins::{ClientPlugins, PluginAllocateStrategy, PluginQueueSelector};
pub use producer::{Producer, ProducerOptions, QueueSelector, SendResult, SendStatus};
pub use request::create_reply_message;
pub use transaction::{
    transaction_listener_fn, LocalTransactionState, TransactionListener, TransactionProducer, TransactionSendResult,
};
