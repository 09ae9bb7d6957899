//! Delivery progress of the delay levels (`config/delayOffset.json`, RocketMQ's
//! `delayOffset.json`): for each level, the next offset of its queue in
//! `SCHEDULE_TOPIC_XXXX`. Slaves copy it from their master (GET_ALL_DELAY_OFFSET).

use std::collections::BTreeMap;
use std::path::PathBuf;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::persist;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct DelayOffsetWrapper {
    /// level → next offset to deliver in queue level−1.
    pub offset_table: BTreeMap<i32, i64>,
}

/// Per-level delivery progress.
pub struct DelayOffsets {
    path: PathBuf,
    table: Mutex<BTreeMap<i32, i64>>,
}

impl DelayOffsets {
    /// # Errors
    /// The file exists but cannot be read or parsed.
    pub fn load(path: PathBuf) -> Result<Self> {
        let w: DelayOffsetWrapper = persist::load(&path)?.unwrap_or_default();
        Ok(Self { path, table: Mutex::new(w.offset_table) })
    }

    pub fn get(&self, level: i32) -> i64 {
        self.table.lock().get(&level).copied().unwrap_or(0)
    }

    pub fn set(&self, level: i32, offset: i64) {
        self.table.lock().insert(level, offset);
    }

    /// A slave takes its master's delivery progress (RocketMQ's `syncDelayOffset`).
    pub fn replace(&self, master: DelayOffsetWrapper) {
        *self.table.lock() = master.offset_table;
    }

    pub fn snapshot(&self) -> DelayOffsetWrapper {
        DelayOffsetWrapper { offset_table: self.table.lock().clone() }
    }

    /// # Errors
    /// I/O failure.
    pub fn persist(&self) -> Result<()> {
        persist::save(&self.path, || self.snapshot())
    }
}
