//! Plain-data inputs and outputs of the four plugin kinds.
//!
//! These are the host-side (caller) views: borrowed, cheap to build from the broker's
//! or client's own types, and free of any runtime type. The broker converts its message
//! and queue types into them; the host encodes them into a [`frame`](crate::frame) for
//! WASM and native plugins or hands them to Lua. The guest side reads the same data
//! zero-copy through [`frame::MessageRef`](crate::frame::MessageRef) and friends.

use std::fmt;

/// RocketMQ's separator between a property name and its value (`\u{1}`).
pub const NAME_VALUE_SEPARATOR: u8 = 1;
/// RocketMQ's separator between properties (`\u{2}`).
pub const PROPERTY_SEPARATOR: u8 = 2;

/// Which message fields a plugin reads, and so which ones a frame carries: a set of
/// bits. The selector argument is always present.
///
/// A plugin that declares nothing (every ABI 1.0 plugin) receives [`DEFAULT`](Self::DEFAULT):
/// everything but the body. Declaring fewer (manifest flag
/// [`FLAG_DECLARES_FIELDS`](crate::manifest::FLAG_DECLARES_FIELDS), ABI 1.1) spares the
/// host writing what the plugin never looks at: a tag filter's frame holds only tags.
/// Fields left out read as zero / empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MessageFields(u16);

impl MessageFields {
    /// No variable-length field.
    pub const NONE: MessageFields = MessageFields(0);
    /// The topic.
    pub const TOPIC: MessageFields = MessageFields(1);
    /// The `TAGS` property, as its own span.
    pub const TAGS: MessageFields = MessageFields(1 << 1);
    /// The `KEYS` property, as its own span.
    pub const KEYS: MessageFields = MessageFields(1 << 2);
    /// All properties.
    pub const PROPERTIES: MessageFields = MessageFields(1 << 3);
    /// The body (manifest flag `needs_body`).
    pub const BODY: MessageFields = MessageFields(1 << 4);
    /// The numeric fields: queue id and offset, commit-log offset, store and born
    /// timestamps, tags code, reconsume times, body size, check count.
    pub const METADATA: MessageFields = MessageFields(1 << 5);
    /// What a plugin that declares nothing receives: everything but the body.
    pub const DEFAULT: MessageFields = MessageFields(0b10_1111);
    /// Every field a frame can carry.
    pub const ALL: MessageFields = MessageFields(0b11_1111);
    /// Field names, in bit order, as the SDK and the docs spell them.
    pub const NAMES: [(&'static str, MessageFields); 6] = [
        ("topic", MessageFields::TOPIC),
        ("tags", MessageFields::TAGS),
        ("keys", MessageFields::KEYS),
        ("properties", MessageFields::PROPERTIES),
        ("body", MessageFields::BODY),
        ("metadata", MessageFields::METADATA),
    ];

    /// The raw bits.
    pub const fn bits(self) -> u16 {
        self.0
    }

    /// From raw bits; bits this version does not know are dropped.
    pub const fn from_bits(bits: u16) -> MessageFields {
        MessageFields(bits & MessageFields::ALL.0)
    }

    /// Whether every field of `other` is in `self`.
    pub const fn contains(self, other: MessageFields) -> bool {
        self.0 & other.0 == other.0
    }

    /// The fields of either set.
    pub const fn union(self, other: MessageFields) -> MessageFields {
        MessageFields(self.0 | other.0)
    }

    /// The fields of `self` that are not in `other`.
    pub const fn difference(self, other: MessageFields) -> MessageFields {
        MessageFields(self.0 & !other.0)
    }

    /// The field called `name` (see [`NAMES`](Self::NAMES)).
    pub fn from_name(name: &str) -> Option<MessageFields> {
        MessageFields::NAMES.iter().find(|(n, _)| *n == name).map(|(_, f)| *f)
    }
}

impl std::ops::BitOr for MessageFields {
    type Output = MessageFields;
    fn bitor(self, rhs: MessageFields) -> MessageFields {
        self.union(rhs)
    }
}

impl fmt::Display for MessageFields {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names = MessageFields::NAMES.iter().filter(|(_, b)| self.contains(*b)).map(|(n, _)| *n);
        match names.next() {
            None => f.write_str("none"),
            Some(first) => {
                f.write_str(first)?;
                names.try_for_each(|n| write!(f, ", {n}"))
            }
        }
    }
}

