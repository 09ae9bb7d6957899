//! Without a file or environment, loading yields `Default::default()`, and
//! the defaults survive a round trip through their own TOML serialisation.

mod common;

use common::{temp_file, NO_ENV};
use config::{load_broker_with_env, load_namesrv_with_env, BrokerFile, NamesrvFile};

#[test]
fn no_file_no_env_is_default() {
    let namesrv = load_namesrv_with_env(None, NO_ENV).unwrap();
    assert_eq!(namesrv.config, NamesrvFile::default());
    assert!(namesrv.warnings.is_empty());

    let broker = load_broker_with_env(None, NO_ENV).unwrap();
    assert_eq!(broker.config, BrokerFile::default());
    assert!(broker.warnings.is_empty());
}

#[test]
fn empty_file_is_default() {
    let (_dir, path) = temp_file("empty.toml", "");
    assert_eq!(load_broker_with_env(Some(&path), NO_ENV).unwrap().config, BrokerFile::default());
    let (_dir, path) = temp_file("empty.properties", "# nothing\n");
    assert_eq!(load_namesrv_with_env(Some(&path), NO_ENV).unwrap().config, NamesrvFile::default());
}

#[test]
fn serialised_defaults_load_back_unchanged() {
    // Catches lossy serialisation, e.g. sizes printed as "1.1 GB".
    let (_dir, path) = temp_file("broker.toml", &toml::to_string(&BrokerFile::default()).unwrap());
    let loaded = load_broker_with_env(Some(&path), NO_ENV).unwrap();
    assert_eq!(loaded.config, BrokerFile::default());
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);

    let (_dir, path) = temp_file("namesrv.toml", &toml::to_string(&NamesrvFile::default()).unwrap());
    let loaded = load_namesrv_with_env(Some(&path), NO_ENV).unwrap();
    assert_eq!(loaded.config, NamesrvFile::default());
}

#[test]
fn defaults_are_rocketmqs() {
    use std::time::Duration;

    let broker = BrokerFile::default().broker;
    assert_eq!(broker.listen_port, 10911);
    assert_eq!(broker.ha_listen_port, 10912);
    assert_eq!(broker.grpc_server_port, 8081);
    assert_eq!(broker.broker_permission, 6);
    assert_eq!(broker.delay_levels().unwrap().max_level(), 18);
    let store = broker.store;
    assert_eq!(store.mapped_file_size_commit_log.as_u64(), 1 << 30);
    assert_eq!(store.mapped_file_size_consume_queue.as_u64(), 6_000_000);
    assert_eq!(store.max_message_size.as_u64(), 4_194_304);
    assert_eq!(store.file_reserved_time, Duration::from_secs(72 * 3600));
    assert_eq!(store.delete_when_hours().unwrap(), [4]);
    assert!(store.store_path_root_dir.ends_with("store"));

    let namesrv = NamesrvFile::default().namesrv;
    assert_eq!(namesrv.listen_port, 9876);
    assert!(namesrv.kv_config_path.ends_with("namesrv/kvConfig.json"));
    BrokerFile::default().validate().unwrap();
    NamesrvFile::default().validate().unwrap();
}
