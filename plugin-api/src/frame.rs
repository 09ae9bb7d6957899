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
//!   plugin's output (a bad output is [`PluginError::BadOutput`], never a panic);
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

use std::fmt;

use crate::error::PluginError;
use crate::types::{
    AllocateInput, CheckContext, CheckDecision, ClientView, CqUnit, FilterContext, MessageView, Properties, QueueView,
    SelectContext, Verdict, NO_QUEUE,
};
use crate::PluginKind;

/// Byte offsets and sizes of the v1 layout. The README's tables are generated from the
/// same numbers; a test checks they agree with the encoder.
pub mod layout {
    /// Frame magic, bytes `F M Q B`.
    pub const MAGIC: [u8; 4] = *b"FMQB";
    /// Frame (major) version. Equal to the ABI major version.
    pub const VERSION: u16 = 1;
    /// Size of the v1 header.
    pub const HEADER_SIZE: usize = 40;
    /// Size of a span: `u32 offset, u32 len`.
    pub const SPAN_SIZE: usize = 8;
    /// Size of a table descriptor: `u32 offset, u32 count, u32 stride`.
    pub const TABLE_SIZE: usize = 12;

    /// Header field offsets.
    pub mod header {
        /// `[u8; 4]` magic `FMQB`.
        pub const MAGIC: usize = 0;
        /// `u16` frame version (1).
        pub const VERSION: usize = 4;
        /// `u16` header size (40).
        pub const HEADER_SIZE: usize = 6;
        /// `u8` call code ([`Call`](crate::frame::Call)).
        pub const CALL: usize = 8;
        /// `u8` reserved, 0.
        pub const RESERVED0: usize = 9;
        /// `u16` flags ([`FLAG_BODIES`](crate::frame::FLAG_BODIES)).
        pub const FLAGS: usize = 10;
        /// `u32` total frame length in bytes.
        pub const FRAME_LEN: usize = 12;
        /// `u32` number of records.
        pub const RECORD_COUNT: usize = 16;
        /// `u32` size of one record (stride).
        pub const RECORD_SIZE: usize = 20;
        /// `u32` offset of the first record (8-aligned).
        pub const RECORDS_OFFSET: usize = 24;
        /// `u32` offset of the context block (0 = none).
        pub const CONTEXT_OFFSET: usize = 28;
        /// `u32` size of the context block.
        pub const CONTEXT_SIZE: usize = 32;
        /// `u32` reserved, 0.
        pub const RESERVED1: usize = 36;
    }

    /// Message record (calls `filter`, `select`, `check`), v1 size 104.
    pub mod message {
        /// `i64` consume-queue offset.
        pub const QUEUE_OFFSET: usize = 0;
        /// `i64` commit-log offset.
        pub const COMMIT_LOG_OFFSET: usize = 8;
        /// `i64` store time, epoch ms.
        pub const STORE_TIMESTAMP: usize = 16;
        /// `i64` born time, epoch ms.
        pub const BORN_TIMESTAMP: usize = 24;
        /// `i64` tags code (Java `String.hashCode` of the tags).
        pub const TAGS_CODE: usize = 32;
        /// `u32` queue id.
        pub const QUEUE_ID: usize = 40;
        /// `u32` reconsume times.
        pub const RECONSUME_TIMES: usize = 44;
        /// `u32` body size in bytes (also when the body is not included).
        pub const BODY_SIZE: usize = 48;
        /// `u32` check-back count (check calls), else 0.
        pub const CHECK_COUNT: usize = 52;
        /// span: topic (UTF-8).
        pub const TOPIC: usize = 56;
        /// span: tags (UTF-8).
        pub const TAGS: usize = 64;
        /// span: keys (UTF-8).
        pub const KEYS: usize = 72;
        /// span: properties (RocketMQ encoding).
        pub const PROPERTIES: usize = 80;
        /// span: body (empty unless the frame has `FLAG_BODIES`).
        pub const BODY: usize = 88;
        /// span: selector argument (select calls), else empty.
        pub const ARG: usize = 96;
        /// v1 record size.
        pub const SIZE: usize = 104;
    }

    /// Consume-queue unit record (call `prefilter`), v1 size 32.
    pub mod cq_unit {
        /// `i64` consume-queue offset.
        pub const QUEUE_OFFSET: usize = 0;
        /// `i64` store time, epoch ms (0 if unknown).
        pub const STORE_TIMESTAMP: usize = 8;
        /// `i64` tags code.
        pub const TAGS_CODE: usize = 16;
        /// `u32` message size.
        pub const MSG_SIZE: usize = 24;
        /// `u32` reserved, 0.
        pub const RESERVED: usize = 28;
        /// v1 record size.
        pub const SIZE: usize = 32;
    }

    /// Config entry record (call `init`), v1 size 16.
    pub mod config_entry {
        /// span: key (UTF-8).
        pub const KEY: usize = 0;
        /// span: value (UTF-8).
        pub const VALUE: usize = 8;
        /// v1 record size.
        pub const SIZE: usize = 16;
    }

    /// Context of `prefilter` and `filter` calls, v1 size 32.
    pub mod filter_context {
        /// span: topic.
        pub const TOPIC: usize = 0;
        /// span: consumer group.
        pub const GROUP: usize = 8;
        /// span: expression type.
        pub const EXPRESSION_TYPE: usize = 16;
        /// span: expression.
        pub const EXPRESSION: usize = 24;
        /// v1 size.
        pub const SIZE: usize = 32;
    }

    /// Context of `select` calls, v1 size 24.
    pub mod select_context {
        /// span: topic.
        pub const TOPIC: usize = 0;
        /// table: queue records.
        pub const QUEUES: usize = 8;
        /// `u32` reserved, 0.
        pub const RESERVED: usize = 20;
        /// v1 size.
        pub const SIZE: usize = 24;
    }

    /// Context of `allocate` calls, v1 size 48.
    pub mod allocate_context {
        /// span: consumer group.
        pub const GROUP: usize = 0;
        /// span: current client id.
        pub const CURRENT_CLIENT: usize = 8;
        /// table: queue records.
        pub const QUEUES: usize = 16;
        /// table: client records.
        pub const CLIENTS: usize = 28;
        /// `u32` index of the current client in the client table (`u32::MAX` if absent).
        pub const CURRENT_INDEX: usize = 40;
        /// `u32` reserved, 0.
        pub const RESERVED: usize = 44;
        /// v1 size.
        pub const SIZE: usize = 48;
    }

    /// Context of `check` calls, v1 size 16.
    pub mod check_context {
        /// `i64` broker clock, epoch ms.
        pub const NOW_MS: usize = 0;
        /// `u32` transactionCheckMax.
        pub const MAX_CHECKS: usize = 8;
        /// `u32` reserved, 0.
        pub const RESERVED: usize = 12;
        /// v1 size.
        pub const SIZE: usize = 16;
    }

    /// Queue record (select and allocate tables), v1 size 24.
    pub mod queue {
        /// span: broker name.
        pub const BROKER_NAME: usize = 0;
        /// `u32` queue id.
        pub const QUEUE_ID: usize = 8;
        /// `u32` RocketMQ perm bits (4 read, 2 write).
        pub const PERM: usize = 12;
        /// span: zone.
        pub const ZONE: usize = 16;
        /// v1 size.
        pub const SIZE: usize = 24;
    }

    /// Client record (allocate table), v1 size 16.
    pub mod client {
        /// span: client id.
        pub const CLIENT_ID: usize = 0;
        /// span: zone.
        pub const ZONE: usize = 8;
        /// v1 size.
        pub const SIZE: usize = 16;
    }

