//! Errors of the remoting layer.

use std::net::SocketAddr;
use std::time::Duration;

use crate::header::HeaderError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("frame of {0} bytes exceeds the 16 MiB limit")]
    FrameTooLarge(usize),
    #[error("malformed frame: {0}")]
    Malformed(String),
    #[error("unknown serialize type {0}")]
    UnknownSerializeType(u8),
    #[error(transparent)]
    Header(#[from] HeaderError),
    #[error("invalid json body: {0}")]
    Json(#[from] serde_json::Error),
    #[error("request {code} to {addr} timed out after {timeout:?}")]
    Timeout { addr: String, code: i32, timeout: Duration },
    #[error("connection to {0} is closed")]
    ConnectionClosed(String),
    #[error("cannot connect to {addr}: {source}")]
    Connect { addr: String, source: std::io::Error },
    #[error("invalid address `{0}`")]
    BadAddress(String),
    #[error("server bound to {0} is shutting down")]
    ShuttingDown(SocketAddr),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
