//! POP_MESSAGE (200050), ACK_MESSAGE (200051) and CHANGE_MESSAGE_INVISIBLETIME
//! (200053): RocketMQ 5's consumption in which the broker keeps each group's place
//! (`crate::pop` holds the state and the revive task). The gRPC endpoint's
//! ReceiveMessage, AckMessage and ChangeInvisibleDuration become these requests.
//!
//! A pop answers as a pull does (records in the body, unchanged), with a
//! `PopMessageResponseHeader` from which the consumer builds each message's
//! `extraInfo`; a message popped from the group's pop retry topic goes out under its
//! original topic with its `extraInfo` in the `POP_CK` property, as RocketMQ sends it.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tracing::Span;

use common::pop::{self, Ack, CheckPoint, ExtraInfo, PopInfo};
use common::subscription::{SubscriptionData, SubscriptionGroupConfig};
use common::topic::TopicConfig;
use common::{perm, MessageExt, ResponseCode};
use remoting::command::Body;
use remoting::header::broker::{
    AckMessageRequestHeader, ChangeInvisibleTimeRequestHeader, ChangeInvisibleTimeResponseHeader,
    PopMessageRequestHeader, PopMessageResponseHeader,
};
use remoting::{Channel, RemotingCommand};
use store::GetStatus;

use crate::context::BrokerContext;
use crate::filter::prepared::PreparedFilter;
use crate::pop::OrderHold;
use crate::processor::pull::{read_filtered, QueueRead};
use crate::processor::try_header;

/// The most messages one pop takes (RocketMQ refuses more).
const MAX_POP_NUMS: i32 = 32;
/// The longest a pop may wait for messages.
const MAX_POLL: Duration = Duration::from_secs(300);
/// How often a waiting pop looks again without a wake-up (an expired orderly hold).
const POLL_RECHECK: Duration = Duration::from_secs(1);

fn refuse(code: ResponseCode, remark: impl Into<String>) -> RemotingCommand {
    RemotingCommand::error(code, remark)
}

/// What a pop reads, checked once per request.
struct Plan {
    topic: TopicConfig,
    filter: Arc<PreparedFilter>,
    /// The group's pop retry topic and its filter (everything: a retry passed the
    /// subscription's filter when first delivered).
    retry_topic: String,
    retry_filter: Arc<PreparedFilter>,
    order: bool,
}

/// POP_MESSAGE: takes messages of a group's queue(s), hides them for
/// `invisibleTime`, waits up to `pollTime` when there are none.
pub async fn pop_message(ctx: &Arc<BrokerContext>, ch: &Channel, req: RemotingCommand) -> Option<RemotingCommand> {
    let h: PopMessageRequestHeader = try_header!(&req);
    let span = Span::current();
    span.record("topic", h.topic.as_str());
    span.record("group", h.consumer_group.as_str());
    if h.queue_id >= 0 {
        span.record("queue_id", h.queue_id);
    }
    let plan = match plan(ctx, &h) {
        Ok(p) => p,
        Err(refused) => return Some(refused),
    };
    let poll = Duration::from_millis(h.poll_time.max(0) as u64).min(MAX_POLL);
    let deadline = tokio::time::Instant::now() + poll;
    loop {
        let mut round = pop_round(ctx, &h, &plan).await;
        if let Some(refused) = round.failure.take() {
            if round.messages.is_empty() {
                return Some(refused);
            }
        }
        if !round.messages.is_empty() || poll.is_zero() || tokio::time::Instant::now() >= deadline || ch.is_closed() {
            return Some(answer(&h, &plan, round, !poll.is_zero()));
        }
        wait_for_messages(ctx, &plan, &round, deadline).await;
        if ch.is_closed() {
            return None;
        }
    }
}

