//! Messages as producers build them ([`Message`]) and as the store hands them out
//! ([`MessageExt`]).

use std::net::SocketAddr;

use bytes::Bytes;

use crate::error::Result;
use crate::properties::{keys, Properties};
use crate::record::{EncodeError, RecordRef, RecordView};

/// A message as a producer sends it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Message {
    pub topic: String,
    /// Free user flag, stored as-is.
    pub flag: i32,
    pub properties: Properties,
    pub body: Bytes,
}

impl Message {
    pub fn new(topic: impl Into<String>, body: impl Into<Bytes>) -> Self {
        Self { topic: topic.into(), body: body.into(), ..Self::default() }
    }

    pub fn with_tags(mut self, tags: impl Into<String>) -> Self {
        self.properties.insert(keys::TAGS, tags);
        self
    }

    /// Sets `KEYS`; several keys are joined with a space as RocketMQ does.
    pub fn with_keys<I, S>(mut self, keys_iter: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let joined = keys_iter.into_iter().map(|k| k.as_ref().to_owned()).collect::<Vec<_>>().join(" ");
        self.properties.insert(keys::KEYS, joined);
        self
    }

    pub fn with_property(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.properties.insert(key, value);
        self
    }

    /// Sets the delay level (1-based index into the broker's `messageDelayLevel`).
    pub fn with_delay_level(mut self, level: i32) -> Self {
        self.properties.insert(keys::DELAY_TIME_LEVEL, level.to_string());
        self
    }

    pub fn tags(&self) -> Option<&str> {
        self.properties.tags()
    }

    pub fn uniq_key(&self) -> Option<&str> {
        self.properties.uniq_key()
    }

    pub fn delay_level(&self) -> i32 {
        self.properties.get(keys::DELAY_TIME_LEVEL).and_then(|v| v.parse().ok()).unwrap_or(0)
    }
}

/// A stored message with every field of the record layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageExt {
    pub topic: String,
    pub queue_id: i32,
    pub flag: i32,
    pub queue_offset: i64,
    pub commit_log_offset: i64,
    pub sys_flag: i32,
    pub born_timestamp: i64,
    pub born_host: SocketAddr,
    pub store_timestamp: i64,
    pub store_host: SocketAddr,
    pub reconsume_times: i32,
    pub prepared_transaction_offset: i64,
    pub body_crc: u32,
    /// Size of the stored record in bytes.
    pub store_size: i32,
    pub properties: Properties,
    /// The stored body: still compressed when `sys_flag` says so.
    pub body: Bytes,
}

impl MessageExt {
    /// Decodes the record at the start of `buf`; the body shares `buf`'s memory.
    ///
    /// # Errors
    /// See [`RecordView::parse`]; a CRC mismatch when `check_crc` is set.
    pub fn decode(buf: &Bytes, check_crc: bool) -> Result<Self> {
        let v = RecordView::parse(buf)?;
        if check_crc {
            v.verify_crc()?;
        }
        Ok(Self::from_view(&v, buf.slice(v.body_range())))
    }

    /// Builds an owned message from a view, with `body` supplied by the caller (so a
    /// store can pass a slice of its mapping instead of copying).
    pub fn from_view(v: &RecordView<'_>, body: Bytes) -> Self {
        Self {
            topic: v.topic().to_owned(),
            queue_id: v.queue_id(),
            flag: v.flag(),
            queue_offset: v.queue_offset(),
            commit_log_offset: v.physical_offset(),
            sys_flag: v.sys_flag(),
            born_timestamp: v.born_timestamp(),
            born_host: v.born_host(),
            store_timestamp: v.store_timestamp(),
            store_host: v.store_host(),
            reconsume_times: v.reconsume_times(),
            prepared_transaction_offset: v.prepared_transaction_offset(),
            body_crc: v.body_crc(),
            store_size: v.total_size() as i32,
            properties: v.properties(),
            body,
        }
    }

    /// Re-encodes the message in the stored layout (body CRC recomputed).
    ///
    /// # Errors
    /// The message exceeds the layout's limits.
    pub fn to_record_bytes(&self) -> Result<Bytes, EncodeError> {
        let props = self.properties.encode();
        RecordRef {
            topic: &self.topic,
            queue_id: self.queue_id,
            flag: self.flag,
            queue_offset: self.queue_offset,
            physical_offset: self.commit_log_offset,
            sys_flag: self.sys_flag,
            born_timestamp: self.born_timestamp,
            born_host: self.born_host,
            store_timestamp: self.store_timestamp,
            store_host: self.store_host,
            reconsume_times: self.reconsume_times,
            prepared_transaction_offset: self.prepared_transaction_offset,
            body: &self.body,
            properties: props.as_bytes(),
            body_crc: None,
        }
        .to_bytes()
    }

    /// The broker-derived id (`offsetMsgId`): store host + commit-log offset.
    pub fn offset_msg_id(&self) -> String {
        crate::msgid::offset_msg_id(self.store_host, self.commit_log_offset)
    }

    /// The id applications see: `UNIQ_KEY` when present, else the offset id.
    pub fn msg_id(&self) -> String {
        self.properties.uniq_key().map(str::to_owned).unwrap_or_else(|| self.offset_msg_id())
    }

    pub fn tags(&self) -> Option<&str> {
        self.properties.tags()
    }
}
