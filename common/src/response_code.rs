//! Response codes (`ResponseCode` / `RemotingSysResponseCode`).
//!
//! A newtype rather than an enum: peers may send codes we do not know (5.x adds
//! more), and those must round-trip without loss.

use std::fmt;

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ResponseCode(pub i32);

macro_rules! codes {
    ($($name:ident = $v:expr),+ $(,)?) => {
        impl ResponseCode {
            $(pub const $name: ResponseCode = ResponseCode($v);)+

            /// The RocketMQ constant name, when the code is known.
            pub fn name(self) -> Option<&'static str> {
                match self.0 { $($v => Some(stringify!($name)),)+ _ => None }
            }
        }
    };
}

codes! {
    SUCCESS = 0,
    SYSTEM_ERROR = 1,
    SYSTEM_BUSY = 2,
    REQUEST_CODE_NOT_SUPPORTED = 3,
    TRANSACTION_FAILED = 4,
    FLUSH_DISK_TIMEOUT = 10,
    SLAVE_NOT_AVAILABLE = 11,
    FLUSH_SLAVE_TIMEOUT = 12,
    MESSAGE_ILLEGAL = 13,
    SERVICE_NOT_AVAILABLE = 14,
    VERSION_NOT_SUPPORTED = 15,
    NO_PERMISSION = 16,
    TOPIC_NOT_EXIST = 17,
    TOPIC_EXIST_ALREADY = 18,
    PULL_NOT_FOUND = 19,
    PULL_RETRY_IMMEDIATELY = 20,
    PULL_OFFSET_MOVED = 21,
    QUERY_NOT_FOUND = 22,
    SUBSCRIPTION_PARSE_FAILED = 23,
    SUBSCRIPTION_NOT_EXIST = 24,
    SUBSCRIPTION_NOT_LATEST = 25,
    SUBSCRIPTION_GROUP_NOT_EXIST = 26,
    FILTER_DATA_NOT_EXIST = 27,
    FILTER_DATA_NOT_LATEST = 28,
    INVALID_PARAMETER = 29,
    TRANSACTION_SHOULD_COMMIT = 200,
    TRANSACTION_SHOULD_ROLLBACK = 201,
    TRANSACTION_STATE_UNKNOW = 202,
    TRANSACTION_STATE_GROUP_WRONG = 203,
    NO_BUYER_ID = 204,
    NOT_IN_CURRENT_UNIT = 205,
    CONSUMER_NOT_ONLINE = 206,
    CONSUME_MSG_TIMEOUT = 207,
    NO_MESSAGE = 208,
    UPDATE_AND_CREATE_ACL_CONFIG_FAILED = 209,
    DELETE_ACL_CONFIG_FAILED = 210,
    UPDATE_GLOBAL_WHITE_ADDRS_CONFIG_FAILED = 211,
    FLOW_CONTROL = 215,
    NOT_LEADER_FOR_QUEUE = 501,
    ILLEGAL_OPERATION = 604,
    GO_AWAY = 1500,
    CONTROLLER_FENCED_MASTER_EPOCH = 2000,
    CONTROLLER_FENCED_SYNC_STATE_SET_EPOCH = 2001,
    CONTROLLER_INVALID_MASTER = 2002,
    CONTROLLER_INVALID_REPLICAS = 2003,
    CONTROLLER_MASTER_NOT_AVAILABLE = 2004,
    CONTROLLER_INVALID_REQUEST = 2005,
    CONTROLLER_BROKER_NOT_ALIVE = 2006,
    CONTROLLER_NOT_LEADER = 2007,
    CONTROLLER_BROKER_METADATA_NOT_EXIST = 2008,
    CONTROLLER_INVALID_CLEAN_BROKER_METADATA = 2009,
    CONTROLLER_BROKER_NEED_TO_BE_REGISTERED = 2010,
    CONTROLLER_MASTER_STILL_EXIST = 2011,
    CONTROLLER_ELECT_MASTER_FAILED = 2012,
    CONTROLLER_ALTER_SYNC_STATE_SET_FAILED = 2013,
    CONTROLLER_BROKER_ID_INVALID = 2014,
    CONTROLLER_JRAFT_INTERNAL_ERROR = 2015,
    CONTROLLER_BROKER_LIVE_INFO_NOT_EXISTS = 2016,
}

impl ResponseCode {
    /// RocketMQ 5 gives POP's long polling the numbers 4.x gave two ACL failures
    /// (`UPDATE_AND_CREATE_ACL_CONFIG_FAILED`, `DELETE_ACL_CONFIG_FAILED`); which one
    /// a response means depends on its request.
    pub const POLLING_FULL: ResponseCode = ResponseCode(209);
    pub const POLLING_TIMEOUT: ResponseCode = ResponseCode(210);

    pub fn is_success(self) -> bool {
        self == Self::SUCCESS
    }
}

impl fmt::Debug for ResponseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => write!(f, "{n}({})", self.0),
            None => write!(f, "ResponseCode({})", self.0),
        }
    }
}

impl fmt::Display for ResponseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

impl From<ResponseCode> for i32 {
    fn from(c: ResponseCode) -> i32 {
        c.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(ResponseCode(17).name(), Some("TOPIC_NOT_EXIST"));
        assert_eq!(ResponseCode(9999).name(), None);
        assert_eq!(format!("{:?}", ResponseCode::PULL_NOT_FOUND), "PULL_NOT_FOUND(19)");
    }
}
