//! Every broker processor answered over TCP by a real broker process
//! registered with a real name server: sends (10, 310, 320), pulls and their status
//! codes, consumer offsets, offset lookups, client registration and its
//! notifications, queue locks, message lookup, topic and group administration, and
//! the statistics bodies dashboards read.
//!
//! Requests are built by hand (`tests::wire`), so each assertion is about the bytes
//! the broker answers, not about a client library's interpretation of them.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use bytes::Bytes;
use common::msgid::decode_offset_msg_id;
use common::properties::keys;
use common::route::MessageQueue;
use common::subscription::SubscriptionGroupConfig;
use common::Message;
use remoting::body::TopicConfigSerializeWrapper;
use remoting::header::broker::*;
use remoting::{RemotingCommand, RequestCode, ResponseCode};
use tests::wire::{consumer_heartbeat, now_ms, props, pull_header, pulled, route, send_header, ServerRequests, Wire};
use tests::{eventually, Broker, Namesrv};

const WAIT: Duration = Duration::from_secs(10);

/// A name server and a broker registered with it.
fn cluster(settings: &[(&str, &str)]) -> Result<(Namesrv, Broker)> {
    let ns = Namesrv::start(&[])?;
    let broker = Broker::start(&ns.addr(), settings)?;
    Ok((ns, broker))
}

/// PULL_MESSAGE with an inline subscription, raw: the caller checks the extFields.
async fn raw_pull(w: &Wire, h: &PullMessageRequestHeader) -> Result<RemotingCommand> {
    w.call(RemotingCommand::request_with(RequestCode::PULL_MESSAGE, h)).await
}

fn subscribed(group: &str, topic: &str, queue_id: i32, offset: i64, expr: &str) -> PullMessageRequestHeader {
    let mut h = pull_header(group, topic, queue_id, offset);
    h.sys_flag = common::sysflag::pull::SUBSCRIPTION;
    h.subscription = Some(expr.into());
    h.expression_type = Some("TAG".into());
    h.sub_version = now_ms();
    h
}

/// Asserts the four offset fields are on the answer, whatever its code, and
/// `suggestWhichBrokerId` is the master's id.
fn assert_offsets_present(resp: &RemotingCommand) {
    for key in ["suggestWhichBrokerId", "nextBeginOffset", "minOffset", "maxOffset"] {
        assert!(
            resp.ext_fields.get(key).is_some(),
            "{key} missing on {:?} answer: {:?}",
            resp.response_code(),
            resp.ext_fields
        );
    }
    assert_eq!(resp.ext_fields.get("suggestWhichBrokerId"), Some("0"));
}

async fn all_topic_configs(w: &Wire) -> Result<TopicConfigSerializeWrapper> {
    let resp = w.call(RemotingCommand::request(RequestCode::GET_ALL_TOPIC_CONFIG)).await?;
    ensure!(resp.response_code() == ResponseCode::SUCCESS, "{:?} {:?}", resp.response_code(), resp.remark);
    Ok(serde_json::from_slice(&resp.body_bytes())?)
}

/// Parses a fastjson map keyed by JSON objects (`{{"topic":..}:{..},..}`), the form
/// of `offsetTable` in GET_TOPIC_STATS_INFO and GET_CONSUME_STATS, into pairs.
fn object_keyed_map(body: &str, field: &str) -> Result<Vec<(serde_json::Value, serde_json::Value)>> {
    let start =
        body.find(&format!("\"{field}\":{{")).with_context(|| format!("no {field} in {body}"))? + field.len() + 4;
    let mut rest = &body[start..];
    let mut out = Vec::new();
    let next_value = |s: &str| -> Result<(serde_json::Value, usize)> {
        let mut it = serde_json::Deserializer::from_str(s).into_iter::<serde_json::Value>();
        let v = it.next().context("value expected")??;
        Ok((v, it.byte_offset()))
    };
    loop {
        rest = rest.trim_start();
        if rest.starts_with('}') {
            return Ok(out);
        }
        let (key, used) = next_value(rest)?;
        rest = rest[used..].trim_start().strip_prefix(':').context("':' expected")?;
        let (value, used) = next_value(rest)?;
        out.push((key, value));
        rest = rest[used..].trim_start();
        rest = rest.strip_prefix(',').unwrap_or(rest);
    }
}

fn queue_entry<'a>(
    entries: &'a [(serde_json::Value, serde_json::Value)],
    topic: &str,
    queue_id: i64,
) -> Option<&'a serde_json::Value> {
    entries
        .iter()
        .find(|(k, _)| k["topic"] == topic && k["queueId"] == queue_id && k["brokerName"] == "broker-a")
        .map(|(_, v)| v)
}

// ---- sends -------------------------------------------------------------------------