    /// Check-back output record, size 8.
    pub mod decision {
        /// `u8` decision code: 0 ask producer, 1 commit, 2 rollback, 3 defer, 255 error.
        pub const CODE: usize = 0;
        /// `u32` defer delay in ms (code 3), else 0.
        pub const DEFER_MS: usize = 4;
        /// size.
        pub const SIZE: usize = 8;
    }
}

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

// ---------------------------------------------------------------------------------------
// Encoding (host side)
// ---------------------------------------------------------------------------------------

const fn pad8(n: usize) -> usize {
    (n + 7) & !7
}

/// Fixed-position writes into a frame buffer whose fixed part is already zero-filled,
/// plus appends to the arena at its end.
struct Writer<'b> {
    buf: &'b mut Vec<u8>,
}

impl Writer<'_> {
    #[inline]
    fn put_u16(&mut self, at: usize, v: u16) {
        self.buf[at..at + 2].copy_from_slice(&v.to_le_bytes());
    }
    #[inline]
    fn put_u32(&mut self, at: usize, v: u32) {
        self.buf[at..at + 4].copy_from_slice(&v.to_le_bytes());
    }
    #[inline]
    fn put_i64(&mut self, at: usize, v: i64) {
        self.buf[at..at + 8].copy_from_slice(&v.to_le_bytes());
    }
    #[inline]
    fn put_span(&mut self, at: usize, bytes: &[u8]) -> Result<(), FrameError> {
        if bytes.is_empty() {
            return Ok(());
        }
        let off = self.buf.len();
        if off + bytes.len() > u32::MAX as usize {
            return Err(FrameError::TooLarge);
        }
        self.buf.extend_from_slice(bytes);
        self.put_u32(at, off as u32);
        self.put_u32(at + 4, bytes.len() as u32);
        Ok(())
    }
    #[inline]
    fn put_table(&mut self, at: usize, offset: usize, count: usize, stride: usize) {
        self.put_u32(at, offset as u32);
        self.put_u32(at + 4, count as u32);
        self.put_u32(at + 8, stride as u32);
    }
}

/// Positions of the fixed regions of a frame being built.
struct Plan {
    context: usize,
    tables: usize,
    records: usize,
}

/// Starts a frame: clears `buf`, reserves and zero-fills the fixed part, writes the header
/// (frame length is patched by `finish`).
fn begin(
    buf: &mut Vec<u8>,
    call: Call,
    flags: u16,
    context_size: usize,
    tables_size: usize,
    record_count: usize,
    record_size: usize,
) -> Result<Plan, FrameError> {
    use layout::header as h;
    let context = if context_size == 0 { 0 } else { layout::HEADER_SIZE };
    let tables = layout::HEADER_SIZE + pad8(context_size);
    let records = tables + pad8(tables_size);
    let fixed = record_count
        .checked_mul(record_size)
        .and_then(|r| r.checked_add(records))
        .filter(|&n| n <= u32::MAX as usize)
        .ok_or(FrameError::TooLarge)?;
    buf.clear();
    buf.resize(fixed, 0);
    let mut w = Writer { buf };
    w.buf[h::MAGIC..h::MAGIC + 4].copy_from_slice(&layout::MAGIC);
    w.put_u16(h::VERSION, layout::VERSION);
    w.put_u16(h::HEADER_SIZE, layout::HEADER_SIZE as u16);
    w.buf[h::CALL] = call as u8;
    w.put_u16(h::FLAGS, flags);
    w.put_u32(h::RECORD_COUNT, record_count as u32);
    w.put_u32(h::RECORD_SIZE, record_size as u32);
    w.put_u32(h::RECORDS_OFFSET, records as u32);
    w.put_u32(h::CONTEXT_OFFSET, context as u32);
    w.put_u32(h::CONTEXT_SIZE, context_size as u32);
    Ok(Plan { context, tables, records })
}

fn finish(buf: &mut [u8]) {
    let len = buf.len() as u32;
    buf[layout::header::FRAME_LEN..layout::header::FRAME_LEN + 4].copy_from_slice(&len.to_le_bytes());
}

fn put_filter_context(w: &mut Writer<'_>, at: usize, ctx: &FilterContext<'_>) -> Result<(), FrameError> {
    use layout::filter_context as c;
    w.put_span(at + c::TOPIC, ctx.topic.as_bytes())?;
    w.put_span(at + c::GROUP, ctx.group.as_bytes())?;
    w.put_span(at + c::EXPRESSION_TYPE, ctx.expression_type.as_bytes())?;
    w.put_span(at + c::EXPRESSION, ctx.expression.as_bytes())
}

fn put_message(w: &mut Writer<'_>, at: usize, m: &MessageView<'_>, bodies: bool) -> Result<(), FrameError> {
    use layout::message as r;
    w.put_i64(at + r::QUEUE_OFFSET, m.queue_offset);
    w.put_i64(at + r::COMMIT_LOG_OFFSET, m.commit_log_offset);
    w.put_i64(at + r::STORE_TIMESTAMP, m.store_timestamp);
    w.put_i64(at + r::BORN_TIMESTAMP, m.born_timestamp);
    w.put_i64(at + r::TAGS_CODE, m.tags_code);
    w.put_u32(at + r::QUEUE_ID, m.queue_id);
    w.put_u32(at + r::RECONSUME_TIMES, m.reconsume_times);
    w.put_u32(at + r::BODY_SIZE, m.body_size);
    w.put_u32(at + r::CHECK_COUNT, m.check_count);
    w.put_span(at + r::TOPIC, m.topic.as_bytes())?;
    w.put_span(at + r::TAGS, m.tags.as_bytes())?;
    w.put_span(at + r::KEYS, m.keys.as_bytes())?;
    w.put_span(at + r::PROPERTIES, m.properties)?;
    if bodies {
        if let Some(body) = m.body {
            w.put_span(at + r::BODY, body)?;
        }
    }
    w.put_span(at + r::ARG, m.arg)
}

fn put_queues(w: &mut Writer<'_>, at: usize, queues: &[QueueView<'_>]) -> Result<(), FrameError> {
    use layout::queue as q;
    for (i, queue) in queues.iter().enumerate() {
        let r = at + i * q::SIZE;
        w.put_span(r + q::BROKER_NAME, queue.broker_name.as_bytes())?;
        w.put_u32(r + q::QUEUE_ID, queue.queue_id);
        w.put_u32(r + q::PERM, queue.perm);
        w.put_span(r + q::ZONE, queue.zone.as_bytes())?;
    }
    Ok(())
}

