//! Delay levels (`remoting-protocol.md` §12.9) and consume-failure send-back, retry
//! and dead-letter queues (§12.8), against real broker processes.
//!
//! Delay levels are configured short (RocketMQ's syntax only goes down to `1s`), so
//! the whole file stays well under a minute; every test has its own name server and
//! broker and they run in parallel.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use common::properties::{keys, Properties};
use common::topic::SCHEDULE_TOPIC;
use common::MessageExt;
use remoting::header::broker::{ConsumerSendMsgBackRequestHeader, PullMessageRequestHeader};
use remoting::ResponseCode;
use tests::wire::{now_ms, pull_header, send_header, Pulled, Wire};
use tests::{eventually, Broker, Namesrv};

/// All 18 levels at one second: retries go round fast.
const ALL_1S: &str = "1s 1s 1s 1s 1s 1s 1s 1s 1s 1s 1s 1s 1s 1s 1s 1s 1s 1s";

async fn start(levels: &str, extra: &[(&str, &str)]) -> Result<(Namesrv, Broker, Wire)> {
    let ns = Namesrv::start(&[])?;
    let mut settings = vec![("MESSAGE_DELAY_LEVEL", levels)];
    settings.extend_from_slice(extra);
    let broker = Broker::start(&ns.addr(), &settings)?;
    let w = Wire::new(broker.addr());
    Ok((ns, broker, w))
}

/// Delay of `level` (1-based) in a level string such as "1s 5s 2m".
fn level_delay(levels: &str, level: i32) -> Duration {
    let tok = levels.split_whitespace().nth(level as usize - 1).expect("level exists");
    let (n, unit) = tok.split_at(tok.len() - 1);
    let n: u64 = n.parse().expect("number");
    Duration::from_secs(
        n * match unit {
            "s" => 1,
            "m" => 60,
            "h" => 3600,
            "d" => 86_400,
            _ => panic!("unit {unit}"),
        },
    )
}

/// A client-style UNIQ_KEY (32 upper-case hex digits), distinct per `n`.
fn uniq_key(n: u32) -> String {
    format!("7F000001{:04X}{:08X}0000{:08X}", std::process::id() & 0xFFFF, 0x5EED_0000_u32, n)
}

fn commit_log_offset(offset_msg_id: &str) -> Result<i64> {
    Ok(common::msgid::decode_offset_msg_id(offset_msg_id).map_err(|e| anyhow::anyhow!("{e}"))?.1)
}

/// The record a send stored (by its offsetMsgId): for a delayed message, the copy
/// parked in SCHEDULE_TOPIC_XXXX.
///
/// Retried until found: the store answers VIEW_MESSAGE_BY_ID only for records its
/// dispatcher has indexed, which happens just after the send ack.
async fn stored(w: &Wire, offset_msg_id: &str) -> Result<MessageExt> {
    let offset = commit_log_offset(offset_msg_id)?;
    eventually(Duration::from_secs(2), &format!("the record of {offset_msg_id}"), || async {
        w.view_message(offset).await.ok().flatten()
    })
    .await
}

/// Waits until the schedule queues have grown past `before`; returns which queues
/// grew. (The consume queues are written by the store's dispatcher just after the
/// send is acknowledged.)
async fn schedule_growth(w: &Wire, before: &[i64]) -> Result<Vec<usize>> {
    let total: i64 = before.iter().sum();
    let after = eventually(Duration::from_secs(2), "a schedule queue to grow", || async {
        let now = schedule_offsets(w).await.ok()?;
        (now.iter().sum::<i64>() > total).then_some(now)
    })
    .await?;
    Ok((0..18).filter(|&q| after[q] != before[q]).collect())
}

/// A long-polling inline pull of everything (`*`) from `offset`.
fn long_poll(group: &str, topic: &str, queue_id: i32, offset: i64, hold_ms: i64) -> PullMessageRequestHeader {
    let mut h = pull_header(group, topic, queue_id, offset);
    h.sys_flag = common::sysflag::pull::SUBSCRIPTION | common::sysflag::pull::SUSPEND;
    h.suspend_timeout_millis = hold_ms;
    h.subscription = Some("*".into());
    h.expression_type = Some("TAG".into());
    h.sub_version = now_ms();
    h
}

/// Pulls from `offset` with long polling until a message arrives or `timeout` ends.
async fn next_message(
    w: &Wire,
    group: &str,
    topic: &str,
    queue_id: i32,
    offset: i64,
    timeout: Duration,
) -> Result<MessageExt> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            bail!("no message in {topic}:{queue_id} at offset {offset} within {timeout:?}");
        }
        let p = w.pull_with(&long_poll(group, topic, queue_id, offset, left.as_millis().max(1) as i64)).await?;
        if p.code == ResponseCode::SUCCESS {
            return p.messages.into_iter().next().context("SUCCESS without messages");
        }
        ensure!(
            matches!(p.code, ResponseCode::PULL_NOT_FOUND | ResponseCode::PULL_RETRY_IMMEDIATELY),
            "pull {topic}:{queue_id}@{offset}: {:?} {:?}",
            p.code,
            p.remark
        );
    }
}

