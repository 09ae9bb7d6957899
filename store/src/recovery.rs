//! Opening the store: deciding where the commit log really ends and making consume
//! queues and the index agree with it.
//!
//! * **Clean shutdown** (no `abort` marker and a valid checkpoint whose dispatch
//!   offset equals its commit-log offset): the checkpoint is trusted; the commit log
//!   ends at its offset and consume queues/index are complete.
//! * **Crash** (`abort` left behind, or no usable checkpoint): the commit log is
//!   scanned from the start of the segment holding the checkpoint's durable offset,
//!   validating magic, sizes, the physical-offset field and (if
//!   `check_crc_on_recover`) body CRCs. The first invalid entry is the end; a torn or
//!   corrupt tail there is zeroed and reported, and later segments are removed.
//!   Everything kept is synced before anything becomes visible.
//! * Either way, consume-queue and index entries at or past the rebuild point
//!   `R = min(checkpoint dispatch offset, end)` are dropped and the records in
//!   `[R, end)` are re-dispatched, so consume queues and index never point past the
//!   commit log and miss nothing before its end.

use std::path::Path;
use std::sync::Arc;

use crate::checkpoint::Checkpoint;
use crate::commit_log::CommitLog;
use crate::consume_queue::ConsumeQueue;
use crate::error::{IoContext, Result};
use crate::index::IndexService;
use crate::mapped_file::{Access, MappedFile};
use crate::settings::Settings;
use crate::types::{RecoveryReport, TruncatedTail};

pub(crate) struct Recovered {
    pub segments: Vec<Arc<MappedFile>>,
    pub end: i64,
    pub queues: Vec<ConsumeQueue>,
    pub index: Option<IndexService>,
    pub redispatch_from: i64,
    pub last_store_ts: i64,
    pub report: RecoveryReport,
}

pub(crate) fn abort_path(root: &Path) -> std::path::PathBuf {
    root.join("abort")
}

pub(crate) fn checkpoint_path(root: &Path) -> std::path::PathBuf {
    root.join("checkpoint")
}

