//! The SDK's push consumer against real processes: clustering
//! rebalance and delivery counts across a membership change, broadcasting with
//! local offsets, TAG and SQL92 subscriptions, retries through `%RETRY%<group>`,
//! consume-from-timestamp and replay by an administrator's offset reset.
//!
//! Every test produces with the SDK's [`Producer`] and consumes with
//! [`PushConsumer`]; conditions are awaited with deadlines. Consumers use a short
//! `rebalance_interval` so a missed notification costs a second, not 20.

mod client_support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{ensure, Result};
use client::consumer::{
    AllocateAveragely, AllocateStrategy, ConsumeContext, ConsumeFromWhere, ConsumeStatus, MessageModel, OffsetStore,
    PullApi, PushConsumer, PushConsumerBuilder,
};
use client::{Admin, Message, MessageExt, MessageQueue};
use common::properties::keys;
use std::sync::Mutex;
use tests::{eventually, Broker, Namesrv};

use client_support::{client_config, create_topic, producer, text, WAIT};

/// Every delivery a listener saw, in arrival order.
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<MessageExt>>>);

impl Log {
    fn bodies(&self) -> Vec<String> {
        self.0.lock().unwrap().iter().map(|m| text(&m.body)).collect()
    }

    fn len(&self) -> usize {
        self.0.lock().unwrap().len()
    }

    /// Deliveries per body.
    fn counts(&self) -> BTreeMap<String, usize> {
        let mut c = BTreeMap::new();
        for b in self.bodies() {
            *c.entry(b).or_default() += 1;
        }
        c
    }
}

/// A consumer of `group` on `topic` recording into `log`, with a 1 s rebalance.
fn builder(ns: &str, group: &str, topic: &str, expr: &str, log: &Log) -> PushConsumerBuilder {
    let log = log.clone();
    PushConsumer::builder(group)
        .namesrv(ns)
        .subscribe(topic, expr)
        .consume_from(ConsumeFromWhere::FirstOffset)
        .with_options(|o| o.rebalance_interval = Duration::from_secs(1))
        .on_message(move |msgs: &[MessageExt], _: &ConsumeContext| {
            log.0.lock().unwrap().extend_from_slice(msgs);
            ConsumeStatus::Success
        })
}

fn start_cluster(settings: &[(&str, &str)]) -> Result<(Namesrv, Broker)> {
    let ns = Namesrv::start(&[])?;
    let mut s = vec![("BROKER_NAME", "broker-a")];
    s.extend_from_slice(settings);
    let broker = Broker::start(&ns.addr(), &s)?;
    Ok((ns, broker))
}

fn topic_queues(c: &PushConsumer, topic: &str) -> Vec<MessageQueue> {
    c.assigned_queues().into_iter().filter(|q| q.topic == topic).collect()
}

/// Waits until the members own exactly what [`AllocateAveragely`] gives them over
/// `mq_all`, and returns each member's queue ids.
async fn converged(members: &[&PushConsumer], topic: &str, mq_all: &[MessageQueue]) -> Result<Vec<Vec<i32>>> {
    eventually(WAIT, &format!("{} members to split {topic}", members.len()), || async {
        let mut cids: Vec<String> = members.iter().map(|c| c.client_id().to_owned()).collect();
        cids.sort();
        let ok = members
            .iter()
            .all(|c| topic_queues(c, topic) == AllocateAveragely.allocate(c.group(), c.client_id(), mq_all, &cids));
        ok.then(|| members.iter().map(|c| topic_queues(c, topic).iter().map(|q| q.queue_id).collect()).collect())
    })
    .await
}

async fn send_all(ns: &str, topic: &str, bodies: impl IntoIterator<Item = String>) -> Result<()> {
    let p = producer(ns, "PushTestProducer");
    for b in bodies {
        p.send(Message::new(topic, b)).await?;
    }
    p.shutdown().await;
    Ok(())
}

/// Deliveries per body across members.
fn total_counts(logs: &[&Log]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for l in logs {
        for (b, n) in l.counts() {
            *counts.entry(b).or_default() += n;
        }
    }
    counts
}

