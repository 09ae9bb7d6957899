//! Day-two commands with `mqadmin`'s names: topics, subscription groups, broker
//! settings and maintenance, consumers and producers, messages, and the name
//! servers' KV configuration. Each returns an [`Output`] that prints as a table
//! (or key/value lines) by default and as JSON with `--json`.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};

use client::consumer::pull_consumer::PullConsumer;
use client::{Admin, Message, Producer, ProducerOptions};
use common::route::{MessageQueue, TopicRouteData};
use common::subscription::SubscriptionGroupConfig;
use common::MessageExt;
use remoting::header::broker::*;
use remoting::header::namesrv::*;
use remoting::header::CommandHeader;
use remoting::{RemotingCommand, RequestCode};

/// What a command prints.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// Rows under column names; JSON: an array of objects.
    Table { columns: Vec<&'static str>, rows: Vec<Vec<String>> },
    /// `key: value` lines; JSON: an object.
    Pairs(Vec<(String, String)>),
    /// A sentence; JSON: `{"result": ...}`.
    Done(String),
    /// A JSON document; text: pretty-printed.
    Json(Value),
}

impl Output {
    pub fn render(&self, json: bool) -> String {
        if json {
            let v = match self {
                Output::Table { columns, rows } => Value::Array(
                    rows.iter()
                        .map(|r| {
                            Value::Object(columns.iter().zip(r).map(|(c, v)| ((*c).to_owned(), cell(v))).collect())
                        })
                        .collect(),
                ),
                Output::Pairs(pairs) => {
                    Value::Object(pairs.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect())
                }
                Output::Done(s) => json!({ "result": s }),
                Output::Json(v) => v.clone(),
            };
            return serde_json::to_string_pretty(&v).unwrap_or_default();
        }
        match self {
            Output::Table { columns, rows } => {
                let mut widths: Vec<usize> = columns.iter().map(|c| c.len() + 1).collect();
                for r in rows {
                    for (w, v) in widths.iter_mut().zip(r) {
                        *w = (*w).max(v.chars().count());
                    }
                }
                let mut out = String::new();
                let line = |cells: Vec<String>, out: &mut String| {
                    let parts: Vec<String> =
                        cells.iter().zip(&widths).map(|(c, w)| format!("{c:<width$}", width = *w)).collect();
                    out.push_str(parts.join("  ").trim_end());
                    out.push('\n');
                };
                line(columns.iter().map(|c| format!("#{c}")).collect(), &mut out);
                for r in rows {
                    line(r.clone(), &mut out);
                }
                out
            }
            Output::Pairs(pairs) => {
                let w = pairs.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
                pairs.iter().map(|(k, v)| format!("{k:<w$} : {v}\n")).collect()
            }
            Output::Done(s) => format!("{s}\n"),
            Output::Json(v) => serde_json::to_string_pretty(v).unwrap_or_default(),
        }
    }
}

/// A table cell as JSON: integers and decimals as numbers, the rest as strings.
fn cell(v: &str) -> Value {
    if let Ok(n) = v.parse::<i64>() {
        return json!(n);
    }
    if v.contains('.') {
        if let Ok(f) = v.parse::<f64>() {
            if f.is_finite() {
                return json!(f);
            }
        }
    }
    Value::String(v.to_owned())
}

