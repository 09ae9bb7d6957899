//! The RocketMQ message model shared by every FerroMQ crate.
//!
//! This crate owns the facts both ends of the wire and the disk agree on: message
//! properties and their char-1/char-2 encoding, system flags, permission bits, the
//! Java-compatible hashes, message ids, topic/route/subscription types, delay levels,
//! response codes, and — most importantly — the stored-message record layout
//! ([`record`]), which is byte-for-byte what RocketMQ writes to its commit log and
//! what pull responses carry.
//!
//! It is pure: no I/O, no async runtime, no global state (reading the wall clock in
//! [`time::now_ms`] is the one exception). `store` and `remoting`
//! both build on it, which is why the record codec lives here and not in either.

pub mod batch;
pub mod delay;
pub mod error;
pub mod hash;
pub mod lenient;
pub mod message;
pub mod msgid;
pub mod perm;
pub mod pop;
pub mod properties;
pub mod record;
pub mod response_code;
pub mod route;
pub mod subscription;
pub mod sysflag;
pub mod time;
pub mod topic;
pub mod trace_context;

pub use error::{DecodeError, Result};
pub use message::{Message, MessageExt};
pub use properties::Properties;
pub use response_code::ResponseCode;
