//! The errors a plugin call or a plugin load can end with.
//!
//! Every runtime maps its own failures onto [`PluginError`] (a wasm trap, a Lua error, a
//! native panic caught by the shim), so callers and metrics see one vocabulary. Hot-path
//! callers usually don't match on the error: the host applies the binding's
//! [`FailurePolicy`](crate::FailurePolicy) and counts the error under its
//! [`PluginErrorKind`].

use std::fmt;
use std::time::Duration;

/// Why a plugin call or load failed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PluginError {
    /// The plugin crashed: a wasm trap, a Lua runtime error, a panic in a native plugin.
    /// A WASM instance is discarded after a trap; a Lua VM is kept.
    Trap {
        /// The trap or error message.
        message: String,
    },
    /// The call ran past its wall-clock deadline and was interrupted (or, for native
    /// plugins, overran and was counted afterwards).
    Timeout {
        /// The configured budget.
        deadline: Duration,
    },
    /// The plugin tried to grow its memory past the configured cap.
    MemoryLimit {
        /// The configured cap in bytes.
        limit: u64,
    },
    /// The call used up its instruction budget (Lua instructions, WASM fuel).
    InstructionLimit {
        /// The configured budget.
        budget: u64,
    },
    /// The plugin returned something that does not follow the ABI: wrong length, an
    /// out-of-range queue index, an unknown decision code.
    BadOutput {
        /// What was wrong.
        reason: String,
    },
    /// The plugin reported an error itself (a negative status code, `nil, "msg"` in Lua).
    Failed {
        /// The status code (negative; see [`status`](crate::status)).
        code: i32,
        /// The plugin's message, if it gave one.
        message: String,
    },
    /// `init(config)` failed, or the manifest does not match the configuration.
    Init {
        /// The plugin's message or the mismatch.
        message: String,
    },
    /// The plugin was built for another ABI version; it is refused at load.
    AbiMismatch {
        /// The version the plugin declares.
        found: u32,
        /// The version this host implements ([`PLUGIN_ABI_VERSION`](crate::PLUGIN_ABI_VERSION)).
        supported: u32,
        /// Where the mismatch was found (marker export, manifest, native vtable).
        detail: String,
    },
    /// The artifact could not be read or compiled (missing file, corrupt module, syntax
    /// error in a script, missing symbol).
    Load {
        /// The artifact path or name.
        path: String,
        /// What went wrong.
        reason: String,
    },
    /// The plugin cannot be called right now: its circuit breaker is open, its worker is
    /// gone, the runtime is disabled, or the instance pool is exhausted.
    Unavailable {
        /// Why.
        reason: String,
    },
}

impl PluginError {
    /// The error's class, used for counters and policy decisions.
    pub fn kind(&self) -> PluginErrorKind {
        match self {
            PluginError::Trap { .. } => PluginErrorKind::Trap,
            PluginError::Timeout { .. } => PluginErrorKind::Timeout,
            PluginError::MemoryLimit { .. } => PluginErrorKind::MemoryLimit,
            PluginError::InstructionLimit { .. } => PluginErrorKind::InstructionLimit,
            PluginError::BadOutput { .. } => PluginErrorKind::BadOutput,
            PluginError::Failed { .. } => PluginErrorKind::Failed,
            PluginError::Init { .. } => PluginErrorKind::Init,
            PluginError::AbiMismatch { .. } => PluginErrorKind::AbiMismatch,
            PluginError::Load { .. } => PluginErrorKind::Load,
            PluginError::Unavailable { .. } => PluginErrorKind::Unavailable,
        }
    }

    /// Shorthand for [`PluginError::BadOutput`].
    pub fn bad_output(reason: impl Into<String>) -> PluginError {
        PluginError::BadOutput { reason: reason.into() }
    }

    /// Shorthand for [`PluginError::Trap`].
    pub fn trap(message: impl Into<String>) -> PluginError {
        PluginError::Trap { message: message.into() }
    }

    /// Shorthand for [`PluginError::Init`].
    pub fn init(message: impl Into<String>) -> PluginError {
        PluginError::Init { message: message.into() }
    }

    /// Shorthand for [`PluginError::Load`].
    pub fn load(path: impl Into<String>, reason: impl Into<String>) -> PluginError {
        PluginError::Load { path: path.into(), reason: reason.into() }
    }

    /// Shorthand for [`PluginError::Unavailable`].
    pub fn unavailable(reason: impl Into<String>) -> PluginError {
        PluginError::Unavailable { reason: reason.into() }
    }
}