/// SEND_MESSAGE (10, full header names) and SEND_MESSAGE_V2 (310, one-letter names)
/// store exactly what was sent, answer offsetMsgId / queueId / queueOffset plus the
/// two ext keys the Java client dereferences, and a negative queue id picks a queue.
#[tokio::test]
async fn send_v1_and_v2_store_what_was_sent() -> Result<()> {
    let (_ns, broker) = cluster(&[])?;
    let w = Wire::new(broker.addr());
    w.create_topic("SendT", 4).await?;

    let p = props(&[
        (keys::TAGS, "TagA"),
        (keys::KEYS, "k1 k2"),
        (keys::UNIQ_CLIENT_MESSAGE_ID_KEYIDX, "UNIQ-V1"),
        (keys::WAIT_STORE_MSG_OK, "true"),
        ("user", "v1"),
    ]);
    let v1 = SendMessageRequestHeader {
        producer_group: "PG".into(),
        topic: "SendT".into(),
        default_topic: "TBW102".into(),
        default_topic_queue_nums: 4,
        queue_id: 2,
        sys_flag: 0,
        born_timestamp: 1_700_000_000_123,
        flag: 7,
        properties: Some(p.encode()),
        reconsume_times: Some(0),
        unit_mode: Some(false),
        batch: Some(false),
        max_reconsume_times: Some(0),
        broker_name: Some("broker-a".into()),
    };
    let resp = w
        .call(RemotingCommand::request_with(RequestCode::SEND_MESSAGE, &v1).with_body(Bytes::from_static(b"v1 body")))
        .await?;
    assert_eq!(resp.ext_fields.get(keys::MSG_REGION), Some("DefaultRegion"));
    assert_eq!(resp.ext_fields.get(keys::TRACE_SWITCH), Some("true"));
    let s1 = tests::wire::sent(resp)?;
    assert_eq!(s1.code, ResponseCode::SUCCESS, "{:?}", s1.remark);
    assert_eq!((s1.queue_id, s1.queue_offset), (2, 0));
    let (host, phy1) = decode_offset_msg_id(&s1.msg_id)?;
    assert_eq!(host.to_string(), broker.addr(), "offsetMsgId carries the advertised address");

    let mut v2 =
        send_header("SendT", 2, &props(&[(keys::TAGS, "TagB"), (keys::UNIQ_CLIENT_MESSAGE_ID_KEYIDX, "UNIQ-V2")]));
    v2.flag = 9;
    v2.born_timestamp = 1_700_000_000_456;
    let s2 = w.send_v2(&v2, b"v2 body").await?;
    assert_eq!(s2.code, ResponseCode::SUCCESS, "{:?}", s2.remark);
    assert_eq!((s2.queue_id, s2.queue_offset), (2, 1));
    let (_, phy2) = decode_offset_msg_id(&s2.msg_id)?;
    assert!(phy2 > phy1);

    let p = w.pull_at_least("G", "SendT", 2, 0, 2).await?;
    assert_eq!(p.code, ResponseCode::SUCCESS, "{:?}", p.remark);
    assert_eq!(p.messages.len(), 2);
    let (m1, m2) = (&p.messages[0], &p.messages[1]);
    assert_eq!(&m1.body[..], b"v1 body");
    assert_eq!((m1.flag, m1.born_timestamp, m1.commit_log_offset), (7, 1_700_000_000_123, phy1));
    assert_eq!(m1.properties.get(keys::TAGS), Some("TagA"));
    assert_eq!(m1.properties.get(keys::KEYS), Some("k1 k2"));
    assert_eq!(m1.properties.get(keys::UNIQ_CLIENT_MESSAGE_ID_KEYIDX), Some("UNIQ-V1"));
    assert_eq!(m1.properties.get("user"), Some("v1"));
    assert_eq!(m1.properties.get(keys::CLUSTER), Some("DefaultCluster"));
    assert_eq!(m1.properties.get(keys::WAIT_STORE_MSG_OK), None, "WAIT is not stored");
    assert_eq!(m1.offset_msg_id(), s1.msg_id);
    assert_eq!(&m2.body[..], b"v2 body");
    assert_eq!((m2.flag, m2.born_timestamp), (9, 1_700_000_000_456));
    assert_eq!(m2.properties.get(keys::TAGS), Some("TagB"));
    assert_eq!(m2.offset_msg_id(), s2.msg_id);

    // queueId < 0: the broker picks one of the write queues.
    for _ in 0..8 {
        let s = w.send("SendT", -1, b"anywhere", &props(&[])).await?;
        assert_eq!(s.code, ResponseCode::SUCCESS, "{:?}", s.remark);
        assert!((0..4).contains(&s.queue_id), "picked queue {}", s.queue_id);
    }
    Ok(())
}

/// SEND_BATCH_MESSAGE (320): one stored record per item with consecutive queue
/// offsets, comma-joined offsetMsgIds in order, and each item's properties merged
/// with the batch-wide ones from the header.
#[tokio::test]
async fn batch_send_stores_consecutive_records_with_merged_properties() -> Result<()> {
    let (_ns, broker) = cluster(&[])?;
    let w = Wire::new(broker.addr());
    w.create_topic("BatchT", 2).await?;
    let first = w.send("BatchT", 1, b"single", &props(&[])).await?;
    assert_eq!((first.code, first.queue_offset), (ResponseCode::SUCCESS, 0));

    let msgs: Vec<Message> = (0..3)
        .map(|i| {
            let mut m = Message::new("BatchT", Bytes::from(format!("item {i}")))
                .with_tags(format!("T{i}"))
                .with_keys([format!("key-{i}")])
                .with_property(keys::UNIQ_CLIENT_MESSAGE_ID_KEYIDX, format!("B-UNIQ-{i}"));
            m.flag = 100 + i;
            m
        })
        .collect();
    let s =
        w.send_batch("BatchT", 1, &msgs, &props(&[("batchWide", "yes"), (keys::WAIT_STORE_MSG_OK, "true")])).await?;
    assert_eq!(s.code, ResponseCode::SUCCESS, "{:?}", s.remark);
    assert_eq!((s.queue_id, s.queue_offset), (1, 1), "first offset of the batch");
    let ids: Vec<&str> = s.msg_id.split(',').collect();
    assert_eq!(ids.len(), 3, "comma-joined msgIds: {}", s.msg_id);

    let p = w.pull_at_least("G", "BatchT", 1, 0, 4).await?;
    assert_eq!(p.code, ResponseCode::SUCCESS, "{:?}", p.remark);
    assert_eq!(p.messages.len(), 4);
    for (i, m) in p.messages[1..].iter().enumerate() {
        assert_eq!(m.queue_offset, 1 + i as i64, "consecutive queue offsets");
        assert_eq!(m.offset_msg_id(), ids[i], "msgIds in item order");
        assert_eq!(m.body, format!("item {i}").as_bytes());
        assert_eq!(m.flag, 100 + i as i32);
        assert_eq!(m.properties.get(keys::TAGS), Some(format!("T{i}").as_str()));
        assert_eq!(m.properties.get(keys::KEYS), Some(format!("key-{i}").as_str()));
        assert_eq!(m.properties.get(keys::UNIQ_CLIENT_MESSAGE_ID_KEYIDX), Some(format!("B-UNIQ-{i}").as_str()));
        assert_eq!(m.properties.get("batchWide"), Some("yes"), "batch properties merged into item {i}");
        assert_eq!(m.properties.get(keys::CLUSTER), Some("DefaultCluster"));
    }
    // The tag hash of each item is indexed: a TAG pull sees only T1.
    let p = w.pull("G2", "BatchT", 1, 0, "T1", "TAG", 0).await?;
    assert_eq!(p.code, ResponseCode::SUCCESS, "{:?}", p.remark);
    assert_eq!(p.messages.len(), 1);
    assert_eq!(p.messages[0].body, &b"item 1"[..]);

    let next = w.send_batch("BatchT", 1, &msgs[..1], &props(&[])).await?;
    assert_eq!((next.code, next.queue_offset), (ResponseCode::SUCCESS, 4), "the next batch follows");
    Ok(())
}

// ---- pulls -------------------------------------------------------------------------

