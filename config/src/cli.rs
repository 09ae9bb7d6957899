//! The command line every FerroMQ server takes (feature `cli`).
//!
//! Flags are for runtime behaviour only — which file to read, how to write logs —
//! never for settings that belong in the file (those have keys, and the
//! environment overrides them). Each binary flattens [`ServerArgs`] into its own
//! `clap` struct and adds what only it has (the broker's `-n`, as RocketMQ's
//! `mqbroker -n`).

use std::path::PathBuf;

use crate::{ConfigWarning, LogFormat, Result, TelemetryConfig};

/// `-c FILE` and `--log-format human|json`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ServerArgs {
    /// Config file: `.toml` (FerroMQ) or `.properties`/`.conf` (RocketMQ keys).
    #[arg(short = 'c', long = "config")]
    pub config: Option<PathBuf>,
    /// Log format (overrides the config file's `telemetry.log_format`).
    #[arg(long, value_enum)]
    pub log_format: Option<LogFormat>,
}

impl ServerArgs {
    /// Installs logging from the loaded `telemetry` settings with the flags on top,
    /// then logs the warnings loading the file produced (they could not be logged
    /// before logging was installed).
    ///
    /// # Errors
    /// See [`TelemetryConfig::install`].
    pub fn install_logging(&self, telemetry: &mut TelemetryConfig, warnings: &[ConfigWarning]) -> Result<()> {
        if let Some(format) = self.log_format {
            telemetry.log_format = format;
        }
        telemetry.install()?;
        for w in warnings {
            tracing::warn!("{w}");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        server: ServerArgs,
    }

    #[test]
    fn flags_parse_as_documented() {
        let cli = Cli::try_parse_from(["server", "-c", "broker.conf", "--log-format", "json"]).unwrap();
        assert_eq!(cli.server.config, Some(PathBuf::from("broker.conf")));
        assert_eq!(cli.server.log_format, Some(LogFormat::Json));
        let none = Cli::try_parse_from(["server"]).unwrap();
        assert_eq!((none.server.config, none.server.log_format), (None, None));
        assert!(Cli::try_parse_from(["server", "--log-format", "xml"]).is_err());
    }
}
