//! [`StoreConfig`]: the message store's settings.
//!
//! Names and defaults follow RocketMQ's `MessageStoreConfig`, so that the
//! on-disk layout (segment sizes, consume-queue unit) and retention behave as
//! a RocketMQ operator expects. Sizes are [`ByteSize`] and accept either a
//! number of bytes (RocketMQ style) or a string such as `"1GiB"`.

use std::path::PathBuf;
use std::time::Duration;

use bytesize::ByteSize;
use serde::{Deserialize, Serialize};

use crate::check;
use crate::error::{Error, Invalid, Result};
use crate::serde_util::byte_size;

/// Size of one consume-queue entry: commit-log offset (8), size (4), tag
/// hash (8). A consume-queue segment must hold whole entries.
pub const CONSUME_QUEUE_UNIT_SIZE: u64 = 20;

/// When a write is acknowledged relative to reaching the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum FlushDiskType {
    /// Acknowledge once the message is in the page cache; a flusher syncs
    /// every `flush_interval_commit_log`.
    AsyncFlush,
    /// Acknowledge only after the message's batch is synced to disk (group
    /// commit), waiting at most `sync_flush_timeout`.
    SyncFlush,
}

/// Message-store settings, the `[broker.store]` section of `broker.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct StoreConfig {
    /// Root of the store: `commitlog/`, `consumequeue/`, `index/`,
    /// `checkpoint`, `abort` and `config/` live under it. The commit log is
    /// always `<root>/commitlog` (RocketMQ's `storePathCommitLog` is not
    /// configurable separately).
    pub store_path_root_dir: PathBuf,
    /// Size of one commit-log segment file; a message never spans two.
    #[serde(with = "byte_size")]
    pub mapped_file_size_commit_log: ByteSize,
    /// Size of one consume-queue segment: 300 000 entries of 20 bytes.
    /// Must be a multiple of 20.
    #[serde(with = "byte_size")]
    pub mapped_file_size_consume_queue: ByteSize,
    /// Acknowledge on page cache (`ASYNC_FLUSH`) or on disk (`SYNC_FLUSH`).
    pub flush_disk_type: FlushDiskType,
    /// How often the asynchronous flusher syncs the commit log.
    #[serde(with = "humantime_serde")]
    pub flush_interval_commit_log: Duration,
    /// The asynchronous flusher waits until at least this many dirty 4 KiB
    /// pages have accumulated (RocketMQ's batching knob; 0 flushes whatever
    /// is dirty).
    pub flush_commit_log_least_pages: u32,
    /// How often consume queues are flushed.
    #[serde(with = "humantime_serde")]
    pub flush_interval_consume_queue: Duration,
    /// How long a `SYNC_FLUSH` send waits for its flush before answering
    /// `FLUSH_DISK_TIMEOUT`.
    #[serde(with = "humantime_serde")]
    pub sync_flush_timeout: Duration,
    /// Largest accepted message body (after compression), 4 MiB by default,
    /// the same limit the Java client enforces.
    #[serde(with = "byte_size")]
    pub max_message_size: ByteSize,
    /// Commit-log segments older than this become eligible for deletion.
    /// RocketMQ configures it in hours.
    #[serde(with = "humantime_serde")]
    pub file_reserved_time: Duration,
    /// Hours of the day (`"04"`, or a list such as `"04;16"`) when expired
    /// segments are deleted.
    pub delete_when: String,
    /// Disk usage, in percent, above which expired segments are deleted
    /// regardless of `delete_when`. RocketMQ clamps it to 10..=95; we reject
    /// values outside that range instead.
    pub disk_max_used_space_ratio: u8,
    /// Disk usage ratio at which writes are refused ("disk full").
    pub disk_space_warning_level_ratio: f64,
    /// Disk usage ratio at which the oldest segments are deleted even if not
    /// yet expired.
    pub disk_space_clean_forcibly_ratio: f64,
    /// Hash slots per index file.
    pub max_hash_slot_num: u32,
    /// Index entries per index file.
    pub max_index_num: u32,
    /// Build the key index (query by message key and unique id).
    pub message_index_enable: bool,
    /// Pre-fault commit-log segments ahead of the writer (the next one's first
    /// part, the active one 128 MiB ahead), so the writer finds their page-cache
    /// pages allocated. Off by default, as in RocketMQ: the writer `pwrite`s, which
    /// allocates pages more cheaply than faulting them in. SYNC_FLUSH always does it
    /// (and writes the pages to disk), so a sync never allocates blocks. The next
    /// segment's file is created ahead of need either way.
    pub warm_mapped_file_enable: bool,
    /// Verify each record's body CRC while recovering after a crash.
    pub check_crc_on_recover: bool,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            store_path_root_dir: crate::user_home().join("store"),
            mapped_file_size_commit_log: ByteSize::gib(1),
            mapped_file_size_consume_queue: ByteSize::b(300_000 * CONSUME_QUEUE_UNIT_SIZE),
            flush_disk_type: FlushDiskType::AsyncFlush,
            flush_interval_commit_log: Duration::from_millis(500),
            flush_commit_log_least_pages: 4,
            flush_interval_consume_queue: Duration::from_secs(1),
            sync_flush_timeout: Duration::from_secs(5),
            max_message_size: ByteSize::mib(4),
            file_reserved_time: Duration::from_secs(72 * 3600),
            delete_when: "04".to_owned(),
            disk_max_used_space_ratio: 75,
            disk_space_warning_level_ratio: 0.90,
            disk_space_clean_forcibly_ratio: 0.85,
            max_hash_slot_num: 5_000_000,
            max_index_num: 20_000_000,
            message_index_enable: true,
            warm_mapped_file_enable: false,
            check_crc_on_recover: true,
        }
    }
}

