//! Consumption over gRPC: QueryAssignment, ReceiveMessage, AckMessage,
//! ChangeInvisibleDuration and ForwardMessageToDeadLetterQueue, each turned into the
//! broker's POP requests (POP_MESSAGE, ACK_MESSAGE, CHANGE_MESSAGE_INVISIBLETIME,
//! CONSUMER_SEND_MSG_BACK) as RocketMQ's proxy turns them.
//!
//! A receipt handle is the message's `extraInfo` (`common::pop`) followed by its
//! commit-log offset: the handle names everything an ack needs, so the endpoint keeps
//! no state per received message.

use std::time::Duration;

use common::pop::{self, ExtraInfo, PopAnswer};
use common::properties::keys;
use common::route::TopicRouteData;
use common::{MessageExt, ResponseCode};
use remoting::header::broker::{
    AckMessageRequestHeader, ChangeInvisibleTimeRequestHeader, ChangeInvisibleTimeResponseHeader,
    ConsumerSendMsgBackRequestHeader, PopMessageRequestHeader, PopMessageResponseHeader,
};
use remoting::{RemotingCommand, RequestCode};

use crate::convert;
use crate::pb::{self, Code};
use crate::service::{Backend, Messaging, Session};
use crate::status::{ok, Failure};

/// RocketMQ's proxy bounds: invisibility of a receive (`minInvisibleTimeMillsForRecv`,
/// `maxInvisibleTimeMills`), the invisibility of an auto-renewed receive
/// (`defaultInvisibleTimeMills`) and long polling (`grpcClientConsumer{Min,Max}LongPollingTimeoutMillis`).
pub(crate) const MIN_INVISIBLE: Duration = Duration::from_secs(10);
pub(crate) const MAX_INVISIBLE: Duration = Duration::from_secs(12 * 3600);
pub(crate) const AUTO_RENEW_INVISIBLE: Duration = Duration::from_secs(60);
pub(crate) const MIN_POLL: Duration = Duration::from_secs(5);
pub(crate) const MAX_POLL: Duration = Duration::from_secs(20);
/// The most messages one receive takes (the broker's limit on a pop).
const MAX_BATCH: i32 = 32;
/// RocketMQ's default retry intervals of a consumer group (levels 1s … 2h).
const RETRY_INTERVALS: &[u64] =
    &[1, 5, 10, 30, 60, 120, 180, 240, 300, 360, 420, 480, 540, 600, 1200, 1800, 3600, 7200];

/// A consumer group as 5.x consumers see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupInfo {
    /// `consumeMessageOrderly`: messages of a queue are delivered one batch at a time,
    /// the next after the previous is acked.
    pub fifo: bool,
    /// Deliveries before a message goes to the dead-letter queue (`retryMaxTimes` + 1).
    pub max_attempts: i32,
}

/// How long a message consumed `reconsume_times` times before waits before it is
/// delivered again after a failed consumption (the group's retry policy).
pub(crate) fn retry_delay(reconsume_times: i32) -> Duration {
    let i = usize::try_from(reconsume_times).unwrap_or(0).min(RETRY_INTERVALS.len() - 1);
    Duration::from_secs(RETRY_INTERVALS[i])
}

/// The retry policy consumers of `group` are told (Telemetry settings).
pub(crate) fn backoff_policy(group: GroupInfo) -> pb::RetryPolicy {
    pb::RetryPolicy {
        max_attempts: group.max_attempts,
        strategy: Some(pb::retry_policy::Strategy::CustomizedBackoff(pb::CustomizedBackoff {
            next: RETRY_INTERVALS.iter().map(|s| prost_types::Duration { seconds: *s as i64, nanos: 0 }).collect(),
        })),
    }
}

fn millis(d: Option<&prost_types::Duration>) -> Option<i64> {
    d.map(|d| d.seconds.saturating_mul(1000).saturating_add(i64::from(d.nanos) / 1_000_000))
}

