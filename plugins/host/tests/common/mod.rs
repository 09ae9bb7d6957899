//! Shared helpers for the plugin-host integration tests: the WAT plugins of
//! `plugin_host::testing` and registry builders.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use plugin_api::{MessageView, PluginKind, Runtime};
use plugin_host::{BreakerConfig, PluginConfig, PluginRegistry, PluginsConfig};

#[allow(unused_imports)] // not every test binary uses the WAT guests
pub use plugin_host::testing::*;

pub fn fixtures_dir() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

pub fn write(dir: &Path, file: &str, bytes: impl AsRef<[u8]>) -> PathBuf {
    let p = dir.join(file);
    std::fs::write(&p, bytes).expect("write fixture");
    p
}

pub fn decl(name: &str, kind: PluginKind, runtime: Runtime, path: &Path) -> PluginConfig {
    let mut d = PluginConfig::new(name, kind, runtime, path);
    d.breaker =
        BreakerConfig { failures: 3, cooldown: Duration::from_millis(200), max_cooldown: Duration::from_secs(2) };
    d
}

pub fn registry(plugins: Vec<PluginConfig>) -> PluginRegistry {
    PluginRegistry::new(PluginsConfig { plugins, watch: false, ..Default::default() }).expect("registry")
}

/// [`registry`] whose circuit breakers read `clock`.
pub fn registry_on(clock: &MockClock, plugins: Vec<PluginConfig>) -> PluginRegistry {
    registry_with_clock(PluginsConfig { plugins, watch: false, ..Default::default() }, clock).expect("registry")
}

pub fn msg<'a>(tags: &'a str) -> MessageView<'a> {
    MessageView { topic: "T", tags, tags_code: plugin_api::builtin::tags_code(tags), ..Default::default() }
}
