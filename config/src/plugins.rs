//! The `[plugins]` section of a broker or client configuration: engine-wide settings
//! and the plugin declarations, read by `plugin-host`'s registry.
//!
//! ```toml
//! [plugins]
//! allow_native = false          # native libraries run unsandboxed: opt in explicitly
//! cache_dir = "/var/lib/ferromq/plugin-cache"   # precompiled WASM (.cwasm) cache
//! watch = true                  # hot reload Lua and WASM plugins when their file changes
//!
//! [[plugins.plugin]]
//! name = "vip-filter"
//! kind = "filter"               # filter | queue_selector | allocation | txn_check
//! runtime = "wasm"              # wasm | lua | native
//! path = "plugins/examples/wasm/price_range_filter.wasm"
//! failure_policy = "pause"      # per kind, see plugin_api::FailurePolicy
//! config = { property = "price", min = "100", max = "500" }
//! limits = { deadline = "5ms", memory = "16MiB", max_batch = 1024 }
//! breaker = { failures = 5, cooldown = "1s" }
//! ```
//!
//! These types live here rather than in `plugin-host` for the same reason
//! [`StoreConfig`](crate::StoreConfig) does not live in `store`: crates that
//! only read configuration (the store among them) must not build the plugin
//! engine (file watching, hashing, the call clock) to get the file's types. Nor
//! do they belong in `plugin-api`: that crate is the contract with plugin
//! authors, and the host's engine settings (WASM pool size, cache directory,
//! hot reload) are none of a plugin's business; putting them there would make
//! every new setting a change to the stable boundary. `plugin-api` supplies
//! only the vocabulary of a declaration (kind, runtime, failure policy,
//! default limits).
//!
//! Validation checks what can be checked without loading anything; the
//! registry (`plugin_host::PluginRegistry`) runs it again before loading, and
//! reports a [`PluginsError`] as its own error.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use bytesize::ByteSize;
use plugin_api::{FailurePolicy, Limits, PluginKind, Runtime};
use serde::{Deserialize, Serialize};

use crate::error::PluginsError;
use crate::serde_util::byte_size;

/// Engine-wide plugin settings plus the plugin declarations.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PluginsConfig {
    /// Whether native (shared library) plugins may be loaded. They run unsandboxed in the
    /// process, so this is off by default.
    pub allow_native: bool,
    /// Where precompiled WASM modules (and copies of native libraries) are kept. `None`:
    /// compile in memory at every load.
    pub cache_dir: Option<PathBuf>,
    /// Period of the WASM epoch ticker: the granularity of WASM deadlines.
    #[serde(with = "humantime_serde")]
    pub epoch_tick: Duration,
    /// Maximum number of live WASM instances (pooling allocator slots) in the process.
    pub wasm_max_instances: u32,
    /// Largest linear memory any WASM instance may have (per-plugin limits are lower).
    #[serde(serialize_with = "byte_size::serialize")]
    pub wasm_max_memory: ByteSize,
    /// Meter WASM with fuel so `limits.instructions` applies to WASM plugins too (costs
    /// some speed on branchy code; epoch deadlines are always on).
    pub wasm_fuel: bool,
    /// Watch plugin files and hot-reload Lua and WASM plugins when they change.
    pub watch: bool,
    /// Quiet period after a file change before reloading (editors write in several steps).
    #[serde(with = "humantime_serde")]
    pub reload_debounce: Duration,
    /// The plugins.
    #[serde(rename = "plugin")]
    pub plugins: Vec<PluginConfig>,
}

impl Default for PluginsConfig {
    fn default() -> Self {
        PluginsConfig {
            allow_native: false,
            cache_dir: None,
            epoch_tick: Duration::from_millis(1),
            wasm_max_instances: 64,
            wasm_max_memory: ByteSize::mib(256),
            wasm_fuel: false,
            watch: true,
            reload_debounce: Duration::from_millis(150),
            plugins: Vec::new(),
        }
    }
}