/// Encodes a `filter` call. Bodies are included only when `include_bodies` is set (the
/// plugin's manifest has `needs_body`).
///
/// # Errors
/// [`FrameError::TooLarge`] if the frame would exceed 4 GiB.
pub fn encode_filter(
    buf: &mut Vec<u8>,
    ctx: &FilterContext<'_>,
    msgs: &[MessageView<'_>],
    include_bodies: bool,
) -> Result<(), FrameError> {
    let flags = if include_bodies { FLAG_BODIES } else { 0 };
    encode_messages(buf, Call::Filter, flags, layout::filter_context::SIZE, msgs, |w, at| {
        put_filter_context(w, at, ctx)
    })
}

/// Encodes a `prefilter` call over consume-queue units.
///
/// # Errors
/// [`FrameError::TooLarge`] if the frame would exceed 4 GiB.
pub fn encode_prefilter(buf: &mut Vec<u8>, ctx: &FilterContext<'_>, units: &[CqUnit]) -> Result<(), FrameError> {
    use layout::cq_unit as u;
    let plan = begin(buf, Call::Prefilter, 0, layout::filter_context::SIZE, 0, units.len(), u::SIZE)?;
    let mut w = Writer { buf };
    put_filter_context(&mut w, plan.context, ctx)?;
    for (i, unit) in units.iter().enumerate() {
        let at = plan.records + i * u::SIZE;
        w.put_i64(at + u::QUEUE_OFFSET, unit.queue_offset);
        w.put_i64(at + u::STORE_TIMESTAMP, unit.store_timestamp);
        w.put_i64(at + u::TAGS_CODE, unit.tags_code);
        w.put_u32(at + u::MSG_SIZE, unit.msg_size);
    }
    finish(buf);
    Ok(())
}

/// Encodes a `select` call.
///
/// # Errors
/// [`FrameError::TooLarge`] if the frame would exceed 4 GiB.
pub fn encode_select(buf: &mut Vec<u8>, ctx: &SelectContext<'_>, msgs: &[MessageView<'_>]) -> Result<(), FrameError> {
    use layout::select_context as c;
    let tables = ctx.queues.len() * layout::queue::SIZE;
    let plan = begin(buf, Call::Select, 0, c::SIZE, tables, msgs.len(), layout::message::SIZE)?;
    let mut w = Writer { buf };
    w.put_span(plan.context + c::TOPIC, ctx.topic.as_bytes())?;
    w.put_table(plan.context + c::QUEUES, plan.tables, ctx.queues.len(), layout::queue::SIZE);
    put_queues(&mut w, plan.tables, ctx.queues)?;
    for (i, m) in msgs.iter().enumerate() {
        put_message(&mut w, plan.records + i * layout::message::SIZE, m, false)?;
    }
    finish(buf);
    Ok(())
}

/// Encodes an `allocate` call.
///
/// # Errors
/// [`FrameError::TooLarge`] if the frame would exceed 4 GiB.
pub fn encode_allocate(buf: &mut Vec<u8>, input: &AllocateInput<'_>) -> Result<(), FrameError> {
    use layout::allocate_context as c;
    let queues_size = input.queues.len() * layout::queue::SIZE;
    let clients_size = input.clients.len() * layout::client::SIZE;
    let plan = begin(buf, Call::Allocate, 0, c::SIZE, queues_size + clients_size, 0, 0)?;
    let mut w = Writer { buf };
    let clients_at = plan.tables + queues_size;
    w.put_span(plan.context + c::GROUP, input.group.as_bytes())?;
    w.put_span(plan.context + c::CURRENT_CLIENT, input.current_client.as_bytes())?;
    w.put_table(plan.context + c::QUEUES, plan.tables, input.queues.len(), layout::queue::SIZE);
    w.put_table(plan.context + c::CLIENTS, clients_at, input.clients.len(), layout::client::SIZE);
    let current = input.current_index().map_or(u32::MAX, |i| i as u32);
    w.put_u32(plan.context + c::CURRENT_INDEX, current);
    put_queues(&mut w, plan.tables, input.queues)?;
    for (i, client) in input.clients.iter().enumerate() {
        let at = clients_at + i * layout::client::SIZE;
        w.put_span(at + layout::client::CLIENT_ID, client.client_id.as_bytes())?;
        w.put_span(at + layout::client::ZONE, client.zone.as_bytes())?;
    }
    finish(buf);
    Ok(())
}

