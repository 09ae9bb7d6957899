//! Which brokers are alive, from their heartbeats (RocketMQ's
//! `DefaultBrokerHeartbeatManager`). Local to each controller and never replicated:
//! brokers heartbeat every controller, so whichever becomes leader already knows.
//!
//! Each entry keeps what elections rank by: the broker's epoch and commit-log end
//! (which never move backwards while the entry lives) and its election priority.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// A broker's identity within the controller.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BrokerKey {
    pub cluster_name: String,
    pub broker_name: String,
    pub broker_id: u64,
}

/// What the last heartbeat said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveInfo {
    pub address: String,
    /// The connection the heartbeats come over (its id), which closing ends the broker.
    pub connection: u64,
    pub last_seen: Instant,
    pub timeout: Duration,
    /// The last epoch in the broker's epoch file (-1: none).
    pub epoch: i32,
    pub max_offset: i64,
    pub confirm_offset: i64,
    /// Lower wins an election between equals (RocketMQ's `brokerElectionPriority`).
    pub election_priority: i32,
}

/// A heartbeat's content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heartbeat {
    pub key: BrokerKey,
    pub address: String,
    pub connection: u64,
    pub timeout: Duration,
    pub epoch: i32,
    pub max_offset: i64,
    pub confirm_offset: i64,
    pub election_priority: i32,
}

/// The liveness table.
#[derive(Debug, Default)]
pub struct Liveness {
    table: Mutex<HashMap<BrokerKey, LiveInfo>>,
}

impl Liveness {
    /// Records a heartbeat received `now`.
    pub fn on_heartbeat(&self, hb: Heartbeat, now: Instant) {
        let mut t = self.table.lock();
        match t.get_mut(&hb.key) {
            Some(e) => {
                e.last_seen = now;
                e.timeout = hb.timeout;
                e.election_priority = hb.election_priority;
                e.address = hb.address;
                e.connection = hb.connection;
                if hb.epoch > e.epoch || (hb.epoch == e.epoch && hb.max_offset > e.max_offset) {
                    e.epoch = hb.epoch;
                    e.max_offset = hb.max_offset;
                    e.confirm_offset = hb.confirm_offset;
                }
            }
            None => {
                t.insert(
                    hb.key,
                    LiveInfo {
                        address: hb.address,
                        connection: hb.connection,
                        last_seen: now,
                        timeout: hb.timeout,
                        epoch: hb.epoch,
                        max_offset: hb.max_offset,
                        confirm_offset: hb.confirm_offset,
                        election_priority: hb.election_priority,
                    },
                );
            }
        }
    }

    /// The broker's last heartbeat, if it is still alive at `now`.
    pub fn alive(&self, key: &BrokerKey, now: Instant) -> Option<LiveInfo> {
        self.table.lock().get(key).filter(|e| now.duration_since(e.last_seen) <= e.timeout).cloned()
    }

    /// Removes and returns the brokers whose heartbeats stopped by `now`.
    pub fn expire(&self, now: Instant) -> Vec<BrokerKey> {
        let mut t = self.table.lock();
        let gone: Vec<BrokerKey> =
            t.iter().filter(|(_, e)| now.duration_since(e.last_seen) > e.timeout).map(|(k, _)| k.clone()).collect();
        for k in &gone {
            t.remove(k);
        }
        gone
    }

    /// Removes and returns the brokers whose heartbeats came over `connection`,
    /// which closed.
    pub fn remove_connection(&self, connection: u64) -> Vec<BrokerKey> {
        let mut t = self.table.lock();
        let gone: Vec<BrokerKey> =
            t.iter().filter(|(_, e)| e.connection == connection).map(|(k, _)| k.clone()).collect();
        for k in &gone {
            t.remove(k);
        }
        gone
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hb(id: u64, epoch: i32, offset: i64) -> Heartbeat {
        Heartbeat {
            key: BrokerKey { cluster_name: "C".into(), broker_name: "a".into(), broker_id: id },
            address: format!("h{id}:1"),
            connection: id,
            timeout: Duration::from_secs(10),
            epoch,
            max_offset: offset,
            confirm_offset: offset,
            election_priority: 0,
        }
    }

    #[test]
    fn heartbeats_keep_brokers_alive_and_progress_never_goes_back() {
        let t0 = Instant::now();
        let l = Liveness::default();
        l.on_heartbeat(hb(1, 2, 100), t0);
        l.on_heartbeat(hb(1, 2, 50), t0 + Duration::from_secs(1));
        let key = hb(1, 0, 0).key;
        let info = l.alive(&key, t0 + Duration::from_secs(2)).unwrap();
        assert_eq!((info.epoch, info.max_offset), (2, 100));
        l.on_heartbeat(hb(1, 3, 10), t0 + Duration::from_secs(2));
        assert_eq!(l.alive(&key, t0 + Duration::from_secs(3)).unwrap().epoch, 3);
        assert!(l.alive(&key, t0 + Duration::from_secs(13)).is_none());
        assert_eq!(l.expire(t0 + Duration::from_secs(13)), vec![key.clone()]);
        assert!(l.alive(&key, t0 + Duration::from_secs(3)).is_none(), "expired entries are gone");
    }
}
