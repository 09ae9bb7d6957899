//! The binary batch layout ("frame") shared by the WASM and native boundaries.
//!
//! One host→plugin call carries one frame: a fixed header, a call-specific context
//! block, optional secondary tables (queues, clients), an array of fixed-size records,
//! and an arena holding every variable-length field. Variable-length fields are *spans*:
//! `(u32 offset from the frame start, u32 length)`. Everything is little-endian. The
//! layout is specified byte by byte in `plugin-api/README.md`; this module is the
//! reference implementation of both sides:
//!
//! - the host encodes with [`encode_filter`], [`encode_prefilter`], [`encode_select`],
//!   [`encode_allocate`], [`encode_check`] and [`encode_config`] into a reusable
//!   `Vec<u8>`, and decodes results with the `read_*` functions, which validate the
//!   plugin's output (a bad output is
//!   [`PluginError::BadOutput`](crate::PluginError::BadOutput), never a panic);
//! - the guest parses with [`Frame::parse`] and reads records in place through
//!   [`MessageRef`], [`QueuesRef`], [`ClientsRef`] and [`ConfigRef`], without copying or
//!   allocating.
//!
//! Forward compatibility inside ABI major 1: the host may append fields to the header,
//! to contexts and to records, and says how big they are (`header_size`, `context_size`,
//! `record_size`, table strides). Readers use those sizes, never their own constants, and
//! read a field beyond the given size as zero. A reader never panics on a malformed
//! frame: out-of-range spans read as empty.
//!
//! ```text
//! +--------+-----------+------------------+-------------------------+----------------+
//! | header | context   | tables (queues,  | records                 | arena (strings,|
//! | 40 B   | (8-padded)|  clients; 8-pad) | count x record_size     |  properties,   |
//! |        |           |                  | (8-aligned)             |  bodies, args) |
//! +--------+-----------+------------------+-------------------------+----------------+
//! ```
//!
//! One file per part: `layout` (the offsets both sides share), `encode` (the host's
//! encoders into a `Vec<u8>`), `message_frame` (the planned, one-pass writer of message
//! frames, the host's hot path), `decode` (the guest's in-place reader) and `output` (the
//! results a plugin writes and the host validates). Everything is re-exported here: the
//! paths are `plugin_api::frame::*`, whichever file an item lives in.

use std::fmt;

use crate::PluginKind;

mod decode;
mod encode;
mod message_frame;
mod output;

pub use decode::{AllocateRef, ClientsRef, ConfigRef, Frame, MessageRef, QueuesRef, SelectRef};
pub use encode::{encode_allocate, encode_check, encode_config, encode_filter, encode_prefilter, encode_select};
pub use message_frame::{FrameBuf, MessageFrame};
pub use output::{
    output_len, put_decision, put_u32_le, read_assignment, read_decisions, read_queue_indices, read_verdicts,
};

pub mod layout;

/// Header flag: message records carry their body span.
pub const FLAG_BODIES: u16 = 1;

/// Which function a frame is for: the `call` byte of the header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Call {
    /// `init(config)`: records are config entries; no output.
    Init = 0,
    /// Filter pre-stage over consume-queue units; output: one verdict byte per record.
    Prefilter = 1,
    /// Filter over messages; output: one verdict byte per record.
    Filter = 2,
    /// Queue selection; output: one `u32` queue index per record.
    Select = 3,
    /// Queue allocation; no records; output: up to `queue count` `u32` queue indices.
    Allocate = 4,
    /// Transaction check-back; output: one 8-byte decision record per record.
    Check = 5,
}

impl Call {
    /// Decodes the header's call byte.
    pub const fn from_u8(v: u8) -> Option<Call> {
        match v {
            0 => Some(Call::Init),
            1 => Some(Call::Prefilter),
            2 => Some(Call::Filter),
            3 => Some(Call::Select),
            4 => Some(Call::Allocate),
            5 => Some(Call::Check),
            _ => None,
        }
    }

    /// The plugin kind that implements this call (`None` for `Init`, which all kinds have).
    pub const fn kind(self) -> Option<PluginKind> {
        match self {
            Call::Init => None,
            Call::Prefilter | Call::Filter => Some(PluginKind::Filter),
            Call::Select => Some(PluginKind::QueueSelector),
            Call::Allocate => Some(PluginKind::Allocation),
            Call::Check => Some(PluginKind::TxnCheck),
        }
    }

    /// The snake_case name used in docs and Lua (`init`, `prefilter`, ...).
    pub const fn as_str(self) -> &'static str {
        match self {
            Call::Init => "init",
            Call::Prefilter => "prefilter",
            Call::Filter => "filter",
            Call::Select => "select",
            Call::Allocate => "allocate",
            Call::Check => "check",
        }
    }

    const fn min_record_size(self) -> usize {
        match self {
            Call::Init => layout::config_entry::SIZE,
            Call::Prefilter => layout::cq_unit::SIZE,
            Call::Filter | Call::Select | Call::Check => layout::message::SIZE,
            Call::Allocate => 0,
        }
    }

    const fn min_context_size(self) -> usize {
        match self {
            Call::Init => 0,
            Call::Prefilter | Call::Filter => layout::filter_context::SIZE,
            Call::Select => layout::select_context::SIZE,
            Call::Allocate => layout::allocate_context::SIZE,
            Call::Check => layout::check_context::SIZE,
        }
    }
}

/// Why a frame could not be built or read.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FrameError {
    /// The encoded frame would exceed 4 GiB (offsets are `u32`).
    TooLarge,
    /// The first four bytes are not `FMQB`.
    BadMagic,
    /// The frame's major version is not one this reader knows.
    UnsupportedVersion(u16),
    /// The call byte is unknown.
    UnknownCall(u8),
    /// A region (header, context, records, table) lies outside the frame or is smaller
    /// than its v1 size.
    BadLayout(&'static str),
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::TooLarge => f.write_str("frame would exceed 4 GiB"),
            FrameError::BadMagic => f.write_str("bad frame magic"),
            FrameError::UnsupportedVersion(v) => write!(f, "unsupported frame version {v}"),
            FrameError::UnknownCall(c) => write!(f, "unknown call code {c}"),
            FrameError::BadLayout(what) => write!(f, "malformed frame: {what}"),
        }
    }
}

impl std::error::Error for FrameError {}