/// Waits until `logs` together saw every body of `expected` at least once.
async fn all_seen(logs: &[&Log], expected: &BTreeSet<String>) -> Result<()> {
    eventually(WAIT, &format!("{} messages consumed", expected.len()), || async {
        let seen: BTreeSet<String> = logs.iter().flat_map(|l| l.bodies()).collect();
        expected.is_subset(&seen).then_some(())
    })
    .await
}

/// Clustering: 6 queues split 3/3 between two members, then 2/2/2 when a third
/// joins. While membership is stable every message is consumed exactly once;
/// across the change every message is consumed at least once (messages
/// consumed just before the change may come again from the queue's new owner).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn clustering_splits_queues_and_delivers_once_while_stable() -> Result<()> {
    let (ns, _broker) = start_cluster(&[])?;
    let ns = ns.addr();
    create_topic(&ns, "PushSplit", 6, 1).await?;
    let mq_all: Vec<MessageQueue> = (0..6).map(|q| MessageQueue::new("PushSplit", "broker-a", q)).collect();
    let (l1, l2, l3) = (Log::default(), Log::default(), Log::default());
    let c1 = builder(&ns, "GSplit", "PushSplit", "*", &l1).start().await?;
    let c2 = builder(&ns, "GSplit", "PushSplit", "*", &l2).start().await?;
    let split = converged(&[&c1, &c2], "PushSplit", &mq_all).await?;
    ensure!(split.iter().all(|q| q.len() == 3), "3/3 split expected, got {split:?}");

    let phase1: BTreeSet<String> = (0..60).map(|i| format!("p1-{i}")).collect();
    send_all(&ns, "PushSplit", phase1.clone()).await?;
    all_seen(&[&l1, &l2], &phase1).await?;
    let dups: Vec<(String, usize)> = total_counts(&[&l1, &l2]).into_iter().filter(|(_, n)| *n > 1).collect();
    ensure!(dups.is_empty(), "duplicates while two members were stable: {dups:?}");

    // A third member joins while messages keep coming.
    let sender = {
        let ns = ns.clone();
        tokio::spawn(async move { send_all(&ns, "PushSplit", (0..60).map(|i| format!("p2-{i}"))).await })
    };
    let c3 = builder(&ns, "GSplit", "PushSplit", "*", &l3).start().await?;
    sender.await??;
    let split = converged(&[&c1, &c2, &c3], "PushSplit", &mq_all).await?;
    ensure!(split.iter().all(|q| q.len() == 2), "2/2/2 split expected, got {split:?}");
    let phase2: BTreeSet<String> = (0..60).map(|i| format!("p2-{i}")).collect();
    all_seen(&[&l1, &l2, &l3], &phase2).await?;

    let phase3: BTreeSet<String> = (0..60).map(|i| format!("p3-{i}")).collect();
    send_all(&ns, "PushSplit", phase3.clone()).await?;
    all_seen(&[&l1, &l2, &l3], &phase3).await?;
    ensure!(l3.len() > 0, "the new member consumed nothing");

    // Messages sent after the split settled are consumed once. Earlier ones may
    // come again: a queue's new owner starts from the offset last committed, and
    // the old owner may not have committed its latest batches yet (RocketMQ's
    // at-least-once across a rebalance).
    let counts = total_counts(&[&l1, &l2, &l3]);
    let dups: Vec<(&String, &usize)> = counts.iter().filter(|(b, n)| **n > 1 && b.starts_with("p3-")).collect();
    ensure!(dups.is_empty(), "duplicates while three members were stable: {dups:?}");
    ensure!(counts.len() == 180, "{} distinct messages consumed, 180 sent", counts.len());

    for c in [&c1, &c2, &c3] {
        c.shutdown().await;
    }
    Ok(())
}

