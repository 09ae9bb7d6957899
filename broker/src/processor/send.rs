// PERF-CRITICAL PATH: every produced message passes through `process`.
//! SEND_MESSAGE (10), SEND_MESSAGE_V2 (310), SEND_BATCH_MESSAGE (320) and
//! CONSUMER_SEND_MSG_BACK (36) — RocketMQ's `SendMessageProcessor`
//! (`remoting-protocol.md` §12.3, §12.4, §12.8).

use std::sync::Arc;

use rand::Rng;
use tracing::Span;

use common::properties::{keys, Properties};
use common::sysflag::message as sysflag;
use common::topic::{self, TopicConfig, TopicFilterType};
use common::{perm, MessageExt, ResponseCode};
use remoting::header::broker::{
    ConsumerSendMsgBackRequestHeader, SendMessageRequestHeader, SendMessageRequestHeaderV2, SendMessageResponseHeader,
};
use remoting::{Channel, RemotingCommand, RequestCode};
use store::{PutMessage, PutResult};

use crate::context::BrokerContext;
use crate::metrics::MessageType;
use crate::outcome::PutOutcome;
use crate::processor::try_header;
use crate::reroute::{self, Destination};
use crate::stats::BrokerStats;
use plugin_api::{MessageView, QueueView, SelectContext};

/// `MQVersion.V3_4_9`: from this client version on, the header's
/// `maxReconsumeTimes` is honoured.
const V3_4_9: i32 = 121;

/// A failed send: the response to return.
type Reject = RemotingCommand;

fn reject(code: ResponseCode, remark: impl Into<String>) -> Reject {
    RemotingCommand::error(code, remark)
}

pub async fn process(ctx: &Arc<BrokerContext>, ch: &Channel, req: RemotingCommand) -> Option<RemotingCommand> {
    let code = req.request_code();
    let header: SendMessageRequestHeader = if code == RequestCode::SEND_MESSAGE {
        try_header!(&req)
    } else {
        let v2: SendMessageRequestHeaderV2 = try_header!(&req);
        v2.into()
    };
    let span = Span::current();
    span.record("topic", header.topic.as_str());
    span.record("group", header.producer_group.as_str());
    BrokerStats::add(&ctx.stats.send_requests, 1);
    // Java decides by the header's `batch` (`m`) flag. rocketmq-client-cpp 2.1
    // sends batches as SEND_MESSAGE_V2 with `m` = "1" (its bool-to-string), which
    // `Boolean.parseBoolean` (and so a Java broker) reads as false, storing the
    // whole batch as one message (rocketmq-client-cpp issues #189, #363).
    let batch = code == RequestCode::SEND_BATCH_MESSAGE
        || (code == RequestCode::SEND_MESSAGE_V2
            && (header.batch == Some(true) || req.ext_fields.get("m").is_some_and(|m| m.trim() == "1")));
    let mut resp = match &ctx.tracer {
        None => match send(ctx, ch, &req, header, batch).await {
            Ok(r) | Err(r) => r,
        },
        Some(tracer) => {
            use opentelemetry::trace::FutureExt as _;
            let cx = crate::spans::start_send(tracer, ctx, &header, batch);
            let (Ok(r) | Err(r)) = send(ctx, ch, &req, header, batch).with_context(cx.clone()).await;
            crate::spans::end_send(&cx, r.code, r.code == ResponseCode::SUCCESS.0);
            r
        }
    };
    let stored = [
        ResponseCode::SUCCESS,
        ResponseCode::FLUSH_DISK_TIMEOUT,
        ResponseCode::FLUSH_SLAVE_TIMEOUT,
        ResponseCode::SLAVE_NOT_AVAILABLE,
    ];
    if !stored.contains(&resp.response_code()) {
        BrokerStats::add(&ctx.stats.send_failures, 1);
    }
    // The Java client reads these two keys without a null check.
    resp.ext_fields.insert(keys::MSG_REGION, ctx.config.region_id.clone());
    resp.ext_fields.insert(keys::TRACE_SWITCH, if ctx.config.trace_on { "true" } else { "false" });
    Some(resp)
}

