//! [`BrokerConfig`]: the broker's settings, with the store's nested.
//!
//! Field names are the snake_case forms of RocketMQ's `BrokerConfig`,
//! `NettyServerConfig` and `MessageStoreConfig` names (the few store-level
//! keys that are about broker behaviour, such as `message_delay_level` and
//! `broker_role`, live here rather than in [`StoreConfig`]). Defaults are
//! RocketMQ's, except where a field's doc says FerroMQ differs on purpose.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use common::delay::DelayLevels;

use bytesize::ByteSize;
use serde::{Deserialize, Serialize};

use crate::check;
use crate::error::{Error, Invalid, Result};
use crate::serde_util::{addr_list, byte_size};
use crate::store::StoreConfig;

/// RocketMQ's default delay levels: level 1 is `1s`, level 18 is `2h`.
pub const DEFAULT_MESSAGE_DELAY_LEVEL: &str = "1s 5s 10s 30s 1m 2m 3m 4m 5m 6m 7m 8m 9m 10m 20m 30m 1h 2h";

/// The broker's role in a master/slave pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum BrokerRole {
    /// Master that acknowledges before slaves have the message.
    AsyncMaster,
    /// Master that acknowledges only once a slave has the message.
    SyncMaster,
    /// Replica; must have a `broker_id` above 0.
    Slave,
}

impl BrokerRole {
    /// `true` for both master roles.
    pub fn is_master(self) -> bool {
        !matches!(self, BrokerRole::Slave)
    }

    /// RocketMQ's name of the role (`ASYNC_MASTER`, `SYNC_MASTER`, `SLAVE`).
    pub fn as_str(self) -> &'static str {
        match self {
            BrokerRole::AsyncMaster => "ASYNC_MASTER",
            BrokerRole::SyncMaster => "SYNC_MASTER",
            BrokerRole::Slave => "SLAVE",
        }
    }
}

