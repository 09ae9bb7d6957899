//! Administration requests tools and slaves use (`remoting-protocol.md` §5.16).
//!
//! Bodies keyed by `MessageQueue` (topic stats, consume stats) are written the way
//! fastjson writes them — with JSON objects as map keys — because that is what the
//! Java admin tools parse; see [`mq_keyed`].

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

use serde::Serialize;

use common::route::MessageQueue;
use common::subscription::{SubscriptionData, SubscriptionGroupConfig};
use common::topic::{self, TopicConfig, TopicFilterType};
use common::ResponseCode;
use remoting::body::KvTable;
use remoting::header::broker::*;
use remoting::{Channel, RemotingCommand};

use crate::context::BrokerContext;
use crate::processor::{json_response, try_header};
use crate::stats::BrokerStats;

pub async fn update_and_create_topic(
    ctx: &Arc<BrokerContext>,
    _: &Channel,
    req: RemotingCommand,
) -> Option<RemotingCommand> {
    let h: CreateTopicRequestHeader = try_header!(&req);
    if let Err(e) = topic::validate_topic(&h.topic) {
        return Some(RemotingCommand::error(
            ResponseCode::SYSTEM_ERROR,
            format!("the topic[{}] is invalid: {e}", h.topic),
        ));
    }
    if h.topic == ctx.config.broker_cluster_name || topic::is_not_allowed_send(&h.topic) {
        return Some(RemotingCommand::error(
            ResponseCode::SYSTEM_ERROR,
            format!("The topic[{}] is conflict with system reserved words.", h.topic),
        ));
    }
    if h.read_queue_nums <= 0 || h.write_queue_nums <= 0 || h.read_queue_nums > 1024 || h.write_queue_nums > 1024 {
        return Some(RemotingCommand::error(
            ResponseCode::SYSTEM_ERROR,
            format!("queue numbers must be in 1..=1024 (read {}, write {})", h.read_queue_nums, h.write_queue_nums),
        ));
    }
    let tc = TopicConfig {
        topic_name: h.topic,
        read_queue_nums: h.read_queue_nums,
        write_queue_nums: h.write_queue_nums,
        perm: h.perm,
        topic_filter_type: TopicFilterType::from_name(&h.topic_filter_type).unwrap_or_default(),
        topic_sys_flag: h.topic_sys_flag.unwrap_or(0),
        order: h.order,
        ..TopicConfig::default()
    };
    // An ordered topic that grows gets its drain barrier before any client can
    // see the new queues (`order_expansion`).
    let old = ctx.topics.get(&tc.topic_name);
    let max_offset = |q: i32| ctx.store.max_offset_in_queue(&tc.topic_name, q);
    if let Err(e) = ctx.order_expansions.on_topic_update(old.as_ref(), &tc, max_offset, common::time::now_ms()) {
        return Some(RemotingCommand::error(
            ResponseCode::SYSTEM_ERROR,
            format!("could not record the ordered-topic expansion: {e}"),
        ));
    }
    ctx.topics.upsert(tc);
    Some(RemotingCommand::success())
}

pub async fn delete_topic(ctx: &Arc<BrokerContext>, _: &Channel, req: RemotingCommand) -> Option<RemotingCommand> {
    let h: TopicRequestHeader = try_header!(&req);
    if topic::is_system_topic(&h.topic) && !topic::is_retry_topic(&h.topic) && !topic::is_dlq_topic(&h.topic) {
        return Some(RemotingCommand::error(
            ResponseCode::SYSTEM_ERROR,
            format!("The topic[{}] is a system topic and cannot be deleted.", h.topic),
        ));
    }
    ctx.topics.delete(&h.topic);
    ctx.offsets.remove_topic(&h.topic);
    if let Err(e) = ctx.order_expansions.delete_topic(&h.topic) {
        tracing::error!(topic = %h.topic, error = %e, "could not forget the ordered-topic expansions");
    }
    ctx.store.delete_topic(&h.topic);
    Some(RemotingCommand::success())
}

pub async fn get_all_topic_config(
    ctx: &Arc<BrokerContext>,
    _: &Channel,
    _: RemotingCommand,
) -> Option<RemotingCommand> {
    Some(json_response(&ctx.topics.snapshot()))
}

