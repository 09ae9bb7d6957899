//! Transactional messages (`remoting-protocol.md` §12.10): END_TRANSACTION and the
//! check-back service.
//!
//! A half message sits in `RMQ_SYS_TRANS_HALF_TOPIC` (queue 0), invisible to
//! consumers. END_TRANSACTION COMMIT re-publishes it to its real topic, ROLLBACK
//! discards it; either way an op record goes to `RMQ_SYS_TRANS_OP_HALF_TOPIC` (tag
//! `d`, body = the half message's queue offset, as RocketMQ writes it).
//!
//! The state machine is strict (RocketMQ pain point #9): decisions are keyed by the
//! message's UNIQ_KEY (shared by a half message and the copies the check-back
//! re-appends), so a second COMMIT is a no-op, a COMMIT after a ROLLBACK (or the
//! reverse) is refused, and a resolved message is never checked again. A decision
//! is claimed before the message is re-published, so two COMMITs racing (the
//! producer's own and a check-back answer) publish it once. The decision rides on
//! the op record (`TX_UNIQ`, `TX_DECISION` properties) so it is rebuilt after a
//! restart, before the broker serves ([`TransactionState::catch_up`]).
//!
//! The check-back service wakes every `transaction_check_interval`, walks the half
//! queue from the internal group `CID_RMQ_SYS_TRANS`'s offset, and for each
//! unresolved message older than `transaction_time_out` (or its
//! `CHECK_IMMUNITY_TIME_IN_SECONDS`) re-appends a copy with
//! `TRANSACTION_CHECK_TIMES` + 1 and asks a live producer of its group
//! (CHECK_TRANSACTION_STATE, oneway) about the copy. After `transaction_check_max`
//! checks the message is parked in `TRANS_CHECK_MAX_TIME_TOPIC`.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn, Span};

use common::properties::{keys, Properties};
use common::sysflag::message as sysflag;
use common::topic::{TRANS_CHECK_GROUP, TRANS_CHECK_MAX_TIME_TOPIC, TRANS_HALF_TOPIC, TRANS_OP_HALF_TOPIC};
use common::{perm, MessageExt, ResponseCode};
use remoting::header::broker::{CheckTransactionStateRequestHeader, EndTransactionRequestHeader};
use remoting::{Channel, RemotingCommand, RequestCode};
use store::{GetRequest, GetStatus, PutMessage};

use crate::context::BrokerContext;
use crate::processor::try_header;
use plugin_api::{CheckContext, CheckDecision, MessageView};

const OP_TAG: &str = "d";
const PROP_TX_UNIQ: &str = "TX_UNIQ";
const PROP_TX_DECISION: &str = "TX_DECISION";

/// A transaction's final state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Commit,
    Rollback,
    /// Checked too often; parked in TRANS_CHECK_MAX_TIME_TOPIC.
    Discard,
}

impl Decision {
    fn as_str(self) -> &'static str {
        match self {
            Decision::Commit => "COMMIT",
            Decision::Rollback => "ROLLBACK",
            Decision::Discard => "DISCARD",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "COMMIT" => Some(Decision::Commit),
            "ROLLBACK" => Some(Decision::Rollback),
            "DISCARD" => Some(Decision::Discard),
            _ => None,
        }
    }
}

/// What the broker remembers of resolved transactions.
#[derive(Default)]
pub struct TransactionState {
    /// UNIQ_KEY → decision.
    decisions: Mutex<HashMap<String, Decision>>,
    /// Half-queue offsets that need no more checking (resolved, or superseded by a
    /// re-appended copy).
    done_offsets: Mutex<HashSet<i64>>,
    /// How far the op queue has been read into `decisions`.
    op_read: Mutex<i64>,
}

impl TransactionState {
    pub fn decision(&self, uniq: &str) -> Option<Decision> {
        self.decisions.lock().get(uniq).copied()
    }

