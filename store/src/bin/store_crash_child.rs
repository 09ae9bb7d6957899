//! Child process for the SIGKILL crash test (`store/tests/crash_recovery.rs`).
//!
//! Opens a SYNC_FLUSH store, prints `READY <commit log end>`, then appends from many
//! tasks and prints `ACK round task seq phy queue_id queue_offset store_ts` for every
//! acknowledged (durable) record, flushing stdout after each line. It never shuts the
//! store down: the test kills it with SIGKILL.
//!
//! Usage: `store-crash-child <dir> <segment bytes> <tasks> <records per task> <round>`

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use store::{FlushDiskType, MessageStore, PutMessage, PutStatus, StoreConfig};

/// Deterministic record contents shared with the test (it rebuilds the exact bytes).
pub fn body(round: u32, task: u32, seq: u32) -> Vec<u8> {
    let len = 50 + ((round * 7919 + task * 104_729 + seq * 31) % 400) as usize;
    (0..len).map(|i| (i as u32 ^ round ^ (task << 3) ^ (seq << 5)) as u8).collect()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 6 {
        eprintln!("usage: store-crash-child <dir> <segment> <tasks> <records> <round>");
        std::process::exit(2);
    }
    let dir = std::path::PathBuf::from(&args[1]);
    let segment: u64 = args[2].parse().expect("segment");
    let tasks: u32 = args[3].parse().expect("tasks");
    let records: u32 = args[4].parse().expect("records");
    let round: u32 = args[5].parse().expect("round");

    let cfg = StoreConfig {
        store_path_root_dir: dir,
        mapped_file_size_commit_log: bytesize::ByteSize::b(segment),
        mapped_file_size_consume_queue: bytesize::ByteSize::b(20 * 100),
        flush_disk_type: FlushDiskType::SyncFlush,
        flush_interval_consume_queue: Duration::from_millis(30),
        sync_flush_timeout: Duration::from_secs(30),
        max_message_size: bytesize::ByteSize::b(segment / 4),
        max_hash_slot_num: 128,
        max_index_num: 1000,
        // A nearly full disk must not make the store refuse puts or force-delete the
        // acknowledged segments the test verifies.
        disk_max_used_space_ratio: 95,
        disk_space_warning_level_ratio: 1.0,
        disk_space_clean_forcibly_ratio: 1.0,
        ..StoreConfig::default()
    };
    let store = match MessageStore::open(Arc::new(cfg), "127.0.0.1:10911".parse().expect("addr")) {
        Ok(s) => Arc::new(s),
        Err(e) => {
            eprintln!("open failed: {e}");
            std::process::exit(1);
        }
    };
    {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "READY {}", store.commit_log_max_offset());
        let _ = out.flush();
    }
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    rt.block_on(async {
        let mut handles = Vec::new();
        for task in 0..tasks {
            let store = store.clone();
            handles.push(tokio::spawn(async move {
                for seq in 0..records {
                    let mut m = PutMessage::new("Crash", (task % 4) as i32, Bytes::from(body(round, task, seq)));
                    m.flag = task as i32;
                    m.born_timestamp = i64::from(seq);
                    m.born_host = "192.168.7.7:7777".parse().expect("addr");
                    m.reconsume_times = round as i32;
                    m = m.with_properties(format!("KEYS\u{1}r{round}-t{task}-s{seq}"));
                    let r = store.put(m).await;
                    if r.status == PutStatus::PutOk {
                        let mut out = std::io::stdout().lock();
                        let _ = writeln!(
                            out,
                            "ACK {round} {task} {seq} {} {} {} {}",
                            r.physical_offset,
                            task % 4,
                            r.queue_offset,
                            r.store_timestamp
                        );
                        let _ = out.flush();
                    }
                }
            }));
        }
        for h in handles {
            let _ = h.await;
        }
    });
    {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "DONE");
        let _ = out.flush();
    }
    // Wait to be killed; never shut down cleanly.
    loop {
        std::thread::park();
    }
}