/// PULL_MESSAGE answers every status with all four offset fields:
/// FOUND, PULL_NOT_FOUND at the tail, PULL_OFFSET_MOVED past the tail
/// (nextBeginOffset = max) and on an empty queue with offset ≠ 0,
/// PULL_RETRY_IMMEDIATELY when nothing scanned matches, TOPIC_NOT_EXIST.
#[tokio::test]
async fn pull_answers_every_status_with_all_offsets() -> Result<()> {
    let (_ns, broker) = cluster(&[])?;
    let w = Wire::new(broker.addr());
    w.create_topic("PullT", 2).await?;
    for i in 0..3 {
        let s = w.send("PullT", 0, format!("m{i}").as_bytes(), &props(&[(keys::TAGS, "TagA")])).await?;
        assert_eq!(s.code, ResponseCode::SUCCESS);
    }
    w.pull_at_least("Probe", "PullT", 0, 0, 3).await?;

    let check = |resp: RemotingCommand, code: ResponseCode, next: i64, min: i64, max: i64, n: usize| -> Result<()> {
        assert_offsets_present(&resp);
        let p = pulled(resp)?;
        assert_eq!(p.code, code, "{:?}", p.remark);
        assert_eq!((p.next_begin_offset, p.min_offset, p.max_offset), (next, min, max), "next/min/max for {code:?}");
        assert_eq!(p.messages.len(), n);
        Ok(())
    };

    check(raw_pull(&w, &subscribed("G", "PullT", 0, 0, "*")).await?, ResponseCode::SUCCESS, 3, 0, 3, 3)?;
    check(raw_pull(&w, &subscribed("G", "PullT", 0, 1, "*")).await?, ResponseCode::SUCCESS, 3, 0, 3, 2)?;
    // At the tail without the suspend flag: answered at once, offset unchanged.
    check(raw_pull(&w, &subscribed("G", "PullT", 0, 3, "*")).await?, ResponseCode::PULL_NOT_FOUND, 3, 0, 3, 0)?;
    // Past the tail: moved to the max offset.
    check(raw_pull(&w, &subscribed("G", "PullT", 0, 10, "*")).await?, ResponseCode::PULL_OFFSET_MOVED, 3, 0, 3, 0)?;
    // An empty queue: offset 0 is "nothing yet", anything else has moved to 0.
    check(raw_pull(&w, &subscribed("G", "PullT", 1, 5, "*")).await?, ResponseCode::PULL_OFFSET_MOVED, 0, 0, 0, 0)?;
    check(raw_pull(&w, &subscribed("G", "PullT", 1, 0, "*")).await?, ResponseCode::PULL_NOT_FOUND, 0, 0, 0, 0)?;
    // Entries scanned, none matched the filter: retry from after them.
    check(
        raw_pull(&w, &subscribed("G", "PullT", 0, 0, "TagB")).await?,
        ResponseCode::PULL_RETRY_IMMEDIATELY,
        3,
        0,
        3,
        0,
    )?;
    // maxMsgNums caps the batch.
    let mut h = subscribed("G", "PullT", 0, 0, "*");
    h.max_msg_nums = 2;
    check(raw_pull(&w, &h).await?, ResponseCode::SUCCESS, 2, 0, 3, 2)?;

    let resp = raw_pull(&w, &subscribed("G", "NoSuchTopic", 0, 0, "*")).await?;
    assert_eq!(resp.response_code(), ResponseCode::TOPIC_NOT_EXIST, "{:?}", resp.remark);
    assert!(resp.remark_str().contains("NoSuchTopic"), "{:?}", resp.remark);
    Ok(())
}

// ---- consumer offsets ----------------------------------------------------------------

/// QUERY/UPDATE_CONSUMER_OFFSET, the oneway update the Java client uses, the pull
/// COMMIT_OFFSET flag, and §12.6's answers for a group without a committed offset.
#[tokio::test]
async fn consumer_offsets_query_update_oneway_and_pull_commit() -> Result<()> {
    let (_ns, broker) = cluster(&[])?;
    let w = Wire::new(broker.addr());
    w.create_topic("OffT", 4).await?;

    // Nothing committed on a young queue: start from 0.
    let (code, offset, _) = w.query_offset("G", "OffT", 0).await?;
    assert_eq!((code, offset), (ResponseCode::SUCCESS, 0), "fresh queue starts at 0");
    // ... unless the client asks not to be given 0 (5.x setZeroIfNotFound=false).
    let (code, _, remark) = w
        .query_offset_with(&QueryConsumerOffsetRequestHeader {
            consumer_group: "G".into(),
            topic: "OffT".into(),
            queue_id: 0,
            set_zero_if_not_found: Some(false),
        })
        .await?;
    assert_eq!(code, ResponseCode::QUERY_NOT_FOUND, "{remark:?}");
    assert!(remark.as_deref().unwrap_or("").contains("Not found"), "{remark:?}");

    w.update_offset("G", "OffT", 0, 5).await?;
    assert_eq!(w.query_offset("G", "OffT", 0).await?.1, 5);
    w.update_offset("G", "OffT", 0, 6).await?;
    assert_eq!(w.query_offset("G", "OffT", 0).await?.1, 6, "a later commit replaces the earlier");
    assert_eq!(w.query_offset("OtherGroup", "OffT", 0).await?.1, 0, "offsets are per group");

    // Oneway: no answer, applied all the same.
    w.update_offset_oneway("G", "OffT", 1, 7).await?;
    eventually(WAIT, "the oneway commit", || async {
        (w.query_offset("G", "OffT", 1).await.ok()?.1 == 7).then_some(())
    })
    .await?;

    // Piggy-backed commit on a pull.
    for i in 0..3 {
        assert_eq!(w.send("OffT", 2, format!("m{i}").as_bytes(), &props(&[])).await?.code, ResponseCode::SUCCESS);
    }
    w.pull_at_least("Probe", "OffT", 2, 0, 3).await?;
    let mut h = subscribed("G", "OffT", 2, 0, "*");
    h.sys_flag |= common::sysflag::pull::COMMIT_OFFSET;
    h.commit_offset = 2;
    let p = w.pull_with(&h).await?;
    assert_eq!(p.code, ResponseCode::SUCCESS, "{:?}", p.remark);
    assert_eq!(w.query_offset("G", "OffT", 2).await?.1, 2, "COMMIT_OFFSET flag commits");
    // Without the flag the commitOffset field is ignored.
    let mut h = subscribed("G", "OffT", 3, 0, "*");
    h.commit_offset = 9;
    w.pull_with(&h).await?;
    assert_eq!(w.query_offset("G", "OffT", 3).await?.1, 0, "commitOffset without the flag is not stored");
    Ok(())
}

