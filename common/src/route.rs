//! Routing types: what the name server knows and serves (`TopicRouteData`,
//! `QueueData`, `BrokerData`, `ClusterInfo`) and `MessageQueue`.
//!
//! Serialisation emits what every studied client reads: quoted numeric map keys,
//! `filterServerTable` always present, `enableActingMaster` on every broker and
//! `topicSysFlag` on every queue (`remoting-protocol.md` §7.3). Deserialisation is
//! lenient about scalar types; unquoted fastjson keys are normalised by
//! `remoting::json` before the text reaches serde.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::lenient;

/// Broker id of a master.
pub const MASTER_ID: u64 = 0;

/// A topic's queues on one broker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct QueueData {
    pub broker_name: String,
    #[serde(deserialize_with = "lenient::i32")]
    pub read_queue_nums: i32,
    #[serde(deserialize_with = "lenient::i32")]
    pub write_queue_nums: i32,
    #[serde(deserialize_with = "lenient::i32")]
    pub perm: i32,
    #[serde(deserialize_with = "lenient::i32")]
    pub topic_sys_flag: i32,
}

/// The addresses of one broker group (master id 0, slaves ≥ 1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct BrokerData {
    pub cluster: String,
    pub broker_name: String,
    pub broker_addrs: BTreeMap<u64, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub zone_name: Option<String>,
    #[serde(deserialize_with = "lenient::bool")]
    pub enable_acting_master: bool,
}

impl BrokerData {
    pub fn master_addr(&self) -> Option<&str> {
        self.broker_addrs.get(&MASTER_ID).map(String::as_str)
    }

    /// The master, or else the lowest-id slave (where a consumer may still read).
    pub fn select_addr(&self) -> Option<&str> {
        self.master_addr().or_else(|| self.broker_addrs.values().next().map(String::as_str))
    }
}

/// GET_ROUTEINFO_BY_TOPIC's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct TopicRouteData {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order_topic_conf: Option<String>,
    pub queue_datas: Vec<QueueData>,
    pub broker_datas: Vec<BrokerData>,
    pub filter_server_table: BTreeMap<String, Vec<String>>,
}

impl TopicRouteData {
    pub fn broker(&self, broker_name: &str) -> Option<&BrokerData> {
        self.broker_datas.iter().find(|b| b.broker_name == broker_name)
    }
}

/// GET_BROKER_CLUSTER_INFO's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct ClusterInfo {
    pub broker_addr_table: BTreeMap<String, BrokerData>,
    pub cluster_addr_table: BTreeMap<String, BTreeSet<String>>,
}

impl ClusterInfo {
    /// The master address of every broker name of `cluster` (of every cluster when
    /// `None`), in cluster and broker-name order.
    pub fn masters(&self, cluster: Option<&str>) -> Vec<String> {
        let mut out = Vec::new();
        for (name, brokers) in &self.cluster_addr_table {
            if cluster.is_some_and(|c| c != name) {
                continue;
            }
            for b in brokers {
                if let Some(addr) = self.broker_addr_table.get(b).and_then(|d| d.master_addr()) {
                    out.push(addr.to_owned());
                }
            }
        }
        out
    }

    /// Every broker address (masters and slaves) of `cluster` (of every cluster when
    /// `None`), in cluster, broker-name and broker-id order.
    pub fn all_addrs(&self, cluster: Option<&str>) -> Vec<String> {
        let mut out = Vec::new();
        for (name, brokers) in &self.cluster_addr_table {
            if cluster.is_some_and(|c| c != name) {
                continue;
            }
            for b in brokers {
                if let Some(d) = self.broker_addr_table.get(b) {
                    out.extend(d.broker_addrs.values().cloned());
                }
            }
        }
        out
    }
}

/// A queue of a topic on a broker; ordered as RocketMQ sorts queues for rebalance
/// (topic, then broker name, then queue id).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct MessageQueue {
    pub topic: String,
    pub broker_name: String,
    #[serde(deserialize_with = "lenient::i32")]
    pub queue_id: i32,
}

impl MessageQueue {
    pub fn new(topic: impl Into<String>, broker_name: impl Into<String>, queue_id: i32) -> Self {
        Self { topic: topic.into(), broker_name: broker_name.into(), queue_id }
    }
}

impl std::fmt::Display for MessageQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}#{}", self.topic, self.broker_name, self.queue_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_json_has_every_key_strict_clients_require() {
        let route = TopicRouteData {
            order_topic_conf: None,
            queue_datas: vec![QueueData {
                broker_name: "broker-a".into(),
                read_queue_nums: 4,
                write_queue_nums: 4,
                perm: crate::perm::READ_WRITE,
                topic_sys_flag: 0,
            }],
            broker_datas: vec![BrokerData {
                cluster: "DefaultCluster".into(),
                broker_name: "broker-a".into(),
                broker_addrs: [(0, "192.168.0.1:10911".into()), (1, "192.168.0.2:10911".into())].into(),
                zone_name: None,
                enable_acting_master: false,
            }],
            filter_server_table: BTreeMap::new(),
        };
        let json = serde_json::to_string(&route).unwrap();
        assert!(json.contains(r#""brokerAddrs":{"0":"192.168.0.1:10911","1":"192.168.0.2:10911"}"#), "{json}");
        assert!(json.contains(r#""filterServerTable":{}"#));
        assert!(json.contains(r#""enableActingMaster":false"#));
        assert!(json.contains(r#""topicSysFlag":0"#));
        assert!(!json.contains(' '), "compact JSON for Go's hand parser");
        let back: TopicRouteData = serde_json::from_str(&json).unwrap();
        assert_eq!(back, route);
    }

    #[test]
    fn message_queue_order_is_topic_broker_queue() {
        let mut v = [MessageQueue::new("T", "b", 0), MessageQueue::new("T", "a", 1), MessageQueue::new("T", "a", 0)];
        v.sort();
        assert_eq!(v[0], MessageQueue::new("T", "a", 0));
        assert_eq!(v[2], MessageQueue::new("T", "b", 0));
    }
}
