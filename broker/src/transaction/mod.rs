//! Transactional messages (`remoting-protocol.md` §12.10): applying a decision and
//! the check-back service. END_TRANSACTION itself is `processor::end_transaction`.
//!
//! A half message sits in `RMQ_SYS_TRANS_HALF_TOPIC` (queue 0), invisible to
//! consumers. COMMIT re-publishes it to its real topic, ROLLBACK discards it; either
//! way an op record goes to `RMQ_SYS_TRANS_OP_HALF_TOPIC` (tag `d`, body = the half
//! message's queue offset, as RocketMQ writes it).
//!
//! The state machine is strict (RocketMQ pain point #9): decisions are keyed by the
//! message's UNIQ_KEY (shared by a half message and the copies the check-back
//! re-appends), so a second COMMIT is a no-op, a COMMIT after a ROLLBACK (or the
//! reverse) is refused, and a resolved message is never checked again. A decision
//! is claimed before it is applied, so two COMMITs racing (the producer's own and a
//! check-back answer) publish once; a decision whose store write is refused (disk
//! full, shutting down) is released again, so the transaction stays undecided and a
//! later round decides it — nothing is lost and nothing is published twice. The
//! decision rides on the op record (`TX_UNIQ`, `TX_DECISION` properties) so it is
//! rebuilt after a restart, before the broker serves ([`TransactionState::catch_up`]).
//!
//! The check-back service wakes every `transaction_check_interval`, walks the half
//! queue from the internal group `CID_RMQ_SYS_TRANS`'s offset, and for each
//! unresolved message older than `transaction_time_out` (or its
//! `CHECK_IMMUNITY_TIME_IN_SECONDS`) asks the check-back plugin bound to its topic,
//! if any, else re-appends a copy with `TRANSACTION_CHECK_TIMES` + 1 and asks a live
//! producer of its group (CHECK_TRANSACTION_STATE, oneway) about the copy. After
//! `transaction_check_max` checks the message is parked in
//! `TRANS_CHECK_MAX_TIME_TOPIC`. The round never moves its offset past a message it
//! could not settle.

pub mod state;

use std::sync::Arc;

use bytes::Bytes;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use common::properties::{keys, Properties};
use common::sysflag::message as sysflag;
use common::topic::{TRANS_CHECK_GROUP, TRANS_HALF_TOPIC, TRANS_OP_HALF_TOPIC};
use common::{perm, MessageExt};
use plugin_api::{CheckContext, CheckDecision, MessageView};
use remoting::header::broker::CheckTransactionStateRequestHeader;
use remoting::{RemotingCommand, RequestCode};
use store::{GetRequest, GetStatus, PutMessage};

use crate::context::BrokerContext;
use crate::outcome::PutOutcome;
use crate::reroute::{self, Destination};
use crate::stats::BrokerStats;
use state::{Claim, Decision, PROP_TX_DECISION, PROP_TX_UNIQ};

pub use state::TransactionState;

const OP_TAG: &str = "d";

/// Why a decision was not applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// A different decision was made before.
    Contrary { uniq: String, made: Decision },
    /// The half message carries no real topic to commit to.
    NoRealTopic,
    /// The store refused a write the decision needs: the transaction stays
    /// undecided.
    Store(PutOutcome),
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refused::Contrary { uniq, made } => {
                write!(f, "transaction {uniq} was already resolved as {}", made.as_str())
            }
            Refused::NoRealTopic => f.write_str("half message without REAL_TOPIC"),
            Refused::Store(o) => write!(f, "the store refused the decision's write: {}", o.remark_str()),
        }
    }
}

fn op_record(half: &MessageExt, uniq: &str, decision: Decision) -> PutMessage {
    let mut props = Properties::new();
    props.insert(keys::TAGS, OP_TAG);
    props.insert(PROP_TX_UNIQ, uniq);
    props.insert(PROP_TX_DECISION, decision.as_str());
    PutMessage {
        born_timestamp: common::time::now_ms(),
        born_host: half.store_host,
        ..PutMessage::new(TRANS_OP_HALF_TOPIC, half.queue_id, Bytes::from(half.queue_offset.to_string()))
            .with_properties(props.encode())
    }
}