/// Everything in a queue, from offset 0 (non-suspending pulls).
async fn queue_contents(w: &Wire, topic: &str, queue_id: i32) -> Result<Vec<MessageExt>> {
    let mut out = Vec::new();
    let mut offset = 0;
    loop {
        let p: Pulled = w.pull("G_INSPECT", topic, queue_id, offset, "*", "TAG", 0).await?;
        match p.code {
            ResponseCode::SUCCESS => {
                out.extend(p.messages);
                offset = p.next_begin_offset;
            }
            ResponseCode::PULL_NOT_FOUND => return Ok(out),
            other => bail!("pull {topic}:{queue_id}@{offset}: {other:?} {:?}", p.remark),
        }
    }
}

/// Max offsets of the 18 schedule queues (level n = queue n−1).
async fn schedule_offsets(w: &Wire) -> Result<Vec<i64>> {
    let mut v = Vec::with_capacity(18);
    for q in 0..18 {
        v.push(w.max_offset(SCHEDULE_TOPIC, q).await?);
    }
    Ok(v)
}

/// The code of a request answered before any queue is read (no offsets header).
async fn pull_code(w: &Wire, h: &PullMessageRequestHeader) -> Result<(ResponseCode, Option<String>)> {
    let resp = w.call(remoting::RemotingCommand::request_with(remoting::RequestCode::PULL_MESSAGE, h)).await?;
    Ok((resp.response_code(), resp.remark))
}

fn delayed_props(tag: &str, uniq: &str, level: i32) -> Properties {
    let mut p = Properties::default();
    p.insert(keys::TAGS, tag);
    p.insert(keys::KEYS, format!("key-{uniq}"));
    p.insert(keys::UNIQ_CLIENT_MESSAGE_ID_KEYIDX, uniq);
    p.insert("color", "blue");
    p.insert(keys::DELAY_TIME_LEVEL, level.to_string());
    p
}

// ------------------------------------------------------------------------------------
// Delay levels
// ------------------------------------------------------------------------------------

/// A DELAY=2 message is stored in SCHEDULE_TOPIC_XXXX queue 1 (with REAL_TOPIC,
/// REAL_QID, DELAY), is invisible in its real queue until the level's delay has
/// passed, and then appears there once: same body, UNIQ_KEY, keys, tags (its tags
/// code recomputed, so a TAG filter finds it), born time; DELAY removed, REAL_*
/// kept; a new offsetMsgId and a store time one delay after the original's.
#[tokio::test]
async fn delayed_message_waits_in_schedule_topic_then_reaches_its_queue() -> Result<()> {
    let levels = "1s 2s 3s 4s 5s 6s 7s 8s 9s 10s 11s 12s 13s 14s 15s 16s 17s 18s";
    let (_ns, _broker, w) = start(levels, &[]).await?;
    w.create_topic("DelayT", 4).await?;
    let uniq = uniq_key(1);
    let props = delayed_props("TagD", &uniq, 2);
    let sent = w.send("DelayT", 3, b"later", &props).await?;
    let acked = Instant::now();
    assert_eq!(sent.code, ResponseCode::SUCCESS, "{:?}", sent.remark);

    let parked = stored(&w, &sent.msg_id).await?;
    assert_eq!(parked.topic, SCHEDULE_TOPIC);
    assert_eq!(parked.queue_id, 1, "level 2 lives in schedule queue 1");
    assert_eq!(parked.properties.get(keys::REAL_TOPIC), Some("DelayT"));
    assert_eq!(parked.properties.get(keys::REAL_QUEUE_ID), Some("3"));
    assert_eq!(parked.properties.get(keys::DELAY_TIME_LEVEL), Some("2"));
    assert_eq!(parked.properties.uniq_key(), Some(uniq.as_str()));
    // Not in the real queue yet.
    assert_eq!(w.max_offset("DelayT", 3).await?, 0);

    // A TAG-filtered long poll on the real queue sees it after the delay.
    let mut h = long_poll("GD", "DelayT", 3, 0, 10_000);
    h.subscription = Some("TagD".into());
    let p = w.pull_with(&h).await?;
    let seen = acked.elapsed();
    assert_eq!(p.code, ResponseCode::SUCCESS, "{p:?}");
    assert_eq!(p.messages.len(), 1);
    let m = &p.messages[0];
    assert!(seen >= Duration::from_millis(1900), "delivered {seen:?} after the ack of a 2 s delay");
    assert_eq!((m.topic.as_str(), m.queue_id, m.queue_offset), ("DelayT", 3, 0));
    assert_eq!(&m.body[..], b"later");
    assert_eq!(m.properties.uniq_key(), Some(uniq.as_str()));
    assert_eq!(m.msg_id(), uniq, "the application-visible msgId survives");
    assert_ne!(m.offset_msg_id(), sent.msg_id, "a new record, so a new offsetMsgId");
    assert_eq!(m.properties.get(keys::DELAY_TIME_LEVEL), None, "DELAY removed");
    assert_eq!(m.properties.get(keys::REAL_TOPIC), Some("DelayT"));
    assert_eq!(m.properties.get(keys::REAL_QUEUE_ID), Some("3"));
    assert_eq!(m.properties.get(keys::TAGS), Some("TagD"));
    assert_eq!(m.properties.get(keys::KEYS), Some(format!("key-{uniq}").as_str()));
    assert_eq!(m.properties.get("color"), Some("blue"));
    assert_eq!(m.born_timestamp, parked.born_timestamp);
    assert_eq!(m.reconsume_times, 0);
    let lag = m.store_timestamp - parked.store_timestamp;
    assert!((2000..2300).contains(&lag), "re-stored {lag} ms after the original, level is 2000 ms");

    // Exactly once, and the level's progress moved past it.
    let offsets = eventually(Duration::from_secs(5), "level 2 progress", || async {
        let o = w.delay_offsets().await.ok()?;
        (o.get(&2) == Some(&1)).then_some(o)
    })
    .await?;
    assert_eq!(offsets.get(&1).copied().unwrap_or(0), 0);
    assert_eq!(queue_contents(&w, "DelayT", 3).await?.len(), 1);
    Ok(())
}