/// The broker's region and trace switch, stamped into every message a producer
/// sends as RocketMQ's broker stamps them: consumers' message-trace records name
/// the region, and skip messages whose `TRACE_ON` is `false`.
fn stamp_region(ctx: &BrokerContext, props: &mut Properties) {
    props.insert(keys::MSG_REGION, ctx.config.region_id.clone());
    props.insert(keys::TRACE_SWITCH, if ctx.config.trace_on { "true" } else { "false" });
}

/// Checks shared by every send: broker and topic permissions, topic name, topic
/// existence (auto-creating it when allowed) and the queue id.
fn check_topic(ctx: &BrokerContext, h: &SendMessageRequestHeader, ch: &Channel) -> Result<TopicConfig, Reject> {
    if let Some(refused) = ctx.refuse_write() {
        return Err(refused);
    }
    if !ctx.is_writeable() {
        return Err(reject(
            ResponseCode::NO_PERMISSION,
            format!("the broker[{}] sending message is forbidden", ctx.broker_addr),
        ));
    }
    if let Err(e) = topic::validate_topic(&h.topic) {
        return Err(reject(ResponseCode::SYSTEM_ERROR, format!("the topic[{}] is invalid: {e}", h.topic)));
    }
    if topic::is_not_allowed_send(&h.topic) {
        return Err(reject(
            ResponseCode::NO_PERMISSION,
            format!("Sending message to topic[{}] is forbidden.", h.topic),
        ));
    }
    let tc = match ctx.topics.get(&h.topic) {
        Some(tc) => tc,
        None => {
            let sys_flag = if h.unit_mode.unwrap_or(false) {
                if topic::is_retry_topic(&h.topic) {
                    common::sysflag::topic::UNIT_SUB
                } else {
                    common::sysflag::topic::UNIT
                }
            } else {
                0
            };
            let created = ctx.topics.create_in_send(&h.topic, &h.default_topic, h.default_topic_queue_nums, sys_flag);
            match created {
                Some(tc) => tc,
                None if topic::is_retry_topic(&h.topic) => {
                    ctx.topics.create_system(&h.topic, 1, perm::READ_WRITE, sys_flag)
                }
                None => {
                    let why = if ctx.config.auto_create_topic_enable {
                        format!("its template topic {} does not allow auto-creation", h.default_topic)
                    } else {
                        "auto-creation is disabled on this broker (autoCreateTopicEnable=false)".to_owned()
                    };
                    return Err(reject(
                        ResponseCode::TOPIC_NOT_EXIST,
                        format!(
                            "topic[{}] not exist, apply first please! ({why}; producer {})",
                            h.topic,
                            ch.peer_addr()
                        ),
                    ));
                }
            }
        }
    };
    if !perm::is_writeable(tc.perm) {
        return Err(reject(
            ResponseCode::NO_PERMISSION,
            format!("the topic[{}] sending message is forbidden", h.topic),
        ));
    }
    let valid = tc.read_queue_nums.max(tc.write_queue_nums);
    if h.queue_id >= valid {
        return Err(reject(
            ResponseCode::SYSTEM_ERROR,
            format!(
                "request queueId[{}] is illegal, topic {} has {} queues, producer {}",
                h.queue_id,
                h.topic,
                valid,
                ch.peer_addr()
            ),
        ));
    }
    Ok(tc)
}

fn pick_queue(requested: i32, tc: &TopicConfig) -> i32 {
    if requested >= 0 {
        requested
    } else {
        rand::thread_rng().gen_range(0..tc.write_queue_nums.max(1))
    }
}

