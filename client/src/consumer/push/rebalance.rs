//! The push consumer's rebalance: which queues this member consumes, and what
//! changes when that set changes.
//!
//! For each subscribed topic — in clustering mode also `%RETRY%<group>` — the
//! readable queues of the route and the group's members go through the
//! [`AllocateStrategy`](crate::consumer::AllocateStrategy); broadcasting members take
//! every queue. This module applies the answer. Removed
//! queues stop and commit their offset; orderly consumers let the batch in
//! progress finish, commit, then unlock, so the next owner starts exactly after
//! it. New queues get a start offset (the committed one, else consume-from-where)
//! and a pull loop; orderly consumers lock them first and read the offset only
//! once the lock is held (the previous owner commits before it unlocks).
//!
//! Invariant: rebalances, offset resets and periodic commits are serialized by
//! `Inner::rebalance_lock`, so the queue table changes one step at a time.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tracing::{debug, info, warn};

use common::route::MessageQueue;
use common::subscription::{ConsumeFromWhere, MessageModel, SubscriptionData};
use common::topic;

use super::Inner;
use crate::consumer::process_queue::ProcessQueue;
use crate::error::Result;

impl Inner {
    pub(super) async fn rebalance(self: &Arc<Self>) {
        if self.cancel.is_cancelled() {
            return;
        }
        let _serial = self.rebalance_lock.lock().await;
        if self.cancel.is_cancelled() {
            return;
        }
        for sub in self.subs.clone() {
            self.rebalance_topic(&sub).await;
        }
    }

    pub(super) async fn rebalance_topic(self: &Arc<Self>, sub: &Arc<SubscriptionData>) {
        let assigned =
            crate::consumer::rebalance::allocate_topic(&self.api, &self.strategy, &self.group, &sub.topic, self.model)
                .await;
        if let Some(assigned) = assigned {
            self.update_queues(sub, assigned).await;
        }
    }

    pub(super) async fn update_queues(self: &Arc<Self>, sub: &Arc<SubscriptionData>, assigned: Vec<MessageQueue>) {
        let (removed, new): (Vec<Arc<ProcessQueue>>, Vec<MessageQueue>) = {
            let mut table = self.table.lock();
            let gone: Vec<MessageQueue> =
                table.keys().filter(|q| q.topic == sub.topic && !assigned.contains(q)).cloned().collect();
            let removed = gone.iter().filter_map(|q| table.remove(q)).collect();
            let new = assigned.iter().filter(|q| !table.contains_key(*q)).cloned().collect();
            (removed, new)
        };
        for pq in removed {
            info!(group = %self.group, topic = %pq.mq.topic, queue_id = pq.mq.queue_id, broker_name = %pq.mq.broker_name, "queue removed");
            self.remove_queue(pq).await;
        }
        if new.is_empty() {
            return;
        }
        let mut locked: Vec<MessageQueue> = Vec::new();
        if self.needs_lock() {
            let mut by_broker: BTreeMap<&str, Vec<MessageQueue>> = BTreeMap::new();
            for q in &new {
                by_broker.entry(q.broker_name.as_str()).or_default().push(q.clone());
            }
            for (broker, mqs) in by_broker {
                match self.api.lock_batch(&self.group, broker, &mqs).await {
                    Ok(ok) => locked.extend(ok),
                    Err(e) => {
                        debug!(group = %self.group, broker_name = broker, error = %e, "lock of new queues failed")
                    }
                }
            }
        }
        for mq in new {
            let pq = Arc::new(ProcessQueue::new(mq.clone(), self.cancel.child_token()));
            let start = if self.needs_lock() {
                if locked.contains(&mq) {
                    pq.set_locked(true);
                    // Offsets are read after the lock: the previous owner commits
                    // before it unlocks.
                    self.compute_start_offset(&mq).await.ok()
                } else {
                    None
                }
            } else {
                match self.compute_start_offset(&mq).await {
                    Ok(o) => Some(o),
                    Err(e) => {
                        warn!(group = %self.group, topic = %mq.topic, queue_id = mq.queue_id, error = %e, "no start offset; retrying at the next rebalance");
                        continue;
                    }
                }
            };
            info!(group = %self.group, topic = %mq.topic, queue_id = mq.queue_id, broker_name = %mq.broker_name, offset = ?start, "queue assigned");
            self.table.lock().insert(mq, pq.clone());
            self.spawn_pull_loop(pq, sub.clone(), start);
        }
    }

