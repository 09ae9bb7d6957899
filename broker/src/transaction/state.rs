//! What the broker remembers of transactions: the decisions made (keyed by UNIQ_KEY)
//! and the half-queue offsets that need no more checking, rebuilt from the op queue
//! (`RMQ_SYS_TRANS_OP_HALF_TOPIC`) after a restart.
//!
//! This is state only; deciding, publishing and checking back live in
//! [`crate::transaction`].

use std::collections::{HashMap, HashSet};

use parking_lot::Mutex;

use common::topic::TRANS_OP_HALF_TOPIC;
use common::MessageExt;
use store::{GetRequest, GetStatus, MessageStore};

/// Property of an op record naming the transaction (its UNIQ_KEY).
pub(crate) const PROP_TX_UNIQ: &str = "TX_UNIQ";
/// Property of an op record carrying the decision.
pub(crate) const PROP_TX_DECISION: &str = "TX_DECISION";

/// A transaction's final state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Commit,
    Rollback,
    /// Checked too often; parked in TRANS_CHECK_MAX_TIME_TOPIC.
    Discard,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Commit => "COMMIT",
            Decision::Rollback => "ROLLBACK",
            Decision::Discard => "DISCARD",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "COMMIT" => Some(Decision::Commit),
            "ROLLBACK" => Some(Decision::Rollback),
            "DISCARD" => Some(Decision::Discard),
            _ => None,
        }
    }
}

/// How claiming a decision went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// The caller now owns the decision and must apply it (or release the claim).
    Claimed,
    /// The same decision was made before: nothing to do.
    AlreadyMade,
    /// A different decision was made before.
    Contrary(Decision),
}

/// Decisions and checking progress.
#[derive(Default)]
pub struct TransactionState {
    /// UNIQ_KEY → decision.
    decisions: Mutex<HashMap<String, Decision>>,
    /// Half-queue offsets that need no more checking (resolved, or superseded by a
    /// re-appended copy).
    done_offsets: Mutex<HashSet<i64>>,
    /// How far the op queue has been read into `decisions`.
    op_read: Mutex<i64>,
}

impl TransactionState {
    pub fn decision(&self, uniq: &str) -> Option<Decision> {
        self.decisions.lock().get(uniq).copied()
    }

    /// Claims `decision` for `uniq` before it is applied, so that two decisions
    /// racing (a producer's COMMIT and a check-back answer) apply once.
    pub fn claim(&self, uniq: &str, decision: Decision) -> Claim {
        let mut decisions = self.decisions.lock();
        match decisions.get(uniq) {
            Some(d) if *d == decision => Claim::AlreadyMade,
            Some(d) => Claim::Contrary(*d),
            None => {
                decisions.insert(uniq.to_owned(), decision);
                Claim::Claimed
            }
        }
    }

    /// Gives a claimed decision back: applying it failed, the transaction stays
    /// undecided and a later END_TRANSACTION or check round decides again.
    pub fn release(&self, uniq: &str) {
        self.decisions.lock().remove(uniq);
    }

    pub fn is_done(&self, half_offset: i64) -> bool {
        self.done_offsets.lock().contains(&half_offset)
    }

    pub fn mark_done(&self, half_offset: i64) {
        self.done_offsets.lock().insert(half_offset);
    }

    /// Forgets done offsets below the check progress.
    pub fn forget_done_below(&self, offset: i64) {
        self.done_offsets.lock().retain(|o| *o >= offset);
    }

    /// Reads new op records into the state (at start, before the broker serves,
    /// and before every check round).
    pub fn catch_up(&self, store: &MessageStore) {
        let mut read = self.op_read.lock();
        loop {
            let r = store.get_messages(&GetRequest::new(TRANS_OP_HALF_TOPIC, 0, *read, 256));
            if r.status != GetStatus::Found {
                if matches!(r.status, GetStatus::OffsetTooSmall | GetStatus::NoMatchedMessage)
                    && r.next_begin_offset > *read
                {
                    *read = r.next_begin_offset;
                    continue;
                }
                return;
            }
            for raw in &r.messages {
                if let Ok(m) = MessageExt::decode(raw, false) {
                    if let Some(off) = std::str::from_utf8(&m.body).ok().and_then(|s| s.trim().parse::<i64>().ok()) {
                        self.done_offsets.lock().insert(off);
                    }
                    if let (Some(u), Some(d)) =
                        (m.properties.get(PROP_TX_UNIQ), m.properties.get(PROP_TX_DECISION).and_then(Decision::parse))
                    {
                        self.decisions.lock().insert(u.to_owned(), d);
                    }
                }
            }
            *read = r.next_begin_offset;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_claim_is_made_once_and_can_be_released() {
        let s = TransactionState::default();
        assert_eq!(s.claim("u", Decision::Commit), Claim::Claimed);
        assert_eq!(s.claim("u", Decision::Commit), Claim::AlreadyMade);
        assert_eq!(s.claim("u", Decision::Rollback), Claim::Contrary(Decision::Commit));
        s.release("u");
        assert_eq!(s.decision("u"), None);
        assert_eq!(s.claim("u", Decision::Rollback), Claim::Claimed);
    }
}
