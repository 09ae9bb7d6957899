//! The file-level structs each binary loads: one section per component plus
//! `[telemetry]`.
//!
//! ```toml
//! [namesrv]            # NamesrvFile
//! [telemetry]
//!
//! [broker]             # BrokerFile
//! [broker.store]       # the store is part of the broker's config
//! [[broker.plugin_binding]]   # which topic/group uses which plugin
//! [plugins]            # plugin declarations (PluginsConfig, read by plugin-host)
//! [telemetry]
//!
//! [client]             # ClientFile
//! [plugins]
//! [telemetry]
//! ```
//!
//! The store sits under `[broker.store]` rather than at the top level because
//! it is a field of [`BrokerConfig`]: the TOML path, the environment variable
//! (`FERROMQ_BROKER_STORE__...`) and the Rust path (`config.broker.store`)
//! then all read the same way.

use plugin_api::PluginKind;
use serde::{Deserialize, Serialize};

use crate::broker::BrokerConfig;
use crate::client::ClientConfig;
use crate::controller::ControllerConfig;
use crate::error::{Error, Invalid, Result};
use crate::namesrv::NamesrvConfig;
use crate::plugins::PluginsConfig;
use crate::telemetry::TelemetryConfig;

/// Everything the `namesrv` binary reads.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct NamesrvFile {
    /// `[namesrv]`.
    pub namesrv: NamesrvConfig,
    /// `[controller]`: the controller the name server runs with
    /// `namesrv.enable_controller_in_namesrv`.
    pub controller: ControllerConfig,
    /// `[telemetry]`.
    pub telemetry: TelemetryConfig,
}

/// Everything the `controller` binary reads.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ControllerFile {
    /// `[controller]`.
    pub controller: ControllerConfig,
    /// `[telemetry]`.
    pub telemetry: TelemetryConfig,
}

impl ControllerFile {
    /// Validates every section.
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`](crate::Error::Invalid) with the full dotted key.
    pub fn validate(&self) -> Result<()> {
        self.controller.validate().map_err(|e| e.within("controller"))?;
        self.telemetry.validate().map_err(|e| e.within("telemetry"))
    }
}

impl NamesrvFile {
    /// Validates every section.
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`](crate::Error::Invalid) with the full dotted key,
    /// e.g. `namesrv.advertised_addr`.
    pub fn validate(&self) -> Result<()> {
        self.namesrv.validate().map_err(|e| e.within("namesrv"))?;
        if self.namesrv.enable_controller_in_namesrv {
            self.controller.validate().map_err(|e| e.within("controller"))?;
        }
        self.telemetry.validate().map_err(|e| e.within("telemetry"))
    }
}

/// Everything the `broker` binary reads.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct BrokerFile {
    /// `[broker]`, with the store in `[broker.store]`.
    pub broker: BrokerConfig,
    /// `[plugins]`: plugins the broker loads; `broker.plugin_binding` uses them.
    pub plugins: PluginsConfig,
    /// `[telemetry]`.
    pub telemetry: TelemetryConfig,
}

impl BrokerFile {
    /// Validates every section.
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`](crate::Error::Invalid) with the full dotted key,
    /// e.g. `broker.store.delete_when`; a binding naming an undeclared plugin,
    /// or one of a kind the broker does not run, is `broker.plugin_binding`.
    pub fn validate(&self) -> Result<()> {
        self.broker.validate().map_err(|e| e.within("broker"))?;
        validate_plugins(&self.plugins)?;
        for b in &self.broker.plugin_bindings {
            let bad = |why: String| Error::invalid("broker.plugin_binding", Invalid::Plugin(why));
            let Some(decl) = self.plugins.plugins.iter().find(|p| p.name == b.plugin) else {
                return Err(bad(format!("plugin `{}` is not declared in [[plugins.plugin]]", b.plugin)));
            };
            if b.topic.trim().is_empty() {
                return Err(bad(format!("binding of `{}` has an empty topic (use \"*\" for all)", b.plugin)));
            }
            match (decl.kind, &b.group) {
                (PluginKind::Filter, None) => {
                    return Err(bad(format!("filter `{}` needs a `group` (or \"*\")", b.plugin)));
                }
                (PluginKind::Filter, Some(_)) => {}
                (PluginKind::QueueSelector | PluginKind::TxnCheck, Some(_)) => {
                    return Err(bad(format!("`group` applies to filters only, not to `{}`", b.plugin)));
                }
                (PluginKind::QueueSelector | PluginKind::TxnCheck, None) => {}
                (kind @ PluginKind::Allocation, _) => {
                    return Err(bad(format!(
                        "`{}` is of kind {kind}, which runs in clients, not in the broker",
                        b.plugin
                    )));
                }
            }
        }
        self.telemetry.validate().map_err(|e| e.within("telemetry"))
    }
}

/// Everything a client application reads (`client.toml`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ClientFile {
    /// `[client]`.
    pub client: ClientConfig,
    /// `[plugins]`: queue selectors and allocation strategies the application
    /// may use.
    pub plugins: PluginsConfig,
    /// `[telemetry]`.
    pub telemetry: TelemetryConfig,
}

impl ClientFile {
    /// Validates every section.
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`](crate::Error::Invalid) with the full dotted key.
    pub fn validate(&self) -> Result<()> {
        self.client.validate().map_err(|e| e.within("client"))?;
        validate_plugins(&self.plugins)?;
        self.telemetry.validate().map_err(|e| e.within("telemetry"))
    }
}

fn validate_plugins(plugins: &PluginsConfig) -> Result<()> {
    plugins.validate().map_err(|e| Error::invalid("plugins", Invalid::Plugin(e.to_string())))
}
