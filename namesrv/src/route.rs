//! The routing tables and every rule that changes them (RocketMQ's
//! `RouteInfoManager`, `remoting-protocol.md` §11).
//!
//! All tables sit behind one lock so that each operation sees and leaves them
//! consistent: a topic never lists a broker name whose `BrokerData` is gone, and an
//! empty cluster or topic is dropped in the same step that empties it. Operations are
//! short map updates; nothing does I/O while holding the lock.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use parking_lot::RwLock;
use tracing::{info, warn};

use common::perm;
use common::route::{BrokerData, ClusterInfo, QueueData, TopicRouteData, MASTER_ID};
use remoting::body::{DataVersion, TopicConfigSerializeWrapper};
use remoting::Channel;

/// What the name server knows about one live broker address.
#[derive(Debug, Clone)]
pub struct BrokerLiveInfo {
    pub last_update: Instant,
    pub heartbeat_timeout: Duration,
    pub data_version: DataVersion,
    pub channel: Option<Channel>,
    pub ha_server_addr: String,
}

#[derive(Debug, Default)]
struct Tables {
    /// topic → broker name → queue data
    topic_queue: HashMap<String, BTreeMap<String, QueueData>>,
    /// broker name → addresses
    broker_addr: BTreeMap<String, BrokerData>,
    /// cluster → broker names
    cluster_addr: BTreeMap<String, BTreeSet<String>>,
    /// broker address → liveness
    broker_live: HashMap<String, BrokerLiveInfo>,
    /// broker address → filter servers (legacy; kept for the route's shape)
    filter_server: HashMap<String, Vec<String>>,
}

/// One REGISTER_BROKER request, decoded.
#[derive(Debug, Clone)]
pub struct Registration {
    pub cluster_name: String,
    pub broker_addr: String,
    pub broker_name: String,
    pub broker_id: u64,
    pub ha_server_addr: String,
    pub heartbeat_timeout: Option<Duration>,
    pub enable_acting_master: bool,
    pub topic_config: TopicConfigSerializeWrapper,
    pub filter_server_list: Vec<String>,
    pub channel: Option<Channel>,
}

/// What a registering slave learns about its master.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegisterResult {
    pub master_addr: Option<String>,
    pub ha_server_addr: Option<String>,
}

/// The route tables.
#[derive(Debug)]
pub struct RouteInfoManager {
    tables: RwLock<Tables>,
    default_timeout: Duration,
}

impl RouteInfoManager {
    /// `default_timeout`: how long a silent broker stays routable (120 s in RocketMQ),
    /// unless its registration names its own timeout.
    pub fn new(default_timeout: Duration) -> Self {
        Self { tables: RwLock::new(Tables::default()), default_timeout }
    }

