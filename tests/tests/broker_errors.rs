//! Validation failures answered with RocketMQ's response code and a remark that says
//! what was wrong — and after each one the broker keeps serving on the same
//! connection (a refused request never costs the client its connection).

use std::time::Duration;

use anyhow::Result;
use bytes::Bytes;
use common::properties::keys;
use common::subscription::SubscriptionGroupConfig;
use remoting::header::broker::*;
use remoting::{RemotingCommand, RequestCode, ResponseCode};
use tests::wire::{now_ms, props, pull_header, pulled, route, send_header, Sent, Wire};
use tests::{eventually, Broker, Namesrv};

const WAIT: Duration = Duration::from_secs(10);

fn cluster(settings: &[(&str, &str)]) -> Result<(Namesrv, Broker)> {
    let ns = Namesrv::start(&[])?;
    let broker = Broker::start(&ns.addr(), settings)?;
    Ok((ns, broker))
}

/// Asserts a refusal: `code`, and a remark containing every one of `words`.
fn refused(what: &str, code: ResponseCode, remark: Option<&str>, expected: ResponseCode, words: &[&str]) {
    assert_eq!(code, expected, "{what}: remark {remark:?}");
    let remark = remark.unwrap_or_default();
    for w in words {
        assert!(remark.contains(w), "{what}: remark {remark:?} does not mention {w:?}");
    }
}

fn refused_send(what: &str, s: &Sent, expected: ResponseCode, words: &[&str]) {
    refused(what, s.code, s.remark.as_deref(), expected, words);
}

/// The broker still stores and serves messages, on the same connection.
async fn still_serving(w: &Wire, topic: &str) -> Result<()> {
    let s = w.send(topic, 0, b"still here", &props(&[])).await?;
    assert_eq!(s.code, ResponseCode::SUCCESS, "the broker stopped serving sends: {:?}", s.remark);
    let p = w.pull_at_least("Alive", topic, 0, s.queue_offset, 1).await?;
    assert_eq!(&p.messages[0].body[..], b"still here");
    Ok(())
}

fn subscribed(group: &str, topic: &str, queue_id: i32, expr: &str, expr_type: &str) -> PullMessageRequestHeader {
    let mut h = pull_header(group, topic, queue_id, 0);
    h.sys_flag = common::sysflag::pull::SUBSCRIPTION;
    h.subscription = Some(expr.into());
    h.expression_type = Some(expr_type.into());
    h.sub_version = now_ms();
    h
}

async fn create_topic_with_perm(w: &Wire, topic: &str, queues: i32, perm: i32) -> Result<()> {
    let h = CreateTopicRequestHeader { perm, ..CreateTopicRequestHeader::new(topic, queues) };
    let resp = w.call(RemotingCommand::request_with(RequestCode::UPDATE_AND_CREATE_TOPIC, &h)).await?;
    anyhow::ensure!(resp.response_code() == ResponseCode::SUCCESS, "{:?}", resp.remark);
    Ok(())
}

