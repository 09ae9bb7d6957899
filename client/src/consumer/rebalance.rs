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

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use tracing::{debug, warn};

use common::route::MessageQueue;
use common::subscription::MessageModel;
use plugin_api::{AllocateInput, ClientView, QueueView, PERM_READ};

use crate::error::{Error, Result};

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

/// RocketMQ's reading of a machine-room broker name, `room@broker`: the room when the
/// name splits on `@` into exactly two parts, as Java's `String.split("@")` counts
/// them (trailing empty parts dropped, so `room@broker@` has a room too).
fn machine_room_of(broker_name: &str) -> Option<&str> {
    let mut parts: Vec<&str> = broker_name.split('@').collect();
    while parts.last() == Some(&"") {
        parts.pop();
    }
    match parts[..] {
        [room, _] => Some(room),
        _ => None,
    }
}

/// The queues of the machine rooms this consumer serves, dealt among every member
/// (`AllocateMessageQueueByMachineRoom`, `MACHINE_ROOM`). A broker named
/// `room@broker` is in machine room `room`; queues of other rooms, and of brokers
/// whose name has no room, go to nobody. With `n` such queues and `m` members,
/// member `i` gets the block `i·⌊n/m⌋ .. (i+1)·⌊n/m⌋` and, while `i < n mod m`, the
/// queue at `i + ⌊n/m⌋·m`: the extra queues come from the end, unlike AVG.
#[derive(Debug, Clone, Default)]
pub struct AllocateByMachineRoom {
    rooms: BTreeSet<String>,
}

impl AllocateByMachineRoom {
    /// Serves the machine rooms `rooms` (Java's `consumeridcs`).
    pub fn new<S: Into<String>>(rooms: impl IntoIterator<Item = S>) -> Self {
        Self { rooms: rooms.into_iter().map(Into::into).collect() }
    }

    /// The machine rooms served.
    pub fn rooms(&self) -> &BTreeSet<String> {
        &self.rooms
    }
}

impl AllocateStrategy for AllocateByMachineRoom {
    fn name(&self) -> &str {
        "MACHINE_ROOM"
    }

    fn allocate(
        &self,
        _group: &str,
        current_cid: &str,
        mq_all: &[MessageQueue],
        cid_all: &[String],
    ) -> Vec<MessageQueue> {
        let Some(index) = index_of(current_cid, mq_all, cid_all) else { return Vec::new() };
        let served: Vec<&MessageQueue> = mq_all
            .iter()
            .filter(|q| machine_room_of(&q.broker_name).is_some_and(|room| self.rooms.contains(room)))
            .collect();
        let m = cid_all.len();
        let (per_member, rest) = (served.len() / m, served.len() % m);
        let start = per_member * index;
        let mut mine: Vec<MessageQueue> = served[start..start + per_member].iter().map(|q| (*q).clone()).collect();
        if index < rest {
            mine.push(served[index + per_member * m].clone());
        }
        mine
    }
}

