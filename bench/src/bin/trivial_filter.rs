//! Writes a trivial WASM filter plugin — it accepts every message — to the path given,
//! for end-to-end measurements of the plugin ABI's cost on the pull path
//! (`bench/scripts/plugin_pull.sh`). Built from `plugin_host::testing`'s hand-written
//! WAT guest, so no wasm32 toolchain is needed.
//!
//! Usage: `trivial_filter <out.wasm> [fields]` — `fields` names the message fields it
//! declares it reads, comma-separated (`tags`, `tags,keys`, ...); none by default.

use anyhow::{Context, Result};
use plugin_api::{MessageFields, PluginKind};
use plugin_host::testing::{Wat, FILTER_ACCEPT_ALL};

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let out = args.next().context("usage: trivial_filter <out.wasm> [fields]")?;
    // By default it reads no message field, and says so: its frames carry no strings,
    // and the broker parses no record for it.
    let mut fields = MessageFields::NONE;
    for name in args.next().iter().flat_map(|a| a.split(',')).filter(|n| !n.is_empty()) {
        fields = fields.union(MessageFields::from_name(name).with_context(|| format!("unknown field {name:?}"))?);
    }
    let wat = Wat::new(PluginKind::Filter, FILTER_ACCEPT_ALL).reads(fields);
    std::fs::write(&out, wat.bytes()).with_context(|| out.clone())?;
    Ok(())
}