fn plan(ctx: &BrokerContext, h: &PopMessageRequestHeader) -> Result<Plan, RemotingCommand> {
    if !ctx.is_readable() {
        return Err(refuse(
            ResponseCode::NO_PERMISSION,
            format!("the broker[{}] peeking message is forbidden", ctx.broker_addr),
        ));
    }
    if h.max_msg_nums <= 0 || h.max_msg_nums > MAX_POP_NUMS {
        return Err(refuse(
            ResponseCode::INVALID_PARAMETER,
            format!("the broker restricts a pop to 1..={MAX_POP_NUMS} messages; asked for {}", h.max_msg_nums),
        ));
    }
    if h.invisible_time < 0 {
        return Err(refuse(ResponseCode::INVALID_PARAMETER, format!("invisibleTime {} is negative", h.invisible_time)));
    }
    let Some(group) = ctx.groups.find_or_create(&h.consumer_group) else {
        return Err(refuse(
            ResponseCode::SUBSCRIPTION_GROUP_NOT_EXIST,
            format!("subscription group [{}] does not exist", h.consumer_group),
        ));
    };
    if !group.consume_enable {
        return Err(refuse(
            ResponseCode::NO_PERMISSION,
            format!("subscription group no permission, {}", h.consumer_group),
        ));
    }
    let Some(tc) = ctx.topics.get(&h.topic) else {
        return Err(refuse(
            ResponseCode::TOPIC_NOT_EXIST,
            format!("topic[{}] not exist, apply first please!", h.topic),
        ));
    };
    if !perm::is_readable(tc.perm) {
        return Err(refuse(
            ResponseCode::NO_PERMISSION,
            format!("the topic[{}] peeking message is forbidden", h.topic),
        ));
    }
    if h.queue_id < -1 || h.queue_id >= tc.read_queue_nums {
        return Err(refuse(
            ResponseCode::SYSTEM_ERROR,
            format!(
                "queueId[{}] is illegal, topic:[{}] topicConfig.readQueueNums:[{}]",
                h.queue_id, h.topic, tc.read_queue_nums
            ),
        ));
    }
    let expression_type = h.exp_type.as_deref().filter(|t| !t.is_empty()).unwrap_or("TAG");
    let sub = SubscriptionData::new(h.topic.clone(), h.exp.as_deref().unwrap_or("*"), expression_type, 0);
    if !sub.is_tag_type() && !ctx.runtime.enable_property_filter() && expression_type.eq_ignore_ascii_case("SQL92") {
        return Err(refuse(
            ResponseCode::SYSTEM_ERROR,
            format!("The broker does not support consumer to filter message by {expression_type}"),
        ));
    }
    let compile = |s: &SubscriptionData| {
        ctx.filters.get_or_compile(&ctx.plugins, &h.consumer_group, s).map_err(|e| {
            refuse(ResponseCode::SUBSCRIPTION_PARSE_FAILED, format!("parse the consumer's subscription failed: {e}"))
        })
    };
    let filter = compile(&sub)?;
    let retry_topic = pop::retry_topic(&h.topic, &h.consumer_group);
    let retry_filter = compile(&SubscriptionData::new(retry_topic.clone(), "*", "TAG", 0))?;
    Ok(Plan { topic: tc, filter, retry_topic, retry_filter, order: h.order.unwrap_or(false) || orderly(&group) })
}

/// A FIFO group (`consumeMessageOrderly`) is popped in order whatever the request says.
fn orderly(group: &SubscriptionGroupConfig) -> bool {
    group.consume_message_orderly
}

/// What one pass over the queues found.
#[derive(Default)]
struct Round {
    pop_time: i64,
    messages: Vec<Bytes>,
    info: PopInfo,
    rest: i64,
    /// Queues looked at and the offsets a new message would appear at.
    watch: Vec<(String, i32, i64)>,
    /// A checkpoint could not be stored: nothing from that queue was handed out.
    failure: Option<RemotingCommand>,
}

