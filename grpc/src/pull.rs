//! Pull consumption over gRPC: PullMessage, UpdateOffset, GetOffset and QueryOffset,
//! each turned into the remoting request a 4.x pull consumer sends (PULL_MESSAGE,
//! UPDATE_CONSUMER_OFFSET, QUERY_CONSUMER_OFFSET, GET_MIN_OFFSET / GET_MAX_OFFSET /
//! SEARCH_OFFSET_BY_TIMESTAMP), as RocketMQ's proxy turns them. Unlike a receive, a
//! pull names its queue and offset and hides nothing: the consumer keeps its own
//! progress and stores it with UpdateOffset.

use std::time::Duration;

use common::sysflag::pull as pull_flag;
use common::ResponseCode;
use remoting::header::broker::{
    GetMaxOffsetRequestHeader, OffsetResponseHeader, PullMessageRequestHeader, PullMessageResponseHeader,
    QueryConsumerOffsetRequestHeader, QueryConsumerOffsetResponseHeader, SearchOffsetRequestHeader,
    TopicQueueRequestHeader, UpdateConsumerOffsetRequestHeader,
};
use remoting::{RemotingCommand, RequestCode};

use crate::consume::{filter_of, group_name, poll_time, stored_type, topic_name};
use crate::convert;
use crate::pb::{self, pull_message_response::Content, Code};
use crate::service::{Backend, Messaging, Session, BROKER_TIMEOUT};
use crate::status::{ok, Failure};

/// The most messages one pull brings (the broker's cap on a pull from memory).
const MAX_BATCH: i32 = 32;

impl<B: Backend> Messaging<B> {
    /// The topic and queue id of a request's queue, which must be one of this broker's.
    fn queue_of(&self, mq: Option<&pb::MessageQueue>) -> Result<(String, i32), Failure> {
        let mq = mq.ok_or_else(|| Failure::new(Code::BadRequest, "the request names no message queue"))?;
        let topic = topic_name(mq.topic.as_ref())?;
        if mq.id < 0 {
            return Err(Failure::new(Code::BadRequest, format!("queue id {} is not a queue of topic {topic}", mq.id)));
        }
        let here = self.backend.broker_name();
        if let Some(b) = mq.broker.as_ref().filter(|b| !b.name.is_empty() && b.name != here) {
            return Err(Failure::new(
                Code::BadRequest,
                format!("queue {topic}:{} belongs to broker {}, and this endpoint serves {here}", mq.id, b.name),
            ));
        }
        Ok((topic, mq.id))
    }

    /// PullMessage: the status, the messages found, then the offset to pull from next
    /// (RocketMQ's proxy order). A failure is the status alone.
    pub(crate) async fn pull(
        &self,
        s: &Session,
        req: &pb::PullMessageRequest,
        deadline: Option<Duration>,
    ) -> Result<Vec<pb::PullMessageResponse>, Failure> {
        let group = group_name(req.group.as_ref())?;
        let (topic, queue_id) = self.queue_of(req.message_queue.as_ref())?;
        if req.offset < 0 {
            return Err(Failure::new(Code::IllegalOffset, format!("offset {} is negative", req.offset)));
        }
        let poll = poll_time(req.long_polling_timeout.as_ref(), deadline)?;
        let (exp_type, exp) = filter_of(req.filter_expression.as_ref());
        let h = PullMessageRequestHeader {
            consumer_group: group,
            topic,
            queue_id,
            queue_offset: req.offset,
            max_msg_nums: req.batch_size.clamp(1, MAX_BATCH),
            // Long polling with the request's subscription; the consumer commits its
            // offset itself (UpdateOffset).
            sys_flag: pull_flag::build(false, true, true, false),
            commit_offset: 0,
            suspend_timeout_millis: poll.as_millis() as i64,
            subscription: Some(exp),
            sub_version: 0,
            expression_type: Some(exp_type.to_owned()),
            max_msg_bytes: None,
            broker_name: None,
        };
        let cmd = RemotingCommand::request_with(RequestCode::PULL_MESSAGE, &h);
        let resp = self.invoke_for(s, cmd, poll + BROKER_TIMEOUT).await?;
        let code = resp.response_code();
        let status = match code {
            ResponseCode::SUCCESS => None,
            ResponseCode::PULL_NOT_FOUND | ResponseCode::PULL_RETRY_IMMEDIATELY => {
                Some(Failure::new(Code::MessageNotFound, "no new message"))
            }
            ResponseCode::PULL_OFFSET_MOVED => Some(Failure::new(
                Code::IllegalOffset,
                format!("offset {} is outside the queue; pull from the next offset", req.offset),
            )),
            _ => return Err(Failure::from_remoting(code, resp.remark.as_deref())),
        };
        let head: PullMessageResponseHeader = resp
            .decode_header()
            .map_err(|e| Failure::new(Code::InternalServerError, format!("unreadable pull answer: {e}")))?;
        let next = pb::PullMessageResponse { content: Some(Content::NextOffset(head.next_begin_offset)) };
        if let Some(f) = status {
            return Ok(vec![pb::PullMessageResponse { content: Some(Content::Status(f.status())) }, next]);
        }
        let records = common::record::decode_all(&resp.body_bytes(), false)
            .map_err(|e| Failure::new(Code::InternalServerError, format!("unreadable pulled records: {e}")))?;
        if records.is_empty() {
            let none = Failure::new(Code::MessageNotFound, "no match message");
            return Ok(vec![pb::PullMessageResponse { content: Some(Content::Status(none.status())) }, next]);
        }
        let mut out = Vec::with_capacity(records.len() + 2);
        out.push(pb::PullMessageResponse { content: Some(Content::Status(ok())) });
        out.extend(records.iter().map(|m| pb::PullMessageResponse {
            content: Some(Content::Message(convert::incoming(m, stored_type(m)))),
        }));
        out.push(next);
        Ok(out)
    }

