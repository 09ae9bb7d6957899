//! The Raft state machine: [`ReplicasInfo`] plus what Raft needs (the last applied
//! log id and membership). Snapshots are the whole state as JSON, kept in
//! `<controllerStorePath>/raft/snapshot.json` so a restart begins from the last one
//! and replays only the log after it.

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    BasicNode, Entry, EntryPayload, LogId, OptionalSend, RaftSnapshotBuilder, SnapshotMeta, StorageError,
    StorageIOError, StoredMembership,
};
use parking_lot::RwLock;
use serde::{Deserialize, Serialize};

use super::log_store::write_json_atomic;
use super::TypeConfig;
use crate::state::{Applied, ReplicasInfo};

type NodeId = u64;

/// What the state machine holds.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SmData {
    pub last_applied: Option<LogId<NodeId>>,
    pub last_membership: StoredMembership<NodeId, BasicNode>,
    pub state: ReplicasInfo,
}

#[derive(Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta<NodeId, BasicNode>,
    data: Vec<u8>,
}

/// The state machine; clones share it.
#[derive(Clone)]
pub struct StateMachine {
    inner: Arc<Inner>,
}

struct Inner {
    dir: PathBuf,
    data: RwLock<SmData>,
    current: RwLock<Option<Arc<StoredSnapshot>>>,
    snapshots_built: AtomicU64,
}

const SNAPSHOT: &str = "snapshot.json";

impl StateMachine {
    /// Opens the state machine in `dir`, starting from its last snapshot.
    ///
    /// # Errors
    /// The snapshot exists but cannot be read.
    pub fn open(dir: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let (data, current) = match std::fs::read(dir.join(SNAPSHOT)) {
            Ok(bytes) => {
                let snap: StoredSnapshot = serde_json::from_slice(&bytes).map_err(std::io::Error::other)?;
                let data: SmData = serde_json::from_slice(&snap.data).map_err(std::io::Error::other)?;
                (data, Some(Arc::new(snap)))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => (SmData::default(), None),
            Err(e) => return Err(e),
        };
        Ok(Self {
            inner: Arc::new(Inner {
                dir: dir.to_owned(),
                data: RwLock::new(data),
                current: RwLock::new(current),
                snapshots_built: AtomicU64::new(0),
            }),
        })
    }

    /// Reads the applied state.
    pub fn read<T>(&self, f: impl FnOnce(&ReplicasInfo) -> T) -> T {
        f(&self.inner.data.read().state)
    }

    fn save(&self, snap: StoredSnapshot) -> Result<(), StorageError<NodeId>> {
        write_json_atomic(&self.inner.dir.join(SNAPSHOT), &snap)
            .map_err(|e| StorageIOError::write_snapshot(Some(snap.meta.signature()), &e))?;
        *self.inner.current.write() = Some(Arc::new(snap));
        Ok(())
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<NodeId>> {
        let (data, last_applied, membership) = {
            let d = self.inner.data.read();
            let bytes = serde_json::to_vec(&*d).map_err(|e| StorageIOError::read_state_machine(&e))?;
            (bytes, d.last_applied, d.last_membership.clone())
        };
        let n = self.inner.snapshots_built.fetch_add(1, Ordering::Relaxed);
        let snapshot_id = match last_applied {
            Some(l) => format!("{}-{}-{n}", l.leader_id, l.index),
            None => format!("--{n}"),
        };
        let meta = SnapshotMeta { last_log_id: last_applied, last_membership: membership, snapshot_id };
        self.save(StoredSnapshot { meta: meta.clone(), data: data.clone() })?;
        Ok(Snapshot { meta, snapshot: Box::new(Cursor::new(data)) })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = Self;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<NodeId>>, StoredMembership<NodeId, BasicNode>), StorageError<NodeId>> {
        let d = self.inner.data.read();
        Ok((d.last_applied, d.last_membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Applied>, StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut d = self.inner.data.write();
        let mut out = Vec::new();
        for entry in entries {
            d.last_applied = Some(entry.log_id);
            match entry.payload {
                EntryPayload::Blank => out.push(Applied::Done),
                EntryPayload::Normal(event) => {
                    let applied = d.state.apply(&event);
                    if let Applied::Fenced(reason) = &applied {
                        tracing::info!(?event, reason, "controller event fenced");
                    }
                    out.push(applied);
                }
                EntryPayload::Membership(m) => {
                    d.last_membership = StoredMembership::new(Some(entry.log_id), m);
                    out.push(Applied::Done);
                }
            }
        }
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError<NodeId>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<NodeId>> {
        let bytes = snapshot.into_inner();
        let mut data: SmData =
            serde_json::from_slice(&bytes).map_err(|e| StorageIOError::read_snapshot(Some(meta.signature()), &e))?;
        data.last_applied = meta.last_log_id;
        data.last_membership = meta.last_membership.clone();
        self.save(StoredSnapshot { meta: meta.clone(), data: bytes })?;
        *self.inner.data.write() = data;
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError<NodeId>> {
        Ok(self
            .inner
            .current
            .read()
            .as_ref()
            .map(|s| Snapshot { meta: s.meta.clone(), snapshot: Box::new(Cursor::new(s.data.clone())) }))
    }
}
