//! Reading RocketMQ's own configuration files (`broker.conf`,
//! `namesrv.properties`), so an operator can migrate without rewriting them.
//!
//! The [`BROKER`] and [`NAMESRV`] tables are the one place that knows how a
//! RocketMQ key (`flushIntervalCommitLog`) maps to a FerroMQ key
//! (`broker.store.flush_interval_commit_log`) and how its value converts
//! (RocketMQ's milliseconds, seconds, hours and percentages become our
//! durations and ratios). The result is a figment dictionary shaped like the
//! TOML file, so the properties file is just another layer: defaults, then
//! this, then the environment, then validation.
//!
//! Each value is converted here, where RocketMQ's key name is known, so a bad
//! value is reported as `listenPort: invalid value ... in broker.conf` and not
//! under our name for it. Keys RocketMQ has but FerroMQ does not implement,
//! and keys that RocketMQ does not have either, each produce a warning:
//! RocketMQ itself silently ignores both, which is how typos go unnoticed.

pub(crate) mod properties;
mod unsupported;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::value::{Dict, Value};

use crate::error::{Error, Result};
use crate::layer;
use crate::store::StoreConfig;
use crate::warning::{closest, ConfigWarning, Origin, WarningKind};

/// How a RocketMQ value string becomes a FerroMQ value.
#[derive(Debug, Clone, Copy)]
enum Unit {
    /// A string, kept as is (already trimmed by the parser).
    Text,
    /// `true` or `false`, any case. Java's `Boolean.parseBoolean` reads
    /// anything else as `false`; we reject it instead.
    Bool,
    /// A non-negative integer no larger than `max`.
    Int { max: u64 },
    /// A port, or `-1` for a listener that is off.
    PortOrOff,
    /// An IP address.
    Ip,
    /// Integer milliseconds, to a duration.
    Millis,
    /// Integer seconds, to a duration.
    Seconds,
    /// Integer hours, to a duration.
    Hours,
    /// Integer percent (0-100), to a ratio (0.0-1.0).
    PercentToRatio,
    /// One of the given enum constant names, case-sensitive as Java's
    /// `Enum.valueOf`.
    Enum(&'static [&'static str]),
    /// RocketMQ's `storePathCommitLog`: FerroMQ has no such setting, the
    /// commit log always lives in `<store_path_root_dir>/commitlog`. A value
    /// that agrees is accepted silently, any other is warned about.
    CommitLogDir,
}

/// One RocketMQ key and where it goes.
#[derive(Debug)]
struct Entry {
    rocketmq: &'static str,
    /// Dotted path in the file-level struct, e.g. `broker.store.max_message_size`.
    ferromq: &'static str,
    unit: Unit,
}

const fn entry(rocketmq: &'static str, ferromq: &'static str, unit: Unit) -> Entry {
    Entry { rocketmq, ferromq, unit }
}

/// The keys of one component's RocketMQ file.
#[derive(Debug)]
pub(crate) struct Table {
    entries: &'static [Entry],
    /// RocketMQ keys that exist in RocketMQ but not in FerroMQ.
    unsupported: &'static [&'static str],
    /// Switches FerroMQ does not implement and must not ignore when turned on: a
    /// broker asked for ACLs, TLS or another replication design than it runs would
    /// be a different broker than the operator configured. `true` is an error
    /// saying why; `false` is just not implemented.
    refused_when_on: &'static [(&'static str, &'static str)],
}

const PORT: Unit = Unit::Int { max: u16::MAX as u64 };
const PORT_OR_OFF: Unit = Unit::PortOrOff;
const U8: Unit = Unit::Int { max: u8::MAX as u64 };
const U32: Unit = Unit::Int { max: u32::MAX as u64 };
const U64: Unit = Unit::Int { max: u64::MAX };
/// Sizes are plain byte counts in RocketMQ files.
const BYTES: Unit = U64;
const PERCENT: Unit = Unit::Int { max: 100 };
const FLUSH_DISK_TYPE: Unit = Unit::Enum(&["ASYNC_FLUSH", "SYNC_FLUSH"]);
const BROKER_ROLE: Unit = Unit::Enum(&["ASYNC_MASTER", "SYNC_MASTER", "SLAVE"]);
const METRICS_EXPORTER: Unit = Unit::Enum(&["DISABLE", "PROM", "OTLP_GRPC", "LOG"]);