/// SEARCH_OFFSET_BY_TIMESTAMP, GET_MAX_OFFSET, GET_MIN_OFFSET and
/// GET_EARLIEST_MSG_STORETIME against store timestamps read back from the messages.
#[tokio::test]
async fn offset_lookups_by_time_max_min_and_earliest() -> Result<()> {
    let (_ns, broker) = cluster(&[])?;
    let w = Wire::new(broker.addr());
    w.create_topic("TimeT", 2).await?;
    for i in 0..5 {
        assert_eq!(w.send("TimeT", 0, format!("early {i}").as_bytes(), &props(&[])).await?.code, ResponseCode::SUCCESS);
    }
    let early = w.pull_at_least("G", "TimeT", 0, 0, 5).await?;
    let last_early = early.messages.last().context("messages")?.store_timestamp;
    // A store-time boundary between the two halves.
    eventually(WAIT, "the clock to pass the last early store time", || async {
        (now_ms() > last_early + 2).then_some(())
    })
    .await?;
    for i in 0..5 {
        assert_eq!(w.send("TimeT", 0, format!("late {i}").as_bytes(), &props(&[])).await?.code, ResponseCode::SUCCESS);
    }
    let all = w.pull_at_least("G", "TimeT", 0, 0, 10).await?;
    assert_eq!(all.messages.len(), 10);
    let first_late = all.messages[5].store_timestamp;
    assert!(first_late > last_early);

    assert_eq!(w.max_offset("TimeT", 0).await?, 10);
    assert_eq!(w.min_offset("TimeT", 0).await?, 0);
    assert_eq!(w.max_offset("TimeT", 1).await?, 0, "empty queue");
    assert_eq!(w.max_offset("NoSuchTopic", 0).await?, 0, "unknown queue");
    assert_eq!(w.earliest_store_time("TimeT", 0).await?, all.messages[0].store_timestamp);

    assert_eq!(w.search_offset("TimeT", 0, first_late).await?, 5, "first message stored at or after the time");
    assert_eq!(w.search_offset("TimeT", 0, last_early + 1).await?, 5);
    assert_eq!(w.search_offset("TimeT", 0, 0).await?, 0, "before everything: the min offset");
    let first = all.messages[0].store_timestamp;
    let at_first = w.search_offset("TimeT", 0, first).await?;
    assert_eq!(at_first, 0);
    let future = w.search_offset("TimeT", 0, now_ms() + 3_600_000).await?;
    assert!((9..=10).contains(&future), "after everything: the tail, got {future}");
    Ok(())
}

// ---- clients -------------------------------------------------------------------------

/// HEART_BEAT registers consumers (and their retry topic), GET_CONSUMER_LIST_BY_GROUP
/// lists them (code 1 when none), every member gets NOTIFY_CONSUMER_IDS_CHANGED
/// (oneway) when one joins or leaves through UNREGISTER_CLIENT, and a closed
/// connection leaves the group.
#[tokio::test]
async fn heartbeat_unregister_consumer_list_and_notifications() -> Result<()> {
    let (_ns, broker) = cluster(&[])?;
    let addr = broker.addr();
    let admin = Wire::new(addr.clone());
    let seen_a = Arc::new(ServerRequests::default());
    let seen_b = Arc::new(ServerRequests::default());
    let a = Wire::with_handler(addr.clone(), seen_a.clone());
    let b = Wire::with_handler(addr.clone(), seen_b.clone());

    let (code, remark) = admin.consumer_ids("CG").await?.expect_err("no consumer yet");
    assert_eq!(code, ResponseCode::SYSTEM_ERROR);
    assert!(remark.as_deref().unwrap_or("").contains("no consumer"), "{remark:?}");

    a.heartbeat_with(&consumer_heartbeat("client-a", "CG", &[("HbT", "*")])).await?;
    assert_eq!(admin.consumer_ids("CG").await?.expect("listed"), ["client-a"]);
    eventually(WAIT, "A notified of its own join", || async { (!seen_a.notified_groups().is_empty()).then_some(()) })
        .await?;
    seen_a.clear();

    b.heartbeat_with(&consumer_heartbeat("client-b", "CG", &[("HbT", "*")])).await?;
    assert_eq!(admin.consumer_ids("CG").await?.expect("listed"), ["client-a", "client-b"]);
    eventually(WAIT, "A notified that B joined", || async { (seen_a.notified_groups() == ["CG"]).then_some(()) })
        .await?;
    eventually(WAIT, "B notified", || async { (!seen_b.notified_groups().is_empty()).then_some(()) }).await?;
    assert!(seen_a.all().iter().all(|(code, oneway)| *code == RequestCode::NOTIFY_CONSUMER_IDS_CHANGED && *oneway));
    seen_a.clear();

    // The group's retry topic exists from the first heartbeat.
    let topics = all_topic_configs(&admin).await?;
    let retry = topics.topic_config_table.get("%RETRY%CG").context("retry topic of CG")?;
    assert_eq!(retry.perm, 6);

    b.unregister_consumer("client-b", "CG").await?;
    assert_eq!(admin.consumer_ids("CG").await?.expect("listed"), ["client-a"]);
    eventually(WAIT, "A notified that B left", || async { (seen_a.notified_groups() == ["CG"]).then_some(()) }).await?;

    // A's connection closes: the group empties.
    a.client.shutdown();
    eventually(WAIT, "the closed connection to leave the group", || async {
        admin.consumer_ids("CG").await.ok()?.is_err().then_some(())
    })
    .await?;
    Ok(())
}

/// A consumer channel silent for longer than `client_channel_max_idle_time` is
/// dropped, and the remaining member is told to rebalance.
#[tokio::test]
async fn idle_consumer_channel_expires_and_the_group_is_notified() -> Result<()> {
    let (_ns, broker) = cluster(&[("CLIENT_CHANNEL_MAX_IDLE_TIME", "2s")])?;
    let addr = broker.addr();
    let admin = Wire::new(addr.clone());
    let seen_a = Arc::new(ServerRequests::default());
    let a = Wire::with_handler(addr.clone(), seen_a.clone());
    let b = Wire::new(addr.clone());

    let hb = consumer_heartbeat("client-a", "EG", &[("ExpT", "*")]);
    a.heartbeat_with(&hb).await?;
    let keep_alive = {
        let a = a.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(300));
            loop {
                tick.tick().await;
                let _ = a.heartbeat_with(&hb).await;
            }
        })
    };
    b.heartbeat_with(&consumer_heartbeat("client-b", "EG", &[("ExpT", "*")])).await?;
    assert_eq!(admin.consumer_ids("EG").await?.expect("listed"), ["client-a", "client-b"]);
    eventually(WAIT, "A notified that B joined", || async { (seen_a.notified_groups().len() >= 2).then_some(()) })
        .await?;
    seen_a.clear();

    eventually(WAIT, "B to expire", || async {
        (admin.consumer_ids("EG").await.ok()?.ok()? == ["client-a"]).then_some(())
    })
    .await?;
    eventually(WAIT, "A notified of the expiry", || async { (seen_a.notified_groups() == ["EG"]).then_some(()) })
        .await?;
    keep_alive.abort();
    Ok(())
}

