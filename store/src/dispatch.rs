// PERF-CRITICAL PATH
//! The dispatcher (`store-reput` thread, RocketMQ's `ReputMessageService`): reads
//! records back from the commit log, appends their consume-queue entries and index
//! entries, tells the arrival listener, and then acknowledges the puts whose records
//! it has made visible (once per dispatched range, see [`crate::ack`]).
//!
//! Because it works only from the commit log, the same code rebuilds consume queues
//! and the index during recovery ([`dispatch_range`] with `live == false`).
//!
//! Invariants:
//! * It reads up to `written` with ASYNC_FLUSH and up to `flushed` with SYNC_FLUSH,
//!   so with SYNC_FLUSH no consumer ever sees a message that could be lost.
//! * `dispatched` only moves past a record after its consume-queue entry is visible,
//!   so readers that go through consume queues or check `dispatched` never return a
//!   record the dispatcher has not made visible.
//! * A put's visibility signal fires only after `dispatched` has passed its batch, so
//!   an acknowledged message is returned by every read path.
//! * Dispatching is idempotent (consume queues ignore offsets below their max; the
//!   index ignores offsets below its last one), which makes re-dispatch after a crash
//!   safe.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use common::properties::{find_in_encoded, keys};
use common::record::{self, Entry, RecordView};
use common::sysflag::message::{transaction_type, TRANSACTION_PREPARED_TYPE, TRANSACTION_ROLLBACK_TYPE};

use crate::settings::StoreOptions;
use crate::store::Core;
use crate::types::{Arrival, CqEntry};

/// The consume-queue tags code RocketMQ derives from a stored record: the delivery
/// time (`store timestamp + delay`) for `SCHEDULE_TOPIC_XXXX` records with a `DELAY`
/// level, the `TIMER_DELIVER_MS` property for the timer topic, else the Java hash
/// of `TAGS` (0 without a tag).
pub fn derive_tags_code(view: &RecordView<'_>, opts: &StoreOptions) -> i64 {
    let props = std::str::from_utf8(view.properties_raw()).unwrap_or("");
    if view.topic() == common::topic::TIMER_TOPIC {
        if let Some(at) = find_in_encoded(props, keys::TIMER_DELIVER_MS).and_then(|v| v.parse::<i64>().ok()) {
            return at;
        }
    }
    if view.topic() == common::topic::SCHEDULE_TOPIC {
        if let Some(level) = find_in_encoded(props, keys::DELAY_TIME_LEVEL).and_then(|l| l.parse::<i32>().ok()) {
            let delay = opts.delay_levels.delay(level).map_or(1000, |d| d.as_millis() as i64);
            return view.store_timestamp() + delay;
        }
    }
    common::hash::tags_code(find_in_encoded(props, keys::TAGS))
}

/// Tags codes the writer passed along, consumed in commit-log order.
pub(crate) struct TagsFeed {
    local: VecDeque<(i64, i64)>,
}

impl TagsFeed {
    pub(crate) fn new() -> Self {
        Self { local: VecDeque::with_capacity(1024) }
    }

    fn take(&mut self, core: &Core, phy: i64) -> Option<i64> {
        loop {
            while let Some(&(p, t)) = self.local.front() {
                if p < phy {
                    self.local.pop_front();
                    continue;
                }
                if p == phy {
                    self.local.pop_front();
                    return Some(t);
                }
                return None;
            }
            let mut shared = core.pending_tags.lock();
            if shared.is_empty() {
                return None;
            }
            std::mem::swap(&mut *shared, &mut self.local);
        }
    }
}

