//! The store's one error type.
//!
//! Only conditions that stop an operation are errors. Everything a broker expects to
//! happen while serving traffic — a full append queue, a flush timeout, a pull that
//! finds nothing, an offset that was deleted — is a status in
//! [`crate::PutStatus`] / [`crate::GetStatus`], never an `Err`.
//!
//! Corrupted data on disk is never a panic: it is either one of the variants below
//! (when the store cannot continue) or a truncation reported in
//! [`crate::RecoveryReport`] (a torn tail after a crash).

use std::path::PathBuf;

/// Why the store could not be opened or an operation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("replicated data at commit-log offset {offset} refused: {reason}")]
    Replica { offset: i64, reason: &'static str },
    #[error("i/o error on {path:?}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("store directory {path:?} is locked by another process")]
    Locked { path: PathBuf },
    #[error("file {path:?} has size {actual}, expected {expected}")]
    SegmentSize { path: PathBuf, actual: u64, expected: u64 },
    #[error("file name {path:?} is not a valid segment name")]
    BadFileName { path: PathBuf },
    #[error("commit log segments are not contiguous: {path:?} starts at {found}, expected {expected}")]
    Gap { path: PathBuf, found: i64, expected: i64 },
    #[error("{path:?} is corrupt at offset {offset}: {reason}")]
    Corrupt { path: PathBuf, offset: u64, reason: &'static str },
    #[error("invalid store configuration: {0}")]
    Config(&'static str),
    #[error("store is shut down")]
    ShutDown,
    #[error("failed to start thread {name}")]
    Thread {
        name: &'static str,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }
}

/// `Result` with [`Error`] as the default error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Attaches a path to an `io::Result`.
pub(crate) trait IoContext<T> {
    fn at(self, path: &std::path::Path) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn at(self, path: &std::path::Path) -> Result<T> {
        self.map_err(|e| Error::io(path, e))
    }
}
