//! `ferromq-admin` command implementations.
//!
//! Filled once the client SDK exists; empty until then.
