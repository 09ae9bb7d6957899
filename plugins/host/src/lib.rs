//! Plugin registry and runtimes (WASM, Lua, native).
//!
//! Filled by the plugin-platform issue; empty until then.
