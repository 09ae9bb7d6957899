//! Topic configuration, naming rules and the system topics.

use serde::{Deserialize, Serialize};

use crate::lenient;
use crate::perm;

/// Auto-create template topic: producers ask for its route when theirs is missing.
pub const AUTO_CREATE_TOPIC_KEY: &str = "TBW102";
pub const SCHEDULE_TOPIC: &str = "SCHEDULE_TOPIC_XXXX";
pub const SELF_TEST_TOPIC: &str = "SELF_TEST_TOPIC";
pub const BENCHMARK_TOPIC: &str = "BenchmarkTest";
pub const OFFSET_MOVED_EVENT: &str = "OFFSET_MOVED_EVENT";
pub const TRANS_HALF_TOPIC: &str = "RMQ_SYS_TRANS_HALF_TOPIC";
pub const TRANS_OP_HALF_TOPIC: &str = "RMQ_SYS_TRANS_OP_HALF_TOPIC";
pub const TRANS_CHECK_MAX_TIME_TOPIC: &str = "TRANS_CHECK_MAX_TIME_TOPIC";
pub const TRACE_TOPIC: &str = "RMQ_SYS_TRACE_TOPIC";
/// RocketMQ 5 timer topic (arbitrary-time delayed messages).
pub const TIMER_TOPIC: &str = "rmq_sys_wheel_timer";
pub const RETRY_GROUP_TOPIC_PREFIX: &str = "%RETRY%";
pub const DLQ_GROUP_TOPIC_PREFIX: &str = "%DLQ%";
/// Internal consumer group of the transaction check-back service.
pub const TRANS_CHECK_GROUP: &str = "CID_RMQ_SYS_TRANS";
/// Inner producer group every consumer process registers.
pub const CLIENT_INNER_PRODUCER_GROUP: &str = "CLIENT_INNER_PRODUCER";
/// Namespace of the name server KV table that feeds `orderTopicConf`.
pub const ORDER_TOPIC_CONFIG_NAMESPACE: &str = "ORDER_TOPIC_CONFIG";
pub const DEFAULT_CLUSTER: &str = "DefaultCluster";
/// Longest topic name RocketMQ accepts.
pub const MAX_TOPIC_LEN: usize = 127;

/// System topics producers may not send to directly (answered with NO_PERMISSION).
pub const NOT_ALLOWED_SEND_TOPICS: &[&str] = &[
    SCHEDULE_TOPIC,
    TRANS_HALF_TOPIC,
    TRANS_OP_HALF_TOPIC,
    TRANS_CHECK_MAX_TIME_TOPIC,
    SELF_TEST_TOPIC,
    OFFSET_MOVED_EVENT,
];

/// RocketMQ's system topics (`TopicValidator.getSystemTopicSet`), which
/// GET_SYSTEM_TOPIC_LIST_FROM_BROKER lists along with the cluster and broker names.
pub const SYSTEM_TOPICS: &[&str] = &[
    AUTO_CREATE_TOPIC_KEY,
    SCHEDULE_TOPIC,
    BENCHMARK_TOPIC,
    SELF_TEST_TOPIC,
    OFFSET_MOVED_EVENT,
    TRANS_HALF_TOPIC,
    TRANS_OP_HALF_TOPIC,
    TRANS_CHECK_MAX_TIME_TOPIC,
    TRACE_TOPIC,
    TIMER_TOPIC,
];

/// Why a topic name is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicNameError {
    #[error("the topic name is blank")]
    Blank,
    #[error("the topic name is {0} characters long; the maximum is {MAX_TOPIC_LEN}")]
    TooLong(usize),
    #[error("the topic name contains `{0}`; only letters, digits, `%`, `|`, `_` and `-` are allowed")]
    IllegalChar(char),
}

/// RocketMQ's topic naming rule: non-blank, `[%|a-zA-Z0-9_-]`, at most 127 chars.
///
/// # Errors
/// The first rule the name breaks.
pub fn validate_topic(name: &str) -> Result<(), TopicNameError> {
    if name.trim().is_empty() {
        return Err(TopicNameError::Blank);
    }
    if name.len() > MAX_TOPIC_LEN {
        return Err(TopicNameError::TooLong(name.chars().count()));
    }
    if let Some(c) = name.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '%' | '|' | '_' | '-'))) {
        return Err(TopicNameError::IllegalChar(c));
    }
    Ok(())
}

