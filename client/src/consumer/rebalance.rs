//! Queue allocation: which of a topic's queues this consumer reads, given every
//! queue and every member of the group (RocketMQ's `AllocateMessageQueueStrategy`
//! and the allocation step of its `RebalanceImpl`).
//!
//! Every member runs the same strategy on the same sorted inputs, independently,
//! and the results must partition the queues: no coordinator exists. So a
//! strategy must be a pure function of its arguments (no clock, no randomness, no
//! per-process state), and results must be identical to the Java client's
//! strategies of the same name, because Java and Rust consumers can share a group.
//!
//! [`AllocateStrategy`] is the extension point: plugin strategies (WASM, Lua,
//! native) implement it too. Callers pass `mq_all` sorted (topic, broker name,
//! queue id) and `cid_all` sorted; a `current_cid` missing from `cid_all` gets
//! nothing.
//!
//! Zones: a member's zone is RocketMQ's `unitName` (`ClientConfig::unit_name`),
//! which RocketMQ appends to the client id (`ip@instance@unit`), so every member
//! reads every other member's zone from the member list ([`client_zone`]). A
//! broker's zone is the `zoneName` its route carries (RocketMQ 5), if any.
//!
//! [`allocate_topic`] is the one rebalance step both the push and the lite pull
//! consumer run per topic: route, members, strategy. Its invariant: a member that is
//! not (yet) in the member list keeps its queues and heartbeats instead of
//! allocating, because allocating then would give it nothing and drop every queue
//! it reads until the next rebalance.

use std::collections::BTreeMap;
use std::sync::Arc;

use tracing::{debug, warn};

use common::route::MessageQueue;
use common::subscription::MessageModel;
use plugin_api::{AllocateInput, ClientView, QueueView, PERM_READ};

use crate::error::Result;

/// Decides which queues `current_cid` owns.
pub trait AllocateStrategy: Send + Sync {
    /// The strategy's name, as RocketMQ reports it (`AVG`, `AVG_BY_CIRCLE`, ...).
    fn name(&self) -> &str;
    /// The queues of `mq_all` that `current_cid` owns among `cid_all`.
    fn allocate(
        &self,
        group: &str,
        current_cid: &str,
        mq_all: &[MessageQueue],
        cid_all: &[String],
    ) -> Vec<MessageQueue>;

    /// [`allocate`](AllocateStrategy::allocate) with everything the member knows
    /// (zones included), and the right to refuse. Consumers call this; the default
    /// runs `allocate`.
    ///
    /// # Errors
    /// The strategy cannot divide the queues with what it was given (a machine room
    /// it cannot tell, say). The member then keeps its queues of the topic for this
    /// round, as RocketMQ's rebalance does when a strategy throws.
    fn try_allocate(&self, ctx: &AllocateContext<'_>) -> Result<Vec<MessageQueue>> {
        Ok(self.allocate(ctx.group, ctx.current_cid, ctx.mq_all, ctx.cid_all))
    }
}

/// The input of one allocation: what every member of the group shares (`mq_all`
/// and `cid_all`, sorted) plus the zones this member knows.
#[derive(Debug, Clone, Copy)]
pub struct AllocateContext<'a> {
    pub group: &'a str,
    pub current_cid: &'a str,
    /// This member's zone (`ClientConfig::unit_name`); "" when unset.
    pub current_zone: &'a str,
    pub mq_all: &'a [MessageQueue],
    pub cid_all: &'a [String],
    /// Zones the route names for the brokers of `mq_all`, by broker name.
    pub broker_zones: &'a BTreeMap<String, String>,
}

impl<'a> AllocateContext<'a> {
    /// The zone of broker `broker_name`; "" when the route names none.
    pub fn broker_zone(&self, broker_name: &str) -> &'a str {
        self.broker_zones.get(broker_name).map_or("", String::as_str)
    }

    /// The zone of member `cid`: this member's configured zone, any other member's
    /// from its client id ([`client_zone`]).
    pub fn client_zone(&self, cid: &'a str) -> &'a str {
        if cid == self.current_cid {
            self.current_zone
        } else {
            client_zone(cid)
        }
    }
}

