//! Append and read through the public API: offsets, roll-over, pull semantics,
//! batches, transactions, filters, lookups by offset, time and key.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::record::RecordView;
use common::sysflag::message::{TRANSACTION_COMMIT_TYPE, TRANSACTION_PREPARED_TYPE, TRANSACTION_ROLLBACK_TYPE};
use store::{FlushDiskType, GetRequest, GetStatus, PutStatus};
use support::*;

#[test]
fn put_assigns_offsets_and_reads_back_exact_records() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = small_config(dir.path(), 64 * 1024, FlushDiskType::AsyncFlush);
    let store = open(&cfg);
    let rt = runtime();
    let mut results = Vec::new();
    for i in 0..20 {
        let m = msg("TopicA", i % 2, format!("body-{i}").as_bytes()).with_properties(props("TagA", "", ""));
        let r = rt.block_on(store.put(m));
        assert_eq!(r.status, PutStatus::PutOk);
        results.push(r);
    }
    // Physical offsets are contiguous, queue offsets count per queue.
    for w in results.windows(2) {
        assert_eq!(w[0].physical_offset + w[0].wrote_bytes as i64, w[1].physical_offset);
    }
    assert_eq!(results[0].queue_offset, 0);
    assert_eq!(results[1].queue_offset, 0);
    assert_eq!(results[18].queue_offset, 9);
    assert_eq!(results[19].queue_offset, 9);
    assert_eq!(results[3].msg_id().len(), 32);
    assert!(store.wait_dispatched(Duration::from_secs(5)));

    assert_eq!(store.max_offset_in_queue("TopicA", 0), 10);
    assert_eq!(store.min_offset_in_queue("TopicA", 0), 0);
    let got = store.get_messages(&GetRequest::new("TopicA", 1, 0, 32));
    assert_eq!(got.status, GetStatus::Found);
    assert_eq!(got.messages.len(), 10);
    assert_eq!(got.next_begin_offset, 10);
    for (k, rec) in got.messages.iter().enumerate() {
        let v = RecordView::parse(rec).unwrap();
        v.verify_crc().unwrap();
        let i = 2 * k + 1;
        assert_eq!(v.body(), format!("body-{i}").as_bytes());
        assert_eq!(v.topic(), "TopicA");
        assert_eq!(v.queue_id(), 1);
        assert_eq!(v.queue_offset(), k as i64);
        assert_eq!(v.physical_offset(), results[i].physical_offset);
        assert_eq!(v.store_timestamp(), results[i].store_timestamp);
        assert_eq!(v.store_host(), store_host());
        assert_eq!(v.born_host().to_string(), "192.168.1.2:50000");
        assert_eq!(got.queue_offsets[k], k as i64);
    }
    // Lookup by physical offset returns the same bytes.
    let one = store.look_message_by_offset(results[5].physical_offset).unwrap();
    assert_eq!(RecordView::parse(&one).unwrap().body(), b"body-5");
    assert!(store.look_message_by_offset(store.commit_log_max_offset()).is_none());
    assert!(store.look_message_by_offset(results[5].physical_offset + 1).is_none());
}