/// LOCK_BATCH_MQ / UNLOCK_BATCH_MQ: exclusive per (group, queue), renewed by the
/// holder, released by unlock (only by the holder), and taken over once the holder
/// stops renewing for `rebalance_lock_max_live_time`.
#[tokio::test]
async fn queue_locks_are_exclusive_renewable_and_expire() -> Result<()> {
    let (_ns, broker) = cluster(&[("REBALANCE_LOCK_MAX_LIVE_TIME", "1s")])?;
    let w = Wire::new(broker.addr());
    let q: Vec<MessageQueue> = (0..3).map(|i| MessageQueue::new("LockT", "broker-a", i)).collect();

    assert_eq!(w.lock_batch("LG", "c1", &q[..2]).await?, q[..2]);
    assert_eq!(w.lock_batch("LG", "c2", &q).await?, q[2..], "c1's queues are not granted to c2");
    assert_eq!(w.lock_batch("OtherGroup", "c2", &q[..1]).await?, q[..1], "locks are per group");
    assert_eq!(w.lock_batch("LG", "c1", &q[..2]).await?, q[..2], "the holder renews");

    w.unlock_batch("LG", "c2", &q[..1]).await?;
    assert!(w.lock_batch("LG", "c2", &q[..1]).await?.is_empty(), "only the holder can unlock");
    w.unlock_batch("LG", "c1", &q[1..2]).await?;
    assert_eq!(w.lock_batch("LG", "c2", &q[1..2]).await?, q[1..2], "an unlocked queue is free");

    // c1 keeps renewing q0 for longer than the lock lifetime: c2 never gets it.
    let until = std::time::Instant::now() + Duration::from_millis(2500);
    while std::time::Instant::now() < until {
        assert_eq!(w.lock_batch("LG", "c1", &q[..1]).await?, q[..1]);
        assert!(w.lock_batch("LG", "c2", &q[..1]).await?.is_empty(), "a renewed lock is not taken over");
        tokio::time::sleep(Duration::from_millis(250)).await; // pacing the renewals, not synchronisation
    }
    // c1 stops renewing: the lock expires and c2 takes it.
    eventually(WAIT, "c1's lock to expire", || async {
        let held = w.lock_batch("LG", "c2", &q[..1]).await.ok()?;
        (!held.is_empty()).then_some(())
    })
    .await?;
    assert!(w.lock_batch("LG", "c1", &q[..1]).await?.is_empty(), "c2 holds it now");
    Ok(())
}

/// CHECK_CLIENT_CONFIG: a valid SQL92 subscription is accepted, a broken one is
/// SUBSCRIPTION_PARSE_FAILED (23); TAG subscriptions are always fine.
#[tokio::test]
async fn check_client_config_validates_sql92() -> Result<()> {
    let (_ns, broker) = cluster(&[])?;
    let w = Wire::new(broker.addr());
    let check = |expr: &str, ty: &str| {
        let sub = common::subscription::SubscriptionData::new("SqlT", expr, ty, now_ms());
        let body = serde_json::json!({"clientId": "c1", "group": "SqlG", "subscriptionData": sub});
        RemotingCommand::request(RequestCode::CHECK_CLIENT_CONFIG).with_body(serde_json::to_vec(&body).unwrap())
    };
    let ok = w.call(check("a > 5 AND b = 'x'", "SQL92")).await?;
    assert_eq!(ok.response_code(), ResponseCode::SUCCESS, "{:?}", ok.remark);
    let bad = w.call(check("a >>> (", "SQL92")).await?;
    assert_eq!(bad.response_code(), ResponseCode::SUBSCRIPTION_PARSE_FAILED, "{:?}", bad.remark);
    assert!(!bad.remark_str().is_empty());
    let tag = w.call(check("TagA || TagB", "TAG")).await?;
    assert_eq!(tag.response_code(), ResponseCode::SUCCESS, "{:?}", tag.remark);
    Ok(())
}

// ---- message lookup ----------------------------------------------------------------

