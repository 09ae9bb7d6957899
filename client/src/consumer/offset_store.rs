//! Where a consumer keeps "the next offset to consume" of each queue
//! (RocketMQ's `RemoteBrokerOffsetStore` and `LocalFileOffsetStore`).
//!
//! Both kinds hold the offsets in memory; they differ in where they commit:
//!
//! * **remote** (clustering): the group's offsets live on the broker. Commits are
//!   UPDATE_CONSUMER_OFFSET to the master of each queue's broker (to a slave while
//!   the route has no master, as RocketMQ's `RemoteBrokerOffsetStore`), oneway on
//!   the periodic persist and synchronous on queue removal and shutdown; reads from
//!   the store are QUERY_CONSUMER_OFFSET, to the same broker. Consumers read the
//!   broker's offset only when a queue is assigned ([`OffsetStore::read_from_store`]);
//!   afterwards memory follows consumption (and the broker's OFFSET_ILLEGAL
//!   corrections and administrator resets), so a master that comes back holding an
//!   older offset than its slave does not move a running consumer backwards: the
//!   next commit brings the master up to date;
//! * **local** (broadcasting): every member has its own progress, in a JSON file
//!   (`~/.rocketmq_offsets/<clientId>/<group>/offsets.json` by default, as the Java
//!   client) written atomically (temporary file, fsync, rename, `.bak` kept) in
//!   RocketMQ's `OffsetSerializeWrapper` form, whose keys are `MessageQueue`
//!   objects: `{"offsetTable":{{"brokerName":"b","queueId":0,"topic":"T"}:12}}`.
//!
//! The store does not know which queues the consumer owns: callers pass the
//! assigned queues to [`OffsetStore::persist_all`], and entries of other queues are
//! dropped then (as Java does). Memory updates never block: the table is behind a
//! short std mutex never held across an await.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use parking_lot::Mutex;
use tracing::{debug, warn};

use common::route::MessageQueue;

use crate::consumer::pull_api::PullApi;
use crate::error::{Error, Result};

enum Backend {
    Remote(PullApi),
    Local(PathBuf),
}

/// A consumer's offsets: in memory, committed to the broker or to a local file.
pub struct OffsetStore {
    group: String,
    table: Mutex<HashMap<MessageQueue, i64>>,
    backend: Backend,
    /// When set, QUERY_CONSUMER_OFFSET asks the broker not to answer 0 for a
    /// queue the group never committed (see [`PullApi::query_consumer_offset_with`]).
    strict_query: bool,
}

impl OffsetStore {
    /// The clustering store: offsets committed to the brokers.
    pub fn remote(api: PullApi, group: impl Into<String>) -> Self {
        Self { group: group.into(), table: Mutex::default(), backend: Backend::Remote(api), strict_query: false }
    }

    /// The broadcasting store: offsets kept in the JSON file at `path`. Call
    /// [`OffsetStore::load`] to read what a previous run left.
    pub fn local(path: impl Into<PathBuf>, group: impl Into<String>) -> Self {
        Self { group: group.into(), table: Mutex::default(), backend: Backend::Local(path.into()), strict_query: false }
    }

