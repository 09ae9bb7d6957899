//! Plugin kinds, runtimes, per-kind failure policies and resource limits.
//!
//! These are the words used in configuration (`kind = "filter"`, `runtime = "wasm"`,
//! `failure_policy = "pause"`), so their string forms are part of the stable contract:
//! [`FromStr`] and [`fmt::Display`] round-trip, and the optional `serde` feature uses the
//! same snake_case names.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// What a plugin does. A plugin implements exactly one kind.
///
/// The numeric value is the `kind` byte of the manifest (see the crate README).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
#[repr(u8)]
pub enum PluginKind {
    /// Message filter (with an optional pre-filter over consume-queue units).
    Filter = 1,
    /// Queue selector: picks the queue a message is sent to.
    QueueSelector = 2,
    /// Rebalance (queue allocation) strategy of a consumer group.
    Allocation = 3,
    /// Transaction check-back handler for half messages.
    TxnCheck = 4,
}

impl PluginKind {
    /// Every kind, in manifest-byte order.
    pub const ALL: [PluginKind; 4] =
        [PluginKind::Filter, PluginKind::QueueSelector, PluginKind::Allocation, PluginKind::TxnCheck];

    /// The configuration name (`filter`, `queue_selector`, `allocation`, `txn_check`).
    pub const fn as_str(self) -> &'static str {
        match self {
            PluginKind::Filter => "filter",
            PluginKind::QueueSelector => "queue_selector",
            PluginKind::Allocation => "allocation",
            PluginKind::TxnCheck => "txn_check",
        }
    }

    /// Decodes the manifest `kind` byte.
    pub const fn from_u8(v: u8) -> Option<PluginKind> {
        match v {
            1 => Some(PluginKind::Filter),
            2 => Some(PluginKind::QueueSelector),
            3 => Some(PluginKind::Allocation),
            4 => Some(PluginKind::TxnCheck),
            _ => None,
        }
    }

    /// Default limits for this kind (see [`Limits`]).
    pub const fn default_limits(self) -> Limits {
        match self {
            PluginKind::Filter => Limits::new(Duration::from_millis(5), 16 << 20),
            PluginKind::QueueSelector => Limits::new(Duration::from_millis(1), 16 << 20),
            PluginKind::Allocation => Limits::new(Duration::from_millis(100), 64 << 20),
            PluginKind::TxnCheck => Limits::new(Duration::from_secs(1), 64 << 20),
        }
    }
}

impl fmt::Display for PluginKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Error returned when a configuration word is not recognised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownName {
    /// What was being parsed ("plugin kind", "runtime", "failure policy").
    pub what: &'static str,
    /// The word that was given.
    pub given: String,
    /// The accepted words.
    pub expected: &'static [&'static str],
}

impl fmt::Display for UnknownName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown {} {:?}, expected one of {:?}", self.what, self.given, self.expected)
    }
}

impl std::error::Error for UnknownName {}

impl FromStr for PluginKind {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        PluginKind::ALL.into_iter().find(|k| k.as_str() == s).ok_or_else(|| UnknownName {
            what: "plugin kind",
            given: s.to_owned(),
            expected: &["filter", "queue_selector", "allocation", "txn_check"],
        })
    }
}

/// How a plugin is executed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum Runtime {
    /// A WebAssembly core module (sandboxed; the default for untrusted code).
    Wasm,
    /// A Lua 5.4 script (restricted stdlib, memory and instruction limits, hot reload).
    Lua,
    /// A native shared library (trusted: runs in the broker's address space).
    Native,
}

impl Runtime {
    /// The configuration name (`wasm`, `lua`, `native`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Runtime::Wasm => "wasm",
            Runtime::Lua => "lua",
            Runtime::Native => "native",
        }
    }
}

impl fmt::Display for Runtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Runtime {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "wasm" => Ok(Runtime::Wasm),
            "lua" => Ok(Runtime::Lua),
            "native" => Ok(Runtime::Native),
            _ => Err(UnknownName { what: "runtime", given: s.to_owned(), expected: &["wasm", "lua", "native"] }),
        }
    }
}

/// What the host does when a plugin call fails (trap, timeout, memory limit, bad output,
/// plugin-reported error, circuit breaker open).
///
/// Each kind accepts a subset; see [`FailurePolicy::allowed_for`]. The defaults never lose
/// a message and never stall a producer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum FailurePolicy {
    /// Filter (default): stop delivery at the first message that could not be decided;
    /// the consumer's offset does not move past it, so nothing is lost, and the pull is
    /// retried later.
    Pause,
    /// Filter: fail open, deliver the undecided messages.
    Deliver,
    /// Filter: fail closed, drop the undecided messages for this subscription (loses
    /// messages for that group: an explicit opt-in).
    Skip,
    /// Selector and allocation (default): use the built-in strategy (hash of the sharding
    /// argument or round robin; `AllocateMessageQueueAveragely`).
    Builtin,
    /// Selector: fail the send (the producer sees an error).
    Reject,
    /// Allocation: keep the previous assignment for this round.
    KeepPrevious,
    /// Transaction check-back (default): do what RocketMQ does without a plugin, ask a
    /// producer of the group.
    AskProducer,
}