    /// Applies a registration (§11.2 steps 3–7).
    pub fn register_broker(&self, r: Registration) -> RegisterResult {
        let mut t = self.tables.write();
        // RocketMQ's rule: a broker whose id is held by another address with a higher
        // state version (controller mode's master epoch) is a superseded one; its
        // registration changes nothing.
        let holder = t.broker_addr.get(&r.broker_name).and_then(|bd| bd.broker_addrs.get(&r.broker_id));
        if let Some(other) = holder.filter(|a| **a != r.broker_addr) {
            let theirs = t.broker_live.get(other).and_then(|l| l.data_version.state_version);
            if theirs.is_some_and(|v| r.topic_config.data_version.state_version.unwrap_or(0) < v) {
                warn!(broker_name = %r.broker_name, broker_id = r.broker_id, addr = %r.broker_addr, holder = %other,
                      "registration of a superseded broker ignored");
                return RegisterResult::default();
            }
        }
        t.cluster_addr.entry(r.cluster_name.clone()).or_default().insert(r.broker_name.clone());

        let first = !t.broker_addr.contains_key(&r.broker_name);
        let bd = t.broker_addr.entry(r.broker_name.clone()).or_insert_with(|| BrokerData {
            cluster: r.cluster_name.clone(),
            broker_name: r.broker_name.clone(),
            ..BrokerData::default()
        });
        bd.enable_acting_master = r.enable_acting_master;
        // A slave promoted to master re-registers the same address under id 0:
        // drop the address's old id first.
        bd.broker_addrs.retain(|id, addr| !(*addr == r.broker_addr && *id != r.broker_id));
        let replaced = bd.broker_addrs.insert(r.broker_id, r.broker_addr.clone());
        let register_first = first || replaced.is_none();

        if r.broker_id == MASTER_ID {
            let changed =
                t.broker_live.get(&r.broker_addr).is_none_or(|live| live.data_version != r.topic_config.data_version);
            if changed || register_first {
                for tc in r.topic_config.topic_config_table.values() {
                    let qd = QueueData {
                        broker_name: r.broker_name.clone(),
                        read_queue_nums: tc.read_queue_nums,
                        write_queue_nums: tc.write_queue_nums,
                        perm: tc.perm,
                        topic_sys_flag: tc.topic_sys_flag,
                    };
                    let queues = t.topic_queue.entry(tc.topic_name.clone()).or_default();
                    if queues.get(&r.broker_name) != Some(&qd) {
                        if queues.contains_key(&r.broker_name) {
                            info!(topic = %tc.topic_name, broker_name = %r.broker_name, "topic queue data changed");
                        }
                        queues.insert(r.broker_name.clone(), qd);
                    }
                }
            }
        }

        let previous = t.broker_live.insert(
            r.broker_addr.clone(),
            BrokerLiveInfo {
                last_update: Instant::now(),
                heartbeat_timeout: r.heartbeat_timeout.unwrap_or(self.default_timeout),
                data_version: r.topic_config.data_version.clone(),
                channel: r.channel,
                ha_server_addr: r.ha_server_addr.clone(),
            },
        );
        if previous.is_none() {
            info!(cluster = %r.cluster_name, broker_name = %r.broker_name, broker_id = r.broker_id,
                  addr = %r.broker_addr, "new broker registered");
        }
        if r.filter_server_list.is_empty() {
            t.filter_server.remove(&r.broker_addr);
        } else {
            t.filter_server.insert(r.broker_addr.clone(), r.filter_server_list);
        }

        let mut result = RegisterResult::default();
        if r.broker_id != MASTER_ID {
            if let Some(master) = t.broker_addr.get(&r.broker_name).and_then(|b| b.master_addr()).map(str::to_owned) {
                if let Some(live) = t.broker_live.get(&master) {
                    result.ha_server_addr = Some(live.ha_server_addr.clone());
                    result.master_addr = Some(master);
                }
            }
        }
        result
    }

    /// UNREGISTER_BROKER.
    pub fn unregister_broker(&self, cluster_name: &str, broker_addr: &str, broker_name: &str, broker_id: u64) {
        let mut t = self.tables.write();
        t.broker_live.remove(broker_addr);
        t.filter_server.remove(broker_addr);
        let emptied = match t.broker_addr.get_mut(broker_name) {
            Some(bd) => {
                if bd.broker_addrs.get(&broker_id).map(String::as_str) == Some(broker_addr) {
                    bd.broker_addrs.remove(&broker_id);
                }
                bd.broker_addrs.is_empty()
            }
            None => false,
        };
        info!(cluster = %cluster_name, broker_name, broker_id, addr = broker_addr, "broker unregistered");
        if emptied {
            remove_broker_name(&mut t, broker_name);
        }
    }

    /// Forgets the broker whose registration came over `channel` (its connection
    /// closed). Returns the address removed, if any.
    pub fn on_channel_closed(&self, channel: &Channel) -> Option<String> {
        let addr = {
            let t = self.tables.read();
            t.broker_live.iter().find(|(_, live)| live.channel.as_ref() == Some(channel)).map(|(addr, _)| addr.clone())
        }?;
        let mut t = self.tables.write();
        // Re-check under the write lock: the broker may have re-registered on a new
        // connection in between.
        if t.broker_live.get(&addr).and_then(|l| l.channel.as_ref()) != Some(channel) {
            return None;
        }
        info!(addr = %addr, "broker connection closed; removing its routes");
        remove_broker_addr(&mut t, &addr);
        Some(addr)
    }

    /// Expires brokers silent for longer than their heartbeat timeout and closes
    /// their connections. Returns the expired addresses.
    pub fn scan_not_active_brokers(&self) -> Vec<String> {
        let now = Instant::now();
        let expired: Vec<(String, Option<Channel>)> = {
            let t = self.tables.read();
            t.broker_live
                .iter()
                .filter(|(_, live)| now.duration_since(live.last_update) > live.heartbeat_timeout)
                .map(|(addr, live)| (addr.clone(), live.channel.clone()))
                .collect()
        };
        if expired.is_empty() {
            return Vec::new();
        }
        let mut t = self.tables.write();
        let mut removed = Vec::new();
        for (addr, channel) in expired {
            let still_expired = t
                .broker_live
                .get(&addr)
                .is_some_and(|live| now.duration_since(live.last_update) > live.heartbeat_timeout);
            if !still_expired {
                continue;
            }
            warn!(addr = %addr, "broker expired: no registration within its heartbeat timeout");
            remove_broker_addr(&mut t, &addr);
            if let Some(ch) = channel {
                ch.close();
            }
            removed.push(addr);
        }
        removed
    }

