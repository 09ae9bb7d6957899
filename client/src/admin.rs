//! Administration basics the CLI needs (in the spirit of `mqadmin`): create a
//! topic, read routes and cluster info, a broker's runtime and replication status,
//! consumer progress, and replay by resetting a group's offsets to a timestamp.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use common::properties::keys;
use common::route::{ClusterInfo, MessageQueue, TopicRouteData};
use common::{MessageExt, ResponseCode};
use remoting::header::broker::{
    ConsumerGroupRequestHeader, CreateTopicRequestHeader, GetConsumeStatsRequestHeader,
    GetConsumerRunningInfoRequestHeader, GetProducerConnectionListRequestHeader, QueryMessageRequestHeader,
    ResetOffsetRequestHeader, TopicRequestHeader, ViewMessageRequestHeader,
};
use remoting::header::namesrv::DeleteTopicFromNamesrvRequestHeader;
use remoting::{RemotingCommand, RequestCode};

pub use remoting::json::parse_mq_keyed_offsets;

use crate::error::{Error, Result};
use crate::instance::ClientInstance;
use crate::msg_trace::{self, data::TraceRecord};

/// A broker's replication state, the body of GET_BROKER_HA_STATUS (RocketMQ 5's
/// `HARuntimeInfo`, what `mqadmin haStatus` prints): a master lists its slaves, a
/// slave describes its connection to the master. Every field may be missing (the
/// Java broker leaves out nulls), and reads as its default then.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct HaRuntimeInfo {
    #[serde(deserialize_with = "common::lenient::bool")]
    pub master: bool,
    /// A master's commit-log end (bytes).
    #[serde(deserialize_with = "common::lenient::i64")]
    pub master_commit_log_max_offset: i64,
    /// A master's slaves that are in sync (`haMaxGapNotInSync`).
    #[serde(deserialize_with = "common::lenient::i32")]
    pub in_sync_slave_nums: i32,
    /// A master's slave connections.
    #[serde(deserialize_with = "null_as_default")]
    pub ha_connection_info: Vec<HaConnectionInfo>,
    /// A slave's connection to its master.
    #[serde(deserialize_with = "null_as_default")]
    pub ha_client_runtime_info: HaClientRuntimeInfo,
}

/// `null` reads as the default, as fastjson reads it into a field's initial value.
fn null_as_default<'de, D, T>(d: D) -> std::result::Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// One slave connected to a master (`HARuntimeInfo.HAConnectionRuntimeInfo`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct HaConnectionInfo {
    /// The slave's end of the replication connection, as the master sees it.
    #[serde(deserialize_with = "common::lenient::string")]
    pub addr: String,
    /// The commit-log offset the slave last acknowledged.
    #[serde(deserialize_with = "common::lenient::i64")]
    pub slave_ack_offset: i64,
    /// How many bytes the slave is behind the master.
    #[serde(deserialize_with = "common::lenient::i64")]
    pub diff: i64,
    #[serde(deserialize_with = "common::lenient::bool")]
    pub in_sync: bool,
    #[serde(deserialize_with = "common::lenient::i64")]
    pub transferred_byte_in_second: i64,
    /// Where the master's next transfer to the slave starts.
    #[serde(deserialize_with = "common::lenient::i64")]
    pub transfer_from_where: i64,
}

/// A slave's connection to its master (`HARuntimeInfo.HAClientRuntimeInfo`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct HaClientRuntimeInfo {
    /// The master's HA address.
    #[serde(deserialize_with = "common::lenient::string")]
    pub master_addr: String,
    #[serde(deserialize_with = "common::lenient::i64")]
    pub transferred_byte_in_second: i64,
    /// The slave's commit-log end (bytes).
    #[serde(deserialize_with = "common::lenient::i64")]
    pub max_offset: i64,
    /// Last read from / write to the master, ms since the epoch (0: never).
    #[serde(deserialize_with = "common::lenient::i64")]
    pub last_read_timestamp: i64,
    #[serde(deserialize_with = "common::lenient::i64")]
    pub last_write_timestamp: i64,
    #[serde(deserialize_with = "common::lenient::i64")]
    pub master_flush_offset: i64,
    /// Whether the connection to the master is up. The Java broker never sends it
    /// (the field has no getter, so fastjson skips it): `None` then.
    #[serde(rename = "isActivated", skip_serializing_if = "Option::is_none")]
    pub is_activated: Option<bool>,
}

/// One queue of a topic on one broker (GET_TOPIC_STATS_INFO's `TopicOffset`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QueueOffsets {
    #[serde(flatten)]
    pub queue: MessageQueue,
    pub min_offset: i64,
    pub max_offset: i64,
    /// Store time of the queue's last message (ms), 0 when empty.
    #[serde(default)]
    pub last_update_timestamp: i64,
}

/// One producer connected to a broker (GET_PRODUCER_CONNECTION_LIST's `Connection`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ProducerConnection {
    #[serde(deserialize_with = "common::lenient::string")]
    pub client_id: String,
    /// The producer's end of its connection, as the broker sees it.
    #[serde(deserialize_with = "common::lenient::string")]
    pub client_addr: String,
    /// `JAVA`, `RUST`, `GO`, ...
    #[serde(deserialize_with = "common::lenient::string")]
    pub language: String,
    /// The client's RocketMQ version number (`MQVersion`'s ordinal).
    #[serde(deserialize_with = "common::lenient::i32")]
    pub version: i32,
}

