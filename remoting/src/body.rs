//! JSON (and one binary) bodies of requests and responses (`remoting-protocol.md` §6).
//!
//! Route and subscription types live in `common`; this module has the envelope types
//! only the protocol needs.

use std::collections::BTreeMap;
use std::io::{Read, Write};

use serde::{Deserialize, Serialize};

use common::lenient;
use common::route::MessageQueue;
use common::topic::TopicConfig;

/// Version stamp of a broker's topic table (`DataVersion`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct DataVersion {
    #[serde(deserialize_with = "lenient::i64")]
    pub timestamp: i64,
    #[serde(deserialize_with = "lenient::i64")]
    pub counter: i64,
    /// 5.x only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_version: Option<i64>,
}

impl DataVersion {
    pub fn new(now_ms: i64) -> Self {
        Self { timestamp: now_ms, counter: 0, state_version: None }
    }

    /// Java's `nextVersion`: timestamp = now, counter + 1.
    pub fn next_version(&mut self, now_ms: i64) {
        self.timestamp = now_ms;
        self.counter += 1;
    }
}

/// All topic configs of a broker plus their version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct TopicConfigSerializeWrapper {
    pub topic_config_table: BTreeMap<String, TopicConfig>,
    pub data_version: DataVersion,
}

/// REGISTER_BROKER's body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct RegisterBrokerBody {
    pub topic_config_serialize_wrapper: TopicConfigSerializeWrapper,
    pub filter_server_list: Vec<String>,
}

/// A register body that cannot be decoded.
#[derive(Debug, thiserror::Error)]
pub enum RegisterBodyError {
    #[error("invalid compressed register body: {0}")]
    Compressed(String),
    #[error(transparent)]
    Json(#[from] serde_json::Error),
}

impl RegisterBrokerBody {
    /// Encodes as JSON, or in RocketMQ's compressed form: a zlib stream of
    /// `i32 len + DataVersion JSON`, `i32 n`, n × `i32 len + compact topic config`,
    /// `i32 len + filter server list JSON`.
    ///
    /// # Errors
    /// Serialisation or compression failures (none expected for valid data).
    pub fn encode(&self, compressed: bool) -> Result<Vec<u8>, RegisterBodyError> {
        if !compressed {
            return Ok(crate::json::to_vec(self)?);
        }
        let io = |e: std::io::Error| RegisterBodyError::Compressed(e.to_string());
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
        let dv = crate::json::to_vec(&self.topic_config_serialize_wrapper.data_version)?;
        write_chunk(&mut z, &dv).map_err(io)?;
        let table = &self.topic_config_serialize_wrapper.topic_config_table;
        z.write_all(&(table.len() as i32).to_be_bytes()).map_err(io)?;
        for tc in table.values() {
            write_chunk(&mut z, tc.encode_compact().as_bytes()).map_err(io)?;
        }
        write_chunk(&mut z, &crate::json::to_vec(&self.filter_server_list)?).map_err(io)?;
        z.finish().map_err(io)
    }

    /// Decodes either form.
    ///
    /// # Errors
    /// Malformed JSON, a corrupt zlib stream, or inconsistent lengths.
    pub fn decode(body: &[u8], compressed: bool) -> Result<Self, RegisterBodyError> {
        if !compressed {
            return Ok(crate::json::from_slice(body)?);
        }
        let mut plain = Vec::new();
        // A registration carries tens of thousands of topics at most; cap the inflated
        // size so a zip bomb cannot exhaust memory.
        flate2::read::ZlibDecoder::new(body)
            .take(256 * 1024 * 1024)
            .read_to_end(&mut plain)
            .map_err(|e| RegisterBodyError::Compressed(e.to_string()))?;
        let mut cur = &plain[..];
        let dv: DataVersion = crate::json::from_slice(read_chunk(&mut cur)?)?;
        let n = read_i32(&mut cur)?;
        if n < 0 {
            return Err(RegisterBodyError::Compressed(format!("negative topic count {n}")));
        }
        let mut table = BTreeMap::new();
        for _ in 0..n {
            let raw = read_chunk(&mut cur)?;
            let s = std::str::from_utf8(raw)
                .map_err(|_| RegisterBodyError::Compressed("topic config is not UTF-8".into()))?;
            let tc = TopicConfig::decode_compact(s)
                .ok_or_else(|| RegisterBodyError::Compressed(format!("bad topic config `{s}`")))?;
            table.insert(tc.topic_name.clone(), tc);
        }
        let filter_server_list =
            if cur.is_empty() { Vec::new() } else { crate::json::from_slice(read_chunk(&mut cur)?)? };
        Ok(Self {
            topic_config_serialize_wrapper: TopicConfigSerializeWrapper { topic_config_table: table, data_version: dv },
            filter_server_list,
        })
    }
}

fn write_chunk(w: &mut impl Write, data: &[u8]) -> std::io::Result<()> {
    w.write_all(&(data.len() as i32).to_be_bytes())?;
    w.write_all(data)
}

fn read_i32(cur: &mut &[u8]) -> Result<i32, RegisterBodyError> {
    if cur.len() < 4 {
        return Err(RegisterBodyError::Compressed("truncated length".into()));
    }
    let v = i32::from_be_bytes([cur[0], cur[1], cur[2], cur[3]]);
    *cur = &cur[4..];
    Ok(v)
}

fn read_chunk<'a>(cur: &mut &'a [u8]) -> Result<&'a [u8], RegisterBodyError> {
    let len = read_i32(cur)?;
    if len < 0 || len as usize > cur.len() {
        return Err(RegisterBodyError::Compressed(format!("chunk length {len} out of range")));
    }
    let (chunk, rest) = cur.split_at(len as usize);
    *cur = rest;
    Ok(chunk)
}