/// The zone in a client id: the third `@`-separated part, where RocketMQ puts the
/// client's `unitName` (`ip@instance@unit`); "" when the id has none.
pub fn client_zone(client_id: &str) -> &str {
    client_id.splitn(3, '@').nth(2).unwrap_or("")
}

/// [`AllocateContext`]'s owned twin, to cross into a blocking-pool thread.
struct OwnedContext {
    group: String,
    current_cid: String,
    current_zone: String,
    mq_all: Vec<MessageQueue>,
    cid_all: Vec<String>,
    broker_zones: BTreeMap<String, String>,
}

impl OwnedContext {
    fn new(ctx: &AllocateContext<'_>) -> Self {
        Self {
            group: ctx.group.to_owned(),
            current_cid: ctx.current_cid.to_owned(),
            current_zone: ctx.current_zone.to_owned(),
            mq_all: ctx.mq_all.to_vec(),
            cid_all: ctx.cid_all.to_vec(),
            broker_zones: ctx.broker_zones.clone(),
        }
    }

    fn context(&self) -> AllocateContext<'_> {
        AllocateContext {
            group: &self.group,
            current_cid: &self.current_cid,
            current_zone: &self.current_zone,
            mq_all: &self.mq_all,
            cid_all: &self.cid_all,
            broker_zones: &self.broker_zones,
        }
    }
}

/// Runs `strategy` on a blocking-pool thread: a plugin strategy may take up to its
/// deadline (100 ms by default), which must not stall the async workers that carry
/// every pull and send. A strategy that panics refuses, like one that errs.
async fn allocate_off_runtime(
    strategy: &Arc<dyn AllocateStrategy>,
    ctx: &AllocateContext<'_>,
) -> Result<Vec<MessageQueue>> {
    let (strategy, owned) = (strategy.clone(), OwnedContext::new(ctx));
    match tokio::task::spawn_blocking(move || strategy.try_allocate(&owned.context())).await {
        Ok(result) => result,
        Err(_) => Err(crate::error::Error::AllocatePanicked),
    }
}

/// What a consumer's rebalance needs from the cluster, as a trait so that the step
/// can be tested without one.
pub(crate) trait Membership {
    /// This member's client id.
    fn client_id(&self) -> &str;
    /// This member's zone; "" when unset.
    fn zone(&self) -> &str;
    /// The topic's readable queues, sorted, and the zones its route names by broker.
    async fn queues(&self, topic: &str) -> Result<(Vec<MessageQueue>, BTreeMap<String, String>)>;
    /// The group's members as a broker of the topic knows them, sorted.
    async fn members(&self, topic: &str, group: &str) -> Result<Vec<String>>;
    /// Tells every broker about this member now.
    async fn heartbeat(&self);
}

impl Membership for crate::consumer::PullApi {
    fn client_id(&self) -> &str {
        self.instance().client_id()
    }

    fn zone(&self) -> &str {
        self.instance().config().unit_name.as_deref().unwrap_or("")
    }

    async fn queues(&self, topic: &str) -> Result<(Vec<MessageQueue>, BTreeMap<String, String>)> {
        let route = self.instance().route(topic).await?;
        let zones = route
            .broker_datas
            .iter()
            .filter_map(|b| b.zone_name.as_ref().map(|z| (b.broker_name.clone(), z.clone())))
            .collect();
        Ok((self.instance().subscribe_queues(topic).await?, zones))
    }

    async fn members(&self, topic: &str, group: &str) -> Result<Vec<String>> {
        self.consumer_ids(topic, group).await
    }

    async fn heartbeat(&self) {
        self.instance().send_heartbeat_to_all().await;
    }
}