/// Broadcasting: every member gets every message once; progress lives in each
/// member's local file and nothing is committed to the broker.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn broadcasting_delivers_everything_to_every_member_with_local_offsets() -> Result<()> {
    let (ns, _broker) = start_cluster(&[])?;
    let ns = ns.addr();
    create_topic(&ns, "PushBroadcast", 4, 1).await?;
    let dir = tempfile::tempdir()?;
    let (l1, l2) = (Log::default(), Log::default());
    let mut members = Vec::new();
    for log in [&l1, &l2] {
        let c = builder(&ns, "GBroadcast", "PushBroadcast", "*", log)
            .message_model(MessageModel::Broadcasting)
            .with_options(|o| o.offset_store_dir = Some(dir.path().to_path_buf()))
            .start()
            .await?;
        ensure!(topic_queues(&c, "PushBroadcast").len() == 4, "a broadcasting member owns every queue");
        ensure!(
            !c.assigned_queues().iter().any(|q| q.topic.starts_with("%RETRY%")),
            "no retry topic when broadcasting"
        );
        members.push(c);
    }
    let expected: BTreeSet<String> = (0..40).map(|i| format!("b-{i}")).collect();
    send_all(&ns, "PushBroadcast", expected.clone()).await?;
    for log in [&l1, &l2] {
        all_seen(&[log], &expected).await?;
    }

    // A client of its own: each member's instance ends with the member.
    let api = PullApi::new(client::ClientInstance::new(client_config(&ns), None));
    let mut paths = Vec::new();
    for c in &members {
        // Every queue's local offset reaches the queue's end...
        let mqs = topic_queues(c, "PushBroadcast");
        eventually(WAIT, "local offsets at the end of every queue", || async {
            for mq in &mqs {
                let max = api.max_offset(mq).await.ok()?;
                (c.offset_store().read(mq)? == max).then_some(())?;
            }
            Some(())
        })
        .await?;
        ensure!(c.offset_store().is_local());
        paths.push(c.offset_store().path().unwrap().to_path_buf());
        c.shutdown().await;
    }
    for (log, name) in [(&l1, "first"), (&l2, "second")] {
        ensure!(log.len() == 40, "the {name} member consumed {} messages, 40 sent", log.len());
    }
    // ...and is in the file, in the Java client's layout.
    ensure!(paths[0] != paths[1], "each member has its own file");
    for p in &paths {
        ensure!(p.starts_with(dir.path()) && p.ends_with("GBroadcast/offsets.json"), "unexpected path {}", p.display());
        let file = OffsetStore::local(p, "GBroadcast");
        file.load()?;
        let total: i64 = file.offsets().iter().filter(|(q, _)| q.topic == "PushBroadcast").map(|(_, o)| *o).sum();
        ensure!(total == 40, "the file at {} holds offsets summing to {total}", p.display());
    }
    // The broker has no offset for the group (asked without the young-queue 0).
    for q in 0..4 {
        let mq = MessageQueue::new("PushBroadcast", "broker-a", q);
        let stored = api.query_consumer_offset_with("GBroadcast", &mq, Some(false)).await?;
        ensure!(stored.is_none(), "queue {q}: the broker has offset {stored:?} for a broadcasting group");
    }
    api.instance().shutdown();
    Ok(())
}

