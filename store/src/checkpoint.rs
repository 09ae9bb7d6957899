//! The `checkpoint` file (4 KiB, remoting-protocol.md §10.4), written with plain
//! file I/O and `fdatasync`.
//!
//! ```text
//!   0  i64 physicMsgTimestamp   store time at the commit-log flush point (RocketMQ)
//!   8  i64 logicsMsgTimestamp   store time at the consume-queue flush point (RocketMQ)
//!  16  i64 indexMsgTimestamp    same for the index (RocketMQ)
//!  24  u64 magic "FMQCKPT1"     FerroMQ extension below
//!  32  i64 commit-log offset    everything below is durable in the commit log
//!  40  i64 dispatch offset      every consume-queue/index entry for records below it
//!                               is durable
//!  48  u32 crc32 of bytes 0..48
//! ```
//! Invariant relied on by recovery: both offsets are lower bounds of what is really
//! on disk, because each is captured *before* the flush it describes and the file is
//! synced *after* it. A missing or invalid checkpoint means "assume nothing".

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::error::{IoContext, Result};

const SIZE: usize = 4096;
const MAGIC: u64 = u64::from_be_bytes(*b"FMQCKPT1");

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct CheckpointData {
    pub physic_ts: i64,
    pub logics_ts: i64,
    pub index_ts: i64,
    pub commit_log_offset: i64,
    pub dispatch_offset: i64,
}

impl CheckpointData {
    fn encode(&self) -> [u8; SIZE] {
        let mut b = [0u8; SIZE];
        b[0..8].copy_from_slice(&self.physic_ts.to_be_bytes());
        b[8..16].copy_from_slice(&self.logics_ts.to_be_bytes());
        b[16..24].copy_from_slice(&self.index_ts.to_be_bytes());
        b[24..32].copy_from_slice(&MAGIC.to_be_bytes());
        b[32..40].copy_from_slice(&self.commit_log_offset.to_be_bytes());
        b[40..48].copy_from_slice(&self.dispatch_offset.to_be_bytes());
        let crc = crc32fast::hash(&b[0..48]);
        b[48..52].copy_from_slice(&crc.to_be_bytes());
        b
    }

    fn decode(b: &[u8]) -> Option<Self> {
        if b.len() < 52 {
            return None;
        }
        let i64_at = |at: usize| i64::from_be_bytes(b[at..at + 8].try_into().expect("8 bytes"));
        if u64::from_be_bytes(b[24..32].try_into().ok()?) != MAGIC {
            return None;
        }
        let crc = u32::from_be_bytes(b[48..52].try_into().ok()?);
        if crc != crc32fast::hash(&b[0..48]) {
            return None;
        }
        let d = Self {
            physic_ts: i64_at(0),
            logics_ts: i64_at(8),
            index_ts: i64_at(16),
            commit_log_offset: i64_at(32),
            dispatch_offset: i64_at(40),
        };
        (d.commit_log_offset >= 0 && d.dispatch_offset >= 0).then_some(d)
    }
}

pub(crate) struct Checkpoint {
    path: PathBuf,
    file: File,
}

impl Checkpoint {
    /// Reads the checkpoint at `path`; `None` if missing or invalid.
    pub(crate) fn read(path: &Path) -> Option<CheckpointData> {
        let b = std::fs::read(path).ok()?;
        CheckpointData::decode(&b)
    }

    /// Opens (creating) the checkpoint for writing.
    ///
    /// # Errors
    /// The file cannot be opened.
    pub(crate) fn open(path: &Path) -> Result<Self> {
        let file = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path).at(path)?;
        Ok(Self { path: path.to_owned(), file })
    }

    /// Writes and syncs `data`. Blocking.
    ///
    /// # Errors
    /// Write or sync failed.
    pub(crate) fn write(&self, data: &CheckpointData) -> Result<()> {
        self.file.write_all_at(&data.encode(), 0).at(&self.path)?;
        self.file.sync_data().at(&self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("checkpoint");
        assert_eq!(Checkpoint::read(&p), None);
        let d =
            CheckpointData { physic_ts: 1, logics_ts: 2, index_ts: 3, commit_log_offset: 4096, dispatch_offset: 100 };
        Checkpoint::open(&p).unwrap().write(&d).unwrap();
        assert_eq!(Checkpoint::read(&p), Some(d));
        assert_eq!(std::fs::metadata(&p).unwrap().len(), 4096);
        let mut raw = std::fs::read(&p).unwrap();
        raw[33] ^= 1;
        std::fs::write(&p, raw).unwrap();
        assert_eq!(Checkpoint::read(&p), None);
    }
}