/// DELAY ≤ 0 (or garbage) is no delay; DELAY above the last level is clamped to it.
#[tokio::test]
async fn delay_levels_out_of_range_are_clamped_or_ignored() -> Result<()> {
    let (_ns, _broker, w) = start(ALL_1S, &[]).await?;
    w.create_topic("Clamp", 1).await?;
    for (i, level) in ["0", "-3", "abc"].into_iter().enumerate() {
        let mut p = Properties::default();
        p.insert(keys::DELAY_TIME_LEVEL, level);
        let s = w.send("Clamp", 0, level.as_bytes(), &p).await?;
        assert_eq!(s.code, ResponseCode::SUCCESS);
        assert_eq!(s.queue_offset, i as i64, "DELAY={level} is stored straight into the topic");
        assert_eq!(stored(&w, &s.msg_id).await?.topic, "Clamp");
    }
    let s = w.send("Clamp", 0, b"clamped", &delayed_props("T", &uniq_key(2), 99)).await?;
    assert_eq!(s.code, ResponseCode::SUCCESS);
    let parked = stored(&w, &s.msg_id).await?;
    assert_eq!((parked.topic.as_str(), parked.queue_id), (SCHEDULE_TOPIC, 17));
    assert_eq!(parked.properties.get(keys::DELAY_TIME_LEVEL), Some("18"));
    // The three undelayed messages are acknowledged once in the commit log; wait until
    // they are in the consume queue, or a pull at offset 3 is past its end.
    w.pull_at_least("GC", "Clamp", 0, 0, 3).await?;
    let m = next_message(&w, "GC", "Clamp", 0, 3, Duration::from_secs(5)).await?;
    assert_eq!(&m.body[..], b"clamped");
    Ok(())
}

/// All 18 levels, several messages each, sent interleaved: every level delivers its
/// messages in send order, none before its delay (store time ≥ original store time
/// + delay) and none much after, each exactly once.
#[tokio::test]
async fn every_delay_level_delivers_in_send_order_after_its_delay() -> Result<()> {
    let levels = "1s 2s 3s 1s 2s 3s 1s 2s 3s 1s 2s 3s 1s 2s 3s 1s 2s 3s";
    let (_ns, _broker, w) = start(levels, &[]).await?;
    w.create_topic("Levels", 18).await?;
    const ROUNDS: i32 = 4;
    // level → (body, original store timestamp) in send order
    let mut sent: BTreeMap<i32, Vec<(String, i64)>> = BTreeMap::new();
    for round in 0..ROUNDS {
        for level in 1..=18 {
            let body = format!("L{level}-{round}");
            let s = w
                .send(
                    "Levels",
                    level - 1,
                    body.as_bytes(),
                    &delayed_props("T", &uniq_key((level * 100 + round) as u32), level),
                )
                .await?;
            assert_eq!(s.code, ResponseCode::SUCCESS, "{:?}", s.remark);
            let parked = stored(&w, &s.msg_id).await?;
            assert_eq!((parked.topic.as_str(), parked.queue_id), (SCHEDULE_TOPIC, level - 1));
            sent.entry(level).or_default().push((body, parked.store_timestamp));
        }
    }
    // Every level has delivered all its messages (the scheduler advanced past them).
    eventually(Duration::from_secs(15), "every level to deliver everything", || async {
        let o = w.delay_offsets().await.ok()?;
        (1..=18).all(|l| o.get(&l).copied() == Some(ROUNDS as i64)).then_some(())
    })
    .await?;
    eventually(Duration::from_secs(5), "every delivered message to be visible", || async {
        for q in 0..18 {
            if w.max_offset("Levels", q).await.ok()? < ROUNDS as i64 {
                return None;
            }
        }
        Some(())
    })
    .await?;
    for level in 1..=18 {
        let delay = level_delay(levels, level).as_millis() as i64;
        let got = queue_contents(&w, "Levels", level - 1).await?;
        let bodies: Vec<String> = got.iter().map(|m| String::from_utf8_lossy(&m.body).into_owned()).collect();
        let expected: Vec<String> = sent[&level].iter().map(|(b, _)| b.clone()).collect();
        assert_eq!(bodies, expected, "level {level}: order or count");
        for (m, (body, original_ts)) in got.iter().zip(&sent[&level]) {
            let lag = m.store_timestamp - original_ts;
            assert!(lag >= delay, "level {level} {body}: delivered {lag} ms after send, delay is {delay} ms");
            assert!(lag < delay + 1000, "level {level} {body}: delivered {lag} ms after send, delay is {delay} ms");
        }
    }
    Ok(())
}