/// Encodes a `check` call over half messages.
///
/// # Errors
/// [`FrameError::TooLarge`] if the frame would exceed 4 GiB.
pub fn encode_check(buf: &mut Vec<u8>, ctx: &CheckContext, msgs: &[MessageView<'_>]) -> Result<(), FrameError> {
    use layout::check_context as c;
    encode_messages(buf, Call::Check, 0, c::SIZE, msgs, |w, at| {
        w.put_i64(at + c::NOW_MS, ctx.now_ms);
        w.put_u32(at + c::MAX_CHECKS, ctx.max_checks);
        Ok(())
    })
}

/// Encodes a message frame in two sequential passes and without zero-filling the
/// records: each record is built on the stack and appended whole, then the message
/// strings are appended in the order pass 1 assigned their offsets, and the context's
/// strings last. A topic, tags or keys that is the same slice as the previous message's
/// shares its span (a pull is one topic). This is the hot path of every filter
/// call; see BENCHMARKS.md ("Plugins") for what it costs per message.
fn encode_messages(
    buf: &mut Vec<u8>,
    call: Call,
    flags: u16,
    context_size: usize,
    msgs: &[MessageView<'_>],
    context: impl FnOnce(&mut Writer<'_>, usize) -> Result<(), FrameError>,
) -> Result<(), FrameError> {
    use layout::message as r;
    const SIZE: usize = r::SIZE;
    let bodies = flags & FLAG_BODIES != 0;
    // Header and (zeroed) context block; no records yet.
    let plan = begin(buf, call, flags, context_size, 0, 0, SIZE)?;
    let arena_at =
        msgs.len().checked_mul(SIZE).and_then(|n| n.checked_add(plan.records)).ok_or(FrameError::TooLarge)?;
    // Upper bound of the arena (no sharing assumed), for the 4 GiB check and one reserve.
    let strings: usize = msgs
        .iter()
        .map(|m| {
            m.topic.len()
                + m.tags.len()
                + m.keys.len()
                + m.properties.len()
                + m.arg.len()
                + if bodies { m.body.map_or(0, <[u8]>::len) } else { 0 }
        })
        .sum();
    if arena_at.saturating_add(strings).saturating_add(4096) > u32::MAX as usize {
        return Err(FrameError::TooLarge);
    }
    buf.reserve(arena_at - buf.len() + strings + 256);
    buf[layout::header::RECORD_COUNT..layout::header::RECORD_COUNT + 4]
        .copy_from_slice(&(msgs.len() as u32).to_le_bytes());

    // Pass 1: records.
    let mut cursor = arena_at as u32;
    let mut prev: Option<&MessageView<'_>> = None;
    let (mut topic, mut tags, mut keys) = ([0u8; 8], [0u8; 8], [0u8; 8]);
    for m in msgs {
        let mut rec = [0u8; SIZE];
        rec[r::QUEUE_OFFSET..r::QUEUE_OFFSET + 8].copy_from_slice(&m.queue_offset.to_le_bytes());
        rec[r::COMMIT_LOG_OFFSET..r::COMMIT_LOG_OFFSET + 8].copy_from_slice(&m.commit_log_offset.to_le_bytes());
        rec[r::STORE_TIMESTAMP..r::STORE_TIMESTAMP + 8].copy_from_slice(&m.store_timestamp.to_le_bytes());
        rec[r::BORN_TIMESTAMP..r::BORN_TIMESTAMP + 8].copy_from_slice(&m.born_timestamp.to_le_bytes());
        rec[r::TAGS_CODE..r::TAGS_CODE + 8].copy_from_slice(&m.tags_code.to_le_bytes());
        rec[r::QUEUE_ID..r::QUEUE_ID + 4].copy_from_slice(&m.queue_id.to_le_bytes());
        rec[r::RECONSUME_TIMES..r::RECONSUME_TIMES + 4].copy_from_slice(&m.reconsume_times.to_le_bytes());
        rec[r::BODY_SIZE..r::BODY_SIZE + 4].copy_from_slice(&m.body_size.to_le_bytes());
        rec[r::CHECK_COUNT..r::CHECK_COUNT + 4].copy_from_slice(&m.check_count.to_le_bytes());
        let shared = shared_fields(prev, m);
        if !shared[0] {
            topic = span_bytes(&mut cursor, m.topic.as_bytes());
        }
        if !shared[1] {
            tags = span_bytes(&mut cursor, m.tags.as_bytes());
        }
        if !shared[2] {
            keys = span_bytes(&mut cursor, m.keys.as_bytes());
        }
        rec[r::TOPIC..r::TOPIC + 8].copy_from_slice(&topic);
        rec[r::TAGS..r::TAGS + 8].copy_from_slice(&tags);
        rec[r::KEYS..r::KEYS + 8].copy_from_slice(&keys);
        rec[r::PROPERTIES..r::PROPERTIES + 8].copy_from_slice(&span_bytes(&mut cursor, m.properties));
        if bodies {
            rec[r::BODY..r::BODY + 8].copy_from_slice(&span_bytes(&mut cursor, m.body.unwrap_or(&[])));
        }
        rec[r::ARG..r::ARG + 8].copy_from_slice(&span_bytes(&mut cursor, m.arg));
        buf.extend_from_slice(&rec);
        prev = Some(m);
    }
    // Pass 2: message strings, in the order pass 1 assigned offsets.
    let mut prev: Option<&MessageView<'_>> = None;
    for m in msgs {
        let shared = shared_fields(prev, m);
        if !shared[0] && !m.topic.is_empty() {
            buf.extend_from_slice(m.topic.as_bytes());
        }
        if !shared[1] && !m.tags.is_empty() {
            buf.extend_from_slice(m.tags.as_bytes());
        }
        if !shared[2] && !m.keys.is_empty() {
            buf.extend_from_slice(m.keys.as_bytes());
        }
        buf.extend_from_slice(m.properties);
        if bodies {
            buf.extend_from_slice(m.body.unwrap_or(&[]));
        }
        if !m.arg.is_empty() {
            buf.extend_from_slice(m.arg);
        }
        prev = Some(m);
    }
    debug_assert_eq!(buf.len(), cursor as usize);
    // The context's strings go last.
    context(&mut Writer { buf }, plan.context)?;
    finish(buf);
    Ok(())
}

/// Which of topic, tags, keys are the very same slice as the previous message's (and
/// share its span). Identity, not equality: comparing contents costs a `memcmp` per
/// field and message, more than the copy it saves. Callers that know a batch has one
/// topic (a pull) pass the same `&str` for every message.
#[inline]
fn shared_fields(prev: Option<&MessageView<'_>>, m: &MessageView<'_>) -> [bool; 3] {
    #[inline]
    fn same(a: &str, b: &str) -> bool {
        a.len() == b.len() && std::ptr::eq(a.as_ptr(), b.as_ptr())
    }
    match prev {
        None => [false; 3],
        Some(p) => [same(p.topic, m.topic), same(p.tags, m.tags), same(p.keys, m.keys)],
    }
}

/// The 8 bytes of a span for `bytes` placed at `*cursor` (advanced); empty → (0, 0).
#[inline]
fn span_bytes(cursor: &mut u32, bytes: &[u8]) -> [u8; 8] {
    let mut s = [0u8; 8];
    if !bytes.is_empty() {
        s[..4].copy_from_slice(&cursor.to_le_bytes());
        s[4..].copy_from_slice(&(bytes.len() as u32).to_le_bytes());
        *cursor += bytes.len() as u32;
    }
    s
}

/// Encodes the `init` frame: the plugin's configuration as key/value entries.
///
/// # Errors
/// [`FrameError::TooLarge`] if the frame would exceed 4 GiB.
pub fn encode_config<'a, I>(buf: &mut Vec<u8>, entries: I) -> Result<(), FrameError>
where
    I: IntoIterator<Item = (&'a str, &'a str)>,
    I::IntoIter: ExactSizeIterator,
{
    use layout::config_entry as e;
    let entries = entries.into_iter();
    let plan = begin(buf, Call::Init, 0, 0, 0, entries.len(), e::SIZE)?;
    let mut w = Writer { buf };
    for (i, (k, v)) in entries.enumerate() {
        let at = plan.records + i * e::SIZE;
        w.put_span(at + e::KEY, k.as_bytes())?;
        w.put_span(at + e::VALUE, v.as_bytes())?;
    }
    finish(buf);
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Decoding (guest side)
// ---------------------------------------------------------------------------------------

#[inline]
fn rd_u16(b: &[u8], at: usize) -> u16 {
    match b.get(at..at + 2) {
        Some(s) => u16::from_le_bytes([s[0], s[1]]),
        None => 0,
    }
}

#[inline]
fn rd_u32(b: &[u8], at: usize) -> u32 {
    match b.get(at..at + 4) {
        Some(s) => u32::from_le_bytes([s[0], s[1], s[2], s[3]]),
        None => 0,
    }
}

#[inline]
fn rd_i64(b: &[u8], at: usize) -> i64 {
    match b.get(at..at + 8) {
        Some(s) => i64::from_le_bytes([s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7]]),
        None => 0,
    }
}

#[inline]
fn rd_span(b: &[u8], at: usize) -> &[u8] {
    let off = rd_u32(b, at) as usize;
    let len = rd_u32(b, at + 4) as usize;
    off.checked_add(len).and_then(|end| b.get(off..end)).unwrap_or(&[])
}

#[inline]
fn rd_str(b: &[u8], at: usize) -> &str {
    std::str::from_utf8(rd_span(b, at)).unwrap_or("")
}

/// A fixed-size region (record, context, table row) of a frame. Fields past `size` read
/// as zero: that is how a newer reader handles an older, shorter layout.
#[derive(Clone, Copy)]
struct Region<'a> {
    b: &'a [u8],
    at: usize,
    size: usize,
}

impl<'a> Region<'a> {
    #[inline]
    fn u32(&self, f: usize) -> u32 {
        if f + 4 <= self.size {
            rd_u32(self.b, self.at + f)
        } else {
            0
        }
    }
    #[inline]
    fn i64(&self, f: usize) -> i64 {
        if f + 8 <= self.size {
            rd_i64(self.b, self.at + f)
        } else {
            0
        }
    }
    #[inline]
    fn bytes(&self, f: usize) -> &'a [u8] {
        if f + 8 <= self.size {
            rd_span(self.b, self.at + f)
        } else {
            &[]
        }
    }
    #[inline]
    fn str(&self, f: usize) -> &'a str {
        if f + 8 <= self.size {
            rd_str(self.b, self.at + f)
        } else {
            ""
        }
    }
    #[inline]
    fn table(&self, f: usize, min_stride: usize) -> Table<'a> {
        if f + layout::TABLE_SIZE > self.size {
            return Table { b: self.b, at: 0, count: 0, stride: min_stride };
        }
        let at = rd_u32(self.b, self.at + f) as usize;
        let count = rd_u32(self.b, self.at + f + 4) as usize;
        let stride = rd_u32(self.b, self.at + f + 8) as usize;
        let ok = stride >= min_stride
            && count.checked_mul(stride).and_then(|n| n.checked_add(at)).is_some_and(|end| end <= self.b.len());
        if ok {
            Table { b: self.b, at, count, stride }
        } else {
            Table { b: self.b, at: 0, count: 0, stride: min_stride }
        }
    }
}

#[derive(Clone, Copy)]
struct Table<'a> {
    b: &'a [u8],
    at: usize,
    count: usize,
    stride: usize,
}

impl<'a> Table<'a> {
    #[inline]
    fn row(&self, i: usize) -> Option<Region<'a>> {
        (i < self.count).then(|| Region { b: self.b, at: self.at + i * self.stride, size: self.stride })
    }
}

/// A parsed frame: validated header, records and context read in place.
#[derive(Clone, Copy)]
pub struct Frame<'a> {
    b: &'a [u8],
    call: Call,
    flags: u16,
    records: Table<'a>,
    context: Region<'a>,
}

impl fmt::Debug for Frame<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Frame")
            .field("call", &self.call)
            .field("flags", &self.flags)
            .field("records", &self.records.count)
            .field("len", &self.b.len())
            .finish()
    }
}