/// `broker.conf` (RocketMQ's `BrokerConfig`, `NettyServerConfig` and
/// `MessageStoreConfig` keys).
#[rustfmt::skip]
pub(crate) const BROKER: Table = Table {
    entries: &[
        entry("brokerClusterName",                 "broker.broker_cluster_name",                      Unit::Text),
        entry("brokerName",                        "broker.broker_name",                              Unit::Text),
        entry("brokerId",                          "broker.broker_id",                                U64),
        entry("brokerRole",                        "broker.broker_role",                              BROKER_ROLE),
        entry("bindAddress",                       "broker.bind_address",                             Unit::Ip),
        entry("listenPort",                        "broker.listen_port",                              PORT),
        entry("brokerIP1",                         "broker.broker_ip1",                               Unit::Text),
        entry("brokerIP2",                         "broker.broker_ip2",                               Unit::Text),
        entry("haListenPort",                      "broker.ha_listen_port",                           PORT),
        entry("grpcServerPort",                    "broker.grpc_server_port",                         PORT_OR_OFF),
        entry("haMasterAddress",                   "broker.ha_master_address",                        Unit::Text),
        entry("slaveReadEnable",                   "broker.slave_read_enable",                        Unit::Bool),
        entry("accessMessageInMemoryMaxRatio",     "broker.access_message_in_memory_max_ratio",       PERCENT),
        entry("haSendHeartbeatInterval",           "broker.ha_send_heartbeat_interval",               Unit::Millis),
        entry("haHousekeepingInterval",            "broker.ha_housekeeping_interval",                 Unit::Millis),
        entry("haTransferBatchSize",               "broker.ha_transfer_batch_size",                   BYTES),
        entry("haMaxGapNotInSync",                 "broker.ha_max_gap_not_in_sync",                   BYTES),
        entry("enableControllerMode",              "broker.enable_controller_mode",                   Unit::Bool),
        entry("controllerAddr",                    "broker.controller_addr",                          Unit::Text),
        entry("brokerHeartbeatInterval",           "broker.broker_heartbeat_interval",                Unit::Millis),
        entry("controllerHeartBeatTimeoutMills",   "broker.controller_heart_beat_timeout",            Unit::Millis),
        entry("syncBrokerMetadataPeriod",          "broker.sync_broker_metadata_period",              Unit::Millis),
        entry("checkSyncStateSetPeriod",           "broker.check_sync_state_set_period",              Unit::Millis),
        entry("haMaxTimeSlaveNotCatchup",          "broker.ha_max_time_slave_not_catchup",            Unit::Millis),
        entry("brokerElectionPriority",            "broker.broker_election_priority",                 U32),
        entry("allAckInSyncStateSet",              "broker.all_ack_in_sync_state_set",                Unit::Bool),
        entry("tls.server.mode",                   "broker.tls.mode",                              Unit::Enum(&["disabled", "permissive", "enforcing"])),
        entry("tls.server.certPath",               "broker.tls.cert_path",                         Unit::Text),
        entry("tls.server.keyPath",                "broker.tls.key_path",                          Unit::Text),
        entry("tls.server.trustCertPath",          "broker.tls.trust_cert_path",                   Unit::Text),
        entry("tls.server.need.client.auth",       "broker.tls.need_client_auth",                  Unit::Enum(&["none", "optional", "require"])),
        entry("useTLS",                            "broker.outgoing_tls.enable",                   Unit::Bool),
        entry("tls.client.trustCertPath",          "broker.outgoing_tls.trust_cert_path",          Unit::Text),
        entry("tls.client.certPath",               "broker.outgoing_tls.cert_path",                Unit::Text),
        entry("tls.client.keyPath",                "broker.outgoing_tls.key_path",                 Unit::Text),
        entry("aclEnable",                         "broker.acl_enable",                               Unit::Bool),
        entry("minInSyncReplicas",                 "broker.min_in_sync_replicas",                     U32),
        entry("inSyncReplicas",                    "broker.in_sync_replicas",                         U32),
        entry("syncFromLastFile",                  "broker.sync_from_last_file",                      Unit::Bool),
        // Kept as RocketMQ's ";"-separated string; the field's deserializer splits it.
        entry("namesrvAddr",                       "broker.namesrv_addr",                             Unit::Text),
        entry("autoCreateTopicEnable",             "broker.auto_create_topic_enable",                 Unit::Bool),
        entry("defaultTopicQueueNums",             "broker.default_topic_queue_nums",                 U32),
        entry("autoCreateSubscriptionGroup",       "broker.auto_create_subscription_group",           Unit::Bool),
        entry("brokerPermission",                  "broker.broker_permission",                        U8),
        entry("registerNameServerPeriod",          "broker.register_name_server_period",              Unit::Millis),
        entry("compressedRegister",                "broker.compressed_register",                      Unit::Bool),
        entry("forceRegister",                     "broker.force_register",                           Unit::Bool),
        entry("messageDelayLevel",                 "broker.message_delay_level",                      Unit::Text),
        entry("longPollingEnable",                 "broker.long_polling_enable",                      Unit::Bool),
        entry("litePullMessageEnable",             "broker.lite_pull_message_enable",                 Unit::Bool),
        entry("traceTopicEnable",                  "broker.trace_topic_enable",                       Unit::Bool),
        entry("msgTraceTopicName",                 "broker.msg_trace_topic_name",                     Unit::Text),
        entry("regionId",                          "broker.region_id",                                Unit::Text),
        entry("traceOn",                           "broker.trace_on",                                 Unit::Bool),
        entry("shortPollingTimeMills",             "broker.short_polling_time_mills",                 Unit::Millis),
        entry("transactionTimeOut",                "broker.transaction_time_out",                     Unit::Millis),
        entry("timerMaxDelaySec",                  "broker.timer_max_delay",                          Unit::Seconds),
        entry("transactionCheckMax",               "broker.transaction_check_max",                    U32),
        entry("transactionCheckInterval",          "broker.transaction_check_interval",               Unit::Millis),
        entry("rejectTransactionMessage",          "broker.reject_transaction_message",               Unit::Bool),
        entry("enablePropertyFilter",              "broker.enable_property_filter",                   Unit::Bool),
        entry("channelExpiredTimeout",             "broker.client_channel_max_idle_time",             Unit::Millis),
        entry("serverChannelMaxIdleTimeSeconds",   "broker.channel_idle_timeout",                     Unit::Seconds),
        entry("flushConsumerOffsetInterval",       "broker.flush_consumer_offset_interval",           Unit::Millis),
        entry("flushDelayOffsetInterval",          "broker.flush_delay_offset_interval",              Unit::Millis),
        entry("storePathRootDir",                  "broker.store.store_path_root_dir",                Unit::Text),
        entry("storePathCommitLog",                "broker.store.store_path_root_dir",                Unit::CommitLogDir),
        entry("mappedFileSizeCommitLog",           "broker.store.mapped_file_size_commit_log",        BYTES),
        // RocketMQ before 4.5 spelt these with one 'p'.
        entry("mapedFileSizeCommitLog",            "broker.store.mapped_file_size_commit_log",        BYTES),
        entry("mappedFileSizeConsumeQueue",        "broker.store.mapped_file_size_consume_queue",     BYTES),
        entry("mapedFileSizeConsumeQueue",         "broker.store.mapped_file_size_consume_queue",     BYTES),
        entry("flushDiskType",                     "broker.store.flush_disk_type",                    FLUSH_DISK_TYPE),
        entry("flushIntervalCommitLog",            "broker.store.flush_interval_commit_log",          Unit::Millis),
        entry("flushCommitLogLeastPages",          "broker.store.flush_commit_log_least_pages",       U32),
        entry("flushIntervalConsumeQueue",         "broker.store.flush_interval_consume_queue",       Unit::Millis),
        entry("syncFlushTimeout",                  "broker.store.sync_flush_timeout",                 Unit::Millis),
        entry("maxMessageSize",                    "broker.store.max_message_size",                   BYTES),
        entry("fileReservedTime",                  "broker.store.file_reserved_time",                 Unit::Hours),
        entry("deleteWhen",                        "broker.store.delete_when",                        Unit::Text),
        entry("diskMaxUsedSpaceRatio",             "broker.store.disk_max_used_space_ratio",          PERCENT),
        entry("diskSpaceWarningLevelRatio",        "broker.store.disk_space_warning_level_ratio",     Unit::PercentToRatio),
        entry("diskSpaceCleanForciblyRatio",       "broker.store.disk_space_clean_forcibly_ratio",    Unit::PercentToRatio),
        entry("maxHashSlotNum",                    "broker.store.max_hash_slot_num",                  U32),
        entry("maxIndexNum",                       "broker.store.max_index_num",                      U32),
        entry("messageIndexEnable",                "broker.store.message_index_enable",               Unit::Bool),
        // RocketMQ's spelling, one 'p'.
        entry("warmMapedFileEnable",               "broker.store.warm_mapped_file_enable",            Unit::Bool),
        entry("checkCRCOnRecover",                 "broker.store.check_crc_on_recover",               Unit::Bool),
        entry("metricsExporterType",               "telemetry.metrics.exporter_type",                 METRICS_EXPORTER),
        entry("metricsPromExporterHost",           "telemetry.metrics.prom_exporter_host",            Unit::Text),
        entry("metricsPromExporterPort",           "telemetry.metrics.prom_exporter_port",            PORT),
        entry("metricsLabel",                      "telemetry.metrics.label",                         Unit::Text),
        entry("metricsGrpcExporterTarget",         "telemetry.metrics.grpc_exporter_target",          Unit::Text),
        entry("metricsGrpcExporterHeader",         "telemetry.metrics.grpc_exporter_header",          Unit::Text),
        entry("metricGrpcExporterIntervalInMills", "telemetry.metrics.grpc_exporter_interval",        Unit::Millis),
        entry("metricGrpcExporterTimeOutInMills",  "telemetry.metrics.grpc_exporter_timeout",         Unit::Millis),
        entry("metricLoggingExporterIntervalInMills", "telemetry.metrics.log_exporter_interval",    Unit::Millis),
    ],
    unsupported: unsupported::BROKER,
    refused_when_on: &[
        ("enableDLegerCommitLog", "DLedger commit logs are not supported; use brokerRole and brokerId"),
    ],
};