/// One plugin of a broker, from its runtime info's `plugin.<name>.<field>` keys. The
/// fields are the broker's text as it answers them, empty when it leaves one out.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PluginStatus {
    pub name: String,
    /// `active`, `failed`, ...
    pub state: String,
    /// `filter`, `queue_selector`, ...
    pub kind: String,
    /// `wasm`, `lua` or `native`.
    pub runtime: String,
    /// How many times the plugin was (re)loaded.
    pub generation: String,
    pub manifest: String,
    /// The circuit breaker's state.
    pub breaker: String,
    pub calls: String,
    pub records: String,
    pub errors: String,
    pub fallbacks: String,
    pub last_error: String,
    pub last_reload_error: String,
}

/// The plugins a GET_BROKER_RUNTIME_INFO table describes, sorted by name. A name may
/// hold dots: the field is what follows the last one.
pub fn plugins_of_runtime_info(table: &BTreeMap<String, String>) -> Vec<PluginStatus> {
    let mut plugins: BTreeMap<&str, PluginStatus> = BTreeMap::new();
    for (k, v) in table {
        let Some((name, field)) = k.strip_prefix("plugin.").and_then(|rest| rest.rsplit_once('.')) else {
            continue;
        };
        let p = plugins.entry(name).or_insert_with(|| PluginStatus { name: name.to_owned(), ..Default::default() });
        let slot = match field {
            "state" => &mut p.state,
            "kind" => &mut p.kind,
            "runtime" => &mut p.runtime,
            "generation" => &mut p.generation,
            "manifest" => &mut p.manifest,
            "breaker" => &mut p.breaker,
            "calls" => &mut p.calls,
            "records" => &mut p.records,
            "errors" => &mut p.errors,
            "fallbacks" => &mut p.fallbacks,
            "lastError" => &mut p.last_error,
            "lastReloadError" => &mut p.last_reload_error,
            _ => continue,
        };
        slot.clone_from(v);
    }
    plugins.into_values().collect()
}

/// Administration client.
#[derive(Clone)]
pub struct Admin {
    instance: ClientInstance,
    timeout: Duration,
}

/// One queue's progress for a consumer group (`GET_CONSUME_STATS`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueProgress {
    pub queue: MessageQueue,
    pub broker_offset: i64,
    pub consumer_offset: i64,
    pub last_timestamp: i64,
}

impl QueueProgress {
    /// Messages not yet consumed.
    pub fn lag(&self) -> i64 {
        (self.broker_offset - self.consumer_offset).max(0)
    }
}

impl Admin {
    pub fn new(config: config::ClientConfig, namesrv: Option<Vec<String>>) -> Self {
        let timeout = config.mq_client_api_timeout;
        Self { instance: ClientInstance::new(config, namesrv), timeout }
    }

    pub fn instance(&self) -> &ClientInstance {
        &self.instance
    }

    /// Creates (or updates) `topic` with `queues` read/write queues on every master
    /// of `cluster` (all known brokers when `None`).
    ///
    /// # Errors
    /// No broker found, or a broker refused.
    pub async fn create_topic(&self, topic: &str, queues: i32, cluster: Option<&str>) -> Result<()> {
        let masters = self.cluster_info().await?.masters(cluster);
        if masters.is_empty() {
            return Err(Error::NoBrokerAddr(cluster.unwrap_or("any cluster").to_owned()));
        }
        for addr in masters {
            self.create_topic_on(&addr, topic, queues, 6).await?;
        }
        Ok(())
    }

    /// UPDATE_AND_CREATE_TOPIC on one broker.
    ///
    /// # Errors
    /// Transport failure or a refusal.
    pub async fn create_topic_on(&self, broker_addr: &str, topic: &str, queues: i32, perm: i32) -> Result<()> {
        let h = CreateTopicRequestHeader { perm, ..CreateTopicRequestHeader::new(topic, queues) };
        let resp = self
            .instance
            .invoke(broker_addr, RemotingCommand::request_with(RequestCode::UPDATE_AND_CREATE_TOPIC, &h), self.timeout)
            .await?;
        check(&resp, broker_addr)
    }

    /// The route of `topic`, fresh from the name server.
    ///
    /// # Errors
    /// No route, or no name server answered.
    pub async fn topic_route(&self, topic: &str) -> Result<TopicRouteData> {
        Ok((*self.instance.refresh_route(topic).await?).clone())
    }

    /// GET_BROKER_CLUSTER_INFO.
    ///
    /// # Errors
    /// No name server answered.
    pub async fn cluster_info(&self) -> Result<ClusterInfo> {
        let resp = self.instance.invoke_namesrv(RemotingCommand::request(RequestCode::GET_BROKER_CLUSTER_INFO)).await?;
        check(&resp, "the name server")?;
        remoting::json::from_slice(&resp.body_bytes()).map_err(|e| Error::Body(e.to_string()))
    }

    /// GET_BROKER_RUNTIME_INFO of the broker at `broker_addr`: counters, store
    /// offsets and plugin status (`plugin.<name>.*`), sorted by key.
    ///
    /// # Errors
    /// The broker did not answer or refused.
    pub async fn broker_runtime_info(&self, broker_addr: &str) -> Result<std::collections::BTreeMap<String, String>> {
        let req = RemotingCommand::request(RequestCode::GET_BROKER_RUNTIME_INFO);
        let resp = self.instance.invoke(broker_addr, req, self.timeout).await?;
        check(&resp, broker_addr)?;
        let kv: remoting::body::KvTable =
            remoting::json::from_slice(&resp.body_bytes()).map_err(|e| Error::Body(e.to_string()))?;
        Ok(kv.table)
    }

    /// UPDATE_AND_CREATE_ACL_CONFIG: creates or replaces an account in the broker's
    /// `plain_acl.yml`.
    ///
    /// # Errors
    /// The broker did not answer or refused (its remark says why).
    pub async fn update_acl_config(
        &self,
        broker_addr: &str,
        account: &remoting::header::broker::CreateAccessConfigRequestHeader,
    ) -> Result<()> {
        let req = RemotingCommand::request_with(RequestCode::UPDATE_AND_CREATE_ACL_CONFIG, account);
        check(&self.instance.invoke(broker_addr, req, self.timeout).await?, broker_addr)
    }

