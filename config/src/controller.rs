//! [`ControllerConfig`]: a controller's settings (RocketMQ 5's `ControllerConfig`),
//! for the `controller` binary and for a name server with
//! `enable_controller_in_namesrv`.
//!
//! Field names are the snake_case forms of RocketMQ's, with its defaults, except
//! where noted: FerroMQ's controllers agree through Raft (`openraft`) rather than
//! DLedger, but keep DLedger's key names for the group, its peers and the node's id,
//! and serve the broker-facing API on the node's peer port as RocketMQ does.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::check;
use crate::error::{Error, Invalid, Result};

/// Controller settings, the `[controller]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ControllerConfig {
    /// The group's name (`controllerDLegerGroup`), reported by
    /// GET_METADATA_INFO.
    pub controller_dleger_group: String,
    /// Every controller of the group, this one included: `n0-host:port;n1-host:port`
    /// (`controllerDLegerPeers`). Each node listens on its own entry's port, for
    /// the other controllers and for brokers alike.
    pub controller_dleger_peers: String,
    /// This node's id among the peers, e.g. `n0` (`controllerDLegerSelfId`).
    pub controller_dleger_self_id: String,
    /// Where the Raft log, vote and snapshots live (`controllerStorePath`; RocketMQ's
    /// default is `~/DLedgerController`).
    pub controller_store_path: PathBuf,
    /// How often brokers whose heartbeats stopped are looked for, and masters that
    /// need an election (`scanNotActiveBrokerInterval`).
    #[serde(with = "humantime_serde")]
    pub scan_not_active_broker_interval: Duration,
    /// Elect a broker outside the SyncStateSet when no member is alive
    /// (`enableElectUncleanMaster`): the cluster heals at the price of the messages
    /// only the old master held.
    pub enable_elect_unclean_master: bool,
    /// Tell the brokers of a set when its master changes (`notifyBrokerRoleChanged`);
    /// they also learn it by polling.
    pub notify_broker_role_changed: bool,
    /// Attempts of an election the controller starts (`electMasterMaxRetryCount`).
    pub elect_master_max_retry_count: u32,
    /// FerroMQ addition: how often the Raft leader heartbeats its followers.
    #[serde(with = "humantime_serde")]
    pub raft_heartbeat_interval: Duration,
    /// FerroMQ addition: a follower that hears no leader for a random time between
    /// this and twice this starts an election.
    #[serde(with = "humantime_serde")]
    pub raft_election_timeout: Duration,
    /// TLS on the controller's port (its peer entry's, also inside a name server),
    /// `[controller.tls]` in TOML (`tls.server.*` in `controller.properties`).
    pub tls: crate::tls::ServerTlsConfig,
    /// TLS on the connections the controller opens, to its peers and to brokers,
    /// `[controller.outgoing_tls]` in TOML (`useTLS`, `tls.client.*`).
    pub outgoing_tls: crate::tls::ClientTlsConfig,
}

impl Default for ControllerConfig {
    fn default() -> Self {
        Self {
            controller_dleger_group: "FerroMQController".to_owned(),
            controller_dleger_peers: "n0-127.0.0.1:9878".to_owned(),
            controller_dleger_self_id: "n0".to_owned(),
            controller_store_path: crate::user_home().join("DLedgerController"),
            scan_not_active_broker_interval: Duration::from_secs(5),
            enable_elect_unclean_master: false,
            notify_broker_role_changed: true,
            elect_master_max_retry_count: 3,
            raft_heartbeat_interval: Duration::from_millis(200),
            raft_election_timeout: Duration::from_millis(1000),
            tls: crate::tls::ServerTlsConfig::default(),
            outgoing_tls: crate::tls::ClientTlsConfig::default(),
        }
    }
}