impl<'a> Frame<'a> {
    /// Validates the header and the bounds of the record array and context block.
    ///
    /// # Errors
    /// [`FrameError`] if the magic, version, call or layout is wrong. Guests answer such a
    /// frame with [`status::BAD_INPUT`](crate::status::BAD_INPUT).
    pub fn parse(b: &'a [u8]) -> Result<Frame<'a>, FrameError> {
        use layout::header as h;
        if b.len() < layout::HEADER_SIZE {
            return Err(FrameError::BadLayout("shorter than the header"));
        }
        if b[h::MAGIC..h::MAGIC + 4] != layout::MAGIC {
            return Err(FrameError::BadMagic);
        }
        let version = rd_u16(b, h::VERSION);
        if version != layout::VERSION {
            return Err(FrameError::UnsupportedVersion(version));
        }
        if (rd_u16(b, h::HEADER_SIZE) as usize) < layout::HEADER_SIZE {
            return Err(FrameError::BadLayout("header_size"));
        }
        let call = Call::from_u8(b[h::CALL]).ok_or(FrameError::UnknownCall(b[h::CALL]))?;
        let frame_len = rd_u32(b, h::FRAME_LEN) as usize;
        if frame_len > b.len() {
            return Err(FrameError::BadLayout("frame_len beyond the buffer"));
        }
        let b = &b[..frame_len];
        let count = rd_u32(b, h::RECORD_COUNT) as usize;
        let stride = rd_u32(b, h::RECORD_SIZE) as usize;
        let at = rd_u32(b, h::RECORDS_OFFSET) as usize;
        if count > 0 && stride < call.min_record_size() {
            return Err(FrameError::BadLayout("record_size smaller than v1"));
        }
        if count.checked_mul(stride).and_then(|n| n.checked_add(at)).is_none_or(|end| end > b.len()) {
            return Err(FrameError::BadLayout("records beyond the frame"));
        }
        let c_at = rd_u32(b, h::CONTEXT_OFFSET) as usize;
        let c_size = rd_u32(b, h::CONTEXT_SIZE) as usize;
        if c_size < call.min_context_size() || c_at.checked_add(c_size).is_none_or(|end| end > b.len()) {
            return Err(FrameError::BadLayout("context"));
        }
        Ok(Frame {
            b,
            call,
            flags: rd_u16(b, h::FLAGS),
            records: Table { b, at, count, stride },
            context: Region { b, at: c_at, size: c_size },
        })
    }

    /// The frame bytes.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.b
    }

    /// Which function the frame is for.
    pub fn call(&self) -> Call {
        self.call
    }

    /// Header flags.
    pub fn flags(&self) -> u16 {
        self.flags
    }

    /// Number of records.
    pub fn len(&self) -> usize {
        self.records.count
    }

    /// Whether there are no records.
    pub fn is_empty(&self) -> bool {
        self.records.count == 0
    }

    /// Exact size of the output this call must produce (for `allocate`: the maximum).
    pub fn output_len(&self) -> usize {
        output_len(self.call, self.len(), self.allocate().queues().len())
    }

    /// Message record `i` (`filter`, `select`, `check` frames).
    pub fn message(&self, i: usize) -> Option<MessageRef<'a>> {
        matches!(self.call, Call::Filter | Call::Select | Call::Check)
            .then(|| self.records.row(i).map(|r| MessageRef { r }))
            .flatten()
    }

    /// All message records.
    pub fn messages(&self) -> impl ExactSizeIterator<Item = MessageRef<'a>> + 'a {
        let this = *self;
        let n = if matches!(self.call, Call::Filter | Call::Select | Call::Check) { self.len() } else { 0 };
        (0..n).map(move |i| MessageRef { r: this.records.row(i).expect("index < count") })
    }

    /// Consume-queue unit `i` (`prefilter` frames).
    pub fn cq_unit(&self, i: usize) -> Option<CqUnit> {
        use layout::cq_unit as u;
        (self.call == Call::Prefilter).then(|| self.records.row(i)).flatten().map(|r| CqUnit {
            queue_offset: r.i64(u::QUEUE_OFFSET),
            store_timestamp: r.i64(u::STORE_TIMESTAMP),
            tags_code: r.i64(u::TAGS_CODE),
            msg_size: r.u32(u::MSG_SIZE),
        })
    }

    /// The subscription (`prefilter`, `filter` frames; empty otherwise).
    pub fn filter_context(&self) -> FilterContext<'a> {
        use layout::filter_context as c;
        if !matches!(self.call, Call::Prefilter | Call::Filter) {
            return FilterContext::default();
        }
        FilterContext {
            topic: self.context.str(c::TOPIC),
            group: self.context.str(c::GROUP),
            expression_type: self.context.str(c::EXPRESSION_TYPE),
            expression: self.context.str(c::EXPRESSION),
        }
    }

    /// The select context (`select` frames; empty otherwise).
    pub fn select(&self) -> SelectRef<'a> {
        use layout::select_context as c;
        if self.call != Call::Select {
            return SelectRef { topic: "", queues: QueuesRef::EMPTY };
        }
        SelectRef {
            topic: self.context.str(c::TOPIC),
            queues: QueuesRef { t: self.context.table(c::QUEUES, layout::queue::SIZE) },
        }
    }

    /// The allocate context (`allocate` frames; empty otherwise).
    pub fn allocate(&self) -> AllocateRef<'a> {
        use layout::allocate_context as c;
        if self.call != Call::Allocate {
            return AllocateRef {
                group: "",
                current_client: "",
                current_index: None,
                queues: QueuesRef::EMPTY,
                clients: ClientsRef { t: Table { b: &[], at: 0, count: 0, stride: layout::client::SIZE } },
            };
        }
        let idx = self.context.u32(c::CURRENT_INDEX);
        AllocateRef {
            group: self.context.str(c::GROUP),
            current_client: self.context.str(c::CURRENT_CLIENT),
            current_index: (idx != u32::MAX).then_some(idx as usize),
            queues: QueuesRef { t: self.context.table(c::QUEUES, layout::queue::SIZE) },
            clients: ClientsRef { t: self.context.table(c::CLIENTS, layout::client::SIZE) },
        }
    }

    /// The check context (`check` frames; zero otherwise).
    pub fn check_context(&self) -> CheckContext {
        use layout::check_context as c;
        if self.call != Call::Check {
            return CheckContext::default();
        }
        CheckContext { now_ms: self.context.i64(c::NOW_MS), max_checks: self.context.u32(c::MAX_CHECKS) }
    }

    /// The configuration entries (`init` frames; empty otherwise).
    pub fn config(&self) -> ConfigRef<'a> {
        if self.call != Call::Init {
            return ConfigRef { t: Table { b: &[], at: 0, count: 0, stride: layout::config_entry::SIZE } };
        }
        ConfigRef { t: self.records }
    }
}

/// Exact output size of a call with `records` records (for `allocate`: the capacity,
/// 4 bytes per queue).
pub const fn output_len(call: Call, records: usize, queues: usize) -> usize {
    match call {
        Call::Init => 0,
        Call::Prefilter | Call::Filter => records,
        Call::Select => records * 4,
        Call::Allocate => queues * 4,
        Call::Check => records * layout::decision::SIZE,
    }
}

/// A message record read in place.
#[derive(Clone, Copy)]
pub struct MessageRef<'a> {
    r: Region<'a>,
}

impl fmt::Debug for MessageRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.to_view().fmt(f)
    }
}