/// A message as plugins see it.
///
/// Filter, queue-selector and check-back calls take a batch of these. Fields a kind has no
/// value for are zero / empty (a producer-side selector sees no offsets or store time).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MessageView<'a> {
    /// Topic (the real topic, not `RMQ_SYS_TRANS_HALF_TOPIC`, for check-back calls).
    pub topic: &'a str,
    /// The `TAGS` property ("" when absent).
    pub tags: &'a str,
    /// The `KEYS` property ("" when absent; several keys are separated by spaces).
    pub keys: &'a str,
    /// All properties in RocketMQ's encoding: `name \x01 value \x02`, repeated; the last
    /// `\x02` is optional. Read them with [`Properties`].
    pub properties: &'a [u8],
    /// The body, only when the plugin's manifest asks for it (`needs_body`).
    pub body: Option<&'a [u8]>,
    /// The body's size in bytes (also when `body` is `None`).
    pub body_size: u32,
    /// Queue id.
    pub queue_id: u32,
    /// Offset in the consume queue.
    pub queue_offset: i64,
    /// Physical offset in the commit log.
    pub commit_log_offset: i64,
    /// Store time, epoch milliseconds.
    pub store_timestamp: i64,
    /// Born (producer) time, epoch milliseconds.
    pub born_timestamp: i64,
    /// Java `String.hashCode()` of the tags as stored in the consume queue (0 = no tag).
    pub tags_code: i64,
    /// How many times this message was re-consumed.
    pub reconsume_times: u32,
    /// Check-back calls: how many times this half message was checked already.
    pub check_count: u32,
    /// Queue-selector calls: the user argument given to `send(msg, selector, arg)`
    /// (for example an order id); empty otherwise.
    pub arg: &'a [u8],
}

impl<'a> MessageView<'a> {
    /// The properties, decoded lazily.
    pub fn props(&self) -> Properties<'a> {
        Properties::new(self.properties)
    }
}

/// A zero-copy reader over RocketMQ-encoded properties (`name \x01 value \x02 ...`).
#[derive(Clone, Copy, Default, PartialEq, Eq)]
pub struct Properties<'a> {
    raw: &'a [u8],
}

impl<'a> Properties<'a> {
    /// Wraps raw property bytes.
    pub const fn new(raw: &'a [u8]) -> Properties<'a> {
        Properties { raw }
    }

    /// The raw bytes.
    pub const fn as_bytes(&self) -> &'a [u8] {
        self.raw
    }

    /// The value of `name`, if present (the first occurrence wins) and valid UTF-8.
    ///
    /// Compares raw bytes and validates only the value it returns: this runs per message
    /// inside filters, where validating every entry cost ~100 ns per message.
    pub fn get(&self, name: &str) -> Option<&'a str> {
        let name = name.as_bytes();
        let mut rest = self.raw;
        while !rest.is_empty() {
            let end = rest.iter().position(|&b| b == PROPERTY_SEPARATOR).unwrap_or(rest.len());
            let entry = &rest[..end];
            if entry.len() > name.len() && entry[name.len()] == NAME_VALUE_SEPARATOR && entry.starts_with(name) {
                return std::str::from_utf8(&entry[name.len() + 1..]).ok();
            }
            rest = rest.get(end + 1..).unwrap_or(&[]);
        }
        None
    }

    /// Iterates over `(name, value)` pairs. Entries without a `\x01` or with invalid
    /// UTF-8 are skipped.
    pub fn iter(&self) -> PropertiesIter<'a> {
        PropertiesIter { rest: self.raw }
    }
}