#[test]
fn pull_statuses_follow_rocketmq() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = small_config(dir.path(), 64 * 1024, FlushDiskType::AsyncFlush);
    let store = open(&cfg);
    let rt = runtime();
    let check = |offset: i64, status: GetStatus, next: i64| {
        let r = store.get_messages(&GetRequest::new("T", 0, offset, 4));
        assert_eq!((r.status, r.next_begin_offset), (status, next), "offset {offset}");
    };
    check(0, GetStatus::NoMatchedLogicQueue, 0);
    for i in 0..6 {
        rt.block_on(store.put(msg("T", 0, &[i; 10])));
    }
    assert!(store.wait_dispatched(Duration::from_secs(5)));
    check(0, GetStatus::Found, 4);
    check(4, GetStatus::Found, 6);
    check(6, GetStatus::OffsetOverflowOne, 6);
    check(9, GetStatus::OffsetOverflowBadly, 0);
    let r = store.get_messages(&GetRequest::new("T", 0, 2, 32));
    assert_eq!((r.min_offset, r.max_offset, r.messages.len()), (0, 6, 4));

    // max_bytes: stop before exceeding, but always at least one message.
    let size = r.messages[0].len();
    let r = store.get_messages(&GetRequest::new("T", 0, 0, 32).max_bytes(size * 2 + 1));
    assert_eq!(r.messages.len(), 2);
    assert_eq!(r.next_begin_offset, 2);
    assert_eq!(r.total_bytes, size * 2);
    let r = store.get_messages(&GetRequest::new("T", 0, 0, 32).max_bytes(1));
    assert_eq!(r.messages.len(), 1);
}

#[test]
fn roll_over_writes_blank_and_reads_span_segments() {
    let dir = tempfile::tempdir().unwrap();
    let seg = 4096u64;
    let cfg = small_config(dir.path(), seg, FlushDiskType::AsyncFlush);
    let store = open(&cfg);
    let rt = runtime();
    let body = vec![7u8; 300];
    let mut offsets = Vec::new();
    for _ in 0..40 {
        let r = rt.block_on(store.put(msg("Roll", 0, &body)));
        assert_eq!(r.status, PutStatus::PutOk);
        // A record never spans two segments and leaves room for the blank marker.
        let start_in_seg = r.physical_offset as u64 % seg;
        assert!(start_in_seg + r.wrote_bytes as u64 + 8 <= seg);
        offsets.push(r.physical_offset);
    }
    let files = store.commit_log_files();
    assert!(files.len() >= 3, "{files:?}");
    for f in &files {
        let name = f.file_name().unwrap().to_str().unwrap();
        assert_eq!(name.len(), 20);
        assert_eq!(name.parse::<u64>().unwrap() % seg, 0);
        assert_eq!(std::fs::metadata(f).unwrap().len(), seg);
    }
    // The first segment ends with a BLANK entry covering the rest of it.
    let first = std::fs::read(&files[0]).unwrap();
    let last_rec = offsets.iter().filter(|&&o| (o as u64) < seg).max().unwrap();
    let blank_at = (*last_rec as usize) + 91 + 300 + 4;
    assert_eq!(&first[blank_at + 4..blank_at + 8], &common::record::BLANK_MAGIC.to_be_bytes());
    assert_eq!(i32::from_be_bytes(first[blank_at..blank_at + 4].try_into().unwrap()) as u64, seg - blank_at as u64);

    assert!(store.wait_dispatched(Duration::from_secs(5)));
    let mut next = 0;
    let mut seen = 0;
    while next < 40 {
        let r = store.get_messages(&GetRequest::new("Roll", 0, next, 7));
        assert_eq!(r.status, GetStatus::Found);
        for (rec, qo) in r.messages.iter().zip(&r.queue_offsets) {
            let v = RecordView::parse(rec).unwrap();
            assert_eq!(v.physical_offset(), offsets[*qo as usize]);
            seen += 1;
        }
        next = r.next_begin_offset;
    }
    assert_eq!(seen, 40);
}

#[test]
fn oversize_and_illegal_messages_are_statuses() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = small_config(dir.path(), 8192, FlushDiskType::AsyncFlush);
    let store = open(&cfg);
    let rt = runtime();
    let r = rt.block_on(store.put(msg("T", 0, &vec![0u8; 4097])));
    assert_eq!(r.status, PutStatus::MessageIllegal);
    let r = rt.block_on(store.put(msg(&"t".repeat(128), 0, b"x")));
    assert_eq!(r.status, PutStatus::MessageIllegal);
    let mut m = msg("T", 0, b"x");
    m.properties = "a".repeat(40_000);
    assert_eq!(rt.block_on(store.put(m)).status, PutStatus::PropertiesSizeExceeded);
    let batch = vec![msg("T", 0, b"a"), msg("T", 1, b"b")];
    assert_eq!(rt.block_on(store.put_batch(batch)).status, PutStatus::MessageIllegal);
    assert_eq!(rt.block_on(store.put(msg("T", 0, b"ok"))).status, PutStatus::PutOk);
    assert_eq!(store.stats().puts_failed, 4);
}