/// Broker settings, the `[broker]` section of `broker.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct BrokerConfig {
    /// Cluster this broker registers under.
    pub broker_cluster_name: String,
    /// Name shared by a master and its slaves.
    pub broker_name: String,
    /// `0` for the master, above `0` for slaves.
    pub broker_id: u64,
    /// Master (async or sync replication) or slave.
    pub broker_role: BrokerRole,
    /// Address the remoting listener binds to.
    pub bind_address: IpAddr,
    /// Remoting port (RocketMQ's 10911). `0` asks the OS for a free port.
    pub listen_port: u16,
    /// Address advertised to name servers and clients. Set it whenever the
    /// bind address is not what clients reach (containers, NAT, several
    /// NICs); `None` picks the first non-loopback address of the host.
    pub broker_ip1: Option<String>,
    /// Address slaves use for HA replication; `None` means `broker_ip1`.
    pub broker_ip2: Option<String>,
    /// HA replication port (RocketMQ's 10912). `0` asks the OS for a free
    /// port; RocketMQ instead uses `listen_port + 1` for values <= 0.
    pub ha_listen_port: u16,
    /// Port of the gRPC endpoint RocketMQ 5 clients connect to
    /// (`apache.rocketmq.v2.MessagingService`; the proxy's `grpcServerPort`).
    /// `0` asks the OS for a free port; `-1` turns the endpoint off.
    pub grpc_server_port: i32,
    /// A slave's master HA address (`host:port`); `None` takes the one the
    /// name servers return on registration (the master's `haServerAddr`).
    pub ha_master_address: Option<String>,
    /// Let a master send consumers whose pulls fall far behind (more than
    /// `access_message_in_memory_max_ratio` of RAM) to a slave, and let a slave
    /// serve them.
    pub slave_read_enable: bool,
    /// The share of RAM (percent) a consumer may lag behind before a master
    /// with `slave_read_enable` suggests a slave (RocketMQ's
    /// `accessMessageInMemoryMaxRatio`).
    pub access_message_in_memory_max_ratio: u8,
    /// How often an idle HA connection sends a heartbeat (a slave its offset,
    /// a master an empty transfer).
    #[serde(with = "humantime_serde")]
    pub ha_send_heartbeat_interval: Duration,
    /// An HA connection that reads nothing for this long is closed.
    #[serde(with = "humantime_serde")]
    pub ha_housekeeping_interval: Duration,
    /// Most commit-log bytes a master sends in one HA transfer.
    #[serde(with = "byte_size")]
    pub ha_transfer_batch_size: ByteSize,
    /// A SYNC_MASTER answers SLAVE_NOT_AVAILABLE when its nearest slave is
    /// further behind than this (or no slave is connected).
    #[serde(with = "byte_size")]
    pub ha_max_gap_not_in_sync: ByteSize,
    /// Take the broker id and role from a controller group instead of
    /// `broker_id` and `broker_role` (RocketMQ 5's `enableControllerMode`).
    pub enable_controller_mode: bool,
    /// The controllers, `host:port;host:port` (`controllerAddr`).
    pub controller_addr: String,
    /// How often the broker heartbeats every controller (`brokerHeartbeatInterval`).
    #[serde(with = "humantime_serde")]
    pub broker_heartbeat_interval: Duration,
    /// How long the controllers wait for a heartbeat before they count the broker
    /// dead (`controllerHeartBeatTimeoutMills`).
    #[serde(with = "humantime_serde")]
    pub controller_heart_beat_timeout: Duration,
    /// How often the broker asks the controllers who its set's master is
    /// (`syncBrokerMetadataPeriod`).
    #[serde(with = "humantime_serde")]
    pub sync_broker_metadata_period: Duration,
    /// How often a master works out which slaves keep up and reports its
    /// SyncStateSet (`checkSyncStateSetPeriod`).
    #[serde(with = "humantime_serde")]
    pub check_sync_state_set_period: Duration,
    /// A slave that has not kept up for this long leaves the SyncStateSet
    /// (`haMaxTimeSlaveNotCatchup`).
    #[serde(with = "humantime_serde")]
    pub ha_max_time_slave_not_catchup: Duration,
    /// Of equally advanced brokers, the lowest value is elected
    /// (`brokerElectionPriority`).
    pub broker_election_priority: i32,
    /// Acknowledge a put only once every SyncStateSet member holds it
    /// (`allAckInSyncStateSet`).
    pub all_ack_in_sync_state_set: bool,
    /// Refuse puts while the SyncStateSet has fewer members (`minInSyncReplicas`).
    pub min_in_sync_replicas: u32,
    /// Replicas, the master included, that hold a put before it is acknowledged
    /// (`inSyncReplicas`). In controller mode 1 means the master alone, as in
    /// RocketMQ 5; a classic SYNC_MASTER always waits for at least one slave, as in
    /// RocketMQ 4.x, and for `inSyncReplicas - 1` slaves when that is more.
    pub in_sync_replicas: u32,
    /// Controller mode: a slave with an empty store starts from the master's newest
    /// segment instead of its oldest byte (`syncFromLastFile`). A classic slave
    /// always starts from the newest segment, as in RocketMQ 4.x.
    pub sync_from_last_file: bool,
    /// Name servers to register with. TOML accepts a list or RocketMQ's
    /// `"a:9876;b:9876"` string; the environment and properties files use
    /// the string. RocketMQ's `NAMESRV_ADDR` variable sets it too.
    #[serde(deserialize_with = "addr_list::deserialize")]
    pub namesrv_addr: Vec<String>,
    /// Enforce RocketMQ's plain ACL (`aclEnable`): every request must be signed by
    /// an account of `acl_file` (or come from a white-listed address) and the
    /// account must hold the permission the request needs.
    pub acl_enable: bool,
    /// The accounts and permissions, RocketMQ's `plain_acl.yml`. Unset: where
    /// RocketMQ looks for it, `$ROCKETMQ_HOME/conf/plain_acl.yml`. Reloaded when
    /// it changes.
    pub acl_file: Option<std::path::PathBuf>,
    /// Create a topic on its first send (via the `TBW102` template).
    pub auto_create_topic_enable: bool,
    /// Queue count of auto-created topics (and of `TBW102`).
    pub default_topic_queue_nums: u32,
    /// Create a subscription group the first time a consumer uses it.
    pub auto_create_subscription_group: bool,
    /// Permission bits of the whole broker: read 4, write 2, inherit 1.
    pub broker_permission: u8,
    /// How often to re-register with every name server. RocketMQ clamps it to
    /// 10s..=60s; FerroMQ accepts shorter periods so tests converge fast.
    #[serde(with = "humantime_serde")]
    pub register_name_server_period: Duration,
    /// Compress the registration body.
    pub compressed_register: bool,
    /// Register even when the topic config did not change.
    pub force_register: bool,
    /// Delay levels for scheduled messages and consumer retries: tokens of a
    /// number and a unit (`s`, `m`, `h`, `d`), separated by spaces.
    pub message_delay_level: String,
    /// Park pulls that find nothing until a message arrives.
    pub long_polling_enable: bool,
    /// Serve LITE_PULL_MESSAGE (361), the pull code of RocketMQ 5's lite-pull
    /// consumers; off, they are refused with NO_PERMISSION as RocketMQ does.
    pub lite_pull_message_enable: bool,
    /// Create the message-trace topic (`msg_trace_topic_name`) at start, for
    /// clients that record RocketMQ 4.x message traces (`traceTopicEnable`).
    pub trace_topic_enable: bool,
    /// The message-trace topic (`msgTraceTopicName`).
    pub msg_trace_topic_name: String,
    /// The region this broker names in send responses and stamps into stored
    /// messages (`MSG_REGION`; `regionId`); clients' message-trace records carry it.
    pub region_id: String,
    /// Whether clients record message traces of this broker's messages: `TRACE_ON`
    /// in send responses and stored messages (`traceOn`).
    pub trace_on: bool,
    /// With long polling off, how long an empty pull is held.
    #[serde(with = "humantime_serde")]
    pub short_polling_time_mills: Duration,
    /// Age of a half (prepared) message before the first check-back.
    #[serde(with = "humantime_serde")]
    pub transaction_time_out: Duration,
    /// Check-backs before a half message is discarded.
    pub transaction_check_max: u32,
    /// How often half messages are scanned for check-back.
    #[serde(with = "humantime_serde")]
    pub transaction_check_interval: Duration,
    /// Refuse transactional (half) messages.
    pub reject_transaction_message: bool,
    /// Allow SQL92 property filters in subscriptions. FerroMQ enables this by
    /// default (RocketMQ does not) because it supports SQL92 filtering.
    pub enable_property_filter: bool,
    /// A producer or consumer without a heartbeat for this long is dropped
    /// from the client tables (RocketMQ's `channelExpiredTimeout`).
    #[serde(with = "humantime_serde")]
    pub client_channel_max_idle_time: Duration,
    /// Connections idle for this long are closed (RocketMQ's
    /// `serverChannelMaxIdleTimeSeconds`).
    #[serde(with = "humantime_serde")]
    pub channel_idle_timeout: Duration,
    /// How often consumer offsets are persisted.
    #[serde(with = "humantime_serde")]
    pub flush_consumer_offset_interval: Duration,
    /// How often schedule (delay) offsets are persisted.
    #[serde(with = "humantime_serde")]
    pub flush_delay_offset_interval: Duration,
    /// Redeliveries before a message goes to the dead-letter queue, for
    /// groups that do not set their own (Java clients send -1 for 16).
    pub max_reconsume_times: u32,
    /// An orderly consumer's queue lock expires when not renewed for this long
    /// (RocketMQ's `rocketmq.broker.rebalance.lockMaxLiveTime`).
    #[serde(with = "humantime_serde")]
    pub rebalance_lock_max_live_time: Duration,
    /// Longest delay a timed message (`TIMER_DELIVER_MS` / `TIMER_DELAY_SEC`) may
    /// ask for (RocketMQ 5's `timerMaxDelaySec`, 3 days there; 30 days here).
    #[serde(with = "humantime_serde")]
    pub timer_max_delay: Duration,
    /// The message store, `[broker.store]` in TOML.
    pub store: StoreConfig,
    /// TLS on the remoting port and the HA port, `[broker.tls]` in TOML.
    pub tls: crate::tls::ServerTlsConfig,
    /// TLS on the broker's own connections (name servers, controllers, its
    /// master's remoting and HA ports), `[broker.outgoing_tls]` in TOML.
    pub outgoing_tls: crate::tls::ClientTlsConfig,
    /// Plugins bound to topics and groups (`[[broker.plugin_binding]]`); the
    /// plugins themselves are declared in `[plugins]`.
    #[serde(rename = "plugin_binding")]
    pub plugin_bindings: Vec<PluginBinding>,
}