/// The queue a topic's server-side selector plugin picks (`[[broker.plugin_binding]]`
/// of a `queue_selector`) for a message with encoded properties `raw` and `body`,
/// replacing the one the client asked for; the response names it, and clients take
/// the queue from the response. A batch goes where its first message goes (a batch
/// is appended to one queue). `Ok(None)`: no selector bound (or the message is a
/// retry). A failing plugin falls back to the built-in hash/round robin unless its
/// policy is `reject`, which refuses the send.
fn server_side_queue(
    ctx: &BrokerContext,
    tc: &TopicConfig,
    h: &SendMessageRequestHeader,
    raw: &str,
    body: &[u8],
) -> Result<Option<i32>, String> {
    if topic::is_retry_topic(&h.topic) {
        return Ok(None);
    }
    let Some(selector) = ctx.plugins.selector_for(&h.topic) else { return Ok(None) };
    let perm = u32::try_from(tc.perm).unwrap_or(0);
    let queues: Vec<QueueView<'_>> = (0..tc.write_queue_nums.max(0) as u32)
        .map(|queue_id| QueueView { broker_name: &ctx.config.broker_name, queue_id, perm, zone: "" })
        .collect();
    if queues.is_empty() {
        return Ok(None);
    }
    let (tags, found_keys) = crate::filter::tags_and_keys(raw.as_bytes());
    let view = MessageView {
        topic: &h.topic,
        tags: tags.unwrap_or(""),
        keys: found_keys.unwrap_or(""),
        properties: raw.as_bytes(),
        body: Some(body),
        body_size: body.len() as u32,
        queue_id: h.queue_id.max(0) as u32,
        born_timestamp: h.born_timestamp,
        reconsume_times: h.reconsume_times.unwrap_or(0).max(0) as u32,
        ..MessageView::default()
    };
    let ctx_view = SelectContext { topic: &h.topic, queues: &queues };
    match selector.select_one(&ctx_view, &view) {
        Ok(i) => Ok(queues.get(i as usize).map(|q| q.queue_id as i32)),
        Err(e) => Err(format!("queue selector plugin `{}` failed: {e}", selector.name())),
    }
}

