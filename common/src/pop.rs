//! RocketMQ 5's POP consumption, the facts both ends share: the retry topic a group's
//! unacknowledged pops go back to, the revive topic holding checkpoints and acks,
//! and the `extraInfo` string a popped message carries (RocketMQ's `ExtraInfoUtil`),
//! which a consumer hands back to ack it or change its invisibility.
//!
//! `extraInfo` is eight space-separated fields:
//! `startOffset popTime invisibleTime reviveQid retryMark brokerName queueId queueOffset`
//! where `startOffset` is the queue offset the pop started at (it names the
//! checkpoint), `retryMark` is `0` for the topic itself and `1` for the group's pop
//! retry topic (`2` for RocketMQ's v2 retry topic name), and `reviveQid` is
//! [`ORDER_REVIVE_QUEUE`] for an orderly pop.

use std::collections::HashMap;
use std::fmt;

use crate::topic::RETRY_GROUP_TOPIC_PREFIX;

/// The revive queue id of an orderly pop (RocketMQ's `POP_ORDER_REVIVE_QUEUE`): its
/// messages are not checkpointed; the queue is held until they are acked.
pub const ORDER_REVIVE_QUEUE: i32 = 999;
/// Tag of a checkpoint record in the revive topic.
pub const CK_TAG: &str = "ck";
/// Tag of an ack record in the revive topic.
pub const ACK_TAG: &str = "ack";
/// The consumer group whose offset on the revive topic is the revive progress.
pub const REVIVE_GROUP: &str = "CID_RMQ_SYS_REVIVE_GROUP";
/// Property carrying a popped retry message's `extraInfo` (set by the broker).
pub const PROPERTY_POP_CK: &str = "POP_CK";
/// Property: when the message was first popped (set when it is revived).
pub const PROPERTY_FIRST_POP_TIME: &str = "1ST_POP_TIME";
/// RocketMQ's `ConsumeInitMode`: a group without an offset starts at the queue's
/// first message (`MIN`) or at its last (`MAX`).
pub const INIT_MODE_MIN: i32 = 0;
pub const INIT_MODE_MAX: i32 = 1;

/// The revive topic of a cluster (RocketMQ's `rmq_sys_REVIVE_LOG_<cluster>`).
pub fn revive_topic(cluster: &str) -> String {
    format!("rmq_sys_REVIVE_LOG_{cluster}")
}

/// The retry topic of `group`'s pops of `topic` (RocketMQ's v1 name,
/// `%RETRY%<group>_<topic>`).
pub fn retry_topic(topic: &str, group: &str) -> String {
    format!("{RETRY_GROUP_TOPIC_PREFIX}{group}_{topic}")
}

/// The mark `extraInfo` gives a topic: `1` (or `2`) for a pop retry topic, else `0`.
pub fn retry_mark(topic: &str) -> &'static str {
    if !topic.starts_with(RETRY_GROUP_TOPIC_PREFIX) {
        "0"
    } else if topic.contains('+') {
        "2"
    } else {
        "1"
    }
}

/// The topic a mark names for `group`'s pops of `topic`.
pub fn real_topic(topic: &str, group: &str, mark: &str) -> String {
    match mark {
        "1" => retry_topic(topic, group),
        "2" => format!("{RETRY_GROUP_TOPIC_PREFIX}{group}+{topic}"),
        _ => topic.to_owned(),
    }
}

/// A popped message's handle: what an ack or an invisibility change names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtraInfo {
    /// The queue offset the pop started at (names the checkpoint).
    pub start_offset: i64,
    pub pop_time: i64,
    pub invisible_time: i64,
    pub revive_qid: i32,
    /// `0` the topic itself, `1`/`2` the group's pop retry topic.
    pub retry_mark: String,
    pub broker_name: String,
    pub queue_id: i32,
    /// The message's own queue offset.
    pub queue_offset: i64,
}

/// Why an `extraInfo` string is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("extraInfo `{0}` is not `startOffset popTime invisibleTime reviveQid retry brokerName queueId offset`")]
pub struct BadExtraInfo(pub String);

impl ExtraInfo {
    /// Parses the eight fields; anything after them (a gRPC receipt handle's commit-log
    /// offset) is ignored.
    ///
    /// # Errors
    /// Fewer than eight fields, or a number that does not parse.
    pub fn parse(s: &str) -> Result<Self, BadExtraInfo> {
        let bad = || BadExtraInfo(s.to_owned());
        let f: Vec<&str> = s.split(' ').collect();
        if f.len() < 8 {
            return Err(bad());
        }
        let mark = f[4];
        if !matches!(mark, "0" | "1" | "2") {
            return Err(bad());
        }
        Ok(Self {
            start_offset: f[0].parse().map_err(|_| bad())?,
            pop_time: f[1].parse().map_err(|_| bad())?,
            invisible_time: f[2].parse().map_err(|_| bad())?,
            revive_qid: f[3].parse().map_err(|_| bad())?,
            retry_mark: mark.to_owned(),
            broker_name: f[5].to_owned(),
            queue_id: f[6].parse().map_err(|_| bad())?,
            queue_offset: f[7].parse().map_err(|_| bad())?,
        })
    }