/// TAG and SQL92 subscriptions deliver exactly the matching messages, including
/// when a tag's hash collides with a subscribed one ("BB" vs "Aa").
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tag_and_sql_subscriptions_deliver_exactly_the_matching_messages() -> Result<()> {
    let (ns, _broker) = start_cluster(&[("ENABLE_PROPERTY_FILTER", "true")])?;
    let ns = ns.addr();
    create_topic(&ns, "PushFilter", 4, 1).await?;
    let (tags, sql) = (Log::default(), Log::default());
    let tc = builder(&ns, "GTags", "PushFilter", "TagA || Aa", &tags).start().await?;
    let sc = {
        let log = sql.clone();
        PushConsumer::builder("GSql")
            .namesrv(&ns)
            .subscribe_sql("PushFilter", "color = 'red' AND n >= 10")
            .consume_from(ConsumeFromWhere::FirstOffset)
            .with_options(|o| o.rebalance_interval = Duration::from_secs(1))
            .on_message(move |msgs: &[MessageExt], _: &ConsumeContext| {
                log.0.lock().unwrap().extend_from_slice(msgs);
                ConsumeStatus::Success
            })
            .start()
            .await?
    };
    let p = producer(&ns, "PushFilterProducer");
    let tag_of = ["TagA", "TagB", "Aa", "BB", ""];
    let mut want_tags = BTreeSet::new();
    let mut want_sql = BTreeSet::new();
    for n in 0..40 {
        let tag = tag_of[n % tag_of.len()];
        let color = if n % 3 == 0 { "red" } else { "blue" };
        let body = format!("m-{n}");
        let mut m =
            Message::new("PushFilter", body.clone()).with_property("color", color).with_property("n", n.to_string());
        if !tag.is_empty() {
            m = m.with_tags(tag);
        }
        p.send(m).await?;
        if tag == "TagA" || tag == "Aa" {
            want_tags.insert(body.clone());
        }
        if color == "red" && n >= 10 {
            want_sql.insert(body);
        }
    }
    p.shutdown().await;

    // Done when every queue's offset reached its end: skipped messages count too.
    let api = PullApi::new(tc.instance().clone());
    for c in [&tc, &sc] {
        eventually(WAIT, &format!("{} at the end of every queue", c.group()), || async {
            for q in 0..4 {
                let mq = MessageQueue::new("PushFilter", "broker-a", q);
                let max = api.max_offset(&mq).await.ok()?;
                (c.offset_store().read(&mq)? == max).then_some(())?;
            }
            Some(())
        })
        .await?;
    }
    let got_tags: Vec<String> = tags.bodies();
    ensure!(
        got_tags.len() == want_tags.len() && got_tags.iter().cloned().collect::<BTreeSet<_>>() == want_tags,
        "TAG: got {got_tags:?}, want {want_tags:?}"
    );
    ensure!(tags.0.lock().unwrap().iter().all(|m| matches!(m.tags(), Some("TagA" | "Aa"))));
    let got_sql: Vec<String> = sql.bodies();
    ensure!(
        got_sql.len() == want_sql.len() && got_sql.iter().cloned().collect::<BTreeSet<_>>() == want_sql,
        "SQL92: got {got_sql:?}, want {want_sql:?}"
    );
    tc.shutdown().await;
    sc.shutdown().await;
    Ok(())
}

