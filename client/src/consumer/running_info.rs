//! What a consumer tells administrators about itself through its broker:
//! GET_CONSUMER_RUNNING_INFO (`mqadmin consumerStatus`, the dashboard's client
//! page), GET_CONSUMER_STATUS_FROM_CLIENT and CONSUME_MESSAGE_DIRECTLY
//! (`mqadmin consumeMessage`-style replays), in RocketMQ's body shapes.

use std::collections::BTreeMap;

use serde::Serialize;

use common::route::MessageQueue;
use common::subscription::SubscriptionData;

/// RocketMQ's `ProcessQueueInfo`: one assigned queue as the consumer holds it.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProcessQueueInfo {
    pub commit_offset: i64,
    pub cached_msg_min_offset: i64,
    pub cached_msg_max_offset: i64,
    pub cached_msg_count: i32,
    #[serde(rename = "cachedMsgSizeInMiB")]
    pub cached_msg_size_in_mib: i32,
    pub transaction_msg_min_offset: i64,
    pub transaction_msg_max_offset: i64,
    pub transaction_msg_count: i32,
    pub locked: bool,
    pub try_unlock_times: i64,
    pub last_lock_timestamp: i64,
    pub droped: bool,
    pub last_pull_timestamp: i64,
    pub last_consume_timestamp: i64,
}

/// RocketMQ's `ConsumerRunningInfo`.
#[derive(Debug, Clone, Default)]
pub struct RunningInfo {
    /// `PROP_*` keys (consume type, orderly, client version, start time, name
    /// servers, ...).
    pub properties: BTreeMap<String, String>,
    pub subscriptions: Vec<SubscriptionData>,
    pub queues: Vec<(MessageQueue, ProcessQueueInfo)>,
}

impl RunningInfo {
    /// The JSON body (`mqTable` with `MessageQueue` object keys, as fastjson
    /// writes it and RocketMQ's tools read it).
    pub fn to_json(&self) -> String {
        let props = serde_json::to_string(&self.properties).unwrap_or_else(|_| "{}".into());
        let subs = serde_json::to_string(&self.subscriptions).unwrap_or_else(|_| "[]".into());
        format!(
            "{{\"properties\":{props},\"subscriptionSet\":{subs},\"mqTable\":{},\"statusTable\":{{}},\
             \"userConsumerInfo\":{{}}}}",
            remoting::json::mq_keyed(&self.queues)
        )
    }
}

/// The answer to CONSUME_MESSAGE_DIRECTLY (RocketMQ's
/// `ConsumeMessageDirectlyResult`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DirectResult {
    pub order: bool,
    pub auto_commit: bool,
    /// `CR_SUCCESS`, `CR_LATER`, `CR_ROLLBACK`, `CR_COMMIT`,
    /// `CR_THROW_EXCEPTION` or `CR_RETURN_NULL`.
    pub consume_result: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remark: Option<String>,
    pub spent_time_mills: i64,
}
