//! The stable plugin contract shared by the broker, the client and plugin authors.
//!
//! Filled by the plugin-platform issue; empty until then.