    /// DELETE_ACL_CONFIG: removes an account.
    ///
    /// # Errors
    /// The broker did not answer or refused (an unknown account is refused).
    pub async fn delete_acl_config(&self, broker_addr: &str, access_key: &str) -> Result<()> {
        let h = remoting::header::broker::DeleteAccessConfigRequestHeader { access_key: access_key.to_owned() };
        let req = RemotingCommand::request_with(RequestCode::DELETE_ACL_CONFIG, &h);
        check(&self.instance.invoke(broker_addr, req, self.timeout).await?, broker_addr)
    }

    /// UPDATE_GLOBAL_WHITE_ADDRS_CONFIG: replaces the global white list.
    ///
    /// # Errors
    /// The broker did not answer or refused (a malformed pattern is refused).
    pub async fn update_global_white_addrs(&self, broker_addr: &str, addresses: &[String]) -> Result<()> {
        let h = remoting::header::broker::UpdateGlobalWhiteAddrsConfigRequestHeader {
            global_white_addrs: addresses.join(","),
            acl_file_full_path: None,
        };
        let req = RemotingCommand::request_with(RequestCode::UPDATE_GLOBAL_WHITE_ADDRS_CONFIG, &h);
        check(&self.instance.invoke(broker_addr, req, self.timeout).await?, broker_addr)
    }

    /// GET_BROKER_CLUSTER_ACL_CONFIG: the broker's white list and accounts (an admin
    /// account's request).
    ///
    /// # Errors
    /// The broker did not answer, refused, or sent a body that does not decode.
    pub async fn acl_config(&self, broker_addr: &str) -> Result<remoting::body::AclConfigBody> {
        let req = RemotingCommand::request(RequestCode::GET_BROKER_CLUSTER_ACL_CONFIG);
        let resp = self.instance.invoke(broker_addr, req, self.timeout).await?;
        check(&resp, broker_addr)?;
        remoting::json::from_slice(&resp.body_bytes()).map_err(|e| Error::Body(e.to_string()))
    }

    /// GET_BROKER_CLUSTER_ACL_INFO: the version of the broker's ACL file.
    ///
    /// # Errors
    /// The broker did not answer, refused, or sent a header that does not decode.
    pub async fn acl_config_version(
        &self,
        broker_addr: &str,
    ) -> Result<remoting::header::broker::GetBrokerAclConfigResponseHeader> {
        let req = RemotingCommand::request(RequestCode::GET_BROKER_CLUSTER_ACL_INFO);
        let resp = self.instance.invoke(broker_addr, req, self.timeout).await?;
        check(&resp, broker_addr)?;
        resp.decode_header().map_err(|e| Error::Body(e.to_string()))
    }

    /// GET_BROKER_HA_STATUS of the broker at `broker_addr`: its replication state.
    ///
    /// # Errors
    /// The broker did not answer, refused (a broker without replication status,
    /// such as RocketMQ 4, answers REQUEST_CODE_NOT_SUPPORTED), or sent a body that
    /// does not decode.
    pub async fn broker_ha_status(&self, broker_addr: &str) -> Result<HaRuntimeInfo> {
        let req = RemotingCommand::request(RequestCode::GET_BROKER_HA_STATUS);
        let resp = self.instance.invoke(broker_addr, req, self.timeout).await?;
        check(&resp, broker_addr)?;
        parse_ha_runtime_info(&resp.body_bytes())
    }

    /// QUERY_MESSAGE: messages of `topic` indexed under `key` (a key of their `KEYS`,
    /// or their UNIQ_KEY) stored between `begin` and `end` (ms), from every broker
    /// of the topic, at most `max` per broker, with their bodies decompressed.
    /// Brokers that find nothing are skipped; the rest are in store-time order.
    ///
    /// # Errors
    /// No route, or no broker answered at all.
    pub async fn query_message(
        &self,
        topic: &str,
        key: &str,
        max: i32,
        begin: i64,
        end: i64,
    ) -> Result<Vec<MessageExt>> {
        let route = self.instance.refresh_route(topic).await?;
        let mut out = Vec::new();
        let mut last_err = None;
        let mut answered = false;
        for bd in &route.broker_datas {
            // The master, else any replica (the index is on each).
            let Some(addr) = bd.master_addr().or_else(|| bd.broker_addrs.values().next().map(String::as_str)) else {
                continue;
            };
            let h = QueryMessageRequestHeader {
                topic: topic.to_owned(),
                key: key.to_owned(),
                max_num: max,
                begin_timestamp: begin,
                end_timestamp: end,
            };
            let req = RemotingCommand::request_with(RequestCode::QUERY_MESSAGE, &h);
            let resp = match self.instance.invoke(addr, req, self.timeout).await {
                Ok(r) => r,
                Err(e) => {
                    last_err = Some(e);
                    continue;
                }
            };
            answered = true;
            if resp.response_code() == ResponseCode::QUERY_NOT_FOUND {
                continue;
            }
            check(&resp, addr)?;
            for mut m in
                common::record::decode_all(&resp.body_bytes(), false).map_err(|e| Error::Body(e.to_string()))?
            {
                // The index hashes keys: keep only messages that really carry `key`.
                let carries = m.properties.uniq_key() == Some(key)
                    || m.properties.get(keys::KEYS).is_some_and(|k| k.split(keys::KEY_SEPARATOR).any(|k| k == key));
                if !carries {
                    continue;
                }
                if let Ok(body) = crate::compression::decompress_body(m.sys_flag, &m.body) {
                    m.body = body;
                    m.sys_flag = crate::compression::clear_compression(m.sys_flag);
                }
                out.push(m);
            }
        }
        if !answered {
            if let Some(e) = last_err {
                return Err(e);
            }
        }
        out.sort_by_key(|m| m.store_timestamp);
        Ok(out)
    }

