//! Failures as the 5.x clients expect them: a [`pb::Code`] and a message naming the
//! cause, carried in the response's `status` (the gRPC status itself stays OK, as
//! RocketMQ's proxy answers).

use common::ResponseCode;

use crate::pb::{self, Code};

/// A failed call: what goes into the response's `status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub code: Code,
    pub message: String,
}

impl Failure {
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        Self { code, message: message.into() }
    }

    /// A remoting response that is not a success, as the 5.x code for it.
    pub fn from_remoting(code: ResponseCode, remark: Option<&str>) -> Self {
        let message = match remark {
            Some(r) if !r.is_empty() => r.to_owned(),
            _ => format!("the broker answered {}", code.0),
        };
        // The broker's ACL refuses with SYSTEM_ERROR and an AclException remark, as
        // RocketMQ's does; to a 5.x client that is FORBIDDEN.
        if code == ResponseCode::SYSTEM_ERROR && message.contains("AclException") {
            return Self { code: Code::Forbidden, message };
        }
        Self { code: code_of(code), message }
    }

    pub fn status(&self) -> pb::Status {
        pb::Status { code: self.code as i32, message: self.message.clone() }
    }
}

/// The OK status.
pub(crate) fn ok() -> pb::Status {
    pb::Status { code: Code::Ok as i32, message: "OK".to_owned() }
}

/// The 5.x code for a remoting response code.
pub fn code_of(code: ResponseCode) -> Code {
    match code {
        ResponseCode::SUCCESS => Code::Ok,
        ResponseCode::SYSTEM_BUSY => Code::TooManyRequests,
        ResponseCode::REQUEST_CODE_NOT_SUPPORTED => Code::NotImplemented,
        ResponseCode::MESSAGE_ILLEGAL => Code::BadRequest,
        ResponseCode::VERSION_NOT_SUPPORTED => Code::VersionUnsupported,
        ResponseCode::SUBSCRIPTION_PARSE_FAILED => Code::IllegalFilterExpression,
        ResponseCode::FLUSH_DISK_TIMEOUT => Code::MasterPersistenceTimeout,
        ResponseCode::FLUSH_SLAVE_TIMEOUT => Code::SlavePersistenceTimeout,
        ResponseCode::SLAVE_NOT_AVAILABLE => Code::HaNotAvailable,
        ResponseCode::TOPIC_NOT_EXIST => Code::TopicNotFound,
        ResponseCode::SUBSCRIPTION_GROUP_NOT_EXIST | ResponseCode::SUBSCRIPTION_NOT_EXIST => {
            Code::ConsumerGroupNotFound
        }
        ResponseCode::NO_PERMISSION => Code::Forbidden,
        ResponseCode::NO_MESSAGE | ResponseCode::PULL_NOT_FOUND | ResponseCode::POLLING_TIMEOUT => {
            Code::MessageNotFound
        }
        ResponseCode::INVALID_PARAMETER => Code::BadRequest,
        ResponseCode::QUERY_NOT_FOUND => Code::OffsetNotFound,
        ResponseCode::PULL_OFFSET_MOVED => Code::IllegalOffset,
        _ => Code::InternalServerError,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_but_not_replicated_sends_keep_their_meaning() {
        assert_eq!(code_of(ResponseCode::FLUSH_DISK_TIMEOUT), Code::MasterPersistenceTimeout);
        assert_eq!(code_of(ResponseCode::FLUSH_SLAVE_TIMEOUT), Code::SlavePersistenceTimeout);
        assert_eq!(code_of(ResponseCode::SLAVE_NOT_AVAILABLE), Code::HaNotAvailable);
    }

    #[test]
    fn unknown_codes_are_internal_errors_with_the_code_named() {
        let f = Failure::from_remoting(ResponseCode(9999), None);
        assert_eq!(f.code, Code::InternalServerError);
        assert!(f.message.contains("9999"), "{}", f.message);
        let f = Failure::from_remoting(ResponseCode::TOPIC_NOT_EXIST, Some("topic[T] not exist"));
        assert_eq!((f.code, f.message.as_str()), (Code::TopicNotFound, "topic[T] not exist"));
    }
}