impl fmt::Debug for Properties<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl<'a> IntoIterator for Properties<'a> {
    type Item = (&'a str, &'a str);
    type IntoIter = PropertiesIter<'a>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

/// Iterator returned by [`Properties::iter`].
#[derive(Clone)]
pub struct PropertiesIter<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for PropertiesIter<'a> {
    type Item = (&'a str, &'a str);
    fn next(&mut self) -> Option<Self::Item> {
        while !self.rest.is_empty() {
            let end = self.rest.iter().position(|&b| b == PROPERTY_SEPARATOR).unwrap_or(self.rest.len());
            let entry = &self.rest[..end];
            self.rest = self.rest.get(end + 1..).unwrap_or(&[]);
            if let Some(sep) = entry.iter().position(|&b| b == NAME_VALUE_SEPARATOR) {
                if let (Ok(n), Ok(v)) = (std::str::from_utf8(&entry[..sep]), std::str::from_utf8(&entry[sep + 1..])) {
                    return Some((n, v));
                }
            }
        }
        None
    }
}

/// Encodes `(name, value)` pairs in RocketMQ's property encoding (for tests and tools).
pub fn encode_properties<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Vec<u8> {
    let mut out = Vec::new();
    for (n, v) in pairs {
        out.extend_from_slice(n.as_bytes());
        out.push(NAME_VALUE_SEPARATOR);
        out.extend_from_slice(v.as_bytes());
        out.push(PROPERTY_SEPARATOR);
    }
    out
}

/// One consume-queue unit, the input of a pre-filter: what the broker knows about a
/// message without reading the commit log.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CqUnit {
    /// Offset in the consume queue.
    pub queue_offset: i64,
    /// Store time, epoch milliseconds (0 if the consume queue does not carry it).
    pub store_timestamp: i64,
    /// Java `String.hashCode()` of the tags (0 = no tag).
    pub tags_code: i64,
    /// Size of the stored message in bytes.
    pub msg_size: u32,
}

/// The subscription a filter call is made for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FilterContext<'a> {
    /// Topic being pulled.
    pub topic: &'a str,
    /// Consumer group pulling.
    pub group: &'a str,
    /// The subscription's expression type (`TAG`, `SQL92`, or a custom one such as `WASM`).
    pub expression_type: &'a str,
    /// The subscription's expression string, handed to the plugin verbatim.
    pub expression: &'a str,
}

/// RocketMQ permission bit: readable.
pub const PERM_READ: u32 = 4;
/// RocketMQ permission bit: writable.
pub const PERM_WRITE: u32 = 2;

/// A message queue as selectors and allocation strategies see it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct QueueView<'a> {
    /// Broker name.
    pub broker_name: &'a str,
    /// Queue id within the broker.
    pub queue_id: u32,
    /// RocketMQ permission bits ([`PERM_READ`], [`PERM_WRITE`]).
    pub perm: u32,
    /// Zone / machine room of the broker, if known ("" otherwise).
    pub zone: &'a str,
}

impl QueueView<'_> {
    /// Whether messages may be sent to this queue.
    pub const fn is_writable(&self) -> bool {
        self.perm & PERM_WRITE != 0
    }
}

/// A consumer client as allocation strategies see it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct ClientView<'a> {
    /// Client id (`ip@instance`).
    pub client_id: &'a str,
    /// Zone / machine room of the client, if known ("" otherwise).
    pub zone: &'a str,
}

/// Input of a queue-selector call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SelectContext<'a> {
    /// Topic the messages are sent to.
    pub topic: &'a str,
    /// The topic's queues, in route order. The selector answers indices into this slice.
    pub queues: &'a [QueueView<'a>],
}

/// Input of an allocation call: the same view every member of the group computes with.
///
/// Callers must pass queues and clients in a deterministic order (RocketMQ sorts both:
/// queues by broker name then queue id, clients by id), so every member computes the
/// same assignment; [`crate::builtin::sort_for_allocation`] does it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AllocateInput<'a> {
    /// Consumer group.
    pub group: &'a str,
    /// The client asking for its share.
    pub current_client: &'a str,
    /// All queues of the topic.
    pub queues: &'a [QueueView<'a>],
    /// All live clients of the group.
    pub clients: &'a [ClientView<'a>],
}