impl<'a> MessageRef<'a> {
    /// Topic.
    pub fn topic(&self) -> &'a str {
        self.r.str(layout::message::TOPIC)
    }
    /// Tags ("" when absent).
    pub fn tags(&self) -> &'a str {
        self.r.str(layout::message::TAGS)
    }
    /// Tags as raw bytes (no UTF-8 check).
    pub fn tags_bytes(&self) -> &'a [u8] {
        self.r.bytes(layout::message::TAGS)
    }
    /// Keys ("" when absent).
    pub fn keys(&self) -> &'a str {
        self.r.str(layout::message::KEYS)
    }
    /// Properties, decoded lazily.
    pub fn properties(&self) -> Properties<'a> {
        Properties::new(self.r.bytes(layout::message::PROPERTIES))
    }
    /// One property.
    pub fn property(&self, name: &str) -> Option<&'a str> {
        self.properties().get(name)
    }
    /// Body, if the frame carries bodies.
    pub fn body(&self) -> Option<&'a [u8]> {
        let b = self.r.bytes(layout::message::BODY);
        (!b.is_empty() || self.body_size() == 0).then_some(b)
    }
    /// Selector argument.
    pub fn arg(&self) -> &'a [u8] {
        self.r.bytes(layout::message::ARG)
    }
    /// Body size.
    pub fn body_size(&self) -> u32 {
        self.r.u32(layout::message::BODY_SIZE)
    }
    /// Queue id.
    pub fn queue_id(&self) -> u32 {
        self.r.u32(layout::message::QUEUE_ID)
    }
    /// Consume-queue offset.
    pub fn queue_offset(&self) -> i64 {
        self.r.i64(layout::message::QUEUE_OFFSET)
    }
    /// Commit-log offset.
    pub fn commit_log_offset(&self) -> i64 {
        self.r.i64(layout::message::COMMIT_LOG_OFFSET)
    }
    /// Store time (epoch ms).
    pub fn store_timestamp(&self) -> i64 {
        self.r.i64(layout::message::STORE_TIMESTAMP)
    }
    /// Born time (epoch ms).
    pub fn born_timestamp(&self) -> i64 {
        self.r.i64(layout::message::BORN_TIMESTAMP)
    }
    /// Tags code.
    pub fn tags_code(&self) -> i64 {
        self.r.i64(layout::message::TAGS_CODE)
    }
    /// Reconsume times.
    pub fn reconsume_times(&self) -> u32 {
        self.r.u32(layout::message::RECONSUME_TIMES)
    }
    /// Check count (check frames).
    pub fn check_count(&self) -> u32 {
        self.r.u32(layout::message::CHECK_COUNT)
    }
    /// All fields as a [`MessageView`] (still zero-copy).
    pub fn to_view(&self) -> MessageView<'a> {
        let body = self.r.bytes(layout::message::BODY);
        MessageView {
            topic: self.topic(),
            tags: self.tags(),
            keys: self.keys(),
            properties: self.properties().as_bytes(),
            body: (!body.is_empty()).then_some(body),
            body_size: self.body_size(),
            queue_id: self.queue_id(),
            queue_offset: self.queue_offset(),
            commit_log_offset: self.commit_log_offset(),
            store_timestamp: self.store_timestamp(),
            born_timestamp: self.born_timestamp(),
            tags_code: self.tags_code(),
            reconsume_times: self.reconsume_times(),
            check_count: self.check_count(),
            arg: self.arg(),
        }
    }
}

/// The queue table of a `select` or `allocate` frame.
#[derive(Clone, Copy)]
pub struct QueuesRef<'a> {
    t: Table<'a>,
}

impl<'a> QueuesRef<'a> {
    const EMPTY: QueuesRef<'static> = QueuesRef { t: Table { b: &[], at: 0, count: 0, stride: layout::queue::SIZE } };

    /// Number of queues.
    pub fn len(&self) -> usize {
        self.t.count
    }
    /// Whether there are no queues.
    pub fn is_empty(&self) -> bool {
        self.t.count == 0
    }
    /// Queue `i`.
    pub fn get(&self, i: usize) -> Option<QueueView<'a>> {
        use layout::queue as q;
        self.t.row(i).map(|r| QueueView {
            broker_name: r.str(q::BROKER_NAME),
            queue_id: r.u32(q::QUEUE_ID),
            perm: r.u32(q::PERM),
            zone: r.str(q::ZONE),
        })
    }
    /// All queues.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = QueueView<'a>> + 'a {
        let this = *self;
        (0..self.len()).map(move |i| this.get(i).expect("index < count"))
    }
}

/// The client table of an `allocate` frame.
#[derive(Clone, Copy)]
pub struct ClientsRef<'a> {
    t: Table<'a>,
}

impl<'a> ClientsRef<'a> {
    /// Number of clients.
    pub fn len(&self) -> usize {
        self.t.count
    }
    /// Whether there are no clients.
    pub fn is_empty(&self) -> bool {
        self.t.count == 0
    }
    /// Client `i`.
    pub fn get(&self, i: usize) -> Option<ClientView<'a>> {
        self.t
            .row(i)
            .map(|r| ClientView { client_id: r.str(layout::client::CLIENT_ID), zone: r.str(layout::client::ZONE) })
    }
    /// All clients.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = ClientView<'a>> + 'a {
        let this = *self;
        (0..self.len()).map(move |i| this.get(i).expect("index < count"))
    }
}

/// The context of a `select` frame.
#[derive(Clone, Copy)]
pub struct SelectRef<'a> {
    /// Topic.
    pub topic: &'a str,
    /// Queues; the selector answers indices into this table.
    pub queues: QueuesRef<'a>,
}

/// The context of an `allocate` frame.
#[derive(Clone, Copy)]
pub struct AllocateRef<'a> {
    /// Consumer group.
    pub group: &'a str,
    /// The client asking.
    pub current_client: &'a str,
    /// Its index in `clients`, if present.
    pub current_index: Option<usize>,
    queues: QueuesRef<'a>,
    clients: ClientsRef<'a>,
}

impl<'a> AllocateRef<'a> {
    /// All queues (sorted by the caller).
    pub fn queues(&self) -> QueuesRef<'a> {
        self.queues
    }
    /// All clients (sorted by the caller).
    pub fn clients(&self) -> ClientsRef<'a> {
        self.clients
    }
}

/// The entries of an `init` frame.
#[derive(Clone, Copy)]
pub struct ConfigRef<'a> {
    t: Table<'a>,
}

impl<'a> ConfigRef<'a> {
    /// Number of entries.
    pub fn len(&self) -> usize {
        self.t.count
    }
    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.t.count == 0
    }
    /// The value of `key` (first occurrence).
    pub fn get(&self, key: &str) -> Option<&'a str> {
        self.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
    }
    /// All `(key, value)` entries.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&'a str, &'a str)> + 'a {
        let t = self.t;
        (0..t.count).map(move |i| {
            let r = t.row(i).expect("index < count");
            (r.str(layout::config_entry::KEY), r.str(layout::config_entry::VALUE))
        })
    }
}

// ---------------------------------------------------------------------------------------
// Outputs
// ---------------------------------------------------------------------------------------

fn expect_len(out: &[u8], want: usize, what: &str) -> Result<(), PluginError> {
    if out.len() == want {
        Ok(())
    } else {
        Err(PluginError::bad_output(format!("{what}: expected {want} bytes, got {}", out.len())))
    }
}

/// Reads `filter`/`prefilter` output: one verdict byte per record.
///
/// # Errors
/// [`PluginError::BadOutput`] on a wrong length or an unknown verdict byte.
pub fn read_verdicts(out: &[u8], verdicts: &mut [Verdict]) -> Result<(), PluginError> {
    expect_len(out, verdicts.len(), "filter output")?;
    for (i, (&b, v)) in out.iter().zip(verdicts.iter_mut()).enumerate() {
        *v = Verdict::from_u8(b).ok_or_else(|| PluginError::bad_output(format!("verdict byte {b} for record {i}")))?;
    }
    Ok(())
}

