//! The sample files shipped in `config/` load without errors or warnings.

mod common;

use common::{sample, NO_ENV};
use config::{load_broker_with_env, load_namesrv_with_env, BrokerFile, NamesrvFile};

#[test]
fn namesrv_samples() {
    for name in ["namesrv.toml", "namesrv.properties"] {
        let loaded = load_namesrv_with_env(Some(&sample(name)), NO_ENV).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(loaded.warnings.is_empty(), "{name}: {:?}", loaded.warnings);
        // The samples document the defaults.
        assert_eq!(loaded.config, NamesrvFile::default(), "{name}");
    }
}

#[test]
fn broker_samples() {
    for name in ["broker.toml", "broker.conf"] {
        let loaded = load_broker_with_env(Some(&sample(name)), NO_ENV).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(loaded.warnings.is_empty(), "{name}: {:?}", loaded.warnings);
        assert_eq!(loaded.config.broker.namesrv_addr, ["127.0.0.1:9876"], "{name}");
    }
    // broker.toml shows the defaults, apart from the name-server address.
    let loaded = load_broker_with_env(Some(&sample("broker.toml")), NO_ENV).unwrap();
    let mut expected = BrokerFile::default();
    expected.broker.namesrv_addr = vec!["127.0.0.1:9876".into()];
    assert_eq!(loaded.config, expected);
}

#[test]
fn broker_plugins_sample_declares_and_binds_the_examples() {
    let loaded = load_broker_with_env(Some(&sample("broker-plugins.toml")), NO_ENV).unwrap();
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let names: Vec<&str> = loaded.config.plugins.plugins.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["price-range", "vip-filter", "order-selector", "paid-check"]);
    assert_eq!(loaded.config.broker.plugin_bindings.len(), 3);
    // Every artifact exists, relative to the repository root the sample is run from.
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for p in &loaded.config.plugins.plugins {
        assert!(root.join(&p.path).is_file(), "{} missing", p.path.display());
    }
}