async fn pop_round(ctx: &BrokerContext, h: &PopMessageRequestHeader, plan: &Plan) -> Round {
    let mut round = Round { pop_time: common::time::now_ms(), ..Round::default() };
    let normal_queues: Vec<i32> = if h.queue_id >= 0 {
        vec![h.queue_id]
    } else {
        let n = plan.topic.read_queue_nums.max(0);
        let start = if n > 0 { (rand::random::<u32>() % n as u32) as i32 } else { 0 };
        (0..n).map(|i| (start + i) % n).collect()
    };
    let retry_exists = !plan.order && ctx.topics.contains(&plan.retry_topic);
    let retry_first = retry_exists && ctx.pop.retry_first();
    if retry_first {
        pop_queue(ctx, h, plan, true, 0, &mut round).await;
    }
    for q in normal_queues {
        pop_queue(ctx, h, plan, false, q, &mut round).await;
    }
    if retry_exists && !retry_first {
        pop_queue(ctx, h, plan, true, 0, &mut round).await;
    }
    round
}

/// Where a group without an offset starts in a queue (RocketMQ's `getInitOffset`):
/// a retry topic and `initMode` MIN from the first message; MAX from the first
/// message while the queue's start is still in the page cache, else at its last one.
fn init_offset(ctx: &BrokerContext, topic: &str, queue_id: i32, init_mode: i32) -> i64 {
    let min = ctx.store.min_offset_in_queue(topic, queue_id);
    if init_mode == pop::INIT_MODE_MIN || common::topic::is_retry_topic(topic) {
        return min;
    }
    let first_in_memory = ctx
        .store
        .cq_entries(topic, queue_id, 0, 1)
        .first()
        .is_none_or(|(_, e)| !ctx.role.behind_page_cache(e.phy_offset, ctx.store.commit_log_max_offset()));
    if min <= 0 && first_in_memory {
        0
    } else {
        (ctx.store.max_offset_in_queue(topic, queue_id) - 1).max(0)
    }
}

