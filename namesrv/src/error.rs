//! Name server errors.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read kv config {path:?}: {source}")]
    KvRead { path: PathBuf, source: std::io::Error },
    #[error("kv config {path:?} is not valid: {source}")]
    KvParse { path: PathBuf, source: serde_json::Error },
    #[error("cannot write kv config {path:?}: {source}")]
    KvWrite { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Remoting(#[from] remoting::Error),
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Metrics(#[from] telemetry::MetricsError),
    #[error("TLS: {0}")]
    Tls(#[from] remoting::tls::TlsError),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