/// `namesrv.properties` (RocketMQ's `NamesrvConfig` and `NettyServerConfig`
/// keys).
#[rustfmt::skip]
pub(crate) const NAMESRV: Table = Table {
    entries: &[
        entry("bindAddress",                       "namesrv.bind_address",                            Unit::Ip),
        entry("listenPort",                        "namesrv.listen_port",                             PORT),
        entry("kvConfigPath",                      "namesrv.kv_config_path",                          Unit::Text),
        entry("scanNotActiveBrokerInterval",       "namesrv.scan_not_active_broker_interval",         Unit::Millis),
        entry("serverChannelMaxIdleTimeSeconds",   "namesrv.channel_idle_timeout",                    Unit::Seconds),
        entry("orderMessageEnable",                "namesrv.order_message_enable",                    Unit::Bool),
        entry("tls.server.mode",                   "namesrv.tls.mode",                              Unit::Enum(&["disabled", "permissive", "enforcing"])),
        entry("tls.server.certPath",               "namesrv.tls.cert_path",                         Unit::Text),
        entry("tls.server.keyPath",                "namesrv.tls.key_path",                          Unit::Text),
        entry("tls.server.trustCertPath",          "namesrv.tls.trust_cert_path",                   Unit::Text),
        entry("tls.server.need.client.auth",       "namesrv.tls.need_client_auth",                  Unit::Enum(&["none", "optional", "require"])),
        // A name server's only outgoing connections are its embedded controller's.
        entry("useTLS",                            "controller.outgoing_tls.enable",                Unit::Bool),
        entry("tls.client.trustCertPath",          "controller.outgoing_tls.trust_cert_path",       Unit::Text),
        entry("tls.client.certPath",               "controller.outgoing_tls.cert_path",             Unit::Text),
        entry("tls.client.keyPath",                "controller.outgoing_tls.key_path",              Unit::Text),
        entry("enableControllerInNamesrv",         "namesrv.enable_controller_in_namesrv",            Unit::Bool),
        entry("controllerDLegerGroup",             "controller.controller_dleger_group",              Unit::Text),
        entry("controllerDLegerPeers",             "controller.controller_dleger_peers",              Unit::Text),
        entry("controllerDLegerSelfId",            "controller.controller_dleger_self_id",            Unit::Text),
        entry("controllerStorePath",               "controller.controller_store_path",                Unit::Text),
        entry("enableElectUncleanMaster",          "controller.enable_elect_unclean_master",          Unit::Bool),
        entry("notifyBrokerRoleChanged",           "controller.notify_broker_role_changed",           Unit::Bool),
        entry("electMasterMaxRetryCount",          "controller.elect_master_max_retry_count",         U32),
    ],
    unsupported: unsupported::NAMESRV,
    refused_when_on: &[],
};

