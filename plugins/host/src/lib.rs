//! Loads FerroMQ plugins and runs them: the [`PluginRegistry`], one uniform handle per
//! plugin kind, and three runtimes behind cargo features (`wasm`, `lua`, `native`, all on
//! by default).
//!
//! ```no_run
//! use plugin_api::{FilterContext, MessageView, Verdict};
//! use plugin_host::{PluginRegistry, PluginsConfig};
//!
//! # fn main() -> Result<(), plugin_host::Error> {
//! let config: PluginsConfig = toml::from_str(r#"
//!     [[plugin]]
//!     name = "vip"
//!     kind = "filter"
//!     runtime = "lua"
//!     path = "plugins/examples/lua/vip_filter.lua"
//! "#).unwrap();
//! let registry = PluginRegistry::new(config)?;
//! let vip = registry.filter("vip")?;
//! let msgs = [MessageView { topic: "orders", tags: "vip", ..Default::default() }];
//! let mut verdicts = [Verdict::Reject; 1];
//! let report = vip.filter_with_policy(&FilterContext::default(), &msgs, &mut verdicts);
//! // Deliver verdicts[..report.deliverable]; the rest waits for the next pull.
//! # Ok(()) }
//! ```
//!
//! What this crate owns: loading and validating plugins (ABI version, manifest, kind),
//! running calls under the plugin's limits, applying the failure policy when a call
//! fails, the circuit breaker, counters, and hot reload (file watch, staging off the
//! hot path, atomic swap, keep-the-old-version-on-failure). What it does not own: which
//! subscription, topic or group uses which plugin (bindings live in the broker and client
//! configuration) and how verdicts turn into pull results, nor the `[plugins]` section's
//! types ([`PluginsConfig`] and the rest live in the `config` crate with every other
//! section, so reading a configuration never builds this engine; they are re-exported
//! here under their old paths).
//!
//! Invariants callers rely on:
//! - A call never panics and never blocks longer than the plugin's deadline plus
//!   scheduling noise (native plugins excepted: they are trusted and only measured).
//! - The `*_with_policy` methods always produce an answer the caller can act on; only a
//!   selector with policy `reject` returns an error.
//! - A reload never interrupts a call in flight: calls hold the version they started with.

#![warn(missing_docs)]

mod breaker;
pub mod config;
mod error;
mod handles;
pub mod logs;
mod registry;
mod runtime;
mod stats;
#[cfg(feature = "testing")]
pub mod testing;

pub use self::config::{BreakerConfig, LimitsConfig, PluginConfig, PluginsConfig};
pub use breaker::BreakerState;
pub use error::{Error, Result};
pub use handles::{
    AllocateReport, AllocationPlugin, CheckReport, FilterPlugin, FilterReport, QueueSelectorPlugin, SelectReport,
    TxnCheckPlugin,
};
pub use registry::{PluginRegistry, PluginStatus};
pub use stats::{StatsSnapshot, LATENCY_BUCKETS};

/// How a plugin's release build is made reproducible (the same source and lock file
/// give the same bytes, hence the same SHA-256 a broker reports): cargo's release
/// profile settings, as environment variables for `cargo build --release`. The
/// example plugins and `ferromq-admin plugin build` both build with them.
pub const REPRODUCIBLE_RELEASE_PROFILE: [(&str, &str); 7] = [
    ("CARGO_PROFILE_RELEASE_DEBUG", "0"),
    ("CARGO_PROFILE_RELEASE_STRIP", "true"),
    ("CARGO_PROFILE_RELEASE_LTO", "true"),
    ("CARGO_PROFILE_RELEASE_CODEGEN_UNITS", "1"),
    ("CARGO_PROFILE_RELEASE_OPT_LEVEL", "s"),
    ("CARGO_PROFILE_RELEASE_PANIC", "abort"),
    ("CARGO_PROFILE_RELEASE_INCREMENTAL", "false"),
];
