//! The store's public request/response types.
//!
//! Statuses mirror RocketMQ's `PutMessageStatus` and `GetMessageStatus` so the broker
//! maps them to response codes one-to-one (remoting-protocol.md §12.3, §12.5).

use std::net::SocketAddr;

use bytes::Bytes;
use common::record::RecordView;
use common::{MessageExt, Properties};

/// One message to append. The store assigns the physical offset, queue offset and
/// store timestamp; everything else is written as given.
#[derive(Debug, Clone)]
pub struct PutMessage {
    pub topic: String,
    pub queue_id: i32,
    /// User flag.
    pub flag: i32,
    /// `MessageSysFlag`; the host-kind bits are recomputed from the addresses.
    /// PREPARED and ROLLBACK transaction types get queue offset 0 and are not
    /// dispatched to a consume queue (they are indexed).
    pub sys_flag: i32,
    pub born_timestamp: i64,
    pub born_host: SocketAddr,
    pub reconsume_times: i32,
    pub prepared_transaction_offset: i64,
    pub body: Bytes,
    /// Encoded properties (`k\x01v\x02...`). `KEYS` (split on spaces) and `UNIQ_KEY`
    /// are indexed.
    pub properties: String,
    /// The consume-queue tags code: the `TAGS` hash, or the delivery time for
    /// `SCHEDULE_TOPIC_XXXX`. It must be what [`crate::derive_tags_code`] computes from
    /// the record, because a rebuild after a crash derives it again.
    pub tags_code: i64,
}

impl PutMessage {
    /// A message with the given topic, queue and body; the rest zero/empty and the
    /// tags code derived from `properties` when set via [`PutMessage::with_properties`].
    pub fn new(topic: impl Into<String>, queue_id: i32, body: impl Into<Bytes>) -> Self {
        Self {
            topic: topic.into(),
            queue_id,
            flag: 0,
            sys_flag: 0,
            born_timestamp: 0,
            born_host: SocketAddr::from(([127, 0, 0, 1], 0)),
            reconsume_times: 0,
            prepared_transaction_offset: 0,
            body: body.into(),
            properties: String::new(),
            tags_code: 0,
        }
    }

    /// Sets the encoded properties and the tags code they imply for this topic
    /// ([`PutMessage::tags_code_for`]).
    pub fn with_properties(mut self, properties: impl Into<String>) -> Self {
        self.properties = properties.into();
        self.tags_code = Self::tags_code_for(&self.topic, &self.properties);
        self
    }

    /// A stored message appended again, on its way into or back out of a system
    /// topic (delay level, timer, transaction half, retry, dead letter): the same
    /// body, flags, born timestamp and host, reconsume count and prepared-transaction
    /// offset, with the given destination and properties and the tags code they
    /// imply. Callers change what their detour changes with struct update syntax.
    pub fn from_stored(msg: &MessageExt, topic: impl Into<String>, queue_id: i32, properties: &Properties) -> Self {
        let topic = topic.into();
        let properties = properties.encode();
        Self {
            tags_code: Self::tags_code_for(&topic, &properties),
            topic,
            queue_id,
            flag: msg.flag,
            sys_flag: msg.sys_flag,
            born_timestamp: msg.born_timestamp,
            born_host: msg.born_host,
            reconsume_times: msg.reconsume_times,
            prepared_transaction_offset: msg.prepared_transaction_offset,
            body: msg.body.clone(),
            properties,
        }
    }

    /// The consume-queue tags code of a message with encoded `properties` appended to
    /// `topic`: its delivery time in the timer topic, else the hash of its `TAGS`
    /// (0 without). In `SCHEDULE_TOPIC_XXXX` the store derives the code from the
    /// store timestamp itself, whatever is given.
    pub fn tags_code_for(topic: &str, properties: &str) -> i64 {
        use common::properties::{find_in_encoded, keys};
        if topic == common::topic::TIMER_TOPIC {
            if let Some(at) = find_in_encoded(properties, keys::TIMER_DELIVER_MS).and_then(|v| v.parse().ok()) {
                return at;
            }
        }
        common::hash::tags_code(find_in_encoded(properties, keys::TAGS))
    }
}