impl AllocateInput<'_> {
    /// Index of `current_client` in `clients`.
    pub fn current_index(&self) -> Option<usize> {
        self.clients.iter().position(|c| c.client_id == self.current_client)
    }
}

/// Input shared by a batch of check-back calls.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CheckContext {
    /// The broker's clock, epoch milliseconds.
    pub now_ms: i64,
    /// `transactionCheckMax`: checks allowed before a half message is parked.
    pub max_checks: u32,
}

/// A filter's answer for one message (or consume-queue unit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Verdict {
    /// Do not deliver to this subscription.
    Reject = 0,
    /// Deliver.
    Accept = 1,
    /// The plugin could not decide for this message; the failure policy decides.
    Error = 2,
}

impl Verdict {
    /// Decodes an output byte.
    pub const fn from_u8(b: u8) -> Option<Verdict> {
        match b {
            0 => Some(Verdict::Reject),
            1 => Some(Verdict::Accept),
            2 => Some(Verdict::Error),
            _ => None,
        }
    }

    /// `Accept` for true, `Reject` for false.
    pub const fn from_bool(b: bool) -> Verdict {
        if b {
            Verdict::Accept
        } else {
            Verdict::Reject
        }
    }
}

/// Queue-selector output meaning "no choice": the host applies the failure policy to
/// that message.
pub const NO_QUEUE: u32 = u32::MAX;

/// A check-back handler's decision for one half message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CheckDecision {
    /// Do what RocketMQ does: send `CHECK_TRANSACTION_STATE` to a producer of the group.
    AskProducer,
    /// Commit the half message (publish it to its real topic).
    Commit,
    /// Roll it back.
    Rollback,
    /// Check again later, in this many milliseconds (does not count as a check).
    Defer {
        /// Delay before the next check.
        ms: u32,
    },
    /// The plugin could not decide for this message; the failure policy decides.
    Error,
}

impl CheckDecision {
    /// The decision code of the output record (see the README).
    pub const fn code(self) -> u8 {
        match self {
            CheckDecision::AskProducer => 0,
            CheckDecision::Commit => 1,
            CheckDecision::Rollback => 2,
            CheckDecision::Defer { .. } => 3,
            CheckDecision::Error => 0xFF,
        }
    }

    /// Decodes an output record's `(code, defer_ms)`.
    pub const fn from_code(code: u8, defer_ms: u32) -> Option<CheckDecision> {
        match code {
            0 => Some(CheckDecision::AskProducer),
            1 => Some(CheckDecision::Commit),
            2 => Some(CheckDecision::Rollback),
            3 => Some(CheckDecision::Defer { ms: defer_ms }),
            0xFF => Some(CheckDecision::Error),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn properties_round_trip_and_tolerate_garbage() {
        let raw = encode_properties([("TAGS", "TagA"), ("price", "12"), ("k", "")]);
        let p = Properties::new(&raw);
        assert_eq!(p.get("price"), Some("12"));
        assert_eq!(p.get("k"), Some(""));
        assert_eq!(p.get("nope"), None);
        assert_eq!(p.iter().count(), 3);
        // No trailing separator, an entry without \x01 and invalid UTF-8 in between.
        let raw = b"a\x01x\x02junk\x02\xff\x01y\x02b\x011";
        let p = Properties::new(raw);
        assert_eq!(p.iter().collect::<Vec<_>>(), vec![("a", "x"), ("b", "1")]);
    }

    #[test]
    fn decision_codes_round_trip() {
        for d in [
            CheckDecision::AskProducer,
            CheckDecision::Commit,
            CheckDecision::Rollback,
            CheckDecision::Defer { ms: 1500 },
            CheckDecision::Error,
        ] {
            let ms = if let CheckDecision::Defer { ms } = d { ms } else { 0 };
            assert_eq!(CheckDecision::from_code(d.code(), ms), Some(d));
        }
        assert_eq!(CheckDecision::from_code(9, 0), None);
        assert_eq!(Verdict::from_u8(3), None);
    }
}