pub async fn update_and_create_subscription_group(
    ctx: &Arc<BrokerContext>,
    _: &Channel,
    req: RemotingCommand,
) -> Option<RemotingCommand> {
    let cfg: SubscriptionGroupConfig = match remoting::json::from_slice(&req.body_bytes()) {
        Ok(c) => c,
        Err(e) => return Some(RemotingCommand::error(ResponseCode::SYSTEM_ERROR, format!("invalid body: {e}"))),
    };
    if cfg.group_name.trim().is_empty() {
        return Some(RemotingCommand::error(ResponseCode::SYSTEM_ERROR, "the group name is blank"));
    }
    ctx.groups.upsert(cfg);
    Some(RemotingCommand::success())
}

pub async fn get_all_subscription_group(
    ctx: &Arc<BrokerContext>,
    _: &Channel,
    _: RemotingCommand,
) -> Option<RemotingCommand> {
    Some(json_response(&ctx.groups.snapshot()))
}

pub async fn delete_subscription_group(
    ctx: &Arc<BrokerContext>,
    _: &Channel,
    req: RemotingCommand,
) -> Option<RemotingCommand> {
    let h: DeleteSubscriptionGroupRequestHeader = try_header!(&req);
    ctx.groups.delete(&h.group_name);
    if h.remove_offset.unwrap_or(false) {
        ctx.offsets.remove_group(&h.group_name);
    }
    Some(RemotingCommand::success())
}

pub async fn get_all_consumer_offset(
    ctx: &Arc<BrokerContext>,
    _: &Channel,
    _: RemotingCommand,
) -> Option<RemotingCommand> {
    Some(json_response(&ctx.offsets.snapshot()))
}

pub async fn get_all_delay_offset(
    ctx: &Arc<BrokerContext>,
    _: &Channel,
    _: RemotingCommand,
) -> Option<RemotingCommand> {
    Some(json_response(&ctx.delay_offsets.snapshot()))
}

pub async fn get_broker_runtime_info(
    ctx: &Arc<BrokerContext>,
    _: &Channel,
    _: RemotingCommand,
) -> Option<RemotingCommand> {
    let s = ctx.store.stats();
    let st = &ctx.stats;
    let mut table = BTreeMap::new();
    let mut put = |k: &str, v: String| {
        table.insert(k.to_owned(), v);
    };
    put("brokerVersionDesc", "V4_9_8".into());
    put("brokerVersion", remoting::command::CURRENT_VERSION.to_string());
    put("brokerImpl", format!("FerroMQ {}", env!("CARGO_PKG_VERSION")));
    put("bootTimestamp", ctx.stats_boot_ms().to_string());
    put("commitLogMinOffset", s.commit_log_min_offset.to_string());
    put("commitLogMaxOffset", s.commit_log_max_offset.to_string());
    put("commitLogFlushedOffset", s.commit_log_flushed_offset.to_string());
    put("dispatchBehindBytes", s.dispatch_lag_bytes.to_string());
    if let Some(ratio) = s.disk_usage_ratio {
        // RocketMQ reports the commit log's file system as a fraction ("0.42").
        put("commitLogDiskRatio", ratio.to_string());
    }
    put("diskFull", s.disk_full.to_string());
    put("msgPutTotalTodayNow", BrokerStats::get(&st.send_messages).to_string());
    put("msgGetTotalTodayNow", BrokerStats::get(&st.pull_messages).to_string());
    put("sendRequests", BrokerStats::get(&st.send_requests).to_string());
    put("sendFailures", BrokerStats::get(&st.send_failures).to_string());
    put("pullRequests", BrokerStats::get(&st.pull_requests).to_string());
    put("pullHeld", ctx.holds.parked().to_string());
    if let Some(t) = &ctx.traces {
        put("traceSpansExported", t.exported().to_string());
        put("traceSpansDropped", t.dropped().to_string());
    }
    put("brokerRole", ctx.role.role().as_str().to_owned());
    put("brokerId", ctx.config.broker_id.to_string());
    put("haServerAddr", ctx.role.ha_addr().to_string());
    let ha = ctx.role.runtime_info();
    if ha.master {
        put("haSlaveCount", ha.ha_connection_info.len().to_string());
        put("haInSyncSlaveCount", ha.in_sync_slave_nums.to_string());
        let slowest = ha.ha_connection_info.iter().map(|c| c.diff).max();
        put("haSlaveMaxLagBytes", slowest.map_or_else(|| "-1".to_owned(), |d| d.to_string()));
    } else {
        let master = ctx.role.master();
        put("masterAddr", master.broker_addr.unwrap_or_default());
        put("haMasterAddr", master.ha_addr.unwrap_or_default());
        put("haConnected", ha.ha_client_runtime_info.is_activated.to_string());
        put("haMasterBehindAt", ctx.role.master_behind_at().unwrap_or(-1).to_string());
    }
    put("timerPendingCount", ctx.timers.pending_count().to_string());
    put("transactionWritesRefused", BrokerStats::get(&st.tx_writes_refused).to_string());
    if let Some(acl) = &ctx.acl {
        let (reloads, refused) = acl.reloads();
        put("aclDenied", acl.denied().to_string());
        put("aclReloads", reloads.to_string());
        put("aclReloadsRefused", refused.to_string());
    }
    put("timerDeliveredCount", ctx.timers.delivered_count().to_string());
    for (k, v) in ctx.plugins.runtime_info() {
        put(&k, v);
    }
    Some(json_response(&KvTable { table }))
}