    /// The message-trace records of message `msg_id` in `trace_topic` (RocketMQ's
    /// `queryMsgTraceById`), each with the host that sent it, in the order their
    /// events happened (clients send their records on their own schedules, so a
    /// consumer's may be stored before the producer's).
    ///
    /// # Errors
    /// See [`Admin::query_message`].
    pub async fn query_msg_trace(
        &self,
        trace_topic: &str,
        msg_id: &str,
        max: i32,
        begin: i64,
        end: i64,
    ) -> Result<Vec<(TraceRecord, SocketAddr)>> {
        let mut out = Vec::new();
        for m in self.query_message(trace_topic, msg_id, max, begin, end).await? {
            let body = String::from_utf8_lossy(&m.body);
            out.extend(
                msg_trace::data::decode(&body)
                    .into_iter()
                    .filter(|r| r.msg_id() == msg_id)
                    .map(|r| (r.timestamp().unwrap_or(m.store_timestamp), r, m.born_host)),
            );
        }
        // Within a millisecond, in causal order (a send, its transaction's end, then
        // consumptions); stable otherwise.
        out.sort_by_key(|(at, r, _)| (*at, r.causal_rank()));
        Ok(out.into_iter().map(|(_, r, host)| (r, host)).collect())
    }

    /// Per-queue progress of `group` on `topic`, across the topic's brokers.
    ///
    /// # Errors
    /// No route, or a broker refused.
    pub async fn consumer_progress(&self, group: &str, topic: &str) -> Result<Vec<QueueProgress>> {
        let route = self.instance.refresh_route(topic).await?;
        let mut out = Vec::new();
        for bd in &route.broker_datas {
            let Some(addr) = bd.master_addr() else { continue };
            let h = GetConsumeStatsRequestHeader { consumer_group: group.to_owned(), topic: Some(topic.to_owned()) };
            let resp = self
                .instance
                .invoke(addr, RemotingCommand::request_with(RequestCode::GET_CONSUME_STATS, &h), self.timeout)
                .await?;
            check(&resp, addr)?;
            out.extend(parse_consume_stats(&resp.body_bytes())?);
        }
        out.sort_by(|a, b| a.queue.cmp(&b.queue));
        Ok(out)
    }

    /// Replay: resets `group`'s offsets on `topic` to the first message stored at or
    /// after `timestamp` (ms), on every broker of the topic. Online consumers are told
    /// by the broker (RESET_CONSUMER_CLIENT_OFFSET) and restart from there.
    ///
    /// # Errors
    /// No route, or a broker refused.
    pub async fn reset_offset_by_timestamp(
        &self,
        group: &str,
        topic: &str,
        timestamp: i64,
    ) -> Result<BTreeMap<MessageQueue, i64>> {
        let route = self.instance.refresh_route(topic).await?;
        let mut all = BTreeMap::new();
        for bd in &route.broker_datas {
            let Some(addr) = bd.master_addr() else { continue };
            let h = ResetOffsetRequestHeader {
                topic: topic.to_owned(),
                group: group.to_owned(),
                timestamp,
                is_force: true,
            };
            let req = RemotingCommand::request_with(RequestCode::INVOKE_BROKER_TO_RESET_OFFSET, &h);
            let resp = self.instance.invoke(addr, req, self.timeout).await?;
            check(&resp, addr)?;
            all.extend(parse_mq_keyed_offsets(&resp.body_bytes()));
        }
        Ok(all)
    }

    /// GET_ALL_TOPIC_LIST_FROM_NAMESERVER: every topic the name servers route, sorted.
    ///
    /// # Errors
    /// No name server answered, or the answer does not decode.
    pub async fn topic_list(&self) -> Result<Vec<String>> {
        let resp = self.call_namesrv(RemotingCommand::request(RequestCode::GET_ALL_TOPIC_LIST_FROM_NAMESERVER)).await?;
        let list: remoting::body::TopicList = json_body(&resp, "topic list")?;
        let mut topics = list.topic_list;
        topics.sort();
        topics.dedup();
        Ok(topics)
    }

    /// The master address of each broker name in `topic`'s route (RocketMQ's admin
    /// tools change and read topics on masters).
    ///
    /// # Errors
    /// No route, or no master in it.
    pub async fn route_masters(&self, topic: &str) -> Result<Vec<String>> {
        let route = self.topic_route(topic).await?;
        let masters: Vec<String> =
            route.broker_datas.iter().filter_map(|bd| bd.master_addr()).map(str::to_owned).collect();
        if masters.is_empty() {
            return Err(Error::NoBrokerAddr(format!("a master of topic {topic}")));
        }
        Ok(masters)
    }

    /// Deletes `topic` as `mqadmin deleteTopic` does: DELETE_TOPIC_IN_BROKER on each
    /// of `brokers`, then DELETE_TOPIC_IN_NAMESRV (for `cluster`, or everywhere) on
    /// every name server.
    ///
    /// # Errors
    /// A broker or name server refused.
    pub async fn delete_topic(&self, topic: &str, brokers: &[String], cluster: Option<&str>) -> Result<()> {
        for addr in brokers {
            let h = TopicRequestHeader { topic: topic.to_owned() };
            self.call(addr, RemotingCommand::request_with(RequestCode::DELETE_TOPIC_IN_BROKER, &h)).await?;
        }
        let h =
            DeleteTopicFromNamesrvRequestHeader { topic: topic.to_owned(), cluster_name: cluster.map(str::to_owned) };
        self.call_each_namesrv(RemotingCommand::request_with(RequestCode::DELETE_TOPIC_IN_NAMESRV, &h)).await?;
        Ok(())
    }

