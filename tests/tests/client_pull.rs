//! The SDK's application-driven consumers against real processes (GitHub issue
//! #5): [`PullConsumer`] (queue, offset and count chosen by the application;
//! offsets kept on the broker) and [`LitePullConsumer`] (queues assigned by
//! rebalance or by hand, `poll`, auto and manual commit, seek).

mod client_support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use anyhow::{ensure, Result};
use client::consumer::{LitePullConsumer, LitePullOptions, PullConsumer, PullStatus};
use client::{Message, MessageExt, MessageQueue};
use tests::eventually;

use client_support::{cluster, create_topic, producer, text, WAIT};

/// Polls until `n` messages arrived (or `WAIT` passed), then keeps polling
/// `linger` longer so duplicates would show.
async fn poll_n(c: &LitePullConsumer, n: usize, linger: Duration) -> Result<Vec<MessageExt>> {
    let mut got = Vec::new();
    let deadline = Instant::now() + WAIT;
    while got.len() < n && Instant::now() < deadline {
        got.extend(c.poll(Duration::from_millis(500)).await?);
    }
    let until = Instant::now() + linger;
    while Instant::now() < until {
        got.extend(c.poll(Duration::from_millis(100)).await?);
    }
    Ok(got)
}

fn bodies(msgs: &[MessageExt]) -> Vec<String> {
    msgs.iter().map(|m| text(&m.body)).collect()
}

/// Messages of one queue arrive in queue order.
fn check_queue_order(msgs: &[MessageExt]) -> Result<()> {
    let mut last: BTreeMap<(String, i32), i64> = BTreeMap::new();
    for m in msgs {
        let k = (m.topic.clone(), m.queue_id);
        if let Some(prev) = last.insert(k.clone(), m.queue_offset) {
            ensure!(m.queue_offset > prev, "queue {k:?}: offset {} after {prev}", m.queue_offset);
        }
    }
    Ok(())
}

/// `fetch_subscribe_queues`, `pull` at chosen offsets and counts, TAG and SQL92
/// filters, the three "nothing" outcomes, a compressed body coming back inflated,
/// offsets committed on the broker (seen by another consumer of the group), and
/// `seek` checking the queue's range.
#[tokio::test]
async fn pull_consumer_reads_what_the_application_asks_for() -> Result<()> {
    let (ns, _brokers) = cluster(&["broker-a"])?;
    let topic = "ClientPull";
    create_topic(&ns.addr(), topic, 2, 1).await?;
    let p = producer(&ns.addr(), "ClientPullPG");
    let q0 = MessageQueue::new(topic, "broker-a", 0);
    for i in 0..10 {
        let tag = if i % 2 == 0 { "TagA" } else { "TagB" };
        let m = Message::new(topic, format!("m{i}")).with_tags(tag).with_property("n", i.to_string());
        p.send_to_queue(m, &q0).await?;
    }
    let big: Vec<u8> = (0..20_000u32).map(|i| (i % 251) as u8).collect();
    p.send_to_queue(Message::new(topic, big.clone()).with_tags("Big"), &q0).await?;

    let c = PullConsumer::connect("ClientPullCG", &ns.addr());
    let queues = c.fetch_subscribe_queues(topic).await?;
    assert_eq!(queues, vec![q0.clone(), MessageQueue::new(topic, "broker-a", 1)]);
    // Sends are answered once in the commit log; the queue index follows.
    eventually(WAIT, "11 messages indexed", || async { (c.max_offset(&q0).await.ok()? == 11).then_some(()) }).await?;

    let r = c.pull(&q0, "*", 0, 4).await?;
    assert_eq!(r.status, PullStatus::Found);
    assert_eq!(bodies(&r.messages), ["m0", "m1", "m2", "m3"]);
    assert_eq!((r.next_begin_offset, r.min_offset, r.max_offset), (4, 0, 11));
    let r = c.pull(&q0, "*", r.next_begin_offset, 32).await?;
    assert_eq!(r.messages.len(), 7);
    assert_eq!(r.messages[6].body[..], big[..], "the compressed body comes back inflated");
    assert_eq!(r.messages[6].sys_flag & common::sysflag::message::COMPRESSED, 0);

    let r = c.pull(&q0, "TagB || Big", 0, 32).await?;
    assert_eq!(bodies(&r.messages[..5]), ["m1", "m3", "m5", "m7", "m9"]);
    assert_eq!(r.messages.len(), 6);
    let r = c.pull(&q0, "SQL92:n >= 8", 0, 32).await?;
    assert_eq!(bodies(&r.messages), ["m8", "m9"]);

    let r = c.pull(&q0, "*", 11, 32).await?;
    assert_eq!((r.status, r.next_begin_offset), (PullStatus::NoNewMsg, 11));
    let r = c.pull(&q0, "*", 500, 32).await?;
    assert_eq!((r.status, r.next_begin_offset), (PullStatus::OffsetIllegal, 11));
    let r = c.pull(&q0, "NoSuchTag", 0, 32).await?;
    assert_eq!(r.status, PullStatus::NoMatchedMsg);
    assert!(r.messages.is_empty());

    // Offsets live on the broker, per group.
    c.update_offset(&q0, 7).await?;
    assert_eq!(c.fetch_offset(&q0).await?, Some(7));
    let other = PullConsumer::connect("ClientPullCG", &ns.addr());
    assert_eq!(other.fetch_offset(&q0).await?, Some(7), "another member sees the committed offset");
    c.seek(&q0, 3).await?;
    assert_eq!(other.fetch_offset(&q0).await?, Some(3));
    let err = c.seek(&q0, 12).await.expect_err("past the end");
    assert!(matches!(err, client::Error::InvalidArgument(_)), "{err}");
    assert_eq!((c.min_offset(&q0).await?, c.max_offset(&q0).await?), (0, 11));

    other.shutdown().await;
    c.shutdown().await;
    p.shutdown().await;
    Ok(())
}