impl fmt::Display for PluginError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PluginError::Trap { message } => write!(f, "plugin trapped: {message}"),
            PluginError::Timeout { deadline } => {
                write!(f, "plugin call exceeded its deadline of {deadline:?}")
            }
            PluginError::MemoryLimit { limit } => {
                write!(f, "plugin exceeded its memory limit of {limit} bytes")
            }
            PluginError::InstructionLimit { budget } => {
                write!(f, "plugin exceeded its budget of {budget} instructions")
            }
            PluginError::BadOutput { reason } => write!(f, "plugin returned bad output: {reason}"),
            PluginError::Failed { code, message } if message.is_empty() => {
                write!(f, "plugin reported error code {code}")
            }
            PluginError::Failed { code, message } => {
                write!(f, "plugin reported error code {code}: {message}")
            }
            PluginError::Init { message } => write!(f, "plugin init failed: {message}"),
            PluginError::AbiMismatch { found, supported, detail } => {
                write!(f, "plugin ABI version {found} is not supported by this host (supports {supported}; {detail})")
            }
            PluginError::Load { path, reason } => write!(f, "cannot load plugin {path}: {reason}"),
            PluginError::Unavailable { reason } => write!(f, "plugin unavailable: {reason}"),
        }
    }
}

impl std::error::Error for PluginError {}

/// The class of a [`PluginError`], for counters (`errors{kind=...}`) and for matching
/// without caring about the payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum PluginErrorKind {
    /// [`PluginError::Trap`]
    Trap = 0,
    /// [`PluginError::Timeout`]
    Timeout,
    /// [`PluginError::MemoryLimit`]
    MemoryLimit,
    /// [`PluginError::InstructionLimit`]
    InstructionLimit,
    /// [`PluginError::BadOutput`]
    BadOutput,
    /// [`PluginError::Failed`]
    Failed,
    /// [`PluginError::Init`]
    Init,
    /// [`PluginError::AbiMismatch`]
    AbiMismatch,
    /// [`PluginError::Load`]
    Load,
    /// [`PluginError::Unavailable`]
    Unavailable,
}

impl PluginErrorKind {
    /// Number of kinds (for counter arrays indexed by `kind as usize`).
    pub const COUNT: usize = 10;

    /// Every kind, in index order.
    pub const ALL: [PluginErrorKind; PluginErrorKind::COUNT] = [
        PluginErrorKind::Trap,
        PluginErrorKind::Timeout,
        PluginErrorKind::MemoryLimit,
        PluginErrorKind::InstructionLimit,
        PluginErrorKind::BadOutput,
        PluginErrorKind::Failed,
        PluginErrorKind::Init,
        PluginErrorKind::AbiMismatch,
        PluginErrorKind::Load,
        PluginErrorKind::Unavailable,
    ];

    /// A snake_case label for metrics.
    pub const fn as_str(self) -> &'static str {
        match self {
            PluginErrorKind::Trap => "trap",
            PluginErrorKind::Timeout => "timeout",
            PluginErrorKind::MemoryLimit => "memory_limit",
            PluginErrorKind::InstructionLimit => "instruction_limit",
            PluginErrorKind::BadOutput => "bad_output",
            PluginErrorKind::Failed => "failed",
            PluginErrorKind::Init => "init",
            PluginErrorKind::AbiMismatch => "abi_mismatch",
            PluginErrorKind::Load => "load",
            PluginErrorKind::Unavailable => "unavailable",
        }
    }
}

impl fmt::Display for PluginErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Status codes returned across the ABI (WASM exports and native vtable functions).
///
/// Non-negative values are success (for `call` and `describe`: the number of bytes
/// written). Plugins may return other negative values; the host reports them as
/// [`PluginError::Failed`] with the code.
pub mod status {
    /// Success (for `init`).
    pub const OK: i32 = 0;
    /// The plugin failed; `last_error` may say why.
    pub const FAILED: i32 = -1;
    /// The input frame could not be read (bad magic, unknown major version, truncated).
    pub const BAD_INPUT: i32 = -2;
    /// The frame's `call` is not implemented by this plugin.
    pub const UNSUPPORTED: i32 = -3;
    /// The output area is too small (a host bug: the host always sizes it exactly).
    pub const OUTPUT_TOO_SMALL: i32 = -4;
    /// The plugin panicked (caught by the Rust SDK shim).
    pub const PANIC: i32 = -5;
    /// `init` was not called, or failed, before `call`.
    pub const NOT_INITIALIZED: i32 = -6;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_index_their_array() {
        for (i, k) in PluginErrorKind::ALL.iter().enumerate() {
            assert_eq!(*k as usize, i);
        }
    }

    #[test]
    fn display_is_lowercase_without_period() {
        let errs = [
            PluginError::trap("unreachable"),
            PluginError::Timeout { deadline: Duration::from_millis(5) },
            PluginError::MemoryLimit { limit: 1 },
            PluginError::AbiMismatch { found: 2, supported: 1, detail: "manifest".into() },
            PluginError::Failed { code: -1, message: String::new() },
        ];
        for e in errs {
            let s = e.to_string();
            assert!(s.starts_with(|c: char| c.is_lowercase()), "{s}");
            assert!(!s.ends_with('.'), "{s}");
        }
    }
}
