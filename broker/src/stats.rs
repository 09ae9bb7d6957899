//! Broker counters (the metrics exporter reads them; batch totals, not per-message
//! increments on hot paths).

use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct BrokerStats {
    pub send_requests: AtomicU64,
    pub send_messages: AtomicU64,
    pub send_bytes: AtomicU64,
    pub send_failures: AtomicU64,
    pub pull_requests: AtomicU64,
    pub pull_messages: AtomicU64,
    pub pull_bytes: AtomicU64,
    pub pull_held: AtomicU64,
    pub rejected_busy: AtomicU64,
    /// Transaction decisions (and check-back re-appends) whose store write was
    /// refused, leaving the transaction undecided for a later round.
    pub tx_writes_refused: AtomicU64,
}

impl BrokerStats {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}
