//! Who becomes master (RocketMQ's `DefaultElectPolicy`).
//!
//! Candidates are the live members of the SyncStateSet — the brokers known to hold
//! every acknowledged message — and only with `enableElectUncleanMaster` any live
//! broker of the set. A live old master stays; a designated broker (the admin's
//! `electMaster`) wins if it is a live candidate; otherwise the candidate with the
//! highest epoch, then the longest commit log, then the lowest election priority,
//! then the lowest id.

use std::cmp::Reverse;

use crate::liveness::LiveInfo;
use crate::state::BrokerSet;

/// Elects a master of `set`: `live` says whether a broker is alive and what its last
/// heartbeat said. `None`: nobody can be elected.
pub fn elect(
    set: &BrokerSet,
    live: impl Fn(u64) -> Option<LiveInfo>,
    unclean: bool,
    designated: Option<u64>,
) -> Option<u64> {
    let in_sync: Vec<u64> = set.sync_state_set.iter().copied().collect();
    if let Some(id) = try_elect(&in_sync, &live, set.master, designated) {
        return Some(id);
    }
    if unclean {
        let all: Vec<u64> = set.brokers.keys().copied().collect();
        return try_elect(&all, &live, set.master, designated);
    }
    None
}

fn try_elect(
    candidates: &[u64],
    live: &impl Fn(u64) -> Option<LiveInfo>,
    old_master: Option<u64>,
    designated: Option<u64>,
) -> Option<u64> {
    let alive: Vec<(u64, LiveInfo)> = candidates.iter().filter_map(|&id| live(id).map(|i| (id, i))).collect();
    if alive.is_empty() {
        return None;
    }
    if let Some(old) = old_master {
        if alive.iter().any(|(id, _)| *id == old) && designated.is_none_or(|d| d == old) {
            return Some(old);
        }
    }
    if let Some(d) = designated {
        return alive.iter().any(|(id, _)| *id == d).then_some(d);
    }
    alive
        .into_iter()
        .min_by_key(|(id, i)| (Reverse(i.epoch), Reverse(i.max_offset), i.election_priority, *id))
        .map(|(id, _)| id)
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};
    use std::time::{Duration, Instant};

    use super::*;
    use crate::state::BrokerEntry;

    fn set(ids: &[u64], in_sync: &[u64], master: Option<u64>) -> BrokerSet {
        BrokerSet {
            cluster_name: "C".into(),
            broker_name: "a".into(),
            next_broker_id: 9,
            brokers: ids
                .iter()
                .map(|&i| (i, BrokerEntry { address: format!("h{i}"), register_check_code: String::new() }))
                .collect::<BTreeMap<_, _>>(),
            master_epoch: 3,
            master,
            sync_state_set_epoch: 3,
            sync_state_set: in_sync.iter().copied().collect::<BTreeSet<_>>(),
        }
    }

    fn info(epoch: i32, offset: i64, priority: i32) -> LiveInfo {
        LiveInfo {
            address: String::new(),
            connection: 0,
            last_seen: Instant::now(),
            timeout: Duration::from_secs(10),
            epoch,
            max_offset: offset,
            confirm_offset: offset,
            election_priority: priority,
        }
    }

    #[test]
    fn the_most_advanced_live_in_sync_broker_wins() {
        let s = set(&[1, 2, 3, 4], &[1, 2, 3], Some(1));
        // 1 (the master) is dead; 4 is ahead but not in sync.
        let live = |id| match id {
            2 => Some(info(3, 100, 5)),
            3 => Some(info(3, 200, 9)),
            4 => Some(info(3, 900, 0)),
            _ => None,
        };
        assert_eq!(elect(&s, live, false, None), Some(3));
        // Equal progress: the lower priority value, then the lower id.
        let tie = |id| (id == 2 || id == 3).then(|| info(3, 100, if id == 3 { 1 } else { 2 }));
        assert_eq!(elect(&s, tie, false, None), Some(3));
        let tie = |id| (id == 2 || id == 3).then(|| info(3, 100, 1));
        assert_eq!(elect(&s, tie, false, None), Some(2));
    }

    #[test]
    fn a_live_master_stays_and_designation_needs_a_live_candidate() {
        let s = set(&[1, 2, 3], &[1, 2], Some(1));
        let all = |_| Some(info(3, 100, 0));
        assert_eq!(elect(&s, all, false, None), Some(1));
        assert_eq!(elect(&s, all, false, Some(2)), Some(2));
        assert_eq!(elect(&s, all, false, Some(3)), None, "3 is not in sync");
        assert_eq!(elect(&s, all, true, Some(3)), Some(3), "unclean: any live broker");
    }

    #[test]
    fn out_of_sync_brokers_win_only_unclean() {
        let s = set(&[1, 2], &[1], Some(1));
        let only_2 = |id| (id == 2).then(|| info(3, 50, 0));
        assert_eq!(elect(&s, only_2, false, None), None);
        assert_eq!(elect(&s, only_2, true, None), Some(2));
    }
}
