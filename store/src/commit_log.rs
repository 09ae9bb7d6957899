// PERF-CRITICAL PATH
//! The commit log: one append-only log of every record of every topic, stored as
//! fixed-size memory-mapped segments named by their 20-digit start offset
//! (remoting-protocol.md §10.1).
//!
//! This module owns the segment list and the three offsets that order everything
//! else in the store:
//!
//! * `written` — end of the last record the writer has published. Every byte below it
//!   is a complete record (or an end-of-segment blank) and is immutable.
//! * `flushed` — end of the data known to be on disk; `flushed <= written`.
//! * the segment list — sorted, contiguous; the first segment's start is the minimum
//!   offset (retention removes from the front), the last one holds the write position.
//!
//! Appending is done by the single writer thread ([`crate::writer`]); flushing by
//! [`crate::flush`]; scanning for recovery is [`CommitLog::scan_from`]. A record never
//! spans two segments: when `record + 8` bytes do not fit, the writer fills the rest of
//! the segment with a BLANK entry and continues in the next one, as RocketMQ does.

use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use common::record::{self, Entry, RecordView};
use parking_lot::{RwLock, RwLockReadGuard};

use crate::error::{Error, IoContext, Result};
use crate::mapped_file::{Access, MappedFile};
use crate::settings::parse_segment_name;

/// Where a scan of the commit log stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ScanEnd {
    /// Offset one past the last valid record (or blank).
    pub end: i64,
    /// Why the entry at `end` was rejected, when it was not simply zeroes.
    pub torn: Option<String>,
    /// Store timestamp of the last valid record (0 if none was scanned).
    pub last_ts: i64,
}

pub(crate) struct CommitLog {
    segment_size: usize,
    segments: RwLock<Vec<Arc<MappedFile>>>,
    written: AtomicI64,
    flushed: AtomicI64,
}

impl CommitLog {
    /// Opens every segment in `dir` (creating `dir`), fully published for scanning.
    /// Returns the segments still owned so recovery can truncate them.
    ///
    /// # Errors
    /// Unreadable directory, a foreign file name, a size mismatch or a gap.
    pub(crate) fn load_segments(dir: &Path, segment_size: usize) -> Result<Vec<MappedFile>> {
        std::fs::create_dir_all(dir).at(dir)?;
        let mut named = Vec::new();
        for entry in std::fs::read_dir(dir).at(dir)? {
            let entry = entry.at(dir)?;
            let path = entry.path();
            let name = entry.file_name();
            let Some(start) = name.to_str().and_then(parse_segment_name) else {
                if name.to_str().is_some_and(|n| n.ends_with(".tmp")) {
                    let _ = std::fs::remove_file(&path);
                    continue;
                }
                return Err(Error::BadFileName { path });
            };
            named.push((start, path));
        }
        named.sort();
        let mut out: Vec<MappedFile> = Vec::with_capacity(named.len());
        for (start, path) in named {
            if start % segment_size as i64 != 0 {
                return Err(Error::BadFileName { path });
            }
            if let Some(prev) = out.last() {
                if prev.end() != start {
                    return Err(Error::Gap { path, found: start, expected: prev.end() });
                }
            }
            out.push(MappedFile::open(&path, start, segment_size, Access::Append)?);
        }
        Ok(out)
    }

    /// Scans records from `from` (which must be a record boundary inside `segments`)
    /// validating magic, sizes, the physical-offset field and optionally body CRCs.
    pub(crate) fn scan_from(segments: &[MappedFile], from: i64, check_crc: bool) -> ScanEnd {
        let Some(first) = segments.first() else {
            return ScanEnd { end: from, torn: None, last_ts: 0 };
        };
        let mut last_ts = 0;
        let size = first.size() as i64;
        let mut idx = ((from - first.start()) / size) as usize;
        let mut pos = from;
        while idx < segments.len() {
            let seg = &segments[idx];
            let local = (pos - seg.start()) as usize;
            let Some(buf) = seg.read(local, seg.published() - local) else {
                return ScanEnd { end: pos, torn: Some("position beyond segment".into()), last_ts };
            };
            match record::scan(buf, check_crc) {
                Ok(Entry::Record(view)) => {
                    if view.physical_offset() != pos {
                        let torn = Some(format!("physical offset field {} != position", view.physical_offset()));
                        return ScanEnd { end: pos, torn, last_ts };
                    }
                    // A record must leave room for the end-of-segment blank.
                    if view.total_size() + record::BLANK_LEN > buf.len() {
                        let torn = Some("record overlaps the end-of-segment reserve".into());
                        return ScanEnd { end: pos, torn, last_ts };
                    }
                    last_ts = view.store_timestamp();
                    pos += view.total_size() as i64;
                }
                Ok(Entry::Blank(n)) => {
                    if n != buf.len() {
                        let torn = Some(format!("blank of {n} bytes with {} left", buf.len()));
                        return ScanEnd { end: pos, torn, last_ts };
                    }
                    pos = seg.end();
                    idx += 1;
                }
                Err(e) => {
                    let torn = if buf.iter().take(64).all(|&b| b == 0) { None } else { Some(e.to_string()) };
                    return ScanEnd { end: pos, torn, last_ts };
                }
            }
        }
        ScanEnd { end: pos, torn: None, last_ts }
    }