/// `grpc-timeout` (`<digits><unit>`), the time the client gives the call.
pub(crate) fn grpc_timeout(value: &str) -> Option<Duration> {
    let (digits, unit) = value.split_at(value.len().checked_sub(1)?);
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.saturating_mul(3600)),
        "M" => Duration::from_secs(n.saturating_mul(60)),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// How long a receive or pull may wait for messages: what the client asked, within
/// RocketMQ's proxy bounds and inside the call's `deadline` (its `grpc-timeout`).
pub(crate) fn poll_time(
    requested: Option<&prost_types::Duration>,
    deadline: Option<Duration>,
) -> Result<Duration, Failure> {
    let mut poll =
        millis(requested).map_or(MAX_POLL, |ms| Duration::from_millis(ms.max(0) as u64)).clamp(MIN_POLL, MAX_POLL);
    if let Some(left) = deadline {
        // Answer before the client gives up, leaving it time to read the answer.
        let room = left.saturating_sub(Duration::from_secs(1));
        if room < MIN_POLL.min(poll) {
            return Err(Failure::new(
                Code::IllegalPollingTime,
                "the deadline time remaining is not enough for polling, please check network condition",
            ));
        }
        poll = poll.min(room);
    }
    Ok(poll)
}

/// A 5.x filter expression as the remoting expression type and expression.
pub(crate) fn filter_of(f: Option<&pb::FilterExpression>) -> (&'static str, String) {
    match f {
        Some(f) if f.r#type == pb::FilterType::Sql as i32 => ("SQL92", f.expression.clone()),
        Some(f) if !f.expression.trim().is_empty() => ("TAG", f.expression.clone()),
        _ => ("TAG", "*".to_owned()),
    }
}

/// A receipt handle: the message's `extraInfo` and its commit-log offset.
fn receipt_handle(extra: &ExtraInfo, commit_log_offset: i64) -> String {
    format!("{extra} {commit_log_offset}")
}

pub(crate) fn parse_handle(handle: &str) -> Result<(ExtraInfo, Option<i64>), Failure> {
    let extra = ExtraInfo::parse(handle).map_err(|_| {
        Failure::new(Code::InvalidReceiptHandle, format!("receipt handle {handle:?} was not issued by this broker"))
    })?;
    let commit_log_offset = handle.split(' ').nth(8).and_then(|o| o.parse().ok());
    Ok((extra, commit_log_offset))
}

fn expired(extra: &ExtraInfo) -> bool {
    common::time::now_ms() > extra.revive_time()
}

/// What a stored message was sent as.
pub(crate) fn stored_type(m: &MessageExt) -> pb::MessageType {
    let p = &m.properties;
    if p.get(keys::TRANSACTION_PREPARED) == Some("true") {
        pb::MessageType::Transaction
    } else if p.contains(keys::SHARDING_KEY) {
        pb::MessageType::Fifo
    } else if p.contains(keys::TIMER_DELIVER_MS) || p.contains(keys::DELAY_TIME_LEVEL) {
        pb::MessageType::Delay
    } else {
        pb::MessageType::Normal
    }
}

pub(crate) fn group_name(r: Option<&pb::Resource>) -> Result<String, Failure> {
    convert::resource_name(r)
        .ok_or_else(|| Failure::new(Code::IllegalConsumerGroup, "the request names no consumer group"))
}

pub(crate) fn topic_name(r: Option<&pb::Resource>) -> Result<String, Failure> {
    convert::resource_name(r).ok_or_else(|| Failure::new(Code::IllegalTopic, "the request names no topic"))
}

/// The queues a consumer of `group` is assigned: one per broker (any of its queues)
/// for a concurrent group, every readable queue for a FIFO group (RocketMQ's proxy).
pub(crate) fn assignments(
    topic: &pb::Resource,
    route: &TopicRouteData,
    fifo: bool,
    endpoint_of: impl Fn(&str) -> Option<pb::Endpoints>,
) -> Vec<pb::Assignment> {
    let mut out = Vec::new();
    for qd in route.queue_datas.iter().filter(|q| common::perm::is_readable(q.perm) && q.read_queue_nums > 0) {
        let Some(bd) = route.broker_datas.iter().find(|b| b.broker_name == qd.broker_name) else { continue };
        let Some(endpoints) = bd.broker_addrs.get(&0).and_then(|a| endpoint_of(a)) else { continue };
        let broker = pb::Broker { name: qd.broker_name.clone(), id: 0, endpoints: Some(endpoints) };
        let ids: Vec<i32> = if fifo { (0..qd.read_queue_nums).collect() } else { vec![-1] };
        for id in ids {
            out.push(pb::Assignment {
                message_queue: Some(pb::MessageQueue {
                    topic: Some(topic.clone()),
                    id,
                    permission: pb::Permission::Read as i32,
                    broker: Some(broker.clone()),
                    accept_message_types: vec![],
                }),
            });
        }
    }
    out
}