fn table(columns: &[&'static str], rows: Vec<Vec<String>>) -> Output {
    Output::Table { columns: columns.to_vec(), rows }
}

/// Where a broker command goes: one broker (`-b`), or every master of a cluster.
#[derive(Debug, Clone, Default)]
pub struct Target {
    pub broker: Option<String>,
    pub cluster: Option<String>,
}

/// The broker addresses of a target: `-b` as given, else the masters of the
/// cluster (of every cluster when none is named).
pub async fn target_brokers(admin: &Admin, target: &Target) -> Result<Vec<String>> {
    brokers_of(admin, target, false).await
}

/// `-b` as given, else the masters (or, with `slaves`, every broker) of the target's
/// cluster (of every cluster when none is named).
async fn brokers_of(admin: &Admin, target: &Target, slaves: bool) -> Result<Vec<String>> {
    if let Some(b) = &target.broker {
        return Ok(vec![b.clone()]);
    }
    let info = admin.cluster_info().await.context("asking the name server for the cluster")?;
    let cluster = target.cluster.as_deref();
    let addrs = if slaves { info.all_addrs(cluster) } else { info.masters(cluster) };
    if addrs.is_empty() {
        bail!(
            "no {} in {}",
            if slaves { "broker" } else { "master broker" },
            cluster.map_or("any cluster".to_owned(), |c| format!("cluster {c}"))
        );
    }
    Ok(addrs)
}

fn route_masters(route: &TopicRouteData) -> Vec<(String, String)> {
    route.broker_datas.iter().filter_map(|b| b.master_addr().map(|a| (b.broker_name.clone(), a.to_owned()))).collect()
}

// ---------------------------------------------------------------------------------
// Topics

/// `topicList`: every topic the name servers know (with `--cluster`, the topics of
/// that cluster).
pub async fn topic_list(admin: &Admin, cluster: Option<&str>) -> Result<Output> {
    let topics = match cluster {
        Some(c) => {
            let h = GetTopicsByClusterRequestHeader { cluster: c.to_owned() };
            let resp =
                admin.call_namesrv(RemotingCommand::request_with(RequestCode::GET_TOPICS_BY_CLUSTER, &h)).await?;
            let mut list: remoting::body::TopicList = remoting::json::from_slice(&resp.body_bytes())?;
            list.topic_list.sort();
            list.topic_list
        }
        None => admin.topic_list().await?,
    };
    Ok(table(&["Topic"], topics.into_iter().map(|t| vec![t]).collect()))
}

/// `updateTopic`: creates or updates a topic (UPDATE_AND_CREATE_TOPIC with `h`) on
/// the target brokers.
///
/// # Errors
/// No broker in the target, or a broker refused.
pub async fn update_topic(
    admin: &Admin,
    target: &Target,
    h: &remoting::header::broker::CreateTopicRequestHeader,
) -> Result<Output> {
    let brokers = target_brokers(admin, target).await?;
    for addr in &brokers {
        admin.call(addr, RemotingCommand::request_with(RequestCode::UPDATE_AND_CREATE_TOPIC, h)).await?;
    }
    Ok(Output::Done(format!(
        "topic {} created with {} read and {} write queues (perm {}{}) on {}",
        h.topic,
        h.read_queue_nums,
        h.write_queue_nums,
        h.perm,
        if h.order { ", ordered" } else { "" },
        brokers.join(", ")
    )))
}

/// `topicStatus`: min and max offset and last store time of every queue.
pub async fn topic_status(admin: &Admin, topic: &str) -> Result<Output> {
    let queues = admin.topic_stats(topic).await.with_context(|| format!("status of topic {topic}"))?;
    Ok(table(
        &["Broker Name", "QID", "Min Offset", "Max Offset", "Last Updated"],
        queues
            .into_iter()
            .map(|q| {
                vec![
                    q.queue.broker_name,
                    q.queue.queue_id.to_string(),
                    q.min_offset.to_string(),
                    q.max_offset.to_string(),
                    crate::utc_time(q.last_update_timestamp),
                ]
            })
            .collect(),
    ))
}

/// `topicClusterList`: the clusters a topic has queues in.
pub async fn topic_cluster_list(admin: &Admin, topic: &str) -> Result<Output> {
    let route = admin.topic_route(topic).await.with_context(|| format!("no route for topic {topic}"))?;
    let info = admin.cluster_info().await?;
    let names: BTreeSet<&str> = route.broker_datas.iter().map(|b| b.broker_name.as_str()).collect();
    let clusters: BTreeSet<String> = info
        .cluster_addr_table
        .iter()
        .filter(|(_, brokers)| brokers.iter().any(|b| names.contains(b.as_str())))
        .map(|(c, _)| c.clone())
        .collect();
    Ok(table(&["Cluster"], clusters.into_iter().map(|c| vec![c]).collect()))
}

/// `deleteTopic`: removes the topic from every master of the cluster and from every
/// name server.
pub async fn delete_topic(admin: &Admin, topic: &str, cluster: Option<&str>) -> Result<Output> {
    let brokers = target_brokers(admin, &Target { broker: None, cluster: cluster.map(str::to_owned) }).await?;
    admin.delete_topic(topic, &brokers, cluster).await?;
    Ok(Output::Done(format!("delete topic [{topic}] from {} broker(s) and the name servers success", brokers.len())))
}

/// `updateTopicPerm`: sets a topic's permission (2 = read, 4 = write, 6 = both)
/// on every broker that has it, keeping its queues.
pub async fn update_topic_perm(admin: &Admin, topic: &str, perm: i32) -> Result<Output> {
    if ![2, 4, 6].contains(&perm) {
        bail!("perm must be 2 (read), 4 (write) or 6 (read and write), not {perm}");
    }
    let route = admin.topic_route(topic).await.with_context(|| format!("no route for topic {topic}"))?;
    let mut done = 0;
    for qd in &route.queue_datas {
        let Some(addr) =
            route.broker_datas.iter().find(|b| b.broker_name == qd.broker_name).and_then(|b| b.master_addr())
        else {
            continue;
        };
        let h = CreateTopicRequestHeader {
            read_queue_nums: qd.read_queue_nums,
            write_queue_nums: qd.write_queue_nums,
            perm,
            topic_sys_flag: Some(qd.topic_sys_flag),
            ..CreateTopicRequestHeader::new(topic, qd.write_queue_nums)
        };
        admin.call(addr, RemotingCommand::request_with(RequestCode::UPDATE_AND_CREATE_TOPIC, &h)).await?;
        done += 1;
    }
    Ok(Output::Done(format!("topic {topic}: perm set to {perm} on {done} broker(s)")))
}

// ---------------------------------------------------------------------------------
// Subscription groups

/// `updateSubGroup`: creates or updates a subscription group.
pub async fn update_sub_group(admin: &Admin, target: &Target, cfg: &SubscriptionGroupConfig) -> Result<Output> {
    let brokers = target_brokers(admin, target).await?;
    let body = remoting::json::to_vec(cfg)?;
    for addr in &brokers {
        let cmd = RemotingCommand::request(RequestCode::UPDATE_AND_CREATE_SUBSCRIPTIONGROUP).with_body(body.clone());
        admin.call(addr, cmd).await?;
    }
    Ok(Output::Done(format!("subscription group {} updated on {}", cfg.group_name, brokers.join(", "))))
}

/// `deleteSubGroup`: deletes a subscription group (and, with `remove_offset`, its
/// committed offsets).
pub async fn delete_sub_group(admin: &Admin, target: &Target, group: &str, remove_offset: bool) -> Result<Output> {
    let brokers = target_brokers(admin, target).await?;
    let h = DeleteSubscriptionGroupRequestHeader { group_name: group.to_owned(), remove_offset: Some(remove_offset) };
    for addr in &brokers {
        admin.call(addr, RemotingCommand::request_with(RequestCode::DELETE_SUBSCRIPTIONGROUP, &h)).await?;
    }
    Ok(Output::Done(format!("delete subscription group [{group}] from {} success", brokers.join(", "))))
}

/// `subGroupList`: the subscription groups of the target's brokers.
pub async fn sub_group_list(admin: &Admin, target: &Target) -> Result<Output> {
    let mut rows = Vec::new();
    for addr in target_brokers(admin, target).await? {
        for (name, g) in admin.subscription_groups(&addr).await? {
            rows.push(vec![
                addr.clone(),
                name,
                g["consumeEnable"].to_string(),
                g["consumeBroadcastEnable"].to_string(),
                g["retryMaxTimes"].to_string(),
            ]);
        }
    }
    Ok(table(&["Broker", "Group", "Consume Enable", "Broadcast", "Retry Max Times"], rows))
}

// ---------------------------------------------------------------------------------
// Brokers

/// `getBrokerConfig`: every setting of the target's brokers.
pub async fn get_broker_config(admin: &Admin, target: &Target) -> Result<Output> {
    let brokers = target_brokers(admin, target).await?;
    if brokers.len() == 1 {
        return Ok(Output::Pairs(admin.broker_config(&brokers[0]).await?));
    }
    let mut rows = Vec::new();
    for addr in brokers {
        for (k, v) in admin.broker_config(&addr).await? {
            rows.push(vec![addr.clone(), k, v]);
        }
    }
    Ok(table(&["Broker", "Key", "Value"], rows))
}

/// `updateBrokerConfig`: changes one setting on the target's brokers while they run.
pub async fn update_broker_config(admin: &Admin, target: &Target, key: &str, value: &str) -> Result<Output> {
    let brokers = target_brokers(admin, target).await?;
    for addr in &brokers {
        admin.update_broker_config(addr, &[(key.to_owned(), value.to_owned())]).await?;
    }
    Ok(Output::Done(format!("update broker config success, {} {key}={value}", brokers.join(", "))))
}

/// `wipeWritePerm` / `addWritePerm`: takes a broker name's write permission away on
/// every name server (producers stop routing to it), or gives it back.
pub async fn write_perm(admin: &Admin, broker_name: &str, grant: bool) -> Result<Output> {
    let mut rows = Vec::new();
    for ns in admin.instance().namesrv_addrs() {
        let (code, cmd) = if grant {
            let h = AddWritePermOfBrokerRequestHeader { broker_name: broker_name.to_owned() };
            ("addTopicCount", RemotingCommand::request_with(RequestCode::ADD_WRITE_PERM_OF_BROKER, &h))
        } else {
            let h = WipeWritePermOfBrokerRequestHeader { broker_name: broker_name.to_owned() };
            ("wipeTopicCount", RemotingCommand::request_with(RequestCode::WIPE_WRITE_PERM_OF_BROKER, &h))
        };
        let resp = admin.call(&ns, cmd).await?;
        rows.push(vec![ns, resp.ext_fields.get(code).unwrap_or("0").to_owned()]);
    }
    if rows.is_empty() {
        bail!("no name server configured");
    }
    Ok(table(&["Name Server", if grant { "Topics Made Writable" } else { "Topics Made Read-Only" }], rows))
}

/// A broker maintenance request (`cleanExpiredCQ`, `deleteExpiredCommitLog`,
/// `cleanUnusedTopic`) sent to each target broker.
pub async fn maintenance(admin: &Admin, target: &Target, code: RequestCode, what: &str) -> Result<Output> {
    let brokers = target_brokers(admin, target).await?;
    for addr in &brokers {
        admin.call(addr, RemotingCommand::request(code)).await?;
    }
    Ok(Output::Done(format!("{what}: done on {}", brokers.join(", "))))
}

/// `statsAll`: per topic and group, the backlog, in/out TPS of the last minute and
/// messages in/out of the last 24 hours (`-a` for system topics too).
pub async fn stats_all(admin: &Admin, topic: Option<&str>, all: bool) -> Result<Output> {
    let topics = match topic {
        Some(t) => vec![t.to_owned()],
        None => {
            let resp =
                admin.call_namesrv(RemotingCommand::request(RequestCode::GET_ALL_TOPIC_LIST_FROM_NAMESERVER)).await?;
            let list: remoting::body::TopicList = remoting::json::from_slice(&resp.body_bytes())?;
            list.topic_list
                .into_iter()
                .filter(|t| all || (!common::topic::is_system_topic(t) && !t.starts_with('%')))
                .collect()
        }
    };
    let mut rows = Vec::new();
    for t in topics {
        let Ok(route) = admin.topic_route(&t).await else { continue };
        let (mut in_tps, mut in_day) = (0.0, 0i64);
        let mut groups = BTreeSet::new();
        for (_, addr) in route_masters(&route) {
            if let Some((tps, day)) = stats_of(admin, &addr, "TOPIC_PUT_NUMS", &t).await {
                in_tps += tps;
                in_day += day;
            }
            let h = QueryTopicConsumeByWhoRequestHeader { topic: t.clone() };
            if let Ok(v) = admin.call_json::<_, Value>(&addr, RequestCode::QUERY_TOPIC_CONSUME_BY_WHO, &h).await {
                groups.extend(
                    v["groupList"].as_array().into_iter().flatten().filter_map(|g| g.as_str().map(str::to_owned)),
                );
            }
        }
        if groups.is_empty() {
            rows.push(vec![
                t.clone(),
                String::new(),
                String::new(),
                format!("{in_tps:.2}"),
                String::new(),
                in_day.to_string(),
                String::new(),
            ]);
        }
        for g in groups {
            let (mut out_tps, mut out_day) = (0.0, 0i64);
            let mut backlog = 0;
            for (_, addr) in route_masters(&route) {
                if let Some((tps, day)) = stats_of(admin, &addr, "GROUP_GET_NUMS", &format!("{t}@{g}")).await {
                    out_tps += tps;
                    out_day += day;
                }
            }
            if let Ok(p) = admin.consumer_progress(&g, &t).await {
                backlog = p.iter().map(client::admin::QueueProgress::lag).sum();
            }
            rows.push(vec![
                t.clone(),
                g,
                backlog.to_string(),
                format!("{in_tps:.2}"),
                format!("{out_tps:.2}"),
                in_day.to_string(),
                out_day.to_string(),
            ]);
        }
    }
    Ok(table(&["Topic", "Consumer Group", "Accumulation", "InTPS", "OutTPS", "InMsg24Hour", "OutMsg24Hour"], rows))
}

/// One stats item's minute TPS and day sum on a broker (`None` when it has none).
async fn stats_of(admin: &Admin, addr: &str, name: &str, key: &str) -> Option<(f64, i64)> {
    let h = ViewBrokerStatsDataRequestHeader { stats_name: name.to_owned(), stats_key: key.to_owned() };
    let v: Value = admin.call_json(addr, RequestCode::VIEW_BROKER_STATS_DATA, &h).await.ok()?;
    Some((v["statsMinute"]["tps"].as_f64().unwrap_or(0.0), v["statsDay"]["sum"].as_i64().unwrap_or(0)))
}

// ---------------------------------------------------------------------------------
// Consumers and producers

/// A broker of the cluster that knows `group`'s connections: the masters in turn.
async fn consumer_connection_body(admin: &Admin, group: &str) -> Result<(String, Value)> {
    let info = admin.cluster_info().await?;
    let mut last = None;
    for addr in info.masters(None) {
        let h = ConsumerGroupRequestHeader { consumer_group: group.to_owned() };
        match admin.call_json::<_, Value>(&addr, RequestCode::GET_CONSUMER_CONNECTION_LIST, &h).await {
            Ok(v) => return Ok((addr, v)),
            Err(e) => last = Some(e),
        }
    }
    Err(last.map_or_else(|| anyhow!("no broker in the cluster"), |e| anyhow!("consumer group {group}: {e}")))
}

/// `consumerConnection`: the group's clients and subscriptions.
pub async fn consumer_connection(admin: &Admin, group: &str, json: bool) -> Result<Output> {
    let (_, v) = consumer_connection_body(admin, group).await?;
    if json {
        return Ok(Output::Json(v));
    }
    let mut rows: Vec<Vec<String>> = v["connectionSet"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            vec![
                c["clientId"].as_str().unwrap_or("").to_owned(),
                c["clientAddr"].as_str().unwrap_or("").to_owned(),
                c["language"].as_str().unwrap_or("").to_owned(),
                c["version"].to_string(),
            ]
        })
        .collect();
    rows.sort();
    let mut out = Output::Table { columns: vec!["ClientId", "ClientAddr", "Language", "Version"], rows }.render(false);
    out.push_str("\nBelow is subscription:\n");
    for (topic, s) in v["subscriptionTable"].as_object().into_iter().flatten() {
        out.push_str(&format!("Topic: {topic:<40} SubExpression: {}\n", s["subString"].as_str().unwrap_or("*")));
    }
    out.push_str(&format!(
        "\nConsumeType: {}\nMessageModel: {}\nConsumeFromWhere: {}\n",
        v["consumeType"].as_str().unwrap_or(""),
        v["messageModel"].as_str().unwrap_or(""),
        v["consumeFromWhere"].as_str().unwrap_or("")
    ));
    Ok(Output::Done(out.trim_end().to_owned()))
}