    /// GET_TOPIC_STATS_INFO on each master of `topic`'s route: every queue's min and
    /// max offsets and last store time, sorted by broker name and queue id.
    ///
    /// # Errors
    /// No route, a broker refused, or an answer does not decode.
    pub async fn topic_stats(&self, topic: &str) -> Result<Vec<QueueOffsets>> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct TopicOffset {
            min_offset: i64,
            max_offset: i64,
            #[serde(default)]
            last_update_timestamp: i64,
        }
        let mut out = Vec::new();
        for addr in self.route_masters(topic).await? {
            let h = TopicRequestHeader { topic: topic.to_owned() };
            let resp = self.call(&addr, RemotingCommand::request_with(RequestCode::GET_TOPIC_STATS_INFO, &h)).await?;
            let body = resp.body_bytes();
            for (queue, o) in
                remoting::json::mq_keyed_values::<TopicOffset>(&body, "offsetTable").map_err(Error::Body)?
            {
                out.push(QueueOffsets {
                    queue,
                    min_offset: o.min_offset,
                    max_offset: o.max_offset,
                    last_update_timestamp: o.last_update_timestamp,
                });
            }
        }
        out.sort_by(|a, b| a.queue.cmp(&b.queue));
        Ok(out)
    }

    /// GET_ALL_CONSUMER_OFFSET of one broker: committed offsets by `topic@group`,
    /// then queue id.
    ///
    /// # Errors
    /// The broker did not answer or refused, or the answer does not decode.
    pub async fn consumer_offsets(&self, addr: &str) -> Result<BTreeMap<String, BTreeMap<i32, i64>>> {
        #[derive(Deserialize, Default)]
        #[serde(rename_all = "camelCase", default)]
        struct Wrapper {
            offset_table: BTreeMap<String, BTreeMap<i32, i64>>,
        }
        let resp = self.call(addr, RemotingCommand::request(RequestCode::GET_ALL_CONSUMER_OFFSET)).await?;
        Ok(json_body::<Wrapper>(&resp, "consumer offsets")?.offset_table)
    }

    /// GET_ALL_SUBSCRIPTIONGROUP_CONFIG of one broker: its subscription groups by name.
    ///
    /// # Errors
    /// The broker did not answer or refused, or the answer does not decode.
    pub async fn subscription_groups(&self, addr: &str) -> Result<BTreeMap<String, serde_json::Value>> {
        #[derive(Deserialize, Default)]
        #[serde(rename_all = "camelCase", default)]
        struct Wrapper {
            subscription_group_table: BTreeMap<String, serde_json::Value>,
        }
        let resp = self.call(addr, RemotingCommand::request(RequestCode::GET_ALL_SUBSCRIPTIONGROUP_CONFIG)).await?;
        Ok(json_body::<Wrapper>(&resp, "subscription groups")?.subscription_group_table)
    }

    /// GET_CONSUME_STATS of `group` on one broker without a topic: its progress on
    /// every topic it has committed offsets for there.
    ///
    /// # Errors
    /// The broker did not answer or refused, or the answer does not decode.
    pub async fn group_consume_stats(&self, addr: &str, group: &str) -> Result<Vec<QueueProgress>> {
        let h = GetConsumeStatsRequestHeader { consumer_group: group.to_owned(), topic: None };
        let resp = self.call(addr, RemotingCommand::request_with(RequestCode::GET_CONSUME_STATS, &h)).await?;
        parse_consume_stats(&resp.body_bytes())
    }

    /// GET_CONSUMER_CONNECTION_LIST of `group` on one broker: the client ids
    /// connected now (none when the broker answers CONSUMER_NOT_ONLINE).
    ///
    /// # Errors
    /// The broker did not answer or refused otherwise, or the answer does not decode.
    pub async fn consumer_clients(&self, addr: &str, group: &str) -> Result<Vec<String>> {
        #[derive(Deserialize, Default)]
        #[serde(rename_all = "camelCase", default)]
        struct Connection {
            client_id: String,
        }
        #[derive(Deserialize, Default)]
        #[serde(rename_all = "camelCase", default)]
        struct Wrapper {
            connection_set: Vec<Connection>,
        }
        let h = ConsumerGroupRequestHeader { consumer_group: group.to_owned() };
        let req = RemotingCommand::request_with(RequestCode::GET_CONSUMER_CONNECTION_LIST, &h);
        let resp = self.instance.invoke(addr, req, self.timeout).await?;
        if resp.response_code() == ResponseCode::CONSUMER_NOT_ONLINE {
            return Ok(Vec::new());
        }
        check(&resp, addr)?;
        let w: Wrapper = json_body(&resp, "consumer connections")?;
        Ok(w.connection_set.into_iter().map(|c| c.client_id).collect())
    }

    /// GET_CONSUMER_RUNNING_INFO of client `client_id` of `group`, asked of the broker
    /// at `addr` (one the client is connected to), which relays it to the client:
    /// the body as the client answered it, RocketMQ's `ConsumerRunningInfo` JSON. Its
    /// `mqTable` has `MessageQueue` objects as keys, which is not valid JSON: read it
    /// with [`remoting::json::mq_keyed_values`], the rest once that table is cut out.
    ///
    /// # Errors
    /// The broker did not answer or refused (CONSUMER_NOT_ONLINE for a client that is
    /// not connected to it), or the client did not answer in time.
    pub async fn consumer_running_info(&self, addr: &str, group: &str, client_id: &str) -> Result<String> {
        let h = GetConsumerRunningInfoRequestHeader {
            consumer_group: group.to_owned(),
            client_id: client_id.to_owned(),
            jstack_enable: Some(false),
        };
        let resp = self.call(addr, RemotingCommand::request_with(RequestCode::GET_CONSUMER_RUNNING_INFO, &h)).await?;
        Ok(String::from_utf8_lossy(&resp.body_bytes()).into_owned())
    }

    /// GET_PRODUCER_CONNECTION_LIST of `group` on one broker: the producers of the
    /// group connected to it now.
    ///
    /// # Errors
    /// The broker did not answer or refused (a group without producers connected to
    /// it is refused: SYSTEM_ERROR "the producer group[G] not exist"), or the answer
    /// does not decode.
    pub async fn producer_connections(&self, addr: &str, group: &str) -> Result<Vec<ProducerConnection>> {
        #[derive(Deserialize, Default)]
        #[serde(rename_all = "camelCase", default)]
        struct Wrapper {
            connection_set: Vec<ProducerConnection>,
        }
        let h = GetProducerConnectionListRequestHeader { producer_group: group.to_owned() };
        let resp =
            self.call(addr, RemotingCommand::request_with(RequestCode::GET_PRODUCER_CONNECTION_LIST, &h)).await?;
        Ok(json_body::<Wrapper>(&resp, "producer connections")?.connection_set)
    }

    /// The plugins loaded by the broker at `addr`, from its GET_BROKER_RUNTIME_INFO
    /// (`plugin.<name>.<field>` keys), sorted by name.
    ///
    /// # Errors
    /// The broker did not answer or refused.
    pub async fn broker_plugins(&self, addr: &str) -> Result<Vec<PluginStatus>> {
        Ok(plugins_of_runtime_info(&self.broker_runtime_info(addr).await?))
    }

    /// FERROMQ_PLUGIN_LIST: every plugin the broker at `addr` declares, with its
    /// version, bindings and counters.
    ///
    /// # Errors
    /// The broker did not answer or refused, or the body does not decode.
    pub async fn plugin_list(&self, addr: &str) -> Result<Vec<remoting::body::plugin::PluginInfo>> {
        let resp = self.call(addr, RemotingCommand::request(RequestCode::FERROMQ_PLUGIN_LIST)).await?;
        serde_json::from_slice(&resp.body_bytes()).map_err(|e| Error::Body(format!("plugin list: {e}")))
    }

    /// FERROMQ_PLUGIN_LOGS: the lines plugin `name` logged on the broker at `addr`
    /// after `since` (0: every line kept), oldest first.
    ///
    /// # Errors
    /// The broker did not answer or refused (no such plugin), or the body does not
    /// decode.
    pub async fn plugin_logs(
        &self,
        addr: &str,
        name: &str,
        since: u64,
    ) -> Result<Vec<remoting::body::plugin::PluginLogLine>> {
        let h = remoting::header::plugin::PluginLogsRequestHeader { name: name.to_owned(), since: Some(since) };
        let resp = self.call(addr, RemotingCommand::request_with(RequestCode::FERROMQ_PLUGIN_LOGS, &h)).await?;
        serde_json::from_slice(&resp.body_bytes()).map_err(|e| Error::Body(format!("plugin logs: {e}")))
    }

    /// FERROMQ_PLUGIN_DEPLOY: deploys `artifact` as plugin `name` to the broker at
    /// `addr`; answers the serving version's SHA-256 and generation.
    ///
    /// # Errors
    /// The broker did not answer, or refused the artifact (the remark says why).
    pub async fn plugin_deploy(
        &self,
        addr: &str,
        header: &remoting::header::plugin::DeployPluginRequestHeader,
        artifact: Vec<u8>,
    ) -> Result<(String, u64)> {
        let cmd = RemotingCommand::request_with(RequestCode::FERROMQ_PLUGIN_DEPLOY, header).with_body(artifact);
        let resp = self.call_with_timeout(addr, cmd, Duration::from_secs(60)).await?;
        let h: remoting::header::plugin::DeployPluginResponseHeader =
            resp.decode_header().map_err(|e| Error::Body(format!("deploy answer: {e}")))?;
        Ok((h.sha256, h.generation))
    }

    /// VIEW_MESSAGE_BY_ID: the message an offset message id (store host and
    /// commit-log offset) points at, asked of that broker, its body decompressed.
    ///
    /// # Errors
    /// `msg_id` is not an offset id ([`Error::InvalidArgument`]), the broker did not
    /// answer or refused, or its record does not decode.
    pub async fn view_message(&self, msg_id: &str) -> Result<MessageExt> {
        let (host, offset) = common::msgid::decode_offset_msg_id(msg_id)
            .map_err(|_| Error::InvalidArgument(format!("{msg_id} is not an offset message id")))?;
        let addr = host.to_string();
        let h = ViewMessageRequestHeader { offset };
        let resp = self.call(&addr, RemotingCommand::request_with(RequestCode::VIEW_MESSAGE_BY_ID, &h)).await?;
        let mut m =
            MessageExt::decode(&resp.body_bytes(), false).map_err(|e| Error::Body(format!("message record: {e}")))?;
        if let Ok(body) = crate::compression::decompress_body(m.sys_flag, &m.body) {
            m.body = body;
            m.sys_flag = crate::compression::clear_compression(m.sys_flag);
        }
        Ok(m)
    }

    /// Sends `cmd` to the broker at `addr`; a refusal is an error naming the
    /// broker, the response code and its remark.
    ///
    /// # Errors
    /// Transport failure or a refusal.
    pub async fn call(&self, addr: &str, cmd: RemotingCommand) -> Result<RemotingCommand> {
        self.call_with_timeout(addr, cmd, self.timeout).await
    }

    /// [`Self::call`] with its own timeout (a request that compiles or copies).
    ///
    /// # Errors
    /// Transport failure or a refusal.
    pub async fn call_with_timeout(
        &self,
        addr: &str,
        cmd: RemotingCommand,
        timeout: Duration,
    ) -> Result<RemotingCommand> {
        let resp = self.instance.invoke(addr, cmd, timeout).await?;
        check(&resp, addr)?;
        Ok(resp)
    }

    /// Sends `cmd` to a name server (the first that answers).
    ///
    /// # Errors
    /// No name server answered, or it refused.
    pub async fn call_namesrv(&self, cmd: RemotingCommand) -> Result<RemotingCommand> {
        let resp = self.instance.invoke_namesrv(cmd).await?;
        check(&resp, "the name server")?;
        Ok(resp)
    }

    /// Sends `cmd` to every name server, in order; the first refusal or failure
    /// stops it (KV and configuration updates must reach them all).
    ///
    /// # Errors
    /// A name server did not answer or refused.
    pub async fn call_each_namesrv(&self, cmd: RemotingCommand) -> Result<Vec<String>> {
        let addrs = self.instance.namesrv_addrs();
        if addrs.is_empty() {
            return Err(Error::NoNameServer);
        }
        for addr in &addrs {
            self.call(addr, cmd.clone()).await?;
        }
        Ok(addrs)
    }

    /// GET_BROKER_CONFIG: the broker's settings as `key=value` lines.
    ///
    /// # Errors
    /// Transport failure or a refusal.
    pub async fn broker_config(&self, addr: &str) -> Result<Vec<(String, String)>> {
        let resp = self.call(addr, RemotingCommand::request(RequestCode::GET_BROKER_CONFIG)).await?;
        Ok(properties_lines(&resp.body_bytes()))
    }

    /// UPDATE_BROKER_CONFIG with `key=value` settings (RocketMQ's names).
    ///
    /// # Errors
    /// Transport failure, or the broker refused (its remark names the setting).
    pub async fn update_broker_config(&self, addr: &str, settings: &[(String, String)]) -> Result<()> {
        let body: String = settings.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
        let cmd = RemotingCommand::request(RequestCode::UPDATE_BROKER_CONFIG).with_body(body.into_bytes());
        self.call(addr, cmd).await.map(drop)
    }

    /// GET_NAMESRV_CONFIG of one name server.
    ///
    /// # Errors
    /// Transport failure or a refusal.
    pub async fn namesrv_config(&self, addr: &str) -> Result<Vec<(String, String)>> {
        let resp = self.call(addr, RemotingCommand::request(RequestCode::GET_NAMESRV_CONFIG)).await?;
        Ok(properties_lines(&resp.body_bytes()))
    }

    /// UPDATE_NAMESRV_CONFIG on every name server.
    ///
    /// # Errors
    /// A name server did not answer or refused (its remark names the setting).
    pub async fn update_namesrv_config(&self, settings: &[(String, String)]) -> Result<Vec<String>> {
        let body: String = settings.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
        self.call_each_namesrv(
            RemotingCommand::request(RequestCode::UPDATE_NAMESRV_CONFIG).with_body(body.into_bytes()),
        )
        .await
    }

    /// Sends `code` with a typed header to `addr` and parses the JSON answer.
    ///
    /// # Errors
    /// Transport failure, a refusal, or a body that is not the expected JSON.
    pub async fn call_json<H: remoting::header::CommandHeader, T: serde::de::DeserializeOwned>(
        &self,
        addr: &str,
        code: RequestCode,
        header: &H,
    ) -> Result<T> {
        let resp = self.call(addr, RemotingCommand::request_with(code, header)).await?;
        remoting::json::from_slice(&resp.body_bytes()).map_err(|e| Error::Body(format!("{addr}: {e}")))
    }

    pub fn shutdown(&self) {
        self.instance.shutdown();
    }
}

