//! What a broker in controller mode shares with its supervisor
//! ([`crate::controlled`]): its controller-assigned id, the epoch and SyncStateSet
//! it runs under, its epoch file, and the notice of a newer master. The context holds
//! it; the supervisor and the processors read and change it.

use std::collections::BTreeSet;
use std::sync::atomic::AtomicI32;

use parking_lot::{Mutex, RwLock};
use tokio::sync::Notify;

use common::ResponseCode;
use remoting::RemotingCommand;
use replication::epoch::EpochFile;
use replication::AckPolicy;

/// What the running broker shares with its supervisor in controller mode.
pub struct Membership {
    pub broker_id: u64,
    /// The master epoch this incarnation runs in.
    pub master_epoch: AtomicI32,
    /// The SyncStateSet as the controllers last confirmed it (a master's view).
    pub sync_state_set: RwLock<BTreeSet<u64>>,
    pub sync_state_set_epoch: AtomicI32,
    pub min_in_sync_replicas: usize,
    /// `inSyncReplicas`: replicas, the master included, a put waits for.
    pub in_sync_replicas: usize,
    /// `allAckInSyncStateSet`: a put waits for every SyncStateSet member instead.
    pub all_ack_in_sync_state_set: bool,
    pub epochs: Mutex<EpochFile>,
    /// Woken by NOTIFY_BROKER_ROLE_CHANGED with a newer epoch.
    pub role_changed: Notify,
    pub notified_epoch: AtomicI32,
}

impl Membership {
    /// How far a master's puts are held, as RocketMQ 5's controller mode holds them:
    /// every other SyncStateSet member with `allAckInSyncStateSet`, otherwise
    /// `inSyncReplicas - 1` slaves (none by default).
    pub fn ack_policy(&self) -> AckPolicy {
        if self.all_ack_in_sync_state_set {
            let mut slaves = self.sync_state_set.read().clone();
            slaves.remove(&self.broker_id);
            AckPolicy::AllOf(slaves)
        } else {
            AckPolicy::AtLeast(self.in_sync_replicas.saturating_sub(1))
        }
    }

    /// A master with fewer SyncStateSet members than `min_in_sync_replicas` takes no
    /// writes (RocketMQ answers IN_SYNC_REPLICAS_NOT_ENOUGH as a system error).
    pub fn refuse_write(&self) -> Option<RemotingCommand> {
        let n = self.sync_state_set.read().len();
        (n < self.min_in_sync_replicas).then(|| {
            RemotingCommand::error(
                ResponseCode::SYSTEM_ERROR,
                format!("in-sync replicas not enough: {n} of at least {}", self.min_in_sync_replicas),
            )
        })
    }
}