/// Applies `decision` to a half message once: claims it (a second identical decision
/// is a no-op, a contrary one is refused), publishes a commit, records the op. A
/// write the store refuses releases the claim, leaving the transaction undecided.
///
/// # Errors
/// See [`Refused`].
pub async fn resolve(ctx: &BrokerContext, half: &MessageExt, uniq: &str, decision: Decision) -> Result<(), Refused> {
    let tx = &ctx.transactions;
    match tx.claim(uniq, decision) {
        Claim::AlreadyMade => return Ok(()),
        Claim::Contrary(made) => return Err(Refused::Contrary { uniq: uniq.to_owned(), made }),
        Claim::Claimed => {}
    }
    let applied = match decision {
        Decision::Commit => publish_committed(ctx, half).await,
        Decision::Discard => park_checked_too_often(ctx, half).await,
        Decision::Rollback => Ok(()),
    };
    if let Err(e) = applied {
        tx.release(uniq);
        if matches!(e, Refused::Store(_)) {
            BrokerStats::add(&ctx.stats.tx_writes_refused, 1);
        }
        return Err(e);
    }
    if let Err(outcome) = record_decision(ctx, half, uniq, decision).await {
        if decision == Decision::Rollback {
            // Nothing happened yet: undecided, decided again later.
            tx.release(uniq);
            BrokerStats::add(&ctx.stats.tx_writes_refused, 1);
            return Err(Refused::Store(outcome));
        }
        // The message was published (or parked): keeping the decision in memory
        // stops this broker from publishing it twice; after a restart without the op
        // record the check-back asks the producer again, which answers the same.
        warn!(msg_id = uniq, remark = outcome.remark_str(), "transaction applied but its op record was refused");
    }
    debug!(msg_id = %uniq, decision = decision.as_str(), "transaction resolved");
    Ok(())
}

/// Re-publishes a committed half message to its real topic (§12.10), through its
/// delay level if it has one.
async fn publish_committed(ctx: &BrokerContext, half: &MessageExt) -> Result<(), Refused> {
    let mut props = half.properties.clone();
    let Some(mut dest) = reroute::real_destination(&props) else {
        return Err(Refused::NoRealTopic);
    };
    props.remove(keys::REAL_TOPIC);
    props.remove(keys::REAL_QUEUE_ID);
    props.remove(keys::TRANSACTION_PREPARED);
    props.remove(keys::TRANSACTION_CHECK_TIMES);
    let sys_flag = sysflag::with_transaction_type(half.sys_flag, sysflag::TRANSACTION_COMMIT_TYPE);
    reroute::to_delay_level(ctx, &mut props, &mut dest, sys_flag);
    let put = PutMessage {
        sys_flag,
        prepared_transaction_offset: half.commit_log_offset,
        ..PutMessage::from_stored(half, dest.topic, dest.queue_id, &props)
    };
    stored(ctx, put).await
}

/// Parks a half message checked `transaction_check_max` times.
async fn park_checked_too_often(ctx: &BrokerContext, half: &MessageExt) -> Result<(), Refused> {
    let Destination { topic, queue_id } = reroute::to_check_limit(ctx);
    let put = PutMessage {
        prepared_transaction_offset: 0,
        ..PutMessage::from_stored(half, topic, queue_id, &half.properties)
    };
    stored(ctx, put).await
}

async fn stored(ctx: &BrokerContext, put: PutMessage) -> Result<(), Refused> {
    let r = ctx.store.put(put).await;
    let outcome = PutOutcome::of(r.status, ctx);
    if outcome.is_stored() {
        Ok(())
    } else {
        Err(Refused::Store(outcome))
    }
}

async fn record_decision(
    ctx: &BrokerContext,
    half: &MessageExt,
    uniq: &str,
    decision: Decision,
) -> Result<(), PutOutcome> {
    ctx.topics.create_system(TRANS_OP_HALF_TOPIC, 1, perm::READ_WRITE, 0);
    let r = ctx.store.put(op_record(half, uniq, decision)).await;
    let outcome = PutOutcome::of(r.status, ctx);
    if !outcome.is_stored() {
        return Err(outcome);
    }
    ctx.transactions.mark_done(half.queue_offset);
    Ok(())
}