/// Sends refused for their topic, size, properties, permissions, queue id, header
/// or body, each with RocketMQ's code.
#[tokio::test]
async fn refused_sends_answer_rocketmq_codes_and_the_broker_keeps_serving() -> Result<()> {
    let (_ns, broker) = cluster(&[("STORE__MAX_MESSAGE_SIZE", "4096")])?;
    let w = Wire::new(broker.addr());
    w.create_topic("OkT", 4).await?;
    still_serving(&w, "OkT").await?;

    // Topic names: characters and length (SYSTEM_ERROR, as Java's validateTopic).
    let s = w.send("bad topic!", 0, b"x", &props(&[])).await?;
    refused_send("illegal characters", &s, ResponseCode::SYSTEM_ERROR, &["bad topic!", "invalid"]);
    still_serving(&w, "OkT").await?;
    let long = "T".repeat(128);
    let s = w.send(&long, 0, b"x", &props(&[])).await?;
    refused_send("128-character topic", &s, ResponseCode::SYSTEM_ERROR, &["127"]);
    let s = w.send(&"T".repeat(127), 0, b"x", &props(&[])).await?;
    assert_eq!(s.code, ResponseCode::SUCCESS, "127 characters are allowed: {:?}", s.remark);

    // System topics producers may not write to.
    for topic in ["SCHEDULE_TOPIC_XXXX", "RMQ_SYS_TRANS_HALF_TOPIC", "SELF_TEST_TOPIC"] {
        let s = w.send(topic, 0, b"x", &props(&[])).await?;
        refused_send(topic, &s, ResponseCode::NO_PERMISSION, &[topic, "forbidden"]);
    }
    still_serving(&w, "OkT").await?;

    // Body larger than maxMessageSize (4096 here); exactly the limit is fine.
    let s = w.send("OkT", 0, &[b'x'; 4097], &props(&[])).await?;
    refused_send("body over the limit", &s, ResponseCode::MESSAGE_ILLEGAL, &["4097", "4096"]);
    assert_eq!(w.send("OkT", 0, &[b'x'; 4096], &props(&[])).await?.code, ResponseCode::SUCCESS);
    still_serving(&w, "OkT").await?;

    // Properties over 32767 bytes.
    let big = "v".repeat(33_000);
    let s = w.send("OkT", 0, b"x", &props(&[("big", big.as_str())])).await?;
    refused_send("properties over 32767 bytes", &s, ResponseCode::MESSAGE_ILLEGAL, &["properties", "32767"]);
    still_serving(&w, "OkT").await?;

    // A read-only topic (perm 4).
    create_topic_with_perm(&w, "ReadOnlyT", 2, 4).await?;
    let s = w.send("ReadOnlyT", 0, b"x", &props(&[])).await?;
    refused_send("read-only topic", &s, ResponseCode::NO_PERMISSION, &["ReadOnlyT", "forbidden"]);
    still_serving(&w, "OkT").await?;

    // Queue id beyond the topic's queues.
    let s = w.send("OkT", 4, b"x", &props(&[])).await?;
    refused_send("queue id out of range", &s, ResponseCode::SYSTEM_ERROR, &["queueId[4]", "illegal"]);
    still_serving(&w, "OkT").await?;

    // A required header field missing: Java's "the custom field ... is null".
    let mut req = RemotingCommand::request_with(RequestCode::SEND_MESSAGE_V2, &send_header("OkT", 0, &props(&[])))
        .with_body(Bytes::from_static(b"x"));
    req.ext_fields.remove("b");
    let resp = w.call(req).await?;
    refused(
        "missing topic (b)",
        resp.response_code(),
        resp.remark.as_deref(),
        ResponseCode::SYSTEM_ERROR,
        &["the custom field", "b", "is null"],
    );
    let mut req = RemotingCommand::request_with(RequestCode::PULL_MESSAGE, &subscribed("G", "OkT", 0, "*", "TAG"));
    req.ext_fields.remove("queueOffset");
    let resp = w.call(req).await?;
    refused(
        "missing queueOffset",
        resp.response_code(),
        resp.remark.as_deref(),
        ResponseCode::SYSTEM_ERROR,
        &["the custom field", "queueOffset", "is null"],
    );
    let mut req = RemotingCommand::request_with(RequestCode::SEND_MESSAGE_V2, &send_header("OkT", 0, &props(&[])));
    req.ext_fields.insert("e", "not-a-number");
    let resp = w.call(req).await?;
    refused(
        "unparsable queueId",
        resp.response_code(),
        resp.remark.as_deref(),
        ResponseCode::SYSTEM_ERROR,
        &["e", "not-a-number"],
    );
    still_serving(&w, "OkT").await?;

    // An unknown request code.
    let resp = w.call(RemotingCommand::request(RequestCode(4242))).await?;
    refused(
        "unknown code",
        resp.response_code(),
        resp.remark.as_deref(),
        ResponseCode::REQUEST_CODE_NOT_SUPPORTED,
        &["4242"],
    );
    still_serving(&w, "OkT").await?;

    // A batch body whose sizes do not add up.
    let msgs = [common::Message::new("OkT", Bytes::from_static(b"item"))];
    let mut body = common::batch::encode(&msgs).to_vec();
    body[3] = body[3].wrapping_add(9); // total size larger than the bytes sent
    let mut h = send_header("OkT", 0, &props(&[]));
    h.batch = Some(true);
    let resp =
        w.call(RemotingCommand::request_with(RequestCode::SEND_BATCH_MESSAGE, &h).with_body(Bytes::from(body))).await?;
    refused("malformed batch", resp.response_code(), resp.remark.as_deref(), ResponseCode::MESSAGE_ILLEGAL, &["batch"]);
    let resp = w
        .call(
            RemotingCommand::request_with(RequestCode::SEND_BATCH_MESSAGE, &h)
                .with_body(Bytes::from_static(b"\x00\x00")),
        )
        .await?;
    refused("truncated batch", resp.response_code(), resp.remark.as_deref(), ResponseCode::MESSAGE_ILLEGAL, &["batch"]);
    still_serving(&w, "OkT").await?;

    // Nothing refused was stored.
    let max = w.max_offset("OkT", 0).await?;
    let all = w.pull_at_least("Audit", "OkT", 0, 0, max as usize).await?;
    assert!(
        all.messages.iter().all(|m| &m.body[..] == b"still here" || m.body.len() == 4096),
        "a refused message was stored"
    );
    Ok(())
}

