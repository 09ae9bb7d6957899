//! Store-level load generator: appends 1 KiB (by default) records through
//! `store::MessageStore` with ASYNC_FLUSH and SYNC_FLUSH at several concurrency
//! levels, measures the same disk's limits with plain file I/O in the same run, and
//! pulls 32-message batches from a warm queue. Prints a table, then one JSON object.
//!
//! ```text
//! cargo run --release -p bench --bin store_load -- --dir /tmp/ferromq-bench
//! ```
//!
//! An "appender" is one task that awaits each put before issuing the next (a
//! synchronous producer). `async:1xW` is one task keeping W puts in flight
//! (a pipelined/async producer) — the way to feed the single writer from one task;
//! a `bB` suffix makes each put a `put_batch` of B messages (SEND_BATCH_MESSAGE).

use std::alloc::{GlobalAlloc, Layout, System};
use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use clap::Parser;
use futures::stream::{FuturesUnordered, StreamExt};
use store::{FlushDiskType, GetRequest, GetStatus, MessageStore, PutMessage, PutStatus, StoreConfig};

/// Counts heap allocations so the read benchmark can show allocations per pull.
struct Counting;
static ALLOCS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards every call to the system allocator unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[derive(Parser, Debug)]
#[command(about = "FerroMQ store-level load generator")]
struct Args {
    /// Directory for the scenario stores and the raw-disk baseline (removed after).
    #[arg(long, default_value = "/tmp/ferromq-store-load")]
    dir: PathBuf,
    /// Message body size in bytes.
    #[arg(long, default_value_t = 1024)]
    size: usize,
    /// Commit-log segment size.
    #[arg(long, default_value = "1GiB")]
    segment_size: bytesize::ByteSize,
    /// Scenarios: `async:N`, `sync:N` (N appenders) or `async:1xW` (one task, W in flight).
    #[arg(long, value_delimiter = ',', default_value = "async:1,async:1x256,async:16,sync:1,sync:16,sync:64,sync:256")]
    scenarios: Vec<String>,
    /// Time limit per scenario.
    #[arg(long, default_value = "5s", value_parser = humantime_like)]
    duration: Duration,
    /// Message limit per scenario.
    #[arg(long, default_value_t = 2_000_000)]
    max_messages: u64,
    /// Volume of the sequential-write baseline (plain write + fdatasync).
    #[arg(long, default_value = "1GiB")]
    baseline_bytes: bytesize::ByteSize,
    /// Messages in the warm queue of the read benchmark (0 skips it).
    #[arg(long, default_value_t = 200_000)]
    read_messages: u64,
    /// Tokio worker threads.
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Skip the raw-disk baseline.
    #[arg(long)]
    no_baseline: bool,
    /// Do not warm commit-log segments ahead of the writer
    /// (`warm_mapped_file_enable = false`, the broker's default; SYNC_FLUSH warms
    /// them regardless).
    #[arg(long)]
    no_warm: bool,
    /// Start measuring right after open instead of waiting for the background
    /// warming of the active and next segment to finish.
    #[arg(long)]
    cold: bool,
}