/// The check-back loop (masters only).
pub async fn run_checker(ctx: Arc<BrokerContext>, cancel: CancellationToken) {
    if ctx.role.is_slave() {
        return;
    }
    ctx.transactions.catch_up(&ctx.store);
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

/// What a check round does with an unresolved half message.
enum Step {
    Decide(Decision),
    /// Re-append without counting a check (a plugin deferred).
    Defer,
    /// Re-append with one more check and ask a producer.
    AskProducer,
}

/// One pass over the half queue.
pub async fn check_round(ctx: &Arc<BrokerContext>) {
    let tx = &ctx.transactions;
    tx.catch_up(&ctx.store);
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
            if tx.is_done(off) {
                cur = off + 1;
                continue;
            }
            let Ok(half) = MessageExt::decode(raw, false) else {
                cur = off + 1;
                continue;
            };
            let uniq = half.properties.uniq_key().unwrap_or_default().to_owned();
            if tx.decision(&uniq).is_some() {
                tx.mark_done(off);
                cur = off + 1;
                continue;
            }
            let times: u32 =
                half.properties.get(keys::TRANSACTION_CHECK_TIMES).and_then(|t| t.parse().ok()).unwrap_or(0);
            let step = if times >= ctx.runtime.transaction_check_max() {
                warn!(msg_id = %uniq, "transaction checked too many times; parked in TRANS_CHECK_MAX_TIME_TOPIC");
                Step::Decide(Decision::Discard)
            } else {
                let immunity = half
                    .properties
                    .get(keys::CHECK_IMMUNITY_TIME_IN_SECONDS)
                    .and_then(|s| s.parse::<i64>().ok())
                    .map_or(timeout_ms, |s| s * 1000);
                if common::time::now_ms() - half.store_timestamp < immunity {
                    // Later half messages are younger still.
                    break 'scan;
                }
                match plugin_decision(ctx, &half, times) {
                    Some(CheckDecision::Commit) => Step::Decide(Decision::Commit),
                    Some(CheckDecision::Rollback) => Step::Decide(Decision::Rollback),
                    // Checked again next round; not counted as a check.
                    Some(CheckDecision::Defer { .. }) => Step::Defer,
                    _ => Step::AskProducer,
                }
            };
            match step {
                Step::Decide(d) => match resolve(ctx, &half, &uniq, d).await {
                    Ok(()) => debug!(msg_id = %uniq, decision = d.as_str(), "resolved in the check round"),
                    Err(e @ Refused::Store(_)) => {
                        // Not settled: stop here so the round's offset does not pass it.
                        warn!(msg_id = %uniq, decision = d.as_str(), error = %e,
                              "transaction left undecided; the next round retries it");
                        break 'scan;
                    }
                    Err(e) => warn!(msg_id = %uniq, error = %e, "check-round decision refused"),
                },
                Step::Defer => {
                    if !renew_and_check(ctx, &half, &uniq, times, false).await {
                        break 'scan;
                    }
                }
                Step::AskProducer => {
                    if !renew_and_check(ctx, &half, &uniq, times + 1, true).await {
                        break 'scan;
                    }
                }
            }
            tx.mark_done(off);
            cur = off + 1;
        }
    }
    ctx.offsets.commit(TRANS_CHECK_GROUP, TRANS_HALF_TOPIC, 0, cur);
    tx.forget_done_below(cur);
}

/// RESUME_CHECK_HALF_MESSAGE: puts the message stored at `offset` (a half message,
/// or one parked after too many checks) back into the half topic with its check
/// count reset, so check rounds ask its producer again.
///
/// # Errors
/// A sentence: no such message, or the store refused the copy.
pub async fn resume_check(ctx: &BrokerContext, offset: i64) -> Result<String, String> {
    let raw = ctx.store.look_message_by_offset(offset).ok_or_else(|| format!("no message at offset {offset}"))?;
    let msg =
        MessageExt::decode(&raw, false).map_err(|e| format!("the message at offset {offset} is unreadable: {e}"))?;
    let mut props = msg.properties.clone();
    props.insert(keys::TRANSACTION_CHECK_TIMES, "0".to_owned());
    let put =
        PutMessage { prepared_transaction_offset: 0, ..PutMessage::from_stored(&msg, TRANS_HALF_TOPIC, 0, &props) };
    let r = ctx.store.put(put).await;
    if !r.status.is_stored() {
        return Err("Put message back to RMQ_SYS_TRANS_HALF_TOPIC failed.".to_owned());
    }
    let real = props.get(keys::REAL_TOPIC).unwrap_or(&msg.topic).to_owned();
    info!(real_topic = %real, offset, "half message put back for checking");
    Ok(real)
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
    let check = CheckContext { now_ms: common::time::now_ms(), max_checks: ctx.runtime.transaction_check_max() };
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
    let put =
        PutMessage { prepared_transaction_offset: 0, ..PutMessage::from_stored(half, TRANS_HALF_TOPIC, 0, &props) };
    let r = ctx.store.put(put).await;
    if !r.status.is_stored() {
        BrokerStats::add(&ctx.stats.tx_writes_refused, 1);
        let outcome = PutOutcome::of(r.status, ctx);
        warn!(msg_id = uniq, remark = outcome.remark_str(), "could not re-append a half message for checking");
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
    // The check's span: the broker asking the producer (the answer comes back as an
    // END_TRANSACTION, with a span of its own).
    let _span = ctx.tracer.as_ref().and_then(|t| {
        crate::spans::start_transaction(t, "check_transaction", opentelemetry::trace::SpanKind::Client, &copy, &group)
    });
    if let Err(e) = channel.oneway(cmd).await {
        debug!(group = %group, error = %e, "could not send CHECK_TRANSACTION_STATE");
    } else {
        debug!(group = %group, msg_id = uniq, times, "transaction check sent");
    }
    true
}