/// A 1 s and a 5 s level, three messages each, land within 10 % + 100 ms of their
/// target, measured twice: from the send ack to the moment a parked (long-polling)
/// pull on the real queue is answered, and as the difference between the delivered
/// record's store time and the original's.
#[tokio::test]
async fn delay_accuracy_is_within_ten_percent_plus_100ms() -> Result<()> {
    let levels = "1s 5s 10s 30s 1m 2m 3m 4m 5m 6m 7m 8m 9m 10m 20m 30m 1h 2h";
    let (_ns, _broker, w) = start(levels, &[]).await?;
    w.create_topic("Accuracy", 6).await?;
    // Queues 0..3 carry level 1, queues 3..6 level 2; one parked pull per queue.
    let plan: Vec<(i32, i32)> = (0..6).map(|q| (q, if q < 3 { 1 } else { 2 })).collect();
    let mut pulls = Vec::new();
    for &(q, _) in &plan {
        let puller = w.clone();
        pulls.push(tokio::spawn(async move {
            let p = puller.pull_with(&long_poll("GA", "Accuracy", q, 0, 15_000)).await;
            (p, Instant::now())
        }));
    }
    w.wait_parked_pulls(6, Duration::from_secs(5)).await?;
    let mut acks = Vec::new();
    for &(q, level) in &plan {
        let s =
            w.send("Accuracy", q, format!("q{q}").as_bytes(), &delayed_props("T", &uniq_key(q as u32), level)).await?;
        let acked = Instant::now();
        assert_eq!(s.code, ResponseCode::SUCCESS);
        let original = stored(&w, &s.msg_id).await?;
        acks.push((acked, original.store_timestamp));
    }
    let mut report = Vec::new();
    for ((pull, (acked, original_ts)), &(q, level)) in pulls.into_iter().zip(acks).zip(&plan) {
        let (p, answered) = pull.await?;
        let p = p?;
        assert_eq!(p.code, ResponseCode::SUCCESS, "queue {q}: {p:?}");
        let target = level_delay(levels, level);
        let tolerance = target / 10 + Duration::from_millis(100);
        let visible = answered.duration_since(acked);
        let stored_lag = Duration::from_millis((p.messages[0].store_timestamp - original_ts).max(0) as u64);
        report.push(format!(
            "level {level} (target {target:?}) queue {q}: visible after {visible:?}, store-time lag {stored_lag:?}"
        ));
        for (what, actual) in [("visible", visible), ("store-time lag", stored_lag)] {
            let err = actual.abs_diff(target);
            assert!(
                err <= tolerance,
                "level {level} queue {q}: {what} {actual:?} vs target {target:?} (tolerance {tolerance:?})"
            );
        }
    }
    eprintln!("delay accuracy:\n  {}", report.join("\n  "));
    Ok(())
}

