//! `tests/fixtures/full*.toml` set every field to a non-default value; the
//! loaded structs must match field by field.

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use bytesize::ByteSize;
use common::{fixture, leaves, NO_ENV};
use config::{
    load_broker_with_env, load_namesrv_with_env, BrokerConfig, BrokerFile, BrokerRole, ControllerConfig, FlushDiskType,
    LogFormat, MetricsConfig, MetricsExporterType, NamesrvConfig, NamesrvFile, OtlpProtocol, PluginBinding,
    PluginConfig, PluginsConfig, StoreConfig, TelemetryConfig, TraceExporter, TracesConfig,
};
use plugin_api::{PluginKind, Runtime};
use serde::Serialize;

/// Compares every leaf, and checks that the fixture really moved each one
/// away from its default (otherwise a lost `#[serde(default)]` or rename
/// could go unnoticed).
fn check_field_by_field<T: Serialize + Default>(actual: &T, expected: &T) {
    let actual = leaves(actual);
    let expected = leaves(expected);
    let defaults = leaves(&T::default());
    assert_eq!(actual.keys().collect::<Vec<_>>(), expected.keys().collect::<Vec<_>>());
    for (key, want) in &expected {
        assert_eq!(actual.get(key), Some(want), "field {key}");
        assert_ne!(defaults.get(key), Some(want), "fixture leaves {key} at its default");
    }
}

/// The `[telemetry.metrics]` and `[telemetry.traces]` both full fixtures set (the
/// log settings differ per file and are set by each test).
fn full_telemetry() -> TelemetryConfig {
    TelemetryConfig {
        log_format: LogFormat::Human,
        log_level: String::new(),
        metrics: MetricsConfig {
            exporter_type: MetricsExporterType::Prom,
            prom_exporter_host: "127.0.0.1".into(),
            prom_exporter_port: 15557,
            label: "region:eu".into(),
            grpc_exporter_target: "http://collector:4317".into(),
            grpc_exporter_header: "x-tenant:a".into(),
            grpc_exporter_interval: Duration::from_secs(15),
            grpc_exporter_timeout: Duration::from_secs(5),
            log_exporter_interval: Duration::from_secs(30),
        },
        traces: TracesConfig {
            exporter: TraceExporter::Otlp,
            endpoint: "http://collector:4318/v1/traces".into(),
            protocol: OtlpProtocol::HttpProtobuf,
            service_name: "broker-b".into(),
            sample_ratio: 0.25,
        },
    }
}

