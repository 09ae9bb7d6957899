//! Retention (`store-clean` thread, RocketMQ's `CleanCommitLogService` and
//! `CleanConsumeQueueService`).
//!
//! Every `clean_interval` (the first time one interval after the store opened, which
//! measures the disk itself) it measures disk usage of the store's file system and:
//! * refuses new puts above `disk_space_warning_level_ratio` (they answer
//!   `DiskFull`) until a later run measures usage below it again;
//! * deletes commit-log segments whose last modification is older than
//!   `file_reserved_time` when the hour is one of `delete_when` (an hour of the
//!   machine's local day, as RocketMQ reads it), or at any hour when usage exceeds
//!   `disk_max_used_space_ratio`;
//! * above `disk_space_clean_forcibly_ratio`, deletes the oldest segments even if
//!   they have not expired;
//! * then deletes consume-queue and index files that only reference deleted data and
//!   moves queue min offsets forward.
//!
//! Never deleted: the active (last) segment, and any segment at or past the flushed
//! or dispatched offset. A segment that is being read is unlinked but stays mapped
//! until its last reader drops the `Bytes` it holds (the mapping owns it), so a
//! concurrent pull never sees freed memory; it can only find the segment gone for
//! later lookups (`MessageWasRemoving`).

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, UNIX_EPOCH};

use crate::store::Core;
use crate::util;

/// At most this many commit-log segments are deleted per run (RocketMQ's
/// `deleteFileBatchMax`), so a cleanup never stalls the disk for long.
const MAX_DELETES_PER_RUN: usize = 10;

/// What a retention run did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CleanReport {
    pub disk_usage_ratio: Option<f64>,
    pub commit_log_segments_deleted: usize,
    pub consume_queue_files_deleted: usize,
    pub index_files_deleted: usize,
    pub commit_log_min_offset: i64,
}

fn mtime_ms(path: &std::path::Path) -> Option<i64> {
    let m = std::fs::metadata(path).ok()?.modified().ok()?;
    Some(m.duration_since(UNIX_EPOCH).ok()?.as_millis() as i64)
}

/// Whether `now` (epoch ms) falls in one of the `delete_when` hours. RocketMQ takes
/// the hour from `Calendar.getInstance()`, so it is the machine's local hour.
fn is_delete_hour(delete_hours: &[u8], now: i64) -> bool {
    let hour = util::local_time(now).hour;
    delete_hours.iter().any(|&h| u32::from(h) == hour)
}

/// One retention pass at wall-clock `now` (ms). `manual` ignores `delete_when`.
pub(crate) fn clean(core: &Core, now: i64, manual: bool) -> CleanReport {
    clean_with(core, now, manual, util::disk_usage_ratio)
}

/// [`clean`], with the file system's usage measured by `measure` (under the clean
/// lock, so concurrent runs apply their measurements in order).
fn clean_with(core: &Core, now: i64, manual: bool, measure: impl FnOnce(&Path) -> Option<f64>) -> CleanReport {
    let _guard = core.clean_lock.lock();
    let s = &core.settings;
    let usage = apply_disk_usage(core, measure(&s.root));
    let mut report = CleanReport { disk_usage_ratio: usage, ..CleanReport::default() };
    let ratio = usage.unwrap_or(0.0);
    let over = ratio > s.disk_max_used_ratio;
    let forced = ratio > s.disk_clean_forcibly_ratio;
    let hour_ok = is_delete_hour(&s.delete_hours, now);
    if manual || hour_ok || over {
        let reserved = s.file_reserved_time.as_millis() as i64;
        let cl = &core.commit_log;
        let safe_end = cl.flushed().min(core.dispatched());
        while report.commit_log_segments_deleted < MAX_DELETES_PER_RUN {
            let victim = cl.pop_front_if(|seg| {
                seg.end() <= safe_end
                    && (forced || mtime_ms(seg.path()).is_some_and(|m| m.saturating_add(reserved) <= now))
            });
            let Some(seg) = victim else { break };
            let path = seg.path().to_owned();
            drop(seg);
            match std::fs::remove_file(&path) {
                Ok(()) => {
                    tracing::info!(path = %path.display(), forced, "deleted expired commit log segment")
                }
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "failed to delete commit log segment")
                }
            }
            report.commit_log_segments_deleted += 1;
        }
    }
    let cl_min = core.commit_log.min_offset();
    report.commit_log_min_offset = cl_min;
    for q in core.all_queues() {
        report.consume_queue_files_deleted += q.delete_expired(cl_min);
    }
    if let Some(index) = &core.index {
        report.index_files_deleted += index.delete_expired(cl_min);
    }
    report
}

