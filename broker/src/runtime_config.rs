//! The broker settings an operator may change while the broker runs
//! (UPDATE_BROKER_CONFIG, `ferromq-admin updateBrokerConfig`).
//!
//! Each changeable setting lives here as an atomic, read where it is used; the
//! rest of [`BrokerConfig`] is fixed at start-up, and an update naming one of
//! those is refused whole, with a remark naming the key, rather than accepted
//! and ignored. Changes last until the broker stops: to keep one, put it in the
//! configuration file as well.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::time::Duration;

use config::BrokerConfig;

/// The RocketMQ keys [`RuntimeConfig::apply`] accepts.
pub const CHANGEABLE: &[&str] = &[
    "brokerPermission",
    "rejectTransactionMessage",
    "longPollingEnable",
    "shortPollingTimeMills",
    "enablePropertyFilter",
    "transactionCheckMax",
];

#[derive(Debug)]
pub struct RuntimeConfig {
    broker_permission: AtomicU8,
    reject_transaction_message: AtomicBool,
    long_polling_enable: AtomicBool,
    short_polling_ms: AtomicU64,
    enable_property_filter: AtomicBool,
    transaction_check_max: AtomicU32,
}

/// What an accepted update changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Applied {
    /// RocketMQ keys whose value was set.
    pub keys: Vec<String>,
    /// The broker's permission changed: the name servers must hear of it now.
    pub permission_changed: bool,
}

impl RuntimeConfig {
    pub fn new(cfg: &BrokerConfig) -> Self {
        Self {
            broker_permission: AtomicU8::new(cfg.broker_permission),
            reject_transaction_message: AtomicBool::new(cfg.reject_transaction_message),
            long_polling_enable: AtomicBool::new(cfg.long_polling_enable),
            short_polling_ms: AtomicU64::new(cfg.short_polling_time_mills.as_millis() as u64),
            enable_property_filter: AtomicBool::new(cfg.enable_property_filter),
            transaction_check_max: AtomicU32::new(cfg.transaction_check_max),
        }
    }

    pub fn broker_permission(&self) -> u8 {
        self.broker_permission.load(Ordering::Relaxed)
    }

    pub fn reject_transaction_message(&self) -> bool {
        self.reject_transaction_message.load(Ordering::Relaxed)
    }

    pub fn long_polling_enable(&self) -> bool {
        self.long_polling_enable.load(Ordering::Relaxed)
    }

    pub fn short_polling_time(&self) -> Duration {
        Duration::from_millis(self.short_polling_ms.load(Ordering::Relaxed))
    }

    pub fn enable_property_filter(&self) -> bool {
        self.enable_property_filter.load(Ordering::Relaxed)
    }

    pub fn transaction_check_max(&self) -> u32 {
        self.transaction_check_max.load(Ordering::Relaxed)
    }

    /// The current values under RocketMQ's names, to lay over the start-up
    /// configuration in GET_BROKER_CONFIG's answer.
    pub fn current(&self) -> Vec<(&'static str, String)> {
        vec![
            ("brokerPermission", self.broker_permission().to_string()),
            ("rejectTransactionMessage", self.reject_transaction_message().to_string()),
            ("longPollingEnable", self.long_polling_enable().to_string()),
            ("shortPollingTimeMills", self.short_polling_time().as_millis().to_string()),
            ("enablePropertyFilter", self.enable_property_filter().to_string()),
            ("transactionCheckMax", self.transaction_check_max().to_string()),
        ]
    }

    /// Applies an UPDATE_BROKER_CONFIG body (Java properties text) whole, or
    /// nothing of it.
    ///
    /// # Errors
    /// A sentence naming the first key that is unknown, has a bad value, or can
    /// only be set at start-up.
    pub fn apply(&self, text: &str) -> Result<Applied, String> {
        let settings = config::parse_broker_update(text)?;
        // Validate everything before changing anything.
        let mut staged = Vec::with_capacity(settings.len());
        for s in settings {
            if !CHANGEABLE.contains(&s.rocketmq.as_str()) {
                return Err(format!(
                    "{} cannot be changed while the broker runs; set it in the broker's configuration file and \
                     restart (changeable: {})",
                    s.rocketmq,
                    CHANGEABLE.join(", ")
                ));
            }
            let bad = |what: &str| format!("{}: expected {what}", s.rocketmq);
            let value = match s.rocketmq.as_str() {
                "brokerPermission" => {
                    let p = s.as_u64().filter(|p| *p <= 7).ok_or_else(|| bad("a permission from 0 to 7"))?;
                    Staged::Permission(p as u8)
                }
                "transactionCheckMax" => {
                    let n = s.as_u64().and_then(|n| u32::try_from(n).ok()).ok_or_else(|| bad("a count"))?;
                    Staged::CheckMax(n)
                }
                "shortPollingTimeMills" => Staged::ShortPolling(s.as_duration().ok_or_else(|| bad("milliseconds"))?),
                key => {
                    let b = s.as_bool().ok_or_else(|| bad("true or false"))?;
                    match key {
                        "rejectTransactionMessage" => Staged::RejectTx(b),
                        "longPollingEnable" => Staged::LongPolling(b),
                        _ => Staged::PropertyFilter(b),
                    }
                }
            };
            staged.push((s.rocketmq, value));
        }
        let mut applied = Applied::default();
        for (key, value) in staged {
            match value {
                Staged::Permission(p) => {
                    let old = self.broker_permission.swap(p, Ordering::Relaxed);
                    applied.permission_changed |= old != p;
                }
                Staged::CheckMax(n) => self.transaction_check_max.store(n, Ordering::Relaxed),
                Staged::ShortPolling(d) => self.short_polling_ms.store(d.as_millis() as u64, Ordering::Relaxed),
                Staged::RejectTx(b) => self.reject_transaction_message.store(b, Ordering::Relaxed),
                Staged::LongPolling(b) => self.long_polling_enable.store(b, Ordering::Relaxed),
                Staged::PropertyFilter(b) => self.enable_property_filter.store(b, Ordering::Relaxed),
            }
            applied.keys.push(key);
        }
        Ok(applied)
    }
}

enum Staged {
    Permission(u8),
    CheckMax(u32),
    ShortPolling(Duration),
    RejectTx(bool),
    LongPolling(bool),
    PropertyFilter(bool),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn applies_changeable_settings_and_refuses_the_rest_whole() {
        let rc = RuntimeConfig::new(&BrokerConfig::default());
        assert_eq!(rc.broker_permission(), 6);
        let a = rc.apply("brokerPermission=4\nlongPollingEnable=false\nshortPollingTimeMills=250\n").unwrap();
        assert!(a.permission_changed);
        assert_eq!(a.keys, ["brokerPermission", "longPollingEnable", "shortPollingTimeMills"]);
        assert_eq!(rc.broker_permission(), 4);
        assert!(!rc.long_polling_enable());
        assert_eq!(rc.short_polling_time(), Duration::from_millis(250));

        let e = rc.apply("transactionCheckMax=3\nlistenPort=1234").unwrap_err();
        assert!(e.starts_with("listenPort cannot be changed"), "{e}");
        assert_eq!(rc.transaction_check_max(), 15, "a refused update changes nothing");
        let e = rc.apply("brokerPermission=9").unwrap_err();
        assert!(e.contains("brokerPermission"), "{e}");
        let e = rc.apply("noSuchKey=1").unwrap_err();
        assert!(e.contains("noSuchKey"), "{e}");
        let same = rc.apply("brokerPermission=4").unwrap();
        assert!(!same.permission_changed);
    }
}
