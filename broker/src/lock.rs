//! Queue locks of orderly consumers (RocketMQ's `RebalanceLockManager`).
//!
//! A lock request succeeds for a queue that is free, already held by the same
//! client, or whose holder has not renewed within the expiry; success renews it.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use common::route::MessageQueue;

#[derive(Debug, Clone)]
struct LockEntry {
    client_id: String,
    last_update: Instant,
}

pub struct RebalanceLockManager {
    max_live: Duration,
    table: Mutex<HashMap<String, HashMap<MessageQueue, LockEntry>>>,
}

impl RebalanceLockManager {
    pub fn new(max_live: Duration) -> Self {
        Self { max_live, table: Mutex::new(HashMap::new()) }
    }

    /// Locks what it can of `queues` for `client_id`; returns the queues now held.
    pub fn try_lock_batch(&self, group: &str, queues: &[MessageQueue], client_id: &str) -> BTreeSet<MessageQueue> {
        let now = Instant::now();
        let mut t = self.table.lock();
        let g = t.entry(group.to_owned()).or_default();
        let mut held = BTreeSet::new();
        for mq in queues {
            let grant = match g.get(mq) {
                None => true,
                Some(e) => e.client_id == client_id || now.duration_since(e.last_update) > self.max_live,
            };
            if grant {
                if let Some(prev) = g.get(mq) {
                    if prev.client_id != client_id {
                        tracing::info!(group, queue = %mq, from = %prev.client_id, to = client_id, "expired queue lock taken over");
                    }
                }
                g.insert(mq.clone(), LockEntry { client_id: client_id.to_owned(), last_update: now });
                held.insert(mq.clone());
            }
        }
        held
    }

    /// Releases the queues `client_id` holds among `queues`.
    pub fn unlock_batch(&self, group: &str, queues: &[MessageQueue], client_id: &str) {
        let mut t = self.table.lock();
        if let Some(g) = t.get_mut(group) {
            for mq in queues {
                if g.get(mq).is_some_and(|e| e.client_id == client_id) {
                    g.remove(mq);
                }
            }
        }
    }

    /// Whether `client_id` holds an unexpired lock on `mq`.
    pub fn is_locked_by(&self, group: &str, mq: &MessageQueue, client_id: &str) -> bool {
        let t = self.table.lock();
        t.get(group)
            .and_then(|g| g.get(mq))
            .is_some_and(|e| e.client_id == client_id && e.last_update.elapsed() <= self.max_live)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_is_exclusive_until_expiry() {
        let m = RebalanceLockManager::new(Duration::from_millis(50));
        let q = vec![MessageQueue::new("T", "b", 0), MessageQueue::new("T", "b", 1)];
        assert_eq!(m.try_lock_batch("G", &q, "c1").len(), 2);
        assert!(m.try_lock_batch("G", &q[..1], "c2").is_empty());
        assert_eq!(m.try_lock_batch("G", &q[..1], "c1").len(), 1, "renewal by the holder");
        m.unlock_batch("G", &q[1..], "c1");
        assert_eq!(m.try_lock_batch("G", &q[1..], "c2").len(), 1);
        let deadline = Instant::now() + Duration::from_secs(5);
        while m.is_locked_by("G", &q[0], "c1") && Instant::now() < deadline {
            std::thread::yield_now();
        }
        assert_eq!(m.try_lock_batch("G", &q[..1], "c2").len(), 1, "expired lock taken over");
    }
}
