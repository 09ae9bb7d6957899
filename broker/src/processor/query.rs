//! Message lookup for tools: VIEW_MESSAGE_BY_ID (33) by commit-log offset (decoded
//! by the client from the offsetMsgId) and QUERY_MESSAGE (12) by key or UNIQ_KEY
//! through the index.

use std::sync::Arc;

use common::ResponseCode;
use remoting::command::Body;
use remoting::header::broker::{QueryMessageRequestHeader, QueryMessageResponseHeader, ViewMessageRequestHeader};
use remoting::{Channel, RemotingCommand};

use crate::context::BrokerContext;
use crate::processor::try_header;

/// RocketMQ's `defaultQueryMaxNum`, used for UNIQ_KEY queries.
const DEFAULT_QUERY_MAX_NUM: usize = 32;
/// Upper bound on `maxNum`, whatever the client asks (RocketMQ's `maxMsgsNumBatch`):
/// a query must not allocate without bound.
const MAX_QUERY_NUM: usize = 64;

pub async fn view_message_by_id(
    ctx: &Arc<BrokerContext>,
    _: &Channel,
    req: RemotingCommand,
) -> Option<RemotingCommand> {
    let h: ViewMessageRequestHeader = try_header!(&req);
    match ctx.store.look_message_by_offset(h.offset) {
        Some(record) => Some(RemotingCommand::success().with_body(record)),
        None => Some(RemotingCommand::error(
            ResponseCode::SYSTEM_ERROR,
            format!("can not find message by the offset, {}", h.offset),
        )),
    }
}

pub async fn query_message(ctx: &Arc<BrokerContext>, _: &Channel, req: RemotingCommand) -> Option<RemotingCommand> {
    let h: QueryMessageRequestHeader = try_header!(&req);
    tracing::Span::current().record("topic", h.topic.as_str());
    let unique = req.ext_fields.get("_UNIQUE_KEY_QUERY") == Some("true");
    let max_num = if unique { DEFAULT_QUERY_MAX_NUM } else { (h.max_num.max(1) as usize).min(MAX_QUERY_NUM) };
    let records = ctx.store.query_message(&h.topic, &h.key, max_num, h.begin_timestamp, h.end_timestamp);
    if records.is_empty() {
        return Some(RemotingCommand::error(
            ResponseCode::QUERY_NOT_FOUND,
            "can not find message, maybe time range not correct",
        ));
    }
    let header = QueryMessageResponseHeader {
        index_last_update_timestamp: common::time::now_ms(),
        index_last_update_phyoffset: ctx.store.dispatched_offset(),
    };
    let mut resp = RemotingCommand::response_with(ResponseCode::SUCCESS, &header);
    resp.body = Body::Chain(records);
    Some(resp)
}
