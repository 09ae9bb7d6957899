//! Detours through system topics: where a message waits before it reaches the topic
//! its producer named, and how it comes back (`remoting-protocol.md` §12.3, §12.8–12.10).
//!
//! | detour | system topic (queue) | taken on | left by |
//! |---|---|---|---|
//! | transaction half | `RMQ_SYS_TRANS_HALF_TOPIC` (0) | a send with `TRAN_MSG` | commit (END_TRANSACTION, check-back) |
//! | delay level | `SCHEDULE_TOPIC_XXXX` (level − 1) | a send, send-back or commit with `DELAY` | the schedule service |
//! | timer | `rmq_sys_wheel_timer` (0) | a send with `TIMER_*` | the timer service |
//! | retry | `%RETRY%<group>` (random) | a consumer's send-back | the group's consumers |
//! | dead letter | `%DLQ%<group>` (0) | too many retries | an operator |
//! | check limit | `TRANS_CHECK_MAX_TIME_TOPIC` (0) | too many check-backs | an operator |
//!
//! A detour that comes back records the real destination in the `REAL_TOPIC` and
//! `REAL_QUEUE_ID` properties; [`real_destination`] reads it back. This module
//! owns those rules and the system topics' creation; it does not store anything (its
//! callers put the message) and it knows nothing of requests or responses.

use common::perm;
use common::properties::{keys, Properties};
use common::sysflag::message as sysflag;
use common::topic::{self, TopicConfig};

use crate::context::BrokerContext;

/// Where a message is appended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    pub topic: String,
    pub queue_id: i32,
}

impl Destination {
    pub fn new(topic: impl Into<String>, queue_id: i32) -> Self {
        Self { topic: topic.into(), queue_id }
    }

    /// Remembers `self` as the real destination and becomes `detour`.
    fn park_in(&mut self, props: &mut Properties, detour: Destination) {
        props.insert(keys::REAL_TOPIC, self.topic.clone());
        props.insert(keys::REAL_QUEUE_ID, self.queue_id.to_string());
        *self = detour;
    }
}

/// The destination a detour recorded in `props`; `None` when the message carries
/// none (not a detoured message). A missing or unreadable queue id is 0. The
/// properties stay on the message: RocketMQ keeps them on delay and timer
/// deliveries and clears them only on a transaction commit.
pub fn real_destination(props: &Properties) -> Option<Destination> {
    let topic = props.get(keys::REAL_TOPIC)?.to_owned();
    let queue_id = props.get(keys::REAL_QUEUE_ID).and_then(|q| q.trim().parse().ok()).unwrap_or(0);
    Some(Destination { topic, queue_id })
}

/// A half (prepared) message: parked in the half topic, invisible to consumers until
/// its producer commits. Its decision is keyed by UNIQ_KEY (`transaction`); every
/// RocketMQ producer sets one, and one that did not gets its own here, or its half
/// messages would share the empty key and only the first could resolve.
pub fn to_half(ctx: &BrokerContext, props: &mut Properties, dest: &mut Destination, sys_flag: &mut i32) {
    if props.uniq_key().is_none() {
        props.insert(keys::UNIQ_CLIENT_MESSAGE_ID_KEYIDX, ctx.uniq_ids.next_id(common::time::now_ms()));
    }
    *sys_flag = sysflag::with_transaction_type(*sys_flag, sysflag::TRANSACTION_NOT_TYPE);
    ctx.topics.create_system(topic::TRANS_HALF_TOPIC, 1, perm::READ_WRITE, 0);
    dest.park_in(props, Destination::new(topic::TRANS_HALF_TOPIC, 0));
}

/// A message with a `DELAY` level: parked in `SCHEDULE_TOPIC_XXXX`, queue level − 1
/// (levels above the last are clamped to it). Transaction halves and rollbacks keep
/// their destination. Returns whether the message was parked.
pub fn to_delay_level(ctx: &BrokerContext, props: &mut Properties, dest: &mut Destination, sys_flag: i32) -> bool {
    let tx = sysflag::transaction_type(sys_flag);
    if tx != sysflag::TRANSACTION_NOT_TYPE && tx != sysflag::TRANSACTION_COMMIT_TYPE {
        return false;
    }
    let level: i32 = props.get(keys::DELAY_TIME_LEVEL).and_then(|l| l.trim().parse().ok()).unwrap_or(0);
    if level <= 0 {
        return false;
    }
    let level = ctx.delay_levels.clamp(level);
    props.insert(keys::DELAY_TIME_LEVEL, level.to_string());
    dest.park_in(props, Destination::new(topic::SCHEDULE_TOPIC, level - 1));
    true
}

