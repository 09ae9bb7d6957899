//! What a broker keeps across restarts: committed consumer offsets (clean SIGTERM, and
//! kill -9 once the periodic flush has written them), and — with SYNC_FLUSH — every
//! message whose send was acknowledged, even when killed with -9 mid-stream.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use common::msgid::decode_offset_msg_id;
use common::properties::keys;
use common::MessageExt;
use remoting::header::broker::PullMessageRequestHeader;
use remoting::ResponseCode;
use tests::wire::{now_ms, props, pull_header, send_header, Wire};
use tests::{eventually, Broker, Namesrv};

const WAIT: Duration = Duration::from_secs(10);

/// Stops the broker (SIGTERM or SIGKILL) and starts it on the same store. The
/// harness blocks while the new process starts, so keep the runtime's other worker
/// free for in-flight tasks.
fn restart(broker: Broker, ns: &Namesrv, kill9: bool) -> Result<Broker> {
    tokio::task::block_in_place(|| broker.restart(&ns.addr(), kill9))
}

/// Reads `(group, topic, queue)`'s offset from `<home>/store/config/consumerOffset.json`.
fn offset_in_file(home: &Path, group: &str, topic: &str, queue_id: i32) -> Option<i64> {
    let bytes = std::fs::read(home.join("store/config/consumerOffset.json")).ok()?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    v["offsetTable"][format!("{topic}@{group}")][queue_id.to_string()].as_i64()
}

/// Offsets committed by UPDATE_CONSUMER_OFFSET (answered and oneway) and by a pull's
/// COMMIT_OFFSET flag are answered by QUERY_CONSUMER_OFFSET after a SIGTERM restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_offsets_survive_a_clean_restart() -> Result<()> {
    let ns = Namesrv::start(&[])?;
    let broker = Broker::start(&ns.addr(), &[])?;
    let w = Wire::new(broker.addr());
    w.create_topic("OffT", 4).await?;
    for i in 0..5 {
        assert_eq!(w.send("OffT", 3, format!("m{i}").as_bytes(), &props(&[])).await?.code, ResponseCode::SUCCESS);
    }
    w.pull_at_least("Probe", "OffT", 3, 0, 5).await?;

    w.update_offset("G1", "OffT", 0, 17).await?;
    w.update_offset("G2", "OffT", 0, 4).await?;
    w.update_offset_oneway("G1", "OffT", 1, 23).await?;
    let mut h: PullMessageRequestHeader = pull_header("G1", "OffT", 3, 0);
    h.sys_flag = common::sysflag::pull::SUBSCRIPTION | common::sysflag::pull::COMMIT_OFFSET;
    h.subscription = Some("*".into());
    h.sub_version = now_ms();
    h.commit_offset = 3;
    assert_eq!(w.pull_with(&h).await?.code, ResponseCode::SUCCESS);
    eventually(WAIT, "the oneway commit", || async {
        (w.query_offset("G1", "OffT", 1).await.ok()?.1 == 23).then_some(())
    })
    .await?;

    let broker = restart(broker, &ns, false)?;
    let w = Wire::new(broker.addr());
    for (group, queue, expected) in [("G1", 0, 17), ("G2", 0, 4), ("G1", 1, 23), ("G1", 3, 3)] {
        let (code, offset, remark) = w.query_offset(group, "OffT", queue).await?;
        assert_eq!(
            (code, offset),
            (ResponseCode::SUCCESS, expected),
            "{group} queue {queue} after restart: {remark:?}"
        );
    }
    // The messages are still there, and the restarted broker keeps committing.
    let p = w.pull_at_least("Probe", "OffT", 3, 0, 5).await?;
    assert_eq!(p.messages.len(), 5);
    w.update_offset("G1", "OffT", 0, 18).await?;
    assert_eq!(w.query_offset("G1", "OffT", 0).await?.1, 18);
    Ok(())
}

