//! The three runtimes behind one internal interface.
//!
//! Every runtime consumes the same input — an encoded [`plugin_api::frame`] — and
//! produces the same output bytes, which the registry validates with the `read_*`
//! functions of `plugin_api::frame`. WASM and native plugins receive the frame as is;
//! the Lua worker parses it (zero-copy) and builds Lua values from it. Sharing the frame
//! keeps one encoder, one validator and one set of semantics for all three.

use plugin_api::{Manifest, PluginError};

#[cfg(feature = "lua")]
pub(crate) mod lua;
#[cfg(feature = "native")]
pub(crate) mod native;
#[cfg(feature = "wasm")]
pub(crate) mod wasm;

/// A loaded plugin version, ready to be called.
pub(crate) trait Backend: Send + Sync {
    /// Runs one frame. `out_cap` is the exact output size (for `allocate`, the maximum).
    /// On success `out` holds exactly the bytes the plugin produced (not yet validated).
    /// `frame` and `out` may be swapped for other buffers of the same contents (the Lua
    /// runtime ships them to its worker thread and back).
    fn invoke(&self, frame: &mut Vec<u8>, out_cap: usize, out: &mut Vec<u8>) -> Result<(), PluginError>;
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
