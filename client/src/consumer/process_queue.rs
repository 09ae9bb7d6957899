//! [`ProcessQueue`]: a push consumer's state for one assigned queue — messages
//! pulled but not yet consumed, the offset that may be committed, and, for orderly
//! consumption, the broker lock (RocketMQ's `ProcessQueue`).
//!
//! Invariants:
//! * the committable offset is the smallest offset still cached, or one past the
//!   largest offset ever cached when nothing is left: a message is never
//!   committed before every message before it was consumed;
//! * once the queue is dropped with frozen offsets (reset by an administrator,
//!   offset illegal, reassigned in concurrent mode), no commit from work still in
//!   flight reaches the offset store: the check and the store update happen under
//!   the same lock that `drop_queue` takes;
//! * orderly: at most one consume task per queue (`State::consuming`), and
//!   `consume_lock` is held while the listener runs, so whoever releases the
//!   broker lock can wait for the batch in progress to commit first.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;

use common::route::MessageQueue;
use common::MessageExt;

use crate::consumer::offset_store::OffsetStore;

/// How long a lock granted by the broker is trusted without a refresh
/// (`rocketmq.client.rebalance.lockMaxLiveTime`, 30 s; brokers expire at 60 s).
pub const LOCK_MAX_LIVE_TIME: Duration = Duration::from_secs(30);

#[derive(Default)]
struct State {
    /// Concurrent mode: body size of each message pulled and not yet consumed,
    /// by queue offset (the messages themselves travel with their consume task).
    pending: BTreeMap<i64, usize>,
    /// Orderly: pulled, not yet taken, by queue offset.
    msgs: BTreeMap<i64, MessageExt>,
    /// Orderly: the batch the listener has now.
    consuming: BTreeMap<i64, MessageExt>,
    /// Body bytes of `pending`, `msgs` and `consuming`.
    bytes: usize,
    /// Largest queue offset ever cached.
    max_offset: Option<i64>,
    /// Orderly: a consume task is running for this queue.
    consume_task: bool,
    dropped: bool,
    frozen: bool,
}

pub(crate) struct ProcessQueue {
    pub mq: MessageQueue,
    /// Stops the queue's pull loop (a child of the consumer's token).
    pub cancel: CancellationToken,
    state: Mutex<State>,
    locked: AtomicBool,
    last_lock: Mutex<Option<Instant>>,
    /// Orderly: held while the listener runs.
    pub consume_lock: tokio::sync::Mutex<()>,
}

impl ProcessQueue {
    pub fn new(mq: MessageQueue, cancel: CancellationToken) -> Self {
        Self {
            mq,
            cancel,
            state: Mutex::default(),
            locked: AtomicBool::new(false),
            last_lock: Mutex::new(None),
            consume_lock: tokio::sync::Mutex::new(()),
        }
    }

    pub fn is_dropped(&self) -> bool {
        self.state.lock().dropped
    }

    /// Stops the queue: no more pulls, no more batches start. With `freeze_offsets`
    /// nothing in flight may commit any more.
    pub fn drop_queue(&self, freeze_offsets: bool) {
        {
            let mut s = self.state.lock();
            s.dropped = true;
            s.frozen |= freeze_offsets;
            s.msgs.clear();
            s.pending.clear();
            s.bytes = s.consuming.values().map(|m| m.body.len()).sum();
        }
        self.cancel.cancel();
    }

    /// (message count, body bytes) cached, for flow control.
    pub fn cached(&self) -> (usize, usize) {
        let s = self.state.lock();
        (s.pending.len() + s.msgs.len() + s.consuming.len(), s.bytes)
    }

    /// Concurrent mode: records pulled messages as in flight.
    pub fn put_pending(&self, msgs: &[MessageExt]) {
        let mut s = self.state.lock();
        if s.dropped {
            return;
        }
        for m in msgs {
            if s.pending.insert(m.queue_offset, m.body.len()).is_none() {
                s.bytes += m.body.len();
            }
            s.max_offset = Some(s.max_offset.map_or(m.queue_offset, |o| o.max(m.queue_offset)));
        }
    }

    /// Orderly: caches pulled messages. Returns true when the caller must start a
    /// consume task (none is running).
    pub fn put(&self, msgs: &[MessageExt]) -> bool {
        let mut s = self.state.lock();
        if s.dropped {
            return false;
        }
        for m in msgs {
            if s.msgs.insert(m.queue_offset, m.clone()).is_none() {
                s.bytes += m.body.len();
            }
            s.max_offset = Some(s.max_offset.map_or(m.queue_offset, |o| o.max(m.queue_offset)));
        }
        if !s.consume_task && !s.msgs.is_empty() {
            s.consume_task = true;
            return true;
        }
        false
    }

    /// Concurrent mode: forgets consumed messages and commits the new offset to
    /// `store` (increase only) unless the queue is frozen or dropped.
    pub fn remove(&self, offsets: &[i64], store: &OffsetStore) {
        let mut s = self.state.lock();
        let had_msgs = !s.pending.is_empty();
        for o in offsets {
            if let Some(size) = s.pending.remove(o) {
                s.bytes -= size;
            }
        }
        if s.dropped || s.frozen || !had_msgs {
            return;
        }
        let offset = match s.pending.keys().next() {
            Some(first) => *first,
            None => s.max_offset.map_or(0, |o| o + 1),
        };
        store.update(&self.mq, offset, true);
    }

