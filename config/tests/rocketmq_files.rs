//! RocketMQ properties files (`broker.conf`, `namesrv.properties`) load into
//! the same typed config, with RocketMQ's units converted.

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{fixture, temp_file, NO_ENV};
use config::{
    load_broker_with_env, load_namesrv_with_env, BrokerRole, ConfigWarning, Error, FlushDiskType, Origin, WarningKind,
};

fn warning(path: &Path, key: &str, kind: WarningKind) -> ConfigWarning {
    ConfigWarning { key: key.to_owned(), origin: Origin::File(path.to_owned()), kind }
}

#[test]
fn broker_conf_converts_every_mapped_key() {
    let path = fixture("broker.conf");
    let loaded = load_broker_with_env(Some(&path), NO_ENV).unwrap();
    let broker = &loaded.config.broker;
    assert_eq!(broker.broker_cluster_name, "ClusterB");
    assert_eq!(broker.broker_name, "broker-b");
    assert_eq!(broker.broker_id, 1);
    assert_eq!(broker.broker_role, BrokerRole::Slave);
    assert_eq!(broker.bind_address, IpAddr::V4(Ipv4Addr::LOCALHOST));
    assert_eq!(broker.listen_port, 20911);
    assert_eq!(broker.broker_ip1.as_deref(), Some("10.0.0.1"));
    assert_eq!(broker.broker_ip2.as_deref(), Some("10.0.0.2"));
    assert_eq!(broker.ha_listen_port, 20912);
    assert_eq!(broker.grpc_server_port, 20981);
    // A continuation line, split on ';'.
    assert_eq!(broker.namesrv_addr, ["10.0.0.9:9876", "10.0.0.10:9876"]);
    assert!(!broker.auto_create_topic_enable);
    assert_eq!(broker.default_topic_queue_nums, 4);
    assert!(!broker.auto_create_subscription_group);
    assert_eq!(broker.broker_permission, 4);
    // Milliseconds.
    assert_eq!(broker.register_name_server_period, Duration::from_secs(10));
    assert!(broker.compressed_register);
    assert!(!broker.force_register);
    assert_eq!(broker.message_delay_level, "1s 10s 1m 1d");
    assert!(!broker.long_polling_enable);
    assert_eq!(broker.short_polling_time_mills, Duration::from_secs(2));
    assert_eq!(broker.transaction_time_out, Duration::from_secs(10));
    assert_eq!(broker.transaction_check_max, 5);
    assert_eq!(broker.transaction_check_interval, Duration::from_secs(30));
    assert!(broker.reject_transaction_message);
    assert!(!broker.enable_property_filter);
    assert_eq!(broker.client_channel_max_idle_time, Duration::from_secs(180));
    // Seconds.
    assert_eq!(broker.channel_idle_timeout, Duration::from_secs(240));
    assert_eq!(broker.flush_consumer_offset_interval, Duration::from_secs(7));
    assert_eq!(broker.flush_delay_offset_interval, Duration::from_secs(15));

    let store = &broker.store;
    assert_eq!(store.store_path_root_dir, PathBuf::from("/data/rocketmq/store"));
    assert_eq!(store.mapped_file_size_commit_log.as_u64(), 64 << 20);
    assert_eq!(store.mapped_file_size_consume_queue.as_u64(), 60_000);
    assert_eq!(store.flush_disk_type, FlushDiskType::SyncFlush);
    assert_eq!(store.flush_interval_commit_log, Duration::from_millis(200));
    assert_eq!(store.flush_commit_log_least_pages, 0);
    assert_eq!(store.flush_interval_consume_queue, Duration::from_secs(2));
    assert_eq!(store.sync_flush_timeout, Duration::from_secs(3));
    assert_eq!(store.max_message_size.as_u64(), 1 << 20);
    // Hours.
    assert_eq!(store.file_reserved_time, Duration::from_secs(48 * 3600));
    assert_eq!(store.delete_when_hours().unwrap(), [4, 16]);
    assert_eq!(store.disk_max_used_space_ratio, 80);
    // Percent to ratio.
    assert_eq!(store.disk_space_warning_level_ratio, 0.95);
    assert_eq!(store.disk_space_clean_forcibly_ratio, 0.90);
    assert_eq!(store.max_hash_slot_num, 1000);
    assert_eq!(store.max_index_num, 4000);
    assert!(!store.message_index_enable);
    assert!(store.warm_mapped_file_enable);
    assert!(!store.check_crc_on_recover);

    assert!(broker.trace_topic_enable);
    assert_eq!(broker.msg_trace_topic_name, "TRACE_B");

    let metrics = &loaded.config.telemetry.metrics;
    assert_eq!(metrics.exporter_type, config::MetricsExporterType::Prom);
    assert_eq!(metrics.prom_exporter_host, "127.0.0.1");
    assert_eq!(metrics.prom_exporter_port, 15557);
    assert_eq!(metrics.label, "region:eu,az:eu-1a");
    assert_eq!(metrics.grpc_exporter_target, "http://collector:4317");
    assert_eq!(metrics.grpc_exporter_header, "x-tenant:a");
    assert_eq!(metrics.grpc_exporter_interval, Duration::from_secs(15));
    assert_eq!(metrics.grpc_exporter_timeout, Duration::from_secs(5));
    assert_eq!(metrics.log_exporter_interval, Duration::from_secs(30));

    assert!(loaded.config.broker.acl_enable, "aclEnable = true");
    // storePathCommitLog agrees with storePathRootDir, so only the last
    // three keys of the fixture are reported.
    assert_eq!(
        loaded.warnings,
        [
            warning(&path, "sendMessageThreadPoolNums", WarningKind::NotImplemented),
            warning(&path, "listenPrt", WarningKind::UnknownKey { suggestion: Some("listenPort".into()) }),
        ]
    );
    assert_eq!(
        loaded.warnings[0].to_string(),
        format!(
            "`sendMessageThreadPoolNums` is a RocketMQ setting FerroMQ does not implement; \
             ignored (in {})",
            path.display()
        )
    );
}

