// PERF-CRITICAL PATH
//! Consume queues: one per topic/queue, a dense array of 20-byte entries
//! (commit-log offset i64, record size i32, tags code i64; big-endian) stored in
//! fixed-size files named by their 20-digit start *byte* offset
//! (remoting-protocol.md §10.2). Entry `k` lives at byte `k * 20` of the queue's
//! logical space.
//!
//! Invariants:
//! * Only the thread that dispatches appends (one at a time: the writer, the flusher,
//!   or the thread opening or closing the store; see `dispatch`), through the queue's
//!   single [`MappedWriter`]; readers see entries below `max_offset` (published with
//!   `Release` after the entry's bytes), never a half-written entry.
//! * Entries are in increasing commit-log order, so truncating everything at or past
//!   a commit-log offset drops a suffix.
//! * An entry with size 0 is a hole (a queue that starts mid-file, or a gap the
//!   dispatch had to fill); readers skip it.
//! * `min_offset` only moves forward (retention); `max_offset` only moves forward
//!   except during recovery, before the queue is shared.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};

use crate::error::{Error, IoContext, Result};
use crate::mapped_file::{Access, MappedFile, MappedWriter};
use crate::settings::{parse_segment_name, segment_name, CQ_ENTRY_SIZE};
use crate::types::CqEntry;

/// Decodes the entry at the start of `b` (at least 20 bytes).
#[inline]
pub(crate) fn decode_entry(b: &[u8]) -> CqEntry {
    let mut o = [0u8; 8];
    o.copy_from_slice(&b[0..8]);
    let mut s = [0u8; 4];
    s.copy_from_slice(&b[8..12]);
    let mut t = [0u8; 8];
    t.copy_from_slice(&b[12..20]);
    CqEntry { phy_offset: i64::from_be_bytes(o), size: i32::from_be_bytes(s), tags_code: i64::from_be_bytes(t) }
}

#[inline]
fn encode_entry(e: &CqEntry, dst: &mut [u8]) {
    dst[0..8].copy_from_slice(&e.phy_offset.to_be_bytes());
    dst[8..12].copy_from_slice(&e.size.to_be_bytes());
    dst[12..20].copy_from_slice(&e.tags_code.to_be_bytes());
}

pub(crate) struct ConsumeQueue {
    topic: String,
    queue_id: i32,
    dir: PathBuf,
    /// Bytes per file.
    segment_size: usize,
    segments: RwLock<Vec<Arc<MappedFile>>>,
    writer: Mutex<Option<MappedWriter>>,
    min_offset: AtomicI64,
    max_offset: AtomicI64,
    /// Set by `destroy`; a racing dispatch append is dropped instead of
    /// recreating files.
    deleted: AtomicBool,
}

impl std::fmt::Debug for ConsumeQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsumeQueue")
            .field("topic", &self.topic)
            .field("queue_id", &self.queue_id)
            .field("min", &self.min_offset())
            .field("max", &self.max_offset())
            .finish()
    }
}

/// What loading a queue from disk did.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct CqLoad {
    pub dropped: u64,
}

impl ConsumeQueue {
    pub(crate) fn create(topic: &str, queue_id: i32, dir: PathBuf, segment_size: usize) -> Self {
        Self {
            topic: topic.to_owned(),
            queue_id,
            dir,
            segment_size,
            segments: RwLock::new(Vec::new()),
            writer: Mutex::new(None),
            min_offset: AtomicI64::new(0),
            max_offset: AtomicI64::new(0),
            deleted: AtomicBool::new(false),
        }
    }