/// `pull_block_if_not_found` is answered as soon as a message arrives (long
/// polling), and with NoNewMsg after the hold when none does.
#[tokio::test]
async fn blocking_pull_waits_for_the_next_message() -> Result<()> {
    let (ns, brokers) = cluster(&["broker-a"])?;
    let w = tests::wire::Wire::new(brokers[0].addr());
    let topic = "ClientPullBlock";
    create_topic(&ns.addr(), topic, 1, 1).await?;
    let p = producer(&ns.addr(), "ClientPullBlockPG");
    let c = PullConsumer::connect("ClientPullBlockCG", &ns.addr());
    let q = c.fetch_subscribe_queues(topic).await?.remove(0);

    let t0 = Instant::now();
    let r = c.pull_block_if_not_found(&q, "*", 0, 32, Duration::from_secs(1)).await?;
    let waited = t0.elapsed();
    assert_eq!(r.status, PullStatus::NoNewMsg);
    assert!(waited >= Duration::from_millis(800), "held {waited:?}");

    let c2 = c.clone();
    let q2 = q.clone();
    let pending = tokio::spawn(async move {
        let t0 = Instant::now();
        (c2.pull_block_if_not_found(&q2, "*", 0, 32, Duration::from_secs(20)).await, t0.elapsed())
    });
    // Sent once the pull is parked, so it is the arrival that answers it.
    w.wait_parked_pulls(1, WAIT).await?;
    p.send(Message::new(topic, "wake up")).await?;
    let (r, waited) = pending.await?;
    let r = r?;
    assert_eq!(r.status, PullStatus::Found);
    assert_eq!(bodies(&r.messages), ["wake up"]);
    assert!(waited < Duration::from_secs(10), "answered on arrival, not at the end of the hold: {waited:?}");
    c.shutdown().await;
    p.shutdown().await;
    Ok(())
}

