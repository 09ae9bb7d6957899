//! Registry-level errors: configuration, lookup and load failures.
//!
//! A failed *call* is a [`plugin_api::PluginError`] (the stable vocabulary shared with
//! plugin authors); this enum wraps it when a load or reload fails and adds what only the
//! registry can get wrong.

use plugin_api::{PluginError, PluginKind};

/// Errors of [`PluginRegistry`](crate::PluginRegistry) operations.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A setting is invalid.
    #[error("invalid {key}: {reason}")]
    Config {
        /// Dotted key.
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
    /// No plugin has this name.
    #[error("no plugin named {name:?}")]
    UnknownPlugin {
        /// The name.
        name: String,
    },
    /// The plugin exists but is of another kind.
    #[error("plugin {name:?} is a {actual} plugin, not a {wanted} plugin")]
    WrongKind {
        /// The name.
        name: String,
        /// Its kind.
        actual: PluginKind,
        /// The kind asked for.
        wanted: PluginKind,
    },
    /// A native plugin is declared but `allow_native` is off.
    #[error("plugin {name:?} is native but plugins.allow_native is false")]
    NativeNotAllowed {
        /// The name.
        name: String,
    },
    /// The runtime was compiled out (cargo feature off).
    #[error("plugin {name:?} needs the {runtime} runtime, which this build does not include")]
    RuntimeDisabled {
        /// The name.
        name: String,
        /// The runtime.
        runtime: plugin_api::Runtime,
    },
    /// Loading (or reloading) a plugin failed.
    #[error("plugin {name:?}: {source}")]
    Plugin {
        /// The name.
        name: String,
        /// Why.
        #[source]
        source: PluginError,
    },
    /// The file watcher could not be set up.
    #[error("cannot watch plugin files: {0}")]
    Watch(#[from] notify::Error),
}

impl Error {
    pub(crate) fn config(key: impl Into<String>, reason: impl Into<String>) -> Error {
        Error::Config { key: key.into(), reason: reason.into() }
    }

    /// The plugin error behind a load failure, if that is what this is.
    pub fn plugin_error(&self) -> Option<&PluginError> {
        match self {
            Error::Plugin { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