    /// Reads new op records into the state (at start, before the broker serves,
    /// and before every check round).
    pub fn catch_up(&self, ctx: &BrokerContext) {
        let mut read = self.op_read.lock();
        loop {
            let r = ctx.store.get_messages(&GetRequest::new(TRANS_OP_HALF_TOPIC, 0, *read, 256));
            if r.status != GetStatus::Found {
                if matches!(r.status, GetStatus::OffsetTooSmall | GetStatus::NoMatchedMessage)
                    && r.next_begin_offset > *read
                {
                    *read = r.next_begin_offset;
                    continue;
                }
                return;
            }
            for raw in &r.messages {
                if let Ok(m) = MessageExt::decode(raw, false) {
                    if let Some(off) = std::str::from_utf8(&m.body).ok().and_then(|s| s.trim().parse::<i64>().ok()) {
                        self.done_offsets.lock().insert(off);
                    }
                    if let (Some(u), Some(d)) =
                        (m.properties.get(PROP_TX_UNIQ), m.properties.get(PROP_TX_DECISION).and_then(Decision::parse))
                    {
                        self.decisions.lock().insert(u.to_owned(), d);
                    }
                }
            }
            *read = r.next_begin_offset;
        }
    }
}

fn op_record(half: &MessageExt, uniq: &str, decision: Decision) -> PutMessage {
    let mut props = Properties::new();
    props.insert(keys::TAGS, OP_TAG);
    props.insert(PROP_TX_UNIQ, uniq);
    props.insert(PROP_TX_DECISION, decision.as_str());
    PutMessage {
        tags_code: common::hash::tags_code(Some(OP_TAG)),
        properties: props.encode(),
        born_timestamp: crate::now_ms(),
        born_host: half.store_host,
        ..PutMessage::new(TRANS_OP_HALF_TOPIC, half.queue_id, Bytes::from(half.queue_offset.to_string()))
    }
}

/// END_TRANSACTION (37).
pub async fn end_transaction(ctx: &Arc<BrokerContext>, ch: &Channel, req: RemotingCommand) -> Option<RemotingCommand> {
    let h: EndTransactionRequestHeader = try_header!(&req);
    Span::current().record("group", h.producer_group.as_str());
    if !ctx.config.broker_role.is_master() {
        return Some(RemotingCommand::error(ResponseCode::SLAVE_NOT_AVAILABLE, "a slave cannot end transactions"));
    }
    let decision = match h.commit_or_rollback {
        sysflag::TRANSACTION_COMMIT_TYPE => Decision::Commit,
        sysflag::TRANSACTION_ROLLBACK_TYPE => Decision::Rollback,
        _ => {
            debug!(msg_id = %h.msg_id, from_check = h.from_transaction_check.unwrap_or(false), "transaction state unknown; wait for the check");
            return None;
        }
    };
    let result = end(ctx, &h, decision).await;
    if let Err(resp) = &result {
        warn!(peer = %ch.peer_addr(), msg_id = %h.msg_id, remark = resp.remark_str(), "END_TRANSACTION refused");
    }
    Some(match result {
        Ok(r) | Err(r) => r,
    })
}

async fn end(
    ctx: &Arc<BrokerContext>,
    h: &EndTransactionRequestHeader,
    decision: Decision,
) -> Result<RemotingCommand, RemotingCommand> {
    let err = |remark: String| RemotingCommand::error(ResponseCode::SYSTEM_ERROR, remark);
    let raw = ctx
        .store
        .look_message_by_offset(h.commit_log_offset)
        .ok_or_else(|| err(format!("Find prepared transaction message failed at offset {}", h.commit_log_offset)))?;
    let half = MessageExt::decode(&raw, false).map_err(|e| err(format!("unreadable half message: {e}")))?;
    if half.topic != TRANS_HALF_TOPIC {
        return Err(err(format!("the message at {} is not a half message", h.commit_log_offset)));
    }
    if half.properties.get(keys::PRODUCER_GROUP) != Some(h.producer_group.as_str()) {
        return Err(err("The producer group wrong".into()));
    }
    if half.queue_offset != h.tran_state_table_offset {
        return Err(err("The transaction state table offset wrong".into()));
    }
    if half.commit_log_offset != h.commit_log_offset {
        return Err(err("The commit log offset wrong".into()));
    }
    let uniq = half.properties.uniq_key().unwrap_or(&h.msg_id).to_owned();
    resolve(ctx, &half, &uniq, decision).await?;
    Ok(RemotingCommand::success())
}

