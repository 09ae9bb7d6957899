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
//! Durability: `config/timerCheckpoint.json` keeps (a) `loaded`, the timer-queue
//! offset up to which entries were put into the map, and (b) `watermark`: every
//! timer due before it has been delivered. The persisted watermark is never above
//! the earliest timer still in the map, so a restart — which reloads every entry of
//! the timer queue due at or after the watermark, plus every entry past `loaded` —
//! loses nothing; at most the deliveries since the last checkpoint repeat after a
//! crash (none after a clean shutdown). Timers taken out of the map for delivery
//! still hold the watermark down (`inflight_min`) until their re-publication is
//! stored, so a checkpoint written mid-batch cannot skip them.
//!
//! Recovery ([`TimerService::recover`]) must run before the broker accepts sends
//! and after the arrival listener is installed (`Broker::start` does both before
//! serving), so that no timer is both reloaded and reported live (delivered twice)
//! or neither (lost).
//!
//! Timed messages are single sends: a SEND_BATCH_MESSAGE carrying timer properties
//! is refused, as batches with a delay level are.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use common::properties::{keys, Properties};
use common::topic::TIMER_TOPIC;
use common::{perm, MessageExt};
use store::PutMessage;

use crate::context::BrokerContext;
use crate::error::Result;
use crate::persist;

/// Re-publications in flight at once when many timers are due together.
const DELIVERY_CONCURRENCY: usize = 256;
/// How often the checkpoint is written.
const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct Checkpoint {
    loaded: i64,
    watermark: i64,
}

/// A pending timer: where its message is.
#[derive(Debug, Clone, Copy)]
struct Pending {
    phy_offset: i64,
}

pub struct TimerService {
    path: PathBuf,
    /// delivery time (ms) → timers due then
    pending: Mutex<BTreeMap<i64, Vec<Pending>>>,
    count: AtomicU64,
    loaded: AtomicI64,
    watermark: AtomicI64,
    wake: Notify,
    delivered: AtomicU64,
    /// Smallest delivery time of the batch being re-published (`i64::MAX` when
    /// none): part of the persisted watermark.
    inflight_min: AtomicI64,
}

/// When a message with these properties should be delivered (absolute ms), if it is
/// a timed message.
pub fn delivery_time(props: &Properties, now_ms: i64) -> Option<i64> {
    if let Some(at) = props.get(keys::TIMER_DELIVER_MS).and_then(|v| v.trim().parse::<i64>().ok()) {
        return Some(at);
    }
    if let Some(s) = props.get(keys::TIMER_DELAY_SEC).and_then(|v| v.trim().parse::<i64>().ok()) {
        return Some(now_ms.saturating_add(s.saturating_mul(1000)));
    }
    props.get(keys::TIMER_DELAY_MS).and_then(|v| v.trim().parse::<i64>().ok()).map(|ms| now_ms.saturating_add(ms))
}

impl TimerService {
    /// # Errors
    /// The checkpoint exists but cannot be read.
    pub fn load(path: PathBuf) -> Result<Self> {
        let cp: Checkpoint = persist::load(&path)?.unwrap_or_default();
        Ok(Self {
            path,
            pending: Mutex::new(BTreeMap::new()),
            count: AtomicU64::new(0),
            loaded: AtomicI64::new(cp.loaded),
            watermark: AtomicI64::new(cp.watermark),
            wake: Notify::new(),
            delivered: AtomicU64::new(0),
            inflight_min: AtomicI64::new(i64::MAX),
        })
    }

    /// Timers waiting.
    pub fn pending_count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// Timers delivered since start.
    pub fn delivered_count(&self) -> u64 {
        self.delivered.load(Ordering::Relaxed)
    }

    /// The dispatcher saw a timer-queue entry (called on the dispatcher thread).
    pub fn on_arrival(&self, queue_offset: i64, deliver_ms: i64, phy_offset: i64) {
        let earliest = {
            let mut p = self.pending.lock();
            p.entry(deliver_ms).or_default().push(Pending { phy_offset });
            p.first_key_value().map(|(k, _)| *k)
        };
        self.count.fetch_add(1, Ordering::Relaxed);
        self.loaded.fetch_max(queue_offset + 1, Ordering::Relaxed);
        if earliest == Some(deliver_ms) {
            self.wake.notify_one();
        }
    }

    /// Reloads pending timers from the timer queue after a restart. Call once,
    /// before the broker accepts sends (see the module doc).
    pub fn recover(&self, ctx: &BrokerContext) {
        let watermark = self.watermark.load(Ordering::Relaxed);
        let loaded = self.loaded.load(Ordering::Relaxed);
        let max = ctx.store.max_offset_in_queue(TIMER_TOPIC, 0);
        let mut from = ctx.store.min_offset_in_queue(TIMER_TOPIC, 0);
        let mut restored = 0u64;
        while from < max {
            let entries = ctx.store.cq_entries(TIMER_TOPIC, 0, from, 4096);
            if entries.is_empty() {
                break;
            }
            for (offset, e) in &entries {
                if e.tags_code >= watermark || *offset >= loaded {
                    self.on_arrival(*offset, e.tags_code, e.phy_offset);
                    restored += 1;
                }
                from = offset + 1;
            }
        }
        self.loaded.fetch_max(max, Ordering::Relaxed);
        if restored > 0 {
            info!(pending = restored, watermark, "timers restored");
        }
    }

    fn checkpoint(&self) -> Checkpoint {
        // Read `loaded` first: an arrival after this read is re-read from the queue
        // on recovery anyway (offset >= loaded).
        let loaded = self.loaded.load(Ordering::Relaxed);
        let first = self.pending.lock().first_key_value().map_or(i64::MAX, |(k, _)| *k);
        let wm = self.watermark.load(Ordering::Relaxed);
        let inflight = self.inflight_min.load(Ordering::Acquire);
        Checkpoint { loaded, watermark: wm.min(first).min(inflight) }
    }

