//! The broker's replication role: what a master or a slave does and refuses
//! (RocketMQ's `brokerRole`). The rest of the broker asks this module — the send
//! path whether it may store, the pull path what to suggest, `Broker::start` which
//! services to run — and never reads `broker_role` itself.
//!
//! * **Masters** (`ASYNC_MASTER`, `SYNC_MASTER`) take writes and serve their slaves
//!   on `ha_listen_port` ([`replication::HaMaster`]); a SYNC_MASTER's puts wait for a
//!   slave (the store's replica acknowledgement).
//! * **Slaves** follow their master's commit log ([`replication::HaSlave`]) and copy
//!   its metadata every 10 s (`slave_sync`); they refuse sends and END_TRANSACTION
//!   with RocketMQ's codes, serve pulls, queries and lookups, and run none of the
//!   services that write to the log (delay levels, timers, transaction checks).
//!   A slave learns its master from `ha_master_address` or from the name servers'
//!   answer to its registration (the master's `masterAddr` and `haServerAddr`).

use std::net::SocketAddr;
use std::sync::OnceLock;

use parking_lot::Mutex;
use tokio::sync::watch;

use common::ResponseCode;
use config::BrokerRole;
use remoting::RemotingCommand;
use replication::status::HaRuntimeInfo;
use replication::{HaMaster, HaSlave};

/// The running replication half of a broker.
pub enum Ha {
    Master(HaMaster),
    Slave(HaSlave),
}

/// What a slave knows about its master.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MasterView {
    /// The master's remoting address (metadata sync), when the name servers name it.
    pub broker_addr: Option<String>,
    /// The master's HA address.
    pub ha_addr: Option<String>,
}

/// The role and its replication state.
pub struct Replication {
    role: BrokerRole,
    /// The HA address advertised to the name servers (slaves connect to it).
    ha_addr: SocketAddr,
    /// A fixed master HA address (`ha_master_address`), which wins over the name
    /// servers' answers.
    configured_master: Option<String>,
    /// A slave's master HA address, as [`HaSlave`] follows it.
    master_ha: watch::Sender<Option<String>>,
    master: Mutex<MasterView>,
    ha: OnceLock<Ha>,
    /// `slave_read_enable`.
    slave_reads: bool,
    /// How far (bytes of commit log) a pull may lag before it counts as reading from
    /// disk: `access_message_in_memory_max_ratio` of the machine's RAM.
    page_cache_budget: i64,
}

/// Where a pull's consumer should go next (`suggestWhichBrokerId`), and whether a
/// slave answers "nothing here, ask the master now" (PULL_RETRY_IMMEDIATELY).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Suggestion {
    pub broker_id: i64,
    pub retry_on_master: bool,
}

impl Replication {
    pub fn new(role: BrokerRole, ha_addr: SocketAddr, configured_master: Option<String>) -> Self {
        let master_ha = watch::Sender::new(configured_master.clone());
        let master = MasterView { broker_addr: None, ha_addr: configured_master.clone() };
        Self {
            role,
            ha_addr,
            configured_master,
            master_ha,
            master: Mutex::new(master),
            ha: OnceLock::new(),
            slave_reads: false,
            page_cache_budget: (total_memory() as f64 * 0.4) as i64,
        }
    }

    /// Sets `slave_read_enable` and `access_message_in_memory_max_ratio` (percent).
    #[must_use]
    pub fn with_slave_reads(mut self, enabled: bool, in_memory_ratio_percent: u8) -> Self {
        self.slave_reads = enabled;
        self.page_cache_budget = (total_memory() as f64 * f64::from(in_memory_ratio_percent) / 100.0) as i64;
        self
    }

    /// Whether the record at commit-log offset `phy`, with the log ending at `end`,
    /// is further behind than the page cache is assumed to hold (RocketMQ's
    /// `accessMessageInMemoryMaxRatio` rule): reading it goes to disk.
    pub fn behind_page_cache(&self, phy: i64, end: i64) -> bool {
        end - phy > self.page_cache_budget
    }