impl PluginsConfig {
    /// Checks names, policies and limits.
    ///
    /// # Errors
    /// [`PluginsError::Invalid`] naming the first invalid setting, or
    /// [`PluginsError::DuplicateName`].
    pub fn validate(&self) -> Result<(), PluginsError> {
        if self.epoch_tick.is_zero() {
            return Err(PluginsError::invalid("plugins.epoch_tick", "must be positive"));
        }
        if self.wasm_max_instances == 0 {
            return Err(PluginsError::invalid("plugins.wasm_max_instances", "must be positive"));
        }
        let mut seen = std::collections::HashSet::new();
        for p in &self.plugins {
            p.validate()?;
            if !seen.insert(p.name.as_str()) {
                return Err(PluginsError::DuplicateName { name: p.name.clone() });
            }
            if p.limits.memory.map_or(0, |m| m.as_u64()) > self.wasm_max_memory.as_u64() && p.runtime == Runtime::Wasm {
                return Err(PluginsError::invalid(
                    format!("plugins.plugin[{}].limits.memory", p.name),
                    format!("exceeds plugins.wasm_max_memory ({})", self.wasm_max_memory),
                ));
            }
        }
        Ok(())
    }
}

/// One plugin declaration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginConfig {
    /// Registry name, `[a-z0-9][a-z0-9_-]{0,63}`; bindings refer to it.
    pub name: String,
    /// What it implements.
    pub kind: PluginKind,
    /// How it runs.
    pub runtime: Runtime,
    /// The artifact: a `.wasm` module, a `.lua` script or a shared library.
    pub path: PathBuf,
    /// Free-form settings handed to the plugin's `init`.
    #[serde(default)]
    pub config: BTreeMap<String, String>,
    /// Resource limits (defaults per kind).
    #[serde(default)]
    pub limits: LimitsConfig,
    /// What to do when a call fails (default per kind).
    #[serde(default)]
    pub failure_policy: Option<FailurePolicy>,
    /// Circuit breaker.
    #[serde(default)]
    pub breaker: BreakerConfig,
    /// Override of the registry's `watch` for this plugin (native plugins are never
    /// watched).
    #[serde(default)]
    pub watch: Option<bool>,
}

/// Whether `name` can name a plugin: `[a-z0-9][a-z0-9_-]{0,63}` (bindings, file
/// names and admin requests refer to it).
pub fn is_valid_plugin_name(name: &str) -> bool {
    name.len() <= 64
        && name.bytes().next().is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

impl PluginConfig {
    /// A declaration with default limits, policy and breaker.
    pub fn new(name: impl Into<String>, kind: PluginKind, runtime: Runtime, path: impl Into<PathBuf>) -> PluginConfig {
        PluginConfig {
            name: name.into(),
            kind,
            runtime,
            path: path.into(),
            config: BTreeMap::new(),
            limits: LimitsConfig::default(),
            failure_policy: None,
            breaker: BreakerConfig::default(),
            watch: None,
        }
    }

    /// The effective failure policy.
    pub fn policy(&self) -> FailurePolicy {
        self.failure_policy.unwrap_or(FailurePolicy::default_for(self.kind))
    }

    /// The effective limits (configured values over the kind's defaults).
    pub fn effective_limits(&self) -> Limits {
        let d = self.kind.default_limits();
        Limits {
            deadline: self.limits.deadline.unwrap_or(d.deadline),
            memory_bytes: self.limits.memory.map_or(d.memory_bytes, |m| m.as_u64()),
            instructions: self.limits.instructions.or(d.instructions),
            max_batch: self.limits.max_batch.unwrap_or(d.max_batch),
        }
    }

    /// Checks the name, policy and limits.
    ///
    /// # Errors
    /// [`PluginsError::Invalid`] naming the invalid setting.
    pub fn validate(&self) -> Result<(), PluginsError> {
        let key = |k: &str| format!("plugins.plugin[{}].{k}", self.name);
        if !is_valid_plugin_name(&self.name) {
            return Err(PluginsError::invalid(key("name"), "must match [a-z0-9][a-z0-9_-]{0,63}"));
        }
        let policy = self.policy();
        if !policy.is_allowed_for(self.kind) {
            return Err(PluginsError::invalid(
                key("failure_policy"),
                format!(
                    "{policy} is not valid for kind {}; expected one of {:?}",
                    self.kind,
                    FailurePolicy::allowed_for(self.kind)
                ),
            ));
        }
        let l = self.effective_limits();
        if l.deadline.is_zero() {
            return Err(PluginsError::invalid(key("limits.deadline"), "must be positive"));
        }
        if l.max_batch == 0 {
            return Err(PluginsError::invalid(key("limits.max_batch"), "must be positive"));
        }
        if l.memory_bytes < 64 * 1024 {
            return Err(PluginsError::invalid(key("limits.memory"), "must be at least 64KiB"));
        }
        if self.breaker.failures == 0 {
            return Err(PluginsError::invalid(key("breaker.failures"), "must be positive"));
        }
        Ok(())
    }
}

/// Configured limits; unset fields take the kind's defaults
/// ([`PluginKind::default_limits`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Wall-clock budget of one call.
    #[serde(with = "humantime_serde")]
    pub deadline: Option<Duration>,
    /// Memory cap of one instance / VM.
    #[serde(serialize_with = "byte_size::serialize_opt")]
    pub memory: Option<ByteSize>,
    /// Instruction budget of one call (Lua always; WASM when `wasm_fuel` is on).
    pub instructions: Option<u64>,
    /// Largest batch per call; larger inputs are split.
    pub max_batch: Option<u32>,
}

