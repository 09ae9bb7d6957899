// PERF-CRITICAL PATH
//! Commit-log flushing on the `store-flush` thread, and the consume-queue/index
//! flush + checkpoint on `store-cq-flush`. Disk syncs run only on these threads (and
//! at open/shutdown), never on an async runtime worker.
//!
//! * SYNC_FLUSH — group commit: the flusher syncs everything written so far
//!   (`msync` of the dirty range, which Linux turns into a data sync of the file),
//!   advances `flushed`, then itself dispatches the range it just made durable
//!   ([`crate::dispatch`]) and fires the visibility signals of the puts it covered
//!   ([`crate::ack`]). While it syncs and dispatches, the writer keeps appending the
//!   next batch, so one sync serves all the puts that arrived in the meantime.
//! * ASYNC_FLUSH — RocketMQ's `FlushRealTimeService`: every
//!   `flush_interval_commit_log`, sync if at least `flush_commit_log_least_pages`
//!   pages are dirty, or whatever is dirty when the last sync is older than ten
//!   intervals. Puts are acknowledged by the writer, which dispatches their records
//!   from the page cache; the flusher plays no part in acknowledgements.
//!
//! Invariant: `flushed` is advanced only to a value of `written` read *before* the
//! sync started, so everything below `flushed` really is on disk.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::checkpoint::CheckpointData;
use crate::dispatch::{Dispatcher, KnownTags};
use crate::error::Result;
use crate::store::Core;

/// Syncs the commit log up to at least `target` (from `from`).
fn flush_commit_log(core: &Core, from: i64, target: i64) -> Result<()> {
    for seg in core.commit_log.segments() {
        if seg.end() > from && seg.start() < target {
            seg.flush_published()?;
        }
    }
    Ok(())
}

/// One flush step; returns whether anything was synced.
pub(crate) fn flush_once(core: &Core) -> Result<bool> {
    let cl = &core.commit_log;
    let target = cl.written();
    let ts = core.last_written_ts.load(Ordering::Acquire);
    let from = cl.flushed();
    if target <= from {
        return Ok(false);
    }
    flush_commit_log(core, from, target)?;
    cl.set_flushed(target);
    core.last_flushed_ts.store(ts, Ordering::Release);
    core.stats.flushes.fetch_add(1, Ordering::Relaxed);
    Ok(true)
}

/// The `store-flush` thread.
pub(crate) fn run_flusher(core: Arc<Core>) {
    let _span = tracing::info_span!("flush").entered();
    let sync = core.settings.sync_flush;
    let interval = core.settings.flush_interval;
    let thorough = interval * 10;
    let mut last_flush = Instant::now();
    let mut next_tick = Instant::now() + interval;
    let mut dispatcher = Dispatcher::new();
    loop {
        if core.halted() {
            return;
        }
        let writer_done = core.writer_done.load(Ordering::Acquire);
        if sync || writer_done {
            match flush_once(&core) {
                Ok(true) => {
                    if sync {
                        // Durable now, hence eligible: make it visible and answer its
                        // puts here, with no hand-off to another thread.
                        dispatcher.dispatch_to(&core, core.commit_log.flushed(), &mut KnownTags::none());
                        dispatcher.finish();
                    }
                    continue;
                }
                Ok(false) => {}
                Err(e) => {
                    tracing::error!(error = %e, "commit log flush failed");
                    core.writable.store(false, Ordering::Release);
                }
            }
            if writer_done {
                return;
            }
            std::thread::park_timeout(Duration::from_millis(100));
            continue;
        }
        let now = Instant::now();
        if now < next_tick {
            std::thread::park_timeout(next_tick - now);
            continue;
        }
        next_tick = now + interval;
        let cl = &core.commit_log;
        let dirty = (cl.written() - cl.flushed()).max(0) as usize;
        let due = dirty > 0 && now.duration_since(last_flush) >= thorough;
        if dirty >= core.settings.flush_least_bytes.max(1) || due {
            match flush_once(&core) {
                Ok(_) => last_flush = now,
                Err(e) => {
                    tracing::error!(error = %e, "commit log flush failed");
                    core.writable.store(false, Ordering::Release);
                }
            }
        }
    }
}

/// Flushes every consume queue and the index, then records a checkpoint whose
/// offsets were captured before those flushes.
///
/// # Errors
/// A sync or the checkpoint write failed.
pub(crate) fn checkpoint_now(core: &Core) -> Result<()> {
    let dispatched = core.dispatched();
    let logics_ts = core.last_dispatched_ts.load(Ordering::Acquire);
    for cq in core.all_queues() {
        cq.flush()?;
    }
    if let Some(index) = &core.index {
        index.flush()?;
    }
    let cl_offset = core.commit_log.flushed();
    let physic_ts = core.last_flushed_ts.load(Ordering::Acquire);
    let data = CheckpointData {
        physic_ts,
        logics_ts,
        index_ts: logics_ts,
        commit_log_offset: cl_offset,
        dispatch_offset: dispatched,
    };
    core.checkpoint.lock().write(&data)
}

/// The `store-cq-flush` thread.
pub(crate) fn run_cq_flusher(core: Arc<Core>) {
    let _span = tracing::info_span!("cq_flush").entered();
    let interval = core.settings.cq_flush_interval;
    let mut next = Instant::now() + interval;
    loop {
        if core.stopping() {
            return;
        }
        let now = Instant::now();
        if now < next {
            std::thread::park_timeout(next - now);
            continue;
        }
        next = now + interval;
        if let Err(e) = checkpoint_now(&core) {
            tracing::error!(error = %e, "consume queue flush / checkpoint failed");
        }
    }
}
