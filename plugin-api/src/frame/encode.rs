//! The host's encoders: each call's frame built into a reusable `Vec<u8>`.
//!
//! `prefilter`, `allocate` and `init` frames are written here field by field into a
//! zero-filled fixed part, with strings appended to the arena behind it. `filter`,
//! `select` and `check` frames are planned and written by [`MessageFrame`]; the
//! `encode_*` functions for them are the same frames into a `Vec`. A frame beyond
//! 4 GiB is [`FrameError::TooLarge`], never a truncated frame.

use super::message_frame::MessageFrame;
use super::{layout, Call, FrameError};
use crate::types::{
    AllocateInput, CheckContext, CqUnit, FilterContext, MessageFields, MessageView, QueueView, SelectContext,
};

pub(super) const fn pad8(n: usize) -> usize {
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

/// Writes a v1 header into `head` (already zero-filled; reserved fields stay zero).
#[allow(clippy::too_many_arguments)]
pub(super) fn write_header(
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::Frame;
    use crate::types::{encode_properties, ClientView, PERM_READ, PERM_WRITE};

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
}