#[test]
fn full_broker_toml() {
    let loaded = load_broker_with_env(Some(&fixture("full.toml")), NO_ENV).unwrap();
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    // No `..Default::default()`: a new field must be added here and to the fixture.
    let expected = BrokerFile {
        broker: BrokerConfig {
            broker_cluster_name: "ClusterB".into(),
            broker_name: "broker-b".into(),
            broker_id: 1,
            broker_role: BrokerRole::Slave,
            bind_address: IpAddr::V4(Ipv4Addr::LOCALHOST),
            listen_port: 20911,
            broker_ip1: Some("10.0.0.1".into()),
            broker_ip2: Some("10.0.0.2".into()),
            ha_listen_port: 20912,
            grpc_server_port: 20981,
            ha_master_address: Some("10.0.0.1:20912".into()),
            slave_read_enable: true,
            access_message_in_memory_max_ratio: 30,
            ha_send_heartbeat_interval: Duration::from_secs(3),
            ha_housekeeping_interval: Duration::from_secs(25),
            ha_transfer_batch_size: ByteSize::kib(64),
            ha_max_gap_not_in_sync: ByteSize::mib(128),
            enable_controller_mode: true,
            controller_addr: "10.0.0.7:9878;10.0.0.8:9878".into(),
            broker_heartbeat_interval: Duration::from_secs(2),
            controller_heart_beat_timeout: Duration::from_secs(6),
            sync_broker_metadata_period: Duration::from_secs(3),
            check_sync_state_set_period: Duration::from_secs(4),
            ha_max_time_slave_not_catchup: Duration::from_secs(9),
            broker_election_priority: 3,
            all_ack_in_sync_state_set: true,
            min_in_sync_replicas: 2,
            in_sync_replicas: 3,
            sync_from_last_file: true,
            namesrv_addr: vec!["10.0.0.9:9876".into(), "10.0.0.10:9876".into()],
            acl_enable: true,
            acl_file: Some("/etc/ferromq/plain_acl.yml".into()),
            auto_create_topic_enable: false,
            default_topic_queue_nums: 4,
            auto_create_subscription_group: false,
            broker_permission: 4,
            register_name_server_period: Duration::from_secs(10),
            compressed_register: true,
            force_register: false,
            message_delay_level: "1s 10s 1m 1d".into(),
            long_polling_enable: false,
            lite_pull_message_enable: false,
            trace_topic_enable: true,
            msg_trace_topic_name: "TRACE_B".into(),
            region_id: "RegionB".into(),
            trace_on: false,
            short_polling_time_mills: Duration::from_secs(2),
            transaction_time_out: Duration::from_secs(10),
            transaction_check_max: 5,
            transaction_check_interval: Duration::from_secs(30),
            reject_transaction_message: true,
            enable_property_filter: false,
            client_channel_max_idle_time: Duration::from_secs(180),
            channel_idle_timeout: Duration::from_secs(240),
            flush_consumer_offset_interval: Duration::from_secs(7),
            flush_delay_offset_interval: Duration::from_secs(15),
            max_reconsume_times: 3,
            rebalance_lock_max_live_time: Duration::from_secs(7),
            timer_max_delay: Duration::from_secs(8 * 86_400),
            store: StoreConfig {
                store_path_root_dir: "/data/ferromq/store".into(),
                mapped_file_size_commit_log: ByteSize::mib(64),
                mapped_file_size_consume_queue: ByteSize::b(60_000),
                flush_disk_type: FlushDiskType::SyncFlush,
                flush_interval_commit_log: Duration::from_millis(200),
                flush_commit_log_least_pages: 0,
                flush_interval_consume_queue: Duration::from_secs(2),
                sync_flush_timeout: Duration::from_secs(3),
                max_message_size: ByteSize::mib(1),
                file_reserved_time: Duration::from_secs(48 * 3600),
                delete_when: "04;16".into(),
                disk_max_used_space_ratio: 80,
                disk_space_warning_level_ratio: 0.95,
                disk_space_clean_forcibly_ratio: 0.9,
                max_hash_slot_num: 1000,
                max_index_num: 4000,
                message_index_enable: false,
                warm_mapped_file_enable: true,
                check_crc_on_recover: false,
            },
            tls: config::ServerTlsConfig {
                mode: config::TlsMode::Enforcing,
                cert_path: Some("/etc/ferromq/tls/broker.pem".into()),
                key_path: Some("/etc/ferromq/tls/broker-key.pem".into()),
                trust_cert_path: Some("/etc/ferromq/tls/ca.pem".into()),
                need_client_auth: config::TlsClientAuth::Require,
            },
            outgoing_tls: config::ClientTlsConfig {
                enable: Some(true),
                trust_cert_path: Some("/etc/ferromq/tls/ca.pem".into()),
                cert_path: Some("/etc/ferromq/tls/broker-client.pem".into()),
                key_path: Some("/etc/ferromq/tls/broker-client-key.pem".into()),
            },
            plugin_bindings: vec![
                PluginBinding { plugin: "vip".into(), topic: "Orders".into(), group: Some("billing".into()) },
                PluginBinding { plugin: "tx".into(), topic: "*".into(), group: None },
            ],
        },
        plugins: PluginsConfig {
            allow_native: true,
            cache_dir: Some("/var/cache/ferromq/plugins".into()),
            epoch_tick: Duration::from_millis(2),
            wasm_max_instances: 8,
            wasm_max_memory: ByteSize::mib(64),
            wasm_fuel: true,
            watch: false,
            reload_debounce: Duration::from_millis(300),
            plugins: vec![
                PluginConfig {
                    config: [("level".to_owned(), "gold".to_owned())].into(),
                    limits: config::LimitsConfig {
                        deadline: Some(Duration::from_millis(3)),
                        max_batch: Some(64),
                        ..Default::default()
                    },
                    failure_policy: Some(plugin_api::FailurePolicy::Deliver),
                    ..PluginConfig::new("vip", PluginKind::Filter, Runtime::Lua, "/etc/ferromq/vip.lua")
                },
                PluginConfig::new("tx", PluginKind::TxnCheck, Runtime::Wasm, "/etc/ferromq/tx.wasm"),
            ],
        },
        telemetry: TelemetryConfig {
            log_format: LogFormat::Json,
            log_level: "debug,store=trace".into(),
            ..full_telemetry()
        },
    };
    check_field_by_field(&loaded.config, &expected);
    assert_eq!(loaded.config, expected);
}