#[test]
fn namesrv_properties_converts_every_mapped_key() {
    let path = fixture("namesrv.properties");
    let loaded = load_namesrv_with_env(Some(&path), NO_ENV).unwrap();
    let namesrv = &loaded.config.namesrv;
    assert_eq!(namesrv.listen_port, 19876);
    assert_eq!(namesrv.bind_address, IpAddr::V4(Ipv4Addr::LOCALHOST));
    // \u0043 is 'C'.
    assert_eq!(namesrv.kv_config_path, PathBuf::from("/data/rocketmq/namesrv/kvConfig.json"));
    assert_eq!(namesrv.scan_not_active_broker_interval, Duration::from_secs(5));
    assert_eq!(namesrv.channel_idle_timeout, Duration::from_secs(180));
    assert!(namesrv.order_message_enable);
    assert_eq!(loaded.warnings, [warning(&path, "clusterTest", WarningKind::NotImplemented)]);
}

#[test]
fn controller_properties_use_rocketmqs_keys() {
    let (_dir, path) = temp_file(
        "controller.properties",
        "controllerDLegerGroup=group1\ncontrollerDLegerPeers=n0-127.0.0.1:9878;n1-127.0.0.1:9868\n\
         controllerDLegerSelfId=n1\ncontrollerStorePath=/data/ctl\nscanNotActiveBrokerInterval=2000\n\
         enableElectUncleanMaster=true\nnotifyBrokerRoleChanged=false\nelectMasterMaxRetryCount=4\n\
         controllerType=DLedger\n",
    );
    let loaded = config::load_controller_with_env(Some(&path), NO_ENV).unwrap();
    let c = &loaded.config.controller;
    assert_eq!(c.controller_dleger_group, "group1");
    assert_eq!(c.peers().unwrap().len(), 2);
    assert_eq!(c.self_id().unwrap(), 1);
    assert_eq!(c.controller_store_path, PathBuf::from("/data/ctl"));
    assert_eq!(c.scan_not_active_broker_interval, Duration::from_secs(2));
    assert!(c.enable_elect_unclean_master && !c.notify_broker_role_changed);
    assert_eq!(c.elect_master_max_retry_count, 4);
    assert_eq!(loaded.warnings, [warning(&path, "controllerType", WarningKind::NotImplemented)]);

    // The same keys in a name server's file, with the controller embedded.
    let (_dir, path) = temp_file(
        "namesrv.properties",
        "enableControllerInNamesrv=true\ncontrollerDLegerPeers=n0-127.0.0.1:9878\ncontrollerDLegerSelfId=n0\n",
    );
    let loaded = load_namesrv_with_env(Some(&path), NO_ENV).unwrap();
    assert!(loaded.config.namesrv.enable_controller_in_namesrv);
    assert_eq!(loaded.config.controller.peers().unwrap()[&0], "127.0.0.1:9878");
    // An embedded controller is validated; one that is off is not.
    let (_dir, path) = temp_file("namesrv.properties", "enableControllerInNamesrv=true\ncontrollerDLegerSelfId=n4\n");
    assert!(load_namesrv_with_env(Some(&path), NO_ENV).unwrap_err().to_string().contains("controller_dleger_self_id"));
}