/// A received message ready to go out, and what to do with one past its attempts.
struct Received {
    message: pb::Message,
    extra: ExtraInfo,
    commit_log_offset: i64,
    attempts_before: i32,
    msg_id: String,
}

impl<B: Backend> Messaging<B> {
    fn group_info(&self, group: &str) -> Result<GroupInfo, Failure> {
        self.backend
            .consumer_group(group)
            .ok_or_else(|| Failure::new(Code::ConsumerGroupNotFound, format!("consumer group {group} does not exist")))
    }

    pub(crate) async fn query_assignment_of(
        &self,
        req: &pb::QueryAssignmentRequest,
    ) -> Result<Vec<pb::Assignment>, Failure> {
        let topic = topic_name(req.topic.as_ref())?;
        let group = group_name(req.group.as_ref())?;
        let info = self.group_info(&group)?;
        let route = self.route(&topic).await?;
        let resource = req.topic.clone().unwrap_or_default();
        let out = assignments(&resource, &route, info.fifo, |a| self.endpoint_of(a));
        if out.is_empty() {
            return Err(Failure::new(Code::Forbidden, format!("topic {topic} has no readable queue")));
        }
        Ok(out)
    }

    /// ReceiveMessage: the status first, then the messages (RocketMQ's proxy order), then
    /// the delivery timestamp.
    pub(crate) async fn receive(
        &self,
        s: &Session,
        req: &pb::ReceiveMessageRequest,
        deadline: Option<Duration>,
    ) -> Result<Vec<pb::ReceiveMessageResponse>, Failure> {
        let group = group_name(req.group.as_ref())?;
        let mq = req
            .message_queue
            .as_ref()
            .ok_or_else(|| Failure::new(Code::BadRequest, "the request names no message queue"))?;
        let topic = topic_name(mq.topic.as_ref())?;
        let info = self.group_info(&group)?;
        let invisible = if req.auto_renew {
            AUTO_RENEW_INVISIBLE
        } else {
            let ms = millis(req.invisible_duration.as_ref()).unwrap_or(0);
            let d = Duration::from_millis(ms.max(0) as u64);
            if ms < 0 || d < MIN_INVISIBLE || d > MAX_INVISIBLE {
                return Err(Failure::new(
                    Code::IllegalInvisibleTime,
                    format!("invisible duration {ms} ms is outside [{:?}, {:?}]", MIN_INVISIBLE, MAX_INVISIBLE),
                ));
            }
            d
        };
        let poll = poll_time(req.long_polling_timeout.as_ref(), deadline)?;
        let (exp_type, exp) = filter_of(req.filter_expression.as_ref());
        let h = PopMessageRequestHeader {
            consumer_group: group.clone(),
            topic: topic.clone(),
            // Any queue of this broker, as RocketMQ's proxy pops (it selects the broker only).
            queue_id: -1,
            max_msg_nums: req.batch_size.clamp(1, MAX_BATCH),
            invisible_time: invisible.as_millis() as i64,
            poll_time: poll.as_millis() as i64,
            born_time: common::time::now_ms(),
            init_mode: pop::INIT_MODE_MAX,
            exp_type: Some(exp_type.to_owned()),
            exp: Some(exp),
            order: Some(info.fifo),
            attempt_id: req.attempt_id.clone(),
        };
        let cmd = RemotingCommand::request_with(RequestCode::POP_MESSAGE, &h);
        let resp = self.invoke_for(s, cmd, poll + crate::service::BROKER_TIMEOUT).await?;
        let not_found = |why: &str| {
            vec![pb::ReceiveMessageResponse {
                content: Some(pb::receive_message_response::Content::Status(
                    Failure::new(Code::MessageNotFound, why).status(),
                )),
            }]
        };
        match resp.response_code() {
            ResponseCode::SUCCESS => {}
            ResponseCode::POLLING_TIMEOUT | ResponseCode::PULL_NOT_FOUND => return Ok(not_found("no new message")),
            ResponseCode::POLLING_FULL => return Err(Failure::new(Code::TooManyRequests, "polling full")),
            code => return Err(Failure::from_remoting(code, resp.remark.as_deref())),
        }
        let head: PopMessageResponseHeader = resp
            .decode_header()
            .map_err(|e| Failure::new(Code::InternalServerError, format!("unreadable pop answer: {e}")))?;
        let answer = PopAnswer::new(
            head.pop_time,
            head.invisible_time,
            head.revive_qid,
            head.start_offset_info.as_deref(),
            head.order_count_info.as_deref(),
        );
        let records = common::record::decode_all(&resp.body_bytes(), false)
            .map_err(|e| Failure::new(Code::InternalServerError, format!("unreadable popped records: {e}")))?;
        let broker_name = self.backend.broker_name();
        let mut out = Vec::with_capacity(records.len());
        for mut m in records {
            let Some(extra) = answer.extra_info(
                &broker_name,
                &m.topic,
                m.queue_id,
                m.queue_offset,
                m.properties.get(pop::PROPERTY_POP_CK),
            ) else {
                continue;
            };
            if extra.is_order() {
                m.reconsume_times = m.reconsume_times.max(answer.order_count(&m.topic, m.queue_id, m.queue_offset));
            }
            let attempts_before = m.reconsume_times;
            let mut message = convert::incoming(&m, stored_type(&m));
            if let Some(sp) = message.system_properties.as_mut() {
                sp.receipt_handle = Some(receipt_handle(&extra, m.commit_log_offset));
                sp.invisible_duration = Some(prost_types::Duration { seconds: (head.invisible_time / 1000), nanos: 0 });
            }
            out.push(Received {
                message,
                extra,
                commit_log_offset: m.commit_log_offset,
                attempts_before,
                msg_id: m.msg_id(),
            });
        }
        // Past its attempts: to the dead-letter queue instead of the consumer.
        let mut deliver = Vec::with_capacity(out.len());
        for r in out {
            if r.attempts_before >= info.max_attempts {
                if let Err(f) = self
                    .to_dead_letters(s, &group, &topic, &r.extra, r.commit_log_offset, &r.msg_id, info.max_attempts)
                    .await
                {
                    tracing::warn!(group, topic, message_id = %r.msg_id, error = %f.message, "moving a message to the DLQ failed; it will come back");
                }
                continue;
            }
            if req.auto_renew {
                // Keyed as the client names it when it acks.
                if let Some(sp) = r.message.system_properties.as_ref() {
                    if let Some(handle) = sp.receipt_handle.as_deref() {
                        s.renewals.add(&sp.message_id, &group, &topic, handle, r.attempts_before);
                    }
                }
            }
            deliver.push(r.message);
        }
        if deliver.is_empty() {
            return Ok(not_found("no match message"));
        }
        let mut responses = Vec::with_capacity(deliver.len() + 1);
        responses
            .push(pb::ReceiveMessageResponse { content: Some(pb::receive_message_response::Content::Status(ok())) });
        responses.extend(
            deliver.into_iter().map(|m| pb::ReceiveMessageResponse {
                content: Some(pb::receive_message_response::Content::Message(m)),
            }),
        );
        // When the messages left the broker: clients measure delivery latency from it
        // (the Python client's push consumer requires it).
        let now = convert::timestamp(common::time::now_ms());
        responses.push(pb::ReceiveMessageResponse {
            content: Some(pb::receive_message_response::Content::DeliveryTimestamp(now)),
        });
        Ok(responses)
    }