fn humantime_like(s: &str) -> Result<Duration, String> {
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num.parse().map_err(|_| format!("bad duration {s}"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" | "" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        _ => Err(format!("bad duration {s}")),
    }
}

#[derive(Debug, Clone)]
struct Scenario {
    name: String,
    sync: bool,
    appenders: usize,
    window: usize,
    /// Messages per put (`put_batch` when > 1).
    batch: usize,
}

fn parse_scenario(s: &str) -> Result<Scenario> {
    let (kind, n) = s.split_once(':').context("scenario must be kind:N")?;
    let sync = match kind {
        "async" => false,
        "sync" => true,
        _ => bail!("unknown flush kind {kind}"),
    };
    let (n, batch) = match n.split_once('b') {
        Some((n, b)) => (n, b.parse()?),
        None => (n, 1),
    };
    let (appenders, window) = match n.split_once('x') {
        Some((a, w)) => (a.parse()?, w.parse()?),
        None => (n.parse()?, 1),
    };
    Ok(Scenario { name: s.to_owned(), sync, appenders, window, batch })
}

#[derive(Debug, Default)]
struct Outcome {
    ok: u64,
    failed: u64,
    bytes: u64,
    elapsed: Duration,
    lat_us: Vec<u32>,
    flushes: u64,
    batches: u64,
}

fn pct(sorted: &[u32], p: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn store_config(dir: &Path, segment: bytesize::ByteSize, sync: bool, warm: bool) -> StoreConfig {
    StoreConfig {
        warm_mapped_file_enable: warm,
        store_path_root_dir: dir.to_owned(),
        mapped_file_size_commit_log: segment,
        flush_disk_type: if sync { FlushDiskType::SyncFlush } else { FlushDiskType::AsyncFlush },
        // Measure appends, not refusals: a nearly full disk must not stop them.
        disk_space_warning_level_ratio: 1.0,
        disk_space_clean_forcibly_ratio: 1.0,
        ..StoreConfig::default()
    }
}

fn message(size: usize, queue: i32) -> PutMessage {
    let mut m = PutMessage::new("BenchTopic", queue, Bytes::from(vec![0x5Au8; size]));
    m.born_host = "127.0.0.1:40000".parse().expect("addr");
    m.properties = "TAGS\u{1}bench".to_owned();
    m.tags_code = common::hash::tags_code(Some("bench"));
    m
}

fn run_scenario(rt: &tokio::runtime::Runtime, args: &Args, sc: &Scenario) -> Result<Outcome> {
    let dir = args.dir.join(format!("store-{}", sc.name.replace(':', "-")));
    let _ = std::fs::remove_dir_all(&dir);
    let cfg = store_config(&dir, args.segment_size, sc.sync, !args.no_warm);
    let store = Arc::new(MessageStore::open(Arc::new(cfg), "127.0.0.1:10911".parse()?)?);
    if !args.cold && !args.no_warm {
        let until = Instant::now() + Duration::from_secs(120);
        while !store.is_warm() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    let body = message(args.size, 0).body;
    let per_task = args.max_messages.div_ceil(sc.appenders as u64);
    let deadline = Instant::now() + args.duration;
    let start = Instant::now();
    let results = rt.block_on(async {
        let mut tasks = Vec::new();
        for t in 0..sc.appenders {
            let store = store.clone();
            let body = body.clone();
            let window = sc.window;
            let batch = sc.batch.max(1);
            tasks.push(tokio::spawn(async move {
                let mut out = Outcome::default();
                let mut lat = Vec::with_capacity(1 << 16);
                let mut inflight = FuturesUnordered::new();
                let mut issued = 0u64;
                loop {
                    while inflight.len() < window && issued < per_task && Instant::now() < deadline {
                        let msgs: Vec<PutMessage> = (0..batch)
                            .map(|_| {
                                let mut m = message(0, (t % 8) as i32);
                                m.body = body.clone();
                                m
                            })
                            .collect();
                        let s = store.clone();
                        issued += batch as u64;
                        inflight.push(async move {
                            let t0 = Instant::now();
                            let r = if msgs.len() == 1 {
                                s.put(msgs.into_iter().next().expect("one")).await
                            } else {
                                s.put_batch(msgs).await
                            };
                            (r, t0.elapsed())
                        });
                    }
                    let Some((r, d)) = inflight.next().await else {
                        break;
                    };
                    if r.status == PutStatus::PutOk {
                        out.ok += r.msg_count as u64;
                        out.bytes += r.wrote_bytes as u64;
                    } else {
                        out.failed += 1;
                    }
                    lat.push(d.as_micros().min(u128::from(u32::MAX)) as u32);
                }
                out.lat_us = lat;
                out
            }));
        }
        let mut all = Vec::new();
        for t in tasks {
            all.push(t.await.expect("task"));
        }
        all
    });
    let elapsed = start.elapsed();
    let stats = store.stats();
    let mut out = Outcome { elapsed, flushes: stats.flushes, batches: stats.writer_batches, ..Outcome::default() };
    for r in results {
        out.ok += r.ok;
        out.failed += r.failed;
        out.bytes += r.bytes;
        out.lat_us.extend(r.lat_us);
    }
    out.lat_us.sort_unstable();
    let store = Arc::try_unwrap(store).map_err(|_| anyhow::anyhow!("store still shared"))?;
    store.shutdown()?;
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(out)
}

#[derive(Debug, Default)]
struct Baseline {
    seq_mb_s: f64,
    seq_bytes: u64,
    seq_secs: f64,
    fdatasync_p50_us: u32,
    fdatasync_p99_us: u32,
    msync_p50_us: u32,
    msync_p99_us: u32,
    chunk256k_mb_s: f64,
}

/// The disk's limits with plain file I/O on the same volume/directory.
fn baseline(dir: &Path, bytes: u64) -> Result<Baseline> {
    std::fs::create_dir_all(dir)?;
    let mut b = Baseline::default();
    // One fdatasync: 1 KiB pwrite at increasing offsets of a pre-written file + fdatasync.
    let path = dir.join("baseline-fsync");
    let f = OpenOptions::new().create(true).read(true).write(true).truncate(true).open(&path)?;
    let zero = vec![0u8; 1 << 20];
    for i in 0..16u64 {
        f.write_all_at(&zero, i << 20)?;
    }
    f.sync_all()?;
    let rec = vec![0x3Cu8; 1024];
    let mut lat = Vec::new();
    for i in 0..500u64 {
        let t = Instant::now();
        f.write_all_at(&rec, i * 1024)?;
        f.sync_data()?;
        lat.push(t.elapsed().as_micros() as u32);
    }
    lat.sort_unstable();
    b.fdatasync_p50_us = pct(&lat, 0.5);
    b.fdatasync_p99_us = pct(&lat, 0.99);
    // The store's own kind of sync: 1 KiB memcpy into a shared mapping of a
    // pre-written file + msync(MS_SYNC) of that page.
    {
        // SAFETY: `f` stays open and unmodified by others while the map lives.
        let map = unsafe { memmap2::MmapMut::map_mut(&f)? };
        let mut map = map;
        let mut lat = Vec::new();
        for i in 0..500usize {
            let t = Instant::now();
            map[i * 1024..(i + 1) * 1024].copy_from_slice(&rec);
            let page = i * 1024 / 4096 * 4096;
            map.flush_range(page, 4096)?;
            lat.push(t.elapsed().as_micros() as u32);
        }
        lat.sort_unstable();
        b.msync_p50_us = pct(&lat, 0.5);
        b.msync_p99_us = pct(&lat, 0.99);
    }
    // 256 KiB write + fdatasync, repeated over the same pre-written 16 MiB.
    let c = vec![0x77u8; 256 * 1024];
    let t = Instant::now();
    let n = 64u64;
    for i in 0..n {
        f.write_all_at(&c, i * c.len() as u64)?;
        f.sync_data()?;
    }
    b.chunk256k_mb_s = (n * c.len() as u64) as f64 / 1e6 / t.elapsed().as_secs_f64();
    drop(f);
    std::fs::remove_file(&path)?;

    // Sequential write of `bytes` in 1 MiB chunks to a new file, then one fdatasync.
    if bytes == 0 {
        return Ok(b);
    }
    let path = dir.join("baseline-seq");
    let _ = std::fs::remove_file(&path);
    let mut f = OpenOptions::new().create(true).write(true).truncate(true).open(&path)?;
    let chunk = vec![0xA5u8; 1 << 20];
    let t = Instant::now();
    let mut written = 0u64;
    while written < bytes {
        f.write_all(&chunk)?;
        written += chunk.len() as u64;
    }
    f.sync_data()?;
    b.seq_secs = t.elapsed().as_secs_f64();
    b.seq_bytes = written;
    b.seq_mb_s = written as f64 / 1e6 / b.seq_secs;
    drop(f);
    std::fs::remove_file(&path)?;
    Ok(b)
}

#[derive(Debug, Default)]
struct ReadOutcome {
    messages: u64,
    bytes: u64,
    secs: f64,
    pulls: u64,
    allocs_per_pull: f64,
    /// GB/s when every byte of every returned record is also read.
    touched_gb_s: f64,
}

fn read_bench(rt: &tokio::runtime::Runtime, args: &Args) -> Result<ReadOutcome> {
    let dir = args.dir.join("store-read");
    let _ = std::fs::remove_dir_all(&dir);
    let store = Arc::new(MessageStore::open(
        Arc::new(store_config(&dir, args.segment_size, false, !args.no_warm)),
        "127.0.0.1:10911".parse()?,
    )?);
    let n = args.read_messages;
    rt.block_on(async {
        let mut tasks = Vec::new();
        for t in 0..8u64 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                let mut f = FuturesUnordered::new();
                for _ in (t..n).step_by(8) {
                    let s = store.clone();
                    f.push(async move { s.put(message(args_size(), 0)).await });
                    if f.len() >= 64 {
                        f.next().await;
                    }
                }
                while f.next().await.is_some() {}
            }));
        }
        for t in tasks {
            t.await.expect("task");
        }
    });
    if !store.wait_dispatched(Duration::from_secs(60)) {
        bail!("dispatch did not catch up");
    }
    let max = store.max_offset_in_queue("BenchTopic", 0);
    let sweep = |store: &MessageStore, touch: bool| -> (u64, u64, u64) {
        let (mut msgs, mut bytes, mut pulls) = (0u64, 0u64, 0u64);
        let mut off = 0;
        let mut sum = 0u64;
        while off < max {
            let r = store.get_messages(&GetRequest::new("BenchTopic", 0, off, 32));
            assert_eq!(r.status, GetStatus::Found);
            if touch {
                // What a consumer or a socket write does: read every byte.
                for m in &r.messages {
                    for c in m.chunks_exact(8) {
                        sum = sum.wrapping_add(u64::from_le_bytes(c.try_into().expect("8 bytes")));
                    }
                }
            }
            msgs += r.messages.len() as u64;
            bytes += r.total_bytes as u64;
            pulls += 1;
            off = r.next_begin_offset;
        }
        std::hint::black_box(sum);
        (msgs, bytes, pulls)
    };
    sweep(&store, false); // warm
    let a0 = ALLOCS.load(Ordering::Relaxed);
    let t = Instant::now();
    let mut out = ReadOutcome::default();
    while t.elapsed() < Duration::from_secs(3) {
        let (m, b, p) = sweep(&store, false);
        out.messages += m;
        out.bytes += b;
        out.pulls += p;
    }
    out.secs = t.elapsed().as_secs_f64();
    out.allocs_per_pull = (ALLOCS.load(Ordering::Relaxed) - a0) as f64 / out.pulls as f64;
    let t = Instant::now();
    let mut touched = 0u64;
    while t.elapsed() < Duration::from_secs(3) {
        touched += sweep(&store, true).1;
    }
    out.touched_gb_s = touched as f64 / 1e9 / t.elapsed().as_secs_f64();
    let store = Arc::try_unwrap(store).map_err(|_| anyhow::anyhow!("store still shared"))?;
    store.shutdown()?;
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(out)
}