#[test]
fn a_commit_log_outside_the_store_root_is_warned_about() {
    let (_dir, path) =
        temp_file("broker.conf", "storePathCommitLog=/mnt/fast/commitlog\nstorePathRootDir=/data/store\n");
    let loaded = load_broker_with_env(Some(&path), NO_ENV).unwrap();
    assert_eq!(
        loaded.warnings,
        [warning(
            &path,
            "storePathCommitLog",
            WarningKind::CommitLogPathIgnored { commit_log_dir: "/data/store/commitlog".into() }
        )]
    );
    assert!(loaded.warnings[0].to_string().contains("FerroMQ keeps the commit log in /data/store/commitlog"));
}

#[test]
fn bad_values_name_the_rocketmq_key_and_the_file() {
    for (line, expected) in [
        ("listenPort=abc", "listenPort: invalid value \"abc\" in {}: invalid digit found in string"),
        ("listenPort=70000", "listenPort: invalid value \"70000\" in {}: must be at most 65535"),
        ("flushDiskType=SYNC", "flushDiskType: invalid value \"SYNC\" in {}: expected one of ASYNC_FLUSH, SYNC_FLUSH"),
        ("autoCreateTopicEnable=yes", "autoCreateTopicEnable: invalid value \"yes\" in {}: expected true or false"),
        ("bindAddress=localhost", "bindAddress: invalid value \"localhost\" in {}: invalid IP address syntax"),
    ] {
        let (_dir, path) = temp_file("broker.conf", line);
        let err = load_broker_with_env(Some(&path), NO_ENV).unwrap_err();
        assert!(matches!(err, Error::Property { .. }), "{err:?}");
        assert_eq!(err.to_string(), expected.replace("{}", &path.display().to_string()));
    }
}

#[test]
fn converted_values_are_still_validated() {
    let (_dir, path) = temp_file("broker.conf", "brokerRole=SLAVE\nbrokerId=0\n");
    let err = load_broker_with_env(Some(&path), NO_ENV).unwrap_err();
    assert_eq!(
        err.to_string(),
        "broker.broker_id: conflicts with `broker_role`: a slave must have a broker_id above 0"
    );
}

#[test]
fn malformed_escape_is_a_syntax_error_with_its_line() {
    let (_dir, path) = temp_file("namesrv.properties", "listenPort=1\nkvConfigPath=\\u00zz\n");
    let err = load_namesrv_with_env(Some(&path), NO_ENV).unwrap_err();
    assert_eq!(err.to_string(), format!("{}:2: malformed \\uXXXX escape", path.display()));
}

#[test]
fn latin1_files_are_read_as_java_reads_them() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broker.conf");
    // "brokerName=café" in ISO-8859-1, as Properties.load(InputStream) expects.
    std::fs::write(&path, b"brokerName=caf\xe9\n").unwrap();
    let loaded = load_broker_with_env(Some(&path), NO_ENV).unwrap();
    assert_eq!(loaded.config.broker.broker_name, "café");
}