    /// Loads a queue from `dir`, dropping every entry whose commit-log offset is at or
    /// past `truncate_at` (recovery's rebuild point) and computing the min offset from
    /// `cl_min`.
    ///
    /// # Errors
    /// Unreadable files, foreign names or sizes.
    pub(crate) fn load(
        topic: &str,
        queue_id: i32,
        dir: PathBuf,
        segment_size: usize,
        truncate_at: i64,
        cl_min: i64,
    ) -> Result<(Self, CqLoad)> {
        let mut named = Vec::new();
        for entry in std::fs::read_dir(&dir).at(&dir)? {
            let entry = entry.at(&dir)?;
            let path = entry.path();
            let Some(start) = entry.file_name().to_str().and_then(parse_segment_name) else {
                if path.extension().is_some_and(|e| e == "tmp") {
                    let _ = std::fs::remove_file(&path);
                    continue;
                }
                return Err(Error::BadFileName { path });
            };
            if start % segment_size as i64 != 0 {
                return Err(Error::BadFileName { path });
            }
            named.push((start, path));
        }
        named.sort();
        let mut files: Vec<MappedFile> = Vec::new();
        for (start, path) in named {
            if let Some(prev) = files.last() {
                if prev.end() != start {
                    return Err(Error::Gap { path, found: start, expected: prev.end() });
                }
            }
            files.push(MappedFile::open(&path, start, segment_size, Access::Append)?);
        }
        let mut load = CqLoad::default();
        let epf = (segment_size / CQ_ENTRY_SIZE) as i64;
        // Find the last valid entry scanning backwards; drop entries >= truncate_at.
        let mut max_offset: Option<i64> = None;
        for f in files.iter_mut().rev() {
            let base = f.start() / CQ_ENTRY_SIZE as i64;
            let mut keep = 0usize;
            for i in (0..epf as usize).rev() {
                let Some(b) = f.read(i * CQ_ENTRY_SIZE, CQ_ENTRY_SIZE) else {
                    break;
                };
                let e = decode_entry(b);
                if e.size <= 0 && e.phy_offset == 0 && e.tags_code == 0 {
                    continue;
                }
                if e.size > 0 && e.phy_offset >= 0 && e.phy_offset < truncate_at {
                    keep = i + 1;
                    break;
                }
                load.dropped += 1;
            }
            f.truncate(keep * CQ_ENTRY_SIZE)?;
            if keep > 0 {
                max_offset = Some(base + keep as i64);
                break;
            }
        }
        // Drop files entirely past the end (the last kept file stays writable).
        let end_file_start = match max_offset {
            Some(m) => ((m - 1) / epf) * epf * CQ_ENTRY_SIZE as i64,
            None => files.first().map_or(0, MappedFile::start),
        };
        while files.len() > 1 && files.last().is_some_and(|f| f.start() > end_file_start) {
            let f = files.pop().expect("non-empty");
            let path = f.path().to_owned();
            drop(f);
            std::fs::remove_file(&path).at(&path)?;
        }
        let max = max_offset.unwrap_or_else(|| files.first().map_or(0, |f| f.start() / CQ_ENTRY_SIZE as i64));
        let segments: Vec<Arc<MappedFile>> = files.into_iter().map(Arc::new).collect();
        let writer = segments.last().and_then(MappedFile::take_writer);
        let cq = Self {
            topic: topic.to_owned(),
            queue_id,
            dir,
            segment_size,
            segments: RwLock::new(segments),
            writer: Mutex::new(writer),
            min_offset: AtomicI64::new(0),
            max_offset: AtomicI64::new(max),
            deleted: AtomicBool::new(false),
        };
        let first = cq.segments.read().first().map_or(max, |f| f.start() / CQ_ENTRY_SIZE as i64);
        cq.min_offset.store(first, Ordering::Release);
        cq.correct_min_offset(cl_min);
        Ok((cq, load))
    }

    pub(crate) fn topic(&self) -> &str {
        &self.topic
    }

    pub(crate) fn queue_id(&self) -> i32 {
        self.queue_id
    }

    #[inline]
    pub(crate) fn max_offset(&self) -> i64 {
        self.max_offset.load(Ordering::Acquire)
    }

    #[inline]
    pub(crate) fn min_offset(&self) -> i64 {
        self.min_offset.load(Ordering::Acquire).min(self.max_offset())
    }