pub(crate) fn recover(s: &Settings) -> Result<Recovered> {
    let had_abort = abort_path(&s.root).exists();
    let ckpt = Checkpoint::read(&checkpoint_path(&s.root));
    let size = s.commit_log_segment as i64;
    let mut segs = CommitLog::load_segments(&s.commit_log_dir(), s.commit_log_segment)?;
    let mut report = RecoveryReport::default();

    let cl_min = segs
        .first()
        .map_or_else(|| ckpt.map_or(0, |c| c.commit_log_offset - c.commit_log_offset % size), MappedFile::start);
    let cl_last_end = segs.last().map_or(cl_min, MappedFile::end);
    let clean = !had_abort
        && ckpt.is_some_and(|c| {
            c.dispatch_offset == c.commit_log_offset
                && c.commit_log_offset >= cl_min
                && c.commit_log_offset <= cl_last_end
        });
    report.clean_shutdown = clean;

    let mut last_store_ts = ckpt.map_or(0, |c| c.physic_ts);
    let (end, torn) = if clean {
        let end = ckpt.map_or(cl_min, |c| c.commit_log_offset);
        report.scanned_from = end;
        (end, None)
    } else if segs.is_empty() {
        (cl_min, None)
    } else {
        let safe = ckpt.map_or(cl_min, |c| c.commit_log_offset).clamp(cl_min, cl_last_end);
        let idx = (((safe - cl_min) / size) as usize).min(segs.len() - 1);
        let from = segs[idx].start();
        report.scanned_from = from;
        let scan = CommitLog::scan_from(&segs, from, s.check_crc_on_recover);
        if scan.last_ts > 0 {
            last_store_ts = last_store_ts.max(scan.last_ts);
        }
        (scan.end, scan.torn)
    };

    // A requested cut before the end (a slave dropping what its master lacks).
    let mut asked_from = None;
    let (end, torn) = match s.opts.truncate_to {
        Some(cut) if cut < end => {
            if !CommitLog::is_boundary(&segs, cut) {
                return Err(crate::error::Error::Corrupt {
                    path: s.commit_log_dir(),
                    offset: u64::try_from(cut).unwrap_or_default(),
                    reason: "truncation offset is not a record boundary",
                });
            }
            tracing::warn!(from = end, to = cut, "truncating the commit log as asked");
            asked_from = Some(end);
            (cut, None)
        }
        _ => (end, torn),
    };

    // Cut the log at `end`: zero the rest of its segment, drop later segments.
    let mut discarded = 0u64;
    // Keep every segment up to the one holding `end`.
    let keep = segs.iter().position(|f| end < f.end()).map_or(segs.len(), |i| i + 1);
    while segs.len() > keep {
        let f = segs.pop().expect("non-empty");
        let path = f.path().to_owned();
        // A record would start at byte 0: a zero head means an unused (pre-allocated)
        // segment, not data.
        if f.read(0, 64).is_some_and(|h| h.iter().any(|&b| b != 0)) {
            discarded += nonzero_tail(&f, 0);
        }
        drop(f);
        std::fs::remove_file(&path).at(&path)?;
    }
    if let Some(last) = segs.last_mut() {
        if end < last.end() {
            let local = (end - last.start()) as usize;
            discarded += last.truncate(local)?;
        }
    }
    if let Some(from) = asked_from {
        let reason = format!("truncated as asked (the log ended at {from})");
        report.truncated = Some(TruncatedTail { offset: end, reason, discarded_bytes: discarded });
    } else if let Some(reason) = torn {
        tracing::warn!(offset = end, %reason, discarded, "commit log tail was torn; truncated");
        report.truncated = Some(TruncatedTail { offset: end, reason, discarded_bytes: discarded });
    } else if discarded > 0 {
        report.truncated =
            Some(TruncatedTail { offset: end, reason: "stale bytes after the end".into(), discarded_bytes: discarded });
    }
    // Make everything kept durable before it can become visible (after a SIGKILL it
    // may exist only in the page cache).
    if !clean || report.truncated.is_some() {
        let from = report.scanned_from.min(end);
        for f in segs.iter().filter(|f| f.end() > from) {
            f.flush_all()?;
        }
    }
    // The segment the writer continues in.
    let need_new = segs.last().is_none_or(|l| end >= l.end());
    if need_new {
        let start = end - end.rem_euclid(size);
        let path = s.commit_log_dir().join(crate::settings::segment_name(start));
        let f = MappedFile::create(&path, start, s.commit_log_segment, Access::Append)?;
        segs.push(f);
    }
    if let Some(dir) = s.commit_log_dir().to_str() {
        let _ = crate::util::sync_dir(Path::new(dir));
    }
    report.commit_log_end = end;

    // Rebuild point for consume queues and index.
    let cl_min = segs.first().map_or(end, MappedFile::start);
    let mut rebuild = if clean { end } else { ckpt.map_or(cl_min, |c| c.dispatch_offset).clamp(cl_min, end) };
    let queues = load_queues(s, rebuild, cl_min, &mut report)?;
    let index = if s.index_enable {
        let (index, load) = IndexService::load(s.index_dir(), s.index_slots, s.index_entries, rebuild)?;
        report.index_entries_dropped = load.dropped;
        if let Some(from) = load.rebuild_from {
            rebuild = rebuild.min(from.max(cl_min));
        }
        Some(index)
    } else {
        None
    };
    report.redispatched_from = rebuild;
    let segments = segs.into_iter().map(Arc::new).collect();
    Ok(Recovered { segments, end, queues, index, redispatch_from: rebuild, last_store_ts, report })
}

fn load_queues(s: &Settings, rebuild: i64, cl_min: i64, report: &mut RecoveryReport) -> Result<Vec<ConsumeQueue>> {
    let root = s.cq_dir();
    std::fs::create_dir_all(&root).at(&root)?;
    let mut out = Vec::new();
    for topic_dir in std::fs::read_dir(&root).at(&root)? {
        let topic_dir = topic_dir.at(&root)?;
        let tpath = topic_dir.path();
        if !tpath.is_dir() {
            continue;
        }
        let Some(topic) = topic_dir.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        for q in std::fs::read_dir(&tpath).at(&tpath)? {
            let q = q.at(&tpath)?;
            let Some(queue_id) = q.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
                continue;
            };
            let (cq, load) = ConsumeQueue::load(&topic, queue_id, q.path(), s.cq_segment, rebuild, cl_min)?;
            report.cq_entries_dropped += load.dropped;
            out.push(cq);
        }
    }
    Ok(out)
}

fn nonzero_tail(f: &MappedFile, from: usize) -> u64 {
    match f.read(from, f.published().saturating_sub(from)) {
        Some(b) => b.iter().filter(|&&x| x != 0).count() as u64,
        None => 0,
    }
}
