//! The message-key index: RocketMQ's hash index files (remoting-protocol.md §10.3),
//! keyed by `topic#key` for every `KEYS` word and the `UNIQ_KEY` of each record.
//!
//! ```text
//!  header (40 B): beginTimestamp i64 | endTimestamp i64 | beginPhyOffset i64 |
//!                 endPhyOffset i64 | hashSlotCount i32 | indexCount i32
//!  slots:         slotNum × i32 — newest entry number whose hash % slotNum == slot
//!  entries:       indexNum × 20 B — keyHash i32 | phyOffset i64 | timeDiff(s) i32 | prev i32
//! ```
//! Entry numbers start at 1 (0 means "none"). A file is named by its creation time
//! (`yyyyMMddHHmmssSSS`) in the machine's local time zone, as RocketMQ names it, and
//! is full after `indexNum - 1` entries.
//!
//! Invariants:
//! * Only the thread that dispatches writes (one at a time; the mutex in
//!   [`IndexService`] makes it explicit). An entry is written before the slot that points at it, and the
//!   header count after that, all with `Release`; readers use `Acquire`. All access
//!   goes through 32-bit atomics ([`Access::Words`]).
//! * Within a file, entries are appended in commit-log order, so recovery can roll
//!   back a suffix exactly: undoing entries newest-first restores each slot to the
//!   entry's `prev`.
//! * Files are ordered by the commit-log offsets they hold, not by name: local-time
//!   names repeat an hour when clocks go back.
//! * Lookups return candidate offsets only; the store re-reads each record and checks
//!   the real topic and key, so hash collisions and stale entries are harmless.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};

use crate::error::{Error, IoContext, Result};
use crate::mapped_file::{Access, MappedFile};

const HEADER_LEN: usize = 40;
const ENTRY_LEN: usize = 20;
const H_BEGIN_TS: usize = 0;
const H_END_TS: usize = 8;
const H_BEGIN_PHY: usize = 16;
const H_END_PHY: usize = 24;
const H_SLOT_COUNT: usize = 32;
const H_INDEX_COUNT: usize = 36;

/// One index file.
pub(crate) struct IndexFile {
    file: MappedFile,
    slots: u32,
    max_entries: u32,
}

impl IndexFile {
    pub(crate) fn file_size(slots: u32, entries: u32) -> usize {
        HEADER_LEN + slots as usize * 4 + entries as usize * ENTRY_LEN
    }

    fn create(path: &Path, slots: u32, entries: u32) -> Result<Self> {
        let file = MappedFile::create(path, 0, Self::file_size(slots, entries), Access::Words)?;
        file.store_u32(H_INDEX_COUNT, 1);
        Ok(Self { file, slots, max_entries: entries })
    }

    fn open(path: &Path, slots: u32, entries: u32) -> Result<Self> {
        let file = MappedFile::open(path, 0, Self::file_size(slots, entries), Access::Words)?;
        let f = Self { file, slots, max_entries: entries };
        if f.index_count() == 0 {
            f.file.store_u32(H_INDEX_COUNT, 1);
        }
        Ok(f)
    }

    fn h64(&self, at: usize) -> i64 {
        self.file.load_i64(at).unwrap_or(0)
    }

    pub(crate) fn begin_timestamp(&self) -> i64 {
        self.h64(H_BEGIN_TS)
    }

    pub(crate) fn end_timestamp(&self) -> i64 {
        self.h64(H_END_TS)
    }

    pub(crate) fn begin_phy_offset(&self) -> i64 {
        self.h64(H_BEGIN_PHY)
    }

    pub(crate) fn end_phy_offset(&self) -> i64 {
        self.h64(H_END_PHY)
    }

    pub(crate) fn index_count(&self) -> u32 {
        self.file.load_u32(H_INDEX_COUNT).unwrap_or(0)
    }

    fn slot_count(&self) -> u32 {
        self.file.load_u32(H_SLOT_COUNT).unwrap_or(0)
    }

    pub(crate) fn is_full(&self) -> bool {
        self.index_count() >= self.max_entries
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.index_count() <= 1
    }

    fn slot_pos(&self, hash: i32) -> usize {
        HEADER_LEN + (hash.unsigned_abs() % self.slots) as usize * 4
    }