    /// Acks one message by its receipt handle (the latest one if it is auto-renewed).
    pub(crate) async fn ack_one(
        &self,
        s: &Session,
        group: &str,
        topic: &str,
        message_id: &str,
        handle: &str,
    ) -> Result<(), Failure> {
        let handle = s.renewals.settle(message_id, handle).await;
        let (extra, _) = parse_handle(&handle)?;
        if expired(&extra) {
            return Err(Failure::new(Code::InvalidReceiptHandle, "receipt handle is expired"));
        }
        self.ack_extra(s, group, topic, &extra).await
    }

    async fn ack_extra(&self, s: &Session, group: &str, topic: &str, extra: &ExtraInfo) -> Result<(), Failure> {
        let h = AckMessageRequestHeader {
            consumer_group: group.to_owned(),
            topic: pop::real_topic(topic, group, &extra.retry_mark),
            queue_id: extra.queue_id,
            extra_info: extra.to_string(),
            offset: extra.queue_offset,
        };
        self.invoke_ok(s, RemotingCommand::request_with(RequestCode::ACK_MESSAGE, &h)).await
    }

    pub(crate) async fn ack(
        &self,
        s: &Session,
        req: &pb::AckMessageRequest,
    ) -> Result<Vec<pb::AckMessageResultEntry>, Failure> {
        let group = group_name(req.group.as_ref())?;
        let topic = topic_name(req.topic.as_ref())?;
        if req.entries.is_empty() {
            return Err(Failure::new(Code::BadRequest, "the request acks no message"));
        }
        // All at once: the broker's store writes their ack records as one batch.
        let acks = req.entries.iter().map(|e| self.ack_one(s, &group, &topic, &e.message_id, &e.receipt_handle));
        let outcomes = futures::future::join_all(acks).await;
        Ok(req
            .entries
            .iter()
            .zip(outcomes)
            .map(|(e, outcome)| pb::AckMessageResultEntry {
                message_id: e.message_id.clone(),
                receipt_handle: e.receipt_handle.clone(),
                status: Some(outcome.map_or_else(|f| f.status(), |()| ok())),
            })
            .collect())
    }