async fn send(
    ctx: &Arc<BrokerContext>,
    ch: &Channel,
    req: &RemotingCommand,
    h: SendMessageRequestHeader,
    batch: bool,
) -> Result<RemotingCommand, Reject> {
    let tc = check_topic(ctx, &h, ch)?;
    let queue_id = pick_queue(h.queue_id, &tc);
    Span::current().record("queue_id", queue_id);
    if batch {
        return send_batch(ctx, ch, req, &h, &tc, queue_id).await;
    }
    let body = req.body_bytes();
    let max = ctx.config.store.max_message_size.as_u64() as usize;
    if body.len() > max {
        return Err(reject(
            ResponseCode::MESSAGE_ILLEGAL,
            format!("the message body size {} exceeds the maximum {} (maxMessageSize)", body.len(), max),
        ));
    }
    let queue_id = match server_side_queue(ctx, &tc, &h, h.properties.as_deref().unwrap_or(""), &body) {
        Ok(Some(q)) => q,
        Ok(None) => queue_id,
        Err(remark) => return Err(reject(ResponseCode::SYSTEM_ERROR, remark)),
    };
    let mut props = Properties::decode(h.properties.as_deref().unwrap_or(""));
    let message_type = ctx.metrics.enabled().then(|| MessageType::of(&props));
    let mut dest = Destination::new(h.topic.clone(), queue_id);
    let mut sys_flag = h.sys_flag;
    let reconsume_times = h.reconsume_times.unwrap_or(0);

    // A client's fallback resend of a failed message: to the DLQ once it has been
    // retried enough.
    if let Some(group) = h.topic.strip_prefix(topic::RETRY_GROUP_TOPIC_PREFIX) {
        let Some(gc) = ctx.groups.find_or_create(group) else {
            return Err(reject(
                ResponseCode::SUBSCRIPTION_GROUP_NOT_EXIST,
                format!("subscription group not exist, {group}"),
            ));
        };
        let max_times = match h.max_reconsume_times {
            Some(m) if req.version >= V3_4_9 => m,
            _ => gc.retry_max_times,
        };
        if reconsume_times >= max_times {
            dest = reroute::to_dead_letter(ctx, group, &mut props);
        }
    }

    if tc.topic_filter_type == TopicFilterType::MultiTag {
        sys_flag |= sysflag::MULTI_TAGS;
    }
    props.remove(keys::WAIT_STORE_MSG_OK);
    props.insert(keys::CLUSTER, ctx.config.broker_cluster_name.clone());
    stamp_region(ctx, &mut props);

    let tx_prepared = props.get(keys::TRANSACTION_PREPARED).is_some_and(|v| v.eq_ignore_ascii_case("true"));
    if tx_prepared {
        if ctx.runtime.reject_transaction_message() {
            return Err(reject(
                ResponseCode::NO_PERMISSION,
                format!("the broker[{}] sending transaction message is forbidden", ctx.broker_addr),
            ));
        }
        reroute::to_half(ctx, &mut props, &mut dest, &mut sys_flag);
    } else {
        match reroute::to_timer(ctx, &mut props, &mut dest, common::time::now_ms()) {
            Ok(true) => {}
            Ok(false) => {
                reroute::to_delay_level(ctx, &mut props, &mut dest, sys_flag);
            }
            Err(remark) => return Err(reject(ResponseCode::MESSAGE_ILLEGAL, remark)),
        }
    }

    let properties = props.encode();
    let put = PutMessage {
        tags_code: PutMessage::tags_code_for(&dest.topic, &properties),
        topic: dest.topic,
        queue_id: dest.queue_id,
        flag: h.flag,
        sys_flag,
        born_timestamp: h.born_timestamp,
        born_host: ch.peer_addr(),
        reconsume_times,
        prepared_transaction_offset: 0,
        body,
        properties,
    };
    let body_len = put.body.len() as u64;
    let append = ctx.tracer.as_ref().and_then(|t| crate::spans::start_append(t, ctx, &h.topic));
    let result = ctx.store.put(put).await;
    drop(append);
    if result.status.is_stored() {
        ctx.record_put(&h.topic, 1, result.wrote_bytes as u64);
        if let Some(t) = message_type {
            ctx.metrics.record_in(&h.topic, t, [body_len]);
        }
    }
    to_response(ctx, &result, queue_id, result.msg_id())
}

/// The send response for a store result (§12.3 step 9): a stored message's code
/// (SUCCESS, or FLUSH_* and SLAVE_NOT_AVAILABLE, which still store) with its offsets,
/// or the refusal.
fn to_response(
    ctx: &BrokerContext,
    result: &PutResult,
    queue_id: i32,
    msg_id: String,
) -> Result<RemotingCommand, Reject> {
    let outcome = PutOutcome::of(result.status, ctx);
    if !outcome.is_stored() {
        return Err(outcome.into_error());
    }
    Ok(RemotingCommand::response_with(
        outcome.code,
        &SendMessageResponseHeader {
            msg_id,
            queue_id,
            queue_offset: result.queue_offset,
            transaction_id: None,
            batch_uniq_id: None,
        },
    ))
}