/// Sends a 1 s message and waits until it is delivered and its progress is on disk;
/// then sends a 5 s message, restarts the broker (SIGTERM or SIGKILL) before it is
/// due, and checks that after the restart the 5 s message is delivered exactly once
/// and the 1 s one is not delivered again.
async fn delay_survives_restart(kill9: bool) -> Result<()> {
    let levels = "1s 5s 10s 30s 1m 2m 3m 4m 5m 6m 7m 8m 9m 10m 20m 30m 1h 2h";
    let (ns, broker, w) = start(levels, &[("FLUSH_DELAY_OFFSET_INTERVAL", "100ms")]).await?;
    w.create_topic("Durable", 1).await?;
    let s1 = w.send("Durable", 0, b"early", &delayed_props("T", &uniq_key(1), 1)).await?;
    assert_eq!(s1.code, ResponseCode::SUCCESS);
    let m1 = next_message(&w, "GR", "Durable", 0, 0, Duration::from_secs(5)).await?;
    assert_eq!(&m1.body[..], b"early");
    let offsets_file = broker.home.path().join("store").join("config").join("delayOffset.json");
    eventually(Duration::from_secs(5), "level 1 progress on disk", || async {
        let text = std::fs::read_to_string(&offsets_file).ok()?;
        let v: serde_json::Value = serde_json::from_str(&text).ok()?;
        (v.pointer("/offsetTable/1").and_then(serde_json::Value::as_i64) == Some(1)).then_some(())
    })
    .await?;

    let uniq = uniq_key(2);
    let s2 = w.send("Durable", 0, b"late", &delayed_props("T", &uniq, 2)).await?;
    let acked = Instant::now();
    assert_eq!(s2.code, ResponseCode::SUCCESS);
    let parked = stored(&w, &s2.msg_id).await?;
    let broker = broker.restart(&ns.addr(), kill9)?;
    let restarted = acked.elapsed();
    assert!(
        restarted < Duration::from_millis(4500),
        "restart took {restarted:?}: the 5 s message may have been due before it"
    );
    let w = Wire::new(broker.addr());

    let m2 = next_message(&w, "GR", "Durable", 0, 1, Duration::from_secs(10)).await?;
    let seen = acked.elapsed();
    assert_eq!(m2.queue_offset, 1, "the 1 s message was not delivered again before it");
    assert_eq!(String::from_utf8_lossy(&m2.body), "late");
    assert_eq!(m2.properties.uniq_key(), Some(uniq.as_str()));
    assert_eq!(m2.properties.get(keys::DELAY_TIME_LEVEL), None);
    assert!(seen >= Duration::from_millis(4900), "delivered {seen:?} after the ack");
    assert!(m2.store_timestamp - parked.store_timestamp >= 5000);
    eventually(Duration::from_secs(5), "level 2 progress after the restart", || async {
        (w.delay_offsets().await.ok()?.get(&2) == Some(&1)).then_some(())
    })
    .await?;
    let all = queue_contents(&w, "Durable", 0).await?;
    let bodies: Vec<String> = all.iter().map(|m| String::from_utf8_lossy(&m.body).into_owned()).collect();
    assert_eq!(bodies, ["early", "late"], "each delayed message exactly once");
    assert_eq!(w.delay_offsets().await?.get(&1), Some(&1));
    Ok(())
}

#[tokio::test]
async fn delayed_message_survives_a_sigterm_restart() -> Result<()> {
    delay_survives_restart(false).await
}

#[tokio::test]
async fn delayed_message_survives_a_kill9_restart() -> Result<()> {
    delay_survives_restart(true).await
}

// ------------------------------------------------------------------------------------
// Send-back, retry, DLQ
// ------------------------------------------------------------------------------------

/// CONSUMER_SEND_MSG_BACK as the Java push consumer sends it.
fn send_back_header(
    consumed: &MessageExt,
    group: &str,
    delay_level: i32,
    max: Option<i32>,
) -> ConsumerSendMsgBackRequestHeader {
    ConsumerSendMsgBackRequestHeader {
        offset: consumed.commit_log_offset,
        group: group.into(),
        delay_level,
        // `MessageClientExt.getMsgId()`: the UNIQ_KEY.
        origin_msg_id: Some(consumed.msg_id()),
        // The client restores the original topic before handing a retry message over.
        origin_topic: Some(consumed.properties.get(keys::RETRY_TOPIC).unwrap_or(consumed.topic.as_str()).to_owned()),
        unit_mode: Some(false),
        max_reconsume_times: max,
    }
}

fn original_props(uniq: &str) -> Properties {
    let mut p = Properties::default();
    p.insert(keys::TAGS, "TagR");
    p.insert(keys::KEYS, "order-1");
    p.insert(keys::UNIQ_CLIENT_MESSAGE_ID_KEYIDX, uniq);
    p
}

/// Sends one message to `topic` queue 0 and consumes it; returns (ack offsetMsgId,
/// consumed message).
async fn produce_and_consume(w: &Wire, topic: &str, body: &[u8], uniq: &str) -> Result<(String, MessageExt)> {
    w.create_topic(topic, 1).await?;
    let s = w.send(topic, 0, body, &original_props(uniq)).await?;
    ensure!(s.code == ResponseCode::SUCCESS, "{:?}", s.remark);
    let m = next_message(w, "GX", topic, 0, s.queue_offset, Duration::from_secs(5)).await?;
    Ok((s.msg_id, m))
}

/// Makes a DLQ readable, as an operator would, so its contents can be checked.
async fn dlq_contents(w: &Wire, dlq: &str) -> Result<Vec<MessageExt>> {
    w.create_topic(dlq, 1).await?;
    queue_contents(w, dlq, 0).await
}