/// Resolves a half message once: claims the decision (a second identical decision
/// is a no-op, a contrary one is refused), publishes a commit, records the op.
async fn resolve(
    ctx: &BrokerContext,
    half: &MessageExt,
    uniq: &str,
    decision: Decision,
) -> Result<(), RemotingCommand> {
    let tx = &ctx.transactions;
    // Claim the decision before publishing: a producer's own COMMIT and a
    // check-back answer can arrive together, and only one may re-publish.
    {
        let mut decisions = tx.decisions.lock();
        match decisions.get(uniq) {
            Some(d) if *d == decision => return Ok(()),
            Some(d) => {
                return Err(RemotingCommand::error(
                    ResponseCode::TRANSACTION_FAILED,
                    format!("transaction {uniq} was already resolved as {}", d.as_str()),
                ))
            }
            None => {
                decisions.insert(uniq.to_owned(), decision);
            }
        }
    }
    if decision == Decision::Commit {
        if let Err(resp) = publish_committed(ctx, half.commit_log_offset, half).await {
            // Not resolved after all: the producer (or the check-back) may try again.
            tx.decisions.lock().remove(uniq);
            return Err(resp);
        }
    }
    record_decision(ctx, half, uniq, decision).await;
    debug!(msg_id = %uniq, decision = decision.as_str(), "transaction resolved");
    Ok(())
}

/// Re-publishes a committed half message to its real topic (§12.10).
async fn publish_committed(
    ctx: &BrokerContext,
    prepared_offset: i64,
    half: &MessageExt,
) -> Result<(), RemotingCommand> {
    let err = |remark: String| RemotingCommand::error(ResponseCode::SYSTEM_ERROR, remark);
    let mut props = half.properties.clone();
    let Some(real_topic) = props.remove(keys::REAL_TOPIC) else {
        return Err(err("half message without REAL_TOPIC".into()));
    };
    let real_queue: i32 = props.remove(keys::REAL_QUEUE_ID).and_then(|q| q.parse().ok()).unwrap_or(0);
    props.remove(keys::TRANSACTION_PREPARED);
    props.remove(keys::TRANSACTION_CHECK_TIMES);
    let mut topic_name = real_topic;
    let mut queue_id = real_queue;
    let sys_flag = sysflag::with_transaction_type(half.sys_flag, sysflag::TRANSACTION_COMMIT_TYPE);
    crate::processor::send::apply_delay(ctx, &mut props, &mut topic_name, &mut queue_id, sys_flag);
    let put = PutMessage {
        tags_code: common::hash::tags_code(props.tags()),
        topic: topic_name,
        queue_id,
        flag: half.flag,
        sys_flag,
        born_timestamp: half.born_timestamp,
        born_host: half.born_host,
        reconsume_times: half.reconsume_times,
        prepared_transaction_offset: prepared_offset,
        body: half.body.clone(),
        properties: props.encode(),
    };
    let r = ctx.store.put(put).await;
    if !r.status.is_stored() {
        return Err(err(format!("committing the transaction failed: {:?}", r.status)));
    }
    Ok(())
}

async fn record_decision(ctx: &BrokerContext, half: &MessageExt, uniq: &str, decision: Decision) {
    ctx.transactions.decisions.lock().insert(uniq.to_owned(), decision);
    ctx.transactions.done_offsets.lock().insert(half.queue_offset);
    ctx.topics.create_system(TRANS_OP_HALF_TOPIC, 1, perm::READ_WRITE, 0);
    let r = ctx.store.put(op_record(half, uniq, decision)).await;
    if !r.status.is_stored() {
        warn!(msg_id = uniq, status = ?r.status, "could not write the transaction op record");
    }
}

/// The check-back loop.
pub async fn run_checker(ctx: Arc<BrokerContext>, cancel: CancellationToken) {
    if !ctx.config.broker_role.is_master() {
        return;
    }
    ctx.transactions.catch_up(&ctx);
    let mut tick = tokio::time::interval(ctx.config.transaction_check_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tick.tick() => {}
        }
        if ctx.topics.contains(TRANS_HALF_TOPIC) {
            check_round(&ctx).await;
        }
    }
}