#[test]
fn batch_is_contiguous_with_consecutive_queue_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = small_config(dir.path(), 4096, FlushDiskType::AsyncFlush);
    let store = open(&cfg);
    let rt = runtime();
    rt.block_on(store.put(msg("B", 3, &[1u8; 2040])));
    // Does not fit in the rest of the first segment: the whole batch moves on.
    let batch: Vec<_> = (0..5).map(|i| msg("B", 3, &[i as u8; 300])).collect();
    let r = rt.block_on(store.put_batch(batch));
    assert_eq!(r.status, PutStatus::PutOk);
    assert_eq!(r.msg_count, 5);
    assert_eq!(r.queue_offset, 1);
    assert_eq!(r.physical_offset, 4096);
    assert_eq!(r.batch_offsets.len(), 5);
    for w in r.batch_offsets.windows(2) {
        assert_eq!(w[1] - w[0], (91 + 300 + 1) as i64);
    }
    assert_eq!(r.msg_ids().split(',').count(), 5);
    assert!(store.wait_dispatched(Duration::from_secs(5)));
    let got = store.get_messages(&GetRequest::new("B", 3, 1, 32));
    assert_eq!(got.messages.len(), 5);
    for (k, rec) in got.messages.iter().enumerate() {
        let v = RecordView::parse(rec).unwrap();
        assert_eq!(v.queue_offset(), 1 + k as i64);
        assert_eq!(v.body(), &[k as u8; 300]);
    }
}

#[test]
fn prepared_and_rollback_are_logged_and_indexed_but_not_queued() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = small_config(dir.path(), 64 * 1024, FlushDiskType::AsyncFlush);
    let store = open(&cfg);
    let rt = runtime();
    let mut half = msg("Half", 0, b"half").with_properties(props("", "txkey", "U1"));
    half.sys_flag = TRANSACTION_PREPARED_TYPE;
    let r = rt.block_on(store.put(half));
    assert_eq!((r.status, r.queue_offset), (PutStatus::PutOk, 0));
    let mut rb = msg("Half", 0, b"rollback").with_properties(props("", "rbkey", ""));
    rb.sys_flag = TRANSACTION_ROLLBACK_TYPE;
    assert_eq!(rt.block_on(store.put(rb)).queue_offset, 0);
    let mut commit = msg("Half", 0, b"commit");
    commit.sys_flag = TRANSACTION_COMMIT_TYPE;
    commit.prepared_transaction_offset = r.physical_offset;
    let c = rt.block_on(store.put(commit));
    assert_eq!(c.queue_offset, 0, "first dispatched record of the queue");
    assert!(store.wait_dispatched(Duration::from_secs(5)));
    assert_eq!(store.max_offset_in_queue("Half", 0), 1);
    let got = store.get_messages(&GetRequest::new("Half", 0, 0, 32));
    assert_eq!(got.messages.len(), 1);
    assert_eq!(RecordView::parse(&got.messages[0]).unwrap().body(), b"commit");
    // The half message is still readable by offset and indexed; the rollback is not indexed.
    assert!(store.look_message_by_offset(r.physical_offset).is_some());
    assert_eq!(store.query_message("Half", "txkey", 10, 0, i64::MAX).len(), 1);
    assert_eq!(store.query_message("Half", "U1", 10, 0, i64::MAX).len(), 1);
    assert!(store.query_message("Half", "rbkey", 10, 0, i64::MAX).is_empty());
}

