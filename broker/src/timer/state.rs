//! The timer's state: pending timers ordered by delivery time, and the checkpoint
//! (`config/timerCheckpoint.json`) that makes a restart lose none of them.
//!
//! Durability: the checkpoint keeps (a) `loaded`, the timer-queue offset up to which
//! entries were put into the map, and (b) `watermark`: every timer due before it has
//! been delivered. The persisted watermark is never above the earliest timer still
//! in the map, so a restart — which reloads every entry of the timer queue due at or
//! after the watermark, plus every entry past `loaded` — loses nothing; at most the
//! deliveries since the last checkpoint repeat after a crash (none after a clean
//! shutdown). Timers taken out of the map for delivery still hold the watermark down
//! (`inflight_min`) until their re-publication is stored, so a checkpoint written
//! mid-batch cannot skip them.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tracing::info;

use common::topic::TIMER_TOPIC;
use store::MessageStore;

use crate::error::Result;
use crate::persist;

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct Checkpoint {
    loaded: i64,
    watermark: i64,
}

/// A pending timer: when it is due, and where its message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pending {
    pub deliver_ms: i64,
    pub phy_offset: i64,
}

pub struct TimerService {
    path: PathBuf,
    /// delivery time (ms) → commit-log offsets of the timers due then
    pending: Mutex<BTreeMap<i64, Vec<i64>>>,
    count: AtomicU64,
    loaded: AtomicI64,
    watermark: AtomicI64,
    /// Wakes the firing loop when an earlier timer arrives.
    pub(crate) wake: Notify,
    delivered: AtomicU64,
    /// Smallest delivery time of the batch being re-published (`i64::MAX` when
    /// none): part of the persisted watermark.
    inflight_min: AtomicI64,
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

    /// The store dispatched a timer-queue entry (called on the store thread that
    /// dispatches, so it stays a short lock and a notify).
    pub fn on_arrival(&self, queue_offset: i64, deliver_ms: i64, phy_offset: i64) {
        let earliest = {
            let mut p = self.pending.lock();
            p.entry(deliver_ms).or_default().push(phy_offset);
            p.first_key_value().map(|(k, _)| *k)
        };
        self.count.fetch_add(1, Ordering::Relaxed);
        self.loaded.fetch_max(queue_offset + 1, Ordering::Relaxed);
        if earliest == Some(deliver_ms) {
            self.wake.notify_one();
        }
    }

    /// Reloads pending timers from the timer queue after a restart. Call once,
    /// before the broker accepts sends and after the arrival listener is installed,
    /// so that no timer is both reloaded and reported live (delivered twice) or
    /// neither (lost).
    pub fn recover(&self, store: &MessageStore) {
        let watermark = self.watermark.load(Ordering::Relaxed);
        let loaded = self.loaded.load(Ordering::Relaxed);
        let max = store.max_offset_in_queue(TIMER_TOPIC, 0);
        let mut from = store.min_offset_in_queue(TIMER_TOPIC, 0);
        let mut restored = 0u64;
        while from < max {
            let entries = store.cq_entries(TIMER_TOPIC, 0, from, 4096);
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

    /// Takes up to `max` timers due at `now`, in delivery order, and holds the
    /// watermark at the first of them until [`Self::finish_batch`].
    pub(crate) fn take_due(&self, now: i64, max: usize) -> Vec<Pending> {
        let mut p = self.pending.lock();
        let mut out = Vec::new();
        while let Some(entry) = p.first_entry() {
            if *entry.key() > now || out.len() >= max {
                break;
            }
            let deliver_ms = *entry.key();
            out.extend(entry.remove().into_iter().map(|phy_offset| Pending { deliver_ms, phy_offset }));
        }
        // Published under the lock: a checkpoint that no longer finds these timers
        // in the map finds their bound here.
        if let Some(first) = out.first() {
            self.inflight_min.store(first.deliver_ms, Ordering::Release);
        }
        out
    }

    /// The earliest pending delivery time.
    pub(crate) fn next_due(&self) -> Option<i64> {
        self.pending.lock().first_key_value().map(|(k, _)| *k)
    }

    /// Ends a batch from [`Self::take_due`]: `failed` timers go back into the map,
    /// due at `retry_at`; the rest count as delivered and the watermark moves past
    /// the batch — but never past a failed timer's own delivery time, which is its
    /// queue entry's tags code, or a restart would not reload it.
    pub(crate) fn finish_batch(&self, batch: &[Pending], failed: &[Pending], retry_at: i64) {
        if !failed.is_empty() {
            self.pending.lock().entry(retry_at).or_default().extend(failed.iter().map(|p| p.phy_offset));
        }
        let delivered = (batch.len() - failed.len()) as u64;
        self.count.fetch_sub(delivered, Ordering::Relaxed);
        self.delivered.fetch_add(delivered, Ordering::Relaxed);
        let reached = match (failed.iter().map(|p| p.deliver_ms).min(), batch.last()) {
            (Some(f), _) => Some(f),
            (None, Some(last)) => Some(last.deliver_ms + 1),
            (None, None) => None,
        };
        if let Some(r) = reached {
            self.watermark.fetch_max(r, Ordering::Relaxed);
        }
        self.inflight_min.store(i64::MAX, Ordering::Release);
    }

    fn checkpoint(&self) -> Checkpoint {
        // Read `loaded` first: an arrival after this read is re-read from the queue
        // on recovery anyway (offset >= loaded).
        let loaded = self.loaded.load(Ordering::Relaxed);
        let first = self.next_due().unwrap_or(i64::MAX);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_watermark_never_passes_a_pending_or_failed_timer() {
        let dir = tempfile::tempdir().unwrap();
        let t = TimerService::load(dir.path().join("cp.json")).unwrap();
        t.on_arrival(0, 100, 1000);
        t.on_arrival(1, 200, 2000);
        t.on_arrival(2, 300, 3000);
        let batch = t.take_due(250, 1024);
        assert_eq!(
            batch,
            vec![Pending { deliver_ms: 100, phy_offset: 1000 }, Pending { deliver_ms: 200, phy_offset: 2000 }]
        );
        // Mid-batch the checkpoint holds at the batch's first timer.
        assert_eq!(t.checkpoint().watermark, 0);
        t.finish_batch(&batch, &batch[1..], 1200);
        assert_eq!(t.delivered_count(), 1);
        assert_eq!(t.pending_count(), 2);
        // The failed timer (due 200) keeps the watermark at 200.
        assert_eq!(t.checkpoint().watermark, 200);
        assert_eq!(t.next_due(), Some(300));
        let again = t.take_due(1200, 1024);
        assert_eq!(again.len(), 2);
        t.finish_batch(&again, &[], 0);
        assert_eq!(t.checkpoint().watermark, 1201);
        assert_eq!(t.checkpoint().loaded, 3);
    }
}
