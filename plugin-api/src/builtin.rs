//! Built-in strategies: what the failure policies fall back to, and what plugins can
//! wrap or mirror. They follow the Java implementations bit for bit where RocketMQ
//! defines the behaviour (`String.hashCode`, `AllocateMessageQueueAveragely`,
//! `SelectMessageQueueByHash`).

use std::sync::atomic::{AtomicU32, Ordering};

use crate::error::PluginError;
use crate::traits::{AllocationStrategy, QueueSelector};
use crate::types::{AllocateInput, ClientView, MessageView, QueueView, SelectContext, NO_QUEUE};

/// Java's `String.hashCode()`: `h = 31 * h + c` over UTF-16 code units, wrapping.
pub fn java_string_hash(s: &str) -> i32 {
    s.encode_utf16().fold(0i32, |h, unit| h.wrapping_mul(31).wrapping_add(i32::from(unit)))
}

/// The consume-queue tags code of a tag string (0 for no tag), as RocketMQ stores it.
pub fn tags_code(tags: &str) -> i64 {
    if tags.is_empty() {
        0
    } else {
        i64::from(java_string_hash(tags))
    }
}

/// `SelectMessageQueueByHash`: `abs(arg.hashCode() % n)`, with the argument read as a
/// (lossy) UTF-8 string. Returns [`NO_QUEUE`] when `n == 0`.
pub fn select_by_hash(arg: &[u8], n: usize) -> u32 {
    if n == 0 {
        return NO_QUEUE;
    }
    let h = java_string_hash(&String::from_utf8_lossy(arg));
    (h % n as i32).unsigned_abs()
}

/// Sorts queues (broker name, then queue id) and clients (id) the way RocketMQ does
/// before allocating, so every member of a group computes on the same view.
pub fn sort_for_allocation(queues: &mut [QueueView<'_>], clients: &mut [ClientView<'_>]) {
    queues.sort_by(|a, b| (a.broker_name, a.queue_id).cmp(&(b.broker_name, b.queue_id)));
    clients.sort_by(|a, b| a.client_id.cmp(b.client_id));
}

/// `AllocateMessageQueueAveragely`: contiguous ranges, the first `queues % clients`
/// clients get one extra queue. A client not in the list gets nothing.
pub fn allocate_averagely(input: &AllocateInput<'_>, out: &mut Vec<u32>) {
    out.clear();
    let (q, c) = (input.queues.len(), input.clients.len());
    let Some(index) = input.current_index() else { return };
    if q == 0 || c == 0 {
        return;
    }
    let m = q % c;
    let average = if q <= c {
        1
    } else if m > 0 && index < m {
        q / c + 1
    } else {
        q / c
    };
    let start = if m > 0 && index < m { index * average } else { index * average + m };
    let range = average.min(q.saturating_sub(start));
    out.extend((0..range).map(|i| ((start + i) % q) as u32));
}

/// The built-in allocation strategy ([`allocate_averagely`]).
#[derive(Debug, Default, Clone, Copy)]
pub struct Averagely;

impl AllocationStrategy for Averagely {
    fn allocate(&self, input: &AllocateInput<'_>, out: &mut Vec<u32>) -> Result<(), PluginError> {
        allocate_averagely(input, out);
        Ok(())
    }
}

/// The built-in selector: [`select_by_hash`] of the argument when there is one (ordered
/// messages), otherwise round robin over writable queues (RocketMQ's default send path).
#[derive(Debug, Default)]
pub struct HashOrRoundRobin {
    next: AtomicU32,
}

impl HashOrRoundRobin {
    /// The queue for one message.
    pub fn select_one(&self, queues: &[QueueView<'_>], msg: &MessageView<'_>) -> u32 {
        if queues.is_empty() {
            return NO_QUEUE;
        }
        if !msg.arg.is_empty() {
            return select_by_hash(msg.arg, queues.len());
        }
        let n = queues.len() as u32;
        for _ in 0..n {
            let i = self.next.fetch_add(1, Ordering::Relaxed) % n;
            if queues[i as usize].is_writable() {
                return i;
            }
        }
        self.next.fetch_add(1, Ordering::Relaxed) % n
    }
}

impl QueueSelector for HashOrRoundRobin {
    fn select(&self, ctx: &SelectContext<'_>, msgs: &[MessageView<'_>], out: &mut [u32]) -> Result<(), PluginError> {
        for (m, o) in msgs.iter().zip(out.iter_mut()) {
            *o = self.select_one(ctx.queues, m);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{PERM_READ, PERM_WRITE};

    #[test]
    fn java_hash_matches_java() {
        assert_eq!(java_string_hash("TagA"), 2_598_919);
        assert_eq!(java_string_hash("hello world"), 1_794_106_052);
        assert_eq!(java_string_hash("polygenelubricants"), i32::MIN);
        assert_eq!(tags_code(""), 0);
        // Math.abs("polygenelubricants".hashCode() % 3) in Java is 2.
        assert_eq!(select_by_hash(b"polygenelubricants", 3), 2);
    }

    fn alloc(q: usize, clients: &[&str], me: &str) -> Vec<u32> {
        let queues: Vec<_> =
            (0..q).map(|i| QueueView { broker_name: "b", queue_id: i as u32, ..Default::default() }).collect();
        let clients: Vec<_> = clients.iter().map(|c| ClientView { client_id: c, zone: "" }).collect();
        let mut out = Vec::new();
        allocate_averagely(
            &AllocateInput { group: "g", current_client: me, queues: &queues, clients: &clients },
            &mut out,
        );
        out
    }

    #[test]
    fn averagely_matches_rocketmq() {
        // 8 queues, 3 clients: 3, 3, 2 (RocketMQ's own unit test).
        assert_eq!(alloc(8, &["a", "b", "c"], "a"), [0, 1, 2]);
        assert_eq!(alloc(8, &["a", "b", "c"], "b"), [3, 4, 5]);
        assert_eq!(alloc(8, &["a", "b", "c"], "c"), [6, 7]);
        // More clients than queues: the last ones get nothing.
        assert_eq!(alloc(2, &["a", "b", "c"], "c"), Vec::<u32>::new());
        assert_eq!(alloc(2, &["a", "b", "c"], "x"), Vec::<u32>::new());
        // Every queue exactly once, for many shapes.
        for q in 0..20 {
            for c in 1..7 {
                let names: Vec<String> = (0..c).map(|i| format!("c{i}")).collect();
                let refs: Vec<&str> = names.iter().map(String::as_str).collect();
                let mut all: Vec<u32> = refs.iter().flat_map(|me| alloc(q, &refs, me)).collect();
                all.sort_unstable();
                assert_eq!(all, (0..q as u32).collect::<Vec<_>>(), "q={q} c={c}");
            }
        }
    }

    #[test]
    fn round_robin_skips_read_only_queues() {
        let qs = [
            QueueView { perm: PERM_READ, ..Default::default() },
            QueueView { perm: PERM_READ | PERM_WRITE, ..Default::default() },
        ];
        let s = HashOrRoundRobin::default();
        for _ in 0..4 {
            assert_eq!(s.select_one(&qs, &MessageView::default()), 1);
        }
    }
}