#[test]
fn filters_and_tags_codes() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = small_config(dir.path(), 64 * 1024, FlushDiskType::AsyncFlush);
    let store = open(&cfg);
    let rt = runtime();
    for i in 0..10 {
        let tag = if i % 3 == 0 { "TagA" } else { "TagB" };
        let m = msg("F", 0, format!("{i}").as_bytes()).with_properties(props(tag, "", ""));
        rt.block_on(store.put(m));
    }
    // The schedule topic's tags code is the delivery time, derived from the store
    // timestamp and the DELAY level (3 = 10 s) whatever the caller passed.
    let mut d = msg("SCHEDULE_TOPIC_XXXX", 2, b"delayed");
    d.properties = "DELAY\u{1}3".to_owned();
    d.tags_code = 4_102_444_800_000;
    let stored = rt.block_on(store.put(d));
    assert!(store.wait_dispatched(Duration::from_secs(5)));

    let tag_a = common::hash::tags_code(Some("TagA"));
    let only_a = |e: &store::CqEntry| e.tags_code == tag_a;
    let r = store.get_messages(&GetRequest::new("F", 0, 0, 32).cq_filter(&only_a));
    assert_eq!(r.messages.len(), 4);
    assert_eq!(r.queue_offsets, vec![0, 3, 6, 9]);
    assert_eq!(r.next_begin_offset, 10);
    // Nothing matches: NO_MATCHED_MESSAGE, next offset past the scanned entries.
    let none = |_: &store::CqEntry| false;
    let r = store.get_messages(&GetRequest::new("F", 0, 2, 32).cq_filter(&none));
    assert_eq!((r.status, r.next_begin_offset), (GetStatus::NoMatchedMessage, 10));
    // Second stage on the record itself.
    let odd_body = |v: &RecordView<'_>| v.body()[0] % 2 == 1;
    let r = store.get_messages(&GetRequest::new("F", 0, 0, 3).record_filter(&odd_body));
    assert_eq!(r.queue_offsets, vec![1, 3, 5]);
    assert_eq!(r.next_begin_offset, 6);

    let r = store.get_messages(&GetRequest::new("SCHEDULE_TOPIC_XXXX", 2, 0, 1));
    let seen = Arc::new(Mutex::new(None));
    let s2 = seen.clone();
    let cq = move |e: &store::CqEntry| {
        *s2.lock().unwrap() = Some(e.tags_code);
        true
    };
    store.get_messages(&GetRequest::new("SCHEDULE_TOPIC_XXXX", 2, 0, 1).cq_filter(&cq));
    assert_eq!(r.messages.len(), 1);
    assert_eq!(*seen.lock().unwrap(), Some(stored.store_timestamp + 10_000));
}

#[test]
fn timestamp_search_and_earliest_time() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = small_config(dir.path(), 4096, FlushDiskType::AsyncFlush);
    let store = open(&cfg);
    let rt = runtime();
    let mut stamps = Vec::new();
    for i in 0..30 {
        let r = rt.block_on(store.put(msg("Time", 0, &[i; 100])));
        stamps.push(r.store_timestamp);
        if i % 10 == 9 {
            // Make store times differ between groups (wait for the clock, no fixed sleep).
            let t = r.store_timestamp;
            assert!(eventually(Duration::from_secs(2), || common_now() > t + 1));
        }
    }
    assert!(store.wait_dispatched(Duration::from_secs(5)));
    assert!(stamps.windows(2).all(|w| w[0] <= w[1]), "store times never go back");
    for (i, &ts) in stamps.iter().enumerate() {
        let first = stamps.iter().position(|&s| s >= ts).unwrap() as i64;
        assert_eq!(store.offset_by_timestamp("Time", 0, ts), first, "entry {i}");
    }
    assert_eq!(store.offset_by_timestamp("Time", 0, 0), 0);
    assert_eq!(store.offset_by_timestamp("Time", 0, i64::MAX), 30);
    assert_eq!(store.offset_by_timestamp("Nope", 0, 0), 0);
    assert_eq!(store.earliest_message_time("Time", 0), Some(stamps[0]));
}

