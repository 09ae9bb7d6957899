//! Shared helpers for the store's integration tests.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use bytesize::ByteSize;
use store::{FlushDiskType, MessageStore, PutMessage, StoreConfig};

pub const STORE_HOST: &str = "10.0.0.1:10911";

pub fn store_host() -> SocketAddr {
    STORE_HOST.parse().unwrap()
}

/// A config with small files so tests roll segments quickly.
pub fn small_config(root: &Path, segment: u64, flush: FlushDiskType) -> StoreConfig {
    StoreConfig {
        store_path_root_dir: root.to_owned(),
        mapped_file_size_commit_log: ByteSize::b(segment),
        mapped_file_size_consume_queue: ByteSize::b(20 * 50),
        flush_disk_type: flush,
        flush_interval_commit_log: Duration::from_millis(20),
        flush_interval_consume_queue: Duration::from_millis(50),
        max_message_size: ByteSize::b(segment / 2),
        max_hash_slot_num: 64,
        max_index_num: 200,
        ..no_disk_pressure(StoreConfig::default())
    }
}

/// Disk-usage limits the store can never reach, so a nearly full machine (CI disks
/// run at 80–90 %) neither refuses puts nor force-deletes the segments a test is
/// checking. Tests of the disk-pressure rules set their own ratios.
pub fn no_disk_pressure(cfg: StoreConfig) -> StoreConfig {
    StoreConfig {
        disk_max_used_space_ratio: 95,
        disk_space_warning_level_ratio: 1.0,
        disk_space_clean_forcibly_ratio: 1.0,
        ..cfg
    }
}

pub fn open(cfg: &StoreConfig) -> MessageStore {
    MessageStore::open(Arc::new(cfg.clone()), store_host()).expect("open store")
}

pub fn msg(topic: &str, queue_id: i32, body: &[u8]) -> PutMessage {
    let mut m = PutMessage::new(topic, queue_id, Bytes::copy_from_slice(body));
    m.born_host = "192.168.1.2:50000".parse().unwrap();
    m.born_timestamp = 1_700_000_000_000;
    m
}

/// Properties with `TAGS`, `KEYS` and `UNIQ_KEY`.
pub fn props(tag: &str, keys: &str, uniq: &str) -> String {
    let mut p = common::Properties::new();
    if !tag.is_empty() {
        p.insert("TAGS", tag);
    }
    if !keys.is_empty() {
        p.insert("KEYS", keys);
    }
    if !uniq.is_empty() {
        p.insert("UNIQ_KEY", uniq);
    }
    p.encode()
}

/// Waits for `cond` with a deadline (no fixed sleeps).
pub fn eventually(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::yield_now();
        std::thread::sleep(Duration::from_millis(1));
    }
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}
