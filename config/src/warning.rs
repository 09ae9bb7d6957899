//! [`ConfigWarning`]: settings that were read but had no effect.
//!
//! A misspelt key silently falling back to its default is the worst kind of
//! configuration bug, so nothing in a file or in a `FERROMQ_` variable is
//! ignored without a warning. Loading still succeeds: the binary logs the
//! warnings (after installing telemetry) and an operator can decide. This is
//! why the structs do not use `deny_unknown_fields`, which would turn a
//! harmless leftover into a start-up failure and would reject every RocketMQ
//! key FerroMQ does not implement.

use std::fmt;
use std::path::PathBuf;

/// Where a setting came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A configuration file, as given to the loader.
    File(PathBuf),
    /// An environment variable, by name.
    Env(String),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::File(path) => write!(f, "{}", path.display()),
            Origin::Env(var) => write!(f, "environment variable {var}"),
        }
    }
}

/// Why a setting was ignored.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum WarningKind {
    /// No such key. `suggestion` is the closest known key at the same level,
    /// or the full path of a key with that exact name in another section.
    UnknownKey {
        /// What was probably meant; for the environment, a variable name.
        suggestion: Option<String>,
    },
    /// A RocketMQ setting (in a `.properties`/`.conf` file) that FerroMQ does
    /// not implement.
    NotImplemented,
    /// RocketMQ's `storePathCommitLog` pointed somewhere other than
    /// `<storePathRootDir>/commitlog`, where FerroMQ always keeps it.
    CommitLogPathIgnored {
        /// Where the commit log really is.
        commit_log_dir: PathBuf,
    },
}

/// One ignored setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigWarning {
    /// The key as the operator wrote it: a dotted path from the top of a
    /// TOML file or from the environment (`broker.store.flush_intervall`),
    /// or RocketMQ's key in a properties file (`storePathCommitLog`).
    pub key: String,
    /// The file or variable it was found in.
    pub origin: Origin,
    /// Why it was ignored.
    pub kind: WarningKind,
}

impl fmt::Display for ConfigWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self { key, origin, kind } = self;
        match kind {
            WarningKind::UnknownKey { suggestion } => {
                write!(f, "unknown key `{key}` in {origin}; ignored")?;
                if let Some(suggestion) = suggestion {
                    write!(f, "; did you mean `{suggestion}`?")?;
                }
                Ok(())
            }
            WarningKind::NotImplemented => {
                write!(f, "`{key}` is a RocketMQ setting FerroMQ does not implement; ignored (in {origin})")
            }
            WarningKind::CommitLogPathIgnored { commit_log_dir } => write!(
                f,
                "`{key}` is ignored: FerroMQ keeps the commit log in {} (in {origin})",
                commit_log_dir.display()
            ),
        }
    }
}

/// The candidate closest to `word`, if any is close enough to be a likely
/// typo. Jaro-Winkler rather than plain edit distance because it rewards a
/// shared prefix: `flush_intervall` is 11 edits from
/// `flush_interval_commit_log` but obviously meant it.
pub(crate) fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    // Below this, suggestions for short or unrelated words turn into noise.
    const THRESHOLD: f64 = 0.8;
    let word = word.to_ascii_lowercase();
    candidates
        .into_iter()
        .map(|candidate| (strsim::jaro_winkler(&word, &candidate.to_ascii_lowercase()), candidate))
        .filter(|(score, _)| *score >= THRESHOLD)
        .max_by(|(a, _), (b, _)| a.total_cmp(b))
        .map(|(_, candidate)| candidate)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(word: &str, expected: Option<&str>) {
        let candidates = [
            "flush_interval_commit_log",
            "flush_interval_consume_queue",
            "flush_commit_log_least_pages",
            "listen_port",
            "ha_listen_port",
            "max_message_size",
        ];
        assert_eq!(closest(word, candidates), expected, "{word}");
    }

    #[test]
    fn suggests_likely_typos_only() {
        check("flush_intervall", Some("flush_interval_commit_log"));
        check("listen_prot", Some("listen_port"));
        check("LISTEN_PORT", Some("listen_port"));
        check("max_msg_size", Some("max_message_size"));
        check("telemetry", None);
        check("x", None);
    }
}