    /// GET_ROUTEINFO_BY_TOPIC: `None` when the topic has no queue or broker data.
    pub fn pickup_topic_route_data(&self, topic: &str) -> Option<TopicRouteData> {
        let t = self.tables.read();
        let queues = t.topic_queue.get(topic)?;
        let mut route = TopicRouteData::default();
        for (name, qd) in queues {
            route.queue_datas.push(qd.clone());
            if let Some(bd) = t.broker_addr.get(name) {
                for addr in bd.broker_addrs.values() {
                    if let Some(fs) = t.filter_server.get(addr) {
                        route.filter_server_table.insert(addr.clone(), fs.clone());
                    }
                }
                route.broker_datas.push(bd.clone());
            }
        }
        (!route.broker_datas.is_empty() && !route.queue_datas.is_empty()).then_some(route)
    }

    /// GET_BROKER_CLUSTER_INFO.
    pub fn cluster_info(&self) -> ClusterInfo {
        let t = self.tables.read();
        ClusterInfo { broker_addr_table: t.broker_addr.clone(), cluster_addr_table: t.cluster_addr.clone() }
    }

    /// GET_ALL_TOPIC_LIST_FROM_NAMESERVER, sorted.
    pub fn all_topics(&self) -> Vec<String> {
        let t = self.tables.read();
        let mut topics: Vec<String> = t.topic_queue.keys().cloned().collect();
        topics.sort();
        topics
    }

    /// Topics whose queues carry `flag` in their topic system flag on some broker
    /// (GET_UNIT_TOPIC_LIST and its kin), sorted.
    pub fn topics_with_sys_flag(&self, flag: i32, without: i32) -> Vec<String> {
        let t = self.tables.read();
        let mut topics: Vec<String> = t
            .topic_queue
            .iter()
            .filter(|(_, q)| q.values().any(|d| d.topic_sys_flag & flag != 0 && d.topic_sys_flag & without == 0))
            .map(|(topic, _)| topic.clone())
            .collect();
        topics.sort();
        topics
    }

    /// GET_TOPICS_BY_CLUSTER: topics with queues on any broker of `cluster`.
    pub fn topics_by_cluster(&self, cluster: &str) -> Vec<String> {
        let t = self.tables.read();
        let Some(brokers) = t.cluster_addr.get(cluster) else { return Vec::new() };
        let mut topics: Vec<String> = t
            .topic_queue
            .iter()
            .filter(|(_, q)| q.keys().any(|b| brokers.contains(b)))
            .map(|(topic, _)| topic.clone())
            .collect();
        topics.sort();
        topics
    }

    /// DELETE_TOPIC_IN_NAMESRV: the whole topic, or only its queues on the brokers of
    /// `cluster` when one is given.
    pub fn delete_topic(&self, topic: &str, cluster: Option<&str>) {
        let mut t = self.tables.write();
        match cluster {
            None => {
                t.topic_queue.remove(topic);
            }
            Some(cluster) => {
                let brokers = t.cluster_addr.get(cluster).cloned().unwrap_or_default();
                if let Some(queues) = t.topic_queue.get_mut(topic) {
                    queues.retain(|b, _| !brokers.contains(b));
                    if queues.is_empty() {
                        t.topic_queue.remove(topic);
                    }
                }
            }
        }
    }

    /// WIPE_WRITE_PERM_OF_BROKER (`grant` false) / ADD_WRITE_PERM_OF_BROKER (`grant`
    /// true): returns the number of topics whose queue data changed.
    pub fn set_write_perm_of_broker(&self, broker_name: &str, grant: bool) -> i32 {
        let mut t = self.tables.write();
        let mut count = 0;
        for queues in t.topic_queue.values_mut() {
            if let Some(qd) = queues.get_mut(broker_name) {
                qd.perm = if grant { qd.perm | perm::WRITE } else { qd.perm & !perm::WRITE };
                count += 1;
            }
        }
        count
    }

