//! Orderly consumption: one task per queue, one batch at a time, in queue order,
//! and in clustering mode only while this member holds the queue's broker lock.
//!
//! A queue whose lock is held by a previous owner retries every
//! `lock_retry_interval` rather than waiting for the 20 s lock refresh. A batch the
//! listener suspends (or panics on) is consumed again after
//! `suspend_current_queue_time`; once every message of it has had
//! `max_reconsume_times` deliveries (unlimited by default) it goes to the DLQ.
//!
//! Invariants: at most one consume task per queue (the process queue's
//! `consume_task` flag); `consume_lock` is held while the listener runs, so a queue
//! leaving this member can wait for the batch in progress and commit after it.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures::FutureExt;
use tracing::{warn, Instrument};

use common::subscription::MessageModel;

use super::{pause, Inner};
use crate::consumer::listener::{ConsumeContext, ConsumeOrderlyStatus, DynOrderly};
use crate::consumer::process_queue::ProcessQueue;

impl Inner {
    pub(super) async fn consume_orderly(self: Arc<Self>, pq: Arc<ProcessQueue>, listener: Arc<dyn DynOrderly>) {
        let span = tracing::debug_span!("consume_orderly", group = %self.group, topic = %pq.mq.topic, queue_id = pq.mq.queue_id);
        async move {
            loop {
                if pq.is_dropped() || self.cancel.is_cancelled() {
                    pq.end_consume_task();
                    return;
                }
                if self.needs_lock() && !pq.lock_valid() && !self.lock_one(&pq).await {
                    if !pause(&pq.cancel, self.opts.lock_retry_interval).await {
                        pq.end_consume_task();
                        return;
                    }
                    continue;
                }
                let permit = tokio::select! {
                    _ = self.cancel.cancelled() => { pq.end_consume_task(); return; }
                    p = self.permits.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => { pq.end_consume_task(); return; } },
                };
                let guard = pq.consume_lock.lock().await;
                if pq.is_dropped() {
                    pq.end_consume_task();
                    return;
                }
                let mut msgs = pq.take(self.opts.consume_batch_size);
                if msgs.is_empty() {
                    return; // `take` ended the task under the queue's lock.
                }
                self.restore_retry_topic(&mut msgs);
                let ctx = ConsumeContext::new(pq.mq.clone());
                let processing = self.begin_processing(&msgs);
                let status = match AssertUnwindSafe(listener.consume(&msgs, &ctx)).catch_unwind().await {
                    Ok(s) => s,
                    Err(_) => {
                        warn!("orderly listener panicked; suspending the queue");
                        ConsumeOrderlyStatus::SuspendCurrentQueueAMoment
                    }
                };
                self.end_processing(processing, status == ConsumeOrderlyStatus::Success);
                match status {
                    ConsumeOrderlyStatus::Success => {
                        pq.commit(&self.store);
                        drop(guard);
                        drop(permit);
                    }
                    ConsumeOrderlyStatus::SuspendCurrentQueueAMoment => {
                        let max = self.max_reconsume_times();
                        let mut dead_lettered = true;
                        for m in &mut msgs {
                            m.reconsume_times = m.reconsume_times.saturating_add(1);
                            if m.reconsume_times < max || self.model == MessageModel::Broadcasting {
                                dead_lettered = false;
                            }
                        }
                        if dead_lettered {
                            // Every message has had its deliveries: straight to the DLQ.
                            let mut all_sent = true;
                            for m in &msgs {
                                if let Err(e) = self.api.send_back(&pq.mq.broker_name, m, &self.group, -1, max).await {
                                    warn!(msg_id = %m.msg_id(), error = %e, "sending to the DLQ failed");
                                    all_sent = false;
                                }
                            }
                            if all_sent {
                                pq.commit(&self.store);
                                continue;
                            }
                        }
                        pq.consume_again(msgs);
                        drop(guard);
                        drop(permit);
                        if !pause(&pq.cancel, self.opts.suspend_current_queue_time).await {
                            pq.end_consume_task();
                            return;
                        }
                    }
                }
            }
        }
        .instrument(span)
        .await;
    }
}
