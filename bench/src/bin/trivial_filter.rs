//! Writes a trivial WASM filter plugin — it accepts every message — to the path given,
//! for end-to-end measurements of the plugin ABI's cost on the pull path
//! (`bench/scripts/plugin_pull.sh`). Built from `plugin_host::testing`'s hand-written
//! WAT guest, so no wasm32 toolchain is needed.
//!
//! Usage: `trivial_filter <out.wasm>`

use anyhow::{Context, Result};
use plugin_api::{MessageFields, PluginKind};
use plugin_host::testing::{Wat, FILTER_ACCEPT_ALL};

fn main() -> Result<()> {
    let out = std::env::args().nth(1).context("usage: trivial_filter <out.wasm>")?;
    // It reads no message field, and says so: its frames carry no strings.
    let wat = Wat::new(PluginKind::Filter, FILTER_ACCEPT_ALL).reads(MessageFields::NONE);
    std::fs::write(&out, wat.bytes()).with_context(|| out.clone())?;
    Ok(())
}