/// Circuit breaker: after `failures` consecutive failed calls the plugin is not called
/// for `cooldown` (the failure policy answers instead); then one probe call is let
/// through (half-open). A failed probe doubles the cool-down, up to `max_cooldown`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BreakerConfig {
    /// Consecutive failures that open the breaker.
    pub failures: u32,
    /// First cool-down.
    #[serde(with = "humantime_serde")]
    pub cooldown: Duration,
    /// Longest cool-down.
    #[serde(with = "humantime_serde")]
    pub max_cooldown: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig { failures: 5, cooldown: Duration::from_secs(1), max_cooldown: Duration::from_secs(60) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_example() {
        let doc = r#"
            allow_native = true
            cache_dir = "/tmp/c"
            [[plugin]]
            name = "vip-filter"
            kind = "filter"
            runtime = "wasm"
            path = "a.wasm"
            failure_policy = "deliver"
            config = { property = "price", min = "100" }
            limits = { deadline = "5ms", memory = "16MiB", max_batch = 32 }
            breaker = { failures = 3, cooldown = "250ms" }
            [[plugin]]
            name = "sel"
            kind = "queue_selector"
            runtime = "lua"
            path = "s.lua"
        "#;
        let c: PluginsConfig = toml::from_str(doc).unwrap();
        c.validate().unwrap();
        let p = &c.plugins[0];
        assert_eq!(p.policy(), FailurePolicy::Deliver);
        assert_eq!(p.effective_limits().deadline, Duration::from_millis(5));
        assert_eq!(p.effective_limits().memory_bytes, 16 << 20);
        assert_eq!(p.effective_limits().max_batch, 32);
        assert_eq!(p.breaker.failures, 3);
        assert_eq!(c.plugins[1].policy(), FailurePolicy::Builtin);
        assert_eq!(c.plugins[1].effective_limits().deadline, Duration::from_millis(1));
        let default: PluginsConfig = toml::from_str("").unwrap();
        assert_eq!(default, PluginsConfig::default());
    }

    #[test]
    fn rejects_bad_declarations() {
        let mut p = PluginConfig::new("Bad Name", PluginKind::Filter, Runtime::Lua, "x.lua");
        assert!(p.validate().unwrap_err().to_string().contains("name"));
        p.name = "ok".into();
        p.failure_policy = Some(FailurePolicy::Builtin);
        assert!(p.validate().unwrap_err().to_string().contains("not valid for kind filter"));
        p.failure_policy = None;
        p.validate().unwrap();
        let c = PluginsConfig { plugins: vec![p.clone(), p], ..Default::default() };
        assert!(matches!(c.validate(), Err(PluginsError::DuplicateName { .. })));
        assert!(toml::from_str::<PluginsConfig>(
            "[[plugin]]\nname='a'\nkind='filter'\nruntime='lua'\npath='x'\ncolour=1"
        )
        .is_err());
    }
}
