//! The stable FerroMQ plugin contract, shared by the broker, the client, the plugin host
//! and plugin authors.
//!
//! This crate is FerroMQ's stability boundary (see `style.md` §1): it has no runtime
//! dependencies, and every change to it bumps [`PLUGIN_ABI_VERSION`] (incompatible) or
//! [`PLUGIN_ABI_MINOR`] (fields appended). It defines:
//!
//! - the four plugin kinds ([`PluginKind`]) with their plain-data inputs and outputs
//!   ([`types`]) and Rust traits ([`MessageFilter`], [`QueueSelector`],
//!   [`AllocationStrategy`], [`TxnCheckHandler`]);
//! - the one binary batch layout used across the WASM and native boundaries
//!   ([`frame`]), the manifest returned by `describe` ([`manifest`]) and the native vtable
//!   ([`native`]);
//! - error kinds ([`PluginError`]), failure policies ([`FailurePolicy`]) and resource
//!   limits ([`Limits`]);
//! - the built-in strategies the failure policies fall back to ([`builtin`]).
//!
//! The byte-level specification, precise enough to write a plugin in C or
//! AssemblyScript, is the crate README, included below.
#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

pub mod builtin;
pub mod error;
pub mod frame;
pub mod kind;
pub mod manifest;
pub mod native;
pub mod traits;
pub mod types;

pub use error::{status, PluginError, PluginErrorKind};
pub use kind::{FailurePolicy, Limits, PluginKind, Runtime, UnknownName};
pub use manifest::Manifest;
pub use traits::{AllocationStrategy, FnFilter, MessageFilter, QueueSelector, TxnCheckHandler};
pub use types::{
    AllocateInput, CheckContext, CheckDecision, ClientView, CqUnit, FilterContext, MessageFields, MessageView,
    Properties, QueueView, SelectContext, Verdict, NO_QUEUE, PERM_READ, PERM_WRITE,
};

/// ABI major version. A plugin built for another major is refused at load with
/// [`PluginError::AbiMismatch`]. It appears in the WASM marker export (`fmq_abi_v1`), the
/// native entry symbol (`ferromq_plugin_entry_v1`), the native vtable, the manifest and
/// the frame header.
pub const PLUGIN_ABI_VERSION: u32 = 1;

/// ABI minor version: fields appended within the major. A plugin declaring a higher minor
/// than the host's is refused (it may read fields the host does not fill).
///
/// - 1.1: a manifest may declare the message fields the plugin reads
///   ([`MessageFields`]); frames then carry only those and list the others in the
///   header's `omitted` field.
pub const PLUGIN_ABI_MINOR: u16 = 1;
