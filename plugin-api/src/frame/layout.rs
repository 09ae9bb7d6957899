//! Byte offsets and sizes of the v1 layout. The README's tables are generated from the
//! same numbers; a test checks they agree with the encoder.

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
