//! Guest-side SDK for FerroMQ plugins written in Rust.
//!
//! Compile a crate using it to `wasm32-unknown-unknown` and you get a WASM plugin; add
//! [`export_native!`] to a `cdylib` and the same code is a native plugin; run
//! `cargo test` on the host and [`testing::Harness`] calls it through the very frames the
//! broker sends, without a broker.
//!
//! ```
//! use sdk_wasm::{Config, FromConfig, Message};
//!
//! pub struct MinPrice(i64);
//!
//! impl FromConfig for MinPrice {
//!     fn from_config(config: &Config) -> Result<Self, String> {
//!         Ok(MinPrice(config.parse_or("min", 100)?))
//!     }
//! }
//!
//! /// Deliver messages whose `price` property is at least `min`.
//! #[sdk_wasm::filter(name = "min-price")]
//! fn min_price(state: &MinPrice, msg: &Message<'_>) -> bool {
//!     msg.property("price").and_then(|p| p.parse::<i64>().ok()).is_some_and(|p| p >= state.0)
//! }
//!
//! # fn main() {
//! use sdk_wasm::testing::{Harness, TestMessage};
//! let mut h = Harness::with_config(&FERROMQ_PLUGIN, &[("min", "50")]).unwrap();
//! let cheap = TestMessage::new("orders").property("price", "10");
//! let dear = TestMessage::new("orders").property("price", "70");
//! assert_eq!(h.filter_bools(&[cheap.view(), dear.view()]).unwrap(), [false, true]);
//! # }
//! ```
//!
//! The attribute macros ([`filter`], [`queue_selector`], [`allocate`], [`txn_check`])
//! take a plain function and generate, in the crate root:
//! - `pub static FERROMQ_PLUGIN: sdk_wasm::PluginDef` — the manifest, `init` (building
//!   the state type from the config through [`FromConfig`]) and the batch loop;
//! - on `wasm32`, the exports of the ABI: `memory` (by the toolchain), `fmq_abi_v1`,
//!   `fmq_alloc`, `fmq_describe`, `fmq_init`, `fmq_call`, `fmq_last_error`.
//!
//! Function arguments are recognised by type: `&Message` (the message), the kind's
//! context (`&FilterContext`, `&SelectContext`, `&AllocateContext`, `&CheckContext`), and
//! at most one other reference, the state. Return types are flexible (`bool` or
//! [`Verdict`]; a queue index as `u32`/`usize`/`Option`; `Vec<u32>`/`Vec<usize>`;
//! [`CheckDecision`]), each optionally wrapped in `Result<_, E: Display>`: an `Err`
//! marks that one message as undecided (the broker's failure policy decides) and is
//! reported through `fmq_last_error`. One plugin per crate.
//!
//! See `sdk-wasm/README.md` for a walk from `cargo new` to a filter running in a broker,
//! and `plugin-api/README.md` for the ABI this implements.

#![warn(missing_docs)]

use std::any::Any;
use std::collections::BTreeMap;
use std::fmt;

pub use plugin_api;
pub use plugin_api::builtin::{java_string_hash, tags_code};
pub use plugin_api::frame::{
    AllocateRef as AllocateContext, ClientsRef, MessageRef as Message, QueuesRef, SelectRef as SelectContext,
};
pub use plugin_api::{
    CheckContext, CheckDecision, ClientView, CqUnit, FilterContext, MessageFields, PluginError, PluginKind, Properties,
    QueueView, Verdict, NO_QUEUE,
};
pub use sdk_wasm_macros::{allocate, filter, queue_selector, txn_check};

pub mod rt;
#[cfg(not(target_arch = "wasm32"))]
pub mod testing;

/// The plugin's configuration (the `config` table of its declaration), passed to
/// [`FromConfig::from_config`] once per instance.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Config {
    entries: BTreeMap<String, String>,
}

impl Config {
    /// A config from key/value pairs.
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Config {
        Config { entries: pairs.into_iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect() }
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries.get(key).map(String::as_str)
    }

    /// The value of `key`, or an error naming it.
    ///
    /// # Errors
    /// When the key is missing.
    pub fn require(&self, key: &str) -> Result<&str, String> {
        self.get(key).ok_or_else(|| format!("missing config key {key:?}"))
    }

    /// `key` parsed as `T`, or `default` when absent.
    ///
    /// # Errors
    /// When the value does not parse.
    pub fn parse_or<T: std::str::FromStr>(&self, key: &str, default: T) -> Result<T, String>
    where
        T::Err: fmt::Display,
    {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v.parse().map_err(|e| format!("config key {key:?}: {e}")),
        }
    }

    /// All entries.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

/// Builds a plugin's state from its configuration (runs in `init`).
pub trait FromConfig: Sized {
    /// # Errors
    /// A message explaining what is wrong with the config; the load fails with it.
    fn from_config(config: &Config) -> Result<Self, String>;
}

impl FromConfig for () {
    fn from_config(_: &Config) -> Result<Self, String> {
        Ok(())
    }
}

/// Plugin state as stored by the runtime glue.
pub type State = Box<dyn Any + Send + Sync>;