async fn pop_queue(
    ctx: &BrokerContext,
    h: &PopMessageRequestHeader,
    plan: &Plan,
    retry: bool,
    queue_id: i32,
    round: &mut Round,
) {
    let (topic, filter) =
        if retry { (plan.retry_topic.as_str(), &plan.retry_filter) } else { (h.topic.as_str(), &plan.filter) };
    let group = h.consumer_group.as_str();
    let backlog = |offset: i64| (ctx.store.max_offset_in_queue(topic, queue_id) - offset).max(0);
    let mut offset = ctx.offsets.query(group, topic, queue_id);
    if offset < 0 {
        offset = init_offset(ctx, topic, queue_id, h.init_mode);
        ctx.offsets.commit(group, topic, queue_id, offset);
    }
    let remaining = (h.max_msg_nums as usize).saturating_sub(round.messages.len());
    if remaining == 0 {
        round.rest += backlog(offset);
        return;
    }
    let _lock = ctx.pop.lock(topic, group, queue_id).await;
    // Another pop may have moved the offset while this one waited for the lock.
    offset = ctx.offsets.query(group, topic, queue_id).max(offset);
    let earlier_counts = if plan.order {
        match ctx.pop.order_gate(topic, group, queue_id, round.pop_time) {
            Some(c) => c,
            None => {
                round.watch.push((topic.to_owned(), queue_id, offset));
                return;
            }
        }
    } else {
        Default::default()
    };
    let at = |offset| QueueRead { topic, group, queue_id, offset };
    let mut read = read_filtered(ctx, filter, at(offset), remaining, None);
    let corrected = match read.result.status {
        GetStatus::OffsetTooSmall | GetStatus::OffsetFoundNull => Some(read.result.next_begin_offset),
        GetStatus::OffsetOverflowBadly => Some(read.result.max_offset),
        _ => None,
    };
    if let Some(next) = corrected.filter(|n| *n != offset) {
        tracing::info!(topic, group, queue_id, from = offset, to = next, "pop offset corrected");
        ctx.offsets.commit(group, topic, queue_id, next);
        offset = next;
        read = read_filtered(ctx, filter, at(offset), remaining, None);
    }
    let r = read.result;
    if r.messages.is_empty() {
        // Skip what the filter left behind, unless a plugin could not decide.
        if !read.plugin_paused && r.next_begin_offset > offset && r.status != GetStatus::NoMessageInQueue {
            ctx.offsets.commit(group, topic, queue_id, r.next_begin_offset);
        }
        round.watch.push((topic.to_owned(), queue_id, r.next_begin_offset.max(offset)));
        round.rest += (r.max_offset - r.next_begin_offset).max(0);
        return;
    }
    if plan.order {
        let counts = r.queue_offsets.iter().map(|o| (*o, earlier_counts.get(o).map_or(0, |c| c + 1))).collect();
        let hold = OrderHold {
            offsets: r.queue_offsets.clone(),
            acked: Default::default(),
            next: r.next_begin_offset,
            deadline: round.pop_time.saturating_add(h.invisible_time),
            pop_time: round.pop_time,
            counts,
        };
        for o in &r.queue_offsets {
            round.info.add_order_count(topic, queue_id, *o, hold.counts.get(o).copied().unwrap_or(0));
        }
        ctx.pop.hold(topic, group, queue_id, hold);
    } else {
        let ck = CheckPoint {
            start_offset: offset,
            pop_time: round.pop_time,
            invisible_time: h.invisible_time,
            num: r.queue_offsets.len() as i32,
            queue_id,
            topic: topic.to_owned(),
            group: group.to_owned(),
            offset_diffs: r.queue_offsets.iter().map(|o| (o - offset) as i32).collect(),
            broker_name: ctx.config.broker_name.clone(),
        };
        let body = serde_json::to_vec(&ck).unwrap_or_default();
        if let Err(outcome) = crate::pop::append_revive_record(ctx, pop::CK_TAG, body).await {
            round.failure = Some(outcome.into_error());
            round.rest += backlog(offset);
            return;
        }
        ctx.offsets.commit(group, topic, queue_id, r.next_begin_offset);
    }
    round.info.add_queue(topic, queue_id, offset, &r.queue_offsets);
    ctx.record_get(topic, group, r.messages.len() as u64, r.total_bytes as u64);
    round.rest += (r.max_offset - r.next_begin_offset).max(0);
    if retry {
        for (raw, queue_offset) in r.messages.iter().zip(&r.queue_offsets) {
            let extra = ExtraInfo {
                start_offset: offset,
                pop_time: round.pop_time,
                invisible_time: h.invisible_time,
                revive_qid: 0,
                retry_mark: pop::retry_mark(topic).to_owned(),
                broker_name: ctx.config.broker_name.clone(),
                queue_id,
                queue_offset: *queue_offset,
            };
            match as_original(raw, &h.topic, &extra) {
                Some(b) => round.messages.push(b),
                None => tracing::warn!(topic, queue_offset, "unreadable retry message skipped"),
            }
        }
    } else {
        round.messages.extend(r.messages);
    }
}

/// A retry message as RocketMQ hands it out: under its original topic, its
/// `extraInfo` (naming the retry topic) in `POP_CK`.
fn as_original(raw: &Bytes, topic: &str, extra: &ExtraInfo) -> Option<Bytes> {
    let mut m = MessageExt::decode(raw, false).ok()?;
    m.properties.insert(pop::PROPERTY_POP_CK, extra.to_string());
    m.topic = topic.to_owned();
    m.to_record_bytes().ok()
}

