//! Client registration and queue locks: HEART_BEAT (34), UNREGISTER_CLIENT (35),
//! CHECK_CLIENT_CONFIG (46), LOCK_BATCH_MQ (41), UNLOCK_BATCH_MQ (42)
//! (`remoting-protocol.md` §12.2, §12.7).

use std::sync::Arc;
use std::time::Instant;

use tracing::{debug, Span};

use common::perm;
use common::subscription::{HeartbeatData, SubscriptionData};
use common::topic;
use common::ResponseCode;
use remoting::body::{LockBatchRequestBody, LockBatchResponseBody};
use remoting::header::broker::UnregisterClientRequestHeader;
use remoting::{Channel, RemotingCommand};

use crate::client_manager::ClientChannelInfo;
use crate::context::BrokerContext;
use crate::processor::{json_response, try_header};

pub async fn heart_beat(ctx: &Arc<BrokerContext>, ch: &Channel, req: RemotingCommand) -> Option<RemotingCommand> {
    let hb: HeartbeatData = match remoting::json::from_slice(&req.body_bytes()) {
        Ok(hb) => hb,
        Err(e) => {
            return Some(RemotingCommand::error(ResponseCode::SYSTEM_ERROR, format!("invalid heartbeat body: {e}")))
        }
    };
    let info = ClientChannelInfo {
        channel: ch.clone(),
        client_id: hb.client_id.clone(),
        language: req.language,
        version: req.version,
        last_update: Instant::now(),
    };
    for consumer in &hb.consumer_data_set {
        if consumer.group_name.is_empty() {
            continue;
        }
        Span::current().record("group", consumer.group_name.as_str());
        let Some(gc) = ctx.groups.find_or_create(&consumer.group_name) else {
            debug!(group = %consumer.group_name, "heartbeat for an unknown group with auto-create disabled");
            continue;
        };
        // Every consumer group has a retry topic, created with its first heartbeat.
        let sys_flag = if consumer.unit_mode { common::sysflag::topic::UNIT_SUB } else { 0 };
        ctx.topics.create_system(
            &topic::retry_topic(&consumer.group_name),
            gc.retry_queue_nums.max(1),
            perm::READ_WRITE,
            sys_flag,
        );
        if ctx.clients.register_consumer(consumer, info.clone()) {
            ctx.notify_group_changed(&consumer.group_name);
        }
    }
    for producer in &hb.producer_data_set {
        if !producer.group_name.is_empty() {
            ctx.clients.register_producer(&producer.group_name, info.clone());
        }
    }
    Some(RemotingCommand::success())
}

pub async fn unregister_client(
    ctx: &Arc<BrokerContext>,
    ch: &Channel,
    req: RemotingCommand,
) -> Option<RemotingCommand> {
    let h: UnregisterClientRequestHeader = try_header!(&req);
    if let Some(g) = h.producer_group.as_deref().filter(|g| !g.is_empty()) {
        ctx.clients.unregister_producer(g, ch);
    }
    if let Some(g) = h.consumer_group.as_deref().filter(|g| !g.is_empty()) {
        if ctx.clients.unregister_consumer(g, ch) {
            ctx.notify_group_changed(g);
        }
    }
    Some(RemotingCommand::success())
}

/// CHECK_CLIENT_CONFIG: a consumer asks whether the broker can evaluate its
/// subscription (SQL92 needs `enablePropertyFilter`) before it starts.
pub async fn check_client_config(
    ctx: &Arc<BrokerContext>,
    _: &Channel,
    req: RemotingCommand,
) -> Option<RemotingCommand> {
    #[derive(serde::Deserialize, Default)]
    #[serde(rename_all = "camelCase", default)]
    struct CheckClientRequestBody {
        subscription_data: Option<SubscriptionData>,
    }
    let body: CheckClientRequestBody = match remoting::json::from_slice(&req.body_bytes()) {
        Ok(b) => b,
        Err(e) => return Some(RemotingCommand::error(ResponseCode::SYSTEM_ERROR, format!("invalid body: {e}"))),
    };
    let Some(sub) = body.subscription_data else { return Some(RemotingCommand::success()) };
    if sub.is_tag_type() {
        return Some(RemotingCommand::success());
    }
    if !ctx.runtime.enable_property_filter() {
        return Some(RemotingCommand::error(
            ResponseCode::SYSTEM_ERROR,
            format!("The broker does not support consumer to filter message by {}", sub.expression_type),
        ));
    }
    match crate::filter::MessageFilter::from_subscription(&sub) {
        Ok(_) => Some(RemotingCommand::success()),
        Err(e) => Some(RemotingCommand::error(ResponseCode::SUBSCRIPTION_PARSE_FAILED, e.to_string())),
    }
}

pub async fn lock_batch_mq(ctx: &Arc<BrokerContext>, _: &Channel, req: RemotingCommand) -> Option<RemotingCommand> {
    let body: LockBatchRequestBody = match remoting::json::from_slice(&req.body_bytes()) {
        Ok(b) => b,
        Err(e) => return Some(RemotingCommand::error(ResponseCode::SYSTEM_ERROR, format!("invalid lock body: {e}"))),
    };
    Span::current().record("group", body.consumer_group.as_str());
    let held = ctx.locks.try_lock_batch(&body.consumer_group, &body.mq_set, &body.client_id);
    Some(json_response(&LockBatchResponseBody { lock_ok_mq_set: held.into_iter().collect() }))
}

pub async fn unlock_batch_mq(ctx: &Arc<BrokerContext>, _: &Channel, req: RemotingCommand) -> Option<RemotingCommand> {
    let body: LockBatchRequestBody = match remoting::json::from_slice(&req.body_bytes()) {
        Ok(b) => b,
        Err(e) => return Some(RemotingCommand::error(ResponseCode::SYSTEM_ERROR, format!("invalid unlock body: {e}"))),
    };
    ctx.locks.unlock_batch(&body.consumer_group, &body.mq_set, &body.client_id);
    Some(RemotingCommand::success())
}
