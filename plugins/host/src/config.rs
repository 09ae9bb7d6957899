//! The `[plugins]` section's types, defined in the `config` crate (with every other
//! section of a configuration file) and re-exported here, so that
//! `plugin_host::PluginsConfig` and `plugin_host::config::PluginsConfig` keep naming
//! them. The registry validates a [`PluginsConfig`] again before loading it and reports
//! a [`PluginsError`] as [`Error::Config`](crate::Error::Config) or
//! [`Error::DuplicateName`](crate::Error::DuplicateName).

pub use ::config::{BreakerConfig, LimitsConfig, PluginConfig, PluginsConfig, PluginsError};
