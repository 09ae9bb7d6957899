//! What applications implement to receive messages from a push consumer:
//! [`MessageListenerConcurrently`] (RocketMQ's `MessageListenerConcurrently`) or
//! [`MessageListenerOrderly`] (`MessageListenerOrderly`).
//!
//! Both are traits with an async method, so a listener can await I/O without
//! blocking the runtime; plain closures implement them too:
//!
//! ```no_run
//! # use client::consumer::{ConsumeContext, ConsumeStatus, MessageListenerConcurrently};
//! # use client::MessageExt;
//! struct Handler;
//! impl MessageListenerConcurrently for Handler {
//!     async fn consume_message(&self, msgs: &[MessageExt], _ctx: &ConsumeContext) -> ConsumeStatus {
//!         for m in msgs {
//!             println!("{}", String::from_utf8_lossy(&m.body));
//!         }
//!         ConsumeStatus::Success
//!     }
//! }
//! // or: |msgs: &[MessageExt], _ctx: &ConsumeContext| ConsumeStatus::Success
//! ```
//!
//! A closure runs on a runtime worker: keep it short, or use the trait (or
//! [`AsyncFnListener`]) and `spawn_blocking` for CPU-heavy work. A listener that
//! panics is treated as having asked for redelivery (Java: an exception thrown by
//! the listener means RECONSUME_LATER).

use std::future::Future;
use std::pin::Pin;

use common::route::MessageQueue;
use common::MessageExt;

/// Outcome of a concurrent listener call (`ConsumeConcurrentlyStatus`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsumeStatus {
    /// The batch is done; its offsets may be committed.
    Success,
    /// Redeliver the batch later through the group's retry topic (clustering), or
    /// drop it (broadcasting, as RocketMQ does).
    ReconsumeLater,
}

/// Outcome of an orderly listener call (`ConsumeOrderlyStatus`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsumeOrderlyStatus {
    /// The batch is done; the next messages of the queue follow.
    Success,
    /// Pause the queue for `suspend_current_queue_time`, then deliver the same
    /// batch again (nothing after it is delivered meanwhile).
    SuspendCurrentQueueAMoment,
}

/// Where a batch comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConsumeContext {
    /// The queue the batch was pulled from (for retried messages, a queue of
    /// `%RETRY%<group>`; the messages' `topic` is already the original one).
    pub mq: MessageQueue,
}

impl ConsumeContext {
    pub fn new(mq: MessageQueue) -> Self {
        Self { mq }
    }
}

/// A listener whose batches may run in parallel, in any order.
pub trait MessageListenerConcurrently: Send + Sync + 'static {
    fn consume_message(&self, msgs: &[MessageExt], ctx: &ConsumeContext) -> impl Future<Output = ConsumeStatus> + Send;
}

/// A listener that gets each queue's messages one batch at a time, in queue order.
pub trait MessageListenerOrderly: Send + Sync + 'static {
    fn consume_message(
        &self,
        msgs: &[MessageExt],
        ctx: &ConsumeContext,
    ) -> impl Future<Output = ConsumeOrderlyStatus> + Send;
}

impl<F> MessageListenerConcurrently for F
where
    F: Fn(&[MessageExt], &ConsumeContext) -> ConsumeStatus + Send + Sync + 'static,
{
    fn consume_message(&self, msgs: &[MessageExt], ctx: &ConsumeContext) -> impl Future<Output = ConsumeStatus> + Send {
        std::future::ready(self(msgs, ctx))
    }
}

impl<F> MessageListenerOrderly for F
where
    F: Fn(&[MessageExt], &ConsumeContext) -> ConsumeOrderlyStatus + Send + Sync + 'static,
{
    fn consume_message(
        &self,
        msgs: &[MessageExt],
        ctx: &ConsumeContext,
    ) -> impl Future<Output = ConsumeOrderlyStatus> + Send {
        std::future::ready(self(msgs, ctx))
    }
}

/// An async closure as a concurrent listener: it gets its own copy of the batch,
/// so the future it returns may outlive the call.
///
/// ```no_run
/// # use client::consumer::{AsyncFnListener, ConsumeContext, ConsumeStatus};
/// # use client::MessageExt;
/// let listener = AsyncFnListener(|msgs: Vec<MessageExt>, _ctx: ConsumeContext| async move {
///     tokio::task::yield_now().await;
///     let _ = msgs;
///     ConsumeStatus::Success
/// });
/// ```
pub struct AsyncFnListener<F>(pub F);

impl<F, Fut> MessageListenerConcurrently for AsyncFnListener<F>
where
    F: Fn(Vec<MessageExt>, ConsumeContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ConsumeStatus> + Send + 'static,
{
    fn consume_message(&self, msgs: &[MessageExt], ctx: &ConsumeContext) -> impl Future<Output = ConsumeStatus> + Send {
        (self.0)(msgs.to_vec(), ctx.clone())
    }
}

impl<F, Fut> MessageListenerOrderly for AsyncFnListener<F>
where
    F: Fn(Vec<MessageExt>, ConsumeContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ConsumeOrderlyStatus> + Send + 'static,
{
    fn consume_message(
        &self,
        msgs: &[MessageExt],
        ctx: &ConsumeContext,
    ) -> impl Future<Output = ConsumeOrderlyStatus> + Send {
        (self.0)(msgs.to_vec(), ctx.clone())
    }
}

pub(crate) type BoxFut<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Object-safe forms of the listener traits, so the consumer can hold any listener.
pub(crate) trait DynConcurrent: Send + Sync {
    fn consume<'a>(&'a self, msgs: &'a [MessageExt], ctx: &'a ConsumeContext) -> BoxFut<'a, ConsumeStatus>;
}

impl<T: MessageListenerConcurrently> DynConcurrent for T {
    fn consume<'a>(&'a self, msgs: &'a [MessageExt], ctx: &'a ConsumeContext) -> BoxFut<'a, ConsumeStatus> {
        Box::pin(self.consume_message(msgs, ctx))
    }
}

pub(crate) trait DynOrderly: Send + Sync {
    fn consume<'a>(&'a self, msgs: &'a [MessageExt], ctx: &'a ConsumeContext) -> BoxFut<'a, ConsumeOrderlyStatus>;
}

impl<T: MessageListenerOrderly> DynOrderly for T {
    fn consume<'a>(&'a self, msgs: &'a [MessageExt], ctx: &'a ConsumeContext) -> BoxFut<'a, ConsumeOrderlyStatus> {
        Box::pin(self.consume_message(msgs, ctx))
    }
}