/// `producerConnection`: the connections of a producer group on the topic's brokers.
pub async fn producer_connection(admin: &Admin, group: &str, topic: &str) -> Result<Output> {
    let route = admin.topic_route(topic).await.with_context(|| format!("no route for topic {topic}"))?;
    let mut rows = BTreeSet::new();
    let mut last = None;
    for (_, addr) in route_masters(&route) {
        match admin.producer_connections(&addr, group).await {
            Ok(connections) => {
                for c in connections {
                    rows.insert(vec![c.client_id, c.client_addr, c.language, c.version.to_string()]);
                }
            }
            Err(e) => last = Some(e),
        }
    }
    if rows.is_empty() {
        if let Some(e) = last {
            return Err(e.into());
        }
    }
    Ok(table(&["ClientId", "ClientAddr", "Language", "Version"], rows.into_iter().collect()))
}

/// `consumerStatus`: each online client's running info (properties, subscriptions
/// and the queues it holds), asked through the broker.
pub async fn consumer_status(admin: &Admin, group: &str, client_id: Option<&str>, json: bool) -> Result<Output> {
    let (addr, conns) = consumer_connection_body(admin, group).await?;
    let ids: Vec<String> = conns["connectionSet"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["clientId"].as_str().map(str::to_owned))
        .filter(|id| client_id.is_none_or(|want| want == id))
        .collect();
    if ids.is_empty() {
        bail!("no client {} online in consumer group {group}", client_id.unwrap_or(""));
    }
    let mut all = serde_json::Map::new();
    let mut text = String::new();
    for id in ids {
        let body = admin.consumer_running_info(&addr, group, &id).await?;
        let info = running_info_json(&body);
        text.push_str(&format!("#ClientId: {id}\n"));
        for (k, v) in info["properties"].as_object().into_iter().flatten() {
            text.push_str(&format!("  {k:<32} : {}\n", v.as_str().unwrap_or(&v.to_string())));
        }
        for q in info["mqTable"].as_array().into_iter().flatten() {
            text.push_str(&format!(
                "  {:<48} commitOffset={} cached={} locked={}\n",
                format!("{}", q["queue"]),
                q["commitOffset"],
                q["cachedMsgCount"],
                q["locked"]
            ));
        }
        all.insert(id, info);
    }
    Ok(if json { Output::Json(Value::Object(all)) } else { Output::Done(text.trim_end().to_owned()) })
}