fn json_body<T: serde::de::DeserializeOwned>(resp: &RemotingCommand, what: &str) -> Result<T> {
    remoting::json::from_slice(&resp.body_bytes()).map_err(|e| Error::Body(format!("{what}: {e}")))
}

fn check(resp: &RemotingCommand, addr: &str) -> Result<()> {
    if resp.response_code() == ResponseCode::SUCCESS {
        Ok(())
    } else {
        Err(Error::from_response(resp, addr))
    }
}

/// `key=value` lines of a configuration body, in order (blank and comment lines
/// skipped).
pub fn properties_lines(body: &[u8]) -> Vec<(String, String)> {
    String::from_utf8_lossy(body)
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .filter_map(|l| l.split_once('=').map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned())))
        .collect()
}

/// Why a message cannot be re-sent from a dead-letter queue.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotResendable {
    #[error("the message is in {topic}, not a dead-letter topic")]
    NotDeadLetter { topic: String },
    #[error("the message does not say which topic it came from (no RETRY_TOPIC property)")]
    NoOrigin,
}

/// The copy a re-send from the dead-letter queue sends (`ferromq-admin resendDLQ`,
/// the console's re-send): the dead letter's body, tags and keys, addressed to the
/// topic it first failed in, which the broker kept in its `RETRY_TOPIC` property.
///
/// # Errors
/// The message is not in a dead-letter topic, or does not name its topic.
pub fn dead_letter_copy(m: &MessageExt) -> std::result::Result<common::Message, NotResendable> {
    if !common::topic::is_dlq_topic(&m.topic) {
        return Err(NotResendable::NotDeadLetter { topic: m.topic.clone() });
    }
    let origin = m.properties.get(keys::RETRY_TOPIC).ok_or(NotResendable::NoOrigin)?;
    let mut copy = common::Message::new(origin, m.body.clone());
    if let Some(t) = m.tags() {
        copy = copy.with_tags(t);
    }
    if let Some(k) = m.properties.get(keys::KEYS) {
        let keys: Vec<&str> = k.split(keys::KEY_SEPARATOR).filter(|k| !k.is_empty()).collect();
        if !keys.is_empty() {
            copy = copy.with_keys(keys);
        }
    }
    Ok(copy)
}