fn answer(h: &PopMessageRequestHeader, plan: &Plan, round: Round, polled: bool) -> RemotingCommand {
    let found = !round.messages.is_empty();
    let header = PopMessageResponseHeader {
        pop_time: round.pop_time,
        invisible_time: h.invisible_time,
        revive_qid: if plan.order { pop::ORDER_REVIVE_QUEUE } else { 0 },
        rest_num: round.rest,
        start_offset_info: found.then(|| round.info.start_offsets.clone()),
        msg_offset_info: found.then(|| round.info.msg_offsets.clone()),
        order_count_info: (found && plan.order).then(|| round.info.order_counts.clone()),
    };
    let code = match (found, polled) {
        (true, _) => ResponseCode::SUCCESS,
        (false, true) => ResponseCode::POLLING_TIMEOUT,
        (false, false) => ResponseCode::PULL_NOT_FOUND,
    };
    let mut resp = RemotingCommand::response_with(code, &header);
    if found {
        resp.body = Body::Chain(round.messages);
    }
    resp
}

/// Waits until a watched queue gets a message, an orderly hold is released or
/// expires, or `deadline`.
async fn wait_for_messages(ctx: &BrokerContext, plan: &Plan, round: &Round, deadline: tokio::time::Instant) {
    let watch = &round.watch;
    let mut parked: Vec<_> = watch
        .iter()
        .map(|(topic, q, offset)| {
            let filter = if *topic == plan.retry_topic { plan.retry_filter.clone() } else { plan.filter.clone() };
            ctx.holds.park(topic, *q, *offset, filter)
        })
        .collect();
    let released = ctx.pop.released.notified();
    // Something may have arrived between the round and the registrations.
    if watch.iter().any(|(t, q, o)| ctx.store.readable_at(t, *q, *o)) {
        return;
    }
    let recheck = tokio::time::sleep_until((tokio::time::Instant::now() + POLL_RECHECK).min(deadline));
    if parked.is_empty() {
        tokio::select! {
            _ = released => {}
            _ = recheck => {}
        }
        return;
    }
    let woken = futures::future::select_all(parked.iter_mut().map(|p| Box::pin(p.woken())));
    tokio::select! {
        _ = woken => {}
        _ = released => {}
        _ = recheck => {}
    }
}

/// Checks an ack's or invisibility change's topic and queue; the parsed `extraInfo`.
fn check_handle(
    ctx: &BrokerContext,
    topic: &str,
    queue_id: i32,
    extra_info: &str,
) -> Result<ExtraInfo, RemotingCommand> {
    let extra = ExtraInfo::parse(extra_info).map_err(|e| refuse(ResponseCode::INVALID_PARAMETER, e.to_string()))?;
    let Some(tc) = ctx.topics.get(topic) else {
        return Err(refuse(ResponseCode::TOPIC_NOT_EXIST, format!("topic[{topic}] not exist, apply first please!")));
    };
    if queue_id < 0 || queue_id >= tc.read_queue_nums {
        return Err(refuse(
            ResponseCode::SYSTEM_ERROR,
            format!(
                "queueId[{queue_id}] is illegal, topic:[{topic}] topicConfig.readQueueNums:[{}]",
                tc.read_queue_nums
            ),
        ));
    }
    Ok(extra)
}

fn ack_record(ctx: &BrokerContext, group: &str, topic: &str, queue_id: i32, extra: &ExtraInfo, offset: i64) -> Vec<u8> {
    let ack = Ack {
        ack_offset: offset,
        start_offset: extra.start_offset,
        group: group.to_owned(),
        topic: topic.to_owned(),
        queue_id,
        pop_time: extra.pop_time,
        broker_name: ctx.config.broker_name.clone(),
    };
    serde_json::to_vec(&ack).unwrap_or_default()
}