    /// RocketMQ's `suggestWhichBrokerId` for a pull of `group` (its `brokerId` and
    /// `whichBrokerWhenConsumeSlowly`) whose last message lies `too_slow` behind the
    /// page cache: with `slave_read_enable`, a consumer that is too slow is sent to a
    /// slave and one that is not to the group's broker; a slave sends a consumer that
    /// caught up back to its master while the master is registered, answering
    /// PULL_RETRY_IMMEDIATELY when it found nothing.
    pub fn suggest(&self, group_broker_id: i64, when_slow: i64, too_slow: bool) -> Suggestion {
        let mut s = Suggestion { broker_id: 0, retry_on_master: false };
        if self.slave_reads {
            s.broker_id = if too_slow { when_slow } else { group_broker_id };
        }
        if self.is_slave() && !too_slow && self.master_alive() {
            s = Suggestion { broker_id: 0, retry_on_master: true };
        }
        s
    }

    pub fn role(&self) -> BrokerRole {
        self.role
    }

    pub fn is_slave(&self) -> bool {
        !self.role.is_master()
    }

    /// Whether puts wait until a slave holds them.
    pub fn is_sync_master(&self) -> bool {
        self.role == BrokerRole::SyncMaster
    }

    /// The advertised HA address.
    pub fn ha_addr(&self) -> SocketAddr {
        self.ha_addr
    }

    /// Installs the running HA half (once, at start).
    pub fn set_ha(&self, ha: Ha) {
        if self.ha.set(ha).is_err() {
            tracing::error!("the HA service was started twice; keeping the first");
        }
    }

    /// Takes the HA half out for shutdown.
    pub fn ha(&self) -> Option<&Ha> {
        self.ha.get()
    }

    /// A slave's master HA address, for [`HaSlave::start`].
    pub fn master_ha_addr(&self) -> watch::Receiver<Option<String>> {
        self.master_ha.subscribe()
    }

    /// What this slave knows of its master.
    pub fn master(&self) -> MasterView {
        self.master.lock().clone()
    }

    /// A registration answer: a slave learns (or loses) its master. The name servers
    /// answer `masterAddr`/`haServerAddr` only while the master is registered, so
    /// their absence means the master is gone.
    pub fn on_registered(&self, master_addr: Option<String>, ha_server_addr: Option<String>) {
        if !self.is_slave() {
            return;
        }
        let ha_addr = self.configured_master.clone().or(ha_server_addr);
        let view = MasterView { broker_addr: master_addr.filter(|a| !a.is_empty()), ha_addr };
        let mut current = self.master.lock();
        if *current != view {
            tracing::info!(master = ?view.broker_addr, master_ha = ?view.ha_addr, "the master changed");
            *current = view.clone();
        }
        drop(current);
        self.master_ha.send_if_modified(|m| {
            if *m != view.ha_addr && view.ha_addr.is_some() {
                m.clone_from(&view.ha_addr);
                true
            } else {
                false
            }
        });
    }

    /// Whether a slave's master is registered with the name servers (a slave then
    /// sends consumers back to it).
    pub fn master_alive(&self) -> bool {
        self.master.lock().broker_addr.is_some()
    }

    /// The answer to a request that would store a message, when this broker may not:
    /// a slave answers SERVICE_NOT_AVAILABLE, as RocketMQ's slaves do (its store
    /// refuses the put), with a remark that says why.
    pub fn refuse_write(&self, broker_name: &str) -> Option<RemotingCommand> {
        self.is_slave().then(|| {
            RemotingCommand::error(
                ResponseCode::SERVICE_NOT_AVAILABLE,
                format!(
                    "service not available now: this broker is a slave of {broker_name} (broker_role = SLAVE), \
                     messages are put to its master"
                ),
            )
        })
    }

    /// END_TRANSACTION on a slave: SLAVE_NOT_AVAILABLE, as RocketMQ answers.
    pub fn refuse_end_transaction(&self) -> Option<RemotingCommand> {
        self.is_slave().then(|| {
            RemotingCommand::error(
                ResponseCode::SLAVE_NOT_AVAILABLE,
                "Message store is slave mode, so end transaction is forbidden. ",
            )
        })
    }

    /// A slave's master's end, when the master is behind this slave's log (the slave
    /// then serves nothing past it).
    pub fn master_behind_at(&self) -> Option<i64> {
        match self.ha.get() {
            Some(Ha::Slave(s)) => s.master_behind_at(),
            _ => None,
        }
    }

