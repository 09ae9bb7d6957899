//! In-process recovery: clean restarts, crash restarts, full rebuilds and torn tails
//! written by the test. (The SIGKILL test is `crash_recovery.rs`.)

mod support;

use std::os::unix::fs::FileExt;
use std::time::Duration;

use common::record::RecordView;
use store::{FlushDiskType, GetRequest, GetStatus, PutResult, PutStatus};
use support::*;

fn fill(store: &store::MessageStore, n: usize) -> Vec<PutResult> {
    let rt = runtime();
    (0..n)
        .map(|i| {
            let m = msg("R", (i % 3) as i32, format!("record-{i}").as_bytes()).with_properties(props(
                "T",
                &format!("key-{i}"),
                "",
            ));
            let r = rt.block_on(store.put(m));
            assert_eq!(r.status, PutStatus::PutOk);
            r
        })
        .collect()
}

fn read_all(store: &store::MessageStore, queue: i32) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut next = store.min_offset_in_queue("R", queue);
    loop {
        let r = store.get_messages(&GetRequest::new("R", queue, next, 16));
        if r.status != GetStatus::Found {
            break;
        }
        out.extend(r.messages.iter().map(|b| RecordView::parse(b).unwrap().body().to_vec()));
        next = r.next_begin_offset;
    }
    out
}

#[test]
fn clean_restart_trusts_the_checkpoint_and_continues() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = small_config(dir.path(), 4096, FlushDiskType::AsyncFlush);
    let results = {
        let store = open(&cfg);
        let r = fill(&store, 50);
        store.shutdown().unwrap();
        r
    };
    assert!(!dir.path().join("abort").exists());
    let store = open(&cfg);
    let rep = store.recovery_report();
    assert!(rep.clean_shutdown, "{rep:?}");
    assert_eq!(rep.records_redispatched, 0);
    assert_eq!(rep.truncated, None);
    let end = results.last().map(|r| r.physical_offset + r.wrote_bytes as i64).unwrap();
    assert_eq!(store.commit_log_max_offset(), end);
    assert_eq!(read_all(&store, 1).len(), 17);
    assert_eq!(store.query_message("R", "key-7", 4, 0, i64::MAX).len(), 1);
    let rt = runtime();
    let r = rt.block_on(store.put(msg("R", 1, b"after")));
    assert!(r.physical_offset >= end);
    assert_eq!(r.queue_offset, 17);
}

#[test]
fn crash_restart_keeps_every_complete_record() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = small_config(dir.path(), 4096, FlushDiskType::AsyncFlush);
    let results = {
        let store = open(&cfg);
        let r = fill(&store, 40);
        store.halt();
        r
    };
    assert!(dir.path().join("abort").exists());
    let store = open(&cfg);
    let rep = store.recovery_report().clone();
    assert!(!rep.clean_shutdown);
    assert_eq!(rep.truncated, None, "{rep:?}");
    let end = results.last().map(|r| r.physical_offset + r.wrote_bytes as i64).unwrap();
    assert_eq!(rep.commit_log_end, end);
    for q in 0..3 {
        let bodies = read_all(&store, q);
        let want: Vec<Vec<u8>> =
            (0..40).filter(|i| i % 3 == q as usize).map(|i| format!("record-{i}").into_bytes()).collect();
        assert_eq!(bodies, want);
    }
}

fn consume_queues_and_index_rebuild_from_the_commit_log(flush: FlushDiskType) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = small_config(dir.path(), 4096, flush);
    {
        let store = open(&cfg);
        fill(&store, 30);
    }
    std::fs::remove_dir_all(dir.path().join("consumequeue")).unwrap();
    std::fs::remove_dir_all(dir.path().join("index")).unwrap();
    std::fs::remove_file(dir.path().join("checkpoint")).unwrap();
    let store = open(&cfg);
    let rep = store.recovery_report();
    assert_eq!(rep.records_redispatched, 30, "{rep:?}");
    assert_eq!(read_all(&store, 0).len(), 10);
    assert_eq!(store.max_offset_in_queue("R", 2), 10);
    assert_eq!(store.query_message("R", "key-29", 4, 0, i64::MAX).len(), 1);
}

#[test]
fn async_flush_consume_queues_and_index_rebuild_from_the_commit_log() {
    consume_queues_and_index_rebuild_from_the_commit_log(FlushDiskType::AsyncFlush);
}

#[test]
fn sync_flush_consume_queues_and_index_rebuild_from_the_commit_log() {
    consume_queues_and_index_rebuild_from_the_commit_log(FlushDiskType::SyncFlush);
}