/// Pulls refused for permissions, subscriptions and queue ids, each with RocketMQ's
/// code.
#[tokio::test]
async fn refused_pulls_answer_rocketmq_codes_and_the_broker_keeps_serving() -> Result<()> {
    let (_ns, broker) = cluster(&[])?;
    let w = Wire::new(broker.addr());
    w.create_topic("OkT", 2).await?;
    still_serving(&w, "OkT").await?;

    // A write-only topic (perm 2) accepts sends but not pulls.
    create_topic_with_perm(&w, "WriteOnlyT", 1, 2).await?;
    assert_eq!(w.send("WriteOnlyT", 0, b"x", &props(&[])).await?.code, ResponseCode::SUCCESS);
    let resp = w
        .call(RemotingCommand::request_with(RequestCode::PULL_MESSAGE, &subscribed("G", "WriteOnlyT", 0, "*", "TAG")))
        .await?;
    refused(
        "write-only topic",
        resp.response_code(),
        resp.remark.as_deref(),
        ResponseCode::NO_PERMISSION,
        &["WriteOnlyT", "forbidden"],
    );
    still_serving(&w, "OkT").await?;

    // No subscription in the request and none from a heartbeat.
    let resp = w
        .call(RemotingCommand::request_with(RequestCode::PULL_MESSAGE, &pull_header("NoHeartbeatG", "OkT", 0, 0)))
        .await?;
    refused(
        "no subscription",
        resp.response_code(),
        resp.remark.as_deref(),
        ResponseCode::SUBSCRIPTION_NOT_EXIST,
        &["NoHeartbeatG"],
    );
    // With a heartbeat for another topic only, still no subscription for this one.
    w.heartbeat("c1", "HbG", &[("OtherT", "*")]).await?;
    let resp =
        w.call(RemotingCommand::request_with(RequestCode::PULL_MESSAGE, &pull_header("HbG", "OkT", 0, 0))).await?;
    refused(
        "subscribed elsewhere",
        resp.response_code(),
        resp.remark.as_deref(),
        ResponseCode::SUBSCRIPTION_NOT_EXIST,
        &["HbG", "OkT"],
    );
    // Subscribed by heartbeat: the same pull without the flag works.
    w.heartbeat("c1", "HbG", &[("OkT", "*")]).await?;
    let p = w.pull_with(&pull_header("HbG", "OkT", 0, 0)).await?;
    assert_eq!(p.code, ResponseCode::SUCCESS, "{:?}", p.remark);
    still_serving(&w, "OkT").await?;

    // An SQL92 expression that does not parse.
    let resp = w
        .call(RemotingCommand::request_with(
            RequestCode::PULL_MESSAGE,
            &subscribed("SqlG", "OkT", 0, "a >>> (", "SQL92"),
        ))
        .await?;
    refused(
        "bad SQL92",
        resp.response_code(),
        resp.remark.as_deref(),
        ResponseCode::SUBSCRIPTION_PARSE_FAILED,
        &["subscription"],
    );
    let resp = w
        .call(RemotingCommand::request_with(RequestCode::PULL_MESSAGE, &subscribed("SqlG", "OkT", 0, "a > 1", "SQL92")))
        .await?;
    assert_ne!(
        resp.response_code(),
        ResponseCode::SUBSCRIPTION_PARSE_FAILED,
        "a valid expression parses: {:?}",
        resp.remark
    );
    still_serving(&w, "OkT").await?;

    // Queue id beyond the readable queues; an unknown topic.
    let resp = w
        .call(RemotingCommand::request_with(RequestCode::PULL_MESSAGE, &subscribed("G", "OkT", 2, "*", "TAG")))
        .await?;
    refused(
        "pull queue out of range",
        resp.response_code(),
        resp.remark.as_deref(),
        ResponseCode::SYSTEM_ERROR,
        &["queueId[2]", "illegal"],
    );
    let resp = w
        .call(RemotingCommand::request_with(RequestCode::PULL_MESSAGE, &subscribed("G", "NoSuchT", 0, "*", "TAG")))
        .await?;
    refused("unknown topic", resp.response_code(), resp.remark.as_deref(), ResponseCode::TOPIC_NOT_EXIST, &["NoSuchT"]);
    still_serving(&w, "OkT").await?;
    Ok(())
}

