// PERF-CRITICAL PATH: every message a push consumer receives passes `pull_loop`.
//! The push consumer's pull loops: one task per assigned queue, long-polling the
//! broker and handing what it finds to the listener's side (`dispatch`).
//!
//! Flow control: above `pull_threshold_for_queue` cached messages or
//! `pull_threshold_size_for_queue` cached bytes the loop pauses
//! (`flow_control_delay`). Errors pause `pull_error_delay` (a refusal for an unknown
//! subscription heartbeats first and retries sooner); a "retry" answer that does
//! not move the offset pauses `STALLED_RETRY_DELAY`. OFFSET_ILLEGAL commits the
//! broker's offset and drops the queue until the next rebalance. Messages whose body
//! does not decode are set aside (DLQ in clustering mode) and never dispatched.
//!
//! Invariant: a loop ends when its queue's token is cancelled (queue removed,
//! consumer shut down) and never dispatches after the queue was dropped.

use std::sync::Arc;
use std::time::Duration;

use tracing::{debug, error, warn, Instrument};

use common::route::MessageQueue;
use common::subscription::{MessageModel, SubscriptionData};
use common::{MessageExt, ResponseCode};

use super::{pause, Inner, Listener};
use crate::consumer::process_queue::ProcessQueue;
use crate::consumer::pull_api::{PullRequest, PullStatus, UndecodableMessage, STALLED_RETRY_DELAY};

impl Inner {
    pub(super) fn spawn_pull_loop(
        self: &Arc<Self>,
        pq: Arc<ProcessQueue>,
        sub: Arc<SubscriptionData>,
        start: Option<i64>,
    ) {
        let span = tracing::debug_span!("pull", group = %self.group, topic = %pq.mq.topic, queue_id = pq.mq.queue_id);
        tokio::spawn(self.clone().pull_loop(pq, sub, start).instrument(span));
    }

    pub(super) async fn pull_loop(
        self: Arc<Self>,
        pq: Arc<ProcessQueue>,
        sub: Arc<SubscriptionData>,
        start: Option<i64>,
    ) {
        let mut next = start;
        let cancel = pq.cancel.clone();
        while !cancel.is_cancelled() {
            if self.needs_lock() && !pq.lock_valid() && !self.lock_one(&pq).await {
                if !pause(&cancel, self.opts.lock_retry_interval).await {
                    break;
                }
                continue;
            }
            let offset = match next {
                Some(o) => o,
                None => match self.compute_start_offset(&pq.mq).await {
                    Ok(o) => {
                        next = Some(o);
                        o
                    }
                    Err(e) => {
                        warn!(error = %e, "no start offset");
                        if !pause(&cancel, self.opts.pull_error_delay).await {
                            break;
                        }
                        continue;
                    }
                },
            };
            let (count, bytes) = pq.cached();
            if count > self.opts.pull_threshold_for_queue || bytes > self.opts.pull_threshold_size_for_queue {
                if !pause(&cancel, self.opts.flow_control_delay).await {
                    break;
                }
                continue;
            }
            let mut req = PullRequest::new(self.group.clone(), pq.mq.clone(), offset, sub.clone());
            req.max_msg_nums = self.opts.pull_batch_size;
            req.suspend = Some(self.opts.suspend);
            req.timeout = self.opts.pull_timeout;
            req.post_subscription = self.opts.post_subscription_when_pull;
            // Orderly consumers commit only through the offset store: a piggy-backed
            // commit still in flight when the queue moves could land after the
            // final commit and make the next owner repeat messages.
            if self.model == MessageModel::Clustering && !self.is_orderly() {
                req.commit_offset = self.store.read(&pq.mq).filter(|o| *o > 0);
            }
            let pull_started = std::time::SystemTime::now();
            let mut result = tokio::select! {
                _ = cancel.cancelled() => break,
                r = self.api.pull(&req) => r,
            };
            if let Ok(r) = &mut result {
                if !r.undecodable.is_empty() {
                    let undecodable = std::mem::take(&mut r.undecodable);
                    self.tasks.spawn(self.clone().set_aside(pq.mq.clone(), undecodable));
                }
            }
            match result {
                Ok(r) => match r.status {
                    PullStatus::Found => {
                        next = Some(r.next_begin_offset);
                        crate::trace::record_receive(
                            &pq.mq.topic,
                            &self.group,
                            pq.mq.queue_id,
                            pull_started,
                            &r.messages,
                        );
                        self.dispatch(&pq, r.messages);
                    }
                    PullStatus::NoNewMsg | PullStatus::NoMatchedMsg => {
                        next = Some(r.next_begin_offset);
                        pq.correct_offset(r.next_begin_offset, &self.store);
                        if r.is_stalled(offset) && !pause(&cancel, STALLED_RETRY_DELAY).await {
                            break;
                        }
                    }
                    PullStatus::OffsetIllegal => {
                        warn!(
                            offset,
                            next_begin_offset = r.next_begin_offset,
                            "offset illegal; dropping the queue until the next rebalance"
                        );
                        self.offset_illegal(&pq, r.next_begin_offset).await;
                        break;
                    }
                },
                Err(e) => {
                    let code = e.response_code();
                    if matches!(
                        code,
                        Some(ResponseCode::SUBSCRIPTION_NOT_EXIST | ResponseCode::SUBSCRIPTION_NOT_LATEST)
                    ) {
                        // The broker has not seen the subscription yet: tell it and
                        // try again soon.
                        debug!(error = %e, "pull refused; heartbeating");
                        self.instance.send_heartbeat_to_all().await;
                        if !pause(&cancel, self.opts.pull_error_delay.min(Duration::from_millis(200))).await {
                            break;
                        }
                    } else {
                        warn!(error = %e, "pull failed");
                        if !pause(&cancel, self.opts.pull_error_delay).await {
                            break;
                        }
                    }
                }
            }
        }
    }

