//! The administration requests RocketMQ's mqadmin and Dashboard send, at the wire:
//! each answer's code, remark and body shape (field names and types as RocketMQ's
//! classes have them; `MessageQueue`-keyed maps with object keys, as fastjson
//! writes them), against a real name server, broker and SDK consumer.

mod client_support;

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use serde_json::Value;

use client::Message;
use common::route::MessageQueue;
use remoting::header::broker::*;
use remoting::header::CommandHeader;
use remoting::{RemotingCommand, RequestCode, ResponseCode};
use tests::wire::Wire;
use tests::{eventually, Broker, Namesrv};

use client_support::WAIT;

async fn call<H: CommandHeader>(w: &Wire, code: RequestCode, h: &H) -> Result<RemotingCommand> {
    w.call(RemotingCommand::request_with(code, h)).await
}

async fn call_ok<H: CommandHeader>(w: &Wire, code: RequestCode, h: &H) -> Result<RemotingCommand> {
    let r = call(w, code, h).await?;
    ensure!(r.response_code() == ResponseCode::SUCCESS, "{code:?}: {:?} {:?}", r.response_code(), r.remark);
    Ok(r)
}

fn body_json(r: &RemotingCommand) -> Result<Value> {
    serde_json::from_slice(&r.body_bytes())
        .with_context(|| format!("not JSON: {}", String::from_utf8_lossy(&r.body_bytes())))
}

fn body_text(r: &RemotingCommand) -> String {
    String::from_utf8_lossy(&r.body_bytes()).into_owned()
}