    fn entry_pos(&self, n: u32) -> usize {
        HEADER_LEN + self.slots as usize * 4 + n as usize * ENTRY_LEN
    }

    /// Adds an entry; false when the file is full.
    fn put(&self, hash: i32, phy: i64, store_ts: i64) -> bool {
        let count = self.index_count();
        if count >= self.max_entries {
            return false;
        }
        if count <= 1 {
            self.file.store_i64(H_BEGIN_PHY, phy);
            self.file.store_i64(H_BEGIN_TS, store_ts);
        }
        let begin_ts = self.begin_timestamp();
        let diff = if begin_ts <= 0 { 0 } else { ((store_ts - begin_ts) / 1000).clamp(0, i64::from(i32::MAX)) };
        let slot_pos = self.slot_pos(hash);
        let old = self.file.load_u32(slot_pos).unwrap_or(0);
        let prev = if old >= count { 0 } else { old };
        let at = self.entry_pos(count);
        self.file.store_u32(at, hash as u32);
        self.file.store_i64(at + 4, phy);
        self.file.store_u32(at + 12, diff as u32);
        self.file.store_u32(at + 16, prev);
        self.file.store_u32(slot_pos, count);
        if prev == 0 {
            self.file.store_u32(H_SLOT_COUNT, self.slot_count() + 1);
        }
        self.file.store_i64(H_END_PHY, phy);
        self.file.store_i64(H_END_TS, store_ts);
        self.file.store_u32(H_INDEX_COUNT, count + 1);
        true
    }

    /// Whether the file may hold entries stored in `[begin, end]`.
    fn time_matches(&self, begin: i64, end: i64) -> bool {
        !self.is_empty() && begin <= self.end_timestamp() && end >= self.begin_timestamp()
    }

    /// Appends to `out` the commit-log offsets of entries with this hash stored in
    /// `[begin, end]`, newest first, until `out` holds `max`.
    fn lookup(&self, hash: i32, begin: i64, end: i64, max: usize, out: &mut Vec<i64>) {
        // `put` stores the entry, then the slot, then the count, so a lookup racing
        // with it can find the slot naming the entry being added, not counted yet.
        // Rejecting that entry would skip the whole chain behind it (older entries,
        // acknowledged long ago). Reading the slot before the count bounds it to
        // entry `count`, which is complete: it was stored before the slot.
        let mut n = self.file.load_u32(self.slot_pos(hash)).unwrap_or(0);
        let count = self.index_count();
        let begin_ts = self.begin_timestamp();
        let mut steps = 0u32;
        while n > 0 && n <= count && n < self.max_entries && out.len() < max && steps < count {
            steps += 1;
            let at = self.entry_pos(n);
            let h = self.file.load_u32(at).unwrap_or(0) as i32;
            let phy = self.file.load_i64(at + 4).unwrap_or(-1);
            let diff = i64::from(self.file.load_u32(at + 12).unwrap_or(0));
            let prev = self.file.load_u32(at + 16).unwrap_or(0);
            let t = begin_ts + diff * 1000;
            if t < begin - 999 {
                // Chains run newest to oldest; stored times are truncated to seconds.
                break;
            }
            if h == hash && t <= end && phy >= 0 {
                out.push(phy);
            }
            if prev >= n {
                break;
            }
            n = prev;
        }
    }

    /// Undoes every entry whose offset is `>= from_phy`. Returns the number removed,
    /// or `Err(())` when the file is inconsistent (torn after a power loss) and has to
    /// be rebuilt instead.
    fn rollback(&self, from_phy: i64) -> Result<u64, ()> {
        let count = self.index_count();
        if count == 0 || count > self.max_entries {
            return Err(());
        }
        let mut n = count - 1;
        let mut dropped = 0;
        while n >= 1 {
            let at = self.entry_pos(n);
            let phy = self.file.load_i64(at + 4).ok_or(())?;
            if phy < from_phy {
                break;
            }
            let hash = self.file.load_u32(at).ok_or(())? as i32;
            let prev = self.file.load_u32(at + 16).ok_or(())?;
            let slot_pos = self.slot_pos(hash);
            if hash < 0 || prev >= n || self.file.load_u32(slot_pos) != Some(n) {
                return Err(());
            }
            self.file.store_u32(slot_pos, prev);
            if prev == 0 {
                self.file.store_u32(H_SLOT_COUNT, self.slot_count().saturating_sub(1));
            }
            for w in 0..5 {
                self.file.store_u32(at + w * 4, 0);
            }
            dropped += 1;
            n -= 1;
        }
        self.file.store_u32(H_INDEX_COUNT, n + 1);
        if n >= 1 {
            let at = self.entry_pos(n);
            let phy = self.file.load_i64(at + 4).unwrap_or(0);
            let diff = i64::from(self.file.load_u32(at + 12).unwrap_or(0));
            self.file.store_i64(H_END_PHY, phy);
            self.file.store_i64(H_END_TS, self.begin_timestamp() + diff * 1000);
        } else {
            for h in [H_BEGIN_TS, H_END_TS, H_BEGIN_PHY, H_END_PHY] {
                self.file.store_i64(h, 0);
            }
        }
        Ok(dropped)
    }