/// With auto-creation disabled, a send to an unknown topic is TOPIC_NOT_EXIST with a
/// remark that says why, TBW102 does not exist, and a pull by an unknown group is
/// SUBSCRIPTION_GROUP_NOT_EXIST until the group is created.
#[tokio::test]
async fn disabled_auto_creation_refuses_unknown_topics_and_groups() -> Result<()> {
    let (ns, broker) = cluster(&[("AUTO_CREATE_TOPIC_ENABLE", "false"), ("AUTO_CREATE_SUBSCRIPTION_GROUP", "false")])?;
    let w = Wire::new(broker.addr());
    w.create_topic("OkT", 1).await?;

    let s = w.send("NotCreatedT", 0, b"x", &props(&[])).await?;
    refused_send(
        "unknown topic",
        &s,
        ResponseCode::TOPIC_NOT_EXIST,
        &["NotCreatedT", "not exist", "autoCreateTopicEnable"],
    );
    let resp = w.call(RemotingCommand::request(RequestCode::GET_ALL_TOPIC_CONFIG)).await?;
    let topics: remoting::body::TopicConfigSerializeWrapper = serde_json::from_slice(&resp.body_bytes())?;
    assert!(!topics.topic_config_table.contains_key("NotCreatedT"));
    assert!(!topics.topic_config_table.contains_key("TBW102"), "no auto-create template when disabled");
    assert!(route(&w.client, &ns.addr(), "NotCreatedT").await?.is_none());

    let resp = w
        .call(RemotingCommand::request_with(RequestCode::PULL_MESSAGE, &subscribed("UnknownG", "OkT", 0, "*", "TAG")))
        .await?;
    refused(
        "unknown group",
        resp.response_code(),
        resp.remark.as_deref(),
        ResponseCode::SUBSCRIPTION_GROUP_NOT_EXIST,
        &["UnknownG"],
    );

    // Created explicitly, the group may pull; sends to created topics work.
    let sg = SubscriptionGroupConfig::new("UnknownG");
    let resp = w
        .call(
            RemotingCommand::request(RequestCode::UPDATE_AND_CREATE_SUBSCRIPTIONGROUP)
                .with_body(serde_json::to_vec(&sg)?),
        )
        .await?;
    assert_eq!(resp.response_code(), ResponseCode::SUCCESS);
    let s = w.send("OkT", 0, b"x", &props(&[(keys::TAGS, "A")])).await?;
    assert_eq!(s.code, ResponseCode::SUCCESS, "{:?}", s.remark);
    let p = eventually(WAIT, "the message to be pullable by the created group", || async {
        let p = w.pull("UnknownG", "OkT", 0, 0, "*", "TAG", 0).await.ok()?;
        (p.code == ResponseCode::SUCCESS).then_some(p)
    })
    .await?;
    assert_eq!(p.messages.len(), 1);
    Ok(())
}