    /// When the message becomes visible again.
    pub fn revive_time(&self) -> i64 {
        self.pop_time.saturating_add(self.invisible_time)
    }

    pub fn is_order(&self) -> bool {
        self.revive_qid == ORDER_REVIVE_QUEUE
    }
}

impl fmt::Display for ExtraInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} {} {} {} {} {} {}",
            self.start_offset,
            self.pop_time,
            self.invisible_time,
            self.revive_qid,
            self.retry_mark,
            self.broker_name,
            self.queue_id,
            self.queue_offset
        )
    }
}

/// A POP answer's per-queue descriptions (`startOffsetInfo`, `msgOffsetInfo`,
/// `orderCountInfo`): `;`-joined `mark queueId value` items.
#[derive(Debug, Default, Clone)]
pub struct PopInfo {
    pub start_offsets: String,
    pub msg_offsets: String,
    pub order_counts: String,
}

impl PopInfo {
    fn item(s: &mut String) -> &mut String {
        if !s.is_empty() {
            s.push(';');
        }
        s
    }

    /// Where the pop of `topic`'s queue started and which offsets it took.
    pub fn add_queue(&mut self, topic: &str, queue_id: i32, start: i64, offsets: &[i64]) {
        use fmt::Write;
        let mark = retry_mark(topic);
        let _ = write!(Self::item(&mut self.start_offsets), "{mark} {queue_id} {start}");
        let joined: Vec<String> = offsets.iter().map(i64::to_string).collect();
        let _ = write!(Self::item(&mut self.msg_offsets), "{mark} {queue_id} {}", joined.join(","));
    }

    /// How often the message at `offset` of an orderly pop was delivered before.
    pub fn add_order_count(&mut self, topic: &str, queue_id: i32, offset: i64, count: i32) {
        use fmt::Write;
        let mark = retry_mark(topic);
        let _ = write!(Self::item(&mut self.order_counts), "{mark} qo{queue_id}%{offset} {count}");
    }

    /// Parses `mark queueId value;...` into `mark@queueId → value`.
    pub fn parse_map(s: &str) -> HashMap<String, String> {
        s.split(';')
            .filter(|i| !i.is_empty())
            .filter_map(|i| {
                let mut f = i.split(' ');
                let (m, q, v) = (f.next()?, f.next()?, f.next()?);
                Some((format!("{m}@{q}"), v.to_owned()))
            })
            .collect()
    }
}

/// A POP answer as a consumer reads it (RocketMQ's `processPopResponse`): the
/// `extraInfo` of each message it carries, and an orderly pop's delivery counts.
#[derive(Debug, Clone)]
pub struct PopAnswer {
    pub pop_time: i64,
    pub invisible_time: i64,
    pub revive_qid: i32,
    starts: HashMap<String, String>,
    order_counts: HashMap<String, String>,
}

impl PopAnswer {
    pub fn new(
        pop_time: i64,
        invisible_time: i64,
        revive_qid: i32,
        start_offset_info: Option<&str>,
        order_count_info: Option<&str>,
    ) -> Self {
        Self {
            pop_time,
            invisible_time,
            revive_qid,
            starts: PopInfo::parse_map(start_offset_info.unwrap_or("")),
            order_counts: PopInfo::parse_map(order_count_info.unwrap_or("")),
        }
    }

    /// The handle of the message at `queue_offset` of `topic`'s queue (`topic` as the
    /// message came, `pop_ck` its `POP_CK` property: a retry message's own handle).
    pub fn extra_info(
        &self,
        broker_name: &str,
        topic: &str,
        queue_id: i32,
        queue_offset: i64,
        pop_ck: Option<&str>,
    ) -> Option<ExtraInfo> {
        if let Some(ck) = pop_ck {
            return ExtraInfo::parse(ck).ok();
        }
        let mark = retry_mark(topic);
        let start = self.starts.get(&format!("{mark}@{queue_id}"))?.parse().ok()?;
        Some(ExtraInfo {
            start_offset: start,
            pop_time: self.pop_time,
            invisible_time: self.invisible_time,
            revive_qid: self.revive_qid,
            retry_mark: mark.to_owned(),
            broker_name: broker_name.to_owned(),
            queue_id,
            queue_offset,
        })
    }

    /// How often an orderly pop delivered this message before (0 when unknown).
    pub fn order_count(&self, topic: &str, queue_id: i32, queue_offset: i64) -> i32 {
        let mark = retry_mark(topic);
        self.order_counts
            .get(&format!("{mark}@qo{queue_id}%{queue_offset}"))
            .or_else(|| self.order_counts.get(&format!("{mark}@{queue_id}")))
            .and_then(|c| c.parse().ok())
            .unwrap_or(0)
    }
}

