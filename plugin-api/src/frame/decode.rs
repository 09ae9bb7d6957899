//! The guest's reader: [`Frame::parse`] validates the header and the bounds of the
//! records and context once, then [`MessageRef`], [`QueuesRef`], [`ClientsRef`] and
//! [`ConfigRef`] read fields in place, without copying or allocating.
//!
//! A reader never panics on a malformed frame: a span out of range reads as empty, and a
//! field beyond the size the frame gives for its region (an older, shorter layout) reads
//! as zero. Readers use the sizes and strides in the frame, never their own constants,
//! so a newer host that appended fields stays readable.

use std::fmt;

use super::output::output_len;
use super::{layout, Call, FrameError};
use crate::types::{
    CheckContext, ClientView, CqUnit, FilterContext, MessageFields, MessageView, Properties, QueueView,
};

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{encode_filter, FrameError};
    use crate::types::encode_properties;

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
}