    /// QUERY_DATA_VERSION: whether `version` differs from the one registered for
    /// `broker_addr`. An unchanged broker counts as alive again.
    pub fn query_data_version(&self, broker_addr: &str, version: &DataVersion) -> (bool, Option<DataVersion>) {
        let mut t = self.tables.write();
        match t.broker_live.get_mut(broker_addr) {
            Some(live) => {
                let changed = live.data_version != *version;
                if !changed {
                    live.last_update = Instant::now();
                }
                (changed, Some(live.data_version.clone()))
            }
            None => (true, None),
        }
    }

    /// Number of live broker addresses.
    pub fn live_broker_count(&self) -> usize {
        self.tables.read().broker_live.len()
    }
}

/// Removes one broker address everywhere (expiry, closed connection).
fn remove_broker_addr(t: &mut Tables, addr: &str) {
    t.broker_live.remove(addr);
    t.filter_server.remove(addr);
    let mut emptied = None;
    for (name, bd) in t.broker_addr.iter_mut() {
        let before = bd.broker_addrs.len();
        bd.broker_addrs.retain(|_, a| a != addr);
        if bd.broker_addrs.len() != before {
            if bd.broker_addrs.is_empty() {
                emptied = Some(name.clone());
            }
            break;
        }
    }
    if let Some(name) = emptied {
        remove_broker_name(t, &name);
    }
}

