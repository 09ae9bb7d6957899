// PERF-CRITICAL PATH: the arrival hook runs for every message on the store thread
// that dispatches it (the commit-log writer, or the flusher with SYNC_FLUSH), inside
// the acknowledgement path of every send.
//! Long polling's bookkeeping (RocketMQ's `PullRequestHoldService`): which pulls are
//! parked on which queue, and waking them.
//!
//! A pull that finds nothing and allows suspension parks instead of answering
//! PULL_NOT_FOUND (which would make clients spin): the pull processor takes a
//! [`Parked`] ticket and waits on it, inside the request's own task, until
//! (a) an arrival on that queue, at or after the requested offset, passes the
//! request's filter ([`PullHoldService::on_arrival`], called by the store as it
//! dispatches), (b) the broker shuts down ([`PullHoldService::wake_all`]), or (c) its
//! own deadline or periodic re-check ends the wait. The ticket unregisters itself when
//! dropped, whatever ended the wait.
//!
//! This module holds no tasks and runs no requests: re-running a woken pull is the
//! pull processor's job, so a re-run is guarded like any request (a panic becomes
//! SYSTEM_ERROR) and reuses the header it already decoded.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::{oneshot, Notify};

use crate::filter::prepared::PreparedFilter;

struct Held {
    id: u64,
    offset: i64,
    filter: Arc<PreparedFilter>,
    wake: Option<oneshot::Sender<()>>,
}

/// Parked pulls by topic and queue.
#[derive(Default)]
pub struct PullHoldService {
    /// topic → queue id → parked pulls
    table: Mutex<HashMap<String, HashMap<i32, Vec<Held>>>>,
    next_id: AtomicU64,
    /// Pulls held for a fixed time without arrival wake-ups ([`Delayed`]).
    delayed: AtomicUsize,
    /// Set at shutdown: new parks are woken at once.
    closed: AtomicBool,
    /// Ends fixed-time holds at shutdown.
    closing: Notify,
}

/// A parked pull's registration; unregisters when dropped.
pub struct Parked<'a> {
    service: &'a PullHoldService,
    topic: String,
    queue_id: i32,
    id: u64,
    woken: oneshot::Receiver<()>,
}

impl Parked<'_> {
    /// Resolves when an arrival (or shutdown) wakes this pull. Cancel-safe: it can
    /// be raced against timers in a `select!` loop.
    pub async fn woken(&mut self) {
        // A dropped sender means the entry was removed: woken too.
        let _ = (&mut self.woken).await;
    }
}

impl Drop for Parked<'_> {
    fn drop(&mut self) {
        self.service.remove(&self.topic, self.queue_id, self.id);
    }
}

/// Counts a fixed-time hold while it lives.
struct Delayed<'a>(&'a PullHoldService);

impl Drop for Delayed<'_> {
    fn drop(&mut self) {
        self.0.delayed.fetch_sub(1, Ordering::Relaxed);
    }
}

impl PullHoldService {
    pub fn new() -> Self {
        Self::default()
    }

    /// Pulls waiting now, parked or delayed (the runtime info's `pullHeld`).
    pub fn parked(&self) -> usize {
        let parked: usize = self.table.lock().values().flat_map(|q| q.values()).map(Vec::len).sum();
        parked + self.delayed.load(Ordering::Relaxed)
    }

