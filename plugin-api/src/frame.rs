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
    AllocateInput, CheckContext, CheckDecision, ClientView, CqUnit, FilterContext, MessageFields, MessageView,
    Properties, QueueView, SelectContext, Verdict, NO_QUEUE,
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
        /// `u16` (ABI 1.1) the message fields the host left empty because the plugin did
        /// not declare them ([`MessageFields`](crate::types::MessageFields) bits; 0 = none).
        pub const OMITTED: usize = 36;
        /// `u16` reserved, 0.
        pub const RESERVED1: usize = 38;
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
    // The frame length is not known yet: `finish` patches it.
    write_header(buf, call, flags, 0, record_count, record_size, records, context_size);
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

/// Encodes a `filter` call carrying the message `fields` the plugin reads
/// ([`Manifest::message_fields`](crate::Manifest::message_fields)).
///
/// # Errors
/// [`FrameError::TooLarge`] if the frame would exceed 4 GiB.
pub fn encode_filter(
    buf: &mut Vec<u8>,
    ctx: &FilterContext<'_>,
    msgs: &[MessageView<'_>],
    fields: MessageFields,
) -> Result<(), FrameError> {
    MessageFrame::filter(ctx, msgs, fields)?.encode(buf);
    Ok(())
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

/// Encodes a `select` call carrying the message `fields` the plugin reads (the selector
/// argument is always there).
///
/// # Errors
/// [`FrameError::TooLarge`] if the frame would exceed 4 GiB.
pub fn encode_select(
    buf: &mut Vec<u8>,
    ctx: &SelectContext<'_>,
    msgs: &[MessageView<'_>],
    fields: MessageFields,
) -> Result<(), FrameError> {
    MessageFrame::select(ctx, msgs, fields)?.encode(buf);
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

/// Encodes a `check` call over half messages carrying the message `fields` the plugin
/// reads.
///
/// # Errors
/// [`FrameError::TooLarge`] if the frame would exceed 4 GiB.
pub fn encode_check(
    buf: &mut Vec<u8>,
    ctx: &CheckContext,
    msgs: &[MessageView<'_>],
    fields: MessageFields,
) -> Result<(), FrameError> {
    MessageFrame::check(ctx, msgs, fields)?.encode(buf);
    Ok(())
}

/// The context block of a message frame.
#[derive(Clone, Copy)]
enum MessageContext<'a> {
    Filter(&'a FilterContext<'a>),
    Select(&'a SelectContext<'a>),
    Check(&'a CheckContext),
}

/// A `filter`, `select` or `check` frame, planned but not written yet.
///
/// Planning computes the exact frame length, so the host can write the frame straight
/// into its destination — a WASM instance's linear memory — instead of building it in a
/// buffer and copying it there. Writing is one forward pass: each record, then its
/// strings at the arena cursor, then the context's strings. A topic that is the same
/// slice as the previous message's shares its span (a pull is one topic), and fields
/// the plugin did not declare are left out. This is the hot path of every filter
/// call; BENCHMARKS.md ("Plugins") says what it costs.
pub struct MessageFrame<'a, 'm> {
    context: MessageContext<'a>,
    msgs: &'a [MessageView<'m>],
    fields: Included,
    /// Offset of the first record.
    records: usize,
    /// Offset of the arena (just after the records).
    arena: usize,
    len: usize,
}

impl<'a, 'm> MessageFrame<'a, 'm> {
    /// Plans a `filter` frame carrying the message `fields` the plugin reads.
    ///
    /// # Errors
    /// [`FrameError::TooLarge`] if the frame would exceed 4 GiB.
    #[inline]
    pub fn filter(
        ctx: &'a FilterContext<'a>,
        msgs: &'a [MessageView<'m>],
        fields: MessageFields,
    ) -> Result<Self, FrameError> {
        Self::plan(MessageContext::Filter(ctx), msgs, fields)
    }

    /// Plans a `select` frame carrying the message `fields` the plugin reads.
    ///
    /// # Errors
    /// [`FrameError::TooLarge`] if the frame would exceed 4 GiB.
    pub fn select(
        ctx: &'a SelectContext<'a>,
        msgs: &'a [MessageView<'m>],
        fields: MessageFields,
    ) -> Result<Self, FrameError> {
        Self::plan(MessageContext::Select(ctx), msgs, fields)
    }

    /// Plans a `check` frame carrying the message `fields` the plugin reads.
    ///
    /// # Errors
    /// [`FrameError::TooLarge`] if the frame would exceed 4 GiB.
    pub fn check(
        ctx: &'a CheckContext,
        msgs: &'a [MessageView<'m>],
        fields: MessageFields,
    ) -> Result<Self, FrameError> {
        Self::plan(MessageContext::Check(ctx), msgs, fields)
    }

    #[inline]
    fn plan(
        context: MessageContext<'a>,
        msgs: &'a [MessageView<'m>],
        fields: MessageFields,
    ) -> Result<Self, FrameError> {
        // Only a selector has an argument; filter and check frames leave the span empty.
        let f = Included { arg: matches!(context, MessageContext::Select(_)), ..Included::from(fields) };
        let (context_size, tables_size) = match context {
            MessageContext::Filter(_) => (layout::filter_context::SIZE, 0),
            MessageContext::Select(c) => (layout::select_context::SIZE, c.queues.len() * layout::queue::SIZE),
            MessageContext::Check(_) => (layout::check_context::SIZE, 0),
        };
        let records = layout::HEADER_SIZE + pad8(context_size) + pad8(tables_size);
        let arena = msgs.len().checked_mul(layout::message::SIZE).and_then(|n| n.checked_add(records));
        let strings = context_strings(context).saturating_add(specialized!(f, |f| arena_size(msgs, f)));
        let arena = arena.ok_or(FrameError::TooLarge)?;
        let len = arena.checked_add(strings).filter(|&n| n <= u32::MAX as usize).ok_or(FrameError::TooLarge)?;
        Ok(MessageFrame { context, msgs, fields: f, records, arena, len })
    }

    /// The frame's exact length in bytes.
    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the frame is empty (never: a frame has at least a header).
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Writes the frame into `dst`, which must be exactly [`len`](Self::len) bytes. Every
    /// byte of `dst` is written, so its previous contents do not matter.
    ///
    /// # Panics
    /// If `dst.len() != self.len()`.
    #[inline]
    pub fn write(&self, dst: &mut [u8]) {
        self.write_over(dst, 0);
    }

    /// [`write`](Self::write), knowing that the first `clean` records of `dst` already
    /// hold zeros in every field this frame leaves out (they were written by a frame of
    /// the same [`Shape`]), so only the fields it carries are written there.
    #[inline]
    fn write_over(&self, dst: &mut [u8], clean: usize) {
        use layout::message as r;
        assert_eq!(dst.len(), self.len, "a message frame is written into exactly its length");
        let (fixed, arena) = dst.split_at_mut(self.arena);
        let (head, records) = fixed.split_at_mut(self.records);
        head.fill(0);
        let f = self.fields;
        let (call, context_size) = match self.context {
            MessageContext::Filter(_) => (Call::Filter, layout::filter_context::SIZE),
            MessageContext::Select(_) => (Call::Select, layout::select_context::SIZE),
            MessageContext::Check(_) => (Call::Check, layout::check_context::SIZE),
        };
        let flags = if f.body { FLAG_BODIES } else { 0 };
        write_header(head, call, flags, self.len, self.msgs.len(), r::SIZE, self.records, context_size);
        head[layout::header::OMITTED..][..2].copy_from_slice(&f.omitted.bits().to_le_bytes());

        let mut arena = Arena { buf: arena, at: 0, base: self.arena };
        let mut topic = SharedTopic::default();
        if f.every_record_field() {
            // Every field of every record is written: no zero-fill first.
            for (rec, m) in records.chunks_exact_mut(r::SIZE).zip(self.msgs) {
                let rec: &mut [u8; r::SIZE] = rec.try_into().expect("chunks of the record size");
                put_metadata(rec, m);
                put_word(rec, r::TOPIC, topic.span(&mut arena, m.topic));
                put_word(rec, r::TAGS, arena.put(m.tags.as_bytes()));
                put_word(rec, r::KEYS, arena.put(m.keys.as_bytes()));
                put_word(rec, r::PROPERTIES, arena.put(m.properties));
                put_word(rec, r::BODY, if f.body { arena.put(m.body.unwrap_or_default()) } else { 0 });
                put_word(rec, r::ARG, if f.arg { arena.put(m.arg) } else { 0 });
            }
        } else {
            // A plugin that declared a few fields: each record is zeroed (unless known to
            // be clean), then gets only what the plugin reads.
            let clean = clean.min(self.msgs.len());
            let (kept, fresh) = records.split_at_mut(clean * r::SIZE);
            let (kept_msgs, fresh_msgs) = self.msgs.split_at(clean);
            specialized!(f, |f| {
                write_sparse::<false>(kept, kept_msgs, &mut arena, &mut topic, f);
                write_sparse::<true>(fresh, fresh_msgs, &mut arena, &mut topic, f);
            });
        }

        let context = &mut head[layout::HEADER_SIZE..];
        match self.context {
            MessageContext::Filter(ctx) => {
                use layout::filter_context as c;
                context[c::TOPIC..][..8].copy_from_slice(&arena.put(ctx.topic.as_bytes()).to_le_bytes());
                context[c::GROUP..][..8].copy_from_slice(&arena.put(ctx.group.as_bytes()).to_le_bytes());
                context[c::EXPRESSION_TYPE..][..8]
                    .copy_from_slice(&arena.put(ctx.expression_type.as_bytes()).to_le_bytes());
                context[c::EXPRESSION..][..8].copy_from_slice(&arena.put(ctx.expression.as_bytes()).to_le_bytes());
            }
            MessageContext::Select(ctx) => {
                use layout::{queue as q, select_context as c};
                let tables_at = layout::HEADER_SIZE + pad8(c::SIZE);
                context[c::TOPIC..][..8].copy_from_slice(&arena.put(ctx.topic.as_bytes()).to_le_bytes());
                context[c::QUEUES..][..4].copy_from_slice(&(tables_at as u32).to_le_bytes());
                context[c::QUEUES + 4..][..4].copy_from_slice(&(ctx.queues.len() as u32).to_le_bytes());
                context[c::QUEUES + 8..][..4].copy_from_slice(&(q::SIZE as u32).to_le_bytes());
                let table = &mut head[tables_at..];
                for (rec, queue) in table.chunks_exact_mut(q::SIZE).zip(ctx.queues) {
                    rec[q::BROKER_NAME..][..8].copy_from_slice(&arena.put(queue.broker_name.as_bytes()).to_le_bytes());
                    rec[q::QUEUE_ID..][..4].copy_from_slice(&queue.queue_id.to_le_bytes());
                    rec[q::PERM..][..4].copy_from_slice(&queue.perm.to_le_bytes());
                    rec[q::ZONE..][..8].copy_from_slice(&arena.put(queue.zone.as_bytes()).to_le_bytes());
                }
            }
            MessageContext::Check(ctx) => {
                use layout::check_context as c;
                context[c::NOW_MS..][..8].copy_from_slice(&ctx.now_ms.to_le_bytes());
                context[c::MAX_CHECKS..][..4].copy_from_slice(&ctx.max_checks.to_le_bytes());
            }
        }
        debug_assert_eq!(arena.at, arena.buf.len(), "planned and written arena sizes agree");
    }

    /// Writes the frame into `buf`, which ends up exactly [`len`](Self::len) bytes long.
    /// Only bytes beyond `buf`'s previous length are zero-filled first.
    #[inline]
    pub fn encode(&self, buf: &mut Vec<u8>) {
        self.fit(buf);
        self.write(buf);
    }

    /// Makes `buf` exactly this frame's length, keeping every byte below it.
    #[inline]
    fn fit(&self, buf: &mut Vec<u8>) {
        if buf.len() > self.len {
            buf.truncate(self.len);
        } else {
            buf.resize(self.len, 0);
        }
    }

    /// What a buffer this frame was written into can offer the next frame.
    fn shape(&self) -> Shape {
        Shape { fields: self.fields.fields, arg: self.fields.arg, records: self.records }
    }
}

