//! The environment layer: `FERROMQ_*` variables over the file, RocketMQ's
//! `NAMESRV_ADDR` between the two. The environment is passed in, never set on
//! the process, so these tests can run in parallel.

mod common;

use std::time::Duration;

use common::{fixture, temp_file};
use config::{load_broker_with_env, load_namesrv_with_env, FlushDiskType, LogFormat, Origin, WarningKind};

#[test]
fn ferromq_variables_override_defaults_and_file() {
    let (_dir, path) = temp_file("broker.toml", "[broker]\nlisten_port = 1234\nbroker_name = \"from-file\"\n");
    let env = [
        ("FERROMQ_BROKER_LISTEN_PORT", "0"),
        ("FERROMQ_BROKER_BROKER_NAME", "123"),
        ("FERROMQ_BROKER_AUTO_CREATE_TOPIC_ENABLE", "false"),
        ("FERROMQ_BROKER_STORE__FLUSH_DISK_TYPE", "SYNC_FLUSH"),
        ("FERROMQ_BROKER_STORE__MAX_MESSAGE_SIZE", "8MiB"),
        ("FERROMQ_BROKER_STORE__FLUSH_INTERVAL_COMMIT_LOG", "250ms"),
        ("FERROMQ_BROKER_BROKER_IP1", "203.0.113.7"),
        ("FERROMQ_BROKER_TELEMETRY__LOG_FORMAT", "json"),
        ("FERROMQ_NAMESRV_LISTEN_PORT", "1"), // the name server's, not ours
        ("PATH", "/usr/bin"),
    ];
    let loaded = load_broker_with_env(Some(&path), env).unwrap();
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let broker = &loaded.config.broker;
    assert_eq!(broker.listen_port, 0);
    // Numeric-looking values stay strings where the field is a string.
    assert_eq!(broker.broker_name, "123");
    assert!(!broker.auto_create_topic_enable);
    assert_eq!(broker.broker_ip1.as_deref(), Some("203.0.113.7"));
    assert_eq!(broker.store.flush_disk_type, FlushDiskType::SyncFlush);
    assert_eq!(broker.store.max_message_size.as_u64(), 8 << 20);
    assert_eq!(broker.store.flush_interval_commit_log, Duration::from_millis(250));
    assert_eq!(loaded.config.telemetry.log_format, LogFormat::Json);
}

#[test]
fn namesrv_variables() {
    let env = [
        ("FERROMQ_NAMESRV_LISTEN_PORT", "0"),
        ("FERROMQ_NAMESRV_HTTP_LISTEN_PORT", "8080"),
        ("FERROMQ_NAMESRV_ADVERTISED_ADDR", "10.0.0.5:9876"),
        ("FERROMQ_NAMESRV_SCAN_NOT_ACTIVE_BROKER_INTERVAL", "3s"),
        ("FERROMQ_NAMESRV_TELEMETRY__LOG_LEVEL", "debug"),
        ("FERROMQ_NAMESRV_ENABLE_CONTROLLER_IN_NAMESRV", "true"),
        // The embedded controller's section is a top-level one, as telemetry is.
        ("FERROMQ_NAMESRV_CONTROLLER__CONTROLLER_DLEGER_PEERS", "n0-127.0.0.1:9878;n1-127.0.0.1:9879"),
        ("FERROMQ_NAMESRV_CONTROLLER__CONTROLLER_DLEGER_SELF_ID", "n1"),
        ("FERROMQ_BROKER_LISTEN_PORT", "1"),
        // RocketMQ's variable is for brokers and clients, not the name server.
        ("NAMESRV_ADDR", "not-an-address"),
    ];
    let loaded = load_namesrv_with_env(None, env).unwrap();
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let namesrv = &loaded.config.namesrv;
    assert_eq!(namesrv.listen_port, 0);
    assert_eq!(namesrv.http_listen_port, Some(8080));
    assert_eq!(namesrv.advertised_addr.as_deref(), Some("10.0.0.5:9876"));
    assert_eq!(namesrv.scan_not_active_broker_interval, Duration::from_secs(3));
    assert_eq!(loaded.config.telemetry.log_level, "debug");
    assert!(namesrv.enable_controller_in_namesrv);
    assert_eq!(loaded.config.controller.self_id().unwrap(), 1);
}

#[test]
fn namesrv_addr_ranks_above_the_file_and_below_ferromq_variables() {
    let (_dir, path) = temp_file("broker.toml", "[broker]\nnamesrv_addr = [\"file:9876\"]\n");
    let addrs = |env: &[(&str, &str)]| {
        load_broker_with_env(Some(&path), env.iter().copied()).unwrap().config.broker.namesrv_addr
    };
    assert_eq!(addrs(&[]), ["file:9876"]);
    assert_eq!(addrs(&[("NAMESRV_ADDR", "a:9876; b:9876;")]), ["a:9876", "b:9876"]);
    assert_eq!(
        addrs(&[("NAMESRV_ADDR", "a:9876"), ("FERROMQ_BROKER_NAMESRV_ADDR", "c:9876;d:9876")]),
        ["c:9876", "d:9876"]
    );
}

#[test]
fn namesrv_addr_overrides_a_rocketmq_file_too() {
    let loaded = load_broker_with_env(Some(&fixture("broker.conf")), [("NAMESRV_ADDR", "ns:9876")]).unwrap();
    assert_eq!(loaded.config.broker.namesrv_addr, ["ns:9876"]);
}

#[test]
fn unknown_variables_are_warned_about_with_the_variable_to_use() {
    let env = [("FERROMQ_BROKER_LISTEN_PROT", "1"), ("FERROMQ_BROKER_FLUSH_DISK_TYPE", "SYNC_FLUSH")];
    let loaded = load_broker_with_env(None, env).unwrap();
    let found: Vec<_> = loaded.warnings.iter().map(|w| (w.key.as_str(), &w.origin, &w.kind)).collect();
    let env_origin = |var: &str| Origin::Env(var.to_owned());
    let suggest = |s: &str| WarningKind::UnknownKey { suggestion: Some(s.to_owned()) };
    assert_eq!(
        found,
        [
            (
                "broker.flush_disk_type",
                &env_origin("FERROMQ_BROKER_FLUSH_DISK_TYPE"),
                &suggest("FERROMQ_BROKER_STORE__FLUSH_DISK_TYPE")
            ),
            ("broker.listen_prot", &env_origin("FERROMQ_BROKER_LISTEN_PROT"), &suggest("FERROMQ_BROKER_LISTEN_PORT")),
        ]
    );
    assert_eq!(
        loaded.warnings[1].to_string(),
        "unknown key `broker.listen_prot` in environment variable FERROMQ_BROKER_LISTEN_PROT; \
         ignored; did you mean `FERROMQ_BROKER_LISTEN_PORT`?"
    );
}

#[cfg(unix)]
#[test]
fn non_unicode_values_of_our_variables_are_errors() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;

    let bad = OsStr::from_bytes(b"\xff");
    let env = [(OsStr::new("FERROMQ_BROKER_BROKER_NAME"), bad)];
    let err = load_broker_with_env(None, env).unwrap_err();
    assert_eq!(err.to_string(), "environment variable FERROMQ_BROKER_BROKER_NAME is not valid unicode");
    // Someone else's variable is none of our business.
    let env = [(OsStr::new("SOMETHING_ELSE"), bad)];
    load_broker_with_env(None, env).unwrap();
}
