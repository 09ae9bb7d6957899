//! Offsets and group membership: QUERY/UPDATE_CONSUMER_OFFSET (14/15),
//! SEARCH_OFFSET_BY_TIMESTAMP (29), GET_MAX_OFFSET (30), GET_MIN_OFFSET (31),
//! GET_EARLIEST_MSG_STORETIME (32), GET_CONSUMER_LIST_BY_GROUP (38).

use std::sync::Arc;

use tracing::Span;

use common::ResponseCode;
use remoting::body::ConsumerListBody;
use remoting::header::broker::*;
use remoting::{Channel, RemotingCommand};

use crate::context::BrokerContext;
use crate::processor::{json_response, try_header};

pub async fn query_consumer_offset(
    ctx: &Arc<BrokerContext>,
    _: &Channel,
    req: RemotingCommand,
) -> Option<RemotingCommand> {
    let h: QueryConsumerOffsetRequestHeader = try_header!(&req);
    record(&h.topic, h.queue_id, &h.consumer_group);
    let stored = ctx.offsets.query(&h.consumer_group, &h.topic, h.queue_id);
    if stored >= 0 {
        return Some(RemotingCommand::response_with(ResponseCode::SUCCESS, &OffsetResponseHeader { offset: stored }));
    }
    // No committed offset (§12.6): a young queue whose first message is still hot
    // starts from 0, anything else is "not found" and the client decides.
    let min = ctx.store.min_offset_in_queue(&h.topic, h.queue_id);
    if min <= 0 && h.set_zero_if_not_found != Some(false) && !first_message_on_disk(ctx, &h.topic, h.queue_id) {
        return Some(RemotingCommand::response_with(ResponseCode::SUCCESS, &OffsetResponseHeader { offset: 0 }));
    }
    Some(RemotingCommand::error(
        ResponseCode::QUERY_NOT_FOUND,
        "Not found, V3_0_6_SNAPSHOT maybe this group consumer boot first",
    ))
}

/// RocketMQ's `checkInDiskByConsumeOffset(topic, queue, 0)`: whether the queue's
/// first message is further behind the commit-log head than the page cache holds.
fn first_message_on_disk(ctx: &BrokerContext, topic: &str, queue_id: i32) -> bool {
    let get = store::GetRequest::new(topic, queue_id, 0, 1);
    let result = ctx.store.get_messages(&get);
    let Some(first) = result.messages.first() else { return false };
    let Ok(view) = common::record::RecordView::parse(first) else { return false };
    ctx.role.behind_page_cache(view.physical_offset(), ctx.store.commit_log_max_offset())
}

pub async fn update_consumer_offset(
    ctx: &Arc<BrokerContext>,
    _: &Channel,
    req: RemotingCommand,
) -> Option<RemotingCommand> {
    let h: UpdateConsumerOffsetRequestHeader = try_header!(&req);
    record(&h.topic, h.queue_id, &h.consumer_group);
    ctx.offsets.commit(&h.consumer_group, &h.topic, h.queue_id, h.commit_offset);
    Some(RemotingCommand::success())
}

pub async fn search_offset_by_timestamp(
    ctx: &Arc<BrokerContext>,
    _: &Channel,
    req: RemotingCommand,
) -> Option<RemotingCommand> {
    let h: SearchOffsetRequestHeader = try_header!(&req);
    let offset = ctx.store.offset_by_timestamp(&h.topic, h.queue_id, h.timestamp);
    Some(RemotingCommand::response_with(ResponseCode::SUCCESS, &OffsetResponseHeader { offset }))
}

pub async fn get_max_offset(ctx: &Arc<BrokerContext>, _: &Channel, req: RemotingCommand) -> Option<RemotingCommand> {
    let h: GetMaxOffsetRequestHeader = try_header!(&req);
    let offset = ctx.store.max_offset_in_queue(&h.topic, h.queue_id);
    Some(RemotingCommand::response_with(ResponseCode::SUCCESS, &OffsetResponseHeader { offset }))
}

pub async fn get_min_offset(ctx: &Arc<BrokerContext>, _: &Channel, req: RemotingCommand) -> Option<RemotingCommand> {
    let h: TopicQueueRequestHeader = try_header!(&req);
    let offset = ctx.store.min_offset_in_queue(&h.topic, h.queue_id);
    Some(RemotingCommand::response_with(ResponseCode::SUCCESS, &OffsetResponseHeader { offset }))
}

pub async fn get_earliest_msg_storetime(
    ctx: &Arc<BrokerContext>,
    _: &Channel,
    req: RemotingCommand,
) -> Option<RemotingCommand> {
    let h: TopicQueueRequestHeader = try_header!(&req);
    let timestamp = ctx.store.earliest_message_time(&h.topic, h.queue_id).unwrap_or(-1);
    Some(RemotingCommand::response_with(ResponseCode::SUCCESS, &GetEarliestMsgStoretimeResponseHeader { timestamp }))
}

pub async fn get_consumer_list_by_group(
    ctx: &Arc<BrokerContext>,
    _: &Channel,
    req: RemotingCommand,
) -> Option<RemotingCommand> {
    let h: ConsumerGroupRequestHeader = try_header!(&req);
    Span::current().record("group", h.consumer_group.as_str());
    match ctx.clients.consumer_group(&h.consumer_group) {
        Some(g) if !g.channels.is_empty() => {
            Some(json_response(&ConsumerListBody { consumer_id_list: g.client_ids() }))
        }
        _ => Some(RemotingCommand::error(
            ResponseCode::SYSTEM_ERROR,
            format!("no consumer for this group, {}", h.consumer_group),
        )),
    }
}

fn record(topic: &str, queue_id: i32, group: &str) {
    let span = Span::current();
    span.record("topic", topic);
    span.record("queue_id", queue_id);
    span.record("group", group);
}