/// A controller's properties file (RocketMQ's `ControllerConfig` keys).
#[rustfmt::skip]
pub(crate) const CONTROLLER: Table = Table {
    entries: &[
        entry("controllerDLegerGroup",             "controller.controller_dleger_group",              Unit::Text),
        entry("controllerDLegerPeers",             "controller.controller_dleger_peers",              Unit::Text),
        entry("controllerDLegerSelfId",            "controller.controller_dleger_self_id",            Unit::Text),
        entry("controllerStorePath",               "controller.controller_store_path",                Unit::Text),
        entry("scanNotActiveBrokerInterval",       "controller.scan_not_active_broker_interval",      Unit::Millis),
        entry("enableElectUncleanMaster",          "controller.enable_elect_unclean_master",          Unit::Bool),
        entry("notifyBrokerRoleChanged",           "controller.notify_broker_role_changed",           Unit::Bool),
        entry("electMasterMaxRetryCount",          "controller.elect_master_max_retry_count",         U32),
        entry("tls.server.mode",                   "controller.tls.mode",                             Unit::Enum(&["disabled", "permissive", "enforcing"])),
        entry("tls.server.certPath",               "controller.tls.cert_path",                        Unit::Text),
        entry("tls.server.keyPath",                "controller.tls.key_path",                         Unit::Text),
        entry("tls.server.trustCertPath",          "controller.tls.trust_cert_path",                  Unit::Text),
        entry("tls.server.need.client.auth",       "controller.tls.need_client_auth",                 Unit::Enum(&["none", "optional", "require"])),
        entry("useTLS",                            "controller.outgoing_tls.enable",                  Unit::Bool),
        entry("tls.client.trustCertPath",          "controller.outgoing_tls.trust_cert_path",         Unit::Text),
        entry("tls.client.certPath",               "controller.outgoing_tls.cert_path",               Unit::Text),
        entry("tls.client.keyPath",                "controller.outgoing_tls.key_path",                Unit::Text),
    ],
    unsupported: unsupported::CONTROLLER,
    refused_when_on: &[],
};

