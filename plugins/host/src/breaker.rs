//! Circuit breaker per plugin: closed → open after N consecutive failures → half-open
//! (one probe) after a cool-down → closed on success, open again (twice as long) on
//! failure.
//!
//! The closed state's fast path is two relaxed atomic loads per call; the mutex is only
//! taken while failing or open, and the clock is read only while opening or open. Time
//! comes from a [`quanta::Clock`] the breaker is given: the registry's call clock (the
//! TSC where the CPU's counter is usable, else the monotonic clock), or a mock clock
//! that tests advance by hand instead of sleeping through a cool-down.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use quanta::{Clock, Instant};

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
    /// Read only while the breaker opens or is open.
    clock: Clock,
}

impl Breaker {
    pub(crate) fn new(config: BreakerConfig, clock: Clock) -> Breaker {
        Breaker {
            config,
            consecutive: AtomicU32::new(0),
            tripped: AtomicBool::new(false),
            open: Mutex::new(None),
            clock,
        }
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
            Some(o) if self.clock.now() >= o.until => {
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
                o.until = self.clock.now() + o.cooldown;
                o.probing = false;
                true
            }
            Some(_) => false,
            None if n >= self.config.failures => {
                *open = Some(Open {
                    until: self.clock.now() + self.config.cooldown,
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
            Some(o) if o.probing || self.clock.now() >= o.until => BreakerState::HalfOpen,
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
        let (clock, time) = Clock::mock();
        let b = Breaker::new(
            BreakerConfig { failures: 3, cooldown: Duration::from_millis(30), max_cooldown: Duration::from_secs(1) },
            clock,
        );
        assert!(b.allow());
        assert!(!b.on_failure());
        b.on_success();
        assert!(!b.on_failure());
        assert!(!b.on_failure());
        assert!(b.on_failure(), "third consecutive failure opens");
        assert_eq!(b.state(), BreakerState::Open);
        assert!(!b.allow());
        time.increment(Duration::from_millis(29));
        assert_eq!(b.state(), BreakerState::Open, "still cooling down");
        assert!(!b.allow());
        time.increment(Duration::from_millis(1));
        assert_eq!(b.state(), BreakerState::HalfOpen);
        assert!(b.allow(), "one probe");
        assert!(!b.allow(), "only one probe at a time");
        assert!(b.on_failure(), "failed probe reopens");
        assert!(!b.allow());
        time.increment(Duration::from_millis(59));
        assert!(!b.allow(), "the cool-down doubled");
        time.increment(Duration::from_millis(1));
        assert!(b.allow());
        b.on_success();
        assert_eq!(b.state(), BreakerState::Closed);
        assert!(b.allow());
    }

    #[test]
    fn the_cool_down_doubles_up_to_its_limit() {
        let (clock, time) = Clock::mock();
        let b = Breaker::new(
            BreakerConfig { failures: 1, cooldown: Duration::from_secs(1), max_cooldown: Duration::from_secs(3) },
            clock,
        );
        assert!(b.on_failure());
        for cooldown in [1, 2, 3, 3] {
            time.increment(Duration::from_secs(cooldown) - Duration::from_nanos(1));
            assert!(!b.allow(), "open for less than {cooldown} s");
            time.increment(Duration::from_nanos(1));
            assert!(b.allow(), "probe after {cooldown} s");
            assert!(b.on_failure(), "failed probe reopens");
        }
        b.reset();
        assert_eq!(b.state(), BreakerState::Closed);
    }
}