/// Once the periodic flush (`flush_consumer_offset_interval`) has written an offset
/// to consumerOffset.json, a kill -9 does not lose it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flushed_offsets_survive_kill_9() -> Result<()> {
    let ns = Namesrv::start(&[])?;
    let broker = Broker::start(&ns.addr(), &[("FLUSH_CONSUMER_OFFSET_INTERVAL", "200ms")])?;
    let w = Wire::new(broker.addr());
    w.create_topic("OffT", 2).await?;
    w.update_offset("G", "OffT", 0, 42).await?;
    w.update_offset_oneway("G", "OffT", 1, 43).await?;
    let home = broker.home.path().to_path_buf();
    eventually(WAIT, "consumerOffset.json to hold both offsets", || async {
        (offset_in_file(&home, "G", "OffT", 0) == Some(42) && offset_in_file(&home, "G", "OffT", 1) == Some(43))
            .then_some(())
    })
    .await?;
    // A later commit replaces it in the file too.
    w.update_offset("G", "OffT", 0, 50).await?;
    eventually(WAIT, "consumerOffset.json to hold the newer offset", || async {
        (offset_in_file(&home, "G", "OffT", 0) == Some(50)).then_some(())
    })
    .await?;

    let broker = restart(broker, &ns, true)?;
    let w = Wire::new(broker.addr());
    assert_eq!(w.query_offset("G", "OffT", 0).await?.1, 50);
    assert_eq!(w.query_offset("G", "OffT", 1).await?.1, 43);
    Ok(())
}

/// An acknowledged send as the producer saw it.
#[derive(Debug, Clone)]
struct Acked {
    uniq: String,
    body: Vec<u8>,
    queue_id: i32,
    queue_offset: i64,
    msg_id: String,
}

const SENDERS: usize = 8;
const PER_SENDER: usize = 200;
const QUEUES: i32 = 4;

/// A 1 KiB body unique to (sender, seq), so a mix-up between messages shows.
fn body_of(sender: usize, seq: usize) -> Vec<u8> {
    let head = format!("sender {sender} seq {seq} ");
    let mut b: Vec<u8> = head.into_bytes();
    let mut x = (sender * 1_000_003 + seq * 7919) as u32;
    while b.len() < 1024 {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        b.push((x >> 16) as u8);
    }
    b
}

/// Every message of `topic`'s queue from offset 0.
async fn drain_queue(w: &Wire, topic: &str, queue_id: i32) -> Result<Vec<MessageExt>> {
    let max = w.max_offset(topic, queue_id).await?;
    let mut out = Vec::new();
    let mut offset = 0;
    while offset < max {
        let p = w.pull("Verify", topic, queue_id, offset, "*", "TAG", 0).await?;
        anyhow::ensure!(
            p.code == ResponseCode::SUCCESS,
            "pull {topic}:{queue_id}@{offset}: {:?} {:?}",
            p.code,
            p.remark
        );
        out.extend(p.messages);
        offset = p.next_begin_offset;
    }
    Ok(out)
}