    /// Registers a pull of `topic`/`queue_id` from `offset` that waits for a message
    /// passing `filter`.
    pub fn park(&self, topic: &str, queue_id: i32, offset: i64, filter: Arc<PreparedFilter>) -> Parked<'_> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        let wake = if self.closed.load(Ordering::Acquire) {
            let _ = tx.send(());
            None
        } else {
            Some(tx)
        };
        self.table.lock().entry(topic.to_owned()).or_default().entry(queue_id).or_default().push(Held {
            id,
            offset,
            filter,
            wake,
        });
        Parked { service: self, topic: topic.to_owned(), queue_id, id, woken: rx }
    }

    /// Holds a pull for `hold`, ignoring arrivals (a closed queue of an expanded
    /// ordered topic, a paused plugin filter), counted in [`Self::parked`]; ends early
    /// at shutdown.
    pub async fn hold_for(&self, hold: Duration) {
        let _counted = Delayed(self);
        self.delayed.fetch_add(1, Ordering::Relaxed);
        let closing = self.closing.notified();
        if self.closed.load(Ordering::Acquire) {
            return;
        }
        tokio::select! {
            _ = closing => {}
            _ = tokio::time::sleep(hold) => {}
        }
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

    /// Wakes the parked pulls for which `readable(topic, queue_id, offset)` holds:
    /// after the store's read limit rose, those whose next record it released.
    pub fn wake_readable(&self, readable: impl Fn(&str, i32, i64) -> bool) {
        // `readable` reads the store: never called under this table's lock, which
        // the store's dispatching thread takes for arrivals.
        let parked: Vec<(String, i32, i64)> = {
            let t = self.table.lock();
            t.iter()
                .flat_map(|(topic, queues)| queues.iter().map(move |(q, list)| (topic, *q, list)))
                .flat_map(|(topic, q, list)| {
                    list.iter().filter(|h| h.wake.is_some()).map(move |h| (topic.clone(), q, h.offset))
                })
                .collect()
        };
        let ready: Vec<(String, i32, i64)> = parked.into_iter().filter(|(t, q, o)| readable(t, *q, *o)).collect();
        if ready.is_empty() {
            return;
        }
        let mut t = self.table.lock();
        for (topic, queue_id, offset) in ready {
            let Some(list) = t.get_mut(&topic).and_then(|q| q.get_mut(&queue_id)) else { continue };
            for h in list.iter_mut().filter(|h| h.offset <= offset) {
                if let Some(w) = h.wake.take() {
                    let _ = w.send(());
                }
            }
        }
    }

    /// Wakes every parked pull and every later one (shutdown): they answer with
    /// what they find instead of holding the server's grace period.
    pub fn wake_all(&self) {
        self.closed.store(true, Ordering::Release);
        self.closing.notify_waiters();
        let mut t = self.table.lock();
        for h in t.values_mut().flat_map(|q| q.values_mut()).flatten() {
            if let Some(w) = h.wake.take() {
                let _ = w.send(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filter::MessageFilter;

    fn any() -> Arc<PreparedFilter> {
        Arc::new(PreparedFilter::new(MessageFilter::All))
    }

    #[tokio::test]
    async fn an_arrival_at_or_after_the_offset_wakes_and_the_ticket_unregisters() {
        let holds = PullHoldService::new();
        let mut early = holds.park("t", 0, 5, any());
        let mut late = holds.park("t", 0, 9, any());
        assert_eq!(holds.parked(), 2);
        holds.on_arrival("t", 0, 7, 0, b"");
        early.woken().await;
        let still = tokio::time::timeout(std::time::Duration::from_millis(1), late.woken()).await;
        assert!(still.is_err(), "an arrival before the requested offset must not wake");
        drop(early);
        assert_eq!(holds.parked(), 1);
        drop(late);
        assert_eq!(holds.parked(), 0);
    }

    #[tokio::test]
    async fn a_raised_read_limit_wakes_the_pulls_it_released() {
        let holds = PullHoldService::new();
        let mut released = holds.park("t", 0, 3, any());
        let mut also = holds.park("t", 0, 2, any());
        let mut held = holds.park("t", 0, 8, any());
        let mut other = holds.park("u", 1, 3, any());
        // Offsets up to 5 of t/0 readable now.
        holds.wake_readable(|topic, q, offset| topic == "t" && q == 0 && offset <= 5);
        released.woken().await;
        also.woken().await;
        for p in [&mut held, &mut other] {
            let still = tokio::time::timeout(std::time::Duration::from_millis(1), p.woken()).await;
            assert!(still.is_err(), "a pull whose next record is still held back must not wake");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_fixed_time_hold_is_counted_while_it_lasts() {
        let holds = Arc::new(PullHoldService::new());
        let h = holds.clone();
        let task = tokio::spawn(async move { h.hold_for(std::time::Duration::from_secs(1)).await });
        tokio::task::yield_now().await;
        assert_eq!(holds.parked(), 1);
        task.await.unwrap();
        assert_eq!(holds.parked(), 0);
    }

    #[tokio::test]
    async fn shutdown_wakes_parked_and_later_pulls() {
        let holds = PullHoldService::new();
        let mut parked = holds.park("t", 1, 0, any());
        holds.wake_all();
        parked.woken().await;
        let mut later = holds.park("t", 1, 0, any());
        later.woken().await;
        assert_eq!(holds.parked(), 2);
        drop((parked, later));
        assert_eq!(holds.parked(), 0);
        // A fixed-time hold ends at once after shutdown.
        tokio::time::timeout(std::time::Duration::from_secs(5), holds.hold_for(std::time::Duration::from_secs(60)))
            .await
            .expect("a hold after shutdown ends at once");
    }
}
