//! Concurrent consumption: each pulled batch is split into listener batches of
//! `consume_batch_size`, run as tasks, at most `consume_concurrency` at once across
//! queues.
//!
//! A batch the listener fails (or panics on) goes back to the broker
//! (CONSUMER_SEND_MSG_BACK: `%RETRY%<group>` after a delay, the DLQ after
//! `max_reconsume_times`), else is re-sent to the retry topic by the inner producer,
//! else is consumed again locally after `reconsume_later_delay`. Broadcasting has no
//! retry: failed messages are logged and dropped, as in RocketMQ.
//!
//! Invariant: a message leaves the process queue (and so lets the committed offset
//! pass it) only once it was consumed, sent back or re-sent; the committed offset is
//! the smallest offset still in flight.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use tracing::{debug, warn};

use common::properties::keys;
use common::route::MessageQueue;
use common::subscription::MessageModel;
use common::{topic, Message, MessageExt};
use remoting::channel::BoxFuture;

use super::{pause, Inner};
use crate::consumer::listener::{ConsumeContext, ConsumeStatus, DynConcurrent};
use crate::consumer::process_queue::ProcessQueue;

impl Inner {
    /// Boxed: a batch that must be consumed again schedules itself.
    pub(super) fn consume_concurrently(
        self: Arc<Self>,
        pq: Arc<ProcessQueue>,
        listener: Arc<dyn DynConcurrent>,
        msgs: Vec<MessageExt>,
        delay: Duration,
    ) -> BoxFuture<()> {
        Box::pin(self.consume_concurrently_inner(pq, listener, msgs, delay))
    }

    pub(super) async fn consume_concurrently_inner(
        self: Arc<Self>,
        pq: Arc<ProcessQueue>,
        listener: Arc<dyn DynConcurrent>,
        mut msgs: Vec<MessageExt>,
        delay: Duration,
    ) {
        if !delay.is_zero() && !pause(&self.cancel, delay).await {
            return;
        }
        let _permit = tokio::select! {
            _ = self.cancel.cancelled() => return,
            p = self.permits.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
        };
        if pq.is_dropped() {
            return;
        }
        self.restore_retry_topic(&mut msgs);
        let ctx = ConsumeContext::new(pq.mq.clone());
        let processing = self.begin_processing(&msgs);
        let status = match AssertUnwindSafe(listener.consume(&msgs, &ctx)).catch_unwind().await {
            Ok(s) => s,
            Err(_) => {
                warn!(group = %self.group, topic = %pq.mq.topic, queue_id = pq.mq.queue_id, "listener panicked; reconsuming later");
                ConsumeStatus::ReconsumeLater
            }
        };
        self.end_processing(processing, status == ConsumeStatus::Success);
        let mut again = Vec::new();
        if status == ConsumeStatus::ReconsumeLater {
            match self.model {
                MessageModel::Broadcasting => {
                    for m in &msgs {
                        warn!(group = %self.group, topic = %m.topic, msg_id = %m.msg_id(), "broadcasting consumption failed; the message is dropped");
                    }
                }
                MessageModel::Clustering => {
                    for m in &msgs {
                        if !self.send_back(&pq.mq, m).await {
                            let mut m = m.clone();
                            m.reconsume_times += 1;
                            again.push(m);
                        }
                    }
                }
            }
        }
        let done: Vec<i64> =
            msgs.iter().map(|m| m.queue_offset).filter(|o| !again.iter().any(|m| m.queue_offset == *o)).collect();
        pq.remove(&done, &self.store);
        if !again.is_empty() && !pq.is_dropped() {
            let delay = self.opts.reconsume_later_delay;
            self.tasks.spawn(self.clone().consume_concurrently(pq, listener, again, delay));
        }
    }

