//! The Raft log and vote, on disk under `<controllerStorePath>/raft`.
//!
//! * `vote.json` — the last vote, replaced atomically (temporary file, fsync, rename,
//!   fsync of the directory) before `save_vote` returns;
//! * `log.jsonl` — one JSON entry per line, appended and fsynced before the append is
//!   reported flushed; a torn last line (a crash mid-append) is dropped on load;
//! * `purged.json` — the last purged log id.
//!
//! Truncation and purging rewrite `log.jsonl` atomically. Written here rather than on
//! an embedded database: a controller's log holds a few entries per broker
//! registration and election, so whole-file rewrites cost nothing and the format
//! stays readable with `cat`.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::ops::RangeBounds;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{Entry, LogId, OptionalSend, RaftLogReader, StorageError, StorageIOError, Vote};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::Mutex;

use super::TypeConfig;

type NodeId = u64;

/// The log store; clones share it.
#[derive(Clone)]
pub struct LogStore {
    inner: Arc<Mutex<Inner>>,
}

struct Inner {
    dir: PathBuf,
    log: BTreeMap<u64, Entry<TypeConfig>>,
    last_purged: Option<LogId<NodeId>>,
    vote: Option<Vote<NodeId>>,
    file: File,
}

const LOG: &str = "log.jsonl";
const VOTE: &str = "vote.json";
const PURGED: &str = "purged.json";

impl LogStore {
    /// Opens (or creates) the store in `dir`.
    ///
    /// # Errors
    /// The directory or its files cannot be read or written.
    pub fn open(dir: &Path) -> std::io::Result<Self> {
        fs::create_dir_all(dir)?;
        let vote = read_json(&dir.join(VOTE))?;
        let last_purged: Option<LogId<NodeId>> = read_json(&dir.join(PURGED))?;
        let mut log = BTreeMap::new();
        let path = dir.join(LOG);
        if path.exists() {
            let mut torn = false;
            for line in BufReader::new(File::open(&path)?).lines() {
                let line = line?;
                match serde_json::from_str::<Entry<TypeConfig>>(&line) {
                    Ok(e) => {
                        log.insert(e.log_id.index, e);
                    }
                    // Only the last line can be torn; anything after it is ignored too.
                    Err(_) => {
                        torn = true;
                        break;
                    }
                }
            }
            if let Some(p) = last_purged {
                log.retain(|i, _| *i > p.index);
            }
            if torn {
                tracing::warn!(path = %path.display(), "dropped a torn entry at the end of the controller log");
                rewrite(dir, &log)?;
            }
        }
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        Ok(Self { inner: Arc::new(Mutex::new(Inner { dir: dir.to_owned(), log, last_purged, vote, file })) })
    }
}

fn read_json<T: DeserializeOwned>(path: &Path) -> std::io::Result<Option<T>> {
    match fs::read(path) {
        Ok(b) => serde_json::from_slice(&b).map(Some).map_err(std::io::Error::other),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Writes `value` to `path` atomically and durably.
pub(crate) fn write_json_atomic<T: Serialize>(path: &Path, value: &T) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = File::create(&tmp)?;
    f.write_all(&serde_json::to_vec(value).map_err(std::io::Error::other)?)?;
    f.sync_all()?;
    fs::rename(&tmp, path)?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Replaces the log file with `log`'s entries.
fn rewrite(dir: &Path, log: &BTreeMap<u64, Entry<TypeConfig>>) -> std::io::Result<()> {
    let tmp = dir.join("log.jsonl.tmp");
    let mut f = File::create(&tmp)?;
    for e in log.values() {
        serde_json::to_writer(&mut f, e).map_err(std::io::Error::other)?;
        f.write_all(b"\n")?;
    }
    f.sync_all()?;
    fs::rename(&tmp, dir.join(LOG))?;
    sync_dir(dir)
}

impl Inner {
    fn reopen(&mut self) -> std::io::Result<()> {
        self.file = OpenOptions::new().create(true).append(true).open(self.dir.join(LOG))?;
        Ok(())
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError<NodeId>> {
        let inner = self.inner.lock().await;
        Ok(inner.log.range(range).map(|(_, e)| e.clone()).collect())
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError<NodeId>> {
        let inner = self.inner.lock().await;
        let last = inner.log.values().next_back().map(|e| e.log_id).or(inner.last_purged);
        Ok(LogState { last_purged_log_id: inner.last_purged, last_log_id: last })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError<NodeId>> {
        let mut inner = self.inner.lock().await;
        write_json_atomic(&inner.dir.join(VOTE), vote).map_err(|e| StorageIOError::write_vote(&e))?;
        inner.vote = Some(*vote);
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError<NodeId>> {
        Ok(self.inner.lock().await.vote)
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut inner = self.inner.lock().await;
        let mut buf = Vec::new();
        let mut added = Vec::new();
        for e in entries {
            serde_json::to_writer(&mut buf, &e).map_err(|e| StorageIOError::write_logs(&e))?;
            buf.push(b'\n');
            added.push(e);
        }
        let written = inner.file.write_all(&buf).and_then(|()| inner.file.sync_data());
        if let Err(e) = written {
            callback.log_io_completed(Err(std::io::Error::new(e.kind(), e.to_string())));
            return Err(StorageIOError::write_logs(&e).into());
        }
        for e in added {
            inner.log.insert(e.log_id.index, e);
        }
        callback.log_io_completed(Ok(()));
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        let mut inner = self.inner.lock().await;
        inner.log.split_off(&log_id.index);
        rewrite(&inner.dir, &inner.log).and_then(|()| inner.reopen()).map_err(|e| StorageIOError::write_logs(&e))?;
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        let mut inner = self.inner.lock().await;
        if inner.last_purged.is_some_and(|p| p.index >= log_id.index) {
            return Ok(());
        }
        write_json_atomic(&inner.dir.join(PURGED), &log_id).map_err(|e| StorageIOError::write_logs(&e))?;
        inner.last_purged = Some(log_id);
        inner.log = inner.log.split_off(&(log_id.index + 1));
        rewrite(&inner.dir, &inner.log).and_then(|()| inner.reopen()).map_err(|e| StorageIOError::write_logs(&e))?;
        Ok(())
    }
}
