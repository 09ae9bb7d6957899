//! Scaling out an ordered topic without reordering it.
//!
//! Order is per queue, and producers pick the queue from a key (`hash % queues`).
//! Adding queues moves some keys to new queues, so a consumer could read a key's
//! newer messages from a new queue before its older ones in the old queue. The
//! rule (from the mission): when queues are added to an ordered topic, record
//! each old queue's max offset at that moment (the *barrier*), and let a consumer
//! group read the new queues only once it has consumed every old queue up to its
//! barrier.
//!
//! What this module owns:
//! * the record of expansions, `config/orderExpansion.json`, written atomically on
//!   every change: topic → list of [`Expansion`]s (old queue count, new queue
//!   count, the barrier of every old queue, when). It is taken by
//!   UPDATE_AND_CREATE_TOPIC ([`OrderExpansions::on_topic_update`]) when the new
//!   config has `order = true` and more queues (`max(read, write)`) than the old
//!   one; shrinking the topic forgets expansions whose new queues are gone;
//!   deleting the topic forgets them all;
//! * the gate ([`OrderExpansions::gate`]) the pull processor asks before serving a
//!   queue of an ordered topic: a queue added by an expansion is *closed* to a
//!   group until, for every old queue, the group's committed offset (what
//!   QUERY/UPDATE_CONSUMER_OFFSET and the pull's piggy-backed commit store) has
//!   reached the barrier — or the queue has nothing left to drain (its barrier is
//!   0, or retention removed everything below it).
//!
//! What it deliberately does not do:
//! * reorder anything or hold producers: writes to every queue go on as usual;
//!   only reads of new queues wait;
//! * gate broadcasting consumers (their offsets live on the clients, so the
//!   broker cannot see them drain) or topics whose config no longer says
//!   `order = true`;
//! * cover messages a producer with a stale route writes to an old queue after
//!   the expansion (they are past the barrier): refresh producer routes, or
//!   expand while producers of the moved keys are paused, for strict order.
//!
//! Invariants callers rely on:
//! * a closed queue answers PULL_NOT_FOUND with `nextBeginOffset` = the requested
//!   offset (nothing skipped); a suspending pull is held for up to
//!   [`GATE_RECHECK`] and never woken by arrivals on the closed queue, so push
//!   consumers wait without spinning;
//! * once a (topic, group, expansion) is open it stays open until the broker
//!   restarts (committed offsets only move back on an explicit reset, and
//!   re-closing a queue a group is consuming would stall it); after a restart it
//!   is re-evaluated from the persisted offsets, which gives the same answer;
//! * chained expansions (4 → 8 → 16) compose: a queue is gated by the expansion
//!   that created it, whose barrier covers the queues of earlier expansions, which
//!   are gated in turn.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::time::Duration;

use parking_lot::RwLock;
use serde::{Deserialize, Serialize};
use tracing::info;

use common::topic::TopicConfig;

use crate::error::Result;
use crate::persist;

/// How long a suspending pull of a closed queue is held before it is answered
/// PULL_NOT_FOUND (and the consumer asks again).
pub const GATE_RECHECK: Duration = Duration::from_secs(1);

/// One expansion of an ordered topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Expansion {
    /// Queues `0..from_queues` existed before.
    pub from_queues: i32,
    /// Queues `from_queues..to_queues` were added.
    pub to_queues: i32,
    /// Old queue id → its max offset (next offset to be written) at expansion time.
    pub barrier: BTreeMap<i32, i64>,
    /// When the expansion happened (ms).
    pub timestamp: i64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct ExpansionFile {
    topics: BTreeMap<String, Vec<Expansion>>,
}

/// Why a queue is closed to a group (for the PULL_NOT_FOUND remark).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Closed {
    /// The first old queue not drained yet.
    pub queue_id: i32,
    pub committed: i64,
    pub barrier: i64,
}

impl std::fmt::Display for Closed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ordered topic expanded: this queue opens once the group has consumed old queue {} up to offset {} (committed {})",
            self.queue_id, self.barrier, self.committed
        )
    }
}