/// A message the listener fails is sent back, comes again through
/// `%RETRY%<group>` with its reconsume count incremented and its original topic,
/// and stops coming once consumed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failed_messages_are_redelivered_through_the_retry_topic() -> Result<()> {
    let levels = vec!["1s"; 18].join(" ");
    let (ns, _broker) = start_cluster(&[("MESSAGE_DELAY_LEVEL", &levels)])?;
    let ns = ns.addr();
    create_topic(&ns, "PushRetry", 2, 1).await?;
    // Each delivery, with the topic of the queue it was pulled from.
    let seen: Arc<Mutex<Vec<(MessageExt, String)>>> = Arc::default();
    let s = seen.clone();
    let c = PushConsumer::builder("GRetry")
        .namesrv(&ns)
        .subscribe("PushRetry", "*")
        .consume_from(ConsumeFromWhere::FirstOffset)
        .with_options(|o| o.rebalance_interval = Duration::from_secs(1))
        .on_message(move |msgs: &[MessageExt], ctx: &ConsumeContext| {
            let m = &msgs[0];
            s.lock().unwrap().push((m.clone(), ctx.mq.topic.clone()));
            if m.reconsume_times < 2 {
                ConsumeStatus::ReconsumeLater
            } else {
                ConsumeStatus::Success
            }
        })
        .start()
        .await?;
    send_all(&ns, "PushRetry", (0..4).map(|i| format!("r-{i}"))).await?;
    eventually(Duration::from_secs(60), "three deliveries of each message", || async {
        let seen = seen.lock().unwrap();
        (0..4).all(|i| seen.iter().filter(|(m, _)| text(&m.body) == format!("r-{i}")).count() >= 3).then_some(())
    })
    .await?;
    let seen = seen.lock().unwrap().clone();
    for i in 0..4 {
        let body = format!("r-{i}");
        let mine: Vec<&(MessageExt, String)> = seen.iter().filter(|(m, _)| text(&m.body) == body).collect();
        let times: Vec<i32> = mine.iter().map(|(m, _)| m.reconsume_times).collect();
        ensure!(times == [0, 1, 2], "{body}: reconsume times {times:?}");
        let (first, from) = mine[0];
        ensure!(
            from == "PushRetry" && !first.properties.contains(keys::RETRY_TOPIC),
            "first delivery comes from the topic itself"
        );
        for (m, from) in &mine[1..] {
            ensure!(m.topic == "PushRetry", "{body}: the listener saw topic {}", m.topic);
            ensure!(from == "%RETRY%GRetry", "{body}: redelivered from {from}");
            ensure!(
                m.properties.get(keys::RETRY_TOPIC) == Some("PushRetry"),
                "{body}: RETRY_TOPIC {:?}",
                m.properties.get(keys::RETRY_TOPIC)
            );
            ensure!(m.msg_id() == first.msg_id(), "{body}: the message id changed");
            // The broker records the first store id of the chain (Java: `msgExt.getMsgId()` on the broker).
            ensure!(
                m.properties.get(keys::ORIGIN_MESSAGE_ID) == Some(first.offset_msg_id().as_str()),
                "{body}: ORIGIN_MESSAGE_ID {:?}, first offsetMsgId {}",
                m.properties.get(keys::ORIGIN_MESSAGE_ID),
                first.offset_msg_id()
            );
            // Set only by the client's fallback re-send: its absence shows the
            // broker's CONSUMER_SEND_MSG_BACK did the work.
            ensure!(!m.properties.contains(keys::RECONSUME_TIME), "{body}: went through the fallback producer");
        }
    }
    ensure!(c.assigned_queues().iter().any(|q| q.topic == "%RETRY%GRetry"), "the retry topic is consumed");
    c.shutdown().await;
    Ok(())
}

/// A new group consuming from a timestamp gets the messages stored from then on.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn consume_from_timestamp_skips_older_messages() -> Result<()> {
    let (ns, _broker) = start_cluster(&[])?;
    let ns = ns.addr();
    create_topic(&ns, "PushTime", 2, 1).await?;
    send_all(&ns, "PushTime", (0..10).map(|i| format!("old-{i}"))).await?;
    let t = client_now_ms();
    eventually(WAIT, "the clock to move", || async { (client_now_ms() > t).then_some(()) }).await?;
    let newer: BTreeSet<String> = (0..10).map(|i| format!("new-{i}")).collect();
    send_all(&ns, "PushTime", newer.clone()).await?;

    let log = Log::default();
    let c = builder(&ns, "GTime", "PushTime", "*", &log)
        .consume_from(ConsumeFromWhere::Timestamp)
        .consume_timestamp(t + 1)
        .start()
        .await?;
    all_seen(&[&log], &newer).await?;
    let api = PullApi::new(c.instance().clone());
    eventually(WAIT, "offsets at the end of both queues", || async {
        for q in 0..2 {
            let mq = MessageQueue::new("PushTime", "broker-a", q);
            (c.offset_store().read(&mq)? == api.max_offset(&mq).await.ok()?).then_some(())?;
        }
        Some(())
    })
    .await?;
    let got = log.bodies();
    ensure!(got.iter().all(|b| b.starts_with("new-")) && got.len() == 10, "got {got:?}");
    c.shutdown().await;
    Ok(())
}