/// Dispatches every record in `[from, limit)`; returns where it stopped (`limit`, or
/// earlier on a record it cannot parse, which is logged).
pub(crate) fn dispatch_range(core: &Core, from: i64, limit: i64, feed: Option<&mut TagsFeed>) -> (i64, u64) {
    let cl = &core.commit_log;
    let mut pos = from;
    let mut count = 0u64;
    let mut feed = feed;
    'segments: while pos < limit {
        let Some(seg) = cl.segment_for(pos) else {
            tracing::error!(offset = pos, "dispatch position has no commit log segment");
            break;
        };
        let local = (pos - seg.start()) as usize;
        let avail = ((limit - seg.start()) as usize).min(seg.published());
        if avail <= local {
            break;
        }
        let Some(buf) = seg.read(local, avail - local) else {
            break;
        };
        let mut at = 0usize;
        while at < buf.len() {
            match record::scan(&buf[at..], false) {
                Ok(Entry::Record(view)) => {
                    let phy = pos;
                    let tags = feed.as_deref_mut().and_then(|f| f.take(core, phy));
                    dispatch_one(core, &view, phy, tags);
                    let size = view.total_size();
                    at += size;
                    pos += size as i64;
                    count += 1;
                    if count % 64 == 0 {
                        core.set_dispatched(pos);
                    }
                }
                Ok(Entry::Blank(_)) => {
                    pos = seg.end();
                    continue 'segments;
                }
                Err(e) => {
                    tracing::error!(offset = pos, error = %e, "unreadable record in the dispatch range; dispatch stops");
                    core.set_dispatched(pos);
                    return (pos, count);
                }
            }
        }
    }
    core.set_dispatched(pos);
    (pos, count)
}

#[inline]
fn dispatch_one(core: &Core, view: &RecordView<'_>, phy: i64, tags: Option<i64>) {
    let tx = transaction_type(view.sys_flag());
    let topic = view.topic();
    let store_ts = view.store_timestamp();
    if tx != TRANSACTION_PREPARED_TYPE && tx != TRANSACTION_ROLLBACK_TYPE {
        // A delay-level delivery time depends on the store timestamp, which only the
        // writer knows: always derive it from the record.
        let tags = if topic == common::topic::SCHEDULE_TOPIC { None } else { tags };
        let tags_code = tags.unwrap_or_else(|| derive_tags_code(view, &core.settings.opts));
        let cq = core.queue_for(topic, view.queue_id());
        let entry = CqEntry { phy_offset: phy, size: view.total_size() as i32, tags_code };
        match cq.put(view.queue_offset(), entry) {
            Ok(()) => {
                // Cloned out so a listener may replace itself without deadlocking.
                let listener = core.listener.read().clone();
                if let Some(listener) = listener {
                    listener(&Arrival {
                        topic,
                        queue_id: view.queue_id(),
                        queue_offset: view.queue_offset(),
                        tags_code,
                        store_timestamp: store_ts,
                        phy_offset: phy,
                        properties: view.properties_raw(),
                    });
                }
            }
            Err(e) => {
                tracing::error!(topic, queue_id = view.queue_id(), error = %e, "consume queue append failed")
            }
        }
    }
    if tx != TRANSACTION_ROLLBACK_TYPE {
        if let Some(index) = &core.index {
            let props = std::str::from_utf8(view.properties_raw()).unwrap_or("");
            let uniq = find_in_encoded(props, keys::UNIQ_CLIENT_MESSAGE_ID_KEYIDX);
            let words = find_in_encoded(props, keys::KEYS).into_iter().flat_map(|k| k.split(' '));
            if let Err(e) = index.build(topic, uniq.into_iter().chain(words), phy, store_ts) {
                tracing::error!(error = %e, "index append failed");
            }
        }
    }
    core.last_dispatched_ts.store(store_ts, Ordering::Relaxed);
}

/// The `store-reput` thread.
pub(crate) fn run_dispatcher(core: Arc<Core>) {
    let _span = tracing::info_span!("reput").entered();
    let mut feed = TagsFeed::new();
    let mut pos = core.dispatched();
    loop {
        if core.halted() {
            return;
        }
        let cl = &core.commit_log;
        let limit = if core.settings.sync_flush { cl.flushed() } else { cl.written() };
        if pos < limit {
            let (p, _) = dispatch_range(&core, pos, limit, Some(&mut feed));
            core.visible_waiters.resolve_up_to(p);
            if p == pos {
                // Stuck on an unreadable record (logged); nothing sensible to do but
                // wait for shutdown.
                if core.writer_done.load(Ordering::Acquire) {
                    return;
                }
                std::thread::park_timeout(Duration::from_millis(500));
            }
            pos = p;
            continue;
        }
        if core.writer_done.load(Ordering::Acquire) && core.flusher_done.load(Ordering::Acquire) {
            let limit = cl.written();
            if pos >= limit {
                return;
            }
            continue;
        }
        std::thread::park_timeout(Duration::from_millis(100));
    }
}