/// Reads `select` output: one little-endian `u32` queue index per record;
/// [`NO_QUEUE`] is allowed and means "no choice".
///
/// # Errors
/// [`PluginError::BadOutput`] on a wrong length or an index `>= queues`.
pub fn read_queue_indices(out: &[u8], queues: usize, indices: &mut [u32]) -> Result<(), PluginError> {
    expect_len(out, indices.len() * 4, "select output")?;
    for (i, (c, v)) in out.chunks_exact(4).zip(indices.iter_mut()).enumerate() {
        let q = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        if q != NO_QUEUE && q as usize >= queues {
            return Err(PluginError::bad_output(format!("queue index {q} for record {i}, only {queues} queues")));
        }
        *v = q;
    }
    Ok(())
}

/// Reads `allocate` output: a list of little-endian `u32` queue indices, each `< queues`,
/// without duplicates.
///
/// # Errors
/// [`PluginError::BadOutput`] on a length that is not a multiple of 4 or exceeds the
/// capacity, an out-of-range index or a duplicate.
pub fn read_assignment(out: &[u8], queues: usize, assigned: &mut Vec<u32>) -> Result<(), PluginError> {
    if out.len() % 4 != 0 || out.len() > queues * 4 {
        return Err(PluginError::bad_output(format!(
            "allocate output of {} bytes (must be a multiple of 4, at most {})",
            out.len(),
            queues * 4
        )));
    }
    assigned.clear();
    let mut seen = vec![false; queues];
    for c in out.chunks_exact(4) {
        let q = u32::from_le_bytes([c[0], c[1], c[2], c[3]]) as usize;
        if q >= queues {
            return Err(PluginError::bad_output(format!("queue index {q}, only {queues} queues")));
        }
        if std::mem::replace(&mut seen[q], true) {
            return Err(PluginError::bad_output(format!("queue index {q} assigned twice")));
        }
        assigned.push(q as u32);
    }
    Ok(())
}

/// Reads `check` output: one 8-byte decision record per record.
///
/// # Errors
/// [`PluginError::BadOutput`] on a wrong length or an unknown decision code.
pub fn read_decisions(out: &[u8], decisions: &mut [CheckDecision]) -> Result<(), PluginError> {
    use layout::decision as d;
    expect_len(out, decisions.len() * d::SIZE, "check output")?;
    for (i, (c, v)) in out.chunks_exact(d::SIZE).zip(decisions.iter_mut()).enumerate() {
        let ms = u32::from_le_bytes([c[d::DEFER_MS], c[d::DEFER_MS + 1], c[d::DEFER_MS + 2], c[d::DEFER_MS + 3]]);
        *v = CheckDecision::from_code(c[d::CODE], ms)
            .ok_or_else(|| PluginError::bad_output(format!("decision code {} for record {i}", c[d::CODE])))?;
    }
    Ok(())
}

/// Writes queue index `q` for record `i` into a `select` (or, by position, `allocate`)
/// output area.
///
/// # Panics
/// If `out` is shorter than `4 * (i + 1)` bytes.
#[inline]
pub fn put_u32_le(out: &mut [u8], i: usize, q: u32) {
    out[i * 4..i * 4 + 4].copy_from_slice(&q.to_le_bytes());
}

