//! Broker errors: start-up and persistence failures. Request failures are not
//! errors here — processors turn them into responses with RocketMQ codes.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Store(#[from] store::Error),
    #[error(transparent)]
    Remoting(#[from] remoting::Error),
    #[error("invalid configuration: {0}")]
    Config(String),
    /// Controller mode: the controllers (or the master asked for its epochs) did
    /// not answer as needed.
    #[error("controller mode: {0}")]
    Controller(String),
    #[error("cannot read {path:?}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path:?} is not valid: {source}")]
    Parse { path: PathBuf, source: serde_json::Error },
    #[error("cannot write {path:?}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
