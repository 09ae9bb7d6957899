//! The broker's topics (`config/topics.json`) and RocketMQ's topic rules: system
//! topics created at start, auto-creation through the `TBW102` template, retry and
//! dead-letter topics created on demand.
//!
//! Auto-creation is deterministic (RocketMQ pain point #2): when
//! `auto_create_topic_enable` is off, no template — not even the cluster- or
//! broker-named topics RocketMQ marks inheritable — can create a topic.

use std::path::PathBuf;
use std::sync::Arc;

use parking_lot::RwLock;
use tracing::{info, warn};

use common::perm;
use common::topic::{self, TopicConfig, TopicFilterType};
use remoting::body::{DataVersion, TopicConfigSerializeWrapper};

use crate::error::Result;
use crate::persist;

/// Called after the topic table changed, to re-register with the name servers.
pub type ChangeHook = Arc<dyn Fn() + Send + Sync>;

pub struct TopicConfigManager {
    path: PathBuf,
    inner: RwLock<TopicConfigSerializeWrapper>,
    auto_create_enable: bool,
    on_change: RwLock<Option<ChangeHook>>,
}

impl TopicConfigManager {
    /// Loads `topics.json` and makes sure the system topics exist.
    ///
    /// # Errors
    /// The file exists but cannot be read or parsed.
    pub fn load(path: PathBuf, cfg: &config::BrokerConfig) -> Result<Self> {
        let mut wrapper: TopicConfigSerializeWrapper = persist::load(&path)?.unwrap_or_default();
        if wrapper.data_version.timestamp == 0 {
            wrapper.data_version = DataVersion::new(common::time::now_ms());
        }
        let mut system = vec![
            TopicConfig::new(topic::SELF_TEST_TOPIC, 1, perm::READ_WRITE),
            TopicConfig::new(topic::BENCHMARK_TOPIC, 1024, perm::READ_WRITE),
            TopicConfig::new(cfg.broker_cluster_name.clone(), 16, perm::INHERIT),
            TopicConfig::new(cfg.broker_name.clone(), 1, perm::INHERIT | perm::READ_WRITE),
            TopicConfig::new(topic::OFFSET_MOVED_EVENT, 1, perm::READ_WRITE),
            TopicConfig::new(topic::SCHEDULE_TOPIC, 18, perm::READ_WRITE),
            TopicConfig::new(format!("{}_REPLY_TOPIC", cfg.broker_cluster_name), 1, perm::READ_WRITE),
        ];
        if cfg.trace_topic_enable && !cfg.msg_trace_topic_name.trim().is_empty() {
            // RocketMQ's message-trace topic: one queue, read and write.
            system.push(TopicConfig::new(cfg.msg_trace_topic_name.trim(), 1, perm::READ_WRITE));
        }
        if cfg.auto_create_topic_enable {
            let n = cfg.default_topic_queue_nums as i32;
            system.push(TopicConfig::new(topic::AUTO_CREATE_TOPIC_KEY, n, perm::READ_WRITE | perm::INHERIT));
        } else {
            wrapper.topic_config_table.remove(topic::AUTO_CREATE_TOPIC_KEY);
        }
        for tc in system {
            wrapper.topic_config_table.entry(tc.topic_name.clone()).or_insert(tc);
        }
        let m = Self {
            path,
            inner: RwLock::new(wrapper),
            auto_create_enable: cfg.auto_create_topic_enable,
            on_change: RwLock::new(None),
        };
        m.persist()?;
        Ok(m)
    }

    pub fn set_change_hook(&self, hook: ChangeHook) {
        *self.on_change.write() = Some(hook);
    }

    pub fn get(&self, topic: &str) -> Option<TopicConfig> {
        self.inner.read().topic_config_table.get(topic).cloned()
    }

    pub fn contains(&self, topic: &str) -> bool {
        self.inner.read().topic_config_table.contains_key(topic)
    }

    /// A copy of every topic and the data version (for registration and admin).
    pub fn snapshot(&self) -> TopicConfigSerializeWrapper {
        self.inner.read().clone()
    }

    pub fn data_version(&self) -> DataVersion {
        self.inner.read().data_version.clone()
    }

    pub fn topic_names(&self) -> Vec<String> {
        self.inner.read().topic_config_table.keys().cloned().collect()
    }

    /// Moves the data version on without changing a topic, so the next registration
    /// carries the table again (the broker's permission changed, and with it the
    /// permission every topic registers with).
    pub fn touch(&self) {
        self.inner.write().data_version.next_version(common::time::now_ms());
    }

