//! RocketMQ 5's POP consumption: the broker keeps each consumer's place, so
//! consumers need no rebalancing (`processor::pop` serves the requests).
//!
//! A pop of a queue takes messages from the group's offset and, before handing them
//! out, appends a checkpoint (`common::pop::CheckPoint`) to the cluster's revive
//! topic (`rmq_sys_REVIVE_LOG_<cluster>`, one queue), then moves the group's offset
//! past them. An ack appends an ack record to the same queue. Both are ordinary
//! records of the commit log, so they are as durable as the messages (flushed and
//! replicated the same way) and a slave that takes over has them.
//!
//! The revive task ([`start`]) reads the revive queue in order and keeps, in memory,
//! the checkpoints not yet settled with the acks seen for them. When a checkpoint's
//! invisibility ends, each message not acked is appended again to the group's pop
//! retry topic (`%RETRY%<group>_<topic>`) with `reconsumeTimes` + 1, which makes it
//! visible to the next pop. Its progress is the group [`pop::REVIVE_GROUP`]'s offset
//! on the revive queue, never past the oldest unsettled checkpoint, and persisted
//! with the other consumer offsets: after a restart the task reads again from there
//! and rebuilds the same state, so a message is revived again only if the broker
//! stopped between reviving it and persisting that offset (the at-least-once
//! window). The same catch-up restores the groups' offsets: a checkpoint is
//! written before its pop moves the group's offset, so after a `kill -9` (which can
//! lose offsets committed since they were last persisted) each group's offset is
//! raised past every checkpoint read, and nothing popped is popped again as new.
//!
//! An orderly pop (a FIFO group) writes no checkpoint: the queue is held
//! ([`OrderHold`]) until its messages are acked or their invisibility ends; the
//! group's offset only moves with acks, and an expired hold delivers the same
//! messages again with their delivery count raised. Holds live in memory; after a
//! restart a held queue's unacked messages are delivered again at once.

pub mod state;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use common::pop::{self, Ack, CheckPoint};
use common::properties::{keys, Properties};
use common::record::RecordView;
use common::{perm, MessageExt};
use store::{GetRequest, PutMessage};

use crate::context::BrokerContext;
use crate::outcome::PutOutcome;
pub use state::{OrderHold, PopState};

/// Records of the revive queue read per step.
const REVIVE_BATCH: usize = 256;
/// The longest the revive task sleeps without looking at the revive queue.
const REVIVE_IDLE: Duration = Duration::from_millis(500);
/// A revival that could not be stored is tried again this much later.
const RETRY_AFTER_MS: i64 = 1000;

/// Appends a checkpoint or ack record to the revive queue; the refusal if it was not
/// stored.
pub async fn append_revive_record(ctx: &BrokerContext, tag: &str, body: Vec<u8>) -> Result<(), PutOutcome> {
    let topic = ctx.pop.revive_topic();
    ctx.topics.create_system(topic, 1, perm::READ_WRITE, 0);
    let mut props = Properties::new();
    props.insert(keys::TAGS, tag);
    let mut put = PutMessage::new(topic, 0, body).with_properties(props.encode());
    put.born_timestamp = common::time::now_ms();
    put.born_host = ctx.broker_addr;
    let r = ctx.store.put(put).await;
    let outcome = PutOutcome::of(r.status, ctx);
    if outcome.is_stored() {
        ctx.pop.revive_wake.notify_one();
        Ok(())
    } else {
        Err(outcome)
    }
}

/// What the revive task knows: how far it read the revive queue and the checkpoints
/// not settled yet.
pub struct ReviveState {
    scan: i64,
    pending: HashMap<CkKey, Pending>,
}

/// Reads the revive queue from the persisted revive progress to its end, raising each
/// group's offset past every checkpoint it finds (see the module notes). Runs before
/// the broker serves, so no pop sees an offset a `kill -9` set back.
pub fn recover(ctx: &BrokerContext) -> ReviveState {
    let topic = ctx.pop.revive_topic().to_owned();
    let committed = ctx.offsets.query(pop::REVIVE_GROUP, &topic, 0);
    let mut state =
        ReviveState { scan: committed.max(ctx.store.min_offset_in_queue(&topic, 0)), pending: HashMap::new() };
    let mut raised = 0usize;
    read_revive_queue(ctx, &mut state, |ck| {
        if let Some(last) = ck.offsets().max() {
            ctx.offsets.commit_at_least(&ck.group, &ck.topic, ck.queue_id, last + 1);
            raised += 1;
        }
    });
    if !state.pending.is_empty() || raised > 0 {
        tracing::info!(
            pending = state.pending.len(),
            checkpoints = raised,
            "pop checkpoints recovered from the revive queue"
        );
    }
    state
}

/// Reads what was appended to the revive queue since `state.scan`.
fn read_revive_queue(ctx: &BrokerContext, state: &mut ReviveState, mut on_checkpoint: impl FnMut(&CheckPoint)) {
    let topic = ctx.pop.revive_topic();
    loop {
        let r = ctx.store.get_messages(&GetRequest::new(topic, 0, state.scan, REVIVE_BATCH));
        for (raw, offset) in r.messages.iter().zip(&r.queue_offsets) {
            if let Some(ck) = take_record(&mut state.pending, raw, *offset) {
                on_checkpoint(&ck);
            }
        }
        let advanced = r.next_begin_offset > state.scan;
        state.scan = state.scan.max(r.next_begin_offset);
        if !advanced || r.messages.is_empty() {
            return;
        }
    }
}

/// Starts the revive task on a master, from what [`recover`] read.
pub fn start(
    ctx: Arc<BrokerContext>,
    state: ReviveState,
    cancel: CancellationToken,
    tasks: &tokio_util::task::TaskTracker,
) {
    if ctx.role.is_slave() {
        return;
    }
    tasks.spawn(tracing::Instrument::instrument(revive_loop(ctx, state, cancel), tracing::info_span!("pop_revive")));
}