/// Decodes a GET_BROKER_HA_STATUS body.
///
/// # Errors
/// The body is not an `HARuntimeInfo` JSON object.
pub fn parse_ha_runtime_info(body: &[u8]) -> Result<HaRuntimeInfo> {
    remoting::json::from_slice(body).map_err(|e| Error::Body(format!("ha runtime info: {e}")))
}

fn parse_consume_stats(body: &[u8]) -> Result<Vec<QueueProgress>> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Wrapper {
        broker_offset: i64,
        consumer_offset: i64,
        #[serde(default)]
        last_timestamp: i64,
    }
    let entries = remoting::json::mq_keyed_values::<Wrapper>(body, "offsetTable").map_err(Error::Body)?;
    Ok(entries
        .into_iter()
        .map(|(queue, w)| QueueProgress {
            queue,
            broker_offset: w.broker_offset,
            consumer_offset: w.consumer_offset,
            last_timestamp: w.last_timestamp,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_fastjson_object_keys() {
        let body = br#"{"offsetTable":{{"brokerName":"b","queueId":0,"topic":"T"}:12,{"brokerName":"b","queueId":1,"topic":"T"}:7}}"#;
        let v = parse_mq_keyed_offsets(body);
        assert_eq!(v, vec![(MessageQueue::new("T", "b", 0), 12), (MessageQueue::new("T", "b", 1), 7)]);
        let stats = br#"{"consumeTps":0.0,"offsetTable":{{"topic":"T","brokerName":"b","queueId":3}:{"brokerOffset":10,"consumerOffset":4,"lastTimestamp":5}}}"#;
        let p = parse_consume_stats(stats).unwrap();
        assert_eq!(p[0].queue.queue_id, 3);
        assert_eq!(p[0].lag(), 6);
    }

    #[test]
    fn reads_plugins_from_runtime_info() {
        let table: BTreeMap<String, String> = [
            ("brokerRole", "ASYNC_MASTER"),
            ("plugin.vip.filter.kind", "filter"),
            ("plugin.vip.filter.calls", "12"),
            ("plugin.vip.filter.lastError", "lua: boom"),
            ("plugin.sel.runtime", "lua"),
            ("plugin.sel.somethingNew", "x"),
            ("plugin.noField", "y"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let plugins = plugins_of_runtime_info(&table);
        assert_eq!(plugins.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(), ["sel", "vip.filter"]);
        assert_eq!((plugins[0].runtime.as_str(), plugins[0].calls.as_str()), ("lua", ""));
        let vip = &plugins[1];
        assert_eq!((vip.kind.as_str(), vip.calls.as_str(), vip.last_error.as_str()), ("filter", "12", "lua: boom"));
    }

    #[test]
    fn decodes_producer_connections() {
        let c: ProducerConnection = remoting::json::from_slice(
            br#"{"clientId":"10.0.0.7@1#2","clientAddr":"10.0.0.7:40000","language":"JAVA","version":"453"}"#,
        )
        .unwrap();
        assert_eq!((c.client_id.as_str(), c.language.as_str(), c.version), ("10.0.0.7@1#2", "JAVA", 453));
    }

    #[test]
    fn decodes_rocketmqs_ha_runtime_info() {
        // A RocketMQ 5 master, as fastjson writes it (no nulls, no `isActivated`).
        let master = br#"{"haClientRuntimeInfo":{"lastReadTimestamp":0,"lastWriteTimestamp":0,"masterFlushOffset":0,"maxOffset":0,"transferredByteInSecond":0},"haConnectionInfo":[{"addr":"10.0.0.2:53012","diff":24,"inSync":true,"slaveAckOffset":1000,"transferFromWhere":1024,"transferredByteInSecond":2048}],"inSyncSlaveNums":1,"master":true,"masterCommitLogMaxOffset":1024}"#;
        let info = parse_ha_runtime_info(master).unwrap();
        assert!(info.master);
        assert_eq!((info.master_commit_log_max_offset, info.in_sync_slave_nums), (1024, 1));
        assert_eq!(
            info.ha_connection_info,
            [HaConnectionInfo {
                addr: "10.0.0.2:53012".into(),
                slave_ack_offset: 1000,
                diff: 24,
                in_sync: true,
                transferred_byte_in_second: 2048,
                transfer_from_where: 1024,
            }]
        );
        assert_eq!(info.ha_client_runtime_info.is_activated, None);

        // A slave; numbers as strings and a null list are tolerated.
        let slave = br#"{"master":false,"haConnectionInfo":null,"haClientRuntimeInfo":{"masterAddr":"10.0.0.1:10912","maxOffset":"1000","lastReadTimestamp":1700000000000,"isActivated":true}}"#;
        let info = parse_ha_runtime_info(slave).unwrap();
        assert!(!info.master);
        assert!(info.ha_connection_info.is_empty());
        let c = &info.ha_client_runtime_info;
        assert_eq!((c.master_addr.as_str(), c.max_offset, c.is_activated), ("10.0.0.1:10912", 1000, Some(true)));
        assert_eq!(c.last_read_timestamp, 1_700_000_000_000);

        // What we write reads back the same, with RocketMQ's names.
        let json = serde_json::to_value(&info).unwrap();
        assert_eq!(json["haClientRuntimeInfo"]["isActivated"], true);
        assert_eq!(json["masterCommitLogMaxOffset"], 0);
        assert_eq!(parse_ha_runtime_info(json.to_string().as_bytes()).unwrap(), info);
        assert!(parse_ha_runtime_info(b"not json").is_err());
    }
}
