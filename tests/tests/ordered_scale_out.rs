//! Ordered topics against real processes: global order through the name
//! server's `orderTopicConf`, and the scale-out rule for per-queue order — when
//! queues are added to an ordered topic, a consumer group reads the new queues
//! only once it has consumed every old queue up to its length at expansion time
//! (`broker::order_expansion`).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use client::consumer::{ConsumeContext, ConsumeFromWhere, ConsumeOrderlyStatus, PushConsumer};
use client::producer::SelectByHash;
use client::{Message, MessageExt, Producer, ProducerOptions};
use common::properties::{keys, Properties};
use remoting::header::broker::CreateTopicRequestHeader;
use remoting::header::namesrv::PutKvConfigRequestHeader;
use remoting::{RemotingClient, RemotingCommand, RequestCode, ResponseCode};
use tests::wire::{Pulled, Wire};
use tests::{eventually, Broker, Namesrv};

const WAIT: Duration = Duration::from_secs(30);

/// UPDATE_AND_CREATE_TOPIC with `queues` read/write queues and the `order` flag
/// (what `mqadmin updateTopic -o true` sends).
async fn update_topic(w: &Wire, topic: &str, queues: i32, order: bool) -> Result<()> {
    let h = CreateTopicRequestHeader { order, ..CreateTopicRequestHeader::new(topic, queues) };
    let resp = w.call(RemotingCommand::request_with(RequestCode::UPDATE_AND_CREATE_TOPIC, &h)).await?;
    ensure!(
        resp.response_code() == ResponseCode::SUCCESS,
        "update {topic}: {:?} {:?}",
        resp.response_code(),
        resp.remark
    );
    Ok(())
}

async fn send_n(w: &Wire, topic: &str, queue_id: i32, n: usize) -> Result<()> {
    for i in 0..n {
        let mut p = Properties::new();
        p.insert(keys::UNIQ_CLIENT_MESSAGE_ID_KEYIDX, format!("{topic}-{queue_id}-{i}"));
        let sent = w.send(topic, queue_id, format!("{queue_id}:{i}").as_bytes(), &p).await?;
        ensure!(sent.code == ResponseCode::SUCCESS);
    }
    Ok(())
}

/// A pull of `queue_id` by `group` (inline subscription, so no heartbeat is needed).
async fn pull(w: &Wire, group: &str, topic: &str, queue_id: i32, suspend_ms: i64) -> Result<Pulled> {
    w.pull(group, topic, queue_id, 0, "*", "TAG", suspend_ms).await
}

async fn route_queues(client: &RemotingClient, ns: &str, topic: &str, queues: i32) -> Result<()> {
    eventually(WAIT, &format!("{topic} routed with {queues} queues"), || async {
        let r = tests::wire::route(client, ns, topic).await.ok().flatten()?;
        r.queue_datas.iter().any(|q| q.write_queue_nums == queues).then_some(())
    })
    .await
}

