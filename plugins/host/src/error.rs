//! Registry-level errors: configuration, lookup and load failures.
//!
//! A failed *call* is a [`plugin_api::PluginError`] (the stable vocabulary shared with
//! plugin authors); this enum wraps it when a load or reload fails and adds what only the
//! registry can get wrong.

use plugin_api::{PluginError, PluginKind};

use crate::config::PluginsError;

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

/// An invalid `[plugins]` section, as the registry reports it: the same variant
/// names and text the validation gives.
impl From<PluginsError> for Error {
    fn from(e: PluginsError) -> Error {
        match e {
            PluginsError::Invalid { key, reason } => Error::Config { key, reason },
            PluginsError::DuplicateName { name } => Error::DuplicateName { name },
        }
    }
}

impl Error {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_invalid_plugins_section_keeps_its_variant_and_text() {
        let check = |e: PluginsError| {
            let text = e.to_string();
            let ours = Error::from(e.clone());
            assert_eq!(ours.to_string(), text);
            match (e, ours) {
                (PluginsError::Invalid { key, reason }, Error::Config { key: k, reason: r }) => {
                    assert_eq!((key, reason), (k, r));
                }
                (PluginsError::DuplicateName { name }, Error::DuplicateName { name: n }) => assert_eq!(name, n),
                (e, ours) => panic!("{e:?} became {ours:?}"),
            }
        };
        check(PluginsError::Invalid { key: "plugins.epoch_tick".into(), reason: "must be positive".into() });
        check(PluginsError::DuplicateName { name: "vip".into() });
    }
}