/// VIEW_MESSAGE_BY_ID by the commit-log offset inside an offsetMsgId, and
/// QUERY_MESSAGE by KEYS and by UNIQ_KEY (`_UNIQUE_KEY_QUERY`) through the index.
#[tokio::test]
async fn view_by_id_and_query_by_key_and_uniq_key() -> Result<()> {
    let (_ns, broker) = cluster(&[])?;
    let w = Wire::new(broker.addr());
    w.create_topic("QueryT", 2).await?;
    w.create_topic("OtherT", 1).await?;
    let mut sent = Vec::new();
    for i in 0..4 {
        let p = props(&[
            (keys::KEYS, &format!("order-{i} shared")),
            (keys::UNIQ_CLIENT_MESSAGE_ID_KEYIDX, &format!("7F00000100002A9F00000000QUERY{i:03}")),
        ]);
        let s = w.send("QueryT", i % 2, format!("body {i}").as_bytes(), &p).await?;
        assert_eq!(s.code, ResponseCode::SUCCESS);
        sent.push(s);
    }
    w.send("OtherT", 0, b"other", &props(&[(keys::KEYS, "order-1")])).await?;

    // An acknowledged send is visible to every read path at once: no waiting here.
    let (_, phy) = decode_offset_msg_id(&sent[2].msg_id)?;
    let view =
        RemotingCommand::request_with(RequestCode::VIEW_MESSAGE_BY_ID, &ViewMessageRequestHeader { offset: phy });
    let resp = w.call(view).await?;
    assert_eq!(resp.response_code(), ResponseCode::SUCCESS, "{:?}", resp.remark);
    let m = common::MessageExt::decode(&resp.body_bytes(), true)?;
    assert_eq!(m.body, &b"body 2"[..]);
    assert_eq!(m.topic, "QueryT");
    assert_eq!(m.offset_msg_id(), sent[2].msg_id);

    let resp = w
        .call(RemotingCommand::request_with(
            RequestCode::VIEW_MESSAGE_BY_ID,
            &ViewMessageRequestHeader { offset: phy + 1_000_000 },
        ))
        .await?;
    assert_eq!(resp.response_code(), ResponseCode::SYSTEM_ERROR, "no record there");

    let query = |key: &str, topic: &str, unique: bool| {
        let h = QueryMessageRequestHeader {
            topic: topic.into(),
            key: key.into(),
            max_num: 32,
            begin_timestamp: 0,
            end_timestamp: i64::MAX,
        };
        let mut req = RemotingCommand::request_with(RequestCode::QUERY_MESSAGE, &h);
        if unique {
            req.ext_fields.insert("_UNIQUE_KEY_QUERY", "true");
        }
        req
    };
    let found = w.call(query("order-1", "QueryT", false)).await?;
    assert_eq!(found.response_code(), ResponseCode::SUCCESS, "{:?}", found.remark);
    assert!(found.decode_header::<QueryMessageResponseHeader>().is_ok());
    let msgs = common::record::decode_all(&found.body_bytes(), true)?;
    assert_eq!(msgs.len(), 1, "only QueryT's message with that key");
    assert_eq!(msgs[0].body, &b"body 1"[..]);

    let resp = w.call(query("shared", "QueryT", false)).await?;
    assert_eq!(resp.response_code(), ResponseCode::SUCCESS);
    let mut bodies: Vec<Bytes> =
        common::record::decode_all(&resp.body_bytes(), true)?.into_iter().map(|m| m.body).collect();
    bodies.sort();
    assert_eq!(bodies, ["body 0", "body 1", "body 2", "body 3"].map(|b| Bytes::from_static(b.as_bytes())));

    let resp = w.call(query("7F00000100002A9F00000000QUERY003", "QueryT", true)).await?;
    assert_eq!(resp.response_code(), ResponseCode::SUCCESS, "{:?}", resp.remark);
    let msgs = common::record::decode_all(&resp.body_bytes(), true)?;
    assert_eq!(msgs.len(), 1);
    assert_eq!(msgs[0].body, &b"body 3"[..]);

    let resp = w.call(query("no-such-key", "QueryT", false)).await?;
    assert_eq!(resp.response_code(), ResponseCode::QUERY_NOT_FOUND);
    let resp = w.call(query("order-2", "OtherT", false)).await?;
    assert_eq!(resp.response_code(), ResponseCode::QUERY_NOT_FOUND, "keys are per topic");
    Ok(())
}

// ---- administration ------------------------------------------------------------------

/// UPDATE_AND_CREATE_TOPIC makes the route appear in the name server (and an
/// update changes it); DELETE_TOPIC_IN_BROKER removes the topic and its queues.
#[tokio::test]
async fn created_topic_is_routed_and_deleted_topic_is_gone() -> Result<()> {
    let (ns, broker) = cluster(&[])?;
    let w = Wire::new(broker.addr());
    let h = CreateTopicRequestHeader {
        read_queue_nums: 3,
        write_queue_nums: 2,
        ..CreateTopicRequestHeader::new("AdminT", 3)
    };
    let resp = w.call(RemotingCommand::request_with(RequestCode::UPDATE_AND_CREATE_TOPIC, &h)).await?;
    assert_eq!(resp.response_code(), ResponseCode::SUCCESS, "{:?}", resp.remark);
    let r =
        eventually(WAIT, "route of AdminT", || async { route(&w.client, &ns.addr(), "AdminT").await.ok().flatten() })
            .await?;
    assert_eq!((r.queue_datas[0].read_queue_nums, r.queue_datas[0].write_queue_nums, r.queue_datas[0].perm), (3, 2, 6));
    assert_eq!(r.broker_datas[0].master_addr(), Some(broker.addr().as_str()));

    let h = CreateTopicRequestHeader { read_queue_nums: 8, write_queue_nums: 8, ..h };
    let resp = w.call(RemotingCommand::request_with(RequestCode::UPDATE_AND_CREATE_TOPIC, &h)).await?;
    assert_eq!(resp.response_code(), ResponseCode::SUCCESS);
    eventually(WAIT, "the updated route", || async {
        let r = route(&w.client, &ns.addr(), "AdminT").await.ok().flatten()?;
        (r.queue_datas[0].write_queue_nums == 8).then_some(())
    })
    .await?;

    // A system topic name is refused.
    let bad = CreateTopicRequestHeader { topic: "SCHEDULE_TOPIC_XXXX".into(), ..h.clone() };
    let resp = w.call(RemotingCommand::request_with(RequestCode::UPDATE_AND_CREATE_TOPIC, &bad)).await?;
    assert_eq!(resp.response_code(), ResponseCode::SYSTEM_ERROR);

    assert_eq!(w.send("AdminT", 7, b"x", &props(&[])).await?.code, ResponseCode::SUCCESS);
    let resp = w
        .call(RemotingCommand::request_with(
            RequestCode::DELETE_TOPIC_IN_BROKER,
            &TopicRequestHeader { topic: "AdminT".into() },
        ))
        .await?;
    assert_eq!(resp.response_code(), ResponseCode::SUCCESS, "{:?}", resp.remark);
    assert!(!all_topic_configs(&w).await?.topic_config_table.contains_key("AdminT"));
    assert_eq!(w.max_offset("AdminT", 7).await?, 0, "its queues are gone");
    let resp = raw_pull(&w, &subscribed("G", "AdminT", 0, 0, "*")).await?;
    assert_eq!(resp.response_code(), ResponseCode::TOPIC_NOT_EXIST);
    Ok(())
}