/// Which records of a frame hold zeros where: frames of one shape — the same declared
/// fields, argument and records offset — leave the same record fields zero.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Shape {
    fields: MessageFields,
    arg: bool,
    records: usize,
}

/// A buffer message frames are written into again and again, as a host does on every
/// call. It remembers the shape of the last frame it holds: the next frame of the same
/// shape skips zeroing the records that frame already wrote, since their undeclared
/// fields are still zero. For a tag filter that leaves one 8-byte span and the tag to
/// write per record instead of all 104 bytes — a third of its frame time.
#[derive(Default)]
pub struct FrameBuf {
    bytes: Vec<u8>,
    /// The last message frame's shape and record count, while the bytes are its.
    last: Option<(Shape, usize)>,
}

impl FrameBuf {
    /// An empty buffer.
    pub const fn new() -> FrameBuf {
        FrameBuf { bytes: Vec::new(), last: None }
    }

    /// Writes `frame` and returns its bytes: exactly what [`MessageFrame::encode`]
    /// writes.
    #[inline]
    pub fn write(&mut self, frame: &MessageFrame<'_, '_>) -> &[u8] {
        let shape = frame.shape();
        let clean = match self.last {
            Some((last, count)) if last == shape => count,
            _ => 0,
        };
        frame.fit(&mut self.bytes);
        frame.write_over(&mut self.bytes, clean);
        self.last = Some((shape, frame.msgs.len()));
        &self.bytes
    }

