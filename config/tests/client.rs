//! The client configuration: defaults, the shipped sample, the environment.

use std::time::Duration;

use config::{load_client_with_env, ClientConfig};

#[test]
fn defaults_and_sample_file() {
    let loaded = load_client_with_env(None, Vec::<(String, String)>::new()).unwrap();
    assert_eq!(loaded.config.client, ClientConfig::default());
    let sample = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("client.toml");
    let loaded = load_client_with_env(Some(&sample), Vec::<(String, String)>::new()).unwrap();
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
}

#[test]
fn namesrv_addr_from_env_and_ferromq_overrides() {
    let env = [
        ("NAMESRV_ADDR", "10.0.0.1:9876;10.0.0.2:9876"),
        ("FERROMQ_CLIENT_POLL_NAME_SERVER_INTERVAL", "5s"),
        ("FERROMQ_CLIENT_NAMESRV_HTTP_URL", "http://127.0.0.1:8080/rocketmq/nsaddr"),
    ];
    let c = load_client_with_env(None, env).unwrap().config.client;
    assert_eq!(c.namesrv_addr, ["10.0.0.1:9876", "10.0.0.2:9876"]);
    assert_eq!(c.poll_name_server_interval, Duration::from_secs(5));
    assert_eq!(c.namesrv_http_url.as_deref(), Some("http://127.0.0.1:8080/rocketmq/nsaddr"));
}

#[test]
fn rocketmq_client_properties_and_bad_values() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("client.properties");
    std::fs::write(&path, "rocketmq.namesrv.addr=127.0.0.1:9876\nheartbeatBrokerInterval=15000\n").unwrap();
    let c = load_client_with_env(Some(&path), Vec::<(String, String)>::new()).unwrap().config.client;
    assert_eq!(c.namesrv_addr, ["127.0.0.1:9876"]);
    assert_eq!(c.heartbeat_broker_interval, Duration::from_secs(15));
    let err = load_client_with_env(None, [("FERROMQ_CLIENT_NAMESRV_ADDR", "nonsense")]).unwrap_err().to_string();
    assert!(err.contains("namesrv_addr"), "{err}");
    std::fs::write(&path, "unitName=az1\n").unwrap();
    let c = load_client_with_env(Some(&path), Vec::<(String, String)>::new()).unwrap().config.client;
    assert_eq!(c.unit_name.as_deref(), Some("az1"));
    let err = load_client_with_env(None, [("FERROMQ_CLIENT_UNIT_NAME", "a@b")]).unwrap_err().to_string();
    assert!(err.contains("unit_name"), "{err}");
}