/// The expansions of every ordered topic, and which groups have drained them.
pub struct OrderExpansions {
    path: PathBuf,
    table: RwLock<HashMap<String, Vec<Expansion>>>,
    /// (topic, group, from_queues) found drained.
    open: RwLock<HashSet<(String, String, i32)>>,
}

impl OrderExpansions {
    /// Loads `orderExpansion.json` (absent: no expansions).
    ///
    /// # Errors
    /// The file exists but cannot be read or parsed.
    pub fn load(path: PathBuf) -> Result<Self> {
        let file: ExpansionFile = persist::load(&path)?.unwrap_or_default();
        Ok(Self { path, table: RwLock::new(file.topics.into_iter().collect()), open: RwLock::default() })
    }

    /// The expansions of `topic`, oldest first.
    pub fn of_topic(&self, topic: &str) -> Vec<Expansion> {
        self.table.read().get(topic).cloned().unwrap_or_default()
    }

    /// UPDATE_AND_CREATE_TOPIC is about to replace `old` by `new`: records an
    /// expansion (barrier from `max_offset(queue)`) when `new` is ordered and has
    /// more queues, forgets expansions whose new queues a shrink removed.
    ///
    /// # Errors
    /// The record could not be written; the caller should refuse the update, since
    /// serving the new queues without a barrier would break the order.
    pub fn on_topic_update(
        &self,
        old: Option<&TopicConfig>,
        new: &TopicConfig,
        max_offset: impl Fn(i32) -> i64,
        now_ms: i64,
    ) -> Result<()> {
        let Some(old) = old else { return Ok(()) };
        let before = old.read_queue_nums.max(old.write_queue_nums);
        let after = new.read_queue_nums.max(new.write_queue_nums);
        let topic = &new.topic_name;
        let changed = {
            let mut table = self.table.write();
            if after > before && new.order {
                let barrier: BTreeMap<i32, i64> = (0..before).map(|q| (q, max_offset(q))).collect();
                info!(topic = %topic, from = before, to = after, ?barrier, "ordered topic expanded; new queues open per group once it drains the old ones");
                table.entry(topic.clone()).or_default().push(Expansion {
                    from_queues: before,
                    to_queues: after,
                    barrier,
                    timestamp: now_ms,
                });
                true
            } else if after < before {
                let list = table.entry(topic.clone()).or_default();
                let n = list.len();
                list.retain(|e| e.from_queues < after);
                let changed = list.len() != n;
                if list.is_empty() {
                    table.remove(topic);
                }
                changed
            } else {
                false
            }
        };
        if changed {
            self.open.write().retain(|(t, _, _)| t != topic);
            self.persist()?;
        }
        Ok(())
    }

    /// The topic was deleted.
    ///
    /// # Errors
    /// The record could not be written.
    pub fn delete_topic(&self, topic: &str) -> Result<()> {
        if self.table.write().remove(topic).is_none() {
            return Ok(());
        }
        self.open.write().retain(|(t, _, _)| t != topic);
        self.persist()
    }

    /// Whether `group` may read `queue_id` of the ordered `topic`: `None` when
    /// open, else why not. `committed(queue)` is the group's committed offset (−1
    /// when none) and `min_offset(queue)` the queue's first readable offset.
    ///
    /// Cheap when the topic was never expanded (one map lookup under a read lock)
    /// or the queue is open for the group (one more set lookup).
    pub fn gate(
        &self,
        topic: &str,
        group: &str,
        queue_id: i32,
        committed: impl Fn(i32) -> i64,
        min_offset: impl Fn(i32) -> i64,
    ) -> Option<Closed> {
        let (from, barrier) = {
            let table = self.table.read();
            // The latest expansion that added this queue.
            let e = table.get(topic)?.iter().rev().find(|e| e.from_queues <= queue_id && queue_id < e.to_queues)?;
            if self.open.read().contains(&(topic.to_owned(), group.to_owned(), e.from_queues)) {
                return None;
            }
            (e.from_queues, e.barrier.clone())
        };
        for (&q, &b) in &barrier {
            if b <= 0 {
                continue;
            }
            let c = committed(q);
            if c >= b || min_offset(q) >= b {
                continue;
            }
            return Some(Closed { queue_id: q, committed: c, barrier: b });
        }
        info!(topic, group, from, "ordered topic: the group drained the old queues; new queues open");
        self.open.write().insert((topic.to_owned(), group.to_owned(), from));
        None
    }