/// `KVTable`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct KvTable {
    pub table: BTreeMap<String, String>,
}

/// `TopicList`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct TopicList {
    pub topic_list: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub broker_addr: Option<String>,
}

/// GET_CONSUMER_LIST_BY_GROUP's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct ConsumerListBody {
    pub consumer_id_list: Vec<String>,
}

/// LOCK_BATCH_MQ and UNLOCK_BATCH_MQ requests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct LockBatchRequestBody {
    pub consumer_group: String,
    pub client_id: String,
    pub mq_set: Vec<MessageQueue>,
    #[serde(deserialize_with = "lenient::bool")]
    pub only_this_broker: bool,
}

/// LOCK_BATCH_MQ's answer: the queues the requester now holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct LockBatchResponseBody {
    #[serde(rename = "lockOKMQSet")]
    pub lock_ok_mq_set: Vec<MessageQueue>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> RegisterBrokerBody {
        let mut table = BTreeMap::new();
        for t in ["TopicTest", "TBW102"] {
            table.insert(t.to_owned(), TopicConfig::new(t, 4, 6));
        }
        RegisterBrokerBody {
            topic_config_serialize_wrapper: TopicConfigSerializeWrapper {
                topic_config_table: table,
                data_version: DataVersion { timestamp: 1_700_000_000_000, counter: 12, state_version: None },
            },
            filter_server_list: vec![],
        }
    }

    #[test]
    fn register_body_round_trips_in_both_forms() {
        let body = sample();
        for compressed in [false, true] {
            let bytes = body.encode(compressed).unwrap();
            assert_eq!(RegisterBrokerBody::decode(&bytes, compressed).unwrap(), body, "compressed={compressed}");
        }
    }

    #[test]
    fn corrupt_compressed_body_is_an_error() {
        let mut bytes = sample().encode(true).unwrap();
        let n = bytes.len();
        bytes.truncate(n / 2);
        assert!(RegisterBrokerBody::decode(&bytes, true).is_err());
        assert!(RegisterBrokerBody::decode(b"not zlib", true).is_err());
    }

    #[test]
    fn lock_body_uses_java_key_names() {
        let b = LockBatchResponseBody { lock_ok_mq_set: vec![MessageQueue::new("T", "broker-a", 0)] };
        assert_eq!(
            String::from_utf8(crate::json::to_vec(&b).unwrap()).unwrap(),
            r#"{"lockOKMQSet":[{"topic":"T","brokerName":"broker-a","queueId":0}]}"#
        );
    }
}

/// GET_BROKER_CLUSTER_ACL_CONFIG (54) response: RocketMQ's `AclConfig`, the broker's
/// white list and accounts (secret keys included).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct AclConfigBody {
    pub global_white_addrs: Vec<String>,
    pub plain_access_configs: Vec<PlainAccessConfig>,
}

/// One account as RocketMQ's `PlainAccessConfig` carries it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct PlainAccessConfig {
    pub access_key: String,
    pub secret_key: String,
    pub white_remote_address: Option<String>,
    pub admin: bool,
    pub default_topic_perm: Option<String>,
    pub default_group_perm: Option<String>,
    pub topic_perms: Vec<String>,
    pub group_perms: Vec<String>,
}