/// Everything the macros generate for one plugin; the exports and the test harness call
/// through it.
pub struct PluginDef {
    /// Manifest name.
    pub name: &'static str,
    /// Manifest version.
    pub version: &'static str,
    /// Kind.
    pub kind: PluginKind,
    /// Manifest flags (`plugin_api::manifest::FLAG_*`).
    pub flags: u16,
    /// The message fields the plugin declares it reads (`reads(...)`); `None` declares
    /// nothing and receives topic, tags, keys and properties.
    pub reads: Option<plugin_api::MessageFields>,
    /// Manifest config schema hint.
    pub config_schema: &'static str,
    /// Builds the state from the config.
    pub init: fn(&Config) -> Result<State, String>,
    /// Runs one frame (already parsed, call checked against the kind) into `out`;
    /// returns the number of bytes written or a status code.
    pub call: fn(&(dyn Any + Send + Sync), &plugin_api::frame::Frame<'_>, &mut [u8]) -> Result<usize, i32>,
}

impl PluginDef {
    /// The manifest this plugin describes itself with.
    pub fn manifest(&self) -> plugin_api::Manifest {
        let mut m = plugin_api::Manifest::new(self.name, self.version, self.kind);
        m.flags = self.flags;
        if let Some(fields) = self.reads {
            m.declare_fields(fields);
        }
        m.config_schema = self.config_schema.to_owned();
        m
    }
}

/// Converts a filter function's return value into a [`Verdict`].
pub trait IntoVerdict {
    /// The verdict (`Verdict::Error` for an `Err`, whose message is recorded).
    fn into_verdict(self) -> Verdict;
}

impl IntoVerdict for bool {
    fn into_verdict(self) -> Verdict {
        Verdict::from_bool(self)
    }
}

impl IntoVerdict for Verdict {
    fn into_verdict(self) -> Verdict {
        self
    }
}

impl<T: IntoVerdict, E: fmt::Display> IntoVerdict for Result<T, E> {
    fn into_verdict(self) -> Verdict {
        self.map_or_else(|e| rt::record_error(&e, Verdict::Error), IntoVerdict::into_verdict)
    }
}

/// Converts a selector function's return value into a queue index ([`NO_QUEUE`] for
/// "no choice").
pub trait IntoQueue {
    /// The queue index.
    fn into_queue(self) -> u32;
}

impl IntoQueue for u32 {
    fn into_queue(self) -> u32 {
        self
    }
}

impl IntoQueue for usize {
    fn into_queue(self) -> u32 {
        u32::try_from(self).unwrap_or(NO_QUEUE)
    }
}

impl<T: IntoQueue> IntoQueue for Option<T> {
    fn into_queue(self) -> u32 {
        self.map_or(NO_QUEUE, IntoQueue::into_queue)
    }
}

impl<T: IntoQueue, E: fmt::Display> IntoQueue for Result<T, E> {
    fn into_queue(self) -> u32 {
        self.map_or_else(|e| rt::record_error(&e, NO_QUEUE), IntoQueue::into_queue)
    }
}

/// Converts an allocation function's return value into queue indices.
pub trait IntoAssignment {
    /// The indices, or the error message.
    fn into_assignment(self) -> Result<Vec<u32>, String>;
}

impl IntoAssignment for Vec<u32> {
    fn into_assignment(self) -> Result<Vec<u32>, String> {
        Ok(self)
    }
}

impl IntoAssignment for Vec<usize> {
    fn into_assignment(self) -> Result<Vec<u32>, String> {
        self.into_iter().map(|q| u32::try_from(q).map_err(|_| format!("queue index {q} out of range"))).collect()
    }
}

impl<T: IntoAssignment, E: fmt::Display> IntoAssignment for Result<T, E> {
    fn into_assignment(self) -> Result<Vec<u32>, String> {
        self.map_err(|e| e.to_string()).and_then(IntoAssignment::into_assignment)
    }
}

/// Converts a check-back function's return value into a [`CheckDecision`].
pub trait IntoDecision {
    /// The decision (`CheckDecision::Error` for an `Err`).
    fn into_decision(self) -> CheckDecision;
}

impl IntoDecision for CheckDecision {
    fn into_decision(self) -> CheckDecision {
        self
    }
}

impl<T: IntoDecision, E: fmt::Display> IntoDecision for Result<T, E> {
    fn into_decision(self) -> CheckDecision {
        self.map_or_else(|e| rt::record_error(&e, CheckDecision::Error), IntoDecision::into_decision)
    }
}

/// Logs through the host (`fmq_host_v1.log`) on wasm32, or to stderr elsewhere.
/// Levels: 1 error, 2 warn, 3 info, 4 debug, 5 trace (see [`level`]). The broker
/// writes the line to its log with the plugin's name and keeps it for
/// `ferromq-admin plugin logs`; a plugin may write 100 lines a second.
pub fn log(level: i32, message: &str) {
    rt::host_log(level, message);
}

/// The levels of [`log`] and [`log!`].
pub mod level {
    /// Something failed.
    pub const ERROR: i32 = 1;
    /// Something is wrong but handled.
    pub const WARN: i32 = 2;
    /// Worth knowing.
    pub const INFO: i32 = 3;
    /// Worth knowing while debugging.
    pub const DEBUG: i32 = 4;
    /// Everything.
    pub const TRACE: i32 = 5;
}

/// Formats and logs a line: `sdk_wasm::log!(INFO, "kept {} of {}", kept, n)`, the
/// level one of [`level`]'s names.
#[macro_export]
macro_rules! log {
    ($level:ident, $($arg:tt)+) => {
        $crate::log($crate::level::$level, &::std::format!($($arg)+))
    };
}
