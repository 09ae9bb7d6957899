// PERF-CRITICAL PATH
//! When a put may be acknowledged. A put is acknowledged once its records are
//! visible to every read path (consume queue, index, lookups by offset), and each
//! further condition it waits for is an [`OffsetWaiters`] list, filled by the writer
//! and resolved by the thread that makes the condition true for a prefix of the
//! commit log.
//!
//! Visibility needs no list with ASYNC_FLUSH: the writer dispatches each batch itself
//! right after publishing it ([`crate::dispatch`]), so its reply to a put is the
//! acknowledgement and the put's task is woken once. With SYNC_FLUSH only durable
//! records may become visible, so the `store-flush` thread dispatches what each sync
//! made durable and then resolves `visible_waiters`: the one wait covers both
//! durability and visibility. A further condition (say, a replica having
//! acknowledged the bytes) is one more list of the same shape, registered by the
//! writer next to this one and resolved by its own thread; the put waits on each in
//! turn under one deadline (`sync_flush_timeout`).
//!
//! Granularity is the writer's batch (group commit): the writer registers one
//! [`Signal`] per batch and list, keyed by the batch's end offset, and hands every put
//! of the batch a [`Waiter`] on it. A put therefore allocates nothing here (its waiter
//! is a handle clone), a batch allocates one channel, and the resolving thread takes
//! the lock once per range it completes, however many puts that range holds.
//!
//! Invariants:
//! * Signals are registered in commit-log order (non-decreasing end offsets) and
//!   before `written` moves past their records, so the resolving thread cannot pass
//!   an offset without finding the signals at or below it.
//! * [`OffsetWaiters::resolve_up_to`] is called only once the condition holds for
//!   everything below its argument.
//! * A signal dropped unfired ([`OffsetWaiters::abandon_up_to`] or
//!   [`OffsetWaiters::abandon`]: the condition cannot be met, or the resolving thread
//!   stopped) ends its puts' waits with `false`; the put then decides from the
//!   offsets it can still check.

use std::collections::VecDeque;

use parking_lot::Mutex;
use tokio::sync::watch;

/// The resolving side of one batch's condition: fired once, for every put of the
/// batch at the same time.
pub(crate) struct Signal(watch::Sender<bool>);

/// A put's side of its batch's condition.
#[derive(Debug, Clone)]
pub(crate) struct Waiter(watch::Receiver<bool>);

/// A new unfired signal and a waiter on it (clone the waiter for each put).
pub(crate) fn signal() -> (Signal, Waiter) {
    let (tx, rx) = watch::channel(false);
    (Signal(tx), Waiter(rx))
}

impl Signal {
    fn fire(self) {
        self.0.send_replace(true);
    }
}

impl Waiter {
    /// Whether the condition already holds (no waiting, no timer needed).
    #[inline]
    pub(crate) fn holds(&self) -> bool {
        *self.0.borrow()
    }

    /// Waits until the condition holds: true, or false when the signal was dropped
    /// unfired.
    pub(crate) async fn wait(mut self) -> bool {
        self.0.wait_for(|&fired| fired).await.is_ok()
    }

    /// [`Waiter::wait`], giving up (false) at `deadline`. Takes no timer when the
    /// condition already holds.
    pub(crate) async fn wait_until(self, deadline: tokio::time::Instant) -> bool {
        self.holds() || tokio::time::timeout_at(deadline, self.wait()).await.unwrap_or(false)
    }
}

/// Signals waiting for a condition to reach their end offset, in commit-log order.
pub(crate) struct OffsetWaiters {
    pending: Mutex<VecDeque<(i64, Signal)>>,
}

impl OffsetWaiters {
    pub(crate) fn new() -> Self {
        Self { pending: Mutex::new(VecDeque::with_capacity(64)) }
    }

    /// Registers `signal` to fire once the condition holds below `end`. Ends must not
    /// decrease from one call to the next.
    pub(crate) fn register(&self, end: i64, signal: Signal) {
        let mut pending = self.pending.lock();
        debug_assert!(pending.back().is_none_or(|(last, _)| *last <= end), "waiters out of commit-log order");
        pending.push_back((end, signal));
    }

    /// Fires every signal whose end is at or below `offset`. Firing only schedules
    /// the waiting tasks, so the lock is held for a few pointer operations per batch.
    pub(crate) fn resolve_up_to(&self, offset: i64) {
        let mut pending = self.pending.lock();
        while pending.front().is_some_and(|(end, _)| *end <= offset) {
            if let Some((_, signal)) = pending.pop_front() {
                signal.fire();
            }
        }
    }

    /// Drops every signal whose end is at or below `offset` unfired: the condition
    /// will not hold for them, and their puts must not wait for their timeout.
    pub(crate) fn abandon_up_to(&self, offset: i64) {
        let mut pending = self.pending.lock();
        while pending.front().is_some_and(|(end, _)| *end <= offset) {
            pending.pop_front();
        }
    }

    /// Drops every pending signal unfired: the thread that resolves them has stopped,
    /// and their puts must not wait for their timeout.
    pub(crate) fn abandon(&self) {
        let dropped = std::mem::take(&mut *self.pending.lock());
        drop(dropped);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
    }

    #[test]
    fn resolves_in_offset_order_up_to_the_offset_only() {
        let waiters = OffsetWaiters::new();
        let handles: Vec<(i64, Waiter)> = [100, 250, 400]
            .into_iter()
            .map(|end| {
                let (s, w) = signal();
                waiters.register(end, s);
                (end, w)
            })
            .collect();
        waiters.resolve_up_to(99);
        assert!(handles.iter().all(|(_, w)| !w.holds()));
        waiters.resolve_up_to(250);
        let held: Vec<i64> = handles.iter().filter(|(_, w)| w.holds()).map(|(e, _)| *e).collect();
        assert_eq!(held, [100, 250]);
        waiters.resolve_up_to(i64::MAX);
        assert!(handles.iter().all(|(_, w)| w.holds()));
    }

    #[test]
    fn every_put_of_a_batch_wakes_even_if_fired_before_it_waits() {
        let waiters = OffsetWaiters::new();
        let (s, w) = signal();
        let puts: Vec<Waiter> = (0..8).map(|_| w.clone()).collect();
        waiters.register(10, s);
        let rt = rt();
        let early = rt.spawn(puts[0].clone().wait());
        rt.block_on(tokio::task::yield_now());
        waiters.resolve_up_to(10);
        assert!(rt.block_on(early).unwrap());
        for w in puts {
            assert!(rt.block_on(w.wait()));
        }
    }

    #[test]
    fn abandoning_up_to_an_offset_leaves_later_signals_pending() {
        let waiters = OffsetWaiters::new();
        let (s1, w1) = signal();
        let (s2, w2) = signal();
        waiters.register(10, s1);
        waiters.register(20, s2);
        waiters.abandon_up_to(15);
        let rt = rt();
        assert!(!rt.block_on(w1.wait()));
        waiters.resolve_up_to(20);
        assert!(rt.block_on(w2.wait()));
    }

    #[test]
    fn abandoned_waiters_end_unfired() {
        let waiters = OffsetWaiters::new();
        let (s, w) = signal();
        waiters.register(10, s);
        waiters.abandon();
        assert!(!w.holds());
        assert!(!rt().block_on(w.wait()));
    }
}