/// A subscribed lite pull consumer of a new group gets every message of a young
/// topic once (queue order per queue, a compressed body inflated), auto-commits,
/// and a restarted consumer of the group resumes after the committed offsets.
#[tokio::test]
async fn lite_pull_subscribe_polls_everything_once_and_resumes_after_commits() -> Result<()> {
    let (ns, _brokers) = cluster(&["broker-a"])?;
    let topic = "ClientLite";
    create_topic(&ns.addr(), topic, 4, 1).await?;
    let p = producer(&ns.addr(), "ClientLitePG");
    for i in 0..40 {
        p.send(Message::new(topic, format!("m{i}"))).await?;
    }
    let big = vec![b'z'; 10_000];
    p.send(Message::new(topic, big.clone())).await?;

    let opts = || LitePullOptions { auto_commit_interval: Duration::from_millis(300), ..LitePullOptions::default() };
    let c = LitePullConsumer::new("ClientLiteCG", client_support::client_config(&ns.addr()), None, opts());
    c.subscribe(topic, "*").await?;
    c.start().await?;
    let got = poll_n(&c, 41, Duration::from_millis(500)).await?;
    check_queue_order(&got)?;
    let mut names = bodies(&got);
    let big_count = got.iter().filter(|m| m.body[..] == big[..]).count();
    names.retain(|b| b.starts_with('m'));
    let unique: BTreeSet<&String> = names.iter().collect();
    ensure!(got.len() == 41 && unique.len() == 40 && big_count == 1, "got {} messages: {names:?}", got.len());
    assert_eq!(c.assignment().len(), 4);

    // Auto-commit (oneway, at the next poll after the interval): every queue's
    // committed offset reaches its end.
    let queues = c.assignment();
    eventually(WAIT, "auto-committed offsets at the queues' ends", || async {
        c.poll(Duration::from_millis(50)).await.ok()?;
        let mut total = 0;
        for q in &queues {
            total += c.committed(q).await.ok()??;
        }
        (total == 41).then_some(())
    })
    .await?;
    c.shutdown().await;

    let again = LitePullConsumer::new("ClientLiteCG", client_support::client_config(&ns.addr()), None, opts());
    again.subscribe(topic, "*").await?;
    again.start().await?;
    for i in 40..44 {
        p.send(Message::new(topic, format!("m{i}"))).await?;
    }
    let got = poll_n(&again, 4, Duration::from_millis(500)).await?;
    let mut names = bodies(&got);
    names.sort();
    assert_eq!(names, ["m40", "m41", "m42", "m43"], "only what came after the commits");
    again.shutdown().await;
    p.shutdown().await;
    Ok(())
}

/// Two members of a group split a topic's queues (averagely, 2 + 2) and together
/// get every message once; when one shuts down (committing) the other takes its
/// queues over and continues after the committed offsets.
#[tokio::test]
async fn lite_pull_members_split_the_queues_and_take_over() -> Result<()> {
    let (ns, _brokers) = cluster(&["broker-a"])?;
    let topic = "ClientLiteGroup";
    create_topic(&ns.addr(), topic, 4, 1).await?;
    let p = producer(&ns.addr(), "ClientLiteGroupPG");
    let member = || async {
        let c = LitePullConsumer::new(
            "ClientLiteGroupCG",
            client_support::client_config(&ns.addr()),
            None,
            LitePullOptions::default(),
        );
        c.subscribe(topic, "*").await?;
        c.start().await?;
        anyhow::Ok(c)
    };
    let a = member().await?;
    let b = member().await?;
    eventually(WAIT, "the 4 queues split 2 + 2", || async {
        let (qa, qb) = (a.assignment(), b.assignment());
        let all: BTreeSet<&MessageQueue> = qa.iter().chain(&qb).collect();
        (qa.len() == 2 && qb.len() == 2 && all.len() == 4).then_some(())
    })
    .await?;

    for i in 0..40 {
        p.send(Message::new(topic, format!("m{i}"))).await?;
    }
    let (ga, gb) = tokio::join!(poll_n(&a, 20, Duration::from_secs(1)), poll_n(&b, 20, Duration::from_secs(1)));
    let (ga, gb) = (ga?, gb?);
    let qa: BTreeSet<i32> = a.assignment().iter().map(|q| q.queue_id).collect();
    ensure!(ga.iter().all(|m| qa.contains(&m.queue_id)), "a got messages of queues it does not own");
    let mut all = bodies(&ga);
    all.extend(bodies(&gb));
    let unique: BTreeSet<&String> = all.iter().collect();
    ensure!(all.len() == 40 && unique.len() == 40, "{} messages, {} distinct", all.len(), unique.len());

    b.shutdown().await;
    eventually(WAIT, "a owns all 4 queues", || async { (a.assignment().len() == 4).then_some(()) }).await?;
    for i in 40..48 {
        p.send(Message::new(topic, format!("m{i}"))).await?;
    }
    let got = poll_n(&a, 8, Duration::from_secs(1)).await?;
    let mut names = bodies(&got);
    names.sort();
    assert_eq!(names, (40..48).map(|i| format!("m{i}")).collect::<Vec<_>>(), "nothing b consumed comes again");
    a.shutdown().await;
    p.shutdown().await;
    Ok(())
}

