//! A put that has resolved is visible to every read path at once: the consume queue
//! (`max_offset_in_queue`, `get_messages`, `earliest_message_time`), lookups by
//! offset and the key index. No retry and no wait between the put and the reads:
//! the put's acknowledgement is what makes them safe.
//!
//! Several tasks put concurrently, so writer batches usually hold several requests
//! (group commit) that are dispatched and acknowledged together, and single puts mix
//! with batch puts. With ASYNC_FLUSH the writer dispatches each batch before it
//! answers; with SYNC_FLUSH the flusher dispatches what each sync made durable.

mod support;

use std::sync::Arc;

use common::record::RecordView;
use store::{FlushDiskType, GetRequest, GetStatus, MessageStore, PutResult, PutStatus};
use support::*;

const TASKS: usize = 8;
const PUTS_PER_TASK: usize = 120;
/// Puts per topic: the first put of each topic lands in an empty queue.
const PUTS_PER_TOPIC: usize = 10;

/// Checks, right after `r` resolved, that every read path returns the records of
/// `bodies` (one put or one batch) with key `key`.
fn check_visible(store: &MessageStore, topic: &str, r: &PutResult, bodies: &[Vec<u8>], key: &str, first: bool) {
    assert_eq!(r.status, PutStatus::PutOk);
    let n = bodies.len() as i64;
    let at = format!("{topic} queue offset {}", r.queue_offset);
    assert_eq!(store.max_offset_in_queue(topic, 0), r.queue_offset + n, "max offset right after the ack ({at})");
    let got = store.get_messages(&GetRequest::new(topic, 0, r.queue_offset, bodies.len()));
    assert_eq!(got.status, GetStatus::Found, "get_messages right after the ack ({at})");
    assert_eq!(got.messages.len(), bodies.len(), "{at}");
    let phys: Vec<i64> = if r.batch_offsets.is_empty() { vec![r.physical_offset] } else { r.batch_offsets.clone() };
    for ((rec, body), phy) in got.messages.iter().zip(bodies).zip(&phys) {
        let v = RecordView::parse(rec).unwrap();
        assert_eq!((v.body(), v.physical_offset()), (body.as_slice(), *phy), "{at}");
        let by_offset = store.look_message_by_offset(*phy).expect("look_message_by_offset right after the ack");
        assert_eq!(&by_offset[..], &rec[..], "{at}");
    }
    let found = store.query_message(topic, key, 32, 0, i64::MAX);
    assert_eq!(found.len(), bodies.len(), "key {key} in the index right after the ack ({at})");
    for rec in &found {
        assert!(phys.contains(&RecordView::parse(rec).unwrap().physical_offset()), "{at}");
    }
    if first {
        assert_eq!(store.earliest_message_time(topic, 0), Some(r.store_timestamp), "earliest time ({at})");
    }
}

/// Small segments, consume-queue files and index files: acknowledgements also cross
/// roll-overs of all three.
fn config(dir: &std::path::Path, flush: FlushDiskType) -> store::StoreConfig {
    small_config(dir, 256 * 1024, flush)
}

fn puts_are_visible_when_they_resolve(flush: FlushDiskType) {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(open(&config(dir.path(), flush)));
    concurrent_puts_are_visible(&store, "Ryw");
}

/// Puts from several tasks into topics named `{prefix}{task}-{n}`, each checked
/// right after it resolves.
fn concurrent_puts_are_visible(store: &Arc<MessageStore>, prefix: &str) {
    let rt = runtime();
    rt.block_on(async {
        let mut tasks = Vec::new();
        for t in 0..TASKS {
            let store = store.clone();
            let prefix = prefix.to_owned();
            tasks.push(tokio::spawn(async move {
                for i in 0..PUTS_PER_TASK {
                    let topic = format!("{prefix}{t}-{}", i / PUTS_PER_TOPIC);
                    let key = format!("key-{t}-{i}");
                    let props = props("", &key, "");
                    let first = i % PUTS_PER_TOPIC == 0;
                    // Every third put is a batch of three.
                    let n = if i % 3 == 2 { 3 } else { 1 };
                    let bodies: Vec<Vec<u8>> = (0..n).map(|k| format!("body {t} {i} {k}").into_bytes()).collect();
                    let msgs: Vec<_> =
                        bodies.iter().map(|b| msg(&topic, 0, b).with_properties(props.clone())).collect();
                    let r = if n == 1 {
                        store.put(msgs.into_iter().next().unwrap()).await
                    } else {
                        store.put_batch(msgs).await
                    };
                    check_visible(&store, &topic, &r, &bodies, &key, first);
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    });
}

#[test]
fn async_flush_puts_are_visible_when_they_resolve() {
    puts_are_visible_when_they_resolve(FlushDiskType::AsyncFlush);
}

#[test]
fn sync_flush_puts_are_visible_when_they_resolve() {
    puts_are_visible_when_they_resolve(FlushDiskType::SyncFlush);
}

/// Reopened after a crash with its consume queues and index gone, the store rebuilds
/// them from the commit log while it opens; live dispatching then carries on from
/// there, and puts still resolve visible.
fn puts_after_a_crash_restart_are_visible(flush: FlushDiskType) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), flush);
    {
        let store = Arc::new(open(&cfg));
        concurrent_puts_are_visible(&store, "Before");
        store.halt();
    }
    for gone in ["consumequeue", "index", "checkpoint"] {
        let path = dir.path().join(gone);
        if path.is_dir() {
            std::fs::remove_dir_all(path).unwrap();
        } else {
            std::fs::remove_file(path).unwrap();
        }
    }
    let store = Arc::new(open(&cfg));
    let rep = store.recovery_report();
    assert!(!rep.clean_shutdown, "{rep:?}");
    let records = |puts: usize| (0..puts).map(|i| if i % 3 == 2 { 3 } else { 1 }).sum::<usize>();
    assert_eq!(rep.records_redispatched, (TASKS * records(PUTS_PER_TASK)) as u64, "{rep:?}");
    let first_topic = records(PUTS_PER_TOPIC) as i64;
    assert_eq!(store.max_offset_in_queue("Before0-0", 0), first_topic, "rebuilt at open");
    concurrent_puts_are_visible(&store, "After");
    // Puts into topics rebuilt at open continue their queues.
    let rt = runtime();
    let bodies = [b"continued".to_vec()];
    let r = rt.block_on(store.put(msg("Before0-0", 0, &bodies[0]).with_properties(props("", "key-continued", ""))));
    assert_eq!(r.queue_offset, first_topic);
    check_visible(&store, "Before0-0", &r, &bodies, "key-continued", false);
}

#[test]
fn async_flush_puts_after_a_crash_restart_are_visible() {
    puts_after_a_crash_restart_are_visible(FlushDiskType::AsyncFlush);
}

#[test]
fn sync_flush_puts_after_a_crash_restart_are_visible() {
    puts_after_a_crash_restart_are_visible(FlushDiskType::SyncFlush);
}
