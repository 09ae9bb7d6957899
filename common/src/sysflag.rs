//! Bit flags carried by messages, pulls and topics (`MessageSysFlag`, `PullSysFlag`,
//! `TopicSysFlag` in RocketMQ).

/// `MessageSysFlag`: stored in every record and sent in send headers.
pub mod message {
    pub const COMPRESSED: i32 = 0x1;
    pub const MULTI_TAGS: i32 = 0x2;
    pub const TRANSACTION_NOT_TYPE: i32 = 0;
    pub const TRANSACTION_PREPARED_TYPE: i32 = 0x4;
    pub const TRANSACTION_COMMIT_TYPE: i32 = 0x8;
    pub const TRANSACTION_ROLLBACK_TYPE: i32 = 0xC;
    /// Mask of the two-bit transaction type field.
    pub const TRANSACTION_MASK: i32 = 0xC;
    pub const BORNHOST_V6: i32 = 0x10;
    pub const STOREHOST_V6: i32 = 0x20;
    pub const NEED_UNWRAP: i32 = 0x40;
    pub const INNER_BATCH: i32 = 0x80;
    /// Bits 8–10: compression type (0 or 3 = zlib, 1 = lz4, 2 = zstd).
    pub const COMPRESSION_TYPE_MASK: i32 = 0x700;

    /// The transaction type bits of `sys_flag`.
    pub fn transaction_type(sys_flag: i32) -> i32 {
        sys_flag & TRANSACTION_MASK
    }

    /// `sys_flag` with its transaction type replaced by `tx_type`.
    pub fn with_transaction_type(sys_flag: i32, tx_type: i32) -> i32 {
        (sys_flag & !TRANSACTION_MASK) | (tx_type & TRANSACTION_MASK)
    }
}

/// `PullSysFlag`: the `sysFlag` header of PULL_MESSAGE.
pub mod pull {
    pub const COMMIT_OFFSET: i32 = 0x1;
    pub const SUSPEND: i32 = 0x2;
    pub const SUBSCRIPTION: i32 = 0x4;
    pub const CLASS_FILTER: i32 = 0x8;
    pub const LITE_PULL: i32 = 0x10;

    /// Builds a pull flag the way the Java client does.
    pub fn build(commit_offset: bool, suspend: bool, subscription: bool, class_filter: bool) -> i32 {
        let mut flag = 0;
        if commit_offset {
            flag |= COMMIT_OFFSET;
        }
        if suspend {
            flag |= SUSPEND;
        }
        if subscription {
            flag |= SUBSCRIPTION;
        }
        if class_filter {
            flag |= CLASS_FILTER;
        }
        flag
    }
}

/// `TopicSysFlag`.
pub mod topic {
    pub const UNIT: i32 = 0x1;
    pub const UNIT_SUB: i32 = 0x2;
}

#[cfg(test)]
mod tests {
    use super::message::*;

    #[test]
    fn transaction_type_round_trips() {
        let f = COMPRESSED | TRANSACTION_PREPARED_TYPE | BORNHOST_V6;
        assert_eq!(transaction_type(f), TRANSACTION_PREPARED_TYPE);
        let c = with_transaction_type(f, TRANSACTION_COMMIT_TYPE);
        assert_eq!(transaction_type(c), TRANSACTION_COMMIT_TYPE);
        assert_eq!(c & !TRANSACTION_MASK, COMPRESSED | BORNHOST_V6);
    }
}