    /// The buffer for any other encoding. It forgets the last frame's shape, since the
    /// caller may write anything.
    pub fn vec_mut(&mut self) -> &mut Vec<u8> {
        self.last = None;
        &mut self.bytes
    }
}

/// `specialized!(f, |f| loop_over_messages(f))` runs the loop with the fields `f`
/// (an [`Included`]). The common declarations get a copy of the loop with their fields
/// known at compile time, so it tests none of them per message (a third of a tag
/// filter's encoding time otherwise). A macro, not a function taking a closure: the
/// closure would be compiled once, with the fields unknown.
macro_rules! specialized {
    ($f:expr, |$v:ident| $body:expr) => {{
        const TAGS: MessageFields = MessageFields::TAGS;
        const TAGS_METADATA: MessageFields = MessageFields::TAGS.union(MessageFields::METADATA);
        let f: Included = $f;
        match f.fields {
            MessageFields::DEFAULT => {
                let $v = Included { arg: f.arg, ..Included::from(MessageFields::DEFAULT) };
                $body
            }
            TAGS => {
                let $v = Included { arg: f.arg, ..Included::from(TAGS) };
                $body
            }
            TAGS_METADATA => {
                let $v = Included { arg: f.arg, ..Included::from(TAGS_METADATA) };
                $body
            }
            MessageFields::NONE => {
                let $v = Included { arg: f.arg, ..Included::from(MessageFields::NONE) };
                $body
            }
            _ => {
                let $v = f;
                $body
            }
        }
    }};
}
use specialized;

