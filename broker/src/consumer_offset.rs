//! Committed consumer offsets: (topic, group, queue) → next offset to consume,
//! persisted to `config/consumerOffset.json` every `flush_consumer_offset_interval`
//! and on shutdown (`{"offsetTable":{"topic@group":{"0":15,...}}}`; Java's unquoted
//! keys are read too).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use parking_lot::RwLock;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::persist;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ConsumerOffsetWrapper {
    pub offset_table: BTreeMap<String, BTreeMap<i32, i64>>,
}

fn key(topic: &str, group: &str) -> String {
    format!("{topic}@{group}")
}

/// group → queue → where the group's last pull ended.
type PulledByGroup = HashMap<String, HashMap<i32, i64>>;

pub struct ConsumerOffsetManager {
    path: PathBuf,
    table: RwLock<HashMap<String, BTreeMap<i32, i64>>>,
    /// Where each group's last pull ended (RocketMQ's `pullOffsetTable`): topic →
    /// group → queue → next offset. In memory only; read by the in-flight and ready
    /// metrics.
    pulled: RwLock<HashMap<String, PulledByGroup>>,
}

impl ConsumerOffsetManager {
    /// # Errors
    /// The file exists but cannot be read or parsed.
    pub fn load(path: PathBuf) -> Result<Self> {
        let w: ConsumerOffsetWrapper = persist::load(&path)?.unwrap_or_default();
        Ok(Self { path, table: RwLock::new(w.offset_table.into_iter().collect()), pulled: RwLock::default() })
    }

    /// Records where a pull of `group` on a queue ended (no allocation once the
    /// queue is known).
    pub fn commit_pull(&self, group: &str, topic: &str, queue_id: i32, next: i64) {
        let mut t = self.pulled.write();
        if let Some(queues) = t.get_mut(topic).and_then(|g| g.get_mut(group)) {
            queues.insert(queue_id, next);
            return;
        }
        t.entry(topic.to_owned()).or_default().entry(group.to_owned()).or_default().insert(queue_id, next);
    }

    /// Where `group`'s last pull of a queue ended, or -1.
    pub fn query_pull(&self, group: &str, topic: &str, queue_id: i32) -> i64 {
        self.pulled.read().get(topic).and_then(|g| g.get(group)).and_then(|q| q.get(&queue_id)).copied().unwrap_or(-1)
    }

    pub fn commit(&self, group: &str, topic: &str, queue_id: i32, offset: i64) {
        let k = key(topic, group);
        let mut t = self.table.write();
        t.entry(k).or_default().insert(queue_id, offset);
    }

    /// Moves the committed offset up to `offset`, never down.
    pub fn commit_at_least(&self, group: &str, topic: &str, queue_id: i32, offset: i64) {
        let k = key(topic, group);
        let mut t = self.table.write();
        let e = t.entry(k).or_default().entry(queue_id).or_insert(offset);
        *e = (*e).max(offset);
    }

    /// A slave takes its master's offsets (RocketMQ's `syncConsumerOffset`: every
    /// queue the master knows gets the master's offset; queues only this slave has
    /// committed — while the master was away — keep theirs).
    pub fn merge_from_master(&self, master: ConsumerOffsetWrapper) {
        let mut t = self.table.write();
        for (k, queues) in master.offset_table {
            t.entry(k).or_default().extend(queues);
        }
    }

    /// The committed offset, or -1.
    pub fn query(&self, group: &str, topic: &str, queue_id: i32) -> i64 {
        self.table.read().get(&key(topic, group)).and_then(|q| q.get(&queue_id)).copied().unwrap_or(-1)
    }

    /// Every queue's committed offset of (group, topic).
    pub fn queues(&self, group: &str, topic: &str) -> BTreeMap<i32, i64> {
        self.table.read().get(&key(topic, group)).cloned().unwrap_or_default()
    }

    /// Topics a group has offsets for.
    pub fn topics_of_group(&self, group: &str) -> Vec<String> {
        let suffix = format!("@{group}");
        self.table.read().keys().filter_map(|k| k.strip_suffix(&suffix).map(str::to_owned)).collect()
    }

    /// Groups with offsets on `topic`.
    pub fn groups_of_topic(&self, topic: &str) -> Vec<String> {
        let prefix = format!("{topic}@");
        self.table.read().keys().filter_map(|k| k.strip_prefix(&prefix).map(str::to_owned)).collect()
    }

    pub fn remove_group(&self, group: &str) {
        let suffix = format!("@{group}");
        self.table.write().retain(|k, _| !k.ends_with(&suffix));
    }

    pub fn remove_topic(&self, topic: &str) {
        let prefix = format!("{topic}@");
        self.table.write().retain(|k, _| !k.starts_with(&prefix));
    }

    pub fn snapshot(&self) -> ConsumerOffsetWrapper {
        ConsumerOffsetWrapper { offset_table: self.table.read().iter().map(|(k, v)| (k.clone(), v.clone())).collect() }
    }

    /// # Errors
    /// I/O failure.
    pub fn persist(&self) -> Result<()> {
        persist::save(&self.path, || self.snapshot())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_java_files_and_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("consumerOffset.json");
        std::fs::write(&path, br#"{"offsetTable":{"T@G":{0:15,1:3}}}"#).unwrap();
        let m = ConsumerOffsetManager::load(path.clone()).unwrap();
        assert_eq!(m.query("G", "T", 1), 3);
        assert_eq!(m.query("G", "T", 2), -1);
        m.commit("G", "T", 2, 9);
        m.persist().unwrap();
        let again = ConsumerOffsetManager::load(path).unwrap();
        assert_eq!(again.query("G", "T", 2), 9);
        assert_eq!(again.topics_of_group("G"), ["T"]);
    }
}