#[tokio::test]
async fn new_queues_open_per_group_once_the_old_queues_are_drained() -> Result<()> {
    let ns = Namesrv::start(&[])?;
    let broker = Broker::start(&ns.addr(), &[])?;
    let w = Wire::new(broker.addr());
    let topic = "OrderedGrow";
    update_topic(&w, topic, 2, true).await?;
    send_n(&w, topic, 0, 5).await?;
    send_n(&w, topic, 1, 3).await?;
    w.pull_at_least("Probe", topic, 0, 0, 5).await?;
    w.pull_at_least("Probe", topic, 1, 0, 3).await?;

    // 2 → 4 queues: the barrier is (q0: 5, q1: 3).
    update_topic(&w, topic, 4, true).await?;
    send_n(&w, topic, 2, 2).await?;
    send_n(&w, topic, 3, 2).await?;
    // A send is acknowledged before the dispatcher indexes it.
    eventually(WAIT, "q2 and q3 indexed", || async {
        (w.max_offset(topic, 2).await.ok()? == 2 && w.max_offset(topic, 3).await.ok()? == 2).then_some(())
    })
    .await?;

    // Old queues are served as always; new ones are closed to a group that has
    // not drained the old ones, without skipping anything.
    ensure!(pull(&w, "G", topic, 0, 0).await?.messages.len() == 5);
    let closed = pull(&w, "G", topic, 2, 0).await?;
    ensure!(
        closed.code == ResponseCode::PULL_NOT_FOUND && closed.next_begin_offset == 0,
        "closed queue answered {closed:?}"
    );
    ensure!(closed.max_offset == 2, "the answer still reports the queue's real length");
    ensure!(closed.remark.as_deref().unwrap_or("").contains("old queue 0"), "remark says why: {:?}", closed.remark);

    // A long poll on a closed queue is held about a second and not woken by
    // arrivals (which would make consumers spin), then answered "nothing".
    let started = Instant::now();
    let held = tokio::spawn({
        let w = w.clone();
        async move { pull(&w, "G", topic, 2, 10_000).await }
    });
    // Sent while the pull is held (the runtime info counts held pulls).
    w.wait_parked_pulls(1, Duration::from_secs(10)).await?;
    send_n(&w, topic, 2, 1).await?;
    let held = held.await??;
    let took = started.elapsed();
    ensure!(held.code == ResponseCode::PULL_NOT_FOUND, "held pull answered {:?}", held.code);
    ensure!(took >= Duration::from_millis(800) && took < Duration::from_secs(5), "held {took:?}");

    // Draining q0 alone is not enough; q1 too opens the new queues — for G only.
    w.update_offset("G", topic, 0, 5).await?;
    ensure!(pull(&w, "G", topic, 3, 0).await?.code == ResponseCode::PULL_NOT_FOUND);
    w.update_offset("G", topic, 1, 3).await?;
    let open = pull(&w, "G", topic, 2, 0).await?;
    ensure!(open.code == ResponseCode::SUCCESS && open.messages.len() == 3, "open queue answered {:?}", open.code);
    ensure!(pull(&w, "G", topic, 3, 0).await?.messages.len() == 2);
    ensure!(pull(&w, "H", topic, 2, 0).await?.code == ResponseCode::PULL_NOT_FOUND, "another group is still closed");

    // The barrier survives a restart; so do the offsets that opened G.
    let broker = broker.restart(&ns.addr(), false)?;
    let w = Wire::new(broker.addr());
    ensure!(pull(&w, "H", topic, 2, 0).await?.code == ResponseCode::PULL_NOT_FOUND, "H closed after the restart");
    ensure!(pull(&w, "G", topic, 2, 0).await?.code == ResponseCode::SUCCESS, "G open after the restart");

    // Not ordered, or ordered but empty at expansion: nothing to wait for.
    update_topic(&w, "PlainGrow", 2, false).await?;
    send_n(&w, "PlainGrow", 0, 2).await?;
    w.pull_at_least("Probe", "PlainGrow", 0, 0, 2).await?;
    update_topic(&w, "PlainGrow", 4, false).await?;
    send_n(&w, "PlainGrow", 2, 1).await?;
    w.pull_at_least("G", "PlainGrow", 2, 0, 1).await?;
    update_topic(&w, "EmptyOrdered", 2, true).await?;
    update_topic(&w, "EmptyOrdered", 4, true).await?;
    send_n(&w, "EmptyOrdered", 3, 1).await?;
    w.pull_at_least("G", "EmptyOrdered", 3, 0, 1).await?;
    Ok(())
}

/// key → sequence numbers in consumption order.
type Seen = Arc<Mutex<BTreeMap<String, Vec<u32>>>>;

fn parse(m: &MessageExt) -> (String, u32) {
    let body = String::from_utf8_lossy(&m.body).into_owned();
    let (key, seq) = body.split_once(':').expect("key:seq");
    (key.to_owned(), seq.parse().expect("seq"))
}

async fn produce(p: &Producer, topic: &str, keys: &[String], seqs: std::ops::Range<u32>) -> Result<()> {
    for seq in seqs {
        for k in keys {
            p.send_with_selector(Message::new(topic, format!("{k}:{seq}")), &SelectByHash(k.clone())).await?;
        }
    }
    Ok(())
}

