//! Orderly push consumption against real processes: per-queue
//! order under concurrent producers using a hash selector, redelivery of a
//! suspended batch in place, and a queue handover to a new member that keeps
//! order and does not wait for the 20 s lock refresh (RocketMQ pain point #10).

mod client_support;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{ensure, Result};
use client::consumer::{ConsumeContext, ConsumeFromWhere, ConsumeOrderlyStatus, PushConsumer};
use client::producer::SelectByHash;
use client::{Message, MessageExt, MessageQueue};
use tests::{eventually, Broker, Namesrv};

use client_support::{create_topic, producer, text, WAIT};

/// (consumer index, order id, sequence number) of each successfully consumed message.
type Log = Arc<Mutex<Vec<(usize, String, u32)>>>;

fn parse(m: &MessageExt) -> (String, u32) {
    let body = text(&m.body);
    let (order, seq) = body.split_once(':').expect("order:seq");
    (order.to_owned(), seq.parse().expect("seq"))
}

/// An orderly consumer of `group` that logs what it consumed; the first delivery
/// of every message with sequence number 7 is refused once (suspend), so each
/// order also exercises an in-place redelivery.
async fn orderly_consumer(ns: &str, group: &str, topic: &str, idx: usize, log: &Log) -> Result<PushConsumer> {
    let log = log.clone();
    let refused: Arc<Mutex<std::collections::BTreeSet<String>>> = Arc::default();
    Ok(PushConsumer::builder(group)
        .namesrv(ns)
        .subscribe(topic, "*")
        .consume_from(ConsumeFromWhere::FirstOffset)
        .with_options(|o| {
            o.rebalance_interval = Duration::from_secs(1);
            o.consume_batch_size = 3;
            o.suspend_current_queue_time = Duration::from_millis(100);
        })
        .on_message_orderly(move |msgs: &[MessageExt], _: &ConsumeContext| {
            for m in msgs {
                let (order, seq) = parse(m);
                if seq == 7 && refused.lock().unwrap().insert(order) {
                    return ConsumeOrderlyStatus::SuspendCurrentQueueAMoment;
                }
            }
            let mut log = log.lock().unwrap();
            for m in msgs {
                let (order, seq) = parse(m);
                log.push((idx, order, seq));
            }
            ConsumeOrderlyStatus::Success
        })
        .start()
        .await?)
}

fn start_cluster() -> Result<(Namesrv, Broker)> {
    let ns = Namesrv::start(&[])?;
    let broker = Broker::start(&ns.addr(), &[("BROKER_NAME", "broker-a")])?;
    Ok((ns, broker))
}