/// One pass over the half queue.
pub async fn check_round(ctx: &Arc<BrokerContext>) {
    let tx = &ctx.transactions;
    tx.catch_up(ctx);
    let committed = ctx.offsets.query(TRANS_CHECK_GROUP, TRANS_HALF_TOPIC, 0);
    let mut cur = committed.max(ctx.store.min_offset_in_queue(TRANS_HALF_TOPIC, 0));
    let max = ctx.store.max_offset_in_queue(TRANS_HALF_TOPIC, 0);
    let timeout_ms = ctx.config.transaction_time_out.as_millis() as i64;
    'scan: while cur < max {
        let r = ctx.store.get_messages(&GetRequest::new(TRANS_HALF_TOPIC, 0, cur, 32));
        if r.status != GetStatus::Found {
            if r.next_begin_offset > cur {
                cur = r.next_begin_offset;
                continue;
            }
            break;
        }
        for (raw, &off) in r.messages.iter().zip(&r.queue_offsets) {
            if tx.done_offsets.lock().contains(&off) {
                cur = off + 1;
                continue;
            }
            let Ok(half) = MessageExt::decode(raw, false) else {
                cur = off + 1;
                continue;
            };
            let uniq = half.properties.uniq_key().unwrap_or_default().to_owned();
            if tx.decision(&uniq).is_some() {
                tx.done_offsets.lock().insert(off);
                cur = off + 1;
                continue;
            }
            let times: u32 =
                half.properties.get(keys::TRANSACTION_CHECK_TIMES).and_then(|t| t.parse().ok()).unwrap_or(0);
            if times >= ctx.config.transaction_check_max {
                discard(ctx, &half, &uniq).await;
                cur = off + 1;
                continue;
            }
            let immunity = half
                .properties
                .get(keys::CHECK_IMMUNITY_TIME_IN_SECONDS)
                .and_then(|s| s.parse::<i64>().ok())
                .map_or(timeout_ms, |s| s * 1000);
            if crate::now_ms() - half.store_timestamp < immunity {
                // Later half messages are younger still.
                break 'scan;
            }
            let (decision, ask) = match plugin_decision(ctx, &half, times) {
                Some(CheckDecision::Commit) => (Some(Decision::Commit), false),
                Some(CheckDecision::Rollback) => (Some(Decision::Rollback), false),
                // Checked again next round; not counted as a check.
                Some(CheckDecision::Defer { .. }) => (None, false),
                _ => (None, true),
            };
            if let Some(d) = decision {
                match resolve(ctx, &half, &uniq, d).await {
                    Ok(()) => debug!(msg_id = %uniq, decision = d.as_str(), "resolved by the check-back plugin"),
                    Err(resp) => {
                        warn!(msg_id = %uniq, remark = resp.remark_str(), "check-back plugin decision refused")
                    }
                }
            } else if !renew_and_check(ctx, &half, &uniq, if ask { times + 1 } else { times }, ask).await {
                break 'scan;
            }
            tx.done_offsets.lock().insert(off);
            cur = off + 1;
        }
    }
    ctx.offsets.commit(TRANS_CHECK_GROUP, TRANS_HALF_TOPIC, 0, cur);
    tx.done_offsets.lock().retain(|o| *o >= cur);
}

async fn discard(ctx: &BrokerContext, half: &MessageExt, uniq: &str) {
    {
        // Claimed like an END_TRANSACTION decision: a late COMMIT then gets
        // TRANSACTION_FAILED instead of racing the discard.
        let mut decisions = ctx.transactions.decisions.lock();
        if decisions.contains_key(uniq) {
            return;
        }
        decisions.insert(uniq.to_owned(), Decision::Discard);
    }
    warn!(msg_id = uniq, "transaction checked too many times; parked in TRANS_CHECK_MAX_TIME_TOPIC");
    ctx.topics.create_system(TRANS_CHECK_MAX_TIME_TOPIC, 1, perm::READ_WRITE, 0);
    let put = PutMessage {
        tags_code: common::hash::tags_code(half.properties.tags()),
        topic: TRANS_CHECK_MAX_TIME_TOPIC.to_owned(),
        queue_id: 0,
        flag: half.flag,
        sys_flag: half.sys_flag,
        born_timestamp: half.born_timestamp,
        born_host: half.born_host,
        reconsume_times: half.reconsume_times,
        prepared_transaction_offset: 0,
        body: half.body.clone(),
        properties: half.properties.encode(),
    };
    let _ = ctx.store.put(put).await;
    record_decision(ctx, half, uniq, Decision::Discard).await;
}