    /// RocketMQ's `HARuntimeInfo` for GET_BROKER_HA_STATUS.
    pub fn runtime_info(&self) -> HaRuntimeInfo {
        match self.ha.get() {
            Some(Ha::Master(m)) => m.runtime_info(),
            Some(Ha::Slave(s)) => s.runtime_info(),
            None => HaRuntimeInfo { master: self.role.is_master(), ..HaRuntimeInfo::default() },
        }
    }
}

/// The machine's RAM in bytes (RocketMQ's `TOTAL_PHYSICAL_MEMORY_SIZE`).
pub fn total_memory() -> u64 {
    // SAFETY: sysconf has no memory-safety preconditions.
    let (pages, size) = unsafe { (libc::sysconf(libc::_SC_PHYS_PAGES), libc::sysconf(libc::_SC_PAGESIZE)) };
    if pages > 0 && size > 0 {
        pages as u64 * size as u64
    } else {
        8 << 30
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slave() -> Replication {
        Replication::new(BrokerRole::Slave, "127.0.0.1:10912".parse().unwrap(), None)
    }

    #[test]
    fn only_slaves_refuse_writes() {
        let s = slave();
        let r = s.refuse_write("broker-a").expect("a slave refuses");
        assert_eq!(r.response_code(), ResponseCode::SERVICE_NOT_AVAILABLE);
        assert!(r.remark_str().starts_with("service not available now"));
        let t = s.refuse_end_transaction().expect("a slave refuses");
        assert_eq!(t.response_code(), ResponseCode::SLAVE_NOT_AVAILABLE);
        for role in [BrokerRole::AsyncMaster, BrokerRole::SyncMaster] {
            let m = Replication::new(role, "127.0.0.1:10912".parse().unwrap(), None);
            assert!(m.refuse_write("broker-a").is_none() && m.refuse_end_transaction().is_none());
        }
    }

    #[test]
    fn a_slave_follows_the_master_the_name_servers_name() {
        let s = slave();
        let rx = s.master_ha_addr();
        assert_eq!(*rx.borrow(), None);
        s.on_registered(Some("10.0.0.1:10911".into()), Some("10.0.0.1:10912".into()));
        assert_eq!(*rx.borrow(), Some("10.0.0.1:10912".into()));
        assert!(s.master_alive());
        // The master unregistered: the slave keeps its HA address (it reconnects when
        // the master returns) but knows the master is gone.
        s.on_registered(None, None);
        assert!(!s.master_alive());
        assert_eq!(*rx.borrow(), Some("10.0.0.1:10912".into()));
        // A configured address wins over the name servers'.
        let fixed = Replication::new(BrokerRole::Slave, "127.0.0.1:1".parse().unwrap(), Some("10.9.9.9:10912".into()));
        fixed.on_registered(Some("10.0.0.1:10911".into()), Some("10.0.0.1:10912".into()));
        assert_eq!(*fixed.master_ha_addr().borrow(), Some("10.9.9.9:10912".into()));
    }

    #[test]
    fn suggestions_follow_rocketmqs_rules() {
        let addr = "127.0.0.1:10912".parse().unwrap();
        let plain = Replication::new(BrokerRole::AsyncMaster, addr, None);
        assert_eq!(plain.suggest(0, 1, true), Suggestion { broker_id: 0, retry_on_master: false });
        let reads = Replication::new(BrokerRole::AsyncMaster, addr, None).with_slave_reads(true, 40);
        assert_eq!(reads.suggest(0, 1, true).broker_id, 1);
        assert_eq!(reads.suggest(0, 1, false).broker_id, 0);
        let slave = Replication::new(BrokerRole::Slave, addr, None).with_slave_reads(true, 40);
        // The master is gone: the slave keeps its consumers.
        assert_eq!(slave.suggest(0, 1, false), Suggestion { broker_id: 0, retry_on_master: false });
        slave.on_registered(Some("10.0.0.1:10911".into()), Some("10.0.0.1:10912".into()));
        // The master is back and the consumer caught up: back to the master.
        assert_eq!(slave.suggest(0, 1, false), Suggestion { broker_id: 0, retry_on_master: true });
        // Still too slow: it stays on the slave.
        assert_eq!(slave.suggest(0, 1, true), Suggestion { broker_id: 1, retry_on_master: false });
        let budget = (total_memory() as f64 * 0.4) as i64;
        assert!(reads.behind_page_cache(0, budget + 1) && !reads.behind_page_cache(1, budget + 1));
    }
}
