//! The file-level structs each binary loads: one section per component plus
//! `[telemetry]`.
//!
//! ```toml
//! [namesrv]            # NamesrvFile
//! [telemetry]
//!
//! [broker]             # BrokerFile
//! [broker.store]       # the store is part of the broker's config
//! [telemetry]
//! ```
//!
//! The store sits under `[broker.store]` rather than at the top level because
//! it is a field of [`BrokerConfig`]: the TOML path, the environment variable
//! (`FERROMQ_BROKER_STORE__...`) and the Rust path (`config.broker.store`)
//! then all read the same way.

use serde::{Deserialize, Serialize};

use crate::broker::BrokerConfig;
use crate::client::ClientConfig;
use crate::error::Result;
use crate::namesrv::NamesrvConfig;
use crate::telemetry::TelemetryConfig;

/// Everything the `namesrv` binary reads.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct NamesrvFile {
    /// `[namesrv]`.
    pub namesrv: NamesrvConfig,
    /// `[telemetry]`.
    pub telemetry: TelemetryConfig,
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
        self.telemetry.validate().map_err(|e| e.within("telemetry"))
    }
}

/// Everything the `broker` binary reads.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct BrokerFile {
    /// `[broker]`, with the store in `[broker.store]`.
    pub broker: BrokerConfig,
    /// `[telemetry]`.
    pub telemetry: TelemetryConfig,
}

impl BrokerFile {
    /// Validates every section.
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`](crate::Error::Invalid) with the full dotted key,
    /// e.g. `broker.store.delete_when`.
    pub fn validate(&self) -> Result<()> {
        self.broker.validate().map_err(|e| e.within("broker"))?;
        self.telemetry.validate().map_err(|e| e.within("telemetry"))
    }
}

/// Everything a client application reads (`client.toml`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ClientFile {
    /// `[client]`.
    pub client: ClientConfig,
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
        self.telemetry.validate().map_err(|e| e.within("telemetry"))
    }
}