/// Writes garbage over the last record and checks it is cut off, never served, and
/// that appends continue exactly there.
fn torn_tail(corrupt: impl Fn(&std::fs::File, u64, usize)) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = small_config(dir.path(), 8192, FlushDiskType::AsyncFlush);
    let seg = 8192i64;
    let (results, files) = {
        let store = open(&cfg);
        let r = fill(&store, 12);
        // Let dispatching and a checkpoint cover the last record too, so recovery
        // has to drop consume-queue and index entries that point at it.
        assert!(store.wait_dispatched(Duration::from_secs(5)));
        store.checkpoint().unwrap();
        let files = store.commit_log_files();
        store.halt();
        (r, files)
    };
    let last = results.last().unwrap();
    let file =
        std::fs::OpenOptions::new().read(true).write(true).open(&files[(last.physical_offset / seg) as usize]).unwrap();
    corrupt(&file, (last.physical_offset % seg) as u64, last.wrote_bytes);
    drop(file);

    let store = open(&cfg);
    let rep = store.recovery_report().clone();
    let torn = rep.truncated.clone().unwrap_or_else(|| panic!("torn tail not reported: {rep:?}"));
    assert_eq!(torn.offset, last.physical_offset);
    assert!(torn.discarded_bytes > 0);
    assert!(rep.cq_entries_dropped >= 1, "{rep:?}");
    assert_eq!(store.commit_log_max_offset(), last.physical_offset);
    // Not served through any read path.
    let q = 11 % 3;
    assert_eq!(store.max_offset_in_queue("R", q), last.queue_offset);
    let bodies = read_all(&store, q);
    assert!(!bodies.iter().any(|b| b == b"record-11"));
    assert_eq!(bodies.len(), 3);
    assert!(store.look_message_by_offset(last.physical_offset).is_none());
    assert!(store.query_message("R", "key-11", 4, 0, i64::MAX).is_empty());
    // Appends continue at the recovered tail with the same queue offset.
    let rt = runtime();
    let r = rt.block_on(store.put(msg("R", q, b"replacement").with_properties(props("T", "key-11", ""))));
    assert_eq!(r.physical_offset, last.physical_offset);
    assert_eq!(r.queue_offset, last.queue_offset);
    assert!(store.wait_dispatched(Duration::from_secs(5)));
    let hits = store.query_message("R", "key-11", 4, 0, i64::MAX);
    assert_eq!(hits.len(), 1);
    assert_eq!(RecordView::parse(&hits[0]).unwrap().body(), b"replacement");
    assert_eq!(read_all(&store, q).last().unwrap(), b"replacement");
    drop(store);
    // And it all survives another clean restart.
    let store = open(&cfg);
    assert!(store.recovery_report().clean_shutdown);
    assert_eq!(read_all(&store, q).last().unwrap(), b"replacement");
}

#[test]
fn corrupted_last_record_is_cut_off() {
    torn_tail(|f, at, len| {
        // Flip a body byte: the CRC no longer matches.
        let pos = at + len as u64 - 20;
        let mut b = [0u8; 1];
        f.read_exact_at(&mut b, pos).unwrap();
        f.write_all_at(&[b[0] ^ 0x5A], pos).unwrap();
    });
}

#[test]
fn truncated_last_record_is_cut_off() {
    torn_tail(|f, at, len| {
        // Only the first half of the record reached the disk.
        let half = len / 2;
        f.write_all_at(&vec![0u8; len - half], at + half as u64).unwrap();
    });
}

#[test]
fn garbage_header_is_cut_off() {
    torn_tail(|f, at, _| {
        f.write_all_at(&[0xFF; 8], at).unwrap();
    });
}

/// A store opened with `truncate_to` (a slave dropping what its new master lacks):
/// the log ends there, no consume queue or index entry reaches past it, nothing
/// after it is served, and writing goes on from it — also after a crash.
#[test]
fn opening_truncated_forgets_the_tail_and_continues_from_the_cut() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = small_config(dir.path(), 4096, FlushDiskType::AsyncFlush);
    let results = {
        let store = open(&cfg);
        let r = fill(&store, 40);
        store.shutdown().unwrap();
        r
    };
    // Keep the first 25 records (they span several 4 KiB segments).
    let cut = results[25].physical_offset;
    let opts = store::StoreOptions { truncate_to: Some(cut), ..store::StoreOptions::default() };
    let store = store::MessageStore::open_with(std::sync::Arc::new(cfg.clone()), store_host(), opts).unwrap();
    let rep = store.recovery_report().clone();
    assert_eq!(rep.truncated.as_ref().map(|t| t.offset), Some(cut), "{rep:?}");
    assert_eq!(store.commit_log_max_offset(), cut);
    let kept: Vec<Vec<u8>> = (0..3).flat_map(|q| read_all(&store, q)).collect();
    assert_eq!(kept.len(), 25);
    for i in 25..40 {
        assert!(!kept.contains(&format!("record-{i}").into_bytes()), "record-{i} is still served");
        assert!(store.query_message("R", &format!("key-{i}"), 8, 0, i64::MAX).is_empty(), "key-{i} still indexed");
    }
    assert_eq!(store.query_message("R", "key-24", 8, 0, i64::MAX).len(), 1);
    // Queue offsets continue where the kept records end; the log from the cut.
    let rt = runtime();
    let next = rt.block_on(store.put(msg("R", 1, b"after the cut")));
    assert_eq!(next.physical_offset, cut);
    // Queue 1 kept records 1, 4, ..., 22: eight of them.
    assert_eq!(next.queue_offset, 8);
    drop(store);
    // A crash after that (no shutdown): the store still agrees with itself.
    let store = open(&cfg);
    let after: Vec<Vec<u8>> = (0..3).flat_map(|q| read_all(&store, q)).collect();
    assert_eq!(after.len(), 26);
    assert!(after.contains(&b"after the cut".to_vec()));

    // A cut that is not a record boundary is refused.
    drop(store);
    let opts = store::StoreOptions { truncate_to: Some(cut + 1), ..store::StoreOptions::default() };
    assert!(store::MessageStore::open_with(std::sync::Arc::new(cfg), store_host(), opts).is_err());
}