/// RocketMQ client properties (`rocketmq.namesrv.addr` is the system-property
/// spelling of `namesrvAddr`).
pub(crate) const CLIENT: Table = Table {
    entries: &[
        entry("namesrvAddr", "client.namesrv_addr", Unit::Text),
        entry("rocketmq.namesrv.addr", "client.namesrv_addr", Unit::Text),
        entry("instanceName", "client.instance_name", Unit::Text),
        entry("clientIP", "client.client_ip", Unit::Text),
        entry("unitName", "client.unit_name", Unit::Text),
        entry("pollNameServerInterval", "client.poll_name_server_interval", Unit::Millis),
        entry("heartbeatBrokerInterval", "client.heartbeat_broker_interval", Unit::Millis),
        entry("persistConsumerOffsetInterval", "client.persist_consumer_offset_interval", Unit::Millis),
        entry("mqClientApiTimeout", "client.mq_client_api_timeout", Unit::Millis),
        entry("tls.enable", "client.tls_enable", Unit::Bool),
        entry("tls.client.trustCertPath", "client.tls_trust_cert_path", Unit::Text),
        entry("tls.client.certPath", "client.tls_cert_path", Unit::Text),
        entry("tls.client.keyPath", "client.tls_key_path", Unit::Text),
    ],
    unsupported: &[],
    refused_when_on: &[],
};

/// Reads a RocketMQ properties file into a dictionary shaped like our TOML
/// file, plus a warning for every key that had no effect.
///
/// `text` is the file's content and `path` is used for messages only.
///
/// # Errors
///
/// [`Error::PropertiesSyntax`] for a malformed escape, [`Error::Property`]
/// for a value that does not convert.
pub(crate) fn to_dict(path: &Path, text: &str, table: &Table) -> Result<(Dict, Vec<ConfigWarning>)> {
    let properties = properties::parse(text).map_err(|e| Error::PropertiesSyntax {
        path: path.to_owned(),
        line: e.line,
        reason: e.reason,
    })?;
    let mut dict = Dict::new();
    let mut warnings = Vec::new();
    let mut commit_log_dirs = Vec::new();
    let warn = |key: &str, kind| ConfigWarning { key: key.to_owned(), origin: Origin::File(path.to_owned()), kind };
    for property in properties {
        let key = property.key.as_str();
        if let Some((_, why)) = table.refused_when_on.iter().find(|(k, _)| *k == key) {
            if property.value.trim().eq_ignore_ascii_case("true") {
                return Err(Error::Property {
                    key: property.key.clone(),
                    value: property.value.clone(),
                    path: path.to_owned(),
                    reason: format!("refused: {why}"),
                });
            }
        }
        if let Some(entry) = table.entries.iter().find(|e| e.rocketmq == key) {
            if let Unit::CommitLogDir = entry.unit {
                commit_log_dirs.push((entry, property.value));
                continue;
            }
            let value = convert(entry.unit, &property.value).map_err(|reason| Error::Property {
                key: property.key.clone(),
                value: property.value.clone(),
                path: path.to_owned(),
                reason,
            })?;
            layer::insert(&mut dict, entry.ferromq, value);
        } else if table.unsupported.contains(&key) {
            warnings.push(warn(key, WarningKind::NotImplemented));
        } else {
            let known = table.entries.iter().map(|e| e.rocketmq).chain(table.unsupported.iter().copied());
            let suggestion = closest(key, known).map(str::to_owned);
            warnings.push(warn(key, WarningKind::UnknownKey { suggestion }));
        }
    }
    // Checked last: storePathRootDir may come after storePathCommitLog.
    for (entry, dir) in commit_log_dirs {
        let root = layer::get(&dict, entry.ferromq)
            .and_then(Value::as_str)
            .map(PathBuf::from)
            .unwrap_or_else(|| StoreConfig::default().store_path_root_dir);
        let commit_log_dir = root.join("commitlog");
        if Path::new(&dir) != commit_log_dir {
            warnings.push(warn(entry.rocketmq, WarningKind::CommitLogPathIgnored { commit_log_dir }));
        }
    }
    Ok((dict, warnings))
}

