//! The FerroMQ broker: request processors on top of the `store` crate.
//!
//! This crate is filled by the broker-core issue; today it holds nothing but this
//! description so that the workspace layout of `ARCHITECTURE.md` is complete.