/// Writes the decision for record `i` into a `check` output area.
///
/// # Panics
/// If `out` is shorter than `8 * (i + 1)` bytes.
#[inline]
pub fn put_decision(out: &mut [u8], i: usize, d: CheckDecision) {
    let at = i * layout::decision::SIZE;
    let ms = if let CheckDecision::Defer { ms } = d { ms } else { 0 };
    out[at..at + 8].copy_from_slice(&[d.code(), 0, 0, 0, 0, 0, 0, 0]);
    out[at + 4..at + 8].copy_from_slice(&ms.to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{encode_properties, PERM_READ, PERM_WRITE};

    fn msg<'a>(topic: &'a str, tags: &'a str, props: &'a [u8]) -> MessageView<'a> {
        MessageView {
            topic,
            tags,
            keys: "k1 k2",
            properties: props,
            body: Some(b"hello"),
            body_size: 5,
            queue_id: 3,
            queue_offset: 42,
            commit_log_offset: 1 << 40,
            store_timestamp: 1_700_000_000_123,
            born_timestamp: 1_700_000_000_000,
            tags_code: -7,
            reconsume_times: 2,
            check_count: 0,
            arg: b"",
        }
    }

    #[test]
    fn filter_frame_round_trips_zero_copy() {
        let props = encode_properties([("price", "12"), ("TAGS", "TagA")]);
        let msgs = [msg("T", "TagA", &props), msg("T2", "", b"")];
        let ctx = FilterContext { topic: "T", group: "G", expression_type: "WASM", expression: "price>10" };
        for bodies in [false, true] {
            let mut buf = Vec::new();
            encode_filter(&mut buf, &ctx, &msgs, bodies).unwrap();
            assert_eq!(&buf[..4], b"FMQB");
            assert_eq!(buf.len(), rd_u32(&buf, layout::header::FRAME_LEN) as usize);
            let f = Frame::parse(&buf).unwrap();
            assert_eq!(f.call(), Call::Filter);
            assert_eq!(f.len(), 2);
            assert_eq!(f.filter_context(), ctx);
            assert_eq!(f.output_len(), 2);
            let m = f.message(0).unwrap();
            assert_eq!(m.property("price"), Some("12"));
            let mut want = msgs[0];
            if !bodies {
                want.body = None;
            }
            assert_eq!(m.to_view(), want);
            assert_eq!(f.message(1).unwrap().tags(), "");
            assert!(f.message(2).is_none());
            assert_eq!(f.messages().count(), 2);
            // Records are 8-aligned, as the README promises to C readers.
            assert_eq!(rd_u32(&buf, layout::header::RECORDS_OFFSET) % 8, 0);
        }
    }

    #[test]
    fn readme_example_bytes_are_exact() {
        // plugin-api/README.md §5.11 shows this frame byte by byte.
        let props = encode_properties([("p", "9")]);
        let m = MessageView {
            topic: "T",
            tags: "A",
            properties: &props,
            tags_code: 65,
            queue_id: 1,
            queue_offset: 7,
            ..Default::default()
        };
        let ctx = FilterContext { topic: "T", group: "G", expression_type: "WASM", expression: "" };
        let mut buf = Vec::new();
        encode_filter(&mut buf, &ctx, &[m], false).unwrap();
        let mut want = vec![0u8; 188];
        let mut put = |at: usize, bytes: &[u8]| want[at..at + bytes.len()].copy_from_slice(bytes);
        put(0x00, &[0x46, 0x4D, 0x51, 0x42, 0x01, 0x00, 0x28, 0x00, 0x02, 0x00, 0x00, 0x00, 0xBC]);
        put(0x10, &[0x01, 0, 0, 0, 0x68, 0, 0, 0, 0x48, 0, 0, 0, 0x28]);
        put(0x20, &[0x20]);
        put(0x28, &[0xB6, 0, 0, 0, 0x01, 0, 0, 0, 0xB7, 0, 0, 0, 0x01, 0, 0, 0, 0xB8, 0, 0, 0, 0x04]);
        put(0x48, &[0x07]);
        put(0x68, &[0x41]);
        put(0x70, &[0x01]);
        put(0x80, &[0xB0, 0, 0, 0, 0x01, 0, 0, 0, 0xB1, 0, 0, 0, 0x01]);
        put(0x98, &[0xB2, 0, 0, 0, 0x04]);
        put(0xB0, b"TAp\x019\x02TGWASM");
        assert_eq!(buf, want);
    }

    #[test]
    fn every_call_round_trips() {
        let mut buf = Vec::new();
        let ctx = FilterContext { topic: "T", ..Default::default() };
        let units = [CqUnit { queue_offset: 1, store_timestamp: 2, tags_code: 3, msg_size: 4 }];
        encode_prefilter(&mut buf, &ctx, &units).unwrap();
        let f = Frame::parse(&buf).unwrap();
        assert_eq!(f.cq_unit(0), Some(units[0]));
        assert_eq!(f.message(0).map(|m| m.topic()), None);

        let queues = [
            QueueView { broker_name: "b1", queue_id: 0, perm: PERM_READ | PERM_WRITE, zone: "az1" },
            QueueView { broker_name: "b2", queue_id: 1, perm: PERM_READ, zone: "" },
        ];
        let m = [MessageView { arg: b"order-7", ..Default::default() }];
        encode_select(&mut buf, &SelectContext { topic: "T", queues: &queues }, &m).unwrap();
        let f = Frame::parse(&buf).unwrap();
        let s = f.select();
        assert_eq!(s.topic, "T");
        assert_eq!(s.queues.iter().collect::<Vec<_>>(), queues);
        assert_eq!(f.message(0).unwrap().arg(), b"order-7");
        assert_eq!(f.output_len(), 4);

        let clients = [ClientView { client_id: "c1", zone: "az1" }, ClientView { client_id: "c2", zone: "az2" }];
        let input = AllocateInput { group: "G", current_client: "c2", queues: &queues, clients: &clients };
        encode_allocate(&mut buf, &input).unwrap();
        let f = Frame::parse(&buf).unwrap();
        let a = f.allocate();
        assert_eq!((a.group, a.current_client, a.current_index), ("G", "c2", Some(1)));
        assert_eq!(a.queues().iter().collect::<Vec<_>>(), queues);
        assert_eq!(a.clients().iter().collect::<Vec<_>>(), clients);
        assert_eq!(f.output_len(), 8);

        let cctx = CheckContext { now_ms: 99, max_checks: 15 };
        let m = [MessageView { check_count: 4, ..Default::default() }];
        encode_check(&mut buf, &cctx, &m).unwrap();
        let f = Frame::parse(&buf).unwrap();
        assert_eq!(f.check_context(), cctx);
        assert_eq!(f.message(0).unwrap().check_count(), 4);

        encode_config(&mut buf, [("a", "1"), ("b", "")]).unwrap();
        let f = Frame::parse(&buf).unwrap();
        assert_eq!(f.config().iter().collect::<Vec<_>>(), vec![("a", "1"), ("b", "")]);
        assert_eq!(f.config().get("a"), Some("1"));
    }

    #[test]
    fn parse_rejects_malformed_frames_without_panicking() {
        let mut buf = Vec::new();
        encode_filter(&mut buf, &FilterContext::default(), &[MessageView::default()], false).unwrap();
        assert!(Frame::parse(&buf[..10]).is_err());
        let mut bad = buf.clone();
        bad[0] = b'X';
        assert_eq!(Frame::parse(&bad).unwrap_err(), FrameError::BadMagic);
        let mut bad = buf.clone();
        bad[4] = 2;
        assert_eq!(Frame::parse(&bad).unwrap_err(), FrameError::UnsupportedVersion(2));
        let mut bad = buf.clone();
        bad[layout::header::RECORD_COUNT] = 200;
        assert!(matches!(Frame::parse(&bad), Err(FrameError::BadLayout(_))));
        // Every truncation and every single-byte corruption must be handled without a panic.
        for n in 0..buf.len() {
            if let Ok(f) = Frame::parse(&buf[..n]) {
                f.messages().for_each(|m| {
                    std::hint::black_box(m.to_view());
                });
            }
        }
        for i in 0..buf.len() {
            let mut bad = buf.clone();
            bad[i] ^= 0xA5;
            if let Ok(f) = Frame::parse(&bad) {
                f.messages().for_each(|m| {
                    std::hint::black_box(m.to_view());
                });
                let _ = f.select().queues.iter().count();
                let _ = f.allocate().clients().iter().count();
            }
        }
    }

    #[test]
    fn newer_host_with_longer_records_is_readable() {
        // Simulate a minor-version host that appended 8 bytes to each message record.
        let mut buf = Vec::new();
        let props = encode_properties([("a", "b")]);
        let msgs = [msg("T", "A", &props), msg("U", "B", &props)];
        encode_filter(&mut buf, &FilterContext::default(), &msgs, false).unwrap();
        let f = Frame::parse(&buf).unwrap();
        let old: Vec<_> = f.messages().map(|m| m.to_view()).collect();
        // Re-layout by hand: stride 112.
        let rec_at = rd_u32(&buf, layout::header::RECORDS_OFFSET) as usize;
        let mut wide = buf[..rec_at].to_vec();
        for i in 0..2 {
            wide.extend_from_slice(&buf[rec_at + i * 104..rec_at + (i + 1) * 104]);
            wide.extend_from_slice(&[0xEE; 8]);
        }
        let shift = 16u32;
        let arena = &buf[rec_at + 208..];
        wide.extend_from_slice(arena);
        // Shift span offsets by 16 (arena moved).
        for i in 0..2 {
            for f in [56, 64, 72, 80, 88, 96] {
                let at = rec_at + i * 112 + f;
                let off = rd_u32(&wide, at);
                if off != 0 {
                    wide[at..at + 4].copy_from_slice(&(off + shift).to_le_bytes());
                }
            }
        }
        let ctx_spans = [40usize, 48, 56, 64];
        for at in ctx_spans {
            let off = rd_u32(&wide, at);
            if off != 0 {
                wide[at..at + 4].copy_from_slice(&(off + shift).to_le_bytes());
            }
        }
        wide[layout::header::RECORD_SIZE..layout::header::RECORD_SIZE + 4].copy_from_slice(&112u32.to_le_bytes());
        let len = wide.len() as u32;
        wide[layout::header::FRAME_LEN..layout::header::FRAME_LEN + 4].copy_from_slice(&len.to_le_bytes());
        let f = Frame::parse(&wide).unwrap();
        let new: Vec<_> = f.messages().map(|m| m.to_view()).collect();
        assert_eq!(old, new);
    }

    #[test]
    fn outputs_are_validated() {
        let mut v = [Verdict::Reject; 3];
        read_verdicts(&[1, 0, 2], &mut v).unwrap();
        assert_eq!(v, [Verdict::Accept, Verdict::Reject, Verdict::Error]);
        assert!(read_verdicts(&[1, 0], &mut v).is_err());
        assert!(read_verdicts(&[1, 0, 7], &mut v).is_err());

        let mut out = [0u8; 8];
        put_u32_le(&mut out, 0, 1);
        put_u32_le(&mut out, 1, NO_QUEUE);
        let mut q = [0u32; 2];
        read_queue_indices(&out, 2, &mut q).unwrap();
        assert_eq!(q, [1, NO_QUEUE]);
        assert!(read_queue_indices(&out, 1, &mut q).is_err());

        let mut a = Vec::new();
        read_assignment(&out[..4], 2, &mut a).unwrap();
        assert_eq!(a, [1]);
        let mut dup = [0u8; 8];
        put_u32_le(&mut dup, 0, 1);
        put_u32_le(&mut dup, 1, 1);
        assert!(read_assignment(&dup, 2, &mut a).unwrap_err().to_string().contains("twice"));
        assert!(read_assignment(&[0; 3], 2, &mut a).is_err());

        let mut out = [0u8; 16];
        put_decision(&mut out, 0, CheckDecision::Commit);
        put_decision(&mut out, 1, CheckDecision::Defer { ms: 700 });
        let mut d = [CheckDecision::Error; 2];
        read_decisions(&out, &mut d).unwrap();
        assert_eq!(d, [CheckDecision::Commit, CheckDecision::Defer { ms: 700 }]);
        out[8] = 9;
        assert!(read_decisions(&out, &mut d).is_err());
    }
}