fn common_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

#[test]
fn query_by_key_checks_topic_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = small_config(dir.path(), 64 * 1024, FlushDiskType::AsyncFlush);
    let store = open(&cfg);
    let rt = runtime();
    for i in 0..60 {
        let keys = format!("order-{} shared", i % 5);
        let m = msg(if i % 2 == 0 { "Q1" } else { "Q2" }, 0, format!("{i}").as_bytes()).with_properties(props(
            "",
            &keys,
            &format!("UNIQ{i:04}"),
        ));
        rt.block_on(store.put(m));
    }
    assert!(store.wait_dispatched(Duration::from_secs(5)));
    // 60 messages × 3 keys = 180 entries: the 200-entry index rolled over.
    let hits = store.query_message("Q1", "order-2", 100, 0, i64::MAX);
    let bodies: Vec<String> =
        hits.iter().map(|b| String::from_utf8(RecordView::parse(b).unwrap().body().to_vec()).unwrap()).collect();
    assert_eq!(bodies, ["52", "42", "32", "22", "12", "2"]);
    assert_eq!(store.query_message("Q2", "shared", 100, 0, i64::MAX).len(), 30);
    assert_eq!(store.query_message("Q2", "shared", 7, 0, i64::MAX).len(), 7);
    let u = store.query_message("Q1", "UNIQ0010", 10, 0, i64::MAX);
    assert_eq!(RecordView::parse(&u[0]).unwrap().body(), b"10");
    assert!(store.query_message("Q2", "UNIQ0010", 10, 0, i64::MAX).is_empty());
    assert!(store.query_message("Q1", "order-2", 10, 0, 1000).is_empty(), "time range excludes");
}

#[test]
fn arrival_listener_sees_visible_entries() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = small_config(dir.path(), 64 * 1024, FlushDiskType::SyncFlush);
    let store = Arc::new(open(&cfg));
    let calls = Arc::new(AtomicUsize::new(0));
    let (s2, c2) = (Arc::downgrade(&store), calls.clone());
    store.set_arrival_listener(Arc::new(move |a: &store::Arrival<'_>| {
        let st = s2.upgrade().unwrap();
        // The entry is visible when the listener runs.
        assert!(st.max_offset_in_queue(a.topic, a.queue_id) > a.queue_offset);
        assert_eq!(a.tags_code, common::hash::tags_code(Some("TagZ")));
        c2.fetch_add(1, Ordering::SeqCst);
    }));
    let rt = runtime();
    for _ in 0..5 {
        let r = rt.block_on(store.put(msg("L", 1, b"x").with_properties(props("TagZ", "", ""))));
        assert_eq!(r.status, PutStatus::PutOk);
        // SYNC_FLUSH: acked only when durable.
        assert!(store.commit_log_flushed_offset() >= r.physical_offset + r.wrote_bytes as i64);
    }
    assert!(eventually(Duration::from_secs(5), || calls.load(Ordering::SeqCst) == 5));
}