/// Where a queue's broker and a consumer run, for [`AllocateMachineRoomNearby`]
/// (RocketMQ's `MachineRoomResolver`). An empty answer means "unknown", which makes
/// the allocation refuse, as Java's throws.
pub trait MachineRoomResolver: Send + Sync {
    /// The machine room of the broker of `mq`.
    fn broker_deploy_in(&self, mq: &MessageQueue, ctx: &AllocateContext<'_>) -> String;
    /// The machine room of the consumer `client_id`.
    fn consumer_deploy_in(&self, client_id: &str, ctx: &AllocateContext<'_>) -> String;
}

/// Machine rooms from what the cluster already says: a consumer's is its zone
/// (`ClientConfig::unit_name`, the unit part of other members' ids); a broker's is
/// the `zoneName` of its route, else the `room` of a `room@broker` name.
#[derive(Debug, Clone, Copy, Default)]
pub struct ZoneResolver;

impl MachineRoomResolver for ZoneResolver {
    fn broker_deploy_in(&self, mq: &MessageQueue, ctx: &AllocateContext<'_>) -> String {
        match ctx.broker_zone(&mq.broker_name) {
            "" => machine_room_of(&mq.broker_name).unwrap_or("").to_owned(),
            zone => zone.to_owned(),
        }
    }

    fn consumer_deploy_in(&self, client_id: &str, ctx: &AllocateContext<'_>) -> String {
        ctx.client_zone(client_id).to_owned()
    }
}

/// Consumers read the queues of their own machine room first
/// (`AllocateMachineRoomNearby`, `MACHINE_ROOM_NEARBY-<inner>`): the queues of a room
/// that has live members are divided by `inner` among that room's members only; the
/// queues of a room without members are divided by `inner` among every member. A
/// member's answer lists its own room's share, then the shares of member-less rooms in
/// room-name order. A queue or member whose room the resolver cannot tell makes the
/// allocation refuse (the member keeps its queues this round).
pub struct AllocateMachineRoomNearby {
    inner: Arc<dyn AllocateStrategy>,
    resolver: Arc<dyn MachineRoomResolver>,
    name: String,
}

impl AllocateMachineRoomNearby {
    pub fn new(inner: Arc<dyn AllocateStrategy>, resolver: Arc<dyn MachineRoomResolver>) -> Self {
        let name = format!("MACHINE_ROOM_NEARBY-{}", inner.name());
        Self { inner, resolver, name }
    }

    /// Nearby allocation with rooms from zones ([`ZoneResolver`]).
    pub fn by_zone(inner: Arc<dyn AllocateStrategy>) -> Self {
        Self::new(inner, Arc::new(ZoneResolver))
    }
}

impl std::fmt::Debug for AllocateMachineRoomNearby {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AllocateMachineRoomNearby").field("name", &self.name).finish_non_exhaustive()
    }
}

impl AllocateStrategy for AllocateMachineRoomNearby {
    fn name(&self) -> &str {
        &self.name
    }

    /// Rooms as [`AllocateStrategy::try_allocate`] finds them with zones read from the
    /// client ids only; nothing when it refuses.
    fn allocate(
        &self,
        group: &str,
        current_cid: &str,
        mq_all: &[MessageQueue],
        cid_all: &[String],
    ) -> Vec<MessageQueue> {
        let no_zones = BTreeMap::new();
        let ctx = AllocateContext {
            group,
            current_cid,
            current_zone: client_zone(current_cid),
            mq_all,
            cid_all,
            broker_zones: &no_zones,
        };
        self.try_allocate(&ctx).unwrap_or_default()
    }

    fn try_allocate(&self, ctx: &AllocateContext<'_>) -> Result<Vec<MessageQueue>> {
        if index_of(ctx.current_cid, ctx.mq_all, ctx.cid_all).is_none() {
            return Ok(Vec::new());
        }
        // Rooms in name order, as Java's TreeMaps; queues and members in input order.
        let mut room_queues: BTreeMap<String, Vec<MessageQueue>> = BTreeMap::new();
        for mq in ctx.mq_all {
            let room = self.resolver.broker_deploy_in(mq, ctx);
            if room.is_empty() {
                return Err(Error::NoMachineRoom { what: "broker", name: mq.broker_name.clone() });
            }
            room_queues.entry(room).or_default().push(mq.clone());
        }
        let mut room_members: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for cid in ctx.cid_all {
            let room = self.resolver.consumer_deploy_in(cid, ctx);
            if room.is_empty() {
                return Err(Error::NoMachineRoom { what: "consumer", name: cid.clone() });
            }
            room_members.entry(room).or_default().push(cid.clone());
        }
        let mut mine = Vec::new();
        let my_room = self.resolver.consumer_deploy_in(ctx.current_cid, ctx);
        if let Some(queues) = room_queues.remove(&my_room) {
            let members = room_members.get(&my_room).map_or(&[][..], Vec::as_slice);
            mine.extend(self.inner.try_allocate(&AllocateContext { mq_all: &queues, cid_all: members, ..*ctx })?);
        }
        for (room, queues) in &room_queues {
            if !room_members.contains_key(room) {
                mine.extend(self.inner.try_allocate(&AllocateContext { mq_all: queues, ..*ctx })?);
            }
        }
        Ok(mine)
    }
}

/// A fixed list of queues, whatever the route and the members
/// (`AllocateMessageQueueByConfig`, `CONFIG`): a member reads exactly the queues it is
/// configured with, so an application that gives each member its own list partitions
/// the queues itself. The rebalance still keeps only queues of the topic being
/// rebalanced that its route lists.
#[derive(Debug, Clone, Default)]
pub struct AllocateByConfig {
    queues: Vec<MessageQueue>,
}

impl AllocateByConfig {
    pub fn new(queues: Vec<MessageQueue>) -> Self {
        Self { queues }
    }