/// Converts one value; the error is the reason, without key or file (the
/// caller adds both).
/// One setting of a RocketMQ `key=value` update, converted to FerroMQ's path and
/// value (as the properties file would be read).
#[derive(Debug, Clone, PartialEq)]
pub struct BrokerSetting {
    /// RocketMQ's key, as the request named it.
    pub rocketmq: String,
    /// FerroMQ's dotted path, e.g. `broker.broker_permission`.
    pub ferromq: &'static str,
    /// The converted value: RocketMQ's milliseconds become a duration string, and so on.
    pub value: Value,
}

impl BrokerSetting {
    /// The value as a boolean, if it is one.
    pub fn as_bool(&self) -> Option<bool> {
        match self.value {
            Value::Bool(_, b) => Some(b),
            _ => None,
        }
    }

    /// The value as a non-negative integer, if it is one.
    pub fn as_u64(&self) -> Option<u64> {
        match &self.value {
            Value::Num(_, n) => n.to_u128().and_then(|n| u64::try_from(n).ok()),
            _ => None,
        }
    }

    /// The value as a duration (RocketMQ's milliseconds, seconds or hours), if it
    /// is one.
    pub fn as_duration(&self) -> Option<Duration> {
        match &self.value {
            Value::String(_, s) => humantime::parse_duration(s).ok(),
            _ => None,
        }
    }
}

/// Parses the body of an UPDATE_BROKER_CONFIG request (Java properties text) into
/// settings under FerroMQ's names. Every key must be a broker key RocketMQ and
/// FerroMQ both have, with a value that converts; the error names the first that
/// does not.
///
/// # Errors
/// A syntax error, an unknown key or a value that does not convert, as a sentence.
pub fn parse_broker_update(text: &str) -> std::result::Result<Vec<BrokerSetting>, String> {
    parse_update(&BROKER, "broker setting", text)
}

/// [`parse_broker_update`] for a name server's UPDATE_NAMESRV_CONFIG.
///
/// # Errors
/// A syntax error, an unknown key or a value that does not convert, as a sentence.
pub fn parse_namesrv_update(text: &str) -> std::result::Result<Vec<BrokerSetting>, String> {
    parse_update(&NAMESRV, "name server setting", text)
}

fn parse_update(table: &Table, what: &str, text: &str) -> std::result::Result<Vec<BrokerSetting>, String> {
    let properties = properties::parse(text).map_err(|e| format!("line {}: {}", e.line, e.reason))?;
    let mut out = Vec::new();
    for p in properties {
        let Some(entry) = table.entries.iter().find(|e| e.rocketmq == p.key) else {
            return Err(format!("unknown {what} {:?}", p.key));
        };
        let value =
            convert(entry.unit, &p.value).map_err(|why| format!("{}: invalid value {:?}: {why}", p.key, p.value))?;
        out.push(BrokerSetting { rocketmq: p.key, ferromq: entry.ferromq, value });
    }
    Ok(out)
}

/// A broker's settings as RocketMQ names and writes them (GET_BROKER_CONFIG's
/// body): RocketMQ's keys and units (milliseconds, seconds, hours, percent) for
/// every setting both have, then FerroMQ's own settings under their dotted paths.
/// Unset optional settings are left out.
pub fn broker_properties(cfg: &crate::BrokerConfig) -> Vec<(String, String)> {
    properties_of(&BROKER, "broker.", cfg)
}

/// [`broker_properties`] for a name server (GET_NAMESRV_CONFIG).
pub fn namesrv_properties(cfg: &crate::NamesrvConfig) -> Vec<(String, String)> {
    properties_of(&NAMESRV, "namesrv.", cfg)
}