/// One topic's rebalance step (RocketMQ's `rebalanceByTopic` up to the queue table):
/// the queues this member should own now, or `None` to keep what it owns.
///
/// Broadcasting members own every readable queue. Clustering members run `strategy`
/// over the queues and the group's members; `None` when the route or the member list
/// cannot be had, when this member is not in the list yet (it heartbeats, and the
/// broker's NOTIFY_CONSUMER_IDS_CHANGED brings the next rebalance), or when the
/// strategy refuses. The answer holds only queues of the topic's route, once each.
pub(crate) async fn allocate_topic(
    cluster: &impl Membership,
    strategy: &Arc<dyn AllocateStrategy>,
    group: &str,
    topic: &str,
    model: MessageModel,
) -> Option<Vec<MessageQueue>> {
    let (mq_all, broker_zones) = match cluster.queues(topic).await {
        Ok(q) => q,
        Err(e) => {
            debug!(group, topic, error = %e, "rebalance: no route");
            return None;
        }
    };
    if model == MessageModel::Broadcasting {
        return Some(mq_all);
    }
    let cid_all = match cluster.members(topic, group).await {
        Ok(c) => c,
        Err(e) => {
            warn!(group, topic, error = %e, "rebalance: consumer list failed");
            return None;
        }
    };
    let me = cluster.client_id();
    if !cid_all.iter().any(|c| c == me) {
        debug!(group, topic, "rebalance: not yet a member; heartbeating");
        cluster.heartbeat().await;
        return None;
    }
    let ctx = AllocateContext {
        group,
        current_cid: me,
        current_zone: cluster.zone(),
        mq_all: &mq_all,
        cid_all: &cid_all,
        broker_zones: &broker_zones,
    };
    match allocate_off_runtime(strategy, &ctx).await {
        Ok(mut mine) => {
            // A strategy may name queues outside the route (a configured list, a
            // plugin): only the route's queues can be pulled, and each once.
            mine.retain(|q| mq_all.contains(q));
            let mut seen = std::collections::HashSet::new();
            mine.retain(|q| seen.insert(q.clone()));
            Some(mine)
        }
        Err(e) => {
            warn!(group, topic, strategy = strategy.name(), error = %e, "rebalance: the strategy refused; keeping the current queues");
            None
        }
    }
}

fn index_of(current_cid: &str, mq_all: &[MessageQueue], cid_all: &[String]) -> Option<usize> {
    if current_cid.is_empty() || mq_all.is_empty() || cid_all.is_empty() {
        return None;
    }
    cid_all.iter().position(|c| c == current_cid)
}

/// Contiguous blocks, the first `n % m` members getting one more
/// (`AllocateMessageQueueAveragely`, the default): 8 queues over 3 members →
/// 3, 3, 2. The arithmetic is `plugin-api`'s built-in
/// ([`plugin_api::builtin::allocate_averagely`]), the one the plugin host falls back
/// to, so a plugin's fallback and this strategy always agree.
#[derive(Debug, Default, Clone, Copy)]
pub struct AllocateAveragely;

impl AllocateStrategy for AllocateAveragely {
    fn name(&self) -> &str {
        "AVG"
    }

    fn allocate(
        &self,
        group: &str,
        current_cid: &str,
        mq_all: &[MessageQueue],
        cid_all: &[String],
    ) -> Vec<MessageQueue> {
        if index_of(current_cid, mq_all, cid_all).is_none() {
            return Vec::new();
        }
        // Only the positions matter to the arithmetic; the views carry no zones.
        let queues: Vec<QueueView<'_>> = mq_all
            .iter()
            .map(|q| QueueView {
                broker_name: &q.broker_name,
                queue_id: u32::try_from(q.queue_id).unwrap_or(0),
                perm: PERM_READ,
                zone: "",
            })
            .collect();
        let clients: Vec<ClientView<'_>> = cid_all.iter().map(|c| ClientView { client_id: c, zone: "" }).collect();
        let mut mine = Vec::new();
        let input = AllocateInput { group, current_client: current_cid, queues: &queues, clients: &clients };
        plugin_api::builtin::allocate_averagely(&input, &mut mine);
        mine.into_iter().filter_map(|i| mq_all.get(i as usize).cloned()).collect()
    }
}

/// Round-robin: member `i` gets queues `i, i + m, i + 2m, ...`
/// (`AllocateMessageQueueAveragelyByCircle`).
#[derive(Debug, Default, Clone, Copy)]
pub struct AllocateAveragelyByCircle;