    /// The configured queues.
    pub fn queues(&self) -> &[MessageQueue] {
        &self.queues
    }
}

impl AllocateStrategy for AllocateByConfig {
    fn name(&self) -> &str {
        "CONFIG"
    }

    fn allocate(&self, _group: &str, _cid: &str, _mq_all: &[MessageQueue], _cid_all: &[String]) -> Vec<MessageQueue> {
        self.queues.clone()
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

    /// Queue ids per member, for explicit queues and members.
    fn per_member(strategy: &dyn AllocateStrategy, mqs: &[MessageQueue], ids: &[String]) -> Vec<Vec<String>> {
        ids.iter().map(|c| strategy.allocate("G", c, mqs, ids).iter().map(ToString::to_string).collect()).collect()
    }

    fn strings(v: &[&[&str]]) -> Vec<Vec<String>> {
        v.iter().map(|m| m.iter().map(|s| (*s).to_owned()).collect()).collect()
    }

    #[test]
    fn machine_room_matches_rocketmq() {
        // RocketMQ's AllocateMessageQueueByMachineRoomTest: 10 queues, 0-4 on
        // room1@broker-a and 5-9 on room2@broker-b, rooms {room1}, two members.
        let mqs: Vec<MessageQueue> = (0..10)
            .map(|i| MessageQueue::new("topic", if i < 5 { "room1@broker-a" } else { "room2@broker-b" }, i))
            .collect();
        let ids: Vec<String> = (0..2).map(|i| format!("CID_PREFIX{i}")).collect();
        let s = AllocateByMachineRoom::new(["room1"]);
        let got: Vec<Vec<i32>> =
            ids.iter().map(|c| s.allocate("", c, &mqs, &ids).iter().map(|q| q.queue_id).collect()).collect();
        assert_eq!(got, [vec![0, 1, 4], vec![2, 3]]);
        // 7 served queues over 3 members: blocks of 2, the 7th to the first member.
        let s = AllocateByMachineRoom::new(["r1", "r3"]);
        let mqs: Vec<MessageQueue> = [("r1@b1", 4), ("r2@b2", 2), ("r3@b3", 3), ("b4", 2), ("r1@b5@x", 1)]
            .iter()
            .flat_map(|(b, n)| (0..*n).map(move |i| MessageQueue::new("T", *b, i)))
            .collect();
        assert_eq!(
            per_member(&s, &mqs, &cids(3)),
            strings(&[
                &["T@r1@b1#0", "T@r1@b1#1", "T@r3@b3#2"],
                &["T@r1@b1#2", "T@r1@b1#3"],
                &["T@r3@b3#0", "T@r3@b3#1"]
            ])
        );
        // Java's split drops trailing empty parts: `r1@b5@` is in room r1.
        assert_eq!(machine_room_of("r1@b5@"), Some("r1"));
        assert_eq!((machine_room_of("b4"), machine_room_of("a@b@c"), machine_room_of("@")), (None, None, None));
        assert_eq!(machine_room_of("@b"), Some(""));
        assert!(s.allocate("G", "stranger", &mqs, &cids(3)).is_empty());
        assert_eq!(s.name(), "MACHINE_ROOM");
    }

    /// RocketMQ's AllocateMachineRoomNearByTest resolver: the room is what precedes
    /// the first `-` of a broker name or client id.
    struct DashResolver;

    impl MachineRoomResolver for DashResolver {
        fn broker_deploy_in(&self, mq: &MessageQueue, _: &AllocateContext<'_>) -> String {
            mq.broker_name.split('-').next().unwrap_or("").to_owned()
        }
        fn consumer_deploy_in(&self, client_id: &str, _: &AllocateContext<'_>) -> String {
            client_id.split('-').next().unwrap_or("").to_owned()
        }
    }

    fn idc_queues(rooms: &[(&str, i32)]) -> Vec<MessageQueue> {
        rooms
            .iter()
            .flat_map(|(r, n)| (0..*n).map(move |i| MessageQueue::new("T", format!("{r}-brokerName"), i)))
            .collect()
    }

    #[test]
    fn machine_room_nearby_matches_rocketmq() {
        let s = AllocateMachineRoomNearby::new(Arc::new(AllocateAveragely), Arc::new(DashResolver));
        assert_eq!(s.name(), "MACHINE_ROOM_NEARBY-AVG");
        // IDC1 and IDC2 have members, IDC3 has none: its queues go to everyone.
        let mqs = idc_queues(&[("IDC1", 4), ("IDC2", 4), ("IDC3", 2)]);
        let ids: Vec<String> = ["IDC1-CID-0", "IDC1-CID-1", "IDC2-CID-0"].iter().map(|s| (*s).to_owned()).collect();
        assert_eq!(
            per_member(&s, &mqs, &ids),
            strings(&[
                &["T@IDC1-brokerName#0", "T@IDC1-brokerName#1", "T@IDC3-brokerName#0"],
                &["T@IDC1-brokerName#2", "T@IDC1-brokerName#3", "T@IDC3-brokerName#1"],
                &["T@IDC2-brokerName#0", "T@IDC2-brokerName#1", "T@IDC2-brokerName#2", "T@IDC2-brokerName#3"],
            ])
        );
        // Members in a room without brokers share the member-less rooms' queues only.
        let ids: Vec<String> = ["IDC1-CID-0", "IDC4-CID-0"].iter().map(|s| (*s).to_owned()).collect();
        let mqs = idc_queues(&[("IDC1", 2), ("IDC2", 3)]);
        assert_eq!(
            per_member(&s, &mqs, &ids),
            strings(&[
                &["T@IDC1-brokerName#0", "T@IDC1-brokerName#1", "T@IDC2-brokerName#0", "T@IDC2-brokerName#1"],
                &["T@IDC2-brokerName#2"],
            ])
        );
        // RocketMQ's property tests: every queue once; a room with members keeps its queues.
        for (rooms, members) in [(5, 5), (5, 6), (5, 3), (2, 7)] {
            for (queues_per_room, members_per_room) in [(20, 10), (20, 20), (20, 30), (3, 1)] {
                let names: Vec<String> = (1..=rooms).map(|r| format!("IDC{r}")).collect();
                let mqs = idc_queues(&names.iter().map(|r| (r.as_str(), queues_per_room)).collect::<Vec<_>>());
                let mut ids: Vec<String> =
                    (1..=members).flat_map(|r| (0..members_per_room).map(move |i| format!("IDC{r}-CID-{i}"))).collect();
                ids.sort();
                let mut all: Vec<MessageQueue> = Vec::new();
                for c in &ids {
                    let mine = s.allocate("G", c, &mqs, &ids);
                    for q in &mine {
                        let room = DashResolver.broker_deploy_in(q, &no_ctx());
                        if ids.iter().any(|i| i.starts_with(&format!("{room}-"))) {
                            assert!(c.starts_with(&format!("{room}-")), "{c} got {q} of a room with members");
                        }
                    }
                    all.extend(mine);
                }
                all.sort();
                let mut want = mqs.clone();
                want.sort();
                assert_eq!(all, want, "{rooms} broker rooms, {members} member rooms");
            }
        }
    }

    fn no_ctx() -> AllocateContext<'static> {
        static NONE: BTreeMap<String, String> = BTreeMap::new();
        AllocateContext { group: "", current_cid: "", current_zone: "", mq_all: &[], cid_all: &[], broker_zones: &NONE }
    }