/// The entries of a `MessageQueue`-keyed map in field `field` of a body.
fn mq_entries(text: &str, field: &str) -> Vec<(MessageQueue, Value)> {
    let table = remoting::json::object_field(text, field).unwrap_or("{}");
    remoting::json::mq_keyed_entries(table)
        .into_iter()
        .map(|(mq, v)| (mq, serde_json::from_str(v).unwrap_or(Value::Null)))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn admin_requests_answer_in_rocketmqs_shapes() -> Result<()> {
    let ns = Namesrv::start(&[])?;
    let broker = Broker::start(&ns.addr(), &[])?;
    let n = ns.addr();
    let w = Wire::new(broker.addr());
    client_support::create_topic(&n, "WireAdmin", 2, 1).await?;
    let cfg =
        config::ClientConfig { heartbeat_broker_interval: Duration::from_secs(1), ..client_support::client_config(&n) };
    let producer = client::Producer::new("WirePG", cfg, None, client::ProducerOptions::default());
    let mut offset_ids = Vec::new();
    for i in 0..4 {
        let r = producer.send(Message::new("WireAdmin", format!("w{i}")).with_tags("TagW")).await?;
        offset_ids.push(r.offset_msg_id);
    }
    let (consumer, seen) = client_support::recording_consumer(&n, "WireCG", "WireAdmin", "TagW").await?;
    let client_id = consumer.instance().client_id().to_owned();
    eventually(WAIT, "four deliveries", || async { (seen.lock().unwrap().len() >= 4).then_some(()) }).await?;
    let committed = eventually(WAIT, "WireCG's offsets committed", || async {
        let h = GetConsumeStatsRequestHeader { consumer_group: "WireCG".into(), topic: Some("WireAdmin".into()) };
        let r = call_ok(&w, RequestCode::GET_CONSUME_STATS, &h).await.ok()?;
        let e = mq_entries(&body_text(&r), "offsetTable");
        let done: i64 = e.iter().map(|(_, v)| v["consumerOffset"].as_i64().unwrap_or(0)).sum();
        (done == 4).then_some(e)
    })
    .await?;
    assert!(committed.iter().all(|(_, v)| v["brokerOffset"].is_i64() && v["lastTimestamp"].is_i64()));

    // GET_PRODUCER_CONNECTION_LIST (204): ProducerConnection.
    let r = eventually(WAIT, "the producer's heartbeat", || async {
        let h = GetProducerConnectionListRequestHeader { producer_group: "WirePG".into() };
        call_ok(&w, RequestCode::GET_PRODUCER_CONNECTION_LIST, &h).await.ok()
    })
    .await?;
    let v = body_json(&r)?;
    let c = &v["connectionSet"][0];
    assert!(c["clientId"].is_string() && c["clientAddr"].is_string() && c["version"].is_i64(), "{v}");
    assert_eq!(c["language"], "RUST");
    let h = GetProducerConnectionListRequestHeader { producer_group: "NoSuchPG".into() };
    let r = call(&w, RequestCode::GET_PRODUCER_CONNECTION_LIST, &h).await?;
    assert_eq!(r.response_code(), ResponseCode::SYSTEM_ERROR);
    assert_eq!(r.remark.as_deref(), Some("the producer group[NoSuchPG] not exist"));

    // QUERY_TOPIC_CONSUME_BY_WHO (300): GroupList.
    let h = QueryTopicConsumeByWhoRequestHeader { topic: "WireAdmin".into() };
    let v = body_json(&call_ok(&w, RequestCode::QUERY_TOPIC_CONSUME_BY_WHO, &h).await?)?;
    assert_eq!(v["groupList"], serde_json::json!(["WireCG"]), "{v}");

    // QUERY_CONSUME_TIME_SPAN (303): QueryConsumeTimeSpanBody.
    let h = QueryConsumeTimeSpanRequestHeader { topic: "WireAdmin".into(), group: "WireCG".into() };
    let v = body_json(&call_ok(&w, RequestCode::QUERY_CONSUME_TIME_SPAN, &h).await?)?;
    let spans = v["consumeTimeSpanSet"].as_array().context("consumeTimeSpanSet")?;
    assert_eq!(spans.len(), 2, "{v}");
    for s in spans {
        assert_eq!(s["messageQueue"]["topic"], "WireAdmin");
        assert!(s["messageQueue"]["queueId"].is_i64() && s["messageQueue"]["brokerName"] == "broker-a", "{s}");
        let (min, max, consumed) =
            (s["minTimeStamp"].as_i64(), s["maxTimeStamp"].as_i64(), s["consumeTimeStamp"].as_i64());
        assert!(min > Some(0) && min <= max && consumed == max, "{s}");
        assert_eq!(s["delayTime"], 0, "everything consumed: {s}");
    }
    let h = QueryConsumeTimeSpanRequestHeader { topic: "NoSuchTopic".into(), group: "WireCG".into() };
    assert_eq!(
        call(&w, RequestCode::QUERY_CONSUME_TIME_SPAN, &h).await?.response_code(),
        ResponseCode::TOPIC_NOT_EXIST
    );

    // GET_SYSTEM_TOPIC_LIST_FROM_BROKER (305): TopicList.
    let v = body_json(&w.call(RemotingCommand::request(RequestCode::GET_SYSTEM_TOPIC_LIST_FROM_BROKER)).await?)?;
    let topics: Vec<&str> = v["topicList"].as_array().context("topicList")?.iter().filter_map(Value::as_str).collect();
    for t in ["TBW102", "SCHEDULE_TOPIC_XXXX", "RMQ_SYS_TRANS_HALF_TOPIC", "DefaultCluster", "broker-a"] {
        assert!(topics.contains(&t), "{t} missing: {v}");
    }

    // GET_BROKER_CONSUME_STATS (317): ConsumeStatsList.
    let h = GetConsumeStatsInBrokerHeader { is_order: false };
    let r = call_ok(&w, RequestCode::GET_BROKER_CONSUME_STATS, &h).await?;
    let text = body_text(&r);
    assert!(text.contains(&format!("\"brokerAddr\":\"{}\"", broker.addr())), "{text}");
    assert!(text.contains("\"totalDiff\":0"), "{text}");
    let groups = admin::ops::broker_consume_stats(&text);
    let wire_cg = groups.iter().find(|(g, _)| g == "WireCG").context("WireCG in consumeStatsList")?;
    // Its topic and its retry topic, nothing behind.
    assert_eq!(wire_cg.1.len(), 2, "{text}");
    assert!(wire_cg.1.iter().all(|(diff, _)| *diff == 0), "{text}");
    let wire_admin = text.find("{\"topic\":\"WireAdmin\"").context("WireAdmin's queues")?;
    let stats_start = text[..wire_admin].rfind("{\"consumeTps\"").context("its stats object")?;
    let queues = mq_entries(&text[stats_start..], "offsetTable");
    assert_eq!(queues.len(), 2, "{text}");
    assert_eq!(queues.iter().map(|(_, v)| v["brokerOffset"].as_i64().unwrap()).sum::<i64>(), 4, "{text}");

    // QUERY_CONSUME_QUEUE (321): QueryConsumeQueueResponseBody.
    let h = QueryConsumeQueueRequestHeader {
        topic: "WireAdmin".into(),
        queue_id: committed[0].0.queue_id,
        index: 0,
        count: 10,
        consumer_group: Some("WireCG".into()),
    };
    let v = body_json(&call_ok(&w, RequestCode::QUERY_CONSUME_QUEUE, &h).await?)?;
    let data = v["queueData"].as_array().context("queueData")?;
    let max = v["maxQueueIndex"].as_i64().context("maxQueueIndex")?;
    assert_eq!(data.len() as i64, max, "{v}");
    assert_eq!(v["minQueueIndex"], 0);
    let tag_hash = common::hash::tags_code(Some("TagW"));
    for d in data {
        assert!(d["physicOffset"].as_i64() >= Some(0) && d["physicSize"].as_i64() > Some(0), "{d}");
        assert_eq!((&d["tagsCode"], &d["eval"]), (&Value::from(tag_hash), &Value::Bool(true)), "{d}");
    }
    assert_eq!(v["subscriptionData"]["subString"], "TagW", "{v}");
    let h = QueryConsumeQueueRequestHeader {
        topic: "WireAdmin".into(),
        queue_id: 7,
        index: 0,
        count: 1,
        consumer_group: None,
    };
    let r = call(&w, RequestCode::QUERY_CONSUME_QUEUE, &h).await?;
    assert_eq!(
        (r.response_code(), r.remark.as_deref()),
        (ResponseCode::SYSTEM_ERROR, Some("7@WireAdmin is not exist!"))
    );

    // CLONE_GROUP_OFFSET (314), then QUERY_CORRECTION_OFFSET (308).
    let h = CloneGroupOffsetRequestHeader {
        src_group: "WireCG".into(),
        dest_group: "WireCG2".into(),
        topic: Some("WireAdmin".into()),
        offline: false,
    };
    call_ok(&w, RequestCode::CLONE_GROUP_OFFSET, &h).await?;
    for (mq, v) in &committed {
        let h = QueryConsumerOffsetRequestHeader {
            consumer_group: "WireCG2".into(),
            topic: "WireAdmin".into(),
            queue_id: mq.queue_id,
            ..Default::default()
        };
        let r = call_ok(&w, RequestCode::QUERY_CONSUMER_OFFSET, &h).await?;
        assert_eq!(r.ext_fields.get("offset").and_then(|o| o.parse().ok()), v["consumerOffset"].as_i64(), "{mq}");
    }
    let h = QueryCorrectionOffsetHeader {
        filter_groups: Some("WireCG2".into()),
        compare_group: "WireCG".into(),
        topic: "WireAdmin".into(),
    };
    let v = body_json(&call_ok(&w, RequestCode::QUERY_CORRECTION_OFFSET, &h).await?)?;
    let corrections = v["correctionOffsets"].as_object().context("correctionOffsets")?;
    assert_eq!(corrections.len(), 2, "{v}");
    for (mq, off) in &committed {
        assert_eq!(corrections[&mq.queue_id.to_string()], off["consumerOffset"], "{v}");
    }

    // VIEW_BROKER_STATS_DATA (315): BrokerStatsData.
    let h = ViewBrokerStatsDataRequestHeader { stats_name: "TOPIC_PUT_NUMS".into(), stats_key: "WireAdmin".into() };
    let v = body_json(&call_ok(&w, RequestCode::VIEW_BROKER_STATS_DATA, &h).await?)?;
    for window in ["statsMinute", "statsHour", "statsDay"] {
        assert_eq!(v[window]["sum"], 4, "{v}");
        assert!(v[window]["tps"].as_f64() > Some(0.0) && v[window]["avgpt"].as_f64() == Some(1.0), "{v}");
    }
    let h =
        ViewBrokerStatsDataRequestHeader { stats_name: "GROUP_GET_NUMS".into(), stats_key: "WireAdmin@WireCG".into() };
    assert_eq!(body_json(&call_ok(&w, RequestCode::VIEW_BROKER_STATS_DATA, &h).await?)?["statsDay"]["sum"], 4);
    let h = ViewBrokerStatsDataRequestHeader { stats_name: "TOPIC_PUT_NUMS".into(), stats_key: "Nope".into() };
    let r = call(&w, RequestCode::VIEW_BROKER_STATS_DATA, &h).await?;
    assert_eq!(r.remark.as_deref(), Some("The stats <TOPIC_PUT_NUMS> <Nope> not exist"));

    // GET_BROKER_RUNTIME_INFO's rates and day marks.
    let v = body_json(&w.call(RemotingCommand::request(RequestCode::GET_BROKER_RUNTIME_INFO)).await?)?;
    let table = &v["table"];
    let rates: Vec<f64> = table["putTps"].as_str().context("putTps")?.split(' ').map(|x| x.parse().unwrap()).collect();
    assert_eq!(rates.len(), 3, "{table}");
    assert!(rates.iter().all(|r| *r > 0.0), "four puts in the last 10 s: {table}");
    let now: i64 = table["msgPutTotalTodayNow"].as_str().unwrap().parse()?;
    let morning: i64 = table["msgPutTotalTodayMorning"].as_str().unwrap().parse()?;
    assert_eq!(now - morning, 4, "today's puts: {table}");
    assert_eq!(table["getTransferedTps"].as_str().map(|s| s.split(' ').count()), Some(3));

    // GET_BROKER_CONFIG (26) with its version header; UPDATE_BROKER_CONFIG (25).
    let r = w.call(RemotingCommand::request(RequestCode::GET_BROKER_CONFIG)).await?;
    let version: Value = serde_json::from_str(r.ext_fields.get("version").context("version header")?)?;
    assert!(version["counter"].is_i64() && version["timestamp"].is_i64(), "{version}");
    assert!(body_text(&r).lines().any(|l| l == "brokerClusterName=DefaultCluster"), "{}", body_text(&r));
    let update =
        |text: &str| RemotingCommand::request(RequestCode::UPDATE_BROKER_CONFIG).with_body(text.as_bytes().to_vec());
    let r = w.call(update("longPollingEnable=false\nshortPollingTimeMills=200\n")).await?;
    assert_eq!(r.response_code(), ResponseCode::SUCCESS, "{:?}", r.remark);
    let r = w.call(update("flushDiskType=SYNC_FLUSH")).await?;
    assert_eq!(r.response_code(), ResponseCode::SYSTEM_ERROR);
    assert!(r.remark_str().starts_with("flushDiskType cannot be changed"), "{:?}", r.remark);
    let r = w.call(RemotingCommand::request(RequestCode::GET_BROKER_CONFIG)).await?;
    let text = body_text(&r);
    assert!(text.contains("longPollingEnable=false\n") && text.contains("shortPollingTimeMills=200\n"), "{text}");
    assert!(text.contains("flushDiskType=ASYNC_FLUSH\n"), "a refused update changes nothing: {text}");
    let v2: Value = serde_json::from_str(r.ext_fields.get("version").unwrap())?;
    assert!(v2["counter"].as_i64() > version["counter"].as_i64(), "{v2}");

    // GET_CONSUMER_RUNNING_INFO (307), relayed to the SDK consumer and back.
    let h = GetConsumerRunningInfoRequestHeader {
        consumer_group: "WireCG".into(),
        client_id: client_id.clone(),
        jstack_enable: Some(false),
    };
    let r = call_ok(&w, RequestCode::GET_CONSUMER_RUNNING_INFO, &h).await?;
    let text = body_text(&r);
    assert!(text.contains("\"PROP_CONSUME_TYPE\":\"CONSUME_PASSIVELY\""), "{text}");
    assert_eq!(mq_entries(&text, "mqTable").iter().filter(|(mq, _)| mq.topic == "WireAdmin").count(), 2, "{text}");
    let h = GetConsumerRunningInfoRequestHeader { client_id: "nobody".into(), ..h };
    let r = call(&w, RequestCode::GET_CONSUMER_RUNNING_INFO, &h).await?;
    assert_eq!(r.remark.as_deref(), Some("The Consumer <WireCG> <nobody> not online"));

    // INVOKE_BROKER_TO_GET_CONSUMER_STATUS (223): each client's offsets.
    let h = GetConsumerStatusRequestHeader { topic: "WireAdmin".into(), group: "WireCG".into(), client_addr: None };
    let r = call_ok(&w, RequestCode::INVOKE_BROKER_TO_GET_CONSUMER_STATUS, &h).await?;
    let text = body_text(&r);
    let inner = remoting::json::object_field(&text, "consumerTable").context("consumerTable")?;
    let mine = remoting::json::object_field(inner, &client_id).context("the consumer's entry")?;
    let offsets: i64 = remoting::json::mq_keyed_entries(mine).iter().map(|(_, o)| o.parse::<i64>().unwrap()).sum();
    assert_eq!(offsets, 4, "{text}");

    // CONSUME_MESSAGE_DIRECTLY (309): the stored message goes to the listener once more.
    let before = seen.lock().unwrap().len();
    let h = ConsumeMessageDirectlyResultRequestHeader {
        consumer_group: "WireCG".into(),
        client_id: Some(client_id.clone()),
        msg_id: Some(offset_ids[2].clone()),
        topic: Some("WireAdmin".into()),
        ..Default::default()
    };
    let v = body_json(&call_ok(&w, RequestCode::CONSUME_MESSAGE_DIRECTLY, &h).await?)?;
    assert_eq!(v["consumeResult"], "CR_SUCCESS", "{v}");
    assert_eq!((&v["order"], &v["autoCommit"]), (&Value::Bool(false), &Value::Bool(true)));
    assert!(v["spentTimeMills"].is_i64());
    let again = seen.lock().unwrap()[before..]
        .iter()
        .map(|m| String::from_utf8_lossy(&m.body).into_owned())
        .collect::<Vec<_>>();
    assert_eq!(again, ["w2"]);

    // RESUME_CHECK_HALF_MESSAGE (323): a bad id is refused; a stored message goes back
    // to the half topic with its check count reset.
    let h = ResumeCheckHalfMessageRequestHeader { topic: None, msg_id: "not-an-id".into() };
    let r = call(&w, RequestCode::RESUME_CHECK_HALF_MESSAGE, &h).await?;
    assert_eq!(r.response_code(), ResponseCode::SYSTEM_ERROR);
    assert!(r.remark_str().contains("not-an-id"), "{:?}", r.remark);
    let half_max = |w: Wire| async move {
        let h = GetMaxOffsetRequestHeader { topic: "RMQ_SYS_TRANS_HALF_TOPIC".into(), queue_id: 0, committed: None };
        let r = call_ok(&w, RequestCode::GET_MAX_OFFSET, &h).await?;
        anyhow::Ok(r.ext_fields.get("offset").and_then(|o| o.parse::<i64>().ok()).unwrap_or(0))
    };
    let before = half_max(w.clone()).await?;
    let h = ResumeCheckHalfMessageRequestHeader { topic: None, msg_id: offset_ids[1].clone() };
    call_ok(&w, RequestCode::RESUME_CHECK_HALF_MESSAGE, &h).await?;
    assert_eq!(half_max(w.clone()).await?, before + 1);

    // Maintenance requests.
    for code in
        [RequestCode::CLEAN_EXPIRED_CONSUMEQUEUE, RequestCode::CLEAN_UNUSED_TOPIC, RequestCode::TRIGGER_DELETE_FILES]
    {
        let r = w.call(RemotingCommand::request(code)).await?;
        assert_eq!(r.response_code(), ResponseCode::SUCCESS, "{code:?} {:?}", r.remark);
    }
    // The topic's messages are all still there.
    let h = GetMaxOffsetRequestHeader { topic: "WireAdmin".into(), queue_id: committed[0].0.queue_id, committed: None };
    let r = call_ok(&w, RequestCode::GET_MAX_OFFSET, &h).await?;
    assert_eq!(r.ext_fields.get("offset").and_then(|o| o.parse().ok()), committed[0].1["brokerOffset"].as_i64());

    // The name server: system topics, unit topic lists.
    let nw = Wire::new(n.clone());
    let v = body_json(&nw.call(RemotingCommand::request(RequestCode::GET_SYSTEM_TOPIC_LIST_FROM_NS)).await?)?;
    assert_eq!(v["topicList"], serde_json::json!(["DefaultCluster", "broker-a"]), "{v}");
    assert_eq!(v["brokerAddr"], broker.addr());
    let unit = CreateTopicRequestHeader { topic_sys_flag: Some(1), ..CreateTopicRequestHeader::new("WireUnit", 1) };
    call_ok(&w, RequestCode::UPDATE_AND_CREATE_TOPIC, &unit).await?;
    eventually(WAIT, "the unit topic listed", || async {
        let r = nw.call(RemotingCommand::request(RequestCode::GET_UNIT_TOPIC_LIST)).await.ok()?;
        let v = body_json(&r).ok()?;
        (v["topicList"] == serde_json::json!(["WireUnit"])).then_some(())
    })
    .await?;
    for code in [RequestCode::GET_HAS_UNIT_SUB_TOPIC_LIST, RequestCode::GET_HAS_UNIT_SUB_UNUNIT_TOPIC_LIST] {
        let v = body_json(&nw.call(RemotingCommand::request(code)).await?)?;
        assert_eq!(v["topicList"], serde_json::json!([]), "{code:?}: {v}");
    }

    consumer.shutdown().await;
    producer.shutdown().await;
    Ok(())
}