    /// Messages whose body does not decode never reach the listener: in clustering
    /// mode they go to the group's DLQ, in broadcasting mode (no DLQ) they are
    /// dropped with an error log. Either way they were counted by the pull.
    pub(super) async fn set_aside(self: Arc<Self>, mq: MessageQueue, undecodable: Vec<UndecodableMessage>) {
        match self.model {
            MessageModel::Clustering => {
                self.api.dead_letter_undecodable(&self.group, &mq, &undecodable, self.max_reconsume_times()).await;
            }
            MessageModel::Broadcasting => {
                for u in &undecodable {
                    error!(group = %self.group, topic = %mq.topic, queue_id = mq.queue_id, msg_id = %u.message.msg_id(), error = %u.error, "message body does not decode; dropped (broadcasting has no DLQ)");
                }
            }
        }
    }

    pub(super) async fn offset_illegal(&self, pq: &Arc<ProcessQueue>, next_begin_offset: i64) {
        pq.drop_queue(true);
        self.store.update(&pq.mq, next_begin_offset, false);
        if let Err(e) = self.store.persist(&pq.mq).await {
            debug!(error = %e, "offset commit after OFFSET_ILLEGAL failed");
        }
        if self.model == MessageModel::Clustering {
            self.store.remove(&pq.mq);
        }
        let mut table = self.table.lock();
        if table.get(&pq.mq).is_some_and(|p| Arc::ptr_eq(p, pq)) {
            table.remove(&pq.mq);
        }
    }

    pub(super) fn dispatch(self: &Arc<Self>, pq: &Arc<ProcessQueue>, msgs: Vec<MessageExt>) {
        match &self.listener {
            Listener::Concurrent(l) => {
                pq.put_pending(&msgs);
                if pq.is_dropped() {
                    return;
                }
                let mut msgs = msgs;
                while !msgs.is_empty() {
                    let rest = msgs.split_off(msgs.len().min(self.opts.consume_batch_size));
                    self.tasks.spawn(self.clone().consume_concurrently(pq.clone(), l.clone(), msgs, Duration::ZERO));
                    msgs = rest;
                }
            }
            Listener::Orderly(l) => {
                if pq.put(&msgs) {
                    self.tasks.spawn(self.clone().consume_orderly(pq.clone(), l.clone()));
                }
            }
        }
    }
}