pub fn is_not_allowed_send(topic: &str) -> bool {
    NOT_ALLOWED_SEND_TOPICS.contains(&topic)
}

/// Topics the broker creates for itself; they are hidden from topic lists meant for users.
pub fn is_system_topic(topic: &str) -> bool {
    NOT_ALLOWED_SEND_TOPICS.contains(&topic)
        || topic == AUTO_CREATE_TOPIC_KEY
        || topic == TRACE_TOPIC
        || topic == TIMER_TOPIC
        || topic.starts_with("rmq_sys_")
}

pub fn retry_topic(group: &str) -> String {
    format!("{RETRY_GROUP_TOPIC_PREFIX}{group}")
}

pub fn dlq_topic(group: &str) -> String {
    format!("{DLQ_GROUP_TOPIC_PREFIX}{group}")
}

pub fn is_retry_topic(topic: &str) -> bool {
    topic.starts_with(RETRY_GROUP_TOPIC_PREFIX)
}

pub fn is_dlq_topic(topic: &str) -> bool {
    topic.starts_with(DLQ_GROUP_TOPIC_PREFIX)
}

crate::java_enum! {
    /// Whether a topic's messages carry one tag or several.
    #[derive(Default)]
    pub enum TopicFilterType {
        #[default]
        SingleTag = "SINGLE_TAG",
        MultiTag = "MULTI_TAG",
    }
}

/// A topic's configuration on a broker (`TopicConfig`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct TopicConfig {
    pub topic_name: String,
    #[serde(deserialize_with = "lenient::i32")]
    pub read_queue_nums: i32,
    #[serde(deserialize_with = "lenient::i32")]
    pub write_queue_nums: i32,
    #[serde(deserialize_with = "lenient::i32")]
    pub perm: i32,
    pub topic_filter_type: TopicFilterType,
    #[serde(deserialize_with = "lenient::i32")]
    pub topic_sys_flag: i32,
    #[serde(deserialize_with = "lenient::bool")]
    pub order: bool,
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub attributes: std::collections::BTreeMap<String, String>,
}

/// Queue count of a `TopicConfig` built without explicit numbers.
pub const DEFAULT_TOPIC_QUEUE_NUMS: i32 = 16;

impl Default for TopicConfig {
    fn default() -> Self {
        Self {
            topic_name: String::new(),
            read_queue_nums: DEFAULT_TOPIC_QUEUE_NUMS,
            write_queue_nums: DEFAULT_TOPIC_QUEUE_NUMS,
            perm: perm::READ_WRITE,
            topic_filter_type: TopicFilterType::SingleTag,
            topic_sys_flag: 0,
            order: false,
            attributes: Default::default(),
        }
    }
}

impl TopicConfig {
    pub fn new(name: impl Into<String>, queues: i32, perm: i32) -> Self {
        Self { topic_name: name.into(), read_queue_nums: queues, write_queue_nums: queues, perm, ..Self::default() }
    }

    /// The compact form used in compressed broker registrations:
    /// `"<name> <read> <write> <perm> <filterType>"`.
    pub fn encode_compact(&self) -> String {
        format!(
            "{} {} {} {} {}",
            self.topic_name, self.read_queue_nums, self.write_queue_nums, self.perm, self.topic_filter_type
        )
    }

    /// Parses [`TopicConfig::encode_compact`]'s output; `None` when malformed.
    pub fn decode_compact(s: &str) -> Option<Self> {
        let mut it = s.split(' ');
        let topic_name = it.next()?.to_owned();
        let read_queue_nums = it.next()?.parse().ok()?;
        let write_queue_nums = it.next()?.parse().ok()?;
        let perm = it.next()?.parse().ok()?;
        let topic_filter_type = TopicFilterType::from_name(it.next()?)?;
        Some(Self { topic_name, read_queue_nums, write_queue_nums, perm, topic_filter_type, ..Self::default() })
    }
}

/// The topic attribute RocketMQ 5 declares the accepted message type with.
pub const MESSAGE_TYPE_ATTRIBUTE: &str = "message.type";
/// Its values: one type, or `MIXED` for any.
pub const MESSAGE_TYPES: &[&str] = &["NORMAL", "FIFO", "DELAY", "TRANSACTION", "MIXED"];