    /// After a pull that found nothing new: with nothing cached, the next offset is
    /// committable (messages the filter skipped count as consumed).
    pub fn correct_offset(&self, next_offset: i64, store: &OffsetStore) {
        let s = self.state.lock();
        if !s.dropped && !s.frozen && s.pending.is_empty() && s.msgs.is_empty() && s.consuming.is_empty() {
            store.update(&self.mq, next_offset, true);
        }
    }

    /// Orderly: takes the next `n` messages for the listener. When none is left the
    /// consume task must end: this clears its flag under the same lock `put` uses.
    pub fn take(&self, n: usize) -> Vec<MessageExt> {
        let mut s = self.state.lock();
        let mut out = Vec::with_capacity(n.min(s.msgs.len()));
        while out.len() < n {
            let Some((o, m)) = s.msgs.pop_first() else { break };
            s.consuming.insert(o, m.clone());
            out.push(m);
        }
        if out.is_empty() {
            s.consume_task = false;
        }
        out
    }

    /// Orderly: ends the consume task early (dropped queue, shutdown).
    pub fn end_consume_task(&self) {
        self.state.lock().consume_task = false;
    }

    /// Orderly: the batch was consumed; commits one past its last offset unless
    /// frozen (a queue dropped by a rebalance still commits: it holds the lock
    /// until this batch is done).
    pub fn commit(&self, store: &OffsetStore) {
        let mut s = self.state.lock();
        let Some((&last, _)) = s.consuming.last_key_value() else { return };
        let consumed: usize = s.consuming.values().map(|m| m.body.len()).sum();
        s.bytes -= consumed;
        s.consuming.clear();
        if !s.frozen {
            store.update(&self.mq, last + 1, false);
        }
    }

    /// Orderly: puts the batch back to be consumed again, with the given messages
    /// (their reconsume counts updated).
    pub fn consume_again(&self, msgs: Vec<MessageExt>) {
        let mut s = self.state.lock();
        s.consuming.clear();
        for m in msgs {
            s.msgs.insert(m.queue_offset, m);
        }
    }

    pub fn set_locked(&self, locked: bool) {
        self.locked.store(locked, Ordering::Release);
        if locked {
            *self.last_lock.lock() = Some(Instant::now());
        }
    }

    /// The broker lock is held and was refreshed recently enough.
    pub fn lock_valid(&self) -> bool {
        self.locked.load(Ordering::Acquire) && self.last_lock.lock().is_some_and(|t| t.elapsed() < LOCK_MAX_LIVE_TIME)
    }

    pub fn is_locked(&self) -> bool {
        self.locked.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn msg(offset: i64) -> MessageExt {
        MessageExt {
            topic: "T".into(),
            queue_id: 0,
            flag: 0,
            queue_offset: offset,
            commit_log_offset: 0,
            sys_flag: 0,
            born_timestamp: 0,
            born_host: "127.0.0.1:1".parse().unwrap(),
            store_timestamp: 0,
            store_host: "127.0.0.1:1".parse().unwrap(),
            reconsume_times: 0,
            prepared_transaction_offset: 0,
            body_crc: 0,
            store_size: 0,
            properties: Default::default(),
            body: Bytes::from_static(b"xx"),
        }
    }

    fn store() -> OffsetStore {
        OffsetStore::local(std::env::temp_dir().join("never-written.json"), "G")
    }

    #[test]
    fn commits_the_lowest_unconsumed_offset() {
        let mq = MessageQueue::new("T", "b", 0);
        let pq = ProcessQueue::new(mq.clone(), CancellationToken::new());
        let st = store();
        pq.put_pending(&[msg(10), msg(11), msg(12)]);
        assert_eq!(pq.cached(), (3, 6));
        pq.remove(&[11], &st);
        assert_eq!(st.read(&mq), Some(10), "10 is still in flight");
        pq.remove(&[10], &st);
        assert_eq!(st.read(&mq), Some(12));
        pq.remove(&[12], &st);
        assert_eq!(st.read(&mq), Some(13), "all consumed: one past the largest");
        pq.correct_offset(20, &st);
        assert_eq!(st.read(&mq), Some(20));
        pq.put_pending(&[msg(20)]);
        pq.drop_queue(true);
        pq.remove(&[20], &st);
        pq.correct_offset(30, &st);
        assert_eq!(st.read(&mq), Some(20), "a frozen queue commits nothing");
    }

    #[test]
    fn orderly_takes_batches_in_order_and_commits_after_the_batch() {
        let mq = MessageQueue::new("T", "b", 0);
        let pq = ProcessQueue::new(mq.clone(), CancellationToken::new());
        let st = store();
        assert!(pq.put(&[msg(2), msg(0), msg(1)]), "first put starts a consume task");
        assert!(!pq.put(&[msg(3)]), "a task is already running");
        let batch = pq.take(2);
        assert_eq!(batch.iter().map(|m| m.queue_offset).collect::<Vec<_>>(), [0, 1]);
        pq.consume_again(batch);
        let batch = pq.take(2);
        assert_eq!(batch.iter().map(|m| m.queue_offset).collect::<Vec<_>>(), [0, 1]);
        pq.commit(&st);
        assert_eq!(st.read(&mq), Some(2));
        assert_eq!(pq.take(10).len(), 2);
        pq.commit(&st);
        assert_eq!(st.read(&mq), Some(4));
        assert!(pq.take(10).is_empty());
        assert!(pq.put(&[msg(4)]), "the task ended, a new one must start");
        // A queue dropped by a rebalance still commits the batch in progress.
        let _ = pq.take(1);
        pq.drop_queue(false);
        pq.commit(&st);
        assert_eq!(st.read(&mq), Some(5));
    }
}