impl StoreConfig {
    /// Checks sizes, intervals, ratios and the `delete_when` hour list.
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] naming the first offending key (relative to this
    /// struct; callers add their section with [`Error::within`]).
    pub fn validate(&self) -> Result<()> {
        check::not_blank("store_path_root_dir", &self.store_path_root_dir.to_string_lossy())?;
        check::positive("max_message_size", self.max_message_size.as_u64())?;
        // A message is never split across segments, so the largest one must fit.
        if self.mapped_file_size_commit_log < self.max_message_size {
            return Err(Error::invalid(
                "mapped_file_size_commit_log",
                Invalid::Conflict {
                    other: "max_message_size",
                    why: "a segment must be able to hold the largest message",
                },
            ));
        }
        let cq_size = self.mapped_file_size_consume_queue.as_u64();
        check::positive("mapped_file_size_consume_queue", cq_size)?;
        if !cq_size.is_multiple_of(CONSUME_QUEUE_UNIT_SIZE) {
            return Err(Error::invalid(
                "mapped_file_size_consume_queue",
                Invalid::OutOfRange {
                    value: cq_size.to_string(),
                    expected: "a multiple of the 20-byte consume-queue entry",
                },
            ));
        }
        check::non_zero("flush_interval_commit_log", self.flush_interval_commit_log)?;
        check::non_zero("flush_interval_consume_queue", self.flush_interval_consume_queue)?;
        check::non_zero("sync_flush_timeout", self.sync_flush_timeout)?;
        check::non_zero("file_reserved_time", self.file_reserved_time)?;
        self.delete_when_hours()?;
        if !(10..=95).contains(&self.disk_max_used_space_ratio) {
            return Err(Error::invalid(
                "disk_max_used_space_ratio",
                Invalid::OutOfRange {
                    value: self.disk_max_used_space_ratio.to_string(),
                    expected: "a percentage between 10 and 95",
                },
            ));
        }
        check_ratio("disk_space_warning_level_ratio", self.disk_space_warning_level_ratio)?;
        check_ratio("disk_space_clean_forcibly_ratio", self.disk_space_clean_forcibly_ratio)?;
        // Forced cleaning has to start before writes are refused, or a full
        // disk would never recover on its own.
        if self.disk_space_clean_forcibly_ratio > self.disk_space_warning_level_ratio {
            return Err(Error::invalid(
                "disk_space_clean_forcibly_ratio",
                Invalid::Conflict {
                    other: "disk_space_warning_level_ratio",
                    why: "forced cleaning must start before writes are refused",
                },
            ));
        }
        check::positive("max_hash_slot_num", self.max_hash_slot_num.into())?;
        check::positive("max_index_num", self.max_index_num.into())?;
        Ok(())
    }

    /// The hours of the day listed in `delete_when`, e.g. `[4, 16]` for
    /// `"04;16"`.
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] if the list is empty or an entry is not an hour
    /// between 0 and 23.
    pub fn delete_when_hours(&self) -> Result<Vec<u8>> {
        let hours = self
            .delete_when
            .split(';')
            .map(str::trim)
            .filter(|token| !token.is_empty())
            .map(|token| match token.parse::<u8>() {
                Ok(hour) if hour < 24 => Ok(hour),
                _ => Err(Error::invalid(
                    "delete_when",
                    Invalid::Malformed { value: token.to_owned(), expected: "an hour between 00 and 23" },
                )),
            })
            .collect::<Result<Vec<u8>>>()?;
        if hours.is_empty() {
            return Err(Error::invalid("delete_when", Invalid::Empty));
        }
        Ok(hours)
    }
}

fn check_ratio(key: &str, ratio: f64) -> Result<()> {
    if ratio > 0.0 && ratio <= 1.0 {
        Ok(())
    } else {
        Err(Error::invalid(key, Invalid::OutOfRange { value: ratio.to_string(), expected: "a ratio in (0, 1]" }))
    }
}
