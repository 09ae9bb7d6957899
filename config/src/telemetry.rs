//! [`TelemetryConfig`]: log format and level, and the one place a binary
//! installs its `tracing` subscriber.
//!
//! Logs go to stderr. Stdout is left to the binaries, whose ready line
//! (`listening on 127.0.0.1:PORT`) test harnesses read; a log line there
//! would break them.

use std::io::IsTerminal;

use serde::{Deserialize, Serialize};
use tracing_subscriber::EnvFilter;

use crate::error::{Error, Invalid, Result};

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One readable line per event; coloured when stderr is a terminal.
    #[default]
    Human,
    /// One JSON object per event, for log shippers.
    Json,
}

/// Logging settings, the `[telemetry]` section of both files.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TelemetryConfig {
    /// `human` or `json`.
    pub log_format: LogFormat,
    /// A `tracing` filter directive: a level (`info`) or per-target levels
    /// (`info,store=debug`). `RUST_LOG`, when set, takes precedence so that
    /// a developer can turn up logging without editing the file.
    pub log_level: String,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self { log_format: LogFormat::Human, log_level: "info".to_owned() }
    }
}

impl TelemetryConfig {
    /// Checks that `log_level` is a valid filter directive, so a typo fails
    /// at load time rather than at `install`.
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] keyed `log_level`.
    pub fn validate(&self) -> Result<()> {
        parse_filter("log_level", &self.log_level).map(drop)
    }

    /// Installs the global `tracing` subscriber: `fmt` in the configured
    /// format, writing to stderr, filtered by `RUST_LOG` if that is set and
    /// non-empty, else by `log_level`. Call it once, early in `main`.
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] if `RUST_LOG` (keyed `RUST_LOG`) or `log_level`
    /// (keyed `telemetry.log_level`) is not a valid directive;
    /// [`Error::Telemetry`] if a global subscriber is already installed.
    pub fn install(&self) -> Result<()> {
        let filter = match std::env::var("RUST_LOG") {
            Ok(directives) if !directives.trim().is_empty() => parse_filter("RUST_LOG", &directives)?,
            _ => parse_filter("log_level", &self.log_level).map_err(|e| e.within("telemetry"))?,
        };
        let builder = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .with_ansi(std::io::stderr().is_terminal());
        let installed = match self.log_format {
            LogFormat::Human => builder.try_init(),
            LogFormat::Json => builder.json().try_init(),
        };
        installed.map_err(Error::Telemetry)
    }
}

fn parse_filter(key: &str, directives: &str) -> Result<EnvFilter> {
    EnvFilter::builder().parse(directives).map_err(|_| {
        Error::invalid(
            key,
            Invalid::Malformed {
                value: directives.to_owned(),
                expected: "a tracing filter directive such as `info` or `info,store=debug`",
            },
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_level_must_be_a_filter_directive() {
        let mut telemetry = TelemetryConfig::default();
        telemetry.validate().unwrap();
        telemetry.log_level = "info,store=debug".to_owned();
        telemetry.validate().unwrap();
        telemetry.log_level = "info,=[".to_owned();
        let err = telemetry.validate().unwrap_err().to_string();
        assert!(err.starts_with("log_level: "), "{err}");
    }
}