#[tokio::test]
async fn an_orderly_consumer_keeps_every_key_in_order_across_an_expansion() -> Result<()> {
    let ns = Namesrv::start(&[])?;
    let broker = Broker::start(&ns.addr(), &[])?;
    let w = Wire::new(broker.addr());
    let rc = RemotingClient::new(remoting::ClientConfig::default(), None);
    let topic = "OrderedKeys";
    update_topic(&w, topic, 2, true).await?;
    route_queues(&rc, &ns.addr(), topic, 2).await?;

    // Keys whose queue changes when 2 queues become 4 (hash % 4 >= 2).
    let keys: Vec<String> = (0..8).map(|i| format!("order-{i}")).collect();
    let moved: Vec<&String> =
        keys.iter().filter(|k| common::hash::java_string_hash(k).unsigned_abs() % 4 >= 2).collect();
    ensure!(!moved.is_empty(), "the test needs a key that moves to a new queue");

    let producer = Producer::new(
        "OrderedKeysProducer",
        config::ClientConfig::default(),
        Some(vec![ns.addr()]),
        ProducerOptions::default(),
    );
    produce(&producer, topic, &keys, 0..30).await?;
    update_topic(&w, topic, 4, true).await?;
    route_queues(&rc, &ns.addr(), topic, 4).await?;
    producer.instance().refresh_route(topic).await?;
    produce(&producer, topic, &keys, 30..40).await?;
    ensure!(w.max_offset(topic, 2).await? + w.max_offset(topic, 3).await? > 0, "messages went to the new queues");

    // A consumer that starts now finds both old and new queues full. Consuming
    // is slowed a little so that, without the rule, the new queues (10 messages
    // per moved key) would overtake the old ones (30 per key).
    let seen: Seen = Arc::default();
    let log = seen.clone();
    let total = keys.len() * 40;
    let consumer = PushConsumer::builder("OrderedKeysGroup")
        .config(config::ClientConfig {
            namesrv_addr: vec![ns.addr()],
            persist_consumer_offset_interval: Duration::from_millis(200),
            ..config::ClientConfig::default()
        })
        .subscribe(topic, "*")
        .consume_from(ConsumeFromWhere::FirstOffset)
        .on_message_orderly(move |msgs: &[MessageExt], _: &ConsumeContext| {
            std::thread::sleep(Duration::from_millis(3));
            let mut seen = log.lock().unwrap();
            for m in msgs {
                let (k, seq) = parse(m);
                seen.entry(k).or_default().push(seq);
            }
            ConsumeOrderlyStatus::Success
        })
        .start()
        .await
        .context("starting the consumer")?;
    eventually(Duration::from_secs(60), &format!("{total} messages consumed"), || async {
        (seen.lock().unwrap().values().map(Vec::len).sum::<usize>() >= total).then_some(())
    })
    .await?;
    consumer.shutdown().await;
    producer.shutdown().await;

    let seen = seen.lock().unwrap();
    for k in &keys {
        let got = seen.get(k).cloned().unwrap_or_default();
        ensure!(got == (0..40).collect::<Vec<u32>>(), "key {k} (moved: {}) consumed as {got:?}", moved.contains(&k));
    }
    Ok(())
}

#[tokio::test]
async fn global_order_sends_only_to_the_queues_of_order_topic_conf() -> Result<()> {
    let ns = Namesrv::start(&[("ORDER_MESSAGE_ENABLE", "true")])?;
    let broker = Broker::start(&ns.addr(), &[("BROKER_NAME", "broker-a")])?;
    let w = Wire::new(broker.addr());
    let rc = RemotingClient::new(remoting::ClientConfig::default(), None);
    let topic = "GlobalOrder";
    update_topic(&w, topic, 4, true).await?;
    // One queue for the whole topic: global order.
    let put = PutKvConfigRequestHeader {
        namespace: "ORDER_TOPIC_CONFIG".into(),
        key: topic.into(),
        value: "broker-a:1".into(),
    };
    let resp =
        rc.invoke(&ns.addr(), RemotingCommand::request_with(RequestCode::PUT_KV_CONFIG, &put), tests::wire::T).await?;
    ensure!(resp.response_code() == ResponseCode::SUCCESS);
    route_queues(&rc, &ns.addr(), topic, 4).await?;

    let producer = Producer::new(
        "GlobalOrderProducer",
        config::ClientConfig::default(),
        Some(vec![ns.addr()]),
        ProducerOptions::default(),
    );
    let queues = producer.instance().publish_queues(topic, 4).await?;
    ensure!(
        queues.len() == 1 && queues[0].queue_id == 0 && queues[0].broker_name == "broker-a",
        "publish queues {queues:?}"
    );
    // Plain round-robin sends: all land in the one configured queue, in order.
    for i in 0..20 {
        producer.send(Message::new(topic, format!("g:{i}"))).await?;
    }
    let p = w.pull_at_least("GlobalReader", topic, 0, 0, 20).await?;
    let order: Vec<u32> = p.messages.iter().map(|m| parse(m).1).collect();
    ensure!(order == (0..20).collect::<Vec<u32>>(), "queue 0 holds {order:?}");
    for q in 1..4 {
        ensure!(w.max_offset(topic, q).await? == 0, "queue {q} got messages");
    }
    producer.shutdown().await;
    Ok(())
}