impl FailurePolicy {
    const NAMES: &'static [&'static str] =
        &["pause", "deliver", "skip", "builtin", "reject", "keep_previous", "ask_producer"];

    /// The configuration name.
    pub const fn as_str(self) -> &'static str {
        match self {
            FailurePolicy::Pause => "pause",
            FailurePolicy::Deliver => "deliver",
            FailurePolicy::Skip => "skip",
            FailurePolicy::Builtin => "builtin",
            FailurePolicy::Reject => "reject",
            FailurePolicy::KeepPrevious => "keep_previous",
            FailurePolicy::AskProducer => "ask_producer",
        }
    }

    /// The default policy of a kind.
    pub const fn default_for(kind: PluginKind) -> FailurePolicy {
        match kind {
            PluginKind::Filter => FailurePolicy::Pause,
            PluginKind::QueueSelector | PluginKind::Allocation => FailurePolicy::Builtin,
            PluginKind::TxnCheck => FailurePolicy::AskProducer,
        }
    }

    /// The policies a kind accepts (the default first).
    pub const fn allowed_for(kind: PluginKind) -> &'static [FailurePolicy] {
        match kind {
            PluginKind::Filter => &[FailurePolicy::Pause, FailurePolicy::Deliver, FailurePolicy::Skip],
            PluginKind::QueueSelector => &[FailurePolicy::Builtin, FailurePolicy::Reject],
            PluginKind::Allocation => &[FailurePolicy::Builtin, FailurePolicy::KeepPrevious],
            PluginKind::TxnCheck => &[FailurePolicy::AskProducer],
        }
    }

    /// Whether `kind` accepts this policy.
    pub fn is_allowed_for(self, kind: PluginKind) -> bool {
        FailurePolicy::allowed_for(kind).contains(&self)
    }
}

impl fmt::Display for FailurePolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for FailurePolicy {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [
            FailurePolicy::Pause,
            FailurePolicy::Deliver,
            FailurePolicy::Skip,
            FailurePolicy::Builtin,
            FailurePolicy::Reject,
            FailurePolicy::KeepPrevious,
            FailurePolicy::AskProducer,
        ]
        .into_iter()
        .find(|p| p.as_str() == s)
        .ok_or_else(|| UnknownName {
            what: "failure policy",
            given: s.to_owned(),
            expected: FailurePolicy::NAMES,
        })
    }
}

/// Resource limits of one plugin call / instance.
///
/// | limit | WASM | Lua | native |
/// |---|---|---|---|
/// | `deadline` | epoch interruption (tick granularity) | count hook checks a wall-clock deadline | measured only: an overrun of a timed call (one in eight; every call once one failed) counts as a timeout |
/// | `memory_bytes` | linear memory cap per instance | `Lua::set_memory_limit` per VM | not enforced |
/// | `instructions` | fuel, when the registry enables fuel | VM instructions (count hook) | not enforced |
/// | `max_batch` | records per call; larger batches are split by the host | same | same |
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Wall-clock budget of one call.
    pub deadline: Duration,
    /// Memory cap of one instance (WASM linear memory, Lua heap).
    pub memory_bytes: u64,
    /// Instruction budget of one call, if any.
    pub instructions: Option<u64>,
    /// Largest number of records in one call.
    pub max_batch: u32,
}

impl Limits {
    /// Limits with the given deadline and memory cap, no instruction budget and a
    /// maximum batch of 1024.
    pub const fn new(deadline: Duration, memory_bytes: u64) -> Limits {
        Limits { deadline, memory_bytes, instructions: None, max_batch: 1024 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for k in PluginKind::ALL {
            assert_eq!(k.as_str().parse::<PluginKind>().unwrap(), k);
            assert_eq!(PluginKind::from_u8(k as u8), Some(k));
            assert!(FailurePolicy::default_for(k).is_allowed_for(k));
            assert_eq!(FailurePolicy::allowed_for(k)[0], FailurePolicy::default_for(k));
        }
        for r in [Runtime::Wasm, Runtime::Lua, Runtime::Native] {
            assert_eq!(r.as_str().parse::<Runtime>().unwrap(), r);
        }
        for n in FailurePolicy::NAMES {
            assert_eq!(n.parse::<FailurePolicy>().unwrap().as_str(), *n);
        }
        let err = "filtre".parse::<PluginKind>().unwrap_err();
        assert!(err.to_string().contains("unknown plugin kind \"filtre\""));
    }

    #[test]
    fn policies_are_checked_per_kind() {
        assert!(!FailurePolicy::Skip.is_allowed_for(PluginKind::QueueSelector));
        assert!(FailurePolicy::Skip.is_allowed_for(PluginKind::Filter));
        assert!(FailurePolicy::KeepPrevious.is_allowed_for(PluginKind::Allocation));
    }
}