/// brokerPermission=4 (read-only broker): sends are NO_PERMISSION, pulls still work,
/// and the name server's routes show perm 4 for the broker's topics.
#[tokio::test]
async fn read_only_broker_refuses_sends_and_registers_perm_4() -> Result<()> {
    let (ns, broker) = cluster(&[("BROKER_PERMISSION", "4")])?;
    let w = Wire::new(broker.addr());
    w.create_topic("RoT", 2).await?;
    let s = w.send("RoT", 0, b"x", &props(&[])).await?;
    refused_send("read-only broker", &s, ResponseCode::NO_PERMISSION, &["forbidden"]);
    let s = w.send("AutoT", 0, b"x", &props(&[])).await?;
    assert_eq!(s.code, ResponseCode::NO_PERMISSION, "auto-creation does not bypass it: {:?}", s.remark);

    let r =
        eventually(WAIT, "route of RoT", || async { route(&w.client, &ns.addr(), "RoT").await.ok().flatten() }).await?;
    assert_eq!(r.queue_datas[0].perm, 4, "the broker's permission is registered for its topics");
    let resp = w
        .call(RemotingCommand::request_with(RequestCode::PULL_MESSAGE, &subscribed("G", "RoT", 0, "*", "TAG")))
        .await?;
    let p = pulled(resp)?;
    assert_eq!(p.code, ResponseCode::PULL_NOT_FOUND, "reads are allowed: {:?}", p.remark);
    Ok(())
}

/// A store whose file system is above `disk_space_warning_level_ratio` refuses
/// sends with SERVICE_NOT_AVAILABLE and a remark that says the disk is full, how
/// full, and which setting decides; the runtime info reports the usage
/// (`commitLogDiskRatio`, as RocketMQ does); reads keep being served.
#[tokio::test]
async fn a_full_disk_refuses_sends_with_the_usage_and_threshold_in_the_remark() -> Result<()> {
    // Any file system holding a store is more than a billionth used.
    let (_ns, broker) = cluster(&[
        ("STORE__DISK_SPACE_WARNING_LEVEL_RATIO", "0.000000001"),
        ("STORE__DISK_SPACE_CLEAN_FORCIBLY_RATIO", "0.000000001"),
    ])?;
    let w = Wire::new(broker.addr());
    w.create_topic("FullT", 1).await?;
    let info = eventually(WAIT, "the store to measure its disk as full", || async {
        w.runtime_info().await.ok().filter(|t| t.get("diskFull").map(String::as_str) == Some("true"))
    })
    .await?;
    let ratio: f64 = info.get("commitLogDiskRatio").expect("commitLogDiskRatio reported").parse()?;
    assert!(ratio > 0.0 && ratio <= 1.0, "commitLogDiskRatio {ratio} is not a used fraction");

    let s = w.send("FullT", 0, b"x", &props(&[])).await?;
    refused_send(
        "disk full",
        &s,
        ResponseCode::SERVICE_NOT_AVAILABLE,
        &["service not available now", "disk is full", "% used", "broker.store.disk_space_warning_level_ratio"],
    );
    let p = w.pull("FullG", "FullT", 0, 0, "*", "TAG", 0).await?;
    assert_eq!(p.code, ResponseCode::PULL_NOT_FOUND, "pulls are still served: {:?}", p.remark);
    Ok(())
}