    fn persist(&self) -> Result<()> {
        persist::save(&self.path, || ExpansionFile {
            topics: self.table.read().iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topic(queues: i32, order: bool) -> TopicConfig {
        TopicConfig {
            topic_name: "T".into(),
            read_queue_nums: queues,
            write_queue_nums: queues,
            order,
            ..TopicConfig::default()
        }
    }

    fn load(dir: &tempfile::TempDir) -> OrderExpansions {
        OrderExpansions::load(dir.path().join("orderExpansion.json")).unwrap()
    }

    #[test]
    fn records_expansions_of_ordered_topics_only_and_persists_them() {
        let dir = tempfile::tempdir().unwrap();
        let x = load(&dir);
        x.on_topic_update(None, &topic(2, true), |_| 7, 1).unwrap();
        assert!(x.of_topic("T").is_empty(), "creation is not an expansion");
        x.on_topic_update(Some(&topic(2, false)), &topic(4, false), |_| 7, 1).unwrap();
        assert!(x.of_topic("T").is_empty(), "unordered topics are not gated");
        x.on_topic_update(Some(&topic(2, true)), &topic(4, true), |q| 10 + i64::from(q), 5).unwrap();
        let e = &x.of_topic("T")[0];
        assert_eq!((e.from_queues, e.to_queues, e.timestamp), (2, 4, 5));
        assert_eq!(e.barrier, BTreeMap::from([(0, 10), (1, 11)]));
        let again = load(&dir);
        assert_eq!(again.of_topic("T"), x.of_topic("T"));
    }

    #[test]
    fn new_queues_open_per_group_once_every_old_queue_is_drained() {
        let dir = tempfile::tempdir().unwrap();
        let x = load(&dir);
        x.on_topic_update(Some(&topic(2, true)), &topic(4, true), |q| [10, 0][q as usize], 5).unwrap();
        // Old queues are never gated.
        assert_eq!(x.gate("T", "G", 0, |_| -1, |_| 0), None);
        // New queue, nothing committed: closed on queue 0 (queue 1 was empty).
        assert_eq!(x.gate("T", "G", 2, |_| -1, |_| 0), Some(Closed { queue_id: 0, committed: -1, barrier: 10 }));
        assert!(x.gate("T", "G", 3, |_| 9, |_| 0).is_some());
        // Drained: open, and stays open for this group only.
        assert_eq!(x.gate("T", "G", 3, |_| 10, |_| 0), None);
        assert_eq!(x.gate("T", "G", 2, |_| -1, |_| 0), None);
        assert!(x.gate("T", "Other", 2, |_| -1, |_| 0).is_some());
        // Retention removed what was below the barrier: nothing to drain.
        assert_eq!(x.gate("T", "Other", 2, |_| -1, |_| 10), None);
    }

    #[test]
    fn chained_expansions_gate_on_their_own_barrier_and_shrinks_forget() {
        let dir = tempfile::tempdir().unwrap();
        let x = load(&dir);
        x.on_topic_update(Some(&topic(2, true)), &topic(4, true), |_| 5, 1).unwrap();
        x.on_topic_update(Some(&topic(4, true)), &topic(8, true), |q| if q < 2 { 9 } else { 3 }, 2).unwrap();
        // Queue 5 (second expansion) needs queues 0..4 at 9,9,3,3.
        assert!(x.gate("T", "G", 5, |q| if q < 2 { 9 } else { 2 }, |_| 0).is_some());
        assert_eq!(x.gate("T", "G", 5, |q| if q < 2 { 9 } else { 3 }, |_| 0), None);
        // Queue 2 (first expansion) needs queues 0..2 at 5.
        assert!(x.gate("T", "H", 2, |_| 4, |_| 0).is_some());
        // Shrinking to 4 forgets the second expansion; to 2 the first too.
        x.on_topic_update(Some(&topic(8, true)), &topic(4, true), |_| 0, 3).unwrap();
        assert_eq!(x.of_topic("T").len(), 1);
        x.delete_topic("T").unwrap();
        assert!(load(&dir).of_topic("T").is_empty());
    }
}
