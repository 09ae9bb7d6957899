//! Retention: expired commit-log segments go, consume-queue and index files that only
//! reference them follow, min offsets move, readers holding old records are safe.

mod support;

use std::time::{Duration, SystemTime};

use common::record::RecordView;
use store::{FlushDiskType, GetRequest, GetStatus};
use support::*;

#[test]
fn expired_segments_and_dependent_files_are_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = small_config(dir.path(), 4096, FlushDiskType::AsyncFlush);
    cfg.max_index_num = 50;
    let store = open(&cfg);
    let rt = runtime();
    let mut results = Vec::new();
    for i in 0..100 {
        let m = msg("Ret", 0, &[i as u8; 300]).with_properties(props("", &format!("k{i}"), ""));
        results.push(rt.block_on(store.put(m)));
    }
    assert!(store.wait_dispatched(Duration::from_secs(5)));
    let end = store.commit_log_max_offset();
    assert!(eventually(Duration::from_secs(5), || store.commit_log_flushed_offset() == end));
    store.checkpoint().unwrap();
    let files = store.commit_log_files();
    assert!(files.len() >= 10, "{}", files.len());
    let cq_dir = dir.path().join("consumequeue").join("Ret").join("0");
    let cq_files_before = std::fs::read_dir(&cq_dir).unwrap().count();
    let index_files_before = std::fs::read_dir(dir.path().join("index")).unwrap().count();
    assert_eq!(cq_files_before, 2);

    // Nothing is old enough yet.
    let rep = store.delete_expired_files();
    assert_eq!(rep.commit_log_segments_deleted, 0);

    // A reader holds a record of the first segment across its deletion.
    let held = store.get_messages(&GetRequest::new("Ret", 0, 0, 1)).messages.remove(0);

    // Age all but the last two segments past the 72 h default.
    let old = SystemTime::now() - Duration::from_secs(73 * 3600);
    let aged = files.len() - 2;
    for f in &files[..aged] {
        std::fs::File::options().write(true).open(f).unwrap().set_modified(old).unwrap();
    }
    let rep = store.delete_expired_files();
    assert_eq!(rep.commit_log_segments_deleted, aged.min(10));
    let cl_min = store.commit_log_min_offset();
    assert_eq!(cl_min, (aged.min(10) * 4096) as i64);
    assert_eq!(rep.commit_log_min_offset, cl_min);
    for f in &files[..aged.min(10)] {
        assert!(!f.exists());
    }
    // Queue min offset: first entry whose record survived.
    let first_kept = results.iter().position(|r| r.physical_offset >= cl_min).unwrap() as i64;
    assert_eq!(store.min_offset_in_queue("Ret", 0), first_kept);
    let r = store.get_messages(&GetRequest::new("Ret", 0, 0, 4));
    assert_eq!((r.status, r.next_begin_offset), (GetStatus::OffsetTooSmall, first_kept));
    let r = store.get_messages(&GetRequest::new("Ret", 0, first_kept, 4));
    assert_eq!(r.status, GetStatus::Found);
    assert_eq!(RecordView::parse(&r.messages[0]).unwrap().body(), &[first_kept as u8; 300]);
    assert!(store.look_message_by_offset(results[0].physical_offset).is_none());
    assert_eq!(store.earliest_message_time("Ret", 0), Some(results[first_kept as usize].store_timestamp));
    assert!(store.query_message("Ret", "k0", 4, 0, i64::MAX).is_empty());
    assert_eq!(store.query_message("Ret", "k99", 4, 0, i64::MAX).len(), 1);

    // The held record is still intact after its segment was unlinked.
    assert_eq!(RecordView::parse(&held).unwrap().body(), &[0u8; 300]);

    // Consume-queue file 0 (entries 0..50) only referenced deleted data once
    // the first 50 records are gone; index files below the min are gone too.
    if first_kept >= 50 {
        assert_eq!(rep.consume_queue_files_deleted, 1);
        assert_eq!(std::fs::read_dir(&cq_dir).unwrap().count(), 1);
    }
    assert!(rep.index_files_deleted > 0, "{rep:?}");
    assert_eq!(
        std::fs::read_dir(dir.path().join("index")).unwrap().count(),
        index_files_before - rep.index_files_deleted
    );

    // Appends still work and min offsets survive a restart.
    let min_q = store.min_offset_in_queue("Ret", 0);
    rt.block_on(store.put(msg("Ret", 0, b"after")));
    drop(store);
    let store = open(&cfg);
    assert!(store.recovery_report().clean_shutdown);
    assert_eq!(store.commit_log_min_offset(), cl_min);
    assert_eq!(store.min_offset_in_queue("Ret", 0), min_q);
    assert_eq!(store.max_offset_in_queue("Ret", 0), 101);
}

#[test]
fn the_active_segment_is_never_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = small_config(dir.path(), 4096, FlushDiskType::SyncFlush);
    let store = open(&cfg);
    let rt = runtime();
    rt.block_on(store.put(msg("A", 0, b"only")));
    let old = SystemTime::now() - Duration::from_secs(1000 * 3600);
    for f in store.commit_log_files() {
        std::fs::File::options().write(true).open(&f).unwrap().set_modified(old).unwrap();
    }
    let rep = store.delete_expired_files();
    assert_eq!(rep.commit_log_segments_deleted, 0);
    assert!(store.wait_dispatched(Duration::from_secs(5)));
    assert_eq!(store.get_messages(&GetRequest::new("A", 0, 0, 1)).status, GetStatus::Found);
}
