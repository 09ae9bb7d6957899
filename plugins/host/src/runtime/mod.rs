//! The three runtimes behind one internal interface.
//!
//! Every runtime consumes the same input — a [`plugin_api::frame`] — and produces the
//! same output bytes, which the registry validates with the `read_*` functions of
//! `plugin_api::frame`. WASM writes message frames straight into the instance's memory;
//! native plugins receive the frame's bytes; the Lua runtime parses them (zero-copy) and
//! builds Lua values from them. Sharing the frame keeps one encoder, one validator and
//! one set of semantics for all three.

use plugin_api::frame::{FrameBuf, MessageFrame};
use plugin_api::{Manifest, PluginError};

/// The input frame of one call.
// Built without any runtime (the `config` crate's view), nothing consumes it.
#[cfg_attr(not(any(feature = "wasm", feature = "lua", feature = "native")), allow(dead_code))]
pub(crate) enum Input<'a> {
    /// Already encoded (the cold calls: `init`, `prefilter`, `allocate`).
    Bytes(&'a [u8]),
    /// A planned message frame (`filter`, `select`, `check`): a runtime writes it where
    /// the plugin reads it, so a WASM call copies nothing twice.
    Messages(&'a MessageFrame<'a, 'a>),
}

impl Input<'_> {
    /// The frame's length in bytes.
    #[cfg(feature = "wasm")]
    pub(crate) fn len(&self) -> usize {
        match self {
            Input::Bytes(b) => b.len(),
            Input::Messages(f) => f.len(),
        }
    }

    /// Writes the frame into `dst`, which is exactly [`len`](Self::len) bytes.
    #[cfg(feature = "wasm")]
    pub(crate) fn write(&self, dst: &mut [u8]) {
        match self {
            Input::Bytes(b) => dst.copy_from_slice(b),
            Input::Messages(f) => f.write(dst),
        }
    }

    /// The frame as contiguous bytes, written into `scratch` if it is not encoded yet.
    #[cfg(any(feature = "lua", feature = "native"))]
    pub(crate) fn bytes<'s>(&'s self, scratch: &'s mut FrameBuf) -> &'s [u8] {
        match self {
            Input::Bytes(b) => b,
            Input::Messages(f) => scratch.write(f),
        }
    }
}

#[cfg(feature = "lua")]
pub(crate) mod lua;
#[cfg(feature = "native")]
pub(crate) mod native;
#[cfg(feature = "wasm")]
pub(crate) mod wasm;

/// A loaded plugin version, ready to be called.
pub(crate) trait Backend: Send + Sync {
    /// Runs one frame. `out_cap` is the exact output size (for `allocate`, the maximum).
    /// On success returns `n`: `out[..n]` holds the bytes the plugin produced (not yet
    /// validated); `out` may be longer, so a runtime can keep it grown between calls.
    /// `scratch` is a reusable buffer for runtimes that need the frame's bytes in host
    /// memory.
    fn invoke(
        &self,
        input: &Input<'_>,
        scratch: &mut FrameBuf,
        out_cap: usize,
        out: &mut Vec<u8>,
    ) -> Result<usize, PluginError>;
}

/// What a runtime returns from a successful load.
pub(crate) struct LoadedPlugin {
    pub(crate) backend: Box<dyn Backend>,
    pub(crate) manifest: Manifest,
}

/// Encodes the `init` frame for a plugin's config map.
#[cfg(any(feature = "wasm", feature = "native"))]
pub(crate) fn config_frame(config: &std::collections::BTreeMap<String, String>) -> Result<Vec<u8>, PluginError> {
    let mut buf = Vec::new();
    plugin_api::frame::encode_config(&mut buf, config.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .map_err(|e| PluginError::init(format!("config: {e}")))?;
    Ok(buf)
}
