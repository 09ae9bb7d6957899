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
    // Attributes carry over an update unless changed (RocketMQ 5's rule).
    let old = ctx.topics.get(&h.topic);
    let current = old.as_ref().map(|t| t.attributes.clone()).unwrap_or_default();
    let attributes = match topic::alter_attributes(&current, h.attributes.as_deref().unwrap_or("")) {
        Ok(a) => a,
        Err(e) => return Some(RemotingCommand::error(ResponseCode::INVALID_PARAMETER, e)),
    };
    let tc = TopicConfig {
        topic_name: h.topic,
        read_queue_nums: h.read_queue_nums,
        write_queue_nums: h.write_queue_nums,
        perm: h.perm,
        topic_filter_type: TopicFilterType::from_name(&h.topic_filter_type).unwrap_or_default(),
        topic_sys_flag: h.topic_sys_flag.unwrap_or(0),
        order: h.order,
        attributes,
    };
    // An ordered topic that grows gets its drain barrier before any client can
    // see the new queues (`order_expansion`).
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
    // RocketMQ's totals are counts since start; the day's count is `TodayNow`
    // minus `TodayMorning`, the total at the last local midnight.
    let (put_marks, get_marks) = ctx.daily_marks();
    put("msgPutTotalTodayNow", BrokerStats::get(&st.send_messages).to_string());
    put("msgGetTotalTodayNow", BrokerStats::get(&st.pull_messages).to_string());
    put("msgPutTotalTodayMorning", put_marks.today_morning.to_string());
    put("msgGetTotalTodayMorning", get_marks.today_morning.to_string());
    put("msgPutTotalYesterdayMorning", put_marks.yesterday_morning.to_string());
    put("msgGetTotalYesterdayMorning", get_marks.yesterday_morning.to_string());
    // "10 s, 1 min, 10 min" rates, as RocketMQ's `StoreStatsService` formats them.
    let now = common::time::now_ms();
    ctx.refresh_broker_stats();
    let rates = |name: &str| {
        let item = ctx.stats_items.get(name, &ctx.config.broker_cluster_name);
        let tps = |span| item.as_ref().map_or(0.0, |i| i.window(now, span).tps);
        format!("{:.2} {:.2} {:.2}", tps(10_000), tps(60_000), tps(600_000))
    };
    put("putTps", rates(crate::stats_items::BROKER_PUT_NUMS));
    put("getTransferedTps", rates(crate::stats_items::BROKER_GET_NUMS));
    put("earliestMessageTimeStamp", ctx.store.earliest_message_time_overall().unwrap_or(0).to_string());
    put("startAcceptSendRequestTimeStamp", "0".to_owned());
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

pub async fn get_consume_stats(ctx: &Arc<BrokerContext>, _: &Channel, req: RemotingCommand) -> Option<RemotingCommand> {
    let h: GetConsumeStatsRequestHeader = try_header!(&req);
    let body = crate::processor::consumer_admin::group_consume_stats(ctx, &h.consumer_group, h.topic.as_deref());
    Some(RemotingCommand::success().with_body(body.into_bytes()))
}

/// RocketMQ's `Connection`: one client connection in a producer or consumer group.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Connection {
    client_id: String,
    client_addr: String,
    language: String,
    version: i32,
}

impl Connection {
    pub(crate) fn of(c: &crate::client_manager::ClientChannelInfo) -> Self {
        Connection {
            client_id: c.client_id.clone(),
            client_addr: c.channel.peer_addr().to_string(),
            language: c.language.as_str().to_owned(),
            version: c.version,
        }
    }
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
        connection_set: g.channels.values().map(Connection::of).collect(),
        subscription_table: g.subscriptions.into_iter().collect(),
        consume_type: g.consume_type,
        message_model: g.message_model,
        consume_from_where: g.consume_from_where,
    };
    Some(json_response(&body))
}

/// GET_BROKER_CONFIG (26): every setting as a properties text, under RocketMQ's
/// names and units where RocketMQ has the setting, with the values changed at run
/// time; the header's `version` is the configuration's data version.
pub async fn get_broker_config(ctx: &Arc<BrokerContext>, _: &Channel, _: RemotingCommand) -> Option<RemotingCommand> {
    let mut props = config::broker_properties(&ctx.config);
    for (key, value) in ctx.runtime.current() {
        match props.iter_mut().find(|(k, _)| k == key) {
            Some(p) => p.1 = value,
            None => props.push((key.to_owned(), value)),
        }
    }
    let mut text = String::new();
    for (k, v) in props {
        let _ = writeln!(text, "{k}={v}");
    }
    let version = serde_json::to_string(&ctx.config_version.lock().clone()).unwrap_or_default();
    let header = GetBrokerConfigResponseHeader { version: Some(version) };
    Some(RemotingCommand::response_with(ResponseCode::SUCCESS, &header).with_body(text.into_bytes()))
}

