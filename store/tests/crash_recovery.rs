//! SIGKILL crash test: a child process (`store-crash-child`) appends with SYNC_FLUSH
//! from many tasks and reports every ack; the test kills it with SIGKILL at a random
//! ack count, reopens the store itself (running crash recovery on what the child
//! left), and checks that every acknowledged record of every round is readable and
//! byte-identical — by physical offset and through its consume queue — and that the
//! next child continues at the recovered tail. Some rounds also scribble garbage after
//! the last acknowledged record (a torn tail written by the test), which must be cut
//! off and reported without touching acknowledged data.
//!
//! 20 rounds by default; `FERROMQ_SLOW_TESTS=1` runs 100. `FERROMQ_CRASH_SEED`
//! replays a run (the seed is printed).

mod support;

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::FileExt;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::record::RecordRef;
use rand::{Rng, SeedableRng};
use store::{FlushDiskType, GetRequest, GetStatus, MessageStore};

const SEGMENT: u64 = 64 * 1024;
const TASKS: u32 = 16;
const RECORDS: u32 = 25;

/// Must match `body` in `src/bin/store_crash_child.rs`.
fn body(round: u32, task: u32, seq: u32) -> Vec<u8> {
    let len = 50 + ((round * 7919 + task * 104_729 + seq * 31) % 400) as usize;
    (0..len).map(|i| (i as u32 ^ round ^ (task << 3) ^ (seq << 5)) as u8).collect()
}

#[derive(Debug, Clone, Copy)]
struct Ack {
    round: u32,
    task: u32,
    seq: u32,
    phy: i64,
    queue_id: i32,
    queue_offset: i64,
    store_ts: i64,
}

impl Ack {
    fn parse(line: &str) -> Option<Self> {
        let mut it = line.strip_prefix("ACK ")?.split(' ');
        let mut next = || it.next()?.parse::<i64>().ok();
        Some(Ack {
            round: next()? as u32,
            task: next()? as u32,
            seq: next()? as u32,
            phy: next()?,
            queue_id: next()? as i32,
            queue_offset: next()?,
            store_ts: next()?,
        })
    }

    /// The exact stored record this ack promises.
    fn expected(&self) -> Bytes {
        let body = body(self.round, self.task, self.seq);
        let props = format!("KEYS\u{1}r{}-t{}-s{}", self.round, self.task, self.seq);
        RecordRef {
            topic: "Crash",
            queue_id: self.queue_id,
            flag: self.task as i32,
            queue_offset: self.queue_offset,
            physical_offset: self.phy,
            sys_flag: 0,
            born_timestamp: i64::from(self.seq),
            born_host: "192.168.7.7:7777".parse().unwrap(),
            store_timestamp: self.store_ts,
            store_host: "127.0.0.1:10911".parse().unwrap(),
            reconsume_times: self.round as i32,
            prepared_transaction_offset: 0,
            body: &body,
            properties: props.as_bytes(),
            body_crc: None,
        }
        .to_bytes()
        .unwrap()
    }
}

fn config(dir: &std::path::Path) -> store::StoreConfig {
    // Same layout as the child's configuration.
    let mut cfg = support::small_config(dir, SEGMENT, FlushDiskType::SyncFlush);
    cfg.mapped_file_size_consume_queue = bytesize::ByteSize::b(20 * 100);
    cfg.max_message_size = bytesize::ByteSize::b(SEGMENT / 4);
    cfg.max_hash_slot_num = 128;
    cfg.max_index_num = 1000;
    cfg
}

fn verify(store: &MessageStore, acks: &[Ack]) {
    let mut positions = HashSet::new();
    for a in acks {
        assert!(positions.insert((a.queue_id, a.queue_offset)), "queue offset handed out twice: {a:?}");
        let want = a.expected();
        let got = store.look_message_by_offset(a.phy).unwrap_or_else(|| panic!("acked record missing: {a:?}"));
        assert!(got == want, "acked record differs: {a:?}");
        let r = store.get_messages(&GetRequest::new("Crash", a.queue_id, a.queue_offset, 1));
        assert_eq!(r.status, GetStatus::Found, "{a:?}");
        assert!(r.messages[0] == want, "consume queue points elsewhere: {a:?}");
    }
}