    fn path(&self) -> &Path {
        self.file.path()
    }

    fn flush(&self) -> Result<()> {
        self.file.flush_all()
    }
}

/// All index files, oldest first; the last one takes new entries.
pub(crate) struct IndexService {
    dir: PathBuf,
    slots: u32,
    entries: u32,
    files: RwLock<Vec<Arc<IndexFile>>>,
    write: Mutex<()>,
}

/// What loading the index did.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct IndexLoad {
    pub dropped: u64,
    /// Re-dispatch must start at or before this offset to rebuild discarded files.
    pub rebuild_from: Option<i64>,
}

impl IndexService {
    /// Loads the index files, rolling back entries at or past `truncate_at`.
    ///
    /// # Errors
    /// Unreadable directory or a file of the wrong size.
    pub(crate) fn load(dir: PathBuf, slots: u32, entries: u32, truncate_at: i64) -> Result<(Self, IndexLoad)> {
        std::fs::create_dir_all(&dir).at(&dir)?;
        let mut names = Vec::new();
        for e in std::fs::read_dir(&dir).at(&dir)? {
            let e = e.at(&dir)?;
            let name = e.file_name().to_string_lossy().into_owned();
            if name.len() == 17 && name.bytes().all(|b| b.is_ascii_digit()) {
                names.push(e.path());
            } else if name.ends_with(".tmp") {
                let _ = std::fs::remove_file(e.path());
            } else {
                return Err(Error::BadFileName { path: e.path() });
            }
        }
        names.sort();
        let mut load = IndexLoad::default();
        let mut files = Vec::new();
        for path in names {
            let f = IndexFile::open(&path, slots, entries)?;
            if f.end_phy_offset() >= truncate_at || f.is_empty() {
                match f.rollback(truncate_at) {
                    Ok(n) => load.dropped += n,
                    Err(()) => {
                        tracing::warn!(path = %path.display(), "index file inconsistent; rebuilding it");
                        let from = f.begin_phy_offset();
                        load.rebuild_from = Some(load.rebuild_from.map_or(from, |r: i64| r.min(from)));
                        drop(f);
                        std::fs::remove_file(&path).at(&path)?;
                        continue;
                    }
                }
                if f.is_empty() {
                    drop(f);
                    std::fs::remove_file(&path).at(&path)?;
                    continue;
                }
            }
            files.push(Arc::new(f));
        }
        // Names sort by local time, which is not monotonic across a change from
        // daylight saving time; the offsets inside are (every file kept is non-empty).
        files.sort_by_key(|f| f.begin_phy_offset());
        let svc = Self { dir, slots, entries, files: RwLock::new(files), write: Mutex::new(()) };
        Ok((svc, load))
    }

