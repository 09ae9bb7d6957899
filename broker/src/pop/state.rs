//! What the POP processors share (see the parent module): the locks that keep two
//! pops of a group off the same queue, the orderly holds, and the wake-ups. Holds no
//! context and runs nothing.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::Notify;

use common::pop;

type QueueKey = (String, String, i32);

/// What the POP processors share: queue locks, orderly holds and wake-ups.
pub struct PopState {
    revive_topic: String,
    /// One lock per queue a group pops; a pop holds it while it reads and checkpoints.
    locks: Mutex<HashMap<QueueKey, Arc<tokio::sync::Mutex<()>>>>,
    order: Mutex<HashMap<QueueKey, OrderHold>>,
    /// Wakes the revive task (a checkpoint or ack was appended).
    pub revive_wake: Notify,
    /// Wakes parked orderly pops (a hold was released).
    pub released: Notify,
    rounds: AtomicU64,
}

/// A queue held by an orderly pop until its messages are acked.
#[derive(Debug, Clone)]
pub struct OrderHold {
    /// Queue offsets delivered, in order.
    pub offsets: Vec<i64>,
    pub acked: HashSet<i64>,
    /// Where the group continues once all are acked.
    pub next: i64,
    /// When the hold ends if not all are acked (ms since the epoch).
    pub deadline: i64,
    pub pop_time: i64,
    /// Earlier deliveries of each offset.
    pub counts: HashMap<i64, i32>,
}

impl OrderHold {
    /// The offset the group's offset may move to: the first one not acked.
    fn committable(&self) -> i64 {
        self.offsets.iter().copied().find(|o| !self.acked.contains(o)).unwrap_or(self.next)
    }
}

/// A queue a pop works on; other pops of the same group wait for it (in turn: the
/// lock is fair), so no pop looks at a queue another is taking messages from.
pub type QueueLock = tokio::sync::OwnedMutexGuard<()>;

impl PopState {
    pub fn new(cluster: &str) -> Self {
        Self {
            revive_topic: pop::revive_topic(cluster),
            locks: Mutex::default(),
            order: Mutex::default(),
            revive_wake: Notify::new(),
            released: Notify::new(),
            rounds: AtomicU64::new(0),
        }
    }

    pub fn revive_topic(&self) -> &str {
        &self.revive_topic
    }

    /// One pop in five looks at the retry topic first (RocketMQ's
    /// `popFromRetryProbability`, 20 %), so retries neither starve nor are starved.
    pub fn retry_first(&self) -> bool {
        self.rounds.fetch_add(1, Ordering::Relaxed).is_multiple_of(5)
    }

    /// Takes the queue's lock, waiting for the pop that holds it.
    pub async fn lock(&self, topic: &str, group: &str, queue_id: i32) -> QueueLock {
        let key = (topic.to_owned(), group.to_owned(), queue_id);
        let lock = self.locks.lock().entry(key).or_default().clone();
        lock.lock_owned().await
    }

    /// `None` while an orderly pop of this queue must wait (a live hold with
    /// messages not acked); otherwise the earlier delivery counts of a hold that
    /// expired.
    pub fn order_gate(&self, topic: &str, group: &str, queue_id: i32, now: i64) -> Option<HashMap<i64, i32>> {
        let key = (topic.to_owned(), group.to_owned(), queue_id);
        let order = self.order.lock();
        match order.get(&key) {
            Some(h) if h.deadline > now && h.acked.len() < h.offsets.len() => None,
            Some(h) => Some(h.counts.iter().filter(|(o, _)| !h.acked.contains(o)).map(|(o, c)| (*o, *c)).collect()),
            None => Some(HashMap::new()),
        }
    }

    pub fn hold(&self, topic: &str, group: &str, queue_id: i32, hold: OrderHold) {
        self.order.lock().insert((topic.to_owned(), group.to_owned(), queue_id), hold);
    }

    /// Acks `offset` of an orderly pop made at `pop_time`; returns the offset the
    /// group may commit, or `None` if no such hold (already expired and taken
    /// again, or released).
    pub fn order_ack(&self, topic: &str, group: &str, queue_id: i32, pop_time: i64, offset: i64) -> Option<i64> {
        let key = (topic.to_owned(), group.to_owned(), queue_id);
        let mut order = self.order.lock();
        let h = order.get_mut(&key)?;
        if h.pop_time != pop_time || !h.offsets.contains(&offset) {
            return None;
        }
        h.acked.insert(offset);
        let commit = h.committable();
        if h.acked.len() == h.offsets.len() {
            order.remove(&key);
            self.released.notify_waiters();
        }
        Some(commit)
    }

    /// Moves an orderly hold's deadline (ChangeInvisibleDuration) and renames it by
    /// `new_pop_time` (the old handle stops naming it); false if no such hold.
    pub fn order_extend(
        &self,
        topic: &str,
        group: &str,
        queue_id: i32,
        pop_time: i64,
        new_pop_time: i64,
        deadline: i64,
    ) -> bool {
        let key = (topic.to_owned(), group.to_owned(), queue_id);
        let mut order = self.order.lock();
        match order.get_mut(&key) {
            Some(h) if h.pop_time == pop_time => {
                h.deadline = deadline;
                h.pop_time = new_pop_time;
                true
            }
            _ => false,
        }
    }

    /// The earliest deadline of a live hold (parked orderly pops re-check then).
    pub fn next_order_deadline(&self) -> Option<i64> {
        self.order.lock().values().map(|h| h.deadline).min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_queue_is_popped_by_one_pop_at_a_time() {
        let state = Arc::new(PopState::new("c"));
        let held = state.lock("t", "g", 0).await;
        let _other = tokio::time::timeout(std::time::Duration::from_secs(5), state.lock("t", "g", 1))
            .await
            .expect("another queue is free");
        let waiting = {
            let state = state.clone();
            tokio::spawn(async move { drop(state.lock("t", "g", 0).await) })
        };
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "the second pop waits for the first");
        drop(held);
        tokio::time::timeout(std::time::Duration::from_secs(5), waiting)
            .await
            .expect("the second pop gets the queue once the first lets go")
            .unwrap();
    }

    #[test]
    fn an_orderly_hold_commits_the_first_unacked_offset_and_releases_when_all_are_acked() {
        let state = PopState::new("c");
        let hold = OrderHold {
            offsets: vec![3, 4, 6],
            acked: HashSet::new(),
            next: 7,
            deadline: i64::MAX,
            pop_time: 100,
            counts: HashMap::new(),
        };
        state.hold("t", "g", 0, hold);
        assert!(state.order_gate("t", "g", 0, 0).is_none(), "held");
        assert_eq!(state.order_ack("t", "g", 0, 99, 3), None, "another pop's handle");
        assert_eq!(state.order_ack("t", "g", 0, 100, 4), Some(3));
        assert_eq!(state.order_ack("t", "g", 0, 100, 3), Some(6));
        assert!(state.order_extend("t", "g", 0, 100, 200, i64::MAX));
        assert_eq!(state.order_ack("t", "g", 0, 100, 6), None, "the old handle no longer names it");
        assert_eq!(state.order_ack("t", "g", 0, 200, 6), Some(7));
        assert!(state.order_gate("t", "g", 0, 0).is_some(), "released");
    }
}