    #[test]
    fn machine_room_nearby_by_zone_and_unknown_rooms() {
        let s = AllocateMachineRoomNearby::by_zone(Arc::new(AllocateAveragelyByCircle));
        let mqs: Vec<MessageQueue> = [("az1@b1", 2), ("b2", 2)]
            .iter()
            .flat_map(|(b, n)| (0..*n).map(move |i| MessageQueue::new("T", *b, i)))
            .collect();
        let ids: Vec<String> = vec!["10.0.0.1@a@az1".into(), "10.0.0.2@b@az2".into()];
        let zones: BTreeMap<String, String> = [("b2".to_owned(), "az2".to_owned())].into();
        let ctx = |me: &'static str, zone: &'static str| AllocateContext {
            group: "G",
            current_cid: me,
            current_zone: zone,
            mq_all: &mqs,
            cid_all: &ids,
            broker_zones: &zones,
        };
        let names = |r: Result<Vec<MessageQueue>>| r.unwrap().iter().map(ToString::to_string).collect::<Vec<_>>();
        // az1 from the broker name, az2 from the route's zoneName.
        assert_eq!(names(s.try_allocate(&ctx("10.0.0.1@a@az1", "az1"))), ["T@az1@b1#0", "T@az1@b1#1"]);
        assert_eq!(names(s.try_allocate(&ctx("10.0.0.2@b@az2", "az2"))), ["T@b2#0", "T@b2#1"]);
        // A broker with no zone at all, or a member without one: refused.
        let err = s.try_allocate(&AllocateContext { broker_zones: &BTreeMap::new(), ..ctx("10.0.0.1@a@az1", "az1") });
        assert!(matches!(err, Err(Error::NoMachineRoom { what: "broker", .. })), "{err:?}");
        let ids2: Vec<String> = vec!["10.0.0.1@a@az1".into(), "10.0.0.3@c".into()];
        let err = s.try_allocate(&AllocateContext { cid_all: &ids2, ..ctx("10.0.0.1@a@az1", "az1") });
        assert!(matches!(err, Err(Error::NoMachineRoom { what: "consumer", .. })), "{err:?}");
        // The infallible call answers nothing instead.
        assert!(s.allocate("G", "10.0.0.3@c", &mqs, &ids2).is_empty());
    }

    #[test]
    fn by_config_matches_rocketmq() {
        // RocketMQ's AllocateMessageQueueByConfigTest: every member gets the list.
        let mqs: Vec<MessageQueue> = (0..4).map(|i| MessageQueue::new("topic", "brokerName", i)).collect();
        let ids: Vec<String> = (0..2).map(|i| format!("CID_PREFIX{i}")).collect();
        let s = AllocateByConfig::new(mqs.clone());
        for c in &ids {
            assert_eq!(s.allocate("", c, &mqs, &ids), mqs);
        }
        assert_eq!(s.name(), "CONFIG");
    }

    #[tokio::test]
    async fn by_config_keeps_to_the_route_of_the_topic() {
        let c = cluster("a", &["a", "b"]);
        let config = AllocateByConfig::new(vec![
            MessageQueue::new("T", "broker-a", 3),
            MessageQueue::new("Other", "broker-a", 0),
            MessageQueue::new("T", "broker-a", 9),
            MessageQueue::new("T", "broker-a", 1),
        ]);
        assert_eq!(step(&c, config, MessageModel::Clustering).await, Some(vec![3, 1]));
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