/// The full Java consume-failure loop: 16 send-backs (delayLevel 0) each re-topic the
/// message to `%RETRY%G` (created on demand) through delay level 3 + reconsumeTimes,
/// with RETRY_TOPIC, ORIGIN_MESSAGE_ID, reconsumeTimes + 1, the same UNIQ_KEY and a
/// new offsetMsgId; the 17th lands in `%DLQ%G` queue 0 instead (not in the retry
/// topic, not delayed); the DLQ is created write-only (perm 2) so pulling it is
/// NO_PERMISSION.
#[tokio::test]
async fn sixteen_retries_then_the_dead_letter_queue() -> Result<()> {
    let (_ns, _broker, w) = start(ALL_1S, &[]).await?;
    let uniq = uniq_key(77);
    let (original_offset_id, mut consumed) = produce_and_consume(&w, "Orders", b"payload", &uniq).await?;
    let retry = "%RETRY%GROUP_R";
    let dlq = "%DLQ%GROUP_R";
    assert!(!w.topic_configs().await?.contains_key(retry), "the retry topic exists before any send-back");

    let mut offset_ids = vec![original_offset_id.clone()];
    for round in 0..16 {
        let before = schedule_offsets(&w).await?;
        let requested = now_ms();
        let (code, remark) = w.send_back(&send_back_header(&consumed, "GROUP_R", 0, Some(16))).await?;
        assert_eq!(code, ResponseCode::SUCCESS, "round {round}: {remark:?}");
        if round == 0 {
            let tc = w.topic_configs().await?.get(retry).cloned().context("retry topic created on demand")?;
            assert_eq!((tc.read_queue_nums, tc.write_queue_nums, tc.perm), (1, 1, 6));
        }
        // Through delay level 3 + reconsumeTimes: exactly that schedule queue grew.
        let level = (3 + round).min(18);
        let grown = schedule_growth(&w, &before).await?;
        assert_eq!(grown, [level as usize - 1], "round {round}: expected delay level {level}");

        let m = next_message(&w, "GROUP_R", retry, 0, round as i64, Duration::from_secs(5)).await?;
        assert_eq!(m.topic, retry);
        assert_eq!(m.reconsume_times, round + 1, "round {round}");
        assert_eq!(m.properties.get(keys::RETRY_TOPIC), Some("Orders"));
        assert_eq!(
            m.properties.get(keys::ORIGIN_MESSAGE_ID),
            Some(original_offset_id.as_str()),
            "ORIGIN_MESSAGE_ID is the first stored record's msgId (RocketMQ's msgExt.getMsgId() on the broker)"
        );
        assert_eq!(m.properties.uniq_key(), Some(uniq.as_str()), "round {round}: UNIQ_KEY survives");
        assert_eq!(m.msg_id(), uniq);
        assert_eq!(m.properties.get(keys::TAGS), Some("TagR"));
        assert_eq!(m.properties.get(keys::KEYS), Some("order-1"));
        assert_eq!(m.properties.get(keys::DELAY_TIME_LEVEL), None);
        assert_eq!(&m.body[..], b"payload");
        assert_eq!(m.born_timestamp, consumed.born_timestamp);
        assert!(
            m.store_timestamp >= requested + 1000,
            "round {round}: retried {} ms after the send-back, level delay is 1 s",
            m.store_timestamp - requested
        );
        assert!(!offset_ids.contains(&m.offset_msg_id()), "round {round}: offsetMsgId reused");
        offset_ids.push(m.offset_msg_id());
        consumed = m;
    }
    assert_eq!(consumed.reconsume_times, 16);

    // The 17th failure: dead letter, at once.
    let before = schedule_offsets(&w).await?;
    let (code, remark) = w.send_back(&send_back_header(&consumed, "GROUP_R", 0, Some(16))).await?;
    assert_eq!(code, ResponseCode::SUCCESS, "{remark:?}");
    eventually(Duration::from_secs(2), "the DLQ message", || async {
        (w.max_offset(dlq, 0).await.ok()? == 1).then_some(())
    })
    .await?;
    assert_eq!(schedule_offsets(&w).await?, before, "a dead letter is not delayed");
    assert_eq!(w.max_offset(retry, 0).await?, 16, "nothing more in the retry topic");

    let tc = w.topic_configs().await?.get(dlq).cloned().context("DLQ topic")?;
    assert_eq!(
        (tc.read_queue_nums, tc.write_queue_nums, tc.perm),
        (1, 1, 2),
        "DLQ is write-only, as RocketMQ creates it"
    );
    let (code, remark) = pull_code(&w, &long_poll("GROUP_R", dlq, 0, 0, 0)).await?;
    assert_eq!(code, ResponseCode::NO_PERMISSION, "{remark:?}");

    let dead = dlq_contents(&w, dlq).await?;
    assert_eq!(dead.len(), 1);
    let d = &dead[0];
    assert_eq!((d.topic.as_str(), d.queue_id), (dlq, 0));
    assert_eq!(d.reconsume_times, 17);
    assert_eq!(d.properties.uniq_key(), Some(uniq.as_str()));
    assert_eq!(d.properties.get(keys::RETRY_TOPIC), Some("Orders"));
    assert_eq!(d.properties.get(keys::ORIGIN_MESSAGE_ID), Some(original_offset_id.as_str()));
    assert_eq!(d.properties.get(keys::DELAY_TIME_LEVEL), None);
    assert_eq!(&d.body[..], b"payload");
    assert!(!offset_ids.contains(&d.offset_msg_id()));
    Ok(())
}