/// SYNC_FLUSH: many concurrent SEND_MESSAGE_V2 senders, kill -9 mid-stream, restart
/// on the same store. Every acknowledged message is there at the queue offset and
/// offsetMsgId it was acknowledged with, byte for byte, nothing is duplicated, and
/// new sends continue at the recovered tail of each queue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_flush_keeps_every_acknowledged_message_across_kill_9() -> Result<()> {
    let ns = Namesrv::start(&[])?;
    let broker = Broker::start(&ns.addr(), &[("STORE__FLUSH_DISK_TYPE", "SYNC_FLUSH")])?;
    let addr = broker.addr();
    Wire::new(addr.clone()).create_topic("Durable", QUEUES).await?;

    let acked: Arc<Mutex<Vec<Acked>>> = Arc::default();
    let count = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut senders = Vec::new();
    for sender in 0..SENDERS {
        let (acked, count, stop) = (acked.clone(), count.clone(), stop.clone());
        let w = Wire::new(addr.clone());
        senders.push(tokio::spawn(async move {
            for seq in 0..PER_SENDER {
                if stop.load(Ordering::Acquire) {
                    break;
                }
                let uniq = format!("DURABLE-{sender:02}-{seq:04}-{}", now_ms());
                let body = body_of(sender, seq);
                let queue_id = ((sender + seq) % QUEUES as usize) as i32;
                let h = send_header(
                    "Durable",
                    queue_id,
                    &props(&[(keys::UNIQ_CLIENT_MESSAGE_ID_KEYIDX, &uniq), (keys::KEYS, &uniq)]),
                );
                match w.send_v2(&h, &body).await {
                    Ok(s) if s.code == ResponseCode::SUCCESS => {
                        acked.lock().unwrap().push(Acked {
                            uniq,
                            body,
                            queue_id: s.queue_id,
                            queue_offset: s.queue_offset,
                            msg_id: s.msg_id,
                        });
                        count.fetch_add(1, Ordering::AcqRel);
                    }
                    // Killed under us: the answer (if any) never came; the message may or may not be stored.
                    Err(_) => break,
                    Ok(s) => panic!("send refused before the kill: {:?} {:?}", s.code, s.remark),
                }
            }
        }));
    }
    // Kill while the senders are still going.
    eventually(Duration::from_secs(60), "a few hundred acknowledged sends", || async {
        (count.load(Ordering::Acquire) >= 400).then_some(())
    })
    .await?;
    stop.store(true, Ordering::Release);
    let broker = restart(broker, &ns, true)?;
    for s in senders {
        s.await?;
    }
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() < SENDERS * PER_SENDER, "the kill came after every send finished; nothing was in flight");

    let w = Wire::new(broker.addr());
    let mut stored: HashMap<String, MessageExt> = HashMap::new();
    let mut tails = Vec::new();
    for q in 0..QUEUES {
        let msgs = drain_queue(&w, "Durable", q).await?;
        for (i, m) in msgs.iter().enumerate() {
            assert_eq!(m.queue_offset, i as i64, "queue {q} has a gap or a reorder at {i}");
        }
        tails.push(msgs.len() as i64);
        for m in msgs {
            let uniq = m.properties.get(keys::UNIQ_CLIENT_MESSAGE_ID_KEYIDX).context("UNIQ_KEY")?.to_owned();
            let dup = stored.insert(uniq.clone(), m);
            assert!(dup.is_none(), "{uniq} stored twice");
        }
    }
    for a in &acked {
        let m = stored
            .get(&a.uniq)
            .with_context(|| format!("acknowledged message {} lost ({} acknowledged in all)", a.uniq, acked.len()))?;
        assert_eq!(m.body, a.body, "{} body differs", a.uniq);
        assert_eq!((m.queue_id, m.queue_offset), (a.queue_id, a.queue_offset), "{} moved", a.uniq);
        assert_eq!(m.offset_msg_id(), a.msg_id, "{} offsetMsgId differs", a.uniq);
    }
    // Whatever else recovered is a complete, uncorrupted message from a sender.
    for (uniq, m) in &stored {
        let (sender, seq) = parse_uniq(uniq).with_context(|| format!("unexpected message {uniq}"))?;
        assert_eq!(m.body, body_of(sender, seq), "{uniq} body corrupt");
    }

    eprintln!(
        "{} of {} sends acknowledged before the kill; {} messages recovered",
        acked.len(),
        SENDERS * PER_SENDER,
        stored.len()
    );

    // New sends go to the recovered tails.
    for q in 0..QUEUES {
        let s = w.send("Durable", q, b"after restart", &props(&[])).await?;
        assert_eq!(s.code, ResponseCode::SUCCESS, "{:?}", s.remark);
        assert_eq!(s.queue_offset, tails[q as usize], "queue {q} continues at its recovered tail");
        let (_, phy) = decode_offset_msg_id(&s.msg_id)?;
        let p = w.pull_at_least("Verify", "Durable", q, s.queue_offset, 1).await?;
        assert_eq!(&p.messages[0].body[..], b"after restart");
        assert_eq!(p.messages[0].commit_log_offset, phy);
    }
    Ok(())
}

fn parse_uniq(uniq: &str) -> Option<(usize, usize)> {
    let mut parts = uniq.strip_prefix("DURABLE-")?.split('-');
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}