/// A `ConsumerRunningInfo` body as plain JSON: its `MessageQueue`-keyed `mqTable`
/// becomes an array of `{queue, ...}` objects.
pub fn running_info_json(body: &str) -> Value {
    let table = remoting::json::object_field(body, "mqTable").unwrap_or("{}");
    // The object keys make the body invalid JSON; the rest parses once it is gone.
    let rest = body.replacen(table, "{}", 1);
    let mut v: Value = remoting::json::from_slice(rest.as_bytes()).unwrap_or(Value::Null);
    let queues: Vec<Value> = remoting::json::mq_keyed_entries(table)
        .into_iter()
        .map(|(mq, info)| {
            let mut o: Value = serde_json::from_str(info).unwrap_or_else(|_| json!({}));
            o["queue"] = json!(format!("{}@{}@{}", mq.topic, mq.broker_name, mq.queue_id));
            o
        })
        .collect();
    if let Some(obj) = v.as_object_mut() {
        obj.insert("mqTable".into(), Value::Array(queues));
    } else {
        v = json!({ "mqTable": queues });
    }
    v
}

/// `cloneGroupOffset`: copies the source group's offsets to the destination group
/// on the topic's brokers.
pub async fn clone_group_offset(admin: &Admin, src: &str, dest: &str, topic: &str, offline: bool) -> Result<Output> {
    let route = admin.topic_route(topic).await.with_context(|| format!("no route for topic {topic}"))?;
    for (_, addr) in route_masters(&route) {
        let h = CloneGroupOffsetRequestHeader {
            src_group: src.to_owned(),
            dest_group: dest.to_owned(),
            topic: Some(topic.to_owned()),
            offline,
        };
        admin.call(&addr, RemotingCommand::request_with(RequestCode::CLONE_GROUP_OFFSET, &h)).await?;
    }
    Ok(Output::Done(format!("clone group offset success. srcGroup[{src}], destGroup=[{dest}], topic[{topic}]")))
}

/// `skipAccumulatedMessage`: moves the group's offsets to the end of every queue.
pub async fn skip_accumulated(admin: &Admin, group: &str, topic: &str) -> Result<Output> {
    let offsets = admin.reset_offset_by_timestamp(group, topic, -1).await?;
    Ok(offset_table(&offsets))
}

pub fn offset_table(offsets: &BTreeMap<MessageQueue, i64>) -> Output {
    table(
        &["Broker Name", "Queue Id", "Consumer Offset"],
        offsets.iter().map(|(mq, o)| vec![mq.broker_name.clone(), mq.queue_id.to_string(), o.to_string()]).collect(),
    )
}