/// 4 producers, each sending its orders' messages in sequence with
/// `SelectByHash(order id)`.
async fn produce(ns: &str, topic: &str, prefix: &str, orders_per_producer: usize, seqs: u32) -> Result<()> {
    let mut tasks = Vec::new();
    for p in 0..4 {
        let (ns, topic, prefix) = (ns.to_owned(), topic.to_owned(), prefix.to_owned());
        tasks.push(tokio::spawn(async move {
            let producer = producer(&ns, &format!("OrderProducer{p}"));
            for seq in 0..seqs {
                for o in 0..orders_per_producer {
                    let order = format!("{prefix}{p}-{o}");
                    producer
                        .send_with_selector(
                            Message::new(&topic, format!("{order}:{seq}")),
                            &SelectByHash(order.clone()),
                        )
                        .await?;
                }
            }
            producer.shutdown().await;
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(())
}

/// Each order's messages were consumed once each, in sequence order, by one member.
fn check_orders(log: &Log, prefix: &str, orders: usize, seqs: u32) -> Result<()> {
    let log = log.lock().unwrap();
    let mut by_order: BTreeMap<&str, Vec<(usize, u32)>> = BTreeMap::new();
    for (idx, order, seq) in log.iter().filter(|(_, o, _)| o.starts_with(prefix)) {
        by_order.entry(order.as_str()).or_default().push((*idx, *seq));
    }
    ensure!(by_order.len() == orders, "{} orders consumed, {orders} sent", by_order.len());
    for (order, seen) in &by_order {
        let seq: Vec<u32> = seen.iter().map(|(_, s)| *s).collect();
        ensure!(seq == (0..seqs).collect::<Vec<_>>(), "order {order}: sequence {seq:?}");
    }
    Ok(())
}

async fn consumed(log: &Log, prefix: &str, n: usize) -> Result<()> {
    eventually(WAIT, &format!("{n} messages of {prefix}"), || async {
        (log.lock().unwrap().iter().filter(|(_, o, _)| o.starts_with(prefix)).count() >= n).then_some(())
    })
    .await
}

fn queues(c: &PushConsumer, topic: &str) -> Vec<MessageQueue> {
    c.assigned_queues().into_iter().filter(|q| q.topic == topic).collect()
}

/// Two orderly members split 8 queues; 4 concurrent producers send 20 orders of
/// 25 steps each; every order is consumed exactly once, strictly in sequence, by
/// one member — including around a suspended batch.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn orderly_keeps_each_orders_sequence_under_concurrent_producers() -> Result<()> {
    let (ns, _broker) = start_cluster()?;
    let ns = ns.addr();
    create_topic(&ns, "OrderTopic", 8, 1).await?;
    let log: Log = Arc::default();
    let c0 = orderly_consumer(&ns, "GOrder", "OrderTopic", 0, &log).await?;
    let c1 = orderly_consumer(&ns, "GOrder", "OrderTopic", 1, &log).await?;
    eventually(WAIT, "a 4/4 split", || async {
        (queues(&c0, "OrderTopic").len() == 4 && queues(&c1, "OrderTopic").len() == 4).then_some(())
    })
    .await?;
    produce(&ns, "OrderTopic", "o", 5, 25).await?;
    consumed(&log, "o", 500).await?;
    check_orders(&log, "o", 20, 25)?;
    let members: BTreeMap<String, std::collections::BTreeSet<usize>> =
        log.lock().unwrap().iter().fold(BTreeMap::new(), |mut m, (i, o, _)| {
            m.entry(o.clone()).or_default().insert(*i);
            m
        });
    ensure!(members.values().all(|s| s.len() == 1), "an order was consumed by two members: {members:?}");
    ensure!(
        members.values().any(|s| s.contains(&0)) && members.values().any(|s| s.contains(&1)),
        "both members consumed"
    );
    c0.shutdown().await;
    c1.shutdown().await;
    Ok(())
}

/// A third member joins while orders are being produced: the queues it takes
/// over are handed over at a committed boundary (no order repeats or skips a
/// step), and it starts consuming them within seconds — the old owner unlocks
/// on removal and the new one retries its lock at once instead of waiting for
/// the 20 s refresh.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn queue_handover_keeps_order_and_does_not_wait_for_the_lock_refresh() -> Result<()> {
    let (ns, _broker) = start_cluster()?;
    let ns = ns.addr();
    create_topic(&ns, "OrderMove", 6, 1).await?;
    let log: Log = Arc::default();
    let c0 = orderly_consumer(&ns, "GMove", "OrderMove", 0, &log).await?;
    let c1 = orderly_consumer(&ns, "GMove", "OrderMove", 1, &log).await?;
    eventually(WAIT, "a 3/3 split", || async {
        (queues(&c0, "OrderMove").len() == 3 && queues(&c1, "OrderMove").len() == 3).then_some(())
    })
    .await?;
    let first = {
        let ns = ns.clone();
        tokio::spawn(async move { produce(&ns, "OrderMove", "m", 3, 40).await })
    };
    consumed(&log, "m", 60).await?;
    let joined = Instant::now();
    let c2 = orderly_consumer(&ns, "GMove", "OrderMove", 2, &log).await?;
    eventually(WAIT, "a 2/2/2 split", || async {
        [&c0, &c1, &c2].iter().all(|c| queues(c, "OrderMove").len() == 2).then_some(())
    })
    .await?;
    first.await??;
    // More orders after the move, so the new member has work on its queues.
    produce(&ns, "OrderMove", "n", 3, 10).await?;
    eventually(WAIT, "the new member consuming", || async {
        log.lock().unwrap().iter().any(|(i, _, _)| *i == 2).then_some(())
    })
    .await?;
    let took = joined.elapsed();
    ensure!(took < Duration::from_secs(15), "the new member needed {took:?} to consume (lock refresh is 20 s)");
    consumed(&log, "m", 480).await?;
    consumed(&log, "n", 120).await?;
    check_orders(&log, "m", 12, 40)?;
    check_orders(&log, "n", 12, 10)?;
    for c in [&c0, &c1, &c2] {
        c.shutdown().await;
    }
    Ok(())
}
