//! Writes a trivial WASM filter plugin — it accepts every message — to the path given,
//! for end-to-end measurements of the plugin ABI's cost on the pull path
//! (`bench/scripts/plugin_pull.sh`). Built from `plugin_host::testing`'s hand-written
//! WAT guest, so no wasm32 toolchain is needed.
//!
//! Usage: `trivial_filter <out.wasm>`

use anyhow::{Context, Result};
use plugin_api::PluginKind;
use plugin_host::testing::{Wat, FILTER_ACCEPT_ALL};

fn main() -> Result<()> {
    let out = std::env::args().nth(1).context("usage: trivial_filter <out.wasm>")?;
    std::fs::write(&out, Wat::new(PluginKind::Filter, FILTER_ACCEPT_ALL).bytes()).with_context(|| out.clone())?;
    Ok(())
}