/// Binds a plugin declared in `[plugins]` to broker traffic. What it does
/// follows from the plugin's kind:
///
/// * `filter`: every pull of `group` on `topic` is filtered by the plugin as
///   well as by the consumer's own TAG/SQL92 subscription (stock clients
///   benefit without code changes);
/// * `queue_selector`: the broker picks the queue of every message sent to
///   `topic` (server-side selection; the send response names the queue);
/// * `txn_check`: the plugin decides half messages of `topic` before the
///   broker asks the producer.
///
/// `topic = "*"` binds every topic that has no binding of that kind of its own.
///
/// ```toml
/// [[broker.plugin_binding]]
/// plugin = "price-range"
/// topic = "Orders"
/// group = "billing"
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginBinding {
    /// Name of a plugin declared in `[[plugins.plugin]]`.
    pub plugin: String,
    /// Topic name, or `*`.
    pub topic: String,
    /// Consumer group (filters only, and required for them), or `*`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        Self {
            broker_cluster_name: "DefaultCluster".to_owned(),
            broker_name: "broker-a".to_owned(),
            broker_id: 0,
            broker_role: BrokerRole::AsyncMaster,
            bind_address: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            listen_port: 10911,
            broker_ip1: None,
            broker_ip2: None,
            ha_listen_port: 10912,
            grpc_server_port: 8081,
            ha_master_address: None,
            slave_read_enable: false,
            access_message_in_memory_max_ratio: 40,
            ha_send_heartbeat_interval: Duration::from_secs(5),
            ha_housekeeping_interval: Duration::from_secs(20),
            ha_transfer_batch_size: ByteSize::kib(32),
            ha_max_gap_not_in_sync: ByteSize::mib(256),
            enable_controller_mode: false,
            controller_addr: String::new(),
            broker_heartbeat_interval: Duration::from_secs(1),
            controller_heart_beat_timeout: Duration::from_secs(10),
            sync_broker_metadata_period: Duration::from_secs(5),
            check_sync_state_set_period: Duration::from_secs(5),
            ha_max_time_slave_not_catchup: Duration::from_secs(15),
            broker_election_priority: i32::MAX,
            all_ack_in_sync_state_set: false,
            min_in_sync_replicas: 1,
            in_sync_replicas: 1,
            sync_from_last_file: false,
            namesrv_addr: Vec::new(),
            acl_enable: false,
            acl_file: None,
            auto_create_topic_enable: true,
            default_topic_queue_nums: 8,
            auto_create_subscription_group: true,
            broker_permission: 6,
            register_name_server_period: Duration::from_secs(30),
            compressed_register: false,
            force_register: true,
            message_delay_level: DEFAULT_MESSAGE_DELAY_LEVEL.to_owned(),
            long_polling_enable: true,
            lite_pull_message_enable: true,
            trace_topic_enable: false,
            msg_trace_topic_name: "RMQ_SYS_TRACE_TOPIC".to_owned(),
            region_id: "DefaultRegion".to_owned(),
            trace_on: true,
            short_polling_time_mills: Duration::from_secs(1),
            transaction_time_out: Duration::from_secs(6),
            transaction_check_max: 15,
            transaction_check_interval: Duration::from_secs(60),
            reject_transaction_message: false,
            enable_property_filter: true,
            client_channel_max_idle_time: Duration::from_secs(120),
            channel_idle_timeout: Duration::from_secs(120),
            flush_consumer_offset_interval: Duration::from_secs(5),
            flush_delay_offset_interval: Duration::from_secs(10),
            max_reconsume_times: 16,
            rebalance_lock_max_live_time: Duration::from_secs(60),
            timer_max_delay: Duration::from_secs(30 * 86_400),
            store: StoreConfig::default(),
            tls: crate::tls::ServerTlsConfig::default(),
            outgoing_tls: crate::tls::ClientTlsConfig::default(),
            plugin_bindings: Vec::new(),
        }
    }
}