/// ACK_MESSAGE: the consumer is done with a popped message.
pub async fn ack_message(ctx: &Arc<BrokerContext>, _ch: &Channel, req: RemotingCommand) -> Option<RemotingCommand> {
    let h: AckMessageRequestHeader = try_header!(&req);
    Span::current().record("topic", h.topic.as_str());
    Span::current().record("group", h.consumer_group.as_str());
    let extra = match check_handle(ctx, &h.topic, h.queue_id, &h.extra_info) {
        Ok(e) => e,
        Err(refused) => return Some(refused),
    };
    let (min, max) =
        (ctx.store.min_offset_in_queue(&h.topic, h.queue_id), ctx.store.max_offset_in_queue(&h.topic, h.queue_id));
    if h.offset < min || h.offset >= max {
        return Some(refuse(
            ResponseCode::NO_MESSAGE,
            format!("offset {} is not in queue {} of {} ([{min}, {max}))", h.offset, h.queue_id, h.topic),
        ));
    }
    if extra.is_order() {
        // Under the queue's lock: a pop must not see the hold gone before the
        // offset has moved past what it held (it would deliver the last ones again).
        let _lock = ctx.pop.lock(&h.topic, &h.consumer_group, h.queue_id).await;
        if let Some(commit) = ctx.pop.order_ack(&h.topic, &h.consumer_group, h.queue_id, extra.pop_time, h.offset) {
            ctx.offsets.commit(&h.consumer_group, &h.topic, h.queue_id, commit);
        }
        return Some(RemotingCommand::success());
    }
    let body = ack_record(ctx, &h.consumer_group, &h.topic, h.queue_id, &extra, h.offset);
    Some(match crate::pop::append_revive_record(ctx, pop::ACK_TAG, body).await {
        Ok(()) => RemotingCommand::success(),
        Err(outcome) => outcome.into_error(),
    })
}

/// CHANGE_MESSAGE_INVISIBLETIME: hide a popped message for `invisibleTime` from now.
/// The old `extraInfo` stops naming it; the answer's `popTime` makes the new one.
pub async fn change_invisible_time(
    ctx: &Arc<BrokerContext>,
    _ch: &Channel,
    req: RemotingCommand,
) -> Option<RemotingCommand> {
    let h: ChangeInvisibleTimeRequestHeader = try_header!(&req);
    Span::current().record("topic", h.topic.as_str());
    Span::current().record("group", h.consumer_group.as_str());
    let extra = match check_handle(ctx, &h.topic, h.queue_id, &h.extra_info) {
        Ok(e) => e,
        Err(refused) => return Some(refused),
    };
    if h.invisible_time < 0 {
        return Some(refuse(
            ResponseCode::INVALID_PARAMETER,
            format!("invisibleTime {} is negative", h.invisible_time),
        ));
    }
    let now = common::time::now_ms();
    if extra.is_order() {
        let deadline = now.saturating_add(h.invisible_time);
        if !ctx.pop.order_extend(&h.topic, &h.consumer_group, h.queue_id, extra.pop_time, now, deadline) {
            return Some(refuse(
                ResponseCode::NO_MESSAGE,
                format!(
                    "no orderly pop of queue {} of {} made at {} holds offset {}",
                    h.queue_id, h.topic, extra.pop_time, h.offset
                ),
            ));
        }
    } else {
        let ck = CheckPoint {
            start_offset: h.offset,
            pop_time: now,
            invisible_time: h.invisible_time,
            num: 1,
            queue_id: h.queue_id,
            topic: h.topic.clone(),
            group: h.consumer_group.clone(),
            offset_diffs: vec![0],
            broker_name: ctx.config.broker_name.clone(),
        };
        // The new checkpoint first: a crash between the two records delivers the
        // message again rather than never.
        if let Err(outcome) =
            crate::pop::append_revive_record(ctx, pop::CK_TAG, serde_json::to_vec(&ck).unwrap_or_default()).await
        {
            return Some(outcome.into_error());
        }
        let ack = ack_record(ctx, &h.consumer_group, &h.topic, h.queue_id, &extra, h.offset);
        if let Err(outcome) = crate::pop::append_revive_record(ctx, pop::ACK_TAG, ack).await {
            return Some(outcome.into_error());
        }
    }
    let header = ChangeInvisibleTimeResponseHeader {
        pop_time: now,
        invisible_time: h.invisible_time,
        revive_qid: extra.revive_qid,
    };
    Some(RemotingCommand::response_with(ResponseCode::SUCCESS, &header))
}