impl AllocateStrategy for AllocateAveragelyByCircle {
    fn name(&self) -> &str {
        "AVG_BY_CIRCLE"
    }

    fn allocate(
        &self,
        _group: &str,
        current_cid: &str,
        mq_all: &[MessageQueue],
        cid_all: &[String],
    ) -> Vec<MessageQueue> {
        let Some(index) = index_of(current_cid, mq_all, cid_all) else { return Vec::new() };
        mq_all.iter().skip(index).step_by(cid_all.len()).cloned().collect()
    }
}

/// A consistent-hash ring of members with virtual nodes; each queue goes to the
/// first virtual node at or after the hash of its Java `toString()`
/// (`AllocateMessageQueueConsistentHash` with RocketMQ's `ConsistentHashRouter`
/// and `MD5Hash`). Membership changes move few queues.
#[derive(Debug, Clone, Copy)]
pub struct AllocateConsistentHash {
    virtual_nodes: usize,
}

impl AllocateConsistentHash {
    /// RocketMQ's default number of virtual nodes per member.
    pub const DEFAULT_VIRTUAL_NODES: usize = 10;

    /// # Panics
    /// `virtual_nodes` is zero (Java throws `IllegalArgumentException`).
    pub fn new(virtual_nodes: usize) -> Self {
        assert!(virtual_nodes > 0, "virtual_nodes must be positive");
        Self { virtual_nodes }
    }
}

impl Default for AllocateConsistentHash {
    fn default() -> Self {
        Self::new(Self::DEFAULT_VIRTUAL_NODES)
    }
}

/// RocketMQ's `MD5Hash`: the first four bytes of the MD5 digest, big-endian.
fn ring_hash(key: &str) -> u32 {
    let d = md5(key.as_bytes());
    u32::from_be_bytes([d[0], d[1], d[2], d[3]])
}

impl AllocateStrategy for AllocateConsistentHash {
    fn name(&self) -> &str {
        "CONSISTENT_HASH"
    }

    fn allocate(
        &self,
        _group: &str,
        current_cid: &str,
        mq_all: &[MessageQueue],
        cid_all: &[String],
    ) -> Vec<MessageQueue> {
        if index_of(current_cid, mq_all, cid_all).is_none() {
            return Vec::new();
        }
        // A TreeMap keyed by hash: a later virtual node with the same hash replaces
        // an earlier one, as Java's `ring.put` does.
        let mut ring = std::collections::BTreeMap::new();
        for cid in cid_all {
            for i in 0..self.virtual_nodes {
                ring.insert(ring_hash(&format!("{cid}-{i}")), cid.as_str());
            }
        }
        mq_all
            .iter()
            .filter(|mq| {
                let h = ring_hash(&format!(
                    "MessageQueue [topic={}, brokerName={}, queueId={}]",
                    mq.topic, mq.broker_name, mq.queue_id
                ));
                let owner = ring.range(h..).next().or_else(|| ring.iter().next()).map(|(_, c)| *c);
                owner == Some(current_cid)
            })
            .cloned()
            .collect()
    }
}

