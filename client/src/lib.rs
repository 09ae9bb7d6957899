//! Rust producer and consumer SDK for FerroMQ and Apache RocketMQ clusters.
//!
//! Filled by the client-SDK issue; empty until then.
