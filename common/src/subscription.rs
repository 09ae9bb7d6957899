//! Client registration and subscription types: the HEART_BEAT body and the
//! broker's subscription group configuration.

use serde::{Deserialize, Serialize};

use crate::hash::java_string_hash;
use crate::lenient;

/// Subscribe-to-everything expression.
pub const SUB_ALL: &str = "*";

/// Expression-type prefix of a subscription filtered by a broker plugin:
/// `PLUGIN:<plugin name>`, with the subscription string as the plugin's argument.
/// A FerroMQ extension; RocketMQ itself knows only `TAG` and `SQL92`.
pub const PLUGIN_EXPRESSION_PREFIX: &str = "PLUGIN:";

crate::java_enum! {
    /// How a consumer gets messages.
    pub enum ConsumeType {
        /// Pull consumer.
        ConsumeActively = "CONSUME_ACTIVELY",
        /// Push consumer.
        ConsumePassively = "CONSUME_PASSIVELY",
        /// 5.x POP consumer.
        ConsumePop = "CONSUME_POP",
    }
}

crate::java_enum! {
    #[derive(Default)]
    pub enum MessageModel {
        Broadcasting = "BROADCASTING",
        #[default]
        Clustering = "CLUSTERING",
    }
}

crate::java_enum! {
    /// Where a new consumer group starts (ordinals matter: the C++ client sends them).
    #[derive(Default)]
    pub enum ConsumeFromWhere {
        #[default]
        LastOffset = "CONSUME_FROM_LAST_OFFSET",
        LastOffsetAndFromMinWhenBootFirst = "CONSUME_FROM_LAST_OFFSET_AND_FROM_MIN_WHEN_BOOT_FIRST",
        MinOffset = "CONSUME_FROM_MIN_OFFSET",
        MaxOffset = "CONSUME_FROM_MAX_OFFSET",
        FirstOffset = "CONSUME_FROM_FIRST_OFFSET",
        Timestamp = "CONSUME_FROM_TIMESTAMP",
    }
}

crate::java_enum! {
    /// Subscription expression language.
    #[derive(Default)]
    pub enum ExpressionType {
        #[default]
        Tag = "TAG",
        Sql92 = "SQL92",
    }
}

/// One topic subscription of a consumer group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct SubscriptionData {
    #[serde(deserialize_with = "lenient::bool")]
    pub class_filter_mode: bool,
    pub topic: String,
    #[serde(deserialize_with = "lenient::string")]
    pub sub_string: String,
    pub tags_set: Vec<String>,
    pub code_set: Vec<i32>,
    #[serde(deserialize_with = "lenient::i64")]
    pub sub_version: i64,
    /// Kept as a string: plugin filters add expression types beyond TAG and SQL92.
    #[serde(deserialize_with = "lenient::string")]
    pub expression_type: String,
}

impl SubscriptionData {
    /// Builds a subscription the way the Java client's `FilterAPI` does: for TAG
    /// expressions, `*`/empty means all, otherwise tags split on `||` and trimmed,
    /// each with its Java hash in `code_set`.
    pub fn new(topic: impl Into<String>, expression: &str, expression_type: &str, sub_version: i64) -> Self {
        let mut s = Self {
            topic: topic.into(),
            sub_string: expression.trim().to_owned(),
            expression_type: expression_type.to_owned(),
            sub_version,
            ..Self::default()
        };
        if s.sub_string.is_empty() {
            s.sub_string = SUB_ALL.to_owned();
        }
        if s.is_tag_type() && s.sub_string != SUB_ALL {
            for tag in s.sub_string.split("||").map(str::trim).filter(|t| !t.is_empty()) {
                if !s.tags_set.iter().any(|t| t == tag) {
                    s.tags_set.push(tag.to_owned());
                    s.code_set.push(java_string_hash(tag));
                }
            }
        }
        s
    }

    pub fn is_tag_type(&self) -> bool {
        self.expression_type.is_empty() || self.expression_type.eq_ignore_ascii_case("TAG")
    }

    /// The filter plugin a `PLUGIN:<name>` subscription names (prefix matched
    /// case-insensitively, like the other expression types).
    pub fn plugin_name(&self) -> Option<&str> {
        let ty = self.expression_type.as_str();
        let n = PLUGIN_EXPRESSION_PREFIX.len();
        match ty.get(..n) {
            Some(prefix) if prefix.eq_ignore_ascii_case(PLUGIN_EXPRESSION_PREFIX) => Some(&ty[n..]),
            _ => None,
        }
    }

    /// True for a TAG subscription that accepts every message.
    pub fn subscribes_all(&self) -> bool {
        self.is_tag_type() && (self.sub_string.is_empty() || self.sub_string == SUB_ALL)
    }
}

/// A consumer group as one client describes it in a heartbeat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ConsumerData {
    pub group_name: String,
    pub consume_type: ConsumeType,
    pub message_model: MessageModel,
    pub consume_from_where: ConsumeFromWhere,
    pub subscription_data_set: Vec<SubscriptionData>,
    #[serde(deserialize_with = "lenient::bool")]
    pub unit_mode: bool,
}