/// Outcome of an append (RocketMQ `PutMessageStatus`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PutStatus {
    PutOk,
    /// Stored, but not durable within `sync_flush_timeout` (SYNC_FLUSH only).
    FlushDiskTimeout,
    /// Topic empty or too long, body too large, record larger than a segment, or a
    /// batch mixing topics/queues.
    MessageIllegal,
    PropertiesSizeExceeded,
    /// The store is shutting down.
    ServiceNotAvailable,
    /// The store's file system was last measured above
    /// `disk_space_warning_level_ratio`; puts are accepted again once retention
    /// measures it below (RocketMQ answers this as `SERVICE_NOT_AVAILABLE`).
    DiskFull,
    /// The append queue stayed full for `put_queue_timeout`.
    OsPageCacheBusy,
    /// The commit log could not be written (I/O error); the store stops accepting puts.
    UnknownError,
    /// SYNC_MASTER: stored, but no replica confirmed it within `sync_flush_timeout`.
    FlushSlaveTimeout,
    /// SYNC_MASTER: stored, but no replica is connected or the nearest is too far
    /// behind to wait for.
    SlaveNotAvailable,
}

impl PutStatus {
    /// Whether the message was stored (it may still not be durable).
    pub fn is_stored(self) -> bool {
        matches!(
            self,
            PutStatus::PutOk
                | PutStatus::FlushDiskTimeout
                | PutStatus::FlushSlaveTimeout
                | PutStatus::SlaveNotAvailable
        )
    }
}

/// Result of [`crate::MessageStore::put`] / [`crate::MessageStore::put_batch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutResult {
    pub status: PutStatus,
    /// Commit-log offset of the (first) record; -1 if not stored.
    pub physical_offset: i64,
    /// Total bytes appended.
    pub wrote_bytes: usize,
    /// Queue offset of the (first) record; 0 for PREPARED/ROLLBACK, -1 if not stored.
    pub queue_offset: i64,
    pub store_timestamp: i64,
    /// Number of records appended (1 for a single put).
    pub msg_count: usize,
    /// The store host written into the records (for the offset message id).
    pub store_host: SocketAddr,
    /// Physical offset of every record of a batch (empty for a single put).
    pub batch_offsets: Vec<i64>,
}

impl PutResult {
    pub(crate) fn failed(status: PutStatus, store_host: SocketAddr) -> Self {
        Self {
            status,
            physical_offset: -1,
            wrote_bytes: 0,
            queue_offset: -1,
            store_timestamp: 0,
            msg_count: 0,
            store_host,
            batch_offsets: Vec::new(),
        }
    }

    /// The `offsetMsgId` of the (first) record: store host ‖ physical offset in hex.
    pub fn msg_id(&self) -> String {
        common::msgid::offset_msg_id(self.store_host, self.physical_offset)
    }

    /// The `offsetMsgId`s of every record, comma-joined as the batch send response
    /// carries them.
    pub fn msg_ids(&self) -> String {
        if self.batch_offsets.is_empty() {
            return self.msg_id();
        }
        let ids: Vec<String> =
            self.batch_offsets.iter().map(|&o| common::msgid::offset_msg_id(self.store_host, o)).collect();
        ids.join(",")
    }
}

/// A consume-queue entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CqEntry {
    /// Commit-log offset of the record.
    pub phy_offset: i64,
    /// Record size in bytes.
    pub size: i32,
    /// Tag hash, or delivery time for `SCHEDULE_TOPIC_XXXX`.
    pub tags_code: i64,
}

/// Outcome of a read (RocketMQ `GetMessageStatus`); see remoting-protocol.md §12.5.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GetStatus {
    Found,
    NoMatchedMessage,
    MessageWasRemoving,
    OffsetFoundNull,
    OffsetOverflowBadly,
    OffsetOverflowOne,
    OffsetTooSmall,
    NoMatchedLogicQueue,
    NoMessageInQueue,
}

/// Filter on consume-queue entries (tag-hash stage).
pub type CqFilter<'a> = &'a dyn Fn(&CqEntry) -> bool;
/// Filter on the stored record (property/SQL/plugin stage).
pub type RecordFilter<'a> = &'a dyn Fn(&RecordView<'_>) -> bool;

/// A batch read from one queue.
#[derive(Clone, Copy)]
pub struct GetRequest<'a> {
    pub topic: &'a str,
    pub queue_id: i32,
    /// First logical offset to read.
    pub offset: i64,
    /// At most this many messages.
    pub max_msgs: usize,
    /// Stop before exceeding this many bytes (the first message is always returned).
    pub max_bytes: usize,
    pub cq_filter: Option<CqFilter<'a>>,
    pub record_filter: Option<RecordFilter<'a>>,
}

impl<'a> GetRequest<'a> {
    /// Up to `max_msgs` messages and 256 KiB (RocketMQ's in-memory transfer cap), no
    /// filters.
    pub fn new(topic: &'a str, queue_id: i32, offset: i64, max_msgs: usize) -> Self {
        Self { topic, queue_id, offset, max_msgs, max_bytes: 256 * 1024, cq_filter: None, record_filter: None }
    }

    pub fn max_bytes(mut self, max_bytes: usize) -> Self {
        self.max_bytes = max_bytes;
        self
    }