fn properties_of<T: serde::Serialize>(table: &Table, section: &str, cfg: &T) -> Vec<(String, String)> {
    let Ok(root) = Value::serialize(cfg) else { return Vec::new() };
    let mut out = Vec::new();
    let mut covered = std::collections::HashSet::new();
    for e in table.entries {
        let Some(path) = e.ferromq.strip_prefix(section) else { continue };
        if matches!(e.unit, Unit::CommitLogDir) || !covered.insert(path) {
            continue;
        }
        if let Some(text) = root.find_ref(path).and_then(|v| unconvert(e.unit, v)) {
            out.push((e.rocketmq.to_owned(), text));
        }
    }
    let mut rest = Vec::new();
    flatten_uncovered("", &root, &covered, &mut rest);
    out.extend(rest);
    out
}

fn flatten_uncovered(
    prefix: &str,
    v: &Value,
    covered: &std::collections::HashSet<&str>,
    out: &mut Vec<(String, String)>,
) {
    if covered.contains(prefix) {
        return;
    }
    match v {
        Value::Dict(_, map) => {
            for (k, v) in map {
                let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                flatten_uncovered(&key, v, covered, out);
            }
        }
        Value::Empty(..) => {}
        other => match scalar_text(other) {
            Some(text) => out.push((prefix.to_owned(), text)),
            None => {
                if let Value::Array(_, items) = other {
                    for (i, v) in items.iter().enumerate() {
                        flatten_uncovered(&format!("{prefix}.{i}"), v, covered, out);
                    }
                }
            }
        },
    }
}

fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(_, s) => Some(s.clone()),
        Value::Char(_, c) => Some(c.to_string()),
        Value::Bool(_, b) => Some(b.to_string()),
        Value::Num(_, n) => n
            .to_u128()
            .map(|n| n.to_string())
            .or_else(|| n.to_i128().map(|n| n.to_string()))
            .or_else(|| n.to_f64().map(|f| f.to_string())),
        Value::Array(_, items) => {
            let parts: Option<Vec<String>> = items.iter().map(scalar_text).collect();
            parts.map(|p| p.join(";"))
        }
        _ => None,
    }
}

/// The inverse of [`convert`]: a FerroMQ value in RocketMQ's unit.
fn unconvert(unit: Unit, v: &Value) -> Option<String> {
    let duration = || match v {
        Value::String(_, s) => humantime::parse_duration(s).ok(),
        _ => None,
    };
    match unit {
        Unit::Millis => duration().map(|d| d.as_millis().to_string()),
        Unit::Seconds => duration().map(|d| d.as_secs().to_string()),
        Unit::Hours => duration().map(|d| (d.as_secs() / 3600).to_string()),
        Unit::PercentToRatio => v.to_f64().map(|r| format!("{}", (r * 100.0).round() as i64)),
        _ => scalar_text(v),
    }
}

