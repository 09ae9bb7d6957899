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
    CreateTopicRequestHeader, GetConsumeStatsRequestHeader, QueryMessageRequestHeader, ResetOffsetRequestHeader,
};
use remoting::{RemotingCommand, RequestCode};

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
        let info = self.cluster_info().await?;
        let mut masters = Vec::new();
        for (cluster_name, names) in &info.cluster_addr_table {
            if cluster.is_some_and(|c| c != cluster_name) {
                continue;
            }
            for name in names {
                if let Some(addr) = info.broker_addr_table.get(name).and_then(|b| b.master_addr()) {
                    masters.push(addr.to_owned());
                }
            }
        }
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
        check(&resp, "namesrv")?;
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

    pub fn shutdown(&self) {
        self.instance.shutdown();
    }
}

fn check(resp: &RemotingCommand, addr: &str) -> Result<()> {
    if resp.response_code() == ResponseCode::SUCCESS {
        Ok(())
    } else {
        Err(Error::from_response(resp, addr))
    }
}

/// Splits a fastjson map with `MessageQueue` object keys
/// (`{{"brokerName":..,"queueId":..,"topic":..}:value,...}`) into its entries, given
/// the text of the map (from `{` to the matching `}`).
fn mq_keyed_entries(map: &str) -> Vec<(MessageQueue, &str)> {
    let bytes = map.as_bytes();
    let mut out = Vec::new();
    let mut i = 1; // after the outer '{'
    while i < bytes.len() {
        while i < bytes.len() && matches!(bytes[i], b',' | b' ' | b'\n' | b'\r' | b'\t') {
            i += 1;
        }
        if i >= bytes.len() || bytes[i] != b'{' {
            break;
        }
        let Some(key_end) = matching(bytes, i) else { break };
        let key = &map[i..=key_end];
        i = key_end + 1;
        while i < bytes.len() && bytes[i] != b':' {
            i += 1;
        }
        i += 1;
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        let value_start = i;
        let value_end = if i < bytes.len() && bytes[i] == b'{' {
            match matching(bytes, i) {
                Some(e) => e + 1,
                None => break,
            }
        } else {
            let mut j = i;
            while j < bytes.len() && !matches!(bytes[j], b',' | b'}') {
                j += 1;
            }
            j
        };
        if let Ok(mq) = serde_json::from_str::<MessageQueue>(key) {
            out.push((mq, map[value_start..value_end].trim()));
        }
        i = value_end;
    }
    out
}

/// Index of the brace closing the one at `open`, skipping strings.
fn matching(b: &[u8], open: usize) -> Option<usize> {
    let mut depth = 0;
    let mut in_str = false;
    let mut i = open;
    while i < b.len() {
        let c = b[i];
        if in_str {
            if c == b'\\' {
                i += 1;
            } else if c == b'"' {
                in_str = false;
            }
        } else {
            match c {
                b'"' => in_str = true,
                b'{' => depth += 1,
                b'}' => {
                    depth -= 1;
                    if depth == 0 {
                        return Some(i);
                    }
                }
                _ => {}
            }
        }
        i += 1;
    }
    None
}

/// The value text of `"<field>":{...}` in a body.
fn object_field<'a>(body: &'a str, field: &str) -> Option<&'a str> {
    let key = format!("\"{field}\":");
    let at = body.find(&key)? + key.len();
    let start = at + body[at..].find('{')?;
    let end = matching(body.as_bytes(), start)?;
    Some(&body[start..=end])
}

/// Reads `{"offsetTable":{MQ:offset,...}}` (RESET_CONSUMER_CLIENT_OFFSET and
/// INVOKE_BROKER_TO_RESET_OFFSET bodies).
pub fn parse_mq_keyed_offsets(body: &[u8]) -> Vec<(MessageQueue, i64)> {
    let text = String::from_utf8_lossy(body);
    let Some(table) = object_field(&text, "offsetTable") else { return Vec::new() };
    mq_keyed_entries(table).into_iter().filter_map(|(mq, v)| v.parse().ok().map(|o| (mq, o))).collect()
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
    let text = String::from_utf8_lossy(body);
    let table =
        object_field(&text, "offsetTable").ok_or_else(|| Error::Body("consume stats without offsetTable".into()))?;
    let mut out = Vec::new();
    for (queue, v) in mq_keyed_entries(table) {
        let w: Wrapper = serde_json::from_str(v).map_err(|e| Error::Body(e.to_string()))?;
        out.push(QueueProgress {
            queue,
            broker_offset: w.broker_offset,
            consumer_offset: w.consumer_offset,
            last_timestamp: w.last_timestamp,
        });
    }
    Ok(out)
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