    /// ChangeInvisibleDuration: the new receipt handle. An auto-renewed message stops
    /// being renewed: the client decides its invisibility from now on.
    pub(crate) async fn change_invisible(
        &self,
        s: &Session,
        req: &pb::ChangeInvisibleDurationRequest,
    ) -> Result<String, Failure> {
        let group = group_name(req.group.as_ref())?;
        let topic = topic_name(req.topic.as_ref())?;
        let ms = millis(req.invisible_duration.as_ref()).unwrap_or(-1);
        if ms < 0 || Duration::from_millis(ms as u64) > MAX_INVISIBLE {
            return Err(Failure::new(
                Code::IllegalInvisibleTime,
                format!("invisible duration {ms} ms is outside [0, {MAX_INVISIBLE:?}]"),
            ));
        }
        let handle = s.renewals.settle(&req.message_id, &req.receipt_handle).await;
        let (extra, commit_log_offset) = parse_handle(&handle)?;
        if expired(&extra) {
            return Err(Failure::new(Code::InvalidReceiptHandle, "receipt handle is expired"));
        }
        self.change_invisible_of(s, &group, &topic, &extra, commit_log_offset, Duration::from_millis(ms as u64)).await
    }

    /// Makes a popped message invisible for `invisible` from now: the new handle.
    pub(crate) async fn change_invisible_of(
        &self,
        s: &Session,
        group: &str,
        topic: &str,
        extra: &ExtraInfo,
        commit_log_offset: Option<i64>,
        invisible: Duration,
    ) -> Result<String, Failure> {
        let h = ChangeInvisibleTimeRequestHeader {
            consumer_group: group.to_owned(),
            topic: pop::real_topic(topic, group, &extra.retry_mark),
            queue_id: extra.queue_id,
            extra_info: extra.to_string(),
            offset: extra.queue_offset,
            invisible_time: invisible.as_millis() as i64,
        };
        let cmd = RemotingCommand::request_with(RequestCode::CHANGE_MESSAGE_INVISIBLETIME, &h);
        let head: ChangeInvisibleTimeResponseHeader = self.invoke_header(s, cmd).await?;
        let renewed = ExtraInfo {
            start_offset: if extra.is_order() { extra.start_offset } else { extra.queue_offset },
            pop_time: head.pop_time,
            invisible_time: head.invisible_time,
            revive_qid: head.revive_qid,
            ..extra.clone()
        };
        Ok(receipt_handle(&renewed, commit_log_offset.unwrap_or(-1)))
    }