    /// Stops a queue this member no longer owns and commits its offset; orderly
    /// consumers let the batch in progress finish first and then unlock.
    pub(super) async fn remove_queue(self: &Arc<Self>, pq: Arc<ProcessQueue>) {
        let orderly = self.needs_lock();
        pq.drop_queue(!orderly);
        if self.model == MessageModel::Broadcasting {
            return;
        }
        if !orderly {
            if let Err(e) = self.store.persist(&pq.mq).await {
                debug!(group = %self.group, topic = %pq.mq.topic, queue_id = pq.mq.queue_id, error = %e, "offset commit on removal failed");
            }
            self.store.remove(&pq.mq);
            return;
        }
        // Orderly: the new owner must start exactly after our last committed batch.
        let this = self.clone();
        let finish = async move {
            let _consuming = pq.consume_lock.lock().await;
            if let Err(e) = this.store.persist(&pq.mq).await {
                debug!(group = %this.group, topic = %pq.mq.topic, queue_id = pq.mq.queue_id, error = %e, "offset commit on removal failed");
            }
            this.store.remove(&pq.mq);
            if pq.is_locked() {
                if let Err(e) =
                    this.api.unlock_batch(&this.group, &pq.mq.broker_name, std::slice::from_ref(&pq.mq), false).await
                {
                    debug!(group = %this.group, topic = %pq.mq.topic, queue_id = pq.mq.queue_id, error = %e, "unlock failed");
                }
                pq.set_locked(false);
            }
        };
        // A long batch must not hold up the rebalance: finish in the background.
        let mut finish = Box::pin(finish);
        if tokio::time::timeout(Duration::from_secs(1), &mut finish).await.is_err() {
            tokio::spawn(finish);
        }
    }

    /// The start offset of a queue this member just got (§12.6).
    pub(super) async fn compute_start_offset(&self, mq: &MessageQueue) -> Result<i64> {
        if let Some(o) = self.store.read_from_store(mq).await? {
            if o >= 0 {
                return Ok(o);
            }
        }
        let retry = topic::is_retry_topic(&mq.topic);
        match self.from_where {
            ConsumeFromWhere::FirstOffset => Ok(0),
            ConsumeFromWhere::Timestamp if retry => self.api.max_offset(mq).await,
            ConsumeFromWhere::Timestamp => self.api.search_offset(mq, self.consume_timestamp).await,
            // LAST_OFFSET and the deprecated values Java treats as it.
            _ if retry => Ok(0),
            _ => self.api.max_offset(mq).await,
        }
    }

    pub(super) async fn lock_all(self: &Arc<Self>) {
        let pqs: Vec<Arc<ProcessQueue>> = self.table.lock().values().cloned().collect();
        let mut by_broker: BTreeMap<String, Vec<Arc<ProcessQueue>>> = BTreeMap::new();
        for pq in pqs {
            by_broker.entry(pq.mq.broker_name.clone()).or_default().push(pq);
        }
        for (broker, pqs) in by_broker {
            let mqs: Vec<MessageQueue> = pqs.iter().map(|p| p.mq.clone()).collect();
            match self.api.lock_batch(&self.group, &broker, &mqs).await {
                Ok(ok) => {
                    for pq in pqs {
                        let held = ok.contains(&pq.mq);
                        if !held && pq.is_locked() {
                            warn!(group = %self.group, topic = %pq.mq.topic, queue_id = pq.mq.queue_id, "queue lock lost");
                        }
                        pq.set_locked(held);
                    }
                }
                Err(e) => debug!(group = %self.group, broker_name = %broker, error = %e, "lock refresh failed"),
            }
        }
    }

    pub(super) async fn lock_one(&self, pq: &ProcessQueue) -> bool {
        match self.api.lock_batch(&self.group, &pq.mq.broker_name, std::slice::from_ref(&pq.mq)).await {
            Ok(ok) => {
                let held = ok.contains(&pq.mq);
                pq.set_locked(held);
                held
            }
            Err(e) => {
                debug!(group = %self.group, topic = %pq.mq.topic, queue_id = pq.mq.queue_id, error = %e, "lock failed");
                false
            }
        }
    }
}