/// `Admin::reset_offset_by_timestamp` rewinds a running group: the broker tells
/// the consumer, which drops what it had and consumes everything again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reset_offset_replays_a_running_consumer() -> Result<()> {
    let (ns, _broker) = start_cluster(&[])?;
    let ns = ns.addr();
    create_topic(&ns, "PushReplay", 3, 1).await?;
    let before = client_now_ms() - 1000;
    let expected: BTreeSet<String> = (0..30).map(|i| format!("x-{i}")).collect();
    send_all(&ns, "PushReplay", expected.clone()).await?;
    let log = Log::default();
    let c = builder(&ns, "GReplay", "PushReplay", "*", &log).start().await?;
    all_seen(&[&log], &expected).await?;
    eventually(WAIT, "the first pass is committed in memory", || async {
        let total: i64 =
            c.offset_store().offsets().iter().filter(|(q, _)| q.topic == "PushReplay").map(|(_, o)| *o).sum();
        (total == 30).then_some(())
    })
    .await?;

    let admin = Admin::new(client_config(&ns), None);
    let reset = admin.reset_offset_by_timestamp("GReplay", "PushReplay", before).await?;
    ensure!(reset.len() == 3 && reset.values().all(|o| *o == 0), "reset table {reset:?}");
    eventually(WAIT, "every message consumed twice", || async {
        let counts = log.counts();
        expected.iter().all(|b| counts.get(b).copied().unwrap_or(0) >= 2).then_some(())
    })
    .await?;
    admin.shutdown();
    c.shutdown().await;
    Ok(())
}

fn client_now_ms() -> i64 {
    tests::wire::now_ms()
}

/// Bodies compressed by RocketMQ 5 clients (LZ4, ZSTD) reach the listener inflated;
/// a body that does not decompress never reaches it: it is counted and goes to the
/// group's DLQ, with the bytes as stored, and the messages around it are delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn compressed_bodies_are_inflated_and_undecodable_ones_go_to_the_dlq() -> Result<()> {
    let (ns, broker) = start_cluster(&[])?;
    let ns = ns.addr();
    create_topic(&ns, "PushCompressed", 1, 1).await?;
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../client/tests/fixtures/compression");
    let read = |name: &str| std::fs::read(fixtures.join(name));
    let plain = read("body.txt")?;
    let w = tests::wire::Wire::new(broker.addr());
    // (body, sys flag): LZ4, corrupt LZ4, ZSTD, plain.
    let corrupt = b"these bytes are no LZ4 frame".to_vec();
    for (body, sys_flag) in
        [(read("body.lz4")?, 0x101), (corrupt.clone(), 0x101), (read("body.zst")?, 0x201), (b"plain".to_vec(), 0)]
    {
        let mut h = tests::wire::send_header("PushCompressed", 0, &tests::wire::props(&[]));
        h.sys_flag = sys_flag;
        w.send_v2(&h, &body).await?;
    }

    let log = Log::default();
    let c = builder(&ns, "GCompressed", "PushCompressed", "*", &log).start().await?;
    // Concurrent listener calls: any order.
    let mut want = vec![text(&plain), text(&plain), "plain".to_owned()];
    want.sort();
    let sorted = || {
        let mut b = log.bodies();
        b.sort();
        b
    };
    eventually(WAIT, "the three decodable messages", || async { (sorted() == want).then_some(()) }).await?;
    ensure!(c.undecodable_messages() == 1, "{} undecodable", c.undecodable_messages());
    let dlq = "%DLQ%GCompressed";
    eventually(WAIT, "the undecodable message in the DLQ", || async {
        (w.max_offset(dlq, 0).await.ok()? == 1).then_some(())
    })
    .await?;
    // Make the DLQ readable, as an operator would, to check what it holds.
    w.create_topic(dlq, 1).await?;
    let dead = client_support::stored(&broker.addr(), dlq, 1).await?;
    ensure!(dead.len() == 1 && dead[0].body[..] == corrupt[..], "DLQ holds {dead:?}");
    ensure!(dead[0].sys_flag & 0x701 == 0x101, "DLQ sys flag {:#x}", dead[0].sys_flag);
    ensure!(log.len() == 3, "deliveries {:?}", log.bodies());
    c.shutdown().await;
    Ok(())
}
