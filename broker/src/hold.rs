// PERF-CRITICAL PATH: the arrival hook runs on the store's dispatcher thread for
// every message.
//! Long polling (RocketMQ's `PullRequestHoldService`).
//!
//! A pull that finds nothing and allows suspension is parked here instead of being
//! answered PULL_NOT_FOUND (which would make clients spin). It is re-run when
//! (a) the store's dispatcher reports a message on that queue, at or after the
//! requested offset, that passes the request's filter; (b) a periodic check finds
//! the queue grew (covers anything the filter pre-check rejected); (c) its hold
//! time ends. The re-run never suspends again and answers with the original opaque.
//!
//! Wake-ups are pushed by the dispatcher, not polled: the parked request's task waits
//! on a oneshot that the arrival hook fires.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::oneshot;

use remoting::{Channel, RemotingCommand};

use crate::context::BrokerContext;
use crate::processor::pull::{self, PreparedFilter};

/// How often a parked pull re-checks its queue even without an arrival.
const CHECK_INTERVAL: Duration = Duration::from_secs(5);

struct Held {
    id: u64,
    offset: i64,
    filter: Arc<PreparedFilter>,
    wake: Option<oneshot::Sender<()>>,
}

#[derive(Default)]
pub struct PullHoldService {
    /// topic → queue id → parked pulls
    table: Mutex<HashMap<String, HashMap<i32, Vec<Held>>>>,
    next_id: AtomicU64,
    ctx: OnceLock<Weak<BrokerContext>>,
}

/// Runs a parked pull again (never suspending) and answers it with its opaque.
async fn rerun(ctx: &Arc<BrokerContext>, channel: Channel, request: RemotingCommand) {
    if channel.is_closed() {
        return;
    }
    let opaque = request.opaque;
    let ser = request.serialize_type;
    if let Some(mut resp) = pull::process(ctx, &channel, request, false).await {
        resp.opaque = opaque;
        resp.serialize_type = ser;
        let _ = channel.send_response(resp).await;
    }
}

/// What a parked pull needs to run again.
pub struct HeldPull {
    pub channel: Channel,
    pub request: RemotingCommand,
    pub topic: String,
    pub queue_id: i32,
    pub offset: i64,
    pub filter: Arc<PreparedFilter>,
    pub hold: Duration,
}

impl PullHoldService {
    pub fn new() -> Self {
        Self::default()
    }

    /// Connects the store's arrival events to long polling and to the timers.
    pub fn attach(&self, ctx: Arc<BrokerContext>) {
        let _ = self.ctx.set(Arc::downgrade(&ctx));
        let weak = Arc::downgrade(&ctx);
        ctx.store.set_arrival_listener(Arc::new(move |a: &store::Arrival<'_>| {
            if let Some(c) = weak.upgrade() {
                if a.topic == common::topic::TIMER_TOPIC {
                    c.timers.on_arrival(a.queue_offset, a.tags_code, a.phy_offset);
                }
                c.holds.on_arrival(a.topic, a.queue_id, a.queue_offset, a.tags_code, a.properties);
            }
        }));
    }

    /// Number of parked pulls (for stats and tests).
    pub fn parked(&self) -> usize {
        self.table.lock().values().flat_map(|q| q.values()).map(Vec::len).sum()
    }

    /// Parks `held` until data arrives or its hold time ends, then answers it.
    pub fn park(&self, held: HeldPull) {
        let Some(ctx) = self.ctx.get().and_then(Weak::upgrade) else { return };
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, mut rx) = oneshot::channel();
        {
            let mut t = self.table.lock();
            t.entry(held.topic.clone()).or_default().entry(held.queue_id).or_default().push(Held {
                id,
                offset: held.offset,
                filter: held.filter.clone(),
                wake: Some(tx),
            });
        }
        crate::stats::BrokerStats::add(&ctx.stats.pull_held, 1);
        // A message may have been dispatched between the read that found nothing and
        // the registration above: look once more so it is not missed.
        let grew = ctx.store.max_offset_in_queue(&held.topic, held.queue_id) > held.offset;
        tokio::spawn(async move {
            let deadline = tokio::time::Instant::now() + held.hold;
            if !grew {
                loop {
                    let tick = (tokio::time::Instant::now() + CHECK_INTERVAL).min(deadline);
                    tokio::select! {
                        _ = &mut rx => break,
                        _ = tokio::time::sleep_until(tick) => {
                            if tokio::time::Instant::now() >= deadline
                                || ctx.store.max_offset_in_queue(&held.topic, held.queue_id) > held.offset
                                || held.channel.is_closed()
                            {
                                break;
                            }
                        }
                    }
                }
            }
            ctx.holds.remove(&held.topic, held.queue_id, id);
            rerun(&ctx, held.channel, held.request).await;
        });
    }

    /// Re-runs a pull after `hold`, without arrival wake-ups: a queue of an
    /// expanded ordered topic that is still closed to the group
    /// (`order_expansion`), where arrivals must not make the consumer spin.
    pub fn delay(&self, channel: Channel, request: RemotingCommand, hold: Duration) {
        let Some(ctx) = self.ctx.get().and_then(Weak::upgrade) else { return };
        crate::stats::BrokerStats::add(&ctx.stats.pull_held, 1);
        tokio::spawn(async move {
            tokio::time::sleep(hold).await;
            rerun(&ctx, channel, request).await;
        });
    }

    fn remove(&self, topic: &str, queue_id: i32, id: u64) {
        let mut t = self.table.lock();
        if let Some(queues) = t.get_mut(topic) {
            if let Some(list) = queues.get_mut(&queue_id) {
                list.retain(|h| h.id != id);
                if list.is_empty() {
                    queues.remove(&queue_id);
                }
            }
            if queues.is_empty() {
                t.remove(topic);
            }
        }
    }

    /// The dispatcher's hook: wakes parked pulls of this queue that the new message
    /// satisfies.
    pub fn on_arrival(&self, topic: &str, queue_id: i32, queue_offset: i64, tags_code: i64, properties: &[u8]) {
        let mut t = self.table.lock();
        let Some(list) = t.get_mut(topic).and_then(|q| q.get_mut(&queue_id)) else { return };
        for h in list.iter_mut() {
            if h.wake.is_some() && queue_offset >= h.offset && h.filter.matches_arrival(tags_code, properties) {
                if let Some(w) = h.wake.take() {
                    let _ = w.send(());
                }
            }
        }
    }
}
