//! Request-reply (RocketMQ's RPC pattern): SEND_REPLY_MESSAGE (324) and
//! SEND_REPLY_MESSAGE_V2 (325) from the responder; the broker pushes the reply to
//! the requesting client — found by the `REPLY_TO_CLIENT` client id among its
//! producer connections — with PUSH_REPLY_MESSAGE_TO_CLIENT (326), and stores it in
//! the reply topic as RocketMQ does (`storeReplyMessageEnable`).

use std::sync::Arc;
use std::time::Duration;

use tracing::{debug, Span};

use common::properties::{keys, Properties};
use common::{perm, ResponseCode};
use remoting::header::broker::{
    ReplyMessageRequestHeader, SendMessageRequestHeader, SendMessageRequestHeaderV2, SendMessageResponseHeader,
};
use remoting::{Channel, RemotingCommand, RequestCode};
use store::PutMessage;

use crate::context::BrokerContext;
use crate::outcome::PutOutcome;
use crate::processor::try_header;

const PUSH_TIMEOUT: Duration = Duration::from_secs(3);

pub async fn send_reply(ctx: &Arc<BrokerContext>, ch: &Channel, req: RemotingCommand) -> Option<RemotingCommand> {
    let h: SendMessageRequestHeader = if req.request_code() == RequestCode::SEND_REPLY_MESSAGE {
        try_header!(&req)
    } else {
        let v2: SendMessageRequestHeaderV2 = try_header!(&req);
        v2.into()
    };
    Span::current().record("topic", h.topic.as_str());
    if let Some(refused) = ctx.refuse_write() {
        return Some(refused);
    }
    let mut props = Properties::decode(h.properties.as_deref().unwrap_or(""));
    let Some(sender) = props.get(keys::MESSAGE_REPLY_TO_CLIENT).map(str::to_owned) else {
        return Some(RemotingCommand::error(
            ResponseCode::MESSAGE_ILLEGAL,
            "a reply message needs the REPLY_TO_CLIENT property",
        ));
    };
    props.insert(keys::PUSH_REPLY_TIME, common::time::now_ms().to_string());
    let body = req.body_bytes();
    let push = ReplyMessageRequestHeader {
        producer_group: h.producer_group.clone(),
        topic: h.topic.clone(),
        default_topic: h.default_topic.clone(),
        default_topic_queue_nums: h.default_topic_queue_nums,
        queue_id: h.queue_id,
        sys_flag: h.sys_flag,
        born_timestamp: h.born_timestamp,
        flag: h.flag,
        properties: Some(props.encode()),
        reconsume_times: h.reconsume_times,
        unit_mode: h.unit_mode,
        born_host: ch.peer_addr().to_string(),
        store_host: ctx.broker_addr.to_string(),
        store_timestamp: common::time::now_ms(),
    };
    let pushed = match ctx.clients.channel_of_client(&sender) {
        Some(requester) => {
            let cmd =
                RemotingCommand::request_with(RequestCode::PUSH_REPLY_MESSAGE_TO_CLIENT, &push).with_body(body.clone());
            match requester.request(cmd, PUSH_TIMEOUT).await {
                Ok(r) if r.response_code() == ResponseCode::SUCCESS => Ok(()),
                Ok(r) => Err(format!("push reply message to {sender} failed: {}", r.remark_str())),
                Err(e) => Err(format!("push reply message to {sender} failed: {e}")),
            }
        }
        None => Err(format!("push reply message fail, channel of <{sender}> not found.")),
    };
    if let Err(e) = &pushed {
        debug!(error = %e, "reply not delivered");
    }
    // Store the reply in its topic too, as RocketMQ does by default.
    let tc = ctx.topics.get(&h.topic).unwrap_or_else(|| ctx.topics.create_system(&h.topic, 1, perm::READ_WRITE, 0));
    let queue_id = if h.queue_id >= 0 && h.queue_id < tc.write_queue_nums { h.queue_id } else { 0 };
    let properties = props.encode();
    let put = PutMessage {
        tags_code: PutMessage::tags_code_for(&h.topic, &properties),
        topic: h.topic.clone(),
        queue_id,
        flag: h.flag,
        sys_flag: h.sys_flag,
        born_timestamp: h.born_timestamp,
        born_host: ch.peer_addr(),
        reconsume_times: h.reconsume_times.unwrap_or(0),
        prepared_transaction_offset: 0,
        body,
        properties,
    };
    let r = ctx.store.put(put).await;
    if let Err(remark) = pushed {
        return Some(RemotingCommand::error(ResponseCode::SYSTEM_ERROR, remark));
    }
    let outcome = PutOutcome::of(r.status, &**ctx);
    if !outcome.is_stored() {
        return Some(outcome.into_error());
    }
    Some(RemotingCommand::response_with(
        ResponseCode::SUCCESS,
        &SendMessageResponseHeader {
            msg_id: r.msg_id(),
            queue_id,
            queue_offset: r.queue_offset,
            transaction_id: None,
            batch_uniq_id: None,
        },
    ))
}