async fn send_batch(
    ctx: &Arc<BrokerContext>,
    ch: &Channel,
    req: &RemotingCommand,
    h: &SendMessageRequestHeader,
    tc: &TopicConfig,
    queue_id: i32,
) -> Result<RemotingCommand, Reject> {
    if topic::is_retry_topic(&h.topic) {
        return Err(reject(
            ResponseCode::MESSAGE_ILLEGAL,
            format!("batch request does not support retry group {}", h.topic),
        ));
    }
    let body = req.body_bytes();
    let max = ctx.config.store.max_message_size.as_u64() as usize;
    if body.len() > max {
        return Err(reject(
            ResponseCode::MESSAGE_ILLEGAL,
            format!("the batch body size {} exceeds the maximum {} (maxMessageSize)", body.len(), max),
        ));
    }
    let items = common::batch::decode(&body)
        .map_err(|e| reject(ResponseCode::MESSAGE_ILLEGAL, format!("malformed batch body: {e}")))?;
    if items.is_empty() {
        return Err(reject(ResponseCode::MESSAGE_ILLEGAL, "empty batch"));
    }
    let mut batch_props = Properties::decode(h.properties.as_deref().unwrap_or(""));
    let message_type = ctx.metrics.enabled().then(|| MessageType::of(&batch_props));
    let sizes: Vec<u64> =
        if message_type.is_some() { items.iter().map(|i| i.body.len() as u64).collect() } else { Vec::new() };
    batch_props.remove(keys::WAIT_STORE_MSG_OK);
    batch_props.insert(keys::CLUSTER, ctx.config.broker_cluster_name.clone());
    stamp_region(ctx, &mut batch_props);
    let batch_props = batch_props.encode();
    let first = common::batch::merge_properties(&items[0].properties_str(), &batch_props);
    let queue_id = match server_side_queue(ctx, tc, h, &first, &items[0].body) {
        Ok(Some(q)) => q,
        Ok(None) => queue_id,
        Err(remark) => return Err(reject(ResponseCode::SYSTEM_ERROR, remark)),
    };
    let mut sys_flag = h.sys_flag;
    if sysflag::transaction_type(sys_flag) != sysflag::TRANSACTION_NOT_TYPE {
        return Err(reject(ResponseCode::MESSAGE_ILLEGAL, "batch messages cannot be transactional"));
    }
    if tc.topic_filter_type == TopicFilterType::MultiTag {
        sys_flag |= sysflag::MULTI_TAGS;
    }
    let mut puts = Vec::with_capacity(items.len());
    for item in items {
        let item_props = item.properties_str();
        if common::properties::find_in_encoded(&item_props, keys::DELAY_TIME_LEVEL).is_some_and(|l| l != "0") {
            return Err(reject(ResponseCode::MESSAGE_ILLEGAL, "batch messages cannot be delayed"));
        }
        // Nor timed: a batch is appended to one queue as is, and silently
        // delivering a timed message at once (what RocketMQ 5 does) is worse.
        if item_props.contains("TIMER_D")
            && [keys::TIMER_DELIVER_MS, keys::TIMER_DELAY_SEC, keys::TIMER_DELAY_MS]
                .iter()
                .any(|k| common::properties::find_in_encoded(&item_props, k).is_some())
        {
            return Err(reject(
                ResponseCode::MESSAGE_ILLEGAL,
                "batch messages cannot be timed (TIMER_DELIVER_MS, TIMER_DELAY_SEC, TIMER_DELAY_MS)",
            ));
        }
        let props = common::batch::merge_properties(&item_props, &batch_props);
        let tags_code = common::hash::tags_code(common::properties::find_in_encoded(&props, keys::TAGS));
        puts.push(PutMessage {
            topic: h.topic.clone(),
            queue_id,
            flag: item.flag,
            sys_flag,
            born_timestamp: h.born_timestamp,
            born_host: ch.peer_addr(),
            reconsume_times: 0,
            prepared_transaction_offset: 0,
            body: item.body,
            properties: props,
            tags_code,
        });
    }
    let n = puts.len() as u64;
    let append = ctx.tracer.as_ref().and_then(|t| crate::spans::start_append(t, ctx, &h.topic));
    let result = ctx.store.put_batch(puts).await;
    drop(append);
    if result.status.is_stored() {
        ctx.record_put(&h.topic, n, result.wrote_bytes as u64);
        if let Some(t) = message_type {
            ctx.metrics.record_in(&h.topic, t, sizes);
        }
    }
    to_response(ctx, &result, queue_id, result.msg_ids())
}