fn convert(unit: Unit, text: &str) -> Result<Value, String> {
    let int = |max: u64| -> Result<u64, String> {
        let n: u64 = text.parse().map_err(|e: std::num::ParseIntError| e.to_string())?;
        if n > max {
            return Err(format!("must be at most {max}"));
        }
        Ok(n)
    };
    let duration = |d: Duration| Value::from(humantime::format_duration(d).to_string());
    let overflow = || "too large".to_owned();
    Ok(match unit {
        Unit::Text | Unit::CommitLogDir => Value::from(text),
        Unit::Bool => match text {
            t if t.eq_ignore_ascii_case("true") => Value::from(true),
            t if t.eq_ignore_ascii_case("false") => Value::from(false),
            _ => return Err("expected true or false".to_owned()),
        },
        Unit::Int { max } => Value::from(int(max)?),
        Unit::PortOrOff if text == "-1" => Value::from(-1),
        Unit::PortOrOff => Value::from(int(u64::from(u16::MAX))?),
        Unit::Ip => {
            let ip: IpAddr = text.parse().map_err(|e: std::net::AddrParseError| e.to_string())?;
            Value::from(ip.to_string())
        }
        Unit::Millis => duration(Duration::from_millis(int(u64::MAX)?)),
        Unit::Seconds => duration(Duration::from_secs(int(u64::MAX)?)),
        Unit::Hours => duration(Duration::from_secs(int(u64::MAX)?.checked_mul(3600).ok_or_else(overflow)?)),
        // Exact for whole percentages: the division is correctly rounded, so
        // 90 gives the same f64 as the literal 0.90.
        Unit::PercentToRatio => Value::from(int(100)? as f64 / 100.0),
        Unit::Enum(names) => {
            if !names.contains(&text) {
                return Err(format!("expected one of {}", names.join(", ")));
            }
            Value::from(text)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(unit: Unit, text: &str, expected: Value) {
        assert_eq!(convert(unit, text).unwrap(), expected, "{text:?}");
    }

    #[test]
    fn broker_properties_use_rocketmq_names_and_units_and_read_back() {
        let cfg = crate::BrokerConfig::default();
        let props = broker_properties(&cfg);
        let get = |k: &str| props.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str());
        assert_eq!(get("listenPort"), Some("10911"));
        assert_eq!(get("brokerRole"), Some("ASYNC_MASTER"));
        assert_eq!(get("flushIntervalCommitLog"), Some("500"));
        assert_eq!(get("fileReservedTime"), Some("72"));
        assert_eq!(get("diskSpaceCleanForciblyRatio"), Some("85"));
        assert_eq!(get("broker_name"), None, "a mapped key is listed once, under RocketMQ's name");
        assert!(get("max_reconsume_times").is_some(), "FerroMQ-only settings follow under their own path");
        // Every RocketMQ-named line converts back to the value it came from.
        let text: String = props
            .iter()
            .filter(|(k, _)| BROKER.entries.iter().any(|e| e.rocketmq == k))
            .map(|(k, v)| format!("{k}={v}\n"))
            .collect();
        let settings = parse_broker_update(&text).unwrap();
        let root = Value::serialize(&cfg).unwrap();
        for s in &settings {
            let path = s.ferromq.strip_prefix("broker.").unwrap();
            let original = root.find_ref(path).unwrap();
            let same = match (original, &s.value) {
                (Value::String(_, a), Value::String(_, b)) => humantime::parse_duration(a)
                    .ok()
                    .zip(humantime::parse_duration(b).ok())
                    .map_or(a == b, |(x, y)| x == y),
                (a, b) => scalar_text(a) == scalar_text(b),
            };
            assert!(same, "{}: {original:?} != {:?}", s.rocketmq, s.value);
        }
        assert!(settings.len() > 40, "{}", settings.len());
    }

    #[test]
    fn broker_updates_name_the_bad_key() {
        assert!(parse_broker_update("brokerPermission=4\n").is_ok());
        let e = parse_broker_update("brokerPermision=4").unwrap_err();
        assert!(e.contains("brokerPermision"), "{e}");
        let e = parse_broker_update("longPollingEnable=yes").unwrap_err();
        assert!(e.contains("longPollingEnable") && e.contains("true or false"), "{e}");
    }

    #[test]
    fn conversions() {
        check(Unit::Millis, "500", Value::from("500ms"));
        check(Unit::Millis, "60000", Value::from("1m"));
        check(Unit::Seconds, "120", Value::from("2m"));
        check(Unit::Hours, "48", Value::from("2days"));
        check(Unit::PercentToRatio, "90", Value::from(0.90));
        check(Unit::Bool, "TRUE", Value::from(true));
        check(PORT, "65535", Value::from(65535u64));
        check(Unit::Ip, "10.0.0.1", Value::from("10.0.0.1"));
    }

    #[test]
    fn conversion_errors_explain() {
        for (unit, text, reason) in [
            (PORT, "abc", "invalid digit found in string"),
            (PORT, "65536", "must be at most 65535"),
            (PORT, "-1", "invalid digit found in string"),
            (Unit::Bool, "yes", "expected true or false"),
            (PERCENT, "101", "must be at most 100"),
            (FLUSH_DISK_TYPE, "sync_flush", "expected one of ASYNC_FLUSH, SYNC_FLUSH"),
            (Unit::Hours, "18446744073709551615", "too large"),
        ] {
            assert_eq!(convert(unit, text).unwrap_err(), reason, "{text:?}");
        }
    }

    #[test]
    fn every_table_maps_to_a_real_field() {
        let broker = figment::value::Value::serialize(crate::BrokerFile::default()).unwrap();
        let namesrv = figment::value::Value::serialize(crate::NamesrvFile::default()).unwrap();
        let controller = figment::value::Value::serialize(crate::ControllerFile::default()).unwrap();
        for (table, schema) in [(&BROKER, &broker), (&NAMESRV, &namesrv), (&CONTROLLER, &controller)] {
            for entry in table.entries {
                assert!(
                    schema.find_ref(entry.ferromq).is_some(),
                    "{} maps to missing {}",
                    entry.rocketmq,
                    entry.ferromq
                );
                assert!(
                    !table.unsupported.contains(&entry.rocketmq),
                    "{} is both mapped and unsupported",
                    entry.rocketmq
                );
            }
        }
    }
}