#[test]
fn acked_records_survive_sigkill() {
    let rounds: u32 = if std::env::var("FERROMQ_SLOW_TESTS").as_deref() == Ok("1") { 100 } else { 20 };
    let seed: u64 = std::env::var("FERROMQ_CRASH_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
    });
    eprintln!("crash test seed {seed} ({rounds} rounds)");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let bin = env!("CARGO_BIN_EXE_store-crash-child");
    let mut acks: Vec<Ack> = Vec::new();
    let mut recovered_end = 0i64;
    let mut torn_reported = 0;
    let started = Instant::now();

    for round in 0..rounds {
        let mut child = Command::new(bin)
            .args([
                dir.path().to_str().unwrap(),
                &SEGMENT.to_string(),
                &TASKS.to_string(),
                &RECORDS.to_string(),
                &round.to_string(),
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn child");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel::<String>();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        let kill_after = rng.gen_range(0..=TASKS * RECORDS);
        let mut round_acks = Vec::new();
        let mut ready = None;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "round {round}: child made no progress");
            let Ok(line) = rx.recv_timeout(left) else { panic!("round {round}: child stopped talking") };
            if let Some(end) = line.strip_prefix("READY ") {
                ready = Some(end.parse::<i64>().unwrap());
                // Appends continue exactly where recovery left the log.
                assert_eq!(ready, Some(recovered_end), "round {round}");
            } else if let Some(a) = Ack::parse(&line) {
                assert!(a.phy >= recovered_end, "round {round}: ack below the recovered tail: {a:?}");
                round_acks.push(a);
            }
            if ready.is_some() && (round_acks.len() as u32 >= kill_after || line == "DONE") {
                break;
            }
        }
        child.kill().expect("SIGKILL");
        child.wait().unwrap();
        // Acks printed before the kill are acks too.
        reader.join().unwrap();
        round_acks.extend(rx.try_iter().filter_map(|l| Ack::parse(&l)));
        acks.extend(round_acks.iter().copied());

        // Every fourth round, scribble over whatever follows the last ack (unless the
        // last ack ends too close to its segment's end for 64 bytes of garbage).
        let mut scribble = false;
        if round % 4 == 3 && !round_acks.is_empty() {
            let tail = acks.iter().map(|a| a.phy + a.expected().len() as i64).max().unwrap();
            let seg_start = tail - tail % SEGMENT as i64;
            let local = (tail - seg_start) as u64;
            if local + 64 <= SEGMENT {
                let path = dir.path().join("commitlog").join(format!("{seg_start:020}"));
                let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
                f.write_all_at(&[0xA5; 64], local).unwrap();
                scribble = true;
            }
        }

        let store = MessageStore::open(std::sync::Arc::new(config(dir.path())), "127.0.0.1:10911".parse().unwrap())
            .expect("recovery");
        let rep = store.recovery_report().clone();
        assert!(!rep.clean_shutdown, "round {round}: {rep:?}");
        if scribble {
            assert!(rep.truncated.is_some(), "round {round}: scribbled tail not reported: {rep:?}");
        }
        if rep.truncated.is_some() {
            torn_reported += 1;
        }
        verify(&store, &acks);
        recovered_end = store.commit_log_max_offset();
        // Leave the abort marker: the next child recovers from a crash again.
        store.halt();
        drop(store);
    }
    eprintln!(
        "{rounds} rounds, {} acked records verified, {torn_reported} torn tails reported, {:?}",
        acks.len(),
        started.elapsed()
    );
    assert!(acks.len() > 100, "too few acks to mean anything");
}