    /// # Errors
    /// I/O failure.
    pub fn persist(&self) -> Result<()> {
        persist::save(&self.path, || self.checkpoint())
    }
}

/// Starts the firing loop and the checkpoint writer (after [`TimerService::recover`]).
pub fn start(ctx: Arc<BrokerContext>, cancel: CancellationToken, tasks: &tokio_util::task::TaskTracker) {
    if !ctx.config.broker_role.is_master() {
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
        let now = crate::now_ms();
        let due: Vec<(i64, Vec<Pending>)> = {
            let mut p = timers.pending.lock();
            let mut out = Vec::new();
            while let Some(entry) = p.first_entry() {
                if *entry.key() > now || out.len() >= 1024 {
                    break;
                }
                let key = *entry.key();
                out.push((key, entry.remove()));
            }
            // Published under the lock: a checkpoint that no longer finds these
            // timers in the map finds their bound here.
            if let Some((first, _)) = out.first() {
                timers.inflight_min.store(*first, Ordering::Release);
            }
            out
        };
        if due.is_empty() {
            let next = timers.pending.lock().first_key_value().map(|(k, _)| *k);
            let wait = next.map_or(Duration::from_secs(1), |k| Duration::from_millis((k - now).clamp(1, 1000) as u64));
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = timers.wake.notified() => {}
                _ = tokio::time::sleep(wait) => {}
            }
            continue;
        }
        let jobs: Vec<(i64, Pending)> = due.iter().flat_map(|(k, list)| list.iter().map(move |p| (*k, *p))).collect();
        let mut retried = 0u64;
        let mut first_failed: Option<i64> = None;
        for chunk in jobs.chunks(DELIVERY_CONCURRENCY) {
            let futs = chunk.iter().map(|(_, p)| deliver(&ctx, *p));
            let results = futures::future::join_all(futs).await;
            let failed: Vec<(i64, Pending)> =
                chunk.iter().zip(results).filter(|(_, ok)| !ok).map(|(j, _)| *j).collect();
            if !failed.is_empty() {
                // Put them back a second later rather than lose them.
                warn!(count = failed.len(), "timed messages could not be re-published; retrying in 1 s");
                retried += failed.len() as u64;
                let min_key = failed.iter().map(|(k, _)| *k).min().unwrap_or(i64::MAX);
                first_failed = Some(first_failed.map_or(min_key, |f| f.min(min_key)));
                let mut pend = timers.pending.lock();
                pend.entry(crate::now_ms() + 1000).or_default().extend(failed.into_iter().map(|(_, p)| p));
            }
        }
        let delivered = jobs.len() as u64 - retried;
        timers.count.fetch_sub(delivered, Ordering::Relaxed);
        timers.delivered.fetch_add(delivered, Ordering::Relaxed);
        // A failed timer sits in the map under a later key than its queue entry's
        // tags code; the watermark must stay at or below that tags code, or a
        // restart would not reload it.
        let reached = match (first_failed, due.last()) {
            (Some(f), _) => Some(f),
            (None, Some((last, _))) => Some(last + 1),
            (None, None) => None,
        };
        if let Some(r) = reached {
            timers.watermark.fetch_max(r, Ordering::Relaxed);
        }
        timers.inflight_min.store(i64::MAX, Ordering::Release);
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
    let mut props = msg.properties;
    let Some(topic) = props.get(keys::REAL_TOPIC).map(str::to_owned) else {
        warn!(offset = p.phy_offset, "timed message without REAL_TOPIC; dropped");
        return true;
    };
    let queue_id: i32 = props.get(keys::REAL_QUEUE_ID).and_then(|q| q.parse().ok()).unwrap_or(0);
    props.remove(keys::TIMER_DELAY_SEC);
    props.remove(keys::TIMER_DELAY_MS);
    let put = PutMessage {
        tags_code: common::hash::tags_code(props.tags()),
        topic,
        queue_id,
        flag: msg.flag,
        sys_flag: msg.sys_flag,
        born_timestamp: msg.born_timestamp,
        born_host: msg.born_host,
        reconsume_times: msg.reconsume_times,
        prepared_transaction_offset: msg.prepared_transaction_offset,
        body: msg.body,
        properties: props.encode(),
    };
    let r = ctx.store.put(put).await;
    if r.status.is_stored() {
        debug!(offset = p.phy_offset, "timed message delivered");
        true
    } else {
        false
    }
}

/// Redirects a timed message into the timer topic; `false` when it is not timed (or
/// already due, which is delivered at once).
pub(crate) fn apply_timer(
    ctx: &BrokerContext,
    props: &mut Properties,
    topic_name: &mut String,
    queue_id: &mut i32,
    now_ms: i64,
) -> Result<bool, String> {
    let Some(at) = delivery_time(props, now_ms) else { return Ok(false) };
    let max = ctx.config.timer_max_delay.as_millis() as i64;
    if at - now_ms > max {
        return Err(format!(
            "the delivery time is {} ms ahead; the maximum is {} ms (timer_max_delay)",
            at - now_ms,
            max
        ));
    }
    if at <= now_ms {
        return Ok(false);
    }
    ctx.topics.create_system(TIMER_TOPIC, 1, perm::READ_WRITE, 0);
    props.insert(keys::TIMER_DELIVER_MS, at.to_string());
    props.insert(keys::REAL_TOPIC, topic_name.clone());
    props.insert(keys::REAL_QUEUE_ID, queue_id.to_string());
    props.remove(keys::DELAY_TIME_LEVEL);
    *topic_name = TIMER_TOPIC.to_owned();
    *queue_id = 0;
    Ok(true)
}