impl BrokerConfig {
    /// Checks identity, addresses, ports, intervals and delay levels, then
    /// the nested [`StoreConfig`].
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] naming the first offending key (store keys come
    /// back as `store.<key>`).
    pub fn validate(&self) -> Result<()> {
        check::not_blank("broker_cluster_name", &self.broker_cluster_name)?;
        check::not_blank("broker_name", &self.broker_name)?;
        if self.enable_controller_mode {
            // The controllers assign the id and the role.
            check::not_blank("controller_addr", &self.controller_addr)?;
            for addr in self.controller_addr.split(';').map(str::trim).filter(|a| !a.is_empty()) {
                check::host_port("controller_addr", addr)?;
            }
            check::non_zero("broker_heartbeat_interval", self.broker_heartbeat_interval)?;
            check::non_zero("sync_broker_metadata_period", self.sync_broker_metadata_period)?;
            check::non_zero("check_sync_state_set_period", self.check_sync_state_set_period)?;
            check::positive("min_in_sync_replicas", u64::from(self.min_in_sync_replicas))?;
        }
        check::positive("in_sync_replicas", u64::from(self.in_sync_replicas))?;
        // RocketMQ's BrokerStartup enforces the same pairing: id 0 is the
        // master, and a slave with id 0 would replace its master in routes.
        if !self.enable_controller_mode && self.broker_role.is_master() && self.broker_id != 0 {
            return Err(Error::invalid(
                "broker_id",
                Invalid::Conflict { other: "broker_role", why: "a master must have broker_id 0" },
            ));
        }
        if !self.enable_controller_mode && !self.broker_role.is_master() && self.broker_id == 0 {
            return Err(Error::invalid(
                "broker_id",
                Invalid::Conflict { other: "broker_role", why: "a slave must have a broker_id above 0" },
            ));
        }
        for (key, ip) in [("broker_ip1", &self.broker_ip1), ("broker_ip2", &self.broker_ip2)] {
            if let Some(ip) = ip {
                check::not_blank(key, ip)?;
            }
        }
        check::distinct_ports("ha_listen_port", self.ha_listen_port, "listen_port", self.listen_port)?;
        match u16::try_from(self.grpc_server_port) {
            Ok(port) => {
                check::distinct_ports("grpc_server_port", port, "listen_port", self.listen_port)?;
                check::distinct_ports("grpc_server_port", port, "ha_listen_port", self.ha_listen_port)?;
            }
            Err(_) if self.grpc_server_port == -1 => {}
            Err(_) => {
                return Err(Error::invalid(
                    "grpc_server_port",
                    Invalid::OutOfRange {
                        value: self.grpc_server_port.to_string(),
                        expected: "a port (0 picks a free one), or -1 to turn the gRPC endpoint off",
                    },
                ));
            }
        }
        if let Some(addr) = &self.ha_master_address {
            check::host_port("ha_master_address", addr)?;
        }
        if self.access_message_in_memory_max_ratio > 100 {
            return Err(Error::invalid(
                "access_message_in_memory_max_ratio",
                Invalid::OutOfRange {
                    value: self.access_message_in_memory_max_ratio.to_string(),
                    expected: "a percentage, 0 to 100",
                },
            ));
        }
        check::non_zero("ha_send_heartbeat_interval", self.ha_send_heartbeat_interval)?;
        check::non_zero("ha_housekeeping_interval", self.ha_housekeeping_interval)?;
        check::positive("ha_transfer_batch_size", self.ha_transfer_batch_size.as_u64())?;
        check::positive("ha_max_gap_not_in_sync", self.ha_max_gap_not_in_sync.as_u64())?;
        for addr in &self.namesrv_addr {
            check::host_port("namesrv_addr", addr)?;
        }
        check::positive("default_topic_queue_nums", self.default_topic_queue_nums.into())?;
        if self.broker_permission > 7 {
            return Err(Error::invalid(
                "broker_permission",
                Invalid::OutOfRange {
                    value: self.broker_permission.to_string(),
                    expected: "a sum of read (4), write (2) and inherit (1)",
                },
            ));
        }
        check::non_zero("register_name_server_period", self.register_name_server_period)?;
        self.delay_levels()?;
        check::non_zero("short_polling_time_mills", self.short_polling_time_mills)?;
        check::non_zero("transaction_time_out", self.transaction_time_out)?;
        check::non_zero("transaction_check_interval", self.transaction_check_interval)?;
        check::non_zero("client_channel_max_idle_time", self.client_channel_max_idle_time)?;
        check::non_zero("channel_idle_timeout", self.channel_idle_timeout)?;
        check::non_zero("rebalance_lock_max_live_time", self.rebalance_lock_max_live_time)?;
        check::non_zero("timer_max_delay", self.timer_max_delay)?;
        check::non_zero("flush_consumer_offset_interval", self.flush_consumer_offset_interval)?;
        check::non_zero("flush_delay_offset_interval", self.flush_delay_offset_interval)?;
        self.tls.validate().map_err(|e| e.within("tls"))?;
        self.outgoing_tls.validate().map_err(|e| e.within("outgoing_tls"))?;
        self.store.validate().map_err(|e| e.within("store"))
    }

    /// The parsed `message_delay_level` table.
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] keyed `message_delay_level` if the list is empty or
    /// a token is not a number followed by `s`, `m`, `h` or `d`.
    pub fn delay_levels(&self) -> Result<DelayLevels> {
        parse_delay_levels(&self.message_delay_level)
    }
}