/// MD5 (RFC 1321). Small enough to keep here rather than add a dependency for one
/// ring hash; checked against the RFC's test suite below.
fn md5(input: &[u8]) -> [u8; 16] {
    const S: [u32; 64] = [
        7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 5, 9, 14, 20, 5, 9, 14, 20, 5, 9, 14, 20, 5, 9, 14,
        20, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21, 6,
        10, 15, 21,
    ];
    // K[i] = floor(abs(sin(i + 1)) * 2^32)
    let k: [u32; 64] = std::array::from_fn(|i| ((i as f64 + 1.0).sin().abs() * 4_294_967_296.0) as u32);
    let (mut a0, mut b0, mut c0, mut d0) = (0x6745_2301u32, 0xefcd_ab89u32, 0x98ba_dcfeu32, 0x1032_5476u32);
    let mut msg = input.to_vec();
    let bit_len = (input.len() as u64).wrapping_mul(8);
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&bit_len.to_le_bytes());
    for chunk in msg.chunks_exact(64) {
        let m: [u32; 16] = std::array::from_fn(|i| {
            u32::from_le_bytes([chunk[4 * i], chunk[4 * i + 1], chunk[4 * i + 2], chunk[4 * i + 3]])
        });
        let (mut a, mut b, mut c, mut d) = (a0, b0, c0, d0);
        for i in 0..64 {
            let (f, g) = match i / 16 {
                0 => ((b & c) | (!b & d), i),
                1 => ((d & b) | (!d & c), (5 * i + 1) % 16),
                2 => (b ^ c ^ d, (3 * i + 5) % 16),
                _ => (c ^ (b | !d), (7 * i) % 16),
            };
            let f = f.wrapping_add(a).wrapping_add(k[i]).wrapping_add(m[g]);
            a = d;
            d = c;
            c = b;
            b = b.wrapping_add(f.rotate_left(S[i]));
        }
        a0 = a0.wrapping_add(a);
        b0 = b0.wrapping_add(b);
        c0 = c0.wrapping_add(c);
        d0 = d0.wrapping_add(d);
    }
    let mut out = [0u8; 16];
    for (i, w) in [a0, b0, c0, d0].iter().enumerate() {
        out[4 * i..4 * i + 4].copy_from_slice(&w.to_le_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queues(n: i32) -> Vec<MessageQueue> {
        let mut v: Vec<MessageQueue> = (0..n).map(|i| MessageQueue::new("T", "broker-a", i)).collect();
        v.sort();
        v
    }

    fn cids(m: usize) -> Vec<String> {
        (0..m).map(|i| format!("10.0.0.1@{i}")).collect()
    }

    /// Queue ids each member gets, in member order.
    fn check(strategy: &dyn AllocateStrategy, n: i32, m: usize, expected: &[&[i32]]) {
        let mqs = queues(n);
        let ids = cids(m);
        let got: Vec<Vec<i32>> =
            ids.iter().map(|c| strategy.allocate("G", c, &mqs, &ids).iter().map(|q| q.queue_id).collect()).collect();
        let want: Vec<Vec<i32>> = expected.iter().map(|e| e.to_vec()).collect();
        assert_eq!(got, want, "{} with {n} queues and {m} members", strategy.name());
    }

    /// Every queue has exactly one owner.
    fn assert_partition(strategy: &dyn AllocateStrategy, mqs: &[MessageQueue], ids: &[String]) {
        let mut all: Vec<MessageQueue> = ids.iter().flat_map(|c| strategy.allocate("G", c, mqs, ids)).collect();
        all.sort();
        assert_eq!(all, mqs, "{} must partition the queues", strategy.name());
    }

    #[test]
    fn averagely_matches_rocketmq() {
        // RocketMQ's AllocateMessageQueueAveragelyTest and §12.7's formula.
        check(&AllocateAveragely, 6, 2, &[&[0, 1, 2], &[3, 4, 5]]);
        check(&AllocateAveragely, 6, 3, &[&[0, 1], &[2, 3], &[4, 5]]);
        check(&AllocateAveragely, 8, 3, &[&[0, 1, 2], &[3, 4, 5], &[6, 7]]);
        check(&AllocateAveragely, 10, 4, &[&[0, 1, 2], &[3, 4, 5], &[6, 7], &[8, 9]]);
        // More members than queues: the extra members get nothing.
        check(&AllocateAveragely, 2, 4, &[&[0], &[1], &[], &[]]);
        check(&AllocateAveragely, 4, 1, &[&[0, 1, 2, 3]]);
    }

    #[test]
    fn by_circle_matches_rocketmq() {
        check(&AllocateAveragelyByCircle, 6, 2, &[&[0, 2, 4], &[1, 3, 5]]);
        check(&AllocateAveragelyByCircle, 8, 3, &[&[0, 3, 6], &[1, 4, 7], &[2, 5]]);
        check(&AllocateAveragelyByCircle, 2, 4, &[&[0], &[1], &[], &[]]);
    }

    #[test]
    fn unknown_member_or_empty_inputs_get_nothing() {
        let mqs = queues(4);
        let ids = cids(2);
        for s in [
            &AllocateAveragely as &dyn AllocateStrategy,
            &AllocateAveragelyByCircle,
            &AllocateConsistentHash::default(),
        ] {
            assert!(s.allocate("G", "stranger", &mqs, &ids).is_empty());
            assert!(s.allocate("G", &ids[0], &[], &ids).is_empty());
            assert!(s.allocate("G", &ids[0], &mqs, &[]).is_empty());
        }
    }

    /// A cluster as the rebalance step sees it, recording heartbeats.
    struct FakeCluster {
        me: &'static str,
        queues: Vec<MessageQueue>,
        members: Vec<String>,
        heartbeats: std::sync::atomic::AtomicUsize,
    }

    impl Membership for FakeCluster {
        fn client_id(&self) -> &str {
            self.me
        }
        fn zone(&self) -> &str {
            ""
        }
        async fn queues(&self, _: &str) -> Result<(Vec<MessageQueue>, BTreeMap<String, String>)> {
            Ok((self.queues.clone(), BTreeMap::new()))
        }
        async fn members(&self, _: &str, _: &str) -> Result<Vec<String>> {
            Ok(self.members.clone())
        }
        async fn heartbeat(&self) {
            self.heartbeats.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }

    fn cluster(me: &'static str, members: &[&str]) -> FakeCluster {
        FakeCluster {
            me,
            queues: queues(4),
            members: members.iter().map(|m| (*m).to_owned()).collect(),
            heartbeats: Default::default(),
        }
    }

    async fn step(c: &FakeCluster, strategy: impl AllocateStrategy + 'static, model: MessageModel) -> Option<Vec<i32>> {
        let strategy: Arc<dyn AllocateStrategy> = Arc::new(strategy);
        allocate_topic(c, &strategy, "G", "T", model).await.map(|qs| qs.iter().map(|q| q.queue_id).collect())
    }

    /// The push and the lite pull consumer both rebalance through this step.
    #[tokio::test]
    async fn a_member_not_yet_listed_keeps_its_queues_and_heartbeats() {
        let c = cluster("c", &["a", "b"]);
        assert_eq!(step(&c, AllocateAveragely, MessageModel::Clustering).await, None);
        assert_eq!(c.heartbeats.load(std::sync::atomic::Ordering::Relaxed), 1);
        let c = cluster("c", &[]);
        assert_eq!(step(&c, AllocateAveragely, MessageModel::Clustering).await, None);
        assert_eq!(c.heartbeats.load(std::sync::atomic::Ordering::Relaxed), 1);
        // Listed: allocated, no heartbeat needed.
        let c = cluster("b", &["a", "b"]);
        assert_eq!(step(&c, AllocateAveragely, MessageModel::Clustering).await, Some(vec![2, 3]));
        assert_eq!(c.heartbeats.load(std::sync::atomic::Ordering::Relaxed), 0);
        // Broadcasting needs no membership.
        let c = cluster("c", &[]);
        assert_eq!(step(&c, AllocateAveragely, MessageModel::Broadcasting).await, Some(vec![0, 1, 2, 3]));
    }

    struct Refuses;

    impl AllocateStrategy for Refuses {
        fn name(&self) -> &str {
            "REFUSES"
        }
        fn allocate(&self, _: &str, _: &str, _: &[MessageQueue], _: &[String]) -> Vec<MessageQueue> {
            Vec::new()
        }
        fn try_allocate(&self, _: &AllocateContext<'_>) -> Result<Vec<MessageQueue>> {
            Err(crate::error::Error::NoMachineRoom { what: "broker", name: "b".into() })
        }
    }

    struct Panics;

    impl AllocateStrategy for Panics {
        fn name(&self) -> &str {
            "PANICS"
        }
        fn allocate(&self, _: &str, _: &str, _: &[MessageQueue], _: &[String]) -> Vec<MessageQueue> {
            panic!("strategy bug")
        }
    }

    /// Names queues outside the route, and one twice.
    struct Sloppy;

    impl AllocateStrategy for Sloppy {
        fn name(&self) -> &str {
            "SLOPPY"
        }
        fn allocate(&self, _: &str, _: &str, mq_all: &[MessageQueue], _: &[String]) -> Vec<MessageQueue> {
            vec![mq_all[1].clone(), MessageQueue::new("T", "broker-z", 0), mq_all[1].clone(), mq_all[0].clone()]
        }
    }

    #[tokio::test]
    async fn refusals_keep_the_queues_and_answers_stay_within_the_route() {
        let c = cluster("a", &["a", "b"]);
        assert_eq!(step(&c, Refuses, MessageModel::Clustering).await, None);
        assert_eq!(step(&c, Panics, MessageModel::Clustering).await, None);
        assert_eq!(step(&c, Sloppy, MessageModel::Clustering).await, Some(vec![1, 0]));
    }

    #[test]
    fn zones_come_from_the_config_and_the_client_ids() {
        assert_eq!(client_zone("10.0.0.1@4711#1@az1"), "az1");
        assert_eq!(client_zone("10.0.0.1@4711#1"), "");
        let (mqs, cids) = (queues(1), vec!["10.0.0.1@a@az1".to_owned(), "10.0.0.2@b".to_owned()]);
        let zones: BTreeMap<String, String> = [("broker-a".to_owned(), "az9".to_owned())].into();
        let ctx = AllocateContext {
            group: "G",
            current_cid: "10.0.0.2@b",
            current_zone: "az2",
            mq_all: &mqs,
            cid_all: &cids,
            broker_zones: &zones,
        };
        assert_eq!((ctx.client_zone(&cids[0]), ctx.client_zone(&cids[1])), ("az1", "az2"));
        assert_eq!((ctx.broker_zone("broker-a"), ctx.broker_zone("broker-b")), ("az9", ""));
    }

    #[test]
    fn md5_matches_rfc_1321() {
        let hex = |d: [u8; 16]| d.iter().map(|b| format!("{b:02x}")).collect::<String>();
        assert_eq!(hex(md5(b"")), "d41d8cd98f00b204e9800998ecf8427e");
        assert_eq!(hex(md5(b"a")), "0cc175b9c0f1b6a831c399e269772661");
        assert_eq!(hex(md5(b"abc")), "900150983cd24fb0d6963f7d28e17f72");
        assert_eq!(hex(md5(b"message digest")), "f96b697d7cb7938d525a2f31aaf161d0");
        assert_eq!(hex(md5(b"abcdefghijklmnopqrstuvwxyz")), "c3fcd3d76192e4007dfb496cca67e13b");
        assert_eq!(
            hex(md5(b"12345678901234567890123456789012345678901234567890123456789012345678901234567890")),
            "57edf4a22be3c955ac49da2e2107b67a"
        );
        // RocketMQ's MD5Hash keeps the first 4 digest bytes big-endian.
        assert_eq!(ring_hash("abc"), 0x9001_5098);
    }

    #[test]
    fn consistent_hash_partitions_and_is_stable() {
        let s = AllocateConsistentHash::default();
        let mqs: Vec<MessageQueue> = {
            let mut v: Vec<MessageQueue> = ["broker-a", "broker-b"]
                .iter()
                .flat_map(|b| (0..8).map(move |i| MessageQueue::new("TopicTest", *b, i)))
                .collect();
            v.sort();
            v
        };
        let three = cids(3);
        assert_partition(&s, &mqs, &three);
        assert_partition(&AllocateAveragely, &mqs, &three);
        assert_partition(&AllocateAveragelyByCircle, &mqs, &three);
        // Adding a member only moves queues to the new member.
        let four = cids(4);
        assert_partition(&s, &mqs, &four);
        for c in &three {
            let before = s.allocate("G", c, &mqs, &three);
            let after = s.allocate("G", c, &mqs, &four);
            assert!(after.iter().all(|q| before.contains(q)), "{c} gained queues when a member joined");
        }
        // Pure: the same inputs give the same answer.
        assert_eq!(s.allocate("G", &three[0], &mqs, &three), s.allocate("G", &three[0], &mqs, &three));
    }
}