/// Sending to an unknown topic with defaultTopic TBW102 creates it with
/// min(defaultTopicQueueNums, TBW102's 8) queues and perm 6, and registers it.
#[tokio::test]
async fn send_to_unknown_topic_auto_creates_it_from_tbw102() -> Result<()> {
    let (ns, broker) = cluster(&[])?;
    let w = Wire::new(broker.addr());
    let tbw = all_topic_configs(&w).await?.topic_config_table.get("TBW102").cloned().context("TBW102 exists")?;
    assert_eq!((tbw.write_queue_nums, tbw.perm), (8, 7));

    let s = w.send("AutoT", 0, b"first", &props(&[])).await?;
    assert_eq!(s.code, ResponseCode::SUCCESS, "{:?}", s.remark);
    let tc = all_topic_configs(&w).await?.topic_config_table.get("AutoT").cloned().context("AutoT created")?;
    assert_eq!((tc.read_queue_nums, tc.write_queue_nums, tc.perm), (4, 4, 6), "min(4, 8) queues, INHERIT dropped");
    let r = eventually(WAIT, "route of AutoT", || async { route(&w.client, &ns.addr(), "AutoT").await.ok().flatten() })
        .await?;
    assert_eq!((r.queue_datas[0].write_queue_nums, r.queue_datas[0].perm), (4, 6));

    let mut h = send_header("AutoT16", 0, &props(&[]));
    h.default_topic_queue_nums = 16;
    assert_eq!(w.send_v2(&h, b"x").await?.code, ResponseCode::SUCCESS);
    let tc = all_topic_configs(&w).await?.topic_config_table.get("AutoT16").cloned().context("AutoT16 created")?;
    assert_eq!(tc.write_queue_nums, 8, "capped by the template's queue count");

    // A template without INHERIT creates nothing.
    let mut h = send_header("NotInherited", 0, &props(&[]));
    h.default_topic = "SELF_TEST_TOPIC".into();
    let s = w.send_v2(&h, b"x").await?;
    assert_eq!(s.code, ResponseCode::TOPIC_NOT_EXIST, "{:?}", s.remark);
    assert!(!all_topic_configs(&w).await?.topic_config_table.contains_key("NotInherited"));
    Ok(())
}

/// UPDATE_AND_CREATE_SUBSCRIPTIONGROUP and the GET_ALL_* bodies slaves and tools
/// read (21, 43, 45, 201) parse, and reflect what was set.
#[tokio::test]
async fn subscription_group_and_get_all_bodies_parse() -> Result<()> {
    let (_ns, broker) = cluster(&[])?;
    let w = Wire::new(broker.addr());
    w.create_topic("AllT", 2).await?;
    let mut sg = SubscriptionGroupConfig::new("SG1");
    sg.retry_max_times = 5;
    sg.consume_broadcast_enable = false;
    let resp = w
        .call(
            RemotingCommand::request(RequestCode::UPDATE_AND_CREATE_SUBSCRIPTIONGROUP)
                .with_body(serde_json::to_vec(&sg)?),
        )
        .await?;
    assert_eq!(resp.response_code(), ResponseCode::SUCCESS, "{:?}", resp.remark);
    w.update_offset("SG1", "AllT", 1, 11).await?;

    let topics = all_topic_configs(&w).await?;
    assert!(topics.topic_config_table.contains_key("AllT") && topics.topic_config_table.contains_key("TBW102"));
    assert!(topics.data_version.timestamp > 0);

    let resp = w.call(RemotingCommand::request(RequestCode::GET_ALL_SUBSCRIPTIONGROUP_CONFIG)).await?;
    assert_eq!(resp.response_code(), ResponseCode::SUCCESS);
    let groups: serde_json::Value = serde_json::from_slice(&resp.body_bytes())?;
    let g = &groups["subscriptionGroupTable"]["SG1"];
    assert_eq!(g["groupName"], "SG1");
    assert_eq!(g["retryMaxTimes"], 5);
    assert_eq!(g["consumeBroadcastEnable"], false);
    assert!(groups["dataVersion"]["counter"].is_number(), "{groups}");

    let resp = w.call(RemotingCommand::request(RequestCode::GET_ALL_CONSUMER_OFFSET)).await?;
    assert_eq!(resp.response_code(), ResponseCode::SUCCESS);
    let offsets: serde_json::Value = serde_json::from_slice(&resp.body_bytes())?;
    assert_eq!(offsets["offsetTable"]["AllT@SG1"]["1"], 11, "{offsets}");

    let resp = w.call(RemotingCommand::request(RequestCode::GET_ALL_DELAY_OFFSET)).await?;
    assert_eq!(resp.response_code(), ResponseCode::SUCCESS);
    let delay: serde_json::Value = serde_json::from_slice(&resp.body_bytes())?;
    assert!(delay["offsetTable"].is_object(), "{delay}");
    Ok(())
}

/// The dashboard bodies: GET_BROKER_RUNTIME_INFO (KVTable), GET_TOPIC_STATS_INFO and
/// GET_CONSUME_STATS (fastjson object-keyed maps), GET_CONSUMER_CONNECTION_LIST.
#[tokio::test]
async fn runtime_topic_consume_and_connection_stats() -> Result<()> {
    let (_ns, broker) = cluster(&[])?;
    let w = Wire::new(broker.addr());
    w.create_topic("StatT", 2).await?;
    for i in 0..3 {
        assert_eq!(w.send("StatT", 0, format!("m{i}").as_bytes(), &props(&[])).await?.code, ResponseCode::SUCCESS);
    }
    w.update_offset("StatG", "StatT", 0, 2).await?;
    w.pull_at_least("Probe", "StatT", 0, 0, 3).await?;

    let info = w.runtime_info().await?;
    for key in [
        "brokerVersionDesc",
        "brokerVersion",
        "bootTimestamp",
        "commitLogMaxOffset",
        "msgPutTotalTodayNow",
        "msgGetTotalTodayNow",
    ] {
        assert!(info.contains_key(key), "runtime info lacks {key}: {info:?}");
    }
    assert!(info["msgPutTotalTodayNow"].parse::<i64>()? >= 3);
    assert!(info["commitLogMaxOffset"].parse::<i64>()? > 0);

    let resp = w
        .call(RemotingCommand::request_with(
            RequestCode::GET_TOPIC_STATS_INFO,
            &TopicRequestHeader { topic: "StatT".into() },
        ))
        .await?;
    assert_eq!(resp.response_code(), ResponseCode::SUCCESS, "{:?}", resp.remark);
    let body = String::from_utf8(resp.body_bytes().to_vec())?;
    let entries = object_keyed_map(&body, "offsetTable")?;
    assert_eq!(entries.len(), 2, "{body}");
    let q0 = queue_entry(&entries, "StatT", 0).with_context(|| body.clone())?;
    assert_eq!((q0["minOffset"].as_i64(), q0["maxOffset"].as_i64()), (Some(0), Some(3)), "{body}");
    assert!(q0["lastUpdateTimestamp"].as_i64().unwrap_or(0) > 0, "{body}");
    let q1 = queue_entry(&entries, "StatT", 1).with_context(|| body.clone())?;
    assert_eq!(q1["maxOffset"].as_i64(), Some(0));
    let resp = w
        .call(RemotingCommand::request_with(
            RequestCode::GET_TOPIC_STATS_INFO,
            &TopicRequestHeader { topic: "NoSuchTopic".into() },
        ))
        .await?;
    assert_eq!(resp.response_code(), ResponseCode::TOPIC_NOT_EXIST);

    let h = GetConsumeStatsRequestHeader { consumer_group: "StatG".into(), topic: None };
    let resp = w.call(RemotingCommand::request_with(RequestCode::GET_CONSUME_STATS, &h)).await?;
    assert_eq!(resp.response_code(), ResponseCode::SUCCESS, "{:?}", resp.remark);
    let body = String::from_utf8(resp.body_bytes().to_vec())?;
    assert!(body.contains("\"consumeTps\""), "{body}");
    let entries = object_keyed_map(&body, "offsetTable")?;
    let q0 = queue_entry(&entries, "StatT", 0).with_context(|| body.clone())?;
    assert_eq!((q0["brokerOffset"].as_i64(), q0["consumerOffset"].as_i64()), (Some(3), Some(2)), "{body}");

    let resp = w
        .call(RemotingCommand::request_with(
            RequestCode::GET_CONSUMER_CONNECTION_LIST,
            &ConsumerGroupRequestHeader { consumer_group: "StatG".into() },
        ))
        .await?;
    assert_eq!(resp.response_code(), ResponseCode::CONSUMER_NOT_ONLINE, "no consumer yet: {:?}", resp.remark);
    w.heartbeat_with(&consumer_heartbeat("stat-client", "StatG", &[("StatT", "TagA || TagB")])).await?;
    let resp = w
        .call(RemotingCommand::request_with(
            RequestCode::GET_CONSUMER_CONNECTION_LIST,
            &ConsumerGroupRequestHeader { consumer_group: "StatG".into() },
        ))
        .await?;
    assert_eq!(resp.response_code(), ResponseCode::SUCCESS, "{:?}", resp.remark);
    let cc: serde_json::Value = serde_json::from_slice(&resp.body_bytes())?;
    assert_eq!(cc["connectionSet"][0]["clientId"], "stat-client", "{cc}");
    assert!(cc["connectionSet"][0]["clientAddr"].as_str().is_some_and(|a| a.starts_with("127.0.0.1:")), "{cc}");
    assert_eq!(cc["subscriptionTable"]["StatT"]["subString"], "TagA || TagB", "{cc}");
    assert_eq!(cc["consumeType"], "CONSUME_PASSIVELY");
    assert_eq!(cc["messageModel"], "CLUSTERING");
    Ok(())
}

