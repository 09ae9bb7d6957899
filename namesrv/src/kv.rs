//! The name server's KV config: namespace → key → value, persisted to
//! `kvConfig.json` after every change (`{"configTable":{ns:{k:v}}}`, RocketMQ's
//! shape). The `ORDER_TOPIC_CONFIG` namespace maps topics to `broker:queues` lists
//! and feeds `orderTopicConf` in routes.
//!
//! Writes go through `config::persist`, so a crash mid-write never leaves a
//! truncated file and the previous version stays in `kvConfig.json.bak`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tracing::info;

use crate::error::{Error, Result};

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct KvFile {
    config_table: BTreeMap<String, BTreeMap<String, String>>,
}

/// The KV store.
#[derive(Debug)]
pub struct KvConfigManager {
    path: PathBuf,
    table: Mutex<BTreeMap<String, BTreeMap<String, String>>>,
    /// Serialises file writes so that two changes never interleave on disk.
    write_lock: Mutex<()>,
}

impl KvConfigManager {
    /// Loads `path`; a missing file is an empty table.
    ///
    /// # Errors
    /// The file exists but cannot be read or parsed.
    pub fn load(path: PathBuf) -> Result<Self> {
        let table = match config::persist::read_with_backup(&path) {
            Ok(None) => BTreeMap::new(),
            Ok(Some(bytes)) => {
                remoting::json::from_slice::<KvFile>(&bytes)
                    .map_err(|source| Error::KvParse { path: path.clone(), source })?
                    .config_table
            }
            Err(source) => return Err(Error::KvRead { path, source }),
        };
        if !table.is_empty() {
            info!(path = %path.display(), namespaces = table.len(), "kv config loaded");
        }
        Ok(Self { path, table: Mutex::new(table), write_lock: Mutex::new(()) })
    }

    /// Sets a value and persists.
    ///
    /// # Errors
    /// The file cannot be written (the in-memory value is set regardless).
    pub fn put(&self, namespace: &str, key: &str, value: &str) -> Result<()> {
        self.table.lock().entry(namespace.to_owned()).or_default().insert(key.to_owned(), value.to_owned());
        info!(namespace, key, value, "kv config put");
        self.persist()
    }

    pub fn get(&self, namespace: &str, key: &str) -> Option<String> {
        self.table.lock().get(namespace)?.get(key).cloned()
    }

    /// Removes a value and persists.
    ///
    /// # Errors
    /// The file cannot be written.
    pub fn delete(&self, namespace: &str, key: &str) -> Result<()> {
        let removed = {
            let mut t = self.table.lock();
            let removed = t.get_mut(namespace).and_then(|ns| ns.remove(key)).is_some();
            if t.get(namespace).is_some_and(BTreeMap::is_empty) {
                t.remove(namespace);
            }
            removed
        };
        if removed {
            info!(namespace, key, "kv config deleted");
            self.persist()?;
        }
        Ok(())
    }

    /// Every key of a namespace; `None` when the namespace has none.
    pub fn list(&self, namespace: &str) -> Option<BTreeMap<String, String>> {
        self.table.lock().get(namespace).filter(|ns| !ns.is_empty()).cloned()
    }

    /// Writes the table to disk atomically.
    ///
    /// # Errors
    /// Any I/O failure.
    pub fn persist(&self) -> Result<()> {
        let _guard = self.write_lock.lock();
        let snapshot = KvFile { config_table: self.table.lock().clone() };
        let err = |source| Error::KvWrite { path: self.path.clone(), source };
        let json = serde_json::to_vec_pretty(&snapshot).map_err(|e| err(std::io::Error::other(e)))?;
        config::persist::write_atomic(&self.path, &json).map_err(err)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn persists_and_reloads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("namesrv").join("kvConfig.json");
        let kv = KvConfigManager::load(path.clone()).unwrap();
        kv.put("ORDER_TOPIC_CONFIG", "T", "broker-a:4").unwrap();
        kv.put("NS", "k", "v").unwrap();
        kv.delete("NS", "k").unwrap();
        let again = KvConfigManager::load(path.clone()).unwrap();
        assert_eq!(again.get("ORDER_TOPIC_CONFIG", "T").as_deref(), Some("broker-a:4"));
        assert_eq!(again.list("NS"), None);
        let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(json["configTable"]["ORDER_TOPIC_CONFIG"]["T"], "broker-a:4");
    }

    #[test]
    fn corrupt_file_is_an_error_naming_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kvConfig.json");
        std::fs::write(&path, b"{not json").unwrap();
        let err = KvConfigManager::load(path).unwrap_err().to_string();
        assert!(err.contains("kvConfig.json"), "{err}");
    }
}
