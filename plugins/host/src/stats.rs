//! Counters per plugin: calls, records, errors by kind, fallbacks, breaker rejections,
//! latency (sum and a log2 histogram over the timed calls), reloads.
//!
//! All counters are relaxed atomics bumped once per call (never per message), so they
//! cost a few nanoseconds on the hot path. Latency is sampled: reading the clock twice
//! cost more than everything else the registry does around a native call (~28 ns on a
//! 32-message batch), so one call in [`TIME_ONE_IN`] is timed — and every call while
//! the plugin's breaker is counting failures. Exporters read a [`StatsSnapshot`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use plugin_api::PluginErrorKind;

/// One call in this many is timed for the latency histogram (the first call of each
/// plugin included).
pub const TIME_ONE_IN: u64 = 8;

/// Number of latency buckets. Bucket `i` counts calls that took `< 2^i` microseconds
/// (bucket 0: under 1 µs); the last bucket is open-ended (≥ ~8.4 s).
pub const LATENCY_BUCKETS: usize = 24;

#[derive(Debug, Default)]
pub(crate) struct PluginStats {
    calls: AtomicU64,
    records: AtomicU64,
    errors: [AtomicU64; PluginErrorKind::COUNT],
    fallbacks: AtomicU64,
    breaker_rejections: AtomicU64,
    breaker_trips: AtomicU64,
    latency_ns: AtomicU64,
    latency: [AtomicU64; LATENCY_BUCKETS],
    reloads: AtomicU64,
    reload_failures: AtomicU64,
}

impl PluginStats {
    /// Counts a call of `records` records; returns whether to time it (its number is a
    /// multiple of [`TIME_ONE_IN`]).
    pub(crate) fn record_call(&self, records: usize) -> bool {
        self.records.fetch_add(records as u64, Ordering::Relaxed);
        self.calls.fetch_add(1, Ordering::Relaxed).is_multiple_of(TIME_ONE_IN)
    }

    /// Adds a timed call's latency.
    pub(crate) fn record_latency(&self, elapsed: Duration) {
        let ns = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.latency_ns.fetch_add(ns, Ordering::Relaxed);
        let us = ns / 1000;
        let bucket = if us == 0 { 0 } else { (64 - us.leading_zeros() as usize).min(LATENCY_BUCKETS - 1) };
        self.latency[bucket].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn record_error(&self, kind: PluginErrorKind) {
        self.errors[kind as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn record_fallback(&self) {
        self.fallbacks.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn record_breaker_rejection(&self) {
        self.breaker_rejections.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn record_breaker_trip(&self) {
        self.breaker_trips.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn record_reload(&self, ok: bool) {
        if ok { &self.reloads } else { &self.reload_failures }.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> StatsSnapshot {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let latency_buckets: [u64; LATENCY_BUCKETS] = std::array::from_fn(|i| l(&self.latency[i]));
        StatsSnapshot {
            calls: l(&self.calls),
            timed_calls: latency_buckets.iter().sum(),
            records: l(&self.records),
            errors: std::array::from_fn(|i| l(&self.errors[i])),
            fallbacks: l(&self.fallbacks),
            breaker_rejections: l(&self.breaker_rejections),
            breaker_trips: l(&self.breaker_trips),
            latency_sum: Duration::from_nanos(l(&self.latency_ns)),
            latency_buckets,
            reloads: l(&self.reloads),
            reload_failures: l(&self.reload_failures),
        }
    }
}

/// A point-in-time copy of a plugin's counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// Calls that reached the plugin (not those rejected by the breaker).
    pub calls: u64,
    /// Records (messages, units, queues) passed in those calls.
    pub records: u64,
    /// Failed calls by [`PluginErrorKind`] (index with `kind as usize`), including
    /// breaker rejections under `Unavailable`.
    pub errors: [u64; PluginErrorKind::COUNT],
    /// Calls (or messages) answered by the failure policy instead of the plugin.
    pub fallbacks: u64,
    /// Calls refused because the breaker was open.
    pub breaker_rejections: u64,
    /// Times the breaker opened.
    pub breaker_trips: u64,
    /// Calls whose latency was measured: the sample the two latency fields describe
    /// (see [`TIME_ONE_IN`]).
    pub timed_calls: u64,
    /// Total time spent in the timed calls.
    pub latency_sum: Duration,
    /// Log2 latency histogram of the timed calls ([`LATENCY_BUCKETS`]).
    pub latency_buckets: [u64; LATENCY_BUCKETS],
    /// Successful reloads.
    pub reloads: u64,
    /// Failed reloads (the previous version kept serving).
    pub reload_failures: u64,
}

impl StatsSnapshot {
    /// Failed calls of one kind.
    pub fn errors_of(&self, kind: PluginErrorKind) -> u64 {
        self.errors[kind as usize]
    }

    /// All failed calls.
    pub fn total_errors(&self) -> u64 {
        self.errors.iter().sum()
    }

    /// Upper bound of the latency quantile `q` (0..=1) from the histogram (a sample of
    /// the calls).
    pub fn latency_quantile(&self, q: f64) -> Duration {
        let total: u64 = self.latency_buckets.iter().sum();
        if total == 0 {
            return Duration::ZERO;
        }
        let want = ((total as f64) * q.clamp(0.0, 1.0)).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, n) in self.latency_buckets.iter().enumerate() {
            seen += n;
            if seen >= want {
                return Duration::from_micros(1u64 << i);
            }
        }
        Duration::from_micros(1u64 << (LATENCY_BUCKETS - 1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_by_power_of_two_micros() {
        let s = PluginStats::default();
        for t in [Duration::from_nanos(500), Duration::from_micros(3), Duration::from_millis(5)] {
            s.record_call(10);
            s.record_latency(t);
        }
        s.record_error(PluginErrorKind::Timeout);
        let snap = s.snapshot();
        assert_eq!((snap.calls, snap.timed_calls), (3, 3));
        assert_eq!(snap.records, 30);
        assert_eq!(snap.latency_buckets[0], 1);
        assert_eq!(snap.latency_buckets[2], 1); // 3 µs < 4 µs
        assert_eq!(snap.latency_buckets[13], 1); // 5000 µs < 8192 µs
        assert_eq!(snap.errors_of(PluginErrorKind::Timeout), 1);
        assert_eq!(snap.latency_quantile(0.5), Duration::from_micros(4));
        assert_eq!(snap.latency_quantile(1.0), Duration::from_micros(8192));
    }

    #[test]
    fn one_call_in_eight_is_timed_starting_with_the_first() {
        let s = PluginStats::default();
        let timed: Vec<bool> = (0..17).map(|_| s.record_call(1)).collect();
        let want: Vec<bool> = (0..17).map(|i| i % TIME_ONE_IN == 0).collect();
        assert_eq!(timed, want);
        assert_eq!(timed.iter().filter(|t| **t).count(), 3);
        assert_eq!(s.snapshot().calls, 17);
    }
}
