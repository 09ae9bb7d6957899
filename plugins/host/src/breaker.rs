//! Circuit breaker per plugin: closed → open after N consecutive failures → half-open
//! (one probe) after a cool-down → closed on success, open again (twice as long) on
//! failure.
//!
//! The closed state's fast path is two relaxed atomic loads per call; the mutex is only
//! taken while failing or open.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::config::BreakerConfig;

/// The breaker's state, as shown in status and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Calls go to the plugin.
    Closed,
    /// Calls are answered by the failure policy until the cool-down ends.
    Open,
    /// The cool-down ended; the next call is a probe.
    HalfOpen,
}

impl BreakerState {
    /// Lowercase label.
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }
}

#[derive(Debug)]
struct Open {
    until: Instant,
    cooldown: Duration,
    probing: bool,
}

#[derive(Debug)]
pub(crate) struct Breaker {
    config: BreakerConfig,
    consecutive: AtomicU32,
    tripped: AtomicBool,
    open: Mutex<Option<Open>>,
}

impl Breaker {
    pub(crate) fn new(config: BreakerConfig) -> Breaker {
        Breaker { config, consecutive: AtomicU32::new(0), tripped: AtomicBool::new(false), open: Mutex::new(None) }
    }

    /// Whether a call may go to the plugin now.
    pub(crate) fn allow(&self) -> bool {
        if !self.tripped.load(Ordering::Relaxed) {
            return true;
        }
        let mut open = self.open.lock();
        match open.as_mut() {
            None => true,
            Some(o) if o.probing => false,
            Some(o) if Instant::now() >= o.until => {
                o.probing = true;
                true
            }
            Some(_) => false,
        }
    }

    /// Whether no failure is being counted (closed, no consecutive failures): the
    /// common case, where a call needs no closer watching.
    pub(crate) fn is_quiet(&self) -> bool {
        self.consecutive.load(Ordering::Relaxed) == 0 && !self.tripped.load(Ordering::Relaxed)
    }

    pub(crate) fn on_success(&self) {
        if self.consecutive.load(Ordering::Relaxed) == 0 && !self.tripped.load(Ordering::Relaxed) {
            return;
        }
        let mut open = self.open.lock();
        self.consecutive.store(0, Ordering::Relaxed);
        *open = None;
        self.tripped.store(false, Ordering::Relaxed);
    }

    /// Records a failure; returns true when this failure opened the breaker.
    pub(crate) fn on_failure(&self) -> bool {
        let n = self.consecutive.fetch_add(1, Ordering::Relaxed) + 1;
        let mut open = self.open.lock();
        match open.as_mut() {
            Some(o) if o.probing => {
                o.cooldown = (o.cooldown * 2).min(self.config.max_cooldown);
                o.until = Instant::now() + o.cooldown;
                o.probing = false;
                true
            }
            Some(_) => false,
            None if n >= self.config.failures => {
                *open = Some(Open {
                    until: Instant::now() + self.config.cooldown,
                    cooldown: self.config.cooldown,
                    probing: false,
                });
                self.tripped.store(true, Ordering::Relaxed);
                true
            }
            None => false,
        }
    }

    pub(crate) fn state(&self) -> BreakerState {
        match self.open.lock().as_ref() {
            None => BreakerState::Closed,
            Some(o) if o.probing || Instant::now() >= o.until => BreakerState::HalfOpen,
            Some(_) => BreakerState::Open,
        }
    }

    pub(crate) fn reset(&self) {
        let mut open = self.open.lock();
        *open = None;
        self.consecutive.store(0, Ordering::Relaxed);
        self.tripped.store(false, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_half_opens_and_closes() {
        let b = Breaker::new(BreakerConfig {
            failures: 3,
            cooldown: Duration::from_millis(30),
            max_cooldown: Duration::from_secs(1),
        });
        assert!(b.allow());
        assert!(!b.on_failure());
        b.on_success();
        assert!(!b.on_failure());
        assert!(!b.on_failure());
        assert!(b.on_failure(), "third consecutive failure opens");
        assert_eq!(b.state(), BreakerState::Open);
        assert!(!b.allow());
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(b.state(), BreakerState::HalfOpen);
        assert!(b.allow(), "one probe");
        assert!(!b.allow(), "only one probe at a time");
        assert!(b.on_failure(), "failed probe reopens");
        assert!(!b.allow());
        std::thread::sleep(Duration::from_millis(70));
        assert!(b.allow());
        b.on_success();
        assert_eq!(b.state(), BreakerState::Closed);
        assert!(b.allow());
    }
}