#[test]
fn concurrent_puts_from_many_tasks_keep_queues_dense() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = small_config(dir.path(), 32 * 1024, FlushDiskType::SyncFlush);
    let store = Arc::new(open(&cfg));
    let rt = runtime();
    let results = rt.block_on(async {
        let mut tasks = Vec::new();
        for t in 0..16 {
            let s = store.clone();
            tasks.push(tokio::spawn(async move {
                let mut out = Vec::new();
                for i in 0..20 {
                    let r = s.put(msg("C", t % 4, format!("{t}-{i}").as_bytes())).await;
                    assert_eq!(r.status, PutStatus::PutOk);
                    out.push(r);
                }
                out
            }));
        }
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.unwrap());
        }
        all
    });
    assert!(store.wait_dispatched(Duration::from_secs(5)));
    for q in 0..4 {
        let mut qos: Vec<i64> = results
            .iter()
            .filter(|r| {
                let rec = store.look_message_by_offset(r.physical_offset).unwrap();
                RecordView::parse(&rec).unwrap().queue_id() == q
            })
            .map(|r| r.queue_offset)
            .collect();
        qos.sort_unstable();
        assert_eq!(qos, (0..80).collect::<Vec<_>>());
        assert_eq!(store.max_offset_in_queue("C", q), 80);
    }
    let stats = store.stats();
    assert_eq!(stats.puts_ok, 320);
    assert!(stats.flushes > 0 && stats.flushes < 320, "group commit: {} flushes", stats.flushes);
}

#[test]
fn delete_topic_drops_queues_and_restarts_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = small_config(dir.path(), 64 * 1024, FlushDiskType::AsyncFlush);
    let store = open(&cfg);
    let rt = runtime();
    for _ in 0..3 {
        rt.block_on(store.put(msg("Gone", 0, b"x")));
        rt.block_on(store.put(msg("Kept", 0, b"y")));
    }
    assert!(store.wait_dispatched(Duration::from_secs(5)));
    assert_eq!(store.topic_queues(), vec![("Gone".to_owned(), vec![0]), ("Kept".to_owned(), vec![0])]);
    store.delete_topic("Gone");
    assert_eq!(store.topic_queues(), vec![("Kept".to_owned(), vec![0])]);
    assert!(!dir.path().join("consumequeue").join("Gone").exists());
    assert_eq!(store.get_messages(&GetRequest::new("Gone", 0, 0, 1)).status, GetStatus::NoMatchedLogicQueue);
    let r = rt.block_on(store.put(msg("Gone", 0, b"again")));
    assert_eq!(r.queue_offset, 0);
    assert!(store.wait_dispatched(Duration::from_secs(5)));
    assert_eq!(store.get_messages(&GetRequest::new("Gone", 0, 0, 8)).messages.len(), 1);
}

#[test]
fn full_append_queue_answers_busy_instead_of_growing() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = small_config(dir.path(), 1 << 20, FlushDiskType::SyncFlush);
    let opts = store::StoreOptions {
        put_queue_capacity: 1,
        put_queue_timeout: Duration::ZERO,
        ..store::StoreOptions::default()
    };
    let store = Arc::new(store::MessageStore::open_with(Arc::new(cfg), store_host(), opts).unwrap());
    let rt = runtime();
    // Many concurrent puts against a one-slot queue with no patience: some must be
    // turned away with the busy status, none may fail otherwise.
    let mut busy = 0;
    let mut ok = 0;
    for _ in 0..20 {
        let statuses = rt.block_on(async {
            let tasks: Vec<_> = (0..200)
                .map(|i| {
                    let s = store.clone();
                    tokio::spawn(async move { s.put(msg("Busy", i % 4, b"x")).await.status })
                })
                .collect();
            let mut out = Vec::new();
            for t in tasks {
                out.push(t.await.unwrap());
            }
            out
        });
        for s in statuses {
            match s {
                PutStatus::PutOk => ok += 1,
                PutStatus::OsPageCacheBusy => busy += 1,
                other => panic!("unexpected status {other:?}"),
            }
        }
        if busy > 0 {
            break;
        }
    }
    assert!(busy > 0 && ok > 0, "ok {ok}, busy {busy}");
    assert!(store.wait_dispatched(Duration::from_secs(5)));
    assert_eq!(
        store.max_offset_in_queue("Busy", 0)
            + store.max_offset_in_queue("Busy", 1)
            + store.max_offset_in_queue("Busy", 2)
            + store.max_offset_in_queue("Busy", 3),
        ok as i64
    );
}
