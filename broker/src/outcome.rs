//! What a put's outcome means to a RocketMQ client: the one mapping from the store's
//! [`PutStatus`] to a response code and remark, used by every path that stores a
//! message (send, batch, send-back, reply, end-transaction) and by the services that
//! re-publish one (schedule, timer, transaction check) when they log a refusal.
//!
//! The codes are RocketMQ's `SendMessageProcessor` mapping (`remoting-protocol.md`
//! §12.3 step 9): the "stored" statuses keep their own codes on a send, because the
//! producer reports them as send statuses (FLUSH_DISK_TIMEOUT and friends still carry
//! the msgId); every refusal gets the code a client retries or reports on, and a
//! remark that says why in words an operator can act on.

use std::borrow::Cow;

use common::ResponseCode;
use remoting::RemotingCommand;
use store::{PutStatus, StoreStats};

/// A put's status as a response code and remark.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutOutcome {
    pub status: PutStatus,
    pub code: ResponseCode,
    /// `None` for the statuses that store the message.
    pub remark: Option<Cow<'static, str>>,
}

/// The facts a remark quotes: read only when the status needs them.
pub trait StoreFacts {
    /// The largest body the store accepts (`maxMessageSize`).
    fn max_message_size(&self) -> u64;
    /// The store's disk figures, for a `DiskFull` remark.
    fn disk(&self) -> StoreStats;
}

impl PutOutcome {
    /// Maps `status` (RocketMQ's `PutMessageStatus` switch).
    pub fn of(status: PutStatus, facts: &dyn StoreFacts) -> Self {
        let (code, remark): (ResponseCode, Option<Cow<'static, str>>) = match status {
            PutStatus::PutOk => (ResponseCode::SUCCESS, None),
            PutStatus::FlushDiskTimeout => (ResponseCode::FLUSH_DISK_TIMEOUT, None),
            PutStatus::FlushSlaveTimeout => (ResponseCode::FLUSH_SLAVE_TIMEOUT, None),
            PutStatus::SlaveNotAvailable => (ResponseCode::SLAVE_NOT_AVAILABLE, None),
            PutStatus::PropertiesSizeExceeded => (
                ResponseCode::MESSAGE_ILLEGAL,
                Some(
                    "the message is illegal: its properties are longer than 32767 bytes (msg properties length \
                     limit 32KB)"
                        .into(),
                ),
            ),
            PutStatus::MessageIllegal => (
                ResponseCode::MESSAGE_ILLEGAL,
                Some(
                    format!(
                        "the message is illegal, maybe msg body or properties length not matched. msg body length \
                         limit {}B, msg properties length limit 32KB.",
                        facts.max_message_size()
                    )
                    .into(),
                ),
            ),
            PutStatus::ServiceNotAvailable => (
                ResponseCode::SERVICE_NOT_AVAILABLE,
                Some("service not available now: the broker is shutting down".into()),
            ),
            PutStatus::DiskFull => (ResponseCode::SERVICE_NOT_AVAILABLE, Some(disk_full_remark(&facts.disk()).into())),
            // RocketMQ 5 answers SYSTEM_BUSY here, which producers retry on another broker.
            PutStatus::OsPageCacheBusy => (
                ResponseCode::SYSTEM_BUSY,
                Some("[PCBUSY_CLEAN_QUEUE]broker busy: the commit-log queue stayed full; retry later".into()),
            ),
            PutStatus::UnknownError => {
                (ResponseCode::SYSTEM_ERROR, Some("the commit log could not be written; see the broker log".into()))
            }
        };
        Self { status, code, remark }
    }

    /// Whether the message was stored (perhaps not yet durable).
    pub fn is_stored(&self) -> bool {
        self.status.is_stored()
    }

    /// The refusal as an error response (for a stored status: the code alone).
    pub fn into_error(self) -> RemotingCommand {
        let remark = self.remark.unwrap_or(Cow::Borrowed(""));
        RemotingCommand::error(self.code, remark.into_owned())
    }

    /// The remark, or the empty string.
    pub fn remark_str(&self) -> &str {
        self.remark.as_deref().unwrap_or("")
    }
}

/// Why a put was refused for disk usage, with the figures an operator acts on.
/// RocketMQ's remark starts the same way ("service not available now") and names
/// the disk as one of several possible reasons; this one is the reason.
fn disk_full_remark(stats: &StoreStats) -> String {
    let used =
        stats.disk_usage_ratio.map_or_else(|| "an unmeasured share".to_owned(), |r| format!("{:.1}%", r * 100.0));
    format!(
        "service not available now: the broker's disk is full: the store's file system is {used} used, and new \
         messages are refused above {:.1}% (broker.store.disk_space_warning_level_ratio, RocketMQ's \
         diskSpaceWarningLevelRatio); sends resume once usage is measured below it",
        stats.disk_warning_ratio * 100.0
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Facts;

    impl StoreFacts for Facts {
        fn max_message_size(&self) -> u64 {
            4 << 20
        }

        fn disk(&self) -> StoreStats {
            StoreStats { disk_usage_ratio: Some(0.953), disk_full: true, disk_warning_ratio: 0.9, ..Default::default() }
        }
    }

    fn check(status: PutStatus, code: ResponseCode, stored: bool, remark_has: &str) {
        let o = PutOutcome::of(status, &Facts);
        assert_eq!(o.code, code, "{status:?}");
        assert_eq!(o.is_stored(), stored, "{status:?}");
        assert!(o.remark_str().contains(remark_has), "{status:?}: {:?}", o.remark);
        if stored {
            assert_eq!(o.remark, None, "{status:?}");
        }
    }

    #[test]
    fn every_status_has_rocketmqs_code() {
        check(PutStatus::PutOk, ResponseCode::SUCCESS, true, "");
        check(PutStatus::FlushDiskTimeout, ResponseCode::FLUSH_DISK_TIMEOUT, true, "");
        check(PutStatus::FlushSlaveTimeout, ResponseCode::FLUSH_SLAVE_TIMEOUT, true, "");
        check(PutStatus::SlaveNotAvailable, ResponseCode::SLAVE_NOT_AVAILABLE, true, "");
        check(PutStatus::MessageIllegal, ResponseCode::MESSAGE_ILLEGAL, false, "msg body length limit 4194304B");
        check(PutStatus::PropertiesSizeExceeded, ResponseCode::MESSAGE_ILLEGAL, false, "longer than 32767 bytes");
        check(PutStatus::ServiceNotAvailable, ResponseCode::SERVICE_NOT_AVAILABLE, false, "shutting down");
        check(PutStatus::DiskFull, ResponseCode::SERVICE_NOT_AVAILABLE, false, "95.3% used");
        check(PutStatus::DiskFull, ResponseCode::SERVICE_NOT_AVAILABLE, false, "diskSpaceWarningLevelRatio");
        check(PutStatus::OsPageCacheBusy, ResponseCode::SYSTEM_BUSY, false, "[PCBUSY_CLEAN_QUEUE]");
        check(PutStatus::UnknownError, ResponseCode::SYSTEM_ERROR, false, "could not be written");
    }

    #[test]
    fn refusal_becomes_an_error_response() {
        let resp = PutOutcome::of(PutStatus::DiskFull, &Facts).into_error();
        assert_eq!(resp.response_code(), ResponseCode::SERVICE_NOT_AVAILABLE);
        assert!(resp.remark_str().starts_with("service not available now"));
    }
}