/// `consumerProgress` without a group: every group of every master, with its
/// backlog and consume TPS (GET_BROKER_CONSUME_STATS).
pub async fn all_groups_progress(admin: &Admin) -> Result<Output> {
    let info = admin.cluster_info().await?;
    let mut per_group: BTreeMap<String, (i64, f64)> = BTreeMap::new();
    for addr in info.masters(None) {
        let h = GetConsumeStatsInBrokerHeader { is_order: false };
        let resp = admin.call(&addr, RemotingCommand::request_with(RequestCode::GET_BROKER_CONSUME_STATS, &h)).await?;
        let text = String::from_utf8_lossy(&resp.body_bytes()).into_owned();
        for (group, stats) in broker_consume_stats(&text) {
            let e = per_group.entry(group).or_default();
            for (diff, tps) in stats {
                e.0 += diff;
                e.1 += tps;
            }
        }
    }
    Ok(table(
        &["Group", "Diff Total", "Consume TPS"],
        per_group.into_iter().map(|(g, (d, t))| vec![g, d.to_string(), format!("{t:.2}")]).collect(),
    ))
}

/// GET_BROKER_CONSUME_STATS's groups: per group, per topic (diff, consume TPS).
pub fn broker_consume_stats(body: &str) -> Vec<(String, Vec<(i64, f64)>)> {
    let mut out = Vec::new();
    let Some(start) = body.find("\"consumeStatsList\":[") else { return out };
    // Each list element is `{"group":[{consumeTps, offsetTable}, ...]}`; the offset
    // tables have object keys, so each stats object is read with the fastjson helpers.
    let mut rest = &body[start + "\"consumeStatsList\":[".len()..];
    while let Some(open) = rest.find("{\"") {
        let Some(key_end) = rest[open + 2..].find('"') else { break };
        let group = rest[open + 2..open + 2 + key_end].to_owned();
        let after = &rest[open + 2 + key_end..];
        let Some(list_start) = after.find('[') else { break };
        let mut stats = Vec::new();
        let mut cursor = &after[list_start + 1..];
        loop {
            let trimmed = cursor.trim_start_matches([',', ' ']);
            if !trimmed.starts_with('{') {
                cursor = trimmed;
                break;
            }
            let text = trimmed;
            let diff: i64 = remoting::json::mq_keyed_values::<Value>(text.as_bytes(), "offsetTable")
                .unwrap_or_default()
                .iter()
                .map(|(_, o)| {
                    (o["brokerOffset"].as_i64().unwrap_or(0) - o["consumerOffset"].as_i64().unwrap_or(0)).max(0)
                })
                .sum();
            let tps = text
                .find("\"consumeTps\":")
                .and_then(|i| {
                    let n = &text[i + 13..];
                    let end = n.find([',', '}']).unwrap_or(n.len());
                    n[..end].trim().parse::<f64>().ok()
                })
                .unwrap_or(0.0);
            stats.push((diff, tps));
            // Skip past this stats object.
            let Some(end) = remoting::json::closing_brace(text.as_bytes(), 0) else { break };
            cursor = &text[end + 1..];
        }
        out.push((group, stats));
        rest = cursor;
        if !rest.trim_start_matches([']', '}', ' ']).starts_with(",{") && !rest.contains("{\"") {
            break;
        }
    }
    out
}

// ---------------------------------------------------------------------------------
// Messages

/// One message as key/value lines (`printMsg`-style), body as text.
pub fn message_pairs(m: &MessageExt) -> Vec<(String, String)> {
    let mut p = vec![
        ("OffsetID".to_owned(), common::msgid::offset_msg_id(m.store_host, m.commit_log_offset)),
        ("MsgId".to_owned(), m.msg_id().to_owned()),
        ("Topic".to_owned(), m.topic.clone()),
        ("Tags".to_owned(), m.tags().unwrap_or("").to_owned()),
        ("Keys".to_owned(), m.properties.get(common::properties::keys::KEYS).unwrap_or("").to_owned()),
        ("Queue ID".to_owned(), m.queue_id.to_string()),
        ("Queue Offset".to_owned(), m.queue_offset.to_string()),
        ("CommitLog Offset".to_owned(), m.commit_log_offset.to_string()),
        ("Reconsume Times".to_owned(), m.reconsume_times.to_string()),
        ("Born Timestamp".to_owned(), crate::utc_time(m.born_timestamp)),
        ("Store Timestamp".to_owned(), crate::utc_time(m.store_timestamp)),
        ("Born Host".to_owned(), m.born_host.to_string()),
        ("Store Host".to_owned(), m.store_host.to_string()),
        ("System Flag".to_owned(), m.sys_flag.to_string()),
        ("Properties".to_owned(), m.properties.encode().replace(['\u{1}', '\u{2}'], " ")),
    ];
    p.push(("Message Body".to_owned(), String::from_utf8_lossy(&m.body).into_owned()));
    p
}

/// `queryMsgById`: the message with this offset message id (or unique id, looked up
/// in `topic`).
pub async fn query_msg_by_id(admin: &Admin, msg_id: &str, topic: Option<&str>) -> Result<Output> {
    if common::msgid::decode_offset_msg_id(msg_id).is_ok() {
        let m = admin.view_message(msg_id).await.with_context(|| format!("message {msg_id}"))?;
        return Ok(Output::Pairs(message_pairs(&m)));
    }
    let topic = topic
        .ok_or_else(|| anyhow!("{msg_id} is not an offset message id; give the topic (-t) to look up a unique id"))?;
    query_msg_by_unique_key(admin, topic, msg_id).await
}

/// `queryMsgByUniqueKey`: the message(s) with this unique id (UNIQ_KEY) in a topic.
pub async fn query_msg_by_unique_key(admin: &Admin, topic: &str, key: &str) -> Result<Output> {
    let found = admin.query_message(topic, key, 32, 0, i64::MAX).await?;
    let Some(m) = found.iter().find(|m| m.properties.uniq_key() == Some(key)) else {
        bail!("no message with unique key {key} in topic {topic}");
    };
    Ok(Output::Pairs(message_pairs(m)))
}