    /// Whether a record starts exactly at `at` (walking the records of its segment).
    pub(crate) fn is_boundary(segments: &[MappedFile], at: i64) -> bool {
        let Some(seg) = segments.iter().find(|s| s.start() <= at && at < s.end()) else {
            return false;
        };
        let mut pos = seg.start();
        while pos < at {
            let local = (pos - seg.start()) as usize;
            let Some(buf) = seg.read(local, seg.published() - local) else { return false };
            match record::scan(buf, false) {
                Ok(Entry::Record(view)) if view.physical_offset() == pos => pos += view.total_size() as i64,
                _ => return false,
            }
        }
        pos == at
    }

    pub(crate) fn new(segment_size: usize, segments: Vec<Arc<MappedFile>>, end: i64) -> Self {
        Self {
            segment_size,
            segments: RwLock::new(segments),
            written: AtomicI64::new(end),
            flushed: AtomicI64::new(end),
        }
    }

    pub(crate) fn segment_size(&self) -> usize {
        self.segment_size
    }

    #[inline]
    pub(crate) fn written(&self) -> i64 {
        self.written.load(Ordering::Acquire)
    }

    pub(crate) fn set_written(&self, end: i64) {
        self.written.store(end, Ordering::Release);
    }

    #[inline]
    pub(crate) fn flushed(&self) -> i64 {
        self.flushed.load(Ordering::Acquire)
    }

    pub(crate) fn set_flushed(&self, end: i64) {
        self.flushed.fetch_max(end, Ordering::AcqRel);
    }

    /// Smallest offset still stored (start of the first segment).
    pub(crate) fn min_offset(&self) -> i64 {
        let segs = self.segments.read();
        match segs.first() {
            Some(s) => s.start(),
            None => self.written(),
        }
    }

    /// The segment holding `offset`, if it still exists.
    #[inline]
    pub(crate) fn segment_for(&self, offset: i64) -> Option<Arc<MappedFile>> {
        self.view().segment(offset).cloned()
    }

    /// The segments as they are now, for a batch of reads under one lock (retention
    /// waits until the view is dropped: keep it short).
    #[inline]
    pub(crate) fn view(&self) -> SegmentsView<'_> {
        SegmentsView { segs: self.segments.read(), segment_size: self.segment_size }
    }

    /// Start offset of the segment after the one holding `offset`.
    pub(crate) fn roll_next(&self, offset: i64) -> i64 {
        let size = self.segment_size as i64;
        offset - offset.rem_euclid(size) + size
    }

    pub(crate) fn push_segment(&self, seg: Arc<MappedFile>) {
        self.segments.write().push(seg);
    }

    pub(crate) fn segments(&self) -> Vec<Arc<MappedFile>> {
        self.segments.read().clone()
    }

    /// Replaces every segment (an empty log moving to a replica's start); returns the
    /// old ones.
    pub(crate) fn replace_segments(&self, segs: Vec<Arc<MappedFile>>) -> Vec<Arc<MappedFile>> {
        std::mem::replace(&mut *self.segments.write(), segs)
    }

    /// Removes the first segment if it ends at or before `limit` (never the last one).
    pub(crate) fn pop_front_if(&self, pred: impl FnOnce(&MappedFile) -> bool) -> Option<Arc<MappedFile>> {
        let mut segs = self.segments.write();
        if segs.len() < 2 || !pred(&segs[0]) {
            return None;
        }
        Some(segs.remove(0))
    }

    /// A zero-copy handle on the record at `offset` of `size` bytes (as a consume
    /// queue entry gives them). `None` if the segment is gone or the range is not
    /// published.
    #[inline]
    pub(crate) fn read(&self, offset: i64, size: usize) -> Option<Bytes> {
        self.view().read(offset, size)
    }

    /// Runs `f` on a borrowed view of the record at `offset`, whose size is read from
    /// the record itself (for lookups by offset and timestamp searches).
    pub(crate) fn with_record<R>(&self, offset: i64, limit: i64, f: impl FnOnce(RecordView<'_>) -> R) -> Option<R> {
        let seg = self.segment_for(offset)?;
        let local = (offset - seg.start()) as usize;
        let avail = (seg.published() as i64).min(limit - seg.start());
        if avail <= local as i64 {
            return None;
        }
        let buf = seg.read(local, avail as usize - local)?;
        RecordView::parse(buf).ok().map(f)
    }

    /// Store timestamp of the record at `offset`, reading only the fixed header.
    #[inline]
    pub(crate) fn store_timestamp_at(&self, offset: i64) -> Option<i64> {
        let seg = self.segment_for(offset)?;
        let local = (offset - seg.start()) as usize;
        let head = seg.read(local, record::pos::BORN_HOST)?;
        let sys_flag = i32::from_be_bytes(head[record::pos::SYS_FLAG..record::pos::SYS_FLAG + 4].try_into().ok()?);
        let at = record::store_timestamp_pos(sys_flag);
        let ts = seg.read(local + at, 8)?;
        Some(i64::from_be_bytes(ts.try_into().ok()?))
    }
}