/// Applies RocketMQ 5's attribute changes (`+key=value` sets, `-key` removes, comma
/// separated, as `mqadmin updateTopic -a` sends them) to `current`. Only the
/// attributes FerroMQ honours are accepted (`message.type`); any other key is refused
/// by name rather than stored and ignored.
///
/// # Errors
/// A malformed entry, an unsupported key or an invalid value, named.
pub fn alter_attributes(
    current: &std::collections::BTreeMap<String, String>,
    changes: &str,
) -> Result<std::collections::BTreeMap<String, String>, String> {
    let mut out = current.clone();
    for entry in changes.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let (key, value) = match (entry.strip_prefix('+'), entry.strip_prefix('-')) {
            (Some(kv), _) => match kv.split_once('=') {
                Some((k, v)) => (k.trim(), Some(v.trim())),
                None => return Err(format!("attribute `{entry}`: expected +key=value")),
            },
            (_, Some(k)) => (k.trim(), None),
            _ => return Err(format!("attribute `{entry}`: expected +key=value or -key")),
        };
        if key != MESSAGE_TYPE_ATTRIBUTE {
            return Err(format!("attribute `{key}` is not supported (supported: {MESSAGE_TYPE_ATTRIBUTE})"));
        }
        match value {
            Some(v) if MESSAGE_TYPES.contains(&v) => {
                out.insert(key.to_owned(), v.to_owned());
            }
            Some(v) => {
                return Err(format!("attribute `{key}`: `{v}` is not one of {}", MESSAGE_TYPES.join(", ")));
            }
            None => {
                out.remove(key);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_name_rules() {
        assert!(validate_topic("TopicTest").is_ok());
        assert!(validate_topic("%RETRY%group-1|x_y").is_ok());
        assert_eq!(validate_topic(" "), Err(TopicNameError::Blank));
        assert_eq!(validate_topic("a b"), Err(TopicNameError::IllegalChar(' ')));
        assert_eq!(validate_topic("a.b"), Err(TopicNameError::IllegalChar('.')));
        assert_eq!(validate_topic(&"x".repeat(128)), Err(TopicNameError::TooLong(128)));
        assert!(validate_topic(&"x".repeat(127)).is_ok());
    }

    #[test]
    fn system_topics() {
        assert!(is_not_allowed_send(SCHEDULE_TOPIC));
        assert!(!is_not_allowed_send("TopicTest"));
        assert_eq!(retry_topic("G"), "%RETRY%G");
        assert!(is_dlq_topic(&dlq_topic("G")));
    }

    #[test]
    fn topic_config_json_matches_java_shape() {
        let t = TopicConfig::new("TopicTest", 4, 6);
        let json = serde_json::to_string(&t).unwrap();
        assert_eq!(
            json,
            r#"{"topicName":"TopicTest","readQueueNums":4,"writeQueueNums":4,"perm":6,"topicFilterType":"SINGLE_TAG","topicSysFlag":0,"order":false}"#
        );
        let back: TopicConfig = serde_json::from_str(&json).unwrap();
        assert_eq!(back, t);
        let cpp: TopicConfig = serde_json::from_str(r#"{"topicName":"T","readQueueNums":"8","perm":"6"}"#).unwrap();
        assert_eq!((cpp.read_queue_nums, cpp.write_queue_nums), (8, 16));
    }

    #[test]
    fn compact_form_round_trips() {
        let t = TopicConfig { topic_filter_type: TopicFilterType::MultiTag, ..TopicConfig::new("T1", 8, 7) };
        assert_eq!(t.encode_compact(), "T1 8 8 7 MULTI_TAG");
        assert_eq!(TopicConfig::decode_compact(&t.encode_compact()), Some(t));
        assert_eq!(TopicConfig::decode_compact("T1 8 x 7 SINGLE_TAG"), None);
    }

    #[test]
    fn attributes_take_message_type_changes_and_refuse_the_rest() {
        let none = std::collections::BTreeMap::new();
        let fifo = alter_attributes(&none, "+message.type=FIFO").unwrap();
        assert_eq!(fifo.get(MESSAGE_TYPE_ATTRIBUTE).map(String::as_str), Some("FIFO"));
        assert!(alter_attributes(&fifo, "-message.type").unwrap().is_empty());
        assert_eq!(alter_attributes(&fifo, "").unwrap(), fifo);
        let err = alter_attributes(&none, "+queue.type=BatchCQ").unwrap_err();
        assert!(err.contains("queue.type") && err.contains("not supported"), "{err}");
        assert!(alter_attributes(&none, "+message.type=LIFO").unwrap_err().contains("LIFO"));
        assert!(alter_attributes(&none, "message.type=FIFO").is_err());
    }
}
