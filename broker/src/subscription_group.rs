//! Consumer groups' configurations (`config/subscriptionGroup.json`).

use std::collections::BTreeMap;
use std::path::PathBuf;

use parking_lot::RwLock;
use serde::{Deserialize, Serialize};
use tracing::info;

use common::subscription::SubscriptionGroupConfig;
use remoting::body::DataVersion;

use crate::error::Result;
use crate::persist;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SubscriptionGroupWrapper {
    pub subscription_group_table: BTreeMap<String, SubscriptionGroupConfig>,
    pub data_version: DataVersion,
}

pub struct SubscriptionGroupManager {
    path: PathBuf,
    inner: RwLock<SubscriptionGroupWrapper>,
    auto_create: bool,
    /// `retryMaxTimes` of auto-created groups (the broker's `max_reconsume_times`).
    default_retry_max_times: i32,
}

impl SubscriptionGroupManager {
    /// # Errors
    /// The file exists but cannot be read or parsed.
    pub fn load(path: PathBuf, auto_create: bool) -> Result<Self> {
        let mut w: SubscriptionGroupWrapper = persist::load(&path)?.unwrap_or_default();
        for g in ["TOOLS_CONSUMER", "FILTERSRV_CONSUMER", "SELF_TEST_C_GROUP", common::topic::TRANS_CHECK_GROUP] {
            w.subscription_group_table.entry(g.to_owned()).or_insert_with(|| SubscriptionGroupConfig::new(g));
        }
        let default_retry_max_times = SubscriptionGroupConfig::default().retry_max_times;
        Ok(Self { path, inner: RwLock::new(w), auto_create, default_retry_max_times })
    }

    /// Sets the `retryMaxTimes` that auto-created groups get.
    #[must_use]
    pub fn with_default_retry_max_times(mut self, times: i32) -> Self {
        self.default_retry_max_times = times;
        self
    }

    /// The group's config, auto-creating it with defaults when allowed.
    pub fn find_or_create(&self, group: &str) -> Option<SubscriptionGroupConfig> {
        if let Some(g) = self.inner.read().subscription_group_table.get(group) {
            return Some(g.clone());
        }
        if !self.auto_create {
            return None;
        }
        let mut cfg = SubscriptionGroupConfig::new(group);
        cfg.retry_max_times = self.default_retry_max_times;
        let out = {
            let mut w = self.inner.write();
            let out = w.subscription_group_table.entry(group.to_owned()).or_insert_with(|| cfg.clone()).clone();
            w.data_version.next_version(common::time::now_ms());
            out
        };
        info!(group, "subscription group auto-created");
        self.persist_logged();
        Some(out)
    }

    pub fn get(&self, group: &str) -> Option<SubscriptionGroupConfig> {
        self.inner.read().subscription_group_table.get(group).cloned()
    }

    pub fn upsert(&self, cfg: SubscriptionGroupConfig) {
        {
            let mut w = self.inner.write();
            info!(group = %cfg.group_name, "subscription group created or updated");
            w.subscription_group_table.insert(cfg.group_name.clone(), cfg);
            w.data_version.next_version(common::time::now_ms());
        }
        self.persist_logged();
    }

    pub fn delete(&self, group: &str) -> bool {
        let removed = self.inner.write().subscription_group_table.remove(group).is_some();
        if removed {
            info!(group, "subscription group deleted");
            self.persist_logged();
        }
        removed
    }

    /// A slave takes its master's groups when the master's data version differs
    /// (RocketMQ's `syncSubscriptionGroupConfig`). Returns whether anything changed.
    pub fn replace_from_master(&self, master: SubscriptionGroupWrapper) -> bool {
        {
            let mut w = self.inner.write();
            if w.data_version == master.data_version {
                return false;
            }
            *w = master;
        }
        self.persist_logged();
        true
    }

    pub fn snapshot(&self) -> SubscriptionGroupWrapper {
        self.inner.read().clone()
    }

    fn persist_logged(&self) {
        if let Err(e) = persist::save(&self.path, || self.snapshot()) {
            tracing::error!(error = %e, "could not persist subscriptionGroup.json");
        }
    }
}
