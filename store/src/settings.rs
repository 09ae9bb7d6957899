//! The store's view of its configuration: [`config::StoreConfig`] reduced to the plain
//! numbers the engine uses, checked once at open. Keeping this adapter in one place
//! means a rename in `config` touches one function.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use common::delay::{DelayLevels, DEFAULT_DELAY_LEVELS};
use config::{FlushDiskType, StoreConfig};

use crate::error::{Error, Result};

/// Size of one consume-queue entry (offset i64, size i32, tags code i64).
pub const CQ_ENTRY_SIZE: usize = 20;

/// Knobs that are not (yet) in [`StoreConfig`]; [`StoreOptions::default`] gives the
/// values RocketMQ uses.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Capacity of the queue in front of the commit-log writer, in requests.
    pub put_queue_capacity: usize,
    /// How long a put waits for room in that queue before answering
    /// [`crate::PutStatus::OsPageCacheBusy`] (RocketMQ: `osPageCacheBusyTimeOutMills`).
    pub put_queue_timeout: Duration,
    /// Delay levels used to rebuild `SCHEDULE_TOPIC_XXXX` consume-queue entries from
    /// the commit log (their tags code is the delivery time). Must match the broker's
    /// `messageDelayLevel`.
    pub delay_levels: DelayLevels,
    /// How often the retention service checks expiry and disk usage.
    pub clean_interval: Duration,
    /// SYNC_MASTER: a put is acknowledged once a replica holds it as well (see
    /// [`crate::MessageStore::replica_progress`]); `None` for every other role.
    pub replica_ack: Option<ReplicaAck>,
    /// Open with the commit log cut at this offset, which must be a record boundary:
    /// what follows is deleted and consume queues and the index forget it (a broker
    /// that rejoins as a slave drops the tail its new master does not have). Beyond
    /// the log's end it changes nothing.
    pub truncate_to: Option<i64>,
}

/// How a SYNC_MASTER's puts wait for a replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplicaAck {
    /// A put whose nearest replica is further behind than this (or that has no
    /// replica) does not wait: it answers `SlaveNotAvailable` (RocketMQ's
    /// `haMaxGapNotInSync`).
    pub max_gap: i64,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            put_queue_capacity: 16 * 1024,
            put_queue_timeout: Duration::from_secs(1),
            delay_levels: DelayLevels::parse(DEFAULT_DELAY_LEVELS).expect("default delay levels parse"),
            clean_interval: Duration::from_secs(10),
            replica_ack: None,
            truncate_to: None,
        }
    }
}

/// Validated engine settings.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub root: PathBuf,
    pub commit_log_segment: usize,
    pub cq_segment: usize,
    pub sync_flush: bool,
    pub flush_interval: Duration,
    pub flush_least_bytes: usize,
    pub cq_flush_interval: Duration,
    pub sync_flush_timeout: Duration,
    pub max_message_size: usize,
    pub file_reserved_time: Duration,
    pub delete_hours: Vec<u8>,
    pub disk_max_used_ratio: f64,
    pub disk_warning_ratio: f64,
    pub disk_clean_forcibly_ratio: f64,
    pub index_slots: u32,
    pub index_entries: u32,
    pub index_enable: bool,
    pub warm: bool,
    pub check_crc_on_recover: bool,
    pub opts: StoreOptions,
}

impl Settings {
    pub(crate) fn from_config(cfg: &Arc<StoreConfig>, opts: StoreOptions) -> Result<Self> {
        let commit_log_segment = usize::try_from(cfg.mapped_file_size_commit_log.as_u64())
            .map_err(|_| Error::Config("mapped_file_size_commit_log does not fit in memory"))?;
        let cq_segment = usize::try_from(cfg.mapped_file_size_consume_queue.as_u64())
            .map_err(|_| Error::Config("mapped_file_size_consume_queue does not fit in memory"))?;
        if commit_log_segment < 4096 || commit_log_segment % 4096 != 0 {
            return Err(Error::Config("mapped_file_size_commit_log must be a positive multiple of 4096"));
        }
        if cq_segment == 0 || cq_segment % CQ_ENTRY_SIZE != 0 || cq_segment % 4 != 0 {
            return Err(Error::Config("mapped_file_size_consume_queue must be a positive multiple of 20 (and of 4)"));
        }
        let max_message_size = usize::try_from(cfg.max_message_size.as_u64()).unwrap_or(usize::MAX);
        if max_message_size == 0 {
            return Err(Error::Config("max_message_size must be positive"));
        }
        if cfg.max_hash_slot_num == 0 || cfg.max_index_num == 0 {
            return Err(Error::Config("max_hash_slot_num and max_index_num must be positive"));
        }
        let delete_hours = cfg.delete_when_hours().map_err(|_| Error::Config("delete_when is not a list of hours"))?;
        Ok(Self {
            root: cfg.store_path_root_dir.clone(),
            commit_log_segment,
            cq_segment,
            sync_flush: cfg.flush_disk_type == FlushDiskType::SyncFlush,
            flush_interval: cfg.flush_interval_commit_log.max(Duration::from_millis(1)),
            flush_least_bytes: cfg.flush_commit_log_least_pages as usize * crate::mapped_file::PAGE_SIZE,
            cq_flush_interval: cfg.flush_interval_consume_queue.max(Duration::from_millis(1)),
            sync_flush_timeout: cfg.sync_flush_timeout,
            max_message_size,
            file_reserved_time: cfg.file_reserved_time,
            delete_hours,
            disk_max_used_ratio: f64::from(cfg.disk_max_used_space_ratio) / 100.0,
            disk_warning_ratio: cfg.disk_space_warning_level_ratio,
            disk_clean_forcibly_ratio: cfg.disk_space_clean_forcibly_ratio,
            index_slots: cfg.max_hash_slot_num,
            index_entries: cfg.max_index_num,
            index_enable: cfg.message_index_enable,
            warm: cfg.warm_mapped_file_enable,
            check_crc_on_recover: cfg.check_crc_on_recover,
            opts,
        })
    }

    pub(crate) fn commit_log_dir(&self) -> PathBuf {
        self.root.join("commitlog")
    }

    pub(crate) fn cq_dir(&self) -> PathBuf {
        self.root.join("consumequeue")
    }

    pub(crate) fn index_dir(&self) -> PathBuf {
        self.root.join("index")
    }
}

/// The 20-digit zero-padded file name RocketMQ gives segments.
pub(crate) fn segment_name(offset: i64) -> String {
    format!("{offset:020}")
}

/// Parses a 20-digit segment name.
pub(crate) fn parse_segment_name(name: &str) -> Option<i64> {
    if name.len() != 20 || !name.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    name.parse().ok()
}