    /// Indexes `keys` of the record at `phy` (dispatching thread). Records below the
    /// last indexed offset are skipped, which makes re-dispatch idempotent.
    ///
    /// # Errors
    /// A new index file could not be created.
    pub(crate) fn build<'k>(
        &self,
        topic: &str,
        keys: impl Iterator<Item = &'k str>,
        phy: i64,
        store_ts: i64,
    ) -> Result<()> {
        let _w = self.write.lock();
        let mut file = self.files.read().last().cloned();
        if let Some(f) = &file {
            if phy < f.end_phy_offset() {
                return Ok(());
            }
        }
        for key in keys {
            if key.is_empty() {
                continue;
            }
            let hash = common::hash::index_key_hash(topic, key);
            loop {
                let f = match &file {
                    Some(f) if !f.is_full() => f.clone(),
                    _ => {
                        let f = Arc::new(self.new_file(store_ts)?);
                        self.files.write().push(f.clone());
                        file = Some(f.clone());
                        f
                    }
                };
                if f.put(hash, phy, store_ts) {
                    break;
                }
                file = None;
            }
        }
        Ok(())
    }

    fn new_file(&self, now_ms: i64) -> Result<IndexFile> {
        let mut ts = now_ms.max(common::time::now_ms());
        loop {
            let path = self.dir.join(crate::util::local_time(ts).compact());
            if !path.exists() {
                return IndexFile::create(&path, self.slots, self.entries);
            }
            ts += 1;
        }
    }

    /// Candidate commit-log offsets for `topic#key` stored in `[begin, end]`, newest
    /// first, deduplicated, at most `max`.
    pub(crate) fn query(&self, topic: &str, key: &str, max: usize, begin: i64, end: i64) -> Vec<i64> {
        let hash = common::hash::index_key_hash(topic, key);
        let files = self.files.read().clone();
        let mut out = Vec::new();
        for f in files.iter().rev() {
            if out.len() >= max {
                break;
            }
            if f.time_matches(begin, end) {
                f.lookup(hash, begin, end, max, &mut out);
            }
        }
        let mut seen = std::collections::HashSet::new();
        out.retain(|p| seen.insert(*p));
        out
    }

    /// Deletes files whose entries all point below `cl_min` (never the last one).
    pub(crate) fn delete_expired(&self, cl_min: i64) -> usize {
        let mut removed = 0;
        loop {
            let victim = {
                let mut files = self.files.write();
                if files.len() < 2 || files[0].end_phy_offset() >= cl_min {
                    break;
                }
                files.remove(0)
            };
            let path = victim.path().to_owned();
            drop(victim);
            if let Err(e) = std::fs::remove_file(&path) {
                tracing::warn!(path = %path.display(), error = %e, "failed to delete index file");
            }
            removed += 1;
        }
        removed
    }

    /// Flushes every file with pending changes.
    ///
    /// # Errors
    /// `msync` failed.
    pub(crate) fn flush(&self) -> Result<()> {
        let last = self.files.read().last().cloned();
        if let Some(f) = last {
            f.flush()?;
        }
        Ok(())
    }

    /// Flushes every file (shutdown).
    ///
    /// # Errors
    /// `msync` failed.
    pub(crate) fn flush_all(&self) -> Result<()> {
        for f in self.files.read().iter() {
            f.flush()?;
        }
        Ok(())
    }

    #[cfg(test)]
    pub(crate) fn file_count(&self) -> usize {
        self.files.read().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_lookup_and_roll_to_new_file() {
        let dir = tempfile::tempdir().unwrap();
        let (idx, _) = IndexService::load(dir.path().join("index"), 4, 6, i64::MAX).unwrap();
        let base = 1_700_000_000_000;
        for i in 0..12i64 {
            let key = format!("k{}", i % 3);
            idx.build("T", [key.as_str()].into_iter(), i * 100, base + i * 1000).unwrap();
        }
        assert!(idx.file_count() >= 3, "5 entries per file");
        let got = idx.query("T", "k1", 100, 0, i64::MAX);
        assert_eq!(got, vec![1000, 700, 400, 100]);
        assert_eq!(idx.query("T", "k1", 2, 0, i64::MAX), vec![1000, 700]);
        // Time range narrows the result.
        let got = idx.query("T", "k1", 100, base + 3000, base + 7000);
        assert_eq!(got, vec![700, 400]);
        assert!(idx.query("U", "k1", 100, 0, i64::MAX).iter().all(|p| [100, 400, 700, 1000].contains(p)));
        // Re-dispatch of an already indexed record is ignored.
        idx.build("T", ["k1"].into_iter(), 700, base + 7000).unwrap();
        assert_eq!(idx.query("T", "k1", 100, 0, i64::MAX).len(), 4);
    }

    /// What a lookup can observe while `put` adds an entry with the same slot: the
    /// entry and the slot stored, the count not yet. The older entries behind it were
    /// acknowledged long ago and must still be found.
    #[test]
    fn a_lookup_during_a_put_follows_the_chain_behind_it() {
        let dir = tempfile::tempdir().unwrap();
        let f = IndexFile::create(&dir.path().join("file"), 4, 10).unwrap();
        let base = 1_700_000_000_000;
        let hash = common::hash::index_key_hash("T", "k");
        assert!(f.put(hash, 100, base));
        assert!(f.put(hash, 200, base));
        // The first half of `put(hash, 300, base)`.
        let count = f.index_count();
        let slot = f.slot_pos(hash);
        let at = f.entry_pos(count);
        f.file.store_u32(at, hash as u32);
        f.file.store_i64(at + 4, 300);
        f.file.store_u32(at + 12, 0);
        f.file.store_u32(at + 16, f.file.load_u32(slot).unwrap());
        f.file.store_u32(slot, count);
        let mut out = Vec::new();
        f.lookup(hash, 0, i64::MAX, 10, &mut out);
        assert_eq!(out, [300, 200, 100]);
    }

    #[test]
    fn rollback_restores_chains_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("index");
        let base = 1_700_000_000_000;
        {
            let (idx, _) = IndexService::load(d.clone(), 2, 100, i64::MAX).unwrap();
            for i in 0..20i64 {
                let key = format!("k{}", i % 4);
                idx.build("T", [key.as_str(), "all"].into_iter(), i * 10, base + i).unwrap();
            }
            idx.flush_all().unwrap();
        }
        let (idx, load) = IndexService::load(d.clone(), 2, 100, 120).unwrap();
        assert_eq!(load.dropped, 16);
        assert_eq!(idx.query("T", "all", 100, 0, i64::MAX), (0..12).rev().map(|i| i * 10).collect::<Vec<_>>());
        assert_eq!(idx.query("T", "k3", 100, 0, i64::MAX), vec![110, 70, 30]);
        idx.build("T", ["k3"].into_iter(), 120, base + 12).unwrap();
        assert_eq!(idx.query("T", "k3", 100, 0, i64::MAX), vec![120, 110, 70, 30]);
        drop(idx);
        // Rolling back everything removes the file.
        let (idx, _) = IndexService::load(d, 2, 100, 0).unwrap();
        assert_eq!(idx.file_count(), 0);
    }

    /// A file is named by its creation time in the local time zone: a store time
    /// ahead of the clock, 2100-01-01T00:00:00.123Z, names it 08:00:00.123 in UTC+8.
    #[test]
    fn files_are_named_in_local_time() {
        match crate::util::tests::child_time_zone() {
            None => crate::util::tests::run_in_time_zone(
                concat!(module_path!(), "::files_are_named_in_local_time"),
                "CST-8",
            ),
            Some(_) => {
                let dir = tempfile::tempdir().unwrap();
                let (idx, _) = IndexService::load(dir.path().join("index"), 4, 6, i64::MAX).unwrap();
                idx.build("T", ["k"].into_iter(), 0, 4_102_444_800_123).unwrap();
                let names: Vec<String> = std::fs::read_dir(dir.path().join("index"))
                    .unwrap()
                    .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .collect();
                assert_eq!(names, ["21000101080000123"]);
            }
        }
    }

    /// A file whose name sorts first can hold the later entries (an hour repeats
    /// when clocks go back); loading orders files by their offsets, so expiry drops
    /// the one holding the older entries.
    #[test]
    fn load_orders_files_by_offset_not_name() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("index");
        {
            // Two entries per file. The first file is named after the year 2100, the
            // second one after the clock.
            let (idx, _) = IndexService::load(d.clone(), 4, 3, i64::MAX).unwrap();
            idx.build("T", ["a"].into_iter(), 0, 4_102_444_800_000).unwrap();
            idx.build("T", ["a"].into_iter(), 100, 4_102_444_800_000).unwrap();
            idx.build("T", ["b"].into_iter(), 200, 1_700_000_000_000).unwrap();
            assert_eq!(idx.file_count(), 2);
            idx.flush_all().unwrap();
        }
        let (idx, _) = IndexService::load(d, 4, 3, i64::MAX).unwrap();
        assert_eq!(idx.delete_expired(150), 1);
        assert_eq!(idx.query("T", "b", 10, 0, i64::MAX), vec![200]);
        assert!(idx.query("T", "a", 10, 0, i64::MAX).is_empty());
    }
}