/// `assign` reads exactly the given queue; with auto-commit off nothing is
/// committed until `commit_sync`; `seek` replays from an offset (dropping what was
/// buffered) and a commit after a seek records it; seeking a queue not owned or
/// outside the queue is refused.
#[tokio::test]
async fn lite_pull_assign_seek_and_manual_commit() -> Result<()> {
    let (ns, _brokers) = cluster(&["broker-a"])?;
    let topic = "ClientLiteAssign";
    create_topic(&ns.addr(), topic, 2, 1).await?;
    let p = producer(&ns.addr(), "ClientLiteAssignPG");
    let (q0, q1) = (MessageQueue::new(topic, "broker-a", 0), MessageQueue::new(topic, "broker-a", 1));
    for i in 0..10 {
        p.send_to_queue(Message::new(topic, format!("q0-{i}")), &q0).await?;
        p.send_to_queue(Message::new(topic, format!("q1-{i}")), &q1).await?;
    }
    let opts = LitePullOptions {
        auto_commit: false,
        consume_from_where: common::subscription::ConsumeFromWhere::FirstOffset,
        ..LitePullOptions::default()
    };
    let c = LitePullConsumer::new("ClientLiteAssignCG", client_support::client_config(&ns.addr()), None, opts);
    c.assign(vec![q0.clone()]).await?;
    c.start().await?;
    let got = poll_n(&c, 10, Duration::from_millis(300)).await?;
    assert_eq!(bodies(&got), (0..10).map(|i| format!("q0-{i}")).collect::<Vec<_>>());
    assert_eq!(c.consumed_offset(&q0), Some(10));
    let before = c.committed(&q0).await?;
    assert!(before.unwrap_or(0) == 0, "nothing committed without commit_sync: {before:?}");
    c.commit_sync().await?;
    assert_eq!(c.committed(&q0).await?, Some(10));

    c.seek(&q0, 4).await?;
    let got = poll_n(&c, 6, Duration::from_millis(300)).await?;
    assert_eq!(bodies(&got), (4..10).map(|i| format!("q0-{i}")).collect::<Vec<_>>());
    c.seek(&q0, 2).await?;
    c.commit_sync().await?;
    assert_eq!(c.committed(&q0).await?, Some(2), "a commit after a seek records the seek");
    let got = poll_n(&c, 8, Duration::from_millis(300)).await?;
    assert_eq!(got.first().map(|m| m.queue_offset), Some(2));
    assert_eq!(got.len(), 8);

    assert!(matches!(c.seek(&q1, 0).await, Err(client::Error::InvalidArgument(_))), "q1 is not owned");
    assert!(matches!(c.seek(&q0, 11).await, Err(client::Error::InvalidArgument(_))), "past the end");
    c.shutdown().await;
    p.shutdown().await;
    Ok(())
}