/// `queryMsgByKey`: messages of a topic carrying a key.
pub async fn query_msg_by_key(admin: &Admin, topic: &str, key: &str, begin: i64, end: i64) -> Result<Output> {
    let found = admin.query_message(topic, key, 64, begin, end).await?;
    if found.is_empty() {
        bail!("no message with key {key} in topic {topic}");
    }
    Ok(table(
        &["Message ID", "QID", "Offset", "Store Time", "Tags", "Body"],
        found
            .iter()
            .map(|m| {
                vec![
                    m.msg_id().to_owned(),
                    m.queue_id.to_string(),
                    m.queue_offset.to_string(),
                    crate::utc_time(m.store_timestamp),
                    m.tags().unwrap_or("").to_owned(),
                    String::from_utf8_lossy(&m.body).chars().take(64).collect(),
                ]
            })
            .collect(),
    ))
}

/// `queryMsgByOffset`: the message at one queue offset of a broker's queue.
pub async fn query_msg_by_offset(
    namesrv: Option<Vec<String>>,
    cfg: config::ClientConfig,
    mq: MessageQueue,
    offset: i64,
) -> Result<Output> {
    let consumer = PullConsumer::new("ferromq-admin", cfg, namesrv);
    let msgs = pull_range(&consumer, &mq, offset, 1).await;
    consumer.shutdown().await;
    let msgs = msgs?;
    let m = msgs.first().ok_or_else(|| anyhow!("no message at offset {offset} of {mq}"))?;
    Ok(Output::Pairs(message_pairs(m)))
}

/// Up to `max` messages of one queue from `offset` (PULL_MESSAGE, no commit).
async fn pull_range(consumer: &PullConsumer, mq: &MessageQueue, offset: i64, max: usize) -> Result<Vec<MessageExt>> {
    use client::consumer::pull_api::PullStatus;
    let mut out = Vec::new();
    let mut at = offset;
    while out.len() < max {
        let r = consumer.pull(mq, "*", at, (max - out.len()).min(32) as i32).await?;
        if r.status != PullStatus::Found {
            break;
        }
        out.extend(r.messages);
        at = r.next_begin_offset;
    }
    out.truncate(max);
    Ok(out)
}

/// `printMsgByQueue` / `printMsg`: messages of one queue (or every queue of the
/// topic) stored in `[begin, end]`.
pub async fn print_msgs(
    admin: &Admin,
    namesrv: Option<Vec<String>>,
    cfg: config::ClientConfig,
    topic: &str,
    queue: Option<(String, i32)>,
    (begin, end): (i64, i64),
    max: usize,
) -> Result<Output> {
    let route = admin.topic_route(topic).await.with_context(|| format!("no route for topic {topic}"))?;
    let mut queues = Vec::new();
    for qd in &route.queue_datas {
        for q in 0..qd.read_queue_nums {
            queues.push(MessageQueue::new(topic, qd.broker_name.clone(), q));
        }
    }
    if let Some((b, q)) = &queue {
        queues.retain(|mq| &mq.broker_name == b && mq.queue_id == *q);
        if queues.is_empty() {
            bail!("topic {topic} has no queue {q} on broker {b}");
        }
    }
    let consumer = PullConsumer::new("ferromq-admin", cfg, namesrv);
    let rows = async {
        let mut rows = Vec::new();
        for mq in queues {
            let from = consumer.offset_for_timestamp(&mq, begin).await?;
            for m in pull_range(&consumer, &mq, from, max.saturating_sub(rows.len())).await? {
                if m.store_timestamp > end {
                    break;
                }
                rows.push(vec![
                    m.msg_id().to_owned(),
                    mq.broker_name.clone(),
                    m.queue_id.to_string(),
                    m.queue_offset.to_string(),
                    crate::utc_time(m.store_timestamp),
                    m.tags().unwrap_or("").to_owned(),
                    m.properties.get(common::properties::keys::KEYS).unwrap_or("").to_owned(),
                    String::from_utf8_lossy(&m.body).into_owned(),
                ]);
            }
            if rows.len() >= max {
                break;
            }
        }
        anyhow::Ok(rows)
    }
    .await;
    consumer.shutdown().await;
    Ok(table(&["Message ID", "Broker", "QID", "Offset", "Store Time", "Tags", "Keys", "Body"], rows?))
}

/// `sendMessage`: one message with tags and keys (to one queue with `-b`/`-i`).
pub async fn send_message(
    namesrv: Option<Vec<String>>,
    cfg: config::ClientConfig,
    topic: &str,
    body: &str,
    tags: Option<&str>,
    keys: Option<&str>,
    to: Option<(String, i32)>,
) -> Result<Output> {
    let producer = Producer::new("ferromq-admin", cfg, namesrv, ProducerOptions::default());
    let mut msg = Message::new(topic, bytes::Bytes::copy_from_slice(body.as_bytes()));
    if let Some(t) = tags {
        msg = msg.with_tags(t);
    }
    if let Some(k) = keys {
        msg = msg.with_keys(k.split(',').map(str::trim).collect::<Vec<_>>());
    }
    let r = match &to {
        Some((broker_name, queue_id)) => {
            let mq = MessageQueue { topic: topic.to_owned(), broker_name: broker_name.clone(), queue_id: *queue_id };
            producer.send_to_queue(msg, &mq).await
        }
        None => producer.send(msg).await,
    };
    producer.shutdown().await;
    let r = r.with_context(|| match &to {
        Some((b, q)) => format!("sending to {topic} on {b} queue {q}"),
        None => format!("sending to {topic}"),
    })?;
    Ok(table(
        &["Broker Name", "QID", "Send Result", "MsgId", "Queue Offset"],
        vec![vec![
            r.message_queue.broker_name.clone(),
            r.message_queue.queue_id.to_string(),
            format!("{:?}", r.status),
            r.msg_id.clone(),
            r.queue_offset.to_string(),
        ]],
    ))
}

