//! RocketMQ 5's `HARuntimeInfo`: the body of GET_BROKER_HA_STATUS (907), what
//! `mqadmin haStatus` prints. Field names are RocketMQ's, so its tools read ours.

use serde::{Deserialize, Serialize};

/// A broker's replication state: a master's slaves, or a slave's master.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct HaRuntimeInfo {
    pub master: bool,
    /// A master's commit-log end.
    pub master_commit_log_max_offset: i64,
    /// Slaves within `haMaxGapNotInSync` of the master.
    pub in_sync_slave_nums: i32,
    /// A master's slaves.
    pub ha_connection_info: Vec<HaConnectionInfo>,
    /// A slave's view of its master.
    pub ha_client_runtime_info: HaClientRuntimeInfo,
}

/// One slave of a master.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct HaConnectionInfo {
    /// The slave's address, as the master sees the connection.
    pub addr: String,
    /// The offset the slave last reported holding.
    pub slave_ack_offset: i64,
    /// How many bytes the slave is behind.
    pub diff: i64,
    pub in_sync: bool,
    pub transferred_byte_in_second: i64,
    /// Where the master's next transfer to this slave starts.
    pub transfer_from_where: i64,
}

/// A slave's replication connection.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct HaClientRuntimeInfo {
    /// The master's HA address.
    pub master_addr: String,
    pub transferred_byte_in_second: i64,
    /// The slave's commit-log end.
    pub max_offset: i64,
    pub last_read_timestamp: i64,
    pub last_write_timestamp: i64,
    pub master_flush_offset: i64,
    /// Whether the connection to the master is up.
    #[serde(rename = "isActivated")]
    pub is_activated: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_uses_rocketmqs_names() {
        let info = HaRuntimeInfo {
            master: true,
            master_commit_log_max_offset: 1024,
            in_sync_slave_nums: 1,
            ha_connection_info: vec![HaConnectionInfo {
                addr: "127.0.0.1:5000".into(),
                slave_ack_offset: 1000,
                diff: 24,
                in_sync: true,
                transferred_byte_in_second: 10,
                transfer_from_where: 1024,
            }],
            ha_client_runtime_info: HaClientRuntimeInfo::default(),
        };
        let v: serde_json::Value = serde_json::to_value(&info).unwrap();
        assert_eq!(v["masterCommitLogMaxOffset"], 1024);
        assert_eq!(v["inSyncSlaveNums"], 1);
        assert_eq!(v["haConnectionInfo"][0]["slaveAckOffset"], 1000);
        assert_eq!(v["haConnectionInfo"][0]["transferFromWhere"], 1024);
        assert_eq!(v["haClientRuntimeInfo"]["isActivated"], false);
        let back: HaRuntimeInfo = serde_json::from_value(v).unwrap();
        assert_eq!(back, info);
    }
}
