//! Consumers: push (RocketMQ's `DefaultMQPushConsumer`) and pull.
//!
//! * [`pull_api`] — the broker calls every consumer makes (pull one queue,
//!   offsets, membership, send-back, locks), stateless;
//! * [`rebalance`] — queue allocation strategies ([`AllocateStrategy`]: RocketMQ's
//!   AVG, AVG_BY_CIRCLE, CONSISTENT_HASH, MACHINE_ROOM, MACHINE_ROOM_NEARBY, CONFIG)
//!   and the rebalance step the consumers share;
//! * [`offset_store`] — where consumed offsets live (broker or local file);
//! * [`listener`] — what applications implement (concurrent or orderly);
//! * [`push`] — the push consumer: pull loops per assigned queue, concurrent or
//!   orderly listeners, retries;
//! * [`pull_consumer`] — pull and lite pull consumers.

pub mod listener;
pub mod offset_store;
mod process_queue;
pub mod pull_api;
pub mod pull_consumer;
pub mod push;
pub mod rebalance;
pub mod running_info;

pub use listener::{
    AsyncFnListener, ConsumeContext, ConsumeOrderlyStatus, ConsumeStatus, MessageListenerConcurrently,
    MessageListenerOrderly,
};
pub use offset_store::OffsetStore;
pub use pull_api::{PullApi, PullRequest, PullResult, PullStatus};
pub use pull_consumer::{LitePullConsumer, LitePullOptions, PullConsumer};
pub use push::{PushConsumer, PushConsumerBuilder, PushConsumerOptions};
pub use rebalance::{
    AllocateAveragely, AllocateAveragelyByCircle, AllocateByConfig, AllocateByMachineRoom, AllocateConsistentHash,
    AllocateContext, AllocateMachineRoomNearby, AllocateStrategy, MachineRoomResolver, ZoneResolver,
};

pub use common::subscription::{ConsumeFromWhere, MessageModel};