impl ControllerConfig {
    /// The peers by numeric id (`n3` → 3) with their addresses.
    ///
    /// # Errors
    /// An entry that is not `n<number>-host:port`, or two entries with one id.
    pub fn peers(&self) -> Result<BTreeMap<u64, String>> {
        let mut out = BTreeMap::new();
        for entry in self.controller_dleger_peers.split(';').map(str::trim).filter(|e| !e.is_empty()) {
            let bad = || {
                Error::invalid(
                    "controller_dleger_peers",
                    Invalid::Malformed { value: entry.to_owned(), expected: "`n<id>-host:port`" },
                )
            };
            let (id, addr) = entry.split_once('-').ok_or_else(bad)?;
            let id = parse_id(id).ok_or_else(bad)?;
            check::host_port("controller_dleger_peers", addr)?;
            if out.insert(id, addr.to_owned()).is_some() {
                return Err(Error::invalid(
                    "controller_dleger_peers",
                    Invalid::Malformed { value: entry.to_owned(), expected: "a peer id listed once" },
                ));
            }
        }
        Ok(out)
    }

    /// This node's numeric id.
    ///
    /// # Errors
    /// Not `n<number>`.
    pub fn self_id(&self) -> Result<u64> {
        parse_id(&self.controller_dleger_self_id).ok_or_else(|| {
            Error::invalid(
                "controller_dleger_self_id",
                Invalid::Malformed { value: self.controller_dleger_self_id.clone(), expected: "`n<id>`" },
            )
        })
    }

    /// Checks the peers, the node's place among them and the timings.
    ///
    /// # Errors
    /// [`Error::Invalid`](crate::Error::Invalid) naming the first offending key.
    pub fn validate(&self) -> Result<()> {
        let peers = self.peers()?;
        if peers.is_empty() {
            return Err(Error::invalid("controller_dleger_peers", Invalid::Empty));
        }
        let id = self.self_id()?;
        if !peers.contains_key(&id) {
            return Err(Error::invalid(
                "controller_dleger_self_id",
                Invalid::Conflict { other: "controller_dleger_peers", why: "the node must be one of the peers" },
            ));
        }
        check::not_blank("controller_store_path", &self.controller_store_path.to_string_lossy())?;
        check::non_zero("scan_not_active_broker_interval", self.scan_not_active_broker_interval)?;
        check::non_zero("raft_heartbeat_interval", self.raft_heartbeat_interval)?;
        if self.raft_election_timeout <= self.raft_heartbeat_interval {
            return Err(Error::invalid(
                "raft_election_timeout",
                Invalid::Conflict { other: "raft_heartbeat_interval", why: "the election timeout must be longer" },
            ));
        }
        self.tls.validate().map_err(|e| e.within("tls"))?;
        self.outgoing_tls.validate().map_err(|e| e.within("outgoing_tls"))
    }
}

/// `n3` or `3` → 3 (DLedger names its nodes `n0`, `n1`, ...).
fn parse_id(s: &str) -> Option<u64> {
    let s = s.trim();
    s.strip_prefix('n').unwrap_or(s).parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_and_self_parse_as_dleger_writes_them() {
        let c = ControllerConfig {
            controller_dleger_peers: "n0-127.0.0.1:9878;n1-127.0.0.1:9868;n2-127.0.0.1:9858".into(),
            controller_dleger_self_id: "n1".into(),
            ..ControllerConfig::default()
        };
        c.validate().unwrap();
        assert_eq!(c.self_id().unwrap(), 1);
        assert_eq!(c.peers().unwrap()[&2], "127.0.0.1:9858");
        let outside = ControllerConfig { controller_dleger_self_id: "n7".into(), ..c.clone() };
        assert!(outside.validate().unwrap_err().to_string().contains("controller_dleger_self_id"));
        let twice = ControllerConfig { controller_dleger_peers: "n0-a:1;n0-b:2".into(), ..c.clone() };
        assert!(twice.validate().unwrap_err().to_string().contains("listed once"));
        let bad = ControllerConfig { controller_dleger_peers: "zero-a:1".into(), ..c };
        assert!(bad.validate().is_err());
    }
}
