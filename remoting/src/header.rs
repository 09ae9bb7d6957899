//! Typed custom headers and their mapping to `extFields`.
//!
//! Java builds a header object by reflection: each field is read from
//! `extFields[fieldName]`; a missing `@CFNotNull` field fails the request. Here the
//! [`header!`] macro declares the struct together with each field's wire key; a plain
//! type is required, an `Option` is optional. Values are always *sent* as strings
//! (the Rust and C++ clients insist) and parsed leniently on the way in: surrounding
//! whitespace is ignored and booleans follow Java's `Boolean.parseBoolean`.

use crate::command::ExtFields;

/// Why a custom header could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// Java's wording, which clients show users: "the custom field <x> is null".
    #[error("the custom field <{0}> is null")]
    Missing(&'static str),
    #[error("the custom field {key} has an invalid value `{value}`")]
    Invalid { key: &'static str, value: String },
}

/// A typed custom header.
pub trait CommandHeader: Sized {
    fn encode(&self, ext: &mut ExtFields);

    /// # Errors
    /// A required key is missing or a value does not parse.
    fn decode(ext: &ExtFields) -> Result<Self, HeaderError>;
}

/// A scalar that travels as an `extFields` string.
pub trait HeaderValue: Sized {
    /// Appends the value's text to `out`.
    fn write_ext(&self, out: &mut String);
    fn from_ext(s: &str) -> Option<Self>;
}

impl HeaderValue for String {
    fn write_ext(&self, out: &mut String) {
        out.push_str(self);
    }
    fn from_ext(s: &str) -> Option<Self> {
        Some(s.to_owned())
    }
}

macro_rules! int_value {
    ($($t:ty),+) => {$(
        impl HeaderValue for $t {
            fn write_ext(&self, out: &mut String) {
                use std::fmt::Write;
                let _ = write!(out, "{self}");
            }
            fn from_ext(s: &str) -> Option<Self> {
                s.trim().parse().ok()
            }
        }
    )+};
}
int_value!(i32, i64, u64);

impl HeaderValue for bool {
    fn write_ext(&self, out: &mut String) {
        out.push_str(if *self { "true" } else { "false" });
    }
    /// `Boolean.parseBoolean`: anything but a case-insensitive "true" is false.
    fn from_ext(s: &str) -> Option<Self> {
        Some(s.trim().eq_ignore_ascii_case("true"))
    }
}

/// How one header field is written and read: required for plain values, optional
/// for `Option`s.
pub trait HeaderField: Sized {
    fn put(&self, key: &'static str, ext: &mut ExtFields);
    /// # Errors
    /// See [`HeaderError`].
    fn take(ext: &ExtFields, key: &'static str) -> Result<Self, HeaderError>;
}

impl<T: HeaderValue> HeaderField for T {
    fn put(&self, key: &'static str, ext: &mut ExtFields) {
        ext.push_with(key, |out| self.write_ext(out));
    }
    fn take(ext: &ExtFields, key: &'static str) -> Result<Self, HeaderError> {
        let raw = ext.get(key).ok_or(HeaderError::Missing(key))?;
        T::from_ext(raw).ok_or_else(|| HeaderError::Invalid { key, value: raw.to_owned() })
    }
}

impl<T: HeaderValue> HeaderField for Option<T> {
    fn put(&self, key: &'static str, ext: &mut ExtFields) {
        if let Some(v) = self {
            ext.push_with(key, |out| v.write_ext(out));
        }
    }
    /// An optional value that does not parse is dropped, as Java only logs it.
    fn take(ext: &ExtFields, key: &'static str) -> Result<Self, HeaderError> {
        Ok(ext.get(key).and_then(T::from_ext))
    }
}

/// Declares a header struct and its wire keys.
#[macro_export]
macro_rules! header {
    ($(#[$m:meta])* pub struct $name:ident { $($(#[$fm:meta])* $field:ident : $ty:ty = $key:literal),* $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Default, PartialEq, Eq)]
        pub struct $name { $($(#[$fm])* pub $field: $ty),* }

        impl $crate::header::CommandHeader for $name {
            fn encode(&self, ext: &mut $crate::command::ExtFields) {
                $(<$ty as $crate::header::HeaderField>::put(&self.$field, $key, ext);)*
            }
            #[allow(unused_variables)]
            fn decode(ext: &$crate::command::ExtFields) -> Result<Self, $crate::header::HeaderError> {
                Ok(Self { $($field: <$ty as $crate::header::HeaderField>::take(ext, $key)?),* })
            }
        }
    };
}

/// Headers of name-server requests (`remoting-protocol.md` §5.17).
pub mod namesrv {
    header! {
        pub struct RegisterBrokerRequestHeader {
            broker_name: String = "brokerName",
            broker_addr: String = "brokerAddr",
            cluster_name: String = "clusterName",
            ha_server_addr: String = "haServerAddr",
            broker_id: i64 = "brokerId",
            heartbeat_timeout_millis: Option<i64> = "heartbeatTimeoutMillis",
            enable_acting_master: Option<bool> = "enableActingMaster",
            compressed: Option<bool> = "compressed",
            /// CRC32 of the body masked to 31 bits; absent or 0 = don't check.
            body_crc32: Option<i32> = "bodyCrc32",
        }
    }
    header! {
        pub struct RegisterBrokerResponseHeader {
            ha_server_addr: Option<String> = "haServerAddr",
            master_addr: Option<String> = "masterAddr",
        }
    }
    header! {
        pub struct UnRegisterBrokerRequestHeader {
            broker_name: String = "brokerName",
            broker_addr: String = "brokerAddr",
            cluster_name: String = "clusterName",
            broker_id: i64 = "brokerId",
        }
    }
    header! {
        pub struct GetRouteInfoRequestHeader {
            topic: String = "topic",
            accept_standard_json_only: Option<bool> = "acceptStandardJsonOnly",
        }
    }
    header! {
        pub struct QueryDataVersionRequestHeader {
            broker_name: String = "brokerName",
            broker_addr: String = "brokerAddr",
            cluster_name: String = "clusterName",
            broker_id: i64 = "brokerId",
        }
    }
    header! {
        pub struct QueryDataVersionResponseHeader {
            changed: bool = "changed",
        }
    }
    header! {
        pub struct PutKvConfigRequestHeader {
            namespace: String = "namespace",
            key: String = "key",
            value: String = "value",
        }
    }
    header! {
        pub struct GetKvConfigRequestHeader {
            namespace: String = "namespace",
            key: String = "key",
        }
    }
    header! {
        pub struct GetKvConfigResponseHeader {
            value: Option<String> = "value",
        }
    }
    header! {
        pub struct DeleteKvConfigRequestHeader {
            namespace: String = "namespace",
            key: String = "key",
        }
    }
    header! {
        pub struct GetKvListByNamespaceRequestHeader {
            namespace: String = "namespace",
        }
    }
    header! {
        pub struct WipeWritePermOfBrokerRequestHeader {
            broker_name: String = "brokerName",
        }
    }
    header! {
        pub struct WipeWritePermOfBrokerResponseHeader {
            wipe_topic_count: i32 = "wipeTopicCount",
        }
    }
    header! {
        pub struct AddWritePermOfBrokerRequestHeader {
            broker_name: String = "brokerName",
        }
    }
    header! {
        pub struct AddWritePermOfBrokerResponseHeader {
            add_topic_count: i32 = "addTopicCount",
        }
    }
    header! {
        pub struct DeleteTopicFromNamesrvRequestHeader {
            topic: String = "topic",
            cluster_name: Option<String> = "clusterName",
        }
    }
    header! {
        pub struct GetTopicsByClusterRequestHeader {
            cluster: String = "cluster",
        }
    }
}

/// Headers of broker requests (`remoting-protocol.md` §5.1–§5.16).
pub mod broker {
    header! {
        /// UPDATE_AND_CREATE_ACL_CONFIG (50): an account; the permission lists are
        /// comma-joined `name=PERM` entries.
        pub struct CreateAccessConfigRequestHeader {
            access_key: String = "accessKey",
            secret_key: Option<String> = "secretKey",
            white_remote_address: Option<String> = "whiteRemoteAddress",
            admin: Option<bool> = "admin",
            default_topic_perm: Option<String> = "defaultTopicPerm",
            default_group_perm: Option<String> = "defaultGroupPerm",
            topic_perms: Option<String> = "topicPerms",
            group_perms: Option<String> = "groupPerms",
        }
    }

    header! {
        /// DELETE_ACL_CONFIG (51).
        pub struct DeleteAccessConfigRequestHeader {
            access_key: String = "accessKey",
        }
    }

    header! {
        /// UPDATE_GLOBAL_WHITE_ADDRS_CONFIG (53): a comma-joined list.
        pub struct UpdateGlobalWhiteAddrsConfigRequestHeader {
            global_white_addrs: String = "globalWhiteAddrs",
            acl_file_full_path: Option<String> = "aclFileFullPath",
        }
    }

    header! {
        /// GET_BROKER_CLUSTER_ACL_INFO (52) response: the file's `DataVersion` as JSON,
        /// and each file's (`allAclFileVersion`, path → `DataVersion`).
        pub struct GetBrokerAclConfigResponseHeader {
            version: String = "version",
            all_acl_file_version: Option<String> = "allAclFileVersion",
            broker_name: String = "brokerName",
            broker_addr: String = "brokerAddr",
            cluster_name: String = "clusterName",
        }
    }

    header! {
        /// SEND_MESSAGE (10) and SEND_REPLY_MESSAGE (324): full field names.
        pub struct SendMessageRequestHeader {
            producer_group: String = "producerGroup",
            topic: String = "topic",
            default_topic: String = "defaultTopic",
            default_topic_queue_nums: i32 = "defaultTopicQueueNums",
            queue_id: i32 = "queueId",
            sys_flag: i32 = "sysFlag",
            born_timestamp: i64 = "bornTimestamp",
            flag: i32 = "flag",
            properties: Option<String> = "properties",
            reconsume_times: Option<i32> = "reconsumeTimes",
            unit_mode: Option<bool> = "unitMode",
            batch: Option<bool> = "batch",
            max_reconsume_times: Option<i32> = "maxReconsumeTimes",
            broker_name: Option<String> = "bname",
        }
    }
    header! {
        /// SEND_MESSAGE_V2 (310), SEND_BATCH_MESSAGE (320), SEND_REPLY_MESSAGE_V2 (325):
        /// the same fields under one-letter keys.
        pub struct SendMessageRequestHeaderV2 {
            producer_group: String = "a",
            topic: String = "b",
            default_topic: String = "c",
            default_topic_queue_nums: i32 = "d",
            queue_id: i32 = "e",
            sys_flag: i32 = "f",
            born_timestamp: i64 = "g",
            flag: i32 = "h",
            properties: Option<String> = "i",
            reconsume_times: Option<i32> = "j",
            unit_mode: Option<bool> = "k",
            max_reconsume_times: Option<i32> = "l",
            batch: Option<bool> = "m",
            broker_name: Option<String> = "n",
        }
    }

    impl From<SendMessageRequestHeaderV2> for SendMessageRequestHeader {
        fn from(v: SendMessageRequestHeaderV2) -> Self {
            Self {
                producer_group: v.producer_group,
                topic: v.topic,
                default_topic: v.default_topic,
                default_topic_queue_nums: v.default_topic_queue_nums,
                queue_id: v.queue_id,
                sys_flag: v.sys_flag,
                born_timestamp: v.born_timestamp,
                flag: v.flag,
                properties: v.properties,
                reconsume_times: v.reconsume_times,
                unit_mode: v.unit_mode,
                batch: v.batch,
                max_reconsume_times: v.max_reconsume_times,
                broker_name: v.broker_name,
            }
        }
    }

    impl From<SendMessageRequestHeader> for SendMessageRequestHeaderV2 {
        fn from(v: SendMessageRequestHeader) -> Self {
            Self {
                producer_group: v.producer_group,
                topic: v.topic,
                default_topic: v.default_topic,
                default_topic_queue_nums: v.default_topic_queue_nums,
                queue_id: v.queue_id,
                sys_flag: v.sys_flag,
                born_timestamp: v.born_timestamp,
                flag: v.flag,
                properties: v.properties,
                reconsume_times: v.reconsume_times,
                unit_mode: v.unit_mode,
                batch: v.batch,
                max_reconsume_times: v.max_reconsume_times,
                broker_name: v.broker_name,
            }
        }
    }

    header! {
        /// PUSH_REPLY_MESSAGE_TO_CLIENT (326): a reply pushed to the requester, with
        /// the send header's fields plus where and when it passed the broker.
        pub struct ReplyMessageRequestHeader {
            producer_group: String = "producerGroup",
            topic: String = "topic",
            default_topic: String = "defaultTopic",
            default_topic_queue_nums: i32 = "defaultTopicQueueNums",
            queue_id: i32 = "queueId",
            sys_flag: i32 = "sysFlag",
            born_timestamp: i64 = "bornTimestamp",
            flag: i32 = "flag",
            properties: Option<String> = "properties",
            reconsume_times: Option<i32> = "reconsumeTimes",
            unit_mode: Option<bool> = "unitMode",
            born_host: String = "bornHost",
            store_host: String = "storeHost",
            store_timestamp: i64 = "storeTimestamp",
        }
    }
    header! {
        pub struct SendMessageResponseHeader {
            /// offsetMsgId; comma-joined for batches.
            msg_id: String = "msgId",
            queue_id: i32 = "queueId",
            queue_offset: i64 = "queueOffset",
            transaction_id: Option<String> = "transactionId",
            batch_uniq_id: Option<String> = "batchUniqId",
        }
    }
    header! {
        pub struct PullMessageRequestHeader {
            consumer_group: String = "consumerGroup",
            topic: String = "topic",
            queue_id: i32 = "queueId",
            queue_offset: i64 = "queueOffset",
            max_msg_nums: i32 = "maxMsgNums",
            sys_flag: i32 = "sysFlag",
            commit_offset: i64 = "commitOffset",
            suspend_timeout_millis: i64 = "suspendTimeoutMillis",
            subscription: Option<String> = "subscription",
            sub_version: i64 = "subVersion",
            expression_type: Option<String> = "expressionType",
            max_msg_bytes: Option<i32> = "maxMsgBytes",
            broker_name: Option<String> = "bname",
        }
    }
    header! {
        /// Sent on every pull answer, whatever the code (the Java client requires it).
        pub struct PullMessageResponseHeader {
            suggest_which_broker_id: i64 = "suggestWhichBrokerId",
            next_begin_offset: i64 = "nextBeginOffset",
            min_offset: i64 = "minOffset",
            max_offset: i64 = "maxOffset",
        }
    }
    header! {
        /// POP_MESSAGE (200050): take up to `maxMsgNums` messages of a group's queue
        /// (`queueId` -1: any readable queue) and hide them for `invisibleTime` ms;
        /// wait up to `pollTime` ms for some.
        pub struct PopMessageRequestHeader {
            consumer_group: String = "consumerGroup",
            topic: String = "topic",
            queue_id: i32 = "queueId",
            max_msg_nums: i32 = "maxMsgNums",
            invisible_time: i64 = "invisibleTime",
            poll_time: i64 = "pollTime",
            born_time: i64 = "bornTime",
            init_mode: i32 = "initMode",
            exp_type: Option<String> = "expType",
            exp: Option<String> = "exp",
            order: Option<bool> = "order",
            attempt_id: Option<String> = "attemptId",
        }
    }
    header! {
        /// Sent on every POP answer. The consumer builds each message's `extraInfo`
        /// from the `*Info` fields (`common::pop`).
        pub struct PopMessageResponseHeader {
            pop_time: i64 = "popTime",
            invisible_time: i64 = "invisibleTime",
            revive_qid: i32 = "reviveQid",
            rest_num: i64 = "restNum",
            start_offset_info: Option<String> = "startOffsetInfo",
            msg_offset_info: Option<String> = "msgOffsetInfo",
            order_count_info: Option<String> = "orderCountInfo",
        }
    }
    header! {
        /// ACK_MESSAGE (200051): `topic` is the topic the message was popped from
        /// (the group's pop retry topic for a retried one).
        pub struct AckMessageRequestHeader {
            consumer_group: String = "consumerGroup",
            topic: String = "topic",
            queue_id: i32 = "queueId",
            extra_info: String = "extraInfo",
            offset: i64 = "offset",
        }
    }
    header! {
        /// CHANGE_MESSAGE_INVISIBLETIME (200053).
        pub struct ChangeInvisibleTimeRequestHeader {
            consumer_group: String = "consumerGroup",
            topic: String = "topic",
            queue_id: i32 = "queueId",
            extra_info: String = "extraInfo",
            offset: i64 = "offset",
            invisible_time: i64 = "invisibleTime",
        }
    }
    header! {
        pub struct ChangeInvisibleTimeResponseHeader {
            pop_time: i64 = "popTime",
            invisible_time: i64 = "invisibleTime",
            revive_qid: i32 = "reviveQid",
        }
    }
    header! {
        pub struct QueryConsumerOffsetRequestHeader {
            consumer_group: String = "consumerGroup",
            topic: String = "topic",
            queue_id: i32 = "queueId",
            set_zero_if_not_found: Option<bool> = "setZeroIfNotFound",
        }
    }
    header! {
        pub struct QueryConsumerOffsetResponseHeader {
            offset: i64 = "offset",
        }
    }
    header! {
        pub struct UpdateConsumerOffsetRequestHeader {
            consumer_group: String = "consumerGroup",
            topic: String = "topic",
            queue_id: i32 = "queueId",
            commit_offset: i64 = "commitOffset",
        }
    }
    header! {
        pub struct SearchOffsetRequestHeader {
            topic: String = "topic",
            queue_id: i32 = "queueId",
            timestamp: i64 = "timestamp",
            boundary_type: Option<String> = "boundaryType",
        }
    }
    header! {
        /// Answer of SEARCH_OFFSET_BY_TIMESTAMP, GET_MAX_OFFSET and GET_MIN_OFFSET.
        pub struct OffsetResponseHeader {
            offset: i64 = "offset",
        }
    }
    header! {
        pub struct GetMaxOffsetRequestHeader {
            topic: String = "topic",
            queue_id: i32 = "queueId",
            committed: Option<bool> = "committed",
        }
    }
    header! {
        /// GET_MIN_OFFSET and GET_EARLIEST_MSG_STORETIME.
        pub struct TopicQueueRequestHeader {
            topic: String = "topic",
            queue_id: i32 = "queueId",
        }
    }
    header! {
        pub struct GetEarliestMsgStoretimeResponseHeader {
            timestamp: i64 = "timestamp",
        }
    }
    header! {
        pub struct ViewMessageRequestHeader {
            offset: i64 = "offset",
        }
    }
    header! {
        pub struct QueryMessageRequestHeader {
            topic: String = "topic",
            key: String = "key",
            max_num: i32 = "maxNum",
            begin_timestamp: i64 = "beginTimestamp",
            end_timestamp: i64 = "endTimestamp",
        }
    }
    header! {
        pub struct QueryMessageResponseHeader {
            index_last_update_timestamp: i64 = "indexLastUpdateTimestamp",
            index_last_update_phyoffset: i64 = "indexLastUpdatePhyoffset",
        }
    }
    header! {
        pub struct UnregisterClientRequestHeader {
            client_id: String = "clientID",
            producer_group: Option<String> = "producerGroup",
            consumer_group: Option<String> = "consumerGroup",
        }
    }
    header! {
        pub struct ConsumerSendMsgBackRequestHeader {
            /// Commit-log offset of the message being returned.
            offset: i64 = "offset",
            group: String = "group",
            delay_level: i32 = "delayLevel",
            origin_msg_id: Option<String> = "originMsgId",
            origin_topic: Option<String> = "originTopic",
            unit_mode: Option<bool> = "unitMode",
            max_reconsume_times: Option<i32> = "maxReconsumeTimes",
        }
    }
    header! {
        pub struct EndTransactionRequestHeader {
            producer_group: String = "producerGroup",
            tran_state_table_offset: i64 = "tranStateTableOffset",
            commit_log_offset: i64 = "commitLogOffset",
            /// 0 = unknown, 8 = commit, 12 = rollback.
            commit_or_rollback: i32 = "commitOrRollback",
            from_transaction_check: Option<bool> = "fromTransactionCheck",
            msg_id: String = "msgId",
            transaction_id: Option<String> = "transactionId",
            topic: Option<String> = "topic",
        }
    }
    header! {
        pub struct CheckTransactionStateRequestHeader {
            tran_state_table_offset: i64 = "tranStateTableOffset",
            commit_log_offset: i64 = "commitLogOffset",
            msg_id: Option<String> = "msgId",
            transaction_id: Option<String> = "transactionId",
            offset_msg_id: Option<String> = "offsetMsgId",
            topic: Option<String> = "topic",
        }
    }
    header! {
        /// GET_CONSUMER_LIST_BY_GROUP, NOTIFY_CONSUMER_IDS_CHANGED,
        /// GET_CONSUMER_CONNECTION_LIST.
        pub struct ConsumerGroupRequestHeader {
            consumer_group: String = "consumerGroup",
        }
    }
    header! {
        pub struct CreateTopicRequestHeader {
            topic: String = "topic",
            default_topic: String = "defaultTopic",
            read_queue_nums: i32 = "readQueueNums",
            write_queue_nums: i32 = "writeQueueNums",
            perm: i32 = "perm",
            topic_filter_type: String = "topicFilterType",
            topic_sys_flag: Option<i32> = "topicSysFlag",
            order: bool = "order",
            /// RocketMQ 5's attribute changes (`+message.type=FIFO`, `-key`).
            attributes: Option<String> = "attributes",
        }
    }

    impl CreateTopicRequestHeader {
        /// A readable, writable, unordered single-tag topic of `queues` read and
        /// write queues, through the `TBW102` template: what `mqadmin updateTopic`
        /// sends by default. Set the other fields with struct update syntax.
        pub fn new(topic: impl Into<String>, queues: i32) -> Self {
            Self {
                topic: topic.into(),
                default_topic: common::topic::AUTO_CREATE_TOPIC_KEY.to_owned(),
                read_queue_nums: queues,
                write_queue_nums: queues,
                perm: common::perm::READ_WRITE,
                topic_filter_type: common::topic::TopicFilterType::SingleTag.as_str().to_owned(),
                topic_sys_flag: Some(0),
                order: false,
                attributes: None,
            }
        }
    }
    header! {
        pub struct TopicRequestHeader {
            topic: String = "topic",
        }
    }
    header! {
        pub struct DeleteSubscriptionGroupRequestHeader {
            group_name: String = "groupName",
            remove_offset: Option<bool> = "removeOffset",
        }
    }
    header! {
        pub struct GetConsumeStatsRequestHeader {
            consumer_group: String = "consumerGroup",
            topic: Option<String> = "topic",
        }
    }
    header! {
        pub struct GetConsumerRunningInfoRequestHeader {
            consumer_group: String = "consumerGroup",
            client_id: String = "clientId",
            jstack_enable: Option<bool> = "jstackEnable",
        }
    }
    header! {
        pub struct ResetOffsetRequestHeader {
            topic: String = "topic",
            group: String = "group",
            timestamp: i64 = "timestamp",
            is_force: bool = "isForce",
        }
    }
    header! {
        pub struct GetProducerConnectionListRequestHeader {
            producer_group: String = "producerGroup",
        }
    }
    header! {
        pub struct QueryTopicConsumeByWhoRequestHeader {
            topic: String = "topic",
        }
    }
    header! {
        pub struct QueryConsumeTimeSpanRequestHeader {
            topic: String = "topic",
            group: String = "group",
        }
    }
    header! {
        pub struct GetConsumeStatsInBrokerHeader {
            is_order: bool = "isOrder",
        }
    }
    header! {
        pub struct QueryConsumeQueueRequestHeader {
            topic: String = "topic",
            queue_id: i32 = "queueId",
            index: i64 = "index",
            count: i32 = "count",
            consumer_group: Option<String> = "consumerGroup",
        }
    }
    header! {
        pub struct CloneGroupOffsetRequestHeader {
            src_group: String = "srcGroup",
            dest_group: String = "destGroup",
            topic: Option<String> = "topic",
            offline: bool = "offline",
        }
    }
    header! {
        pub struct ViewBrokerStatsDataRequestHeader {
            stats_name: String = "statsName",
            stats_key: String = "statsKey",
        }
    }
    header! {
        pub struct QueryCorrectionOffsetHeader {
            filter_groups: Option<String> = "filterGroups",
            compare_group: String = "compareGroup",
            topic: String = "topic",
        }
    }
    header! {
        pub struct ResumeCheckHalfMessageRequestHeader {
            topic: Option<String> = "topic",
            msg_id: String = "msgId",
        }
    }
    header! {
        pub struct ConsumeMessageDirectlyResultRequestHeader {
            consumer_group: String = "consumerGroup",
            client_id: Option<String> = "clientId",
            msg_id: Option<String> = "msgId",
            broker_name: Option<String> = "brokerName",
            topic: Option<String> = "topic",
            topic_sys_flag: Option<i32> = "topicSysFlag",
            group_sys_flag: Option<i32> = "groupSysFlag",
        }
    }
    header! {
        /// INVOKE_BROKER_TO_GET_CONSUMER_STATUS (223) from a tool, and the broker's
        /// GET_CONSUMER_STATUS_FROM_CLIENT (221) to each consumer.
        pub struct GetConsumerStatusRequestHeader {
            topic: String = "topic",
            group: String = "group",
            client_addr: Option<String> = "clientAddr",
        }
    }
    header! {
        pub struct GetBrokerConfigResponseHeader {
            version: Option<String> = "version",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::broker::*;
    use super::*;

    #[test]
    fn required_and_optional_fields() {
        let ext: ExtFields = [("topic", "T"), ("queueId", " 3 "), ("committed", "TRUE")].into_iter().collect();
        let h = GetMaxOffsetRequestHeader::decode(&ext).unwrap();
        assert_eq!(h, GetMaxOffsetRequestHeader { topic: "T".into(), queue_id: 3, committed: Some(true) });
        let ext: ExtFields = [("topic", "T")].into_iter().collect();
        assert_eq!(GetMaxOffsetRequestHeader::decode(&ext), Err(HeaderError::Missing("queueId")));
        let ext: ExtFields = [("topic", "T"), ("queueId", "x")].into_iter().collect();
        assert!(matches!(GetMaxOffsetRequestHeader::decode(&ext), Err(HeaderError::Invalid { key: "queueId", .. })));
        let ext: ExtFields =
            [("topic", "T"), ("queueId", "1"), ("committed", "no"), ("unknown", "1")].into_iter().collect();
        assert_eq!(GetMaxOffsetRequestHeader::decode(&ext).unwrap().committed, Some(false));
    }

    #[test]
    fn encodes_every_value_as_a_string_and_skips_none() {
        let h = SendMessageResponseHeader { msg_id: "ID".into(), queue_id: 2, queue_offset: 57, ..Default::default() };
        let mut ext = ExtFields::new();
        h.encode(&mut ext);
        assert_eq!(ext.get("queueOffset"), Some("57"));
        assert_eq!(ext.get("transactionId"), None);
        assert_eq!(SendMessageResponseHeader::decode(&ext).unwrap(), h);
    }

    #[test]
    fn v2_letters_map_to_full_names() {
        let ext: ExtFields = [
            ("a", "PG"),
            ("b", "TopicTest"),
            ("c", "TBW102"),
            ("d", "4"),
            ("e", "2"),
            ("f", "0"),
            ("g", "1700000000000"),
            ("h", "0"),
            ("i", "TAGS\u{1}TagA"),
            ("j", "0"),
            ("k", "false"),
            ("m", "false"),
            ("n", "broker-a"),
        ]
        .into_iter()
        .collect();
        let v2 = SendMessageRequestHeaderV2::decode(&ext).unwrap();
        let v1: SendMessageRequestHeader = v2.clone().into();
        assert_eq!(v1.topic, "TopicTest");
        assert_eq!(v1.born_timestamp, 1_700_000_000_000);
        assert_eq!(v1.batch, Some(false));
        assert_eq!(v1.broker_name.as_deref(), Some("broker-a"));
        assert_eq!(SendMessageRequestHeaderV2::from(v1), v2);
    }
}

/// Headers of RocketMQ 5's controller API (codes 1001–1013, BROKER_HEARTBEAT).
/// Ext-field names are the Java field names, as RocketMQ writes them.
pub mod controller {
    header! {
        /// BROKER_HEARTBEAT (904), broker → controller (oneway).
        pub struct BrokerHeartbeatRequestHeader {
            cluster_name: String = "clusterName",
            broker_addr: String = "brokerAddr",
            broker_name: String = "brokerName",
            broker_id: Option<i64> = "brokerId",
            epoch: Option<i32> = "epoch",
            max_offset: Option<i64> = "maxOffset",
            confirm_offset: Option<i64> = "confirmOffset",
            heartbeat_timeout_mills: Option<i64> = "heartbeatTimeoutMills",
            election_priority: Option<i32> = "electionPriority",
        }
    }
    header! {
        /// CONTROLLER_GET_METADATA_INFO (1005) response.
        pub struct GetMetaDataResponseHeader {
            group: String = "group",
            controller_leader_id: Option<String> = "controllerLeaderId",
            controller_leader_address: Option<String> = "controllerLeaderAddress",
            is_leader: bool = "isLeader",
            peers: String = "peers",
        }
    }
    header! {
        /// CONTROLLER_GET_NEXT_BROKER_ID (1012).
        pub struct GetNextBrokerIdRequestHeader {
            cluster_name: String = "clusterName",
            broker_name: String = "brokerName",
        }
    }
    header! {
        pub struct GetNextBrokerIdResponseHeader {
            cluster_name: String = "clusterName",
            broker_name: String = "brokerName",
            next_broker_id: Option<i64> = "nextBrokerId",
        }
    }
    header! {
        /// CONTROLLER_APPLY_BROKER_ID (1013).
        pub struct ApplyBrokerIdRequestHeader {
            cluster_name: String = "clusterName",
            broker_name: String = "brokerName",
            applied_broker_id: i64 = "appliedBrokerId",
            /// `brokerAddr;timestamp`.
            register_check_code: String = "registerCheckCode",
        }
    }
    header! {
        pub struct ApplyBrokerIdResponseHeader {
            cluster_name: String = "clusterName",
            broker_name: String = "brokerName",
        }
    }
    header! {
        /// CONTROLLER_REGISTER_BROKER (1003).
        pub struct RegisterBrokerToControllerRequestHeader {
            cluster_name: String = "clusterName",
            broker_name: String = "brokerName",
            broker_id: Option<i64> = "brokerId",
            broker_address: String = "brokerAddress",
            invoke_time: Option<i64> = "invokeTime",
        }
    }
    header! {
        pub struct RegisterBrokerToControllerResponseHeader {
            cluster_name: String = "clusterName",
            broker_name: String = "brokerName",
            master_broker_id: Option<i64> = "masterBrokerId",
            master_address: Option<String> = "masterAddress",
            master_epoch: Option<i32> = "masterEpoch",
            sync_state_set_epoch: Option<i32> = "syncStateSetEpoch",
        }
    }
    header! {
        /// CONTROLLER_ELECT_MASTER (1002).
        pub struct ElectMasterRequestHeader {
            cluster_name: String = "clusterName",
            broker_name: String = "brokerName",
            broker_id: Option<i64> = "brokerId",
            designate_elect: Option<bool> = "designateElect",
            invoke_time: Option<i64> = "invokeTime",
        }
    }
    header! {
        pub struct ElectMasterResponseHeader {
            master_broker_id: Option<i64> = "masterBrokerId",
            master_address: Option<String> = "masterAddress",
            master_epoch: Option<i32> = "masterEpoch",
            sync_state_set_epoch: Option<i32> = "syncStateSetEpoch",
        }
    }
    header! {
        /// CONTROLLER_ALTER_SYNC_STATE_SET (1001); the body is the new `SyncStateSet`
        /// with the broker's current epoch.
        pub struct AlterSyncStateSetRequestHeader {
            broker_name: String = "brokerName",
            master_broker_id: i64 = "masterBrokerId",
            master_epoch: i32 = "masterEpoch",
            invoke_time: Option<i64> = "invokeTime",
        }
    }
    header! {
        pub struct AlterSyncStateSetResponseHeader {
            new_sync_state_set_epoch: i32 = "newSyncStateSetEpoch",
        }
    }
    header! {
        /// CONTROLLER_GET_REPLICA_INFO (1004).
        pub struct GetReplicaInfoRequestHeader {
            broker_name: String = "brokerName",
        }
    }
    header! {
        pub struct GetReplicaInfoResponseHeader {
            master_broker_id: Option<i64> = "masterBrokerId",
            master_address: Option<String> = "masterAddress",
            master_epoch: Option<i32> = "masterEpoch",
        }
    }
    header! {
        /// NOTIFY_BROKER_ROLE_CHANGED (1008), controller → broker (oneway); the body
        /// is the `SyncStateSet`.
        pub struct NotifyBrokerRoleChangedRequestHeader {
            master_address: Option<String> = "masterAddress",
            master_epoch: Option<i32> = "masterEpoch",
            sync_state_set_epoch: Option<i32> = "syncStateSetEpoch",
            master_broker_id: Option<i64> = "masterBrokerId",
        }
    }
    header! {
        /// CLEAN_BROKER_DATA (1011).
        pub struct CleanBrokerDataRequestHeader {
            cluster_name: Option<String> = "clusterName",
            broker_name: String = "brokerName",
            /// `1;2;3`; absent: the whole set.
            broker_controller_ids_to_clean: Option<String> = "brokerControllerIdsToClean",
            is_clean_living_broker: Option<bool> = "isCleanLivingBroker",
            invoke_time: Option<i64> = "invokeTime",
        }
    }
}

/// Headers of FerroMQ's plugin administration (codes 65101–65109): a plugin deployed
/// to a broker's store and bound to topics while it runs.
pub mod plugin {
    header! {
        /// FERROMQ_PLUGIN_DEPLOY: the body is the artifact (a `.wasm` module, a `.lua`
        /// script); `runtime` is `wasm` or `lua`, `kind` one of the plugin kinds.
        pub struct DeployPluginRequestHeader {
            name: String = "name",
            kind: String = "kind",
            runtime: String = "runtime",
            failure_policy: Option<String> = "failurePolicy",
            /// Settings handed to the plugin's `init`: a JSON object of strings.
            config: Option<String> = "config",
        }
    }
    header! {
        /// FERROMQ_PLUGIN_DEPLOY and FERROMQ_PLUGIN_ROLLBACK response: the serving
        /// version.
        pub struct DeployPluginResponseHeader {
            sha256: String = "sha256",
            generation: u64 = "generation",
        }
    }
    header! {
        /// FERROMQ_PLUGIN_BIND / FERROMQ_PLUGIN_UNBIND: a filter to `topic` + `group`,
        /// a queue selector or check-back handler to `topic` (`*`: every one).
        pub struct BindPluginRequestHeader {
            name: String = "name",
            topic: String = "topic",
            group: Option<String> = "group",
        }
    }
    header! {
        /// FERROMQ_PLUGIN_LOGS: the lines of plugin `name` after `since` (0: every
        /// line kept); the body answers a JSON list of `PluginLogLine`.
        pub struct PluginLogsRequestHeader {
            name: String = "name",
            since: Option<u64> = "since",
        }
    }
    header! {
        /// FERROMQ_PLUGIN_FETCH response (a slave copying its master's deployed
        /// plugin): the body is the serving artifact.
        pub struct FetchPluginResponseHeader {
            kind: String = "kind",
            runtime: String = "runtime",
            failure_policy: Option<String> = "failurePolicy",
            config: Option<String> = "config",
            sha256: String = "sha256",
        }
    }
    header! {
        /// FERROMQ_PLUGIN_RELOAD, FERROMQ_PLUGIN_ROLLBACK, FERROMQ_PLUGIN_REMOVE,
        /// FERROMQ_PLUGIN_FETCH.
        pub struct PluginNameRequestHeader {
            name: String = "name",
        }
    }
}
