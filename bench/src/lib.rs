//! Load generators (store-level and end-to-end over the wire).
//!
//! Filled by the store and broker issues; empty until then.