/// UPDATE_BROKER_CONFIG (25): applies the settings that can change while the
/// broker runs ([`crate::runtime_config::CHANGEABLE`]), all of them or none; an
/// update naming any other setting is refused with a remark naming it.
pub async fn update_broker_config(
    ctx: &Arc<BrokerContext>,
    ch: &Channel,
    req: RemotingCommand,
) -> Option<RemotingCommand> {
    let body = req.body_bytes();
    let text = String::from_utf8_lossy(&body);
    match ctx.runtime.apply(&text) {
        Ok(applied) => {
            tracing::info!(caller = %ch.peer_addr(), keys = ?applied.keys, "broker settings changed");
            ctx.config_version.lock().next_version(common::time::now_ms());
            if applied.permission_changed {
                ctx.topics.touch();
                ctx.register_now.notify_one();
            }
            Some(RemotingCommand::success())
        }
        Err(why) => {
            tracing::warn!(caller = %ch.peer_addr(), %why, "broker settings update refused");
            Some(RemotingCommand::error(ResponseCode::SYSTEM_ERROR, why))
        }
    }
}

pub use remoting::json::mq_keyed;

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

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct BrokerStatsData {
    stats_minute: crate::stats_items::Window,
    stats_hour: crate::stats_items::Window,
    stats_day: crate::stats_items::Window,
}

/// VIEW_BROKER_STATS_DATA (315): one stats item's minute, hour and day figures
/// (`mqadmin statsAll`): `TOPIC_PUT_NUMS`/`TOPIC_PUT_SIZE` keyed by topic,
/// `GROUP_GET_NUMS`/`GROUP_GET_SIZE` by `topic@group`, `BROKER_PUT_NUMS`/
/// `BROKER_GET_NUMS` by cluster name.
pub async fn view_broker_stats_data(
    ctx: &Arc<BrokerContext>,
    _: &Channel,
    req: RemotingCommand,
) -> Option<RemotingCommand> {
    let h: ViewBrokerStatsDataRequestHeader = try_header!(&req);
    ctx.refresh_broker_stats();
    let Some(item) = ctx.stats_items.get(&h.stats_name, &h.stats_key) else {
        return Some(RemotingCommand::error(
            ResponseCode::SYSTEM_ERROR,
            format!("The stats <{}> <{}> not exist", h.stats_name, h.stats_key),
        ));
    };
    let now = common::time::now_ms();
    Some(json_response(&BrokerStatsData {
        stats_minute: item.minute(now),
        stats_hour: item.hour(now),
        stats_day: item.day(now),
    }))
}

/// CLEAN_EXPIRED_CONSUMEQUEUE (306): deletes consume-queue files that only point
/// at deleted commit-log data.
pub async fn clean_expired_consume_queue(
    ctx: &Arc<BrokerContext>,
    ch: &Channel,
    _: RemotingCommand,
) -> Option<RemotingCommand> {
    let store = ctx.store.clone();
    let deleted = tokio::task::spawn_blocking(move || store.clean_expired_consume_queues()).await.unwrap_or(0);
    tracing::info!(caller = %ch.peer_addr(), deleted, "expired consume-queue files cleaned");
    Some(RemotingCommand::success())
}

/// CLEAN_UNUSED_TOPIC (316): drops the consume queues of topics the broker no
/// longer has a configuration for (system topics excepted).
pub async fn clean_unused_topic(ctx: &Arc<BrokerContext>, ch: &Channel, _: RemotingCommand) -> Option<RemotingCommand> {
    let mut dropped = Vec::new();
    for (t, _) in ctx.store.topic_queues() {
        if !ctx.topics.contains(&t) && !topic::is_system_topic(&t) && !topic::is_retry_topic(&t) {
            ctx.store.delete_topic(&t);
            dropped.push(t);
        }
    }
    tracing::warn!(caller = %ch.peer_addr(), topics = ?dropped, "unused topics' consume queues dropped");
    Some(RemotingCommand::success())
}

/// TRIGGER_DELETE_FILES (27): runs retention now, whatever the `deleteWhen` hour
/// (`mqadmin deleteExpiredCommitLog`).
pub async fn trigger_delete_files(
    ctx: &Arc<BrokerContext>,
    ch: &Channel,
    _: RemotingCommand,
) -> Option<RemotingCommand> {
    let store = ctx.store.clone();
    match tokio::task::spawn_blocking(move || store.delete_expired_files()).await {
        Ok(report) => {
            tracing::warn!(caller = %ch.peer_addr(), ?report, "retention run on request");
            Some(RemotingCommand::success())
        }
        Err(e) => Some(RemotingCommand::error(ResponseCode::SYSTEM_ERROR, format!("retention failed: {e}"))),
    }
}

/// RESUME_CHECK_HALF_MESSAGE (323): a transaction message parked after too many
/// check-backs (or any half message) is checked again.
pub async fn resume_check_half_message(
    ctx: &Arc<BrokerContext>,
    _: &Channel,
    req: RemotingCommand,
) -> Option<RemotingCommand> {
    let h: ResumeCheckHalfMessageRequestHeader = try_header!(&req);
    let offset = match common::msgid::decode_offset_msg_id(&h.msg_id) {
        Ok((_, offset)) => offset,
        Err(e) => {
            return Some(RemotingCommand::error(
                ResponseCode::SYSTEM_ERROR,
                format!("{} is not an offset message id: {e}", h.msg_id),
            ))
        }
    };
    Some(match crate::transaction::resume_check(ctx, offset).await {
        Ok(_) => RemotingCommand::success(),
        Err(why) => RemotingCommand::error(ResponseCode::SYSTEM_ERROR, why),
    })
}
