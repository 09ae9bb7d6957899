//! `ferromq-admin`'s day-two verbs against a real name server and broker: topics,
//! subscription groups, broker settings and maintenance, messages, the name
//! servers' KV table and settings, and the consumer and producer views with a
//! running SDK consumer. Each verb's output is asserted, `--json` parsed.

mod client_support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::Value;

use client::consumer::{ConsumeContext, ConsumeFromWhere, ConsumeStatus, PushConsumer};
use client::MessageExt;
use tests::{eventually, Broker, Namesrv};

use client_support::WAIT;
use client_support::{admin_fails as fails, admin_ok as ok};

/// Runs a verb with `--json` that must succeed, and parses its output.
fn json(ns: &str, args: &[&str]) -> Result<Value> {
    let mut all = args.to_vec();
    all.push("--json");
    let out = ok(ns, &all)?;
    serde_json::from_str(&out).with_context(|| format!("ferromq-admin {args:?} --json printed no JSON: {out}"))
}

fn rows(v: &Value) -> Vec<Value> {
    v.as_array().cloned().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn topic_message_broker_and_namesrv_verbs() -> Result<()> {
    let ns = Namesrv::start(&[])?;
    let broker = Broker::start(&ns.addr(), &[])?;
    let (n, b) = (ns.addr(), broker.addr());
    eventually(WAIT, "the broker registered", || async { ok(&n, &["clusterList"]).ok().filter(|o| o.contains(&b)) })
        .await?;

    // Topics.
    ok(&n, &["updateTopic", "-t", "OpsTopic", "-q", "2"])?;
    eventually(WAIT, "OpsTopic in topicList", || async {
        let v = json(&n, &["topicList"]).ok()?;
        rows(&v).iter().any(|r| r["Topic"] == "OpsTopic").then_some(())
    })
    .await?;
    let of_cluster = json(&n, &["topicList", "--clusterName", "DefaultCluster"])?;
    assert!(rows(&of_cluster).iter().any(|r| r["Topic"] == "OpsTopic"), "{of_cluster}");
    assert!(rows(&json(&n, &["topicList", "--clusterName", "NoSuchCluster"])?).is_empty());
    let clusters = json(&n, &["topicClusterList", "-t", "OpsTopic"])?;
    assert_eq!(rows(&clusters), vec![serde_json::json!({"Cluster": "DefaultCluster"})]);
    let made = ok(&n, &["updateTopic", "-t", "OpsOrdered", "-r", "2", "-w", "3", "-p", "6", "-o", "-b", &b])?;
    assert!(made.contains("2 read and 3 write queues") && made.contains("ordered"), "{made}");
    let route =
        eventually(WAIT, "OpsOrdered routed", || async { ok(&n, &["topicRoute", "-t", "OpsOrdered"]).ok() }).await?;
    assert!(route.contains("\"readQueueNums\": 2") && route.contains("\"writeQueueNums\": 3"), "{route}");

    // Messages.
    let sent = json(&n, &["sendMessage", "-t", "OpsTopic", "-p", "hello-ops", "--tags", "TagA", "-k", "key-1"])?;
    let sent = &rows(&sent)[0];
    assert_eq!(sent["Send Result"], "SendOk", "{sent}");
    let msg_id = sent["MsgId"].as_str().unwrap().to_owned();
    let qid = sent["QID"].as_i64().unwrap();
    let status = json(&n, &["topicStatus", "-t", "OpsTopic"])?;
    let max: i64 = rows(&status).iter().map(|r| r["Max Offset"].as_i64().unwrap()).sum();
    assert_eq!((rows(&status).len(), max), (2, 1), "{status}");

    // To a chosen broker and queue (mqadmin's -b/-i).
    let broker_name = sent["Broker Name"].as_str().unwrap().to_owned();
    ok(&n, &["updateTopic", "-t", "OpsPinned", "-q", "2"])?;
    let pinned = eventually(WAIT, "a send to OpsPinned's queue 1", || async {
        json(&n, &["sendMessage", "-t", "OpsPinned", "-p", "pinned", "-b", &broker_name, "-i", "1"]).ok()
    })
    .await?;
    assert_eq!((rows(&pinned)[0]["QID"].as_i64(), &rows(&pinned)[0]["Send Result"]), (Some(1), &Value::from("SendOk")));
    let no_queue = fails(&n, &["sendMessage", "-t", "OpsPinned", "-p", "x", "-b", &broker_name])?;
    assert!(no_queue.contains("--qid"), "-b needs -i: {no_queue}");

    let by_key = ok(&n, &["queryMsgByKey", "-t", "OpsTopic", "-k", "key-1"])?;
    assert!(by_key.contains("hello-ops") && by_key.contains(&msg_id), "{by_key}");
    let by_uniq = json(&n, &["queryMsgByUniqueKey", "-t", "OpsTopic", "-i", &msg_id])?;
    assert_eq!(by_uniq["Message Body"], "hello-ops", "{by_uniq}");
    assert_eq!(by_uniq["Tags"], "TagA");
    let offset_id = by_uniq["OffsetID"].as_str().unwrap().to_owned();
    let by_id = json(&n, &["queryMsgById", "-i", &offset_id])?;
    assert_eq!((&by_id["MsgId"], &by_id["Keys"]), (&Value::from(msg_id.clone()), &Value::from("key-1")));
    let by_offset =
        json(&n, &["queryMsgByOffset", "-t", "OpsTopic", "-b", "broker-a", "-i", &qid.to_string(), "-o", "0"])?;
    assert_eq!(by_offset["Message Body"], "hello-ops");
    let printed = json(&n, &["printMsg", "-t", "OpsTopic"])?;
    assert_eq!(rows(&printed).len(), 1, "{printed}");
    assert_eq!(rows(&printed)[0]["Body"], "hello-ops");
    let other_queue = (1 - qid).to_string();
    let empty = json(&n, &["printMsgByQueue", "-t", "OpsTopic", "-a", "broker-a", "-i", &other_queue])?;
    assert!(rows(&empty).is_empty(), "{empty}");
    let rt = json(&n, &["checkMsgSendRT", "-t", "OpsTopic", "-a", "3", "-s", "16"])?;
    assert_eq!(rows(&rt).len(), 4, "three sends and the average: {rt}");
    assert!(rows(&rt)[3]["RT (ms)"].as_f64().unwrap() > 0.0, "{rt}");

    // Broker settings: read in RocketMQ's names, changed live, refused by name.
    let cfg = json(&n, &["getBrokerConfig", "-b", &b])?;
    assert_eq!(cfg["brokerName"], "broker-a", "{cfg}");
    assert_eq!(cfg["brokerPermission"], "6");
    ok(&n, &["updateBrokerConfig", "-b", &b, "-k", "brokerPermission", "-v", "4"])?;
    assert_eq!(json(&n, &["getBrokerConfig", "-b", &b])?["brokerPermission"], "4");
    let refused = fails(&n, &["updateBrokerConfig", "-b", &b, "-k", "listenPort", "-v", "1234"])?;
    assert!(refused.contains("listenPort cannot be changed"), "{refused}");
    let refused = fails(&n, &["updateBrokerConfig", "-b", &b, "-k", "brokerPermision", "-v", "6"])?;
    assert!(refused.contains("brokerPermision"), "{refused}");
    // A write-only broker registers its topics write-only.
    eventually(WAIT, "the route to carry the broker's permission", || async {
        let route = ok(&n, &["topicRoute", "-t", "OpsTopic"]).ok()?;
        route.contains("\"perm\": 4").then_some(())
    })
    .await?;
    ok(&n, &["updateBrokerConfig", "-b", &b, "-k", "brokerPermission", "-v", "6"])?;

    // Write permission through the name servers, and a topic's own permission.
    let wiped = json(&n, &["wipeWritePerm", "-b", "broker-a"])?;
    assert!(rows(&wiped)[0]["Topics Made Read-Only"].as_i64().unwrap() >= 1, "{wiped}");
    let route = ok(&n, &["topicRoute", "-t", "OpsTopic"])?;
    assert!(route.contains("\"perm\": 4") || route.contains("\"perm\": 2"), "{route}");
    ok(&n, &["addWritePerm", "-b", "broker-a"])?;
    ok(&n, &["updateTopicPerm", "-t", "OpsTopic", "-p", "2"])?;
    eventually(WAIT, "OpsTopic read-only in its route", || async {
        ok(&n, &["topicRoute", "-t", "OpsTopic"]).ok().filter(|r| r.contains("\"perm\": 2"))
    })
    .await?;
    let refused = fails(&n, &["updateTopicPerm", "-t", "OpsTopic", "-p", "3"])?;
    assert!(refused.contains("perm must be"), "{refused}");

    // Subscription groups.
    ok(&n, &["updateSubGroup", "-b", &b, "-g", "OpsGroup", "-r", "3"])?;
    let groups = json(&n, &["subGroupList", "-b", &b])?;
    let g = rows(&groups).into_iter().find(|r| r["Group"] == "OpsGroup").context("OpsGroup listed")?;
    assert_eq!(g["Retry Max Times"], 3, "{g}");
    ok(&n, &["deleteSubGroup", "-b", &b, "-g", "OpsGroup"])?;
    let groups = json(&n, &["subGroupList", "-b", &b])?;
    assert!(!rows(&groups).iter().any(|r| r["Group"] == "OpsGroup"), "{groups}");

    // The name servers' KV table and settings.
    ok(&n, &["updateKvConfig", "-s", "OPS_NS", "-k", "k1", "-v", "v1"])?;
    assert_eq!(json(&n, &["getKvList", "-s", "OPS_NS"])?["k1"], "v1");
    ok(&n, &["deleteKvConfig", "-s", "OPS_NS", "-k", "k1"])?;
    assert!(json(&n, &["getKvList", "-s", "OPS_NS"])?.get("k1").is_none());
    let ns_cfg = json(&n, &["getNamesrvConfig"])?;
    let setting = |v: &Value, k: &str| rows(v).into_iter().find(|r| r["Key"] == k).map(|r| r["Value"].clone());
    assert_eq!(setting(&ns_cfg, "orderMessageEnable"), Some(Value::from("false")), "{ns_cfg}");
    assert!(setting(&ns_cfg, "listenPort").is_some(), "{ns_cfg}");
    ok(&n, &["updateNamesrvConfig", "-k", "orderMessageEnable", "-v", "true"])?;
    assert_eq!(setting(&json(&n, &["getNamesrvConfig"])?, "orderMessageEnable"), Some(Value::from("true")));
    let refused = fails(&n, &["updateNamesrvConfig", "-k", "listenPort", "-v", "1"])?;
    assert!(refused.contains("listenPort cannot be changed"), "{refused}");

    // Statistics: four messages went in.
    let stats = json(&n, &["statsAll", "-t", "OpsTopic"])?;
    assert_eq!(rows(&stats)[0]["InMsg24Hour"], 4, "{stats}");
    let status = ok(&n, &["brokerStatus", "-b", &b])?;
    for key in ["putTps", "getTransferedTps", "msgPutTotalTodayMorning", "msgPutTotalTodayNow"] {
        assert!(status.contains(key), "{key} missing: {status}");
    }

    // Maintenance.
    for verb in ["cleanExpiredCQ", "deleteExpiredCommitLog", "cleanUnusedTopic"] {
        let out = ok(&n, &[verb, "-b", &b])?;
        assert!(out.contains("done on"), "{verb}: {out}");
    }

    // Deletion, and errors that name what failed.
    ok(&n, &["deleteTopic", "-t", "OpsTopic"])?;
    let v = json(&n, &["topicList"])?;
    assert!(!rows(&v).iter().any(|r| r["Topic"] == "OpsTopic"), "{v}");
    let missing = fails(&n, &["topicStatus", "-t", "NoSuchOpsTopic"])?;
    assert!(missing.contains("NoSuchOpsTopic"), "{missing}");
    let down = fails(&n, &["getBrokerConfig", "-b", "127.0.0.1:1"])?;
    assert!(down.contains("127.0.0.1:1"), "{down}");

    let completion = ok(&n, &["completion", "bash"])?;
    assert!(completion.contains("ferromq__admin") || completion.contains("ferromq-admin"), "{completion}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn consumer_and_producer_verbs_with_running_clients() -> Result<()> {
    let ns = Namesrv::start(&[])?;
    let broker = Broker::start(&ns.addr(), &[])?;
    let n = ns.addr();
    let _broker = broker;
    client_support::create_topic(&n, "OpsConsumed", 2, 1).await?;
    // Heartbeats every second, so the broker knows the producer group soon after the
    // first send has told the client where the broker is.
    let cfg =
        config::ClientConfig { heartbeat_broker_interval: Duration::from_secs(1), ..client_support::client_config(&n) };
    let producer = client::Producer::new("OpsPG", cfg, None, client::ProducerOptions::default());
    for i in 0..3 {
        producer.send(client::Message::new("OpsConsumed", format!("m{i}")).with_keys(vec![format!("k{i}")])).await?;
    }
    let (consumer, seen) = client_support::recording_consumer(&n, "OpsCG", "OpsConsumed", "*").await?;
    eventually(WAIT, "three messages consumed", || async { (seen.lock().unwrap().len() >= 3).then_some(()) }).await?;
    let progress = eventually(WAIT, "OpsCG's offsets committed", || async {
        ok(&n, &["consumerProgress", "-g", "OpsCG", "-t", "OpsConsumed"]).ok().filter(|o| o.contains("Diff Total: 0"))
    })
    .await?;
    assert!(progress.contains("OpsConsumed"), "{progress}");

    let conn = json(&n, &["consumerConnection", "-g", "OpsCG"])?;
    let set = rows(&conn["connectionSet"]);
    assert_eq!(set.len(), 1, "{conn}");
    let client_id = set[0]["clientId"].as_str().unwrap().to_owned();
    assert!(conn["subscriptionTable"].get("OpsConsumed").is_some(), "{conn}");
    assert_eq!(conn["consumeType"], "CONSUME_PASSIVELY");
    let text = ok(&n, &["consumerConnection", "-g", "OpsCG"])?;
    assert!(text.contains(&client_id) && text.contains("Topic: OpsConsumed"), "{text}");

    let status = json(&n, &["consumerStatus", "-g", "OpsCG"])?;
    let info = &status[&client_id];
    assert_eq!(info["properties"]["PROP_CONSUME_TYPE"], "CONSUME_PASSIVELY", "{status}");
    assert_eq!(info["properties"]["PROP_CONSUMEORDERLY"], "false");
    let held = rows(&info["mqTable"]);
    assert_eq!(held.iter().filter(|q| q["queue"].as_str().unwrap().starts_with("OpsConsumed@")).count(), 2, "{status}");
    assert!(rows(&info["subscriptionSet"]).iter().any(|s| s["topic"] == "OpsConsumed"), "{status}");

    let all = json(&n, &["consumerProgress"])?;
    let row = rows(&all).into_iter().find(|r| r["Group"] == "OpsCG").context("OpsCG in the all-groups view")?;
    assert_eq!(row["Diff Total"], 0, "{all}");
    let watched = ok(&n, &["startMonitoring", "--interval", "1", "--rounds", "2"])?;
    assert_eq!(watched.matches("#Group").count(), 2, "two views: {watched}");
    assert!(watched.lines().any(|l| l.starts_with("OpsCG ")), "{watched}");

    let producers = eventually(WAIT, "the producer group's connection", || async {
        json(&n, &["producerConnection", "-g", "OpsPG", "-t", "OpsConsumed"]).ok()
    })
    .await?;
    assert_eq!(rows(&producers).len(), 1, "{producers}");
    assert_eq!(rows(&producers)[0]["Language"], "RUST", "{producers}");
    let missing = fails(&n, &["producerConnection", "-g", "NoSuchPG", "-t", "OpsConsumed"])?;
    assert!(missing.contains("NoSuchPG"), "{missing}");

    ok(&n, &["cloneGroupOffset", "-s", "OpsCG", "-d", "OpsCG2", "-t", "OpsConsumed"])?;
    let cloned = ok(&n, &["consumerProgress", "-g", "OpsCG2", "-t", "OpsConsumed"])?;
    assert!(cloned.contains("Diff Total: 0"), "{cloned}");
    let fresh = ok(&n, &["consumerProgress", "-g", "OpsCG3", "-t", "OpsConsumed"])?;
    assert!(fresh.contains("Diff Total: 3"), "{fresh}");
    let skipped = json(&n, &["skipAccumulatedMessage", "-g", "OpsCG3", "-t", "OpsConsumed"])?;
    let total: i64 = rows(&skipped).iter().map(|r| r["Consumer Offset"].as_i64().unwrap()).sum();
    assert_eq!(total, 3, "{skipped}");
    let after = ok(&n, &["consumerProgress", "-g", "OpsCG3", "-t", "OpsConsumed"])?;
    assert!(after.contains("Diff Total: 0"), "{after}");

    let missing = fails(&n, &["consumerStatus", "-g", "NoSuchCG"])?;
    assert!(missing.contains("NoSuchCG"), "{missing}");

    // A group that gives up at once sends every message to its dead-letter queue;
    // resendDLQ puts one back into the topic it came from.
    let refused = Arc::new(Mutex::new(0usize));
    let count = refused.clone();
    let dlq_consumer = PushConsumer::builder("OpsDLQ")
        .namesrv(&n)
        .subscribe("OpsConsumed", "*")
        .consume_from(ConsumeFromWhere::FirstOffset)
        .with_options(|o| {
            o.rebalance_interval = Duration::from_secs(1);
            o.max_reconsume_times = Some(0);
        })
        .on_message(move |msgs: &[MessageExt], _: &ConsumeContext| {
            *count.lock().unwrap() += msgs.len();
            ConsumeStatus::ReconsumeLater
        })
        .start()
        .await?;
    // A dead-letter topic is write-only, as in RocketMQ: it is read through the index.
    let last = Mutex::new(String::new());
    let dead = eventually(WAIT, "m1 in %DLQ%OpsDLQ", || async {
        let (_, out) =
            client_support::admin_cli(&n, &["queryMsgByKey", "-t", "%DLQ%OpsDLQ", "-k", "k1", "--json"]).ok()?;
        *last.lock().unwrap() = out.clone();
        let v: Value = serde_json::from_str(&out).ok()?;
        (rows(&v).len() == 1).then_some(v)
    })
    .await
    .with_context(|| format!("queryMsgByKey said: {}", last.lock().unwrap()))?;
    assert!(*refused.lock().unwrap() >= 1);
    let printed = fails(&n, &["printMsg", "-t", "%DLQ%OpsDLQ"])?;
    assert!(printed.contains("NO_PERMISSION"), "{printed}");
    let uniq = rows(&dead)[0]["Message ID"].as_str().unwrap().to_owned();
    assert_eq!(rows(&dead)[0]["Body"], "m1", "{dead}");
    let dead_msg = json(&n, &["queryMsgByUniqueKey", "-t", "%DLQ%OpsDLQ", "-i", &uniq])?;
    let offset_id = dead_msg["OffsetID"].as_str().unwrap().to_owned();
    dlq_consumer.shutdown().await;
    let resent = ok(&n, &["resendDLQ", "-i", &offset_id])?;
    assert!(resent.contains("to OpsConsumed"), "{resent}");
    let back = json(&n, &["printMsg", "-t", "OpsConsumed"])?;
    assert_eq!(rows(&back).len(), 4, "{back}");
    assert_eq!(rows(&back).iter().filter(|r| r["Body"] == "m1").count(), 2, "{back}");
    let not_dead = fails(&n, &["resendDLQ", "-i", rows(&back)[0]["Message ID"].as_str().unwrap()])?;
    assert!(not_dead.contains("offset message id"), "a unique id is refused, saying what is needed: {not_dead}");
    consumer.shutdown().await;
    producer.shutdown().await;
    Ok(())
}

/// `plugin list` and `plugin status` show a broker's plugins from its runtime info.
#[tokio::test(flavor = "multi_thread")]
async fn plugin_verbs_show_a_brokers_plugins() -> Result<()> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().context("workspace root")?.to_path_buf();
    let script = root.join("plugins/examples/lua/vip_filter.lua");
    let toml = format!(
        "[plugins]\nwatch = false\n\n[[plugins.plugin]]\nname = \"vip\"\nkind = \"filter\"\nruntime = \"lua\"\n\
         path = {:?}\nconfig = {{ min_level = \"3\" }}\n",
        script.display().to_string()
    );
    let ns = Namesrv::start(&[])?;
    let broker = Broker::start_with_config(&ns.addr(), &toml, &[])?;
    let (n, b) = (ns.addr(), broker.addr());
    let listed = json(&n, &["plugin", "list", "-b", &b])?;
    let vip = rows(&listed).into_iter().find(|r| r["Plugin"] == "vip").context("vip listed")?;
    assert_eq!(
        (&vip["State"], &vip["Kind"], &vip["Runtime"]),
        (&Value::from("loaded"), &Value::from("filter"), &Value::from("lua")),
        "{listed}"
    );
    assert_eq!(vip["Breaker"], "closed", "{listed}");
    let status = ok(&n, &["plugin", "status", "vip", "-b", &b])?;
    assert!(status.lines().count() == 2 && status.contains("vip"), "{status}");
    let missing = fails(&n, &["plugin", "status", "nope", "-b", &b])?;
    assert!(missing.contains("no plugin named nope"), "{missing}");
    Ok(())
}