    /// Appends the entry for queue offset `offset`. Idempotent: an offset below the
    /// current max is ignored (re-dispatch after recovery). Dispatching thread only.
    ///
    /// # Errors
    /// A new file could not be created.
    pub(crate) fn put(&self, offset: i64, entry: CqEntry) -> Result<()> {
        let max = self.max_offset();
        if offset < max {
            return Ok(());
        }
        let mut guard = self.writer.lock();
        if self.deleted.load(Ordering::Acquire) {
            return Ok(());
        }
        let mut fresh = false;
        if offset > max {
            if self.min_offset.load(Ordering::Acquire) >= max {
                // An empty (new, or fully expired) queue may start anywhere.
                fresh = true;
            } else {
                tracing::warn!(topic = %self.topic, queue_id = self.queue_id, expected = max, offset,
                    "consume queue gap; leaving holes");
            }
        }
        let seg = self.segment_size as i64;
        let byte = offset * CQ_ENTRY_SIZE as i64;
        let file_start = byte - byte % seg;
        if guard.as_ref().is_none_or(|w| w.file().start() != file_start) {
            if let Some(w) = guard.as_mut() {
                // Whatever is left of the old file reads as holes.
                let end = w.file().size();
                w.skip_to(end);
                w.publish();
            }
            *guard = None;
            let mut segs = self.segments.write();
            if fresh {
                // Nothing readable is left in the old files: start the queue over so
                // the files stay contiguous.
                for s in segs.drain(..) {
                    let _ = std::fs::remove_file(s.path());
                }
            }
            let mut next = segs.last().map_or(file_start, |s| s.end());
            if next > file_start {
                return Err(Error::Corrupt {
                    path: self.dir.clone(),
                    offset: byte as u64,
                    reason: "consume queue offset behind its files",
                });
            }
            // Keep files contiguous (lookups compute the file index arithmetically).
            while next <= file_start {
                let file = Arc::new(self.create_file(next)?);
                if next == file_start {
                    *guard = file.take_writer();
                }
                segs.push(file);
                next += seg;
            }
        }
        if fresh {
            self.min_offset.store(offset, Ordering::Release);
        }
        let w = guard.as_mut().expect("writer for the current file");
        let local = (byte - file_start) as usize;
        if w.pos() > local {
            return Err(Error::Corrupt {
                path: self.dir.clone(),
                offset: byte as u64,
                reason: "consume queue writer ahead of max offset",
            });
        }
        // Unpublished bytes are zero, so skipping leaves holes (size 0) behind.
        w.skip_to(local);
        w.append_with(CQ_ENTRY_SIZE, |b| encode_entry(&entry, b));
        w.publish();
        self.max_offset.store(offset + 1, Ordering::Release);
        Ok(())
    }

    fn create_file(&self, start: i64) -> Result<MappedFile> {
        std::fs::create_dir_all(&self.dir).at(&self.dir)?;
        let path = self.dir.join(segment_name(start));
        match MappedFile::create(&path, start, self.segment_size, Access::Append) {
            Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::AlreadyExists => {
                // Left over from a deleted queue: start it over.
                std::fs::remove_file(&path).at(&path)?;
                MappedFile::create(&path, start, self.segment_size, Access::Append)
            }
            other => other,
        }
    }

    /// The entry at `offset`, if it is between min and max and its file exists.
    #[inline]
    pub(crate) fn get(&self, offset: i64) -> Option<CqEntry> {
        if offset < self.min_offset() || offset >= self.max_offset() {
            return None;
        }
        let byte = offset * CQ_ENTRY_SIZE as i64;
        let segs = self.segments.read();
        let first = segs.first()?;
        if byte < first.start() {
            return None;
        }
        let idx = ((byte - first.start()) / self.segment_size as i64) as usize;
        let seg = segs.get(idx)?;
        seg.read((byte - seg.start()) as usize, CQ_ENTRY_SIZE).map(decode_entry)
    }

    /// Runs `f` over the published entries from `offset` to the end of the file
    /// holding it (at most `limit` entries), as RocketMQ's `getIndexBuffer` does.
    /// Returns `None` if that file is gone.
    #[inline]
    pub(crate) fn with_entries<R>(&self, offset: i64, limit: usize, f: impl FnOnce(&[u8]) -> R) -> Option<R> {
        let max = self.max_offset();
        if offset < self.min_offset() || offset >= max {
            return None;
        }
        let byte = offset * CQ_ENTRY_SIZE as i64;
        let seg = {
            let segs = self.segments.read();
            let first = segs.first()?;
            if byte < first.start() {
                return None;
            }
            let idx = ((byte - first.start()) / self.segment_size as i64) as usize;
            segs.get(idx)?.clone()
        };
        let local = (byte - seg.start()) as usize;
        let in_file = (seg.size() - local) / CQ_ENTRY_SIZE;
        let n = ((max - offset) as usize).min(in_file).min(limit);
        seg.read(local, n * CQ_ENTRY_SIZE).map(f)
    }