    /// UpdateOffset: stores the group's progress on the queue.
    pub(crate) async fn update_offset_of(&self, s: &Session, req: &pb::UpdateOffsetRequest) -> Result<(), Failure> {
        let group = group_name(req.group.as_ref())?;
        let (topic, queue_id) = self.queue_of(req.message_queue.as_ref())?;
        if req.offset < 0 {
            return Err(Failure::new(Code::IllegalOffset, format!("offset {} is negative", req.offset)));
        }
        let h = UpdateConsumerOffsetRequestHeader { consumer_group: group, topic, queue_id, commit_offset: req.offset };
        self.invoke_ok(s, RemotingCommand::request_with(RequestCode::UPDATE_CONSUMER_OFFSET, &h)).await
    }

    /// GetOffset: the group's stored progress on the queue (OFFSET_NOT_FOUND if none).
    pub(crate) async fn get_offset_of(&self, s: &Session, req: &pb::GetOffsetRequest) -> Result<i64, Failure> {
        let group = group_name(req.group.as_ref())?;
        let (topic, queue_id) = self.queue_of(req.message_queue.as_ref())?;
        let h = QueryConsumerOffsetRequestHeader {
            consumer_group: group,
            topic,
            queue_id,
            set_zero_if_not_found: Some(false),
        };
        let cmd = RemotingCommand::request_with(RequestCode::QUERY_CONSUMER_OFFSET, &h);
        let head: QueryConsumerOffsetResponseHeader = self.invoke_header(s, cmd).await?;
        Ok(head.offset)
    }

    /// QueryOffset: the queue's first offset, its end, or the first offset stored at or
    /// after a time.
    pub(crate) async fn query_offset_of(&self, s: &Session, req: &pb::QueryOffsetRequest) -> Result<i64, Failure> {
        let (topic, queue_id) = self.queue_of(req.message_queue.as_ref())?;
        let cmd = match pb::QueryOffsetPolicy::try_from(req.query_offset_policy) {
            Ok(pb::QueryOffsetPolicy::Beginning) => {
                RemotingCommand::request_with(RequestCode::GET_MIN_OFFSET, &TopicQueueRequestHeader { topic, queue_id })
            }
            Ok(pb::QueryOffsetPolicy::End) => RemotingCommand::request_with(
                RequestCode::GET_MAX_OFFSET,
                &GetMaxOffsetRequestHeader { topic, queue_id, committed: None },
            ),
            Ok(pb::QueryOffsetPolicy::Timestamp) => {
                let at = req.timestamp.as_ref().ok_or_else(|| {
                    Failure::new(Code::BadRequest, "timestamp is required when queryOffsetPolicy is TIMESTAMP")
                })?;
                let timestamp = at.seconds.saturating_mul(1000).saturating_add(i64::from(at.nanos) / 1_000_000);
                RemotingCommand::request_with(
                    RequestCode::SEARCH_OFFSET_BY_TIMESTAMP,
                    &SearchOffsetRequestHeader { topic, queue_id, timestamp, boundary_type: None },
                )
            }
            Err(_) => {
                return Err(Failure::new(
                    Code::BadRequest,
                    format!("unrecognized queryOffsetPolicy {}", req.query_offset_policy),
                ))
            }
        };
        let head: OffsetResponseHeader = self.invoke_header(s, cmd).await?;
        Ok(head.offset)
    }
}
