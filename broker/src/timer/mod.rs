//! Timed messages at an arbitrary instant (RocketMQ 5's `TIMER_DELIVER_MS`,
//! `TIMER_DELAY_SEC`, `TIMER_DELAY_MS`).
//!
//! A timed message is stored in the system topic `rmq_sys_wheel_timer` (queue 0)
//! with its real topic and queue in properties; its consume-queue tags code is the
//! delivery time, so the consume queue is the durable timer log. In memory, pending
//! timers sit in a map ordered by delivery time — inserting is O(log n), firing pops
//! only what is due, nothing ever scans the pending set. One task sleeps until the
//! earliest deadline (woken early when an earlier timer arrives) and re-publishes
//! due messages to their real topics, many at a time.
//!
//! Durability: [`state`] (the pending map and its checkpoint). Recovery
//! ([`TimerService::recover`]) must run before the broker accepts sends and after the
//! arrival listener is installed (`Broker::start` does both before serving), so that
//! no timer is both reloaded and reported live (delivered twice) or neither (lost).
//! Taking a message into the timer topic is `reroute::to_timer`.
//!
//! Timed messages are single sends: a SEND_BATCH_MESSAGE carrying timer properties
//! is refused, as batches with a delay level are.

pub mod state;

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use common::properties::keys;
use common::MessageExt;
use store::PutMessage;

use crate::context::BrokerContext;
use crate::outcome::PutOutcome;
use crate::reroute;
use state::Pending;

pub use state::TimerService;

/// Re-publications in flight at once when many timers are due together.
const DELIVERY_CONCURRENCY: usize = 256;
/// Timers taken out of the map per step.
const BATCH: usize = 1024;
/// How often the checkpoint is written.
const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(1);
/// A timer whose re-publication failed is tried again this much later.
const RETRY_AFTER_MS: i64 = 1000;

/// Starts the firing loop and the checkpoint writer (after [`TimerService::recover`]).
pub fn start(ctx: Arc<BrokerContext>, cancel: CancellationToken, tasks: &tokio_util::task::TaskTracker) {
    if ctx.role.is_slave() {
        return;
    }
    let c = ctx.clone();
    let k = cancel.clone();
    tasks.spawn(tracing::Instrument::instrument(fire_loop(c, k), tracing::info_span!("timer")));
    tasks.spawn(tracing::Instrument::instrument(
        async move {
            let mut tick = tokio::time::interval(CHECKPOINT_INTERVAL);
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = tick.tick() => {}
                }
                if let Err(e) = ctx.timers.persist() {
                    tracing::error!(error = %e, "could not write the timer checkpoint");
                }
            }
        },
        tracing::info_span!("timer_checkpoint"),
    ));
}

async fn fire_loop(ctx: Arc<BrokerContext>, cancel: CancellationToken) {
    let timers = &ctx.timers;
    loop {
        let now = common::time::now_ms();
        let due = timers.take_due(now, BATCH);
        if due.is_empty() {
            let wait = timers
                .next_due()
                .map_or(Duration::from_secs(1), |k| Duration::from_millis((k - now).clamp(1, 1000) as u64));
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = timers.wake.notified() => {}
                _ = tokio::time::sleep(wait) => {}
            }
            continue;
        }
        let mut failed: Vec<Pending> = Vec::new();
        for chunk in due.chunks(DELIVERY_CONCURRENCY) {
            let results = futures::future::join_all(chunk.iter().map(|p| deliver(&ctx, *p))).await;
            failed.extend(chunk.iter().zip(results).filter(|(_, ok)| !ok).map(|(p, _)| *p));
        }
        if !failed.is_empty() {
            // Put them back a second later rather than lose them.
            warn!(count = failed.len(), "timed messages could not be re-published; retrying in 1 s");
        }
        timers.finish_batch(&due, &failed, common::time::now_ms() + RETRY_AFTER_MS);
    }
}

/// Re-publishes one timed message to its real topic; false to retry later.
async fn deliver(ctx: &BrokerContext, p: Pending) -> bool {
    let Some(raw) = ctx.store.look_message_by_offset(p.phy_offset) else {
        warn!(offset = p.phy_offset, "timed message no longer in the commit log; dropped");
        return true;
    };
    let Ok(msg) = MessageExt::decode(&raw, false) else {
        warn!(offset = p.phy_offset, "unreadable timed message; dropped");
        return true;
    };
    let mut props = msg.properties.clone();
    let Some(dest) = reroute::real_destination(&props) else {
        warn!(offset = p.phy_offset, "timed message without REAL_TOPIC; dropped");
        return true;
    };
    props.remove(keys::TIMER_DELAY_SEC);
    props.remove(keys::TIMER_DELAY_MS);
    let r = ctx.store.put(PutMessage::from_stored(&msg, dest.topic, dest.queue_id, &props)).await;
    let outcome = PutOutcome::of(r.status, ctx);
    if outcome.is_stored() {
        debug!(offset = p.phy_offset, "timed message delivered");
        true
    } else {
        debug!(offset = p.phy_offset, remark = outcome.remark_str(), "re-publishing a timed message failed");
        false
    }
}