/// Every request code the broker serves has a processor: even an empty request gets an
/// answer other than REQUEST_CODE_NOT_SUPPORTED, and the connection stays usable.
#[tokio::test]
async fn dispatch_table_covers_every_listed_code() -> Result<()> {
    let (_ns, broker) = cluster(&[])?;
    let w = Wire::new(broker.addr());
    let codes = [
        RequestCode::SEND_MESSAGE,
        RequestCode::SEND_MESSAGE_V2,
        RequestCode::SEND_BATCH_MESSAGE,
        RequestCode::PULL_MESSAGE,
        RequestCode::QUERY_CONSUMER_OFFSET,
        RequestCode::UPDATE_CONSUMER_OFFSET,
        RequestCode::SEARCH_OFFSET_BY_TIMESTAMP,
        RequestCode::GET_MAX_OFFSET,
        RequestCode::GET_MIN_OFFSET,
        RequestCode::GET_EARLIEST_MSG_STORETIME,
        RequestCode::HEART_BEAT,
        RequestCode::UNREGISTER_CLIENT,
        RequestCode::CONSUMER_SEND_MSG_BACK,
        RequestCode::GET_CONSUMER_LIST_BY_GROUP,
        RequestCode::LOCK_BATCH_MQ,
        RequestCode::UNLOCK_BATCH_MQ,
        RequestCode::VIEW_MESSAGE_BY_ID,
        RequestCode::QUERY_MESSAGE,
        RequestCode::UPDATE_AND_CREATE_TOPIC,
        RequestCode::DELETE_TOPIC_IN_BROKER,
        RequestCode::UPDATE_AND_CREATE_SUBSCRIPTIONGROUP,
        RequestCode::GET_ALL_TOPIC_CONFIG,
        RequestCode::GET_ALL_CONSUMER_OFFSET,
        RequestCode::GET_ALL_DELAY_OFFSET,
        RequestCode::GET_ALL_SUBSCRIPTIONGROUP_CONFIG,
        RequestCode::GET_BROKER_RUNTIME_INFO,
        RequestCode::GET_CONSUME_STATS,
        RequestCode::GET_TOPIC_STATS_INFO,
        RequestCode::GET_CONSUMER_CONNECTION_LIST,
        RequestCode::CHECK_CLIENT_CONFIG,
        RequestCode::GET_BROKER_CONFIG,
        RequestCode::UPDATE_BROKER_CONFIG,
        RequestCode::VIEW_BROKER_STATS_DATA,
        RequestCode::CLEAN_EXPIRED_CONSUMEQUEUE,
        RequestCode::CLEAN_UNUSED_TOPIC,
        RequestCode::TRIGGER_DELETE_FILES,
        RequestCode::RESUME_CHECK_HALF_MESSAGE,
        RequestCode::GET_PRODUCER_CONNECTION_LIST,
        RequestCode::QUERY_TOPIC_CONSUME_BY_WHO,
        RequestCode::QUERY_CONSUME_TIME_SPAN,
        RequestCode::GET_BROKER_CONSUME_STATS,
        RequestCode::QUERY_CONSUME_QUEUE,
        RequestCode::CLONE_GROUP_OFFSET,
        RequestCode::QUERY_CORRECTION_OFFSET,
        RequestCode::GET_CONSUMER_RUNNING_INFO,
        RequestCode::CONSUME_MESSAGE_DIRECTLY,
        RequestCode::INVOKE_BROKER_TO_GET_CONSUMER_STATUS,
        RequestCode::GET_SYSTEM_TOPIC_LIST_FROM_BROKER,
    ];
    for code in codes {
        let resp = w.call(RemotingCommand::request(code)).await.with_context(|| format!("{code:?}"))?;
        assert_ne!(resp.response_code(), ResponseCode::REQUEST_CODE_NOT_SUPPORTED, "{code:?} has no processor");
    }
    let resp = w.call(RemotingCommand::request(RequestCode(9999))).await?;
    assert_eq!(resp.response_code(), ResponseCode::REQUEST_CODE_NOT_SUPPORTED);
    w.create_topic("StillServing", 1).await?;
    assert_eq!(w.send("StillServing", 0, b"ok", &props(&[])).await?.code, ResponseCode::SUCCESS);
    Ok(())
}