/// A checkpoint not settled yet.
struct Pending {
    ck: CheckPoint,
    /// Its record's offset in the revive queue.
    revive_offset: i64,
    acked: HashSet<i64>,
    /// When to look at it (its revive time, later after a failed revival).
    due: i64,
}

type CkKey = (String, String, i32, i64, i64);

fn ck_key(topic: &str, group: &str, queue_id: i32, start: i64, pop_time: i64) -> CkKey {
    (topic.to_owned(), group.to_owned(), queue_id, start, pop_time)
}

async fn revive_loop(ctx: Arc<BrokerContext>, mut state: ReviveState, cancel: CancellationToken) {
    let topic = ctx.pop.revive_topic().to_owned();
    loop {
        read_revive_queue(&ctx, &mut state, |_| {});
        let now = common::time::now_ms();
        let due: Vec<CkKey> = state.pending.iter().filter(|(_, p)| p.due <= now).map(|(k, _)| k.clone()).collect();
        for key in due {
            let Some(p) = state.pending.get_mut(&key) else { continue };
            if revive(&ctx, p).await {
                state.pending.remove(&key);
            } else {
                p.due = common::time::now_ms() + RETRY_AFTER_MS;
            }
        }
        let progress = state.pending.values().map(|p| p.revive_offset).min().unwrap_or(state.scan);
        if progress != ctx.offsets.query(pop::REVIVE_GROUP, &topic, 0) {
            ctx.offsets.commit(pop::REVIVE_GROUP, &topic, 0, progress);
        }
        let now = common::time::now_ms();
        let wait =
            state.pending.values().map(|p| p.due).min().map_or(REVIVE_IDLE, |d| {
                Duration::from_millis((d - now).clamp(1, REVIVE_IDLE.as_millis() as i64) as u64)
            });
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = ctx.pop.revive_wake.notified() => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// Takes one record of the revive queue into the pending set; a checkpoint is
/// returned too.
fn take_record(pending: &mut HashMap<CkKey, Pending>, raw: &bytes::Bytes, offset: i64) -> Option<CheckPoint> {
    let v = RecordView::parse(raw).ok()?;
    let props = v.properties();
    match props.tags() {
        Some(pop::CK_TAG) => match serde_json::from_slice::<CheckPoint>(v.body()) {
            Ok(ck) => {
                let key = ck_key(&ck.topic, &ck.group, ck.queue_id, ck.start_offset, ck.pop_time);
                let due = ck.revive_time();
                pending.insert(key, Pending { ck: ck.clone(), revive_offset: offset, acked: HashSet::new(), due });
                return Some(ck);
            }
            Err(e) => warn!(offset, error = %e, "unreadable checkpoint in the revive queue; skipped"),
        },
        Some(pop::ACK_TAG) => match serde_json::from_slice::<Ack>(v.body()) {
            Ok(a) => {
                let key = ck_key(&a.topic, &a.group, a.queue_id, a.start_offset, a.pop_time);
                if let Some(p) = pending.get_mut(&key) {
                    p.acked.insert(a.ack_offset);
                    if p.ck.offsets().all(|o| p.acked.contains(&o)) {
                        pending.remove(&key);
                    }
                }
            }
            Err(e) => warn!(offset, error = %e, "unreadable ack in the revive queue; skipped"),
        },
        _ => {}
    }
    None
}

/// Appends each message of `p` not acked to the group's pop retry topic; true when
/// all are stored (or gone from the store).
async fn revive(ctx: &BrokerContext, p: &mut Pending) -> bool {
    let ck = &p.ck;
    let retry_topic = if common::topic::is_retry_topic(&ck.topic) {
        ck.topic.clone()
    } else {
        pop::retry_topic(&ck.topic, &ck.group)
    };
    let mut all = true;
    let offsets: Vec<i64> = ck.offsets().filter(|o| !p.acked.contains(o)).collect();
    for offset in offsets {
        let r = ctx.store.get_messages(&GetRequest::new(&ck.topic, ck.queue_id, offset, 1));
        let Some(raw) = r.messages.first().filter(|_| r.queue_offsets.first() == Some(&offset)) else {
            debug!(topic = %ck.topic, queue_id = ck.queue_id, offset, "popped message no longer stored; not revived");
            p.acked.insert(offset);
            continue;
        };
        let Ok(msg) = MessageExt::decode(raw, false) else {
            warn!(topic = %ck.topic, offset, "unreadable popped message; not revived");
            p.acked.insert(offset);
            continue;
        };
        ctx.topics.create_system(&retry_topic, 1, perm::READ_WRITE, 0);
        let mut props = msg.properties.clone();
        if msg.reconsume_times == 0 || !props.contains(pop::PROPERTY_FIRST_POP_TIME) {
            props.insert(pop::PROPERTY_FIRST_POP_TIME, ck.pop_time.to_string());
        }
        props.remove(pop::PROPERTY_POP_CK);
        let put = PutMessage {
            reconsume_times: msg.reconsume_times + 1,
            born_host: msg.born_host,
            ..PutMessage::from_stored(&msg, retry_topic.clone(), 0, &props)
        };
        let outcome = PutOutcome::of(ctx.store.put(put).await.status, ctx);
        if outcome.is_stored() {
            p.acked.insert(offset);
            debug!(topic = %ck.topic, group = %ck.group, offset, "popped message revived");
        } else {
            warn!(topic = %ck.topic, offset, remark = outcome.remark_str(), "reviving a popped message failed; retrying");
            all = false;
        }
    }
    all
}