/// GET_BROKER_HA_STATUS (907): RocketMQ 5's `HARuntimeInfo` — a master's slaves
/// (acknowledged offset, lag, in-sync flag, transfer rate), or a slave's master.
pub async fn get_broker_ha_status(
    ctx: &Arc<BrokerContext>,
    _: &Channel,
    _: RemotingCommand,
) -> Option<RemotingCommand> {
    Some(json_response(&ctx.role.runtime_info()))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TopicOffset {
    min_offset: i64,
    max_offset: i64,
    last_update_timestamp: i64,
}

pub async fn get_topic_stats_info(
    ctx: &Arc<BrokerContext>,
    _: &Channel,
    req: RemotingCommand,
) -> Option<RemotingCommand> {
    let h: TopicRequestHeader = try_header!(&req);
    let Some(tc) = ctx.topics.get(&h.topic) else {
        return Some(RemotingCommand::error(ResponseCode::TOPIC_NOT_EXIST, format!("topic[{}] not exist", h.topic)));
    };
    let mut entries = Vec::new();
    for q in 0..tc.write_queue_nums {
        let mq = MessageQueue::new(h.topic.clone(), ctx.config.broker_name.clone(), q);
        let max = ctx.store.max_offset_in_queue(&h.topic, q);
        let last = if max > 0 { last_store_time(ctx, &h.topic, q, max - 1) } else { 0 };
        let v = TopicOffset {
            min_offset: ctx.store.min_offset_in_queue(&h.topic, q),
            max_offset: max,
            last_update_timestamp: last,
        };
        entries.push((mq, v));
    }
    Some(RemotingCommand::success().with_body(format!("{{\"offsetTable\":{}}}", mq_keyed(&entries)).into_bytes()))
}

fn last_store_time(ctx: &BrokerContext, topic: &str, queue: i32, offset: i64) -> i64 {
    let r = ctx.store.get_messages(&store::GetRequest::new(topic, queue, offset, 1));
    r.messages.first().and_then(|b| common::record::RecordView::parse(b).ok().map(|v| v.store_timestamp())).unwrap_or(0)
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct OffsetWrapper {
    broker_offset: i64,
    consumer_offset: i64,
    last_timestamp: i64,
}

pub async fn get_consume_stats(ctx: &Arc<BrokerContext>, _: &Channel, req: RemotingCommand) -> Option<RemotingCommand> {
    let h: GetConsumeStatsRequestHeader = try_header!(&req);
    let topics: Vec<String> = match h.topic.as_deref().filter(|t| !t.is_empty()) {
        Some(t) => vec![t.to_owned()],
        None => ctx.offsets.topics_of_group(&h.consumer_group),
    };
    let mut entries = Vec::new();
    for t in topics {
        let Some(tc) = ctx.topics.get(&t) else { continue };
        let committed = ctx.offsets.queues(&h.consumer_group, &t);
        for q in 0..tc.write_queue_nums {
            let broker_offset = ctx.store.max_offset_in_queue(&t, q);
            let consumer_offset = committed.get(&q).copied().unwrap_or(0).max(0);
            let last = if consumer_offset > 0 { last_store_time(ctx, &t, q, consumer_offset - 1) } else { 0 };
            let mq = MessageQueue::new(t.clone(), ctx.config.broker_name.clone(), q);
            entries.push((mq, OffsetWrapper { broker_offset, consumer_offset, last_timestamp: last }));
        }
    }
    let body = format!("{{\"consumeTps\":0.0,\"offsetTable\":{}}}", mq_keyed(&entries));
    Some(RemotingCommand::success().with_body(body.into_bytes()))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Connection {
    client_id: String,
    client_addr: String,
    language: String,
    version: i32,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ConsumerConnection {
    connection_set: Vec<Connection>,
    subscription_table: BTreeMap<String, SubscriptionData>,
    consume_type: common::subscription::ConsumeType,
    message_model: common::subscription::MessageModel,
    consume_from_where: common::subscription::ConsumeFromWhere,
}

pub async fn get_consumer_connection_list(
    ctx: &Arc<BrokerContext>,
    _: &Channel,
    req: RemotingCommand,
) -> Option<RemotingCommand> {
    let h: ConsumerGroupRequestHeader = try_header!(&req);
    let Some(g) = ctx.clients.consumer_group(&h.consumer_group) else {
        return Some(RemotingCommand::error(
            ResponseCode::CONSUMER_NOT_ONLINE,
            format!("the consumer group[{}] not online", h.consumer_group),
        ));
    };
    let body = ConsumerConnection {
        connection_set: g
            .channels
            .values()
            .map(|c| Connection {
                client_id: c.client_id.clone(),
                client_addr: c.channel.peer_addr().to_string(),
                language: c.language.as_str().to_owned(),
                version: c.version,
            })
            .collect(),
        subscription_table: g.subscriptions.into_iter().collect(),
        consume_type: g.consume_type,
        message_model: g.message_model,
        consume_from_where: g.consume_from_where,
    };
    Some(json_response(&body))
}

pub async fn get_broker_config(ctx: &Arc<BrokerContext>, _: &Channel, _: RemotingCommand) -> Option<RemotingCommand> {
    let value = serde_json::to_value(&ctx.config).unwrap_or_default();
    let mut text = String::new();
    flatten("", &value, &mut text);
    Some(RemotingCommand::success().with_body(text.into_bytes()))
}

fn flatten(prefix: &str, v: &serde_json::Value, out: &mut String) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                flatten(&key, v, out);
            }
        }
        serde_json::Value::String(s) => {
            let _ = writeln!(out, "{prefix}={s}");
        }
        other => {
            let _ = writeln!(out, "{prefix}={other}");
        }
    }
}

