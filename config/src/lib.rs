//! Typed configuration for every FerroMQ component.
//!
//! Each component owns one struct ([`NamesrvConfig`], [`BrokerConfig`] with
//! its nested [`StoreConfig`], [`TelemetryConfig`]) whose field names are the
//! snake_case forms of RocketMQ's setting names and whose `Default` is
//! RocketMQ's default. A binary loads a file-level struct ([`NamesrvFile`],
//! [`BrokerFile`]) in layers, each overriding the one before:
//!
//! 1. built-in defaults;
//! 2. the file, if one is given: FerroMQ TOML (`*.toml`) or a RocketMQ
//!    properties file (`*.properties`, `*.conf`) with RocketMQ's key names
//!    and units, so existing `broker.conf` files keep working;
//! 3. the environment: RocketMQ's `NAMESRV_ADDR`, then `FERROMQ_NAMESRV_*` /
//!    `FERROMQ_BROKER_*` with `__` between nesting levels;
//! 4. `validate()`.
//!
//! ```no_run
//! # fn main() -> Result<(), config::Error> {
//! let loaded = config::load_broker(Some(std::path::Path::new("config/broker.toml")))?;
//! loaded.config.telemetry.install()?;
//! for warning in &loaded.warnings {
//!     tracing::warn!("{warning}");
//! }
//! # Ok(()) }
//! ```
//!
//! Unknown keys never vanish silently: each becomes a [`ConfigWarning`] with
//! its full dotted path and, when a known key is close, a suggestion. Bad
//! values are [`Error`]s that name the key and the file or variable.
//!
//! This crate reads configuration; it does not watch files or reload. It
//! reads the process environment only in [`load_namesrv`], [`load_broker`]
//! and [`TelemetryConfig::install`] (`RUST_LOG`); the `*_with_env` variants
//! take the environment as an argument.
//!
//! The types of every section live here, also those of sections another
//! crate acts on: [`StoreConfig`] (the store) and [`PluginsConfig`] (the
//! `[plugins]` section, which `plugin-host`'s registry loads). That keeps the
//! graph pointing down: `store` and `plugin-host` depend on this crate for
//! their settings, and this crate depends on neither, so reading a
//! configuration never builds the store or the plugin engine. Of the plugin
//! crates only `plugin-api` is below it, for the vocabulary a declaration uses
//! (kinds, runtimes, failure policies).
//!
//! Sample files live next to this crate: `config/namesrv.toml`,
//! `config/broker.toml`, `config/broker.conf`, `config/namesrv.properties`.

#![warn(missing_docs)]

mod broker;
mod check;
#[cfg(feature = "cli")]
pub mod cli;
mod client;
mod controller;
mod error;
mod file;
mod layer;
mod load;
mod namesrv;
pub mod persist;
mod plugins;
mod rocketmq;
mod serde_util;
mod store;
mod telemetry;
pub mod tls;
mod warning;

pub use broker::{parse_delay_levels, BrokerConfig, BrokerRole, PluginBinding, DEFAULT_MESSAGE_DELAY_LEVEL};
pub use client::ClientConfig;
pub use controller::ControllerConfig;
pub use error::{Error, Invalid, PluginsError, Result};
pub use file::{BrokerFile, ClientFile, ControllerFile, NamesrvFile};
pub use load::{
    load_broker, load_broker_with_env, load_client, load_client_with_env, load_controller, load_controller_with_env,
    load_namesrv, load_namesrv_with_env, Loaded, NAMESRV_ADDR_ENV,
};
pub use namesrv::NamesrvConfig;
pub use plugins::{is_valid_plugin_name, BreakerConfig, LimitsConfig, PluginConfig, PluginsConfig};
pub use rocketmq::{broker_properties, namesrv_properties, parse_broker_update, parse_namesrv_update, BrokerSetting};
pub use serde_util::Secret;
pub use store::{FlushDiskType, StoreConfig, CONSUME_QUEUE_UNIT_SIZE};
pub use telemetry::{
    LogFormat, MetricsConfig, MetricsExporterType, OtlpProtocol, TelemetryConfig, TraceExporter, TracesConfig,
};
pub use tls::{ClientTlsConfig, ServerTlsConfig, TlsClientAuth, TlsMode};
pub use warning::{ConfigWarning, Origin, WarningKind};

/// The user's home directory, which RocketMQ's defaults are relative to
/// (Java's `user.home`). Falls back to the current directory when `HOME` is
/// unset, e.g. under a minimal service manager, rather than failing.
fn user_home() -> std::path::PathBuf {
    std::env::var_os("HOME")
        .filter(|home| !home.is_empty())
        .map_or_else(|| std::path::PathBuf::from("."), std::path::PathBuf::from)
}