#[test]
fn switches_ferromq_lacks_are_refused_when_turned_on() {
    let key = "enableDLegerCommitLog";
    let (_dir, path) = temp_file("broker.conf", &format!("brokerName=b\n{key}=true\n"));
    let err = load_broker_with_env(Some(&path), NO_ENV).unwrap_err().to_string();
    assert!(err.contains(key) && err.contains("refused") && err.contains("DLedger"), "{err}");
    // Off, it changes nothing: only the not-implemented warning.
    let (_dir, path) = temp_file("broker.conf", &format!("{key}=false\n"));
    let loaded = load_broker_with_env(Some(&path), NO_ENV).unwrap();
    assert_eq!(loaded.warnings, [warning(&path, key, WarningKind::NotImplemented)]);
}

#[test]
fn use_tls_secures_the_connections_a_server_opens() {
    let client_keys = "useTLS=true\ntls.client.trustCertPath=/tls/ca.pem\ntls.client.certPath=/tls/c.pem\ntls.client.keyPath=/tls/c-key.pem\n";
    let expected = config::ClientTlsConfig {
        enable: Some(true),
        trust_cert_path: Some("/tls/ca.pem".into()),
        cert_path: Some("/tls/c.pem".into()),
        key_path: Some("/tls/c-key.pem".into()),
    };
    let (_dir, path) = temp_file("broker.conf", client_keys);
    let loaded = load_broker_with_env(Some(&path), NO_ENV).unwrap();
    assert_eq!(loaded.config.broker.outgoing_tls, expected);
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    // A name server's own connections are its embedded controller's.
    let (_dir, path) = temp_file("namesrv.properties", client_keys);
    let loaded = load_namesrv_with_env(Some(&path), NO_ENV).unwrap();
    assert_eq!(loaded.config.controller.outgoing_tls, expected);
    // A controller has a port of its own as well.
    let (_dir, path) = temp_file(
        "controller.properties",
        &format!("{client_keys}tls.server.mode=enforcing\ntls.server.certPath=/tls/s.pem\ntls.server.keyPath=/tls/s-key.pem\n"),
    );
    let loaded = config::load_controller_with_env(Some(&path), NO_ENV).unwrap();
    assert_eq!(loaded.config.controller.outgoing_tls, expected);
    assert_eq!(loaded.config.controller.tls.mode, config::TlsMode::Enforcing);
    // Unset, it follows the server's own port, as RocketMQ's brokers do.
    let enforcing = "tls.server.mode=enforcing\ntls.server.certPath=/s.pem\ntls.server.keyPath=/k.pem\n";
    for (extra, on) in [("", true), ("useTLS=false\n", false)] {
        let (_dir, path) = temp_file("broker.conf", &format!("{enforcing}{extra}"));
        let broker = load_broker_with_env(Some(&path), NO_ENV).unwrap().config.broker;
        assert_eq!(broker.outgoing_tls.enabled(Some(&broker.tls)), on, "{extra:?}");
    }
    let (_dir, path) = temp_file("broker.conf", "brokerName=b\n");
    let broker = load_broker_with_env(Some(&path), NO_ENV).unwrap().config.broker;
    assert!(!broker.outgoing_tls.enabled(Some(&broker.tls)));
    // A certificate without its key is refused.
    let (_dir, path) = temp_file("broker.conf", "useTLS=true\ntls.client.certPath=/tls/c.pem\n");
    let err = load_broker_with_env(Some(&path), NO_ENV).unwrap_err().to_string();
    assert!(err.contains("broker.outgoing_tls.cert_path"), "{err}");
}

#[test]
fn grpc_server_port_minus_one_turns_the_endpoint_off() {
    let (_dir, path) = temp_file("broker.conf", "grpcServerPort=-1\n");
    let loaded = config::load_broker_with_env(Some(&path), NO_ENV).unwrap();
    assert_eq!(loaded.config.broker.grpc_server_port, -1);
    let (_dir, path) = temp_file("broker.conf", "grpcServerPort=-2\n");
    let err = config::load_broker_with_env(Some(&path), NO_ENV).unwrap_err().to_string();
    assert!(err.contains("grpcServerPort"), "{err}");
}