#[test]
fn full_namesrv_toml() {
    let loaded = load_namesrv_with_env(Some(&fixture("full-namesrv.toml")), NO_ENV).unwrap();
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let expected = NamesrvFile {
        namesrv: NamesrvConfig {
            bind_address: IpAddr::V4(Ipv4Addr::LOCALHOST),
            listen_port: 19876,
            kv_config_path: "/data/ferromq/namesrv/kvConfig.json".into(),
            scan_not_active_broker_interval: Duration::from_secs(5),
            broker_channel_expired_time: Duration::from_secs(90),
            http_listen_port: Some(18080),
            advertised_addr: Some("10.1.2.3:19876".into()),
            channel_idle_timeout: Duration::from_secs(180),
            order_message_enable: true,
            enable_controller_in_namesrv: true,
            tls: config::ServerTlsConfig {
                mode: config::TlsMode::Permissive,
                cert_path: Some("/etc/ferromq/tls/namesrv.pem".into()),
                key_path: Some("/etc/ferromq/tls/namesrv-key.pem".into()),
                trust_cert_path: Some("/etc/ferromq/tls/ca.pem".into()),
                need_client_auth: config::TlsClientAuth::Optional,
            },
        },
        controller: ControllerConfig {
            controller_dleger_group: "GroupB".into(),
            controller_dleger_peers: "n0-10.0.0.1:9878;n1-10.0.0.2:9878;n2-10.0.0.3:9878".into(),
            controller_dleger_self_id: "n1".into(),
            controller_store_path: "/data/ferromq/controller".into(),
            scan_not_active_broker_interval: Duration::from_secs(3),
            enable_elect_unclean_master: true,
            notify_broker_role_changed: false,
            elect_master_max_retry_count: 5,
            raft_heartbeat_interval: Duration::from_millis(100),
            raft_election_timeout: Duration::from_millis(700),
            tls: config::ServerTlsConfig {
                mode: config::TlsMode::Enforcing,
                cert_path: Some("/etc/ferromq/tls/controller-server.pem".into()),
                key_path: Some("/etc/ferromq/tls/controller-server-key.pem".into()),
                trust_cert_path: Some("/etc/ferromq/tls/ca.pem".into()),
                need_client_auth: config::TlsClientAuth::Require,
            },
            outgoing_tls: config::ClientTlsConfig {
                enable: Some(true),
                trust_cert_path: Some("/etc/ferromq/tls/ca.pem".into()),
                cert_path: Some("/etc/ferromq/tls/controller.pem".into()),
                key_path: Some("/etc/ferromq/tls/controller-key.pem".into()),
            },
        },
        telemetry: TelemetryConfig { log_format: LogFormat::Json, log_level: "warn".into(), ..full_telemetry() },
    };
    check_field_by_field(&loaded.config, &expected);
    assert_eq!(loaded.config, expected);
}
