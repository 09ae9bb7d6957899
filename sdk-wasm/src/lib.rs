//! Guest-side SDK for FerroMQ WASM plugins.
//!
//! Filled by the plugin-platform issue; empty until then.