/// delayLevel −1 sends straight to the DLQ (no delay, nothing in the retry topic);
/// an explicit delayLevel > 0 is used instead of 3 + reconsumeTimes; the header's
/// maxReconsumeTimes decides when a message is dead.
#[tokio::test]
async fn send_back_delay_level_and_max_reconsume_times_are_honoured() -> Result<()> {
    // Level 5 is 3 s, every other level 1 s, so the level used shows in the timing too.
    let levels = "1s 1s 1s 1s 3s 1s 1s 1s 1s 1s 1s 1s 1s 1s 1s 1s 1s 1s";
    let (_ns, _broker, w) = start(levels, &[]).await?;

    // −1: dead at once.
    let (_, consumed) = produce_and_consume(&w, "Minus", b"m", &uniq_key(1)).await?;
    let before = schedule_offsets(&w).await?;
    let (code, remark) = w.send_back(&send_back_header(&consumed, "G_MINUS", -1, Some(16))).await?;
    assert_eq!(code, ResponseCode::SUCCESS, "{remark:?}");
    eventually(Duration::from_secs(2), "the DLQ message", || async {
        (w.max_offset("%DLQ%G_MINUS", 0).await.ok()? == 1).then_some(())
    })
    .await?;
    assert_eq!(schedule_offsets(&w).await?, before);
    assert_eq!(w.max_offset("%RETRY%G_MINUS", 0).await?, 0);
    let dead = dlq_contents(&w, "%DLQ%G_MINUS").await?;
    assert_eq!((dead.len(), dead[0].reconsume_times), (1, 1));
    assert_eq!(dead[0].properties.get(keys::RETRY_TOPIC), Some("Minus"));

    // Explicit level 5 (3 s) for a first failure, where 0 would mean level 3.
    let (_, consumed) = produce_and_consume(&w, "Explicit", b"e", &uniq_key(2)).await?;
    let before = schedule_offsets(&w).await?;
    let requested = now_ms();
    let (code, remark) = w.send_back(&send_back_header(&consumed, "G_EXPLICIT", 5, Some(16))).await?;
    assert_eq!(code, ResponseCode::SUCCESS, "{remark:?}");
    assert_eq!(schedule_growth(&w, &before).await?, [4], "level 5 = schedule queue 4");
    let m = next_message(&w, "G_EXPLICIT", "%RETRY%G_EXPLICIT", 0, 0, Duration::from_secs(6)).await?;
    let lag = m.store_timestamp - requested;
    assert!((3000..3600).contains(&lag), "retried {lag} ms after the send-back; level 5 is 3 s");
    assert_eq!(m.reconsume_times, 1);

    // The header's maxReconsumeTimes (1 here) decides: the retried message (1 attempt
    // already) is dead on its next failure.
    let (code, remark) = w.send_back(&send_back_header(&m, "G_EXPLICIT", 0, Some(1))).await?;
    assert_eq!(code, ResponseCode::SUCCESS, "{remark:?}");
    eventually(Duration::from_secs(2), "the DLQ message", || async {
        (w.max_offset("%DLQ%G_EXPLICIT", 0).await.ok()? == 1).then_some(())
    })
    .await?;
    assert_eq!(w.max_offset("%RETRY%G_EXPLICIT", 0).await?, 1);

    // A commit-log offset with no record behind it: SYSTEM_ERROR, nothing stored.
    let mut bogus = send_back_header(&m, "G_EXPLICIT", 0, Some(16));
    bogus.offset = 1 << 40;
    let (code, remark) = w.send_back(&bogus).await?;
    assert_eq!(code, ResponseCode::SYSTEM_ERROR, "{remark:?}");
    assert_eq!(w.max_offset("%RETRY%G_EXPLICIT", 0).await?, 1);
    Ok(())
}