/// Bodies of RocketMQ 5's controller API (fastjson's names; ids as numbers).
pub mod controller {
    use std::collections::{BTreeMap, BTreeSet};

    use serde::{Deserialize, Serialize};

    /// `SyncStateSet`: a set of broker ids and its epoch.
    #[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(rename_all = "camelCase", default)]
    pub struct SyncStateSetBody {
        pub sync_state_set: BTreeSet<u64>,
        pub sync_state_set_epoch: i32,
    }

    /// `BrokerMemberGroup`.
    #[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(rename_all = "camelCase", default)]
    pub struct BrokerMemberGroup {
        pub cluster: String,
        pub broker_name: String,
        pub broker_addrs: BTreeMap<u64, String>,
    }

    /// `ElectMasterResponseBody`.
    #[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(rename_all = "camelCase", default)]
    pub struct ElectMasterBody {
        #[serde(skip_serializing_if = "Option::is_none")]
        pub broker_member_group: Option<BrokerMemberGroup>,
        pub sync_state_set: BTreeSet<u64>,
    }

    /// `BrokerReplicasInfo.ReplicaIdentity`.
    #[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(rename_all = "camelCase", default)]
    pub struct ReplicaIdentity {
        pub broker_name: String,
        pub broker_id: u64,
        pub broker_address: String,
        pub alive: bool,
    }

    /// `BrokerReplicasInfo.ReplicasInfo`.
    #[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(rename_all = "camelCase", default)]
    pub struct ReplicasInfoBody {
        pub master_broker_id: Option<u64>,
        pub master_address: Option<String>,
        pub master_epoch: i32,
        pub sync_state_set_epoch: i32,
        pub in_sync_replicas: Vec<ReplicaIdentity>,
        pub not_in_sync_replicas: Vec<ReplicaIdentity>,
    }

    /// `BrokerReplicasInfo`: the body of CONTROLLER_GET_SYNC_STATE_DATA.
    #[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(rename_all = "camelCase", default)]
    pub struct BrokerReplicasInfo {
        pub replicas_info_table: BTreeMap<String, ReplicasInfoBody>,
    }

    /// RocketMQ's `EpochEntryCache`, the body of GET_BROKER_EPOCH_CACHE.
    #[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(rename_all = "camelCase", default)]
    pub struct EpochEntryCache {
        pub cluster_name: String,
        pub broker_name: String,
        pub broker_id: u64,
        pub epoch_list: Vec<EpochEntryBody>,
        pub max_offset: i64,
    }

    /// RocketMQ's `EpochEntry`.
    #[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(rename_all = "camelCase", default)]
    pub struct EpochEntryBody {
        pub epoch: i32,
        pub start_offset: i64,
        pub end_offset: i64,
    }
}

/// FerroMQ's plugin administration bodies (FERROMQ_PLUGIN_LIST).
pub mod plugin {
    use serde::{Deserialize, Serialize};

    /// Where a plugin applies: a filter to `topic` + `group`, a queue selector or a
    /// check-back handler to `topic` (`group` absent). `*` matches every one.
    #[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
    #[serde(rename_all = "camelCase", default)]
    pub struct PluginBindingInfo {
        pub topic: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub group: Option<String>,
        /// `config` (broker.toml / broker.conf, fixed at start) or `runtime`
        /// (bound with FERROMQ_PLUGIN_BIND, kept in the store).
        pub source: String,
    }

    /// One line a plugin logged (FERROMQ_PLUGIN_LOGS).
    #[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(rename_all = "camelCase", default)]
    pub struct PluginLogLine {
        /// Position in the plugin's log: ask for lines after it to follow.
        pub seq: u64,
        pub time_millis: u64,
        pub level: String,
        pub message: String,
    }

    /// One plugin of a broker, as FERROMQ_PLUGIN_LIST answers.
    #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
    #[serde(rename_all = "camelCase", default)]
    pub struct PluginInfo {
        pub name: String,
        pub kind: String,
        pub runtime: String,
        /// `loaded` or `unavailable`.
        pub state: String,
        /// `config` or `deployed`.
        pub source: String,
        /// The manifest's name and version (`name@version`).
        pub version: String,
        pub sha256: String,
        pub generation: u64,
        /// Whether a previous deployed version is kept for a rollback.
        pub rollback_available: bool,
        pub bindings: Vec<PluginBindingInfo>,
        pub calls: u64,
        pub errors: u64,
        pub timeouts: u64,
        pub fallbacks: u64,
        pub p50_micros: u64,
        pub p99_micros: u64,
        pub breaker: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub last_error: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub last_reload_error: Option<String>,
    }
}
