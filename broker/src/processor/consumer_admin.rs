//! Requests RocketMQ's admin tools send about producers, consumer groups and their
//! offsets (`mqadmin consumerStatus`, `producerConnection`, `cloneGroupOffset`,
//! RocketMQ Dashboard's consumer pages), and the ones the broker relays to a
//! consumer's own connection (GET_CONSUMER_RUNNING_INFO, CONSUME_MESSAGE_DIRECTLY,
//! GET_CONSUMER_STATUS_FROM_CLIENT).
//!
//! Bodies follow RocketMQ's classes field for field (fastjson names); maps keyed
//! by `MessageQueue` are written with object keys, as in [`super::admin::mq_keyed`].

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use common::route::MessageQueue;
use common::subscription::SubscriptionData;
use common::topic;
use common::ResponseCode;
use remoting::header::broker::*;
use remoting::{Channel, RemotingCommand, RequestCode};

use crate::client_manager::ClientChannelInfo;
use crate::context::BrokerContext;
use crate::processor::admin::{mq_keyed, Connection};
use crate::processor::{json_response, try_header};

/// How long the broker waits for a consumer to answer a relayed request.
const CALL_CONSUMER_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ProducerConnection {
    connection_set: Vec<Connection>,
}

/// GET_PRODUCER_CONNECTION_LIST (204): the connections of a producer group.
pub async fn get_producer_connection_list(
    ctx: &Arc<BrokerContext>,
    _: &Channel,
    req: RemotingCommand,
) -> Option<RemotingCommand> {
    let h: GetProducerConnectionListRequestHeader = try_header!(&req);
    let groups = ctx.clients.producer_groups();
    let Some(channels) = groups.get(&h.producer_group) else {
        return Some(RemotingCommand::error(
            ResponseCode::SYSTEM_ERROR,
            format!("the producer group[{}] not exist", h.producer_group),
        ));
    };
    let connection_set = channels.iter().map(Connection::of).collect();
    Some(json_response(&ProducerConnection { connection_set }))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct GroupList {
    group_list: BTreeSet<String>,
}

/// QUERY_TOPIC_CONSUME_BY_WHO (300): groups online for a topic, and groups with
/// committed offsets in it.
pub async fn query_topic_consume_by_who(
    ctx: &Arc<BrokerContext>,
    _: &Channel,
    req: RemotingCommand,
) -> Option<RemotingCommand> {
    let h: QueryTopicConsumeByWhoRequestHeader = try_header!(&req);
    let mut group_list: BTreeSet<String> = ctx.clients.groups_subscribing(&h.topic).into_iter().collect();
    group_list.extend(ctx.offsets.groups_of_topic(&h.topic));
    Some(json_response(&GroupList { group_list }))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct QueueTimeSpan {
    message_queue: MessageQueue,
    min_time_stamp: i64,
    max_time_stamp: i64,
    consume_time_stamp: i64,
    delay_time: i64,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct QueryConsumeTimeSpanBody {
    consume_time_span_set: Vec<QueueTimeSpan>,
}

/// QUERY_CONSUME_TIME_SPAN (303): per queue, the store times of the first and
/// last message and of the last consumed one, and how far the group is behind.
pub async fn query_consume_time_span(
    ctx: &Arc<BrokerContext>,
    _: &Channel,
    req: RemotingCommand,
) -> Option<RemotingCommand> {
    let h: QueryConsumeTimeSpanRequestHeader = try_header!(&req);
    let Some(tc) = ctx.topics.get(&h.topic) else {
        return Some(RemotingCommand::error(ResponseCode::TOPIC_NOT_EXIST, format!("topic[{}] not exist", h.topic)));
    };
    let now = common::time::now_ms();
    let time_at = |q: i32, offset: i64| ctx.store.message_store_time(&h.topic, q, offset).unwrap_or(0);
    let consume_time_span_set = (0..tc.write_queue_nums)
        .map(|q| {
            let min_time_stamp = ctx.store.earliest_message_time(&h.topic, q).unwrap_or(0);
            let max = ctx.store.max_offset_in_queue(&h.topic, q);
            let consumer_offset = ctx.offsets.query(&h.group, &h.topic, q);
            let consume_time_stamp = if consumer_offset > 0 { time_at(q, consumer_offset - 1) } else { min_time_stamp };
            let delay_time = if consumer_offset < max {
                let next = time_at(q, consumer_offset.max(0));
                if next > 0 {
                    now - next
                } else {
                    0
                }
            } else {
                0
            };
            QueueTimeSpan {
                message_queue: MessageQueue::new(h.topic.clone(), ctx.config.broker_name.clone(), q),
                min_time_stamp,
                max_time_stamp: if max > 0 { time_at(q, max - 1) } else { 0 },
                consume_time_stamp,
                delay_time,
            }
        })
        .collect();
    Some(json_response(&QueryConsumeTimeSpanBody { consume_time_span_set }))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct OffsetWrapper {
    broker_offset: i64,
    consumer_offset: i64,
    pull_offset: i64,
    last_timestamp: i64,
}

/// One group's consume stats over `topics`: (offset table entries, diff).
fn consume_stats(ctx: &BrokerContext, group: &str, topics: &[String]) -> (Vec<(MessageQueue, OffsetWrapper)>, i64) {
    let mut entries = Vec::new();
    let mut diff = 0;
    for t in topics {
        let Some(tc) = ctx.topics.get(t) else { continue };
        for q in 0..tc.write_queue_nums {
            let broker_offset = ctx.store.max_offset_in_queue(t, q).max(0);
            let consumer_offset = ctx.offsets.query(group, t, q).max(0);
            let pull_offset = ctx.offsets.query_pull(group, t, q).max(consumer_offset);
            let last_timestamp = if consumer_offset > 0 {
                ctx.store.message_store_time(t, q, consumer_offset - 1).unwrap_or(0)
            } else {
                0
            };
            diff += (broker_offset - consumer_offset).max(0);
            let mq = MessageQueue::new(t.clone(), ctx.config.broker_name.clone(), q);
            entries.push((mq, OffsetWrapper { broker_offset, consumer_offset, pull_offset, last_timestamp }));
        }
    }
    (entries, diff)
}

/// The topics of a group's stats: those it has offsets in, less those its online
/// members no longer subscribe to (RocketMQ skips them too).
fn topics_of(ctx: &BrokerContext, group: &str) -> Vec<String> {
    let online = ctx.clients.consumer_group(group);
    ctx.offsets
        .topics_of_group(group)
        .into_iter()
        .filter(|t| match &online {
            Some(g) if !g.subscriptions.is_empty() => g.subscriptions.contains_key(t),
            _ => true,
        })
        .collect()
}

/// GET_BROKER_CONSUME_STATS (317): every subscription group's consume stats on
/// this broker (`mqadmin brokerConsumeStats`, the monitoring view).
pub async fn get_broker_consume_stats(
    ctx: &Arc<BrokerContext>,
    _: &Channel,
    req: RemotingCommand,
) -> Option<RemotingCommand> {
    let h: GetConsumeStatsInBrokerHeader = try_header!(&req);
    let mut groups: BTreeSet<String> =
        ctx.groups.snapshot().subscription_group_table.into_keys().collect::<BTreeSet<String>>();
    groups.extend(ctx.clients.consumer_groups());
    let mut total_diff = 0i64;
    let mut list = Vec::new();
    for group in groups {
        let topics: Vec<String> = topics_of(ctx, &group)
            .into_iter()
            .filter(|t| !h.is_order || ctx.topics.get(t).is_some_and(|tc| tc.order))
            .collect();
        let mut stats = Vec::new();
        for t in topics {
            let (entries, diff) = consume_stats(ctx, &group, std::slice::from_ref(&t));
            if entries.is_empty() {
                continue;
            }
            total_diff += diff;
            let tps = get_tps(ctx, &t, &group);
            stats.push(format!("{{\"consumeTps\":{tps:?},\"offsetTable\":{}}}", mq_keyed(&entries)));
        }
        let group_json = serde_json::to_string(&group).unwrap_or_default();
        list.push(format!("{{{group_json}:[{}]}}", stats.join(",")));
    }
    let addr = serde_json::to_string(&ctx.broker_addr_string()).unwrap_or_default();
    let body = format!(
        "{{\"brokerAddr\":{addr},\"consumeStatsList\":[{}],\"totalDiff\":{total_diff},\"totalInflightDiff\":0}}",
        list.join(",")
    );
    Some(RemotingCommand::success().with_body(body.into_bytes()))
}

/// Messages per second `group` pulled from `topic` over the last minute.
pub(crate) fn get_tps(ctx: &BrokerContext, topic: &str, group: &str) -> f64 {
    let key = format!("{topic}@{group}");
    ctx.stats_items.get(crate::stats_items::GROUP_GET_NUMS, &key).map_or(0.0, |i| i.minute(common::time::now_ms()).tps)
}

/// GET_CONSUME_STATS (208) body for one group (the topic given, or all it consumes).
pub(crate) fn group_consume_stats(ctx: &BrokerContext, group: &str, topic: Option<&str>) -> String {
    let topics = match topic.filter(|t| !t.is_empty()) {
        Some(t) => vec![t.to_owned()],
        None => topics_of(ctx, group),
    };
    let (entries, _) = consume_stats(ctx, group, &topics);
    let tps: f64 = topics.iter().map(|t| get_tps(ctx, t, group)).sum();
    format!("{{\"consumeTps\":{tps:?},\"offsetTable\":{}}}", mq_keyed(&entries))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ConsumeQueueData {
    physic_offset: i64,
    physic_size: i32,
    tags_code: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    extend_data_json: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    bit_map: Option<String>,
    eval: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    msg: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct QueryConsumeQueueResponseBody {
    #[serde(skip_serializing_if = "Option::is_none")]
    subscription_data: Option<SubscriptionData>,
    #[serde(skip_serializing_if = "Option::is_none")]
    filter_data: Option<String>,
    queue_data: Vec<ConsumeQueueData>,
    max_queue_index: i64,
    min_queue_index: i64,
}

/// QUERY_CONSUME_QUEUE (321): raw consume-queue entries of one queue
/// (`mqadmin queryCq`), with whether the group's subscription matches each.
pub async fn query_consume_queue(
    ctx: &Arc<BrokerContext>,
    _: &Channel,
    req: RemotingCommand,
) -> Option<RemotingCommand> {
    let h: QueryConsumeQueueRequestHeader = try_header!(&req);
    let exists = ctx.store.topic_queues().iter().any(|(t, qs)| *t == h.topic && qs.contains(&h.queue_id));
    if !exists {
        return Some(RemotingCommand::error(
            ResponseCode::SYSTEM_ERROR,
            format!("{}@{} is not exist!", h.queue_id, h.topic),
        ));
    }
    let (subscription_data, filter_data) = match h.consumer_group.as_deref() {
        Some(g) => match ctx.clients.subscription(g, &h.topic) {
            Some(s) => (Some(s), None),
            None => (None, Some(format!("{g}@{} is not online!", h.topic))),
        },
        None => (None, None),
    };
    let count = usize::try_from(h.count.clamp(0, 1000)).unwrap_or(0);
    let queue_data = ctx
        .store
        .cq_entries(&h.topic, h.queue_id, h.index, count)
        .into_iter()
        .map(|(_, e)| ConsumeQueueData {
            physic_offset: e.phy_offset,
            physic_size: e.size,
            tags_code: e.tags_code,
            extend_data_json: None,
            bit_map: None,
            eval: subscription_data.as_ref().is_none_or(|s| {
                s.sub_string == "*"
                    || s.sub_string.is_empty()
                    || s.code_set.iter().any(|c| i64::from(*c) == e.tags_code)
            }),
            msg: None,
        })
        .collect();
    Some(json_response(&QueryConsumeQueueResponseBody {
        subscription_data,
        filter_data,
        queue_data,
        max_queue_index: ctx.store.max_offset_in_queue(&h.topic, h.queue_id),
        min_queue_index: ctx.store.min_offset_in_queue(&h.topic, h.queue_id),
    }))
}

/// CLONE_GROUP_OFFSET (314): copies a group's committed offsets (for one topic, or
/// every topic it has offsets in) to another group.
pub async fn clone_group_offset(
    ctx: &Arc<BrokerContext>,
    _: &Channel,
    req: RemotingCommand,
) -> Option<RemotingCommand> {
    let h: CloneGroupOffsetRequestHeader = try_header!(&req);
    let topics = match h.topic.as_deref().filter(|t| !t.trim().is_empty()) {
        Some(t) => vec![t.to_owned()],
        None => ctx.offsets.topics_of_group(&h.src_group),
    };
    let online = ctx.clients.consumer_group(&h.src_group);
    let mut cloned = 0;
    for t in topics {
        if ctx.topics.get(&t).is_none() {
            continue;
        }
        if !h.offline {
            if let Some(g) = &online {
                if !g.subscriptions.is_empty() && !g.subscriptions.contains_key(&t) {
                    continue;
                }
            }
        }
        for (q, offset) in ctx.offsets.queues(&h.src_group, &t) {
            ctx.offsets.commit(&h.dest_group, &t, q, offset);
            cloned += 1;
        }
    }
    tracing::info!(src = %h.src_group, dest = %h.dest_group, queues = cloned, "consumer offsets cloned");
    Some(RemotingCommand::success())
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct QueryCorrectionOffsetBody {
    correction_offsets: BTreeMap<i32, i64>,
}

/// QUERY_CORRECTION_OFFSET (308): per queue, the lowest offset committed by any
/// group other than `filterGroups`; `Long.MAX_VALUE` where `compareGroup` is
/// behind it (RocketMQ's rule).
pub async fn query_correction_offset(
    ctx: &Arc<BrokerContext>,
    _: &Channel,
    req: RemotingCommand,
) -> Option<RemotingCommand> {
    let h: QueryCorrectionOffsetHeader = try_header!(&req);
    let filtered: BTreeSet<&str> = h.filter_groups.as_deref().unwrap_or("").split(',').map(str::trim).collect();
    let mut correction_offsets: BTreeMap<i32, i64> = BTreeMap::new();
    for group in ctx.offsets.groups_of_topic(&h.topic) {
        if filtered.contains(group.as_str()) {
            continue;
        }
        for (q, offset) in ctx.offsets.queues(&group, &h.topic) {
            let e = correction_offsets.entry(q).or_insert(offset);
            *e = (*e).min(offset);
        }
    }
    for (q, compare) in ctx.offsets.queues(&h.compare_group, &h.topic) {
        if let Some(c) = correction_offsets.get_mut(&q) {
            if *c > compare {
                *c = i64::MAX;
            }
        }
    }
    Some(json_response(&QueryCorrectionOffsetBody { correction_offsets }))
}

/// The connection of `client_id` in `group`, or the answer saying it is not online.
fn consumer_channel(ctx: &BrokerContext, group: &str, client_id: &str) -> Result<ClientChannelInfo, RemotingCommand> {
    ctx.clients
        .consumer_group(group)
        .and_then(|g| g.channels.into_values().find(|c| c.client_id == client_id && !c.channel.is_closed()))
        .ok_or_else(|| {
            RemotingCommand::error(
                ResponseCode::SYSTEM_ERROR,
                format!("The Consumer <{group}> <{client_id}> not online"),
            )
        })
}

/// Sends `code` with the request's fields and body to a consumer's connection
/// and returns its answer as the tool's answer.
async fn call_consumer(
    info: &ClientChannelInfo,
    code: RequestCode,
    req: &RemotingCommand,
    group: &str,
) -> RemotingCommand {
    let mut call = RemotingCommand::request(code);
    call.ext_fields = req.ext_fields.clone();
    call.body = req.body.clone();
    let client_id = &info.client_id;
    match info.channel.request(call, CALL_CONSUMER_TIMEOUT).await {
        Ok(mut resp) => {
            // The answer goes back under the tool's opaque, not the consumer's.
            resp.flag = 0;
            resp
        }
        Err(remoting::Error::Timeout { .. }) => RemotingCommand::error(
            ResponseCode::CONSUME_MSG_TIMEOUT,
            format!("consumer <{group}> <{client_id}> Timeout: no answer in {CALL_CONSUMER_TIMEOUT:?}"),
        ),
        Err(e) => RemotingCommand::error(
            ResponseCode::SYSTEM_ERROR,
            format!("invoke consumer <{group}> <{client_id}> Exception: {e}"),
        ),
    }
}

/// GET_CONSUMER_RUNNING_INFO (307): relayed to the consumer, whose answer
/// (a `ConsumerRunningInfo`) is relayed back.
pub async fn get_consumer_running_info(
    ctx: &Arc<BrokerContext>,
    _: &Channel,
    req: RemotingCommand,
) -> Option<RemotingCommand> {
    let h: GetConsumerRunningInfoRequestHeader = try_header!(&req);
    let info = match consumer_channel(ctx, &h.consumer_group, &h.client_id) {
        Ok(i) => i,
        Err(resp) => return Some(resp),
    };
    Some(call_consumer(&info, RequestCode::GET_CONSUMER_RUNNING_INFO, &req, &h.consumer_group).await)
}

/// CONSUME_MESSAGE_DIRECTLY (309): the stored message `msgId` is handed to one
/// consumer's listener, and its `ConsumeMessageDirectlyResult` relayed back.
pub async fn consume_message_directly(
    ctx: &Arc<BrokerContext>,
    _: &Channel,
    req: RemotingCommand,
) -> Option<RemotingCommand> {
    let h: ConsumeMessageDirectlyResultRequestHeader = try_header!(&req);
    let client_id = h.client_id.clone().unwrap_or_default();
    let info = match consumer_channel(ctx, &h.consumer_group, &client_id) {
        Ok(i) => i,
        Err(resp) => return Some(resp),
    };
    let Some(record) = h
        .msg_id
        .as_deref()
        .and_then(|id| common::msgid::decode_offset_msg_id(id).ok())
        .and_then(|(_, offset)| ctx.store.look_message_by_offset(offset))
    else {
        return Some(RemotingCommand::error(
            ResponseCode::SYSTEM_ERROR,
            format!("no message with id {:?} on this broker", h.msg_id.unwrap_or_default()),
        ));
    };
    let mut relay = req;
    relay.ext_fields.insert("brokerName", ctx.config.broker_name.clone());
    if let Some(tc) = h.topic.as_deref().and_then(|t| ctx.topics.get(t)) {
        relay.ext_fields.insert("topicSysFlag", tc.topic_sys_flag.to_string());
    }
    let relay = relay.with_body(record);
    Some(call_consumer(&info, RequestCode::CONSUME_MESSAGE_DIRECTLY, &relay, &h.consumer_group).await)
}

/// INVOKE_BROKER_TO_GET_CONSUMER_STATUS (223): asks each online member of the
/// group (or only `clientAddr`'s client) for its offsets in a topic with
/// GET_CONSUMER_STATUS_FROM_CLIENT, and answers `{"consumerTable": {clientId:
/// {queue: offset}}}`.
pub async fn invoke_broker_to_get_consumer_status(
    ctx: &Arc<BrokerContext>,
    _: &Channel,
    req: RemotingCommand,
) -> Option<RemotingCommand> {
    let h: GetConsumerStatusRequestHeader = try_header!(&req);
    let members = ctx.clients.consumer_group(&h.group).map(|g| g.channels).unwrap_or_default();
    if members.is_empty() {
        return Some(RemotingCommand::error(
            ResponseCode::SYSTEM_ERROR,
            format!("No Any Consumer online in the consumer group: [{}]", h.group),
        ));
    }
    let only = h.client_addr.as_deref().filter(|a| !a.trim().is_empty());
    let ask = GetConsumerStatusRequestHeader { topic: h.topic.clone(), group: h.group.clone(), client_addr: None };
    let mut table = Vec::new();
    for info in members.values().filter(|c| only.is_none_or(|id| id == c.client_id)) {
        let call = RemotingCommand::request_with(RequestCode::GET_CONSUMER_STATUS_FROM_CLIENT, &ask);
        match info.channel.request(call, CALL_CONSUMER_TIMEOUT).await {
            Ok(resp) if resp.code == ResponseCode::SUCCESS.0 => {
                let body = resp.body_bytes();
                let offsets = remoting::json::mq_keyed_i64_field(&body, "messageQueueTable");
                table.push((info.client_id.clone(), offsets));
            }
            Ok(resp) => tracing::debug!(client = %info.client_id, code = resp.code, "consumer status refused"),
            Err(e) => tracing::debug!(client = %info.client_id, error = %e, "consumer status not answered"),
        }
    }
    let inner: Vec<String> = table
        .iter()
        .map(|(id, offsets)| format!("{}:{}", serde_json::to_string(id).unwrap_or_default(), mq_keyed(offsets)))
        .collect();
    let body = format!("{{\"consumerTable\":{{{}}},\"messageQueueTable\":{{}}}}", inner.join(","));
    Some(RemotingCommand::success().with_body(body.into_bytes()))
}

/// GET_SYSTEM_TOPIC_LIST_FROM_BROKER (305): RocketMQ's system topics, plus the
/// system topics this broker has.
pub async fn get_system_topic_list(
    ctx: &Arc<BrokerContext>,
    _: &Channel,
    _: RemotingCommand,
) -> Option<RemotingCommand> {
    let mut topic_list: BTreeSet<String> = topic::SYSTEM_TOPICS.iter().map(|t| (*t).to_owned()).collect();
    topic_list.insert(ctx.config.broker_cluster_name.clone());
    topic_list.insert(ctx.config.broker_name.clone());
    topic_list.extend(ctx.topics.snapshot().topic_config_table.into_keys().filter(|t| topic::is_system_topic(t)));
    let body = remoting::body::TopicList { topic_list: topic_list.into_iter().collect(), broker_addr: None };
    Some(json_response(&body))
}