/// CONSUMER_SEND_MSG_BACK: a consumer failed a message; re-topic it to the group's
/// retry topic through the delay levels, or to its DLQ after too many attempts.
pub async fn consumer_send_msg_back(
    ctx: &Arc<BrokerContext>,
    ch: &Channel,
    req: RemotingCommand,
) -> Option<RemotingCommand> {
    let h: ConsumerSendMsgBackRequestHeader = try_header!(&req);
    Span::current().record("group", h.group.as_str());
    Some(match send_back(ctx, ch, &req, &h).await {
        Ok(r) | Err(r) => r,
    })
}

async fn send_back(
    ctx: &Arc<BrokerContext>,
    _ch: &Channel,
    req: &RemotingCommand,
    h: &ConsumerSendMsgBackRequestHeader,
) -> Result<RemotingCommand, Reject> {
    if let Some(refused) = ctx.refuse_write() {
        return Err(refused);
    }
    let Some(gc) = ctx.groups.find_or_create(&h.group) else {
        return Err(reject(
            ResponseCode::SUBSCRIPTION_GROUP_NOT_EXIST,
            format!("subscription group not exist, {}", h.group),
        ));
    };
    if !ctx.is_writeable() {
        return Err(reject(
            ResponseCode::NO_PERMISSION,
            format!("the broker[{}] sending message is forbidden", ctx.broker_addr),
        ));
    }
    if gc.retry_queue_nums <= 0 {
        return Ok(RemotingCommand::success());
    }
    let Some(raw) = ctx.store.look_message_by_offset(h.offset) else {
        return Err(reject(ResponseCode::SYSTEM_ERROR, format!("look message by offset failed, {}", h.offset)));
    };
    let original = MessageExt::decode(&raw, false).map_err(|e| {
        reject(ResponseCode::SYSTEM_ERROR, format!("stored message at {} is unreadable: {e}", h.offset))
    })?;
    let retry = reroute::retry_topic(ctx, &h.group, gc.retry_queue_nums);
    let max_times = match h.max_reconsume_times {
        Some(m) if req.version >= V3_4_9 => m,
        _ => gc.retry_max_times,
    };
    let mut props = original.properties.clone();
    if !props.contains(keys::RETRY_TOPIC) {
        props.insert(keys::RETRY_TOPIC, original.topic.clone());
    }
    props.remove(keys::REAL_TOPIC);
    props.remove(keys::REAL_QUEUE_ID);
    let mut dest = if original.reconsume_times >= max_times || h.delay_level < 0 {
        reroute::to_dead_letter(ctx, &h.group, &mut props)
    } else {
        let level = if h.delay_level == 0 { 3 + original.reconsume_times } else { h.delay_level };
        props.insert(keys::DELAY_TIME_LEVEL, level.to_string());
        let q = rand::thread_rng().gen_range(0..retry.write_queue_nums.max(1));
        Destination::new(retry.topic_name, q)
    };
    if !props.contains(keys::ORIGIN_MESSAGE_ID) {
        // Java's broker uses `msgExt.getMsgId()` of the record it looked up, which
        // is its offsetMsgId; the header's `originMsgId` (the client's UNIQ_KEY) is
        // ignored. Tools resolve this id with VIEW_MESSAGE_BY_ID, so it must decode
        // to a commit-log address.
        props.insert(keys::ORIGIN_MESSAGE_ID, original.offset_msg_id());
    }
    props.remove(keys::WAIT_STORE_MSG_OK);
    reroute::to_delay_level(ctx, &mut props, &mut dest, original.sys_flag);
    Span::current().record("topic", dest.topic.as_str());
    let put = PutMessage {
        reconsume_times: original.reconsume_times + 1,
        prepared_transaction_offset: 0,
        ..PutMessage::from_stored(&original, dest.topic, dest.queue_id, &props)
    };
    let result = ctx.store.put(put).await;
    let outcome = PutOutcome::of(result.status, &**ctx);
    if outcome.is_stored() {
        Ok(RemotingCommand::success())
    } else {
        Err(outcome.into_error())
    }
}