/// The bytes the messages' fields `f` add to the arena.
#[inline(always)]
fn arena_size(msgs: &[MessageView<'_>], f: Included) -> usize {
    // Sums of lengths of slices held in memory: `usize` cannot overflow, but shared
    // slices may add up past it in theory, hence saturating.
    let mut strings = 0usize;
    let mut topic = SharedTopic::default();
    for m in msgs {
        let n = (if f.topic && topic.is_new(m.topic) { m.topic.len() } else { 0 })
            + (if f.tags { m.tags.len() } else { 0 })
            + (if f.keys { m.keys.len() } else { 0 })
            + (if f.properties { m.properties.len() } else { 0 })
            + (if f.body { m.body.map_or(0, <[u8]>::len) } else { 0 })
            + (if f.arg { m.arg.len() } else { 0 });
        strings = strings.saturating_add(n);
    }
    strings
}

/// Writes the fields `f` of each message into its record, zeroing the rest first if
/// `ZERO` (otherwise the rest is zero already).
#[inline(always)]
fn write_sparse<const ZERO: bool>(
    records: &mut [u8],
    msgs: &[MessageView<'_>],
    arena: &mut Arena<'_>,
    topic: &mut SharedTopic,
    f: Included,
) {
    use layout::message as r;
    for (rec, m) in records.chunks_exact_mut(r::SIZE).zip(msgs) {
        let rec: &mut [u8; r::SIZE] = rec.try_into().expect("chunks of the record size");
        if ZERO {
            *rec = [0; r::SIZE];
        }
        if f.metadata {
            put_metadata(rec, m);
        }
        if f.topic {
            put_word(rec, r::TOPIC, topic.span(arena, m.topic));
        }
        if f.tags {
            put_word(rec, r::TAGS, arena.put(m.tags.as_bytes()));
        }
        if f.keys {
            put_word(rec, r::KEYS, arena.put(m.keys.as_bytes()));
        }
        if f.properties {
            put_word(rec, r::PROPERTIES, arena.put(m.properties));
        }
        if f.body {
            put_word(rec, r::BODY, arena.put(m.body.unwrap_or_default()));
        }
        if f.arg {
            put_word(rec, r::ARG, arena.put(m.arg));
        }
    }
}

/// Writes a record's numeric fields (the first 56 bytes, all of them).
#[inline(always)]
fn put_metadata(rec: &mut [u8; layout::message::SIZE], m: &MessageView<'_>) {
    use layout::message as r;
    put_word(rec, r::QUEUE_OFFSET, m.queue_offset as u64);
    put_word(rec, r::COMMIT_LOG_OFFSET, m.commit_log_offset as u64);
    put_word(rec, r::STORE_TIMESTAMP, m.store_timestamp as u64);
    put_word(rec, r::BORN_TIMESTAMP, m.born_timestamp as u64);
    put_word(rec, r::TAGS_CODE, m.tags_code as u64);
    put_word(rec, r::QUEUE_ID, u64::from(m.queue_id) | u64::from(m.reconsume_times) << 32);
    put_word(rec, r::BODY_SIZE, u64::from(m.body_size) | u64::from(m.check_count) << 32);
}

/// Writes a little-endian word at `at` (a span is `offset | len << 32`).
#[inline(always)]
fn put_word(rec: &mut [u8; layout::message::SIZE], at: usize, word: u64) {
    rec[at..at + 8].copy_from_slice(&word.to_le_bytes());
}

/// The fields a message frame carries, as flags the encoder tests per message.
#[derive(Clone, Copy)]
struct Included {
    /// The set these flags spell out.
    fields: MessageFields,
    metadata: bool,
    topic: bool,
    tags: bool,
    keys: bool,
    properties: bool,
    body: bool,
    /// The selector argument (select frames only).
    arg: bool,
    /// The header's `omitted` word.
    omitted: MessageFields,
}

impl From<MessageFields> for Included {
    fn from(f: MessageFields) -> Included {
        Included {
            fields: f,
            metadata: f.contains(MessageFields::METADATA),
            topic: f.contains(MessageFields::TOPIC),
            tags: f.contains(MessageFields::TAGS),
            keys: f.contains(MessageFields::KEYS),
            properties: f.contains(MessageFields::PROPERTIES),
            body: f.contains(MessageFields::BODY),
            arg: true,
            omitted: MessageFields::DEFAULT.difference(f),
        }
    }
}

impl Included {
    /// Whether each record has every field but the body (an ABI 1.0 plugin).
    fn every_record_field(self) -> bool {
        self.metadata && self.topic && self.tags && self.keys && self.properties
    }
}

/// Bytes the context block of a message frame adds to the arena.
fn context_strings(context: MessageContext<'_>) -> usize {
    match context {
        MessageContext::Filter(c) => c.topic.len() + c.group.len() + c.expression_type.len() + c.expression.len(),
        MessageContext::Select(c) => {
            c.topic.len() + c.queues.iter().map(|q| q.broker_name.len() + q.zone.len()).sum::<usize>()
        }
        MessageContext::Check(_) => 0,
    }
}

/// Writes a v1 header into `head` (already zero-filled; reserved fields stay zero).
#[allow(clippy::too_many_arguments)]
fn write_header(
    head: &mut [u8],
    call: Call,
    flags: u16,
    len: usize,
    record_count: usize,
    record_size: usize,
    records: usize,
    context_size: usize,
) {
    use layout::header as h;
    head[h::MAGIC..][..4].copy_from_slice(&layout::MAGIC);
    head[h::VERSION..][..2].copy_from_slice(&layout::VERSION.to_le_bytes());
    head[h::HEADER_SIZE..][..2].copy_from_slice(&(layout::HEADER_SIZE as u16).to_le_bytes());
    head[h::CALL] = call as u8;
    head[h::FLAGS..][..2].copy_from_slice(&flags.to_le_bytes());
    head[h::FRAME_LEN..][..4].copy_from_slice(&(len as u32).to_le_bytes());
    head[h::RECORD_COUNT..][..4].copy_from_slice(&(record_count as u32).to_le_bytes());
    head[h::RECORD_SIZE..][..4].copy_from_slice(&(record_size as u32).to_le_bytes());
    head[h::RECORDS_OFFSET..][..4].copy_from_slice(&(records as u32).to_le_bytes());
    let context_offset = if context_size == 0 { 0 } else { layout::HEADER_SIZE };
    head[h::CONTEXT_OFFSET..][..4].copy_from_slice(&(context_offset as u32).to_le_bytes());
    head[h::CONTEXT_SIZE..][..4].copy_from_slice(&(context_size as u32).to_le_bytes());
}

/// The arena of a frame being written: strings go at `at`, back to back.
struct Arena<'b> {
    buf: &'b mut [u8],
    at: usize,
    /// Frame offset of `buf[0]`.
    base: usize,
}

impl Arena<'_> {
    /// Appends `bytes` and returns its span as `offset | len << 32`; empty → 0.
    #[inline(always)]
    fn put(&mut self, bytes: &[u8]) -> u64 {
        let n = bytes.len();
        if n == 0 {
            return 0;
        }
        let at = self.at;
        copy_short(&mut self.buf[at..at + n], bytes);
        self.at = at + n;
        (self.base + at) as u64 | (n as u64) << 32
    }
}

