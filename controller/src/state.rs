//! The controller group's replicated state (RocketMQ's `ReplicasInfoManager`): per
//! broker set (one `brokerName`), its brokers and their ids, the master and its
//! epoch, and the SyncStateSet (the replicas that have caught up) and its epoch.
//!
//! The state changes only by applying [`Event`]s in log order, on every controller
//! alike. The leader decides what to propose by reading this state (the `decide_*`
//! functions), but every event that depends on what was read carries the epochs it
//! was decided at, and [`ReplicasInfo::apply`] refuses it if they moved: a decision
//! taken on a stale view (a leader that lost leadership, two requests racing) can
//! never be applied.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// RocketMQ's first controller-assigned broker id (`MixAll.FIRST_BROKER_CONTROLLER_ID`).
pub const FIRST_BROKER_ID: u64 = 1;

/// One broker of a set, as it registered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerEntry {
    pub address: String,
    /// `brokerAddr;timestamp` of the broker's id application: a broker that
    /// restarts before it saved its id applies again with the same code.
    pub register_check_code: String,
}

/// One broker set (a `brokerName`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerSet {
    pub cluster_name: String,
    pub broker_name: String,
    /// The id `GET_NEXT_BROKER_ID` offers next.
    pub next_broker_id: u64,
    pub brokers: BTreeMap<u64, BrokerEntry>,
    /// Raised by every election, won or not; 0 until the first.
    pub master_epoch: i32,
    pub master: Option<u64>,
    /// Raised by every change of the SyncStateSet.
    pub sync_state_set_epoch: i32,
    pub sync_state_set: BTreeSet<u64>,
}

impl BrokerSet {
    fn new(cluster_name: &str, broker_name: &str) -> Self {
        Self {
            cluster_name: cluster_name.to_owned(),
            broker_name: broker_name.to_owned(),
            next_broker_id: FIRST_BROKER_ID,
            brokers: BTreeMap::new(),
            master_epoch: 0,
            master: None,
            sync_state_set_epoch: 0,
            sync_state_set: BTreeSet::new(),
        }
    }

    /// The master's address, when there is a master.
    pub fn master_address(&self) -> Option<&str> {
        self.master.and_then(|id| self.brokers.get(&id)).map(|b| b.address.as_str())
    }
}

/// A change to the state, as the log carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Event {
    /// A broker takes an id (the first of a set creates the set).
    ApplyBrokerId { cluster_name: String, broker_name: String, broker_id: u64, address: String, check_code: String },
    /// A registered broker came back at another address.
    UpdateBrokerAddress { broker_name: String, broker_id: u64, address: String },
    /// An election: `new_master` becomes master with a SyncStateSet of itself, or
    /// (`None`) the set has no master until a broker can be elected. Both raise the
    /// master epoch; applied only at `master_epoch`.
    ElectMaster { broker_name: String, new_master: Option<u64>, master_epoch: i32 },
    /// The master's new SyncStateSet; applied only at both epochs.
    AlterSyncStateSet { broker_name: String, new_set: BTreeSet<u64>, master_epoch: i32, sync_state_set_epoch: i32 },
    /// Forget some brokers of a set (`None`: the whole set).
    CleanBrokerData { broker_name: String, broker_ids: Option<BTreeSet<u64>> },
}

/// What applying an event did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum Applied {
    #[default]
    Done,
    /// Refused: the state moved since the event was decided (the reason says how).
    Fenced(String),
}

/// Every broker set, by broker name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicasInfo {
    pub sets: BTreeMap<String, BrokerSet>,
}

impl ReplicasInfo {
    pub fn set(&self, broker_name: &str) -> Option<&BrokerSet> {
        self.sets.get(broker_name)
    }