/// The Java client's fallback when CONSUMER_SEND_MSG_BACK fails: it sends a copy
/// itself to `%RETRY%G` with reconsumeTimes in the header. Below the maximum it goes
/// through its DELAY level into the retry topic; at the maximum (header
/// maxReconsumeTimes, or the group's 16 when absent) it goes to `%DLQ%G` queue 0,
/// undelayed.
#[tokio::test]
async fn client_fallback_resend_to_retry_topic_reaches_the_dlq_at_the_maximum() -> Result<()> {
    let (_ns, _broker, w) = start(ALL_1S, &[]).await?;
    let retry = "%RETRY%G_FALLBACK";
    let dlq = "%DLQ%G_FALLBACK";
    let fallback = |reconsume: i32, max: Option<i32>, body: &str| {
        let mut p = original_props(&uniq_key(reconsume as u32));
        p.insert(keys::RETRY_TOPIC, "Orders");
        p.insert(keys::ORIGIN_MESSAGE_ID, "ORIGINAL-ID");
        p.insert(keys::RECONSUME_TIME, reconsume.to_string());
        p.insert(keys::MAX_RECONSUME_TIMES, max.unwrap_or(16).to_string());
        p.insert(keys::DELAY_TIME_LEVEL, (3 + reconsume).to_string());
        let mut h = send_header(retry, 0, &p);
        h.producer_group = "CLIENT_INNER_PRODUCER".into();
        h.reconsume_times = Some(reconsume);
        h.max_reconsume_times = max;
        (h, body.to_owned())
    };

    // Below the maximum: delayed, then in the retry topic.
    let before = schedule_offsets(&w).await?;
    let (h, body) = fallback(3, Some(16), "again");
    let s = w.send_v2(&h, body.as_bytes()).await?;
    assert_eq!(s.code, ResponseCode::SUCCESS, "{:?}", s.remark);
    assert_eq!(schedule_growth(&w, &before).await?, [5], "DELAY 6 = schedule queue 5");
    let m = next_message(&w, "G_FALLBACK", retry, 0, 0, Duration::from_secs(5)).await?;
    assert_eq!((&m.body[..], m.reconsume_times), (&b"again"[..], 3));
    assert_eq!(m.properties.get(keys::RETRY_TOPIC), Some("Orders"));

    // At the header's maximum: dead letter, not delayed.
    let before = schedule_offsets(&w).await?;
    let (h, body) = fallback(16, Some(16), "dead-by-header");
    let s = w.send_v2(&h, body.as_bytes()).await?;
    assert_eq!(s.code, ResponseCode::SUCCESS, "{:?}", s.remark);
    eventually(Duration::from_secs(2), "the DLQ message", || async {
        (w.max_offset(dlq, 0).await.ok()? == 1).then_some(())
    })
    .await?;
    // A lower header maximum also counts.
    let (h, body) = fallback(2, Some(2), "dead-by-low-max");
    assert_eq!(w.send_v2(&h, body.as_bytes()).await?.code, ResponseCode::SUCCESS);
    // No maximum in the header: the group's retryMaxTimes (16).
    let (h, body) = fallback(16, None, "dead-by-group");
    assert_eq!(w.send_v2(&h, body.as_bytes()).await?.code, ResponseCode::SUCCESS);
    eventually(Duration::from_secs(2), "three DLQ messages", || async {
        (w.max_offset(dlq, 0).await.ok()? == 3).then_some(())
    })
    .await?;
    assert_eq!(schedule_offsets(&w).await?, before, "dead letters are not delayed");
    assert_eq!(w.max_offset(retry, 0).await?, 1);
    assert_eq!(w.topic_configs().await?.get(dlq).map(|t| t.perm), Some(2));

    let dead = dlq_contents(&w, dlq).await?;
    let got: Vec<(String, i32, Option<String>)> = dead
        .iter()
        .map(|d| {
            (
                String::from_utf8_lossy(&d.body).into_owned(),
                d.queue_id,
                d.properties.get(keys::DELAY_TIME_LEVEL).map(str::to_owned),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("dead-by-header".to_owned(), 0, None),
            ("dead-by-low-max".to_owned(), 0, None),
            ("dead-by-group".to_owned(), 0, None)
        ]
    );
    for d in &dead {
        assert_eq!(d.topic, dlq);
        assert_eq!(d.properties.get(keys::RETRY_TOPIC), Some("Orders"));
        assert_eq!(d.properties.get(keys::ORIGIN_MESSAGE_ID), Some("ORIGINAL-ID"));
    }
    Ok(())
}

/// The broker's `max_reconsume_times` setting is the retry limit of groups that do
/// not set their own (auto-created ones), used when the request carries no
/// maxReconsumeTimes.
#[tokio::test]
async fn broker_max_reconsume_times_applies_to_auto_created_groups() -> Result<()> {
    let (_ns, _broker, w) = start(ALL_1S, &[("MAX_RECONSUME_TIMES", "3")]).await?;
    let retry = "%RETRY%G_CFG";
    let send = |reconsume: i32, body: &'static str| {
        let w = w.clone();
        async move {
            let mut p = original_props(&uniq_key(reconsume as u32));
            p.insert(keys::RETRY_TOPIC, "Orders");
            p.insert(keys::DELAY_TIME_LEVEL, (3 + reconsume).to_string());
            let mut h = send_header(retry, 0, &p);
            h.reconsume_times = Some(reconsume);
            h.max_reconsume_times = None;
            w.send_v2(&h, body.as_bytes()).await
        }
    };
    let s = send(2, "retry-me").await?;
    assert_eq!(s.code, ResponseCode::SUCCESS, "{:?}", s.remark);
    let s = send(3, "dead").await?;
    assert_eq!(s.code, ResponseCode::SUCCESS, "{:?}", s.remark);
    eventually(Duration::from_secs(2), "the DLQ message", || async {
        (w.max_offset("%DLQ%G_CFG", 0).await.ok()? == 1).then_some(())
    })
    .await
    .context("reconsumeTimes 3 with max_reconsume_times=3 should be a dead letter")?;
    let m = next_message(&w, "G_CFG", retry, 0, 0, Duration::from_secs(5)).await?;
    assert_eq!(String::from_utf8_lossy(&m.body), "retry-me");
    let dead = dlq_contents(&w, "%DLQ%G_CFG").await?;
    assert_eq!(dead.iter().map(|d| String::from_utf8_lossy(&d.body).into_owned()).collect::<Vec<_>>(), ["dead"]);
    Ok(())
}