/// What the check-back plugin bound to the half message's real topic decides, if
/// one is bound (`AskProducer` when it cannot decide: its failure policy).
fn plugin_decision(ctx: &BrokerContext, half: &MessageExt, checked: u32) -> Option<CheckDecision> {
    let real_topic = half.properties.get(keys::REAL_TOPIC).unwrap_or(&half.topic);
    let plugin = ctx.plugins.txn_check_for(real_topic)?;
    let props = half.properties.encode();
    let tags = half.properties.tags();
    let view = MessageView {
        topic: real_topic,
        tags: tags.unwrap_or(""),
        keys: half.properties.get(keys::KEYS).unwrap_or(""),
        properties: props.as_bytes(),
        body: Some(&half.body),
        body_size: half.body.len() as u32,
        queue_id: half.properties.get(keys::REAL_QUEUE_ID).and_then(|q| q.parse().ok()).unwrap_or(0),
        queue_offset: half.queue_offset,
        commit_log_offset: half.commit_log_offset,
        store_timestamp: half.store_timestamp,
        born_timestamp: half.born_timestamp,
        tags_code: common::hash::tags_code(tags),
        reconsume_times: half.reconsume_times.max(0) as u32,
        check_count: checked,
        arg: &[],
    };
    let check = CheckContext { now_ms: crate::now_ms(), max_checks: ctx.config.transaction_check_max };
    let mut out = [CheckDecision::AskProducer];
    let report = plugin.check_with_policy(&check, std::slice::from_ref(&view), &mut out);
    if let Some(e) = report.error {
        debug!(plugin = plugin.name(), error = %e, "check-back plugin failed; asking the producer");
    }
    Some(out[0])
}

/// Re-appends the half message with its check count and, if `ask`, asks a producer
/// about the copy. Returns false when the copy could not be stored (stop this round).
async fn renew_and_check(ctx: &BrokerContext, half: &MessageExt, uniq: &str, times: u32, ask: bool) -> bool {
    let mut props = half.properties.clone();
    props.insert(keys::TRANSACTION_CHECK_TIMES, times.to_string());
    let put = PutMessage {
        tags_code: common::hash::tags_code(props.tags()),
        topic: TRANS_HALF_TOPIC.to_owned(),
        queue_id: 0,
        flag: half.flag,
        sys_flag: half.sys_flag,
        born_timestamp: half.born_timestamp,
        born_host: half.born_host,
        reconsume_times: half.reconsume_times,
        prepared_transaction_offset: 0,
        body: half.body.clone(),
        properties: props.encode(),
    };
    let r = ctx.store.put(put).await;
    if !r.status.is_stored() {
        warn!(msg_id = uniq, status = ?r.status, "could not re-append a half message for checking");
        return false;
    }
    if !ask {
        return true;
    }
    let group = props.get(keys::PRODUCER_GROUP).unwrap_or_default().to_owned();
    let Some(channel) = ctx.clients.producer_channel(&group) else {
        debug!(group = %group, msg_id = uniq, "no producer online to check the transaction");
        return true;
    };
    // The body: the copy as stored, with its real topic and queue (§9.4).
    let Some(raw) = ctx.store.look_message_by_offset(r.physical_offset) else { return true };
    let Ok(mut copy) = MessageExt::decode(&raw, false) else { return true };
    if let Some(t) = copy.properties.get(keys::REAL_TOPIC) {
        copy.topic = t.to_owned();
    }
    if let Some(q) = copy.properties.get(keys::REAL_QUEUE_ID).and_then(|q| q.parse().ok()) {
        copy.queue_id = q;
    }
    let Ok(body) = copy.to_record_bytes() else { return true };
    let header = CheckTransactionStateRequestHeader {
        tran_state_table_offset: r.queue_offset,
        commit_log_offset: r.physical_offset,
        msg_id: Some(uniq.to_owned()),
        transaction_id: Some(uniq.to_owned()),
        offset_msg_id: Some(r.msg_id()),
        topic: Some(copy.topic.clone()),
    };
    let cmd = RemotingCommand::request_with(RequestCode::CHECK_TRANSACTION_STATE, &header).with_body(body);
    if let Err(e) = channel.oneway(cmd).await {
        debug!(group = %group, error = %e, "could not send CHECK_TRANSACTION_STATE");
    } else {
        debug!(group = %group, msg_id = uniq, times, "transaction check sent");
    }
    true
}
