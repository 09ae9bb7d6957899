//! [`MessageFrame`]: a `filter`, `select` or `check` frame planned to its exact length
//! and written in one forward pass into any `&mut [u8]` (a WASM instance's memory, a
//! native plugin's buffer), and [`FrameBuf`], the buffer a host thread reuses for them.
//!
//! This is the hot path of every plugin call over messages. What it relies on: a frame
//! carries only the message fields the plugin declared (the rest stay zero and the
//! header's `omitted` word lists them); a topic slice shared by consecutive messages is
//! written once; and a buffer that held a frame of the same [`Shape`] already has zeros
//! where this one leaves fields out. Every byte of the destination is written, so its
//! previous contents never leak into a frame.

use super::encode::{pad8, write_header};
use super::{layout, Call, FrameError, FLAG_BODIES};
use crate::types::{CheckContext, FilterContext, MessageFields, MessageView, SelectContext};

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::Frame;
    use crate::types::{QueueView, PERM_READ};

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
                proptest::prop_assert_eq!(got.to_view().body.unwrap_or_default(), body);
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
}
