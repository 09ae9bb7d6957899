//! The crate's one error type.
//!
//! Every error that comes from an operator's input names the key it is about
//! (`broker.listen_port`, `FERROMQ_BROKER_LISTEN_PORT`, `listenPort`) and,
//! where there is one, the file or environment it came from, so that the
//! message alone is enough to fix the configuration. Validation errors carry
//! the key relative to the struct that checked it and are prefixed with the
//! enclosing section on the way up (see [`Error::within`]).

use std::path::PathBuf;

/// `Result` with this crate's [`Error`] as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong while loading, validating or applying a
/// configuration.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration file could not be read.
    #[error("cannot read config file {}", path.display())]
    Read {
        /// The file, as given to the loader.
        path: PathBuf,
        /// Why reading failed (missing, permissions, not UTF-8 for TOML).
        #[source]
        source: std::io::Error,
    },

    /// The file name ends in neither `.toml`, `.properties` nor `.conf`, so
    /// there is no telling which syntax and key names it uses.
    #[error(
        "cannot tell the format of config file {}: expected a name ending in \
         .toml (FerroMQ) or .properties/.conf (RocketMQ)",
        path.display()
    )]
    UnknownFormat {
        /// The file, as given to the loader.
        path: PathBuf,
    },

    /// The TOML file is not valid TOML.
    #[error("cannot parse TOML file {}", path.display())]
    Toml {
        /// The file, as given to the loader.
        path: PathBuf,
        /// The parser's error, with line, column and a snippet.
        #[source]
        source: toml::de::Error,
    },

    /// A RocketMQ properties file breaks Java's `.properties` syntax (only a
    /// malformed `\uXXXX` escape can do that).
    #[error("{}:{line}: {reason}", path.display())]
    PropertiesSyntax {
        /// The file, as given to the loader.
        path: PathBuf,
        /// 1-based line where the entry starts.
        line: usize,
        /// What is wrong with it.
        reason: &'static str,
    },

    /// A RocketMQ properties file has a value that cannot be converted for
    /// the key it is set on.
    #[error("{key}: invalid value {value:?} in {}: {reason}", path.display())]
    Property {
        /// RocketMQ's key name, as written in the file (`listenPort`).
        key: String,
        /// The value, as written in the file.
        value: String,
        /// The file, as given to the loader.
        path: PathBuf,
        /// Why it does not convert, e.g. "invalid digit found in string".
        reason: String,
    },

    /// A TOML or environment value does not fit the type of its key.
    #[error("{key}: {kind} in {origin}")]
    Value {
        /// The dotted key (`broker.store.flush_disk_type`) or, for the
        /// environment, the variable name.
        key: String,
        /// The file path, or `environment`.
        origin: String,
        /// What figment (serde) found and expected.
        kind: figment::error::Kind,
    },

    /// A value that has the right type but is not acceptable.
    #[error("{key}: {reason}")]
    Invalid {
        /// Dotted key, from the top of the file once it has passed through
        /// the file-level `validate()` (`broker.store.delete_when`).
        key: String,
        /// What is wrong with the value.
        reason: Invalid,
    },

    /// An environment variable that FerroMQ reads holds bytes that are not
    /// UTF-8.
    #[error("environment variable {var} is not valid unicode")]
    EnvNotUnicode {
        /// The variable's name.
        var: String,
    },

    /// `TelemetryConfig::install` was called when a global subscriber (or
    /// `log` logger) was already set.
    #[error("cannot install the tracing subscriber")]
    Telemetry(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Why a well-typed value was rejected by `validate()`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Invalid {
    /// An empty or blank string where a name, path or address is needed.
    #[error("must not be empty")]
    Empty,
    /// Zero where it would mean a busy loop, an instant timeout or no room.
    #[error("must be greater than zero")]
    Zero,
    /// A number outside the accepted range.
    #[error("{value} is out of range: expected {expected}")]
    OutOfRange {
        /// The value, formatted.
        value: String,
        /// The accepted range, in words.
        expected: &'static str,
    },
    /// A string that does not parse (an address, an hour, a delay level).
    #[error("`{value}` is not {expected}")]
    Malformed {
        /// The offending value or token.
        value: String,
        /// The accepted form, in words.
        expected: &'static str,
    },
    /// A plugin declaration or binding that cannot work (unknown plugin,
    /// wrong kind, bad limits); the text says why.
    #[error("{0}")]
    Plugin(String),
    /// A value that is fine alone but not together with another key.
    #[error("conflicts with `{other}`: {why}")]
    Conflict {
        /// The other key, in the same section.
        other: &'static str,
        /// Why the two cannot go together.
        why: &'static str,
    },
}

/// Why a `[plugins]` section is invalid ([`PluginsConfig::validate`](crate::PluginsConfig::validate)).
///
/// A type of its own, not an [`Error`] variant, because the plugin registry
/// validates the section again before loading and reports the result as its
/// own error (`plugin_host::Error`), variant for variant and with the same text.
/// Loading a file wraps it as [`Invalid::Plugin`] under the key `plugins`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PluginsError {
    /// A setting is invalid.
    #[error("invalid {key}: {reason}")]
    Invalid {
        /// Dotted key from the top of the file (`plugins.plugin[vip].limits.memory`).
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// Two plugins have the same name.
    #[error("plugin name {name:?} is declared twice")]
    DuplicateName {
        /// The name.
        name: String,
    },
}

impl PluginsError {
    pub(crate) fn invalid(key: impl Into<String>, reason: impl Into<String>) -> Self {
        PluginsError::Invalid { key: key.into(), reason: reason.into() }
    }
}

impl Error {
    /// Prefixes the key of an [`Error::Invalid`] with the section it was found
    /// in, so `store.validate()`'s `max_message_size` becomes
    /// `broker.store.max_message_size` by the time it reaches the operator.
    /// Other variants already name their key in full and are returned as is.
    #[must_use]
    pub fn within(self, section: &str) -> Self {
        match self {
            Error::Invalid { key, reason } => Error::Invalid { key: format!("{section}.{key}"), reason },
            other => other,
        }
    }

    pub(crate) fn invalid(key: impl Into<String>, reason: Invalid) -> Self {
        Error::Invalid { key: key.into(), reason }
    }

    /// Converts figment's error, keeping the key and where the value came from.
    ///
    /// figment chains several errors when several values are wrong; the first
    /// one is reported, as the operator fixes them one at a time anyway.
    pub(crate) fn from_figment(error: figment::Error) -> Self {
        let key = if error.path.is_empty() {
            "(top level)".to_owned()
        } else {
            match (&error.metadata, &error.profile) {
                (Some(metadata), Some(profile)) => metadata.interpolate(profile, &error.path),
                _ => error.path.join("."),
            }
        };
        let origin = match &error.metadata {
            Some(metadata) => match &metadata.source {
                Some(figment::Source::File(path)) => path.display().to_string(),
                _ => metadata.name.to_string(),
            },
            None => "configuration".to_owned(),
        };
        Error::Value { key, origin, kind: error.kind }
    }
}