    /// Creates or replaces a topic (UPDATE_AND_CREATE_TOPIC).
    pub fn upsert(&self, tc: TopicConfig) {
        {
            let mut w = self.inner.write();
            let changed = w.topic_config_table.get(&tc.topic_name) != Some(&tc);
            if !changed {
                return;
            }
            info!(topic = %tc.topic_name, read = tc.read_queue_nums, write = tc.write_queue_nums, perm = tc.perm, "topic created or updated");
            w.topic_config_table.insert(tc.topic_name.clone(), tc);
            w.data_version.next_version(common::time::now_ms());
        }
        self.changed();
    }

    /// A slave takes its master's topics (RocketMQ's `SlaveSynchronize.syncTopicConfig`):
    /// when the master's data version differs, the table becomes the master's and
    /// the version with it. Returns whether anything changed.
    pub fn replace_from_master(&self, master: TopicConfigSerializeWrapper) -> bool {
        {
            let mut w = self.inner.write();
            if w.data_version == master.data_version {
                return false;
            }
            info!(topics = master.topic_config_table.len(), "topics copied from the master");
            *w = master;
        }
        self.changed();
        true
    }

    /// Removes a topic; returns whether it existed.
    pub fn delete(&self, topic: &str) -> bool {
        let existed = {
            let mut w = self.inner.write();
            let existed = w.topic_config_table.remove(topic).is_some();
            if existed {
                w.data_version.next_version(common::time::now_ms());
            }
            existed
        };
        if existed {
            info!(topic, "topic deleted");
            self.changed();
        }
        existed
    }

    /// RocketMQ's `createTopicInSendMessageMethod`: creates `topic` from the template
    /// `default_topic` if auto-creation is enabled and the template is inheritable.
    /// Returns the (possibly pre-existing) config, or `None` when not allowed.
    pub fn create_in_send(
        &self,
        topic: &str,
        default_topic: &str,
        client_queue_nums: i32,
        topic_sys_flag: i32,
    ) -> Option<TopicConfig> {
        if let Some(tc) = self.get(topic) {
            return Some(tc);
        }
        if !self.auto_create_enable {
            return None;
        }
        let template = self.get(default_topic)?;
        if !perm::is_inherited(template.perm) {
            warn!(topic, default_topic, "auto-create refused: template topic is not inheritable");
            return None;
        }
        let queues = client_queue_nums.min(template.write_queue_nums).max(1);
        let tc = TopicConfig {
            topic_name: topic.to_owned(),
            read_queue_nums: queues,
            write_queue_nums: queues,
            perm: template.perm & !perm::INHERIT,
            topic_filter_type: template.topic_filter_type,
            topic_sys_flag,
            ..TopicConfig::default()
        };
        Some(self.insert_if_absent(tc))
    }

    /// Creates a system-managed topic (`%RETRY%`, `%DLQ%`, transaction topics) if
    /// absent; these do not depend on auto-creation being enabled.
    pub fn create_system(&self, topic: &str, queues: i32, perm: i32, topic_sys_flag: i32) -> TopicConfig {
        if let Some(tc) = self.get(topic) {
            return tc;
        }
        self.insert_if_absent(TopicConfig {
            topic_name: topic.to_owned(),
            read_queue_nums: queues,
            write_queue_nums: queues,
            perm,
            topic_filter_type: TopicFilterType::SingleTag,
            topic_sys_flag,
            ..TopicConfig::default()
        })
    }

    fn insert_if_absent(&self, tc: TopicConfig) -> TopicConfig {
        let created = {
            let mut w = self.inner.write();
            if let Some(existing) = w.topic_config_table.get(&tc.topic_name) {
                return existing.clone();
            }
            w.topic_config_table.insert(tc.topic_name.clone(), tc.clone());
            w.data_version.next_version(common::time::now_ms());
            true
        };
        if created {
            info!(topic = %tc.topic_name, queues = tc.write_queue_nums, perm = tc.perm, "topic auto-created");
            self.changed();
        }
        tc
    }

    fn changed(&self) {
        if let Err(e) = self.persist() {
            tracing::error!(error = %e, "could not persist topics.json");
        }
        if let Some(hook) = self.on_change.read().clone() {
            hook();
        }
    }

    /// Writes `topics.json`.
    ///
    /// # Errors
    /// I/O failure.
    pub fn persist(&self) -> Result<()> {
        persist::save(&self.path, || self.snapshot())
    }
}

/// Topic table as registered: with the broker's own permission applied when it lacks
/// read or write (that is how a wiped broker propagates to routes).
pub fn registration_view(mut w: TopicConfigSerializeWrapper, broker_permission: i32) -> TopicConfigSerializeWrapper {
    if !perm::is_writeable(broker_permission) || !perm::is_readable(broker_permission) {
        for tc in w.topic_config_table.values_mut() {
            tc.perm = broker_permission;
        }
    }
    w
}