    /// Applies one committed event. Deterministic: every controller reaches the same
    /// state from the same log.
    pub fn apply(&mut self, event: &Event) -> Applied {
        match event {
            Event::ApplyBrokerId { cluster_name, broker_name, broker_id, address, check_code } => {
                let set =
                    self.sets.entry(broker_name.clone()).or_insert_with(|| BrokerSet::new(cluster_name, broker_name));
                if let Some(existing) = set.brokers.get(broker_id) {
                    if existing.register_check_code != *check_code {
                        return Applied::Fenced(format!("broker id {broker_id} of {broker_name} is taken"));
                    }
                    return Applied::Done;
                }
                set.brokers.insert(
                    *broker_id,
                    BrokerEntry { address: address.clone(), register_check_code: check_code.clone() },
                );
                set.next_broker_id = set.next_broker_id.max(broker_id + 1);
                Applied::Done
            }
            Event::UpdateBrokerAddress { broker_name, broker_id, address } => {
                match self.sets.get_mut(broker_name).and_then(|s| s.brokers.get_mut(broker_id)) {
                    Some(b) => {
                        b.address.clone_from(address);
                        Applied::Done
                    }
                    None => Applied::Fenced(format!("broker {broker_name}:{broker_id} is not registered")),
                }
            }
            Event::ElectMaster { broker_name, new_master, master_epoch } => {
                let Some(set) = self.sets.get_mut(broker_name) else {
                    return Applied::Fenced(format!("broker set {broker_name} does not exist"));
                };
                if set.master_epoch != *master_epoch {
                    return Applied::Fenced(format!(
                        "master epoch of {broker_name} is {}, not {master_epoch}",
                        set.master_epoch
                    ));
                }
                if let Some(id) = new_master {
                    if !set.brokers.contains_key(id) {
                        return Applied::Fenced(format!("broker {broker_name}:{id} is not registered"));
                    }
                }
                set.master_epoch += 1;
                set.master = *new_master;
                if let Some(id) = new_master {
                    set.sync_state_set = BTreeSet::from([*id]);
                    set.sync_state_set_epoch += 1;
                }
                Applied::Done
            }
            Event::AlterSyncStateSet { broker_name, new_set, master_epoch, sync_state_set_epoch } => {
                let Some(set) = self.sets.get_mut(broker_name) else {
                    return Applied::Fenced(format!("broker set {broker_name} does not exist"));
                };
                if set.master_epoch != *master_epoch || set.sync_state_set_epoch != *sync_state_set_epoch {
                    return Applied::Fenced(format!(
                        "epochs of {broker_name} are {}/{}, not {master_epoch}/{sync_state_set_epoch}",
                        set.master_epoch, set.sync_state_set_epoch
                    ));
                }
                set.sync_state_set.clone_from(new_set);
                set.sync_state_set_epoch += 1;
                Applied::Done
            }
            Event::CleanBrokerData { broker_name, broker_ids } => {
                match broker_ids {
                    None => {
                        self.sets.remove(broker_name);
                    }
                    Some(ids) => {
                        if let Some(set) = self.sets.get_mut(broker_name) {
                            for id in ids {
                                set.brokers.remove(id);
                                set.sync_state_set.remove(id);
                                if set.master == Some(*id) {
                                    set.master = None;
                                }
                            }
                            if set.brokers.is_empty() {
                                self.sets.remove(broker_name);
                            }
                        }
                    }
                }
                Applied::Done
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apply_id(name: &str, id: u64, addr: &str) -> Event {
        Event::ApplyBrokerId {
            cluster_name: "C".into(),
            broker_name: name.into(),
            broker_id: id,
            address: addr.into(),
            check_code: format!("{addr};1"),
        }
    }

    #[test]
    fn ids_are_handed_out_once_and_an_application_repeats_safely() {
        let mut s = ReplicasInfo::default();
        assert_eq!(s.apply(&apply_id("a", 1, "h1:1")), Applied::Done);
        assert_eq!(s.apply(&apply_id("a", 1, "h1:1")), Applied::Done, "the same broker applying again");
        assert!(matches!(s.apply(&apply_id("a", 1, "h9:9")), Applied::Fenced(_)), "another broker for a taken id");
        assert_eq!(s.apply(&apply_id("a", 2, "h2:2")), Applied::Done);
        let set = s.set("a").unwrap();
        assert_eq!(set.next_broker_id, 3);
        assert_eq!(set.brokers[&1].address, "h1:1");
        assert_eq!((set.master, set.master_epoch), (None, 0));
    }

    #[test]
    fn elections_raise_the_epochs_and_stale_decisions_are_fenced() {
        let mut s = ReplicasInfo::default();
        s.apply(&apply_id("a", 1, "h1:1"));
        s.apply(&apply_id("a", 2, "h2:2"));
        let elect = |id, epoch| Event::ElectMaster { broker_name: "a".into(), new_master: id, master_epoch: epoch };
        assert_eq!(s.apply(&elect(Some(1), 0)), Applied::Done);
        let set = s.set("a").unwrap();
        assert_eq!((set.master, set.master_epoch, set.sync_state_set_epoch), (Some(1), 1, 1));
        assert_eq!(set.sync_state_set, BTreeSet::from([1]));
        assert_eq!(set.master_address(), Some("h1:1"));
        // A second election decided at epoch 0 (a stale leader, a racing request).
        assert!(matches!(s.apply(&elect(Some(2), 0)), Applied::Fenced(_)));
        assert_eq!(s.set("a").unwrap().master, Some(1));

        let alter = |ids: &[u64], me, se| Event::AlterSyncStateSet {
            broker_name: "a".into(),
            new_set: ids.iter().copied().collect(),
            master_epoch: me,
            sync_state_set_epoch: se,
        };
        assert_eq!(s.apply(&alter(&[1, 2], 1, 1)), Applied::Done);
        assert!(matches!(s.apply(&alter(&[1], 1, 1)), Applied::Fenced(_)), "the SyncStateSet epoch moved");
        assert_eq!(s.set("a").unwrap().sync_state_set, BTreeSet::from([1, 2]));

        // No candidate: no master, the set kept, the epoch still raised.
        assert_eq!(s.apply(&elect(None, 1)), Applied::Done);
        let set = s.set("a").unwrap();
        assert_eq!((set.master, set.master_epoch, set.sync_state_set_epoch), (None, 2, 2));
        assert_eq!(set.sync_state_set, BTreeSet::from([1, 2]));
        assert!(matches!(s.apply(&alter(&[2], 2, 2)), Applied::Done));
    }

    #[test]
    fn cleaning_forgets_brokers_and_empty_sets() {
        let mut s = ReplicasInfo::default();
        s.apply(&apply_id("a", 1, "h1:1"));
        s.apply(&apply_id("a", 2, "h2:2"));
        s.apply(&Event::ElectMaster { broker_name: "a".into(), new_master: Some(1), master_epoch: 0 });
        s.apply(&Event::CleanBrokerData { broker_name: "a".into(), broker_ids: Some(BTreeSet::from([1])) });
        let set = s.set("a").unwrap();
        assert_eq!((set.master, set.brokers.len(), set.sync_state_set.len()), (None, 1, 0));
        s.apply(&Event::CleanBrokerData { broker_name: "a".into(), broker_ids: None });
        assert!(s.set("a").is_none());
    }
}