/// `dst.copy_from_slice(src)` with the short strings of a record (tags, keys: a few
/// bytes) copied inline by two overlapping loads and stores, as `memcpy` does inside:
/// a `memcpy` call per tag cost more than the copy itself (~a third of a frame's
/// encoding time in a profile).
#[inline(always)]
fn copy_short(dst: &mut [u8], src: &[u8]) {
    let n = src.len();
    debug_assert_eq!(dst.len(), n);
    if n > 16 {
        dst.copy_from_slice(src);
    } else if n >= 8 {
        dst[..8].copy_from_slice(&src[..8]);
        dst[n - 8..].copy_from_slice(&src[n - 8..]);
    } else if n >= 4 {
        dst[..4].copy_from_slice(&src[..4]);
        dst[n - 4..].copy_from_slice(&src[n - 4..]);
    } else if n > 0 {
        dst[0] = src[0];
        dst[n / 2] = src[n / 2];
        dst[n - 1] = src[n - 1];
    }
}

/// The topic span of a batch: a message whose topic is the very same slice as the
/// previous message's shares its span (a pull is one topic, and the broker passes the
/// same `&str` for every message). Identity, not equality: comparing contents would cost
/// a `memcmp` per message, more than the copy it saves.
#[derive(Default)]
struct SharedTopic {
    last: Option<(*const u8, usize)>,
    span: u64,
}