impl Default for ConsumerData {
    fn default() -> Self {
        Self {
            group_name: String::new(),
            consume_type: ConsumeType::ConsumePassively,
            message_model: MessageModel::Clustering,
            consume_from_where: ConsumeFromWhere::LastOffset,
            subscription_data_set: Vec::new(),
            unit_mode: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct ProducerData {
    pub group_name: String,
}

/// The HEART_BEAT body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct HeartbeatData {
    #[serde(rename = "clientID")]
    pub client_id: String,
    #[serde(rename = "producerDataSet")]
    pub producer_data_set: Vec<ProducerData>,
    #[serde(rename = "consumerDataSet")]
    pub consumer_data_set: Vec<ConsumerData>,
}

/// A consumer group's configuration on a broker (`SubscriptionGroupConfig`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SubscriptionGroupConfig {
    pub group_name: String,
    #[serde(deserialize_with = "lenient::bool")]
    pub consume_enable: bool,
    #[serde(deserialize_with = "lenient::bool")]
    pub consume_from_min_enable: bool,
    #[serde(deserialize_with = "lenient::bool")]
    pub consume_broadcast_enable: bool,
    #[serde(deserialize_with = "lenient::bool")]
    pub consume_message_orderly: bool,
    #[serde(deserialize_with = "lenient::i32")]
    pub retry_queue_nums: i32,
    #[serde(deserialize_with = "lenient::i32")]
    pub retry_max_times: i32,
    #[serde(deserialize_with = "lenient::i64")]
    pub broker_id: i64,
    #[serde(deserialize_with = "lenient::i64")]
    pub which_broker_when_consume_slowly: i64,
    #[serde(deserialize_with = "lenient::bool")]
    pub notify_consumer_ids_changed_enable: bool,
}

impl Default for SubscriptionGroupConfig {
    fn default() -> Self {
        Self {
            group_name: String::new(),
            consume_enable: true,
            consume_from_min_enable: true,
            consume_broadcast_enable: true,
            consume_message_orderly: false,
            retry_queue_nums: 1,
            retry_max_times: 16,
            broker_id: 0,
            which_broker_when_consume_slowly: 1,
            notify_consumer_ids_changed_enable: true,
        }
    }
}

impl SubscriptionGroupConfig {
    pub fn new(group: impl Into<String>) -> Self {
        Self { group_name: group.into(), ..Self::default() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_tag_subscription_like_java() {
        let s = SubscriptionData::new("T", " TagA || TagB||TagA ", "TAG", 1);
        assert_eq!(s.tags_set, ["TagA", "TagB"]);
        assert_eq!(s.code_set, [2_598_919, 2_598_920]);
        assert!(!s.subscribes_all());
        assert!(SubscriptionData::new("T", "", "TAG", 1).subscribes_all());
        let sql = SubscriptionData::new("T", "a > 1", "SQL92", 1);
        assert!(sql.tags_set.is_empty() && !sql.subscribes_all());
    }

    #[test]
    fn plugin_expression_type_names_the_plugin() {
        let s = SubscriptionData::new("T", "100..500", "PLUGIN:price-range", 1);
        assert_eq!(s.plugin_name(), Some("price-range"));
        assert!(s.tags_set.is_empty() && !s.is_tag_type());
        assert_eq!(SubscriptionData::new("T", "x", "plugin:vip", 1).plugin_name(), Some("vip"));
        assert_eq!(SubscriptionData::new("T", "x", "SQL92", 1).plugin_name(), None);
        assert_eq!(SubscriptionData::new("T", "x", "PLUG", 1).plugin_name(), None);
    }

    #[test]
    fn decodes_java_heartbeat() {
        let json = r#"{"clientID":"192.168.0.9@4711#93847561234","consumerDataSet":[{"consumeFromWhere":"CONSUME_FROM_LAST_OFFSET",
 "consumeType":"CONSUME_PASSIVELY","groupName":"CG","messageModel":"CLUSTERING",
 "subscriptionDataSet":[{"classFilterMode":false,"codeSet":[2598919],"expressionType":"TAG",
   "subString":"TagA","subVersion":1700000000123,"tagsSet":["TagA"],"topic":"TopicTest"},
  {"classFilterMode":false,"codeSet":[],"expressionType":"TAG","subString":"*",
   "subVersion":1700000000124,"tagsSet":[],"topic":"%RETRY%CG"}],"unitMode":false}],
 "producerDataSet":[{"groupName":"CLIENT_INNER_PRODUCER"}]}"#;
        let hb: HeartbeatData = serde_json::from_str(json).unwrap();
        assert_eq!(hb.client_id, "192.168.0.9@4711#93847561234");
        let c = &hb.consumer_data_set[0];
        assert_eq!(c.consume_type, ConsumeType::ConsumePassively);
        assert_eq!(c.message_model, MessageModel::Clustering);
        assert_eq!(c.subscription_data_set[0].code_set, [2_598_919]);
        assert_eq!(c.subscription_data_set[1].sub_version, 1_700_000_000_124);
        assert_eq!(hb.producer_data_set[0].group_name, "CLIENT_INNER_PRODUCER");
    }

    #[test]
    fn decodes_cpp_heartbeat_with_ordinals_and_string_numbers() {
        let json = r#"{"clientID":"10.0.0.1@123","consumerDataSet":[{"consumeFromWhere":4,"consumeType":1,
          "groupName":"CG","messageModel":0,"subscriptionDataSet":[{"subString":"*","subVersion":"1700000000000",
          "topic":"T"}]}],"producerDataSet":[]}"#;
        let hb: HeartbeatData = serde_json::from_str(json).unwrap();
        let c = &hb.consumer_data_set[0];
        assert_eq!(c.consume_from_where, ConsumeFromWhere::FirstOffset);
        assert_eq!(c.consume_type, ConsumeType::ConsumePassively);
        assert_eq!(c.message_model, MessageModel::Broadcasting);
        assert_eq!(c.subscription_data_set[0].sub_version, 1_700_000_000_000);
        assert!(c.subscription_data_set[0].subscribes_all());
        assert!(!c.unit_mode);
    }
}