    /// Returns a failed message to the broker; falls back to re-sending a copy to
    /// the retry topic (§12.8). False when both failed.
    pub(super) async fn send_back(&self, mq: &MessageQueue, msg: &MessageExt) -> bool {
        let max = self.max_reconsume_times();
        let e = match self.api.send_back(&mq.broker_name, msg, &self.group, 0, max).await {
            Ok(()) => return true,
            Err(e) => e,
        };
        debug!(group = %self.group, msg_id = %msg.msg_id(), error = %e, "send-back failed; re-sending to the retry topic");
        let Some(producer) = &self.inner_producer else { return false };
        match producer.send(retry_copy(&self.group, msg, max)).await {
            Ok(_) => true,
            Err(e) => {
                warn!(group = %self.group, msg_id = %msg.msg_id(), error = %e, "retry send failed; consuming again locally");
                false
            }
        }
    }
}

/// The copy of a failed message the client itself sends to `%RETRY%<group>` when
/// CONSUMER_SEND_MSG_BACK fails (Java's `sendMessageBack` fallback): same body,
/// flag and properties, plus what the broker would have added — the original
/// topic, the id of the first message of the chain, the next reconsume count
/// (the broker turns RECONSUME_TIME into the record's count) and the delay.
fn retry_copy(group: &str, msg: &MessageExt, max_reconsume_times: i32) -> Message {
    let mut copy = Message {
        topic: topic::retry_topic(group),
        flag: msg.flag,
        properties: msg.properties.clone(),
        body: msg.body.clone(),
    };
    if !copy.properties.contains(keys::ORIGIN_MESSAGE_ID) {
        copy.properties.insert(keys::ORIGIN_MESSAGE_ID, msg.msg_id());
    }
    copy.properties.insert(keys::RETRY_TOPIC, msg.topic.clone());
    copy.properties.insert(keys::RECONSUME_TIME, (msg.reconsume_times + 1).to_string());
    copy.properties.insert(keys::MAX_RECONSUME_TIMES, max_reconsume_times.to_string());
    copy.properties.remove(keys::TRANSACTION_PREPARED);
    copy.properties.insert(keys::DELAY_TIME_LEVEL, (3 + msg.reconsume_times).to_string());
    copy
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_copy_carries_what_the_broker_would_add() {
        let mut props = common::Properties::new();
        props.insert(keys::UNIQ_CLIENT_MESSAGE_ID_KEYIDX, "ABC");
        props.insert(keys::TAGS, "TagA");
        props.insert(keys::TRANSACTION_PREPARED, "true");
        let msg = MessageExt {
            topic: "Orders".into(),
            queue_id: 1,
            flag: 7,
            queue_offset: 3,
            commit_log_offset: 100,
            sys_flag: 0,
            born_timestamp: 0,
            born_host: "127.0.0.1:1".parse().unwrap(),
            store_timestamp: 0,
            store_host: "127.0.0.1:2".parse().unwrap(),
            reconsume_times: 2,
            prepared_transaction_offset: 0,
            body_crc: 0,
            store_size: 0,
            properties: props,
            body: bytes::Bytes::from_static(b"payload"),
        };
        let copy = retry_copy("G", &msg, 16);
        assert_eq!(copy.topic, "%RETRY%G");
        assert_eq!((copy.flag, &copy.body[..]), (7, &b"payload"[..]));
        let p = &copy.properties;
        assert_eq!(p.get(keys::RETRY_TOPIC), Some("Orders"));
        assert_eq!(p.get(keys::ORIGIN_MESSAGE_ID), Some("ABC"));
        assert_eq!(p.get(keys::RECONSUME_TIME), Some("3"));
        assert_eq!(p.get(keys::MAX_RECONSUME_TIMES), Some("16"));
        assert_eq!(p.get(keys::DELAY_TIME_LEVEL), Some("5"));
        assert_eq!(p.get(keys::TAGS), Some("TagA"));
        assert_eq!(p.get(keys::TRANSACTION_PREPARED), None);
        assert_eq!(p.uniq_key(), Some("ABC"), "the copy keeps the message id");
    }
}