/// A checkpoint: one pop of one queue, written to the revive topic before the
/// messages are handed out (RocketMQ's `PopCheckPoint`, same JSON keys).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CheckPoint {
    #[serde(rename = "so")]
    pub start_offset: i64,
    #[serde(rename = "pt")]
    pub pop_time: i64,
    #[serde(rename = "it")]
    pub invisible_time: i64,
    #[serde(rename = "n")]
    pub num: i32,
    #[serde(rename = "q")]
    pub queue_id: i32,
    /// The topic the messages were popped from (the topic or its pop retry topic).
    #[serde(rename = "t")]
    pub topic: String,
    #[serde(rename = "c")]
    pub group: String,
    /// Each message's queue offset minus `start_offset`.
    #[serde(rename = "d")]
    pub offset_diffs: Vec<i32>,
    #[serde(rename = "bn", default)]
    pub broker_name: String,
}

impl CheckPoint {
    pub fn revive_time(&self) -> i64 {
        self.pop_time.saturating_add(self.invisible_time)
    }

    /// The queue offsets it covers.
    pub fn offsets(&self) -> impl Iterator<Item = i64> + '_ {
        self.offset_diffs.iter().map(|d| self.start_offset + i64::from(*d))
    }
}

/// An ack of one message of a checkpoint (RocketMQ's `AckMsg`, same JSON keys).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Ack {
    #[serde(rename = "ao")]
    pub ack_offset: i64,
    #[serde(rename = "so")]
    pub start_offset: i64,
    #[serde(rename = "c")]
    pub group: String,
    #[serde(rename = "t")]
    pub topic: String,
    #[serde(rename = "q")]
    pub queue_id: i32,
    #[serde(rename = "pt")]
    pub pop_time: i64,
    #[serde(rename = "bn", default)]
    pub broker_name: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extra_info_round_trips_and_ignores_a_trailing_field() {
        let s = "12 1700000000000 30000 0 1 broker-a 3 14";
        let e = ExtraInfo::parse(s).unwrap();
        assert_eq!(e.start_offset, 12);
        assert_eq!(e.queue_offset, 14);
        assert_eq!(e.retry_mark, "1");
        assert_eq!(e.revive_time(), 1_700_000_030_000);
        assert_eq!(e.to_string(), s);
        assert_eq!(ExtraInfo::parse(&format!("{s} 4096")).unwrap(), e);
        assert!(ExtraInfo::parse("1 2 3").is_err());
        assert!(ExtraInfo::parse("a 2 3 0 0 b 1 1").is_err());
        assert!(ExtraInfo::parse("1 2 3 0 7 b 1 1").is_err());
    }

    #[test]
    fn retry_topics_and_marks() {
        assert_eq!(retry_topic("orders", "g"), "%RETRY%g_orders");
        assert_eq!(retry_mark("orders"), "0");
        assert_eq!(retry_mark("%RETRY%g_orders"), "1");
        assert_eq!(retry_mark("%RETRY%g+orders"), "2");
        assert_eq!(real_topic("orders", "g", "1"), "%RETRY%g_orders");
        assert_eq!(real_topic("orders", "g", "0"), "orders");
    }

    #[test]
    fn pop_info_uses_rocketmq_layout() {
        let mut i = PopInfo::default();
        i.add_queue("t", 0, 5, &[5, 7]);
        i.add_queue("%RETRY%g_t", 0, 0, &[0]);
        i.add_order_count("t", 2, 9, 1);
        assert_eq!(i.start_offsets, "0 0 5;1 0 0");
        assert_eq!(i.msg_offsets, "0 0 5,7;1 0 0");
        assert_eq!(i.order_counts, "0 qo2%9 1");
        let m = PopInfo::parse_map(&i.msg_offsets);
        assert_eq!(m["0@0"], "5,7");
        assert_eq!(PopInfo::parse_map(&i.order_counts)["0@qo2%9"], "1");
    }

    #[test]
    fn an_answer_gives_each_message_its_handle() {
        let a = PopAnswer::new(100, 30_000, 0, Some("0 1 5;1 0 2"), Some("0 qo1%6 2"));
        let e = a.extra_info("b", "t", 1, 6, None).unwrap();
        assert_eq!(e.to_string(), "5 100 30000 0 0 b 1 6");
        assert_eq!(a.order_count("t", 1, 6), 2);
        assert_eq!(a.order_count("t", 1, 7), 0);
        assert!(a.extra_info("b", "t", 3, 6, None).is_none(), "no start offset for queue 3");
        let own = a.extra_info("b", "t", 0, 9, Some("2 100 30000 0 1 b 0 9")).unwrap();
        assert_eq!(own.retry_mark, "1");
    }

    #[test]
    fn checkpoint_json_uses_rocketmq_keys() {
        let ck = CheckPoint {
            start_offset: 4,
            pop_time: 10,
            invisible_time: 20,
            num: 2,
            queue_id: 1,
            topic: "t".into(),
            group: "g".into(),
            offset_diffs: vec![0, 3],
            broker_name: "b".into(),
        };
        let j = serde_json::to_string(&ck).unwrap();
        assert!(j.contains("\"so\":4") && j.contains("\"d\":[0,3]"), "{j}");
        assert_eq!(ck.offsets().collect::<Vec<_>>(), vec![4, 7]);
        assert_eq!(serde_json::from_str::<CheckPoint>(&j).unwrap(), ck);
    }
}