    pub fn cq_filter(mut self, f: CqFilter<'a>) -> Self {
        self.cq_filter = Some(f);
        self
    }

    pub fn record_filter(mut self, f: RecordFilter<'a>) -> Self {
        self.record_filter = Some(f);
        self
    }
}

impl std::fmt::Debug for GetRequest<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GetRequest")
            .field("topic", &self.topic)
            .field("queue_id", &self.queue_id)
            .field("offset", &self.offset)
            .field("max_msgs", &self.max_msgs)
            .field("max_bytes", &self.max_bytes)
            .finish()
    }
}

/// Result of [`crate::MessageStore::get_messages`].
#[derive(Debug, Clone)]
pub struct GetResult {
    pub status: GetStatus,
    pub next_begin_offset: i64,
    pub min_offset: i64,
    pub max_offset: i64,
    /// Full stored records, each borrowing the mapped segment (no copy).
    pub messages: Vec<Bytes>,
    /// Queue offset of each message in `messages`.
    pub queue_offsets: Vec<i64>,
    pub total_bytes: usize,
}

impl GetResult {
    pub(crate) fn empty(status: GetStatus, next_begin_offset: i64, min_offset: i64, max_offset: i64) -> Self {
        Self {
            status,
            next_begin_offset,
            min_offset,
            max_offset,
            messages: Vec::new(),
            queue_offsets: Vec::new(),
            total_bytes: 0,
        }
    }
}

/// What dispatching tells the arrival listener about a newly visible message.
#[derive(Debug, Clone, Copy)]
pub struct Arrival<'a> {
    pub topic: &'a str,
    pub queue_id: i32,
    pub queue_offset: i64,
    pub tags_code: i64,
    pub store_timestamp: i64,
    /// Commit-log offset of the record.
    pub phy_offset: i64,
    /// The record's encoded properties.
    pub properties: &'a [u8],
}

/// Called after a consume-queue entry became visible, on the thread that dispatched
/// it: the writer (ASYNC_FLUSH) or the flusher (SYNC_FLUSH), inside the
/// acknowledgement path of the puts of that batch. Keep it cheap and non-blocking.
pub type ArrivalListener = std::sync::Arc<dyn Fn(&Arrival<'_>) + Send + Sync>;

/// What recovery found when the store was opened.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// The previous run shut down cleanly (no `abort` marker, valid checkpoint).
    pub clean_shutdown: bool,
    /// Commit-log offset where the scan started (crash recovery only).
    pub scanned_from: i64,
    /// Recovered commit-log end: the next record is appended here.
    pub commit_log_end: i64,
    /// A torn or corrupt tail that was cut off.
    pub truncated: Option<TruncatedTail>,
    /// Consume-queue entries dropped because they pointed at or past the rebuild point.
    pub cq_entries_dropped: u64,
    /// Index entries rolled back for the same reason.
    pub index_entries_dropped: u64,
    /// Commit-log offset from which consume queues and index were rebuilt.
    pub redispatched_from: i64,
    /// Records re-dispatched during recovery.
    pub records_redispatched: u64,
}

/// A cut-off commit-log tail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TruncatedTail {
    /// Offset of the first invalid byte (the new end).
    pub offset: i64,
    /// Why the entry there was rejected.
    pub reason: String,
    /// Non-zero bytes discarded after `offset` in that segment, plus whole later
    /// segments that were removed.
    pub discarded_bytes: u64,
}

/// Runtime counters for metrics (a consistent-enough snapshot, not atomic as a whole).
#[derive(Debug, Clone, Default)]
pub struct StoreStats {
    pub puts_ok: u64,
    pub puts_failed: u64,
    pub put_bytes: u64,
    /// Put latency (enqueue to ack) histogram: bucket `i` counts latencies in
    /// `[2^i, 2^(i+1))` microseconds (bucket 0 also holds < 1 µs).
    pub put_latency_us_log2: [u64; 32],
    pub commit_log_min_offset: i64,
    pub commit_log_max_offset: i64,
    pub commit_log_flushed_offset: i64,
    pub dispatched_offset: i64,
    /// `commit_log_max_offset - dispatched_offset`.
    pub dispatch_lag_bytes: i64,
    pub flushes: u64,
    pub writer_batches: u64,
    pub gets: u64,
    pub get_messages: u64,
    /// Used fraction of the store's file system at the last retention run;
    /// `None` before the first run or when it cannot be measured.
    pub disk_usage_ratio: Option<f64>,
    /// Whether puts are refused because usage is above `disk_warning_ratio`.
    pub disk_full: bool,
    /// The usage ratio above which puts are refused.
    pub disk_warning_ratio: f64,
}