    /// Moves the min offset to the first entry whose record is at or past `cl_min`.
    pub(crate) fn correct_min_offset(&self, cl_min: i64) {
        let max = self.max_offset();
        let mut lo = self.min_offset.load(Ordering::Acquire).min(max);
        // Entries are sorted by commit-log offset (holes aside): binary search for the
        // first entry >= cl_min, treating holes as belonging to their right neighbour.
        let mut hi = max;
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let below = match self.first_real_at_or_after(mid, hi) {
                Some((_, e)) => e.phy_offset < cl_min,
                None => false,
            };
            if below {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        self.min_offset.fetch_max(lo, Ordering::AcqRel);
    }

    fn first_real_at_or_after(&self, from: i64, to: i64) -> Option<(i64, CqEntry)> {
        let mut at = from;
        while at < to {
            let byte = at * CQ_ENTRY_SIZE as i64;
            let segs = self.segments.read();
            let first = segs.first()?;
            if byte < first.start() {
                at = first.start() / CQ_ENTRY_SIZE as i64;
                continue;
            }
            let idx = ((byte - first.start()) / self.segment_size as i64) as usize;
            let seg = segs.get(idx)?;
            let e = decode_entry(seg.read((byte - seg.start()) as usize, CQ_ENTRY_SIZE)?);
            if e.size > 0 {
                return Some((at, e));
            }
            at += 1;
        }
        None
    }

    /// Deletes files whose entries all point below `cl_min` (never the last file).
    /// Returns how many were removed.
    pub(crate) fn delete_expired(&self, cl_min: i64) -> usize {
        self.correct_min_offset(cl_min);
        let min = self.min_offset.load(Ordering::Acquire);
        let mut removed = 0;
        loop {
            let victim = {
                let mut segs = self.segments.write();
                if segs.len() < 2 {
                    break;
                }
                let end_entry = segs[0].end() / CQ_ENTRY_SIZE as i64;
                if end_entry > min {
                    break;
                }
                segs.remove(0)
            };
            let path = victim.path().to_owned();
            drop(victim);
            if let Err(e) = std::fs::remove_file(&path) {
                tracing::warn!(path = %path.display(), error = %e, "failed to delete consume queue file");
            }
            removed += 1;
        }
        removed
    }

    /// Flushes dirty entries; returns bytes synced.
    ///
    /// # Errors
    /// `msync` failed.
    pub(crate) fn flush(&self) -> Result<usize> {
        let segs: Vec<Arc<MappedFile>> = {
            let segs = self.segments.read();
            segs.iter().rev().take(2).cloned().collect()
        };
        let mut n = 0;
        for s in segs {
            n += s.flush_published()?;
        }
        Ok(n)
    }

    /// Deletes every file of this queue (the queue must no longer be reachable).
    pub(crate) fn destroy(&self) {
        let mut w = self.writer.lock();
        self.deleted.store(true, Ordering::Release);
        *w = None;
        drop(w);
        let segs = std::mem::take(&mut *self.segments.write());
        for s in segs {
            let _ = std::fs::remove_file(s.path());
        }
        let _ = std::fs::remove_dir(&self.dir);
        self.max_offset.store(0, Ordering::Release);
        self.min_offset.store(0, Ordering::Release);
    }

    /// Binary search for the first entry whose store time is >= `ts`, reading store
    /// times through `store_ts(phy)`. Assumes store times are non-decreasing along the
    /// queue (the writer guarantees it). Returns an offset in `[min, max]`.
    pub(crate) fn search_time(&self, ts: i64, store_ts: impl Fn(i64) -> Option<i64>) -> i64 {
        let mut lo = self.min_offset();
        let mut hi = self.max_offset();
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let t = match self.first_real_at_or_after(mid, hi) {
                Some((_, e)) => store_ts(e.phy_offset).unwrap_or(i64::MIN),
                None => i64::MAX,
            };
            if t < ts {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(phy: i64) -> CqEntry {
        CqEntry { phy_offset: phy, size: 100, tags_code: phy * 7 }
    }

    #[test]
    fn put_get_across_files_and_reload_with_truncation() {
        let dir = tempfile::tempdir().unwrap();
        let qdir = dir.path().join("T").join("0");
        let cq = ConsumeQueue::create("T", 0, qdir.clone(), 5 * CQ_ENTRY_SIZE);
        for i in 0..12 {
            cq.put(i, e(i * 100)).unwrap();
        }
        cq.put(3, e(999)).unwrap(); // idempotent
        assert_eq!(cq.max_offset(), 12);
        assert_eq!(cq.get(3), Some(e(300)));
        assert_eq!(cq.get(11), Some(e(1100)));
        assert_eq!(cq.get(12), None);
        let n = cq.with_entries(3, 100, |b| b.len() / CQ_ENTRY_SIZE).unwrap();
        assert_eq!(n, 2, "stops at the end of the file");
        cq.flush().unwrap();
        drop(cq);

        let (cq, load) = ConsumeQueue::load("T", 0, qdir.clone(), 5 * CQ_ENTRY_SIZE, 800, 0).unwrap();
        assert_eq!(cq.max_offset(), 8);
        assert_eq!(load.dropped, 4);
        assert_eq!(cq.get(7), Some(e(700)));
        cq.put(8, e(800)).unwrap();
        assert_eq!(cq.get(8), Some(e(800)));
        // The third file (offsets 10..) was removed.
        assert!(!qdir.join(segment_name(10 * CQ_ENTRY_SIZE as i64)).exists());
        drop(cq);
        let (cq, _) = ConsumeQueue::load("T", 0, qdir, 5 * CQ_ENTRY_SIZE, i64::MAX, 250).unwrap();
        assert_eq!(cq.max_offset(), 9);
        assert_eq!(cq.min_offset(), 3, "entries below the commit-log min are dropped logically");
    }

    #[test]
    fn queue_starting_mid_way_and_gaps() {
        let dir = tempfile::tempdir().unwrap();
        let qdir = dir.path().join("T").join("1");
        let cq = ConsumeQueue::create("T", 1, qdir.clone(), 4 * CQ_ENTRY_SIZE);
        cq.put(6, e(600)).unwrap();
        assert_eq!((cq.min_offset(), cq.max_offset()), (6, 7));
        assert_eq!(cq.get(5), None);
        assert_eq!(cq.get(6), Some(e(600)));
        cq.put(10, e(1000)).unwrap();
        assert_eq!(cq.max_offset(), 11);
        assert_eq!(cq.get(7).unwrap().size, 0, "hole");
        assert_eq!(cq.get(10), Some(e(1000)));
        drop(cq);
        let (cq, _) = ConsumeQueue::load("T", 1, qdir, 4 * CQ_ENTRY_SIZE, i64::MAX, 0).unwrap();
        assert_eq!(cq.max_offset(), 11);
        assert_eq!(cq.get(10), Some(e(1000)));
    }

    #[test]
    fn time_search_is_lower_bound() {
        let dir = tempfile::tempdir().unwrap();
        let cq = ConsumeQueue::create("T", 0, dir.path().join("q"), 3 * CQ_ENTRY_SIZE);
        for i in 0..10 {
            cq.put(i, e(i)).unwrap();
        }
        // store time of phy p = 10 * (p / 2): 0,0,10,10,20,20,...
        let ts = |p: i64| Some(10 * (p / 2));
        assert_eq!(cq.search_time(-5, ts), 0);
        assert_eq!(cq.search_time(10, ts), 2);
        assert_eq!(cq.search_time(11, ts), 4);
        assert_eq!(cq.search_time(40, ts), 8);
        assert_eq!(cq.search_time(41, ts), 10);
    }
}