/// Removes a broker name with no address left: from its cluster (dropping an empty
/// cluster) and from every topic (dropping topics left without queues).
fn remove_broker_name(t: &mut Tables, broker_name: &str) {
    t.broker_addr.remove(broker_name);
    t.cluster_addr.retain(|_, names| {
        names.remove(broker_name);
        !names.is_empty()
    });
    t.topic_queue.retain(|topic, queues| {
        if queues.remove(broker_name).is_some() && queues.is_empty() {
            info!(topic = %topic, "topic removed: no broker serves it any more");
        }
        !queues.is_empty()
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use common::topic::TopicConfig;

    fn reg(cluster: &str, name: &str, id: u64, addr: &str, topics: &[(&str, i32)], counter: i64) -> Registration {
        let mut wrapper = TopicConfigSerializeWrapper::default();
        for (t, q) in topics {
            wrapper.topic_config_table.insert((*t).into(), TopicConfig::new(*t, *q, 6));
        }
        wrapper.data_version = DataVersion { timestamp: 1, counter, state_version: None };
        Registration {
            cluster_name: cluster.into(),
            broker_addr: addr.into(),
            broker_name: name.into(),
            broker_id: id,
            ha_server_addr: format!("{addr}-ha"),
            heartbeat_timeout: None,
            enable_acting_master: false,
            topic_config: wrapper,
            filter_server_list: vec![],
            channel: None,
        }
    }

    #[test]
    fn register_builds_routes_and_cluster_info() {
        let m = RouteInfoManager::new(Duration::from_secs(120));
        m.register_broker(reg("C", "a", 0, "10.0.0.1:10911", &[("T", 4), ("U", 2)], 1));
        m.register_broker(reg("C", "b", 0, "10.0.0.2:10911", &[("T", 8)], 1));
        let route = m.pickup_topic_route_data("T").unwrap();
        assert_eq!(route.queue_datas.len(), 2);
        assert_eq!(route.broker_datas.len(), 2);
        assert_eq!(route.queue_datas[1].write_queue_nums, 8);
        assert_eq!(m.all_topics(), ["T", "U"]);
        let info = m.cluster_info();
        assert_eq!(info.cluster_addr_table["C"].len(), 2);
        assert!(m.pickup_topic_route_data("missing").is_none());
    }

    #[test]
    fn slave_learns_master_and_does_not_change_routes() {
        let m = RouteInfoManager::new(Duration::from_secs(120));
        m.register_broker(reg("C", "a", 0, "10.0.0.1:10911", &[("T", 4)], 1));
        let r = m.register_broker(reg("C", "a", 1, "10.0.0.9:10911", &[("T", 99)], 1));
        assert_eq!(r.master_addr.as_deref(), Some("10.0.0.1:10911"));
        assert_eq!(r.ha_server_addr.as_deref(), Some("10.0.0.1:10911-ha"));
        let route = m.pickup_topic_route_data("T").unwrap();
        assert_eq!(route.queue_datas[0].read_queue_nums, 4);
        assert_eq!(route.broker_datas[0].broker_addrs.len(), 2);
    }

    #[test]
    fn unchanged_data_version_keeps_queue_data() {
        let m = RouteInfoManager::new(Duration::from_secs(120));
        m.register_broker(reg("C", "a", 0, "A:1", &[("T", 4)], 1));
        m.set_write_perm_of_broker("a", false);
        // Same data version: the (wiped) queue data is not overwritten.
        m.register_broker(reg("C", "a", 0, "A:1", &[("T", 4)], 1));
        assert_eq!(m.pickup_topic_route_data("T").unwrap().queue_datas[0].perm, 4);
        // New data version: the broker's view wins.
        m.register_broker(reg("C", "a", 0, "A:1", &[("T", 4)], 2));
        assert_eq!(m.pickup_topic_route_data("T").unwrap().queue_datas[0].perm, 6);
    }

    #[test]
    fn a_superseded_master_cannot_take_its_id_back() {
        let m = RouteInfoManager::new(Duration::from_secs(120));
        let with_epoch = |addr: &str, epoch: i64| {
            let mut r = reg("C", "a", 0, addr, &[("T", 4)], 1);
            r.topic_config.data_version.state_version = Some(epoch);
            r
        };
        m.register_broker(with_epoch("OLD:1", 2));
        m.register_broker(with_epoch("NEW:1", 3));
        // The old master, resumed, registers again in its epoch: ignored.
        m.register_broker(with_epoch("OLD:1", 2));
        let route = m.pickup_topic_route_data("T").unwrap();
        assert_eq!(route.broker_datas[0].broker_addrs.get(&0).map(String::as_str), Some("NEW:1"));
        // A newer epoch does take it.
        m.register_broker(with_epoch("OLD:1", 4));
        let route = m.pickup_topic_route_data("T").unwrap();
        assert_eq!(route.broker_datas[0].broker_addrs.get(&0).map(String::as_str), Some("OLD:1"));
    }

    #[test]
    fn unregister_last_address_drops_broker_cluster_and_topics() {
        let m = RouteInfoManager::new(Duration::from_secs(120));
        m.register_broker(reg("C", "a", 0, "A:1", &[("T", 4)], 1));
        m.register_broker(reg("C", "b", 0, "B:1", &[("T", 4), ("V", 1)], 1));
        m.unregister_broker("C", "B:1", "b", 0);
        assert_eq!(m.all_topics(), ["T"]);
        assert_eq!(m.cluster_info().cluster_addr_table["C"].len(), 1);
        m.unregister_broker("C", "A:1", "a", 0);
        assert!(m.all_topics().is_empty());
        assert!(m.cluster_info().cluster_addr_table.is_empty());
    }

    #[test]
    fn expiry_removes_silent_brokers() {
        let m = RouteInfoManager::new(Duration::from_millis(1));
        m.register_broker(reg("C", "a", 0, "A:1", &[("T", 4)], 1));
        let mut r = reg("C", "b", 0, "B:1", &[("T", 4)], 1);
        r.heartbeat_timeout = Some(Duration::from_secs(3600));
        m.register_broker(r);
        let deadline = Instant::now() + Duration::from_secs(5);
        let removed = loop {
            let removed = m.scan_not_active_brokers();
            if !removed.is_empty() || Instant::now() > deadline {
                break removed;
            }
            std::thread::yield_now();
        };
        assert_eq!(removed, ["A:1"]);
        assert_eq!(m.pickup_topic_route_data("T").unwrap().broker_datas.len(), 1);
    }

    #[test]
    fn topics_by_cluster_and_delete() {
        let m = RouteInfoManager::new(Duration::from_secs(120));
        m.register_broker(reg("C1", "a", 0, "A:1", &[("T", 4), ("X", 1)], 1));
        m.register_broker(reg("C2", "b", 0, "B:1", &[("T", 4), ("Y", 1)], 1));
        assert_eq!(m.topics_by_cluster("C1"), ["T", "X"]);
        m.delete_topic("T", Some("C1"));
        assert_eq!(m.pickup_topic_route_data("T").unwrap().queue_datas.len(), 1);
        m.delete_topic("T", None);
        assert!(m.pickup_topic_route_data("T").is_none());
    }

    #[test]
    fn query_data_version_reports_changes() {
        let m = RouteInfoManager::new(Duration::from_secs(120));
        m.register_broker(reg("C", "a", 0, "A:1", &[("T", 4)], 7));
        let same = DataVersion { timestamp: 1, counter: 7, state_version: None };
        assert!(!m.query_data_version("A:1", &same).0);
        let other = DataVersion { timestamp: 1, counter: 8, state_version: None };
        assert!(m.query_data_version("A:1", &other).0);
        assert!(m.query_data_version("nope:1", &same).0);
    }
}