    /// The Java client's file: `<dir>/<client_id>/<group>/offsets.json`, `dir`
    /// defaulting to `~/.rocketmq_offsets` (`rocketmq.client.localOffsetStoreDir`).
    pub fn default_local_path(dir: Option<&Path>, client_id: &str, group: &str) -> PathBuf {
        let base = match dir {
            Some(d) => d.to_path_buf(),
            None => std::env::var_os("HOME")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("."))
                .join(".rocketmq_offsets"),
        };
        base.join(client_id).join(group).join("offsets.json")
    }

    /// Makes store reads report "nothing committed" as such, instead of letting the
    /// broker answer 0 for young queues (used when consuming from a timestamp).
    pub(crate) fn set_strict_query(&mut self, strict: bool) {
        self.strict_query = strict;
    }

    pub fn group(&self) -> &str {
        &self.group
    }

    pub fn is_local(&self) -> bool {
        matches!(self.backend, Backend::Local(_))
    }

    /// The file of a local store.
    pub fn path(&self) -> Option<&Path> {
        match &self.backend {
            Backend::Local(p) => Some(p),
            Backend::Remote(_) => None,
        }
    }

    /// Reads a local store's file into memory (a remote store has nothing to load).
    ///
    /// # Errors
    /// The file exists but cannot be read.
    pub fn load(&self) -> Result<()> {
        let Backend::Local(path) = &self.backend else { return Ok(()) };
        let offsets = read_file(path)?;
        let mut table = self.table.lock();
        for (mq, o) in offsets {
            table.insert(mq, o);
        }
        Ok(())
    }

    /// Sets the in-memory offset of `mq`; with `increase_only` a smaller value is
    /// ignored (concurrent consumption finishes out of order).
    pub fn update(&self, mq: &MessageQueue, offset: i64, increase_only: bool) {
        let mut table = self.table.lock();
        match table.get_mut(mq) {
            Some(cur) if increase_only => *cur = (*cur).max(offset),
            Some(cur) => *cur = offset,
            None => {
                table.insert(mq.clone(), offset);
            }
        }
    }

    /// The in-memory offset of `mq`.
    pub fn read(&self, mq: &MessageQueue) -> Option<i64> {
        self.table.lock().get(mq).copied()
    }

    /// The committed offset from the store (broker or file), remembered in memory;
    /// `None` when nothing was ever committed.
    ///
    /// # Errors
    /// The broker could not be asked, or the file could not be read.
    pub async fn read_from_store(&self, mq: &MessageQueue) -> Result<Option<i64>> {
        let found = match &self.backend {
            Backend::Remote(api) => {
                // Retry topics keep the broker's answer: a young retry queue starts at 0.
                let zero = (self.strict_query && !common::topic::is_retry_topic(&mq.topic)).then_some(false);
                api.query_consumer_offset_with(&self.group, mq, zero).await?
            }
            Backend::Local(path) => {
                let path = path.clone();
                let offsets = tokio::task::spawn_blocking(move || read_file(&path))
                    .await
                    .map_err(|e| Error::Io(std::io::Error::other(e)))??;
                offsets.into_iter().find(|(q, _)| q == mq).map(|(_, o)| o)
            }
        };
        if let Some(o) = found {
            self.update(mq, o, false);
        }
        Ok(found)
    }

    /// Commits the offsets of `assigned` (oneway to the broker, or one file write)
    /// and forgets every other queue.
    pub async fn persist_all(&self, assigned: &[MessageQueue]) {
        let snapshot: Vec<(MessageQueue, i64)> = {
            let mut table = self.table.lock();
            table.retain(|mq, _| assigned.contains(mq));
            table.iter().map(|(q, o)| (q.clone(), *o)).collect()
        };
        match &self.backend {
            Backend::Remote(api) => {
                for (mq, offset) in snapshot {
                    if let Err(e) = api.update_consumer_offset_oneway(&self.group, &mq, offset).await {
                        debug!(group = %self.group, topic = %mq.topic, queue_id = mq.queue_id, error = %e, "offset commit failed");
                    }
                }
            }
            Backend::Local(path) => {
                if let Err(e) = write_file(path, snapshot).await {
                    warn!(group = %self.group, path = %path.display(), error = %e, "writing local offsets failed");
                }
            }
        }
    }

    /// Commits the offset of `mq` and waits for it to be stored (queue removal,
    /// shutdown). A local store writes its whole table.
    ///
    /// # Errors
    /// The broker refused or could not be reached, or the file write failed.
    pub async fn persist(&self, mq: &MessageQueue) -> Result<()> {
        match &self.backend {
            Backend::Remote(api) => match self.read(mq) {
                Some(offset) => api.update_consumer_offset(&self.group, mq, offset).await,
                None => Ok(()),
            },
            Backend::Local(path) => {
                // Snapshot first: the guard must not live across the await.
                let snapshot: Vec<(MessageQueue, i64)> =
                    self.table.lock().iter().map(|(q, o)| (q.clone(), *o)).collect();
                write_file(path, snapshot).await
            }
        }
    }

    /// Forgets `mq` (it was reassigned).
    pub fn remove(&self, mq: &MessageQueue) {
        self.table.lock().remove(mq);
    }

    /// Every offset in memory.
    pub fn offsets(&self) -> BTreeMap<MessageQueue, i64> {
        self.table.lock().iter().map(|(q, o)| (q.clone(), *o)).collect()
    }
}

/// `{"offsetTable":{MQ:offset,...}}` with fastjson's object keys, sorted.
fn encode_table(mut entries: Vec<(MessageQueue, i64)>) -> String {
    entries.sort();
    let mut out = String::from("{\"offsetTable\":{");
    for (i, (mq, o)) in entries.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        // fastjson writes keys in alphabetical order.
        let s = |v: &str| serde_json::to_string(v).unwrap_or_default();
        out.push_str(&format!(
            "{{\"brokerName\":{},\"queueId\":{},\"topic\":{}}}",
            s(&mq.broker_name),
            mq.queue_id,
            s(&mq.topic)
        ));
        out.push(':');
        out.push_str(&o.to_string());
    }
    out.push_str("}}");
    out
}

fn read_file(path: &Path) -> Result<Vec<(MessageQueue, i64)>> {
    match config::persist::read_with_backup(path)? {
        Some(bytes) => Ok(crate::admin::parse_mq_keyed_offsets(&bytes)),
        None => Ok(Vec::new()),
    }
}

async fn write_file(path: &Path, entries: Vec<(MessageQueue, i64)>) -> Result<()> {
    let text = encode_table(entries);
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || config::persist::write_atomic(&path, text.as_bytes()))
        .await
        .map_err(|e| Error::Io(std::io::Error::other(e)))??;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn local_store_round_trips_through_the_java_file_format() {
        let dir = tempfile::tempdir().unwrap();
        let path = OffsetStore::default_local_path(Some(dir.path()), "10.0.0.1@7", "G");
        assert!(path.ends_with("10.0.0.1@7/G/offsets.json"));
        let a = MessageQueue::new("T", "broker-a", 0);
        let b = MessageQueue::new("T", "broker-a", 1);
        let store = OffsetStore::local(&path, "G");
        store.update(&a, 5, false);
        store.update(&a, 3, true);
        store.update(&b, 9, false);
        assert_eq!(store.read(&a), Some(5), "increase_only ignores smaller offsets");
        store.persist_all(&[a.clone(), b.clone()]).await;
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            text,
            r#"{"offsetTable":{{"brokerName":"broker-a","queueId":0,"topic":"T"}:5,{"brokerName":"broker-a","queueId":1,"topic":"T"}:9}}"#
        );

        let again = OffsetStore::local(&path, "G");
        again.load().unwrap();
        assert_eq!(again.read(&b), Some(9));
        assert_eq!(again.read_from_store(&a).await.unwrap(), Some(5));

        // Persisting with fewer assigned queues forgets the others.
        again.persist_all(std::slice::from_ref(&b)).await;
        assert_eq!(again.offsets().len(), 1);
        assert_eq!(OffsetStore::local(&path, "G").read_from_store(&a).await.unwrap(), None);
    }
}
