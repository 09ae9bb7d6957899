//! Master/slave replication: RocketMQ 4.x's HA transport, byte for byte, so a FerroMQ
//! slave can follow a RocketMQ master and the other way round.
//!
//! It is its own TCP protocol on `haListenPort`, not remoting frames. A slave
//! connects to its master and, on connect, every `haSendHeartbeatInterval` and after
//! each append, reports how far its commit log goes:
//!
//! ```text
//! slave → master   ┌──────────────────────────┐
//!                  │ i64 BE: slave max offset │   (the master reads only the last
//!                  └──────────────────────────┘    complete 8-byte value)
//! master → slave   ┌──────────────────────┬───────────┬──────────────────────────┐
//!                  │ i64 BE: master offset │ i32 BE: n │ n bytes of raw commit log │
//!                  └──────────────────────┴───────────┴──────────────────────────┘
//! ```
//!
//! In controller mode a slave first names itself with one more 8-byte value,
//! `i64::MIN + brokerId` (a FerroMQ extension no offset can collide with), so its
//! master can tell which SyncStateSet members keep up
//! ([`HaMaster::caught_up_slaves`]). To such a slave the master also sends its
//! confirm offset (RocketMQ 5's `confirmOffset`: what every SyncStateSet member
//! holds) as a header with `n = -1` and no data, whenever it moves; the slave serves
//! consumers nothing past it ([`store::MessageStore::set_read_limit`]), as the master
//! does.
//!
//! The master streams its commit log from the slave's first reported offset — from
//! the start of its last segment when the slave reports 0 (an empty slave) — in
//! transfers of at most `haTransferBatchSize` bytes that never cross a segment, sent
//! straight from the memory map; idle, it sends `n = 0` heartbeats. The slave appends
//! only data that starts exactly at its own end (its store then rebuilds consume
//! queues and indexes locally, as for its own writes) and reconnects on any gap.
//!
//! [`master::HaMaster`] serves slaves and reports each one's acknowledged offset to
//! the store, which resolves SYNC_MASTER puts ([`store::MessageStore::replica_progress`]);
//! [`slave::HaSlave`] follows a master. [`epoch`] is the epoch file of RocketMQ 5's
//! controller mode (which epochs a broker's log went through, and where two logs
//! stop agreeing). [`status`] is RocketMQ 5's `HARuntimeInfo`,
//! what `mqadmin haStatus` shows. This crate knows nothing of brokers, roles or
//! remoting: the broker decides who is master and hands this crate a store.

pub mod epoch;
pub mod master;
pub mod protocol;
pub mod slave;
pub mod status;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

pub use master::{AckPolicy, HaMaster};
pub use slave::HaSlave;

/// One transfer of commit log a master sent a slave.
#[derive(Debug, Clone)]
pub struct Transfer {
    /// The slave's end of the connection.
    pub slave: SocketAddr,
    /// Commit-log offset of the first byte sent.
    pub offset: i64,
    pub bytes: usize,
    pub started: SystemTime,
    pub ended: SystemTime,
}

/// Told of every transfer with data (the broker's spans); called on the
/// connection's task, so it must be cheap.
pub type TransferObserver = Arc<dyn Fn(&Transfer) + Send + Sync>;

/// The replication settings (RocketMQ's `MessageStoreConfig` keys).
#[derive(Clone)]
pub struct HaSettings {
    /// `haSendHeartbeatInterval`: an idle connection's heartbeat period.
    pub heartbeat_interval: Duration,
    /// `haHousekeepingInterval`: a connection that reads nothing for this long is
    /// closed.
    pub housekeeping_interval: Duration,
    /// `haTransferBatchSize`: most commit-log bytes per transfer.
    pub transfer_batch_size: usize,
    /// `haMaxGapNotInSync`: a slave further behind than this is not in sync.
    pub max_gap_not_in_sync: i64,
    /// Told of each transfer with data (`None`: nobody asks).
    pub on_transfer: Option<TransferObserver>,
    /// Controller mode: the broker id a slave names itself with when it connects
    /// ([`protocol::identity`]), so its master can tell which of its SyncStateSet
    /// members caught up. `None`: RocketMQ 4.x's protocol, unchanged.
    pub identity: Option<u64>,
    /// Where a master starts an empty slave: at its newest segment (RocketMQ 4.x,
    /// and `syncFromLastFile`) or at its oldest byte (controller mode's default).
    pub sync_from_last_file: bool,
    /// A master's HA port with TLS (the broker's `tls.server.mode` and files);
    /// `None`: plain TCP.
    pub server_tls: Option<Arc<remoting::tls::ServerTls>>,
    /// A slave connects to its master's HA port with TLS (`useTLS`).
    pub client_tls: Option<remoting::tls::ClientTls>,
}

impl std::fmt::Debug for HaSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HaSettings")
            .field("heartbeat_interval", &self.heartbeat_interval)
            .field("housekeeping_interval", &self.housekeeping_interval)
            .field("transfer_batch_size", &self.transfer_batch_size)
            .field("max_gap_not_in_sync", &self.max_gap_not_in_sync)
            .field("on_transfer", &self.on_transfer.is_some())
            .field("identity", &self.identity)
            .field("sync_from_last_file", &self.sync_from_last_file)
            .field("server_tls", &self.server_tls)
            .field("client_tls", &self.client_tls.is_some())
            .finish()
    }
}

impl Default for HaSettings {
    fn default() -> Self {
        Self {
            heartbeat_interval: Duration::from_secs(5),
            housekeeping_interval: Duration::from_secs(20),
            transfer_batch_size: 32 * 1024,
            max_gap_not_in_sync: 256 * 1024 * 1024,
            on_transfer: None,
            identity: None,
            sync_from_last_file: true,
            server_tls: None,
            client_tls: None,
        }
    }
}