/// Measures the store's file system once and refuses or accepts puts by it; the
/// store does this at open, before it accepts its first put, so a broker started
/// on a full disk refuses from the start instead of until its first retention run.
pub(crate) fn measure_disk(core: &Core) {
    let _guard = core.clean_lock.lock();
    apply_disk_usage(core, util::disk_usage_ratio(&core.settings.root));
}

/// Publishes a measured usage and moves the refuse-puts flag across the warning
/// ratio, logging each change.
fn apply_disk_usage(core: &Core, usage: Option<f64>) -> Option<f64> {
    let s = &core.settings;
    core.disk_usage.store(usage.unwrap_or(f64::NAN).to_bits(), Ordering::Relaxed);
    let ratio = usage.unwrap_or(0.0);
    let full = ratio > s.disk_warning_ratio;
    if full != core.disk_full.swap(full, Ordering::AcqRel) {
        if full {
            tracing::error!(ratio, warning_ratio = s.disk_warning_ratio, "disk almost full; refusing new messages");
        } else {
            tracing::info!(ratio, "disk usage back below the warning level; accepting messages");
        }
    }
    usage
}

/// The `store-clean` thread.
pub(crate) fn run_cleaner(core: Arc<Core>) {
    let _span = tracing::info_span!("clean").entered();
    let interval = core.settings.opts.clean_interval.max(Duration::from_millis(10));
    // Opening measured the disk already; the first run comes one interval later (as
    // RocketMQ's, which waits a minute), not racing with what opening just set up.
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
        clean(&core, common::time::now_ms(), false);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use bytes::Bytes;
    use config::StoreConfig;

    use super::{clean_with, is_delete_hour};
    use crate::util::tests::{child_time_zone, run_in_time_zone};
    use crate::{MessageStore, PutMessage, PutStatus, StoreOptions};

    /// Puts are refused while a run measures usage above the warning ratio, with the
    /// figure in the stats, and accepted again as soon as a run measures it below: no
    /// restart and no operator action.
    #[test]
    fn puts_resume_once_a_run_measures_usage_below_the_warning_ratio() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = StoreConfig {
            store_path_root_dir: dir.path().to_owned(),
            mapped_file_size_commit_log: bytesize::ByteSize::mib(1),
            disk_space_warning_level_ratio: 0.90,
            disk_space_clean_forcibly_ratio: 0.85,
            ..StoreConfig::default()
        };
        // The store measures the real disk while it opens, then its own runs measure
        // again only after an hour.
        let opts = StoreOptions { clean_interval: Duration::from_secs(3600), ..StoreOptions::default() };
        let store = MessageStore::open_with(Arc::new(cfg), "127.0.0.1:10911".parse().unwrap(), opts).unwrap();
        assert!(store.stats().disk_usage_ratio.is_some(), "open measured the disk before returning");
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let put = || rt.block_on(store.put(PutMessage::new("Disk", 0, Bytes::from_static(b"x")))).status;
        let now = common::time::now_ms();

        clean_with(&store.core, now, false, |_| Some(0.95));
        assert_eq!(put(), PutStatus::DiskFull);
        let stats = store.stats();
        assert!(stats.disk_full);
        assert_eq!((stats.disk_usage_ratio, stats.disk_warning_ratio), (Some(0.95), 0.90));

        clean_with(&store.core, now, false, |_| Some(0.89));
        assert_eq!(put(), PutStatus::PutOk);
        assert!(!store.stats().disk_full);
        store.shutdown().unwrap();
    }

    /// `delete_when` hours are hours of the local day: at 13:14 UTC, which is 21:14 in
    /// UTC+8, a store in UTC+8 with `delete_when = "21"` deletes and one with "13"
    /// does not.
    #[test]
    fn delete_hours_are_local_hours() {
        // 2024-02-29T13:14:15.678Z
        let at = 1_709_212_455_678;
        match child_time_zone() {
            None => run_in_time_zone(concat!(module_path!(), "::delete_hours_are_local_hours"), "CST-8"),
            Some(_) => {
                assert!(is_delete_hour(&[4, 21], at));
                assert!(!is_delete_hour(&[13], at));
            }
        }
    }
}
