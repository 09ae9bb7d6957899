//! Queue allocation strategies: which of a topic's queues this consumer reads,
//! given every queue and every member of the group (RocketMQ's
//! `AllocateMessageQueueStrategy`).
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

use std::sync::Arc;

use common::route::MessageQueue;
use plugin_api::{AllocateInput, ClientView, QueueView, PERM_READ};

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
}

/// Runs `strategy` on a blocking-pool thread: a plugin strategy may take up to its
/// deadline (100 ms by default), which must not stall the async workers that carry
/// every pull and send. If the strategy panics, the member owns nothing this round
/// (the next rebalance tries again).
pub(crate) async fn allocate_off_runtime(
    strategy: &Arc<dyn AllocateStrategy>,
    group: &str,
    current_cid: &str,
    mq_all: &[MessageQueue],
    cid_all: &[String],
) -> Vec<MessageQueue> {
    let (strategy, group, cid) = (strategy.clone(), group.to_owned(), current_cid.to_owned());
    let (mqs, cids) = (mq_all.to_vec(), cid_all.to_vec());
    match tokio::task::spawn_blocking(move || strategy.allocate(&group, &cid, &mqs, &cids)).await {
        Ok(mine) => mine,
        Err(e) => {
            tracing::error!(error = %e, "allocation strategy failed; owning no queue until the next rebalance");
            Vec::new()
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