/// A `MessageQueue`-keyed map as fastjson writes it: `{{"brokerName":..,"queueId":..,
/// "topic":..}:value,...}` — object keys, which Java's admin tools expect.
pub fn mq_keyed<V: Serialize>(entries: &[(MessageQueue, V)]) -> String {
    let mut out = String::from("{");
    for (i, (mq, v)) in entries.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&serde_json::to_string(mq).unwrap_or_default());
        out.push(':');
        out.push_str(&serde_json::to_string(v).unwrap_or_default());
    }
    out.push('}');
    out
}

/// INVOKE_BROKER_TO_RESET_OFFSET (222): replay. Each queue of the topic gets the
/// offset of the first message stored at or after `timestamp` (-1 = the end); with
/// `isForce` false an offset is only moved backwards. The broker commits the new
/// offsets itself — so a group that is offline replays when it comes back — and
/// tells online consumers with RESET_CONSUMER_CLIENT_OFFSET (220).
pub async fn reset_offset(ctx: &Arc<BrokerContext>, _: &Channel, req: RemotingCommand) -> Option<RemotingCommand> {
    let h: ResetOffsetRequestHeader = try_header!(&req);
    let Some(tc) = ctx.topics.get(&h.topic) else {
        return Some(RemotingCommand::error(ResponseCode::TOPIC_NOT_EXIST, format!("topic[{}] not exist", h.topic)));
    };
    let mut table = Vec::new();
    for q in 0..tc.write_queue_nums {
        let committed = ctx.offsets.query(&h.group, &h.topic, q);
        let target = if h.timestamp == -1 {
            ctx.store.max_offset_in_queue(&h.topic, q)
        } else {
            ctx.store.offset_by_timestamp(&h.topic, q, h.timestamp).max(0)
        };
        let offset = if h.is_force || committed < 0 || target < committed { target } else { committed };
        ctx.offsets.commit(&h.group, &h.topic, q, offset);
        table.push((MessageQueue::new(h.topic.clone(), ctx.config.broker_name.clone(), q), offset));
    }
    let body = format!("{{\"offsetTable\":{}}}", mq_keyed(&table));
    tracing::info!(group = %h.group, topic = %h.topic, timestamp = h.timestamp, "consumer offsets reset");
    if let Some(g) = ctx.clients.consumer_group(&h.group) {
        for c in g.channels.into_values() {
            let cmd = RemotingCommand::request_with(remoting::RequestCode::RESET_CONSUMER_CLIENT_OFFSET, &h)
                .with_body(body.clone().into_bytes());
            let group = h.group.clone();
            tokio::spawn(async move {
                if let Err(e) = c.channel.oneway(cmd).await {
                    tracing::debug!(group = %group, error = %e, "could not tell a consumer about the offset reset");
                }
            });
        }
    }
    Some(RemotingCommand::success().with_body(body.into_bytes()))
}