impl SharedTopic {
    /// Whether `topic` differs from the previous one (and needs arena space).
    #[inline(always)]
    fn is_new(&mut self, topic: &str) -> bool {
        let key = (topic.as_ptr(), topic.len());
        let new = self.last != Some(key);
        self.last = Some(key);
        new
    }

    /// The span of `topic`, appending it to the arena when it is new.
    #[inline(always)]
    fn span(&mut self, arena: &mut Arena<'_>, topic: &str) -> u64 {
        if self.is_new(topic) {
            self.span = arena.put(topic.as_bytes());
        }
        self.span
    }
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

    /// The message fields the host left out of this frame because the plugin did not
    /// declare them (ABI 1.1; none in a frame for a plugin that declares nothing).
    pub fn omitted(&self) -> MessageFields {
        MessageFields::from_bits(rd_u16(self.b, layout::header::OMITTED))
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
    // Validate all bytes first (a loop the compiler vectorises), then map them: one
    // test and branch per message otherwise, on the hot path of every filter call.
    if out.iter().fold(0, |max, &b| max.max(b)) > Verdict::Error as u8 {
        let i = out.iter().position(|&b| b > Verdict::Error as u8).unwrap_or_default();
        return Err(PluginError::bad_output(format!("verdict byte {} for record {i}", out[i])));
    }
    for (&b, v) in out.iter().zip(verdicts.iter_mut()) {
        *v = match b {
            0 => Verdict::Reject,
            1 => Verdict::Accept,
            _ => Verdict::Error,
        };
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
            let fields = if bodies { MessageFields::DEFAULT | MessageFields::BODY } else { MessageFields::DEFAULT };
            encode_filter(&mut buf, &ctx, &msgs, fields).unwrap();
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
        encode_filter(&mut buf, &ctx, &[m], MessageFields::DEFAULT).unwrap();
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

    /// Owned message data for the property test below.
    #[derive(Debug, Clone)]
    struct Owned {
        strings: [String; 3],
        properties: Vec<u8>,
        body: Option<Vec<u8>>,
        arg: Vec<u8>,
        numbers: (i64, i64, i64, u32, u32),
        /// Reuse the previous message's topic / tags / keys slice (a shared span).
        share: [bool; 3],
    }

    fn owned() -> impl proptest::strategy::Strategy<Value = Owned> {
        use proptest::prelude::*;
        let text = || prop::string::string_regex("[a-zA-Z0-9 ]{0,40}").unwrap();
        (
            [text(), text(), text()],
            prop::collection::vec(any::<u8>(), 0..120),
            prop::option::of(prop::collection::vec(any::<u8>(), 0..60)),
            prop::collection::vec(any::<u8>(), 0..12),
            (any::<i64>(), any::<i64>(), any::<i64>(), any::<u32>(), any::<u32>()),
            any::<[bool; 3]>(),
        )
            .prop_map(|(strings, properties, body, arg, numbers, share)| Owned {
                strings,
                properties,
                body,
                arg,
                numbers,
                share,
            })
    }

    const FCTX: FilterContext<'static> =
        FilterContext { topic: "T", group: "G", expression_type: "PLUGIN", expression: "x" };
    const QUEUES: [QueueView<'static>; 1] = [QueueView { broker_name: "b", queue_id: 1, perm: PERM_READ, zone: "z" }];
    const SCTX: SelectContext<'static> = SelectContext { topic: "T", queues: &QUEUES };
    const CCTX: CheckContext = CheckContext { now_ms: 5, max_checks: 15 };

    /// A `filter` (call 0), `select` (1) or `check` (2) frame over `msgs`.
    fn plan<'a>(call: u8, msgs: &'a [MessageView<'a>], fields: MessageFields) -> MessageFrame<'a, 'a> {
        match call {
            0 => MessageFrame::filter(&FCTX, msgs, fields),
            1 => MessageFrame::select(&SCTX, msgs, fields),
            _ => MessageFrame::check(&CCTX, msgs, fields),
        }
        .unwrap()
    }

    /// Message views over `data`, sharing slices where `Owned::share` says.
    fn views(data: &[Owned]) -> Vec<MessageView<'_>> {
        let mut msgs: Vec<MessageView<'_>> = Vec::new();
        for (i, d) in data.iter().enumerate() {
            let prev = msgs.last().copied();
            let pick = |k: usize, own: &'_ str| -> bool { d.share[k] && prev.is_some() && i > 0 && !own.is_empty() };
            let m = MessageView {
                topic: if pick(0, &d.strings[0]) { prev.unwrap().topic } else { &d.strings[0] },
                tags: if pick(1, &d.strings[1]) { prev.unwrap().tags } else { &d.strings[1] },
                keys: if pick(2, &d.strings[2]) { prev.unwrap().keys } else { &d.strings[2] },
                properties: &d.properties,
                body: d.body.as_deref(),
                body_size: d.body.as_ref().map_or(7, |b| b.len() as u32),
                queue_id: d.numbers.3,
                queue_offset: d.numbers.0,
                commit_log_offset: d.numbers.1,
                store_timestamp: d.numbers.2,
                born_timestamp: !d.numbers.2,
                tags_code: d.numbers.0 ^ d.numbers.1,
                reconsume_times: d.numbers.4,
                check_count: d.numbers.4 / 3,
                arg: &d.arg,
            };
            msgs.push(m);
        }
        msgs
    }

    proptest::proptest! {
        /// Whatever the messages, the fields and the sharing of slices: the frame is
        /// exactly its planned length, every byte is written (a destination full of
        /// garbage gives the same frame as a zeroed one), and a reader sees each included
        /// field as given and each omitted one as empty, with `omitted` in the header.
        #[test]
        fn message_frames_carry_exactly_the_declared_fields(
            data in proptest::collection::vec(owned(), 0..20),
            bits in 0u16..64,
            call in 0u8..3,
        ) {
            let fields = MessageFields::from_bits(bits);
            let msgs = views(&data);
            let frame = plan(call, &msgs, fields);
            let mut zeroed = vec![0u8; frame.len()];
            frame.write(&mut zeroed);
            let mut dirty = vec![0xA5u8; frame.len()];
            frame.write(&mut dirty);
            proptest::prop_assert_eq!(&zeroed, &dirty);
            let mut reused = vec![0x5Au8; frame.len() + 100];
            frame.encode(&mut reused);
            proptest::prop_assert_eq!(&zeroed, &reused);

            let f = Frame::parse(&zeroed).unwrap();
            proptest::prop_assert_eq!(f.omitted(), MessageFields::DEFAULT.difference(fields));
            proptest::prop_assert_eq!(f.flags() & FLAG_BODIES != 0, fields.contains(MessageFields::BODY));
            proptest::prop_assert_eq!(f.len(), msgs.len());
            let or_empty = |on: MessageFields, s: &'static str| if fields.contains(on) { None } else { Some(s) };
            for (got, m) in f.messages().zip(&msgs) {
                proptest::prop_assert_eq!(got.topic(), or_empty(MessageFields::TOPIC, "").unwrap_or(m.topic));
                proptest::prop_assert_eq!(got.tags(), or_empty(MessageFields::TAGS, "").unwrap_or(m.tags));
                proptest::prop_assert_eq!(got.keys(), or_empty(MessageFields::KEYS, "").unwrap_or(m.keys));
                let props: &[u8] = if fields.contains(MessageFields::PROPERTIES) { m.properties } else { b"" };
                proptest::prop_assert_eq!(got.properties().as_bytes(), props);
                let body: &[u8] = if fields.contains(MessageFields::BODY) { m.body.unwrap_or_default() } else { b"" };
                proptest::prop_assert_eq!(got.r.bytes(layout::message::BODY), body);
                proptest::prop_assert_eq!(got.arg(), if call == 1 { m.arg } else { b"" });
                let want = if fields.contains(MessageFields::METADATA) { *m } else { MessageView::default() };
                proptest::prop_assert_eq!(
                    (got.queue_offset(), got.commit_log_offset(), got.store_timestamp(), got.born_timestamp()),
                    (want.queue_offset, want.commit_log_offset, want.store_timestamp, want.born_timestamp)
                );
                proptest::prop_assert_eq!(
                    (got.tags_code(), got.queue_id(), got.reconsume_times(), got.body_size(), got.check_count()),
                    (want.tags_code, want.queue_id, want.reconsume_times, want.body_size, want.check_count)
                );
            }
            match call {
                0 => proptest::prop_assert_eq!(f.filter_context(), FCTX),
                1 => {
                    proptest::prop_assert_eq!(f.select().topic, "T");
                    proptest::prop_assert_eq!(f.select().queues.iter().collect::<Vec<_>>(), QUEUES.to_vec());
                }
                _ => proptest::prop_assert_eq!(f.check_context(), CCTX),
            }
        }

        /// A `FrameBuf` written with frame after frame — often of the same shape, with
        /// batches growing and shrinking — holds exactly what a fresh write gives, so
        /// skipping the clean records' zeroing never leaves a stale byte.
        #[test]
        fn a_reused_frame_buffer_holds_exactly_each_frame(
            calls in proptest::collection::vec(
                (proptest::collection::vec(owned(), 0..12), 0usize..6, 0u8..3),
                1..8,
            ),
        ) {
            let mut buf = FrameBuf::new();
            for (i, (data, pick, call)) in calls.iter().enumerate() {
                // Mostly the declarations the encoder has compiled-in loops for, so
                // consecutive frames often share a shape.
                let fields = [
                    MessageFields::TAGS,
                    MessageFields::TAGS.union(MessageFields::METADATA),
                    MessageFields::NONE,
                    MessageFields::DEFAULT,
                    MessageFields::KEYS.union(MessageFields::BODY),
                    MessageFields::from_bits(i as u16 * 7 % 64),
                ][*pick];
                let msgs = views(data);
                let frame = plan(*call, &msgs, fields);
                let mut fresh = vec![0u8; frame.len()];
                frame.write(&mut fresh);
                proptest::prop_assert_eq!(buf.write(&frame), &fresh[..]);
                if i % 5 == 4 {
                    // Another encoding in between: the next frame must not trust it.
                    buf.vec_mut().iter_mut().for_each(|b| *b = 0xEE);
                }
            }
        }
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
        encode_select(&mut buf, &SelectContext { topic: "T", queues: &queues }, &m, MessageFields::DEFAULT).unwrap();
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
        encode_check(&mut buf, &cctx, &m, MessageFields::DEFAULT).unwrap();
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
        encode_filter(&mut buf, &FilterContext::default(), &[MessageView::default()], MessageFields::DEFAULT).unwrap();
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
        encode_filter(&mut buf, &FilterContext::default(), &msgs, MessageFields::DEFAULT).unwrap();
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