/// `checkMsgSendRT`: sends `amount` messages of `size` bytes one after another
/// and reports each round trip and the average.
pub async fn check_msg_send_rt(
    namesrv: Option<Vec<String>>,
    cfg: config::ClientConfig,
    topic: &str,
    amount: usize,
    size: usize,
) -> Result<Output> {
    let producer = Producer::new("ferromq-admin", cfg, namesrv, ProducerOptions::default());
    let body = bytes::Bytes::from(vec![b'a'; size]);
    let mut rows = Vec::new();
    let mut total = 0.0;
    let mut failure = None;
    for _ in 0..amount {
        let started = std::time::Instant::now();
        match producer.send(Message::new(topic, body.clone())).await {
            Ok(r) => {
                let ms = started.elapsed().as_secs_f64() * 1000.0;
                total += ms;
                rows.push(vec![
                    r.message_queue.broker_name.clone(),
                    r.message_queue.queue_id.to_string(),
                    format!("{ms:.3}"),
                ]);
            }
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    producer.shutdown().await;
    if let Some(e) = failure {
        return Err(anyhow!("sending to {topic}: {e}"));
    }
    let avg = if rows.is_empty() { 0.0 } else { total / rows.len() as f64 };
    rows.push(vec!["Avg RT".to_owned(), String::new(), format!("{avg:.3}")]);
    Ok(table(&["Broker Name", "QID", "RT (ms)"], rows))
}

/// `resendDLQ`: sends a copy of a dead-letter message (by its offset message id)
/// back to the topic it first failed in, for the group to consume again.
pub async fn resend_dlq(
    admin: &Admin,
    namesrv: Option<Vec<String>>,
    cfg: config::ClientConfig,
    msg_id: &str,
) -> Result<Output> {
    let m = admin.view_message(msg_id).await.with_context(|| {
        format!("message {msg_id} (an offset message id: the OffsetID queryMsgByUniqueKey and queryMsgById print)")
    })?;
    let copy = client::admin::dead_letter_copy(&m).with_context(|| format!("message {msg_id}"))?;
    let origin = copy.topic.clone();
    let producer = Producer::new("ferromq-admin", cfg, namesrv, ProducerOptions::default());
    let r = producer.send(copy).await;
    producer.shutdown().await;
    let r = r.with_context(|| format!("re-sending to {origin}"))?;
    Ok(Output::Done(format!("resent {msg_id} from {} to {origin}: {:?} msgId={}", m.topic, r.status, r.msg_id)))
}

// ---------------------------------------------------------------------------------
// Name servers

/// `updateKvConfig` on every name server.
pub async fn update_kv_config(admin: &Admin, namespace: &str, key: &str, value: &str) -> Result<Output> {
    let h = PutKvConfigRequestHeader { namespace: namespace.to_owned(), key: key.to_owned(), value: value.to_owned() };
    let done = admin.call_each_namesrv(RemotingCommand::request_with(RequestCode::PUT_KV_CONFIG, &h)).await?;
    Ok(Output::Done(format!("update kv config in namespace [{namespace}] success on {}", done.join(", "))))
}

/// `deleteKvConfig` on every name server.
pub async fn delete_kv_config(admin: &Admin, namespace: &str, key: &str) -> Result<Output> {
    let h = DeleteKvConfigRequestHeader { namespace: namespace.to_owned(), key: key.to_owned() };
    let done = admin.call_each_namesrv(RemotingCommand::request_with(RequestCode::DELETE_KV_CONFIG, &h)).await?;
    Ok(Output::Done(format!("delete kv config in namespace [{namespace}] success on {}", done.join(", "))))
}

/// `getKvList`: a namespace's KV pairs.
pub async fn kv_list(admin: &Admin, namespace: &str) -> Result<Output> {
    let h = GetKvListByNamespaceRequestHeader { namespace: namespace.to_owned() };
    let resp = admin.call_namesrv(RemotingCommand::request_with(RequestCode::GET_KVLIST_BY_NAMESPACE, &h)).await;
    let table: remoting::body::KvTable = match resp {
        Ok(r) => remoting::json::from_slice(&r.body_bytes())?,
        Err(client::Error::Broker { code, .. }) if code == common::ResponseCode::QUERY_NOT_FOUND => Default::default(),
        Err(e) => return Err(e.into()),
    };
    Ok(Output::Pairs(table.table.into_iter().collect()))
}

/// `getNamesrvConfig`: every name server's settings.
pub async fn get_namesrv_config(admin: &Admin) -> Result<Output> {
    let mut rows = Vec::new();
    for ns in admin.instance().namesrv_addrs() {
        for (k, v) in admin.namesrv_config(&ns).await? {
            rows.push(vec![ns.clone(), k, v]);
        }
    }
    Ok(table(&["Name Server", "Key", "Value"], rows))
}

/// `updateNamesrvConfig`: changes a setting on every name server.
pub async fn update_namesrv_config(admin: &Admin, key: &str, value: &str) -> Result<Output> {
    let done = admin.update_namesrv_config(&[(key.to_owned(), value.to_owned())]).await?;
    Ok(Output::Done(format!("update name server config success! {} {key}={value}", done.join(", "))))
}

// ---------------------------------------------------------------------------------
// Plugins

/// The brokers a plugin change goes to: one (`-b`), or every broker of a cluster —
/// masters and slaves, which filter the pulls they serve too (every cluster with
/// neither).
pub async fn plugin_targets(admin: &Admin, target: &Target) -> Result<Vec<String>> {
    brokers_of(admin, target, true).await
}

/// `plugin list` / `plugin status`: the plugins of the target's brokers
/// (FERROMQ_PLUGIN_LIST), one row per broker and plugin.
pub async fn plugin_status(admin: &Admin, target: &Target, name: Option<&str>) -> Result<Output> {
    let mut rows = Vec::new();
    for addr in plugin_targets(admin, target).await? {
        for p in admin.plugin_list(&addr).await? {
            if name.is_some_and(|n| n != p.name) {
                continue;
            }
            let bindings: Vec<String> = p
                .bindings
                .iter()
                .map(|b| match &b.group {
                    Some(g) => format!("{}@{g}", b.topic),
                    None => b.topic.clone(),
                })
                .collect();
            rows.push(vec![
                addr.clone(),
                p.name,
                p.state,
                p.source,
                p.kind,
                p.runtime,
                p.version,
                p.sha256.chars().take(12).collect(),
                p.generation.to_string(),
                bindings.join(" "),
                p.breaker,
                p.calls.to_string(),
                p.errors.to_string(),
                p.timeouts.to_string(),
                p.p50_micros.to_string(),
                p.p99_micros.to_string(),
                p.last_reload_error.or(p.last_error).unwrap_or_default(),
            ]);
        }
    }
    if let (Some(n), true) = (name, rows.is_empty()) {
        bail!("no plugin named {n} on the target brokers");
    }
    Ok(table(
        &[
            "Broker",
            "Plugin",
            "State",
            "Source",
            "Kind",
            "Runtime",
            "Version",
            "SHA-256",
            "Generation",
            "Bindings",
            "Breaker",
            "Calls",
            "Errors",
            "Timeouts",
            "p50 us",
            "p99 us",
            "Last Error",
        ],
        rows,
    ))
}

/// `plugin logs`: prints what plugin `name` logged on each target broker, oldest
/// first (`BROKER TIME LEVEL MESSAGE`, or one JSON object per line with `--json`);
/// with `follow`, keeps polling every half second for new lines.
pub async fn plugin_logs(admin: &Admin, target: &Target, name: &str, follow: bool, json: bool) -> Result<()> {
    let brokers = plugin_targets(admin, target).await?;
    let mut since: BTreeMap<String, u64> = BTreeMap::new();
    loop {
        for addr in &brokers {
            let from = since.get(addr).copied().unwrap_or(0);
            let lines = match admin.plugin_logs(addr, name, from).await {
                Ok(lines) => lines,
                // Following: a broker that restarts or is briefly away is asked again.
                Err(e) if follow => {
                    eprintln!("{addr}: {e}");
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            for l in lines {
                if json {
                    println!(
                        "{}",
                        json!({"broker": addr, "seq": l.seq, "timeMillis": l.time_millis, "level": l.level, "message": l.message})
                    );
                } else {
                    println!(
                        "{addr} {} {:<5} {}",
                        crate::utc_time(l.time_millis as i64),
                        l.level.to_uppercase(),
                        l.message
                    );
                }
                since.insert(addr.clone(), l.seq);
            }
        }
        if !follow {
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
}

/// What `plugin deploy` sends.
pub struct Deploy {
    pub file: std::path::PathBuf,
    pub name: String,
    pub kind: String,
    pub config: BTreeMap<String, String>,
    pub failure_policy: Option<String>,
}

impl Deploy {
    /// From the command line: an artifact with `--name` (and `--kind`), or a project
    /// directory; `--set key=value` settings over the project's.
    ///
    /// # Errors
    /// An artifact without a name, a project that cannot be read, a setting without `=`.
    pub fn from_args(
        file: &std::path::Path,
        name: Option<&str>,
        kind: Option<&str>,
        config: &[String],
        failure_policy: Option<&str>,
    ) -> Result<Deploy> {
        let mut d = if file.is_dir() {
            let (project, artifact) = crate::plugin_dev::deploy_source(file)?;
            Deploy {
                file: artifact,
                name: name.map_or(project.name, str::to_owned),
                kind: kind.map_or_else(|| project.kind.to_string(), str::to_owned),
                config: project.config,
                failure_policy: None,
            }
        } else {
            Deploy {
                file: file.to_owned(),
                name: name.context("--name is required to deploy an artifact")?.to_owned(),
                kind: kind.unwrap_or("filter").to_owned(),
                config: BTreeMap::new(),
                failure_policy: None,
            }
        };
        for kv in config {
            let (k, v) = kv.split_once('=').with_context(|| format!("--set {kv}: expected key=value"))?;
            d.config.insert(k.to_owned(), v.to_owned());
        }
        d.failure_policy = failure_policy.map(str::to_owned);
        Ok(d)
    }
}

/// `plugin deploy`: uploads a `.wasm` module or `.lua` script to every target
/// broker, each of which checks it (ABI handshake, compile, init) before serving
/// it. One row per broker; fails if any broker refused.
pub async fn plugin_deploy(admin: &Admin, target: &Target, d: &Deploy) -> Result<Output> {
    let runtime = match d.file.extension().and_then(|e| e.to_str()) {
        Some("wasm") => "wasm",
        Some("lua") => "lua",
        _ => bail!("{}: a plugin to deploy is a .wasm module or a .lua script", d.file.display()),
    };
    let artifact = std::fs::read(&d.file).with_context(|| format!("reading {}", d.file.display()))?;
    // One remoting frame carries it, headers included.
    let limit = remoting::codec::MAX_FRAME_LEN - 64 * 1024;
    if artifact.len() > limit {
        bail!(
            "{} is {} bytes; a deploy carries at most {limit}: install a larger plugin on each broker's disk and \
             declare it in broker.toml",
            d.file.display(),
            artifact.len()
        );
    }
    let header = remoting::header::plugin::DeployPluginRequestHeader {
        name: d.name.clone(),
        kind: d.kind.clone(),
        runtime: runtime.to_owned(),
        failure_policy: d.failure_policy.clone(),
        config: (!d.config.is_empty()).then(|| serde_json::to_string(&d.config)).transpose()?,
    };
    let mut rows = Vec::new();
    let mut refused = 0;
    for addr in plugin_targets(admin, target).await? {
        match admin.plugin_deploy(&addr, &header, artifact.clone()).await {
            Ok((sha, generation)) => {
                rows.push(vec![addr, d.name.to_owned(), sha, generation.to_string(), "deployed".into()])
            }
            Err(e) => {
                refused += 1;
                rows.push(vec![addr, d.name.clone(), String::new(), String::new(), format!("refused: {e}")]);
            }
        }
    }
    changed(refused, table(&["Broker", "Plugin", "SHA-256", "Generation", "Result"], rows))
}

/// One plugin change on every target broker (bind, unbind, reload, rollback,
/// remove): one row per broker; fails if any broker refused.
pub async fn plugin_change(
    admin: &Admin,
    target: &Target,
    code: RequestCode,
    header: &impl CommandHeader,
    done: &str,
) -> Result<Output> {
    let mut rows = Vec::new();
    let mut refused = 0;
    for addr in plugin_targets(admin, target).await? {
        let cmd = RemotingCommand::request_with(code, header);
        match admin.call_with_timeout(&addr, cmd, std::time::Duration::from_secs(60)).await {
            Ok(resp) => {
                let version = resp
                    .decode_header::<remoting::header::plugin::DeployPluginResponseHeader>()
                    .map(|h| format!(" (generation {}, sha256 {})", h.generation, h.sha256))
                    .unwrap_or_default();
                rows.push(vec![addr, format!("{done}{version}")]);
            }
            Err(e) => {
                refused += 1;
                rows.push(vec![addr, format!("refused: {e}")]);
            }
        }
    }
    changed(refused, table(&["Broker", "Result"], rows))
}

/// The table, or an error carrying it when some broker refused.
fn changed(refused: usize, out: Output) -> Result<Output> {
    if refused == 0 {
        return Ok(out);
    }
    let shown = out.render(false);
    bail!("{shown}\n{refused} broker(s) refused the change")
}