static SIZE: AtomicU64 = AtomicU64::new(1024);
fn args_size() -> usize {
    SIZE.load(Ordering::Relaxed) as usize
}

fn main() -> Result<()> {
    let args = Args::parse();
    SIZE.store(args.size as u64, Ordering::Relaxed);
    std::fs::create_dir_all(&args.dir)?;
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(args.workers).enable_all().build()?;
    let scenarios = args.scenarios.iter().map(|s| parse_scenario(s)).collect::<Result<Vec<_>>>()?;

    let base = if args.no_baseline { None } else { Some(baseline(&args.dir, args.baseline_bytes.as_u64())?) };
    if let Some(b) = &base {
        println!(
            "disk baseline: sequential write+fdatasync {:.0} MB/s ({} MiB in {:.2}s); 1 KiB pwrite+fdatasync p50 {} us p99 {} us; 1 KiB mmap+msync p50 {} us p99 {} us; 256 KiB write+fdatasync {:.0} MB/s",
            b.seq_mb_s, b.seq_bytes >> 20, b.seq_secs, b.fdatasync_p50_us, b.fdatasync_p99_us, b.msync_p50_us, b.msync_p99_us, b.chunk256k_mb_s
        );
    }
    println!(
        "{:<12} {:>11} {:>9} {:>8} {:>8} {:>8} {:>9} {:>9} {:>7}",
        "scenario", "appends/s", "MB/s", "p50 us", "p99 us", "p999 us", "flushes", "batches", "failed"
    );
    let mut json_rows = Vec::new();
    for sc in &scenarios {
        let o = run_scenario(&rt, &args, sc)?;
        let secs = o.elapsed.as_secs_f64();
        let rate = o.ok as f64 / secs;
        let mbs = o.bytes as f64 / 1e6 / secs;
        let (p50, p99, p999) = (pct(&o.lat_us, 0.5), pct(&o.lat_us, 0.99), pct(&o.lat_us, 0.999));
        println!(
            "{:<12} {:>11.0} {:>9.1} {:>8} {:>8} {:>8} {:>9} {:>9} {:>7}",
            sc.name, rate, mbs, p50, p99, p999, o.flushes, o.batches, o.failed
        );
        let vs_disk = base.as_ref().map(|b| mbs / b.seq_mb_s);
        let vs_fsync = base.as_ref().map(|b| f64::from(p50) / f64::from(b.fdatasync_p50_us.max(1)));
        json_rows.push(serde_json::json!({
            "scenario": sc.name, "sync_flush": sc.sync, "appenders": sc.appenders, "window": sc.window,
            "appends": o.ok, "failed": o.failed, "seconds": secs, "appends_per_sec": rate, "mb_per_sec": mbs,
            "latency_us": {"p50": p50, "p99": p99, "p999": p999},
            "flushes": o.flushes, "writer_batches": o.batches,
            "mb_per_sec_vs_disk_seq": vs_disk, "p50_vs_one_fdatasync": vs_fsync,
        }));
    }
    // The sync latencies again, after the scenarios: this virtual disk changes speed
    // over time, so both measurements are reported.
    let base_end = if args.no_baseline { None } else { Some(baseline(&args.dir, 0)?) };
    if let Some(b) = &base_end {
        println!(
            "disk baseline (end of run): 1 KiB pwrite+fdatasync p50 {} us p99 {} us; 1 KiB mmap+msync p50 {} us p99 {} us; 256 KiB write+fdatasync {:.0} MB/s",
            b.fdatasync_p50_us, b.fdatasync_p99_us, b.msync_p50_us, b.msync_p99_us, b.chunk256k_mb_s
        );
    }
    let read = if args.read_messages > 0 { Some(read_bench(&rt, &args)?) } else { None };
    if let Some(r) = &read {
        println!(
            "read: 32-message pulls from a warm queue: {:.2} GB/s of message bytes ({:.2} GB/s reading every byte), {:.0} msgs/s, {:.0} pulls/s, {:.2} heap allocations per pull",
            r.bytes as f64 / 1e9 / r.secs,
            r.touched_gb_s,
            r.messages as f64 / r.secs,
            r.pulls as f64 / r.secs,
            r.allocs_per_pull
        );
    }
    let json = serde_json::json!({
        "message_size": args.size,
        "segment_size": args.segment_size.as_u64(),
        "dir": args.dir,
        "workers": args.workers,
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "baseline": base.as_ref().map(|b| serde_json::json!({
            "seq_write_fdatasync_mb_per_sec": b.seq_mb_s, "seq_bytes": b.seq_bytes,
            "fdatasync_1k_p50_us": b.fdatasync_p50_us, "fdatasync_1k_p99_us": b.fdatasync_p99_us,
            "msync_1k_p50_us": b.msync_p50_us, "msync_1k_p99_us": b.msync_p99_us,
            "write256k_fdatasync_mb_per_sec": b.chunk256k_mb_s,
        })),
        "baseline_end": base_end.as_ref().map(|b| serde_json::json!({
            "fdatasync_1k_p50_us": b.fdatasync_p50_us, "fdatasync_1k_p99_us": b.fdatasync_p99_us,
            "msync_1k_p50_us": b.msync_p50_us, "msync_1k_p99_us": b.msync_p99_us,
            "write256k_fdatasync_mb_per_sec": b.chunk256k_mb_s,
        })),
        "scenarios": json_rows,
        "read": read.as_ref().map(|r| serde_json::json!({
            "gb_per_sec": r.bytes as f64 / 1e9 / r.secs, "gb_per_sec_reading_every_byte": r.touched_gb_s,
            "messages_per_sec": r.messages as f64 / r.secs,
            "pulls_per_sec": r.pulls as f64 / r.secs, "allocs_per_pull": r.allocs_per_pull, "batch": 32,
        })),
    });
    println!("{}", serde_json::to_string(&json)?);
    Ok(())
}
