//! Criterion benches for the store's hot paths (1 KiB records):
//! appends with ASYNC_FLUSH (one pipelined appender, 16 appenders, batched puts) and
//! SYNC_FLUSH (1 and 16 appenders), 32-message pulls from a warm queue,
//! consume-queue timestamp search and key queries.
//!
//! The full matrix with the raw-disk comparison is `bench/src/bin/store_load.rs`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use store::{FlushDiskType, GetRequest, MessageStore, PutMessage, StoreConfig};

const SIZE: usize = 1024;

fn open(dir: &std::path::Path, sync: bool) -> Arc<MessageStore> {
    let cfg = StoreConfig {
        store_path_root_dir: dir.to_owned(),
        mapped_file_size_commit_log: bytesize::ByteSize::mib(256),
        flush_disk_type: if sync { FlushDiskType::SyncFlush } else { FlushDiskType::AsyncFlush },
        // Measure appends, not refusals: a nearly full disk must not stop them.
        disk_space_warning_level_ratio: 1.0,
        disk_space_clean_forcibly_ratio: 1.0,
        ..StoreConfig::default()
    };
    let store = Arc::new(MessageStore::open(Arc::new(cfg), "127.0.0.1:10911".parse().unwrap()).unwrap());
    let until = Instant::now() + Duration::from_secs(60);
    while !store.is_warm() && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(5));
    }
    store
}

fn msg(body: &Bytes, queue: i32) -> PutMessage {
    let mut m = PutMessage::new("Bench", queue, body.clone());
    m.properties = "TAGS\u{1}bench".to_owned();
    m
}

/// `n` puts from `tasks` tasks, each keeping `window` puts of `batch` messages in flight.
async fn drive(store: &Arc<MessageStore>, body: &Bytes, n: u64, tasks: u64, window: usize, batch: usize) {
    let mut handles = Vec::new();
    for t in 0..tasks {
        let store = store.clone();
        let body = body.clone();
        handles.push(tokio::spawn(async move {
            let mut left = n / tasks;
            let mut set = tokio::task::JoinSet::new();
            while left > 0 || !set.is_empty() {
                while left > 0 && set.len() < window {
                    let s = store.clone();
                    let msgs: Vec<PutMessage> = (0..batch).map(|_| msg(&body, t as i32)).collect();
                    left = left.saturating_sub(batch as u64);
                    set.spawn(async move {
                        if msgs.len() == 1 {
                            s.put(msgs.into_iter().next().unwrap()).await
                        } else {
                            s.put_batch(msgs).await
                        }
                    });
                }
                if let Some(r) = set.join_next().await {
                    assert!(r.unwrap().status.is_stored());
                }
            }
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
}

fn appends(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let body = Bytes::from(vec![0x5Au8; SIZE]);
    let mut g = c.benchmark_group("append_1k");
    g.throughput(Throughput::Elements(1));
    for (name, sync, tasks, window, batch) in [
        ("async_1x64", false, 1u64, 64usize, 1usize),
        ("async_16", false, 16, 1, 1),
        ("async_1x8_batch16", false, 1, 8, 16),
        ("sync_1", true, 1, 1, 1),
        ("sync_16", true, 16, 1, 1),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path(), sync);
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let t = Instant::now();
                rt.block_on(drive(&store, &body, iters.max(tasks * batch as u64), tasks, window, batch));
                t.elapsed()
            });
        });
        drop(store);
    }
    g.finish();
}

fn reads(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), false);
    let body = Bytes::from(vec![0x5Au8; SIZE]);
    rt.block_on(drive(&store, &body, 20_000, 1, 64, 1));
    assert!(store.wait_dispatched(Duration::from_secs(30)));
    let max = store.max_offset_in_queue("Bench", 0);
    let bytes_per_pull = store.get_messages(&GetRequest::new("Bench", 0, 0, 32)).total_bytes as u64;

    let mut g = c.benchmark_group("read");
    g.throughput(Throughput::Bytes(bytes_per_pull));
    let mut off = 0;
    g.bench_function("get_messages_32x1k", |b| {
        b.iter(|| {
            let r = store.get_messages(&GetRequest::new("Bench", 0, off, 32));
            off = if r.next_begin_offset + 32 > max { 0 } else { r.next_begin_offset };
            std::hint::black_box(r)
        });
    });
    g.throughput(Throughput::Elements(1));
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    g.bench_function("offset_by_timestamp", |b| {
        b.iter(|| std::hint::black_box(store.offset_by_timestamp("Bench", 0, std::hint::black_box(now - 10))));
    });
    g.finish();

    let mut g = c.benchmark_group("index");
    rt.block_on(async {
        for i in 0..2000 {
            let mut m = msg(&body, 1);
            m.properties = format!("KEYS\u{1}order-{}", i % 100);
            store.put(m).await;
        }
    });
    assert!(store.wait_dispatched(Duration::from_secs(30)));
    g.bench_function("query_message_20_hits", |b| {
        b.iter(|| std::hint::black_box(store.query_message("Bench", "order-42", 32, 0, i64::MAX)));
    });
    g.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
}

criterion_group! { name = benches; config = config(); targets = appends, reads }
criterion_main!(benches);
