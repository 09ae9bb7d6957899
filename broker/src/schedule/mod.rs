//! Delay levels (RocketMQ's `ScheduleMessageService`, `remoting-protocol.md` §12.9).
//!
//! A message with `DELAY` = level sits in `SCHEDULE_TOPIC_XXXX` queue level−1 until
//! its delivery time. One task per level walks that queue in order — a level's
//! deadlines are ordered because every message of the level has the same delay —
//! re-publishing each due message to its real topic and queue, then advancing the
//! level's offset. Progress is persisted to `config/delayOffset.json` every
//! `flush_delay_offset_interval` and on shutdown, so a restart neither loses
//! deliveries nor repeats more than that interval's worth.

pub mod offsets;

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, warn, Instrument};

use common::properties::keys;
use common::topic::SCHEDULE_TOPIC;
use common::MessageExt;
use store::{GetRequest, GetStatus, PutMessage};

use crate::context::BrokerContext;
use crate::outcome::PutOutcome;
use crate::reroute;

/// How long an idle level waits before looking again (RocketMQ: 100 ms).
const IDLE_WAIT: Duration = Duration::from_millis(100);
/// Back-off after a failed re-publish.
const RETRY_WAIT: Duration = Duration::from_secs(1);

/// Starts one delivery task per level and the progress flusher.
pub fn start(ctx: Arc<BrokerContext>, cancel: CancellationToken, tasks: &TaskTracker) {
    if ctx.role.is_slave() {
        return;
    }
    for (level, delay) in ctx.delay_levels.iter() {
        tasks.spawn(
            deliver_level(ctx.clone(), cancel.clone(), level, delay).instrument(tracing::info_span!("schedule", level)),
        );
    }
    let c = ctx.clone();
    tasks.spawn(
        async move {
            let mut tick = tokio::time::interval(c.config.flush_delay_offset_interval);
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = tick.tick() => {}
                }
                if let Err(e) = c.delay_offsets.persist() {
                    tracing::error!(error = %e, "could not persist delay offsets");
                }
            }
        }
        .instrument(tracing::info_span!("schedule_persist")),
    );
}

async fn deliver_level(ctx: Arc<BrokerContext>, cancel: CancellationToken, level: i32, delay: Duration) {
    let queue_id = level - 1;
    let delay_ms = delay.as_millis() as i64;
    loop {
        if cancel.is_cancelled() {
            return;
        }
        let offset = ctx.delay_offsets.get(level);
        let result = ctx.store.get_messages(&GetRequest::new(SCHEDULE_TOPIC, queue_id, offset, 32));
        let wait = match result.status {
            GetStatus::Found => deliver_batch(&ctx, level, delay_ms, &result.messages, &result.queue_offsets).await,
            GetStatus::OffsetTooSmall | GetStatus::OffsetOverflowBadly => {
                warn!(level, offset, next = result.next_begin_offset, "delay offset out of range; correcting");
                ctx.delay_offsets.set(level, result.next_begin_offset);
                None
            }
            GetStatus::NoMatchedMessage | GetStatus::MessageWasRemoving | GetStatus::OffsetFoundNull => {
                if result.next_begin_offset > offset {
                    ctx.delay_offsets.set(level, result.next_begin_offset);
                    None
                } else {
                    Some(IDLE_WAIT)
                }
            }
            _ => Some(IDLE_WAIT),
        };
        if let Some(w) = wait {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(w) => {}
            }
        }
    }
}

/// Delivers the due prefix of `records`; returns how long to wait before the next
/// look (`None` = look again at once).
async fn deliver_batch(
    ctx: &BrokerContext,
    level: i32,
    delay_ms: i64,
    records: &[bytes::Bytes],
    offsets: &[i64],
) -> Option<Duration> {
    for (raw, &queue_offset) in records.iter().zip(offsets) {
        let msg = match MessageExt::decode(raw, false) {
            Ok(m) => m,
            Err(e) => {
                warn!(level, queue_offset, error = %e, "unreadable delayed message skipped");
                ctx.delay_offsets.set(level, queue_offset + 1);
                continue;
            }
        };
        let due = msg.store_timestamp + delay_ms;
        let now = common::time::now_ms();
        if due > now {
            return Some(Duration::from_millis((due - now) as u64).min(Duration::from_secs(1)));
        }
        let Some(put) = time_up(&msg) else {
            warn!(level, queue_offset, "delayed message without REAL_TOPIC skipped");
            ctx.delay_offsets.set(level, queue_offset + 1);
            continue;
        };
        let result = ctx.store.put(put).await;
        if !result.status.is_stored() {
            let outcome = PutOutcome::of(result.status, ctx);
            warn!(
                level,
                queue_offset,
                remark = outcome.remark_str(),
                "re-publishing a delayed message failed; will retry"
            );
            return Some(RETRY_WAIT);
        }
        debug!(level, queue_offset, "delayed message delivered");
        ctx.delay_offsets.set(level, queue_offset + 1);
    }
    None
}

/// The message as it goes to its real topic: `DELAY` removed, same body, flags,
/// born info and UNIQ_KEY (so the msgId survives), new offsets.
fn time_up(msg: &MessageExt) -> Option<PutMessage> {
    let mut props = msg.properties.clone();
    let dest = reroute::real_destination(&props)?;
    props.remove(keys::DELAY_TIME_LEVEL);
    props.remove(keys::WAIT_STORE_MSG_OK);
    Some(PutMessage::from_stored(msg, dest.topic, dest.queue_id, &props))
}