    /// Moves a received message to the group's dead-letter queue, then acks it.
    #[allow(clippy::too_many_arguments)]
    async fn to_dead_letters(
        &self,
        s: &Session,
        group: &str,
        topic: &str,
        extra: &ExtraInfo,
        commit_log_offset: i64,
        message_id: &str,
        max_attempts: i32,
    ) -> Result<(), Failure> {
        let h = ConsumerSendMsgBackRequestHeader {
            offset: commit_log_offset,
            group: group.to_owned(),
            delay_level: -1,
            origin_msg_id: Some(message_id.to_owned()),
            origin_topic: Some(topic.to_owned()),
            unit_mode: Some(false),
            max_reconsume_times: Some(max_attempts),
        };
        self.invoke_ok(s, RemotingCommand::request_with(RequestCode::CONSUMER_SEND_MSG_BACK, &h)).await?;
        self.ack_extra(s, group, topic, extra).await
    }

    pub(crate) async fn forward_to_dlq(
        &self,
        s: &Session,
        req: &pb::ForwardMessageToDeadLetterQueueRequest,
    ) -> Result<(), Failure> {
        let group = group_name(req.group.as_ref())?;
        let topic = topic_name(req.topic.as_ref())?;
        let handle = s.renewals.settle(&req.message_id, &req.receipt_handle).await;
        let (extra, commit_log_offset) = parse_handle(&handle)?;
        let commit_log_offset = commit_log_offset
            .ok_or_else(|| Failure::new(Code::InvalidReceiptHandle, "the receipt handle names no stored message"))?;
        self.to_dead_letters(s, &group, &topic, &extra, commit_log_offset, &req.message_id, req.max_delivery_attempts)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeouts_parse() {
        assert_eq!(grpc_timeout("30S"), Some(Duration::from_secs(30)));
        assert_eq!(grpc_timeout("1500m"), Some(Duration::from_millis(1500)));
        assert_eq!(grpc_timeout("2M"), Some(Duration::from_secs(120)));
        assert_eq!(grpc_timeout("x"), None);
        assert_eq!(grpc_timeout(""), None);
    }

    #[test]
    fn receipt_handles_carry_extra_info_and_the_commit_log_offset() {
        let e = ExtraInfo::parse("3 1000 30000 0 1 b 2 7").unwrap();
        let h = receipt_handle(&e, 4096);
        let (back, clo) = parse_handle(&h).unwrap();
        assert_eq!(back, e);
        assert_eq!(clo, Some(4096));
        assert_eq!(parse_handle("nonsense").unwrap_err().code, Code::InvalidReceiptHandle);
    }

    #[test]
    fn a_fifo_group_is_assigned_every_readable_queue() {
        let route: TopicRouteData = remoting::json::from_slice(
            br#"{"queueDatas":[{"brokerName":"b","readQueueNums":2,"writeQueueNums":2,"perm":6,"topicSysFlag":0}],
                "brokerDatas":[{"cluster":"c","brokerName":"b","brokerAddrs":{"0":"127.0.0.1:10911"}}]}"#,
        )
        .unwrap();
        let topic = pb::Resource { resource_namespace: String::new(), name: "T".into() };
        let ep = |_: &str| Some(pb::Endpoints::default());
        let ids = |a: Vec<pb::Assignment>| a.iter().map(|a| a.message_queue.as_ref().unwrap().id).collect::<Vec<_>>();
        assert_eq!(ids(assignments(&topic, &route, false, ep)), [-1]);
        assert_eq!(ids(assignments(&topic, &route, true, ep)), [0, 1]);
    }
}