/// A message timed at an instant (`TIMER_DELIVER_MS`, `TIMER_DELAY_SEC`,
/// `TIMER_DELAY_MS`): parked in the timer topic with its absolute delivery time in
/// `TIMER_DELIVER_MS` (which becomes its consume-queue tags code). `Ok(false)` when
/// it is not timed, or already due (delivered at once, as RocketMQ does).
///
/// # Errors
/// The delivery time is further ahead than `timer_max_delay`: the remark to answer.
pub fn to_timer(
    ctx: &BrokerContext,
    props: &mut Properties,
    dest: &mut Destination,
    now_ms: i64,
) -> Result<bool, String> {
    let Some(at) = delivery_time(props, now_ms) else { return Ok(false) };
    let max = ctx.config.timer_max_delay.as_millis() as i64;
    if at - now_ms > max {
        return Err(format!(
            "the delivery time is {} ms ahead; the maximum is {} ms (timer_max_delay)",
            at - now_ms,
            max
        ));
    }
    if at <= now_ms {
        return Ok(false);
    }
    ctx.topics.create_system(topic::TIMER_TOPIC, 1, perm::READ_WRITE, 0);
    props.insert(keys::TIMER_DELIVER_MS, at.to_string());
    props.remove(keys::DELAY_TIME_LEVEL);
    dest.park_in(props, Destination::new(topic::TIMER_TOPIC, 0));
    Ok(true)
}

/// When a message with these properties should be delivered (absolute ms), if it is
/// a timed message.
pub fn delivery_time(props: &Properties, now_ms: i64) -> Option<i64> {
    if let Some(at) = props.get(keys::TIMER_DELIVER_MS).and_then(|v| v.trim().parse::<i64>().ok()) {
        return Some(at);
    }
    if let Some(s) = props.get(keys::TIMER_DELAY_SEC).and_then(|v| v.trim().parse::<i64>().ok()) {
        return Some(now_ms.saturating_add(s.saturating_mul(1000)));
    }
    props.get(keys::TIMER_DELAY_MS).and_then(|v| v.trim().parse::<i64>().ok()).map(|ms| now_ms.saturating_add(ms))
}

/// The group's retry topic (created with `queues` queues when missing).
pub fn retry_topic(ctx: &BrokerContext, group: &str, queues: i32) -> TopicConfig {
    ctx.topics.create_system(&topic::retry_topic(group), queues, perm::READ_WRITE, 0)
}

/// The group's dead-letter queue, created write-only: dead letters are not consumed
/// unless an operator makes the topic readable (as RocketMQ does). A dead letter's
/// delay level is dropped.
pub fn to_dead_letter(ctx: &BrokerContext, group: &str, props: &mut Properties) -> Destination {
    let dlq = ctx.topics.create_system(&topic::dlq_topic(group), 1, perm::WRITE, 0);
    props.remove(keys::DELAY_TIME_LEVEL);
    Destination::new(dlq.topic_name, 0)
}

/// Where a half message checked too often is parked (RocketMQ's
/// `TRANS_CHECK_MAX_TIME_TOPIC`).
pub fn to_check_limit(ctx: &BrokerContext) -> Destination {
    ctx.topics.create_system(topic::TRANS_CHECK_MAX_TIME_TOPIC, 1, perm::READ_WRITE, 0);
    Destination::new(topic::TRANS_CHECK_MAX_TIME_TOPIC, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_detour_round_trips_the_real_destination() {
        let mut props = Properties::new();
        props.insert(keys::TAGS, "a");
        let mut dest = Destination::new("orders", 3);
        dest.park_in(&mut props, Destination::new(topic::SCHEDULE_TOPIC, 2));
        assert_eq!(dest, Destination::new(topic::SCHEDULE_TOPIC, 2));
        assert_eq!(real_destination(&props), Some(Destination::new("orders", 3)));
        assert_eq!(props.tags(), Some("a"));
        assert_eq!(real_destination(&Properties::new()), None);
    }

    #[test]
    fn delivery_time_prefers_the_absolute_instant() {
        let mut props = Properties::new();
        assert_eq!(delivery_time(&props, 1000), None);
        props.insert(keys::TIMER_DELAY_MS, "250");
        assert_eq!(delivery_time(&props, 1000), Some(1250));
        props.insert(keys::TIMER_DELAY_SEC, "2");
        assert_eq!(delivery_time(&props, 1000), Some(3000));
        props.insert(keys::TIMER_DELIVER_MS, "5000");
        assert_eq!(delivery_time(&props, 1000), Some(5000));
    }
}