/// Parses RocketMQ's delay-level syntax (`"1s 5s 10s 30s 1m ... 2h"`) with the
/// one parser the broker uses ([`common::delay::DelayLevels`]), keyed for errors.
///
/// # Errors
///
/// [`Error::Invalid`] keyed `message_delay_level` on an empty list or a bad
/// token.
pub fn parse_delay_levels(levels: &str) -> Result<DelayLevels> {
    if levels.trim().is_empty() {
        return Err(Error::invalid("message_delay_level", Invalid::Empty));
    }
    DelayLevels::parse(levels).map_err(|e| {
        Error::invalid(
            "message_delay_level",
            Invalid::Malformed { value: e.token, expected: "a number followed by s, m, h or d" },
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_delay_levels_are_rocketmqs_eighteen() {
        let levels = parse_delay_levels(DEFAULT_MESSAGE_DELAY_LEVEL).unwrap();
        assert_eq!(levels.max_level(), 18);
        assert_eq!(levels.delay(1), Some(Duration::from_secs(1)));
        assert_eq!(levels.delay(18), Some(Duration::from_secs(7200)));
    }

    #[test]
    fn delay_levels_reject_what_rocketmq_cannot_parse() {
        for bad in ["", "  ", "1x", "s", "1.5s", "-1s", "1ms", "99999999999999999999d"] {
            assert!(parse_delay_levels(bad).is_err(), "{bad:?}");
        }
        let levels = parse_delay_levels("2d 3h").unwrap();
        assert_eq!(levels.delay(1), Some(Duration::from_secs(172_800)));
        assert_eq!(levels.delay(2), Some(Duration::from_secs(10_800)));
    }
}