/// The commit log's segments under one read lock: see [`CommitLog::view`].
pub(crate) struct SegmentsView<'a> {
    segs: RwLockReadGuard<'a, Vec<Arc<MappedFile>>>,
    segment_size: usize,
}

impl SegmentsView<'_> {
    /// The segment holding `offset`, if it still exists.
    #[inline]
    pub(crate) fn segment(&self, offset: i64) -> Option<&Arc<MappedFile>> {
        let first = self.segs.first()?;
        if offset < first.start() {
            return None;
        }
        self.segs.get(((offset - first.start()) / self.segment_size as i64) as usize)
    }

    /// See [`CommitLog::read`].
    #[inline]
    pub(crate) fn read(&self, offset: i64, size: usize) -> Option<Bytes> {
        let seg = self.segment(offset)?;
        seg.bytes((offset - seg.start()) as usize, size)
    }

    /// Asks the CPU to start loading the record at `offset` (`size` bytes) — header and
    /// tail, see [`record::prefetch`] — when it is stored; a hint, nothing is read.
    #[inline]
    pub(crate) fn prefetch(&self, offset: i64, size: usize) {
        if let Some(rec) = self.segment(offset).and_then(|seg| seg.read((offset - seg.start()) as usize, size)) {
            record::prefetch(rec);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::segment_name;
    use std::net::SocketAddr;

    fn rec(phy: i64, body: &[u8]) -> Vec<u8> {
        common::record::RecordRef {
            topic: "T",
            queue_id: 0,
            flag: 0,
            queue_offset: 0,
            physical_offset: phy,
            sys_flag: 0,
            born_timestamp: 1,
            born_host: SocketAddr::from(([1, 2, 3, 4], 5)),
            store_timestamp: 2,
            store_host: SocketAddr::from(([1, 2, 3, 4], 6)),
            reconsume_times: 0,
            prepared_transaction_offset: 0,
            body,
            properties: b"",
            body_crc: None,
        }
        .to_bytes()
        .unwrap()
        .to_vec()
    }

    #[test]
    fn scan_stops_at_zeroes_crc_and_wrong_offset() {
        let dir = tempfile::tempdir().unwrap();
        let seg = Arc::new(MappedFile::create(&dir.path().join(segment_name(0)), 0, 4096, Access::Append).unwrap());
        let mut w = seg.take_writer().unwrap();
        let a = rec(0, b"aaaa");
        let b = rec(a.len() as i64, b"bbbb");
        w.append_with(a.len(), |x| x.copy_from_slice(&a));
        w.append_with(b.len(), |x| x.copy_from_slice(&b));
        w.publish();
        seg.flush_published().unwrap();
        drop(w);
        drop(seg);
        let segs = CommitLog::load_segments(dir.path(), 4096).unwrap();
        let end = CommitLog::scan_from(&segs, 0, true);
        assert_eq!(end, ScanEnd { end: (a.len() + b.len()) as i64, torn: None, last_ts: 2 });
        drop(segs);

        // Corrupt the second body: CRC catches it.
        let path = dir.path().join(segment_name(0));
        let mut raw = std::fs::read(&path).unwrap();
        let body_at = a.len() + 88;
        raw[body_at] ^= 1;
        std::fs::write(&path, &raw).unwrap();
        let segs = CommitLog::load_segments(dir.path(), 4096).unwrap();
        let end = CommitLog::scan_from(&segs, 0, true);
        assert_eq!(end.end, a.len() as i64);
        assert!(end.torn.unwrap().contains("crc"));
        // Without CRC checking the record is accepted.
        assert_eq!(CommitLog::scan_from(&segs, 0, false).end, (a.len() + b.len()) as i64);
        drop(segs);

        // A record whose physical offset field is stale is rejected.
        raw[body_at] ^= 1;
        raw[a.len() + 28..a.len() + 36].copy_from_slice(&0i64.to_be_bytes());
        std::fs::write(&path, &raw).unwrap();
        let segs = CommitLog::load_segments(dir.path(), 4096).unwrap();
        let end = CommitLog::scan_from(&segs, 0, true);
        assert_eq!(end.end, a.len() as i64);
        assert!(end.torn.unwrap().contains("physical offset"));
    }

    #[test]
    fn load_rejects_gaps_and_foreign_files() {
        let dir = tempfile::tempdir().unwrap();
        MappedFile::create(&dir.path().join(segment_name(0)), 0, 4096, Access::Append).unwrap();
        MappedFile::create(&dir.path().join(segment_name(8192)), 8192, 4096, Access::Append).unwrap();
        assert!(matches!(CommitLog::load_segments(dir.path(), 4096), Err(Error::Gap { .. })));
        std::fs::remove_file(dir.path().join(segment_name(8192))).unwrap();
        std::fs::write(dir.path().join("junk"), b"x").unwrap();
        assert!(matches!(CommitLog::load_segments(dir.path(), 4096), Err(Error::BadFileName { .. })));
    }
}
